-- What the sampler learned when it proposed the trial (e.g. the GP's kernel parameters),
-- so the next proposal can start from it deterministically, also after a resume.
ALTER TABLE trials ADD COLUMN sampler_state TEXT;
