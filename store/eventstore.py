"""The event store: eventsourcing's recorders (through :mod:`tollbook.store.eventsourcing_adapter`),
events stored as their pydantic JSON (compressed: see encode_state), and the store's clock.

One store is one database: the stored events, the clock, the projections' tracking and their
tables. Writes go through :meth:`EventStore.append`, which saves the events of many documents
in ONE transaction (so bulk ingest is fast) while every document gets its own ``recorded_at``
(so a document is atomic on the recorded clock too).
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from uuid import UUID

import orjson
import zstandard

from tollbook.domain.time import from_micros, to_micros
from tollbook.store import eventsourcing_adapter as library

if TYPE_CHECKING:
    from pydantic import BaseModel

    from tollbook.domain.events import DomainEvent
    from tollbook.store.log import Batch

# Each event type is stored under a fixed topic: its module path from before the folders
# installed as tollbook.* (for the types of that time). They are names now, never a place to
# import from, written out so that moving or renaming a class changes no stored event;
# eventsourcing resolves them as registered (event_types). The part after the colon is the
# type's stable name in the log and its Merkle leaves (store/leaf.py). Keyed by the class's
# name, so that reading the store needs no model: a query's process never imports pydantic.
STORED_TOPICS: dict[str, str] = {
    "ClaimReported": "domain.claim:ClaimReported",
    "ClaimRetracted": "domain.claim:ClaimRetracted",
    "ClaimCorrected": "domain.claim:ClaimCorrected",
    "IncidentDefined": "domain.incident:IncidentDefined",
    "IncidentAmended": "domain.incident:IncidentAmended",
    "IncidentMerged": "domain.incident:IncidentMerged",
    "IncidentAbsorbed": "domain.incident:IncidentAbsorbed",
    "DocumentReceived": "domain.document:DocumentReceived",
    "ReleaseRecorded": "domain.release:ReleaseRecorded",
}


@lru_cache(maxsize=1)
def event_types() -> dict[str, type[DomainEvent]]:
    """The domain's event types by name, registered under their stored topics: imported when an
    event is first loaded as a model (the write side), not by a process that only reads."""
    from tollbook.domain.claim import ClaimCorrected, ClaimReported, ClaimRetracted
    from tollbook.domain.document import DocumentReceived
    from tollbook.domain.incident import IncidentAbsorbed, IncidentAmended, IncidentDefined, IncidentMerged
    from tollbook.domain.release import ReleaseRecorded

    types: dict[str, type[DomainEvent]] = {cls.__name__: cls for cls in (
        ClaimReported, ClaimRetracted, ClaimCorrected, IncidentDefined, IncidentAmended, IncidentMerged,
        IncidentAbsorbed, DocumentReceived, ReleaseRecorded)}
    library.register_topics({cls: STORED_TOPICS[name] for name, cls in types.items()})
    return types

_CLOCK = {"timestamp"}  # an event's own timestamp is a placeholder; the store stamps it
# The compact encoding (issue 14): a state leaves out its originator id and version (the row's
# own columns, 79 bytes an event) and, of a claim reported with every member set (as the handlers
# make them), the members that are None. Decoding gives every member back; a state stored before
# (or of a claim with members unset) keeps the id and version, and reads as it always did.
_LEFT_OUT = {"timestamp", "originator_id", "originator_version"}
# By type name: the members whose default is None, in the model's order (tests/test_ledger.py
# checks them against the model).
NONE_LEFT_OUT: dict[str, tuple[str, ...]] = {"ClaimReported": ("best", "qualifier", "quote", "note")}
_NONE_OF_TOPIC = {STORED_TOPICS[name]: names for name, names in NONE_LEFT_OUT.items()}


def is_compact(event: BaseModel) -> bool:
    """Whether the event is stored in the compact encoding: all but one that has members unset
    whose None the decoding would give back."""
    return type(event).__name__ not in NONE_LEFT_OUT or len(event.model_fields_set) == len(event.__dict__) - 1


_HEX_ID = re.compile("[0-9a-f]{32}")  # an aggregate id as SQLite holds it

# States are stored compressed (issue 14, the store's bytes: a GED row's claim from 300 to about 55
# bytes): zstd with a dictionary trained on stored events, which is part of the format for good
# (store/states-1.zdict), behind a first byte that names it. A JSON state (stored by earlier
# code) starts with "{" and reads as it always did. The leaves are made from the decoded
# fields, so the encoding changes no hash and the log prints the same lines.
_ZSTD_DICTIONARY_1 = b"\x01"
_LARGEST_STATE = 64 << 20  # what a damaged frame may claim to hold before it is refused
_codecs = threading.local()  # zstd's (de)compressors are not to be shared between threads


@lru_cache(maxsize=1)
def _dictionary() -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(
        (Path(__file__).parent / "states-1.zdict").read_bytes(), dict_type=zstandard.DICT_TYPE_FULLDICT)


def encode_state(state: bytes) -> bytes:
    """A state's JSON as the store keeps it."""
    compressor = getattr(_codecs, "compressor", None)
    if compressor is None:
        compressor = _codecs.compressor = zstandard.ZstdCompressor(
            dict_data=_dictionary(), compression_params=zstandard.ZstdCompressionParameters.from_level(
                3, format=zstandard.FORMAT_ZSTD1_MAGICLESS, write_checksum=0, write_dict_id=0, write_content_size=1))
    return _ZSTD_DICTIONARY_1 + compressor.compress(state)


