"""Request and response bodies of the HTTP API (the OpenAPI spec is generated from these)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal, Self

import orjson
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from ember.errors import InvalidCode
from ember.model.build import Build
from ember.model.function import (
    MAX_VERSION,
    NAME_RE,
    Alias,
    AsyncConfig,
    Function,
    FunctionConfig,
    Version,
)
from ember.model.invocation import DeadLetter, Task
from ember.model.key import ApiKey
from ember.model.layer import Layer, LayerVersion
from ember.model.scaling import ProvisionedConfig
from ember.model.trigger import SourceSpec
from ember.model.workflow import Execution, StepRecord, WorkflowInfo

# Names, qualifiers and base64 carry their pattern in the OpenAPI document; the services
# check them with messages that state the rule (see ember.api.params).
NAME_PATTERN = NAME_RE.pattern
# latest, a version (1 to 999,999,999 here; the server takes up to 2**31 - 1) or an alias.
QUALIFIER_PATTERN = r"^(\$LATEST|[1-9][0-9]{0,8}|[A-Za-z][A-Za-z0-9_-]{0,63})$"
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


def _name(*default: None) -> Any:
    """A name field (required unless given a None default)."""
    return Field(*default, description=NAME_PATTERN, json_schema_extra={"pattern": NAME_PATTERN})


class _In(BaseModel):
    """A request body: unknown fields and NUL characters are refused."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _no_nul(self) -> Self:
        # PostgreSQL cannot hold a NUL character, and no name or text of Ember's needs one.
        # (Fields that say more, such as environment values, are refused before this.)
        errors = [{"field": path, "message": "a NUL character is not allowed"}
                  for path in _nul_paths(self.model_dump(by_alias=True), "")]
        if errors:
            # Imported here: the SDK imports this module, and ember.control loads the store.
            from ember.control.validation import invalid_spec

            raise invalid_spec(errors)
        return self


def _nul_paths(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, str):
        if "\x00" in value:
            yield path or "body"
    elif isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            yield from _nul_paths(key, inner)
            yield from _nul_paths(item, inner)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _nul_paths(item, f"{path}[{i}]")


class CodeIn(_In):
    """Code as a base64-encoded zip archive."""

    zip: str = Field(
        description="base64 of a zip archive of the code directory",
        json_schema_extra={"pattern": BASE64_PATTERN},
    )

    def decode(self) -> bytes:
        try:
            return base64.b64decode(self.zip, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidCode(
                "code.zip is not valid base64", {"field": "code.zip"}
            ) from exc


def _partial(model: type[BaseModel], name: str) -> type[BaseModel]:
    """The same fields as ``model``, each optional, for merge-style updates."""
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        fields[field_name] = (
            info.annotation | None,  # type: ignore[operator]
            Field(default=None, alias=info.alias, description=info.description,
                  json_schema_extra=info.json_schema_extra),
        )
    config = ConfigDict(extra="forbid", populate_by_name=True)
    return create_model(name, __config__=config, **fields)


FunctionConfigPatch = _partial(FunctionConfig, "FunctionConfigPatch")


class FunctionCreate(_In):
    name: str = _name()
    config: FunctionConfig = Field(default_factory=FunctionConfig)
    code: CodeIn


class FunctionPatch(_In):
    config: FunctionConfigPatch = Field(  # type: ignore[valid-type]
        description="fields to replace; the others keep their value"
    )


class PublishIn(_In):
    description: str = Field(default="", max_length=256)


class AliasIn(_In):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    version: int = Field(ge=1, le=MAX_VERSION)
    additional_version: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    weight: float | None = Field(default=None, gt=0, lt=1)
    description: str = Field(default="", max_length=256)
    async_: AsyncConfig | None = Field(
        default=None, alias="async",
        description="async settings for events sent to the alias; default: the version's",
    )


class CodeOut(BaseModel):
    sha256: str
    size: int


class FunctionOut(BaseModel):
    name: str
    state: Literal["enabled", "disabled"]
    async_state: Literal["running", "paused"]
    config: FunctionConfig
    code: CodeOut
    last_version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, f: Function) -> FunctionOut:
        return cls(
            name=f.name,
            state="enabled" if f.enabled else "disabled",
            async_state="paused" if f.async_paused else "running",
            config=f.config,
            code=CodeOut(sha256=f.code.sha256, size=f.code.size),
            last_version=f.last_version,
            created_at=f.created_at,
            updated_at=f.updated_at,
        )


