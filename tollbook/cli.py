"""The ``tollbook`` command: thin wrappers over :class:`tollbook.api.Tollbook`.

Heavy modules (the store, pydantic) are imported only inside commands, so ``--help`` is quick.
Exit status: 0 success, 1 rejected input or a failed check, 2 usage error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

GROUPINGS = ("incident", "country", "admin1", "admin2", "source", "perpetrator", "day", "month", "year")


class UserError(click.ClickException):
    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"tollbook: {self.message}", err=True)


def _open(ctx: click.Context):
    from tollbook.api import Tollbook

    try:
        book = Tollbook(ctx.obj["db"], ctx.obj["editor"])
    except (ValueError, OSError, NotImplementedError) as error:
        raise UserError(f"--db: cannot open the store: {error}") from None
    ctx.call_on_close(book.close)
    return book


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

    from tollbook.domain.time import format_instant

    return format_instant(datetime.now(UTC))


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
    book = _open(ctx)
    result = book.ingest(file, **({"batch_events": batch_size} if batch_size else {}))
    if fmt == "json":
        _echo_json(result.as_json())
    else:
        for rejection in result.rejected:
            click.echo(str(rejection), err=True)
        click.echo(f"accepted {result.accepted}, unchanged {result.unchanged}, rejected {len(result.rejected)}")
    ctx.exit(1 if result.rejected else 0)


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
    stores nothing; a later release adds versions only for figures that changed. A bad row is
    reported with its line and column and the rest are still imported (exit 1).
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
        progress = None
        if size and sys.stderr.isatty():
            bar = stack.enter_context(click.progressbar(length=size, label="importing", file=sys.stderr,
                                                        show_percent=True, show_eta=True))
            seen = [0]

            def progress(done: int) -> None:
                bar.update(max(0, min(done, size) - seen[0]))
                seen[0] = max(seen[0], min(done, size))

        summary = _run(lambda: run(book, progress))
    if fmt == "json":
        from tollbook.render import as_json

        click.echo(as_json(summary.as_json()))
    else:
        for rejection in summary.rejected:
            click.echo(str(rejection), err=True)
        click.echo(summary.line())
    ctx.exit(1 if summary.rejected else 0)


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
    (columns event_id_cnty, deleted_timestamp in Unix seconds)."""
    _import(ctx, file, fmt, lambda book, progress: book.import_acled_deletions(
        file, encoding=encoding, progress=progress))


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


# -- end of project and status ----------------------------------------------------------------


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
        code = cli.main(prog_name="tollbook", standalone_mode=False)
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
