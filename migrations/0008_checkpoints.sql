-- Resume points. `checkpoint_step`: the last step whose checkpoint the trial's worker declared
-- durable, recorded in the same commit as that report (a re-run inherits it). `resumed_from`:
-- the step a re-run started from (its reports up to there were copied from the attempt it
-- replaces, so its curve is one curve).
ALTER TABLE trials ADD COLUMN checkpoint_step INTEGER;
ALTER TABLE trials ADD COLUMN resumed_from INTEGER;
-- A pruned trial that was paused (`[pruner] mode = "pause"`), not stopped: a re-run resumes it
-- from its checkpoint if it is promoted; if not, it stays pruned.
ALTER TABLE trials ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
-- The runs folder of the study's trials (their checkpoints and models), as its last run saw
-- it, so `sweep status` can say how much they hold.
ALTER TABLE studies ADD COLUMN runs_dir TEXT;
