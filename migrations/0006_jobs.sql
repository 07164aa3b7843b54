-- The cluster job that runs a trial (a Slurm job id), so a restarted coordinator re-adopts
-- jobs still running instead of submitting duplicates. NULL for local trials.
ALTER TABLE trials ADD COLUMN job TEXT;
