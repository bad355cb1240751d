"""The HTTP API: parses requests, calls a service, renders the answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ember.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # The SDK and the CLI import ember.api.schemas; only the server needs FastAPI loaded.
    if name == "create_app":
        from ember.api.app import create_app

        return create_app
    raise AttributeError(name)
