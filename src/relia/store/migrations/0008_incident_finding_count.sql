-- relia store schema, version 8: how many findings ever joined an incident. finding_ids holds
-- only the newest of each key (relia.incidents.correlate.MAX_FINDINGS_PER_KEY), so the count is
-- stored apart. NULL in rows written before this version, which listed every finding: read as
-- the length of finding_ids (Incident).
ALTER TABLE incidents ADD COLUMN finding_count BIGINT;
