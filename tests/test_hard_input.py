"""Issue 11, the rest of documents and query options: whatever ingest takes, every later
command answers (sums beyond 2^63 included); query options get the documents' calendar checks;
recorded instants print with six fractional digits; sources compare as people mean them, on
stores written before as well; and a property test that no JSON value in any field of any
document makes ingest or a later query raise."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import rows

DATA = Path(__file__).parent / "data"
LEGACY = DATA / "store-aa66c0a"
GROUPINGS = ("incident", "country", "admin1", "admin2", "source", "perpetrator", "day", "month", "year")
POLICIES = ("conservative", "highest", "latest")
BIG = 2**63 - 1


def report(report_id: str, *claims: dict, incidents: list | None = None, published_at: str = "2024-01-02") -> dict:
    return {"kind": "report", "report_id": report_id, "published_at": published_at, "incidents": incidents or [],
            "claims": list(claims)}


def claim(incident_id: str, source: str, low: int, **fields) -> dict:
    return {"incident_id": incident_id, "source": source, "measure": "killed", "low": low} | fields


# -- sums beyond 2^63 --------------------------------------------------------------------------

def test_sums_beyond_64_bits_are_exact(book, run):
    places = [{"incident_id": f"b{n}", "occurred_from": "2024-01-01", "country": "C", "admin1": "A", "admin2": "Z",
               "perpetrator": "P"} for n in range(3)]
    merged = [{"incident_id": "m1", "occurred_from": "2024-01-01", "country": "C", "admin1": "A", "admin2": "Z", "perpetrator": "P"},
              {"incident_id": "m2", "occurred_from": "2024-01-01", "country": "C", "admin1": "A"}]
    result = book.ingest([json.dumps(report("r1", *[claim(p["incident_id"], "S", BIG, best=BIG) for p in places],
                                            *[claim(p["incident_id"], "Other", BIG - 1) for p in places],
                                            claim("m1", "S", BIG), claim("m2", "T", 7), incidents=places + merged)),
                          json.dumps({"kind": "merge", "incident_id": "m2", "into": "m1"})])
    assert (result.accepted, result.rejected) == (2, [])
    # The merged pool goes the row-by-row way and is added to the database's sums.
    for by in GROUPINGS:
        for policy in POLICIES:
            answer = book.tally(by=by, policy=policy)
            assert answer["total"]["low"] == 3 * (BIG - 1) + 7, (by, policy)
            assert answer["total"]["high"] == 4 * BIG
            if by not in ("incident", "source"):
                assert rows(answer)[next(iter(rows(answer)))][:2] == (3 * (BIG - 1) + 7, 4 * BIG), (by, policy)
    by_source = rows(book.tally(by="source"))
    assert by_source == {"Other": (3 * (BIG - 1),) * 3 + (3,), "S": (4 * BIG,) * 3 + (4,), "T": (7, 7, 7, 1)}
    # The command line prints them exactly in every format.
    for fmt in ("json", "csv", "table"):
        code, out, err = run("tally", "--by", "admin1", "--format", fmt)
        assert (code, err) == (0, ""), err
        assert str(4 * BIG) in out
    code, out, _ = run("tally", "--by", "source", "--format", "json")
    assert json.loads(out)["rows"][1]["low"] == 4 * BIG  # S


# -- query options: the documents' calendar checks ----------------------------------------------

@pytest.fixture
def small(book, jsonl):
    book.ingest([json.dumps(report("r1", claim("i1", "S", 1), incidents=[{"incident_id": "i1"}]))])
    return jsonl([report("r2", claim("i1", "T", 1))], name="more.jsonl")


BAD_INSTANTS = [
    ("9999-12-31T23:30:00-01:00", "outside the years 0001-9999"),
    ("0001-01-01T00:00:00+00:01", "outside the years 0001-9999"),
    ("0000-01-01", "not a valid date"),
    ("10000-01-01T00:00:00Z", "not an RFC 3339 timestamp"),
    ("2024-01-01 10:00:00Z", "not an RFC 3339 timestamp"),
    ("2024-01-01T10:00:00", "needs a time zone"),
    ("2024-02-30T00:00:00Z", "not a valid date, time or offset"),
    ("2024-01-01T23:59:60Z", "leap seconds are not supported"),
    ("x" * 5000, "not an RFC 3339 timestamp"),
]


def _options(value: str) -> list[tuple[str, ...]]:
    return [("tally", "--as-of", value), ("tally", "--known-at", value), ("history", "--as-of", value),
            ("history", "--known-at", value), ("diff", "--from", value, "--to", "2024-01-01T00:00:00Z"),
            ("diff", "--from", "2024-01-01T00:00:00Z", "--to", value),
            ("diff", "--from", "2024-01-01", "--to", "2024-01-02", "--known-at", value),
            ("import", "ucdp", str(LEGACY / "ged-20.csv"), "--release", "20.1", "--published-at", value)]


def test_query_options_get_the_calendar_checks(small, run_many):
    """Each bad instant in two of the eight options, so that each option meets two or three (a
    CLI run costs a second)."""
    calls = [(_options(value)[(2 * n + k) % 8], value, expected)
             for n, (value, expected) in enumerate(BAD_INSTANTS) for k in range(2)]
    for (args, value, expected), (code, out, err) in zip(calls, run_many([c[0] for c in calls]), strict=True):
        option = args[args.index(value) - 1]
        assert code == 2 and out == "", (args, code, out, err)
        assert "Traceback" not in err and len(err.splitlines()) == 1, (args, err)
        assert err.startswith(f"tollbook: {option}: {expected}"), (args, err)
        assert len(err) < 300, err  # the value is quoted cut short


def test_import_published_in_the_future_is_refused_up_front(run):
    code, out, err = run("import", "ucdp", str(LEGACY / "ged-20.csv"), "--release", "20.1",
                         "--published-at", "2100-01-01")
    assert (code, out) == (2, "") and err.startswith("tollbook: --published-at: 2100-01-01T00:00:00Z is later than now"), err


# -- output: recorded instants with six fractional digits; rejections on stderr ----------------

RECORDED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def test_recorded_instants_print_six_fractional_digits(small, run_many):
    from datetime import UTC, datetime, timedelta

    start, end = "2024-01-01T00:00:00Z", (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    [(code, out, err)] = run_many([("ingest", small)])
    assert code == 0, err
    calls = [("history", "--format", "json"), ("history",), ("diff", "--from", start, "--to", end, "--format", "json"),
             ("diff", "--from", start, "--to", end), ("status", "--format", "json"), ("status",), ("tally",),
             ("tally", "--as-of", "2030-01-01T00:00:00Z", "--format", "json"),
             ("import", "ucdp", str(LEGACY / "ged-20.csv"), "--release", "20.1", "--published-at", "2020-06-01")]
    results = run_many(calls)
    for args, (code, out, err) in zip(calls, results, strict=True):
        assert code == 0 and err == "", (args, err)
        if "json" in args:
            data = json.loads(out)
            found = re.findall(r'"(?:recorded_at|as_of|from|to)": "([^"]+)"', json.dumps(data))
            assert found and all(RECORDED.fullmatch(f) for f in found), (args, found)
        else:
            assert RECORDED.search(out), (args, out)
    history = json.loads(results[0][1])["claims"]
    # Published instants keep their own form (fractions only when there are any).
    assert history[0]["entries"][0]["published_at"] == "2024-01-02T00:00:00Z"


def test_ingest_json_also_writes_each_rejection_to_stderr(run, jsonl):
    path = jsonl([report("r1", claim("i1", "S", 1), incidents=[{"incident_id": "i1"}]), "not json",
                  report("r2", claim("nowhere", "S", 1))])
    code, out, err = run("ingest", "--format", "json", path)
    assert code == 1
    assert json.loads(out) == {"accepted": 1, "unchanged": 0, "rejected": [
        {"line": 2, "error": "malformed JSON: invalid literal, expected 'null' (at character 1)"},
        {"line": 3, "error": "claim 1: incident_id: unknown incident 'nowhere'"}]}
    assert err.splitlines() == ["line 2: malformed JSON: invalid literal, expected 'null' (at character 1)",
                                "line 3: claim 1: incident_id: unknown incident 'nowhere'"]


# -- sources as people mean them ---------------------------------------------------------------

SPELLINGS = ["White Helmets", " white   helmets ", "White\u00a0Helmets", "White\u200bHelmets",
             "\uff37\uff28\uff29\uff34\uff25 helmets", "WHITE\u2003HELMETS", "White\u2028Helmets", "White \ufeffHelmets", "Whi\u200dte Helmets"]


def test_spellings_of_one_source_are_one_claim(book):
    docs = [report(f"r{n}", claim("i1", spelling, n + 1), incidents=[{"incident_id": "i1"}],
                   published_at=f"2024-01-{n + 1:02d}") for n, spelling in enumerate(SPELLINGS)]
    result = book.ingest([json.dumps(d) for d in docs])
    assert (result.accepted, result.rejected) == (len(SPELLINGS), [])
    [one] = book.history()["claims"]
    assert one["source"] == "White Helmets" and len(one["entries"]) == len(SPELLINGS)
    assert book.tally()["rows"][0]["sources"] == ["White Helmets"]
    for spelling in SPELLINGS:
        assert len(book.history(source=spelling)["claims"]) == 1
    assert book.ingest([json.dumps({"kind": "retraction", "incident_id": "i1", "source": "white\u3000helmets",
                                    "measure": "killed", "published_at": "2024-02-01", "reason": "withdrawn"})]).accepted == 1
    assert book.tally()["rows"] == []


@pytest.fixture
def legacy(tmp_path):
    """A copy of the store written by the code at aa66c0a, opened with today's."""
    from tollbook.api import Tollbook

    shutil.copy(LEGACY / "store.db", tmp_path / "store.db")
    with Tollbook(str(tmp_path / "store.db"), editor="tester") as book:
        yield book


