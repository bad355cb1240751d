"""The admin key of the servers the benchmarks start, and httpx calls that send it."""

from __future__ import annotations

from typing import Any

import httpx

KEY = "ember-bench-admin-key-5d0c9e1f3a7b2468"
AUTH = {"Authorization": f"Bearer {KEY}"}


def get(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(url, headers={**AUTH, **kwargs.pop("headers", {})}, **kwargs)


def post(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(url, headers={**AUTH, **kwargs.pop("headers", {})}, **kwargs)
