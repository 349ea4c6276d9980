"""The documents users send (CONTRACT section 3), parsed into commands.

Parsing checks everything a document says about itself; what it says about the ledger (does
the incident exist? the version?) is checked by the handlers against current state. Every
failure becomes one line naming the field: ``claim 2: low: must be >= 0``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from functools import cached_property
from typing import Annotated, Any, Literal

import orjson
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError,
                      model_validator)

from tollbook.domain.events import Count, Qualifier, check_range
from tollbook.domain.incident import KNOWN_FIELDS, check_fields
from tollbook.domain.time import parse_instant

# The longest id, source, measure or group. PostgreSQL's btree indexes hold at most 2,704 bytes
# a row (of what does not compress), and the read models index a claim's incident id, source,
# measure and group together: those four may take at most MAX_KEY_BYTES in UTF-8.
MAX_NAME = 1000
MAX_KEY_BYTES = 2400
# The deepest a document may nest objects and lists (the document itself is depth 1): what the
# store's JSON encoder takes is 254, and stored events nest a document's values a level deeper.
MAX_DEPTH = 32

Instant = Annotated[datetime, BeforeValidator(parse_instant)]
Token = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_:.\-]*$", max_length=MAX_NAME)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def _bytes(*names: str) -> int:
    return sum(len(name) for name in names) if all(name.isascii() for name in names) else len("".join(names).encode())


def check_incident_id(incident_id: str, field: str = "incident_id") -> None:
    """An incident id fits in an index row of the read models (see MAX_KEY_BYTES). Called by
    the models' own validators (not a validator more for each field: a document holds many ids)."""
    if len(incident_id) > MAX_KEY_BYTES // 4 and _bytes(incident_id) > MAX_KEY_BYTES:
        raise ValueError(f"{field}: takes {_bytes(incident_id)} bytes in UTF-8, more than the {MAX_KEY_BYTES} "
                         "a store can index")


def check_key(incident_id: str, source: str, measure: str, group: str) -> None:
    """A claim's key fits in one index row of the read models (see MAX_KEY_BYTES)."""
    if len(incident_id) + len(source) + len(measure) + len(group) <= MAX_KEY_BYTES // 4:
        return  # the usual case: even in 4-byte characters it fits
    check_incident_id(incident_id)
    taken = _bytes(incident_id, source, measure, group)
    if taken > MAX_KEY_BYTES:
        longest = max(("incident_id", incident_id), ("source", source), ("measure", measure), ("group", group),
                      key=lambda named: _bytes(named[1]))[0]
        raise ValueError(f"{longest}: the claim's incident_id, source, measure and group take {taken} bytes in "
                         f"UTF-8, more than the {MAX_KEY_BYTES} a store can index together")


class Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IncidentFields(BaseModel):
    """An incident's id and fields; fields beyond the known ones are kept as attributes."""

    model_config = ConfigDict(extra="allow", frozen=True)

    incident_id: Name

    @model_validator(mode="after")
    def _fields(self) -> IncidentFields:
        check_incident_id(self.incident_id)
        check_fields(self.fields)
        return self

    @cached_property  # checked when parsed, then handed to the incident
    def fields(self) -> dict[str, Any]:
        given = self.model_dump(exclude={"incident_id", "kind"}, exclude_unset=True)
        return {name: given[name] for name in (*KNOWN_FIELDS, *sorted(given)) if name in given}


class ClaimFigure(Document):
    incident_id: Name
    source: Name
    measure: Token
    group: Token = "all"
    low: Count
    high: Count | None = None
    best: Count | None = None
    qualifier: Qualifier | None = None
    published_at: Instant | None = None
    quote: str | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _range(self) -> ClaimFigure:
        check_key(self.incident_id, self.source, self.measure, self.group)
        check_range(self.low, self.best, self.high if self.high is not None else self.low)
        return self


class Report(Document):
    """A report (CONTRACT section 3): fields of the user's own go under ``attributes``. Two
    optional extensions are for the importers:

    - ``part``: this document is one part of a larger report (one row of a dataset release).
      Each part is received on its own: the idempotency key is ``report_id#part`` instead of
      ``report_id``, so the same part again is a no-op and a different one under it is rejected.
      A part that changes nothing is not received at all (it stores nothing).
    - ``revise``: ``"always"`` (the default, the contract's rule: a claim whose key exists gets a
      new version) or ``"changed"``: a claim whose key exists gets a new version only if its
      figures (low, high, best, qualifier) differ from those of the version current at the
      claim's ``published_at`` (latest published at or before it, ties to the one recorded last,
      corrections applied; a retraction never equals a figure).
    """

    kind: Literal["report"]
    report_id: Name
    published_at: Instant
    publisher: str | None = None
    url: str | None = None
    title: str | None = None
    part: Name | None = None
    revise: Literal["always", "changed"] = "always"
    # Factories: pydantic deep-copies a mutable default for every document that omits it.
    incidents: list[IncidentFields] = Field(default_factory=list)
    claims: list[ClaimFigure] = Field(default_factory=list)
    attributes: dict[str, Any] | None = None