def _expected(name: str) -> dict:
    return json.loads((LEGACY / name).read_text())


VARIANTS = {"White Helmets", "White  Helmets", "White\u00a0Helmets", "White\u200bHelmets", "\uff37\uff28\uff29\uff34\uff25 helmets"}


def test_a_store_written_before_answers_the_same_for_its_sources(legacy):
    """Every answer the old code gave stands, except that the five spellings of White Helmets
    are now one source: on their incident it counts once, with its latest published figure."""
    tally = legacy.tally()
    old = {r["key"]: r for r in _expected("tally-incident.json")["rows"]}
    new = {r["key"]: r for r in tally["rows"]}
    assert new.keys() == old.keys()
    for key in old.keys() - {"sy-legacy-sources"}:
        assert new[key] == old[key], key
    # Published 2018-09-10 .. 14: "White\u200bHelmets" (7) is the latest; UOSSM is retracted.
    assert new["sy-legacy-sources"] == {"key": "sy-legacy-sources", "low": 7, "high": 7, "best": 7, "incidents": 1,
                                        "sources": ["White Helmets"]}
    by_source = {r["key"]: r for r in legacy.tally(by="source")["rows"]}
    old_source = {r["key"]: r for r in _expected("tally-source.json")["rows"]}
    for key in old_source.keys() - VARIANTS:
        assert by_source[key] == old_source[key], key
    assert by_source["White Helmets"] | {"sources": None} == {"key": "White Helmets", "low": 11, "high": 11, "best": 11,
                                                              "incidents": 2, "sources": None}
    assert (VARIANTS - {"White Helmets"}).isdisjoint(by_source)
    by_admin1 = {r["key"]: r for r in legacy.tally(by="admin1")["rows"]}
    for r in _expected("tally-admin1.json")["rows"]:
        if r["key"] != "Idlib":  # Abdeen (4) and the legacy incident (now 7, before 3..40)
            assert by_admin1[r["key"]] == r
    assert rows(legacy.tally(by="admin1"))["Idlib"] == (11, 11, 11, 2)
    # The history is the same record: every claim, under its id, with every entry.
    history = legacy.history(incident="sy-legacy-sources")
    assert _strip_times(history) == _strip_times(_expected("history.json"))
    for answer in (legacy.tally(by="source"), legacy.history()):
        assert answer  # and a rebuild answers the same
    before = {by: legacy.tally(by=by) for by in GROUPINGS}
    legacy.rebuild()
    assert {by: legacy.tally(by=by) for by in GROUPINGS} == before


