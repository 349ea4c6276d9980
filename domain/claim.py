"""A claim: what one source says about one figure of one incident, version by version.

The claim is an aggregate whose events are its versions (reported or retracted) and our
corrections of how a version was recorded. The state below is only what deciding needs; the
read side rebuilds everything else from the events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, NamedTuple
from uuid import UUID

from pydantic import Field, model_validator

from tollbook.domain.errors import Rejected
from tollbook.domain.events import Count, DomainEvent, Figures, Qualifier, Text, check_range
from tollbook.domain.ids import claim_uuid


class ClaimReported(DomainEvent, Figures):
    """A source published a figure: a new version of the claim (the first one opens it)."""

    version: int = Field(ge=1)
    incident_id: Text
    source: Text
    measure: Text
    group: Text
    published_at: datetime
    report_id: Text
    quote: str | None = None
    note: str | None = None


class ClaimRetracted(DomainEvent):
    """The source withdrew the claim: a version without a figure."""

    version: int = Field(ge=1)
    published_at: datetime
    reason: Text


class ClaimCorrected(DomainEvent):
    """Our fix of how a version was recorded; fields left out stay as they were."""

    version: int
    low: Count | None = None
    high: Count | None = None
    best: Count | None = None
    qualifier: Qualifier | None = None
    published_at: datetime | None = None
    reason: Text

    @model_validator(mode="after")
    def _fixes_something(self) -> ClaimCorrected:
        if not self.fixes:
            raise ValueError("a correction must fix low, high, best, qualifier or published_at")
        for name in ("low", "high", "published_at"):
            if name in self.fixes and self.fixes[name] is None:
                raise ValueError(f"{name}: cannot be corrected to nothing")
        return self

    @property
    def fixes(self) -> dict[str, object]:
        return {
            name: getattr(self, name)
            for name in ("low", "high", "best", "qualifier", "published_at")
            if name in self.model_fields_set
        }


# The state is made of named tuples: immutable, and the cheapest values to make (evolving
# makes new ones for every event a bulk ingest decides).
class Version(NamedTuple):
    number: int
    kind: Literal["reported", "retracted"]
    low: int | None
    high: int | None
    best: int | None
    qualifier: str | None
    published_at: datetime

    @property
    def order(self) -> tuple[datetime, int]:
        # A claim's versions are recorded in their numbers' order (domain.tally.current's tie-break).
        return (self.published_at, self.number)


class Claim(NamedTuple):
    id: UUID
    aggregate_version: int
    incident_id: str
    source: str
    measure: str
    group: str
    versions: tuple[Version, ...]

    def version(self, number: int) -> Version:
        if not 1 <= number <= len(self.versions):
            raise Rejected("version", f"the claim has no version {number} (it has {len(self.versions)})")
        return self.versions[number - 1]


def describe(incident_id: str, source: str, measure: str, group: str) -> str:
    return f"({incident_id}, {source.strip()}, {measure}, {group})"


def report(
    claim: Claim | None,
    *,
    incident_id: str,
    source: str,
    measure: str,
    group: str,
    low: int,
    high: int,
    best: int | None,
    qualifier: str | None,
    published_at: datetime,
    report_id: str,
    quote: str | None,
    note: str | None,
    recorded_by: str,
) -> ClaimReported:
    return ClaimReported(
        originator_id=claim.id if claim else claim_uuid(incident_id, source, measure, group),
        originator_version=claim.aggregate_version + 1 if claim else 1,
        recorded_by=recorded_by,
        version=len(claim.versions) + 1 if claim else 1,
        incident_id=incident_id,
        source=source.strip(),
        measure=measure,
        group=group,
        low=low,
        high=high,
        best=best,
        qualifier=qualifier,
        published_at=published_at,
        report_id=report_id,
        quote=quote,
        note=note,
    )


def retract(claim: Claim, *, published_at: datetime, reason: str, recorded_by: str) -> ClaimRetracted:
    return ClaimRetracted(
        originator_id=claim.id,
        originator_version=claim.aggregate_version + 1,
        recorded_by=recorded_by,
        version=len(claim.versions) + 1,
        published_at=published_at,
        reason=reason,
    )


def correct(claim: Claim, *, version: int | None, fixes: dict, reason: str, recorded_by: str) -> ClaimCorrected:
    """Fix a recorded version; the fixed version must still satisfy low <= best <= high."""
    target = claim.version(version if version is not None else len(claim.versions))
    if target.kind == "retracted":
        figures = sorted(set(fixes) - {"published_at"})
        if figures:
            raise Rejected(figures[0], f"version {target.number} is a retraction; only published_at can be corrected")
    else:
        merged = {"low": target.low, "high": target.high, "best": target.best} | {
            k: v for k, v in fixes.items() if k in ("low", "high", "best")
        }
        try:
            check_range(merged["low"], merged["best"], merged["high"])
        except ValueError as error:
            field, _, message = str(error).partition(": ")
            raise Rejected(field, f"{message} after the correction of version {target.number}") from None
    return ClaimCorrected(
        originator_id=claim.id,
        originator_version=claim.aggregate_version + 1,
        recorded_by=recorded_by,
        version=target.number,
        reason=reason,
        **fixes,
    )


def evolve(claim: Claim | None, event: DomainEvent) -> Claim:
    """The claim after one of its events."""
    if isinstance(event, ClaimReported):
        version = Version(
            number=event.version,
            kind="reported",
            low=event.low,
            high=event.high,
            best=event.best,
            qualifier=event.qualifier,
            published_at=event.published_at,
        )
        if claim is None:
            return Claim(
                id=event.originator_id,
                aggregate_version=event.originator_version,
                incident_id=event.incident_id,
                source=event.source,
                measure=event.measure,
                group=event.group,
                versions=(version,),
            )
        return claim._replace(aggregate_version=event.originator_version, versions=claim.versions + (version,))
    assert claim is not None
    if isinstance(event, ClaimRetracted):
        version = Version(event.version, "retracted", None, None, None, None, event.published_at)
        return claim._replace(aggregate_version=event.originator_version, versions=claim.versions + (version,))
    if isinstance(event, ClaimCorrected):
        fixed = claim.versions[event.version - 1]._replace(**event.fixes)
        versions = claim.versions[: event.version - 1] + (fixed,) + claim.versions[event.version :]
        return claim._replace(aggregate_version=event.originator_version, versions=versions)
    raise TypeError(f"not a claim event: {type(event).__name__}")
