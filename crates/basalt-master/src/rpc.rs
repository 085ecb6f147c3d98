//! LAVA's XML-RPC API at `/RPC2` (and `/RPC2/`), the subset `lavacli` uses to submit and follow
//! jobs and to register workers, device types and devices: LAVA's method names, argument lists
//! (optional ones may be left off or sent as `<nil/>`) and return shapes, and LAVA's fault codes
//! (400 bad input, 401 a write without a token, 403 not allowed, 404 no such object). The XML is
//! read and written by [`crate::xmlrpc`].
//!
//! Authentication is HTTP Basic `USER:TOKEN` (lavacli turns its identity into
//! `http://USER:TOKEN@HOST/RPC2`): the token must be one of USER's (`basalt-master token add`),
//! else the request is refused with HTTP 401, as LAVA does. Without credentials, a call is
//! refused with the same HTTP 401 unless anonymous reads are on
//! ([`crate::engine::Config::anonymous_read`], `basalt-master --anonymous-read`; off by
//! default), as the REST API's are — except the introspection methods (`system.version`,
//! `system.listMethods`, `system.whoami`), which stay open: lavacli asks `system.version` before
//! every command to pick its call shapes, and none of them shows the lab. With anonymous reads
//! on, the read methods work without credentials. The writes always need a token (fault 401
//! without one), the admin ones a token of an admin (fault 403).
//!
//! The lab administration methods (devices' health and tags, device types' health checks and
//! schedules, aliases, workers' health) are in [`admin`].
//!
//! `system.version` reports [`RPC_VERSION`]: lavacli parses it and picks its call shapes by it,
//! and 2024.01 makes lavacli use the shapes every method here implements (`workers list` and
//! `devices list` pass `show_all`, as from 2023.3; `devices update`'s 2025.12 shape, which basalt
//! does not serve, is not used).

use crate::engine::{EngineError, Handle};
use crate::logs::LineChunks;
use crate::model::{DeviceHealth, JobState, WorkerHealth};
use crate::scheduler::Target;
use crate::store::{Device, Job, StoreError};
use crate::xmlrpc::{self, Value};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The LAVA version `system.version` reports (see the module's documentation).
pub const RPC_VERSION: &str = "2024.01";

/// The methods served, as `system.listMethods` lists them.
pub const METHODS: &[&str] = &[
    "system.version",
    "system.listMethods",
    "system.whoami",
    "scheduler.jobs.submit",
    "scheduler.jobs.show",
    "scheduler.jobs.logs",
    "scheduler.jobs.cancel",
    "scheduler.jobs.validate",
    "scheduler.jobs.definition",
    "scheduler.jobs.list",
    "scheduler.devices.list",
    "scheduler.devices.show",
    "scheduler.devices.add",
    "scheduler.devices.get_dictionary",
    "scheduler.devices.set_dictionary",
    "scheduler.device_types.list",
    "scheduler.device_types.add",
    "scheduler.workers.list",
    "scheduler.workers.show",
    "scheduler.workers.add",
    "scheduler.devices.update",
    "scheduler.devices.tags.add",
    "scheduler.devices.tags.list",
    "scheduler.devices.tags.delete",
    "scheduler.device_types.show",
    "scheduler.device_types.update",
    "scheduler.device_types.get_health_check",
    "scheduler.device_types.set_health_check",
    "scheduler.device_types.aliases.add",
    "scheduler.device_types.aliases.list",
    "scheduler.device_types.aliases.delete",
    "scheduler.aliases.add",
    "scheduler.aliases.delete",
    "scheduler.aliases.list",
    "scheduler.aliases.show",
    "scheduler.workers.update",
];

/// Why a call failed: an XML-RPC fault with LAVA's code.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    #[error("{0}")]
    BadRequest(String),
    #[error("Authentication with user and token required for this API.")]
    Anonymous,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method {0:?} is not supported")]
    NoMethod(String),
    #[error("{0}")]
    Parse(String),
    #[error("{0}")]
    Internal(String),
}

