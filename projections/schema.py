"""The read models' tables: plain SQL that SQLite and PostgreSQL both speak.

Instants are BIGINT microseconds (UTC). ``position`` is the event's notification id in the
log. ``INTEGER PRIMARY KEY`` makes it the row id on SQLite; PostgreSQL gets ``BIGINT PRIMARY
KEY`` (see :func:`for_postgres`). Bitemporal tables carry ``recorded_at`` (and
``to_recorded_at`` where a row can be replaced) and ``published_at`` so every as-of / known-at
question is an indexed query.
"""

INCIDENTS = {
    # Each incident's fields as they stood over recorded time.
    "tb_incidents": """
        CREATE TABLE IF NOT EXISTS tb_incidents (
            incident_id TEXT NOT NULL, position BIGINT NOT NULL,
            recorded_at BIGINT NOT NULL, to_recorded_at BIGINT,
            country TEXT, admin1 TEXT, admin2 TEXT, perpetrator TEXT,
            occurred_day TEXT,
            PRIMARY KEY (incident_id, position))""",
    # Where each merged-away incident's claims count, over recorded time (chains resolved).
    "tb_canonical": """
        CREATE TABLE IF NOT EXISTS tb_canonical (
            incident_id TEXT NOT NULL, position BIGINT NOT NULL,
            recorded_at BIGINT NOT NULL, to_recorded_at BIGINT,
            canonical_id TEXT NOT NULL,
            PRIMARY KEY (incident_id, position))""",
    "tb_merges": """
        CREATE TABLE IF NOT EXISTS tb_merges (
            position INTEGER PRIMARY KEY, incident_id TEXT NOT NULL, into_id TEXT NOT NULL,
            recorded_at BIGINT NOT NULL, reason TEXT, recorded_by TEXT NOT NULL)""",
}
INCIDENT_INDEXES = [
    "CREATE INDEX IF NOT EXISTS tb_canonical_by_canonical ON tb_canonical (canonical_id, recorded_at)",
]
INCIDENT_QUERY_INDEXES = [
    "CREATE INDEX IF NOT EXISTS tb_merges_recorded ON tb_merges (recorded_at)",
]

CLAIMS = {
    # One row per claim event (a version reported or retracted, or a correction of a version),
    # which is both an entry of the claim's history and the figures its version has from
    # ``recorded_at`` until ``to_recorded_at`` (when a correction replaces them). One row, not
    # two tables, so projecting an event writes once. The claim's own fields ride along on
    # every row, so a query by incident, source, measure or group reads one table. What no
    # query selects by (the claim's id; the report, reason, quote and note, who recorded it) is
    # read from the row's event in the log at ``position``, and the kinds follow from the row
    # (ENTRY_KIND, VERSION_KIND): issue 14, the store's bytes.
    "tb_entries": """
        CREATE TABLE IF NOT EXISTS tb_entries (
            position INTEGER PRIMARY KEY, claim_position BIGINT NOT NULL,
            incident_id TEXT NOT NULL, source TEXT NOT NULL, source_key TEXT NOT NULL,
            measure TEXT NOT NULL, grp TEXT NOT NULL, version INTEGER NOT NULL, version_position BIGINT NOT NULL,
            low BIGINT, high BIGINT, best BIGINT, qualifier TEXT, published_at BIGINT NOT NULL,
            recorded_at BIGINT NOT NULL, to_recorded_at BIGINT)""",
    # When each version of a claim counts, on both clocks: from ``recorded_at`` until
    # ``to_recorded_at``, for every known-at from ``published_at`` until ``next_published_at``
    # (NULL: on). At any point at most one row of a claim matches, so a tally over many
    # incidents is a filtered scan that the database aggregates, not a choice made row by row
    # in Python (domain.tally.counting_spans). ``best`` and ``version_position`` (where the
    # version was first recorded) serve the latest policy: which source published last. The
    # source's name is its claim's first row of tb_entries (at ``claim_position``).
    "tb_counting": """
        CREATE TABLE IF NOT EXISTS tb_counting (
            claim_position BIGINT NOT NULL, version INTEGER NOT NULL, incident_id TEXT NOT NULL,
            measure TEXT NOT NULL, grp TEXT NOT NULL, low BIGINT NOT NULL, high BIGINT NOT NULL, best BIGINT,
            published_at BIGINT NOT NULL, version_position BIGINT NOT NULL, next_published_at BIGINT,
            recorded_at BIGINT NOT NULL, to_recorded_at BIGINT)""",
    # Incidents with a claim whose source is spelt so that its key before sources were compared
    # by NFKC differs (runs of spaces, no-break or zero-width spaces, full-width letters): a
    # store written before may hold several claims of that source there, which tallies pool.
    "tb_spelled": "CREATE TABLE IF NOT EXISTS tb_spelled (incident_id TEXT PRIMARY KEY)",
}
# A version reported has figures (low is never empty), a retraction none; an entry that is not
# where its version was first recorded is a correction of it.
VERSION_KIND = "(CASE WHEN low IS NULL THEN 'retracted' ELSE 'reported' END)"
ENTRY_KIND = f"(CASE WHEN position <> version_position THEN 'corrected' ELSE {VERSION_KIND} END)"
CLAIM_VIEWS = {
    # Each claim, as its first event recorded it (at ``position``: the claim's id is that event's
    # aggregate id in the log).
    "tb_claims": """
        CREATE VIEW tb_claims AS
        SELECT incident_id, source, source_key, measure, grp, position, recorded_at
        FROM tb_entries WHERE position = claim_position""",
    # Each version's figures over recorded time.
    "tb_figures": f"""
        CREATE VIEW tb_figures AS
        SELECT claim_position, version, position, recorded_at, to_recorded_at, version_position,
               {VERSION_KIND} AS kind, low, high, best, qualifier, published_at,
               incident_id, source_key, measure, grp
        FROM tb_entries""",
}
# Needed while projecting (a correction finds the row it replaces; a retraction its claim).
# By the claim's first position, not its id: new claims append at the indexes' end (ids are
# random: a rebuild keeping an index on them spent seconds inserting all over it).
CLAIM_INDEXES = [
    "CREATE INDEX IF NOT EXISTS tb_entries_version ON tb_entries (claim_position, version)",
    "CREATE INDEX IF NOT EXISTS tb_counting_claim ON tb_counting (claim_position, version)",
]
# Needed only by queries: a rebuild creates them once at the end, which is faster than
# keeping them sorted row by row. Each as narrow as its queries allow (issue 14, the store's
# bytes): an incident has a few rows, read whole; a tally scans tb_counting and groups it.
CLAIM_QUERY_INDEXES = [
    "CREATE INDEX IF NOT EXISTS tb_entries_incident ON tb_entries (incident_id)",
    "CREATE INDEX IF NOT EXISTS tb_entries_recorded ON tb_entries (recorded_at)",
]
# Tables of earlier versions of the projections, dropped when they are rebuilt.
OBSOLETE_TABLES = ["tb_figures", "tb_claims"]


def index_name(statement: str) -> str:
    """The index a ``CREATE INDEX IF NOT EXISTS name ON …`` statement makes."""
    return statement.split(" IF NOT EXISTS ", 1)[1].split()[0]


def for_postgres(statement: str) -> str:
    return statement.replace("INTEGER PRIMARY KEY", "BIGINT PRIMARY KEY")
