"""The benchmark harness end to end at 3,000 events (bench/run.py): every row of the results
table is there with sane numbers. On PostgreSQL too when TOLLBOOK_TEST_POSTGRES is set (the
harness makes and drops schemas of its own there)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from conftest import ROOT, postgres_base

EVENTS = 3_000
SQLITE_ROWS = [
    "events stored", "ingest", "raw SQLite insert", "ingest ÷ raw insert",
    "… the stack's floor: pydantic parse of the documents, pydantic events made and serialized, raw insert",
    "projections catching up after ingest", "ingest + catching up", "ingest + catching up ÷ raw insert",
    "rebuild from zero", "raw read + orjson decode",
    "rebuild ÷ raw read", "… the read models' rows written raw",
    "… the read models' rows copied inside SQLite, no Python",
    "single-incident tally, random --as-of and --known-at",
    "… single-incident tally, random --as-of and --known-at, by replaying the log",
    "history of one claim", "… history of one claim, by replaying the log",
    "--by admin1 over everything, random --as-of and --known-at",
    "… --by admin1 over everything, random --as-of and --known-at, by replaying the log",
    "diff over an hour of the feed", "… diff over an hour of the feed, by replaying the log",
    "--by source over everything, random --as-of and --known-at",
    "… --by source over everything, random --as-of and --known-at, by replaying the log",
    "--by admin1 --policy latest over everything, random --as-of and --known-at",
    "… --by admin1 --policy latest over everything, random --as-of and --known-at, by replaying the log",
    "peak memory (RSS), ingest", "peak memory (RSS), rebuild", "store on disk",
]
SIDE_ROWS = [
    "ingest", "projections catching up after ingest", "rebuild from zero",
    "single-incident tally, random --as-of and --known-at", "peak memory (RSS), ingest / rebuild", "store on disk",
    "1 concurrent writer, events/s in all", "2 concurrent writers, events/s in all",
    "4 concurrent writers, events/s in all",
]
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def tables(markdown: str) -> list[dict[str, list[str]]]:
    """Each markdown table of the report as {first cell: the other cells}."""
    found, current = [], None
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if current is None:
                current = {"": cells[1:]}
                found.append(current)
            elif not set(line) <= set("|-"):
                current[cells[0]] = cells[1:]
        else:
            current = None
    return found


def test_the_whole_benchmark_runs_at_3k_events(tmp_path):
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "--sizes", str(EVENTS), "--samples", "20",
               "--heavy-samples", "3", "--replay-samples", "1", "--help-runs", "3",
               "--workdir", str(tmp_path / "work"), "--out", str(tmp_path / "results.md")]
    base = postgres_base()
    if base:
        command += ["--postgres", base]
    # No time is asserted (speed is the benchmark's to measure, in ratios): the timeout only
    # stops a run that hangs.
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]

    report = (tmp_path / "results.md").read_text()
    assert "Machine:" in report and "SQLite 3." in report and "Python 3." in report
    assert ("PostgreSQL not measured" not in report) == bool(base)
    data, sqlite, side = tables(report)
    assert data[""][0] == "documents" and len(data) == 2  # the header and one size
    assert list(sqlite) == ["", *SQLITE_ROWS]
    assert sqlite[""] == ["target", f"{EVENTS:,} events"]
    for label in SQLITE_ROWS:
        cell = sqlite[label][1]
        assert NUMBER.search(cell), (label, cell)
        assert "nan" not in cell and "inf" not in cell, (label, cell)
    assert list(side) == ["", *SIDE_ROWS]
    assert side[""] == (["SQLite", "PostgreSQL"] if base else ["SQLite"])
    for label in SIDE_ROWS:
        for cell in side[label]:
            assert NUMBER.search(cell) and "rejected" not in cell, (label, cell)
    assert re.search(r"`tollbook --help` .* median [\d,]+ ms", report)

    results = json.loads((tmp_path / "results.json").read_text())["results"]
    run = results["sizes"][str(EVENTS)]
    generated = run["generated"]
    assert generated["events"] == EVENTS and generated["documents"] > 1000
    ingest = run["ingest"]
    assert ingest["rejected"] == 0 and ingest["accepted"] == generated["documents"]
    # one receipt a document, and a merge's other half on the incident it went into
    assert ingest["stored_events"] == EVENTS + generated["documents"] + generated["merges"]
    assert run["catchup"]["events"] == run["rebuild"]["events"] == ingest["stored_events"]
    assert run["raw"]["events"] == run["raw"]["read_events"] == ingest["stored_events"]
    for name in ("ingest", "catchup", "rebuild"):
        assert run[name]["seconds"] > 0
    for name in ("ingest", "catchup", "rebuild"):
        assert 10 < run[name]["max_rss_mb"] < 2000
    raw = run["raw"]
    assert 0 < raw["insert_seconds"] < raw["insert_seconds"] + raw["parse_seconds"] + raw["events_seconds"] \
        < run["ingest"]["seconds"]
    assert raw["read_model_tables"] >= 5  # every projection's table was copied, rows and all
    assert raw["read_model_rows"] > ingest["stored_events"] - generated["documents"] - generated["merges"]
    # Measured, not compared: at 3,000 events the raw writes and the rebuild both take ~0.2 s.
    assert raw["read_model_write_seconds"] > 0 and raw["read_model_copy_seconds"] > 0
    assert 100 < run["size"]["total_bytes"] / ingest["stored_events"] < 10_000
    for kind in ("incident", "history", "admin1", "diff", "source", "latest"):
        query = run["queries"][kind]
        assert 0 < query["median_ms"] <= query["p95_ms"] <= query["max_ms"] < 60_000, (kind, query)
        assert query["replay"]["agree"] == query["replay"]["n"] == 1, (kind, query["replay"])
    assert 0 < min(results["help_ms"]) < 10_000
    for store, figures in results["side_by_side"]["stores"].items():
        assert figures["ingest"]["stored_events"] == ingest["stored_events"], store
        assert [w["writers"] for w in figures["writers"]] == [1, 2, 4]
        for w in figures["writers"]:
            assert w["rejected"] == 0 and w["stored_events"] == ingest["stored_events"], (store, w)
            assert w["events_per_s"] > 0
