"""``ember trigger``: bind event sources (HTTP, timers, MQTT, AMQP, NATS, Redis streams,
storage) to functions, to the workflow event bus or to workflows, see what they did, and
pause, resume, disable or delete them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml

from ember.cli import render
from ember.cli.common import Session, UsageError, command, load_mapping
from ember.cli.functions import confirm_delete
from ember.model.trigger import SOURCE_KINDS

if TYPE_CHECKING:
    from ember.client import TriggerOut

app = typer.Typer(
    help="Bind event sources to functions, to the workflow event bus or to workflows: create, "
    "list, get, update, delete, pause, resume, disable, enable."
)

Name = Annotated[str, typer.Argument(help="Trigger name.", show_default=False)]
Qualifier = Annotated[
    str | None,
    typer.Option("--qualifier", "-q", help="latest, a version number or an alias.",
                 show_default=False),
]
Description = Annotated[
    str | None, typer.Option("--description", "-d", help="What the trigger is for.",
                             show_default=False),
]
SourceText = Annotated[
    str | None,
    typer.Option(
        "--source", metavar="MAPPING|@FILE", show_default=False,
        help="The source as a JSON or YAML mapping with its kind, e.g. "
        "'{\"kind\": \"mqtt\", \"topic\": \"a/#\"}', or @FILE holding one.",
    ),
]
HttpPath = Annotated[
    str | None,
    typer.Option("--http", metavar="PATH", show_default=False,
                 help="An HTTP source: requests to /http/PATH on the server invoke the "
                 "function (the same as --source '{kind: http, path: /PATH}')."),
]
Methods = Annotated[
    list[str] | None,
    typer.Option("--method", "-m", show_default=False,
                 help="With --http: a method it answers; repeatable (GET and POST when not "
                 "given)."),
]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", show_default=False,
                 help="With --http: the key (16 characters or more) callers must send as "
                 "X-Api-Key or a Bearer token."),
]
Timer = Annotated[
    str | None,
    typer.Option("--timer", metavar="SCHEDULE", show_default=False,
                 help="A timer source: 'rate(5 minutes)' or 'cron(0 9 * * 1-5)'."),
]
Timezone = Annotated[
    str | None,
    typer.Option("--timezone", show_default=False,
                 help="With --timer: the time zone of a cron schedule (UTC when not given)."),
]


def parse_source(text: str) -> dict[str, Any]:
    """A source given as a JSON or YAML mapping, or as ``@FILE`` holding one.

    Raises:
        UsageError: the text or the file is not a mapping, or the file cannot be read.
    """
    if text.startswith("@"):
        return load_mapping(Path(text[1:]), "source file")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"--source is not valid JSON or YAML: {exc}") from exc
    if not isinstance(value, dict):
        raise UsageError(
            "--source must be a mapping with a kind, such as "
            "'{\"kind\": \"mqtt\", \"topic\": \"a/#\"}', or @FILE"
        )
    return value


def source_from_options(
    source: str | None,
    http: str | None,
    methods: list[str] | None,
    api_key: str | None,
    timer: str | None,
    timezone: str | None,
) -> dict[str, Any] | None:
    """The source the options describe, or None when they give none.

    Raises:
        typer.BadParameter: more than one source, or an option without the one it goes with.
    """
    given = [flag for flag, value in (("--source", source), ("--http", http), ("--timer", timer))
             if value is not None]
    if len(given) > 1:
        raise typer.BadParameter(f"give one source, not {' and '.join(given)}")
    if http is None and (methods or api_key is not None):
        raise typer.BadParameter("--method and --api-key go with --http")
    if timer is None and timezone is not None:
        raise typer.BadParameter("--timezone goes with --timer")
    if source is not None:
        return parse_source(source)
    if http is not None:
        spec: dict[str, Any] = {"kind": "http", "path": http if http.startswith("/")
                                else "/" + http}
        if methods:
            spec["methods"] = [m for item in methods for m in item.replace(",", " ").split()]
        if api_key is not None:
            spec.update(auth="api_key", api_key=api_key)
        return spec
    if timer is not None:
        spec = {"kind": "timer", "schedule": timer}
        if timezone is not None:
            spec["timezone"] = timezone
        return spec
    return None


def _show(session: Session, trigger: TriggerOut) -> None:
    session.output.show(trigger, render.trigger_panel(trigger, session.client.base_url))


def target(trigger: TriggerOut) -> str:
    """``http /orders → hello:live``, or ``mqtt a/# → events``."""
    kind = str(trigger.source.get("kind"))
    known = SOURCE_KINDS.get(kind)
    where = trigger.source.get(known.where) if known is not None else None
    if isinstance(where, list):
        where = ",".join(map(str, where))
    return f"{kind} {where} → {render.trigger_target(trigger)}"


