//! `basalt hold`: a board held for a reservation (docs/reservations.md). The worker runs it
//! instead of `basalt run` for a Start with a lease.
//!
//! At start the board is opened ([`BoardPlan`]) with its console in a [`Hub`] at once, before
//! any power-on, so that a watcher sees the board's output from the first byte; the console is
//! served on the lease's port ([`console`]); requests come on the control socket
//! ([`control`]):
//!
//! * `boot` {definition, timeout_secs}: the job's deploy and boot actions run on the held board
//!   ([`crate::run::boot_held`], the executor of `basalt run`) with the hub as its console;
//!   `finalize` is skipped, the board stays on. The state goes `booting`, then `ready` (the
//!   boot reached its end: its shell, when it waits for prompts) or `failed`. The previous
//!   boot, if any, is finished first (powered off, cleaned up).
//! * `exec` {command, timeout_secs}: the command on the board's shell ([`exec`]); only when
//!   `ready`.
//! * `power_off`: the last boot finished (finalize powers the board off), or the board's power
//!   switched off; the state goes `held`.
//!
//! A board console (not QEMU's) whose connection drops while no boot or command runs is
//! connected again every [`RECONNECT_EVERY`] (a boot or an exec reconnects it itself); its
//! ring buffer and subscribers stay, so watchers see the output resume.
//!
//! SIGTERM (the worker's cancel at release or expiry), SIGINT, SIGHUP, or the log's reader gone
//! (the worker died): a running boot is canceled, the board powered off, every console
//! connection closed, and `basalt hold` exits 0. The log is written as `basalt run` writes it
//! (`output.yaml`, `--log-stdout`); the lease's tokens come in the lease file and are masked
//! in it.

pub mod console;
pub mod control;
pub mod exec;
pub mod ssh;

use crate::device::board::{Board, BoardPlan};
use crate::device::Device;
use crate::log::JobLog;
use crate::run::{HeldBoot, RunOptions};
use basalt_hal::console::hub::{HeldConsole, HeldEmulator, Hub};
use basalt_hal::console::Console;
use basalt_hal::emulator::Qemu;
use basalt_proto::{
    Connection, ConsoleEndpoint, Hold, HoldAction, HoldPhase, HoldReply, HoldResult, HoldState,
    JobId, Lease, WorkerMsg,
};
use control::{Control, ControlIn};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What `basalt hold` was asked to do (no `Debug`: the lease holds secrets).
pub struct HoldOptions {
    /// Where the log goes and how boots run (as `basalt run`'s options).
    pub run: RunOptions,
    /// The held device, rendered.
    pub device: Device,
    /// The control socket's path.
    pub control: PathBuf,
    /// The lease (tokens, SSH key), from the lease file.
    pub lease: Lease,
    /// Where the console server listens.
    pub console_listen: std::net::SocketAddr,
    /// The console's host as the holder is told it.
    pub advertise_host: String,
    /// The hub's ring buffer, in bytes.
    pub console_buffer: usize,
}

