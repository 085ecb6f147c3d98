//! The tail every boot shares: `auto-login-action` (wait for the kernel, log in, wait for a
//! prompt), then, when a test shell will run, `expect-shell-connection`, `overlay-unpack` for
//! `transfer_overlay`, and `export-device-env`.

use super::minimal::PduReboot;
use super::uboot::SendRebootCommands;
use crate::action::{action, group, retry, ActionNode, Builder, Nothing, Scope};
use crate::job::Boot;

pub(crate) fn login_tail(b: &Builder<'_>, s: &Scope<'_>, boot: &Boot, parent: &mut ActionNode) {
    if boot.prompts.is_empty() {
        return;
    }
    let login = b.child(
        s,
        parent,
        retry(
            "auto-login-action",
            "wait for the kernel and log in, retrying on failure",
        ),
    );
    b.child(s, login, LoginAction);
    if b.needs_overlay(&s.namespace) {
        b.child(s, parent, ExpectShellConnection);
        if boot.transfer_overlay.is_some() {
            b.child(s, parent, OverlayUnpack);
        }
        b.child(
            s,
            parent,
            Nothing {
                name: "export-device-env",
                description: "export the device environment in the shell",
            },
        );
    }
}

/// `reset-device` with the way this device is reset: its hard reset command when it has one,
/// else a reboot command sent to its shell.
pub(crate) fn reset_device(b: &Builder<'_>, s: &Scope<'_>, parent: &mut ActionNode) {
    let reset = b.child(s, parent, group("reset-device", "reset the device"));
    if b.device.has_power_commands() {
        b.child(s, reset, PduReboot);
    } else {
        b.child(s, reset, SendRebootCommands);
    }
}

// ---- running -------------------------------------------------------------------------------

use crate::action::context::pattern;
use crate::action::{ActionError, Ctx, FailureCause};
use crate::yaml::Node;
use std::time::Duration;

/// Messages that mean the kernel died: the boot fails at once instead of waiting for its timeout.
const KERNEL_FAILURES: &[&str] = &[
    "Kernel panic - not syncing",
    "---\\[ end Kernel panic",
    "Rebooting in \\d+ seconds",
];

/// What QEMU said, when it is gone: the reason a console closed.
fn emulator_note(ctx: &mut Ctx) -> String {
    ctx.emulator
        .as_mut()
        .and_then(|e| e.exit_note())
        .map(|note| format!(" ({note})"))
        .unwrap_or_default()
}

/// The kernel panicked on the way to a shell: LAVA's JobError, the kernel's fault.
fn kernel_panic() -> ActionError {
    ActionError::job("kernel panic while booting").caused_by(FailureCause::Kernel)
}

async fn wait_for(
    ctx: &mut Ctx,
    patterns: &[basalt_hal::console::expect::Regex],
    timeout: Duration,
    what: &str,
) -> Result<usize, ActionError> {
    let r = ctx.session()?.expect(patterns, timeout).await;
    match r {
        Ok(m) => Ok(m.index),
        Err(e) if e.is_timeout() => {
            Err(ActionError::timeout(format!("{what}: {e}")).with_source(e))
        }
        Err(e) => {
            let note = emulator_note(ctx);
            Err(ActionError::infra(format!("{what}: {e}{note}")).with_source(e))
        }
    }
}

action! {
    /// `login-action`: wait for the kernel to start, log in when asked, wait for a prompt.
    pub struct LoginAction = "login-action", "wait for the kernel, log in and wait for the prompt";
    run(ctx, node) { run_login(ctx, node).await }
}

action! {
    /// `expect-shell-connection`: check that the shell answers at its prompt.
    pub struct ExpectShellConnection = "expect-shell-connection", "check that the shell answers";
    run(ctx, node) { run_expect_shell(ctx, node).await }
}

action! {
    /// `overlay-unpack` (`transfer_overlay`): the device fetches the overlay and unpacks it.
    pub struct OverlayUnpack = "overlay-unpack", "download and unpack the overlay on the device";
    run(ctx, node) { run_overlay_unpack(ctx, node).await }
}

