"""``ember build``: install a directory's requirements.txt on the server and follow the
build, read a build's log, list a function's builds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ember.cli import progress, render
from ember.cli.common import Session, UsageError, command
from ember.cli.deploy import MANIFEST, read_manifest
from ember.model.build import REQUIREMENTS
from ember.sdk.calls import code_bytes

app = typer.Typer(help="Build requirements.txt into dependencies and read build logs.")

BuildId = Annotated[str, typer.Argument(
    help="Build id (`ember build list FUNCTION` shows them).", show_default=False,
)]


@command(app, "start")
def start(
    session: Session,
    directory: Annotated[Path, typer.Argument(
        help=f"Directory holding {REQUIREMENTS}; its {MANIFEST}, when there is one, gives "
        "the files left out and the function.",
    )] = Path("."),
    function: Annotated[str | None, typer.Option(
        "--function", "-f", show_default=False,
        help=f"Record the build against this function (default: the name in {MANIFEST}).",
    )] = None,
    follow: Annotated[bool, typer.Option(
        "--follow/--no-follow", help="Show pip's output until the build ends.",
    )] = True,
) -> None:
    """Install a directory's requirements.txt on the server, as a deploy of it would."""
    code, name = _code(directory)
    build = session.client.start_build(code, function or name)
    output = session.output
    if build.cached:
        output.done(f"{REQUIREMENTS} of {directory} is already built (build {build.id})")
    elif follow:
        build = progress.follow(session, build.id, progress.stderr_lines(session))
        if build.status != "succeeded":
            raise progress.failure(session, build, shown=not output.json_mode)
        output.done(f"build {build.id} succeeded")
    else:
        output.done(f"build {build.id} started: `ember build logs {build.id} --follow` "
                    "follows it")
    output.show(build)


def _code(directory: Path) -> tuple[bytes, str | None]:
    """The zip of ``directory``, made as ``ember deploy`` makes it, and the function its
    manifest names."""
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory")
    if not (directory / REQUIREMENTS).is_file():
        raise UsageError(f"{directory} holds no {REQUIREMENTS}: there is nothing to build")
    if not (directory / MANIFEST).is_file():
        return code_bytes(directory), None
    manifest = read_manifest(directory)
    return code_bytes(directory, manifest.exclude), manifest.name


@command(app, "logs")
def logs(
    session: Session,
    build_id: BuildId,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Print the log as it grows until the build ends; exit 1 when "
        "it failed.",
    )] = False,
) -> None:
    """Print a build's log (pip's output)."""
    output = session.output
    if follow:
        build = progress.follow(session, build_id, _stdout_lines(session))
        if build.status == "failed":
            raise progress.failure(session, build, shown=not output.json_mode)
    else:
        build = session.client.get_build(build_id)
        if not output.json_mode and build.log:
            output.out.out(build.log.rstrip("\n"), highlight=False)
    if build.status == "failed":
        output.note(Text(f"build {build.id} failed: {build.error}", style="red"))
    else:
        output.note(f"build {build.id} {build.status}")
    output.show(build)


def _stdout_lines(session: Session) -> progress.LineSink:
    def show(line: str) -> None:
        if not session.output.json_mode:
            session.output.out.out(line, highlight=False)

    return show


@command(app, "list")
def list_(
    session: Session,
    function: Annotated[str, typer.Argument(help="Function name.", show_default=False)],
) -> None:
    """List a function's builds, newest first."""
    found = session.client.list_builds(function)
    session.output.show({"builds": found}, render.builds_table(found))
