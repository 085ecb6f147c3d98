//! `deployimages` (deploy `to: tmpfs`): download the images an emulator boots, and put the
//! test overlay where the guest reads it.

use super::download::download;
use super::overlay::add_overlay;
use crate::job::Deploy;
use crate::pipeline::build::{Builder, PipelineError, Scope};
use crate::pipeline::{ActionKind, ActionNode};

pub(crate) fn pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    d: &Deploy,
) -> Result<ActionNode, PipelineError> {
    let mut node = b.node(s, None, ActionKind::DeployImages);
    let ov = b.needs_overlay(&s.namespace);
    add_overlay(b, s, &mut node);
    if ov {
        b.child(s, &mut node, ActionKind::DeployDeviceEnv);
    }
    for (key, img) in d.images.iter().filter(|(k, _)| k == "uefi") {
        download(b, s, &mut node, key, img)?;
    }
    for (key, img) in d.images.iter().filter(|(k, _)| k != "uefi") {
        download(b, s, &mut node, key, img)?;
    }
    if ov {
        b.child(s, &mut node, ActionKind::ApplyOverlayGuest);
    }
    Ok(node)
}

/// `apply-overlay-guest`: the guest must be able to read the test overlay. basalt puts it into
/// the image marked `overlays: {lava: true}` (a `cpio.newc` ramdisk or an ext2/3/4 image); a
/// job whose images offer none is told how to fix it.
pub(crate) fn run_apply_overlay_guest(
    ctx: &mut crate::run::Ctx,
) -> Result<(), crate::run::ActionError> {
    if ctx.overlay_applied || ctx.overlay_root.is_none() {
        return Ok(());
    }
    Err(crate::run::ActionError::job(
        "the test overlay has no image to go into: mark the ramdisk ('format: cpio.newc') or the root filesystem \
         image ('format: ext4') with 'overlays: {lava: true}' (basalt does not build a separate guest disk for it)",
    ))
}
