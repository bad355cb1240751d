"""httpx's one-off request functions, sending the tests' admin key to Ember's API routes (not
to HTTP triggers' ``/http/...``, which keep their own auth)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import AUTH


def _with_key(url: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    if "/http/" not in str(url) and not str(url).endswith("/http"):
        kwargs["headers"] = {**AUTH, **(kwargs.get("headers") or {})}
    return kwargs


def get(url: Any, **kwargs: Any) -> httpx.Response:
    return httpx.get(url, **_with_key(url, kwargs))


def post(url: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(url, **_with_key(url, kwargs))


def put(url: Any, **kwargs: Any) -> httpx.Response:
    return httpx.put(url, **_with_key(url, kwargs))


def patch(url: Any, **kwargs: Any) -> httpx.Response:
    return httpx.patch(url, **_with_key(url, kwargs))


def delete(url: Any, **kwargs: Any) -> httpx.Response:
    return httpx.delete(url, **_with_key(url, kwargs))
