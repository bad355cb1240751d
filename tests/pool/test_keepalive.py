"""The keep-alive policies as pure logic: the windows they choose from the idle times seen
— the paper's percentile rule, then Ember's default, the cheapest window at a price."""

from __future__ import annotations

import random

import pytest

from ember.pool.keepalive import FixedKeepAlive, HybridHistogram, policy_for

MINUTE = 60.0
HOUR = 3600.0


def test_fixed_keeps_an_instance_for_keep_alive_whatever_it_sees() -> None:
    policy = FixedKeepAlive(600.0)
    for idle_s in (1.0, 3 * HOUR, 5.0):
        policy.observe(idle_s)
    assert policy.window() == (0.0, 600.0)


def test_policy_for_names_both_policies_and_refuses_others() -> None:
    assert policy_for("fixed", 120.0).window() == (0.0, 120.0)
    adaptive = policy_for("adaptive", 120.0)
    assert isinstance(adaptive, HybridHistogram)
    with pytest.raises(ValueError, match="'fixed' or 'adaptive'"):
        policy_for("lru", 120.0)


def test_a_new_function_is_kept_for_the_whole_range_while_learning() -> None:
    policy = HybridHistogram(rule="percentile")
    assert policy.window() == (0.0, 4 * HOUR)
    for _ in range(policy.min_samples - 1):
        policy.observe(30 * MINUTE)
    assert policy.mode == "learning"
    assert policy.window() == (0.0, 4 * HOUR)


def test_a_timer_every_30_minutes_is_pre_warmed_near_27_minutes_and_kept_briefly() -> None:
    policy = HybridHistogram(rule="percentile")
    rng = random.Random(1)
    for _ in range(50):
        policy.observe(30 * MINUTE - 2.0 + rng.uniform(-1.0, 1.0))  # 2 s run, jitter
    start, end = policy.window()
    assert policy.mode == "histogram"
    # Head and tail both in the 29th minute: lower edge less 10 %, upper edge plus 10 %.
    assert start == pytest.approx(29 * MINUTE * 0.9)  # 26.1 minutes
    assert end == pytest.approx(30 * MINUTE * 1.1)  # 33 minutes
    assert end - start < 7 * MINUTE


def test_a_busy_function_keeps_its_instance_from_the_start_for_a_short_while() -> None:
    policy = HybridHistogram(rule="percentile")
    rng = random.Random(2)
    for _ in range(500):
        policy.observe(rng.expovariate(1 / 5.0))  # a request every ~5 s
    assert policy.mode == "histogram"
    assert policy.window() == pytest.approx((0.0, 1.1 * MINUTE))


def test_idle_times_spread_over_the_range_fall_back_to_the_range() -> None:
    policy = HybridHistogram(rule="percentile")
    rng = random.Random(3)
    for _ in range(2000):
        policy.observe(rng.uniform(0, 4 * HOUR))
    assert policy.cv() < policy.cv_threshold
    assert policy.mode == "learning"
    assert policy.window() == (0.0, 4 * HOUR)


def test_the_window_switches_once_the_histogram_becomes_representative() -> None:
    policy = HybridHistogram(rule="percentile", min_samples=5)
    rng = random.Random(4)
    # Spread idle times: too flat to trust.
    for _ in range(400):
        policy.observe(rng.uniform(0, 4 * HOUR))
    before = policy.mode, policy.window()
    # The function turns into an hourly timer: its bin soon dominates the histogram.
    for _ in range(400):
        policy.observe(HOUR - 1.0)
    assert policy.cv() >= 2.0
    assert before == ("learning", (0.0, 4 * HOUR))
    assert policy.mode == "histogram"
    start, end = policy.window()
    assert 0 < start < HOUR < end


def test_idle_times_mostly_beyond_the_range_are_predicted_from_the_latest() -> None:
    policy = HybridHistogram(rule="percentile")
    for _ in range(6):
        policy.observe(24 * HOUR)  # a daily job
    assert policy.mode == "out-of-bounds"
    assert policy.window() == pytest.approx((0.85 * 24 * HOUR, 1.15 * 24 * HOUR))
    # It moves to every 12 hours: the prediction follows the latest gaps most.
    for _ in range(4):
        policy.observe(12 * HOUR)
    start, end = policy.window()
    assert 0.85 * 12 * HOUR <= start < 0.85 * 13 * HOUR
    assert end < 1.15 * 13 * HOUR


def test_a_few_idle_times_beyond_the_range_leave_the_histogram_in_charge() -> None:
    policy = HybridHistogram(rule="percentile")
    for _ in range(20):
        policy.observe(10 * MINUTE - 1.0)
    policy.observe(9 * HOUR)
    assert policy.mode == "histogram"
    assert policy.window() == pytest.approx((9 * MINUTE * 0.9, 11 * MINUTE))


