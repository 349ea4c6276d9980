"""The ledger's guarantees, through the Python API: the recorded clock, rebuilds, several
readers and writers on one store, how sources are matched, and the tally rules of CONTRACT 3-4
(which version is current, retractions, corrections, merges, fields as they stood)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from conftest import REVISIONS, SEED, event_count, lines_of, now, rows, signature, sql, stored_events
from tollbook.projections import queries

ABDEEN = "sy-2018-09-08-abdeen"


def report(report_id: str, published_at: str, *claims: dict, incidents: tuple = ()) -> str:
    return json.dumps({"kind": "report", "report_id": report_id, "published_at": published_at,
                       "incidents": list(incidents), "claims": list(claims)})


def claim(incident_id: str, source: str, low: int, **fields) -> dict:
    return {"incident_id": incident_id, "source": source, "measure": "killed", "low": low} | fields


def incident(incident_id: str, **fields) -> dict:
    return {"incident_id": incident_id, "occurred_from": "2024-01-01", "country": "Examplestan"} | fields


def doc(kind: str, **fields) -> str:
    return json.dumps({"kind": kind, **fields})


def micros(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def shift(text: str, microseconds: int) -> str:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00")) + timedelta(microseconds=microseconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def documents_in_log(path: str) -> list[list[dict]]:
    """The log cut into documents: each accepted document's events end with its receipt."""
    groups, current = [], []
    for event in stored_events(path):
        current.append(event)
        if event["topic"].endswith("DocumentReceived"):
            groups.append(current)
            current = []
    assert current == [], "events after the last receipt"
    return groups


# -- the recorded clock ----------------------------------------------------------------------

def test_recorded_at_is_one_per_document_and_strictly_increasing(book, db_path, monkeypatch):
    assert book.ingest(REVISIONS.open("rb")).accepted == 6  # one batch
    assert book.ingest(SEED.open("rb")).accepted == 2
    # A wall clock that jumps back (here: to 1970) must not make recorded_at go back.
    import tollbook.store.eventstore

    monkeypatch.setattr(tollbook.store.eventstore, "to_micros_now", lambda: 1_000)
    assert book.ingest([report("late", "2024-06-01", claim(ABDEEN, "UOSSM", 5)),
                        doc("incident", incident_id="x", admin1="North")]).accepted == 2
    monkeypatch.undo()
    groups = documents_in_log(db_path)
    assert len(groups) == 10
    stamps = []
    for group in groups:
        assert len({e["state"]["timestamp"] for e in group}) == 1, group  # one recorded_at per document
        stamps.append(group[0]["state"]["timestamp"])
    assert all(a < b for a, b in zip(stamps, stamps[1:])), stamps  # strictly increasing
    # History shows the same instants: the entries of one report share one recorded_at.
    seed_entries = [e for c in book.history()["claims"] for e in c["entries"]
                    if e["report_id"] == "eaworldview-2018-09-09"]
    assert len(seed_entries) == 7 and len({e["recorded_at"] for e in seed_entries}) == 1
    assert micros(seed_entries[0]["recorded_at"]) == stamps[6]


def test_bulk_ingest_saves_each_document_once_in_small_batches(stores, monkeypatch):
    """Many transactions, each committing while the next batch is decided, and a cache too
    small to keep what they changed: no batch conflicts with the one before it (each document
    is saved once), and the store holds what a single batch stores."""
    from bench.generate import generate
    from tollbook.api import Tollbook
    from tollbook.store.eventstore import EventStore

    lines = [json.dumps(d) for d in generate(4000, seed=11)]
    saved: list[int] = []

    def counting(save):
        def saving(self, documents):
            saved.append(len(documents))
            return save(self, documents)
        return saving

    small, whole = stores.new("small"), stores.new("whole")
    with Tollbook(small, editor="tester") as book:
        monkeypatch.setattr(EventStore, "append", counting(EventStore.append))
        monkeypatch.setattr(EventStore, "write_behind", counting(EventStore.write_behind))
        result = book.ingest(lines, batch_events=400, cache_size=300, prefetch_documents=50)
        monkeypatch.undo()
        stored = event_count(small)  # another connection: everything is committed once ingest returns
        assert (result.accepted, result.rejected) == (len(lines), [])
        assert len(saved) > 10 and sum(saved) == len(lines)
        small_tally = book.tally(by="admin1")
    with Tollbook(whole, editor="tester") as book:
        assert book.ingest(lines).accepted == len(lines)
        assert book.tally(by="admin1")["rows"] == small_tally["rows"]
    assert [signature(e) for e in stored_events(small)] == [signature(e) for e in stored_events(whole)]
    assert stored == event_count(whole)


