"""Several writers at once, and a projector following them (issue 4), on SQLite and PostgreSQL.

- Two editors correcting the same claim at the same moment never overwrite each other: the one
  who lost the race decides again on fresh state, and is refused in one clear line when the
  correction no longer applies.
- N processes (multiprocessing) each append M corrections to one shared claim and to a claim
  of their own, one document per transaction and then a batch, while ``tollbook project
  --follow`` runs: every accepted correction is in the history exactly once, the counts add
  up, and the follower's projection holds every claim event of the log exactly once (a
  notification id handed out out of commit order would have been skipped by it: see
  test_follower_misses_no_event_under_concurrent_writers) and equals a rebuild.
"""

from __future__ import annotations

import json
import multiprocessing
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import _env, log_table, sql, stored_events

WRITERS = 3
CORRECTIONS = 10  # per writer and claim, one document per transaction
BATCH = 5  # then this many more per writer and claim, in one ingest (one transaction)
CLAIM_TOPICS = ("domain.claim:ClaimReported", "domain.claim:ClaimRetracted", "domain.claim:ClaimCorrected")


def setup_documents(writers: int) -> list[str]:
    incidents = [{"incident_id": "shared", "occurred_from": "2024-01-01", "admin1": "North"}] + [
        {"incident_id": f"own-{w}", "occurred_from": "2024-01-01", "admin1": "South"} for w in range(writers)]
    claims = [{"incident_id": i["incident_id"], "source": "Civil Defence", "measure": "killed", "low": 1,
               "high": 1000} for i in incidents]
    return [json.dumps({"kind": "report", "report_id": "setup", "published_at": "2024-01-02",
                        "incidents": incidents, "claims": claims})]


def correction(incident_id: str, reason: str, low: int, **fields) -> str:
    return json.dumps({"kind": "correction", "incident_id": incident_id, "source": "Civil Defence",
                       "measure": "killed", "version": 1, "low": low, "reason": reason} | fields)


def _writer(db: str, number: int, corrections: int, batch: int, barrier, results) -> None:
    """One editor: corrections on the shared claim and on its own, as fast as it can."""
    from tollbook.api import Tollbook

    name = f"editor-{number}"
    accepted: list[str] = []
    refused: list[tuple[str, str]] = []
    with Tollbook(db, editor=name) as book:
        barrier.wait(timeout=60)
        for i in range(corrections):
            for incident in ("shared", f"own-{number}"):
                reason = f"{name} #{i} on {incident}"
                result = book.ingest([correction(incident, reason, low=number * 100 + i)])
                if result.accepted:
                    accepted.append(reason)
                else:
                    refused.append((reason, "; ".join(str(r) for r in result.rejected)))
        documents = [(f"{name} batch #{i} on {incident}", incident, number * 100 + 50 + i)
                     for i in range(batch) for incident in ("shared", f"own-{number}")]
        result = book.ingest([correction(incident, reason, low=low) for reason, incident, low in documents])
        refused_lines = {r.line: str(r) for r in result.rejected}
        for line, (reason, _, _) in enumerate(documents, 1):
            if line in refused_lines:
                refused.append((reason, refused_lines[line]))
            else:
                accepted.append(reason)
    results.put((name, accepted, refused))


def run_writers(db: str, writers: int, corrections: int, batch: int) -> tuple[list[str], list[tuple[str, str]]]:
    context = multiprocessing.get_context("spawn")  # no inherited connections
    barrier, results = context.Barrier(writers), context.Queue()
    processes = [context.Process(target=_writer, args=(db, n, corrections, batch, barrier, results))
                 for n in range(writers)]
    for process in processes:
        process.start()
    reports: list = []
    deadline = time.monotonic() + 240
    while len(reports) < len(processes):
        try:
            reports.append(results.get(timeout=0.5))
        except queue.Empty:
            dead = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            assert not dead and time.monotonic() < deadline, f"writers failed: exit codes {dead}"
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    accepted = [reason for _, ok, _ in reports for reason in ok]
    refused = [pair for _, _, no in reports for pair in no]
    return accepted, refused


