"""The one append path into the event log, and the Merkle tree kept beside it.

Every event reaches the database through :meth:`Log.stamp` then :meth:`Log.insert`, in one
transaction, under the store's write lock (SQLite's ``BEGIN IMMEDIATE``; on PostgreSQL the
clock's row lock, which every writer takes first): each document gets its ``recorded_at``, each
event the next position (``position`` N is leaf N-1 of the tree: positions have no gaps), its
leaf hash (:mod:`tollbook.store.leaf`) and the tree nodes it completes, and all of it is
inserted with the events, so the tree and the log can never disagree after a crash.

Tables (on both databases, beside the events):
- ``tollbook_leaves (position, leaf_hash)``: one leaf hash per event;
- ``tollbook_nodes (level, idx, hash)``: the root of every complete subtree at levels 8, 16,
  24, … (a tile of 256 hashes below each), so a proof reads a few hundred hashes, never the log;
- ``tollbook_checkpoints``: each checkpoint the store signed;
- ``tollbook_identity``: the store's id (a checkpoint's default origin).
Triggers refuse UPDATE and DELETE (and on PostgreSQL TRUNCATE) of those and of the events.
A store made before the tree gets all of it, its tree built from its log, on first open; a
position its log skipped (PostgreSQL's sequence skips one where an insert was rolled back) gets
the leaf of :func:`tollbook.store.leaf.skipped`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tollbook.store import eventsourcing_adapter as library
from tollbook.store import merkle
from tollbook.store.eventstore import STORED_TOPICS, to_micros_now
from tollbook.store.leaf import hash_of, recorded_text, skipped_hash, stored

if TYPE_CHECKING:
    from tollbook.domain.events import DomainEvent
    from tollbook.store.eventstore import EventStore

TILE = 8  # nodes are kept at the levels that are multiples of this: tiles of 2**TILE hashes
TILE_SIZE = 1 << TILE
GUARDED = ("tollbook_leaves", "tollbook_nodes", "tollbook_checkpoints", "tollbook_identity")


class StoreDamaged(OSError):
    """The log and its tree disagree (someone wrote to the database behind Tollbook's back)."""


@dataclass
class Batch:
    """Events stamped and hashed under the write lock, to be inserted in the same transaction."""

    rows: list[tuple]  # (position, aggregate id, version, topic, state)
    leaves: list[tuple[int, bytes]]
    nodes: list[tuple[int, int, bytes]]
    last: int  # the last recorded_at handed out
    tree: merkle.CompactRange  # the tree's right edge once inserted


def _tables(postgres: bool) -> list[str]:
    blob, integer = ("BYTEA", "BIGINT") if postgres else ("BLOB", "INTEGER")
    return [
        f"CREATE TABLE IF NOT EXISTS tollbook_leaves (position {integer} PRIMARY KEY, leaf_hash {blob} NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS tollbook_nodes (level INTEGER NOT NULL, idx {integer} NOT NULL,"
        f" hash {blob} NOT NULL, PRIMARY KEY (level, idx))" + ("" if postgres else " WITHOUT ROWID"),
        f"CREATE TABLE IF NOT EXISTS tollbook_checkpoints (number {integer} PRIMARY KEY, size {integer} NOT NULL,"
        f" root {blob} NOT NULL, note TEXT NOT NULL, recorded_at {integer} NOT NULL, recorded_by TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS tollbook_identity (id INTEGER PRIMARY KEY CHECK (id = 1), store_id TEXT NOT NULL)",
    ]


def _guards(postgres: bool, events_table: str) -> list[str]:
    tables = (events_table, *GUARDED)
    if postgres:
        return [
            "CREATE OR REPLACE FUNCTION tollbook_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " RAISE EXCEPTION 'tollbook: % is append-only (% refused)', TG_TABLE_NAME, TG_OP; END $$",
            *(f"CREATE OR REPLACE TRIGGER tollbook_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {table}"
              " FOR EACH STATEMENT EXECUTE FUNCTION tollbook_append_only()" for table in tables),
        ]
    return [f"CREATE TRIGGER IF NOT EXISTS tollbook_no_{action.lower()}_{table} BEFORE {action} ON {table}"
            f" BEGIN SELECT RAISE(ABORT, 'tollbook: {table} is append-only ({action} refused)'); END"
            for table in tables for action in ("UPDATE", "DELETE")]


class TreeReader:
    """The stored tree as it stood at ``size`` leaves, read a tile at a time: the ``subtree``
    function :mod:`tollbook.store.merkle` builds proofs from."""

    def __init__(self, cursor: Any, size: int):
        self.cursor, self.size = cursor, size
        self._tiles: dict[tuple[int, int], list[bytes]] = {}

    def _tile(self, level: int, tile: int) -> list[bytes]:
        found = self._tiles.get((level, tile))
        if found is None:
            first = tile * TILE_SIZE
            if level == 0:
                self.cursor.execute("SELECT position - 1, leaf_hash FROM tollbook_leaves WHERE position > ?"
                                    " AND position <= ? ORDER BY position", (first, min(first + TILE_SIZE, self.size)))
            else:
                self.cursor.execute("SELECT idx, hash FROM tollbook_nodes WHERE level = ? AND idx >= ? AND idx < ?"
                                    " ORDER BY idx", (level, first, min(first + TILE_SIZE, self.size >> level)))
            rows = self.cursor.fetchall()
            if [row[0] for row in rows] != list(range(first, first + len(rows))):
                raise StoreDamaged(f"the tree lacks hashes at level {level} from index {first}")
            found = self._tiles[(level, tile)] = [bytes(row[1]) for row in rows]
        return found

    def subtree(self, start: int, level: int) -> bytes:
        if start + (1 << level) > self.size:
            raise ValueError(f"no complete subtree at {start} of 2**{level} in a tree of {self.size}")
        base = level - level % TILE
        first, count = start >> base, 1 << (level - base)
        tile = self._tile(base, first >> TILE)
        offset = first % TILE_SIZE
        hashes = tile[offset:offset + count]
        if len(hashes) != count:
            raise StoreDamaged(f"the tree lacks hashes at level {base} from index {first}")
        while len(hashes) > 1:
            hashes = [merkle.node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
        return hashes[0]

    def right_edge(self) -> merkle.CompactRange:
        return merkle.CompactRange(self.size, [self.subtree(start, level)
                                               for start, level in merkle.subtrees_of(self.size)], TILE)

    def root(self) -> bytes:
        return merkle.range_hash(self.subtree, 0, self.size)


class Log:
    """The append path (see the module's docstring). One per :class:`EventStore`."""

    def __init__(self, store: EventStore):
        self.store = store
        self.postgres = store.is_postgres
        self._edges: dict[int, merkle.CompactRange] = {}  # the tree's right edge at the sizes last seen
        self.prepare()

    # -- the tables, the guards, and the tree of a store made before them ---------------------

    def _present(self, cursor: Any) -> bool:
        if self.postgres:
            cursor.execute("SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                           " WHERE c.relnamespace = current_schema()::regnamespace"
                           " AND t.tgname = 'tollbook_append_only'")
            return cursor.fetchone()[0] == len(GUARDED) + 1
        cursor.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'tollbook\\_no\\_%'"
                       " ESCAPE '\\'")
        return cursor.fetchone()[0] == 2 * (len(GUARDED) + 1)

    def prepare(self) -> None:
        """Creates the tree's tables and the guards once (several processes may open a new store
        at once: they wait for each other); builds the tree of a log written before them."""
        with self.store.transaction(write=False) as cursor:
            if self._present(cursor):
                return
        with self.store.transaction() as cursor:
            if self.postgres:
                self.store.lock(cursor, "tollbook-log-setup")
            if self._present(cursor):
                return
            # Built once, for a store made before the tree: a store that had one (it has an
            # identity) and lost it is not given a new tree from whatever its log now holds.
            if self.postgres:
                cursor.execute("SELECT to_regclass('tollbook_leaves') IS NULL AND to_regclass('tollbook_identity') IS NULL")
            else:
                cursor.execute("SELECT count(*) = 0 FROM sqlite_master WHERE name IN ('tollbook_leaves', 'tollbook_identity')")
            new = bool(cursor.fetchone()[0])
            for statement in _tables(self.postgres) + _guards(self.postgres, self.store.events_table):
                cursor.execute(statement)
            cursor.execute("INSERT INTO tollbook_identity (id, store_id) VALUES (1, ?) ON CONFLICT (id) DO NOTHING",
                           (str(uuid.uuid4()),))
            if new:
                self._build(cursor)

    def _build(self, cursor: Any) -> None:
        """The tree of the log as it stands (a store written before the tree existed)."""
        tree = merkle.CompactRange(keep=TILE)
        nodes: list[tuple[int, int, bytes]] = []
        tree.on_node = lambda level, index, found: nodes.append((level, index, found))
        for chunk in self.events(cursor, 0):
            leaves = []
            for position, aggregate_id, version, topic, state in chunk:
                while position > tree.size + 1:  # a position this log skipped
                    gap = skipped_hash(tree.size + 1)
                    leaves.append((tree.size + 1, gap))
                    tree.append(gap)
                found = hash_of(aggregate_id, version, topic, bytes(state))
                tree.append(found)
                leaves.append((position, found))
            self._insert_tree(cursor, leaves, nodes)
            nodes.clear()

    # -- reading ----------------------------------------------------------------------------

    def events(self, cursor: Any, after: int, limit: int | None = None, chunk: int = 10_000) -> Iterator[list[tuple]]:
        """The stored events after ``after`` in log order, ``chunk`` at a time: (position,
        aggregate id, version, topic, state)."""
        table, position = self.store.events_table, self.store.notification_id
        left = limit
        while left is None or left > 0:
            take = chunk if left is None else min(chunk, left)
            cursor.execute(f"SELECT {position}, originator_id, originator_version, topic, state FROM {table}"
                           f" WHERE {position} > ? ORDER BY {position} LIMIT ?", (after, take))
            rows = cursor.fetchall()
            if not rows:
                return
            yield rows
            after = rows[-1][0]
            if left is not None:
                left -= len(rows)

    def size(self, cursor: Any) -> int:
        """How many leaves the stored tree has."""
        cursor.execute("SELECT max(position) FROM tollbook_leaves")
        return cursor.fetchone()[0] or 0

    def head(self, cursor: Any) -> int:
        cursor.execute(f"SELECT max({self.store.notification_id}) FROM {self.store.events_table}")
        return cursor.fetchone()[0] or 0

    # -- appending ----------------------------------------------------------------------------

    def stamp(self, cursor: Any, documents: Sequence[Sequence[DomainEvent]]) -> tuple[list[int], Batch]:
        """Under the write lock: each document's recorded_at, and its events as rows with their
        positions and leaf hashes, and the tree nodes they complete."""
        # On PostgreSQL the clock's row lock serializes writers: recorded_at and positions
        # increase in commit order (SQLite's BEGIN IMMEDIATE already did).
        cursor.execute("SELECT last_recorded_at FROM tollbook_clock WHERE id = 1"
                       + (" FOR UPDATE" if self.postgres else ""))
        found = cursor.fetchone()
        last = found[0] if found else 0
        size, head = self.size(cursor), self.head(cursor)
        if size != head:
            raise StoreDamaged(f"the log's last event is at position {head} but its tree has {size} leaves"
                               " (written to behind Tollbook's back?): nothing more can be appended; see tollbook verify")
        tree = self._edge(cursor, size).copy()
        nodes: list[tuple[int, int, bytes]] = []
        tree.on_node = lambda level, index, found: nodes.append((level, index, found))
        now = to_micros_now()  # read once the lock is held: no earlier writer can stamp later
        stamps, rows, leaves = [], [], []
        append, position = tree.append, size
        for events in documents:
            last = max(now, last + 1)
            stamps.append(last)
            text = recorded_text(last)
            for event in events:
                state, found = stored(event, last, text)
                position += 1
                append(found)
                rows.append((position, event.originator_id, event.originator_version, STORED_TOPICS[type(event).__name__],
                             state))
                leaves.append((position, found))
        tree.on_node = None
        return stamps, Batch(rows, leaves, nodes, last, tree)

    def _edge(self, cursor: Any, size: int) -> merkle.CompactRange:
        edge = self._edges.get(size)
        if edge is None:
            edge = TreeReader(cursor, size).right_edge()
        return edge

    def insert(self, cursor: Any, batch: Batch) -> None:
        """Inserts the batch's events, leaves and nodes, and advances the clock."""
        if self.postgres:
            # Listeners (tollbook project --follow) wake on commit.
            cursor.raw.execute(f'NOTIFY "{library.channel(self.store.recorder)}"')
            # executemany sends a plain INSERT as COPY (store/pgstore.py): psycopg dumped the
            # arrays of an unnest value by value in Python, a sixth of a PostgreSQL import.
            cursor.executemany(f"INSERT INTO {self.store.events_table} (notification_id, originator_id,"
                               " originator_version, topic, state) VALUES (?, ?, ?, ?, ?)", batch.rows)
        else:
            self._many(cursor, f"{self.store.events_table} (rowid, originator_id, originator_version, topic, state)",
                       [(p, i.hex, v, t, s) for p, i, v, t, s in batch.rows])
        self._insert_tree(cursor, batch.leaves, batch.nodes)
        cursor.execute(
            "INSERT INTO tollbook_clock (id, last_recorded_at) VALUES (1, ?) "
            "ON CONFLICT (id) DO UPDATE SET last_recorded_at = excluded.last_recorded_at",
            (batch.last,),
        )
        # Kept for the next batch (if this one is refused, the stored size will not match it).
        self._edges = {size: edge for size, edge in self._edges.items() if size == batch.tree.size - len(batch.rows)}
        self._edges[batch.tree.size] = batch.tree

    def _insert_tree(self, cursor: Any, leaves: list[tuple[int, bytes]], nodes: list[tuple[int, int, bytes]]) -> None:
        if self.postgres:
            cursor.executemany("INSERT INTO tollbook_leaves (position, leaf_hash) VALUES (?, ?)", leaves)
            cursor.executemany("INSERT INTO tollbook_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)
            return
        if leaves:
            # One statement, three values: the hashes go in as one blob that SQLite cuts up (half
            # the cost of binding two values a row). Their positions follow each other.
            cursor.execute("WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)"
                           " INSERT INTO tollbook_leaves (position, leaf_hash) SELECT ? + i, substr(?, 32 * i + 1, 32)"
                           " FROM n", (len(leaves), leaves[0][0], b"".join(found for _, found in leaves)))
        self._many(cursor, "tollbook_nodes (level, idx, hash)", nodes)

    @staticmethod
    def _many(cursor: Any, into: str, rows: list[tuple]) -> None:
        """SQLite: many rows a statement, one step of SQLite's, which lets go of Python's lock
        while it writes (executemany takes the lock back after every row)."""
        import sqlite3

        if not rows:
            return
        width = len(rows[0])
        per = min(8192, cursor.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width)
        marks = f"({', '.join('?' * width)})"
        for start in range(0, len(rows), per):
            chunk = rows[start:start + per]
            cursor.execute(f"INSERT INTO {into} VALUES {', '.join([marks] * len(chunk))}",
                           [value for row in chunk for value in row])
