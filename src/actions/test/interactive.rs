//! `lava-test-interactive`: scripts of commands sent at a prompt (a bootloader's or a shell's),
//! each checked against success and failure messages; a result per named step.

use crate::action::context::literal;
use crate::action::{action, ActionError, ActionNode, Builder, Ctx, PipelineError, Scope};
use crate::job::{ActionBlock, Test, TestKind};

/// `lava-test-interactive-retry` around `lava-test-interactive`.
pub(crate) fn pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    _t: &Test,
) -> Result<ActionNode, PipelineError> {
    Ok(super::retried(
        b,
        s,
        "lava-test-interactive-retry",
        "run interactive scripts, retrying on failure",
        TestInteractive,
    ))
}

action! {
    /// `lava-test-interactive`: commands at a prompt, checked against their messages.
    pub struct TestInteractive = "lava-test-interactive", "send commands and check the answers";
    run(ctx, node) { run(ctx, node).await }
}

use crate::yaml::Node;
use std::time::Duration;

fn failure_error(exception: &str, text: String) -> ActionError {
    match exception {
        "InfrastructureError" => ActionError::infra(text),
        "JobError" => ActionError::job(text),
        _ => ActionError::test(text),
    }
}

/// Runs every interactive script of the block.
async fn run(ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
    let scripts = match ctx.block(node) {
        Some(ActionBlock::Test(t)) => match &t.kind {
            TestKind::Interactive(s) => s.clone(),
            _ => {
                return Err(ActionError::bug(
                    "lava-test-interactive without interactive scripts",
                ))
            }
        },
        _ => {
            return Err(ActionError::bug(
                "lava-test-interactive outside a test block",
            ))
        }
    };
    let delay = Duration::from_millis(ctx.device.character_delays.test_ms);
    let timeout = Duration::from_secs(node.timeout);
    for script in &scripts {
        let prompts: Vec<_> = script.prompts.iter().map(|p| literal(p)).collect();
        ctx.log
            .info(format!("interactive script '{}'", script.name));
        for step in &script.script {
            if let Some(cmd) = &step.command {
                ctx.session()?.send_line(cmd, delay).await?;
            }
            if let Some(d) = step.delay {
                tokio::time::sleep(Duration::from_secs(d)).await;
            }
            let mut result = "pass";
            if !step.successes.is_empty() || !step.failures.is_empty() {
                let mut pats: Vec<_> = step.successes.iter().map(|m| literal(m)).collect();
                pats.extend(step.failures.iter().map(|f| literal(&f.message)));
                let what = format!("interactive '{}'", script.name);
                let m = ctx
                    .session()?
                    .expect(&pats, timeout)
                    .await
                    .map_err(|e| ActionError::expect(&what, e))?;
                if m.index >= step.successes.len() {
                    let f = &step.failures[m.index - step.successes.len()];
                    result = "fail";
                    if let Some(exc) = &f.exception {
                        if let Some(name) = &step.name {
                            log_result(ctx, &script.name, name, result);
                        }
                        let text = f
                            .error
                            .clone()
                            .unwrap_or_else(|| format!("'{}' matched", f.message));
                        return Err(failure_error(exc, text));
                    }
                }
            }
            if step.wait_for_prompt && !prompts.is_empty() {
                let what = format!("interactive '{}'", script.name);
                ctx.session()?
                    .expect(&prompts, timeout)
                    .await
                    .map_err(|e| ActionError::expect(&what, e))?;
            }
            if let Some(name) = &step.name {
                log_result(ctx, &script.name, name, result);
            }
        }
    }
    Ok(())
}

fn log_result(ctx: &Ctx, definition: &str, case: &str, result: &str) {
    ctx.log.result(vec![
        ("definition", Node::str(definition)),
        ("case", Node::str(case)),
        ("result", Node::str(result)),
    ]);
}
