//! `minimal-boot`: a device that is already on (or is reset by its power commands) and only
//! needs its console connected and a login.

use super::login::{login_tail, reset_device};
use crate::job::Boot;
use crate::pipeline::build::{Builder, Scope};
use crate::pipeline::{ActionKind, ActionNode};

pub(crate) fn pipeline(b: &Builder<'_>, s: &Scope<'_>, boot: &Boot) -> ActionNode {
    let mut node = b.node(s, None, ActionKind::MinimalBoot);
    b.child(s, &mut node, ActionKind::ConnectDevice);
    if !b.device.commands.pre_power.is_empty() {
        b.child(s, &mut node, ActionKind::PrePowerCommand);
    }
    if !b.device.commands.pre_os.is_empty() {
        b.child(s, &mut node, ActionKind::PreOsCommand);
    }
    if boot.reset.unwrap_or(true) {
        reset_device(b, s, &mut node);
    }
    login_tail(b, s, boot, &mut node);
    node
}

// ---- running -------------------------------------------------------------------------------

use crate::run::{open_session, ActionError, Ctx};
use basalt_hal::confine::Policy;
use basalt_hal::console::command::CommandConsole;
use basalt_hal::console::Console;
use basalt_hal::console::TelnetConsole;
use basalt_hal::power::Power;

/// `connect-device`: open the device's console with its `connection_command`.
pub(crate) async fn run_connect(ctx: &mut Ctx, _node: &ActionNode) -> Result<(), ActionError> {
    if ctx.session.as_ref().is_some_and(|s| !s.is_closed()) {
        return Ok(());
    }
    // A console that dropped (a retry after a failed boot) is opened again.
    ctx.session = None;
    let cmd = ctx.device.commands.connect.clone().ok_or_else(|| {
        ActionError::job(format!(
            "device '{}' has no connection command",
            ctx.device.hostname
        ))
    })?;
    // the admin's command, but it carries the job's console: confined, with the network
    // only if the device grants it
    let console = console_for(&cmd, ctx.policy(&[], false, &[]))?;
    let stream = console.connect().await?;
    ctx.log.info(format!("connected to the console: {cmd}"));
    ctx.session = Some(open_session(&ctx.log, stream, &console.describe()));
    Ok(())
}

/// The console behind a `connection_command`. The usual `telnet HOST PORT` (ser2net) is
/// spoken directly: the connection is then up when `connect` returns, so nothing the board
/// prints right after a power cycle is lost while a telnet program is still starting.
/// Anything else runs as the command it is, under `policy`.
pub fn console_for(cmd: &str, policy: Policy) -> Result<Box<dyn Console>, ActionError> {
    let words = shell_words::split(cmd).unwrap_or_default();
    if let [prog, host, port] = words.as_slice() {
        if prog == "telnet" {
            if let Ok(port) = port.parse::<u16>() {
                return Ok(Box::new(TelnetConsole::new(host.clone(), port)));
            }
        }
    }
    Ok(Box::new(CommandConsole::new(cmd)?.with_policy(policy)))
}

/// `pdu-reboot`: power-cycle the device with its hard reset command.
pub(crate) async fn run_power_reset(ctx: &mut Ctx) -> Result<(), ActionError> {
    crate::actions::finalize::device_power(ctx).reset().await?;
    ctx.log.info("device reset");
    Ok(())
}

/// `pre-power-command` / `pre-os-command`: the device's commands run on the worker.
pub(crate) async fn run_device_command(
    ctx: &mut Ctx,
    node: &ActionNode,
) -> Result<(), ActionError> {
    let cmds = match node.kind {
        crate::pipeline::ActionKind::PrePowerCommand => ctx.device.commands.pre_power.clone(),
        _ => ctx.device.commands.pre_os.clone(),
    };
    for cmd in cmds {
        basalt_hal::power::command::run_shell(&cmd, std::time::Duration::from_secs(node.timeout))
            .await
            .map_err(|e| ActionError::infra(format!("{cmd}: {e}")))?;
    }
    Ok(())
}