def test_projection_writes_cannot_cost_the_log_its_durability(tmp_path):
    """The projections share the SQLite file with the event log. Their writes may skip the sync
    at commit (NORMAL), but never the syncs that keep the file whole (OFF would let a checkpoint
    on their connection move the log's pages into the file unsynced, and a power cut then
    corrupt the log). The log's own writes sync at every commit (FULL)."""
    from tollbook.store.eventstore import open_store

    store = open_store(str(tmp_path / "sync.db"))
    try:
        for durable, level in ((True, 2), (False, 1)):  # FULL, NORMAL
            with store.transaction(durable=durable) as cursor:
                cursor.execute("PRAGMA synchronous")
                assert cursor.fetchone()[0] == level
    finally:
        store.close()


def test_as_of_includes_the_instant_recorded(book):
    book.ingest(SEED.open("rb"))
    entry = book.history(incident=ABDEEN)["claims"][0]["entries"][0]
    at = entry["recorded_at"]
    assert rows(book.tally(as_of=at))[ABDEEN] == (4, 4, 4, 1)
    assert book.tally(as_of=shift(at, -1))["rows"] == []
    assert book.history(as_of=shift(at, -1))["claims"] == []
    assert len(book.history(as_of=at)["claims"]) == 7
    # diff --from R1 --to R2 takes the entries recorded in (R1, R2].
    later = now()
    assert book.diff(at, later)["changes"] == []
    [change] = [c for c in book.diff(shift(at, -1), at)["changes"] if c["incident_id"] == ABDEEN]
    assert change["before"] is None and len(change["entries"]) == 1


def test_two_writers_on_one_store(db_path):
    from tollbook.api import Tollbook

    with Tollbook(db_path, editor="ana") as ana, Tollbook(db_path, editor="bo") as bo:
        assert ana.tally()["rows"] == [] and bo.tally()["rows"] == []  # both projected (empty)
        assert ana.ingest(SEED.open("rb")).accepted == 2
        assert rows(bo.tally())[ABDEEN] == (4, 4, 4, 1)  # bo's queries catch up
        # bo decides on what ana stored: a correction of ana's claim, a claim on ana's incident.
        result = bo.ingest([doc("correction", incident_id=ABDEEN, source="White Helmets", measure="killed",
                                low=5, high=5, reason="typed 4 for 5"),
                            report("bo-1", "2018-09-10", claim(ABDEEN, "UOSSM", 6))])
        assert (result.accepted, result.rejected) == (2, [])
        assert rows(ana.tally())[ABDEEN] == (5, 6, 5, 1)
        entries = ana.history(incident=ABDEEN, source="White Helmets", group="all")["claims"][0]["entries"]
        assert [(e["kind"], e["recorded_by"]) for e in entries] == [("reported", "ana"), ("corrected", "bo")]
        # ana sees bo's report as already stored; bo sees ana's retraction.
        assert ana.ingest([report("bo-1", "2018-09-10", claim(ABDEEN, "UOSSM", 6))]).unchanged == 1
        ana.ingest([doc("retraction", incident_id=ABDEEN, source="UOSSM", measure="killed",
                        published_at="2018-09-11", reason="withdrawn")])
        assert rows(bo.tally())[ABDEEN] == (5, 5, 5, 1)
        assert ana.tally() == bo.tally() and ana.history() == bo.history()
    # A third object opened afterwards agrees, and the recorded clock never went back.
    with Tollbook(db_path) as third:
        assert rows(third.tally())[ABDEEN] == (5, 5, 5, 1)
    stamps = [g[0]["state"]["timestamp"] for g in documents_in_log(db_path)]
    assert all(a < b for a, b in zip(stamps, stamps[1:]))


