"""Each ingested document is received once: a repeat is a no-op, a different one under a
stored report_id is refused. Reports are keyed by ``report_id``; other documents by content."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from tollbook.domain.errors import Rejected
from tollbook.domain.events import DomainEvent, Text
from tollbook.domain.ids import document_uuid


class DocumentReceived(DomainEvent):
    kind: Text
    key: Text
    content_hash: Text
    # What a report says about itself (publisher, title, url, …), kept for the record.
    published_at: datetime | None = None
    attributes: dict[str, Any] = {}


class Document(NamedTuple):  # a named tuple, as a claim's state is
    id: UUID
    key: str
    content_hash: str


def receive(
    document: Document | None, *, kind: str, key: str, content_hash: str, published_at: datetime | None,
    attributes: dict[str, Any], recorded_by: str, earlier: Collection[str] = (),
) -> DocumentReceived | None:
    """``None`` when the identical document is already stored: under ``content_hash``, or under
    one of the ``earlier`` hashes that the same source had when older code built its document
    (an importer's row from before the importer kept more of it)."""
    if document is not None:
        if document.content_hash == content_hash or document.content_hash in earlier:
            return None
        raise Rejected("report_id", f"a different document is already stored under {key!r}")
    return DocumentReceived(
        originator_id=document_uuid(key),
        originator_version=1,
        recorded_by=recorded_by,
        kind=kind,
        key=key,
        content_hash=content_hash,
        published_at=published_at,
        attributes=attributes,
    )


def evolve(document: Document | None, event: DomainEvent) -> Document:
    assert isinstance(event, DocumentReceived) and document is None
    return Document(event.originator_id, event.key, event.content_hash)
