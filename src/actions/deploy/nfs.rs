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
    let stale = ctx
        .tasks
        .run(move |_| -> Result<Vec<String>, ExportsError> {
            // entries of jobs whose basalt was killed before its cleanup go first
            let stale = table.remove_stale()?;
            table.add(&tag, &r)?;
            Ok(stale)
        })
        .await?
        .map_err(exports_err)?;
    for s in stale {
        ctx.log.warning(format!(
            "removed a stale NFS export of a job that is gone: {s}"
        ));
    }
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

#[cfg(test)]
mod tests {
    use crate::action::{ActionNode, Ctx};
    use crate::run::testing::{fixture, run_tree, Fixture};
    use std::io::Write;
    use std::path::{Path, PathBuf};

    /// A gzip-, xz-, bzip2- or zstd-compressed tar of `members` (name, data; a name ending in
    /// `/` is a directory); `raw_name` writes a member name as is (`..` included).
    fn tarball(dir: &Path, name: &str, members: &[(&str, &[u8])], compress: &str) -> PathBuf {
        let mut b = tar::Builder::new(Vec::new());
        for (n, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            if n.ends_with('/') {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, n, &[][..]).unwrap();
            } else {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                if n.contains("..") {
                    h.as_old_mut().name[..n.len()].copy_from_slice(n.as_bytes());
                    h.set_cksum();
                    b.append(&h, *data).unwrap();
                } else {
                    b.append_data(&mut h, n, *data).unwrap();
                }
            }
        }
        let plain = b.into_inner().unwrap();
        let data = match compress {
            "gz" => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&plain).unwrap();
                e.finish().unwrap()
            }
            "xz" => {
                let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
                e.write_all(&plain).unwrap();
                e.finish().unwrap()
            }
            "bz2" => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                e.write_all(&plain).unwrap();
                e.finish().unwrap()
            }
            "zstd" => zstd::encode_all(&plain[..], 1).unwrap(),
            _ => plain,
        };
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    const TESTS: &str = "
- test:
    timeout: {minutes: 1}
    definitions:
    - from: inline
      name: smoke
      path: inline/smoke.yaml
      repository:
        metadata: {format: Lava-Test Test Definition 1.0, name: smoke}
        run: {steps: [echo hi]}
