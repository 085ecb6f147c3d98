//! `basalt run`: executes a pipeline on a device, as LAVA's `lava-run` does.
//!
//! Every action runs under its resolved timeout (and the job's), retry actions rerun their
//! pipeline up to `max_retries` times (`repeat` runs it that many times regardless), and
//! `finalize` always runs last: it powers the device off, stops every process the job started
//! and removes the job's temporary files. The outcome is written as LAVA writes it:
//! `output.yaml` (the log), `results.yaml`, `description.yaml`.
//!
//! The processes a job starts (QEMU, git, the connection command) are confined
//! ([`basalt_hal::confine`]): [`Ctx::policy`] gives each its policy. The job's temporary
//! directories carry their owner's pid and start time in their name; at start, those whose
//! owner is gone (a basalt killed with `kill -9`) are removed ([`remove_stale`]).

pub mod blocking;
pub mod error;
mod exec;
pub mod http;
pub mod limits;
pub mod output;

pub use error::{ActionError, ErrorType};
pub use exec::has_runner;

/// The actions of `pipeline` that `basalt run` cannot execute, one error per job block and
/// action name: a job that validates on a device runs there.
pub fn unsupported(job: &Job, pipeline: &Pipeline) -> Vec<crate::pipeline::build::PipelineError> {
    let mut out: Vec<crate::pipeline::build::PipelineError> = Vec::new();
    for node in pipeline.walk() {
        if has_runner(&node.kind) {
            continue;
        }
        let (mark, path) = match node.block.and_then(|b| job.actions.get(b)) {
            Some(block) => (
                block.common().mark,
                format!("actions[{}].{}", block.common().index, block.kind()),
            ),
            None => (Default::default(), String::new()),
        };
        let message = format!("'{}' is not supported by basalt yet", node.name());
        if !out.iter().any(|e| e.path == path && e.message == message) {
            out.push(crate::pipeline::build::PipelineError {
                mark,
                path,
                message,
            });
        }
    }
    out
}

use crate::device::Device;
use crate::job::Job;
use crate::log::{JobLog, Verbosity};
use crate::pipeline::Pipeline;
use crate::yaml::{emit_document, Node};
use basalt_hal::confine::{self, Confinement, JobUser, Policy};
use basalt_hal::console::expect::Session;
use basalt_hal::emulator::QemuProcess;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
}

/// How the processes of one job are confined: the job user (with the device's groups),
/// whether the device grants the network, and the worker directories hidden from them.
#[derive(Clone, Debug)]
pub struct JobConfinement {
    pub user: JobUser,
    pub network: bool,
    pub hidden: Vec<PathBuf>,
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

/// A test definition's place in the overlay, filled in by the deploy and read by the test shell.
#[derive(Clone, Debug, Default)]
pub struct TestRun {
    /// `<idx>_<name>`.
    pub id: String,
    pub uuid: String,
    pub stage: usize,
    pub repository: String,
    pub path: String,
    pub revision: Option<String>,
    pub commit_id: Option<String>,
    /// The test definition, once read from the repository.
    pub testdef: Option<crate::job::testdef::TestDef>,
}

/// Everything the actions of one job share. One per job; passed by `&mut` down the pipeline.
pub struct Ctx {
    pub job: Job,
    pub device: Device,
    pub log: JobLog,
    pub job_id: String,
    pub output_dir: PathBuf,
    /// The job's private temporary directory.
    pub workdir: PathBuf,
    /// Downloaded files by image key (`kernel`, `rootfs`, `rootfs.modules`, ...).
    pub downloads: BTreeMap<String, PathBuf>,
    /// Root of the overlay tree on the worker; `lava-<id>/...` below it mirrors the device.
    pub overlay_root: Option<PathBuf>,
    /// Whether the overlay was put into an image the device boots (cpio ramdisk).
    pub overlay_applied: bool,
    /// Test definitions by (block, definition index).
    pub test_runs: BTreeMap<(usize, usize), TestRun>,
    /// The console of the running device.
    pub session: Option<Session>,
    /// QEMU, when the job runs an emulated device.
    pub emulator: Option<QemuProcess>,
    /// Job-level deadline.
    pub job_deadline: Instant,
    /// The TFTP server root and this job's directory in it (removed at the end).
    pub tftp_root: PathBuf,
    pub tftp_dir: Option<PathBuf>,
    pub server_ip: String,
    /// Boot commands after substitution, from `bootloader-overlay`.
    pub boot_commands: Vec<String>,
    /// The overlay tarball of the last `compress-overlay`, for `transfer_overlay`.
    pub overlay_tarball: Option<PathBuf>,
    /// Serves files to the devices (started on first use).
    pub file_server: Option<http::FileServer>,
    /// What the job may use.
    pub limits: limits::Limits,
    /// The bytes the job downloaded and unpacked so far, against `limits.max_job_bytes`.
    pub budget: std::sync::Arc<limits::Budget>,
    /// The job's blocking work (archives, copies, decompression), off the async runtime.
    pub tasks: blocking::Tasks,
    /// The group of the TFTP server's user, given the job's TFTP directory.
    pub tftp_gid: Option<u32>,
    /// How the job's processes are confined; `None`: they are not.
    pub confinement: Option<JobConfinement>,
}

impl Ctx {
    /// The policy for a process of this job that may write in `writable` (nothing else), with
    /// the network if `network` or the device grants it, and the extra `groups` that exist.
    pub fn policy(&self, writable: &[&Path], network: bool, groups: &[&str]) -> Policy {
        let Some(c) = &self.confinement else {
            return Policy::Supervised;
        };
        let user = groups
            .iter()
            .fold(c.user.clone(), |u, g| u.with_group_if_exists(g));
        let mut conf = Confinement::new(user).network(network || c.network);
        for w in writable {
            conf = conf.writable(*w);
        }
        for h in &c.hidden {
            conf = conf.hide(h);
        }
        Policy::Confined(conf)
    }

