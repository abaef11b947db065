"""qa-api service."""
