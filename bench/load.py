"""Load on ``tollbook serve``: concurrent readers of ``/api/tally?incident=…`` and of the
incident page, on a large store, against the CLI's own latency for the same question.

    python bench/load.py --events 1000000 --store /tmp/load-1m.db --out bench/results-http.md

The store is made once (bench/generate.py's documents, ingested and projected through the
Python API) and kept at ``--store`` for later runs. Each reader is a thread with its own
keep-alive connection asking for random incidents for ``--seconds``; the client threads share
the machine with the server, so the figures are a floor on what the server alone would do.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def log(message: str) -> None:
    print(f"load: {message}", file=sys.stderr, flush=True)


def make_store(path: str, events: int) -> None:
    from bench.generate import generate
    from tollbook.api import Tollbook

    started = time.perf_counter()
    with Tollbook(path, editor="bench") as book:
        result = book.ingest(generate(events))
        log(f"ingested {result.accepted} documents in {time.perf_counter() - started:.0f} s")
        book.refresh()
    log(f"store ready in {time.perf_counter() - started:.0f} s")


def sample_incidents(path: str, count: int) -> list[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT incident_id FROM tb_incidents WHERE to_recorded_at IS NULL"
                                  " ORDER BY random() LIMIT ?", (count,)).fetchall()
    return [row[0] for row in rows]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def cli(path: str, *args: str) -> tuple[int, bytes]:
    done = subprocess.run([sys.executable, "-m", "tollbook", "--db", path, *args], capture_output=True, timeout=600)
    return done.returncode, done.stdout


def cli_latency(path: str, incidents: list[str], runs: int) -> dict[str, float]:
    """The CLI's wall time for one incident's tally (a new process each: startup included),
    and the same question through the Python API in one process (no startup)."""
    from tollbook.api import Tollbook

    walls = []
    for incident in incidents[:runs]:
        began = time.perf_counter()
        code, _ = cli(path, "tally", "--incident", incident, "--format", "json")
        walls.append(time.perf_counter() - began)
        assert code == 0
    calls = []
    with Tollbook(path) as book:
        book.tally(incident=incidents[0])
        for incident in incidents[:runs * 5]:
            began = time.perf_counter()
            book.tally(incident=incident)
            calls.append(time.perf_counter() - began)
    return {"cli_p50": percentile(walls, 0.5), "cli_p95": percentile(walls, 0.95),
            "api_p50": percentile(calls, 0.5), "api_p95": percentile(calls, 0.95)}


def load(url: str, token: str, make_path, readers: int, seconds: float, incidents: list[str]) -> dict[str, float]:
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    start = threading.Barrier(readers + 1)
    stop_at = [0.0]

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        mine = []
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
            start.wait()
            while time.perf_counter() < stop_at[0]:
                path = make_path(rng.choice(incidents))
                began = time.perf_counter()
                response = client.get(path)
                mine.append(time.perf_counter() - began)
                if response.status_code != 200:
                    with lock:
                        failures[0] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(readers)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    return {"requests": len(latencies), "failures": failures[0], "rps": len(latencies) / elapsed,
            "p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--store", default="/tmp/tollbook-load.db", help="the SQLite store (made if missing)")
    parser.add_argument("--readers", default="16,64")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each load runs")
    parser.add_argument("--cli-runs", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results-http.md"))
    options = parser.parse_args()

    if not os.path.exists(options.store):
        make_store(options.store, options.events)
    began, load_before = time.time(), os.getloadavg()[0]
    incidents = sample_incidents(options.store, 500)
    code, out = cli(options.store, "status", "--format", "json")
    head = out.decode().split('"position": ', 1)[1].split(",", 1)[0] if code == 0 else "?"
    token = subprocess.run([sys.executable, "-m", "tollbook", "--db", options.store, "token", "create",
                            f"load-{os.getpid()}", "--role", "reader"], capture_output=True, check=True).stdout.decode().strip()

    log("CLI latency")
    single = cli_latency(options.store, incidents, options.cli_runs)

    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "tollbook", "--db", options.store, "serve", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    results = []
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/api/status", headers={"Authorization": f"Bearer {token}"}).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        targets = {"/api/tally?incident=…": lambda i: f"/api/tally?incident={i}",
                   "/incidents/…": lambda i: f"/incidents/{i}"}
        for name, make_path in targets.items():
            load(url, token, make_path, 4, 2.0, incidents)  # warm the server and the page cache
            for readers in [int(r) for r in options.readers.split(",")]:
                log(f"{name} with {readers} readers")
                results.append((name, readers, load(url, token, make_path, readers, options.seconds, incidents)))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        cli(options.store, "token", "revoke", f"load-{os.getpid()}")

    ms = lambda seconds: f"{seconds * 1000:.0f} ms"  # noqa: E731
    lines = [
        "# HTTP load: tollbook serve",
        "",
        f"Store: SQLite, {options.events:,} generated events (log head {head}), bench/generate.py's mix.",
        f"Run {time.strftime('%Y-%m-%d %H:%M', time.gmtime(began))} UTC, {(time.time() - began) / 60:.1f} min."
        f" Machine: {platform.machine()}, {os.cpu_count()} cores, shared with other work while this ran (noisy:"
        f" load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end);",
        "the client threads run on the same cores as the server, so these are floors.",
        f"Each load: {options.seconds:.0f} s of readers each on one keep-alive connection, random incidents.",
        "",
        "| endpoint | readers | requests | requests/s | p50 | p95 | failures |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, readers, r in results:
        lines.append(f"| `{name}` | {readers} | {r['requests']:,} | {r['rps']:.0f} | {ms(r['p50'])} | {ms(r['p95'])} "
                     f"| {r['failures']} |")
    lines += [
        "",
        "The same question without the server:",
        "",
        "| how | p50 | p95 |",
        "|---|---:|---:|",
        f"| `tollbook tally --incident … --format json` (a new process each time) | {ms(single['cli_p50'])} "
        f"| {ms(single['cli_p95'])} |",
        f"| `Tollbook.tally(incident=…)` in one process | {ms(single['api_p50'])} | {ms(single['api_p95'])} |",
        "",
    ]
    Path(options.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
