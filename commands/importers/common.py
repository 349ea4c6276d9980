"""What the importers share: cell conversions that name their column, the summary, and the run.

An importer turns each CSV row into ONE contract report document (a dict, one ``part`` of the
dataset's report, ``revise: "changed"``) and feeds them to the same ingest as JSON Lines
documents: there is no second path into the store. Rows are streamed and ingested in batches,
so memory does not grow with the file (with ``--complete`` the ids of the file's incidents are
kept, a few dozen bytes each, to find the ones that are absent).
"""

from __future__ import annotations

import gc
import math
import re
from collections.abc import Container, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Protocol

from tollbook.commands.importers.csvrows import BadRow, CsvRows, Row, RowError
from tollbook.domain.ids import source_key
from tollbook.domain.time import format_instant, format_recorded, parse_instant, to_micros
from tollbook.domain.tally import Candidate, counts, current
from tollbook.store.eventstore import StoreFull

if TYPE_CHECKING:
    from tollbook.commands.ingest import IngestResult, Loader
    from tollbook.store.eventstore import EventStore


class Book(Protocol):
    """What an importer needs of the book it imports into (the Python API's Tollbook is one): the
    store, who records, and the read models brought up to date."""

    store: EventStore
    editor: str

    def refresh(self) -> int: ...

    def projecting_alongside(self, size: int) -> AbstractContextManager[Loader | None]: ...


# Aggregates are touched about once per import; a small cache keeps memory flat.
IMPORT_CACHE = 20_000
# Batches half the JSON ingest's: the decided batch and the one written behind are most of an
# import's memory (100,000 GED rows: 270 -> 204 MB peak, 5% slower), and the projector process
# beside a long import (tollbook/follower.py) needs room of its own.
IMPORT_DOCUMENTS, IMPORT_EVENTS = 2_500, 12_500
_INTEGER = re.compile(r"[+-]?\d+")
_DAY = re.compile(r"(\d{4}-\d{2}-\d{2})(?:[ T]00:00(?::00(?:\.0+)?)?)?")


# -- cells --------------------------------------------------------------------------------

def text(row: Row, column: str) -> str | None:
    """The cell trimmed; ``None`` when empty (a field emptied in a later release is cleared)."""
    value = row.cells.get(column)
    if value is None:
        return None
    value = value.strip()
    return value or None


def required(row: Row, column: str) -> str:
    value = text(row, column)
    if value is None:
        raise RowError(column, "is empty")
    return value


def count(row: Row, column: str, *, unknown: bool = False) -> int | None:
    """A whole number >= 0. With ``unknown``, an empty cell or ``-1`` is ``None`` (unknown)."""
    value = text(row, column)
    if value is None:
        if unknown:
            return None
        raise RowError(column, "is empty")
    if not _INTEGER.fullmatch(value):
        raise RowError(column, f"must be a whole number, not {value!r}")
    number = int(value)
    if number == -1 and unknown:
        return None
    if number < 0:
        raise RowError(column, f"must be >= 0, not {number}")
    return number


def code(row: Row, column: str, *, unknown: bool = False) -> int | str | None:
    """An attribute that is usually a number (a precision code): an int when it is one, else
    the text as given (an attribute is kept, not judged); ``-1`` is ``None`` with ``unknown``."""
    value = text(row, column)
    if value is None or not _INTEGER.fullmatch(value):
        return value
    number = int(value)
    return None if unknown and number == -1 else number


def coordinate(row: Row, column: str, bound: int) -> float | None:
    value = text(row, column)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise RowError(column, f"must be a number, not {value!r}") from None
    if not math.isfinite(number) or not -bound <= number <= bound:
        raise RowError(column, f"must be between -{bound} and {bound}, not {value}")
    return number


_MONTHS = {name: number for number, names in enumerate(
    (("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",), ("june", "jun"),
     ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"), ("october", "oct"),
     ("november", "nov"), ("december", "dec")), 1) for name in names}
_WORD_DATE = re.compile(r"(\d{1,2})[ -]([A-Za-z]+)[ -](\d{4})")