def test_projectors_taking_turns_do_not_trust_what_they_kept_in_memory(db_path):
    """Each API object projects before it answers; when another one projected in between, what
    it kept of a claim's versions between batches is out of date."""
    from tollbook.api import Tollbook

    with Tollbook(db_path, editor="ana") as ana, Tollbook(db_path, editor="bo") as bo:
        ana.ingest([report("r0", "2024-01-01", claim("a", "S", 10, high=12), incidents=(incident("a"),))])
        assert rows(ana.tally()) == {"a": (10, 12, 10, 1)}
        bo.ingest([report("r1", "2024-01-02", claim("a", "S", 3))])
        assert rows(bo.tally()) == {"a": (3, 3, 3, 1)}
        ana.ingest([report("r2", "2024-01-03", claim("a", "S", 7))])
        for book in (ana, bo):
            assert rows(book.tally()) == {"a": (7, 7, 7, 1)}
            assert rows(book.tally(known_at="2024-01-02T12:00:00Z")) == {"a": (3, 3, 3, 1)}
            assert rows(book.tally(known_at="2024-01-01T12:00:00Z", policy="highest")) == {"a": (10, 12, 12, 1)}


def test_a_writer_that_lost_a_race_decides_again(db_path):
    """ana decides a new version of a claim; before she saves, bo stores another version of the
    same claim. ana's save must not overwrite bo's nor reuse his version number: she decides again."""
    from tollbook.api import Tollbook

    with Tollbook(db_path, editor="ana") as ana, Tollbook(db_path, editor="bo") as bo:
        ana.ingest(SEED.open("rb"))

        def ana_lines():
            yield report("ana-1", "2018-09-10", claim(ABDEEN, "White Helmets", 6))
            # ana's document is decided; bo gets in first.
            assert bo.ingest([report("bo-1", "2018-09-11", claim(ABDEEN, "White Helmets", 7))]).accepted == 1

        result = ana.ingest(ana_lines())
        assert (result.accepted, result.rejected) == (1, [])
        entries = bo.history(incident=ABDEEN, group="all")["claims"][0]["entries"]
        assert [(e["version"], e["low"], e["report_id"], e["recorded_by"]) for e in entries] == [
            (1, 4, "eaworldview-2018-09-09", "ana"), (2, 7, "bo-1", "bo"), (3, 6, "ana-1", "ana")]
        assert rows(ana.tally())[ABDEEN] == (7, 7, 7, 1)  # bo's is the latest published


def test_rebuild_gives_identical_answers(book, db_path):
    stamps = [now()]
    for line in [*lines_of(SEED), *lines_of(REVISIONS)]:
        book.ingest([line])
        stamps.append(now())
    book.ingest([doc("incident", incident_id=ABDEEN, admin1="Aleppo"),
                 doc("merge", incident_id="sy-2018-09-08-hass-hospital", into="sy-2018-09-09-lataminah-hospital")])
    stamps.append(now())

    def answers():
        out = []
        for at in (None, stamps[2], stamps[5], stamps[-2]):
            for known in (None, "2018-09-09T09:00:00Z", "2024-05-11T00:00:00Z"):
                out.append(book.history(as_of=at, known_at=known))
                for by in ("incident", "admin1", "source", "day"):
                    out.append(book.tally(by=by, as_of=at, known_at=known))
                    out.append(book.tally(by=by, as_of=at, known_at=known, measure="facilities_damaged",
                                          group="hospitals", policy="highest"))
        out.append(book.diff(stamps[0], stamps[-1]))
        out.append(book.diff(stamps[3], stamps[-2], known_at="2024-05-12T00:00:00Z"))
        return json.dumps(out, sort_keys=True)

    before = answers()
    assert book.rebuild() == event_count(db_path)
    assert answers() == before
    from tollbook.api import Tollbook

    with Tollbook(db_path) as other:  # rebuilt tables, read by a fresh object
        assert json.dumps(other.history(), sort_keys=True) == json.dumps(book.history(), sort_keys=True)


