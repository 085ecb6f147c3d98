//! A boot on a held board (`basalt hold`): the deploy and boot actions of a job run by the same
//! executor as `basalt run`, on a board the caller built (its console a hub's), and stopped
//! before `finalize`: the board stays on for its holder. [`HeldBoot::finish`] runs `finalize`
//! (power off) and every action's cleanup later: at the next boot, a power-off, or the hold's
//! end. Until then the boot's directories (TFTP files, an NFS root) stay, as the board may
//! still read them.

use super::exec::{self, Started};
use super::{job_confinement, job_secrets, tempdir_in, RunOptions};
use crate::action::context::Place;
use crate::action::{ActionError, Ctx};
use crate::device::board::Board;
use crate::device::Device;
use crate::job::Job;
use crate::log::JobLog;
use crate::pipeline::Pipeline;
use crate::yaml::emit_document;
use basalt_hal::emulator::Emulator;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A boot that ran on a held board, with everything it holds (the board, the emulator, its
/// directories) until [`HeldBoot::finish`].
pub struct HeldBoot {
    ctx: Ctx,
    pipeline: Pipeline,
    started: Started,
    workdir: PathBuf,
    /// Why the boot failed (`None`: it reached its end: a shell, when it waits for prompts).
    pub error: Option<ActionError>,
    /// The action that failed, `level name`.
    pub failed_action: Option<String>,
}

impl std::fmt::Debug for HeldBoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldBoot")
            .field("error", &self.error)
            .field("failed_action", &self.failed_action)
            .finish()
    }
}

/// Runs `pipeline` up to its `finalize` on `board` (and `emulator`, for a QEMU device),
/// logging into `log` with the job's secrets masked too, within `timeout` (and the job's own
/// timeout). SIGINT / SIGTERM / SIGHUP cancel it, as they cancel `basalt run`, and so does
/// `cancel` firing (the hold's worker is gone). Fails only when the boot's directories cannot
/// be made.
#[allow(clippy::too_many_arguments)]
pub async fn boot_held(
    job: Job,
    device: Device,
    pipeline: Pipeline,
    opts: &RunOptions,
    log: &JobLog,
    board: Board,
    emulator: Option<Box<dyn Emulator>>,
    timeout: Duration,
    cancel: Option<tokio::sync::oneshot::Receiver<()>>,
) -> std::io::Result<HeldBoot> {
    let log = log.with_more_secrets(job_secrets(&job));
    let out = super::output::OutputDir::open(&opts.output_dir)?;
    out.write(
        "description.yaml",
        log.masked(&emit_document(&pipeline.describe())).as_bytes(),
    )?;
    std::fs::create_dir_all(&opts.tmp_root)?;
    let workdir = tempdir_in(&opts.tmp_root, &format!("basalt-job-{}-", opts.job_id))?;
    let confinement = job_confinement(opts, &device, &log);
    let job_secs = job.timeouts.job.map(|t| t.secs).unwrap_or(86_400);
    let secs = job_secs.min(timeout.as_secs().max(1));
    let place = Place {
        job_id: opts.job_id.clone(),
        output_dir: opts.output_dir.clone(),
        workdir: workdir.clone(),
        tftp_root: opts.tftp_root.clone(),
        server_ip: opts.server_ip.clone(),
        limits: opts.limits.clone(),
        confinement,
        deadline: Instant::now() + Duration::from_secs(secs),
    };
    let early = match crate::protocols::multinode::Facts::of(&job) {
        Ok(None) => None,
        Ok(Some(_)) | Err(_) => Some(ActionError::job(
            "a held board boots a single job, not a MultiNode sub-job",
        )),
    };
    let mut ctx = Ctx::new(job, device, log.clone(), place);
    // the worker's SSH forward for a QEMU board (the hold sets up SSH through it after the boot)
    ctx.ssh_forward = opts.ssh_forward;
    log.info(format!(
        "basalt {}: boot '{}' on held device '{}' ({})",
        env!("CARGO_PKG_VERSION"),
        ctx.job.job_name,
        ctx.device.hostname,
        ctx.device.device_type
    ));
    for line in board.describe() {
        log.info(format!("board {line}"));
    }
    ctx.board = board;
    ctx.emulator = emulator;
    let (error, failed_action, started) =
        exec::run_main_part(&mut ctx, &pipeline, early, cancel).await;
    let _ = log.flush();
    Ok(HeldBoot {
        ctx,
        pipeline,
        started,
        workdir,
        error,
        failed_action,
    })
}

impl HeldBoot {
    /// The boot's log (the hold's, with the boot job's secrets masked too).
    pub fn log(&self) -> &JobLog {
        &self.ctx.log
    }

    /// `finalize` (the board powered off, QEMU stopped), every action's cleanup, the boot's
    /// directories removed. Returns finalize's error, if any.
    pub async fn finish(mut self) -> Option<ActionError> {
        let (error, _) =
            exec::run_finish(&mut self.ctx, &self.pipeline, self.started, None, None).await;
        if !self.ctx.tasks.wait_idle(Duration::from_secs(1)).await {
            self.ctx.log.warning(format!(
                "{} blocking task(s) still running at the end of the boot",
                self.ctx.tasks.running()
            ));
        }
        for dir in std::iter::once(self.workdir).chain(self.ctx.tftp_dir.take()) {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                self.ctx
                    .log
                    .warning(format!("could not remove {}: {e}", dir.display()));
            }
        }
        let _ = self.ctx.log.flush();
        error
    }
}