class Incident(IncidentFields):
    kind: Literal["incident"]


class ClaimKey(Document):
    incident_id: Name
    source: Name
    measure: Token
    group: Token = "all"

    @model_validator(mode="after")
    def _key(self) -> ClaimKey:
        check_key(self.incident_id, self.source, self.measure, self.group)
        return self


class Correction(ClaimKey):
    kind: Literal["correction"]
    version: Annotated[int, Field(ge=1, strict=True)] | None = None
    low: Count | None = None
    high: Count | None = None
    best: Count | None = None
    qualifier: Qualifier | None = None
    published_at: Instant | None = None
    reason: Reason

    @model_validator(mode="after")
    def _fixes_something(self) -> Correction:
        if not self.fixes:
            raise ValueError("a correction must give low, high, best, qualifier or published_at")
        for name in ("low", "high", "published_at"):
            if name in self.fixes and self.fixes[name] is None:
                raise ValueError(f"{name}: cannot be corrected to null")
        return self

    @property
    def fixes(self) -> dict[str, Any]:
        names = ("low", "high", "best", "qualifier", "published_at")
        return {name: getattr(self, name) for name in names if name in self.model_fields_set}


class Retraction(ClaimKey):
    kind: Literal["retraction"]
    published_at: Instant
    reason: Reason


class Merge(Document):
    kind: Literal["merge"]
    incident_id: Name
    into: Name
    reason: str | None = None

    @model_validator(mode="after")
    def _ids(self) -> Merge:
        check_incident_id(self.incident_id)
        check_incident_id(self.into, "into")
        return self


KINDS: dict[str, type[BaseModel]] = {
    "report": Report,
    "incident": Incident,
    "correction": Correction,
    "retraction": Retraction,
    "merge": Merge,
}

Command = Report | Incident | Correction | Retraction | Merge


class BadDocument(ValueError):
    """One line saying where and what."""


def parse(line: str | bytes | dict) -> tuple[Command, str]:
    """The command a document asks for, and the hash of its content (for idempotency)."""
    if isinstance(line, dict):
        raw = line
    else:
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            # Where in the document (its line ends where the data does), not orjson's "line 1 column".
            where = "" if error.msg == "unexpected end of data" else f" (at character {error.pos + 1})"
            raise BadDocument(f"malformed JSON: {error.msg}{where}") from None
    if not isinstance(raw, dict):
        raise BadDocument("a document must be a JSON object")
    canonical = _canonical(raw, line)
    kind = raw.get("kind")
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        expected = ", ".join(KINDS)
        raise BadDocument(f"kind: unknown kind {_shown(kind)} (expected one of {expected})")
    try:
        command = model.model_validate(raw)
    except ValidationError as error:
        message = describe(error)
        if model is Report and message.endswith(": unknown field") and message.count(": ") == 1:
            message += " (a report keeps fields of its own under attributes)"
        raise BadDocument(message) from None
    return command, hashlib.sha256(canonical).hexdigest()


def content_hash(document: dict) -> str:
    """The hash :func:`parse` gives a document made by code (an importer's), not checked."""
    return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()


# -- what a document may hold at all: checked on its canonical JSON, a walk only when needed --

_NUL = b"\\u0000"  # how JSON writes a NUL (orjson always so)


def _canonical(raw: dict, line: str | bytes | dict) -> bytes:
    """The document as sorted compact JSON (what its content hash is of), once it is known to
    hold no key twice, no NUL, nothing nested deeper than MAX_DEPTH and only JSON values."""
    try:
        canonical = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        canonical = None
    # Cheap tests first: a document with few brackets is shallow; one without \u0000 holds no NUL.
    if canonical is None or canonical.count(b"[") + canonical.count(b"{") >= MAX_DEPTH or _NUL in canonical:
        problem = _problem(raw, [], 1)
        if problem is not None:
            raise BadDocument(problem)
        if canonical is None:
            raise BadDocument("not a JSON document")
    if not isinstance(line, dict) and _maybe_twice(line, canonical):
        problem = _given_twice(line)
        if problem is not None:
            raise BadDocument(problem)
    return canonical


