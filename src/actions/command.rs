//! `command:` blocks: `user-command` runs a command of the device dictionary's
//! `commands.users.<name>` on the worker (and its `undo` at cleanup).

use crate::job::Command;
use crate::pipeline::build::{Builder, PipelineError, Scope};
use crate::pipeline::{ActionKind, ActionNode};

pub(crate) fn pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    _c: &Command,
) -> Result<ActionNode, PipelineError> {
    Ok(b.node(s, None, ActionKind::UserCommand))
}

/// `user-command`: run the device's `commands.users.<name>.do` on the worker (an admin's
/// command from the device dictionary, run by `sh -c`; the job only names it).
pub(crate) async fn run(
    ctx: &mut crate::run::Ctx,
    node: &ActionNode,
) -> Result<(), crate::run::ActionError> {
    use crate::job::ActionBlock;
    use crate::run::ActionError;
    let Some(ActionBlock::Command(c)) = node.block.and_then(|b| ctx.job.actions.get(b)) else {
        return Err(ActionError::bug("user-command outside a command block"));
    };
    let name = c.name.clone();
    let Some((_, cmd, _)) = ctx
        .device
        .commands
        .users
        .iter()
        .find(|(n, _, _)| *n == name)
        .cloned()
    else {
        return Err(ActionError::job(format!(
            "device '{}' has no user command '{name}'",
            ctx.device.hostname
        )));
    };
    ctx.log.info(format!("running user command {name}: {cmd}"));
    let out =
        basalt_hal::power::command::run_shell(&cmd, std::time::Duration::from_secs(node.timeout))
            .await
            .map_err(|e| ActionError::infra(format!("user command {name}: {e}")))?;
    for line in out.stdout.lines() {
        ctx.log.debug(line.to_string());
    }
    Ok(())
}
