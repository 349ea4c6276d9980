"""Instants on Tollbook's two clocks, and how they are written down.

Inside the store every instant is an integer count of microseconds since the Unix epoch (UTC):
it sorts, indexes and compares the same way on SQLite and PostgreSQL. At the edges instants
are RFC 3339 text; input must carry a time zone (a bare date means 00:00:00Z that day) and
output is always UTC with a ``Z``.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ZONE = re.compile(r"(Z|z|[+-]\d{2}:?\d{2})$")


def parse_instant(text: str) -> datetime:
    """An RFC 3339 timestamp with a zone, or a bare date, as an aware UTC datetime."""
    if not isinstance(text, str):
        raise ValueError("must be an RFC 3339 timestamp or a date")
    text = text.strip()
    if _DATE.fullmatch(text):
        try:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        except ValueError:
            raise ValueError(f"not a valid date: {text!r}") from None
    if not _ZONE.search(text):
        raise ValueError(f"needs a time zone (Z or +hh:mm): {text!r}")
    try:
        moment = datetime.fromisoformat(text[:-1] + "Z" if text[-1] == "z" else text)
    except ValueError:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}") from None
    return moment.astimezone(UTC)


def to_micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def format_instant(moment: datetime | int | None) -> str | None:
    """UTC RFC 3339 with ``Z``; fractional seconds only when there are any."""
    if moment is None:
        return None
    if isinstance(moment, int):
        moment = from_micros(moment)
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def normalize_day(text: str) -> str:
    """An incident's date as ``YYYY-MM-DD``: a bare date stays, a timestamp is taken in UTC."""
    if isinstance(text, str) and _DATE.fullmatch(text):
        # The usual case, checked once when parsed and again by each event that carries it.
        try:
            date.fromisoformat(text)
            return text
        except ValueError:
            pass  # parse_instant says what is wrong
    return format_instant(parse_instant(text))[:10]
