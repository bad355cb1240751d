"""``ember deploy``: make a function match a directory and its ember.yaml, then optionally
publish it and point an alias at the new version, then make the triggers it declares match.

ember.yaml::

    name: hello                # the function
    config:                    # FunctionConfig fields; each replaces the function's field
      handler: main.handler
      memory_mb: 512
    exclude: ["tests", "*.md"] # globs left out of the code zip (besides caches and .git)
    triggers:                  # optional: triggers bound to this function
      - name: hello-web
        source: {kind: http, path: /hello}
        qualifier: live        # optional: latest (default), a version number or an alias
        description: the web entry point   # optional
    provisioned:               # optional: provisioned capacity per qualifier
      live:                    # the body of PUT /functions/{name}/provisioned?qualifier=live
        target: 2
        idle_freeze_s: 300
        schedules:
          - {cron: "0 8 * * 1-5", timezone: Europe/Paris, target: 5}
        target_tracking: {target: 0.7, min: 1, max: 10}

When the code holds a requirements.txt, its dependencies are built first (pip's output shown
as it comes); a failed build stops the deploy before the function is created or changed.

Triggers are made to match after the function (and its new version and alias), so that a
trigger may target the alias the same deploy moves. A declared trigger that is missing is
created; one whose function, qualifier, description or source differs is updated (its
state, enabled or paused, is kept). The server never shows an HTTP trigger's ``api_key``,
so a declared one cannot be compared: it is sent again on every deploy. Triggers of the
function that ember.yaml does not declare are kept unless ``--prune`` is given.

Provisioned capacity is set after the function, its version and alias (the qualifier must
exist by then) and before the triggers, so that their traffic finds it. A declared policy
that differs from the server's replaces it whole; one that is the same is left alone (a
target a scheduled action changed stays). Policies of qualifiers ember.yaml does not declare
are kept unless ``--prune`` is given.
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ember.api.schemas import QUALIFIER_PATTERN
from ember.cli import render
from ember.cli.common import Session, UsageError, load_mapping
from ember.cli.progress import build_dependencies
from ember.cli.scale import describe
from ember.cli.triggers import target
from ember.client import AliasOut, FunctionOut, ProvisionedOut, PublishOut
from ember.errors import EmberError, FunctionNotFound, InvalidSpec
from ember.model.scaling import ProvisionedConfig
from ember.sdk.builds import has_requirements
from ember.sdk.calls import code_bytes
from ember.sdk.triggers import REDACTED, source_spec

if TYPE_CHECKING:
    from ember.client import Client, TriggerOut

MANIFEST = "ember.yaml"
_FIELDS = ("name", "config", "exclude", "triggers", "provisioned")
_TRIGGER_FIELDS = ("name", "source", "qualifier", "description")


@dataclass(frozen=True)
class DeclaredTrigger:
    """One entry of ember.yaml's ``triggers:``; its function is the manifest's."""

    at: str  # where it is written, for errors: "DIR/ember.yaml: triggers[0] (web)"
    index: int
    name: str
    source: dict[str, Any]  # as written
    spec: dict[str, Any]  # as the server will store it, to compare with what it holds
    qualifier: str = "latest"
    description: str = ""


@dataclass(frozen=True)
class Manifest:
    """What ember.yaml says: the function's name, its config fields, the globs to leave out."""

    path: Path
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()
    triggers: tuple[DeclaredTrigger, ...] | None = None  # None: no `triggers:` field
    # qualifier → policy; None: no `provisioned:` field
    provisioned: dict[str, ProvisionedConfig] | None = None


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
    triggers = None if "triggers" not in data else read_triggers(path, data["triggers"])
    provisioned = (None if "provisioned" not in data
                   else read_provisioned(path, data["provisioned"]))
    return Manifest(path, name, config, (MANIFEST, *exclude), triggers, provisioned)


def read_triggers(path: Path, value: Any) -> tuple[DeclaredTrigger, ...]:
    """The ``triggers:`` of the manifest at ``path``, each checked and its source completed
    as the server will store it.

    Raises:
        UsageError: a trigger is not a mapping, a field is missing, unknown or wrong, or two
            share a name; the message names the file, the trigger's index and name, and the
            field (``source.topic``).
    """
    if value is None:
        return ()
    if not isinstance(value, list):
        raise UsageError(
            f"{path}: field `triggers` must be a list of triggers such as "
            "`- {name: web, source: {kind: http, path: /web}}`"
        )
    found: list[DeclaredTrigger] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(value):
        at = f"{path}: triggers[{index}]"
        if not isinstance(item, dict):
            raise UsageError(f"{at} must be a mapping with a name and a source")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise UsageError(f"{at}: field `name` is required and must be the trigger's name")
        at = f"{at} ({name})"
        unknown = sorted(set(item) - set(_TRIGGER_FIELDS))
        if unknown:
            raise UsageError(
                f"{at}: unknown field {', '.join(map(repr, unknown))} (the fields are "
                f"{', '.join(_TRIGGER_FIELDS)}; the function is the one this file deploys)"
            )
        if name in seen:
            raise UsageError(f"{at}: triggers[{seen[name]}] has the same name")
        seen[name] = index
        source = item.get("source")
        if not isinstance(source, dict):
            raise UsageError(f"{at}: field `source` is required and must be a mapping with a kind")
        qualifier = item.get("qualifier", "latest")
        if isinstance(qualifier, bool) or not isinstance(qualifier, str | int):
            raise UsageError(
                f"{at}: field `qualifier` must be latest, a version number or an alias"
            )
        description = item.get("description") or ""
        if not isinstance(description, str):
            raise UsageError(f"{at}: field `description` must be text")
        try:
            spec = source_spec(source)
        except InvalidSpec as err:
            raise UsageError(f"{at}: {err.message}") from err
        found.append(
            DeclaredTrigger(at, index, name, source, spec, str(qualifier), description)
        )
    return tuple(found)


