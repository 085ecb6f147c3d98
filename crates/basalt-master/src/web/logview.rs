//! The log viewer's endpoints, under `/jobs/ID/log/` (the same sign-in as the pages: the
//! session cookie or `Authorization: Token`; errors are JSON `{"message"}`):
//!
//! * `meta`: `{lines, bytes, first_error, sections, state, health, finished}`;
//! * `levels?from=N`: one byte a line from line N on, its level's code
//!   ([`super::record::Level`]: debug 0, info 1, warning 2, error 3, exception 4, results 5,
//!   target 6, input 7, feedback 8, event 9, other 10), so the page filters and folds
//!   without asking again;
//! * `lines?ranges=A-B,C-D` (line numbers from 0, `B` excluded) or
//!   `lines?start=A&end=B&levels=info,target` (the lines of those levels among `A..B`): at
//!   most [`MAX_LINES`] lines and about [`MAX_BYTES`] of log a request, `next` says where to
//!   go on;
//! * `stream?from=N` (or the `Last-Event-ID` an `EventSource` sends when it reconnects):
//!   Server-Sent Events, `lines` events with the lines from N on as they are committed
//!   (`{start, levels, lines, sections?, first_error}`), then one `end` event
//!   (`{state, health}`) once the job is finished and every line was sent. The stream wakes on
//!   the engine's [`crate::logs::LogSignal`]; it also looks at the job's state once a second,
//!   for a job that ends without a log (canceled before it ran).

use super::logindex::{self, Line, LogIndex};
use super::record::{Level, LevelMask};
use super::{DataError, PageError, Web};
use crate::model::JobState;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The most lines one `lines` request returns.
pub const MAX_LINES: usize = 2000;

/// About the most bytes of log one `lines` request reads.
pub const MAX_BYTES: u64 = 4 << 20;

/// The most lines one `lines` event of the stream carries.
const EVENT_LINES: u64 = 1000;

/// Checks the viewer and finds the job: its id and log directory.
fn open(web: &Web, headers: &HeaderMap, uri: &Uri, id: &str) -> Result<(u64, PathBuf), DataError> {
    web.viewer(headers, uri.path())?;
    let job = super::pages::find_job(web, id)?;
    Ok((job.id, web.handle.log_dir(job.id)))
}

/// The index of a log, brought up to date, off the async threads.
async fn index(web: &Web, dir: PathBuf) -> Result<Arc<Mutex<LogIndex>>, DataError> {
    let cache = web.indexes.clone();
    tokio::task::spawn_blocking(move || cache.get(&dir))
        .await
        .map_err(|e| PageError::Internal(format!("indexing a log: {e}")))?
        .map_err(DataError::from)
}

fn lock(index: &Mutex<LogIndex>) -> std::sync::MutexGuard<'_, LogIndex> {
    index.lock().unwrap_or_else(|e| e.into_inner())
}

fn number(q: &HashMap<String, String>, name: &str) -> Result<Option<u64>, DataError> {
    match q.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            DataError(PageError::BadRequest(format!(
                "'{name}' should be a line number, not {v:?}"
            )))
        }),
    }
}

