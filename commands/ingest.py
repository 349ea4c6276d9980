"""Bulk ingest: many documents per transaction, each document still all-or-nothing.

One pipeline, for JSON Lines and for the importers' rows alike, in two parts over one cache:
- the :class:`Decider` parses each document, turns it into a unit of work and handles it (a bad
  one is rejected with its line and nothing of it kept);
- the :class:`BatchWriter` saves the events of the accepted ones together, a batch at a time,
  written behind (on SQLite) while the next batch is decided. If another writer changed an
  aggregate a batch depends on, the store refuses the whole batch; its documents, and those
  decided on top of it, are then decided again on fresh state and saved one by one, each
  retried a bounded number of times before it is refused in one line;
- :class:`States` is what both read: each aggregate's state as decided (the batch being
  decided), saving (the batch being written behind) or saved (as last stored or loaded).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Protocol
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
    earlier: tuple[str, ...] = ()  # the hashes an importer's row had as older code built it
    events: list[DomainEvent] = field(default_factory=list)  # until saved
    rejected: str | None = None
    changes: bool = False


class States:
    """Aggregates' states in three layers, read newest first: ``decided`` (what the batch being
    decided changes), ``saving`` (what the batch being written behind changes; kept apart from
    ``saved``, which may be emptied before that batch is stored) and ``saved`` (as last saved or
    loaded, at most ``size`` of them). A stale saved entry of one a batch writes makes the store
    refuse the batch (and then the layers are dropped); one only read (that an incident exists,
    a claim's figures for revise="changed") is trusted as loaded."""

    def __init__(self, store: EventStore, size: int):
        self.store = store
        self.size = size
        self.decided: dict[UUID, Any] = {}
        self.saving: dict[UUID, Any] = {}
        self.saved: dict[UUID, Any] = {}
        self._watches: list[set[UUID]] = []  # see watch()

    def get(self, aggregate_id: UUID, evolve: Evolve) -> Any:
        for layer in (self.decided, self.saving, self.saved):
            state = layer.get(aggregate_id, _ABSENT)
            if state is not _ABSENT:
                return state
        state = None
        for event in self.store.events_of(aggregate_id):
            state = evolve(state, event)
        self._keep({aggregate_id: state})
        return state

    def is_absent(self, aggregate_id: UUID) -> bool:
        """Known (loaded) not to exist yet."""
        return self.saved.get(aggregate_id, _ABSENT) is None

    def load_many(self, aggregates: dict[UUID, Evolve]) -> None:
        """Loads those not held in any layer, in a few queries."""
        wanted = {k: v for k, v in aggregates.items()
                  if k not in self.saved and k not in self.decided and k not in self.saving}
        if not wanted:
            return
        found = self.store.events_of_many(list(wanted))
        loaded = {}
        for aggregate_id, evolve in wanted.items():
            state = None
            for event in found.get(aggregate_id, ()):
                state = evolve(state, event)
            loaded[aggregate_id] = state
        self.saved.update(loaded)

    def load_reads(self, everything: list[list[tuple[UUID, Evolve]]]) -> None:
        """Loads what documents read (:func:`reads` of each) that is not held, in a few queries.
        Receipts first: a document already received reads nothing else (a repeated import)."""
        self.make_room(sum(map(len, everything)))
        self.load_many(dict(found[0] for found in everything))
        rest: dict[UUID, Evolve] = {}
        for found in everything:
            if self.is_absent(found[0][0]):
                rest.update(found[1:])
        self.load_many(rest)

    def loaded(self, everything: list[list[tuple[UUID, Evolve]]]) -> list[Any]:
        """What :meth:`load_reads` loaded, in the order asked: each aggregate's state, ``LEFT``
        where it was not loaded (a loader's answer)."""
        return [self.saved.get(aggregate_id, LEFT) for found in everything for aggregate_id, _ in found]

    def watch(self) -> set[UUID]:
        """Before states are loaded elsewhere (:meth:`take`): the aggregates this ingest changed
        that may not be committed yet, and from now on every one it changes. A state loaded
        elsewhere of one of them may be stale, and no conflict would tell if deciding on it
        stored nothing."""
        watched = set(self.decided) | set(self.saving)
        self._watches.append(watched)
        return watched

    def take(self, states: dict[UUID, Any], watched: set[UUID]) -> None:
        """States loaded elsewhere since :meth:`watch`: kept, but for those held or watched."""
        self.forget_watch(watched)
        self.make_room(len(states))
        self.saved.update((aggregate_id, state) for aggregate_id, state in states.items()
                          if aggregate_id not in watched and aggregate_id not in self.saved
                          and aggregate_id not in self.decided and aggregate_id not in self.saving)

    def forget_watch(self, watched: set[UUID]) -> None:
        self._watches.remove(watched)

    def changed(self, states: dict[UUID, Any]) -> None:
        """What a document decided changes."""
        self.decided.update(states)
        for watched in self._watches:
            watched.update(states)

    def make_room(self, coming: int) -> None:
        if len(self.saved) + coming > self.size:
            self.saved.clear()

    def _keep(self, states: dict[UUID, Any]) -> None:
        if len(self.saved) >= self.size:
            self.saved.clear()
        self.saved.update(states)

    def start_saving(self) -> None:
        """The decided batch goes to be written behind."""
        self.saving.update(self.decided)
        self.decided.clear()

    def saving_landed(self) -> None:
        self.saved.update(self.saving)
        self.saving.clear()

    def decided_saved(self) -> None:
        """The decided batch was saved at once (one by one)."""
        self.saved.update(self.decided)
        self.decided.clear()

    def forget(self, *, saving: bool = False) -> None:
        """Drops what may be stale: another writer got there first."""
        self.saved.clear()
        self.decided.clear()
        if saving:
            self.saving.clear()


class Decider:
    """Parse -> unit -> handle: the events of one document, decided on the states."""

    def __init__(self, states: States, recorded_by: str):
        self.states = states
        self.recorded_by = recorded_by

    @staticmethod
    def reads(parsed: list[_Decided]) -> list[list[tuple[UUID, Evolve]]]:
        """What the documents will read, to be loaded in a few queries (one query per aggregate
        is what made bulk ingest slow)."""
        return [reads(decided.command, decided.content_hash) for decided in parsed]

    def decide(self, decided: _Decided) -> _Decided:
        unit = Unit(self.states.get, self.recorded_by)
        command, decided.command = decided.command or parse(decided.source)[0], None
        try:
            handle(command, decided.content_hash, unit, decided.earlier)
        except Rejected as rejected:
            decided.rejected, decided.events = str(rejected), []
        else:
            decided.rejected, decided.events = None, unit.events
            self.states.changed(unit.changed)
        decided.changes = bool(decided.events)
        return decided


class BatchWriter:
    """Saves decided documents about ``batch_events`` events or ``batch_documents`` documents
    at a time (a document is never split), one transaction each. On SQLite a batch is written
    behind: a background thread inserts and commits it while the next one is decided on the
    state it leaves. If it conflicts, it and the documents decided since are decided again and
    saved one by one."""

    def __init__(self, store: EventStore, decider: Decider, *, batch_events: int, batch_documents: int,
                 max_retries: int):
        self.store = store
        self.decider = decider
        self.states = decider.states
        self.batch_events = batch_events
        self.batch_documents = batch_documents
        self.max_retries = max_retries
        self._batch: list[_Decided] = []
        self._events = 0
        self._writing: tuple[list[_Decided], Writing] | None = None  # the batch being written behind

    def add(self, decided: _Decided, result: IngestResult) -> None:
        self._batch.append(decided)
        self._events += len(decided.events)
        # Unchanged documents add no events: a batch also ends at a number of documents, or
        # an unchanged re-import would hold every document of the file (issue 11, item 5).
        if self._events >= self.batch_events or len(self._batch) >= self.batch_documents:
            self.save(result)

    def save(self, result: IngestResult) -> None:
        """Writes the decided batch behind, once the one before it is stored."""
        self.land(result)
        batch, self._batch, self._events = self._batch, [], 0
        accepted = [d.events for d in batch if d.events]
        if not accepted:  # nothing to write: documents unchanged or rejected
            self._count(batch, [], result)
            return
        writing = self.store.write_behind(accepted)
        for d in batch:
            d.events = []  # written down as rows
        self._writing = batch, writing
        self.states.start_saving()

    def land(self, result: IngestResult) -> None:
        """Waits for the batch being written behind and counts its documents; if another
        writer got to one of its records first, decides it again with the documents decided
        on top of it."""
        if self._writing is None:
            return
        batch, writing = self._writing
        self._writing = None
        try:
            writing.settle()
        except Conflict:
            later, self._batch, self._events = self._batch, [], 0
            self.states.forget(saving=True)
            self._count(batch + later, self._one_by_one(batch + later), result)
            return
        self.states.saving_landed()
        self._count(batch, writing.stamps, result)

    def abandon(self) -> None:
        """After an error: the batch being written is stored whole or not at all; nothing else is kept."""
        if self._writing is not None:
            with suppress(Exception):
                self._writing[1].settle()
        self._writing, self._batch, self._events = None, [], 0
        self.states.forget(saving=True)

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
                self.states.forget()
            if len(batch) > 1:
                return self._one_by_one(batch)
            if attempt < self.max_retries:
                time.sleep(random.uniform(0, 0.002 * 2**attempt))
                self.decider.decide(batch[0])
        batch[0].events, batch[0].rejected = [], "another writer kept changing the same records; try again"
        return []

    def _one_by_one(self, batch: list[_Decided]) -> list[int]:
        stamps: list[int] = []
        for d in batch:
            stamps += self._append([self.decider.decide(d)])
            self.states.decided_saved()
        return stamps

    @staticmethod
    def _count(batch: list[_Decided], stamps: list[int], result: IngestResult) -> None:
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


class Loader(Protocol):
    """Loads states in another process while this one decides (tollbook/follower.py)."""

    def request(self, everything: list[list[tuple[UUID, Evolve]]]) -> Callable[[], list[Any] | None]:
        """Asks for what :meth:`States.load_reads` would load; the answer, once received, is
        each aggregate's state in the order asked (``LEFT`` where it was not loaded), or None if
        the other process could not (then this one loads them)."""
        ...


LEFT = "left"  # a loader's answer for an aggregate it did not load (a received document's others)


@dataclass
class _Ahead:
    """A run whose states are being loaded elsewhere while the run before it is decided."""

    parsed: list[_Decided]
    everything: list[list[tuple[UUID, Evolve]]]
    watched: set[UUID]
    answer: Callable[[], list[Any] | None]


class Ingestor:
    """Feeds documents into one store for one editor: the decider and the batch writer over one
    cache. Documents are read ahead ``prefetch_documents`` at a time (what they read is loaded
    in a few queries) and saved about ``batch_events`` at a time (see :class:`BatchWriter`);
    ``cache_size`` aggregates are kept as saved (the importers keep fewer: each row's are
    touched about once). With a ``loader``, a run's states are loaded by another process while
    the run before it is decided."""

    # Big transactions: each commit writes every index page its events touched (ids are random)
    # and syncs, so its cost hardly depends on how many events it holds.
    def __init__(self, store: EventStore, recorded_by: str, *, prefetch_documents: int = 5000,
                 batch_events: int = 25_000, cache_size: int = 250_000, max_retries: int = 8,
                 loader: Loader | None = None):
        self.states = States(store, cache_size)
        self.decider = Decider(self.states, recorded_by)
        self.writer = BatchWriter(store, self.decider, batch_events=batch_events,
                                  batch_documents=prefetch_documents, max_retries=max_retries)
        self.loader = loader
        # With a loader two runs are held at once (one decided, one loaded): each is half as long.
        self._run_length = prefetch_documents // 2 if loader else prefetch_documents
        self._ahead: _Ahead | None = None
        self._reading_stored = False  # whether the last run read stored states (see _stored)

    def ingest(self, lines: Iterable[Any], result: IngestResult | None = None, *,
               numbered: bool = False) -> IngestResult:
        """``numbered``: ``lines`` yields ``(line number, document, earlier hashes)`` (an
        importer's documents carry the line of the CSV row they came from, and the hashes the
        same row had as older code built it); else they are numbered 1, 2, …"""
        result = result or IngestResult()
        parsed: list[_Decided] = []
        with without_cycle_collection():
            try:
                for number, line, *earlier in (lines if numbered else enumerate(lines, 1)):
                    if not isinstance(line, dict) and not line.strip():
                        continue
                    try:
                        command, content_hash = parse(line)
                    except BadDocument as error:
                        result.rejected.append(Rejection(number, str(error)))
                        continue
                    parsed.append(_Decided(number, line, command, content_hash, *earlier))
                    if len(parsed) >= self._run_length:
                        self._run(parsed, result)
                        parsed = []
                self._run(parsed, result)
                self._decide_ahead(result)
                self.writer.save(result)
                self.writer.land(result)  # nothing is accepted before it is on disk
            except BaseException as error:
                self.writer.abandon()
                if isinstance(error, StoreFull):
                    result.rejected.sort(key=lambda r: r.line)
                    raise IngestStopped(error, result) from error
                raise
            finally:
                self._ahead = None
            # Let go of what only this ingest needed while the collector is still off: back on
            # (and at the process's exit) it would walk all of it once more.
            self.states.forget(saving=True)
            ids.forget()
        result.rejected.sort(key=lambda r: r.line)
        return result

    def _run(self, parsed: list[_Decided], result: IngestResult) -> None:
        """Decides a run of parsed documents, loading what they read in one go first; with a
        loader, asks it for this run's states and decides the run before."""
        everything = self.decider.reads(parsed)
        if self.loader is not None and self._reading_stored:
            ahead = _Ahead(parsed, everything, self.states.watch(), self.loader.request(everything))
            self._decide_ahead(result)
            self._ahead = ahead
            return
        self._decide_ahead(result)
        self.states.load_reads(everything)
        self._reading_stored = self._stored(self.states.loaded(everything))
        self._decide(parsed, result)
        # The ids derived for this run are reused within it (prefetch, then deciding); kept
        # longer, they made an import's memory grow with the file up to the caches' size.
        # (With a loader two runs' ids are in use at once: they fit in the caches.)
        ids.forget()

    def _decide_ahead(self, result: IngestResult) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return
        answer = ahead.answer()
        if answer is None:  # the loader could not: loaded here, on what is held now
            self.states.forget_watch(ahead.watched)
            self.states.load_reads(ahead.everything)
            self.loader = None
        else:
            self._reading_stored = self._stored(answer)
            flat = [aggregate_id for found in ahead.everything for aggregate_id, _ in found]
            self.states.take({aggregate_id: state for aggregate_id, state in zip(flat, answer, strict=True)
                              if state != LEFT}, ahead.watched)
        self._decide(ahead.parsed, result)

    @staticmethod
    def _stored(states: list[Any]) -> bool:
        """Whether a run read stored states, a quarter of what it asked for or more (a next
        release's rows): only then are the next run's loaded elsewhere. A fresh import's are
        not: loaded here they cost little, and two runs in flight would hold more memory."""
        return sum(state is not None and state != LEFT for state in states) * 4 >= len(states)

    def _decide(self, parsed: list[_Decided], result: IngestResult) -> None:
        for decided in parsed:
            self.writer.add(self.decider.decide(decided), result)
