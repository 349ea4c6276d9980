"""The benchmark's phases, each run by bench/run.py in a process of its own (so its peak memory
is its own and no phase warms another's caches in memory):

    python bench/phases.py PHASE 'JSON arguments'

prints one JSON line with the phase's figures. Works on a SQLite path or a PostgreSQL URL except
where noted (the raw-SQLite baselines and the replays read the SQLite file directly).
"""

from __future__ import annotations

import json
import os
import random
import resource
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from tollbook.store.eventstore import state_json  # noqa: E402  (after the path)

HOUR_US = 3_600_000_000


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def _book(db: str, editor: str = "bench"):
    from tollbook.api import Tollbook

    return Tollbook(db, editor=editor)


def _stored_events(book) -> int:
    with book.store.transaction(write=False) as cursor:
        cursor.execute(f"SELECT count(*) FROM {book.store.events_table}")
        return cursor.fetchone()[0]


# -- data --------------------------------------------------------------------------------------

def generate(events: int, path: str) -> dict:
    """Streams the generator's documents to a JSONL file; returns the realized mix."""
    from generate import generate as documents

    stats: dict = {}
    start = time.perf_counter()
    with open(path, "wb") as out:
        buffer: list[bytes] = []
        for document in documents(events, stats=stats):
            buffer.append(orjson.dumps(document))
            if len(buffer) >= 4096:
                out.write(b"\n".join(buffer) + b"\n")
                buffer.clear()
        if buffer:
            out.write(b"\n".join(buffer) + b"\n")
    keep = ("documents", "events", "incidents", "new_claims", "revisions", "corrections", "retractions",
            "merges", "countries", "admin1", "sources", "planned_sources", "planned_incidents",
            "first_published", "last_published")
    return {"seconds": time.perf_counter() - start, "bytes": os.path.getsize(path), **{k: stats[k] for k in keep}}


# -- write side --------------------------------------------------------------------------------

def open_store(db: str) -> dict:
    """Creates the store (tables, projections' tables) so that timed phases do not."""
    book = _book(db)
    book.close()
    return {}


def ingest(db: str, path: str) -> dict:
    book = _book(db)
    start = time.perf_counter()
    with open(path, "rb") as lines:
        result = book.ingest(lines)
    seconds = time.perf_counter() - start
    stored = _stored_events(book)
    projected = min(book.projector.positions().values())  # by the follower beside a long ingest
    book.close()
    return {"seconds": seconds, "stored_events": stored, "projected": projected, "accepted": result.accepted,
            "unchanged": result.unchanged, "rejected": len(result.rejected),
            "first_rejections": [str(r) for r in result.rejected[:3]], "max_rss_mb": _max_rss_mb()}


def writer(db: str, path: str) -> dict:
    """One of several concurrent writers: opens the store, says ``ready``, waits for a line on
    stdin, then ingests its share (in the ingestor's batches)."""
    book = _book(db, editor=f"writer-{os.getpid()}")
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.time()
    with open(path, "rb") as lines:
        result = book.ingest(lines)
    end = time.time()
    book.close()
    return {"start": start, "end": end, "accepted": result.accepted, "rejected": len(result.rejected),
            "first_rejections": [str(r) for r in result.rejected[:3]]}


# -- read side ---------------------------------------------------------------------------------

def project(db: str, rebuild: bool) -> dict:
    """Projections catching up with the log (after an ingest), or rebuilt from zero."""
    book = _book(db)
    start = time.perf_counter()
    events = book.rebuild() if rebuild else book.refresh()
    seconds = time.perf_counter() - start
    book.close()
    return {"seconds": seconds, "events": events, "max_rss_mb": _max_rss_mb()}


def _unlink(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)


def _scratch(path: str, *pragmas: str) -> sqlite3.Connection:
    _unlink(path)
    connection = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", *pragmas):
        connection.execute(f"PRAGMA {pragma}")
    return connection


def _copy_timed(source: sqlite3.Connection, target: sqlite3.Connection, table: str) -> tuple[int, float]:
    """Inserts every row of ``table`` into ``target`` with executemany, in chunks of 100,000
    fetched outside the timer; returns (rows, seconds)."""
    [columns] = source.execute(f"SELECT count(*) FROM pragma_table_info('{table}')").fetchone()
    rows = source.execute(f"SELECT * FROM {table} ORDER BY rowid")
    insert = f"INSERT INTO {table} VALUES ({', '.join('?' * columns)})"
    copied, seconds = 0, 0.0
    while chunk := rows.fetchmany(100_000):
        start = time.perf_counter()
        target.executemany(insert, chunk)
        seconds += time.perf_counter() - start
        copied += len(chunk)
    return copied, seconds


