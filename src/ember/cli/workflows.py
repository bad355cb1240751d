"""``ember workflow`` and ``ember event``: deploy Serverless Workflow documents, list, show
and delete them, run them (once, or over the lines of a JSONL file as a batch), and send
CloudEvents to the event bus that their ``listen`` tasks and schedules wait on."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Group
from rich.text import Text

from ember.cli import batch
from ember.cli.common import Session, UsageError, command
from ember.cli.executions import finish, follow, path_tree, summary
from ember.cli.invoke import read_data
from ember.cli.render import _cells, _grid, _table, when
from ember.client import WorkflowOut
from ember.errors import InvalidSpec
from ember.sdk.workflows import MAX_WAIT_S

app = typer.Typer(help="Workflows: deploy, list, get, delete, run.")
event_app = typer.Typer(help="Send CloudEvents to the workflows' event bus.")

Name = Annotated[str, typer.Argument(help="Workflow name.", show_default=False)]
Data = Annotated[str | None, typer.Option(
    "--data", "-d", metavar="JSON|@FILE", show_default=False,
    help="JSON inline, @FILE holding JSON, or - for stdin.")]

# The kinds of task of the DSL, as a task's mapping names them (``do`` last: a ``for``
# has one too).
_KINDS = ("call", "fork", "switch", "for", "set", "wait", "raise", "try", "emit", "listen",
          "run", "do")


def read_json(data: str | None, option: str = "--data") -> Any:
    """The JSON value ``--data`` gives (inline, ``@FILE`` or ``-``), or None.

    Raises:
        typer.BadParameter: it is not JSON.
    """
    if data is None:
        return None
    raw = read_data(data, "application/json")  # the bytes, as given
    try:
        return json.loads(raw)
    except ValueError as exc:
        where = "" if data.startswith("@") or data == "-" else " inline"
        raise typer.BadParameter(f"not JSON{where} ({exc})", param_hint=option) from exc


# views ---------------------------------------------------------------------------------------


def _describe(definition: dict[str, Any]) -> str:
    """A task's kind and what it does, in a few words: ``call resize:live``."""
    kind = next((k for k in _KINDS if k in definition), "?")
    value = definition.get(kind)
    if kind == "call":
        return f"call {value}"
    if kind == "for" and isinstance(value, dict):
        text = f"for each {value.get('each', 'item')} in {value.get('in')}"
        return text + (f", {value['concurrency']} at once" if "concurrency" in value else "")
    if kind == "fork" and isinstance(value, dict) and value.get("compete"):
        return "fork (compete)"
    if kind == "wait":
        return f"wait {value}"
    if kind == "run" and isinstance(value, dict):
        return f"run workflow {(value.get('workflow') or {}).get('name')}"
    if kind == "listen" and isinstance(value, dict):
        return f"listen to {next(iter(value.get('to') or {}), '?')}"
    return kind


def document_tree(w: WorkflowOut) -> Group | Text:
    """The document's tasks as a tree (each task under the one holding it)."""
    from ember.workflows.model import walk
    from ember.workflows.parser import load_workflow

    try:
        parsed = load_workflow(w.document or {})
    except InvalidSpec as err:  # a document from a newer server: show the rest anyway
        return Text(f"(the task tree cannot be shown: {err.message})", style="dim")
    labels = {}
    for path, task in walk(parsed):
        label = Text(task.name, style="bold")
        label.append(f"  {_describe(task.definition)}", style="dim")
        labels[path] = label
    return Group(path_tree(Text(f"{w.namespace}/{w.name} {w.version}"), labels))


def workflow_panel(w: WorkflowOut) -> Group:
    return Group(_grid(f"workflow {w.name}", [
        ("revision", w.revision), ("namespace", w.namespace), ("version", w.version),
        ("created", when(w.created_at)), ("updated", when(w.updated_at)),
    ]), document_tree(w))


def workflows_table(workflows: list[WorkflowOut]) -> Any:
    table = _table("NAME", "REVISION", "NAMESPACE", "VERSION", "UPDATED")
    for w in workflows:
        table.add_row(*_cells(w.name, w.revision, w.namespace, w.version, when(w.updated_at)))
    return table


# ember workflow ------------------------------------------------------------------------------


def _document_name(path: Path, text: bytes) -> str:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{path} is not valid YAML or JSON: {exc}") from exc
    document = data.get("document") if isinstance(data, dict) else None
    name = document.get("name") if isinstance(document, dict) else None
    if not isinstance(name, str) or not name:
        raise UsageError(f"{path} has no document.name: give the workflow's --name")
    return name


