"""``ember invoke``: run a function once and print its answer.

The answer's body goes to stdout (JSON pretty-printed unless ``--raw``); the request id,
version, cold or warm start and timings go to stderr, so that stdout can be piped. With
``--async`` the invocation is queued and stdout holds its request id (the task id), or with
``--wait`` the task's result once it has run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from ember.cli.common import Session, UsageError
from ember.cli.tasks import finish
from ember.client import InvocationResult


def read_data(data: str | None, content_type: str | None) -> Any:
    """The payload ``--data`` names: inline JSON, ``@file`` or ``-`` (stdin).

    With ``content_type`` the bytes are sent as they are; without, they must be JSON inline,
    while a file or stdin that is not JSON is sent as raw bytes.
    """
    if data is None:
        return None
    if data == "-":
        raw = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
        source = "stdin"
    elif data.startswith("@"):
        path = Path(data[1:])
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"--data {data}: {exc.strerror or exc}") from exc
        source = str(path)
    else:
        raw = data.encode()
        source = ""
    if content_type is not None:
        return raw
    try:
        return json.loads(raw)
    except ValueError as exc:
        if source:
            return raw
        raise typer.BadParameter(
            f"not JSON ({exc}); send other bytes with --data @FILE or --content-type",
            param_hint="--data",
        ) from exc


def summary(result: InvocationResult) -> Text:
    """One line: request id, version, cold or warm, init and run times."""
    parts = [f"request {result.request_id or '-'}", f"version {result.version or '-'}"]
    if result.cold_start:
        init = f", init {result.init_ms:g} ms" if result.init_ms is not None else ""
        parts.append(f"cold start{init}")
    else:
        parts.append("warm")
    if result.duration_ms is not None:
        parts.append(f"{result.duration_ms:g} ms")
    if not result.ok:
        parts.append(f"status {result.status_code}")
    return Text(" · ".join(parts), style="dim" if result.ok else "red")


def invoke(
    session: Session,
    name: Annotated[str, typer.Argument(help="Function name.", show_default=False)],
    qualifier: Annotated[
        str, typer.Option("--qualifier", "-q", help="latest, a version number or an alias.")
    ] = "latest",
    data: Annotated[
        str | None,
        typer.Option(
            "--data", "-d", show_default=False,
            help="Payload: inline JSON, @FILE, or - for stdin. None sends JSON null.",
        ),
    ] = None,
    content_type: Annotated[
        str | None,
        typer.Option(help="Send --data as raw bytes with this content type.", show_default=False),
    ] = None,
    log_tail: Annotated[
        bool, typer.Option("--log-tail", help="Print the last 4 KiB of the log to stderr.")
    ] = False,
    raw: Annotated[bool, typer.Option("--raw", help="Print the body exactly as received.")] = False,
    timeout: Annotated[
        float | None,
        typer.Option(help="Seconds to wait for the answer (with --wait: for the task to "
                     "end, 60 by default).", show_default=False),
    ] = None,
    async_: Annotated[
        bool, typer.Option("--async", help="Queue the invocation and print its request id.")
    ] = False,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="With --async: invocations with the same key within 24 h run once.",
                     show_default=False),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="With --async: wait for the task and print its result; "
                     "exit 1 unless it succeeded."),
    ] = False,
) -> None:
    """Invoke a function and print its answer."""
    if not async_:
        for flag, given in (("--idempotency-key", idempotency_key is not None),
                            ("--wait", wait)):
            if given:
                raise typer.BadParameter(f"{flag} needs --async", param_hint=flag)
    elif log_tail:
        raise typer.BadParameter(
            "an async invocation returns no log tail: see ember logs NAME --request-id ID",
            param_hint="--log-tail",
        )
    payload = read_data(data, content_type)
    if async_:
        wait_s = (60.0 if timeout is None else timeout) if wait else None
        _invoke_async(session, name, payload, qualifier, content_type, idempotency_key,
                      wait_s, raw)
        return
    result = session.client.invoke(
        name, payload, qualifier=qualifier, content_type=content_type, log_tail=log_tail,
        timeout=timeout, check=False,
    )
    output = session.output
    if result.error is None or session.json:
        _print_body(result, raw or session.json)
    output.note(summary(result))
    if result.log_tail:
        output.rule("log tail")
        output.err.out(result.log_tail.rstrip("\n"), highlight=False)
        output.rule()
    if result.error is not None:
        output.failure(result.error)
        raise typer.Exit(1)


def _print_body(result: InvocationResult, raw: bool) -> None:
    if not raw and result.is_json:
        try:
            typer.echo(json.dumps(result.json(), indent=2, ensure_ascii=False))
            return
        except ValueError:
            pass
    if not result.body:
        return
    media = (result.content_type or "").split(";", 1)[0].strip()
    if raw or not (media.startswith("text/") or result.is_json):
        typer.echo(result.body, nl=False)
    else:
        typer.echo(result.text, nl=not result.text.endswith("\n"))


def _invoke_async(
    session: Session, name: str, payload: Any, qualifier: str, content_type: str | None,
    idempotency_key: str | None, wait_s: float | None, raw: bool,
) -> None:
    """Queue the invocation; print its request id, or with ``wait_s`` what its task came
    to (exit 1 unless it succeeded)."""
    client, output = session.client, session.output
    accepted = client.invoke_async(
        name, payload, qualifier=qualifier, content_type=content_type,
        idempotency_key=idempotency_key,
    )
    task_id = accepted.request_id
    if accepted.deduplicated:
        output.note(Text(
            f"request {task_id} · deduplicated: key {idempotency_key!r} was used by this "
            f"earlier invocation ({accepted.task.status})", style="yellow",
        ))
    else:
        output.note(Text(f"request {task_id} · queued", style="dim"))
    if wait_s is None:
        if session.json:
            output.show(accepted)
        else:
            typer.echo(task_id)
        return
    finish(session, client.wait_task(task_id, timeout_s=wait_s), wait_s, raw)
