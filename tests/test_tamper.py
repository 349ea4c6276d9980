"""Tamper evidence (CONTRACT section 8), on SQLite and PostgreSQL, through the real CLI.

- ``tollbook log`` and the standard-library script under examples/ that recomputes each leaf;
- ``keygen``, ``checkpoint``, ``status``; ``verify`` on a clean store and on a store written
  before the tree existed (tests/data/store-aa66c0a);
- an insider with database access who first drops the guards, then edits a figure, edits
  ``recorded_by``, deletes a middle or the last event, swaps two events, replaces one with
  garbage, edits the tree to match, or rewrites the whole history consistently: each is found
  by ``verify`` (the last one only against an earlier checkpoint), in one line, never a
  traceback;
- the guards themselves, and a PostgreSQL role with INSERT and SELECT only on the log;
- ``prove`` and ``verify-proof`` (no store), and bundles that were changed;
- kill -9 during ingest: the tree and the log agree and ``verify`` passes;
- a property: every checkpoint stays consistent with every later state, and every event's
  inclusion proof verifies.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import REVISIONS, ROOT, SEED, _admin, event_count, is_postgres, log_table, sql
from hypothesis import HealthCheck, given, settings
from strategies import documents

SCRIPT = ROOT / "examples" / "leaf_hash.py"


def guarded_tables(db: str) -> list[str]:
    return [log_table(db)[0], "tollbook_leaves", "tollbook_nodes", "tollbook_checkpoints", "tollbook_identity"]


def drop_guards(db: str) -> None:
    """What an insider with the database's owner rights does first."""
    if is_postgres(db):
        for table in guarded_tables(db):
            _ddl(db, f"DROP TRIGGER tollbook_append_only ON {table}")
    else:
        for (name,) in sql(db, "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'tollbook%'"):
            sql(db, f"DROP TRIGGER {name}")


def _ddl(db: str, statement: str, params: tuple = ()) -> None:
    """A statement with no result on a store (PostgreSQL: in its schema, autocommit)."""
    from tollbook.store.pgstore import environment, qmark

    if not is_postgres(db):
        sql(db, statement, params)
        return
    with _admin(db) as connection:
        connection.execute(f'SET search_path TO "{environment(db)["POSTGRES_SCHEMA"]}"')
        connection.execute(qmark(statement), params or None)


def state_at(db: str, position: int) -> bytes:
    """The JSON of the event at ``position`` (stored compressed; :func:`set_state` may write it back as
    JSON, which the store reads as a state written by earlier code)."""
    from tollbook.store.eventstore import state_json

    table, column = log_table(db)
    return state_json(bytes(sql(db, f"SELECT state FROM {table} WHERE {column} = ?", (position,))[0][0]))


def set_state(db: str, position: int, state: bytes) -> None:
    table, column = log_table(db)
    _ddl(db, f"UPDATE {table} SET state = ? WHERE {column} = ?", (state, position))


def positions_of(db: str, topic: str) -> list[int]:
    table, column = log_table(db)
    return [row[0] for row in sql(db, f"SELECT {column} FROM {table} WHERE topic = ? ORDER BY {column}", (topic,))]


@pytest.fixture
def signed(run, tmp_path):
    """A store holding the seed and the revisions, signed once after the seed (``cp1``) and once
    at the end (``cp2``), with the key (``key``, ``key.pub``) in tmp_path."""
    assert run("--editor", "tester", "ingest", SEED)[0] == 0
    code, out, err = run("keygen", "--out", tmp_path / "key")
    assert code == 0, err
    assert run("checkpoint", "--key", tmp_path / "key", "--out", tmp_path / "cp1")[0] == 0
    assert run("--editor", "tester", "ingest", REVISIONS)[0] == 0
    assert run("checkpoint", "--key", tmp_path / "key", "--out", tmp_path / "cp2")[0] == 0
    return tmp_path


def verify(run, folder: Path, *checkpoints: str) -> tuple[int, str, str]:
    args = ["verify"]
    for name in checkpoints:
        args += ["--checkpoint", folder / name]
    if checkpoints:
        args += ["--public-key", folder / "key.pub"]
    return run(*args)


