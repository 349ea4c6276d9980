"""The shipped examples, answered through the Python API.

- examples/seed-2018-09-09.jsonl: a real report (EA WorldView, 9 Sept 2018) and its 10:30 GMT update.
- examples/illustrative-revisions.jsonl: ingested one line at a time, with an instant captured
  between lines, so every step can be asked about (--as-of) and diffed.
"""

from __future__ import annotations

import pytest

from conftest import INSTANT_RE, REVISIONS, SEED, lines_of, now, rows

ABDEEN = "sy-2018-09-08-abdeen"
HASS = "sy-2018-09-08-hass-hospital"
BOMBARDMENT = "sy-2018-09-08-idlib-hama-bombardment"
QAMISHLI = "sy-2018-09-08-qamishli-clash"
LATAMINAH = "sy-2018-09-09-lataminah-hospital"
MEDICAL = "sy-2018-09-idlib-hama-medical-facilities"

ARDIN = "nv-2024-05-10-ardin-market"
VO = "vo-ardin-shelling-0510"


@pytest.fixture
def seeded(book):
    result = book.ingest(SEED.open("rb"))
    assert (result.accepted, result.unchanged, result.rejected) == (2, 0, [])
    return book


# -- seed ---------------------------------------------------------------------------------

def test_seed_killed(seeded):
    answer = seeded.tally()
    assert answer["measure"] == "killed" and answer["group"] == "all" and answer["by"] == "incident"
    assert answer["policy"] == "conservative" and answer["as_of"] is None and answer["known_at"] is None
    assert answer["rows"] == [
        {"key": ABDEEN, "low": 4, "high": 4, "best": 4, "incidents": 1, "sources": ["White Helmets"]},
        {"key": QAMISHLI, "low": 18, "high": 18, "best": 18, "incidents": 1, "sources": ["EA WorldView"]},
    ]
    assert answer["total"] == {"low": 22, "high": 22, "best": 22, "incidents": 2}


def test_seed_groups(seeded):
    assert rows(seeded.tally(group="children")) == {ABDEEN: (1, 1, 1, 1)}
    assert rows(seeded.tally(group="combatants:regime")) == {QAMISHLI: (11, 11, 11, 1)}
    assert rows(seeded.tally(group="combatants:asayish")) == {QAMISHLI: (7, 7, 7, 1)}
    assert seeded.tally(group="combatants:asayish")["rows"][0]["sources"] == ["PYD police"]
    # Groups are not summed into "all": Qamishli's all is EA WorldView's 18 alone.
    assert seeded.tally(incident=QAMISHLI)["rows"][0]["sources"] == ["EA WorldView"]
    assert rows(seeded.tally(measure="facilities_damaged", group="civil_defence_centres")) == {MEDICAL: (2, 2, 2, 1)}
    assert rows(seeded.tally(measure="facilities_damaged", group="ambulance_systems")) == {MEDICAL: (1, 1, 1, 1)}
    assert rows(seeded.tally(measure="strikes", group="airstrikes")) == {BOMBARDMENT: (12, 12, 12, 1)}
    assert seeded.tally(measure="injured")["rows"] == []
    assert seeded.tally(measure="injured")["total"] == {"low": 0, "high": 0, "best": 0, "incidents": 0}


def test_seed_hospitals(seeded):
    answer = seeded.tally(measure="facilities_damaged", group="hospitals")
    assert rows(answer) == {HASS: (1, 1, 1, 1), LATAMINAH: (1, 1, 1, 1), MEDICAL: (3, 3, 3, 1)}
    assert [r["sources"] for r in answer["rows"]] == [["EA WorldView"], ["EA WorldView"], ["UOSSM"]]
    assert answer["total"] == {"low": 5, "high": 5, "best": 5, "incidents": 3}


