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
