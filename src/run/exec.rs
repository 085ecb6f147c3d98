//! The executor: walks the action tree, enforces timeouts and retries, always finalizes, then
//! cleans up every action that started. It knows actions by their trait only: a node's
//! [`Action::run`], then its children.

use crate::action::{ActionError, ActionNode, Ctx, ErrorType, Pipeline, Section};
use crate::job::timeout::hms;
use crate::yaml::Node;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// The actions that started (without their children), first started first: their cleanup
/// runs at the end.
#[derive(Default)]
pub(super) struct Started(Vec<ActionNode>);

impl Started {
    fn add(&mut self, node: &ActionNode) {
        if !self.0.iter().any(|n| n.level == node.level) {
            self.0.push(node.shallow());
        }
    }
}

type BoxFut<'a> = Pin<Box<dyn Future<Output = Result<(), ActionError>> + Send + 'a>>;

fn fmt_hms(secs: u64) -> String {
    let mut s = String::new();
    let _ = hms(secs, &mut s);
    s
}

/// Runs every action, then `finalize`. Returns the error that ended the job and the failing
/// action (`level name`). With `early` (the job failed before its first action: its board
/// could not be built) only `finalize` runs.
pub(super) async fn run_pipeline(
    ctx: &mut Ctx,
    pipeline: &Pipeline,
    early: Option<ActionError>,
    stream_gone: Option<tokio::sync::oneshot::Receiver<()>>,
) -> (Option<ActionError>, Option<String>) {
    let (error, failed, started) = run_main_part(ctx, pipeline, early, stream_gone).await;
    run_finish(ctx, pipeline, started, error, failed).await
}

/// The actions before `finalize` (or only the early error): what [`run_pipeline`] does first.
/// A held board's boot stops here and leaves the board on; [`run_finish`] comes later.
pub(super) async fn run_main_part(
    ctx: &mut Ctx,
    pipeline: &Pipeline,
    early: Option<ActionError>,
    stream_gone: Option<tokio::sync::oneshot::Receiver<()>>,
) -> (Option<ActionError>, Option<String>, Started) {
    let mut started = Started::default();
    let main = match pipeline.actions.split_last() {
        Some((f, m)) if f.section == Section::Finalize => m,
        _ => pipeline.actions.as_slice(),
    };
    let (error, failed) = if let Some(e) = early {
        ctx.log.error(format!("{e}"));
        (Some(e), None)
    } else {
        // SIGINT / SIGTERM / SIGHUP cancel the job; finalize still runs and cleans up. A
        // failed write of the log or the results (disk full, read-only) ends the job at once:
        // it would run blind.
        let log = ctx.log.clone();
        let main_actions = async {
            if let Err(e) = multinode_set_up(ctx).await {
                ctx.log.error(format!("{e}"));
                return (Some(e), Some("lava-multinode set-up".to_string()));
            }
            run_main(ctx, main, &mut started).await
        };
        tokio::select! {
            r = main_actions => r,
            sig = cancelled() => (
                Some(ActionError::canceled(format!("job canceled ({sig})"))),
                None,
            ),
            e = log.write_failed() => (Some(ActionError::infra(e)), None),
            _ = gone(stream_gone) => (
                Some(ActionError::canceled(
                    "job canceled: the worker that runs it is gone (its log stream closed)",
                )),
                None,
            ),
        }
    };
    if error
        .as_ref()
        .is_some_and(|e| e.kind == ErrorType::Canceled)
    {
        ctx.log.error("job canceled by a signal: finalizing");
    }
    (error, failed, started)
}

/// `finalize` (power off), then the cleanup of every action that started: what
/// [`run_pipeline`] does after [`run_main_part`]. Returns the job's error and failing action.
pub(super) async fn run_finish(
    ctx: &mut Ctx,
    pipeline: &Pipeline,
    mut started: Started,
    mut error: Option<ActionError>,
    mut failed: Option<String>,
) -> (Option<ActionError>, Option<String>) {
    let finalize = pipeline
        .actions
        .last()
        .filter(|f| f.section == Section::Finalize);
    if let Some(f) = finalize {
        if let Err(e) = run_node(ctx, f, &mut started).await {
            if error.is_none() {
                failed = Some(format!("{} {}", f.level, f.name()));
                error = Some(e);
            }
        }
    }
    // Every action that started releases what it holds, last started first; whatever is
    // left is stopped here: nothing outlives the job.
    for node in started.0.iter().rev() {
        node.action.cleanup(ctx, node).await;
    }
    ctx.release_all().await;
    (error, failed)
}