def test_seed_known_before_the_update(seeded):
    hospitals = seeded.tally(measure="facilities_damaged", group="hospitals", known_at="2018-09-09T09:00:00Z")
    assert hospitals["known_at"] == "2018-09-09T09:00:00Z"
    assert rows(hospitals) == {HASS: (1, 1, 1, 1)}
    # An offset is the same instant; the update is published at 10:30Z exactly.
    assert rows(seeded.tally(measure="facilities_damaged", group="hospitals",
                             known_at="2018-09-09T12:29:59+02:00")) == {HASS: (1, 1, 1, 1)}
    assert len(seeded.tally(measure="facilities_damaged", group="hospitals",
                            known_at="2018-09-09T10:30:00Z")["rows"]) == 3
    assert rows(seeded.tally(known_at="2018-09-09T09:00:00Z")) == {ABDEEN: (4, 4, 4, 1), QAMISHLI: (18, 18, 18, 1)}
    assert seeded.tally(known_at="2018-09-08T23:59:59Z")["rows"] == []
    assert seeded.tally(known_at="2018-09-09")["total"]["low"] == 22


def test_seed_by_admin1(seeded):
    assert seeded.tally(by="admin1")["rows"] == [
        {"key": "Al-Hasakah", "low": 18, "high": 18, "best": 18, "incidents": 1, "sources": ["EA WorldView"]},
        {"key": "Idlib", "low": 4, "high": 4, "best": 4, "incidents": 1, "sources": ["White Helmets"]},
    ]
    hospitals = seeded.tally(measure="facilities_damaged", group="hospitals", by="admin1")
    assert rows(hospitals) == {"Hama": (1, 1, 1, 1), "Idlib": (4, 4, 4, 2)}
    assert hospitals["rows"][1]["sources"] == ["EA WorldView", "UOSSM"]
    assert hospitals["total"] == {"low": 5, "high": 5, "best": 5, "incidents": 3}
    assert rows(seeded.tally(measure="facilities_damaged", group="hospitals", by="admin1",
                             known_at="2018-09-09T09:00:00Z")) == {"Idlib": (1, 1, 1, 1)}


def test_seed_by_other_fields(seeded):
    hospitals = dict(measure="facilities_damaged", group="hospitals")
    assert rows(seeded.tally(by="country", **hospitals)) == {"Syria": (5, 5, 5, 3)}
    # No incident has admin2: one row keyed null.
    assert rows(seeded.tally(by="admin2", **hospitals)) == {None: (5, 5, 5, 3)}
    assert rows(seeded.tally(by="perpetrator", **hospitals)) == {"Russia / Assad regime": (2, 2, 2, 2),
                                                                 None: (3, 3, 3, 1)}
    assert rows(seeded.tally(by="perpetrator")) == {"Russia": (4, 4, 4, 1), "Assad regime / Asayish": (18, 18, 18, 1)}
    assert rows(seeded.tally(by="source")) == {"EA WorldView": (18, 18, 18, 1), "White Helmets": (4, 4, 4, 1)}
    assert rows(seeded.tally(by="source", **hospitals)) == {"EA WorldView": (2, 2, 2, 2), "UOSSM": (3, 3, 3, 1)}


def test_seed_by_day_month_year(seeded):
    hospitals = dict(measure="facilities_damaged", group="hospitals")
    # The medical-facilities incident has only occurred_to: no day, month or year (key null, last).
    by_day = seeded.tally(by="day", **hospitals)
    assert [r["key"] for r in by_day["rows"]] == ["2018-09-08", "2018-09-09", None]
    assert rows(by_day) == {"2018-09-08": (1, 1, 1, 1), "2018-09-09": (1, 1, 1, 1), None: (3, 3, 3, 1)}
    assert rows(seeded.tally(by="month", **hospitals)) == {"2018-09": (2, 2, 2, 2), None: (3, 3, 3, 1)}
    assert rows(seeded.tally(by="year", **hospitals)) == {"2018": (2, 2, 2, 2), None: (3, 3, 3, 1)}
    assert rows(seeded.tally(by="day")) == {"2018-09-08": (22, 22, 22, 2)}
    assert rows(seeded.tally(by="year")) == {"2018": (22, 22, 22, 2)}


