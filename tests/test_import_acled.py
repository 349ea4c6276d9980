"""ACLED importer (CONTRACT section 7): fixtures written here with ACLED's real column layout
(31 columns, event_id_cnty .. timestamp), multi-source cells, older date formats, latin-1
exports, revised rows, --complete, and ACLED's deleted-events list."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tollbook.api import Tollbook

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = [
    "event_id_cnty", "event_date", "year", "time_precision", "disorder_type", "event_type", "sub_event_type",
    "actor1", "assoc_actor_1", "inter1", "actor2", "assoc_actor_2", "inter2", "interaction", "civilian_targeting",
    "iso", "region", "country", "admin1", "admin2", "admin3", "location", "latitude", "longitude",
    "geo_precision", "source", "source_scale", "notes", "fatalities", "tags", "timestamp",
]
T1, T2, T3 = 1618317854, 1619527454, 1620737054  # 2021-04-13, 2021-04-27, 2021-05-11 (UTC)


def iso(seconds: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event(event_id: str, fatalities: int, timestamp: int = T1, **cells: str) -> dict[str, str]:
    base = {
        "event_id_cnty": event_id, "event_date": "2021-03-14", "year": "2021", "time_precision": "1",
        "disorder_type": "Political violence", "event_type": "Violence against civilians",
        "sub_event_type": "Attack", "actor1": "Military Forces of Myanmar (2021-)", "assoc_actor_1": "",
        "inter1": "1", "actor2": "Civilians (Myanmar)", "assoc_actor_2": "Protesters (Myanmar)", "inter2": "7",
        "interaction": "17", "civilian_targeting": "Civilian targeting", "iso": "104", "region": "Southeast Asia",
        "country": "Myanmar", "admin1": "Yangon", "admin2": "Yangon-North", "admin3": "Hlaingthaya",
        "location": "Hlaingthaya", "latitude": "16.8697", "longitude": "96.0716", "geo_precision": "1",
        "source": "Myanmar Now", "source_scale": "National", "notes": "On 14 March 2021, security forces fired.",
        "fatalities": str(fatalities), "tags": "", "timestamp": str(timestamp),
    }
    return base | cells


def write(path: Path, rows: list[dict[str, str]], *, encoding: str = "utf-8", bom: bool = False,
          columns: list[str] = COLUMNS) -> Path:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode(encoding))
    return path


def deletions(path: Path, rows: list[tuple[str, int | str]]) -> Path:
    lines = ["event_id_cnty,deleted_timestamp", *(f"{i},{t}" for i, t in rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def fields(book: Tollbook, incident_id: str) -> dict:
    from tollbook.domain import incident as incidents
    from tollbook.domain.ids import incident_uuid

    state = None
    for e in book.store.events_of(incident_uuid(incident_id)):
        state = incidents.evolve(state, e)
    return state.fields


def stored_events(db: str) -> int:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT count(*) FROM stored_events").fetchone()[0]


def lows(tally: dict) -> dict[str, int]:
    return {row["key"]: row["low"] for row in tally["rows"]}


FIRST = [
    event("MMR1001", 12, source="Myanmar Now; Radio Free Asia; The Irrawaddy"),
    event("MMR1002", 0, event_date="15 March 2021", admin1="Mandalay", admin2="Mandalay", location="Mandalay",
          source='Mizzima; "Frontier Myanmar", Yangon edition',
          notes="Line one of the notes,\nline two, with \"quotes\"."),
    event("MMR1003", 3, T2, event_date="2021-04-20", event_type="Battles", sub_event_type="Armed clash",
          actor1="KIA: Kachin Independence Army", actor2="Military Forces of Myanmar (2021-)",
          admin1="Kachin", admin2="Bhamo", location="Momauk", latitude="24.2397", longitude="97.3489",
          geo_precision="2", time_precision="2"),
]


@pytest.fixture
def book(tmp_path):
    with Tollbook(str(tmp_path / "t.db"), editor="tester") as b:
        yield b


def test_rows_become_incidents_and_claims(book, tmp_path):
    summary = book.import_acled(str(write(tmp_path / "a.csv", FIRST)))
    assert (summary.rows, summary.imported, summary.unchanged, summary.rejected) == (3, 3, 0, [])
    assert lows(book.tally()) == {"acled:MMR1001": 12, "acled:MMR1002": 0, "acled:MMR1003": 3}
    assert book.tally(by="admin1")["rows"][0]["key"] == "Kachin"
    assert fields(book, "acled:MMR1002") == {
        "occurred_from": "2021-03-15", "country": "Myanmar", "admin1": "Mandalay", "admin2": "Mandalay",
        "place": "Mandalay", "lat": 16.8697, "lon": 96.0716, "perpetrator": "Military Forces of Myanmar (2021-)",
        "event_type": "Violence against civilians", "sub_event_type": "Attack", "actor2": "Civilians (Myanmar)",
        "notes": 'Line one of the notes,\nline two, with "quotes".',
        "source": 'Mizzima; "Frontier Myanmar", Yangon edition', "geo_precision": 1, "time_precision": 1,
        # The columns beyond the mapping, as attributes (empty cells set nothing).
        "year": 2021, "disorder_type": "Political violence", "inter1": 1, "assoc_actor_2": "Protesters (Myanmar)",
        "inter2": 7, "interaction": 17, "civilian_targeting": "Civilian targeting", "iso": 104,
        "region": "Southeast Asia", "admin3": "Hlaingthaya", "source_scale": "National",
    }
    assert fields(book, "acled:MMR1001")["source"] == "Myanmar Now; Radio Free Asia; The Irrawaddy"
    [claim] = book.history(incident="acled:MMR1003")["claims"]
    assert (claim["source"], claim["measure"], claim["group"]) == ("ACLED", "killed", "all")
    [entry] = claim["entries"]
    assert (entry["low"], entry["high"], entry["published_at"], entry["report_id"]) == (3, 3, iso(T2), f"acled-{T2}")
    # Each row counts from its own timestamp.
    assert lows(book.tally(known_at=iso(T2 - 1))) == {"acled:MMR1001": 12, "acled:MMR1002": 0}


def test_reimport_stores_nothing_and_a_revised_export_adds_only_what_changed(book, tmp_path):
    first = write(tmp_path / "a.csv", FIRST)
    r1 = book.import_acled(str(first)).recorded_at
    before = stored_events(book.db)
    again = book.import_acled(str(first))
    assert (again.imported, again.unchanged, again.recorded_at) == (0, 3, None)
    assert stored_events(book.db) == before

    revised = [
        event("MMR1001", 14, T3, source="Myanmar Now; Radio Free Asia; The Irrawaddy"),  # figure revised
        FIRST[1] | {"timestamp": str(T3), "admin2": "Chanmyathazi"},  # fields only, figure the same
        FIRST[2],  # untouched: same timestamp
        event("MMR1004", 1, T3, event_date="2021-05-01"),  # new
    ]
    summary = book.import_acled(str(write(tmp_path / "b.csv", revised)))
    assert (summary.imported, summary.unchanged, summary.rejected) == (3, 1, [])
    assert stored_events(book.db) - before == (1 + 1) + (1 + 1) + (1 + 1 + 1) + 1  # and the release's receipt
    assert lows(book.tally()) == {"acled:MMR1001": 14, "acled:MMR1002": 0, "acled:MMR1003": 3, "acled:MMR1004": 1}
    [claim] = book.history(incident="acled:MMR1002")["claims"]
    assert len(claim["entries"]) == 1 and fields(book, "acled:MMR1002")["admin2"] == "Chanmyathazi"
    [claim] = book.history(incident="acled:MMR1001")["claims"]
    assert [(e["low"], e["published_at"]) for e in claim["entries"]] == [(12, iso(T1)), (14, iso(T3))]
    # Both clocks give back the first export.
    first_tally = {"acled:MMR1001": 12, "acled:MMR1002": 0, "acled:MMR1003": 3}
    assert lows(book.tally(as_of=r1)) == first_tally
    assert lows(book.tally(known_at=iso(T3 - 1))) == first_tally
    changes = book.diff(r1, summary.recorded_at)["changes"]
    assert [(c["incident_id"], c["before"], c["after"]) for c in changes] == [
        ("acled:MMR1001", {"low": 12, "high": 12, "best": 12}, {"low": 14, "high": 14, "best": 14}),
        ("acled:MMR1004", None, {"low": 1, "high": 1, "best": 1}),
    ]


def test_complete_retracts_events_absent_from_the_export(book, tmp_path):
    book.import_acled(str(write(tmp_path / "a.csv", FIRST)))
    later = [FIRST[0], FIRST[2] | {"timestamp": str(T3), "fatalities": "4"}]
    summary = book.import_acled(str(write(tmp_path / "b.csv", later)), complete=True)
    assert (summary.imported, summary.unchanged, summary.retracted, summary.retracted_incidents) == (1, 1, 1, 1)
    assert lows(book.tally()) == {"acled:MMR1001": 12, "acled:MMR1003": 4}
    [claim] = book.history(incident="acled:MMR1002")["claims"]
    retraction = claim["entries"][-1]
    assert (retraction["kind"], retraction["published_at"]) == ("retracted", iso(T3))  # the latest row timestamp
    assert retraction["reason"] == "absent from the ACLED export b.csv"
    assert "acled:MMR1002" in lows(book.tally(known_at=iso(T3 - 1)))
    before = stored_events(book.db)
    again = book.import_acled(str(write(tmp_path / "b.csv", later)), complete=True)
    assert (again.imported, again.retracted) == (0, 0) and stored_events(book.db) == before


def test_deletions_retract_at_the_deleted_timestamp(book, tmp_path):
    book.import_acled(str(write(tmp_path / "a.csv", FIRST)))
    deleted = deletions(tmp_path / "deleted.csv", [("MMR1001", T3), ("XYZ999", T3), ("MMR1003", "soon"),
                                                   ("MMR1002", T2)])
    summary = book.import_acled_deletions(str(deleted))
    assert (summary.rows, summary.retracted, summary.not_found, summary.unchanged) == (4, 2, 1, 0)
    assert [str(r) for r in summary.rejected] == ["line 4: deleted_timestamp: must be Unix seconds or a date, not 'soon'"]
    assert lows(book.tally()) == {"acled:MMR1003": 3}
    assert lows(book.tally(known_at=iso(T3 - 1))) == {"acled:MMR1001": 12, "acled:MMR1003": 3}
    [claim] = book.history(incident="acled:MMR1001")["claims"]
    assert [(e["kind"], e["published_at"], e["reason"]) for e in claim["entries"]][-1] == (
        "retracted", iso(T3), "deleted by ACLED")
    before = stored_events(book.db)
    again = book.import_acled_deletions(str(deleted))
    assert (again.retracted, again.unchanged, again.not_found) == (0, 2, 1) and stored_events(book.db) == before
    # A deleted event that ACLED publishes again later counts again.
    book.import_acled(str(write(tmp_path / "c.csv", [FIRST[0] | {"timestamp": str(T3 + 60), "fatalities": "9"}])))
    assert lows(book.tally())["acled:MMR1001"] == 9


def test_latin1_exports_bom_and_bad_rows(book, tmp_path):
    rows = [event("MMR2001", 2, location="Café Pyin Oo Lwin", notes="Ã©té"), event("MMR2002", 1)]
    latin = write(tmp_path / "latin.csv", rows, encoding="latin-1")
    summary = book.import_acled(str(latin))
    assert [str(r) for r in summary.rejected] == [
        "line 2: location: not valid UTF-8 (give the file's --encoding, e.g. latin-1)"]
    assert summary.imported == 1
    summary = book.import_acled(str(latin), encoding="latin-1")
    assert (summary.imported, summary.unchanged, summary.rejected) == (1, 1, [])
    assert fields(book, "acled:MMR2001")["place"] == "Café Pyin Oo Lwin"

    bad = [
        event("MMR3001", 1),
        event("MMR3002", "many"),
        event("MMR3003", 1, event_date="03/14/2021"),
        event("MMR3004", 1, timestamp=""),
        event("", 1),
        event("MMR3006", 1, latitude="north"),
    ]
    summary = book.import_acled(str(write(tmp_path / "bad.csv", bad, bom=True)))
    assert [str(r) for r in summary.rejected] == [
        "line 3: fatalities: must be a whole number, not 'many'",
        "line 4: event_date: must be a date YYYY-MM-DD, not '03/14/2021'",
        "line 5: timestamp: is empty",
        "line 6: event_id_cnty: is empty",
        "line 7: latitude: must be a number, not 'north'",
    ]
    assert summary.imported == 1


def test_columns_in_another_order_and_extra_columns_are_fine(book, tmp_path):
    columns = list(reversed(COLUMNS)) + ["extra"]
    path = write(tmp_path / "r.csv", [event("MMR4001", 5) | {"extra": "x"}], columns=columns)
    summary = book.import_acled(str(path))
    assert (summary.imported, summary.rejected) == (1, [])
    with pytest.raises(ValueError, match="not an ACLED file: no column fatalities"):
        book.import_acled(str(write(tmp_path / "s.csv", [{}], columns=[c for c in COLUMNS if c != "fatalities"])))


def test_command_line_acled_and_deletions(tmp_path):
    db = str(tmp_path / "cli.db")
    env = {k: v for k, v in os.environ.items() if k not in ("TOLLBOOK_DB", "TOLLBOOK_EDITOR")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tollbook", "--db", db, *args], capture_output=True, text=True,
                              cwd=ROOT, env=env, timeout=300)

    done = run("import", "acled", str(write(tmp_path / "a.csv", FIRST)))
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith(f"a.csv@{iso(T2)}: 3 rows: imported 3, unchanged 0, widened 0, rejected 0; recorded at ")
    done = run("import", "acled-deletions", str(deletions(tmp_path / "d.csv", [("MMR1001", T3)])), "--format", "json")
    assert done.returncode == 0, done.stderr
    assert {k: v for k, v in json.loads(done.stdout).items() if k in ("rows", "retracted", "not_found")} == {
        "rows": 1, "retracted": 1, "not_found": 0}
    tally = json.loads(run("tally", "--format", "json").stdout)
    assert [r["key"] for r in tally["rows"]] == ["acled:MMR1002", "acled:MMR1003"]
    done = run("import", "acled", str(tmp_path / "d.csv"))
    assert done.returncode == 2 and "not an ACLED file: no column" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_an_export_imported_before_its_attributes_were_kept_imports_again(tmp_path):
    """tests/data/store-aa66c0a/acled.db: acled-3.csv (FIRST) imported by the code at aa66c0a, which
    kept no column beyond the mapping. The same rows again are unchanged, not "a different document"."""
    import shutil

    legacy = ROOT / "tests" / "data" / "store-aa66c0a"
    shutil.copy(legacy / "acled.db", tmp_path / "t.db")
    with Tollbook(str(tmp_path / "t.db"), editor="tester") as book:
        before = book.tally(by="admin1")
        summary = book.import_acled(str(legacy / "acled-3.csv"))
        assert (summary.imported, summary.unchanged, summary.rejected) == (0, 3, [])
        assert book.tally(by="admin1") == before
        assert "disorder_type" not in fields(book, "acled:MMR1001")  # kept as it was imported
        # A row ACLED revised (a new timestamp) is a new version, and brings its attributes.
        summary = book.import_acled(str(write(tmp_path / "b.csv", [FIRST[0] | {"timestamp": str(T3), "fatalities": "14"}])))
        assert (summary.imported, summary.rejected) == (1, [])
        assert lows(book.tally())["acled:MMR1001"] == 14
        assert fields(book, "acled:MMR1001")["disorder_type"] == "Political violence"
