"""The baseline every query is compared with: answer the same question by replaying the log.

A simple replay, written from CONTRACT.md and independent of the projections: read the stored
events of a SQLite store in log order up to the asked recorded instant, decode each with orjson,
fold them into plain dicts, then compute the answer in Python. Nothing is cached between calls,
so each call pays for reading and decoding the log up to its point, as a store without read
models would.

Answers come back normalized (tuples of plain values) and :func:`normalize` turns the API's
answer into the same shape, so the harness can check that the indexed query and the replay agree.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from tollbook.store.eventstore import state_json

FOREVER = 2**62
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

REPORTED = "domain.claim:ClaimReported"
RETRACTED = "domain.claim:ClaimRetracted"
CORRECTED = "domain.claim:ClaimCorrected"
DEFINED = "domain.incident:IncidentDefined"
AMENDED = "domain.incident:IncidentAmended"
MERGED = "domain.incident:IncidentMerged"


_micros_cache: dict[str, int] = {}


def micros(text: str) -> int:
    found = _micros_cache.get(text)
    if found is None:
        found = (datetime.fromisoformat(text) - _EPOCH) // _MICROSECOND
        if len(_micros_cache) < 1_000_000:
            _micros_cache[text] = found
    return found


def read_log(db: str, upto: int) -> Iterator[tuple[int, str, dict]]:
    """(position, topic, event) for every stored event recorded at or before ``upto``."""
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        for position, aggregate_id, version, topic, state in connection.execute(
                "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid"):
            event = orjson.loads(state_json(state))
            # A compact state leaves its aggregate to the row, which SQLite holds as hex.
            event["originator_id"] = str(uuid.UUID(aggregate_id))
            if event["timestamp"] > upto:  # recorded_at increases along the log
                return
            yield position, topic, event
    finally:
        connection.close()


class _Claim:
    __slots__ = ("incident_id", "source", "source_key", "position", "versions", "entries")

    def __init__(self, incident_id: str, source: str, position: int):
        self.incident_id = incident_id
        self.source = source
        self.source_key = source.strip().casefold()
        self.position = position
        # version -> [kind, low, high, best, published_at, position the version was recorded at]
        self.versions: dict[int, list] = {}
        self.entries: list[tuple] | None = None  # kept only for the claims a question asks about


class State:
    """What the log says up to a point, for one measure and group."""

    def __init__(self, measure: str, group: str, keep_entries=None):
        self.measure = measure
        self.group = group
        self.claims: dict[str, _Claim] = {}
        self.fields: dict[str, dict] = {}
        self.into: dict[str, str] = {}
        # keep_entries(claim, position, recorded_at) -> bool: whether to keep this entry
        self.keep_entries = keep_entries

    def apply(self, position: int, topic: str, e: dict) -> None:
        if topic == REPORTED:
            if e["measure"] != self.measure or e["group"] != self.group:
                return
            claim = self.claims.get(e["originator_id"])
            if claim is None:
                claim = self.claims[e["originator_id"]] = _Claim(e["incident_id"], e["source"], position)
            figures = [e["low"], e["high"], e.get("best")]
            claim.versions[e["version"]] = ["reported", *figures, micros(e["published_at"]), position]
            self._entry(claim, position, e, "reported", e["version"], figures)
        elif topic == RETRACTED:
            claim = self.claims.get(e["originator_id"])
            if claim is not None:
                claim.versions[e["version"]] = ["retracted", None, None, None, micros(e["published_at"]), position]
                self._entry(claim, position, e, "retracted", e["version"], [None, None, None])
        elif topic == CORRECTED:
            claim = self.claims.get(e["originator_id"])
            if claim is not None:
                version = claim.versions[e["version"]]
                for index, name in ((1, "low"), (2, "high"), (3, "best")):
                    if name in e:
                        version[index] = e[name]
                if "published_at" in e:
                    version[4] = micros(e["published_at"])
                self._entry(claim, position, e, "corrected", e["version"], version[1:4])
        elif topic == DEFINED or topic == AMENDED:
            self.fields[e["incident_id"]] = self.fields.get(e["incident_id"], {}) | e["fields"]
        elif topic == MERGED:
            self.into[e["incident_id"]] = e["into"]

    def _entry(self, claim: _Claim, position: int, e: dict, kind: str, version: int, figures: list) -> None:
        if self.keep_entries is not None and self.keep_entries(claim, position, e["timestamp"]):
            if claim.entries is None:
                claim.entries = []
            claim.entries.append((kind, version, *figures, e["timestamp"]))

    def canonical(self, incident_id: str) -> str:
        while incident_id in self.into:
            incident_id = self.into[incident_id]
        return incident_id

    def source_figures(self, known_at: int, only: set[str] | None = None) -> dict[tuple[str, str], list]:
        """(canonical incident, source key) -> [first claim's position, its source, current version],
        for the sources whose current version counts."""
        buckets: dict[tuple[str, str], list] = {}
        for claim in self.claims.values():
            incident = self.canonical(claim.incident_id)
            if only is not None and incident not in only:
                continue
            bucket = buckets.get((incident, claim.source_key))
            if bucket is None:
                bucket = buckets[(incident, claim.source_key)] = [claim.position, claim.source, None]
            elif claim.position < bucket[0]:
                bucket[0], bucket[1] = claim.position, claim.source
            for version in claim.versions.values():
                if version[4] <= known_at and (bucket[2] is None or (version[4], version[5]) > (bucket[2][4], bucket[2][5])):
                    bucket[2] = version
        return {key: bucket for key, bucket in buckets.items() if bucket[2] is not None and bucket[2][0] == "reported"}

    def incident_rows(self, known_at: int, only: set[str] | None = None,
                      policy: str = "conservative") -> dict[str, tuple]:
        """canonical incident -> (low, high, best, sources)."""
        rows: dict[str, list] = {}  # -> [low, high, the version published last, sources]
        for (incident, _), (_, source, version) in self.source_figures(known_at, only).items():
            row = rows.get(incident)
            if row is None:
                rows[incident] = [version[1], version[2], version, {source}]
                continue
            row[0] = min(row[0], version[1])
            row[1] = max(row[1], version[2])
            if (version[4], version[5]) > (row[2][4], row[2][5]):
                row[2] = version
            row[3].add(source)
        best = {"conservative": lambda row: row[0], "highest": lambda row: row[1],
                "latest": lambda row: _best_or_low(row[2])}[policy]
        return {incident: (row[0], row[1], best(row), frozenset(row[3])) for incident, row in rows.items()}


def _best_or_low(version: list) -> int:
    return version[3] if version[3] is not None else version[1]


def _fold(db: str, state: State, upto: int) -> None:
    for position, topic, event in read_log(db, upto):
        state.apply(position, topic, event)


# -- the questions ---------------------------------------------------------------------------

def tally_incident(db: str, incident: str, as_of: int | None, known_at: int | None,
                   measure: str = "killed", group: str = "all") -> tuple:
    state = State(measure, group)
    _fold(db, state, FOREVER if as_of is None else as_of)
    target = state.canonical(incident)
    rows = state.incident_rows(FOREVER if known_at is None else known_at, only={target})
    return tuple(sorted((k, *v) for k, v in rows.items()))


def tally_by(db: str, field: str, as_of: int | None, known_at: int | None,
             measure: str = "killed", group: str = "all", policy: str = "conservative") -> tuple:
    state = State(measure, group)
    _fold(db, state, FOREVER if as_of is None else as_of)
    groups: dict[Any, list] = {}
    rows = state.incident_rows(FOREVER if known_at is None else known_at, policy=policy)
    for incident, (low, high, best, sources) in rows.items():
        key = state.fields.get(incident, {}).get(field)
        found = groups.setdefault(key, [0, 0, 0, 0, set()])
        found[0] += low
        found[1] += high
        found[2] += best
        found[3] += 1
        found[4] |= sources
    return tuple(sorted(((k, a, b, c, d, frozenset(s)) for k, (a, b, c, d, s) in groups.items()),
                        key=lambda row: (row[0] is None, row[0] or "")))


def tally_by_source(db: str, as_of: int | None, known_at: int | None,
                    measure: str = "killed", group: str = "all") -> tuple:
    """Per source (by key, named as its earliest claim): the sums of its counting figures
    (best = low, the conservative policy) and on how many incidents."""
    state = State(measure, group)
    _fold(db, state, FOREVER if as_of is None else as_of)
    sources: dict[str, list] = {}  # source key -> [first claim's position, name, low, high, incidents]
    for (_, key), (first, name, version) in state.source_figures(FOREVER if known_at is None else known_at).items():
        found = sources.get(key)
        if found is None:
            found = sources[key] = [first, name, 0, 0, 0]
        elif first < found[0]:
            found[0], found[1] = first, name
        found[2] += version[1]
        found[3] += version[2]
        found[4] += 1
    return tuple(sorted((name, low, high, low, incidents) for _, name, low, high, incidents in sources.values()))


def history(db: str, incident: str, source: str, measure: str, group: str) -> tuple:
    """Every entry of the claims (incident, source, measure, group) and their current figure, now."""
    key = source.strip().casefold()
    state = State(measure, group, keep_entries=lambda claim, position, at: claim.source_key == key)
    _fold(db, state, FOREVER)
    target = state.canonical(incident)
    answer = []
    for claim_id, claim in sorted(state.claims.items(), key=lambda item: item[1].position):
        if claim.source_key != key or state.canonical(claim.incident_id) != target:
            continue
        current = max(claim.versions.items(), key=lambda item: (item[1][4], item[1][5]))
        counting = current[1][0] == "reported"
        answer.append((claim_id, claim.incident_id, tuple(claim.entries or ()),
                       (counting, current[0], *(current[1][1:4] if counting else (None, None, None)))))
    return tuple(answer)


def diff(db: str, start: int, end: int, measure: str = "killed", group: str = "all") -> tuple:
    """Incidents whose row changed between two recorded instants: (id, before, after, entries)."""
    state = State(measure, group, keep_entries=lambda claim, position, at: at > start)
    log = read_log(db, end)
    before = canonical_before = None
    for position, topic, event in log:
        if before is None and event["timestamp"] > start:
            before = state.incident_rows(FOREVER)
            canonical_before = dict(state.into)
        state.apply(position, topic, event)
    if before is None:
        before, canonical_before = state.incident_rows(FOREVER), dict(state.into)
    after = state.incident_rows(FOREVER)
    touching: dict[str, int] = {}
    for claim in state.claims.values():
        if claim.entries:
            was = claim.incident_id
            while was in canonical_before:
                was = canonical_before[was]
            for incident in {was, state.canonical(claim.incident_id)}:
                touching[incident] = touching.get(incident, 0) + len(claim.entries)
    changes = []
    for incident in sorted(before.keys() | after.keys()):
        b, a = before.get(incident), after.get(incident)
        if (b and b[:3]) != (a and a[:3]):
            changes.append((incident, b and b[:3], a and a[:3], touching.get(incident, 0)))
    return tuple(changes)


# -- the API's answers in the same shape --------------------------------------------------------

def normalize(kind: str, answer: dict) -> tuple:
    if kind == "incident":
        return tuple(sorted((r["key"], r["low"], r["high"], r["best"], frozenset(r["sources"]))
                            for r in answer["rows"]))
    if kind == "source":
        return tuple(sorted((r["key"], r["low"], r["high"], r["best"], r["incidents"]) for r in answer["rows"]))
    if kind in ("admin1", "latest"):
        return tuple(sorted(((r["key"], r["low"], r["high"], r["best"], r["incidents"], frozenset(r["sources"]))
                             for r in answer["rows"]), key=lambda row: (row[0] is None, row[0] or "")))
    if kind == "history":
        from tollbook.domain.time import parse_instant, to_micros

        def us(text):
            return to_micros(parse_instant(text))

        return tuple(
            (c["claim_id"], c["incident_id"],
             tuple((e["kind"], e["version"], e["low"], e["high"], e["best"], us(e["recorded_at"]))
                   for e in c["entries"]),
             (c["current"]["counting"], c["current"]["version"], c["current"]["low"], c["current"]["high"],
              c["current"]["best"]))
            for c in answer["claims"])
    if kind == "diff":
        def figures(side):
            return side and (side["low"], side["high"], side["best"])

        return tuple((c["incident_id"], figures(c["before"]), figures(c["after"]), len(c["entries"]))
                     for c in answer["changes"])
    raise ValueError(kind)