/// Why a hold could not start.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    /// The lease file cannot be read or is not a lease.
    #[error("the lease file {path}: {message}")]
    Lease { path: String, message: String },
    /// The device's board cannot be built.
    #[error("the device's board: {0}")]
    Board(#[from] crate::device::board::BoardError),
    /// The console's port cannot be listened on.
    #[error("the console server on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// The control socket cannot be made.
    #[error(transparent)]
    Control(#[from] control::ControlError),
    /// The output directory cannot be written.
    #[error("{path}: {source}")]
    Output {
        path: String,
        source: std::io::Error,
    },
}

/// Reads a lease file: the JSON of the Start's `lease` (both tokens non-empty).
pub fn read_lease(path: &Path) -> Result<Lease, HoldError> {
    let err = |message: String| HoldError::Lease {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let lease: Lease = serde_json::from_str(&text).map_err(|e| err(format!("not a lease: {e}")))?;
    if lease.console_token.is_empty() || lease.watch_token.is_empty() {
        return Err(err("a token is empty".into()));
    }
    Ok(lease)
}

/// How often a dropped board console is connected again.
pub const RECONNECT_EVERY: Duration = Duration::from_secs(2);

/// How long one reconnection may take.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Everything the hold owns.
struct Held {
    job_id: JobId,
    opts: HoldOptions,
    log: JobLog,
    hub: Hub,
    plan: BoardPlan,
    upstream: Option<Arc<dyn Console>>,
    phase: HoldPhase,
    reason: Option<String>,
    connection: Connection,
    /// The last boot, kept (board on) until the next boot, a power-off or the end.
    boot: Option<HeldBoot>,
    /// The board console's connection is gone and was said to be (one warning, not one per
    /// try).
    console_lost: bool,
}

/// Holds the board until a signal (or the log's reader going) ends it; `Ok` then.
pub async fn serve(opts: HoldOptions) -> Result<(), HoldError> {
    let job_id = JobId(opts.run.job_id.parse().unwrap_or(0));
    let out = crate::host::output::OutputDir::open(&opts.run.output_dir).map_err(|source| {
        HoldError::Output {
            path: opts.run.output_dir.display().to_string(),
            source,
        }
    })?;
    let verbosity = opts.run.verbosity;
    let log = JobLog::create_in(
        Some(&out),
        verbosity,
        vec![
            opts.lease.console_token.clone(),
            opts.lease.watch_token.clone(),
        ],
    )
    .map_err(|source| HoldError::Output {
        path: opts.run.output_dir.display().to_string(),
        source,
    })?;
    if opts.run.log_stdout {
        log.add_sink(Box::new(crate::log::WriterSink::new(std::io::stdout())));
    }
    log.set_max_bytes(opts.run.limits.max_log_bytes);
    let stream_gone = opts.run.log_stdout.then(crate::run::watch_stdout);
    // the signals are caught from now on: a SIGTERM while the board is opened still ends the
    // hold cleanly
    let mut signals = Signals::new();
    let mut control = Control::bind(&opts.control, job_id)?;
    let plan = BoardPlan::for_device(&opts.device)?;
    let policy = crate::run::console_policy(&opts.run, &opts.device, &log);
    let board = plan.open(policy)?;
    let upstream: Option<Arc<dyn Console>> = board.console.map(Arc::from);
    let what = upstream.as_ref().map_or_else(
        || format!("{} (QEMU)", opts.device.hostname),
        |c| c.describe(),
    );
    let hub = Hub::new(what, opts.console_buffer);
    log.info(format!(
        "basalt {}: holding device '{}' ({}) for reservation {}",
        env!("CARGO_PKG_VERSION"),
        opts.device.hostname,
        opts.device.device_type,
        opts.lease.reservation_id
    ));
    // the board's own console first, before anything powers it on
    if let Some(up) = &upstream {
        match up.connect().await {
            Ok(stream) => {
                if let Err(e) = hub.attach(stream) {
                    log.warning(format!("console: {e}"));
                }
                log.info(format!("connected to the console: {}", up.describe()));
            }
            Err(e) => log.warning(format!(
                "the console cannot be connected yet ({e}); trying again every {} s",
                RECONNECT_EVERY.as_secs()
            )),
        }
    }
    let listener = tokio::net::TcpListener::bind(opts.console_listen)
        .await
        .map_err(|source| HoldError::Listen {
            addr: opts.console_listen,
            source,
        })?;
    let server = console::ConsoleServer::start(
        listener,
        hub.clone(),
        console::Tokens {
            console: opts.lease.console_token.clone(),
            watch: opts.lease.watch_token.clone(),
        },
        opts.device.hostname.clone(),
    )
    .map_err(|source| HoldError::Listen {
        addr: opts.console_listen,
        source,
    })?;
    let port = server.local_addr().port();
    log.info(format!(
        "the console is served on {} (advertised as {}:{port})",
        server.local_addr(),
        opts.advertise_host
    ));
    let connection = Connection {
        console: Some(ConsoleEndpoint {
            host: opts.advertise_host.clone(),
            port,
        }),
        ssh: None,
    };
    let mut held = Held {
        job_id,
        opts,
        log: log.clone(),
        hub: hub.clone(),
        plan,
        upstream,
        phase: HoldPhase::Held,
        reason: None,
        connection,
        boot: None,
        // a console that could not be connected at the start was said to be
        console_lost: !hub.is_attached(),
    };
    held.announce(&control);
    let why = held.run(&mut control, &mut signals, stream_gone).await;
    log.info(format!("the hold ends ({why}): powering the board off"));
    held.power_off().await;
    hub.close();
    server.close().await;
    log.info("every console connection is closed");
    log.result(vec![
        ("definition", crate::yaml::Node::str("lava")),
        ("case", crate::yaml::Node::str("job")),
        ("result", crate::yaml::Node::str("pass")),
    ]);
    log.info("Job finished: Complete");
    let _ = log.flush();
    Ok(())
}

/// SIGTERM, SIGINT and SIGHUP, caught from when this is made.
struct Signals(
    Option<(
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
    )>,
);

impl Signals {
    fn new() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(t), Ok(i), Ok(h)) => Signals(Some((t, i, h))),
            _ => Signals(None),
        }
    }

    async fn recv(&mut self) -> &'static str {
        match &mut self.0 {
            Some((t, i, h)) => tokio::select! {
                _ = t.recv() => "SIGTERM",
                _ = i.recv() => "SIGINT",
                _ = h.recv() => "SIGHUP",
            },
            None => std::future::pending().await,
        }
    }
}