class FunctionList(BaseModel):
    functions: list[FunctionOut]
    next_cursor: str | None


class VersionOut(BaseModel):
    function: str
    version: int
    description: str
    config: FunctionConfig
    code: CodeOut
    created_at: datetime

    @classmethod
    def of(cls, v: Version) -> VersionOut:
        return cls(
            function=v.function,
            version=v.number,
            description=v.description,
            config=v.config,
            code=CodeOut(sha256=v.code.sha256, size=v.code.size),
            created_at=v.created_at,
        )


class PublishOut(VersionOut):
    created: bool = Field(description="false when latest was unchanged and this version exists")


class VersionList(BaseModel):
    versions: list[VersionOut]


class AliasOut(BaseModel):
    function: str
    name: str
    version: int
    additional_version: int | None
    weight: float | None
    description: str
    async_: AsyncConfig | None = Field(alias="async")
    created_at: datetime
    updated_at: datetime

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    @classmethod
    def of(cls, a: Alias) -> AliasOut:
        return cls(
            function=a.function,
            name=a.name,
            version=a.version,
            additional_version=a.split.version if a.split else None,
            weight=a.split.weight if a.split else None,
            description=a.description,
            async_=a.async_config,
            created_at=a.created_at,
            updated_at=a.updated_at,
        )


class AliasList(BaseModel):
    aliases: list[AliasOut]


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"]
    version: str


class TriggerIn(_In):
    name: str = _name()
    target: Literal["function", "events", "workflow"] = Field(
        default="function", description="function: invoke it; events: publish on the "
        "workflow event bus (then no function or qualifier); workflow: start an execution "
        "of the workflow named by workflow")
    function: str | None = _name(None)
    qualifier: str | None = Field(default=None, description="latest when not given",
                                  json_schema_extra={"pattern": QUALIFIER_PATTERN})
    workflow: str | None = Field(default=None, description="with target workflow only")
    source: SourceSpec
    description: str = Field(default="", max_length=256)


class TriggerPatch(_In):
    target: Literal["function", "events", "workflow"] | None = Field(
        default=None, description="cannot change: only its current value is accepted")
    function: str | None = _name(None)
    workflow: str | None = Field(default=None, description="with target workflow only")
    qualifier: str | None = Field(default=None, json_schema_extra={"pattern": QUALIFIER_PATTERN})
    source: SourceSpec | None = Field(default=None, description="replaces the source whole")
    description: str | None = Field(default=None, max_length=256)


class TriggerOut(BaseModel):
    name: str
    target: Literal["function", "events", "workflow"] = "function"
    function: str | None = Field(description="null unless the target is function")
    qualifier: str | None = Field(description="null unless the target is function")
    workflow: str | None = Field(default=None, description="null unless the target is "
                                 "workflow")
    state: Literal["enabled", "disabled", "paused"]
    source: dict[str, Any]
    description: str
    created_at: float
    updated_at: float
    status: dict[str, Any]
    node: str | None = Field(
        default=None, description="the node its source runs on (the holder of its lease); "
        "null when no node runs it, and for an HTTP trigger, which every node serves")


class TriggerList(BaseModel):
    triggers: list[TriggerOut]


class LayerPublishIn(CodeIn):
    """A layer version: a base64 zip (its ``python/`` directory, or else its root, goes on
    the import path of the functions using it) and a description."""

    description: str = Field(default="", max_length=256)


class LayerOut(BaseModel):
    name: str
    latest_version: int | None = Field(description="null when every version was deleted")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, layer: Layer) -> LayerOut:
        return cls(name=layer.name, latest_version=layer.latest_version,
                   created_at=layer.created_at, updated_at=layer.updated_at)


class LayerList(BaseModel):
    layers: list[LayerOut]


