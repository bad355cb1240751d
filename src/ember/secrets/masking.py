"""Masks the secret values of an instance in the log lines it writes, before they are
stored or shown."""

from __future__ import annotations

import re
from collections.abc import Iterable

from ember.pool.instance import LogSink

MASK = "***"
# A line of a multi-line value (a PEM key) is masked on its own too, when it is long enough
# that masking it does not hide ordinary text.
MIN_PIECE = 8


class Masker:
    """Replaces every occurrence of the given values with ``***``."""

    def __init__(self, values: Iterable[str]) -> None:
        pieces: set[str] = set()
        for value in values:
            if value:
                pieces.add(value)
            for line in value.splitlines():
                if len(line.strip()) >= MIN_PIECE:
                    pieces.add(line.strip())
        # Longest first: a value that holds another is masked whole.
        ordered = sorted(pieces, key=lambda p: (-len(p), p))
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    @property
    def empty(self) -> bool:
        """Whether there is nothing to mask."""
        return self._pattern is None

    def __call__(self, line: str) -> str:
        if self._pattern is None:
            return line
        return self._pattern.sub(MASK, line)


def masked(sink: LogSink, values: Iterable[str]) -> LogSink:
    """``sink``, given each line with ``values`` masked; ``sink`` itself when none."""
    masker = Masker(values)
    if masker.empty:
        return sink

    def masking_sink(request_id: str | None, level: str, ts: float, line: str) -> None:
        sink(request_id, level, ts, masker(line))

    return masking_sink