/// A request that runs while the main loop goes on.
type Task<T> = Option<tokio::task::JoinHandle<T>>;

/// Waits for a task, if there is one (pending forever if not).
async fn join<T>(task: &mut Task<T>) -> Option<T> {
    match task {
        Some(t) => {
            let r = t.await.ok();
            *task = None;
            r
        }
        None => std::future::pending().await,
    }
}

/// What a boot task gives back: the request, and the boot (or why it could not run).
type BootDone = (u64, Result<HeldBoot, String>);

impl Held {
    /// Serves requests until the hold must end; says why.
    async fn run(
        &mut self,
        control: &mut Control,
        signals: &mut Signals,
        stream_gone: Option<tokio::sync::oneshot::Receiver<()>>,
    ) -> String {
        let mut booting: Task<BootDone> = None;
        let mut executing: Task<()> = None;
        let mut cancel_boot: Option<tokio::sync::oneshot::Sender<()>> = None;
        let gone = gone(stream_gone);
        tokio::pin!(gone);
        let mut keep = tokio::time::interval(RECONNECT_EVERY);
        keep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let why = loop {
            tokio::select! {
                _ = keep.tick(), if self.upstream.is_some() && booting.is_none() && executing.is_none() => {
                    self.keep_console().await;
                }
                sig = signals.recv() => break sig.to_string(),
                _ = &mut gone => break "the worker is gone (the log's reader closed)".to_string(),
                done = join(&mut booting) => {
                    cancel_boot = None;
                    match done {
                        Some((_, Ok(boot))) => self.booted(boot, control).await,
                        Some((_, Err(e))) => self.set(HoldPhase::Failed, Some(e), control),
                        None => self.set(HoldPhase::Failed, Some("the boot's task died".into()), control),
                    }
                }
                _ = join(&mut executing) => {}
                req = control.next() => match req {
                    None => break "the control socket is gone".to_string(),
                    Some(ControlIn::Connected) => self.announce(control),
                    Some(ControlIn::Request(hold)) => {
                        let busy = booting.is_some() || executing.is_some();
                        self.request(hold, busy, control, &mut booting, &mut executing, &mut cancel_boot).await;
                    }
                },
            }
        };
        // a boot still running is canceled (its pipeline also sees the signal) and kept, so
        // that the end powers it off
        if let Some(c) = cancel_boot.take() {
            let _ = c.send(());
        }
        if booting.is_some() {
            if let Some((_, Ok(boot))) = join(&mut booting).await {
                self.boot = Some(boot);
            }
        }
        if let Some(t) = executing.take() {
            t.abort();
        }
        why
    }

