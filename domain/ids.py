"""Aggregate ids derived from the names users give, so the same name always finds the same record."""

from functools import lru_cache
from uuid import NAMESPACE_URL, UUID, uuid5

_NAMESPACE = uuid5(NAMESPACE_URL, "https://tollbook.invalid/ids")
_SEP = "\x1f"


def source_key(source: str) -> str:
    """Sources are compared after trimming spaces and folding case."""
    return source.strip().casefold()


@lru_cache(maxsize=1 << 16)  # a name is turned into its id several times a document
def incident_uuid(incident_id: str) -> UUID:
    return uuid5(_NAMESPACE, f"incident{_SEP}{incident_id}")


@lru_cache(maxsize=1 << 16)  # a name is turned into its id several times a document
def claim_uuid(incident_id: str, source: str, measure: str, group: str) -> UUID:
    key = _SEP.join(("claim", incident_id, source_key(source), measure, group))
    return uuid5(_NAMESPACE, key)


@lru_cache(maxsize=1 << 16)  # a name is turned into its id several times a document
def document_uuid(key: str) -> UUID:
    return uuid5(_NAMESPACE, f"document{_SEP}{key}")
