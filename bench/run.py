"""The Tollbook benchmark: one command that measures the write side, the read side and the
queries at one or more sizes, beside raw-SQLite limits and a log replay measured in the same run,
and writes a markdown table (and the raw figures as JSON beside it).

    .venv/bin/python bench/run.py --events 1000000 --out bench/results.md
    .venv/bin/python bench/run.py --sizes 100000,1000000 --postgres postgresql://postgres@127.0.0.1:5432/test \\
        --pg-events 100000 --out bench/results.md

Sizes count the generator's events (bench/generate.py: claims, incident entries, corrections,
retractions, merges); the store also keeps one receipt event per document, and every rate below
is over the events the store holds (generator events + receipts), the same events the raw
baselines write and read. Every phase runs in its own process (bench/phases.py), so each peak
memory figure is that phase's alone. PostgreSQL stores get schemas of their own
(``bench_<pid>_<n>``), dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PHASES = HERE / "phases.py"
sys.path[:0] = [str(ROOT)]

KINDS = ("incident", "history", "admin1", "diff", "source", "latest")
LABELS = {"incident": "single-incident tally, random --as-of and --known-at",
          "history": "history of one claim",
          "admin1": "--by admin1 over everything, random --as-of and --known-at",
          "diff": "diff over an hour of the feed",
          "source": "--by source over everything, random --as-of and --known-at",
          "latest": "--by admin1 --policy latest over everything, random --as-of and --known-at"}
TARGETS = {"ingest_ratio": 0.3, "rebuild_ratio": 0.5, "incident_p95_ms": 50, "admin1_p95_ms": 1000,
           "history_p95_ms": 20, "diff_p95_ms": 2000, "rss_mb": 500, "help_ms": 300}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def phase(name: str, **arguments: Any) -> dict:
    done = subprocess.run([sys.executable, str(PHASES), name, json.dumps(arguments)], capture_output=True,
                          text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"phase {name} {arguments} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def is_postgres(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


# -- PostgreSQL schemas --------------------------------------------------------------------------

class Schemas:
    """Fresh schemas on one PostgreSQL server, dropped by :meth:`drop_all`."""

    def __init__(self, base: str):
        self.base = base
        self.created: list[str] = []

    def new(self, label: str) -> str:
        schema = f"bench_{os.getpid()}_{len(self.created) + 1}_{label}"
        self.created.append(schema)
        return urlunsplit(urlsplit(self.base)._replace(query=f"schema={schema}"))

    def _connect(self):
        import psycopg

        from tollbook.store.pgstore import environment

        env = environment(urlunsplit(urlsplit(self.base)._replace(query="")))
        return psycopg.connect(dbname=env["POSTGRES_DBNAME"], host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"],
                               user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"], autocommit=True,
                               connect_timeout=10)

    def version(self) -> str:
        with self._connect() as connection:
            return connection.execute("SHOW server_version").fetchone()[0]

    def drop(self, url: str) -> None:
        schema = url.rsplit("schema=", 1)[1]
        with self._connect() as connection:
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    def drop_all(self) -> None:
        if not self.created:
            return
        with self._connect() as connection:
            for schema in self.created:
                try:
                    connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                except Exception as error:  # reported; the schema is named after this process
                    log(f"could not drop schema {schema}: {error}")


# -- the runs ---------------------------------------------------------------------------------

class Bench:
    def __init__(self, options: argparse.Namespace, folder: Path, schemas: Schemas | None):
        self.o = options
        self.folder = folder
        self.schemas = schemas
        self.documents: dict[int, tuple[Path, dict]] = {}

    def docs(self, events: int) -> tuple[Path, dict]:
        if events not in self.documents:
            path = self.folder / f"docs-{events}.jsonl"
            log(f"generating {events:,} events")
            self.documents[events] = (path, phase("generate", events=events, path=str(path)))
        return self.documents[events]

    def sqlite_store(self, name: str) -> str:
        db = self.folder / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        return str(db)

    def drop(self, db: str) -> None:
        if is_postgres(db):
            self.schemas.drop(db)
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)

    def store_run(self, db: str, events: int, kinds: tuple[str, ...], replay_samples: int) -> dict:
        """Ingest, projections catching up, rebuild, size, queries on a fresh store; on SQLite
        also the raw-SQLite limits on the same events."""
        path, generated = self.docs(events)
        where = "PostgreSQL" if is_postgres(db) else "SQLite"
        result: dict[str, Any] = {"events": events, "generated": generated}
        log(f"{where} {events:,}: ingest")
        result["ingest"] = phase("ingest", db=db, path=str(path))
        if result["ingest"]["rejected"]:
            log(f"  rejected {result['ingest']['rejected']}: {result['ingest']['first_rejections']}")
        log(f"{where} {events:,}: projections catching up")
        result["catchup"] = phase("catchup", db=db)
        log(f"{where} {events:,}: rebuild")
        result["rebuild"] = phase("rebuild", db=db)
        if not is_postgres(db):
            log(f"{where} {events:,}: raw SQLite baselines")
            result["raw"] = phase("raw", db=db, scratch=str(self.folder / "raw.db"), path=str(path))
        result["size"] = phase("size", db=db)
        log(f"{where} {events:,}: queries {', '.join(kinds)}")
        result["queries"] = phase("queries", db=db, kinds=list(kinds), samples=self.o.samples,
                                  heavy_samples=self.o.heavy_samples, replay_samples=replay_samples)
        return result

    def split(self, events: int, writers: int) -> list[Path]:
        """The documents in ``writers`` shares that do not depend on each other: documents that
        name the same incident (directly, or through a report or merge naming several) go to
        the same share, in their original order; groups are dealt out in turn."""
        path, _ = self.docs(events)
        if writers == 1:
            return [path]
        parent: dict[str, str] = {}

        def find(x: str) -> str:
            root = x
            while parent.setdefault(root, root) != root:
                root = parent[root]
            while parent[x] != root:
                parent[x], x = root, parent[x]
            return root

        def incidents(document: dict) -> list[str]:
            found = [i["incident_id"] for i in document.get("incidents") or ()]
            found += [c["incident_id"] for c in document.get("claims") or ()]
            if "incident_id" in document:
                found.append(document["incident_id"])
            if "into" in document:
                found.append(document["into"])
            return found

        with open(path, "rb") as lines:
            for line in lines:
                ids = incidents(orjson.loads(line))
                first = find(ids[0])
                for other in ids[1:]:
                    root = find(other)
                    if root != first:
                        parent[root] = first
        shares = [self.folder / f"docs-{events}-share-{n + 1}-of-{writers}.jsonl" for n in range(writers)]
        outputs = [open(share, "wb") for share in shares]
        assigned: dict[str, int] = {}
        with open(path, "rb") as lines:
            for line in lines:
                root = find(incidents(orjson.loads(line))[0])
                if root not in assigned:
                    assigned[root] = len(assigned) % writers
                outputs[assigned[root]].write(line)
        for output in outputs:
            output.close()
        return shares

    def count(self, db: str) -> int:
        """The events a store holds (read here: a phase would cost a process start)."""
        if is_postgres(db):
            schema = db.rsplit("schema=", 1)[1]
            with self.schemas._connect() as connection:
                return connection.execute(f'SELECT count(*) FROM "{schema}".tollbook_events').fetchone()[0]
        with sqlite3.connect(db) as connection:
            return connection.execute("SELECT count(*) FROM stored_events").fetchone()[0]

    def writers(self, db: str, events: int, writers: int) -> dict:
        """``writers`` processes ingest their shares into one fresh store at the same time; the
        rate is every event stored over the wall time from the first start to the last end."""
        shares = self.split(events, writers)
        phase("open", db=db)
        processes = [subprocess.Popen([sys.executable, str(PHASES), "writer", json.dumps({"db": db, "path": str(s)})],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, cwd=ROOT) for s in shares]
        for process in processes:
            if process.stdout.readline().strip() != "ready":
                raise SystemExit(f"a writer did not start: {process.communicate()[1][-2000:]}")
        for process in processes:
            process.stdin.write("go\n")
            process.stdin.flush()
        reports = []
        for process in processes:
            out, err = process.communicate()
            if process.returncode != 0:
                raise SystemExit(f"a writer failed:\n{err[-4000:]}")
            reports.append(json.loads(out.strip().splitlines()[-1]))
        stored = self.count(db)
        seconds = max(r["end"] for r in reports) - min(r["start"] for r in reports)
        rejected = sum(r["rejected"] for r in reports)
        if rejected:
            log(f"  writers rejected {rejected}: {[r['first_rejections'] for r in reports if r['rejected']]}")
        return {"writers": writers, "seconds": seconds, "stored_events": stored, "rejected": rejected,
                "accepted": sum(r["accepted"] for r in reports), "events_per_s": stored / seconds}

    def help_times(self) -> list[float]:
        """Wall time of the installed entry point's ``--help`` (after one untimed run)."""
        entry = Path(sys.executable).parent / "tollbook"
        command = [str(entry)] if entry.exists() else [sys.executable, "-m", "tollbook"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLBOOK_")}
        times = []
        for run in range(self.o.help_runs + 1):
            start = time.perf_counter()
            subprocess.run([*command, "--help"], check=True, capture_output=True, cwd=self.folder, env=env)
            if run:
                times.append(time.perf_counter() - start)
        return times

    def run(self) -> dict:
        o = self.o
        results: dict[str, Any] = {"sizes": {}, "side_by_side": {}}
        log("tollbook --help")
        results["help_ms"] = [t * 1000 for t in self.help_times()]
        for events in o.sizes:
            db = self.sqlite_store(f"store-{events}")
            results["sizes"][events] = self.store_run(db, events, KINDS, o.replay_samples)
            if not o.keep:
                self.drop(db)
        # The stores side by side at --pg-events (SQLite's figures reused when that size ran above).
        events = o.pg_events
        side: dict[str, Any] = {"events": events, "stores": {}}
        if events in results["sizes"]:
            side["stores"]["sqlite"] = results["sizes"][events]
        else:
            db = self.sqlite_store(f"store-{events}")
            side["stores"]["sqlite"] = self.store_run(db, events, ("incident",), 0)
            self.drop(db)
        if self.schemas:
            db = self.schemas.new("core")
            side["stores"]["postgres"] = self.store_run(db, events, ("incident",), 0)
            if not o.keep:
                self.drop(db)
        for store in side["stores"]:
            side["stores"][store]["writers"] = []
            for writers in o.writers:
                log(f"{store} {events:,}: {writers} concurrent writer(s)")
                db = (self.schemas.new(f"w{writers}") if store == "postgres"
                      else self.sqlite_store(f"writers-{events}-{writers}"))
                side["stores"][store]["writers"].append(self.writers(db, events, writers))
                if not o.keep:
                    self.drop(db)
        results["side_by_side"] = side
        return results


# -- the machine -------------------------------------------------------------------------------

def machine(schemas: Schemas | None) -> dict:
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        from importlib.metadata import version

        eventsourcing = version("eventsourcing")
    except Exception:
        eventsourcing = "?"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "commands", "projections", "domain", "tollbook"],
                           capture_output=True, text=True, cwd=ROOT).stdout.strip()
    return {
        "cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable,
        "ram_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version, "postgres": schemas.version() if schemas else None,
        "eventsourcing": eventsourcing, "commit": commit + (" with uncommitted changes" if dirty else ""),
    }


