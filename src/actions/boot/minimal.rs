//! `minimal-boot`: a device that is already on (or is reset by its power commands) and only
//! needs its console connected and a login.

use super::login::{login_tail, reset_device};
use crate::action::context::open_session;
use crate::action::{action, retry, Action, ActionError, ActionNode, Builder, Check, Ctx};
use crate::action::{PipelineError, Scope};
use crate::job::Boot;

pub(crate) fn pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    boot: &Boot,
) -> Result<ActionNode, PipelineError> {
    let mut node = b.node(
        s,
        None,
        retry("minimal-boot", "connect to a device that is already on"),
    );
    b.child(s, &mut node, ConnectDevice);
    if !b.device.commands.pre_power.is_empty() {
        b.child(s, &mut node, DeviceCommand::PrePower);
    }
    if !b.device.commands.pre_os.is_empty() {
        b.child(s, &mut node, DeviceCommand::PreOs);
    }
    if boot.reset.unwrap_or(true) {
        reset_device(b, s, &mut node);
    }
    login_tail(b, s, boot, &mut node);
    Ok(node)
}

/// `connect-device`: open the device's console with its `connection_command`.
#[derive(Debug)]
pub struct ConnectDevice;

#[async_trait::async_trait]
impl Action for ConnectDevice {
    fn name(&self) -> &'static str {
        "connect-device"
    }
    fn description(&self) -> &'static str {
        "connect to the device's console"
    }
    fn validate(&self, c: &Check<'_>) -> Result<(), String> {
        if c.device.commands.connect.is_none() {
            return Err(format!(
                "device '{}' has no connection command for its console",
                c.device.hostname
            ));
        }
        Ok(())
    }
    async fn run(&self, ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
        run_connect(ctx, node).await
    }
}

async fn run_connect(ctx: &mut Ctx, _node: &ActionNode) -> Result<(), ActionError> {
    if ctx.session.as_ref().is_some_and(|s| !s.is_closed()) {
        return Ok(());
    }
    // A console that dropped (a retry after a failed boot) is opened again.
    ctx.session = None;
    let console = ctx.board.console.as_deref().ok_or_else(|| {
        ActionError::job(format!(
            "device '{}' has no connection command",
            ctx.device.hostname
        ))
    })?;
    // a telnet console (ser2net) is up when `connect` returns, so nothing the board prints
    // right after a power cycle is lost; a command console runs confined (the board was
    // opened with the job's policy)
    let stream = console.connect().await?;
    let what = console.describe();
    ctx.log.info(format!("connected to the console: {what}"));
    ctx.session = Some(open_session(&ctx.log, stream, &what));
    Ok(())
}

action! {
    /// `pdu-reboot`: power-cycle the device with its hard reset command.
    pub struct PduReboot = "pdu-reboot", "power-cycle the device with its hard reset command";
    run(ctx, _node) {
        ctx.power()?.reset().await?;
        ctx.log.info("device reset");
        Ok(())
    }
}

/// `pre-power-command` / `pre-os-command`: the device's commands run on the worker.
#[derive(Debug)]
pub enum DeviceCommand {
    PrePower,
    PreOs,
}

#[async_trait::async_trait]
impl Action for DeviceCommand {
    fn name(&self) -> &'static str {
        match self {
            DeviceCommand::PrePower => "pre-power-command",
            DeviceCommand::PreOs => "pre-os-command",
        }
    }
    fn description(&self) -> &'static str {
        match self {
            DeviceCommand::PrePower => "run the device's pre-power command",
            DeviceCommand::PreOs => "run the device's pre-OS command",
        }
    }
    async fn run(&self, ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
        let cmds = match self {
            DeviceCommand::PrePower => ctx.device.commands.pre_power.clone(),
            DeviceCommand::PreOs => ctx.device.commands.pre_os.clone(),
        };
        for cmd in cmds {
            basalt_hal::power::command::run_shell(
                &cmd,
                std::time::Duration::from_secs(node.timeout),
            )
            .await
            .map_err(|e| ActionError::infra(format!("{cmd}: {e}")).with_source(e))?;
        }
        Ok(())
    }
}
