"""kill -9 in the middle of the work, on SQLite and PostgreSQL: nothing half-done survives, and
running the command again finishes the job as if nothing had happened.

- ``tollbook project --follow`` killed while projecting a sizeable log, then started again: the
  rows written are exactly those of the events up to the tracked position (a batch is applied
  with its position or not at all), the second run reads only the events after that position,
  and the projection tables then equal a rebuild's, row for row, and answer the same.
- ``tollbook rebuild`` killed mid-way, then ``tollbook project``: the same, and the result
  equals what was projected before the rebuild (indexes included).
- ``tollbook ingest FILE`` killed mid-way: the store holds whole documents, exactly the first
  ones a clean ingest stores (each report with all of its claims or none); the same ingest
  again takes the rest (no rejections, the stored documents ``unchanged``), and the store then
  holds exactly what a clean single ingest into a fresh store holds.

Where the kill lands: on PostgreSQL inside the second write transaction, after it wrote (a
trigger makes it wait for a lock the test holds: see :class:`Gate`), so a program that commits
a batch in two steps fails there every time; on SQLite as soon as the first commit is seen.
Either way each test checks that some, not all, of the work was done, so a kill that came
too late (or too early) fails it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import zlib
from functools import cache
from uuid import UUID

import orjson
import pytest

from tollbook.store.eventstore import state_json

from conftest import (_admin, _env, event_count, is_postgres, log_table, session_stores, sql, stored_events,
                      strip_recorded)

EDITOR = "tester"
CLAIM_TOPICS = ("domain.claim:ClaimReported", "domain.claim:ClaimRetracted", "domain.claim:ClaimCorrected")
INCIDENT_FIELD_TOPICS = ("domain.incident:IncidentDefined", "domain.incident:IncidentAmended")
KNOWN_AT = "2021-07-01T00:00:00Z"


# The killed commands save this many events a transaction (their --batch-size), so the log
# holds several of their transactions.
INGEST_BATCH = 10_000
PROJECT_BATCH = 20_000


def log_events() -> int:
    """How many events to generate for the log every test works on (receipts add ~45% to the
    stored events): nearly two projector transactions and over three ingest transactions, so a
    killed projector or ingest has committed one and has about as much again to go."""
    return max(20_000, int(1.25 * PROJECT_BATCH), 2 * INGEST_BATCH)


def projections() -> list:
    from tollbook.projections.projector import all_projections

    return all_projections()


@cache
def documents(events: int) -> tuple[dict, ...]:
    """Synthetic documents (reports with revisions, corrections, retractions, merges)."""
    from bench.generate import generate  # the project's root is on pytest's pythonpath

    return tuple(generate(events, seed=20240510))


def lines(events: int) -> list[str]:
    return [json.dumps(d) for d in documents(events)]


# -- a store with a sizeable log, ingested once per store kind and copied for each test -----------

@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """``logs(kind)``: a store of that kind where the generated documents were ingested in one
    go (nothing projected), and that ingest's summary. Made once per kind, then copied."""
    made: dict[str, tuple] = {}

    def log_of(kind: str) -> tuple:
        if kind not in made:
            from tollbook.api import Tollbook

            db = session_stores(kind, tmp_path_factory.mktemp("crash")).new("template")
            with Tollbook(db, editor=EDITOR) as book:
                result = book.ingest(lines(log_events()))
            assert result.rejected == [] and result.accepted + result.unchanged == len(lines(log_events()))
            made[kind] = db, result
        return made[kind]

    return log_of


