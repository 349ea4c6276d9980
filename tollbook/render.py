"""Output for people (aligned tables with the point in time in a header line) and for scripts
(JSON, CSV). Takes the API's JSON-shaped answers; knows nothing of the store."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import orjson

from tollbook.domain.time import format_instant


def json_output(answer: dict[str, Any]) -> bytes:
    """What ``--format json`` prints, byte for byte: the HTTP API answers these same bytes."""
    try:
        return orjson.dumps(answer, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:  # a sum beyond 64 bits: JSON numbers have no bound, orjson's do
        return (json.dumps(answer, indent=2, ensure_ascii=False) + "\n").encode()


def jsonl_line(item: dict[str, Any]) -> bytes:
    """One line of a ``--format jsonl`` listing (``tollbook log``), as ``/api/log`` streams it."""
    return orjson.dumps(item, option=orjson.OPT_APPEND_NEWLINE)


def point(answer: dict[str, Any], now: str) -> str:
    as_of = f"as of {answer['as_of']}" if answer.get("as_of") else f"as of now ({now})"
    known = f"known at {answer['known_at']}" if answer.get("known_at") else "known at any time"
    return f"{as_of} (recorded) · {known} (published)"


def table(headers: list[str], rows: list[list[Any]], numeric: set[str] = frozenset()) -> list[str]:
    cells = [headers, *[["" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [cell.rjust(w) if headers[i] in numeric else cell.ljust(w)
                 for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(parts).rstrip())
    return lines


_TALLY = ["key", "low", "high", "best", "incidents", "sources"]


def tally_table(answer: dict[str, Any], now: str) -> str:
    head = (f"{answer['measure']} / {answer['group']} by {answer['by']} · policy {answer['policy']} · "
            f"{point(answer, now)}")
    rows = [[r["key"] if r["key"] is not None else "(unset)", r["low"], r["high"], r["best"], r["incidents"],
             "; ".join(r["sources"])] for r in answer["rows"]]
    total = answer["total"]
    rows.append(["total", total["low"], total["high"], total["best"], total["incidents"], ""])
    if not answer["rows"]:
        return head + "\n(no incident has a counting claim at this point)"
    return "\n".join([head, *table(_TALLY, rows, {"low", "high", "best", "incidents"})])


def tally_csv(answer: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_TALLY)
    for r in answer["rows"]:
        writer.writerow([r["key"] if r["key"] is not None else "", r["low"], r["high"], r["best"], r["incidents"],
                         "; ".join(r["sources"])])
    return out.getvalue().rstrip("\n")


def _figures(item: dict[str, Any] | None) -> str:
    if item is None or item.get("low") is None:
        return "—"
    text = str(item["low"]) if item["low"] == item["high"] else f"{item['low']}–{item['high']}"
    return text + (f" (best {item['best']})" if item.get("best") is not None else "")


def _entry_rows(entries: list[dict[str, Any]]) -> list[list[Any]]:
    return [[e["recorded_at"], e["kind"], e["version"], _figures(e), e["published_at"],
             e["report_id"] or e["reason"] or "", e["recorded_by"]] for e in entries]


_ENTRY_HEADERS = ["recorded_at", "kind", "version", "figure", "published_at", "report / reason", "by"]


def history_table(answer: dict[str, Any], now: str) -> str:
    lines = [f"history · {point(answer, now)}"]
    if not answer["claims"]:
        lines.append("(no claims)")
    for claim in answer["claims"]:
        where = claim["incident_id"] + (f" (counts under {claim['canonical_id']})" if "canonical_id" in claim else "")
        current = claim["current"]
        now_text = (f"{_figures(current)} (version {current['version']})" if current["counting"]
                    else "not counting" + (f" (version {current['version']} is a retraction)"
                                           if current["version"] else ""))
        lines += ["", f"{where} · {claim['source']} · {claim['measure']} / {claim['group']} · current: {now_text}"]
        lines += ["  " + line for line in table(_ENTRY_HEADERS, _entry_rows(claim["entries"]), {"version"})]
    return "\n".join(lines)


def diff_table(answer: dict[str, Any]) -> str:
    known = f"known at {answer['known_at']}" if answer["known_at"] else "known at any time"
    lines = [f"{answer['measure']} / {answer['group']} changes recorded after {answer['from']} up to "
             f"{answer['to']} · {known} (published)"]
    if not answer["changes"]:
        lines.append("(no tally changed)")
    for change in answer["changes"]:
        lines += ["", f"{change['incident_id']}: {_figures(change['before'])} → {_figures(change['after'])}"]
        rows = [[e["source"], *row] for e, row in zip(change["entries"], _entry_rows(change["entries"]), strict=True)]
        if rows:
            lines += ["  " + line for line in table(["source", *_ENTRY_HEADERS], rows, {"version"})]
    return "\n".join(lines)


def status_table(answer: dict[str, Any]) -> str:
    head = answer["head"]
    recorded = f", recorded at {head['recorded_at']}" if head["recorded_at"] else " (the log is empty)"
    lines = [f"event log head: position {head['position']}{recorded}"]
    rows = [[p["name"], p["position"], p["lag"]] for p in answer["projections"]]
    lines += table(["projection", "position", "lag"], rows, {"position", "lag"})
    return "\n".join(lines)


_RELEASES = ["name", "importer", "rows", "imported", "unchanged", "widened", "rejected", "retracted", "published_at",
             "recorded_at", "recorded_by", "sha256"]


def releases_table(answer: dict[str, Any]) -> str:
    """The release receipts; the hash shortened to its first 12 digits (--format json has it whole)."""
    if not answer["releases"]:
        return "no release has been imported"
    rows = [[r[name] for name in _RELEASES[:-1]] + [r["sha256"][:12]] for r in answer["releases"]]
    return "\n".join(table(_RELEASES, rows, {"rows", "imported", "unchanged", "widened", "rejected", "retracted"}))


def tokens_json(tokens: list[dict[str, Any]]) -> dict[str, Any]:
    return {"tokens": [{"name": t["name"], "role": t["role"], "created_at": format_instant(t["created_at"]),
                        "last_used_at": format_instant(t["last_used_at"]), "revoked": t["revoked_at"] is not None,
                        "revoked_at": format_instant(t["revoked_at"])} for t in tokens]}


def tokens_table(answer: dict[str, Any]) -> str:
    if not answer["tokens"]:
        return "(no tokens: tollbook token create NAME --role reader|editor)"
    rows = [[t["name"], t["role"], t["created_at"], t["last_used_at"] or "never",
             f"revoked {t['revoked_at']}" if t["revoked"] else ""] for t in answer["tokens"]]
    return "\n".join(table(["name", "role", "created", "last used", "revoked"], rows))
