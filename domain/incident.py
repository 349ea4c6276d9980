"""An incident: one real-world event, its descriptive fields, and whether it was merged away."""

from __future__ import annotations

from typing import Any, NamedTuple
from uuid import UUID

from pydantic import field_validator

from tollbook.domain.errors import Rejected
from tollbook.domain.events import DomainEvent, Text
from tollbook.domain.ids import incident_uuid
from tollbook.domain.time import normalize_day

# Fields every incident may have; any other field a user gives is kept as an attribute.
KNOWN_FIELDS = (
    "title", "occurred_from", "occurred_to", "country", "admin1", "admin2",
    "place", "lat", "lon", "perpetrator", "event_type",
)
# The fields a tally groups on or shows: text, or null to clear them.
TEXT_FIELDS = ("title", "country", "admin1", "admin2", "place", "perpetrator", "event_type")


def check_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Validates the fields an incident is given; returns them with dates normalized."""
    checked = dict(fields)
    for name in TEXT_FIELDS:
        value = checked.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name}: must be text, not {type(value).__name__}")
    for name in ("occurred_from", "occurred_to"):
        value = checked.get(name)
        if value is not None:
            try:
                checked[name] = normalize_day(value)
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from None
    for name, bound in (("lat", 90), ("lon", 180)):
        value = checked.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name}: must be a number")
            if not -bound <= value <= bound:
                raise ValueError(f"{name}: must be between -{bound} and {bound}")
    return checked


class IncidentFieldsEvent(DomainEvent):
    incident_id: Text
    fields: dict[str, Any]

    @field_validator("fields")
    @classmethod
    def _check(cls, fields: dict[str, Any]) -> dict[str, Any]:
        return check_fields(fields)


class IncidentDefined(IncidentFieldsEvent):
    """The incident's first fields."""


class IncidentAmended(IncidentFieldsEvent):
    """Only the fields that changed; a field set to null is cleared."""


class IncidentMerged(DomainEvent):
    """This incident turned out to be ``into``: its claims count there from now on."""

    incident_id: Text
    into: Text
    reason: str | None = None


class IncidentAbsorbed(DomainEvent):
    """``merged`` was merged into this incident: the merge's other half. It takes this
    incident's next version, so a merge decided while another writer changed ``into`` (merged
    it away, say) is refused by the store and decided again, as any stale write is."""

    incident_id: Text
    merged: Text


class Incident(NamedTuple):  # a named tuple, as a claim's state is
    id: UUID
    aggregate_version: int
    incident_id: str
    fields: dict[str, Any]
    merged_into: str | None = None


def define_or_amend(
    incident: Incident | None, *, incident_id: str, fields: dict[str, Any], recorded_by: str
) -> DomainEvent | None:
    """Creates the incident, or amends the fields given; ``None`` when nothing would change."""
    try:
        fields = check_fields(fields)
    except ValueError as error:
        field, _, message = str(error).partition(": ")
        raise Rejected(field, message) from None
    known = incident.fields if incident else {}
    changed = {k: v for k, v in fields.items() if known.get(k) != v}
    merged = known | changed
    if merged.get("occurred_from") and merged.get("occurred_to") and merged["occurred_to"] < merged["occurred_from"]:
        raise Rejected("occurred_to", "must not be before occurred_from")
    if incident is None:
        return IncidentDefined(
            originator_id=incident_uuid(incident_id),
            originator_version=1,
            recorded_by=recorded_by,
            incident_id=incident_id,
            fields=changed,
        )
    if not changed:
        return None
    return IncidentAmended(
        originator_id=incident.id,
        originator_version=incident.aggregate_version + 1,
        recorded_by=recorded_by,
        incident_id=incident_id,
        fields=changed,
    )


def merge(incident: Incident | None, into: Incident | None, *, incident_id: str, into_id: str,
          reason: str | None, recorded_by: str) -> IncidentMerged:
    """A merge cannot point at itself or at a merged-away incident, nor move one twice."""
    if incident is None:
        raise Rejected("incident_id", f"unknown incident {incident_id!r}")
    if into is None:
        raise Rejected("into", f"unknown incident {into_id!r}")
    if incident_id == into_id:
        raise Rejected("into", "an incident cannot be merged into itself")
    if into.merged_into is not None:
        raise Rejected("into", f"{into_id!r} was merged into {into.merged_into!r}; merge into that instead")
    if incident.merged_into is not None:
        raise Rejected("incident_id", f"{incident_id!r} was already merged into {incident.merged_into!r}")
    return IncidentMerged(
        originator_id=incident.id,
        originator_version=incident.aggregate_version + 1,
        recorded_by=recorded_by,
        incident_id=incident_id,
        into=into_id,
        reason=reason,
    )


def absorb(into: Incident, *, merged_id: str, recorded_by: str) -> IncidentAbsorbed:
    """The other half of merging ``merged_id`` into ``into`` (see :func:`merge`)."""
    return IncidentAbsorbed(originator_id=into.id, originator_version=into.aggregate_version + 1,
                            recorded_by=recorded_by, incident_id=into.incident_id, merged=merged_id)


def evolve(incident: Incident | None, event: DomainEvent) -> Incident:
    if isinstance(event, IncidentDefined):
        return Incident(event.originator_id, event.originator_version, event.incident_id, event.fields)
    assert incident is not None
    if isinstance(event, IncidentAmended):
        return incident._replace(aggregate_version=event.originator_version, fields=incident.fields | event.fields)
    if isinstance(event, IncidentMerged):
        return incident._replace(aggregate_version=event.originator_version, merged_into=event.into)
    if isinstance(event, IncidentAbsorbed):
        return incident._replace(aggregate_version=event.originator_version)
    raise TypeError(f"not an incident event: {type(event).__name__}")
