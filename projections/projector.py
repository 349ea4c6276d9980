"""Read models built only from the notification log, exactly once.

Each projection reads the log after its tracking position, writes its rows for a batch of
events and advances its tracking position in the SAME transaction, so a crash anywhere leaves
rows and position in step: the batch is applied whole or not at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any

from tollbook.domain.ids import respelled, source_key
from tollbook.domain.tally import Candidate, counting_spans, current
from tollbook.domain.time import format_recorded, normalize_day, to_micros
from tollbook.projections import schema
from tollbook.projections.timeline import Timeline
from tollbook.store import eventsourcing_adapter as library
from tollbook.store.eventstore import CONFLICTS, EventStore, decode_state

Event = dict[str, Any]

# Events are read as stored (topic and JSON), not loaded into the domain's models: the read side
# needs no validation of what was valid when written, and queries start faster without pydantic.
# tests/test_ledger.py checks these against the models' topics.
INCIDENT_DEFINED = "domain.incident:IncidentDefined"
INCIDENT_AMENDED = "domain.incident:IncidentAmended"
INCIDENT_MERGED = "domain.incident:IncidentMerged"
CLAIM_REPORTED = "domain.claim:ClaimReported"
CLAIM_RETRACTED = "domain.claim:ClaimRetracted"
CLAIM_CORRECTED = "domain.claim:ClaimCorrected"


@lru_cache(maxsize=65_536)  # a report's claims share their published_at
def _micros(text: str | None) -> int | None:
    # Stored instants are pydantic's RFC 3339 with a zone: the C parser reads them as they are.
    return None if text is None else to_micros(datetime.fromisoformat(text))


class Projection:
    name: str
    tables: dict[str, str]
    views: dict[str, str] = {}
    indexes: list[str]  # needed while projecting
    query_indexes: list[str]  # needed only by queries: a rebuild creates them at its end
    handlers: dict[str, Callable[[Any, int, Event], None]]

    def apply(self, cursor: Any, notifications: Iterable[tuple[int, str, Event]]) -> None:
        """Works out the rows of these events, to be written by :meth:`flush`."""
        for position, topic, event in notifications:
            handler = self.handlers.get(topic)
            if handler is not None:
                handler(cursor, position, event)

    def flush(self, cursor: Any) -> None:
        raise NotImplementedError


class Incidents(Projection):
    """Incident fields over recorded time, and where merged incidents' claims count."""

    # v2: no copy of every incident's fields (a quarter of the read models' bytes; the incident
    # page folds them from the log's events at the positions of its rows); an amendment carries
    # its rows' columns over from the current row.
    name = "incidents.v2"
    tables = schema.INCIDENTS
    indexes = schema.INCIDENT_INDEXES
    query_indexes = schema.INCIDENT_QUERY_INDEXES
    GROUPED = ("country", "admin1", "admin2", "perpetrator")  # the fields with a column, as named

    def __init__(self) -> None:
        self.states = Timeline(
            "tb_incidents", ("incident_id",),
            ("incident_id", "position", "recorded_at", "to_recorded_at", *self.GROUPED, "occurred_day"),
        )
        self.canonical = Timeline(
            "tb_canonical", ("incident_id",),
            ("incident_id", "position", "recorded_at", "to_recorded_at", "canonical_id"),
        )
        self.merges: list[tuple] = []
        self.handlers = {
            INCIDENT_DEFINED: self._fields,
            INCIDENT_AMENDED: self._fields,
            INCIDENT_MERGED: self._merged,
        }

    def _fields(self, cursor: Any, position: int, event: Event) -> None:
        key, fields = (event["incident_id"],), event["fields"]
        # An incident's first event defines it: nothing stored to read (a rebuild defines 100,000s).
        current = self.states.current(cursor, key) if event["originator_version"] > 1 else None
        row = current.copy() if current else self.states.row(incident_id=key[0])
        at = self.states.index
        row[at["position"]], row[at["recorded_at"]] = position, event["timestamp"]
        for name in self.GROUPED:  # a field an amendment leaves out stays as it was
            if name in fields:
                row[at[name]] = fields[name]
        if "occurred_from" in fields:
            occurred = fields["occurred_from"]
            row[at["occurred_day"]] = normalize_day(occurred) if occurred else None
        self.states.replace(key, row, known_new=current is None)

    def _merged(self, cursor: Any, position: int, event: Event) -> None:
        # Everything that counted under the merged-away incident now counts where it went.
        merged, into, at = event["incident_id"], event["into"], event["timestamp"]
        for (incident_id,) in [*self.canonical.current_where(cursor, "canonical_id", merged), (merged,)]:
            self.canonical.replace((incident_id,), self.canonical.row(
                incident_id=incident_id, position=position, recorded_at=at, canonical_id=into))
        self.merges.append((position, merged, into, at, event.get("reason"), event["recorded_by"]))

    def flush(self, cursor: Any) -> None:
        self.states.flush(cursor)
        self.canonical.flush(cursor)
        if self.merges:
            cursor.executemany(
                "INSERT INTO tb_merges (position, incident_id, into_id, recorded_at, reason, recorded_by) "
                "VALUES (?, ?, ?, ?, ?, ?)", self.merges)
            self.merges.clear()


