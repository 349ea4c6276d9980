"""Read models built only from the notification log, exactly once.

Each projection reads the log after its tracking position, writes its rows for a batch of
events and advances its tracking position in the SAME transaction, so a crash anywhere leaves
rows and position in step: the batch is applied whole or not at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from domain.ids import source_key
from domain.time import format_instant, normalize_day, parse_instant, to_micros
from projections import schema
from projections.timeline import Timeline
from tollbook.eventstore import CONFLICTS

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


def _micros(text: str | None) -> int | None:
    return None if text is None else to_micros(parse_instant(text))


class Projection:
    name: str
    tables: dict[str, str]
    indexes: list[str]
    handlers: dict[str, Callable[[Any, int, Event], None]]

    def apply(self, cursor: Any, notifications: Iterable[tuple[int, str, Event]]) -> None:
        for position, topic, event in notifications:
            handler = self.handlers.get(topic)
            if handler is not None:
                handler(cursor, position, event)
        self.flush(cursor)

    def flush(self, cursor: Any) -> None:
        raise NotImplementedError


class Incidents(Projection):
    """Incident fields over recorded time, and where merged incidents' claims count."""

    name = "incidents.v1"
    tables = schema.INCIDENTS
    indexes = schema.INCIDENT_INDEXES

    def __init__(self) -> None:
        self.states = Timeline(
            "tb_incidents", ("incident_id",),
            ("incident_id", "position", "recorded_at", "to_recorded_at", "fields", "country", "admin1",
             "admin2", "perpetrator", "occurred_day"),
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
        key = (event["incident_id"],)
        current = self.states.current(cursor, key)
        fields = (orjson.loads(current["fields"]) if current else {}) | event["fields"]
        occurred = fields.get("occurred_from")
        self.states.replace(cursor, key, {
            "incident_id": event["incident_id"], "position": position, "recorded_at": event["timestamp"],
            "fields": orjson.dumps(fields).decode(), "country": fields.get("country"),
            "admin1": fields.get("admin1"), "admin2": fields.get("admin2"),
            "perpetrator": fields.get("perpetrator"),
            "occurred_day": normalize_day(occurred) if occurred else None,
        }, known_new=current is None)

    def _merged(self, cursor: Any, position: int, event: Event) -> None:
        # Everything that counted under the merged-away incident now counts where it went.
        self.canonical.flush(cursor)
        merged, into, at = event["incident_id"], event["into"], event["timestamp"]
        cursor.execute(
            "SELECT incident_id FROM tb_canonical WHERE canonical_id = ? AND to_recorded_at IS NULL", (merged,)
        )
        for (incident_id,) in [*cursor.fetchall(), (merged,)]:
            self.canonical.replace(cursor, (incident_id,), {
                "incident_id": incident_id, "position": position, "recorded_at": at, "canonical_id": into,
            })
        self.merges.append((position, merged, into, at, event.get("reason"), event["recorded_by"]))

    def flush(self, cursor: Any) -> None:
        self.states.flush(cursor)
        self.canonical.flush(cursor)
        if self.merges:
            cursor.executemany(
                "INSERT INTO tb_merges (position, incident_id, into_id, recorded_at, reason, recorded_by) "
                "VALUES (?, ?, ?, ?, ?, ?)", self.merges)
            self.merges.clear()


class Claims(Projection):
    """Claims, their history entries, and every version's figures over recorded time."""

    name = "claims.v1"
    tables = schema.CLAIMS
    indexes = schema.CLAIM_INDEXES
    _ENTRY_COLUMNS = ("position", "claim_id", "kind", "version", "low", "high", "best", "qualifier",
                      "published_at", "recorded_at", "report_id", "reason", "recorded_by", "quote", "note")

    def __init__(self) -> None:
        self.figures = Timeline(
            "tb_figures", ("claim_id", "version"),
            ("claim_id", "version", "position", "recorded_at", "to_recorded_at", "version_position", "kind",
             "low", "high", "best", "qualifier", "published_at", "incident_id", "source_key", "measure", "grp"),
        )
        self.claims: dict[str, tuple] = {}  # claim_id -> (incident_id, source, source_key, measure, grp)
        self.new_claims: list[tuple] = []
        self.entries: list[tuple] = []
        self.handlers = {
            CLAIM_REPORTED: self._reported,
            CLAIM_RETRACTED: self._retracted,
            CLAIM_CORRECTED: self._corrected,
        }

    def _claim(self, cursor: Any, claim_id: str) -> tuple:
        if claim_id not in self.claims:
            cursor.execute(
                "SELECT incident_id, source, source_key, measure, grp FROM tb_claims WHERE claim_id = ?", (claim_id,)
            )
            self.claims[claim_id] = tuple(cursor.fetchone())
        return self.claims[claim_id]

    def _version(self, claim_id: str, position: int, event: Event, kind: str, figures: dict, published_at: int,
                 claim: tuple) -> None:
        incident_id, _, key, measure, grp = claim
        self.figures.replace(None, (claim_id, event["version"]), {
            "claim_id": claim_id, "version": event["version"], "position": position,
            "recorded_at": event["timestamp"], "version_position": position, "kind": kind, **figures,
            "published_at": published_at, "incident_id": incident_id, "source_key": key,
            "measure": measure, "grp": grp,
        }, known_new=True)

    def _entry(self, **values: Any) -> None:
        self.entries.append(tuple(values.get(c) for c in self._ENTRY_COLUMNS))

    def _reported(self, cursor: Any, position: int, event: Event) -> None:
        claim_id = event["originator_id"]
        published_at = _micros(event["published_at"])
        if event["version"] == 1:
            claim = (event["incident_id"], event["source"], source_key(event["source"]), event["measure"],
                     event["group"])
            self.claims[claim_id] = claim
            self.new_claims.append((claim_id, *claim, position, event["timestamp"]))
        else:
            claim = self._claim(cursor, claim_id)
        figures = {name: event.get(name) for name in ("low", "high", "best", "qualifier")}
        self._version(claim_id, position, event, "reported", figures, published_at, claim)
        self._entry(position=position, claim_id=claim_id, kind="reported", version=event["version"], **figures,
                    published_at=published_at, recorded_at=event["timestamp"], report_id=event["report_id"],
                    recorded_by=event["recorded_by"], quote=event.get("quote"), note=event.get("note"))

    def _retracted(self, cursor: Any, position: int, event: Event) -> None:
        claim_id = event["originator_id"]
        published_at = _micros(event["published_at"])
        figures = {"low": None, "high": None, "best": None, "qualifier": None}
        self._version(claim_id, position, event, "retracted", figures, published_at, self._claim(cursor, claim_id))
        self._entry(position=position, claim_id=claim_id, kind="retracted", version=event["version"],
                    published_at=published_at, recorded_at=event["timestamp"], reason=event["reason"],
                    recorded_by=event["recorded_by"])

    def _corrected(self, cursor: Any, position: int, event: Event) -> None:
        claim_id, version = event["originator_id"], event["version"]
        current = self.figures.current(cursor, (claim_id, version))
        fixed = dict(current)
        for name in ("low", "high", "best", "qualifier", "published_at"):
            if name in event:
                fixed[name] = _micros(event[name]) if name == "published_at" else event[name]
        fixed.update(position=position, recorded_at=event["timestamp"])
        self.figures.replace(cursor, (claim_id, version), fixed)
        self._entry(position=position, claim_id=claim_id, kind="corrected", version=version,
                    **{n: fixed[n] for n in ("low", "high", "best", "qualifier", "published_at")},
                    recorded_at=event["timestamp"], reason=event["reason"], recorded_by=event["recorded_by"])

    def flush(self, cursor: Any) -> None:
        if self.new_claims:
            cursor.executemany(
                "INSERT INTO tb_claims (claim_id, incident_id, source, source_key, measure, grp, position, "
                "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self.new_claims)
            self.new_claims.clear()
        self.figures.flush(cursor)
        if self.entries:
            cursor.executemany(
                f"INSERT INTO tb_entries ({', '.join(self._ENTRY_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(self._ENTRY_COLUMNS))})", self.entries)
            self.entries.clear()
        if len(self.claims) > 100_000:
            self.claims.clear()


def all_projections() -> list[Projection]:
    return [Incidents(), Claims()]


class Projector:
    """Brings every projection up to date with the log, a batch per transaction.

    Several processes may project one store at once: on PostgreSQL they take turns on an
    advisory lock, on SQLite on the write lock, and each batch reads the positions afresh
    once it holds the lock, so no batch is applied twice.
    """

    LOCK = "projections"

    def __init__(self, store: Any, batch: int = 5000):
        self.store = store
        self.batch = batch
        self.tracking = getattr(store, "tracking_table", "tracking")
        self.projections = all_projections()
        with store.transaction() as cursor:
            store.lock(cursor, self.LOCK)
            for projection in self.projections:
                if self._position(cursor, projection) is None:
                    self._reset(cursor, projection)

    def _position(self, cursor: Any, projection: Projection) -> int | None:
        cursor.execute(f"SELECT notification_id FROM {self.tracking} WHERE application_name = ?", (projection.name,))
        row = cursor.fetchone()
        return row[0] if row else None

    def _reset(self, cursor: Any, projection: Projection) -> None:
        for table in projection.tables:
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
        for statement in (*projection.tables.values(), *projection.indexes):
            cursor.execute(statement)
        cursor.execute(f"DELETE FROM {self.tracking} WHERE application_name = ?", (projection.name,))
        cursor.execute(f"INSERT INTO {self.tracking} (application_name, notification_id) VALUES (?, 0)",
                       (projection.name,))

    def positions(self) -> dict[str, int]:
        with self.store.transaction(write=False) as cursor:
            return {p.name: self._position(cursor, p) or 0 for p in self.projections}

    def catch_up(self, stop: Any = None, on_progress: Callable[[dict[str, Any]], None] | None = None) -> int:
        """Applies every event not yet projected; returns how many were read. ``stop`` (an
        Event): stop after the batch in hand once it is set. ``on_progress`` is called after
        each batch with its ``position``, ``events``, ``seconds`` and the log's ``head``."""
        done = 0
        while stop is None or not stop.is_set():
            began = time.perf_counter()
            try:
                applied, position = self._step()
            except CONFLICTS:
                # Another process projected the same batch first: read positions again, with
                # nothing of the failed batch left in memory.
                self.projections = all_projections()
                continue
            except BaseException:
                self.projections = all_projections()
                raise
            if applied == 0:
                return done
            done += applied
            if on_progress is not None:
                on_progress({"position": position, "events": applied, "seconds": time.perf_counter() - began,
                             "head": self.store.recorder.max_notification_id() or 0})
        return done

    def _step(self) -> tuple[int, int]:
        with self.store.transaction() as cursor:
            self.store.lock(cursor, self.LOCK)
            positions = {p.name: self._position(cursor, p) or 0 for p in self.projections}
            start = min(positions.values())
            notifications = self.store.read_log(cursor, start, self.batch)
            if not notifications:
                return 0, start
            decoded = [(position, topic, orjson.loads(state)) for position, topic, state in notifications]
            last = decoded[-1][0]
            for projection in self.projections:
                position = positions[projection.name]
                if position >= last:
                    continue
                projection.apply(cursor, (d for d in decoded if d[0] > position))
                self.store.track(cursor, projection.name, last)
            return len(decoded), last

    def rebuild(self, stop: Any = None, on_progress: Callable[[dict[str, Any]], None] | None = None) -> int:
        with self.store.transaction() as cursor:
            self.store.lock(cursor, self.LOCK)
            for projection in self.projections:
                self._reset(cursor, projection)
        self.projections = all_projections()
        return self.catch_up(stop, on_progress)

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
        from eventsourcing.persistence import PersistenceError

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
                        if (self.store.recorder.max_notification_id() or 0) > position or woke:
                            done += self.catch_up(stop, on_progress)
                            position = min(self.positions().values())
            except (PersistenceError, OSError) as error:
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
            "head": {"position": head, "recorded_at": format_instant(recorded_at)},
            "projections": [{"name": name, "position": position, "lag": self.store.count_after(position)}
                            for name, position in sorted(positions.items())],
        }
