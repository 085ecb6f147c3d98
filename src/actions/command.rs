//! `command:` blocks: `user-command` runs a command of the device dictionary's
//! `commands.users.<name>` on the worker, and its `undo` at the end of the job (as LAVA's
//! cleanup does), whatever happened.

use crate::action::{Action, ActionError, ActionNode, Builder, Check, Ctx, PipelineError, Scope};
use crate::job::{ActionBlock, Command};

pub(crate) fn pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    _c: &Command,
) -> Result<ActionNode, PipelineError> {
    Ok(b.node(s, None, UserCommand))
}

/// `user-command`: run the device's `commands.users.<name>.do` on the worker (an admin's
/// command from the device dictionary, run by `sh -c`; the job only names it).
#[derive(Debug)]
pub struct UserCommand;

#[async_trait::async_trait]
impl Action for UserCommand {
    fn name(&self) -> &'static str {
        "user-command"
    }
    fn description(&self) -> &'static str {
        "run a command of the device dictionary on the worker"
    }
    fn validate(&self, c: &Check<'_>) -> Result<(), String> {
        let Some(ActionBlock::Command(cmd)) = c.node.block.and_then(|b| c.job.actions.get(b))
        else {
            return Ok(());
        };
        let users = &c.device.commands.users;
        if users.iter().any(|(n, _, _)| *n == cmd.name) {
            return Ok(());
        }
        let known: Vec<&str> = users.iter().map(|(n, _, _)| n.as_str()).collect();
        let known = if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        };
        Err(format!(
            "device '{}' has no user command '{}' (it has: {known})",
            c.device.hostname, cmd.name
        ))
    }
    async fn run(&self, ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
        let Some(ActionBlock::Command(c)) = ctx.block(node) else {
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
        let out = basalt_hal::power::command::run_shell(
            &cmd,
            std::time::Duration::from_secs(node.timeout),
        )
        .await
        .map_err(|e| ActionError::infra(format!("user command {name}: {e}")).with_source(e))?;
        for line in out.stdout.lines() {
            ctx.log.debug(line.to_string());
        }
        Ok(())
    }
    async fn cleanup(&self, ctx: &mut Ctx, node: &ActionNode) {
        let Some(ActionBlock::Command(c)) = ctx.block(node) else {
            return;
        };
        let name = c.name.clone();
        let undo = ctx
            .device
            .commands
            .users
            .iter()
            .find(|(n, _, _)| *n == name)
            .and_then(|(_, _, undo)| undo.clone());
        let Some(undo) = undo else {
            return;
        };
        ctx.log.info(format!("undoing user command {name}: {undo}"));
        let timeout = std::time::Duration::from_secs(node.timeout);
        match basalt_hal::power::command::run_shell(&undo, timeout).await {
            Ok(out) => {
                for line in out.stdout.lines() {
                    ctx.log.debug(line.to_string());
                }
            }
            Err(e) => ctx
                .log
                .warning(format!("undo of user command {name} failed: {e}")),
        }
    }
}