def _figure(low: int | None, high: int | None, best: int | None, published_at: int, recorded: int) -> Candidate:
    """A version's figures as tb_entries holds them: a retraction has none (schema.VERSION_KIND)."""
    return Candidate("retracted" if low is None else "reported", low, high, best, published_at, recorded)


def _current(versions: dict[int, Candidate]) -> int | None:
    """The number of the claim's current version (domain.tally.current), if it has any."""
    figure = current(versions.values())
    return None if figure is None else next(v for v, f in versions.items() if f is figure)


class _Claim:
    """What projecting a claim's next event needs: the columns every row repeats, and each
    version's figures as they now stand (``last``: the version published last)."""

    __slots__ = ("columns", "versions", "last")

    def __init__(self, columns: tuple, versions: dict[int, Candidate]) -> None:
        self.columns = columns
        self.versions = versions
        self.last = _current(versions)

    def spans(self) -> dict[int, tuple[Candidate, int | None]]:
        """Its open rows of ``tb_counting``: version -> figures and next_published_at."""
        return {version: (self.versions[version], until) for version, until in counting_spans(self.versions).items()}


class Claims(Projection):
    """Every claim event as one row: its history entry and its version's figures over
    recorded time (see :data:`projections.schema.CLAIMS`), a timeline keyed by claim and
    version; and when each version counts on both clocks (``tb_counting``)."""

    # v5: source keys are NFKC (domain.ids.source_key); v6: narrower indexes (schema.CLAIM_QUERY_INDEXES)
    # and no column of tb_entries that the log or the row itself gives.
    # A store of an earlier version rebuilds the projection once.
    name = "claims.v6"
    tables = schema.CLAIMS
    views = schema.CLAIM_VIEWS
    indexes = schema.CLAIM_INDEXES
    query_indexes = schema.CLAIM_QUERY_INDEXES
    # A claim is named by its first event's position; its id, and what an entry says besides
    # its figures, are read from the log (schema.CLAIMS), not repeated on every row.
    COLUMNS = ("position", "claim_position", "incident_id", "source", "source_key", "measure", "grp", "version",
               "version_position", "low", "high", "best", "qualifier", "published_at", "recorded_at", "to_recorded_at")
    _CLAIM = COLUMNS[1:7]  # what every row repeats of its claim
    _FIGURE = ("low", "high", "best", "published_at", "version_position")  # a Candidate (see _figure)
    _FIXABLE = ("low", "high", "best", "qualifier")
    COUNTING = ("claim_position", "version", "incident_id", "measure", "grp", "low", "high", "best",
                "published_at", "version_position", "next_published_at", "recorded_at", "to_recorded_at")
    # Claims kept in memory between batches: a first catch-up touches each about once, and kept
    # by the 200,000 they made its peak grow with the file (274 -> 177 MB at 30k rows, no slower).
    CACHE = 20_000

    def __init__(self, store: EventStore | None) -> None:
        self.store = store  # where a claim no longer kept in memory is found
        self.entries = Timeline("tb_entries", ("claim_position", "version"), self.COLUMNS)
        self.counting = Timeline("tb_counting", ("claim_position", "version"), self.COUNTING)
        self.claims: dict[str, _Claim] = {}
        self.spelled: set[str] = set()  # incidents for tb_spelled
        self.handlers = {
            CLAIM_REPORTED: self._reported,
            CLAIM_RETRACTED: self._retracted,
            CLAIM_CORRECTED: self._corrected,
        }

    def _claim(self, cursor: Any, claim_id: str) -> _Claim:
        claim = self.claims.get(claim_id)
        if claim is None:
            # Its rows are found by where it opened: where its first event stands in the log.
            cursor.execute(f"SELECT {', '.join(self._CLAIM + ('version',) + self._FIGURE)} FROM tb_entries"
                           " WHERE claim_position = ? AND to_recorded_at IS NULL",
                           (self.store.first_position(cursor, claim_id),))
            rows = cursor.fetchall()
            claim = self.claims[claim_id] = _Claim(tuple(rows[0][:6]), {row[6]: _figure(*row[7:]) for row in rows})
        return claim

    def _version(self, claim: _Claim, version: int, figure: Candidate, at: int) -> None:
        """Sets a version's figures and re-lays the claim's counting rows from ``at`` on;
        only the rows that changed are closed and opened."""
        versions, last = claim.versions, claim.last
        if version not in versions and (last is None or figure.order > versions[last].order):
            # The usual case, a version newer than any: it counts from its published_at on, and
            # the one before it (if it counted) stops there.
            claim.last = version
            versions[version] = figure
            before = versions[last] if last is not None else None
            if before is not None and before.kind == "reported":
                if before.published_at == figure.published_at:
                    self.counting.end((claim.columns[0], last), at)
                else:
                    self._count(claim, last, before, figure.published_at, at, known_new=False)
            if figure.kind == "reported":
                self._count(claim, version, figure, None, at, known_new=True)
            return
        before_spans = claim.spans()
        versions[version] = figure
        claim.last = _current(versions)
        spans = claim.spans()
        for changed in before_spans.keys() | spans.keys():
            now = spans.get(changed)
            if now == before_spans.get(changed):
                continue
            if now is None:
                self.counting.end((claim.columns[0], changed), at)
            else:
                self._count(claim, changed, *now, at, known_new=changed not in before_spans)

    def _count(self, claim: _Claim, version: int, figure: Candidate, until: int | None, at: int, *,
               known_new: bool) -> None:
        claim_position, incident_id, _, _, measure, group = claim.columns
        self.counting.replace((claim_position, version), [
            claim_position, version, incident_id, measure, group, figure.low, figure.high, figure.best,
            figure.published_at, figure.recorded, until, at, None], known_new=known_new)

    def _new_version(self, claim: _Claim, row: list) -> None:
        self.entries.replace((row[1], row[7]), row, known_new=True)
        self._version(claim, row[7], _figure(*row[9:12], row[13], row[8]), row[14])

    def _reported(self, cursor: Any, position: int, event: Event) -> None:
        claim_id, version, get = event["originator_id"], event["version"], event.get
        if version == 1:
            claim = self.claims[claim_id] = _Claim((position, event["incident_id"], event["source"],
                                                    source_key(event["source"]), event["measure"], event["group"]), {})
            if respelled(event["source"]):
                self.spelled.add(event["incident_id"])
        else:
            claim = self._claim(cursor, claim_id)
        self._new_version(claim, [position, *claim.columns, version, position, get("low"), get("high"), get("best"),
                                  get("qualifier"), _micros(event["published_at"]), event["timestamp"], None])

    def _retracted(self, cursor: Any, position: int, event: Event) -> None:
        claim = self._claim(cursor, event["originator_id"])
        self._new_version(claim, [position, *claim.columns, event["version"], position, None, None, None, None,
                                  _micros(event["published_at"]), event["timestamp"], None])

    def _corrected(self, cursor: Any, position: int, event: Event) -> None:
        claim = self._claim(cursor, event["originator_id"])
        at, key = self.entries.index, (claim.columns[0], event["version"])
        row = self.entries.current(cursor, key).copy()
        for name in self._FIXABLE:
            if name in event:
                row[at[name]] = event[name]
        if "published_at" in event:
            row[at["published_at"]] = _micros(event["published_at"])
        row[at["position"]], row[at["recorded_at"]] = position, event["timestamp"]
        self.entries.replace(key, row)
        self._version(claim, event["version"], _figure(*(row[at[name]] for name in self._FIGURE)), event["timestamp"])

    def flush(self, cursor: Any) -> None:
        self.entries.flush(cursor)
        self.counting.flush(cursor)
        if self.spelled:
            cursor.executemany("INSERT INTO tb_spelled (incident_id) VALUES (?) ON CONFLICT (incident_id) DO NOTHING",
                               [(incident_id,) for incident_id in sorted(self.spelled)])
            self.spelled.clear()
        if len(self.claims) > self.CACHE:
            self.claims.clear()


