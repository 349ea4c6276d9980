"""A plain-Python reference model of Tollbook's contract (CONTRACT.md sections 1-5).

It is the oracle of the property tests: simple and slow on purpose. It keeps every
(recorded_at, document) pair and answers each query by replaying, from scratch, the documents
recorded at or before ``as_of``. Nothing here imports the project.

Documents passed to ``record`` are assumed valid (the generator and the real validator make sure
of that); the model does not check them beyond what it needs to compute.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

__all__ = ["Reference", "parse_ts", "fmt_ts", "source_key"]

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

BY_FIELDS = ("country", "admin1", "admin2", "perpetrator")
BY_DATES = {"day": 10, "month": 7, "year": 4}
POLICIES = ("conservative", "highest", "latest")


# --------------------------------------------------------------------------- time


def parse_ts(value) -> datetime:
    """RFC 3339 with a zone, or a bare ``YYYY-MM-DD`` (= 00:00:00Z). Returns an aware UTC datetime."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime: {value!r}")
        return value.astimezone(timezone.utc)
    if not isinstance(value, str):
        raise ValueError(f"not a timestamp: {value!r}")
    if _DATE_RE.match(value):
        return datetime.fromisoformat(value).replace(tzinfo=timezone.utc)
    text = value
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"naive timestamp: {value!r}")
    return parsed.astimezone(timezone.utc)


def fmt_ts(value: datetime | None) -> str | None:
    """UTC ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``; microseconds only when nonzero."""
    if value is None:
        return None
    value = value.astimezone(timezone.utc)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return text + "Z"


def source_key(text: str) -> str:
    # CONTRACT section 1: NFKC, zero-width characters out (the zero-width space counts as a
    # space), any run of white space one space, trimmed, case folded.
    import unicodedata

    text = unicodedata.normalize("NFKC", text).replace("\u200b", " ")
    text = "".join(ch for ch in text if ch not in "\u200c\u200d\u2060\ufeff")
    return " ".join(text.split()).casefold()


def date_key(occurred_from, by: str):
    """``occurred_from`` -> day/month/year key, or None when unset."""
    if occurred_from is None:
        return None
    if isinstance(occurred_from, str) and _DATE_RE.match(occurred_from):
        day = occurred_from
    else:
        day = parse_ts(occurred_from).strftime("%Y-%m-%d")
    return day[: BY_DATES[by]]


# --------------------------------------------------------------------------- replayed state


@dataclass
class Version:
    number: int
    seq: int  # global recorded order (documents in order, events within a document in order)
    kind: str  # "reported" | "retracted"
    published_at: datetime  # after corrections
    low: int | None = None  # after corrections
    high: int | None = None
    best: int | None = None
    qualifier: str | None = None
    report_id: str | None = None
    quote: str | None = None
    note: str | None = None
    reason: str | None = None


def _entry(kind: str, v: Version, **own: str | None) -> dict:
    """A history entry: the version's figures as they stand after it, and what the event itself
    carries (report_id, reason, quote, note; None unless given)."""
    return {"kind": kind, "version": v.number, "low": v.low, "high": v.high, "best": v.best,
            "qualifier": v.qualifier, "published_at": fmt_ts(v.published_at),
            "report_id": None, "reason": None, "quote": None, "note": None} | own


@dataclass
class Claim:
    incident_id: str  # as the claim was made under
    source: str  # trimmed source text of its first version
    skey: str
    measure: str
    group: str
    first_seq: int
    versions: list[Version] = field(default_factory=list)
    entries: list[dict] = field(default_factory=list)  # history entries, recorded order


@dataclass
class State:
    incidents: dict[str, dict] = field(default_factory=dict)
    merged_into: dict[str, str] = field(default_factory=dict)
    claims: dict[tuple, Claim] = field(default_factory=dict)  # key -> Claim, insertion = recorded order

    def canonical(self, incident_id: str) -> str:
        seen = set()
        while incident_id in self.merged_into:
            if incident_id in seen:  # cannot happen with valid input
                raise AssertionError("merge cycle")
            seen.add(incident_id)
            incident_id = self.merged_into[incident_id]
        return incident_id


def _amend_incident(state: State, entry: dict) -> None:
    fields = state.incidents.setdefault(entry["incident_id"], {})
    for name, value in entry.items():
        if name in ("incident_id", "kind"):
            continue
        fields[name] = value


def _claim_key(doc: dict) -> tuple:
    return (doc["incident_id"], source_key(doc["source"]), doc["measure"], doc.get("group", "all"))


