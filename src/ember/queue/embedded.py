"""The Queue on one SQLite file in $EMBER_HOME: the default backend, for one server.

Events, tasks and dead letters live in one WAL database. What the queue answers a caller
about — a submit (the 202), a stop, a redrive, a saved task — commits with
``synchronous=FULL``, so it survives a power cut. The writes that settle events (claims,
lease extensions, acks, retries, dead letters) commit to the WAL without waiting for the
disk: a killed server keeps them, and a power cut can only undo the last of them, which
makes their events run again — at least once still holds, and nothing accepted is lost.
All writes go through one thread that commits concurrent writes together (see
``_sqlite.py``); each method below is one function applied inside that thread's
transaction, which is what makes it atomic.

Leases: a claim writes a fresh random ``lease_token`` and ``lease_until`` on the event row. An
event is claimable when it is due and ``lease_until`` is unset or in the past, so an event
whose holder died (even across a restart) is delivered again once its lease has run out.
A row that still carries a token when it is claimed was leased before and never settled
(``retry`` and ``postpone`` clear the token): that claim is a redelivery and counts the
attempt that was cut short.
``extend``, ``ack``, ``retry``, ``postpone`` and ``dead_letter`` apply only while the row
still carries the delivery's token: after a lease ran out and another claim took the event,
the old holder's calls do nothing at all (neither the event nor the task is written), so a
slow worker can never undo the work of the one that replaced it.

Fairness: a claim takes, from every function with a due event (less the paused ones), its
oldest due events — of a capped function no more than its cap less its live leases — and
interleaves them by per-function rank: every function's first event, oldest first, then
every function's second, and so on, until ``limit``. One function with a deep backlog
therefore cannot starve another that has a single event.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import sqlite3
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from ember.errors import Conflict, DeadLetterNotFound, InvalidRequest, TaskNotFound
from ember.model.invocation import FINAL_STATUSES, Attempt, DeadLetter, Event, Task
from ember.queue._sqlite import SqliteThreads
from ember.queue.base import Delivery, QueueFigures
from ember.store.base import Page

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,           -- insertion order: breaks ties of due_at (FIFO)
    id TEXT NOT NULL UNIQUE,           -- the task id
    function TEXT NOT NULL,
    qualifier TEXT NOT NULL,
    payload BLOB NOT NULL,
    content_type TEXT NOT NULL,
    enqueued_at REAL NOT NULL,
    attempt INTEGER NOT NULL,
    due_at REAL NOT NULL,
    lease_token TEXT,
    lease_until REAL
);
-- claim walks each function's events in (due_at, seq) order. seq is the rowid, so it is
-- part of every index entry and that order needs no sort.
CREATE INDEX IF NOT EXISTS events_due ON events (function, due_at);
-- Leases per function, for claims that cap a function's events leased at once.
CREATE INDEX IF NOT EXISTS events_leased ON events (function, lease_until)
    WHERE lease_until IS NOT NULL;
-- The oldest event of a function, for its figures. With events_due and events_leased it
-- answers them from indexes alone: a count that reads the rows reads their payloads.
CREATE INDEX IF NOT EXISTS events_enqueued ON events (function, enqueued_at);

CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    function TEXT NOT NULL,
    qualifier TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    idempotency_key TEXT,
    attempts INTEGER NOT NULL,
    started_at REAL,
    finished_at REAL,
    version TEXT,
    result BLOB,
    result_content_type TEXT,
    error TEXT,                        -- JSON
    history TEXT NOT NULL,             -- JSON list of Attempt
    stop_requested INTEGER NOT NULL,
    dead_lettered INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_newest ON tasks (function, created_at);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks (function, status, created_at);
CREATE INDEX IF NOT EXISTS tasks_key ON tasks (function, idempotency_key, created_at)
    WHERE idempotency_key IS NOT NULL;
-- Finished tasks by when they finished, for purging them.
CREATE INDEX IF NOT EXISTS tasks_done ON tasks (updated_at)
    WHERE status IN ('expired', 'failed', 'stopped', 'succeeded');

CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    function TEXT NOT NULL,
    qualifier TEXT NOT NULL,
    payload BLOB NOT NULL,
    content_type TEXT NOT NULL,
    enqueued_at REAL NOT NULL,
    dead_at REAL NOT NULL,
    reason TEXT NOT NULL               -- JSON
);
CREATE INDEX IF NOT EXISTS dead_letters_newest ON dead_letters (dead_at);
CREATE INDEX IF NOT EXISTS dead_letters_function ON dead_letters (function, dead_at);
"""

