//! `nfs-deploy` (a board booting an NFS root) and `deploy-qemu-nfs` (QEMU with an NFS root).

use super::download::download;
use super::overlay::overlay;
use crate::job::Deploy;
use crate::pipeline::build::{Builder, PipelineError, Scope};
use crate::pipeline::{ActionKind, ActionNode};

pub(crate) fn pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    d: &Deploy,
) -> Result<ActionNode, PipelineError> {
    let mut node = b.node(s, None, ActionKind::NfsDeploy);
    for key in ["nfsrootfs", "modules"] {
        if let Some((_, img)) = d.images.iter().find(|(k, _)| k == key) {
            download(b, s, &mut node, key, img)?;
        }
    }
    b.child(s, &mut node, ActionKind::ExtractNfsRootfs);
    let ov = overlay(b, s, Some(&node));
    node.children.push(ov);
    b.child(s, &mut node, ActionKind::ExtractModules);
    b.child(s, &mut node, ActionKind::ApplyOverlayTftp);
    if b.needs_overlay(&s.namespace) {
        b.child(s, &mut node, ActionKind::DeployDeviceEnv);
    }
    Ok(node)
}

pub(crate) fn qemu_pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    d: &Deploy,
) -> Result<ActionNode, PipelineError> {
    let mut node = b.node(s, None, ActionKind::DeployQemuNfs);
    for (key, img) in &d.images {
        download(b, s, &mut node, key, img)?;
    }
    b.child(s, &mut node, ActionKind::QemuNfsDeploy);
    if b.needs_overlay(&s.namespace) {
        let ov = overlay(b, s, Some(&node));
        node.children.push(ov);
        b.child(s, &mut node, ActionKind::ApplyOverlayTftp);
        b.child(s, &mut node, ActionKind::DeployDeviceEnv);
    }
    Ok(node)
}
