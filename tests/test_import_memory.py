"""Memory bounded by the batch, not by the file (issue 11 item 5, issue 14): an unchanged re-import of
a GED release runs in the same peak RSS at 10,000 rows as at 40,000.

One store holds the 40,000 rows (a GED file expanded from the real extract, as bench/bench_import.py
does); the first 10,000 rows and then all 40,000 are imported again, unchanged, each in its own
process so that its peak RSS is its own. A batch that ended only at a number of events held every
unchanged document of the file (1.28 GB at 300,000 rows), and the ids derived for the rows were
kept up to the caches' size.

And the disk the WAL takes bounded too: readers that take turns (as the projector beside a long
import does) kept SQLite's checkpoints from ever starting the WAL over, and it grew by every page
every commit wrote (10 GB five minutes into a 1M-row import)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from tollbook.api import Tollbook

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from bench_import import expand  # noqa: E402
from generate import generate  # noqa: E402

REIMPORT = """
import json, resource, sys
from tollbook.api import Tollbook
with Tollbook(sys.argv[1], editor="tester") as book:
    summary = book.import_ucdp(sys.argv[2], release="19.1", published_at="2019-06-01")
print(json.dumps({"rows": summary.rows, "unchanged": summary.unchanged,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def reimport(db: Path, path: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", REIMPORT, str(db), str(path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_unchanged_reimport_peak_memory_does_not_grow_with_the_file(tmp_path, monkeypatch):
    import tollbook.follower

    small, large = tmp_path / "ged-10k.csv", tmp_path / "ged-40k.csv"
    expand(small, 10_000)
    expand(large, 40_000)
    db = tmp_path / "t.db"
    monkeypatch.setattr(tollbook.follower, "ALONGSIDE_BYTES", 1 << 62)  # no query follows: nothing to project
    with Tollbook(str(db), editor="tester") as book:
        assert book.import_ucdp(str(large), release="19.1", published_at="2019-06-01").imported == 40_000
    at_10k, at_40k = reimport(db, small), reimport(db, large)
    assert (at_10k["rows"], at_10k["unchanged"]) == (10_000, 10_000)
    assert (at_40k["rows"], at_40k["unchanged"]) == (40_000, 40_000)
    # Issue 14 allows 15%; 5% is asked because a re-import's peak holds some 250 MB that do not
    # depend on the file (interpreter, store, SQLite's cache), under which main's growth (308 ->
    # 339 MB here, one document kept per row) stayed within 15%. Bounded, the two are equal.
    assert at_40k["peak_mb"] <= at_10k["peak_mb"] * 1.05, (at_10k, at_40k)


def _wal_peak(db: Path, wal_limit: int | None) -> int:
    """The WAL's largest size while 8,000 events are ingested in many small transactions, with a
    reader always in the WAL: two read transactions relaying each other, as a projector's do."""
    documents = list(generate(8_000))
    stop, peak = threading.Event(), [0]

    def relay() -> None:
        first, second = sqlite3.connect(db, isolation_level=None), sqlite3.connect(db, isolation_level=None)
        first.execute("BEGIN")
        first.execute("SELECT count(*) FROM stored_events").fetchall()
        while not stop.is_set():
            second.execute("BEGIN")
            second.execute("SELECT count(*) FROM stored_events").fetchall()
            first.execute("COMMIT")  # the other one is reading already
            time.sleep(0.01)
            first, second = second, first
        first.execute("COMMIT")

    with Tollbook(str(db), editor="tester", refresh_on_read=False) as book:
        book.store.wal_limit = wal_limit if wal_limit is not None else 1 << 62
        reader = threading.Thread(target=relay)
        reader.start()
        try:
            for start in range(0, len(documents), 50):
                book.ingest(documents[start:start + 50])
                peak[0] = max(peak[0], os.path.getsize(f"{db}-wal"))
        finally:
            stop.set()
            reader.join()
    return peak[0]


def test_readers_taking_turns_do_not_let_the_wal_grow_without_bound(tmp_path):
    unbounded = _wal_peak(tmp_path / "unbounded.db", None)
    bounded = _wal_peak(tmp_path / "bounded.db", 1 << 20)
    # Without the bound every commit's pages pile up; with it the WAL is truncated past 1 MB
    # (a commit's pages beyond the limit at most: the largest here is a few hundred KB).
    assert unbounded > 6 << 20, unbounded
    assert bounded < 2 << 20, (bounded, unbounded)
