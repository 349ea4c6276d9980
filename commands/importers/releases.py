"""Release receipts (CONTRACT section 7, "Releases and formats"): every completed import
records which exact file it read (its SHA-256) and what it did with it, as one
``ReleaseRecorded`` event (domain/release.py).

An import of a file whose receipt is already stored (the same importer, the same release name
or, for ACLED, file name, the same bytes read in the same encoding, and ``--complete`` unless
it was) stores nothing and says so. For a file on disk this is found before any row is read:
the file is hashed (as fast as ``sha256sum``) and one aggregate is looked up. Standard input
cannot be read twice: its rows are imported (all unchanged, so nothing is stored) and its hash
is known at the end.

The receipt is recorded only once the import has completed: after its last row (and, with
``--complete``, its last retraction) is on disk, in a transaction of its own. An import stopped
before that (a crash, Ctrl-C, a store that failed) leaves no receipt, so importing the file
again decides its rows again, finds the ones already stored unchanged, and records the receipt.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from tollbook.commands.importers.common import Book, ImportSummary
from tollbook.commands.importers.csvrows import BadFile, CsvRows
from tollbook.domain import release as receipts
from tollbook.domain.time import format_instant, format_recorded, parse_instant
from tollbook.store.eventstore import Conflict


def file_name(path: str) -> str:
    return "-" if path == "-" else os.path.basename(path)


def file_sha256(path: str) -> str | None:
    """The SHA-256 of the file at ``path``; ``None`` for standard input."""
    if path == "-":
        return None
    try:
        with open(path, "rb") as file:
            return hashlib.file_digest(file, "sha256").hexdigest()
    except OSError as error:
        raise BadFile(f"{path}: cannot read: {error.strerror or error}") from None


def as_json(event: receipts.ReleaseRecorded) -> dict[str, Any]:
    """A receipt as ``tollbook releases --format json`` shows it."""
    return {
        "name": event.name, "importer": event.importer, "file": event.file, "sha256": event.sha256,
        "encoding": event.encoding, "complete": event.complete,
        **{count: getattr(event, count) for count in receipts.COUNTS},
        "published_at": format_instant(event.published_at), "recorded_at": format_recorded(event.recorded_at),
        "recorded_by": event.recorded_by,
    }


@dataclass
class Release:
    """One import's receipt in the making: what identifies it, and what is stored already."""

    book: Book
    rows: CsvRows
    importer: str
    label: str  # UCDP's release name; ACLED's file name
    complete: bool
    # The file's receipts already stored: as imported now (or complete, which covers it), and
    # (for a complete import) as imported before without --complete.
    covering: receipts.ReleaseRecorded | None = None
    weaker: receipts.ReleaseRecorded | None = None

    @classmethod
    def begin(cls, book: Book, rows: CsvRows, *, importer: str, label: str | None = None,
              complete: bool = False) -> Release:
        """Looks for this file's receipts before any row is read (not for standard input)."""
        release = cls(book, rows, importer, label or file_name(rows.path), complete)
        sha256 = file_sha256(rows.path)
        if sha256 is not None:
            release._find(sha256)
        return release

    @property
    def encoding(self) -> str:
        """The codec the file was read with, as users name it (UTF-8 drops a byte-order mark)."""
        return "utf-8" if self.rows.encoding == "utf-8-sig" else self.rows.encoding

    def _id(self, sha256: str, complete: bool) -> Any:
        return receipts.receipt_id(importer=self.importer, label=self.label, sha256=sha256,
                                   encoding=self.encoding, complete=complete)

    def _find(self, sha256: str) -> None:
        complete, partial = self._id(sha256, True), self._id(sha256, False)
        found = self.book.store.events_of_many([complete, partial])
        self.covering = (found.get(complete) or (found.get(partial) if not self.complete else None) or [None])[0]
        self.weaker = (found.get(partial) or [None])[0] if self.complete else None

    def skip(self, summary: ImportSummary) -> bool:
        """True if the file's receipt is stored already: then ``summary`` says so. (Imported
        before without --complete, a file imported with it is imported again: its rows are
        unchanged, and the incidents absent from it are retracted.)"""
        if self.covering is None:
            return False
        stored = self.covering
        # What it stored is still stored: this file changes nothing.
        summary.rows, summary.widened, summary.not_found = stored.rows, stored.widened, stored.not_found
        summary.unchanged = stored.rows - stored.rejected - stored.not_found
        self._already(summary, stored)
        return True

    @staticmethod
    def _already(summary: ImportSummary, stored: receipts.ReleaseRecorded) -> None:
        summary.already_imported = True
        summary.release = as_json(stored)

    def record(self, summary: ImportSummary, *, name: str, published_at: str | None) -> None:
        """Records the receipt of the completed import in ``summary``. Not when the same receipt
        is stored already (another writer imported the same file meanwhile, or it came from
        standard input), nor when a complete import of a file imported before stored nothing."""
        sha256 = self.rows.sha256
        self._find(sha256)
        stored = self.covering or (self.weaker if not (summary.imported or summary.retracted) else None)
        if stored is not None:
            self._already(summary, stored)
            return
        counts = {"rows": summary.rows, "imported": summary.imported, "unchanged": summary.unchanged,
                  "widened": summary.widened, "rejected": len(summary.rejected), "retracted": summary.retracted,
                  "not_found": summary.not_found}
        event = receipts.record(
            name=name, importer=self.importer, file=file_name(self.rows.path), label=self.label, sha256=sha256,
            encoding=self.encoding, complete=self.complete, counts=counts,
            published_at=None if published_at is None else parse_instant(published_at),
            recorded_by=self.book.editor)
        try:
            [recorded_at] = self.book.store.append([[event]])
        except Conflict:  # another writer recorded it first
            self._find(sha256)
            self._already(summary, self.covering or event)
            return
        summary.release = as_json(event) | {"recorded_at": format_recorded(recorded_at)}
