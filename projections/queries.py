"""Answers to tally, history and diff, read from the projections at a point on both clocks.

``as_of`` (recorded) and ``known_at`` (published) are microseconds or ``None`` (now / any).
Every query selects rows valid at the point with indexed range conditions; the tally rules
themselves live in :mod:`tollbook.domain.tally`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any

import orjson

from tollbook.domain.ids import source_key
from tollbook.domain.tally import POLICIES, Candidate, combine, counts
from tollbook.domain.time import format_instant, format_recorded
from tollbook.projections.schema import ENTRY_KIND, VERSION_KIND
from tollbook.store.eventstore import EventStore, StoreUnusable

FOREVER = 2**62
GROUPINGS = ("incident", "country", "admin1", "admin2", "source", "perpetrator", "day", "month", "year")
_FIELD_OF = {"country": "country", "admin1": "admin1", "admin2": "admin2", "perpetrator": "perpetrator",
             "day": "occurred_day", "month": "occurred_day", "year": "occurred_day"}
_CUT = {"day": 10, "month": 7, "year": 4}
_VALID = "recorded_at <= ? AND (to_recorded_at IS NULL OR to_recorded_at > ?)"


def _in(column: str, values: list[str]) -> str:
    if not values:
        return "1 = 0"  # ``IN ()`` is SQLite's alone
    return f"{column} IN ({', '.join('?' * len(values))})"


def canonical_ids(cursor: Any, as_of: int) -> dict[str, str]:
    """Merged-away incident -> the incident its claims count under, at ``as_of``."""
    cursor.execute(f"SELECT incident_id, canonical_id FROM tb_canonical WHERE {_VALID}", (as_of, as_of))
    return dict(cursor.fetchall())


def pooled_at(cursor: Any, incident_id: str | None, as_of: int) -> tuple[dict[str, str], list[str] | None]:
    """The merged-away -> canonical map a query needs, and the incident ids pooled where
    ``incident_id`` counts (None: every incident). For one incident only its own rows of
    ``tb_canonical`` are read (indexed), not every merge."""
    if incident_id is None:
        return canonical_ids(cursor, as_of), None
    cursor.execute(f"SELECT canonical_id FROM tb_canonical WHERE incident_id = ? AND {_VALID}",
                   (incident_id, as_of, as_of))
    row = cursor.fetchone()
    target = row[0] if row else incident_id
    cursor.execute(f"SELECT incident_id FROM tb_canonical WHERE canonical_id = ? AND {_VALID}",
                   (target, as_of, as_of))
    canonical = {merged: target for (merged,) in cursor.fetchall()}
    return canonical, [target, *canonical]


@dataclass
class SourceFigure:
    incident_id: str  # canonical
    source_key: str
    source: str  # as named in its earliest-recorded pooled claim
    first: int  # that claim's position
    figure: Candidate


def source_figures(cursor: Any, measure: str, group: str, as_of: int, known_at: int,
                   incident_ids: list[str] | None, canonical: dict[str, str]) -> list[SourceFigure]:
    """Each source's counting figure per canonical incident: its pooled claims' current version.

    A source is named as in its earliest-recorded pooled claim, whatever ``known_at`` is."""
    sql = (
        f"SELECT incident_id, source_key, {VERSION_KIND}, low, high, best, published_at, version_position,"
        f" source, claim_position FROM tb_entries WHERE measure = ? AND grp = ? AND {_VALID}"
    )
    params: list[Any] = [measure, group, as_of, as_of]
    if incident_ids is not None:
        sql += " AND " + _in("incident_id", incident_ids)
        params += incident_ids
    cursor.execute(sql, params)
    # (canonical incident, source key) -> [first claim's position, its source name, current row]
    found: dict[tuple[str, str], list] = {}
    pooled_into = canonical.get
    for row in cursor:
        incident_id, key, _, _, _, _, published_at, recorded, source, claim_position = row
        pooled = (pooled_into(incident_id, incident_id), key)
        state = found.get(pooled)
        if state is None:
            found[pooled] = [claim_position, source, row if published_at <= known_at else None]
            continue
        if claim_position < state[0]:
            state[0], state[1] = claim_position, source
        if published_at <= known_at:
            # domain.tally.current's rule, row by row: latest published, then last recorded.
            best = state[2]
            if best is None or (published_at, recorded) > (best[6], best[7]):
                state[2] = row
    return [SourceFigure(pooled[0], pooled[1], source, first, Candidate(*row[2:8]))
            for pooled, (first, source, row) in found.items() if row is not None and row[2] == "reported"]


def incident_field(cursor: Any, column: str, as_of: int, incident_ids: list[str] | None) -> dict[str, Any]:
    """Incident -> one of its fields (a column of tb_incidents) as it stood at ``as_of``."""
    sql = f"SELECT incident_id, {column} FROM tb_incidents WHERE {_VALID}"
    params: list[Any] = [as_of, as_of]
    if incident_ids is not None:
        sql += " AND " + _in("incident_id", incident_ids)
        params += incident_ids
    cursor.execute(sql, params)
    return dict(cursor.fetchall())


def _sort_key(row: dict[str, Any]) -> tuple:
    key = row["key"]
    return (key is None, key.casefold() if isinstance(key, str) else key or "", key or "")


def _row(key: Any, low: int, high: int, best: int, incidents: int, sources: set[str]) -> dict[str, Any]:
    # ``sources`` stays a set until the answer is built (_sorted_sources)
    return {"key": key, "low": low, "high": high, "best": best, "incidents": incidents, "sources": sources}


def _sorted_sources(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row | {"sources": sorted(row["sources"], key=lambda s: (s.casefold(), s))} for row in rows]


def incident_rows(figures: list[SourceFigure], policy: str) -> dict[str, dict[str, Any]]:
    by_incident: dict[str, list[SourceFigure]] = defaultdict(list)
    for figure in figures:
        by_incident[figure.incident_id].append(figure)
    rows = {}
    for incident_id, found in by_incident.items():
        low, high, best = combine([f.figure for f in found], policy)
        rows[incident_id] = _row(incident_id, low, high, best, 1, {f.source for f in found})
    return rows


# The policies the database can tally: the column of counted_rows' per-incident query that holds
# an incident's best, and the best of one source's figure (in tb_counting, alias ``c``).
_BEST_IN_SQL = {"conservative": ("low", "c.low"), "highest": ("high", "c.high"),
                "latest": ("latest", "coalesce(c.best, c.low)")}


# The most incident ids a query names in an IN list (SQLite takes at most 32,766 parameters).
_MAX_IDS = 10_000


def _pools(canonical: dict[str, str], spelled: Iterable[str] = (), size: int = 5_000) -> Iterator[list[str]]:
    """The incidents that merges pool together, in lists of about ``size`` ids, each pool whole
    (so a list can exceed ``size``, and even ``_MAX_IDS``: then it is read by a scan); and the
    pools of the ``spelled`` incidents (see :func:`spelled`)."""
    members: dict[str, list[str]] = defaultdict(list)
    for merged, target in canonical.items():
        members[target].append(merged)
    for incident_id in spelled:
        members[canonical.get(incident_id, incident_id)]  # noqa: B018 (a pool of its own if in none)
    chunk: list[str] = []
    for target, merged in members.items():
        chunk += [target, *merged]
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def spelled(cursor: Any) -> list[str]:
    """Incidents where a source may have several claims on one key: claims that a store written
    before sources were compared by their NFKC key holds apart (projections.projector.Claims)."""
    cursor.execute("SELECT incident_id FROM tb_spelled")
    return [incident_id for (incident_id,) in cursor.fetchall()]


# Incidents that merges pool together at the point (where one source may have several claims),
# and those where a source has several claims of its own (spelled).
_POOLED = (f"SELECT incident_id FROM tb_canonical WHERE {_VALID}"
           f" UNION SELECT canonical_id FROM tb_canonical WHERE {_VALID} UNION SELECT incident_id FROM tb_spelled")


# tb_counting's rows (alias ``c``) that count at a point: measure, group, as_of twice, known_at twice.
_COUNTING = ("c.measure = ? AND c.grp = ? AND c.recorded_at <= ? AND (c.to_recorded_at IS NULL OR c.to_recorded_at > ?)"
             " AND c.published_at <= ? AND (c.next_published_at IS NULL OR c.next_published_at > ?)")


def _pooled_figures(cursor: Any, measure: str, group: str, as_of: int, known_at: int,
                    canonical: dict[str, str]) -> list[SourceFigure]:
    """The source figures of the incidents that merges pool together, the row-by-row way."""
    figures: list[SourceFigure] = []
    for incident_ids in _pools(canonical, spelled(cursor)):
        if len(incident_ids) <= _MAX_IDS:
            figures += source_figures(cursor, measure, group, as_of, known_at, incident_ids, canonical)
        else:  # one pool too big to name: read every incident's figures, keep the pool's
            members = set(incident_ids)
            figures += [f for f in source_figures(cursor, measure, group, as_of, known_at, None, canonical)
                        if f.incident_id in members]
    return figures


def counted_rows(cursor: Any, by: str | None, measure: str, group: str, as_of: int, known_at: int,
                 canonical: dict[str, str], policy: str) -> list[dict[str, Any]]:
    """The tally rows by incident or by an incident field (None: one row, the total), for a
    policy in ``_BEST_IN_SQL``: the rows the row-by-row way gives, but the database picks each
    claim's counting version (tb_counting), combines them per incident and sums them per group.
    Incidents that merges pool together go the row-by-row way and are added in."""
    postgres = getattr(cursor, "postgres", False)
    counting, source = "tb_counting c", "NULL"
    if by is not None:  # sources are named as their claim's first row of tb_entries has it
        counting, source = counting + " JOIN tb_entries e ON e.position = c.claim_position", "e.source"
    if policy == "latest":
        # Beside each row, its incident's best: that of the source that published last (ties:
        # recorded last), as domain.tally.current picks it.
        rows_at = (f"(SELECT c.*, {source} AS source, first_value(coalesce(c.best, c.low)) OVER (PARTITION BY"
                   f" c.incident_id ORDER BY c.published_at DESC, c.version_position DESC) AS latest FROM {counting}"
                   f" WHERE {_COUNTING}) c")
        latest, source = ", max(c.latest) AS latest", "c.source"
    else:
        rows_at, latest = f"{counting} WHERE {_COUNTING}", ""
    # Source names travel as JSON arrays (no separator a name could contain), joined by commas.
    names, joined = (f"json_agg({source})::text", "string_agg(per.sources, ',')") if postgres else (
        f"json_group_array({source})", "group_concat(per.sources, ',')")
    if by is None:
        names = "''"  # the total names no sources
    per_incident = (f"SELECT c.incident_id, min(c.low) AS low, max(c.high) AS high{latest}, {names} AS sources"
                    f" FROM {rows_at} GROUP BY c.incident_id")
    params: list[Any] = [measure, group, as_of, as_of, known_at, known_at]
    best = _BEST_IN_SQL[policy][0]
    sums = _exact_sums(f"per.{column}" for column in ("low", "high", best))
    if by == "incident":
        sql = (f"SELECT incident_id, low, high, {best}, 1, sources FROM ({per_incident}) per"
               f" WHERE incident_id NOT IN ({_POOLED})")
    elif by is None:
        sql = f"SELECT NULL, {sums}, count(*), '' FROM ({per_incident}) per WHERE per.incident_id NOT IN ({_POOLED})"
    else:
        key = f"substr(f.occurred_day, 1, {_CUT[by]})" if by in _CUT else f"f.{_FIELD_OF[by]}"
        sql = (f"SELECT {key}, {sums}, count(*), {joined}"
               f" FROM ({per_incident}) per LEFT JOIN tb_incidents f ON f.incident_id = per.incident_id"
               " AND f.recorded_at <= ? AND (f.to_recorded_at IS NULL OR f.to_recorded_at > ?)"
               f" WHERE per.incident_id NOT IN ({_POOLED}) GROUP BY {key}")
        params += [as_of, as_of]
    cursor.execute(sql, [*params, as_of, as_of, as_of, as_of])
    found = cursor.fetchall() if by == "incident" else [(row[0], *_summed(row[1:7]), *row[7:]) for row in cursor]
    rows = [_row(key, low, high, total, incidents, set(chain.from_iterable(orjson.loads(f"[{sources}]"))))
            for key, low, high, total, incidents, sources in found]
    pooled = incident_rows(_pooled_figures(cursor, measure, group, as_of, known_at, canonical), policy)
    if by == "incident":
        return rows + list(pooled.values())
    groups = {row["key"]: row for row in rows}
    for row in pooled.values() if by is None else _by_field(cursor, pooled, by, as_of):
        _add(groups, None if by is None else row["key"], row)
    return list(groups.values())


def source_sums(cursor: Any, measure: str, group: str, as_of: int, known_at: int, policy: str) -> list[tuple]:
    """``--by source`` over the incidents no merge pools (where a source has one claim each),
    for a policy in ``_BEST_IN_SQL``, summed by the database: per source key, its earliest
    claim's position and source name, the sums of its counting figures, and on how many
    incidents."""
    # SQLite gives a bare column the value of the row where the query's one min() is.
    name = "(array_agg(e.source ORDER BY c.claim_position))[1]" if getattr(cursor, "postgres", False) else "e.source"
    sums = _exact_sums(("c.low", "c.high", _BEST_IN_SQL[policy][1]))
    cursor.execute(
        f"SELECT e.source_key, min(c.claim_position), {name}, {sums}, count(*)"
        " FROM tb_counting c JOIN tb_entries e ON e.position = c.claim_position"
        f" WHERE {_COUNTING} AND c.incident_id NOT IN ({_POOLED}) GROUP BY e.source_key",
        [measure, group, as_of, as_of, known_at, known_at, as_of, as_of, as_of, as_of])
    return [(*row[:3], *_summed(row[3:9]), row[9]) for row in cursor]


# Figures are 64-bit, their sums need not be: SQLite's sum() fails past 2**63 and a 64-bit cast
# on PostgreSQL too. Each figure is summed as two 32-bit halves, which cannot overflow below 2**31
# rows, and the halves are joined in Python (exact, unbounded integers).
_HALF = 2**32


def _exact_sums(figures: Iterable[str]) -> str:
    return ", ".join(f"coalesce(sum({figure} / {_HALF}), 0), coalesce(sum({figure} % {_HALF}), 0)"
                     for figure in figures)


def _summed(halves: tuple) -> list[int]:
    return [int(halves[i]) * _HALF + int(halves[i + 1]) for i in range(0, len(halves), 2)]


def tally(cursor: Any, *, measure: str = "killed", group: str = "all", by: str = "incident",
          incident: str | None = None, as_of: int | None = None, known_at: int | None = None,
          policy: str = "conservative") -> dict[str, Any]:
    point_r, point_v = as_of if as_of is not None else FOREVER, known_at if known_at is not None else FOREVER
    canonical, pooled = pooled_at(cursor, incident, point_r)
    if pooled is None and policy in _BEST_IN_SQL:
        if by == "source":
            rows = _by_source(_pooled_figures(cursor, measure, group, point_r, point_v, canonical), policy,
                              source_sums(cursor, measure, group, point_r, point_v, policy))
            counted = counted_rows(cursor, None, measure, group, point_r, point_v, canonical, policy)  # the total
        else:
            rows = counted = counted_rows(  # every incident in exactly one row
                cursor, by, measure, group, point_r, point_v, canonical, policy)
    else:
        figures = source_figures(cursor, measure, group, point_r, point_v, pooled, canonical)
        per_incident = incident_rows(figures, policy)
        counted = list(per_incident.values())
        if by == "incident":
            rows = counted
        elif by == "source":
            rows = _by_source(figures, policy)
        else:
            rows = _by_field(cursor, per_incident, by, point_r)
    rows = _sorted_sources(rows)
    rows.sort(key=_sort_key)
    return {
        "measure": measure, "group": group, "by": by, "policy": policy,
        "as_of": format_recorded(as_of), "known_at": format_instant(known_at),
        "rows": rows,
        "total": {name: sum(r[name] for r in counted) for name in ("low", "high", "best", "incidents")},
    }


def _by_source(figures: list[SourceFigure], policy: str, summed: Iterable[tuple] = ()) -> list[dict[str, Any]]:
    """Per source (by its key): the sums of its counting figures and on how many incidents,
    named as in its earliest-recorded claim. ``summed``: such sums made already (source_sums)."""
    found = {key: list(sums) for key, *sums in summed}  # key -> [first, name, low, high, best, incidents]
    best = POLICIES[policy][1]
    for figure in figures:
        sums = found.get(figure.source_key)
        if sums is None:
            sums = found[figure.source_key] = [figure.first, figure.source, 0, 0, 0, 0]
        elif figure.first < sums[0]:
            sums[0], sums[1] = figure.first, figure.source
        sums[2] += figure.figure.low
        sums[3] += figure.figure.high
        sums[4] += best([figure.figure])
        sums[5] += 1
    return [_row(name, low, high, total, incidents, {name}) for _, name, low, high, total, incidents in found.values()]


def _by_field(cursor: Any, per_incident: dict[str, dict[str, Any]], by: str, as_of: int) -> list[dict[str, Any]]:
    # Up to some thousands of incidents (merged pools) an indexed lookup each beats reading every one.
    fields = incident_field(cursor, _FIELD_OF[by], as_of, list(per_incident) if len(per_incident) <= _MAX_IDS else None)
    cut = _CUT.get(by)
    groups: dict[Any, dict[str, Any]] = {}
    for incident_id, row in per_incident.items():
        value = fields.get(incident_id)
        _add(groups, value[:cut] if value is not None and cut else value, row)
    return list(groups.values())


def _add(groups: dict[Any, dict[str, Any]], key: Any, row: dict[str, Any]) -> None:
    """Adds a tally row (an incident's, or a group's) into the group ``key``."""
    group = groups.get(key)
    if group is None:
        group = groups[key] = _row(key, 0, 0, 0, 0, set())
    group["low"] += row["low"]
    group["high"] += row["high"]
    group["best"] += row["best"]
    group["incidents"] += row["incidents"]
    group["sources"] |= row["sources"]


# -- history ------------------------------------------------------------------------------

_ENTRY = ("position", "claim_position", "incident_id", "source", "kind", "version", "low", "high", "best", "qualifier",
          "published_at", "recorded_at")
_ENTRY_SQL = ", ".join(ENTRY_KIND if column == "kind" else column for column in _ENTRY)
# What an entry says besides its figures: read from its event in the log (schema.CLAIMS).
_SAID = ("report_id", "reason", "recorded_by", "quote", "note")


def _entry_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": row["kind"], "version": row["version"], "low": row["low"], "high": row["high"],
        "best": row["best"], "published_at": format_instant(row["published_at"]),
        "recorded_at": format_recorded(row["recorded_at"]), "report_id": row["report_id"],
        "reason": row["reason"], "recorded_by": row["recorded_by"], "qualifier": row["qualifier"],
        "quote": row["quote"], "note": row["note"],
    }


def _claims(cursor: Any, as_of: int, incident_ids: list[str] | None, source: str | None, measure: str | None,
            group: str | None) -> list[tuple]:
    sql = "SELECT position, incident_id, source, measure, grp FROM tb_claims WHERE recorded_at <= ?"
    params: list[Any] = [as_of]
    for column, value in (("source_key", source_key(source) if source else None), ("measure", measure),
                          ("grp", group)):
        if value is not None:
            sql += f" AND {column} = ?"
            params.append(value)
    if incident_ids is not None:
        sql += " AND " + _in("incident_id", incident_ids)
        params += incident_ids
    cursor.execute(sql + " ORDER BY position", params)
    return cursor.fetchall()


# Claims are named by their position (where their first event stands in the log): the index
# the projector finds a claim's rows by serves the queries too.
def _entries(cursor: Any, log: EventStore, claims: list[int] | None, after: int, upto: int,
             measure: str | None = None, group: str | None = None) -> dict[int, list[dict]]:
    """The entries of these claims (None: every claim) recorded in ``(after, upto]``, by claim,
    each with its claim's id and what its event says (read from the log)."""
    named = _small(claims) if claims is not None else None
    sql = f"SELECT {_ENTRY_SQL} FROM tb_entries WHERE recorded_at > ? AND recorded_at <= ?"
    params: list[Any] = [after, upto]
    if measure is not None and group is not None:
        sql += " AND measure = ? AND grp = ?"
        params += [measure, group]
    if named is not None:
        sql += " AND " + _in("claim_position", named)
        params += named
    cursor.execute(sql + " ORDER BY position", params)
    rows = cursor.fetchall()
    if claims is not None and named is None:  # too many to name: the others' events are not read
        wanted = set(claims)
        rows = [row for row in rows if row[1] in wanted]
    events = log.decoded_at(cursor, [row[0] for row in rows])
    entries: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        entry = dict(zip(_ENTRY, row, strict=True))
        event = events.get(entry["position"])
        if event is None:
            raise StoreUnusable(f"the read models hold an entry at position {entry['position']}, which the log"
                                " does not: the store was changed beside tollbook (tollbook verify)")
        entry["claim_id"] = event["originator_id"]
        entry.update((name, event.get(name)) for name in _SAID)
        entries[entry["claim_position"]].append(entry)
    return entries


