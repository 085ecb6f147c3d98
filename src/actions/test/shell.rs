//! `lava-test-shell`: start lava-test-runner for the block's stage on the device and turn the
//! signals it prints into results, until `<LAVA_TEST_RUNNER EXIT>`.

use crate::action::context::{literal, pattern};
use crate::action::{action, ActionError, ActionNode, Builder, Ctx};
use crate::action::{PipelineError, Scope, TestRun};
use crate::job::{ActionBlock, Test, TestKind};

/// Test definitions: `lava-test-retry` around `lava-test-shell`; in a MultiNode job,
/// `multinode-test`.
pub(crate) fn pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    _t: &Test,
) -> Result<ActionNode, PipelineError> {
    if b.is_multinode() {
        return Ok(b.node(s, None, super::multinode::MultinodeTest));
    }
    Ok(super::retried(
        b,
        s,
        "lava-test-retry",
        "run test definitions, retrying on failure",
        TestShell,
    ))
}

action! {
    /// `lava-test-shell`: the test runner of the block's stage, its signals as results.
    pub struct TestShell = "lava-test-shell", "run the test runner and collect results from the console";
    run(ctx, node) { run(ctx, node, false).await }
}

use crate::testshell::signals::{self, Signal, TestResult};
use crate::yaml::{Node, Value};
use basalt_hal::console::expect::Regex;
use std::time::{Duration, Instant};

/// The test definition running now.
struct Current {
    run: TestRun,
    started: Instant,
    seen: Vec<String>,
    parse: Option<Regex>,
    fixup: Vec<(String, String)>,
}

