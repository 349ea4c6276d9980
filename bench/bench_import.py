"""The importer benchmark (issue 14): a GED release expanded from the real extract to ``--rows``
rows, every phase in its own process so its peak memory (max RSS) is its own, each timed
against the floor measured in the same run (Python csv + sqlite3 executemany of every row):

0. the events alone: each row's events made and hashed as the import makes them, with no store;
1. fresh import, then the first ``tally --by year`` (the projections catch up; a file of 4 MB or
   more has a projector process beside the import, tollbook/follower.py: its peak RSS is added);
2. the same file again (unchanged);
3. the next release: 2% of the rows with changed figures, 1% gone, ``--complete``, then a tally;
4. the store's bytes per row, by table and index (SQLite's dbstat);
5. with ``--postgres URL``: the fresh import into PostgreSQL, rows/s against SQLite's.

    .venv/bin/python bench/bench_import.py [--rows 300000] [--out bench/results-import.md] [--keep DIR]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]

``--synthetic`` uses the generated GED-format file of earlier runs instead (42 columns, quoted
article lists, multi-line cells, ``-1`` source counts, deterministic for a seed).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REAL = ROOT / "examples" / "ucdp-ged-19.1" / "ged191-myanmar-bangladesh.csv"
sys.path[:0] = [str(ROOT)]

COLUMNS = [
    "id", "year", "active_year", "type_of_violence", "conflict_new_id", "conflict_name", "dyad_new_id", "dyad_name",
    "side_a_new_id", "gwnoa", "side_a", "side_b_new_id", "gwnob", "side_b", "number_of_sources", "source_article",
    "source_office", "source_date", "source_headline", "source_original", "where_prec", "where_coordinates",
    "adm_1", "adm_2", "latitude", "longitude", "geom_wkt", "priogrid_gid", "country", "country_id", "region",
    "event_clarity", "date_prec", "date_start", "date_end", "deaths_a", "deaths_b", "deaths_civilians",
    "deaths_unknown", "low", "best", "high",
]
_COUNTRIES = [(f"Country {c}", 700 + c, [f"Province {c}-{a}" for a in range(12)]) for c in range(25)]
_OUTLETS = ["Reuters", "Agence France Presse", "BBC Monitoring", "Associated Press Newswires", "Xinhua",
            "Democratic Voice of Burma", "Karen Information Center", "Mizzima", "The Irrawaddy", "Al Jazeera"]


def generate(path: Path, rows: int, seed: int = 19_1) -> None:
    """Writes a GED-format CSV of ``rows`` rows, streaming."""
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for n in range(1, rows + 1):
            country, country_id, provinces = _COUNTRIES[rng.randrange(len(_COUNTRIES))]
            year = rng.randint(1989, 2018)
            start = f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            deaths = [rng.choice((0, 0, 0, 1, 2, 3, 5, 8, 13, 40)) for _ in range(4)]
            best = sum(deaths)
            low = max(0, best - rng.choice((0, 0, 0, 1, 2)))
            high = best + rng.choice((0, 0, 1, 3, 10))
            if rng.random() < 0.002:  # the real file has a few rows breaking low <= best <= high
                low, high = best + 1, best
            sources = rng.randint(1, 4)
            articles = ";".join(
                f'"{rng.choice(_OUTLETS)},{start},Clashes, shelling in ""{rng.choice(provinces)}"" kill {best}"'
                for _ in range(sources))
            known = rng.random() < 0.2
            lat, lon = rng.uniform(-60, 70), rng.uniform(-170, 170)
            province = rng.choice(provinces)
            writer.writerow([
                1_000_000 + n, year, rng.randint(0, 1), rng.randint(1, 3), rng.randint(200, 999),
                f"{country}: Conflict {rng.randint(1, 9)}", rng.randint(400, 999), f"Government of {country} - Group",
                rng.randint(100, 999), country_id if rng.random() < 0.9 else "", f"Government of {country}",
                rng.randint(1, 999), "", rng.choice(("Civilians", "Rebel group A", "Rebel group B")),
                sources if known else -1, articles,
                ";".join(rng.choice(_OUTLETS) for _ in range(sources)) if known else "",
                start if known else "", f"Clashes in {province}" if known else "",
                f"Local official\n{rng.choice(_OUTLETS)} correspondent" if rng.random() < 0.3 else "",
                rng.randint(1, 7), f"{province} town", province if rng.random() < 0.85 else "",
                f"{province} District" if rng.random() < 0.6 else "", f"{lat:.6f}", f"{lon:.6f}",
                f"POINT ({lon:.6f} {lat:.6f})", rng.randint(100000, 199999), country, country_id, "Asia",
                rng.randint(1, 2), rng.randint(1, 5), start, start, *deaths, low, best, high,
            ])


def expand(path: Path, rows: int, source: Path = REAL) -> None:
    """Writes a GED file of ``rows`` rows made of the real extract's rows over and over, each copy
    under new ids (``id`` + copy × 10,000,000), streaming: the real texture, any length."""
    with open(source, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        real = list(reader)
    at = header.index("id")
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for n in range(rows):
            copy, row = divmod(n, len(real))
            cells = list(real[row])
            cells[at] = str(int(cells[at]) + copy * 10_000_000)
            writer.writerow(cells)


# -- phases (each in its own process) --------------------------------------------------------

def _rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu() -> float:
    """The CPU seconds (user + system) of this process and of the children it waited for (the
    projector beside an import): on 2 cores a phase cannot take less than half of it."""
    return sum(usage.ru_utime + usage.ru_stime
               for usage in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))


def _peak(phase: dict) -> str:
    """The phase's peak RSS, and with the projector process beside an import (tollbook/follower.py)
    the sum of both peaks (an upper bound of what the two held at once)."""
    if not phase.get("follower_rss_mb"):
        return f"{phase['max_rss_mb']:.0f} MB"
    return (f"{phase['max_rss_mb'] + phase['follower_rss_mb']:.0f} MB ({phase['max_rss_mb']:.0f} + "
            f"{phase['follower_rss_mb']:.0f} MB follower)")


def phase_floor(db: str, path: str) -> dict:
    """Python's csv module reading every row and sqlite3 inserting it whole (executemany)."""
    start = time.perf_counter()
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        connection = sqlite3.connect(db)
        connection.execute(f"CREATE TABLE rows ({', '.join(f'c{i}' for i in range(len(header)))})")
        connection.executemany(f"INSERT INTO rows VALUES ({', '.join('?' * len(header))})", reader)
        connection.commit()
        connection.close()
    return {"seconds": time.perf_counter() - start, "max_rss_mb": _rss(), "cpu_seconds": _cpu()}


