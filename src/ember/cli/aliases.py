"""``ember alias``: point names at versions, optionally splitting traffic between two."""

from __future__ import annotations

from typing import Annotated

import typer

from ember.cli import render
from ember.cli.common import Session, command

app = typer.Typer(help="Point aliases at versions, with an optional weighted second version.")

Name = Annotated[str, typer.Argument(help="Function name.", show_default=False)]
Alias = Annotated[str, typer.Argument(help="Alias name.", show_default=False)]


@command(app, "set")
def set_(
    session: Session,
    name: Name,
    alias: Alias,
    version: Annotated[int, typer.Argument(min=1, help="Version number.", show_default=False)],
    additional_version: Annotated[
        int | None,
        typer.Option(min=1, help="A second version getting --weight of the traffic.",
                     show_default=False),
    ] = None,
    weight: Annotated[
        float | None,
        typer.Option(help="Share of the traffic for --additional-version (0 < W < 1).",
                     show_default=False),
    ] = None,
    description: Annotated[str, typer.Option("--description", "-d")] = "",
) -> None:
    """Create or move an alias."""
    if (additional_version is None) != (weight is None):
        raise typer.BadParameter("--additional-version and --weight go together")
    found = session.client.set_alias(
        name, alias, version, additional_version=additional_version, weight=weight,
        description=description,
    )
    traffic = render.traffic(found.version, found.additional_version, found.weight)
    session.output.done(f"alias {name}:{found.name} → version {traffic}")
    session.output.show(found, render.alias_panel(found))


@command(app, "get")
def get(session: Session, name: Name, alias: Alias) -> None:
    """Show one alias."""
    found = session.client.get_alias(name, alias)
    session.output.show(found, render.alias_panel(found))


@command(app, "list")
def list_(session: Session, name: Name) -> None:
    """List a function's aliases."""
    aliases = session.client.list_aliases(name)
    session.output.show({"aliases": aliases}, render.aliases_table(aliases))


@command(app, "delete")
def delete(session: Session, name: Name, alias: Alias) -> None:
    """Delete an alias."""
    deleted = session.client.delete_alias(name, alias)
    session.output.done(f"deleted alias {name}:{deleted.name}")
    session.output.show(deleted)
