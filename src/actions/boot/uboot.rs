//! `uboot-action` (boot `method: u-boot`): power-cycle the board, interrupt U-Boot, send the
//! device's command list with `{SERVER_IP}`, `{KERNEL_ADDR}`, `{BOOTX}`... substituted, then
//! wait for the kernel and log in.

use super::login::{login_tail, reset_device};
use crate::job::{Boot, BootCommands};
use crate::pipeline::build::{Builder, PipelineError, Scope};
use crate::pipeline::{ActionKind, ActionNode};

pub(crate) fn pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    boot: &Boot,
) -> Result<ActionNode, PipelineError> {
    if boot.commands.is_none() {
        return Err(s.error(
            b,
            "a u-boot boot needs 'commands' (a command list name of the device, or a list)",
        ));
    }
    let mut node = b.node(s, None, ActionKind::UbootAction);
    for kind in [
        ActionKind::UbootFromMedia,
        ActionKind::BootloaderOverlay,
        ActionKind::ConnectDevice,
    ] {
        b.child(s, &mut node, kind);
    }
    let cmds = b.child(s, &mut node, ActionKind::UbootCommands);
    reset_device(b, s, cmds);
    b.child(s, cmds, ActionKind::BootloaderInterrupt);
    b.child(s, cmds, ActionKind::BootloaderCommands);
    login_tail(b, s, boot, cmds);
    Ok(node)
}

/// `boot-bootloader-retry` (boot `method: bootloader`): reset the board and stop at the
/// bootloader prompt after its commands, for interactive tests of U-Boot itself.
pub(crate) fn bootloader_pipeline(b: &Builder<'_>, s: &Scope<'_>) -> ActionNode {
    let mut node = b.node(s, None, ActionKind::BootBootloaderRetry);
    b.child(s, &mut node, ActionKind::BootloaderOverlay);
    let bb = b.child(s, &mut node, ActionKind::BootBootloader);
    let rc = b.child(s, bb, ActionKind::ResetConnection);
    b.child(s, rc, ActionKind::DisconnectDevice);
    b.child(s, rc, ActionKind::ConnectDevice);
    reset_device(b, s, bb);
    b.child(s, bb, ActionKind::BootloaderInterrupt);
    b.child(s, bb, ActionKind::BootloaderCommands);
    node
}

/// The boot commands for this job: the device's named list or the job's inline list.
pub fn command_list(
    device: &crate::device::Device,
    commands: &BootCommands,
) -> Result<Vec<String>, String> {
    match commands {
        BootCommands::Inline(list) => Ok(list.clone()),
        BootCommands::Named(name) => {
            let node = device
                .boot_method("u-boot")
                .and_then(|m| m.get(name))
                .and_then(|m| m.get("commands"))
                .ok_or_else(|| {
                    format!(
                        "device '{}' has no u-boot command list '{name}'",
                        device.hostname
                    )
                })?;
            let mut r = crate::diag::Report::new(&device.source);
            let list = crate::reader::str_or_list(
                &mut r,
                node,
                &format!("actions.boot.methods.u-boot.{name}.commands"),
            );
            if r.has_errors() {
                return Err(r.to_string());
            }
            Ok(list)
        }
    }
}
