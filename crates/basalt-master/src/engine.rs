//! The master's event loop: workers say hello and are welcomed with where their jobs' logs
//! stand, logs are stored exactly once as they arrive, ends are stored once every record before
//! them is, and the scheduler runs on every event that can free or fill a device (a submission,
//! a worker online, an end, a worker lost) — not on a timer. A worker silent for
//! [`basalt_proto::MISSED_HEARTBEATS`] heartbeats is offline: its running jobs end Incomplete
//! ("worker lost"), their devices go to health Unknown (and get a health check when their type
//! has one).
//!
//! Health checks on a schedule: before each pass the engine works out which devices' checks
//! are due by their type's frequency ([`crate::health::plan`], with the engine's [`Clock`])
//! and sleeps on a tokio timer until the earliest next due time, so a check comes due without
//! any polling loop. A lost worker's Good devices go to Unknown: they get a check when it is
//! back.
//!
//! The engine is driven through a [`Handle`] (what the HTTP API and the tests call) and the
//! workers link; it owns the store's writes. Reservations (jobs that wait for their holder,
//! held by workers with the `reservations` capability) are driven in `engine/reservations.rs`.

mod reservations;

pub use reservations::{
    artifact_url, boot_job, ExecOutput, NewLease, ReservationError, EXEC_MARGIN,
};

use crate::health;
use crate::link::{Conn, LinkEvent, WorkerLink};
use crate::logs::JobLogFile;
use crate::model::{DeviceHealth, JobHealth, JobState, Priority, WorkerState};
use crate::multinode;
use crate::scheduler::{schedule, Target};
use crate::store::{Failure, GroupMember, Job, NewGroup, NewJob, Store, StoreError};
use basalt_link::cert::{Keypair, PublicKey};
use basalt_proto::{
    negotiate, require_capabilities, Cancel, Capabilities, End, EndAck, FailureCause, HeartbeatAck,
    HelloRequired, JobId, JobResume, LogAck, MasterMsg, Outcome, ProtocolVersion, Refused, Start,
    Welcome, WorkerMsg,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// How the engine is set up.
#[derive(Clone, Debug)]
pub struct Config {
    pub state_dir: PathBuf,
    /// The workers endpoint to bind.
    pub workers: String,
    pub key: Keypair,
    /// How often workers send heartbeats.
    pub heartbeat: Duration,
    /// Device-type template directories (before basalt's built-in ones).
    pub device_types: Vec<PathBuf>,
    /// The protocol version this master speaks ([`ProtocolVersion::CURRENT`]; tests set others).
    pub version: ProtocolVersion,
    /// What every worker must offer (`--require-capability`): a worker lacking one is refused.
    pub required_capabilities: Capabilities,
    /// Reads (REST GETs, XML-RPC read methods) without credentials are served
    /// (`--anonymous-read`); off: every API request but the version needs a valid token.
    pub anonymous_read: bool,
    /// The MultiNode coordinator as workers reach it ("HOST:PORT", `--coordinator` or
    /// `--coordinator-public`): given in the Start of every MultiNode sub-job.
    pub coordinator: String,
    /// The token the coordinator requires (`None`: it takes requests without one).
    pub coordinator_token: Option<String>,
    /// The longest lease a reservation may have (`--max-lease`), and ask for at a renewal.
    pub max_lease: Duration,
}

/// The default of [`Config::max_lease`]: a day.
pub const DEFAULT_MAX_LEASE: Duration = Duration::from_secs(86_400);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid job: {0}")]
    Invalid(String),
    #[error("the engine is stopped")]
    Stopped,
    #[error("{0}")]
    NotFound(String),
}

/// The time in ms since the epoch, as the engine reads it to decide which health checks are
/// due ([`start_with_clock`]; the system's clock by default).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

enum Request {
    Submit(
        String,
        String,
        oneshot::Sender<Result<Vec<u64>, EngineError>>,
    ),
    Cancel(u64, oneshot::Sender<Result<bool, EngineError>>),
    /// Queue a health check of a device now.
    HealthCheck(String, oneshot::Sender<Result<u64, EngineError>>),
    /// The devices changed outside the engine (the API registered one): schedule again.
    Schedule,
    /// A reservation call (`engine/reservations.rs`).
    Reservation(reservations::Call),
}

/// What the API and the tests call; cheap to clone.
#[derive(Clone)]
pub struct Handle {
    requests: mpsc::UnboundedSender<Request>,
    pub store: Arc<Store>,
    pub logs: PathBuf,
    /// [`Config::anonymous_read`].
    pub anonymous_read: bool,
    /// [`Config::device_types`]: what a dictionary is checked against before it is stored.
    pub device_types: Vec<PathBuf>,
    /// The master's public key, for the workers registered with the API.
    pub master_key: PublicKey,
    /// Where the admitted workers' public keys are (`STATE/certs/workers`).
    pub admitted: PathBuf,
    /// [`Config::max_lease`].
    pub max_lease: Duration,
    /// The artifact store (`--artifacts-http`), when the master has one: submissions' and
    /// boot requests' `artifact:NAME` URLs are resolved through it ([`crate::artifacts`]).
    pub artifacts: Option<Arc<crate::artifacts::Artifacts>>,
    /// Told of each job whose log grew or that ended (the web log viewer's live stream).
    pub log_signal: crate::logs::LogSignal,
    /// What each worker said of itself in its hello, since this master started (the web
    /// pages show it).
    pub worker_versions: Arc<std::sync::Mutex<BTreeMap<String, WorkerVersion>>>,
}

/// A worker's protocol version and software, as its hello gave them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerVersion {
    pub protocol: ProtocolVersion,
    /// The software and its version (`basalt-worker 0.1.0`), printable and at most
    /// [`WorkerVersion::MAX_SOFTWARE`] characters; `None` when the worker did not say.
    pub software: Option<String>,
}

impl WorkerVersion {
    /// The longest software string kept; the rest is cut.
    pub const MAX_SOFTWARE: usize = 80;

    /// From a hello: the software string kept to printable characters and cut to length, so
    /// that a worker cannot fill a page with it.
    pub fn from_hello(protocol: ProtocolVersion, software: Option<&str>) -> Self {
        let software = software
            .map(|s| {
                s.chars()
                    .filter(|c| !c.is_control())
                    .take(Self::MAX_SOFTWARE)
                    .collect::<String>()
            })
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        WorkerVersion { protocol, software }
    }
}

