"""The command line (CONTRACT 5) through its real entry point, ``python -m tollbook``, in a subprocess.

Stores are filled through the Python API where the command itself is not under test (the CLI
costs about a second a call); its answers are then compared with the API's.
"""

from __future__ import annotations

import csv
import getpass
import io
import json
import re

import pytest

from conftest import INSTANT, INSTANT_RE, REVISIONS, SEED, event_count, lines_of, now, rows

ARDIN = "nv-2024-05-10-ardin-market"
VO = "vo-ardin-shelling-0510"
GROUPINGS = ("incident", "country", "admin1", "admin2", "source", "perpetrator", "day", "month", "year")
HOSPITALS = ("--measure", "facilities_damaged", "--group", "hospitals")


def ok(result: tuple[int, str, str]) -> str:
    code, out, err = result
    assert code == 0 and err == "", (code, out, err)
    return out


def as_json(result: tuple[int, str, str]):
    return json.loads(ok(result))


@pytest.fixture
def seeded(book):
    assert book.ingest(SEED.open("rb")).accepted == 2
    return book


@pytest.fixture
def steps(book):
    """The revisions, one line at a time; ``stamps[i]`` lies after line i and before line i+1."""
    stamps = [now()]
    for line in lines_of(REVISIONS):
        assert book.ingest([line]).accepted == 1
        stamps.append(now())
    return book, stamps


# -- ingest ----------------------------------------------------------------------------------

def test_ingest_table_json_and_stdin(run_many, jsonl, db_path, book):
    # Two writers at once: a file with the table summary, and stdin with the JSON summary.
    table, js = run_many([("ingest", SEED), {"args": ("ingest", "-", "--format", "json"),
                                             "input": REVISIONS.read_bytes()}])
    assert ok(table).strip() == "accepted 2, unchanged 0, rejected 0"
    assert as_json(js) == {"accepted": 6, "unchanged": 0, "rejected": []}
    assert rows(book.tally()) == {"sy-2018-09-08-abdeen": (4, 4, 4, 1), "sy-2018-09-08-qamishli-clash": (18, 18, 18, 1),
                                  ARDIN: (9, 10, 9, 1)}
    count = event_count(db_path)
    # Rejections: exit 1; JSON names each line and its error; an identical document is unchanged.
    bad = jsonl(['{"kind": "incident", "incident_id": "x1"}',
                 '{"kind": "report", "report_id": "b", "published_at": "2024-01-01", "claims": '
                 '[{"incident_id": "x1", "source": "S", "measure": "killed", "low": -1}]}',
                 "", "{oops", SEED.read_text().splitlines()[0]])
    code, out, err = run_many([("ingest", bad, "--format", "json")])[0]
    assert code == 1 and "Traceback" not in err
    answer = json.loads(out)
    assert answer["accepted"] == 1 and answer["unchanged"] == 1
    assert [r["line"] for r in answer["rejected"]] == [2, 4]
    assert answer["rejected"][0]["error"] == "claim 1: low: must be >= 0"
    assert answer["rejected"][1]["error"].startswith("malformed JSON")
    assert event_count(db_path) == count + 2  # the incident and its receipt


# -- tally -----------------------------------------------------------------------------------

