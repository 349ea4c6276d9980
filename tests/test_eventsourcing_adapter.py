"""What Tollbook relies on of the eventsourcing library (store/eventsourcing_adapter.py), pinned:
an upgrade that changes any of it fails here before it fails anywhere else.

The configuration (table names), the table DDL (stores written by earlier code keep opening),
the tracking insert that refuses a position already passed, PostgreSQL's insert function with
its EXCLUSIVE lock and NOTIFY, notification selection, and the topic registry.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import ROOT, sql

from tollbook.domain.ids import incident_uuid
from tollbook.domain.incident import IncidentDefined
from tollbook.domain.time import to_micros
from tollbook.store import eventsourcing_adapter as library
from tollbook.store.eventstore import NONE_LEFT_OUT, STORED_TOPICS, Conflict, EventStore, Location, event_types

OLD_STORE = ROOT / "tests" / "data" / "store-aa66c0a" / "store.db"


@pytest.fixture
def store(db_path):
    opened = EventStore(Location(db_path))
    yield opened
    opened.close()


def _schema_of(path: str) -> dict[str, str]:
    with sqlite3.connect(path) as connection:
        return dict(connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE name IN ('stored_events', 'tracking', 'tollbook_clock')"))


def test_a_new_sqlite_store_has_the_tables_of_a_store_written_by_earlier_code(tmp_path):
    path = str(tmp_path / "new.db")
    EventStore(Location(path)).close()
    assert _schema_of(path) == _schema_of(str(OLD_STORE))
    # The library's own row for its tracking table's layout, as it writes it.
    assert sql(path, "SELECT notification_id FROM tracking WHERE application_name = '__migration__'") == [(1,)]


def _files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.parent.glob(path.name + "*")}


def test_a_store_opens_without_writing_after_the_first_time(tmp_path):
    """A store written by earlier code opens (the first time it turns to WAL), and from then on
    opening it writes nothing: no DDL, no write transaction."""
    path = tmp_path / "old.db"
    shutil.copy(OLD_STORE, path)
    EventStore(Location(str(path))).close()
    before = _files(path)
    store = EventStore(Location(str(path)))
    assert store.last_position() > 0
    store.close()
    assert _files(path) == before


def test_table_names(store, stores):
    expected = ("tollbook_events", "tollbook_tracking") if stores.is_postgres else ("stored_events", "tracking")
    assert (store.events_table, store.tracking_table) == expected


def test_tracking_refuses_a_position_already_passed(store):
    with store.transaction() as cursor:
        store.track(cursor, "p", 5)
    with pytest.raises(library.CONFLICTS), store.transaction() as cursor:
        store.track(cursor, "p", 5)
    with store.transaction() as cursor:
        store.track(cursor, "p", 6)
        cursor.execute(f"SELECT notification_id FROM {store.tracking_table} WHERE application_name = 'p'")
        assert cursor.fetchone() == (6,)


def _defined(incident_id: str) -> IncidentDefined:
    return IncidentDefined(originator_id=incident_uuid(incident_id), originator_version=1, incident_id=incident_id,
                           fields={"title": incident_id}, recorded_by="tester")


def test_events_are_stamped_read_back_and_a_second_version_1_conflicts(store):
    assert store.last_position() == 0 and store.head() == (0, None)
    [stamp] = store.append([[_defined("a")]])
    [event] = store.events_of(incident_uuid("a"))
    assert to_micros(event.timestamp) == stamp
    assert store.head() == (store.last_position(), stamp) and store.last_position() > 0
    with pytest.raises(Conflict):
        store.append([[_defined("a")]])
    assert store.last_position() == 1


def test_postgres_append_notifies_the_library_channel_on_commit(store, stores):
    if not stores.is_postgres:
        pytest.skip("PostgreSQL's notifications")
    # The channel is the events table's name, the same in every schema of one database: the
    # stores of tests running beside this one notify it too, so only this transaction's count.
    channel = library.channel(store.recorder)
    with library.postgres_connection(store.recorder) as listener:
        listener.execute(f'LISTEN "{channel}"')

        def notified_by(pid: int, seconds: float) -> bool:
            return any(notification.pid == pid for notification in listener.notifies(timeout=seconds))

        with store.transaction() as cursor:
            pid = cursor.raw.connection.info.backend_pid
            _, batch = store._stamp(cursor, [[_defined("notified")]])
            store._insert(cursor, batch)
            assert not notified_by(pid, 0.2)  # not before the commit
        assert notified_by(pid, 2)


def test_stored_topics_resolve_through_the_registry():
    for name, topic in STORED_TOPICS.items():
        assert library.resolve_topic(topic) is event_types()[name]
    assert STORED_TOPICS["ClaimRetracted"] == "domain.claim:ClaimRetracted"


def test_the_compact_encoding_leaves_out_the_members_whose_default_is_none():
    """Written out by type name (so that reading needs no model): what the models say."""
    for name, members in NONE_LEFT_OUT.items():
        model = event_types()[name]
        assert members == tuple(member for member, info in model.model_fields.items()
                                if not info.is_required() and info.default is None)


def test_a_process_that_only_reads_imports_no_model(tmp_path):
    """A query's command line starts without pydantic and the domain's models (a third of its time)."""
    import subprocess
    import sys

    db = str(tmp_path / "r.db")
    code = ("import sys; from tollbook.api import Tollbook; book = Tollbook(sys.argv[1]); book.tally(); "
            "book.history(); print(sorted(m for m in sys.modules if m.startswith(('pydantic', 'tollbook.domain.claim'))))")
    done = subprocess.run([sys.executable, "-c", code, db], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_library_mapper_path_is_gone():
    """The library's mapper wrote events without the store's clock (unreadable afterwards);
    Tollbook's mapper always stamps, and is not the library's."""
    from eventsourcing.persistence import Mapper

    from tollbook.store.eventstore import PydanticMapper

    assert not issubclass(PydanticMapper, Mapper)
    assert not hasattr(PydanticMapper, "to_stored_event")


def test_only_the_adapter_imports_the_library():
    importing = [str(path.relative_to(ROOT)) for folder in ("domain", "commands", "projections", "store", "tollbook",
                                                           "bench")
                 for path in (ROOT / folder).rglob("*.py")
                 if path.name != "eventsourcing_adapter.py" and _imports(path)]
    assert importing == []


def _imports(path: Path) -> list[str]:
    return re.findall(r"^\s*(?:from|import) (eventsourcing\b[.\w]*)", path.read_text(), re.MULTILINE)
