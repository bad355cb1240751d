"""How the answers of several nodes become one: log lines merged by time with the limit
applied after, cursors that lose no line of any node, statistics computed from every node's
samples (not from each node's percentiles)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from ember.cluster.peers import Answer, FanOut
from ember.errors import InvalidSpec
from ember.observability.cluster import (
    ClusterView,
    NodeCursor,
    _log_lines,
    _next_log_cursor,
    merge_logs,
)
from ember.observability.stats import function_stats, overview


def lines(node: str, times: list[float], first_id: int = 1) -> list[dict[str, Any]]:
    return [{"id": first_id + n, "ts": ts, "node": node, "line": f"{node}{first_id + n}"}
            for n, ts in enumerate(times)]


def test_cursors_round_trip_and_a_single_nodes_stays_a_number() -> None:
    assert NodeCursor.parse("42", "a") == NodeCursor({"a": 42})
    cursor = NodeCursor({"b": 7, "a": 120}, 1700000000.25)
    assert cursor.encode() == "a:120,b:7@1700000000.25"
    assert NodeCursor.parse(cursor.encode(), "z") == cursor
    assert NodeCursor.parse("@1700000000", "a") == NodeCursor({}, 1700000000.0)
    assert NodeCursor({"a": 1}).encode() == "a:1"
    for bad in ("a:", "a:1,", "A:1", "a:1@x", str(2**63), "a:9223372036854775808",
                "\uff11\uff12"):
        with pytest.raises(InvalidSpec):
            NodeCursor.parse(bad, "a")


def test_the_newest_lines_of_all_nodes_are_cut_after_merging() -> None:
    pages = {"a": lines("a", [1, 4, 6]), "b": lines("b", [2, 3, 5, 7])}
    newest = merge_logs(pages, 4, newest=True)
    assert [line["line"] for line in newest] == ["a2", "b3", "a3", "b4"]
    # Every node goes on after the newest line it sent: b2, cut, was older than the page.
    cursor = NodeCursor.parse(_next_log_cursor(None, pages, newest) or "", "a")
    assert cursor.positions == {"a": 3, "b": 4} and cursor.floor == 7
    oldest = merge_logs(pages, 3, newest=False)
    assert [line["line"] for line in oldest] == ["a1", "b1", "b2"]


def test_paging_with_the_cursor_shows_every_line_once_even_out_of_time_order() -> None:
    rng = random.Random(7)
    # Each node writes its lines in its own order; their times may step back a little
    # (instances of one node write concurrently), and the nodes' clocks differ.
    store = {
        node: lines(node, [t + rng.uniform(-0.5, 0.5) + skew for t in range(60)])
        for node, skew in (("a", 0.0), ("b", 0.3), ("c", -0.2))
    }
    seen: list[str] = []
    cursor = NodeCursor({}, None)
    for _ in range(100):
        pages = {node: [line for line in all_lines if line["id"] > cursor.positions.get(node, 0)]
                 [:7] for node, all_lines in store.items()}
        shown = merge_logs(pages, 7, newest=False)
        if not shown:
            break
        seen += [line["line"] for line in shown]
        cursor = NodeCursor.parse(_next_log_cursor(cursor, pages, shown) or "", "a")
    assert sorted(seen) == sorted(line["line"] for ls in store.values() for line in ls)
    assert len(seen) == len(set(seen))


def sample(ts: float, total_ms: float, outcome: str = "success", cold: int = 0,
           init_ms: float = 0.0, function: str = "f") -> tuple[Any, ...]:
    return (ts, cold, total_ms, outcome, init_ms, 1, function)


def test_statistics_of_several_nodes_are_those_of_all_their_samples() -> None:
    # Node a: many fast invocations; node b: a few slow ones. The cluster's p50 is fast;
    # an average of the nodes' p50s would not be.
    a = [sample(6000 + n, 1.0 + n / 100) for n in range(90)]
    b = [sample(6000 + n, 500.0 + n, cold=1, init_ms=50.0) for n in range(10)]
    b.append(sample(6005, 0.0, outcome="throttled"))
    merged = function_stats("f", sorted(a + b), 5900, 6200, 300)
    assert merged["invocations"] == 100 and merged["throttles"] == 1
    assert merged["cold_starts"] == 10
    assert merged["duration_ms"]["p50"] == pytest.approx(1.49)
    assert merged["duration_ms"]["p99"] == 508.0 and merged["duration_ms"]["max"] == 509.0
    assert sum(point["invocations"] for point in merged["series"]) == 100
    both = overview(sorted(a + b), 5900, 6200, 300)
    assert both["functions"]["f"] == {"invocations": 100, "errors": 0, "throttles": 1,
                                      "cold_starts": 10}


def test_an_answer_that_cannot_be_read_leaves_its_node_out_as_unreachable() -> None:
    view = ClusterView("a", None, None, None)  # type: ignore[arg-type]
    out = FanOut([Answer("b", {"logs": [{"id": 1, "ts": 2.0, "line": "x"}]}),
                  Answer("c", {"lines": []}), Answer("e", {"logs": [{"ts": "soon"}]})],
                 ["d"])
    read = view._read(out, _log_lines)
    assert read == [("b", [{"id": 1, "ts": 2.0, "line": "x", "node": "b"}])]
    assert out.nodes == ["b"] and out.unreachable == ["c", "d", "e"]
