"""The routes of dependency builds: build a code's requirements.txt, follow its log, list a
function's builds.

Like ``ember.sdk.calls``, each function returns a ``Call`` that both clients send;
``wait_build`` takes several requests and returns a ``Plan`` (see ``ember.sdk.tasks``).

Code holding a ``requirements.txt`` at its top level gets its dependencies installed by pip,
for the server's Python, when it is created or updated; they go on the import path after
the code and before its layers. A build is cached by the sha256 of requirements.txt and the
Python it is made for, so the same requirements are installed once. A create or update
waits for its build, and fails with ``BuildFailed`` (saving nothing) when pip fails. To see
a long build's progress, build first with ``start_build`` and ``wait_build``: the create
that follows finds the build done.
"""

from __future__ import annotations

import base64
import io
import time
import zipfile
from collections.abc import Callable, Sequence

import httpx

from ember.api.schemas import BuildList, BuildOut, BuildSummaryOut
from ember.model.build import REQUIREMENTS
from ember.sdk.calls import Call, Code, _function_path, _model, _params, _segment, code_bytes
from ember.sdk.tasks import Plan, check_wait

# How much longer than the server's wait an answer may take to arrive before httpx gives up.
_WAIT_MARGIN_S = 15.0


def has_requirements(code: bytes) -> bool:
    """Whether the zip ``code`` holds a requirements.txt at its top level (False for a zip
    that cannot be read: the server says what is wrong with it)."""
    try:
        with zipfile.ZipFile(io.BytesIO(code)) as archive:
            return REQUIREMENTS in archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def start_build(
    code: Code, function: str | None = None, *, exclude: Sequence[str] = ()
) -> Call[BuildOut]:
    """Start installing the requirements.txt of ``code`` on the server.

    Args:
        code: the bytes of a zip, or the path of a directory (zipped without ``exclude``
            globs) or of a ``.zip``; it must hold requirements.txt at its top level.
        function: record the build against this function (it need not exist yet).

    Returns:
        The build: ``running`` (follow it with ``wait_build``), or ``succeeded`` with
        ``cached`` True when the same requirements were built for the server's Python.

    Raises:
        InvalidCode: no requirements.txt, or an unreadable or unsafe archive.
        InvalidSpec: a bad function name. PayloadTooLarge: over the code limit.
    """
    body: dict[str, str | None] = {
        "zip": base64.b64encode(code_bytes(code, exclude)).decode("ascii"),
        "function": function,
    }
    return Call("POST", "/builds", _model(BuildOut), json=body)


def get_build(build_id: str, offset: int = 0, wait_s: float = 0) -> Call[BuildOut]:
    """A build with its status, error and log.

    Args:
        offset: only the log after this many characters (the ``log_size`` of an earlier
            answer, to read what was added since).
        wait_s: wait up to this many seconds (at most 60) for the log to grow past
            ``offset`` or the build to end; 0 answers at once.

    Returns:
        The build; ``log`` starts at ``log_offset`` (later than ``offset`` only when the
        start of a very long log was dropped) and ``log_size`` is the length of all of it.

    Raises:
        BuildNotFound: no such build.
    """
    params = _params(offset=offset or None, wait_s=wait_s or None)
    return Call(
        "GET", "/" + "/".join(["builds", _segment(build_id)]), _model(BuildOut), params=params,
        min_timeout=wait_s + _WAIT_MARGIN_S if wait_s else None,
    )


def list_builds(function: str) -> Call[list[BuildSummaryOut]]:
    """The builds recorded against ``function``, newest first, without their logs (those
    of a create that failed on its build too, though the function does not exist)."""

    def parse(response: httpx.Response) -> list[BuildSummaryOut]:
        return BuildList.model_validate_json(response.content).builds

    return Call("GET", _function_path(function, "builds"), parse)


def wait_build(
    build_id: str,
    on_log: Callable[[str], None] | None = None,
    *,
    timeout_s: float = 900,
    poll_s: float = 20,
    clock: Callable[[], float] = time.monotonic,
) -> Plan[BuildOut]:
    """Follow a build until it ends, handing each new piece of its log to ``on_log``.

    The server holds each request until the log grows or the build ends (at most
    ``poll_s``), so pieces come as pip writes them; a piece may end in the middle of a line.
    A build still running when ``timeout_s`` is over is returned as it is: check
    ``status``.

    Args:
        on_log: called with each new piece of the log, in order.
        timeout_s: the longest wait in seconds.
        poll_s: the longest one request waits on the server (0 < poll_s <= 60).
        clock: the monotonic time source the timeout is measured on.

    Returns:
        The build; its ``log`` holds only the last piece (``on_log`` got all of them).

    Raises:
        BuildNotFound: no such build. InvalidSpec: a negative ``timeout_s`` or a
        ``poll_s`` out of range.
    """
    check_wait(timeout_s, poll_s)
    deadline = clock() + timeout_s
    offset = 0
    while True:
        wait = round(max(0.0, min(poll_s, deadline - clock())), 3)
        build: BuildOut = yield get_build(build_id, offset=offset, wait_s=wait)
        if build.log and on_log is not None:
            on_log(build.log)
        offset = build.log_size
        if build.status != "running" or clock() >= deadline:
            return build
