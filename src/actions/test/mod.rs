//! `test:` blocks: test definitions run by `lava-test-shell`, `interactive` scripts and
//! `monitors` of raw console output.

pub mod interactive;
pub mod monitor;
pub mod shell;

use crate::job::{Test, TestKind};
use crate::pipeline::build::{Builder, PipelineError, Scope};
use crate::pipeline::{ActionKind, ActionNode};

pub(crate) fn pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    t: &Test,
) -> Result<ActionNode, PipelineError> {
    let (outer, inner) = match &t.kind {
        TestKind::Definitions(_) if b.is_multinode() => {
            return Ok(b.node(s, None, ActionKind::MultinodeTest))
        }
        TestKind::Definitions(_) => (ActionKind::TestShellRetry, ActionKind::TestShell),
        TestKind::Interactive(_) => (
            ActionKind::TestInteractiveRetry,
            ActionKind::TestInteractive,
        ),
        TestKind::Monitors(_) => (ActionKind::TestMonitorRetry, ActionKind::TestMonitor),
        TestKind::Other(kind) => {
            return Err(s.error(
                b,
                format!("'{kind}' test blocks are outside basalt's scope"),
            ));
        }
    };
    let mut node = b.node(s, None, outer);
    b.child(s, &mut node, inner);
    Ok(node)
}
