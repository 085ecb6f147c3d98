//! `lava-test-monitor`: no shell, no overlay — watch the raw console output between a start
//! and an end string and turn the lines that match the pattern into results.

use crate::action::context::literal;
use crate::action::{action, retry, ActionError, ActionNode, Builder, Ctx, PipelineError, Scope};
use crate::job::{ActionBlock, Test, TestKind};

/// `lava-test-monitor-retry` around `lava-test-monitor`.
pub(crate) fn pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    _t: &Test,
) -> Result<ActionNode, PipelineError> {
    let mut node = b.node(
        s,
        None,
        retry(
            "lava-test-monitor-retry",
            "watch the console for test output, retrying on failure",
        ),
    );
    b.child(s, &mut node, TestMonitor);
    Ok(node)
}

action! {
    /// `lava-test-monitor`: results from raw console output.
    pub struct TestMonitor = "lava-test-monitor", "collect results from raw console output";
    run(ctx, node) { run(ctx, node).await }
}

use crate::testshell::signals::TestResult;
use std::time::Duration;

/// Runs every monitor of the block, one after the other.
async fn run(ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
    let monitors = match ctx.block(node) {
        Some(ActionBlock::Test(t)) => match &t.kind {
            TestKind::Monitors(m) => m.clone(),
            _ => return Err(ActionError::bug("lava-test-monitor without monitors")),
        },
        _ => return Err(ActionError::bug("lava-test-monitor outside a test block")),
    };
    let timeout = Duration::from_secs(node.timeout);
    for mon in &monitors {
        let pattern = regex::bytes::RegexBuilder::new(&mon.pattern)
            .multi_line(true)
            .build()
            .map_err(|e| ActionError::job(format!("monitor '{}': {e}", mon.name)))?;
        let start = literal(&mon.start);
        let end = literal(&mon.end);
        let wait =
            |e, what: &str| ActionError::expect(&format!("monitor '{}': {what}", mon.name), e);
        ctx.session()?
            .expect(std::slice::from_ref(&start), timeout)
            .await
            .map_err(|e| wait(e, "start"))?;
        ctx.log.info(format!("monitor '{}' started", mon.name));
        loop {
            let m = ctx
                .session()?
                .expect(&[end.clone(), pattern.clone()], timeout)
                .await
                .map_err(|e| wait(e, "end"))?;
            if m.index == 0 {
                break;
            }
            let id = m.name("test_case_id").unwrap_or("").trim().to_string();
            let raw = m.name("result").unwrap_or("").to_string();
            let fixed = mon
                .fixupdict
                .iter()
                .find(|(k, _)| *k == raw)
                .map(|(_, v)| v.clone())
                .unwrap_or(raw);
            let Some(result) = TestResult::parse(&fixed) else {
                ctx.log.warning(format!(
                    "monitor '{}': result '{fixed}' for {id} ignored",
                    mon.name
                ));
                continue;
            };
            if id.is_empty() {
                continue;
            }
            let measurement = m.name("measurement").and_then(|s| s.parse::<f64>().ok());
            let fields = super::case_result(
                &mon.name,
                &id,
                result.as_str(),
                measurement,
                m.name("units"),
                None,
            );
            ctx.log.result(fields);
        }
    }
    Ok(())
}
