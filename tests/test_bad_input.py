"""CONTRACT 3 "Bad input": every rule, through the real command line.

Each rule's test puts the bad document on line 3 of a file, between two good documents (with a
blank line 2, which still counts as a line), and checks:
- the CLI exits 1 and prints exactly one line on stderr: ``line 3: <where>: <field>: <what>``;
- the good documents around it were taken (``accepted 2``);
- nothing of the bad document was stored: the store holds exactly the events of a control store
  that was given the same documents without the bad one, and answers tally/history the same.

A rule's test is marked ``@pytest.mark.bad(document)`` and calls ``reject()``, which checks all
of the above and returns the message after ``line 3: ``. Each rule runs on its own store: on
SQLite and, with ``TOLLBOOK_TEST_POSTGRES``, on PostgreSQL. The control store is SQLite either
way, so the PostgreSQL runs are also compared with SQLite's. The command line runs in the test's
own process (``run_here``: the entry point's ``main``, as ``python -m tollbook`` runs it), since
a process of its own costs half a second and this module has some 200 of them; tests/test_cli.py
runs it as a process.
"""

from __future__ import annotations

import json
import re

import pytest

from conftest import event_count, run_here, signature, stored_events, strip_recorded

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


GROUPINGS = ("incident", "country", "admin1", "admin2", "source", "perpetrator", "day", "month", "year")


def answers(book) -> dict:
    """Every grouping of the tally under every policy, the history and the diff over all time."""
    found = {f"{by}/{policy}": book.tally(by=by, policy=policy)
             for by in GROUPINGS for policy in ("conservative", "highest", "latest")}
    return strip_recorded(found | {"history": book.history(),
                                   "diff": book.diff("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z")["changes"]})


@pytest.fixture
def control(tmp_path):
    """A store given SETUP and the good documents only: what the real store must equal."""
    from tollbook.api import Tollbook

    with Tollbook(str(tmp_path / "control.db"), editor="tester") as book:
        result = book.ingest([json.dumps(d) for d in [*SETUP, GOOD_BEFORE, GOOD_AFTER]])
        assert not result.rejected
        yield book


@pytest.fixture
def db_path(request, stores) -> str:
    """A rule's store holds SETUP (stored through the API); any other test's store is new."""
    db = stores.new("t")
    if request.node.get_closest_marker("bad") is not None:
        from tollbook.api import Tollbook

        with Tollbook(db, editor="tester") as book:
            result = book.ingest([json.dumps(d) for d in SETUP])
            assert result.accepted == 2 and not result.rejected
    return db


@pytest.fixture
def reject(request, book, db_path, control, tmp_path):
    """For a test marked ``bad(document)``: ``reject()`` runs the command line's ingest over
    ``[GOOD_BEFORE, "", bad, GOOD_AFTER]``, checks the exit status, the one line on stderr, the
    summary and that nothing of the document was stored, and returns the message after
    ``line 3: `` (called from the test, so a failure is the test's, not the fixture's)."""
    bad = request.node.get_closest_marker("bad").args[0]
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join([json.dumps(GOOD_BEFORE), "", bad if isinstance(bad, str) else json.dumps(bad),
                                json.dumps(GOOD_AFTER)]) + "\n")
    before = event_count(db_path)

    def check() -> str:
        code, out, err = run_here(db_path, "ingest", path)
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
        assert event_count(db_path) == event_count(control.db) > before
        assert answers(book) == answers(control)
        book.rebuild()
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


# -- issue 11: what no document may hold, each class a parametrised test ------------------------
# Each case is ``case(document, expected message after "line 3: ")``: the document is marked
# ``bad`` for the CLI run, and ``reject()`` checks all of the module docstring's points.

def case(document, expected: str, name: str):
    return pytest.param(document, expected, marks=pytest.mark.bad(document), id=name)


def incident(**fields) -> dict:
    return {"kind": "incident", "incident_id": "i9", "occurred_from": "2024-01-01"} | fields


def raw(text: str) -> str:  # a document written out by hand, for what json.dumps cannot write
    return text


