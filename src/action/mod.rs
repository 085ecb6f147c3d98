//! The action: one step of a job's pipeline, as LAVA's `Action` is. A strategy module of
//! [`crate::actions`] builds a tree of them ([`ActionNode`]); the executor ([`crate::run`])
//! runs each node's [`Action::run`], then its children, under the node's timeout and
//! retries, and at the end [`Action::cleanup`] of every action that ran.
//!
//! This layer knows no strategy: it holds the trait, the tree, the job's context ([`Ctx`]),
//! the builder every strategy uses ([`Builder`]) and the errors.

pub mod build;
pub mod context;
mod node;

pub use crate::error::{ActionError, ErrorType, FailedAction, FailureCause};
pub use build::{Builder, PipelineError, Scope};
pub use context::{Ctx, JobConfinement, TestRun};
pub use node::{ActionNode, Pipeline, Section, TestDefId};

use crate::device::Device;
use crate::job::Job;

/// What an action may check before the job runs (LAVA's validate pass).
pub struct Check<'a> {
    pub job: &'a Job,
    pub device: &'a Device,
    /// The node being checked.
    pub node: &'a ActionNode,
}

/// One step of a pipeline. An action keeps no state of its own between calls: what it
/// learns for later actions goes into the [`Ctx`].
#[async_trait::async_trait]
pub trait Action: Send + Sync + std::fmt::Debug {
    /// LAVA's action name (`tftp-deploy`, `lava-test-shell`): job files refer to it.
    fn name(&self) -> &'static str;

    /// One line on what the action does (basalt's words).
    fn description(&self) -> &'static str;

    /// The URL the action downloads, shown by `describe`.
    fn url(&self) -> Option<&str> {
        None
    }

    /// Whether the action retries its pipeline (`failure_retry`, `boot_retry`, `repeat`).
    fn retries(&self) -> bool {
        false
    }

    /// Whether `basalt run` can execute it; `false` only for [`NotYet`].
    fn runnable(&self) -> bool {
        true
    }

    /// Checks what the action needs from the job and the device before anything runs; the
    /// message says what is missing.
    fn validate(&self, _check: &Check<'_>) -> Result<(), String> {
        Ok(())
    }

    /// The action's own work; the executor then runs the node's children.
    async fn run(&self, ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError>;

    /// Releases what the action holds, after `finalize`, whatever happened; runs once for every
    /// action that started, last started first. `node` is the action's node without its
    /// children.
    async fn cleanup(&self, _ctx: &mut Ctx, _node: &ActionNode) {}
}

/// An action basalt builds and describes as LAVA does but cannot run yet: `validate
/// --device` refuses a job that needs it, naming it.
#[derive(Debug)]
pub struct NotYet {
    pub name: &'static str,
    pub description: &'static str,
}

impl NotYet {
    /// The message users see.
    pub fn message(name: &str) -> String {
        format!("'{name}' is not supported by basalt yet")
    }
}

#[async_trait::async_trait]
impl Action for NotYet {
    fn name(&self) -> &'static str {
        self.name
    }
    fn description(&self) -> &'static str {
        self.description
    }
    fn runnable(&self) -> bool {
        false
    }
    fn validate(&self, _check: &Check<'_>) -> Result<(), String> {
        Err(NotYet::message(self.name))
    }
    async fn run(&self, _ctx: &mut Ctx, _node: &ActionNode) -> Result<(), ActionError> {
        Err(ActionError::job(format!(
            "{} (validate --device refuses such a job)",
            NotYet::message(self.name)
        )))
    }
}

/// An action whose work is its children (LAVA's retry and grouping actions).
#[derive(Debug)]
pub struct Group {
    pub name: &'static str,
    pub description: &'static str,
    /// Whether it retries its pipeline.
    pub retry: bool,
}

#[async_trait::async_trait]
impl Action for Group {
    fn name(&self) -> &'static str {
        self.name
    }
    fn description(&self) -> &'static str {
        self.description
    }
    fn retries(&self) -> bool {
        self.retry
    }
    async fn run(&self, _ctx: &mut Ctx, _node: &ActionNode) -> Result<(), ActionError> {
        Ok(())
    }
}

/// A group action (its work is its children).
pub const fn group(name: &'static str, description: &'static str) -> Group {
    Group {
        name,
        description,
        retry: false,
    }
}

/// A retrying group action.
pub const fn retry(name: &'static str, description: &'static str) -> Group {
    Group {
        name,
        description,
        retry: true,
    }
}

/// An action with nothing to do in the jobs basalt runs (LAVA builds it; basalt keeps it in
/// the pipeline so that levels, names and timeouts match).
#[derive(Debug)]
pub struct Nothing {
    pub name: &'static str,
    pub description: &'static str,
}

#[async_trait::async_trait]
impl Action for Nothing {
    fn name(&self) -> &'static str {
        self.name
    }
    fn description(&self) -> &'static str {
        self.description
    }
    async fn run(&self, ctx: &mut Ctx, _node: &ActionNode) -> Result<(), ActionError> {
        ctx.log
            .debug(format!("{}: nothing to do for this job", self.name));
        Ok(())
    }
}

/// Declares an action without fields: its LAVA name, its description and its run body.
///
/// ```ignore
/// action! {
///     /// `pdu-reboot`: power-cycle the device.
///     pub struct PduReboot = "pdu-reboot", "power-cycle the device with its hard reset command";
///     run(ctx, _node) { ctx.board_power()?.reset().await?; Ok(()) }
/// }
/// ```
macro_rules! action {
    ($(#[$doc:meta])* $vis:vis struct $T:ident = $name:literal, $desc:literal;
     run($ctx:ident, $node:ident) $body:block) => {
        $(#[$doc])*
        #[derive(Debug)]
        $vis struct $T;

        #[async_trait::async_trait]
        impl $crate::action::Action for $T {
            fn name(&self) -> &'static str {
                $name
            }
            fn description(&self) -> &'static str {
                $desc
            }
            async fn run(
                &self,
                $ctx: &mut $crate::action::Ctx,
                $node: &$crate::action::ActionNode,
            ) -> Result<(), $crate::action::ActionError> $body
        }
    };
}
pub(crate) use action;
