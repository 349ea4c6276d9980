"""The importer benchmark: the real UCDP GED extract and a synthetic GED-format file, each imported
into a fresh store and then again unchanged, every import in its own process so its peak memory
(max RSS) is its own.

    .venv/bin/python bench/bench_import.py [--rows 300000] [--out bench/results-import.md] [--keep DIR]

The synthetic file has the real file's 42 columns and its texture: quoted article lists with
commas and quotes, multi-line cells, empty cells, ``-1`` source counts, a few rows breaking
low <= best <= high. It is written (streamed) by this script, deterministic for a seed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
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

def phase_import(db: str, path: str, release: str) -> dict:
    from tollbook.api import Tollbook

    with Tollbook(db, editor="bench") as book:
        start = time.perf_counter()
        summary = book.import_ucdp(path, release=release, published_at="2019-06-01")
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": summary.rows, "imported": summary.imported, "unchanged": summary.unchanged,
            "widened": summary.widened, "rejected": len(summary.rejected),
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_phase(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--phase", *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"phase {args} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000, help="rows of the synthetic file (0: only the real one)")
    parser.add_argument("--out", help="also write the markdown table to this file")
    parser.add_argument("--keep", help="work in this folder and keep the files (default: a temporary one)")
    parser.add_argument("--phase", nargs=3, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.phase:
        print(json.dumps(phase_import(*options.phase)))
        return 0

    folder = Path(options.keep) if options.keep else Path(tempfile.mkdtemp(prefix="tollbook-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    files = [("real extract (examples/ucdp-ged-19.1)", REAL)]
    generated = 0.0
    if options.rows:
        synthetic = folder / f"ged-synthetic-{options.rows}.csv"
        start = time.perf_counter()
        generate(synthetic, options.rows)
        generated = time.perf_counter() - start
        files.append((f"synthetic, {options.rows:,} rows", synthetic))
    results = []
    for name, path in files:
        db = folder / f"{path.stem}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        first = run_phase(str(db), str(path), "bench")
        second = run_phase(str(db), str(path), "bench")
        results.append((name, path, db, first, second))

    lines = [
        f"Importer benchmark ({time.strftime('%Y-%m-%d')}, Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs); each import in its own process; SQLite store.",
        f"Synthetic file generated in {generated:.1f} s." if options.rows else "No synthetic file (--rows 0).",
        "",
        "| file | size | rows | first import | rows/s | peak RSS | second import (unchanged) | rows/s | peak RSS | store |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, path, db, first, second in results:
        assert first["imported"] == first["rows"] and second["unchanged"] == second["rows"], (first, second)
        size = os.path.getsize(path) / 1e6
        store = sum(os.path.getsize(p) for p in (f"{db}", f"{db}-wal") if os.path.exists(p)) / 1e6
        lines.append(
            f"| {name} | {size:.1f} MB | {first['rows']:,} | {first['seconds']:.1f} s | "
            f"{first['rows'] / first['seconds']:,.0f} | {first['max_rss_mb']:.0f} MB | {second['seconds']:.1f} s | "
            f"{second['rows'] / second['seconds']:,.0f} | {second['max_rss_mb']:.0f} MB | {store:.0f} MB |")
    table = "\n".join(lines)
    print(table)
    if options.out:
        Path(options.out).write_text(table + "\n")
    if not options.keep:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