def state_json(state: bytes) -> bytes:
    """A stored state's JSON, whichever way it was stored; raises ValueError if it cannot be had."""
    if state[:1] != _ZSTD_DICTIONARY_1:
        return state
    decompressor = getattr(_codecs, "decompressor", None)
    if decompressor is None:
        decompressor = _codecs.decompressor = zstandard.ZstdDecompressor(
            dict_data=_dictionary(), format=zstandard.FORMAT_ZSTD1_MAGICLESS)
    try:
        params = zstandard.get_frame_parameters(state[1:], format=zstandard.FORMAT_ZSTD1_MAGICLESS)
        if not 0 <= params.content_size <= _LARGEST_STATE:
            raise ValueError(f"a compressed state claiming {params.content_size} bytes")
        return decompressor.decompress(state[1:])
    except zstandard.ZstdError as error:
        raise ValueError(f"a compressed state that does not decompress ({error})") from None


def id_text(value: Any) -> str:
    """An aggregate id as str(UUID) writes it; raises ValueError when it is none."""
    if type(value) is str and _HEX_ID.fullmatch(value):  # SQLite's hex: no UUID object needed
        return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"
    return str(value if isinstance(value, UUID) else UUID(str(value)))


def decode_state(originator_id: Any, originator_version: int, topic: str, state: bytes, *,
                 id_as_text: bool = True) -> dict[str, Any]:
    """A stored event's members, its originator id (text with dashes, or as given) and version
    among them, whichever way it was stored."""
    event = orjson.loads(state_json(state))
    if type(event) is dict and "originator_id" not in event:
        event["originator_id"] = id_text(originator_id) if id_as_text else originator_id
        event["originator_version"] = originator_version
        for name in _NONE_OF_TOPIC.get(topic, ()):
            event.setdefault(name, None)
    return event


class PydanticMapper:
    """Events are stored as their JSON dump with the store's clock; loading validates them again
    through the model. (Not the library's mapper: every event is stamped as it is stored.)"""

    def row(self, event: BaseModel, recorded_at: int) -> tuple[UUID, int, str, bytes]:
        """The event as the store keeps it: originator id and version, topic, JSON state."""
        # pydantic writes the JSON itself (a dict in between was most of the cost of saving);
        # the store's clock goes in as the last member, in microseconds.
        compact = is_compact(event)
        state = event.__pydantic_serializer__.to_json(
            event, exclude_unset=True, exclude=_LEFT_OUT if compact else _CLOCK,
            exclude_none=compact and type(event).__name__ in NONE_LEFT_OUT)
        state = b'%s,"timestamp":%d}' % (state[:-1], recorded_at)
        return (event.originator_id, event.originator_version,  # type: ignore[attr-defined]
                STORED_TOPICS[type(event).__name__], encode_state(state))

    def to_domain_event(self, originator_id: Any, originator_version: int, topic: str, state: bytes) -> Any:
        # The row's id as it is (a UUID when loaded for deciding): not made text to be parsed again.
        values = decode_state(originator_id, originator_version, topic, state, id_as_text=False)
        values["timestamp"] = from_micros(values["timestamp"])
        event_types()  # registered
        return library.resolve_topic(topic).model_validate(values)


