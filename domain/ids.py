"""Aggregate ids derived from the names users give, so the same name always finds the same record."""

import unicodedata
from functools import lru_cache
from hashlib import sha1
from uuid import NAMESPACE_URL, UUID, uuid5

_NAMESPACE = uuid5(NAMESPACE_URL, "https://tollbook.invalid/ids")
_SEP = "\x1f"

# uuid5(_NAMESPACE, name) is sha1(namespace bytes + name) with the version and variant bits set.
# Bulk ingest derives ids by the hundred thousand: hash the namespace once, set the bits on the int.
_HASHED_NAMESPACE = sha1(_NAMESPACE.bytes)
_KEEP = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_5 = (0x5000 << 64) | (0x8000 << 48)


def _uuid5(name: str) -> UUID:
    digest = _HASHED_NAMESPACE.copy()
    digest.update(name.encode())
    return UUID(int=int.from_bytes(digest.digest()[:16]) & _KEEP | _VERSION_5)


# A name is turned into its id several times a document: in the prefetch of its batch, then
# in deciding it. Enough ids are kept for a batch of bulk ingest (commands/ingest.py).
_IDS_KEPT = 1 << 15


# Zero-width characters are removed, but the zero-width SPACE separates words as a space does
# (CONTRACT section 1: "White\u200bHelmets" is "White Helmets").
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200c\u200d\u2060\ufeff")) | {0x200B: " "}


@lru_cache(maxsize=_IDS_KEPT)
def source_key(source: str) -> str:
    """A source as people mean it (CONTRACT section 1): NFKC, zero-width characters removed,
    runs of any white space one space, trimmed, case folded."""
    return " ".join(unicodedata.normalize("NFKC", source).translate(_ZERO_WIDTH).split()).casefold()


def _legacy_source_key(source: str) -> str:
    # How sources were compared until stores kept NFKC keys: trimmed and case folded only.
    return source.strip().casefold()


def respelled(source: str) -> bool:
    """Whether this spelling of a source had a key of its own before sources were compared by
    their NFKC key (a store written then may hold its claims apart from the source's others)."""
    return _legacy_source_key(source) != source_key(source)


@lru_cache(maxsize=_IDS_KEPT)
def incident_uuid(incident_id: str) -> UUID:
    return _uuid5(f"incident{_SEP}{incident_id}")


def _part(name: str) -> str:
    # A name holding the separator must not run into the next one ("a\x1fb" + "c" is not
    # "a" + "b\x1fc"). Escaping changes nothing for names without these control characters.
    return name.replace("\x1e", "\x1e\x1e").replace(_SEP, "\x1e" + _SEP)


def _claim_uuid(incident_id: str, key: str, measure: str, group: str) -> UUID:
    return _uuid5(_SEP.join(("claim", _part(incident_id), _part(key), measure, group)))


@lru_cache(maxsize=_IDS_KEPT)
def claim_uuid(incident_id: str, source: str, measure: str, group: str) -> UUID:
    """The id a new claim gets."""
    return _claim_uuid(incident_id, source_key(source), measure, group)


@lru_cache(maxsize=_IDS_KEPT)
def claim_uuids(incident_id: str, source: str, measure: str, group: str) -> tuple[UUID, ...]:
    """Where the claim may already be, in the order to look: first where a store written
    before sources were compared by their NFKC key would have put this spelling's claim (only
    where the two keys differ: inner runs of spaces, no-break or zero-width spaces, full-width
    letters...), then :func:`claim_uuid`. So a store keeps adding to the claims it holds."""
    current = claim_uuid(incident_id, source, measure, group)
    if not respelled(source):
        return (current,)
    return _claim_uuid(incident_id, _legacy_source_key(source), measure, group), current


@lru_cache(maxsize=_IDS_KEPT)
def document_uuid(key: str) -> UUID:
    return _uuid5(f"document{_SEP}{key}")


def release_uuid(importer: str, label: str, sha256: str, encoding: str, complete: bool) -> UUID:
    """A release receipt's id: the same import of the same bytes is the same receipt."""
    return _uuid5(_SEP.join(("release", _part(importer), _part(label), sha256, _part(encoding),
                             "complete" if complete else "")))


def forget() -> None:
    """Drops the ids kept (bulk ingest does when it is done with them)."""
    for derive in (incident_uuid, claim_uuid, claim_uuids, document_uuid, source_key):
        derive.cache_clear()
