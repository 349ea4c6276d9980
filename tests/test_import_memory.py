"""Memory bounded by the batch, not by the file (issue 11 item 5, issue 14): an unchanged re-import of
a GED release runs in the same peak RSS at 10,000 rows as at 40,000.

One store holds the 40,000 rows (a GED file expanded from the real extract, as bench/bench_import.py
does); the first 10,000 rows and then all 40,000 are imported again, unchanged, each in its own
process so that its peak RSS is its own. A batch that ended only at a number of events held every
unchanged document of the file (1.28 GB at 300,000 rows), and the ids derived for the rows were
kept up to the caches' size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tollbook.api import Tollbook

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from bench_import import expand  # noqa: E402

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
