-- relia store schema, version 3: log files that relia up tails.
-- Written together in one transaction per engine tick, so that what was counted and where reading
-- stopped never disagree: after a crash the tailer resumes exactly after the counted lines.

-- Per log file (its configured name): an opaque state blob written by relia.logs.engine (read
-- offset, inode, reader counts, header layout, template miner).
CREATE TABLE log_state (
    file       VARCHAR PRIMARY KEY,
    state      BLOB NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- Lines per template per window (window_start: ms UTC, the window's start), per log file.
CREATE TABLE log_counts (
    file         VARCHAR NOT NULL,
    window_start BIGINT NOT NULL,
    template_id  BIGINT NOT NULL,
    count        BIGINT NOT NULL,
    PRIMARY KEY (file, window_start, template_id)
);
