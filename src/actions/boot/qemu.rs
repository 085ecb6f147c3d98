//! `boot-image-retry` (boot `method: qemu` / `qemu-nfs`): start QEMU with the device's command
//! line and the job's image arguments, console on QEMU's stdio.

use super::login::login_tail;
use crate::action::context::open_session;
use crate::action::Scope;
use crate::action::{retry, Action, ActionError, ActionNode, Builder, Check, Ctx, PipelineError};
use crate::job::{ActionBlock, Boot};
use crate::yaml::Node;

pub(crate) fn pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    boot: &Boot,
) -> Result<ActionNode, PipelineError> {
    let mut node = b.node(
        s,
        None,
        retry(
            "boot-image-retry",
            "boot an emulated device, retrying on failure",
        ),
    );
    let q = b.child(
        s,
        &mut node,
        retry("boot-qemu-image", "start QEMU, retrying on failure"),
    );
    b.child(s, q, ExecuteQemu);
    login_tail(b, s, boot, &mut node);
    Ok(node)
}

/// Splits one option string of the device dictionary or the job into arguments (shell-like
/// quoting, no shell).
fn split(opt: &str) -> Result<Vec<String>, ActionError> {
    shell_words::split(opt)
        .map_err(|e| ActionError::job(format!("cannot split QEMU option '{opt}': {e}")))
}

/// The QEMU command line: device `command` + `options` + `extra`, then every image's
/// `image_arg` with `{label}` replaced by the downloaded file. For `qemu-nfs` (`nfs`), the
/// device's `qemu-nfs` parameters, and instead of the `nfsrootfs` image's argument the kernel
/// command line LAVA gives: `-append "console=… root=/dev/nfs nfsroot=SERVER:ROOT,… ip=…"`
/// from the method's `append` (`console`, `root`, `nfsrootargs`, `ipargs`), with
/// `{NFS_SERVER_IP}` and `{NFSROOTFS}` the job's NFS root. Last, the dispatcher's SSH forward
/// ([`Ctx::ssh_forward`]).
pub fn command_line(ctx: &Ctx, nfs: bool) -> Result<Vec<String>, ActionError> {
    let method = ctx
        .device
        .boot_method(if nfs { "qemu-nfs" } else { "qemu" })
        .or_else(|| ctx.device.boot_method("qemu"));
    let params = method.and_then(|m| m.get("parameters")).ok_or_else(|| {
        ActionError::job(format!(
            "device '{}' has no qemu parameters",
            ctx.device.hostname
        ))
    })?;
    let command = params
        .get("command")
        .and_then(Node::scalar_text)
        .ok_or_else(|| ActionError::job("the device's qemu parameters have no command"))?;
    let mut argv = split(&command)?;
    for key in ["options", "extra"] {
        match params.get(key) {
            Some(n) if n.as_seq().is_some() => {
                for item in n.as_seq().unwrap_or(&[]) {
                    if let Some(t) = item.scalar_text() {
                        argv.extend(split(&t)?);
                    }
                }
            }
            Some(n) => {
                if let Some(t) = n.scalar_text() {
                    argv.extend(split(&t)?);
                }
            }
            None => {}
        }
    }
    for block in &ctx.job.actions {
        let ActionBlock::Deploy(d) = block else {
            continue;
        };
        for (label, img) in &d.images {
            if nfs && label == "nfsrootfs" {
                continue;
            }
            let Some(arg) = &img.image_arg else { continue };
            let mut words = split(arg)?;
            for w in &mut words {
                for (key, path) in &ctx.downloads {
                    let ph = format!("{{{key}}}");
                    if w.contains(&ph) {
                        *w = w.replace(&ph, &path.to_string_lossy());
                    }
                }
                if w.contains(&format!("{{{label}}}")) {
                    return Err(ActionError::job(format!(
                        "image '{label}' was not downloaded for its image_arg"
                    )));
                }
            }
            // The job's arguments, once more on the real paths (docs/security.md).
            crate::job::qemu_args::check_args(
                &words,
                crate::job::qemu_args::Files::Inside(&ctx.workdir),
            )
            .map_err(|e| ActionError::job(format!("image '{label}': {e}")))?;
            argv.extend(words);
        }
    }
    if nfs {
        argv.push("-append".into());
        argv.push(nfs_append(ctx, params)?);
    }
    // the dispatcher's, after the job's arguments were checked: jobs may not forward ports
    if let Some(port) = ctx.ssh_forward {
        use super::qemu_forward::{add_ssh_forward, Restrict};
        // a confined QEMU that had no network must not give its guest one now
        let restrict = if ctx.confinement.as_ref().is_some_and(|c| !c.network) {
            Restrict::Force
        } else {
            Restrict::Keep
        };
        // a device QEMU cannot forward to (no network card, a tap back-end) boots without
        // the forward: the board then has no SSH, the console stays (docs/reservations.md)
        let mut forwarded = argv.clone();
        match add_ssh_forward(&mut forwarded, port, restrict) {
            Ok(()) => argv = forwarded,
            Err(e) => ctx
                .log
                .warning(format!("--ssh-forward {port}: {e}; no SSH to this board")),
        }
    }
    Ok(argv)
}

