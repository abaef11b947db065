"""HTTP routes: parse, call a domain function, shape the response."""
