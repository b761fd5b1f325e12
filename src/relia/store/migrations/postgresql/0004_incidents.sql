-- relia store schema, version 4 (PostgreSQL; mirrors ../0004_incidents.sql): incidents.
-- One row per incident, replaced whole on every change (upsert by id). labels, finding_ids and
-- keys hold only strings and are JSONB; cause carries scores that may be NaN, which JSONB
-- rejects, so it is JSON text as Python writes it. Times are BIGINT ms UTC.
CREATE TABLE incidents (
    id          TEXT PRIMARY KEY,
    status      TEXT NOT NULL,
    title       TEXT NOT NULL,
    severity    TEXT NOT NULL,
    labels      JSONB NOT NULL,
    start_ts    BIGINT NOT NULL,
    end_ts      BIGINT NOT NULL,
    opened_at   BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    resolved_at BIGINT,
    version     BIGINT NOT NULL,
    finding_ids JSONB NOT NULL,
    keys        JSONB NOT NULL,
    cause       TEXT NOT NULL,
    merged_into TEXT
);

CREATE INDEX incidents_updated ON incidents (updated_at DESC);
