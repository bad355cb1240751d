"""What every command shares: the global options, the SDK client, error output, and the
parsing of ``--set key=value``, config files and durations."""

from __future__ import annotations

import functools
import inspect
import json
import re
import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from ember.cli.render import Output
from ember.client import Client
from ember.errors import EmberError

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", help="URL of the Ember server (env EMBER_URL; default http://127.0.0.1:8080)",
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the answer as JSON, and nothing else on stdout.")
]


class UsageError(EmberError):
    """A mistake in what the user gave the CLI (a file, a flag's value), found before any
    request is sent."""

    code = "Usage"


def connect(url: str | None) -> Client:
    """The SDK client commands use; tests replace it to talk to an in-process app."""
    return Client(url)


@dataclass
class Session:
    """One command's run: where it writes, and its client, made on first use."""

    url: str | None
    output: Output
    _client: Client | None = field(default=None, repr=False)

    @property
    def json(self) -> bool:
        return self.output.json_mode

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = connect(self.url)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


@dataclass(frozen=True)
class GlobalOptions:
    """``--url`` and ``--json`` given before the command (``ember --json fn list``)."""

    url: str | None = None
    json: bool = False


@contextmanager
def reporting(output: Output) -> Iterator[None]:
    """Turn Ember errors into ``Error [Code]: message`` on stderr and exit code 1."""
    try:
        yield
    except EmberError as err:
        output.error(err)
        raise typer.Exit(1) from None


def command(group: typer.Typer, name: str | None = None, **settings: Any) -> Callable[
    [Callable[..., None]], Callable[..., None]
]:
    """Register ``fn(session, ...)`` as a command of ``group`` with ``--url`` and ``--json``.

    The command's own parameters are declared as usual; the wrapper adds the global options
    to its signature, builds the ``Session`` and reports Ember errors without a traceback.
    """

    def register(fn: Callable[..., None]) -> Callable[..., None]:
        hints = typing.get_type_hints(fn, include_extras=True)
        own = list(inspect.signature(fn).parameters.values())[1:]
        parameters = [p.replace(annotation=hints[p.name]) for p in own]
        keyword = inspect.Parameter.KEYWORD_ONLY
        parameters += [
            inspect.Parameter("_ctx", keyword, annotation=typer.Context),
            inspect.Parameter("_url", keyword, default=None, annotation=UrlOption),
            inspect.Parameter("_json", keyword, default=False, annotation=JsonOption),
        ]

        @functools.wraps(fn)
        def run(
            *args: Any, _ctx: typer.Context, _url: str | None, _json: bool, **kwargs: Any
        ) -> None:
            root = _ctx.find_root().obj
            given = root if isinstance(root, GlobalOptions) else GlobalOptions()
            output = Output(_json or given.json)
            session = Session(_url or given.url, output)
            try:
                with reporting(output):
                    fn(session, *args, **kwargs)
            finally:
                session.close()

        run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        group.command(name, **settings)(run)
        return fn

    return register


# parsing -----------------------------------------------------------------------------------


def load_mapping(path: Path, what: str = "config file") -> dict[str, Any]:
    """A YAML or JSON file holding a mapping.

    Raises:
        UsageError: the file is missing, unreadable, not YAML, or not a mapping.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"{what} {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{what} {path} is not valid YAML or JSON: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{what} {path} must hold a mapping, not a {type(data).__name__}")
    return data


# Config fields mapping names to strings: an entry set alone keeps its text as it is.
_STRING_MAPS = frozenset({"environment", "tags"})


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """``key=value`` (or ``a.b=value``): the key path and the value read as a YAML scalar,
    so that ``memory_mb=512`` is a number and ``environment={A: b}`` a mapping. One entry
    of ``environment`` or ``tags`` (``environment.PORT=8080``) keeps its text.

    Raises:
        typer.BadParameter: no ``=``, an empty key, or a value that is not YAML.
    """
    key, sep, raw = text.partition("=")
    path = key.strip().split(".")
    if not sep or not all(path):
        raise typer.BadParameter(f"{text!r} is not key=value", param_hint="--set")
    if len(path) == 2 and path[0] in _STRING_MAPS:
        return path, raw  # environment.PORT=8080 means the string "8080"
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise typer.BadParameter(
            f"{text!r}: the value is not YAML: {exc}", param_hint="--set"
        ) from exc
    return path, value


def apply_assignments(
    config: dict[str, Any], assignments: list[str], current: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``config`` with every ``--set`` applied. A dotted key changes one entry inside a
    top-level field, starting from that field's ``current`` value when there is one (a
    PATCH replaces whole top-level fields)."""
    result = dict(config)
    for text in assignments:
        path, value = parse_assignment(text)
        if len(path) == 1:
            result[path[0]] = value
            continue
        top = path[0]
        base = result.get(top, (current or {}).get(top))
        node: dict[str, Any] = json.loads(json.dumps(base)) if isinstance(base, dict) else {}
        result[top] = node
        for part in path[1:-1]:
            child = node.get(part)
            node[part] = child = dict(child) if isinstance(child, dict) else {}
            node = child
        node[path[-1]] = value
    return result


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(text: str, option: str) -> float:
    """Seconds in ``90``, ``30s``, ``15m``, ``2h``, ``1d``.

    Raises:
        typer.BadParameter: anything else.
    """
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise typer.BadParameter(
            f"{text!r} is not a duration like 30s, 15m, 2h or 1d", param_hint=option
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_time(text: str, option: str, now: datetime | None = None) -> datetime:
    """A point in time: a duration ago (``10m``) or an ISO 8601 time (UTC when no zone).

    Raises:
        typer.BadParameter: neither.
    """
    now = now or datetime.now(UTC)
    if _DURATION.match(text.strip().lower()):
        return now - timedelta(seconds=parse_duration(text, option))
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither a duration (10m, 2h) nor an ISO time (2024-05-01T12:00)",
            param_hint=option,
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
