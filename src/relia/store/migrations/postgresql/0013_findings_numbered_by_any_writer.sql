-- relia store schema, version 13 (PostgreSQL; mirrors ../0013_findings_numbered_by_any_writer.sql):
-- every write of a finding gets its store order number, whichever relia writes it. A replica
-- still running relia from before schema 11 (a rolling upgrade) inserts findings without
-- stored_seq and replaces them without a new number: the HA leader's feed (findings_after,
-- stored_seq > n) never saw those writes, so their incidents and notifications were lost.
-- A trigger numbers such a write from findings_seq, whose row stays locked until the writing
-- transaction commits, as relia's own writes take their numbers, so writes still commit in
-- number order. relia's own writes bring a new, larger number: the trigger leaves them alone.
-- Rows such a replica stored before this version are numbered now, after every other.
-- This version also marks the RLC3 detector checkpoint format: a relia at schema 12 or below
-- refuses this store as written by a newer relia instead of overwriting its checkpoints.
WITH todo AS (
    SELECT id, row_number() OVER (ORDER BY updated_at, id) AS n
    FROM findings WHERE stored_seq IS NULL
)
UPDATE findings AS f SET stored_seq = (SELECT last FROM findings_seq) + todo.n
FROM todo WHERE f.id = todo.id;
UPDATE findings_seq SET last = greatest(last, (SELECT coalesce(max(stored_seq), 0) FROM findings));
CREATE FUNCTION relia_number_finding_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.stored_seq IS NULL OR (TG_OP = 'UPDATE' AND NEW.stored_seq = OLD.stored_seq) THEN
        UPDATE findings_seq SET last = last + 1 RETURNING last INTO NEW.stored_seq;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER findings_numbered BEFORE INSERT OR UPDATE ON findings
FOR EACH ROW EXECUTE FUNCTION relia_number_finding_write();