def _replay(docs: list[dict]) -> State:
    state = State()
    seq = 0
    for doc in docs:
        kind = doc["kind"]
        if kind == "report":
            for entry in doc.get("incidents") or []:
                _amend_incident(state, entry)
            for c in doc.get("claims") or []:
                seq += 1
                key = _claim_key(c)
                claim = state.claims.get(key)
                if claim is None:
                    claim = Claim(
                        incident_id=c["incident_id"],
                        source=c["source"].strip(),
                        skey=key[1],
                        measure=c["measure"],
                        group=key[3],
                        first_seq=seq,
                    )
                    state.claims[key] = claim
                low = c["low"]
                high = c.get("high", low)
                pub = parse_ts(c.get("published_at", doc.get("published_at")))
                v = Version(
                    number=len(claim.versions) + 1,
                    seq=seq,
                    kind="reported",
                    published_at=pub,
                    low=low,
                    high=high,
                    best=c.get("best"),
                    qualifier=c.get("qualifier"),
                    report_id=doc["report_id"],
                    quote=c.get("quote"),
                    note=c.get("note"),
                )
                claim.versions.append(v)
                claim.entries.append(_entry("reported", v, report_id=v.report_id, quote=v.quote, note=v.note))
        elif kind == "incident":
            _amend_incident(state, doc)
        elif kind == "retraction":
            seq += 1
            claim = state.claims[_claim_key(doc)]
            v = Version(
                number=len(claim.versions) + 1,
                seq=seq,
                kind="retracted",
                published_at=parse_ts(doc["published_at"]),
                reason=doc.get("reason"),
            )
            claim.versions.append(v)
            claim.entries.append(_entry("retracted", v, reason=v.reason))
        elif kind == "correction":
            seq += 1
            claim = state.claims[_claim_key(doc)]
            number = doc.get("version", len(claim.versions))
            v = claim.versions[number - 1]
            if v.kind == "reported":
                for name in ("low", "high", "best", "qualifier"):
                    if name in doc:
                        setattr(v, name, doc[name])
            if "published_at" in doc:
                v.published_at = parse_ts(doc["published_at"])
            claim.entries.append(_entry("corrected", v, reason=doc.get("reason")))
        elif kind == "merge":
            state.merged_into[doc["incident_id"]] = doc["into"]
        else:
            raise ValueError(f"unknown kind {kind!r}")
    return state


def _current(versions: list[Version], known_at: datetime | None) -> Version | None:
    """Greatest published_at among versions published <= known_at; ties: recorded last."""
    visible = [v for v in versions if known_at is None or v.published_at <= known_at]
    if not visible:
        return None
    return max(visible, key=lambda v: (v.published_at, v.seq))


def _figure(version: Version, policy: str) -> int:
    if policy == "conservative":
        return version.low
    if policy == "highest":
        return version.high
    return version.best if version.best is not None else version.low


# --------------------------------------------------------------------------- the model


