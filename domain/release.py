"""A release receipt: which exact file an import read, and what it did with it.

Every completed import of a dataset file (a UCDP GED release, an ACLED export, ACLED's
deleted-events list) is recorded as one immutable event, so that every figure can be traced to
the file it came from: the release's name, the file's SHA-256, the row counts, when the release
was published and when and by whom it was recorded (the event's own ``recorded_at`` and
``recorded_by``).

A receipt is an aggregate of one event whose id is derived from what makes the import the same
one again: the importer, the name it was given (UCDP's release, ACLED's file name), the file's
hash, the encoding it was read in and whether it was imported as complete. So "was this exact file imported already?" is
one read of one aggregate, and two writers recording the same receipt at once cannot both
succeed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import Field

from tollbook.domain.events import Count, DomainEvent, Text
from tollbook.domain.ids import release_uuid

# The row counts a receipt carries (not_found: deletions of events the store does not hold).
COUNTS = ("rows", "imported", "unchanged", "widened", "rejected", "retracted", "not_found")
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class ReleaseRecorded(DomainEvent):
    name: Text  # ucdp-ged-<release>, or for ACLED <file name>@<latest row timestamp>
    importer: Text  # ucdp, acled or acled-deletions
    file: Text  # the file's name as given, without its folder; "-" for standard input
    label: Text  # what identifies the import besides the bytes: UCDP's release name, else the file name
    sha256: Sha256
    encoding: Text  # how its text was read (utf-8, latin-1, …)
    complete: bool = False
    rows: Count
    imported: Count
    unchanged: Count
    widened: Count
    rejected: Count
    retracted: Count
    not_found: Count = 0
    published_at: datetime | None = None


def receipt_id(*, importer: str, label: str, sha256: str, encoding: str, complete: bool) -> UUID:
    return release_uuid(importer, label, sha256, encoding, complete)


def record(*, name: str, importer: str, file: str, label: str, sha256: str, encoding: str, complete: bool,
           counts: dict[str, int], published_at: datetime | None, recorded_by: str) -> ReleaseRecorded:
    """The receipt of a completed import (the first and only event of its aggregate)."""
    return ReleaseRecorded(
        originator_id=receipt_id(importer=importer, label=label, sha256=sha256, encoding=encoding, complete=complete),
        originator_version=1, recorded_by=recorded_by, name=name, importer=importer, file=file, label=label,
        sha256=sha256, encoding=encoding, complete=complete, published_at=published_at, **counts,
    )