def test_seed_history(seeded):
    claims = seeded.history(incident=ABDEEN)["claims"]
    assert [(c["source"], c["measure"], c["group"]) for c in claims] == [
        ("White Helmets", "killed", "all"), ("White Helmets", "killed", "children")]
    [entry] = claims[0]["entries"]
    assert entry["kind"] == "reported" and entry["version"] == 1
    assert (entry["low"], entry["high"], entry["best"]) == (4, 4, None)
    assert entry["published_at"] == "2018-09-09T00:00:00Z" and entry["report_id"] == "eaworldview-2018-09-09"
    assert entry["recorded_by"] == "tester" and INSTANT_RE.match(entry["recorded_at"])
    assert claims[0]["current"] == {"counting": True, "version": 1, "low": 4, "high": 4, "best": None}
    update = seeded.history(incident=MEDICAL)["claims"]
    assert {c["group"] for c in update} == {"hospitals", "civil_defence_centres", "ambulance_systems"}
    assert {c["entries"][0]["published_at"] for c in update} == {"2018-09-09T10:30:00Z"}
    assert all(c["current"]["version"] is None and not c["current"]["counting"]
               for c in seeded.history(incident=MEDICAL, known_at="2018-09-09T09:00:00Z")["claims"])


# -- illustrative revisions, one line at a time ---------------------------------------------

@pytest.fixture
def steps(book):
    """``stamps[i]`` is an instant after line i was stored and before line i+1 (stamps[0]: before any)."""
    stamps = [now()]
    for line in lines_of(REVISIONS):
        result = book.ingest([line])
        assert (result.accepted, result.rejected) == (1, [])
        stamps.append(now())
    return book, stamps


def test_revisions_as_of_each_step(steps):
    book, s = steps
    expected = [
        {},
        {ARDIN: (6, 6, 6, 1)},
        {ARDIN: (9, 11, 9, 1)},
        {ARDIN: (9, 11, 9, 1)},  # the correction fixes version 1, which is not current
        {ARDIN: (9, 9, 9, 1)},  # the Valley Health Office withdrew its 11
        {ARDIN: (9, 9, 9, 1), VO: (10, 10, 10, 1)},
        {ARDIN: (9, 10, 9, 1)},  # merged: Valley Observers' 10 counts under the canonical id
    ]
    for stamp, want in zip(s, expected, strict=True):
        answer = book.tally(as_of=stamp)
        assert answer["as_of"] == stamp
        assert rows(answer) == want, stamp
    assert rows(book.tally()) == expected[-1]
    assert book.tally(as_of=s[2])["rows"][0]["sources"] == ["Civil Defence", "Valley Health Office"]
    assert book.tally()["rows"][0]["sources"] == ["Civil Defence", "Valley Observers"]
    # injured was never revised
    assert rows(book.tally(measure="injured", as_of=s[1])) == {ARDIN: (20, 25, 20, 1)}


def test_revisions_correction(steps):
    book, s = steps
    early = "2024-05-10T12:00:00Z"  # only version 1 is published by then
    assert rows(book.tally(known_at=early, as_of=s[2])) == {ARDIN: (6, 6, 6, 1)}
    assert rows(book.tally(known_at=early, as_of=s[3])) == {ARDIN: (8, 8, 8, 1)}
    # A correction recorded later applies to the version published earlier.
    assert rows(book.tally(known_at=early)) == {ARDIN: (8, 8, 8, 1)}
    claim = book.history(incident=ARDIN, source="Civil Defence", measure="killed")["claims"]
    assert len(claim) == 1
    assert claim[0]["current"] == {"counting": True, "version": 2, "low": 9, "high": 9, "best": None}
    early_claim = book.history(incident=ARDIN, source="Civil Defence", measure="killed", known_at=early)["claims"][0]
    assert early_claim["current"] == {"counting": True, "version": 1, "low": 8, "high": 8, "best": None}
    before = book.history(incident=ARDIN, source="Civil Defence", measure="killed", known_at=early, as_of=s[2])
    assert before["claims"][0]["current"]["low"] == 6


def test_revisions_retraction(steps):
    book, s = steps
    # Published at 2024-05-12T12:00Z: known before then, the 11 still counts.
    assert rows(book.tally(known_at="2024-05-12T11:59:59Z")) == {ARDIN: (9, 11, 9, 1)}
    assert rows(book.tally(known_at="2024-05-12T12:00:00Z")) == {ARDIN: (9, 10, 9, 1)}
    vho = book.history(source="Valley Health Office")["claims"][0]
    assert vho["current"] == {"counting": False, "version": 2, "low": None, "high": None, "best": None}
    assert [e["kind"] for e in vho["entries"]] == ["reported", "retracted"]
    assert vho["entries"][1]["reason"] == "the figure included victims of a separate strike"
    assert vho["entries"][1]["published_at"] == "2024-05-12T12:00:00Z"
    assert (vho["entries"][1]["low"], vho["entries"][1]["high"]) == (None, None)
    assert book.tally(by="source")["rows"] == [
        {"key": "Civil Defence", "low": 9, "high": 9, "best": 9, "incidents": 1, "sources": ["Civil Defence"]},
        {"key": "Valley Observers", "low": 10, "high": 10, "best": 10, "incidents": 1,
         "sources": ["Valley Observers"]},
    ]


