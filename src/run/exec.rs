//! The executor: walks the action tree, enforces timeouts, retries, and always finalizes.

use super::{ActionError, Ctx, ErrorType};
use crate::actions;
use crate::job::timeout::hms;
use crate::pipeline::{ActionKind, ActionNode, Pipeline, Section};
use crate::yaml::Node;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

type BoxFut<'a> = Pin<Box<dyn Future<Output = Result<(), ActionError>> + Send + 'a>>;

fn fmt_hms(secs: u64) -> String {
    let mut s = String::new();
    let _ = hms(secs, &mut s);
    s
}

/// Runs every action, then `finalize`. Returns the error that ended the job and the failing
/// action (`level name`).
pub(super) async fn run_pipeline(
    ctx: &mut Ctx,
    pipeline: &Pipeline,
) -> (Option<ActionError>, Option<String>) {
    let (finalize, main) = match pipeline.actions.split_last() {
        Some((f, m)) if f.kind == ActionKind::Finalize => (Some(f), m),
        _ => (None, pipeline.actions.as_slice()),
    };
    let (mut error, mut failed) = {
        // SIGINT / SIGTERM / SIGHUP cancel the job; finalize still runs and cleans up. A
        // failed write of the log or the results (disk full, read-only) ends the job at once:
        // it would run blind.
        let log = ctx.log.clone();
        let main_actions = run_main(ctx, main);
        tokio::select! {
            r = main_actions => r,
            sig = cancelled() => (
                Some(ActionError { kind: ErrorType::Canceled, message: format!("job canceled ({sig})") }),
                None,
            ),
            e = log.write_failed() => (Some(ActionError::infra(e)), None),
        }
    };
    if error
        .as_ref()
        .is_some_and(|e| e.kind == ErrorType::Canceled)
    {
        ctx.log.error("job canceled by a signal: finalizing");
    }
    if let Some(f) = finalize {
        if let Err(e) = run_node(ctx, f).await {
            if error.is_none() {
                failed = Some(format!("{} {}", f.level, f.name()));
                error = Some(e);
            }
        }
    }
    // Whatever finalize could not stop is stopped here: nothing outlives the job.
    actions::finalize::release_all(ctx).await;
    (error, failed)
}

/// The actions before `finalize`; stops at the first failure.
async fn run_main(ctx: &mut Ctx, main: &[ActionNode]) -> (Option<ActionError>, Option<String>) {
    for node in main {
        if Instant::now() >= ctx.job_deadline {
            return (
                Some(ActionError::timeout("the job timeout expired")),
                Some(format!("{} {}", node.level, node.name())),
            );
        }
        match run_node(ctx, node).await {
            Ok(()) => {}
            Err(e) if e.kind == ErrorType::Timeout && node.skip_on_timeout => {
                ctx.log.warning(format!(
                    "{} {} timed out; 'skip: true' moves on to the next action",
                    node.level,
                    node.name()
                ));
            }
            Err(e) => return (Some(e), Some(format!("{} {}", node.level, node.name()))),
        }
    }
    (None, None)
}

/// Resolves when the process gets SIGINT, SIGTERM or SIGHUP (never, if the handlers cannot be
/// set). SIGHUP (the terminal or the session went away) cancels like SIGTERM: basalt must not
/// die and leave the board running.
async fn cancelled() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(mut int), Ok(mut term), Ok(mut hup)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
            _ = hup.recv() => "SIGHUP",
        },
        _ => std::future::pending().await,
    }
}

