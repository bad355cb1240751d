"""``ember logs``, ``ember stats`` and ``ember fn invocations``: what a function's instances
wrote, how its invocations went, and each of them — on every node of the cluster (lines
name their node when there are several; nodes that could not answer are named)."""

from __future__ import annotations

import contextlib
import json
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

import typer

from ember.cli import render
from ember.cli.common import Session, parse_duration, parse_time
from ember.client import LogLine, LogPage

POLL_INTERVAL_S = 1.0
DEFAULT_LIMIT = 100  # lines the server sends when no --limit is given
MAX_LIMIT = 10_000  # the most the server sends at once
_SEEN = 10_000  # log lines remembered while following, to drop repeats

Name = Annotated[str, typer.Argument(help="Function name.", show_default=False)]


def logs(
    session: Session,
    name: Name,
    request_id: Annotated[
        str | None, typer.Option(help="Only the lines of this invocation.", show_default=False)
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="From this long ago (10m, 2h) or this ISO time.", show_default=False),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="Up to this long ago or this ISO time.", show_default=False),
    ] = None,
    level: Annotated[
        str | None, typer.Option(help="Only this level (info, error…).", show_default=False)
    ] = None,
    grep: Annotated[
        str | None, typer.Option(help="Only lines containing this text.", show_default=False)
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="At most this many lines.", show_default=False)
    ] = None,
    cursor: Annotated[
        str | None, typer.Option(help="Start after this cursor.", show_default=False)
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")
    ] = False,
) -> None:
    """Print a function's log lines, oldest first, from every node of the cluster."""
    since_at = parse_time(since, "--since") if since else None
    until_at = parse_time(until, "--until") if until else None

    def fetch(
        cursor: str | None, since: datetime | float | None, limit: int | None = limit
    ) -> LogPage:
        return session.client.get_logs(
            name, request_id=request_id, level=level, since=since, until=until_at, grep=grep,
            limit=limit, cursor=cursor,
        )

    if not follow:
        if session.json:
            page = fetch(cursor, since_at)
            session.output.json(page.raw or render.jsonable(page))
            return
        _print_page(session, fetch, cursor, since_at, limit or DEFAULT_LIMIT)
        return
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how following ends
        _follow(session, fetch, cursor, since_at)


def _print_page(
    session: Session,
    fetch: Callable[[str | None, datetime | float | None, int], LogPage],
    cursor: str | None,
    since: datetime | float | None,
    limit: int,
) -> None:
    """One page of lines, then how to see more only when there are more. Without a cursor
    the page is the newest lines: one more is asked for (the oldest) to know it; after a
    cursor, a full page is followed by a look for one line after it."""
    if cursor is None:
        probe = limit < MAX_LIMIT
        page = fetch(None, since, limit + 1 if probe else limit)
        lines = page.logs
        more = len(lines) > limit if probe else len(lines) == limit
        if more and probe:
            lines = lines[1:]
    else:
        page = fetch(cursor, since, limit)
        lines = page.logs
        more = (len(lines) == limit and page.next_cursor is not None
                and bool(fetch(page.next_cursor, since, 1).logs))
    _print_lines(session, page, lines)
    if more and cursor is None:
        session.output.note(f"older lines not shown: raise --limit (now {limit}) or narrow "
                            "with --since, --level, --grep")
    elif more:
        session.output.note(f"more lines: add --cursor {page.next_cursor}")


def _print_lines(session: Session, page: LogPage, lines: list[LogLine]) -> None:
    """The lines, with their node when they come from several; the nodes whose lines are
    missing, on stderr."""
    several = len(page.nodes) + len(page.unreachable) > 1
    for line in lines:
        session.output.out.print(render.log_line(line, node=several), soft_wrap=True)
    _missing(session, page.unreachable, "lines")


def _missing(session: Session, unreachable: list[str], what: str) -> None:
    if unreachable:
        session.output.note(f"nodes not reached, their {what} are missing: "
                            f"{', '.join(unreachable)}")


def _follow(
    session: Session,
    fetch: Callable[[str | None, datetime | float | None], LogPage],
    cursor: str | None,
    since: datetime | float | None,
) -> None:
    """Poll with the cursor every second. When the server gives no cursor to go on from,
    ask again from the newest time seen, and drop the lines already printed."""
    seen: deque[tuple[object, ...]] = deque(maxlen=_SEEN)
    seen_set: set[tuple[object, ...]] = set()
    missing: list[str] = []
    while True:
        page = fetch(cursor, None if cursor else since)
        if page.unreachable != missing:  # said once, and again when it changes
            missing = page.unreachable
            _missing(session, missing, "lines")
        several = len(page.nodes) + len(page.unreachable) > 1
        fresh = 0
        for line in page.logs:
            key = (line.node, line.ts, line.instance, line.request_id, line.level, line.line)
            if key in seen_set:
                continue
            if len(seen) == seen.maxlen:
                seen_set.discard(seen[0])
            seen.append(key)
            seen_set.add(key)
            fresh += 1
            _print_line(session, line, several)
        if page.next_cursor:
            cursor = page.next_cursor
        elif page.logs:
            cursor, since = None, max(line.ts for line in page.logs)
        if not (fresh and page.next_cursor):
            time.sleep(POLL_INTERVAL_S)


def _print_line(session: Session, line: LogLine, several: bool) -> None:
    if session.json:
        typer.echo(json.dumps(render.jsonable(line), ensure_ascii=False))
    else:
        session.output.out.print(render.log_line(line, node=several), soft_wrap=True)


def invocations(
    session: Session,
    name: Name,
    status: Annotated[
        str | None,
        typer.Option(help="Only those that ended so: success, error, timeout or throttled.",
                     show_default=False),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 20,
    cursor: Annotated[
        str | None, typer.Option(help="Older ones: the cursor the last page printed.",
                                 show_default=False),
    ] = None,
) -> None:
    """List a function's recent invocations, newest first: sync calls, async attempts and
    trigger events, each with its outcome, timings and error."""
    page = session.client.list_invocations(name, status=status, limit=limit, cursor=cursor)
    several = len(page.nodes) + len(page.unreachable) > 1
    session.output.show(page, render.invocations_table(page.invocations, node=several))
    if not session.json:
        _missing(session, page.unreachable, "invocations")
    if page.next_cursor and not session.json:
        session.output.note(f"older invocations: add --cursor {page.next_cursor}")


def stats(
    session: Session,
    name: Name,
    window: Annotated[
        str | None,
        typer.Option(help="Over this last stretch of time: 15m, 1h, 1d.", show_default=False),
    ] = None,
) -> None:
    """Show statistics of a function's invocations."""
    window_s = parse_duration(window, "--window") if window else None
    found = session.client.get_stats(name, window_s=window_s)
    session.output.show(found, render.stats_table(found))
    if not session.json:
        _missing(session, [str(n) for n in found.get("unreachable") or []], "invocations")