def test_a_transaction_read_in_pieces_projects_as_one_read(book, db_path):
    """A projector transaction reads the log a piece at a time. In pieces smaller than the
    transaction, with one projection rebuilding from the start while the other is part of the
    way (each applies only what it has not), the read models come out as in one read."""
    from bench.generate import generate
    from tollbook.projections.projector import Projector

    lines = [json.dumps(d) for d in generate(1500, seed=3)]
    assert book.ingest(lines[:400]).rejected == []
    book.refresh()
    part_way = event_count(db_path)
    claims = next(p.name for p in book.projector.projections if p.name.startswith("claims"))
    with book.store.transaction() as cursor:  # the claims projection starts over
        cursor.execute(f"DELETE FROM {book.store.tracking_table} WHERE application_name = ?", (claims,))
    assert book.ingest(lines[400:]).rejected == []
    book.projector = Projector(book.store, batch=1000, read=300)
    positions = book.projector.positions()
    assert positions[claims] == 0 and {v for k, v in positions.items() if k != claims} == {part_way}
    assert book.refresh() == event_count(db_path)

    def rows():
        return {table: sorted(sql(db_path, f"SELECT * FROM {table}"), key=repr)
                for table in ("tb_entries", "tb_counting", "tb_incidents", "tb_canonical", "tb_merges")}

    projected = rows()
    book.rebuild()
    assert rows() == projected


def test_a_file_is_projected_beside_its_ingest_and_the_answers_are_the_same(stores, monkeypatch, tmp_path):
    """An ingest of a long file (4 MB or more; here any) has the follower beside it
    (tollbook/follower.py): the read models stand at the log's head when it returns, the
    follower loaded what a file of revisions reads, and every answer is that of the same
    documents ingested from lists, with no follower."""
    import tollbook.follower
    from bench.generate import generate
    from test_import_equivalence import without_clock
    from tollbook.api import Tollbook
    from tollbook.projections.queries import GROUPINGS

    first = [json.dumps(d) for d in generate(3000, seed=11)]  # merges, corrections, retractions
    first += [report(f"a{n}", "2024-01-02T00:00:00Z", claim(f"x{n}", "S", n), incidents=(incident(f"x{n}"),))
              for n in range(600)]
    revisions = [report(f"b{n}", "2024-01-03T00:00:00Z", claim(f"x{n}", "S", n + 1)) for n in range(600)]
    files = []
    for name, lines in (("first", first), ("revisions", revisions)):
        files.append(tmp_path / f"{name}.jsonl")
        files[-1].write_text("".join(line + "\n" for line in lines))
    requests = []
    request = tollbook.follower.Loading.request
    monkeypatch.setattr(tollbook.follower.Loading, "request", lambda self, everything: (
        requests.append(len(everything)), request(self, everything))[1])
    with Tollbook(stores.new(), editor="t") as beside, Tollbook(stores.new(), editor="t") as alone:
        with monkeypatch.context() as long:
            long.setattr(tollbook.follower, "ALONGSIDE_BYTES", 0)
            for path in files:
                with open(path, "rb") as lines:  # short runs and batches: many of both
                    result = beside.ingest(lines, prefetch_documents=60, batch_events=100)
                assert result.rejected == [] and result.accepted > 500
                assert set(beside.projector.positions().values()) == {beside.store.last_position()}
        loads = len(requests)
        assert loads >= 5  # the revisions' runs
        for lines in (first, revisions):
            assert alone.ingest(lines).rejected == []
        assert len(requests) == loads  # a list is not a long file: no follower
        for by in GROUPINGS:
            assert without_clock(beside.tally(by=by)) == without_clock(alone.tally(by=by))
        for row in beside.tally(by="incident")["rows"][::25]:
            assert without_clock(beside.history(incident=row["key"])) == without_clock(alone.history(incident=row["key"]))


