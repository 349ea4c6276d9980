"""The HTTP API over a real running ``tollbook serve`` (CONTRACT section 9), on both stores.

Every read endpoint must answer the very bytes the matching ``--format json`` command prints;
roles, revocation, recorded_by and bad parameters are checked through the server as a client
sees it, and the server's whole log is searched for the tokens at the end.
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlencode

import pytest
from liveserver import LiveServer, cli

from conftest import REVISIONS, SEED, session_stores

ABDEEN = "sy-2018-09-08-abdeen"


_seen_tokens: list[str] = []  # more tokens the tests used: none may show in the server's log


class Live:
    def __init__(self, db: str, server: LiveServer, tokens: dict[str, str]):
        self.db, self.server, self.tokens = db, server, tokens

    def get(self, path: str, token: str | None = "rita", **params):
        with self.server.client(self.tokens.get(token) if token else None) as client:
            return client.get(path, params=params)

    def post(self, body: bytes, token: str | None = "ana", content_type: str = "application/x-ndjson"):
        with self.server.client(self.tokens.get(token) if token else None) as client:
            return client.post("/api/documents", content=body, headers={"Content-Type": content_type})


def make_token(db: str, name: str, role: str) -> str:
    code, out, err = cli(db, "token", "create", name, "--role", role)
    assert code == 0, err
    return out.decode().strip()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def live(request, tmp_path_factory):
    from conftest import SKIP_POSTGRES, postgres_base

    if request.param == "postgres" and not postgres_base():
        pytest.skip(SKIP_POSTGRES)
    folder = tmp_path_factory.mktemp(f"http-{request.param}")
    db = session_stores(request.param, folder).new("served")
    for path in (SEED, REVISIONS):
        code, _, err = cli(db, "--editor", "seeder", "ingest", str(path))
        assert code == 0, err
    tokens = {"ana": make_token(db, "ana", "editor"), "rita": make_token(db, "rita", "reader")}
    server = LiveServer(db, folder / "serve.log")
    yield Live(db, server, tokens)
    log = server.stop()
    # Whatever the tests did, no token nor its hash is in any line the server wrote.
    for token in list(tokens.values()) + _seen_tokens:
        assert token not in log
        assert hashlib.sha256(token.encode()).hexdigest() not in log
    assert "Traceback" not in log







def recorded_instants(live: Live) -> list[str]:
    history = json.loads(cli(live.db, "history", "--format", "json")[1])
    return sorted({e["recorded_at"] for c in history["claims"] for e in c["entries"]})


SAME = [
    ("/api/tally", {}, ["tally"]),
    ("/api/tally", {"by": "admin1", "known_at": "2018-09-09T09:00:00Z"}, ["tally", "--by", "admin1", "--known-at",
                                                                          "2018-09-09T09:00:00Z"]),
    ("/api/tally", {"by": "source", "policy": "highest"}, ["tally", "--by", "source", "--policy", "highest"]),
    ("/api/tally", {"measure": "facilities_damaged", "group": "hospitals", "policy": "latest"},
     ["tally", "--measure", "facilities_damaged", "--group", "hospitals", "--policy", "latest"]),
    ("/api/tally", {"incident": ABDEEN, "by": "month"}, ["tally", "--incident", ABDEEN, "--by", "month"]),
    ("/api/history", {}, ["history"]),
    ("/api/history", {"incident": ABDEEN, "source": "white helmets", "measure": "killed", "group": "all"},
     ["history", "--incident", ABDEEN, "--source", "white helmets", "--measure", "killed", "--group", "all"]),
    ("/api/history", {"known_at": "2018-09-09"}, ["history", "--known-at", "2018-09-09"]),
]


@pytest.mark.parametrize(("path", "params", "args"), SAME, ids=[f"{p}?{urlencode(q)}" for p, q, _ in SAME])
def test_every_read_answers_the_cli_bytes(live, path, params, args):
    code, expected, err = cli(live.db, *args, "--format", "json")
    assert code == 0, err
    answer = live.get(path, **params)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.content == expected


def test_as_of_and_diff_answer_the_cli_bytes(live):
    instants = recorded_instants(live)
    first, last = instants[0], instants[-1]
    for path, params, args in [
        ("/api/tally", {"as_of": first}, ["tally", "--as-of", first]),
        ("/api/history", {"as_of": first, "incident": ABDEEN}, ["history", "--as-of", first, "--incident", ABDEEN]),
        ("/api/diff", {"from": first, "to": last}, ["diff", "--from", first, "--to", last]),
        ("/api/diff", {"from": "2000-01-01", "to": last, "known_at": "2018-09-09", "policy": "highest"},
         ["diff", "--from", "2000-01-01", "--to", last, "--known-at", "2018-09-09", "--policy", "highest"]),
    ]:
        expected = cli(live.db, *args, "--format", "json")[1]
        assert json.loads(expected)  # a real answer, not an empty one
        assert live.get(path, **params).content == expected, (path, params)
    assert json.loads(live.get("/api/diff", **{"from": "2000-01-01", "to": last}).content)["changes"]


def test_status_answers_the_cli_bytes(live):
    live.get("/api/tally")  # the server is current
    expected = cli(live.db, "status", "--format", "json")[1]
    assert live.get("/api/status").content == expected
    assert json.loads(expected)["head"]["position"] > 0


def test_a_reader_reads_and_may_not_write(live):
    for path in ("/api/tally", "/api/history", "/api/status", f"/incidents/{ABDEEN}", "/"):
        assert live.get(path, token="rita").status_code == 200, path
    refused = live.post(b'{"kind": "incident", "incident_id": "by-a-reader"}', token="rita")
    assert refused.status_code == 403
    assert "reader" in refused.json()["error"]
    assert json.loads(live.get("/api/history", incident="by-a-reader").content)["claims"] == []
    assert cli(live.db, "tally", "--incident", "by-a-reader", "--format", "json")[0] == 0


def test_no_token_or_a_wrong_one_is_401(live):
    for headers in ({}, {"Authorization": "Bearer tb_000000000000_nope"}, {"Authorization": "Basic YTpi"},
                    {"Authorization": "Bearer " + live.tokens["ana"] + "x"}):
        with live.server.client() as client:
            for method, path in (("GET", "/api/tally"), ("GET", "/api/status"), ("POST", "/api/documents")):
                answer = client.request(method, path, headers=headers, content=b"{}")
                assert answer.status_code == 401, (headers, path)
                assert set(answer.json()) == {"error"}
                assert answer.content.count(b"\n") == 1
    _seen_tokens.append(live.tokens["ana"] + "x")


def test_an_editor_writes_as_its_token_name(live):
    correction = {"kind": "correction", "incident_id": ABDEEN, "source": "White Helmets", "measure": "killed",
                  "group": "children", "low": 2, "high": 2, "reason": "two children, the later report says"}
    answer = live.post(json.dumps(correction).encode(), token="ana")
    assert answer.status_code == 200
    assert answer.content == b'{\n  "accepted": 1,\n  "unchanged": 0,\n  "rejected": []\n}\n'
    history = json.loads(live.get("/api/history", incident=ABDEEN, group="children").content)
    [entry] = [e for e in history["claims"][0]["entries"] if e["kind"] == "corrected"]
    assert entry["recorded_by"] == "ana" and entry["reason"] == correction["reason"]
    assert history["claims"][0]["current"]["low"] == 2
    # ... and the CLI sees the same at once
    assert live.get("/api/history", incident=ABDEEN).content == cli(live.db, "history", "--incident", ABDEEN,
                                                                     "--format", "json")[1]


@pytest.mark.parametrize("document", [
    {"kind": "incident", "incident_id": "xx-recorded-by", "recorded_by": "mallory"},
    {"kind": "report", "report_id": "r-recorded-by", "published_at": "2018-09-10", "recorded_by": "mallory",
     "claims": []},
    {"kind": "report", "report_id": "r-recorded-by-2", "published_at": "2018-09-10",
     "incidents": [{"incident_id": "xx-recorded-by-2", "recorded_by": "mallory"}], "claims": []},
])
def test_a_document_cannot_set_recorded_by(live, document):
    good = {"kind": "incident", "incident_id": f"ok-beside-{document.get('report_id', 'incident')}"}
    body = (json.dumps(good) + "\n" + json.dumps(document) + "\n").encode()
    answer = live.post(body)
    assert answer.status_code == 422
    summary = answer.json()
    assert summary["accepted"] == 1  # the rest is still stored, as on the CLI
    [rejected] = summary["rejected"]
    assert rejected["line"] == 2 and "recorded_by" in rejected["error"]
    incidents = [d.get("incident_id") for d in [document, *document.get("incidents", [])]]
    for incident_id in filter(None, incidents):
        assert live.get(f"/incidents/{incident_id}").status_code == 404


def test_a_json_array_body_and_partial_rejection(live):
    body = json.dumps([{"kind": "incident", "incident_id": "arr-1", "title": "first"},
                       {"kind": "incident", "title": "no id"},
                       {"kind": "merge", "incident_id": "arr-1", "into": "arr-1"}]).encode()
    answer = live.post(body, content_type="application/json")
    assert answer.status_code == 422
    summary = answer.json()
    assert summary["accepted"] == 1 and [r["line"] for r in summary["rejected"]] == [2, 3]
    assert all(r["error"] and not r["error"].startswith("line") for r in summary["rejected"])  # as ingest's JSON
    # the same document again is a no-op, as on the CLI: 200
    again = live.post(json.dumps([{"kind": "incident", "incident_id": "arr-1", "title": "first"}]).encode(),
                      content_type="application/json")
    assert again.status_code == 200 and again.json()["unchanged"] == 1
    for body, content_type in ((b"[1, 2", "application/json"), (b'{"a": 1}', "application/json"),
                               (b"x", "application/xml"), (b"\xff", "application/x-ndjson"),
                               (b"[" * 100_000, "application/json")):
        refused = live.post(body, content_type=content_type)
        assert refused.status_code == 400, body[:20]
        assert set(refused.json()) == {"error"}


def test_a_revoked_token_is_refused_at_once(live):
    token = make_token(live.db, "short-lived", "editor")
    _seen_tokens.append(token)
    live.tokens["short-lived"] = token
    assert live.get("/api/tally", token="short-lived").status_code == 200
    with live.server.client() as browser:
        signed_in = browser.post("/signin", data={"token": token, "next": "/"}, follow_redirects=False)
        assert signed_in.status_code == 303 and token not in signed_in.headers.get("set-cookie", "")
        assert browser.get("/api/status").status_code == 200  # the session cookie reads
        assert cli(live.db, "token", "revoke", "short-lived")[0] == 0
        assert browser.get("/api/status").status_code == 401
    assert live.get("/api/tally", token="short-lived").status_code == 401
    listed = json.loads(cli(live.db, "token", "list", "--format", "json")[1])["tokens"]
    [entry] = [t for t in listed if t["name"] == "short-lived"]
    assert entry["revoked"] and entry["last_used_at"] is not None
    assert token not in json.dumps(listed) and hashlib.sha256(token.encode()).hexdigest() not in json.dumps(listed)


@pytest.mark.parametrize(("path", "params"), [
    ("/api/tally", {"by": "nowhere"}),
    ("/api/tally", {"policy": "loudest"}),
    ("/api/tally", {"as_of": "yesterday"}),
    ("/api/tally", {"known_at": "2018-09-09T10:00:00"}),  # naive
    ("/api/tally", {"measure": "killed\x00"}),
    ("/api/tally", {"mesure": "killed"}),
    ("/api/history", {"as_of": "2018-13-01"}),
    ("/api/diff", {"from": "2018-09-09"}),
    ("/api/diff", {"from": "2019-01-01", "to": "2018-01-01"}),
    ("/api/status", {"verbose": "1"}),
    ("/api/log", {"after": "-1"}),
])
def test_bad_parameters_are_400(live, path, params):
    answer = live.get(path, **params)
    assert answer.status_code == 400, answer.text
    assert set(answer.json()) == {"error"} and answer.content.count(b"\n") == 1
    assert "Traceback" not in answer.text
    # it names the query parameter as sent (as_of, not the CLI's --as-of)
    assert answer.json()["error"].split(":")[0] in {*params, "to"}


def test_repeated_parameter_and_unknown_path(live):
    with live.server.client(live.tokens["rita"]) as client:
        assert client.get("/api/tally?by=incident&by=admin1").status_code == 400
        missing = client.get("/api/nothing-here")
        assert missing.status_code == 404 and set(missing.json()) == {"error"}
        assert client.delete("/api/tally").status_code == 405


def test_openapi_describes_every_endpoint(live):
    schema = live.get("/openapi.json", token=None).json()
    assert {"/api/tally", "/api/history", "/api/diff", "/api/status", "/api/log", "/api/checkpoint",
            "/api/documents"} <= set(schema["paths"])
    names = {p["name"] for p in schema["paths"]["/api/diff"]["get"]["parameters"]}
    assert {"from", "to", "known_at", "measure", "group", "policy"} <= names


def test_the_server_follows_other_writers(live):
    code, _, err = cli(live.db, "--editor", "elsewhere", "ingest", "-", input=json.dumps(
        {"kind": "report", "report_id": "later-by-cli", "published_at": "2018-09-11", "claims": [
            {"incident_id": ABDEEN, "source": "SOHR", "measure": "killed", "low": 6, "high": 9}]}).encode())
    assert code == 0, err
    tally = json.loads(live.get("/api/tally", incident=ABDEEN).content)
    assert tally["rows"][0]["high"] == 9 and "SOHR" in tally["rows"][0]["sources"]


@pytest.fixture(scope="module")
def public(live, tmp_path_factory):
    server = LiveServer(live.db, tmp_path_factory.mktemp("public") / "serve.log", "--public")
    yield server
    server.stop()


def test_public_lets_anyone_read_but_not_write(live, public):
    with public.client() as anyone:
        assert anyone.get("/api/tally").content == cli(live.db, "tally", "--format", "json")[1]
        assert anyone.get(f"/incidents/{ABDEEN}").status_code == 200
        assert anyone.post("/api/documents", content=b"{}").status_code == 401
    with public.client(live.tokens["rita"]) as reader:
        assert reader.post("/api/documents", content=b"{}").status_code == 403


def test_log_and_checkpoint_answer_as_the_cli(live):
    from tollbook.api import Tollbook

    if not hasattr(Tollbook, "log"):
        pytest.skip("Tollbook.log (CONTRACT section 8) is not on this branch yet")
    expected = cli(live.db, "log", "--after", "3", "--limit", "5", "--format", "jsonl")[1]
    assert live.get("/api/log", after=3, limit=5).content == expected
    beyond = live.get("/api/log", after=2**63, limit=10**30)  # past what the database holds: no event
    assert (beyond.status_code, beyond.content) == (200, b"")
    assert len(live.get("/api/log").content.splitlines()) == json.loads(live.get("/api/status").content)["head"]["position"]
    checkpoint = live.get("/api/checkpoint")
    assert checkpoint.status_code in (200, 404)
