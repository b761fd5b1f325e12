-- relia store schema, version 2 (PostgreSQL; mirrors ../0002_sample_band.sql): what the detector
-- said about each stored sample: its score, the forecast (expected) and the band of normal values
-- (lower, upper). NULL where the detector gave none (warming up, a sample stored without
-- scoring, rows written before this version).
ALTER TABLE samples ADD COLUMN score DOUBLE PRECISION;
ALTER TABLE samples ADD COLUMN expected DOUBLE PRECISION;
ALTER TABLE samples ADD COLUMN lower DOUBLE PRECISION;
ALTER TABLE samples ADD COLUMN upper DOUBLE PRECISION;
