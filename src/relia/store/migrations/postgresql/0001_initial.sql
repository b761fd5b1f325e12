-- relia store schema, version 1 (PostgreSQL; mirrors ../0001_initial.sql).
-- Times are BIGINT milliseconds since the Unix epoch (UTC), as everywhere inside relia.

-- Every series relia has seen. Labels are a JSON object of strings (canonical: sorted keys,
-- __name__ dropped).
CREATE TABLE series (
    id         BIGINT PRIMARY KEY,
    name       TEXT NOT NULL,
    labels     JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The newest samples of each series (a bounded window, trimmed on every append).
-- Unlike DuckDB, PostgreSQL's B-tree primary key is what makes the set-based upsert
-- (INSERT ... ON CONFLICT) and the trim (an index walk from the oldest end) cheap.
-- value is never NULL: NaN marks a missing value.
CREATE TABLE samples (
    series_id BIGINT NOT NULL,
    ts        BIGINT NOT NULL,
    value     DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (series_id, ts)
);

-- How many samples each series has stored (PostgreSQL only). The store keeps it exact in the
-- transaction that inserts or trims, so that trimming a series to its newest samples_per_series
-- touches only the rows that go instead of counting every stored row of every touched series.
CREATE TABLE sample_counts (
    series_id BIGINT PRIMARY KEY,
    n         BIGINT NOT NULL
);

-- The newest detector checkpoint of each series (an opaque blob written by the engine).
CREATE TABLE checkpoints (
    series_id  BIGINT PRIMARY KEY,
    blob       BYTEA NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- Findings by id; a finding whose window grew replaces its row. evidence is JSON text as Python
-- writes it (NaN and Infinity allowed), which JSONB would reject, so it is TEXT.
CREATE TABLE findings (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    key        TEXT NOT NULL,
    series_id  BIGINT,
    start_ts   BIGINT NOT NULL,
    end_ts     BIGINT NOT NULL,
    score      DOUBLE PRECISION NOT NULL,
    severity   TEXT NOT NULL,
    detector   TEXT NOT NULL,
    summary    TEXT NOT NULL,
    evidence   TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- findings(since=..., series_id=...) read newest first.
CREATE INDEX findings_end ON findings (end_ts DESC, start_ts DESC);
CREATE INDEX findings_series ON findings (series_id, end_ts DESC);
