//! Read-only queries for the web server: a small pool of read-only connections, so page loads
//! never wait on each other or on the coordinator's writes (WAL lets readers run alongside).

use super::commands::{outdated, CommandStatus, StatusRow};
use super::rows::{ReportRow, TrialRow, TRIAL_COLUMNS};
use super::{Report, Result, StoreError, StudyRecord};
use crate::trial::{Trial, TrialState};
use sqlx::sqlite::{SqliteArguments, SqlitePool, SqlitePoolOptions};
use sqlx::Arguments;
use std::path::{Path, PathBuf};

#[derive(Clone)]
pub struct Reader {
    pool: SqlitePool,
    path: PathBuf,
}

/// Which trials of a study, in which order, which page.
#[derive(Debug, Clone, Default)]
pub struct TrialQuery {
    /// Only these states (all when empty).
    pub states: Vec<TrialState>,
    pub sort: SortKey,
    pub descending: bool,
    pub offset: u32,
    pub limit: u32,
    /// Inclusive bounds on the objective value.
    pub value: (Option<f64>, Option<f64>),
    /// Inclusive bounds on numeric params, by name.
    pub params: Vec<(String, Option<f64>, Option<f64>)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub enum SortKey {
    #[default]
    Number,
    Value,
    State,
    Started,
    Finished,
    Param(String),
    /// A final metric (an objective of a multi-objective study); trials without it come last.
    Metric(String),
}

/// One change the coordinator committed.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct Change {
    pub seq: i64,
    pub study_id: i64,
    pub number: i64,
    pub kind: String,
    pub step: Option<i64>,
}

/// Per-state trial counts of a study.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Counts {
    pub waiting: i64,
    pub running: i64,
    pub complete: i64,
    pub pruned: i64,
    pub failed: i64,
    pub interrupted: i64,
}

impl Reader {
    pub async fn open(path: &Path) -> Result<Reader> {
        if !path.exists() {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        let options = super::base_options(path).read_only(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|source| super::open_error(path, source))?;
        let mut conn = pool.acquire().await?;
        super::probe(&mut conn, path).await?;
        super::check_schema(&mut conn, path).await?;
        drop(conn);
        Ok(Reader { pool, path: path.to_path_buf() })
    }

    /// The database file (the server opens its command writer and checks the lock by it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn studies(&self) -> Result<Vec<StudyRecord>> {
        super::rows::studies(&self.pool).await
    }

    pub async fn study(&self, name: &str) -> Result<Option<StudyRecord>> {
        super::rows::study_named(&self.pool, name).await
    }

