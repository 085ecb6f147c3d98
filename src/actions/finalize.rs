//! `finalize`: the last action of every job — power the device off and read what is left.

use crate::action::{group, Action, ActionError, ActionNode, Builder, Ctx, Nothing, Scope};
use basalt_hal::power::PowerError;

pub(crate) fn pipeline(b: &Builder<'_>, s: &Scope<'_>) -> ActionNode {
    let mut f = b.node(s, None, group("finalize", "power off and clean up"));
    b.child(s, &mut f, PowerOff);
    b.child(
        s,
        &mut f,
        Nothing {
            name: "read-feedback",
            description: "read what is left on other connections",
        },
    );
    f
}

/// `power-off`: stop QEMU, or switch the board off with its power backend.
#[derive(Debug)]
pub struct PowerOff;

#[async_trait::async_trait]
impl Action for PowerOff {
    fn name(&self) -> &'static str {
        "power-off"
    }
    fn description(&self) -> &'static str {
        "power the device off"
    }
    async fn run(&self, ctx: &mut Ctx, _node: &ActionNode) -> Result<(), ActionError> {
        ctx.session = None;
        if let Some(e) = ctx.emulator.as_mut().filter(|e| e.running()) {
            ctx.log.info(format!("stopping {}", e.describe()));
            e.stop()
                .await
                .map_err(|e| ActionError::infra(e.to_string()).with_source(e))?;
            return Ok(());
        }
        let Some(power) = ctx.board.power.as_deref() else {
            ctx.log.debug("the device has no power control");
            return Ok(());
        };
        match power.off().await {
            Ok(()) => {
                ctx.log.info("device powered off");
                Ok(())
            }
            Err(PowerError::NotConfigured { .. }) => {
                ctx.log.debug("the device has no power-off command");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}
