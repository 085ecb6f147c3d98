//! `tftp-deploy`: stage kernel, ramdisk, dtb, modules and NFS root for a bootloader that
//! fetches them over TFTP.

use super::download::download;
use super::overlay::add_overlay;
use super::require;
use super::tmpfs::DEVICE_ENV;
use crate::action::{action, group, Action, ActionNode, Builder, Nothing, PipelineError, Scope};
use crate::job::parse::TFTP_IMAGE_KEYS;
use crate::job::Deploy;

pub(crate) fn pipeline(
    b: &Builder<'_>,
    s: &Scope<'_>,
    d: &Deploy,
) -> Result<ActionNode, PipelineError> {
    require(b, s, d, "tftp")?;
    let mut node = b.node(s, None, TftpDeploy);
    let ov = b.needs_overlay(&s.namespace);
    add_overlay(b, s, &mut node);
    for key in TFTP_IMAGE_KEYS {
        if let Some((_, img)) = d.images.iter().find(|(k, _)| k == key) {
            download(b, s, &mut node, key, img)?;
        }
    }
    let prep = b.child(
        s,
        &mut node,
        group(
            "prepare-tftp-overlay",
            "unpack, modify and repack the staged files",
        ),
    );
    b.child(s, prep, Optional::ExtractNfsRootfs);
    b.child(s, prep, Optional::ParsePersistentNfs);
    b.child(
        s,
        prep,
        Nothing {
            name: "extract-overlay-ramdisk",
            description: "unpack the ramdisk to add the overlay",
        },
    );
    b.child(s, prep, Optional::ExtractModules);
    if ov {
        b.child(s, prep, APPLY_OVERLAY_TFTP);
    }
    let typed_kernel = d
        .images
        .iter()
        .any(|(k, i)| k == "kernel" && i.kernel_type.is_some());
    if typed_kernel {
        let pk = b.child(
            s,
            prep,
            group("prepare-kernel", "convert the kernel for the bootloader"),
        );
        if b.device.has_boot_method("u-boot") {
            b.child(
                s,
                pk,
                Nothing {
                    name: "uboot-prepare-kernel",
                    description: "wrap the kernel with mkimage if U-Boot needs it",
                },
            );
        }
    }
    b.child(s, prep, Optional::ConfigurePreseedFile);
    b.child(
        s,
        prep,
        Nothing {
            name: "compress-ramdisk",
            description: "repack the ramdisk (with a U-Boot header if asked)",
        },
    );
    if ov {
        b.child(s, &mut node, DEVICE_ENV);
    }
    Ok(node)
}

action! {
    /// `tftp-deploy`: a job directory under the TFTP root; its children download into it.
    pub struct TftpDeploy = "tftp-deploy", "stage kernel, ramdisk, dtb and rootfs for a TFTP boot";
    run(ctx, _node) { run_tftp_dir(ctx) }
}

action! {
    /// `apply-overlay-tftp`: the test overlay goes into the staged ramdisk.
    pub struct ApplyOverlayTftp = "apply-overlay-tftp", "unpack the overlay into the ramdisk or NFS root";
    run(ctx, node) { run_apply_overlay(ctx, node).await }
}

/// `apply-overlay-tftp`, for the strategies that share it.
pub(crate) const APPLY_OVERLAY_TFTP: ApplyOverlayTftp = ApplyOverlayTftp;

/// Steps of `prepare-tftp-overlay` that only matter for some deployments: fine when the job
/// does not use them, a clear error when it does and this worker cannot do it yet.
#[derive(Debug)]
pub enum Optional {
    ExtractNfsRootfs,
    ParsePersistentNfs,
    ExtractModules,
    ConfigurePreseedFile,
}

#[async_trait::async_trait]
impl Action for Optional {
    fn name(&self) -> &'static str {
        match self {
            Optional::ExtractNfsRootfs => "extract-nfsrootfs",
            Optional::ParsePersistentNfs => "parse-persistent-nfs",
            Optional::ExtractModules => "extract-modules",
            Optional::ConfigurePreseedFile => "configure-preseed-file",
        }
    }
    fn description(&self) -> &'static str {
        match self {
            Optional::ExtractNfsRootfs => "unpack the NFS root filesystem",
            Optional::ParsePersistentNfs => "read a persistent NFS address",
            Optional::ExtractModules => "unpack kernel modules into the root filesystem",
            Optional::ConfigurePreseedFile => "adjust an installer preseed file",
        }
    }
    async fn run(&self, ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
        run_optional(self, ctx, node)
    }
}

// ---- running -------------------------------------------------------------------------------

