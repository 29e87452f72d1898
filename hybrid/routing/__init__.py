"""Deciding who answers a request: the local model or a cloud provider, and why."""
