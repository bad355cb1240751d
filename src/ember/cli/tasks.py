"""``ember task`` and ``ember dlq``: follow async invocations as tasks, wait for and stop
them, and show and redrive the dead letters of those that failed for good."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.text import Text

from ember.cli import render
from ember.cli.common import Session, command
from ember.client import FINAL_STATUSES, TaskOut, decode_body, task_error

task_app = typer.Typer(help="Follow async invocations as tasks: get, list, wait for, stop.")
dlq_app = typer.Typer(
    help="Dead letters: async invocations that failed for good. List, show, redrive."
)

TaskId = Annotated[
    str,
    typer.Argument(help="Task id: the request id of the async invocation.", show_default=False),
]
Limit = Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")]
Cursor = Annotated[
    str | None,
    typer.Option(help="Start after this cursor (from the last page).", show_default=False),
]
Timeout = Annotated[
    float, typer.Option("--timeout", min=0, help="Seconds to wait for the task to end.")
]
Raw = Annotated[
    bool, typer.Option("--raw", help="Print the result without pretty-printing its JSON.")
]


# what a task came to -----------------------------------------------------------------------


def summary(task: TaskOut) -> Text:
    """One line: task id, status, attempts, version and run time."""
    parts = [f"task {task.id}", task.status]
    if task.attempts:
        parts.append(f"attempts {task.attempts}")
    if task.version:
        parts.append(f"version {task.version}")
    if task.finished_at is not None:
        parts.append(render.duration(task.started_at, task.finished_at))
    if task.dead_lettered and task.status in {"failed", "expired"}:
        parts.append("in the dead letters")
    return Text(" · ".join(parts), style=_SUMMARY_STYLES.get(task.status, "red"))


_SUMMARY_STYLES = {"succeeded": "dim", "stopped": "yellow", "queued": "yellow", "running": "yellow"}


def finish(session: Session, task: TaskOut, waited_s: float, raw: bool = False) -> None:
    """Print what a waited-for task came to, like a sync invocation's answer: its result on
    stdout (the task's JSON with ``--json``), its summary and any error on stderr.

    Raises:
        typer.Exit: with 1 unless the task succeeded (it failed, expired, was stopped, or
            had not ended after ``waited_s`` seconds).
    """
    output = session.output
    if session.json:
        output.show(task)
    elif task.status == "succeeded":
        _print_result(task, raw)
    output.note(summary(task))
    if task.status == "succeeded":
        return
    if task.status not in FINAL_STATUSES:
        output.note(
            f"task {task.id} is still {task.status} after {waited_s:g} s: "
            f"ember task wait {task.id}"
        )
    error = task_error(task)
    if error is not None:
        output.failure(error)
    elif task.status == "stopped":
        output.note(f"task {task.id} was stopped")
    raise typer.Exit(1)


def _print_result(task: TaskOut, raw: bool) -> None:
    try:
        value = decode_body(task.result)
    except ValueError:
        value = task.result
    if isinstance(value, bytes):
        typer.echo(value, nl=False)
    elif isinstance(value, str) and "json" not in (task.result_content_type or ""):
        typer.echo(value, nl=not value.endswith("\n"))
    elif raw:
        typer.echo(json.dumps(value, ensure_ascii=False))
    else:
        typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


# ember task --------------------------------------------------------------------------------


@command(task_app, "get")
def get(session: Session, task_id: TaskId) -> None:
    """Show a task: status, attempts, timings, result or error."""
    task = session.client.get_task(task_id)
    session.output.show(task, render.task_panel(task))


@command(task_app, "list")
def list_(
    session: Session,
    name: Annotated[str, typer.Argument(help="Function name.", show_default=False)],
    status: Annotated[
        str | None,
        typer.Option(help="Only tasks with this status: queued, running, succeeded, failed, "
                     "stopped or expired.", show_default=False),
    ] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> None:
    """List a function's tasks, newest first."""
    page = session.client.list_tasks(name, status=status, limit=limit, cursor=cursor)
    session.output.show(page, render.tasks_table(page.tasks))
    if page.next_cursor and not session.json:
        session.output.note(f"more tasks: add --cursor {page.next_cursor}")


@command(task_app, "wait")
def wait(session: Session, task_id: TaskId, timeout: Timeout = 60, raw: Raw = False) -> None:
    """Wait for a task to end and print its result or error; exit 1 unless it succeeded."""
    finish(session, session.client.wait_task(task_id, timeout_s=timeout), timeout, raw)


@command(task_app, "stop")
def stop(session: Session, task_id: TaskId) -> None:
    """Stop a task: a queued one never runs, a running one's instance is killed."""
    task = session.client.stop_task(task_id)
    if task.status == "stopped":
        session.output.done(f"task {task.id} is stopped")
    elif task.status in FINAL_STATUSES:
        session.output.done(f"task {task.id} had already ended: {task.status}")
    else:
        session.output.done(
            f"task {task.id} is {task.status} on another server: it stops when next claimed"
        )
    session.output.show(task)


# ember dlq ---------------------------------------------------------------------------------


@command(dlq_app, "list")
def dlq_list(
    session: Session,
    function: Annotated[
        str | None,
        typer.Option("--function", "-f", help="Only this function's.", show_default=False),
    ] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> None:
    """List dead letters, of every function or of one."""
    page = session.client.list_dead_letters(function, limit=limit, cursor=cursor)
    session.output.show(page, render.dead_letters_table(page.dead_letters))
    if page.next_cursor and not session.json:
        session.output.note(f"more dead letters: add --cursor {page.next_cursor}")


@command(dlq_app, "show")
def dlq_show(session: Session, task_id: TaskId) -> None:
    """Show a dead letter: its payload, why it failed, and after how many attempts."""
    dead = session.client.get_dead_letter(task_id)
    session.output.show(dead, render.dead_letter_panel(dead))
    trace = (dead.reason.get("details") or {}).get("traceback")
    if isinstance(trace, str) and trace.strip() and not session.json:
        session.output.out.out(trace.rstrip("\n"), highlight=False)


@command(dlq_app, "redrive")
def dlq_redrive(session: Session, task_id: TaskId) -> None:
    """Queue a dead letter's event again; its task runs anew."""
    task = session.client.redrive(task_id)
    session.output.done(f"task {task.id} is {task.status} again: ember task wait {task.id}")
    session.output.show(task)