def _schema(source: sqlite3.Connection, tables: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The tables whose names are LIKE ``tables`` (name, DDL), and their indexes' DDL."""
    found = source.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name LIKE ? ESCAPE '\\'"
                           " ORDER BY name", (tables,)).fetchall()
    indexes = [row[0] for row in source.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name LIKE ? ESCAPE '\\' AND sql IS NOT NULL",
        (tables,))]
    return found, indexes


def _timed(run: Any) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _execute_all(connection: sqlite3.Connection, statements: list[str]) -> None:
    for statement in statements:
        connection.execute(statement)


def _raw_insert(source: sqlite3.Connection, scratch: str) -> tuple[int, float]:
    """The store's serialized events inserted with executemany in ONE transaction into a table
    of the same shape (DDL copied from the store, same WAL journal and synchronous=FULL as the
    store's writes); only the inserts and the commit are timed."""
    [(_, ddl)], indexes = _schema(source, "stored\\_events")
    target = _scratch(scratch, "synchronous=FULL")
    _execute_all(target, [ddl, *indexes])
    seconds = _timed(lambda: target.execute("BEGIN"))
    inserted, inserting = _copy_timed(source, target, "stored_events")
    seconds += inserting + _timed(lambda: target.execute("COMMIT"))
    target.close()
    return inserted, seconds


def _raw_read(db: str) -> tuple[int, float]:
    """A sequential read of the store's events table in log order with an orjson decode of
    every state (what a rebuild cannot avoid)."""
    reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    start = time.perf_counter()
    decoded = 0
    for _, _, state in reader.execute("SELECT rowid, topic, state FROM stored_events ORDER BY rowid"):
        orjson.loads(state_json(state))
        decoded += 1
    seconds = time.perf_counter() - start
    reader.close()
    return decoded, seconds


def _ingest_floor(source: sqlite3.Connection, path: str) -> tuple[float, float]:
    """Seconds to parse every document (pydantic), and to make every stored event as its
    pydantic model from typed values, as the handlers make them, and serialize it."""
    from tollbook.commands.documents import parse
    from tollbook.store.eventstore import PydanticMapper

    def parse_all() -> None:
        with open(path, "rb") as lines:
            for line in lines:
                if line.strip():
                    parse(line)

    parsing = _timed(parse_all)
    mapper = PydanticMapper()
    making = 0.0
    rows = source.execute("SELECT originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid")
    while chunk := rows.fetchmany(100_000):
        decoded = (mapper.to_domain_event(*r) for r in chunk)  # not timed
        made = [(type(e), {name: getattr(e, name) for name in e.model_fields_set}) for e in decoded]
        making += _timed(lambda: [mapper.row(model(**values), 1) for model, values in made])
    return parsing, making


def _read_model_write(source: sqlite3.Connection, scratch: str) -> tuple[int, int, float]:
    """Every row of the projections' tables as the rebuild left them, inserted with executemany
    into the same tables in one transaction (synchronous=NORMAL as the projections write), their
    indexes made at the end as a rebuild makes its query indexes: (tables, rows, seconds)."""
    tables, indexes = _schema(source, "tb\\_%")
    target = _scratch(scratch, "synchronous=NORMAL", "cache_size=-65536")
    seconds = _timed(lambda: _execute_all(target, ["BEGIN", *(ddl for _, ddl in tables)]))
    written = 0
    for name, _ in tables:
        count, copying = _copy_timed(source, target, name)
        written += count
        seconds += copying
    seconds += _timed(lambda: _execute_all(target, [*indexes, "COMMIT"]))
    target.close()
    return len(tables), written, seconds


def _read_model_copy(source: sqlite3.Connection, db: str, scratch: str) -> float:
    """Every row of the projections' tables copied into the same tables inside SQLite (``INSERT
    INTO ... SELECT``: no Python, no JSON), in one transaction as :func:`_read_model_write`, with
    the indexes made at the end: what writing these read models costs SQLite alone."""
    target = _scratch(scratch, "synchronous=NORMAL", "cache_size=-65536")
    target.execute(f"ATTACH 'file:{db}?mode=ro' AS store")  # the store read-only, beside the scratch file
    tables, indexes = _schema(source, "tb\\_%")
    copies = [f"INSERT INTO main.{name} SELECT * FROM store.{name} ORDER BY rowid" for name, _ in tables]
    seconds = _timed(lambda: _execute_all(target, ["BEGIN", *(ddl for _, ddl in tables), *copies, *indexes,
                                                   "COMMIT"]))
    target.close()
    return seconds


