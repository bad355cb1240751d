"""The Python SDK: ``Client`` and ``AsyncClient`` over Ember's HTTP API.

    from ember.client import Client

    with Client() as ember:                      # EMBER_URL, else http://127.0.0.1:8080
        ember.create_function("hello", Path("hello/"), {"memory_mb": 512})
        ember.publish_version("hello")
        print(ember.invoke("hello", {"name": "Ada"}).json())

Async invocations run in the background and are followed as tasks:

        accepted = ember.invoke_async("hello", {"name": "Ada"}, idempotency_key="order-17")
        task = ember.wait_task(accepted.request_id, timeout_s=30)
        if task.status == "succeeded":
            print(decode_body(task.result))
        else:
            print(task.status, task_error(task))

Triggers bind an event source to a function at a qualifier:

        ember.create_trigger("orders", "hello", {"kind": "http", "path": "/orders"},
                             qualifier="live")       # POST /http/orders invokes hello:live
        print(ember.get_trigger("orders").status)    # events, invocations, failures…
        ember.pause_trigger("orders")

Layers are shared code put on the import path of the functions that list them:

        ember.publish_layer("shared", Path("shared/"))   # its python/ dir goes on sys.path
        ember.update_function("hello", {"layers": ["shared"]})  # pinned to "shared:1"

Code holding a requirements.txt gets its dependencies installed by the server (cached by
the requirements and the server's Python); a build can be started and followed first:

        build = ember.start_build(Path("hello/"), "hello")
        build = ember.wait_build(build.id, on_log=lambda text: print(text, end=""))
        if build.status == "failed":
            print(build.error)

Workflows (Serverless Workflow DSL 1.0 documents) run functions in sequence, in parallel,
over many inputs, and when events arrive:

        ember.deploy_workflow("orders", Path("orders.yaml").read_text())
        execution = ember.run_workflow("orders", {"id": 17}, wait_s=30)
        ember.send_event("com.shop.shipped", {"id": 17})   # resumes a listen

Secrets are encrypted by the server and reach the functions that list them as environment
variables; no answer ever holds a value:

        ember.set_secret("DB_PASSWORD", password)
        ember.update_function("hello", {"secrets": ["DB_PASSWORD"]})  # os.environ[...]

Both clients offer the same methods with the same parameters (the async ones are awaited);
each is documented in ``ember.sdk.calls`` or, for async invocation, tasks and dead letters,
in ``ember.sdk.tasks``, for triggers in ``ember.sdk.triggers``, for layers in
``ember.sdk.layers``, for dependency builds in ``ember.sdk.builds``, for workflows in
``ember.sdk.workflows``, for secrets in ``ember.sdk.secrets`` and for provisioned capacity
in ``ember.sdk.scaling``, where every route is described once. An error answer raises the
same ``ember.errors`` class the server raised (``FunctionNotFound``, ``InvalidSpec``,
``Conflict``, ``BuildFailed``…); a server that cannot be reached raises
``ServiceUnavailable``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from functools import wraps
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, ParamSpec, TypeVar, overload

import httpx

from ember.api.schemas import (
    AcceptedOut,
    AliasOut,
    AttemptOut,
    BuildOut,
    BuildSummaryOut,
    CodeOut,
    DeadLetterList,
    DeadLetterOut,
    EventOut,
    ExecutionList,
    ExecutionOut,
    FunctionList,
    FunctionOut,
    Health,
    InstanceOut,
    InstancesOut,
    InvocationList,
    InvocationOut,
    LayerOut,
    LayerPublishOut,
    LayerVersionOut,
    ProvisionedOut,
    ProvisionedStateOut,
    PublishOut,
    SecretOut,
    TaskList,
    TaskOut,
    TriggerList,
    TriggerOut,
    VersionOut,
    WarmOut,
    WorkflowDeployOut,
    WorkflowList,
    WorkflowOut,
    ZygoteOut,
)
from ember.errors import EmberError, ServiceUnavailable
from ember.model.invocation import FINAL_STATUSES
from ember.sdk import (
    builds,
    calls,
    keys,
    layers,
    nodes,
    scaling,
    secrets,
    tasks,
    triggers,
    workflows,
)
from ember.sdk.calls import Call, Code
from ember.sdk.results import (
    InvocationResult,
    LogLine,
    LogPage,
    decode_body,
    error_from_response,
    task_error,
)
from ember.sdk.tasks import Plan

__all__ = [
    "DEFAULT_URL",
    "FINAL_STATUSES",
    "AcceptedOut",
    "AliasOut",
    "AsyncClient",
    "AttemptOut",
    "BuildOut",
    "BuildSummaryOut",
    "Client",
    "Code",
    "CodeOut",
    "DeadLetterList",
    "DeadLetterOut",
    "EventOut",
    "ExecutionList",
    "ExecutionOut",
    "FunctionList",
    "FunctionOut",
    "Health",
    "InstanceOut",
    "InstancesOut",
    "InvocationList",
    "InvocationOut",
    "InvocationResult",
    "LayerOut",
    "LayerPublishOut",
    "LayerVersionOut",
    "LogLine",
    "LogPage",
    "ProvisionedOut",
    "ProvisionedStateOut",
    "PublishOut",
    "SecretOut",
    "TaskList",
    "TaskOut",
    "TriggerList",
    "TriggerOut",
    "VersionOut",
    "WarmOut",
    "WorkflowDeployOut",
    "WorkflowList",
    "WorkflowOut",
    "ZygoteOut",
    "decode_body",
    "task_error",
]

DEFAULT_URL = "http://127.0.0.1:8080"

P = ParamSpec("P")
T = TypeVar("T")


def find_api_key(explicit: str | None = None) -> str | None:
    """The API key a client sends: ``explicit``, else ``EMBER_API_KEY``, else
    ``EMBER_TOKEN`` (inside a function with a ``role``), else the first
    line of ``~/.config/ember/credentials`` (``$XDG_CONFIG_HOME/ember/credentials``), else
    the server's ``<EMBER_HOME or .ember>/admin.key`` when this user can read it."""
    if explicit:
        return explicit
    for variable in ("EMBER_API_KEY", "EMBER_TOKEN"):  # a function's own identity
        if os.environ.get(variable):
            return os.environ[variable].strip()
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    home = Path(os.environ.get("EMBER_HOME") or ".ember")
    for path in (config / "ember" / "credentials", home / "admin.key"):
        try:
            line = path.read_text().strip().splitlines()
        except OSError:
            continue
        if line and line[0].strip():
            return line[0].strip()
    return None


