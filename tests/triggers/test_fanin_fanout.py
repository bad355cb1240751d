"""n:m triggers: one function fed by three sources, one source feeding two functions, bound
to an alias — moving the alias moves the traffic without touching a trigger."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import aiomqtt

from tests.conftest import HOST_FILES
from tests.inprocess import Ember

Run = Callable[..., None]

RECORDER = """
import os

def handler(event, context):
    with open(os.environ["OUT"], "a") as f:
        f.write(f"{context.function_version} {event['type']} {context.trigger}\\n")
    return "ok"
"""


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def _until(check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_three_sources_one_function_one_source_two_functions(run: Run, tmp_path: Path) -> None:
    out, out2 = tmp_path / "recorder.txt", tmp_path / "second.txt"
    topic = f"ember-test/{uuid.uuid4().hex[:8]}"

    async def publish(payload: bytes) -> None:
        async with aiomqtt.Client("127.0.0.1", 1883) as client:
            await client.publish(f"{topic}/orders", payload, qos=1)

    async def scenario(ember: Ember) -> None:
        await ember.deploy("recorder", RECORDER, environment={"OUT": str(out)})
        await ember.http.post("/functions/recorder/versions")
        await ember.update_code("recorder", RECORDER + "\n# v2\n")
        await ember.http.post("/functions/recorder/versions")
        await ember.http.put("/functions/recorder/aliases/live", json={"version": 1})
        await ember.deploy("second", RECORDER, environment={"OUT": str(out2)})
        sources = {
            "web": {"kind": "http", "path": "/rec"},
            "tick": {"kind": "timer", "schedule": "rate(1 second)"},
            "mq": {"kind": "mqtt", "topic": f"{topic}/#"},
        }
        for name, source in sources.items():
            answer = await ember.http.post("/triggers", json={
                "name": name, "function": "recorder", "qualifier": "live", "source": source,
            })
            assert answer.status_code == 201, answer.text
        answer = await ember.http.post("/triggers", json={
            "name": "mq2", "function": "second", "source": {"kind": "mqtt", "topic": f"{topic}/#"},
        })
        assert answer.status_code == 201, answer.text
        before = {t["name"]: t["updated_at"]
                  for t in (await ember.http.get("/triggers")).json()["triggers"]}
        async def connected() -> bool:
            listed = (await ember.http.get("/triggers")).json()["triggers"]
            return all(t["status"]["connected"] for t in listed)

        for _ in range(200):
            if await connected():
                break
            await asyncio.sleep(0.05)
        assert await connected()

        async def round_of_traffic(version: str) -> None:
            assert (await ember.http.post("/http/rec", content=b"{}")).status_code == 200
            await publish(b'{"order": 1}')

            def seen() -> bool:
                mine = [line for line in _lines(out) if line.startswith(f"{version} ")]
                kinds = {line.split()[1] for line in mine}
                return {"dev.ember.http.request", "dev.ember.timer.tick",
                        "dev.ember.mqtt.message"} <= kinds

            await _until(seen)

        await round_of_traffic("1")
        await _until(lambda: any("mqtt.message mq2" in line for line in _lines(out2)))
        assert all(line.startswith("latest ") for line in _lines(out2))
        triggers_seen = {line.split()[2] for line in _lines(out)}
        assert {"web", "tick", "mq"} <= triggers_seen

        await ember.http.put("/functions/recorder/aliases/live", json={"version": 2})
        await ember.settle()
        await round_of_traffic("2")
        after = {t["name"]: t["updated_at"]
                 for t in (await ember.http.get("/triggers")).json()["triggers"]}
        assert after == before  # no trigger was touched

    run(scenario, **HOST_FILES)