impl Fault {
    /// The fault code: LAVA's HTTP-like codes, the XML-RPC spec's for protocol errors.
    pub fn code(&self) -> i32 {
        match self {
            Fault::BadRequest(_) => 400,
            Fault::Anonymous => 401,
            Fault::Forbidden(_) => 403,
            Fault::NotFound(_) => 404,
            Fault::NoMethod(_) => -32601,
            Fault::Parse(_) => -32700,
            Fault::Internal(_) => -32500,
        }
    }
}

impl From<StoreError> for Fault {
    fn from(e: StoreError) -> Fault {
        match e {
            StoreError::Missing { .. } => Fault::NotFound(e.to_string()),
            StoreError::Exists { .. } => Fault::BadRequest(format!("Bad request: {e}")),
            _ => Fault::Internal(e.to_string()),
        }
    }
}

impl From<EngineError> for Fault {
    fn from(e: EngineError) -> Fault {
        match e {
            EngineError::Invalid(why) => {
                Fault::BadRequest(format!("Problem with submitted job data: {why}"))
            }
            EngineError::NotFound(why) => Fault::NotFound(why),
            EngineError::Store(e) => e.into(),
            EngineError::Stopped => Fault::Internal(e.to_string()),
        }
    }
}

type RpcResult<T> = Result<T, Fault>;

mod admin;

/// Who calls.
enum Caller {
    Anonymous,
    User { name: String, admin: bool },
}

impl Caller {
    /// The user's name: writes need one.
    fn user(&self) -> RpcResult<(&str, bool)> {
        match self {
            Caller::Anonymous => Err(Fault::Anonymous),
            Caller::User { name, admin } => Ok((name, *admin)),
        }
    }

    /// Admin methods need an admin.
    fn admin(&self) -> RpcResult<&str> {
        match self.user()? {
            (name, true) => Ok(name),
            (name, false) => Err(Fault::Forbidden(format!(
                "Permission denied: {name} is not an admin"
            ))),
        }
    }
}

/// The caller by HTTP Basic `USER:TOKEN`; `None`: credentials that are not valid (HTTP 401).
fn caller(h: &Handle, headers: &HeaderMap) -> Result<Caller, StatusCode> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Caller::Anonymous);
    };
    let unauthorized = StatusCode::UNAUTHORIZED;
    let encoded = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Basic "))
        .ok_or(unauthorized)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| unauthorized)?;
    let text = String::from_utf8(decoded).map_err(|_| unauthorized)?;
    let (user, token) = text.split_once(':').ok_or(unauthorized)?;
    if token.is_empty() {
        return Err(unauthorized);
    }
    match h.store.token_user(token) {
        Ok(Some((name, admin))) if name == user => Ok(Caller::User { name, admin }),
        Ok(_) => Err(unauthorized),
        Err(_) => Err(StatusCode::SERVICE_UNAVAILABLE),
    }
}

fn xml_reply(text: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], text).into_response()
}

fn fault_reply(f: &Fault) -> Response {
    xml_reply(xmlrpc::fault(f.code(), &f.to_string()))
}

/// The methods served without credentials whether or not anonymous reads are on.
const OPEN: &[&str] = &["system.version", "system.listMethods", "system.whoami"];

/// An HTTP error (401 for credentials that are missing or not valid) asking for Basic auth.
fn unauthorized(status: StatusCode, message: &'static str) -> Response {
    (
        status,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"basalt\"")],
        message,
    )
        .into_response()
}

/// `POST /RPC2`: one method call.
pub async fn handle(State(h): State<Handle>, headers: HeaderMap, body: Bytes) -> Response {
    let who = match caller(&h, &headers) {
        Ok(w) => w,
        Err(status) => {
            return unauthorized(
                status,
                "authentication failed: the user or token is not valid\n",
            )
        }
    };
    let call = match xmlrpc::parse_call(&body) {
        Ok(c) => c,
        Err(e) => return fault_reply(&Fault::Parse(e.to_string())),
    };
    if matches!(who, Caller::Anonymous) && !h.anonymous_read && !OPEN.contains(&&*call.method) {
        return unauthorized(StatusCode::UNAUTHORIZED, "authentication required\n");
    }
    let args = Args {
        method: &call.method,
        params: &call.params,
    };
    if call.method == "scheduler.jobs.logs" {
        return match job_logs(&h, &args).await {
            Ok(r) => r,
            Err(f) => fault_reply(&f),
        };
    }
    match dispatch(&h, &who, &args).await {
        Ok(v) => xml_reply(xmlrpc::response(&v)),
        Err(f) => fault_reply(&f),
    }
}

