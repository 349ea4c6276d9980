"""ACLED exports and ACLED's deleted-events list (CONTRACT section 7).

Each row of an export is incident ``acled:<event_id_cnty>``: ``occurred_from`` from
``event_date``, ``country``, ``admin1``, ``admin2`` as they are, ``place`` from ``location``,
``lat``/``lon`` from ``latitude``/``longitude``, ``perpetrator`` from ``actor1``, ``event_type``;
``sub_event_type``, ``actor2``, ``notes``, ``source`` (as given, several sources separated by
``;``), ``geo_precision`` and ``time_precision`` kept as attributes. One claim by source
``ACLED``, measure ``killed``, group ``all``, ``low`` = ``fatalities``.

Layouts: ACLED's current exports (31 columns: ``disorder_type``, ``civilian_targeting``, ``iso``,
``region``, ``admin3``, ``source_scale``, ``tags``, ``inter1``/``inter2`` as text, …) and older
ones (``data_id``, ``event_id_no_cnty``, ``iso3``, numeric ``inter1``/``inter2``/``interaction``)
are read alike: the columns above are required, in any order, and every other column is kept as
an attribute under its own name (``year``, ``iso``, ``data_id``, ``event_id_no_cnty``,
``inter1``, ``inter2`` and ``interaction`` as numbers when they are whole numbers; the rest as
text). A column named like one of the incident's own fields (``title``, ``occurred_to``, …) is
not taken as an attribute. An empty cell sets nothing (and clears the attribute in a later
export).

ACLED stamps each row with ``timestamp`` (Unix seconds), when the row was last changed. So a row
is one part of the report ``acled-<timestamp>`` (every row ACLED changed in the same update is
one report), published at that time, with ``event_id_cnty`` as its part key: importing a row
again is a no-op, and a row ACLED revised (new timestamp) adds a version only where the figure
changed, and amends only the fields that changed.

``--complete``: ACLED's claims on ``acled:`` incidents absent from the file are retracted at
``--published-at``, by default the latest ``timestamp`` in the file.

Deletions (``event_id_cnty``, ``deleted_timestamp`` in Unix seconds or as a date, ``2024-06-01``
or ``1 June 2024``, or an RFC 3339 instant): each ACLED claim of ``acled:<event_id_cnty>`` that
counts at ``deleted_timestamp`` is retracted then.

The release (commands/importers/releases.py) of an export is named ``<file name>@<latest row
timestamp>``, of a deletions list ``<file name>@<latest deleted_timestamp>``.

Dates: ``event_date`` may be ``2019-01-15`` or, in older exports, ``15 January 2019``.
"""

from __future__ import annotations

from tollbook.commands.documents import content_hash
from tollbook.commands.importers.common import (
    Book, ImportSummary, RowBuilder, RowRejection, code, coordinate, count, day, ingest_retractions, ingest_rows, required,
    retract_absent, retraction, stored_claims, text, unix_seconds,
)
from tollbook.commands.importers.csvrows import BadRow, CsvRows, Progress, Row, RowError
from tollbook.commands.importers.releases import Release, file_name
from tollbook.domain.incident import KNOWN_FIELDS
from tollbook.domain.time import format_instant, parse_instant, to_micros

SOURCE = "ACLED"
PUBLISHER = "Armed Conflict Location & Event Data Project (ACLED)"
PREFIX = "acled:"
COLUMNS = (
    "event_id_cnty", "event_date", "time_precision", "event_type", "sub_event_type", "actor1", "actor2",
    "country", "admin1", "admin2", "location", "latitude", "longitude", "geo_precision", "source", "notes",
    "fatalities", "timestamp",
)
DELETION_COLUMNS = ("event_id_cnty", "deleted_timestamp")
# Attributes of ACLED's layouts that are numbers where they are whole numbers (older exports
# code inter1/inter2/interaction as numbers, current ones as text).
NUMBER_ATTRIBUTES = frozenset({"year", "iso", "data_id", "event_id_no_cnty", "inter1", "inter2", "interaction"})
# What the rows' own mapping sets: no other column is taken as an attribute under these names.
_MAPPED = frozenset({*COLUMNS, *KNOWN_FIELDS, "incident_id", "kind", ""})


class AcledExport(RowBuilder):
    id_column = "event_id_cnty"
    prefix = PREFIX

    def __init__(self, *, remember_ids: bool):
        super().__init__(remember_ids=remember_ids)
        self.latest: tuple[int, str] | None = None  # the latest row timestamp: seconds, RFC 3339
        self.attributes: list[str] | None = None  # the file's columns beyond the mapping, once seen

    def extra(self, row: Row) -> dict:
        """The row's cells beyond the contract's mapping, as attributes."""
        if self.attributes is None:
            self.attributes = [name for name in row.cells if name not in _MAPPED]
        return {name: code(row, name) if name in NUMBER_ATTRIBUTES else text(row, name) for name in self.attributes}

    def earlier(self, document: dict) -> tuple[str, ...]:
        """Before the columns beyond the mapping were kept (aa66c0a and earlier), a row's
        incident had none of them."""
        if not self.attributes:
            return ()
        [incident] = document["incidents"]
        return (content_hash(document | {"incidents": [{k: v for k, v in incident.items() if k not in self.attributes}]}),)

    def document(self, row: Row) -> dict:
        event_id, incident_id = self.identify(row)
        published_at = unix_seconds(row, "timestamp")
        seconds = int(required(row, "timestamp"))
        incident = {
            "incident_id": incident_id,
            "occurred_from": day(row, "event_date", words=True),
            "country": text(row, "country"),
            "admin1": text(row, "admin1"),
            "admin2": text(row, "admin2"),
            "place": text(row, "location"),
            "lat": coordinate(row, "latitude", 90),
            "lon": coordinate(row, "longitude", 180),
            "perpetrator": text(row, "actor1"),
            "event_type": text(row, "event_type"),
            "sub_event_type": text(row, "sub_event_type"),
            "actor2": text(row, "actor2"),
            "notes": text(row, "notes"),
            "source": text(row, "source"),
            "geo_precision": code(row, "geo_precision"),
            "time_precision": code(row, "time_precision"),
            **self.extra(row),
        }
        claim = {"incident_id": incident_id, "source": SOURCE, "measure": "killed", "group": "all",
                 "low": count(row, "fatalities")}
        if self.latest is None or seconds > self.latest[0]:
            self.latest = (seconds, published_at)
        return {
            "kind": "report", "report_id": f"acled-{seconds}", "part": event_id,
            "revise": "changed", "publisher": PUBLISHER, "published_at": published_at,
            "incidents": [incident], "claims": [claim],
        }


