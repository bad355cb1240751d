"""``ember version``: publish, list, show and delete the immutable versions of a function."""

from __future__ import annotations

from typing import Annotated

import typer

from ember.cli import render
from ember.cli.common import Session, command

app = typer.Typer(help="Publish and manage the immutable versions of a function.")

Name = Annotated[str, typer.Argument(help="Function name.", show_default=False)]
Number = Annotated[int, typer.Argument(min=1, help="Version number.", show_default=False)]


@command(app, "publish")
def publish(
    session: Session,
    name: Name,
    description: Annotated[
        str, typer.Option("--description", "-d", help="What this version changes.")
    ] = "",
) -> None:
    """Publish a function's latest as a new version (or return the newest one when latest
    has not changed since)."""
    version = session.client.publish_version(name, description)
    if version.created:
        session.output.done(f"published {name} version {version.version}")
    else:
        session.output.done(
            f"latest is unchanged since version {version.version}: no new version published"
        )
    session.output.show(version, render.version_panel(version))


@command(app, "list")
def list_(session: Session, name: Name) -> None:
    """List a function's versions."""
    versions = session.client.list_versions(name)
    session.output.show({"versions": versions}, render.versions_table(versions))


@command(app, "get")
def get(session: Session, name: Name, number: Number) -> None:
    """Show one version."""
    version = session.client.get_version(name, number)
    session.output.show(version, render.version_panel(version))


@command(app, "delete")
def delete(session: Session, name: Name, number: Number) -> None:
    """Delete one version (refused while an alias points at it)."""
    deleted = session.client.delete_version(name, number)
    session.output.done(f"deleted {name} version {deleted.version}")
    session.output.show(deleted)
