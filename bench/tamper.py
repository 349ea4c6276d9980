"""Benchmark of tamper evidence (issue 12): what the Merkle tree costs ingest, and verify,
checkpoint and prove at size, each in a process of its own (peak memory is its own).

    .venv/bin/python bench/tamper.py --events 100000 --out bench/results-tamper.md

- ingest with the tree ÷ ingest without it (target ≥ 0.9): the same file into fresh SQLite
  stores, alternately, ``--runs`` times each; "without" is this code with the tree's work taken
  out in that process only (states serialized by the pydantic mapper as before, no leaf hashes,
  no tree rows: the append path as it was before the tree);
- on the store ingested with the tree: ``verify`` (≤ 30 s, ≤ 500 MB at 1M events), ``checkpoint``
  (≤ 1 s), ``prove`` for one incident (≤ 200 ms, median of several incidents) and the bundle's
  hashes per event (O(log n)).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]


def _rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu() -> float:
    """This process's CPU seconds (every thread): less swayed than wall time by a busy machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _without_tree() -> None:
    """This process's append path as it was before the tree: each state serialized by the
    pydantic mapper, no leaf hash, no leaves or nodes."""
    from tollbook.store import log, merkle
    from tollbook.store.eventstore import PydanticMapper

    mapper = PydanticMapper()
    log.stored = lambda event, recorded_at, text: (mapper.row(event, recorded_at)[3], b"")
    log.Log._insert_tree = lambda self, cursor, leaves, nodes: None
    log.Log.size = log.Log.head
    log.Log._edge = lambda self, cursor, size: merkle.CompactRange()
    merkle.CompactRange.append = lambda self, leaf: None


def ingest(db: str, path: str, tree: bool) -> dict:
    if not tree:
        _without_tree()
    from tollbook.api import Tollbook

    book = Tollbook(db, editor="bench")
    start, cpu = time.perf_counter(), _cpu()
    with open(path, "rb") as lines:
        result = book.ingest(lines)
    seconds, cpu = time.perf_counter() - start, _cpu() - cpu
    with book.store.transaction(write=False) as cursor:
        events = book.store.log.head(cursor)
    book.close()
    return {"seconds": seconds, "cpu_seconds": cpu, "events": events, "rejected": len(result.rejected),
            "max_rss_mb": _rss()}


def verify(db: str) -> dict:
    from tollbook.api import Tollbook

    book = Tollbook(db)
    start, cpu = time.perf_counter(), _cpu()
    events, root = book.verify()
    worker = resource.getrusage(resource.RUSAGE_CHILDREN)  # the process that checked the end of the log, if any
    return {"seconds": time.perf_counter() - start, "cpu_seconds": _cpu() - cpu, "events": events, "root": root,
            "max_rss_mb": _rss(), "worker_cpu_seconds": worker.ru_utime + worker.ru_stime,
            "worker_max_rss_mb": worker.ru_maxrss / 1024}


def checkpoint(db: str, key: str) -> dict:
    from tollbook.api import Tollbook

    book = Tollbook(db, editor="bench")
    start = time.perf_counter()
    note = book.checkpoint(Path(key).read_text())
    return {"seconds": time.perf_counter() - start, "note": note}


def prove(db: str, note: str, incidents: list[str]) -> dict:
    from tollbook.api import Tollbook

    book = Tollbook(db)
    book.refresh()
    times, hashes, events = [], 0, 0
    for incident in incidents:
        start = time.perf_counter()
        bundle = book.prove(incident=incident, checkpoint=note)
        times.append(time.perf_counter() - start)
        events += len(bundle["events"])
        hashes += sum(len(line["inclusion"]) for line in bundle["events"])
    return {"median_s": statistics.median(times), "max_s": max(times), "samples": len(times),
            "events": events, "hashes_per_event": hashes / events if events else 0}


PHASES = {"ingest": lambda a: ingest(a["db"], a["path"], a["tree"]), "verify": lambda a: verify(a["db"]),
          "checkpoint": lambda a: checkpoint(a["db"], a["key"]),
          "prove": lambda a: prove(a["db"], a["note"], a["incidents"])}


