"""The core benchmark: ingest, rebuild and point queries on a synthetic store, measured beside
raw-SQLite baselines in the same run, written as a markdown table.

    .venv/bin/python bench/bench_core.py --documents 100000 [--out bench/results-core.md]

Each phase runs in its own process so its peak memory (max RSS) is its own.
Baselines: the same serialized events inserted with executemany in one transaction into a
bare table (the write limit), and a sequential read plus orjson decode of the events table
(the rebuild limit).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _count_events(db: str) -> int:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT count(*) FROM stored_events").fetchone()[0]


# -- phases (each in its own process) --------------------------------------------------------

def phase_generate(documents: int, path: str) -> dict:
    from generate import generate

    start = time.perf_counter()
    with open(path, "wb") as out:
        for doc in itertools.islice(generate(documents * 10), documents):
            out.write(orjson.dumps(doc) + b"\n")
    return {"seconds": time.perf_counter() - start}


def phase_ingest(db: str, path: str) -> dict:
    from tollbook.api import Tollbook

    book = Tollbook(db, editor="bench")
    start = time.perf_counter()
    with open(path, "rb") as lines:
        result = book.ingest(lines)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "events": _count_events(db), "accepted": result.accepted,
            "rejected": len(result.rejected), "first_rejections": [str(r) for r in result.rejected[:3]],
            "rss_mb": _rss_mb()}


def phase_project(db: str, rebuild: bool) -> dict:
    from tollbook.api import Tollbook

    book = Tollbook(db, editor="bench")
    start = time.perf_counter()
    events = book.rebuild() if rebuild else book.refresh()
    return {"seconds": time.perf_counter() - start, "events": events, "rss_mb": _rss_mb()}


def phase_queries(db: str, samples: int) -> dict:
    from projections import queries
    from tollbook.api import Tollbook

    book = Tollbook(db, editor="bench")
    book.refresh()
    rng = random.Random(7)
    with book.store.transaction(write=False) as cursor:
        cursor.execute("SELECT min(recorded_at), max(recorded_at) FROM tb_entries")
        first, last = cursor.fetchone()
        cursor.execute("SELECT min(published_at), max(published_at) FROM tb_entries")
        p_first, p_last = cursor.fetchone()
        cursor.execute("SELECT DISTINCT incident_id FROM tb_claims")
        incidents = [row[0] for row in cursor.fetchall()]
        timings: dict[str, list[float]] = {"as_of": [], "known_at": [], "history": []}
        for _ in range(samples):
            incident = rng.choice(incidents)
            for name, kwargs in (("as_of", {"as_of": rng.randint(first, last)}),
                                 ("known_at", {"known_at": rng.randint(p_first, p_last)})):
                start = time.perf_counter()
                queries.tally(cursor, incident=incident, **kwargs)
                timings[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            queries.history(cursor, incident=incident, measure="killed", as_of=rng.randint(first, last))
            timings["history"].append(time.perf_counter() - start)
        start = time.perf_counter()
        queries.tally(cursor, by="admin1", as_of=rng.randint(first, last))
        by_admin1 = time.perf_counter() - start
    summary = {name: {"median_ms": statistics.median(t) * 1000,
                      "p95_ms": statistics.quantiles(t, n=20)[18] * 1000} for name, t in timings.items()}
    summary["by_admin1_ms"] = by_admin1 * 1000
    return summary


def phase_raw(db: str, scratch: str) -> dict:
    """The same serialized events: executemany into a bare table, and a read + decode."""
    with sqlite3.connect(db) as source:
        rows = source.execute(
            "SELECT originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid").fetchall()
    target = sqlite3.connect(scratch, isolation_level=None)
    target.execute("PRAGMA journal_mode=WAL")
    target.execute("PRAGMA synchronous=FULL")
    target.execute("CREATE TABLE stored_events (originator_id TEXT, originator_version INTEGER, topic TEXT, "
                   "state BLOB, PRIMARY KEY (originator_id, originator_version))")
    start = time.perf_counter()
    target.execute("BEGIN")
    target.executemany("INSERT INTO stored_events VALUES (?, ?, ?, ?)", rows)
    target.execute("COMMIT")
    insert = time.perf_counter() - start
    target.close()
    reader = sqlite3.connect(scratch)
    start = time.perf_counter()
    decoded = 0
    for (state,) in reader.execute("SELECT state FROM stored_events ORDER BY rowid"):
        orjson.loads(state)
        decoded += 1
    read = time.perf_counter() - start
    return {"events": len(rows), "insert_seconds": insert, "read_decode_seconds": read}


def _in_process(*args: str) -> dict:
    output = subprocess.run([sys.executable, __file__, "--phase", *args], check=True, capture_output=True, text=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def machine() -> str:
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")


def run(documents: int, samples: int, out: str | None) -> str:
    folder = tempfile.mkdtemp(prefix="tollbook-bench-")
    path, db, scratch = (os.path.join(folder, name) for name in ("docs.jsonl", "store.db", "raw.db"))
    _in_process("generate", str(documents), path)
    ingest = _in_process("ingest", db, path)
    project = _in_process("project", db)
    rebuild = _in_process("rebuild", db)
    query = _in_process("queries", db, str(samples))
    raw = _in_process("raw", db, scratch)
    events = ingest["events"]
    ingest_rate = events / ingest["seconds"]
    raw_insert_rate = raw["events"] / raw["insert_seconds"]
    rebuild_rate = rebuild["events"] / rebuild["seconds"]
    raw_read_rate = raw["events"] / raw["read_decode_seconds"]
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder) if f.startswith("store.db"))
    lines = [
        f"# Tollbook core benchmark: {documents:,} documents, {events:,} events",
        "",
        f"Machine: {machine()}.",
        "",
        "| what | measured | baseline (same run) | ratio |",
        "|---|---|---|---|",
        f"| ingest | {ingest_rate:,.0f} events/s ({ingest['seconds']:.1f} s) | raw executemany "
        f"{raw_insert_rate:,.0f} rows/s | {ingest_rate / raw_insert_rate:.2f} |",
        f"| projections catching up after ingest | {events / project['seconds']:,.0f} events/s "
        f"({project['seconds']:.1f} s) | | |",
        f"| rebuild of every projection | {rebuild_rate:,.0f} events/s ({rebuild['seconds']:.1f} s) | raw read + "
        f"orjson decode {raw_read_rate:,.0f} events/s | {rebuild_rate / raw_read_rate:.2f} |",
        f"| single-incident tally `--as-of` | median {query['as_of']['median_ms']:.1f} ms, "
        f"p95 {query['as_of']['p95_ms']:.1f} ms | | |",
        f"| single-incident tally `--known-at` | median {query['known_at']['median_ms']:.1f} ms, "
        f"p95 {query['known_at']['p95_ms']:.1f} ms | | |",
        f"| history of one incident's `killed` claims `--as-of` | median {query['history']['median_ms']:.1f} ms, "
        f"p95 {query['history']['p95_ms']:.1f} ms | | |",
        f"| `--by admin1` over everything, `--as-of` | {query['by_admin1_ms']:.0f} ms | | |",
        f"| peak memory | ingest {ingest['rss_mb']:.0f} MB, rebuild {rebuild['rss_mb']:.0f} MB | | |",
        f"| store size | {size / 2**20:.0f} MB ({size / events:.0f} bytes/event, projections included) | | |",
        "",
        f"Documents accepted {ingest['accepted']:,}, rejected {ingest['rejected']} "
        f"{ingest['first_rejections'] or ''}.",
    ]
    report = "\n".join(lines) + "\n"
    if out:
        Path(out).write_text(report)
    return report


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--phase":
        name, *args = sys.argv[2:]
        phases = {
            "generate": lambda: phase_generate(int(args[0]), args[1]),
            "ingest": lambda: phase_ingest(*args),
            "project": lambda: phase_project(args[0], rebuild=False),
            "rebuild": lambda: phase_project(args[0], rebuild=True),
            "queries": lambda: phase_queries(args[0], int(args[1])),
            "raw": lambda: phase_raw(*args),
        }
        print(json.dumps(phases[name]()))
        return
    parser = argparse.ArgumentParser(description="Tollbook core benchmark")
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=200, help="queries per kind")
    parser.add_argument("--out", help="write the markdown table here too")
    options = parser.parse_args()
    print(run(options.documents, options.samples, options.out))


if __name__ == "__main__":
    main()
