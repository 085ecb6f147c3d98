//! `boot-image-retry` (boot `method: qemu` / `qemu-nfs`): start QEMU with the device's command
//! line and the job's image arguments, console on QEMU's stdio.

use super::login::login_tail;
use crate::job::Boot;
use crate::pipeline::build::{Builder, Scope};
use crate::pipeline::{ActionKind, ActionNode};

pub(crate) fn pipeline(b: &Builder<'_>, s: &Scope<'_>, boot: &Boot) -> ActionNode {
    let mut node = b.node(s, None, ActionKind::BootImageRetry);
    let q = b.child(s, &mut node, ActionKind::BootQemuImage);
    b.child(s, q, ActionKind::ExecuteQemu);
    login_tail(b, s, boot, &mut node);
    node
}