impl Handle {
    /// Submits a job definition (YAML) as `submitter`; returns its id (a MultiNode
    /// submission: its first sub-job's; [`Handle::submit_all`] gives every one).
    pub async fn submit(&self, submitter: &str, definition: &str) -> Result<u64, EngineError> {
        let ids = self.submit_all(submitter, definition).await?;
        ids.first()
            .copied()
            .ok_or_else(|| EngineError::Invalid("no job was created".into()))
    }

    /// Submits a job definition (YAML) as `submitter`; returns the ids of the jobs made: one,
    /// or a MultiNode submission's sub-jobs in sub_id order.
    pub async fn submit_all(
        &self,
        submitter: &str,
        definition: &str,
    ) -> Result<Vec<u64>, EngineError> {
        // `url: artifact:NAME` in deploy actions: the artifact's download URL (or refused)
        let definition = crate::artifacts::job::rewrite(self.artifacts.as_deref(), definition)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Submit(
                submitter.into(),
                definition.into_owned(),
                tx,
            ))
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Cancels a job; `false` when it had already finished.
    pub async fn cancel(&self, id: u64) -> Result<bool, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Cancel(id, tx))
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Queues a health check of device `hostname` now (its type's definition, submitted as
    /// `lava-health`); returns its id, or the id of the check already queued for it.
    pub async fn health_check(&self, hostname: &str) -> Result<u64, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::HealthCheck(hostname.into(), tx))
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Cancels the job of each of `devices` that is Retired (LAVA cancels the job of a device
    /// an admin retires, or whose worker is retired).
    pub async fn cancel_jobs_of_retired(&self, devices: &[String]) -> Result<(), EngineError> {
        for hostname in devices {
            let Some(d) = self.store.device(hostname)? else {
                continue;
            };
            if let (DeviceHealth::Retired, Some(id)) = (d.health, d.current_job) {
                self.cancel(id).await?;
            }
        }
        Ok(())
    }

    /// Runs the scheduler again: the API calls it after registering a device or changing a
    /// dictionary, so a queued job does not wait for the next worker event.
    pub fn reschedule(&self) {
        let _ = self.requests.send(Request::Schedule);
    }

    /// The directory of a job's log (`output.yaml`, read with [`crate::logs::read_from`]).
    pub fn log_dir(&self, id: u64) -> PathBuf {
        self.logs.join(id.to_string())
    }
}

/// Waits until `at`, or forever when there is no `at`.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Now, in ms since the UNIX epoch (the system's clock).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A connected worker.
struct Session {
    conn: Conn,
    last_seen: Instant,
    /// What its hello offered (`reservations`: it holds boards).
    capabilities: Capabilities,
}

struct Engine {
    config: Config,
    store: Arc<Store>,
    link: WorkerLink,
    sessions: BTreeMap<String, Session>,
    open_logs: BTreeMap<u64, JobLogFile>,
    pending_ends: BTreeMap<u64, End>,
    /// The worker each started job runs on: only that worker may speak for the job.
    owners: BTreeMap<u64, String>,
    logs: PathBuf,
    /// When this master started: a job left running by a master before it whose worker has not
    /// come back within the heartbeat timeout since then is lost.
    started: Instant,
    /// Events since a pass was asked for ([`Engine::schedule`]); `None`: no pass is due.
    schedule_due: Option<u32>,
    /// Why the master canceled a MultiNode sub-job with its group: the comment its end gets.
    group_reasons: BTreeMap<u64, String>,
    /// What health checks are planned by.
    clock: Clock,
    /// When the next health check comes due by its type's frequency: a pass runs then.
    health_wake: Option<tokio::time::Instant>,
    /// Reservations' pending hold requests and lease timer.
    leases: reservations::Leases,
    /// [`Handle::log_signal`].
    log_signal: crate::logs::LogSignal,
    /// [`Handle::worker_versions`].
    worker_versions: Arc<std::sync::Mutex<BTreeMap<String, WorkerVersion>>>,
}

/// A due scheduling pass waits for the event queues to drain, but for no more events than
/// this (under a steady load the queues never drain).
const MAX_EVENTS_BEFORE_PASS: u32 = 64;

/// Starts the engine on the store; returns its handle and the bound workers endpoint.
pub fn start(
    config: Config,
    store: Arc<Store>,
) -> Result<(Handle, String), crate::link::LinkError> {
    start_with_clock(config, store, Arc::new(now_ms))
}

/// [`start`], with health checks planned by `clock` (tests move it on).
pub fn start_with_clock(
    config: Config,
    store: Arc<Store>,
    clock: Clock,
) -> Result<(Handle, String), crate::link::LinkError> {
    let (link_tx, link_rx) = mpsc::unbounded_channel();
    let admitted = config.state_dir.join("certs/workers");
    let link = WorkerLink::start(&config.workers, &config.key, admitted.clone(), link_tx)?;
    let endpoint = link.endpoint().to_string();
    let (req_tx, req_rx) = mpsc::unbounded_channel();
    let logs = config.state_dir.join("jobs");
    let anonymous_read = config.anonymous_read;
    let device_types = config.device_types.clone();
    let master_key = config.key.public;
    let max_lease = config.max_lease;
    let log_signal = crate::logs::LogSignal::default();
    let worker_versions = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let engine = Engine {
        config,
        store: store.clone(),
        link,
        sessions: BTreeMap::new(),
        open_logs: BTreeMap::new(),
        pending_ends: BTreeMap::new(),
        owners: BTreeMap::new(),
        logs: logs.clone(),
        started: Instant::now(),
        schedule_due: None,
        group_reasons: BTreeMap::new(),
        clock,
        health_wake: None,
        leases: reservations::Leases::default(),
        log_signal: log_signal.clone(),
        worker_versions: worker_versions.clone(),
    };
    tokio::spawn(engine.run(link_rx, req_rx));
    Ok((
        Handle {
            requests: req_tx,
            store,
            logs,
            anonymous_read,
            device_types,
            master_key,
            admitted,
            max_lease,
            artifacts: None,
            log_signal,
            worker_versions,
        },
        endpoint,
    ))
}