def _maybe_twice(line: str | bytes, canonical: bytes) -> bool:
    """Whether a key may be given twice. Each key is followed by a colon; decoding keeps one of
    a repeated key and its value, so the canonical JSON (which writes every colon as one) has
    fewer colons. Only a colon escaped in the text (\\u003a) could make up for that."""
    if isinstance(line, str):
        return line.count(":") != canonical.count(b":") or "\\u003" in line
    return line.count(b":") != canonical.count(b":") or b"\\u003" in line


def _problem(value: Any, path: list, depth: int) -> str | None:
    """The first thing in a decoded document that no document may hold, or None."""
    if isinstance(value, str):
        if "\x00" in value:
            return _at(path, "must not hold a NUL character")
        try:
            value.encode()
        except UnicodeEncodeError:
            return _at(path, "must be valid Unicode text (not a lone surrogate)")
        return None
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return None
    if isinstance(value, int):
        return None if -2**63 <= value < 2**64 else _at(path, "must be an integer within 64 bits")
    if not isinstance(value, (dict, list)):
        return _at(path, f"not a JSON value: {type(value).__name__}")
    if depth > MAX_DEPTH:  # named by where it starts: the claim, incident or field
        return _at(path[:2] if path[0] in _PARTS else path[:1], f"nested deeper than {MAX_DEPTH} levels")
    for key, item in value.items() if isinstance(value, dict) else enumerate(value):
        if isinstance(value, dict):
            if not isinstance(key, str):
                return _at(path, f"keys must be text, not {_shown(key)}")
            problem = _problem(key, [*path, key], depth)
            if problem is not None:
                return problem
        problem = _problem(item, [*path, key], depth + 1)
        if problem is not None:
            return problem
    return None


class _Twice(dict):
    """An object some key of which was given twice (``twice``)."""

    twice: str


def _pairs(pairs: list[tuple[str, Any]]) -> dict:
    found = dict(pairs)
    if len(found) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                found = _Twice(found)
                found.twice = key
                break
            seen.add(key)
    return found


def _given_twice(text: str | bytes) -> str | None:
    """Names the first key given twice, if any (read again with a decoder that sees every pair)."""
    found: list[str] = []

    def look(value: Any, path: list) -> bool:
        if isinstance(value, _Twice):
            found.append(_at([*path, value.twice], "given twice in one object"))
            return True
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        return any(look(item, [*path, key]) for key, item in items)

    look(json.loads(text, object_pairs_hook=_pairs), [])
    return found[0] if found else None


def _at(path: list, message: str) -> str:
    return ": ".join([*_where(path), message])


def _shown(value: Any) -> str:
    """A value as quoted in a message, cut short so that the message stays one short line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_PARTS = {"claims": "claim", "incidents": "incident"}


def describe(error: ValidationError) -> str:
    """The first problem as ``claim 2: low: must be >= 0``."""
    problem = error.errors(include_url=False)[0]
    where = _where([part for part in problem["loc"] if not (isinstance(part, str) and part.startswith("function-"))])
    message = _message(problem)
    field, sep, rest = message.partition(": ")
    if sep and " " not in field:  # a model check that names its own field
        where.append(field)
        message = rest
    return ": ".join([*where, message])


def _where(path: list) -> list[str]:
    """A place in a document as people name it: ``["claims", 1, "low"]`` is ``claim 2``, ``low``."""
    where: list[str] = []
    location = list(path)
    while location:
        part = location.pop(0)
        if part in _PARTS and location and isinstance(location[0], int):
            where.append(f"{_PARTS[part]} {location.pop(0) + 1}")
        elif isinstance(part, int):
            where.append(f"item {part + 1}")
        else:
            where.append(_shown(part)[1:-1] if len(part) > 60 or not part.isprintable() else part)
    return where


def _message(problem: dict[str, Any]) -> str:
    kind, context = problem["type"], problem.get("ctx") or {}
    if kind == "greater_than_equal":
        return f"must be >= {context['ge']}"
    if kind == "less_than_equal":
        return f"must be <= {context['le']}"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("int_type", "int_from_float", "int_parsing"):
        return f"must be an integer, not {_shown(problem['input'])}"
    if kind == "string_type":
        return "must be text"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"must be at most {context['max_length']} characters, not {len(problem['input'])}"
    if kind == "string_pattern_mismatch":
        return f"must be a lowercase token (letters, digits, _ : . -), not {_shown(problem['input'])}"
    if kind == "literal_error":
        return f"must be one of {context.get('expected')}, not {_shown(problem['input'])}"
    if kind == "list_type":
        return "must be a list"
    if kind in ("model_type", "dict_type"):
        return "must be an object"
    message = problem["msg"]
    return message.removeprefix("Value error, ")
