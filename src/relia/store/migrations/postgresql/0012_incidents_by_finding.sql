-- relia store schema, version 12 (PostgreSQL; mirrors ../0012_incidents_by_finding.sql):
-- finding an incident by one of its finding ids (the correlator recalls the stored incident
-- that lists a finding it forgot: finding_ids @> '["id"]'). A GIN index on finding_ids answers
-- that containment without reading every stored incident's list (jsonb_path_ops: smaller, and
-- containment is all it is asked).
CREATE INDEX incidents_by_finding ON incidents USING GIN (finding_ids jsonb_path_ops);
