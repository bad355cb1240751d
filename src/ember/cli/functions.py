"""``ember fn``: create, read, update, delete, disable and download functions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ember.cli import render
from ember.cli.common import Session, UsageError, apply_assignments, command, load_mapping
from ember.client import FunctionList, FunctionOut

app = typer.Typer(
    help="Manage functions: create, get, list, update, delete, disable, enable, pause, resume; "
    "list their invocations and instances; warm instances up."
)

Name = Annotated[str, typer.Argument(help="Function name.", show_default=False)]
ConfigFile = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML or JSON file of config fields.", show_default=False),
]
Sets = Annotated[
    list[str] | None,
    typer.Option(
        "--set", "-s", metavar="KEY=VALUE", show_default=False,
        help="A config field, the value read as YAML: memory_mb=512, environment='{A: b}', "
        "environment.A=b. Repeatable.",
    ),
]


def _config(config_file: Path | None, sets: list[str] | None) -> dict[str, Any]:
    config = load_mapping(config_file) if config_file is not None else {}
    return apply_assignments(config, sets or [])


def can_ask() -> bool:
    """Whether a person can answer a confirmation: stdin is a terminal."""
    return sys.stdin.isatty()


def confirm_delete(what: str, question: str) -> None:
    """Ask ``question`` on the terminal before deleting ``what``; stop unless the answer is
    yes.

    Raises:
        UsageError: no one can answer (stdin is not a terminal): pass --yes instead.
        typer.Abort: the answer was no.
    """
    if not can_ask():
        raise UsageError(
            f"not deleting {what}: stdin is not a terminal to confirm on; pass --yes"
        )
    typer.confirm(question, abort=True, err=True)


def _show(session: Session, function: FunctionOut) -> None:
    session.output.show(function, render.function_panel(function))


@command(app, "create")
def create(
    session: Session,
    name: Name,
    code: Annotated[
        Path, typer.Argument(help="Directory of the code (zipped) or a .zip file.",
                             show_default=False),
    ],
    config_file: ConfigFile = None,
    sets: Sets = None,
) -> None:
    """Create a function from a directory or a zip, with config from a file and --set."""
    config = _config(config_file, sets)
    with session.output.uploading(f"uploading {code}"):
        function = session.client.create_function(name, code, config)
    session.output.done(
        f"created function {function.name} (code {render.size(function.code.size)}, "
        f"sha256 {function.code.sha256[:12]})"
    )
    _show(session, function)


@command(app, "get")
def get(session: Session, name: Name) -> None:
    """Show a function's latest config and code."""
    _show(session, session.client.get_function(name))


@command(app, "list")
def list_(
    session: Session,
    prefix: Annotated[str, typer.Option(help="Only names starting with this.")] = "",
    tag: Annotated[
        str | None, typer.Option(help="Only functions with this tag: KEY or KEY=VALUE.")
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(min=1, max=1000, help="One page of at most this many; all when not given."),
    ] = None,
    cursor: Annotated[
        str | None, typer.Option(help="Start after this cursor (from the last page).")
    ] = None,
) -> None:
    """List functions by name."""
    client = session.client
    if limit is None:
        page = FunctionList(functions=list(client.iter_functions(prefix=prefix, tag=tag)),
                            next_cursor=None)
    else:
        page = client.list_functions(prefix=prefix, tag=tag, limit=limit, cursor=cursor)
    session.output.show(page, render.functions_table(page.functions))
    if page.next_cursor and not session.json:
        session.output.note(f"more functions: add --cursor {page.next_cursor}")


