-- Every index on trials is a page the coordinator writes on every commit, and that commit is
-- the whole per-trial cost of a sweep (benches/overhead). Two indexes go:
--
-- * (study_id, state): counts and state filters read the covering (study_id, number, state,
--   value) index of 0005 instead, a scan of one narrow index even at 100,000 trials.
-- * (study_id, value) becomes partial: only trials that have a value, so starting a trial
--   no longer touches it. Sorting by value and the best trial ask for `value IS NOT NULL`,
--   which lets SQLite use it.
DROP INDEX trials_by_study_state;
DROP INDEX trials_by_study_value;
CREATE INDEX trials_by_study_value ON trials (study_id, value) WHERE value IS NOT NULL;
