"""Triggers through the API: the resource's rules, and HTTP triggers end to end."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import aiomqtt

from ember.clock import ManualClock
from ember.triggers.base import SUBMIT_TRIES
from tests.inprocess import Ember
from tests.triggers.helpers import eventually
from tests.triggers.kits import MqttKit

Run = Callable[..., None]

REQUEST = """
import base64, json

def handler(event, context):
    data = event["data"]
    body = data["body"]
    if data["isBase64Encoded"]:
        body = base64.b64decode(body)
        body = {"bytes": list(body)}
    if data["path"] == "/teapot":
        return {"statusCode": 418, "headers": {"x-kind": "teapot"}, "body": "short and stout"}
    return {
        "type": event["type"], "specversion": event["specversion"],
        "trigger": context.trigger, "ext": event.get("embertrigger"),
        "method": data["method"], "path": data["path"], "query": data["query"],
        "header": data["headers"].get("x-custom"), "body": body,
    }
"""


async def trigger(ember: Ember, name: str, function: str, source: dict[str, Any],
                  **extra: Any) -> dict[str, Any]:
    answer = await ember.http.post(
        "/triggers", json={"name": name, "function": function, "source": source, **extra}
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def test_trigger_resource_rules(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("fn", REQUEST)
        created = await trigger(ember, "web", "fn", {"kind": "http", "path": "/orders"})
        assert created["state"] == "enabled" and created["status"]["connected"] is True
        assert created["source"]["methods"] == ["GET", "POST"]

        bad = await ember.http.post("/triggers", json={
            "name": "m", "function": "fn", "source": {"kind": "mqtt", "qos": 5},
        })
        assert bad.status_code == 400
        fields = {e["field"] for e in bad.json()["error"]["details"]["errors"]}
        assert fields == {"source.topic", "source.qos"}, fields
        unknown_kind = await ember.http.post("/triggers", json={
            "name": "m", "function": "fn", "source": {"kind": "carrier-pigeon"},
        })
        assert unknown_kind.status_code == 400
        no_fn = await ember.http.post("/triggers", json={
            "name": "m", "function": "ghost", "source": {"kind": "http", "path": "/x"},
        })
        assert no_fn.status_code == 404
        no_alias = await ember.http.post("/triggers", json={
            "name": "m", "function": "fn", "qualifier": "live",
            "source": {"kind": "http", "path": "/x"},
        })
        assert no_alias.json()["error"]["code"] == "AliasNotFound"
        taken = await ember.http.post("/triggers", json={
            "name": "other", "function": "fn", "source": {"kind": "http", "path": "/orders"},
        })
        assert taken.status_code == 409
        bad_cron = await ember.http.post("/triggers", json={
            "name": "t", "function": "fn",
            "source": {"kind": "timer", "schedule": "cron(99 * * * *)"},
        })
        assert bad_cron.json()["error"]["details"]["errors"][0]["field"] == "source.schedule"

        patched = await ember.http.patch("/triggers/web", json={"description": "orders API"})
        assert patched.json()["description"] == "orders API"
        listed = (await ember.http.get("/triggers", params={"function": "fn"})).json()
        assert [t["name"] for t in listed["triggers"]] == ["web"]
        assert (await ember.http.post("/triggers/web/pause")).json()["state"] == "paused"
        assert (await ember.http.post("/triggers/web/resume")).json()["state"] == "enabled"
        assert (await ember.http.delete("/triggers/web")).status_code == 200
        missing = await ember.http.get("/triggers/web")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "TriggerNotFound"

        await trigger(ember, "again", "fn", {"kind": "http", "path": "/again"})
        await ember.http.delete("/functions/fn")
        await ember.settle()
        assert (await ember.http.get("/triggers")).json()["triggers"] == []

    run(scenario)


def test_http_trigger_passes_the_request_and_the_answer(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("api", REQUEST)
        await trigger(ember, "web", "api",
                      {"kind": "http", "path": "/shop", "methods": ["GET", "POST", "PUT"]})
        answer = await ember.http.post(
            "/http/shop/items/7?color=red", content=b'{"qty": 2}',
            headers={"x-custom": "yes", "content-type": "application/json"},
        )
        assert answer.status_code == 200, answer.text
        seen = answer.json()
        assert seen["type"] == "dev.ember.http.request" and seen["specversion"] == "1.0"
        assert seen["trigger"] == "web" and seen["ext"] == "web"
        assert seen["method"] == "POST" and seen["path"] == "/items/7"
        assert seen["query"] == {"color": "red"} and seen["header"] == "yes"
        assert seen["body"] == '{"qty": 2}'
        assert answer.headers["x-ember-request-id"]

        binary = await ember.http.put("/http/shop/blob", content=bytes([0, 255, 1]))
        assert binary.json()["body"] == {"bytes": [0, 255, 1]}

        teapot = await ember.http.get("/http/shop/teapot")
        assert teapot.status_code == 418 and teapot.text == "short and stout"
        assert teapot.headers["x-kind"] == "teapot"

        wrong = await ember.http.delete("/http/shop/items/7")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, POST, PUT"
        assert (await ember.http.get("/http/elsewhere")).status_code == 404

        await ember.http.post("/triggers/web/pause")
        assert (await ember.http.get("/http/shop")).status_code == 503
        await ember.http.post("/triggers/web/resume")
        assert (await ember.http.get("/http/shop")).status_code == 200
        await ember.http.post("/triggers/web/disable")
        assert (await ember.http.get("/http/shop")).status_code == 404

        status = (await ember.http.get("/triggers/web")).json()["status"]
        assert status["events"] >= 4 and status["invocations"] >= 4

    run(scenario)


def test_a_request_takes_the_http_trigger_with_the_longest_path_above_it(run: Run) -> None:
    which = "def handler(event, context):\n    return [context.trigger, event['data']['path']]\n"

    async def scenario(ember: Ember) -> None:
        await ember.deploy("which", which)
        for name, path in (("root", "/"), ("shop", "/shop"), ("items", "/shop/items"),
                           ("other", "/shopping")):
            await trigger(ember, name, "which", {"kind": "http", "path": path})

        async def route(path: str) -> list[str]:
            answer = await ember.http.get(f"/http{path}")
            assert answer.status_code == 200, answer.text
            return list(answer.json())

        assert await route("/") == ["root", "/"]
        assert await route("/elsewhere/x") == ["root", "/elsewhere/x"]
        assert await route("/shop") == ["shop", "/"]
        assert await route("/shop/cart") == ["shop", "/cart"]
        assert await route("/shopping/list") == ["other", "/list"]
        assert await route("/shopx") == ["root", "/shopx"]
        assert await route("/shop/items") == ["items", "/"]
        assert await route("/shop/items/7") == ["items", "/7"]
        assert await route("/shop/items/") == ["items", "/"]
        await ember.http.post("/triggers/items/disable")
        assert await route("/shop/items/7") == ["shop", "/items/7"]
        await ember.http.delete("/triggers/shop")
        assert await route("/shop/items/7") == ["root", "/shop/items/7"]
        await ember.http.post("/triggers/items/enable")
        assert await route("/shop/items/7") == ["items", "/7"]

    run(scenario)


def test_http_trigger_api_key(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("api", "def handler(event, context):\n    return 'secret'\n")
        key = "k" * 24
        created = await trigger(ember, "guarded", "api",
                                {"kind": "http", "path": "/guarded", "auth": "api_key",
                                 "api_key": key})
        assert created["source"]["api_key"] == "***"
        assert (await ember.http.get("/http/guarded")).status_code == 401
        wrong = await ember.http.get("/http/guarded", headers={"x-api-key": "x" * 24})
        assert wrong.status_code == 401
        ok = await ember.http.get("/http/guarded", headers={"x-api-key": key})
        assert ok.status_code == 200 and ok.text == "secret"
        bearer = await ember.http.get("/http/guarded",
                                      headers={"authorization": f"Bearer {key}"})
        assert bearer.status_code == 200

    run(scenario)


def test_http_trigger_on_an_alias_follows_the_alias(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("app", "def handler(e, c):\n    return 'v1'\n")
        await ember.http.post("/functions/app/versions")
        await ember.update_code("app", "def handler(e, c):\n    return 'v2'\n")
        await ember.http.post("/functions/app/versions")
        await ember.http.put("/functions/app/aliases/live", json={"version": 1})
        await trigger(ember, "site", "app", {"kind": "http", "path": "/"}, qualifier="live")
        assert (await ember.http.get("/http/anything")).text == "v1"
        await ember.http.put("/functions/app/aliases/live", json={"version": 2})
        await ember.settle()
        answer = await ember.http.get("/http/anything")
        assert answer.text == "v2" and answer.headers["x-ember-version"] == "2"
        body = base64.b64encode(b"x").decode()
        assert body

    run(scenario)


def test_deleting_a_function_stops_and_removes_its_triggers(run: Run) -> None:
    """The function's HTTP routes answer 404 as soon as the deletion is answered, its timer
    fires no more, and a function re-created under the same name has no triggers."""
    clock = ManualClock()

    async def ticks(ember: Ember) -> list[dict[str, Any]]:
        answer = await ember.http.get("/functions/fn/tasks")
        assert answer.status_code == 200, answer.text
        return list(answer.json()["tasks"])


    async def scenario(ember: Ember) -> None:
        await ember.deploy("fn", REQUEST)
        await trigger(ember, "web", "fn", {"kind": "http", "path": "/orders"})
        await trigger(ember, "tick", "fn", {"kind": "timer", "schedule": "rate(1 minute)"})
        assert (await ember.http.get("/http/orders")).status_code == 200
        supervisor = ember.services.supervisor
        clock.advance(60)
        await eventually(lambda: supervisor.status("tick").invocations == 1, what="a tick")
        assert len(await ticks(ember)) == 1

        assert (await ember.http.delete("/functions/fn")).status_code == 200
        # No settling: the routes are gone when the deletion is answered.
        gone = await ember.http.get("/http/orders")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "NotFound"
        assert (await ember.http.get("/triggers")).json()["triggers"] == []
        assert (await ember.http.get("/triggers/tick")).status_code == 404

        await supervisor.wait_settled()
        assert supervisor.running() == []  # the sources stopped

        await ember.deploy("fn", REQUEST)
        assert (await ember.http.get("/triggers", params={"function": "fn"})).json() == {
            "triggers": []}
        clock.advance(120)
        await ember.settle()
        assert await ticks(ember) == []  # no timer fires for the new function
        assert (await ember.http.get("/http/orders")).status_code == 404

    run(scenario, clock=clock)


def test_an_alias_or_version_a_trigger_targets_cannot_be_deleted(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("app", "def handler(e, c):\n    return 'v1'\n")
        await ember.http.post("/functions/app/versions")
        await ember.update_code("app", "def handler(e, c):\n    return 'v2'\n")
        await ember.http.post("/functions/app/versions")
        await ember.http.put("/functions/app/aliases/live", json={"version": 2})
        await trigger(ember, "site", "app", {"kind": "http", "path": "/site"}, qualifier="live")
        await trigger(ember, "tick", "app", {"kind": "timer", "schedule": "rate(1 hour)"},
                      qualifier="live")
        await trigger(ember, "pinned", "app", {"kind": "http", "path": "/v1"}, qualifier="1")

        refused = await ember.http.delete("/functions/app/aliases/live")
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert error["code"] == "Conflict"
        assert error["details"]["triggers"] == ["site", "tick"]
        assert "site, tick" in error["message"]
        assert (await ember.http.get("/functions/app/aliases/live")).status_code == 200
        assert (await ember.http.get("/http/site")).text == "v2"

        version = await ember.http.delete("/functions/app/versions/1")
        assert version.status_code == 409, version.text
        assert version.json()["error"]["details"]["triggers"] == ["pinned"]
        assert (await ember.http.get("/http/v1")).text == "v1"

        for name in ("site", "tick", "pinned"):
            assert (await ember.http.delete(f"/triggers/{name}")).status_code == 200
        assert (await ember.http.delete("/functions/app/aliases/live")).status_code == 200
        assert (await ember.http.delete("/functions/app/versions/1")).status_code == 200

    run(scenario)


def test_an_mqtt_message_too_large_for_the_queue_is_given_up(run: Run) -> None:
    """It is tried a bounded number of times, then acknowledged and counted; the status
    says why, and the messages after it are queued."""
    kit = MqttKit()

    async def scenario(ember: Ember) -> None:
        await ember.deploy("fn", "def handler(e, c):\n    return None\n")
        await trigger(ember, kit.name, "fn", {"kind": "mqtt", "topic": kit.topic})
        await eventually(lambda: ember.services.supervisor.status(kit.name).connected)
        async with aiomqtt.Client("127.0.0.1", 1883) as client:
            await client.publish(f"{kit.prefix}/big", b"x" * 4096, qos=1)
            await client.publish(f"{kit.prefix}/small", b'"small"', qos=1)

        running = ember.services.supervisor.status(kit.name)
        await eventually(lambda: running.dropped == 1 and running.invocations == 1,
                         what="the big message given up and the small one queued")
        status = (await ember.http.get(f"/triggers/{kit.name}")).json()["status"]
        assert status["dropped"] == 1, status
        assert status["failures"] == SUBMIT_TRIES
        assert status["last_error"].startswith("PayloadTooLarge")
        tasks = (await ember.http.get("/functions/fn/tasks")).json()["tasks"]
        assert len(tasks) == 1
        await ember.http.delete(f"/triggers/{kit.name}")
        await kit.aclose()

    run(scenario, max_async_payload_kb=1)