_TASK_COLUMNS = (
    "id", "function", "qualifier", "status", "created_at", "updated_at", "idempotency_key",
    "attempts", "started_at", "finished_at", "version", "result", "result_content_type",
    "error", "history", "stop_requested", "dead_lettered",
)
_TASK_SELECT = f"SELECT {', '.join(_TASK_COLUMNS)} FROM tasks"
_TASK_INSERT = (f"INSERT INTO tasks ({', '.join(_TASK_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_TASK_COLUMNS))})")
# id and function never change; the rest is the task's state.
_TASK_UPDATE = ("UPDATE tasks SET " + ", ".join(f"{c} = ?" for c in _TASK_COLUMNS[2:])
                + " WHERE id = ?")

_EVENT_COLUMNS = "id, function, qualifier, payload, content_type, enqueued_at, attempt"
_EVENT_INSERT = (f"INSERT INTO events ({_EVENT_COLUMNS}, due_at) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
_DEAD_COLUMNS = "id, function, qualifier, payload, content_type, enqueued_at, dead_at, reason"

# Functions that have events, found by hopping through the index (one lookup per function)
# instead of reading every event.
_FUNCTIONS_WITH_EVENTS = """
WITH RECURSIVE f(name) AS (
    SELECT MIN(function) FROM events
    UNION ALL
    SELECT (SELECT MIN(function) FROM events WHERE function > f.name) FROM f
    WHERE f.name IS NOT NULL
)
SELECT name FROM f WHERE name IS NOT NULL
"""
_READY = """
SELECT seq, due_at, lease_token IS NOT NULL FROM events
WHERE function = ? AND due_at <= ? AND (lease_until IS NULL OR lease_until < ?)
ORDER BY due_at, seq LIMIT ?
"""

_LEASED = "SELECT COUNT(*) FROM events WHERE function = ? AND lease_until >= ?"
# The final statuses as SQL, written as the tasks_done index has them: SQLite uses a
# partial index only for a query whose WHERE repeats the index's.
_FINAL = "(" + ", ".join(f"'{status}'" for status in sorted(FINAL_STATUSES)) + ")"
assert f"WHERE status IN {_FINAL};" in _SCHEMA
# A purge deletes in batches, each its own write, so that other writes go in between.
_PURGE_BATCH = 1000
_PURGE_TASKS = f"""
DELETE FROM tasks WHERE seq IN (
    SELECT seq FROM tasks
    WHERE status IN {_FINAL} AND updated_at < ?
        AND NOT EXISTS (SELECT 1 FROM events WHERE events.id = tasks.id)
    LIMIT ?)
"""
_PURGE_DEAD = """
DELETE FROM dead_letters WHERE seq IN (
    SELECT seq FROM dead_letters WHERE dead_at < ? LIMIT ?)
"""


def _create_tables(conn: sqlite3.Connection) -> None:
    # Statement by statement: executescript would commit the writer's open transaction.
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


def _dumps(value: Any) -> str:
    """JSON text of a task's error and history, a dead letter's reason (attempts are
    dataclasses): orjson, since this runs in the writer thread for every event settled."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _task_values(task: Task) -> tuple[Any, ...]:
    return (
        task.id, task.function, task.qualifier, task.status, task.created_at,
        task.updated_at, task.idempotency_key, task.attempts, task.started_at,
        task.finished_at, task.version, task.result, task.result_content_type,
        None if task.error is None else _dumps(task.error),
        _dumps(task.history),
        int(task.stop_requested), int(task.dead_lettered),
    )


def _task_from(row: tuple[Any, ...]) -> Task:
    (id_, function, qualifier, status, created_at, updated_at, key, attempts, started_at,
     finished_at, version, result, result_type, error, history, stop_requested,
     dead_lettered) = row
    return Task(
        id=id_, function=function, qualifier=qualifier, status=status,
        created_at=created_at, updated_at=updated_at, idempotency_key=key,
        attempts=attempts, started_at=started_at, finished_at=finished_at, version=version,
        result=result, result_content_type=result_type,
        error=None if error is None else orjson.loads(error),
        history=[Attempt(**a) for a in orjson.loads(history)],
        stop_requested=bool(stop_requested), dead_lettered=bool(dead_lettered),
    )


def _update_task(conn: sqlite3.Connection, task: Task) -> None:
    values = _task_values(task)
    conn.execute(_TASK_UPDATE, (*values[2:], task.id))


def _load_task(conn: sqlite3.Connection, task_id: str) -> Task | None:
    row = conn.execute(f"{_TASK_SELECT} WHERE id = ?", (task_id,)).fetchone()
    return None if row is None else _task_from(row)


def _event_from(row: tuple[Any, ...]) -> Event:
    id_, function, qualifier, payload, content_type, enqueued_at, attempt = row
    return Event(id=id_, function=function, qualifier=qualifier, payload=payload,
                 content_type=content_type, enqueued_at=enqueued_at, attempt=attempt)


def _dead_from(row: tuple[Any, ...]) -> DeadLetter:
    id_, function, qualifier, payload, content_type, enqueued_at, dead_at, reason = row
    return DeadLetter(id=id_, function=function, qualifier=qualifier, payload=payload,
                      content_type=content_type, enqueued_at=enqueued_at, dead_at=dead_at,
                      reason=orjson.loads(reason))


def _encode_cursor(at: float, seq: int) -> str:
    raw = json.dumps([at, seq]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, seq = json.loads(raw)
        if not 0 <= int(seq) < 2**63:  # a row id of SQLite: beyond its range is no cursor
            raise ValueError(seq)
        return float(at), int(seq)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidRequest("cursor is not valid: pass the next_cursor of a previous page",
                             {"field": "cursor"}) from exc


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise InvalidRequest(f"limit must be at least 1, not {limit}", {"field": "limit"})


class EmbeddedQueue:
    """The ``Queue`` on a SQLite file at ``path`` (created with its tables on ``start``).

    ``commits`` counts committed write transactions; since concurrent writes share one
    commit, it grows far slower than the number of writes under load.
    """

    def __init__(self, path: Path) -> None:
        self._db = SqliteThreads(path, name="ember-queue")

    @property
    def path(self) -> Path:
        return self._db.path

    @property
    def commits(self) -> int:
        return self._db.commits

    async def start(self) -> None:
        await self._db.start(_create_tables)

    async def close(self) -> None:
        await self._db.close()

    async def submit(
        self, event: Event, *, idempotency_key: str | None, dedup_window_s: float, now: float
    ) -> tuple[Task, bool]:
        task = Task(id=event.id, function=event.function, qualifier=event.qualifier,
                    status="queued", created_at=now, updated_at=now,
                    idempotency_key=idempotency_key)
        task_values = _task_values(task)
        event_values = (event.id, event.function, event.qualifier, event.payload,
                        event.content_type, event.enqueued_at, event.attempt, now)

        def work(conn: sqlite3.Connection) -> tuple[Task, bool]:
            # The check and the insert share the transaction (and the one writer thread), so
            # two concurrent submits with one key cannot both insert.
            if idempotency_key is not None:
                row = conn.execute(
                    f"{_TASK_SELECT} WHERE function = ? AND idempotency_key = ? "
                    "AND created_at >= ? ORDER BY created_at DESC LIMIT 1",
                    (event.function, idempotency_key, now - dedup_window_s),
                ).fetchone()
                if row is not None:
                    return _task_from(row), False
            try:
                conn.execute(_TASK_INSERT, task_values)
                conn.execute(_EVENT_INSERT, event_values)
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"task {event.id} already exists", {"task_id": event.id}) from exc
            return task, True

        return await self._db.write(work)

    async def claim(
        self, limit: int, lease_s: float, *, now: float, paused: frozenset[str] = frozenset(),
        limits: Mapping[str, int] | None = None,
    ) -> list[Delivery]:
        """Lease up to ``limit`` due events, interleaving functions by rank (module doc),
        at most ``limits[f]`` of a function ``f`` leased at once; each delivery gets its
        own random token."""
        if limit < 1:
            return []
        caps = limits or {}

        def work(conn: sqlite3.Connection) -> list[Delivery]:
            ranked: list[tuple[int, float, int, bool]] = []
            for (function,) in conn.execute(_FUNCTIONS_WITH_EVENTS).fetchall():
                if function in paused:
                    continue
                room = limit
                if function in caps:
                    (leased,) = conn.execute(_LEASED, (function, now)).fetchone()
                    room = min(limit, caps[function] - leased)
                    if room < 1:
                        continue
                ready = conn.execute(_READY, (function, now, now, room)).fetchall()
                ranked.extend((rank, due_at, seq, bool(was_leased))
                              for rank, (seq, due_at, was_leased) in enumerate(ready))
            ranked.sort()
            chosen = ranked[:limit]
            if not chosen:
                return []
            # One statement leases them all. Each token is the claim's random part and the
            # row's seq, so tokens are unique per claim and per event. SET sees the row as
            # it was: a row that still had a token was leased before, and counts that attempt.
            base = secrets.token_hex(12)
            marks = ", ".join("?" * len(chosen))
            rows = conn.execute(
                "UPDATE events SET lease_token = ? || seq, lease_until = ?, "
                "attempt = attempt + (lease_token IS NOT NULL) "
                f"WHERE seq IN ({marks}) RETURNING seq, lease_token, {_EVENT_COLUMNS}",
                (f"{base}-", now + lease_s, *(seq for _, _, seq, _ in chosen)),
            ).fetchall()
            leased = {row[0]: row for row in rows}
            ids = [row[2] for row in rows]
            tasks = {row[0]: _task_from(row) for row in conn.execute(
                f"{_TASK_SELECT} WHERE id IN ({', '.join('?' * len(ids))})", ids).fetchall()}
            deliveries = []
            for _, _, seq, redelivered in chosen:
                row = leased[seq]
                event = _event_from(row[2:])
                deliveries.append(Delivery(event, row[1], redelivered, tasks.get(event.id)))
            return deliveries

        return await self._db.write(work, durable=False)

    async def extend(self, delivery: Delivery, lease_s: float, *, now: float) -> None:
        """Lease the event until ``now + lease_s``; nothing if the delivery is stale."""
        def work(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE events SET lease_until = ? WHERE id = ? AND lease_token = ?",
                         (now + lease_s, delivery.event.id, delivery.token))

        await self._db.write(work, durable=False)

    async def ack(self, delivery: Delivery, task: Task) -> None:
        """Remove the event and store ``task``; nothing at all if the delivery is stale."""
        def work(conn: sqlite3.Connection) -> None:
            gone = conn.execute("DELETE FROM events WHERE id = ? AND lease_token = ?",
                                (delivery.event.id, delivery.token))
            if gone.rowcount:
                _update_task(conn, task)

        await self._db.write(work, durable=False)

    async def retry(self, delivery: Delivery, task: Task, *, delay_s: float, now: float) -> None:
        """Attempt + 1, due at ``now + delay_s``, lease released, ``task`` stored; nothing at
        all if the delivery is stale."""
        await self._put_back(delivery, task, delay_s=delay_s, now=now)

    async def postpone(self, delivery: Delivery, *, delay_s: float, now: float) -> None:
        """Due at ``now + delay_s``, lease released, attempt and task untouched; nothing if
        the delivery is stale."""
        await self._put_back(delivery, None, delay_s=delay_s, now=now)

    async def _put_back(self, delivery: Delivery, task: Task | None, *, delay_s: float,
                        now: float) -> None:
        """Release the lease and make the event due after ``delay_s``; with a task, this is a
        retry: the attempt counts and the task is stored."""
        step = 0 if task is None else 1

        def work(conn: sqlite3.Connection) -> None:
            moved = conn.execute(
                "UPDATE events SET attempt = attempt + ?, due_at = ?, lease_token = NULL, "
                "lease_until = NULL WHERE id = ? AND lease_token = ?",
                (step, now + delay_s, delivery.event.id, delivery.token),
            )
            if moved.rowcount and task is not None:
                _update_task(conn, task)

        await self._db.write(work, durable=False)

    async def dead_letter(self, delivery: Delivery, task: Task, reason: dict[str, object],
                          *, now: float) -> None:
        """Move the event to the dead letters and store ``task`` with ``dead_lettered``
        set; nothing at all if the delivery is stale."""
        stored = replace(task, dead_lettered=True)
        reason_json = _dumps(reason)

        def work(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                f"DELETE FROM events WHERE id = ? AND lease_token = ? RETURNING {_EVENT_COLUMNS}",
                (delivery.event.id, delivery.token),
            ).fetchone()
            if row is None:
                return
            event = _event_from(row)
            conn.execute(
                f"INSERT OR REPLACE INTO dead_letters ({_DEAD_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (event.id, event.function, event.qualifier, event.payload, event.content_type,
                 event.enqueued_at, now, reason_json),
            )
            _update_task(conn, stored)

        await self._db.write(work, durable=False)

    async def get_task(self, task_id: str) -> Task:
        task = await self._db.read(lambda conn: _load_task(conn, task_id))
        if task is None:
            raise TaskNotFound(f"task {task_id} not found", {"task_id": task_id})
        return task

    async def list_tasks(
        self, function: str, *, status: str | None = None, limit: int = 100,
        cursor: str | None = None,
    ) -> Page[Task]:
        _check_limit(limit)
        sql = f"SELECT seq, {', '.join(_TASK_COLUMNS)} FROM tasks WHERE function = ?"
        args: list[Any] = [function]
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        if cursor is not None:
            at, seq = _decode_cursor(cursor)
            sql += " AND (created_at, seq) < (?, ?)"  # a row value: an index range
            args += [at, seq]
        sql += " ORDER BY created_at DESC, seq DESC LIMIT ?"
        args.append(limit + 1)
        rows = await self._db.read(lambda conn: conn.execute(sql, args).fetchall())
        tasks = [_task_from(row[1:]) for row in rows[:limit]]
        if len(rows) <= limit:
            return Page(tasks, None)
        last = rows[limit - 1]
        return Page(tasks, _encode_cursor(last[1 + _TASK_COLUMNS.index("created_at")], last[0]))

    async def save_task(self, task: Task) -> None:
        """Store the task's new state. A task that is not stored (its function was deleted
        meanwhile) is not brought back."""
        await self._db.write(lambda conn: _update_task(conn, task))

    async def stop_queued(self, task_id: str, *, now: float) -> Task | None:
        """Stop a task whose event waits (a run-out lease counts as waiting); return None
        while it is leased, a final task unchanged; raise TaskNotFound."""
        def work(conn: sqlite3.Connection) -> Task | None:
            task = _load_task(conn, task_id)
            if task is None:
                raise TaskNotFound(f"task {task_id} not found", {"task_id": task_id})
            if task.final:
                return task
            row = conn.execute("SELECT lease_until FROM events WHERE id = ?",
                               (task_id,)).fetchone()
            if row is not None:
                (lease_until,) = row
                if lease_until is not None and lease_until >= now:
                    return None  # running: the worker has to stop it
                conn.execute("DELETE FROM events WHERE id = ?", (task_id,))
            # Without an event nothing will run the task any more; stopping it is the truth.
            task.status = "stopped"
            task.finished_at = now
            task.updated_at = now
            _update_task(conn, task)
            return task

        return await self._db.write(work)

    async def list_dead_letters(
        self, function: str | None = None, *, limit: int = 100, cursor: str | None = None
    ) -> Page[DeadLetter]:
        _check_limit(limit)
        sql = f"SELECT seq, {_DEAD_COLUMNS} FROM dead_letters WHERE 1"
        args: list[Any] = []
        if function is not None:
            sql += " AND function = ?"
            args.append(function)
        if cursor is not None:
            at, seq = _decode_cursor(cursor)
            sql += " AND (dead_at, seq) < (?, ?)"
            args += [at, seq]
        sql += " ORDER BY dead_at DESC, seq DESC LIMIT ?"
        args.append(limit + 1)
        rows = await self._db.read(lambda conn: conn.execute(sql, args).fetchall())
        letters = [_dead_from(row[1:]) for row in rows[:limit]]
        if len(rows) <= limit:
            return Page(letters, None)
        return Page(letters, _encode_cursor(letters[-1].dead_at, rows[limit - 1][0]))

    async def get_dead_letter(self, task_id: str) -> DeadLetter:
        row = await self._db.read(lambda conn: conn.execute(
            f"SELECT {_DEAD_COLUMNS} FROM dead_letters WHERE id = ?", (task_id,)).fetchone())
        if row is None:
            raise DeadLetterNotFound(f"no dead letter for task {task_id!r}", {"task": task_id})
        return _dead_from(row)

    async def redrive(self, task_id: str, *, now: float) -> Task:
        """Queue the dead letter again (attempt 0, enqueued and due at ``now``); its task
        becomes ``queued`` with no error; raise NotFound."""
        def work(conn: sqlite3.Connection) -> Task:
            row = conn.execute(
                f"DELETE FROM dead_letters WHERE id = ? RETURNING {_DEAD_COLUMNS}", (task_id,)
            ).fetchone()
            if row is None:
                raise DeadLetterNotFound(f"no dead letter for task {task_id!r}", {"task": task_id})
            letter = _dead_from(row)
            conn.execute(_EVENT_INSERT, (letter.id, letter.function, letter.qualifier,
                                         letter.payload, letter.content_type, now, 0, now))
            task = _load_task(conn, task_id)
            if task is None:  # cannot happen unless the file was edited; queue it anyway
                task = Task(id=letter.id, function=letter.function, qualifier=letter.qualifier,
                            status="queued", created_at=now, updated_at=now)
                conn.execute(_TASK_INSERT, _task_values(task))
                return task
            task.status = "queued"
            task.dead_lettered = False
            task.error = None
            task.finished_at = None
            task.updated_at = now
            _update_task(conn, task)
            return task

        return await self._db.write(work)

    async def figures(self, function: str | None = None, *, now: float) -> QueueFigures:
        """Read from indexes only (``events_due``, ``events_leased``, ``events_enqueued``):
        the rows hold the payloads, which a deep queue's stats, polled, would read whole."""
        where, args = ("WHERE function = ?", (function,)) if function is not None else ("", ())
        also = "function = ? AND " if function is not None else ""

        def read(conn: sqlite3.Connection) -> QueueFigures:
            depth, delayed = conn.execute(
                f"SELECT COUNT(*), TOTAL(due_at > ?) FROM events {where}", (now, *args),
            ).fetchone()
            (leased,) = conn.execute(
                f"SELECT COUNT(*) FROM events WHERE {also}lease_until >= ?", (*args, now),
            ).fetchone()
            (oldest,) = conn.execute(f"SELECT MIN(enqueued_at) FROM events {where}",
                                     args).fetchone()
            (dead,) = conn.execute(f"SELECT COUNT(*) FROM dead_letters {where}",
                                   args).fetchone()
            return QueueFigures(depth=depth, leased=int(leased), delayed=int(delayed),
                                oldest_age_s=None if oldest is None else now - oldest,
                                dead_letters=dead)

        return await self._db.read(read)

    async def delete_function(self, function: str) -> None:
        def work(conn: sqlite3.Connection) -> None:
            for table in ("events", "tasks", "dead_letters"):
                conn.execute(f"DELETE FROM {table} WHERE function = ?", (function,))

        await self._db.write(work)

    async def purge(self, before: float) -> int:
        """Delete tasks final since before ``before`` and dead letters older than it, a batch
        per write; return how many."""
        def work(conn: sqlite3.Connection) -> tuple[int, int]:
            tasks = conn.execute(_PURGE_TASKS, (before, _PURGE_BATCH)).rowcount
            dead = conn.execute(_PURGE_DEAD, (before, _PURGE_BATCH)).rowcount
            return tasks, dead

        removed = 0
        while True:
            tasks, dead = await self._db.write(work)
            removed += tasks + dead
            if tasks < _PURGE_BATCH and dead < _PURGE_BATCH:
                return removed
