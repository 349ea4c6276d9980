"""The Python API: every CLI command is a thin wrapper over one method here.

    from tollbook.api import Tollbook
    book = Tollbook("tollbook.db", editor="ana")
    book.ingest(open("examples/seed-2018-09-09.jsonl"))
    book.tally(by="admin1", known_at="2018-09-09T09:00:00Z")

Queries first bring the projections up to date, so a reader always sees what was just written.
"""

from __future__ import annotations

import getpass
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tollbook.domain.tally import POLICIES
from tollbook.domain.time import CLOCK_SKEW, check_moment, format_instant, parse_instant, to_micros
from tollbook.follower import Loading, projecting_alongside
from tollbook.projections import queries
from tollbook.projections.projector import Projector
from tollbook.store.eventstore import EventStore, open_store
from tollbook.store.memory import no_cycle_collection

if TYPE_CHECKING:
    from tollbook.commands.importers.common import ImportSummary
    from tollbook.commands.ingest import IngestResult
    from tollbook.store.tokens import Tokens

DEFAULT_DB = "tollbook.db"


def _bytes_left(documents: Iterable[Any]) -> int:
    """What is left to read of a regular file (0 for a pipe, a list, anything else)."""
    try:
        status = os.fstat(documents.fileno())  # type: ignore[attr-defined]
        return status.st_size - documents.tell() if stat.S_ISREG(status.st_mode) else 0  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return 0


def default_editor() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def instant(value: str | datetime | int | None, option: str = "time") -> int | None:
    """An instant given by a user, in store microseconds."""
    if value is None or isinstance(value, int):
        return value
    try:
        return to_micros(check_moment(value) if isinstance(value, datetime) else parse_instant(value))
    except ValueError as error:
        raise ValueError(f"{option}: {error}") from None


def _as_text(value: str | datetime | None) -> str | None:
    """An importer's instant option, checked as the documents' are (a datetime must carry its
    zone; not later than now, give or take the clock skew), as text."""
    if value is None:
        return None
    try:
        moment = check_moment(value) if isinstance(value, datetime) else parse_instant(value)
    except ValueError as error:
        raise ValueError(f"--published-at: {error}") from None
    if moment > datetime.now(UTC) + CLOCK_SKEW:
        raise ValueError(f"--published-at: {format_instant(moment)} is later than now (a release cannot be known "
                         "before it is published)")
    return moment.isoformat()