def _with_key(headers: Mapping[str, str] | None, key: str | None) -> Mapping[str, str] | None:
    if key is None or (headers and any(k.lower() == "authorization" for k in headers)):
        return headers
    return {**(headers or {}), "Authorization": f"Bearer {key}"}


def _base_url(explicit: str | None, http_base: httpx.URL | None = None) -> str:
    if explicit:
        return explicit.rstrip("/")
    if http_base is not None and str(http_base):
        return str(http_base).rstrip("/")
    return (os.environ.get("EMBER_URL") or DEFAULT_URL).rstrip("/")


def _transport_error(base_url: str, exc: httpx.TransportError) -> ServiceUnavailable:
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return ServiceUnavailable(
            f"cannot reach the Ember server at {base_url} ({exc}): start one with "
            "`ember server`, or set EMBER_URL (or --url) to a running server's URL",
            {"url": base_url},
        )
    if isinstance(exc, httpx.TimeoutException):
        return ServiceUnavailable(
            f"the Ember server at {base_url} did not answer in time ({type(exc).__name__})",
            {"url": base_url},
        )
    return ServiceUnavailable(
        f"the connection to the Ember server at {base_url} failed: {exc!r}", {"url": base_url}
    )


def _timeout(call: Call[Any], current: httpx.Timeout) -> Any:
    """The timeout of one request: the call's own, or the client's raised to the call's
    minimum (a long poll must not time out before the server answers)."""
    if call.timeout is not None:
        return call.timeout
    wanted = call.min_timeout
    if wanted is not None and current.read is not None and current.read < wanted:
        return httpx.Timeout(
            connect=current.connect, read=wanted, write=current.write, pool=current.pool
        )
    return httpx.USE_CLIENT_DEFAULT


