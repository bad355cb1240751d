"""``ember execution``: follow workflow executions — get one with its history, list, cancel,
and watch the task tree update live until the execution ends."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from ember.api.schemas import StepOut
from ember.cli.common import Session, command
from ember.cli.render import _cells, _grid, _table, when
from ember.client import ExecutionOut
from ember.sdk.workflows import MAX_WAIT_S

app = typer.Typer(help="Follow workflow executions: get, list, cancel, watch.")

ExecutionId = Annotated[str, typer.Argument(help="Execution id.", show_default=False)]

STATUS_STYLES = {
    "succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan",
    "waiting": "magenta", "skipped": "dim",
}

POLL_S = 1.0
"""How long one request of ``watch`` (and of a batch run) waits on the server: the view is
refreshed at least this often."""


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def _seconds(start: datetime | str | None, end: datetime | str | None) -> str:
    if start is None or end is None:
        return "-"
    begin = datetime.fromisoformat(start) if isinstance(start, str) else start
    finish = datetime.fromisoformat(end) if isinstance(end, str) else end
    seconds = max(0.0, (finish - begin).total_seconds())
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _short(value: Any, limit: int = 500) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "… (--json shows all)"


def problem(error: dict[str, Any] | None) -> str | None:
    """A problem-details error in one line: ``title (status): detail``."""
    if not error:
        return None
    head = str(error.get("title") or error.get("type") or "error")
    if error.get("status") is not None:
        head += f" ({error['status']})"
    detail = error.get("detail")
    where = error.get("instance")
    text = f"{head}: {detail}" if detail else head
    return f"{text} at {where}" if where else text


# views ---------------------------------------------------------------------------------------


def execution_panel(e: ExecutionOut) -> Panel:
    rows: list[tuple[str, Any]] = [
        ("workflow", f"{e.workflow} revision {e.revision}"),
        ("status", status_text(e.status)),
        ("created", when(e.created_at)),
        ("finished", when(e.finished_at)),
        ("duration", _seconds(e.created_at, e.finished_at)),
        ("input", _short(e.input)),
    ]
    if e.status == "succeeded":
        rows.append(("output", _short(e.output)))
    if e.error:
        rows.append(("error", Text(problem(e.error) or "", style="red")))
    if e.parent:
        rows.append(("parent", e.parent))
    if e.reruns:
        rows.append(("re-runs", f"{e.reruns} function step(s) ran again after a crash"))
    for p in e.progress:
        rows.append((f"for {p.key}", f"{p.done}/{p.total} done, {p.failed} failed"))
    return _grid(f"execution {e.id}", rows)


def history_table(steps: Iterable[StepOut]) -> Table:
    table = _table("TASK", "STATUS", "ATTEMPTS", "STARTED", "DURATION", "FUNCTION",
                   "REQUEST ID", "ERROR")
    for s in steps:
        function = f"{s.function}:{s.version}" if s.function and s.version else s.function
        cells = _cells(s.key, None, s.attempts, when(_time(s.started_at)),
                       _seconds(s.started_at, s.ended_at), function, s.request_id,
                       problem(s.error))
        cells[1] = status_text(s.status)
        table.add_row(*cells)
    return table


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def executions_table(executions: Iterable[ExecutionOut]) -> Table:
    table = _table("ID", "WORKFLOW", "REVISION", "STATUS", "CREATED", "DURATION", "ERROR")
    for e in executions:
        cells = _cells(e.id, e.workflow, e.revision, None, when(e.created_at),
                       _seconds(e.created_at, e.finished_at), problem(e.error))
        cells[3] = status_text(e.status)
        table.add_row(*cells)
    return table


def path_tree(root: Text | str, labels: dict[str, Text]) -> Tree:
    """A tree of task paths (``/do/1/pay/fork/branches/0/charge``): each task under the
    nearest task whose path starts its own, in the order given."""
    tree = Tree(root)
    nodes: dict[str, Tree] = {}
    for path, label in labels.items():
        parent = tree
        cut = path.rfind("/")
        while cut > 0:
            found = nodes.get(path[:cut])
            if found is not None:
                parent = found
                break
            cut = path.rfind("/", 0, cut)
        nodes[path] = parent.add(label)
    return tree


def _task_name(path: str) -> str:
    return path.rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~")


def task_tree(e: ExecutionOut) -> Tree:
    """The execution's task instances grouped by path: one status for a task that ran
    once, counts by status for those a ``for`` ran many times."""
    by_path: dict[str, list[StepOut]] = {}
    for s in e.history or []:
        by_path.setdefault(s.path, []).append(s)
    labels = {}
    for path, steps in by_path.items():
        label = Text(_task_name(path), style="bold")
        if len(steps) == 1:
            s = steps[0]
            label.append("  ").append_text(status_text(s.status))
            details = [_seconds(s.started_at, s.ended_at) if s.ended_at else None,
                       f"attempt {s.attempts}" if s.attempts > 1 else None,
                       f"{s.function}:{s.version}" if s.function else None,
                       problem(s.error)]
            label.append("".join(f" · {d}" for d in details if d), style="dim")
        else:
            counts: dict[str, int] = {}
            for s in steps:
                counts[s.status] = counts.get(s.status, 0) + 1
            label.append(f"  {len(steps)} runs:", style="dim")
            for status, count in counts.items():
                label.append(f" {count} ").append_text(status_text(status))
        labels[path] = label
    root = Text(f"{e.workflow} · execution {e.id} · ")
    root.append_text(status_text(e.status))
    return path_tree(root, labels)


def watch_view(e: ExecutionOut) -> RenderableType:
    parts: list[RenderableType] = [task_tree(e)]
    for p in e.progress:
        parts.append(Text(f"for {p.key}: {p.done}/{p.total} done, {p.failed} failed",
                          style="dim"))
    if e.error:
        parts.append(Text(problem(e.error) or "", style="red"))
    return Group(*parts)


# following an execution ----------------------------------------------------------------------


def follow(session: Session, execution: ExecutionOut, timeout_s: float | None,
           on_update: Callable[[ExecutionOut], None] = lambda e: None,
           poll_s: float = MAX_WAIT_S, history: bool = True) -> ExecutionOut:
    """Ask for the execution again, each request waiting up to ``poll_s`` on the server,
    until it ends or ``timeout_s`` is over (None: no limit); ``on_update`` sees each
    answer. Returns the execution as it was last seen."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while execution.active:
        left = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
        if left <= 0:
            break
        execution = session.client.get_execution(execution.id, wait_s=round(left, 3),
                                                  history=history)
        on_update(execution)
    return execution