class LayerVersionOut(BaseModel):
    layer: str
    version: int
    description: str
    code: CodeOut
    created_at: datetime

    @classmethod
    def of(cls, v: LayerVersion) -> LayerVersionOut:
        return cls(layer=v.layer, version=v.number, description=v.description,
                   code=CodeOut(sha256=v.code.sha256, size=v.code.size),
                   created_at=v.created_at)


class LayerPublishOut(LayerVersionOut):
    created: bool = Field(description="false when the newest version has the same content")


class LayerVersionList(BaseModel):
    versions: list[LayerVersionOut]


class SecretIn(_In):
    """A secret's value: text of at most 64 KiB (UTF-8), never shown again."""

    value: str = Field(min_length=1, max_length=65536, json_schema_extra={"writeOnly": True})


class SecretOut(BaseModel):
    """A secret as every answer shows it: its name and times, never its value."""

    name: str
    created_at: datetime
    updated_at: datetime


class SecretList(BaseModel):
    secrets: list[SecretOut]


class BuildIn(CodeIn):
    """Code (a base64 zip) whose top-level requirements.txt to install, and the function
    the build is for (it need not exist yet)."""

    function: str | None = Field(
        default=None, description="record the build against this function",
        json_schema_extra={"pattern": NAME_PATTERN},
    )


class BuildSummaryOut(BaseModel):
    id: str
    function: str | None
    status: Literal["running", "succeeded", "failed"]
    cached: bool = Field(description="the dependencies were already built: pip did not run")
    key: str = Field(description="sha256 of requirements.txt and the Python tag")
    requirements_sha256: str
    python: str = Field(description="what it is built for: cpython-311-linux-x86_64")
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    log_size: int = Field(description="characters of log written so far")

    @classmethod
    def of(cls, b: Build) -> BuildSummaryOut:
        return cls(**_build_fields(b))


class BuildOut(BuildSummaryOut):
    log: str = Field(description="the log from log_offset on")
    log_offset: int = Field(
        description="where log starts: the offset asked for, or later when the start of a "
        "long log was dropped"
    )

    @classmethod
    def of(cls, b: Build, offset: int = 0) -> BuildOut:
        start, text = b.log_from(offset)
        return cls(**_build_fields(b), log=text, log_offset=start)


def _build_fields(b: Build) -> dict[str, Any]:
    return {
        "id": b.id, "function": b.function, "status": b.status, "cached": b.cached,
        "key": b.key, "requirements_sha256": b.requirements_sha256, "python": b.python,
        "error": b.error, "created_at": b.created_at, "finished_at": b.finished_at,
        "log_size": b.log_size,
    }


class BuildList(BaseModel):
    builds: list[BuildSummaryOut]


def body_json(body: bytes | None, content_type: str | None) -> dict[str, Any]:
    """A payload or result for a JSON answer: as JSON, as text, or as base64."""
    if body is None:
        return {}
    content_type = content_type or ""
    if "json" in content_type:
        try:
            return {"value": orjson.loads(body) if body else None}
        except orjson.JSONDecodeError:
            pass
    if content_type.startswith("text/"):
        return {"text": body.decode("utf-8", "replace")}
    return {"base64": base64.b64encode(body).decode()}


class AttemptOut(BaseModel):
    attempt: int
    started_at: float
    finished_at: float
    outcome: str
    version: str | None
    error_code: str | None
    message: str | None


class TaskOut(BaseModel):
    id: str
    function: str
    qualifier: str
    status: Literal["queued", "running", "succeeded", "failed", "stopped", "expired"]
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    version: str | None
    idempotency_key: str | None
    result: dict[str, Any] | None
    result_content_type: str | None
    error: dict[str, Any] | None
    history: list[AttemptOut]
    stop_requested: bool
    dead_lettered: bool
    logs: str

    @classmethod
    def of(cls, t: Task) -> TaskOut:
        return cls(
            id=t.id, function=t.function, qualifier=t.qualifier,
            status=t.status,
            created_at=t.created_at, updated_at=t.updated_at, started_at=t.started_at,
            finished_at=t.finished_at, attempts=t.attempts, version=t.version,
            idempotency_key=t.idempotency_key,
            result=body_json(t.result, t.result_content_type) if t.result is not None else None,
            result_content_type=t.result_content_type, error=t.error,
            history=[AttemptOut(**a.to_json()) for a in t.history],
            stop_requested=t.stop_requested, dead_lettered=t.dead_lettered,
            logs=f"/functions/{t.function}/logs?request_id={t.id}",
        )


