"""Workflows, executions and their journals in the metadata store (the functions' database).

An execution is kept as a snapshot of its state plus a journal of the completions applied
since: :meth:`SqlWorkflowStore.record` appends entries and, now and then, replaces the
snapshot and drops the entries it covers, all in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ember.errors import ExecutionNotFound, WorkflowNotFound
from ember.model.workflow import ACTIVE, Execution, WorkflowInfo, WorkflowRevision
from ember.store.base import Page
from ember.store.schema import (
    execution_journal,
    executions,
    workflow_blobs,
    workflow_events,
    workflow_revisions,
    workflow_schedules,
    workflows,
)
from ember.store.sql import _decode_cursor, _encode_cursor, write_transaction


@dataclass
class Progress:
    """What one execution's transitions changed, written by :meth:`SqlWorkflowStore.record`:
    journal ``entries`` numbered from ``first_seq``, the row's new status and result, and
    (optionally) a new snapshot as of ``seq``."""

    execution: str
    first_seq: int
    entries: list[dict[str, Any]]
    status: str
    updated_at: datetime
    output: Any = None
    error: dict[str, Any] | None = None
    finished_at: datetime | None = None
    snapshot: dict[str, Any] | None = None
    reruns: int | None = None
    blobs: dict[str, bytes] = field(default_factory=dict)  # sha256 -> bytes, referenced

    @property
    def seq(self) -> int:
        return self.first_seq + len(self.entries) - 1


class SqlWorkflowStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # -- workflows ---------------------------------------------------------------------------

    def put_workflow(
        self, name: str, *, namespace: str, version: str, document: dict[str, Any],
        sha256: str, now: datetime,
    ) -> tuple[WorkflowRevision, bool]:
        """Save ``document`` as the workflow's next revision; (revision, True). When it is
        the latest revision's document already, save nothing: (that revision, False)."""
        with write_transaction(self._engine) as conn:
            row = conn.execute(
                sa.select(workflows).where(workflows.c.name == name).with_for_update()
            ).mappings().first()
            if row is not None:
                latest = self._revision(conn, name, row["last_revision"])
                if latest.sha256 == sha256:
                    return latest, False
                number = row["last_revision"] + 1
                conn.execute(workflows.update().where(workflows.c.name == name).values(
                    last_revision=number, updated_at=now))
            else:
                number = 1
                conn.execute(workflows.insert().values(
                    name=name, last_revision=1, created_at=now, updated_at=now))
            revision = WorkflowRevision(name, number, namespace, version, document, sha256, now)
            conn.execute(workflow_revisions.insert().values(
                workflow=name, revision=number, namespace=namespace, version=version,
                document=document, sha256=sha256, created_at=now))
        return revision, True

    def get_workflow(self, name: str) -> WorkflowInfo:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(workflows).where(workflows.c.name == name)
            ).mappings().first()
            if row is None:
                raise _workflow_not_found(name)
            return _info(row, self._revision(conn, name, row["last_revision"]))

    def get_revision(self, name: str, revision: int) -> WorkflowRevision:
        with self._engine.connect() as conn:
            return self._revision(conn, name, revision)

    def list_revisions(self, name: str) -> list[WorkflowRevision]:
        self.get_workflow(name)
        query = (sa.select(workflow_revisions).where(workflow_revisions.c.workflow == name)
                 .order_by(workflow_revisions.c.revision))
        with self._engine.connect() as conn:
            return [_revision(r) for r in conn.execute(query).mappings()]

    def find_revision(self, namespace: str, name: str, version: str) -> WorkflowRevision:
        """The latest revision of workflow ``name`` whose document has this namespace and
        version (``run: workflow``). Raises WorkflowNotFound."""
        query = (
            sa.select(workflow_revisions)
            .where(workflow_revisions.c.workflow == name,
                   workflow_revisions.c.namespace == namespace,
                   workflow_revisions.c.version == version)
            .order_by(workflow_revisions.c.revision.desc()).limit(1)
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            raise WorkflowNotFound(
                f"no revision of workflow {name!r} has namespace {namespace!r} and version "
                f"{version!r}", {"workflow": name, "namespace": namespace, "version": version})
        return _revision(row)

    def list_workflows(
        self, *, prefix: str = "", limit: int = 100, cursor: str | None = None,
    ) -> Page[WorkflowInfo]:
        query = sa.select(workflows).order_by(workflows.c.name).limit(limit + 1)
        if prefix:
            query = query.where(workflows.c.name.startswith(prefix, autoescape=True))
        if cursor:
            query = query.where(workflows.c.name > _decode_cursor(cursor))
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
            found = [_info(r, self._revision(conn, r["name"], r["last_revision"]))
                     for r in rows[:limit]]
        more = len(rows) > limit
        return Page(found, _encode_cursor(found[-1].name) if more else None)

    def all_workflows(self) -> list[WorkflowInfo]:
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(workflows)).mappings().all()
            return [_info(r, self._revision(conn, r["name"], r["last_revision"])) for r in rows]

    def delete_workflow(self, name: str) -> None:
        with write_transaction(self._engine) as conn:
            conn.execute(workflow_schedules.delete().where(workflow_schedules.c.workflow == name))
            conn.execute(workflow_revisions.delete().where(workflow_revisions.c.workflow == name))
            result = conn.execute(workflows.delete().where(workflows.c.name == name))
        if result.rowcount == 0:
            raise _workflow_not_found(name)

    def _revision(self, conn: Connection, name: str, number: int) -> WorkflowRevision:
        row = conn.execute(sa.select(workflow_revisions).where(
            workflow_revisions.c.workflow == name, workflow_revisions.c.revision == number,
        )).mappings().first()
        if row is None:
            raise WorkflowNotFound(f"workflow {name!r} has no revision {number}",
                                   {"workflow": name, "revision": number})
        return _revision(row)

    # -- executions --------------------------------------------------------------------------

    def create_execution(self, execution: Execution, blobs: dict[str, bytes] | None = None,
                         ) -> tuple[Execution, bool]:
        """Save a new execution with its first snapshot (and the blobs it refers to);
        (it, True). When one of the same workflow has the same idempotency key, save
        nothing: (that one, False)."""
        with write_transaction(self._engine) as conn:
            if execution.idempotency_key is not None:
                row = conn.execute(sa.select(executions).where(
                    executions.c.workflow == execution.workflow,
                    executions.c.idempotency_key == execution.idempotency_key,
                )).mappings().first()
                if row is not None:
                    return _execution(row), False
            conn.execute(executions.insert().values(**_execution_row(execution)))
            _add_blobs(conn, execution.id, blobs or {})
        return execution, True

    def blobs(self, execution_id: str, digests: set[str]) -> dict[str, bytes]:
        """The execution's blobs of these sha256 digests."""
        query = sa.select(workflow_blobs.c.sha256, workflow_blobs.c.data).where(
            workflow_blobs.c.execution == execution_id,
            workflow_blobs.c.sha256.in_(sorted(digests)))
        with self._engine.connect() as conn:
            return {row[0]: bytes(row[1]) for row in conn.execute(query)}

    def get_execution(self, execution_id: str) -> Execution:
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(executions).where(executions.c.id == execution_id)
            ).mappings().first()
        if row is None:
            raise ExecutionNotFound(f"execution {execution_id!r} does not exist",
                                    {"execution": execution_id})
        return _execution(row)

    def list_executions(
        self, *, workflow: str | None = None, status: Sequence[str] = (), limit: int = 100,
        cursor: str | None = None,
    ) -> Page[Execution]:
        """Newest first (ids grow with time)."""
        query = sa.select(executions).order_by(executions.c.id.desc()).limit(limit + 1)
        if workflow is not None:
            query = query.where(executions.c.workflow == workflow)
        if status:
            query = query.where(executions.c.status.in_(list(status)))
        if cursor:
            query = query.where(executions.c.id < _decode_cursor(cursor))
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        found = [_execution(r) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(found, _encode_cursor(found[-1].id) if more else None)

    def active_executions(self) -> list[Execution]:
        """Every running or waiting execution, oldest first: what a starting server resumes."""
        query = (sa.select(executions).where(executions.c.status.in_(sorted(ACTIVE)))
                 .order_by(executions.c.id))
        with self._engine.connect() as conn:
            return [_execution(r) for r in conn.execute(query).mappings()]

    def count_active(self, workflow: str) -> int:
        query = sa.select(sa.func.count()).select_from(executions).where(
            executions.c.workflow == workflow, executions.c.status.in_(sorted(ACTIVE)))
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def journal(self, execution_id: str, after_seq: int) -> list[dict[str, Any]]:
        query = (sa.select(execution_journal.c.entry)
                 .where(execution_journal.c.execution == execution_id,
                        execution_journal.c.seq > after_seq)
                 .order_by(execution_journal.c.seq))
        with self._engine.connect() as conn:
            return [row[0] for row in conn.execute(query)]

    def record(self, batch: Iterable[Progress]) -> None:
        """Write the progress of several executions in one transaction."""
        with write_transaction(self._engine) as conn:
            entries = [
                {"execution": p.execution, "seq": p.first_seq + i, "entry": entry}
                for p in batch for i, entry in enumerate(p.entries)
            ]
            if entries:
                conn.execute(execution_journal.insert(), entries)
            for p in batch:
                _add_blobs(conn, p.execution, p.blobs)
                values: dict[str, Any] = {
                    "status": p.status, "updated_at": p.updated_at, "seq": p.seq,
                    "output": p.output, "error": p.error, "finished_at": p.finished_at,
                }
                if p.reruns is not None:
                    values["reruns"] = p.reruns
                if p.snapshot is not None:
                    values["state"] = p.snapshot
                    values["snapshot_seq"] = p.seq
                conn.execute(executions.update().where(executions.c.id == p.execution)
                             .values(**values))
                if p.snapshot is not None:
                    conn.execute(execution_journal.delete().where(
                        execution_journal.c.execution == p.execution,
                        execution_journal.c.seq <= p.seq))

    def purge_executions(self, before: datetime) -> int:
        """Delete finished executions that ended before ``before``."""
        with write_transaction(self._engine) as conn:
            old = sa.select(executions.c.id).where(
                executions.c.finished_at.is_not(None), executions.c.finished_at < before)
            conn.execute(execution_journal.delete().where(execution_journal.c.execution.in_(old)))
            conn.execute(workflow_blobs.delete().where(workflow_blobs.c.execution.in_(old)))
            result = conn.execute(executions.delete().where(
                executions.c.finished_at.is_not(None), executions.c.finished_at < before))
        return int(result.rowcount or 0)

    # -- the event bus's retained events, schedules ------------------------------------------

    def retain_event(self, key: str, event: dict[str, Any], now: datetime) -> bool:
        """Keep an event for the retention window; False when one with its key is kept."""
        with write_transaction(self._engine) as conn:
            if conn.execute(sa.select(workflow_events.c.key).where(
                    workflow_events.c.key == key)).first():
                return False
            conn.execute(workflow_events.insert().values(key=key, event=event, received_at=now))
        return True

    def take_event(self, key: str, now: datetime) -> None:
        """An execution or a schedule took the event: it is no longer offered, and its key
        stays until it is purged, so that a redelivery of it is known as a duplicate."""
        with write_transaction(self._engine) as conn:
            conn.execute(workflow_events.update().where(workflow_events.c.key == key)
                         .values(taken_at=now))

    def retained_events(self, since: datetime) -> list[dict[str, Any]]:
        query = (sa.select(workflow_events.c.event)
                 .where(workflow_events.c.received_at >= since,
                        workflow_events.c.taken_at.is_(None))
                 .order_by(workflow_events.c.received_at))
        with self._engine.connect() as conn:
            return [row[0] for row in conn.execute(query)]

    def purge_events(self, before: datetime) -> int:
        with write_transaction(self._engine) as conn:
            result = conn.execute(
                workflow_events.delete().where(workflow_events.c.received_at < before))
        return int(result.rowcount or 0)

    def schedule_state(self, workflow: str) -> dict[str, Any] | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(workflow_schedules.c.state).where(
                workflow_schedules.c.workflow == workflow)).first()
        return None if row is None else dict(row[0])

    def put_schedule_state(self, workflow: str, state: dict[str, Any], now: datetime) -> None:
        with write_transaction(self._engine) as conn:
            updated = conn.execute(workflow_schedules.update().where(
                workflow_schedules.c.workflow == workflow).values(state=state, updated_at=now))
            if updated.rowcount == 0:
                conn.execute(workflow_schedules.insert().values(
                    workflow=workflow, state=state, updated_at=now))


