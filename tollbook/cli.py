"""The ``tollbook`` command: thin wrappers over :class:`tollbook.api.Tollbook`.

Heavy modules (the store, pydantic) are imported only inside commands, so ``--help`` is quick.
Exit status: 0 success, 1 rejected input or a failed check, 2 usage error.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

GROUPINGS = ("incident", "country", "admin1", "admin2", "source", "perpetrator", "day", "month", "year")


class UserError(click.ClickException):
    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"tollbook: {self.message}", err=True)


_opened: list[str] = []  # the store this command opened: a store failing later is named with it


def _open(ctx: click.Context):
    from tollbook.api import DEFAULT_DB, Tollbook

    where = ctx.obj["db"] or DEFAULT_DB
    try:
        book = Tollbook(ctx.obj["db"], ctx.obj["editor"])
    except (ValueError, OSError, NotImplementedError) as error:
        raise UserError(f"--db {_shown(where)}: cannot open the store: {error}") from None
    _opened.append(where)
    ctx.call_on_close(book.close)
    return book


def _shown(db: str) -> str:
    """A store's URL without its password."""
    from urllib.parse import urlsplit

    parts = urlsplit(db)
    if parts.password is None:
        return db
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


def _store_failed(error: Exception) -> bool:
    """A store that fails mid-command (damaged, read-only, full, gone): one line, exit 2."""
    from tollbook.store.eventstore import unusable

    failure = unusable(error)
    if failure is None:
        return False
    where = f" {_shown(_opened[-1])}" if _opened else ""
    click.echo(f"tollbook: --db{where}: the store failed: {failure}", err=True)
    return True


def _run(call: Callable[[], Any]) -> Any:
    """Turns a mistake in what the user asked for into one line and exit 2."""
    try:
        return call()
    except ValueError as error:
        raise UserError(str(error)) from None


def _echo_json(answer: dict[str, Any]) -> None:
    """``--format json``: the bytes the HTTP API answers too (render.json_output)."""
    from tollbook.render import json_output

    click.echo(json_output(answer), nl=False)


def _now() -> str:
    from datetime import UTC, datetime

    from tollbook.domain.time import format_recorded

    return format_recorded(datetime.now(UTC))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--db", metavar="URL", help="The store: a SQLite file (default ./tollbook.db) or postgresql://… "
              "[env TOLLBOOK_DB]")
@click.option("--editor", metavar="NAME", help="Who records what you store [env TOLLBOOK_EDITOR; default: "
              "your login name]")
@click.version_option(package_name="tollbook")
@click.pass_context
def cli(ctx: click.Context, db: str | None, editor: str | None) -> None:
    """Tollbook: an event-sourced ledger of casualty claims.

    Every report, revision, correction, retraction and merge is kept; every answer can be
    asked as of any recorded instant (--as-of) and any published instant (--known-at).
    """
    ctx.obj = {"db": db or os.environ.get("TOLLBOOK_DB"), "editor": editor or os.environ.get("TOLLBOOK_EDITOR")}


@cli.command()
@click.argument("file", type=click.File("rb"))
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1),
              help="About how many events to save a transaction (default 25,000; a document is never split): "
                   "smaller holds the store's write lock for less time, larger is faster.")
@click.pass_context
def ingest(ctx: click.Context, file: Any, fmt: str, batch_size: int) -> None:
    """Store the JSON Lines documents in FILE ('-' for stdin).

    Each document is stored whole or not at all; a bad one is reported with its line and
    field and the rest are still taken. A document already stored is left alone.
    """
    from tollbook.commands.ingest import IngestStopped
    from tollbook.store.log import StoreDamaged

    book = _open(ctx)
    stopped = None
    try:
        result = book.ingest(file, **({"batch_events": batch_size} if batch_size else {}))
    except IngestStopped as error:  # a full disk: how far it got, and exit 1
        stopped, result = error, error.result
    except StoreDamaged as error:  # its log and tree disagree: nothing more is appended
        raise UserError(f"--db: {error}") from None
    for rejection in result.rejected:
        click.echo(str(rejection), err=True)
    if fmt == "json":
        # A full disk: the summary says how far it got, as the line on stderr does.
        _echo_json(result.as_json() | ({"stopped_after_line": result.stored_through} if stopped else {}))
    else:
        click.echo(f"accepted {result.accepted}, unchanged {result.unchanged}, rejected {len(result.rejected)}")
    if stopped is not None:
        click.echo(f"tollbook: --db {_shown(book.db)}: {stopped}", err=True)
    ctx.exit(1 if result.rejected or stopped else 0)


