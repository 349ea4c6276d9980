"""Synthetic Tollbook input: a deterministic, streaming generator of contract documents.

    from bench.generate import generate, check
    for doc in generate(1_000_000, seed=20181009): ...      # documents in ingest order
    problems = check(generate(100_000))                       # [] when every document is valid

    python bench/generate.py --events N [--seed S] [-o FILE] [--stats] [--check]
    python bench/generate.py --check --input FILE              # check an existing JSONL file

``events`` counts stored events: each claim in a report, each incident entry (in a report's
``incidents`` or a standalone ``incident`` document), each correction, retraction and merge is
one. Generation stops exactly at ``events`` (the last report may be cut short).

The mix, per 1,000,000 events: about 100,000 incidents (of which ~5% are duplicates that get
merged) in 20 countries, 200 admin1 areas (10 a country) and 1,000 admin2 areas; ~3 sources an
incident from a pool of 300; about 200,000 revisions, 20,000 corrections, 10,000 retractions,
5,000 merges, the rest new claims; some late-arriving versions. Published times lie in
2019-01-01 .. 2023-12-31. All names (countries, places, sources) are made up.

Memory stays flat: an incident's state lives only while it still has documents to come (about
75 simulated days), so the generator keeps no per-claim table for the whole stream. ``check``
does keep one (it has to), so use it on up to a few hundred thousand events.
"""

from __future__ import annotations

import argparse
import heapq
import math
import re
import sys
import time
from datetime import date, timedelta
from random import Random
from typing import Any, Iterable, Iterator

try:  # orjson when available (fast); the stdlib writes the same bytes for these documents
    import orjson

    def _dumps(doc: dict) -> bytes:
        return orjson.dumps(doc)
except ImportError:  # pragma: no cover
    import json

    def _dumps(doc: dict) -> bytes:
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


DEFAULT_SEED = 20181009

# ---------------------------------------------------------------------------------------------
# Time: integer seconds since the Unix epoch, written as RFC 3339 with Z.

START = 1546300800  # 2019-01-01T00:00:00Z
END = 1704067199  # 2023-12-31T23:59:59Z
MINUTE, HOUR, DAY = 60, 3600, 86400
# Incidents are born over this span, paced by the events planned so far; the stream ends a few
# days after it (what is planned but not yet due when the budget runs out is dropped).
BIRTH_SPAN = END - START - 5 * DAY

