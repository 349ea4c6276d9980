"""Python's cycle collector, paused while Tollbook works through many objects.

Ingest, projection and queries make no reference cycles: reference counting frees everything
they drop. What they hold for a while (caches of aggregates, rows of a batch, one figure per
claim of a tally) is made of many small containers, and the collector would walk all of them
again each time enough new ones were made: a third of a bulk ingest's time, half of a tally over
a million figures.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

# The collector's switch is process-wide: in a threaded server one request would turn it back
# on under another's feet, and under steady load it could stay off for good. A server calls
# :func:`never_pause` once; a command runs one thing at a time and keeps the pause.
_pausing = True


def never_pause() -> None:
    """From now on, nothing in this process pauses the cycle collector."""
    global _pausing
    _pausing = False


@contextmanager
def without_cycle_collection() -> Iterator[None]:
    if not _pausing:
        yield
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def no_cycle_collection(function: F) -> F:
    """``function`` runs with the cycle collector paused."""

    @wraps(function)
    def paused(*args: Any, **kwargs: Any) -> Any:
        with without_cycle_collection():
            return function(*args, **kwargs)

    return paused  # type: ignore[return-value]