def read_provisioned(path: Path, value: Any) -> dict[str, ProvisionedConfig]:
    """The ``provisioned:`` of the manifest at ``path``: a policy per qualifier, each
    checked as the server checks it.

    Raises:
        UsageError: not a mapping of qualifiers to mappings, or a policy field is unknown or
            wrong; the message names the file and the field (``provisioned.live.target``).
    """
    from pydantic import ValidationError

    from ember.control.validation import from_validation_error

    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(
            f"{path}: field `provisioned` must map qualifiers to policies, such as "
            "`live: {target: 2}`"
        )
    found: dict[str, ProvisionedConfig] = {}
    for key, policy in value.items():
        qualifier = "latest" if key == "$LATEST" else str(key)
        at = f"{path}: provisioned.{qualifier}"
        if isinstance(key, bool) or not isinstance(key, str | int) or not re.fullmatch(
                QUALIFIER_PATTERN, qualifier):
            raise UsageError(f"{at}: {key!r} is not latest, a version number or an alias")
        if qualifier in found:
            raise UsageError(f"{at}: the qualifier is given twice")
        if not isinstance(policy, dict):
            raise UsageError(f"{at} must be a mapping of target, idle_freeze_s, schedules "
                             "and target_tracking")
        try:
            found[qualifier] = ProvisionedConfig.model_validate(policy)
        except ValidationError as exc:
            err = from_validation_error(exc, f"provisioned.{qualifier}")
            raise UsageError(f"{path}: {err.message}") from exc
    return found


@dataclass
class TriggerChange:
    """What ``deploy`` did to one trigger."""

    action: str  # created | updated | unchanged | deleted | kept (not declared, not pruned)
    name: str
    changed: list[str]  # with updated: the fields that differed (source.path…)
    trigger: TriggerOut


@dataclass
class ProvisionedChange:
    """What ``deploy`` did to the provisioned capacity of one qualifier."""

    action: str  # set | unchanged | deleted | kept (not declared, not pruned)
    qualifier: str
    changed: list[str]  # with set: the fields that differed (all for a new policy)
    provisioned: ProvisionedOut


@dataclass
class Deployment:
    """What ``deploy`` did, as shown with ``--json``."""

    action: str  # created | updated | unchanged
    function: FunctionOut
    code_changed: bool
    config_changed: list[str]
    version: PublishOut | None = None
    alias: AliasOut | None = None
    triggers: list[TriggerChange] = field(default_factory=list)
    provisioned: list[ProvisionedChange] = field(default_factory=list)


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
    prune_triggers: Annotated[
        bool,
        typer.Option("--prune", "--prune-triggers",
                     help=f"Delete the function's triggers and provisioned capacity that "
                     f"{MANIFEST} does not declare."),
    ] = False,
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
    if (current is None or current.code.sha256 != sha256) and has_requirements(code):
        build_dependencies(session, code, manifest.name, str(directory))

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
    if manifest.provisioned is not None or prune_triggers:
        done.provisioned = sync_provisioned(session, manifest, prune=prune_triggers)
    if manifest.triggers is not None or prune_triggers:
        done.triggers = sync_triggers(session, manifest, prune=prune_triggers)
    session.output.show(done)


def sync_triggers(session: Session, manifest: Manifest, *, prune: bool) -> list[TriggerChange]:
    """Create the declared triggers that are missing, update those that differ, and delete
    (with ``prune``) the function's triggers that are not declared; say each as it is done.

    Raises:
        EmberError: the server refused a trigger; the message names the file and trigger.
    """
    client, output = session.client, session.output
    current = {t.name: t for t in client.list_triggers()}
    changes: list[TriggerChange] = []
    for declared in manifest.triggers or ():
        try:
            change = _sync_one(client, manifest.name, declared, current.get(declared.name))
        except EmberError as err:
            raise _located(err, declared.at, f"triggers[{declared.index}]") from err
        output.done(_trigger_summary(change))
        changes.append(change)
    declared_names = {d.name for d in manifest.triggers or ()}
    for name, trigger in sorted(current.items()):
        if trigger.function != manifest.name or name in declared_names:
            continue
        if prune:
            changes.append(TriggerChange("deleted", name, [], client.delete_trigger(name)))
            output.done(f"deleted trigger {name} (not in {manifest.path})")
        else:
            changes.append(TriggerChange("kept", name, [], trigger))
            output.note(f"trigger {name} is not in {manifest.path}: kept "
                        "(--prune deletes it)")
    return changes


