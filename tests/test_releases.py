"""Release receipts (CONTRACT section 7, "Releases and formats"), on both stores: every completed
import records the release's name, the file's SHA-256 and its row counts; the same file again
stores nothing and says so, found before any row is read; an import stopped midway records no
receipt; ``tollbook releases`` lists them. And the progress bar: drawn on a terminal, not when
piped."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import INSTANT_RE, ROOT, _env, event_count
from test_import_formats import CURRENT, DELETIONS, write
from test_import_ucdp import read_rows, write_rows

GED = ROOT / "examples" / "ucdp-ged-19.1" / "ged191-myanmar-bangladesh.csv"
GED_SHA256 = hashlib.sha256(GED.read_bytes()).hexdigest()
P1 = "2019-06-14"


def import_ged(run, *args: str):
    return run("--editor", "ana", "import", "ucdp", str(GED), "--release", "19.1", "--published-at", P1, *args)


def test_the_ged_extract_is_recorded_as_a_release_and_again_stores_nothing(run, db_path):
    code, out, err = import_ged(run)
    assert code == 0 and err == "", err
    code, out, err = run("releases", "--format", "json")
    assert code == 0 and err == ""
    [release] = json.loads(out)["releases"]
    assert INSTANT_RE.match(release.pop("recorded_at"))
    # The extract's 3,194 rows, six of which break low <= best <= high (examples/ucdp-ged-19.1).
    assert release == {
        "name": "ucdp-ged-19.1", "importer": "ucdp", "file": GED.name, "sha256": GED_SHA256, "encoding": "utf-8",
        "complete": False, "rows": 3194, "imported": 3194, "unchanged": 0, "widened": 6, "rejected": 0,
        "retracted": 0, "not_found": 0, "published_at": "2019-06-14T00:00:00Z", "recorded_by": "ana"}

    before = event_count(db_path)
    code, out, err = import_ged(run, "--format", "json")
    assert code == 0 and err == "", err
    summary = json.loads(out)
    assert (summary["already_imported"], summary["imported"], summary["unchanged"], summary["recorded_at"]) == (
        True, 0, 3194, None)
    assert summary["release"]["sha256"] == GED_SHA256
    assert event_count(db_path) == before
    code, out, err = import_ged(run)
    assert code == 0 and err == "", err
    assert "3194 rows: imported 0, unchanged 3194" in out
    assert f"already imported, nothing stored: this file (sha256 {GED_SHA256[:12]}…) was recorded at " in out
    assert out.rstrip().endswith(" by ana")

    code, out, _ = run("releases")
    assert code == 0
    header, row = out.splitlines()  # one release still
    assert header.split() == ["name", "importer", "rows", "imported", "unchanged", "widened", "rejected", "retracted",
                              "published_at", "recorded_at", "recorded_by", "sha256"]
    assert row.split()[:9] == ["ucdp-ged-19.1", "ucdp", "3194", "3194", "0", "6", "0", "0", "2019-06-14T00:00:00Z"]
    assert row.split()[-2:] == ["ana", GED_SHA256[:12]]


def ged_slice(tmp_path: Path, rows: int, name: str = "slice.csv") -> Path:
    header, found = read_rows(GED)
    return write_rows(tmp_path / name, header, found[:rows])


def test_the_same_file_is_found_without_reading_its_rows(book, tmp_path):
    path = ged_slice(tmp_path, 600)
    calls: list[tuple[int, int]] = []
    book.import_ucdp(str(path), release="19.1", published_at=P1, progress=lambda *done: calls.append(done))
    assert calls and calls[-1] == (path.stat().st_size, 600)  # the rows were read the first time
    calls.clear()
    again = book.import_ucdp(str(path), release="19.1", published_at=P1, progress=lambda *done: calls.append(done))
    assert again.already_imported and calls == []
    # Changed by one byte it is another file: its rows are read (and found unchanged).
    changed = tmp_path / "changed.csv"
    changed.write_bytes(path.read_bytes() + b"\n")
    other = book.import_ucdp(str(changed), release="19.1", published_at=P1, progress=lambda *done: calls.append(done))
    assert not other.already_imported and calls[-1][1] == 600
    assert (other.imported, other.unchanged) == (0, 600)
    names = [(r["name"], r["file"], r["imported"], r["unchanged"]) for r in book.releases()["releases"]]
    assert names == [("ucdp-ged-19.1", "slice.csv", 600, 0), ("ucdp-ged-19.1", "changed.csv", 0, 600)]


def test_complete_after_a_plain_import_of_the_same_file(book, tmp_path):
    whole, small = ged_slice(tmp_path, 40, "whole.csv"), ged_slice(tmp_path, 10, "small.csv")
    book.import_ucdp(str(whole), release="19.1", published_at=P1)
    plain = book.import_ucdp(str(small), release="small", published_at=P1)
    assert (plain.imported, plain.unchanged) == (0, 10)
    before = event_count(book.db)
    # Imported before without --complete: the 30 incidents absent from it are retracted now.
    complete = book.import_ucdp(str(small), release="small", published_at=P1, complete=True)
    assert not complete.already_imported and complete.retracted_incidents == 30
    assert book.tally()["total"]["incidents"] == 10
    assert book.releases()["releases"][-1]["complete"] is True
    # And again: its complete receipt covers it.
    after = event_count(book.db)
    assert after > before
    again = book.import_ucdp(str(small), release="small", published_at=P1, complete=True)
    assert again.already_imported and event_count(book.db) == after
    assert book.import_ucdp(str(small), release="small", published_at=P1).already_imported


def test_acled_exports_and_deletions_are_releases_in_recorded_order(book, tmp_path):
    export = write(tmp_path, "export-2024-05-16.csv", CURRENT)
    deleted = write(tmp_path, "deleted.csv", DELETIONS)
    book.import_acled(export)
    book.import_acled_deletions(deleted)
    got = book.releases()["releases"]
    assert [(r["name"], r["importer"], r["sha256"]) for r in got] == [
        ("export-2024-05-16.csv@2024-05-15T19:06:40Z", "acled", hashlib.sha256(CURRENT.encode()).hexdigest()),
        ("deleted.csv@2024-05-21T10:00:00Z", "acled-deletions", hashlib.sha256(DELETIONS.encode()).hexdigest())]
    # The export's latest row timestamp is when it was published; the list's latest deletion.
    assert [r["published_at"] for r in got] == ["2024-05-15T19:06:40Z", "2024-05-21T10:00:00Z"]
    # Three of the list's events are in the export (MMR5001 is not imported here).
    counts = [{k: r[k] for k in ("rows", "imported", "unchanged", "rejected", "retracted", "not_found")} for r in got]
    assert counts == [{"rows": 4, "imported": 4, "unchanged": 0, "rejected": 0, "retracted": 0, "not_found": 0},
                      {"rows": 6, "imported": 3, "unchanged": 0, "rejected": 1, "retracted": 3, "not_found": 2}]
    assert got[0]["recorded_at"] < got[1]["recorded_at"]
    for path, importer in ((export, book.import_acled), (deleted, book.import_acled_deletions)):
        again = importer(path)
        assert again.already_imported and (again.imported, again.retracted) == (0, 0)
    assert len(book.releases()["releases"]) == 2


def test_standard_input_is_recorded_and_recognised_at_its_end(run, db_path):
    code, out, err = run("import", "acled", "-", input=CURRENT)
    assert code == 0, err
    assert out.startswith("(stdin)@2024-05-15T19:06:40Z: 4 rows: imported 4")
    before = event_count(db_path)
    code, out, err = run("import", "acled", "-", input=CURRENT)
    assert code == 0 and "imported 0, unchanged 4" in out and "already imported, nothing stored" in out
    assert event_count(db_path) == before
    [release] = json.loads(run("releases", "--format", "json")[1])["releases"]
    assert (release["file"], release["sha256"]) == ("-", hashlib.sha256(CURRENT.encode()).hexdigest())


class Stop(Exception):
    pass


def test_an_import_stopped_midway_records_no_receipt(book, tmp_path):
    path = ged_slice(tmp_path, 1200)

    def stop(done: int, rows: int) -> None:
        if rows >= 500:
            raise Stop

    with pytest.raises(Stop):
        book.import_ucdp(str(path), release="19.1", published_at=P1, progress=stop)
    assert book.releases()["releases"] == []
    summary = book.import_ucdp(str(path), release="19.1", published_at=P1)
    assert not summary.already_imported and summary.imported + summary.unchanged == 1200
    [release] = book.releases()["releases"]
    assert (release["rows"], release["imported"] + release["unchanged"]) == (1200, 1200)


# -- the progress bar ----------------------------------------------------------------------------

def test_no_bar_when_piped(run, tmp_path):
    code, out, err = run("import", "ucdp", ged_slice(tmp_path, 1000), "--release", "19.1", "--published-at", P1)
    assert code == 0 and err == ""
    assert not any(mark in out for mark in ("━", "rows/s", "\x1b["))


def test_a_bar_on_a_terminal_shows_rows_rate_and_time_left(db_path, tmp_path):
    pty = pytest.importorskip("pty")
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "tollbook", "import", "ucdp", str(ged_slice(tmp_path, 1000)), "--release", "19.1",
         "--published-at", P1],
        stdout=subprocess.PIPE, stderr=follower, cwd=tmp_path, env=_env(db_path, {"TERM": "xterm", "COLUMNS": "120"}))
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    out, _ = process.communicate(timeout=600)
    os.close(leader)
    assert process.returncode == 0
    screen = seen.decode(errors="replace")
    assert "importing" in screen and "━" in screen and "100%" in screen
    assert "1,000 rows" in screen and "rows/s" in screen and "time left" in screen
    assert out.decode().startswith("ucdp-ged-19.1: 1000 rows: imported 1000")


def test_the_read_model_counts_what_a_receipt_counts():
    from tollbook.domain.release import COUNTS
    from tollbook.projections import releases

    assert releases.COUNTS == COUNTS
