"""Secrets through the API: the resource's rules, values encrypted at rest and never shown,
functions reading their secrets from the environment, and masked logs."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from typing import Any

import httpx
import sqlalchemy as sa

from ember.settings import Settings
from ember.store.sql import create_engine
from tests.inprocess import Ember

Run = Callable[..., None]

READS_SECRET = """
import os

def handler(event, context):
    print("connecting with", os.environ["DB_PASSWORD"], "to the database")
    return {"password": os.environ["DB_PASSWORD"], "region": os.environ.get("REGION")}
"""

PASSWORD = "hunter2-correct-horse"


async def put(ember: Ember, name: str, value: str, status: int = 201) -> dict[str, Any]:
    answer = await ember.http.put(f"/secrets/{name}", json={"value": value})
    assert answer.status_code == status, answer.text
    return dict(answer.json())


def fields(answer: httpx.Response) -> dict[str, str]:
    return {e["field"]: e["message"] for e in answer.json()["error"]["details"]["errors"]}


def test_set_list_get_and_delete_never_show_a_value(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        made = await put(ember, "DB_PASSWORD", PASSWORD)
        assert set(made) == {"name", "created_at", "updated_at"}
        again = await put(ember, "DB_PASSWORD", "s3cond-Value-q7", status=200)
        assert again["created_at"] == made["created_at"]
        assert again["updated_at"] >= made["updated_at"]
        await put(ember, "API_TOKEN", "t0ken")

        answers = [
            await ember.http.get("/secrets"),
            await ember.http.get("/secrets/DB_PASSWORD"),
            await ember.http.get("/openapi.json"),
        ]
        for answer in answers:
            assert answer.status_code == 200
            assert PASSWORD not in answer.text and "s3cond-Value-q7" not in answer.text
            assert "t0ken" not in answer.text
        listed = answers[0].json()["secrets"]
        assert [s["name"] for s in listed] == ["API_TOKEN", "DB_PASSWORD"]
        assert all(set(s) == {"name", "created_at", "updated_at"} for s in listed)

        deleted = await ember.http.delete("/secrets/API_TOKEN")
        assert deleted.status_code == 200 and deleted.json()["name"] == "API_TOKEN"
        for answer in (await ember.http.get("/secrets/API_TOKEN"),
                       await ember.http.delete("/secrets/API_TOKEN")):
            assert answer.status_code == 404
            assert answer.json()["error"]["code"] == "SecretNotFound"

    run(scenario)


def test_invalid_names_and_values_are_refused_naming_the_field(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        for name in ("db-password", "1ST", "EMBER_TOKEN", "x" * 65):
            answer = await ember.http.put(f"/secrets/{name}", json={"value": "v"})
            assert answer.status_code == 400, answer.text
            assert "name" in fields(answer), answer.text
        for body in ({"value": ""}, {"value": "x" * (64 * 1024 + 1)},
                     {"value": "é" * (32 * 1024 + 1)}, {"value": "a\x00b"}, {},
                     {"value": "v", "other": 1}):
            answer = await ember.http.put("/secrets/OK", json=body)
            assert answer.status_code == 400, answer.text
            assert set(fields(answer)) <= {"value", "other"}, answer.text
        await put(ember, "OK", "x" * (64 * 1024))
        assert (await ember.http.get("/secrets/no-such")).status_code == 404

    run(scenario)


def test_values_are_encrypted_at_rest(run: Run, settings: Settings) -> None:
    async def scenario(ember: Ember) -> None:
        await put(ember, "DB_PASSWORD", PASSWORD)
        await put(ember, "OTHER", PASSWORD)

    run(scenario)
    engine = create_engine(settings.resolved_database_url())
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT * FROM secrets ORDER BY name")).mappings().all()
    finally:
        engine.dispose()
    assert [r["name"] for r in rows] == ["DB_PASSWORD", "OTHER"]
    plain = PASSWORD.encode()
    forms = [plain, base64.b64encode(plain), plain.hex().encode(), PASSWORD.encode("utf-16-le")]
    for row in rows:
        stored = b"".join(
            bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
            for v in row.values()
        )
        assert not any(form in stored for form in forms)
        assert len(bytes(row["nonce"])) == 12
    # The same value twice: a nonce of its own each time, so nothing repeats.
    assert bytes(rows[0]["ciphertext"]) != bytes(rows[1]["ciphertext"])
    assert bytes(rows[0]["nonce"]) != bytes(rows[1]["nonce"])
    if settings.database_url is None:  # SQLite: the file holds no trace either
        data = (settings.home / "ember.db").read_bytes()
        wal = settings.home / "ember.db-wal"
        data += wal.read_bytes() if wal.exists() else b""
        assert plain not in data
    for path in settings.home.rglob("*"):
        if path.is_file() and path.name != "master.key":
            assert plain not in path.read_bytes(), path


def test_function_reads_its_secrets_and_its_logs_are_masked(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await put(ember, "DB_PASSWORD", PASSWORD)
        await ember.deploy("reader", READS_SECRET, secrets=["DB_PASSWORD"],
                           environment={"REGION": "eu"})
        answer = await ember.invoke("reader", {}, log_tail="true")
        assert answer.status_code == 200, answer.text
        # The function's own output is not changed.
        assert answer.json() == {"password": PASSWORD, "region": "eu"}
        request_id = answer.headers["X-Ember-Request-Id"]
        logs = (await ember.http.get("/functions/reader/logs",
                                     params={"request_id": request_id})).json()["logs"]
        lines = [entry["line"] for entry in logs]
        assert "connecting with *** to the database" in lines, lines
        everything = (await ember.http.get("/functions/reader/logs")).text
        assert PASSWORD not in everything
        for path in ("/functions/reader", "/functions/reader/versions", "/secrets",
                     "/functions/reader/invocations", "/stats"):
            assert PASSWORD not in (await ember.http.get(path)).text, path

        # A value set again reaches the next instance, not the running one.
        await put(ember, "DB_PASSWORD", "second-value", status=200)
        assert (await ember.invoke("reader", {})).json()["password"] == PASSWORD
        await ember.http.patch("/functions/reader", json={"config": {"memory_mb": 320}})
        await ember.settle()
        assert (await ember.invoke("reader", {})).json()["password"] == "second-value"

    run(scenario)


def test_config_secrets_must_exist_and_not_clash_with_environment(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await put(ember, "EXISTS", "v")
        code = {"zip": base64.b64encode(_zip()).decode()}
        answer = await ember.http.post("/functions", json={
            "name": "f", "config": {"secrets": ["EXISTS", "MISSING"]}, "code": code})
        assert answer.status_code == 400, answer.text
        assert list(fields(answer)) == ["config.secrets[1]"]
        assert "MISSING" in fields(answer)["config.secrets[1]"]
        answer = await ember.http.post("/functions", json={
            "name": "f", "config": {"secrets": ["EXISTS"], "environment": {"EXISTS": "x"}},
            "code": code})
        assert answer.status_code == 400, answer.text
        assert "EXISTS" in fields(answer)["config.secrets"]
        answer = await ember.http.post("/functions", json={
            "name": "f", "config": {"secrets": ["bad-name"]}, "code": code})
        assert answer.status_code == 400 and "config.secrets[0]" in fields(answer)

        await ember.deploy("f", "def handler(e, c):\n    return 1\n")
        patched = await ember.http.patch("/functions/f", json={"config": {"secrets": ["NOPE"]}})
        assert patched.status_code == 400 and list(fields(patched)) == ["config.secrets[0]"]

    run(scenario)


def test_delete_is_refused_while_a_config_lists_the_secret(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await put(ember, "DB_PASSWORD", PASSWORD)
        await ember.deploy("reader", READS_SECRET, secrets=["DB_PASSWORD"])
        published = await ember.http.post("/functions/reader/versions", json={})
        assert published.status_code == 201, published.text
        # The version keeps the name; latest no longer lists it.
        await ember.http.patch("/functions/reader", json={"config": {"secrets": []}})
        refused = await ember.http.delete("/secrets/DB_PASSWORD")
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert error["code"] == "Conflict" and "reader:1" in error["message"]
        assert error["details"]["functions"] == ["reader"]
        assert error["details"]["used_by"] == ["reader:1"]

        forced = await ember.http.delete("/secrets/DB_PASSWORD", params={"force": "true"})
        assert forced.status_code == 200, forced.text
        # Version 1 still lists it: its instances cannot start, and say why.
        answer = await ember.invoke("reader", {}, qualifier="1")
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["code"] == "SecretNotFound"
        assert "DB_PASSWORD" in answer.json()["error"]["message"]

    run(scenario)


def _zip() -> bytes:
    from tests.conftest import make_zip

    return make_zip({"main.py": "def handler(e, c):\n    return 1\n"})


def test_master_key_env_value_is_never_in_the_environment_of_instances(run: Run) -> None:
    key = base64.b64encode(os.urandom(32)).decode()

    async def scenario(ember: Ember) -> None:
        await ember.deploy("env", "import os\n\ndef handler(e, c):\n"
                                  "    return sorted(os.environ)\n")
        answer = await ember.invoke("env", {})
        assert answer.status_code == 200
        assert key not in answer.text and "EMBER_MASTER_KEY" not in answer.json()

    from pydantic import SecretStr

    run(scenario, master_key=SecretStr(key))


LEAKS_IN_ERROR = """
import os

def handler(event, context):
    raise RuntimeError("cannot log in with " + os.environ["DB_PASSWORD"])
"""


def test_an_error_holding_a_secret_is_masked_in_the_answer_and_the_records(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await put(ember, "DB_PASSWORD", PASSWORD)
        await ember.deploy("leaky", LEAKS_IN_ERROR, secrets=["DB_PASSWORD"])
        answer = await ember.invoke("leaky", {})
        assert answer.status_code == 502, answer.text
        assert PASSWORD not in answer.text
        assert "cannot log in with ***" in answer.json()["error"]["message"]
        accepted = await ember.http.post("/functions/leaky/invoke", json={},
                                         headers={"X-Ember-Invocation-Type": "async"})
        task_id = accepted.json()["request_id"]
        task = (await ember.http.get(f"/tasks/{task_id}", params={"wait_s": 30})).json()
        assert task["status"] in ("failed", "queued", "running")
        for path in ("/functions/leaky/invocations", f"/tasks/{task_id}",
                     "/functions/leaky/logs", "/dead-letters"):
            assert PASSWORD not in (await ember.http.get(path)).text, path

    run(scenario)
