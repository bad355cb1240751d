"""What the SDK puts on the wire and how it reads headers, against a mock transport."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest

from ember.client import Client
from ember.errors import AliasNotFound, EmberError, FunctionTimeout, InvalidSpec, ServiceUnavailable

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.reply: Handler = lambda request: httpx.Response(200, json={})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.reply(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


@pytest.fixture
def wire() -> Recorder:
    return Recorder()


@pytest.fixture
def client(wire: Recorder) -> Iterator[Client]:
    with Client("http://ember/prefix/", transport=httpx.MockTransport(wire)) as sdk:
        yield sdk


def test_invoke_json_payload_and_headers(client: Client, wire: Recorder) -> None:
    tail = base64.b64encode(b"INFO started\nINFO done\n").decode()
    wire.reply = lambda request: httpx.Response(
        200,
        content=b'{"ok": true}',
        headers={
            "Content-Type": "application/json",
            "X-Ember-Request-Id": "r-1",
            "X-Ember-Version": "3",
            "X-Ember-Cold-Start": "true",
            "X-Ember-Init-Ms": "12.500",
            "X-Ember-Duration-Ms": "3.250",
            "X-Ember-Log-Tail": tail,
        },
    )
    result = client.invoke("f", {"a": [1, 2]}, qualifier="live", log_tail=True)
    sent = wire.last
    assert sent.method == "POST"
    assert sent.url.path == "/prefix/functions/f/invoke"
    assert sent.url.params["qualifier"] == "live"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["x-ember-log-type"] == "Tail"
    assert sent.headers["x-ember-invocation-type"] == "sync"
    assert json.loads(sent.content) == {"a": [1, 2]}
    assert result.json() == {"ok": True}
    assert (result.request_id, result.version, result.cold_start) == ("r-1", "3", True)
    assert (result.init_ms, result.duration_ms) == (12.5, 3.25)
    assert result.log_tail == "INFO started\nINFO done\n"


def test_invoke_raw_bytes_and_scalars(client: Client, wire: Recorder) -> None:
    client.invoke("f", b"\x00raw")
    assert wire.last.content == b"\x00raw"
    assert wire.last.headers["content-type"] == "application/octet-stream"
    assert "x-ember-log-type" not in wire.last.headers
    client.invoke("f", b"<a/>", content_type="application/xml")
    assert wire.last.headers["content-type"] == "application/xml"
    for payload, body in [(None, b"null"), ("hi", b'"hi"'), (4.5, b"4.5"), ([1], b"[1]")]:
        client.invoke("f", payload, qualifier=2)
        assert wire.last.content == body
        assert wire.last.url.params["qualifier"] == "2"


def test_failed_invocation_raises_with_request_id(client: Client, wire: Recorder) -> None:
    wire.reply = lambda request: httpx.Response(
        504,
        json={"error": {"code": "FunctionTimeout", "message": "ran past 1 s", "details": {}}},
        headers={"X-Ember-Request-Id": "r-9"},
    )
    with pytest.raises(FunctionTimeout) as err:
        client.invoke("f")
    assert err.value.details["request_id"] == "r-9"
    result = client.invoke("f", check=False)
    assert isinstance(result.error, FunctionTimeout) and result.status_code == 504


def test_logs_and_stats_parameters(client: Client, wire: Recorder) -> None:
    wire.reply = lambda request: httpx.Response(
        200,
        json={
            "logs": [
                {"id": 7, "ts": 1.5, "request_id": "r", "level": "info", "line": "hi",
                 "version": "latest", "instance": "i-1"},
            ],
            "next_cursor": "7",
        },
    )
    since = datetime(2024, 5, 1, tzinfo=UTC)
    page = client.get_logs("f", since=since, until=1714521600.5, level="error", grep="x",
                           request_id="r", limit=5, cursor="3")
    params = wire.last.url.params
    assert float(params["since"]) == since.timestamp()
    assert float(params["until"]) == 1714521600.5
    assert (params["level"], params["grep"], params["request_id"]) == ("error", "x", "r")
    assert (params["limit"], params["cursor"]) == ("5", "3")
    assert page.next_cursor == "7"
    assert page.logs[0].line == "hi" and page.logs[0].instance == "i-1"

    client.get_logs("f")
    assert dict(wire.last.url.params) == {}
    with pytest.raises(InvalidSpec):
        client.get_logs("f", since=datetime(2024, 5, 1))

    wire.reply = lambda request: httpx.Response(200, json={"invocations": 3})
    assert client.get_stats("f", window_s=60) == {"invocations": 3}
    assert float(wire.last.url.params["window_s"]) == 60


def test_names_are_quoted_in_paths(client: Client, wire: Recorder) -> None:
    wire.reply = lambda request: httpx.Response(
        404, json={"error": {"code": "AliasNotFound", "message": "no", "details": {}}}
    )
    with pytest.raises(AliasNotFound):
        client.get_alias("a/b", "c d")
    assert wire.last.url.raw_path == b"/prefix/functions/a%2Fb/aliases/c%20d"


def test_an_answer_of_the_wrong_shape_is_an_ember_error(client: Client, wire: Recorder) -> None:
    wire.reply = lambda request: httpx.Response(200, json={"name": "f"})
    with pytest.raises(EmberError, match="unexpected answer to GET /functions/f"):
        client.get_function("f")
    wire.reply = lambda request: httpx.Response(200, text="<html>")
    with pytest.raises(EmberError, match="unexpected answer"):
        client.list_versions("f")


def test_unknown_error_code_keeps_code_and_status(client: Client, wire: Recorder) -> None:
    wire.reply = lambda request: httpx.Response(
        418, json={"error": {"code": "Teapot", "message": "short and stout"}}
    )
    with pytest.raises(EmberError) as err:
        client.get_function("f")
    assert err.value.code == "Teapot" and err.value.http_status == 418


def test_timeouts_are_service_unavailable() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with (
        Client("http://ember", transport=httpx.MockTransport(slow)) as client,
        pytest.raises(ServiceUnavailable, match="did not answer in time"),
    ):
        client.invoke("f")
