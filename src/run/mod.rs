//! `basalt run`: executes a pipeline on a device, as LAVA's `lava-run` does.
//!
//! Every action runs under its resolved timeout (and the job's), retry actions rerun their
//! pipeline up to `max_retries` times (`repeat` runs it that many times regardless), and
//! `finalize` always runs last: it powers the device off, stops every process the job started
//! and removes the job's temporary files. The outcome is written as LAVA writes it:
//! `output.yaml` (the log), `results.yaml`, `description.yaml`.
//!
//! The processes a job starts (QEMU, git, the connection command) are confined
//! ([`basalt_hal::confine`]): [`Ctx::policy`](crate::action::Ctx::policy) gives each its policy. The job's temporary
//! directories carry their owner's pid and start time in their name; at start, those whose
//! owner is gone (a basalt killed with `kill -9`) are removed ([`remove_stale`]).
//!
//! The executor ([`exec`]) knows actions by their trait only.

mod exec;
mod held;
#[cfg(test)]
pub(crate) mod testing;

pub use crate::action::{ActionError, Ctx, ErrorType, JobConfinement, TestRun};
pub use crate::host::tempdir::{remove_stale, tempdir_in};
/// The host services, where they were before they had their own module.
pub use crate::host::{blocking, http, limits, output};
pub use held::{boot_held, HeldBoot};

use crate::action::context::Place;
use crate::device::board::BoardPlan;
use crate::device::Device;
use crate::job::Job;
use crate::log::{JobLog, Verbosity};
use crate::pipeline::Pipeline;
use crate::protocols::multinode::{Facts, MultiNode};
use crate::yaml::{emit_document, Node};
use basalt_hal::confine::{self, Confinement, JobUser};
use basalt_hal::emulator::Qemu;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What `basalt run` was asked to do.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Where `output.yaml`, `results.yaml` and `description.yaml` go.
    pub output_dir: PathBuf,
    /// The job id used in overlay paths (`/lava-<id>`) and results.
    pub job_id: String,
    pub verbosity: Verbosity,
    /// Parent of the job's temporary directory (removed at the end).
    pub tmp_root: PathBuf,
    /// The TFTP server's root: tftp deploys stage their files in a job directory below it.
    pub tftp_root: PathBuf,
    /// The worker's address as the device sees it (`{SERVER_IP}`).
    pub server_ip: String,
    /// What the job may use (bytes, log size, host files, TFTP readers).
    pub limits: limits::Limits,
    /// The user the job's processes run as (when basalt is root); `None`: not confined.
    pub job_user: Option<JobUser>,
    /// Also sends the log here, record by record ([`crate::log::ChannelSink`]), e.g. for a
    /// worker that streams it to the master.
    pub log_channel: Option<crate::log::LogSender>,
    /// Also writes every record to stdout as it is logged, one `output.yaml` line each (a
    /// worker's job process: `basalt run --log-stdout`).
    pub log_stdout: bool,
    /// The MultiNode group's coordinator, for a sub-job (`basalt run --coordinator`); a
    /// sub-job without one fails at once.
    pub coordinator: Option<std::sync::Arc<dyn crate::protocols::multinode::Coordinator>>,
    /// Forward 127.0.0.1:PORT to a QEMU board's port 22 (`basalt run --ssh-forward`,
    /// [`crate::actions::boot::qemu_forward`]).
    pub ssh_forward: Option<u16>,
}

/// How the job ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub complete: bool,
    pub error: Option<ActionError>,
    /// The action that failed, `level name`.
    pub failed_action: Option<String>,
    pub results: Vec<Node>,
    pub duration: Duration,
}

