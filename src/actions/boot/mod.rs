//! `boot:` strategies, chosen by `method:` and by what the device offers.

pub mod login;
pub mod minimal;
pub mod qemu;
pub mod uboot;

use crate::job::{Boot, BootMethod};
use crate::pipeline::build::{Builder, PipelineError, Scope};
use crate::pipeline::ActionNode;

pub(crate) fn pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    boot: &Boot,
) -> Result<ActionNode, PipelineError> {
    let name = match &boot.method {
        BootMethod::Bootloader => boot.bootloader.as_deref().unwrap_or("bootloader"),
        m => m.name(),
    };
    if !matches!(boot.method, BootMethod::Other(_)) && !b.device.has_boot_method(name) {
        return Err(s.error(b, format!(
            "device '{}' ({}) cannot boot with method '{name}': its actions.boot.methods has no '{name}'",
            b.device.hostname, b.device.device_type
        )));
    }
    match &boot.method {
        BootMethod::Qemu | BootMethod::QemuNfs => Ok(qemu::pipeline(b, s, boot)),
        BootMethod::UBoot => uboot::pipeline(b, s, boot),
        BootMethod::Minimal => Ok(minimal::pipeline(b, s, boot)),
        BootMethod::Bootloader => Ok(uboot::bootloader_pipeline(b, s)),
        BootMethod::Other(m) => Err(s.error(
            b,
            format!(
                "boot method '{m}' is outside basalt's scope (it handles {})",
                BootMethod::IN_SCOPE.join(", ")
            ),
        )),
    }
}
