//! `nfs-deploy` (a board booting an NFS root) and `deploy-qemu-nfs` (QEMU with an NFS root),
//! and the NFS root's life in a job, shared with `tftp-deploy`: the `nfsrootfs` tarball
//! unpacked into the job's directory ([`crate::overlay::rootfs`]: gz/xz/bz2/zstd, nothing
//! outside the directory), the modules and the test overlay put into it, an entry for it in
//! the NFS server's export table ([`crate::host::exports`], then `exportfs -ra`), and at the
//! end of the job (whatever happened) the entry and the directory removed. A `persistent_nfs`
//! (or `nfs_url`) root is the lab's: only its address is read.

use super::download::download;
use super::overlay::overlay;
use super::require;
use super::tftp::{Optional, APPLY_OVERLAY_TFTP};
use super::tmpfs::DEVICE_ENV;
use crate::action::{group, Action, ActionNode, Builder, PipelineError, Scope};
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
        group("nfs-deploy", "unpack a root filesystem for an NFS boot"),
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
        group(
            "deploy-qemu-nfs",
            "stage images and an NFS root filesystem for QEMU",
        ),
    );
    for (key, img) in &d.images {
        download(b, s, &mut node, key, img)?;
    }
    b.child(s, &mut node, QemuNfsDeploy);
    if b.needs_overlay(&s.namespace) {
        let ov = overlay(b, s, Some(&node));
        node.children.push(ov);
        b.child(s, &mut node, APPLY_OVERLAY_TFTP);
        b.child(s, &mut node, DEVICE_ENV);
    }
    Ok(node)
}

/// `qemu-nfs-deploy`: unpack and export the NFS root for QEMU.
#[derive(Debug)]
pub struct QemuNfsDeploy;

#[async_trait::async_trait]
impl Action for QemuNfsDeploy {
    fn name(&self) -> &'static str {
        "qemu-nfs-deploy"
    }
    fn description(&self) -> &'static str {
        "unpack and export the NFS root filesystem for QEMU"
    }
    async fn run(&self, ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
        extract_nfsrootfs(ctx, node).await
    }
    async fn cleanup(&self, ctx: &mut Ctx, _node: &ActionNode) {
        release(ctx).await;
    }
}

// ---- running -------------------------------------------------------------------------------

use crate::action::context::NfsRoot;
use crate::action::{ActionError, Ctx};
use crate::error::io_err;
use crate::host::exports::ExportsError;
use crate::host::tempdir::tempdir_in;
use crate::job::ActionBlock;
use crate::yaml::Node;
use std::path::{Path, PathBuf};

fn deploy_of<'c>(ctx: &'c Ctx, node: &ActionNode) -> Result<&'c Deploy, ActionError> {
    match ctx.block(node) {
        Some(ActionBlock::Deploy(d)) => Ok(d),
        _ => Err(ActionError::bug(format!(
            "{} outside a deploy",
            node.name()
        ))),
    }
}

fn exports_err(e: ExportsError) -> ActionError {
    ActionError::infra(format!("NFS export: {e}")).with_source(e)
}

/// `extract-nfsrootfs` / `qemu-nfs-deploy`: the `nfsrootfs` download unpacked into a
/// directory of the job (its `prefix:` the root when given), then exported.
pub(crate) async fn extract_nfsrootfs(ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
    let d = deploy_of(ctx, node)?;
    let Some((_, img)) = d.images.iter().find(|(k, _)| k == "nfsrootfs") else {
        ctx.log
            .debug(format!("{}: no nfsrootfs in this deploy", node.name()));
        return Ok(());
    };
    let prefix = match img.prefix.as_deref().map(|p| p.trim_matches('/')) {
        Some("") | None => None,
        Some(p) => Some(super::overlay::safe_rel_path(p)?),
    };
    let tarball = ctx
        .downloads
        .get("nfsrootfs")
        .cloned()
        .ok_or_else(|| ActionError::bug("nfsrootfs was not downloaded"))?;
    if ctx.nfs.is_some() {
        // a second deploy: the first root goes
        release(ctx).await;
    }
    let base = tempdir_in(&ctx.workdir, "nfsrootfs-").map_err(|e| io_err("nfsrootfs", e))?;
    // held from now on: cleanup removes it whatever happens next
    ctx.nfs = Some(NfsRoot {
        local: Some(base.clone()),
        path: base.display().to_string(),
        ..NfsRoot::default()
    });
    ctx.log
        .info(format!("unpacking the NFS root into {}", base.display()));
    let (t, b, budget) = (tarball.clone(), base.clone(), ctx.budget.clone());
    let u = ctx
        .tasks
        .run(move |cancel| crate::overlay::rootfs::unpack_file(&t, &b, cancel, &budget))
        .await?
        .map_err(|e| e.into_action("nfsrootfs"))?;
    let _ = std::fs::remove_file(&tarball);
    ctx.downloads.remove("nfsrootfs");
    let root = match prefix {
        Some(p) => {
            let r = base.join(&p);
            match std::fs::symlink_metadata(&r) {
                Ok(m) if m.is_dir() => r,
                _ => {
                    return Err(ActionError::job(format!(
                        "nfsrootfs: the archive has no directory '{}' (its prefix)",
                        p.display()
                    )))
                }
            }
        }
        None => base.clone(),
    };
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io_err("nfsrootfs", e))?;
    }
    let skipped = if u.skipped > 0 {
        format!(", {} device nodes or FIFOs left out", u.skipped)
    } else {
        String::new()
    };
    ctx.log.info(format!(
        "unpacked the NFS root: {} entries, {:.1} MiB{skipped}",
        u.entries,
        u.bytes as f64 / 1_048_576.0
    ));
    if let Some(n) = ctx.nfs.as_mut() {
        n.path = root.display().to_string();
    }
    let (table, tag, r) = (ctx.limits.exports.clone(), ctx.job_id.clone(), root.clone());
    ctx.tasks
        .run(move |_| table.add(&tag, &r))
        .await?
        .map_err(exports_err)?;
    if let Some(n) = ctx.nfs.as_mut() {
        n.exported = Some(root.clone());
    }
    ctx.log.info(format!(
        "exported {} over NFS (an entry in {})",
        root.display(),
        ctx.limits.exports.file.display()
    ));
    Ok(())
}

