-- relia store schema, version 11 (PostgreSQL; mirrors ../0011_findings_stored_seq.sql): the
-- order in which findings were stored. Each write of findings (new, or replaced as they grow)
-- first takes the next numbers from the one-row counter findings_seq; the row stays locked until
-- that transaction commits, so replicas writing at once commit their numbers in order, and a
-- reader that remembers the largest number it has read finds everything committed after it (the
-- HA leader's feed of every replica's findings), whatever the findings' times and however many
-- there are. (A plain sequence would not do: a number taken earlier can commit later, after a
-- reader has moved past it.) Rows stored before this version are numbered by when they were
-- last written.
ALTER TABLE findings ADD COLUMN stored_seq BIGINT;
UPDATE findings AS f SET stored_seq = s.n
FROM (SELECT id, row_number() OVER (ORDER BY updated_at, id) AS n FROM findings) AS s
WHERE f.id = s.id;
CREATE TABLE findings_seq (last BIGINT NOT NULL);
INSERT INTO findings_seq SELECT coalesce(max(stored_seq), 0) FROM findings;
CREATE INDEX findings_by_stored_seq ON findings (stored_seq);