    /// Connects the board's console again if its connection is gone (ser2net restarted, the
    /// cable's server dropped it): the hub keeps its buffer and subscribers.
    async fn keep_console(&mut self) {
        let Some(up) = &self.upstream else { return };
        if self.hub.is_attached() {
            // connected (again, perhaps by a boot's or an exec's console)
            self.console_lost = false;
            return;
        }
        if self.hub.is_closed() {
            return;
        }
        if !self.console_lost {
            self.console_lost = true;
            self.log.warning(format!(
                "the console connection is gone: {}; trying again every {} s",
                up.describe(),
                RECONNECT_EVERY.as_secs()
            ));
        }
        // refused or slow: the next tick tries again (said once, above)
        if let Ok(Ok(stream)) = tokio::time::timeout(RECONNECT_TIMEOUT, up.connect()).await {
            match self.hub.attach(stream) {
                Ok(_) => {
                    self.console_lost = false;
                    self.log
                        .info(format!("the console is connected again: {}", up.describe()));
                }
                Err(e) => self.log.warning(format!("console: {e}")),
            }
        }
    }

    /// Takes one request; long ones run as tasks.
    async fn request(
        &mut self,
        hold: Hold,
        busy: bool,
        control: &Control,
        booting: &mut Task<BootDone>,
        executing: &mut Task<()>,
        cancel_boot: &mut Option<tokio::sync::oneshot::Sender<()>>,
    ) {
        let id = hold.request_id;
        let reply = |result| {
            WorkerMsg::HoldReply(HoldReply {
                job_id: self.job_id,
                request_id: id,
                result,
            })
        };
        let refuse = |why: &str| {
            reply(HoldResult::Error {
                error: why.to_string(),
            })
        };
        if busy {
            let what = if booting.is_some() {
                "a boot"
            } else {
                "a command"
            };
            control.send(refuse(&format!(
                "{what} is running on the board: try again when it is done"
            )));
            return;
        }
        match hold.action {
            HoldAction::Boot {
                definition,
                timeout_secs,
            } => {
                let (job, pipeline) = match self.boot_job(&definition) {
                    Ok(p) => p,
                    Err(e) => {
                        control.send(refuse(&e));
                        return;
                    }
                };
                control.send(reply(HoldResult::Accepted));
                self.set(HoldPhase::Booting, None, control);
                let previous = self.boot.take();
                let (board, emulator) = match self.board() {
                    Ok(b) => b,
                    Err(e) => {
                        if let Some(p) = previous {
                            p.finish().await;
                        }
                        self.set(HoldPhase::Failed, Some(e), control);
                        return;
                    }
                };
                let (tx, rx) = tokio::sync::oneshot::channel();
                *cancel_boot = Some(tx);
                let run = self.opts.run.clone();
                let device = self.opts.device.clone();
                let log = self.log.clone();
                let timeout = Duration::from_secs(timeout_secs.max(1));
                *booting = Some(tokio::task::spawn_local(async move {
                    if let Some(p) = previous {
                        p.finish().await;
                    }
                    let boot = crate::run::boot_held(
                        job,
                        device,
                        pipeline,
                        &run,
                        &log,
                        board,
                        emulator,
                        timeout,
                        Some(rx),
                    )
                    .await
                    .map_err(|e| format!("the boot's directories: {e}"));
                    (id, boot)
                }));
            }
            HoldAction::Exec {
                command,
                timeout_secs,
            } => {
                if self.phase != HoldPhase::Ready {
                    control.send(refuse(
                        "the board is not ready: commands run once a boot reached its shell",
                    ));
                    return;
                }
                let hub = self.hub.clone();
                let log = self.log.clone();
                let events = control.sender();
                let job_id = self.job_id;
                let timeout = Duration::from_secs(timeout_secs.max(1));
                *executing = Some(tokio::task::spawn_local(async move {
                    let result = exec::exec(&hub, &log, &command, timeout).await;
                    let _ = events.send(WorkerMsg::HoldReply(HoldReply {
                        job_id,
                        request_id: id,
                        result,
                    }));
                }));
            }
            HoldAction::PowerOff => {
                control.send(reply(HoldResult::Accepted));
                self.power_off().await;
                self.set(HoldPhase::Held, None, control);
            }
        }
    }

