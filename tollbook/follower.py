"""A projector in a process of its own beside a long import: the second core.

While an import decides and stores its rows (one core), this process projects the events as
they are committed, so the first query after the import finds little left to catch up. It is
one more projector on the store, as ``tollbook project --follow`` is: it works each batch out
without the write lock and writes it under the lock only if no other process projected since
(projections/projector.py), so the import is not held up and nothing is applied twice.

It follows the log until its parent closes its standard input (the import is written, or its
parent is gone), then catches up with the last of it and exits; the parent waits for that. It
prints nothing: if it fails, the parent's own catch-up projects what it left, and reports a
store that fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# An import of a smaller file is over before a second interpreter has started and caught up.
ALONGSIDE_BYTES = 4 << 20


@contextmanager
def projecting_alongside(db: str, size: int) -> Iterator[None]:
    """Runs the follower beside what the block does, if ``size`` (the input's bytes) is worth it."""
    if size < ALONGSIDE_BYTES:
        yield
        return
    try:
        process = subprocess.Popen([sys.executable, "-m", "tollbook.follower"], stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env={**os.environ, "TOLLBOOK_DB": db})
    except OSError:  # no process to be had: the import's own catch-up does it all
        yield
        return
    try:
        yield
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=300)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    stop = threading.Event()

    def watch() -> None:
        sys.stdin.buffer.read()  # until the parent closes it, or is gone
        stop.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        from tollbook.api import Tollbook
        from tollbook.store.memory import without_cycle_collection

        with Tollbook(os.environ["TOLLBOOK_DB"]) as book, without_cycle_collection():
            # Small batches and a small page cache: its memory is the import's besides its own.
            book.store.write_cache_kib = 16_384
            book.projector.read = 10_000
            book.projector.follow(stop, poll=0.2)
            book.projector.catch_up()  # what the import wrote last: its first query finds it done
    except BaseException:  # the parent's catch-up reports what failed
        sys.exit(1)


if __name__ == "__main__":
    main()
