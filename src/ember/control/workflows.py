"""The lifecycle of workflows: deploy a document as a new revision, read, list, delete; start,
read, list and cancel executions; publish events to the bus. Running them is the engine's
part (``ember.workflows.engine``)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import orjson

from ember.clock import Clock, utcnow
from ember.cluster.changes import WORKFLOW, ChangeBus
from ember.control.functions import checked_name
from ember.control.validation import invalid_spec
from ember.errors import Conflict, InvalidRequest, InvalidSpec, WorkflowNotFound
from ember.model.workflow import EXECUTION_STATUSES, Execution, StepRecord, WorkflowInfo
from ember.store.base import Page
from ember.store.workflows import SqlWorkflowStore
from ember.workflows.dataflow import validate
from ember.workflows.engine import Engine, PublishResult
from ember.workflows.errors import WorkflowError
from ember.workflows.model import Workflow
from ember.workflows.parser import load_workflow, parse_workflow

MAX_DOCUMENT_BYTES = 1024 * 1024


class WorkflowService:
    """Workflow rules: a document is valid before it is saved, names the workflow it is
    deployed as, and a workflow with running executions is deleted only when forced.

    With ``changes``, a deployment or deletion is announced to the other nodes, whose
    engines then follow the new schedule (or none), and theirs reach this node's engine."""

    def __init__(self, store: SqlWorkflowStore, engine: Engine, clock: Clock,
                 changes: ChangeBus | None = None) -> None:
        self._store = store
        self._engine = engine
        self._clock = clock
        self._changes = changes
        self._delete_guards: list[Callable[[str], None]] = []
        if changes is not None:
            changes.follow(WORKFLOW, self.changed_elsewhere)
            changes.on_resync(self.resync)

    async def changed_elsewhere(self, name: str) -> None:
        """Another node deployed or deleted the workflow: follow its schedule now."""
        try:
            info = await self._engine.db(self._store.get_workflow, name)
        except WorkflowNotFound:
            self._engine.deleted(name)
            return
        self._engine.deployed(info)

    async def resync(self) -> None:
        """Changes may have been missed: follow the schedule of every stored workflow, and
        of no other."""
        infos = await self._engine.db(self._store.all_workflows)
        for name in self._engine.scheduled() - {i.name for i in infos}:
            self._engine.deleted(name)
        for info in infos:
            self._engine.deployed(info)

    def guard_delete(self, guard: Callable[[str], None]) -> None:
        """Call ``guard(workflow_name)`` before a workflow is deleted without ``force``; the
        guard raises Conflict to refuse (a trigger targets it)."""
        self._delete_guards.append(guard)

    # -- definitions -------------------------------------------------------------------------

    def deploy(self, name: str, body: bytes | str, content_type: str | None = None,
               ) -> tuple[WorkflowInfo, bool]:
        """Save the document (JSON, or YAML) as the workflow's next revision; (info, True).
        Deploying the latest revision's document again saves nothing: (info, False).

        Raises InvalidSpec (every problem, each with its field path, in
        ``details["errors"]``), PayloadTooLarge is left to the API's body limit."""
        checked_name("workflow", name)
        text = body if isinstance(body, bytes) else body.encode()
        if len(text) > MAX_DOCUMENT_BYTES:
            raise invalid_spec([{"field": "body", "message":
                                 f"the document is over {MAX_DOCUMENT_BYTES} bytes"}])
        workflow = parse_workflow(text, content_type)
        return self._save(name, workflow)

    def deploy_data(self, name: str, document: Any) -> tuple[WorkflowInfo, bool]:
        """:meth:`deploy` for a document already decoded."""
        checked_name("workflow", name)
        return self._save(name, load_workflow(document))

    def _save(self, name: str, workflow: Workflow) -> tuple[WorkflowInfo, bool]:
        if workflow.document.name != name:
            raise invalid_spec([{
                "field": "document.name",
                "message": f"the document is named {workflow.document.name!r}: deploy it as "
                           f"{workflow.document.name!r}, or rename it to {name!r}",
            }])
        definition = workflow.definition
        sha = hashlib.sha256(orjson.dumps(definition, option=orjson.OPT_SORT_KEYS)).hexdigest()
        _, created = self._store.put_workflow(
            name, namespace=workflow.document.namespace, version=workflow.document.version,
            document=definition, sha256=sha, now=utcnow(self._clock),
        )
        info = self._store.get_workflow(name)
        self._engine.deployed(info)
        if created and self._changes is not None:
            self._changes.publish(WORKFLOW, name)
        return info, created

    def get(self, name: str) -> WorkflowInfo:
        return self._store.get_workflow(name)

    def list_workflows(self, *, prefix: str = "", limit: int = 100,
                       cursor: str | None = None) -> Page[WorkflowInfo]:
        return self._store.list_workflows(prefix=prefix, limit=limit, cursor=cursor)

    async def delete(self, name: str, *, force: bool = False) -> None:
        """Delete the workflow and its revisions. Raises Conflict while executions of it
        run, naming how many, or when a guard refuses (see ``guard_delete``), unless
        ``force``: then running executions are cancelled first."""
        await self._engine.db(self._store.get_workflow, name)
        if not force:
            for guard in self._delete_guards:
                await self._engine.db(guard, name)
        active = await self._engine.db(self._store.count_active, name)
        if active and not force:
            raise Conflict(
                f"workflow {name!r} has {active} running execution(s): cancel them, or "
                "delete with force (?force=true, ember workflow delete --force)",
                {"workflow": name, "running": active},
            )
        if active:
            await self._engine.cancel_workflow(name)
        await self._engine.db(self._store.delete_workflow, name)
        self._engine.deleted(name)
        if self._changes is not None:
            await self._engine.db(self._changes.publish, WORKFLOW, name)

    # -- executions --------------------------------------------------------------------------

    async def run(self, name: str, input: Any = None, *, idempotency_key: str | None = None,
                  wait_s: float | None = None) -> tuple[Execution, bool]:
        """Start an execution of the latest revision; (execution, created). A known
        ``idempotency_key`` of this workflow returns that execution, created False. With
        ``wait_s``, wait up to that long for it to finish and return it as it is then.

        Raises WorkflowNotFound, InvalidRequest (key or wait out of range)."""
        if idempotency_key is not None and not 0 < len(idempotency_key) <= 256:
            raise InvalidRequest("the idempotency key must be 1 to 256 characters",
                                 {"field": "X-Ember-Idempotency-Key"})
        if wait_s is not None and not 0 <= wait_s <= 900:
            raise InvalidRequest("wait_s must be 0 to 900", {"field": "wait_s"})
        info = await self._engine.db(self._store.get_workflow, name)
        try:
            validate(info.latest.document, "input", input, "/input")
        except WorkflowError as exc:
            raise invalid_spec([{"field": "input", "message": exc.detail or exc.title or ""}]
                               ) from exc
        execution, created = await self._engine.begin(
            info.latest, input, idempotency_key=idempotency_key)
        if wait_s:
            execution = await self._engine.wait(execution.id, wait_s)
        return execution, created

    async def get_execution(self, execution_id: str, *, wait_s: float | None = None,
                            ) -> Execution:
        """The execution, with its live state when this server runs it. Raises
        ExecutionNotFound."""
        if wait_s:
            return await self._engine.wait(execution_id, wait_s)
        return await self._engine.get(execution_id)

    def steps(self, execution: Execution) -> list[StepRecord]:
        """The execution's task instances, in the order they started."""
        return self._engine.steps(execution)

    def progress(self, execution: Execution) -> list[dict[str, Any]]:
        """Each ``for`` task instance's progress: ``{"key", "path", "total", "done",
        "failed", "failed_items"}`` (a batch run's progress bar)."""
        return self._engine.progress(execution)

    def list_executions(
        self, *, workflow: str | None = None, status: list[str] | None = None,
        limit: int = 100, cursor: str | None = None,
    ) -> Page[Execution]:
        for value in status or []:
            if value not in EXECUTION_STATUSES:
                raise InvalidSpec(
                    f"status must be one of {', '.join(EXECUTION_STATUSES)}",
                    {"field": "status", "value": value},
                )
        if workflow is not None:
            self._store.get_workflow(workflow)
        page = self._store.list_executions(workflow=workflow, status=status or (),
                                           limit=limit, cursor=cursor)
        return Page(self._engine.views(page.items), page.next_cursor)

    async def cancel(self, execution_id: str) -> Execution:
        """Cancel a running or waiting execution: its running function steps are stopped,
        its timers and listens dropped. A finished one is returned unchanged."""
        return await self._engine.cancel(execution_id)

    # -- events ------------------------------------------------------------------------------

    async def publish(self, event: dict[str, Any]) -> PublishResult:
        """Offer a CloudEvent to waiting executions and to schedules (``schedule.on``).
        Raises InvalidSpec when a required attribute is missing or wrong."""
        return await self._engine.publish(event)