/// A call's parameters, read by position.
struct Args<'a> {
    method: &'a str,
    params: &'a [Value],
}

impl Args<'_> {
    /// At most `n` parameters.
    fn at_most(&self, n: usize) -> RpcResult<()> {
        if self.params.len() > n {
            return Err(Fault::BadRequest(format!(
                "{} takes at most {n} arguments ({} given)",
                self.method,
                self.params.len()
            )));
        }
        Ok(())
    }

    /// Parameter `i` unless it is absent or nil.
    fn get(&self, i: usize) -> Option<&Value> {
        self.params.get(i).filter(|v| **v != Value::Nil)
    }

    fn wrong(&self, name: &str, want: &str, got: &Value) -> Fault {
        Fault::BadRequest(format!(
            "{}: '{name}' should be a {want}, not a {}",
            self.method,
            got.kind()
        ))
    }

    fn opt_str(&self, i: usize, name: &str) -> RpcResult<Option<&str>> {
        match self.get(i) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong(name, "string", v)),
        }
    }

    fn str(&self, i: usize, name: &str) -> RpcResult<&str> {
        self.opt_str(i, name)?
            .ok_or_else(|| Fault::BadRequest(format!("{}: '{name}' is required", self.method)))
    }

    fn bool_or(&self, i: usize, name: &str, default: bool) -> RpcResult<bool> {
        match self.get(i) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::Int(n)) => Ok(*n != 0),
            Some(v) => Err(self.wrong(name, "boolean", v)),
        }
    }

    fn opt_uint(&self, i: usize, name: &str) -> RpcResult<Option<u64>> {
        match self.get(i) {
            None => Ok(None),
            Some(Value::Int(n)) => u64::try_from(*n).map(Some).map_err(|_| {
                Fault::BadRequest(format!("{}: '{name}' should not be negative", self.method))
            }),
            Some(v) => Err(self.wrong(name, "integer", v)),
        }
    }

    /// A job id: an integer or a string of one (lavacli passes the command line's text).
    fn job_id(&self, i: usize) -> RpcResult<u64> {
        let missing =
            |id: &dyn std::fmt::Display| Fault::NotFound(format!("Job '{id}' was not found."));
        match self.get(i) {
            Some(Value::Int(n)) => u64::try_from(*n).map_err(|_| missing(n)),
            Some(Value::String(s)) => s.trim().parse().map_err(|_| missing(s)),
            Some(v) => Err(self.wrong("job_id", "job id", v)),
            None => Err(Fault::BadRequest(format!(
                "{}: 'job_id' is required",
                self.method
            ))),
        }
    }
}

