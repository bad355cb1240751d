"""Batch runs: ``ember workflow run NAME --input-file items.jsonl``. The lines of the file,
each a JSON value, are the execution's input as a list (the workflow maps them with a
``for``); a progress bar follows the ``for`` (done / failed / total); when the execution
ends, one result line per item is written, and the lines of the items that did not succeed
go to a file of their own, ready to be run again."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ember.cli.common import Session, UsageError
from ember.cli.executions import POLL_S, follow, problem, summary
from ember.client import ExecutionOut

SUCCEEDED, FAILED = "succeeded", "failed"
CANCELLED = "cancelled"  # it started, and stopped when the execution ended
NOT_RUN = "not_run"  # the execution ended before it started


@dataclass(frozen=True)
class Item:
    line: str  # as written in the file, for the file of items to run again
    value: Any


def read_items(path: Path) -> list[Item]:
    """The items of a JSONL file: one JSON value per line, blank lines left out.

    Raises:
        UsageError: the file cannot be read, a line is not JSON (naming it), or it holds
            no item.
    """
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--input-file {path}: {getattr(exc, 'strerror', None) or exc}",
                         ) from exc
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(Item(line, json.loads(line)))
        except ValueError as exc:
            raise UsageError(f"{path}, line {number}: not a JSON value: {exc}") from exc
    if not items:
        raise UsageError(f"{path} holds no items: write one JSON value per line")
    return items


def item_statuses(execution: ExecutionOut, count: int) -> list[str]:
    """What each item came to: ``failed`` when a task of its iteration failed (caught or
    not, as the ``for``'s progress counts it); else ``succeeded`` when the execution did,
    or when every task of its iteration did; else ``cancelled`` or ``not_run``."""
    progress = execution.progress[0] if execution.progress else None
    failed = set(progress.failed_items) if progress is not None else set()
    if execution.status == SUCCEEDED:
        return [FAILED if i in failed else SUCCEEDED for i in range(count)]
    ran: dict[int, set[str]] = {}
    if progress is not None:
        # An iteration's tasks lie below the for's do, their keys ending in @index.
        inside = progress.path + "/do/"
        for step in execution.history or []:
            index = step.key.rsplit("@", 1)[-1]
            if step.path.startswith(inside) and "@" in step.key and index.isdigit():
                ran.setdefault(int(index), set()).add(step.status)
    statuses = []
    for i in range(count):
        if i in failed:
            statuses.append(FAILED)
        elif i not in ran:
            statuses.append(NOT_RUN)
        elif ran[i] <= {SUCCEEDED, "skipped"}:
            statuses.append(SUCCEEDED)
        else:
            statuses.append(CANCELLED)
    return statuses


def _bar(session: Session, name: str, total: int) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed"), TimeElapsedColumn(),
        console=session.output.err, disable=session.json,
    )


def _follow(session: Session, name: str, execution: ExecutionOut, total: int,
            timeout_s: float | None) -> ExecutionOut:
    """Follow the execution under a progress bar fed by its first ``for``'s progress."""
    with _bar(session, name, total) as bar:
        task = bar.add_task(name, total=total, failed=0)

        def show(seen: ExecutionOut) -> None:
            if seen.progress:
                p = seen.progress[0]
                bar.update(task, total=p.total, completed=p.done, failed=p.failed)

        show(execution)
        return follow(session, execution, timeout_s, show, POLL_S, history=False)


def run_batch(session: Session, name: str, input_file: Path, output_file: Path | None,
              idempotency_key: str | None, timeout_s: float | None) -> None:
    """Run ``name`` over the items of ``input_file``; write the results and the items to
    run again.

    Raises:
        typer.Exit: 1 when an item or the execution did not succeed, or it had not ended
            after ``timeout_s``.
    """
    items = read_items(input_file)
    results_path = output_file or input_file.with_name(f"{input_file.stem}.results.jsonl")
    again_path = input_file.with_name(f"{input_file.stem}.failed.jsonl")
    output = session.output
    execution = session.client.run_workflow(name, [item.value for item in items],
                                            idempotency_key=idempotency_key)
    output.note(f"execution {execution.id} · {len(items)} items")
    execution = _follow(session, name, execution, len(items), timeout_s)
    if execution.active:
        output.note(summary(execution))
        output.note(f"execution {execution.id} is still {execution.status}: "
                    f"ember execution watch {execution.id}")
        raise typer.Exit(1)
    if execution.status != SUCCEEDED:
        # Which items ran, and how far, is in the history (left out while following).
        execution = session.client.get_execution(execution.id)
    statuses = item_statuses(execution, len(items))
    outputs = execution.output if isinstance(execution.output, list) \
        and len(execution.output) == len(items) else None
    with results_path.open("w") as results:
        for i, status in enumerate(statuses):
            line = {"index": i, "status": status, "output": outputs[i] if outputs else None}
            results.write(json.dumps(line, ensure_ascii=False) + "\n")
    again = [item.line for item, status in zip(items, statuses, strict=True)
             if status != SUCCEEDED]
    if again:
        again_path.write_text("".join(line + "\n" for line in again))
    _report(session, name, execution, statuses, results_path, again_path if again else None)
    if again or execution.status != SUCCEEDED:
        raise typer.Exit(1)


def _report(session: Session, name: str, execution: ExecutionOut, statuses: list[str],
            results_path: Path, again_path: Path | None) -> None:
    output = session.output
    counts = {status: statuses.count(status) for status in dict.fromkeys(statuses)}
    if session.json:
        output.json({"execution": execution.id, "status": execution.status,
                     "total": len(statuses), "items": counts, "results": str(results_path),
                     "failed_items": str(again_path) if again_path else None})
    output.note(summary(execution))
    if execution.error:
        output.note(problem(execution.error) or "")
    tally = ", ".join(f"{count} {status.replace('_', ' ')}" for status, count in counts.items())
    output.done(f"{len(statuses)} items: {tally}; results in {results_path}")
    if again_path is not None:
        output.done(f"the {len(statuses) - counts.get(SUCCEEDED, 0)} item(s) that did not "
                    f"succeed are in {again_path}; run them again with:\n"
                    f"  ember workflow run {name} --input-file {again_path}")
