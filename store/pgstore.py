"""PostgreSQL for :mod:`tollbook.store.eventstore`: the URL, the schema, a cursor that takes the
``?`` placeholders SQLite takes, and the store's one-time setup.

Imported only for ``postgresql://`` stores, so a SQLite command never loads psycopg.

What a store creates in its schema (``public`` unless the URL says ``?schema=NAME``):
- ``tollbook_events``: eventsourcing's stored events (primary key ``originator_id,
  originator_version``; ``notification_id`` bigserial with a unique index: the log's order);
- ``tollbook_tracking``: each projection's position in the log;
- ``tollbook_clock``: one row, the last ``recorded_at`` handed out;
- the projections' tables and indexes (``tb_*``, see :mod:`tollbook.projections.schema`);
- the composite type ``stored_event_uuid`` the recorder inserts events through.
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
from psycopg.rows import tuple_row

from tollbook.store import eventsourcing_adapter as library

SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
CLOCK_DDL = ("CREATE TABLE IF NOT EXISTS tollbook_clock "
             "(id INTEGER PRIMARY KEY CHECK (id = 1), last_recorded_at BIGINT NOT NULL)")


def environment(url: str) -> dict[str, str]:
    """eventsourcing's settings for ``postgresql://user[:password]@host[:port]/dbname[?schema=NAME]``."""
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = sorted(set(query) - {"schema"})
    if unknown:
        raise ValueError(f"unknown parameter in the PostgreSQL URL: {', '.join(unknown)} (only schema=NAME)")
    schema = query.get("schema", "") or "public"
    if not SCHEMA_NAME.fullmatch(schema):
        raise ValueError(f"schema: {schema!r} is not a lowercase name (a-z, 0-9, _)")
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise ValueError("the PostgreSQL URL names no database: postgresql://user@host:port/dbname")
    try:
        port = parts.port or 5432
    except ValueError:
        raise ValueError("the PostgreSQL URL's port is not a number") from None
    return {
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": unquote(parts.hostname or "localhost"),
        "POSTGRES_PORT": str(port),
        "POSTGRES_USER": unquote(parts.username) if parts.username else _login(),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_SCHEMA": schema,
        # A command holds one connection, two while it follows the log (LISTEN); the pool
        # grows on demand and keeps the extra ones idle.
        "POSTGRES_POOL_SIZE": "1",
        "POSTGRES_MAX_OVERFLOW": "6",
        "POSTGRES_CONNECT_TIMEOUT": "10",
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "60",
        "ORIGINATOR_ID_TYPE": "uuid",
    }


def describe(env: dict[str, str]) -> str:
    """Where the store is, without its password."""
    return (f"{env['POSTGRES_USER']}@{env['POSTGRES_HOST']}:{env['POSTGRES_PORT']}/{env['POSTGRES_DBNAME']}"
            f" schema {env['POSTGRES_SCHEMA']}")


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "postgres"