async fn dispatch(h: &Handle, who: &Caller, a: &Args<'_>) -> RpcResult<Value> {
    match a.method {
        "system.version" => {
            a.at_most(0)?;
            Ok(Value::str(RPC_VERSION))
        }
        "system.listMethods" => {
            a.at_most(0)?;
            Ok(Value::Array(
                METHODS.iter().map(|m| Value::str(*m)).collect(),
            ))
        }
        "system.whoami" => {
            a.at_most(0)?;
            Ok(match who {
                Caller::Anonymous => Value::Nil,
                Caller::User { name, .. } => Value::str(name.as_str()),
            })
        }
        "scheduler.jobs.submit" => {
            a.at_most(1)?;
            let (user, _) = who.user()?;
            let definition = a.str(0, "definition")?;
            let ids = h.submit_all(user, definition).await?;
            // LAVA: a job's id, or a MultiNode submission's sub_ids ("12.0", "12.1", ...)
            match ids.as_slice() {
                [id] if h.store.job(*id)?.is_some_and(|j| j.group.is_none()) => {
                    Ok(Value::Int(*id as i64))
                }
                _ => {
                    let mut subs = Vec::with_capacity(ids.len());
                    for id in &ids {
                        let sub = h.store.job(*id)?.and_then(|j| j.group).map(|g| g.sub_id);
                        subs.push(Value::str(sub.unwrap_or_else(|| id.to_string())));
                    }
                    Ok(Value::Array(subs))
                }
            }
        }
        "scheduler.jobs.show" => {
            a.at_most(1)?;
            let job = find_job(h, a.job_id(0)?)?;
            job_show(h, &job)
        }
        "scheduler.jobs.cancel" => {
            a.at_most(1)?;
            let (user, admin) = who.user()?;
            let job = find_job(h, a.job_id(0)?)?;
            if !admin && job.submitter != user {
                return Err(Fault::Forbidden(format!(
                    "Permission denied for user to job {}",
                    job.id
                )));
            }
            h.cancel(job.id).await?;
            Ok(Value::Bool(true))
        }
        "scheduler.jobs.validate" => {
            a.at_most(2)?;
            let definition = a.str(0, "definition")?;
            let _strict = a.bool_or(1, "strict", false)?;
            Ok(validate(definition))
        }
        "scheduler.jobs.definition" => {
            a.at_most(1)?;
            Ok(Value::String(find_job(h, a.job_id(0)?)?.definition))
        }
        "scheduler.jobs.list" => {
            // (state, health, start, limit, since, verbose)
            a.at_most(6)?;
            jobs_list(h, a)
        }
        "scheduler.devices.list" => {
            a.at_most(2)?;
            let show_all = a.bool_or(0, "show_all", false)?;
            let mut devices = h.store.devices()?;
            devices.sort_by(|x, y| x.hostname.cmp(&y.hostname));
            Ok(Value::Array(
                devices
                    .iter()
                    .filter(|d| show_all || d.health != DeviceHealth::Retired)
                    .map(|d| {
                        Value::structure([
                            ("hostname", Value::str(d.hostname.as_str())),
                            ("type", Value::str(d.device_type.as_str())),
                            ("health", Value::str(d.health.name())),
                            ("state", Value::str(d.state.name())),
                            ("current_job", opt_int(d.current_job)),
                            ("pipeline", Value::Bool(true)),
                        ])
                    })
                    .collect(),
            ))
        }
        "scheduler.devices.show" => {
            a.at_most(1)?;
            let d = find_device(h, a.str(0, "hostname")?)?;
            let health_job = h
                .store
                .device_types()?
                .iter()
                .any(|t| t.name == d.device_type && t.health_check.is_some());
            Ok(Value::structure([
                ("hostname", Value::str(d.hostname.as_str())),
                ("device_type", Value::str(d.device_type.as_str())),
                ("health", Value::str(d.health.name())),
                ("state", Value::str(d.state.name())),
                ("health_job", Value::Bool(health_job)),
                ("description", Value::str(d.description.as_str())),
                ("public", Value::Bool(true)),
                ("pipeline", Value::Bool(true)),
                ("has_device_dict", Value::Bool(d.dictionary.is_some())),
                ("worker", Value::str(d.worker.as_str())),
                ("current_job", opt_int(d.current_job)),
                ("tags", strings(&d.tags)),
            ]))
        }
        "scheduler.devices.add" => {
            // (hostname, type_name, worker_hostname, user_name, group_name, public, health,
            //  description)
            a.at_most(8)?;
            who.admin()?;
            let hostname = a.str(0, "hostname")?;
            let device_type = a.str(1, "type_name")?;
            let worker = a.str(2, "worker_hostname")?;
            let health = match a.opt_str(6, "health")? {
                None => None,
                Some(name) => Some(
                    DeviceHealth::from_name(name)
                        .ok_or_else(|| Fault::BadRequest(format!("Invalid health '{name}'")))?,
                ),
            };
            let description = a.opt_str(7, "description")?.unwrap_or("");
            check_name("hostname", hostname)?;
            if h.store.device(hostname)?.is_some() {
                return Err(Fault::BadRequest(
                    "Bad request: device already exists?".into(),
                ));
            }
            if !h
                .store
                .device_types()?
                .iter()
                .any(|t| t.name == device_type)
            {
                return Err(Fault::NotFound(format!(
                    "DeviceType '{device_type}' was not found."
                )));
            }
            if !h.store.workers()?.iter().any(|w| w.hostname == worker) {
                return Err(Fault::NotFound(format!("Worker '{worker}' was not found.")));
            }
            // LAVA's XML-RPC adds a device Unknown unless told otherwise
            h.store.add_device(&Device {
                hostname: hostname.into(),
                device_type: device_type.into(),
                worker: worker.into(),
                description: description.into(),
                tags: Vec::new(),
                dictionary: None,
                state: crate::model::DeviceState::Idle,
                health: health.unwrap_or(DeviceHealth::Unknown),
                current_job: None,
            })?;
            h.reschedule();
            Ok(Value::Nil)
        }
        "scheduler.devices.get_dictionary" => {
            // (hostname, render, context): basalt keeps the dictionary as given; LAVA sends
            // it as base64 (lavacli decodes either)
            a.at_most(3)?;
            let d = find_device(h, a.str(0, "hostname")?)?;
            d.dictionary
                .map(|t| Value::Base64(t.into_bytes()))
                .ok_or_else(|| {
                    Fault::NotFound(format!(
                        "Device '{}' does not have a configuration",
                        d.hostname
                    ))
                })
        }
        "scheduler.devices.set_dictionary" => {
            a.at_most(2)?;
            who.admin()?;
            let hostname = a.str(0, "hostname")?;
            let dictionary = a.str(1, "dictionary")?;
            find_device(h, hostname)?;
            h.store.set_dictionary(hostname, dictionary)?;
            h.reschedule();
            Ok(Value::Bool(true))
        }
        "scheduler.device_types.list" => {
            a.at_most(1)?;
            let devices = h.store.devices()?;
            let mut types = h.store.device_types()?;
            types.sort_by(|x, y| x.name.cmp(&y.name));
            Ok(Value::Array(
                types
                    .iter()
                    .map(|t| {
                        let n = devices.iter().filter(|d| d.device_type == t.name).count();
                        Value::structure([
                            ("name", Value::str(t.name.as_str())),
                            ("devices", Value::Int(n as i64)),
                            ("installed", Value::Bool(true)),
                            ("template", Value::Bool(true)),
                        ])
                    })
                    .collect(),
            ))
        }
        "scheduler.device_types.add" => {
            // (name, description, display, owners_only, health_frequency, health_denominator)
            a.at_most(6)?;
            who.admin()?;
            let name = a.str(0, "name")?;
            check_name("name", name)?;
            if h.store.device_type(name)?.is_some() {
                return Err(Fault::BadRequest(
                    "Bad request: device-type name is already used.".into(),
                ));
            }
            let change = crate::store::DeviceTypeChange {
                description: a.opt_str(1, "description")?.map(str::to_string),
                frequency: admin::frequency(a, 4)?,
                denominator: admin::denominator(a, 5)?,
                ..Default::default()
            };
            h.store.upsert_device_type(name, &change)?;
            h.reschedule();
            Ok(Value::Nil)
        }
        "scheduler.workers.list" => {
            a.at_most(1)?;
            let show_all = a.bool_or(0, "show_all", false)?;
            let mut workers = h.store.workers()?;
            workers.sort_by(|x, y| x.hostname.cmp(&y.hostname));
            Ok(Value::Array(
                workers
                    .iter()
                    .filter(|w| show_all || w.health != WorkerHealth::Retired)
                    .map(|w| Value::str(w.hostname.as_str()))
                    .collect(),
            ))
        }
        "scheduler.workers.show" => {
            a.at_most(1)?;
            let hostname = a.str(0, "hostname")?;
            let w = h
                .store
                .workers()?
                .into_iter()
                .find(|w| w.hostname == hostname)
                .ok_or_else(|| Fault::NotFound(format!("Worker '{hostname}' was not found.")))?;
            let mut devices: Vec<String> = h
                .store
                .devices()?
                .into_iter()
                .filter(|d| d.worker == w.hostname)
                .map(|d| d.hostname)
                .collect();
            devices.sort();
            Ok(Value::structure([
                ("hostname", Value::str(w.hostname.as_str())),
                ("description", Value::str(w.description.as_str())),
                ("state", Value::str(w.state.name())),
                ("health", Value::str(w.health.name())),
                ("devices", strings(&devices)),
                (
                    "last_ping",
                    if w.last_seen > 0 {
                        xmlrpc::datetime(w.last_seen)
                    } else {
                        Value::Nil
                    },
                ),
                ("job_limit", Value::Int(0)),
                ("version", Value::Nil),
                ("default_config", Value::Bool(true)),
                ("default_env", Value::Bool(true)),
            ]))
        }
        "scheduler.workers.add" => {
            // (hostname, description, disabled)
            a.at_most(3)?;
            who.admin()?;
            let hostname = a.str(0, "hostname")?;
            let description = a.opt_str(1, "description")?.unwrap_or("");
            if a.bool_or(2, "disabled", false)? {
                return Err(Fault::BadRequest(
                    "basalt adds workers Active: add it, then retire it or keep it stopped".into(),
                ));
            }
            check_name("hostname", hostname)?;
            if h.store.workers()?.iter().any(|w| w.hostname == hostname) {
                return Err(Fault::BadRequest(
                    "Bad request: worker already exists?".into(),
                ));
            }
            h.store.add_worker(hostname, description)?;
            Ok(Value::Nil)
        }
        _ => admin::dispatch(h, who, a).await,
    }
}

