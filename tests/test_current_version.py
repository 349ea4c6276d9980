"""The one current-version rule (domain.tally.current) against the SQL that mirrors it, by property.

Claims by up to three sources on two incidents get versions, retractions and corrections in any
order, published at any of a few instants. At every recorded instant and known-at, each policy's
tally in the database (tb_counting's spans, the latest policy's window) must equal what
``domain.tally.current`` and ``POLICIES`` make of the claims' own events, loaded from the log."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tollbook.api import Tollbook
from tollbook.domain import claim as claims
from tollbook.domain.ids import claim_uuid
from tollbook.domain.tally import POLICIES, Candidate, combine, counts, current
from tollbook.domain.time import to_micros

INCIDENTS = ("i1", "i2")
SOURCES = ("A", "B", "C")
DAYS = [datetime(2024, 5, day, tzinfo=UTC) for day in range(1, 5)]

figures = st.tuples(st.integers(0, 9), st.integers(0, 3), st.booleans())
operations = st.lists(st.tuples(
    st.sampled_from(("report", "report", "retract", "correct")), st.sampled_from(INCIDENTS),
    st.sampled_from(SOURCES), st.integers(0, len(DAYS) - 1), figures, st.integers(1, 3)), min_size=1, max_size=12)


def document(n: int, operation: tuple) -> dict:
    kind, incident, source, day, (low, extra, with_best), version = operation
    published = DAYS[day].isoformat()
    key = {"incident_id": incident, "source": source, "measure": "killed"}
    if kind == "report":
        claim = key | {"low": low, "high": low + extra} | ({"best": low + extra // 2} if with_best else {})
        return {"kind": "report", "report_id": f"r{n}", "published_at": published, "claims": [claim]}
    if kind == "retract":
        return {"kind": "retraction", **key, "published_at": published, "reason": "withdrawn"}
    fix = {"published_at": published} if with_best else {"low": low, "high": low + extra}
    return {"kind": "correction", **key, "version": version, **fix, "reason": "fixed"}


def expected(book: Tollbook, as_of: int, known_at: int, policy: str) -> dict[str, tuple[int, int, int]]:
    """Each incident's (low, high, best) from its claims' events recorded by ``as_of``, by the domain's rules."""
    found: dict[str, list[Candidate]] = {}
    for incident in INCIDENTS:
        for source in SOURCES:
            claim, recorded = None, {}
            for event in book.store.events_of(claim_uuid(incident, source, "killed", "all")):
                at = to_micros(event.timestamp)
                if at > as_of:
                    break
                claim = claims.evolve(claim, event)
                recorded.setdefault(claim.versions[-1].number, at)  # one claim a document: time orders as the log
            if claim is None:
                continue
            version = current(claim.versions, datetime.fromtimestamp(known_at / 1e6, UTC))
            if version is None:
                continue
            figure = Candidate(version.kind, version.low, version.high, version.best,
                               to_micros(version.published_at), recorded[version.number])
            if counts(figure):
                found.setdefault(incident, []).append(figure)
    return {incident: combine(figures, policy) for incident, figures in found.items()}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=operations)
def test_the_databases_tally_follows_the_domains_current_version(tmp_path_factory, operations):
    db = str(tmp_path_factory.mktemp("current") / "t.db")
    with Tollbook(db, editor="tester") as book:
        book.ingest([{"kind": "incident", "incident_id": incident} for incident in INCIDENTS])
        for n, operation in enumerate(operations):
            book.ingest([document(n, operation)])  # rejected ones (nothing to correct or retract) store nothing
        recorded = sorted({to_micros(e.timestamp) for i in INCIDENTS for s in SOURCES
                           for e in book.store.events_of(claim_uuid(i, s, "killed", "all"))})
        published = [to_micros(day) for day in DAYS]
        for as_of in recorded:
            for known_at in (published[0] - 1, *published, *(p + 1 for p in published)):
                for policy in POLICIES:
                    tally = book.tally(by="incident", as_of=as_of, known_at=known_at, policy=policy)
                    answer = {row["key"]: (row["low"], row["high"], row["best"]) for row in tally["rows"]}
                    assert answer == expected(book, as_of, known_at, policy), (as_of, known_at, policy)