def _strip_times(answer):
    return json.loads(re.sub(r'"recorded_at": "[^"]+"', '"recorded_at": ""', json.dumps(answer, sort_keys=True)))


def test_a_store_written_before_adds_to_the_claims_it_holds(legacy):
    ids = {c["source"]: c["claim_id"] for c in _expected("history.json")["claims"]}
    docs = [
        # The same spelling as before: its own claim gets version 2.
        report("new-1", claim("sy-legacy-sources", "White  Helmets", 20), published_at="2018-09-21"),
        # Another old spelling, corrected: its own claim's version 1.
        {"kind": "correction", "incident_id": "sy-legacy-sources", "source": "\uff37\uff28\uff29\uff34\uff25 helmets",
         "measure": "killed", "version": 1, "low": 60, "high": 60, "reason": "typed 6 for 60"},
        # A spelling never seen: the claim under the source's key ("White Helmets", same id as before).
        report("new-2", claim("sy-legacy-sources", "white\u2003helmets", 30), published_at="2018-09-22"),
    ]
    result = legacy.ingest([json.dumps(d) for d in docs])
    assert (result.accepted, result.rejected) == (3, [])
    claims = {c["claim_id"]: c for c in legacy.history(incident="sy-legacy-sources")["claims"]}
    assert claims.keys() == set(ids.values())  # no claim was added
    assert [e["low"] for e in claims[ids["White  Helmets"]]["entries"]] == [4, 40, 20]
    assert [e["low"] for e in claims[ids["\uff37\uff28\uff29\uff34\uff25 helmets"]]["entries"]] == [6, 60]
    assert [e["low"] for e in claims[ids["White Helmets"]]["entries"]] == [3, 30]
    # One source, its latest published figure: 30 (2018-09-22).
    assert rows(legacy.tally(incident="sy-legacy-sources")) == {"sy-legacy-sources": (30, 30, 30, 1)}
    assert rows(legacy.tally(by="source"))["White Helmets"] == (34, 34, 34, 2)
    legacy.rebuild()
    assert rows(legacy.tally(by="source"))["White Helmets"] == (34, 34, 34, 2)


