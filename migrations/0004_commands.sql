-- Requests from the web page (stop a trial, enqueue a configuration, pause, resume). The
-- server only inserts rows here; the coordinator applies each pending one and marks it done
-- in the same transaction as its effects, so trial state keeps one writer.
CREATE TABLE commands (
    id         INTEGER PRIMARY KEY,
    study_id   INTEGER NOT NULL REFERENCES studies(id),
    kind       TEXT    NOT NULL CHECK (kind IN ('stop', 'enqueue', 'pause', 'resume')),
    payload    TEXT    NOT NULL,  -- JSON: {"trial": N} for stop, {"params": {...}} for enqueue, {} otherwise
    created_at INTEGER NOT NULL,
    done_at    INTEGER,           -- NULL while pending
    result     TEXT               -- what the coordinator did, for the page
);
-- The coordinator polls for pending commands several times a second: a small partial index.
CREATE INDEX commands_pending ON commands (study_id, id) WHERE done_at IS NULL;

-- Paused studies start no new trials (running ones go on); survives a coordinator restart.
ALTER TABLE studies ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
