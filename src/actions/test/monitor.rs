//! `lava-test-monitor`: no shell, no overlay — watch the raw console output between a start
//! and an end string and turn the lines that match the pattern into results.

use crate::action::context::literal;
use crate::action::{action, ActionError, ActionNode, Builder, Ctx, PipelineError, Scope};
use crate::job::{ActionBlock, Test, TestKind};

/// `lava-test-monitor-retry` around `lava-test-monitor`.
pub(crate) fn pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    _t: &Test,
) -> Result<ActionNode, PipelineError> {
    Ok(super::retried(
        b,
        s,
        "lava-test-monitor-retry",
        "watch the console for test output, retrying on failure",
        TestMonitor,
    ))
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

#[cfg(test)]
mod tests {
    use crate::run::testing::{fixture, run_tree};
    use crate::yaml::Node;
    use basalt_hal::console::fake::{FakeConsole, Step};
    use basalt_hal::power::fake::FakePower;

    const JOB: &str = r"
device_type: beaglebone-black
job_name: monitors over fakes
timeouts: {job: {minutes: 2}, action: {seconds: 20}}
priority: medium
visibility: public
actions:
- boot:
    method: minimal
- test:
    timeout: {minutes: 1}
    monitors:
    - name: kernel-log
      start: Booting Linux
      end: Run /init
      pattern: '(?P<test_case_id>Freeing unused kernel memory): (?P<result>\d+)K'
      fixupdict:
        '6464': pass
";

    /// A monitor on the raw boot log: between its start and end strings, the lines matching
    /// its pattern become results (through the fixup dictionary).
    #[tokio::test]
    async fn monitors_watch_the_boot_log() {
        let mut f = fixture("bbb-01", JOB, Vec::new());
        f.ctx.board.console = Some(Box::new(FakeConsole::new(vec![
            Step::print("U-Boot 2024.01\r\nStarting kernel ...\r\n"),
            Step::print("[    0.000000] Booting Linux on physical CPU 0x0\r\n"),
            Step::print("[    0.500000] Freeing unused kernel memory: 6464K\r\n"),
            Step::print("[    0.600000] Run /init as init process\r\n"),
        ])));
        f.ctx.board.power = Some(Box::new(FakePower::new()));
        for block in &f.pipeline.actions[..2] {
            run_tree(&mut f.ctx, block)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let results = f.ctx.log.results();
        let found = results.iter().find(|r| {
            r.get("definition").and_then(Node::as_str) == Some("kernel-log")
                && r.get("case").and_then(Node::as_str) == Some("Freeing unused kernel memory")
        });
        assert_eq!(
            found.and_then(|r| r.get("result")).and_then(Node::as_str),
            Some("pass"),
            "{results:?}"
        );
    }
}
