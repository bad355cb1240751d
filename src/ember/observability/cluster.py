"""One view of a cluster's logs, invocation records and statistics, from any node.

Each node keeps its own logs and invocation records (``observability/db.py``): a query
answered by one node asks every other node that is up for its part (``PeerClient.fan_out``,
which marks the request so that the node asked answers with its own data only) and merges:

- **logs**: each node's lines in the order it wrote them, merged by time; ``limit`` is
  applied to the merged lines, as one node applies it to its own (the newest ``limit``
  lines, or the first ``limit`` after a cursor). Each line names its ``node``.
- **invocation records**: newest first, merged by start time, then cut at ``limit``.
- **statistics**: computed from every node's samples together (counts summed, percentiles
  of all the durations — never averages of per-node percentiles).

A cursor into merged lines or records holds a position per node (``a:120,b:45``), and may
end with ``@<unix time>``: a node it does not list gives its lines from that time on (a
node that could not be reached, or had none, when the cursor was made). A single node's
cursor stays the plain id it always was.

Every answer says which nodes it covers (``nodes``) and which could not be asked or did
not answer in time (``unreachable``: its data is missing from the answer).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ember.cluster.peers import Answer, FanOut, PeerClient
from ember.errors import InvalidSpec
from ember.observability.logs import LogRecord, LogStore
from ember.observability.stats import (
    InvocationPage,
    InvocationRecord,
    StatsStore,
    function_stats,
    overview,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

_MAX_POSITION = 2**63
_NODE = r"[a-z0-9][a-z0-9._-]{0,63}"
_PLACE = rf"{_NODE}:[0-9]{{1,19}}"
_FLOOR = r"@[0-9]{1,12}(\.[0-9]{1,9})?"
# A cursor of one node (its own id), or of a cluster: positions per node and a floor.
NODE_CURSOR_PATTERN = rf"^([0-9]{{0,19}}|{_PLACE}(,{_PLACE}){{0,63}}({_FLOOR})?|{_FLOOR})$"
_NODE_CURSOR = re.compile(NODE_CURSOR_PATTERN)


@dataclass(frozen=True)
class NodeCursor:
    """Where a merged list goes on: after ``positions[node]`` in each node's list; a node
    not listed starts from ``floor`` (a unix time), or from its beginning without one."""

    positions: dict[str, int] = field(default_factory=dict)
    floor: float | None = None

    def encode(self) -> str:
        text = ",".join(f"{node}:{at}" for node, at in sorted(self.positions.items()))
        if self.floor is None:
            return text
        # Rounded down: a line at the floor itself is still after it.
        floor = f"{math.floor(self.floor * 1e6) / 1e6:.6f}".rstrip("0").rstrip(".")
        return f"{text}@{floor}"

    @classmethod
    def parse(cls, text: str, node: str) -> NodeCursor:
        """The cursor ``text``; a plain number is a position in node ``node``'s list.

        Raises:
            InvalidSpec: ``text`` is no cursor of ours (field ``cursor``).
        """
        if not (text.isascii() and _NODE_CURSOR.match(text)):
            raise _bad_cursor()
        if text.isdigit():
            return cls({node: _position(text)})
        places, _, floor = text.partition("@")
        positions: dict[str, int] = {}
        for place in filter(None, places.split(",")):
            name, _, at = place.partition(":")
            positions[name] = max(positions.get(name, 0), _position(at))
        return cls(positions, float(floor) if floor else None)


def _position(text: str) -> int:
    value = int(text)
    if value >= _MAX_POSITION:  # ids are SQLite integers: beyond them is no cursor of ours
        raise _bad_cursor()
    return value


def _bad_cursor() -> InvalidSpec:
    return InvalidSpec("cursor is not valid: pass the next_cursor of a previous page",
                       {"field": "cursor"})


@dataclass(frozen=True)
class LogFilters:
    request_id: str | None = None
    level: str | None = None
    since: float | None = None
    until: float | None = None
    grep: str | None = None

    def params(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "level": self.level, "since": self.since,
                "until": self.until, "grep": self.grep}


def log_line(record: LogRecord, node: str) -> dict[str, Any]:
    """A log line as the API shows it."""
    return {
        "id": record.id, "ts": record.ts, "request_id": record.request_id,
        "level": record.level, "line": record.line, "version": record.version,
        "instance": record.instance, "node": node,
    }


class ClusterView:
    """The logs, invocation records and statistics of node ``node`` (its own stores) and,
    through ``peers``, of every other node."""

    def __init__(self, node: str, logs: LogStore, stats: StatsStore,
                 peers: PeerClient | None) -> None:
        self.node = node
        self._logs = logs
        self._stats = stats
        self._peers = peers

    async def _both(self, local: Callable[[], Any], path: str,
                    params: Callable[[str], Mapping[str, Any]] | Mapping[str, Any],
                    ) -> tuple[Any, FanOut]:
        """This node's part (``local``, in a thread) and the other nodes' answers."""
        if self._peers is None:
            return await asyncio.to_thread(local), FanOut()
        return await asyncio.gather(asyncio.to_thread(local),
                                    self._peers.fan_out(path, params))

    def _covered(self, out: FanOut) -> dict[str, Any]:
        return {"nodes": [self.node, *out.nodes], "unreachable": out.unreachable}

    def _read(self, out: FanOut, parse: Callable[[Answer], T]) -> list[tuple[str, T]]:
        """Each answer as ``parse`` reads it. An answer it cannot read (a node of another
        Ember version, say) is left out, and its node listed unreachable."""
        read: list[tuple[str, T]] = []
        for answer in list(out.answers):
            try:
                read.append((answer.node, parse(answer)))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                log.warning("node %s answered what node %s cannot read (%s: %s): its part "
                            "is left out", answer.node, self.node, type(exc).__name__, exc)
                out.answers.remove(answer)
                out.unreachable = sorted([*out.unreachable, answer.node])
        return read

    # logs ------------------------------------------------------------------------------------

    def local_logs(self, function: str, filters: LogFilters, limit: int,
                   cursor: str | None) -> dict[str, Any]:
        """This node's lines (as one node has always answered), each naming this node."""
        after = NodeCursor.parse(cursor, self.node).positions.get(self.node) if cursor else None
        if cursor and after is None:  # a cluster's cursor without this node: from the start
            after = 0
        self._logs.flush()
        records = self._logs.query(function, limit=limit, cursor=after, **filters.params())
        return {"logs": [log_line(r, self.node) for r in records],
                "next_cursor": str(records[-1].id) if records else cursor}

    async def logs(self, function: str, filters: LogFilters, limit: int,
                   cursor: str | None) -> dict[str, Any]:
        """The lines of every node: the newest ``limit``, or the first ``limit`` after
        ``cursor``, oldest first."""
        at = NodeCursor.parse(cursor, self.node) if cursor else None

        def params(node: str) -> dict[str, Any]:
            asked = {**filters.params(), "limit": limit}
            if at is None:
                return asked
            if node in at.positions:
                return {**asked, "cursor": str(at.positions[node])}
            if at.floor is not None:
                asked["since"] = max(filters.since or at.floor, at.floor)
            return {**asked, "cursor": "0"}

        mine = params(self.node)
        local, out = await self._both(
            lambda: self.local_logs(function, LogFilters(
                filters.request_id, filters.level, mine["since"], filters.until, filters.grep),
                limit, mine.get("cursor")),
            f"/functions/{function}/logs", params)
        if not out.answers and not out.unreachable:  # one node: its answer as ever
            return {**local, **self._covered(out)}
        pages = {self.node: local["logs"]}
        pages.update(self._read(out, _log_lines))
        lines = merge_logs(pages, limit, newest=at is None)
        return {"logs": lines, "next_cursor": _next_log_cursor(at, pages, lines),
                **self._covered(out)}

    # invocation records ----------------------------------------------------------------------

    def local_invocations(self, function: str, outcome: str | None, limit: int,
                          cursor: str | None) -> InvocationPage:
        # A cluster's cursor without this node: from its newest.
        after = NodeCursor.parse(cursor, self.node).positions.get(self.node) if cursor else None
        self._stats.flush()
        return self._stats.invocations(function, outcome=outcome, limit=limit,
                                       cursor=None if after is None else str(after))

    async def invocations(self, function: str, outcome: str | None, limit: int,
                          cursor: str | None) -> Invocations:
        """The records of every node, newest first: at most ``limit``, older than
        ``cursor``."""
        at = NodeCursor.parse(cursor, self.node) if cursor else None

        def params(node: str) -> dict[str, Any]:
            asked: dict[str, Any] = {"status": outcome, "limit": limit}
            if at is not None and node in at.positions:
                asked["cursor"] = str(at.positions[node])
            return asked

        local, out = await self._both(
            lambda: self.local_invocations(function, outcome, limit, params(self.node).get(
                "cursor")), f"/functions/{function}/invocations", params)
        if not out.answers and not out.unreachable:
            return Invocations([(self.node, r) for r in local.items], local.next_cursor,
                               [self.node], [])
        pages: dict[str, list[tuple[InvocationRecord, str]]] = {
            self.node: list(zip(local.items, local.cursors, strict=True))}
        more = {self.node} if local.next_cursor else set()
        for node, (page, goes_on) in self._read(out, _invocation_page):
            pages[node] = page
            if goes_on:
                more.add(node)
        merged = heapq.merge(*([(node, r, c) for r, c in page] for node, page in pages.items()),
                             key=lambda entry: entry[1].ts, reverse=True)
        kept = list(_take(merged, limit))
        positions = dict(at.positions) if at is not None else {}
        for node, _, after in kept:
            positions[node] = int(after)
        cut = len(kept) < sum(len(page) for page in pages.values())
        next_cursor = NodeCursor(positions).encode() if (cut or more) and kept else None
        return Invocations([(node, r) for node, r, _ in kept], next_cursor,
                           [self.node, *out.nodes], out.unreachable)

    # statistics ------------------------------------------------------------------------------

    def local_samples(self, function: str | None, since: float) -> list[tuple[Any, ...]]:
        self._stats.flush()
        return self._stats.samples(function, since=since)

    async def stats(self, function: str, *, now: float, window_s: float,
                    local_only: bool = False) -> dict[str, Any]:
        """The function's figures over the window, from every node's samples (or this
        node's only: then with its ``samples``, for the node that asked)."""
        since = now - window_s
        if local_only:
            samples = await asyncio.to_thread(self.local_samples, function, since)
            return {**function_stats(function, samples, since, now, window_s),
                    "samples": samples, "nodes": [self.node], "unreachable": []}
        samples, out = await self._both(lambda: self.local_samples(function, since),
                                        f"/functions/{function}/stats", {"window_s": window_s})
        merged = _merge_samples(samples, self._read(out, _samples), since)
        return {**function_stats(function, merged, since, now, window_s), **self._covered(out)}

    async def overview(self, *, now: float, window_s: float, include: Callable[[str], bool],
                       local_only: bool = False) -> dict[str, Any]:
        """Every function's figures together (those ``include`` takes), from every node."""
        since = now - window_s
        if local_only:
            found = await asyncio.to_thread(self.local_samples, None, since)
            samples = [row for row in found if include(row[6])]
            return {**overview(samples, since, now, window_s), "samples": samples,
                    "nodes": [self.node], "unreachable": []}
        samples, out = await self._both(lambda: self.local_samples(None, since), "/stats",
                                        {"window_s": window_s})
        merged = _merge_samples(samples, self._read(out, _samples), since)
        return {**overview(merged, since, now, window_s, include), **self._covered(out)}