def day(row: Row, column: str, *, words: bool = False) -> str | None:
    """A date as ``YYYY-MM-DD``: ISO (optionally with a midnight time), or with ``words`` also
    ``15 January 2019`` / ``15-Jan-2019`` (older ACLED exports)."""
    value = text(row, column)
    if value is None:
        return None
    match = _DAY.fullmatch(value)
    try:
        if match:
            return date.fromisoformat(match.group(1)).isoformat()
        match = _WORD_DATE.fullmatch(value) if words else None
        if match and match.group(2).lower() in _MONTHS:
            return date(int(match.group(3)), _MONTHS[match.group(2).lower()], int(match.group(1))).isoformat()
    except ValueError:
        raise RowError(column, f"not a valid date: {value!r}") from None
    raise RowError(column, f"must be a date YYYY-MM-DD, not {value!r}")


def unix_seconds(row: Row, column: str) -> str:
    """A Unix time in seconds as an RFC 3339 instant."""
    value = required(row, column)
    if not _INTEGER.fullmatch(value) or int(value) < 0:
        raise RowError(column, f"must be Unix seconds (a whole number), not {value!r}")
    try:
        return format_instant(int(value) * 1_000_000)
    except OverflowError:
        raise RowError(column, f"out of range: {value}") from None


# -- the summary --------------------------------------------------------------------------

@dataclass
class RowRejection:
    line: int | None  # the CSV line where the row starts; None for what no row caused
    error: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.error}" if self.line is not None else self.error


@dataclass
class ImportSummary:
    """What an import did. Rows: ``imported`` stored something, ``unchanged`` stored nothing
    (already there), ``rejected`` were not taken; ``widened`` rows (low <= best <= high broken)
    were taken with a widened range. ``retracted``: claims retracted (absent from a complete
    file, or deleted); ``not_found``: deleted events that are not in the store."""

    kind: str
    report_id: str | None = None
    rows: int = 0
    imported: int = 0
    unchanged: int = 0
    widened: int = 0
    rejected: list[RowRejection] = field(default_factory=list)
    retracted: int = 0
    retracted_incidents: int = 0
    not_found: int = 0
    recorded_at: int | None = None
    release: dict[str, Any] | None = None  # the file's receipt (commands/importers/releases.py)
    already_imported: bool = False  # the same file's receipt was stored already: nothing stored

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "report_id": self.report_id, "rows": self.rows, "imported": self.imported,
            "unchanged": self.unchanged, "widened": self.widened,
            "rejected": [{"line": r.line, "error": r.error} for r in self.rejected],
            "retracted": self.retracted, "retracted_incidents": self.retracted_incidents,
            "not_found": self.not_found, "recorded_at": format_recorded(self.recorded_at),
            "already_imported": self.already_imported, "release": self.release,
        }

    def line(self) -> str:
        """The one-line summary the command line prints."""
        if self.kind == "acled-deletions":
            text = (f"{self.rows} deletions: retracted {self.retracted} claims, unchanged {self.unchanged}, "
                    f"not in the store {self.not_found}, rejected {len(self.rejected)}")
        else:
            text = (f"{self.rows} rows: imported {self.imported}, unchanged {self.unchanged}, "
                    f"widened {self.widened}, rejected {len(self.rejected)}")
            if self.retracted:
                text += (f"; retracted {self.retracted} claims of {self.retracted_incidents} incidents "
                         f"absent from the file")
        name = self.report_id or (self.release or {}).get("name")
        if name:
            text = f"{name}: {text}"
        if self.recorded_at is not None:
            text += f"; recorded at {format_recorded(self.recorded_at)}"
        if self.already_imported and self.release:
            then = f", when {self.release['rejected']} rows were rejected" if self.release["rejected"] else ""
            stored = "" if self.imported or self.retracted else ", nothing stored"
            text += (f"; already imported{stored}: this file (sha256 {self.release['sha256'][:12]}…) was recorded at "
                     f"{self.release['recorded_at']} by {self.release['recorded_by']}{then}")
        return text


# -- the run ------------------------------------------------------------------------------

class RowBuilder:
    """Turns rows into documents. With ``--complete`` it remembers the incident of every row,
    even of a row rejected for another cell, and counts the rows it could not identify."""

    id_column: str
    prefix: str

    def __init__(self, *, remember_ids: bool):
        self.seen: set[str] | None = set() if remember_ids else None
        self.unidentified = 0

    def identify(self, row: Row) -> tuple[str, str]:
        """The row's own id and its incident id."""
        own = required(row, self.id_column)
        incident_id = self.prefix + own
        if self.seen is not None:
            self.seen.add(incident_id)
        return own, incident_id

    def document(self, row: Row) -> dict:
        raise NotImplementedError

    def earlier(self, document: dict) -> tuple[str, ...]:
        """The content hashes of the documents older code built from the same row: a store it
        wrote holds the row under one of them, and the row is then unchanged, not different."""
        return ()


