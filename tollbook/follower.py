"""A projector in a process of its own beside a long import or ingest: the second core.

While an import decides and stores its rows (one core), this process projects the events as
they are committed, so the first query after the import finds little left to catch up. It is
one more projector on the store, as ``tollbook project --follow`` is: it works each batch out
without the write lock and writes it under the lock only if no other process projected since
(projections/projector.py), so the import is not held up and nothing is applied twice.

It also loads, for the import, the states its next rows read (:class:`Loading`, the
``Loader`` of commands/ingest.py) while the import decides the rows before them: a next
release's rows read their stored incident and claims, which was two fifths of its time.

It follows the log until its parent closes its standard input (the import is written, or its
parent is gone), then catches up with the last of it and exits; the parent waits for that. It
prints nothing else: if it fails, the parent loads the states itself, its own catch-up
projects what the follower left, and it reports a store that fails.
"""

from __future__ import annotations

import os
import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from typing import IO, Any
from uuid import UUID

# An import of a smaller file is over before a second interpreter has started and caught up.
ALONGSIDE_BYTES = 4 << 20


@contextmanager
def projecting_alongside(db: str, size: int) -> Iterator[Loading | None]:
    """Runs the follower beside what the block does, if ``size`` (the input's bytes) is worth
    it; the block gets its :class:`Loading` (None without a follower)."""
    if size < ALONGSIDE_BYTES:
        yield None
        return
    try:
        process = subprocess.Popen([sys.executable, "-m", "tollbook.follower"], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   env={**os.environ, "TOLLBOOK_DB": db})
    except OSError:  # no process to be had: the import's own catch-up does it all
        yield None
        return
    assert process.stdin is not None and process.stdout is not None
    try:
        yield Loading(process.stdin, process.stdout)
    finally:
        # Both ends closed: a follower still writing an answer nobody reads gets a broken pipe.
        for stream in (process.stdin, process.stdout):
            with suppress(OSError):
                stream.close()
        try:
            process.wait(timeout=300)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _send(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(len(data).to_bytes(8, "big") + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    """The next message; EOFError once the other side is gone."""
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError
    length = int.from_bytes(head, "big")
    data = stream.read(length)
    if len(data) < length:
        raise EOFError
    return pickle.loads(data)  # noqa: S301 (from this process's own child)


class Loading:
    """The import's side of the loads (commands/ingest.py's ``Loader``): each request is sent at
    once and answered in order. Once the follower fails, every answer is None (the import
    loads the states itself)."""

    def __init__(self, requests: IO[bytes], answers: IO[bytes]):
        self._requests, self._answers = requests, answers
        self._broken = False

    def request(self, everything: list[list[tuple[UUID, Callable]]]) -> Callable[[], list[Any] | None]:
        expected = sum(map(len, everything))
        if not self._broken:
            try:
                _send(self._requests, everything)
            except (OSError, ValueError, pickle.PickleError):
                self._broken = True
        return lambda: self._answer(expected)

    def _answer(self, expected: int) -> list[Any] | None:
        if self._broken:
            return None
        try:
            found = _receive(self._answers)
        except Exception:  # gone, or what it sent cannot be read: this process loads
            found = None
        if not isinstance(found, list) or len(found) != expected:
            self._broken = True
            return None
        return found


def _serve(requests: queue.Queue, answers: IO[bytes]) -> None:
    """The loads, in a thread of the follower's: each request's states, in the order asked."""
    from tollbook.commands.ingest import States
    from tollbook.store.eventstore import open_store

    try:
        with answers, closing(open_store(os.environ["TOLLBOOK_DB"])) as store:  # its own connections
            while (everything := requests.get()) is not None:
                states = States(store, sys.maxsize)
                states.load_reads(everything)
                _send(answers, states.loaded(everything))
    except BaseException:  # the answers' end is closed: the import loads what it asked itself
        return


def main() -> None:
    stop = threading.Event()
    requests: queue.Queue = queue.Queue()
    # The answers go out on a copy of standard output; nothing else can write to it.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)

    def read() -> None:  # drains standard input at once, so the parent never waits to send
        with suppress(BaseException):
            while True:
                requests.put(_receive(sys.stdin.buffer))
        stop.set()  # the parent closed it, or is gone
        requests.put(None)

    threading.Thread(target=read, daemon=True).start()
    threading.Thread(target=_serve, args=(requests, answers), daemon=True).start()
    try:
        from tollbook.api import Tollbook
        from tollbook.store.memory import without_cycle_collection

        with Tollbook(os.environ["TOLLBOOK_DB"]) as book, without_cycle_collection():
            # A small page cache: its memory is the import's besides its own. The import lets go
            # of the write lock for a moment once a batch: asked for every 2 ms, the lock is had
            # in most of them, and a piece (read) longer than an import's batch keeps up with it.
            # A piece another projector wrote first (another ingest's follower) is worked out
            # again under the lock: a batch no longer than a piece holds it no longer.
            book.store.write_cache_kib = 16_384
            book.store.lock_polling = True
            book.projector.read = book.projector.batch = 20_000
            book.projector.follow(stop, poll=0.2)
            book.projector.catch_up()  # what the import wrote last: its first query finds it done
    except BaseException:  # the parent's catch-up reports what failed
        sys.exit(1)


if __name__ == "__main__":
    main()
