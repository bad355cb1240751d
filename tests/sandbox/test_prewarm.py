"""A deployed version's sandbox is started in the background, before its first cold start."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pytest

from tests.inprocess import Ember
from tests.waiting import until

Run = Callable[..., None]

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None,
                                reason="bubblewrap is not installed")


def test_the_first_cold_start_of_a_deployed_version_finds_its_sandbox_started(
        run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        launcher = ember.services.launcher
        await ember.deploy("ready", "def handler(e, c):\n    return 'ready'\n")
        await ember.settle()
        # The zygote of the version, and a spare forked from it.
        await until(lambda: launcher._spare is not None
                    and launcher._spare.view is not None
                    and launcher._spare.view.function == "ready",
                    message="a spare of the deployed version")
        started = launcher.zygote_starts
        answer = await ember.invoke("ready", {})
        assert answer.status_code == 200 and answer.text == "ready", answer.text
        assert answer.headers["x-ember-cold-start"] == "true"
        assert launcher.zygote_starts == started  # nothing was started on the request path

        # A change of code is a new version of the view: prepared again.
        await ember.update_code("ready", "def handler(e, c):\n    return 'again'\n")
        await ember.settle()
        await until(lambda: launcher.zygote_starts == started + 1,
                    message="the sandbox of the new code")
        assert (await ember.invoke("ready", {})).text == "again"
        assert launcher.zygote_starts == started + 1

    run(scenario, sandbox="bubblewrap")
