"""How the CLI shows answers: Rich tables and panels for people, plain JSON for machines.

Everything a person reads goes through an ``Output``; with ``--json`` stdout holds the JSON of
the answer and nothing else, while notes and errors go to stderr either way.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Iterable, Mapping
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer
from pydantic import BaseModel
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from ember.client import (
    AliasOut,
    DeadLetterOut,
    FunctionOut,
    InstancesOut,
    InvocationOut,
    LogLine,
    TaskOut,
    VersionOut,
)
from ember.errors import EmberError
from ember.model.function import FunctionConfig, StartupProbe

if TYPE_CHECKING:
    from ember.client import BuildSummaryOut, LayerOut, LayerVersionOut, SecretOut, TriggerOut


def jsonable(value: Any) -> Any:
    """The JSON form of an SDK result, as the server sent it."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in fields(value) if f.repr}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    return value


# The width of output that goes to a file or a pipe: no terminal to fit, and a table folded
# at 80 columns splits words and ids that scripts and people then cannot read back.
UNBOUNDED_WIDTH = 10_000
# Rules (lines across the output) are drawn at most this wide.
RULE_WIDTH = 80


def console(*, stderr: bool = False) -> Console:
    """A console of the terminal's width, or unbounded when not writing to a terminal
    (unless ``COLUMNS`` asks for a width)."""
    found = Console(stderr=stderr, highlight=False)
    if found.is_terminal or os.environ.get("COLUMNS", "").isdigit():
        return found
    return Console(stderr=stderr, highlight=False, width=UNBOUNDED_WIDTH)


class Output:
    """Where a command writes: stdout for its answer, stderr for everything else."""

    def __init__(self, json_mode: bool) -> None:
        self.json_mode = json_mode
        self.out = console()
        self.err = console(stderr=True)

    def rule(self, title: str = "") -> None:
        """A dim line across stderr, with ``title`` in it."""
        self.err.print(Rule(title, style="dim"), width=min(self.err.width, RULE_WIDTH))

    def show(self, answer: Any, human: RenderableType | None = None) -> None:
        """The answer: its JSON with ``--json``, else ``human`` (or nothing)."""
        if self.json_mode:
            self.json(jsonable(answer))
        elif human is not None:
            self.out.print(human)

    def json(self, value: Any) -> None:
        typer.echo(json.dumps(value, indent=2, ensure_ascii=False))

    def note(self, message: str | Text) -> None:
        """A line for people, on stderr so that stdout stays the answer."""
        self.err.print(message if isinstance(message, Text) else Text(message), soft_wrap=True)

    def done(self, message: str | Text) -> None:
        """What a command did: on stdout for people, nothing with ``--json``."""
        if not self.json_mode:
            self.out.print(message if isinstance(message, Text) else Text(message), soft_wrap=True)

    def error(self, err: EmberError) -> None:
        typer.echo(f"Error [{err.code}]: {err.message}", err=True)
        errors = err.details.get("errors")
        if isinstance(errors, list):
            for item in errors:
                if isinstance(item, Mapping):
                    typer.echo(f"  - {item.get('field', '?')}: {item.get('message', '')}", err=True)

    def failure(self, err: EmberError) -> None:
        """A failed invocation: its error, then the handler's traceback when there is one."""
        self.error(err)
        trace = err.details.get("traceback")
        if isinstance(trace, str) and trace.strip():
            self.err.out(trace.rstrip("\n"), highlight=False)

    def uploading(self, what: str) -> Any:
        """A spinner on stderr while ``what`` uploads, only on a terminal."""
        if sys.stderr.isatty() and not self.json_mode:
            return self.err.status(Text(what), spinner="dots")
        return _Nothing()


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# values ----------------------------------------------------------------------------------------


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def when(value: datetime | float | None) -> str:
    """A time in ISO 8601, in UTC: ``2026-05-01T12:00:00Z``."""
    if value is None:
        return "-"
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def recent(value: float | None) -> str:
    """A time without its year, for narrow table columns."""
    return when(value)[5:] if value is not None else "-"


# Keys of trigger status details that hold a Unix time.
_TIME_KEYS = frozenset({"next_fire", "last_tick", "at"})


