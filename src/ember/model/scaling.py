"""Provisioned capacity of a function's qualifier: a target count of instances kept up,
changed by scheduled actions and by target tracking on a metric, and an idle mode that
freezes provisioned instances nobody uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ember.model.trigger import check_time_zone, is_crontab

MAX_PROVISIONED = 100
MAX_SCHEDULES = 20

# Target tracking's windows, as Knative's autoscaler and AWS's alarms do it: out fast on a
# short window, in slowly on a long one.
SCALE_OUT_WINDOW_S = 10.0
SCALE_IN_WINDOW_S = 300.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScheduledAction(_Strict):
    """At each time ``cron`` (five fields, ``M H DOM MON DOW``, in ``timezone``) names,
    the provisioned target becomes ``target``; only between ``start`` and ``end`` when set."""

    cron: Annotated[str, Field(min_length=1, max_length=128)]
    timezone: Annotated[str, Field(max_length=64)] = "UTC"
    target: Annotated[int, Field(ge=0, le=MAX_PROVISIONED)]
    start: datetime | None = None
    end: datetime | None = None

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if is_crontab(value):
            return " ".join(value.split())
        raise ValueError(f"{value!r} is not a cron expression: use five fields, "
                         "M H DOM MON DOW (e.g. '0 8 * * 1-5')")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_time_zone(value)

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time with its offset, e.g. 2026-12-01T08:00:00+00:00")
        return value

    @field_validator("end")
    @classmethod
    def _after_start(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        start = info.data.get("start")
        if value is not None and start is not None and value <= start:
            raise ValueError("end must be after start")
        return value

    def active(self, ts: float) -> bool:
        return ((self.start is None or self.start.timestamp() <= ts)
                and (self.end is None or ts < self.end.timestamp()))


class TargetTracking(_Strict):
    """Keep ``metric`` near ``target`` by provisioning between ``min`` and ``max``
    instances. ``concurrency_utilization`` is the requests in flight (served and waiting)
    over the slots of the provisioned instances; ``cpu_utilization`` the CPU time their
    processes use over the cores each may use (``cpu``). It scales out on the average of
    the last ``scale_out_window_s`` and in only when the whole ``scale_in_window_s`` asked
    for less."""

    metric: Literal["concurrency_utilization", "cpu_utilization"] = "concurrency_utilization"
    target: Annotated[float, Field(gt=0, le=1)] = 0.7
    min: Annotated[int, Field(ge=0, le=MAX_PROVISIONED)] = 0
    max: Annotated[int, Field(ge=1, le=MAX_PROVISIONED)]
    scale_out_window_s: Annotated[float, Field(ge=1, le=600)] = SCALE_OUT_WINDOW_S
    scale_in_window_s: Annotated[float, Field(ge=1, le=3600)] = SCALE_IN_WINDOW_S

    @field_validator("max")
    @classmethod
    def _max(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("min")
        if low is not None and low > value:
            raise ValueError(f"max ({value}) is below min ({low})")
        return value


class ProvisionedConfig(_Strict):
    """What ``PUT /functions/{name}/provisioned?qualifier=Q`` sets. ``target`` is the count
    kept up until a scheduled action changes it; with target tracking the larger of the
    two is kept. Idle provisioned instances are frozen after ``idle_freeze_s`` (None:
    never) and thawed by the next request."""

    target: Annotated[int, Field(ge=0, le=MAX_PROVISIONED)] = 0
    idle_freeze_s: Annotated[float | None, Field(ge=0, le=86400)] = None
    schedules: Annotated[list[ScheduledAction], Field(max_length=MAX_SCHEDULES)] = Field(
        default_factory=list)
    target_tracking: TargetTracking | None = None


@dataclass
class Provisioned:
    """The stored policy of one qualifier and where it stands. ``target`` is the count the
    last PUT or scheduled action set; ``applied_until`` the wall time through which
    scheduled actions have been applied (those that fell due while the server was down
    are applied at start)."""

    function: str
    qualifier: str
    config: ProvisionedConfig
    target: int
    applied_until: float
    updated_at: float
    last_action: str | None = None


@dataclass
class ProvisionedStatus:
    """What a policy does now: the count it wants for each version and why."""

    desired: int
    reason: str
    versions: dict[str, int] = field(default_factory=dict)
    current: int = 0
    frozen: int = 0
    shortfall: str | None = None
    next_action: float | None = None
    metric: float | None = None
