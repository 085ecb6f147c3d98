//! The worker ⇄ master messages: one enum per direction, each variant a struct of its own.
//!
//! On the wire a message is one JSON object whose `type` field names the variant in snake case
//! and whose other fields are the struct's (serde's internal tagging), e.g.
//! `{"type":"log_ack","job_id":42,"seq":17}`. docs/protocol.md has the rules of the exchange.

use crate::capability::Capabilities;
use crate::failure::FailureCause;
use crate::version::ProtocolVersion;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::Range;

/// A job's id in the master's store (LAVA's integer job id; each MultiNode sub-job has its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

// ---------------------------------------------------------------------------------------------
// worker → master

/// A message a worker sends to the master.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMsg {
    Hello(Hello),
    Heartbeat(Heartbeat),
    Inventory(Inventory),
    Status(Status),
    LogBatch(LogBatch),
    End(End),
    Goodbye(Goodbye),
    HoldState(HoldState),
    HoldReply(HoldReply),
}

/// The first message of every connection (and the answer to [`HelloRequired`]): who the
/// worker is, what it can do, and the jobs it still holds, so that nothing is lost on restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's protocol version; the master applies [`crate::negotiate`] to it.
    pub version: ProtocolVersion,
    /// The worker's name; must be the name of the certificate CURVE admitted it with.
    pub name: String,
    /// The worker's software and its version, e.g. `basalt-worker 0.1.0` (protocol 1.4; the
    /// master's workers page shows it); optional, a worker may leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software: Option<String>,
    pub capabilities: Capabilities,
    /// The devices the worker serves, as in [`Inventory`].
    #[serde(default)]
    pub devices: Vec<DeviceReport>,
    /// Jobs the worker runs or holds unacknowledged (log records or End not yet acknowledged).
    #[serde(default)]
    pub jobs: Vec<HeldJob>,
}

/// A job a worker still holds when it says hello.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldJob {
    pub job_id: JobId,
    /// Whether the job has ended (its [`End`] awaits an [`EndAck`]) or still runs.
    #[serde(default)]
    pub ended: bool,
    /// The first log record the master has not acknowledged (1 when none was).
    pub first_unacked: u64,
    /// The last log record the job has produced so far (0 when none).
    pub last_seq: u64,
}

/// "I am alive", sent every heartbeat interval, with the jobs the worker holds (running, or
/// ended and not yet acknowledged) so that the master notices a lost one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    #[serde(default)]
    pub jobs: Vec<JobId>,
}

/// The worker's view of its devices, sent whole whenever it changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub devices: Vec<DeviceReport>,
}

/// One device as the worker sees it. The master's registry says which devices belong to a
/// worker; this says whether the worker can reach them and what they do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceReport {
    pub hostname: String,
    pub device_type: String,
    pub state: LocalDeviceState,
    /// The job it runs, when [`LocalDeviceState::Busy`].
    #[serde(default)]
    pub job_id: Option<JobId>,
}

/// A device's state as its worker sees it (not LAVA's device state, which the master keeps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalDeviceState {
    /// Present and free.
    Idle,
    /// Running a job.
    Busy,
    /// Not reachable from the worker (serial adapter missing, ser2net down).
    Offline,
    /// A state from a newer minor that this version does not know.
    #[serde(other)]
    Unknown,
}

/// Where a running job is: its phase and the action it is in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub job_id: JobId,
    pub state: JobPhase,
    #[serde(default)]
    pub action: Option<CurrentAction>,
}

/// A job's phase on the worker; the master maps it to LAVA's job state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobPhase {
    /// Started (LAVA's Running).
    Running,
    /// A Cancel arrived; the job is running its cleanup (LAVA's Canceling).
    Canceling,
    /// A phase from a newer minor that this version does not know.
    #[serde(other)]
    Unknown,
}

