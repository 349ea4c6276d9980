"""CONTRACT 3 "Bad input": every rule, through the real command line.

Each rule's test puts the bad document on line 3 of a file, between two good documents (with a
blank line 2, which still counts as a line), and checks:
- the CLI exits 1 and prints exactly one line on stderr: ``line 3: <where>: <field>: <what>``;
- the good documents around it were taken (``accepted 2``);
- nothing of the bad document was stored: the store holds exactly the events of a control store
  that was given the same documents without the bad one, and answers tally/history the same.

A rule's test is marked ``@pytest.mark.bad(document)`` and calls ``reject()``, which checks all
of the above and returns the message after ``line 3: ``. The CLI runs of every selected rule are
started together (module fixture ``launched``), each on its own store: on SQLite and, with
``TOLLBOOK_TEST_POSTGRES``, on PostgreSQL. The control store is SQLite either way, so the
PostgreSQL runs are also compared with SQLite's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest

from conftest import Runner, Stores, drop_schemas, event_count, postgres_base, signature, stored_events, strip_recorded

INCIDENT = {"incident_id": "i1", "title": "Shelling of Ardin", "occurred_from": "2024-01-01",
            "country": "Examplestan", "admin1": "North", "place": "Ardin"}
BASE = {"kind": "report", "report_id": "r0", "publisher": "Monitor", "published_at": "2024-01-02T00:00:00Z",
        "incidents": [INCIDENT, {"incident_id": "i2", "occurred_from": "2024-01-01", "admin1": "North"},
                      {"incident_id": "i3", "occurred_from": "2024-01-01", "admin1": "South"}],
        "claims": [{"incident_id": "i1", "source": "Civil Defence", "measure": "killed", "low": 5},
                   {"incident_id": "i2", "source": "Civil Defence", "measure": "killed", "low": 2},
                   {"incident_id": "i3", "source": "Civil Defence", "measure": "killed", "low": 1}]}
MERGED = {"kind": "merge", "incident_id": "i2", "into": "i1", "reason": "same shelling"}
SETUP = [BASE, MERGED]

# The good documents around the bad one.
GOOD_BEFORE = {"kind": "report", "report_id": "good-before", "published_at": "2024-01-03T00:00:00Z",
               "incidents": [{"incident_id": "g1", "occurred_from": "2024-01-03", "admin1": "East"}],
               "claims": [{"incident_id": "g1", "source": "Good Source", "measure": "killed", "low": 2}]}
GOOD_AFTER = {"kind": "report", "report_id": "good-after", "published_at": "2024-01-04T00:00:00Z",
              "claims": [{"incident_id": "i3", "source": "Other Source", "measure": "killed", "low": 3}]}


def claim(**fields) -> dict:
    return {"incident_id": "i1", "source": "Health Office", "measure": "killed", "low": 3} | fields


def report(*claims: dict, **fields) -> dict:
    return {"kind": "report", "report_id": "bad-report", "published_at": "2024-01-03T00:00:00Z",
            "claims": list(claims)} | fields


def correction(**fields) -> dict:
    return {"kind": "correction", "incident_id": "i1", "source": "Civil Defence", "measure": "killed",
            "version": 1, "low": 4, "high": 4, "reason": "typed 5 for 4"} | fields


def retraction(**fields) -> dict:
    return {"kind": "retraction", "incident_id": "i1", "source": "Civil Defence", "measure": "killed",
            "published_at": "2024-01-05T00:00:00Z", "reason": "withdrawn"} | fields


def answers(book) -> dict:
    return strip_recorded({
        "killed": book.tally(), "by_admin1": book.tally(by="admin1"), "by_source": book.tally(by="source"),
        "history": book.history(),
    })


@pytest.fixture
def control(tmp_path):
    """A store given SETUP and the good documents only: what the real store must equal."""
    from tollbook.api import Tollbook

    with Tollbook(str(tmp_path / "control.db"), editor="tester") as book:
        result = book.ingest([json.dumps(d) for d in [*SETUP, GOOD_BEFORE, GOOD_AFTER]])
        assert not result.rejected
        yield book


@dataclass
class Launched:
    db: str
    before: int
    started: object


@pytest.fixture(scope="module")
def launched(request, tmp_path_factory):
    """Each selected rule's store (SETUP stored through the API) and its CLI run over
    ``[GOOD_BEFORE, "", bad, GOOD_AFTER]``, all started at once: a CLI call costs about a second."""
    from tollbook.api import Tollbook

    runs: dict[str, Launched] = {}
    schemas: list[str] = []
    for item in request.session.items:
        marker = item.get_closest_marker("bad")
        if marker is None or item.module is not request.module:
            continue
        kind = item.callspec.params.get("store_kind", "sqlite") if hasattr(item, "callspec") else "sqlite"
        if kind == "postgres" and not postgres_base():
            continue  # skipped by its store_kind fixture
        folder = tmp_path_factory.mktemp("bad")
        db = Stores(kind, folder, schemas).new("t")
        with Tollbook(db, editor="tester") as book:
            result = book.ingest([json.dumps(d) for d in SETUP])
            assert result.accepted == 2 and not result.rejected
        bad = marker.args[0]
        path = folder / "docs.jsonl"
        path.write_text("\n".join([json.dumps(GOOD_BEFORE), "", bad if isinstance(bad, str) else json.dumps(bad),
                                    json.dumps(GOOD_AFTER)]) + "\n")
        runner = Runner(db, folder)
        runs[item.nodeid] = Launched(db, event_count(db), runner._popen(("ingest", path), input=None, env=None,
                                                                         db=..., cwd=None))
    yield runs
    for run in runs.values():
        run.started[0].kill()
        run.started[0].communicate()
    drop_schemas(schemas)


@pytest.fixture
def db_path(request, launched, stores) -> str:
    run = launched.get(request.node.nodeid)
    return run.db if run else stores.new("t")


@pytest.fixture
def reject(request, launched, book, db_path, control):
    """For a test marked ``bad(document)``: ``reject()`` checks the exit status, the one line on
    stderr, the summary and that nothing of the document was stored, and returns the message
    after ``line 3: `` (called from the test, so a failure is the test's, not the fixture's)."""
    run = launched[request.node.nodeid]

    def check() -> str:
        code, out, err = Runner._finish(run.started)
        assert code == 1, (out, err)
        assert "Traceback" not in err
        errors = err.splitlines()
        assert len(errors) == 1, err
        assert out.strip() == "accepted 2, unchanged 0, rejected 1"
        match = re.fullmatch(r"line 3: (.+)", errors[0])
        assert match, errors[0]
        # Exactly the good documents' events were added, nothing of the bad one.
        mine, theirs = stored_events(db_path), stored_events(control.db)
        assert sorted(map(signature, mine)) == sorted(map(signature, theirs))
        assert event_count(db_path) == event_count(control.db) > run.before
        assert answers(book) == answers(control)
        return match.group(1)

    return check


@pytest.mark.bad('{"kind": "report", "report_id": "x", ')
def test_malformed_json(reject):
    error = reject()
    assert error.startswith("malformed JSON"), error


def test_document_that_is_not_an_object(book):
    result = book.ingest(["[1, 2]"])
    assert [r.line for r in result.rejected] == [1] and "object" in result.rejected[0].error


@pytest.mark.bad({"kind": "rumour", "incident_id": "i1"})
def test_unknown_kind(reject):
    error = reject()
    assert error.startswith("kind: "), error
    assert "'rumour'" in error and "report" in error and "merge" in error


@pytest.mark.bad(report(claim(source="A"), claim(source="B", colour="red")))
def test_unknown_field_in_a_claim(reject):
    error = reject()
    assert error == "claim 2: colour: unknown field"


@pytest.mark.bad(report(claim(source="A"), claim(source="B", low=-1)))
def test_negative_count(reject, book):
    error = reject()
    assert error == "claim 2: low: must be >= 0"
    for name in ("high", "best"):
        result = book.ingest([json.dumps(report(claim(source="B", low=0, **{name: -2})))])
        assert [r.error for r in result.rejected] == [f"claim 1: {name}: must be >= 0"]


@pytest.mark.bad(report(claim(source="A"), claim(source="B", low=2**63)))
def test_count_beyond_64_bits(reject, book):
    # JSON readers would turn it into an inexact float; the stores hold 64-bit integers.
    error = reject()
    assert error == "claim 2: low: must be <= 9223372036854775807"
    result = book.ingest([report(claim(source="B", low=2**63 - 1))])  # a dict through the API
    assert (result.accepted, result.rejected) == (1, [])


@pytest.mark.bad(report(claim(source="A"), claim(source="B", low=5, high=4)))
def test_high_below_low(reject):
    error = reject()
    assert error.startswith("claim 2: high: must be >= low"), error
    assert "4 < 5" in error


@pytest.mark.bad(report(claim(source="A"), claim(source="B", low=5, high=6, best=7)))
def test_best_outside_range(reject, book, db_path):
    error = reject()
    assert error == "claim 2: best: must be between low and high (5 <= 7 <= 6 fails)"
    count = event_count(db_path)
    result = book.ingest([json.dumps(report(claim(source="B", low=5, high=6, best=4), report_id="below"))])
    assert [r.error for r in result.rejected] == ["claim 1: best: must be between low and high (5 <= 4 <= 6 fails)"]
    assert event_count(db_path) == count


@pytest.mark.bad(report(claim(source="A"), claim(source="B", published_at="2024-01-03T10:00:00")))
def test_naive_timestamp(reject, book):
    error = reject()
    assert error.startswith("claim 2: published_at: needs a time zone"), error
    assert "2024-01-03T10:00:00" in error
    # The report's own timestamp, a retraction's, a correction's and an incident's date too.
    for bad, field in [
        (report(claim(), published_at="2024-01-03T10:00:00"), "published_at"),
        (retraction(published_at="2024-01-05T00:00:00"), "published_at"),
        (correction(published_at="2024-01-05T00:00:00"), "published_at"),
        ({"kind": "incident", "incident_id": "n1", "occurred_from": "2024-01-01T00:00:00"}, "occurred_from"),
    ]:
        result = book.ingest([json.dumps(bad)])
        assert len(result.rejected) == 1 and result.rejected[0].error.startswith(f"{field}: needs a time zone")


def test_bare_date_and_offsets_are_accepted(book):
    book.ingest([json.dumps(d) for d in SETUP])
    result = book.ingest([json.dumps(report(claim(source="A", published_at="2024-01-03"),
                                            claim(source="B", published_at="2024-01-03T12:00:00+02:00"),
                                            claim(source="C", published_at="2024-01-03T10:00:00.25Z"),
                                            published_at="2024-01-02"))])
    assert result.accepted == 1 and not result.rejected
    published = {c["source"]: c["entries"][0]["published_at"]
                 for c in book.history(incident="i1")["claims"]}
    assert published["A"] == "2024-01-03T00:00:00Z"
    assert published["B"] == "2024-01-03T10:00:00Z"
    assert published["C"] == "2024-01-03T10:00:00.250000Z"
    # The bare date means 00:00:00Z: known at 23:59 the day before, A does not count yet.
    assert "A" not in book.tally(known_at="2024-01-02T23:59:59Z")["rows"][0]["sources"]
    assert "A" in book.tally(known_at="2024-01-03T00:00:00Z")["rows"][0]["sources"]


def test_incident_dates_are_days(book, db_path):
    """occurred_from/to keep a bare date as it is, take a timestamp's day in UTC, and name an
    impossible date or a value that is not a date."""
    result = book.ingest([json.dumps({"kind": "incident", "incident_id": "d1", "occurred_from": "2024-02-29",
                                      "occurred_to": "2024-03-01T01:00:00+02:00"})])
    assert (result.accepted, result.rejected) == (1, [])
    [defined] = [e for e in stored_events(db_path) if e["topic"] == "domain.incident:IncidentDefined"]
    assert (defined["state"]["fields"]["occurred_from"], defined["state"]["fields"]["occurred_to"]) == (
        "2024-02-29", "2024-02-29")
    for value, message in [("2023-02-29", "not a valid date: '2023-02-29'"),
                           ("2024-13-01", "not a valid date: '2024-13-01'"),
                           (20240101, "must be an RFC 3339 timestamp or a date")]:
        result = book.ingest([json.dumps({"kind": "incident", "incident_id": "d2", "occurred_from": value})])
        assert [r.error for r in result.rejected] == [f"occurred_from: {message}"]


def test_lowercase_z_is_accepted(book):
    # RFC 3339 5.6: "Z" may be lower case; domain/time.py's zone pattern means to accept it.
    book.ingest([json.dumps(d) for d in SETUP])
    result = book.ingest([json.dumps(report(claim(published_at="2024-01-03T10:00:00z")))])
    assert result.rejected == [] and result.accepted == 1
    assert book.history(source="Health Office")["claims"][0]["entries"][0]["published_at"] == "2024-01-03T10:00:00Z"


@pytest.mark.bad(report(claim(source="A"), claim(source="B", incident_id="nowhere")))
def test_claim_on_unknown_incident(reject):
    error = reject()
    assert error.startswith("claim 2: incident_id: unknown incident"), error
    assert "'nowhere'" in error


@pytest.mark.bad(correction(source="Nobody"))
def test_correction_of_unknown_claim(reject):
    error = reject()
    assert error.startswith("claim: no claim"), error
    assert "Nobody" in error and "i1" in error and "killed" in error


@pytest.mark.bad(correction(version=2))
def test_correction_of_unknown_version(reject):
    error = reject()
    assert error.startswith("version: "), error
    assert "no version 2" in error


@pytest.mark.bad(retraction(measure="injured"))
def test_retraction_of_unknown_claim(reject):
    error = reject()
    assert error.startswith("claim: no claim"), error
    assert "injured" in error


@pytest.mark.bad({"kind": "merge", "incident_id": "i1", "into": "i1"})
def test_merge_into_itself(reject):
    error = reject()
    assert error.startswith("into: "), error
    assert "itself" in error


@pytest.mark.bad({"kind": "merge", "incident_id": "i3", "into": "i2"})
def test_merge_into_a_merged_away_incident(reject):
    error = reject()
    assert error.startswith("into: "), error
    assert "'i2'" in error and "'i1'" in error


@pytest.mark.bad({"kind": "merge", "incident_id": "nowhere", "into": "i1"})
def test_merge_of_unknown_incidents(reject, book):
    error = reject()
    assert error == "incident_id: unknown incident 'nowhere'"
    result = book.ingest([json.dumps({"kind": "merge", "incident_id": "i3", "into": "nowhere"})])
    assert [r.error for r in result.rejected] == ["into: unknown incident 'nowhere'"]


CHANGED_BASE = json.loads(json.dumps(BASE))
CHANGED_BASE["claims"][0]["low"] = 6


@pytest.mark.bad(CHANGED_BASE)
def test_different_document_under_a_stored_report_id(reject):
    error = reject()
    assert error.startswith("report_id: "), error
    assert "'r0'" in error


def fixing(**fix) -> dict:  # a correction of version 1 of (i1, Civil Defence, killed, all), which is 5..5
    return {k: v for k, v in correction().items() if k not in ("low", "high")} | fix


@pytest.mark.bad(fixing(high=4))
def test_correction_that_breaks_the_range(reject, book, db_path):
    error = reject()
    assert error == "high: must be >= low (4 < 5) after the correction of version 1"
    count, history = event_count(db_path), book.history(incident="i1")
    result = book.ingest([json.dumps(fixing(best=9)), json.dumps(fixing(low=6)),
                          json.dumps(fixing(low=7, high=6)), json.dumps(fixing(low=1, best=2, high=1))])
    assert [r.error.split(" (")[0] for r in result.rejected] == [
        "best: must be between low and high", "high: must be >= low", "high: must be >= low",
        "best: must be between low and high"]
    assert all("version 1" in r.error for r in result.rejected)
    assert event_count(db_path) == count and book.history(incident="i1") == history
    # A correction that keeps the range is taken: low and high moved together.
    assert book.ingest([json.dumps(fixing(low=6, high=8, best=7))]).accepted == 1
    current = [c["current"] for c in book.history(incident="i1")["claims"] if c["incident_id"] == "i1"]
    assert current == [{"counting": True, "version": 1, "low": 6, "high": 8, "best": 7}]


@pytest.mark.bad({k: v for k, v in retraction().items() if k != "reason"})
def test_retraction_without_reason(reject, book):
    error = reject()
    assert error == "reason: is required"
    result = book.ingest([json.dumps(retraction(reason="   ")), json.dumps(correction(reason=""))])
    assert [r.error for r in result.rejected] == ["reason: must not be empty", "reason: must not be empty"]


def test_identical_document_is_a_no_op(run, jsonl, db_path, book):
    docs = [*SETUP, correction(), retraction(), GOOD_BEFORE]
    result = book.ingest([json.dumps(d) for d in docs])
    assert (result.accepted, result.unchanged, result.rejected) == (5, 0, [])
    count, history = event_count(db_path), book.history()
    # Again, keys in another order and spaced differently: the same documents.
    again = [json.dumps(dict(reversed(list(d.items()))), indent=None, separators=(",", ":")) for d in docs]
    code, out, err = run("ingest", jsonl(again))
    assert (code, out.strip(), err) == (0, "accepted 0, unchanged 5, rejected 0", "")
    assert event_count(db_path) == count
    assert book.history() == history
    # The same document twice in one file: the second is unchanged.
    result = book.ingest([json.dumps(GOOD_AFTER), json.dumps(GOOD_AFTER)])
    assert (result.accepted, result.unchanged, result.rejected) == (1, 1, [])


def test_report_whose_third_claim_is_bad_stores_nothing(book, db_path):
    book.ingest([json.dumps(d) for d in SETUP])
    count, before = event_count(db_path), answers(book)
    new = [{"incident_id": "n1", "occurred_from": "2024-01-05", "admin1": "West"},
           {"incident_id": "n2", "occurred_from": "2024-01-05", "admin1": "West"}]
    good = [claim(incident_id="n1", source="A"), claim(incident_id="n2", source="B")]
    for bad, error in [
        (claim(incident_id="n3", source="C"), "claim 3: incident_id: unknown incident 'n3'"),  # decided on state
        (claim(incident_id="n1", source="C", low=-3), "claim 3: low: must be >= 0"),  # fails to parse
    ]:
        doc = report(*good, bad, incidents=new, report_id="multi")
        # The same file goes on to use what the bad report would have defined.
        later = report(claim(incident_id="n1", source="D"), report_id="later")
        result = book.ingest([json.dumps(doc), json.dumps(later)])
        assert [(r.line, r.error) for r in result.rejected] == [
            (1, error), (2, "claim 1: incident_id: unknown incident 'n1'")]
        assert result.accepted == 0
        assert event_count(db_path) == count
        assert answers(book) == before
        assert book.history(incident="n1")["claims"] == []
    # The report_id was not taken by the rejected document: the fixed one is accepted.
    fixed = report(*good, claim(incident_id="n2", source="C"), incidents=new, report_id="multi")
    assert book.ingest([json.dumps(fixed)]).accepted == 1
    assert book.tally(by="admin1")["rows"][-1] == {"key": "West", "low": 6, "high": 6, "best": 6, "incidents": 2,
                                                   "sources": ["A", "B", "C"]}


def test_rejections_do_not_stop_the_rest(book):
    result = book.ingest([json.dumps(SETUP[0]), "not json", "", json.dumps({"kind": "x"}),
                          json.dumps(SETUP[1]), json.dumps(report(claim(low=-1)))])
    assert result.accepted == 2
    assert [r.line for r in result.rejected] == [2, 4, 6]
    assert book.tally(incident="i2")["rows"][0]["key"] == "i1"