/// Runs `pipeline`. Never panics on bad input; every failure ends the job Incomplete with the
/// failing action named.
pub async fn run_job(
    job: Job,
    device: Device,
    pipeline: &Pipeline,
    opts: &RunOptions,
) -> std::io::Result<Outcome> {
    let out = output::OutputDir::open(&opts.output_dir)?;
    let log = JobLog::create_in(Some(&out), opts.verbosity, job_secrets(&job))?;
    if let Some(tx) = &opts.log_channel {
        log.add_sink(Box::new(crate::log::ChannelSink::new(tx.clone())));
    }
    if opts.log_stdout {
        log.add_sink(Box::new(crate::log::WriterSink::new(std::io::stdout())));
    }
    log.set_max_bytes(opts.limits.max_log_bytes);
    out.write(
        "description.yaml",
        log.masked(&emit_document(&pipeline.describe())).as_bytes(),
    )?;
    std::fs::create_dir_all(&opts.tmp_root)?;
    for (root, prefix) in [
        (&opts.tmp_root, "basalt-job-"),
        (&opts.tftp_root, "basalt-"),
    ] {
        for (dir, result) in remove_stale(root, prefix) {
            match result {
                Ok(()) => log.info(format!("removed {}: its basalt is gone", dir.display())),
                Err(e) => log.warning(format!("could not remove {}: {e}", dir.display())),
            }
        }
    }
    let workdir = tempdir_in(&opts.tmp_root, &format!("basalt-job-{}-", opts.job_id))?;
    let confinement = job_confinement(opts, &device, &log);
    let job_secs = job.timeouts.job.map(|t| t.secs).unwrap_or(86_400);
    let start = Instant::now();
    let place = Place {
        job_id: opts.job_id.clone(),
        output_dir: opts.output_dir.clone(),
        workdir: workdir.clone(),
        tftp_root: opts.tftp_root.clone(),
        server_ip: opts.server_ip.clone(),
        limits: opts.limits.clone(),
        confinement,
        deadline: start + Duration::from_secs(job_secs),
    };
    let (multinode, multinode_error) = multinode_of(&job, opts);
    let mut ctx = Ctx::new(job, device, log.clone(), place);
    ctx.multinode = multinode;
    ctx.ssh_forward = opts.ssh_forward;
    log.info(format!(
        "basalt {}: job '{}' on device '{}' ({})",
        env!("CARGO_PKG_VERSION"),
        ctx.job.job_name,
        ctx.device.hostname,
        ctx.device.device_type
    ));
    // The board, once for the job: its console runs confined like the job's other processes.
    let board =
        BoardPlan::for_device(&ctx.device).and_then(|p| p.open(ctx.policy(&[], false, &[])));
    let board_error = match board {
        Ok(board) => {
            for line in board.describe() {
                log.info(format!("board {line}"));
            }
            if board.emulated {
                ctx.emulator = Some(Box::new(Qemu::new()));
            }
            ctx.board = board;
            None
        }
        Err(e) => Some(ActionError::infra(format!("the device's board: {e}")).with_source(e)),
    };
    let stream_gone = opts.log_stdout.then(watch_stdout);
    let early = multinode_error.or(board_error);
    let (mut error, failed) = exec::run_pipeline(&mut ctx, pipeline, early, stream_gone).await;
    // The group is told this sub-job is done on every path (failures and cancel too).
    if let Some(mn) = &ctx.multinode {
        mn.finalise(&log).await;
    }
    // Blocking work of a cancelled action stops at its next check: wait for it before its
    // directories go.
    if !ctx.tasks.wait_idle(Duration::from_secs(1)).await {
        log.warning(format!(
            "{} blocking task(s) still running at the end of the job",
            ctx.tasks.running()
        ));
    }
    // The temporary directories hold downloads and the overlay: nothing to keep.
    for dir in std::iter::once(workdir).chain(ctx.tftp_dir.take()) {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            log.warning(format!("could not remove {}: {e}", dir.display()));
        }
    }
    // A write error in output.yaml or results.yaml (disk full, read-only) makes the job
    // Incomplete, whatever else happened: it ran (partly) blind.
    let _ = log.flush();
    if let Some(e) = log.write_error() {
        if error.as_ref().map(|x| &x.message) != Some(&e) {
            error = Some(ActionError::infra(e));
        }
    }
    // the caller prints the error: it must not carry a secret either
    if let Some(e) = error.as_mut() {
        e.message = log.masked(&e.message);
    }
    let complete = error.is_none();
    let mut fields = vec![
        ("definition", Node::str("lava")),
        ("case", Node::str("job")),
        ("result", Node::str(if complete { "pass" } else { "fail" })),
    ];
    if let Some(e) = &error {
        fields.push(("error_msg", Node::str(e.message.clone())));
        fields.push(("error_type", Node::str(e.kind.lava_name())));
        fields.push(("cause", Node::str(e.cause().name())));
    }
    log.result(fields);
    if let Some((cpu, rss)) = own_usage() {
        log.debug(format!(
            "basalt resources: cpu {cpu:.3} s, peak rss {rss:.1} MiB (emulators excluded)"
        ));
    }
    if complete {
        log.info("Job finished: Complete");
    } else {
        log.error(format!(
            "Job finished: Incomplete{}",
            failed
                .as_deref()
                .map(|a| format!(" (action {a})"))
                .unwrap_or_default()
        ));
    }
    let results = log.results();
    let _ = log.flush();
    if let (Some(e), None) = (log.write_error(), &error) {
        error = Some(ActionError::infra(e));
    }
    Ok(Outcome {
        complete: error.is_none(),
        error,
        failed_action: failed,
        results,
        duration: start.elapsed(),
    })
}

