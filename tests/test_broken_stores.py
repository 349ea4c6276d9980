"""CONTRACT 3: a store that cannot be used is one line on stderr and exit 2, for every command;
a full disk mid-ingest is one line, exit 1, how far it got, and nothing half-stored.

Every command of the CLI runs, in a real subprocess, against each kind of broken store: a folder,
a text file, someone else's SQLite file, a truncated file, pages zeroed or overwritten in the
middle, a read-only file, folder and file system, PostgreSQL without its driver, and a server
that does not answer. Read-only places are tried as an unprivileged user (root ignores file
modes); file systems (a read-only mount, a full disk) as small tmpfs mounts this test makes,
when it runs as root.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SEED, Runner, _env

GED = ROOT / "tests" / "data" / "store-aa66c0a" / "ged-20.csv"
GED_RELEASE = ROOT / "examples" / "ucdp-ged-19.1" / "ged191-myanmar-bangladesh.csv"
COMMANDS = [
    ("ingest", str(SEED)),
    ("tally",),
    ("tally", "--by", "admin1"),
    ("history",),
    ("diff", "--from", "2000-01-01", "--to", "2100-01-01"),
    ("rebuild",),
    ("import", "ucdp", str(GED), "--release", "20.1", "--published-at", "2020-06-01"),
    ("import", "acled-deletions", str(Path(__file__).parent / "data" / "acled-deletions.csv")),
    ("project",),
    ("status",),
    ("log",),
    ("verify",),
]
IS_ROOT = os.geteuid() == 0


def one_line(code: int, err: str, expected_code: int = 2) -> str:
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert code == expected_code and len(lines) == 1 and lines[0].startswith("tollbook: "), (code, err)
    return lines[0]


def every_command_refuses(runner: Runner, marker: str) -> None:
    """Every command exits 2 with one line that says ``marker``."""
    for command, (code, _, err) in zip(COMMANDS, runner.many(COMMANDS), strict=True):
        assert marker in one_line(code, err), command


@pytest.fixture(scope="module")
def good_store(tmp_path_factory) -> Path:
    """A store with the seed and a UCDP release in it, projected: copied by each test."""
    path = tmp_path_factory.mktemp("good") / "good.db"
    runner = Runner(str(path), path.parent)
    assert runner("ingest", SEED)[0] == 0
    assert runner("import", "ucdp", GED, "--release", "20.1", "--published-at", "2020-06-01")[0] == 0
    assert runner("tally")[0] == 0
    return path


def copy(good_store: Path, to: Path) -> Path:
    to.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(good_store, to)
    return to


def pages(path: Path, table: str, kind: str = "leaf") -> list[int]:
    with sqlite3.connect(path) as connection:
        return [page for (page,) in connection.execute(
            "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = ? ORDER BY pageno", (table, kind))]


def overwrite(path: Path, page_numbers: list[int], data: bytes | None = None) -> None:
    size = 4096
    with open(path, "r+b") as file:
        for number in page_numbers:
            file.seek((number - 1) * size)
            file.write(data or bytes(size))


def damaged(name: str, good: Path, tmp: Path) -> tuple[Path, str]:
    """A broken copy of the good store (or a thing that is no store), and what the line must say."""
    path = tmp / "s.db"
    if name == "folder":
        path.mkdir()
        return path, "a folder"
    if name == "text file":
        path.write_text("incident_id,killed\nx,3\n")
        return path, "not a SQLite file"
    if name == "SQLite file of another program":
        with sqlite3.connect(path) as connection:
            connection.execute("CREATE TABLE contacts (name TEXT)")
        return path, "not a Tollbook store"
    copy(good, path)
    if name == "truncated":
        os.truncate(path, path.stat().st_size // 2)
        return path, "cut short"
    if name == "zeroed pages":
        overwrite(path, list(range(10, 40)))
    elif name == "garbage pages":
        overwrite(path, list(range(2, 30, 3)), bytes(range(256)) * 16)
    elif name == "zeroed schema":
        overwrite(path, [1], b"SQLite format 3\x00" + bytes(4080))
    return path, "damaged"


@pytest.mark.parametrize("name", ["folder", "text file", "SQLite file of another program", "truncated",
                                  "zeroed pages", "garbage pages", "zeroed schema"])
def test_every_command_refuses_a_broken_sqlite_store_in_one_line(good_store, tmp_path, name):
    path, marker = damaged(name, good_store, tmp_path)
    before = path.read_bytes() if path.is_file() else None
    every_command_refuses(Runner(str(path), tmp_path), marker)
    if before is not None:
        assert path.read_bytes() == before  # nothing written into what is not a store


def test_damage_found_mid_command_is_one_line(good_store, tmp_path):
    """The log's pages damaged, the rest whole: the store opens, and what reads the log fails
    in one line (exit 2) when it gets there."""
    path = copy(good_store, tmp_path / "s.db")
    overwrite(path, pages(path, "stored_events"))
    runner = Runner(str(path), tmp_path)
    assert "the store failed: the SQLite file is damaged" in one_line(*runner("rebuild")[::2])
    for command, (code, _, err) in zip(COMMANDS, runner.many(COMMANDS), strict=True):
        assert code in (0, 1) and "Traceback" not in err or one_line(code, err), command


def test_an_event_deleted_beside_tollbook_is_one_line_where_history_reads_it(good_store, tmp_path):
    """History and diff read an entry's words from its event in the log: an event deleted
    with the triggers dropped, its read models' rows left, is one line naming its position."""
    path = copy(good_store, tmp_path / "s.db")
    with sqlite3.connect(path) as connection:
        position, incident_id = connection.execute(
            "SELECT position, incident_id FROM tb_entries ORDER BY position LIMIT 1").fetchone()
        connection.execute("DROP TRIGGER tollbook_no_delete_stored_events")
        connection.execute("DELETE FROM stored_events WHERE rowid = ?", (position,))
    runner = Runner(str(path), tmp_path)
    for command in (("history", "--incident", incident_id), ("diff", "--from", "2000-01-01", "--to", "2100-01-01")):
        assert f"the read models hold an entry at position {position}, which the log does not" in one_line(
            *runner(*command)[::2]), command