def probe(env: dict[str, str]) -> str:
    """Why the server cannot be reached, in the server's or libpq's words."""
    try:
        with psycopg.connect(dbname=env["POSTGRES_DBNAME"], host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"],
                             user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"], connect_timeout=5):
            return "the server answered a direct connection, but not the pool"
    except psycopg.Error as error:
        return " ".join(str(error).split())


@lru_cache(maxsize=1024)
def qmark(sql: str) -> str:
    """``?`` placeholders (SQLite's) as ``%s`` (psycopg's); a literal ``%`` doubled."""
    return sql.replace("%", "%%").replace("?", "%s")


_INSERT = re.compile(r"\s*INSERT INTO (\w+) \(([\w\s,]+)\) VALUES \((\?(?:,\s*\?)*)\)\s*", re.IGNORECASE)


@lru_cache(maxsize=256)
def _copy_statement(sql: str) -> str | None:
    """``COPY table (columns) FROM STDIN`` for ``INSERT INTO table (columns) VALUES (?, …)``."""
    match = _INSERT.fullmatch(sql)
    if match is None:
        return None
    table, columns, marks = match.groups()
    if len(columns.split(",")) != marks.count("?"):
        return None
    return f"COPY {table} ({columns}) FROM STDIN"


class QmarkCursor:
    """A psycopg cursor (tuple rows) that takes the same SQL as the SQLite cursor: every
    projection and query is written once, with ``?`` placeholders."""

    postgres = True  # for the rare query whose SQL differs (projections.queries)

    def __init__(self, raw: psycopg.Cursor):
        self.raw = raw

    def execute(self, sql: str, params: Any = None) -> QmarkCursor:
        if params is None:
            self.raw.execute(sql)
        else:
            self.raw.execute(qmark(sql), params)
        return self

    def executemany(self, sql: str, rows: Any) -> None:
        rows = rows if isinstance(rows, list) else list(rows)
        if not rows:
            return
        copy = _copy_statement(sql)
        if copy is not None and len(rows) > 1:
            # A plain multi-row INSERT goes through COPY: psycopg's executemany sends each row
            # as its own statement, which costs more than the database's work.
            with self.raw.copy(copy) as stream:
                for row in rows:
                    stream.write_row(row)
        else:
            self.raw.executemany(qmark(sql), rows)

    def fetchone(self) -> Any:
        return self.raw.fetchone()

    def fetchall(self) -> list[Any]:
        return self.raw.fetchall()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.raw)

    @property
    def rowcount(self) -> int:
        return self.raw.rowcount


@contextmanager
def transaction(recorder: Any, *, write: bool, durable: bool = True) -> Iterator[QmarkCursor]:
    """One transaction on a pooled connection. A read sees one snapshot throughout (REPEATABLE
    READ), as a SQLite read transaction does, so a query's several SELECTs agree. A write that
    need not be ``durable`` does not wait for the WAL flush at commit."""
    with library.postgres_connection(recorder) as connection, connection.transaction():
        with connection.cursor(row_factory=tuple_row) as raw:
            if not write:
                raw.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            elif not durable:
                raw.execute("SET LOCAL synchronous_commit = off")
            yield QmarkCursor(raw)


def lock(cursor: QmarkCursor, name: str) -> None:
    """Waits for, then holds until the transaction ends, the store's lock called ``name``."""
    cursor.raw.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':' || %s))", (name,))


def prepare(recorder: Any) -> None:
    """Creates the schema, the recorder's tables and the clock once; several processes opening a
    new store at the same time wait for each other (a session advisory lock)."""
    schema = library.schema(recorder)
    with library.postgres_connection(recorder) as connection, connection.cursor(row_factory=tuple_row) as cursor:
        cursor.execute("SELECT to_regclass(%s)", (f"{schema}.tollbook_clock",))
        if cursor.fetchone()[0] is not None:
            return  # created (the clock comes last)
        cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"tollbook-setup:{schema}",))
        try:
            cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            library.create_tables(recorder)
            cursor.execute(CLOCK_DDL)
            cursor.execute("INSERT INTO tollbook_clock (id, last_recorded_at) VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
        finally:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"tollbook-setup:{schema}",))


@contextmanager
def listening(recorder: Any) -> Iterator[Any]:
    """A connection that LISTENs on the recorder's channel; ``wait(seconds)`` returns True when a
    notification arrived (the recorder NOTIFYs in every transaction that inserts events)."""
    channel = library.channel(recorder)
    with library.postgres_connection(recorder) as connection:
        connection.execute(f'LISTEN "{channel}"')

        def wait(seconds: float) -> bool:
            arrived = False
            for _ in connection.notifies(timeout=seconds, stop_after=1):
                arrived = True
            if arrived:  # drain what else is queued: one catch-up answers them all
                for _ in connection.notifies(timeout=0):
                    pass
            return arrived

        try:
            yield wait
        finally:
            try:
                connection.execute(f'UNLISTEN "{channel}"')
            except psycopg.Error:
                pass
