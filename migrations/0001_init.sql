-- One row per study; the study file's text and its search space are kept to detect
-- incompatible changes on resume.
CREATE TABLE studies (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    source      TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    space_hash  TEXT    NOT NULL,
    metric      TEXT    NOT NULL,
    direction   TEXT    NOT NULL CHECK (direction IN ('minimize', 'maximize')),
    budget      INTEGER NOT NULL,
    state       TEXT    NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'complete')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- One row per attempt. A retry or the re-run of an interrupted trial is a new row pointing
-- at the one it replaces.
CREATE TABLE trials (
    id          INTEGER PRIMARY KEY,
    study_id    INTEGER NOT NULL REFERENCES studies(id),
    number      INTEGER NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('waiting', 'running', 'complete', 'pruned', 'failed', 'interrupted')),
    params      TEXT    NOT NULL,
    attempt     INTEGER NOT NULL DEFAULT 1,
    rerun_of    INTEGER,
    device      TEXT,
    external_id TEXT,
    value       REAL,
    metrics     TEXT,
    last_step   INTEGER,
    reason      TEXT,
    stderr_tail TEXT,
    created_at  INTEGER NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER,
    UNIQUE (study_id, number)
);
CREATE INDEX trials_by_study_state ON trials (study_id, state);
CREATE INDEX trials_by_study_value ON trials (study_id, value);

-- Intermediate reports; idempotent per (trial, step, metric).
CREATE TABLE reports (
    trial_id   INTEGER NOT NULL REFERENCES trials(id),
    step       INTEGER NOT NULL,
    metric     TEXT    NOT NULL,
    value      REAL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (trial_id, step, metric)
) WITHOUT ROWID;
