//! `deploy:` strategies, chosen by `to:` and by what the device offers.

pub mod download;
pub mod git;
pub mod nfs;
pub mod overlay;
pub mod storage;
pub mod tftp;
pub mod tmpfs;

use crate::job::{Deploy, DeployTo};
use crate::pipeline::build::{Builder, PipelineError, Scope};
use crate::pipeline::ActionNode;

pub(crate) fn pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    d: &Deploy,
) -> Result<ActionNode, PipelineError> {
    let dev = b.device;
    let require = |method: &str| -> Result<(), PipelineError> {
        if dev.has_deploy_method(method) {
            Ok(())
        } else {
            Err(s.error(b, format!(
                "device '{}' ({}) cannot deploy to {}: its actions.deploy.methods has no '{method}'",
                dev.hostname,
                dev.device_type,
                d.to.name()
            )))
        }
    };
    match &d.to {
        DeployTo::Tmpfs => {
            require("image")?;
            tmpfs::pipeline(b, s, d)
        }
        DeployTo::Tftp => {
            require("tftp")?;
            tftp::pipeline(b, s, d)
        }
        DeployTo::Nfs if dev.has_deploy_method("image") => {
            require("nfs")?;
            if !dev.has_boot_method("qemu-nfs") {
                return Err(s.error(
                    b,
                    format!(
                        "device '{}' has no qemu-nfs boot method for an NFS deploy",
                        dev.hostname
                    ),
                ));
            }
            nfs::qemu_pipeline(b, s, d)
        }
        DeployTo::Nfs => {
            require("nfs")?;
            nfs::pipeline(b, s, d)
        }
        DeployTo::Usb | DeployTo::Sata => storage::pipeline(b, s, d),
        DeployTo::Overlay => {
            require("overlay")?;
            Ok(overlay::overlay(b, s, None))
        }
        DeployTo::Other(to) => Err(s.error(
            b,
            format!(
                "deploy to '{to}' is outside basalt's scope (it handles {})",
                DeployTo::IN_SCOPE.join(", ")
            ),
        )),
    }
}