def summary(e: ExecutionOut) -> Text:
    """One line: execution id, workflow, status and run time."""
    parts = [f"execution {e.id}", f"{e.workflow} revision {e.revision}", e.status]
    if e.finished_at is not None:
        parts.append(_seconds(e.created_at, e.finished_at))
    if e.reruns:
        parts.append(f"{e.reruns} re-run(s)")
    style = {"succeeded": "dim", "running": "yellow", "waiting": "yellow"}.get(e.status, "red")
    return Text(" · ".join(parts), style=style)


def finish(session: Session, e: ExecutionOut, waited_s: float | None) -> None:
    """Print what a waited-for execution came to: its output on stdout (its JSON with
    ``--json``), its summary and any error on stderr.

    Raises:
        typer.Exit: with 1 unless it succeeded (it failed, was cancelled, or had not ended
            after ``waited_s`` seconds).
    """
    output = session.output
    if session.json:
        output.show(e)
    elif e.status == "succeeded":
        typer.echo(json.dumps(e.output, indent=2, ensure_ascii=False))
    output.note(summary(e))
    if e.status == "succeeded":
        return
    if e.active:
        after = f" after {waited_s:g} s" if waited_s is not None else ""
        output.note(f"execution {e.id} is still {e.status}{after}: "
                    f"ember execution watch {e.id}")
    elif e.error:
        output.note(Text(problem(e.error) or "", style="red"))
    raise typer.Exit(1)


# ember execution -----------------------------------------------------------------------------


@command(app, "get")
def get(session: Session, execution_id: ExecutionId) -> None:
    """Show an execution: status, output or error, and the history of its tasks."""
    e = session.client.get_execution(execution_id)
    session.output.show(e, Group(execution_panel(e), history_table(e.history or [])))


@command(app, "list")
def list_(
    session: Session,
    workflow: Annotated[str | None, typer.Option(
        "--workflow", "-w", help="Only this workflow's.", show_default=False)] = None,
    status: Annotated[list[str] | None, typer.Option(
        "--status", "-s", show_default=False,
        help="Only those with this status (running, waiting, succeeded, failed, "
             "cancelled); repeatable.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 100,
    cursor: Annotated[str | None, typer.Option(
        help="Start after this cursor (from the last page).", show_default=False)] = None,
) -> None:
    """List executions, newest first."""
    page = session.client.list_executions(workflow, status, limit=limit, cursor=cursor)
    session.output.show(page, executions_table(page.executions))
    if page.next_cursor and not session.json:
        session.output.note(f"more executions: add --cursor {page.next_cursor}")


@command(app, "cancel")
def cancel(session: Session, execution_id: ExecutionId) -> None:
    """Cancel a running or waiting execution: its function steps are stopped, its timers
    and listens dropped."""
    client = session.client
    e = client.get_execution(execution_id, history=False)
    if e.active:
        e = client.cancel_execution(execution_id)
        session.output.done(f"execution {e.id} is {e.status}")
    else:
        session.output.done(f"execution {e.id} had already ended: {e.status}")
    session.output.show(e)


@command(app, "watch")
def watch(session: Session, execution_id: ExecutionId) -> None:
    """Show the execution's task tree, updated live until it ends; exit 1 unless it
    succeeded."""
    e = session.client.get_execution(execution_id)
    out = session.output.out
    if session.json or not out.is_terminal:
        # Nothing to redraw on a file or a pipe: the tree as it ends, once.
        e = follow(session, e, None)
        session.output.show(e, watch_view(e))
    else:
        with Live(watch_view(e), console=out, auto_refresh=False) as live:
            e = follow(session, e, None, lambda seen: live.update(watch_view(seen),
                                                                  refresh=True), POLL_S)
    session.output.note(summary(e))
    if e.status != "succeeded":
        raise typer.Exit(1)
