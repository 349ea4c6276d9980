"""``tollbook serve``: the JSON API and the web pages over one store (CONTRACT section 9).

Every endpoint is a thin view: it checks who is asking, calls :class:`tollbook.api.Tollbook`
and renders its answer, the JSON API through :func:`tollbook.render.json_output` (the bytes
``--format json`` prints). A follower thread keeps the projections current as other writers
append; requests read them as they stand (``refresh_on_read=False``), waiting only when the
follower is a few events behind, so no reader waits on a large catch-up.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from tollbook import render
from tollbook.api import Tollbook
from tollbook.projections.queries import GROUPINGS
from tollbook.store.memory import never_pause
from tollbook.store.tokens import Identity, Tokens

HERE = Path(__file__).parent
log = logging.getLogger("tollbook.serve")

# A reader waits for the follower only when it is this few events behind the log's head.
NEAR = 5_000
NEAR_WAIT = 5.0  # seconds; then the answer is what the projections hold
WRITE_WAIT = 30.0  # after a write, the writer waits this long to read it back
BODY_LIMIT = 64 << 20  # bytes of a POST /api/documents (the body is held in memory)
SESSION_COOKIE = "tollbook_session"
SESSION_HOURS = 12
PAGE_ROWS = 500  # rows of a tally a web page shows (the JSON API answers all)


class Refused(Exception):
    """An answer other than 200: its status and one line saying why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": " ".join(message.split())}, option=orjson.OPT_APPEND_NEWLINE)


def json_answer(answer: dict[str, Any], status: int = 200) -> Response:
    return Response(render.json_output(answer), status_code=status, media_type="application/json")


# -- following the log ----------------------------------------------------------------------

class Follower:
    """A thread with its own book that keeps every projection current (``project --follow``)."""

    def __init__(self, book: Tollbook, poll: float):
        self.book = book
        self.poll = poll
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="tollbook-follower", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        def on_progress(step: dict[str, Any]) -> None:
            log.info("follower: position %s of %s (+%s events in %.2f s)", step["position"], step["head"],
                     step["events"], step["seconds"])

        def on_error(error: Exception) -> None:
            log.warning("follower: the store failed, retrying: %s", " ".join(str(error).split()))

        while not self.stop.is_set():
            try:
                self.book.project(follow=True, stop=self.stop, on_progress=on_progress, on_error=on_error,
                                  poll=self.poll)
            except Exception as error:  # a follower must outlive any one failure
                on_error(error)
                self.stop.wait(1.0)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


# -- who is asking: tokens and browser sessions ---------------------------------------------

@dataclass
class Session:
    key: str  # the token's key: its row is looked up again on every request (revocation is at once)
    csrf: str
    expires: float


