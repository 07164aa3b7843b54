//! The SQLite store: the only module that speaks SQL.
//!
//! Durability: WAL journal with `synchronous = FULL`, so every commit is fsynced before it
//! returns; what `apply` committed survives a killed process and a power loss. The coordinator
//! hands over all the writes of one turn of its loop as one batch (group commit): one
//! transaction and one fsync however many trials changed. One coordinator writes; readers
//! (`sweep status`, the web page) may read at the same time.

mod commands;
mod import;
mod reader;
mod rows;

use crate::trial::{NewTrial, Trial, TrialState, Update};
use rows::{ReportRow, TrialRow, TRIAL_COLUMNS};
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Arguments, ConnectOptions, Connection, SqliteConnection};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use commands::{Command, CommandStatus, CommandWriter, Request};
pub use import::Imported;
pub use reader::{Change, Counts, Reader, SortKey, TrialQuery};
pub use rows::{StudyRecord, StudyState};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no database at {0} (run a study first, or pass --db)")]
    Missing(PathBuf),
    #[error("{0} is not a sweep database (or a coordinator is creating it right now)")]
    NotSweep(PathBuf),
    #[error("{0} is not a SQLite database (is it the right file?)")]
    NotSqlite(PathBuf),
    #[error(
        "{path} was written by an older sweep (schema {have}; this one reads {need}): run a study in it once \
         with this sweep (`sweep run`), which upgrades it, then read it"
    )]
    OldSchema { path: PathBuf, have: i64, need: i64 },
    #[error("cannot open database {path}: {detail}")]
    Open { path: PathBuf, detail: String },
    #[error("cannot apply database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database holds a malformed {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("this database predates control commands: run a study on it with this version of sweep first")]
    Outdated,
    #[error("{0} already exists; back up to a new path")]
    BackupExists(PathBuf),
    #[error("cannot write the backup {dest}: {detail}")]
    Backup { dest: PathBuf, detail: String },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A new study's row.
#[derive(Debug, Clone)]
pub struct NewStudy<'a> {
    pub name: &'a str,
    pub source: &'a str,
    pub fingerprint: &'a crate::study::Fingerprint,
    pub space_hash: &'a str,
    pub metric: &'a str,
    pub direction: crate::objective::Direction,
    pub budget: u32,
}

/// One write of a turn's batch: a trial's update, or the coordinator's answer to a command.
#[derive(Debug, Clone)]
pub enum Write {
    /// A change of one trial (the same value `History::apply` made in memory).
    Trial(Update),
    /// A control command was applied (or refused); `result` says what happened.
    CommandDone { id: i64, result: String },
    /// The study stops (true) or resumes (false) starting new trials.
    Paused(bool),
}

impl From<Update> for Write {
    fn from(update: Update) -> Write {
        Write::Trial(update)
    }
}

/// One reported value of one trial.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub number: u64,
    pub step: i64,
    pub metric: String,
    pub value: Option<f64>,
}

pub struct Store {
    conn: SqliteConnection,
}