/// Runs one action with its timeout and retries, logging its start and end.
pub(crate) fn run_node<'a>(ctx: &'a mut Ctx, node: &'a ActionNode) -> BoxFut<'a> {
    Box::pin(async move {
        let top = !node.level.contains('.');
        let say = |ctx: &Ctx, text: String| {
            if top {
                ctx.log.info(text)
            } else {
                ctx.log.debug(text)
            }
        };
        say(
            ctx,
            format!(
                "start: {} {} (timeout {}) [{}]",
                node.level,
                node.name(),
                fmt_hms(node.timeout),
                node.namespace
            ),
        );
        let started = Instant::now();
        let mut deadline = started + Duration::from_secs(node.timeout);
        if node.section != Section::Finalize && ctx.job_deadline < deadline {
            deadline = ctx.job_deadline;
        }
        let attempts = node.max_retries.max(1);
        let mut result = Ok(());
        for attempt in 1..=attempts {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let r = match tokio::time::timeout(remaining, run_kind(ctx, node)).await {
                Ok(r) => r,
                Err(_)
                    if ctx.job_deadline <= Instant::now() && node.section != Section::Finalize =>
                {
                    Err(ActionError::timeout(format!(
                        "{} {}: the job timeout expired",
                        node.level,
                        node.name()
                    )))
                }
                Err(_) => Err(ActionError::timeout(format!(
                    "{} {} timed out after {} s",
                    node.level,
                    node.name(),
                    started.elapsed().as_secs()
                ))),
            };
            result = r;
            match &result {
                Ok(()) if node.repeat && attempt < attempts => {
                    ctx.log.info(format!(
                        "{} {}: repeat {}/{attempts} done",
                        node.level,
                        node.name(),
                        attempt
                    ));
                }
                Ok(()) => break,
                Err(e) => {
                    ctx.log
                        .error(format!("{} {} failed: {e}", node.level, node.name()));
                    if node.repeat || attempt == attempts || Instant::now() >= deadline {
                        break;
                    }
                    ctx.log.warning(format!(
                        "{} {}: retrying ({} of {attempts} attempts)",
                        node.level,
                        node.name(),
                        attempt + 1
                    ));
                    let interval = node
                        .block
                        .and_then(|b| ctx.job.actions.get(b))
                        .and_then(|a| a.common().failure_retry_interval)
                        .unwrap_or(1);
                    let pause = Duration::from_secs(u64::from(interval))
                        .min(deadline.saturating_duration_since(Instant::now()));
                    tokio::time::sleep(pause).await;
                }
            }
        }
        let took = started.elapsed();
        // what the action logged reaches the disk (a write error shows now, not at the end)
        let _ = ctx.log.flush();
        say(
            ctx,
            format!(
                "end: {} {} (duration {}) [{}]",
                node.level,
                node.name(),
                fmt_hms(took.as_secs()),
                node.namespace
            ),
        );
        if top && node.section != Section::Finalize {
            ctx.log.result(vec![
                ("definition", Node::str("lava")),
                ("namespace", Node::str(node.namespace.clone())),
                ("case", Node::str(node.name())),
                ("level", Node::str(node.level.clone())),
                ("duration", Node::str(format!("{:.2}", took.as_secs_f64()))),
                (
                    "result",
                    Node::str(if result.is_ok() { "pass" } else { "fail" }),
                ),
            ]);
        }
        result
    })
}

/// Runs the children of `node` in order.
pub(crate) async fn run_children(ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
    for child in &node.children {
        run_node(ctx, child).await?;
    }
    Ok(())
}

/// The actions basalt builds and describes (LAVA's pipeline) but cannot run yet. `run_kind`
/// matches every other kind, with no catch-all: a new kind gets a runner or lands here.
macro_rules! unsupported_kinds {
    () => {
        ActionKind::NfsDeploy
            | ActionKind::DeployQemuNfs
            | ActionKind::QemuNfsDeploy
            | ActionKind::StorageDeploy
            | ActionKind::ApplyOverlayImage
            | ActionKind::DdImage
            | ActionKind::MultinodeTest
    };
}

/// Whether `basalt run` can execute this action.
pub fn has_runner(kind: &ActionKind) -> bool {
    !matches!(kind, unsupported_kinds!())
}