def _current(cursor: Any, claims: list[int] | None, as_of: int, known_at: int) -> dict[int, dict[str, Any]]:
    sql = (f"SELECT claim_position, version, kind, low, high, best, published_at, version_position FROM tb_figures"
           f" WHERE {_VALID} AND published_at <= ?")
    params: list[Any] = [as_of, as_of, known_at]
    if claims is not None:
        sql += " AND " + _in("claim_position", claims)
        params += claims
    cursor.execute(sql, params)
    versions: dict[int, list[tuple[Candidate, int]]] = defaultdict(list)
    for claim_position, version, kind, low, high, best, published_at, recorded in cursor.fetchall():
        versions[claim_position].append((Candidate(kind, low, high, best, published_at, recorded), version))
    result = {}
    for claim_position, found in versions.items():
        figure, version = max(found, key=lambda pair: pair[0].order)
        counting = counts(figure)
        result[claim_position] = {"counting": counting, "version": version,
                                  "low": figure.low if counting else None, "high": figure.high if counting else None,
                                  "best": figure.best if counting else None}
    return result


def _small(ids: list[Any]) -> list[Any] | None:
    # Long IN lists cost more than a scan of the point's rows; SQLite also caps parameters.
    return ids if len(ids) <= 500 else None


def history(cursor: Any, log: EventStore, *, incident: str | None = None, source: str | None = None,
            measure: str | None = None, group: str | None = None, as_of: int | None = None,
            known_at: int | None = None) -> dict[str, Any]:
    point_r, point_v = as_of if as_of is not None else FOREVER, known_at if known_at is not None else FOREVER
    canonical, pooled = pooled_at(cursor, incident, point_r)
    claims = _claims(cursor, point_r, pooled, source, measure, group)
    positions = [c[0] for c in claims]
    entries = _entries(cursor, log, positions, -1, point_r)
    currents = _current(cursor, _small(positions), point_r, point_v)
    nothing = {"counting": False, "version": None, "low": None, "high": None, "best": None}
    result = []
    for position, incident_id, source_name, claim_measure, claim_group in claims:
        # A claim's first entry is its first event: recorded by the point, as the claim was.
        item: dict[str, Any] = {"claim_id": entries[position][0]["claim_id"], "incident_id": incident_id}
        if canonical.get(incident_id, incident_id) != incident_id:
            item["canonical_id"] = canonical[incident_id]
        item |= {"source": source_name, "measure": claim_measure, "group": claim_group,
                 "entries": [_entry_json(e) for e in entries[position]],
                 "current": currents.get(position, nothing)}
        result.append(item)
    return {"as_of": format_recorded(as_of), "known_at": format_instant(known_at), "claims": result}


