"""Instance life: initialization, its failures, hooks, layers, stop and kill."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ember.errors import InitError
from ember.pool.instance import InstanceSpec, InstanceState
from tests.pool.conftest import Harness

pytestmark = pytest.mark.timeout(30)


def test_import_error_is_an_init_error(harness: Harness) -> None:
    async def scenario() -> None:
        with pytest.raises(InitError) as caught:
            await harness.start("import not_a_module_anywhere\n")
        assert caught.value.details["type"] == "ModuleNotFoundError"
        assert "not_a_module_anywhere" in caught.value.details["message"]
        assert "main.py" in caught.value.details["traceback"]
        assert harness.launcher.instances == []

    harness.run(scenario())


def test_missing_handler_is_an_init_error(zygote: Harness) -> None:
    async def scenario() -> None:
        with pytest.raises(InitError) as caught:
            await zygote.start("def other(event, context):\n    pass\n")
        assert caught.value.details["type"] == "AttributeError"
        assert "'main.handler'" in caught.value.details["message"]
        with pytest.raises(InitError) as caught:
            await zygote.start("handler = 3\n")
        assert caught.value.details["type"] == "TypeError"

    zygote.run(scenario())


def test_initializer_error_is_an_init_error(zygote: Harness) -> None:
    source = """
        def init(context):
            raise RuntimeError("no database")

        def handler(event, context):
            return 1
    """

    async def scenario() -> None:
        with pytest.raises(InitError) as caught:
            await zygote.start(source, initializer="main.init")
        assert caught.value.details["type"] == "RuntimeError"
        assert caught.value.message == "RuntimeError: no database"
        assert "in init" in caught.value.details["traceback"]

    zygote.run(scenario())


def test_initializer_timeout_is_an_init_error(zygote: Harness) -> None:
    source = """
        import time
        def init(context):
            time.sleep(30)

        def handler(event, context):
            return 1
    """

    async def scenario() -> None:
        started = time.monotonic()
        with pytest.raises(InitError) as caught:
            await zygote.start(source, initializer="main.init", initializer_timeout_s=0.3)
        assert time.monotonic() - started < 5
        assert caught.value.details["type"] == "InitTimeout"
        assert zygote.launcher.instances == []

    zygote.run(scenario())


def test_death_during_init_is_an_init_error(zygote: Harness) -> None:
    async def scenario() -> None:
        with pytest.raises(InitError) as caught:
            await zygote.start("import os\nos._exit(5)\n")
        assert caught.value.details["type"] == "InstanceCrashed"
        assert caught.value.details["exit_code"] == 5

    zygote.run(scenario())


def test_initializer_runs_once(harness: Harness) -> None:
    source = """
        import os
        calls = []

        def init(context):
            calls.append((context.request_id, context.function_name,
                          context.get_remaining_time_ms() > 0))
            print("initializing")

        def handler(event, context):
            return {"calls": calls, "pid": os.getpid()}
    """

    async def scenario() -> None:
        spec = harness.spec(source, initializer="main.init")
        instance = await harness.launcher.launch(spec, request_id="cold-1")
        assert [(log.request_id, log.line) for log in harness.logs] == [("cold-1", "initializing")]
        results = [json.loads((await harness.invoke(instance, {})).body) for _ in range(3)]
        assert all(r["calls"] == [[None, "fn", True]] for r in results)
        assert {r["pid"] for r in results} == {instance.pid}

    harness.run(scenario())


def test_async_initializer_and_colon_entry_points(zygote: Harness) -> None:
    files = {
        "pkg__init__.py": "",
        "pkg__app.py": """
            import asyncio
            state = {}

            async def setup(context):
                await asyncio.sleep(0)
                state["ready"] = True

            def handle(event, context):
                return state
        """,
    }

    async def scenario() -> None:
        code = zygote.code("", **files)
        spec = InstanceSpec("fn", "latest", code, "pkg.app:handle", {}, 128, 5.0,
                            initializer="pkg.app:setup")
        instance = await zygote.launcher.launch(spec)
        assert json.loads((await zygote.invoke(instance, {})).body) == {"ready": True}

    zygote.run(scenario())


def test_code_dir_is_cwd_and_layers_are_importable(zygote: Harness, tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    layer.mkdir()
    (layer / "shared_helpers.py").write_text("def shout(text):\n    return text.upper()\n")
    source = """
        import os
        import shared_helpers

        def handler(event, context):
            return {"cwd": os.getcwd(), "data": open("data.txt").read(),
                    "shout": shared_helpers.shout("hi")}
    """

    async def scenario() -> None:
        code = zygote.code(source, **{"data.txt": "local file"})
        spec = InstanceSpec("fn", "latest", code, "main.handler", {}, 128, 5.0,
                            layer_dirs=(layer,))
        instance = await zygote.launcher.launch(spec)
        result = json.loads((await zygote.invoke(instance, {})).body)
        assert result == {"cwd": str(code), "data": "local file", "shout": "HI"}

    zygote.run(scenario())


def test_pre_stop_runs_on_stop(harness: Harness, tmp_path: Path) -> None:
    marker = tmp_path / "stopped"
    source = f"""
        def bye():
            print("stopping")
            open({str(marker)!r}, "w").write("done")

        def handler(event, context):
            return 1
    """

    async def scenario() -> None:
        instance = await harness.start(source, pre_stop="main.bye")
        await harness.invoke(instance, {})
        await instance.stop(grace_s=5)
        assert instance.state is InstanceState.GONE
        assert instance.exit_status is not None and instance.exit_status.code == 0
        assert marker.read_text() == "done"
        assert [(log.request_id, log.line) for log in harness.logs] == [(None, "stopping")]
        await instance.stop()  # idempotent
        assert harness.launcher.instances == []

    harness.run(scenario())


def test_stop_kills_a_slow_pre_stop(zygote: Harness) -> None:
    source = """
        import time
        def bye(context):
            time.sleep(30)

        def handler(event, context):
            return 1
    """

    async def scenario() -> None:
        instance = await zygote.start(source, pre_stop="main.bye", pre_stop_timeout_s=0.3)
        started = time.monotonic()
        await instance.stop()  # within the spec's pre_stop_timeout_s
        assert time.monotonic() - started < 5
        assert instance.exit_status is not None and instance.exit_status.signal == 9
        assert [(log.request_id, log.level, log.line) for log in zygote.logs] == [
            (None, "ERROR", "pre_stop did not finish within 0.3 s: the instance is killed")]

    zygote.run(scenario())


def test_kill_and_wait_gone(zygote: Harness) -> None:
    async def scenario() -> None:
        instance = await zygote.start("def handler(event, context):\n    return 1\n")
        assert instance.alive
        instance.kill()
        assert not instance.alive
        status = await instance.wait_gone()
        assert status.signal == 9
        instance.kill()  # idempotent

    zygote.run(scenario())


def test_instance_dying_while_idle_is_noticed(zygote: Harness) -> None:
    source = """
        import os, threading, time
        def handler(event, context):
            threading.Timer(0.05, lambda: os._exit(7)).start()
            return 1
    """

    async def scenario() -> None:
        instance = await zygote.start(source)
        await zygote.invoke(instance, {})
        status = await instance.wait_gone()
        assert status.code == 7
        assert instance.state is InstanceState.GONE

    zygote.run(scenario())
