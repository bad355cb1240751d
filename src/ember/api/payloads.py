"""Checks on an invocation's payload made before it is queued or sent to an instance."""

from __future__ import annotations

from itertools import accumulate, repeat
from operator import sub

from ember.errors import InvalidPayload

# The runtime parses a JSON event with the standard library, whose parser recurses once per
# level: past about 990 levels the instance dies. 512 leaves room for the handler's own calls.
MAX_JSON_DEPTH = 512

_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_SQUARE = bytes.maketrans(b"{}", b"[]")
# An opening bracket steps one level in (2 - 1), a closing one a level out (0 - 1).
_STEPS = bytes.maketrans(b"[]", b"\x02\x00")
_PASSES = 4
_CHUNK = 64 * 1024


def check_json_depth(body: bytes, content_type: str | None) -> None:
    """Raise InvalidPayload when ``body`` is JSON nested deeper than MAX_JSON_DEPTH.

    Costs two byte counts for a payload with few brackets (nearly every one); only a
    payload with more than MAX_JSON_DEPTH of them is scanned."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH or not _is_json(content_type):
        return
    if json_depth(body, stop_above=MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise InvalidPayload(
            f"the payload is JSON nested more than {MAX_JSON_DEPTH} levels deep",
            {"limit": MAX_JSON_DEPTH},
        )


def json_depth(body: bytes, stop_above: int | None = None) -> int:
    """How deep arrays and objects nest in the JSON text ``body`` (brackets inside strings
    do not count); the count may stop early once the depth is over ``stop_above``."""
    # Escapes only occur inside strings, and a quote that is not escaped opens or closes
    # one: without escapes, every other piece between quotes is outside the strings.
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.split(b'"')[::2])
    brackets = outside.translate(_SQUARE, _NOT_BRACKETS)
    # Each pass takes out the innermost arrays and objects, which makes every nesting one
    # level shallower: a shallow payload, however large, is measured here.
    passes = 0
    while brackets and passes < _PASSES:
        brackets = brackets.replace(b"[]", b"")
        passes += 1
    depth = deepest = 0
    steps = brackets.translate(_STEPS)
    for start in range(0, len(steps), _CHUNK):
        levels = list(accumulate(map(sub, steps[start : start + _CHUNK], repeat(1)),
                                 initial=depth))
        deepest = max(deepest, max(levels))
        depth = levels[-1]
        if stop_above is not None and passes + deepest > stop_above:
            break
    return passes + deepest


def _is_json(content_type: str | None) -> bool:
    # As the runtime decides: no type, application/json or any +json type is parsed as JSON.
    media = (content_type or "application/json").split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")