/// The end of the job: the export entry, then the directory, go.
pub(crate) async fn release(ctx: &mut Ctx) {
    let Some(nfs) = ctx.nfs.take() else {
        return;
    };
    let table = ctx.limits.exports.clone();
    let log = ctx.log.clone();
    let r = tokio::task::spawn_blocking(move || {
        if let Some(dir) = &nfs.exported {
            match table.remove(dir) {
                Ok(true) => log.info(format!("removed the NFS export of {}", dir.display())),
                Ok(false) => log.warning(format!(
                    "the NFS export of {} was not in {} any more",
                    dir.display(),
                    table.file.display()
                )),
                Err(e) => log.error(format!("removing the NFS export of {}: {e}", dir.display())),
            }
        }
        if let Some(dir) = &nfs.local {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                log.warning(format!("could not remove {}: {e}", dir.display()));
            }
        }
    })
    .await;
    if let Err(e) = r {
        ctx.log.error(format!("NFS root cleanup: {e}"));
    }
}

/// `host:/path` (or `nfs://host/path`) of a persistent NFS root; the characters are limited
/// to what goes into a U-Boot command or a kernel command line unquoted.
pub fn parse_nfs_address(addr: &str) -> Option<(String, String)> {
    let (server, path) = match addr.strip_prefix("nfs://") {
        Some(rest) => {
            let i = rest.find('/')?;
            (&rest[..i], &rest[i..])
        }
        None => addr.split_once(':')?,
    };
    let ok = |t: &str| {
        t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@+=,~%[]".contains(c))
    };
    (!server.is_empty() && path.starts_with('/') && ok(server) && ok(path))
        .then(|| (server.to_string(), path.to_string()))
}

/// `parse-persistent-nfs`: the address of a `persistent_nfs` (or `nfs_url`) root.
pub(crate) fn parse_persistent_nfs(ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
    let d = deploy_of(ctx, node)?;
    let addr = d
        .persistent_nfs
        .as_ref()
        .and_then(|p| p.get("address"))
        .and_then(Node::scalar_text)
        .or_else(|| d.node.get("nfs_url").and_then(Node::scalar_text));
    let Some(addr) = addr else {
        ctx.log
            .debug(format!("{}: no persistent NFS root", node.name()));
        return Ok(());
    };
    let (server, path) = parse_nfs_address(&addr).ok_or_else(|| {
        ActionError::job(format!(
            "unrecognised NFS address '{addr}': expected host:/path (letters, digits and ._-/:@+=,~% only)"
        ))
    })?;
    ctx.log
        .info(format!("persistent NFS root {path} on {server}"));
    ctx.nfs = Some(NfsRoot {
        server: Some(server),
        path,
        local: None,
        exported: None,
    });
    Ok(())
}

/// `apply-overlay-tftp` for an NFS root: the overlay unpacked into it (as an archive, so
/// nothing is written through a symlink of the root that leads out of it).
pub(crate) async fn apply_overlay(
    ctx: &mut Ctx,
    node: &ActionNode,
    nfs: &NfsRoot,
    overlay: &Path,
) -> Result<(), ActionError> {
    let d = deploy_of(ctx, node)?;
    let install = match &nfs.local {
        Some(_) => d
            .images
            .iter()
            .find(|(k, _)| k == "nfsrootfs")
            .and_then(|(_, i)| i.install_overlay),
        None => d
            .persistent_nfs
            .as_ref()
            .and_then(|p| p.get("install_overlay"))
            .and_then(Node::as_bool),
    };
    if install == Some(false) {
        ctx.log
            .debug("install_overlay: false: the overlay is not added to the NFS root");
        return Ok(());
    }
    if nfs.local.is_none() {
        return Err(ActionError::job(format!(
            "the test overlay cannot go into the persistent NFS root {}:{}: basalt does not mount NFS shares on the worker; set persistent_nfs.install_overlay: false and bring the overlay with the boot's transfer_overlay",
            nfs.server.as_deref().unwrap_or_default(),
            nfs.path
        )));
    }
    let root = PathBuf::from(&nfs.path);
    let tarball = ctx
        .workdir
        .join(format!("overlay-nfs-{}.tar.gz", node.level));
    let rel = ctx.results_dir().trim_start_matches('/').to_string();
    let (o, t, r, budget) = (
        overlay.to_path_buf(),
        tarball.clone(),
        root.clone(),
        ctx.budget.clone(),
    );
    let res = ctx
        .tasks
        .run(move |cancel| -> Result<u64, ActionError> {
            let file = std::fs::File::create(&t).map_err(|e| io_err("overlay", e))?;
            crate::overlay::tarball::write(&o, &rel, std::io::BufWriter::new(file), cancel)
                .map_err(|e| e.into_action("overlay tarball"))?;
            crate::overlay::rootfs::unpack_file(&t, &r, cancel, &budget)
                .map(|u| u.entries)
                .map_err(|e| e.into_action("the test overlay into the NFS root"))
        })
        .await?;
    let _ = std::fs::remove_file(&tarball);
    let n = res?;
    ctx.overlay_applied = true;
    ctx.log.info(format!(
        "added the test overlay ({n} entries) to the NFS root {}",
        root.display()
    ));
    Ok(())
}