/// An action of the pipeline, as the log names it: level `1.2.3`, name `tftp-deploy`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentAction {
    pub level: String,
    pub name: String,
}

/// Consecutive log records of one job: `records[i]` has sequence number `first_seq + i`, so a
/// batch cannot have a hole. A job's first record is 1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogBatch {
    pub job_id: JobId,
    pub first_seq: u64,
    pub records: Vec<LogRecord>,
}

/// One log record as basalt's log sink made it (`basalt::log::Record`): its `output.yaml`
/// line, sent as is so that neither end encodes it again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Its level (`info`, `target`, `results`, `event`...), so that the master finds results
    /// and events without parsing every line.
    pub lvl: String,
    /// The line exactly as in `output.yaml`: `- {"dt": ..., "lvl": ..., "msg": ...}` and `\n`.
    pub line: String,
}

/// A batch has records after the one the master expects next: it stores none of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("log records {expected}..{first} of job {job_id} are missing: the batch starts at {first}")]
pub struct LogGap {
    pub job_id: JobId,
    pub expected: u64,
    pub first: u64,
}

impl LogBatch {
    /// The sequence numbers of its records.
    pub fn seqs(&self) -> Range<u64> {
        self.first_seq..self.first_seq.saturating_add(self.records.len() as u64)
    }

    /// The exactly-once rule: the records the master stores when it expects `next` next
    /// (those from `next` on; none when all are duplicates), or the gap when it must store none.
    pub fn records_from(&self, next: u64) -> Result<&[LogRecord], LogGap> {
        if self.first_seq > next {
            return Err(LogGap {
                job_id: self.job_id,
                expected: next,
                first: self.first_seq,
            });
        }
        let skip = usize::try_from(next - self.first_seq).unwrap_or(usize::MAX);
        Ok(self.records.get(skip..).unwrap_or(&[]))
    }
}

/// A job has ended on the worker: its outcome, its results, and how many log records it made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    pub job_id: JobId,
    pub outcome: Outcome,
    /// LAVA's error type of an Incomplete job.
    #[serde(default)]
    pub error_type: Option<ErrorType>,
    #[serde(default)]
    pub error_msg: Option<String>,
    /// basalt's cause of an Incomplete job (protocol 1.1; a 1.0 worker sends none and the
    /// master derives one from `error_type`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<FailureCause>,
    /// The job's `results.yaml`, as text.
    #[serde(default)]
    pub results: String,
    /// The job's last log record (0 when none): the master acknowledges the End only once it
    /// stores every record up to it.
    pub last_seq: u64,
    /// The pipeline as `description.yaml` has it.
    #[serde(default)]
    pub description: Option<String>,
}

/// How a job ended (LAVA's `result=pass|fail`); an Incomplete while Canceling is Canceled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Complete,
    Incomplete,
}

/// LAVA's error types (`lava_common/exceptions.py`), with any other name kept as it came.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ErrorType {
    Infrastructure,
    Job,
    Test,
    Bug,
    Configuration,
    Canceled,
    LavaTimeout,
    MultinodeTimeout,
    /// A name this version does not know, e.g. `FastbootDeviceNotFound`.
    Other(String),
}

impl ErrorType {
    /// Its name as LAVA writes it (`Infrastructure`, `LAVATimeout`...).
    pub fn name(&self) -> &str {
        match self {
            ErrorType::Infrastructure => "Infrastructure",
            ErrorType::Job => "Job",
            ErrorType::Test => "Test",
            ErrorType::Bug => "Bug",
            ErrorType::Configuration => "Configuration",
            ErrorType::Canceled => "Canceled",
            ErrorType::LavaTimeout => "LAVATimeout",
            ErrorType::MultinodeTimeout => "MultinodeTimeout",
            ErrorType::Other(name) => name,
        }
    }
}