def copy_store(source: str, target: str) -> int:
    """Copies ``source``'s event log (nothing projected) into the new store ``target``;
    returns the log's head."""
    if not is_postgres(source):
        with sqlite3.connect(source) as origin, sqlite3.connect(target) as copy:
            origin.backup(copy)
        origin.close()
        copy.close()
    else:
        from tollbook.api import Tollbook
        from tollbook.store.pgstore import environment

        Tollbook(target).close()  # creates the store's tables
        old, new = (environment(url)["POSTGRES_SCHEMA"] for url in (source, target))
        with _admin(target) as connection:
            connection.execute(f'INSERT INTO "{new}".tollbook_events SELECT * FROM "{old}".tollbook_events')
            connection.execute(f"SELECT setval(pg_get_serial_sequence('\"{new}\".tollbook_events', 'notification_id'),"
                               f' (SELECT max(notification_id) FROM "{new}".tollbook_events))')
            connection.execute(f'UPDATE "{new}".tollbook_clock SET last_recorded_at ='
                               f' (SELECT last_recorded_at FROM "{old}".tollbook_clock)')
    assert lowest_position(target) == 0  # nothing projected yet
    return sql(target, f"SELECT max({log_table(target)[1]}) FROM {log_table(target)[0]}")[0][0]


# -- killing at the right moment -----------------------------------------------------------------

