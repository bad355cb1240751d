"""``ember scale``: provisioned capacity of a function's qualifier — instances kept up ahead
of traffic, scheduled actions, target tracking, and the freezing of idle ones.

The server replaces a policy whole; the commands that change one part of it (``set``,
``policy add``, ``policy remove``) read it, change that part and send it back.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, tzinfo
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from rich.panel import Panel
from rich.table import Table

from ember.cli.common import Session, UsageError, command, parse_duration
from ember.cli.render import _cells, _grid, _table, when
from ember.client import ProvisionedOut
from ember.errors import ProvisionedNotFound
from ember.model.scaling import ProvisionedConfig, ScheduledAction, TargetTracking

app = typer.Typer(
    help="Provisioned capacity: instances of a qualifier kept up ahead of traffic, on a "
    "target, scheduled actions and target tracking; idle ones frozen."
)
policy_app = typer.Typer(help="Add or remove a scheduled action or target tracking.")
app.add_typer(policy_app, name="policy")

Name = Annotated[str, typer.Argument(help="Function name.", show_default=False)]
Qualifier = Annotated[
    str, typer.Option("--qualifier", "-q", help="latest, a version number or an alias.")
]
_NEVER = ("never", "off")


# commands ------------------------------------------------------------------------------------


@command(app, "get")
def get(session: Session, name: Name, qualifier: Qualifier = "latest") -> None:
    """Show the provisioned capacity of a qualifier: its policy, and the count kept up now
    and why, the instances up and frozen, what falls short, the next scheduled action."""
    found = session.client.get_provisioned(name, qualifier)
    session.output.show(found, provisioned_panel(found))


@command(app, "list")
def list_(session: Session, name: Name) -> None:
    """List the qualifiers of a function that have provisioned capacity."""
    found = session.client.list_provisioned(name)
    session.output.show({"provisioned": found}, provisioned_table(found))


@command(app, "set")
def set_(
    session: Session,
    name: Name,
    qualifier: Qualifier = "latest",
    target: Annotated[
        int | None,
        typer.Option(min=0, max=100, show_default=False,
                     help="Instances kept up until a scheduled action changes the target."),
    ] = None,
    idle_freeze: Annotated[
        str | None,
        typer.Option(metavar="DURATION", show_default=False,
                     help="Freeze provisioned instances idle this long (300, 5m); "
                     "'never' stops freezing."),
    ] = None,
) -> None:
    """Set the target and idle freezing of a qualifier's provisioned capacity (created when
    it has none); its scheduled actions and target tracking are kept."""
    if target is None and idle_freeze is None:
        raise typer.BadParameter("nothing to set: give --target and/or --idle-freeze")
    update: dict[str, Any] = {} if target is None else {"target": target}
    if idle_freeze is not None:
        update["idle_freeze_s"] = (None if idle_freeze.strip().lower() in _NEVER
                                   else parse_duration(idle_freeze, "--idle-freeze"))
    body = {**_held(session, name, qualifier), **update}
    stored = session.client.set_provisioned(name, qualifier, **body)
    session.output.done(f"provisioned capacity of {_at(stored)}: {describe(stored.config)}")
    session.output.show(stored, provisioned_panel(stored))


@command(app, "remove")
def remove(session: Session, name: Name, qualifier: Qualifier = "latest") -> None:
    """Remove the provisioned capacity of a qualifier; its instances then live by
    keep-alive like any other."""
    removed = session.client.delete_provisioned(name, qualifier)
    session.output.done(f"removed the provisioned capacity of {_at(removed)}")
    session.output.show(removed)


@command(policy_app, "add")
def add(
    session: Session,
    name: Name,
    qualifier: Qualifier = "latest",
    cron: Annotated[
        str | None,
        typer.Option(show_default=False,
                     help="Add a scheduled action firing at these times: five fields, "
                     "M H DOM MON DOW ('0 8 * * 1-5')."),
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option(show_default=False,
                     help="With --cron: the time zone of the times (default UTC), and of "
                     "--start and --end given without an offset."),
    ] = None,
    target: Annotated[
        int | None,
        typer.Option(min=0, max=100, show_default=False,
                     help="With --cron: the target the action sets."),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(metavar="ISO", show_default=False,
                     help="With --cron: the action fires only from this time on."),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option(metavar="ISO", show_default=False,
                     help="With --cron: the action fires only before this time."),
    ] = None,
    track: Annotated[
        str | None,
        typer.Option(metavar="METRIC", show_default=False,
                     help="Set target tracking on this metric (concurrency_utilization "
                     "or cpu_utilization), replacing any."),
    ] = None,
    target_value: Annotated[
        float | None,
        typer.Option(show_default=False,
                     help="With --track: the value to keep the metric at (0 < V <= 1; "
                     "default 0.7)."),
    ] = None,
    min_: Annotated[
        int | None,
        typer.Option("--min", min=0, max=100, show_default=False,
                     help="With --track: the fewest instances (default 0)."),
    ] = None,
    max_: Annotated[
        int | None,
        typer.Option("--max", min=1, max=100, show_default=False,
                     help="With --track: the most instances (required)."),
    ] = None,
    scale_out_window: Annotated[
        str | None,
        typer.Option(metavar="DURATION", show_default=False,
                     help="With --track: scale out on the metric's average over this long "
                     "(default 10s)."),
    ] = None,
    scale_in_window: Annotated[
        str | None,
        typer.Option(metavar="DURATION", show_default=False,
                     help="With --track: scale in only once this long asked for fewer "
                     "(default 5m)."),
    ] = None,
) -> None:
    """Add a scheduled action (--cron, --target) or set target tracking (--track, --max)
    to a qualifier's provisioned capacity (created when it has none)."""
    scheduling = {"--timezone": timezone, "--target": target, "--start": start, "--end": end}
    tracking = {"--target-value": target_value, "--min": min_, "--max": max_,
                "--scale-out-window": scale_out_window, "--scale-in-window": scale_in_window}
    if (cron is None) == (track is None):
        raise typer.BadParameter("give --cron (a scheduled action) or --track (target tracking)")
    if cron is not None:
        _refuse(tracking, "--cron")
        if target is None:
            raise typer.BadParameter("a scheduled action needs --target, the target it sets")
        action = _action(cron, timezone or "UTC", target, start, end)
        body = _held(session, name, qualifier)
        body["schedules"].append(action)
        stored = session.client.set_provisioned(name, qualifier, **body)
        index = len(stored.config.schedules) - 1
        said = (f"added schedules[{index}] to {_at(stored)}: "
                f"{schedule_text(stored.config.schedules[index])}")
    else:
        _refuse(scheduling, "--track")
        if max_ is None:
            raise typer.BadParameter("target tracking needs --max, the most instances")
        tracked = _tracking(track, target_value, min_, max_, scale_out_window, scale_in_window)
        body = _held(session, name, qualifier)
        replaced = body["target_tracking"] is not None
        body["target_tracking"] = tracked
        stored = session.client.set_provisioned(name, qualifier, **body)
        said = (f"{'replaced' if replaced else 'set'} the target tracking of {_at(stored)}: "
                f"{tracking_text(stored.config.target_tracking)}")
    session.output.done(said)
    session.output.show(stored, provisioned_panel(stored))


