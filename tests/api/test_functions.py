from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from ember.api import create_app
from ember.bootstrap import build
from ember.settings import Settings
from tests.api.conftest import code, create, error_of
from tests.conftest import AUTH


def test_create_get_and_defaults(api: TestClient) -> None:
    created = create(api, "hello", memory_mb=512, environment={"GREETING": "hi"})
    assert created["name"] == "hello"
    assert created["state"] == "enabled"
    assert created["config"]["memory_mb"] == 512
    assert created["config"]["timeout_s"] == 60.0
    assert created["config"]["async"]["max_retries"] == 3
    assert len(created["code"]["sha256"]) == 64
    got = api.get("/functions/hello").json()
    assert got == created


def test_duplicate_name_conflicts(api: TestClient) -> None:
    create(api, "dup")
    answer = api.post("/functions", json={"name": "dup", "code": code()})
    assert answer.status_code == 409
    assert error_of(answer)["code"] == "Conflict"


def test_bad_name_bad_field_unknown_field(api: TestClient, home: Path) -> None:
    bad_name = api.post("/functions", json={"name": "9lives", "code": code()})
    assert bad_name.status_code == 400
    err = error_of(bad_name)
    assert err["code"] == "InvalidSpec"
    assert err["details"]["errors"][0]["field"] == "name"

    bad_field = api.post(
        "/functions", json={"name": "ok", "config": {"memory_mb": 10}, "code": code()}
    )
    err = error_of(bad_field)
    assert bad_field.status_code == 400 and err["code"] == "InvalidSpec"
    assert [e["field"] for e in err["details"]["errors"]] == ["config.memory_mb"]
    assert "config.memory_mb" in err["message"]

    unknown = api.post(
        "/functions", json={"name": "ok", "config": {"memroy_mb": 512}, "code": code()}
    )
    err = error_of(unknown)
    assert err["code"] == "InvalidSpec"
    assert err["details"]["errors"] == [{"field": "config.memroy_mb", "message": "unknown field"}]

    nested = api.post(
        "/functions",
        json={"name": "ok", "config": {"async": {"max_retries": 9}}, "code": code()},
    )
    assert error_of(nested)["details"]["errors"][0]["field"] == "config.async.max_retries"

    assert api.get("/functions").json()["functions"] == []
    blobs = home / "artifacts" / "blobs"
    assert not blobs.exists() or not any(blobs.rglob("*.zip"))


def test_not_base64_and_not_zip(api: TestClient) -> None:
    answer = api.post("/functions", json={"name": "x", "code": {"zip": "%%%"}})
    assert answer.status_code == 400 and error_of(answer)["code"] == "InvalidCode"
    answer = api.post("/functions", json={"name": "x", "code": {"zip": "aGVsbG8="}})
    assert answer.status_code == 400 and error_of(answer)["code"] == "InvalidCode"


def test_unsafe_zip_refused_and_server_keeps_serving(api: TestClient) -> None:
    answer = api.post(
        "/functions",
        json={"name": "evil", "code": code({"../../etc/owned": "x", "main.py": "x"})},
    )
    assert answer.status_code == 400
    err = error_of(answer)
    assert err["code"] == "InvalidCode" and "../../etc/owned" in err["message"]
    assert api.get("/healthz").json()["status"] == "ok"
    assert api.get("/functions/evil").status_code == 404


def test_upload_over_limit_is_refused_before_reading(api: TestClient) -> None:
    import base64
    import os

    huge = base64.b64encode(os.urandom(60 * 1024 * 1024)).decode()
    answer = api.post("/functions", json={"name": "huge", "code": {"zip": huge}})
    assert answer.status_code == 413
    assert error_of(answer)["code"] == "PayloadTooLarge"
    assert api.get("/functions/huge").status_code == 404


def test_zip_over_limit_in_base64_body_refused(settings: Settings) -> None:
    small = settings.model_copy(update={"max_code_mb": 0.01})
    with TestClient(create_app(build(small)), headers=AUTH) as api:
        payload = {"main.py": "x = 1\n", "blob.bin": __import__("os").urandom(20_000)}
        answer = api.post("/functions", json={"name": "big", "code": code(payload)})
        assert answer.status_code == 413
        assert error_of(answer)["code"] == "PayloadTooLarge"