_DAYS = [(date(2019, 1, 1) + timedelta(days=i)).isoformat() for i in range((END - START) // DAY + 1)]


def _clamp(t: int) -> int:
    return START if t < START else END if t > END else t


def _ts(t: int) -> str:
    d, r = divmod(t - START, DAY)
    h, r = divmod(r, HOUR)
    m, s = divmod(r, MINUTE)
    return f"{_DAYS[d]}T{h:02d}:{m:02d}:{s:02d}Z"


def _day(t: int) -> str:
    return _DAYS[(t - START) // DAY]


# ---------------------------------------------------------------------------------------------
# The made-up world: fixed, whatever the seed, so runs with different seeds share geography
# and sources.

_COUNTRIES = [
    "Arvenia", "Belostan", "Corvania", "Dravia", "Eskaria", "Falmora", "Galdrin", "Hestova",
    "Istrelia", "Jorvik Republic", "Kaldora", "Lumeria", "Morvath", "Nezaria", "Ostravia",
    "Pelagon", "Qarsistan", "Rovenna", "Sardovia", "Tyrelland",
]
_SYL = ["al", "ar", "bar", "dan", "del", "far", "gor", "has", "ir", "jab", "kar", "kel", "lam",
        "mar", "nor", "om", "qas", "ra", "sal", "sha", "tal", "tur", "um", "var", "yam", "zor",
        "ben", "dur", "en", "hal", "is", "mun", "rik", "sen", "vol", "wen"]
_LOCAL_SOURCES = [
    "{} Ministry of Health", "{} Civil Defence", "{} Red Crescent", "{} Observatory for Human Rights",
    "{} Network for Human Rights", "{} Victims Documentation Centre", "{} Police",
    "{} Armed Forces Media Office", "{} Medical Relief Union", "{} State News Agency",
    "{} Independent Press", "{} Monitoring Group",
]
# How often each local template is an incident's source (health ministries and civil defence most).
_LOCAL_WEIGHTS = [10, 9, 5, 7, 4, 3, 4, 3, 3, 3, 2, 4]
_LOCAL_NEWS = (9, 10)  # indices of the local templates that publish others' claims
_INTL_PREFIX = ["Global", "International", "World", "United", "Continental", "Open",
                "Independent", "Transnational", "Northern", "Free"]
_INTL_SUFFIX = ["Conflict Monitor", "Casualty Recorder", "News Wire", "Press Agency",
                "Rights Watch", "Health Alliance"]
_INTL_NEWS = ("News Wire", "Press Agency")
_EVENT_TYPES = [("airstrike", "Airstrike on {}"), ("shelling", "Shelling of {}"),
                ("clash", "Clashes in {}"), ("ied", "Roadside bomb near {}"),
                ("drone_strike", "Drone strike on {}"), ("raid", "Raid on {}"),
                ("massacre", "Killings in {}"), ("landmine", "Landmine blast near {}")]
_EVENT_WEIGHTS = [20, 20, 15, 10, 10, 8, 4, 3]
_PERPETRATORS = ["{} Armed Forces", "{} Liberation Front", "{} People's Militia",
                 "Unknown", "{} Air Force", "Foreign Coalition"]
_QUALIFIERS = ["at_least", "about", "up_to", "exact"]
_QUAL_CUM = [55, 75, 85, 100]
# Claim keys a source may report, and how likely it reports each on an incident.
_KEYS = [("killed", "all", 0.93), ("injured", "all", 0.45), ("killed", "children", 0.30),
         ("killed", "women", 0.15), ("killed", "civilians", 0.15), ("missing", "all", 0.10),
         ("injured", "children", 0.07), ("missing", "children", 0.02)]
_CORRECTION_REASONS = ["transcription error", "typed the wrong figure", "digits swapped when recorded",
                       "misread the statement", "figure taken from the wrong paragraph",
                       "range recorded wrongly", "publication time recorded wrongly",
                       "qualifier recorded wrongly"]
_RETRACTION_REASONS = ["source withdrew the figure", "the figure included victims of another incident",
                       "source deleted the statement", "double-counted victims",
                       "source said the report was unverified"]
_MERGE_REASONS = ["same incident reported under two ids", "same strike, same place and day",
                  "duplicate entry from a second source", "same event, different place spelling"]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


class _World:
    def __init__(self) -> None:
        rng = Random(1)
        used: set[str] = set()

        def name(*parts: int) -> str:
            while True:
                n = "".join(rng.choice(_SYL) for _ in range(rng.choice(parts))).capitalize()
                if n not in used:
                    used.add(n)
                    return n

        self.countries = []
        intl = [f"{p} {s}" for p in _INTL_PREFIX for s in _INTL_SUFFIX]  # 60
        self.intl_sources = intl
        self.intl_news = [s for s in intl if s.endswith(_INTL_NEWS)]
        cw = [1 / (i + 1) ** 0.7 for i in range(len(_COUNTRIES))]
        self.country_cum = _cum(cw)
        for ci, cname in enumerate(_COUNTRIES):
            admin1s = []
            for _ in range(10):
                a1 = name(2)
                admin2s = []
                for _ in range(5):
                    a2 = name(3)
                    places = []
                    for _ in range(4):
                        lat = round(rng.uniform(-30, 50), 4)
                        lon = round(rng.uniform(-20, 80), 4)
                        places.append((name(2, 3), lat, lon))
                    admin2s.append((a2, places))
                admin1s.append((a1, admin2s))
            local = [t.format(cname) for t in _LOCAL_SOURCES]
            self.countries.append({
                "name": cname,
                "admin1": admin1s,
                "admin1_cum": _cum([1 / (i + 1) ** 0.5 for i in range(10)]),
                "local": local,
                "news": [local[i] for i in _LOCAL_NEWS],
                "perpetrators": [p.format(cname) if "{}" in p else p for p in _PERPETRATORS],
            })
        self.local_cum = _cum(_LOCAL_WEIGHTS)
        self.event_cum = _cum(_EVENT_WEIGHTS)
        self.slugs = {s: _slug(s) for c in self.countries for s in c["local"]}
        self.slugs.update({s: _slug(s) for s in intl})
        assert len(self.slugs) == 300


class _FastRandom(Random):
    """``random.Random`` with cheaper integer draws (built on ``random()``; ample for test data)."""

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:  # type: ignore[override]
        if stop is None:
            return int(self.random() * start)
        if step == 1:
            return start + int(self.random() * (stop - start))
        return start + step * int(self.random() * ((stop - start) // step))

    def randint(self, a: int, b: int) -> int:
        return a + int(self.random() * (b - a + 1))

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.random()

    def choice(self, seq):  # type: ignore[override]
        return seq[int(self.random() * len(seq))]


def _cum(weights: list[float]) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return [x / total for x in out]


def _pick(rng: Random, cum: list[float]) -> int:
    x = rng.random()
    for i, c in enumerate(cum):
        if x < c:
            return i
    return len(cum) - 1


_WORLD: _World | None = None


def _world() -> _World:
    global _WORLD
    if _WORLD is None:
        _WORLD = _World()
    return _WORLD


# ---------------------------------------------------------------------------------------------
# Per-incident and per-claim state, alive only while the incident still has documents to come.

class _Inc:
    __slots__ = ("iid", "fields", "defined", "merged", "toll", "sources", "amended")

    def __init__(self, iid: str, fields: dict, toll: int) -> None:
        self.iid = iid
        self.fields = fields
        self.defined = False
        self.merged = False
        self.toll = toll
        self.sources: list[str] = []
        self.amended = False


class _Claim:
    # vers: one entry a recorded version, in record order (version n = vers[n-1]):
    # [low, high, best, qualifier, published_at] for a figure, None for a retraction.
    __slots__ = ("inc", "source", "measure", "group", "vers", "maxpub")

    def __init__(self, inc: _Inc, source: str, measure: str, group: str) -> None:
        self.inc = inc
        self.source = source
        self.measure = measure
        self.group = group
        self.vers: list = []
        self.maxpub = -1


class _Report:
    # items: (claim, published_at, low, high, best, qualifier)
    __slots__ = ("publisher", "pub", "items", "amend")

    def __init__(self, publisher: str, pub: int, items: list) -> None:
        self.publisher = publisher
        self.pub = pub
        self.items = items
        self.amend = False


_CORRECTION, _RETRACTION, _MERGE, _BIRTH = 1, 2, 3, 4

# Targets per incident (an incident is ~10 events): revisions, corrections, retractions, and
# the share of incidents that are duplicates (each gives one merge).
_REV, _COR, _RET, _DUP = 2.0, 0.2, 0.1, 0.05
_CLAIMS = 6.67  # new claims per incident
_EVENTS_PER_INCIDENT = 10.0


class _Generator:
    def __init__(self, events: int, seed: int, stats: dict | None) -> None:
        self.events = events
        self.rng = _FastRandom(seed)
        self.w = _world()
        self.heap: list = []
        self.seq = 0
        self.n_inc = 0
        self.n_rep = 0
        self.planned = 0
        self.acc = {"rev": 0.0, "cor": 0.0, "ret": 0.0, "dup": 0.0, "claims": 0.0}
        self.recent: list[list[_Inc]] = [[] for _ in _COUNTRIES]  # canonical incidents, per country
        self.st = stats if stats is not None else {}
        for k in ("documents", "events", "reports", "incident_docs", "incidents", "amendments",
                  "new_claims", "revisions", "revisions_up", "revisions_down", "late_versions",
                  "corrections", "retractions", "merges", "claims_in_reports", "claim_published_at",
                  "low_over_50", "low_over_100", "with_range", "with_best", "with_qualifier",
                  "planned_incidents", "planned_sources"):
            self.st.setdefault(k, 0)
        self.st.setdefault("measures", {})
        self.st.setdefault("groups", {})
        self.st.setdefault("report_sizes", {})
        self._sources_used: set[str] = set()
        self._keys: dict[tuple, int] = {}
        self._admin1_used: set[tuple] = set()
        self._admin2_used: set[str] = set()
        self._countries_used: set[str] = set()
        self.first_pub: int | None = None
        self.last_pub: int | None = None

    # -- scheduling -----------------------------------------------------------------------

    def push(self, t: int, item: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, item))

    def run(self) -> Iterator[dict]:
        budget = self.events
        if budget <= 0:
            return
        self.push(START, (_BIRTH,))
        heap = self.heap
        while budget > 0 and heap:
            t, _, item = heapq.heappop(heap)
            if type(item) is _Report:
                docs = self.emit_report(item, budget)
            elif item[0] == _BIRTH:
                self.birth(t)
                nxt = START + int(BIRTH_SPAN * self.planned / self.events)
                # paced by planned events, so the stream ends near START + BIRTH_SPAN whatever
                # its size (a little after: what is planned but not yet emitted is dropped)
                self.push(max(t + MINUTE, nxt), (_BIRTH,))
                continue
            elif item[0] == _CORRECTION:
                docs = self.emit_correction(t, item[1])
            elif item[0] == _RETRACTION:
                docs = self.emit_retraction(t, item[1])
            else:
                docs = self.emit_merge(t, item[1], item[2])
            for doc, cost in docs:
                budget -= cost
                self.st["events"] += cost
                self.st["documents"] += 1
                yield doc
        self.finish_stats()

    # -- planning -------------------------------------------------------------------------

    def poisson(self, m: float) -> int:
        if m <= 0:
            return 0
        rnd = self.rng.random
        limit, k, p = math.exp(-m), 0, rnd()
        while p > limit:
            k += 1
            p *= rnd()
        return k

    def birth(self, t: int) -> None:
        rng, w = self.rng, self.w
        rnd = rng.random
        x = rnd()
        size = 1 if x < 0.88 else 2 if x < 0.97 else 3
        ci = _pick(rng, w.country_cum)
        country = w.countries[ci]
        a1 = _pick(rng, country["admin1_cum"])
        lead = None
        if size > 1:
            lead = country["local"][_pick(rng, w.local_cum)]
        members = []
        for _ in range(size):
            dup_of = None
            recent = self.recent[ci]
            p_dup = _DUP / (1 - _DUP) + 0.2 * self.acc["dup"]
            if recent and size == 1 and rnd() < p_dup:
                dup_of = recent[rng.randrange(len(recent))]
            inc, first = self.plan_incident(t + rng.randrange(0, 6 * HOUR, MINUTE), ci, a1, lead, dup_of)
            members.append((inc, first))
            if dup_of is None:
                self.acc["dup"] += _DUP / (1 - _DUP)
                recent.append(inc)
                if len(recent) > 8:
                    del recent[0]
            else:
                self.acc["dup"] -= 1
        if size > 1:  # the lead source's first report covers the whole cluster when it fits
            reps = [first for _, first in members if first is not None]
            base = reps[0] if reps else None
            for rep in reps[1:]:
                if len(base.items) + len(rep.items) <= 5:
                    base.items.extend(rep.items)
                    base.pub = max(base.pub, rep.pub)
                    rep.items = []

    def plan_incident(self, t0: int, ci: int, a1i: int, lead: str | None, dup_of: _Inc | None):
        rng, w, acc = self.rng, self.w, self.acc
        rnd = rng.random
        country = w.countries[ci]
        idx = self.n_inc
        self.n_inc += 1
        iid = f"syn-{idx:06d}"
        if dup_of is not None:
            f = dup_of.fields
            etype = f["event_type"]
            place = f["place"]
            fields = {"incident_id": iid, "title": f"Reports of {etype.replace('_', ' ')} in {place}"}
            for k in ("occurred_from", "country", "admin1", "admin2", "place", "perpetrator", "event_type"):
                if k in f and (k in ("occurred_from", "country") or rnd() < 0.9):
                    fields[k] = f[k]
            toll = dup_of.toll
        else:
            a1name, admin2s = country["admin1"][a1i]
            a2name, places = admin2s[rng.randrange(5)]
            place, lat, lon = places[rng.randrange(4)]
            ei = _pick(rng, w.event_cum)
            etype, title = _EVENT_TYPES[ei]
            fields = {"incident_id": iid, "title": title.format(place),
                      "occurred_from": _day(_clamp(t0 - rng.randrange(0, 20 * HOUR))),
                      "country": country["name"], "admin1": a1name}
            if rnd() < 0.7:
                fields["admin2"] = a2name
            fields["place"] = place
            if rnd() < 0.2:
                fields["lat"] = lat
                fields["lon"] = lon
            fields["perpetrator"] = country["perpetrators"][rng.randrange(len(_PERPETRATORS))]
            fields["event_type"] = etype
            x = rnd()
            if x < 0.08:
                toll = 0
            elif x < 0.975:
                toll = min(60, int(rng.lognormvariate(1.6, 0.9)))
            else:
                toll = rng.randint(60, 700)
        inc = _Inc(iid, fields, toll)

        # sources
        if dup_of is not None:
            s = 1 if rnd() < 0.7 else 2
        else:
            x = rnd()
            s = 1 if x < 0.12 else 2 if x < 0.36 else 3 if x < 0.63 else 4 if x < 0.81 else 5 if x < 0.92 else 6
            if acc["claims"] > 4:
                s += 1
            elif acc["claims"] < -4 and s > 1:
                s -= 1
        sources: list[str] = []
        if lead is not None:
            sources.append(lead)
        if dup_of is not None and dup_of.sources and rnd() < 0.5:
            sources.append(dup_of.sources[rng.randrange(len(dup_of.sources))])
        while len(sources) < s:
            if rnd() < 0.8:
                src = country["local"][_pick(rng, w.local_cum)]
            else:
                src = w.intl_sources[rng.randrange(len(w.intl_sources))]
            if src not in sources:
                sources.append(src)
        inc.sources = sources
        self.st["planned_incidents"] += 1
        self.st["planned_sources"] += len(sources)

        # claims and their figure targets
        per_source: list[tuple[str, int, list]] = []  # (source, first publication, [plan...])
        claims: list = []
        for si, src in enumerate(sources):
            keys = [(m, g) for m, g, p in _KEYS if rnd() < p] or [("killed", "all")]
            plans = []
            for m, g in keys:
                truth = self.truth(toll, m, g)
                target = max(0, round(truth * rng.uniform(0.75, 1.15)))
                cl = _Claim(inc, src, m, g)
                plan = [cl, target, None]  # claim, target, previous figure
                plans.append(plan)
                claims.append(plan)
            delay = rng.randrange(20 * MINUTE, (3 if si == 0 else 18) * HOUR, MINUTE)
            per_source.append((src, t0 + delay, plans))
        n_claims = len(claims)
        acc["claims"] += _CLAIMS - n_claims

        # revisions: waves of one source updating some of its claims
        m_rev = max(0.0, _REV + 0.3 * acc["rev"]) * n_claims / _CLAIMS
        n_rev = self.poisson(m_rev)
        acc["rev"] += _REV - n_rev
        waves: list[tuple[str, int, list]] = []
        for src, p0, plans in per_source:
            waves.append((src, p0, [(plan, self.figure(plan, True)) for plan in plans]))
        last = {src: p0 for src, p0, _ in per_source}
        remaining = n_rev
        while remaining > 0:
            src, _, plans = per_source[0 if rnd() < 0.5 else rng.randrange(len(per_source))]
            tw = last[src] + rng.randrange(6 * HOUR, 6 * DAY, MINUTE)
            if tw > t0 + 45 * DAY:
                tw = t0 + 45 * DAY - rng.randrange(0, 20 * HOUR, MINUTE)
                if tw <= last[src]:
                    tw = last[src] + HOUR
            last[src] = tw
            chosen = [plans[0]] + [p for p in plans[1:] if rnd() < 0.35]
            chosen = chosen[:remaining]
            remaining -= len(chosen)
            waves.append((src, tw, [(plan, self.figure(plan, False)) for plan in chosen]))

        # reports: a wave is one report of up to five claims, the source's own or relayed
        first_ingest: dict[int, int] = {}
        max_ingest = t0
        first_rep = None
        pending = []
        i = 0
        n_initial = len(sources)
        while i < len(waves):
            src, tw, items = waves[i]
            group = [(src, tw, items)]
            if (i + 1 < n_initial and rnd() < 0.3
                    and len(items) + len(waves[i + 1][2]) <= 5):
                group.append(waves[i + 1])  # a news agency relays two sources at once
                i += 1
            i += 1
            relayed = len(group) > 1 or rnd() < 0.4
            if relayed:
                publisher = self.news_publisher(ci)
                pub = max(g[1] for g in group) + rng.randrange(10 * MINUTE, 3 * HOUR, MINUTE)
                exact = rnd() < 0.5
            else:
                publisher, pub, exact = src, tw, False
            flat = []
            for g_src, g_t, g_items in group:
                for plan, fig in g_items:
                    flat.append((plan[0], g_t if (exact or g_t == pub) else pub) + fig)
            for k in range(0, len(flat), 5):
                rep = _Report(publisher, _clamp(pub), flat[k:k + 5])
                ingest = pub + rng.randrange(MINUTE, 2 * HOUR)
                if rnd() < 0.05:  # found late: an older report ingested after newer ones
                    ingest += rng.randrange(2 * DAY, 20 * DAY)
                for item in rep.items:
                    key = id(item[0])
                    if key not in first_ingest or ingest < first_ingest[key]:
                        first_ingest[key] = ingest
                max_ingest = max(max_ingest, ingest)
                pending.append((ingest, rep))
                if first_rep is None and src == lead:
                    first_rep = rep
        if len(pending) > n_initial and rnd() < 0.05:  # some later report amends it
            pending[rng.randrange(n_initial, len(pending))][1].amend = True
            self.planned += 1
        for ingest, rep in pending:
            self.push(ingest, rep)

        # corrections and retractions of this incident's claims
        n_cor = self.poisson(max(0.0, _COR + 0.3 * acc["cor"]) * n_claims / _CLAIMS)
        acc["cor"] += _COR - n_cor
        for _ in range(n_cor):
            cl = claims[rng.randrange(n_claims)][0]
            self.push(first_ingest[id(cl)] + rng.randrange(DAY, 30 * DAY, MINUTE), (_CORRECTION, cl))
        n_ret = min(n_claims, self.poisson(max(0.0, _RET + 0.3 * acc["ret"]) * n_claims / _CLAIMS))
        acc["ret"] += _RET - n_ret
        for plan in rng.sample(claims, n_ret):
            cl = plan[0]
            self.push(first_ingest[id(cl)] + rng.randrange(DAY, 25 * DAY, MINUTE), (_RETRACTION, cl))

        if dup_of is not None:
            self.push(max_ingest + rng.randrange(DAY, 10 * DAY, MINUTE), (_MERGE, inc, dup_of))
            self.planned += 1
        self.planned += 1 + n_claims + n_rev + n_cor + n_ret
        return inc, first_rep

    def news_publisher(self, ci: int) -> str:
        rng, w = self.rng, self.w
        rnd = rng.random
        if rnd() < 0.6:
            news = w.countries[ci]["news"]
        else:
            news = w.intl_news
        return news[rng.randrange(len(news))]

    def truth(self, toll: int, measure: str, group: str) -> int:
        u = self.rng.uniform
        if measure == "killed":
            if group == "all":
                return toll
            return round(toll * (u(0.1, 0.4) if group == "children" else u(0.1, 0.3) if group == "women" else u(0.5, 1.0)))
        if measure == "injured":
            inj = round(toll * u(0.8, 3.0)) + self.rng.randint(0, 4)
            return inj if group == "all" else round(inj * u(0.1, 0.4))
        return self.rng.randint(0, max(1, toll // 3)) if group == "all" else self.rng.randint(0, 2)

    def figure(self, plan: list, first: bool) -> tuple:
        """The next figure of a claim (published in order): (low, high, best, qualifier)."""
        rng = self.rng
        rnd = rng.random
        cl, target, prev = plan
        if first:
            low = target if rnd() < 0.5 else round(target * rng.uniform(0.3, 0.95))
        elif rnd() < 0.85 or prev == 0:  # revised up, mostly toward the source's final count
            if prev < target:
                low = prev + max(1, round((target - prev) * rng.uniform(0.3, 1.0)))
            else:
                low = prev + rng.randint(1, max(1, prev // 5))
        else:  # revised down
            low = max(0, prev - rng.randint(1, max(1, prev // 4)))
        plan[2] = low
        high, best, qual = low, None, None
        if rnd() < 0.2:
            high = low + rng.randint(1, max(2, low // 2))
            if rnd() < 0.5:
                best = rng.randint(low, high)
        if rnd() < 0.35:
            x = rnd() * 100
            qual = _QUALIFIERS[0 if x < 55 else 1 if x < 75 else 2 if x < 85 else 3]
        return (low, high, best, qual)

    # -- emitting -------------------------------------------------------------------------

    def define(self, inc: _Inc) -> None:
        inc.defined = True
        st = self.st
        st["incidents"] += 1
        f = inc.fields
        if "country" in f:
            self._countries_used.add(f["country"])
        if "admin1" in f:
            self._admin1_used.add((f.get("country"), f["admin1"]))
        if "admin2" in f:
            self._admin2_used.add(f["admin2"])  # admin2 names are unique in the world

    def emit_report(self, rep: _Report, budget: int) -> list:
        if not rep.items:
            return []
        rng, st = self.rng, self.st
        rnd = rng.random
        out = []
        standalone = rnd() < 0.15
        defs: list[dict] = []
        claims: list[dict] = []
        cost = 0
        pub = rep.pub
        self.n_rep += 1
        keys = self._keys
        sources_used = self._sources_used
        for cl, cpub, low, high, best, qual in rep.items:
            inc = cl.inc
            need = 0 if inc.defined else 1
            if cost + 1 + need > budget:
                if cost == 0 and need and budget >= 1:  # room only for the definition
                    self.define(inc)
                    st["incident_docs"] += 1
                    return [({"kind": "incident", **inc.fields}, 1)]
                break
            if need:
                self.define(inc)
                if standalone:
                    out.append(({"kind": "incident", **inc.fields}, 1))
                    st["incident_docs"] += 1
                else:
                    defs.append(dict(inc.fields))
                cost += 1
            cost += 1
            d = {"incident_id": inc.iid, "source": cl.source, "measure": cl.measure}
            if cl.group != "all" or rnd() < 0.7:
                d["group"] = cl.group
            d["low"] = low
            if high != low or rnd() < 0.05:
                d["high"] = high
                if high != low:
                    st["with_range"] += 1
            if best is not None:
                d["best"] = best
                st["with_best"] += 1
            if qual is not None:
                d["qualifier"] = qual
                st["with_qualifier"] += 1
            if cpub != pub:
                cpub = _clamp(cpub)
                d["published_at"] = _ts(cpub)
                st["claim_published_at"] += 1
                self._note_pub(cpub)
            if rnd() < 0.25:
                d["quote"] = _quote(low, high, qual, cl.measure, cl.group)
            claims.append(d)
            # bookkeeping
            vers = cl.vers
            if vers:
                st["revisions"] += 1
                prev = vers[-1]
                if prev is None:
                    prev = next((v for v in reversed(vers) if v is not None), None)
                if prev is not None:
                    if low > prev[0]:
                        st["revisions_up"] += 1
                    elif low < prev[0]:
                        st["revisions_down"] += 1
                if cpub < cl.maxpub:
                    st["late_versions"] += 1
            else:
                st["new_claims"] += 1
            vers.append([low, high, best, qual, cpub])
            if cpub > cl.maxpub:
                cl.maxpub = cpub
            k = (cl.measure, cl.group)
            keys[k] = keys.get(k, 0) + 1
            if low > 50:
                st["low_over_50"] += 1
                if low > 100:
                    st["low_over_100"] += 1
            sources_used.add(cl.source)
        if not claims:
            return out
        if rep.amend and cost < budget:
            inc = rep.items[0][0].inc
            if inc.defined and not inc.merged and all(x["incident_id"] != inc.iid for x in defs):
                defs.append(self.amendment(inc))
                st["amendments"] += 1
                cost += 1
        doc = {"kind": "report", "report_id": f"{self.w.slugs[rep.publisher]}-{_day(pub).replace('-', '')}-{self.n_rep:07d}",
               "publisher": rep.publisher, "published_at": _ts(pub)}
        if rnd() < 0.5:
            doc["title"] = f"{rep.publisher}: update on {claims[0]['incident_id']}"
        if rnd() < 0.3:
            doc["url"] = f"https://{self.w.slugs[rep.publisher]}.example/{doc['report_id']}"
        if defs:
            doc["incidents"] = defs
        doc["claims"] = claims
        st["reports"] += 1
        st["claims_in_reports"] += len(claims)
        sizes = st["report_sizes"]
        sizes[len(claims)] = sizes.get(len(claims), 0) + 1
        self._note_pub(pub)
        out.append((doc, cost - (len(out))))  # standalone incident docs carry their own cost
        return out

    def amendment(self, inc: _Inc) -> dict:
        rng, f = self.rng, inc.fields
        a = {"incident_id": inc.iid}
        if "admin2" not in f and "admin1" in f and "country" in f:
            ci = _COUNTRIES.index(f["country"])
            for a1, admin2s in self.w.countries[ci]["admin1"]:
                if a1 == f["admin1"]:
                    a["admin2"] = admin2s[rng.randrange(5)][0]
        elif "occurred_to" not in f and "occurred_from" in f:
            a["occurred_to"] = (date.fromisoformat(f["occurred_from"]) + timedelta(days=rng.randint(0, 2))).isoformat()
        else:
            a["title"] = f["title"] + " (updated)"
        f.update(a)
        return a

    def emit_correction(self, t: int, cl: _Claim) -> list:
        rng, st = self.rng, self.st
        rnd = rng.random
        figs = [i for i, v in enumerate(cl.vers) if v is not None]
        if not figs:  # its first report has not arrived yet: try again later
            self.push(t + DAY, (_CORRECTION, cl))
            return []
        n = figs[-1] if rnd() < 0.5 else figs[rng.randrange(len(figs))]
        v = cl.vers[n]
        low, high, best, qual, pub = v
        doc = {"kind": "correction", "incident_id": cl.inc.iid, "source": cl.source,
               "measure": cl.measure, "group": cl.group, "version": n + 1}
        x = rnd()
        if x < 0.6:  # the low figure was mistyped
            new = _typo(rng, low)
            doc["low"] = new
            if high == low or new > high:
                doc["high"] = high = new if high == low else max(high, new)
            low = new
            if best is not None and not low <= best <= high:
                doc["best"] = best = low
            reason = _CORRECTION_REASONS[rng.randrange(5)]
        elif x < 0.8:  # the range was recorded wrongly
            new = max(low, high + rng.choice((-2, -1, 1, 2, 3, 5, 10)))
            if new == high:
                new = high + 1
            doc["high"] = high = new
            if best is not None and best > high:
                doc["best"] = best = high
            elif best is None and high > low and rnd() < 0.5:
                doc["best"] = best = (low + high) // 2
            reason = _CORRECTION_REASONS[5]
        elif x < 0.9:  # the qualifier
            new = _QUALIFIERS[rng.randrange(4)]
            if new == qual:
                new = _QUALIFIERS[(_QUALIFIERS.index(new) + 1) % 4]
            doc["qualifier"] = qual = new
            reason = _CORRECTION_REASONS[7]
        else:  # the publication time
            shift = rng.randrange(HOUR, 2 * DAY, MINUTE) * (1 if rnd() < 0.5 else -1)
            new = _clamp(pub + shift)
            if new == pub:
                new = pub - HOUR
            doc["published_at"] = _ts(new)
            pub = new
            reason = _CORRECTION_REASONS[6]
        doc["reason"] = reason
        cl.vers[n] = [low, high, best, qual, pub]
        if pub > cl.maxpub:
            cl.maxpub = pub
        st["corrections"] += 1
        return [(doc, 1)]

    def emit_retraction(self, t: int, cl: _Claim) -> list:
        rng = self.rng
        if not cl.vers:
            self.push(t + DAY, (_RETRACTION, cl))
            return []
        pub = t - rng.randrange(0, 6 * HOUR, MINUTE)
        if pub <= cl.maxpub:
            pub = cl.maxpub + rng.randrange(HOUR, 12 * HOUR, MINUTE)
        pub = _clamp(pub)
        cl.vers.append(None)
        cl.maxpub = max(cl.maxpub, pub)
        self._note_pub(pub)
        self.st["retractions"] += 1
        return [({"kind": "retraction", "incident_id": cl.inc.iid, "source": cl.source,
                  "measure": cl.measure, "group": cl.group, "published_at": _ts(pub),
                  "reason": _RETRACTION_REASONS[rng.randrange(len(_RETRACTION_REASONS))]}, 1)]

    def emit_merge(self, t: int, dup: _Inc, into: _Inc) -> list:
        if dup.merged or into.merged or dup is into:
            return []
        if not (dup.defined and into.defined):
            if t > END + 60 * DAY:
                return []
            self.push(t + DAY, (_MERGE, dup, into))
            return []
        dup.merged = True
        self.st["merges"] += 1
        return [({"kind": "merge", "incident_id": dup.iid, "into": into.iid,
                  "reason": _MERGE_REASONS[self.rng.randrange(len(_MERGE_REASONS))]}, 1)]

    def _note_pub(self, pub: int) -> None:
        if self.first_pub is None or pub < self.first_pub:
            self.first_pub = pub
        if self.last_pub is None or pub > self.last_pub:
            self.last_pub = pub

    def finish_stats(self) -> None:
        st = self.st
        ms, gs, ks = st.setdefault("measures", {}), st.setdefault("groups", {}), st.setdefault("keys", {})
        for (m, g), n in self._keys.items():
            ms[m] = ms.get(m, 0) + n
            gs[g] = gs.get(g, 0) + n
            ks[f"{m}/{g}"] = ks.get(f"{m}/{g}", 0) + n
        st["sources"] = len(self._sources_used)
        st["countries"] = len(self._countries_used)
        st["admin1"] = len(self._admin1_used)
        st["admin2"] = len(self._admin2_used)
        st["first_published"] = _ts(self.first_pub) if self.first_pub is not None else None
        st["last_published"] = _ts(self.last_pub) if self.last_pub is not None else None


def _typo(rng: Random, n: int) -> int:
    """A plausible mis-recording of ``n`` (what the correction puts right), never ``n`` itself."""
    s = str(n)
    x = rng.random()
    if len(s) >= 2 and x < 0.35 and s[0] != s[1] and s[1] != "0":
        return int(s[1] + s[0] + s[2:])
    if len(s) >= 2 and x < 0.5:
        return int(s[:-1])  # a digit too many was typed
    if x < 0.6 and n < 100:
        return n * 10 + rng.randrange(10) if n else rng.randint(1, 9)
    new = n + rng.choice((-3, -2, -1, 1, 2, 3))
    return new if new >= 0 else n + 1


_WORDS = {"killed": "killed", "injured": "wounded", "missing": "missing"}
_WHO = {"all": "people", "children": "children", "women": "women", "civilians": "civilians"}
_QUAL_TEXT = {"at_least": "at least ", "about": "about ", "up_to": "up to ", "exact": "", None: ""}


def _quote(low: int, high: int, qual: str | None, measure: str, group: str) -> str:
    num = f"between {low} and {high}" if high != low else f"{_QUAL_TEXT[qual]}{low}"
    who = "person" if group == "all" and high == low == 1 else _WHO.get(group, group)
    verb = "was" if high == low == 1 else "were"
    return f"{num} {who} {verb} {_WORDS.get(measure, measure)}"


def generate(events: int, seed: int = DEFAULT_SEED, *, stats: dict | None = None) -> Iterator[dict]:
    """Contract documents in ingest order, ``events`` stored events in all.

    Deterministic for (events, seed). Time is paced so that any size spans the five years, so
    a different ``events`` gives a different stream, not a prefix of a longer one. Pass a dict
    as ``stats`` to have it filled with counts as the stream is consumed (complete once the
    stream is exhausted).
    """
    return _Generator(int(events), seed, stats).run()


# ---------------------------------------------------------------------------------------------
# The checker: tracks the state the documents build and reports anything the contract (or this
# generator's own rules) would reject.

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CLAIM_FIELDS = {"incident_id", "source", "measure", "group", "low", "high", "best", "qualifier",
                 "published_at", "quote", "note"}
_DOC_FIELDS = {
    "report": {"kind", "report_id", "publisher", "published_at", "url", "title", "incidents", "claims"},
    "incident": None,  # any attribute is kept
    "correction": {"kind", "incident_id", "source", "measure", "group", "version", "low", "high",
                   "best", "qualifier", "published_at", "reason"},
    "retraction": {"kind", "incident_id", "source", "measure", "group", "published_at", "reason"},
    "merge": {"kind", "incident_id", "into", "reason"},
}


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def check(docs: Iterable[dict], *, counts: dict | None = None, strict: bool = True) -> list[str]:
    """Problems with ``docs`` in order, each ``doc N: …``; [] when all are valid.

    Checks what the contract rejects (unknown kind or claim field, bad counts or ranges,
    timestamps without a zone, claims on unknown incidents, corrections or retractions of unknown
    claims or versions, bad merges, a reused report_id) and this generator's own promises
    (published times in 2019..2023 with Z, 1-5 claims a report, no claim key twice in a report,
    no new versions or amendments on merged-away incidents); ``strict=False`` checks only the
    contract (so hand-written files like the shared examples pass). ``counts``, if given, is
    filled with the number of events of each kind.
    """
    problems: list[str] = []
    incidents: dict[str, str | None] = {}  # id -> the id it was merged into
    claims: dict[tuple, list] = {}  # key -> versions: [low, high, best] or None (retraction)
    maxpub: dict[tuple, str] = {}
    reports: set[str] = set()
    c = counts if counts is not None else {}
    for k in ("documents", "events", "incident_entries", "incidents", "new_claims", "revisions",
              "late_versions", "corrections", "retractions", "merges"):
        c.setdefault(k, 0)
    lo_ts, hi_ts = "2019-01-01T00:00:00Z", "2023-12-31T23:59:59Z"

    def bad(n: int, msg: str) -> None:
        problems.append(f"doc {n}: {msg}")

    def ts_ok(n: int, where: str, v: Any) -> bool:
        if not strict and isinstance(v, str) and _DATE.fullmatch(v):
            return True
        if not isinstance(v, str) or not _RFC3339.fullmatch(v):
            bad(n, f"{where}: not an RFC 3339 timestamp with a zone: {v!r}")
            return False
        if not strict:
            pass
        elif not v.endswith("Z"):
            bad(n, f"{where}: not in UTC with Z: {v!r}")
        elif not lo_ts <= v <= hi_ts:
            bad(n, f"{where}: outside 2019..2023: {v}")
        return True

    def incident_entry(n: int, inc: Any, where: str) -> str | None:
        """An incident entry (in a report's ``incidents`` or an incident document): its id,
        or None when it names none."""
        iid = inc.get("incident_id") if isinstance(inc, dict) else None
        if not isinstance(iid, str) or not iid:
            bad(n, f"{where}incident_id: required")
            return None
        if strict and incidents.get(iid) is not None:
            bad(n, f"{where}amends {iid!r}, which was merged into {incidents[iid]!r}")
        for f in ("occurred_from", "occurred_to"):
            if f in inc and not (isinstance(inc[f], str) and _DATE.fullmatch(inc[f])):
                bad(n, f"{where}{f}: not a date")
        if iid not in incidents:
            incidents[iid] = None
            c["incidents"] += 1
        c["incident_entries"] += 1
        c["events"] += 1
        return iid

    def key_of(n: int, d: dict, where: str) -> tuple | None:
        for f in ("incident_id", "source", "measure"):
            if not isinstance(d.get(f), str) or not d[f].strip():
                bad(n, f"{where}{f}: required")
                return None
        g = d.get("group", "all")
        if not isinstance(g, str) or not g:
            bad(n, f"{where}group: must be a token")
            return None
        return (d["incident_id"], d["source"].strip().casefold(), d["measure"], g)

    def figures_ok(n: int, where: str, low: Any, high: Any, best: Any) -> bool:
        if not _count(low):
            bad(n, f"{where}low: must be an integer >= 0, got {low!r}")
            return False
        if not _count(high) or high < low:
            bad(n, f"{where}high: must be an integer >= low ({high!r} < {low})")
            return False
        if best is not None and (not _count(best) or not low <= best <= high):
            bad(n, f"{where}best: must be between low and high ({low} <= {best!r} <= {high} fails)")
            return False
        return True

    for n, doc in enumerate(docs, 1):
        c["documents"] += 1
        kind = doc.get("kind") if isinstance(doc, dict) else None
        if kind not in _DOC_FIELDS:
            bad(n, f"kind: unknown {kind!r}")
            continue
        allowed = _DOC_FIELDS[kind]
        if allowed is not None and set(doc) - allowed:
            bad(n, f"unknown fields {sorted(set(doc) - allowed)}")
        if kind == "report":
            rid = doc.get("report_id")
            if not isinstance(rid, str) or not rid:
                bad(n, "report_id: required")
            elif rid in reports:
                bad(n, f"report_id: {rid!r} used twice")
            reports.add(rid)
            if not isinstance(doc.get("publisher"), str) or not doc["publisher"]:
                bad(n, "publisher: missing")
            ts_ok(n, "published_at", doc.get("published_at"))
            rpub = doc.get("published_at")
            defined_here: list[str] = []
            for i, inc in enumerate(doc.get("incidents") or [], 1):
                iid = incident_entry(n, inc, f"incident {i}: ")
                if iid is not None:
                    defined_here.append(iid)
            cl = doc.get("claims")
            if not isinstance(cl, list) or not 1 <= len(cl) <= (5 if strict else 10**9):
                bad(n, f"claims: expected 1-5 claims, got {len(cl) if isinstance(cl, list) else cl!r}")
                cl = cl if isinstance(cl, list) else []
            seen: set[tuple] = set()
            for i, d in enumerate(cl, 1):
                w = f"claim {i}: "
                if not isinstance(d, dict):
                    bad(n, f"{w}not an object")
                    continue
                if set(d) - _CLAIM_FIELDS:
                    bad(n, f"{w}unknown fields {sorted(set(d) - _CLAIM_FIELDS)}")
                key = key_of(n, d, w)
                if key is None:
                    continue
                if key[0] not in incidents:
                    bad(n, f"{w}incident_id: unknown incident {key[0]!r}")
                    continue
                if strict and incidents[key[0]] is not None:
                    bad(n, f"{w}incident_id: {key[0]!r} was merged away (generator rule)")
                if key in seen:
                    bad(n, f"{w}the same claim key twice in one report")
                seen.add(key)
                low = d.get("low")
                high = d.get("high", low)
                if not figures_ok(n, w, low, high, d.get("best")):
                    continue
                if d.get("qualifier") not in (None, *_QUALIFIERS):
                    bad(n, f"{w}qualifier: unknown {d['qualifier']!r}")
                pub = d.get("published_at", rpub)
                if "published_at" in d:
                    ts_ok(n, f"{w}published_at", pub)
                c["events"] += 1
                vers = claims.get(key)
                if vers is None:
                    claims[key] = [[low, high, d.get("best")]]
                    c["new_claims"] += 1
                    maxpub[key] = pub
                else:
                    vers.append([low, high, d.get("best")])
                    c["revisions"] += 1
                    if isinstance(pub, str) and pub < maxpub[key]:
                        c["late_versions"] += 1
                    else:
                        maxpub[key] = pub
        elif kind == "incident":
            if incident_entry(n, doc, "") is None:
                continue
        elif kind in ("correction", "retraction"):
            key = key_of(n, doc, "")
            if key is None:
                continue
            vers = claims.get(key)
            if vers is None:
                bad(n, f"unknown claim {key}")
                continue
            if not isinstance(doc.get("reason"), str) or not doc["reason"]:
                bad(n, "reason: required")
            c["events"] += 1
            if kind == "retraction":
                if ts_ok(n, "published_at", doc.get("published_at")):
                    maxpub[key] = max(maxpub[key], doc["published_at"])
                vers.append(None)
                c["retractions"] += 1
                continue
            c["corrections"] += 1
            v = doc.get("version", len(vers))
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= len(vers):
                bad(n, f"version: the claim has no version {v!r} (it has {len(vers)})")
                continue
            fixes = {f for f in ("low", "high", "best", "qualifier", "published_at") if f in doc}
            if not fixes:
                bad(n, "a correction must fix something")
            if "published_at" in doc:
                ts_ok(n, "published_at", doc["published_at"])
            if "qualifier" in doc and doc["qualifier"] not in _QUALIFIERS:
                bad(n, f"qualifier: unknown {doc['qualifier']!r}")
            target = vers[v - 1]
            if target is None:
                if fixes - {"published_at"}:
                    bad(n, f"version {v} is a retraction; only published_at can be corrected")
                continue
            low, high, best = (doc.get(f, target[j]) for j, f in enumerate(("low", "high", "best")))
            if figures_ok(n, f"version {v}: ", low, high, best):
                vers[v - 1] = [low, high, best]
        else:  # merge
            a, b = doc.get("incident_id"), doc.get("into")
            if not isinstance(doc.get("reason"), str) or not doc["reason"]:
                bad(n, "reason: required")
            if a not in incidents:
                bad(n, f"incident_id: unknown incident {a!r}")
            elif b not in incidents:
                bad(n, f"into: unknown incident {b!r}")
            elif a == b:
                bad(n, "into: an incident cannot be merged into itself")
            elif incidents[b] is not None:
                bad(n, f"into: {b!r} was merged into {incidents[b]!r}")
            elif incidents[a] is not None:
                bad(n, f"incident_id: {a!r} was already merged into {incidents[a]!r}")
            else:
                incidents[a] = b
            c["merges"] += 1
            c["events"] += 1
    return problems


# ---------------------------------------------------------------------------------------------
# Command line

def _summary(st: dict, seconds: float) -> str:
    ev = st["events"] or 1
    rows = [f"events {st['events']:,} in {st['documents']:,} documents ({seconds:.1f} s)"]
    for k in ("incidents", "amendments", "incident_docs", "new_claims", "revisions", "corrections",
              "retractions", "merges"):
        rows.append(f"  {k:<15} {st[k]:>10,}  {100 * st[k] / ev:6.2f}% of events")
    rev = st["revisions"] or 1
    rows.append(f"  revisions up {st['revisions_up']:,} ({100 * st['revisions_up'] / rev:.0f}%), "
                f"down {st['revisions_down']:,} ({100 * st['revisions_down'] / rev:.0f}%); "
                f"late-arriving versions {st['late_versions']:,} ({100 * st['late_versions'] / rev:.1f}% of revisions)")
    rows.append(f"  reports {st['reports']:,}, claims a report "
                + ", ".join(f"{k}: {v:,}" for k, v in sorted(st["report_sizes"].items()))
                + f"; claim-level published_at {st['claim_published_at']:,}")
    inc = st["incidents"] or 1
    rows.append(f"  countries {st['countries']}, admin1 {st['admin1']}, admin2 {st['admin2']}, sources {st['sources']}, "
                f"new claims an incident {st['new_claims'] / inc:.2f}, "
                f"sources an incident {st['planned_sources'] / (st['planned_incidents'] or 1):.2f}")
    cl = st["claims_in_reports"] or 1
    rows.append("  measures " + ", ".join(f"{k} {100 * v / cl:.0f}%" for k, v in sorted(st["measures"].items(), key=lambda kv: -kv[1])))
    rows.append("  groups " + ", ".join(f"{k} {100 * v / cl:.0f}%" for k, v in sorted(st["groups"].items(), key=lambda kv: -kv[1])))
    rows.append(f"  low > 50: {100 * st['low_over_50'] / cl:.1f}%, > 100: {100 * st['low_over_100'] / cl:.1f}%; "
                f"ranges {100 * st['with_range'] / cl:.0f}%, best {100 * st['with_best'] / cl:.0f}%, "
                f"qualifier {100 * st['with_qualifier'] / cl:.0f}%")
    rows.append(f"  published {st['first_published']} .. {st['last_published']}")
    return "\n".join(rows)


def _read_jsonl(path: str) -> Iterator[dict]:
    import json

    with (sys.stdin if path == "-" else open(path, encoding="utf-8")) as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Write synthetic Tollbook documents (JSON Lines).")
    p.add_argument("--events", type=int, help="stored events to generate (claims, incident entries, corrections, retractions, merges)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("-o", "--output", default="-", help="file to write, '-' for stdout (default)")
    p.add_argument("--stats", action="store_true", help="print a summary of the mix to stderr")
    p.add_argument("--check", action="store_true", help="check the documents instead of writing them; exit 1 on problems")
    p.add_argument("--input", help="with --check: check this JSONL file ('-' for stdin) instead of generating")
    p.add_argument("--contract-only", action="store_true",
                   help="with --check: only the contract's rules, not this generator's own promises")
    a = p.parse_args(argv)
    if a.input is None and a.events is None:
        p.error("--events is required (unless --check --input FILE)")
    started = time.perf_counter()
    st: dict = {}
    docs: Iterable[dict] = _read_jsonl(a.input) if a.input else generate(a.events, a.seed, stats=st)
    if a.check:
        counts: dict = {}
        problems = check(docs, counts=counts, strict=not a.contract_only)
        for line in problems[:50]:
            print(line, file=sys.stderr)
        if len(problems) > 50:
            print(f"… and {len(problems) - 50} more", file=sys.stderr)
        print(f"checked {counts['documents']:,} documents, {counts['events']:,} events: "
              f"{len(problems)} problem(s); " + ", ".join(f"{k} {v:,}" for k, v in counts.items()
                                                          if k not in ("documents", "events")),
              file=sys.stderr)
        if a.stats and st:
            print(_summary(st, time.perf_counter() - started), file=sys.stderr)
        return 1 if problems else 0
    out = sys.stdout.buffer if a.output == "-" else open(a.output, "wb")
    try:
        buf: list[bytes] = []
        for doc in docs:
            buf.append(_dumps(doc))
            if len(buf) >= 4096:
                buf.append(b"")
                out.write(b"\n".join(buf))
                buf.clear()
        if buf:
            buf.append(b"")
            out.write(b"\n".join(buf))
    finally:
        if out is not sys.stdout.buffer:
            out.close()
        else:
            out.flush()
    if a.stats:
        print(_summary(st, time.perf_counter() - started), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
