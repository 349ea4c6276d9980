"""Tamper evidence over the log (CONTRACT section 8): the log as printed, checkpoints, ``verify``,
and proof bundles that an outsider checks with no store at all.

Every check here recomputes from the events themselves: a leaf from an event's decoded fields
(:mod:`tollbook.store.leaf`), the tree from the leaves (:mod:`tollbook.store.merkle`), and
consistency with each signed checkpoint.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson

from tollbook.domain.tally import Candidate, current
from tollbook.domain.time import format_instant, format_recorded, to_micros
from tollbook.store import merkle
from tollbook.store.leaf import Undecodable, hash_of, leaf, logged, printed, skipped, skipped_hash
from tollbook.store.eventstore import state_json
from tollbook.store.log import TILE, StoreDamaged, TreeReader
from tollbook.store.note import Checkpoint, NoteError, Signer, Verifier, open_note

if TYPE_CHECKING:
    from tollbook.store.eventstore import EventStore

BUNDLE_FORMAT = "tollbook-proof/v1"


class Failed(Exception):
    """A check that does not hold: one line saying where and what."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: Any, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise Failed(f"{what} is not base64") from None


# -- the log as printed ---------------------------------------------------------------------

LARGEST_POSITION = 2**63 - 1  # a position is a 64-bit integer on both stores

