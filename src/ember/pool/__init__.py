"""The pool: instances of each function version, their cold starts and their lifecycle."""

from ember.pool.instance import Instance, InstanceSpec, InstanceState, InvokeResult, LogSink
from ember.pool.launcher import Launcher
from ember.pool.zygote import ExitStatus, ProcessHandle, Zygote, ZygoteDied

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
