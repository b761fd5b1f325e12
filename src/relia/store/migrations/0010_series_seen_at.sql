-- relia store schema, version 10: when a series was last received, by any replica, as the wall
-- clock of the writer in ms since the Unix epoch (UTC). Idle series forgetting
-- (Store.forget_series) deletes the series not seen for forget_after by this time, never by the
-- ts of their samples (a source may back-fill old ones). Rows stored before this version get the
-- time of the migration, so nothing is forgotten until forget_after after the upgrade. The store
-- writes it on every registration; it stays nullable here (DuckDB cannot add NOT NULL in the
-- transaction that fills the column), and a NULL row is never forgotten.
ALTER TABLE series ADD COLUMN seen_at BIGINT DEFAULT epoch_ms(current_timestamp);
ALTER TABLE series ALTER COLUMN seen_at DROP DEFAULT;