use crate::action::{ActionError, Ctx};
use crate::error::io_err;
use crate::host::tempdir::tempdir_in;
use crate::job::{ActionBlock, DeployTo};

/// The deploy block of a node.
fn deploy_of<'c>(ctx: &'c Ctx, node: &ActionNode) -> Option<&'c Deploy> {
    match ctx.block(node) {
        Some(ActionBlock::Deploy(d)) => Some(d),
        _ => None,
    }
}

/// The group the job's TFTP directory is given to: the primary group of the user the TFTP
/// server runs as (`--tftp-user`), or none when that is basalt's own user.
fn server_group(ctx: &Ctx) -> Result<Option<nix::unistd::Gid>, ActionError> {
    let name = &ctx.limits.tftp_user;
    let user = nix::unistd::User::from_name(name)
        .map_err(|e| ActionError::infra(format!("looking up the TFTP user '{name}': {e}")).with_source(e))?
        .ok_or_else(|| {
            ActionError::infra(format!(
                "the TFTP server's user '{name}' does not exist: pass --tftp-user with the user your TFTP server runs as (tftpd-hpa: TFTP_USERNAME)"
            ))
        })?;
    if user.uid == nix::unistd::geteuid() {
        Ok(None)
    } else {
        Ok(Some(user.gid))
    }
}

/// Gives a staged directory to the TFTP server's group, readable by it only (0750; 0700 when
/// the server runs as basalt's user).
pub(crate) fn stage_dir(ctx: &Ctx, dir: &std::path::Path) -> Result<(), ActionError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = match ctx.tftp_gid {
        Some(gid) => {
            nix::unistd::chown(dir, None, Some(nix::unistd::Gid::from_raw(gid))).map_err(|e| {
                ActionError::infra(format!(
                    "tftp staging: cannot give {} to the group of the TFTP user '{}': {e} (run as root, or as a member of that group)",
                    dir.display(),
                    ctx.limits.tftp_user
                ))
            })?;
            0o750
        }
        None => 0o700,
    };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io_err("tftp staging", e))
}

/// A staged file: 0644 (tftpd-hpa serves only world-readable files unless `--permissive`),
/// group the server's; its directory is what keeps other users out.
pub(crate) fn stage_file(ctx: &Ctx, file: &std::path::Path) -> Result<(), ActionError> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(gid) = ctx.tftp_gid {
        nix::unistd::chown(file, None, Some(nix::unistd::Gid::from_raw(gid))).map_err(|e| {
            ActionError::infra(format!("tftp staging: {}: {e}", file.display())).with_source(e)
        })?;
    }
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| io_err("tftp staging", e))
}

/// `tftp-deploy`: a job directory under the TFTP root, then the downloads into it. The
/// directory is readable by the TFTP server's group only (docs/security.md).
fn run_tftp_dir(ctx: &mut Ctx) -> Result<(), ActionError> {
    if ctx.tftp_dir.is_some() {
        return Ok(());
    }
    let root = ctx.tftp_root.clone();
    if !root.is_dir() {
        return Err(ActionError::infra(format!(
            "the TFTP root {} does not exist: create it or pass --tftp-root (and serve it with a TFTP server)",
            root.display()
        )));
    }
    ctx.tftp_gid = server_group(ctx)?.map(|g| g.as_raw());
    let dir = tempdir_in(&root, &format!("basalt-{}-", ctx.job_id))
        .map_err(|e| io_err("tftp staging", e))?;
    ctx.tftp_dir = Some(dir.clone());
    stage_dir(ctx, &dir)?;
    ctx.log
        .info(format!("staging TFTP files in {}", dir.display()));
    Ok(())
}

/// Runs an [`Optional`] step.
fn run_optional(step: &Optional, ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
    let needs =
        |key: &str| deploy_of(ctx, node).is_some_and(|d| d.images.iter().any(|(k, _)| k == key));
    let missing = match step {
        Optional::ExtractNfsRootfs if needs("nfsrootfs") => Some("an NFS root filesystem"),
        Optional::ExtractModules if needs("modules") => Some("kernel modules"),
        Optional::ConfigurePreseedFile if needs("preseed") => Some("a preseed file"),
        Optional::ParsePersistentNfs
            if deploy_of(ctx, node).is_some_and(|d| d.persistent_nfs.is_some()) =>
        {
            Some("a persistent NFS root")
        }
        _ => None,
    };
    match missing {
        Some(what) => Err(ActionError::job(format!(
            "{}: deploying {what} is not possible on this worker yet",
            node.name()
        ))),
        None => {
            ctx.log
                .debug(format!("{}: nothing to do for this job", node.name()));
            Ok(())
        }
    }
}