    /// QEMU's policy: the job's downloads (its images: disks it may write) writable, nothing
    /// else of the job's directory visible, `/dev/kvm` through the `kvm` group.
    pub fn qemu_policy(&self) -> Result<Policy, ActionError> {
        let downloads = self.workdir.join("downloads");
        std::fs::create_dir_all(&downloads)
            .map_err(|e| ActionError::infra(format!("{}: {e}", downloads.display())))?;
        Ok(self.policy(&[&downloads], false, &["kvm"]))
    }

    /// The console session; an infrastructure error if the device has none open.
    pub fn session(&mut self) -> Result<&mut Session, ActionError> {
        self.session.as_mut().ok_or_else(|| {
            ActionError::bug(
                "no console connection: the pipeline has no boot action before this one",
            )
        })
    }

    /// The job block an action belongs to.
    pub fn block(&self, node: &crate::pipeline::ActionNode) -> Option<&crate::job::ActionBlock> {
        node.block.and_then(|b| self.job.actions.get(b))
    }

    /// The boot block of a boot action (a copy: actions also need `&mut self`).
    pub fn boot_block(
        &self,
        node: &crate::pipeline::ActionNode,
    ) -> Result<crate::job::Boot, ActionError> {
        match self.block(node) {
            Some(crate::job::ActionBlock::Boot(b)) => Ok(b.clone()),
            _ => Err(ActionError::bug(format!(
                "{} outside a boot block",
                node.name()
            ))),
        }
    }

