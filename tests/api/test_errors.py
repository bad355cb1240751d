"""How errors reach clients: unexpected ones are logged under a request id and answered with
a generic message holding that id."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ember.api import create_app
from ember.bootstrap import Services, build
from ember.settings import Settings
from tests.api.conftest import error_of
from tests.conftest import AUTH

SECRET = "password=hunter2 in /srv/secret/path"


@pytest.fixture
def services(settings: Settings) -> Services:
    return build(settings)


@pytest.fixture
def raising(services: Services) -> Iterator[TestClient]:
    """The API with a route that raises, and a router whose invocations raise."""

    async def fail(*_: Any, **__: Any) -> Any:
        raise RuntimeError(SECRET)

    app = create_app(services)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError(SECRET)

    services.router.invoke = fail  # type: ignore[method-assign]
    services.router.pick = fail  # type: ignore[method-assign]
    services.router.invoke_http = fail  # type: ignore[method-assign]
    with TestClient(app, raise_server_exceptions=False, headers=AUTH) as client:
        yield client


def _assert_generic(answer: Any, caplog: pytest.LogCaptureFixture) -> str:
    assert answer.status_code == 500
    err = error_of(answer)
    assert err["code"] == "Internal"
    assert SECRET not in answer.text and "RuntimeError" not in answer.text
    request_id: str = err["details"]["request_id"]
    assert answer.headers["X-Ember-Request-Id"] == request_id
    assert request_id in err["message"]
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged, "the error is logged under its request id"
    assert logged[0].levelno == logging.ERROR
    assert logged[0].exc_info is not None and SECRET in str(logged[0].exc_info[1])
    return request_id


def test_unexpected_error_of_a_route_is_logged_not_echoed(
    raising: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    first = _assert_generic(raising.get("/boom"), caplog)
    second = _assert_generic(raising.get("/boom"), caplog)
    assert first != second


def test_unexpected_error_keeps_the_request_id_the_client_sent(
    raising: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    answer = raising.get("/boom", headers={"X-Ember-Request-Id": "req-42.a"})
    assert _assert_generic(answer, caplog) == "req-42.a"
    # An id that is not a plain token is not written to the log: a new one is made.
    answer = raising.get("/boom", headers={"X-Ember-Request-Id": "x" * 200})
    assert _assert_generic(answer, caplog) != "x" * 200


def test_unexpected_error_on_the_invoke_fast_path(
    raising: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    _assert_generic(raising.post("/functions/fn/invoke", json={}), caplog)


def test_unexpected_error_on_direct_http(
    raising: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    _assert_generic(raising.get("/functions/fn/http/hello"), caplog)


def test_method_not_allowed_names_every_method_of_the_path(api: TestClient) -> None:
    for method, path, allowed in (
        ("PUT", "/functions", "GET, POST"),
        ("OPTIONS", "/functions/fn", "GET, PATCH, DELETE"),
        ("TRACE", "/functions/fn/versions/1", "GET, DELETE"),
        ("GET", "/functions/fn/invoke", "POST"),
    ):
        answer = api.request(method, path)
        assert answer.status_code == 405, (method, path)
        assert answer.headers["Allow"] == allowed, (method, path)
        err = error_of(answer)
        assert err["code"] == "MethodNotAllowed"
        assert err["details"]["allowed"] == allowed.split(", ")


def test_openapi_document_gives_the_patterns_the_server_checks(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]

    def param(path: str, method: str, name: str) -> dict[str, Any]:
        found = [p for p in spec["paths"][path][method]["parameters"] if p["name"] == name]
        schema: dict[str, Any] = found[0]["schema"]
        return schema

    name = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
    assert schemas["FunctionCreate"]["properties"]["name"]["pattern"] == name
    assert param("/functions/{name}", "get", "name")["pattern"] == name
    assert param("/layers/{name}/versions", "post", "name")["pattern"] == name
    assert param("/functions/{name}/aliases/{alias}", "put", "alias")["pattern"] == name
    assert param("/functions", "get", "cursor")["pattern"].startswith("^[A-Za-z0-9_-]")
    invoke = "/functions/{name}/invoke"
    assert param(invoke, "post", "x-ember-invocation-type")["enum"] == ["sync", "async"]
    assert param(invoke, "post", "x-ember-idempotency-key")["maxLength"] == 256
    assert "pattern" in schemas["CodeIn"]["properties"]["zip"]
