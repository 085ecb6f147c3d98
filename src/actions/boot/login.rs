//! The tail every boot shares: `auto-login-action` (wait for the kernel, log in, wait for a
//! prompt), then, when a test shell will run, `expect-shell-connection`, `overlay-unpack` for
//! `transfer_overlay`, and `export-device-env`.

use crate::job::Boot;
use crate::pipeline::build::{Builder, Scope};
use crate::pipeline::{ActionKind, ActionNode};

pub(crate) fn login_tail(b: &Builder<'_>, s: &Scope<'_>, boot: &Boot, parent: &mut ActionNode) {
    if boot.prompts.is_empty() {
        return;
    }
    let login = b.child(s, parent, ActionKind::AutoLogin);
    b.child(s, login, ActionKind::LoginAction);
    if b.needs_overlay(&s.namespace) {
        b.child(s, parent, ActionKind::ExpectShellConnection);
        if boot.transfer_overlay.is_some() {
            b.child(s, parent, ActionKind::OverlayUnpack);
        }
        b.child(s, parent, ActionKind::ExportDeviceEnv);
    }
}

/// `reset-device` with the way this device is reset: its hard reset command when it has one,
/// else a reboot command sent to its shell.
pub(crate) fn reset_device(b: &Builder<'_>, s: &Scope<'_>, parent: &mut ActionNode) {
    let reset = b.child(s, parent, ActionKind::ResetDevice);
    let how = if b.device.has_power_commands() {
        ActionKind::PduReboot
    } else {
        ActionKind::SendRebootCommands
    };
    b.child(s, reset, how);
}
