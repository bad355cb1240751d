"""``ember key`` (API keys: create, list, revoke) and ``ember audit`` (who changed what)."""

from __future__ import annotations

import re
from typing import Annotated

import typer
from rich.table import Table

from ember.cli.common import Session, UsageError, command
from ember.cli.render import _cells, _table, when

app = typer.Typer(help="API keys: create (the secret is shown once), list, revoke.")

_DURATION = re.compile(r"^(\d+)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s`` in seconds."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise UsageError(f"--expires {text!r}: write a number and a unit, e.g. 30d, 12h, 90m")
    return int(match.group(1)) * _SECONDS[match.group(2)]


@command(app, "create")
def create(
    session: Session,
    name: Annotated[str, typer.Argument(help="The key's name.", show_default=False)],
    role: Annotated[str, typer.Option("--role", "-r", help="admin, developer, invoker or "
                                      "viewer.", show_default=False)],
    functions: Annotated[
        list[str] | None,
        typer.Option("--functions", "-f", help="A function or workflow name or pattern "
                     "(fnmatch) the key reaches; repeatable (all when not given).",
                     show_default=False),
    ] = None,
    expires: Annotated[str | None, typer.Option("--expires", help="It expires after this "
                                                "long: 30d, 12h, 90m.", show_default=False)
                       ] = None,
) -> None:
    """Make a key. Its secret is printed this once: keep it, Ember keeps only a digest."""
    made = session.client.create_key(name, role, functions=functions or ["*"],
                                     expires_in_s=seconds(expires) if expires else None)
    if session.json:
        session.output.show(made)
        return
    session.output.done(f"key {made.name} ({made.role}, {', '.join(made.functions)})")
    session.output.out.print(made.key, highlight=False)
    session.output.note("this is the only time the key is shown: use it as EMBER_API_KEY, or "
                        "as Authorization: Bearer <key>")


@command(app, "list")
def list_(session: Session) -> None:
    """List keys (never their secrets)."""
    keys = session.client.list_keys()
    table: Table = _table("NAME", "ROLE", "FUNCTIONS", "CREATED", "EXPIRES")
    for key in keys:
        table.add_row(*_cells(key.name, key.role, ", ".join(key.functions),
                              when(key.created_at), when(key.expires_at)))
    session.output.show({"keys": keys}, table)


@command(app, "revoke")
def revoke(session: Session,
           name: Annotated[str, typer.Argument(help="The key's name.", show_default=False)]
           ) -> None:
    """Revoke a key: requests with it are refused from now on."""
    session.client.revoke_key(name)
    session.output.done(f"revoked key {name}")


def audit(
    session: Session,
    key: Annotated[str | None, typer.Option("--key", "-k", help="Only this key's changes.",
                                            show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many, newest first.")] = 50,
) -> None:
    """Control-plane changes, newest first: when, which key, what, the answer."""
    records = session.client.get_audit(key=key, limit=limit)
    table: Table = _table("WHEN", "KEY", "ACTION", "RESOURCE", "STATUS")
    for record in records:
        table.add_row(*_cells(when(record.at), record.key, record.action, record.resource,
                              record.status))
    session.output.show({"records": records}, table)