# -- the report --------------------------------------------------------------------------------

def _n(x: float) -> str:
    return f"{x:,.0f}"


def _ms(x: float) -> str:
    return f"{x:,.0f} ms" if x >= 100 else f"{x:.1f} ms" if x >= 1 else f"{x:.2f} ms"


def _mark(ok: bool) -> str:
    return " ✓" if ok else " ✗"


def _rate(events: int, seconds: float) -> str:
    return f"{_n(events / seconds)} events/s ({seconds:.1f} s)"


def _catch_up(r: dict) -> str:
    """The catch-up after the ingest; beside an ingest of a long file the follower projected
    the events as they were committed (tollbook/follower.py), and the ingest's time includes it."""
    events, seconds, beside = r["catchup"]["events"], r["catchup"]["seconds"], r["ingest"].get("projected", 0)
    text = _rate(events, seconds) if events else "nothing left"
    return text + (f"; {_n(beside)} events projected beside the ingest" if beside else "")


def sqlite_rows(r: dict) -> dict[str, tuple[str, float | None]]:
    """Each row of the SQLite table: its cell text and the cost its growth is computed on."""
    stored = r["ingest"]["stored_events"]
    generated = r["generated"]
    ingest_s, raw = r["ingest"]["seconds"], r["raw"]
    raw_insert = raw["events"] / raw["insert_seconds"]
    raw_read = raw["read_events"] / raw["read_decode_seconds"]
    ingest_ratio = stored / ingest_s / raw_insert
    rebuild_rate = r["rebuild"]["events"] / r["rebuild"]["seconds"]
    rebuild_ratio = rebuild_rate / raw_read
    floor_s = raw["parse_seconds"] + raw["events_seconds"] + raw["insert_seconds"]
    q = r["queries"]
    size = r["size"]
    rows: dict[str, tuple[str, float | None]] = {
        "events stored": (f"{_n(stored)} ({_n(generated['events'])} + {_n(stored - generated['events'])} "
                          f"receipts), {_n(generated['documents'])} documents", None),
        "ingest": (f"{_rate(stored, ingest_s)}; {_n(generated['documents'] / ingest_s)} documents/s", ingest_s),
        "raw SQLite insert": (_rate(raw['events'], raw['insert_seconds']), raw["insert_seconds"]),
        "ingest ÷ raw insert": (f"{ingest_ratio:.2f}{_mark(ingest_ratio >= TARGETS['ingest_ratio'])}", None),
        "… the stack's floor: pydantic parse of the documents, pydantic events made and serialized, raw insert": (
            f"{_rate(stored, floor_s)}: parse {raw['parse_seconds']:.1f} s + events {raw['events_seconds']:.1f} s + "
            f"insert {raw['insert_seconds']:.1f} s; ÷ raw insert {raw['insert_seconds'] / floor_s:.2f}; "
            f"ingest ÷ floor {floor_s / ingest_s:.2f}", floor_s),
        "projections catching up after ingest": (_catch_up(r), r["catchup"]["seconds"]),
        "ingest + catching up": (_rate(stored, ingest_s + r["catchup"]["seconds"]), ingest_s + r["catchup"]["seconds"]),
        "ingest + catching up ÷ raw insert": (f"{stored / (ingest_s + r['catchup']['seconds']) / raw_insert:.2f}", None),
        "rebuild from zero": (_rate(r["rebuild"]["events"], r["rebuild"]["seconds"]), r["rebuild"]["seconds"]),
        "raw read + orjson decode": (_rate(raw["read_events"], raw["read_decode_seconds"]), raw["read_decode_seconds"]),
        "rebuild ÷ raw read": (f"{rebuild_ratio:.2f}{_mark(rebuild_ratio >= TARGETS['rebuild_ratio'])}", None),
        "… the read models' rows written raw": (
            f"{_n(raw['read_model_rows'])} rows in {raw['read_model_tables']} tables, "
            f"{raw['read_model_write_seconds']:.1f} s; rebuild ÷ (raw read + this) "
            f"{(raw['read_decode_seconds'] + raw['read_model_write_seconds']) / r['rebuild']['seconds']:.2f}",
            raw["read_model_write_seconds"]),
        "… the read models' rows copied inside SQLite, no Python": (
            f"{raw['read_model_copy_seconds']:.1f} s; a rebuild of these read models, even one that read and "
            f"decoded the log for free, reaches at most rebuild ÷ raw read "
            f"{raw['read_decode_seconds'] / raw['read_model_copy_seconds']:.2f}", raw["read_model_copy_seconds"]),
    }
    for kind in KINDS:
        k = q[kind]
        target = TARGETS.get(f"{kind}_p95_ms")
        apart = q["diff_span_events"]
        span = f", {apart} event{'s' if apart != 1 else ''} apart" if kind == "diff" else ""
        mark = "" if target is None else _mark(k["p95_ms"] <= target)
        rows[LABELS[kind]] = (f"median {_ms(k['median_ms'])}, p95 {_ms(k['p95_ms'])}{mark} "
                              f"({k['n']} samples{span}, {k['mean_answer_rows']:.1f} rows an answer)", k["median_ms"])
        replay = k.get("replay")
        if replay:
            ratio = replay["ratio"]
            faster = f"the query {ratio:,.1f}× faster" if ratio >= 1 else f"the replay {1 / ratio:,.1f}× faster"
            rows[f"… {LABELS[kind]}, by replaying the log"] = (
                f"median {_ms(replay['median_s'] * 1000)}; {faster}; answers agree {replay['agree']}/{replay['n']}",
                replay["median_s"])
    rss_i, rss_r = r["ingest"]["max_rss_mb"], r["rebuild"]["max_rss_mb"]
    rows["peak memory (RSS), ingest"] = (f"{rss_i:,.0f} MB{_mark(rss_i <= TARGETS['rss_mb'])}", rss_i)
    rows["peak memory (RSS), rebuild"] = (f"{rss_r:,.0f} MB{_mark(rss_r <= TARGETS['rss_mb'])}", rss_r)
    rows["store on disk"] = (
        f"{size['total_bytes'] / stored:,.0f} B/event ({size['total_bytes'] / 2**20:,.0f} MB: events "
        f"{size['events_bytes'] / stored:,.0f} B/event, projections {size['projection_bytes'] / stored:,.0f} B/event)",
        size["total_bytes"])
    return rows