@command(policy_app, "remove")
def remove_policy(
    session: Session,
    name: Name,
    qualifier: Qualifier = "latest",
    schedule: Annotated[
        int | None,
        typer.Option(min=0, metavar="INDEX", show_default=False,
                     help="Remove this scheduled action (its index in `ember scale get`)."),
    ] = None,
    tracking: Annotated[bool, typer.Option("--tracking", help="Remove target tracking.")] = False,
) -> None:
    """Remove a scheduled action or target tracking from a qualifier's provisioned
    capacity; the rest of it is kept."""
    if (schedule is not None) == tracking:
        raise typer.BadParameter("give --schedule INDEX or --tracking")
    held = session.client.get_provisioned(name, qualifier)
    body = held.config.model_dump(mode="json")
    if schedule is not None:
        count = len(held.config.schedules)
        if schedule >= count:
            listed = f"schedules[0] to schedules[{count - 1}]" if count else "none"
            raise UsageError(f"{_at(held)} has no schedules[{schedule}] (it has {listed}; "
                             "`ember scale get` lists them)")
        gone = schedule_text(held.config.schedules[schedule])
        del body["schedules"][schedule]
        said = f"removed schedules[{schedule}] ({gone}) from {_at(held)}"
    else:
        if held.config.target_tracking is None:
            raise UsageError(f"{_at(held)} has no target tracking")
        body["target_tracking"] = None
        said = f"removed the target tracking of {_at(held)}"
    stored = session.client.set_provisioned(name, qualifier, **body)
    session.output.done(said)
    session.output.show(stored, provisioned_panel(stored))


# building a policy ---------------------------------------------------------------------------


def _held(session: Session, name: str, qualifier: str) -> dict[str, Any]:
    """The qualifier's policy as a body to send back changed; an empty one when it has none
    (setting it then creates it)."""
    try:
        config = session.client.get_provisioned(name, qualifier).config
    except ProvisionedNotFound:
        config = ProvisionedConfig()
    return config.model_dump(mode="json")