def test_memory_stays_bounded_however_many_idle_times_it_sees() -> None:
    policy = HybridHistogram(oob_memory=8)
    rng = random.Random(5)
    for _ in range(20_000):
        policy.observe(rng.choice((rng.uniform(0, 4 * HOUR), rng.uniform(5, 50) * HOUR)))
    assert len(policy._bins) == 240
    assert len(policy._recent_oob) == 8
    assert policy.samples == 20_000


@pytest.mark.parametrize("kwargs", [
    {"bin_s": 0}, {"bin_s": 5 * HOUR}, {"head_pct": 50, "tail_pct": 10}, {"margin": 1.0},
    {"oob_threshold": 0}, {"min_samples": 0}, {"cold_cost_s": -1},
])
def test_parameters_out_of_range_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        HybridHistogram(**kwargs)  # type: ignore[arg-type]


# -- the cost rule (the default) ---------------------------------------------------------


def test_adaptive_keeps_keep_alive_while_it_learns() -> None:
    policy = policy_for("adaptive", 600.0)
    assert isinstance(policy, HybridHistogram) and policy.rule == "cost"
    assert policy.window() == (0.0, 600.0)
    for _ in range(policy.min_samples - 1):
        policy.observe(30 * MINUTE)
    assert policy.window() == (0.0, 600.0)


def test_a_timer_is_pre_warmed_just_before_its_tick_and_kept_one_bin() -> None:
    policy = HybridHistogram(cold_cost_s=600.0)
    rng = random.Random(1)
    for _ in range(50):
        policy.observe(30 * MINUTE + rng.uniform(-20, 20))
    start, end = policy.window()
    # Idle times fall in minutes 29 and 30: warm from 29 min, to 31 min (+10 %).
    assert start == 29 * MINUTE
    assert end == pytest.approx(31 * MINUTE * 1.1)


def test_a_bursty_function_keeps_only_its_short_gaps_warm() -> None:
    policy = HybridHistogram(cold_cost_s=600.0)
    rng = random.Random(2)
    for _ in range(40):  # bursts of 20 calls a few seconds apart, an hour or two between
        for _ in range(19):
            policy.observe(rng.uniform(1, 10))
        policy.observe(rng.uniform(1 * HOUR, 3 * HOUR))
    assert policy.window() == pytest.approx((0.0, MINUTE * 1.1))


def test_rare_scattered_calls_buy_no_window_at_all() -> None:
    policy = HybridHistogram(cold_cost_s=120.0)
    rng = random.Random(3)
    for _ in range(100):
        policy.observe(rng.uniform(0, 4 * HOUR))
    assert policy.window() == (0.0, 0.0)  # keeping anything warm costs more than it saves


def test_random_gaps_are_kept_warm_only_when_a_cold_start_is_dearer_than_the_wait() -> None:
    """Memoryless (Poisson) gaps averaging 20 minutes: waiting for the next call costs
    20 minutes of idle time on average however long one has waited, so keeping warm pays
    only when a cold start is priced above that — and then it pays to wait long."""
    rng = random.Random(4)
    gaps = [rng.expovariate(1 / (20 * MINUTE)) for _ in range(500)]
    windows = []
    for price in (60.0, 10 * MINUTE, HOUR):
        policy = HybridHistogram(cold_cost_s=price)
        for gap in gaps:
            policy.observe(gap)
        windows.append(policy.window())
    assert windows[0] == windows[1] == (0.0, 0.0)
    start, end = windows[2]
    assert start == 0.0 and end > 5 * 20 * MINUTE


def test_the_cheapest_window_costs_no_more_than_any_fixed_keep_alive() -> None:
    rng = random.Random(6)
    gaps = [rng.choice((rng.uniform(0, 90), rng.uniform(25, 35) * MINUTE,
                        rng.uniform(2, 3) * HOUR)) for _ in range(300)]
    policy = HybridHistogram(cold_cost_s=600.0, margin=0.0)
    for gap in gaps:
        policy.observe(gap)

    def cost(start: float, end: float) -> float:
        total = 0.0
        for gap in gaps:
            warm = start <= gap <= end
            total += max(0.0, min(gap, end) - start) + (0.0 if warm else 600.0)
        return total

    chosen = cost(*policy.window())
    for keep in (60.0, 120.0, 600.0, 1800.0, 4 * HOUR):
        assert chosen <= cost(0.0, keep) * 1.02  # bin midpoints: within 2 %


def test_adaptive_with_no_keep_alive_keeps_nothing() -> None:
    policy = policy_for("adaptive", 0.0)
    for _ in range(20):
        policy.observe(30 * MINUTE)
    assert policy.window() == (0.0, 0.0)
