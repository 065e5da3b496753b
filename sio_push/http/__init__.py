"""The backend's HTTP API: routes, their body checks, the error middleware, schemas and OpenAPI document."""

from .middleware import error_middleware
from .routes import publish, setup_routes

__all__ = ["error_middleware", "publish", "setup_routes"]