async fn run_kind(ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
    use crate::actions::{boot, deploy, finalize, test};
    use ActionKind::*;
    match &node.kind {
        // Containers: their work is their children.
        DeployImages
        | TestDefinition
        | DownloadRetry { .. }
        | BootImageRetry
        | BootQemuImage
        | AutoLogin
        | TestShellRetry
        | Finalize
        | MinimalBoot => run_children(ctx, node).await,
        LavaOverlay => {
            deploy::overlay::run_lava_overlay(ctx)?;
            run_children(ctx, node).await
        }
        SshAuthorize | MultinodeOverlay | DeployDeviceEnv | ReadFeedback | ExportDeviceEnv => {
            ctx.log
                .debug(format!("{}: nothing to do for this job", node.name()));
            Ok(())
        }
        GitRepo(id) | InlineRepo(id) | UrlRepo(id) => {
            deploy::overlay::run_repo(ctx, node, *id).await
        }
        TestOverlay(id) => deploy::overlay::run_test_overlay(ctx, *id).await,
        TestInstallOverlay(id) => deploy::overlay::run_install_overlay(ctx, *id),
        TestRunscriptOverlay(id) => deploy::overlay::run_runscript_overlay(ctx, *id),
        CompressOverlay => deploy::overlay::run_compress_overlay(ctx, node).await,
        TftpDeploy => {
            deploy::tftp::run_tftp_dir(ctx)?;
            run_children(ctx, node).await
        }
        PrepareTftpOverlay | UbootAction | UbootCommands | PrepareKernel => {
            run_children(ctx, node).await
        }
        ExtractNfsRootfs
        | ExtractModules
        | ConfigurePreseedFile
        | ParsePersistentNfs
        | ExtractOverlayRamdisk
        | CompressRamdisk
        | UbootPrepareKernel
        | UbootFromMedia => deploy::tftp::run_optional(ctx, node),
        ApplyOverlayTftp => deploy::tftp::run_apply_overlay(ctx, node).await,
        BootloaderOverlay => boot::uboot::run_overlay(ctx, node),
        BootloaderInterrupt => boot::uboot::run_interrupt(ctx, node).await,
        BootloaderCommands => boot::uboot::run_commands(ctx, node).await,
        SendRebootCommands => boot::uboot::run_soft_reboot(ctx, node).await,
        HttpDownload { key, url } | FileDownload { key, url } => {
            deploy::download::run(ctx, node, key, url).await
        }
        AppendOverlays { key } => deploy::download::run_append_overlays(ctx, key).await,
        ApplyOverlayGuest => deploy::tmpfs::run_apply_overlay_guest(ctx),
        ExecuteQemu => boot::qemu::run_execute(ctx, node).await,
        ConnectDevice => boot::minimal::run_connect(ctx, node).await,
        ResetDevice => run_children(ctx, node).await,
        PduReboot => boot::minimal::run_power_reset(ctx).await,
        PrePowerCommand | PreOsCommand => boot::minimal::run_device_command(ctx, node).await,
        LoginAction => boot::login::run_login(ctx, node).await,
        ExpectShellConnection => boot::login::run_expect_shell(ctx, node).await,
        OverlayUnpack => boot::login::run_overlay_unpack(ctx, node).await,
        TestShell => test::shell::run(ctx, node).await,
        TestInteractiveRetry | TestMonitorRetry | BootBootloaderRetry | BootBootloader
        | ResetConnection => run_children(ctx, node).await,
        TestInteractive => test::interactive::run(ctx, node).await,
        TestMonitor => test::monitor::run(ctx, node).await,
        DisconnectDevice => {
            ctx.session = None;
            ctx.log.debug("console disconnected");
            Ok(())
        }
        PowerOff => finalize::run_power_off(ctx).await,
        UserCommand => actions::command::run(ctx, node).await,
        unsupported_kinds!() => Err(ActionError::job(format!(
            "'{}' is not supported by basalt yet (validate --device refuses such a job)",
            node.name()
        ))),
    }
}