impl Engine {
    async fn run(
        mut self,
        mut link: mpsc::UnboundedReceiver<LinkEvent>,
        mut requests: mpsc::UnboundedReceiver<Request>,
    ) {
        let mut tick = tokio::time::interval(self.config.heartbeat);
        self.arm_leases();
        loop {
            let wake = self.health_wake;
            let lease_wake = self.leases.wake;
            tokio::select! {
                _ = sleep_until(wake) => {
                    self.health_wake = None;
                    self.schedule();
                }
                _ = sleep_until(lease_wake) => self.expire_leases(),
                ev = link.recv() => match ev {
                    Some(ev) => self.on_link(ev),
                    None => return,
                },
                req = requests.recv() => match req {
                    Some(r) => self.on_request(r),
                    None => return,
                },
                _ = tick.tick() => {
                    self.check_workers();
                    self.purge_holds();
                }
            }
            // one pass for every event that asked for one since the last: a burst of
            // submissions or ends costs one snapshot, not one each
            if let Some(n) = self.schedule_due {
                if (link.is_empty() && requests.is_empty()) || n >= MAX_EVENTS_BEFORE_PASS {
                    self.schedule_due = None;
                    self.schedule_pass();
                } else {
                    self.schedule_due = Some(n + 1);
                }
            }
        }
    }

    fn log(&self, what: String) {
        tracing::info!("{what}");
    }

    fn on_request(&mut self, r: Request) {
        match r {
            Request::Submit(submitter, definition, reply) => {
                let r = self.submit(&submitter, &definition);
                let ok = r.is_ok();
                let _ = reply.send(r);
                if ok {
                    self.schedule();
                }
            }
            Request::Cancel(id, reply) => {
                let _ = reply.send(self.cancel(id));
            }
            Request::HealthCheck(hostname, reply) => {
                let r = self.requested_health_check(&hostname);
                let ok = r.is_ok();
                let _ = reply.send(r);
                if ok {
                    self.schedule();
                }
            }
            Request::Schedule => self.schedule(),
            Request::Reservation(call) => self.on_reservation_call(call),
        }
    }

    /// An admin's health check of `hostname`: the one queued for it, or a new one; an error
    /// when there is no such device or its type has no (enabled) health check.
    fn requested_health_check(&mut self, hostname: &str) -> Result<u64, EngineError> {
        let device = self
            .store
            .device(hostname)?
            .ok_or_else(|| EngineError::NotFound(format!("no device {hostname:?}")))?;
        let t = self
            .store
            .device_type(&device.device_type)?
            .ok_or_else(|| {
                EngineError::NotFound(format!("no device type {:?}", device.device_type))
            })?;
        if t.health_check.is_none() {
            return Err(EngineError::Invalid(format!(
                "device type '{}' has no health check (set one: basalt device-types add {} --health-check FILE)",
                t.name, t.name
            )));
        }
        if t.rule.disabled {
            return Err(EngineError::Invalid(format!(
                "health checks are disabled for device type '{}'",
                t.name
            )));
        }
        if let Some(id) = self.store.queued_health_check(hostname)? {
            return Ok(id);
        }
        self.queue_health_check(hostname)?
            .ok_or_else(|| EngineError::Invalid(format!("device '{hostname}' has no health check")))
    }

    fn submit(&mut self, submitter: &str, definition: &str) -> Result<Vec<u64>, EngineError> {
        let (job, _) = basalt_model::job::parse_job("job.yaml", definition)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        if job.multinode.as_ref().is_some_and(|m| !m.roles.is_empty()) {
            return self.submit_multinode(submitter, definition);
        }
        let target = match (&job.device, &job.device_type) {
            (Some(d), _) => Target::Device(d.clone()),
            (None, Some(t)) => Target::DeviceType(self.device_type_of(t)?),
            (None, None) => {
                return Err(EngineError::Invalid(
                    "a job needs a device_type (or MultiNode roles)".into(),
                ))
            }
        };
        let id = self.store.submit(
            &NewJob {
                submitter: submitter.into(),
                description: job.job_name.clone(),
                definition: definition.into(),
                target,
                tags: job.tags.clone(),
                priority: Priority::new(job.priority).unwrap_or_default(),
                health_check: false,
            },
            now_ms(),
        )?;
        Ok(vec![id])
    }

    /// A MultiNode submission: split into its sub-jobs (LAVA's `split_multinode_yaml`),
    /// checked against the lab (enough non-retired devices for every role), stored as a group.
    fn submit_multinode(
        &mut self,
        submitter: &str,
        definition: &str,
    ) -> Result<Vec<u64>, EngineError> {
        let invalid = |e: String| EngineError::Invalid(e);
        let doc = basalt_model::yaml::load(definition).map_err(|e| invalid(e.to_string()))?;
        let target_group = multinode::new_target_group()
            .map_err(|e| invalid(format!("no random group name: {e}")))?;
        let mut split =
            multinode::split(&doc, &target_group).map_err(|e| invalid(e.to_string()))?;
        multinode::check_supported(&split).map_err(|e| invalid(e.to_string()))?;
        for sub in &mut split.jobs {
            if let Some(t) = &sub.device_type {
                sub.device_type = Some(self.device_type_of(t)?);
            }
        }
        self.check_devices_available(&split)?;
        let mut jobs = Vec::with_capacity(split.jobs.len());
        for sub in &split.jobs {
            let text = basalt_model::yaml::emit_document(&sub.definition);
            let (parsed, _) = basalt_model::job::parse_job_as(
                &format!("{}.yaml", sub.role),
                &text,
                basalt_model::job::Reading::Dispatch,
            )
            .map_err(|e| invalid(format!("role '{}': {e}", sub.role)))?;
            let target = match (&sub.device, &sub.device_type) {
                (Some(d), _) => Target::Device(d.clone()),
                (None, Some(t)) => Target::DeviceType(t.clone()),
                (None, None) => {
                    return Err(invalid(format!("role '{}' has no device_type", sub.role)))
                }
            };
            jobs.push((
                NewJob {
                    submitter: submitter.into(),
                    description: parsed.job_name.clone(),
                    definition: text,
                    target,
                    tags: sub.tags.clone(),
                    priority: Priority::new(parsed.priority).unwrap_or_default(),
                    health_check: false,
                },
                GroupMember {
                    role: sub.role.clone(),
                    essential: sub.essential,
                    worker: sub.worker.clone(),
                },
            ));
        }
        let ids = self.store.submit_group(
            &NewGroup {
                target_group,
                multinode_definition: definition.into(),
                jobs,
            },
            now_ms(),
        )?;
        Ok(ids)
    }

