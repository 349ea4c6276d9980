"""The formats users hold (CONTRACT section 7, "Releases and formats"), on both stores: ACLED's
current 31-column exports and its older layout, hand-made here as the CSV text itself, with
the tallies they must give worked out by hand from that text; ACLED's deletions list with its
timestamps as Unix seconds or as dates; a header without a required column."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import event_count

# ACLED's current layout (31 columns; inter1/inter2 as text). Sudan: 27 + 9 + 0 = 36 killed over
# three incidents (North Darfur 36, Khartoum 0); South Sudan: 4 (Jonglei).
CURRENT = """\
event_id_cnty,event_date,year,time_precision,disorder_type,event_type,sub_event_type,actor1,assoc_actor_1,inter1,\
actor2,assoc_actor_2,inter2,interaction,civilian_targeting,iso,region,country,admin1,admin2,admin3,location,latitude,\
longitude,geo_precision,source,source_scale,notes,fatalities,tags,timestamp
SDN31001,2024-05-10,2024,1,Political violence,Battles,Armed clash,Rapid Support Forces,,Rebel group,\
Military Forces of Sudan (2019-),,State forces,Rebel group-State forces,,729,Northern Africa,Sudan,North Darfur,\
El Fasher,,El Fasher,13.6279,25.3494,1,Sudan Tribune; Radio Dabanga,National,"Clashes in El Fasher, ""heavy"" shelling.",\
27,,1715600000
SDN31002,2024-05-11,2024,1,Political violence,Violence against civilians,Attack,Rapid Support Forces,,Rebel group,\
Civilians (Sudan),,Civilians,Rebel group-Civilians,Civilian targeting,729,Northern Africa,Sudan,North Darfur,El Fasher,\
,Abu Shouk,13.66,25.33,2,Radio Dabanga,Subnational,Attack on the camp.,9,,1715700000
SDN31003,2024-05-12,2024,1,Demonstrations,Protests,Peaceful protest,Protesters (Sudan),,Protesters,,,,\
Protesters only,,729,Northern Africa,Sudan,Khartoum,Khartoum,,Khartoum,15.5,32.56,1,Sudan Tribune,National,A protest.,\
0,crowd size=no report,1715700000
SSD2001,2024-05-11,2024,1,Political violence,Violence against civilians,Attack,Unidentified Armed Group (South Sudan),\
,Political militia,Civilians (South Sudan),,Civilians,Political militia-Civilians,Civilian targeting,728,Eastern Africa,\
South Sudan,Jonglei,Bor South,,Bor,6.21,31.56,1,Radio Tamazuj,Subnational,A cattle raid.,4,,1715800000
"""

# An older export (data_id, event_id_no_cnty, iso3, numeric inter1/inter2/interaction, dates in
# words). Myanmar: 38 + 3 = 41 (Yangon 38, Mandalay 3); Bangladesh: 1 (Chittagong).
OLDER = """\
data_id,iso,event_id_cnty,event_id_no_cnty,event_date,year,time_precision,event_type,sub_event_type,actor1,\
assoc_actor_1,inter1,actor2,assoc_actor_2,inter2,interaction,region,country,admin1,admin2,admin3,location,latitude,\
longitude,geo_precision,source,source_scale,notes,fatalities,timestamp,iso3
7900101,104,MMR5001,5001,14 March 2021,2021,1,Violence against civilians,Attack,Military Forces of Myanmar (2021-),,1,\
Civilians (Myanmar),Protesters (Myanmar),7,17,Southeast Asia,Myanmar,Yangon,Yangon-North,Hlaingthaya,Hlaingthaya,\
16.8697,96.0716,1,Myanmar Now,National,Security forces fired on protesters.,38,1618317854,MMR
7900102,104,MMR5002,5002,15 March 2021,2021,1,Violence against civilians,Attack,Military Forces of Myanmar (2021-),,1,\
Civilians (Myanmar),,7,17,Southeast Asia,Myanmar,Mandalay,Mandalay,Chanayethazan,Mandalay,21.97,96.08,1,Mizzima,\
National,A shooting.,3,1618317854,MMR
7900103,50,BGD3001,3001,02 April 2021,2021,1,Riots,Mob violence,Rioters (Bangladesh),,5,Rioters (Bangladesh),,5,55,\
Southern Asia,Bangladesh,Chittagong,Brahmanbaria,Brahmanbaria Sadar,Brahmanbaria,23.96,91.11,1,Daily Star,National,\
Clashes.,1,1619527454,BGD
"""

# The deletions list, its timestamps in every form ACLED's lists and users' copies have.
DELETIONS = """\
event_id_cnty,deleted_timestamp
SDN31001,1716000000
SDN31002,2024-05-20
SSD2001,2024-05-21T10:00:00Z
MMR5001,20 May 2024
XYZ0001,1716000000
SDN31003,yesterday
"""


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return str(path)


def by(book, key: str, **options) -> dict:
    return {r["key"]: (r["low"], r["incidents"]) for r in book.tally(by=key, **options)["rows"]}


def fields(book, incident_id: str) -> dict:
    from tollbook.domain import incident as incidents
    from tollbook.domain.ids import incident_uuid

    state = None
    for event in book.store.events_of(incident_uuid(incident_id)):
        state = incidents.evolve(state, event)
    return state.fields


def test_the_current_layout_gives_the_tallies_of_its_rows(book, tmp_path):
    summary = book.import_acled(write(tmp_path, "current.csv", CURRENT))
    assert (summary.rows, summary.imported, summary.unchanged, summary.rejected) == (4, 4, 0, [])
    assert by(book, "country") == {"South Sudan": (4, 1), "Sudan": (36, 3)}
    assert by(book, "admin1") == {"Jonglei": (4, 1), "Khartoum": (0, 1), "North Darfur": (36, 2)}
    assert book.tally()["total"] == {"low": 40, "high": 40, "best": 40, "incidents": 4}
    # Each row counts from its own timestamp: before 1715700000 only SDN31001 was published.
    assert by(book, "country", known_at="2024-05-14T15:19:59Z") == {"Sudan": (27, 1)}
    # Every column beyond the contract's mapping is kept, under its own name; inter1 as text.
    got = fields(book, "acled:SDN31003")
    assert {k: got.get(k) for k in ("disorder_type", "inter1", "interaction", "civilian_targeting", "iso", "region",
                                    "source_scale", "tags", "year", "admin3", "actor2")} == {
        "disorder_type": "Demonstrations", "inter1": "Protesters", "interaction": "Protesters only",
        "civilian_targeting": None, "iso": 729, "region": "Northern Africa", "source_scale": "National",
        "tags": "crowd size=no report", "year": 2024, "admin3": None, "actor2": None}
    assert fields(book, "acled:SDN31001")["notes"] == 'Clashes in El Fasher, "heavy" shelling.'
    assert fields(book, "acled:SDN31002")["civilian_targeting"] == "Civilian targeting"


def test_the_older_layout_gives_the_tallies_of_its_rows(book, tmp_path):
    summary = book.import_acled(write(tmp_path, "older.csv", OLDER))
    assert (summary.rows, summary.imported, summary.rejected) == (3, 3, [])
    assert by(book, "country") == {"Bangladesh": (1, 1), "Myanmar": (41, 2)}
    assert by(book, "admin1") == {"Chittagong": (1, 1), "Mandalay": (3, 1), "Yangon": (38, 1)}
    assert by(book, "day") == {"2021-03-14": (38, 1), "2021-03-15": (3, 1), "2021-04-02": (1, 1)}
    got = fields(book, "acled:MMR5001")
    assert {k: got[k] for k in ("data_id", "event_id_no_cnty", "iso", "iso3", "inter1", "inter2", "interaction",
                                "assoc_actor_2", "admin3")} == {
        "data_id": 7900101, "event_id_no_cnty": 5001, "iso": 104, "iso3": "MMR", "inter1": 1, "inter2": 7,
        "interaction": 17, "assoc_actor_2": "Protesters (Myanmar)", "admin3": "Hlaingthaya"}


def test_an_older_export_in_latin1_reads_with_its_encoding(book, tmp_path):
    text = OLDER.replace("Chanayethazan", "Chanayethazan (Mandalay-Süd)")
    summary = book.import_acled(write(tmp_path, "older-latin1.csv", text, "latin-1"), encoding="latin-1")
    assert (summary.imported, summary.rejected) == (3, [])
    assert fields(book, "acled:MMR5002")["admin3"] == "Chanayethazan (Mandalay-Süd)"


def test_deletions_by_unix_seconds_dates_and_instants(book, tmp_path):
    book.import_acled(write(tmp_path, "current.csv", CURRENT))
    book.import_acled(write(tmp_path, "older.csv", OLDER))
    summary = book.import_acled_deletions(write(tmp_path, "deleted.csv", DELETIONS))
    assert (summary.rows, summary.imported, summary.retracted, summary.not_found, summary.unchanged) == (6, 4, 4, 1, 0)
    assert [str(r) for r in summary.rejected] == [
        "line 7: deleted_timestamp: must be Unix seconds or a date, not 'yesterday'"]
    # Left: SDN31003 (0 killed, its deletion unreadable), MMR5002 (3) and BGD3001 (1).
    assert by(book, "country") == {"Bangladesh": (1, 1), "Myanmar": (3, 1), "Sudan": (0, 1)}
    deleted_at = {}
    for incident in ("SDN31001", "SDN31002", "SSD2001", "MMR5001"):
        [claim] = book.history(incident=f"acled:{incident}")["claims"]
        last = claim["entries"][-1]
        assert (last["kind"], last["reason"]) == ("retracted", "deleted by ACLED")
        deleted_at[incident] = last["published_at"]
    assert deleted_at == {"SDN31001": "2024-05-18T02:40:00Z", "SDN31002": "2024-05-20T00:00:00Z",
                          "SSD2001": "2024-05-21T10:00:00Z", "MMR5001": "2024-05-20T00:00:00Z"}
    # Before its deletion an event still counts.
    assert by(book, "country", known_at="2024-05-19T00:00:00Z")["Sudan"] == (9, 2)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=4_102_444_800))
def test_a_deletion_time_means_the_same_instant_in_every_form(seconds):
    from datetime import UTC, datetime

    from tollbook.commands.importers.acled import deleted_at
    from tollbook.commands.importers.csvrows import Row

    moment = datetime.fromtimestamp(seconds, UTC)
    expected = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    forms = [str(seconds), expected, moment.strftime("%Y-%m-%dT%H:%M:%S+00:00")]
    for form in forms:
        assert deleted_at(Row(2, {"deleted_timestamp": form}), "deleted_timestamp") == expected, form
    midnight = moment.strftime("%Y-%m-%dT00:00:00Z")
    for form in (moment.strftime("%Y-%m-%d"), f"{moment.day} {moment.strftime('%B %Y')}"):
        assert deleted_at(Row(2, {"deleted_timestamp": form}), "deleted_timestamp") == midnight, form


# -- through the real command line ---------------------------------------------------------------

@pytest.mark.parametrize(("kind", "text", "missing"), [
    ("acled", CURRENT.replace(",fatalities,", ",deaths,", 1), "fatalities"),
    ("acled", OLDER.replace("event_id_cnty,", "event_id,", 1), "event_id_cnty"),
    ("acled-deletions", DELETIONS.replace("deleted_timestamp", "deleted", 1), "deleted_timestamp"),
])
def test_a_header_without_a_required_column_is_one_line_and_exit_2(run, db_path, tmp_path, kind, text, missing):
    code, out, err = run("import", kind, write(tmp_path, "bad.csv", text))
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.rstrip().endswith(f"no column {missing}"), err
    assert "Traceback" not in err
    code, out, _ = run("releases", "--format", "json")
    assert code == 0 and '"releases": []' in out  # nothing stored, no receipt


def test_both_layouts_and_deletions_on_the_command_line(run, tmp_path):
    import json

    for name, text in (("current.csv", CURRENT), ("older.csv", OLDER)):
        code, out, err = run("import", "acled", write(tmp_path, name, text))
        assert code == 0 and err == "", err
    assert out.startswith("older.csv@2021-04-27T12:44:14Z: 3 rows: imported 3, unchanged 0, widened 0, rejected 0")
    code, out, err = run("import", "acled-deletions", write(tmp_path, "deleted.csv", DELETIONS))
    assert code == 1 and "Traceback" not in err
    assert err.splitlines() == ["line 7: deleted_timestamp: must be Unix seconds or a date, not 'yesterday'"]
    assert out.startswith("deleted.csv@2024-05-21T10:00:00Z: 6 deletions: retracted 4 claims, unchanged 0, "
                          "not in the store 1, rejected 1")
    code, out, err = run("tally", "--by", "country", "--format", "json")
    assert code == 0 and {r["key"]: r["low"] for r in json.loads(out)["rows"]} == {
        "Bangladesh": 1, "Myanmar": 3, "Sudan": 0}


def test_a_bad_file_stores_nothing(book, db_path, tmp_path):
    from tollbook.commands.importers.csvrows import BadFile

    with pytest.raises(BadFile, match="no column timestamp"):
        book.import_acled(write(tmp_path, "no-ts.csv", CURRENT.replace(",timestamp\n", ",ts\n", 1)))
    assert event_count(db_path) == 0