@pytest.mark.parametrize("document, expected", [
    case(raw('{"kind": "incident", "incident_id": "i9", "kind": "merge", "into": "i1"}'),
         "kind: given twice in one object", "top"),
    case(raw('{"kind": "report", "report_id": "bad-report", "published_at": "2024-01-03T00:00:00Z", "claims": ['
             '{"incident_id": "i1", "source": "A", "measure": "killed", "low": 3},'
             '{"incident_id": "i1", "source": "B", "measure": "killed", "low": 3, "low": 300}]}'),
         "claim 2: low: given twice in one object", "claim"),
    case(raw('{"kind": "incident", "incident_id": "i9", "extra": {"a": [1, {"b": 1, "b": 2}]}}'),
         "extra: a: item 2: b: given twice in one object", "deep"),
    case(raw('{"kind": "incident", "incident_id": "i9", "\\u006bind": "incident", "title": "x"}'),
         "kind: given twice in one object", "escaped"),
    case(raw('{"kind": "incident", "incident_id": "i9", "a\\u003ab": 1, "a:b": 2}'),
         "a:b: given twice in one object", "escaped-colon"),
])
def test_key_given_twice(reject, document, expected):
    assert reject() == expected


@pytest.mark.parametrize("document, expected", [
    case(report(claim(published_at="2024-01-03 10:00:00Z")), "claim 1: published_at: not an RFC 3339 timestamp", "space"),
    case(report(claim(), published_at="2024-01-03T10:00Z"), "published_at: not an RFC 3339 timestamp", "no-seconds"),
    case(retraction(published_at="2024-01-05T00:00:00+0200"), "published_at: not an RFC 3339 timestamp", "offset"),
    case(retraction(published_at="20240105T000000Z"), "published_at: not an RFC 3339 timestamp", "basic"),
    case(retraction(published_at="2024-W01-3T00:00:00Z"), "published_at: not an RFC 3339 timestamp", "week"),
    case(retraction(published_at=" 2024-01-05"), "published_at: not an RFC 3339 timestamp", "padded"),
    case(correction(published_at="2024-01-05T24:00:00Z"), "published_at: not a valid date, time or offset", "hour-24"),
    case(correction(published_at="2024-01-05T10:00:00+24:00"), "published_at: not a valid date, time or offset",
         "offset-24"),
    case(correction(published_at="2023-12-31T23:59:60Z"), "published_at: leap seconds are not supported", "leap"),
    case(incident(occurred_from="2024-01-01T00:00:00"), "occurred_from: needs a time zone", "naive"),
    case(incident(occurred_to="2024-02-30"), "occurred_to: not a valid date", "day"),
])
def test_timestamp_not_rfc3339(reject, document, expected):
    error = reject()
    assert error.startswith(expected), error


@pytest.mark.parametrize("document, expected", [
    case(report(claim(published_at="0001-01-01T00:30:00+01:00")), "claim 1: published_at", "before-year-1"),
    case(retraction(published_at="9999-12-31T23:30:00-01:00"), "published_at", "after-9999"),
    case(incident(occurred_from="0001-01-01T00:00:00+00:01"), "occurred_from", "day-before-year-1"),
])
def test_timestamp_outside_years_1_to_9999(reject, document, expected):
    error = reject()
    assert error.startswith(f"{expected}: outside the years 0001-9999 once its offset is applied"), error


def test_timestamps_at_the_edges_of_the_calendar_are_taken(book):
    book.ingest([json.dumps(d) for d in SETUP])
    result = book.ingest([json.dumps(report(claim(source="A", published_at="0001-01-01T00:00:00Z"),
                                            claim(source="B", published_at="0001-01-01T01:00:00+01:00"),
                                            claim(source="C", published_at="2024-01-03T10:00:00.123456789Z"),
                                            published_at="0001-01-01")),
                          json.dumps(incident(occurred_from="0001-01-01", occurred_to="9999-12-31T23:00:00-00:59"))])
    assert (result.accepted, result.rejected) == (2, [])
    published = {c["source"]: c["entries"][0]["published_at"] for c in book.history(incident="i1")["claims"]}
    assert published["A"] == published["B"] == "0001-01-01T00:00:00Z"
    assert published["C"] == "2024-01-03T10:00:00.123456Z"  # cut to the microsecond the store keeps
    assert book.tally(known_at="0001-01-01T00:00:00Z")["rows"][0]["sources"] == ["A", "B"]
    assert book.tally(by="year")["rows"][-1]["key"] == "2024"
    assert book.tally(by="year", known_at="9999-12-31T23:59:59.999999Z")["total"] == book.tally(by="year")["total"]


LATER = "2100-01-01T00:00:00Z"