CONFLICTS = library.CONFLICTS


class StoreUnusable(OSError):
    """The store cannot be used: not a store, damaged, read-only, full, or not answering. The
    message says why in one line (where is the caller's to say: it knows what it opened)."""


class StoreFull(StoreUnusable):
    """The disk (or the database server's) is full: what was being written is not stored."""


READ_ONLY = "Tollbook writes the store's file, and its -wal and -shm files beside it"
_HINTS = (  # what SQLite says, and what the user can do about it
    ("file is not a database", "the SQLite file is damaged (or not SQLite)"),
    ("malformed", "the SQLite file is damaged"),
    ("readonly", f"read-only: {READ_ONLY}"),
    ("unable to open database file", "cannot open the file, or make its -wal and -shm files beside it"),
    ("database is locked", "another process held the store's write lock for over 30 s"),
)


def unusable(error: BaseException) -> StoreUnusable | None:
    """``error`` as :class:`StoreUnusable` if it says the store cannot be used, else None."""
    if isinstance(error, StoreUnusable):
        return error
    if not library.is_store_failure(error):
        return None
    reason = " ".join(str(error).split()) or type(error).__name__
    if library.is_disk_full(error):
        return StoreFull(f"the disk is full ({reason})")
    hint = next((hint for marker, hint in _HINTS if marker in reason), None)
    return StoreUnusable(f"{hint} ({reason})" if hint else reason)


@contextmanager
def _failing_as_unusable() -> Iterator[None]:
    try:
        yield
    except Exception as error:
        failure = unusable(error)
        if failure is None or failure is error:
            raise
        raise failure from error


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
            with _failing_as_unusable():
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


@dataclass(frozen=True)
class Location:
    """Where a store lives: a SQLite file, or a PostgreSQL database."""

    url: str

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith(("postgresql://", "postgres://"))

    @property
    def path(self) -> str:
        """A SQLite store's file."""
        return self.url.removeprefix("sqlite:///").removeprefix("sqlite://")


# A reader that keeps coming back (the projector beside an import works each batch out in a read
# transaction while the import commits the next one) keeps SQLite's own checkpoints from ever
# reaching the WAL's end, so the WAL is never started over and grows by every page every commit
# writes: 10 GB five minutes into a 1M-row import. So past WAL_LIMIT a commit checkpoints it all
# and truncates it, waiting at most WAL_WAIT_MS for the readers then in the WAL to finish.
WAL_LIMIT = 64 << 20
WAL_WAIT_MS = 2_000

CLOCK_DDL = ("CREATE TABLE IF NOT EXISTS tollbook_clock "
             "(id INTEGER PRIMARY KEY CHECK (id = 1), last_recorded_at BIGINT NOT NULL)")


LOCK_POLL = 0.002


def _begin_polling(cursor: sqlite3.Cursor) -> None:
    """BEGIN IMMEDIATE, asked again every LOCK_POLL seconds until the connection's busy timeout.
    SQLite's own wait asks again only every 100 ms once it has waited a while: it misses most of
    the moments an import lets go of the lock between its batches (tollbook/follower.py)."""
    (timeout,), = cursor.execute("PRAGMA busy_timeout").fetchall()
    cursor.execute("PRAGMA busy_timeout = 0")
    deadline = time.monotonic() + timeout / 1000
    try:
        while True:
            try:
                cursor.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() >= deadline:
                    raise
            time.sleep(LOCK_POLL)
    finally:
        cursor.execute(f"PRAGMA busy_timeout = {timeout}")


