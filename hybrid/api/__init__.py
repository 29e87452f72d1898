"""The HTTP API: the FastAPI app, its routes, the wire formats and the accounting."""
