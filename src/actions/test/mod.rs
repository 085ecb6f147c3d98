//! `test:` blocks: test definitions run by `lava-test-shell`, `interactive` scripts and
//! `monitors` of raw console output.

pub mod interactive;
pub mod monitor;
pub mod multinode;
pub mod shell;

use crate::action::{retry, Action, ActionNode, Builder, Scope};
use crate::yaml::{Node, Value};

/// A test block's pipeline: the retry action `name` around `inner`.
pub(crate) fn retried(
    b: &Builder<'_>,
    s: &Scope<'_>,
    name: &'static str,
    description: &'static str,
    inner: impl Action + 'static,
) -> ActionNode {
    let mut node = b.node(s, None, retry(name, description));
    b.child(s, &mut node, inner);
    node
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
