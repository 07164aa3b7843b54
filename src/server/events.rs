//! Live events by server-sent events: the server follows the change log (a range read of its
//! primary key) and forwards each committed change of the study within a poll interval.
//! The page never polls the trial table.

use super::api::{Found, Query};
use super::{ApiError, AppState};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// How often the change log is read: well under the one second a change may take to show.
const POLL: Duration = Duration::from_millis(250);
const BATCH: i64 = 500;

pub(crate) async fn stream(
    State(state): State<Arc<AppState>>,
    Found(study): Found,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let p = Query::parse(q, &["after"])?;
    // A reconnecting EventSource says where it stopped; otherwise start from now.
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i64>().ok());
    let after = match (resume, p.0.get("after")) {
        (Some(seq), _) => seq,
        (None, Some(a)) => {
            a.parse().map_err(|_| ApiError::bad_request(format!("`after` must be a number, got `{a}`")))?
        }
        (None, None) => state.reader.last_change().await?,
    };
    let events = stream::unfold((state, study.id, after), |(state, study_id, after)| async move {
        tokio::time::sleep(POLL).await;
        let (events, next) = match state.reader.changes(after, BATCH).await {
            Ok(changes) => {
                let next = changes.last().map_or(after, |c| c.seq);
                let events: Vec<Result<Event, Infallible>> = changes
                    .iter()
                    .filter(|c| c.study_id == study_id)
                    .map(|c| {
                        let data = serde_json::to_string(c).expect("change serializes");
                        Ok(Event::default().id(c.seq.to_string()).event(c.kind.clone()).data(data))
                    })
                    .collect();
                (events, next)
            }
            Err(e) => (vec![Ok(Event::default().event("error").data(e.to_string()))], after),
        };
        Some((stream::iter(events), (state, study_id, next)))
    })
    .flatten();
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
