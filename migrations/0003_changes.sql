-- Every write the coordinator makes, in commit order: readers (the web page's live events)
-- follow a study by sequence number instead of rescanning its trials.
CREATE TABLE changes (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    study_id INTEGER NOT NULL REFERENCES studies(id),
    number   INTEGER NOT NULL,
    kind     TEXT    NOT NULL CHECK (kind IN ('insert', 'start', 'report', 'finish')),
    step     INTEGER,
    at       INTEGER NOT NULL
);
CREATE INDEX changes_by_study ON changes (study_id, seq);
