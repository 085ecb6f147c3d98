//! `test:` blocks: test definitions run by `lava-test-shell`, `interactive` scripts and
//! `monitors` of raw console output.

pub mod interactive;
pub mod monitor;
pub mod shell;

use crate::job::{Test, TestKind};
use crate::pipeline::build::{Builder, PipelineError, Scope};
use crate::pipeline::{ActionKind, ActionNode};
use crate::yaml::{Node, Value};

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

/// A test case result record: `{definition, case, result, [measurement], [units], [set]}`.
pub(crate) fn case_result(
    definition: &str,
    case: &str,
    result: &str,
    measurement: Option<f64>,
    units: Option<&str>,
    set: Option<&str>,
) -> Vec<(&'static str, Node)> {
    let mut fields = vec![
        ("definition", Node::str(definition)),
        ("case", Node::str(case)),
        ("result", Node::str(result)),
    ];
    if let Some(v) = measurement {
        fields.push(("measurement", Node::new(Value::Float(v))));
    }
    if let Some(u) = units {
        fields.push(("units", Node::str(u)));
    }
    if let Some(s) = set {
        fields.push(("set", Node::str(s)));
    }
    fields
}