def test_tally_formats(seeded, run_many):
    table, js, csv_text = run_many([("tally",), ("tally", "--format", "json"), ("tally", "--format", "csv")])
    answer = as_json(js)
    assert answer == seeded.tally()
    assert answer["rows"][0] == {"key": "sy-2018-09-08-abdeen", "low": 4, "high": 4, "best": 4, "incidents": 1,
                                 "sources": ["White Helmets"]}
    lines = ok(table).splitlines()
    header = lines[0]
    assert "killed / all" in header and "incident" in header and "conservative" in header
    assert re.search(rf"as of now \({INSTANT}\)", header), header
    assert "known at any time" in header
    assert lines[1].split() == ["key", "low", "high", "best", "incidents", "sources"]
    assert lines[2].split() == ["sy-2018-09-08-abdeen", "4", "4", "4", "1", "White", "Helmets"]
    assert lines[3].split() == ["sy-2018-09-08-qamishli-clash", "18", "18", "18", "1", "EA", "WorldView"]
    assert lines[4].split() == ["total", "22", "22", "22", "2"]
    parsed = list(csv.reader(io.StringIO(ok(csv_text))))
    assert parsed == [["key", "low", "high", "best", "incidents", "sources"],
                      ["sy-2018-09-08-abdeen", "4", "4", "4", "1", "White Helmets"],
                      ["sy-2018-09-08-qamishli-clash", "18", "18", "18", "1", "EA WorldView"]]


def test_tally_every_by(seeded, run_many):
    results = run_many([("tally", *HOSPITALS, "--by", by, "--format", "json") for by in GROUPINGS])
    answers = {by: as_json(result) for by, result in zip(GROUPINGS, results)}
    for by, answer in answers.items():
        assert answer["by"] == by
        assert answer == seeded.tally(by=by, measure="facilities_damaged", group="hospitals")
        assert answer["total"] == {"low": 5, "high": 5, "best": 5, "incidents": 3}
    keys = {by: [r["key"] for r in answer["rows"]] for by, answer in answers.items()}
    assert keys == {
        "incident": ["sy-2018-09-08-hass-hospital", "sy-2018-09-09-lataminah-hospital",
                     "sy-2018-09-idlib-hama-medical-facilities"],
        "country": ["Syria"], "admin1": ["Hama", "Idlib"], "admin2": [None], "source": ["EA WorldView", "UOSSM"],
        "perpetrator": ["Russia / Assad regime", None], "day": ["2018-09-08", "2018-09-09", None],
        "month": ["2018-09", None], "year": ["2018", None],
    }


def test_tally_point_options(steps, run_many):
    book, s = steps
    known = "2024-05-12T02:00:00+02:00"  # 2024-05-12T00:00:00Z
    calls = [
        ("tally", "--incident", VO, "--format", "json"),
        ("tally", "--incident", VO, "--as-of", s[5], "--format", "csv"),
        ("tally", "--as-of", s[2], "--known-at", "2024-05-10T12:00:00Z", "--format", "json"),
        ("tally", "--known-at", known, "--policy", "highest", "--format", "json"),
        ("tally", "--as-of", s[6], "--known-at", known, "--policy", "latest", "--by", "day"),
    ]
    incident, before_merge, corrected, highest, table = run_many(calls)
    assert rows(as_json(incident)) == {ARDIN: (9, 10, 9, 1)}
    assert list(csv.reader(io.StringIO(ok(before_merge))))[1] == [VO, "10", "10", "10", "1", "Valley Observers"]
    answer = as_json(corrected)
    assert (answer["as_of"], answer["known_at"]) == (s[2], "2024-05-10T12:00:00Z")
    assert rows(answer) == {ARDIN: (6, 6, 6, 1)}  # the correction was recorded after s[2]
    answer = as_json(highest)
    assert (answer["policy"], answer["known_at"]) == ("highest", "2024-05-12T00:00:00Z")
    assert rows(answer) == {ARDIN: (9, 11, 11, 1)}
    lines = ok(table).splitlines()
    assert f"as of {s[6]} (recorded)" in lines[0] and "known at 2024-05-12T00:00:00Z (published)" in lines[0]
    assert "by day" in lines[0] and "policy latest" in lines[0]
    assert lines[2].split()[:5] == ["2024-05-10", "9", "11", "10", "1"]
    assert lines[3].split() == ["total", "9", "11", "10", "1"]


# -- history ---------------------------------------------------------------------------------

