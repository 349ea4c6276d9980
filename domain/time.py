"""Instants on Tollbook's two clocks, and how they are written down.

Inside the store every instant is an integer count of microseconds since the Unix epoch (UTC):
it sorts, indexes and compares the same way on SQLite and PostgreSQL. At the edges instants
are RFC 3339 text; input must carry a time zone (a bare date means 00:00:00Z that day) and
output is always UTC with a ``Z``.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
# RFC 3339 section 5.6: full-date "T" full-time, the T and Z in either case, the offset with its
# colon, any number of fractional digits (kept to the microsecond). The zone is left optional
# here only to say that it is missing.
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
                      r"(?:([Zz])|([+-])(\d{2}):(\d{2}))?", re.ASCII)
# How far a published_at may lie ahead of the instant it is recorded: the clocks of the
# machines where documents are written drift from the store's.
CLOCK_SKEW = timedelta(minutes=5)
_OUT_OF_RANGE = "outside the years 0001-9999 once its offset is applied (in UTC)"


# The usual shape, which the C parser reads once the pattern has said it is RFC 3339.
_USUAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)", re.ASCII)


def parse_instant(text: str) -> datetime:
    """A strict RFC 3339 timestamp, or a bare date (00:00:00Z that day), as an aware UTC
    datetime whose year is 1 to 9999."""
    if not isinstance(text, str):
        raise ValueError("must be an RFC 3339 timestamp or a date")
    return _parse(text)


@lru_cache(maxsize=65_536)  # bulk input repeats its instants (a report's claims share its published_at)
def _parse(text: str) -> datetime:
    if _USUAL.fullmatch(text):
        try:
            return datetime.fromisoformat(text).astimezone(UTC)
        except (ValueError, OverflowError):
            pass  # said below: which part is wrong
    if len(text) == 10 and _DATE.fullmatch(text):
        try:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        except ValueError:
            raise ValueError(f"not a valid date: {_shown(text)}") from None
    found = _RFC3339.fullmatch(text)
    if found is None:
        raise ValueError(f"not an RFC 3339 timestamp (YYYY-MM-DDThh:mm:ss[.fraction]Z or +hh:mm): {_shown(text)}")
    year, month, day, hour, minute, second, fraction, zulu, sign, zone_hours, zone_minutes = found.groups()
    if not zulu and not sign:
        raise ValueError(f"needs a time zone (Z or +hh:mm): {_shown(text)}")
    if second == "60":
        raise ValueError(f"leap seconds are not supported: {_shown(text)}")
    try:
        local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                         int((fraction or "0")[:6].ljust(6, "0")))
        if sign:
            if int(zone_hours) > 23 or int(zone_minutes) > 59:
                raise ValueError
            offset = timedelta(hours=int(zone_hours), minutes=int(zone_minutes))
            local = local - offset if sign == "+" else local + offset
    except ValueError:
        raise ValueError(f"not a valid date, time or offset: {_shown(text)}") from None
    except OverflowError:
        raise ValueError(f"{_OUT_OF_RANGE}: {_shown(text)}") from None
    return local.replace(tzinfo=UTC)


def check_moment(moment: datetime) -> datetime:
    """A datetime given through the Python API: aware, its UTC instant in years 1 to 9999."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("needs a time zone")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(_OUT_OF_RANGE) from None


def _shown(text: str) -> str:
    """The value as quoted in a message: cut short, so an error stays one readable line."""
    return repr(text if len(text) <= 60 else text[:60] + "...")


def to_micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def format_instant(moment: datetime | int | None, *, fraction: bool = False) -> str | None:
    """UTC RFC 3339 with ``Z``; fractional seconds only when there are any, or always six
    digits with ``fraction`` (the recorded clock: so that its strings sort as its instants do)."""
    if moment is None:
        return None
    if isinstance(moment, int):
        moment = from_micros(moment)
    moment = moment.astimezone(UTC)
    text = f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}"  # %Y leaves years before 1000 unpadded
    if fraction or moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def format_recorded(moment: datetime | int | None) -> str | None:
    """An instant of the recorded clock (``recorded_at``, ``--as-of``), always with six fractional digits."""
    return format_instant(moment, fraction=True)


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