@command(app, "deploy")
def deploy(
    session: Session,
    file: Annotated[Path, typer.Argument(help="The workflow document, YAML or JSON.",
                                         show_default=False)],
    name: Annotated[str | None, typer.Option(
        "--name", "-n", help="The workflow's name (default: the document's document.name).",
        show_default=False)] = None,
) -> None:
    """Deploy a workflow document as the workflow's next revision."""
    try:
        text = file.read_bytes()
    except OSError as exc:
        raise UsageError(f"{file}: {exc.strerror or exc}") from exc
    media = "application/json" if file.suffix.lower() == ".json" else "application/yaml"
    workflow = session.client.deploy_workflow(name or _document_name(file, text), text, media)
    if workflow.changed:
        session.output.done(f"deployed workflow {workflow.name} revision {workflow.revision} "
                            f"({workflow.namespace}/{workflow.name} {workflow.version})")
    else:
        session.output.done(f"workflow {workflow.name} unchanged: revision "
                            f"{workflow.revision} has this document")
    session.output.show(workflow)


@command(app, "list")
def list_(
    session: Session,
    prefix: Annotated[str, typer.Option(help="Only names starting with this.")] = "",
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 100,
    cursor: Annotated[str | None, typer.Option(
        help="Start after this cursor (from the last page).", show_default=False)] = None,
) -> None:
    """List workflows with their latest revision."""
    page = session.client.list_workflows(prefix=prefix, limit=limit, cursor=cursor)
    session.output.show(page, workflows_table(page.workflows))
    if page.next_cursor and not session.json:
        session.output.note(f"more workflows: add --cursor {page.next_cursor}")


@command(app, "get")
def get(session: Session, name: Name) -> None:
    """Show a workflow: its latest revision, namespace, version and task tree."""
    workflow = session.client.get_workflow(name)
    session.output.show(workflow, workflow_panel(workflow))


@command(app, "delete")
def delete(
    session: Session, name: Name,
    force: Annotated[bool, typer.Option(
        "--force", help="Cancel its running executions first instead of refusing.")] = False,
) -> None:
    """Delete a workflow and its revisions (refused while executions of it run)."""
    session.client.delete_workflow(name, force=force)
    session.output.done(f"deleted workflow {name}")
    if session.json:
        session.output.json({"deleted": name})


@command(app, "run")
def run(
    session: Session, name: Name, data: Data = None,
    wait: Annotated[bool, typer.Option(
        "--wait", help="Wait for the execution to end and print its output; exit 1 "
        "unless it succeeded.")] = False,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", min=0, show_default=False,
        help="Seconds to wait (with --wait: 60 by default; a batch waits until it ends).",
    )] = None,
    idempotency_key: Annotated[str | None, typer.Option(
        help="Runs with the same key start one execution.", show_default=False)] = None,
    input_file: Annotated[Path | None, typer.Option(
        "--input-file", show_default=False,
        help="A batch: the lines of this JSONL file, as a list, are the input; shows "
        "progress and writes one result line per item.")] = None,
    output_file: Annotated[Path | None, typer.Option(
        "--output", "-o", show_default=False,
        help="With --input-file: where the results go (<input>.results.jsonl).")] = None,
) -> None:
    """Run a workflow and print the execution id, or with --wait its output."""
    if input_file is not None:
        if data is not None:
            raise typer.BadParameter("give --data or --input-file, not both",
                                     param_hint="--input-file")
        batch.run_batch(session, name, input_file, output_file, idempotency_key, timeout)
        return
    if output_file is not None:
        raise typer.BadParameter("--output goes with --input-file", param_hint="--output")
    value = read_json(data)
    waited = (60.0 if timeout is None else timeout) if wait else None
    started = time.monotonic()
    execution = session.client.run_workflow(
        name, value, idempotency_key=idempotency_key,
        wait_s=round(min(waited, MAX_WAIT_S), 3) if waited else None)
    if waited is None:
        session.output.note(summary(execution))
        if session.json:
            session.output.show(execution)
        else:
            typer.echo(execution.id)
        return
    execution = follow(session, execution, waited - (time.monotonic() - started))
    finish(session, execution, waited)


# ember event ---------------------------------------------------------------------------------


@command(event_app, "send")
def send(
    session: Session,
    type_: Annotated[str, typer.Option("--type", "-t", help="The event's type.",
                                       show_default=False)],
    source: Annotated[str, typer.Option("--source", help="The event's source.")]
    = "ember.cli",
    data: Data = None,
    subject: Annotated[str | None, typer.Option("--subject", help="The event's subject.",
                                                show_default=False)] = None,
    event_id: Annotated[str | None, typer.Option(
        "--id", help="The event's id (a new one by default).", show_default=False)] = None,
) -> None:
    """Send a CloudEvent: executions listening for it go on, schedules count it."""
    sent = session.client.send_event(type_, read_json(data), source=source, subject=subject,
                                     id=event_id)
    matched = sent.matched
    message = (f"event {sent.id}: matched {matched.executions} execution(s) and "
               f"{matched.schedules} schedule(s)")
    if sent.duplicate:
        message += "; a duplicate: an event with this source and id came before"
    elif sent.retained:
        message += "; kept for listens not reached yet"
    session.output.done(message)
    session.output.show(sent)