    /// A boot request's job and its pipeline on the held device, or what is wrong with it.
    fn boot_job(
        &self,
        definition: &str,
    ) -> Result<(crate::job::Job, crate::pipeline::Pipeline), String> {
        let (job, _) =
            crate::job::parse_job_as("boot.yaml", definition, crate::job::Reading::Dispatch)
                .map_err(|e| {
                    let lines: Vec<String> = e.report.errors().map(|d| e.report.line(d)).collect();
                    format!("the boot's job is not valid: {}", lines.join("; "))
                })?;
        let device = &self.opts.device;
        let pipeline = crate::pipeline::build_pipeline(&job, device)
            .and_then(|p| {
                let problems = crate::pipeline::validate(&job, device, &p);
                if problems.is_empty() {
                    Ok(p)
                } else {
                    Err(problems)
                }
            })
            .map_err(|errors| {
                let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                format!(
                    "the boot cannot run on device '{}': {}",
                    device.hostname,
                    lines.join("; ")
                )
            })?;
        Ok((job, pipeline))
    }

    /// The board a boot's pipeline gets: its console the hub's, its QEMU attached to the hub.
    fn board(&self) -> Result<(Board, Option<Box<dyn basalt_hal::emulator::Emulator>>), String> {
        let mut board = self
            .plan
            .open(crate::run::console_policy(
                &self.opts.run,
                &self.opts.device,
                &self.log,
            ))
            .map_err(|e| e.to_string())?;
        if board.console.is_some() {
            board.console = Some(Box::new(HeldConsole::new(
                self.hub.clone(),
                self.upstream.clone(),
            )));
        }
        let emulator: Option<Box<dyn basalt_hal::emulator::Emulator>> = board
            .emulated
            .then(|| Box::new(HeldEmulator::new(self.hub.clone(), Box::new(Qemu::new()))) as _);
        Ok((board, emulator))
    }

    /// A boot ended: ready, or failed with its error; the boot is kept (board on).
    async fn booted(&mut self, boot: HeldBoot, control: &Control) {
        let error = boot.error.as_ref().map(|e| e.message.clone());
        let failed = boot.failed_action.clone();
        self.boot = Some(boot);
        match error {
            None => {
                self.connection.ssh = self.ssh_access().await;
                self.set(HoldPhase::Ready, None, control);
            }
            Some(e) => {
                let reason = match failed {
                    Some(a) => format!("{a}: {e}"),
                    None => e,
                };
                self.log.error(format!("the boot failed: {reason}"));
                self.set(HoldPhase::Failed, Some(self.log.masked(&reason)), control);
            }
        }
    }