@dataclass(frozen=True)
class Invocations:
    """Invocation records of the cluster, each with the node that ran it, newest first."""

    items: list[tuple[str, InvocationRecord]]
    next_cursor: str | None
    nodes: list[str]
    unreachable: list[str]


def merge_logs(pages: Mapping[str, list[dict[str, Any]]], limit: int, *,
               newest: bool) -> list[dict[str, Any]]:
    """Lines of several nodes (each oldest first, in the order it wrote them) merged by
    time: the newest ``limit`` (``newest``) or the oldest ``limit``, oldest first. Each
    node's lines keep their order, so what is cut from a node is all after (or, for the
    newest, before) what is kept of it."""
    if newest:
        merged = heapq.merge(*(reversed(lines) for lines in pages.values()),
                             key=lambda line: line["ts"], reverse=True)
        return list(_take(merged, limit))[::-1]
    return list(_take(heapq.merge(*pages.values(), key=lambda line: line["ts"]), limit))


def _next_log_cursor(at: NodeCursor | None, pages: Mapping[str, list[dict[str, Any]]],
                     shown: list[dict[str, Any]]) -> str | None:
    """The cursor after ``shown``. After the newest lines, each node goes on after the
    newest line it sent (those cut were older than every line shown); after a cursor, after
    the last line shown of it (those cut come next)."""
    positions = dict(at.positions) if at is not None else {}
    floor = at.floor if at is not None else None
    if at is None:
        for node, lines in pages.items():
            if lines:
                positions[node] = max(int(line["id"]) for line in lines)
        if shown:
            floor = max(float(line["ts"]) for line in shown)
    for line in shown:
        node = str(line["node"])
        positions[node] = max(positions.get(node, 0), int(line["id"]))
    if not positions and floor is None:
        return None
    return NodeCursor(positions, floor).encode()


