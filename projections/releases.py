"""The release receipts (domain.release), one row each, in recorded order: what
``tollbook releases`` lists."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tollbook.domain.time import format_instant, format_recorded, to_micros
from tollbook.projections.projector import Event, Projection

RELEASE_RECORDED = "domain.release:ReleaseRecorded"
# A receipt's row counts (domain.release.COUNTS, which tests/test_releases.py checks this against),
# written out so that reading needs no model: a query's process never imports pydantic.
COUNTS = ("rows", "imported", "unchanged", "widened", "rejected", "retracted", "not_found")
COLUMNS = ("position", "name", "importer", "file", "sha256", "encoding", "complete", *COUNTS, "published_at",
           "recorded_at", "recorded_by")
TABLES = {
    "tb_releases": """
        CREATE TABLE IF NOT EXISTS tb_releases (
            position INTEGER PRIMARY KEY, name TEXT NOT NULL, importer TEXT NOT NULL, file TEXT NOT NULL,
            sha256 TEXT NOT NULL, encoding TEXT NOT NULL, complete BOOLEAN NOT NULL,
            rows BIGINT NOT NULL, imported BIGINT NOT NULL, unchanged BIGINT NOT NULL, widened BIGINT NOT NULL,
            rejected BIGINT NOT NULL, retracted BIGINT NOT NULL, not_found BIGINT NOT NULL,
            published_at BIGINT, recorded_at BIGINT NOT NULL, recorded_by TEXT NOT NULL)""",
}


class Releases(Projection):
    name = "releases.v1"
    tables = TABLES
    indexes: list[str] = []
    query_indexes: list[str] = []

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.handlers = {RELEASE_RECORDED: self._recorded}

    def _recorded(self, cursor: Any, position: int, event: Event) -> None:
        published = event.get("published_at")
        self.rows.append((
            position, event["name"], event["importer"], event["file"], event["sha256"], event["encoding"],
            bool(event.get("complete")),
            *(event.get(count, 0) for count in COUNTS),
            None if published is None else to_micros(datetime.fromisoformat(published)),
            event["timestamp"], event["recorded_by"]))

    def flush(self, cursor: Any) -> None:
        if self.rows:
            cursor.executemany(f"INSERT INTO tb_releases ({', '.join(COLUMNS)}) "
                               f"VALUES ({', '.join('?' * len(COLUMNS))})", self.rows)
            self.rows.clear()


def releases(cursor: Any) -> dict[str, Any]:
    """Every release recorded, in recorded order."""
    cursor.execute(f"SELECT {', '.join(COLUMNS[1:])} FROM tb_releases ORDER BY position")
    found = []
    for row in cursor.fetchall():
        release = dict(zip(COLUMNS[1:], row, strict=True))
        release["complete"] = bool(release["complete"])
        release["published_at"] = format_instant(release["published_at"])
        release["recorded_at"] = format_recorded(release["recorded_at"])
        found.append(release)
    return {"releases": found}
