-- relia store schema, version 5: the notification outbox.
-- Every notification is written here before any sink sees it; the dispatcher delivers pending
-- rows and marks them. id is the dedup key "{sink}:{incident_id}:{version}": enqueueing the same
-- change twice keeps one row. payload is the incident snapshot as JSON text. Times are ms UTC.
-- No secondary index on purpose: the rows a dispatcher asks for are found by a scan of a small
-- table, and DuckDB turns updates of indexed columns (status, next_attempt_at) into a delete and
-- an insert that its constraint checks trip over inside one transaction.
CREATE TABLE outbox (
    id              VARCHAR PRIMARY KEY,
    sink            VARCHAR NOT NULL,
    incident_id     VARCHAR NOT NULL,
    version         BIGINT NOT NULL,
    payload         VARCHAR NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    delivered_at    BIGINT,
    last_error      VARCHAR,
    status          VARCHAR NOT NULL
);
