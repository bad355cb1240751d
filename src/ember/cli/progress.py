"""How the CLI follows a dependency build: its log printed line by line as the server
writes it, under a spinner that shows the latest line (on a terminal)."""

from __future__ import annotations

import sys
from collections.abc import Callable

from rich.text import Text

from ember.cli.common import Session
from ember.client import BuildOut
from ember.errors import BuildFailed
from ember.model.build import build_failed, log_tail

LineSink = Callable[[str], None]
"""Where each line of a followed build's log goes."""

FOLLOW_S = 2 * 3600.0
"""The longest the CLI follows a build; the server stops pip long before (its
EMBER_BUILD_TIMEOUT_S)."""


class _Lines:
    """Pieces of a log cut into whole lines (a piece may end inside a line)."""

    def __init__(self) -> None:
        self._rest = ""

    def feed(self, piece: str) -> list[str]:
        *lines, self._rest = (self._rest + piece).split("\n")
        return lines

    def end(self) -> list[str]:
        rest, self._rest = self._rest, ""
        return [rest] if rest else []


def follow(session: Session, build_id: str, show: LineSink) -> BuildOut:
    """Follow a build from the start of its log until it ends, calling ``show`` with each
    line; returns the build as it ended, with its whole log."""
    output = session.output
    spinner = (
        output.err.status(Text(f"building {build_id}"), spinner="dots")
        if sys.stderr.isatty() and not output.json_mode else None
    )
    lines = _Lines()
    seen: list[str] = []

    def on_log(piece: str) -> None:
        seen.append(piece)
        for line in lines.feed(piece):
            show(line)
            if spinner is not None and line.strip():
                spinner.update(Text(f"building {build_id[:8]}: {line.strip()[:100]}"))

    if spinner is not None:
        with spinner:
            final = session.client.wait_build(build_id, on_log=on_log, timeout_s=FOLLOW_S)
    else:
        final = session.client.wait_build(build_id, on_log=on_log, timeout_s=FOLLOW_S)
    for line in lines.end():
        show(line)
    return final.model_copy(update={"log": "".join(seen), "log_offset": 0})


def failure(session: Session, build: BuildOut, *, shown: bool) -> BuildFailed:
    """The error of a failed build (with its whole log); the end of the log goes to stderr
    first unless it was ``shown`` as it came."""
    if not shown:
        tail = log_tail(build.log)
        if tail:
            session.output.note(Text(f"the end of build {build.id}'s log:\n{tail}"))
    return build_failed(build.id, build.error, build.log)


def build_dependencies(session: Session, code: bytes, function: str, where: str) -> BuildOut:
    """Build the requirements.txt of ``code`` (from ``where``) for ``function``, showing
    pip's output as it comes, before the code is uploaded as the function's.

    Raises:
        BuildFailed: the build failed; the message says what to do.
    """
    output = session.output
    build = session.client.start_build(code, function)
    if build.cached:
        output.done(f"dependencies of {where} already built (build {build.id})")
        return build
    output.note(f"building the dependencies of {where} (build {build.id})")
    final = follow(session, build.id, stderr_lines(session))
    if final.status != "succeeded":
        raise failure(session, final, shown=not output.json_mode)
    output.done(f"dependencies of {where} built (build {final.id})")
    return final


def stderr_lines(session: Session) -> LineSink:
    """Where a build's progress goes: dimmed lines on stderr (none with ``--json``)."""

    def show(line: str) -> None:
        if not session.output.json_mode:
            session.output.err.print(Text(line, style="dim"), soft_wrap=True)

    return show