def _merge_samples(local: list[tuple[Any, ...]],
                   others: Iterable[tuple[str, list[tuple[Any, ...]]]],
                   since: float) -> list[tuple[Any, ...]]:
    merged = list(local)
    for _, samples in others:
        merged.extend(row for row in samples if row[0] >= since)
    merged.sort(key=lambda row: row[0])
    return merged


# How the answer of another node is read (ClusterView._read): what the merges use, checked.

def _log_lines(answer: Answer) -> list[dict[str, Any]]:
    return [{**line, "id": int(line["id"]), "ts": float(line["ts"]), "node": answer.node}
            for line in answer.body["logs"]]


def _invocation_page(answer: Answer) -> tuple[list[tuple[InvocationRecord, str]], bool]:
    page = [(_record(item), str(int(item["cursor"]))) for item in answer.body["invocations"]]
    return page, bool(answer.body.get("next_cursor"))


def _samples(answer: Answer) -> list[tuple[Any, ...]]:
    width = 7 if answer.body.get("functions") is not None else 6  # the overview's name
    samples = [(float(row[0]), *row[1:width]) for row in answer.body["samples"]]
    if any(len(row) != width for row in samples):
        raise ValueError(f"samples of {width} values expected")
    return samples


def _take(items: Iterable[Any], limit: int) -> Iterable[Any]:
    for n, item in enumerate(items):
        if n >= limit:
            return
        yield item


def _record(item: Mapping[str, Any]) -> InvocationRecord:
    """An invocation record as another node sent it (``InvocationOut`` with a cursor)."""
    return InvocationRecord(
        ts=float(item["started_at"]), function=str(item["function"]),
        version=str(item["version"]), request_id=str(item["request_id"]),
        mode=str(item["mode"]), cold=bool(item["cold"]), init_ms=float(item["init_ms"]),
        run_ms=float(item["duration_ms"]), total_ms=float(item["total_ms"]),
        outcome=str(item["status"]), error_code=item.get("error_code"),
        attempt=int(item["attempt"]), error_message=item.get("error_message"),
    )
