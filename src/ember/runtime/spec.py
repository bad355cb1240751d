"""What an instance is told to be: the ``spec`` of the ``init`` message, typed.

The server builds an ``InitSpec`` (``ember.pool.instance.InstanceSpec.to_runtime``), sends
``to_message()`` in the ``init`` frame, and the instance reads it back with
``InitSpec.from_message``. Both sides use this one class, so the defaults live here only.

Standard library only, like the rest of the runtime.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

Message = dict[str, Any]


@dataclass(frozen=True)
class StartupProbe:
    """A web app or custom runtime is ready once ``GET path`` answers below 400, within
    ``timeout_s`` of its start."""

    path: str = "/"
    timeout_s: float = 10.0


@dataclass(frozen=True)
class HealthCheck:
    """``GET path`` every ``interval_s`` while the instance runs; after
    ``failure_threshold`` failures in a row (an error, 400 or more, or no answer within
    ``timeout_s``) the instance exits and is replaced."""

    path: str = "/"
    interval_s: float = 10.0
    timeout_s: float = 2.0
    failure_threshold: int = 3


@dataclass(frozen=True)
class InitSpec:
    """Everything an instance needs to load and serve one function version.

    Attributes:
        function: the function's name. version: ``"latest"`` or the number as text.
        code_dir: the unpacked code, the working directory and first on the import path.
        memory_mb, timeout_s: the function's limits (shown in the handler's context).
        env: the whole environment of the instance (the server's allowed part, the
            function's own, the ``EMBER_*`` variables).
        layer_dirs: unpacked layers, on the import path after the code.
        handler: ``module.function`` (``kind: event``). app: ``module:attribute`` of an
            ASGI or WSGI app (``kind: web``). command: the program of a custom runtime
            (``kind: custom``).
        initializer, pre_stop, pre_freeze: hooks; ``initializer_timeout_s`` bounds the
            import and the initializer together; ``pre_freeze_timeout_s`` the server's
            wait for pre_freeze (the instance is frozen anyway past it).
        concurrency: requests at once (web and custom functions).
        startup_probe, health_check: HTTP checks of a custom runtime (health checks also
            of a web app).
        secret_files, secrets_dir: secrets given as files: the instance writes each value
            to ``secrets_dir/NAME`` (mode 0400) before loading the code, and names the
            directory in ``EMBER_SECRETS_DIR``.
    """

    function: str
    version: str
    code_dir: str
    memory_mb: int
    timeout_s: float
    env: dict[str, str] = field(default_factory=dict)
    layer_dirs: tuple[str, ...] = ()
    kind: str = "event"
    handler: str = "main.handler"
    app: str | None = None
    command: tuple[str, ...] | None = None
    initializer: str | None = None
    initializer_timeout_s: float = 30.0
    pre_stop: str | None = None
    pre_freeze: str | None = None
    pre_freeze_timeout_s: float = 5.0
    concurrency: int = 1
    startup_probe: StartupProbe | None = None
    health_check: HealthCheck | None = None
    secret_files: dict[str, str] = field(default_factory=dict)
    secrets_dir: str | None = None

    @property
    def probe(self) -> StartupProbe:
        """The startup probe to use: the configured one, or the default."""
        return self.startup_probe or StartupProbe()

    def to_message(self) -> Message:
        """The ``spec`` map of the ``init`` message: plain types msgpack carries."""
        message = dataclasses.asdict(self)
        message["layer_dirs"] = list(self.layer_dirs)
        message["command"] = list(self.command) if self.command is not None else None
        return message

    @classmethod
    def from_message(cls, message: Message) -> InitSpec:
        """The spec of an ``init`` message; absent fields take their defaults, unknown
        ones are ignored. Raises ``TypeError`` when a required field is missing."""
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {key: value for key, value in message.items() if key in known}
        if fields.get("layer_dirs") is not None:
            fields["layer_dirs"] = tuple(fields["layer_dirs"])
        if fields.get("command") is not None:
            fields["command"] = tuple(fields["command"])
        if fields.get("env") is None:
            fields.pop("env", None)
        if isinstance(fields.get("startup_probe"), dict):
            fields["startup_probe"] = _build(StartupProbe, fields["startup_probe"])
        if isinstance(fields.get("health_check"), dict):
            fields["health_check"] = _build(HealthCheck, fields["health_check"])
        return cls(**fields)


def _build(kind: Any, values: Message) -> Any:
    known = {f.name for f in dataclasses.fields(kind)}
    return kind(**{key: value for key, value in values.items() if key in known})


@dataclass(frozen=True)
class Confinement:
    """In the bubblewrap sandbox, what one instance takes of its own
    (``ember.runtime.confine``): a user (and group) id, and the size of its ``/tmp``."""

    uid: int
    tmp_mb: int

    def to_message(self) -> dict[str, int]:
        return {"uid": self.uid, "tmp_mb": self.tmp_mb}

    @classmethod
    def from_message(cls, message: object) -> Confinement | None:
        if not isinstance(message, dict):
            return None
        return cls(uid=int(message["uid"]), tmp_mb=int(message["tmp_mb"]))

    def to_argument(self) -> str:
        return f"{self.uid}:{self.tmp_mb}"

    @classmethod
    def from_argument(cls, text: str) -> Confinement:
        uid, _, tmp_mb = text.partition(":")
        return cls(uid=int(uid), tmp_mb=int(tmp_mb))