class EventStore:
    """The write side's and the read side's one door to the database."""

    def __init__(self, location: Location):
        self.location = location
        self.is_postgres = location.is_postgres
        # SQLite's page cache for a write transaction, in KiB (see _begin); a process that only
        # writes small batches (tollbook/follower.py) keeps less.
        self.write_cache_kib = 65_536
        # Whether a SQLite write asks for the lock every LOCK_POLL seconds (see _begin_polling).
        self.lock_polling = False
        # Past this size, a write's commit checkpoints the whole WAL and truncates it (see _bound_wal).
        self.wal_limit = WAL_LIMIT
        self._wal_deferred = 0  # after a refusal: how much more the WAL may grow before the next try
        self._writer: ThreadPoolExecutor | None = None
        self._last_behind: Future[None] | None = None  # the last batch written behind, whoever's
        self.mapper = PydanticMapper()
        if self.is_postgres:
            self._open_postgres()
        else:
            self._open_sqlite()
        # The log and the projections' positions, named as each recorder names them.
        self.events_table: str = self.recorder.events_table_name
        self.tracking_table: str = getattr(self.recorder, "tracking_table_name", "tracking")
        self.notification_id: str = "notification_id" if self.is_postgres else "rowid"
        from tollbook.store.log import Log

        self.log = Log(self)  # the append path; creates the tree and the guards once

    def _open_sqlite(self) -> None:
        path = self.location.path
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"no such folder: {folder}")
        # Checked by reading the file itself only while this process has it open nowhere else:
        # closing any descriptor of the file drops every POSIX lock the process holds on it, and
        # another process would then take itself for the last reader and delete the WAL.
        key = os.path.realpath(path)
        if not _OPEN_SQLITE.get(key):
            _check_sqlite_file(path)
        with _failing_as_unusable():
            self.recorder = library.open_sqlite(path, lock_timeout=30)
            try:
                self._prepare_sqlite()
            except BaseException:
                library.close(self.recorder)
                raise
        _OPEN_SQLITE[key] = _OPEN_SQLITE.get(key, 0) + 1
        self._sqlite_key: str | None = key

    def _prepare_sqlite(self) -> None:
        """Makes a new store's tables, once: a store already made is only read (no write lock)."""
        with self.transaction(write=False) as cursor:
            if "tollbook_clock" in _tables(cursor):
                return
        with self.transaction() as cursor:  # the write lock: one process makes them (the clock comes last)
            if "tollbook_clock" not in _tables(cursor):
                library.create_sqlite_tables(self.recorder, cursor)
                cursor.execute(CLOCK_DDL)

    def _open_postgres(self) -> None:
        try:
            from tollbook.store import pgstore
        except ImportError as error:
            raise StoreUnusable("a PostgreSQL store needs the postgres extra: pip install 'tollbook[postgres]'"
                                f" ({error})") from None
        settings = pgstore.environment(self.location.url)
        try:
            self.recorder = library.open_postgres(settings)
            pgstore.prepare(self.recorder)
        except library.PersistenceError as error:
            if hasattr(self, "recorder"):
                library.close(self.recorder)
            reason = pgstore.probe(settings) if "connection" in str(error).lower() else " ".join(str(error).split())
            raise StoreUnusable(f"PostgreSQL {pgstore.describe(settings)}: {reason}") from None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.shutdown()  # after the batch being written behind, if any
        library.close(self.recorder)
        key = getattr(self, "_sqlite_key", None)
        if key is not None:
            _OPEN_SQLITE[key] -= 1
            self._sqlite_key = None

    # -- reading aggregates -------------------------------------------------------------

    def events_of(self, aggregate_id: UUID) -> list[DomainEvent]:
        return self.events_of_many([aggregate_id]).get(aggregate_id, [])

    def events_of_many(self, aggregate_ids: Sequence[UUID], chunk: int = 500) -> dict[UUID, list[DomainEvent]]:
        """The events of many aggregates in a few queries (in version order); an aggregate
        with no events is absent from the answer."""
        found: dict[UUID, list[DomainEvent]] = {}
        table = self.recorder.events_table_name
        with self.transaction(write=False) as cursor:
            for start in range(0, len(aggregate_ids), chunk):
                # The ids asked for, by how the table stores them: no UUID made again for each row.
                asked = {self._id(aggregate_id): aggregate_id for aggregate_id in aggregate_ids[start:start + chunk]}
                cursor.execute(
                    f"SELECT originator_id, originator_version, topic, state FROM {table}"
                    f" WHERE originator_id IN ({', '.join('?' * len(asked))}) ORDER BY originator_id, originator_version",
                    list(asked),
                )
                for originator_id, version, topic, state in cursor.fetchall():
                    aggregate_id = asked[originator_id]
                    event = self.mapper.to_domain_event(aggregate_id, version, topic, bytes(state))
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
        with _failing_as_unusable():
            if self.is_postgres:
                from tollbook.store import pgstore

                with pgstore.transaction(self.recorder, write=write, durable=durable) as cursor:
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
        checkout = library.sqlite_connection(self.recorder, write=write)
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
                    if write:
                        self._bound_wal(connection)
                else:
                    connection.rollback()
            finally:
                if cursor is not None:
                    cursor.close()
                checkout.__exit__(None, None, None)

        try:
            cursor = connection.cursor()
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
                cursor.execute(f"PRAGMA cache_size = -{int(self.write_cache_kib)}")
            else:
                # A read gains little from a big cache, and a connection keeps what it cached: a
                # re-import reading receipts all over a big log grew by the cache (issue 11, item 5).
                cursor.execute("PRAGMA cache_size = -2000")  # SQLite's default
            if write and self.lock_polling:
                _begin_polling(cursor)
            else:
                cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except BaseException as error:
            end(commit=False)
            failure = unusable(error)
            if failure is None:
                raise
            raise failure from error
        return cursor, end

    def _bound_wal(self, connection: sqlite3.Connection) -> None:
        """Checkpoints and truncates the WAL once it is past ``wal_limit`` (see WAL_LIMIT), trying
        again for up to WAL_WAIT_MS. A reader that stays longer (a long read of the log) makes it
        give up until the WAL has grown by another ``wal_limit``."""
        try:
            size = os.path.getsize(f"{self.location.path}-wal")
        except OSError:
            return
        if size < self.wal_limit:
            self._wal_deferred = 0  # small again: another connection truncated it
        if size < self.wal_limit + self._wal_deferred:
            return
        (waited,), = connection.execute("PRAGMA busy_timeout").fetchall()
        connection.execute(f"PRAGMA busy_timeout = {WAL_WAIT_MS}")
        deadline = time.monotonic() + WAL_WAIT_MS / 1000
        try:
            while True:
                try:
                    (busy, _, _), = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                except sqlite3.Error:  # another writer holds its lock: as refused (the commit stands)
                    busy = 1
                # Refused at once, most often: another process was checkpointing at that moment
                # (half the tries beside an import were; tried again, none stayed refused).
                if not busy or time.monotonic() >= deadline:
                    break
                time.sleep(0.05)
        finally:
            connection.execute(f"PRAGMA busy_timeout = {waited}")
        self._wal_deferred = size if busy else 0

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
            stamps, batch = self._stamp(cursor, documents)
            self._insert(cursor, batch)
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
            stamps, batch = self._stamp(cursor, documents)
        except BaseException:
            end(commit=False)
            raise
        write = partial(self._write_behind, cursor, end, batch)
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

    def _write_behind(self, cursor: sqlite3.Cursor, end: Callable[..., None], batch: Batch) -> None:
        try:
            self._insert(cursor, batch)
        except BaseException:
            end(commit=False)
            raise
        end(commit=True)

    def _stamp(self, cursor: Any, documents: Sequence[Sequence[DomainEvent]]) -> tuple[list[int], Batch]:
        """Each document's recorded_at, and its events as stored rows stamped with it, with
        their positions and leaf hashes (the one append path: :class:`tollbook.store.log.Log`)."""
        return self.log.stamp(cursor, documents)

    def _insert(self, cursor: Any, batch: Batch) -> None:
        self.log.insert(cursor, batch)

    def track(self, cursor: Any, projection: str, position: int) -> None:
        """Advances a projection's position in the transaction that wrote its rows."""
        library.insert_tracking(self.recorder, cursor.raw if self.is_postgres else cursor, projection, position)

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
        position = self.last_position()
        if not position:
            return 0, None
        with _failing_as_unusable():
            return position, orjson.loads(state_json(library.last_state(self.recorder, position))).get("timestamp")

    def last_position(self) -> int:
        """The log's last notification id (0 when empty)."""
        with _failing_as_unusable():
            return library.max_notification_id(self.recorder)

    def read_log(self, cursor: Any, after: int, limit: int) -> list[tuple[int, Any, int, str, bytes]]:
        """The log's next ``limit`` events after ``after``, in order: (notification id,
        originator id and version, topic, state: see :func:`decode_state`), read in the
        caller's transaction (so after any lock it holds)."""
        cursor.execute(f"SELECT {self.notification_id}, originator_id, originator_version, topic, state"
                       f" FROM {self.events_table}"
                       f" WHERE {self.notification_id} > ? ORDER BY {self.notification_id} LIMIT ?", (after, limit))
        return cursor.fetchall()

    def decoded_at(self, cursor: Any, positions: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Position -> the event there, decoded (:func:`decode_state`), in log order, for those of
        ``positions`` the log holds, read in the caller's transaction."""
        found: dict[int, dict[str, Any]] = {}
        wanted = sorted(set(positions))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            cursor.execute(f"SELECT {self.notification_id}, originator_id, originator_version, topic, state"
                           f" FROM {self.events_table} WHERE {self.notification_id} IN ({', '.join('?' * len(chunk))})"
                           f" ORDER BY {self.notification_id}", chunk)
            found.update((p, decode_state(i, v, t, bytes(s))) for p, i, v, t, s in cursor.fetchall())
        return found

    def head_position(self, cursor: Any) -> int:
        """The log's last notification id (0 when empty), read in the caller's transaction."""
        cursor.execute(f"SELECT max({self.notification_id}) FROM {self.events_table}")
        return cursor.fetchone()[0] or 0

    def indexes(self, cursor: Any) -> set[str]:
        """The names of the indexes the store has (beside the log's own)."""
        if self.is_postgres:
            cursor.execute("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")
        else:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        return {name for (name,) in cursor.fetchall()}

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

        return pgstore.listening(self.recorder)


def _tables(cursor: Any) -> set[str]:
    cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {name for (name,) in cursor.fetchall()}


SQLITE_HEADER = b"SQLite format 3\x00"


_OPEN_SQLITE: dict[str, int] = {}  # the SQLite files this process has stores open on, and how many


def _check_sqlite_file(path: str) -> None:
    """Refuses, before SQLite touches it, what cannot be a store: a folder, a file that is not
    SQLite, a SQLite file cut short (its header says how long it was), a file or folder Tollbook
    cannot write (SQLite would open it read-only, and fail at the first write)."""
    if os.path.isdir(path):
        raise StoreUnusable("it is a folder, not a store file")
    folder = os.path.dirname(os.path.abspath(path))
    siblings = [path + "-wal", path + "-shm"]
    if os.statvfs(folder).f_flag & os.ST_RDONLY:
        raise StoreUnusable(f"it is on a read-only file system ({READ_ONLY})")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise StoreUnusable(f"the file is read-only ({READ_ONLY})")
    if not os.access(folder, os.W_OK) and not all(os.access(p, os.W_OK) for p in siblings):
        raise StoreUnusable(f"its folder is read-only ({READ_ONLY})")
    try:
        with open(path, "rb") as file:
            header = file.read(100)
            size = os.fstat(file.fileno()).st_size
    except FileNotFoundError:
        return  # a new store
    except OSError as error:
        raise StoreUnusable(f"cannot read it: {error.strerror}") from None
    if not header:
        return  # empty: SQLite makes it a new database
    if not header.startswith(SQLITE_HEADER) or len(header) < 100:
        raise StoreUnusable("not a SQLite file, so not a Tollbook store")
    page_size = int.from_bytes(header[16:18]) or 1
    page_size = 65_536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32])
    # The page count is valid when the change counter matches; the WAL may hold the rest.
    counted = header[24:28] == header[92:96]
    wal = path + "-wal"
    if counted and size < pages * page_size and not (os.path.exists(wal) and os.path.getsize(wal)):
        raise StoreUnusable(f"the SQLite file is cut short: {size} of its {pages * page_size} bytes")
    # Read only: SQLite's first write would turn another program's file to WAL.
    try:
        with closing(sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True)) as connection:
            tables = _tables(connection.cursor())
    except sqlite3.Error as error:
        raise unusable(error) or error from None
    if tables and "stored_events" not in tables:
        raise StoreUnusable(f"a SQLite file, but not a Tollbook store (its tables: {', '.join(sorted(tables)[:5])})")


def to_micros_now() -> int:
    return to_micros(datetime.now(UTC))


def open_store(url: str) -> EventStore:
    return EventStore(Location(url))
