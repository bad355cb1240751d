"""Functions, their config, versions, aliases and qualifiers.

A Function is a name plus its mutable ``latest`` config and code. Publishing snapshots
``latest`` into an immutable numbered Version; an Alias names a version, optionally splitting
traffic with a second one.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
ALIAS_RE = NAME_RE
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
ENTRYPOINT_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})*[.:]{_IDENT}$")
LAYER_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}(:[1-9][0-9]*)?$")
RESERVED_ALIASES = frozenset({"latest"})
RESERVED_ENV_PREFIX = "EMBER_"
MAX_TIMEOUT_S = 900.0
# Versions of functions and layers are numbered from 1 up to the largest value of the
# store's integer column (PostgreSQL ``integer``).
MAX_VERSION = 2**31 - 1
MAX_ENVIRONMENT_BYTES = 4096
# A secret becomes an environment variable of its own name: a name both a function and an
# environment variable could have.
SECRET_NAME_RE = re.compile(r"^(?![Ee][Mm][Bb][Ee][Rr]_)[A-Za-z][A-Za-z0-9_]{0,63}$")
MAX_SECRETS = 32


def _env_value(value: str) -> str:
    # execve() ends a string at its first NUL: no instance could be given this value.
    if "\x00" in value:
        raise ValueError("an environment value cannot hold a NUL character")
    return value


EnvValue = Annotated[
    str, AfterValidator(_env_value), WithJsonSchema({"type": "string", "pattern": "^[^\\u0000]*$"})
]


def _documented(pattern: re.Pattern[str]) -> Any:
    # The pattern a validator below checks, for the OpenAPI document (the validator keeps
    # its own message).
    return Field(json_schema_extra={"pattern": pattern.pattern})


def check_name(kind: str, value: str) -> str:
    """Validate a function, alias or trigger name; raise ValueError naming the rule."""
    if not NAME_RE.match(value):
        raise ValueError(
            f"{kind} name {value!r} is invalid: it must start with a letter and hold at most "
            "64 letters, digits, '-' or '_'"
        )
    return value


def check_secret_name(value: str) -> str:
    """Validate a secret's name; raise ValueError naming the rule."""
    if value.upper().startswith(RESERVED_ENV_PREFIX):
        raise ValueError(f"secret name {value!r} uses the reserved prefix EMBER_")
    if not SECRET_NAME_RE.match(value):
        raise ValueError(
            f"secret name {value!r} is invalid: it must start with a letter and hold at most "
            "64 letters, digits or '_' (it is the name of an environment variable)"
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Destination(_Strict):
    """Where the outcome of an async invocation goes: another function, or the dead letters."""

    # The OpenAPI document says what _target checks: a function destination names one.
    model_config = ConfigDict(json_schema_extra={
        "if": {"properties": {"kind": {"const": "function"}}},
        "then": {"required": ["function"],
                 "properties": {"function": {"type": "string", "pattern": NAME_RE.pattern}}},
    })

    kind: Literal["function", "dead_letter"] = "function"
    function: str | None = None
    qualifier: str = "latest"

    @model_validator(mode="after")
    def _target(self) -> Destination:
        if self.kind == "function":
            if not self.function:
                raise ValueError("a function destination needs 'function'")
            check_name("function", self.function)
        return self


class AsyncConfig(_Strict):
    """How async invocations of a function are retried and where their outcomes go."""

    max_retries: Annotated[int, Field(ge=0, le=8)] = 3
    max_event_age_s: Annotated[int, Field(ge=1, le=21600)] = 21600
    max_concurrency: Annotated[int | None, Field(ge=1, le=1000)] = None
    on_success: Destination | None = None
    on_failure: Destination | None = None


class StartupProbe(_Strict):
    """How a custom runtime shows it is ready: ``GET path`` answers below 400 within
    ``timeout_s`` of the command starting. No traffic reaches it before."""

    path: Annotated[str, Field(pattern=r"^/[^\s]*$", max_length=1024)] = "/"
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0


class HealthCheck(_Strict):
    """Periodic ``GET path`` of a running web app or custom runtime: after
    ``failure_threshold`` failed checks in a row (an error, a status of 400 or more, or no
    answer within ``timeout_s``) the instance is replaced."""

    path: Annotated[str, Field(pattern=r"^/[^\s]*$", max_length=1024)] = "/"
    interval_s: Annotated[float, Field(ge=0.1, le=3600)] = 10.0
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = 3


_PATTERN = Annotated[str, Field(pattern=r"^[A-Za-z0-9._*?\[\]-]{1,64}$")]


class FunctionRole(_Strict):
    """What a function's code may do on Ember itself, with the token its instances get
    (``EMBER_TOKEN``): invoke the functions, start the workflows (fnmatch patterns), send
    events. Nothing else: no deploys, no reads of other functions."""

    invoke: Annotated[list[_PATTERN], Field(max_length=50)] = Field(default_factory=list)
    workflows: Annotated[list[_PATTERN], Field(max_length=50)] = Field(default_factory=list)
    events: bool = False


class FunctionConfig(_Strict):
    """The configuration of a function; unknown fields are refused."""

    runtime: Literal["python3"] = "python3"
    kind: Literal["event", "web", "custom"] = "event"
    handler: Annotated[str, _documented(ENTRYPOINT_RE)] = "main.handler"
    app: Annotated[str | None, _documented(ENTRYPOINT_RE)] = None
    command: Annotated[list[str], Field(min_length=1, max_length=64)] | None = None
    startup_probe: StartupProbe | None = None  # custom functions: StartupProbe() if unset
    health_check: HealthCheck | None = None
    description: Annotated[str, Field(max_length=256)] = ""
    memory_mb: Annotated[int, Field(ge=64, le=16384)] = 256
    # CPU time per second of wall time (1.0: one core); None: proportional to memory_mb,
    # one core per 1,769 MiB as on AWS Lambda. Enforced by the cgroup cpu controller.
    cpu: Annotated[float | None, Field(ge=0.05, le=64)] = None
    # The size of the instance's private, writable /tmp (the sandbox's tmpfs).
    tmp_mb: Annotated[int, Field(ge=1, le=10240)] = 512
    # outbound: the host's network (as AWS Lambda); none: an empty network namespace.
    network: Literal["outbound", "none"] = "outbound"
    timeout_s: Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)] = 60.0
    environment: dict[str, EnvValue] = Field(
        default_factory=dict,
        json_schema_extra={"propertyNames": {"pattern": ENV_KEY_RE.pattern}},
    )
    layers: Annotated[list[Annotated[str, _documented(LAYER_RE)]], Field(max_length=5)] = Field(
        default_factory=list
    )
    # Names of secrets, given to instances as environment variables of the same names.
    secrets: Annotated[
        list[Annotated[str, AfterValidator(check_secret_name),
                       Field(json_schema_extra={"pattern": SECRET_NAME_RE.pattern})]],
        Field(max_length=MAX_SECRETS),
    ] = Field(default_factory=list, json_schema_extra={"uniqueItems": True})
    # Names of secrets given to instances as files: $EMBER_SECRETS_DIR/NAME (mode 0400;
    # /run/secrets in the bubblewrap sandbox, a private memory-backed directory there).
    secret_files: Annotated[
        list[Annotated[str, AfterValidator(check_secret_name),
                       Field(json_schema_extra={"pattern": SECRET_NAME_RE.pattern})]],
        Field(max_length=MAX_SECRETS),
    ] = Field(default_factory=list, json_schema_extra={"uniqueItems": True})
    # Ember permissions of the function's code (a token in its instances); None: none.
    role: FunctionRole | None = None
    concurrency: Annotated[int, Field(ge=1, le=1000)] = 1
    min_instances: Annotated[int, Field(ge=0, le=100)] = 0
    max_instances: Annotated[int, Field(ge=1, le=1000)] = 100
    keep_alive_s: Annotated[float, Field(ge=0, le=86400)] = 120.0
    # fixed: an idle instance lives keep_alive_s; adaptive: learned from the function's idle
    # times (pool/keepalive.py): keep_alive_s while too few are known, and the price of
    # a cold start in idle seconds.
    keep_alive_policy: Literal["fixed", "adaptive"] = "fixed"
    initializer: Annotated[str | None, _documented(ENTRYPOINT_RE)] = None
    initializer_timeout_s: Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)] = 30.0
    pre_stop: Annotated[str | None, _documented(ENTRYPOINT_RE)] = None
    # Runs in an idle instance before idle mode freezes it (close connections, flush);
    # bounded by its own timeout: the instance is frozen anyway when it fails or is late.
    pre_freeze: Annotated[str | None, _documented(ENTRYPOINT_RE)] = None
    pre_freeze_timeout_s: Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)] = 5.0
    # How long pre_stop may run before the instance is killed.
    pre_stop_timeout_s: Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)] = 5.0
    async_: AsyncConfig = Field(default_factory=AsyncConfig, alias="async")
    tags: dict[str, str] = Field(default_factory=dict, json_schema_extra={
        "maxProperties": 50, "propertyNames": {"minLength": 1, "maxLength": 128},
        "additionalProperties": {"type": "string", "maxLength": 256},
    })

    @field_validator("handler", "initializer", "pre_stop", "pre_freeze")
    @classmethod
    def _entrypoint(cls, value: str | None) -> str | None:
        if value is not None and not ENTRYPOINT_RE.match(value):
            raise ValueError(
                f"{value!r} is not an entry point: use 'module.function' or "
                "'package.module:function'"
            )
        return value

    @field_validator("app")
    @classmethod
    def _app(cls, value: str | None) -> str | None:
        if value is not None and not ENTRYPOINT_RE.match(value):
            raise ValueError(
                f"{value!r} is not an app: use 'module:attribute', e.g. 'app:app'"
            )
        return value

    @field_validator("command", mode="before")
    @classmethod
    def _command(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = shlex.split(value)
        if value is not None and (not value or not all(isinstance(a, str) for a in value)):
            raise ValueError("command must be a non-empty list of strings (or one string)")
        if value is not None and (len(value) > 64 or sum(len(a) for a in value) > 4096):
            raise ValueError("command is too long: at most 64 arguments, 4096 characters")
        return value

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not ENV_KEY_RE.fullmatch(key):
                raise ValueError(f"environment variable name {key!r} is invalid")
            if key.upper().startswith(RESERVED_ENV_PREFIX):
                raise ValueError(f"environment variable {key!r} uses the reserved prefix EMBER_")
        size = sum(len(k.encode()) + len(v.encode()) for k, v in value.items())
        if size > MAX_ENVIRONMENT_BYTES:
            raise ValueError(
                f"environment is {size} bytes, over the {MAX_ENVIRONMENT_BYTES} limit"
            )
        return value

    @field_validator("layers")
    @classmethod
    def _layers(cls, value: list[str]) -> list[str]:
        for layer in value:
            if not LAYER_RE.match(layer):
                raise ValueError(f"layer {layer!r} is invalid: use 'name' or 'name:version'")
            _, _, number = layer.partition(":")
            if number and int(number) > MAX_VERSION:
                raise ValueError(f"layer {layer!r}: versions go from 1 to {MAX_VERSION}")
        return value

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, value: list[str], info: ValidationInfo) -> list[str]:
        environment = info.data.get("environment") or {}
        for i, name in enumerate(value):
            if name in value[:i]:
                raise ValueError(f"secret {name!r} is listed twice")
            if name in environment:
                raise ValueError(
                    f"secret {name!r} (secrets[{i}]) is also a key of environment: a secret "
                    "is given to the function as the environment variable of its name"
                )
        return value

    @field_validator("secret_files")
    @classmethod
    def _secret_files(cls, value: list[str], info: ValidationInfo) -> list[str]:
        as_variables = info.data.get("secrets") or []
        for i, name in enumerate(value):
            if name in value[:i]:
                raise ValueError(f"secret {name!r} is listed twice in secret_files")
            if name in as_variables:
                raise ValueError(
                    f"secret {name!r} (secret_files[{i}]) is also in secrets: give it as a "
                    "variable or as a file, not both"
                )
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 50:
            raise ValueError("at most 50 tags")
        for key, tag in value.items():
            if not key or len(key) > 128 or len(tag) > 256:
                raise ValueError(f"tag {key!r}: keys are 1-128 characters, values at most 256")
        return value

    @model_validator(mode="after")
    def _kind(self) -> FunctionConfig:
        if self.kind == "web" and self.app is None:
            raise ValueError("app: a web function needs its ASGI or WSGI app, 'module:attr'")
        if self.kind == "custom" and self.command is None:
            raise ValueError(
                "command: a custom function needs the program that serves HTTP on $PORT"
            )
        if self.app is not None and self.kind != "web":
            raise ValueError("kind: 'app' is for web functions: set kind to 'web'")
        if self.command is not None and self.kind != "custom":
            raise ValueError("kind: 'command' is for custom functions: set kind to 'custom'")
        if self.startup_probe is not None and self.kind != "custom":
            raise ValueError("kind: 'startup_probe' is for custom functions")
        if self.health_check is not None and self.kind == "event":
            raise ValueError("kind: 'health_check' is for web and custom functions")
        if self.kind == "custom" and (self.initializer or self.pre_stop or self.pre_freeze):
            raise ValueError("kind: 'initializer', 'pre_stop' and 'pre_freeze' are Python "
                             "hooks: a custom function's own program does its setup and "
                             "cleanup")
        if self.concurrency > 1 and self.kind == "event":
            raise ValueError(
                "concurrency: above 1 is for web and custom functions; a handler instance "
                "serves one event at a time"
            )
        if self.role is not None and self.network == "none":
            raise ValueError("network: a function with a role calls Ember over the network; "
                             "with 'none' its token cannot reach it: use 'outbound'")
        return self

    @model_validator(mode="after")
    def _instances(self) -> FunctionConfig:
        if self.min_instances > self.max_instances:
            raise ValueError(
                f"min_instances ({self.min_instances}) is above max_instances "
                f"({self.max_instances})"
            )
        return self

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def merged(self, patch: dict[str, Any]) -> FunctionConfig:
        """A new config with the top-level fields of ``patch`` replacing this one's."""
        return FunctionConfig.model_validate({**self.to_json(), **patch})

    def digest(self) -> str:
        return hashlib.sha256(orjson.dumps(self.to_json(), option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class CodeRef:
    """The code of a function or version: an artifact by its sha256."""

    sha256: str
    size: int


@dataclass(frozen=True)
class Function:
    name: str
    config: FunctionConfig
    code: CodeRef
    enabled: bool
    created_at: datetime
    updated_at: datetime
    last_version: int = 0
    async_paused: bool = False


@dataclass(frozen=True)
class Version:
    function: str
    number: int
    config: FunctionConfig
    code: CodeRef
    description: str
    created_at: datetime

    def same_content(self, config: FunctionConfig, code: CodeRef) -> bool:
        return self.code.sha256 == code.sha256 and self.config.digest() == config.digest()


@dataclass(frozen=True)
class TrafficSplit:
    """The second version of an alias and the share of traffic it gets (0 < weight < 1)."""

    version: int
    weight: float


@dataclass(frozen=True)
class Alias:
    function: str
    name: str
    version: int
    description: str
    created_at: datetime
    updated_at: datetime
    split: TrafficSplit | None = None
    async_config: AsyncConfig | None = None

    def versions(self) -> tuple[int, ...]:
        return (self.version,) if self.split is None else (self.version, self.split.version)


@dataclass(frozen=True)
class Qualifier:
    """What an invocation or trigger targets: ``latest``, a version number or an alias."""

    kind: Literal["latest", "version", "alias"]
    value: str = "latest"
    version: int | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, text: str | None) -> Qualifier:
        if text is None or text == "" or text == "latest" or text == "$LATEST":
            return cls("latest")
        if text.isdigit():
            number = int(text)
            if number < 1 or number > MAX_VERSION:
                raise ValueError(
                    f"version {text!r} is invalid: versions go from 1 to {MAX_VERSION}"
                )
            return cls("version", text, number)
        check_name("alias", text)
        return cls("alias", text)

    def __str__(self) -> str:
        return self.value
