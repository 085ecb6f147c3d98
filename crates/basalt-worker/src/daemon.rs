//! The worker daemon: says hello to the master, runs the jobs it is sent (each in a process of
//! its own, [`crate::job`]), streams their logs in sequence-numbered batches, keeps every record
//! until the master acknowledges it and sends it again after a reconnect, and keeps each job's
//! end until the master has it. A master that disappears mid-job does not stop the job.

use crate::hold::HoldConfig;
use crate::job::{Exit, HoldSpec, JobEnd, JobProcess, JobSpec};
use crate::link::{Link, LinkEvent};
use basalt_link::cert::{Keypair, PublicKey};
use basalt_proto::{
    Capabilities, End, EndAck, ErrorType, FailureCause, Heartbeat, HeldJob, Hello, Hold, HoldReply,
    HoldResult, HoldState, JobId, JobPhase, LogAck, LogBatch, LogRecord, MasterMsg, Outcome,
    ProtocolVersion, Start, Status, WorkerMsg,
};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

/// What the daemon needs.
#[derive(Clone, Debug)]
pub struct Config {
    pub name: String,
    /// The master's workers endpoint (`tcp://HOST:PORT`).
    pub master: String,
    pub master_key: PublicKey,
    pub key: Keypair,
    /// Where the jobs' directories go.
    pub state_dir: PathBuf,
    /// The dispatcher binary run per job.
    pub basalt: PathBuf,
    /// Arguments given to every `basalt run` (the worker's TFTP root, server IP, limits ...).
    pub job_args: Vec<String>,
    pub capabilities: Capabilities,
    /// Keep each job's directory (its `output.yaml`, `results.yaml`) after the master has
    /// acknowledged its end, instead of removing it.
    pub keep_job_dirs: bool,
    /// How held boards' consoles are served (reservations); `None`: this worker holds none.
    pub hold: Option<HoldConfig>,
}

/// Why the daemon stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot connect to the master at {endpoint}: {source}")]
    Link {
        endpoint: String,
        source: zmq::Error,
    },
    #[error("the master refused this worker: {0}")]
    Refused(String),
}

/// What a job's task reports.
enum JobEvent {
    Record(JobId, u64, String),
    /// A held board's `hold_state` or `hold_reply`, for the master.
    Hold(WorkerMsg),
    Ended(JobId, JobEnd),
    Failed(JobId, String),
}

/// A job the worker holds: running, or ended and not yet acknowledged.
struct Held {
    /// Records the master has not acknowledged; the first is `first_unacked`.
    unacked: VecDeque<(String, String)>,
    first_unacked: u64,
    /// The next record to send (records before it were sent, maybe not yet acknowledged).
    next_to_send: u64,
    last_seq: u64,
    end: Option<End>,
    cancel: Option<tokio::sync::oneshot::Sender<()>>,
    /// A held board's requests, to its control socket.
    hold: Option<mpsc::UnboundedSender<Hold>>,
    /// A held board's last state (sent again when the master resends the Start).
    hold_state: Option<HoldState>,
}

impl Held {
    fn new() -> Held {
        Held {
            unacked: VecDeque::new(),
            first_unacked: 1,
            next_to_send: 1,
            last_seq: 0,
            end: None,
            cancel: None,
            hold: None,
            hold_state: None,
        }
    }

    /// Forgets the records up to `seq` (acknowledged).
    fn ack(&mut self, seq: u64) {
        while self.first_unacked <= seq && self.unacked.pop_front().is_some() {
            self.first_unacked += 1;
        }
        self.next_to_send = self.next_to_send.max(self.first_unacked);
    }
}

/// How often batches go out: a console line reaches the master within about this.
const BATCH_EVERY: Duration = Duration::from_millis(20);
/// The heartbeat until the master's Welcome says otherwise.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// How long a canceled job has to finalize before its process group is killed (the systemd
/// unit's `TimeoutStopSec` leaves room for it).
const CANCEL_GRACE: Duration = Duration::from_secs(60);
/// How long past its timeout a job's process may run before it is taken as hung.
const HUNG_MARGIN_SECS: u64 = 120;

