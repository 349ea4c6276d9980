"""Bulk ingest: many documents per transaction, each document still all-or-nothing.

Each document is parsed and decided on its own (a bad one is rejected with its line and
nothing of it kept); the events of the accepted ones are saved together, a batch at a time.
If another writer changed an aggregate the batch depends on, the store refuses the whole
batch; its documents are then decided again on fresh state and saved one by one, each retried
a bounded number of times before it is refused in one line.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from commands.documents import BadDocument, Command, parse
from commands.handlers import Evolve, Unit, handle, reads
from domain import ids
from domain.errors import Rejected
from domain.events import DomainEvent
from tollbook.eventstore import Conflict, EventStore
from tollbook.memory import without_cycle_collection

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

    def as_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "unchanged": self.unchanged,
            "rejected": [{"line": r.line, "error": r.error} for r in self.rejected],
        }


@dataclass
class _Decided:
    line: int
    command: Command
    content_hash: str
    events: list[DomainEvent] = field(default_factory=list)
    rejected: str | None = None


class Ingestor:
    """Feeds documents into one store for one editor.

    Documents are read ahead ``prefetch_documents`` at a time (what they read is loaded in a
    few queries) and saved ``batch_events`` at a time, one transaction each, whose commit runs
    behind while the next batch is decided."""

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
        # Aggregates as last saved or loaded; safe to keep because a stale entry only
        # makes the store refuse the batch, and then the cache is dropped.
        self._cache: dict[UUID, Any] = {}
        self._pending: dict[UUID, Any] = {}
        self._batch: list[_Decided] = []  # decided, not yet saved
        self._batch_events = 0

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
                    parsed.append(_Decided(number, command, content_hash))
                    if len(parsed) >= self.prefetch_documents:
                        self._run(parsed, result)
                        parsed = []
                self._run(parsed, result)
                self._save(result)
            finally:
                self.store.settle()  # nothing is accepted before it is on disk
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
            if self._batch_events >= self.batch_events:
                self._save(result)

    def _prefetch(self, parsed: list[_Decided]) -> None:
        """Loads the aggregates the documents will read that are not cached, in a few queries
        (one query per aggregate is what made bulk ingest slow)."""
        everything = [reads(decided.command, decided.content_hash) for decided in parsed]
        if len(self._cache) + sum(map(len, everything)) > self.cache_size:
            self._forget()
        # Receipts first: a document already received reads nothing else (a repeated import).
        self._load_many(dict(found[0] for found in everything))
        rest: dict[UUID, Evolve] = {}
        for found in everything:
            if self._cache.get(found[0][0], _ABSENT) is None:
                rest.update(found[1:])
        self._load_many(rest)

    def _load_many(self, aggregates: dict[UUID, Evolve]) -> None:
        wanted = {k: v for k, v in aggregates.items() if k not in self._cache and k not in self._pending}
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
            state = self._cache.get(aggregate_id, _ABSENT)
        if state is _ABSENT:
            state = None
            for event in self.store.events_of(aggregate_id):
                state = evolve(state, event)
            if len(self._cache) >= self.cache_size:
                self._forget()
            self._cache[aggregate_id] = state
        return state

    def _forget(self) -> None:
        """Empties the cache. The last batch's commit may still be running, and until it ends
        the store reads as before it: only the cache knows that batch's changes."""
        self.store.settle()
        self._cache.clear()

    def _append(self, batch: list[_Decided]) -> list[int]:
        """Saves the batch's events; on a conflict decides again on fresh state, after a short
        random pause (so racing writers stop colliding), a bounded number of times. A batch of
        several documents that conflicts is split: each document is decided and saved on its
        own, so one contended record does not hold back the rest."""
        for attempt in range(self.max_retries + 1):
            accepted = [d for d in batch if d.events]
            try:
                return self.store.append([d.events for d in accepted], commit_behind=True) if accepted else []
            except Conflict:
                self._cache.clear()
                self._pending.clear()
            if len(batch) > 1:
                stamps: list[int] = []
                for d in batch:
                    stamps += self._append([self._decide(d)])
                    self._cache.update(self._pending)
                    self._pending.clear()
                return stamps
            if attempt < self.max_retries:
                time.sleep(random.uniform(0, 0.002 * 2**attempt))
                self._decide(batch[0])
        batch[0].events, batch[0].rejected = [], "another writer kept changing the same records; try again"
        return []

    def _decide(self, decided: _Decided) -> _Decided:
        unit = Unit(self._load, self.recorded_by)
        try:
            handle(decided.command, decided.content_hash, unit)
        except Rejected as rejected:
            decided.rejected, decided.events = str(rejected), []
        else:
            decided.rejected, decided.events = None, unit.events
            self._pending.update(unit.changed)
        return decided

    def _save(self, result: IngestResult) -> None:
        batch, self._batch, self._batch_events = self._batch, [], 0
        stamps = self._append(batch)
        if stamps:
            result.last_recorded_at = stamps[-1]
        self._cache.update(self._pending)
        self._pending.clear()
        for d in batch:
            if d.rejected:
                result.rejected.append(Rejection(d.line, d.rejected))
            elif d.events:
                result.accepted += 1
            else:
                result.unchanged += 1
