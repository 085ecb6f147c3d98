//! The job definition's `notify:` block: when a job reaches the state its `criteria` name,
//! each `callback`/`callbacks` entry is sent as LAVA's `NotificationCallback.invoke_callback`
//! sends it, and `recipients` are logged (basalt has no SMTP relay or IRC client: not sent).
//!
//! * `criteria.status`: `running` (the job is Running), `finished` (Finished, any health),
//!   `complete` / `incomplete` / `canceled` (Finished with that health); `all` is taken as
//!   `finished`. `criteria.type` (regression/progression against earlier jobs) is not
//!   supported: such a notification is logged and not sent.
//! * a callback: `url` (LAVA's `{ID}`, `{STATUS}`, `{STATUS_STRING}`, `{DESCRIPTION}`... are
//!   replaced by the job's fields), `method` `GET` (default: no body) or `POST`, `token` sent in
//!   the header `header` (default `Authorization`) as it is written (LAVA also looks it up
//!   among the submitter's token descriptions; basalt keeps only token hashes), `dataset`
//!   `minimal` (default), `logs`, `results` or `all`, `content-type` `urlencoded` (default) or
//!   `json`.
//! * the body is LAVA's `TestJob.create_job_data`: `id`, `status`, `status_string`, `state`,
//!   `state_string`, `health`, `health_string`, `submit_time`, `start_time`, `end_time`,
//!   `submitter_username`, `submitter_email`, `failure_comment`, `priority`, `description`,
//!   `actual_device_id`, `definition`, `metadata`, `health_check`; `log` (the job's
//!   `output.yaml`) with `logs`/`all`, `results` (`{suite: YAML list of test cases}`) with
//!   `results`/`all`. Form-encoded, values are Python's `str()` of them, `None` left out, and
//!   `metadata`/`results` JSON text.
//!
//! Callbacks are sent from threads of their own: the store's observer only queues the change,
//! so a slow or dead receiver never delays the engine. A failed request (no connection, or an
//! HTTP status ≥ 400) is tried again after a backoff that doubles: `attempts` tries in all.

use crate::model::{JobHealth, JobState};
use crate::store::{Change, Job};
use basalt_model::yaml::{self, Node, Value as Yaml};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How callbacks are sent.
#[derive(Clone, Debug)]
pub struct NotifyConfig {
    /// Tries per callback (at least 1).
    pub attempts: u32,
    /// The wait before the second try; doubled before each further one.
    pub backoff: Duration,
    /// Each request's timeout (LAVA's `CALLBACK_TIMEOUT`).
    pub timeout: Duration,
    /// The jobs' log directories (`<logs>/<id>/output.yaml`), for the `logs` dataset.
    pub logs: PathBuf,
}

impl NotifyConfig {
    /// 3 tries, 1 s then 2 s apart, 10 s per request.
    pub fn new(logs: PathBuf) -> NotifyConfig {
        NotifyConfig {
            attempts: 3,
            backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            logs,
        }
    }
}

/// Why the notifier could not start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notify: thread: {0}")]
    Thread(std::io::Error),
}

/// Why one callback request failed.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("HTTP {0}")]
    Status(u16),
    #[error("{0}")]
    Transport(String),
}

/// How a callback sends the job's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dataset {
    Minimal,
    Logs,
    Results,
    All,
}

/// One `callback` of a `notify:` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Callback {
    pub url: String,
    /// `POST`, else `GET`.
    pub post: bool,
    pub token: Option<String>,
    pub header: String,
    pub dataset: Dataset,
    pub json: bool,
}

/// A `notify:` block, as far as basalt acts on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notify {
    pub status: String,
    /// `criteria.type` (unsupported).
    pub kind: Option<String>,
    pub callbacks: Vec<Callback>,
    /// Email addresses / users of `recipients` (logged, not sent), as `method: address`.
    pub recipients: Vec<String>,
}

enum Msg {
    Change(Box<Change>),
    Stop,
}

/// The notifier's thread: reads each job change, sends what its `notify:` asks for.
pub struct Notifier {
    tx: mpsc::Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl Notifier {
    pub fn start(config: NotifyConfig) -> Result<Notifier, NotifyError> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("notify".into())
            .spawn(move || {
                while let Ok(Msg::Change(c)) = rx.recv() {
                    if let Change::Job { job, .. } = *c {
                        on_job(&config, job);
                    }
                }
            })
            .map_err(NotifyError::Thread)?;
        Ok(Notifier {
            tx,
            thread: Some(thread),
        })
    }

