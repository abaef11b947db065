"""optimizer-worker service."""
