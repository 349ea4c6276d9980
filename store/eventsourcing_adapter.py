"""Every call Tollbook makes into the ``eventsourcing`` library, private ones included.

Tollbook uses the library for its storage layer only: the recorders' configuration, their table
DDL (the events table, the tracking table and its ``__migration__`` row), their connection
pools, the channel PostgreSQL listeners wait on, the tracking
insert that refuses a position already passed, notification selection, and the topic registry
that names stored events. It does not use aggregates, ``Application``, ``save``, the library's
mapper, or the projection runner: Tollbook decides events itself (``commands/``), serializes
and stamps them itself (:mod:`tollbook.store.eventstore`) and projects the log itself
(``projections/``). ``tests/test_eventsourcing_adapter.py`` pins what this module relies on, so
an upgrade of the library that changes it fails there first.

PostgreSQL's parts (``eventsourcing.postgres``, psycopg) are imported only for a PostgreSQL store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eventsourcing.persistence import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    InternalError,
    OperationalError,
    PersistenceError,
    Tracking,
)
from eventsourcing.sqlite import SQLiteFactory
from eventsourcing.utils import Environment, register_topic, resolve_topic

# The library names PostgreSQL's tables after the application: tollbook_events, tollbook_tracking.
NAME = "tollbook"
MIGRATION = "__migration__"  # the tracking row the library keeps for its table's own layout

# What a write refused because another writer stored the same aggregate version (or tracking
# position) first raises: the library's error, or SQLite's own from Tollbook's direct inserts.
CONFLICTS = (IntegrityError, sqlite3.IntegrityError)


def is_store_failure(error: BaseException) -> bool:
    """Whether ``error`` says the database itself cannot be used (cannot be opened or reached,
    damaged, read-only, full, locked too long): not a conflict, not a statement's mistake. The
    library turns psycopg's errors and some of sqlite3's into its own."""
    if isinstance(error, CONFLICTS):
        return False
    return (isinstance(error, (sqlite3.OperationalError, InterfaceError, OperationalError, InternalError))
            or type(error) in (sqlite3.DatabaseError, DatabaseError, PersistenceError)
            or (isinstance(error, PersistenceError) and "permission denied" in str(error)))


def is_disk_full(error: BaseException) -> bool:
    text = str(error)
    return "database or disk is full" in text or "No space left on device" in text


def register_topics(topics: dict[type, str]) -> None:
    """Each class resolves from its fixed stored topic name (whatever module it lives in)."""
    for cls, topic in topics.items():
        register_topic(topic, cls)


# -- opening ---------------------------------------------------------------------------------

def open_sqlite(path: str, lock_timeout: int) -> Any:
    """The recorder of the SQLite file at ``path``: events table ``stored_events``, tracking
    table ``tracking``. It creates nothing: :func:`create_sqlite_tables` does, under the write lock."""
    factory = SQLiteFactory(Environment(NAME, {
        "SQLITE_DBNAME": path,
        "SQLITE_LOCK_TIMEOUT": str(lock_timeout),
        "ORIGINATOR_ID_TYPE": "uuid",
        # The library's own creation reads, then writes in another transaction: processes opening
        # a new store at once raced it ("Failed to record tracking for __migration__ 1").
        "CREATE_TABLE": "no",
    }))
    return factory.process_recorder()


def open_postgres(settings: dict[str, str]) -> Any:
    """The recorder of a PostgreSQL store (``settings``: POSTGRES_* keys), whose every connection
    has ``search_path`` set to the store's schema so Tollbook's own tables live beside the events.
    It creates nothing: :func:`create_tables` does."""
    from eventsourcing.postgres import PostgresFactory

    factory = PostgresFactory(Environment(NAME, {**settings, "CREATE_TABLE": "no"}))
    # The pool opens on first use, after this: every connection it makes gets the option.
    factory.datastore.pool.kwargs["options"] = f"-c search_path={factory.datastore.schema}"
    return factory.process_recorder()


def close(recorder: Any) -> None:
    recorder.datastore.close()


def schema(recorder: Any) -> str:
    """A PostgreSQL store's schema."""
    return recorder.datastore.schema


def channel(recorder: Any) -> str:
    """The channel a PostgreSQL recorder NOTIFYs when it inserts events."""
    return recorder.channel_name


def create_sqlite_tables(recorder: Any, cursor: sqlite3.Cursor) -> None:
    """The recorder's tables and the tracking table's ``__migration__`` row, in the caller's
    transaction (which holds the write lock, so two processes cannot both create them)."""
    for statement in recorder.create_table_statements:
        cursor.execute(statement)
    cursor.execute("SELECT 1 FROM tracking WHERE application_name = ?", (MIGRATION,))
    if cursor.fetchone() is None:
        recorder._insert_tracking(_Cursor(cursor), Tracking(MIGRATION, 1))


def create_tables(recorder: Any) -> None:
    """PostgreSQL: the recorder's tables, function and composite type, in its own transaction
    (the caller serializes processes with an advisory lock)."""
    recorder.create_table()


# -- transactions ----------------------------------------------------------------------------

@contextmanager
def sqlite_connection(recorder: Any, *, write: bool) -> Iterator[sqlite3.Connection]:
    """A connection from the recorder's pool (in autocommit mode: the caller BEGINs). The pool
    lets one writer at a time have a connection in this process, readers beside it."""
    with recorder.datastore.get_connection(commit=write) as connection:
        yield connection._sqlite_conn


@contextmanager
def postgres_connection(recorder: Any) -> Iterator[Any]:
    """A psycopg connection from the recorder's pool, with the library's composite types registered."""
    with recorder.datastore.get_connection() as connection:
        yield connection


# -- writing and reading the log -------------------------------------------------------------

def insert_tracking(recorder: Any, cursor: Any, name: str, position: int) -> None:
    """Advances tracking ``name`` to ``position`` in the caller's transaction (``cursor``:
    sqlite3's or psycopg's); raises IntegrityError if it stands there or beyond already."""
    raw = cursor if not isinstance(cursor, sqlite3.Cursor) else _Cursor(cursor)
    recorder._insert_tracking(raw, Tracking(name, position))


def max_notification_id(recorder: Any) -> int:
    """The log's last notification id, 0 when empty."""
    return recorder.max_notification_id() or 0


def last_state(recorder: Any, position: int) -> bytes:
    """The state (JSON) of the event at notification id ``position``."""
    [notification] = recorder.select_notifications(position, 1)
    return notification.state


class _Cursor:
    """The shape the library's recorders expect of a cursor, over sqlite3's."""

    def __init__(self, raw: sqlite3.Cursor):
        self.raw = raw

    def execute(self, *args: Any) -> None:
        self.raw.execute(*args)

    def fetchone(self) -> Any:
        return self.raw.fetchone()

    def fetchall(self) -> Any:
        return self.raw.fetchall()