def test_history(steps, run_many):
    book, s = steps
    calls = [
        ("history", "--format", "json"),
        ("history", "--incident", VO, "--source", " civil DEFENCE ", "--measure", "killed", "--group", "all",
         "--as-of", s[6], "--known-at", "2024-05-10T12:00:00Z", "--format", "json"),
        ("history", "--incident", ARDIN, "--measure", "killed", "--source", "Valley Health Office"),
    ]
    everything, filtered, table = run_many(calls)
    answer = as_json(everything)
    assert answer == book.history()
    assert answer["as_of"] is None and answer["known_at"] is None
    assert len(answer["claims"]) == 4
    answer = as_json(filtered)
    assert (answer["as_of"], answer["known_at"]) == (s[6], "2024-05-10T12:00:00Z")
    [claim] = answer["claims"]
    assert (claim["incident_id"], claim["source"], claim["measure"], claim["group"]) == (
        ARDIN, "Civil Defence", "killed", "all")
    assert [(e["kind"], e["version"], e["low"]) for e in claim["entries"]] == [
        ("reported", 1, 6), ("reported", 2, 9), ("corrected", 1, 8)]
    assert all(INSTANT_RE.match(e["recorded_at"]) and INSTANT_RE.match(e["published_at"]) for e in claim["entries"])
    assert claim["current"] == {"counting": True, "version": 1, "low": 8, "high": 8, "best": None}
    text = ok(table)
    lines = text.splitlines()
    assert lines[0].startswith("history") and re.search(rf"as of now \({INSTANT}\)", lines[0])
    assert "known at any time" in lines[0]
    assert "Valley Health Office" in text and "Civil Defence" not in text
    assert "retracted" in text and "the figure included victims of a separate strike" in text
    assert "not counting" in text


# -- diff ------------------------------------------------------------------------------------

def test_diff(steps, run_many):
    book, s = steps
    js, table, known = run_many([
        ("diff", "--from", s[1], "--to", s[4], "--format", "json"),
        ("diff", "--from", s[5], "--to", s[6]),
        ("diff", "--from", s[2], "--to", s[3], "--known-at", "2024-05-10T12:00:00Z", "--format", "json"),
    ])
    answer = as_json(js)
    assert answer == book.diff(s[1], s[4])
    assert (answer["from"], answer["to"], answer["known_at"]) == (s[1], s[4], None)
    [change] = answer["changes"]
    assert (change["incident_id"], change["before"], change["after"]) == (
        ARDIN, {"low": 6, "high": 6, "best": 6}, {"low": 9, "high": 9, "best": 9})
    assert [e["kind"] for e in change["entries"]] == ["reported", "reported", "corrected", "retracted"]
    assert [e["recorded_at"] for e in change["entries"]] == sorted(e["recorded_at"] for e in change["entries"])
    assert all(s[1] < e["recorded_at"] <= s[4] for e in change["entries"])
    lines = ok(table).splitlines()
    assert s[5] in lines[0] and s[6] in lines[0] and "known at any time" in lines[0]
    assert f"{ARDIN}: 9 (best 9) → 9–10 (best 9)" in lines and f"{VO}: 10 (best 10) → —" in lines
    answer = as_json(known)
    assert answer["known_at"] == "2024-05-10T12:00:00Z"
    assert [(c["before"]["low"], c["after"]["low"]) for c in answer["changes"]] == [(6, 8)]


# -- rebuild ---------------------------------------------------------------------------------

def test_rebuild(steps, run, db_path):
    book, s = steps
    book.ingest(SEED.open("rb"))

    def answers():
        return [book.tally(), book.tally(as_of=s[3]), book.tally(by="admin1", known_at="2024-05-12T00:00:00Z"),
                book.tally(by="source", measure="facilities_damaged", group="hospitals"),
                book.history(), book.history(as_of=s[5], known_at="2024-05-11T00:00:00Z"),
                book.diff(s[0], s[6]), book.diff(s[5], s[6])]

    before = answers()
    out = ok(run("rebuild"))
    assert re.fullmatch(rf"rebuilt every projection from {event_count(db_path)} events\n", out), out
    assert answers() == before
    assert as_json(run("tally", "--as-of", s[5], "--format", "json")) == book.tally(as_of=s[5])


