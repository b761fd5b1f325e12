-- relia store schema, version 3 (PostgreSQL; mirrors ../0003_log_offsets.sql): log files that
-- relia up tails, written together in one transaction per engine tick, so that what was counted
-- and where reading stopped never disagree.

-- Per log file (its configured name): an opaque state blob written by relia.logs.engine.
CREATE TABLE log_state (
    file       TEXT PRIMARY KEY,
    state      BYTEA NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- Lines per template per window (window_start: ms UTC, the window's start), per log file.
CREATE TABLE log_counts (
    file         TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    template_id  BIGINT NOT NULL,
    count        BIGINT NOT NULL,
    PRIMARY KEY (file, window_start, template_id)
);
