"""The read models' tables: plain SQL that SQLite and PostgreSQL both speak.

Instants are BIGINT microseconds (UTC). ``position`` is the event's notification id in the
log. Bitemporal tables carry ``recorded_at`` (and ``to_recorded_at`` where a row can be
replaced) and ``published_at`` so every as-of / known-at question is an indexed query.
"""

INCIDENTS = {
    # Each incident's fields as they stood over recorded time.
    "tb_incidents": """
        CREATE TABLE IF NOT EXISTS tb_incidents (
            incident_id TEXT NOT NULL, position BIGINT NOT NULL,
            recorded_at BIGINT NOT NULL, to_recorded_at BIGINT,
            fields TEXT NOT NULL, country TEXT, admin1 TEXT, admin2 TEXT, perpetrator TEXT,
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
            position BIGINT PRIMARY KEY, incident_id TEXT NOT NULL, into_id TEXT NOT NULL,
            recorded_at BIGINT NOT NULL, reason TEXT, recorded_by TEXT NOT NULL)""",
}
INCIDENT_INDEXES = [
    "CREATE INDEX IF NOT EXISTS tb_incidents_current ON tb_incidents (recorded_at, to_recorded_at)",
    "CREATE INDEX IF NOT EXISTS tb_canonical_by_canonical ON tb_canonical (canonical_id, recorded_at)",
    "CREATE INDEX IF NOT EXISTS tb_merges_recorded ON tb_merges (recorded_at)",
]

CLAIMS = {
    "tb_claims": """
        CREATE TABLE IF NOT EXISTS tb_claims (
            claim_id TEXT PRIMARY KEY, incident_id TEXT NOT NULL, source TEXT NOT NULL,
            source_key TEXT NOT NULL, measure TEXT NOT NULL, grp TEXT NOT NULL,
            position BIGINT NOT NULL, recorded_at BIGINT NOT NULL)""",
    # The history: every version, retraction and correction as it was recorded.
    "tb_entries": """
        CREATE TABLE IF NOT EXISTS tb_entries (
            position BIGINT PRIMARY KEY, claim_id TEXT NOT NULL, kind TEXT NOT NULL,
            version INTEGER NOT NULL, low BIGINT, high BIGINT, best BIGINT, qualifier TEXT,
            published_at BIGINT NOT NULL, recorded_at BIGINT NOT NULL, report_id TEXT,
            reason TEXT, recorded_by TEXT NOT NULL, quote TEXT, note TEXT)""",
    # Each version's figures over recorded time: corrections close one row and open the next.
    "tb_figures": """
        CREATE TABLE IF NOT EXISTS tb_figures (
            claim_id TEXT NOT NULL, version INTEGER NOT NULL, position BIGINT NOT NULL,
            recorded_at BIGINT NOT NULL, to_recorded_at BIGINT,
            version_position BIGINT NOT NULL, kind TEXT NOT NULL,
            low BIGINT, high BIGINT, best BIGINT, qualifier TEXT, published_at BIGINT NOT NULL,
            incident_id TEXT NOT NULL, source_key TEXT NOT NULL, measure TEXT NOT NULL, grp TEXT NOT NULL,
            PRIMARY KEY (claim_id, version, position))""",
}
CLAIM_INDEXES = [
    "CREATE INDEX IF NOT EXISTS tb_claims_incident ON tb_claims (incident_id)",
    "CREATE INDEX IF NOT EXISTS tb_entries_claim ON tb_entries (claim_id, position)",
    "CREATE INDEX IF NOT EXISTS tb_entries_recorded ON tb_entries (recorded_at)",
    "CREATE INDEX IF NOT EXISTS tb_figures_incident ON tb_figures (measure, grp, incident_id, recorded_at)",
    "CREATE INDEX IF NOT EXISTS tb_figures_point ON tb_figures (measure, grp, recorded_at)",
]
