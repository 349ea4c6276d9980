"""UCDP GED importer (CONTRACT section 7) on the real 19.1 extract in examples/ucdp-ged-19.1, and on a later
release derived from it here: versions only where figures changed, amendments, retractions of
dropped events with --complete, the exact diff, and both clocks across the two releases."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path

import pytest

from tollbook.api import Tollbook

DATA = Path(__file__).resolve().parents[1] / "examples" / "ucdp-ged-19.1" / "ged191-myanmar-bangladesh.csv"
ROOT = Path(__file__).resolve().parent.parent
WIDENED = {"71686", "84006", "71645", "71690", "210317", "224479"}
P1, P2 = "2019-06-01T00:00:00Z", "2020-06-01T00:00:00Z"


def read_rows(path: Path = DATA) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def write_rows(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def figures(row: dict[str, str]) -> dict[str, int]:
    """An incident's tally row (conservative policy) straight from the CSV, range widened."""
    low, best, high = int(row["low"]), int(row["best"]), int(row["high"])
    low, high = min(low, best, high), max(low, best, high)
    return {"low": low, "high": high, "best": low}


def stored_events(db: str) -> int:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT count(*) FROM stored_events").fetchone()[0]


def incident_fields(book: Tollbook, incident_id: str) -> dict:
    from tollbook.domain import incident as incidents
    from tollbook.domain.ids import incident_uuid

    state = None
    for event in book.store.events_of(incident_uuid(incident_id)):
        state = incidents.evolve(state, event)
    return state.fields


