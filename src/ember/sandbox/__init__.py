"""Sandboxes: the limits (memory, open files) put around each instance process."""

from __future__ import annotations

import logging

from ember.sandbox.base import CGROUP_HEADROOM_MB, Limits, Sandbox, SandboxFactory
from ember.sandbox.cgroups import CgroupSandbox, CgroupSandboxFactory, CgroupUnavailable
from ember.sandbox.freezer import CgroupFreezer, Freezer, SignalFreezer
from ember.sandbox.process import ProcessSandbox, ProcessSandboxFactory

__all__ = [
    "CGROUP_HEADROOM_MB",
    "CgroupFreezer",
    "CgroupSandbox",
    "CgroupSandboxFactory",
    "CgroupUnavailable",
    "Freezer",
    "Limits",
    "ProcessSandbox",
    "ProcessSandboxFactory",
    "Sandbox",
    "SandboxFactory",
    "SignalFreezer",
    "choose_sandbox_factory",
]

logger = logging.getLogger(__name__)


def choose_sandbox_factory(use_cgroups: bool | None) -> SandboxFactory:
    """The sandbox factory to use: cgroups when asked for or available, else rlimits.

    Args:
        use_cgroups: ``True`` requires cgroups, ``False`` never uses them, ``None`` uses
            them when they work here and otherwise logs one WARNING and falls back to
            RLIMIT_AS (call this once per server so the warning is said once).

    Raises:
        CgroupUnavailable: ``use_cgroups`` is ``True`` and cgroups cannot bound memory here.
    """
    if use_cgroups is False:
        return ProcessSandboxFactory()
    try:
        return CgroupSandboxFactory.probe()
    except CgroupUnavailable as exc:
        if use_cgroups:
            raise
        logger.warning(
            "cgroups are not available (%s): instance memory is bounded by RLIMIT_AS instead, "
            "which counts address space rather than resident memory",
            exc,
        )
        return ProcessSandboxFactory()
