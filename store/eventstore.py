"""The event store: eventsourcing's recorders with a pydantic mapper, an orjson transcoder and
the store's clock.

One store is one database: the stored events, the clock, the projections' tracking and their
tables. Writes go through :meth:`EventStore.append`, which saves the events of many documents
in ONE transaction (so bulk ingest is fast) while every document gets its own ``recorded_at``
(so a document is atomic on the recorded clock too).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

import orjson
from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, Mapper, StoredEvent, Tracking, Transcoder
from eventsourcing.utils import get_topic, register_topic, resolve_topic

from tollbook.domain.claim import ClaimCorrected, ClaimReported, ClaimRetracted
from tollbook.domain.document import DocumentReceived
from tollbook.domain.incident import IncidentAmended, IncidentDefined, IncidentMerged
from tollbook.domain.time import from_micros, to_micros

if TYPE_CHECKING:
    from pydantic import BaseModel

    from tollbook.domain.events import DomainEvent

# Each event type is stored under the topic it was first stored under: its module path from
# before the folders installed as tollbook.*. They are names now, never a place to import from,
# so code can move without changing a stored event; eventsourcing resolves them as registered.
STORED_TOPICS: dict[type[DomainEvent], str] = {
    event_type: f"domain.{module}:{event_type.__name__}"
    for module, event_types in (("claim", (ClaimReported, ClaimRetracted, ClaimCorrected)),
                                ("incident", (IncidentDefined, IncidentAmended, IncidentMerged)),
                                ("document", (DocumentReceived,)))
    for event_type in event_types
}
for _event_type, _topic in STORED_TOPICS.items():
    register_topic(_topic, _event_type)


class OrjsonTranscoder(Transcoder):
    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj)

    def decode(self, data: bytes) -> Any:
        return orjson.loads(data)


_CLOCK = {"timestamp"}  # an event's own timestamp is a placeholder; the store stamps it


class PydanticMapper(Mapper):
    """Events are stored as their JSON dump; loading validates them again through the model."""

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        return StoredEvent(*self.row(domain_event, None))

    def row(self, event: BaseModel, recorded_at: int | None) -> tuple[UUID, int, str, bytes]:
        """The event as the store keeps it: originator id and version, topic, JSON state."""
        # pydantic writes the JSON itself (a dict in between was most of the cost of saving);
        # the store's clock goes in as the last member, in microseconds.
        state = event.__pydantic_serializer__.to_json(event, exclude_unset=True, exclude=_CLOCK)
        if recorded_at is not None:
            state = b'%s,"timestamp":%d}' % (state[:-1], recorded_at)
        return (event.originator_id, event.originator_version,  # type: ignore[attr-defined]
                STORED_TOPICS[type(event)], state)

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        state = self.transcoder.decode(stored_event.state)
        state["timestamp"] = from_micros(state["timestamp"])
        return resolve_topic(stored_event.topic)(**state)


CONFLICTS = (IntegrityError, sqlite3.IntegrityError)


class Conflict(Exception):
    """Another writer saved events of the same aggregate first; decide again on fresh state."""


class Writing:
    """A batch being written behind (:meth:`EventStore.write_behind`): its documents'
    ``recorded_at`` at once, whether it was stored once settled. Only its owner settles it."""

    def __init__(self, stamps: list[int], future: Future[None]):
        self.stamps = stamps
        self._future = future

    def settle(self) -> None:
        """Waits until the batch is stored; raises :class:`Conflict` if another writer got to
        one of its aggregates first (then nothing of it is stored)."""
        try:
            self._future.result()
        except CONFLICTS as error:
            raise Conflict(str(error)) from error


def _now(write: Callable[[], object]) -> Future[None]:
    """``write`` done at once, as a finished future: a conflict is kept for settle, any other
    error raised here."""
    future: Future[None] = Future()
    try:
        write()
    except CONFLICTS as error:
        future.set_exception(error)
    else:
        future.set_result(None)
    return future


class Ledger(Application):
    name = "tollbook"
    env: ClassVar[dict[str, str]] = {
        "TRANSCODER_TOPIC": get_topic(OrjsonTranscoder),
        "MAPPER_TOPIC": get_topic(PydanticMapper),
    }

    def construct_recorder(self):  # the projections need tracking beside the events
        return self.factory.process_recorder()


@dataclass(frozen=True)
class Location:
    """Where a store lives: a SQLite file, or a PostgreSQL database."""

    url: str

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith(("postgresql://", "postgres://"))

    def environment(self) -> dict[str, str]:
        if self.is_postgres:
            from tollbook.store import pgstore

            return pgstore.environment(self.url)
        path = self.url.removeprefix("sqlite:///").removeprefix("sqlite://")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"no such folder: {folder}")
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": "30",
            "ORIGINATOR_ID_TYPE": "uuid",
        }


class EventStore:
    """The write side's and the read side's one door to the database."""

    def __init__(self, location: Location):
        self.location = location
        self.is_postgres = location.is_postgres
        self._writer: ThreadPoolExecutor | None = None
        self._last_behind: Future[None] | None = None  # the last batch written behind, whoever's
        env = location.environment()
        if self.is_postgres:
            self._open_postgres(env)
        else:
            self.app = Ledger(env=env)
            self.recorder = self.app.recorder
        self.mapper: PydanticMapper = self.app.mapper  # type: ignore[assignment]
        # The log and the projections' positions, named as each recorder names them.
        self.events_table: str = self.recorder.events_table_name
        self.tracking_table: str = getattr(self.recorder, "tracking_table_name", "tracking")
        self.notification_id: str = "notification_id" if self.is_postgres else "rowid"
        if not self.is_postgres:
            with self.transaction() as cursor:
                cursor.execute(
                    "CREATE TABLE IF NOT EXISTS tollbook_clock "
                    "(id INTEGER PRIMARY KEY CHECK (id = 1), last_recorded_at BIGINT NOT NULL)"
                )

    def _open_postgres(self, env: dict[str, str]) -> None:
        from eventsourcing.persistence import PersistenceError

        from tollbook.store import pgstore

        try:
            self.app = Ledger(env=env)
            self.recorder = self.app.recorder
            pgstore.prepare(self.recorder)
        except PersistenceError as error:
            app = getattr(self, "app", None)
            if app is not None:
                app.close()
            reason = pgstore.probe(env) if "connection" in str(error).lower() else " ".join(str(error).split())
            raise pgstore.StoreUnavailable(f"PostgreSQL {pgstore.describe(env)}: {reason}") from None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.shutdown()  # after the batch being written behind, if any
        self.app.close()

    # -- reading aggregates -------------------------------------------------------------

    def events_of(self, aggregate_id: UUID) -> Iterator[DomainEvent]:
        return self.app.events.get(aggregate_id)

    def events_of_many(self, aggregate_ids: Sequence[UUID], chunk: int = 500) -> dict[UUID, list[DomainEvent]]:
        """The events of many aggregates in a few queries (in version order); an aggregate
        with no events is absent from the answer."""
        found: dict[UUID, list[DomainEvent]] = {}
        table = self.recorder.events_table_name
        with self.transaction(write=False) as cursor:
            for start in range(0, len(aggregate_ids), chunk):
                ids = [self._id(aggregate_id) for aggregate_id in aggregate_ids[start:start + chunk]]
                cursor.execute(
                    f"SELECT originator_id, originator_version, topic, state FROM {table}"
                    f" WHERE originator_id IN ({', '.join('?' * len(ids))}) ORDER BY originator_id, originator_version",
                    ids,
                )
                for originator_id, version, topic, state in cursor.fetchall():
                    aggregate_id = originator_id if isinstance(originator_id, UUID) else UUID(originator_id)
                    event = self.mapper.to_domain_event(StoredEvent(aggregate_id, version, topic, state))
                    found.setdefault(aggregate_id, []).append(event)
        return found

    # -- writing ------------------------------------------------------------------------

    def _id(self, aggregate_id: UUID) -> Any:
        """An aggregate id as the events table stores it (uuid on PostgreSQL, hex on SQLite)."""
        return aggregate_id if self.is_postgres else aggregate_id.hex

    @contextmanager
    def transaction(self, *, write: bool = True, durable: bool = True) -> Iterator[Any]:
        """A cursor in one transaction: on SQLite it takes the write lock up front (no upgrade
        deadlocks); on PostgreSQL a read sees one snapshot. Either way the cursor takes SQL with
        ``?`` placeholders and returns tuples. A write is on disk when its commit returns,
        unless ``durable`` is False (for what can be rebuilt from the log: the projections)."""
        if self.is_postgres:
            from tollbook.store import pgstore

            with pgstore.transaction(self.recorder.datastore, write=write, durable=durable) as cursor:
                yield cursor
            return
        cursor, end = self._begin(write=write, durable=durable)
        try:
            yield cursor
        except BaseException:
            end(commit=False)
            raise
        end(commit=True)

    def _begin(self, *, write: bool, durable: bool) -> tuple[sqlite3.Cursor, Callable[..., None]]:
        """SQLite: a cursor in a new transaction, and the function that ends it (commit or roll
        back) and gives its connection back to the pool."""
        if write and self._last_behind is not None:
            wait([self._last_behind])  # the batch still being written behind holds the write lock
        checkout = self.recorder.datastore.get_connection(commit=write)
        connection = checkout.__enter__()
        cursor: sqlite3.Cursor | None = None

        def end(*, commit: bool) -> None:
            try:
                if commit:
                    try:
                        connection.commit()
                    except BaseException:
                        connection.rollback()  # the connection goes back to the pool with no transaction
                        raise
                else:
                    connection.rollback()
            finally:
                if cursor is not None:
                    cursor.close()
                checkout.__exit__(None, None, None)

        try:
            cursor = connection.cursor().sqlite_cursor
            cursor.row_factory = None  # plain tuples: the recorder's sqlite3.Row costs several times more a row
            if write:
                # Not durable: a power cut may take back the last commits, never the file, so
                # the log that shares it stays safe (OFF could leave it corrupt: a checkpoint
                # would not sync the pages it moves into the file before the WAL is reused).
                cursor.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
                # Debian builds SQLite to zero what it frees: a rebuild would write every page of
                # the projections it drops once more. Nothing freed here is secret (the log keeps all).
                cursor.execute("PRAGMA secure_delete=OFF")
                # Writes land all over the indexes (ids are random): in SQLite's default 2 MB
                # page cache a big batch evicts index pages and writes them again.
                cursor.execute("PRAGMA cache_size = -65536")  # KiB
            else:
                # A read gains little from a big cache, and a connection keeps what it cached: a
                # re-import reading receipts all over a big log grew by the cache (issue 11, item 5).
                cursor.execute("PRAGMA cache_size = -2000")  # SQLite's default
            cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except BaseException:
            end(commit=False)
            raise
        return cursor, end

    def append(self, documents: Sequence[Sequence[DomainEvent]]) -> list[int]:
        """Saves every document's events in one transaction; returns each document's
        ``recorded_at`` (microseconds), strictly increasing. Raises :class:`Conflict` if another
        writer got to one of the aggregates first: then nothing of the batch is stored."""
        try:
            return self._append(documents)
        except CONFLICTS as error:
            raise Conflict(str(error)) from error

    def _append(self, documents: Sequence[Sequence[DomainEvent]]) -> list[int]:
        if not documents:
            return []
        with self.transaction() as cursor:
            stamps, rows = self._stamp(cursor, documents)
            self._insert(cursor, rows, stamps[-1])
        return stamps

    def write_behind(self, documents: Sequence[Sequence[DomainEvent]]) -> Writing:
        """Saves like :meth:`append`, but on SQLite returns once the events are stamped and
        serialized (under the write lock), while a background thread inserts and commits them:
        the caller decides its next batch meanwhile, and settles the returned
        :class:`Writing` to learn whether the batch was stored (whole) or refused (a conflict).
        The store's next write waits for it. On PostgreSQL the batch is written at once."""
        if self.is_postgres or not documents:
            stamps: list[int] = []
            return Writing(stamps, _now(lambda: stamps.extend(self._append(documents))))
        cursor, end = self._begin(write=True, durable=True)
        try:
            stamps, rows = self._stamp(cursor, documents)
        except BaseException:
            end(commit=False)
            raise
        write = partial(self._write_behind, cursor, end, rows, stamps[-1])
        try:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="tollbook-write-behind")
            future = self._writer.submit(write)
        except RuntimeError:  # no new threads once the interpreter is shutting down: write it here
            future = _now(write)
        except BaseException:
            end(commit=False)
            raise
        self._last_behind = future
        return Writing(stamps, future)

    def _write_behind(self, cursor: sqlite3.Cursor, end: Callable[..., None], rows: list[tuple], last: int) -> None:
        try:
            self._insert(cursor, rows, last)
        except BaseException:
            end(commit=False)
            raise
        end(commit=True)

    def _stamp(self, cursor: Any, documents: Sequence[Sequence[DomainEvent]]) -> tuple[list[int], list[tuple]]:
        """Each document's recorded_at, and its events as stored rows stamped with it."""
        # On PostgreSQL the clock's row lock serializes writers: recorded_at increases in commit
        # order (SQLite's BEGIN IMMEDIATE already did).
        cursor.execute("SELECT last_recorded_at FROM tollbook_clock WHERE id = 1"
                       + (" FOR UPDATE" if self.is_postgres else ""))
        found = cursor.fetchone()
        last = found[0] if found else 0
        now = to_micros_now()  # read once the lock is held: no earlier writer can stamp later
        stamps, rows = [], []
        row = self.mapper.row
        for events in documents:
            last = max(now, last + 1)
            stamps.append(last)
            rows += [row(event, last) for event in events]
        return stamps, rows

    def _insert(self, cursor: Any, rows: list[tuple], last: int) -> None:
        if self.is_postgres:
            # The recorder's insert takes the EXCLUSIVE table lock first (notification ids in
            # commit order), NOTIFYs listeners on commit, and inserts every event in one statement.
            self.recorder._insert_stored_events(cursor.raw, [StoredEvent(*r) for r in rows])
        else:
            # Many rows a statement: one step of SQLite's, which lets go of Python's lock while
            # it writes (executemany takes the lock back after every row, and a busy main thread
            # makes it wait each time). Under the write lock SQLite hands out consecutive
            # rowids: the notification ids are in commit order.
            per = min(8192, cursor.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // 4)
            for start in range(0, len(rows), per):
                chunk = rows[start:start + per]
                values = [value for i, version, topic, state in chunk for value in (i.hex, version, topic, state)]
                cursor.execute(f"INSERT INTO {self.events_table} VALUES {', '.join(['(?, ?, ?, ?)'] * len(chunk))}",
                               values)
        cursor.execute(
            "INSERT INTO tollbook_clock (id, last_recorded_at) VALUES (1, ?) "
            "ON CONFLICT (id) DO UPDATE SET last_recorded_at = excluded.last_recorded_at",
            (last,),
        )

    def track(self, cursor: Any, projection: str, position: int) -> None:
        """Advances a projection's position in the transaction that wrote its rows."""
        raw = cursor.raw if self.is_postgres else _Cursor(cursor)
        self.recorder._insert_tracking(raw, Tracking(projection, position))

    def drop(self, cursor: Any, name: str) -> None:
        """Drops the table or view ``name`` if there is one."""
        if self.is_postgres:
            cursor.execute("SELECT table_type FROM information_schema.tables"
                           " WHERE table_schema = current_schema() AND table_name = ?", (name,))
        else:
            cursor.execute("SELECT type FROM sqlite_master WHERE name = ? AND type IN ('table', 'view')", (name,))
        row = cursor.fetchone()
        if row is not None:
            cursor.execute(f"DROP {'VIEW' if row[0].upper() == 'VIEW' else 'TABLE'} {name}")

    def lock(self, cursor: Any, name: str) -> None:
        """Holds the store-wide lock ``name`` until the transaction ends. SQLite's write
        transactions are serialized already; on PostgreSQL this is an advisory lock."""
        if self.is_postgres:
            from tollbook.store import pgstore

            pgstore.lock(cursor, name)

    def head(self) -> tuple[int, int | None]:
        """The log's last notification id (0 when empty) and its event's recorded_at."""
        position = self.recorder.max_notification_id() or 0
        if not position:
            return 0, None
        [last] = self.recorder.select_notifications(position, 1)
        return position, orjson.loads(last.state).get("timestamp")

    def read_log(self, cursor: Any, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        """The log's next ``limit`` events after ``after``, in order: (notification id, topic,
        state), read in the caller's transaction (so after any lock it holds)."""
        cursor.execute(f"SELECT {self.notification_id}, topic, state FROM {self.events_table}"
                       f" WHERE {self.notification_id} > ? ORDER BY {self.notification_id} LIMIT ?", (after, limit))
        return cursor.fetchall()

    def first_position(self, cursor: Any, aggregate_id: str) -> int | None:
        """Where the aggregate's first event stands in the log (its notification id)."""
        cursor.execute(f"SELECT {self.notification_id} FROM {self.events_table}"
                       " WHERE originator_id = ? AND originator_version = 1", (self._id(UUID(aggregate_id)),))
        row = cursor.fetchone()
        return row[0] if row else None

    def count_after(self, position: int) -> int:
        """How many events the log holds after ``position``."""
        with self.transaction(write=False) as cursor:
            cursor.execute(f"SELECT count(*) FROM {self.events_table} WHERE {self.notification_id} > ?", (position,))
            return cursor.fetchone()[0]

    def listening(self) -> Any:
        """PostgreSQL: a context whose value ``wait(seconds)`` returns True once events were
        committed (LISTEN/NOTIFY). SQLite has no notifications: None."""
        if not self.is_postgres:
            return nullcontext(None)
        from tollbook.store import pgstore

        return pgstore.listening(self.recorder.datastore, self.recorder.channel_name)


class _Cursor:
    """The shape the eventsourcing recorders expect of a cursor."""

    def __init__(self, raw: sqlite3.Cursor):
        self.raw = raw

    def execute(self, *args: Any) -> None:
        self.raw.execute(*args)

    def fetchone(self) -> Any:
        return self.raw.fetchone()

    def fetchall(self) -> Any:
        return self.raw.fetchall()


def to_micros_now() -> int:
    return to_micros(datetime.now(UTC))


def open_store(url: str) -> EventStore:
    return EventStore(Location(url))