TARGET_TEXT = {
    "ingest ÷ raw insert": "≥ 0.3", "rebuild ÷ raw read": "≥ 0.5",
    LABELS["incident"]: "p95 ≤ 50 ms", LABELS["admin1"]: "p95 ≤ 1 s", LABELS["history"]: "p95 ≤ 20 ms",
    LABELS["diff"]: "p95 ≤ 2 s", "peak memory (RSS), ingest": "≤ 500 MB", "peak memory (RSS), rebuild": "≤ 500 MB",
}


def _target(label: str) -> str:
    return TARGET_TEXT.get(label, "")


def _growth(costs: list[float | None], sizes: list[int]) -> str:
    if len(sizes) < 2 or costs[0] is None or costs[-1] is None or not costs[0]:
        return ""
    return f"{(costs[-1] / costs[0]) / (sizes[-1] / sizes[0]):.2f}"


def render(results: dict, info: dict, options: argparse.Namespace, seconds: float, command: str) -> str:
    sizes = sorted(results["sizes"])
    out = [
        "# Tollbook benchmark",
        "",
        f"`{command}` — {time.strftime('%Y-%m-%d %H:%M')}, {seconds / 60:.1f} min in all, code at {info['commit']}.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), {info['ram_gib']:.0f} GiB RAM, "
        f"{info['os']}; Python {info['python']}, SQLite {info['sqlite']}, "
        f"PostgreSQL {info['postgres'] or 'not measured (no --postgres)'}, eventsourcing {info['eventsourcing']}. "
        f"Load average {info['load_before']:.1f} at the start, {info['load_after']:.1f} at the end "
        "(the machine is shared: figures are indicative).",
        "",
        "## Data",
        "",
        "| generator events | documents | JSONL | incidents | countries / admin1 | sources an incident | new claims "
        "| revisions | corrections | retractions | merges | published |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    data_sizes = sorted(set(sizes) | {results["side_by_side"]["events"]})
    for events in data_sizes:
        g = (results["sizes"].get(events) or results["side_by_side"]["stores"]["sqlite"])["generated"]
        e = g["events"] or 1
        out.append(
            f"| {_n(g['events'])} | {_n(g['documents'])} | {g['bytes'] / 2**20:,.0f} MB | {_n(g['incidents'])} | "
            f"{g['countries']} / {g['admin1']} | {g['planned_sources'] / max(1, g['planned_incidents']):.2f} | "
            + " | ".join(f"{100 * g[k] / e:.1f}%" for k in ("new_claims", "revisions", "corrections", "retractions", "merges"))
            + f" | {g['first_published'][:10]} .. {g['last_published'][:10]} |")

    out += ["", "## SQLite", ""]
    header = "| figure | target | " + " | ".join(f"{_n(s)} events" for s in sizes) + " |"
    growth = len(sizes) > 1
    if growth:
        header += f" growth {_n(sizes[0])} → {_n(sizes[-1])} |"
    out += [header, "|---|---|" + "---|" * len(sizes) + ("---|" if growth else "")]
    per_size = [sqlite_rows(results["sizes"][s]) for s in sizes]
    for label in per_size[0]:
        cells = [rows.get(label, ("", None)) for rows in per_size]
        line = f"| {label} | {_target(label)} | " + " | ".join(c[0] for c in cells) + " |"
        if growth:
            line += f" {_growth([c[1] for c in cells], sizes)} |"
        out.append(line)
    help_ms = results["help_ms"]
    help_median = statistics.median(help_ms)
    out += ["", f"`tollbook --help` (the installed entry point, a new process each time): median "
                f"{help_median:,.0f} ms{_mark(help_median <= TARGETS['help_ms'])} over {len(help_ms)} runs "
                f"(min {min(help_ms):,.0f}, max {max(help_ms):,.0f}); target ≤ 300 ms."]
    if growth:
        out += ["", f"Growth: (cost at {_n(sizes[-1])}) ÷ (cost at {_n(sizes[0])}) ÷ {sizes[-1] / sizes[0]:g} (the size "
                    "ratio), the cost being the phase's total time, a query's median latency, the peak memory or "
                    "the store's size: 1.00 is linear, above 1 worse than linear; a query whose latency does not "
                    f"grow at all scores {sizes[0] / sizes[-1]:.2f}."]

    side = results["side_by_side"]
    stores = side["stores"]
    names = [s for s in ("sqlite", "postgres") if s in stores]
    title = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
    out += ["", f"## {' and '.join(title[s] for s in names)} side by side, {_n(side['events'])} events", "",
            "| figure | " + " | ".join(title[s] for s in names) + " |", "|---|" + "---|" * len(names)]

    def row(label: str, cell) -> None:
        out.append(f"| {label} | " + " | ".join(cell(stores[s]) for s in names) + " |")

    row("ingest", lambda r: _rate(r["ingest"]["stored_events"], r["ingest"]["seconds"]))
    row("projections catching up after ingest", _catch_up)
    row("rebuild from zero", lambda r: _rate(r["rebuild"]["events"], r["rebuild"]["seconds"]))
    row(LABELS["incident"],
        lambda r: f"median {_ms(r['queries']['incident']['median_ms'])}, p95 {_ms(r['queries']['incident']['p95_ms'])}")
    row("peak memory (RSS), ingest / rebuild",
        lambda r: f"{r['ingest']['max_rss_mb']:,.0f} / {r['rebuild']['max_rss_mb']:,.0f} MB")
    row("store on disk", lambda r: f"{r['size']['total_bytes'] / r['ingest']['stored_events']:,.0f} B/event")
    for index, writers in enumerate(options.writers):
        def cell(r, index=index):
            w = r["writers"][index]
            base = r["writers"][0]["events_per_s"]
            text = f"{_n(w['events_per_s'])} events/s ({w['seconds']:.1f} s)"
            if index:
                text += f", ×{w['events_per_s'] / base:.2f}"
            return text + (f", {w['rejected']} rejected" if w["rejected"] else "")
        row(f"{writers} concurrent writer{'s' if writers > 1 else ''}, events/s in all", cell)
    if "postgres" not in stores:
        out += ["", "PostgreSQL was not measured: give `--postgres postgresql://user@host:port/dbname`."]

    out += ["", "## How each figure is measured", ""] + [f"- {line}" for line in HOW(options, side["events"])]
    return "\n".join(out) + "\n"


def HOW(o: argparse.Namespace, pg_events: int) -> list[str]:
    return [
        "**Data**: `bench/generate.py` (deterministic, seed 20181009), streamed to a JSONL file; sizes count its "
        "events (claims, incident entries, corrections, retractions, merges). The store adds one receipt event "
        "per document; every events/s figure is over the events the store holds, the same events the raw "
        "baselines write and read.",
        "**Every phase runs in a process of its own** (`bench/phases.py`), on a fresh store, in this order: ingest, "
        "projections catching up, rebuild, raw baselines, size, queries. Peak memory is that process's max RSS "
        "(`getrusage`), interpreter and imports included.",
        "**ingest**: `Tollbook.ingest` over the JSONL file (the write side only: receipts, decisions, events "
        "saved in the ingestor's batches). **projections catching up**: `Tollbook.refresh()` right after, building "
        "every read model for the first time. **rebuild from zero**: `Tollbook.rebuild()` (drops and rebuilds "
        "every projection).",
        "**raw SQLite insert** (the write limit): the store's serialized events (same ids, topics, JSON states) "
        "inserted with `executemany` in one transaction into a new table created with the store's own DDL "
        "(same primary key), WAL journal and `synchronous=FULL` as the store's writes; rows are fetched from "
        "the store in chunks of 100,000 outside the timer. **raw read + orjson decode** (the rebuild limit): "
        "`SELECT rowid, topic, state FROM stored_events ORDER BY rowid` over the store and `orjson.loads` of "
        "every state. The ratios are the store's rate ÷ the raw rate.",
        "**the stack's floor** under ingest: what the fixed stack costs before any of Tollbook's own logic, "
        "timed in one thread: `commands.documents.parse` of every document (orjson and pydantic validation), "
        "then every stored event made as its pydantic model from typed values (as the handlers make them) and "
        "serialized as the store serializes it, then the raw insert above. Its ratio to the raw insert is the "
        "best any single-threaded ingest on this stack could reach. **the read models' rows written raw**: every "
        "row of the projections' tables as the rebuild left them, inserted with `executemany` into the same "
        "tables in one transaction (`synchronous=NORMAL` as the projections write), their indexes made at the end; "
        "with the raw read it is what any rebuild of these read models must at least cost. **the read models' rows "
        "copied inside SQLite**: the same rows, tables and indexes, but copied by SQLite itself (`INSERT INTO … "
        "SELECT` from the store attached read-only, one transaction): no Python, no JSON, no logic. Writing the "
        "rows takes at least this long, so raw read ÷ this bounds rebuild ÷ raw read from above.",
        f"**queries** go through `tollbook.api.Tollbook` in one process (each call first checks the projections "
        f"are up to date, as the API does), one untimed warm-up call each, then {o.samples} samples "
        f"({o.heavy_samples} for the tallies over everything and diff); median and p95 of the wall time of the call. "
        "Single-incident tally: a random incident, `--as-of` uniform between its first record and the end of "
        "the log, `--known-at` uniform between its first published figure and 30 days after its last. "
        "`--by admin1` (and `--by source`, `--by admin1 --policy latest`): `--as-of` uniform over the log's "
        "recorded span, `--known-at` uniform over the published span. History: a random claim of a random "
        "incident (`--incident --source --measure --group`), "
        "everything recorded. Diff: `--from`/`--to` are the recorded_at of two events k positions apart in "
        "the log at a random place, k = events ÷ hours in the data's published span (~43,800 h): the events "
        "one hour of a feed spread evenly over the five years brings (the log is in feed order).",
        f"**replay** (the baseline): the same question answered by `bench/replay.py` — read every stored event "
        f"up to the point in log order, decode it, fold claims, corrections, retractions, merges and incident "
        f"fields into dicts, compute the answer in Python — on the first {o.replay_samples} samples of each "
        "query; \"× faster\" is the replay's total time ÷ the query's total time on those same samples; "
        "\"answers agree\" compares the two answers (rows and figures; history entries; changed incidents).",
        "**store on disk**: the SQLite file after a WAL checkpoint (TRUNCATE), divided by the events stored; "
        "split by `dbstat` into the events table with its index and the projections' tables with their indexes. "
        "On PostgreSQL the schema's tables with indexes and TOAST (`pg_total_relation_size`).",
        f"**concurrent writers** ({pg_events:,} events): the documents split into shares that name disjoint "
        "incidents (documents that name the same incident, or a report or merge naming several, stay together "
        "and in order), each share ingested by its own process into one fresh store, all released at once; "
        "events/s in all = events stored ÷ (last writer's end − first writer's start). The ingestor commits "
        f"{_ingest_batch()} a transaction. The machine has "
        f"{os.cpu_count()} cores, shared with the database server.",
        "**`tollbook --help`**: wall time of the installed `tollbook` script in a new process, after one untimed run.",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Tollbook benchmark: one run, one markdown table.")
    parser.add_argument("--events", type=int, default=100_000, help="generator events (when --sizes is not given)")
    parser.add_argument("--sizes", help="several sizes side by side, e.g. 100000,1000000")
    parser.add_argument("--postgres", metavar="URL", help="also measure PostgreSQL (postgresql://user@host:port/dbname); "
                        "the run makes and drops schemas of its own")
    parser.add_argument("--pg-events", type=int, help="size of the side-by-side and concurrent-writer runs "
                        "(default: the smallest size)")
    parser.add_argument("--writers", default="1,2,4", help="concurrent writer processes to measure (default 1,2,4)")
    parser.add_argument("--samples", type=int, default=200, help="samples of single-incident tally and history")
    parser.add_argument("--heavy-samples", type=int, default=20, help="samples of the tallies over everything and diff")
    parser.add_argument("--replay-samples", type=int, default=3, help="samples answered by replaying the log too")
    parser.add_argument("--help-runs", type=int, default=9, help="timed runs of tollbook --help")
    parser.add_argument("--out", default=str(HERE / "results.md"), help="markdown results (JSON beside it)")
    parser.add_argument("--workdir", help="work here (default: a new temporary folder, removed at the end)")
    parser.add_argument("--keep", action="store_true", help="keep the stores and documents")
    options = parser.parse_args(argv)
    options.sizes = sorted(int(s.replace("_", "")) for s in options.sizes.split(",")) if options.sizes else [options.events]
    options.writers = [int(w) for w in options.writers.split(",")]
    if options.pg_events is None:
        options.pg_events = options.sizes[0]

    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    folder = Path(options.workdir) if options.workdir else Path(tempfile.mkdtemp(prefix="tollbook-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    schemas = Schemas(options.postgres) if options.postgres else None
    try:
        info = machine(schemas)
        results = Bench(options, folder, schemas).run()
    finally:
        if schemas:
            schemas.drop_all()
        if not options.workdir and not options.keep:
            shutil.rmtree(folder, ignore_errors=True)
    info["load_before"], info["load_after"] = load_before, os.getloadavg()[0]
    seconds = time.perf_counter() - started
    command = " ".join([".venv/bin/python bench/run.py", *(argv if argv is not None else sys.argv[1:])])
    report = render(results, info, options, seconds, command)
    out = Path(options.out)
    out.write_text(report)
    out.with_suffix(".json").write_text(json.dumps({"machine": info, "seconds": seconds, "results": results},
                                                   indent=1, default=str))
    print(report)
    log(f"done in {seconds / 60:.1f} min; wrote {out} and {out.with_suffix('.json')}")
    return 0


def _ingest_batch() -> str:
    """The ingestor's batch, as its defaults set it."""
    import inspect

    from tollbook.commands.ingest import Ingestor

    defaults = {name: p.default for name, p in inspect.signature(Ingestor).parameters.items()}
    return f"about {defaults['batch_events']:,} events"


if __name__ == "__main__":
    sys.exit(main())

