"""Read-only prediction API over the published serving copy (`brecha serve`)."""

from brecha.serve.api.app import create_app, serve

__all__ = ["create_app", "serve"]