# -- diff ---------------------------------------------------------------------------------

def diff(cursor: Any, log: EventStore, *, start: int, end: int, known_at: int | None = None,
         measure: str = "killed", group: str = "all", policy: str = "conservative") -> dict[str, Any]:
    point_v = known_at if known_at is not None else FOREVER
    canonical_before, canonical_after = canonical_ids(cursor, start), canonical_ids(cursor, end)
    entries = _entries(cursor, log, None, start, end, measure, group)
    # A tally row can only move where a claim event was recorded in between, or where a merge
    # changed which claims pool together: only those incidents are tallied, on both sides.
    touching: dict[str, list[dict]] = defaultdict(list)
    for claim_entries in entries.values():
        for entry in claim_entries:
            incident_id = entry["incident_id"]
            for incident in {canonical_before.get(incident_id, incident_id),
                             canonical_after.get(incident_id, incident_id)}:
                touching[incident].append(_entry_json(entry) | {
                    "claim_id": entry["claim_id"], "incident_id": incident_id, "source": entry["source"]})
    moved = set(touching)
    for incident_id in canonical_before.keys() | canonical_after.keys():
        before_id, after_id = canonical_before.get(incident_id, incident_id), canonical_after.get(incident_id, incident_id)
        if before_id != after_id:
            moved |= {before_id, after_id}
    sides = []
    for point, canonical in ((start, canonical_before), (end, canonical_after)):
        pooled = _small(sorted(moved | {k for k, v in canonical.items() if v in moved}))
        sides.append(incident_rows(source_figures(cursor, measure, group, point, point_v, pooled, canonical), policy))
    before, after = sides
    figures = ("low", "high", "best")
    changed = sorted(
        i for i in (before.keys() | after.keys()) & moved
        if [before.get(i, {}).get(f) for f in figures] != [after.get(i, {}).get(f) for f in figures]
    )
    changes = []
    for incident_id in changed:
        changes.append({
            "incident_id": incident_id,
            "before": {f: before[incident_id][f] for f in figures} if incident_id in before else None,
            "after": {f: after[incident_id][f] for f in figures} if incident_id in after else None,
            "entries": sorted(touching.get(incident_id, []), key=lambda e: (e["recorded_at"], e["version"])),
        })
    return {"from": format_recorded(start), "to": format_recorded(end), "known_at": format_instant(known_at),
            "measure": measure, "group": group, "changes": changes}