# -- read-only places ----------------------------------------------------------------------------

class Unprivileged(Runner):
    """Runs the CLI as user nobody: root writes read-only files anyway."""

    def _popen(self, args, *, input, env, db, cwd):
        command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                   sys.executable, "-m", "tollbook", *map(str, args)]
        return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=_env(self.db if db is ... else db, env), cwd="/tmp"), input


def _open_to_all(folder: Path) -> None:
    for parent in [folder, *folder.parents]:
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o755)


@pytest.mark.parametrize("place", ["file", "folder"])
def test_a_read_only_store_is_one_line_for_every_command(good_store, tmp_path, place):
    if not IS_ROOT or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run as an unprivileged user")
    folder = tmp_path / place
    path = copy(good_store, folder / "s.db")
    _open_to_all(folder)
    if place == "file":
        folder.chmod(0o777)
        path.chmod(0o444)
    else:
        path.chmod(0o666)
        folder.chmod(0o555)
    every_command_refuses(Unprivileged(str(path), tmp_path), "read-only")
    folder.chmod(0o755)


@contextlib.contextmanager
def tmpfs(folder: Path, size: str):
    """A tmpfs of ``size`` mounted at ``folder``, unmounted after."""
    if not IS_ROOT:
        pytest.skip("needs root to mount a small file system")
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_store_on_a_read_only_file_system_is_one_line_for_every_command(good_store, tmp_path):
    with tmpfs(tmp_path / "mnt", "4m") as mount:
        path = copy(good_store, mount / "s.db")
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        every_command_refuses(Runner(str(path), tmp_path), "read-only file system")


# -- a full disk ---------------------------------------------------------------------------------

def documents(count: int) -> str:
    return "".join(json.dumps({
        "kind": "report", "report_id": f"r-{i}", "published_at": "2020-01-01", "title": "t" * 100,
        "incidents": [{"incident_id": f"i-{i}", "title": "x" * 200, "country": "C"}],
        "claims": [{"incident_id": f"i-{i}", "source": "S", "measure": "killed", "low": 1, "quote": "q" * 300}],
    }) + "\n" for i in range(count))


