//! `finalize`: the last action of every job — power the device off and read what is left.

use crate::pipeline::build::{Builder, Scope};
use crate::pipeline::{ActionKind, ActionNode};

pub(crate) fn pipeline(b: &Builder<'_>, s: &Scope<'_>) -> ActionNode {
    let mut f = b.node(s, None, ActionKind::Finalize);
    b.child(s, &mut f, ActionKind::PowerOff);
    b.child(s, &mut f, ActionKind::ReadFeedback);
    f
}
