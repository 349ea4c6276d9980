"""Hypothesis strategies: random, VALID sequences of Tollbook documents (CONTRACT.md section 3).

``documents()`` draws a list of documents in ingest order. The strategy tracks the state the
documents build (incidents, merges, claims and their versions after corrections) so that every
document is valid given the ones before it:

- no document is identical to an earlier one (the store takes those as no-ops): every
  ``report_id`` is unique, corrections and retractions carry a numbered ``reason``, a repeated
  incident document is dropped;
- a claim's incident exists already or is defined in the same report; no report carries two
  claims with the same key;
- corrections name an existing claim and version and leave ``low <= best <= high`` (``best`` may
  be corrected to null); a retraction's version is corrected only in ``published_at``;
  ``version`` is omitted only when it names the last version;
- retractions name an existing claim;
- merges join two existing incidents, neither merged away, never an incident into itself.

Source names come in case and space variants ("White Helmets", " white helmets", ...), publication
times are drawn from a small set (so ties happen, and late-arriving versions too), and timestamps
are written in several equivalent forms (bare date, ``Z``, other offsets, microseconds).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from hypothesis import strategies as st

__all__ = [
    "documents",
    "tally_args",
    "history_args",
    "PUBLISHED_TIMES",
    "QUERY_TIMES",
    "SOURCES",
    "MEASURES",
    "GROUPS",
    "INCIDENT_IDS",
]

BASE = datetime(2024, 5, 10, tzinfo=timezone.utc)

# A small set of publication instants, so that equal published_at values are common.
PUBLISHED_TIMES = [
    BASE,
    BASE + timedelta(hours=6),
    BASE + timedelta(hours=9, minutes=30),
    BASE + timedelta(days=1),
    BASE + timedelta(days=1, hours=7, minutes=30),
    BASE + timedelta(days=1, hours=7, minutes=30, microseconds=250000),
    BASE + timedelta(days=1, hours=18),
    BASE + timedelta(days=2),
    BASE + timedelta(days=2, hours=12),
    BASE + timedelta(days=3, hours=1),
]

# Useful --known-at points: the publication instants themselves, the instants just before them,
# and one before everything / after everything.
QUERY_TIMES = sorted(
    {t for t in PUBLISHED_TIMES}
    | {t - timedelta(seconds=1) for t in PUBLISHED_TIMES}
    | {BASE - timedelta(days=1), BASE + timedelta(days=10)}
)

# source key -> spellings that all mean that source
SOURCES = {
    "white helmets": ["White Helmets", " white helmets", "WHITE HELMETS  "],
    "uossm": ["UOSSM", "uossm "],
    "civil defence": ["Civil Defence", "  civil defence"],
}
MEASURES = ["killed", "injured"]
GROUPS = ["all", "children"]
INCIDENT_IDS = ["inc-a", "inc-b", "inc-c", "inc-d"]

COUNTRIES = ["Syria", "Examplestan"]
ADMIN1 = ["Idlib", "Hama", "Valley"]
ADMIN2 = ["Maarat", "Ardin"]
PERPETRATORS = ["Russia", "Assad regime"]
# occurred_from values; the offsets cross a day and a month boundary once converted to UTC
OCCURRED = [
    "2024-05-10",
    "2024-05-11",
    "2024-05-09T23:30:00-02:00",  # 2024-05-10T01:30Z
    "2024-05-10T22:00:00+05:00",  # 2024-05-10T17:00Z
    "2024-04-30T23:00:00-03:00",  # 2024-05-01T02:00Z
    "2024-05-01T01:00:00+02:00",  # 2024-04-30T23:00Z
]
QUALIFIERS = ["exact", "at_least", "about", "up_to"]


_BOOL = st.booleans()
_INTS: dict[tuple[int, int], st.SearchStrategy] = {}


def _ints(lo: int, hi: int) -> st.SearchStrategy:
    strategy = _INTS.get((lo, hi))
    if strategy is None:
        strategy = _INTS[(lo, hi)] = st.integers(lo, hi)
    return strategy


def pick(draw, options):
    """One element of a sequence (cheaper than a fresh ``st.sampled_from`` each time)."""
    options = list(options)
    return options[draw(_ints(0, len(options) - 1))]


def pick_set(draw, options, min_size: int = 0) -> set:
    """A subset of ``options`` with at least ``min_size`` elements."""
    chosen = {o for o in options if draw(_BOOL)}
    while len(chosen) < min_size:
        chosen.add(pick(draw, [o for o in options if o not in chosen]))
    return chosen


def fmt_variant(draw, instant: datetime) -> str:
    """One of several equivalent RFC 3339 spellings of ``instant``."""
    forms = ["Z", "+02:00", "-05:00"]
    if instant.hour == instant.minute == instant.second == instant.microsecond == 0:
        forms.append("date")
    form = pick(draw, forms)
    if form == "date":
        return instant.strftime("%Y-%m-%d")
    if form == "Z":
        local, suffix = instant, "Z"
    else:
        sign = 1 if form[0] == "+" else -1
        hours = int(form[1:3])
        local, suffix = instant + sign * timedelta(hours=hours), form
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if local.microsecond:
        text += f".{local.microsecond:06d}"
    return text + suffix


def _draw_figures(draw, *, need_best: bool = False):
    low = draw(_ints(0, 20))
    high = low + pick(draw, [0, 0, 1, 3, 10])
    best = None
    if need_best or draw(_BOOL):
        best = draw(_ints(low, high))
    return low, high, best


class _Gen:
    """The state the documents drawn so far have built."""

    def __init__(self, max_incidents: int):
        self.max_incidents = max_incidents
        self.incidents: list[str] = []  # existing, in creation order
        self.merged_away: set[str] = set()
        # (incident, source key, measure, group) -> list of versions (dicts) after corrections
        self.claims: dict[tuple, list[dict]] = {}
        self.reports = 0
        self._serial = 0
        self.seen: set[str] = set()  # canonical JSON of the incident documents drawn

    def serial(self) -> int:
        self._serial += 1
        return self._serial

    def live(self) -> list[str]:
        return [i for i in self.incidents if i not in self.merged_away]

    def new_incident_id(self) -> str | None:
        if len(self.incidents) >= self.max_incidents:
            return None
        return INCIDENT_IDS[len(self.incidents)]

    # ------------------------------------------------------------ pieces

    def incident_fields(self, draw, incident_id: str, *, creating: bool) -> dict:
        entry: dict = {"incident_id": incident_id}
        if creating:
            entry["title"] = f"Incident {incident_id}"
        options = ["country", "admin1", "admin2", "perpetrator", "occurred_from"]
        chosen = pick_set(draw, options, min_size=0 if creating else 1)
        if "country" in chosen:
            entry["country"] = pick(draw, COUNTRIES)
        if "admin1" in chosen:
            entry["admin1"] = pick(draw, ADMIN1)
        if "admin2" in chosen:
            entry["admin2"] = pick(draw, ADMIN2)
        if "perpetrator" in chosen:
            entry["perpetrator"] = pick(draw, PERPETRATORS)
        if "occurred_from" in chosen:
            entry["occurred_from"] = pick(draw, OCCURRED)
        return entry

    def claim_ref(self, draw, key: tuple) -> dict:
        """incident_id/source/measure/group naming an existing claim, in some spelling."""
        incident_id, skey, measure, group = key
        ref = {
            "incident_id": incident_id,
            "source": pick(draw, SOURCES[skey]),
            "measure": measure,
        }
        if group != "all" or draw(_BOOL):
            ref["group"] = group
        return ref

    # ------------------------------------------------------------ documents

    def report(self, draw, *, first: bool) -> dict:
        self.reports += 1
        report_pub = pick(draw, PUBLISHED_TIMES)
        doc: dict = {
            "kind": "report",
            "report_id": f"r-{self.reports:03d}",
            "publisher": pick(draw, ["EA WorldView", "North Valley Monitor"]),
            "published_at": fmt_variant(draw, report_pub),
        }
        entries = []
        new_ids = []
        if first:
            n_new = draw(_ints(1, 3))
        else:
            n_new = pick(draw, [0, 0, 0, 1, 1, 2])
        for _ in range(n_new):
            new_id = self.new_incident_id()
            if new_id is None:
                break
            self.incidents.append(new_id)
            new_ids.append(new_id)
            entries.append(self.incident_fields(draw, new_id, creating=True))
        if self.incidents and not first and draw(_ints(0, 4)) == 0:
            # amend an existing incident (merged away or not) inside a report
            old = [i for i in self.incidents if i not in new_ids]
            if old:
                entries.append(self.incident_fields(draw, pick(draw, old), creating=False))
        if entries:
            doc["incidents"] = entries

        claims = []
        used: set[tuple] = set()
        for _ in range(draw(_ints(1, 3))):
            existing = [k for k in self.claims if k not in used]
            if existing and draw(_ints(0, 9)) < 6:
                key = pick(draw, existing)  # a revision or a late-arriving version
            else:
                # Mostly live incidents; now and then one that was merged away (it still exists).
                pool = self.live() if draw(_ints(0, 9)) < 8 else self.incidents
                key = (
                    pick(draw, pool or self.incidents),
                    pick(draw, sorted(SOURCES)),
                    pick(draw, ["killed", "killed", "injured"]),
                    pick(draw, ["all", "all", "children"]),
                )
                if key in used:
                    continue
            used.add(key)
            claim = self.claim_ref(draw, key)
            low, high, best = _draw_figures(draw)
            claim["low"] = low
            if high != low or draw(_BOOL):
                claim["high"] = high
            if best is not None:
                claim["best"] = best
            if draw(_ints(0, 3)) == 0:
                claim["qualifier"] = pick(draw, QUALIFIERS)
            pub = report_pub
            if draw(_ints(0, 3)) == 0:
                pub = pick(draw, PUBLISHED_TIMES)
                claim["published_at"] = fmt_variant(draw, pub)
            if draw(_ints(0, 3)) == 0:
                claim["quote"] = f"{low} people"
            if draw(_ints(0, 5)) == 0:
                claim["note"] = "relayed"
            claims.append(claim)
            self.claims.setdefault(key, []).append(
                {"kind": "reported", "low": low, "high": high, "best": best, "published_at": pub}
            )
        doc["claims"] = claims
        return doc

    def incident_doc(self, draw) -> dict | None:
        new_id = self.new_incident_id()
        if new_id is not None and (not self.incidents or draw(_ints(0, 3)) == 0):
            self.incidents.append(new_id)
            return {"kind": "incident", **self.incident_fields(draw, new_id, creating=True)}
        target = pick(draw, self.incidents)
        doc = {"kind": "incident", **self.incident_fields(draw, target, creating=False)}
        text = json.dumps(doc, sort_keys=True)
        if text in self.seen:  # identical to an earlier document: skip it
            return None
        self.seen.add(text)
        return doc

    def correction(self, draw) -> dict | None:
        candidates = [(key, n) for key, versions in self.claims.items() for n in range(1, len(versions) + 1)]
        if not candidates:
            return None
        key, number = pick(draw, candidates)
        versions = self.claims[key]
        version = versions[number - 1]
        doc = {"kind": "correction", **self.claim_ref(draw, key)}
        if number != len(versions) or draw(_BOOL):
            doc["version"] = number

        fix: dict = {}
        if version["kind"] == "retracted":
            fields = {"published_at"}  # a retraction has no figures: only its date can be fixed
        else:
            fields = pick_set(draw, ["low", "high", "best", "qualifier", "published_at"], min_size=1)
            low, high, best = _draw_figures(draw, need_best=True)
            if "best" in fields and draw(_ints(0, 3)) == 0:
                best = None  # "best": null clears it
            triple = {"low": low, "high": high, "best": best}
            for name in ("low", "high", "best"):
                if name in fields:
                    fix[name] = triple[name]
            after = {name: fix.get(name, version[name]) for name in ("low", "high", "best")}
            ok = after["low"] <= after["high"] and (
                after["best"] is None or after["low"] <= after["best"] <= after["high"]
            )
            if not ok:
                fix.update(triple)
                after = dict(triple)
            version.update(after)
            if "qualifier" in fields:
                fix["qualifier"] = pick(draw, QUALIFIERS)
        if "published_at" in fields:
            pub = pick(draw, PUBLISHED_TIMES)
            fix["published_at"] = fmt_variant(draw, pub)
            version["published_at"] = pub
        doc.update(fix)
        # a distinct reason: the store takes a document identical to a stored one as a no-op
        doc["reason"] = f"{pick(draw, ['transcription error', 'typed 15 for 5'])} (c{self.serial()})"
        return doc

    def retraction(self, draw) -> dict | None:
        if not self.claims:
            return None
        key = pick(draw, list(self.claims))
        pub = pick(draw, PUBLISHED_TIMES)
        doc = {
            "kind": "retraction",
            **self.claim_ref(draw, key),
            "published_at": fmt_variant(draw, pub),
            "reason": f"source withdrew the figure (r{self.serial()})",
        }
        self.claims[key].append({"kind": "retracted", "published_at": pub})
        return doc

    def merge(self, draw) -> dict | None:
        live = self.live()
        if len(live) < 2:
            return None
        dup = pick(draw, live)
        into = pick(draw, [i for i in live if i != dup])
        self.merged_away.add(dup)
        return {"kind": "merge", "incident_id": dup, "into": into, "reason": "same event"}


@st.composite
def documents(draw, min_size: int = 1, max_size: int = 25, max_incidents: int = 3):
    """A list of valid documents in ingest order."""
    gen = _Gen(max_incidents)
    n = draw(_ints(min_size, max_size))
    docs = [gen.report(draw, first=True)]
    kinds = ["report", "report", "report", "correction", "correction", "retraction", "incident", "merge"]
    while len(docs) < n:
        kind = pick(draw, kinds)
        if kind == "report":
            doc = gen.report(draw, first=False)
        elif kind == "correction":
            doc = gen.correction(draw)
        elif kind == "retraction":
            doc = gen.retraction(draw)
        elif kind == "incident":
            doc = gen.incident_doc(draw)
        else:
            doc = gen.merge(draw)
        if doc is not None:
            docs.append(doc)
    return docs


def _query_time(draw):
    return pick(draw, QUERY_TIMES)


@st.composite
def tally_args(draw, as_of_choices=None):
    """Keyword arguments for ``Reference.tally`` (and the CLI's tally).

    ``as_of_choices``: a list of datetimes to pick ``as_of`` from (e.g. the recorded_at values
    the test assigned, and instants between them); ``None`` leaves ``as_of`` out.
    """
    args: dict = {
        "measure": pick(draw, MEASURES),
        "group": pick(draw, GROUPS),
        "by": pick(
            draw, ["incident", "incident", "source", "country", "admin1", "admin2", "perpetrator", "day", "month", "year"]
        ),
        "policy": pick(draw, ["conservative", "highest", "latest"]),
    }
    if draw(_BOOL):
        args["known_at"] = _query_time(draw)
    if as_of_choices and draw(_BOOL):
        args["as_of"] = pick(draw, as_of_choices)
    if draw(_ints(0, 3)) == 0:
        args["incident"] = pick(draw, INCIDENT_IDS)
    return args


@st.composite
def history_args(draw, as_of_choices=None):
    """Keyword arguments for ``Reference.history`` (and the CLI's history)."""
    args: dict = {}
    if draw(_BOOL):
        args["incident"] = pick(draw, INCIDENT_IDS)
        if draw(_BOOL):
            args["source"] = pick(draw, [s for v in SOURCES.values() for s in v])
        if draw(_BOOL):
            args["measure"] = pick(draw, MEASURES)
        if draw(_BOOL):
            args["group"] = pick(draw, GROUPS)
    if draw(_BOOL):
        args["known_at"] = _query_time(draw)
    if as_of_choices and draw(_BOOL):
        args["as_of"] = pick(draw, as_of_choices)
    return args
