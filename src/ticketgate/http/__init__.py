"""The HTTP edge: routing, request parsing, error envelope and one module per resource."""
