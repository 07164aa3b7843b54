-- Indexes for the web page's summaries at 100,000 trials and more.
--
-- Retries and re-runs point at the trial they replace; the budget count asks which failures
-- were retried on every summary. A partial index holds only the few rows that re-run
-- something, so the coordinator's ordinary inserts do not pay for it.
CREATE INDEX trials_reruns ON trials (study_id, rerun_of) WHERE rerun_of IS NOT NULL;

-- The history plot reads (number, state, value) of every trial in number order: from this
-- covering index alone, instead of a table lookup per trial.
CREATE INDEX trials_outcomes ON trials (study_id, number, state, value);