class TaskList(BaseModel):
    tasks: list[TaskOut]
    next_cursor: str | None


class AcceptedOut(BaseModel):
    request_id: str
    deduplicated: bool
    task: TaskOut


class DeadLetterOut(BaseModel):
    id: str
    function: str
    qualifier: str
    payload: dict[str, Any]
    content_type: str
    enqueued_at: float
    dead_at: float
    reason: dict[str, Any]

    @classmethod
    def of(cls, d: DeadLetter) -> DeadLetterOut:
        return cls(
            id=d.id, function=d.function, qualifier=d.qualifier,
            payload=body_json(d.payload, d.content_type), content_type=d.content_type,
            enqueued_at=d.enqueued_at, dead_at=d.dead_at, reason=d.reason,
        )


class DeadLetterList(BaseModel):
    dead_letters: list[DeadLetterOut]
    next_cursor: str | None


class InvocationOut(BaseModel):
    """One invocation as it ended: sync, async (one record per attempt) or through a trigger."""

    request_id: str
    function: str
    version: str
    mode: str = Field(description="sync or async")
    status: Literal["success", "error", "timeout", "throttled"]
    cold: bool = Field(description="a cold start: an instance was started for it")
    attempt: int
    started_at: float = Field(description="Unix time the invocation arrived")
    init_ms: float = Field(description="the cold start's import and initializer, else 0")
    duration_ms: float = Field(description="the handler's run")
    total_ms: float = Field(description="from arrival to answer, waits included")
    error_code: str | None
    error_message: str | None
    node: str | None = Field(default=None, description="the node it ran on")


class InvocationList(BaseModel):
    invocations: list[InvocationOut]
    next_cursor: str | None
    nodes: list[str] = Field(default_factory=list, description="the nodes whose records "
                             "are listed")
    unreachable: list[str] = Field(default_factory=list, description="the nodes whose "
                                   "records are missing: down, or too slow to answer")


class PoolOut(BaseModel):
    """The instances of one version (``latest`` or a number) and what the scaler keeps."""

    version: str
    qualifiers: list[str] = Field(description="the aliases (and latest) that reach it")
    current: int = Field(description="starting, idle and busy instances")
    starting: int
    desired: int
    reason: str = Field(description="why desired: min_instances: N, provisioned at Q: "
                        "target N / target tracking …, on demand, draining")
    shortfall: str | None = Field(default=None, description="why desired is not met "
                                  "(max_instances, the server's limit, a failed start)")
    draining: bool = Field(description="no qualifier reaches it any more: it winds down")
    keep_alive: str = Field(default="", description="how idle instances are kept: fixed N s, "
                            "or the adaptive window learned and from how many idle times")
    node: str | None = Field(default=None, description="the node the pool is on")


class InstanceOut(BaseModel):
    id: str
    version: str
    state: Literal["starting", "idle", "busy", "frozen", "draining"]
    in_flight: int = Field(description="requests it is serving now")
    started_at: datetime
    last_used_at: datetime
    memory_mb: float | None = Field(description="memory in use, as its sandbox counts it")
    node: str | None = Field(default=None, description="the node it runs on")


class ZygoteOut(BaseModel):
    """A version's zygote (the warm parent its instances fork from) or its preloader (a
    confined child of the zygote that imported the version's dependencies first)."""

    kind: Literal["zygote", "preloader"]
    version: str
    pid: int = Field(description="as the server sees it")
    children: int = Field(description="instances (and spares) forked from it, alive now")
    rss_mb: float | None = Field(description="resident memory, shared pages included")
    pss_mb: float | None = Field(description="what it costs: each page it shares with its "
                                 "instances divided among them")
    cgroup_mb: float | None = Field(default=None, description="what a preloader's cgroup "
                                    "counts")
    modules: list[str] = Field(default_factory=list, description="what a preloader imported")
    failed: dict[str, str] = Field(default_factory=dict,
                                   description="modules a preloader could not import, and why")
    import_ms: float | None = Field(default=None, description="how long its imports took")
    node: str | None = Field(default=None, description="the node it runs on")