fn opt_int(n: Option<u64>) -> Value {
    n.map_or(Value::Nil, |n| Value::Int(n as i64))
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| Value::str(s.as_str())).collect())
}

/// A name that is part of URL paths ([`crate::model::check_name`]); a 400 fault when not.
fn check_name(field: &str, name: &str) -> RpcResult<()> {
    crate::model::check_name(field, name).map_err(Fault::BadRequest)
}

fn find_job(h: &Handle, id: u64) -> RpcResult<Job> {
    h.store
        .job(id)?
        .ok_or_else(|| Fault::NotFound(format!("Job '{id}' was not found.")))
}

fn find_device(h: &Handle, hostname: &str) -> RpcResult<Device> {
    h.store
        .device(hostname)?
        .ok_or_else(|| Fault::NotFound(format!("Device '{hostname}' was not found.")))
}

/// The most jobs one `scheduler.jobs.list` call returns.
const MAX_LIST: u64 = 1000;

/// `scheduler.jobs.list(state, health, start=0, limit=25, since=0, verbose=False)`: the newest
/// jobs first, as LAVA lists them; `since` is in minutes (jobs that ended since then).
fn jobs_list(h: &Handle, a: &Args<'_>) -> RpcResult<Value> {
    let state = match a.opt_str(0, "state")? {
        None => None,
        Some(name) => Some(
            JobState::from_name(name)
                .ok_or_else(|| Fault::BadRequest(format!("Invalid state '{name}'")))?,
        ),
    };
    let health = match a.opt_str(1, "health")? {
        None => None,
        Some(name) => Some(
            crate::model::JobHealth::from_name(name)
                .ok_or_else(|| Fault::BadRequest(format!("Invalid health '{name}'")))?,
        ),
    };
    let start = a.opt_uint(2, "start")?.unwrap_or(0);
    let limit = a.opt_uint(3, "limit")?.unwrap_or(25).clamp(1, MAX_LIST);
    let since = a.opt_uint(4, "since")?.unwrap_or(0);
    let verbose = a.bool_or(5, "verbose", false)?;
    let ended_after = (since > 0).then(|| {
        crate::engine::now_ms()
            .saturating_sub(since.saturating_mul(60_000))
            .saturating_sub(1)
    });
    let (_, jobs) = h.store.query_jobs(&crate::store::JobQuery {
        states: state.into_iter().collect(),
        healths: health.into_iter().collect(),
        ended_after,
        limit: limit as u32,
        offset: u32::try_from(start).unwrap_or(u32::MAX),
        ..crate::store::JobQuery::default()
    })?;
    let mut out = Vec::with_capacity(jobs.len());
    for j in &jobs {
        let Value::Struct(shown) = job_show(h, j)? else {
            return Err(Fault::Internal("a job shown as no struct".into()));
        };
        let field = |k: &str| {
            shown
                .iter()
                .find(|(n, _)| n == k)
                .map_or(Value::Nil, |(_, v)| v.clone())
        };
        let mut members = vec![
            ("id".to_string(), Value::Int(j.id as i64)),
            ("description".into(), Value::str(j.description.as_str())),
            ("device_type".into(), field("device_type")),
            ("health".into(), Value::str(j.health.name())),
            ("state".into(), Value::str(j.state.name())),
            ("submitter".into(), Value::str(j.submitter.as_str())),
        ];
        if verbose {
            members.push(("actual_device".into(), field("device")));
            members.push(("start_time".into(), field("start_time")));
            members.push(("end_time".into(), field("end_time")));
            members.push(("error_type".into(), Value::opt_str(j.error_type.clone())));
            members.push(("error_msg".into(), Value::opt_str(j.error_msg.clone())));
            members.push(("failure_cause".into(), cause(j)));
        }
        out.push(Value::Struct(members));
    }
    Ok(Value::Array(out))
}