@dataclass
class Sessions:
    """Signed-in browsers: the cookie holds a random session id; only its hash is kept here."""

    kept: dict[str, Session] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def _id(cookie: str) -> str:
        return hashlib.sha256(cookie.encode("utf-8", "surrogatepass")).hexdigest()

    def open(self, key: str) -> tuple[str, Session]:
        cookie = secrets.token_urlsafe(32)
        session = Session(key, secrets.token_urlsafe(32), time.time() + SESSION_HOURS * 3600)
        with self.lock:
            now = time.time()
            self.kept = {k: s for k, s in self.kept.items() if s.expires > now}
            self.kept[self._id(cookie)] = session
        return cookie, session

    def find(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        with self.lock:
            session = self.kept.get(self._id(cookie))
        return session if session is not None and session.expires > time.time() else None

    def close(self, cookie: str | None) -> None:
        if cookie:
            with self.lock:
                self.kept.pop(self._id(cookie), None)


@dataclass
class Caller:
    """Who a request is: a token's identity (None when reading a public server), and the
    browser session it came through, if any."""

    identity: Identity | None
    session: Session | None = None

    @property
    def may_write(self) -> bool:
        return self.identity is not None and self.identity.may_write


# -- the application ----------------------------------------------------------------------

class Server:
    def __init__(self, db: str, *, public: bool = False, poll: float = 0.2, follow: bool = True):
        never_pause()  # the cycle collector's switch is process-wide: not for a threaded server
        self.db = db
        self.public = public
        self.book = Tollbook(db, refresh_on_read=False)
        self.tokens: Tokens = self.book.tokens()
        self.sessions = Sessions()
        self.follower = Follower(Tollbook(db), poll) if follow else None
        self._touching = threading.Lock()

    def close(self) -> None:
        if self.follower is not None:
            self.follower.close()
            self.follower.book.close()
        self.book.close()

    # -- freshness ---------------------------------------------------------------------

    def _behind(self) -> int:
        head = self.book.store.recorder.max_notification_id() or 0
        return head - min(self.book.projector.positions().values(), default=0)

    def current(self, wait: float = NEAR_WAIT, near: float = NEAR) -> None:
        """Waits (up to ``wait`` seconds) for the follower to reach the log's head, unless it
        is more than ``near`` events behind: then the projections answer as they stand."""
        deadline = time.monotonic() + wait
        behind = self._behind()
        while 0 < behind <= near and time.monotonic() < deadline:
            time.sleep(0.01)
            behind = self._behind()

    # -- identities ----------------------------------------------------------------------

    def identify(self, request: Request, bearer: HTTPAuthorizationCredentials | None,
                 *, cookies: bool = True) -> Caller | None:
        """The caller of a request, or None if it presents nothing; a token or a session
        that is unknown, revoked or expired is refused (401)."""
        if bearer is not None:
            identity = self.tokens.identify(bearer.credentials)
            if identity is None:
                raise Refused(401, "the token is unknown or revoked")
            self._touch(identity)
            return Caller(identity)
        header = request.headers.get("authorization")
        if header is not None:
            raise Refused(401, "the Authorization header must be: Bearer TOKEN")
        if cookies:
            session = self.sessions.find(request.cookies.get(SESSION_COOKIE))
            if session is not None:
                identity = self.tokens.by_key(session.key)
                if identity is None:
                    self.sessions.close(request.cookies.get(SESSION_COOKIE))
                    raise Refused(401, "the token this browser signed in with was revoked; sign in again")
                self._touch(identity)
                return Caller(identity, session)
        return None

    def _touch(self, identity: Identity) -> None:
        # last_used_at is a write: it must never hold up a reader (the follower may hold the
        # store's write lock), so it is done beside the request, at most one at a time.
        if not self._touching.acquire(blocking=False):
            return

        def touch() -> None:
            try:
                self.tokens.touch(identity)
            except Exception as error:
                log.warning("could not note a token's last use: %s", " ".join(str(error).split()))
            finally:
                self._touching.release()

        threading.Thread(target=touch, name="tollbook-touch", daemon=True).start()

    def reader(self, request: Request, bearer: HTTPAuthorizationCredentials | None, *, cookies: bool = True) -> Caller:
        caller = self.identify(request, bearer, cookies=cookies)
        if caller is None:
            if self.public:
                return Caller(None)
            raise Refused(401, "this server needs a token: Authorization: Bearer TOKEN")
        return caller

    def editor(self, request: Request, bearer: HTTPAuthorizationCredentials | None, *, cookies: bool) -> Caller:
        caller = self.identify(request, bearer, cookies=cookies)
        if caller is None:
            raise Refused(401, "writing needs an editor's token: Authorization: Bearer TOKEN")
        if not caller.may_write:
            raise Refused(403, f"the token {caller.identity.name!r} is a reader's; writing needs an editor's")
        return caller

    # -- writing -------------------------------------------------------------------------

    def ingest(self, documents: list[str], editor: str) -> dict[str, Any]:
        """Stores the documents as ``editor`` (the token's name), then waits until the
        projections hold them, so the writer reads back what it wrote."""
        refused = {}
        for number, text in enumerate(documents, 1):
            problem = _sets_recorded_by(text)
            if problem:
                refused[number] = problem
                documents[number - 1] = ""
        with Tollbook(self.db, editor=editor) as book:
            result = book.ingest(documents)
        summary = result.as_json()
        if refused:
            summary["rejected"] = sorted(summary["rejected"] + [{"line": n, "error": e}
                                                                for n, e in refused.items()],
                                         key=lambda r: r["line"])
        if summary["accepted"]:
            self.current(wait=WRITE_WAIT, near=float("inf"))
        return summary


def _sets_recorded_by(text: str) -> str | None:
    """Why a document may not be stored over HTTP: it names who recorded it."""
    try:
        document = orjson.loads(text) if text.strip() else None
    except orjson.JSONDecodeError:
        return None  # ingest names the problem
    if not isinstance(document, dict):
        return None
    incidents = document.get("incidents")
    parts = [document, *(i for i in incidents if isinstance(i, dict))] if isinstance(incidents, list) else [document]
    if any("recorded_by" in part for part in parts):
        return "recorded_by: is the token's name; a document cannot set it"
    return None


def split_body(body: bytes, content_type: str) -> list[str]:
    """A POST body as documents: JSON Lines, or a JSON array (each element's own text, so
    ingest checks it as it checks a line: element N is "line N")."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Refused(400, f"the body is not UTF-8 (byte {error.start})") from None
    media = content_type.split(";")[0].strip().lower()
    if media in ("application/x-ndjson", "application/jsonl", "application/json-lines", "text/plain", ""):
        lines = text.split("\n")
        return [line.removesuffix("\r") for line in lines]
    if media != "application/json":
        raise Refused(400, f"Content-Type: {media} is neither application/x-ndjson nor application/json")
    decoder = json.JSONDecoder()
    at = _skip_space(text, 0)
    if at >= len(text) or text[at] != "[":
        raise Refused(400, "an application/json body must be a JSON array of documents")
    at = _skip_space(text, at + 1)
    elements: list[str] = []
    if at < len(text) and text[at] == "]":
        at += 1
    else:
        while True:
            try:
                _, end = decoder.raw_decode(text, at)
            except (ValueError, RecursionError) as error:
                raise Refused(400, f"the JSON array: element {len(elements) + 1}: malformed JSON: "
                                   f"{getattr(error, 'msg', 'nested too deeply')}") from None
            elements.append(text[at:end])
            at = _skip_space(text, end)
            if at < len(text) and text[at] == ",":
                at = _skip_space(text, at + 1)
                continue
            if at < len(text) and text[at] == "]":
                at += 1
                break
            raise Refused(400, f"the JSON array: expected ',' or ']' after element {len(elements)}")
    if _skip_space(text, at) != len(text):
        raise Refused(400, "the JSON array: text after its closing ']'")
    return elements


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\r\n":
        at += 1
    return at


def _only(request: Request, allowed: set[str]) -> dict[str, str]:
    """The query's parameters, each given once, none unknown, none holding a NUL."""
    params: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            raise Refused(400, f"{name}: unknown parameter (known: {', '.join(sorted(allowed))})")
        if name in params:
            raise Refused(400, f"{name}: given more than once")
        if "\x00" in value:
            raise Refused(400, f"{name}: must not hold a NUL character")
        params[name] = value
    return params


def _text(params: dict[str, str], name: str, default: str | None = None) -> str | None:
    value = params.get(name)
    return default if value is None or value == "" else value


TALLY_PARAMS = {"measure", "group", "by", "incident", "as_of", "known_at", "policy"}
HISTORY_PARAMS = {"incident", "source", "measure", "group", "as_of", "known_at"}
DIFF_PARAMS = {"from", "to", "known_at", "measure", "group", "policy"}


def tally_options(params: dict[str, str]) -> dict[str, Any]:
    by = _text(params, "by", "incident")
    if by not in GROUPINGS:
        raise Refused(400, f"by: must be one of {', '.join(GROUPINGS)}")
    return {"measure": _text(params, "measure", "killed"), "group": _text(params, "group", "all"), "by": by,
            "incident": _text(params, "incident"), "as_of": _text(params, "as_of"),
            "known_at": _text(params, "known_at"), "policy": _text(params, "policy", "conservative")}


def history_options(params: dict[str, str]) -> dict[str, Any]:
    return {name: _text(params, name) for name in HISTORY_PARAMS}


def diff_options(params: dict[str, str]) -> tuple[str, str, dict[str, Any]]:
    for name in ("from", "to"):
        if _text(params, name) is None:
            raise Refused(400, f"{name}: is required (a recorded instant, RFC 3339)")
    return params["from"], params["to"], {"known_at": _text(params, "known_at"),
                                          "measure": _text(params, "measure", "killed"),
                                          "group": _text(params, "group", "all"),
                                          "policy": _text(params, "policy", "conservative")}


def asked(call: Callable[[], Any]) -> Any:
    """A question the API finds wrong (a bad instant, policy, grouping) is a 400."""
    try:
        return call()
    except ValueError as error:
        # the CLI's option names (--as-of) as the query parameters they are here (as_of)
        raise Refused(400, re.sub(r"--([a-z-]+)", lambda m: m.group(1).replace("-", "_"), str(error))) from None


# -- the incident page's charts ---------------------------------------------------------------

def _shown(figures: dict[str, Any] | None) -> dict[str, Any]:
    if figures is None or figures.get("low") is None:
        return {"low": None, "high": None, "best": None, "line": None}
    line = figures["best"] if figures.get("best") is not None else figures["low"]
    return {"low": figures["low"], "high": figures["high"], "best": figures["best"], "line": line}


def claim_series(claim: dict[str, Any], label: str) -> dict[str, list[dict[str, Any]]]:
    """One claim's figure over published time (each version as it now stands, corrections
    applied) and over recorded time (what the claim's current figure was after each entry),
    and its marks: corrections and retractions with their reasons."""
    versions: dict[int, dict[str, Any]] = {}
    recorded, marks = [], []
    for order, entry in enumerate(claim["entries"]):
        if entry["kind"] == "corrected":
            versions.setdefault(entry["version"], {"order": order}).update(
                {k: entry[k] for k in ("low", "high", "best", "published_at")})
        else:
            versions[entry["version"]] = {"order": order, "kind": entry["kind"],
                                          **{k: entry[k] for k in ("low", "high", "best", "published_at")}}
        current = max(versions.values(), key=lambda v: (v["published_at"], v["order"]))
        what = f"{entry['kind']} v{entry['version']}" + (f": {entry['reason']}" if entry["reason"] else "")
        recorded.append({"source": label, "t": entry["recorded_at"], **_shown(current), "what": what})
        if entry["kind"] != "reported":
            marks.append({"source": label, "kind": entry["kind"], "version": entry["version"],
                          "published": entry["published_at"], "recorded": entry["recorded_at"],
                          "reason": entry["reason"], "by": entry["recorded_by"],
                          "y": _shown(versions[entry["version"]])["line"]})
    published = []
    for version_number, version in sorted(versions.items(), key=lambda item: (item[1]["published_at"], item[1]["order"])):
        what = f"{version.get('kind', 'reported')} v{version_number}"
        published.append({"source": label, "t": version["published_at"],
                          **_shown(version if version.get("kind") != "retracted" else None), "what": what})
    for mark in marks:
        if mark["y"] is None:  # a retraction stands where the figure was
            before = [p["line"] for p in published if p["t"] <= mark["published"] and p["line"] is not None]
            mark["y"] = before[-1] if before else 0
    return {"published": published, "recorded": recorded, "marks": marks}


def charts(history: dict[str, Any], merges: list[dict[str, Any]], canonical_id: str) -> list[dict[str, Any]]:
    """One chart per measure and group: every source's series, and the merges as marks."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for claim in history["claims"]:
        grouped.setdefault((claim["measure"], claim["group"]), []).append(claim)
    result = []
    for (measure, group), claims in sorted(grouped.items()):
        names = [c["source"] for c in claims]
        chart: dict[str, Any] = {"measure": measure, "group": group, "sources": [], "published": [], "recorded": [],
                                 "marks": [], "id": f"chart-{len(result)}"}
        for claim in claims:
            label = claim["source"]
            if names.count(label) > 1 or claim["incident_id"] != canonical_id:
                label += f" (under {claim['incident_id']})"
            series = claim_series(claim, label)
            chart["sources"].append(label)
            for name in ("published", "recorded", "marks"):
                chart[name] += series[name]
        chart["marks"] += [{"source": None, "kind": "merged", "version": None, "published": None,
                            "recorded": m["recorded_at"], "reason": m["reason"], "by": m["recorded_by"], "y": None,
                            "merged": f"{m['incident_id']} into {m['into']}"} for m in merges]
        result.append(chart)
    return result


# -- building the app ---------------------------------------------------------------------

def create_app(server: Server) -> FastAPI:
    app = FastAPI(
        title="Tollbook", version="1",
        description="An event-sourced ledger of casualty claims: the JSON of every answer is what the matching "
                    "`tollbook … --format json` command prints. Send `Authorization: Bearer TOKEN` "
                    "(`tollbook token create NAME --role reader|editor`).",
        docs_url=None, redoc_url=None,
    )
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["figure"] = _figure
    bearer_scheme = HTTPBearer(auto_error=False, description="A token from `tollbook token create`")
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def wants_html(request: Request) -> bool:
        return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")

    @app.exception_handler(Refused)
    def refused(request: Request, error: Refused) -> Response:
        if wants_html(request):
            if error.status == 401:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/signin?next={quote(target, safe='')}", status_code=303)
            return page(request, "error.html", {"status": error.status, "message": error.message}, error.status)
        return Response(error_body(error.message), status_code=error.status, media_type="application/json")

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, error: StarletteHTTPException) -> Response:
        message = {404: f"no such path: {request.url.path}", 405: f"{request.method} is not allowed here"}.get(
            error.status_code, str(error.detail))
        return refused(request, Refused(error.status_code, message))

    @app.exception_handler(RequestValidationError)
    def invalid(request: Request, error: RequestValidationError) -> Response:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem.get("loc", ())[1:]) or "request"
        return refused(request, Refused(400, f"{where}: {problem.get('msg', 'is not valid')}"))

    @app.exception_handler(Exception)
    def failed(request: Request, error: Exception) -> Response:
        from tollbook.store.eventstore import unusable

        if isinstance(error, OSError) or unusable(error) is not None:
            log.error("the store failed: %s", " ".join(str(error).split()))
            return refused(request, Refused(503, "the store cannot be reached now; try again"))
        log.exception("unexpected failure answering %s %s", request.method, request.url.path)
        return refused(request, Refused(500, "internal error (the server's log says more)"))

    def page(request: Request, name: str, context: dict[str, Any], status: int = 200,
             caller: Caller | None = None) -> HTMLResponse:
        caller = caller if caller is not None else getattr(request.state, "caller", None)
        base = {"caller": caller, "public": server.public, "path": request.url.path}
        return templates.TemplateResponse(request, name, base | context, status_code=status)

    def reader(request: Request, bearer: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)) -> Caller:
        caller = server.reader(request, bearer)
        request.state.caller = caller
        return caller

    def api_editor(request: Request, bearer: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)) -> Caller:
        # The API writes with a bearer token only: a cookie would need a CSRF token too.
        return server.editor(request, bearer, cookies=False)

    # -- JSON API -------------------------------------------------------------------------

    param = {name: Query(None, description=text) for name, text in {
        "measure": "What is counted (default killed)", "group": "Whom or what it counts (default all)",
        "by": f"Grouping: {', '.join(GROUPINGS)} (default incident)",
        "incident": "Only this incident (a merged-away id answers for its canonical one)",
        "source": "Only this source's claims", "as_of": "Recorded instant (RFC 3339 or a date)",
        "known_at": "Published instant (RFC 3339 or a date)",
        "policy": "conservative, highest or latest (default conservative)",
    }.items()}

    @app.get("/api/tally", summary="tollbook tally --format json", tags=["read"])
    def api_tally(request: Request, caller: Caller = Depends(reader), measure: str | None = param["measure"],
                  group: str | None = param["group"], by: str | None = param["by"],
                  incident: str | None = param["incident"], as_of: str | None = param["as_of"],
                  known_at: str | None = param["known_at"], policy: str | None = param["policy"]) -> Response:
        options = tally_options(_only(request, TALLY_PARAMS))
        server.current()
        return json_answer(asked(lambda: server.book.tally(**options)))

    @app.get("/api/history", summary="tollbook history --format json", tags=["read"])
    def api_history(request: Request, caller: Caller = Depends(reader), incident: str | None = param["incident"],
                    source: str | None = param["source"], measure: str | None = param["measure"],
                    group: str | None = param["group"], as_of: str | None = param["as_of"],
                    known_at: str | None = param["known_at"]) -> Response:
        options = history_options(_only(request, HISTORY_PARAMS))
        server.current()
        return json_answer(asked(lambda: server.book.history(**options)))

    @app.get("/api/diff", summary="tollbook diff --format json", tags=["read"])
    def api_diff(request: Request, caller: Caller = Depends(reader),
                 start: str | None = Query(None, alias="from", description="Recorded instant before the changes"),
                 end: str | None = Query(None, alias="to", description="Recorded instant after them"),
                 known_at: str | None = param["known_at"], measure: str | None = param["measure"],
                 group: str | None = param["group"], policy: str | None = param["policy"]) -> Response:
        start, end, options = diff_options(_only(request, DIFF_PARAMS))
        server.current()
        return json_answer(asked(lambda: server.book.diff(start, end, **options)))

    @app.get("/api/status", summary="tollbook status --format json", tags=["read"])
    def api_status(request: Request, caller: Caller = Depends(reader)) -> Response:
        _only(request, set())
        return json_answer(server.book.status())

    @app.get("/api/log", summary="tollbook log --format jsonl", tags=["read"],
             response_class=StreamingResponse)
    def api_log(request: Request, caller: Caller = Depends(reader),
                after: int | None = Query(None, ge=0, description="Events after this position"),
                limit: int | None = Query(None, ge=0, description="At most this many events")) -> Response:
        _only(request, {"after", "limit"})
        if not hasattr(server.book, "log"):
            raise Refused(404, "this store has no log endpoint yet (CONTRACT section 8)")
        events = server.book.log(after=after or 0, limit=limit)

        return StreamingResponse((render.jsonl_line(event) for event in events), media_type="application/x-ndjson")

    @app.get("/api/checkpoint", summary="The last signed checkpoint (a C2SP signed note)", tags=["read"],
             response_class=PlainTextResponse)
    def api_checkpoint(request: Request, caller: Caller = Depends(reader)) -> Response:
        _only(request, set())
        note = server.book.last_checkpoint() if hasattr(server.book, "last_checkpoint") else None
        if note is None:
            raise Refused(404, "no checkpoint has been signed (tollbook checkpoint --key FILE)")
        return PlainTextResponse(note)

    @app.post("/api/documents", summary="tollbook ingest --format json (editor)", tags=["write"],
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/x-ndjson": {"schema": {"type": "string"}},
                  "application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}}})
    async def api_documents(request: Request, caller: Caller = Depends(api_editor)) -> Response:
        _only(request, set())
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > BODY_LIMIT:
                raise Refused(413, f"the body is larger than {BODY_LIMIT >> 20} MiB; send it in parts")
        documents = split_body(bytes(body), request.headers.get("content-type", ""))
        from starlette.concurrency import run_in_threadpool

        summary = await run_in_threadpool(server.ingest, documents, caller.identity.name)
        if summary["rejected"]:
            log.info("POST /api/documents by %s: %d rejected", caller.identity.name, len(summary["rejected"]))
        return json_answer(summary, 422 if summary["rejected"] else 200)

    # -- web pages -------------------------------------------------------------------------

    def page_reader(request: Request, bearer: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)) -> Caller:
        caller = server.reader(request, bearer)
        request.state.caller = caller
        return caller

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def tally_page(request: Request, caller: Caller = Depends(page_reader)) -> Response:
        params = _only(request, TALLY_PARAMS)
        options = tally_options(params)
        server.current()
        answer = asked(lambda: server.book.tally(**options))
        return page(request, "tally.html", {"answer": answer, "options": options, "groupings": GROUPINGS,
                                            "rows": answer["rows"][:PAGE_ROWS], "api": "/api/tally?" + request.url.query})

    @app.get("/incidents/{incident_id:path}", response_class=HTMLResponse, include_in_schema=False)
    def incident_page(request: Request, incident_id: str, caller: Caller = Depends(page_reader)) -> Response:
        params = _only(request, {"as_of", "clock", "done", "error"})
        as_of = _text(params, "as_of")
        server.current()
        found = asked(lambda: server.book.incident(incident_id, as_of=as_of))
        if found is None:
            raise Refused(404, f"no incident {incident_id!r}" + (f" was recorded by {as_of}" if as_of else ""))
        history = asked(lambda: server.book.history(incident=incident_id, as_of=as_of))
        chart_list = charts(history, found["merges"], found["incident_id"])
        entries = sorted(((e, c) for c in history["claims"] for e in c["entries"]), key=lambda pair: pair[0]["recorded_at"])
        return page(request, "incident.html", {
            "incident": found, "history": history, "charts": chart_list, "entries": entries,
            "chart_json": orjson.dumps(chart_list).decode().replace("</", "<\\/"),
            "clock": "recorded" if params.get("clock") == "recorded" else "published",
            "claims": history["claims"], "done": params.get("done"), "error": params.get("error"),
            "csrf": caller.session.csrf if caller.session and caller.may_write else None,
        })

    @app.get("/diff", response_class=HTMLResponse, include_in_schema=False)
    def diff_page(request: Request, caller: Caller = Depends(page_reader)) -> Response:
        params = _only(request, DIFF_PARAMS)
        answer = None
        if _text(params, "from") or _text(params, "to"):
            start, end, options = diff_options(params)
            server.current()
            answer = asked(lambda: server.book.diff(start, end, **options))
        return page(request, "diff.html", {"answer": answer, "params": params})

    # -- signing in, and the editor's forms ---------------------------------------------------

    def same_origin(request: Request) -> None:
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            raise Refused(403, "a form may only be sent from this site's own pages")

    @app.get("/signin", response_class=HTMLResponse, include_in_schema=False)
    def signin_page(request: Request, next: str = "/") -> Response:
        return page(request, "signin.html", {"next": _local(next), "problem": None}, caller=Caller(None))

    @app.post("/signin", include_in_schema=False)
    async def signin(request: Request) -> Response:
        same_origin(request)
        form = await request.form()
        token, target = str(form.get("token", "")).strip(), _local(str(form.get("next", "/")))
        identity = server.tokens.identify(token) if token else None
        if identity is None:
            return page(request, "signin.html", {"next": target, "problem": "That token is unknown or revoked."},
                        401, caller=Caller(None))
        log.info("%s signed in (%s)", identity.name, identity.role)
        cookie, _ = server.sessions.open(identity.key)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, cookie, max_age=SESSION_HOURS * 3600, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/")
        return response

    @app.post("/signout", include_in_schema=False)
    def signout(request: Request) -> Response:
        same_origin(request)
        server.sessions.close(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/signin", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.post("/incidents/{incident_id:path}", include_in_schema=False)
    async def incident_form(request: Request, incident_id: str) -> Response:
        same_origin(request)
        caller = server.editor(request, None, cookies=True)
        request.state.caller = caller
        form = {key: str(value).strip() for key, value in (await request.form()).items()}
        if caller.session is None or not hmac.compare_digest(form.get("csrf", ""), caller.session.csrf):
            raise Refused(403, "the form is stale or came from another site: reload the page and send it again")
        from starlette.concurrency import run_in_threadpool

        document = await run_in_threadpool(_form_document, server, incident_id, form)
        summary = await run_in_threadpool(server.ingest, [orjson.dumps(document).decode()], caller.identity.name)
        target = f"/incidents/{quote(incident_id, safe='')}"
        if summary["rejected"]:
            message = summary["rejected"][0]["error"]
            return RedirectResponse(f"{target}?error={quote(message, safe='')}", status_code=303)
        done = f"{document['kind']} of {document['source']} · {document['measure']} / {document['group']} recorded"
        return RedirectResponse(f"{target}?done={quote(done, safe='')}", status_code=303)

    return app


def _form_document(server: Server, incident_id: str, form: dict[str, str]) -> dict[str, Any]:
    """The correction or retraction an editor's form asks for, naming its claim as stored."""
    kind = form.get("kind")
    if kind not in ("correction", "retraction"):
        raise Refused(400, "kind: must be correction or retraction")
    history = server.book.history(incident=incident_id)
    claim = next((c for c in history["claims"] if c["claim_id"] == form.get("claim")), None)
    if claim is None:
        raise Refused(400, "claim: choose one of this incident's claims")
    document: dict[str, Any] = {"kind": kind, "incident_id": claim["incident_id"], "source": claim["source"],
                                "measure": claim["measure"], "group": claim["group"], "reason": form.get("reason", "")}
    numbers = ("version", "low", "high", "best") if kind == "correction" else ()
    for name in numbers:
        if form.get(name):
            try:
                document[name] = int(form[name])
            except ValueError:
                document[name] = form[name]  # ingest says what is wrong with it
    for name in ("published_at", "qualifier"):
        if form.get(name) and (name == "published_at" or kind == "correction"):
            document[name] = form[name]
    return document


def _local(target: str) -> str:
    """Only a path on this site: a sign-in never sends the browser elsewhere."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def _figure(item: dict[str, Any] | None) -> str:
    if item is None or item.get("low") is None:
        return "—"
    text = str(item["low"]) if item["low"] == item["high"] else f"{item['low']}–{item['high']}"
    return text + (f" (best {item['best']})" if item.get("best") is not None else "")


# -- running it ---------------------------------------------------------------------------

def where(db: str) -> str:
    """The store, for a log line: a PostgreSQL URL without its password."""
    parts = urlsplit(db)
    if parts.password:
        return db.replace(f":{parts.password}@", ":…@", 1)
    return db


def serve(book: Tollbook, *, host: str = "127.0.0.1", port: int = 8765, public: bool = False,
          poll: float = 0.2) -> None:
    """Runs the server until SIGINT or SIGTERM. ``book`` is the store as the command opened it."""
    import uvicorn

    listener = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                                    reuse_port=False)
    server = Server(book.db, public=public, poll=poll)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    config = uvicorn.Config(create_app(server), log_level="info", access_log=True, proxy_headers=True,
                            forwarded_allow_ips="127.0.0.1", server_header=False)
    shown = f"[{host}]" if ":" in host else host
    log.info("serving %s on http://%s:%d/ (%s)", where(book.db), shown, listener.getsockname()[1],
             "anyone may read" if public else "a token is needed to read")
    assert server.follower is not None
    server.follower.start()
    try:
        uvicorn.Server(config).run(sockets=[listener])
    finally:
        server.close()
        listener.close()
