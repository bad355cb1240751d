"""The admin key of the servers the benchmarks start, and httpx calls that send it.

The calls share one client (keep-alive, one TLS context): a bench that polls the server
while it measures would otherwise build a client per call, a few milliseconds of CPU each,
taken from the server it measures."""

from __future__ import annotations

from typing import Any

import httpx

KEY = "ember-bench-admin-key-5d0c9e1f3a7b2468"
AUTH = {"Authorization": f"Bearer {KEY}"}

_client: httpx.Client | None = None


def client() -> httpx.Client:
    global _client
    if _client is None:
        _client = httpx.Client(timeout=5.0)
    return _client


def get(url: str, **kwargs: Any) -> httpx.Response:
    return client().get(url, headers={**AUTH, **kwargs.pop("headers", {})}, **kwargs)


def post(url: str, **kwargs: Any) -> httpx.Response:
    return client().post(url, headers={**AUTH, **kwargs.pop("headers", {})}, **kwargs)
