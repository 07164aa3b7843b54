//! JSON API handlers. Every query parameter is checked; a bad one is a 400 that says which and
//! why, never a 500.

use super::{aggregate, ApiError, AppState};
use crate::objective::Direction;
use crate::store::{SortKey, StudyRecord, StudyState, TrialQuery};
use crate::trial::{Trial, TrialState};
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

type Answer = Result<Json<Value>, ApiError>;

/// Query parameters as given; each handler takes the ones it knows and refuses the rest.
pub(crate) struct Query(pub(crate) BTreeMap<String, String>);

impl Query {
    pub(crate) fn parse(raw: Option<String>, allowed: &[&str]) -> Result<Query, ApiError> {
        let mut map = BTreeMap::new();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            let known = allowed.iter().any(|a| *a == k || (a.ends_with('.') && k.starts_with(a)));
            if !known && k != "token" {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{k}` (known: {})",
                    allowed.join(", ")
                )));
            }
            if map.insert(k.to_string(), v.into_owned()).is_some() {
                return Err(ApiError::bad_request(format!("query parameter `{k}` given twice")));
            }
        }
        Ok(Query(map))
    }

    fn number<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, ApiError> {
        match self.0.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| ApiError::bad_request(format!("`{key}` must be a number, got `{v}`"))),
        }
    }

    fn float(&self, key: &str) -> Result<Option<f64>, ApiError> {
        self.0
            .get(key)
            .map(|v| match v.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(x),
                _ => Err(ApiError::bad_request(format!("`{key}` must be a finite number, got `{v}`"))),
            })
            .transpose()
    }
}

pub(crate) async fn find(state: &AppState, name: &str) -> Result<StudyRecord, ApiError> {
    state
        .reader
        .study(name)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no study named `{name}`")))
}

/// The study a request's path names (`{name}`), read from the database; a 404 that names it
/// when there is none. Every handler under `/api/studies/{name}` that reads starts with it.
pub(crate) struct Found(pub(crate) StudyRecord);

impl FromRequestParts<Arc<AppState>> for Found {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Found, ApiError> {
        let Path(segments) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let name = segments.get("name").ok_or_else(|| ApiError::bad_request("no study name in the path"))?;
        find(state, name).await.map(Found)
    }
}

async fn summary(state: &AppState, study: &StudyRecord) -> Result<Value, ApiError> {
    let counts = state.reader.counts(study.id).await?;
    let (finished, first_start) = state.reader.progress(study.id).await?;
    let best = state.reader.best(study).await?;
    // A complete study's row was last updated when it completed.
    let end = if study.state == StudyState::Complete { study.updated_at } else { crate::store::now_ms() };
    let elapsed_ms = first_start.map(|s| (end - s).max(0));
    let left = (study.budget as i64 - finished).max(0);
    let eta_ms = match (elapsed_ms, finished) {
        (Some(e), f) if f > 0 && left > 0 => Some(e * left / f),
        _ => None,
    };
    Ok(json!({
        "name": study.name,
        "state": study.state,
        "metric": study.metric,
        "direction": study.direction,
        "budget": study.budget,
        "finished": finished,
        "counts": counts,
        "best": best.map(|t| json!({"number": t.number, "value": t.value, "params": t.params})),
        "params": study.param_names(),
        "objectives": study.fingerprint.goals().objectives,
        "constraints": study.fingerprint.constraints.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "created_at_ms": study.created_at,
        "elapsed_ms": elapsed_ms,
        "eta_ms": eta_ms,
        "paused": study.paused,
        "pending_commands": state.reader.pending_command_count(study.id).await?,
        "coordinator_running": crate::lock::holder(state.reader.path()).is_some(),
    }))
}

pub(crate) async fn studies(State(state): State<Arc<AppState>>, RawQuery(q): RawQuery) -> Answer {
    Query::parse(q, &[])?;
    let mut out = Vec::new();
    for study in state.reader.studies().await? {
        out.push(summary(&state, &study).await?);
    }
    Ok(Json(json!({ "studies": out })))
}

pub(crate) async fn study(State(state): State<Arc<AppState>>, Found(study): Found, RawQuery(q): RawQuery) -> Answer {
    Query::parse(q, &[])?;
    let mut s = summary(&state, &study).await?;
    s["source"] = json!(study.source);
    // The distributions, so the page can scale its axes and build the enqueue form.
    s["space"] = study.fingerprint.space.clone();
    Ok(Json(s))
}

/// Fields a trial page may project.
const TRIAL_FIELDS: &[&str] = &[
    "number",
    "state",
    "params",
    "attempt",
    "rerun_of",
    "device",
    "value",
    "metrics",
    "last_step",
    "checkpoint_step",
    "resumed_from",
    "paused",
    "reason",
    "started_at",
    "finished_at",
];
const PAGE_LIMIT_MAX: u32 = 1000;
/// At most this many complete trials (an even sample) go into parameter importance and the
/// comparison view.
const SUMMARY_SAMPLE: usize = 20_000;

pub(crate) async fn trials(State(state): State<Arc<AppState>>, Found(study): Found, RawQuery(q): RawQuery) -> Answer {
    let p =
        Query::parse(q, &["state", "sort", "order", "offset", "limit", "fields", "value_min", "value_max", "param."])?;
    let names = study.param_names();
    let query = trial_query(&p, &names)?;
    let fields: Vec<String> = match p.0.get("fields") {
        None => TRIAL_FIELDS.iter().map(ToString::to_string).collect(),
        Some(list) => {
            let fields: Vec<String> = list.split(',').map(|f| f.trim().to_string()).collect();
            if let Some(bad) = fields.iter().find(|f| !TRIAL_FIELDS.contains(&f.as_str())) {
                return Err(ApiError::bad_request(format!(
                    "unknown field `{bad}` (known: {})",
                    TRIAL_FIELDS.join(", ")
                )));
            }
            fields
        }
    };
    let (total, page) = state.reader.trials(study.id, &query).await?;
    let rows: Vec<Value> = page.iter().map(|t| project(t, &fields)).collect();
    Ok(Json(json!({ "total": total, "offset": query.offset, "limit": query.limit, "trials": rows })))
}

fn trial_query(p: &Query, names: &[String]) -> Result<TrialQuery, ApiError> {
    let states = match p.0.get("state") {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|s| TrialState::parse(s.trim()).ok_or_else(|| ApiError::bad_request(format!("unknown state `{s}`"))))
            .collect::<Result<_, _>>()?,
    };
    let sort = match p.0.get("sort").map(String::as_str) {
        None | Some("number") => SortKey::Number,
        Some("value") => SortKey::Value,
        Some("state") => SortKey::State,
        Some("started") => SortKey::Started,
        Some("finished") => SortKey::Finished,
        Some(other) => match (other.strip_prefix("param:"), other.strip_prefix("metric:")) {
            (Some(n), _) if names.iter().any(|x| x == n) => SortKey::Param(n.to_string()),
            (_, Some(m)) if !m.is_empty() => SortKey::Metric(m.to_string()),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "cannot sort by `{other}` (number, value, state, started, finished, param:NAME, metric:NAME)"
                )))
            }
        },
    };
    let descending = match p.0.get("order").map(String::as_str) {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(o) => return Err(ApiError::bad_request(format!("`order` is asc or desc, got `{o}`"))),
    };
    let limit: u32 = p.number("limit", 50)?;
    if limit == 0 || limit > PAGE_LIMIT_MAX {
        return Err(ApiError::bad_request(format!("`limit` must be 1 to {PAGE_LIMIT_MAX}")));
    }
    let mut params = Vec::new();
    for key in p.0.keys().filter(|k| k.starts_with("param.")) {
        let rest = &key["param.".len()..];
        let (name, bound) = rest
            .rsplit_once('.')
            .filter(|(_, b)| *b == "min" || *b == "max")
            .ok_or_else(|| ApiError::bad_request(format!("`{key}`: use param.NAME.min or param.NAME.max")))?;
        if !names.iter().any(|n| n == name) {
            return Err(ApiError::bad_request(format!("`{key}`: the study has no parameter `{name}`")));
        }
        let v = p.float(key)?;
        match params.iter_mut().find(|(n, _, _): &&mut (String, Option<f64>, Option<f64>)| n == name) {
            Some(entry) if bound == "min" => entry.1 = v,
            Some(entry) => entry.2 = v,
            None if bound == "min" => params.push((name.to_string(), v, None)),
            None => params.push((name.to_string(), None, v)),
        }
    }
    Ok(TrialQuery {
        states,
        sort,
        descending,
        offset: p.number("offset", 0)?,
        limit,
        value: (p.float("value_min")?, p.float("value_max")?),
        params,
    })
}

fn project(t: &Trial, fields: &[String]) -> Value {
    let full = serde_json::to_value(t).expect("trial serializes");
    let mut out = Map::new();
    for f in fields {
        out.insert(f.clone(), full.get(f).cloned().unwrap_or(Value::Null));
    }
    Value::Object(out)
}

pub(crate) async fn trial(
    State(state): State<Arc<AppState>>,
    Found(study): Found,
    Path((_, number)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Answer {
    Query::parse(q, &[])?;
    let number: u64 =
        number.parse().map_err(|_| ApiError::bad_request(format!("trial number `{number}` is not a number")))?;
    let name = &study.name;
    let (trial, reports) = state
        .reader
        .trial(study.id, number)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("study `{name}` has no trial {number}")))?;
    let mut t = serde_json::to_value(&trial).expect("trial serializes");
    t["reports"] = json!(crate::export::reports_json(&reports));
    // What the sampler recorded: a fitted kernel, or why it fell back to random params.
    t["sampler_state"] = trial.sampler_state.clone().unwrap_or(Value::Null);
    Ok(Json(t))
}

pub(crate) async fn history(
    State(state): State<Arc<AppState>>,
    Found(study): Found,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Query::parse(q, &["format"])?;
    let columns = match p.0.get("format").map(String::as_str) {
        None | Some("points") => false,
        Some("columns") => true,
        Some(f) => return Err(ApiError::bad_request(format!("`format` is points or columns, got `{f}`"))),
    };
    let outcomes = state.reader.outcomes(study.id).await?;
    let points = aggregate::history(&outcomes, study.direction == Direction::Maximize);
    // Serialized straight from typed rows: no JSON tree of 100,000 values in between.
    #[derive(Serialize)]
    struct Points<'a> {
        metric: &'a str,
        direction: Direction,
        points: &'a [aggregate::HistoryPoint],
    }
    /// One array per field: a third of the size at 100,000 trials, and what the plot takes.
    #[derive(Serialize)]
    struct Columns<'a> {
        metric: &'a str,
        direction: Direction,
        number: Vec<i64>,
        state: Vec<&'a str>,
        value: Vec<Option<f64>>,
        best: Vec<Option<f64>>,
    }
    let (metric, direction) = (study.metric.as_str(), study.direction);
    Ok(if columns {
        Json(Columns {
            metric,
            direction,
            number: points.iter().map(|p| p.number).collect(),
            state: points.iter().map(|p| p.state.as_str()).collect(),
            value: points.iter().map(|p| p.value).collect(),
            best: points.iter().map(|p| p.best).collect(),
        })
        .into_response()
    } else {
        Json(Points { metric, direction, points: &points }).into_response()
    })
}

/// Params and value of complete trials, one array per column, for the parallel-coordinates
/// and slice plots: all of them up to `max`, else the best quarter of `max` and an even
/// sample of the rest.
pub(crate) async fn points(State(state): State<Arc<AppState>>, Found(study): Found, RawQuery(q): RawQuery) -> Answer {
    let p = Query::parse(q, &["max"])?;
    let max: usize = p.number("max", 2000)?;
    if !(10..=100_000).contains(&max) {
        return Err(ApiError::bad_request("`max` must be 10 to 100000"));
    }
    let rows = state.reader.points(study.id).await?;
    let values: Vec<f64> = rows.iter().map(|r| r.1).collect();
    let chosen = aggregate::sample(&values, max, study.direction == Direction::Maximize);
    let names = study.param_names();
    let mut columns: BTreeMap<&str, Vec<Value>> = names.iter().map(|n| (n.as_str(), Vec::new())).collect();
    for &i in &chosen {
        let params: Map<String, Value> = serde_json::from_str(&rows[i].2).unwrap_or_default();
        for (name, column) in columns.iter_mut() {
            column.push(params.get(*name).cloned().unwrap_or(Value::Null));
        }
    }
    Ok(Json(json!({
        "total": rows.len(),
        "params": names,
        "number": chosen.iter().map(|&i| rows[i].0).collect::<Vec<_>>(),
        "value": chosen.iter().map(|&i| rows[i].1).collect::<Vec<_>>(),
        "columns": columns,
    })))
}

/// The study's Pareto front, for the page's card: every complete trial's objective values (a
/// column per objective), whether it meets the constraints and whether it is in the Pareto
/// set (`crate::front`), with the set's hypervolume and reference point, and the hypervolume
/// after each trial (the page's hypervolume history).
pub(crate) async fn front(State(state): State<Arc<AppState>>, Found(study): Found, RawQuery(q): RawQuery) -> Answer {
    Query::parse(q, &[])?;
    let goals = study.fingerprint.goals();
    let trials: Vec<Trial> = state
        .reader
        .complete_metrics(study.id)
        .await?
        .into_iter()
        .map(|(number, metrics)| {
            let metrics = metrics
                .and_then(|m| serde_json::from_str::<Value>(&m).ok())
                .and_then(|m| crate::protocol::metrics_from_json(&m));
            Trial { metrics, ..Trial::new(number as u64, TrialState::Complete, Default::default()) }
        })
        .collect();
    let front = crate::front::front(&goals, &trials);
    let members: std::collections::BTreeSet<u64> = front.trials.iter().map(|t| t.number).collect();
    let metric = |t: &Trial, name: &str| t.metrics.as_ref().and_then(|m| m.get(name)).copied();
    let values: BTreeMap<&str, Vec<Option<f64>>> = goals
        .objectives
        .iter()
        .map(|o| (o.metric.as_str(), trials.iter().map(|t| metric(t, &o.metric)).collect()))
        .collect();
    Ok(Json(json!({
        "objectives": goals.objectives,
        "constraints": goals.constraints.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "feasible": front.feasible,
        "hypervolume": front.hypervolume,
        "reference": front.reference,
        "number": trials.iter().map(|t| t.number).collect::<Vec<_>>(),
        "values": values,
        "meets_constraints": trials.iter().map(|t| crate::front::feasible(&goals, t)).collect::<Vec<_>>(),
        "pareto": trials.iter().map(|t| members.contains(&t.number)).collect::<Vec<_>>(),
        "hypervolume_so_far": crate::front::hypervolume_history(&goals, &trials, &front.reference),
    })))
}

/// Learning curves of the best and the latest trials, each thinned to `points`.
pub(crate) async fn curves(State(state): State<Arc<AppState>>, Found(study): Found, RawQuery(q): RawQuery) -> Answer {
    let p = Query::parse(q, &["trials", "points"])?;
    let (max_trials, max_points): (u32, usize) = (p.number("trials", 40)?, p.number("points", 200)?);
    if !(1..=500).contains(&max_trials) || !(2..=10_000).contains(&max_points) {
        return Err(ApiError::bad_request("`trials` must be 1 to 500 and `points` 2 to 10000"));
    }
    let half = max_trials.div_ceil(2);
    let best = TrialQuery {
        sort: SortKey::Value,
        descending: study.direction == Direction::Maximize,
        limit: half,
        ..Default::default()
    };
    let latest = TrialQuery { sort: SortKey::Number, descending: true, limit: max_trials, ..Default::default() };
    let (_, mut chosen) = state.reader.trials(study.id, &best).await?;
    let (_, recent) = state.reader.trials(study.id, &latest).await?;
    for t in recent {
        if chosen.len() >= max_trials as usize {
            break;
        }
        if !chosen.iter().any(|c| c.number == t.number) {
            chosen.push(t);
        }
    }
    chosen.sort_by_key(|t| t.number);
    let numbers: Vec<i64> = chosen.iter().map(|t| t.number as i64).collect();
    let points = state.reader.curves(study.id, &study.metric, &numbers).await?;
    let mut by_trial: BTreeMap<i64, Vec<(i64, Option<f64>)>> = BTreeMap::new();
    for (n, step, v) in points {
        by_trial.entry(n).or_default().push((step, v));
    }
    let curves: Vec<Value> = chosen
        .iter()
        .map(|t| {
            let pts = aggregate::thin(by_trial.get(&(t.number as i64)).map_or(&[][..], Vec::as_slice), max_points);
            json!({ "number": t.number, "state": t.state, "points": pts })
        })
        .collect();
    Ok(Json(json!({ "metric": study.metric, "curves": curves })))
}

pub(crate) async fn importance(
    State(state): State<Arc<AppState>>,
    Found(study): Found,
    RawQuery(q): RawQuery,
) -> Answer {
    Query::parse(q, &[])?;
    // An even sample bounds the work (reading every trial's params took 1.6 s at 100,000) and
    // barely moves a variance share.
    let completed: Vec<(Map<String, Value>, f64)> = state
        .reader
        .completed(study.id, SUMMARY_SAMPLE)
        .await?
        .into_iter()
        .filter_map(|(params, v, _)| serde_json::from_str(&params).ok().map(|p| (p, v)))
        .collect();
    let scores: Vec<Value> = aggregate::importance(&completed)
        .into_iter()
        .map(|(name, score)| json!({"param": name, "importance": score}))
        .collect();
    let method = format!("correlation ratio (eta squared), normalized; over {} complete trials", completed.len());
    Ok(Json(json!({ "method": method, "params": scores })))
}

/// The comparison view: the metric's mean and spread per value of `x`, one line per value of
/// the `group` params (comma-separated), over the other params; all in one answer.
pub(crate) async fn compare(State(state): State<Arc<AppState>>, Found(study): Found, RawQuery(q): RawQuery) -> Answer {
    let p = Query::parse(q, &["x", "group", "metric"])?;
    let names = study.param_names();
    let x = p.0.get("x").cloned().ok_or_else(|| {
        ApiError::bad_request(format!("`x` is required: the param for the x axis (params: {})", names.join(", ")))
    })?;
    let group =
        p.0.get("group").map_or_else(Vec::new, |g| g.split(',').filter(|s| !s.is_empty()).map(String::from).collect());
    let request = crate::compare::Request { x, group, metric: p.0.get("metric").cloned() };
    let outcomes: Vec<crate::compare::Outcome> = state
        .reader
        .completed(study.id, SUMMARY_SAMPLE)
        .await?
        .into_iter()
        .filter_map(|(params, value, metrics)| {
            let params = serde_json::from_str(&params).ok()?;
            let metrics = metrics
                .and_then(|m| serde_json::from_str::<Value>(&m).ok())
                .and_then(|m| crate::protocol::metrics_from_json(&m))
                .unwrap_or_default();
            Some(crate::compare::Outcome { params, value, metrics })
        })
        .collect();
    let comparison = crate::compare::compare(&outcomes, &names, &study.metric, &request)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Json(json!(comparison)))
}
