-- relia store schema, version 4: incidents (relia.incidents.correlate).
-- One row per incident, replaced whole on every change (upsert by id). Lists and mappings are
-- JSON text (finding ids, keys, labels, the ranked cause). Times are BIGINT ms UTC: start_ts and
-- end_ts span the findings, opened_at/updated_at/resolved_at are the engine's clock.
CREATE TABLE incidents (
    id          VARCHAR PRIMARY KEY,
    status      VARCHAR NOT NULL,
    title       VARCHAR NOT NULL,
    severity    VARCHAR NOT NULL,
    labels      VARCHAR NOT NULL,
    start_ts    BIGINT NOT NULL,
    end_ts      BIGINT NOT NULL,
    opened_at   BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    resolved_at BIGINT,
    version     BIGINT NOT NULL,
    finding_ids VARCHAR NOT NULL,
    keys        VARCHAR NOT NULL,
    cause       VARCHAR NOT NULL,
    merged_into VARCHAR
);