class Reference:
    def __init__(self):
        self._log: list[tuple[datetime, dict]] = []

    def record(self, doc: dict, recorded_at: datetime) -> None:
        recorded_at = parse_ts(recorded_at)
        if self._log and recorded_at <= self._log[-1][0]:
            raise ValueError("recorded_at must strictly increase")
        self._log.append((recorded_at, doc))

    def _state(self, as_of: datetime | None) -> State:
        return _replay([doc for at, doc in self._log if as_of is None or at <= as_of])

    # ---------------------------------------------------------------- tally

    def tally(
        self,
        *,
        measure="killed",
        group="all",
        by="incident",
        incident=None,
        as_of=None,
        known_at=None,
        policy="conservative",
    ) -> dict:
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}")
        if by not in ("incident", "source", *BY_FIELDS, *BY_DATES):
            raise ValueError(f"unknown by {by!r}")
        as_of = parse_ts(as_of) if as_of is not None else None
        known_at = parse_ts(known_at) if known_at is not None else None
        state = self._state(as_of)

        # Pool the claims of this measure and group under (canonical incident, source key).
        pools: dict[tuple[str, str], list[Claim]] = {}
        for claim in state.claims.values():
            if claim.measure != measure or claim.group != group:
                continue
            pools.setdefault((state.canonical(claim.incident_id), claim.skey), []).append(claim)

        wanted = state.canonical(incident) if incident is not None else None

        # Counting source figures: (canonical, skey) -> (version, display name, first_seq)
        figures: dict[tuple[str, str], tuple[Version, str, int]] = {}
        for (canon, skey), claims in pools.items():
            if wanted is not None and canon != wanted:
                continue
            current = _current([v for c in claims for v in c.versions], known_at)
            if current is None or current.kind != "reported":
                continue
            earliest = min(claims, key=lambda c: c.first_seq)
            figures[(canon, skey)] = (current, earliest.source, earliest.first_seq)

        # Incident rows.
        by_incident: dict[str, list[tuple[Version, str, int]]] = {}
        for (canon, _skey), fig in figures.items():
            by_incident.setdefault(canon, []).append(fig)
        incident_rows: dict[str, dict] = {}
        for canon, figs in by_incident.items():
            low = min(f[0].low for f in figs)
            high = max(f[0].high for f in figs)
            if policy == "conservative":
                best = low
            elif policy == "highest":
                best = high
            else:
                latest = max((f[0] for f in figs), key=lambda v: (v.published_at, v.seq))
                best = _figure(latest, "latest")
            names = sorted({f[1] for f in figs}, key=lambda s: (s.casefold(), s))
            incident_rows[canon] = {
                "key": canon,
                "low": low,
                "high": high,
                "best": best,
                "incidents": 1,
                "sources": names,
            }

        if by == "incident":
            rows = [incident_rows[k] for k in sorted(incident_rows)]
        elif by == "source":
            per_source: dict[str, dict] = {}
            for (canon, skey), (version, name, first_seq) in figures.items():
                acc = per_source.setdefault(
                    skey, {"name": name, "first": first_seq, "low": 0, "high": 0, "best": 0, "inc": set()}
                )
                if first_seq < acc["first"]:
                    acc["name"], acc["first"] = name, first_seq
                acc["low"] += version.low
                acc["high"] += version.high
                acc["best"] += _figure(version, policy)
                acc["inc"].add(canon)
            rows = [
                {
                    "key": acc["name"],
                    "low": acc["low"],
                    "high": acc["high"],
                    "best": acc["best"],
                    "incidents": len(acc["inc"]),
                    "sources": [acc["name"]],
                }
                for acc in per_source.values()
            ]
            rows.sort(key=lambda r: r["key"].casefold())
        else:
            grouped: dict = {}
            for canon, row in incident_rows.items():
                fields = state.incidents.get(canon, {})
                if by in BY_DATES:
                    key = date_key(fields.get("occurred_from"), by)
                else:
                    key = fields.get(by)
                acc = grouped.setdefault(key, {"low": 0, "high": 0, "best": 0, "incidents": 0, "sources": set()})
                acc["low"] += row["low"]
                acc["high"] += row["high"]
                acc["best"] += row["best"]
                acc["incidents"] += 1
                acc["sources"].update(row["sources"])
            rows = [
                {
                    "key": key,
                    "low": acc["low"],
                    "high": acc["high"],
                    "best": acc["best"],
                    "incidents": acc["incidents"],
                    "sources": sorted(acc["sources"], key=lambda s: (s.casefold(), s)),
                }
                for key, acc in grouped.items()
            ]
            rows.sort(key=lambda r: (r["key"] is None, r["key"] if r["key"] is not None else ""))

        total = {
            "low": sum(r["low"] for r in incident_rows.values()),
            "high": sum(r["high"] for r in incident_rows.values()),
            "best": sum(r["best"] for r in incident_rows.values()),
            "incidents": len(incident_rows),
        }
        return {
            "measure": measure,
            "group": group,
            "by": by,
            "policy": policy,
            "as_of": fmt_ts(as_of),
            "known_at": fmt_ts(known_at),
            "rows": rows,
            "total": total,
        }

    # ---------------------------------------------------------------- history

    def history(self, *, incident=None, source=None, measure=None, group=None, as_of=None, known_at=None) -> dict:
        as_of = parse_ts(as_of) if as_of is not None else None
        known_at = parse_ts(known_at) if known_at is not None else None
        state = self._state(as_of)
        wanted = state.canonical(incident) if incident is not None else None
        wanted_source = source_key(source) if source is not None else None

        out = []
        for claim in sorted(state.claims.values(), key=lambda c: c.first_seq):
            canon = state.canonical(claim.incident_id)
            if wanted is not None and canon != wanted:
                continue
            if wanted_source is not None and claim.skey != wanted_source:
                continue
            if measure is not None and claim.measure != measure:
                continue
            if group is not None and claim.group != group:
                continue
            current = _current(claim.versions, known_at)
            if current is None:
                cur = {"counting": False, "version": None, "low": None, "high": None, "best": None}
            elif current.kind == "retracted":
                cur = {"counting": False, "version": current.number, "low": None, "high": None, "best": None}
            else:
                cur = {
                    "counting": True,
                    "version": current.number,
                    "low": current.low,
                    "high": current.high,
                    "best": current.best,
                }
            item = {
                "incident_id": claim.incident_id,
                "source": claim.source,
                "measure": claim.measure,
                "group": claim.group,
            }
            if canon != claim.incident_id:
                item["canonical_id"] = canon
            item["entries"] = [dict(e) for e in claim.entries]
            item["current"] = cur
            out.append(item)
        return {"as_of": fmt_ts(as_of), "known_at": fmt_ts(known_at), "claims": out}
