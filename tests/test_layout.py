"""The install's layout: one namespace, and stored events that outlive where the code lives."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

from tollbook.api import Tollbook

LEGACY = Path(__file__).parent / "data" / "store-aa66c0a"


def test_the_folders_install_under_tollbook_only():
    for bare in ("domain", "commands", "projections", "store"):
        assert importlib.util.find_spec(bare) is None or "tollbook" not in (importlib.util.find_spec(bare).origin or "")
    for name in ("tollbook.domain", "tollbook.commands", "tollbook.projections", "tollbook.store"):
        assert importlib.util.find_spec(name) is not None


def test_nothing_below_the_entry_points_imports_tollbooks_entry_points():
    root = Path(__file__).resolve().parent.parent
    for folder in ("domain", "commands", "projections", "store"):
        for path in (root / folder).rglob("*.py"):
            text = path.read_text()
            for entry in ("tollbook.api", "tollbook.cli", "tollbook.render"):
                assert entry not in text, f"{path} imports {entry}"


def test_a_store_written_before_the_move_still_loads_and_answers(tmp_path):
    db = tmp_path / "store.db"
    shutil.copy(LEGACY / "store.db", db)
    with Tollbook(str(db), editor="tester") as book:
        assert book.rebuild() > 0
        # As the old code answered, but for the five spellings of White Helmets, which are one
        # source now (its Idlib incidents: tests/test_hard_input.py checks those).
        for by, moved in (("admin1", "Idlib"), ("incident", "sy-legacy-sources")):
            answer, expected = book.tally(by=by), json.loads((LEGACY / f"tally-{by}.json").read_text())
            assert [r for r in answer["rows"] if r["key"] != moved] == [r for r in expected["rows"] if r["key"] != moved]
        # Its stored topics (domain.claim:ClaimReported, …) resolve to today's classes, so the
        # write side can load the aggregates it decides on: a revision of a stored claim.
        result = book.ingest([json.dumps({
            "kind": "report", "report_id": "after-the-move", "published_at": "2018-09-30T00:00:00Z",
            "claims": [{"incident_id": "sy-legacy-sources", "source": "UOSSM", "measure": "killed", "low": 9}]})])
        assert result.accepted == 1, result.rejected
        [claim] = book.history(incident="sy-legacy-sources", source="UOSSM")["claims"]
        assert [entry["kind"] for entry in claim["entries"]] == ["reported", "retracted", "reported"]
        assert claim["current"]["low"] == 9
