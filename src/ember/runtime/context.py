"""The ``Context`` a handler receives next to its event.

Handlers are written ``def handler(event, context)``; the context says which request this
is, how long is left before the server kills the instance, and gives a logger whose records
land in the invocation's log with their level. Initializers get a context too
(``init(context)``), with no request id and the init deadline.
"""

from __future__ import annotations

import logging
import time

# The logger handed to user code. Its records propagate to the root logger, where the
# runtime's handler ships them with their level; INFO is the floor so that
# ``context.logger.info`` shows up while the root logger keeps Python's WARNING default
# for chatty libraries.
FUNCTION_LOGGER_NAME = "function"


def function_logger() -> logging.Logger:
    """The logger ``Context.logger`` returns (one per instance)."""
    logger = logging.getLogger(FUNCTION_LOGGER_NAME)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    return logger


class Context:
    """What a handler knows about its invocation.

    Attributes:
        request_id: the invocation's id; ``None`` while the initializer, pre_stop or
            pre_freeze runs.
        function_name: the function's name.
        function_version: ``"latest"`` or the version number as text.
        qualifier: what the caller targeted (``latest``, a version or an alias).
        memory_limit_mb: the memory the function was configured with.
        deadline: Unix time after which the server stops the invocation.
        attempt: 1 for the first try; async retries count up.
        trigger: the name of the trigger whose event this is; ``None`` for a direct call.
        logger: a ``logging.Logger`` whose records go to this invocation's log.
    """

    __slots__ = (
        "attempt",
        "deadline",
        "function_name",
        "function_version",
        "logger",
        "memory_limit_mb",
        "qualifier",
        "request_id",
        "trigger",
    )

    def __init__(
        self,
        *,
        request_id: str | None,
        function_name: str,
        function_version: str,
        qualifier: str,
        memory_limit_mb: int,
        deadline: float,
        attempt: int = 1,
        trigger: str | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.request_id = request_id
        self.function_name = function_name
        self.function_version = function_version
        self.qualifier = qualifier
        self.memory_limit_mb = memory_limit_mb
        self.deadline = deadline
        self.attempt = attempt
        self.trigger = trigger
        self.logger = logger if logger is not None else function_logger()

    def get_remaining_time_ms(self) -> int:
        """Milliseconds left before the deadline, never below zero."""
        return max(0, int((self.deadline - time.time()) * 1000))

    def __repr__(self) -> str:
        return (
            f"Context(request_id={self.request_id!r}, function={self.function_name!r}, "
            f"version={self.function_version!r}, qualifier={self.qualifier!r}, "
            f"attempt={self.attempt}, remaining_ms={self.get_remaining_time_ms()})"
        )
