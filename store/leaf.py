"""Each stored event as ``tollbook log`` prints it, and its leaf in the log's Merkle tree.

The leaf is defined from the event's decoded fields, not from how the store encodes them, so
the storage can change without changing a hash (README, "The leaf recipe"):

    event = {"type": "ClaimReported",            # a stable name, never a module path
             "aggregate_id": "<uuid>", "aggregate_version": 1,
             "recorded_at": "2026-11-24T19:50:12.000000Z", "recorded_by": "ana",
             "fields": {...every other field the event was stored with...}}
    leaf  = canonical JSON of event: keys sorted, no white space, UTF-8 (nothing escaped that
            need not be), numbers as Python's json writes them; instants (recorded_at, and
            published_at among the fields) as RFC 3339 UTC with six fractional digits and Z.
    leaf_hash = SHA-256(0x00 ‖ leaf)

that is ``json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
encoded as UTF-8. orjson writes the same bytes for everything but the floats below 1e-4 in size
(``1e-05``; 0 aside) and those that are not finite, so it writes every event without one (a GED
row's coordinates are not); the others go through ``json``.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson

from tollbook.domain.time import to_micros
from tollbook.store.eventstore import NONE_LEFT_OUT, STORED_TOPICS, decode_state, encode_state, id_text, is_compact
from tollbook.store.merkle import leaf_hash

if TYPE_CHECKING:
    from tollbook.domain.events import DomainEvent

# A type's stable name is its stored topic's part after the colon (store/eventstore.py).
TYPE_OF = {class_name: topic.rpartition(":")[2] for class_name, topic in STORED_TOPICS.items()}
TYPE_OF_TOPIC = {STORED_TOPICS[class_name]: name for class_name, name in TYPE_OF.items()}
INSTANT_FIELDS = {"ClaimReported": ("published_at",), "ClaimRetracted": ("published_at",),
                  "ClaimCorrected": ("published_at",), "DocumentReceived": ("published_at",),
                  "ReleaseRecorded": ("published_at",)}
WITHOUT_FLOATS = frozenset({"ClaimReported", "ClaimRetracted", "ClaimCorrected", "IncidentMerged", "IncidentAbsorbed",
                            "ReleaseRecorded"})
SKIPPED = "PositionSkipped"  # not an event type: see skipped()
ENVELOPE = ("originator_id", "originator_version", "timestamp", "recorded_by")  # decode_state gives all four
_ZERO = timedelta(0)
_EPOCH_DAY = date(1970, 1, 1)
_LARGEST = 1.7976931348623157e308  # an infinity is larger


class Undecodable(ValueError):
    """A stored event that cannot be read as one: not JSON, an unknown type, fields missing."""


@lru_cache(maxsize=1_024)  # a document's events share their recorded_at
def recorded_text(micros: int) -> str:
    """An instant as the log and the leaves write it: UTC, six fractional digits, Z."""
    # Integer arithmetic, not a datetime: verify formats one a stored event.
    seconds, micro = divmod(micros, 1_000_000)
    days, seconds = divmod(seconds, 86_400)
    hour, seconds = divmod(seconds, 3_600)
    minute, second = divmod(seconds, 60)
    return f"{_day(days)}T{hour:02d}:{minute:02d}:{second:02d}.{micro:06d}Z"


@lru_cache(maxsize=4_096)
def _day(days: int) -> str:
    # isoformat pads the years before 1000, as _text does; OverflowError beyond year 1..9999
    return (_EPOCH_DAY + timedelta(days=days)).isoformat()


def _text(m: datetime) -> str:
    # Not strftime: slower, and glibc's %Y does not pad the years before 1000.
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}.{m.microsecond:06d}Z"


@lru_cache(maxsize=65_536)  # a report's events share their published_at
def _instant(text: str) -> str:
    return recorded_text(to_micros(datetime.fromisoformat(text)))


def logged(aggregate_id: Any, version: int, topic: str, state: bytes) -> dict[str, Any]:
    """The stored event (its row: aggregate id and version, topic, JSON state) as the log prints
    it. Raises :class:`Undecodable`."""
    try:
        kind = TYPE_OF_TOPIC[topic]
    except (KeyError, TypeError):
        raise Undecodable(f"unknown event type {topic!r}") from None
    try:
        identity = id_text(aggregate_id)
        fields = decode_state(aggregate_id, version, topic, state)
        if not isinstance(fields, dict):
            raise Undecodable("its state is not a JSON object")
        # A state stored before the compact encoding names its aggregate: it must be its row's.
        named = fields["originator_id"]
        if (named != identity and id_text(named) != identity) or fields["originator_version"] != version:
            raise Undecodable("its state names another aggregate or version than its row")
        recorded_at, recorded_by = fields["timestamp"], fields["recorded_by"]
        if type(recorded_at) is not int or not isinstance(recorded_by, str):
            raise Undecodable("its timestamp or recorded_by is not what the store writes")
        for name in ENVELOPE:
            del fields[name]
        for name in INSTANT_FIELDS.get(kind, ()):
            if fields.get(name) is not None:
                fields[name] = _instant(fields[name])
        return {"type": kind, "aggregate_id": identity, "aggregate_version": version,
                "recorded_at": recorded_text(recorded_at), "recorded_by": recorded_by, "fields": fields}
    except Undecodable:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OverflowError, AttributeError) as error:
        raise Undecodable(f"cannot be decoded ({type(error).__name__}: {error})") from None


@lru_cache(maxsize=4_096)  # a report's claims share their published_at
def _instant_of(moment: datetime) -> str:
    return _text(moment if moment.utcoffset() == _ZERO else moment.astimezone(UTC))


def stored(event: DomainEvent, recorded_at: int, recorded_at_text: str) -> tuple[bytes, bytes]:
    """A new event's state as the store keeps it (its fields as pydantic writes them: the set
    ones, in the model's order, compact as :class:`PydanticMapper` writes them, the store's
    clock last) and its leaf hash, made from one dict: this is the append path's cost per
    event, so the JSON is made by orjson, not twice over."""
    values, chosen = event.__dict__, event.model_fields_set
    if len(chosen) == len(values) - 1 and "timestamp" not in chosen:  # all set but the clock: the usual case
        fields = values.copy()
    else:
        fields = {name: value for name, value in values.items() if name in chosen}
    fields.pop("timestamp", None)
    compact = is_compact(event)
    if not compact:
        state = orjson.dumps(fields, option=orjson.OPT_UTC_Z)
    aggregate_id, version = fields.pop("originator_id"), fields.pop("originator_version")
    if compact:
        state = orjson.dumps({name: value for name, value in fields.items() if value is not None}
                             if type(event).__name__ in NONE_LEFT_OUT else fields, option=orjson.OPT_UTC_Z)
    state = encode_state(b'%s,"timestamp":%d}' % (state[:-1], recorded_at))
    kind = TYPE_OF[type(event).__name__]
    recorded_by = fields.pop("recorded_by")
    for name in INSTANT_FIELDS.get(kind, ()):
        if fields.get(name) is not None:
            fields[name] = _instant_of(fields[name])
    return state, leaf_hash(leaf({"type": kind, "aggregate_id": aggregate_id, "aggregate_version": version,
                                  "recorded_at": recorded_at_text, "recorded_by": recorded_by, "fields": fields}))


def _has_odd_float(value: Any) -> bool:
    """Whether a float orjson writes otherwise than json does is in there."""
    found = [value]
    while found:
        item = found.pop()
        kind = type(item)
        if kind is float:
            if not (item == 0 or 1e-4 <= abs(item) <= _LARGEST):  # NaN fails both
                return True
        elif kind is dict:
            found.extend(item.values())
        elif kind is list:
            found.extend(item)
    return False


def leaf(event: dict[str, Any]) -> bytes:
    """The leaf bytes of an event as :func:`logged` gives it."""
    if event["type"] in WITHOUT_FLOATS or not _has_odd_float(event["fields"]):
        try:
            return orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
        except (TypeError, orjson.JSONEncodeError):  # an integer beyond 64 bits: json writes it
            pass
    # default=str: a new event's aggregate id is still a UUID (orjson writes it as str() does)
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def skipped(position: int) -> dict[str, Any]:
    """What the log prints at a position that a store written before the tree skipped (on
    PostgreSQL an insert rolled back took a number of its sequence): its leaf stands in for the
    event that never was, so that position N stays leaf N-1."""
    return {"type": SKIPPED, "fields": {"position": position}}


def skipped_hash(position: int) -> bytes:
    return leaf_hash(leaf(skipped(position)))


def hash_of(aggregate_id: Any, version: int, topic: str, state: bytes) -> bytes:
    """The leaf hash of a stored event's row."""
    return leaf_hash(leaf(logged(aggregate_id, version, topic, state)))


def printed(position: int, found: bytes, event: dict[str, Any]) -> dict[str, Any]:
    """A line of ``tollbook log``."""
    return {"position": position, "leaf_hash": base64.b64encode(found).decode(), "event": event}

