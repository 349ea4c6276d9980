"""Turns each command into the events it causes, checked against the ledger's current state.

A :class:`Unit` is one document's view of the ledger: it reads aggregates through the batch it
belongs to and keeps what the document changes to itself, so a rejected document leaves no
trace and the next document sees every change the accepted ones made.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from tollbook.commands.documents import Command, Correction, Incident, IncidentFields, Merge, Report, Retraction
from tollbook.domain import claim as claims
from tollbook.domain import document as documents
from tollbook.domain import incident as incidents
from tollbook.domain.errors import Rejected
from tollbook.domain.events import DomainEvent
from tollbook.domain.ids import claim_uuids, document_uuid, incident_uuid
from tollbook.domain.time import CLOCK_SKEW, format_instant
from tollbook.domain.tally import current

Evolve = Callable[[Any, DomainEvent], Any]
Loader = Callable[[UUID, Evolve], Any]
_UNCHANGED = object()


class Unit:
    def __init__(self, load: Loader, recorded_by: str):
        self._load = load
        self.recorded_by = recorded_by
        self.changed: dict[UUID, Any] = {}
        self.events: list[DomainEvent] = []
        # The store stamps recorded_at when it saves, never earlier than this: so a figure
        # published no later than this (and the clock skew allowed) is published before it is recorded.
        self.latest_published = datetime.now(UTC) + CLOCK_SKEW

    def get(self, aggregate_id: UUID, evolve: Evolve) -> Any:
        state = self.changed.get(aggregate_id, _UNCHANGED)
        return self._load(aggregate_id, evolve) if state is _UNCHANGED else state

    def record(self, event: DomainEvent | None, evolve: Evolve) -> None:
        if event is None:
            return
        self.events.append(event)
        self.changed[event.originator_id] = evolve(self.get(event.originator_id, evolve), event)


def receipt_key(command: Command, content_hash: str) -> str:
    """What a document is received under: a report by its id (and part), others by content."""
    if isinstance(command, Report):
        return command.report_id if command.part is None else f"{command.report_id}#{command.part}"
    return f"{command.kind}:{content_hash}"


def reads(command: Command, content_hash: str) -> list[tuple[UUID, Evolve]]:
    """The aggregates deciding ``command`` reads, so a batch can load them all in one go."""
    found: list[tuple[UUID, Evolve]] = [(document_uuid(receipt_key(command, content_hash)), documents.evolve)]
    if isinstance(command, Report):
        found += [(incident_uuid(i.incident_id), incidents.evolve) for i in command.incidents]
        for c in command.claims:
            found.append((incident_uuid(c.incident_id), incidents.evolve))
            found += [(claim_id, claims.evolve) for claim_id in claim_uuids(c.incident_id, c.source, c.measure, c.group)]
    elif isinstance(command, Incident):
        found.append((incident_uuid(command.incident_id), incidents.evolve))
    elif isinstance(command, (Correction, Retraction)):
        found += [(claim_id, claims.evolve)
                  for claim_id in claim_uuids(command.incident_id, command.source, command.measure, command.group)]
    elif isinstance(command, Merge):
        found += [(incident_uuid(command.incident_id), incidents.evolve), (incident_uuid(command.into), incidents.evolve)]
    return found


def handle(command: Command, content_hash: str, unit: Unit, earlier: Collection[str] = ()) -> None:
    """Records in ``unit`` every event the command causes; raises :class:`Rejected` if it can't.
    ``earlier``: the hashes the same document had before (see :func:`documents.receive`)."""
    key = receipt_key(command, content_hash)
    receipt = documents.receive(
        unit.get(document_uuid(key), documents.evolve),
        kind=command.kind,
        key=key,
        content_hash=content_hash,
        published_at=command.published_at if isinstance(command, Report) else None,
        attributes=_report_attributes(command) if isinstance(command, Report) else {},
        recorded_by=unit.recorded_by,
        earlier=earlier,
    )
    if receipt is None:
        return
    HANDLERS[type(command)](command, unit)
    # A report claims its report_id even when it changes nothing; another document that
    # changes nothing is not worth a receipt, nor is one part of a report (an importer's row:
    # a later release's unchanged rows store nothing).
    if unit.events or (isinstance(command, Report) and command.part is None):
        unit.record(receipt, documents.evolve)


def _report_attributes(report: Report) -> dict[str, Any]:
    return report.model_dump(mode="json", exclude={"kind", "report_id", "published_at", "incidents", "claims"},
                             exclude_none=True)


def _define(unit: Unit, fields: IncidentFields) -> None:
    unit.record(
        incidents.define_or_amend(
            unit.get(incident_uuid(fields.incident_id), incidents.evolve),
            incident_id=fields.incident_id,
            fields=fields.fields,
            recorded_by=unit.recorded_by,
        ),
        incidents.evolve,
    )


def _claim(unit: Unit, incident_id: str, source: str, measure: str, group: str) -> claims.Claim | None:
    """The claim under this key as the store holds it (see :func:`claim_uuids`), or None."""
    *legacy, current = claim_uuids(incident_id, source, measure, group)
    for claim_id in legacy:
        found = unit.get(claim_id, claims.evolve)
        if found is not None:
            return found
    return unit.get(current, claims.evolve)


def _published(unit: Unit, field: str, published_at: datetime | None) -> None:
    if published_at is not None and published_at > unit.latest_published:
        raise Rejected(field, f"{format_instant(published_at)} is later than the instant it is recorded "
                              f"(at most {CLOCK_SKEW.seconds // 60} minutes of clock skew are allowed)")


def _report(report: Report, unit: Unit) -> None:
    _published(unit, "published_at", report.published_at)
    for number, fields in enumerate(report.incidents, 1):
        try:
            _define(unit, fields)
        except Rejected as rejected:
            raise rejected.within(f"incident {number}") from None
    for number, figure in enumerate(report.claims, 1):
        if unit.get(incident_uuid(figure.incident_id), incidents.evolve) is None:
            raise Rejected(f"claim {number}: incident_id", f"unknown incident {figure.incident_id!r}")
        existing = _claim(unit, figure.incident_id, figure.source, figure.measure, figure.group)
        high = figure.high if figure.high is not None else figure.low
        published_at = figure.published_at or report.published_at
        _published(unit, f"claim {number}: published_at", published_at)
        if report.revise == "changed" and _says_already(
                existing, (figure.low, high, figure.best, figure.qualifier), published_at):
            continue
        unit.record(
            claims.report(
                existing,
                incident_id=figure.incident_id,
                source=figure.source,
                measure=figure.measure,
                group=figure.group,
                low=figure.low,
                high=high,
                best=figure.best,
                qualifier=figure.qualifier,
                published_at=published_at,
                report_id=report.report_id,
                quote=figure.quote,
                note=figure.note,
                recorded_by=unit.recorded_by,
            ),
            claims.evolve,
        )


def _says_already(claim: claims.Claim | None, figures: tuple[int, int, int | None, str | None],
                  published_at: datetime) -> bool:
    """Whether the claim's version current at ``published_at`` has exactly these figures
    (low, high, best, qualifier)."""
    if claim is None:
        return False
    version = current(claim.versions, published_at)
    return (version is not None and version.kind == "reported"
            and (version.low, version.high, version.best, version.qualifier) == figures)


def _incident(command: Incident, unit: Unit) -> None:
    _define(unit, command)


def _existing_claim(command: Correction | Retraction, unit: Unit) -> claims.Claim:
    found = _claim(unit, command.incident_id, command.source, command.measure, command.group)
    if found is None:
        key = claims.describe(command.incident_id, command.source, command.measure, command.group)
        raise Rejected("claim", f"no claim {key} is recorded")
    return found


def _correction(command: Correction, unit: Unit) -> None:
    _published(unit, "published_at", command.published_at)
    claim = _existing_claim(command, unit)
    unit.record(
        claims.correct(claim, version=command.version, fixes=command.fixes, reason=command.reason,
                       recorded_by=unit.recorded_by),
        claims.evolve,
    )


def _retraction(command: Retraction, unit: Unit) -> None:
    _published(unit, "published_at", command.published_at)
    claim = _existing_claim(command, unit)
    unit.record(
        claims.retract(claim, published_at=command.published_at, reason=command.reason,
                       recorded_by=unit.recorded_by),
        claims.evolve,
    )


def _merge(command: Merge, unit: Unit) -> None:
    into = unit.get(incident_uuid(command.into), incidents.evolve)
    unit.record(
        incidents.merge(
            unit.get(incident_uuid(command.incident_id), incidents.evolve),
            into,
            incident_id=command.incident_id,
            into_id=command.into,
            reason=command.reason,
            recorded_by=unit.recorded_by,
        ),
        incidents.evolve,
    )
    # A merge writes both incidents: one merged into ``into`` while another writer merges
    # ``into`` away is refused by the store (both took its next version), never a chain.
    unit.record(incidents.absorb(into, merged_id=command.incident_id, recorded_by=unit.recorded_by), incidents.evolve)


HANDLERS: dict[type, Callable[[Any, Unit], None]] = {
    Report: _report,
    Incident: _incident,
    Correction: _correction,
    Retraction: _retraction,
    Merge: _merge,
}
