"""The runtime's pure parts: entry points, events, results, errors, the context."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ember.runtime import protocol
from ember.runtime.context import Context
from ember.runtime.main import (
    decode_event,
    describe_error,
    encode_result,
    is_json,
    load_entrypoint,
)


@pytest.fixture
def code(tmp_path: Path) -> Iterator[Path]:
    """A directory on sys.path with a module and a package; both forgotten afterwards."""
    (tmp_path / "rt_sample.py").write_text("def handler(e, c):\n    return 1\nvalue = 3\n")
    (tmp_path / "rt_pkg").mkdir()
    (tmp_path / "rt_pkg" / "__init__.py").write_text("")
    (tmp_path / "rt_pkg" / "mod.py").write_text("def fn(e, c):\n    return 2\n")
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in ("rt_sample", "rt_pkg", "rt_pkg.mod"):
            sys.modules.pop(name, None)


def test_load_entrypoint_both_syntaxes(code: Path) -> None:
    assert load_entrypoint("rt_sample.handler")(None, None) == 1
    assert load_entrypoint("rt_pkg.mod:fn")(None, None) == 2
    assert load_entrypoint("rt_pkg.mod.fn")(None, None) == 2


def test_load_entrypoint_failures(code: Path) -> None:
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        load_entrypoint("rt_sample.nope")
    with pytest.raises(TypeError, match="not callable"):
        load_entrypoint("rt_sample.value")
    with pytest.raises(ModuleNotFoundError):
        load_entrypoint("rt_missing.handler")
    with pytest.raises(ValueError, match="not an entry point"):
        load_entrypoint("handler")


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("application/cloudevents+json", True),
        ("text/plain", False),
        ("", False),
        ("application/jsonl", False),
    ],
)
def test_is_json(content_type: str, expected: bool) -> None:
    assert is_json(content_type) is expected


def test_decode_event() -> None:
    assert decode_event(b'{"a": 1}', "application/json") == {"a": 1}
    assert decode_event(b"", "application/json") is None
    assert decode_event(b"  \n", "application/json") is None
    assert decode_event(b"raw", "text/plain") == b"raw"
    assert decode_event(b"", "") == b""
    with pytest.raises(ValueError):
        decode_event(b"{", "application/json")


def test_encode_result() -> None:
    assert encode_result(b"\x01") == (b"\x01", "application/octet-stream")
    assert encode_result(bytearray(b"ab")) == (b"ab", "application/octet-stream")
    assert encode_result("é") == ("é".encode(), "text/plain; charset=utf-8")
    assert encode_result({"é": 1}) == ('{"é": 1}'.encode(), "application/json")
    assert encode_result(None) == (b"null", "application/json")
    with pytest.raises(TypeError):
        encode_result({"s": {1, 2}})
    with pytest.raises(ValueError):
        encode_result(float("nan"))


def test_describe_error_leaves_out_the_runtime() -> None:
    def user_code() -> None:
        raise KeyError("missing")

    try:
        load_entrypoint.__globals__["importlib"]  # the runtime module's namespace exists
        user_code()
    except KeyError as exc:
        error = describe_error(exc)
    assert error["type"] == "KeyError"
    assert error["message"] == "'missing'"
    assert error["kind"] == protocol.KIND_HANDLER
    assert "in user_code" in error["traceback"]
    assert error["traceback"].startswith("Traceback")


def test_context() -> None:
    deadline = time.time() + 2
    context = Context(request_id="r", function_name="f", function_version="1",
                      qualifier="prod", memory_limit_mb=128, deadline=deadline, attempt=2)
    assert 1000 < context.get_remaining_time_ms() <= 2000
    assert context.logger.name == "function"
    assert "request_id='r'" in repr(context)
    late = Context(request_id=None, function_name="f", function_version="latest",
                   qualifier="", memory_limit_mb=128, deadline=time.time() - 5)
    assert late.get_remaining_time_ms() == 0
    assert json.dumps(late.attempt) == "1"