def _answer(call: Call[T], response: httpx.Response) -> T:
    if call.check and not response.is_success:
        raise error_from_response(response)
    try:
        return call.parse(response)
    except ValueError as exc:  # not JSON, or not the shape the route promises
        raise EmberError(
            f"unexpected answer to {call.method} {call.path} from {response.request.url.host}: "
            f"{exc}",
            {"http_status": response.status_code},
        ) from exc


class _Route(Generic[P, T]):
    """A client method made from a route description: on a ``Client`` it sends the call and
    returns the result, on an ``AsyncClient`` it returns a coroutine of it. This is what lets
    each route be written once and still be fully typed on both clients."""

    # The client method that carries out what the builder returns.
    _verb = "_send"

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        self._setup(build)

    def _setup(self, build: Callable[P, Any]) -> None:
        self._build = build
        self.__doc__ = build.__doc__
        self._bound = self._signature(bound=True)
        self._unbound = self._signature(bound=False)

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Callable[..., Any]: ...

    @overload
    def __get__(self, obj: Client, owner: type[Any] | None = None) -> Callable[P, T]: ...

    @overload
    def __get__(
        self, obj: AsyncClient, owner: type[Any] | None = None
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        build, verb = self._build, self._verb
        if obj is None:
            # Read on the class (help(), docs): an unbound method taking the client first.
            @wraps(build)
            def unbound(client: Any, /, *args: Any, **kwargs: Any) -> Any:
                return getattr(client, verb)(build(*args, **kwargs))

            unbound.__signature__ = self._unbound  # type: ignore[attr-defined]
            return unbound

        run = getattr(obj, verb)

        @wraps(build)
        def method(*args: P.args, **kwargs: P.kwargs) -> Any:
            return run(build(*args, **kwargs))

        method.__signature__ = self._bound  # type: ignore[attr-defined]
        return method

    def _signature(self, *, bound: bool) -> inspect.Signature:
        """The builder's signature, returning what the call parses to (for help())."""
        signature = inspect.signature(self._build)
        returns = signature.return_annotation
        if isinstance(returns, str) and returns.startswith(("Call[", "Plan[")):
            returns = returns[len("Call[") : -1]
        parameters = list(signature.parameters.values())
        if not bound:
            parameters.insert(0, inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY))
        return signature.replace(parameters=parameters, return_annotation=returns)


class _Plan(_Route[P, T]):
    """A client method made from a ``Plan``: several requests, each depending on the answers
    before it (``wait_task``), driven by the client's ``_run``."""

    _verb = "_run"

    def __init__(self, build: Callable[P, Plan[T]]) -> None:
        self._setup(build)