def _instant(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    try:
        return format_instant(parse_instant(value))
    except ValueError as error:
        raise ValueError(f"{option}: {error}") from None


def import_acled(book: Book, path: str, *, complete: bool = False, published_at: str | None = None,
                 encoding: str = "utf-8", progress: Progress | None = None) -> ImportSummary:
    """Imports an ACLED export; see the module's documentation."""
    published = _instant(published_at, "--published-at")
    builder = AcledExport(remember_ids=complete)
    summary = ImportSummary("acled")
    with CsvRows(path, required=COLUMNS, kind="an ACLED", encoding=encoding, progress=progress) as rows:
        receipt = Release.begin(book, rows, importer="acled", complete=complete)
        if receipt.skip(summary):
            return summary
        ingest_rows(book, rows, builder, summary)
    latest = builder.latest[1] if builder.latest else None
    at = published or latest
    if complete and at is None:
        summary.rejected.append(RowRejection(None, "--complete: no row was imported, so there is no time to "
                                                   "retract the absent events at; give --published-at"))
    elif complete:
        retract_absent(book, summary, builder, source=SOURCE, published_at=at,
                       reason=f"absent from the ACLED export {_name(path)}")
    receipt.record(summary, name=_release(path, latest), published_at=at)
    return summary


def _name(path: str) -> str:
    return "(stdin)" if path == "-" else file_name(path)


def _release(path: str, latest: str | None) -> str:
    """An ACLED release's name: the file's name and its latest timestamp."""
    return f"{_name(path)}@{latest}" if latest else _name(path)


def deleted_at(row: Row, column: str) -> str:
    """When ACLED deleted an event: Unix seconds, a date or an RFC 3339 instant."""
    value = required(row, column)
    if value.lstrip("+-").isdigit():
        return unix_seconds(row, column)
    try:
        when = day(row, column, words=True)
    except RowError:
        try:
            return format_instant(parse_instant(value))
        except ValueError:
            raise RowError(column, f"must be Unix seconds or a date, not {value!r}") from None
    return format_instant(parse_instant(when))


def import_acled_deletions(book: Book, path: str, *, encoding: str = "utf-8",
                           progress: Progress | None = None, batch: int = 500) -> ImportSummary:
    """Retracts the claims of the events in ACLED's deleted-events list."""
    summary = ImportSummary("acled-deletions")
    latest: tuple[int, str] | None = None  # the latest deleted_timestamp: microseconds, RFC 3339
    with CsvRows(path, required=DELETION_COLUMNS, kind="an ACLED deletions", encoding=encoding,
                 progress=progress) as rows:
        receipt = Release.begin(book, rows, importer="acled-deletions")
        if receipt.skip(summary):
            return summary
        pending: list[tuple[int, str, str]] = []  # (line, incident_id, deleted at)
        for item in rows:
            summary.rows += 1
            if isinstance(item, BadRow):
                summary.rejected.append(RowRejection(item.line, item.error))
                continue
            try:
                pending.append((item.line, PREFIX + required(item, "event_id_cnty"),
                                deleted_at(item, "deleted_timestamp")))
            except ValueError as error:
                summary.rejected.append(RowRejection(item.line, str(error)))
                continue
            at = to_micros(parse_instant(pending[-1][2]))
            if latest is None or at > latest[0]:
                latest = (at, pending[-1][2])
            if len(pending) >= batch:
                _delete(book, pending, summary)
                pending = []
        _delete(book, pending, summary)
    summary.rejected.sort(key=lambda r: (r.line is None, r.line or 0))
    last = latest[1] if latest else None
    receipt.record(summary, name=_release(path, last), published_at=last)
    return summary


def _delete(book: Book, pending: list[tuple[int, str, str]], summary: ImportSummary) -> None:
    if not pending:
        return
    stored = stored_claims(book, source=SOURCE, incident_ids=sorted({incident_id for _, incident_id, _ in pending}))
    documents: list[tuple[int, dict]] = []  # (line, retraction)
    for line, incident_id, deleted_at in pending:
        claims = stored.get(incident_id)
        if not claims:
            summary.not_found += 1
            continue
        at = to_micros(parse_instant(deleted_at))
        found = [(line, retraction(c.claim, deleted_at, "deleted by ACLED")) for c in claims if c.counts_at(at)]
        if not found:
            summary.unchanged += 1
        documents.extend(found)
    rejected_before = len(summary.rejected)
    summary.retracted += ingest_retractions(book, documents, summary)
    # A row is imported when its retractions were stored.
    refused = {r.line for r in summary.rejected[rejected_before:]}
    summary.imported += len({line for line, _ in documents} - refused)