# -- property: no JSON value anywhere makes anything raise --------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
    | st.sampled_from(["", "2024-01-02", "2024-01-02T00:00:00Z", "i1", "S", "killed", "\x00", "a" * 1001, "2100-01-01"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)

BASES = {
    "report": {"kind": "report", "report_id": "p", "published_at": "2024-01-02",
               "incidents": [{"incident_id": "i2", "country": "C"}],
               "claims": [{"incident_id": "i2", "source": "S", "measure": "killed", "low": 1}]},
    "incident": {"kind": "incident", "incident_id": "i3", "country": "C", "occurred_from": "2024-01-01"},
    "correction": {"kind": "correction", "incident_id": "i1", "source": "S", "measure": "killed", "version": 1,
                   "low": 2, "reason": "typo"},
    "retraction": {"kind": "retraction", "incident_id": "i1", "source": "S", "measure": "killed",
                   "published_at": "2024-01-03", "reason": "withdrawn"},
    "merge": {"kind": "merge", "incident_id": "i3", "into": "i1", "reason": "same"},
}
FIELDS = sorted({("top", k) for d in BASES.values() for k in d} | {("top", "extra"), ("top", "attributes")}
                | {("claim", k) for k in ("incident_id", "source", "measure", "group", "low", "high", "best",
                                           "qualifier", "published_at", "quote", "note", "extra")}
                | {("incident", k) for k in ("incident_id", "title", "country", "lat", "occurred_from", "extra")})


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_json_value_in_any_field_is_taken_or_refused_in_one_line(data):
    from tollbook.api import Tollbook

    with tempfile.TemporaryDirectory() as folder, Tollbook(str(Path(folder) / "p.db"), editor="p") as book:
        base = report("r1", claim("i1", "S", 1), incidents=[{"incident_id": "i1", "occurred_from": "2024-01-01"}])
        assert book.ingest([base]).accepted == 1
        for _ in range(data.draw(st.integers(1, 3))):
            kind = data.draw(st.sampled_from(sorted(BASES)))
            document = json.loads(json.dumps(BASES[kind]))
            where, field = data.draw(st.sampled_from(FIELDS))
            value = data.draw(JSON_VALUES)
            target = document if where == "top" else (document.get(where + "s") or [{}])[0]
            target[field] = value
            as_text = data.draw(st.booleans())
            try:
                line = orjson.dumps(document) if as_text else document
            except orjson.JSONEncodeError:  # an integer beyond 64 bits: only a dict can carry it
                line = document
            result = book.ingest([line])
            assert result.accepted + result.unchanged + len(result.rejected) == 1
            for rejection in result.rejected:
                assert rejection.error and "\n" not in rejection.error and len(rejection.error) < 400, rejection.error
            if result.accepted:
                for by in GROUPINGS:
                    book.tally(by=by, policy=data.draw(st.sampled_from(POLICIES)))
                book.history()
                book.diff("0001-01-01", "9999-12-31")
        before = book.tally(by="admin1")
        book.rebuild()
        assert book.tally(by="admin1") == before