def sync_provisioned(session: Session, manifest: Manifest, *, prune: bool
                     ) -> list[ProvisionedChange]:
    """Set the declared provisioned capacity that differs from the server's, and delete
    (with ``prune``) the function's policies of qualifiers not declared; say each as it is
    done.

    Raises:
        EmberError: the server refused a policy; the message names the file and qualifier.
    """
    client, output, name = session.client, session.output, manifest.name
    current = {p.qualifier: p for p in client.list_provisioned(name)}
    changes: list[ProvisionedChange] = []
    for qualifier, config in (manifest.provisioned or {}).items():
        held = current.get(qualifier)
        if held is not None and held.config == config:
            changes.append(ProvisionedChange("unchanged", qualifier, [], held))
            output.done(f"provisioned capacity of {name}:{qualifier} unchanged")
            continue
        changed = [key for key in ProvisionedConfig.model_fields
                   if held is None or getattr(held.config, key) != getattr(config, key)]
        try:
            stored = client.set_provisioned(name, qualifier, **config.model_dump())
        except EmberError as err:
            at = f"{manifest.path}: provisioned.{qualifier}"
            raise _located(err, at, f"provisioned.{qualifier}") from err
        changes.append(ProvisionedChange("set", qualifier, changed, stored))
        output.done(f"provisioned capacity of {name}:{qualifier}: {describe(stored.config)}")
    for qualifier, held in sorted(current.items()):
        if qualifier in (manifest.provisioned or {}):
            continue
        if prune:
            removed = client.delete_provisioned(name, qualifier)
            changes.append(ProvisionedChange("deleted", qualifier, [], removed))
            output.done(f"removed the provisioned capacity of {name}:{qualifier} "
                        f"(not in {manifest.path})")
        else:
            changes.append(ProvisionedChange("kept", qualifier, [], held))
            output.note(f"provisioned capacity of {name}:{qualifier} is not in "
                        f"{manifest.path}: kept (--prune removes it)")
    return changes


def _sync_one(
    client: Client, function: str, declared: DeclaredTrigger, current: TriggerOut | None
) -> TriggerChange:
    if current is None:
        created = client.create_trigger(
            declared.name, function, declared.source, qualifier=declared.qualifier,
            description=declared.description,
        )
        return TriggerChange("created", declared.name, [], created)
    changed = _differences(declared, current, function)
    if not changed:
        return TriggerChange("unchanged", declared.name, [], current)
    updated = client.update_trigger(
        declared.name, function=function, qualifier=declared.qualifier,
        source=declared.source, description=declared.description,
    )
    return TriggerChange("updated", declared.name, changed, updated)


def _differences(declared: DeclaredTrigger, current: TriggerOut, function: str) -> list[str]:
    """The fields of ``current`` that differ from the declaration."""
    found = [
        key for key, wanted, held in (
            ("function", function, current.function),
            ("qualifier", declared.qualifier, current.qualifier),
            ("description", declared.description, current.description),
        ) if wanted != held
    ]
    wanted_source, held_source = dict(declared.spec), current.source
    if wanted_source.get("kind") != held_source.get("kind"):
        return [*found, "source"]
    # The server shows a set api_key as "***": whether it is the declared one cannot be
    # told, so a declared key always counts as changed and is sent again.
    secret = wanted_source.get("api_key") is not None
    if secret and held_source.get("api_key") == REDACTED:
        wanted_source["api_key"] = REDACTED
    found += [f"source.{key}" for key in sorted(set(wanted_source) | set(held_source))
              if wanted_source.get(key) != held_source.get(key)]
    if secret and "source.api_key" not in found:
        found.append("source.api_key")
    return found


def _located(err: EmberError, at: str, prefix: str) -> EmberError:
    """``err`` with its place in the manifest (``at``) in its message, and its fields
    under ``prefix`` (``triggers[0]``)."""
    located = copy.copy(err)
    located.message = f"{at}: {err.message}"
    located.args = (located.message,)
    located.details = dict(err.details)
    errors = err.details.get("errors")
    if isinstance(errors, list):
        located.details["errors"] = [
            {**e, "field": f"{prefix}.{e.get('field', '')}"}
            if isinstance(e, dict) else e
            for e in errors
        ]
    return located


def _trigger_summary(change: TriggerChange) -> str:
    t = change.trigger
    if change.action == "created":
        return f"created trigger {t.name}: {target(t)}"
    if change.action == "unchanged":
        return f"trigger {t.name} unchanged"
    fields = ", ".join(
        "source.api_key (sent again: the server never shows it)" if f == "source.api_key" else f
        for f in change.changed
    )
    return f"updated trigger {t.name}: {fields}"


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
