"""Property-based tests of the HTTP API from its own OpenAPI document (schemathesis): whatever
the parameters and bodies, a live ``tollbook serve`` never answers 5xx, and every refusal is
one line of ``{"error": …}``. Bounded (a few dozen examples an operation) to stay quick."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from liveserver import LiveServer, cli

from conftest import REVISIONS, SEED

schemathesis = pytest.importorskip("schemathesis")


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx, value) -> bytes:
    if isinstance(value, (bytes, str)):
        return value.encode() if isinstance(value, str) else value
    return orjson.dumps(value)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("schemathesis")
    db = str(folder / "props.db")
    for path in (SEED, REVISIONS):
        assert cli(db, "ingest", str(path))[0] == 0
    token = cli(db, "token", "create", "fuzzer", "--role", "editor")[1].decode().strip()
    server = LiveServer(db, folder / "serve.log")
    yield server, token
    log = server.stop()
    assert "Traceback" not in log and "unexpected failure" not in log
    assert token not in log


@pytest.fixture(scope="module")
def api_schema(served):
    server, _ = served
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


OPERATIONS = [("GET", "/api/tally"), ("GET", "/api/history"), ("GET", "/api/diff"), ("GET", "/api/status"),
              ("GET", "/api/log"), ("GET", "/api/checkpoint"), ("POST", "/api/documents")]


def test_the_document_names_every_operation(api_schema):
    assert {(o.ok().method.upper(), o.ok().path) for o in api_schema.get_all_operations()} == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_input_makes_the_server_fail(api_schema, served, method, path):
    _, token = served
    operation = api_schema[path][method]

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case) -> None:
        response = case.call(headers={"Authorization": f"Bearer {token}"}, timeout=60)
        assert response.status_code < 500, (case.as_curl_command(), response.text)
        if response.status_code == 422 and path == "/api/documents":
            assert set(response.json()) == {"accepted", "unchanged", "rejected"}  # the ingest summary
        elif response.status_code >= 400:
            assert set(response.json()) == {"error"}, response.text
            assert response.content.count(b"\n") == 1

    check()
