"""Health checks of a running web app or custom runtime, inside its instance.

Every ``interval_s`` a thread asks the app for ``GET path`` (through a ``Probe``: over HTTP
for a custom runtime, in-process for an ASGI or WSGI app); a check fails on an error, a
status of 400 or more, or no answer within ``timeout_s``. After ``failure_threshold``
failures in a row the instance is declared unhealthy (``on_fatal``): it exits, and the
server replaces it.

Standard library only, like the rest of the runtime.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from ember.runtime.spec import HealthCheck

Probe = Callable[[str, float], int]
"""``probe(path, timeout_s)``: the status of ``GET path``; raises when there is none
(``TimeoutError`` past ``timeout_s``)."""


class HealthChecker:
    """Checks an app with ``probe`` as ``check`` says, in a daemon thread, until stopped."""

    def __init__(self, check: HealthCheck, probe: Probe,
                 on_fatal: Callable[[str], None]) -> None:
        self.check = check
        self.probe = probe
        self.on_fatal = on_fatal
        self._stopping = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="ember-health", daemon=True).start()

    def stop(self) -> None:
        """No more checks (the instance is stopping: its app may stop answering)."""
        self._stopping.set()

    def _run(self) -> None:
        path = self.check.path
        threshold = self.check.failure_threshold
        failures = 0
        while not self._stopping.wait(self.check.interval_s):
            try:
                code = self.probe(path, self.check.timeout_s)
                problem = f"it answered {code}" if code >= 400 else ""
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}".rstrip(": ")
            if self._stopping.is_set():
                return
            if not problem:
                failures = 0
                continue
            failures += 1
            print(f"health check GET {path} failed ({failures}/{threshold}): {problem}",
                  file=sys.stderr, flush=True)
            if failures >= threshold:
                self.on_fatal(f"unhealthy: {threshold} health checks failed in a row")
                return