def _details(value: Mapping[str, Any]) -> str:
    """A source's status details, with its times in ISO 8601 rather than Unix seconds."""
    parts = []
    for key, item in value.items():
        if isinstance(item, Mapping):
            text = f"{{{_details(item)}}}"
        elif isinstance(item, int | float) and not isinstance(item, bool) and (
            key in _TIME_KEYS or key.endswith("_at")
        ):
            text = when(item)
        else:
            text = str(item)
        parts.append(f"{key}={text}")
    return ", ".join(parts) or "-"


def duration(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return "-"
    seconds = max(0.0, end - start)
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def traffic(version: int, additional: int | None, weight: float | None) -> str:
    if additional is None or weight is None:
        return str(version)
    return f"{version} ({1 - weight:.0%}) + {additional} ({weight:.0%})"


def _mapping(value: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"


def _grid(title: str, rows: Iterable[tuple[str, Any]]) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for key, value in rows:
        if not isinstance(value, Text):
            value = Text("-" if value is None or value == "" else str(value))
        grid.add_row(key, value)
    return Panel(grid, title=Text(title), title_align="left", expand=False)


_WHOLE = frozenset({"ID", "STATUS", "ATTEMPTS", "STATE", "EVENTS", "INVOKED", "FAILED", "UP",
                    "REQUEST ID"})


def _table(*columns: str, title: str | None = None) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold", title=title,
                  title_justify="left", title_style="bold")
    for column in columns:
        # An id is copied whole into the next command, and a state or a count folded in
        # two reads wrong: never folded.
        table.add_column(column, overflow="fold", no_wrap=column in _WHOLE)
    return table


def _cells(*values: Any) -> list[Text]:
    return [Text("-" if value is None or value == "" else str(value)) for value in values]


# resources -------------------------------------------------------------------------------------


def function_panel(f: FunctionOut) -> Panel:
    c = f.config
    return _grid(
        f"function {f.name}",
        [
            ("state", f.state),
            ("async", f.async_state),
            ("description", c.description),
            ("runtime", c.runtime),
            ("kind", c.kind),
            *_entry_point(c),
            ("memory", f"{c.memory_mb} MiB"),
            ("timeout", f"{c.timeout_s:g} s"),
            ("concurrency", c.concurrency),
            ("instances", f"{c.min_instances}-{c.max_instances}"),
            ("keep alive", f"{c.keep_alive_s:g} s" if c.keep_alive_policy == "fixed"
             else f"{c.keep_alive_policy} (until learned: {c.keep_alive_s:g} s)"),
            ("initializer", c.initializer),
            ("pre freeze", f"{c.pre_freeze} (within {c.pre_freeze_timeout_s:g} s)"
             if c.pre_freeze else None),
            ("pre stop", f"{c.pre_stop} (within {c.pre_stop_timeout_s:g} s)"
             if c.pre_stop else None),
            ("environment", _mapping(c.environment)),
            ("layers", ", ".join(c.layers)),
            ("secrets", ", ".join(c.secrets)),
            ("tags", _mapping(c.tags)),
            ("async retries", c.async_.max_retries),
            ("code size", size(f.code.size)),
            ("code sha256", f.code.sha256),
            ("last version", f.last_version or "-"),
            ("created", when(f.created_at)),
            ("updated", when(f.updated_at)),
        ],
    )


def _entry_point(c: FunctionConfig) -> list[tuple[str, Any]]:
    """What a function runs: its handler, its web app, or its command and probes."""
    rows: list[tuple[str, Any]]
    if c.kind == "web":
        rows = [("app", c.app)]
    elif c.kind == "custom":
        probe = c.startup_probe or StartupProbe()
        rows = [
            ("command", shlex.join(c.command or [])),
            ("startup probe", f"GET {probe.path} within {probe.timeout_s:g} s"),
        ]
    else:
        return [("handler", c.handler)]
    if c.health_check is not None:
        h = c.health_check
        rows.append(("health check", f"GET {h.path} every {h.interval_s:g} s, "
                                     f"replaced after {h.failure_threshold} failures"))
    return rows


def _runs(c: FunctionConfig) -> str:
    if c.kind == "web":
        return f"web {c.app}"
    if c.kind == "custom":
        return shlex.join(c.command or [])
    return c.handler


def functions_table(functions: Iterable[FunctionOut]) -> Table:
    table = _table("NAME", "STATE", "RUNS", "MEMORY", "VERSION", "CODE", "UPDATED")
    for f in functions:
        table.add_row(*_cells(
            f.name, f.state, _runs(f.config), f"{f.config.memory_mb} MiB",
            f.last_version or "-", size(f.code.size), when(f.updated_at),
        ))
    return table


def version_panel(v: VersionOut) -> Panel:
    return _grid(
        f"{v.function} version {v.version}",
        [
            ("description", v.description),
            ("handler", v.config.handler),
            ("memory", f"{v.config.memory_mb} MiB"),
            ("timeout", f"{v.config.timeout_s:g} s"),
            ("environment", _mapping(v.config.environment)),
            ("code size", size(v.code.size)),
            ("code sha256", v.code.sha256),
            ("created", when(v.created_at)),
        ],
    )


def versions_table(versions: Iterable[VersionOut]) -> Table:
    table = _table("VERSION", "DESCRIPTION", "CODE SHA256", "SIZE", "CREATED")
    for v in versions:
        table.add_row(*_cells(
            v.version, v.description, v.code.sha256[:12], size(v.code.size), when(v.created_at)
        ))
    return table


def alias_panel(a: AliasOut) -> Panel:
    return _grid(
        f"{a.function} alias {a.name}",
        [
            ("version", a.version),
            ("additional version", a.additional_version),
            ("weight", None if a.weight is None else f"{a.weight:g}"),
            ("traffic", traffic(a.version, a.additional_version, a.weight)),
            ("description", a.description),
            ("created", when(a.created_at)),
            ("updated", when(a.updated_at)),
        ],
    )


def aliases_table(aliases: Iterable[AliasOut]) -> Table:
    table = _table("ALIAS", "TRAFFIC", "DESCRIPTION", "UPDATED")
    for a in aliases:
        table.add_row(*_cells(
            a.name, traffic(a.version, a.additional_version, a.weight), a.description,
            when(a.updated_at),
        ))
    return table


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def stats_table(stats: Mapping[str, Any]) -> Group:
    """A summary of the window, the async queue, and one row per minute."""
    duration = stats.get("duration_ms", {})
    init = stats.get("init_ms", {})
    summary = _table("STATISTIC", "VALUE",
                     title=f"{stats.get('function', '')} · last {stats.get('window_s', 0):g} s")
    rows: list[tuple[str, Any]] = [
        ("invocations", stats.get("invocations")),
        ("errors", stats.get("errors")),
        ("timeouts", stats.get("timeouts")),
        ("throttles", stats.get("throttles")),
        ("cold starts", stats.get("cold_starts")),
        ("async retries", stats.get("retries")),
        ("duration p50 / p90 / p99", " / ".join(
            _ms(duration.get(k)) for k in ("p50", "p90", "p99"))),
        ("duration max", _ms(duration.get("max"))),
        ("cold start init p50 / p99", " / ".join(_ms(init.get(k)) for k in ("p50", "p99"))),
    ]
    nodes, unreachable = stats.get("nodes") or [], stats.get("unreachable") or []
    if len(nodes) + len(unreachable) > 1:  # a cluster: whose invocations these are
        rows.append(("nodes", ", ".join(nodes)))
        if unreachable:
            rows.append(("nodes not reached", ", ".join(unreachable)))
    queue = stats.get("queue")
    if queue:
        age = queue.get("oldest_age_s")
        rows += [
            ("queue depth (running, delayed)",
             f"{queue.get('depth')} ({queue.get('leased')}, {queue.get('delayed')})"),
            ("oldest queued event", "-" if age is None else f"{age:.1f} s"),
            ("dead letters", queue.get("dead_letters")),
        ]
    for key, value in rows:
        summary.add_row(*_cells(key, value))
    series = _table("MINUTE", "INVOCATIONS", "ERRORS", "THROTTLES", "COLD", "P50", "P99")
    for point in stats.get("series", []):
        series.add_row(*_cells(
            when(point["minute"]), point["invocations"], point["errors"],
            point["throttles"], point["cold_starts"], _ms(point.get("p50_ms")),
            _ms(point.get("p99_ms")),
        ))
    return Group(summary, series) if stats.get("series") else Group(summary)


_LEVEL_STYLES = {"error": "red", "warning": "yellow", "warn": "yellow", "debug": "dim"}


def log_line(line: LogLine, *, node: bool = False) -> Text:
    """A log line: time, level, request id, and with ``node`` the node it ran on (when the
    lines come from several nodes)."""
    text = Text(when(line.ts), style="dim")
    text.append(f" {line.level.upper():<7}", style=_LEVEL_STYLES.get(line.level.lower(), ""))
    if node and line.node:
        text.append(f" {line.node}", style="magenta")
    if line.request_id:
        text.append(f" {line.request_id[:8]}", style="cyan")
    text.append(f" {line.line}")
    return text


_OUTCOME_STYLES = {"success": "green", "error": "red", "timeout": "red", "throttled": "yellow"}


def invocations_table(invocations: Iterable[InvocationOut], *, node: bool = False) -> Table:
    """One row per invocation, newest first: when, its request id (for ``ember logs
    --request-id``), version, mode, status, cold start, timings and error; with ``node``,
    the node it ran on."""
    table = _table("STARTED", "REQUEST ID", "VERSION", "MODE", "STATUS", "COLD", "INIT",
                   "DURATION", "ERROR", *(["NODE"] if node else []))
    for i in invocations:
        error = None
        if i.error_code:
            error = _shorten(f"{i.error_code}: {i.error_message or ''}".rstrip(": "), 80)
        mode = i.mode if i.attempt <= 1 else f"{i.mode} #{i.attempt}"
        cells = _cells(when(i.started_at), i.request_id, i.version, mode, None,
                       "yes" if i.cold else "no", _ms(i.init_ms) if i.cold else None,
                       _ms(i.duration_ms), error)
        cells[4] = Text(i.status, style=_OUTCOME_STYLES.get(i.status, ""))
        if node:
            cells += _cells(i.node)
        table.add_row(*cells)
    return table


def _mb(size: float | None) -> str | None:
    return None if size is None else f"{size:.1f} MB"


def instances_view(now: InstancesOut) -> Group:
    """The function's pools (what each version has and wants, and why), then one row per
    instance: its state, requests in flight, start, last use and memory."""
    several = len(now.nodes) + len(now.unreachable) > 1  # a cluster: a NODE column
    node = ["NODE"] if several else []
    pools = _table(*node, "VERSION", "QUALIFIERS", "CURRENT", "STARTING", "DESIRED",
                   "REASON", "KEEP-ALIVE", title="pools")
    for p in now.pools:
        reason = p.reason if p.shortfall is None else f"{p.reason} — short: {p.shortfall}"
        pools.add_row(*_cells(*([p.node] if several else []),
                              p.version + (" (draining)" if p.draining else ""),
                              ", ".join(p.qualifiers), p.current, p.starting, p.desired,
                              reason, p.keep_alive))
    instances = _table(*node, "INSTANCE", "VERSION", "STATE", "IN FLIGHT", "STARTED",
                       "LAST USED", "MEMORY", title="instances")
    for i in now.instances:
        memory = None if i.memory_mb is None else f"{i.memory_mb:.1f} MB"
        instances.add_row(*_cells(*([i.node] if several else []), i.id, i.version, i.state,
                                  i.in_flight, when(i.started_at), when(i.last_used_at),
                                  memory))
    parts: list[Any] = [pools, Text(), instances]
    if now.zygotes:
        parents = _table(*node, "KIND", "VERSION", "PID", "CHILDREN", "RSS", "PSS",
                         "PRELOADED", title="zygotes")
        for z in now.zygotes:
            preloaded = ", ".join(z.modules) if z.kind == "preloader" else None
            if z.failed:
                preloaded = f"{preloaded or ''} (failed: {', '.join(z.failed)})"
            parents.add_row(*_cells(*([z.node] if several else []), z.kind, z.version, z.pid,
                                    z.children, _mb(z.rss_mb), _mb(z.pss_mb), preloaded))
        parts += [Text(), parents]
    if now.unreachable:
        parts.append(Text(f"nodes not reached: {', '.join(now.unreachable)}", style="yellow"))
    return Group(*parts)


# tasks and dead letters ------------------------------------------------------------------------

_STATUS_STYLES = {
    "succeeded": "green", "failed": "red", "expired": "red", "stopped": "yellow",
    "running": "cyan", "queued": "",
}


def _status(status: str) -> Text:
    return Text(status, style=_STATUS_STYLES.get(status, ""))


def _encoded(value: Mapping[str, Any] | None) -> str | None:
    """A result or payload as the API encodes it, shown in one cell."""
    if not value:
        return None
    if "value" in value:
        return json.dumps(value["value"], ensure_ascii=False)
    if "text" in value:
        return str(value["text"])
    return f"(base64) {value.get('base64', '')}"


def _shorten(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + "… (--json shows all)"


def _error_code(error: Mapping[str, Any] | None) -> str | None:
    return None if not error else str(error.get("code") or "")


def task_panel(t: TaskOut) -> Panel:
    rows: list[tuple[str, Any]] = [
        ("status", _status(t.status)),
        ("function", f"{t.function}:{t.qualifier}"),
        ("version", t.version),
        ("attempts", t.attempts),
        ("created", when(t.created_at)),
        ("started", when(t.started_at)),
        ("finished", when(t.finished_at)),
        ("duration", duration(t.started_at, t.finished_at)),
    ]
    optional: list[tuple[str, Any]] = [
        ("idempotency key", t.idempotency_key),
        ("result", _shorten(_encoded(t.result), 500)),
        ("error", f"{t.error.get('code', '')}: {t.error.get('message', '')}" if t.error else None),
        ("dead letter", "yes: ember dlq show ID" if t.dead_lettered else None),
        ("stop requested", "yes" if t.stop_requested and t.status != "stopped" else None),
    ]
    rows += [(key, value) for key, value in optional if value is not None]
    for a in t.history:
        outcome = a.outcome if a.error_code is None else f"{a.outcome} {a.error_code}"
        rows.append((f"attempt {a.attempt}", f"{outcome} · {duration(a.started_at, a.finished_at)}"
                     f" · {when(a.started_at)}"))
    rows.append(("logs", f"ember logs {t.function} --request-id {t.id}"))
    return _grid(f"task {t.id}", rows)


def tasks_table(tasks: Iterable[TaskOut]) -> Table:
    table = _table("ID", "STATUS", "ATTEMPTS", "CREATED", "DURATION", "ERROR")
    for t in tasks:
        cells = _cells(t.id, None, t.attempts, recent(t.created_at),
                       duration(t.started_at, t.finished_at), _error_code(t.error))
        cells[1] = _status(t.status)
        table.add_row(*cells)
    return table


def dead_letter_panel(d: DeadLetterOut) -> Panel:
    reason = d.reason
    return _grid(
        f"dead letter {d.id}",
        [
            ("function", f"{d.function}:{d.qualifier}"),
            ("condition", reason.get("condition")),
            ("attempts", reason.get("attempts")),
            ("error", reason.get("code")),
            ("message", reason.get("message")),
            ("queued", when(d.enqueued_at)),
            ("dead since", when(d.dead_at)),
            ("content type", d.content_type),
            ("payload", _encoded(d.payload)),
        ],
    )


def dead_letters_table(dead_letters: Iterable[DeadLetterOut]) -> Table:
    table = _table("ID", "FUNCTION", "CONDITION", "ATTEMPTS", "ERROR", "DEAD SINCE")
    for d in dead_letters:
        table.add_row(*_cells(
            d.id, d.function, d.reason.get("condition"), d.reason.get("attempts"),
            d.reason.get("code"), recent(d.dead_at),
        ))
    return table


# triggers --------------------------------------------------------------------------------------

_STATE_STYLES = {"enabled": "green", "paused": "yellow", "disabled": "dim"}


def _state(state: str) -> Text:
    return Text(state, style=_STATE_STYLES.get(state, ""))


def _connected(status: Mapping[str, Any]) -> str:
    return "yes" if status.get("connected") else "no"


def trigger_panel(t: TriggerOut, base_url: str | None = None) -> Panel:
    """A trigger: its target, source fields and what it has done since the server started."""
    source = dict(t.source)
    kind = str(source.pop("kind", "?"))
    status = t.status
    rows: list[tuple[str, Any]] = [
        ("state", _state(t.state)),
        ("target", trigger_target(t)),
        ("description", t.description),
        ("kind", kind),
    ]
    rows += [(f"  {key}", _source_value(value)) for key, value in source.items()
             if value is not None]
    if kind == "http" and base_url:
        path = str(source.get("path") or "/")
        rows.append(("url", f"{base_url}/http{'' if path == '/' else path}"))
    rows += [
        ("connected", _connected(status)),
        ("events", status.get("events")),
        ("invocations", status.get("invocations")),
        ("failures", status.get("failures")),
        ("given up", status.get("dropped")),
        ("last event", when(status.get("last_event_at"))),
        ("last error", status.get("last_error")),
        ("last error at", when(status.get("last_error_at"))),
    ]
    details = status.get("details")
    if isinstance(details, Mapping) and details:
        rows.append(("details", _details(details)))
    rows += [("created", when(t.created_at)), ("updated", when(t.updated_at))]
    return _grid(f"trigger {t.name}", rows)


def _source_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def trigger_target(t: TriggerOut) -> str:
    """Where a trigger delivers: ``function:qualifier``, ``events`` (the event bus), or
    ``workflow:NAME``."""
    if t.target == "events":
        return "events"
    if t.target == "workflow":
        return f"workflow:{t.workflow}"
    return f"{t.function}:{t.qualifier}"


def triggers_table(triggers: Iterable[TriggerOut]) -> Table:
    """One row per trigger: its target (``function:qualifier``, ``events`` or
    ``workflow:NAME``), kind, state and counters (for an events trigger, INVOKED counts the
    events published; for a workflow trigger, the executions started). In a cluster whose
    triggers run on several nodes, NODE names the one running each (its counters are that
    node's)."""
    triggers = list(triggers)
    several = len({t.node for t in triggers if t.node}) > 1
    table = _table("NAME", "TARGET", "KIND", "STATE", *(["NODE"] if several else []),
                   "EVENTS", "INVOKED", "FAILED", "UP", "LAST ERROR")
    for t in triggers:
        status = t.status
        cells = _cells(t.name, trigger_target(t), t.source.get("kind"), None,
                       *([t.node or "—"] if several else []),
                       status.get("events"), status.get("invocations"), status.get("failures"),
                       _connected(status), _shorten(status.get("last_error"), 60))
        cells[3] = _state(t.state)
        table.add_row(*cells)
    return table


def layers_table(layers: Iterable[LayerOut]) -> Table:
    table = _table("LAYER", "LATEST", "UPDATED")
    for layer in layers:
        table.add_row(*_cells(layer.name, layer.latest_version, when(layer.updated_at)))
    return table


def secrets_table(secrets: Iterable[SecretOut]) -> Table:
    table = _table("SECRET", "CREATED", "UPDATED")
    for secret in secrets:
        table.add_row(*_cells(secret.name, when(secret.created_at), when(secret.updated_at)))
    return table


def layer_version_panel(v: LayerVersionOut) -> Panel:
    return _grid(
        f"layer {v.layer} version {v.version}",
        [
            ("description", v.description),
            ("code size", size(v.code.size)),
            ("code sha256", v.code.sha256),
            ("created", when(v.created_at)),
        ],
    )


def layer_versions_table(versions: Iterable[LayerVersionOut]) -> Table:
    table = _table("VERSION", "DESCRIPTION", "CODE SHA256", "SIZE", "CREATED")
    for v in versions:
        table.add_row(*_cells(
            v.version, v.description, v.code.sha256[:12], size(v.code.size), when(v.created_at)
        ))
    return table


def builds_table(builds: Iterable[BuildSummaryOut]) -> Table:
    table = _table("ID", "STATUS", "CACHED", "CREATED", "DURATION", "ERROR")
    for b in builds:
        took = duration(b.created_at.timestamp(),
                        b.finished_at.timestamp() if b.finished_at else None)
        cells = _cells(b.id, None, "yes" if b.cached else "no", recent(b.created_at.timestamp()),
                       took, _shorten(b.error, 60))
        cells[1] = _status(b.status)
        table.add_row(*cells)
    return table