    /// The store's observer ([`crate::store::Store::observe`]): queues job changes.
    pub fn observer(&self) -> impl Fn(&Change) + Send + Sync + 'static {
        let tx = self.tx.clone();
        move |c: &Change| {
            if matches!(c, Change::Job { .. }) {
                let _ = tx.send(Msg::Change(Box::new(c.clone())));
            }
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn on_job(config: &NotifyConfig, job: Job) {
    if !job.definition.contains("notify") {
        return;
    }
    let Some(notify) = parse(&job.definition) else {
        return;
    };
    if !matches(&notify.status, job.state, job.health) {
        return;
    }
    if let Some(kind) = &notify.kind {
        tracing::warn!(
            job_id = job.id,
            "job {}: notify criteria type {kind} is not supported: not sent",
            job.id
        );
        return;
    }
    for r in &notify.recipients {
        tracing::warn!(
            job_id = job.id,
            "job {}: notification to {r} not sent: no SMTP relay or IRC configured",
            job.id
        );
    }
    for cb in notify.callbacks {
        let config = config.clone();
        let id = job.id;
        let job = job.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("callback-{id}"))
            .spawn(move || deliver(&config, &job, &cb));
        if let Err(e) = spawned {
            tracing::error!(job_id = id, "job {id}: callback not sent: no thread: {e}");
        }
    }
}

/// Whether a job in `state` with `health` meets `criteria.status` (LAVA's
/// `notification_criteria`, without `type`).
pub fn matches(status: &str, state: JobState, health: JobHealth) -> bool {
    match status {
        "running" => state == JobState::Running,
        "finished" | "all" => state == JobState::Finished,
        "complete" => state == JobState::Finished && health == JobHealth::Complete,
        "incomplete" => state == JobState::Finished && health == JobHealth::Incomplete,
        "canceled" => state == JobState::Finished && health == JobHealth::Canceled,
        _ => false,
    }
}

fn text(n: Option<&Node>) -> Option<String> {
    match &n?.value {
        Yaml::Str(s) => Some(s.clone()),
        Yaml::Int(i) => Some(i.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The `notify:` block of a job definition, if it has a valid one.
pub fn parse(definition: &str) -> Option<Notify> {
    let doc = yaml::load(definition).ok()?;
    let n = doc.get("notify")?;
    let criteria = n.get("criteria")?;
    let status = text(criteria.get("status"))?;
    let mut callbacks = Vec::new();
    let mut entries: Vec<&Node> = Vec::new();
    if let Some(c) = n.get("callback") {
        entries.push(c);
    }
    if let Some(cs) = n.get("callbacks").and_then(Node::as_seq) {
        entries.extend(cs.iter());
    }
    for c in entries {
        let Some(url) = text(c.get("url")) else {
            continue;
        };
        callbacks.push(Callback {
            url,
            post: text(c.get("method")).is_some_and(|m| m.eq_ignore_ascii_case("post")),
            token: text(c.get("token")),
            header: text(c.get("header")).unwrap_or_else(|| "Authorization".into()),
            dataset: match text(c.get("dataset")).as_deref() {
                Some("logs") => Dataset::Logs,
                Some("results") => Dataset::Results,
                Some("all") => Dataset::All,
                _ => Dataset::Minimal,
            },
            json: text(c.get("content-type")).as_deref() == Some("json"),
        });
    }
    let mut recipients = Vec::new();
    for r in n.get("recipients").and_then(Node::as_seq).unwrap_or(&[]) {
        if let Some(to) = r.get("to") {
            let method = text(to.get("method")).unwrap_or_else(|| "email".into());
            let who = text(to.get("email"))
                .or_else(|| text(to.get("user")))
                .or_else(|| text(to.get("handle")))
                .unwrap_or_default();
            recipients.push(format!("{method}: {who}"));
        }
    }
    Some(Notify {
        status,
        kind: text(criteria.get("type")),
        callbacks,
        recipients,
    })
}

/// LAVA's legacy status (`TestJob.get_legacy_status`) and its display name, lower case.
pub fn legacy_status(state: JobState, health: JobHealth) -> (u8, &'static str) {
    match (state, health) {
        (JobState::Running, _) => (1, "running"),
        (JobState::Canceling, _) => (5, "canceling"),
        (JobState::Finished, JobHealth::Complete) => (2, "complete"),
        (JobState::Finished, JobHealth::Incomplete) => (3, "incomplete"),
        (JobState::Finished, JobHealth::Canceled) => (4, "canceled"),
        _ => (0, "submitted"),
    }
}

/// Python's `str()` of an aware UTC datetime (`2026-08-21 16:25:29.123000+00:00`), `None`
/// when there is none.
fn py_time(ms: Option<u64>) -> String {
    match ms {
        Some(ms) => crate::events::iso_micros(ms * 1000).replacen('T', " ", 1),
        None => "None".into(),
    }
}

/// LAVA's `create_job_data(output, results)` for a callback.
pub fn job_data(job: &Job, dataset: Dataset, logs: &std::path::Path) -> Map<String, Value> {
    let (status, status_string) = legacy_status(job.state, job.health);
    let metadata: Vec<Value> = yaml::load(&job.definition)
        .ok()
        .and_then(|d| {
            d.get("metadata")
                .and_then(|m| m.as_map())
                .map(<[_]>::to_vec)
        })
        .unwrap_or_default()
        .iter()
        .filter_map(|(k, v)| Some(json!({ text(Some(k))?: text(Some(v)).unwrap_or_default() })))
        .collect();
    let mut m = Map::new();
    m.insert("id".into(), json!(job.id));
    m.insert("status".into(), json!(status));
    m.insert("status_string".into(), json!(status_string));
    m.insert("state".into(), json!(job.state.code()));
    m.insert("state_string".into(), json!(job.state.name()));
    m.insert("health".into(), json!(job.health.code()));
    m.insert("health_string".into(), json!(job.health.name()));
    m.insert("submit_time".into(), json!(py_time(Some(job.submit_time))));
    m.insert("start_time".into(), json!(py_time(job.start_time)));
    m.insert("end_time".into(), json!(py_time(job.end_time)));
    m.insert("submitter_username".into(), json!(job.submitter));
    m.insert("submitter_email".into(), json!(""));
    m.insert("failure_comment".into(), json!(job.error_msg));
    // basalt's: LAVA's error type and basalt's cause of a job that did not complete
    m.insert("error_type".into(), json!(job.error_type));
    m.insert(
        "failure_cause".into(),
        json!(job.failure_cause.map(|c| c.name())),
    );
    m.insert("priority".into(), json!(job.priority.value()));
    m.insert("description".into(), json!(job.description));
    m.insert("actual_device_id".into(), json!(job.actual_device));
    m.insert("definition".into(), json!(job.definition));
    m.insert("metadata".into(), Value::Array(metadata));
    m.insert("health_check".into(), json!(job.health_check));
    if matches!(dataset, Dataset::Logs | Dataset::All) {
        let path = logs.join(job.id.to_string()).join("output.yaml");
        if let Ok(log) = std::fs::read_to_string(path) {
            m.insert("log".into(), json!(log));
        }
    }
    if matches!(dataset, Dataset::Results | Dataset::All) {
        m.insert("results".into(), Value::Object(results(job)));
    }
    m
}

/// `{suite: YAML list of its test cases}` (LAVA's `export_testcase` fields basalt has).
fn results(job: &Job) -> Map<String, Value> {
    let cases =
        crate::results::test_cases(job.results.as_deref().unwrap_or("")).unwrap_or_default();
    let mut suites: Vec<(String, String)> = Vec::new();
    for c in cases {
        let q = yaml::quote_str;
        let item = format!(
            "- id: {}\n  job: {}\n  measurement: {}\n  metadata: {}\n  name: {}\n  result: {}\n  suite: {}\n  unit: {}\n",
            q(&c.id.to_string()),
            q(&job.id.to_string()),
            c.measurement.as_deref().map_or("null".into(), q),
            q(&c.metadata),
            q(&c.name),
            q(&c.result),
            q(&c.suite),
            q(&c.unit),
        );
        match suites.iter_mut().find(|(s, _)| *s == c.suite) {
            Some((_, text)) => text.push_str(&item),
            None => suites.push((c.suite.clone(), item)),
        }
    }
    suites.into_iter().map(|(s, t)| (s, json!(t))).collect()
}

/// Python's `str()` of a JSON scalar for a form (`True`, `42`, text as is); `None` for null.
fn form_value(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Bool(true) => Some("True".into()),
        Value::Bool(false) => Some("False".into()),
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

/// The callback URL with LAVA's `{FIELD}` variables replaced by the job's fields.
pub fn substitute(url: &str, job: &Job) -> String {
    let (status, status_string) = legacy_status(job.state, job.health);
    let fields = [
        ("ID", job.id.to_string()),
        ("STATUS", status.to_string()),
        ("STATUS_STRING", status_string.to_string()),
        ("DESCRIPTION", job.description.clone()),
        ("STATE", job.state.code().to_string()),
        ("HEALTH", job.health.code().to_string()),
        ("PRIORITY", job.priority.value().to_string()),
        ("SUBMITTER", job.submitter.clone()),
    ];
    let mut out = String::new();
    let mut rest = url;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let name = rest[open + 1..open + close].trim();
        out.push_str(&rest[..open]);
        match fields.iter().find(|(f, _)| *f == name) {
            Some((_, v)) => out.push_str(v),
            None => out.push_str(&rest[open..=open + close]),
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// Sends one request of a callback.
pub fn send(
    agent: &ureq::Agent,
    url: &str,
    cb: &Callback,
    body: &Map<String, Value>,
) -> Result<(), CallbackError> {
    let mut req = if cb.post {
        agent.post(url)
    } else {
        agent.get(url)
    };
    if let Some(t) = &cb.token {
        req = req.set(&cb.header, t);
    }
    let r = if !cb.post {
        req.call()
    } else if cb.json {
        req.send_json(Value::Object(body.clone()))
    } else {
        let pairs: Vec<(String, String)> = body
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), form_value(v)?)))
            .collect();
        let refs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        req.send_form(&refs)
    };
    match r {
        Ok(_) => Ok(()),
        Err(ureq::Error::Status(code, _)) => Err(CallbackError::Status(code)),
        // ureq's message starts with the URL: without its credentials, as everywhere in logs
        Err(e) => Err(CallbackError::Transport(
            e.to_string().replace(url, &without_userinfo(url)),
        )),
    }
}

/// Sends a callback, trying again with a doubling backoff; logs the outcome.
fn deliver(config: &NotifyConfig, job: &Job, cb: &Callback) {
    let agent = ureq::AgentBuilder::new().timeout(config.timeout).build();
    let url = substitute(&cb.url, job);
    let body = if cb.post {
        job_data(job, cb.dataset, &config.logs)
    } else {
        Map::new()
    };
    let attempts = config.attempts.max(1);
    let mut wait = config.backoff;
    // what the log says of the URL: without a user and password in it
    let url_shown = without_userinfo(&url);
    for attempt in 1..=attempts {
        match send(&agent, &url, cb, &body) {
            Ok(()) => return,
            Err(e) if attempt < attempts => {
                tracing::warn!(
                    job_id = job.id,
                    "job {}: callback {url_shown}: {e} (try {attempt} of {attempts}, again in {wait:?})",
                    job.id
                );
                std::thread::sleep(wait);
                wait = wait.saturating_mul(2);
            }
            Err(e) => tracing::error!(
                job_id = job.id,
                "job {}: callback {url_shown}: {e}: given up after {attempts} tries",
                job.id
            ),
        }
    }
}

/// `url` with any `user:password@` replaced by `***@`: callback URLs come from jobs and may
/// carry credentials, which never reach a log.
fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_urls_are_logged_without_credentials() {
        assert_eq!(
            without_userinfo("https://ci:s3cret@kernelci.example/cb?x=1"),
            "https://***@kernelci.example/cb?x=1"
        );
        assert_eq!(
            without_userinfo("http://127.0.0.1:9/cb/a@b"),
            "http://127.0.0.1:9/cb/a@b"
        );
        assert_eq!(without_userinfo("not a url"), "not a url");
    }

    #[test]
    fn a_notify_block_is_read_with_lava_defaults() {
        let n = parse(
            "job_name: x\nnotify:\n  criteria:\n    status: complete\n  recipients:\n  - to:\n      method: email\n      email: a@example.org\n  callbacks:\n  - url: http://h/{ID}/{STATUS_STRING}\n  - url: http://h/p\n    method: POST\n    token: t\n    header: X-Token\n    dataset: all\n    content-type: json\n",
        )
        .expect("a notify block");
        assert_eq!(n.status, "complete");
        assert_eq!(n.recipients, ["email: a@example.org"]);
        assert_eq!(n.callbacks.len(), 2);
        assert!(!n.callbacks[0].post && !n.callbacks[0].json);
        assert_eq!(n.callbacks[0].header, "Authorization");
        assert_eq!(n.callbacks[0].dataset, Dataset::Minimal);
        assert!(n.callbacks[1].post && n.callbacks[1].json);
        assert_eq!(n.callbacks[1].dataset, Dataset::All);
        assert!(matches("finished", JobState::Finished, JobHealth::Canceled));
        assert!(!matches(
            "complete",
            JobState::Finished,
            JobHealth::Incomplete
        ));
        assert!(matches("running", JobState::Running, JobHealth::Unknown));
    }
}
