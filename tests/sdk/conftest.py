from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ember.api import create_app
from ember.bootstrap import build
from ember.client import Client
from ember.settings import Settings
from tests.conftest import AUTH

ECHO = """
import os

def handler(event, context):
    print("handling", event)
    if isinstance(event, (bytes, bytearray)):
        return {"bytes": len(event)}
    if isinstance(event, dict) and event.get("fail"):
        raise ValueError("asked to fail")
    return {"event": event, "version": context.function_version}
"""


def write_code(root: Path, source: str = ECHO, **extra: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "main.py").write_text(source)
    for name, text in extra.items():
        (root / name).write_text(text)
    return root


def zip_names(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return sorted(archive.namelist())


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(build(settings))


@pytest.fixture
def client(app: FastAPI) -> Iterator[Client]:
    """The sync SDK over the real app, in process (TestClient runs its lifespan)."""
    with TestClient(app, base_url="http://ember", headers=AUTH) as http, Client(http=http) as sdk:
        yield sdk