def follow(db: str, cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tollbook", "project", "--follow", "--poll", "0.05"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(db, None), cwd=str(cwd))


def wait_until_projected(db: str, timeout: float = 60) -> dict:
    from tollbook.api import Tollbook

    with Tollbook(db) as book:  # status() reads; it does not project
        deadline = time.monotonic() + timeout
        while True:
            status = book.status()
            if all(p["lag"] == 0 for p in status["projections"]) or time.monotonic() > deadline:
                return status
            time.sleep(0.1)


def stop(process: subprocess.Popen) -> tuple[int, str, str]:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    return process.returncode, out.decode(), err.decode()


def projected_positions(db: str) -> list[int]:
    return [row[0] for row in sql(db, "SELECT position FROM tb_entries ORDER BY position")]


def claim_event_positions(db: str) -> list[int]:
    table, column = log_table(db)
    marks = ", ".join("?" * len(CLAIM_TOPICS))
    return [row[0] for row in sql(db, f"SELECT {column} FROM {table} WHERE topic IN ({marks}) ORDER BY {column}",
                                  CLAIM_TOPICS)]


def answers(book) -> str:
    return json.dumps([book.history(), book.tally(), book.tally(by="source"), book.tally(by="admin1")],
                      sort_keys=True)


# -- two editors, one claim -------------------------------------------------------------------

def test_two_editors_correcting_one_claim_at_the_same_moment(db_path):
    """ana decides her correction; bo's correction of the same claim is stored before ana saves.
    Neither overwrites the other: ana's save is refused by the store (bo took the claim's next
    version), her correction is decided again on bo's, and stored after it when it still
    applies, or refused in one line when it does not."""
    from tollbook.api import Tollbook

    with Tollbook(db_path, editor="ana") as ana, Tollbook(db_path, editor="bo") as bo:
        assert ana.ingest(setup_documents(0)).accepted == 1
        saves, bo_first = _bo_stores_first(ana, bo)
        # Still applies: both corrections are kept, bo's first.
        bo_first.append(correction("shared", "bo: high was 100", 1, high=100))
        result = ana.ingest([correction("shared", "ana: typed 1 for 7", 7)])
        assert (result.accepted, result.rejected) == (1, [])
        assert saves == [1, 1]  # refused once (a conflict), then decided again and saved
        entries = bo.history(incident="shared")["claims"][0]["entries"]
        assert [(e["kind"], e["reason"], e["recorded_by"], e["low"], e["high"]) for e in entries] == [
            ("reported", None, "ana", 1, 1000),
            ("corrected", "bo: high was 100", "bo", 1, 100),
            ("corrected", "ana: typed 1 for 7", "ana", 7, 100)]  # ana's fix, on top of bo's
        # No longer applies: ana's low would now be above bo's high. Refused, in one line.
        bo_first.append(correction("shared", "bo: high is 20", 7, high=20))
        saves.clear()
        result = ana.ingest([correction("shared", "ana: low is 50", 50)])
        assert result.accepted == 0 and len(result.rejected) == 1
        assert saves == [1]  # decided again: nothing left to save
        message = str(result.rejected[0])
        assert message.startswith("line 1: high: ") and "\n" not in message, message
        assert "after the correction of version 1" in message
        entries = ana.history(incident="shared")["claims"][0]["entries"]
        assert [e["reason"] for e in entries] == [None, "bo: high was 100", "ana: typed 1 for 7", "bo: high is 20"]
        assert ana.tally(incident="shared")["rows"][0]["high"] == 20


def test_a_batch_written_behind_that_lost_is_decided_again_with_what_was_decided_on_it(db_path):
    """ana's ingest writes each batch behind while deciding the next on top of it. bo's
    correction of the shared claim is stored after ana decided her first batch: that batch is
    refused when it is written, and so it and the batch decided on it are decided again, one
    document at a time, on fresh state; ana's later correction of the same claim lands on top."""
    from tollbook.api import Tollbook

    with Tollbook(db_path, editor="ana") as ana, Tollbook(db_path, editor="bo") as bo:
        assert ana.ingest(setup_documents(1)).accepted == 1
        saves = []

        def bo_saves_first(save):
            def saving(documents):
                if not saves:
                    assert bo.ingest([correction("shared", "bo: high was 100", 1, high=100)]).accepted == 1
                saves.append(save.__name__)
                return save(documents)
            return saving

        ana.store.append = bo_saves_first(ana.store.append)
        ana.store.write_behind = bo_saves_first(ana.store.write_behind)
        result = ana.ingest([correction("shared", "ana: typed 1 for 7", 7), correction("own-0", "ana: 8", 8),
                             correction("shared", "ana: typed 7 for 9", 9)], batch_events=1, prefetch_documents=1)
        assert (result.accepted, result.rejected) == (3, [])
        # The first batch, refused when written; the first two documents again, one at a time,
        # at once; then the third, written behind.
        assert saves == ["write_behind", "append", "append", "write_behind"]
        entries = bo.history(incident="shared")["claims"][0]["entries"]
        assert [(e["reason"], e["low"], e["high"]) for e in entries] == [
            (None, 1, 1000), ("bo: high was 100", 1, 100), ("ana: typed 1 for 7", 7, 100), ("ana: typed 7 for 9", 9, 100)]
        assert [e["reason"] for e in bo.history(incident="own-0")["claims"][0]["entries"]] == [None, "ana: 8"]


def _bo_wins_the_first_race(ana, bo, only_on: str | None = None) -> None:
    """bo stores a correction of the shared claim just before ana's first batch is written
    (on the thread called ``only_on``, if given)."""
    write_behind, raced = ana.store.write_behind, []

    def saving(documents):
        if not raced and (only_on is None or threading.current_thread().name == only_on):
            raced.append(True)
            assert bo.ingest([correction("shared", "bo", 2)]).accepted == 1
        return write_behind(documents)

    ana.store.write_behind = saving


def reasons(book, incident: str) -> list:
    return [e["reason"] for e in book.history(incident=incident)["claims"][0]["entries"]]


def test_only_the_ingest_that_wrote_a_batch_behind_learns_its_fate(db_path):
    """Two threads ingest through one store. The first one's batch is refused while it is being
    written behind; the second one's write must neither take that refusal nor hide it: the first
    decides its document again and stores it, the second stores its own."""
    from tollbook.api import Tollbook

    with Tollbook(db_path, editor="ana") as ana, Tollbook(db_path, editor="bo") as bo:
        assert ana.ingest(setup_documents(1)).accepted == 1
        _bo_wins_the_first_race(ana, bo, only_on="first")
        in_flight, go_on, results = threading.Event(), threading.Event(), {}

        def lines():
            yield correction("shared", "ana on shared", 7)
            in_flight.set()  # its batch is being written behind now
            go_on.wait(10)

        def first():
            results["first"] = ana.ingest(lines(), batch_events=1, prefetch_documents=1)

        def second():
            results["second"] = ana.ingest([correction("own-0", "ana on own-0", 8)])

        one = threading.Thread(target=first, name="first")
        one.start()
        assert in_flight.wait(10)
        two = threading.Thread(target=second, name="second")
        two.start()
        two.join(10)
        go_on.set()
        one.join(10)
        assert (results["second"].accepted, results["second"].rejected) == (1, [])
        assert (results["first"].accepted, results["first"].rejected) == (1, [])
        assert reasons(ana, "shared") == [None, "bo", "ana on shared"]
        assert reasons(ana, "own-0") == [None, "ana on own-0"]


def test_a_query_while_a_batch_is_written_behind_leaves_its_fate_to_the_ingest(db_path):
    """A tally between two documents (from the documents' iterator) writes the projections
    while the ingest's refused batch is being written behind: the ingest still decides it
    again and stores everything."""
    from tollbook.api import Tollbook

    with Tollbook(db_path, editor="ana") as ana, Tollbook(db_path, editor="bo") as bo:
        assert ana.ingest(setup_documents(1)).accepted == 1
        _bo_wins_the_first_race(ana, bo)

        def lines():
            yield correction("shared", "ana on shared", 7)
            ana.tally()
            yield correction("own-0", "ana on own-0", 8)

        result = ana.ingest(lines(), batch_events=1, prefetch_documents=1)
        assert (result.accepted, result.rejected) == (2, [])
        assert reasons(ana, "shared") == [None, "bo", "ana on shared"]


def test_an_interrupt_before_a_batch_is_handed_over_leaves_the_store_unlocked(tmp_path, monkeypatch):
    """Ctrl-C after the batch took the write lock and before the writing thread took it: the
    transaction is rolled back and the lock let go, for other processes and for this one."""
    import sqlite3
    from concurrent.futures import ThreadPoolExecutor

    from tollbook.api import Tollbook

    db = str(tmp_path / "t.db")
    with Tollbook(db, editor="ana") as ana:
        assert ana.ingest(setup_documents(1)).accepted == 1

        def interrupted(self, *args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(ThreadPoolExecutor, "submit", interrupted)
        with pytest.raises(KeyboardInterrupt):
            ana.ingest([correction("shared", "ana", 7)])
        monkeypatch.undo()
        other = sqlite3.connect(db, timeout=0.2, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert ana.ingest([correction("shared", "ana", 7)]).accepted == 1
        assert reasons(ana, "shared") == [None, "ana"]


def test_a_writer_that_keeps_losing_is_told_in_one_line(db_path, monkeypatch):
    """The retries are bounded: a writer that loses every time gets one line per document. A
    batch that conflicts is split, so each document gets its own retries."""
    from tollbook.store.eventsourcing_adapter import IntegrityError

    from tollbook.api import Tollbook
    from tollbook.store.eventstore import EventStore

    with Tollbook(db_path, editor="ana") as ana:
        ana.ingest(setup_documents(1))
        calls = []

        def always_late(self, cursor, batch):
            calls.append(len(batch.rows))
            raise IntegrityError("another writer saved first")

        monkeypatch.setattr(EventStore, "_insert", always_late)
        result = ana.ingest([correction("shared", "ana: typed 1 for 7", 7), correction("own-0", "ana: 8", 8)])
        monkeypatch.undo()
        assert result.accepted == 0
        # The batch; then each document (a correction and its receipt): a first try and 8 retries.
        assert calls == [4] + [2] * 9 + [2] * 9
        assert [str(r) for r in result.rejected] == [
            f"line {line}: another writer kept changing the same records; try again" for line in (1, 2)]
        assert [e["kind"] for e in ana.history(incident="shared")["claims"][0]["entries"]] == ["reported"]


# -- N writer processes and a follower ------------------------------------------------------------

def test_concurrent_writers_lose_nothing_and_the_follower_misses_nothing(db_path, tmp_path):
    from tollbook.api import Tollbook

    with Tollbook(db_path, editor="setup") as book:
        assert book.ingest(setup_documents(WRITERS)).accepted == 1
    follower = follow(db_path, tmp_path)
    try:
        accepted, refused = run_writers(db_path, WRITERS, CORRECTIONS, BATCH)
        status = wait_until_projected(db_path)
    finally:
        code, out, err = stop(follower)
    assert code == 0, err
    assert "Traceback" not in err and "stopped at position" in err.splitlines()[-1], err
    assert all(p["lag"] == 0 for p in status["projections"]), status

    # The counts add up, and nothing was refused for a reason other than losing every race.
    attempts = WRITERS * 2 * (CORRECTIONS + BATCH)
    assert len(accepted) + len(refused) == attempts
    assert len(set(accepted)) == len(accepted)
    assert all(error.endswith("another writer kept changing the same records; try again") for _, error in refused)
    assert len(refused) <= attempts // 10, refused  # retried on fresh state: losing every time is rare

    # Every accepted correction is in the log exactly once, nothing else is.
    logged = [e["state"]["reason"] for e in stored_events(db_path) if e["topic"] == "domain.claim:ClaimCorrected"]
    assert sorted(logged) == sorted(accepted)

    # The follower projected every claim event of the log, each once.
    assert projected_positions(db_path) == claim_event_positions(db_path)
    with Tollbook(db_path) as book:
        history = {c["incident_id"]: c["entries"] for c in book.history()["claims"]}
        corrections = [e["reason"] for entries in history.values() for e in entries if e["kind"] == "corrected"]
        assert sorted(corrections) == sorted(accepted)  # each once
        shared = history["shared"]
        assert len(shared) == 1 + sum(reason.endswith(" on shared") for reason in accepted)
        stamps = [e["recorded_at"] for e in shared]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)  # one instant each, in order
        for number in range(WRITERS):
            own = [e["reason"] for e in history[f"own-{number}"][1:]]
            # A writer's own claim: its corrections in the order it made them.
            assert own == [r for r in accepted if r.endswith(f" on own-{number}")]
        # What the follower built equals a rebuild from the log.
        before = answers(book)
        assert book.rebuild() == len(stored_events(db_path))
        assert answers(book) == before


def test_follower_misses_no_event_under_concurrent_writers(db_path, tmp_path):
    """The projections read the log after their position, so they rely on notification ids
    being handed out in commit order: on PostgreSQL the recorder takes an EXCLUSIVE lock on the
    events table before inserting (and Tollbook's clock row lock serializes writers before
    that), on SQLite writers are serialized by BEGIN IMMEDIATE. Many small transactions from
    several processes while a follower reads after every commit: any event committed below a
    position the follower had already passed would be missing from its projection."""
    from tollbook.api import Tollbook

    with Tollbook(db_path, editor="setup") as book:
        assert book.ingest(setup_documents(4)).accepted == 1
    follower = follow(db_path, tmp_path)
    try:
        accepted, _ = run_writers(db_path, 4, 8, 0)
        wait_until_projected(db_path)
    finally:
        code, _, err = stop(follower)
    assert code == 0, err
    positions = projected_positions(db_path)
    expected = claim_event_positions(db_path)
    missing = sorted(set(expected) - set(positions))
    assert missing == [], f"the follower skipped events {missing}"
    assert positions == expected and len(positions) == 1 + 4 + len(accepted)


def test_status_and_project_on_the_command_line(run, db_path, tmp_path):
    from tollbook.api import Tollbook
    from tollbook.projections.projector import all_projections

    names = sorted(projection.name for projection in all_projections())

    with Tollbook(db_path, editor="setup") as book:
        book.ingest(setup_documents(1))
    code, out, err = run("status", "--format", "json")
    assert code == 0 and err == "", err
    status = json.loads(out)
    head = status["head"]
    assert head["position"] > 0 and head["recorded_at"].endswith("Z")
    assert [(p["name"], p["position"], p["lag"]) for p in status["projections"]] == [
        (name, 0, head["position"]) for name in names]
    code, out, err = run("project")
    assert code == 0 and out == f"projected {head['position']} events; every projection is at position {head['position']}\n"
    assert f"position {head['position']} of {head['position']}" in err
    code, out, err = run("status")
    assert code == 0 and out.splitlines()[0] == f"event log head: position {head['position']}, recorded at {head['recorded_at']}"
    assert out.splitlines()[1].split() == ["projection", "position", "lag"]
    assert out.splitlines()[2].split() == [names[0], str(head["position"]), "0"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_follow_stops_cleanly_on_a_signal(db_path, tmp_path, signum):
    from tollbook.api import Tollbook

    with Tollbook(db_path, editor="setup") as book:
        book.ingest(setup_documents(1))
    process = follow(db_path, tmp_path)
    try:
        assert wait_until_projected(db_path)["projections"][0]["lag"] == 0  # it is following
    finally:
        process.send_signal(signum)
        out, err = process.communicate(timeout=30)
    lines = err.decode().splitlines()
    assert process.returncode == 0, lines
    assert "following from position 0" in lines[0]
    assert f"{signal.Signals(signum).name}: stopping after the batch in hand" in lines[-2]
    assert "stopped at position" in lines[-1]
    assert out.decode().startswith("projected ")


# -- merges racing (issue 11 item 9) ------------------------------------------------------------

MERGE_INCIDENTS = ("a", "b", "c", "d", "e", "f")


def merge_setup() -> list[str]:
    """One report: incidents a..f, each with one claim."""
    incidents = [{"incident_id": i, "occurred_from": "2024-01-01", "admin1": "North"} for i in MERGE_INCIDENTS]
    claims = [{"incident_id": i, "source": "Civil Defence", "measure": "killed", "low": 2 ** n}
              for n, i in enumerate(MERGE_INCIDENTS)]
    return [json.dumps({"kind": "report", "report_id": "merge-setup", "published_at": "2024-01-02",
                        "incidents": incidents, "claims": claims})]


def merge(incident: str, into: str, reason: str) -> str:
    return json.dumps({"kind": "merge", "incident_id": incident, "into": into, "reason": reason})


def merges_in_log_order(db: str) -> list[tuple[str, str]]:
    return [(e["state"]["incident_id"], e["state"]["into"]) for e in stored_events(db)
            if e["topic"] == "domain.incident:IncidentMerged"]


def assert_one_writer_could_have_merged(db: str, book) -> None:
    """The log's merges, in log order, are a sequence the merge rules allow one writer at a time
    (no incident merged twice, none into one merged away): no chain. Every claim counts under
    an incident not merged away, and a rebuild agrees."""
    merged: dict[str, str] = {}
    for incident, into in merges_in_log_order(db):
        assert incident not in merged and into not in merged and incident != into, (incident, into, merged)
        merged[incident] = into
        merged.update({i: into for i, to in merged.items() if to == incident})
    absorbed = [(e["state"]["merged"], e["state"]["incident_id"]) for e in stored_events(db)
                if e["topic"] == "domain.incident:IncidentAbsorbed"]
    assert absorbed == merges_in_log_order(db)  # each merge wrote both incidents
    rows = {r["key"] for r in book.tally()["rows"]}
    assert set(rows) == set(MERGE_INCIDENTS) - set(merged)
    for incident in MERGE_INCIDENTS:
        [row] = book.tally(incident=incident)["rows"]
        assert row["key"] == merged.get(incident, incident)
    before = answers(book)
    book.rebuild()
    assert answers(book) == before


def _bo_stores_first(ana, bo) -> tuple[list[int], list[str]]:
    """Each document put in the second list bo stores after ana decided her next batch, just
    before ana saves it; the first list gets the size of each batch ana saves."""
    saves: list[int] = []
    pending: list[str] = []

    def first(save):
        def saving(documents):
            while pending:
                assert bo.ingest([pending.pop()]).accepted == 1
            saves.append(len(documents))
            return save(documents)
        return saving

    ana.store.append = first(ana.store.append)
    ana.store.write_behind = first(ana.store.write_behind)
    return saves, pending


def test_a_merge_into_an_incident_merged_away_meanwhile_is_refused(db_path):
    """ana decides a -> b; bo's b -> c is stored before ana saves. ana's merge is refused by the
    store (it wrote b too), decided again, and rejected in one line: a -> b would be a chain."""
    from tollbook.api import Tollbook

    with Tollbook(db_path, editor="ana") as ana, Tollbook(db_path, editor="bo") as bo:
        assert ana.ingest(merge_setup()).accepted == 1
        saves, bo_first = _bo_stores_first(ana, bo)
        bo_first.append(merge("b", "c", "bo: the same strike"))
        result = ana.ingest([merge("a", "b", "ana: the same strike")])
        assert result.accepted == 0 and saves == [1]  # refused once, then nothing left to save
        [rejection] = result.rejected
        assert str(rejection) == "line 1: into: 'b' was merged into 'c'; merge into that instead"
        assert merges_in_log_order(db_path) == [("b", "c")]
        assert [r["key"] for r in ana.tally(incident="a")["rows"]] == ["a"]
        assert_one_writer_could_have_merged(db_path, ana)


def test_a_merge_of_an_incident_that_absorbed_another_meanwhile_still_applies(db_path):
    """ana decides b -> c; bo's a -> b is stored first. Both orders are allowed one at a time, so
    ana's merge is decided again and stored: a and b both count under c."""
    from tollbook.api import Tollbook

    with Tollbook(db_path, editor="ana") as ana, Tollbook(db_path, editor="bo") as bo:
        assert ana.ingest(merge_setup()).accepted == 1
        saves, bo_first = _bo_stores_first(ana, bo)
        bo_first.append(merge("a", "b", "bo"))
        result = ana.ingest([merge("b", "c", "ana")])
        assert (result.accepted, result.rejected, saves) == (1, [], [1, 1])
        assert merges_in_log_order(db_path) == [("a", "b"), ("b", "c")]
        assert [r["key"] for r in ana.tally(incident="a")["rows"]] == ["c"]
        assert_one_writer_could_have_merged(db_path, ana)


def test_two_editors_merging_two_incidents_into_each_other(db_path):
    """ana decides a -> b while bo's b -> a is stored: never both (a cycle)."""
    from tollbook.api import Tollbook

    with Tollbook(db_path, editor="ana") as ana, Tollbook(db_path, editor="bo") as bo:
        assert ana.ingest(merge_setup()).accepted == 1
        _bo_stores_first(ana, bo)[1].append(merge("b", "a", "bo"))
        result = ana.ingest([merge("a", "b", "ana")])
        assert result.accepted == 0
        assert str(result.rejected[0]) == "line 1: into: 'b' was merged into 'a'; merge into that instead"
        assert_one_writer_could_have_merged(db_path, ana)


def test_merges_from_many_processes_at_once_form_no_chain(db_path, run_many, jsonl):
    """Three processes merge the same six incidents into each other in different orders, all at
    once, each document its own transaction and then a batch: the log is a sequence of merges
    one writer could have made, and every query agrees with it."""
    import random

    from tollbook.api import Tollbook

    with Tollbook(db_path, editor="setup") as book:
        assert book.ingest(merge_setup()).accepted == 1
    pairs = [(a, b) for a in MERGE_INCIDENTS for b in MERGE_INCIDENTS if a != b]
    calls = []
    for writer in range(3):
        random.Random(writer).shuffle(pairs)
        documents = [merge(a, b, f"w{writer} {a}->{b}") for a, b in pairs]
        calls += [("ingest", jsonl(documents[:1])), ("ingest", jsonl(documents[1:2])), ("ingest", jsonl(documents[2:]))]
    results = run_many(calls)
    for code, _, err in results:
        assert code in (0, 1) and "Traceback" not in err, err
        assert all(line.startswith("line ") and "into" in line or "incident_id" in line
                   for line in err.splitlines()), err
    assert sum(int(out.split()[1].rstrip(",")) for _, out, _ in results) == len(merges_in_log_order(db_path)) > 0
    with Tollbook(db_path) as book:
        assert_one_writer_could_have_merged(db_path, book)


# -- readers and writers at once (issue 11 items 4 and 10) -------------------------------------------

def test_many_processes_opening_a_new_store_at_once_all_succeed(tmp_path):
    """Each process opens the same new SQLite store and ingests a document. The library's
    own table creation raced here ("Failed to record tracking for __migration__ 1")."""
    db = str(tmp_path / "new.db")
    script = ("import sys\nfrom tollbook.api import Tollbook\n"
              "with Tollbook(sys.argv[1], editor='w') as book:\n"
              "    book.ingest(['{\"kind\": \"incident\", \"incident_id\": \"i-' + sys.argv[2] + '\"}'])\n")
    processes = [subprocess.Popen([sys.executable, "-c", script, db, str(n)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=_env(None, None)) for n in range(12)]
    failures = [err.decode()[-300:] for p in processes for _, err in [p.communicate(timeout=240)] if p.returncode]
    assert failures == []
    assert sql(db, "SELECT count(*) FROM stored_events WHERE topic = 'domain.incident:IncidentDefined'") == [(12,)]


HOLD = """
import sys, time
from pathlib import Path
from tollbook.api import Tollbook
from tollbook.store.eventstore import EventStore

insert, flag = EventStore._insert, Path(sys.argv[2])

def holding(self, cursor, batch):  # the real insert, then the transaction held open
    insert(self, cursor, batch)
    Path(str(flag) + ".holding").touch()
    while not flag.exists():
        time.sleep(0.01)

EventStore._insert = holding
with Tollbook(sys.argv[1], editor="importer") as book:
    print(book.ingest(open(sys.argv[3], "rb")).accepted)
"""


def test_a_query_on_current_projections_does_not_wait_for_a_writer(db_path, tmp_path, run, jsonl):
    """A real ingest in another process holds its write transaction open (its events inserted,
    not committed). Meanwhile opening the store and querying it (tally, history, status) answer at
    once, with what was committed before: they take no write lock, and run no DDL."""
    assert run("ingest", jsonl(merge_setup()))[0] == 0
    assert run("tally")[0] == 0  # the projections are current
    flag = tmp_path / "release"
    writer = subprocess.Popen([sys.executable, "-c", HOLD, db_path, str(flag), str(jsonl(setup_documents(2)))],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(None, None))
    try:
        deadline = time.monotonic() + 60
        while not Path(str(flag) + ".holding").exists():
            assert writer.poll() is None and time.monotonic() < deadline, writer.communicate()
            time.sleep(0.02)
        results = run.many([("tally", "--format", "json"), ("status",)])
        assert writer.poll() is None  # still holding its transaction when the queries answered
        for code, _, err in results:
            assert code == 0, err
        assert {r["key"] for r in json.loads(results[0][1])["rows"]} == set(MERGE_INCIDENTS)
    finally:
        flag.touch()
        out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0 and out.split() == [b"1"], err
    code, out, _ = run("tally", "--format", "json")
    assert "shared" in {r["key"] for r in json.loads(out)["rows"]}


def test_queries_during_a_long_import_answer(db_path, tmp_path, run, jsonl):
    """A long ingest runs in another process (many batches); queries started meanwhile all
    answer (they wait at most for the batch being committed, never the 30 s lock timeout)."""
    documents = [json.dumps({"kind": "report", "report_id": f"r{n}", "published_at": "2024-01-02",
                             "incidents": [{"incident_id": f"i{n}", "admin1": "North"}],
                             "claims": [{"incident_id": f"i{n}", "source": "S", "measure": "killed", "low": 1}]})
                 for n in range(8_000)]
    assert run("ingest", jsonl(merge_setup()))[0] == 0
    writer = subprocess.Popen([sys.executable, "-m", "tollbook", "ingest", str(jsonl(documents)), "--batch-size",
                               "1500"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(db_path, None))
    latencies = []
    try:
        while writer.poll() is None and len(latencies) < 3:
            started = time.monotonic()
            code, out, err = run("tally", "--format", "json")
            latencies.append(time.monotonic() - started)
            assert code == 0 and "locked" not in err, err
    finally:
        out, err = writer.communicate(timeout=240)
    assert writer.returncode == 0, err
    assert latencies and max(latencies) < 25, latencies


def test_a_write_that_asks_for_the_lock_again_and_again_gets_it_once_it_is_let_go(tmp_path):
    """The follower beside an import asks for SQLite's write lock every 2 ms
    (EventStore.lock_polling) instead of waiting in SQLite's busy handler, which asks every
    100 ms and missed the moments the import lets go of it. A write begun while another
    connection holds the lock waits, then holds it, and its connection's busy timeout is as
    before."""
    import sqlite3

    from tollbook.api import Tollbook

    db = str(tmp_path / "t.db")
    with Tollbook(db, editor="t") as book:
        book.store.lock_polling = True
        other = sqlite3.connect(db, isolation_level=None, timeout=0, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        threading.Timer(0.3, other.execute, ("COMMIT",)).start()
        start = time.monotonic()
        with book.store.transaction() as cursor:
            waited = time.monotonic() - start
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            cursor.execute("PRAGMA busy_timeout")
            assert cursor.fetchone()[0] == 30_000
        assert waited >= 0.25
        other.execute("BEGIN IMMEDIATE")  # let go at the end of the transaction
        other.execute("COMMIT")
        other.close()