/// Runs the daemon until `shutdown` resolves (then running jobs are canceled and their ends
/// sent) or the master refuses this worker.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DaemonError> {
    let (link_tx, mut link_rx) = mpsc::unbounded_channel();
    let link = Link::start(&config.master, &config.key, &config.master_key, link_tx).map_err(
        |source| DaemonError::Link {
            endpoint: config.master.clone(),
            source,
        },
    )?;
    let (job_tx, mut job_rx) = mpsc::unbounded_channel::<JobEvent>();
    let mut jobs: BTreeMap<JobId, Held> = BTreeMap::new();
    let mut max_batch = basalt_proto::DEFAULT_MAX_BATCH_BYTES as usize;
    let mut heartbeat = tokio::time::interval(DEFAULT_HEARTBEAT);
    let mut batches = tokio::time::interval(BATCH_EVERY);
    batches.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    let mut stopping = false;
    tracing::info!(
        worker = %config.name,
        "worker {}: connecting to {} as {}",
        config.name,
        config.master,
        config.key.public
    );
    loop {
        tokio::select! {
            _ = &mut shutdown, if !stopping => {
                stopping = true;
                tracing::info!(worker = %config.name, "worker {}: stopping: canceling {} job(s)", config.name, jobs.len());
                for held in jobs.values_mut() {
                    if let Some(c) = held.cancel.take() {
                        let _ = c.send(());
                    }
                }
            }
            Some(event) = link_rx.recv() => match event {
                LinkEvent::Message(msg) => {
                    if let Some(stop) = on_master(*msg, &config, &link, &mut jobs, &job_tx, &mut max_batch, &mut heartbeat) {
                        return Err(stop);
                    }
                }
                LinkEvent::Connected => link.send(hello(&config, &jobs)),
                LinkEvent::Garbage(e) => tracing::warn!("a message from the master could not be read: {e}"),
                LinkEvent::Handshake(h) => tracing::info!("the master's end of the link: {h:?}"),
            },
            Some(event) = job_rx.recv() => on_job(event, &link, &mut jobs, max_batch),
            // only while there are jobs: an idle worker sleeps until the master or a heartbeat
            _ = batches.tick(), if !jobs.is_empty() => send_batches(&link, &mut jobs, max_batch),
            _ = heartbeat.tick() => link.send(WorkerMsg::Heartbeat(Heartbeat {
                jobs: jobs.keys().copied().collect(),
            })),
        }
        if stopping && jobs.values().all(|j| j.end.is_some()) {
            // every end is sent; the master acknowledges them after a restart of ours
            send_batches(&link, &mut jobs, max_batch);
            return Ok(());
        }
    }
}

fn hello(config: &Config, jobs: &BTreeMap<JobId, Held>) -> WorkerMsg {
    WorkerMsg::Hello(Hello {
        version: ProtocolVersion::CURRENT,
        name: config.name.clone(),
        software: Some(format!("basalt-worker {}", env!("CARGO_PKG_VERSION"))),
        capabilities: config.capabilities.clone(),
        devices: Vec::new(),
        jobs: jobs
            .iter()
            .map(|(id, h)| HeldJob {
                job_id: *id,
                ended: h.end.is_some(),
                first_unacked: h.first_unacked,
                last_seq: h.last_seq,
            })
            .collect(),
    })
}