/// `apply-overlay-tftp`: the test overlay goes into the ramdisk (a raw cpio, or one with a
/// U-Boot header, which is taken off and put back with mkimage when the device wants it).
async fn run_apply_overlay(ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
    let Some(root) = ctx.overlay_root.clone() else {
        return Ok(());
    };
    let Some(d) = deploy_of(ctx, node) else {
        return Err(ActionError::bug("apply-overlay-tftp outside a deploy"));
    };
    if d.to != DeployTo::Tftp {
        return Err(ActionError::job("the test overlay can only go into a tftp ramdisk on this worker yet (not into an NFS root)"));
    }
    if d.images
        .iter()
        .any(|(k, i)| k == "ramdisk" && i.install_overlay == Some(false))
    {
        ctx.log
            .debug("ramdisk with install_overlay: false: the overlay is not added to it");
        return Ok(());
    }
    let header_uboot = d
        .images
        .iter()
        .any(|(k, i)| k == "ramdisk" && i.header.as_deref() == Some("u-boot"));
    let Some(path) = ctx.downloads.get("ramdisk").cloned() else {
        return Err(ActionError::job("the test overlay needs a ramdisk in this tftp deploy (or an NFS root, which this worker cannot use yet)"));
    };
    let (p, root_dir) = (path.clone(), root.clone());
    let n = ctx
        .tasks
        .run(move |cancel| -> Result<u64, ActionError> {
            strip_uboot_header(&p, header_uboot, cancel)?;
            crate::actions::deploy::download::append_cpio_segment(&p, &root_dir, cancel)
                .map_err(|e| e.into_action("ramdisk"))
        })
        .await??;
    stage_file(ctx, &path)?;
    ctx.overlay_applied = true;
    ctx.log
        .info(format!("added the test overlay ({n} bytes) to the ramdisk"));
    let add_header = ctx
        .device
        .node
        .path(&["actions", "deploy", "parameters", "add_header"])
        .and_then(crate::yaml::Node::as_str)
        == Some("u-boot");
    if add_header {
        let arch = ctx
            .device
            .node
            .path(&["actions", "deploy", "parameters", "mkimage_arch"])
            .and_then(crate::yaml::Node::as_str)
            .unwrap_or("arm")
            .to_string();
        let out = path.with_extension("uboot");
        let mut cmd = tokio::process::Command::new("mkimage");
        cmd.args(["-A", &arch, "-T", "ramdisk", "-C", "none", "-d"])
            .arg(&path)
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true);
        // the ramdisk is the job's: mkimage runs confined, writing only next to it
        let dir = path.parent().unwrap_or(&ctx.workdir).to_path_buf();
        let cannot =
            |e: std::io::Error| ActionError::infra_from("mkimage (package u-boot-tools)", e);
        let status = basalt_hal::confine::spawn(cmd, &ctx.policy(&[&dir], false, &[]))
            .map_err(cannot)?
            .wait()
            .await
            .map_err(cannot)?;
        if !status.success() {
            return Err(ActionError::infra(format!("mkimage failed: {status}")));
        }
        std::fs::rename(&out, &path).map_err(|e| io_err("ramdisk", e))?;
        stage_file(ctx, &path)?;
    }
    Ok(())
}

/// Takes a U-Boot header (64 bytes) off the ramdisk `path`, streaming; a ramdisk marked
/// `header: u-boot` must have one. Blocking.
fn strip_uboot_header(
    path: &std::path::Path,
    marked: bool,
    cancel: &crate::host::blocking::Cancel,
) -> Result<(), ActionError> {
    use std::io::{Read, Seek, Write};
    let mut f = crate::overlay::tree::open_file(path).map_err(|e| io_err("ramdisk", e))?;
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]).map_err(|e| io_err("ramdisk", e))? {
            0 => break,
            n => got += n,
        }
    }
    let len = f.metadata().map_err(|e| io_err("ramdisk", e))?.len();
    let is_uimage = len > 64 && got == 64 && head[..4] == [0x27, 0x05, 0x19, 0x56];
    if !is_uimage {
        if marked {
            return Err(ActionError::job(
                "ramdisk marked 'header: u-boot' has no U-Boot header",
            ));
        }
        return Ok(());
    }
    f.seek(std::io::SeekFrom::Start(64))
        .map_err(|e| io_err("ramdisk", e))?;
    let tmp = path.with_extension("noheader");
    let mut out = std::fs::File::create(&tmp).map_err(|e| io_err("ramdisk", e))?;
    crate::host::blocking::copy(&mut f, &mut out, cancel).map_err(|e| io_err("ramdisk", e))?;
    out.flush().map_err(|e| io_err("ramdisk", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err("ramdisk", e))
}