def _add_blobs(conn: Connection, execution: str, blobs: dict[str, bytes]) -> None:
    if not blobs:
        return
    kept = {row[0] for row in conn.execute(sa.select(workflow_blobs.c.sha256).where(
        workflow_blobs.c.execution == execution,
        workflow_blobs.c.sha256.in_(sorted(blobs))))}
    new = [{"execution": execution, "sha256": digest, "data": data}
           for digest, data in blobs.items() if digest not in kept]
    if new:
        conn.execute(workflow_blobs.insert(), new)


def _workflow_not_found(name: str) -> WorkflowNotFound:
    return WorkflowNotFound(f"workflow {name!r} does not exist", {"workflow": name})


def _revision(row: Any) -> WorkflowRevision:
    return WorkflowRevision(
        workflow=row["workflow"], revision=row["revision"], namespace=row["namespace"],
        version=row["version"], document=row["document"], sha256=row["sha256"],
        created_at=row["created_at"],
    )


def _info(row: Any, latest: WorkflowRevision) -> WorkflowInfo:
    return WorkflowInfo(name=row["name"], created_at=row["created_at"],
                        updated_at=row["updated_at"], latest=latest)


_EXECUTION_FIELDS = (
    "id", "workflow", "revision", "status", "input", "output", "error", "idempotency_key",
    "parent", "parent_action", "state", "snapshot_seq", "seq", "reruns", "created_at",
    "updated_at", "finished_at",
)


def _execution_row(e: Execution) -> dict[str, Any]:
    return {name: getattr(e, name) for name in _EXECUTION_FIELDS}


def _execution(row: Any) -> Execution:
    return Execution(**{name: row[name] for name in _EXECUTION_FIELDS})
