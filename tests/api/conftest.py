from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ember.api import create_app
from ember.bootstrap import build
from ember.settings import Settings
from tests.conftest import AUTH, HELLO, make_zip


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(build(settings)), headers=AUTH) as client:
        yield client


def code(files: dict[str, str | bytes] | None = None) -> dict[str, str]:
    return {"zip": base64.b64encode(make_zip(files or HELLO)).decode()}


def create(api: TestClient, name: str, **config: Any) -> dict[str, Any]:
    answer = api.post("/functions", json={"name": name, "config": config, "code": code()})
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def error_of(answer: Any) -> dict[str, Any]:
    body: dict[str, Any] = answer.json()["error"]
    return body
