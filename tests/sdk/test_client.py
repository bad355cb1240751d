"""The sync SDK against the real app in process: every route, and the errors it raises."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest

from ember.client import Client, FunctionOut, InvocationList, InvocationOut, InvocationResult
from ember.errors import (
    AliasNotFound,
    Conflict,
    EmberError,
    FunctionDisabled,
    FunctionError,
    FunctionNotFound,
    InvalidCode,
    InvalidSpec,
    ServiceUnavailable,
    VersionNotFound,
)
from tests.conftest import HELLO, make_zip
from tests.sdk.conftest import write_code, zip_names


def test_health(client: Client) -> None:
    answer = client.health()
    assert answer.status == "ok" and answer.version


def test_create_from_directory_zip_file_and_bytes(client: Client, tmp_path: Path) -> None:
    code = write_code(tmp_path / "src", **{"notes.md": "# notes"})
    (code / "__pycache__").mkdir()
    (code / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    from_dir = client.create_function("dir", code, {"memory_mb": 512}, exclude=["*.md"])
    assert isinstance(from_dir, FunctionOut)
    assert from_dir.name == "dir" and from_dir.state == "enabled"
    assert from_dir.config.memory_mb == 512 and from_dir.config.timeout_s == 60
    assert zip_names(client.download_code("dir")) == ["main.py"]

    data = make_zip(HELLO)
    (tmp_path / "code.zip").write_bytes(data)
    from_file = client.create_function("file", tmp_path / "code.zip")
    from_str = client.create_function("text-path", str(tmp_path / "code.zip"))
    from_bytes = client.create_function("bytes", data)
    sha = hashlib.sha256(data).hexdigest()
    assert from_file.code.sha256 == from_str.code.sha256 == from_bytes.code.sha256 == sha
    assert client.download_code("bytes") == data
    # The same directory zips to the same bytes, so to the same artifact.
    again = client.create_function("dir2", code, {"memory_mb": 512}, exclude=["*.md"])
    assert again.code == from_dir.code


def test_get_update_disable_enable_delete(client: Client) -> None:
    created = client.create_function("fn", make_zip(HELLO), {"environment": {"A": "1"}})
    assert client.get_function("fn") == created

    updated = client.update_function("fn", {"memory_mb": 1024, "tags": {"team": "x"}})
    assert updated.config.memory_mb == 1024
    assert updated.config.environment == {"A": "1"}  # merged: untouched fields stay
    assert updated.code == created.code

    new_code = make_zip({"main.py": "def handler(e, c):\n    return 2\n"})
    replaced = client.update_code("fn", new_code)
    assert replaced.code.sha256 == hashlib.sha256(new_code).hexdigest()
    assert replaced.config.memory_mb == 1024

    assert client.disable_function("fn").state == "disabled"
    assert client.enable_function("fn").state == "enabled"
    deleted = client.delete_function("fn")
    assert deleted.name == "fn"
    with pytest.raises(FunctionNotFound):
        client.get_function("fn")


def test_list_pages_prefix_tag_and_iteration(client: Client) -> None:
    for i in range(5):
        tags = {"team": "a" if i % 2 else "b"}
        client.create_function(f"app-{i}", make_zip(HELLO), {"tags": tags})
    client.create_function("other", make_zip(HELLO))

    page = client.list_functions(prefix="app-", limit=2)
    assert [f.name for f in page.functions] == ["app-0", "app-1"]
    assert page.next_cursor
    rest = client.list_functions(prefix="app-", limit=10, cursor=page.next_cursor)
    assert [f.name for f in rest.functions] == ["app-2", "app-3", "app-4"]
    assert rest.next_cursor is None

    every = [f.name for f in client.iter_functions(page_size=2)]
    assert every == ["app-0", "app-1", "app-2", "app-3", "app-4", "other"]
    assert [f.name for f in client.iter_functions(tag="team=a")] == ["app-1", "app-3"]
    assert [f.name for f in client.list_functions(tag="team").functions] == [
        f"app-{i}" for i in range(5)
    ]
    with pytest.raises(InvalidSpec):
        client.list_functions(limit=0)


def test_versions_and_aliases(client: Client) -> None:
    client.create_function("v", make_zip(HELLO))
    first = client.publish_version("v", "first")
    assert first.version == 1 and first.created and first.description == "first"
    same = client.publish_version("v")
    assert same.version == 1 and not same.created

    client.update_function("v", {"memory_mb": 512})
    second = client.publish_version("v", "second")
    assert second.version == 2 and second.created
    assert [v.version for v in client.list_versions("v")] == [1, 2]
    assert client.get_version("v", 2).config.memory_mb == 512
    assert client.download_code("v", 1) == client.download_code("v", "latest")
    with pytest.raises(VersionNotFound):
        client.get_version("v", 9)

    alias = client.set_alias("v", "live", 1, additional_version=2, weight=0.1, description="d")
    assert (alias.version, alias.additional_version, alias.weight) == (1, 2, 0.1)
    assert client.get_alias("v", "live") == alias
    client.set_alias("v", "beta", 2)
    assert [a.name for a in client.list_aliases("v")] == ["beta", "live"]

    with pytest.raises(Conflict) as held:
        client.delete_version("v", 2)
    assert "live" in held.value.message or "beta" in held.value.message

    assert client.delete_alias("v", "beta").name == "beta"
    with pytest.raises(AliasNotFound):
        client.get_alias("v", "beta")
    moved = client.set_alias("v", "live", 1)
    assert moved.additional_version is None and moved.weight is None
    assert client.delete_version("v", 2).version == 2
    assert [v.version for v in client.list_versions("v")] == [1]


def test_errors_are_the_server_classes(client: Client, tmp_path: Path) -> None:
    with pytest.raises(FunctionNotFound) as missing:
        client.get_function("nope")
    assert missing.value.http_status == 404 and "nope" in missing.value.message

    client.create_function("dup", make_zip(HELLO))
    with pytest.raises(Conflict):
        client.create_function("dup", make_zip(HELLO))

    with pytest.raises(InvalidSpec) as bad_field:
        client.create_function("ok", make_zip(HELLO), {"memory_mb": 10})
    assert [e["field"] for e in bad_field.value.details["errors"]] == ["config.memory_mb"]

    with pytest.raises(InvalidSpec) as unknown:
        client.update_function("dup", {"memroy_mb": 512})
    assert unknown.value.details["errors"] == [
        {"field": "config.memroy_mb", "message": "unknown field"}
    ]

    with pytest.raises(InvalidSpec) as bad_name:
        client.create_function("9lives", make_zip(HELLO))
    assert bad_name.value.details["errors"][0]["field"] == "name"

    with pytest.raises(InvalidSpec) as split:
        client.set_alias("dup", "latest", 1)
    assert split.value.details["errors"][0]["field"] == "alias"

    with pytest.raises(InvalidCode):
        client.update_code("dup", b"not a zip")
    with pytest.raises(InvalidCode) as no_path:
        client.create_function("ok", tmp_path / "missing")
    assert "missing" in no_path.value.message


def test_invoke_logs_and_stats(client: Client) -> None:
    client.create_function("echo", write_code_bytes())
    result = client.invoke("echo", {"n": 1}, log_tail=True)
    assert isinstance(result, InvocationResult)
    assert result.ok and result.status_code == 200
    assert result.json() == {"event": {"n": 1}, "version": "latest"}
    assert result.is_json and result.text.startswith("{")
    assert result.request_id and len(result.request_id) == 36
    assert result.version == "latest"
    assert result.cold_start is True and result.init_ms is not None and result.init_ms > 0
    assert result.duration_ms is not None and result.duration_ms >= 0
    assert result.log_tail is not None and "handling {'n': 1}" in result.log_tail

    warm = client.invoke("echo", "text")
    assert warm.cold_start is False and warm.json()["event"] == "text"
    assert warm.log_tail is None
    raw = client.invoke("echo", b"\x00\x01", content_type="application/octet-stream")
    assert raw.json() == {"bytes": 2}

    with pytest.raises(FunctionError) as failed:
        client.invoke("echo", {"fail": True})
    assert failed.value.details["request_id"]
    assert "asked to fail" in failed.value.message

    kept = client.invoke("echo", {"fail": True}, log_tail=True, check=False)
    assert not kept.ok and isinstance(kept.error, FunctionError)
    assert kept.status_code == 502 and kept.request_id
    assert kept.log_tail is not None and "handling" in kept.log_tail
    with pytest.raises(FunctionError):
        kept.raise_for_error()

    with pytest.raises(FunctionNotFound):
        client.invoke("nope")
    with pytest.raises(InvalidSpec):
        client.invoke("echo", qualifier="not an alias!")

    page = client.get_logs("echo", request_id=result.request_id)
    assert [line.line for line in page.logs] == ["handling {'n': 1}"]
    assert page.logs[0].request_id == result.request_id and page.logs[0].ts > 0
    assert page.next_cursor
    later = client.get_logs("echo", cursor=page.next_cursor, grep="fail")
    assert all("fail" in line.line for line in later.logs)

    stats = client.get_stats("echo", window_s=3600)
    assert isinstance(stats, dict) and stats


def test_disabled_function_refuses_invocations(client: Client) -> None:
    client.create_function("off", write_code_bytes())
    client.disable_function("off")
    with pytest.raises(FunctionDisabled):
        client.invoke("off")


def write_code_bytes() -> bytes:
    from tests.sdk.conftest import ECHO

    return make_zip({"main.py": ECHO})


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_connection_refused_is_service_unavailable() -> None:
    with (
        Client(f"http://127.0.0.1:{_closed_port()}", timeout=5) as client,
        pytest.raises(ServiceUnavailable) as refused,
    ):
        client.list_functions()
    assert "ember server" in refused.value.message and "EMBER_URL" in refused.value.message


def test_base_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBER_URL", "http://example.test:9000/")
    with Client() as client:
        assert client.base_url == "http://example.test:9000"
    monkeypatch.delenv("EMBER_URL")
    with Client() as client:
        assert client.base_url == "http://127.0.0.1:8080"


def test_non_json_error_keeps_status_and_text() -> None:
    import httpx

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="Bad Gateway from the proxy")

    with (
        Client("http://ember", transport=httpx.MockTransport(answer)) as client,
        pytest.raises(EmberError) as err,
    ):
        client.get_function("x")
    assert type(err.value) is EmberError
    assert "502" in err.value.message and "Bad Gateway from the proxy" in err.value.message
    assert err.value.details["http_status"] == 502


def test_list_invocations(client: Client) -> None:
    client.create_function("echo", write_code_bytes())
    ok = client.invoke("echo", {"n": 1})
    failed = client.invoke("echo", {"fail": True}, check=False)
    page = client.list_invocations("echo")
    assert isinstance(page, InvocationList) and page.next_cursor is None
    newest, oldest = page.invocations
    assert isinstance(newest, InvocationOut)
    assert (newest.request_id, newest.status, newest.mode) == (failed.request_id, "error", "sync")
    assert newest.error_code == "FunctionError"
    assert newest.error_message and "asked to fail" in newest.error_message
    assert (oldest.request_id, oldest.status, oldest.cold) == (ok.request_id, "success", True)
    assert oldest.version == "latest" and oldest.init_ms > 0 and oldest.error_message is None
    first = client.list_invocations("echo", limit=1)
    assert [i.request_id for i in first.invocations] == [failed.request_id]
    rest = client.list_invocations("echo", limit=1, cursor=first.next_cursor)
    assert [i.request_id for i in rest.invocations] == [ok.request_id]
    only = client.list_invocations("echo", status="success")
    assert [i.request_id for i in only.invocations] == [ok.request_id]
    with pytest.raises(InvalidSpec):
        client.list_invocations("echo", status="fine")
    with pytest.raises(FunctionNotFound):
        client.list_invocations("nope")