/// A MultiNode sub-job's start (LAVA's `MultinodeProtocol.set_up`): the group's data, then a
/// delayed start's wait for `lava_start`.
async fn multinode_set_up(ctx: &mut Ctx) -> Result<(), ActionError> {
    use crate::protocols::multinode::CoordinatorError;
    let Some(mn) = &mut ctx.multinode else {
        return Ok(());
    };
    let roles = mn.set_up(&ctx.log).await.map_err(|e| match e {
        CoordinatorError::Timeout => ActionError::timeout(format!(
            "lava-multinode: the group did not start in time ({e})"
        )),
        CoordinatorError::Nack => ActionError::infra(format!("lava-multinode set-up: {e}")),
        CoordinatorError::Io(_) => ActionError::infra(format!("lava-multinode set-up: {e}")),
    })?;
    // the scheduler injects the roles; a job run without them takes the coordinator's
    if mn.facts.roles.is_empty() {
        mn.facts.roles = roles;
    }
    Ok(())
}

/// The protocol calls the block of `node` asks this action to make at its start (LAVA's
/// `Action.call_protocols`, lava-formats.md §4.5): `protocols: {lava-multinode: [{action,
/// request, messageID, message, timeout}]}`. The values a wait's `message` asks for with
/// `$NAME` are kept as the job's `lava-multinode` data under the message id.
async fn call_protocols(ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
    use crate::protocols::multinode::{collate, ApiCall, CoordinatorError, Message};
    let Some(calls) = node
        .block
        .and_then(|b| ctx.job.actions.get(b))
        .and_then(|a| a.common().protocols.as_ref())
        .and_then(|p| p.get("lava-multinode"))
        .and_then(Node::as_seq)
    else {
        return Ok(());
    };
    let name = node.name();
    let calls: Vec<Node> = calls
        .iter()
        .filter(|c| c.get("action").and_then(Node::as_str) == Some(name))
        .cloned()
        .collect();
    if calls.is_empty() {
        return Ok(());
    }
    let Some(mn) = &mut ctx.multinode else {
        return Err(ActionError::job(format!(
            "{name}: lava-multinode protocol calls in a job that is not a MultiNode sub-job"
        )));
    };
    for c in &calls {
        let id = c
            .get("messageID")
            .and_then(Node::scalar_text)
            .ok_or_else(|| ActionError::job(format!("{name}: protocol call without messageID")))?;
        let message: Message = c
            .get("message")
            .and_then(Node::as_map)
            .unwrap_or(&[])
            .iter()
            .filter_map(|(k, v)| Some((k.scalar_text()?, v.scalar_text().unwrap_or_default())))
            .collect();
        let request = c.get("request").and_then(Node::as_str).unwrap_or("");
        let call = match request {
            "lava-send" => ApiCall::Send {
                id: id.clone(),
                message: message.clone(),
            },
            "lava-wait" => ApiCall::Wait { id: id.clone() },
            "lava-wait-all" => ApiCall::WaitAll {
                id: id.clone(),
                role: c.get("role").and_then(Node::scalar_text),
            },
            "lava-sync" => ApiCall::Sync { id: id.clone() },
            other => {
                return Err(ActionError::job(format!(
                    "{name}: unsupported lava-multinode request '{other}'"
                )))
            }
        };
        let timeout = c
            .get("timeout")
            .map(duration_of)
            .filter(|d| !d.is_zero())
            .unwrap_or(mn.facts.timeout);
        ctx.log.info(format!(
            "Making protocol call for {name} using lava-multinode: {request} {id}"
        ));
        let replies = mn
            .call(&ctx.log, &call, timeout)
            .await
            .map_err(|e| match e {
                CoordinatorError::Timeout => {
                    ActionError::timeout(format!("{name}: lava-multinode {request} '{id}': {e}"))
                }
                _ => ActionError::infra(format!("{name}: lava-multinode {request} '{id}': {e}")),
            })?;
        let values = collate(&message, &replies);
        if !values.is_empty() {
            ctx.log
                .info(format!("Setting namespace data key {id} to {values:?}"));
            mn.data.insert(id, values);
        }
    }
    Ok(())
}

/// A LAVA timeout mapping (`{minutes: 5}`) as a duration.
fn duration_of(n: &Node) -> Duration {
    let secs: i64 = [
        ("days", 86_400),
        ("hours", 3_600),
        ("minutes", 60),
        ("seconds", 1),
    ]
    .iter()
    .filter_map(|(k, m)| n.get(k).and_then(Node::as_i64).map(|v| v.max(0) * m))
    .sum();
    Duration::from_secs(secs.max(0) as u64)
}

/// The actions before `finalize`; stops at the first failure.
async fn run_main(
    ctx: &mut Ctx,
    main: &[ActionNode],
    started: &mut Started,
) -> (Option<ActionError>, Option<String>) {
    for node in main {
        if Instant::now() >= ctx.job_deadline {
            return (
                Some(ActionError::timeout("the job timeout expired").at(&node.level, node.name())),
                Some(format!("{} {}", node.level, node.name())),
            );
        }
        match run_node(ctx, node, started).await {
            Ok(()) => {}
            Err(e) if e.kind == ErrorType::Timeout && node.skip_on_timeout => {
                ctx.log.warning(format!(
                    "{} {} timed out; 'skip: true' moves on to the next action",
                    node.level,
                    node.name()
                ));
            }
            Err(e) => return (Some(e), Some(format!("{} {}", node.level, node.name()))),
        }
    }
    (None, None)
}

