-- relia store schema, version 7 (PostgreSQL only; the embedded store scans its columns instead):
-- what history retention (Store.prune_history) deletes is found by an index, not by a scan of
-- tables that hold months of rows. Partial indexes: they hold only the rows retention may delete,
-- so the dispatcher's updates of pending items and the correlator's of open incidents do not
-- touch them. Findings are found by findings_end (0001); the current version of an incident by
-- the incidents' primary key.
CREATE INDEX outbox_finished ON outbox ((coalesce(delivered_at, next_attempt_at)))
    WHERE status <> 'pending';
CREATE INDEX incidents_resolved ON incidents (resolved_at) WHERE status = 'resolved';
