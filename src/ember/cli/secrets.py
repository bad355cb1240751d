"""``ember secret``: set a secret from stdin or a file, list secrets, delete one.

A value is never taken from the command line, where other users could read it in the
process list and the shell would keep it in its history.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated

import typer

from ember.cli import render
from ember.cli.common import Session, UsageError, command

app = typer.Typer(help="Set, list and delete secrets: values functions read from their "
                       "environment, encrypted on the server and never shown again.")

Name = Annotated[str, typer.Argument(
    help="Secret name: also the environment variable functions read it from.",
    show_default=False,
)]


def _value(file: Path | None) -> str:
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{file}: cannot read the value: {exc}", {"path": str(file)}) from exc
    elif sys.stdin.isatty():
        text = getpass.getpass("value (not shown): ")
    else:
        text = sys.stdin.read()
    # `echo value | ember secret set` and editors end the text with a newline that is no
    # part of the value.
    if text.endswith("\r\n"):
        return text[:-2]
    return text.removesuffix("\n")


@command(app, "set")
def set_(
    session: Session,
    name: Name,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", help="Read the value from this file instead of stdin.",
        show_default=False, dir_okay=False,
    )] = None,
) -> None:
    """Set a secret's value from stdin (or --file); one trailing newline is removed. Made
    when new; functions started afterwards get the new value."""
    value = _value(file)
    if not value:
        raise UsageError("the value is empty: pipe it on stdin or give --file PATH")
    secret = session.client.set_secret(name, value)
    session.output.done(f"set secret {secret.name}")
    session.output.show(secret)


@command(app, "list")
def list_(session: Session) -> None:
    """List secrets: names and times, never values."""
    secrets = session.client.list_secrets()
    session.output.show({"secrets": secrets}, render.secrets_table(secrets))


@command(app, "delete")
def delete(
    session: Session,
    name: Name,
    force: Annotated[bool, typer.Option(
        "--force", help="Delete it even while functions list it in their config.",
    )] = False,
) -> None:
    """Delete a secret (refused while a function or function version lists it, unless
    --force)."""
    deleted = session.client.delete_secret(name, force=force)
    session.output.done(f"deleted secret {deleted.name}")
    session.output.show(deleted)