@pytest.mark.parametrize("document, expected", [
    case(report(claim(), published_at=LATER), "published_at", "report"),
    case(report(claim(source="A"), claim(source="B", published_at=LATER)), "claim 2: published_at", "claim"),
    case(retraction(published_at=LATER), "published_at", "retraction"),
    case(correction(published_at=LATER), "published_at", "correction"),
])
def test_published_after_it_is_recorded(reject, document, expected):
    error = reject()
    assert error == (f"{expected}: 2100-01-01T00:00:00Z is later than the instant it is recorded "
                     "(at most 5 minutes of clock skew are allowed)"), error


def test_published_within_the_clock_skew_is_taken(book):
    from datetime import UTC, datetime, timedelta

    from tollbook.domain.time import format_instant

    book.ingest([json.dumps(d) for d in SETUP])
    soon, late = (format_instant(datetime.now(UTC) + timedelta(minutes=m)) for m in (4, 6))
    result = book.ingest([json.dumps(report(claim(published_at=soon))),
                          json.dumps(retraction(published_at=late))])
    assert result.accepted == 1 and [r.line for r in result.rejected] == [2]
    assert "later than the instant it is recorded" in result.rejected[0].error


@pytest.mark.parametrize("document, expected", [
    case(incident(country=5), "country: must be text, not int", "country"),
    case(incident(admin1=["North"]), "admin1: must be text, not list", "admin1"),
    case(incident(admin2={"name": "x"}), "admin2: must be text, not dict", "admin2"),
    case(incident(place=1.5), "place: must be text, not float", "place"),
    case(incident(perpetrator=True), "perpetrator: must be text, not bool", "perpetrator"),
    case(incident(event_type=0), "event_type: must be text, not int", "event_type"),
    case(report(claim(), incidents=[{"incident_id": "i9", "title": ["a"]}]), "incident 1: title: must be text, not list",
         "title-in-report"),
])
def test_grouping_field_not_text(reject, document, expected):
    assert reject() == expected


def nested(depth: int) -> object:
    """A value that makes a document ``depth`` deep when it is a field of an incident (depth 1)."""
    value: object = "bottom"
    for level in range(depth - 1):
        value = [value] if level % 2 else {"v": value}
    return value


@pytest.mark.parametrize("document, expected", [
    case(incident(extra=nested(33)), "extra: nested deeper than 32 levels", "incident"),
    case(report(claim(), attributes={"a": nested(32)}), "attributes: nested deeper than 32 levels", "report"),
    case(report(claim(low=nested(40))), "claim 1: nested deeper than 32 levels", "claim"),
    case(raw('{"kind": "incident", "incident_id": "i9", "x": ' + "[" * 600 + "]" * 600 + "}"),
         "x: nested deeper than 32 levels", "600"),
])
def test_nested_too_deep(reject, document, expected):
    assert reject() == expected


def test_nesting_up_to_the_limit_is_taken(book):
    book.ingest([json.dumps(d) for d in SETUP])
    result = book.ingest([json.dumps(incident(extra=nested(32)))])
    assert (result.accepted, result.rejected) == (1, [])
    assert book.rebuild() > 0 and book.tally(by="admin1")["rows"]


@pytest.mark.parametrize("document, expected", [
    case(report(claim(source="Health\x00Office")), "claim 1: source: must not hold a NUL character", "source"),
    case(incident(title="a\x00"), "title: must not hold a NUL character", "title"),
    case(incident(extra={"k\x00": 1}), "extra: k\\x00: must not hold a NUL character", "key"),
    case(retraction(reason="with\x00drawn"), "reason: must not hold a NUL character", "reason"),
])
def test_nul_character(reject, document, expected):
    assert reject() == expected


def test_escaped_backslash_u0000_is_text_not_nul(book):
    book.ingest([json.dumps(d) for d in SETUP])
    result = book.ingest([json.dumps(incident(title="C:\\u0000 drive"))])
    assert (result.accepted, result.rejected) == (1, [])


LONG = "x" * 1001