impl From<String> for ErrorType {
    fn from(name: String) -> ErrorType {
        match name.as_str() {
            "Infrastructure" => ErrorType::Infrastructure,
            "Job" => ErrorType::Job,
            "Test" => ErrorType::Test,
            "Bug" => ErrorType::Bug,
            "Configuration" => ErrorType::Configuration,
            "Canceled" => ErrorType::Canceled,
            "LAVATimeout" => ErrorType::LavaTimeout,
            "MultinodeTimeout" => ErrorType::MultinodeTimeout,
            _ => ErrorType::Other(name),
        }
    }
}

impl From<ErrorType> for String {
    fn from(e: ErrorType) -> String {
        match e {
            ErrorType::Other(name) => name,
            known => known.name().to_owned(),
        }
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The worker leaves: shutting down, or it refused the master's version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Goodbye {
    pub reason: String,
}

// ---------------------------------------------------------------------------------------------
// master → worker

/// A message the master sends to a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MasterMsg {
    Welcome(Welcome),
    Refused(Refused),
    HelloRequired(HelloRequired),
    Start(Start),
    Cancel(Cancel),
    LogAck(LogAck),
    EndAck(EndAck),
    HeartbeatAck(HeartbeatAck),
    Hold(Hold),
}

/// The master admits a worker: its version, the heartbeat, and what becomes of each job the
/// Hello listed (every one is in exactly one of `resume` and `discard`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub version: ProtocolVersion,
    /// How often the worker sends a Heartbeat; either end gives the other up after
    /// [`crate::MISSED_HEARTBEATS`] intervals of silence.
    pub heartbeat_interval_secs: u32,
    /// Jobs to carry on with, and where the master's log of each stands.
    #[serde(default)]
    pub resume: Vec<JobResume>,
    /// Jobs to stop (if running) and forget: unknown, finished or canceled on the master.
    #[serde(default)]
    pub discard: Vec<JobId>,
    /// The largest encoded LogBatch the master wants.
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: u32,
}

/// The default of [`Welcome::max_batch_bytes`]: 1 MiB.
pub const DEFAULT_MAX_BATCH_BYTES: u32 = 1 << 20;

fn default_max_batch_bytes() -> u32 {
    DEFAULT_MAX_BATCH_BYTES
}

/// A held job the master wants: the worker sends its log again from `next_seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResume {
    pub job_id: JobId,
    /// The first record the master has not stored; everything before it is stored.
    pub next_seq: u64,
}

/// The master refuses a worker (version, capabilities, name); the connection ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// What is wrong, for the worker's log and its admin.
    pub reason: String,
}

/// The master does not know this connection (it restarted): send a Hello first. Whatever
/// else arrived was not stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloRequired {}

/// Run a job on one of the worker's devices; a Start for a job the worker already holds is
/// answered with that job's Status and nothing else (the master resends an unanswered Start).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Start {
    pub job_id: JobId,
    /// The device's hostname.
    pub device: String,
    /// The job definition (YAML text, as submitted; MultiNode: this sub-job's).
    pub definition: String,
    /// The rendered device configuration (YAML text): the worker needs no device files.
    pub device_config: String,
    /// The job timeout; the worker ends the job Incomplete (LAVATimeout) past it.
    pub job_timeout_secs: u64,
    /// A health check (its outcome sets the device's health).
    #[serde(default)]
    pub health_check: bool,
    /// A MultiNode sub-job: the coordinator ("HOST:PORT" as the worker reaches it), passed to
    /// `basalt run --coordinator` (protocol 1.2).
    #[serde(default)]
    pub coordinator: Option<String>,
    /// The coordinator's token, when it takes only requests that carry one (the master's own
    /// does by default): `basalt run --coordinator-token-file`. A secret: never logged.
    #[serde(default)]
    pub coordinator_token: Option<String>,
    /// A reservation (protocol 1.3, to workers with the `reservations` capability): the
    /// worker holds the board for the lease's holder (`basalt hold`) instead of running
    /// `definition` (which is empty then); [`Hold`] messages drive it, [`HoldState`] reports.
    /// The job ends when the master sends Cancel (release, expiry) or the holder dies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
}