def halves_verified(db: str, monkeypatch) -> str:
    """verify with a worker process checking the end of the log (as it does from
    audit.SPLIT_AT events on): the line it prints."""
    from tollbook.api import Tollbook
    from tollbook.store import audit

    monkeypatch.setattr(audit, "SPLIT_AT", 2)
    with Tollbook(db) as book:
        try:
            return "verified {} events, root {}".format(*book.verify())
        except audit.Failed as error:
            return str(error)


def assert_found(result: tuple[int, str, str], needle: str) -> None:
    code, out, err = result
    assert code == 1, (out, err)
    assert out == ""
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert needle in err, err


# -- log, keys, checkpoints, verify -----------------------------------------------------------

def test_log_pages_and_the_example_script_recomputes_every_leaf(run, jsonl, db_path, tmp_path):
    floats = jsonl([{"kind": "incident", "incident_id": "float-ünïcode", "lat": 1e-05, "lon": 100.0,
                     "title": "Ďěčín \u2028 \"quoted\" \\ tab\t", "depth": {"values": [1e-07, 2.5, 10**20]}}])
    for path in (SEED, REVISIONS, floats):
        assert run("--editor", "tester", "ingest", path)[0] == 0
    code, out, err = run("log", "--format", "jsonl")
    assert code == 0, err
    lines = [json.loads(line) for line in out.split("\n") if line]
    assert [line["position"] for line in lines] == list(range(1, event_count(db_path) + 1))
    assert {line["event"]["type"] for line in lines} >= {"ClaimReported", "ClaimCorrected", "IncidentDefined",
                                                        "DocumentReceived"}
    first = lines[0]["event"]
    assert set(first) == {"type", "aggregate_id", "aggregate_version", "recorded_at", "recorded_by", "fields"}
    assert first["recorded_at"].endswith("Z") and len(first["recorded_at"]) == 27
    # paging
    code, page, _ = run("log", "--after", "3", "--limit", "2")
    assert [json.loads(line) for line in page.split("\n") if line] == lines[3:5]
    for beyond in (2**63 - 1, 2**63, 10**30):  # past every position, and past what the database holds
        assert run("log", "--after", str(beyond), "--limit", str(10**30)) == (0, "", "")
    # the outsider's script, standard library only
    (tmp_path / "log.jsonl").write_text(out)
    checked = subprocess.run([sys.executable, SCRIPT, tmp_path / "log.jsonl"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout == f"{len(lines)} leaves recomputed, all match\n"
    changed = lines[4] | {"event": lines[4]["event"] | {"recorded_by": "mallory"}}
    (tmp_path / "bad.jsonl").write_text("".join(json.dumps(x) + "\n" for x in [*lines[:4], changed, *lines[5:]]))
    checked = subprocess.run([sys.executable, SCRIPT, tmp_path / "bad.jsonl"], capture_output=True, text=True)
    assert checked.returncode == 1 and "position 5" in checked.stderr


def test_keygen_checkpoint_status_and_verify(signed, run, db_path, monkeypatch):
    key = (signed / "key").read_text()
    assert stat.S_IMODE(os.stat(signed / "key").st_mode) == 0o600
    assert key.startswith("PRIVATE+KEY+tollbook+")
    name, key_hash, public = (signed / "key.pub").read_text().strip().split("+", 2)
    assert name == "tollbook" and len(key_hash) == 8 and base64.b64decode(public)[0] == 1
    origin, size, root, blank, signature, end = (signed / "cp2").read_text().split("\n")
    identity = sql(db_path, "SELECT store_id FROM tollbook_identity")[0][0]
    assert origin == f"tollbook/{identity}" and int(size) == event_count(db_path) and blank == "" and end == ""
    assert len(base64.b64decode(root)) == 32
    assert signature.startswith("\u2014 tollbook ") and len(base64.b64decode(signature.split()[2])) == 68
    code, out, err = run("status", "--format", "json")
    assert json.loads(out)["checkpoint"]["note"] == (signed / "cp2").read_text()
    assert f"last checkpoint: size {size}, root {root}" in run("status")[1]
    for checkpoints in ((), ("cp1",), ("cp1", "cp2")):
        assert verify(run, signed, *checkpoints)[1:] == (f"verified {size} events, root {root}\n", "")
    assert halves_verified(db_path, monkeypatch) == f"verified {size} events, root {root}"
    # the wrong key, and a checkpoint whose figures were edited
    assert run("keygen", "--out", signed / "other", "--name", "other")[0] == 0
    assert_found(run("verify", "--checkpoint", signed / "cp1", "--public-key", signed / "other.pub"),
                 "not signed by the given key")
    first = (signed / "cp1").read_text()
    first_size = first.split("\n")[1]  # the checkpoint's tree size, its second line
    (signed / "forged").write_text(first.replace(f"\n{first_size}\n", "\n3\n", 1))
    assert_found(verify(run, signed, "forged"), "checkpoint")
    assert run("verify", "--checkpoint", signed / "cp1")[0] == 2  # a checkpoint needs a key


def test_an_old_store_gets_its_tree_on_first_open(tmp_path, run):
    db = tmp_path / "store.db"
    shutil.copy(ROOT / "tests" / "data" / "store-aa66c0a" / "store.db", db)
    events = sql(str(db), "SELECT count(*) FROM stored_events")[0][0]
    code, out, err = run("verify", db=str(db))
    assert code == 0, err
    assert out.startswith(f"verified {events} events, root ")
    assert sql(str(db), "SELECT count(*) FROM tollbook_leaves")[0][0] == events
    assert run("--editor", "tester", "ingest", REVISIONS, db=str(db))[0] == 0
    assert run("verify", db=str(db))[1].startswith(f"verified {event_count(str(db))} events")
    with pytest.raises(Exception, match="append-only"):
        sql(str(db), "DELETE FROM stored_events WHERE rowid = 1")


def test_a_position_an_old_log_skipped_gets_a_leaf_of_its_own(db_path, run, tmp_path):
    """Before the tree, PostgreSQL's sequence skipped the number of every insert rolled back:
    such a store is made here by taking the tree away and the event at position 5 out."""
    assert run("--editor", "tester", "ingest", SEED)[0] == 0
    events = event_count(db_path)
    drop_guards(db_path)
    for table in ("tollbook_leaves", "tollbook_nodes", "tollbook_checkpoints", "tollbook_identity"):
        _ddl(db_path, f"DROP TABLE {table}")
    _delete(db_path, 5)
    code, out, err = run("verify")
    assert (code, err) == (0, "") and out.startswith(f"verified {events} events, root ")
    code, out, _ = run("log", "--after", "3", "--limit", "3")
    lines = [json.loads(line) for line in out.split("\n") if line]
    assert [line["position"] for line in lines] == [4, 5, 6]
    assert lines[1]["event"] == {"type": "PositionSkipped", "fields": {"position": 5}}
    (tmp_path / "log.jsonl").write_text(run("log")[1])
    checked = subprocess.run([sys.executable, SCRIPT, tmp_path / "log.jsonl"], capture_output=True, text=True)
    assert checked.stdout == f"{events} leaves recomputed, all match\n", checked.stderr
    assert run("--editor", "tester", "ingest", REVISIONS)[0] == 0
    assert run("tally")[0] == 0 and run("verify")[1].startswith(f"verified {event_count(db_path) + 1} events")
    drop_guards(db_path)  # a position skipped is no cover for an event removed beside it
    _delete(db_path, 6)
    assert_found(run("verify"), "position 6: the event there was removed")


def test_the_append_path_stores_what_the_mapper_would(tmp_path):
    """The append path writes each state itself (one dict for the state and the leaf): byte for
    byte what the pydantic mapper writes, and the leaf verify recomputes from it."""
    from test_crash import lines

    from tollbook.api import Tollbook
    from tollbook.store.eventstore import decode_state
    from tollbook.store.leaf import hash_of, recorded_text, stored

    with Tollbook(str(tmp_path / "s.db"), editor="tester") as book:
        book.ingest([*lines(2000), *SEED.read_text().splitlines(), *REVISIONS.read_text().splitlines()])
        mapper = book.store.mapper
        with book.store.transaction(write=False) as cursor:
            rows = [row for chunk in book.store.log.events(cursor, 0) for row in chunk]
        for _, aggregate_id, version, topic, state in rows:
            decoded = decode_state(aggregate_id, version, topic, bytes(state))
            at = decoded.pop("timestamp")
            loaded = mapper.to_domain_event(aggregate_id, version, topic, bytes(state))
            fresh = type(loaded)(**{name: getattr(loaded, name) for name in decoded})  # as a handler makes it
            assert stored(fresh, at, recorded_text(at)) == (
                mapper.row(fresh, at)[3], hash_of(aggregate_id, version, topic, bytes(state)))


# -- an insider with the database ---------------------------------------------------------------

def _figure(db: str) -> int:
    at = positions_of(db, "domain.claim:ClaimReported")[0]
    state = state_at(db, at)
    assert b'"low":4' in state
    set_state(db, at, state.replace(b'"low":4', b'"low":5000').replace(b'"high":4', b'"high":5000'))
    return at


def _recorded_by(db: str) -> int:
    at = positions_of(db, "domain.claim:ClaimCorrected")[0]
    set_state(db, at, state_at(db, at).replace(b'"recorded_by":"tester"', b'"recorded_by":"someone-else"'))
    return at


def _delete(db: str, at: int) -> int:
    table, column = log_table(db)
    _ddl(db, f"DELETE FROM {table} WHERE {column} = ?", (at,))
    return at


def _swap(db: str) -> int:
    table, column = log_table(db)
    a, b = positions_of(db, "domain.claim:ClaimReported")[1:3]
    _ddl(db, f"UPDATE {table} SET {column} = -1 WHERE {column} = ?", (a,))
    _ddl(db, f"UPDATE {table} SET {column} = ? WHERE {column} = ?", (a, b))
    _ddl(db, f"UPDATE {table} SET {column} = ? WHERE {column} = -1", (b,))
    return a


def _garbage(db: str) -> int:
    at = positions_of(db, "domain.incident:IncidentDefined")[1]
    set_state(db, at, b"\xff\xfe not an event {")
    return at


def _tree_too(db: str) -> int:
    """The figure edited, and its leaf hash made to match: the tree's nodes above it give it away."""
    from tollbook.store.leaf import hash_of

    at = _figure(db)
    table, column = log_table(db)
    [(aggregate_id, version, topic)] = sql(db, f"SELECT originator_id, originator_version, topic FROM {table}"
                                               f" WHERE {column} = ?", (at,))
    _ddl(db, "UPDATE tollbook_leaves SET leaf_hash = ? WHERE position = ?",
         (hash_of(aggregate_id, version, topic, state_at(db, at)), at))
    return at


TAMPERING = {
    "a figure": (_figure, "was changed"),
    "recorded_by": (_recorded_by, "was changed"),
    "a middle event deleted": (lambda db: _delete(db, 7), "was removed"),
    "the last event deleted": (lambda db: _delete(db, event_count(db)), "was removed"),
    "two events swapped": (_swap, "was changed or moved"),
    "garbage": (_garbage, "cannot be decoded"),
}


@pytest.mark.parametrize("how", TAMPERING)
def test_verify_finds_each_edit_of_the_log(signed, run, db_path, how, monkeypatch):
    tamper, says = TAMPERING[how]
    drop_guards(db_path)
    at = tamper(db_path)
    assert_found(verify(run, signed), f"position {at}: ")
    assert says in verify(run, signed)[2]
    assert halves_verified(db_path, monkeypatch) in verify(run, signed)[2]  # the same line
    assert_found(verify(run, signed, "cp1"), f"position {at}: ")
    assert run("log")[0] == 0  # the log can still be read out
    if how == "the last event deleted":  # the log ends before its tree: nothing more is appended
        code, out, err = run("--editor", "tester", "ingest", "-", input='{"kind": "incident", "incident_id": "new"}\n')
        assert (code, out) == (2, "") and "its tree has" in err and err.count("\n") == 1, err


def test_an_edited_tree_is_found_by_its_nodes_or_a_checkpoint(signed, run, db_path, jsonl, monkeypatch):
    # enough events for a stored node (level 8: 256 leaves)
    many = jsonl([{"kind": "incident", "incident_id": f"filler-{i}", "title": f"filler {i}"} for i in range(260)])
    assert run("--editor", "tester", "ingest", many)[0] == 0
    assert run("checkpoint", "--key", signed / "key", "--out", signed / "cp3")[0] == 0
    drop_guards(db_path)
    _tree_too(db_path)
    assert_found(verify(run, signed), "the tree's node over positions 1..256")
    assert halves_verified(db_path, monkeypatch) in verify(run, signed)[2]
    assert_found(verify(run, signed, "cp3"), "position 1: ")


def test_a_history_rewritten_from_scratch_fails_against_an_earlier_checkpoint(signed, run, db_path, stores, jsonl):
    rewritten = [json.loads(line) for line in SEED.read_text().splitlines() if line.strip()]
    rewritten[0]["claims"][0]["low"] = 40
    identity = sql(db_path, "SELECT store_id FROM tollbook_identity")[0][0]
    if is_postgres(db_path):
        from tollbook.store.pgstore import environment

        _ddl(db_path, f'DROP SCHEMA "{environment(db_path)["POSTGRES_SCHEMA"]}" CASCADE')
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(db_path + suffix).unlink(missing_ok=True)
    for path in (jsonl(rewritten), REVISIONS, REVISIONS):
        assert run("--editor", "tester", "ingest", path)[0] == 0
    assert verify(run, signed)[0] == 0  # consistent within itself
    assert_found(verify(run, signed, "cp1"), f"checkpoint {signed / 'cp1'} is of another log")
    drop_guards(db_path)  # the insider gives the new log the old one's identity too
    _ddl(db_path, "UPDATE tollbook_identity SET store_id = ?", (identity,))
    for name in ("cp1", "cp2"):
        assert_found(verify(run, signed, name), f"checkpoint {signed / name}")
        assert "is not extended by the log" in verify(run, signed, name)[2]


def test_a_checkpoint_of_another_store_is_named_as_such(signed, run, db_path, stores):
    """Its origin names another store: it does not pass as this one's, even where the other
    store's log begins as this one's does (the same documents, signed by the same key)."""
    other = stores.new("other")
    for path in (SEED, REVISIONS):
        assert run("--editor", "tester", "ingest", path, db=other)[0] == 0
    assert run("checkpoint", "--key", signed / "key", "--out", signed / "theirs", db=other)[0] == 0
    theirs = (signed / "theirs").read_text().split("\n", 1)[0]
    ours = sql(db_path, "SELECT store_id FROM tollbook_identity")[0][0]
    code, out, err = verify(run, signed, "theirs")
    assert_found((code, out, err), f"checkpoint {signed / 'theirs'} is of another log: its origin '{theirs}'"
                                   f" is not this store's ('tollbook/{ours}')")
    # an origin this store signed under (--origin) is one of its names
    assert run("checkpoint", "--key", signed / "key", "--origin", "example.org/syria", "--out", signed / "named")[0] == 0
    assert verify(run, signed, "named", "cp1")[0] == 0
    assert "or 'tollbook/" in verify(run, signed, "theirs")[2]


UPDATED = {"tollbook_leaves": "position", "tollbook_nodes": "level", "tollbook_checkpoints": "size"}


def test_the_guards_refuse_updates_deletes_and_truncation(signed, db_path):
    table, column = log_table(db_path)
    for target in guarded_tables(db_path):
        if not sql(db_path, f"SELECT count(*) FROM {target}")[0][0]:
            continue  # SQLite's triggers fire for each row: none here (the tree has no node yet)
        with pytest.raises(Exception, match="append-only"):
            _ddl(db_path, f"DELETE FROM {target}")
        if target != "tollbook_identity":
            with pytest.raises(Exception, match="append-only"):
                _ddl(db_path, f"UPDATE {target} SET {UPDATED.get(target, column)} = 0")
        if is_postgres(db_path):
            with pytest.raises(Exception, match="append-only"):
                _ddl(db_path, f"TRUNCATE {target}")
    assert event_count(db_path) == int((signed / "cp2").read_text().split("\n")[1])


def test_a_postgres_writer_with_insert_and_select_only(stores, tmp_path, run, jsonl):
    if not stores.is_postgres:
        pytest.skip("PostgreSQL privileges")
    from urllib.parse import urlsplit, urlunsplit

    from tollbook.store.pgstore import environment

    db = stores.new("owner")
    schema = environment(db)["POSTGRES_SCHEMA"]
    role = f"{schema}_writer"
    parts = urlsplit(db)
    writer = urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}"))
    log_tables = "tollbook_events, tollbook_leaves, tollbook_nodes, tollbook_checkpoints, tollbook_identity"
    with _admin(db) as connection:  # as the README's section "Verifying a Tollbook store" says
        connection.execute(f"DROP ROLE IF EXISTS {role}")
        connection.execute(f"CREATE ROLE {role} LOGIN")
        connection.execute(f'CREATE SCHEMA "{schema}"')
        connection.execute(f'GRANT USAGE, CREATE ON SCHEMA "{schema}" TO {role}')
        connection.execute(f'GRANT CREATE ON DATABASE "{parts.path[1:]}" TO {role}')  # CREATE SCHEMA IF NOT EXISTS
    assert run("status", db=writer)[0] == 0  # the writer makes the store's tables
    with _admin(db) as connection:
        connection.execute(f'SET search_path TO "{schema}"')
        for table in log_tables.split(", "):
            connection.execute(f"ALTER TABLE {table} OWNER TO CURRENT_USER")
        connection.execute("ALTER FUNCTION tollbook_append_only() OWNER TO CURRENT_USER")
        connection.execute(f"GRANT SELECT, INSERT ON {log_tables} TO {role}")
    try:
        assert run("--editor", "tester", "ingest", SEED, db=writer)[0] == 0
        assert run("--editor", "tester", "ingest", REVISIONS, db=writer)[0] == 0
        code, out, err = run("tally", "--format", "json", db=writer)
        assert code == 0, err
        assert json.loads(out)["total"]["incidents"] > 0
        assert run("rebuild", db=writer)[0] == 0
        assert run("keygen", "--out", tmp_path / "key")[0] == 0
        assert run("checkpoint", "--key", tmp_path / "key", db=writer)[0] == 0
        assert run("verify", db=writer)[0] == 0
        drop_guards(db)  # even without the triggers, the role may not rewrite
        import psycopg

        with psycopg.connect(host=parts.hostname, port=parts.port or 5432, dbname=parts.path[1:], user=role,
                             autocommit=True) as connection:
            connection.execute(f'SET search_path TO "{schema}"')
            for statement in ("DELETE FROM tollbook_events", "UPDATE tollbook_events SET topic = 'x'",
                              "TRUNCATE tollbook_events", "DELETE FROM tollbook_leaves"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    connection.execute(statement)
    finally:
        with _admin(db) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
            connection.execute(f'DROP OWNED BY {role}')
            connection.execute(f"DROP ROLE {role}")


# -- proof bundles -----------------------------------------------------------------------------

def test_prove_and_verify_proof(signed, run, tmp_path):
    bundle = tmp_path / "bundle.json"
    code, out, err = run("prove", "--incident", "sy-2018-09-08-abdeen", "--checkpoint", signed / "cp2",
                         "--out", bundle)
    assert code == 0, err
    data = json.loads(bundle.read_text())
    claims = data["history"]["claims"]
    assert claims and all(claim["incident_id"] == "sy-2018-09-08-abdeen" for claim in claims)
    size = int((signed / "cp2").read_text().split("\n")[1])
    for line in data["events"]:
        assert len(line["inclusion"]) <= size.bit_length()
    # no store at all
    code, out, err = run("verify-proof", bundle, "--public-key", signed / "key.pub", db=None, cwd=tmp_path)
    assert code == 0, err
    assert out.startswith(f"proved {len(data['events'])} events against checkpoint tollbook/")
    assert "White Helmets" in out
    # one claim only
    code, _, err = run("prove", "--incident", "sy-2018-09-08-abdeen", "--source", "white helmets", "--measure",
                       "killed", "--group", "children", "--checkpoint", signed / "cp1", "--out", tmp_path / "one.json")
    assert code == 0, err
    assert len(json.loads((tmp_path / "one.json").read_text())["history"]["claims"]) == 1

    def broken(change) -> tuple[int, str, str]:
        copy = json.loads(bundle.read_text())
        change(copy)
        (tmp_path / "broken.json").write_text(json.dumps(copy))
        return run("verify-proof", tmp_path / "broken.json", "--public-key", signed / "key.pub", db=None)

    claim_line = next(i for i, line in enumerate(data["events"]) if line["event"]["type"] == "ClaimReported")
    assert_found(broken(lambda b: b["events"][claim_line]["event"]["fields"].update(low=400)), "changed")
    assert_found(broken(lambda b: b["events"][claim_line].update(inclusion=b["events"][claim_line]["inclusion"][1:])),
                 "inclusion proof")
    assert_found(broken(lambda b: b["history"]["claims"][0]["entries"][0].update(low=400)), "does not follow")
    assert_found(broken(lambda b: b.update(checkpoint=b["checkpoint"].replace("\n\u2014", "\n\u2014x"))),
                 "checkpoint")
    revised = [i for i, line in enumerate(data["events"]) if line["event"]["aggregate_version"] == 1
               and any(other["event"]["aggregate_id"] == line["event"]["aggregate_id"]
                       and other["event"]["aggregate_version"] == 2 for other in data["events"])]
    if revised:
        assert_found(broken(lambda b: b["events"].pop(revised[0])), "not all there")
    assert_found(broken(lambda b: b.update(format="x")), "not a proof bundle")
    assert run("prove", "--incident", "x", "--checkpoint", signed / "key.pub", "--out", tmp_path / "b")[0] == 2


# -- kill -9 during ingest ----------------------------------------------------------------------

def test_killed_ingest_leaves_tree_and_log_in_step(db_path, tmp_path, run):
    from test_crash import EVENTS_GATE, INGEST_BATCH, kill_during, lines, log_events

    from tollbook.api import Tollbook

    path = tmp_path / "big.jsonl"
    path.write_text("".join(line + "\n" for line in lines(log_events())))
    Tollbook(db_path).close()
    kill_during(db_path, tmp_path, ("ingest", str(path), "--batch-size", str(INGEST_BATCH)),
                lambda: event_count(db_path), 10**9, gate=(log_table(db_path)[0], *EVENTS_GATE))
    stored = event_count(db_path)
    assert 0 < stored
    assert sql(db_path, "SELECT count(*), coalesce(max(position), 0) FROM tollbook_leaves")[0] == (stored, stored)
    code, out, err = run("verify")
    assert code == 0 and out.startswith(f"verified {stored} events"), err
    assert run("--editor", "tester", "ingest", path)[0] == 0
    assert run("verify")[1].startswith(f"verified {event_count(db_path)} events")


# -- the property ---------------------------------------------------------------------------------

@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=documents())
def test_checkpoints_stay_consistent_and_every_event_is_included(docs):
    from tollbook.api import Tollbook
    from tollbook.store import merkle
    from tollbook.store.leaf import hash_of
    from tollbook.store.log import TreeReader

    with tempfile.TemporaryDirectory() as folder, Tollbook(str(Path(folder) / "p.db"), editor="prop") as book:
        store, states = book.store, []
        for doc in docs:
            book.ingest([doc])
            with store.transaction(write=False) as cursor:
                size = store.log.size(cursor)
                states.append((size, TreeReader(cursor, size).root()))
        with store.transaction(write=False) as cursor:
            size = store.log.size(cursor)
            reader = TreeReader(cursor, size)
            rows = [row for chunk in store.log.events(cursor, 0) for row in chunk]
            for index, (old, old_root) in enumerate(states):
                for new, new_root in states[index:]:
                    proof = merkle.consistency_proof(TreeReader(cursor, new).subtree, old, new)
                    assert merkle.verify_consistency(old, new, old_root, new_root, proof)
            root = reader.root()
            for position, aggregate_id, version, topic, state in rows:
                proof = merkle.inclusion_proof(reader.subtree, position - 1, size)
                assert merkle.verify_inclusion(position - 1, size, hash_of(aggregate_id, version, topic, state),
                                               proof, root)
        assert book.verify() == (size, base64.b64encode(root).decode())


def test_vacuum_keeps_every_position_and_a_renumbered_log_fails_verify(signed, run, db_path):
    """SQLite numbers the events by rowid (the library's table has no INTEGER PRIMARY KEY), which
    VACUUM may renumber: it keeps them (the rows are copied in rowid order, with no gaps to
    close), and a log whose rows were numbered anew in another order fails verify."""
    if is_postgres(db_path):
        pytest.skip("SQLite's VACUUM")
    before = run("log", "--format", "jsonl")[1]
    sql(db_path, "VACUUM")
    assert run("log", "--format", "jsonl")[1] == before
    assert verify(run, signed, "cp1", "cp2")[0] == 0
    # rows copied in their primary key's order, as a copy that does not keep rowids numbers them
    drop_guards(db_path)
    sql(db_path, "CREATE TABLE copied AS SELECT originator_id, originator_version, topic, state FROM stored_events")
    sql(db_path, "DROP TABLE stored_events")
    sql(db_path, "CREATE TABLE stored_events (originator_id TEXT, originator_version INTEGER, topic TEXT,"
                 " state BLOB, PRIMARY KEY (originator_id, originator_version))")
    sql(db_path, "INSERT INTO stored_events SELECT * FROM copied ORDER BY originator_id, originator_version")
    assert_found(verify(run, signed), "the stored event was changed or moved")
