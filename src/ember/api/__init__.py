"""The HTTP API: parses requests, calls a service, renders the answer."""

from ember.api.app import create_app

__all__ = ["create_app"]