/// Resolves when `rx` fires; never without one.
async fn gone(rx: Option<tokio::sync::oneshot::Receiver<()>>) {
    match rx {
        Some(rx) => {
            if rx.await.is_err() {
                std::future::pending::<()>().await
            }
        }
        None => std::future::pending().await,
    }
}

/// Resolves when the process gets SIGINT, SIGTERM or SIGHUP (never, if the handlers cannot be
/// set). SIGHUP (the terminal or the session went away) cancels like SIGTERM: basalt must not
/// die and leave the board running.
async fn cancelled() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(mut int), Ok(mut term), Ok(mut hup)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
            _ = hup.recv() => "SIGHUP",
        },
        _ => std::future::pending().await,
    }
}

/// Runs one action (its own work, then its children) with its timeout and retries, logging
/// its start and end. An error leaves marked with the innermost action that failed.
fn run_node<'a>(ctx: &'a mut Ctx, node: &'a ActionNode, ran: &'a mut Started) -> BoxFut<'a> {
    Box::pin(async move {
        let top = !node.level.contains('.');
        let say = |ctx: &Ctx, text: String| {
            if top {
                ctx.log.info(text)
            } else {
                ctx.log.debug(text)
            }
        };
        say(
            ctx,
            format!(
                "start: {} {} (timeout {}) [{}]",
                node.level,
                node.name(),
                fmt_hms(node.timeout),
                node.namespace
            ),
        );
        let started = Instant::now();
        let mut deadline = started + Duration::from_secs(node.timeout);
        if node.section != Section::Finalize && ctx.job_deadline < deadline {
            deadline = ctx.job_deadline;
        }
        let attempts = node.max_retries.max(1);
        let mut result = Ok(());
        for attempt in 1..=attempts {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let work = async {
                ran.add(node);
                call_protocols(ctx, node).await?;
                node.action.run(ctx, node).await?;
                for child in &node.children {
                    run_node(ctx, child, ran).await?;
                }
                Ok(())
            };
            let r = match tokio::time::timeout(remaining, work).await {
                Ok(r) => r,
                Err(_)
                    if ctx.job_deadline <= Instant::now() && node.section != Section::Finalize =>
                {
                    Err(ActionError::timeout(format!(
                        "{} {}: the job timeout expired",
                        node.level,
                        node.name()
                    )))
                }
                Err(_) => Err(ActionError::timeout(format!(
                    "{} {} timed out after {} s",
                    node.level,
                    node.name(),
                    started.elapsed().as_secs()
                ))),
            };
            result = r.map_err(|e: ActionError| e.at(&node.level, node.name()));
            match &result {
                Ok(()) if node.repeat && attempt < attempts => {
                    ctx.log.info(format!(
                        "{} {}: repeat {}/{attempts} done",
                        node.level,
                        node.name(),
                        attempt
                    ));
                }
                Ok(()) => break,
                Err(e) => {
                    ctx.log
                        .error(format!("{} {} failed: {e}", node.level, node.name()));
                    if node.repeat || attempt == attempts || Instant::now() >= deadline {
                        break;
                    }
                    ctx.log.warning(format!(
                        "{} {}: retrying ({} of {attempts} attempts)",
                        node.level,
                        node.name(),
                        attempt + 1
                    ));
                    let interval = node
                        .block
                        .and_then(|b| ctx.job.actions.get(b))
                        .and_then(|a| a.common().failure_retry_interval)
                        .unwrap_or(1);
                    let pause = Duration::from_secs(u64::from(interval))
                        .min(deadline.saturating_duration_since(Instant::now()));
                    tokio::time::sleep(pause).await;
                }
            }
        }
        let took = started.elapsed();
        // what the action logged reaches the disk (a write error shows now, not at the end)
        let _ = ctx.log.flush();
        say(
            ctx,
            format!(
                "end: {} {} (duration {}) [{}]",
                node.level,
                node.name(),
                fmt_hms(took.as_secs()),
                node.namespace
            ),
        );
        if top && node.section != Section::Finalize {
            let mut fields = vec![
                ("definition", Node::str("lava")),
                ("namespace", Node::str(node.namespace.clone())),
                ("case", Node::str(node.name())),
                ("level", Node::str(node.level.clone())),
                ("duration", Node::str(format!("{:.2}", took.as_secs_f64()))),
                (
                    "result",
                    Node::str(if result.is_ok() { "pass" } else { "fail" }),
                ),
            ];
            if let Err(e) = &result {
                fields.push(("cause", Node::str(e.cause().name())));
            }
            ctx.log.result(fields);
        }
        result
    })
}