class _Routes:
    """The methods both clients share, one per route (documented in ``ember.sdk.calls``,
    ``ember.sdk.tasks``, ``ember.sdk.triggers``, ``ember.sdk.layers``,
    ``ember.sdk.builds``, ``ember.sdk.workflows``, ``ember.sdk.secrets`` and
    ``ember.sdk.scaling``)."""

    create_function = _Route(calls.create_function)
    get_function = _Route(calls.get_function)
    list_functions = _Route(calls.list_functions)
    update_function = _Route(calls.update_function)
    update_code = _Route(calls.update_code)
    download_code = _Route(calls.download_code)
    delete_function = _Route(calls.delete_function)
    disable_function = _Route(calls.disable_function)
    enable_function = _Route(calls.enable_function)
    publish_version = _Route(calls.publish_version)
    list_versions = _Route(calls.list_versions)
    get_version = _Route(calls.get_version)
    delete_version = _Route(calls.delete_version)
    set_alias = _Route(calls.set_alias)
    get_alias = _Route(calls.get_alias)
    list_aliases = _Route(calls.list_aliases)
    delete_alias = _Route(calls.delete_alias)
    invoke = _Route(calls.invoke)
    invoke_async = _Route(tasks.invoke_async)
    get_task = _Route(tasks.get_task)
    wait_task = _Plan(tasks.wait_task)
    list_tasks = _Route(tasks.list_tasks)
    stop_task = _Route(tasks.stop_task)
    list_dead_letters = _Route(tasks.list_dead_letters)
    get_dead_letter = _Route(tasks.get_dead_letter)
    redrive = _Route(tasks.redrive)
    pause_function = _Route(tasks.pause_function)
    resume_function = _Route(tasks.resume_function)
    create_trigger = _Route(triggers.create_trigger)
    get_trigger = _Route(triggers.get_trigger)
    list_triggers = _Route(triggers.list_triggers)
    update_trigger = _Route(triggers.update_trigger)
    delete_trigger = _Route(triggers.delete_trigger)
    pause_trigger = _Route(triggers.pause_trigger)
    resume_trigger = _Route(triggers.resume_trigger)
    disable_trigger = _Route(triggers.disable_trigger)
    enable_trigger = _Route(triggers.enable_trigger)
    publish_layer = _Route(layers.publish_layer)
    list_layers = _Route(layers.list_layers)
    list_layer_versions = _Route(layers.list_layer_versions)
    get_layer_version = _Route(layers.get_layer_version)
    delete_layer_version = _Route(layers.delete_layer_version)
    start_build = _Route(builds.start_build)
    get_build = _Route(builds.get_build)
    list_builds = _Route(builds.list_builds)
    wait_build = _Plan(builds.wait_build)
    deploy_workflow = _Route(workflows.deploy_workflow)
    get_workflow = _Route(workflows.get_workflow)
    list_workflows = _Route(workflows.list_workflows)
    delete_workflow = _Route(workflows.delete_workflow)
    run_workflow = _Route(workflows.run_workflow)
    get_execution = _Route(workflows.get_execution)
    list_executions = _Route(workflows.list_executions)
    cancel_execution = _Route(workflows.cancel_execution)
    send_event = _Route(workflows.send_event)
    set_secret = _Route(secrets.set_secret)
    list_secrets = _Route(secrets.list_secrets)
    get_secret = _Route(secrets.get_secret)
    delete_secret = _Route(secrets.delete_secret)
    get_logs = _Route(calls.get_logs)
    get_stats = _Route(calls.get_stats)
    list_invocations = _Route(calls.list_invocations)
    list_instances = _Route(calls.list_instances)
    warm = _Route(calls.warm)
    get_provisioned = _Route(scaling.get_provisioned)
    set_provisioned = _Route(scaling.set_provisioned)
    delete_provisioned = _Route(scaling.delete_provisioned)
    list_provisioned = _Route(scaling.list_provisioned)
    health = _Route(calls.health)
    create_key = _Route(keys.create_key)
    list_keys = _Route(keys.list_keys)
    revoke_key = _Route(keys.revoke_key)
    get_audit = _Route(keys.get_audit)
    list_nodes = _Route(nodes.list_nodes)
    drain_node = _Route(nodes.drain_node)
    undrain_node = _Route(nodes.undrain_node)


