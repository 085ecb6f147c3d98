//! `command:` blocks: `user-command` runs a command of the device dictionary's
//! `commands.users.<name>` on the worker (and its `undo` at cleanup).

use crate::job::Command;
use crate::pipeline::build::{Builder, PipelineError, Scope};
use crate::pipeline::{ActionKind, ActionNode};

pub(crate) fn pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    _c: &Command,
) -> Result<ActionNode, PipelineError> {
    Ok(b.node(s, None, ActionKind::UserCommand))
}
