"""UCDP GED releases (CONTRACT section 7).

Each row is one part of the report ``ucdp-ged-<release>`` published at ``--published-at``:
incident ``ucdp-ged:<id>`` with its fields, and claims by source ``UCDP GED``, measure ``killed``:
group ``all`` from ``low``/``best``/``high``, and groups ``side_a``, ``side_b``, ``civilians`` and
``unknown`` from ``deaths_a``, ``deaths_b``, ``deaths_civilians``, ``deaths_unknown`` (low = high =
the count; zeros too; a cell of ``-1`` or empty means unknown and that group gets no claim).
The row's part key is its UCDP ``id``; claims are revised only when their figures changed.

A row whose ``low``, ``best``, ``high`` break ``low <= best <= high`` is kept: ``low`` = the
smallest, ``high`` = the largest of the three, ``best`` as given, and the claim's note says so.

Extensions beyond the contract: ``number_of_sources`` is kept as an attribute (``null`` for
UCDP's ``-1``, unknown); ``type_of_violence``, ``where_prec`` and ``date_prec`` are numbers.
"""

from __future__ import annotations


from tollbook.commands.importers.common import (
    Book, ImportSummary, RowBuilder, code, coordinate, count, day, ingest_rows, retract_absent, text,
)
from tollbook.commands.importers.csvrows import CsvRows, Progress, Row, RowError
from tollbook.commands.importers.releases import Release
from tollbook.domain.time import format_instant, parse_instant

SOURCE = "UCDP GED"
PUBLISHER = "Uppsala Conflict Data Program (UCDP)"
PREFIX = "ucdp-ged:"
COLUMNS = (
    "id", "conflict_name", "type_of_violence", "side_a", "side_b", "source_article", "where_prec",
    "where_coordinates", "adm_1", "adm_2", "latitude", "longitude", "country", "date_prec", "date_start",
    "date_end", "deaths_a", "deaths_b", "deaths_civilians", "deaths_unknown", "low", "best", "high",
)
GROUPS = (("side_a", "deaths_a"), ("side_b", "deaths_b"), ("civilians", "deaths_civilians"),
          ("unknown", "deaths_unknown"))


def report_id(release: str) -> str:
    return f"ucdp-ged-{release}"


class UcdpRelease(RowBuilder):
    """Builds the documents of one release's rows; remembers what the summary and --complete need."""

    id_column = "id"
    prefix = PREFIX

    def __init__(self, release: str, published_at: str, *, remember_ids: bool):
        super().__init__(remember_ids=remember_ids)
        self.release = release
        self.report_id = report_id(release)
        self.published_at = published_at
        self.widened: set[int] = set()

    def document(self, row: Row) -> dict:
        ucdp_id, incident_id = self.identify(row)
        low, best, high = count(row, "low"), count(row, "best", unknown=True), count(row, "high")
        occurred_from, occurred_to = day(row, "date_start"), day(row, "date_end")
        if occurred_from and occurred_to and occurred_to < occurred_from:
            raise RowError("date_end", f"{occurred_to} is before date_start {occurred_from}")
        incident = {
            "incident_id": incident_id,
            "occurred_from": occurred_from,
            "occurred_to": occurred_to,
            "country": text(row, "country"),
            "admin1": text(row, "adm_1"),
            "admin2": text(row, "adm_2"),
            "place": text(row, "where_coordinates"),
            "lat": coordinate(row, "latitude", 90),
            "lon": coordinate(row, "longitude", 180),
            "perpetrator": text(row, "side_a"),
            "side_b": text(row, "side_b"),
            "conflict_name": text(row, "conflict_name"),
            "type_of_violence": code(row, "type_of_violence"),
            "where_prec": code(row, "where_prec"),
            "date_prec": code(row, "date_prec"),
            "source_article": text(row, "source_article"),
        }
        if "number_of_sources" in row.cells:
            incident["number_of_sources"] = code(row, "number_of_sources", unknown=True)
        every = {"incident_id": incident_id, "source": SOURCE, "measure": "killed"}
        figures = [low, high] + ([best] if best is not None else [])
        main = every | {"group": "all", "low": min(figures), "high": max(figures)}
        if best is not None:
            main["best"] = best
        if high < low or (best is not None and not low <= best <= high):
            self.widened.add(row.line)
            main["note"] = (f"UCDP GED gives low {low}, best {best}, high {high}, which break low <= best <= high;"
                            f" kept as the range {main['low']}-{main['high']} with best {best}")
        claims = [main]
        for group, column in GROUPS:
            deaths = count(row, column, unknown=True)
            if deaths is not None:
                claims.append(every | {"group": group, "low": deaths, "high": deaths})
        return {
            "kind": "report", "report_id": self.report_id, "part": ucdp_id, "revise": "changed",
            "publisher": PUBLISHER, "title": f"UCDP Georeferenced Event Dataset {self.release}",
            "published_at": self.published_at, "incidents": [incident], "claims": claims,
        }


def check_release(release: str, published_at: str) -> tuple[str, str]:
    release = (release or "").strip()
    if not release:
        raise ValueError("--release: must not be empty")
    try:
        moment = parse_instant(published_at)
    except ValueError as error:
        raise ValueError(f"--published-at: {error}") from None
    return release, format_instant(moment)


def import_ucdp(book: Book, path: str, *, release: str, published_at: str, complete: bool = False,
                encoding: str = "utf-8", progress: Progress | None = None) -> ImportSummary:
    """Imports one UCDP GED release file; see the module's documentation."""
    release, published = check_release(release, published_at)
    builder = UcdpRelease(release, published, remember_ids=complete)
    summary = ImportSummary("ucdp", builder.report_id)
    with CsvRows(path, required=COLUMNS, kind="a UCDP GED", encoding=encoding, progress=progress) as rows:
        receipt = Release.begin(book, rows, importer="ucdp", label=builder.report_id, complete=complete)
        if receipt.skip(summary):
            return summary
        rejected = ingest_rows(book, rows, builder, summary)
    summary.widened = len(builder.widened - rejected)
    if complete:
        retract_absent(book, summary, builder, source=SOURCE, published_at=published,
                       reason=f"absent from UCDP GED release {release}")
    receipt.record(summary, name=builder.report_id, published_at=published)
    return summary
