"""An import answers exactly as the same rows ingested as JSON documents one by one (issue 14).

Two releases of the real GED extract (the second with changed figures, a widened row and rows
gone, imported with --complete) go into one store through the importer, and into another as the
JSON Lines documents the contract describes for them, one ``ingest`` each. Every tally grouping
and policy, the history and the diff between the releases must be the same in both (recorded
instants aside, which differ by construction)."""

from __future__ import annotations

import csv
import json
from pathlib import Path



from tollbook.api import Tollbook
from tollbook.commands.importers import ucdp
from tollbook.commands.importers.common import counting_claims, retraction
from tollbook.commands.importers.csvrows import CsvRows
from tollbook.domain.tally import POLICIES
from tollbook.projections.queries import GROUPINGS

DATA = Path(__file__).resolve().parents[1] / "examples" / "ucdp-ged-19.1" / "ged191-myanmar-bangladesh.csv"
ROWS = 120
P1, P2 = "2019-06-01T00:00:00Z", "2020-06-01T00:00:00Z"


def releases(folder: Path) -> tuple[Path, Path]:
    with open(DATA, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header, rows = list(reader.fieldnames or []), [row for _, row in zip(range(ROWS), reader)]
    later = []
    for n, row in enumerate(rows):
        row = dict(row)
        if n % 10 == 3:
            continue  # gone from the later release
        if n % 7 == 1:
            row["best"] = str(int(row["best"]) + 2)
            row["high"] = str(int(row["high"]) + 5)
            row["deaths_civilians"] = str(int(row["deaths_civilians"]) + 2)
        if n == 5:
            row["low"], row["high"] = str(int(row["best"]) + 1), row["best"]  # breaks low <= best <= high
        if n % 11 == 2:
            row["adm_1"] = "Renamed Province"
        later.append(row)
    paths = folder / "19.1.csv", folder / "20.1.csv"
    for path, written in zip(paths, (rows, later)):
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(written)
    return paths


def one_by_one(book: Tollbook, path: Path, release: str, published_at: str, *, complete: bool) -> None:
    """The release as JSON documents, each ingested on its own, then (--complete) the retractions
    of the claims on incidents absent from the file that still count."""
    builder = ucdp.UcdpRelease(release, published_at, remember_ids=True)
    with CsvRows(str(path), required=ucdp.COLUMNS, kind="a UCDP GED") as rows:
        documents = [json.dumps(builder.document(row)) for row in rows]
    for document in documents:
        result = book.ingest([document])
        assert not result.rejected, result.rejected
    if complete:
        absent = [claim for claim in counting_claims(book, source=ucdp.SOURCE, published_at=_micros(published_at),
                                                     prefix=ucdp.PREFIX) if claim.incident_id not in builder.seen]
        assert absent
        for claim in absent:
            assert book.ingest([json.dumps(retraction(claim, published_at, f"absent from UCDP GED release {release}"))]).accepted == 1


def _micros(text: str) -> int:
    from tollbook.domain.time import parse_instant, to_micros

    return to_micros(parse_instant(text))


def without_clock(value):
    """An answer with the recorded clock's instants and log positions left out."""
    if isinstance(value, dict):
        return {k: without_clock(v) for k, v in value.items()
                if k not in ("recorded_at", "as_of", "from", "to", "position", "start", "end")}
    if isinstance(value, list):
        return [without_clock(v) for v in value]
    return value


def answers(book: Tollbook, first: int, second: int) -> dict:
    found = {}
    for point, at in (("first", first), ("second", second)):
        for by in GROUPINGS:
            for policy in POLICIES:
                for group in ("all", "civilians"):
                    found[point, by, policy, group] = without_clock(
                        book.tally(by=by, policy=policy, group=group, as_of=at))
        found[point, "history"] = without_clock(book.history(as_of=at))
    for policy in POLICIES:
        found["diff", policy] = without_clock(book.diff(first, second, policy=policy))
    return found


def test_an_import_answers_as_its_documents_ingested_one_by_one(tmp_path, stores, store_kind):
    first_file, second_file = releases(tmp_path)
    with Tollbook(stores.new(), editor="tester") as imported, Tollbook(stores.new(), editor="tester") as ingested:
        summary = imported.import_ucdp(str(first_file), release="19.1", published_at=P1)
        assert summary.imported == ROWS
        one_by_one(ingested, first_file, "19.1", P1, complete=False)
        marks = [imported.store.head()[1], ingested.store.head()[1]]
        summary = imported.import_ucdp(str(second_file), release="20.1", published_at=P2, complete=True)
        assert summary.retracted > 0 and summary.widened == 1
        one_by_one(ingested, second_file, "20.1", P2, complete=True)
        ends = [imported.store.head()[1], ingested.store.head()[1]]
        assert answers(imported, marks[0], ends[0]) == answers(ingested, marks[1], ends[1])