@pytest.mark.parametrize("rival", ["projects the same batch", "rebuilds"])
def test_a_batch_worked_out_while_another_projector_wrote_is_worked_out_again(book, db_path, monkeypatch, rival):
    """A projector works its batch out without the write lock. If another one (another
    process's: a follower beside an import, a rebuild) writes the projections meanwhile, the
    batch is not written as worked out (it would be applied twice, or on stale state): it is
    worked out again under the lock, and the read models come out as one projector makes them."""
    from bench.generate import generate
    from tollbook.api import Tollbook
    from tollbook.projections.projector import Projector

    lines = [json.dumps(d) for d in generate(600, seed=5)]
    assert book.ingest(lines[:100]).rejected == []
    book.refresh()
    assert book.ingest(lines[100:]).accepted > 100
    other = Tollbook(db_path, editor="other")
    rivals = [other.refresh if rival == "projects the same batch" else other.rebuild]
    worked_out = []
    project, transaction = Projector._project, book.store.transaction

    def working_out(self, cursor, *, locked):
        if self is book.projector:
            worked_out.append(locked)
        return project(self, cursor, locked=locked)

    def writing(*args, **options):
        if options.get("durable") is False and rivals:  # worked out; before it is written, the rival writes
            rivals.pop()()
        return transaction(*args, **options)

    monkeypatch.setattr(Projector, "_project", working_out)
    monkeypatch.setattr(book.store, "transaction", writing)
    try:
        assert book.refresh() == 0  # it applied nothing: the rival had projected it all
    finally:
        other.close()
    assert worked_out[0] is False and True in worked_out  # worked out again, under the lock
    monkeypatch.undo()

    def tables():
        return {table: sorted(sql(db_path, f"SELECT * FROM {table}"), key=repr)
                for table in ("tb_entries", "tb_counting", "tb_incidents", "tb_canonical", "tb_merges", "tb_releases")}

    projected = tables()
    book.rebuild()
    assert tables() == projected
    book.ingest([report("m", "2024-01-01", claim("m1", "S", 1), claim("m2", "T", 2),
                        incidents=(incident("m1"), incident("m2"))), doc("merge", incident_id="m1", into="m2")])
    worked_out.clear()
    monkeypatch.setattr(Projector, "_project", working_out)
    # A merge too is worked out without the lock (it reads the batch's own rows, writes none).
    assert book.refresh() > 0 and worked_out == [False]
    assert [(r["key"], r["sources"]) for r in book.tally()["rows"] if r["key"] in ("m1", "m2")] == [("m2", ["S", "T"])]


def test_a_projection_that_keeps_failing_is_not_retried_for_ever(book, monkeypatch):
    """A batch refused because another process projected it first is read again; one refused
    every time is a fault, raised after a few tries instead of looped on."""
    from tollbook.store.eventsourcing_adapter import IntegrityError

    from tollbook.projections.projector import Claims, Projector

    book.ingest(SEED.open("rb"))
    tries = []

    def refused(self, cursor, notifications):
        tries.append(1)
        raise IntegrityError("refused")

    monkeypatch.setattr(Claims, "apply", refused)
    with pytest.raises(IntegrityError):
        book.refresh()
    assert len(tries) == Projector.RETRIES + 1


# -- sources ---------------------------------------------------------------------------------

def test_source_is_compared_after_trimming_and_case_folding(book):
    book.ingest(SEED.open("rb"))
    result = book.ingest([report("wh-2018-09-10", "2018-09-10", claim(ABDEEN, " white helmets ", 5))])
    assert (result.accepted, result.rejected) == (1, [])
    claims = book.history(incident=ABDEEN, group="all")["claims"]
    assert len(claims) == 1  # a revision, not a second source
    assert claims[0]["source"] == "White Helmets"
    assert [(e["version"], e["low"]) for e in claims[0]["entries"]] == [(1, 4), (2, 5)]
    assert book.tally(incident=ABDEEN)["rows"] == [
        {"key": ABDEEN, "low": 5, "high": 5, "best": 5, "incidents": 1, "sources": ["White Helmets"]}]
    assert rows(book.tally(by="source"))["White Helmets"] == (5, 5, 5, 1)
    assert len(book.tally(by="source")["rows"]) == 2
    # corrections, retractions and filters find it the same way
    result = book.ingest([doc("correction", incident_id=ABDEEN, source="WHITE HELMETS", measure="killed",
                              version=1, low=3, high=3, reason="typed 4 for 3"),
                          doc("retraction", incident_id=ABDEEN, source="White helmets  ", measure="killed",
                              group="children", published_at="2018-09-11", reason="withdrawn")])
    assert (result.accepted, result.rejected) == (2, [])
    assert [c["group"] for c in book.history(source="  WHITE helmets")["claims"]] == ["all", "children"]
    assert book.tally(group="children")["rows"] == []