def cli(db: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TOLLBOOK_DB", "TOLLBOOK_EDITOR")}
    return subprocess.run([sys.executable, "-m", "tollbook", "--db", db, "--editor", "tester", *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, input=stdin, timeout=600)


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """A store holding release 19.1 of the real extract (imported once for the module)."""
    db = str(tmp_path_factory.mktemp("ucdp") / "t.db")
    with Tollbook(db, editor="tester") as book:
        summary = book.import_ucdp(str(DATA), release="19.1", published_at=P1)
        yield book, summary


# -- the real extract ---------------------------------------------------------------------

def test_summary_counts_rows_incidents_and_widened(first):
    book, summary = first
    assert (summary.rows, summary.imported, summary.unchanged, summary.widened, summary.rejected) == (
        3194, 3194, 0, 6, [])
    assert summary.report_id == "ucdp-ged-19.1" and summary.recorded_at is not None
    tally = book.tally()
    assert tally["total"]["incidents"] == 3194
    assert {row["key"] for row in tally["rows"]} == {f"ucdp-ged:{row['id']}" for row in read_rows()[1]}
    assert all(row["sources"] == ["UCDP GED"] for row in tally["rows"])


def test_per_country_sums_come_straight_from_the_csv(first):
    book, _ = first
    expected: dict[str, Counter] = defaultdict(Counter)
    for row in read_rows()[1]:
        low, best, high = int(row["low"]), int(row["best"]), int(row["high"])
        expected[row["country"]].update(low=min(low, best, high), high=max(low, best, high), best=best, incidents=1)
    assert {c: e["incidents"] for c, e in expected.items()} == {"Myanmar (Burma)": 2593, "Bangladesh": 601}
    conservative = book.tally(by="country")
    assert {r["key"]: (r["low"], r["high"], r["best"], r["incidents"]) for r in conservative["rows"]} == {
        c: (e["low"], e["high"], e["low"], e["incidents"]) for c, e in expected.items()}
    # The "latest" policy takes each incident's best: UCDP's own best estimate.
    latest = book.tally(by="country", policy="latest")
    assert {r["key"]: r["best"] for r in latest["rows"]} == {c: e["best"] for c, e in expected.items()}


def test_per_country_low_and_high_are_the_raw_columns_but_for_the_six_widened_rows(first):
    book, _ = first
    raw, adjustment = defaultdict(Counter), defaultdict(Counter)
    for row in read_rows()[1]:
        low, best, high = int(row["low"]), int(row["best"]), int(row["high"])
        raw[row["country"]].update(low=low, high=high)
        if not low <= best <= high:
            assert row["id"] in WIDENED
            adjustment[row["country"]].update(low=min(low, best, high) - low, high=max(low, best, high) - high)
    # The raw column sums, as a reader of the CSV gets them.
    assert {c: (r["low"], r["high"]) for c, r in raw.items()} == {
        "Myanmar (Burma)": (18499, 28862), "Bangladesh": (1309, 1824)}
    tally = {r["key"]: (r["low"], r["high"]) for r in book.tally(by="country")["rows"]}
    assert tally == {c: (raw[c]["low"] + adjustment[c]["low"], raw[c]["high"] + adjustment[c]["high"]) for c in raw}
    assert tally == {"Myanmar (Burma)": (18497, 28877), "Bangladesh": (1309, 1827)}


def test_the_six_rows_breaking_low_best_high_are_kept_widened_with_a_note(first):
    book, _ = first
    by_id = {row["id"]: row for row in read_rows()[1]}
    for ucdp_id in sorted(WIDENED):
        row = by_id[ucdp_id]
        low, best, high = int(row["low"]), int(row["best"]), int(row["high"])
        history = book.history(incident=f"ucdp-ged:{ucdp_id}", group="all")
        [claim] = history["claims"]
        [entry] = claim["entries"]
        assert (entry["low"], entry["best"], entry["high"]) == (min(low, best, high), best, max(low, best, high))
        assert f"low {low}, best {best}, high {high}" in entry["note"]
        assert "break low <= best <= high" in entry["note"]
    # Rows that keep the rule get no note.
    [claim] = book.history(incident="ucdp-ged:209980", group="all")["claims"]
    assert claim["entries"][0]["note"] is None


def test_the_death_groups_are_claims_of_their_own(first):
    book, _ = first
    _, rows = read_rows()
    for group, column in (("side_a", "deaths_a"), ("side_b", "deaths_b"), ("civilians", "deaths_civilians"),
                          ("unknown", "deaths_unknown")):
        total = book.tally(group=group)["total"]
        expected = sum(int(r[column]) for r in rows)
        assert (total["low"], total["high"], total["incidents"]) == (expected, expected, 3194), group


def test_incident_fields_and_attributes(first):
    book, _ = first
    fields = incident_fields(book, "ucdp-ged:209406")
    assert fields == {
        "occurred_from": "2015-05-14", "occurred_to": "2015-05-15", "country": "Myanmar (Burma)",
        "admin1": "Shan State", "admin2": "Laukkaing District", "place": "Laukkaing Town",
        "lat": 23.690225, "lon": 98.765042, "perpetrator": "Government of Myanmar (Burma)", "side_b": "MNDAA",
        "conflict_name": "Myanmar (Burma): Kokang", "type_of_violence": 1, "where_prec": 2, "date_prec": 2,
        "source_article": '"Associated Press Newswires,2015-05-15,Myanmar says 24 rebels killed in clashes near '
                          'China border";"MRTV English Channel,2015-05-16,Laukkaing Attack - Military occupied '
                          'point 2202 hill";"Democratic Voice of Burma,2015-05-18,Both sides dig in heels over '
                          'Laogai";"Myanmar Peace Monitor,2015-05-14,Myanmar army captured point-2202 near Laukkai"',
        "number_of_sources": 4,
    }
    # -1 sources (unknown) and empty cells leave the field unset.
    unknown = next(r for r in read_rows()[1] if r["number_of_sources"] == "-1" and r["adm_2"] == "")
    fields = incident_fields(book, f"ucdp-ged:{unknown['id']}")
    assert "number_of_sources" not in fields and "admin2" not in fields


def test_reimporting_the_release_stores_nothing(first):
    book, _ = first
    before = stored_events(book.db)
    again = book.import_ucdp(str(DATA), release="19.1", published_at=P1, complete=True)
    assert (again.imported, again.unchanged, again.widened, again.rejected, again.retracted) == (0, 3194, 6, [], 0)
    assert again.recorded_at is None and stored_events(book.db) == before


def test_the_same_release_with_other_content_is_rejected_row_by_row(first, tmp_path):
    book, _ = first
    header, rows = read_rows()
    rows[0] = rows[0] | {"low": str(int(rows[0]["low"]) + 1)}
    changed = write_rows(tmp_path / "changed.csv", header, rows[:3])
    summary = book.import_ucdp(str(changed), release="19.1", published_at=P1)
    assert summary.unchanged == 2 and summary.imported == 0
    assert [str(r) for r in summary.rejected] == [
        "line 2: report_id: a different document is already stored under 'ucdp-ged-19.1#209980'"]


# -- a later release ----------------------------------------------------------------------

def later_release(tmp_path: Path) -> tuple[Path, dict]:
    """Release "19.2" made from 19.1: figures changed in some rows, some rows dropped, some
    added, one row's place fields changed, one row's best only."""
    header, rows = read_rows()
    by_id = {row["id"]: row for row in rows}
    changes = {
        "209980": {"low": "2", "best": "2", "deaths_b": "2", "high": "31"},    # low and high up
        "210026": {"best": "2", "deaths_civilians": "2", "high": "3"},         # high up
        "71686": {"low": "3", "high": "3"},                                     # widened row, now consistent
        "71663": {"adm_2": "Changed District", "where_coordinates": "Somewhere"},  # fields only
        "209406": {"best": "3", "deaths_a": "3"},                               # best only (+ side_a)
    }
    dropped = {rows[10]["id"], rows[20]["id"], "84006"}
    derived = []
    for row in rows:
        if row["id"] in dropped:
            continue
        derived.append(row | changes.get(row["id"], {}))
    added = [by_id["209980"] | {"id": "9000001", "low": "5", "best": "6", "high": "7", "deaths_a": "6",
                                "deaths_b": "0", "deaths_civilians": "0", "deaths_unknown": "0"},
             by_id["71663"] | {"id": "9000002", "low": "0", "best": "0", "high": "2", "deaths_a": "0",
                               "deaths_b": "0", "deaths_civilians": "0", "deaths_unknown": "0"}]
    derived[100:100] = added
    path = write_rows(tmp_path / "ged192-derived.csv", header, derived)
    return path, {"by_id": by_id, "changes": changes, "dropped": dropped, "added": added, "rows": derived}


def test_a_later_release_adds_versions_only_where_figures_changed_and_diff_names_them(tmp_path):
    db = str(tmp_path / "t.db")
    path, plan = later_release(tmp_path)
    by_id = plan["by_id"]
    with Tollbook(db, editor="tester") as book:
        r1 = book.import_ucdp(str(DATA), release="19.1", published_at=P1).recorded_at
        first_by_incident = book.tally()
        first_by_country = book.tally(by="country")
        first_civilians = book.tally(group="civilians")
        events_after_first = stored_events(db)

        summary = book.import_ucdp(str(path), release="19.2", published_at=P2, complete=True)
        r2 = summary.recorded_at
        assert summary.rows == 3194 - 3 + 2 and summary.rejected == []
        # Changed rows (figures or fields) and new rows store something; the rest nothing.
        assert (summary.imported, summary.unchanged) == (5 + 2, 3194 - 3 - 5)
        assert summary.widened == 4  # 84006 dropped, 71686 now consistent
        assert (summary.retracted, summary.retracted_incidents) == (3 * 5, 3)
        # Events: for each changed row a receipt, its changed claims and (71663) its amended
        # fields; for each new row a receipt, the incident and 5 claims; 15 retractions, each
        # with its receipt; and the release's receipt.
        changed_claims = {"209980": 2, "210026": 2, "71686": 1, "71663": 0, "209406": 2}
        expected_events = sum(1 + n for n in changed_claims.values()) + 1 + 2 * (1 + 1 + 5) + 15 * 2 + 1
        assert stored_events(db) - events_after_first == expected_events

        diff = book.diff(r1, r2)
        expected = {}
        for ucdp_id in ("209980", "210026", "71686"):
            expected[f"ucdp-ged:{ucdp_id}"] = (figures(by_id[ucdp_id]), figures(by_id[ucdp_id] | plan["changes"][ucdp_id]))
        for ucdp_id in plan["dropped"]:
            expected[f"ucdp-ged:{ucdp_id}"] = (figures(by_id[ucdp_id]), None)
        for row in plan["added"]:
            expected[f"ucdp-ged:{row['id']}"] = (None, figures(row))
        assert {c["incident_id"]: (c["before"], c["after"]) for c in diff["changes"]} == expected
        assert [c["incident_id"] for c in diff["changes"]] == sorted(expected)
        kinds = {c["incident_id"]: [(e["kind"], e["report_id"], e["published_at"]) for e in c["entries"]]
                 for c in diff["changes"]}
        for ucdp_id in ("209980", "210026", "71686", *(r["id"] for r in plan["added"])):
            assert kinds[f"ucdp-ged:{ucdp_id}"] == [("reported", "ucdp-ged-19.2", P2)]
        for ucdp_id in plan["dropped"]:
            assert kinds[f"ucdp-ged:{ucdp_id}"] == [("retracted", None, P2)]
            [entry] = diff["changes"][[c["incident_id"] for c in diff["changes"]].index(f"ucdp-ged:{ucdp_id}")]["entries"]
            assert entry["reason"] == "absent from UCDP GED release 19.2"

        # A figure that did not change has one version; one that did has two.
        history = {(c["incident_id"], c["group"]): c for c in book.history(incident="ucdp-ged:209980")["claims"]}
        assert [(e["low"], e["high"]) for e in history[("ucdp-ged:209980", "all")]["entries"]] == [(1, 30), (2, 31)]
        assert [e["low"] for e in history[("ucdp-ged:209980", "side_a")]["entries"]] == [0]
        assert [e["low"] for e in history[("ucdp-ged:209980", "side_b")]["entries"]] == [1, 2]
        # Best alone changed: a version (the diff under the conservative policy shows nothing).
        [claim] = book.history(incident="ucdp-ged:209406", group="all")["claims"]
        assert [(e["best"], e["report_id"]) for e in claim["entries"]] == [(2, "ucdp-ged-19.1"), (3, "ucdp-ged-19.2")]
        # Fields amended, figures untouched.
        fields = incident_fields(book, "ucdp-ged:71663")
        assert (fields["admin2"], fields["place"]) == ("Changed District", "Somewhere")
        [claim] = book.history(incident="ucdp-ged:71663", group="all")["claims"]
        assert len(claim["entries"]) == 1

        # Both clocks give back the first release's tallies.
        for point in ({"as_of": r1}, {"known_at": "2020-05-31T23:59:59Z"}):
            assert book.tally(**point)["rows"] == first_by_incident["rows"], point
            assert book.tally(by="country", **point)["rows"] == first_by_country["rows"], point
            assert book.tally(group="civilians", **point)["total"] == first_civilians["total"], point
        now = book.tally()
        assert now["total"]["incidents"] == 3194 - 3 + 2
        assert book.tally(known_at=P2)["rows"] == now["rows"]

        # Importing the later release again stores nothing, --complete included.
        before = stored_events(db)
        again = book.import_ucdp(str(path), release="19.2", published_at=P2, complete=True)
        assert (again.imported, again.retracted, again.rejected) == (0, 0, [])
        assert stored_events(db) == before


def test_an_older_release_imported_late_changes_no_current_figure(tmp_path):
    path, plan = later_release(tmp_path)
    dropped = sorted(f"ucdp-ged:{i}" for i in plan["dropped"])
    with Tollbook(str(tmp_path / "t.db"), editor="tester") as book:
        book.import_ucdp(str(path), release="19.2", published_at=P2)
        now = {r["key"]: r for r in book.tally()["rows"]}
        late = book.import_ucdp(str(DATA), release="19.1", published_at=P1, complete=True)
        # What 19.1 lacks (19.2's new incidents) did not exist yet then: nothing to retract.
        assert late.rejected == [] and late.retracted == 0
        # 19.2's figures stay current; 19.1 adds the incidents 19.2 did not have.
        after = {r["key"]: r for r in book.tally()["rows"]}
        assert {k: v for k, v in after.items() if k not in dropped} == now
        assert sorted(k for k in after if k not in now) == dropped
        # As published before 19.2, the store now holds 19.1 exactly.
        assert {r["key"] for r in book.tally(known_at="2020-01-01")["rows"]} == {
            f"ucdp-ged:{row['id']}" for row in read_rows()[1]}
        # 19.2 again, complete: the incidents it lacks are retracted at its publication.
        again = book.import_ucdp(str(path), release="19.2", published_at=P2, complete=True)
        assert (again.imported, again.retracted, again.retracted_incidents) == (0, 15, 3)
        assert {r["key"]: r for r in book.tally()["rows"]} == now


# -- what real files contain ------------------------------------------------------------------

HEADER = read_rows()[0]


def ucdp_row(ucdp_id: str, **cells: str) -> dict[str, str]:
    base = {name: "" for name in HEADER} | {
        "id": ucdp_id, "year": "2017", "type_of_violence": "3", "conflict_name": "Government of Myanmar (Burma) - Civilians",
        "side_a": "Government of Myanmar (Burma)", "side_b": "Civilians", "number_of_sources": "-1",
        "where_prec": "1", "where_coordinates": "Maungdaw town", "adm_1": "Rakhine State", "adm_2": "Maungdaw District",
        "latitude": "20.8", "longitude": "92.36", "country": "Myanmar (Burma)", "date_prec": "1",
        "date_start": "2017-08-25", "date_end": "2017-08-25", "deaths_a": "0", "deaths_b": "0",
        "deaths_civilians": "3", "deaths_unknown": "0", "low": "3", "best": "3", "high": "5",
    }
    return base | cells


def csv_text(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HEADER, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def test_bom_quotes_newlines_and_malformed_rows_are_reported_by_line_and_column(tmp_path):
    rows = [
        ucdp_row("1", source_article='"Reuters,2017-08-26,Clashes, fire in ""Maungdaw""\nsecond line"'),  # lines 2-3
        ucdp_row("2", low="three"),                                                 # line 4
        ucdp_row("3", date_start="2017-02-30"),                                     # line 5
        ucdp_row("4", adm_1="", adm_2="", number_of_sources="-1", latitude=""),     # line 6
        ucdp_row("5", high="2", best="4", low="1"),                                 # line 7: widened
        ucdp_row("6", deaths_a="-4"),                                               # line 8
        ucdp_row("7", latitude="123.4"),                                            # line 9
        ucdp_row("8", date_start="2017-09-02", date_end="2017-09-01"),              # line 10
        ucdp_row("9", low=""),                                                      # line 11
    ]
    text = csv_text(rows) + "10,2017,3\r\n" + "\r\n"  # line 12: too few cells; a blank line
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    with Tollbook(str(tmp_path / "t.db"), editor="tester") as book:
        summary = book.import_ucdp(str(path), release="x", published_at=P1)
        assert [str(r) for r in summary.rejected] == [
            "line 4: low: must be a whole number, not 'three'",
            "line 5: date_start: not a valid date: '2017-02-30'",
            "line 8: deaths_a: must be >= 0, not -4",
            "line 9: latitude: must be between -90 and 90, not 123.4",
            "line 10: date_end: 2017-09-01 is before date_start 2017-09-02",
            "line 11: low: is empty",
            f"line 12: has 3 cells, the header has {len(HEADER)}",
        ]
        assert (summary.rows, summary.imported, summary.widened) == (10, 3, 1)
        assert incident_fields(book, "ucdp-ged:1")["source_article"] == (
            '"Reuters,2017-08-26,Clashes, fire in ""Maungdaw""\nsecond line"')
        assert incident_fields(book, "ucdp-ged:4") == {
            "occurred_from": "2017-08-25", "occurred_to": "2017-08-25", "country": "Myanmar (Burma)",
            "place": "Maungdaw town", "lon": 92.36, "perpetrator": "Government of Myanmar (Burma)",
            "side_b": "Civilians", "conflict_name": "Government of Myanmar (Burma) - Civilians",
            "type_of_violence": 3, "where_prec": 1, "date_prec": 1}
        [claim] = book.history(incident="ucdp-ged:5", group="all")["claims"]
        assert (claim["entries"][0]["low"], claim["entries"][0]["best"], claim["entries"][0]["high"]) == (1, 4, 4)


def test_invalid_utf8_rejects_the_row_and_names_the_column(tmp_path):
    text = csv_text([ucdp_row("1"), ucdp_row("2", where_coordinates="PLACE"), ucdp_row("3")])
    data = text.encode("utf-8").replace(b"PLACE", b"Caf\xe9")
    path = tmp_path / "latin.csv"
    path.write_bytes(data)
    with Tollbook(str(tmp_path / "t.db"), editor="tester") as book:
        summary = book.import_ucdp(str(path), release="x", published_at=P1)
        assert [str(r) for r in summary.rejected] == [
            "line 3: where_coordinates: not valid UTF-8 (give the file's --encoding, e.g. latin-1)"]
        assert summary.imported == 2
        again = book.import_ucdp(str(path), release="x", published_at=P1, encoding="latin-1")
        assert (again.imported, again.unchanged, again.rejected) == (1, 2, [])
        assert incident_fields(book, "ucdp-ged:2")["place"] == "Café"


def test_file_level_problems_are_errors_not_rows(tmp_path):
    with Tollbook(str(tmp_path / "t.db"), editor="tester") as book:
        with pytest.raises(ValueError, match="no such file"):
            book.import_ucdp(str(tmp_path / "missing.csv"), release="x", published_at=P1)
        (tmp_path / "other.csv").write_text("event_id_cnty,fatalities\nX1,3\n")
        with pytest.raises(ValueError, match="not a UCDP GED file: no column id, conflict_name"):
            book.import_ucdp(str(tmp_path / "other.csv"), release="x", published_at=P1)
        with pytest.raises(ValueError, match="--published-at: needs a time zone"):
            book.import_ucdp(str(DATA), release="x", published_at="2019-06-01T00:00:00")
        with pytest.raises(ValueError, match="--encoding: unknown encoding"):
            book.import_ucdp(str(DATA), release="x", published_at=P1, encoding="klingon")


# -- the command line -------------------------------------------------------------------------

def test_command_line_import_summary_exit_status_and_diff(tmp_path):
    db = str(tmp_path / "cli.db")
    done = cli(db, "import", "ucdp", str(DATA), "--release", "19.1", "--published-at", "2019-06-01")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress bar when stderr is not a terminal
    line = done.stdout.strip()
    assert "\n" not in line
    assert line.startswith("ucdp-ged-19.1: 3194 rows: imported 3194, unchanged 0, widened 6, rejected 0; recorded at ")
    r1 = line.rsplit(" ", 1)[1]

    path, _ = later_release(tmp_path)
    done = cli(db, "import", "ucdp", str(path), "--release", "19.2", "--published-at", "2020-06-01", "--complete",
               "--format", "json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert {k: summary[k] for k in ("rows", "imported", "unchanged", "widened", "rejected", "retracted")} == {
        "rows": 3193, "imported": 7, "unchanged": 3186, "widened": 4, "rejected": [], "retracted": 15}
    diff = cli(db, "diff", "--from", r1, "--to", summary["recorded_at"], "--format", "json")
    assert diff.returncode == 0, diff.stderr
    assert len(json.loads(diff.stdout)["changes"]) == 3 + 3 + 2

    again = cli(db, "import", "ucdp", str(DATA), "--release", "19.1", "--published-at", "2019-06-01")
    assert again.returncode == 0 and "imported 0, unchanged 3194" in again.stdout


def test_command_line_rejected_rows_exit_1_and_usage_errors_exit_2(tmp_path):
    db = str(tmp_path / "cli.db")
    bad = tmp_path / "bad.csv"
    bad.write_text(csv_text([ucdp_row("1"), ucdp_row("2", best="x")]))
    done = cli(db, "import", "ucdp", str(bad), "--release", "r", "--published-at", P1)
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["line 3: best: must be a whole number, not 'x'"]
    assert "imported 1, unchanged 0, widened 0, rejected 1" in done.stdout
    for args, message in (
        ((str(tmp_path / "nope.csv"), "--release", "r", "--published-at", P1), "nope.csv: no such file"),
        ((str(bad), "--release", "r", "--published-at", "yesterday"), "--published-at:"),
        ((str(bad), "--release", " ", "--published-at", P1), "--release: must not be empty"),
    ):
        done = cli(db, "import", "ucdp", *args)
        assert done.returncode == 2, args
        assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_complete_reads_the_store_page_by_page_whatever_the_page_size(tmp_path):
    from tollbook.commands.importers.common import counting_claims
    from tollbook.domain.time import parse_instant, to_micros

    header, rows = read_rows()
    path = write_rows(tmp_path / "small.csv", header, rows[:40])
    with Tollbook(str(tmp_path / "t.db"), editor="tester") as book:
        book.import_ucdp(str(path), release="s", published_at=P1)
        book.ingest([{"kind": "incident", "incident_id": "ucdp-ged", "title": "not one of UCDP's"},
                     {"kind": "incident", "incident_id": "ucdp-ged;x"}])
        at = to_micros(parse_instant(P2))
        pages = {size: list(counting_claims(book, source="UCDP GED", published_at=at, prefix="ucdp-ged:", page=size))
                 for size in (1, 3, 5, 7, 5000)}
        assert len(pages[5000]) == 40 * 5
        assert all(found == pages[5000] for found in pages.values())
        # The incidents present in a complete file are left out (their versions are not read),
        # whichever page they fall on.
        present = {claim.incident_id for claim in pages[5000][::9]}
        for size in (1, 3, 5000):
            absent = list(counting_claims(book, source="UCDP GED", published_at=at, prefix="ucdp-ged:",
                                          besides=present, page=size))
            assert absent == [claim for claim in pages[5000] if claim.incident_id not in present]
            assert 0 < len(absent) < len(pages[5000])


def test_a_projector_process_beside_a_long_import_leaves_the_first_query_nothing_to_do(stores, monkeypatch):
    """The second core: beside the import of a file of ALONGSIDE_BYTES or more, a projector runs in
    a process of its own (tollbook/follower.py); once the import returns it has projected every
    event of its rows, and the answers are those of the same import projected afterwards."""
    import tollbook.follower
    from tollbook.projections.queries import GROUPINGS
    from test_import_equivalence import without_clock

    size = DATA.stat().st_size
    with Tollbook(stores.new(), editor="tester") as beside, Tollbook(stores.new(), editor="tester") as after:
        monkeypatch.setattr(tollbook.follower, "ALONGSIDE_BYTES", size)
        assert beside.import_ucdp(str(DATA), release="19.1", published_at=P1).imported == 3194
        head = beside.store.last_position()  # the last event is the release's receipt, stored after the rows
        assert set(beside.projector.positions().values()) == {head - 1}
        monkeypatch.setattr(tollbook.follower, "ALONGSIDE_BYTES", size + 1)
        assert after.import_ucdp(str(DATA), release="19.1", published_at=P1).imported == 3194
        assert set(after.projector.positions().values()) == {0}
        for by in GROUPINGS:
            assert without_clock(beside.tally(by=by)) == without_clock(after.tally(by=by))
        assert without_clock(beside.history(incident="ucdp-ged:71686")) == without_clock(
            after.history(incident="ucdp-ged:71686"))



def _next_release_twice(tmp_path: Path) -> tuple[Path, Path, str]:
    """400 rows, then the next release of them: every 7th row's high changed, and row 42 (one
    it changes) given again as the first release had it, in the run after its own (runs of 40)."""
    header, rows = read_rows()
    later = [dict(row) for row in rows[:400]]
    for row in later[::7]:
        row["high"] = str(int(row["high"]) + 3)
    later.insert(85, dict(rows[42]))
    return (write_rows(tmp_path / "r1.csv", header, rows[:400]), write_rows(tmp_path / "r2.csv", header, later),
            f"ucdp-ged:{rows[42]['id']}")


def _import_both(stores, monkeypatch, first: Path, second: Path, incident: str, loaded: Callable) -> None:
    """The two releases into one store loading states as ``loaded`` sets up, and into another
    loading them itself: counts, rejections and answers are the same. The row given twice is
    refused, as the first stored its receipt; had the states it reads been used as loaded
    before that was committed, its claims would look unchanged and it would store nothing."""
    import tollbook.commands.importers.common as common
    from tollbook.projections.queries import GROUPINGS
    from test_import_equivalence import without_clock

    # Small runs, batches and cache: many runs, each batch landed soon, the cache often emptied.
    monkeypatch.setattr(common, "IMPORT_DOCUMENTS", 80)
    monkeypatch.setattr(common, "IMPORT_EVENTS", 2)
    monkeypatch.setattr(common, "IMPORT_CACHE", 100)
    summaries = []
    with Tollbook(stores.new(), editor="tester") as beside, Tollbook(stores.new(), editor="tester") as alone:
        for book in (beside, alone):
            with loaded() if book is beside else nullcontext():
                book.import_ucdp(str(first), release="1", published_at=P1)
                summaries.append(book.import_ucdp(str(second), release="2", published_at=P2, complete=True))
        for summary in summaries:
            assert len(summary.rejected) == 1 and "a different document is already stored" in summary.rejected[0].error
            assert (summary.imported, summary.unchanged) == (57, 343)
        assert str(summaries[0].rejected[0]) == str(summaries[1].rejected[0])
        for by in GROUPINGS:
            assert without_clock(beside.tally(by=by)) == without_clock(alone.tally(by=by))
        assert without_clock(beside.history(incident=incident)) == without_clock(alone.history(incident=incident))


def test_the_follower_loads_what_a_next_releases_rows_read_and_the_answers_are_the_same(stores, monkeypatch, tmp_path):
    """Beside the import of a next release, the follower also loads the states its rows read while
    the import decides the rows before them (commands/ingest.py's Loader)."""
    import tollbook.follower

    requests = []
    request = tollbook.follower.Loading.request
    monkeypatch.setattr(tollbook.follower.Loading, "request", lambda self, everything: (
        requests.append(len(everything)), request(self, everything))[1])

    @contextmanager
    def follower() -> Iterator[None]:
        with monkeypatch.context() as inside:
            inside.setattr(tollbook.follower, "ALONGSIDE_BYTES", 0)
            yield

    _import_both(stores, monkeypatch, *_next_release_twice(tmp_path), follower)
    assert len(requests) >= 8  # the follower loaded for every run but the first


def test_states_loaded_before_the_run_ahead_is_decided_are_not_used_for_what_it_changes(stores, monkeypatch, tmp_path):
    """A loader that loads at once when asked, before the run ahead of it is decided (the
    follower is seldom that quick): what that run changes is loaded again, not taken."""
    from tollbook.commands.ingest import States

    class LoadingAtOnce:
        def __init__(self, store):
            self.store, self.requests = store, 0

        def request(self, everything):
            states = States(self.store, sys.maxsize)
            states.load_reads(everything)
            self.requests += 1
            answer = states.loaded(everything)
            return lambda: answer

    loaders = []

    @contextmanager
    def at_once() -> Iterator[None]:
        def alongside(book, size):
            loaders.append(LoadingAtOnce(book.store))
            return nullcontext(loaders[-1])

        with monkeypatch.context() as inside:
            inside.setattr(Tollbook, "projecting_alongside", alongside)
            yield

    _import_both(stores, monkeypatch, *_next_release_twice(tmp_path), at_once)
    assert loaders[-1].requests >= 8



def test_an_import_whose_loader_fails_loads_the_states_itself(stores, monkeypatch, tmp_path):
    """A follower gone mid-import (here its third answer is cut short, then its pipes are
    closed): the import loads the rest of its states itself, with the same answers."""
    from tollbook.commands.ingest import States
    from tollbook.follower import Loading, _receive, _send

    loadings = []

    def alongside(book, size):
        requests_read, requests_write = os.pipe()
        answers_read, answers_write = os.pipe()

        def serve():  # the follower's side, over real pipes
            with suppress(EOFError), os.fdopen(requests_read, "rb") as requests, \
                    os.fdopen(answers_write, "wb") as answers:
                for served in range(3):
                    everything = _receive(requests)
                    if served == 2:
                        answers.write((16).to_bytes(8, "big") + b"cut")
                        return
                    states = States(book.store, sys.maxsize)
                    states.load_reads(everything)
                    _send(answers, states.loaded(everything))

        threading.Thread(target=serve, daemon=True).start()
        streams = os.fdopen(requests_write, "wb"), os.fdopen(answers_read, "rb")
        loadings.append(Loading(*streams))
        return closing_all(loadings[-1], streams)

    @contextmanager
    def closing_all(loading, streams) -> Iterator[Loading]:
        try:
            yield loading
        finally:
            for stream in streams:
                stream.close()

    @contextmanager
    def failing() -> Iterator[None]:
        with monkeypatch.context() as inside:
            inside.setattr(Tollbook, "projecting_alongside", alongside)
            yield

    _import_both(stores, monkeypatch, *_next_release_twice(tmp_path), failing)
    assert loadings[-1].request([])() is None  # the next release's loader broke, and the import went on
