"""Bulk ingest: many documents per transaction, each document still all-or-nothing.

Each document is parsed and decided on its own (a bad one is rejected with its line and
nothing of it kept); the events of the accepted ones are saved together, a batch at a time,
written behind (on SQLite) while the next batch is decided. If another writer changed an
aggregate a batch depends on, the store refuses the whole batch; its documents, and those
decided on top of it, are then decided again on fresh state and saved one by one, each
retried a bounded number of times before it is refused in one line.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from tollbook.commands.documents import BadDocument, Command, parse
from tollbook.commands.handlers import Evolve, Unit, handle, reads
from tollbook.domain import ids
from tollbook.domain.errors import Rejected
from tollbook.domain.events import DomainEvent
from tollbook.store.eventstore import Conflict, EventStore, StoreFull, Writing
from tollbook.store.memory import without_cycle_collection

_ABSENT = object()


@dataclass
class Rejection:
    line: int
    error: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.error}"


@dataclass
class IngestResult:
    accepted: int = 0
    unchanged: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    last_recorded_at: int | None = None
    stored_through: int = 0  # the last line whose document's fate is settled (stored, unchanged, rejected)

    def as_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "unchanged": self.unchanged,
            "rejected": [{"line": r.line, "error": r.error} for r in self.rejected],
        }


class IngestStopped(StoreFull):
    """The disk filled up mid-ingest: ``result`` counts what was stored (each document whole),
    through line ``result.stored_through``; nothing after it was stored."""

    def __init__(self, error: StoreFull, result: IngestResult):
        where = (f"stopped after line {result.stored_through}: the documents through it are stored (each whole),"
                 " none after it" if result.stored_through else "stopped before storing anything")
        super().__init__(f"{error}; {where}")
        self.result = result


@dataclass
class _Decided:
    line: int
    source: Any  # the document as given: parsed again if it must be decided again
    command: Command | None  # until decided: a batch keeps its documents small
    content_hash: str
    events: list[DomainEvent] = field(default_factory=list)  # until saved
    rejected: str | None = None
    changes: bool = False


class Ingestor:
    """Feeds documents into one store for one editor.

    Documents are read ahead ``prefetch_documents`` at a time (what they read is loaded in a
    few queries) and saved about ``batch_events`` at a time (a document is never split), one
    transaction each. On SQLite a batch is written behind: a background thread inserts and
    commits it while the next one is decided on the state it leaves. If it conflicts, it and
    the documents decided since are decided again and saved one by one."""

    # Big transactions: each commit writes every index page its events touched (ids are random)
    # and syncs, so its cost hardly depends on how many events it holds.
    def __init__(self, store: EventStore, recorded_by: str, *, prefetch_documents: int = 5000,
                 batch_events: int = 25_000, cache_size: int = 250_000, max_retries: int = 8):
        self.store = store
        self.recorded_by = recorded_by
        self.prefetch_documents = prefetch_documents
        self.batch_events = batch_events
        self.cache_size = cache_size
        self.max_retries = max_retries
        # Aggregates as last saved or loaded. A stale entry of one a batch writes makes the
        # store refuse the batch (and then the cache is dropped); one only read (that an
        # incident exists, a claim's figures for revise="changed") is trusted as loaded.
        self._cache: dict[UUID, Any] = {}
        self._pending: dict[UUID, Any] = {}  # what the batch being decided changes
        self._batch: list[_Decided] = []
        self._batch_events = 0
        # The batch being written behind, and what it changes (kept apart from the cache,
        # which may be emptied before the batch is stored).
        self._writing: tuple[list[_Decided], Writing] | None = None
        self._written: dict[UUID, Any] = {}

    def ingest(self, lines: Iterable[Any], result: IngestResult | None = None, *,
               numbered: bool = False) -> IngestResult:
        """``numbered``: ``lines`` yields ``(line number, document)`` pairs (an importer's
        documents carry the line of the CSV row they came from); else they are numbered 1, 2, …"""
        result = result or IngestResult()
        parsed: list[_Decided] = []
        with without_cycle_collection():
            try:
                for number, line in (lines if numbered else enumerate(lines, 1)):
                    if not isinstance(line, dict) and not line.strip():
                        continue
                    try:
                        command, content_hash = parse(line)
                    except BadDocument as error:
                        result.rejected.append(Rejection(number, str(error)))
                        continue
                    parsed.append(_Decided(number, line, command, content_hash))
                    if len(parsed) >= self.prefetch_documents:
                        self._run(parsed, result)
                        parsed = []
                self._run(parsed, result)
                self._save(result)
                self._land(result)  # nothing is accepted before it is on disk
            except BaseException as error:
                if self._writing is not None:
                    with suppress(Exception):  # the batch being written is stored whole or not at all
                        self._writing[1].settle()
                self._writing, self._batch, self._batch_events = None, [], 0
                self._written.clear()
                self._pending.clear()
                if isinstance(error, StoreFull):
                    result.rejected.sort(key=lambda r: r.line)
                    raise IngestStopped(error, result) from error
                raise
            # Let go of what only this ingest needed while the collector is still off: back on
            # (and at the process's exit) it would walk all of it once more.
            self._cache.clear()
            ids.forget()
        result.rejected.sort(key=lambda r: r.line)
        return result

    def _run(self, parsed: list[_Decided], result: IngestResult) -> None:
        """Decides a run of parsed documents, loading what they read in one go first, and saves
        each full batch."""
        self._prefetch(parsed)
        for decided in parsed:
            self._batch.append(self._decide(decided))
            self._batch_events += len(decided.events)
            # Unchanged documents add no events: a batch also ends at a number of documents, or
            # an unchanged re-import would hold every document of the file (issue 11, item 5).
            if self._batch_events >= self.batch_events or len(self._batch) >= self.prefetch_documents:
                self._save(result)

    def _prefetch(self, parsed: list[_Decided]) -> None:
        """Loads the aggregates the documents will read that are not cached, in a few queries
        (one query per aggregate is what made bulk ingest slow)."""
        everything = [reads(decided.command, decided.content_hash) for decided in parsed]
        if len(self._cache) + sum(map(len, everything)) > self.cache_size:
            self._cache.clear()
        # Receipts first: a document already received reads nothing else (a repeated import).
        self._load_many(dict(found[0] for found in everything))
        rest: dict[UUID, Evolve] = {}
        for found in everything:
            if self._cache.get(found[0][0], _ABSENT) is None:
                rest.update(found[1:])
        self._load_many(rest)

    def _load_many(self, aggregates: dict[UUID, Evolve]) -> None:
        wanted = {k: v for k, v in aggregates.items()
                  if k not in self._cache and k not in self._pending and k not in self._written}
        if not wanted:
            return
        found = self.store.events_of_many(list(wanted))
        for aggregate_id, evolve in wanted.items():
            state = None
            for event in found.get(aggregate_id, ()):
                state = evolve(state, event)
            self._cache[aggregate_id] = state

    def _load(self, aggregate_id: UUID, evolve: Evolve) -> Any:
        state = self._pending.get(aggregate_id, _ABSENT)
        if state is _ABSENT:
            state = self._written.get(aggregate_id, _ABSENT)
        if state is _ABSENT:
            state = self._cache.get(aggregate_id, _ABSENT)
        if state is _ABSENT:
            state = None
            for event in self.store.events_of(aggregate_id):
                state = evolve(state, event)
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            self._cache[aggregate_id] = state
        return state

    def _append(self, batch: list[_Decided]) -> list[int]:
        """Saves the batch's events now; on a conflict decides again on fresh state, after a
        short random pause (so racing writers stop colliding), a bounded number of times. A
        batch of several documents that conflicts is saved one by one, so one contended record
        does not hold back the rest."""
        for attempt in range(self.max_retries + 1):
            accepted = [d for d in batch if d.events]
            try:
                return self.store.append([d.events for d in accepted]) if accepted else []
            except Conflict:
                self._cache.clear()
                self._pending.clear()
            if len(batch) > 1:
                return self._one_by_one(batch)
            if attempt < self.max_retries:
                time.sleep(random.uniform(0, 0.002 * 2**attempt))
                self._decide(batch[0])
        batch[0].events, batch[0].rejected = [], "another writer kept changing the same records; try again"
        return []

    def _one_by_one(self, batch: list[_Decided]) -> list[int]:
        stamps: list[int] = []
        for d in batch:
            stamps += self._append([self._decide(d)])
            self._cache.update(self._pending)
            self._pending.clear()
        return stamps

    def _decide(self, decided: _Decided) -> _Decided:
        unit = Unit(self._load, self.recorded_by)
        command, decided.command = decided.command or parse(decided.source)[0], None
        try:
            handle(command, decided.content_hash, unit)
        except Rejected as rejected:
            decided.rejected, decided.events = str(rejected), []
        else:
            decided.rejected, decided.events = None, unit.events
            self._pending.update(unit.changed)
        decided.changes = bool(decided.events)
        return decided

    def _save(self, result: IngestResult) -> None:
        """Writes the decided batch behind, once the one before it is stored."""
        self._land(result)
        batch, self._batch, self._batch_events = self._batch, [], 0
        accepted = [d.events for d in batch if d.events]
        if not accepted:  # nothing to write: documents unchanged or rejected
            self._count(batch, [], result)
            return
        writing = self.store.write_behind(accepted)
        for d in batch:
            d.events = []  # written down as rows
        self._writing = batch, writing
        self._written.update(self._pending)
        self._pending.clear()

    def _land(self, result: IngestResult) -> None:
        """Waits for the batch being written behind and counts its documents; if another
        writer got to one of its records first, decides it again with the documents decided
        on top of it."""
        if self._writing is None:
            return
        batch, writing = self._writing
        try:
            writing.settle()
        except Conflict:
            self._writing = None
            self._written.clear()
            later, self._batch, self._batch_events = self._batch, [], 0
            self._decide_again(batch + later, result)
            return
        self._writing = None
        self._cache.update(self._written)
        self._written.clear()
        self._count(batch, writing.stamps, result)

    def _decide_again(self, batch: list[_Decided], result: IngestResult) -> None:
        self._cache.clear()
        self._pending.clear()
        self._count(batch, self._one_by_one(batch), result)

    def _count(self, batch: list[_Decided], stamps: list[int], result: IngestResult) -> None:
        if stamps:
            result.last_recorded_at = stamps[-1]
        for d in batch:
            result.stored_through = max(result.stored_through, d.line)
            if d.rejected:
                result.rejected.append(Rejection(d.line, d.rejected))
            elif d.changes:
                result.accepted += 1
            else:
                result.unchanged += 1
