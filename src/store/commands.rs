//! Control commands from the web page: stop a trial, enqueue a configuration, pause, resume.
//!
//! The server only inserts rows, through its own one-connection pool; the coordinator reads the
//! pending ones (`Store::pending_commands`), applies them, and marks each done in the same
//! transaction as its effects (`Write::CommandDone`). So trial state keeps a single writer, and
//! a command sent while no coordinator runs waits for the next one. SQLite's busy timeout
//! serialises the server's short inserts with the coordinator's commits.

use super::{base_options, now_ms, Result, StoreError};
use crate::space::Params;
use serde_json::{json, Value};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use std::path::Path;

/// What a command asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Stop a running trial; it ends PRUNED with a "stopped from the web page" reason.
    Stop {
        trial: u64,
    },
    /// Queue a configuration (already validated against the study's space) as a waiting trial.
    Enqueue {
        params: Params,
    },
    /// Start no new trials until resumed; running ones go on.
    Pause,
    Resume,
}

impl Request {
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Stop { .. } => "stop",
            Request::Enqueue { .. } => "enqueue",
            Request::Pause => "pause",
            Request::Resume => "resume",
        }
    }

    fn payload(&self) -> Value {
        match self {
            Request::Stop { trial } => json!({ "trial": trial }),
            Request::Enqueue { params } => json!({ "params": params }),
            Request::Pause | Request::Resume => json!({}),
        }
    }

    /// The request a stored row describes, or why it cannot be read.
    fn decode(kind: &str, payload: &str) -> std::result::Result<Request, String> {
        let payload: Value = serde_json::from_str(payload).map_err(|e| format!("unreadable payload: {e}"))?;
        match kind {
            "stop" => payload["trial"].as_u64().map(|trial| Request::Stop { trial }).ok_or("no trial number".into()),
            "enqueue" => payload["params"]
                .as_object()
                .map(|params| Request::Enqueue { params: params.clone() })
                .ok_or("no params object".into()),
            "pause" => Ok(Request::Pause),
            "resume" => Ok(Request::Resume),
            other => Err(format!("unknown command `{other}`")),
        }
    }
}

/// A pending command as the coordinator reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub id: i64,
    /// The request, or why the row could not be understood (the command is then answered
    /// with that and never applied).
    pub request: std::result::Result<Request, String>,
}

/// A command as the page sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CommandStatus {
    pub id: i64,
    pub kind: String,
    pub payload: Value,
    pub created_at: i64,
    /// Unix ms when a coordinator applied it; None while pending.
    pub done_at: Option<i64>,
    pub result: Option<String>,
}

/// The server's write access: inserting commands, nothing else.
#[derive(Clone)]
pub struct CommandWriter {
    pool: SqlitePool,
}

impl CommandWriter {
    /// Connects on first use, so a read-only page never opens a write connection.
    pub fn open_lazy(path: &Path) -> CommandWriter {
        let pool = SqlitePoolOptions::new().max_connections(1).connect_lazy_with(base_options(path));
        CommandWriter { pool }
    }

    /// Stores a command for the study's coordinator; returns its id.
    pub async fn submit(&self, study_id: i64, request: &Request) -> Result<i64> {
        sqlx::query_scalar(
            "INSERT INTO commands (study_id, kind, payload, created_at) VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(study_id)
        .bind(request.kind())
        .bind(request.payload().to_string())
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(outdated)
    }
}

/// A database written by an older sweep has no `commands` table until a coordinator of this
/// version opens it (and applies the migration).
pub(super) fn outdated(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.message().contains("no such table: commands") => StoreError::Outdated,
        _ => StoreError::Sql(e),
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct StatusRow {
    id: i64,
    kind: String,
    payload: String,
    created_at: i64,
    done_at: Option<i64>,
    result: Option<String>,
}

impl StatusRow {
    pub(super) fn into_status(self) -> CommandStatus {
        CommandStatus {
            id: self.id,
            kind: self.kind,
            payload: serde_json::from_str(&self.payload).unwrap_or(Value::Null),
            created_at: self.created_at,
            done_at: self.done_at,
            result: self.result,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct PendingRow {
    id: i64,
    kind: String,
    payload: String,
}

impl PendingRow {
    pub(super) fn into_command(self) -> Command {
        Command { id: self.id, request: Request::decode(&self.kind, &self.payload) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_through_their_rows() {
        let params: Params = serde_json::from_value(json!({"x": 1.5, "opt": "sgd"})).unwrap();
        for r in [Request::Stop { trial: 7 }, Request::Enqueue { params }, Request::Pause, Request::Resume] {
            assert_eq!(Request::decode(r.kind(), &r.payload().to_string()), Ok(r));
        }
        assert!(Request::decode("stop", "{}").unwrap_err().contains("trial"));
        assert!(Request::decode("explode", "{}").unwrap_err().contains("unknown"));
    }
}