def test_revisions_merge(steps):
    book, s = steps
    assert rows(book.tally(incident=VO)) == {ARDIN: (9, 10, 9, 1)}
    assert rows(book.tally(incident=VO, as_of=s[5])) == {VO: (10, 10, 10, 1)}
    assert rows(book.tally(incident=ARDIN, as_of=s[5])) == {ARDIN: (9, 9, 9, 1)}
    # Pooled incidents count once in every grouping.
    assert rows(book.tally(by="admin1")) == {"Valley": (9, 10, 9, 1)}
    assert rows(book.tally(by="admin1", as_of=s[5])) == {"Valley": (19, 19, 19, 2)}
    assert rows(book.tally(by="day")) == {"2024-05-10": (9, 10, 9, 1)}
    claims = book.history(incident=VO)["claims"]
    assert {c["incident_id"] for c in claims} == {ARDIN, VO}
    [vo] = [c for c in claims if c["incident_id"] == VO]
    assert vo["canonical_id"] == ARDIN and vo["source"] == "Valley Observers"
    assert all("canonical_id" not in c for c in claims if c["incident_id"] == ARDIN)
    assert "canonical_id" not in book.history(incident=VO, as_of=s[5])["claims"][0]
    assert [c["incident_id"] for c in book.history(incident=VO, as_of=s[5])["claims"]] == [VO]


def test_revisions_policies(steps):
    book, _ = steps
    # Known at 2024-05-12T00:00Z: Civil Defence 9 (11 May 07:30), Valley Health Office 11 (07:30),
    # Valley Observers 10 (11 May 18:00, the latest published).
    point = "2024-05-12T00:00:00Z"
    want = {"conservative": 9, "highest": 11, "latest": 10}
    for policy, best in want.items():
        answer = book.tally(known_at=point, policy=policy)
        assert answer["policy"] == policy
        assert rows(answer) == {ARDIN: (9, 11, best, 1)}
        assert answer["total"]["best"] == best
    assert book.tally(policy="highest")["rows"][0]["best"] == 10
    assert book.tally(policy="latest", as_of=steps[1][4])["rows"][0]["best"] == 9
    with pytest.raises(ValueError):
        book.tally(policy="median")


def test_revisions_history(steps):
    book, s = steps
    answer = book.history(incident=ARDIN)
    assert answer["as_of"] is None and answer["known_at"] is None
    summary = [(c["incident_id"], c["source"], c["measure"], [(e["kind"], e["version"], e["low"], e["high"])
                                                              for e in c["entries"]]) for c in answer["claims"]]
    assert sorted(summary) == sorted([
        (ARDIN, "Civil Defence", "killed", [("reported", 1, 6, 6), ("reported", 2, 9, 9), ("corrected", 1, 8, 8)]),
        (ARDIN, "Civil Defence", "injured", [("reported", 1, 20, 25)]),
        (ARDIN, "Valley Health Office", "killed", [("reported", 1, 11, 11), ("retracted", 2, None, None)]),
        (VO, "Valley Observers", "killed", [("reported", 1, 10, 10)]),
    ])
    entries = [e for c in answer["claims"] for e in c["entries"]]
    # Each entry was recorded between the instants captured around its line.
    line_of = {("reported", "nvm-2024-05-10"): 1, ("reported", "nvm-2024-05-11"): 2,
               ("corrected", None): 3, ("retracted", None): 4, ("reported", "vo-2024-05-11"): 5}
    for entry in entries:
        line = line_of[(entry["kind"], entry["report_id"])]
        assert s[line - 1] < entry["recorded_at"] < s[line], entry
        assert entry["recorded_by"] == "tester"
    for claim in answer["claims"]:  # entries in recorded order
        assert [e["recorded_at"] for e in claim["entries"]] == sorted(e["recorded_at"] for e in claim["entries"])
    corrected = next(e for e in entries if e["kind"] == "corrected")
    assert corrected["reason"] == "the 10 May statement said eight, not six"
    assert corrected["published_at"] == "2024-05-10T09:00:00Z" and corrected["report_id"] is None
    reported = next(e for e in entries if e["report_id"] == "nvm-2024-05-10" and e["low"] == 6)
    assert reported["reason"] is None and reported["published_at"] == "2024-05-10T09:00:00Z"
    # --as-of shows only what was recorded by then.
    at2 = book.history(incident=ARDIN, as_of=s[2])
    assert at2["as_of"] == s[2]
    assert sorted(len(c["entries"]) for c in at2["claims"]) == [1, 1, 2]
    assert sorted(len(c["entries"]) for c in book.history(incident=ARDIN, as_of=s[1])["claims"]) == [1, 1]
    assert book.history(as_of=s[0])["claims"] == []
    # filters
    assert [c["measure"] for c in book.history(incident=ARDIN, measure="injured")["claims"]] == ["injured"]
    assert book.history(incident=ARDIN, group="children")["claims"] == []
    assert {c["source"] for c in book.history(source="civil defence")["claims"]} == {"Civil Defence"}


