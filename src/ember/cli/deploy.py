"""``ember deploy``: make a function match a directory and its ember.yaml, then optionally
publish it and point an alias at the new version.

ember.yaml::

    name: hello                # the function
    config:                    # FunctionConfig fields; each replaces the function's field
      handler: main.handler
      memory_mb: 512
    exclude: ["tests", "*.md"] # globs left out of the code zip (besides caches and .git)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from ember.cli import render
from ember.cli.common import Session, UsageError, load_mapping
from ember.client import AliasOut, FunctionOut, PublishOut
from ember.errors import FunctionNotFound
from ember.sdk.calls import code_bytes

MANIFEST = "ember.yaml"
_FIELDS = ("name", "config", "exclude")


@dataclass(frozen=True)
class Manifest:
    """What ember.yaml says: the function's name, its config fields, the globs to leave out."""

    path: Path
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()


def read_manifest(directory: Path) -> Manifest:
    """Read ``directory/ember.yaml``.

    Raises:
        UsageError: the directory or the file is missing, or a field is wrong; the message
            names the file and the field.
    """
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory")
    path = directory / MANIFEST
    if not path.is_file():
        raise UsageError(
            f"{path} not found: a directory to deploy holds an {MANIFEST} with at least "
            "`name: <function>`"
        )
    data = load_mapping(path, "manifest")
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise UsageError(
            f"{path}: unknown field {', '.join(map(repr, unknown))} "
            f"(the fields are {', '.join(_FIELDS)}; config fields go under `config:`)"
        )
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise UsageError(f"{path}: field `name` is required and must be the function's name")
    config = data.get("config") or {}
    if not isinstance(config, dict):
        raise UsageError(f"{path}: field `config` must be a mapping of config fields")
    exclude = data.get("exclude") or []
    if isinstance(exclude, str):
        exclude = [exclude]
    if not isinstance(exclude, list) or not all(isinstance(g, str) for g in exclude):
        raise UsageError(f"{path}: field `exclude` must be a list of glob patterns")
    return Manifest(path, name, config, (MANIFEST, *exclude))


@dataclass
class Deployment:
    """What ``deploy`` did, as shown with ``--json``."""

    action: str  # created | updated | unchanged
    function: FunctionOut
    code_changed: bool
    config_changed: list[str]
    version: PublishOut | None = None
    alias: AliasOut | None = None


def deploy(
    session: Session,
    directory: Annotated[
        Path, typer.Argument(help=f"Directory holding the code and its {MANIFEST}.")
    ] = Path("."),
    publish: Annotated[bool, typer.Option("--publish", help="Publish a version after.")] = False,
    description: Annotated[
        str, typer.Option("--description", "-d", help="Description of the published version.")
    ] = "",
    alias: Annotated[
        str | None,
        typer.Option(help="Point this alias at the published version (implies --publish).",
                     show_default=False),
    ] = None,
) -> None:
    """Create or update a function from a directory with an ember.yaml."""
    manifest = read_manifest(directory)
    client, output = session.client, session.output
    code = code_bytes(directory, manifest.exclude)
    sha256 = hashlib.sha256(code).hexdigest()
    try:
        current: FunctionOut | None = client.get_function(manifest.name)
    except FunctionNotFound:
        current = None

    if current is None:
        with output.uploading(f"uploading {render.size(len(code))}"):
            function = client.create_function(manifest.name, code, manifest.config)
        done = Deployment("created", function, True, sorted(manifest.config))
    else:
        function = current
        code_changed = current.code.sha256 != sha256
        if code_changed:
            with output.uploading(f"uploading {render.size(len(code))}"):
                function = client.update_code(manifest.name, code)
        existing = current.config.to_json()
        changed = sorted(k for k, v in manifest.config.items() if existing.get(k) != v)
        if changed:
            function = client.update_function(
                manifest.name, {k: manifest.config[k] for k in changed}
            )
        action = "updated" if code_changed or changed else "unchanged"
        done = Deployment(action, function, code_changed, changed)
    output.done(_summary(done))

    if publish or alias:
        done.version = client.publish_version(manifest.name, description)
        number = done.version.version
        output.done(
            f"published version {number}" if done.version.created
            else f"latest is unchanged since version {number}: no new version published"
        )
        if alias:
            done.alias = client.set_alias(manifest.name, alias, number)
            output.done(f"alias {alias} → version {number}")
    session.output.show(done)


def _summary(done: Deployment) -> str:
    f = done.function
    code = f"code {render.size(f.code.size)}, sha256 {f.code.sha256[:12]}"
    if done.action == "created":
        return f"created function {f.name} ({code})"
    if done.action == "unchanged":
        return f"function {f.name} unchanged ({code})"
    parts = [f"new {code}" if done.code_changed else f"{code} unchanged"]
    if done.config_changed:
        parts.append("config " + ", ".join(done.config_changed))
    return f"updated function {f.name}: " + "; ".join(parts)