@pytest.mark.parametrize(("order", "expected"), [
    ("bdac", {"WHITE HELMETS": (7, 7, 7, 3)}),  # the earliest claim is on an incident no merge pools
    ("cbda", {"white helmets": (9, 9, 9, 3)}),  # ... on one the merge pools
])
def test_a_source_is_named_as_in_its_earliest_recorded_claim(book, order, expected):
    """``--by source`` sums a source's figures under its key, named as its earliest-recorded
    claim names it; the database sums the incidents no merge pools, the rest are added in."""
    book.ingest([report("r0", "2024-01-01", incidents=[incident(i) for i in "abcd"])])
    spelled = {"a": "White Helmets", "b": "WHITE HELMETS", "c": "white helmets", "d": "White helmets"}
    for number, incident_id in enumerate(order, 1):
        book.ingest([report(f"r{number}", "2024-01-02", claim(incident_id, spelled[incident_id], number))])
    # c's claims count under a: of the two, the one recorded later (same published_at)
    book.ingest([doc("merge", incident_id="c", into="a", reason="same strike")])
    for policy in ("conservative", "highest", "latest"):
        answer = book.tally(by="source", policy=policy)
        assert rows(answer) == expected, policy
        [(low, high, best, incidents)] = expected.values()
        assert answer["total"] == {"low": low, "high": high, "best": best, "incidents": incidents}, policy


def test_latest_policy_over_the_whole_store(book):
    """``--policy latest`` without ``--incident`` (tallied by the database): an incident's best
    is that of the source that published last, the one recorded last on a tie; by source, each
    figure's best, else its low."""
    book.ingest([report("r0", "2024-01-01", incidents=[incident("a"), incident("b")])])
    book.ingest([report("r1", "2024-01-02", claim("a", "S1", 5, best=6, high=8))])
    book.ingest([report("r2", "2024-01-02", claim("a", "S2", 3))])  # the same instant, recorded later
    book.ingest([report("r3", "2024-01-05", claim("b", "S1", 10, high=12))])
    book.ingest([report("r4", "2024-01-04", claim("b", "S2", 7, best=9, high=9))])  # published earlier
    assert rows(book.tally(policy="latest")) == {"a": (3, 8, 3, 1), "b": (7, 12, 10, 1)}
    assert rows(book.tally(policy="latest", by="country")) == {"Examplestan": (10, 20, 13, 2)}
    assert rows(book.tally(policy="latest", by="source")) == {"S1": (15, 20, 16, 2), "S2": (10, 12, 12, 2)}


def test_source_names_keep_every_character_in_tallies(one_incident):
    book = one_incident
    name = 'Foo\x1fBar, "Baz"; Ünal'
    book.ingest([report("r1", "2024-01-02", claim("a", name, 10), claim("a", "Other", 12))])
    for policy in ("conservative", "highest", "latest"):
        for by in ("incident", "admin1", "source"):
            assert {s for r in book.tally(policy=policy, by=by)["rows"] for s in r["sources"]} == {name, "Other"}


def test_names_holding_the_id_separator_stay_apart(book):
    # Claim ids are derived from the names joined on \x1f: "x\x1fy" + "z" must not be "x" + "y\x1fz".
    book.ingest([report("r0", "2024-01-01", incidents=(incident("x\x1fy"), incident("x")))])
    result = book.ingest([report("r1", "2024-01-02", claim("x\x1fy", "z", 5), claim("x", "y\x1fz", 7))])
    assert (result.accepted, result.rejected) == (1, [])
    assert rows(book.tally()) == {"x\x1fy": (5, 5, 5, 1), "x": (7, 7, 7, 1)}
    assert len(book.history()["claims"]) == 2


# -- which version counts --------------------------------------------------------------------

@pytest.fixture
def one_incident(book):
    book.ingest([report("r0", "2024-01-01", incidents=(incident("a", admin1="North"),))])
    return book


def test_late_arriving_version_and_ties(one_incident):
    book = one_incident
    book.ingest([report("r1", "2024-01-03", claim("a", "S", 10)),
                 report("r2", "2024-01-02", claim("a", "S", 3))])  # older news, recorded later
    current = book.history(incident="a")["claims"][0]["current"]
    assert current == {"counting": True, "version": 1, "low": 10, "high": 10, "best": None}
    assert rows(book.tally()) == {"a": (10, 10, 10, 1)}
    assert rows(book.tally(known_at="2024-01-02T12:00:00Z")) == {"a": (3, 3, 3, 1)}
    # Same published_at: the one recorded last is current.
    book.ingest([report("r3", "2024-01-03", claim("a", "S", 7))])
    assert book.history(incident="a")["claims"][0]["current"]["version"] == 3
    assert rows(book.tally()) == {"a": (7, 7, 7, 1)}
    # Older news again, published with r2 and recorded after it: it takes r2's place.
    book.ingest([report("r4", "2024-01-02", claim("a", "S", 5))])
    for policy in ("conservative", "highest", "latest"):
        assert rows(book.tally(known_at="2024-01-02T12:00:00Z", policy=policy)) == {"a": (5, 5, 5, 1)}
        assert rows(book.tally(known_at="2024-01-02T12:00:00Z", policy=policy, by="admin1")) == {"North": (5, 5, 5, 1)}
        assert rows(book.tally(policy=policy)) == {"a": (7, 7, 7, 1)}