    /// SSH to a booted QEMU board whose image has dropbear or sshd: the lease's key
    /// authorised through the console ([`ssh::set_up`]), the endpoint the worker's forward
    /// (`--ssh-forward`, 127.0.0.1 only). `None` (and a log line) when the board is not a QEMU
    /// board with a forward, the lease has no key, or the image has no SSH server. Boards
    /// that are not emulated get none: their shell may be the worker host's own (basalt-board).
    async fn ssh_access(&self) -> Option<basalt_proto::SshEndpoint> {
        let port = self.opts.run.ssh_forward?;
        if !self.plan.emulated {
            return None;
        }
        // the boot's QEMU listens on the forward only when it could add it (a device without a
        // user-mode network card gets none)
        let at = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if std::net::TcpStream::connect_timeout(&at, Duration::from_secs(1)).is_err() {
            self.log.info(format!(
                "SSH: nothing forwarded on {at}: no SSH on this boot"
            ));
            return None;
        }
        let key_text = self.opts.lease.ssh_public_key.as_deref()?;
        let key = match ssh::PublicKey::parse(key_text) {
            Ok(k) => k,
            Err(e) => {
                self.log
                    .warning(format!("SSH: the lease's key is refused: {e}"));
                return None;
            }
        };
        let user = self
            .opts
            .lease
            .ssh_user
            .as_deref()
            .unwrap_or(ssh::SshUser::DEFAULT);
        let user = match ssh::SshUser::parse(user) {
            Ok(u) => u,
            Err(e) => {
                self.log.warning(format!("SSH: {e}"));
                return None;
            }
        };
        let stream = match self.hub.attach_pipeline() {
            Ok(s) => s,
            Err(e) => {
                self.log.warning(format!("SSH: the console: {e}"));
                return None;
            }
        };
        let mut session = crate::action::context::open_session(
            &self.log,
            stream,
            &format!("{} (ssh set-up)", self.hub.what()),
        );
        let setup = ssh::Setup::new(
            key,
            user,
            ssh::Reach::Forwarded {
                host: "127.0.0.1".into(),
                port,
            },
        );
        match ssh::set_up(&mut session, &setup).await {
            Ok(endpoint) => {
                self.log.info(format!(
                    "SSH: ssh -p {} {}@{}",
                    endpoint.port, endpoint.user, endpoint.host
                ));
                Some(endpoint)
            }
            Err(e) => {
                self.log.info(format!("SSH: none on this boot: {e}"));
                None
            }
        }
    }

    /// Powers the board off: the last boot's finalize, else the board's power-off.
    async fn power_off(&mut self) {
        self.connection.ssh = None;
        if let Some(boot) = self.boot.take() {
            if let Some(e) = boot.finish().await {
                self.log.warning(format!("powering off: {e}"));
            }
            return;
        }
        if self.plan.emulated {
            return;
        }
        let board = match self.plan.open(basalt_hal::confine::Policy::Supervised) {
            Ok(b) => b,
            Err(e) => {
                self.log.warning(format!("powering off: {e}"));
                return;
            }
        };
        if let Some(power) = &board.power {
            match power.off().await {
                Ok(()) => self.log.info("device powered off"),
                Err(basalt_hal::power::PowerError::NotConfigured { .. }) => {
                    self.log.debug("the device has no power-off command")
                }
                Err(e) => self.log.warning(format!("powering off: {e}")),
            }
        }
    }

    /// Changes the state and tells the worker.
    fn set(&mut self, phase: HoldPhase, reason: Option<String>, control: &Control) {
        self.phase = phase;
        self.reason = reason;
        self.log.info(format!(
            "hold state: {}{}",
            phase_name(phase),
            self.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
        self.announce(control);
    }

    /// Sends the current state.
    fn announce(&self, control: &Control) {
        control.send(WorkerMsg::HoldState(HoldState {
            job_id: self.job_id,
            state: self.phase,
            connection: self.connection.clone(),
            reason: self.reason.clone(),
        }));
    }
}

fn phase_name(p: HoldPhase) -> &'static str {
    match p {
        HoldPhase::Held => "held",
        HoldPhase::Booting => "booting",
        HoldPhase::Ready => "ready",
        HoldPhase::Failed => "failed",
        HoldPhase::Unknown => "unknown",
    }
}

/// Resolves when `rx` fires; never without one.
async fn gone(rx: Option<tokio::sync::oneshot::Receiver<()>>) {
    match rx {
        Some(rx) => {
            if rx.await.is_err() {
                std::future::pending::<()>().await
            }
        }
        None => std::future::pending().await,
    }
}
