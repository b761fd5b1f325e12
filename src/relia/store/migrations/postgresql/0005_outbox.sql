-- relia store schema, version 5 (PostgreSQL; mirrors ../0005_outbox.sql): the notification
-- outbox. id is the dedup key "{sink}:{incident_id}:{version}": enqueueing the same change twice
-- keeps one row. payload is the incident snapshot as JSON text (its cause may hold NaN, which
-- JSONB rejects). Times are ms UTC.
CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    sink            TEXT NOT NULL,
    incident_id     TEXT NOT NULL,
    version         BIGINT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    delivered_at    BIGINT,
    last_error      TEXT,
    status          TEXT NOT NULL
);

-- What a dispatcher asks for: the pending rows of one sink (a partial index stays small while
-- delivered rows pile up), and the per-incident order check.
CREATE INDEX outbox_pending ON outbox (sink, next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbox_incident ON outbox (sink, incident_id, version) WHERE status = 'pending';
