"""What an async invocation's destination function receives about its outcome."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from ember.model.invocation import Event, Task


def _payload_json(payload: bytes, content_type: str) -> Any:
    if "json" in content_type:
        try:
            return orjson.loads(payload) if payload else None
        except orjson.JSONDecodeError:
            pass
    return {"base64": base64.b64encode(payload).decode()}


def destination_record(event: Event, task: Task, condition: str) -> dict[str, Any]:
    """What a destination function receives about an async invocation's outcome."""
    response: dict[str, Any]
    if task.status == "succeeded":
        response = {"result": _payload_json(task.result or b"",
                                            task.result_content_type or "")}
    else:
        response = {"error": task.error}
    return {
        "version": "1.0",
        "request_id": task.id,
        "condition": condition,
        "source": {"function": task.function, "qualifier": task.qualifier,
                   "version": task.version},
        "request": {"payload": _payload_json(event.payload, event.content_type)},
        "response": response,
        "attempts": [a.to_json() for a in task.history],
    }