def raw(db: str, scratch: str, path: str) -> dict:
    """The raw-SQLite limits on the same events (:func:`_raw_insert`, :func:`_raw_read`), and
    the floors beneath ingest and rebuild: what the fixed stack costs before any of Tollbook's
    own logic (:func:`_ingest_floor`, :func:`_read_model_write`, :func:`_read_model_copy`)."""
    source = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    inserted, insert_seconds = _raw_insert(source, scratch)
    decoded, read_seconds = _raw_read(db)
    parse_seconds, events_seconds = _ingest_floor(source, path)
    tables, written, write_seconds = _read_model_write(source, scratch)
    copy_seconds = _read_model_copy(source, db, scratch)
    source.close()
    _unlink(scratch)
    return {"events": inserted, "insert_seconds": insert_seconds, "read_events": decoded,
            "read_decode_seconds": read_seconds, "parse_seconds": parse_seconds, "events_seconds": events_seconds,
            "read_model_rows": written, "read_model_tables": tables, "read_model_write_seconds": write_seconds,
            "read_model_copy_seconds": copy_seconds}


def size(db: str) -> dict:
    """The store on disk: everything, the events table (with its index), the projections."""
    if db.startswith(("postgresql://", "postgres://")):
        book = _book(db)
        with book.store.transaction(write=False) as cursor:
            cursor.execute(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'")
            tables = dict(cursor.fetchall())
        events_table = book.store.events_table
        book.close()
        total = sum(tables.values())
        return {"total_bytes": total, "events_bytes": tables.get(events_table, 0),
                "projection_bytes": sum(v for k, v in tables.items() if k.startswith("tb_")), "wal_bytes": 0}
    connection = sqlite3.connect(db)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    owners = dict(connection.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
    pages = connection.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
    connection.close()
    by_table: dict[str, int] = {}
    for name, size in pages:
        table = owners.get(name, name)
        by_table[table] = by_table.get(table, 0) + size
    files = {suffix: os.path.getsize(db + suffix) for suffix in ("", "-wal", "-shm") if os.path.exists(db + suffix)}
    return {"total_bytes": sum(files.values()), "wal_bytes": files.get("-wal", 0),
            "events_bytes": by_table.get("stored_events", 0),
            "projection_bytes": sum(v for k, v in by_table.items() if k.startswith("tb_"))}


def _summary(times: list[float]) -> dict:
    ordered = sorted(times)
    p95 = statistics.quantiles(ordered, n=20, method="inclusive")[18] if len(ordered) > 1 else ordered[0]
    return {"n": len(ordered), "median_ms": statistics.median(ordered) * 1000, "p95_ms": p95 * 1000,
            "max_ms": ordered[-1] * 1000}


def queries(db: str, kinds: list[str], samples: int, heavy_samples: int, replay_samples: int,
            seed: int = 7) -> dict:
    """Query latencies through tollbook.api.Tollbook in this process (each call brings the
    projections up to date first, as the API does; they already are). One untimed warm-up call
    per kind. Then the first ``replay_samples`` samples of each kind are answered again by
    replaying the log (bench/replay.py) and the two answers compared."""
    import replay

    book = _book(db)
    book.refresh()
    store = book.store
    rng = random.Random(seed)
    with store.transaction(write=False) as cursor:
        cursor.execute("SELECT min(recorded_at), max(recorded_at), min(published_at), max(published_at) FROM tb_entries")
        r_first, r_last, p_first, p_last = cursor.fetchone()
        cursor.execute("SELECT incident_id, min(recorded_at) FROM tb_incidents GROUP BY incident_id ORDER BY incident_id")
        incidents = cursor.fetchall()
        cursor.execute("SELECT incident_id, min(published_at), max(published_at) FROM tb_figures GROUP BY incident_id")
        published = {row[0]: (row[1], row[2]) for row in cursor.fetchall()}
        cursor.execute(f"SELECT max({store.notification_id}) FROM {store.events_table}")
        head = cursor.fetchone()[0]

        def recorded_at(position: int) -> int:
            cursor.execute(f"SELECT state FROM {store.events_table} WHERE {store.notification_id} = ?", (position,))
            return orjson.loads(state_json(bytes(cursor.fetchone()[0])))["timestamp"]

        def incident_point() -> dict:
            incident, first = rng.choice(incidents)
            low, high = published.get(incident, (p_first, p_last))
            return {"incident": incident, "as_of": rng.randint(first, r_last),
                    "known_at": rng.randint(low, high + 30 * 24 * HOUR_US)}

        with_claims = sorted(published)

        def history_point() -> dict:
            incident = rng.choice(with_claims)
            cursor.execute("SELECT source, measure, grp FROM tb_claims WHERE incident_id = ? ORDER BY position",
                           (incident,))
            source, measure, group = rng.choice(cursor.fetchall())
            return {"incident": incident, "source": source, "measure": measure, "group": group}

        def admin1_point() -> dict:
            return {"as_of": rng.randint(r_first, r_last), "known_at": rng.randint(p_first, p_last)}

        # "An hour of ingest": the log holds the stream of a feed spread over the data's published
        # span (about five years); the events one hour of that feed brings are head / hours.
        hours = max(1.0, (p_last - p_first) / HOUR_US)
        span = max(1, round(head / hours))

        def diff_point() -> dict:
            position = rng.randint(1, max(1, head - span))
            return {"start": recorded_at(position), "end": recorded_at(min(head, position + span))}

        makers = {"incident": (incident_point, samples), "history": (history_point, samples),
                  "admin1": (admin1_point, heavy_samples), "diff": (diff_point, heavy_samples),
                  "source": (admin1_point, heavy_samples), "latest": (admin1_point, heavy_samples)}
        points = {kind: [makers[kind][0]() for _ in range(makers[kind][1] + 1)] for kind in kinds}

    def ask(kind: str, point: dict) -> dict:
        if kind == "incident":
            return book.tally(incident=point["incident"], as_of=point["as_of"], known_at=point["known_at"])
        if kind == "admin1":
            return book.tally(by="admin1", as_of=point["as_of"], known_at=point["known_at"])
        if kind == "source":
            return book.tally(by="source", as_of=point["as_of"], known_at=point["known_at"])
        if kind == "latest":
            return book.tally(by="admin1", policy="latest", as_of=point["as_of"], known_at=point["known_at"])
        if kind == "history":
            return book.history(**point)
        return book.diff(point["start"], point["end"])

    def again(kind: str, point: dict) -> tuple:
        if kind == "incident":
            return replay.tally_incident(db, point["incident"], point["as_of"], point["known_at"])
        if kind == "admin1":
            return replay.tally_by(db, "admin1", point["as_of"], point["known_at"])
        if kind == "source":
            return replay.tally_by_source(db, point["as_of"], point["known_at"])
        if kind == "latest":
            return replay.tally_by(db, "admin1", point["as_of"], point["known_at"], policy="latest")
        if kind == "history":
            return replay.history(db, point["incident"], point["source"], point["measure"], point["group"])
        return replay.diff(db, point["start"], point["end"])

    results: dict[str, Any] = {"diff_span_events": span, "hours": hours}
    for kind in kinds:
        warmup, *timed = points[kind]
        ask(kind, warmup)
        times, answers, sizes = [], [], []
        for index, point in enumerate(timed):
            start = time.perf_counter()
            answer = ask(kind, point)
            times.append(time.perf_counter() - start)
            sizes.append(len(answer.get("rows") or answer.get("claims") or answer.get("changes") or ()))
            if index < replay_samples:
                answers.append(replay.normalize(kind, answer))
        results[kind] = _summary(times) | {"mean_answer_rows": statistics.mean(sizes)}
        if replay_samples and not store.is_postgres:
            replay_times, agree, mismatches = [], 0, []
            for point, answer in zip(timed, answers):
                start = time.perf_counter()
                replayed = again(kind, point)
                replay_times.append(time.perf_counter() - start)
                if replayed == answer:
                    agree += 1
                else:
                    mismatches.append({"point": point, "api": repr(answer)[:300], "replay": repr(replayed)[:300]})
            query_seconds = sum(times[:len(replay_times)])
            results[kind]["replay"] = {
                "n": len(replay_times), "median_s": statistics.median(replay_times),
                "ratio": sum(replay_times) / query_seconds if query_seconds else None,
                "agree": agree, "mismatches": mismatches[:2]}
    book.close()
    return results


PHASES = {
    "generate": lambda a: generate(a["events"], a["path"]),
    "open": lambda a: open_store(a["db"]),
    "ingest": lambda a: ingest(a["db"], a["path"]),
    "writer": lambda a: writer(a["db"], a["path"]),
    "catchup": lambda a: project(a["db"], rebuild=False),
    "rebuild": lambda a: project(a["db"], rebuild=True),
    "raw": lambda a: raw(a["db"], a["scratch"], a["path"]),
    "size": lambda a: size(a["db"]),
    "queries": lambda a: queries(a["db"], a["kinds"], a["samples"], a["heavy_samples"], a["replay_samples"]),
}


if __name__ == "__main__":
    name, arguments = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(PHASES[name](arguments)), flush=True)
