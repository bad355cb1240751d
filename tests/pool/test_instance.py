"""Invocations against real instance processes: results, payloads, errors, deaths."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from ember.errors import (
    FunctionError,
    FunctionOutOfMemory,
    FunctionTimeout,
    InstanceCrashed,
    InvalidPayload,
    PayloadTooLarge,
)
from ember.pool.instance import Instance, InstanceState
from ember.runtime.protocol import MAX_FRAME_BYTES
from tests.pool.conftest import Harness

pytestmark = pytest.mark.timeout(30)

ECHO = """
    def handler(event, context):
        return event
"""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_cold_start_and_invoke(harness: Harness) -> None:
    async def scenario() -> None:
        instance = await harness.start(ECHO)
        assert instance.state is InstanceState.IDLE
        assert instance.init_ms > 0
        assert instance.start_ms >= instance.init_ms
        result = await harness.invoke(instance, {"a": [1, 2]})
        assert json.loads(result.body) == {"a": [1, 2]}
        assert result.content_type == "application/json"
        assert result.duration_ms >= 0
        assert instance.state is InstanceState.IDLE
        assert instance.invocations == 1
        print(f"\ncold start {instance.start_ms:.1f} ms (init {instance.init_ms:.2f} ms)")

    harness.run(scenario())


@pytest.mark.parametrize(
    ("returned", "body", "content_type"),
    [
        ("{'k': 1}", b'{"k": 1}', "application/json"),
        ("'héllo'", "héllo".encode(), "text/plain; charset=utf-8"),
        ("b'\\x00\\xff'", b"\x00\xff", "application/octet-stream"),
        ("None", b"null", "application/json"),
        ("[1, 2.5, True]", b"[1, 2.5, true]", "application/json"),
    ],
)
def test_return_types(zygote: Harness, returned: str, body: bytes, content_type: str) -> None:
    async def scenario() -> None:
        instance = await zygote.start(f"def handler(event, context):\n    return {returned}\n")
        result = await zygote.invoke(instance, {})
        assert (result.body, result.content_type) == (body, content_type)

    zygote.run(scenario())


def test_unserializable_return_is_a_function_error(zygote: Harness) -> None:
    async def scenario() -> None:
        instance = await zygote.start("def handler(event, context):\n    return object()\n")
        with pytest.raises(FunctionError) as caught:
            await zygote.invoke(instance, {})
        assert "return value is not JSON serializable" in caught.value.message
        assert caught.value.details["type"] == "TypeError"
        assert instance.state is InstanceState.IDLE  # the instance itself is fine

    zygote.run(scenario())


def test_json_and_raw_payloads(zygote: Harness) -> None:
    source = """
        def handler(event, context):
            return {"type": type(event).__name__, "event": event if not isinstance(event, bytes)
                    else event.decode()}
    """

    async def scenario() -> None:
        instance = await zygote.start(source)
        cases = [
            (b'{"x": 1}', "application/json", {"type": "dict", "event": {"x": 1}}),
            (b'"s"', "application/cloudevents+json; charset=utf-8", {"type": "str", "event": "s"}),
            (b"", "application/json", {"type": "NoneType", "event": None}),
            (b"raw text", "text/plain", {"type": "bytes", "event": "raw text"}),
            (b"{}", "application/octet-stream", {"type": "bytes", "event": "{}"}),
        ]
        for payload, content_type, expected in cases:
            result = await instance.invoke("r", payload, content_type)
            assert json.loads(result.body) == expected, content_type
        with pytest.raises(InvalidPayload):
            await instance.invoke("r", b"{not json", "application/json")
        assert instance.state is InstanceState.IDLE
        # An event nested past the parser's recursion limit (a trigger's message is not
        # checked by the API) is refused, and the instance lives on.
        deep = b"[" * 100_000 + b"]" * 100_000
        with pytest.raises(InvalidPayload, match="nested too deeply"):
            await instance.invoke("r", deep, "application/json")
        assert instance.state is InstanceState.IDLE
        result = await instance.invoke("r", b'{"x": 2}', "application/json")
        assert json.loads(result.body) == {"type": "dict", "event": {"x": 2}}

    zygote.run(scenario())


def test_exception_is_a_function_error_with_traceback(zygote: Harness) -> None:
    source = """
        def helper(value):
            raise ValueError(f"bad value {value}")

        def handler(event, context):
            helper(event["v"])
    """

    async def scenario() -> None:
        instance = await zygote.start(source)
        with pytest.raises(FunctionError) as caught:
            await zygote.invoke(instance, {"v": 7})
        error = caught.value
        assert error.details["type"] == "ValueError"
        assert error.details["message"] == "bad value 7"
        assert "in helper" in error.details["traceback"]
        assert "main.py" in error.details["traceback"]
        assert "ember/runtime" not in error.details["traceback"]
        assert error.message == "ValueError: bad value 7"
        # The instance survives its handler's exceptions.
        with pytest.raises(FunctionError):
            await zygote.invoke(instance, {"v": 8})
        assert instance.state is InstanceState.IDLE

    zygote.run(scenario())


def test_timeout_kills_the_instance(zygote: Harness) -> None:
    source = """
        import time
        def handler(event, context):
            time.sleep(30)
    """

    async def scenario() -> None:
        instance = await zygote.start(source)
        started = time.monotonic()
        with pytest.raises(FunctionTimeout) as caught:
            await zygote.invoke(instance, {}, deadline=time.time() + 0.3)
        assert time.monotonic() - started < 5
        assert caught.value.details["request_id"] == "r1"
        assert instance.state is InstanceState.GONE
        assert not instance.alive
        assert not _pid_alive(instance.pid)
        with pytest.raises(InstanceCrashed):
            await zygote.invoke(instance, {})

    zygote.run(scenario())


def test_spec_timeout_is_the_default_deadline(zygote: Harness) -> None:
    source = """
        import time
        def handler(event, context):
            time.sleep(30)
    """

    async def scenario() -> None:
        instance = await zygote.start(source, timeout_s=0.3)
        with pytest.raises(FunctionTimeout):
            await zygote.invoke(instance, {})

    zygote.run(scenario())


@pytest.mark.parametrize(
    ("body", "check"),
    [
        ("os._exit(3)", {"exit_code": 3, "signal": None}),
        ("os.kill(os.getpid(), signal.SIGSEGV)", {"signal": signal.SIGSEGV,
                                                  "signal_name": "SIGSEGV"}),
    ],
    ids=["exit", "segfault"],
)
def test_process_death_is_a_crash(harness: Harness, body: str, check: dict[str, object]) -> None:
    source = f"""
        import os, signal
        def handler(event, context):
            {body}
    """

    async def scenario() -> None:
        instance = await harness.start(source)
        with pytest.raises(InstanceCrashed) as caught:
            await harness.invoke(instance, {})
        for key, value in check.items():
            assert caught.value.details[key] == value
        assert instance.state is InstanceState.GONE
        assert harness.launcher.instances == []

    harness.run(scenario())


def test_memory_hog_is_out_of_memory(sandboxed: Harness) -> None:
    source = """
        def handler(event, context):
            hog = b"x" * (400 * 1024 * 1024)  # touched pages, not just reserved ones
            return len(hog)
    """

    async def scenario() -> None:
        instance = await sandboxed.start(source, memory_mb=128)
        with pytest.raises(FunctionOutOfMemory) as caught:
            await sandboxed.invoke(instance, {})
        assert "128 MB" in caught.value.message
        sandbox = sandboxed.launcher.sandboxes
        assert sandbox is not None
        if sandbox.name.startswith("cgroup"):
            assert caught.value.details["signal"] == signal.SIGKILL  # the cgroup's OOM killer
        else:
            assert caught.value.details["type"] == "MemoryError"  # RLIMIT_AS
        assert not instance.alive
        await instance.wait_gone()
        # A modest allocation is fine on a fresh instance of the same function.
        small = await sandboxed.start(
            "def handler(event, context):\n    return len(b'x' * (64 * 1024 * 1024))\n",
            memory_mb=128,
        )
        assert json.loads((await sandboxed.invoke(small, {})).body) == 64 * 1024 * 1024

    sandboxed.run(scenario())


def test_environment_variables(zygote: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    source = """
        import os
        def handler(event, context):
            return {k: os.environ.get(k) for k in event}
    """

    async def scenario() -> None:
        instance = await zygote.start(source, environment={"GREETING": "hi"}, memory_mb=192,
                                      version="3")
        keys = ["GREETING", "EMBER_FUNCTION_NAME", "EMBER_FUNCTION_VERSION", "EMBER_MEMORY_MB",
                "EMBER_DATABASE_URL", "PATH"]
        result = json.loads((await zygote.invoke(instance, keys)).body)
        assert result["GREETING"] == "hi"
        assert result["EMBER_FUNCTION_NAME"] == "fn"
        assert result["EMBER_FUNCTION_VERSION"] == "3"
        assert result["EMBER_MEMORY_MB"] == "192"
        assert result["EMBER_DATABASE_URL"] is None  # the server's own settings stay out
        assert result["PATH"]

    monkeypatch.setenv("EMBER_DATABASE_URL", "sqlite:///secret")
    zygote.run(scenario())


def test_async_handler_keeps_one_loop(zygote: Harness) -> None:
    source = """
        import asyncio
        loops = []

        async def handler(event, context):
            await asyncio.sleep(0.01)
            loops.append(id(asyncio.get_running_loop()))
            return len(set(loops))
    """

    async def scenario() -> None:
        instance = await zygote.start(source)
        for _ in range(3):
            result = await zygote.invoke(instance, {})
        assert result.body == b"1"

    zygote.run(scenario())


def test_context_fields(zygote: Harness) -> None:
    source = """
        def handler(event, context):
            return {
                "request_id": context.request_id,
                "function_name": context.function_name,
                "function_version": context.function_version,
                "qualifier": context.qualifier,
                "memory_limit_mb": context.memory_limit_mb,
                "deadline": context.deadline,
                "attempt": context.attempt,
                "remaining": context.get_remaining_time_ms(),
                "logger": context.logger.name,
            }
    """

    async def scenario() -> None:
        instance = await zygote.start(source, memory_mb=256, version="4")
        deadline = time.time() + 5
        result = json.loads((await zygote.invoke(
            instance, {}, request_id="req-9", deadline=deadline, qualifier="prod", attempt=2
        )).body)
        assert result["request_id"] == "req-9"
        assert result["function_name"] == "fn"
        assert result["function_version"] == "4"
        assert result["qualifier"] == "prod"
        assert result["memory_limit_mb"] == 256
        assert result["deadline"] == pytest.approx(deadline)
        assert result["attempt"] == 2
        assert 3000 < result["remaining"] <= 5000
        assert result["logger"] == "function"

    zygote.run(scenario())


def test_logs_are_tagged_and_arrive_before_the_result(harness: Harness) -> None:
    source = """
        import logging, os, sys

        def handler(event, context):
            print("from print")
            sys.stderr.write("from stderr\\n")
            os.write(1, b"from fd 1\\n")
            os.write(2, b"from fd 2\\n")
            logging.warning("from logging %d", 42)
            context.logger.info("from context logger")
            logging.getLogger("lib").debug("below the root level")
            print("no newline at the end", end="")
            return "ok"
    """

    async def scenario() -> None:
        instance = await harness.start(source)
        for request_id in ("first", "second"):
            harness.events.clear()
            harness.logs.clear()
            await harness.invoke(instance, {}, request_id=request_id)
            lines = {log.line: log for log in harness.logs}
            assert set(lines) == {
                "from print", "from stderr", "from fd 1", "from fd 2", "from logging 42",
                "from context logger", "no newline at the end",
            }
            assert all(log.request_id == request_id for log in harness.logs)
            assert lines["from print"].level == "INFO"
            assert lines["from fd 1"].level == "INFO"
            assert lines["from stderr"].level == "ERROR"
            assert lines["from fd 2"].level == "ERROR"
            assert lines["from logging 42"].level == "WARNING"
            assert lines["from context logger"].level == "INFO"
            assert all(abs(log.ts - time.time()) < 30 for log in harness.logs)
            assert harness.events[-1] == "result"
            assert harness.events.count("result") == 1

    harness.run(scenario())


def test_logging_exception_keeps_its_traceback_in_one_line(zygote: Harness) -> None:
    source = """
        import logging
        def handler(event, context):
            try:
                1 / 0
            except ZeroDivisionError:
                logging.exception("failed")
    """

    async def scenario() -> None:
        instance = await zygote.start(source)
        await zygote.invoke(instance, {})
        [record] = zygote.logs
        assert record.level == "ERROR"
        assert record.line.startswith("failed\nTraceback")
        assert "ZeroDivisionError" in record.line

    zygote.run(scenario())


def test_busy_instance_refuses_a_second_request(zygote: Harness) -> None:
    source = """
        import time
        def handler(event, context):
            time.sleep(event)
            return event
    """

    async def scenario() -> None:
        import asyncio

        instance = await zygote.start(source)
        first = asyncio.create_task(zygote.invoke(instance, 0.3))
        await asyncio.sleep(0.05)
        assert instance.state is InstanceState.BUSY
        with pytest.raises(RuntimeError, match="busy"):
            await zygote.invoke(instance, 0)
        assert (await first).body == b"0.3"
        assert instance.state.value == "idle"  # (mypy keeps the narrowing to BUSY)

    zygote.run(scenario())


def test_cancelled_invocation_drops_the_instance(zygote: Harness) -> None:
    source = """
        import time
        def handler(event, context):
            time.sleep(30)
    """

    async def scenario() -> None:
        import asyncio

        instance: Instance = await zygote.start(source)
        task = asyncio.create_task(zygote.invoke(instance, {}))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await instance.wait_gone()
        assert instance.state is InstanceState.GONE

    zygote.run(scenario())


def test_a_deadline_already_past_spares_the_instance(zygote: Harness) -> None:
    async def scenario() -> None:
        instance = await zygote.start("def handler(event, context):\n    return 1\n")
        with pytest.raises(FunctionTimeout, match="passed before"):
            await zygote.invoke(instance, {}, deadline=time.time() - 1)
        assert instance.state is InstanceState.IDLE
        assert (await zygote.invoke(instance, {})).body == b"1"

    zygote.run(scenario())


def test_stop_while_busy_lets_the_invocation_finish(zygote: Harness) -> None:
    source = """
        import time
        def handler(event, context):
            time.sleep(0.2)
            return "done"
    """

    async def scenario() -> None:
        import asyncio

        instance = await zygote.start(source)
        running = asyncio.create_task(zygote.invoke(instance, {}))
        await asyncio.sleep(0.05)
        stopping = asyncio.create_task(instance.stop(grace_s=5))
        assert (await running).body == b"done"
        assert instance.state in (InstanceState.DRAINING, InstanceState.GONE)
        await stopping
        assert instance.exit_status is not None and instance.exit_status.code == 0

    zygote.run(scenario())


def test_large_payload_and_result(harness: Harness) -> None:
    source = """
        import hashlib
        def handler(event, context):
            return hashlib.sha256(event).hexdigest().encode() + event
    """

    async def scenario() -> None:
        import hashlib

        payload = os.urandom(5 * 1024 * 1024)
        instance = await harness.start(source)
        result = await instance.invoke("big", payload, "application/octet-stream")
        assert result.body[:64] == hashlib.sha256(payload).hexdigest().encode()
        assert result.body[64:] == payload

    harness.run(scenario())


def test_log_flood_and_long_lines(zygote: Harness) -> None:
    source = """
        import sys
        def handler(event, context):
            for i in range(5000):
                print(f"line {i}")
            sys.stdout.write("x" * 200_000 + "\\n")
            return "ok"
    """

    async def scenario() -> None:
        instance = await zygote.start(source)
        await zygote.invoke(instance, {}, request_id="flood")
        lines = [log.line for log in zygote.logs]
        assert lines[:5000] == [f"line {i}" for i in range(5000)]
        assert "".join(lines[5000:]) == "x" * 200_000
        assert all(len(line) <= 64 * 1024 for line in lines)
        assert zygote.events[-1] == "result"

    zygote.run(scenario())


def test_oversized_payload_and_result_are_refused(zygote: Harness) -> None:
    source = f"""
        def handler(event, context):
            return b"x" * {MAX_FRAME_BYTES + 1}
    """

    async def scenario() -> None:
        instance = await zygote.start(source, memory_mb=512)
        with pytest.raises(PayloadTooLarge):
            await instance.invoke("big", b"x" * (MAX_FRAME_BYTES + 1), "text/plain")
        assert instance.state is InstanceState.IDLE
        with pytest.raises(FunctionError, match=r"over the \d+ byte limit"):
            await zygote.invoke(instance, {})
        assert instance.state is InstanceState.IDLE

    zygote.run(scenario())
