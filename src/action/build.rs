//! What every strategy builds with: the job, the device, the block being built, and the
//! node constructor that resolves an action's timeout and retries.
//!
//! Timeouts are resolved per action at build time, lowest precedence first (LAVA's
//! `doc/v2/timeouts.rst`): 30 s → job `timeouts.action` → device `timeouts.actions.<name>` →
//! the block's `timeout` → for a child of a retrying action, the parent's timeout divided by its
//! retries → job `timeouts.actions.<name>` → the block's `timeouts.<name>`. A parent's timeout is
//! not inherited otherwise.

use super::{Action, ActionNode, Section};
use crate::device::Device;
use crate::job::{ActionBlock, Common, Job, TestKind};
use crate::yaml::Mark;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why a job cannot run on a device: the block, where it is, and what is wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{mark}: {path}: {message}")]
pub struct PipelineError {
    pub mark: Mark,
    pub path: String,
    pub message: String,
}

/// The default LAVA connection timeout.
const DEFAULT_CONNECTION_SECS: u64 = 30;

/// What every strategy needs: the job, the device, and per-namespace facts about test blocks.
pub struct Builder<'a> {
    pub job: &'a Job,
    pub device: &'a Device,
    tests: BTreeMap<String, Vec<usize>>,
    def_index: BTreeMap<(usize, usize), usize>,
}

/// The job block an action is built for.
#[derive(Clone)]
pub struct Scope<'a> {
    pub common: Option<&'a Common>,
    pub index: Option<usize>,
    pub section: Section,
    pub namespace: String,
}

impl Scope<'_> {
    /// An error about this block.
    pub fn error(&self, b: &Builder<'_>, message: impl Into<String>) -> PipelineError {
        let (mark, path) = match self.index {
            Some(i) => (
                self.common.map(|c| c.mark).unwrap_or_default(),
                format!("actions[{i}].{}", b.job.actions[i].kind()),
            ),
            None => (Mark::default(), "finalize".to_string()),
        };
        PipelineError {
            mark,
            path,
            message: message.into(),
        }
    }
}

impl<'a> Builder<'a> {
    pub fn new(job: &'a Job, device: &'a Device) -> Builder<'a> {
        let mut tests: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut def_index = BTreeMap::new();
        let mut counters: BTreeMap<String, usize> = BTreeMap::new();
        for (i, a) in job.actions.iter().enumerate() {
            if let ActionBlock::Test(t) = a {
                let ns = namespace_of(&t.common);
                tests.entry(ns.clone()).or_default().push(i);
                if let Some(cns) = &t.common.connection_namespace {
                    tests.entry(cns.clone()).or_default().push(i);
                }
                if let TestKind::Definitions(defs) = &t.kind {
                    let counter = counters.entry(ns).or_default();
                    for d in 0..defs.len() {
                        def_index.insert((i, d), *counter);
                        *counter += 1;
                    }
                }
            }
        }
        Builder {
            job,
            device,
            tests,
            def_index,
        }
    }

    /// The test blocks of a namespace, in job order.
    pub fn tests_in(&self, ns: &str) -> impl Iterator<Item = (usize, &'a crate::job::Test)> + '_ {
        let job = self.job;
        self.tests
            .get(ns)
            .into_iter()
            .flatten()
            .filter_map(move |&i| match &job.actions[i] {
                ActionBlock::Test(t) => Some((i, t)),
                _ => None,
            })
    }

    /// Whether any test of the namespace runs test definitions (needs the overlay, a shell and
    /// the device environment).
    pub fn needs_overlay(&self, ns: &str) -> bool {
        self.tests_in(ns)
            .any(|(_, t)| matches!(t.kind, TestKind::Definitions(_)))
    }

    /// The running `<idx>` of a definition in its namespace.
    pub fn def_idx(&self, block: usize, def: usize) -> usize {
        self.def_index.get(&(block, def)).copied().unwrap_or(def)
    }

    /// Whether this job is a MultiNode sub-job (test shells then synchronise through the
    /// coordinator).
    pub fn is_multinode(&self) -> bool {
        self.job
            .multinode
            .as_ref()
            .is_some_and(|m| m.target_group.is_some() || m.role.is_some())
    }

    /// Creates an action with its timeout and retries resolved. `parent` is the action whose
    /// pipeline it joins.
    pub fn node(
        &self,
        s: &Scope<'_>,
        parent: Option<&ActionNode>,
        action: impl Action + 'static,
    ) -> ActionNode {
        let name = action.name();
        let jt = &self.job.timeouts;
        let mut t = crate::job::timeout::DEFAULT_ACTION_SECS;
        if let Some(a) = jt.action {
            t = a.secs;
        }
        if let Some(d) = self.device.action_timeouts.get(name) {
            t = d.secs;
        }
        if let Some(b) = s.common.and_then(|c| c.timeout) {
            t = b.secs;
        }
        if let Some(p) = parent.filter(|p| p.max_retries > 1) {
            t = p.timeout / u64::from(p.max_retries);
        }
        if let Some(n) = jt.actions.get(name) {
            t = n.secs;
        }
        if let Some(n) = s.common.and_then(|c| c.timeouts.get(name)) {
            t = n.secs;
        }
        let mut c = DEFAULT_CONNECTION_SECS;
        if let Some(x) = jt.connection {
            c = x.secs;
        }
        if let Some(x) = self.device.connection_timeouts.get(name) {
            c = x.secs;
        }
        if let Some(x) = jt.connections.get(name) {
            c = x.secs;
        }
        let (max_retries, repeat) = if action.retries() {
            self.retries(s)
        } else {
            (1, false)
        };
        // `repeat: N` repeats the block's top action; retry actions nested in it keep N as
        // their retry count (LAVA divides their children's timeouts by it) but do not repeat.
        let repeat = repeat && parent.is_none();
        ActionNode {
            action: Arc::new(action),
            level: String::new(),
            timeout: t,
            connection_timeout: c,
            max_retries,
            repeat,
            block: s.index,
            section: s.section,
            namespace: s.namespace.clone(),
            skip_on_timeout: s.common.and_then(|c| c.timeout).is_some_and(|t| t.skip),
            children: Vec::new(),
        }
    }

    /// `failure_retry` of the block, else the device's `failure_retry` (or `boot_retry` for
    /// boots); `repeat` overrides both.
    fn retries(&self, s: &Scope<'_>) -> (u32, bool) {
        let c = s.common;
        if let Some(r) = c.and_then(|c| c.repeat) {
            return (r, true);
        }
        if let Some(r) = c.and_then(|c| c.failure_retry) {
            return (r, false);
        }
        let mut r = self.device.failure_retry().max(1);
        if s.section == Section::Boot {
            if let Some(b) = self.device.boot_retry() {
                r = b;
            }
        }
        (r, false)
    }

    /// Adds `action` as a child of `parent` and returns it for further children.
    pub fn child<'n>(
        &self,
        s: &Scope<'_>,
        parent: &'n mut ActionNode,
        action: impl Action + 'static,
    ) -> &'n mut ActionNode {
        let node = self.node(s, Some(parent), action);
        parent.children.push(node);
        let last = parent.children.len() - 1;
        &mut parent.children[last]
    }
}

/// The block's namespace (`common` when it names none).
pub fn namespace_of(c: &Common) -> String {
    c.namespace.clone().unwrap_or_else(|| "common".to_string())
}