/// Read-only opens cannot migrate: a database behind this binary's migrations is refused with
/// a way out, instead of failing later on a missing column.
pub(crate) async fn check_schema(conn: &mut SqliteConnection, path: &Path) -> Result<()> {
    let have: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut *conn)
        .await
        .unwrap_or(None);
    let need = sqlx::migrate!("./migrations").iter().map(|m| m.version).max().unwrap_or(0);
    match have {
        Some(have) if have < need => Err(StoreError::OldSchema { path: path.to_path_buf(), have, need }),
        _ => Ok(()),
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Store {
    /// Opens the database for writing, creating it and applying migrations as needed.
    pub async fn open(path: &Path) -> Result<Store> {
        let options = base_options(path).create_if_missing(true);
        let mut conn = connect(path, options).await?;
        sqlx::migrate!("./migrations").run(&mut conn).await?;
        Ok(Store { conn })
    }

    /// Opens an existing database for reading only.
    pub async fn open_read_only(path: &Path) -> Result<Store> {
        if !path.exists() {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        let mut conn = connect(path, base_options(path).read_only(true)).await?;
        let tables: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'studies'")
                .fetch_one(&mut conn)
                .await?;
        if tables == 0 {
            return Err(StoreError::NotSweep(path.to_path_buf()));
        }
        check_schema(&mut conn, path).await?;
        Ok(Store { conn })
    }

    /// Folds the write-ahead log back into the database file and closes the connection, so the
    /// `.db` file alone holds every trial: copied to a laptop, attached to a bug report, or
    /// opened after its `-wal` file was lost. Every exit that sweep controls ends with this.
    pub async fn close(mut self) -> Result<()> {
        let checkpoint = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut self.conn).await;
        self.conn.close().await?;
        checkpoint?;
        Ok(())
    }

    /// What `close` does, for a database this process only read: a reader cannot fold the log
    /// itself, so a short write connection does. Call it only when no coordinator holds the
    /// database (it would wait for the coordinator's commits). Best effort: a file this user
    /// may not write keeps its log, which SQLite still reads.
    pub async fn checkpoint(path: &Path) {
        let options = base_options(path).create_if_missing(false);
        let Ok(mut conn) = options.connect().await else { return };
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut conn).await {
            tracing::debug!("no checkpoint of {}: {e}", path.display());
        }
        let _ = conn.close().await;
    }

    /// Writes a consistent copy of the database at `src` to `dest` (SQLite's `VACUUM INTO`, one
    /// read transaction), safe while a coordinator writes to `src`: the copy holds every trial
    /// committed before it began, in one file with no log beside it. Written to a temporary
    /// name and renamed, so `dest` is never half a database.
    pub async fn backup(src: &Path, dest: &Path) -> Result<()> {
        if dest.exists() {
            return Err(StoreError::BackupExists(dest.to_path_buf()));
        }
        let mut store = Store::open_read_only(src).await?;
        let partial = PathBuf::from(format!("{}.partial", dest.display()));
        let _ = std::fs::remove_file(&partial);
        let written = write_backup(&mut store.conn, &partial, dest).await;
        let _ = store.conn.close().await;
        if written.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        written.map_err(|detail| StoreError::Backup { dest: dest.to_path_buf(), detail })
    }

    pub async fn find_study(&mut self, name: &str) -> Result<Option<StudyRecord>> {
        rows::study_named(&mut self.conn, name).await
    }

    pub async fn studies(&mut self) -> Result<Vec<StudyRecord>> {
        rows::studies(&mut self.conn).await
    }

    /// Creates a study with its enqueued trials, all or nothing.
    pub async fn create_study(&mut self, study: &NewStudy<'_>, enqueued: &[NewTrial]) -> Result<StudyRecord> {
        let now = now_ms();
        let mut tx = self.conn.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO studies (name, source, fingerprint, space_hash, metric, direction, budget, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(study.name)
        .bind(study.source)
        .bind(serde_json::to_string(study.fingerprint).expect("a fingerprint serializes"))
        .bind(study.space_hash)
        .bind(study.metric)
        .bind(study.direction.as_str())
        .bind(study.budget as i64)
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        if !enqueued.is_empty() {
            let mut batch = Batch::default();
            for t in enqueued {
                batch.update(id, &Update::Insert(t.clone()), now);
            }
            sqlx::query_with(&batch.sql, batch.args).persistent(false).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(self.find_study(study.name).await?.expect("study just inserted"))
    }

    /// Records the study file used by this run (only budget-level changes get here).
    pub async fn update_study(&mut self, id: i64, source: &str, budget: u32) -> Result<()> {
        sqlx::query("UPDATE studies SET source = ?, budget = ?, updated_at = ? WHERE id = ?")
            .bind(source)
            .bind(budget as i64)
            .bind(now_ms())
            .bind(id)
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }

    /// Records where this run's trials keep their files.
    pub async fn set_runs_dir(&mut self, id: i64, runs: &Path) -> Result<()> {
        sqlx::query("UPDATE studies SET runs_dir = ? WHERE id = ?")
            .bind(runs.display().to_string())
            .bind(id)
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }

    pub async fn set_study_state(&mut self, id: i64, state: StudyState) -> Result<()> {
        sqlx::query("UPDATE studies SET state = ?, updated_at = ? WHERE id = ?")
            .bind(state.as_str())
            .bind(now_ms())
            .bind(id)
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }

    /// Every trial of a study in number order, each with the curves of `objectives` (metric
    /// names, the first objective's first).
    pub async fn trials(&mut self, study_id: i64, objectives: &[&str]) -> Result<Vec<Trial>> {
        let sql = format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = ? ORDER BY number");
        let rows: Vec<TrialRow> = sqlx::query_as(&sql).bind(study_id).fetch_all(&mut self.conn).await?;
        let marks = vec!["?"; objectives.len()].join(", ");
        let sql = format!(
            "SELECT r.trial_id, r.step, r.metric, r.value FROM reports r JOIN trials t ON t.id = r.trial_id
             WHERE t.study_id = ? AND r.metric IN ({marks}) ORDER BY r.trial_id, r.step"
        );
        let mut query = sqlx::query_as(&sql).bind(study_id);
        for metric in objectives {
            query = query.bind(*metric);
        }
        let points: Vec<(i64, i64, String, Option<f64>)> = query.fetch_all(&mut self.conn).await?;
        let mut curves: BTreeMap<i64, Vec<Vec<(i64, f64)>>> = BTreeMap::new();
        for (trial_id, step, metric, value) in points {
            let Some(k) = objectives.iter().position(|o| *o == metric) else { continue };
            let trial = curves.entry(trial_id).or_insert_with(|| vec![Vec::new(); objectives.len()]);
            trial[k].push((step, value.unwrap_or(f64::NAN)));
        }
        rows.into_iter()
            .map(|r| {
                let trial = curves.remove(&r.id).unwrap_or_else(|| vec![Vec::new(); objectives.len()]);
                r.into_trial(trial)
            })
            .collect()
    }

    /// Every report of every trial of a study.
    pub async fn reports(&mut self, study_id: i64) -> Result<Vec<Report>> {
        let rows: Vec<ReportRow> = sqlx::query_as(
            "SELECT t.number, r.step, r.metric, r.value FROM reports r JOIN trials t ON t.id = r.trial_id
             WHERE t.study_id = ? ORDER BY r.trial_id, r.step, r.metric",
        )
        .bind(study_id)
        .fetch_all(&mut self.conn)
        .await?;
        Ok(rows.into_iter().map(ReportRow::into_report).collect())
    }

    /// Control commands not applied yet, oldest first.
    pub async fn pending_commands(&mut self, study_id: i64) -> Result<Vec<Command>> {
        let rows: Vec<commands::PendingRow> =
            sqlx::query_as("SELECT id, kind, payload FROM commands WHERE study_id = ? AND done_at IS NULL ORDER BY id")
                .bind(study_id)
                .fetch_all(&mut self.conn)
                .await?;
        Ok(rows.into_iter().map(commands::PendingRow::into_command).collect())
    }

    /// Applies a batch of writes in one transaction: all of them or none. The batch goes to
    /// SQLite as one multi-statement query, so a turn of the coordinator costs one round trip
    /// to the database thread and one fsync.
    pub async fn apply(&mut self, study_id: i64, writes: &[Write]) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::default();
        batch.sql.push_str("BEGIN IMMEDIATE;");
        let now = now_ms();
        for w in writes {
            batch.push(study_id, w, now);
        }
        batch.sql.push_str("COMMIT;");
        let result = sqlx::query_with(&batch.sql, batch.args).execute(&mut self.conn).await;
        if let Err(e) = result {
            // A statement failed after BEGIN: undo the rest so nothing half-written stays.
            let _ = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
            return Err(e.into());
        }
        Ok(())
    }
}

/// `VACUUM INTO` `partial`, made a WAL database like every sweep database (the copy comes out
/// in rollback-journal mode, which sweep's read-only opens cannot switch), synced, then renamed
/// to `dest` and the rename synced, so `dest` is a whole database or absent.
async fn write_backup(conn: &mut SqliteConnection, partial: &Path, dest: &Path) -> std::result::Result<(), String> {
    let text = |e: &dyn std::fmt::Display| e.to_string();
    sqlx::query("VACUUM INTO ?").bind(partial.display().to_string()).execute(conn).await.map_err(|e| text(&e))?;
    // Closing the one connection to the copy leaves no log beside it.
    let copy = base_options(partial).connect().await.map_err(|e| text(&e))?;
    copy.close().await.map_err(|e| text(&e))?;
    std::fs::File::open(partial).and_then(|f| f.sync_all()).map_err(|e| text(&e))?;
    std::fs::rename(partial, dest).map_err(|e| text(&e))?;
    let folder = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(folder).and_then(|f| f.sync_all()).map_err(|e| text(&e))
}

fn base_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        .disable_statement_logging()
}