#[allow(clippy::too_many_arguments)]
fn on_master(
    msg: MasterMsg,
    config: &Config,
    link: &Link,
    jobs: &mut BTreeMap<JobId, Held>,
    job_tx: &mpsc::UnboundedSender<JobEvent>,
    max_batch: &mut usize,
    heartbeat: &mut tokio::time::Interval,
) -> Option<DaemonError> {
    match msg {
        MasterMsg::Welcome(w) => {
            if let Err(e) = basalt_proto::negotiate(ProtocolVersion::CURRENT, w.version) {
                link.send(WorkerMsg::Goodbye(basalt_proto::Goodbye {
                    reason: e.to_string(),
                }));
                return Some(DaemonError::Refused(e.to_string()));
            }
            tracing::info!(
                worker = %config.name,
                "worker {}: admitted (protocol {}), {} job(s) to resume",
                config.name,
                w.version,
                w.resume.len()
            );
            *max_batch = w.max_batch_bytes as usize;
            let every = Duration::from_secs(u64::from(w.heartbeat_interval_secs.max(1)));
            *heartbeat = tokio::time::interval(every);
            for r in &w.resume {
                if let Some(h) = jobs.get_mut(&r.job_id) {
                    // everything before next_seq is stored; send the rest again
                    h.ack(r.next_seq.saturating_sub(1));
                    h.next_to_send = h.first_unacked;
                }
            }
            // the records again, then the ends (the master stores an end once it has every
            // record before it)
            send_batches(link, jobs, *max_batch);
            for r in &w.resume {
                if let Some(end) = jobs.get(&r.job_id).and_then(|h| h.end.clone()) {
                    link.send(WorkerMsg::End(end));
                }
            }
            for id in &w.discard {
                if let Some(mut h) = jobs.remove(id) {
                    if let Some(c) = h.cancel.take() {
                        let _ = c.send(());
                    }
                }
            }
        }
        MasterMsg::Refused(r) => return Some(DaemonError::Refused(r.reason)),
        MasterMsg::HelloRequired(_) => link.send(hello(config, jobs)),
        MasterMsg::Start(start) => match jobs.entry(start.job_id) {
            // a Start resent for a job this worker holds: say it runs
            std::collections::btree_map::Entry::Occupied(held) => {
                link.send(WorkerMsg::Status(Status {
                    job_id: start.job_id,
                    state: JobPhase::Running,
                    action: None,
                }));
                if let Some(state) = &held.get().hold_state {
                    link.send(WorkerMsg::HoldState(state.clone()));
                }
            }
            std::collections::btree_map::Entry::Vacant(slot) => {
                let (cancel, canceled) = tokio::sync::oneshot::channel();
                let mut held = Held::new();
                held.cancel = Some(cancel);
                let requests = start.lease.is_some().then(|| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    held.hold = Some(tx);
                    rx
                });
                slot.insert(held);
                tokio::spawn(run_job(
                    config.clone(),
                    start,
                    canceled,
                    job_tx.clone(),
                    requests,
                ));
            }
        },
        MasterMsg::Cancel(c) => {
            if let Some(cancel) = jobs.get_mut(&c.job_id).and_then(|h| h.cancel.take()) {
                let _ = cancel.send(());
            }
        }
        MasterMsg::LogAck(LogAck {
            job_id,
            seq,
            resend,
        }) => {
            if let Some(h) = jobs.get_mut(&job_id) {
                h.ack(seq);
                if resend {
                    h.next_to_send = h.first_unacked;
                }
            }
        }
        MasterMsg::EndAck(EndAck { job_id }) => {
            if jobs.get(&job_id).is_some_and(|h| h.end.is_some()) {
                jobs.remove(&job_id);
                if !config.keep_job_dirs {
                    let dir = config.state_dir.join(format!("job-{job_id}"));
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
        }
        MasterMsg::HeartbeatAck(_) => {}
        // a held board's request: to its `basalt hold`, which answers
        MasterMsg::Hold(h) => {
            let (job_id, request_id) = (h.job_id, h.request_id);
            let sent = jobs
                .get(&job_id)
                .and_then(|held| held.hold.as_ref())
                .is_some_and(|tx| tx.send(h).is_ok());
            if !sent {
                link.send(WorkerMsg::HoldReply(HoldReply {
                    job_id,
                    request_id,
                    result: HoldResult::Error {
                        error: format!("job {job_id} is not a board this worker holds"),
                    },
                }));
            }
        }
    }
    None
}

fn on_job(event: JobEvent, link: &Link, jobs: &mut BTreeMap<JobId, Held>, max_batch: usize) {
    match event {
        JobEvent::Hold(msg) => {
            if let WorkerMsg::HoldState(state) = &msg {
                if let Some(h) = jobs.get_mut(&state.job_id) {
                    h.hold_state = Some(state.clone());
                }
            }
            link.send(msg);
        }
        JobEvent::Record(id, seq, line) => {
            if let Some(h) = jobs.get_mut(&id) {
                let lvl = level_of(&line);
                h.unacked.push_back((lvl, line));
                h.last_seq = seq;
            }
        }
        JobEvent::Ended(id, end) => {
            // the log's last records go before the end
            send_batches(link, jobs, max_batch);
            if let Some(h) = jobs.get_mut(&id) {
                let msg = end_message(id, h.last_seq, &end);
                h.end = Some(msg.clone());
                h.cancel = None;
                h.hold = None;
                link.send(WorkerMsg::End(msg));
            }
        }
        JobEvent::Failed(id, why) => {
            send_batches(link, jobs, max_batch);
            if let Some(h) = jobs.get_mut(&id) {
                let msg = End {
                    job_id: id,
                    outcome: Outcome::Incomplete,
                    error_type: Some(ErrorType::Infrastructure),
                    error_msg: Some(why),
                    cause: Some(FailureCause::Infrastructure),
                    results: String::new(),
                    last_seq: h.last_seq,
                    description: None,
                };
                h.end = Some(msg.clone());
                h.hold = None;
                link.send(WorkerMsg::End(msg));
            }
        }
    }
}

/// The level of an `output.yaml` record (`- {"dt": "…", "lvl": "target", …}`).
fn level_of(line: &str) -> String {
    line.split("\"lvl\": \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("")
        .to_string()
}

fn send_batches(link: &Link, jobs: &mut BTreeMap<JobId, Held>, max_bytes: usize) {
    for (id, h) in jobs.iter_mut() {
        while h.next_to_send <= h.last_seq {
            let start = (h.next_to_send - h.first_unacked) as usize;
            let mut records = Vec::new();
            let mut bytes = 256;
            for (lvl, line) in h.unacked.iter().skip(start) {
                bytes += line.len() + lvl.len() + 32;
                if !records.is_empty() && bytes > max_bytes {
                    break;
                }
                records.push(LogRecord {
                    lvl: lvl.clone(),
                    line: line.clone(),
                });
            }
            if records.is_empty() {
                break;
            }
            let first_seq = h.next_to_send;
            h.next_to_send += records.len() as u64;
            link.send(WorkerMsg::LogBatch(LogBatch {
                job_id: *id,
                first_seq,
                records,
            }));
        }
    }
}

/// The End of a job from how its process ended and its results.
fn end_message(id: JobId, last_seq: u64, end: &JobEnd) -> End {
    let (outcome, error_type, error_msg, cause) = match &end.exit {
        Exit::Complete => (Outcome::Complete, None, None, None),
        Exit::Incomplete => {
            let e = job_error(end.job_result.as_deref());
            let t = e.error_type.unwrap_or(ErrorType::Infrastructure);
            let cause = e.cause.unwrap_or_else(|| FailureCause::from_error_type(&t));
            (Outcome::Incomplete, Some(t), e.message, Some(cause))
        }
        Exit::Invalid => (
            Outcome::Incomplete,
            Some(ErrorType::Job),
            Some(format!(
                "the dispatcher refused the job or its device: {}",
                end.stderr.trim()
            )),
            Some(FailureCause::Job),
        ),
        Exit::Crashed(how) => (
            Outcome::Incomplete,
            Some(ErrorType::Infrastructure),
            Some(format!("the job's process died ({how})")),
            Some(FailureCause::Infrastructure),
        ),
    };
    End {
        job_id: id,
        outcome,
        error_type,
        error_msg,
        cause,
        results: end.results.clone(),
        last_seq,
        description: None,
    }
}

/// What the job's own result (`lava`/`job`) says about its failure.
#[derive(Debug, Default, PartialEq)]
struct JobError {
    error_type: Option<ErrorType>,
    message: Option<String>,
    cause: Option<FailureCause>,
}

/// `error_type`, `error_msg` and `cause` of the job's own result: the log record the job
/// wrote (`- {"dt": …, "lvl": "results", "msg": {"case": "job", …}}`, JSON after the dash).
/// A record that does not parse says nothing.
fn job_error(record: Option<&str>) -> JobError {
    let msg = record
        .and_then(|r| serde_json::from_str::<serde_json::Value>(r.trim_start_matches("- ")).ok())
        .and_then(|r| r.get("msg").cloned())
        .filter(|m| m["case"] == "job" && m["definition"] == "lava");
    let Some(msg) = msg else {
        return JobError::default();
    };
    let text = |k: &str| msg.get(k).and_then(|v| v.as_str()).map(str::to_string);
    JobError {
        error_type: text("error_type").map(ErrorType::from),
        message: text("error_msg"),
        cause: text("cause").as_deref().and_then(FailureCause::from_name),
    }
}

async fn run_job(
    config: Config,
    start: Start,
    mut canceled: tokio::sync::oneshot::Receiver<()>,
    events: mpsc::UnboundedSender<JobEvent>,
    hold_requests: Option<mpsc::UnboundedReceiver<Hold>>,
) {
    let id = start.job_id;
    let device = start.device.clone();
    let dir = config.state_dir.join(format!("job-{id}"));
    // a lease: a console port for as long as the hold runs
    let mut port = None;
    let mut ssh_port = None;
    let hold = match (start.lease, &config.hold) {
        (None, _) => None,
        (Some(_), None) => {
            let why = "this worker holds no boards for reservations (no --console-ports)";
            tracing::error!(job_id = id.0, %device, "job {id} on {device}: {why}");
            let _ = events.send(JobEvent::Failed(id, why.into()));
            return;
        }
        (Some(lease), Some(h)) => {
            let Some(p) = h.ports.take(h.address) else {
                let why = format!(
                    "no free console port in --console-ports {}-{}",
                    h.ports.range().start(),
                    h.ports.range().end()
                );
                tracing::error!(job_id = id.0, %device, "job {id} on {device}: {why}");
                let _ = events.send(JobEvent::Failed(id, why));
                return;
            };
            let listen = std::net::SocketAddr::new(h.address, p.get());
            port = Some(p);
            // an emulated board (the master says so) gets a second port: its SSH forward on
            // 127.0.0.1 (docs/reservations.md, SSH)
            ssh_port = if lease.forward_ssh {
                h.ports.take(std::net::Ipv4Addr::LOCALHOST.into())
            } else {
                None
            };
            Some(HoldSpec {
                lease,
                listen,
                advertise_host: h.advertise_host.clone(),
                buffer: h.buffer,
                ssh_forward: ssh_port.as_ref().map(|p| p.get()),
            })
        }
    };
    let held = hold.is_some();
    let spec = JobSpec {
        job_id: id.0,
        definition: start.definition,
        device: start.device_config,
        dir: dir.clone(),
        coordinator: start.coordinator,
        coordinator_token: start.coordinator_token,
        hold,
    };
    let mut job = match JobProcess::start(&config.basalt, &spec, &config.job_args) {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(job_id = id.0, %device, "job {id} on {device}: cannot start: {e}");
            let _ = events.send(JobEvent::Failed(id, e.to_string()));
            return;
        }
    };
    match &port {
        Some(p) => {
            tracing::info!(job_id = id.0, %device, "job {id} on {device}: holding the board (console port {})", p.get())
        }
        None => tracing::info!(job_id = id.0, %device, "job {id} on {device}: started"),
    }
    let control = hold_requests.map(|requests| {
        let events = events.clone();
        tokio::spawn(crate::hold::control_link(
            dir.join(crate::hold::CONTROL_SOCKET),
            id,
            requests,
            move |m| {
                let _ = events.send(JobEvent::Hold(m));
            },
        ))
    });
    // the dispatcher keeps the job's timeout; past it and a margin, the process is hung (a
    // hold has no timeout of its own: its lease ends it, with a Cancel)
    let hung_after = if held {
        Duration::MAX
    } else {
        Duration::from_secs(start.job_timeout_secs.saturating_add(HUNG_MARGIN_SECS))
    };
    let hung = tokio::time::sleep(hung_after.min(Duration::from_secs(100 * 365 * 86_400)));
    tokio::pin!(hung);
    let mut cancel_sent = false;
    loop {
        tokio::select! {
            rec = job.next_record() => match rec {
                Some((seq, line)) => {
                    let _ = events.send(JobEvent::Record(id, seq, line));
                }
                None => break,
            },
            _ = &mut canceled, if !cancel_sent => {
                cancel_sent = true;
                tracing::info!(job_id = id.0, %device, "job {id} on {device}: canceling ({CANCEL_GRACE:?} to finish)");
                job.cancel(CANCEL_GRACE).await;
            }
            _ = &mut hung, if !cancel_sent => {
                cancel_sent = true;
                tracing::warn!(job_id = id.0, %device, "job {id} on {device}: hung (no end {HUNG_MARGIN_SECS} s past its timeout): killed");
                job.cancel(Duration::from_secs(5)).await;
            }
        }
    }
    if let Some(c) = control {
        c.abort();
    }
    let ended = job.wait().await;
    // the hold is over: its console port is free again
    drop(port);
    drop(ssh_port);
    match ended {
        Ok(end) => {
            let how = match &end.exit {
                Exit::Complete => "Complete".to_string(),
                Exit::Incomplete => "Incomplete".to_string(),
                Exit::Invalid => "refused by the dispatcher (Incomplete)".to_string(),
                Exit::Crashed(how) => format!("crashed, {how} (Incomplete)"),
            };
            tracing::info!(job_id = id.0, %device, "job {id} on {device}: {how}");
            let _ = events.send(JobEvent::Ended(id, end));
        }
        Err(e) => {
            tracing::error!(job_id = id.0, %device, "job {id} on {device}: {e}");
            let _ = events.send(JobEvent::Failed(id, e.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_result_gives_the_error_and_its_cause() {
        let record = r#"- {"dt": "2026-12-01T16:41:58.453287+00:00", "lvl": "results", "msg": {"definition": "lava", "case": "job", "result": "fail", "error_msg": "cannot connect: \"x\" refused", "error_type": "Infrastructure", "cause": "infrastructure"}}"#;
        let e = job_error(Some(record));
        assert_eq!(e.error_type, Some(ErrorType::Infrastructure));
        assert_eq!(e.message.as_deref(), Some("cannot connect: \"x\" refused"));
        assert_eq!(e.cause, Some(FailureCause::Infrastructure));
        // no record, another case, garbage or an unknown cause: nothing, or less, to say
        assert_eq!(job_error(None), JobError::default());
        let other = r#"- {"lvl": "results", "msg": {"definition": "0_smoke", "case": "job", "result": "fail"}}"#;
        assert_eq!(job_error(Some(other)), JobError::default());
        assert_eq!(job_error(Some("- {not json")), JobError::default());
        let odd = r#"- {"lvl": "results", "msg": {"definition": "lava", "case": "job", "cause": "gremlins", "error_type": "Bug"}}"#;
        let e = job_error(Some(odd));
        assert_eq!((e.error_type, e.cause), (Some(ErrorType::Bug), None));
    }
}