def test_revisions_diff(steps):
    book, s = steps
    d = book.diff(s[1], s[2])
    assert (d["from"], d["to"], d["known_at"], d["measure"], d["group"]) == (s[1], s[2], None, "killed", "all")
    [change] = d["changes"]
    assert change["incident_id"] == ARDIN
    assert change["before"] == {"low": 6, "high": 6, "best": 6}
    assert change["after"] == {"low": 9, "high": 11, "best": 9}
    assert sorted((e["kind"], e["version"], e["low"], e["report_id"]) for e in change["entries"]) == [
        ("reported", 1, 11, "nvm-2024-05-11"), ("reported", 2, 9, "nvm-2024-05-11")]
    # The correction of a version that is not current changes no tally...
    assert book.diff(s[2], s[3])["changes"] == []
    # ...except where only that version is known.
    [change] = book.diff(s[2], s[3], known_at="2024-05-10T12:00:00Z")["changes"]
    assert (change["before"], change["after"]) == ({"low": 6, "high": 6, "best": 6}, {"low": 8, "high": 8, "best": 8})
    assert [(e["kind"], e["version"], e["reason"]) for e in change["entries"]] == [
        ("corrected", 1, "the 10 May statement said eight, not six")]
    [change] = book.diff(s[3], s[4])["changes"]
    assert (change["before"], change["after"]) == ({"low": 9, "high": 11, "best": 9}, {"low": 9, "high": 9, "best": 9})
    assert [e["kind"] for e in change["entries"]] == ["retracted"]
    # The merge: the canonical incident's row grows and the merged-away one's disappears.
    merge = {c["incident_id"]: (c["before"], c["after"]) for c in book.diff(s[5], s[6])["changes"]}
    assert merge == {ARDIN: ({"low": 9, "high": 9, "best": 9}, {"low": 9, "high": 10, "best": 9}),
                     VO: ({"low": 10, "high": 10, "best": 10}, None)}
    # From nothing to everything: before is null, every entry in (from, to] is there.
    [change] = book.diff(s[0], s[6])["changes"]
    assert change["before"] is None and change["after"] == {"low": 9, "high": 10, "best": 9}
    assert len(change["entries"]) == 6  # CD 1, 2, correction; VHO 1, retraction; VO 1
    assert book.diff(s[6], now())["changes"] == []
    injured = book.diff(s[0], s[1], measure="injured")
    assert injured["measure"] == "injured" and injured["changes"][0]["after"] == {"low": 20, "high": 25, "best": 20}


def test_revisions_reingested_whole_is_unchanged(steps, db_path):
    from conftest import event_count

    book, _ = steps
    count = event_count(db_path)
    result = book.ingest(REVISIONS.open("rb"))
    assert (result.accepted, result.unchanged, result.rejected) == (0, 6, [])
    assert event_count(db_path) == count