def start(db: str, cwd, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tollbook", "--db", db, "--editor", EDITOR, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(db, None), cwd=str(cwd))


def kill_midway(process: subprocess.Popen, progress, total: int, timeout: float = 60) -> int:
    """Polls ``progress()`` until 0 < progress < total, then SIGKILLs the process; returns the
    progress seen. Fails if the process ends by itself first (it finished too quickly)."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                _, err = process.communicate()
                pytest.fail(f"exited ({process.returncode}) before it could be killed mid-way: {err.decode()[-2000:]}")
            seen = progress()
            if 0 < seen < total:
                break
            assert time.monotonic() < deadline, f"no progress in {timeout} s (at {seen} of {total})"
            time.sleep(0.005)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    return seen


class Gate:
    """PostgreSQL: a trigger on ``table`` that, when ``condition`` holds, waits for an advisory
    lock the test holds, so the process is killed at a chosen point INSIDE a write transaction
    (after that statement wrote) rather than wherever a timed kill happens to land. Not a mock:
    the program runs as it is; its transaction is only made to wait there."""

    def __init__(self, db: str, table: str, trigger: str, condition: str):
        from tollbook.store.pgstore import environment

        self.db, self.table = db, table
        self.schema = environment(db)["POSTGRES_SCHEMA"]
        self.key = zlib.crc32(self.schema.encode()) & 0x7FFFFFFF
        self._ddl(f"CREATE FUNCTION tb_test_gate() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                  f" IF {condition} THEN PERFORM pg_advisory_xact_lock_shared({self.key}, 7); END IF;"
                  " RETURN NULL; END $$")
        self._ddl(f"CREATE TRIGGER tb_test_gate {trigger.format(table=table)} EXECUTE FUNCTION tb_test_gate()")

    def _ddl(self, statement: str) -> None:
        with _admin(self.db) as connection:
            connection.execute(f'SET search_path TO "{self.schema}"')
            connection.execute(statement)

    def _held(self) -> list[int]:
        """The backends waiting at the gate."""
        return [row[0] for row in sql(self.db, "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                                                f" AND classid = {self.key} AND objid = 7 AND objsubid = 2")]

    def kill(self, cwd, args: tuple[str, ...], timeout: float = 60) -> None:
        """Runs ``tollbook ARGS`` with the gate closed, SIGKILLs it once it waits there, opens
        the gate and waits for its backend to end: the server rolls the transaction back (its
        client never asked to commit), which is checked."""
        deadline = time.monotonic() + timeout
        with _admin(self.db) as holder:
            holder.execute(f"SELECT pg_advisory_lock({self.key}, 7)")
            process = start(self.db, cwd, *args)
            try:
                while not (held := self._held()):
                    if process.poll() is not None:
                        _, err = process.communicate()
                        pytest.fail(f"exited ({process.returncode}) before it reached the gate: {err.decode()[-2000:]}")
                    assert time.monotonic() < deadline, "the process never reached the gate"
                    time.sleep(0.005)
                before = event_count(self.db), positions(self.db)
            finally:
                if process.poll() is None:
                    os.kill(process.pid, signal.SIGKILL)
            process.communicate(timeout=30)
            assert process.returncode == -signal.SIGKILL
            holder.execute(f"SELECT pg_advisory_unlock({self.key}, 7)")
            while sql(self.db, "SELECT 1 FROM pg_stat_activity WHERE pid = ?", (held[0],)):
                assert time.monotonic() < deadline, "the killed process's transaction is still open"
                time.sleep(0.01)
        self._ddl(f"DROP TRIGGER tb_test_gate ON {self.table}")
        assert (event_count(self.db), positions(self.db)) == before  # the held transaction left nothing


def kill_during(db: str, cwd, args: tuple[str, ...], progress, total: int, *, gate: tuple[str, str, str]) -> None:
    """Runs ``tollbook ARGS`` and kills it -9 part-way: on PostgreSQL held at ``gate`` (table,
    trigger, condition: see :class:`Gate`); on SQLite as soon as 0 < progress() < total (a
    projector is inside a transaction nearly all the time; an ingest, while it decides, is not).
    The caller checks that some, not all, of the work was done."""
    if is_postgres(db):
        Gate(db, *gate).kill(cwd, args)
    else:
        kill_midway(start(db, cwd, *args), progress, total)


# Where the kill lands on PostgreSQL. A projector: in its second batch, its rows written, as it
# advances a position past the first batch's. An ingest: in its second transaction, its events
# inserted (the table held rows before the statement: the first transaction committed).
POSITION_GATE = ("AFTER UPDATE ON {table} FOR EACH ROW", "OLD.notification_id > 0")
EVENTS_GATE = ("AFTER INSERT ON {table} REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT",
               "(SELECT count(*) FROM tollbook_events) > (SELECT count(*) FROM inserted)")


# -- what the projections hold ------------------------------------------------------------------

def tracking_table(db: str) -> str:
    return "tollbook_tracking" if is_postgres(db) else "tracking"


def positions(db: str) -> dict[str, int]:
    """Each projection's tracked position (the recorder keeps a row of its own there too)."""
    names = [p.name for p in projections()]
    found = dict(sql(db, f"SELECT application_name, notification_id FROM {tracking_table(db)}"))
    return {name: found.get(name, 0) for name in names}


def lowest_position(db: str) -> int:
    return min(positions(db).values())


def log_positions(db: str, topics: tuple[str, ...]) -> list[int]:
    table, column = log_table(db)
    marks = ", ".join("?" * len(topics))
    return [row[0] for row in sql(db, f"SELECT {column} FROM {table} WHERE topic IN ({marks}) ORDER BY {column}",
                                  topics)]


def dump(db: str) -> dict[str, list[tuple]]:
    """Every row of every projection table, in a fixed order."""
    return {table: sorted(sql(db, f"SELECT * FROM {table}"), key=repr) for p in projections() for table in p.tables}


def schema_objects(db: str) -> list[tuple]:
    """The projections' tables, views and indexes (a rebuild killed before its end must not
    leave an index out for good)."""
    if is_postgres(db):
        return sorted(sql(db, "SELECT 'index', indexname FROM pg_indexes WHERE schemaname = current_schema()"
                              " AND tablename LIKE 'tb\\_%' UNION ALL SELECT table_type, table_name"
                              " FROM information_schema.tables WHERE table_schema = current_schema()"
                              " AND table_name LIKE 'tb\\_%'"))
    return sorted(sql(db, "SELECT type, name FROM sqlite_master WHERE tbl_name LIKE 'tb\\_%' ESCAPE '\\'"
                          " AND name NOT LIKE 'sqlite_%'"))


def some_incidents(events: int) -> list[str]:
    """Incidents whose history has more than plain reports: corrected, retracted, merged."""
    found = [next(d["incident_id"] for d in documents(events) if d["kind"] == kind)
             for kind in ("correction", "retraction", "incident")]
    return found + [next(d["into"] for d in documents(events) if d["kind"] == "merge")]


def answers(book, events: int) -> dict:
    return strip_recorded({
        "by incident": book.tally(),
        "by admin1 known at": book.tally(by="admin1", known_at=KNOWN_AT),
        "by source": book.tally(by="source", measure="injured"),
        "history": [book.history(incident=incident) for incident in some_incidents(events)],
    })


def assert_rows_in_step(db: str, position: int) -> None:
    """A killed projector leaves the rows of exactly the events up to its tracked position."""
    assert set(positions(db).values()) == {position}
    assert [row[0] for row in sql(db, "SELECT position FROM tb_entries ORDER BY position")] == [
        p for p in log_positions(db, CLAIM_TOPICS) if p <= position]
    assert sorted(row[0] for row in sql(db, "SELECT position FROM tb_incidents")) == [
        p for p in log_positions(db, INCIDENT_FIELD_TOPICS) if p <= position]


def assert_equals_rebuild(db: str) -> None:
    """The projections as they stand (caught up) equal a rebuild from the log: row for row,
    in their tables and indexes, and in their answers."""
    from tollbook.api import Tollbook

    with Tollbook(db) as book:
        assert book.refresh() == 0  # caught up already: nothing left to project
        before, objects, said = dump(db), schema_objects(db), answers(book, log_events())
        assert book.rebuild() == event_count(db)
        after = dump(db)
        for table in after:  # table by table: a failure names the table
            assert len(before[table]) == len(after[table]), table
            assert before[table] == after[table], table
        assert schema_objects(db) == objects
        assert answers(book, log_events()) == said
    # Each claim event once (its position is the key, so twice would have failed the insert).
    assert [row[0] for row in sql(db, "SELECT position FROM tb_entries ORDER BY position")] == log_positions(
        db, CLAIM_TOPICS)


# -- the projector ------------------------------------------------------------------------------

def test_killed_follower_resumes_where_it_stopped(db_path, store_kind, logs, tmp_path):
    head = copy_store(logs(store_kind)[0], db_path)
    kill_during(db_path, tmp_path, ("project", "--follow", "--poll", "0.05", "--batch-size", str(PROJECT_BATCH)),
                lambda: lowest_position(db_path), head, gate=(tracking_table(db_path), *POSITION_GATE))
    killed_at = lowest_position(db_path)
    assert 0 < killed_at < head, (killed_at, head)
    assert_rows_in_step(db_path, killed_at)

    # Started again, it reads only what it had not applied, then follows.
    follower = start(db_path, tmp_path, "project", "--follow", "--poll", "0.05")
    deadline = time.monotonic() + 60
    while lowest_position(db_path) < head and follower.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    follower.send_signal(signal.SIGTERM)
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err.decode()
    assert f"following from position {killed_at}, head {head}" in err.decode()
    assert out.decode() == f"projected {head - killed_at} events; every projection is at position {head}\n"
    assert_equals_rebuild(db_path)


def test_killed_rebuild_is_finished_by_project(db_path, store_kind, logs, tmp_path, run):
    from tollbook.api import Tollbook

    head = copy_store(logs(store_kind)[0], db_path)
    with Tollbook(db_path) as book:
        assert book.refresh() == head
        said = answers(book, log_events())
    projected, objects = dump(db_path), schema_objects(db_path)
    # At the head until the rebuild has emptied the projections, then 0, then batch by batch.
    kill_during(db_path, tmp_path, ("rebuild", "--batch-size", str(PROJECT_BATCH)), lambda: lowest_position(db_path),
                head, gate=(tracking_table(db_path), *POSITION_GATE))
    killed_at = lowest_position(db_path)
    assert 0 < killed_at < head, (killed_at, head)
    assert_rows_in_step(db_path, killed_at)

    code, out, err = run("project")
    assert code == 0, err
    assert out == f"projected {head - killed_at} events; every projection is at position {head}\n"
    # As projected before the rebuild, in one go: row for row, in tables and indexes, and answers.
    now = dump(db_path)
    for table in projected:  # table by table: a failure names the table
        assert len(now[table]) == len(projected[table]), table
        assert now[table] == projected[table], table
    assert schema_objects(db_path) == objects
    with Tollbook(db_path) as book:
        assert book.refresh() == 0
        assert answers(book, log_events()) == said


# -- ingest -----------------------------------------------------------------------------------

def signatures(db: str) -> list[tuple[int, bytes]]:
    """Each stored event, in log order, as (recorded_at, what it says without when and by whom)."""
    table, order = log_table(db)
    found = []
    for originator_id, version, topic, state in sql(
            db, f"SELECT originator_id, originator_version, topic, state FROM {table} ORDER BY {order}"):
        state = orjson.loads(state_json(bytes(state)))
        at = state.pop("timestamp")
        del state["recorded_by"]
        found.append((at, orjson.dumps([UUID(str(originator_id)).hex, version, topic, state],
                                       option=orjson.OPT_SORT_KEYS)))
    return found


def document_ends(stamped: list[tuple[int, bytes]]) -> list[int]:
    """Where each stored document's events end in the log (a document has one recorded_at)."""
    return [i + 1 for i, (at, _) in enumerate(stamped) if i + 1 == len(stamped) or stamped[i + 1][0] != at]


def test_killed_ingest_leaves_whole_documents_and_the_same_ingest_finishes(db_path, stores, store_kind, logs,
                                                                          tmp_path, run):
    from tollbook.api import Tollbook

    total = len(lines(log_events()))
    clean_db, clean = logs(store_kind)  # the same file, ingested in one go into a fresh store
    expected = signatures(clean_db)
    ends = document_ends(expected)
    assert len(ends) == clean.accepted
    answered = stores.new("clean")
    copy_store(clean_db, answered)  # answering projects: the template stays unprojected for the other tests
    with Tollbook(answered) as book:
        clean_answers = answers(book, log_events())

    path = tmp_path / "big.jsonl"
    path.write_text("".join(line + "\n" for line in lines(log_events())))
    Tollbook(db_path).close()  # creates the store (and its events table, for the gate)
    kill_during(db_path, tmp_path, ("ingest", str(path), "--batch-size", str(INGEST_BATCH)),
                lambda: event_count(db_path), len(expected),
                gate=(log_table(db_path)[0], *EVENTS_GATE))

    # Whole documents only: exactly the first k documents a clean ingest stores, 0 < k < all.
    stored = signatures(db_path)
    assert 0 < len(stored) < len(expected), (len(stored), len(expected))
    assert len(stored) in ends, "the log ends inside a document"
    assert [s for _, s in stored] == [s for _, s in expected[:len(stored)]]
    kept = document_ends(stored)
    assert len(kept) == ends.index(len(stored)) + 1
    # ... and so each report has all of its claims stored, or none.
    reported: dict[str, int] = {}
    for event in stored_events(db_path):
        if event["topic"] == "domain.claim:ClaimReported":
            reported[event["state"]["report_id"]] = reported.get(event["state"]["report_id"], 0) + 1
    for document in documents(log_events()):
        if document["kind"] == "report":
            assert reported.get(document["report_id"], 0) in (0, len(document["claims"])), document["report_id"]

    code, out, err = run("--editor", EDITOR, "ingest", path, "--format", "json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["rejected"] == []
    assert summary["accepted"] + summary["unchanged"] == total
    assert summary["accepted"] == clean.accepted - len(kept)  # the stored ones are left alone
    assert [s for _, s in signatures(db_path)] == [s for _, s in expected]
    with Tollbook(db_path) as book:
        assert answers(book, log_events()) == clean_answers
