"""Values in an execution's state as they are kept, stored and shown.

A function step's JSON result stays the bytes the instance returned (:class:`RawJson`):
passed on to the next step as those bytes, given to jq as text when an expression reads it,
never decoded into Python objects unless something needs them. Stored (journal entries,
snapshots, an execution's input and output), a result under :data:`INLINE_MAX_BYTES` is
written inline as JSON; a larger one is written once per execution as a blob and referenced
as ``{"$ember.blob": "<sha256>"}``, however many snapshots hold it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from ember.workflows.expressions import RawJson, encode_json

INLINE_MAX_BYTES = 256 * 1024
BLOB_KEY = "$ember.blob"

_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS


def storable(value: Any, blobs: dict[str, bytes]) -> Any:
    """``value`` as plain JSON data to store: small :class:`RawJson` inline, large ones
    replaced by a reference, their bytes added to ``blobs`` (sha256 → bytes)."""

    def encode(item: Any) -> Any:
        if isinstance(item, RawJson):
            if len(item.text) < INLINE_MAX_BYTES:
                return orjson.Fragment(item.text)
            digest = hashlib.sha256(item.text).hexdigest()
            blobs[digest] = item.text
            return {BLOB_KEY: digest}
        raise TypeError(f"{type(item).__name__} is not JSON")

    return orjson.loads(orjson.dumps(value, default=encode, option=_OPTIONS))


def references(value: Any) -> set[str]:
    """The blobs that stored ``value`` refers to."""
    found: set[str] = set()
    _walk(value, found)
    return found


def _walk(value: Any, found: set[str]) -> None:
    if isinstance(value, dict):
        digest = value.get(BLOB_KEY)
        if len(value) == 1 and isinstance(digest, str):
            found.add(digest)
            return
        for item in value.values():
            _walk(item, found)
    elif isinstance(value, list):
        for item in value:
            _walk(item, found)


def restore(value: Any, blobs: dict[str, bytes]) -> Any:
    """Stored ``value`` with each reference replaced by its :class:`RawJson`."""
    if not blobs:
        return value
    if isinstance(value, dict):
        digest = value.get(BLOB_KEY)
        if len(value) == 1 and isinstance(digest, str) and digest in blobs:
            return RawJson(blobs[digest])
        return {key: restore(item, blobs) for key, item in value.items()}
    if isinstance(value, list):
        return [restore(item, blobs) for item in value]
    return value


def restore_all(values: Iterable[Any], fetch: Callable[[set[str]], dict[str, bytes]],
                ) -> list[Any]:
    """:func:`restore` for several values, fetching the blobs they refer to at once."""
    items = list(values)
    wanted: set[str] = set()
    for item in items:
        _walk(item, wanted)
    blobs = fetch(wanted) if wanted else {}
    return [restore(item, blobs) for item in items]


def plain(value: Any) -> Any:
    """``value`` with every :class:`RawJson` decoded: what the API shows."""
    if isinstance(value, RawJson):
        return value.decode()
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def encoded(value: Any) -> bytes:
    """``value`` as JSON bytes: a :class:`RawJson` as it is, inside or at the top (a step's
    payload)."""
    return encode_json(value)
