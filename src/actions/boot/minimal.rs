//! `minimal-boot`: a device that is already on (or is reset by its power commands) and only
//! needs its console connected and a login.

use super::login::{login_tail, reset_device};
use crate::job::Boot;
use crate::pipeline::build::{Builder, Scope};
use crate::pipeline::{ActionKind, ActionNode};

pub(crate) fn pipeline(b: &Builder<'_>, s: &Scope<'_>, boot: &Boot) -> ActionNode {
    let mut node = b.node(s, None, ActionKind::MinimalBoot);
    b.child(s, &mut node, ActionKind::ConnectDevice);
    if !b.device.commands.pre_power.is_empty() {
        b.child(s, &mut node, ActionKind::PrePowerCommand);
    }
    if !b.device.commands.pre_os.is_empty() {
        b.child(s, &mut node, ActionKind::PreOsCommand);
    }
    if boot.reset.unwrap_or(true) {
        reset_device(b, s, &mut node);
    }
    login_tail(b, s, boot, &mut node);
    node
}