fn default_fixup() -> Vec<(String, String)> {
    [
        ("PASS", "pass"),
        ("FAIL", "fail"),
        ("SKIP", "skip"),
        ("UNKNOWN", "unknown"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect()
}

fn fix(result: &str, fixup: &[(String, String)]) -> String {
    fixup
        .iter()
        .find(|(k, _)| k == result)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| result.to_string())
}

/// Runs the test stage of the block; with `multinode`, also answers the MultiNode API calls the
/// helpers print (`multinode-test`).
pub(super) async fn run(
    ctx: &mut Ctx,
    node: &ActionNode,
    multinode: bool,
) -> Result<(), ActionError> {
    let block = node
        .block
        .ok_or_else(|| ActionError::bug("test shell outside a test block"))?;
    let (prompts, ndefs) = {
        let prompts: Vec<String> = ctx
            .job
            .actions
            .iter()
            .take(block)
            .rev()
            .find_map(|a| match a {
                ActionBlock::Boot(b) if !b.prompts.is_empty() => Some(b.prompts.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let n = match ctx.job.actions.get(block) {
            Some(ActionBlock::Test(t)) => match &t.kind {
                TestKind::Definitions(d) => d.len(),
                _ => 0,
            },
            _ => 0,
        };
        (prompts, n)
    };
    let runs: Vec<TestRun> = (0..ndefs)
        .filter_map(|d| ctx.test_runs.get(&(block, d)).cloned())
        .collect();
    let Some(stage) = runs.first().map(|r| r.stage) else {
        return Err(ActionError::job(
            "no test definition of this block reached the overlay (was there a deploy before it?)",
        ));
    };
    let results_dir = ctx.results_dir();
    let delay = Duration::from_millis(ctx.device.character_delays.test_ms);
    let prompt_pats: Vec<Regex> = if prompts.is_empty() {
        vec![pattern("[#$] $")]
    } else {
        prompts.iter().map(|p| pattern(p)).collect()
    };
    let step = Duration::from_secs(node.timeout);
    let sh = ctx.sh_cmd();
    for cmd in [
        format!("export SHELL={sh}"),
        format!(". {results_dir}/environment"),
    ] {
        ctx.session()?.send_line(&cmd, delay).await?;
        ctx.session()?.expect(&prompt_pats, step).await?;
    }
    ctx.session()?
        .send_line(
            &format!("{results_dir}/bin/lava-test-runner {results_dir}/{stage}"),
            delay,
        )
        .await?;

    let exit = literal(signals::RUNNER_EXIT);
    let install_fail = literal(signals::RUNNER_INSTALL_FAIL);
    let signal = pattern(signals::SIGNAL_PATTERN);
    let api = multinode.then(|| pattern(super::multinode::API_PATTERN));
    let mut current: Option<Current> = None;
    let mut set: Option<String> = None;
    let mut starttc: Option<u64> = None;
    let mut install_failed = false;
    loop {
        let mut pats = vec![exit.clone(), install_fail.clone(), signal.clone()];
        pats.extend(api.clone());
        if let Some(p) = current.as_ref().and_then(|c| c.parse.clone()) {
            pats.push(p);
        }
        let m = ctx
            .session()?
            .expect(&pats, step)
            .await
            .map_err(|e| ActionError::expect("lava-test-shell", e))?;
        match m.index {
            0 => break,
            1 => {
                install_failed = true;
                ctx.log.error(format!(
                    "install.sh of a test definition failed: unable to start test stage {stage}"
                ));
            }
            2 => {
                let (name, params) = (m.group(1).unwrap_or(""), m.group(2).unwrap_or(""));
                let sig =
                    signals::parse(name, params).map_err(|e| ActionError::test(e.to_string()))?;
                handle(ctx, sig, &runs, &mut current, &mut set, &mut starttc)?;
            }
            3 if api.is_some() => {
                let (name, params) = (
                    m.group(1).unwrap_or("").to_string(),
                    m.group(2).unwrap_or("").to_string(),
                );
                let def = current.as_ref().map(|c| c.run.id.clone());
                super::multinode::api_call(ctx, node, &name, &params, def.as_deref()).await?;
            }
            _ => {
                let Some(c) = current.as_mut() else { continue };
                let id = m.name("test_case_id").unwrap_or("").trim().to_string();
                let raw = m.name("result").unwrap_or("").to_string();
                if id.is_empty() || id.contains(char::is_whitespace) {
                    continue;
                }
                let result = fix(&raw, &c.fixup);
                if TestResult::parse(&result).is_none() {
                    ctx.log.warning(format!(
                        "pattern result '{raw}' for {id} is not pass/fail/skip/unknown; ignored"
                    ));
                    continue;
                }
                let measurement = m.name("measurement").and_then(|s| s.parse::<f64>().ok());
                let fields = super::case_result(
                    &c.run.id,
                    &id,
                    &result,
                    measurement,
                    m.name("units"),
                    set.as_deref(),
                );
                c.seen.push(id);
                ctx.log.result(fields);
            }
        }
    }
    if let Some(c) = current.take() {
        ctx.log.error(format!("{} ended without ENDRUN", c.run.id));
        ctx.log.result(vec![
            ("definition", Node::str("lava")),
            ("case", Node::str(c.run.id.clone())),
            ("uuid", Node::str(c.run.uuid.clone())),
            ("result", Node::str("fail")),
        ]);
    }
    // Wait for the prompt so that the next action starts on a quiet shell.
    let _ = ctx
        .session()?
        .expect(
            &prompt_pats,
            Duration::from_secs(node.connection_timeout.clamp(1, 30)),
        )
        .await;
    if install_failed {
        return Err(ActionError::test(format!(
            "unable to start test stage {stage}: an install step failed"
        )));
    }
    Ok(())
}

fn handle(
    ctx: &mut Ctx,
    sig: Signal,
    runs: &[TestRun],
    current: &mut Option<Current>,
    set: &mut Option<String>,
    starttc: &mut Option<u64>,
) -> Result<(), ActionError> {
    match sig {
        Signal::StartRun { id, uuid } => {
            let run = runs
                .iter()
                .find(|r| r.id == id)
                .cloned()
                .unwrap_or(TestRun {
                    id: id.clone(),
                    uuid: uuid.clone(),
                    ..TestRun::default()
                });
            let (parse, fixup) = match run.testdef.as_ref().and_then(|t| t.parse.as_ref()) {
                Some(p) => {
                    let re = line_pattern(&p.pattern)
                        .map_err(|e| ActionError::test(format!("parse pattern of {id}: {e}")))?;
                    let fixup = if p.fixupdict.is_empty() {
                        default_fixup()
                    } else {
                        p.fixupdict.clone()
                    };
                    (Some(re), fixup)
                }
                None => (None, default_fixup()),
            };
            ctx.log
                .info(format!("Starting test definition {id} ({uuid})"));
            *set = None;
            *current = Some(Current {
                run,
                started: Instant::now(),
                seen: Vec::new(),
                parse,
                fixup,
            });
        }
        Signal::EndRun { id, uuid } => {
            let Some(c) = current.take() else {
                ctx.log.warning(format!("ENDRUN for {id} without STARTRUN"));
                return Ok(());
            };
            let duration = c.started.elapsed().as_secs_f64();
            let mut fields = vec![
                ("definition", Node::str("lava")),
                ("case", Node::str(id.clone())),
                ("uuid", Node::str(uuid)),
                ("repository", Node::str(c.run.repository.clone())),
                ("path", Node::str(c.run.path.clone())),
                ("duration", Node::str(format!("{duration:.2}"))),
                ("result", Node::str("pass")),
                (
                    "revision",
                    Node::str(
                        c.run
                            .revision
                            .clone()
                            .unwrap_or_else(|| "unspecified".into()),
                    ),
                ),
                ("namespace", Node::str("common")),
            ];
            if let Some(commit) = &c.run.commit_id {
                fields.push(("commit_id", Node::str(commit.clone())));
            }
            ctx.log.result(fields);
            let expected: Vec<String> = c
                .run
                .testdef
                .as_ref()
                .map(|t| t.expected.clone())
                .unwrap_or_default();
            for e in expected.iter().filter(|e| !c.seen.contains(e)) {
                ctx.log.result(vec![
                    ("definition", Node::str(id.clone())),
                    ("case", Node::str(e.clone())),
                    ("result", Node::str("fail")),
                ]);
            }
            ctx.log.info(format!(
                "Ending use of test definition {id} ({} cases, {duration:.2} s)",
                c.seen.len()
            ));
        }
        Signal::StartTc(_) => *starttc = Some(ctx.log.line_count()),
        Signal::EndTc(_) => {}
        Signal::TestCase {
            id,
            result,
            measurement,
            units,
        } => {
            let Some(c) = current.as_mut() else {
                ctx.log
                    .warning(format!("test case {id} outside a test definition; ignored"));
                return Ok(());
            };
            let fixed = fix(&result, &c.fixup);
            let res = TestResult::parse(&fixed)
                .ok_or_else(|| ActionError::test(format!("Bad test result: {result}")))?;
            let measurement =
                match measurement {
                    Some(m) => Some(m.parse::<f64>().map_err(|_| {
                        ActionError::test(format!("Invalid measurement {m} for {id}"))
                    })?),
                    None => None,
                };
            let mut fields = super::case_result(
                &c.run.id,
                &id,
                res.as_str(),
                measurement,
                units.as_deref(),
                set.as_deref(),
            );
            if let Some(start) = starttc.take() {
                fields.push(("starttc", Node::new(Value::Int(start as i64))));
                fields.push(("endtc", Node::new(Value::Int(ctx.log.line_count() as i64))));
            }
            c.seen.push(id);
            ctx.log.result(fields);
        }
        Signal::TestSetStart(name) => *set = Some(name),
        Signal::TestSetStop => *set = None,
        Signal::TestRaise(msg) => return Err(ActionError::test(msg)),
        Signal::TestReference { id, result, url } => {
            let def = current
                .as_ref()
                .map(|c| c.run.id.clone())
                .unwrap_or_default();
            let mut fields = vec![
                ("definition", Node::str(def)),
                ("case", Node::str(id)),
                ("result", Node::str(result)),
                ("reference", Node::str(url)),
            ];
            if let Some(s) = set {
                fields.push(("set", Node::str(s.clone())));
            }
            ctx.log.result(fields);
        }
        Signal::TestEvent(msg) => ctx.log.record(crate::log::Level::Event, Node::str(msg)),
        Signal::TestFeedback(ns) => ctx.log.debug(format!(
            "feedback requested from namespace {ns}: nothing to read"
        )),
        Signal::Other { name, params } => ctx
            .log
            .debug(format!("unknown signal {name} {}", params.join(" "))),
    }
    Ok(())
}

/// A test definition's `parse: pattern` as the console is searched with it: it matches only a
/// line that has ended (the pattern, the rest of its line, the line end), so that a line read
/// in two pieces (`pattern-case-a: p` + `ass`) is not taken for a result before it is whole.
pub(crate) fn line_pattern(pattern: &str) -> Result<Regex, regex::Error> {
    regex::bytes::RegexBuilder::new(&format!("(?:{pattern})[^\\r\\n]*(?:\\r\\n|\\r|\\n)"))
        .multi_line(true)
        .build()
}

#[cfg(test)]
mod line_pattern_tests {
    use super::line_pattern;

    #[test]
    fn a_parse_pattern_waits_for_the_end_of_its_line() {
        let re = line_pattern(r"(?P<test_case_id>case-\w+): (?P<result>\w+)").unwrap();
        assert!(re.captures(b"case-a: p").is_none(), "half a line");
        let c = re.captures(b"+ x\r\ncase-a: pass\r\nnext").unwrap();
        assert_eq!(&c["test_case_id"], b"case-a");
        assert_eq!(&c["result"], b"pass");
        // a pattern anchored at the line's end still matches
        let re = line_pattern(r"^(?P<result>ok|fail) (?P<test_case_id>\S+)$").unwrap();
        assert_eq!(&re.captures(b"ok t1\n").unwrap()["test_case_id"], b"t1");
    }
}