class ImportStopped(StoreFull):
    """The disk filled up mid-import; ``summary`` counts what was stored (each row whole)."""

    def __init__(self, error: StoreFull, summary: ImportSummary):
        super().__init__(str(error))
        self.summary = summary


def ingest_rows(book: Book, rows: CsvRows, builder: RowBuilder, summary: ImportSummary) -> set[int]:
    """Builds each row's document and ingests them all in batches; returns the lines of the
    rows that were rejected (by the importer or by the ledger)."""
    rejected: set[int] = set()

    def documents() -> Iterator[tuple[int, dict, tuple[str, ...]]]:
        for item in rows:
            summary.rows += 1
            if isinstance(item, BadRow):
                summary.rejected.append(RowRejection(item.line, item.error))
                rejected.add(item.line)
                builder.unidentified += 1
                continue
            try:
                document = builder.document(item)
            except RowError as error:
                summary.rejected.append(RowRejection(item.line, str(error)))
                rejected.add(item.line)
                builder.unidentified += error.column == builder.id_column
                continue
            yield item.line, document, builder.earlier(document)

    def count(result: IngestResult) -> None:
        for rejection in result.rejected:
            summary.rejected.append(RowRejection(rejection.line, rejection.error))
            rejected.add(rejection.line)
        summary.imported += result.accepted
        summary.unchanged += result.unchanged
        _stamp(summary, result.last_recorded_at)
        summary.rejected.sort(key=lambda r: (r.line is None, r.line or 0))

    from tollbook.commands.ingest import IngestStopped

    try:
        # The second core projects the rows' events and loads what the next rows read.
        with book.projecting_alongside(rows.size or 0) as loader:
            result = _ingest(book, documents(), loader)
    except IngestStopped as stopped:  # a full disk: the summary says how far it got
        count(stopped.result)
        raise ImportStopped(stopped, summary) from stopped
    count(result)
    return rejected


def ingest_retractions(book: Book, retractions: Iterable[tuple[int | None, dict]],
                       summary: ImportSummary) -> int:
    """Ingests retraction documents made by the importer, each with the line of the row that
    caused it (``None``: no row, e.g. absent from a complete file); returns how many were stored."""
    result = _ingest(book, ((line or 0, doc) for line, doc in retractions))
    for rejection in result.rejected:
        summary.rejected.append(RowRejection(rejection.line or None, f"retraction: {rejection.error}"))
    _stamp(summary, result.last_recorded_at)
    return result.accepted


def _ingest(book: Book, documents: Iterable[tuple[int, dict] | tuple[int, dict, tuple[str, ...]]],
            loader: Loader | None = None) -> IngestResult:
    from tollbook.commands.ingest import Ingestor

    with _fewer_collections():
        return Ingestor(book.store, book.editor, cache_size=IMPORT_CACHE, prefetch_documents=IMPORT_DOCUMENTS,
                        batch_events=IMPORT_EVENTS, loader=loader).ingest(documents, numbered=True)


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """A bulk import allocates millions of short-lived objects that reference counting frees;
    the cycle collector's frequent passes over the cached aggregates cost about a fifth of
    the time and free nothing, so they are made rarer for the import (memory is unchanged)."""
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], 100_000), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def _stamp(summary: ImportSummary, recorded_at: int | None) -> None:
    if recorded_at is not None:
        summary.recorded_at = max(summary.recorded_at or 0, recorded_at)


def retract_absent(book: Book, summary: ImportSummary, builder: RowBuilder, *, source: str,
                   published_at: str, reason: str) -> None:
    """``--complete``: retracts, at ``published_at``, the claims by ``source`` on the builder's
    incidents (its id prefix) that were not in the file and still count at that time (so
    running it again retracts nothing more). Not done if some row could not be identified:
    its incident might be one that looks absent."""
    if builder.unidentified:
        summary.rejected.append(RowRejection(None, (
            f"--complete: {builder.unidentified} rows could not be read as far as their {builder.id_column}, "
            "so no incident was retracted for being absent; correct them and import again")))
        return
    assert builder.seen is not None
    prefix, present = builder.prefix, builder.seen
    incidents: set[str] = set()
    at = to_micros(parse_instant(published_at))

    def retractions() -> Iterator[tuple[None, dict]]:
        for claim in counting_claims(book, source=source, published_at=at, prefix=prefix, besides=present):
            incidents.add(claim.incident_id)
            yield None, retraction(claim, published_at, reason)

    summary.retracted += ingest_retractions(book, retractions(), summary)
    summary.retracted_incidents += len(incidents)