/// `GET /jobs/ID/log/meta`.
pub(super) async fn meta(
    State(web): State<Web>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Result<Response, DataError> {
    let (id, dir) = open(&web, &headers, &uri, &id)?;
    // the state first: a Finished job's log is complete when it is read after
    let job = web
        .handle
        .store
        .job(id)?
        .ok_or_else(|| PageError::NotFound(format!("no job {id}")))?;
    let index = index(&web, dir).await?;
    let index = lock(&index);
    Ok(axum::Json(json!({
        "lines": index.lines(),
        "bytes": index.bytes(),
        "first_error": index.first_error(),
        "sections": index.sections(),
        "state": job.state.name(),
        "health": job.health.name(),
        "finished": job.state == JobState::Finished,
        "levels": Level::ALL.iter().map(|l| l.name()).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// `GET /jobs/ID/log/levels?from=N`.
pub(super) async fn levels(
    State(web): State<Web>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, DataError> {
    let (_, dir) = open(&web, &headers, &uri, &id)?;
    let from = number(&q, "from")?.unwrap_or(0);
    let index = index(&web, dir).await?;
    let bytes = lock(&index).levels_from(from).to_vec();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        bytes,
    )
        .into_response())
}

/// The line ranges of `ranges=A-B,C-D`.
fn ranges(list: &str) -> Result<Vec<(u64, u64)>, DataError> {
    let bad = |r: &str| {
        DataError(PageError::BadRequest(format!(
            "'ranges': {r:?} is not a range of line numbers (START-END, END excluded)"
        )))
    };
    list.split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| {
            let (a, b) = r.split_once('-').ok_or_else(|| bad(r))?;
            let (a, b) = (
                a.trim().parse::<u64>().map_err(|_| bad(r))?,
                b.trim().parse::<u64>().map_err(|_| bad(r))?,
            );
            if b < a {
                return Err(bad(r));
            }
            Ok((a, b))
        })
        .collect()
}

/// `GET /jobs/ID/log/lines?ranges=` or `?start=&end=&levels=`.
pub(super) async fn lines(
    State(web): State<Web>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, DataError> {
    let (_, dir) = open(&web, &headers, &uri, &id)?;
    let mask = match q.get("levels").map(|l| l.trim()).filter(|l| !l.is_empty()) {
        None => LevelMask::ALL,
        Some(l) => LevelMask::parse(l).map_err(|e| DataError(PageError::BadRequest(e)))?,
    };
    let wanted = match q.get("ranges") {
        Some(r) => Some(ranges(r)?),
        None => None,
    };
    let start = number(&q, "start")?.unwrap_or(0);
    let end = number(&q, "end")?;
    let index = index(&web, dir.clone()).await?;
    let (lines, next) = tokio::task::spawn_blocking(move || {
        let index = lock(&index);
        let numbers: Vec<u64> = match &wanted {
            Some(rs) => {
                let mut out = Vec::new();
                for (a, b) in rs {
                    let b = (*b).min(index.lines());
                    let room = MAX_LINES.saturating_sub(out.len()) as u64;
                    out.extend(
                        (*a..b.min(a.saturating_add(room)))
                            .filter(|n| index.level(*n).is_some_and(|l| mask.has(l))),
                    );
                }
                out
            }
            None => index.matching(mask, start, end.unwrap_or(u64::MAX), MAX_LINES),
        };
        read(&index, &dir, &numbers).map(|(lines, stopped)| {
            // where a further request goes on (start/end requests)
            let next = match (&wanted, stopped) {
                (_, Some(n)) => Some(n),
                (None, None) if numbers.len() == MAX_LINES => numbers.last().map(|n| n + 1),
                _ => None,
            };
            (lines, next)
        })
    })
    .await
    .map_err(|e| PageError::Internal(format!("reading a log: {e}")))??;
    Ok(axum::Json(json!({ "lines": lines, "next": next })).into_response())
}

/// Reads the lines `numbers` (ascending) in runs of consecutive lines, up to about
/// [`MAX_BYTES`]; returns them and the first line left out, if the budget stopped it.
fn read(
    index: &LogIndex,
    dir: &std::path::Path,
    numbers: &[u64],
) -> Result<(Vec<Line>, Option<u64>), crate::logs::LogError> {
    let mut out = Vec::with_capacity(numbers.len());
    let mut budget = MAX_BYTES;
    let mut i = 0;
    while i < numbers.len() {
        let mut j = i + 1;
        while j < numbers.len() && numbers[j] == numbers[j - 1] + 1 {
            j += 1;
        }
        let (a, b) = (numbers[i], numbers[j - 1] + 1);
        // cut the run at the budget (one line at least)
        let mut end = b;
        let (from, _) = index.byte_range(a, a);
        while end > a + 1 && index.byte_range(a, end).1 - from > budget {
            end = a + (end - a) / 2;
        }
        let (f, t) = index.byte_range(a, end);
        out.extend(logindex::read_lines(index, dir, a, end, LevelMask::ALL)?);
        budget = budget.saturating_sub(t - f);
        if end < b {
            return Ok((out, Some(end)));
        }
        if budget == 0 && j < numbers.len() {
            return Ok((out, Some(numbers[j])));
        }
        i = j;
    }
    Ok((out, None))
}

/// What the stream has sent.
struct Follow {
    web: Web,
    id: u64,
    dir: PathBuf,
    next: u64,
    sections: Option<u64>,
    signal: tokio::sync::broadcast::Receiver<u64>,
    done: bool,
}

impl Follow {
    /// The next event: new lines, or the end; waits for the log to grow.
    async fn step(&mut self) -> Option<Event> {
        loop {
            if self.done {
                return None;
            }
            let finished = match self.web.handle.store.job(self.id) {
                Ok(Some(j)) => (j.state == JobState::Finished).then_some(j),
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!("web: job {}: {e}", self.id);
                    None
                }
            };
            let index = match index(&self.web, self.dir.clone()).await {
                Ok(i) => i,
                Err(e) => {
                    tracing::warn!("web: job {}: its log: {:?}", self.id, e.0.to_string());
                    self.done = true;
                    return Some(
                        Event::default()
                            .event("error")
                            .data("the log cannot be read"),
                    );
                }
            };
            let batch = {
                let index = index.clone();
                let (dir, from, sections) = (self.dir.clone(), self.next, self.sections);
                tokio::task::spawn_blocking(move || batch(&index, &dir, from, sections))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .flatten()
            };
            if let Some((data, next, version)) = batch {
                self.next = next;
                self.sections = Some(version);
                return Some(
                    Event::default()
                        .event("lines")
                        .id(next.to_string())
                        .data(data.to_string()),
                );
            }
            if let Some(j) = finished {
                self.done = true;
                return Some(Event::default().event("end").data(
                    json!({ "state": j.state.name(), "health": j.health.name() }).to_string(),
                ));
            }
            // wait for this job's log to grow (or its end), or a second
            let wait = async {
                loop {
                    match self.signal.recv().await {
                        Ok(id) if id == self.id => return,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            std::future::pending::<()>().await
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), wait).await;
        }
    }
}

/// The lines from `from` on (at most [`EVENT_LINES`]) as a `lines` event's data, with the
/// sections when they changed since `sections`; `None` when there is no new line.
fn batch(
    index: &Mutex<LogIndex>,
    dir: &std::path::Path,
    from: u64,
    sections: Option<u64>,
) -> Result<Option<(Value, u64, u64)>, crate::logs::LogError> {
    let index = lock(index);
    let to = index.lines().min(from.saturating_add(EVENT_LINES));
    if to <= from {
        return Ok(None);
    }
    let lines = logindex::read_lines(&index, dir, from, to, LevelMask::ALL)?;
    let version = index.sections_version();
    let mut data = json!({
        "start": from,
        "levels": index.levels_from(from).get(..(to - from) as usize).unwrap_or(&[]),
        "lines": lines.iter().map(|l| json!([l.dt, l.msg])).collect::<Vec<_>>(),
        "first_error": index.first_error(),
    });
    if sections != Some(version) {
        data["sections"] = json!(index.sections());
    }
    Ok(Some((data, to, version)))
}

/// `GET /jobs/ID/log/stream?from=N`.
pub(super) async fn stream(
    State(web): State<Web>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, DataError> {
    let (id, dir) = open(&web, &headers, &uri, &id)?;
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let from = match resumed {
        Some(n) => n,
        None => number(&q, "from")?.unwrap_or(0),
    };
    let signal = web.handle.log_signal.subscribe();
    let follow = Follow {
        web,
        id,
        dir,
        next: from,
        sections: None,
        signal,
        done: false,
    };
    let events = futures_util::stream::unfold(follow, |mut f| async move {
        f.step()
            .await
            .map(|e| (Ok::<_, std::convert::Infallible>(e), f))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ranges_are_read_or_refused() {
        assert_eq!(ranges("0-10, 20-25").unwrap(), vec![(0, 10), (20, 25)]);
        for bad in ["5", "a-b", "9-3", "-3"] {
            assert!(ranges(bad).is_err(), "{bad}");
        }
    }
}