    /// `lava_test_results_dir` for this job: the job context, else the device constant,
    /// else `/lava-%s`, with `%s` replaced by the job id.
    pub fn results_dir(&self) -> String {
        let template = self
            .job
            .context
            .get("lava_test_results_dir")
            .and_then(Node::as_str)
            .map(str::to_string)
            .or_else(|| {
                self.device
                    .constant(&["posix", "lava_test_results_dir"])
                    .and_then(Node::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "/lava-%s".to_string());
        template.replace("%s", &self.job_id)
    }

    /// The shell the helper scripts run with (`lava_test_sh_cmd`).
    pub fn sh_cmd(&self) -> String {
        self.device
            .constant(&["posix", "lava_test_sh_cmd"])
            .and_then(Node::as_str)
            .unwrap_or("/bin/sh")
            .to_string()
    }
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
    let mut ctx = Ctx {
        job,
        device,
        log: log.clone(),
        job_id: opts.job_id.clone(),
        output_dir: opts.output_dir.clone(),
        workdir: workdir.clone(),
        downloads: BTreeMap::new(),
        overlay_root: None,
        overlay_applied: false,
        test_runs: BTreeMap::new(),
        session: None,
        emulator: None,
        job_deadline: start + Duration::from_secs(job_secs),
        tftp_root: opts.tftp_root.clone(),
        tftp_dir: None,
        server_ip: opts.server_ip.clone(),
        boot_commands: Vec::new(),
        overlay_tarball: None,
        file_server: None,
        limits: opts.limits.clone(),
        budget: limits::Budget::new(opts.limits.max_job_bytes),
        tasks: blocking::Tasks::default(),
        tftp_gid: None,
        confinement,
    };
    log.info(format!(
        "basalt {}: job '{}' on device '{}' ({})",
        env!("CARGO_PKG_VERSION"),
        ctx.job.job_name,
        ctx.device.hostname,
        ctx.device.device_type
    ));
    let (mut error, failed) = exec::run_pipeline(&mut ctx, pipeline).await;
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

/// Creates a fresh private directory under `root`, named
/// `{prefix}{pid}.{start time}-{nanos}-{n}`: its owner, so that [`remove_stale`] can tell
/// when the owner is gone.
pub fn tempdir_in(root: &Path, prefix: &str) -> std::io::Result<PathBuf> {
    let pid = std::process::id();
    let start = start_time(pid).unwrap_or(0);
    for n in 0..10_000u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = root.join(format!("{prefix}{pid}.{start}-{nanos:x}-{n}"));
        match std::fs::create_dir(&p) {
            Ok(()) => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700))?;
                return Ok(p);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("cannot create a temporary directory"))
}

/// A process's start time (clock ticks since boot, `/proc/PID/stat` field 22): with the pid,
/// it names one process for the machine's uptime.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name (field 2) is in parentheses and may hold anything: count after it
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The owner (pid, start time) in the name of a directory made by [`tempdir_in`] with a
/// prefix that starts with `prefix`.
fn owner_of(name: &str, prefix: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix(prefix)?;
    let mut parts = rest.rsplitn(4, '-');
    let (n, nanos, owner) = (parts.next()?, parts.next()?, parts.next()?);
    parts.next()?;
    n.parse::<u32>().ok()?;
    u32::from_str_radix(nanos, 16).ok()?;
    let (pid, start) = owner.split_once('.')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

/// Removes the directories `{prefix}...` below `root` (made by [`tempdir_in`]) whose owner
/// process is gone: what a basalt killed with `kill -9` left behind. Returns what it tried.
pub fn remove_stale(root: &Path, prefix: &str) -> Vec<(PathBuf, std::io::Result<()>)> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut done = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some((pid, start)) = name.to_str().and_then(|n| owner_of(n, prefix)) else {
            continue;
        };
        if !e.file_type().is_ok_and(|t| t.is_dir()) || start_time(pid) == Some(start) {
            continue;
        }
        let path = e.path();
        let r = std::fs::remove_dir_all(&path);
        done.push((path, r));
    }
    done
}

/// Opens an expect session over a console stream, logging into the job log; the job's
/// secrets are masked on the stream, before it is cut into records.
pub fn open_session(
    log: &JobLog,
    stream: Box<dyn basalt_hal::console::ConsoleStream>,
    what: &str,
) -> Session {
    Session::new(stream, what, Box::new(log.console())).with_secrets(log.secrets())
}

/// A job pattern (LAVA's prompts and messages are Python regexes); text that is not a valid
/// regex is matched literally.
pub fn pattern(text: &str) -> basalt_hal::console::expect::Regex {
    use basalt_hal::console::expect::Regex;
    Regex::new(text).unwrap_or_else(|_| {
        Regex::new(&regex::escape(text))
            .unwrap_or_else(|_| Regex::new("$^").expect("a valid regex"))
    })
}

/// A literal pattern.
pub fn literal(text: &str) -> basalt_hal::console::expect::Regex {
    pattern(&regex::escape(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_directories_name_their_owner() {
        let root = std::env::temp_dir().join(format!("basalt-stale-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let mine = tempdir_in(&root, "basalt-job-my-job-1-").unwrap();
        let name = mine.file_name().unwrap().to_string_lossy().into_owned();
        let me = (std::process::id(), start_time(std::process::id()).unwrap());
        assert_eq!(owner_of(&name, "basalt-job-"), Some(me));
        // a directory of a process that is gone (pid 0 never is a job's), and names that are
        // not basalt's
        let stale = root.join(format!("basalt-job-x-0.{}-1f-0", me.1));
        std::fs::create_dir(&stale).unwrap();
        std::fs::write(stale.join("file"), "x").unwrap();
        for other in [
            "basalt-job-nothing",
            "basalt-job-a-b-c-d",
            "unrelated-1.2-3-4",
        ] {
            std::fs::create_dir(root.join(other)).unwrap();
        }
        let removed: Vec<PathBuf> = remove_stale(&root, "basalt-job-")
            .into_iter()
            .map(|(p, r)| {
                r.unwrap();
                p
            })
            .collect();
        assert_eq!(removed, vec![stale.clone()]);
        assert!(mine.is_dir() && !stale.exists());
        assert!(root.join("basalt-job-nothing").is_dir());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