class InstancesOut(BaseModel):
    function: str
    pools: list[PoolOut]
    instances: list[InstanceOut]
    zygotes: list[ZygoteOut] = Field(default_factory=list, description="the warm parents "
                                     "of the function's versions on each node, with memory")
    nodes: list[str] = Field(default_factory=list, description="the nodes listed")
    unreachable: list[str] = Field(default_factory=list, description="the nodes whose "
                                   "pools are missing: down, or too slow to answer")


class WarmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    qualifier: str = Field(default="latest", pattern=QUALIFIER_PATTERN,
                           description="latest, a version or an alias (its primary version)")
    instances: int = Field(ge=1, le=100, description="how many to start now")


class WarmOut(BaseModel):
    started: int = Field(description="how many came up (max_instances and the server's "
                         "free capacity may allow fewer)")


# workflows ------------------------------------------------------------------------------------


class WorkflowOut(BaseModel):
    """A workflow and its latest revision. Lists leave ``document`` out."""

    name: str
    revision: int = Field(description="the latest revision; each change of the document "
                          "makes a new one, and executions pin the one they began on")
    namespace: str = Field(description="document.namespace")
    version: str = Field(description="document.version")
    created_at: datetime
    updated_at: datetime
    document: dict[str, Any] | None = Field(
        default=None, description="the latest revision's document, as JSON")

    @classmethod
    def of(cls, info: WorkflowInfo, *, document: bool = True, **extra: Any) -> Self:
        fields: dict[str, Any] = {
            "name": info.name, "revision": info.latest.revision,
            "namespace": info.latest.namespace, "version": info.latest.version,
            "created_at": info.created_at, "updated_at": info.updated_at, **extra,
        }
        if document:  # else left unset: the answer leaves it out
            fields["document"] = info.latest.document
        return cls(**fields)


class WorkflowDeployOut(WorkflowOut):
    changed: bool = Field(description="false when the latest revision had the same document")


class WorkflowList(BaseModel):
    workflows: list[WorkflowOut]
    next_cursor: str | None


class ExecutionIn(_In):
    input: Any = Field(default=None, description="the workflow's input (any JSON value)")


class StepOut(BaseModel):
    """One task instance: its key is its path, plus ``@i`` per enclosing ``for`` iteration."""

    key: str
    path: str
    status: str
    attempts: int
    started_at: str | None
    ended_at: str | None
    error: dict[str, Any] | None = None
    function: str | None = Field(default=None, description="the function a call ran")
    version: str | None = Field(default=None, description="the function version it ran")
    request_id: str | None = Field(
        default=None, description="the invocation's request id: its logs are "
        "/functions/{function}/logs?request_id=…")

    @classmethod
    def of(cls, s: StepRecord) -> StepOut:
        return cls(key=s.key, path=s.path, status=s.status, attempts=s.attempts,
                   started_at=s.started_at, ended_at=s.ended_at, error=s.error,
                   function=s.function, version=s.version, request_id=s.request_id)


class ProgressOut(BaseModel):
    """How far one ``for`` task instance is: its iterations done and failed out of all."""

    key: str
    path: str
    total: int
    done: int
    failed: int
    failed_items: list[int] = Field(description="the indexes of the items that failed")


class ExecutionOut(BaseModel):
    """One run of a workflow revision. ``history`` is left out of lists and with
    ``?history=false``."""

    id: str
    workflow: str
    revision: int
    status: Literal["running", "waiting", "succeeded", "failed", "cancelled"]
    input: Any
    output: Any
    error: dict[str, Any] | None = Field(description="problem details when it failed")
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    reruns: int = Field(description="function steps run again after a crash of the server "
                        "between the call and the record of its result")
    parent: str | None = Field(description="the execution that ran this one as a sub-workflow")
    history: list[StepOut] | None = None
    progress: list[ProgressOut] = Field(default_factory=list)

    @classmethod
    def of(cls, e: Execution, progress: list[dict[str, Any]],
           history: list[StepRecord] | None = None) -> ExecutionOut:
        fields: dict[str, Any] = {
            "id": e.id, "workflow": e.workflow, "revision": e.revision, "status": e.status,
            "input": e.input, "output": e.output, "error": e.error,
            "created_at": e.created_at, "updated_at": e.updated_at,
            "finished_at": e.finished_at, "reruns": e.reruns, "parent": e.parent,
            "progress": [ProgressOut(**p) for p in progress],
        }
        if history is not None:  # else left unset: the answer leaves it out
            fields["history"] = [StepOut.of(s) for s in history]
        return cls(**fields)

    @property
    def active(self) -> bool:
        """Still running or waiting."""
        return self.status in ("running", "waiting")