@pytest.mark.parametrize("document, expected", [
    case(report(claim(incident_id=LONG)), "claim 1: incident_id: must be at most 1000 characters, not 1001", "claim-incident"),
    case(report(claim(source=LONG)), "claim 1: source: must be at most 1000 characters, not 1001", "source"),
    case(report(claim(measure=LONG)), "claim 1: measure: must be at most 1000 characters, not 1001", "measure"),
    case(report(claim(group=LONG)), "claim 1: group: must be at most 1000 characters, not 1001", "group"),
    case(report(claim(), report_id=LONG), "report_id: must be at most 1000 characters, not 1001", "report_id"),
    case(incident(incident_id=LONG), "incident_id: must be at most 1000 characters, not 1001", "incident"),
    case({"kind": "merge", "incident_id": "i3", "into": LONG}, "into: must be at most 1000 characters, not 1001", "into"),
    case(retraction(source=LONG), "source: must be at most 1000 characters, not 1001", "retraction"),
    case(incident(incident_id="\U00020000" * 601), "incident_id: takes 2404 bytes in UTF-8, more than the 2400 a "
         "store can index", "incident-bytes"),
    case(report(claim(incident_id="i1", source="\u4e00" * 1000)), "claim 1: source: the claim's incident_id, source, "
         "measure and group take 3011 bytes in UTF-8, more than the 2400 a store can index together", "key-bytes"),
])
def test_name_too_long(reject, document, expected):
    assert reject() == expected


def test_names_at_the_limits_are_taken(book):
    """1,000 characters each, and a claim key of 2,400 bytes of characters that do not
    compress: PostgreSQL indexes them (this runs on both stores)."""
    book.ingest([json.dumps(d) for d in SETUP])
    wide = "".join(chr(0x20000 + (i * 7919) % 40000) for i in range(597))  # 2,388 bytes
    result = book.ingest([json.dumps(report(
        claim(incident_id="n" * 1000, source="s" * 1000, measure="m" * 200, group="g" * 200),
        claim(incident_id=wide, source="S", measure="k", group="a"),
        report_id="r" * 1000, incidents=[{"incident_id": "n" * 1000, "admin1": "A" * 5000}, {"incident_id": wide}]))])
    assert (result.accepted, result.rejected) == (1, [])
    assert book.ingest([json.dumps({"kind": "merge", "incident_id": wide, "into": "n" * 1000})]).accepted == 1
    assert book.tally(measure="m" * 200, group="g" * 200, by="admin1")["rows"][0]["key"] == "A" * 5000
    assert len(book.history(incident="n" * 1000)["claims"]) == 2
    book.rebuild()
    assert book.tally(measure="k", group="a", incident=wide)["rows"][0]["key"] == "n" * 1000


@pytest.mark.parametrize("document, expected", [
    case({k: v for k, v in report(claim()).items() if k != "claims"} | {"claim": [claim()]},
         "claim: unknown field (a report keeps fields of its own under attributes)", "report"),
    case(report(claim(), recorded_by="mallory"),
         "recorded_by: unknown field (a report keeps fields of its own under attributes)", "recorded_by"),
    case(correction(colour="red"), "colour: unknown field", "correction"),
    case(retraction(note="x"), "note: unknown field", "retraction"),
    case({"kind": "merge", "incident_id": "i3", "into": "i1", "why": "same"}, "why: unknown field", "merge"),
])
def test_unknown_top_level_field(reject, document, expected):
    assert reject() == expected


def test_report_attributes_and_incident_fields_are_kept(book, db_path):
    book.ingest([json.dumps(d) for d in SETUP])
    result = book.ingest([json.dumps(report(claim(), attributes={"desk": "north", "pages": [1, 2]})),
                          json.dumps(incident(colour="red"))])
    assert (result.accepted, result.rejected) == (2, [])
    received = [e["state"] for e in stored_events(db_path) if e["topic"].endswith("DocumentReceived")]
    assert {"desk": "north", "pages": [1, 2]} in [r["attributes"].get("attributes") for r in received]
    defined = [e["state"] for e in stored_events(db_path) if e["topic"].endswith("IncidentDefined")]
    assert defined[-1]["fields"]["colour"] == "red"


@pytest.mark.parametrize("document, expected", [
    case('{"kind": "report", "report_id": "x", ', "malformed JSON: unexpected end of data", "end"),
    case('{"kind": "report" "report_id": "x"}', "malformed JSON: unexpected character, expected ',' or '}' "
         "(at character 19)", "comma"),
    case('{"kind": "incident", "incident_id": "i9", "n": 1e999}', "malformed JSON: number is infinity when parsed as "
         "double (at character 48)", "infinity"),
])
def test_malformed_json_names_only_the_documents_line(reject, document, expected):
    error = reject()
    assert error == expected
    assert "line 1" not in error
