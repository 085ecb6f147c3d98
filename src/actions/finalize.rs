//! `finalize`: the last action of every job — power the device off and read what is left.

use crate::pipeline::build::{Builder, Scope};
use crate::pipeline::{ActionKind, ActionNode};

pub(crate) fn pipeline(b: &Builder<'_>, s: &Scope<'_>) -> ActionNode {
    let mut f = b.node(s, None, ActionKind::Finalize);
    b.child(s, &mut f, ActionKind::PowerOff);
    b.child(s, &mut f, ActionKind::ReadFeedback);
    f
}

// ---- running -------------------------------------------------------------------------------

use crate::run::{ActionError, Ctx};
use basalt_hal::power::command::{CommandPower, PowerCommands};
use basalt_hal::power::Power;

/// The device's power commands as a [`Power`] backend.
pub fn device_power(ctx: &Ctx) -> CommandPower {
    let c = &ctx.device.commands;
    CommandPower::new(
        ctx.device.hostname.clone(),
        PowerCommands {
            on: c.power_on.clone(),
            off: c.power_off.clone(),
            reset: c.hard_reset.clone(),
        },
    )
}

/// `power-off`: stop QEMU, or run the device's power-off command.
pub(crate) async fn run_power_off(ctx: &mut Ctx) -> Result<(), ActionError> {
    ctx.session = None;
    if let Some(mut q) = ctx.emulator.take() {
        ctx.log
            .info(format!("stopping QEMU (pid {})", q.pid().unwrap_or(0)));
        q.kill()
            .await
            .map_err(|e| ActionError::infra(e.to_string()))?;
        return Ok(());
    }
    if ctx.device.commands.power_off.is_empty() {
        ctx.log.debug("the device has no power-off command");
        return Ok(());
    }
    device_power(ctx).off().await?;
    ctx.log.info("device powered off");
    Ok(())
}

/// Stops whatever the job still holds (after finalize, or when finalize itself failed).
pub(crate) async fn release_all(ctx: &mut Ctx) {
    ctx.session = None;
    if let Some(mut q) = ctx.emulator.take() {
        let _ = q.kill().await;
    }
}