";

    /// The job's fixture, with the export table and exportfs in `dir`.
    fn setup(device: &str, job: &str, dir: &Path) -> Fixture {
        let mut f = fixture(device, job, Vec::new());
        std::fs::create_dir_all(&f.ctx.workdir).unwrap();
        std::fs::create_dir_all(&f.ctx.tftp_root).unwrap();
        f.ctx.limits.tftp_user = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .unwrap()
            .unwrap()
            .name;
        f.ctx.limits.exports = crate::host::exports::ExportTable {
            file: dir.join("exports"),
            exportfs: format!("sh -c 'echo ran >> {}/exportfs.calls'", dir.display()),
        };
        std::fs::write(dir.join("exports"), "# the lab's\n/srv/keep *(ro)\n").unwrap();
        f
    }

    async fn cleanup(ctx: &mut Ctx, node: &ActionNode) {
        for c in &node.children {
            Box::pin(cleanup(ctx, c)).await;
        }
        node.action.cleanup(ctx, node).await;
    }

    fn tmp() -> PathBuf {
        crate::host::tempdir::tempdir_in(&std::env::temp_dir(), "basalt-nfs-test-").unwrap()
    }

    /// tftp + u-boot `commands: nfs`: the root unpacked (xz), the modules (gz) and the overlay
    /// in it, exported while the job runs, `{NFSROOTFS}` / `{NFS_SERVER_IP}` in the boot
    /// commands, and the entry and the directory gone after cleanup; a zImage on a device with
    /// bootz stays as it is.
    #[tokio::test]
    async fn tftp_nfsrootfs_is_unpacked_exported_and_released() {
        let dir = tmp();
        let rootfs = tarball(
            &dir,
            "rootfs.tar.xz",
            &[
                ("./etc/", b""),
                ("./etc/hostname", b"board\n"),
                ("./bin/sh", b"#!"),
            ],
            "xz",
        );
        let modules = tarball(
            &dir,
            "modules.tar.gz",
            &[("lib/modules/6.1/kernel/x.ko", b"ko")],
            "gz",
        );
        std::fs::write(dir.join("zImage"), b"kernel").unwrap();
        let job = format!(
            "device_type: beaglebone-black
job_name: nfs
timeouts: {{job: {{minutes: 2}}, action: {{seconds: 20}}}}
priority: medium
visibility: public
actions:
- deploy:
    to: tftp
    os: debian
    kernel: {{url: 'file://{d}/zImage', type: zimage}}
    nfsrootfs: {{url: 'file://{r}', compression: xz}}
    modules: {{url: 'file://{m}', compression: gz}}
- boot:
    method: u-boot
    commands: nfs
    prompts: ['/ # ']
{TESTS}",
            d = dir.display(),
            r = rootfs.display(),
            m = modules.display()
        );
        let mut f = setup("bbb-01", &job, &dir);
        let deploy = &f.pipeline.actions[0];
        let ran = run_tree(&mut f.ctx, deploy)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(ran.contains(&"extract-nfsrootfs"), "{ran:?}");
        let nfs = f.ctx.nfs.clone().expect("an NFS root");
        let root = PathBuf::from(&nfs.path);
        assert!(root.starts_with(&f.ctx.workdir));
        assert_eq!(
            std::fs::read(root.join("etc/hostname")).unwrap(),
            b"board\n"
        );
        assert_eq!(
            std::fs::read(root.join("lib/modules/6.1/kernel/x.ko")).unwrap(),
            b"ko"
        );
        assert!(root.join("lava-7/bin/lava-test-case").is_file());
        let table = std::fs::read_to_string(dir.join("exports")).unwrap();
        assert!(
            table.starts_with("# the lab's\n/srv/keep *(ro)\n"),
            "{table}"
        );
        assert!(
            table.contains(&format!(
                "{} *(rw,no_root_squash,no_all_squash,async,no_subtree_check) # basalt job 7",
                root.display()
            )),
            "{table}"
        );
        // the kernel stays a zImage (bbb has bootz)
        assert!(f.ctx.downloads["kernel"].ends_with("zImage"));
        // the boot commands
        let boot = &f.pipeline.actions[1];
        let overlay = boot
            .children
            .iter()
            .find(|n| n.name() == "bootloader-overlay")
            .unwrap();
        overlay.action.run(&mut f.ctx, overlay).await.unwrap();
        let want = format!("nfsroot=192.0.2.1:{},tcp,hard", root.display());
        assert!(
            f.ctx.boot_commands.iter().any(|c| c.contains(&want)),
            "{:?}",
            f.ctx.boot_commands
        );
        assert!(f.ctx.boot_commands.iter().any(|c| c.starts_with("bootz ")));
        cleanup(&mut f.ctx, deploy).await;
        assert_eq!(
            std::fs::read_to_string(dir.join("exports")).unwrap(),
            "# the lab's\n/srv/keep *(ro)\n"
        );
        assert!(!root.exists());
        let calls = std::fs::read_to_string(dir.join("exportfs.calls")).unwrap();
        assert_eq!(calls.lines().count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A rootfs with a member that leaves its directory fails the job's deploy (a job error)
    /// with nothing exported, and cleanup still removes what was unpacked; every compression.
    #[tokio::test]
    async fn a_bad_rootfs_fails_and_is_cleaned_up() {
        for compress in ["gz", "bz2", "zstd", "none"] {
            let dir = tmp();
            let rootfs = tarball(
                &dir,
                "rootfs.tar",
                &[("etc/ok", b"1"), ("etc/../../escape", b"x")],
                compress,
            );
            let c = if compress == "none" {
                String::new()
            } else {
                format!(", compression: {compress}")
            };
            let job = format!(
                "device_type: beaglebone-black
job_name: nfs
timeouts: {{job: {{minutes: 2}}, action: {{seconds: 20}}}}
priority: medium
visibility: public
actions:
- deploy:
    to: tftp
    os: debian
    nfsrootfs: {{url: 'file://{r}'{c}}}
",
                r = rootfs.display()
            );
            let mut f = setup("bbb-01", &job, &dir);
            let deploy = &f.pipeline.actions[0];
            let e = run_tree(&mut f.ctx, deploy).await.unwrap_err();
            assert_eq!(e.kind, crate::action::ErrorType::Job, "{compress}: {e}");
            assert!(e.message.contains("etc/../../escape"), "{e}");
            let local = f.ctx.nfs.as_ref().and_then(|n| n.local.clone()).unwrap();
            assert!(local.join("etc/ok").exists(), "{compress}");
            assert!(!f.ctx.workdir.join("escape").exists());
            cleanup(&mut f.ctx, deploy).await;
            assert!(!local.exists());
            assert_eq!(
                std::fs::read_to_string(dir.join("exports")).unwrap(),
                "# the lab's\n/srv/keep *(ro)\n"
            );
            assert!(!dir.join("exportfs.calls").exists());
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    /// persistent_nfs (and nfs_url): no extraction, no export; its address in the boot
    /// commands.
    #[tokio::test]
    async fn persistent_nfs_gives_the_placeholders() {
        for (key, addr) in [
            ("persistent_nfs", "{address: '10.0.0.5:/srv/roots/bbb'}"),
            ("nfs_url", "'10.0.0.5:/srv/roots/bbb'"),
        ] {
            let dir = tmp();
            std::fs::write(dir.join("zImage"), b"kernel").unwrap();
            let job = format!(
                "device_type: beaglebone-black
job_name: nfs
timeouts: {{job: {{minutes: 2}}, action: {{seconds: 20}}}}
priority: medium
visibility: public
actions:
- deploy:
    to: tftp
    os: debian
    kernel: {{url: 'file://{d}/zImage', type: zimage}}
    {key}: {addr}
- boot:
    method: u-boot
    commands: nfs
    prompts: ['/ # ']
",
                d = dir.display()
            );
            let mut f = setup("bbb-01", &job, &dir);
            let deploy = &f.pipeline.actions[0];
            run_tree(&mut f.ctx, deploy)
                .await
                .unwrap_or_else(|e| panic!("{key}: {e}"));
            let boot = &f.pipeline.actions[1];
            let overlay = boot
                .children
                .iter()
                .find(|n| n.name() == "bootloader-overlay")
                .unwrap();
            overlay.action.run(&mut f.ctx, overlay).await.unwrap();
            assert!(
                f.ctx
                    .boot_commands
                    .iter()
                    .any(|c| c.contains("nfsroot=10.0.0.5:/srv/roots/bbb,tcp,hard")),
                "{key}: {:?}",
                f.ctx.boot_commands
            );
            cleanup(&mut f.ctx, deploy).await;
            assert!(!dir.join("exportfs.calls").exists());
            std::fs::remove_dir_all(&dir).unwrap();
        }
        assert_eq!(
            super::parse_nfs_address("nfs://h/p/q"),
            Some(("h".into(), "/p/q".into()))
        );
        assert_eq!(super::parse_nfs_address("h:/a b"), None);
        assert_eq!(super::parse_nfs_address("h:/a';reboot"), None);
        assert_eq!(super::parse_nfs_address(":/a"), None);
    }

    /// A ramdisk with a U-Boot header and the overlay and modules: the header comes off, the
    /// segments go on, a new header (mkimage's layout, type ramdisk) goes back; an `image`
    /// kernel on a device without booti becomes a uImage for bootm at the bootm address.
    #[tokio::test]
    async fn ramdisk_and_kernel_headers_are_native() {
        use crate::host::uimage::{check_header, wrap_file, Header, ImageType};
        let dir = tmp();
        std::fs::write(dir.join("raw.cpio"), b"070701 not really a cpio").unwrap();
        let h = Header::new(ImageType::Ramdisk, "arm", 0, 0).unwrap();
        wrap_file(&h, &dir.join("raw.cpio"), &dir.join("initrd.uimg")).unwrap();
        std::fs::write(dir.join("Image"), b"arm64 kernel").unwrap();
        let modules = tarball(&dir, "modules.tar", &[("lib/modules/m.ko", b"ko")], "none");
        let job = format!(
            "device_type: beaglebone-black
job_name: ramdisk
timeouts: {{job: {{minutes: 2}}, action: {{seconds: 20}}}}
priority: medium
visibility: public
actions:
- deploy:
    to: tftp
    os: oe
    kernel: {{url: 'file://{d}/Image', type: image}}
    ramdisk: {{url: 'file://{d}/initrd.uimg', header: u-boot}}
    modules: {{url: 'file://{m}'}}
- boot:
    method: u-boot
    commands: ramdisk
    prompts: ['/ # ']
{TESTS}",
            d = dir.display(),
            m = modules.display()
        );
        let mut f = setup("bbb-01", &job, &dir);
        let deploy = &f.pipeline.actions[0];
        let ran = run_tree(&mut f.ctx, deploy)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(ran.contains(&"uboot-prepare-kernel"), "{ran:?}");
        let rd = std::fs::read(&f.ctx.downloads["ramdisk"]).unwrap();
        let size = check_header(&rd).unwrap();
        assert_eq!(size as usize, rd.len() - 64);
        assert_eq!(rd[30], 3, "type ramdisk");
        assert_eq!(rd[29], 2, "arch arm");
        assert!(rd[64..].starts_with(b"070701 not really a cpio"));
        let body = String::from_utf8_lossy(&rd[64..]).into_owned();
        assert!(body.contains("lib/modules/m.ko") && body.contains("lava-test-case"));
        assert_eq!(
            rd[64..]
                .windows(4)
                .filter(|w| *w == [0x27, 0x05, 0x19, 0x56])
                .count(),
            0
        );
        let k = &f.ctx.downloads["kernel"];
        assert!(k.ends_with("uImage"), "{k:?}");
        let kd = std::fs::read(k).unwrap();
        check_header(&kd).unwrap();
        assert_eq!(kd[30], 2, "type kernel");
        assert_eq!(
            &kd[16..24],
            &[0x82, 0, 0, 0, 0x82, 0, 0, 0],
            "load and entry"
        );
        assert_eq!(&kd[64..], b"arm64 kernel");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// deploy nfs + boot qemu-nfs: the root exported, QEMU's command line with the kernel and
    /// LAVA's `-append`, the nfsrootfs image_arg left out.
    #[tokio::test]
    async fn qemu_nfs_command_line_and_export() {
        let dir = tmp();
        let rootfs = tarball(&dir, "root.tar.zst", &[("etc/hostname", b"q\n")], "zstd");
        std::fs::write(dir.join("vmlinuz"), b"k").unwrap();
        let job = format!(
            "device_type: qemu
job_name: qemu-nfs
timeouts: {{job: {{minutes: 2}}, action: {{seconds: 20}}}}
priority: medium
visibility: public
context: {{arch: amd64}}
actions:
- deploy:
    to: nfs
    os: debian
    images:
      nfsrootfs:
        image_arg: 'nfsroot={{NFS_SERVER_IP}}:{{nfsrootfs}},tcp,hard'
        url: 'file://{r}'
        compression: zstd
      kernel:
        url: 'file://{d}/vmlinuz'
        image_arg: -kernel {{kernel}}
- boot:
    method: qemu-nfs
    prompts: ['/ # ']
{TESTS}",
            d = dir.display(),
            r = rootfs.display()
        );
        let mut f = setup("qemu-amd64", &job, &dir);
        let deploy = &f.pipeline.actions[0];
        assert_eq!(deploy.name(), "deploy-qemu-nfs");
        let ran = run_tree(&mut f.ctx, deploy)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            ran.contains(&"qemu-nfs-deploy") && ran.contains(&"apply-overlay-tftp"),
            "{ran:?}"
        );
        let root = PathBuf::from(&f.ctx.nfs.as_ref().unwrap().path);
        assert!(root.join("lava-7/bin/lava-test-case").is_file());
        assert!(std::fs::read_to_string(dir.join("exports"))
            .unwrap()
            .contains(&format!("{} *(rw,", root.display())));
        let argv = crate::actions::boot::qemu::command_line(&f.ctx, true).unwrap();
        let at = argv.iter().position(|a| a == "-append").expect("-append");
        let append = &argv[at + 1];
        assert!(append.contains("root=/dev/nfs"), "{append}");
        assert!(
            append.contains(&format!("nfsroot=192.0.2.1:{},tcp,hard", root.display())),
            "{append}"
        );
        assert!(append.contains("ip=dhcp"), "{append}");
        assert!(argv.iter().any(|a| a == "-kernel"));
        assert!(!argv.iter().any(|a| a.starts_with("nfsroot=")), "{argv:?}");
        cleanup(&mut f.ctx, deploy).await;
        assert!(!root.exists());
        assert!(!std::fs::read_to_string(dir.join("exports"))
            .unwrap()
            .contains("basalt job"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
