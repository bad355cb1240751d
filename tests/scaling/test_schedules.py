"""When scheduled actions fire: the latest firing in a span, their start and end, time
zones, and the next one — pure logic."""

from __future__ import annotations

from datetime import UTC, datetime

from ember.model.scaling import ScheduledAction
from ember.scaling.scaler import due, last_fire, next_fire


def at(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC).timestamp()


def test_the_latest_firing_in_the_span_wins() -> None:
    morning = ScheduledAction(cron="0 8 * * *", target=5)
    evening = ScheduledAction(cron="0 19 * * *", target=1)
    found = due([morning, evening], at(1, 0), at(3, 12))
    assert found is not None and found[0] == 0 and found[1] == at(3, 8)
    assert due([morning, evening], at(3, 8), at(3, 12)) is None  # already applied
    assert due([morning, evening], at(3, 7), at(3, 8)) == (0, at(3, 8), morning)


def test_actions_at_the_same_time_the_one_listed_last_wins() -> None:
    first = ScheduledAction(cron="0 8 * * *", target=5)
    paris = ScheduledAction(cron="0 9 * * *", timezone="Europe/Paris", target=2)  # 08:00 UTC
    assert due([first, paris], at(1, 7), at(1, 9)) == (1, at(1, 8), paris)


def test_start_and_end_bound_an_action() -> None:
    action = ScheduledAction(cron="0 8 * * *", target=5,
                             start=datetime(2026, 12, 5, tzinfo=UTC),
                             end=datetime(2026, 12, 7, 8, tzinfo=UTC))
    assert last_fire(action, at(4, 12)) is None  # before its start
    assert last_fire(action, at(6, 12)) == at(6, 8)
    assert last_fire(action, at(9, 12)) == at(6, 8)  # 7 Dec 08:00 is its end: excluded
    assert next_fire(action, at(1, 0)) == at(5, 8)
    assert next_fire(action, at(6, 8)) is None


def test_weekday_crons_in_a_time_zone() -> None:
    weekdays = ScheduledAction(cron="30 8 * * 1-5", timezone="America/New_York", target=3)
    # Saturday 5 December: the last firing is Friday 08:30 in New York (13:30 UTC).
    assert last_fire(weekdays, at(5, 18)) == at(4, 13, 30)
    assert next_fire(weekdays, at(5, 18)) == at(7, 13, 30)