def phase_events(path: str) -> dict:
    """What the event model costs alone, with no store: every row's document built, parsed and
    decided as on an empty store (no reads), and its events' stored states and leaf hashes made,
    as the import does, in one thread: the least Python an import of these rows can do today."""
    from tollbook.commands.documents import parse
    from tollbook.commands.handlers import Unit, handle
    from tollbook.commands.importers.csvrows import BadRow, CsvRows
    from tollbook.commands.importers.ucdp import COLUMNS, UcdpRelease
    from tollbook.store.leaf import recorded_text, stored

    builder = UcdpRelease("1", "2019-06-01T00:00:00+00:00", remember_ids=False)
    start = time.perf_counter()
    events = 0
    with CsvRows(path, required=COLUMNS, kind="a UCDP GED") as rows:
        for row in rows:
            if isinstance(row, BadRow):
                continue
            command, content_hash = parse(builder.document(row))
            unit = Unit(lambda aggregate_id, evolve: None, "bench")
            handle(command, content_hash, unit)
            at = 1_764_000_000_000_000 + events
            for event in unit.events:
                stored(event, at, recorded_text(at))
            events += len(unit.events)
    return {"seconds": time.perf_counter() - start, "events": events, "max_rss_mb": _rss(), "cpu_seconds": _cpu()}