def test_a_full_disk_mid_ingest_is_one_line_exit_1_and_nothing_half_stored(tmp_path):
    lines = tmp_path / "many.jsonl"
    lines.write_text(documents(4000))  # about 3.6 MB: more than the disk holds
    with tmpfs(tmp_path / "mnt", "2m") as mount:
        runner = Runner(str(mount / "s.db"), tmp_path)
        code, out, err = runner("ingest", lines, "--batch-size", "1500", "--format", "json")
        line = one_line(code, err, expected_code=1)
        assert "the disk is full" in line and "stopped after line" in line
        summary = json.loads(out)
        accepted = summary["accepted"]
        through = int(line.split("stopped after line ")[1].split(":")[0])
        assert 0 < accepted == through == summary["stopped_after_line"] < 4000
        # Each document whole: its receipt, incident and claim, or nothing of it.
        with sqlite3.connect(mount / "s.db") as connection:
            topics = dict(connection.execute("SELECT topic, count(*) FROM stored_events GROUP BY topic"))
        assert topics == {"domain.document:DocumentReceived": accepted, "domain.incident:IncidentDefined": accepted,
                          "domain.claim:ClaimReported": accepted}
        # With room again the rest goes in, and every command answers.
        subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)
        code, out, err = runner("ingest", lines)
        assert (code, out.strip()) == (0, f"accepted {4000 - accepted}, unchanged {accepted}, rejected 0"), err
        code, out, err = runner("tally", "--format", "json")
        assert code == 0 and len(json.loads(out)["rows"]) == 4000


def test_a_full_disk_mid_import_is_one_line_exit_1_and_the_summary_says_how_far(tmp_path):
    with tmpfs(tmp_path / "mnt", "3m") as mount:
        runner = Runner(str(mount / "s.db"), tmp_path)
        release = ("import", "ucdp", GED_RELEASE, "--release", "19.1", "--published-at", "2019-06-14")
        code, out, err = runner(*release, "--format", "json")
        line = one_line(code, err, expected_code=1)
        assert "the disk is full" in line and ("stopped before storing anything" in line or "stopped after line" in line)
        imported = json.loads(out)["imported"]
        assert 0 <= imported < 3194
        # The rows counted as imported are stored whole (receipt, incident, claims), no other.
        with sqlite3.connect(mount / "s.db") as connection:
            topics = dict(connection.execute("SELECT topic, count(*) FROM stored_events GROUP BY topic"))
        assert topics.get("domain.document:DocumentReceived", 0) == topics.get("domain.incident:IncidentDefined", 0) \
            == imported
        assert "domain.release:ReleaseRecorded" not in topics  # no receipt of a file not wholly imported
        subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)
        code, out, err = runner(*release)
        assert (code, err) == (0, "") and f"3194 rows: imported {3194 - imported}, unchanged {imported}" in out
        assert runner("tally", "--by", "year")[0] == 0


# -- PostgreSQL ------------------------------------------------------------------------------------

def test_postgresql_without_the_driver_names_the_install_command(tmp_path):
    """psycopg made unimportable, as when the postgres extra is not installed."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['psycopg'] = None\n")
    runner = Runner("postgresql://postgres@127.0.0.1:5432/test", tmp_path)
    results = runner.many([{"args": command, "env": {"PYTHONPATH": str(blocker)}} for command in COMMANDS])
    for command, (code, _, err) in zip(COMMANDS, results, strict=True):
        assert "pip install 'tollbook[postgres]'" in one_line(code, err), command


def test_a_postgresql_server_that_does_not_answer_is_one_line(tmp_path):
    runner = Runner("postgresql://postgres:secret@127.0.0.1:1/test", tmp_path)
    commands = [("ingest", str(SEED)), ("tally",), ("status",)]
    for command, (code, _, err) in zip(commands, runner.many(commands), strict=True):
        line = one_line(code, err)
        assert "127.0.0.1:1" in line and "secret" not in line, command
