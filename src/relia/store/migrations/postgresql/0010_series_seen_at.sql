-- relia store schema, version 10 (PostgreSQL; mirrors ../0010_series_seen_at.sql): when a series
-- was last received, by any replica, as the wall clock of the writer in ms since the Unix epoch
-- (UTC). Idle series forgetting (Store.forget_series) deletes the series not seen for
-- forget_after by this time, never by the ts of their samples (a source may back-fill old ones).
-- Rows stored before this version get the time of the migration (a stable default: filled
-- without rewriting the table), so nothing is forgotten until forget_after after the upgrade.
ALTER TABLE series
    ADD COLUMN seen_at BIGINT NOT NULL DEFAULT (floor(extract(epoch FROM now()) * 1000))::bigint;
ALTER TABLE series ALTER COLUMN seen_at DROP DEFAULT;
-- No index on seen_at: forget_series reads series once per retention round (an hour), a scan
-- of about a second at a million series, while an index would make every mark_series_seen
-- update maintain one more index (measured: a quarter slower at a million series).