/// `scheduler.jobs.show`'s struct.
fn job_show(h: &Handle, j: &Job) -> RpcResult<Value> {
    let device_type = match &j.target {
        Target::DeviceType(t) => Some(t.clone()),
        Target::Device(d) => h.store.device(d)?.map(|d| d.device_type),
        Target::AnyOf(_) => match &j.actual_device {
            Some(d) => h.store.device(d)?.map(|d| d.device_type),
            None => None,
        },
    };
    let mut members = vec![
        ("id".to_string(), Value::Int(j.id as i64)),
        ("description".into(), Value::str(j.description.as_str())),
        ("device".into(), Value::opt_str(j.actual_device.clone())),
        ("device_type".into(), Value::opt_str(device_type)),
        ("health_check".into(), Value::Bool(j.health_check)),
        ("pipeline".into(), Value::Bool(true)),
        ("health".into(), Value::str(j.health.name())),
        ("state".into(), Value::str(j.state.name())),
        ("submitter".into(), Value::str(j.submitter.as_str())),
        ("submit_time".into(), xmlrpc::datetime(j.submit_time)),
        (
            "start_time".into(),
            j.start_time.map_or(Value::Nil, xmlrpc::datetime),
        ),
        (
            "end_time".into(),
            j.end_time.map_or(Value::Nil, xmlrpc::datetime),
        ),
        ("tags".into(), strings(&j.tags)),
        ("visibility".into(), Value::str("Publicly visible")),
        ("failure_comment".into(), Value::Nil),
    ];
    if j.state == JobState::Finished {
        if let Some(t) = &j.error_type {
            members.push(("error_type".into(), Value::str(t.as_str())));
            members.push(("error_msg".into(), Value::opt_str(j.error_msg.clone())));
        }
        members.push(("failure_cause".into(), cause(j)));
    }
    Ok(Value::Struct(members))
}