    /// The device type a job's `device_type` means: an alias's type (LAVA's `Alias`, resolved
    /// at submission as LAVA's `_get_device_type` does), else the name as given.
    fn device_type_of(&self, name: &str) -> Result<String, EngineError> {
        Ok(self
            .store
            .resolve_device_type(name)?
            .unwrap_or_else(|| name.to_string()))
    }

    /// LAVA's DevicesUnavailableException: every role needs as many non-retired devices of
    /// its type (with its tags, its device or worker pin) as its sub-jobs, and every type as
    /// many as the group asks of it.
    fn check_devices_available(&self, split: &multinode::Split) -> Result<(), EngineError> {
        let devices = self.store.devices()?;
        let usable: Vec<_> = devices
            .iter()
            .filter(|d| d.health != DeviceHealth::Retired)
            .collect();
        let mut per_type: BTreeMap<&str, usize> = BTreeMap::new();
        let mut per_role: BTreeMap<&str, usize> = BTreeMap::new();
        for j in &split.jobs {
            *per_role.entry(j.role.as_str()).or_default() += 1;
            if let Some(t) = &j.device_type {
                *per_type.entry(t.as_str()).or_default() += 1;
            }
        }
        for (role, want) in per_role {
            let Some(j) = split.jobs.iter().find(|j| j.role == role) else {
                continue;
            };
            let have = usable
                .iter()
                .filter(|d| Some(&d.device_type) == j.device_type.as_ref())
                .filter(|d| j.device.as_ref().is_none_or(|h| *h == d.hostname))
                .filter(|d| j.worker.as_ref().is_none_or(|w| *w == d.worker))
                .filter(|d| j.tags.iter().all(|t| d.tags.contains(t)))
                .count();
            if have < want {
                return Err(EngineError::Invalid(format!(
                    "not enough devices for role '{role}': it needs {want} {} device(s){}{}, the lab has {have}",
                    j.device_type.as_deref().unwrap_or("?"),
                    if j.tags.is_empty() { String::new() } else { format!(" with tags {}", j.tags.join(", ")) },
                    j.device.as_ref().map(|d| format!(" ({d})")).unwrap_or_default(),
                )));
            }
        }
        for (t, want) in per_type {
            let have = usable.iter().filter(|d| d.device_type == t).count();
            if have < want {
                return Err(EngineError::Invalid(format!(
                    "not enough devices of type '{t}': the group needs {want}, the lab has {have}"
                )));
            }
        }
        Ok(())
    }

    /// Cancels a job; a MultiNode sub-job cancels its whole group (as LAVA's `TestJob.cancel`).
    fn cancel(&mut self, id: u64) -> Result<bool, EngineError> {
        let Some(job) = self.store.job(id)? else {
            return Err(EngineError::Invalid(format!("no job {id}")));
        };
        if job.state != JobState::Finished && self.store.is_reservation(id)? {
            // a reservation's job canceled is the reservation released
            self.end_lease(id, crate::reservation::Ending::Release)
                .map_err(|e| EngineError::Invalid(e.to_string()))?;
            return Ok(true);
        }
        if let Some(g) = &job.group {
            if job.state == JobState::Finished {
                return Ok(false);
            }
            let why = format!(
                "canceled with its MultiNode group: sub-job {} ({}, {}) was canceled",
                id, g.sub_id, g.role
            );
            for member in self.store.group(&g.target_group)? {
                if member.id != id && member.state != JobState::Finished {
                    self.group_reasons.insert(member.id, why.clone());
                }
            }
            let r = self.cancel_one(job.clone());
            for member in self.store.group(&g.target_group)? {
                if member.id != id {
                    let _ = self.cancel_one(member);
                }
            }
            self.schedule();
            return r;
        }
        self.cancel_one(job)
    }

    /// Cancels one job: a queued one ends Canceled at once, a started one is told to stop.
    fn cancel_one(&mut self, job: Job) -> Result<bool, EngineError> {
        let id = job.id;
        match job.state {
            JobState::Finished => Ok(false),
            JobState::Submitted => {
                let mut failure = Failure::canceled();
                failure.message = self.group_reasons.remove(&id);
                self.store.finish_job(
                    id,
                    JobHealth::Canceled,
                    Some(&failure),
                    None,
                    None,
                    now_ms(),
                )?;
                self.after_job_end(
                    id,
                    JobHealth::Canceled,
                    Some("canceled while queued".into()),
                );
                Ok(true)
            }
            JobState::Canceling => Ok(true),
            _ => {
                self.store.job_canceling(id)?;
                if let Some(worker) = job
                    .actual_device
                    .and_then(|d| self.store.device(&d).ok().flatten())
                    .map(|d| d.worker)
                {
                    if let Some(s) = self.sessions.get(&worker) {
                        self.link
                            .send(&s.conn, MasterMsg::Cancel(Cancel { job_id: JobId(id) }));
                    }
                }
                Ok(true)
            }
        }
    }

