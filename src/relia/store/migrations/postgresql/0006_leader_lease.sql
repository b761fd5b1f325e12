-- relia store schema, version 6 (PostgreSQL only): the leader lease of HA replicas
-- (relia.ha.lease). One row per lease name. A replica holds the lease while expires_at, judged by
-- the database's clock and never a replica's, is in the future; each new holder increments
-- token, the fencing token the outbox checks before every send. Rows are never deleted, so
-- tokens only grow. IF NOT EXISTS: relia.ha.lease.Lease.ensure_schema runs this same text on a
-- database no store has migrated yet.
CREATE TABLE IF NOT EXISTS leader_lease (
    name       TEXT PRIMARY KEY,
    holder     TEXT,
    token      BIGINT NOT NULL DEFAULT 0,
    expires_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity'
);