class Tollbook:
    def __init__(self, db: str | None = None, editor: str | None = None, *, refresh_on_read: bool = True):
        """``refresh_on_read=False``: queries answer from the projections as they stand, for a
        server whose own follower keeps them current (readers never wait on a catch-up)."""
        self.db = db or os.environ.get("TOLLBOOK_DB") or DEFAULT_DB
        self.editor = editor or os.environ.get("TOLLBOOK_EDITOR") or default_editor()
        self.store: EventStore = open_store(self.db)
        self.projector = Projector(self.store)
        self.refresh_on_read = refresh_on_read

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Tollbook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- write side ----------------------------------------------------------------------

    def ingest(self, documents: Iterable[str | bytes | dict], **options: Any) -> IngestResult:
        """Stores the documents (JSON lines or dicts); each is atomic, bad ones are reported.
        A long file's events are projected while it is ingested, by a process beside it."""
        from tollbook.commands.ingest import Ingestor  # the write side's models load only when writing

        with self.projecting_alongside(_bytes_left(documents)) as loader:
            return Ingestor(self.store, self.editor, loader=loader, **options).ingest(documents)

    # -- importers (CONTRACT section 7; commands/importers) ------------------------------
    # Each CSV row becomes one report document fed to the same ingest as JSON Lines. They
    # raise ValueError (BadFile) when the file as a whole cannot be imported; bad rows are
    # reported in the summary's ``rejected`` with their line and column. ``progress`` is
    # called now and then with the bytes and rows read so far. Each completed import records
    # the file's release receipt (see releases()); a file whose receipt is stored already is
    # not imported again (the summary's ``already_imported``).

    def import_ucdp(self, path: str, *, release: str, published_at: Any, complete: bool = False,
                    encoding: str = "utf-8", progress: Callable[[int, int], None] | None = None) -> ImportSummary:
        """Imports a UCDP GED release CSV as report ``ucdp-ged-<release>`` published at ``published_at``;
        ``complete``: retracts the claims of ``ucdp-ged:`` incidents absent from the file."""
        from tollbook.commands.importers.ucdp import import_ucdp

        return import_ucdp(self, path, release=release, published_at=_as_text(published_at), complete=complete,
                           encoding=encoding, progress=progress)

    def import_acled(self, path: str, *, complete: bool = False, published_at: Any = None, encoding: str = "utf-8",
                     progress: Callable[[int, int], None] | None = None) -> ImportSummary:
        """Imports an ACLED export CSV; ``complete``: retracts the claims of ``acled:`` incidents
        absent from the file, at ``published_at`` (default: the file's latest row timestamp)."""
        from tollbook.commands.importers.acled import import_acled

        return import_acled(self, path, complete=complete, published_at=_as_text(published_at), encoding=encoding,
                            progress=progress)

    def import_acled_deletions(self, path: str, *, encoding: str = "utf-8",
                               progress: Callable[[int, int], None] | None = None) -> ImportSummary:
        """Retracts the ACLED claims of the events in ACLED's deleted-events list."""
        from tollbook.commands.importers.acled import import_acled_deletions

        return import_acled_deletions(self, path, encoding=encoding, progress=progress)

    def projecting_alongside(self, size: int) -> AbstractContextManager[Loading | None]:
        """While an import reads ``size`` bytes of rows: a projector in a process of its own
        beside it, if the input is long enough to be worth one, which also loads states for the
        import (tollbook/follower.py)."""
        return projecting_alongside(self.db, size) if self.refresh_on_read else nullcontext()

    @no_cycle_collection
    def releases(self) -> dict[str, Any]:
        """Every release receipt, in recorded order: ``{"releases": [{"name", "importer", "file",
        "sha256", "encoding", "complete", "rows", "imported", "unchanged", "widened", "rejected", "retracted",
        "not_found", "published_at", "recorded_at", "recorded_by"}]}``."""
        from tollbook.projections.releases import releases

        self.refresh()
        with self.store.transaction(write=False) as cursor:
            return releases(cursor)

    # -- end of importers --------------------------------------------------------------

    # -- read side -----------------------------------------------------------------------

    @no_cycle_collection
    def refresh(self) -> int:
        return self.projector.catch_up() if self.refresh_on_read else 0

    @no_cycle_collection
    def tally(self, *, measure: str = "killed", group: str = "all", by: str = "incident",
              incident: str | None = None, as_of: Any = None, known_at: Any = None,
              policy: str = "conservative") -> dict[str, Any]:
        if by not in queries.GROUPINGS:
            raise ValueError(f"--by: must be one of {', '.join(queries.GROUPINGS)}")
        if policy not in POLICIES:
            raise ValueError(f"--policy: must be one of {', '.join(POLICIES)}")
        self.refresh()
        with self.store.transaction(write=False) as cursor:
            return queries.tally(cursor, measure=measure, group=group, by=by, incident=incident,
                                 as_of=instant(as_of, "--as-of"), known_at=instant(known_at, "--known-at"),
                                 policy=policy)

    @no_cycle_collection
    def history(self, *, incident: str | None = None, source: str | None = None, measure: str | None = None,
                group: str | None = None, as_of: Any = None, known_at: Any = None) -> dict[str, Any]:
        self.refresh()
        with self.store.transaction(write=False) as cursor:
            return queries.history(cursor, self.store, incident=incident, source=source, measure=measure, group=group,
                                   as_of=instant(as_of, "--as-of"), known_at=instant(known_at, "--known-at"))

    @no_cycle_collection
    def diff(self, start: Any, end: Any, *, known_at: Any = None, measure: str = "killed", group: str = "all",
             policy: str = "conservative") -> dict[str, Any]:
        if policy not in POLICIES:
            raise ValueError(f"--policy: must be one of {', '.join(POLICIES)}")
        start_at, end_at = instant(start, "--from"), instant(end, "--to")
        if start_at > end_at:
            raise ValueError("--from: must not be after --to")
        self.refresh()
        with self.store.transaction(write=False) as cursor:
            return queries.diff(cursor, self.store, start=start_at, end=end_at,
                                known_at=instant(known_at, "--known-at"), measure=measure, group=group, policy=policy)

    @no_cycle_collection
    def incident(self, incident_id: str, *, as_of: Any = None) -> dict[str, Any] | None:
        """An incident's fields, the incident it counts under and the merges that touch it, at
        ``as_of``; None if no such incident was recorded by then."""
        self.refresh()
        with self.store.transaction(write=False) as cursor:
            return queries.incident(cursor, self.store, incident_id, as_of=instant(as_of, "--as-of"))

    @no_cycle_collection
    def rebuild(self, *, batch_size: int | None = None) -> int:
        """Drops every projection and rebuilds it from the event log; returns the events read.
        ``batch_size``: events a transaction (from now on, for this book's projector)."""
        if batch_size:
            self.projector.batch = batch_size
        return self.projector.rebuild()

    # -- following the log (project, status) ----------------------------------------------

    def project(self, *, follow: bool = False, stop: Any = None,
                on_progress: Callable[[dict[str, Any]], None] | None = None,
                on_error: Callable[[Exception], None] | None = None, poll: float = 0.5,
                batch_size: int | None = None) -> int:
        """Brings every projection up to date with the event log, a batch per transaction, and
        returns how many events were read. ``follow``: then keeps them up to date as events
        arrive (LISTEN/NOTIFY on PostgreSQL, polling every ``poll`` seconds on SQLite) until
        ``stop`` (a ``threading.Event``) is set; the batch in hand is finished first.
        ``on_progress`` gets each batch's ``position``, ``events``, ``seconds`` and ``head``.
        ``batch_size``: events a transaction (from now on, for this book's projector)."""
        if batch_size:
            self.projector.batch = batch_size
        if not follow:
            return self.projector.catch_up(stop, on_progress)
        if stop is None:
            raise ValueError("following the log needs a stop event")
        return self.projector.follow(stop, on_progress, poll=poll, on_error=on_error)

    def tokens(self) -> Tokens:
        """The store's API tokens (CONTRACT section 9)."""
        from tollbook.store.tokens import Tokens

        return Tokens(self.store)

    def status(self) -> dict[str, Any]:
        """The event log's head (``position``: last notification id, and its ``recorded_at``) and
        each projection's ``position`` and ``lag`` (events of the log it has not applied), and
        the last checkpoint the store signed (``checkpoint``, None if none)."""
        from tollbook.store import audit

        return self.projector.status() | {"checkpoint": audit.last_checkpoint(self.store)}

    # -- tamper evidence (CONTRACT section 8; store/audit.py) -----------------------------

    def log(self, after: int = 0, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """The stored events after position ``after`` (at most ``limit``), in log order, as
        ``tollbook log`` prints them: ``{"position", "leaf_hash", "event"}``."""
        from tollbook.store import audit

        if after < 0 or (limit is not None and limit < 0):
            raise ValueError("--after and --limit: must be >= 0")
        return audit.log_lines(self.store, after, limit)

    def checkpoint(self, signing_key: str, origin: str | None = None) -> str:
        """Signs the log's current size and root with ``signing_key`` (the text keygen wrote) as
        a C2SP tlog-checkpoint note, records it in the store and returns it."""
        from tollbook.store import audit
        from tollbook.store.note import NoteError, Signer

        try:
            signer = Signer.parse(signing_key)
        except NoteError as error:
            raise ValueError(f"--key: {error}") from None
        return audit.checkpoint(self.store, signer, origin, self.editor)

    def last_checkpoint(self) -> str | None:
        """The note of the last checkpoint the store signed, or None."""
        from tollbook.store import audit

        last = audit.last_checkpoint(self.store)
        return last["note"] if last else None

    def verify(self, checkpoints: Iterable[tuple[str, str]] = (), public_keys: Iterable[str] = ()) -> tuple[int, str]:
        """Recomputes every leaf and the tree from the stored events and checks them against the
        store; proves each checkpoint ``(label, note)``, signed by one of ``public_keys``
        (verifier keys), consistent with the log. Returns (events, base64 root); raises
        :class:`tollbook.store.audit.Failed` naming the first thing that does not hold."""
        from tollbook.store import audit

        verifiers = parse_verifiers(public_keys)
        signed = [(label, audit.signed_checkpoint(label, note, verifiers)) for label, note in checkpoints]
        events, root = audit.verify(self.store, signed)
        return events, audit.b64(root)

    def prove(self, *, incident: str, checkpoint: str, source: str | None = None, measure: str | None = None,
              group: str | None = None) -> dict[str, Any]:
        """A self-contained proof bundle of the incident's claims (filtered by source, measure,
        group) as of the ``checkpoint`` note: their events with inclusion proofs, and history."""
        from tollbook.store import audit
        from tollbook.store.note import Checkpoint, NoteError

        try:
            size = Checkpoint.parse(checkpoint.rpartition("\n\n")[0] + "\n").size
        except NoteError as error:
            raise ValueError(f"--checkpoint: {error}") from None
        as_of = audit.as_of_checkpoint(self.store, size) if size else None
        if as_of is None:
            raise ValueError("--checkpoint: it signs no event of this log")
        answer = self.history(incident=incident, source=source, measure=measure, group=group, as_of=as_of)
        incidents = {incident} | {c["incident_id"] for c in answer["claims"]} | {
            c["canonical_id"] for c in answer["claims"] if "canonical_id" in c}
        return audit.bundle(self.store, checkpoint, answer, incidents)


def parse_verifiers(public_keys: Iterable[str]) -> list:
    from tollbook.store.note import NoteError, Verifier

    try:
        return [Verifier.parse(key) for key in public_keys]
    except NoteError as error:
        raise ValueError(f"--public-key: {error}") from None