@command(app, "create")
def create(
    session: Session,
    name: Name,
    function: Annotated[
        str | None, typer.Option("--function", "-f", help="The function its events invoke.",
                                 show_default=False),
    ] = None,
    events: Annotated[
        bool, typer.Option("--events", help="Publish its events on the workflow event bus "
                           "(to start and resume workflows) instead of invoking a function.")
    ] = False,
    workflow: Annotated[
        str | None, typer.Option("--workflow", "-w", help="Start an execution of this "
                                 "workflow per event, the event as its input.",
                                 show_default=False),
    ] = None,
    qualifier: Qualifier = None,
    description: Description = None,
    source: SourceText = None,
    http: HttpPath = None,
    methods: Methods = None,
    api_key: ApiKey = None,
    timer: Timer = None,
    timezone: Timezone = None,
) -> None:
    """Create a trigger: a source (--source, --http or --timer) bound to a function
    (--function), to the workflow event bus (--events) or to a workflow (--workflow)."""
    chosen = [flag for flag, given in (("--events", events),
                                       ("--workflow", workflow is not None),
                                       ("--function", function is not None)) if given]
    if len(chosen) > 1:
        raise typer.BadParameter(f"{chosen[0]} goes without {' and '.join(chosen[1:])}")
    if not chosen:
        raise typer.BadParameter("give --function, --events for the workflow event bus, or "
                                 "--workflow")
    if qualifier is not None and function is None:
        raise typer.BadParameter("--qualifier goes with --function")
    spec = source_from_options(source, http, methods, api_key, timer, timezone)
    if spec is None:
        shortcuts = [k.shortcut for k in SOURCE_KINDS.values() if k.shortcut]
        raise typer.BadParameter(f"give the source: --source, {' or '.join(shortcuts)}")
    trigger = session.client.create_trigger(
        name, function, spec, qualifier=qualifier, description=description or "",
        target="events" if events else "workflow" if workflow is not None else "function",
        workflow=workflow,
    )
    session.output.done(f"created trigger {trigger.name}: {target(trigger)}")
    _show(session, trigger)


@command(app, "get")
def get(session: Session, name: Name) -> None:
    """Show a trigger, its source and its status: events, invocations, failures, errors."""
    _show(session, session.client.get_trigger(name))


@command(app, "list")
def list_(
    session: Session,
    function: Annotated[
        str | None, typer.Option("--function", "-f", help="Only the triggers of this function.",
                                 show_default=False),
    ] = None,
) -> None:
    """List triggers with their state and counters."""
    triggers = session.client.list_triggers(function)
    session.output.show({"triggers": triggers}, render.triggers_table(triggers))


@command(app, "update")
def update(
    session: Session,
    name: Name,
    function: Annotated[
        str | None, typer.Option("--function", "-f", help="Bind it to this function instead.",
                                 show_default=False),
    ] = None,
    workflow: Annotated[
        str | None, typer.Option("--workflow", "-w", help="Start this workflow instead "
                                 "(a trigger with target workflow).", show_default=False),
    ] = None,
    qualifier: Qualifier = None,
    description: Description = None,
    source: SourceText = None,
    http: HttpPath = None,
    methods: Methods = None,
    api_key: ApiKey = None,
    timer: Timer = None,
    timezone: Timezone = None,
) -> None:
    """Change a trigger's function, qualifier, workflow, description or source (replaced
    whole)."""
    spec = source_from_options(source, http, methods, api_key, timer, timezone)
    changes = {"function": function, "qualifier": qualifier, "workflow": workflow,
               "source": spec, "description": description}
    changed = [key for key, value in changes.items() if value is not None]
    if not changed:
        raise typer.BadParameter(
            "nothing to update: give --function, --qualifier, --workflow, --description or a "
            "source"
        )
    trigger = session.client.update_trigger(
        name, function=function, qualifier=qualifier, source=spec, description=description,
        workflow=workflow,
    )
    session.output.done(f"updated trigger {trigger.name}: {', '.join(changed)}")
    _show(session, trigger)


@command(app, "delete")
def delete(
    session: Session,
    name: Name,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a trigger and stop its source."""
    if not yes:
        confirm_delete(f"trigger {name!r}", f"Delete trigger {name!r}?")
    deleted = session.client.delete_trigger(name)
    session.output.done(f"deleted trigger {deleted.name}")
    session.output.show(deleted)


def _state_command(action: str, doc: str) -> None:
    def change(session: Session, name: Name) -> None:
        trigger = getattr(session.client, f"{action}_trigger")(name)
        session.output.done(f"trigger {trigger.name} is {trigger.state}")
        session.output.show(trigger)

    change.__doc__ = doc
    change.__name__ = action
    command(app, action)(change)


_state_command("pause", "Stop taking events; the source keeps them until resumed (HTTP: 503).")
_state_command("resume", "Take events again, starting with those kept while paused.")
_state_command("disable", "Stop a trigger's source until it is enabled (HTTP: 404).")
_state_command("enable", "Start a disabled trigger's source again.")