def test_retraction_until_a_later_version(one_incident):
    book = one_incident
    book.ingest([report("r1", "2024-01-02", claim("a", "S", 10), claim("a", "T", 4))])
    book.ingest([doc("retraction", incident_id="a", source="S", measure="killed", published_at="2024-01-05",
                     reason="withdrawn")])
    assert rows(book.tally()) == {"a": (4, 4, 4, 1)}
    book.ingest([doc("retraction", incident_id="a", source="T", measure="killed", published_at="2024-01-05",
                     reason="withdrawn")])
    assert book.tally()["rows"] == []  # no counting claim, no row
    assert book.tally(by="admin1")["rows"] == []
    book.ingest([report("r2", "2024-01-07", claim("a", "S", 12))])
    assert rows(book.tally()) == {"a": (12, 12, 12, 1)}
    assert book.tally(known_at="2024-01-06")["rows"] == []
    assert rows(book.tally(known_at="2024-01-04")) == {"a": (4, 10, 4, 1)}
    # A retraction published before the current version does not withdraw it.
    book.ingest([doc("retraction", incident_id="a", source="S", measure="killed", published_at="2024-01-06",
                     reason="late news of an old withdrawal")])
    assert rows(book.tally()) == {"a": (12, 12, 12, 1)}
    assert [e["kind"] for e in book.history(source="S")["claims"][0]["entries"]] == [
        "reported", "retracted", "reported", "retracted"]


def test_corrections(one_incident):
    book = one_incident
    book.ingest([report("r1", "2024-01-02", claim("a", "S", 10, high=20, best=15)),
                 report("r2", "2024-01-04", claim("a", "S", 30))])
    # version defaults to the version recorded last; fields left out stay.
    book.ingest([doc("correction", incident_id="a", source="S", measure="killed", best=31, high=35,
                     reason="best was left out")])
    current = book.history(incident="a")["claims"][0]["current"]
    assert current == {"counting": True, "version": 2, "low": 30, "high": 35, "best": 31}
    # Correcting published_at can change which version is current.
    result = book.ingest([doc("correction", incident_id="a", source="S", measure="killed", version=1,
                              published_at="2024-01-05T00:00:00Z", reason="was dated wrongly")])
    assert result.accepted == 1
    assert rows(book.tally()) == {"a": (10, 20, 10, 1)}
    assert rows(book.tally(policy="latest")) == {"a": (10, 20, 15, 1)}
    assert rows(book.tally(known_at="2024-01-04T12:00:00Z")) == {"a": (30, 35, 30, 1)}
    [_, _, _, corrected] = book.history(incident="a")["claims"][0]["entries"]
    assert (corrected["kind"], corrected["version"], corrected["published_at"], corrected["low"], corrected["best"]) \
        == ("corrected", 1, "2024-01-05T00:00:00Z", 10, 15)
    # best can be cleared; low cannot.
    assert book.ingest([doc("correction", incident_id="a", source="S", measure="killed", version=1, best=None,
                            reason="no best given")]).accepted == 1
    assert book.history(incident="a")["claims"][0]["current"]["best"] is None
    assert len(book.ingest([doc("correction", incident_id="a", source="S", measure="killed", version=1,
                                low=None, reason="x")]).rejected) == 1


# -- merges ----------------------------------------------------------------------------------

