//! The job's context: everything the actions of one job share, passed by `&mut` down the
//! pipeline, and the console helpers every action uses.

use super::{ActionError, ActionNode};
use crate::device::board::Board;
use crate::device::Device;
use crate::host::{blocking, http, limits};
use crate::job::Job;
use crate::log::JobLog;
use crate::yaml::Node;
use basalt_hal::confine::{Confinement, JobUser, Policy};
use basalt_hal::console::expect::Session;
use basalt_hal::emulator::Emulator;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How the processes of one job are confined: the job user (with the device's groups),
/// whether the device grants the network, and the worker directories hidden from them.
#[derive(Clone, Debug)]
pub struct JobConfinement {
    pub user: JobUser,
    pub network: bool,
    pub hidden: Vec<PathBuf>,
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

/// The job's NFS root: where the device mounts it from, and what basalt holds for it.
#[derive(Clone, Debug, Default)]
pub struct NfsRoot {
    /// The NFS server as the device sees it; `None`: the worker (`server_ip`).
    pub server: Option<String>,
    /// The path the server exports (`{NFSROOTFS}`).
    pub path: String,
    /// The directory basalt unpacked the root in, removed at the end of the job; `None` for a
    /// persistent NFS root, which is not basalt's.
    pub local: Option<PathBuf>,
    /// The directory of the export table's entry for the job, removed at the end of the job.
    pub exported: Option<PathBuf>,
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
    /// The board: its console and power backends, built once per job from the device.
    pub board: Board,
    /// The console of the running device.
    pub session: Option<Session>,
    /// QEMU, when the job runs an emulated device.
    pub emulator: Option<Box<dyn Emulator>>,
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
    /// The NFS root of the job's deploy (`nfsrootfs`, `persistent_nfs`, `nfs_url`).
    pub nfs: Option<NfsRoot>,
    /// A MultiNode sub-job's group side: its facts, coordinator and received values.
    pub multinode: Option<crate::protocols::multinode::MultiNode>,
    /// The dispatcher's SSH forward for a QEMU board (`--ssh-forward PORT`): 127.0.0.1:PORT
    /// to the guest's port 22 ([`crate::actions::boot::qemu_forward`]); never the job's.
    pub ssh_forward: Option<u16>,
}

/// Where a job runs on the worker: what [`Ctx::new`] needs besides the job and the device.
#[derive(Clone, Debug)]
pub struct Place {
    pub job_id: String,
    pub output_dir: PathBuf,
    /// The job's private temporary directory (made by the caller).
    pub workdir: PathBuf,
    pub tftp_root: PathBuf,
    /// The worker's address as the device sees it.
    pub server_ip: String,
    pub limits: limits::Limits,
    pub confinement: Option<JobConfinement>,
    /// When the job's time is up.
    pub deadline: Instant,
}

impl Ctx {
    /// The context of a job that has not started: no board yet ([`Board::empty`]), nothing
    /// downloaded, no console.
    pub fn new(job: Job, device: Device, log: JobLog, place: Place) -> Ctx {
        let board = Board::empty(&device.hostname);
        Ctx {
            job,
            device,
            log,
            job_id: place.job_id,
            output_dir: place.output_dir,
            workdir: place.workdir,
            downloads: BTreeMap::new(),
            overlay_root: None,
            overlay_applied: false,
            test_runs: BTreeMap::new(),
            board,
            session: None,
            emulator: None,
            job_deadline: place.deadline,
            tftp_root: place.tftp_root,
            tftp_dir: None,
            server_ip: place.server_ip,
            boot_commands: Vec::new(),
            overlay_tarball: None,
            file_server: None,
            budget: limits::Budget::new(place.limits.max_job_bytes),
            limits: place.limits,
            tasks: blocking::Tasks::default(),
            tftp_gid: None,
            confinement: place.confinement,
            nfs: None,
            multinode: None,
            ssh_forward: None,
        }
    }

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
    /// else of the job's directory visible, `/dev/kvm` through the `kvm` group; the host's
    /// network with an SSH forward (its guest is then `restrict=on`:
    /// [`crate::actions::boot::qemu_forward`]), so that the forward is on the host's loopback.
    pub fn qemu_policy(&self) -> Result<Policy, ActionError> {
        let downloads = self.workdir.join("downloads");
        std::fs::create_dir_all(&downloads)
            .map_err(|e| ActionError::infra_from(downloads.display(), e))?;
        Ok(self.policy(&[&downloads], self.ssh_forward.is_some(), &["kvm"]))
    }

    /// The board's power control; a job error naming what the device lacks.
    pub fn power(&self) -> Result<&dyn basalt_hal::power::Power, ActionError> {
        self.board.power.as_deref().ok_or_else(|| {
            ActionError::job(format!(
                "device '{}' has no power control (no power commands in its dictionary)",
                self.device.hostname
            ))
        })
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
    pub fn block(&self, node: &ActionNode) -> Option<&crate::job::ActionBlock> {
        node.block.and_then(|b| self.job.actions.get(b))
    }

    /// The boot block of a boot action (a copy: actions also need `&mut self`).
    pub fn boot_block(&self, node: &ActionNode) -> Result<crate::job::Boot, ActionError> {
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

    /// Stops whatever the job still holds: the console, the emulator. Runs after finalize,
    /// whatever happened.
    pub async fn release_all(&mut self) {
        self.session = None;
        if let Some(e) = self.emulator.as_mut() {
            let _ = e.stop().await;
        }
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
