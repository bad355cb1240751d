"""``ember layer``: publish shared code as layer versions, list layers and their versions,
and delete a version no function uses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ember.cli import render
from ember.cli.common import Session, command

app = typer.Typer(help="Publish and manage layers: shared code on functions' import path.")

Name = Annotated[str, typer.Argument(help="Layer name.", show_default=False)]
Number = Annotated[int, typer.Argument(min=1, help="Layer version number.", show_default=False)]


@command(app, "publish")
def publish(
    session: Session,
    name: Name,
    code: Annotated[Path, typer.Argument(
        metavar="DIR_OR_ZIP", show_default=False,
        help="A directory (zipped; its python/ directory, or else itself, goes on the "
        "import path) or a .zip file.",
    )],
    description: Annotated[
        str, typer.Option("--description", "-d", help="What this version holds.")
    ] = "",
) -> None:
    """Publish a directory or zip as the layer's next version (or return the newest one when
    its content is the same)."""
    version = session.client.publish_layer(name, code, description)
    if version.created:
        session.output.done(f"published layer {name} version {version.version}")
    else:
        session.output.done(
            f"layer {name} version {version.version} has the same content: "
            "no new version published"
        )
    session.output.show(version, render.layer_version_panel(version))


@command(app, "list")
def list_(session: Session) -> None:
    """List layers with their newest version."""
    layers = session.client.list_layers()
    session.output.show({"layers": layers}, render.layers_table(layers))


@command(app, "versions")
def versions(session: Session, name: Name) -> None:
    """List a layer's versions."""
    found = session.client.list_layer_versions(name)
    session.output.show({"versions": found}, render.layer_versions_table(found))


@command(app, "delete")
def delete(session: Session, name: Name, number: Number) -> None:
    """Delete one layer version (refused while a function or function version uses it)."""
    deleted = session.client.delete_layer_version(name, number)
    session.output.done(f"deleted layer {name} version {deleted.version}")
    session.output.show(deleted)