def test_merge_pools_one_source_by_its_latest_version(book):
    book.ingest([report("r0", "2024-01-01", incidents=(incident("a"), incident("b"), incident("c")))])
    book.ingest([report("r1", "2024-01-03", claim("a", "S", 5), claim("c", "U", 1)),
                 report("r2", "2024-01-02", claim("b", "S", 9), claim("b", "T", 7))])
    book.ingest([doc("merge", incident_id="b", into="a", reason="same strike")])
    # S said 9 on b (2 Jan) and 5 on a (3 Jan): its figure is the later 5, not a range 5..9.
    answer = book.tally()
    assert rows(answer) == {"a": (5, 7, 5, 1), "c": (1, 1, 1, 1)}
    assert answer["rows"][0]["sources"] == ["S", "T"]
    assert rows(book.tally(by="source")) == {"S": (5, 5, 5, 1), "T": (7, 7, 7, 1), "U": (1, 1, 1, 1)}
    assert rows(book.tally(known_at="2024-01-02T12:00:00Z")) == {"a": (7, 9, 7, 1)}
    # A correction still names the claim by the id it was made under.
    result = book.ingest([doc("correction", incident_id="b", source="S", measure="killed", low=8, high=8, reason="x")])
    assert (result.accepted, result.rejected) == (1, [])
    assert rows(book.tally(known_at="2024-01-02T12:00:00Z")) == {"a": (7, 8, 7, 1)}
    # A claim made on the merged-away id after the merge counts under the canonical one too.
    book.ingest([report("r3", "2024-01-04", claim("b", "V", 2))])
    assert rows(book.tally(incident="b")) == {"a": (2, 7, 2, 1)}
    # Chains: a into c; b's claims follow to c.
    book.ingest([doc("merge", incident_id="a", into="c")])
    assert rows(book.tally()) == {"c": (1, 7, 1, 1)}
    assert rows(book.tally(incident="b")) == rows(book.tally(incident="a")) == {"c": (1, 7, 1, 1)}
    claims = book.history(incident="b")["claims"]
    assert {(c["incident_id"], c.get("canonical_id")) for c in claims} == {
        ("a", "c"), ("b", "c"), ("c", None)}
    # ...and merging back into a merged-away id is refused.
    rejected = book.ingest([doc("merge", incident_id="c", into="b")]).rejected
    assert len(rejected) == 1 and rejected[0].error.startswith("into: ")


def test_a_merge_pool_too_big_to_name_in_one_query(book, monkeypatch):
    """A pool of more incidents than a query names at once is still tallied whole, once."""
    book.ingest([report("r0", "2024-01-01", claim("a", "S", 5), claim("b", "S", 9), claim("c", "T", 2),
                        claim("d", "U", 4), claim("e", "U", 1),
                        incidents=(incident("a", admin1="North"), incident("b", admin1="South"), incident("c"),
                                   incident("d", admin1="North"), incident("e", admin1="North")))])
    book.ingest([doc("merge", incident_id="b", into="a"), doc("merge", incident_id="c", into="a")])
    expected = {"a": (2, 9, 2, 1), "d": (4, 4, 4, 1), "e": (1, 1, 1, 1)}
    assert rows(book.tally()) == expected
    by_admin1 = rows(book.tally(by="admin1"))
    assert by_admin1 == {"North": (7, 14, 7, 3)}
    monkeypatch.setattr(queries, "_MAX_IDS", 2)  # the pool {a, b, c} is now too big to name
    answer = book.tally()
    assert rows(answer) == expected and len(answer["rows"]) == 3
    assert rows(book.tally(by="admin1")) == by_admin1


def test_grouping_uses_incident_fields_as_they_stood(book):
    book.ingest([report("r0", "2024-01-02", claim("a", "S", 5), claim("b", "S", 2),
                        incidents=(incident("a", admin1="North", perpetrator="P"), incident("b", admin1="North")))])
    before = now()
    # An incident document amends only the fields it gives.
    book.ingest([doc("incident", incident_id="a", admin1="South", occurred_from="2023-12-31")])
    assert rows(book.tally(by="admin1")) == {"North": (2, 2, 2, 1), "South": (5, 5, 5, 1)}
    assert rows(book.tally(by="admin1", as_of=before)) == {"North": (7, 7, 7, 2)}
    assert rows(book.tally(by="perpetrator")) == {"P": (5, 5, 5, 1), None: (2, 2, 2, 1)}
    assert rows(book.tally(by="country")) == {"Examplestan": (7, 7, 7, 2)}
    assert rows(book.tally(by="year")) == {"2023": (5, 5, 5, 1), "2024": (2, 2, 2, 1)}
    assert rows(book.tally(by="month", as_of=before)) == {"2024-01": (7, 7, 7, 2)}
    # Re-sending the same fields changes nothing.
    count = event_count(book.db)
    result = book.ingest([doc("incident", incident_id="a", admin1="South")])
    assert (result.accepted, result.unchanged) == (0, 1) and event_count(book.db) == count