/// What a worker needs to hold a board for a reservation. Its tokens are secrets: never logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The reservation's id (the same number as the job id; reservations are jobs).
    pub reservation_id: u64,
    /// The token that makes a console connection the writer (the lease holder).
    pub console_token: String,
    /// The token of a read-only console watcher.
    pub watch_token: String,
    /// An OpenSSH public key (`ssh-ed25519 AAAA... comment`) to authorise as the image's
    /// `ssh_user` when an image with sshd or dropbear is booted.
    #[serde(default)]
    pub ssh_public_key: Option<String>,
    /// The user to log in as over SSH (default `root`).
    #[serde(default)]
    pub ssh_user: Option<String>,
    /// The board is an emulator (its device boots with `qemu`): the worker forwards a port
    /// of 127.0.0.1 to its SSH. Set by the master, which parsed the device (protocol 1.4).
    #[serde(default)]
    pub forward_ssh: bool,
}

/// A request to a held board; the worker answers each with one [`HoldReply`] of the same
/// `request_id`. Not kept across a reconnect: the master answers its pending requests with an
/// error when the worker's link drops, and the client retries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub job_id: JobId,
    /// The master's number for the request, echoed in the reply.
    pub request_id: u64,
    pub action: HoldAction,
}

/// What a [`Hold`] asks of the held board.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum HoldAction {
    /// Run `definition` (a LAVA job with deploy and boot actions and no test, made by the
    /// master from the boot request) on the held board, whose console stays the lease's. The
    /// reply comes at once (accepted); [`HoldState`] says booting, then ready or failed.
    Boot {
        definition: String,
        timeout_secs: u64,
    },
    /// Type `command` on the board's shell and wait for it to finish: the reply carries its
    /// output and exit status. Refused unless the board is ready (booted to a shell).
    Exec { command: String, timeout_secs: u64 },
    /// Power the board off (it stays held); a later Boot powers it on again.
    PowerOff,
}

/// The answer to one [`Hold`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldReply {
    pub job_id: JobId,
    pub request_id: u64,
    pub result: HoldResult,
}

/// What came of a [`Hold`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum HoldResult {
    /// Boot and PowerOff were taken; their progress comes as [`HoldState`].
    Accepted,
    /// An Exec's command finished. `output` is what the board printed between the command's
    /// echo and its end, `\r\n` made `\n`, at most 1 MiB (then `truncated`).
    Exec {
        output: String,
        exit_status: i32,
        #[serde(default)]
        truncated: bool,
    },
    /// The request was refused or failed; `error` says why (for the client, as is).
    Error { error: String },
}

/// Where a held board is; sent when it changes and in answer to a Start for a held job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldState {
    pub job_id: JobId,
    pub state: HoldPhase,
    /// How the holder reaches the board now.
    #[serde(default)]
    pub connection: Connection,
    /// Why, for `failed` (the boot's error as the job log ends it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A held board's phase; the master maps it to the reservation's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldPhase {
    /// The board is held and its console served; nothing booted (or powered off again).
    Held,
    /// A Boot runs.
    Booting,
    /// The boot reached its shell (or the board needs no boot): commands may run.
    Ready,
    /// The last Boot failed; the board is still held (another Boot may be tried).
    Failed,
    /// A phase from a newer minor that this version does not know.
    #[serde(other)]
    Unknown,
}

/// How the holder reaches a held board: its console over telnet and, when the booted image
/// runs sshd or dropbear, SSH. Hosts are as the worker was told to advertise them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<ConsoleEndpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshEndpoint>,
}

/// A held board's console: telnet to `host:port`, then send the lease's console token (the
/// writer) or watch token (read-only) and a newline before anything else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleEndpoint {
    pub host: String,
    pub port: u16,
}

