"""The HTTP layer: thin handlers that parse, call a domain module, and render or serialize."""