# -- one incident (the web page's head) -----------------------------------------------------

def incident(cursor: Any, log: EventStore, incident_id: str, *, as_of: int | None = None) -> dict[str, Any] | None:
    """The incident ``incident_id`` counts under at ``as_of``, its fields then, the ids pooled
    into it and every merge that pooled them (with its reason); None if it was not recorded."""
    point_r = as_of if as_of is not None else FOREVER
    canonical, pooled = pooled_at(cursor, incident_id, point_r)
    target = pooled[0]
    cursor.execute(f"SELECT incident_id FROM tb_incidents WHERE {_VALID} AND " + _in("incident_id", pooled),
                   [point_r, point_r, *pooled])
    recorded = {found for (found,) in cursor.fetchall()}
    if incident_id not in recorded:
        return None
    # Its fields are the log's: its rows' events (a definition, then amendments) folded in order.
    cursor.execute("SELECT position FROM tb_incidents WHERE incident_id = ? AND recorded_at <= ? ORDER BY position",
                   (target, point_r))
    fields: dict[str, Any] = {}
    for event in log.decoded_at(cursor, [position for (position,) in cursor.fetchall()]).values():
        fields |= event["fields"]
    cursor.execute("SELECT incident_id, into_id, recorded_at, reason, recorded_by FROM tb_merges WHERE recorded_at <= ?"
                   " AND " + _in("incident_id", pooled[1:]) + " ORDER BY position", [point_r, *pooled[1:]])
    merges = [{"incident_id": merged, "into": into, "recorded_at": format_instant(at), "reason": reason,
               "recorded_by": by} for merged, into, at, reason, by in cursor.fetchall()]
    return {"incident_id": target, "requested_id": incident_id, "fields": fields,
            "merged_in": sorted(canonical), "merges": merges, "as_of": format_instant(as_of)}