def retraction(claim: Counting, published_at: str, reason: str) -> dict:
    return {"kind": "retraction", "incident_id": claim.incident_id, "source": claim.source,
            "measure": claim.measure, "group": claim.group, "published_at": published_at, "reason": reason}


# -- what still counts (read side) --------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Counting:
    incident_id: str
    source: str
    measure: str
    group: str


@dataclass(frozen=True, slots=True)
class StoredClaim:
    """A claim as the store holds it now: its versions (their figures left out)."""

    claim: Counting
    versions: tuple[Candidate, ...]

    def counts_at(self, published_at: int) -> bool:
        """Whether its version current at ``published_at`` is a figure, not a retraction."""
        return counts(current(self.versions, published_at))


def counting_claims(book: Book, *, source: str, published_at: int, prefix: str, besides: Container[str] = (),
                    page: int = 5000) -> Iterator[Counting]:
    """The claims by ``source`` on incidents whose id starts with ``prefix``, but not on those
    ``besides``, whose version current at ``published_at`` counts, as the store holds them now,
    in incident order.

    Read from the projections a page at a time, each page in its own read transaction, so the
    caller may write between pages."""
    book.refresh()
    key = source_key(source)
    # The prefix is matched exactly (substr); on SQLite the range bound also keeps the index
    # scan short (a PostgreSQL collation need not order "ucdp-ged;" after every "ucdp-ged:…").
    where, bound = "source_key = ? AND incident_id > ? AND substr(incident_id, 1, ?) = ?", []
    if not getattr(book.store, "is_postgres", False):
        where, bound = where + " AND incident_id < ?", [prefix[:-1] + chr(ord(prefix[-1]) + 1)]
    after = prefix
    while True:
        # Whole incidents a page: the index gives claims in incident order.
        claims = _claims(book, f"{where} ORDER BY incident_id LIMIT ?", [key, after, len(prefix), prefix, *bound, page])
        if not claims:
            return
        if len(claims) == page:
            last = claims[-1][0]
            claims = [c for c in claims if c[0] != last] or _claims(book, "source_key = ? AND incident_id = ?",
                                                                    [key, last])
        # The versions only of the claims asked about (a complete release's absent incidents: a few).
        for stored in _with_versions(book, [claim for claim in claims if claim[0] not in besides]):
            if stored.counts_at(published_at):
                yield stored.claim
        after = claims[-1][0]


def stored_claims(book: Book, *, source: str, incident_ids: list[str]) -> dict[str, list[StoredClaim]]:
    """The claims by ``source`` on the given incidents, by incident."""
    book.refresh()
    key = source_key(source)
    found: dict[str, list[StoredClaim]] = {}
    for start in range(0, len(incident_ids), 500):
        chunk = incident_ids[start:start + 500]
        claims = _claims(book, f"source_key = ? AND incident_id IN ({', '.join('?' * len(chunk))})", [key, *chunk])
        for stored in _with_versions(book, claims):
            found.setdefault(stored.claim.incident_id, []).append(stored)
    return found


def _claims(book: Book, where: str, params: list[Any]) -> list[tuple]:
    with book.store.transaction(write=False) as cursor:
        cursor.execute(f"SELECT incident_id, position, source, measure, grp FROM tb_claims WHERE {where}", params)
        return cursor.fetchall()


def _with_versions(book: Book, claims: list[tuple]) -> list[StoredClaim]:
    versions: dict[int, list[Candidate]] = {}
    with book.store.transaction(write=False) as cursor:
        for start in range(0, len(claims), 500):
            firsts = [c[1] for c in claims[start:start + 500]]  # each claim's first position
            cursor.execute(
                "SELECT claim_position, published_at, version_position, kind FROM tb_figures"
                f" WHERE claim_position IN ({', '.join('?' * len(firsts))}) AND to_recorded_at IS NULL", firsts)
            for first, published, position, kind in cursor.fetchall():
                versions.setdefault(first, []).append(Candidate(kind, None, None, None, published, position))
    return [StoredClaim(Counting(incident_id, source, measure, group), tuple(versions.get(first, ())))
            for incident_id, first, source, measure, group in claims]