def phase(name: str, **arguments) -> dict:
    done = subprocess.run([sys.executable, __file__, "--phase", name, json.dumps(arguments)], capture_output=True,
                          text=True, check=False)
    if done.returncode:
        raise SystemExit(f"phase {name} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def audit_rows(db: str, incidents: list[str], folder: Path) -> tuple[int, list[str]]:
    """verify, checkpoint and prove on ``db`` (a checkpoint is written into it): the table's rows."""
    checked = phase("verify", db=db)
    subprocess.run([sys.executable, "-m", "tollbook", "keygen", "--out", str(folder / "key")], check=True,
                   capture_output=True)
    signed = phase("checkpoint", db=db, key=str(folder / "key"))
    proved = phase("prove", db=db, note=signed["note"], incidents=incidents)
    events = checked["events"]
    cpu = checked["cpu_seconds"] + checked["worker_cpu_seconds"]
    worker = (f" + {checked['worker_cpu_seconds']:.1f} s in the worker, {cpu / events * 1e6:.0f} µs an event"
              if checked["worker_cpu_seconds"] else f", {cpu / events * 1e6:.0f} µs an event")
    return events, [
        f"| verify ({events:,} events: every leaf and the tree recomputed) | ≤ 30 s, ≤ 500 MB at 1M | "
        f"{checked['seconds']:.1f} s (CPU {checked['cpu_seconds']:.1f} s{worker}), peak {checked['max_rss_mb']:.0f} MB"
        + (f" (worker {checked['worker_max_rss_mb']:.0f} MB)" if checked["worker_cpu_seconds"] else "") + " |",
        f"| checkpoint | ≤ 1 s | {signed['seconds'] * 1000:.0f} ms |",
        f"| prove, one incident ({proved['samples']} incidents) | ≤ 200 ms | median {proved['median_s'] * 1000:.0f} ms,"
        f" max {proved['max_s'] * 1000:.0f} ms |",
        f"| bundle: inclusion hashes per event | O(log n): log2 n = {events.bit_length()} | "
        f"{proved['hashes_per_event']:.1f} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--store", help="only verify, checkpoint and prove, on this SQLite store (it gets a"
                        " checkpoint: give a copy)")
    parser.add_argument("--out", default=str(HERE / "results-tamper.md"))
    parser.add_argument("--phase", nargs=2)
    options = parser.parse_args()
    if options.phase:
        print(json.dumps(PHASES[options.phase[0]](json.loads(options.phase[1]))), flush=True)
        return
    import phases  # bench/phases.py: the data

    began, load = time.time(), os.getloadavg()[0]
    folder = Path(tempfile.mkdtemp(prefix="tollbook-tamper-"))
    rows = []
    if options.store:
        import sqlite3

        with sqlite3.connect(options.store) as connection:
            incidents = [row[0] for row in connection.execute(
                "SELECT incident_id FROM tb_incidents WHERE to_recorded_at IS NULL ORDER BY random() LIMIT 20")]
        events, rows = audit_rows(options.store, incidents, folder)
        command, data = f"--store {options.store}", f"the store at {options.store}, {events:,} stored events."
    else:
        path = folder / "docs.jsonl"
        made = phases.generate(options.events, str(path))
        runs: dict[bool, list[dict]] = {True: [], False: []}
        for run in range(options.runs):
            for tree in (True, False) if run % 2 == 0 else (False, True):
                db = folder / f"{'tree' if tree else 'plain'}-{run}.db"
                runs[tree].append(phase("ingest", db=str(db), path=str(path), tree=tree))
        incidents = []
        with open(path, "rb") as lines:
            for line in lines:
                document = json.loads(line)
                if document.get("kind") == "report" and document.get("incidents"):
                    incidents.append(document["incidents"][0]["incident_id"])
                if len(incidents) >= 400:
                    break
        events, rows = audit_rows(str(folder / "tree-0.db"), incidents[::40], folder)
        rate = {tree: [r["events"] / r["seconds"] for r in found] for tree, found in runs.items()}
        ratio = statistics.median(rate[True]) / statistics.median(rate[False])
        cpu = {tree: statistics.median(r["cpu_seconds"] for r in found) for tree, found in runs.items()}
        rows = [
            f"| ingest with the tree | | {', '.join(f'{r:,.0f}' for r in rate[True])} events/s |",
            f"| ingest without it (this code, the tree's work taken out) | | "
            f"{', '.join(f'{r:,.0f}' for r in rate[False])} events/s |",
            f"| ingest with ÷ without (medians) | ≥ 0.9 | {ratio:.2f} {'✓' if ratio >= 0.9 else '✗'} |",
            f"| … by CPU time: without ÷ with (CPU seconds {cpu[False]:.1f} / {cpu[True]:.1f}) | ≥ 0.9 | "
            f"{cpu[False] / cpu[True]:.2f} {'✓' if cpu[False] / cpu[True] >= 0.9 else '✗'} |",
            *rows,
            f"| peak memory, ingest with / without the tree | | {runs[True][0]['max_rss_mb']:.0f} / "
            f"{runs[False][0]['max_rss_mb']:.0f} MB |",
        ]
        command = f"--events {options.events} --runs {options.runs}"
        data = (f"bench/generate.py, {options.events:,} generator events, {made['documents']:,} documents, "
                f"{events:,} stored events (receipts included).")
    lines = [
        f"`.venv/bin/python bench/tamper.py {command}` — "
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(began))} UTC, {(time.time() - began) / 60:.1f} min.", "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
        "(the machine is shared with other work: figures are indicative). SQLite.", "",
        f"Data: {data}", "",
        "| figure | target | result |", "|---|---|---|", *rows, "",
    ]
    Path(options.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