/// basalt's failure cause of a job, `<nil/>` when it completed (or is not finished).
fn cause(j: &Job) -> Value {
    j.failure_cause.map_or(Value::Nil, |c| Value::str(c.name()))
}

/// `scheduler.jobs.validate`: `{}` when the definition is valid, else `{path, msg}` of the
/// first error (basalt's own submission rules, [`basalt_model::job::parse_job`]).
fn validate(definition: &str) -> Value {
    match basalt_model::job::parse_job("job.yaml", definition) {
        Ok(_) => Value::Struct(Vec::new()),
        Err(e) => {
            let mut report = e.report;
            report.sort();
            let first = report.errors().next().cloned();
            let (path, msg) = match first {
                Some(d) => (d.path.clone(), report.line(&d)),
                None => (String::new(), "invalid job definition".to_string()),
            };
            Value::structure([("path", Value::String(path)), ("msg", Value::String(msg))])
        }
    }
}

/// `scheduler.jobs.logs(job_id, start=0, end=None)` → `[finished, base64 of the YAML lines]`,
/// streamed: the log is read and encoded a chunk at a time while the reply is sent.
async fn job_logs(h: &Handle, a: &Args<'_>) -> RpcResult<Response> {
    a.at_most(3)?;
    let job = find_job(h, a.job_id(0)?)?;
    let start = a.opt_uint(1, "start")?.unwrap_or(0);
    let end = a.opt_uint(2, "end")?.filter(|e| *e > 0);
    // taken before the log is read: a job that ends meanwhile is called unfinished, and the
    // next call gets the rest
    let finished = job.state == JobState::Finished;
    let chunks = LineChunks::open(h.log_dir(job.id), start, end)
        .await
        .map_err(|e| Fault::Internal(e.to_string()))?;
    let prefix = format!(
        "<?xml version=\"1.0\"?>\n<methodResponse><params><param><value><array><data>\
         <value><boolean>{}</boolean></value><value><base64>",
        u8::from(finished)
    );
    let body = LogBody {
        chunks,
        carry: Vec::new(),
        stage: Stage::Prefix(prefix),
    };
    Ok((
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        Body::from_stream(body),
    )
        .into_response())
}

