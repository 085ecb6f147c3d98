//! `tftp-deploy`: stage kernel, ramdisk, dtb, modules and NFS root for a bootloader that
//! fetches them over TFTP.

use super::download::download;
use super::overlay::add_overlay;
use crate::job::parse::TFTP_IMAGE_KEYS;
use crate::job::Deploy;
use crate::pipeline::build::{Builder, PipelineError, Scope};
use crate::pipeline::{ActionKind, ActionNode};

pub(crate) fn pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    d: &Deploy,
) -> Result<ActionNode, PipelineError> {
    let mut node = b.node(s, None, ActionKind::TftpDeploy);
    let ov = b.needs_overlay(&s.namespace);
    add_overlay(b, s, &mut node);
    for key in TFTP_IMAGE_KEYS {
        if let Some((_, img)) = d.images.iter().find(|(k, _)| k == key) {
            download(b, s, &mut node, key, img)?;
        }
    }
    let prep = b.child(s, &mut node, ActionKind::PrepareTftpOverlay);
    for kind in [
        ActionKind::ExtractNfsRootfs,
        ActionKind::ParsePersistentNfs,
        ActionKind::ExtractOverlayRamdisk,
        ActionKind::ExtractModules,
    ] {
        b.child(s, prep, kind);
    }
    if ov {
        b.child(s, prep, ActionKind::ApplyOverlayTftp);
    }
    let typed_kernel = d
        .images
        .iter()
        .any(|(k, i)| k == "kernel" && i.kernel_type.is_some());
    if typed_kernel {
        let pk = b.child(s, prep, ActionKind::PrepareKernel);
        if b.device.has_boot_method("u-boot") {
            b.child(s, pk, ActionKind::UbootPrepareKernel);
        }
    }
    b.child(s, prep, ActionKind::ConfigurePreseedFile);
    b.child(s, prep, ActionKind::CompressRamdisk);
    if ov {
        b.child(s, &mut node, ActionKind::DeployDeviceEnv);
    }
    Ok(node)
}