def all_projections(store: EventStore | None = None) -> list[Projection]:
    """Every projection. ``store``: where the claims projection finds a claim it no longer keeps
    in memory (None: projections only to read their tables from)."""
    from tollbook.projections.releases import Releases  # it builds on Projection, defined here

    return [Incidents(), Claims(store), Releases()]


class Projector:
    """Brings every projection up to date with the log, a batch per transaction.

    Several processes may project one store at once: each works its batch out without the
    lock, then takes turns to write (on PostgreSQL an advisory lock, on SQLite the write lock)
    and reads the positions afresh once it holds the lock: a batch another process projected
    meanwhile is worked out again, so none is applied twice (see :meth:`_step`).
    """

    LOCK = "projections"
    ANALYZE_AFTER = 10_000  # events: after a bulk catch-up PostgreSQL's planner needs fresh statistics
    RETRIES = 3  # batches refused in a row (another process projected them first) before giving up

    # ``batch``: events a transaction (each commit writes again every page the batch touched in
    # the read models' indexes, so a rebuild goes faster in few big ones); ``read``: events read
    # and decoded at a time (what memory holds).
    def __init__(self, store: Any, batch: int = 100_000, read: int = 20_000):
        self.store = store
        self.batch = batch
        self.read = read
        self.tracking = getattr(store, "tracking_table", "tracking")
        self.projections = all_projections(self.store)
        self.topics = {topic for projection in self.projections for topic in projection.handlers}
        self._left: dict[str, int] | None = None  # each projection's position after this projector's last batch
        # Opening a store that has every projection and index takes no write lock: a reader
        # does not queue behind a writer.
        with store.transaction(write=False) as cursor:
            if self._complete(cursor):
                return
        with store.transaction() as cursor:
            store.lock(cursor, self.LOCK)
            for projection in self.projections:
                if self._position(cursor, projection) is None:
                    self._reset(cursor, projection)
            # A rebuild stopped before its end left the query indexes out; a store made by an
            # earlier version may lack an index this one projects with.
            self._index(cursor)

    def _complete(self, cursor: Any) -> bool:
        """Whether every projection has a position and every index of theirs is there."""
        if any(self._position(cursor, projection) is None for projection in self.projections):
            return False
        wanted = {schema.index_name(statement) for projection in self.projections
                  for statement in [*projection.indexes, *projection.query_indexes]}
        return wanted <= self.store.indexes(cursor)

    def _position(self, cursor: Any, projection: Projection) -> int | None:
        cursor.execute(f"SELECT notification_id FROM {self.tracking} WHERE application_name = ?", (projection.name,))
        row = cursor.fetchone()
        return row[0] if row else None

    def _ddl(self, cursor: Any, statement: str) -> None:
        cursor.execute(schema.for_postgres(statement) if self.store.is_postgres else statement)

    def _reset(self, cursor: Any, projection: Projection, *, for_queries: bool = True) -> None:
        """Empties the projection and sets its position to the log's start. ``for_queries``:
        False leaves out the indexes only queries need (a rebuild adds them at its end)."""
        # An earlier version's tables, unless a projection has a view of that name now.
        views = {name for p in self.projections for name in p.views}
        obsolete = [name for name in schema.OBSOLETE_TABLES if name not in views]
        for name in (*projection.views, *projection.tables, *obsolete):
            self.store.drop(cursor, name)
        statements = [*projection.tables.values(), *projection.views.values(), *projection.indexes]
        for statement in statements + (projection.query_indexes if for_queries else []):
            self._ddl(cursor, statement)
        cursor.execute(f"DELETE FROM {self.tracking} WHERE application_name = ?", (projection.name,))
        cursor.execute(f"INSERT INTO {self.tracking} (application_name, notification_id) VALUES (?, 0)",
                       (projection.name,))

    def _analyze(self) -> None:
        # Without statistics on freshly filled tables PostgreSQL picks the wrong index (a
        # single-incident tally took 20 ms instead of 0.05). SQLite plans well without them.
        if self.store.is_postgres:
            with self.store.transaction() as cursor:
                for projection in self.projections:
                    for table in projection.tables:
                        cursor.execute(f"ANALYZE {table}")

    def _index(self, cursor: Any) -> None:
        """Creates every index the projections have that is missing."""
        for projection in self.projections:
            for statement in [*projection.indexes, *projection.query_indexes]:
                self._ddl(cursor, statement)

    def positions(self) -> dict[str, int]:
        with self.store.transaction(write=False) as cursor:
            return {p.name: self._position(cursor, p) or 0 for p in self.projections}

    def catch_up(self, stop: Any = None, on_progress: Callable[[dict[str, Any]], None] | None = None) -> int:
        """Applies every event not yet projected; returns how many were read. ``stop`` (an
        Event): stop after the batch in hand once it is set. ``on_progress`` is called after
        each batch with its ``position``, ``events``, ``seconds`` and the log's ``head``."""
        done, conflicts = 0, 0
        while stop is None or not stop.is_set():
            began = time.perf_counter()
            try:
                applied, position = self._step()
            except CONFLICTS:
                # Another process projected the same batch first: read positions again, with
                # nothing of the failed batch left in memory. Again and again is no race.
                self.projections = all_projections(self.store)
                conflicts += 1
                if conflicts > self.RETRIES:
                    raise
                continue
            except BaseException:
                self.projections = all_projections(self.store)
                raise
            conflicts = 0
            if applied == 0:
                if done >= self.ANALYZE_AFTER:
                    self._analyze()
                return done
            done += applied
            if on_progress is not None:
                on_progress({"position": position, "events": applied, "seconds": time.perf_counter() - began,
                             "head": self.store.last_position()})
        return done

    def _current(self) -> int | None:
        """The log's head if every projection stands there, read without the write lock (a
        query on current projections never waits for a writer); else None."""
        with self.store.transaction(write=False) as cursor:
            positions = [self._position(cursor, p) or 0 for p in self.projections]
            head = self.store.head_position(cursor)
        return head if min(positions) >= head else None

    def _step(self) -> tuple[int, int]:
        """Projects the next batch: worked out in a read transaction, without the write lock (a
        writer, such as an import, goes on meanwhile: the second core projects its events), then
        written under the lock if no other process projected since; else worked out again and
        written under the lock."""
        head = self._current()
        if head is not None:
            return 0, head
        with self.store.transaction(write=False) as cursor:
            positions, read, last = self._project(cursor, locked=False)
        if not read:
            return 0, last
        # Projections can be rebuilt from the log: their commits need not wait for the disk.
        with self.store.transaction(durable=False) as cursor:
            self.store.lock(cursor, self.LOCK)
            if self._positions(cursor) == positions:
                return self._write(cursor, positions, read, last)
        self.projections = all_projections(self.store)  # what was worked out may be stale: drop it
        self._left = None
        with self.store.transaction(durable=False) as cursor:
            self.store.lock(cursor, self.LOCK)
            positions, read, last = self._project(cursor, locked=True)
            return self._write(cursor, positions, read, last)

    def _positions(self, cursor: Any) -> dict[str, int]:
        return {p.name: self._position(cursor, p) or 0 for p in self.projections}

    def _project(self, cursor: Any, *, locked: bool) -> tuple[dict[str, int], int, int]:
        """Works out the next batch (without the write lock: one piece of it, held in memory
        until written; under the lock: the whole batch, written a piece at a time). Returns
        the projections' positions, how many events were read and the last one's position."""
        positions = self._positions(cursor)
        if positions != self._left:
            # Another process projected (or rebuilt) since this one's last batch: what the
            # projections keep in memory between batches (claims' versions) may be stale.
            self.projections = all_projections(self.store)
        self._left = positions
        last = min(positions.values())
        read, limit = 0, self.batch if locked else min(self.batch, self.read)
        while read < limit:
            notifications = self.store.read_log(cursor, last, min(self.read, limit - read))
            if not notifications:
                break
            read += len(notifications)
            last = notifications[-1][0]
            # Only the events some projection reads are decoded (not the document receipts).
            decoded = [(position, topic, decode_state(aggregate_id, version, topic, state))
                       for position, aggregate_id, version, topic, state in notifications if topic in self.topics]
            for projection in self.projections:
                position = positions[projection.name]
                if position < last:
                    projection.apply(cursor, (d for d in decoded if d[0] > position))
                    if locked:
                        projection.flush(cursor)
        return positions, read, last

    def _write(self, cursor: Any, positions: dict[str, int], read: int, last: int) -> tuple[int, int]:
        """Writes what the projections worked out, and their positions, in the caller's transaction."""
        for projection in self.projections:
            if positions[projection.name] < last:
                projection.flush(cursor)
                self.store.track(cursor, projection.name, last)
        self._left = {name: max(position, last) for name, position in positions.items()}
        return read, last

    def rebuild(self, stop: Any = None, on_progress: Callable[[dict[str, Any]], None] | None = None) -> int:
        with self.store.transaction() as cursor:
            self.store.lock(cursor, self.LOCK)
            for projection in self.projections:
                self._reset(cursor, projection, for_queries=False)
        self.projections = all_projections(self.store)
        done = self.catch_up(stop, on_progress)
        with self.store.transaction() as cursor:
            self.store.lock(cursor, self.LOCK)
            self._index(cursor)
        return done

    # -- following the log, and where every projection stands -----------------------------

    def follow(self, stop: Any, on_progress: Callable[[dict[str, Any]], None] | None = None, *,
               poll: float = 0.5, recheck: float = 5.0,
               on_error: Callable[[Exception], None] | None = None) -> int:
        """Keeps every projection up to date until ``stop`` (a threading.Event) is set; returns
        how many events were read. On PostgreSQL it wakes on the recorder's NOTIFY (LISTEN,
        issued before the first catch-up so nothing committed in between is missed) and also
        looks at the log every ``recheck`` seconds; on SQLite it looks every ``poll`` seconds.
        A batch in hand is always finished (its transaction commits with its position) before
        stopping. A lost connection is reported to ``on_error`` and retried."""
        done, delay = 0, poll
        while not stop.is_set():
            try:
                with self.store.listening() as wait:
                    done += self.catch_up(stop, on_progress)
                    position = min(self.positions().values())
                    checked = time.monotonic()
                    delay = poll
                    while not stop.is_set():
                        if wait is not None:
                            woke = wait(poll)
                        else:
                            woke = False
                            stop.wait(poll)
                        if stop.is_set():
                            break
                        if not woke and wait is not None and time.monotonic() - checked < recheck:
                            continue
                        checked = time.monotonic()
                        if self.store.last_position() > position or woke:
                            done += self.catch_up(stop, on_progress)
                            position = min(self.positions().values())
            except (library.PersistenceError, OSError) as error:
                if on_error is None:
                    raise
                on_error(error)
                stop.wait(delay)
                delay = min(delay * 2, 30.0)
        return done

    def status(self) -> dict[str, Any]:
        """The log's head (last notification id and its recorded_at) and each projection's
        position and lag: how many events of the log it has not applied yet."""
        head, recorded_at = self.store.head()
        positions = self.positions()
        return {
            "head": {"position": head, "recorded_at": format_recorded(recorded_at)},
            "projections": [{"name": name, "position": position, "lag": self.store.count_after(position)}
                            for name, position in sorted(positions.items())],
        }