def _wal_sampler(db: str) -> tuple[threading.Event, list[int]]:
    """Samples the size of a SQLite store's WAL every 0.2 s until the event is set: the disk an
    import takes beyond the store (a WAL never started over grows by every page written)."""
    stop, peak = threading.Event(), [0]

    def sample() -> None:
        while not stop.wait(0.2):
            with contextlib.suppress(OSError):
                peak[0] = max(peak[0], os.path.getsize(f"{db}-wal"))

    threading.Thread(target=sample, daemon=True).start()
    return stop, peak


def phase_import(db: str, path: str, release: str, published_at: str, complete: str, tally: str) -> dict:
    from tollbook.api import Tollbook

    stop, wal = _wal_sampler(db)
    with Tollbook(db, editor="bench") as book:
        start = time.perf_counter()
        summary = book.import_ucdp(path, release=release, published_at=published_at, complete=complete == "1")
        imported = time.perf_counter() - start
        if tally == "1":
            rows = book.tally(by="year")["rows"]
            assert rows, "no tally rows"
    seconds = time.perf_counter() - start
    stop.set()
    return {"seconds": seconds, "import_seconds": imported, "rows": summary.rows, "imported": summary.imported,
            "unchanged": summary.unchanged, "widened": summary.widened, "rejected": len(summary.rejected),
            "retracted": summary.retracted, "max_rss_mb": _rss(), "cpu_seconds": _cpu(),
            "follower_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "wal_peak_mb": wal[0] / 1e6}


def run_phase(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--phase", *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"phase {args} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def next_release(path: Path, out: Path, *, changed: float = 0.02, gone: float = 0.01, seed: int = 14) -> None:
    """The release after ``path``: ``changed`` of the rows with their figures raised, ``gone`` of them left out."""
    rng = random.Random(seed)
    with open(path, newline="", encoding="utf-8") as f, open(out, "w", newline="", encoding="utf-8") as g:
        reader = csv.DictReader(f)
        writer = csv.DictWriter(g, fieldnames=reader.fieldnames or [])
        writer.writeheader()
        for row in reader:
            draw = rng.random()
            if draw < gone:
                continue
            if draw < gone + changed:
                row["deaths_unknown"] = str(int(row["deaths_unknown"]) + 1)
                for column in ("best", "high"):
                    row[column] = str(int(row[column]) + 1)
            writer.writerow(row)


def store_bytes(db: Path) -> dict[str, int]:
    """Bytes of every table and index of a SQLite store (after a checkpoint: the WAL folded in)."""
    connection = sqlite3.connect(db)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    found = dict(connection.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
    connection.close()
    return found


def _remove(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000, help="rows of the GED file")
    parser.add_argument("--synthetic", action="store_true", help="the generated GED-format file, not the expanded extract")
    parser.add_argument("--postgres", help="also import into this PostgreSQL database (emptied first)")
    parser.add_argument("--out", help="also write the markdown table to this file")
    parser.add_argument("--keep", help="work in this folder and keep the files (default: a temporary one)")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.phase:
        name, *args = options.phase
        print(json.dumps({"floor": phase_floor, "events": phase_events, "import": phase_import}[name](*args)))
        return 0

    folder = Path(options.keep) if options.keep else Path(tempfile.mkdtemp(prefix="tollbook-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    first = folder / f"ged-{options.rows}.csv"
    second = folder / f"ged-{options.rows}-next.csv"
    (generate if options.synthetic else expand)(first, options.rows)
    next_release(first, second)
    floor_db, db = folder / "floor.db", folder / "store.db"
    _remove(floor_db)
    _remove(db)
    floor = run_phase("floor", str(floor_db), str(first))
    events = run_phase("events", str(first))
    fresh = run_phase("import", str(db), str(first), "1", "2019-06-01", "0", "1")
    assert fresh["imported"] == fresh["rows"], fresh
    sizes = store_bytes(db)
    again = run_phase("import", str(db), str(first), "1", "2019-06-01", "0", "0")
    assert again["unchanged"] == again["rows"], again
    later = run_phase("import", str(db), str(second), "2", "2020-06-01", "1", "1")
    postgres = None
    if options.postgres:
        from tollbook.store.pgstore import environment  # noqa: F401  (fails early without the extra)
        import psycopg

        with psycopg.connect(options.postgres, autocommit=True) as connection:
            connection.execute("DROP SCHEMA public CASCADE")
            connection.execute("CREATE SCHEMA public")
        postgres = run_phase("import", options.postgres, str(first), "1", "2019-06-01", "0", "0")

    rows = fresh["rows"]
    base = floor["seconds"]

    def cpu(phase: dict) -> str:
        return f"{phase['cpu_seconds']:.1f} ({phase['cpu_seconds'] / base:.1f}×)"

    lines = [
        f"Import benchmark ({time.strftime('%Y-%m-%d %H:%M')}, Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end); "
        f"{'synthetic GED-format' if options.synthetic else 'GED expanded from examples/ucdp-ged-19.1'}, "
        f"{rows:,} rows ({first.stat().st_size / 1e6:.0f} MB); each phase in its own process; SQLite store.",
        "",
        "| phase | seconds | ÷ floor | rows/s | peak RSS | CPU s, all its processes (÷ floor) |",
        "|---|---|---|---|---|---|",
        f"| floor: csv + sqlite3 executemany of every row | {base:.1f} | 1.0× | {rows / base:,.0f} | "
        f"{floor['max_rss_mb']:.0f} MB | {cpu(floor)} |",
        f"| the events alone: every row parsed, decided on an empty store, its {events['events'] / rows:.0f} events' "
        f"states and leaf hashes made (no store) | {events['seconds']:.1f} | {events['seconds'] / base:.1f}× | "
        f"{rows / events['seconds']:,.0f} | | {cpu(events)} |",
        f"| fresh import | {fresh['import_seconds']:.1f} | {fresh['import_seconds'] / base:.1f}× | "
        f"{rows / fresh['import_seconds']:,.0f} | | |",
        f"| fresh import + first `tally --by year` | {fresh['seconds']:.1f} | **{fresh['seconds'] / base:.1f}×** | "
        f"{rows / fresh['seconds']:,.0f} | {_peak(fresh)} | {cpu(fresh)} |",
        f"| unchanged re-import | {again['seconds']:.1f} | **{again['seconds'] / base:.1f}×** | "
        f"{rows / again['seconds']:,.0f} | {_peak(again)} | {cpu(again)} |",
        f"| next release (2% changed, 1% gone, --complete: {later['retracted']:,} claims retracted) + tally "
        f"| {later['seconds']:.1f} | **{later['seconds'] / base:.1f}×** | {later['rows'] / later['seconds']:,.0f} | "
        f"{_peak(later)} | {cpu(later)} |",
    ]
    if postgres:
        lines.append(f"| fresh import into PostgreSQL | {postgres['import_seconds']:.1f} | "
                     f"{postgres['import_seconds'] / base:.1f}× | {rows / postgres['import_seconds']:,.0f} "
                     f"(**{fresh['import_seconds'] / postgres['import_seconds']:.2f}×** SQLite's) | "
                     f"{_peak(postgres)} | {cpu(postgres)} (the server's not counted) |")
    cores = os.cpu_count() or 1
    lines += ["", f"On {cores} cores a phase takes at least its CPU ÷ {cores}: the fresh import + tally cannot take less "
              f"than **{fresh['cpu_seconds'] / cores / base:.1f}× the floor**, the next release "
              f"**{later['cpu_seconds'] / cores / base:.1f}×**, however its work is spread, without less work a row."]
    total = sum(sizes.values())
    lines += ["", f"The WAL beside the store at its largest (sampled every 0.2 s): {fresh['wal_peak_mb']:.0f} MB during the "
              f"fresh import, {later['wal_peak_mb']:.0f} MB during the next release."]
    lines += ["", f"Store after the fresh import and first tally: {total / 1e6:.0f} MB, "
              f"**{total / rows / 1000:.2f} KB a row** (the CSV: {first.stat().st_size / rows / 1000:.2f} KB a row).", "",
              "| table or index | bytes a row |", "|---|---|"]
    lines += [f"| {name} | {size / rows:,.0f} |" for name, size in sorted(sizes.items(), key=lambda kv: -kv[1])
              if size / rows >= 1]
    table = "\n".join(lines)
    print(table)
    if options.out:
        Path(options.out).write_text(table + "\n")
    if not options.keep:
        shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