/// `login-action`: wait for the kernel to start, log in when asked, wait for a prompt.
async fn run_login(ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
    let boot = ctx.boot_block(node)?;
    let timeout = Duration::from_secs(node.timeout);
    let delay = Duration::from_millis(ctx.device.character_delays.boot_ms);
    let failures: Vec<_> = KERNEL_FAILURES.iter().map(|p| pattern(p)).collect();
    let ksm = boot.kernel_start_message.clone().or_else(|| {
        ctx.device
            .constant(&["kernel-start-message"])
            .and_then(Node::scalar_text)
    });
    if let Some(msg) = ksm.filter(|m| !m.is_empty() && !boot.ignore_kernel_messages) {
        ctx.log.debug(format!("waiting for the kernel: '{msg}'"));
        let mut pats = vec![pattern(&msg)];
        pats.extend(failures.iter().cloned());
        if wait_for(ctx, &pats, timeout, "kernel start").await? > 0 {
            return Err(kernel_panic());
        }
    }
    if let Some(login) = &boot.auto_login {
        let mut pats = vec![pattern(&login.login_prompt)];
        pats.extend(failures.iter().cloned());
        if wait_for(ctx, &pats, timeout, "login prompt").await? > 0 {
            return Err(kernel_panic());
        }
        ctx.session()?.send_line(&login.username, delay).await?;
        if let (Some(pp), Some(pw)) = (&login.password_prompt, &login.password) {
            wait_for(ctx, &[pattern(pp)], timeout, "password prompt").await?;
            ctx.session()?.send_line(pw, delay).await?;
        }
        for cmd in &login.login_commands {
            ctx.session()?.send_line(cmd, delay).await?;
        }
    }
    if boot.prompts.is_empty() {
        return Ok(());
    }
    let mut pats: Vec<_> = boot.prompts.iter().map(|p| pattern(p)).collect();
    let n = pats.len();
    pats.extend(failures.iter().cloned());
    if wait_for(ctx, &pats, timeout, "shell prompt").await? >= n {
        return Err(kernel_panic());
    }
    Ok(())
}

/// `expect-shell-connection`: check that the shell answers at its prompt.
async fn run_expect_shell(ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
    let boot = ctx.boot_block(node)?;
    let pats: Vec<_> = boot.prompts.iter().map(|p| pattern(p)).collect();
    let delay = Duration::from_millis(ctx.device.character_delays.boot_ms);
    ctx.session()?.send_line("", delay).await?;
    // Within the action's time, a silent console gets LAVA's harmless check line each
    // connection timeout.
    let s = ctx.session()?;
    s.set_connection_timeout(Some(Duration::from_secs(node.connection_timeout.max(1))));
    let r = s
        .expect_with_check(&pats, Duration::from_secs(node.timeout))
        .await;
    s.set_connection_timeout(None);
    r.map(|_| ())
        .map_err(|e| ActionError::expect("shell prompt", e))
}

/// `overlay-unpack` (`transfer_overlay`): the device downloads the overlay tarball from the
/// worker and unpacks it (`download_command URL`, then `unpack_command FILE`).
async fn run_overlay_unpack(ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
    let boot = ctx.boot_block(node)?;
    let t = boot
        .transfer_overlay
        .as_ref()
        .ok_or_else(|| ActionError::bug("overlay-unpack without transfer_overlay"))?;
    let text = |k: &str| t.get(k).and_then(Node::scalar_text);
    if text("transfer_method").as_deref() == Some("zmodem") {
        return Err(ActionError::job(
            "transfer_overlay by zmodem is not possible on this worker; use download_command",
        ));
    }
    let (Some(download), Some(unpack)) = (text("download_command"), text("unpack_command")) else {
        return Err(ActionError::job(
            "transfer_overlay needs download_command and unpack_command",
        ));
    };
    let tarball = ctx
        .overlay_tarball
        .clone()
        .ok_or_else(|| ActionError::job("transfer_overlay: no overlay was built (no test definitions, or no deploy before this boot)"))?;
    if ctx.file_server.is_none() {
        let ip = ctx.server_ip.clone();
        let server = crate::host::http::FileServer::start(&ip)
            .await
            .map_err(|e| ActionError::infra_from(format!("cannot serve files on {ip}"), e))?;
        ctx.file_server = Some(server);
    }
    let name = tarball
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "overlay.tar.gz".into());
    let url = ctx
        .file_server
        .as_ref()
        .map(|s| s.publish(&name, tarball.clone()))
        .ok_or_else(|| ActionError::bug("no file server"))?;
    let pats: Vec<_> = boot.prompts.iter().map(|p| pattern(p)).collect();
    let delay = Duration::from_millis(ctx.device.character_delays.test_ms);
    let timeout = Duration::from_secs(node.timeout);
    for cmd in [format!("{download} {url}"), format!("{unpack} {name}")] {
        ctx.session()?.send_line(&cmd, delay).await?;
        wait_for(ctx, &pats, timeout, "overlay transfer").await?;
    }
    ctx.log.info(format!("overlay transferred from {url}"));
    Ok(())
}
