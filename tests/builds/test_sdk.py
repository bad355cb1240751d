"""Dependency builds through the SDK: start one, follow its log as it grows, read it from an
offset, list a function's builds; two builds of the same requirements run pip once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from ember.client import AsyncClient
from ember.errors import BuildNotFound, InvalidCode
from tests.conftest import make_zip
from tests.inprocess import Ember

Run = Callable[..., None]

CODE = make_zip({"main.py": "X = 1\n", "requirements.txt": "inflection==0.5.1\n"})


def test_start_follow_and_read_a_build(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        client = AsyncClient(http=ember.http)
        started = await client.start_build(CODE, "fn")
        assert (started.status, started.function, started.cached) == ("running", "fn", False)
        pieces: list[str] = []
        done = await client.wait_build(started.id, on_log=pieces.append, poll_s=5)
        assert (done.status, done.cached, done.error) == ("succeeded", False, None)
        whole = await client.get_build(started.id)
        assert "".join(pieces) == whole.log and whole.log_size == len(whole.log)
        assert "Successfully installed inflection-0.5.1" in whole.log
        assert whole.log.startswith("$ python -m pip install --target ")
        later = await client.get_build(started.id, offset=whole.log_size - 5)
        assert later.log == whole.log[-5:] and later.log_offset == whole.log_size - 5

        [listed] = await client.list_builds("fn")
        assert (listed.id, listed.status, listed.log_size) == (started.id, "succeeded",
                                                               whole.log_size)
        with pytest.raises(BuildNotFound):
            await client.get_build("ghost")
        with pytest.raises(InvalidCode):
            await client.start_build(make_zip({"main.py": "X = 1\n"}))

    run(scenario)


def test_builds_of_the_same_requirements_run_pip_once(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        client = AsyncClient(http=ember.http)
        first, second = await asyncio.gather(client.start_build(CODE), client.start_build(CODE))
        ends = await asyncio.gather(client.wait_build(first.id), client.wait_build(second.id))
        assert [b.status for b in ends] == ["succeeded", "succeeded"]
        assert sorted(b.cached for b in ends) == [False, True]
        assert first.key == second.key
        cached = next(b for b in ends if b.cached)
        assert "already built" in (await client.get_build(cached.id)).log

    run(scenario)


def test_a_server_that_stops_fails_its_running_builds(run: Run) -> None:
    started: list[str] = []

    async def start(ember: Ember) -> None:
        build = await AsyncClient(http=ember.http).start_build(CODE)
        assert build.status == "running"
        started.append(build.id)

    async def read(ember: Ember) -> None:
        build = await AsyncClient(http=ember.http).get_build(started[0])
        assert build.status == "failed" and "server stopped" in (build.error or "")
        assert not [p for p in (ember.services.settings.home / "deps").iterdir()
                    if not p.name.startswith(".")]

    run(start)
    run(read)