class Client(_Routes):
    """A synchronous client of one Ember server.

    Args:
        base_url: the server's URL; ``EMBER_URL`` when None, else ``http://127.0.0.1:8080``.
        timeout: seconds to wait for an answer (``invoke`` can wait longer per call).
        transport: an httpx transport to send requests through (tests use a mock one).
        http: an httpx.Client to use instead of making one (a FastAPI ``TestClient``
            works); its base URL is used when ``base_url`` is None. It is not closed by
            ``close()``.
        api_key: the key sent as ``Authorization: Bearer``; when None, found as
            :func:`find_api_key` says (``EMBER_API_KEY``, a credentials file, the server's
            ``admin.key``).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout: float = 60,
        transport: httpx.BaseTransport | None = None,
        http: httpx.Client | None = None,
        api_key: str | None = None,
    ) -> None:
        if http is not None and transport is not None:
            raise ValueError("give either transport or http, not both")
        self.base_url = _base_url(base_url, http.base_url if http is not None else None)
        self._owned = http is None
        self._http = http or httpx.Client(timeout=timeout, transport=transport)
        self._key = find_api_key(api_key)

    def _send(self, call: Call[T]) -> T:
        try:
            response = self._http.request(
                call.method,
                self.base_url + call.path,
                params=call.params,
                json=call.json,
                content=call.content,
                headers=_with_key(call.headers, self._key),
                timeout=_timeout(call, self._http.timeout),
            )
        except httpx.TransportError as exc:
            raise _transport_error(self.base_url, exc) from exc
        return _answer(call, response)

    def _run(self, plan: Plan[T]) -> T:
        try:
            call = next(plan)
            while True:
                call = plan.send(self._send(call))
        except StopIteration as done:
            result: T = done.value
            return result

    def iter_functions(
        self, *, prefix: str = "", tag: str | None = None, page_size: int | None = None
    ) -> Iterator[FunctionOut]:
        """Every function matching ``prefix`` and ``tag`` (see ``list_functions``), fetching
        page after page as the iteration goes."""
        cursor: str | None = None
        while True:
            page = self._send(
                calls.list_functions(prefix=prefix, tag=tag, limit=page_size, cursor=cursor)
            )
            yield from page.functions
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def close(self) -> None:
        """Close the connections (not those of an ``http`` client passed in)."""
        if self._owned:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"


class AsyncClient(_Routes):
    """An asyncio client of one Ember server: ``Client``'s methods, awaited.

    Args:
        base_url: the server's URL; ``EMBER_URL`` when None, else ``http://127.0.0.1:8080``.
        timeout: seconds to wait for an answer.
        transport: an httpx async transport (``httpx.ASGITransport(app=...)`` in tests).
        http: an httpx.AsyncClient to use instead of making one; not closed by ``aclose()``.
        api_key: as for :class:`Client`.

    Code given as a directory is zipped in the calling thread, before the request is sent.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout: float = 60,
        transport: httpx.AsyncBaseTransport | None = None,
        http: httpx.AsyncClient | None = None,
        api_key: str | None = None,
    ) -> None:
        if http is not None and transport is not None:
            raise ValueError("give either transport or http, not both")
        self.base_url = _base_url(base_url, http.base_url if http is not None else None)
        self._owned = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout, transport=transport)
        self._key = find_api_key(api_key)

    async def _send(self, call: Call[T]) -> T:
        try:
            response = await self._http.request(
                call.method,
                self.base_url + call.path,
                params=call.params,
                json=call.json,
                content=call.content,
                headers=_with_key(call.headers, self._key),
                timeout=_timeout(call, self._http.timeout),
            )
        except httpx.TransportError as exc:
            raise _transport_error(self.base_url, exc) from exc
        return _answer(call, response)

    async def _run(self, plan: Plan[T]) -> T:
        try:
            call = next(plan)
            while True:
                call = plan.send(await self._send(call))
        except StopIteration as done:
            result: T = done.value
            return result

    async def iter_functions(
        self, *, prefix: str = "", tag: str | None = None, page_size: int | None = None
    ) -> AsyncIterator[FunctionOut]:
        """Every function matching ``prefix`` and ``tag``, page after page."""
        cursor: str | None = None
        while True:
            page = await self._send(
                calls.list_functions(prefix=prefix, tag=tag, limit=page_size, cursor=cursor)
            )
            for function in page.functions:
                yield function
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def aclose(self) -> None:
        """Close the connections (not those of an ``http`` client passed in)."""
        if self._owned:
            await self._http.aclose()

    async def close(self) -> None:
        """The same as ``aclose()``."""
        await self.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncClient({self.base_url!r})"
