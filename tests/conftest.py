"""Shared fixtures for the contract tests.

- ``store_kind``: ``sqlite`` or ``postgres``; every test that uses a store runs on both. The
  PostgreSQL runs need ``TOLLBOOK_TEST_POSTGRES=postgresql://user@host:port/dbname`` (a server
  the tests may create schemas in) and are skipped, with that reason, without it.
- ``stores``: makes fresh stores of that kind: ``stores.new()`` is a SQLite path in
  ``tmp_path``, or a PostgreSQL URL with its own schema (``?schema=tb_test_<pid>_<n>``), which
  is dropped after the test (and any left by a crashed run, at the next run).
- ``db_path``: a fresh store's path or URL (nothing created yet).
- ``book``: ``tollbook.api.Tollbook`` on that store, recording as ``tester``.
- ``run``: the real command line, in a subprocess, through its entry point
  (``python -m tollbook``), with ``TOLLBOOK_DB`` set to ``db_path``; returns
  ``(code, stdout, stderr)``. ``run_many`` starts several at once (the CLI costs ~1 s each).
- ``jsonl``: writes documents (dicts or raw lines) to a file and returns its path.
- ``events``: the stored events of a store, read straight from its database.
- marker ``bad(document)``: see tests/test_bad_input.py.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import pytest

from tollbook.store.eventstore import state_json

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SEED = EXAMPLES / "seed-2018-09-09.jsonl"
REVISIONS = EXAMPLES / "illustrative-revisions.jsonl"

# RFC 3339 UTC with a Z, as Tollbook prints instants.
INSTANT = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z"
INSTANT_RE = re.compile(rf"^{INSTANT}$")


def now() -> str:
    """The current instant as RFC 3339 text with microseconds (the store's resolution)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lines_of(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def pytest_configure(config):
    config.addinivalue_line("markers", "bad(document): test_bad_input.py runs the CLI over this bad document")


# -- the two stores ------------------------------------------------------------------------

POSTGRES_VARIABLE = "TOLLBOOK_TEST_POSTGRES"
STORE_KINDS = ("sqlite", "postgres")
SKIP_POSTGRES = f"PostgreSQL tests need {POSTGRES_VARIABLE}=postgresql://user@host:port/dbname"


def postgres_base() -> str | None:
    """The server the PostgreSQL runs use (a URL without a schema), or None."""
    return os.environ.get(POSTGRES_VARIABLE) or None


def is_postgres(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


_schema_numbers = itertools.count(1)
_session_schemas: list[str] = []


def new_schema_url(base: str) -> tuple[str, str]:
    """A URL for a new, not yet created schema on ``base``'s server, and the schema's name."""
    schema = f"tb_test_{os.getpid()}_{next(_schema_numbers)}"
    parts = urlsplit(base)
    return urlunsplit(parts._replace(query=f"schema={schema}")), schema


def _admin(base: str):
    """A connection to ``base`` in autocommit mode, for making and dropping test schemas."""
    import psycopg

    from tollbook.store.pgstore import environment

    env = environment(base)
    return psycopg.connect(dbname=env["POSTGRES_DBNAME"], host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"],
                           user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"], autocommit=True,
                           connect_timeout=10)


def drop_schemas(schemas: list[str]) -> None:
    base = postgres_base()
    if not schemas or not base:
        return
    with _admin(base) as connection:
        connection.execute("SET lock_timeout = '20s'")
        for schema in schemas:
            try:
                connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            except Exception as error:  # reported, and swept at the next run
                print(f"could not drop test schema {schema}: {error}", file=sys.stderr)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pytest_sessionstart(session):
    """Sweeps the schemas of earlier runs that died before they could drop them."""
    base = postgres_base()
    if not base:
        return
    try:
        with _admin(base) as connection:
            names = [row[0] for row in connection.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tb_test_%'").fetchall()]
    except Exception as error:
        pytest.exit(f"{POSTGRES_VARIABLE}={base}: cannot reach the server: {error}", returncode=3)
    stale = [name for name in names if (pid := name.split("_")[2]).isdigit() and not _pid_alive(int(pid))]
    drop_schemas(stale)


def pytest_sessionfinish(session, exitstatus):
    drop_schemas(_session_schemas)


class Stores:
    """Fresh stores of one kind for one test (see the module's docstring)."""

    def __init__(self, kind: str, folder: Path, schemas: list[str]):
        self.kind = kind
        self.folder = folder
        self.schemas = schemas
        self._names = itertools.count()

    @property
    def is_postgres(self) -> bool:
        return self.kind == "postgres"

    def new(self, name: str | None = None) -> str:
        if self.kind == "sqlite":
            return str(self.folder / f"{name or f'store-{next(self._names)}'}.db")
        url, schema = new_schema_url(postgres_base())
        self.schemas.append(schema)
        return url


@pytest.fixture(params=STORE_KINDS)
def store_kind(request) -> str:
    if request.param == "postgres" and not postgres_base():
        pytest.skip(SKIP_POSTGRES)
    return request.param


@pytest.fixture
def stores(store_kind: str, tmp_path: Path):
    schemas: list[str] = []
    yield Stores(store_kind, tmp_path, schemas)
    drop_schemas(schemas)


def session_stores(kind: str, folder: Path) -> Stores:
    """Stores for a module- or session-scoped fixture: PostgreSQL schemas dropped at the end of the run."""
    return Stores(kind, folder, _session_schemas)


@pytest.fixture
def db_path(stores: Stores) -> str:
    return stores.new("t")


@pytest.fixture
def book(db_path: str):
    from tollbook.api import Tollbook

    tollbook = Tollbook(db_path, editor="tester")
    yield tollbook
    tollbook.close()


def _env(db: str | None, env: dict[str, str] | None) -> dict[str, str]:
    merged = {k: v for k, v in os.environ.items() if not k.startswith("TOLLBOOK_")}
    if db is not None:
        merged["TOLLBOOK_DB"] = db
    merged.update(env or {})
    return merged


class Runner:
    """Runs ``python -m tollbook ARGS…`` against the test's store."""

    def __init__(self, db: str, cwd: Path):
        self.db = db
        self.cwd = cwd

    def _popen(self, args, *, input, env, db, cwd):
        return subprocess.Popen(
            [sys.executable, "-m", "tollbook", *map(str, args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=_env(self.db if db is ... else db, env), cwd=str(cwd or self.cwd),
        ), input

    @staticmethod
    def _finish(started) -> tuple[int, str, str]:
        process, input = started
        data = input.encode() if isinstance(input, str) else input
        out, err = process.communicate(data, timeout=120)
        return process.returncode, out.decode(), err.decode()

    def __call__(self, *args, input: str | bytes | None = None, env: dict[str, str] | None = None,
                 db: str | None = ..., cwd: Path | None = None) -> tuple[int, str, str]:
        """``db=None`` leaves ``TOLLBOOK_DB`` unset; ``env`` adds variables."""
        return self._finish(self._popen(args, input=input, env=env, db=db, cwd=cwd))

    def many(self, calls: list, **options) -> list[tuple[int, str, str]]:
        """Several calls at once. Each is a tuple of arguments, or a dict with ``args`` and any of
        ``input``, ``env``, ``db``, ``cwd`` (else ``options``)."""
        started = []
        for call in calls:
            call = call if isinstance(call, dict) else {"args": call}
            merged = options | call
            started.append(self._popen(merged["args"], input=merged.get("input"), env=merged.get("env"),
                                       db=merged.get("db", ...), cwd=merged.get("cwd")))
        return [self._finish(s) for s in started]


def run_here(db: str, *args) -> tuple[int, str, str]:
    """The command line run in this process, as its entry point runs it (``tollbook.cli.main``,
    the exit status from its SystemExit), with ``TOLLBOOK_DB`` set to ``db`` and no other
    ``TOLLBOOK_`` variable: ``(code, stdout, stderr)``. For the tests that run it hundreds of times."""
    import contextlib
    import io

    from tollbook.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_argv = dict(os.environ), sys.argv
    os.environ.clear()
    os.environ.update(_env(db, None))
    sys.argv = ["tollbook", *map(str, args)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                code = 0
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else 1
    finally:
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def run(db_path: str, tmp_path: Path) -> Runner:
    return Runner(db_path, tmp_path)


@pytest.fixture
def run_many(run: Runner):
    return run.many


@pytest.fixture
def jsonl(tmp_path: Path):
    counter = iter(range(10_000))

    def write(documents, name: str | None = None) -> Path:
        path = tmp_path / (name or f"docs-{next(counter)}.jsonl")
        text = "".join((d if isinstance(d, str) else json.dumps(d)) + "\n" for d in documents)
        path.write_text(text)
        return path

    return write


def sql(db: str, statement: str, params: tuple = ()) -> list[tuple]:
    """Runs one SQL statement (``?`` placeholders) on a store, SQLite file or PostgreSQL URL,
    outside Tollbook; returns its rows."""
    if not is_postgres(db):
        with sqlite3.connect(db) as connection:
            return connection.execute(statement, params).fetchall()
    from tollbook.store.pgstore import environment, qmark

    schema = environment(db)["POSTGRES_SCHEMA"]
    with _admin(db) as connection:
        connection.execute(f'SET search_path TO "{schema}"')
        return connection.execute(qmark(statement), params or None).fetchall()


def log_table(db: str) -> tuple[str, str]:
    """The events table of a store and its column of notification ids (log order)."""
    return ("tollbook_events", "notification_id") if is_postgres(db) else ("stored_events", "rowid")


def stored_events(path: str) -> list[dict]:
    """Every stored event, in log order: ids, topic and state (with its ``timestamp``)."""
    table, order = log_table(path)
    rows = sql(path, f"SELECT originator_id, originator_version, topic, state FROM {table} ORDER BY {order}")
    return [{"originator_id": UUID(str(o)).hex, "originator_version": v, "topic": t, "state": json.loads(state_json(bytes(s)))}
            for o, v, t, s in rows]


def event_count(path: str) -> int:
    return sql(path, f"SELECT count(*) FROM {log_table(path)[0]}")[0][0]


def signature(event: dict) -> str:
    """What an event says, without when or by whom it was recorded."""
    state = {k: v for k, v in event["state"].items() if k not in ("timestamp", "recorded_by")}
    return json.dumps([event["originator_id"], event["originator_version"], event["topic"], state], sort_keys=True)


@pytest.fixture
def events():
    return stored_events


def strip_recorded(answer):
    """An answer with recorded_at / recorded_by removed, to compare two stores' contents."""
    if isinstance(answer, dict):
        return {k: strip_recorded(v) for k, v in answer.items() if k not in ("recorded_at", "recorded_by")}
    if isinstance(answer, list):
        return [strip_recorded(v) for v in answer]
    return answer


def rows(answer: dict) -> dict:
    """A tally's rows as {key: (low, high, best, incidents)}."""
    return {r["key"]: (r["low"], r["high"], r["best"], r["incidents"]) for r in answer["rows"]}
