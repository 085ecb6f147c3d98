//! `storage-deploy` (deploy `to: usb` / `to: sata`): from a running system, download an image
//! and write it to secondary media found by its stable id.

use super::download::download;
use super::overlay::add_overlay;
use super::tmpfs::DEVICE_ENV;
use crate::action::{ActionNode, Builder, NotYet, PipelineError, Scope};
use crate::job::Deploy;
use crate::yaml::Node;

pub(crate) fn pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    d: &Deploy,
) -> Result<ActionNode, PipelineError> {
    let iface = d.to.name();
    let label = d.media_device.as_deref().unwrap_or_default();
    let known = b
        .device
        .node
        .path(&["parameters", "media", iface, label, "uuid"])
        .is_some_and(|u| !u.is_null());
    if !known {
        return Err(s.error(
            b,
            format!(
            "device '{}' has no {iface} media '{label}' with a uuid under parameters.media.{iface}",
            b.device.hostname
        ),
        ));
    }
    let mut node = b.node(
        s,
        None,
        NotYet {
            name: "storage-deploy",
            description: "write an image to USB or SATA media from the running system",
        },
    );
    let ov = b.needs_overlay(&s.namespace);
    add_overlay(b, s, &mut node);
    if !d.images.is_empty() {
        for (key, img) in &d.images {
            download(b, s, &mut node, key, img)?;
            let apply = d.node.get("image").is_some()
                || d.node
                    .path(&["images", key, "apply-overlay"])
                    .and_then(Node::as_bool)
                    .unwrap_or(false);
            if ov && apply {
                b.child(
                    s,
                    &mut node,
                    NotYet {
                        name: "apply-overlay-image",
                        description: "unpack the overlay into the disk image",
                    },
                );
            }
        }
        b.child(
            s,
            &mut node,
            NotYet {
                name: "dd-image",
                description: "write the image to the media with dd",
            },
        );
    }
    if ov {
        b.child(s, &mut node, DEVICE_ENV);
    }
    Ok(node)
}