async fn connect(path: &Path, options: SqliteConnectOptions) -> Result<SqliteConnection> {
    let mut conn = options.connect().await.map_err(|source| open_error(path, source))?;
    probe(&mut conn, path).await?;
    Ok(conn)
}

/// SQLite reads a file only at the first query: this one makes a file that is not a database
/// say so once, here, instead of as a migration's or a query's error.
pub(crate) async fn probe(conn: &mut SqliteConnection, path: &Path) -> Result<()> {
    match sqlx::query("SELECT count(*) FROM sqlite_master").fetch_one(conn).await {
        Ok(_) => Ok(()),
        Err(source) => Err(open_error(path, source)),
    }
}

/// SQLITE_NOTADB (26) means the file is something else; the rest keep sqlx's words.
pub(crate) fn open_error(path: &Path, source: sqlx::Error) -> StoreError {
    match source.as_database_error().and_then(|e| e.code()) {
        Some(code) if code == "26" => StoreError::NotSqlite(path.to_path_buf()),
        _ => StoreError::Open { path: path.to_path_buf(), detail: source.to_string() },
    }
}

/// SQL text and its arguments, built statement by statement.
#[derive(Default)]
struct Batch {
    sql: String,
    args: SqliteArguments<'static>,
}

impl Batch {
    fn statement(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self.sql.push(';');
        self
    }

    fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: sqlx::Encode<'static, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + 'static,
    {
        self.args.add(value).expect("plain values encode");
        self
    }

    fn push(&mut self, study_id: i64, write: &Write, now: i64) {
        match write {
            Write::Trial(update) => self.update(study_id, update, now),
            // Not trial changes: the page learns of these from the study and command rows.
            Write::CommandDone { id, result } => {
                self.statement("UPDATE commands SET done_at = ?, result = ? WHERE id = ?")
                    .bind(now)
                    .bind(result.clone())
                    .bind(*id);
            }
            Write::Paused(paused) => {
                self.statement("UPDATE studies SET paused = ?, updated_at = ? WHERE id = ?")
                    .bind(*paused)
                    .bind(now)
                    .bind(study_id);
            }
        }
    }

    /// A row in the change log the page follows.
    fn change(&mut self, study_id: i64, number: u64, kind: &'static str, step: Option<i64>, now: i64) {
        self.statement("INSERT INTO changes (study_id, number, kind, step, at) VALUES (?, ?, ?, ?, ?)")
            .bind(study_id)
            .bind(number as i64)
            .bind(kind)
            .bind(step)
            .bind(now);
    }

    /// A trial's update, logged as a change unless the page does not show it.
    fn update(&mut self, study_id: i64, update: &Update, now: i64) {
        let number = update.number();
        match update {
            Update::Insert(t) => {
                self.change(study_id, number, "insert", None, now);
                let started = (t.state == TrialState::Running).then_some(now);
                self.statement(
                    "INSERT INTO trials (study_id, number, state, params, attempt, rerun_of, device, sampler_state,
                     created_at, started_at, checkpoint_step, resumed_from, last_step)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(study_id)
                .bind(t.number as i64)
                .bind(t.state.as_str())
                .bind(serde_json::to_string(&t.params).expect("params serialize"))
                .bind(t.attempt as i64)
                .bind(t.rerun_of.map(|n| n as i64))
                .bind(t.device.clone())
                .bind(t.sampler_state.as_ref().map(ToString::to_string))
                .bind(now)
                .bind(started)
                .bind(t.resumed_from)
                .bind(t.resumed_from)
                .bind(t.resumed_from);
                if let (Some(at), Some(of)) = (t.resumed_from, t.rerun_of) {
                    // The re-run's curve starts as its predecessor's, up to the resume point.
                    self.statement(
                        "INSERT INTO reports (trial_id, step, metric, value, created_at)
                         SELECT new.id, r.step, r.metric, r.value, r.created_at
                         FROM trials new, trials old JOIN reports r ON r.trial_id = old.id
                         WHERE new.study_id = ? AND new.number = ? AND old.study_id = ? AND old.number = ?
                           AND r.step <= ?",
                    )
                    .bind(study_id)
                    .bind(t.number as i64)
                    .bind(study_id)
                    .bind(of as i64)
                    .bind(at);
                }
            }
            Update::Start { device, .. } => {
                self.change(study_id, number, "start", None, now);
                self.statement(
                    "UPDATE trials SET state = 'running', device = ?, started_at = ?
                     WHERE study_id = ? AND number = ? AND state = 'waiting'",
                )
                .bind(device.clone())
                .bind(now)
                .bind(study_id)
                .bind(number as i64);
            }
            Update::Report { step, metrics, checkpoint, .. } => {
                self.change(study_id, number, "report", Some(*step), now);
                self.statement(
                    "UPDATE trials SET last_step = ?, checkpoint_step = CASE WHEN ? THEN ? ELSE checkpoint_step END
                     WHERE study_id = ? AND number = ?",
                )
                .bind(*step)
                .bind(*checkpoint)
                .bind(*step)
                .bind(study_id)
                .bind(number as i64);
                for (metric, value) in metrics {
                    self.statement(
                        "INSERT OR REPLACE INTO reports (trial_id, step, metric, value, created_at)
                         SELECT id, ?, ?, ?, ? FROM trials WHERE study_id = ? AND number = ?",
                    )
                    .bind(*step)
                    .bind(metric.clone())
                    .bind((!value.is_nan()).then_some(*value)) // SQLite has no NaN: NULL stands for it
                    .bind(now)
                    .bind(study_id)
                    .bind(number as i64);
                }
            }
            Update::Finish { state, end, .. } => {
                self.change(study_id, number, "finish", None, now);
                let metrics = end.metrics.as_ref().map(|m| crate::protocol::metrics_to_json(m).to_string());
                self.statement(
                    "UPDATE trials SET state = ?, value = ?, metrics = ?, last_step = ?, reason = ?, stderr_tail = ?,
                     paused = ?, finished_at = ? WHERE study_id = ? AND number = ?",
                )
                .bind(state.as_str())
                .bind(end.value.filter(|v| !v.is_nan()))
                .bind(metrics)
                .bind(end.last_step)
                .bind(end.reason.clone())
                .bind(end.stderr_tail.clone())
                .bind(end.paused)
                .bind(now)
                .bind(study_id)
                .bind(number as i64);
            }
            // The page shows no job ids live: no change row.
            Update::Job { job, .. } => {
                self.statement("UPDATE trials SET job = ? WHERE study_id = ? AND number = ?")
                    .bind(job.clone())
                    .bind(study_id)
                    .bind(number as i64);
            }
        }
    }
}
