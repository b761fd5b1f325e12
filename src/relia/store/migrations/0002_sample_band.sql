-- relia store schema, version 2: what the detector said about each stored sample.
-- Every anomaly carries what was expected: the forecast (expected) and the band of normal values
-- (lower, upper) the detector had for the point, and the point's score. NULL where the detector
-- gave none (warming up, a sample stored without scoring, rows written before this version).
ALTER TABLE samples ADD COLUMN score DOUBLE;
ALTER TABLE samples ADD COLUMN expected DOUBLE;
ALTER TABLE samples ADD COLUMN lower DOUBLE;
ALTER TABLE samples ADD COLUMN upper DOUBLE;
