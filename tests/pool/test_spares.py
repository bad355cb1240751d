"""Spare processes: prepared off the request path, taken by the next cold start."""

from __future__ import annotations

import os
import signal

from ember.sandbox import CGROUP_HEADROOM_MB, CgroupSandbox
from tests.pool.conftest import Harness
from tests.waiting import until

HANDLER = """
import os

def handler(event, context):
    return os.getpid()
"""


async def _spare_ready(harness: Harness) -> str:
    spare = await until(lambda: harness.launcher._spare, message="a spare prepared")
    return spare.instance_id


def test_a_cold_start_takes_the_spare_and_a_new_one_is_prepared(sandboxed: Harness) -> None:
    async def scenario() -> None:
        spare_id = await _spare_ready(sandboxed)
        instance = await sandboxed.start(HANDLER, memory_mb=200)
        assert instance.id == spare_id
        assert (await sandboxed.invoke(instance)).body == str(instance.pid).encode()
        next_id = await _spare_ready(sandboxed)
        assert next_id != spare_id
        sandbox = instance._sandbox
        if isinstance(sandbox, CgroupSandbox) and sandbox.version == 1:
            limit = int((sandbox.path / "memory.limit_in_bytes").read_text())
            assert limit == (200 + CGROUP_HEADROOM_MB) * 1024 * 1024
        else:
            assert sandbox.limits.memory_mb == 200
        await instance.stop()

    sandboxed.run(scenario())


def test_a_dead_spare_is_replaced_by_a_normal_cold_start(zygote: Harness) -> None:
    async def scenario() -> None:
        await _spare_ready(zygote)
        spare = zygote.launcher._spare
        assert spare is not None
        os.kill(spare.process.pid, signal.SIGKILL)
        await spare.process.wait()
        # The end of its connection arrives through the event loop.
        await until(spare.reader.at_eof, message="the spare's connection closed")
        instance = await zygote.start(HANDLER)
        assert instance.id != spare.instance_id
        assert (await zygote.invoke(instance)).body == str(instance.pid).encode()
        await instance.stop()

    zygote.run(scenario())


def test_spare_taken_for_a_function_with_a_memory_limit_is_held_to_it(sandboxed: Harness) -> None:
    source = """
def handler(event, context):
    hog = bytearray(300 * 1024 * 1024)
    hog[::4096] = b"x" * len(hog[::4096])
    return len(hog)
"""

    async def scenario() -> None:
        from ember.errors import FunctionOutOfMemory

        await _spare_ready(sandboxed)
        instance = await sandboxed.start(source, memory_mb=96)
        try:
            await sandboxed.invoke(instance)
        except FunctionOutOfMemory:
            pass
        else:
            raise AssertionError("a 300 MiB allocation passed a 96 MiB limit")

    sandboxed.run(scenario())


def test_a_start_whose_process_vanished_before_its_sandbox_is_tried_again(
        zygote: Harness) -> None:
    # Its zygote closed under it, say: no code of the function ran, so it is the
    # platform's to start again, not an error for the caller.
    async def scenario() -> None:
        await _spare_ready(zygote)
        launcher = zygote.launcher
        launcher.spares = 0
        spare, launcher._spare = launcher._spare, None
        assert spare is not None
        launcher._discard(spare)
        create = launcher.sandboxes.create
        failed: list[str] = []

        def create_failing_once(instance_id: str, limits: object) -> object:
            sandbox = create(instance_id, limits)
            if not failed:
                failed.append(instance_id)

                def attach(pid: int) -> None:
                    raise ProcessLookupError(3, "No such process")

                sandbox.attach = attach
            return sandbox

        launcher.sandboxes.create = create_failing_once
        instance = await zygote.start(HANDLER)
        assert failed and instance.id != failed[0]
        assert (await zygote.invoke(instance)).body == str(instance.pid).encode()
        await instance.stop()

    zygote.run(scenario())
