"""The documents users send (CONTRACT section 3), parsed into commands.

Parsing checks everything a document says about itself; what it says about the ledger (does
the incident exist? the version?) is checked by the handlers against current state. Every
failure becomes one line naming the field: ``claim 2: low: must be >= 0``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from functools import cached_property
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from tollbook.domain.events import Count, Qualifier, check_range
from tollbook.domain.incident import KNOWN_FIELDS, check_fields
from tollbook.domain.time import parse_instant

Instant = Annotated[datetime, BeforeValidator(parse_instant)]
Token = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_:.\-]*$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Reason = Name


class Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IncidentFields(BaseModel):
    """An incident's id and fields; fields beyond the known ones are kept as attributes."""

    model_config = ConfigDict(extra="allow", frozen=True)

    incident_id: Name

    @model_validator(mode="after")
    def _fields(self) -> IncidentFields:
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
        check_range(self.low, self.best, self.high if self.high is not None else self.low)
        return self


class Report(Document):
    """A report (CONTRACT section 3), with two optional extensions the importers use:

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

    model_config = ConfigDict(extra="allow", frozen=True)

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


class Incident(IncidentFields):
    kind: Literal["incident"]


class ClaimKey(Document):
    incident_id: Name
    source: Name
    measure: Token
    group: Token = "all"


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
            raise BadDocument(f"malformed JSON: {error}") from None
    if not isinstance(raw, dict):
        raise BadDocument("a document must be a JSON object")
    kind = raw.get("kind")
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        expected = ", ".join(KINDS)
        raise BadDocument(f"kind: unknown kind {kind!r} (expected one of {expected})")
    try:
        command = model.model_validate(raw)
    except ValidationError as error:
        raise BadDocument(describe(error)) from None
    content_hash = hashlib.sha256(orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return command, content_hash


_PARTS = {"claims": "claim", "incidents": "incident"}


def describe(error: ValidationError) -> str:
    """The first problem as ``claim 2: low: must be >= 0``."""
    problem = error.errors(include_url=False)[0]
    where: list[str] = []
    location = list(problem["loc"])
    while location:
        part = location.pop(0)
        if part in _PARTS and location and isinstance(location[0], int):
            where.append(f"{_PARTS[part]} {location.pop(0) + 1}")
        elif isinstance(part, str) and not part.startswith("function-"):
            where.append(part)
    message = _message(problem)
    field, sep, rest = message.partition(": ")
    if sep and " " not in field:  # a model check that names its own field
        where.append(field)
        message = rest
    return ": ".join([*where, message])


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
        return f"must be an integer, not {problem['input']!r}"
    if kind == "string_type":
        return "must be text"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_pattern_mismatch":
        return f"must be a lowercase token (letters, digits, _ : . -), not {problem['input']!r}"
    if kind == "literal_error":
        return f"must be one of {context.get('expected')}, not {problem['input']!r}"
    if kind == "list_type":
        return "must be a list"
    if kind in ("model_type", "dict_type"):
        return "must be an object"
    message = problem["msg"]
    return message.removeprefix("Value error, ")