/// The MultiNode side of a sub-job, or why the job cannot run: a sub-job needs a coordinator
/// and a usable `protocols.lava-multinode` block.
fn multinode_of(job: &Job, opts: &RunOptions) -> (Option<MultiNode>, Option<ActionError>) {
    match Facts::of(job) {
        Ok(None) => (None, None),
        Err(e) => (None, Some(ActionError::job(e.to_string()))),
        Ok(Some(facts)) => match &opts.coordinator {
            Some(c) => (
                Some(MultiNode {
                    facts,
                    coordinator: c.clone(),
                    data: Default::default(),
                }),
                None,
            ),
            None => (
                None,
                Some(ActionError::infra(format!(
                    "this job is a MultiNode sub-job (group {}, role {}) but no coordinator was given (basalt run --coordinator HOST:PORT)",
                    facts.group, facts.role
                ))),
            ),
        },
    }
}

/// Fires when stdout's reader is gone (a worker's job process whose worker died): the job is
/// then canceled, so that finalize still powers the board off. A thread waits in `poll` for
/// the pipe's error or hang-up, which a writer sees without writing.
pub fn watch_stdout() -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _ = std::thread::Builder::new()
        .name("stdout-watch".into())
        .spawn(move || {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            use std::os::fd::AsFd;
            let stdout = std::io::stdout();
            loop {
                let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::empty())];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => match fds[0].revents() {
                        Some(r) if r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP) => {
                            let _ = tx.send(());
                            return;
                        }
                        // not a pipe that can hang up (POLLNVAL, anything else): stop watching
                        Some(r) if !r.is_empty() => return,
                        _ => {}
                    },
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => return,
                }
            }
        });
    rx
}

/// The policy of a held board's console command, opened before any boot: what a job's
/// `Ctx::policy(&[], false, &[])` gives, from the worker's options and the device.
pub fn console_policy(opts: &RunOptions, device: &Device, log: &JobLog) -> confine::Policy {
    match job_confinement(opts, device, log) {
        None => confine::Policy::Supervised,
        Some(c) => {
            let mut conf = Confinement::new(c.user).network(c.network);
            for h in &c.hidden {
                conf = conf.hide(h);
            }
            confine::Policy::Confined(conf)
        }
    }
}

/// How this job's processes are confined, logged: the worker's job user (unless
/// `--no-confine`) with the device's settings; warnings when they are not.
fn job_confinement(opts: &RunOptions, device: &Device, log: &JobLog) -> Option<JobConfinement> {
    let Some(user) = &opts.job_user else {
        log.warning("the job's processes are not confined (--no-confine)");
        return None;
    };
    let dc = &device.confinement;
    if !dc.enabled {
        log.warning(format!(
            "the job's processes are not confined: device '{}' sets confinement = false",
            device.hostname
        ));
        return None;
    }
    let mut user = user.clone();
    for g in &dc.groups {
        match user.clone().with_group(g) {
            Ok(u) => user = u,
            Err(e) => log.warning(format!("confinement_groups of '{}': {e}", device.hostname)),
        }
    }
    let c = JobConfinement {
        user,
        network: dc.network,
        hidden: vec![opts.tmp_root.clone(), opts.tftp_root.clone()],
    };
    match confine::support() {
        confine::Support::Unavailable(why) => log.warning(format!(
            "the job's processes cannot be confined: {why}; they run with no_new_privs only"
        )),
        _ => log.info(format!(
            "the job's processes run confined: {}",
            Confinement::new(c.user.clone())
                .network(c.network)
                .describe()
        )),
    }
    Some(c)
}

/// The values no log may show: the job's `secrets:` and every `auto_login` password.
pub fn job_secrets(job: &Job) -> Vec<String> {
    let mut v: Vec<String> = job.secrets.iter().map(|(_, v)| v.clone()).collect();
    for block in &job.actions {
        if let crate::job::ActionBlock::Boot(b) = block {
            if let Some(pw) = b.auto_login.as_ref().and_then(|l| l.password.clone()) {
                v.push(pw);
            }
        }
    }
    v.retain(|s| !s.is_empty());
    v
}

/// basalt's own CPU time (user + system, seconds) and peak RSS (MiB), without its children.
pub fn own_usage() -> Option<(f64, f64)> {
    use nix::sys::resource::{getrusage, UsageWho};
    let u = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Some((
        tv(u.user_time()) + tv(u.system_time()),
        u.max_rss() as f64 / 1024.0,
    ))
}