    pub async fn counts(&self, study_id: i64) -> Result<Counts> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, count(*) FROM trials WHERE study_id = ? GROUP BY state")
                .bind(study_id)
                .fetch_all(&self.pool)
                .await?;
        let mut c = Counts::default();
        for (state, n) in rows {
            let slot = match state.as_str() {
                "waiting" => &mut c.waiting,
                "running" => &mut c.running,
                "complete" => &mut c.complete,
                "pruned" => &mut c.pruned,
                "failed" => &mut c.failed,
                _ => &mut c.interrupted,
            };
            *slot = n;
        }
        Ok(c)
    }

    /// Finished trials that count toward the budget (as `History::counted`), and the earliest
    /// start in unix ms among the first trials (those start first; reading every trial's start
    /// cost a full scan on each summary).
    pub async fn progress(&self, study_id: i64) -> Result<(i64, Option<i64>)> {
        Ok(sqlx::query_as(
            // Index-only counts; retried failures and resumed pauses are found through the small
            // reruns index.
            "SELECT
               (SELECT count(*) FROM trials WHERE study_id = ?1 AND state = 'complete')
               + (SELECT count(*) FROM trials t INDEXED BY trials_by_study_state
                   WHERE t.study_id = ?1 AND t.state IN ('failed', 'pruned') AND t.number NOT IN
                   (SELECT r.rerun_of FROM trials r WHERE r.study_id = ?1 AND r.rerun_of IS NOT NULL)),
               (SELECT min(started_at) FROM
                   (SELECT started_at FROM trials WHERE study_id = ?1 ORDER BY number LIMIT 64))",
        )
        .bind(study_id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The best complete trial in the study's direction.
    pub async fn best(&self, study: &StudyRecord) -> Result<Option<Trial>> {
        let order = if study.direction == crate::objective::Direction::Maximize { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = ? AND state = 'complete' AND value IS NOT NULL
             ORDER BY value {order}, number LIMIT 1"
        );
        let row: Option<TrialRow> = sqlx::query_as(&sql).bind(study.id).fetch_optional(&self.pool).await?;
        row.map(|r| r.into_trial(Vec::new())).transpose()
    }

    /// One page of trials (without curves) and how many match in all. The page's ids are
    /// found first, sorting only the narrow key columns (or walking an index: number, value),
    /// then only those rows are read whole: at 100,000 trials, sorting whole rows with their
    /// params and reasons was most of the cost.
    pub async fn trials(&self, study_id: i64, q: &TrialQuery) -> Result<(i64, Vec<Trial>)> {
        let (filter, args) = where_clause(study_id, q);
        let total: i64 = sqlx::query_scalar_with(&format!("SELECT count(*) FROM trials WHERE {filter}"), args)
            .fetch_one(&self.pool)
            .await?;
        let ids = match &q.sort {
            SortKey::Number => self.page_ids(study_id, q, "", None, q.offset, q.limit).await?,
            SortKey::State => self.page_ids(study_id, q, "", Some("state"), q.offset, q.limit).await?,
            SortKey::Value => self.nullable_page(study_id, q, "value").await?,
            SortKey::Started => self.nullable_page(study_id, q, "started_at").await?,
            SortKey::Finished => self.nullable_page(study_id, q, "finished_at").await?,
            SortKey::Param(_) => self.nullable_page(study_id, q, "json_extract(params, ?)").await?,
            SortKey::Metric(_) => self.nullable_page(study_id, q, "json_extract(metrics, ?)").await?,
        };
        if ids.is_empty() {
            return Ok((total, Vec::new()));
        }
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let sql = format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE id IN ({list})");
        let mut rows: Vec<TrialRow> = sqlx::query_as(&sql).fetch_all(&self.pool).await?;
        rows.sort_by_key(|r| ids.iter().position(|id| *id == r.id));
        let trials = rows.into_iter().map(|r| r.into_trial(Vec::new())).collect::<Result<_>>()?;
        Ok((total, trials))
    }

    /// A page ordered by a column that may be missing: trials that have it first (in an order
    /// the value index can give, for `value`), then those without it, by number.
    async fn nullable_page(&self, study_id: i64, q: &TrialQuery, expr: &str) -> Result<Vec<i64>> {
        let present = format!(" AND {expr} IS NOT NULL");
        let mut ids = self.page_ids(study_id, q, &present, Some(expr), q.offset, q.limit).await?;
        if ids.len() < q.limit as usize {
            let (filter, mut args) = where_clause(study_id, q);
            self.bind_param(q, &mut args);
            let sql = format!("SELECT count(*) FROM trials WHERE {filter}{present}");
            let with: i64 = sqlx::query_scalar_with(&sql, args).fetch_one(&self.pool).await?;
            let offset = (q.offset as i64 - with).max(0) as u32;
            let missing = format!(" AND {expr} IS NULL");
            ids.extend(self.page_ids(study_id, q, &missing, None, offset, q.limit - ids.len() as u32).await?);
        }
        Ok(ids)
    }

    /// Ids of one page: the query's filter plus `extra`, ordered by `key` (if any) then number.
    async fn page_ids(
        &self,
        study_id: i64,
        q: &TrialQuery,
        extra: &str,
        key: Option<&str>,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<i64>> {
        let (filter, mut args) = where_clause(study_id, q);
        let dir = if q.descending { "DESC" } else { "ASC" };
        if extra.contains('?') {
            self.bind_param(q, &mut args);
        }
        let order = match key {
            Some(key) => {
                if key.contains('?') {
                    self.bind_param(q, &mut args);
                }
                format!("{key} {dir}, number {dir}")
            }
            None => format!("number {dir}"),
        };
        args.add(limit as i64).expect("int encodes");
        args.add(offset as i64).expect("int encodes");
        let sql = format!("SELECT id FROM trials WHERE {filter}{extra} ORDER BY {order} LIMIT ? OFFSET ?");
        Ok(sqlx::query_scalar_with(&sql, args).fetch_all(&self.pool).await?)
    }

    /// The JSON path of the param or metric the query sorts by, for its `json_extract(.., ?)`.
    fn bind_param(&self, q: &TrialQuery, args: &mut SqliteArguments<'static>) {
        if let SortKey::Param(name) | SortKey::Metric(name) = &q.sort {
            args.add(json_path(name)).expect("text encodes");
        }
    }

    /// One trial with every report.
    pub async fn trial(&self, study_id: i64, number: u64) -> Result<Option<(Trial, Vec<Report>)>> {
        let sql = format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = ? AND number = ?");
        let Some(row): Option<TrialRow> =
            sqlx::query_as(&sql).bind(study_id).bind(number as i64).fetch_optional(&self.pool).await?
        else {
            return Ok(None);
        };
        let reports: Vec<ReportRow> = sqlx::query_as(
            "SELECT ? AS number, step, metric, value FROM reports WHERE trial_id = ? ORDER BY step, metric",
        )
        .bind(number as i64)
        .bind(row.id)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some((row.into_trial(Vec::new())?, reports.into_iter().map(ReportRow::into_report).collect())))
    }

    /// (number, state, value) of every finished trial, in number order: the history plot.
    pub async fn outcomes(&self, study_id: i64) -> Result<Vec<(i64, String, Option<f64>)>> {
        Ok(sqlx::query_as(
            // `+state`: walk the (study, number) index in order instead of sorting what the
            // state index finds.
            "SELECT number, state, value FROM trials WHERE study_id = ? AND +state IN ('complete', 'pruned', 'failed')
             ORDER BY number",
        )
        .bind(study_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The objective curves of the given trials: (number, step, value).
    pub async fn curves(&self, study_id: i64, metric: &str, numbers: &[i64]) -> Result<Vec<(i64, i64, Option<f64>)>> {
        if numbers.is_empty() {
            return Ok(Vec::new());
        }
        let list = numbers.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        let sql = format!(
            "SELECT t.number, r.step, r.value FROM reports r JOIN trials t ON t.id = r.trial_id
             WHERE t.study_id = ? AND r.metric = ? AND t.number IN ({list}) ORDER BY t.number, r.step"
        );
        Ok(sqlx::query_as(&sql).bind(study_id).bind(metric).fetch_all(&self.pool).await?)
    }

    /// Params, value and final metrics (JSON) of complete trials, every one up to `max`, else an
    /// even sample of at most `max` (every k-th complete trial in order of number, chosen in SQL
    /// so the rows left out are never sent; not every k-th number, which the complete trials
    /// need not fill): input to parameter importance and the comparison view.
    pub async fn completed(&self, study_id: i64, max: usize) -> Result<Vec<(String, f64, Option<String>)>> {
        let filter = "study_id = ? AND state = 'complete' AND value IS NOT NULL";
        // Counted in a statement of its own: one statement with `COUNT(*) OVER ()` took the
        // importance endpoint from 185-190 to 481-532 ms at 100,000 trials (web_scale).
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM trials WHERE {filter}"))
            .bind(study_id)
            .fetch_one(&self.pool)
            .await?;
        let stride = (n as usize).div_ceil(max.max(1)).max(1) as i64;
        let sample = format!(
            "SELECT params, value, metrics FROM (SELECT params, value, metrics, \
             ROW_NUMBER() OVER (ORDER BY number) - 1 AS rank FROM trials WHERE {filter}) WHERE rank % ? = 0 ORDER BY rank"
        );
        Ok(sqlx::query_as(&sample).bind(study_id).bind(stride).fetch_all(&self.pool).await?)
    }

    /// Changes of every study after sequence number `after`, oldest first: a range of the
    /// primary key, so a follower advances past other studies' rows instead of rescanning them.
    pub async fn changes(&self, after: i64, limit: i64) -> Result<Vec<Change>> {
        Ok(sqlx::query_as("SELECT seq, study_id, number, kind, step FROM changes WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// (number, value, params JSON) of every complete trial in number order: the points of
    /// the parallel-coordinates and slice plots (the caller thins them before parsing params).
    pub async fn points(&self, study_id: i64) -> Result<Vec<(i64, f64, String)>> {
        Ok(sqlx::query_as(
            "SELECT number, value, params FROM trials WHERE study_id = ? AND state = 'complete' AND value IS NOT NULL
             ORDER BY number",
        )
        .bind(study_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Number and final metrics (JSON) of each complete trial, for the Pareto front.
    pub async fn complete_metrics(&self, study_id: i64) -> Result<Vec<(i64, Option<String>)>> {
        Ok(sqlx::query_as(
            "SELECT number, metrics FROM trials WHERE study_id = ? AND state = 'complete' ORDER BY number",
        )
        .bind(study_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One control command of the study.
    pub async fn command(&self, study_id: i64, id: i64) -> Result<Option<CommandStatus>> {
        let row: Option<StatusRow> = sqlx::query_as(
            "SELECT id, kind, payload, created_at, done_at, result FROM commands WHERE study_id = ? AND id = ?",
        )
        .bind(study_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(outdated)?;
        Ok(row.map(StatusRow::into_status))
    }

    /// How many of the study's control commands no coordinator has applied yet (0 on a
    /// database that predates them).
    pub async fn pending_command_count(&self, study_id: i64) -> Result<i64> {
        let n = sqlx::query_scalar("SELECT count(*) FROM commands WHERE study_id = ? AND done_at IS NULL")
            .bind(study_id)
            .fetch_one(&self.pool)
            .await;
        match n.map_err(outdated) {
            Err(StoreError::Outdated) => Ok(0),
            other => other,
        }
    }

    /// The latest change in the database (0 if none): where a new live stream starts.
    pub async fn last_change(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM changes").fetch_one(&self.pool).await?)
    }
}

/// `$."name"`: a JSON path to a param, quoted so any name is safe.
fn json_path(name: &str) -> String {
    format!("$.\"{}\"", name.replace('"', ""))
}

fn where_clause(study_id: i64, q: &TrialQuery) -> (String, SqliteArguments<'static>) {
    let mut sql = String::from("study_id = ?");
    let mut args = SqliteArguments::default();
    args.add(study_id).expect("int encodes");
    if !q.states.is_empty() {
        let marks = vec!["?"; q.states.len()].join(", ");
        sql += &format!(" AND state IN ({marks})");
        for s in &q.states {
            args.add(s.as_str()).expect("text encodes");
        }
    }
    let mut bound = |sql: &mut String, expr: &str, path: Option<String>, lo: Option<f64>, hi: Option<f64>| {
        for (op, v) in [(">=", lo), ("<=", hi)] {
            if let Some(v) = v {
                *sql += &format!(" AND {expr} {op} ?");
                if let Some(p) = &path {
                    args.add(p.clone()).expect("text encodes");
                }
                args.add(v).expect("real encodes");
            }
        }
    };
    bound(&mut sql, "value", None, q.value.0, q.value.1);
    for (name, lo, hi) in &q.params {
        bound(&mut sql, "json_extract(params, ?)", Some(json_path(name)), *lo, *hi);
    }
    (sql, args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewStudy, Store, Write};
    use crate::trial::{Finish, Metrics, NewTrial, Update};

    /// Trials 0..8: even ones finished with value 10 - number, odd ones still running.
    async fn study(dir: &Path) -> (Reader, i64) {
        let db = dir.join("t.db");
        let mut store = Store::open(&db).await.unwrap();
        let new = NewStudy {
            name: "s",
            source: "",
            fingerprint: &crate::study::Fingerprint {
                metric: "loss".into(),
                direction: crate::objective::Direction::Minimize,
                seed: 0,
                space: serde_json::Value::Null,
                objectives: Vec::new(),
                constraints: Vec::new(),
            },
            space_hash: "",
            metric: "loss",
            direction: crate::objective::Direction::Minimize,
            budget: 8,
        };
        let id = store.create_study(&new, &[]).await.unwrap().id;
        let mut writes = Vec::new();
        for number in 0..8u64 {
            let params = serde_json::json!({ "x": number % 3 }).as_object().unwrap().clone();
            writes.push(Write::Trial(Update::Insert(NewTrial::running(number, params, None, None))));
            if number % 2 == 0 {
                let metrics = Some([("size".to_string(), (number % 4) as f64)].into());
                let end = Finish { value: Some(10.0 - number as f64), metrics, ..Finish::default() };
                writes.push(Update::Finish { number, state: TrialState::Complete, end }.into());
            }
        }
        store.apply(id, &writes).await.unwrap();
        (Reader::open(&db).await.unwrap(), id)
    }

    #[tokio::test]
    async fn a_sample_of_complete_trials_is_every_kth_of_them_and_at_most_max() {
        let dir = tempfile::tempdir().unwrap();
        let (r, id) = study(dir.path()).await;
        let values = |rows: Vec<(String, f64, Option<String>)>| rows.into_iter().map(|r| r.1).collect::<Vec<_>>();
        // Trials 0, 2, 4 and 6 are complete: all of them fit, two are every second one. Every
        // second *number* would be all four, and every fourth (for one) both 0 and 4.
        assert_eq!(values(r.completed(id, 8).await.unwrap()), [10.0, 8.0, 6.0, 4.0]);
        assert_eq!(values(r.completed(id, 2).await.unwrap()), [10.0, 6.0]);
        assert_eq!(values(r.completed(id, 1).await.unwrap()), [10.0]);
    }

    async fn page(reader: &Reader, id: i64, sort: SortKey, descending: bool, offset: u32, limit: u32) -> Vec<u64> {
        let q = TrialQuery { sort, descending, offset, limit, ..TrialQuery::default() };
        let (total, trials) = reader.trials(id, &q).await.unwrap();
        assert_eq!(total, 8);
        trials.iter().map(|t| t.number).collect()
    }

    #[tokio::test]
    async fn pages_put_missing_values_last_in_either_direction() {
        let dir = tempfile::tempdir().unwrap();
        let (r, id) = study(dir.path()).await;
        assert_eq!(page(&r, id, SortKey::Value, false, 0, 8).await, [6, 4, 2, 0, 1, 3, 5, 7]);
        assert_eq!(page(&r, id, SortKey::Value, true, 0, 8).await, [0, 2, 4, 6, 7, 5, 3, 1]);
        // Pages that straddle and follow the boundary between values and missing ones.
        assert_eq!(page(&r, id, SortKey::Value, false, 3, 3).await, [0, 1, 3]);
        assert_eq!(page(&r, id, SortKey::Value, false, 6, 3).await, [5, 7]);
        assert_eq!(page(&r, id, SortKey::Number, true, 2, 3).await, [5, 4, 3]);
        assert_eq!(page(&r, id, SortKey::Param("x".into()), false, 0, 8).await, [0, 3, 6, 1, 4, 7, 2, 5]);
        assert_eq!(page(&r, id, SortKey::Finished, false, 4, 4).await, [1, 3, 5, 7]);
        // A final metric (an objective's column on the page): sizes 0, 2, 0, 2, then none.
        assert_eq!(page(&r, id, SortKey::Metric("size".into()), false, 0, 8).await, [0, 4, 2, 6, 1, 3, 5, 7]);
        assert_eq!(page(&r, id, SortKey::Metric("size".into()), true, 0, 8).await, [6, 2, 4, 0, 7, 5, 3, 1]);
    }

    /// A new database at `db` with one empty study "s" of objective "loss".
    async fn loss_study(db: &Path, direction: crate::objective::Direction) -> (Store, StudyRecord) {
        let mut store = Store::open(db).await.unwrap();
        let fingerprint = crate::study::Fingerprint {
            metric: "loss".into(),
            direction,
            seed: 0,
            space: serde_json::Value::Null,
            objectives: Vec::new(),
            constraints: Vec::new(),
        };
        let new = NewStudy {
            name: "s",
            source: "",
            fingerprint: &fingerprint,
            space_hash: "",
            metric: "loss",
            direction,
            budget: 40,
        };
        let study = store.create_study(&new, &[]).await.unwrap();
        (store, study)
    }

    /// The coordinator applies each update to its `History` and hands the same value to the
    /// store: a history rebuilt from the database must equal the one kept in memory.
    #[tokio::test]
    async fn updates_applied_in_memory_equal_what_the_store_reads_back() {
        use crate::objective::{Direction, Objective};
        use crate::trial::History;
        let dir = tempfile::tempdir().unwrap();
        let direction = Direction::Minimize;
        let (mut store, study) = loss_study(&dir.path().join("t.db"), direction).await;
        let objective = Objective { metric: "loss".into(), direction };
        let params = |x: u64| serde_json::json!({ "x": x }).as_object().unwrap().clone();
        let metrics = |pairs: &[(&str, f64)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect::<Metrics>();
        let end = |value: f64| Finish {
            value: Some(value),
            metrics: Some(metrics(&[("loss", value), ("acc", 0.5)])),
            last_step: Some(2),
            reason: None,
            stderr_tail: Some("tail".into()),
            paused: false,
        };
        let updates = vec![
            Update::Insert(NewTrial::running(0, params(0), Some("cuda:1".into()), Some(serde_json::json!({"k": 1})))),
            Update::Insert(NewTrial::waiting(1, params(1))),
            Update::Report { number: 0, step: 0, metrics: metrics(&[("loss", 3.0), ("acc", 0.1)]), checkpoint: false },
            Update::Report { number: 0, step: 2, metrics: metrics(&[("loss", 2.0)]), checkpoint: false },
            Update::Report { number: 0, step: 2, metrics: metrics(&[("loss", 1.5)]), checkpoint: false }, // replaces
            Update::Report { number: 0, step: 1, metrics: metrics(&[("loss", 2.5)]), checkpoint: false }, // out of order
            Update::Start { number: 1, device: Some("cuda:0".into()) },
            Update::Job { number: 1, job: "4242".into() },
            Update::Report { number: 1, step: 0, metrics: metrics(&[("acc", 0.3)]), checkpoint: false }, // no objective
            Update::Finish { number: 0, state: TrialState::Complete, end: end(1.5) },
            Update::Finish {
                number: 1,
                state: TrialState::Failed,
                end: Finish { reason: Some("exit 1".into()), ..Finish::default() },
            },
            Update::Insert(NewTrial::running(3, params(3), None, None)),
            Update::Report { number: 3, step: 5, metrics: metrics(&[("loss", 9.0)]), checkpoint: false }, // still running
        ];
        let mut memory = History::new(objective.clone(), Vec::new());
        let mut writes: Vec<Write> = Vec::new();
        for (i, update) in updates.into_iter().enumerate() {
            memory.apply(&update, i as i64);
            writes.push(update.into());
        }
        // A retry of the failed trial: its own update, applied in a later batch.
        let retry = Update::Insert(NewTrial::rerun(2, memory.get(1).unwrap(), true));
        store.apply(study.id, &writes).await.unwrap();
        memory.apply(&retry, 99);
        store.apply(study.id, &[retry.into()]).await.unwrap();

        let disk = History::new(objective, store.trials(study.id, &["loss"]).await.unwrap());
        assert_eq!(disk.retried, memory.retried);
        assert_eq!(memory.retried.iter().copied().collect::<Vec<_>>(), [1]);
        assert_eq!(disk.trials.len(), 4);
        // Timestamps are each side's own clock: compared as present or not.
        let comparable = |t: &Trial| {
            let json = serde_json::to_value(t).unwrap();
            let mut json = json.as_object().unwrap().clone();
            for key in ["started_at", "finished_at"] {
                json[key] = serde_json::Value::Bool(!json[key].is_null());
            }
            (json, t.sampler_state.clone())
        };
        for (m, d) in memory.trials.iter().zip(&disk.trials) {
            assert_eq!(comparable(m), comparable(d), "trial {}", m.number);
        }
        assert_eq!(memory.get(0).unwrap().curve, [(0, 3.0), (1, 2.5), (2, 1.5)]);
        assert_eq!(memory.get(2).unwrap().attempt, 2);
    }

    /// SQL is the page's fast path for "best" and "finished"; `History` is the coordinator's.
    /// They must agree on every mix of states, ties, retries and both directions.
    #[tokio::test]
    async fn best_and_budget_count_agree_with_the_history() {
        use crate::objective::{Direction, Objective};
        use crate::trial::History;
        for direction in [Direction::Minimize, Direction::Maximize] {
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("t.db");
            let (mut store, study) = loss_study(&db, direction).await;
            let mut writes = Vec::new();
            for number in 0..40u64 {
                // A failure at n % 7 == 2 is retried as trial n + 1.
                let rerun_of = (number % 7 == 3).then(|| number - 1);
                let new = NewTrial { rerun_of, ..NewTrial::running(number, Default::default(), None, None) };
                writes.push(Update::Insert(new).into());
                let value = Some(((number * 37) % 11) as f64); // ties on purpose
                let (state, value) = match number % 5 {
                    _ if number % 7 == 2 => (TrialState::Failed, None),
                    0 | 1 => (TrialState::Complete, value),
                    2 => (TrialState::Pruned, value.map(|v| v - 100.0)),
                    3 => (TrialState::Failed, None),
                    _ => continue, // still running
                };
                writes.push(Update::Finish { number, state, end: Finish { value, ..Finish::default() } }.into());
            }
            store.apply(study.id, &writes).await.unwrap();
            let history = History::new(
                Objective { metric: "loss".into(), direction },
                store.trials(study.id, &["loss"]).await.unwrap(),
            );
            let reader = Reader::open(&db).await.unwrap();
            let best = reader.best(&study).await.unwrap().map(|t| t.number);
            assert_eq!(best, history.best().map(|t| t.number), "{direction:?}");
            assert!(best.is_some());
            let (finished, _) = reader.progress(study.id).await.unwrap();
            assert_eq!(finished as usize, history.counted(), "{direction:?}");
        }
    }
}
