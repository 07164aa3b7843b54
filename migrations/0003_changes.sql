-- Every write the coordinator makes, in commit order: readers (the web page's live events)
-- follow a study by sequence number instead of rescanning its trials. No index beyond the
-- rowid: readers only ask for rows after a sequence number, a range of the primary key, and
-- each index would cost the coordinator a page write per commit.
CREATE TABLE changes (
    seq      INTEGER PRIMARY KEY, -- the rowid: increases with every insert; rows are never deleted
    study_id INTEGER NOT NULL REFERENCES studies(id),
    number   INTEGER NOT NULL,
    kind     TEXT    NOT NULL CHECK (kind IN ('insert', 'start', 'report', 'finish')),
    step     INTEGER,
    at       INTEGER NOT NULL
);