def _refuse(options: dict[str, Any], mode: str) -> None:
    given = [option for option, value in options.items() if value is not None]
    if given:
        hint = " (the metric's value is --target-value)" if "--target" in given else ""
        raise typer.BadParameter(f"{', '.join(given)} cannot go with {mode}{hint}")


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC  # the server refuses the zone, naming --timezone's field


def _moment(text: str | None, option: str, zone: str) -> str | None:
    """An ISO 8601 time with its offset; one given without takes the schedule's zone."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO time such as 2026-12-01T08:00", param_hint=option
        ) from None
    return (value if value.tzinfo else value.replace(tzinfo=_zone(zone))).isoformat()


def _action(cron: str, zone: str, target: int, start: str | None, end: str | None
            ) -> dict[str, Any]:
    action: dict[str, Any] = {"cron": cron, "timezone": zone, "target": target}
    action["start"] = _moment(start, "--start", zone)
    action["end"] = _moment(end, "--end", zone)
    return action


def _tracking(metric: str | None, value: float | None, low: int | None, high: int,
              out_window: str | None, in_window: str | None) -> dict[str, Any]:
    given: dict[str, Any] = {"metric": metric, "target": value, "min": low, "max": high}
    if out_window is not None:
        given["scale_out_window_s"] = parse_duration(out_window, "--scale-out-window")
    if in_window is not None:
        given["scale_in_window_s"] = parse_duration(in_window, "--scale-in-window")
    return {key: item for key, item in given.items() if item is not None}


# showing a policy ----------------------------------------------------------------------------


def _at(p: ProvisionedOut) -> str:
    return f"{p.function}:{p.qualifier}"


def schedule_text(a: ScheduledAction) -> str:
    """``0 8 * * 1-5 Europe/Paris → 5``, with its start and end when it has them."""
    text = f"{a.cron} {a.timezone} → {a.target}"
    if a.start is not None:
        text += f" from {when(a.start)}"
    if a.end is not None:
        text += f" until {when(a.end)}"
    return text


def tracking_text(t: TargetTracking | None) -> str:
    """``concurrency_utilization 0.7, 1-10 instances (out over 10 s, in after 300 s)``."""
    if t is None:
        return "none"
    return (f"{t.metric} {t.target:g}, {t.min}-{t.max} instances "
            f"(out over {t.scale_out_window_s:g} s, in after {t.scale_in_window_s:g} s)")


def _freeze(c: ProvisionedConfig) -> str:
    return "never" if c.idle_freeze_s is None else f"after {c.idle_freeze_s:g} s idle"


def describe(c: ProvisionedConfig) -> str:
    """One line for a policy: ``target 2, idle freeze after 300 s idle, 1 schedule,
    target tracking concurrency_utilization 0.7 (1-10)``."""
    parts = [f"target {c.target}", f"idle freeze {_freeze(c)}"]
    if c.schedules:
        parts.append(f"{len(c.schedules)} schedule{'s' if len(c.schedules) > 1 else ''}")
    t = c.target_tracking
    if t is not None:
        parts.append(f"target tracking {t.metric} {t.target:g} ({t.min}-{t.max})")
    return ", ".join(parts)


def provisioned_panel(p: ProvisionedOut) -> Panel:
    """A policy as set, then where it stands: the count kept up now and why."""
    c, s = p.config, p.state
    utilization = None if s.utilization is None else f"{s.utilization:.2f}"
    rows: list[tuple[str, Any]] = [
        ("target", c.target),
        ("idle freeze", _freeze(c)),
        *((f"schedules[{i}]", schedule_text(a)) for i, a in enumerate(c.schedules)),
        ("target tracking", tracking_text(c.target_tracking)),
        ("target now", s.target if s.last_action is None
         else f"{s.target} (set by {s.last_action})"),
        ("desired", f"{s.desired} ({s.reason})"),
        ("versions", ", ".join(f"{v}: {n}" for v, n in s.versions.items())),
        ("instances", f"{s.current} up, {s.frozen} frozen"),
        ("shortfall", s.shortfall),
        ("utilization", utilization),
        ("next action", when(s.next_action_at)),
        ("updated", when(s.updated_at)),
    ]
    return _grid(f"provisioned {_at(p)}", rows)


def provisioned_table(found: Iterable[ProvisionedOut]) -> Table:
    table = _table("QUALIFIER", "TARGET", "DESIRED", "UP", "FROZEN", "SCHEDULES", "TRACKING",
                   "REASON")
    for p in found:
        t = p.config.target_tracking
        table.add_row(*_cells(
            p.qualifier, p.state.target, p.state.desired, p.state.current, p.state.frozen,
            len(p.config.schedules), None if t is None else f"{t.target:g} ({t.min}-{t.max})",
            p.state.reason,
        ))
    return table