@command(app, "update")
def update(
    session: Session,
    name: Name,
    code: Annotated[
        Path | None,
        typer.Option(help="New code: a directory (zipped) or a .zip file.", show_default=False),
    ] = None,
    config_file: ConfigFile = None,
    sets: Sets = None,
) -> None:
    """Replace the code and/or config fields of a function's latest."""
    if code is None and config_file is None and not sets:
        raise typer.BadParameter("nothing to update: give --code, --config or --set")
    client = session.client
    patch = load_mapping(config_file) if config_file is not None else {}
    if any("." in s.partition("=")[0] for s in sets or []):
        current = client.get_function(name).config.to_json()
        patch = apply_assignments(patch, sets or [], current)
    else:
        patch = apply_assignments(patch, sets or [])
    function = None
    if code is not None:
        with session.output.uploading(f"uploading {code}"):
            function = client.update_code(name, code)
        session.output.done(
            f"updated code of {name} ({render.size(function.code.size)}, "
            f"sha256 {function.code.sha256[:12]})"
        )
    if patch:
        function = client.update_function(name, patch)
        session.output.done(f"updated config of {name}: {', '.join(sorted(patch))}")
    if function is None:
        session.output.note(f"{config_file} holds no config fields: nothing changed")
        function = client.get_function(name)
    _show(session, function)


@command(app, "delete")
def delete(
    session: Session,
    name: Name,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a function with all its versions and aliases."""
    if not yes:
        confirm_delete(
            f"function {name!r}", f"Delete function {name!r} with all its versions and aliases?"
        )
    deleted = session.client.delete_function(name)
    session.output.done(f"deleted function {deleted.name}")
    session.output.show(deleted)


@command(app, "instances")
def instances(session: Session, name: Name) -> None:
    """Show a function's instances now: per version, how many it has and wants and why;
    per instance, its state, requests in flight, start, last use and memory."""
    now = session.client.list_instances(name)
    session.output.show(now, render.instances_view(now))


@command(app, "warm")
def warm(
    session: Session,
    name: Name,
    qualifier: Annotated[
        str, typer.Option("--qualifier", "-q", help="latest, a version number or an alias.")
    ] = "latest",
    instances: Annotated[
        int, typer.Option(min=1, max=100, help="How many instances to start now.")
    ] = 1,
) -> None:
    """Start instances of a function now, ahead of its traffic; they then idle until
    keep-alive reclaims them."""
    warmed = session.client.warm(name, qualifier=qualifier, instances=instances)
    session.output.show(warmed)
    session.output.done(f"started {warmed.started} of {instances} instances of {name} "
                        f"({qualifier})")


@command(app, "disable")
def disable(session: Session, name: Name) -> None:
    """Refuse invocations of a function until it is enabled."""
    function = session.client.disable_function(name)
    session.output.done(f"function {function.name} is {function.state}")
    session.output.show(function)


@command(app, "enable")
def enable(session: Session, name: Name) -> None:
    """Allow invocations of a disabled function."""
    function = session.client.enable_function(name)
    session.output.done(f"function {function.name} is {function.state}")
    session.output.show(function)


@command(app, "pause")
def pause(session: Session, name: Name) -> None:
    """Stop running a function's async invocations; new ones wait in the queue."""
    function = session.client.pause_function(name)
    session.output.done(f"async invocations of {function.name} are {function.async_state}")
    session.output.show(function)


@command(app, "resume")
def resume(session: Session, name: Name) -> None:
    """Run a paused function's queued async invocations again."""
    function = session.client.resume_function(name)
    session.output.done(f"async invocations of {function.name} are {function.async_state}")
    session.output.show(function)


@command(app, "code")
def code(
    session: Session,
    name: Name,
    qualifier: Annotated[
        str, typer.Option("--qualifier", "-q", help="latest or a version number.")
    ] = "latest",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to write the zip ('-' for stdout); "
                     "NAME.zip when not given.", show_default=False),
    ] = None,
) -> None:
    """Download the zip of a function's code."""
    data = session.client.download_code(name, qualifier)
    if output is not None and str(output) == "-":
        typer.echo(data, nl=False)
        return
    target = output or Path(f"{name}.zip")
    try:
        target.write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from exc
    info = {"function": name, "qualifier": qualifier, "path": str(target), "size": len(data)}
    session.output.done(f"wrote {target} ({render.size(len(data))})")
    session.output.show(info)
