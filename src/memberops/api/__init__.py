"""The HTTP API (FastAPI): ``/api/v1`` routers, key authentication and problem+json errors."""