const LOGS_SUFFIX: &str =
    "</base64></value></data></array></value></param></params></methodResponse>\n";

enum Stage {
    Prefix(String),
    Data,
    Done,
}

/// The body of a `logs` reply: the prefix, the log's chunks in base64, the suffix.
struct LogBody {
    chunks: LineChunks,
    /// Bytes not yet encoded (fewer than 3: base64 is encoded in whole groups until the end).
    carry: Vec<u8>,
    stage: Stage,
}

impl LogBody {
    /// Encodes the carried bytes and `chunk` but for a remainder of fewer than 3 bytes (the
    /// chunk is not copied: the carry is completed to a group from its start).
    fn encode(&mut self, chunk: Vec<u8>) -> Bytes {
        let b64 = &base64::engine::general_purpose::STANDARD;
        let mut rest = &chunk[..];
        let mut out = String::with_capacity((self.carry.len() + chunk.len()) / 3 * 4 + 4);
        if !self.carry.is_empty() {
            let fill = (3 - self.carry.len()).min(rest.len());
            self.carry.extend_from_slice(&rest[..fill]);
            rest = &rest[fill..];
            if self.carry.len() < 3 {
                return Bytes::new();
            }
            b64.encode_string(&self.carry, &mut out);
            self.carry.clear();
        }
        let whole = rest.len() / 3 * 3;
        b64.encode_string(&rest[..whole], &mut out);
        self.carry.extend_from_slice(&rest[whole..]);
        Bytes::from(out)
    }
}

impl futures_core::Stream for LogBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match &mut this.stage {
                Stage::Prefix(p) => {
                    let p = std::mem::take(p);
                    this.stage = Stage::Data;
                    return Poll::Ready(Some(Ok(Bytes::from(p))));
                }
                Stage::Done => return Poll::Ready(None),
                Stage::Data => {}
            }
            let chunk = match this.chunks.poll_chunk(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(c))) => c,
                Poll::Ready(Some(Err(e))) => {
                    this.stage = Stage::Done;
                    return Poll::Ready(Some(Err(std::io::Error::other(e.to_string()))));
                }
                Poll::Ready(None) => {
                    this.stage = Stage::Done;
                    let mut tail = base64::engine::general_purpose::STANDARD
                        .encode(std::mem::take(&mut this.carry))
                        .into_bytes();
                    tail.extend_from_slice(LOGS_SUFFIX.as_bytes());
                    return Poll::Ready(Some(Ok(Bytes::from(tail))));
                }
            };
            let encoded = this.encode(chunk);
            if !encoded.is_empty() {
                return Poll::Ready(Some(Ok(encoded)));
            }
        }
    }
}