/// The kernel command line of a `qemu-nfs` boot.
fn nfs_append(ctx: &Ctx, params: &Node) -> Result<String, ActionError> {
    let nfs = ctx.nfs.as_ref().ok_or_else(|| {
        ActionError::job(
            "a qemu-nfs boot needs an NFS root: deploy to: nfs with an nfsrootfs first",
        )
    })?;
    let server = nfs.server.clone().unwrap_or_else(|| ctx.server_ip.clone());
    let append = params.get("append");
    let get = |k: &str| append.and_then(|a| a.get(k)).and_then(Node::scalar_text);
    let mut parts = Vec::new();
    if let Some(c) = get("console") {
        parts.push(format!("console={c}"));
    }
    parts.push(format!(
        "root={}",
        get("root").unwrap_or_else(|| "/dev/nfs".into())
    ));
    let nfsroot = get("nfsrootargs")
        .unwrap_or_else(|| "nfsroot={NFS_SERVER_IP}:{NFSROOTFS},tcp,hard".into())
        .replace("{NFS_SERVER_IP}", &server)
        .replace("{NFSROOTFS}", &nfs.path);
    parts.push(nfsroot);
    parts.push(get("ipargs").unwrap_or_else(|| "ip=dhcp".into()));
    Ok(parts.join(" "))
}

/// `execute-qemu`: start QEMU with its serial console on stdio and open the session.
#[derive(Debug)]
pub struct ExecuteQemu;

#[async_trait::async_trait]
impl Action for ExecuteQemu {
    fn name(&self) -> &'static str {
        "execute-qemu"
    }
    fn description(&self) -> &'static str {
        "run QEMU with the console attached"
    }
    fn validate(&self, c: &Check<'_>) -> Result<(), String> {
        let cmd = c
            .device
            .boot_method("qemu")
            .and_then(|m| m.path(&["parameters", "command"]));
        if cmd
            .and_then(Node::scalar_text)
            .is_none_or(|c| c.trim().is_empty())
        {
            return Err(format!(
                "device '{}' has no qemu command line (actions.boot.methods.qemu.parameters.command)",
                c.device.hostname
            ));
        }
        Ok(())
    }
    async fn run(&self, ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
        // a retry starts it again: the old console goes first
        ctx.session = None;
        let nfs = matches!(
            ctx.block(node),
            Some(ActionBlock::Boot(b)) if b.method == crate::job::BootMethod::QemuNfs
        );
        let argv = command_line(ctx, nfs)?;
        ctx.log
            .info(format!("boot command: {}", shell_words::join(&argv)));
        let policy = ctx.qemu_policy()?;
        let hostname = ctx.device.hostname.clone();
        let emulator = ctx.emulator.as_mut().ok_or_else(|| {
            ActionError::job(format!("device '{hostname}' is not an emulated board"))
        })?;
        let stream = emulator
            .start(&argv, &policy)
            .await
            .map_err(|e| ActionError::infra(e.to_string()).with_source(e))?;
        let what = emulator.describe();
        ctx.log.debug(format!("started {what}"));
        ctx.session = Some(open_session(&ctx.log, stream, &what));
        Ok(())
    }
    async fn cleanup(&self, ctx: &mut Ctx, _node: &ActionNode) {
        if let Some(e) = ctx.emulator.as_mut().filter(|e| e.running()) {
            ctx.session = None;
            if let Err(err) = e.stop().await {
                ctx.log.warning(format!("stopping QEMU: {err}"));
            }
        }
    }
}
