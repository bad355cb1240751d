"""Triggers: event sources bound to a function and qualifier, to a workflow, or to the
workflow event bus, and the one envelope (CloudEvents 1.0) every event reaches a handler in."""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TriggerState = Literal["enabled", "disabled", "paused"]
TriggerTarget = Literal["function", "events", "workflow"]
"""Where a trigger's events go: its function (invoked), the workflow event bus (published,
to resume waiting executions and start ``schedule.on`` workflows), or its workflow (each
event starts one execution)."""
TRIGGER_STATES: tuple[str, ...] = ("enabled", "disabled", "paused")
CLOUDEVENTS_JSON = "application/cloudevents+json"
_RATE = re.compile(r"^rate\(([1-9]\d*) (second|seconds|minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def is_crontab(expression: str) -> bool:
    """Five fields, as in crontab (``M H DOM MON DOW``): no seconds, years, @nicknames or
    H hashes."""
    from croniter import croniter

    return (len(expression.split()) == 5 and "H" not in expression
            and bool(croniter.is_valid(expression)))


def check_time_zone(value: str) -> str:
    """``value`` if it names an IANA time zone, else ValueError saying so."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}: use an IANA name such as "
                         "'Europe/Paris'") from exc
    return value


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


KEY_DIGEST = "sha256:"


def key_digest(key: str) -> str:
    """How an HTTP trigger's key is kept: ``sha256:<hex>`` (a digest is kept as it is)."""
    if key.startswith(KEY_DIGEST) and len(key) == len(KEY_DIGEST) + 64:
        return key
    return KEY_DIGEST + hashlib.sha256(key.encode()).hexdigest()


class HttpSource(_Source):
    """Requests to ``/http{path}`` (and below it) on the server's port invoke synchronously."""

    kind: Literal["http"]
    path: str = Field(description="path prefix, e.g. /orders")
    methods: list[str] = Field(default_factory=lambda: ["GET", "POST"])
    auth: Literal["none", "api_key"] = "none"
    api_key: str | None = Field(default=None, min_length=16,
                                description="with auth api_key: X-Api-Key or Bearer token")

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not re.fullmatch(r"/[A-Za-z0-9._~\-/]*", value) or "//" in value:
            raise ValueError("path must start with / and hold only letters, digits and ._~-/")
        return value.rstrip("/") or "/"

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        upper = [m.upper() for m in value]
        unknown = [m for m in upper if m not in _HTTP_METHODS]
        if unknown or not upper:
            raise ValueError(f"methods must be some of {', '.join(sorted(_HTTP_METHODS))}")
        return upper

    @field_validator("api_key")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        # Kept as a digest only: the key itself is never stored nor shown again.
        return None if value is None else key_digest(value)

    @model_validator(mode="after")
    def _key(self) -> HttpSource:
        if (self.auth == "api_key") != (self.api_key is not None):
            raise ValueError("auth api_key needs api_key (at least 16 characters), and only it")
        return self


class TimerSource(_Source):
    """Fires on a schedule: ``cron(m h dom mon dow)`` in ``timezone``, or ``rate(N unit)``."""

    kind: Literal["timer"]
    schedule: str
    timezone: str = "UTC"
    payload: Any = None

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        if _RATE.match(value):
            return value
        cron = _CRON.match(value)
        if cron and is_crontab(cron.group(1)):
            return value
        raise ValueError(
            f"{value!r} is not a schedule: use cron(M H DOM MON DOW) or rate(N minutes)"
        )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_time_zone(value)

    def rate_seconds(self) -> int | None:
        match = _RATE.match(self.schedule)
        if match is None:
            return None
        unit = match.group(2).rstrip("s")
        return int(match.group(1)) * {"second": 1, "minute": 60, "hour": 3600, "day": 86400}[unit]


class MqttSource(_Source):
    kind: Literal["mqtt"]
    url: str = "mqtt://127.0.0.1:1883"
    topic: str = Field(description="topic filter; + and # wildcards")
    qos: Literal[0, 1, 2] = 1


class AmqpBinding(_Source):
    exchange: str
    routing_key: str = "#"


class AmqpSource(_Source):
    kind: Literal["amqp"]
    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    queue: str
    bindings: list[AmqpBinding] = Field(default_factory=list)
    prefetch: Annotated[int, Field(ge=1, le=10_000)] = 10


class NatsSource(_Source):
    kind: Literal["nats"]
    url: str = "nats://127.0.0.1:4222"
    subject: str
    stream: str | None = Field(default=None, description="JetStream stream (made if missing)")
    durable: str | None = Field(default=None, description="durable consumer name")


class RedisStreamSource(_Source):
    """Ordered: each stream is a shard processed in order; batches are checkpointed after
    the function succeeded."""

    kind: Literal["redis_stream"]
    url: str = "redis://127.0.0.1:6379/0"
    streams: Annotated[list[str], Field(min_length=1, max_length=64)]
    group: str = "ember"
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 10
    batch_window_ms: Annotated[int, Field(ge=0, le=300_000)] = 100
    max_retries: Annotated[int, Field(ge=0, le=100)] = 3
    on_failure: Literal["stop", "dead_letter"] = "stop"


StorageEvent = Literal["created", "modified", "deleted"]
STORAGE_EVENTS: tuple[StorageEvent, ...] = ("created", "modified", "deleted")


class StorageSource(_Source):
    kind: Literal["storage"]
    path: str = Field(description="directory to watch")
    events: list[StorageEvent] = Field(
        default_factory=lambda: list(STORAGE_EVENTS), min_length=1
    )
    pattern: str = "*"

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("path must be absolute: the server's working directory is not yours")
        return value


SourceSpec = Annotated[
    HttpSource | TimerSource | MqttSource | AmqpSource | NatsSource | RedisStreamSource
    | StorageSource,
    Field(discriminator="kind"),
]
"""What a trigger's source is declared as (its running side is ``triggers.base.Source``)."""


@dataclass(frozen=True)
class SourceKind:
    """One kind of trigger source: everything the rest of Ember knows about it."""

    model: type[BaseModel]
    """Its declaration, a member of ``SourceSpec``."""
    runner: str
    """``module:Class`` of the Source that runs it, imported on first use."""
    where: str
    """The field that says where its events come from (shown by the CLI)."""
    shortcut: str | None = None
    """The CLI option that declares one without ``--source``."""

    @property
    def name(self) -> str:
        (name,) = get_args(self.model.model_fields["kind"].annotation)
        return str(name)


def _registry(*kinds: SourceKind) -> dict[str, SourceKind]:
    found = {kind.name: kind for kind in kinds}
    (union, *_) = get_args(SourceSpec)
    if {kind.model for kind in kinds} != set(get_args(union)):
        raise TypeError("SOURCE_KINDS and SourceSpec must list the same source models")
    return found


# The one list of source kinds: a new kind is a model above, added to SourceSpec, and an
# entry here (with its Source module in ember/triggers/).
SOURCE_KINDS: dict[str, SourceKind] = _registry(
    SourceKind(HttpSource, "ember.triggers.http:HttpTriggerSource", "path", "--http"),
    SourceKind(TimerSource, "ember.triggers.timer:TimerTriggerSource", "schedule", "--timer"),
    SourceKind(MqttSource, "ember.triggers.mqtt:MqttTriggerSource", "topic"),
    SourceKind(AmqpSource, "ember.triggers.amqp:AmqpTriggerSource", "queue"),
    SourceKind(NatsSource, "ember.triggers.nats:NatsTriggerSource", "subject"),
    SourceKind(RedisStreamSource, "ember.triggers.redis_stream:RedisStreamTriggerSource",
               "streams"),
    SourceKind(StorageSource, "ember.triggers.storage:StorageTriggerSource", "path"),
)


class TriggerSpec(BaseModel):
    """What a user declares: a source bound to a function at a qualifier (target
    ``function``, the default), to the workflow event bus (target ``events``: no function,
    no qualifier), or to a workflow (target ``workflow``: ``workflow`` names it, no
    function, no qualifier)."""

    model_config = ConfigDict(extra="forbid")

    target: TriggerTarget = "function"
    function: str | None = None
    qualifier: str | None = None
    workflow: str | None = None
    source: SourceSpec
    description: str = Field(default="", max_length=256)

    @model_validator(mode="after")
    def _bound(self) -> TriggerSpec:
        # The "field: ..." prefix makes the error name that field (control.validation).
        if self.target != "function":
            for name in ("function", "qualifier"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: a trigger with target {self.target} does not "
                                     "deliver to a function: leave it out")
        if self.target == "workflow":
            if self.workflow is None:
                raise ValueError("workflow: required with target workflow")
            return self
        if self.workflow is not None:
            raise ValueError(f"workflow: a trigger with target {self.target} starts no "
                             "workflow: leave it out (or give target workflow)")
        if self.target == "function":
            if self.function is None:
                raise ValueError("function: required (or give target events or workflow)")
            if self.qualifier is None:
                self.qualifier = "latest"
        return self


@dataclass(frozen=True)
class Trigger:
    """A stored trigger. ``function`` and ``qualifier`` are set when ``target`` is
    ``function`` and None otherwise; ``workflow`` is set when it is ``workflow``."""

    name: str
    function: str | None
    qualifier: str | None
    source: SourceSpec
    state: str
    description: str
    created_at: float
    updated_at: float
    target: TriggerTarget = "function"
    workflow: str | None = None


_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}")


def cloud_event(
    *, id: str, source: str, type: str, time: str, data: Any = None,
    data_base64: str | None = None, subject: str | None = None,
    datacontenttype: str = "application/json", extensions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A CloudEvents 1.0 event in its JSON form. Binary data goes in ``data_base64``;
    extension attribute names are lower-case letters and digits only."""
    event: dict[str, Any] = {
        "specversion": "1.0", "id": id, "source": source, "type": type, "time": time,
        "datacontenttype": datacontenttype,
    }
    if subject is not None:
        event["subject"] = subject
    if data_base64 is not None:
        event["data_base64"] = data_base64
    else:
        event["data"] = data
    for name, value in (extensions or {}).items():
        if not _valid_extension_name(name):
            raise ValueError(f"CloudEvents extension name {name!r} is invalid")
        event[name] = value
    return event


@functools.lru_cache(maxsize=256)
def _valid_extension_name(name: str) -> bool:
    # Sources name the same few extensions on every event.
    return _EXTENSION_NAME.fullmatch(name) is not None