def _point_options(command: Callable) -> Callable:
    command = click.option("--known-at", metavar="V", help="Count only what was published by V (RFC 3339 or a date).")(command)
    return click.option("--as-of", metavar="R", help="Answer as the store stood at recorded instant R.")(command)


@cli.command()
@click.option("--measure", default="killed", show_default=True, help="What is counted.")
@click.option("--group", default="all", show_default=True, help="Whom or what it counts.")
@click.option("--by", type=click.Choice(GROUPINGS), default="incident", show_default=True)
@click.option("--incident", metavar="ID", help="Only this incident (a merged-away id answers for its canonical one).")
@_point_options
@click.option("--policy", default="conservative", show_default=True,
              help="How an incident's best figure is chosen: conservative, highest or latest.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.pass_context
def tally(ctx: click.Context, fmt: str, **options: Any) -> None:
    """Low / best / high per incident, or summed by place, time, source or perpetrator."""
    from tollbook import render

    answer = _run(lambda: _open(ctx).tally(**options))
    if fmt == "json":
        _echo_json(answer)
    else:
        click.echo(render.tally_csv(answer) if fmt == "csv" else render.tally_table(answer, _now()))


@cli.command()
@click.option("--incident", metavar="ID", help="Claims of this incident (and of those merged into it).")
@click.option("--source", help="Only this source's claims.")
@click.option("--measure", help="Only this measure.")
@click.option("--group", help="Only this group.")
@_point_options
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def history(ctx: click.Context, fmt: str, **options: Any) -> None:
    """Every version, retraction and correction of each claim, in recorded order."""
    from tollbook import render

    answer = _run(lambda: _open(ctx).history(**options))
    if fmt == "json":
        _echo_json(answer)
    else:
        click.echo(render.history_table(answer, _now()))


@cli.command()
@click.option("--from", "start", metavar="R1", required=True, help="Recorded instant before the changes.")
@click.option("--to", "end", metavar="R2", required=True, help="Recorded instant after them.")
@click.option("--known-at", metavar="V", help="Count only what was published by V.")
@click.option("--measure", default="killed", show_default=True)
@click.option("--group", default="all", show_default=True)
@click.option("--policy", default="conservative", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def diff(ctx: click.Context, start: str, end: str, fmt: str, **options: Any) -> None:
    """How the tallies changed between two recorded instants, and which entries changed them."""
    from tollbook import render

    answer = _run(lambda: _open(ctx).diff(start, end, **options))
    if fmt == "json":
        _echo_json(answer)
    else:
        click.echo(render.diff_table(answer))


_PROJECT_BATCH = click.option(
    "--batch-size", type=click.IntRange(min=1),
    help="Events applied a transaction (default 100,000): smaller holds the store's write lock for less time, "
         "larger is faster.")


@cli.command()
@_PROJECT_BATCH
@click.pass_context
def rebuild(ctx: click.Context, batch_size: int | None) -> None:
    """Drop every projection and rebuild it from the event log."""
    events = _open(ctx).rebuild(batch_size=batch_size)
    click.echo(f"rebuilt every projection from {events} events")


# -- import (CONTRACT section 7) ------------------------------------------------------------

@cli.group("import")
def import_group() -> None:
    """Import dataset releases: UCDP GED, ACLED exports and ACLED's deleted events.

    Each row becomes a report document stored like any other: importing the same file again
    stores nothing (and says so, without reading its rows); a later release adds versions only
    for figures that changed. A bad row is reported with its line and column and the rest are
    still imported (exit 1). Every completed import is recorded as a release, with the file's
    SHA-256 and its row counts: see tollbook releases.
    """


def _import_options(command: Callable) -> Callable:
    command = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                           show_default=True, help="json: the summary as a JSON object.")(command)
    command = click.option("--encoding", default="utf-8", show_default=True,
                           help="The file's text encoding (e.g. latin-1 for older ACLED exports).")(command)
    return click.argument("file", metavar="FILE")(command)


def _import(ctx: click.Context, file: str, fmt: str, run: Callable[[Any, Any], Any]) -> None:
    """Runs an import with a progress bar on a terminal, then prints the summary."""
    import contextlib

    book = _open(ctx)
    size = None
    if file != "-":
        if not os.path.exists(file):
            raise UserError(f"{file}: no such file")
        with contextlib.suppress(OSError):
            size = os.path.getsize(file)
    with contextlib.ExitStack() as stack:
        progress = stack.enter_context(_progress_bar(size)) if sys.stderr.isatty() else None
        from tollbook.commands.importers.common import ImportStopped
        from tollbook.store.eventstore import StoreFull
        from tollbook.store.log import StoreDamaged

        try:
            summary = _run(lambda: run(book, progress))
        except StoreFull as error:  # each row stored whole or not at all, as an ingest
            if isinstance(error, ImportStopped):  # how far it got
                _echo_json(error.summary.as_json()) if fmt == "json" else click.echo(error.summary.line())
            click.echo(f"tollbook: --db {_shown(book.db)}: {error}", err=True)
            ctx.exit(1)
        except StoreDamaged as error:  # its log and tree disagree: nothing more is appended
            raise UserError(f"--db: {error}") from None
    if fmt == "json":
        _echo_json(summary.as_json())
    else:
        for rejection in summary.rejected:
            click.echo(str(rejection), err=True)
        click.echo(summary.line())
    ctx.exit(1 if summary.rejected else 0)


@contextlib.contextmanager
def _progress_bar(size: int | None) -> Iterator[Callable[[int, int], None]]:
    """A bar on stderr (a terminal): rows read, rows/s and the time left (from the bytes read
    of ``size``; none for standard input). Yields the importers' progress callback."""
    import time

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    columns = (TextColumn("importing"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[rows]:,} rows  {task.fields[rate]:,.0f} rows/s"),
               TextColumn("time left"), TimeRemainingColumn())
    started = time.monotonic()
    with Progress(*columns, console=Console(file=sys.stderr), transient=False) as bar:
        task = bar.add_task("importing", total=size, rows=0, rate=0.0)

        def progress(done: int, rows: int) -> None:
            seconds = time.monotonic() - started
            bar.update(task, completed=min(done, size) if size else done, rows=rows,
                       rate=rows / seconds if seconds > 0 else 0.0)

        yield progress


@import_group.command("ucdp", short_help="A UCDP GED release CSV.")
@_import_options
@click.option("--release", required=True, metavar="NAME", help="The release, e.g. 19.1: the report is ucdp-ged-NAME.")
@click.option("--published-at", required=True, metavar="T", help="When UCDP published the release (RFC 3339 or a date).")
@click.option("--complete", is_flag=True, help="The file is the whole release: retract the claims of ucdp-ged: "
              "incidents absent from it.")
@click.pass_context
def import_ucdp(ctx: click.Context, file: str, fmt: str, encoding: str, release: str, published_at: str,
                complete: bool) -> None:
    """Import a UCDP GED release CSV (incidents ucdp-ged:<id>, source UCDP GED)."""
    _import(ctx, file, fmt, lambda book, progress: book.import_ucdp(
        file, release=release, published_at=published_at, complete=complete, encoding=encoding, progress=progress))


@import_group.command("acled", short_help="An ACLED export CSV.")
@_import_options
@click.option("--complete", is_flag=True, help="The file is the whole dataset: retract the claims of acled: "
              "incidents absent from it.")
@click.option("--published-at", metavar="T", help="With --complete: when the absent events were withdrawn "
              "[default: the file's latest row timestamp].")
@click.pass_context
def import_acled(ctx: click.Context, file: str, fmt: str, encoding: str, complete: bool,
                 published_at: str | None) -> None:
    """Import an ACLED export CSV (incidents acled:<event_id_cnty>, source ACLED)."""
    _import(ctx, file, fmt, lambda book, progress: book.import_acled(
        file, complete=complete, published_at=published_at, encoding=encoding, progress=progress))


@import_group.command("acled-deletions", short_help="ACLED's deleted-events list: retract their claims.")
@_import_options
@click.pass_context
def import_acled_deletions(ctx: click.Context, file: str, fmt: str, encoding: str) -> None:
    """Retract the ACLED claims of the events in ACLED's deleted-events list
    (columns event_id_cnty, deleted_timestamp: Unix seconds, a date or an RFC 3339 instant)."""
    _import(ctx, file, fmt, lambda book, progress: book.import_acled_deletions(
        file, encoding=encoding, progress=progress))


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def releases(ctx: click.Context, fmt: str) -> None:
    """Every imported release, in recorded order: its name, the file's SHA-256, the row counts,
    when it was published, and when and by whom it was recorded."""
    from tollbook import render

    answer = _open(ctx).releases()
    if fmt == "json":
        _echo_json(answer)
    else:
        click.echo(render.releases_table(answer))


# -- end of import ----------------------------------------------------------------------------


# -- project and status: following the log ----------------------------------------------------

@cli.command()
@click.option("--follow", is_flag=True, help="Keep every projection up to date as events arrive, until "
              "stopped (Ctrl-C or SIGTERM): LISTEN/NOTIFY on PostgreSQL, polling on SQLite.")
@click.option("--poll", type=click.FloatRange(min=0.05), default=0.5, show_default=True, metavar="SECONDS",
              help="With --follow on SQLite: how often to look for new events.")
@_PROJECT_BATCH
@click.pass_context
def project(ctx: click.Context, follow: bool, poll: float, batch_size: int | None) -> None:
    """Bring every projection up to date with the event log (--follow: and keep it so).

    Each batch is applied in one transaction with its position, so a process stopped anyhow
    resumes exactly where it stopped. Positions are logged on stderr. SIGINT or SIGTERM
    finishes the batch in hand and exits 0 (a second Ctrl-C abandons it, exit 130).
    """
    import signal
    import threading
    import time

    book = _open(ctx)
    stop = threading.Event()

    def log(message: str) -> None:
        click.echo(f"tollbook project: {_now()} {message}", err=True)

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not stop.is_set():
            log(f"{signal.Signals(signum).name}: stopping after the batch in hand")
        stop.set()

    def on_progress(step: dict[str, Any]) -> None:
        log(f"position {step['position']} of {step['head']} (+{step['events']} events in {step['seconds']:.2f} s)")

    def on_error(error: Exception) -> None:
        log(f"the store failed, retrying: {' '.join(str(error).split())}")

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    started = time.perf_counter()
    positions = book.projector.positions()
    log(f"{'following' if follow else 'catching up'} from position {min(positions.values(), default=0)}, "
        f"head {book.store.head()[0]}")
    events = book.project(follow=follow, stop=stop, on_progress=on_progress, on_error=on_error, poll=poll,
                          batch_size=batch_size)
    position = min(book.projector.positions().values(), default=0)
    if follow or stop.is_set():
        log(f"stopped at position {position} ({events} events in {time.perf_counter() - started:.1f} s)")
    click.echo(f"projected {events} events; every projection is at position {position}")


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def status(ctx: click.Context, fmt: str) -> None:
    """The event log's head, and each projection's position and lag (events not yet applied)."""
    from tollbook import render

    answer = _open(ctx).status()
    if fmt == "json":
        _echo_json(answer)
    else:
        click.echo(render.status_table(answer))
        last = answer.get("checkpoint")
        click.echo(f"last checkpoint: size {last['size']}, root {last['root']}, key {last['key']}, signed at"
                   f" {last['recorded_at']} by {last['recorded_by']}" if last else "last checkpoint: none")


# -- end of project and status ----------------------------------------------------------------


# -- tamper evidence (CONTRACT section 8) -----------------------------------------------------

def _read(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{what}: cannot read {path}: {getattr(error, 'strerror', None) or error}") from None


def _failed(message: str, command: str) -> None:
    click.echo(f"tollbook: {command}: {message}", err=True)
    sys.exit(1)


@cli.command("log")
@click.option("--after", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
              help="Start after position N.")
@click.option("--limit", type=click.IntRange(min=0), metavar="K", help="At most K events.")
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.pass_context
def log_command(ctx: click.Context, after: int, limit: int | None, fmt: str) -> None:
    """Every stored event in log order, one JSON object a line: its position, its leaf hash in
    the log's Merkle tree and the event (the README says how to recompute the leaf)."""
    from tollbook.render import jsonl_line

    out = sys.stdout.buffer
    for line in _open(ctx).log(after, limit):
        out.write(jsonl_line(line))  # as /api/log streams it
    out.flush()


@cli.command()
@click.option("--out", "out", required=True, metavar="FILE", help="Where the signing key goes (mode 0600); "
              "the verifier key goes to FILE.pub.")
@click.option("--name", default="tollbook", show_default=True, help="The key's name (in every signature line).")
def keygen(out: str, name: str) -> None:
    """Make an Ed25519 signing key for checkpoints; prints its verifier key."""
    from tollbook.store.note import NoteError, Signer

    try:
        signer = Signer.generate(name)
    except NoteError as error:
        raise UserError(f"--name: {error}") from None
    try:
        descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(signer.text() + "\n")
        with open(out + ".pub", "w") as file:
            file.write(signer.verifier.text() + "\n")
    except OSError as error:
        raise UserError(f"--out: cannot write {error.filename}: {error.strerror}") from None
    click.echo(signer.verifier.text())


@cli.command()
@click.option("--key", required=True, metavar="FILE", help="The signing key keygen wrote.")
@click.option("--origin", metavar="NAME", help="The log's name in the checkpoint [default: tollbook/<store id>].")
@click.option("--out", metavar="FILE", help="Also write the checkpoint to FILE.")
@click.pass_context
def checkpoint(ctx: click.Context, key: str, origin: str | None, out: str | None) -> None:
    """Sign the log's current size and root (a C2SP tlog-checkpoint note) and print it; the
    store keeps each checkpoint it signed."""
    from tollbook.store.log import StoreDamaged

    try:
        note = _run(lambda: _open(ctx).checkpoint(_read(key, "--key"), origin))
    except StoreDamaged as error:
        _failed(str(error), "checkpoint")
    if out:
        try:
            with open(out, "w", encoding="utf-8") as file:
                file.write(note)
        except OSError as error:
            raise UserError(f"--out: cannot write {out}: {error.strerror}") from None
    click.echo(note, nl=False)


def _keys(public_keys: tuple[str, ...]) -> list[str]:
    return [_read(path, "--public-key") for path in public_keys]


@cli.command()
@click.option("--checkpoint", "checkpoints", multiple=True, metavar="FILE",
              help="A checkpoint the log must still extend (repeatable).")
@click.option("--public-key", "public_keys", multiple=True, metavar="FILE",
              help="A verifier key (FILE.pub of keygen) that signs the checkpoints (repeatable).")
@click.pass_context
def verify(ctx: click.Context, checkpoints: tuple[str, ...], public_keys: tuple[str, ...]) -> None:
    """Recompute every leaf and the Merkle tree from the stored events and check them against
    the store; prove each checkpoint consistent with today's log."""
    from tollbook.store.audit import Failed
    from tollbook.store.log import StoreDamaged

    if checkpoints and not public_keys:
        raise UserError("--checkpoint: needs --public-key to check its signature")
    notes = [(path, _read(path, "--checkpoint")) for path in checkpoints]
    book = _open(ctx)
    try:
        events, root = _run(lambda: book.verify(notes, _keys(public_keys)))
    except (Failed, StoreDamaged) as error:
        _failed(str(error), "verify")
    click.echo(f"verified {events} events, root {root}")


@cli.command()
@click.option("--incident", required=True, metavar="ID", help="The incident whose claims are proved.")
@click.option("--source", help="Only this source's claims.")
@click.option("--measure", help="Only this measure.")
@click.option("--group", help="Only this group.")
@click.option("--checkpoint", "checkpoint_file", required=True, metavar="FILE",
              help="The signed checkpoint the proofs lead to.")
@click.option("--out", "out", required=True, metavar="BUNDLE", help="Where the proof bundle (JSON) goes.")
@click.pass_context
def prove(ctx: click.Context, incident: str, source: str | None, measure: str | None, group: str | None,
          checkpoint_file: str, out: str) -> None:
    """Write a self-contained proof of an incident's claims: their stored events, history and
    an inclusion proof of each event against the checkpoint."""
    from tollbook.render import json_output
    from tollbook.store.log import StoreDamaged

    note = _read(checkpoint_file, "--checkpoint")
    try:
        bundle = _run(lambda: _open(ctx).prove(incident=incident, source=source, measure=measure, group=group,
                                               checkpoint=note))
    except StoreDamaged as error:
        _failed(str(error), "prove")
    try:
        with open(out, "wb") as file:
            file.write(json_output(bundle))
    except OSError as error:
        raise UserError(f"--out: cannot write {out}: {error.strerror}") from None
    click.echo(f"wrote {out}: {len(bundle['events'])} events, {len(bundle['history']['claims'])} claims,"
               f" proved against checkpoint size {bundle['checkpoint'].split(chr(10))[1]}")


@cli.command("verify-proof")
@click.argument("bundle", metavar="BUNDLE")
@click.option("--public-key", "public_keys", multiple=True, required=True, metavar="FILE",
              help="The verifier key that signs the bundle's checkpoint (repeatable).")
def verify_proof(bundle: str, public_keys: tuple[str, ...]) -> None:
    """Check a proof bundle with no store: the checkpoint's signature, every event's leaf and
    inclusion proof, and that the history follows from the events; print that history."""
    import orjson

    from tollbook import render
    from tollbook.api import parse_verifiers
    from tollbook.store.audit import Failed, b64, verify_bundle

    text = _read(bundle, "BUNDLE")
    verifiers = _run(lambda: parse_verifiers(_keys(public_keys)))
    try:
        cp, history, events = verify_bundle(orjson.loads(text), verifiers)
    except orjson.JSONDecodeError as error:
        _failed(f"{bundle} is not JSON: {error}", "verify-proof")
    except Failed as error:
        _failed(str(error), "verify-proof")
    click.echo(f"proved {events} events against checkpoint {cp.origin} size {cp.size} root {b64(cp.root)}")
    click.echo(render.history_table(history, _now()))


# -- end of tamper evidence ---------------------------------------------------------------------


# -- token and serve: the HTTP API and the web pages (CONTRACT section 9) ----------------------

@cli.group("token")
def token_group() -> None:
    """Tokens for the HTTP API: a name (stored as recorded_by of what it writes) and a role.

    The store keeps only a hash of each token; a team on PostgreSQL shares them.
    """


def _tokens(ctx: click.Context) -> Any:
    book = _open(ctx)
    try:
        return book.tokens()
    except (ValueError, OSError) as error:
        raise UserError(f"--db: cannot keep tokens in the store: {error}") from None


def _token_run(call: Callable[[], Any]) -> Any:
    """A token command the store refuses (a name taken or unknown) is one line and exit 1."""
    from tollbook.store.tokens import TokenError

    try:
        return call()
    except TokenError as error:
        click.echo(f"tollbook: {error}", err=True)
        sys.exit(1)


@token_group.command("create")
@click.argument("name")
@click.option("--role", metavar="reader|editor", required=True, help="reader: may read; editor: may also write.")
@click.pass_context
def token_create(ctx: click.Context, name: str, role: str) -> None:
    """Make a token for NAME and print it (once: the store keeps only its hash)."""
    from tollbook.store.tokens import ROLES

    if role not in ROLES:
        raise UserError(f"--role: must be one of {', '.join(ROLES)}, not {role!r}")
    tokens = _tokens(ctx)
    click.echo(_token_run(lambda: tokens.create(name, role)))


@token_group.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def token_list(ctx: click.Context, fmt: str) -> None:
    """Every token's name, role, when it was made and last used, and whether it is revoked."""
    from tollbook import render

    answer = render.tokens_json(_tokens(ctx).list())
    if fmt == "json":
        _echo_json(answer)
    else:
        click.echo(render.tokens_table(answer))


@token_group.command("revoke")
@click.argument("name")
@click.pass_context
def token_revoke(ctx: click.Context, name: str) -> None:
    """Revoke NAME's token: a server refuses it from its next request on."""
    tokens = _tokens(ctx)
    _token_run(lambda: tokens.revoke(name))
    click.echo(f"revoked {name}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Where to listen (behind a TLS proxy for others).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option("--public", is_flag=True, help="Anyone may read without a token (writing still needs an editor's).")
@click.option("--poll", type=click.FloatRange(min=0.05), default=0.2, show_default=True, metavar="SECONDS",
              help="On SQLite: how often the server looks for events other writers appended.")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, public: bool, poll: float) -> None:
    """Serve the store over HTTP: the JSON API (/api/…, /openapi.json) and the web pages.

    A follower inside the server keeps the projections current as other writers append.
    """
    from tollbook import server

    book = _open(ctx)
    try:
        server.serve(book, host=host, port=port, public=public, poll=poll)
    except OSError as error:
        raise UserError(f"--host/--port: cannot listen on {host}:{port}: {error.strerror or error}") from None


# -- end of token and serve -------------------------------------------------------------------


def main() -> None:
    """Runs the command; every error is one line on stderr (click's usage block is left out)."""
    try:
        try:
            code = cli.main(prog_name="tollbook", standalone_mode=False)
        except Exception as error:
            if isinstance(error, click.ClickException) or not _store_failed(error):
                raise
            sys.exit(2)
    except click.exceptions.UsageError as error:
        hint = f" (see tollbook {error.ctx.command_path.partition(' ')[2]} --help)".replace("  ", " ") if error.ctx else ""
        click.echo(f"tollbook: {error.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Abort:
        click.echo("tollbook: aborted", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("tollbook: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