# -- the store and the editor ------------------------------------------------------------------

def test_db_option_and_environment(run_many, tmp_path, stores):
    (tmp_path / "cwd").mkdir()
    env_db, option_db = stores.new("env"), stores.new("option")  # SQLite paths or PostgreSQL URLs
    for result in run_many([
        {"args": ("--db", option_db, "ingest", SEED), "db": env_db},  # --db wins over TOLLBOOK_DB
        {"args": ("ingest", REVISIONS), "db": env_db},  # TOLLBOOK_DB alone
        {"args": ("ingest", SEED), "db": None, "cwd": tmp_path / "cwd"},  # neither: ./tollbook.db
    ]):
        ok(result)
    assert event_count(option_db) == event_count(str(tmp_path / "cwd" / "tollbook.db"))
    from tollbook.api import Tollbook

    with Tollbook(option_db) as by_option, Tollbook(env_db) as by_env:
        assert by_option.tally()["total"]["low"] == 22
        assert [r["key"] for r in by_env.tally()["rows"]] == [ARDIN]


def test_editor(run_many, jsonl, book):
    def doc(n: int, **extra) -> dict:  # a report on its own incident
        return {"kind": "report", "report_id": f"r{n}", "published_at": "2024-01-01", **extra,
                "incidents": [{"incident_id": f"i{n}"}],
                "claims": [{"incident_id": f"i{n}", "source": "S", "measure": "killed", "low": n}]}

    # Four writers at once on one store (they touch different records).
    for result in run_many([
        ("--editor", "ana", "ingest", jsonl([doc(0)])),
        {"args": ("ingest", jsonl([doc(1)])), "env": {"TOLLBOOK_EDITOR": "bo"}},
        {"args": ("--editor", "cy", "ingest", jsonl([doc(2)])), "env": {"TOLLBOOK_EDITOR": "bo"}},
        # A document cannot set it: not at its top (an unknown field) nor in its attributes.
        ("ingest", jsonl([doc(3, attributes={"recorded_by": "mallory"})])),
    ]):
        ok(result)
    recorded = {c["incident_id"]: [e["recorded_by"] for e in c["entries"]] for c in book.history()["claims"]}
    # Neither option nor variable: the operating-system user.
    assert recorded == {"i0": ["ana"], "i1": ["bo"], "i2": ["cy"], "i3": [getpass.getuser()]}
    from conftest import stored_events

    assert {e["state"]["recorded_by"] for e in stored_events(book.db)} == {"ana", "bo", "cy", getpass.getuser()}


# -- usage errors ------------------------------------------------------------------------------

def test_usage_errors(seeded, run_many):
    calls = [
        (("tally", "--as-of", "2024-01-01T00:00:00"), "--as-of"),
        (("tally", "--by", "district"), "--by"),
        (("tally", "--policy", "median"), "--policy"),
        (("diff", "--from", "2024-01-02T00:00:00Z", "--to", "2024-01-01T00:00:00Z"), "--from"),
        (("tally", "--format", "xml"), "--format"),
        (("ingest", "/nonexistent/docs.jsonl"), "/nonexistent/docs.jsonl"),
        (("--db", "/nonexistent/folder/t.db", "tally"), "--db"),
    ]
    results = run_many([args for args, _ in calls])
    wrong = []
    for (args, option), (code, out, err) in zip(calls, results):
        lines = err.splitlines()
        if not (code == 2 and out == "" and "Traceback" not in err and len(lines) == 1 and option in lines[0]):
            wrong.append((" ".join(args), code, err))
    assert wrong == [], "usage errors must exit 2 with one line on stderr:\n" + "\n".join(map(repr, wrong))
