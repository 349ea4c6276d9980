"""The tally rules (CONTRACT section 4): which version counts, and how sources combine.

Pure functions over figures; the read side fetches the candidate versions with an indexed
query at the asked point and hands them here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar


@dataclass(frozen=True, slots=True)
class Candidate:
    """One version of one claim as it stood at the asked point."""

    kind: str  # "reported" or "retracted"
    low: int | None
    high: int | None
    best: int | None
    published_at: int
    recorded: int  # position in the log where the version was first recorded

    @property
    def order(self) -> tuple[int, int]:
        # The current version is the latest published; ties go to the one recorded last.
        return (self.published_at, self.recorded)


class Ordered(Protocol):
    """A version of a claim as any side holds it: when it was published, and ``order``, which
    is (published_at, where it was first recorded) or anything sorting the same way."""

    published_at: Any

    @property
    def order(self) -> tuple: ...


V = TypeVar("V", bound=Ordered)


def current(versions: Iterable[V], known_at: Any = None) -> V | None:
    """THE current-version rule, the one every side follows (the decider's "already says so",
    the importers' "still counts", the projector's counting spans, and the SQL that mirrors
    them, tested against this by property): of the versions published at or before
    ``known_at`` (None: all), the latest published; ties go to the one recorded last."""
    if known_at is not None:
        versions = (v for v in versions if v.published_at <= known_at)
    return max(versions, key=lambda v: v.order, default=None)


def counts(candidate: Candidate | None) -> bool:
    """Whether a current version is a figure (a retraction counts nothing)."""
    return candidate is not None and candidate.kind == "reported"


def counting_spans(versions: dict[int, Candidate]) -> dict[int, int | None]:
    """``current``'s rule laid out along the published clock, for the versions of one claim:
    version -> the published instant at which a later version takes over from it (``None``:
    none does). A version counts for every known-at from its own published_at up to that
    instant. Left out: retractions (while one is current the claim counts nothing) and versions
    that are never current (another is published at the same instant and recorded later)."""
    ordered = sorted(versions.items(), key=lambda item: item[1].order)
    spans = {}
    for at, (version, candidate) in enumerate(ordered, 1):
        until = ordered[at][1].published_at if at < len(ordered) else None
        if counts(candidate) and until != candidate.published_at:
            spans[version] = until
    return spans


Policy = Callable[[list[Candidate]], int]

POLICIES: dict[str, tuple[str, Policy]] = {
    "conservative": ("best = the smallest low any counting source gives (the default)",
                     lambda figures: min(f.low for f in figures)),
    "highest": ("best = the largest high any counting source gives",
                lambda figures: max(f.high for f in figures)),
    "latest": ("best = the best (else low) of the source that published most recently",
               lambda figures: _best_or_low(current(figures))),
}


def _best_or_low(figure: Candidate) -> int:
    return figure.best if figure.best is not None else figure.low


def combine(figures: list[Candidate], policy: str) -> tuple[int, int, int]:
    """An incident's (low, high, best) from the current figures of its counting sources."""
    return (min(f.low for f in figures), max(f.high for f in figures), POLICIES[policy][1](figures))
