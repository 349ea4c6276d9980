"""The invariants, on random valid document sequences (tests/strategies.py):

- rebuilding every projection from zero gives the same answers as updating them step by step;
- a query as of R equals the same query on a fresh store that only ever saw what was recorded by R;
- every tally and history, at any known-at point, equals a plain-Python reading of the contract's
  rules (tests/reference.py).
"""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import Reference
from strategies import documents, history_args, tally_args

from tollbook.domain.tally import Candidate, counting_spans, counts, current
from tollbook.domain.time import format_instant, from_micros
from tollbook.api import Tollbook

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
QUERIES = st.lists(tally_args(), min_size=3, max_size=6)


def _without_clock(answer: dict) -> dict:
    """An answer with what only one store's clock decides left out."""
    answer = {k: v for k, v in answer.items() if k != "as_of"}
    for claim in answer.get("claims", []):
        claim["entries"] = [{k: v for k, v in e.items() if k not in ("recorded_at", "recorded_by")}
                            for e in claim["entries"]]
    return answer


def _fed(folder: str, name: str, docs: list[dict]) -> tuple[Tollbook, list[int | None]]:
    """A store fed the documents one at a time, with each one's recorded_at (``None`` for a
    document that changed nothing, which stores nothing)."""
    book = Tollbook(str(Path(folder) / name), editor="prop")
    stamps = []
    for doc in docs:
        result = book.ingest([doc])
        assert not result.rejected, result.rejected
        stamps.append(result.last_recorded_at)
        book.refresh()  # projections advance step by step, as they do for a user
    return book, stamps


@given(versions=st.lists(st.tuples(st.sampled_from(["reported", "retracted"]), st.integers(0, 5)), max_size=6),
       known_at=st.integers(-1, 6))
def test_counting_spans_lay_out_the_current_version_along_the_published_clock(versions, known_at):
    """At every known-at, exactly the current version counts (if it is a report), and no other."""
    candidates = {version: Candidate(kind, *((1, 1, None) if kind == "reported" else (None, None, None)),
                                     published_at, recorded=version)
                  for version, (kind, published_at) in enumerate(versions, 1)}
    counting = [version for version, until in counting_spans(candidates).items()
                if candidates[version].published_at <= known_at and (until is None or known_at < until)]
    chosen = current(c for c in candidates.values() if c.published_at <= known_at)
    assert counting == ([chosen.recorded] if counts(chosen) else [])


@SETTINGS
@given(docs=documents(), queries=QUERIES, histories=st.lists(history_args(), min_size=2, max_size=4))
def test_rebuild_from_zero_equals_step_by_step(docs, queries, histories):
    with tempfile.TemporaryDirectory() as folder:
        book, _ = _fed(folder, "a.db", docs)
        before = [book.tally(**q) for q in queries] + [book.history(**h) for h in histories]
        book.rebuild()
        after = [book.tally(**q) for q in queries] + [book.history(**h) for h in histories]
        book.close()
    assert after == before


@SETTINGS
@given(docs=documents(min_size=2), data=st.data())
def test_as_of_equals_a_store_that_only_saw_what_was_recorded_by_then(docs, data):
    with tempfile.TemporaryDirectory() as folder:
        book, stamps = _fed(folder, "all.db", docs)
        step = data.draw(st.integers(0, len(docs) - 1), label="step")
        recorded = [s for s in stamps[: step + 1] if s is not None]
        later = [s for s in stamps[step + 1:] if s is not None]
        # R is either the instant the last stored document was recorded or just after it.
        point = recorded[-1] + data.draw(st.sampled_from([0, 1]), label="offset")
        if later:
            point = min(point, later[0] - 1)
        partial, _ = _fed(folder, "partial.db", docs[: step + 1])
        for query in data.draw(QUERIES, label="tallies"):
            assert _without_clock(book.tally(**query, as_of=point)) == _without_clock(partial.tally(**query))
        for query in data.draw(st.lists(history_args(), min_size=2, max_size=4), label="histories"):
            assert _without_clock(book.history(**query, as_of=point)) == _without_clock(partial.history(**query))
        book.close()
        partial.close()


@SETTINGS
@given(docs=documents(), data=st.data())
def test_known_at_and_as_of_match_the_reference_model(docs, data):
    with tempfile.TemporaryDirectory() as folder:
        book, stamps = _fed(folder, "a.db", docs)
        reference = Reference()
        stored = [(doc, stamp) for doc, stamp in zip(docs, stamps, strict=True) if stamp is not None]
        for doc, stamp in stored:
            reference.record(doc, from_micros(stamp))
        instants = [format_instant(s) for _, s in stored] + [
            format_instant(from_micros(s) + timedelta(microseconds=1)) for _, s in stored]
        for query in data.draw(st.lists(tally_args(instants), min_size=3, max_size=6), label="tallies"):
            assert book.tally(**query) == reference.tally(**query), query
        for query in data.draw(st.lists(history_args(instants), min_size=2, max_size=4), label="histories"):
            got = book.history(**query)
            for claim in got["claims"]:
                del claim["claim_id"]
                claim["entries"] = [{k: v for k, v in e.items() if k not in ("recorded_at", "recorded_by")}
                                    for e in claim["entries"]]
            assert got == reference.history(**query), query
        book.close()


@SETTINGS
@given(docs=documents(min_size=2), data=st.data())
def test_diff_names_exactly_the_incidents_whose_tally_moved(docs, data):
    """diff(A, B) lists every incident whose by-incident tally row differs between as-of A and
    as-of B, with both rows, and no other (it tallies only what can have moved: this checks
    that shortcut against two whole tallies)."""
    with tempfile.TemporaryDirectory() as folder:
        book, stamps = _fed(folder, "a.db", docs)
        recorded = sorted(s for s in stamps if s is not None)
        instants = sorted({0, *recorded, *(s + 1 for s in recorded)})
        start, end = sorted(data.draw(st.lists(st.sampled_from(instants), min_size=2, max_size=2), label="span"))
        query = {k: v for k, v in data.draw(tally_args(), label="query").items() if k in ("measure", "group", "policy", "known_at")}
        figures = ("low", "high", "best")
        rows = [{r["key"]: {f: r[f] for f in figures} for r in book.tally(**query, as_of=point)["rows"]}
                for point in (start, end)]
        moved = sorted(i for i in rows[0].keys() | rows[1].keys() if rows[0].get(i) != rows[1].get(i))
        answer = book.diff(start, end, **query)
        book.close()
    assert [(c["incident_id"], c["before"], c["after"]) for c in answer["changes"]] == [
        (i, rows[0].get(i), rows[1].get(i)) for i in moved]