    fn on_link(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::Auth(d) => self.log(format!("workers link: {d:?}")),
            LinkEvent::Garbage { worker, error, .. } => {
                tracing::warn!(worker = %worker, "worker {worker}: unreadable message: {error}")
            }
            LinkEvent::Message { conn, worker, msg } => self.on_message(conn, worker, msg),
        }
    }

    fn on_message(&mut self, conn: Conn, worker: String, msg: WorkerMsg) {
        let known = self.sessions.get(&worker).is_some_and(|s| s.conn == conn);
        if !known && !matches!(msg, WorkerMsg::Hello(_)) {
            self.link
                .send(&conn, MasterMsg::HelloRequired(HelloRequired {}));
            return;
        }
        if let Some(s) = self.sessions.get_mut(&worker) {
            s.last_seen = Instant::now();
        }
        match msg {
            WorkerMsg::Hello(h) => self.hello(conn, worker, h),
            WorkerMsg::Heartbeat(_) => {
                let _ = self
                    .store
                    .set_worker_state(&worker, WorkerState::Online, now_ms());
                self.link
                    .send(&conn, MasterMsg::HeartbeatAck(HeartbeatAck {}))
            }
            WorkerMsg::LogBatch(b) => {
                let id = b.job_id.0;
                if !self.owns(&worker, id) {
                    return;
                }
                // the first batch since the log was opened says the job runs
                if !self.open_logs.contains_key(&id) {
                    let _ = self.store.job_running(id, now_ms());
                }
                let Some(log) = self.log_file(id) else {
                    return;
                };
                let lines: Vec<String> = b.records.iter().map(|r| r.line.clone()).collect();
                let (seq, resend) = match log.append(b.first_seq, &lines) {
                    Ok(c) => {
                        self.log_signal.notify(id);
                        (c.seq, false)
                    }
                    Err(crate::logs::LogError::Gap { .. }) => (log.commit().seq, true),
                    Err(e) => {
                        tracing::error!(job_id = id, "job {id}: storing its log: {e}");
                        return;
                    }
                };
                self.link.send(
                    &conn,
                    MasterMsg::LogAck(LogAck {
                        job_id: b.job_id,
                        seq,
                        resend,
                    }),
                );
                self.try_end(id, &conn);
            }
            WorkerMsg::End(e) => {
                let id = e.job_id.0;
                if !self.owns(&worker, id) {
                    return;
                }
                self.pending_ends.insert(id, e);
                self.try_end(id, &conn);
            }
            WorkerMsg::Status(s) => {
                if self.owns(&worker, s.job_id.0) {
                    let _ = self.store.job_running(s.job_id.0, now_ms());
                }
            }
            WorkerMsg::Inventory(_) => {}
            WorkerMsg::Goodbye(g) => {
                self.log(format!("worker {worker} leaves: {}", g.reason));
            }
            WorkerMsg::HoldState(s) => self.on_hold_state(&worker, s),
            WorkerMsg::HoldReply(r) => self.on_hold_reply(&worker, r),
        }
    }

    /// Whether `worker` runs job `id` (the worker of its device); anything else a worker says
    /// of a job is logged and ignored.
    fn owns(&mut self, worker: &str, id: u64) -> bool {
        if !self.owners.contains_key(&id) {
            let owner = self
                .store
                .job(id)
                .ok()
                .flatten()
                .and_then(|j| j.actual_device)
                .and_then(|d| self.store.device(&d).ok().flatten())
                .map(|d| d.worker);
            if let Some(o) = owner {
                self.owners.insert(id, o);
            }
        }
        let owns = self.owners.get(&id).is_some_and(|o| o == worker);
        if !owns {
            self.log(format!(
                "worker {worker} spoke for job {id}, which it does not run: ignored"
            ));
        }
        owns
    }

    fn log_file(&mut self, id: u64) -> Option<&mut JobLogFile> {
        if !self.open_logs.contains_key(&id) {
            match JobLogFile::open(&self.logs.join(id.to_string())) {
                Ok(f) => {
                    self.open_logs.insert(id, f);
                }
                Err(e) => {
                    tracing::error!(job_id = id, "job {id}: opening its log: {e}");
                    return None;
                }
            }
        }
        self.open_logs.get_mut(&id)
    }

    fn hello(&mut self, conn: Conn, worker: String, h: basalt_proto::Hello) {
        if h.name != worker {
            let reason = format!(
                "this connection's key is admitted as worker '{worker}', but its hello says '{}'",
                h.name
            );
            tracing::warn!(worker = %worker, "{reason}");
            self.link
                .send(&conn, MasterMsg::Refused(Refused { reason }));
            return;
        }
        if let Err(e) = negotiate(self.config.version, h.version) {
            let reason = e.to_string();
            tracing::warn!(worker = %worker, "worker {worker}: {reason}");
            self.link
                .send(&conn, MasterMsg::Refused(Refused { reason }));
            return;
        }
        if let Err(e) =
            require_capabilities(&worker, &self.config.required_capabilities, &h.capabilities)
        {
            let reason = e.to_string();
            tracing::warn!(worker = %worker, "worker {worker}: {reason}");
            self.link
                .send(&conn, MasterMsg::Refused(Refused { reason }));
            return;
        }
        if self
            .store
            .workers()
            .is_ok_and(|w| !w.iter().any(|w| w.hostname == worker))
        {
            let _ = self.store.add_worker(&worker, "");
        }
        let _ = self
            .store
            .set_worker_state(&worker, WorkerState::Online, now_ms());
        self.worker_versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                worker.clone(),
                WorkerVersion::from_hello(h.version, h.software.as_deref()),
            );
        let mut resume = Vec::new();
        let mut discard = Vec::new();
        for held in &h.jobs {
            let id = held.job_id.0;
            let live = self
                .store
                .job(id)
                .ok()
                .flatten()
                .is_some_and(|j| j.state != JobState::Finished)
                && self.owns(&worker, id);
            match (live, self.log_file(id).map(|l| l.commit().seq)) {
                (true, Some(seq)) => resume.push(JobResume {
                    job_id: held.job_id,
                    next_seq: seq + 1,
                }),
                _ => discard.push(held.job_id),
            }
        }
        // What the master thinks runs there but the worker does not hold: a job the worker
        // never said it runs (a Start that crossed this hello, or went to a connection that is
        // gone) is started again; one it ran and forgot (it restarted) will never end: lost.
        let held: Vec<u64> = h.jobs.iter().map(|j| j.job_id.0).collect();
        let mut start_again = Vec::new();
        for id in self.jobs_on(&worker) {
            if held.contains(&id) {
                continue;
            }
            let scheduled = self
                .store
                .job(id)
                .ok()
                .flatten()
                .filter(|j| j.state == JobState::Scheduled)
                .and_then(|j| j.actual_device);
            match scheduled {
                Some(device) => start_again.push((id, device)),
                None => self.lose_job(id, &worker, "worker lost (it came back without the job)"),
            }
        }
        self.log(format!(
            "worker {worker} online ({} job(s) resumed)",
            resume.len()
        ));
        self.link.send(
            &conn,
            MasterMsg::Welcome(Welcome {
                version: self.config.version,
                heartbeat_interval_secs: self.config.heartbeat.as_secs().max(1) as u32,
                resume,
                discard,
                max_batch_bytes: basalt_proto::DEFAULT_MAX_BATCH_BYTES,
            }),
        );
        for (id, device) in start_again {
            match self.start_message(id, &device) {
                Ok((start, _)) => {
                    self.log(format!("job {id}: Start sent again to worker {worker}"));
                    self.link.send(&conn, MasterMsg::Start(start));
                }
                Err(e) => self.lose_job(id, &worker, &format!("cannot start it again: {e}")),
            }
        }
        // a call pending on its previous connection will get no answer
        self.worker_gone(&worker);
        self.sessions.insert(
            worker,
            Session {
                conn,
                last_seen: Instant::now(),
                capabilities: h.capabilities.clone(),
            },
        );
        self.schedule();
    }

    /// Stores a job's end once every record before it is stored.
    fn try_end(&mut self, id: u64, conn: &Conn) {
        let Some(last_seq) = self.pending_ends.get(&id).map(|e| e.last_seq) else {
            return;
        };
        let stored = self.log_file(id).map(|l| l.commit().seq).unwrap_or(0);
        if stored < last_seq {
            return;
        }
        let Some(end) = self.pending_ends.remove(&id) else {
            return;
        };
        let health = match (end.outcome, &end.error_type) {
            (Outcome::Complete, _) => JobHealth::Complete,
            (_, Some(basalt_proto::ErrorType::Canceled)) => JobHealth::Canceled,
            _ => JobHealth::Incomplete,
        };
        let health_check = self
            .store
            .job(id)
            .ok()
            .flatten()
            .is_some_and(|j| j.health_check);
        let device_health = health_check
            .then_some(if health == JobHealth::Complete {
                DeviceHealth::Good
            } else {
                DeviceHealth::Bad
            })
            .or_else(|| self.reservation_device_health(id));
        let reason = self.group_reasons.remove(&id);
        let failure = (health != JobHealth::Complete).then(|| Failure {
            cause: end.cause.unwrap_or_else(|| {
                end.error_type
                    .as_ref()
                    .map_or(FailureCause::Infrastructure, FailureCause::from_error_type)
            }),
            error_type: end.error_type.as_ref().map(|t| t.name().to_string()),
            message: reason.or_else(|| end.error_msg.clone()),
        });
        let r = self.store.finish_job(
            id,
            health,
            failure.as_ref(),
            Some(&end.results),
            device_health,
            now_ms(),
        );
        if let Err(e) = r {
            tracing::error!(job_id = id, "job {id}: storing its end: {e}");
            return;
        }
        self.open_logs.remove(&id);
        self.owners.remove(&id);
        if let Some(d) = &end.description {
            // the pipeline, for the job's page
            let path = self.logs.join(id.to_string()).join("description.yaml");
            if let Err(e) = std::fs::write(&path, d) {
                tracing::warn!(job_id = id, "job {id}: {}: {e}", path.display());
            }
        }
        self.log_signal.notify(id);
        self.link
            .send(conn, MasterMsg::EndAck(EndAck { job_id: end.job_id }));
        self.after_job_end(id, health, failure.and_then(|f| f.message));
        self.end_group_after(id, health);
        self.schedule();
    }

    /// After sub-job `id` ended with `health`: LAVA ends the whole group when a sub-job fails
    /// or is canceled before the group is running (some other sub-job not Running yet), or
    /// when an essential role's sub-job fails; the others are canceled with a comment saying
    /// why, their boards freed as they end.
    fn end_group_after(&mut self, id: u64, health: JobHealth) {
        if health == JobHealth::Complete {
            return;
        }
        let Some(job) = self.store.job(id).ok().flatten() else {
            return;
        };
        let Some(g) = job.group else {
            return;
        };
        let Ok(members) = self.store.group(&g.target_group) else {
            return;
        };
        let others: Vec<Job> = members.into_iter().filter(|m| m.id != id).collect();
        let not_running = others.iter().any(|m| {
            matches!(
                m.state,
                JobState::Submitted | JobState::Scheduling | JobState::Scheduled
            )
        });
        if !not_running && !g.essential {
            return;
        }
        let why = if g.essential && !not_running {
            format!(
                "canceled with its MultiNode group: the essential sub-job {id} ({}, {}) ended {health}",
                g.sub_id, g.role
            )
        } else {
            format!(
                "canceled with its MultiNode group: sub-job {id} ({}, {}) ended {health} before the group was running",
                g.sub_id, g.role
            )
        };
        for m in others {
            if matches!(m.state, JobState::Finished | JobState::Canceling) {
                continue;
            }
            self.log(format!("job {}: {why}", m.id));
            self.group_reasons.insert(m.id, why.clone());
            let _ = self.cancel_one(m);
        }
    }

    /// Workers silent for MISSED_HEARTBEATS intervals are offline; their jobs are lost. So are
    /// the jobs of a worker that has not come back within that time since this master started
    /// (a master restarted after a crash finds them Scheduled or Running in its store).
    fn check_workers(&mut self) {
        let limit = self.config.heartbeat * basalt_proto::MISSED_HEARTBEATS;
        let lost: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.last_seen.elapsed() > limit)
            .map(|(w, _)| w.clone())
            .collect();
        let mut lost_any = false;
        for worker in lost {
            self.sessions.remove(&worker);
            self.worker_gone(&worker);
            let _ = self
                .store
                .set_worker_state(&worker, WorkerState::Offline, now_ms());
            tracing::warn!(worker = %worker, "worker {worker} lost (no heartbeat for {limit:?})");
            for id in self.jobs_on(&worker) {
                self.lose_job(id, &worker, "worker lost");
            }
            match self.store.worker_lost(&worker) {
                Ok(devices) if !devices.is_empty() => self.log(format!(
                    "worker {worker}: device(s) {} now Unknown (a health check when it is back)",
                    devices.join(", ")
                )),
                Ok(_) => {}
                Err(e) => self.log(format!("worker {worker}: its devices: {e}")),
            }
            lost_any = true;
        }
        if self.started.elapsed() > limit {
            let Ok(devices) = self.store.devices() else {
                return;
            };
            for d in devices {
                if let Some(id) = d.current_job {
                    if !self.sessions.contains_key(&d.worker) {
                        let _ =
                            self.store
                                .set_worker_state(&d.worker, WorkerState::Offline, now_ms());
                        self.lose_job(id, &d.worker, "worker lost");
                        lost_any = true;
                    }
                }
            }
        }
        if lost_any {
            // health checks for the devices now Unknown
            self.schedule();
        }
    }

    /// The jobs on `worker`'s devices, as the store has them.
    fn jobs_on(&self, worker: &str) -> Vec<u64> {
        self.store
            .devices()
            .map(|ds| {
                ds.into_iter()
                    .filter(|d| d.worker == worker)
                    .filter_map(|d| d.current_job)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ends a job whose worker lost it: Incomplete (Infrastructure), its device Unknown with a
    /// health check queued (when its type has one) for when the worker is back.
    fn lose_job(&mut self, id: u64, worker: &str, why: &str) {
        tracing::warn!(job_id = id, worker = %worker, "job {id} on worker {worker}: {why}");
        let device = self
            .store
            .job(id)
            .ok()
            .flatten()
            .and_then(|j| j.actual_device);
        // the worker sent no results: the job's own result says why it ended, as a worker's
        // would (`lava`/`job`, with the error and its cause)
        let results = format!(
            "- {{definition: lava, case: job, result: fail, error_type: Infrastructure, \
             error_msg: '{}', cause: {}}}\n",
            why.replace('\'', "''"),
            FailureCause::Infrastructure
        );
        let _ = self.store.finish_job(
            id,
            JobHealth::Incomplete,
            Some(&Failure::new(
                FailureCause::Infrastructure,
                "Infrastructure",
                why,
            )),
            Some(&results),
            Some(DeviceHealth::Unknown),
            now_ms(),
        );
        self.open_logs.remove(&id);
        self.pending_ends.remove(&id);
        self.owners.remove(&id);
        self.group_reasons.remove(&id);
        self.after_job_end(id, JobHealth::Incomplete, Some(why.to_string()));
        if let Some(d) = device {
            if let Err(e) = self.queue_health_check(&d) {
                self.log(format!("device {d}: cannot queue its health check: {e}"));
            }
        }
        self.end_group_after(id, JobHealth::Incomplete);
    }

    /// Asks for a scheduling pass: it runs once the events already queued are handled (or
    /// after [`MAX_EVENTS_BEFORE_PASS`] of them), so one pass serves a burst of events.
    fn schedule(&mut self) {
        self.schedule_due.get_or_insert(0);
    }

    /// The scheduler's snapshot with each device's health check due or not by its type's
    /// frequency at the engine's clock; sets when the next one comes due.
    fn planned_snapshot(&mut self) -> Option<crate::scheduler::Snapshot> {
        let mut lab = match self.store.lab_snapshot() {
            Ok(l) => l,
            Err(e) => {
                self.log(format!("scheduler: cannot read the store: {e}"));
                return None;
            }
        };
        let now = (self.clock)();
        let next = health::plan(&mut lab.snapshot, &lab.facts, now);
        self.mark_holding_workers(&mut lab.snapshot);
        self.health_wake = next
            .map(|t| tokio::time::Instant::now() + Duration::from_millis(t.saturating_sub(now)));
        Some(lab.snapshot)
    }

    /// One scheduling pass: assignments become Starts; devices needing a health check get one.
    fn schedule_pass(&mut self) {
        let Some(snapshot) = self.planned_snapshot() else {
            return;
        };
        let plan = schedule(&snapshot);
        let assigned: Vec<u64> = plan.assignments.iter().map(|a| a.job).collect();
        for hostname in &plan.needs_health_check {
            if let Err(e) = self.queue_health_check(hostname) {
                self.log(format!(
                    "device {hostname}: cannot queue its health check: {e}"
                ));
            }
        }
        let mut groups: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
        for a in &plan.assignments {
            if let Some(g) = &a.group {
                groups
                    .entry(g.clone())
                    .or_default()
                    .push((a.job, a.device.clone()));
            }
        }
        for (name, members) in groups {
            self.start_group(&name, &members);
        }
        for a in plan.assignments {
            if a.group.is_some() {
                continue;
            }
            if let Err(e) = self.start(a.job, &a.device) {
                tracing::warn!(job_id = a.job, device = %a.device, "job {}: cannot start on {}: {e}", a.job, a.device);
                let _ = self.store.finish_job(
                    a.job,
                    JobHealth::Incomplete,
                    Some(&Failure::new(
                        FailureCause::Infrastructure,
                        "Configuration",
                        &e,
                    )),
                    None,
                    None,
                    now_ms(),
                );
                self.after_job_end(a.job, JobHealth::Incomplete, Some(e));
            }
        }
        self.explain_waiting(&snapshot, &assigned);
        if !plan.needs_health_check.is_empty() {
            // the checks just queued can go out now
            if let Some(snapshot) = self.planned_snapshot() {
                for a in schedule(&snapshot).assignments {
                    if let Err(e) = self.start(a.job, &a.device) {
                        tracing::warn!(job_id = a.job, "job {}: cannot start: {e}", a.job);
                    }
                }
            }
        }
    }

    /// Submits a health check of `hostname` (its type's definition, as `lava-health`);
    /// returns its id, `None` when the type has none or disables them.
    fn queue_health_check(&mut self, hostname: &str) -> Result<Option<u64>, EngineError> {
        let Some(device) = self.store.device(hostname)? else {
            return Ok(None);
        };
        let Some(t) = self.store.device_type(&device.device_type)? else {
            return Ok(None);
        };
        let Some(definition) = t.health_check.filter(|_| !t.rule.disabled) else {
            return Ok(None);
        };
        let id = self.store.submit(
            &NewJob {
                submitter: "lava-health".into(),
                description: format!("health check of {hostname}"),
                definition,
                target: Target::Device(hostname.into()),
                tags: Vec::new(),
                priority: Priority::HIGH,
                health_check: true,
            },
            // the device's schedule counts from this time: the clock it is planned by
            (self.clock)(),
        )?;
        self.log(format!("device {hostname}: health check queued (job {id})"));
        Ok(Some(id))
    }

    /// Starts a whole MultiNode group at once: the roles map `{"<job id>": "<role>"}` goes
    /// into every sub-job's definition, all are Scheduled on their devices in one transaction,
    /// then each worker gets its Start. If one sub-job cannot start (its device does not
    /// render, its worker is not connected), none does: the group ends Incomplete.
    fn start_group(&mut self, name: &str, members: &[(u64, String)]) {
        let group = match self.store.group(name) {
            Ok(g) => g,
            Err(e) => {
                self.log(format!("MultiNode group {name}: {e}"));
                return;
            }
        };
        let roles: Vec<(u64, String)> = group
            .iter()
            .filter_map(|j| j.group.as_ref().map(|g| (j.id, g.role.clone())))
            .collect();
        let mut starts = Vec::with_capacity(members.len());
        let mut failed: Option<(u64, String)> = None;
        for (id, device) in members {
            let r = group
                .iter()
                .find(|j| j.id == *id)
                .ok_or_else(|| "not in its group".to_string())
                .and_then(|j| {
                    let definition = multinode::inject_roles(&j.definition, &roles)
                        .map_err(|e| e.to_string())?;
                    let mut job = j.clone();
                    job.definition = definition;
                    let (start, worker) = self.start_for(job, device)?;
                    if !self.sessions.contains_key(&worker) {
                        return Err(format!("worker '{worker}' is not connected"));
                    }
                    Ok((start, worker))
                });
            match r {
                Ok(s) => starts.push(s),
                Err(e) => {
                    failed = Some((*id, e));
                    break;
                }
            }
        }
        if let Some((id, e)) = failed {
            self.log(format!(
                "MultiNode group {name}: job {id} cannot start: {e}"
            ));
            let now = now_ms();
            for j in &group {
                if j.state == JobState::Finished {
                    continue;
                }
                let message = if j.id == id {
                    e.clone()
                } else {
                    format!("its MultiNode group could not start: sub-job {id} cannot start: {e}")
                };
                let _ = self.store.finish_job(
                    j.id,
                    JobHealth::Incomplete,
                    Some(&Failure::new(
                        FailureCause::Infrastructure,
                        "Infrastructure",
                        &message,
                    )),
                    None,
                    None,
                    now,
                );
            }
            return;
        }
        let rows: Vec<(u64, String, String)> = starts
            .iter()
            .map(|(s, _)| (s.job_id.0, s.device.clone(), s.definition.clone()))
            .collect();
        if let Err(e) = self.store.schedule_group(&rows) {
            self.log(format!("MultiNode group {name}: cannot schedule it: {e}"));
            return;
        }
        for (start, worker) in starts {
            self.owners.insert(start.job_id.0, worker.clone());
            if let Some(session) = self.sessions.get(&worker) {
                self.link.send(&session.conn, MasterMsg::Start(start));
            }
        }
        self.log(format!(
            "MultiNode group {name}: {} sub-job(s) started",
            rows.len()
        ));
    }

    /// Renders the device for the job and sends the Start to the device's worker.
    fn start(&mut self, id: u64, hostname: &str) -> Result<(), String> {
        let (start, worker) = self.start_message(id, hostname)?;
        let session = self
            .sessions
            .get(&worker)
            .ok_or_else(|| format!("worker '{worker}' is not connected"))?;
        let lease = start.lease.is_some();
        if lease && !self.holds_boards(&worker) {
            return Err(format!(
                "worker '{worker}' does not hold boards (no `reservations` capability)"
            ));
        }
        self.store
            .schedule_job(id, hostname)
            .map_err(|e| e.to_string())?;
        self.owners.insert(id, worker);
        self.link.send(&session.conn, MasterMsg::Start(start));
        if lease {
            self.reservation_allocated(id);
        }
        Ok(())
    }

    /// The Start of job `id` on device `hostname` (the job and the device rendered for it),
    /// and the device's worker.
    fn start_message(&self, id: u64, hostname: &str) -> Result<(Start, String), String> {
        let job = self
            .store
            .job(id)
            .map_err(|e| e.to_string())?
            .ok_or("no such job")?;
        self.start_for(job, hostname)
    }

    /// The Start of `job` on device `hostname`, and the device's worker.
    fn start_for(&self, job: Job, hostname: &str) -> Result<(Start, String), String> {
        let id = job.id;
        let device = self
            .store
            .device(hostname)
            .map_err(|e| e.to_string())?
            .ok_or("no such device")?;
        let dictionary = device
            .dictionary
            .ok_or_else(|| format!("device '{hostname}' has no dictionary"))?;
        if let Some(r) = self.store.reservation(id).map_err(|e| e.to_string())? {
            let rendered = basalt_model::device::render::render_str(
                hostname,
                &dictionary,
                &self.config.device_types,
                &BTreeMap::new(),
            )
            .map_err(|e| e.to_string())?;
            return Ok((self.lease_start(&r, hostname, rendered), device.worker));
        }
        // a sub-job is read as the dispatcher reads it (LAVA's server refuses one submitted)
        let reading = if job.group.is_some() {
            basalt_model::job::Reading::Dispatch
        } else {
            basalt_model::job::Reading::Submission
        };
        let (parsed, _) = basalt_model::job::parse_job_as("job.yaml", &job.definition, reading)
            .map_err(|e| e.to_string())?;
        let rendered = basalt_model::device::render::render_str(
            hostname,
            &dictionary,
            &self.config.device_types,
            &parsed.context,
        )
        .map_err(|e| e.to_string())?;
        let timeout = parsed.timeouts.job.map(|t| t.secs).unwrap_or(86_400);
        let start = Start {
            job_id: JobId(id),
            device: hostname.into(),
            definition: job.definition,
            device_config: rendered,
            job_timeout_secs: timeout,
            health_check: job.health_check,
            coordinator: job.group.is_some().then(|| self.config.coordinator.clone()),
            coordinator_token: job
                .group
                .is_some()
                .then(|| self.config.coordinator_token.clone())
                .flatten(),
            lease: None,
        };
        Ok((start, device.worker))
    }
}

#[cfg(test)]
mod tests {
    use super::WorkerVersion;
    use basalt_proto::ProtocolVersion;

    #[test]
    fn a_workers_software_string_is_kept_printable_and_short() {
        let v = ProtocolVersion::CURRENT;
        assert_eq!(
            WorkerVersion::from_hello(v, Some("basalt-worker 0.1.0")).software,
            Some("basalt-worker 0.1.0".to_owned())
        );
        assert_eq!(
            WorkerVersion::from_hello(v, Some("evil\n\u{1b}[2Jworker\r")).software,
            Some("evil[2Jworker".to_owned())
        );
        let long = "x".repeat(10_000);
        let cut = WorkerVersion::from_hello(v, Some(&long)).software;
        assert_eq!(cut.map(|s| s.len()), Some(WorkerVersion::MAX_SOFTWARE));
        assert_eq!(WorkerVersion::from_hello(v, Some(" \t ")).software, None);
        assert_eq!(WorkerVersion::from_hello(v, None).software, None);
    }
}
