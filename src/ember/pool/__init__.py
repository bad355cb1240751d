"""The pool: instances of each function version, their cold starts and their lifecycle."""

from ember.pool.instance import (
    ExitStatus,
    Instance,
    InstanceSpec,
    InstanceState,
    InvokeResult,
    LogSink,
    ProcessHandle,
)
from ember.pool.launcher import Launcher
from ember.pool.zygote import Zygote, ZygoteDied

__all__ = [
    "ExitStatus",
    "Instance",
    "InstanceSpec",
    "InstanceState",
    "InvokeResult",
    "Launcher",
    "LogSink",
    "ProcessHandle",
    "Zygote",
    "ZygoteDied",
]
