//! The pipeline's tree: actions numbered by level (`1`, `1.1`, `1.1.2`), with their resolved
//! timeouts and retries.

use super::Action;
use crate::yaml::{Node, Value};
use std::sync::Arc;

/// Which test definition an overlay action works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestDefId {
    /// Index of the test block in the job's `actions`.
    pub block: usize,
    /// Index of the definition in that block's `definitions`.
    pub def: usize,
    /// Running index over every definition of the namespace: the `<idx>` of `<idx>_<name>`.
    pub idx: usize,
}

/// Which part of the job an action belongs to; `boot` retries use the device's `boot_retry`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Deploy,
    Boot,
    Test,
    Command,
    Finalize,
}

/// One action of the pipeline with its resolved limits and its children.
#[derive(Clone, Debug)]
pub struct ActionNode {
    /// What the node does.
    pub action: Arc<dyn Action>,
    /// `1`, `1.2`, `1.2.3`.
    pub level: String,
    /// Resolved action timeout in seconds.
    pub timeout: u64,
    /// Resolved connection timeout in seconds (how long one expect may wait).
    pub connection_timeout: u64,
    /// How many times a retry action runs its pipeline (1 for plain actions).
    pub max_retries: u32,
    /// `repeat: N` on the block: run N times regardless of the outcome.
    pub repeat: bool,
    /// The job's action block this node was built from (`None` for `finalize`).
    pub block: Option<usize>,
    pub section: Section,
    pub namespace: String,
    /// A test block's `timeout: {skip: true}`: a timeout moves on to the next block.
    pub skip_on_timeout: bool,
    pub children: Vec<ActionNode>,
}

impl ActionNode {
    /// LAVA's name of this action (`tftp-deploy`, `lava-test-shell`, ...).
    pub fn name(&self) -> &'static str {
        self.action.name()
    }

    /// This node without its children.
    pub fn shallow(&self) -> ActionNode {
        ActionNode {
            action: self.action.clone(),
            level: self.level.clone(),
            timeout: self.timeout,
            connection_timeout: self.connection_timeout,
            max_retries: self.max_retries,
            repeat: self.repeat,
            block: self.block,
            section: self.section,
            namespace: self.namespace.clone(),
            skip_on_timeout: self.skip_on_timeout,
            children: Vec::new(),
        }
    }

    /// Every node of the subtree, depth first.
    pub fn walk(&self) -> Vec<&ActionNode> {
        let mut out = vec![self];
        for c in &self.children {
            out.extend(c.walk());
        }
        out
    }

    /// Numbers this node's subtree from `level`.
    pub fn number(&mut self, level: String) {
        for (i, c) in self.children.iter_mut().enumerate() {
            c.number(format!("{level}.{}", i + 1));
        }
        self.level = level;
    }

    /// The describe mapping: level, name, description, timeout, max_retries, [url], pipeline.
    pub fn describe(&self) -> Node {
        let mut m = vec![
            (Node::str("level"), Node::str(self.level.clone())),
            (Node::str("name"), Node::str(self.name())),
            (
                Node::str("description"),
                Node::str(self.action.description()),
            ),
            (
                Node::str("timeout"),
                Node::new(Value::Int(self.timeout as i64)),
            ),
            (
                Node::str("max_retries"),
                Node::new(Value::Int(i64::from(self.max_retries))),
            ),
        ];
        if let Some(url) = self.action.url() {
            m.push((Node::str("url"), Node::str(url)));
        }
        if !self.children.is_empty() {
            let kids = self.children.iter().map(ActionNode::describe).collect();
            m.push((Node::str("pipeline"), Node::new(Value::Seq(kids))));
        }
        Node::new(Value::Map(m))
    }
}

/// A built pipeline: the top-level actions, `finalize` last.
#[derive(Clone, Debug)]
pub struct Pipeline {
    pub actions: Vec<ActionNode>,
}

impl Pipeline {
    /// The pipeline as LAVA's `describe()` list, for `description.yaml` and `basalt describe`.
    pub fn describe(&self) -> Node {
        Node::new(Value::Seq(
            self.actions.iter().map(ActionNode::describe).collect(),
        ))
    }

    /// Every node, depth first.
    pub fn walk(&self) -> Vec<&ActionNode> {
        self.actions.iter().flat_map(ActionNode::walk).collect()
    }
}
