//! `deployimages` (deploy `to: tmpfs`): download the images an emulator boots, and put the
//! test overlay where the guest reads it.

use super::download::download;
use super::overlay::add_overlay;
use super::require;
use crate::action::{action, group, ActionError, ActionNode, Builder, Ctx, Nothing};
use crate::action::{PipelineError, Scope};
use crate::job::Deploy;

/// The device environment file (`deploy-device-env`): nothing for basalt to do, the test
/// shell exports the environment itself.
pub(crate) const DEVICE_ENV: Nothing = Nothing {
    name: "deploy-device-env",
    description: "write the device environment file",
};

pub(crate) fn pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    d: &Deploy,
) -> Result<ActionNode, PipelineError> {
    require(b, s, d, "image")?;
    let mut node = b.node(
        s,
        None,
        group(
            "deployimages",
            "download images for an emulator and apply the test overlay",
        ),
    );
    let ov = b.needs_overlay(&s.namespace);
    add_overlay(b, s, &mut node);
    if ov {
        b.child(s, &mut node, DEVICE_ENV);
    }
    for (key, img) in d.images.iter().filter(|(k, _)| k == "uefi") {
        download(b, s, &mut node, key, img)?;
    }
    for (key, img) in d.images.iter().filter(|(k, _)| k != "uefi") {
        download(b, s, &mut node, key, img)?;
    }
    if ov {
        b.child(s, &mut node, ApplyOverlayGuest);
    }
    Ok(node)
}

action! {
    /// `apply-overlay-guest`: the guest must be able to read the test overlay. basalt puts it
    /// into the image marked `overlays: {lava: true}` (a `cpio.newc` ramdisk or an ext2/3/4
    /// image); a job whose images offer none is told how to fix it.
    pub struct ApplyOverlayGuest = "apply-overlay-guest", "put the overlay where the emulated guest can read it";
    run(ctx, _node) { apply_overlay_guest(ctx) }
}

fn apply_overlay_guest(ctx: &mut Ctx) -> Result<(), ActionError> {
    if ctx.overlay_applied || ctx.overlay_root.is_none() {
        return Ok(());
    }
    Err(ActionError::job(
        "the test overlay has no image to go into: mark the ramdisk ('format: cpio.newc') or the root filesystem \
         image ('format: ext4') with 'overlays: {lava: true}' (basalt does not build a separate guest disk for it)",
    ))
}
