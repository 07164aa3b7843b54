-- Every index on trials is a page the coordinator writes on every commit, and that commit is
-- the whole per-trial cost of a sweep (benches/overhead). The (study_id, value) index becomes
-- partial: only trials that have a value, so starting a trial no longer touches it. A commit
-- of the coordinator (one trial finished, the next started) then writes 5.3 pages instead of
-- 7.0. Sorting by value and the best trial ask for `value IS NOT NULL`, which lets SQLite use it.
DROP INDEX trials_by_study_value;
CREATE INDEX trials_by_study_value ON trials (study_id, value) WHERE value IS NOT NULL;