class ExecutionList(BaseModel):
    executions: list[ExecutionOut]
    next_cursor: str | None


class EventMatches(BaseModel):
    executions: int = Field(description="waiting executions the event was offered to")
    schedules: int = Field(description="schedules (schedule.on) it counted towards")


class EventOut(BaseModel):
    """What became of a published CloudEvent."""

    id: str
    matched: EventMatches
    retained: bool = Field(description="kept for listens not reached yet (retention window)")
    duplicate: bool = Field(description="an event with this source and id came before")


# -- API keys and the audit ------------------------------------------------------------------


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$",
                      description="1 to 64 lower-case letters, digits, '.', '_', '-'")
    role: Literal["admin", "developer", "invoker", "viewer"]
    functions: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9._*?\[\]-]{1,64}$")]] = Field(
        default_factory=lambda: ["*"], min_length=1, max_length=100,
        description="fnmatch patterns of the functions and workflows the key reaches")
    expires_in_s: float | None = Field(default=None, gt=0, le=10 * 365 * 24 * 3600,
                                       description="the key expires this late")


class KeyOut(BaseModel):
    name: str
    role: str
    functions: list[str]
    created_at: datetime
    expires_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls(name=key.name, role=key.role, functions=list(key.functions),
                   created_at=key.created_at, expires_at=key.expires_at)


class KeyCreated(KeyOut):
    key: str = Field(description="the secret, shown this once")


class KeyList(BaseModel):
    keys: list[KeyOut]


class AuditOut(BaseModel):
    id: int
    at: datetime
    key: str
    action: str
    resource: str
    status: int


class AuditList(BaseModel):
    records: list[AuditOut]


# provisioned capacity -------------------------------------------------------------------------


class ProvisionedStateOut(BaseModel):
    """Where a provisioned policy stands now."""

    target: int = Field(description="the count the last PUT or scheduled action set")
    desired: int = Field(description="what is kept up now: the larger of target and "
                         "target tracking's count")
    reason: str = Field(description="which policy (and metric value) decided desired")
    versions: dict[str, int] = Field(description="desired split over the versions the "
                                     "qualifier reaches (an alias's split by weight)")
    current: int = Field(description="instances of those versions up now (any reason)")
    frozen: int = Field(description="of them, frozen by idle mode")
    shortfall: str | None = Field(description="why desired is not met (quota, server "
                                  "limit, failed start), None when it is")
    utilization: float | None = Field(description="target tracking's metric now")
    last_action: str | None = Field(description="the scheduled action that set target")
    next_action_at: datetime | None = Field(description="when a scheduled action fires next")
    updated_at: datetime


class ProvisionedOut(BaseModel):
    function: str
    qualifier: str
    config: ProvisionedConfig
    state: ProvisionedStateOut


class NodeOut(BaseModel):
    """A server of the cluster, as its heartbeats describe it."""

    id: str
    address: str
    version: str
    state: Literal["alive", "draining", "drained", "dead", "stopped"] = Field(
        description="alive; draining (no new work, some still on it) then drained (none "
        "left: safe to stop); dead (silent longer than dead_after_s); stopped (cleanly)")
    started_at: datetime
    heartbeat_at: datetime
    capacity: dict[str, Any] = Field(description="max_instances, cpus")
    load: dict[str, Any] = Field(
        description="at the last heartbeat: instances (by state), in_flight (sync "
        "invocations running or waiting), async (attempts running), leases (trigger "
        "sources owned)")
    this: bool = Field(description="the node that answered")


class NodeList(BaseModel):
    nodes: list[NodeOut]
    heartbeat_s: float
    dead_after_s: float
