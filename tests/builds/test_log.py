"""A build's log past its limit: the start is dropped at a line, offsets still count from the
very start, and a reader who asked for dropped text gets what is kept."""

from __future__ import annotations

from datetime import UTC, datetime

from ember.control.builds import LOG_LIMIT, _Log
from ember.model.build import RUNNING, Build


def test_a_long_log_keeps_its_end_from_a_whole_line() -> None:
    saved: list[tuple[str, int]] = []
    log = _Log(lambda text, size: saved.append((text, size)))
    line = "x" * 99 + "\n"
    for _ in range(LOG_LIMIT // 100 + 50):
        log.write(line)
    assert len(log.text) <= LOG_LIMIT and log.text.startswith("x") and log.text.endswith("\n")
    assert log.size == (LOG_LIMIT // 100 + 50) * 100
    assert log.size - len(log.text) >= 50 * 100

    build = Build("b", None, "k", RUNNING, False, "r", "py", log.text, log.size, None,
                  datetime.now(UTC))
    dropped = log.size - len(log.text)
    assert build.log_from(0) == (dropped, log.text)
    assert build.log_from(dropped + 5) == (dropped + 5, log.text[5:])
    assert build.log_from(log.size + 10) == (log.size, "")
