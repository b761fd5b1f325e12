-- relia store schema, version 9 (PostgreSQL): the outbox by incident and sink, for every status.
-- A sink with a min_severity hears about an incident below it only if it heard about it before
-- (Store.notified_incidents: any item of that sink and incident), and history retention keeps
-- each sink's newest item of every remaining incident; both look rows up by incident and sink
-- among months of delivered ones, which the partial indexes of 0005 (pending rows only) do not
-- hold.
CREATE INDEX outbox_incident_sink ON outbox (incident_id, sink, version);
