-- relia store schema, version 11: the order in which findings were stored. Each write of a
-- finding (new, or replaced as it grows) takes the next numbers of the one-row counter
-- findings_seq in its own transaction, so a reader that remembers the largest number it has
-- read finds everything stored after it (HA: the leader's feed of every replica's findings),
-- whatever the findings' times and however many there are. Rows stored before this version are
-- numbered by when they were last written.
ALTER TABLE findings ADD COLUMN stored_seq BIGINT;
UPDATE findings SET stored_seq = s.n
FROM (SELECT id, row_number() OVER (ORDER BY updated_at, id) AS n FROM findings) AS s
WHERE findings.id = s.id;
CREATE TABLE findings_seq (last BIGINT NOT NULL);
INSERT INTO findings_seq SELECT coalesce(max(stored_seq), 0) FROM findings;
