"""feedback-ui service."""
