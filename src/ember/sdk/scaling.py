"""The routes of provisioned capacity: instances of a function's qualifier (an alias or a
version) kept up ahead of traffic, changed by scheduled actions and by target tracking, and
frozen while idle.

Like ``ember.sdk.calls``, each function returns a ``Call`` that both clients send.

A policy is replaced whole by ``set_provisioned``; to change one part, read it with
``get_provisioned`` and send it back changed::

    held = ember.get_provisioned("hello", "live").config
    ember.set_provisioned("hello", "live", **{**held.model_dump(), "target": 3})

Scheduled actions and target tracking are given as ``ScheduledAction`` and
``TargetTracking`` (from ``ember.model.scaling``) or as mappings of their fields:
``{"cron": "0 8 * * 1-5", "timezone": "Europe/Paris", "target": 5}``,
``{"target": 0.7, "min": 1, "max": 10}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from ember.api.schemas import ProvisionedOut
from ember.sdk.calls import Call, _function_path, _model

PolicyPart = BaseModel | Mapping[str, Any]
"""A scheduled action or a target tracking setting: its model, or a mapping of its fields
(times as aware datetimes or ISO 8601 text)."""


def _path(name: str) -> str:
    return _function_path(name, "provisioned")


def _params(qualifier: str | int) -> dict[str, str]:
    return {"qualifier": str(qualifier)}


def get_provisioned(name: str, qualifier: str | int = "latest") -> Call[ProvisionedOut]:
    """The provisioned capacity of ``name`` at ``qualifier`` (``latest``, a version number
    or an alias): its ``config`` as set, and its ``state`` now — the ``target`` the last set
    or scheduled action gave, the count kept up (``desired``) and why (``reason``), its split
    over versions, the instances up and frozen, the ``shortfall`` when the count cannot be
    met, target tracking's ``utilization``, and the last and next scheduled actions.

    Raises:
        ProvisionedNotFound: the qualifier has no provisioned capacity (or the function does
            not exist). InvalidSpec: ``qualifier`` is not a qualifier.
    """
    return Call("GET", _path(name), _model(ProvisionedOut), params=_params(qualifier))


def set_provisioned(
    name: str,
    qualifier: str | int = "latest",
    *,
    target: int = 0,
    idle_freeze_s: float | None = None,
    schedules: Sequence[PolicyPart] = (),
    target_tracking: PolicyPart | None = None,
) -> Call[ProvisionedOut]:
    """Set the provisioned capacity of ``name`` at ``qualifier``, replacing the whole policy.
    Its instances count against ``max_instances`` and the server's limit; traffic beyond
    them still gets instances on demand.

    Args:
        qualifier: ``latest``, a version number or an alias; an alias's instances are split
            over its versions by weight, and follow it when it moves (warmed first).
        target: instances kept up (0-100) until a scheduled action changes it.
        idle_freeze_s: freeze provisioned instances idle this long (thawed by the next
            request); None: never.
        schedules: scheduled actions (at most 20): at each time ``cron`` (``M H DOM MON
            DOW``) names in ``timezone`` (default UTC), the target becomes ``target``; only
            between ``start`` and ``end`` when given.
        target_tracking: keep ``metric`` (``concurrency_utilization``: requests in flight
            over the provisioned slots; ``cpu_utilization``: CPU used over their cores)
            near ``target`` (0 < t <= 1, default 0.7) with ``min`` to ``max`` instances;
            out on the average of ``scale_out_window_s`` (10 s), in only after
            ``scale_in_window_s`` (300 s) asked for less. With a target too, the larger
            count is kept.

    Returns:
        The policy as stored and where it stands.

    Raises:
        FunctionNotFound: no such function. InvalidPolicy: a bad field (a cron expression,
            a time zone, min above max, a target out of range, a qualifier that reaches
            nothing); ``details["errors"]`` names each one (``schedules[0].cron``).
    """
    body = {
        "target": target,
        "idle_freeze_s": idle_freeze_s,
        "schedules": [to_jsonable_python(s) for s in schedules],
        "target_tracking": to_jsonable_python(target_tracking),
    }
    return Call("PUT", _path(name), _model(ProvisionedOut), params=_params(qualifier), json=body)


def delete_provisioned(name: str, qualifier: str | int = "latest") -> Call[ProvisionedOut]:
    """Remove the provisioned capacity of ``name`` at ``qualifier``; its instances then live
    by keep-alive like any other. Returns the policy removed.

    Raises:
        ProvisionedNotFound: the qualifier has none. InvalidSpec: ``qualifier`` is not a
            qualifier.
    """
    return Call("DELETE", _path(name), _model(ProvisionedOut), params=_params(qualifier))


def list_provisioned(name: str) -> Call[list[ProvisionedOut]]:
    """Every qualifier of ``name`` with provisioned capacity, each as ``get_provisioned``
    shows it.

    Raises:
        FunctionNotFound: no such function.
    """

    def parse(response: httpx.Response) -> list[ProvisionedOut]:
        return [ProvisionedOut.model_validate(item) for item in response.json()]

    return Call("GET", _function_path(name, "provisioned", "all"), parse)
