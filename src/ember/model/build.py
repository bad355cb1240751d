"""Dependency builds: a code's ``requirements.txt`` installed for the server's Python into a
directory that goes on its instances' import path, kept by a key naming what went in.

The key is the sha256 of the requirements file's bytes and the Python tag
(``cpython-311-linux-x86_64``): another Python, or another platform, gets a build of its own,
while two functions with the same requirements share one.
"""

from __future__ import annotations

import hashlib
import sys
import sysconfig
from dataclasses import dataclass
from datetime import datetime

from ember.errors import BuildFailed

REQUIREMENTS = "requirements.txt"
"""The file, at the top of a code archive, that asks for a dependency build."""

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
BUILD_STATUSES = (RUNNING, SUCCEEDED, FAILED)

TAIL_LINES = 40
"""How many lines of the log a failure carries."""


def python_tag() -> str:
    """What a dependency artifact is built for: the interpreter's cache tag and platform."""
    return f"{sys.implementation.cache_tag}-{sysconfig.get_platform()}"


def dependency_key(requirements: bytes, python: str) -> str:
    """The name of the artifact built from ``requirements`` for ``python``."""
    return hashlib.sha256(requirements + b"\0" + python.encode()).hexdigest()


@dataclass(frozen=True)
class Build:
    """One run (or cache hit) of a dependency build.

    ``log`` is the kept end of pip's output (the start is dropped past a limit), ``log_size``
    the length of all of it: offsets into the log count from its very start, so that a
    reader that asked from ``offset`` knows what it missed. Listings leave ``log`` empty.
    ``cached`` says the artifact was already there and pip did not run.
    """

    id: str
    function: str | None
    key: str
    status: str
    cached: bool
    requirements_sha256: str
    python: str
    log: str
    log_size: int
    error: str | None
    created_at: datetime
    finished_at: datetime | None = None

    @property
    def final(self) -> bool:
        return self.status != RUNNING

    def log_from(self, offset: int) -> tuple[int, str]:
        """``(start, text)``: the log from ``offset`` on, or from the first character still
        kept when ``offset`` was dropped."""
        dropped = self.log_size - len(self.log)
        start = min(max(offset, dropped), self.log_size)
        return start, self.log[start - dropped :]


def log_tail(log: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(log.rstrip("\n").splitlines()[-lines:])


def build_failed(build_id: str, error: str | None, log: str) -> BuildFailed:
    """The error of a failed build, saying what to do about it."""
    return BuildFailed(
        f"installing requirements.txt failed (build {build_id}): {error or 'see its log'}. "
        f"Fix requirements.txt and try again; `ember build logs {build_id}` shows pip's "
        "whole log",
        {"build_id": build_id, "log_tail": log_tail(log)},
    )