def log_lines(store: EventStore, after: int = 0, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Every stored event after ``after`` (at most ``limit``), with its position and the leaf
    hash the tree holds for it. An event that cannot be decoded is printed with ``event``
    null and why, so that the log can always be read out."""
    if after >= LARGEST_POSITION:  # none is after it (and the database takes no larger integer)
        return
    table, position = store.events_table, store.notification_id
    with store.transaction(write=False) as cursor:
        left = limit
        while left is None or left > 0:
            take = 10_000 if left is None else min(10_000, left)
            cursor.execute(f"SELECT e.{position}, e.originator_id, e.originator_version, e.topic, e.state, l.leaf_hash"
                           f" FROM {table} e LEFT JOIN tollbook_leaves l ON l.position = e.{position}"
                           f" WHERE e.{position} > ? ORDER BY e.{position} LIMIT ?", (after, take))
            rows = cursor.fetchall()
            if not rows:
                return
            for at, aggregate_id, version, topic, state, found in rows:
                for line in _skipped(cursor, after + 1, at):
                    if left is not None and left <= 0:
                        return
                    yield line
                    left = None if left is None else left - 1
                if left is not None and left <= 0:
                    return
                stored = bytes(found) if found is not None else b""
                try:
                    yield printed(at, stored, logged(aggregate_id, version, topic, bytes(state)))
                except Undecodable as error:
                    yield {"position": at, "leaf_hash": b64(stored), "event": None, "undecodable": str(error)}
                after = at
                left = None if left is None else left - 1


def _skipped(cursor: Any, first: int, end: int) -> list[dict[str, Any]]:
    """The lines of the positions first..end-1, which hold no event: those the log skipped
    before it had a tree (their leaves say so); an event removed since prints nothing here."""
    if first >= end:
        return []
    cursor.execute("SELECT position, leaf_hash FROM tollbook_leaves WHERE position >= ? AND position < ?"
                   " ORDER BY position", (first, end))
    return [printed(at, bytes(found), skipped(at)) for at, found in cursor.fetchall() if bytes(found) == skipped_hash(at)]


# -- checkpoints -------------------------------------------------------------------------------

def default_origin(cursor: Any) -> str:
    """The origin a checkpoint of this store names unless told another: tollbook/<store id>."""
    cursor.execute("SELECT store_id FROM tollbook_identity WHERE id = 1")
    row = cursor.fetchone()
    return f"tollbook/{row[0] if row else 'unknown'}"


def checkpoint(store: EventStore, signer: Signer, origin: str | None, recorded_by: str) -> str:
    """Signs the tree as it stands and records the note in the store; returns the note."""
    from tollbook.store.eventstore import to_micros_now

    if not origin:
        with store.transaction(write=False) as cursor:
            origin = default_origin(cursor)
    if not origin.strip() or "\n" in origin:
        raise ValueError("--origin: must be one non-empty line")
    with store.transaction() as cursor:
        store.lock(cursor, "tollbook-checkpoint")
        size = store.log.size(cursor)
        root = TreeReader(cursor, size).root()
        note = signer.sign(Checkpoint(origin, size, root).text())
        cursor.execute("SELECT coalesce(max(number), 0) + 1 FROM tollbook_checkpoints")
        number = cursor.fetchone()[0]
        cursor.execute("INSERT INTO tollbook_checkpoints (number, size, root, note, recorded_at, recorded_by)"
                       " VALUES (?, ?, ?, ?, ?, ?)", (number, size, root, note, to_micros_now(), recorded_by))
    return note


def last_checkpoint(store: EventStore) -> dict[str, Any] | None:
    with store.transaction(write=False) as cursor:
        cursor.execute("SELECT number, size, root, note, recorded_at, recorded_by FROM tollbook_checkpoints"
                       " ORDER BY number DESC LIMIT 1")
        row = cursor.fetchone()
    if row is None:
        return None
    number, size, root, note, recorded_at, recorded_by = row
    return {"number": number, "origin": note.split("\n", 1)[0], "size": size, "root": b64(bytes(root)),
            "key": note.rsplit("\n\u2014 ", 1)[-1].split(" ", 1)[0], "recorded_at": format_recorded(recorded_at),
            "recorded_by": recorded_by, "note": note}


def signed_checkpoint(label: str, note: str, verifiers: list[Verifier]) -> Checkpoint:
    try:
        text, _ = open_note(note, verifiers)
        return Checkpoint.parse(text)
    except NoteError as error:
        raise Failed(f"checkpoint {label}: {error}") from None


# -- verify --------------------------------------------------------------------------------------

# From this many events verify hands the end of the log to a worker process (the
# decoding and hashing is CPU-bound Python: one core each); below it the worker's start costs more.
SPLIT_AT = 200_000


def _recomputed(cursor: Any, table: str, column: str, after: int, until: int) -> Iterator[bytes]:
    """The leaf hash recomputed from each stored event from ``after + 1`` to ``until``, in order,
    each checked against the leaf the tree holds for it; raises :class:`Failed` at the first
    position that does not hold."""
    expected = after + 1
    while expected <= until:
        cursor.execute(f"SELECT e.{column}, e.originator_id, e.originator_version, e.topic, e.state, l.leaf_hash"
                       f" FROM {table} e LEFT JOIN tollbook_leaves l ON l.position = e.{column}"
                       f" WHERE e.{column} > ? ORDER BY e.{column} LIMIT 10000", (after,))
        rows = cursor.fetchall()
        if not rows:
            return
        for at, aggregate_id, version, topic, state, found in rows:
            if at != expected:  # positions the log skipped before it had a tree, or events removed
                for line in _skipped(cursor, expected, min(at, until + 1)):
                    if line["position"] != expected:
                        break
                    yield skipped_hash(expected)
                    expected += 1
                if expected > until:
                    return
            if at != expected:
                raise Failed(f"position {expected}: the event there was removed (the log goes on at {at})")
            if at > until:
                return
            if found is None:
                raise Failed(f"position {at}: an event the tree does not hold (inserted behind Tollbook's back)")
            try:
                made = hash_of(aggregate_id, version, topic, bytes(state))
            except Undecodable as error:
                raise Failed(f"position {at}: the stored event cannot be decoded: {error}") from None
            if made != bytes(found):
                raise Failed(f"position {at}: the stored event was changed or moved (its leaf hash is not"
                             " the tree's)")
            yield made
            expected += 1
        after = rows[-1][0]


def _check_part(url: str, after: str, until: str) -> None:
    """The worker's process: checks the events from ``after + 1`` to ``until`` as
    :func:`_recomputed` does, and prints [the last position that holds, the line saying what
    does not or null]."""
    import signal
    import sys

    from tollbook.store.eventstore import open_store

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C is the parent's to handle; it ends this one
    last, failure = int(after), None
    store = open_store(url)
    try:
        with store.transaction(write=False) as cursor:
            for _ in _recomputed(cursor, store.events_table, store.notification_id, last, int(until)):
                last += 1
    except Failed as error:
        failure = str(error)
    finally:
        store.close()
    sys.stdout.write(orjson.dumps([last, failure]).decode())


class _Worker:
    """:func:`_check_part` in a process of its own (a new interpreter: this one holds database
    connections, and multiprocessing would run the caller's main script again)."""

    def __init__(self, store: EventStore, after: int, until: int):
        import os
        import subprocess
        import sys

        environment = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}  # this process's code, not another
        self._process = subprocess.Popen(
            [sys.executable, "-c", "import sys; from tollbook.store.audit import _check_part; _check_part(*sys.argv[1:])",
             store.location.url, str(after), str(until)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=environment)

    def result(self) -> tuple[int, str | None] | None:
        """Its answer, or None when it gave none (it died, or could not open the store)."""
        try:
            last, failure = orjson.loads(self._process.stdout.read())
        except (orjson.JSONDecodeError, ValueError, TypeError):
            return None
        return last, failure

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._process.stdout.close()


def verify(store: EventStore, checkpoints: list[tuple[str, Checkpoint]]) -> tuple[int, bytes]:
    """Recomputes every leaf from the stored events and the whole tree from them, checks them
    against the stored leaves, nodes and checkpoints, and proves each given checkpoint
    consistent with the log. Returns (events, root); raises :class:`Failed` at the first
    position that does not hold."""
    table, column = store.events_table, store.notification_id
    with store.transaction(write=False) as cursor:
        cursor.execute("SELECT level, idx, hash FROM tollbook_nodes")
        nodes = {(level, index): bytes(found) for level, index, found in cursor.fetchall()}
        cursor.execute("SELECT number, size, root, note FROM tollbook_checkpoints ORDER BY number")
        found = cursor.fetchall()
        recorded = [(number, size, bytes(root)) for number, size, root, _ in found]
        # This store's names: its default origin and any it signed a checkpoint under (--origin).
        origins = {default_origin(cursor)} | {note.split("\n", 1)[0] for *_, note in found}
        for label, cp in checkpoints:
            if cp.origin not in origins:
                raise Failed(f"checkpoint {label} is of another log: its origin {cp.origin!r} is not this store's"
                             f" ({' or '.join(repr(origin) for origin in sorted(origins))})")
        size, head = store.log.size(cursor), store.log.head(cursor)
        wanted = {cp.size for _, cp in checkpoints} | {s for _, s, _ in recorded}
        roots: dict[int, bytes] = {0: merkle.EMPTY_ROOT} if 0 in wanted else {}
        checked = [0]

        def on_node(level: int, index: int, found: bytes) -> None:
            if nodes.get((level, index)) != found:
                first = (index << level) + 1
                raise Failed(f"position {first}: the tree's node over positions {first}..{(index + 1) << level}"
                             " is not the one its events make (the tree was changed)")
            checked[0] += 1

        tree = merkle.CompactRange(keep=TILE, on_node=on_node)

        def add(leaves: Iterator[bytes]) -> None:
            for made in leaves:
                tree.append(made)
                if tree.size in wanted:
                    roots[tree.size] = tree.root()

        # A worker checks the events after ``mine`` meanwhile; the tree then grows from the
        # stored leaves it vouched for, up to the first position that fails. Growing it costs
        # this process about a fifth of checking them, so the worker takes a little more.
        mine = head * 9 // 20 if head >= SPLIT_AT else head
        worker = _Worker(store, mine, head) if mine < head else None
        try:
            add(_recomputed(cursor, table, column, 0, mine))
            if worker is not None:
                answer = worker.result()
                if answer is None:
                    add(_recomputed(cursor, table, column, mine, head))
                else:
                    last, failure = answer
                    add(_stored_leaves(cursor, mine, last))
                    if failure is not None:
                        raise Failed(failure)
        finally:
            if worker is not None:
                worker.stop()
        if size > tree.size:
            raise Failed(f"position {tree.size + 1}: the event there was removed (the tree has {size} leaves,"
                         f" the log ends at {tree.size})")
        if checked[0] != len(nodes):
            raise Failed("the tree holds nodes its events do not make (the tree was changed)")
        root = tree.root()
        for number, at_size, at_root in recorded:
            if roots.get(at_size) != at_root:
                raise Failed(f"the store's checkpoint {number} (size {at_size}) is not a state of this log"
                             " (the log was rewritten since it was signed)")
        reader = TreeReader(cursor, tree.size)
        for label, cp in checkpoints:
            if cp.size > tree.size:
                raise Failed(f"checkpoint {label} (size {cp.size}) is not extended by the log: the log has only"
                             f" {tree.size} events (events were removed)")
            try:
                proof = merkle.consistency_proof(reader.subtree, cp.size, tree.size)
            except StoreDamaged as error:
                raise Failed(f"the stored tree cannot prove consistency: {error}") from None
            if not merkle.verify_consistency(cp.size, tree.size, cp.root, root, proof):
                raise Failed(f"checkpoint {label} (size {cp.size}, root {b64(cp.root)}) is not extended by the log:"
                             " the history it signed was rewritten")
    return tree.size, root


def _stored_leaves(cursor: Any, after: int, until: int) -> Iterator[bytes]:
    while after < until:
        cursor.execute("SELECT position, leaf_hash FROM tollbook_leaves WHERE position > ? AND position <= ?"
                       " ORDER BY position LIMIT 50000", (after, until))
        rows = cursor.fetchall()
        if not rows:
            return
        yield from (bytes(found) for _, found in rows)
        after = rows[-1][0]


# -- proof bundles ----------------------------------------------------------------------------

def bundle(store: EventStore, note: str, history: dict[str, Any], incident_ids: set[str]) -> dict[str, Any]:
    """A self-contained proof of ``history`` (as of the checkpoint): every stored event of its
    claims and of the incidents they were made under, each with its inclusion proof against the
    checkpoint ``note``, which must be of this log."""
    from tollbook.domain.ids import incident_uuid

    text = note.rpartition("\n\n")[0] + "\n"
    try:
        cp = Checkpoint.parse(text)
    except NoteError as error:
        raise ValueError(f"--checkpoint: {error}") from None
    aggregates = [UUID(claim["claim_id"]) for claim in history["claims"]]
    aggregates += [incident_uuid(incident_id) for incident_id in sorted(incident_ids)]
    table, column = store.events_table, store.notification_id
    events = []
    with store.transaction(write=False) as cursor:
        if cp.size > store.log.size(cursor):
            raise ValueError("--checkpoint: it is larger than this store's log: not a checkpoint of this store")
        reader = TreeReader(cursor, cp.size)
        if reader.root() != cp.root:
            raise ValueError("--checkpoint: its root is not this store's tree at its size: not a checkpoint of"
                             " this store")
        for start in range(0, len(aggregates), 500):
            ids = [a if store.is_postgres else a.hex for a in aggregates[start:start + 500]]
            cursor.execute(f"SELECT e.{column}, e.originator_id, e.originator_version, e.topic, e.state, l.leaf_hash"
                           f" FROM {table} e JOIN tollbook_leaves l ON l.position = e.{column}"
                           f" WHERE e.originator_id IN ({', '.join('?' * len(ids))}) AND e.{column} <= ?",
                           (*ids, cp.size))
            events += cursor.fetchall()
        lines = []
        for at, aggregate_id, version, topic, state, found in sorted(events):
            line = printed(at, bytes(found), logged(aggregate_id, version, topic, bytes(state)))
            line["inclusion"] = [b64(h) for h in merkle.inclusion_proof(reader.subtree, at - 1, cp.size)]
            lines.append(line)
    return {"format": BUNDLE_FORMAT, "checkpoint": note, "events": lines, "history": history}


def as_of_checkpoint(store: EventStore, size: int) -> int | None:
    """The recorded_at of the event at ``size``: what a checkpoint of that size saw."""
    with store.transaction(write=False) as cursor:
        for chunk in store.log.events(cursor, size - 1, 1):
            return orjson.loads(state_json(bytes(chunk[0][4])))["timestamp"]
    return None


def _instant(text: str | None) -> str | None:
    return None if text is None else format_instant(to_micros(datetime.fromisoformat(text)))


def entries_of(events: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """A claim's history as its events make it, in recorded order: the claim (incident,
    source, measure, group), its entries and its current figure, as ``history`` prints them."""
    claim: dict[str, Any] = {}
    entries: list[dict[str, Any]] = []
    versions: dict[int, tuple[dict[str, Any], int, str]] = {}  # version -> its entry now, where recorded, kind
    for line in events:
        event, fields = line["event"], line["event"]["fields"]
        base = {"recorded_at": _instant(event["recorded_at"]), "recorded_by": event["recorded_by"]}
        if event["type"] == "ClaimReported":
            if not claim:
                claim = {"incident_id": fields["incident_id"], "source": fields["source"],
                         "measure": fields["measure"], "group": fields["group"]}
            entry = {"kind": "reported", "version": fields["version"], "low": fields.get("low"),
                     "high": fields.get("high"), "best": fields.get("best"),
                     "published_at": _instant(fields["published_at"]), **base, "report_id": fields["report_id"],
                     "reason": None, "qualifier": fields.get("qualifier"), "quote": fields.get("quote"),
                     "note": fields.get("note")}
            versions[entry["version"]] = (entry, line["position"], "reported")
        elif event["type"] == "ClaimRetracted":
            entry = {"kind": "retracted", "version": fields["version"], "low": None, "high": None, "best": None,
                     "published_at": _instant(fields["published_at"]), **base, "report_id": None,
                     "reason": fields["reason"], "qualifier": None, "quote": None, "note": None}
            versions[entry["version"]] = (entry, line["position"], "retracted")
        elif event["type"] == "ClaimCorrected":
            before, recorded, kind = versions[fields["version"]]
            entry = before | {name: fields[name] for name in ("low", "high", "best", "qualifier") if name in fields}
            if "published_at" in fields:
                entry["published_at"] = _instant(fields["published_at"])
            entry |= {"kind": "corrected", **base, "report_id": None, "reason": fields["reason"], "quote": None,
                      "note": None}
            versions[fields["version"]] = (entry, recorded, kind)
        else:
            continue
        entries.append(entry)
    figures = [(Candidate(kind, e["low"], e["high"], e["best"], to_micros(datetime.fromisoformat(e["published_at"])),
                          recorded), version) for version, (e, recorded, kind) in versions.items()]
    found = current([f for f, _ in figures])
    now: dict[str, Any] = {"counting": False, "version": None, "low": None, "high": None, "best": None}
    if found is not None:
        version = next(v for f, v in figures if f is found)
        counting = found.kind == "reported"
        now = {"counting": counting, "version": version, "low": found.low if counting else None,
               "high": found.high if counting else None, "best": found.best if counting else None}
    return claim, entries, now


def verify_bundle(data: Any, verifiers: list[Verifier]) -> tuple[Checkpoint, dict[str, Any], int]:
    """Checks a bundle with no store: the checkpoint's signature, every event's leaf and its
    inclusion proof, that each record's events are all there from its first version, and
    that the history follows from them. Returns the checkpoint, the history and the events."""
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise Failed(f"not a proof bundle ({BUNDLE_FORMAT})")
    try:
        cp = signed_checkpoint("in the bundle", data["checkpoint"], verifiers)
        by_aggregate: dict[str, list[dict[str, Any]]] = {}
        for line in data["events"]:
            at, event = line["position"], line["event"]
            if type(at) is not int or not isinstance(event, dict):
                raise Failed("an event in the bundle has no position or no event")
            made = merkle.leaf_hash(leaf(event))
            if made != unb64(line["leaf_hash"], f"the leaf hash at position {at}"):
                raise Failed(f"position {at}: the event is not the one its leaf hash was made from (changed)")
            proof = [unb64(h, f"the inclusion proof at position {at}") for h in line["inclusion"]]
            if not merkle.verify_inclusion(at - 1, cp.size, made, proof, cp.root):
                raise Failed(f"position {at}: its inclusion proof does not lead to the checkpoint's root")
            by_aggregate.setdefault(event["aggregate_id"], []).append(line)
        for aggregate_id, lines in by_aggregate.items():
            if [line["event"]["aggregate_version"] for line in lines] != list(range(1, len(lines) + 1)):
                raise Failed(f"record {aggregate_id}: its events are not all there (versions"
                             f" {[line['event']['aggregate_version'] for line in lines]})")
        history = data["history"]
        for claim in history["claims"]:
            made_claim, entries, now = entries_of(by_aggregate.get(claim["claim_id"], []))
            said = {k: claim.get(k) for k in ("incident_id", "source", "measure", "group")}
            if made_claim != said or entries != claim["entries"] or now != claim["current"]:
                raise Failed(f"claim {claim['claim_id']}: the history the bundle gives does not follow from its events")
    except Failed:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, StopIteration) as error:
        raise Failed(f"the bundle is not well formed ({type(error).__name__}: {error})") from None
    return cp, history, len(data["events"])
