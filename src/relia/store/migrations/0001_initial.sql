-- relia store schema, version 1.
-- Times are BIGINT milliseconds since the Unix epoch (UTC), as everywhere inside relia.

-- Every series relia has seen. Labels are a JSON object with sorted keys, so equal label sets
-- are equal text.
CREATE TABLE series (
    id         BIGINT PRIMARY KEY,
    name       VARCHAR NOT NULL,
    labels     JSON NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- The newest samples of each series (a bounded window, trimmed on every append).
-- No primary key on purpose: DuckDB's index makes the set-based trim many times slower; the
-- store keeps (series_id, ts) unique itself (the batch is deduplicated and replaces stored rows).
-- value is never NULL: NaN marks a missing value.
CREATE TABLE samples (
    series_id BIGINT NOT NULL,
    ts        BIGINT NOT NULL,
    value     DOUBLE NOT NULL
);

-- The newest detector checkpoint of each series (an opaque blob written by the engine).
CREATE TABLE checkpoints (
    series_id  BIGINT PRIMARY KEY,
    blob       BLOB NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- Findings by id; a finding whose window grew replaces its row. evidence is JSON text as Python
-- writes it (NaN and Infinity allowed), so it is VARCHAR rather than DuckDB's strict JSON.
CREATE TABLE findings (
    id         VARCHAR PRIMARY KEY,
    kind       VARCHAR NOT NULL,
    key        VARCHAR NOT NULL,
    series_id  BIGINT,
    start_ts   BIGINT NOT NULL,
    end_ts     BIGINT NOT NULL,
    score      DOUBLE NOT NULL,
    severity   VARCHAR NOT NULL,
    detector   VARCHAR NOT NULL,
    summary    VARCHAR NOT NULL,
    evidence   VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
