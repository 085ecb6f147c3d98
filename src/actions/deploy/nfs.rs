//! `nfs-deploy` (a board booting an NFS root) and `deploy-qemu-nfs` (QEMU with an NFS root).

use super::download::download;
use super::overlay::overlay;
use super::require;
use super::tftp::{Optional, APPLY_OVERLAY_TFTP};
use super::tmpfs::DEVICE_ENV;
use crate::action::{ActionNode, Builder, NotYet, PipelineError, Scope};
use crate::job::Deploy;

/// `to: nfs`: QEMU with an NFS root when the device is emulated, else a board booting one.
pub(crate) fn pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    d: &Deploy,
) -> Result<ActionNode, PipelineError> {
    let dev = b.device;
    if dev.has_deploy_method("image") {
        require(b, s, d, "nfs")?;
        if !dev.has_boot_method("qemu-nfs") {
            return Err(s.error(
                b,
                format!(
                    "device '{}' has no qemu-nfs boot method for an NFS deploy",
                    dev.hostname
                ),
            ));
        }
        return qemu_pipeline(b, s, d);
    }
    require(b, s, d, "nfs")?;
    board_pipeline(b, s, d)
}

fn board_pipeline(b: &Builder<'_>, s: &Scope<'_>, d: &Deploy) -> Result<ActionNode, PipelineError> {
    let mut node = b.node(
        s,
        None,
        NotYet {
            name: "nfs-deploy",
            description: "unpack a root filesystem for an NFS boot",
        },
    );
    for key in ["nfsrootfs", "modules"] {
        if let Some((_, img)) = d.images.iter().find(|(k, _)| k == key) {
            download(b, s, &mut node, key, img)?;
        }
    }
    b.child(s, &mut node, Optional::ExtractNfsRootfs);
    let ov = overlay(b, s, Some(&node));
    node.children.push(ov);
    b.child(s, &mut node, Optional::ExtractModules);
    b.child(s, &mut node, APPLY_OVERLAY_TFTP);
    if b.needs_overlay(&s.namespace) {
        b.child(s, &mut node, DEVICE_ENV);
    }
    Ok(node)
}

fn qemu_pipeline(b: &Builder<'_>, s: &Scope<'_>, d: &Deploy) -> Result<ActionNode, PipelineError> {
    let mut node = b.node(
        s,
        None,
        NotYet {
            name: "deploy-qemu-nfs",
            description: "stage images and an NFS root filesystem for QEMU",
        },
    );
    for (key, img) in &d.images {
        download(b, s, &mut node, key, img)?;
    }
    b.child(
        s,
        &mut node,
        NotYet {
            name: "qemu-nfs-deploy",
            description: "export the NFS root filesystem for QEMU",
        },
    );
    if b.needs_overlay(&s.namespace) {
        let ov = overlay(b, s, Some(&node));
        node.children.push(ov);
        b.child(s, &mut node, APPLY_OVERLAY_TFTP);
        b.child(s, &mut node, DEVICE_ENV);
    }
    Ok(node)
}
