"""Every route of the HTTP API, described once: the request it sends and how its answer is read.

Each function here returns a ``Call``; ``Client`` sends it with httpx's sync client and
``AsyncClient`` with the async one, so both offer the same methods with the same parameters,
documented here once. A ``Call`` is plain data and does no I/O of its own, except reading or
zipping local code when it is given as a path.
"""

from __future__ import annotations

import base64
import json as jsonlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from ember.api.schemas import (
    AliasList,
    AliasOut,
    FunctionList,
    FunctionOut,
    Health,
    InstancesOut,
    InvocationList,
    PublishOut,
    VersionList,
    VersionOut,
    WarmOut,
)
from ember.errors import InvalidCode, InvalidSpec
from ember.sdk.results import InvocationResult, LogPage

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

Code = bytes | str | os.PathLike[str]
"""Code to upload: the bytes of a zip archive, or the path of a directory (zipped, the same
tree always giving the same bytes) or of a ``.zip`` file."""

Params = Mapping[str, str | int | float]


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and the reader of its answer.

    With ``check`` the client raises the error of any non-2xx answer before ``parse`` runs;
    without it ``parse`` reads error answers too (an invocation's failure is a result).
    ``timeout`` replaces the client's timeout; ``min_timeout`` only raises it, for an answer
    the server is known to hold back (a long poll)."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Params = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    check: bool = True
    min_timeout: float | None = None


def _segment(value: str | int) -> str:
    return quote(str(value), safe="")


def _function_path(name: str, *rest: str | int) -> str:
    return "/".join(["/functions", _segment(name), *(_segment(part) for part in rest)])


def _model(model: type[M]) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        return model.model_validate_json(response.content)

    return parse


def code_bytes(code: Code, exclude: Sequence[str] = ()) -> bytes:
    """The zip bytes of ``code``; a directory is zipped without ``exclude`` globs.

    Raises:
        InvalidCode: the path does not exist, cannot be read, or holds something that
            cannot be zipped.
    """
    if isinstance(code, bytes | bytearray):
        return bytes(code)
    path = Path(code)
    try:
        if path.is_dir():
            from ember.artifacts.archive import zip_directory

            return zip_directory(path, exclude)
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise InvalidCode(f"{path}: no such file or directory", {"path": str(path)}) from exc
    except (OSError, ValueError) as exc:
        raise InvalidCode(f"{path}: {exc}", {"path": str(path)}) from exc


def _code_body(code: Code, exclude: Sequence[str]) -> dict[str, str]:
    return {"zip": base64.b64encode(code_bytes(code, exclude)).decode("ascii")}


def _params(**values: str | int | float | None) -> dict[str, str | int | float]:
    return {key: value for key, value in values.items() if value is not None}


# functions -----------------------------------------------------------------------------------


def create_function(
    name: str,
    code: Code,
    config: Mapping[str, Any] | None = None,
    *,
    exclude: Sequence[str] = (),
) -> Call[FunctionOut]:
    """Create a function.

    Args:
        name: the function's name: a letter, then up to 63 letters, digits, ``-`` or ``_``.
        code: the code (see ``Code``); ``exclude`` globs leave files out of a directory.
        config: FunctionConfig fields (``memory_mb``, ``handler``, ``environment``…); the
            others keep their defaults.

    Returns:
        The function as stored.

    Raises:
        Conflict: a function has this name. InvalidSpec: a bad name, or an unknown or
        invalid config field (``details["errors"]`` names each field). InvalidCode: the
        archive is unreadable or unsafe. PayloadTooLarge: the archive is over the limit.
    """
    body = {"name": name, "config": dict(config or {}), "code": _code_body(code, exclude)}
    return Call("POST", "/functions", _model(FunctionOut), json=body)


def get_function(name: str) -> Call[FunctionOut]:
    """The function ``name`` with its ``latest`` config and code.

    Raises:
        FunctionNotFound: no function has this name.
    """
    return Call("GET", _function_path(name), _model(FunctionOut))


def list_functions(
    *,
    prefix: str = "",
    tag: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[FunctionList]:
    """One page of functions ordered by name; follow ``next_cursor`` for the next one
    (``iter_functions`` does).

    Args:
        prefix: only names starting with it.
        tag: only functions with this tag: ``key`` or ``key=value``.
        limit: page size, 1 to 1000 (the server's default is 100).
        cursor: the ``next_cursor`` of the previous page.

    Raises:
        InvalidSpec: ``limit`` is out of range.
    """
    params = _params(prefix=prefix or None, tag=tag, limit=limit, cursor=cursor)
    return Call("GET", "/functions", _model(FunctionList), params=params)


def update_function(name: str, config: Mapping[str, Any]) -> Call[FunctionOut]:
    """Replace the given top-level fields of ``latest``'s config; the others keep their value.

    Raises:
        FunctionNotFound: no such function. InvalidSpec: an unknown or invalid field.
    """
    return Call("PATCH", _function_path(name), _model(FunctionOut), json={"config": dict(config)})


def update_code(name: str, code: Code, *, exclude: Sequence[str] = ()) -> Call[FunctionOut]:
    """Replace the code of ``latest`` (see ``Code``; ``exclude`` globs leave files out).

    Raises:
        FunctionNotFound: no such function. InvalidCode: an unreadable or unsafe archive.
        PayloadTooLarge: the archive is over the limit.
    """
    return Call(
        "PUT", _function_path(name, "code"), _model(FunctionOut), json=_code_body(code, exclude)
    )


def download_code(name: str, qualifier: str | int = "latest") -> Call[bytes]:
    """The zip archive of ``latest`` (the default) or of a version number.

    Raises:
        FunctionNotFound, VersionNotFound: no such function or version. InvalidSpec:
        ``qualifier`` is neither ``latest`` nor a version number.
    """

    def parse(response: httpx.Response) -> bytes:
        return response.content

    return Call(
        "GET", _function_path(name, "code"), parse, params={"qualifier": str(qualifier)}
    )


def delete_function(name: str) -> Call[FunctionOut]:
    """Delete the function with all its versions and aliases; returns what was deleted.

    Raises:
        FunctionNotFound: no such function.
    """
    return Call("DELETE", _function_path(name), _model(FunctionOut))


def disable_function(name: str) -> Call[FunctionOut]:
    """Refuse invocations of the function (``FunctionDisabled``) until it is enabled.

    Raises:
        FunctionNotFound: no such function.
    """
    return Call("POST", _function_path(name, "disable"), _model(FunctionOut))


def enable_function(name: str) -> Call[FunctionOut]:
    """Allow invocations of a disabled function again.

    Raises:
        FunctionNotFound: no such function.
    """
    return Call("POST", _function_path(name, "enable"), _model(FunctionOut))


# versions ------------------------------------------------------------------------------------


def publish_version(name: str, description: str = "") -> Call[PublishOut]:
    """Publish ``latest`` as a new immutable version.

    Returns:
        The version; ``created`` is False when ``latest`` was unchanged since the newest
        version, which is returned instead of a new one.

    Raises:
        FunctionNotFound: no such function. InvalidSpec: ``description`` over 256 characters.
    """
    return Call(
        "POST", _function_path(name, "versions"), _model(PublishOut),
        json={"description": description},
    )


def list_versions(name: str) -> Call[list[VersionOut]]:
    """Every version of the function, oldest first.

    Raises:
        FunctionNotFound: no such function.
    """

    def parse(response: httpx.Response) -> list[VersionOut]:
        return VersionList.model_validate_json(response.content).versions

    return Call("GET", _function_path(name, "versions"), parse)


def get_version(name: str, version: int) -> Call[VersionOut]:
    """One version of the function.

    Raises:
        FunctionNotFound, VersionNotFound: no such function or version.
    """
    return Call("GET", _function_path(name, "versions", version), _model(VersionOut))


def delete_version(name: str, version: int) -> Call[VersionOut]:
    """Delete one version; returns what was deleted.

    Raises:
        FunctionNotFound, VersionNotFound: no such function or version. Conflict: an alias
        points at the version.
    """
    return Call("DELETE", _function_path(name, "versions", version), _model(VersionOut))


# aliases -------------------------------------------------------------------------------------


def set_alias(
    name: str,
    alias: str,
    version: int,
    additional_version: int | None = None,
    weight: float | None = None,
    description: str = "",
) -> Call[AliasOut]:
    """Create or move an alias.

    Args:
        alias: the alias name (not ``latest``).
        version: the version the alias points at.
        additional_version, weight: together, send the share ``weight`` (0 < weight < 1)
            of the traffic to ``additional_version`` and the rest to ``version``.

    Raises:
        FunctionNotFound, VersionNotFound: no such function or version. InvalidSpec: a bad
        alias name, a reserved one, or an invalid split.
    """
    body: dict[str, Any] = {"version": version, "description": description}
    if additional_version is not None:
        body["additional_version"] = additional_version
    if weight is not None:
        body["weight"] = weight
    return Call("PUT", _function_path(name, "aliases", alias), _model(AliasOut), json=body)


def get_alias(name: str, alias: str) -> Call[AliasOut]:
    """One alias of the function.

    Raises:
        FunctionNotFound, AliasNotFound: no such function or alias.
    """
    return Call("GET", _function_path(name, "aliases", alias), _model(AliasOut))


def list_aliases(name: str) -> Call[list[AliasOut]]:
    """Every alias of the function, by name.

    Raises:
        FunctionNotFound: no such function.
    """

    def parse(response: httpx.Response) -> list[AliasOut]:
        return AliasList.model_validate_json(response.content).aliases

    return Call("GET", _function_path(name, "aliases"), parse)


def delete_alias(name: str, alias: str) -> Call[AliasOut]:
    """Delete an alias; returns what was deleted.

    Raises:
        FunctionNotFound, AliasNotFound: no such function or alias.
    """
    return Call("DELETE", _function_path(name, "aliases", alias), _model(AliasOut))


# invocations, logs, statistics ---------------------------------------------------------------


def encode_payload(payload: Any, content_type: str | None) -> tuple[bytes, str]:
    """The body and content type of an invocation's payload: bytes as they are (with
    ``content_type``, default ``application/octet-stream``), anything else as JSON."""
    if isinstance(payload, bytes | bytearray):
        return bytes(payload), content_type or "application/octet-stream"
    return jsonlib.dumps(payload).encode(), content_type or "application/json"


def invoke(
    name: str,
    payload: Any = None,
    *,
    qualifier: str | int = "latest",
    content_type: str | None = None,
    log_tail: bool = False,
    mode: Literal["sync", "async"] = "sync",
    idempotency_key: str | None = None,
    timeout: float | None = None,
    check: bool = True,
) -> Call[InvocationResult]:
    """Invoke the function and return its answer with the invocation's timings.

    Args:
        payload: bytes are sent as they are, with ``content_type`` (default
            ``application/octet-stream``); anything else (dict, list, str, number, None) is
            sent as JSON.
        qualifier: ``latest``, a version number or an alias.
        log_tail: also return the last 4 KiB of the invocation's log in ``log_tail``.
        mode: ``async`` queues the invocation; the result is the bare 202 answer, whose
            body holds the ``request_id`` (also the task id). ``invoke_async`` does the same
            and reads the answer into an ``AcceptedOut``.
        idempotency_key: async invocations with the same key run once.
        timeout: seconds to wait for the answer, instead of the client's timeout.
        check: raise the error of a failed invocation; when False, return it in
            ``InvocationResult.error`` with the request id, log tail and body.

    Raises (with ``check``):
        FunctionNotFound, VersionNotFound, AliasNotFound; FunctionDisabled; TooManyRequests;
        PayloadTooLarge; InvalidPayload; FunctionError, InitError, InstanceCrashed,
        FunctionOutOfMemory, FunctionTimeout (the function ran and failed; the error's
        ``details["request_id"]`` names the invocation).
    """
    headers: dict[str, str] = {"X-Ember-Invocation-Type": mode}
    if log_tail:
        headers["X-Ember-Log-Type"] = "Tail"
    if idempotency_key is not None:
        headers["X-Ember-Idempotency-Key"] = idempotency_key
    content, headers["Content-Type"] = encode_payload(payload, content_type)

    def parse(response: httpx.Response) -> InvocationResult:
        result = InvocationResult.of(response)
        if check:
            result.raise_for_error()
        return result

    return Call(
        "POST", _function_path(name, "invoke"), parse, params={"qualifier": str(qualifier)},
        content=content, headers=headers, timeout=timeout, check=False,
    )


def _epoch(value: datetime | float | None, field_name: str) -> float | None:
    if value is None or isinstance(value, int | float):
        return value
    if value.tzinfo is None:
        raise InvalidSpec(
            f"{field_name} must be an aware datetime (with a timezone)", {"field": field_name}
        )
    return value.timestamp()


def get_logs(
    name: str,
    *,
    request_id: str | None = None,
    level: str | None = None,
    since: datetime | float | None = None,
    until: datetime | float | None = None,
    grep: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[LogPage]:
    """One page of the function's log lines, oldest first.

    Args:
        request_id: only the lines of this invocation.
        level: only lines at this level (``info``, ``error``…).
        since, until: the time range, as aware datetimes or Unix timestamps (seconds).
        grep: only lines containing this text.
        limit: page size. cursor: the ``next_cursor`` of the previous page.

    Raises:
        FunctionNotFound: no such function. InvalidSpec: a bad filter.
    """
    params = _params(
        request_id=request_id, level=level, since=_epoch(since, "since"),
        until=_epoch(until, "until"), grep=grep, limit=limit, cursor=cursor,
    )
    return Call("GET", _function_path(name, "logs"), LogPage.of, params=params)


def get_stats(name: str, *, window_s: float | None = None) -> Call[dict[str, Any]]:
    """Statistics of the function's invocations over the last ``window_s`` seconds
    (the server's default window when None): counts, errors, cold starts, latencies.

    Raises:
        FunctionNotFound: no such function.
    """

    def parse(response: httpx.Response) -> dict[str, Any]:
        body = response.json()
        return body if isinstance(body, dict) else {"stats": body}

    return Call("GET", _function_path(name, "stats"), parse, params=_params(window_s=window_s))


def list_invocations(
    name: str,
    *,
    status: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[InvocationList]:
    """The function's recent invocations, newest first: one record per sync call, async
    attempt or trigger event, with its request id, version, mode, status, cold start, init
    and run durations, and error code and message.

    Args:
        status: only those that ended so: ``success``, ``error``, ``timeout`` or
            ``throttled``.
        limit: page size (1-1000). cursor: the ``next_cursor`` of the previous page.

    Raises:
        FunctionNotFound: no such function. InvalidSpec: a bad status or cursor.
    """
    params = _params(status=status, limit=limit, cursor=cursor)
    return Call("GET", _function_path(name, "invocations"), _model(InvocationList),
                params=params)


def list_instances(name: str) -> Call[InstancesOut]:
    """The function's pools and instances on the server now: per version (``latest`` or a
    number) the qualifiers that reach it, the instances it has (``current``, of which
    ``starting``) and wants (``desired``, with its ``reason``), and per instance its
    state, requests in flight, start and last use, and memory in use.

    Raises:
        FunctionNotFound: no such function.
    """
    return Call("GET", _function_path(name, "instances"), _model(InstancesOut))


def warm(name: str, *, qualifier: str = "latest", instances: int = 1) -> Call[WarmOut]:
    """Start ``instances`` (1-100) instances of the version ``qualifier`` reaches (an
    alias's primary version) now; they then idle until keep-alive reclaims them. ``started``
    says how many came up: max_instances and the server's free capacity may allow fewer.

    Raises:
        FunctionNotFound, VersionNotFound, AliasNotFound: no such target.
        FunctionDisabled: the function is disabled. InvalidSpec: a bad field (named).
        InitError: no instance could start.
    """
    return Call("POST", _function_path(name, "warm"), _model(WarmOut),
                json={"qualifier": qualifier, "instances": instances})


def health() -> Call[Health]:
    """The server's liveness: ``status`` ``ok`` and its version."""
    return Call("GET", "/healthz", _model(Health))
