"""Reference apps serving the same program, measured side by side with qa-api."""