def test_list_pagination_prefix_and_tags(api: TestClient) -> None:
    for i in range(5):
        create(api, f"svc-{i}", tags={"team": "a" if i % 2 else "b"})
    create(api, "other")
    first = api.get("/functions", params={"limit": 2}).json()
    assert [f["name"] for f in first["functions"]] == ["other", "svc-0"]
    second = api.get("/functions", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [f["name"] for f in second["functions"]] == ["svc-1", "svc-2"]
    third = api.get("/functions", params={"limit": 2, "cursor": second["next_cursor"]}).json()
    assert [f["name"] for f in third["functions"]] == ["svc-3", "svc-4"]
    assert third["next_cursor"] is None
    by_prefix = api.get("/functions", params={"prefix": "svc-"}).json()["functions"]
    assert len(by_prefix) == 5
    by_tag = api.get("/functions", params={"tag": "team=a"}).json()["functions"]
    assert [f["name"] for f in by_tag] == ["svc-1", "svc-3"]
    assert len(api.get("/functions", params={"tag": "team"}).json()["functions"]) == 5
    bad = api.get("/functions", params={"cursor": "!!!"})
    assert bad.status_code == 400


def test_patch_merges_top_level_fields(api: TestClient) -> None:
    create(api, "fn", memory_mb=512, environment={"A": "1"})
    patched = api.patch("/functions/fn", json={"config": {"timeout_s": 5}}).json()
    assert patched["config"]["timeout_s"] == 5
    assert patched["config"]["memory_mb"] == 512
    assert patched["config"]["environment"] == {"A": "1"}
    bad = api.patch("/functions/fn", json={"config": {"min_instances": 5, "max_instances": 2}})
    assert bad.status_code == 400
    assert "max_instances" in error_of(bad)["message"]
    unknown = api.patch("/functions/fn", json={"config": {"nope": 1}})
    assert error_of(unknown)["details"]["errors"][0]["field"] == "config.nope"
    assert api.get("/functions/fn").json()["config"]["timeout_s"] == 5
    missing = api.patch("/functions/ghost", json={"config": {"timeout_s": 5}})
    assert missing.status_code == 404 and error_of(missing)["code"] == "FunctionNotFound"


def test_update_code_and_download(api: TestClient) -> None:
    before = create(api, "fn")
    source = "def handler(e, c):\n  return 2\n"
    after = api.put("/functions/fn/code", json=code({"main.py": source}))
    assert after.status_code == 200
    assert after.json()["code"]["sha256"] != before["code"]["sha256"]
    downloaded = api.get("/functions/fn/code")
    assert downloaded.headers["content-type"] == "application/zip"
    import hashlib

    assert hashlib.sha256(downloaded.content).hexdigest() == after.json()["code"]["sha256"]


def test_disable_enable(api: TestClient) -> None:
    create(api, "fn")
    assert api.post("/functions/fn/disable").json()["state"] == "disabled"
    assert api.get("/functions/fn").json()["state"] == "disabled"
    assert api.post("/functions/fn/enable").json()["state"] == "enabled"


def test_publish_versions_and_dedup(api: TestClient) -> None:
    create(api, "fn")
    first = api.post("/functions/fn/versions", json={"description": "first"})
    assert first.status_code == 201
    assert first.json()["version"] == 1 and first.json()["created"] is True
    again = api.post("/functions/fn/versions", json={"description": "same"})
    assert again.status_code == 200
    assert again.json()["version"] == 1 and again.json()["created"] is False
    api.patch("/functions/fn", json={"config": {"memory_mb": 1024}})
    second = api.post("/functions/fn/versions")
    assert second.json()["version"] == 2
    # Versions are immutable snapshots: changing latest does not touch them.
    api.patch("/functions/fn", json={"config": {"memory_mb": 2048}})
    assert api.get("/functions/fn/versions/1").json()["config"]["memory_mb"] == 256
    assert api.get("/functions/fn/versions/2").json()["config"]["memory_mb"] == 1024
    listed = api.get("/functions/fn/versions").json()["versions"]
    assert [v["version"] for v in listed] == [1, 2]
    missing = api.get("/functions/fn/versions/9")
    assert missing.status_code == 404 and error_of(missing)["code"] == "VersionNotFound"
    # Numbers are never reused after a delete.
    assert api.delete("/functions/fn/versions/2").status_code == 200
    assert api.post("/functions/fn/versions").json()["version"] == 3


def test_aliases_and_held_versions(api: TestClient) -> None:
    create(api, "fn")
    api.post("/functions/fn/versions")
    api.put("/functions/fn/code", json=code({"main.py": "def handler(e, c):\n  return 2\n"}))
    api.post("/functions/fn/versions")
    created = api.put(
        "/functions/fn/aliases/live",
        json={"version": 1, "additional_version": 2, "weight": 0.1},
    )
    assert created.status_code == 201
    alias = created.json()
    assert (alias["version"], alias["additional_version"], alias["weight"]) == (1, 2, 0.1)
    held = api.delete("/functions/fn/versions/2")
    assert held.status_code == 409
    err = error_of(held)
    assert err["code"] == "Conflict" and "live" in err["message"]
    assert err["details"]["aliases"] == ["live"]
    moved = api.put("/functions/fn/aliases/live", json={"version": 2})
    assert moved.status_code == 200 and moved.json()["additional_version"] is None
    assert api.delete("/functions/fn/versions/1").status_code == 200
    assert [a["name"] for a in api.get("/functions/fn/aliases").json()["aliases"]] == ["live"]
    assert api.get("/functions/fn/aliases/live").json()["version"] == 2
    assert api.delete("/functions/fn/aliases/live").status_code == 200
    assert error_of(api.get("/functions/fn/aliases/live"))["code"] == "AliasNotFound"


def test_alias_rules(api: TestClient) -> None:
    create(api, "fn")
    api.post("/functions/fn/versions")
    cases = [
        ("latest", {"version": 1}, "alias"),
        ("live", {"version": 1, "weight": 0.5}, "additional_version"),
        ("live", {"version": 1, "additional_version": 1, "weight": 0.5}, "additional_version"),
        ("live", {"version": 1, "additional_version": 2, "weight": 1.5}, "weight"),
        ("live", {"version": 0}, "version"),
        ("9bad", {"version": 1}, "alias"),
    ]
    for alias, body, field in cases:
        answer = api.put(f"/functions/fn/aliases/{alias}", json=body)
        assert answer.status_code == 400, (alias, body)
        fields = [e["field"] for e in error_of(answer)["details"]["errors"]]
        assert field in fields, (alias, body, fields)
    missing = api.put("/functions/fn/aliases/live", json={"version": 7})
    assert missing.status_code == 404 and error_of(missing)["code"] == "VersionNotFound"


def test_delete_function_removes_everything(api: TestClient, home: Path) -> None:
    create(api, "fn")
    api.post("/functions/fn/versions")
    api.put("/functions/fn/aliases/live", json={"version": 1})
    deleted = api.delete("/functions/fn")
    assert deleted.status_code == 200
    assert api.get("/functions/fn").status_code == 404
    assert api.get("/functions/fn/versions").status_code == 404
    assert not any((home / "artifacts" / "blobs").rglob("*.zip"))


def test_unknown_route_and_method(api: TestClient) -> None:
    answer = api.get("/nope")
    assert answer.status_code == 404 and error_of(answer)["code"] == "NotFound"
    answer = api.put("/functions")
    assert answer.status_code == 405


def test_openapi_lists_every_route(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/functions",
        "/functions/{name}",
        "/functions/{name}/code",
        "/functions/{name}/disable",
        "/functions/{name}/enable",
        "/functions/{name}/versions",
        "/functions/{name}/versions/{number}",
        "/functions/{name}/aliases",
        "/functions/{name}/aliases/{alias}",
        "/healthz",
    ):
        assert path in paths, path
    create_op = paths["/functions"]["post"]
    assert "requestBody" in create_op
    assert "FunctionConfig" in spec["components"]["schemas"]


def test_restart_keeps_everything(settings: Settings) -> None:
    with TestClient(create_app(build(settings)), headers=AUTH) as api:
        create(api, "keep", memory_mb=1024)
        api.post("/functions/keep/versions", json={"description": "v1"})
        api.put("/functions/keep/aliases/live", json={"version": 1})
    with TestClient(create_app(build(settings)), headers=AUTH) as api:
        assert api.get("/functions/keep").json()["config"]["memory_mb"] == 1024
        assert api.get("/functions/keep/versions/1").json()["description"] == "v1"
        assert api.get("/functions/keep/aliases/live").json()["version"] == 1
        assert api.get("/functions/keep/code").status_code == 200
