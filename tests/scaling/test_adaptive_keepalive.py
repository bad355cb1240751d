"""The adaptive keep-alive on a real function and the manual clock: a function called every
half hour is unloaded after each call once its gaps are learned, and pre-warmed before the
next one, which then starts warm."""

from __future__ import annotations

from typing import Any

from ember.clock import ManualClock
from tests.inprocess import Ember
from tests.router.test_invoke import tick

Run = Any

ECHO = '''
def handler(event, context):
    return event
'''


def test_a_half_hourly_function_is_unloaded_then_prewarmed_before_its_next_call(
        run: Run) -> None:
    clock = ManualClock()

    async def scenario(ember: Ember) -> None:
        await ember.deploy("timer", ECHO, keep_alive_policy="adaptive", keep_alive_s=120)
        colds = []
        reclaimed = []
        for _ in range(8):
            answer = await ember.invoke("timer", 1)
            assert answer.status_code == 200, answer.text
            colds.append(answer.headers["x-ember-cold-start"] == "true")
            for minute in range(1, 31):
                await tick(clock, 60)
                if minute == 10:
                    reclaimed.append(ember.instances("timer") == 0)
            await tick(clock, 30)  # the next call comes 30.5 minutes after this one
        # While learning (5 gaps), keep_alive_s (2 min) holds: each call starts cold and
        # the instance is gone 10 minutes on. Then the window around the gaps opens.
        assert colds[:6] == [True] * 6
        assert colds[6:] == [False, False]
        assert all(reclaimed)  # unloaded between calls all along
        view = (await ember.http.get("/functions/timer/instances")).json()
        # Gaps of 30.5 min: warm from 30 min, to 31 min + 10 %.
        assert view["pools"][0]["keep_alive"] == (
            "adaptive (7 idle times): pre-warm at 30.0 min, keep to 34.1 min")

    run(scenario, clock=clock)