/// SSH to a held board: `ssh -p PORT USER@HOST` with the lease's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshEndpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
}

/// Cancel a job: the worker runs its cleanup and sends End (Incomplete, Canceled).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancel {
    pub job_id: JobId,
}

/// Every log record of the job up to `seq` is stored (0: none). With `resend`, the master
/// dropped records after `seq` (a gap) and asks for them again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogAck {
    pub job_id: JobId,
    pub seq: u64,
    #[serde(default)]
    pub resend: bool,
}

/// The End and every record of the job are stored: the worker may forget it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndAck {
    pub job_id: JobId,
}

/// The answer to a Heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAck {}

macro_rules! variants {
    ($msg:ident: $($variant:ident),+) => {
        $(impl From<$variant> for $msg {
            fn from(m: $variant) -> $msg {
                $msg::$variant(m)
            }
        })+
    };
}

variants!(WorkerMsg: Hello, Heartbeat, Inventory, Status, LogBatch, End, Goodbye, HoldState, HoldReply);
variants!(MasterMsg: Welcome, Refused, HelloRequired, Start, Cancel, LogAck, EndAck, HeartbeatAck, Hold);

/// What the codec needs of a direction's message enum. Sealed: the two enums above only.
pub trait Message: Serialize + serde::de::DeserializeOwned + private::Sealed {
    /// Who sends it: `worker` or `master`.
    const SENDER: &'static str;
    /// Its `type` names.
    const TYPES: &'static [&'static str];
    /// The `type` names of the other direction (to say a message came the wrong way).
    const OTHER_TYPES: &'static [&'static str];
    /// This message's `type` name.
    fn type_name(&self) -> &'static str;
}

mod private {
    pub trait Sealed {}
    impl Sealed for super::WorkerMsg {}
    impl Sealed for super::MasterMsg {}
}

const WORKER_TYPES: &[&str] = &[
    "hello",
    "heartbeat",
    "inventory",
    "status",
    "log_batch",
    "end",
    "goodbye",
    "hold_state",
    "hold_reply",
];
const MASTER_TYPES: &[&str] = &[
    "welcome",
    "refused",
    "hello_required",
    "start",
    "cancel",
    "log_ack",
    "end_ack",
    "heartbeat_ack",
    "hold",
];

impl Message for WorkerMsg {
    const SENDER: &'static str = "worker";
    const TYPES: &'static [&'static str] = WORKER_TYPES;
    const OTHER_TYPES: &'static [&'static str] = MASTER_TYPES;
    fn type_name(&self) -> &'static str {
        match self {
            WorkerMsg::Hello(_) => "hello",
            WorkerMsg::Heartbeat(_) => "heartbeat",
            WorkerMsg::Inventory(_) => "inventory",
            WorkerMsg::Status(_) => "status",
            WorkerMsg::LogBatch(_) => "log_batch",
            WorkerMsg::End(_) => "end",
            WorkerMsg::Goodbye(_) => "goodbye",
            WorkerMsg::HoldState(_) => "hold_state",
            WorkerMsg::HoldReply(_) => "hold_reply",
        }
    }
}

impl Message for MasterMsg {
    const SENDER: &'static str = "master";
    const TYPES: &'static [&'static str] = MASTER_TYPES;
    const OTHER_TYPES: &'static [&'static str] = WORKER_TYPES;
    fn type_name(&self) -> &'static str {
        match self {
            MasterMsg::Welcome(_) => "welcome",
            MasterMsg::Refused(_) => "refused",
            MasterMsg::HelloRequired(_) => "hello_required",
            MasterMsg::Start(_) => "start",
            MasterMsg::Cancel(_) => "cancel",
            MasterMsg::LogAck(_) => "log_ack",
            MasterMsg::EndAck(_) => "end_ack",
            MasterMsg::HeartbeatAck(_) => "heartbeat_ack",
            MasterMsg::Hold(_) => "hold",
        }
    }
}
