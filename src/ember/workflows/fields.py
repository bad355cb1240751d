"""Reading the fields of a workflow document: shapes, runtime expressions, durations, errors,
retry policies, event filters and schedules, each problem noted with its path.

``FieldReader`` notes every problem it finds (``errors``) and raises ``Refused`` to give up on
the node at hand; ``guard`` catches that so its siblings are still read, and a document is
refused with all of its problems at once. The task-level reading is in ``parser``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, NoReturn, TypeVar

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from ember.control.validation import field_path
from ember.errors import InvalidSpec
from ember.workflows.expressions import ARGUMENTS, compile_expression, is_expression
from ember.workflows.model import (
    Backoff,
    Duration,
    Error,
    EventConsumption,
    EventFilter,
    Input,
    Output,
    RetryPolicy,
    Schedule,
    Timeout,
    Use,
)

Loc = tuple[str | int, ...]
T = TypeVar("T")

VARIABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BODY_RE = re.compile(r"^\s*\$\{(.*)\}\s*$", re.DOTALL)
ISO_DURATION_RE = re.compile(
    r"^P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d{1,3})?)S)?)?$"
)
DURATION_UNITS_MS = {
    "days": 86_400_000, "hours": 3_600_000, "minutes": 60_000, "seconds": 1000, "milliseconds": 1,
}


class Refused(Exception):
    """This node is wrong (already noted); give up on it, keep reading its siblings."""


class FieldReader:
    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []
        self.use = Use()
        # Variables bound by enclosing for (each, at) and catch (as) tasks.
        self.scope: frozenset[str] = frozenset()

    # -- reporting ----------------------------------------------------------------------

    def note(self, loc: Loc, message: str) -> None:
        self.errors.append({"field": field_path(loc) or "body", "message": message})

    def fail(self, loc: Loc, message: str) -> NoReturn:
        self.note(loc, message)
        raise Refused

    def unsupported(self, loc: Loc, feature: str) -> NoReturn:
        self.fail(loc, f"not supported by Ember: {feature}")

    def guard(self, read: Callable[..., T], *args: Any) -> T | None:
        """``read(*args)``, or None when it failed (the failure is already noted)."""
        try:
            return read(*args)
        except Refused:
            return None

    # -- shapes -------------------------------------------------------------------------

    def mapping(
        self, value: Any, loc: Loc, allowed: Iterable[str] | None, required: Sequence[str] = ()
    ) -> dict[str, Any]:
        """A mapping; unknown keys are noted (``allowed`` None: any key), missing ones fail."""
        if not isinstance(value, dict):
            self.fail(loc, f"must be a mapping, not {kind_of(value)}")
        if allowed is not None:
            known = set(allowed)
            for key in value:
                if key not in known:
                    self.note((*loc, str(key)), "unknown field")
        for key in required:
            if key not in value:
                self.fail((*loc, key), "field required")
        return value

    def string(self, value: Any, loc: Loc) -> str:
        if not isinstance(value, str) or not value:
            self.fail(loc, f"must be a non-empty string, not {kind_of(value)}")
        return value

    def boolean(self, value: Any, loc: Loc) -> bool:
        if not isinstance(value, bool):
            self.fail(loc, f"must be true or false, not {kind_of(value)}")
        return value

    def integer(self, value: Any, loc: Loc, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(loc, f"must be an integer, not {kind_of(value)}")
        if value < minimum:
            self.fail(loc, f"must be at least {minimum}, not {value}")
        return value

    def expression(self, value: Any, loc: Loc) -> str:
        """A field that is always a runtime expression; the ``${ }`` may be left out."""
        text = self.string(value, loc)
        self.check_expression(text, loc, implicit=True)
        return text

    def expression_or_template(self, value: Any, loc: Loc) -> Any:
        """``input.from``, ``output.as``, ``export.as``: an expression, or a template."""
        if isinstance(value, str):
            return self.expression(value, loc)
        return self.json_value(value, loc)

    def check_expression(self, text: str, loc: Loc, *, implicit: bool = False) -> None:
        try:
            compile_expression(text, implicit=implicit)
        except InvalidSpec as exc:
            if not (self.scope and self.compiles_in_scope(text, implicit)):
                self.fail(loc, exc.message)

    def compiles_in_scope(self, text: str, implicit: bool) -> bool:
        """Whether ``text`` compiles once the variables of enclosing ``for`` and ``catch``
        (``$item``, ``$index``, ``$error`` or the names given them) are bound."""
        match = _BODY_RE.match(text)
        if match is None and not implicit:
            return False
        body = match.group(1) if match else text
        bound = "".join(f"null as ${name} | " for name in sorted(self.scope))
        try:
            compile_expression("${ " + bound + "(\n" + body + "\n) }")
        except InvalidSpec:
            return False
        return True

    def variable(self, value: Any, loc: Loc) -> str:
        name = self.string(value, loc)
        if not VARIABLE_RE.match(name):
            self.fail(loc, f"{name!r} is not a variable name (letters, digits and '_')")
        if name in ARGUMENTS:
            self.fail(loc, f"${name} is a runtime argument; choose another name")
        return name

    def scoped(self, names: Iterable[str], read: Callable[..., T], *args: Any) -> T:
        """``read(*args)`` with ``names`` added to the variables expressions may use."""
        outer = self.scope
        self.scope = outer | frozenset(names)
        try:
            return read(*args)
        finally:
            self.scope = outer

    def json_value(self, value: Any, loc: Loc) -> Any:
        """A value that may hold expressions in any string inside it; each is checked."""
        if isinstance(value, str):
            if is_expression(value):
                self.check_expression(value, loc)
        elif isinstance(value, dict):
            for key, item in value.items():
                self.guard(self.json_value, item, (*loc, str(key)))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.guard(self.json_value, item, (*loc, index))
        return value

    def mapping_or_expression(self, value: Any, loc: Loc) -> Any:
        """A mapping whose values may be expressions, or one expression giving the mapping."""
        if not isinstance(value, dict) and not is_expression(value):
            self.fail(loc, f"must be a mapping or a runtime expression, not {kind_of(value)}")
        return self.json_value(value, loc)

    def duration(self, value: Any, loc: Loc) -> Duration:
        if isinstance(value, str):
            if is_expression(value):
                self.unsupported(loc, "a runtime expression as a duration")
            match = ISO_DURATION_RE.match(value)
            if not match or value in ("P", "PT") or value.endswith("T"):
                self.fail(
                    loc,
                    f"{value!r} is not an ISO 8601 duration of weeks, days, hours, minutes and "
                    "seconds (e.g. PT1M30S; years and months have no fixed length)",
                )
            parts = {k: float(v) for k, v in match.groupdict().items() if v is not None}
            ms = parts.pop("weeks", 0) * 7 * 86_400_000
            ms += sum(DURATION_UNITS_MS[unit] * amount for unit, amount in parts.items())
            return Duration(round(ms))
        raw = self.mapping(value, loc, DURATION_UNITS_MS)
        if not raw:
            self.fail(loc, "must name at least one of " + ", ".join(DURATION_UNITS_MS))
        total = 0
        for unit, amount in raw.items():
            if unit in DURATION_UNITS_MS:
                total += DURATION_UNITS_MS[unit] * self.integer(amount, (*loc, unit), 0)
        return Duration(total)

    # -- document parts -----------------------------------------------------------------

    def plain_mapping(self, value: Any, loc: Loc) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(loc, f"must be a mapping, not {kind_of(value)}")
        return value

    def optional(
        self, raw: dict[str, Any], key: str, loc: Loc, read: Callable[[Any, Loc], T]
    ) -> T | None:
        if key not in raw or raw[key] is None:
            return None
        return read(raw[key], (*loc, key))

    def input(self, value: Any, loc: Loc) -> Input:
        raw = self.mapping(value, loc, ("schema", "from"))
        return Input(
            schema=self.optional(raw, "schema", loc, self.schema),
            from_=self.optional(raw, "from", loc, self.expression_or_template),
        )

    def output(self, value: Any, loc: Loc) -> Output:
        raw = self.mapping(value, loc, ("schema", "as"))
        return Output(
            schema=self.optional(raw, "schema", loc, self.schema),
            as_=self.optional(raw, "as", loc, self.expression_or_template),
        )

    def schema(self, value: Any, loc: Loc) -> dict[str, Any]:
        raw = self.mapping(value, loc, ("format", "document", "resource"), ("document",))
        if raw.get("format", "json") not in ("json", "json:draft-2020-12", "json:2020-12"):
            self.unsupported((*loc, "format"), f"schema format {raw['format']!r}")
        if "resource" in raw:
            self.unsupported((*loc, "resource"), "an external schema resource")
        document = self.plain_mapping(raw["document"], (*loc, "document"))
        try:
            Draft202012Validator.check_schema(document)
        except SchemaError as exc:
            self.fail((*loc, "document"), f"not a valid JSON Schema: {exc.message}")
        return document

    def timeout(self, value: Any, loc: Loc) -> Timeout:
        if isinstance(value, str):
            found = self.use.timeouts.get(value)
            if found is None:
                self.fail(loc, f"no timeout named {value!r} in use.timeouts")
            return Timeout(found.after, ref=value)
        raw = self.mapping(value, loc, ("after",), ("after",))
        return Timeout(self.duration(raw["after"], (*loc, "after")))

    def error(self, value: Any, loc: Loc) -> Error:
        raw = self.mapping(
            value, loc, ("type", "status", "title", "detail", "instance"), ("type", "status")
        )
        status = self.integer(raw["status"], (*loc, "status"), 100)
        if status > 599:
            self.fail((*loc, "status"), f"must be an HTTP status (100-599), not {status}")
        return Error(
            type=self.string_or_expression(raw["type"], (*loc, "type")), status=status,
            title=self.optional(raw, "title", loc, self.string_or_expression),
            detail=self.optional(raw, "detail", loc, self.string_or_expression),
            instance=self.optional(raw, "instance", loc, self.string),
        )

    def string_or_expression(self, value: Any, loc: Loc) -> str:
        text = self.string(value, loc)
        self.json_value(text, loc)
        return text

    def retry(self, value: Any, loc: Loc) -> RetryPolicy:
        if isinstance(value, str):
            found = self.use.retries.get(value)
            if found is None:
                self.fail(loc, f"no retry policy named {value!r} in use.retries")
            return replace(found, ref=value)
        raw = self.mapping(
            value, loc, ("when", "exceptWhen", "delay", "backoff", "limit", "jitter")
        )
        backoff = self.optional(raw, "backoff", loc, self.backoff) or Backoff()
        jitter = self.optional(
            raw, "jitter", loc, lambda v, at: self.mapping(v, at, ("from", "to"), ("from", "to"))
        )
        limit = self.optional(
            raw, "limit", loc, lambda v, at: self.mapping(v, at, ("attempt", "duration"))
        ) or {}
        attempt = self.optional(
            limit, "attempt", (*loc, "limit"),
            lambda v, at: self.mapping(v, at, ("count", "duration")),
        ) or {}
        at_attempt = (*loc, "limit", "attempt")
        return RetryPolicy(
            delay=self.optional(raw, "delay", loc, self.duration),
            backoff=backoff,
            jitter_from=self.duration(jitter["from"], (*loc, "jitter", "from")) if jitter else None,
            jitter_to=self.duration(jitter["to"], (*loc, "jitter", "to")) if jitter else None,
            limit_attempt_count=self.optional(
                attempt, "count", at_attempt, lambda v, at: self.integer(v, at, 1)
            ),
            limit_attempt_duration=self.optional(attempt, "duration", at_attempt, self.duration),
            limit_duration=self.optional(limit, "duration", (*loc, "limit"), self.duration),
            when=self.optional(raw, "when", loc, self.expression),
            except_when=self.optional(raw, "exceptWhen", loc, self.expression),
        )

    def backoff(self, value: Any, loc: Loc) -> Backoff:
        raw = self.mapping(value, loc, ("constant", "linear", "exponential"))
        kinds = [k for k in ("constant", "linear", "exponential") if k in raw]
        if len(kinds) != 1:
            self.fail(loc, "must name exactly one of constant, linear, exponential")
        if raw[kinds[0]] not in (None, {}):
            self.unsupported((*loc, kinds[0]), "backoff settings (the delay is the retry's delay)")
        return Backoff(kinds[0])

    def consumption(self, value: Any, loc: Loc, *, until: bool = True) -> EventConsumption:
        keys = ("one", "all", "any", "until") if until else ("one", "all", "any")
        raw = self.mapping(value, loc, keys)
        kinds = [k for k in ("one", "all", "any") if k in raw]
        if len(kinds) != 1:
            self.fail(loc, "must name exactly one of one, all, any")
        kind = kinds[0]
        if kind == "one":
            filters: tuple[EventFilter, ...] = (self.event_filter(raw["one"], (*loc, "one")),)
        else:
            items = raw[kind]
            if items == [] and kind == "any":
                self.unsupported((*loc, kind), "listening to every event (an empty any)")
            if not isinstance(items, list) or not items:
                self.fail((*loc, kind), "must be a non-empty list of event filters")
            found = [self.guard(self.event_filter, f, (*loc, kind, i)) for i, f in enumerate(items)]
            filters = tuple(f for f in found if f is not None)
        stop: str | EventConsumption | None = None
        if "until" in raw:
            if kind != "any":
                self.fail((*loc, "until"), "only listening to any event can have until")
            if isinstance(raw["until"], str):
                stop = self.expression(raw["until"], (*loc, "until"))
            else:
                stop = self.consumption(raw["until"], (*loc, "until"), until=False)
        return EventConsumption(kind=kind, filters=filters, until=stop)

    def event_filter(self, value: Any, loc: Loc) -> EventFilter:
        raw = self.mapping(value, loc, ("with", "correlate"), ("with",))
        attributes = self.plain_mapping(raw["with"], (*loc, "with"))
        if not attributes:
            self.fail((*loc, "with"), "must name at least one attribute to match")
        self.json_value(attributes, (*loc, "with"))
        correlate: dict[str, tuple[str, Any]] = {}
        keys = self.plain_mapping(raw.get("correlate") or {}, (*loc, "correlate"))
        for key, spec in keys.items():
            at = (*loc, "correlate", str(key))
            entry = self.guard(self.mapping, spec, at, ("from", "expect"), ("from",))
            if entry is not None:
                source = self.guard(self.expression, entry["from"], (*at, "from"))
                expect = self.guard(self.json_value, entry.get("expect"), (*at, "expect"))
                if source is not None:
                    correlate[str(key)] = (source, expect)
        return EventFilter(with_=attributes, correlate=correlate)

    def schedule(self, value: Any, loc: Loc) -> Schedule:
        raw = self.mapping(value, loc, ("every", "cron", "after", "on"))
        if len([k for k in ("every", "cron", "after", "on") if k in raw]) != 1:
            self.fail(loc, "must name exactly one of every, cron, after, on")
        cron = self.optional(raw, "cron", loc, self.string)
        if cron is not None:
            from croniter import croniter

            # Five fields, as in crontab (and timer triggers): no seconds, years or nicknames.
            if len(cron.split()) != 5 or "H" in cron or not croniter.is_valid(cron):
                message = f"{cron!r} is not a cron expression of five fields (M H DOM MON DOW)"
                self.fail((*loc, "cron"), message)
        return Schedule(
            every=self.optional(raw, "every", loc, self.duration),
            cron=cron,
            after=self.optional(raw, "after", loc, self.duration),
            on=self.optional(raw, "on", loc, self.consumption),
        )


def kind_of(value: Any) -> str:
    """How a value of the wrong type is named in a message."""
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
