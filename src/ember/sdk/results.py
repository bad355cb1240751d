"""What the SDK hands back besides the API's own response models, and how error answers
become the errors the server raised."""

from __future__ import annotations

import base64
import binascii
import json as jsonlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from ember.api.schemas import TaskOut
from ember.errors import EmberError, from_dict


def error_from_response(response: httpx.Response) -> EmberError:
    """The error an error answer describes: the class registered for its code when the body
    is ``{"error": {...}}``, else an EmberError holding the status and the text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return from_dict(body["error"], response.status_code)
    text = response.text.strip()
    if len(text) > 500:
        text = text[:500] + "…"
    return EmberError(
        f"HTTP {response.status_code} from {response.request.url}: {text or '(empty body)'}",
        {"http_status": response.status_code, "body": text},
    )


@dataclass(frozen=True)
class InvocationResult:
    """The answer to one invocation, with the timings the server reported in its headers.

    ``error`` is set when the answer is an error (the function raised, timed out, was
    throttled…); ``invoke(..., check=True)`` raises it instead of returning.
    """

    status_code: int
    body: bytes
    content_type: str | None
    request_id: str | None
    version: str | None
    cold_start: bool
    init_ms: float | None
    duration_ms: float | None
    log_tail: str | None = None
    error: EmberError | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def is_json(self) -> bool:
        media = (self.content_type or "").split(";", 1)[0].strip().lower()
        return media == "application/json" or media.endswith("+json")

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes replaced)."""
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON; raises ValueError when it is not JSON."""
        return jsonlib.loads(self.body)

    def raise_for_error(self) -> None:
        """Raise ``error`` when the invocation failed."""
        if self.error is not None:
            raise self.error

    @classmethod
    def of(cls, response: httpx.Response) -> InvocationResult:
        headers = response.headers
        error = None if response.is_success else error_from_response(response)
        request_id = headers.get("x-ember-request-id")
        log_tail = _base64_text(headers.get("x-ember-log-tail"))
        if error is not None:
            if request_id:
                error.details.setdefault("request_id", request_id)
            # A failed invocation carries its log tail in the error's details.
            if log_tail is None and isinstance(error.details.get("log_tail"), str):
                log_tail = error.details["log_tail"]
        return cls(
            status_code=response.status_code,
            body=response.content,
            content_type=headers.get("content-type"),
            request_id=request_id,
            version=headers.get("x-ember-version"),
            cold_start=headers.get("x-ember-cold-start", "").lower() == "true",
            init_ms=_number(headers.get("x-ember-init-ms")),
            duration_ms=_number(headers.get("x-ember-duration-ms")),
            log_tail=log_tail,
            error=error,
        )


def _number(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _base64_text(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return base64.b64decode(text, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return text


@dataclass(frozen=True)
class LogLine:
    """One line a function's instance wrote."""

    ts: float
    level: str
    line: str
    request_id: str | None = None
    version: str | None = None
    instance: str | None = None
    node: str | None = None  # the node of the cluster it ran on

    @classmethod
    def of(cls, data: dict[str, Any]) -> LogLine:
        def text(key: str) -> str | None:
            value = data.get(key)
            return None if value is None else str(value)

        return cls(
            ts=float(data.get("ts") or 0.0),
            level=str(data.get("level") or ""),
            line=str(data.get("line") or ""),
            request_id=text("request_id"),
            version=text("version"),
            instance=text("instance"),
            node=text("node"),
        )


@dataclass(frozen=True)
class LogPage:
    """One page of log lines, oldest first; ``next_cursor`` fetches the lines after them.
    ``nodes``: the nodes of the cluster whose lines it holds; ``unreachable``: those whose
    lines are missing (down, or too slow to answer)."""

    logs: list[LogLine]
    next_cursor: str | None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    nodes: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, response: httpx.Response) -> LogPage:
        body = response.json()
        if not isinstance(body, dict):
            raise EmberError(f"unexpected logs answer: {body!r:.200}")
        return cls(
            logs=[LogLine.of(item) for item in body.get("logs") or []],
            next_cursor=body.get("next_cursor"),
            raw=body,
            nodes=[str(n) for n in body.get("nodes") or []],
            unreachable=[str(n) for n in body.get("unreachable") or []],
        )


def decode_body(encoded: Mapping[str, Any] | None) -> Any:
    """A task's result or a dead letter's payload as the API encodes it, decoded:
    ``{"value": v}`` (JSON) gives ``v``, ``{"text": t}`` gives the str ``t``, ``{"base64": b}``
    gives the bytes; None or an empty mapping gives None.

    Raises:
        ValueError: the mapping is none of these, or its base64 is invalid.
    """
    if not encoded:
        return None
    if "value" in encoded:
        return encoded["value"]
    if "text" in encoded:
        return str(encoded["text"])
    if "base64" in encoded:
        try:
            return base64.b64decode(str(encoded["base64"]), validate=True)
        except binascii.Error as exc:
            raise ValueError(f"invalid base64 in an encoded body: {exc}") from exc
    raise ValueError(f"not an encoded body: {sorted(encoded)!r}")


def task_error(task: TaskOut) -> EmberError | None:
    """The error a task ended with, as the class registered for its code
    (``FunctionError``, ``FunctionTimeout``…), with ``details["request_id"]`` set to the task
    id; None when the task has no error (it succeeded or has not ended)."""
    if task.error is None:
        return None
    error = from_dict(task.error)
    error.details.setdefault("request_id", task.id)
    return error
