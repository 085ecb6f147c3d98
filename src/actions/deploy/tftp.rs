//! `tftp-deploy`: stage kernel, ramdisk, dtb, modules and NFS root for a bootloader that
//! fetches them over TFTP.

use super::download::download;
use super::overlay::add_overlay;
use super::require;
use super::tmpfs::DEVICE_ENV;
use crate::action::{action, group, Action, ActionNode, Builder, PipelineError, Scope};
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
    // device tree overlays (`dtbo:` list), after the other files, in order
    for (key, img) in d.images.iter().filter(|(k, _)| is_dtbo(k)) {
        download(b, s, &mut node, key, img)?;
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
    b.child(s, prep, ExtractOverlayRamdisk);
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
            b.child(s, pk, UbootPrepareKernel);
        }
    }
    b.child(s, prep, Optional::ConfigurePreseedFile);
    b.child(s, prep, CompressRamdisk);
    if ov {
        b.child(s, &mut node, DEVICE_ENV);
    }
    Ok(node)
}

/// Whether image `key` is one of the deploy's device tree overlays (`dtbo0`, `dtbo1`, ...).
pub(crate) fn is_dtbo(key: &str) -> bool {
    key.strip_prefix("dtbo")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
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

action! {
    /// `extract-overlay-ramdisk`: a ramdisk with a U-Boot header loses it, so that modules and
    /// the overlay can be appended (`compress-ramdisk` puts one back if the device wants it).
    pub struct ExtractOverlayRamdisk = "extract-overlay-ramdisk", "take the U-Boot header off the ramdisk";
    run(ctx, node) { run_extract_ramdisk(ctx, node).await }
}

action! {
    /// `uboot-prepare-kernel`: a kernel U-Boot can only `bootm` is wrapped as a uImage.
    pub struct UbootPrepareKernel = "uboot-prepare-kernel", "wrap the kernel as a uImage if U-Boot boots it with bootm";
    run(ctx, node) { run_prepare_kernel(ctx, node).await }
}

action! {
    /// `compress-ramdisk`: the ramdisk gets a U-Boot header when the device wants one.
    pub struct CompressRamdisk = "compress-ramdisk", "repack the ramdisk (with a U-Boot header if the device wants one)";
    run(ctx, node) { run_compress_ramdisk(ctx, node).await }
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
        match self {
            Optional::ExtractNfsRootfs => super::nfs::extract_nfsrootfs(ctx, node).await,
            Optional::ParsePersistentNfs => super::nfs::parse_persistent_nfs(ctx, node),
            Optional::ExtractModules => run_extract_modules(ctx, node).await,
            Optional::ConfigurePreseedFile => run_optional(self, ctx, node),
        }
    }
    async fn cleanup(&self, ctx: &mut Ctx, _node: &ActionNode) {
        if matches!(self, Optional::ExtractNfsRootfs) {
            super::nfs::release(ctx).await;
        }
    }
}

// ---- running -------------------------------------------------------------------------------

use crate::action::{ActionError, Ctx};
use crate::error::io_err;
use crate::host::tempdir::tempdir_in;
use crate::job::ActionBlock;

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

/// Runs an [`Optional`] step basalt does not do: fine when the job does not need it.
fn run_optional(step: &Optional, ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
    let needs =
        |key: &str| deploy_of(ctx, node).is_some_and(|d| d.images.iter().any(|(k, _)| k == key));
    if matches!(step, Optional::ConfigurePreseedFile) && needs("preseed") {
        return Err(ActionError::job(format!(
            "{}: deploying a preseed file is not possible on this worker yet",
            node.name()
        )));
    }
    ctx.log
        .debug(format!("{}: nothing to do for this job", node.name()));
    Ok(())
}

/// The image `key` of the node's deploy block.
fn image<'c>(ctx: &'c Ctx, node: &ActionNode, key: &str) -> Option<&'c crate::job::ImageRef> {
    deploy_of(ctx, node)?
        .images
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, i)| i)
}

/// The device's `actions.deploy.parameters.<key>`.
fn deploy_param<'c>(ctx: &'c Ctx, key: &str) -> Option<&'c crate::yaml::Node> {
    ctx.device
        .node
        .path(&["actions", "deploy", "parameters", key])
}

/// The device wants ramdisks with a U-Boot header (`add_header: u-boot`).
fn wants_header(ctx: &Ctx) -> bool {
    deploy_param(ctx, "add_header").and_then(crate::yaml::Node::as_str) == Some("u-boot")
}

/// `mkimage_arch` of the device (U-Boot's architecture name), `arm` when unset.
fn uimage_arch(ctx: &Ctx) -> String {
    deploy_param(ctx, "mkimage_arch")
        .and_then(crate::yaml::Node::scalar_text)
        .unwrap_or_else(|| "arm".into())
}

fn uimage_err(what: &str, e: crate::host::uimage::UImageError) -> ActionError {
    use crate::host::uimage::UImageError as U;
    match e {
        U::Io(io) => io_err(what, io),
        U::UnknownArch(_) => ActionError::infra(format!("{what}: the device's mkimage_arch: {e}")),
        other => ActionError::job(format!("{what}: {other}")),
    }
}

/// `extract-overlay-ramdisk`: the U-Boot header comes off a ramdisk marked `header: u-boot`
/// (or that has a valid one).
async fn run_extract_ramdisk(ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
    let Some(path) = ctx.downloads.get("ramdisk").cloned() else {
        ctx.log.debug("no ramdisk in this deploy");
        return Ok(());
    };
    let marked = image(ctx, node, "ramdisk").is_some_and(|i| i.header.as_deref() == Some("u-boot"));
    let p = path.clone();
    let stripped = ctx
        .tasks
        .run(move |cancel| strip_uboot_header(&p, marked, cancel))
        .await??;
    if stripped {
        stage_file(ctx, &path)?;
        ctx.log.info("took the U-Boot header off the ramdisk");
    }
    Ok(())
}

/// `extract-modules`: the `modules` tarball goes into the NFS root (unpacked at its top, as
/// LAVA does) and into the ramdisk (as one more cpio segment), unless the image says
/// `install_modules: false`.
async fn run_extract_modules(ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
    let Some(modules) = ctx.downloads.get("modules").cloned() else {
        ctx.log
            .debug(format!("{}: no modules in this deploy", node.name()));
        return Ok(());
    };
    let (into_nfs, into_ramdisk) = {
        let wanted =
            |key: &str| image(ctx, node, key).is_some_and(|i| i.install_modules != Some(false));
        (wanted("nfsrootfs"), wanted("ramdisk"))
    };
    let mut done = false;
    if let Some(root) = ctx
        .nfs
        .as_ref()
        .and_then(|n| n.local.as_ref().map(|_| n.path.clone()))
    {
        if into_nfs {
            let (m, r, budget) = (
                modules.clone(),
                std::path::PathBuf::from(&root),
                ctx.budget.clone(),
            );
            let u = ctx
                .tasks
                .run(move |cancel| crate::overlay::rootfs::unpack_file(&m, &r, cancel, &budget))
                .await?
                .map_err(|e| e.into_action("modules"))?;
            ctx.log.info(format!(
                "unpacked the modules ({} files) into the NFS root",
                u.entries
            ));
            done = true;
        }
    }
    if let Some(ramdisk) = ctx.downloads.get("ramdisk").cloned() {
        if into_ramdisk {
            let stage = tempdir_in(&ctx.workdir, "modules-").map_err(|e| io_err("modules", e))?;
            let (m, st, rd, budget) = (
                modules.clone(),
                stage.clone(),
                ramdisk.clone(),
                ctx.budget.clone(),
            );
            let r = ctx
                .tasks
                .run(move |cancel| -> Result<u64, ActionError> {
                    crate::overlay::rootfs::unpack_file(&m, &st, cancel, &budget)
                        .map_err(|e| e.into_action("modules"))?;
                    crate::actions::deploy::download::append_cpio_segment(&rd, &st, cancel)
                        .map_err(|e| e.into_action("modules into the ramdisk"))
                })
                .await?;
            let _ = std::fs::remove_dir_all(&stage);
            let n = r?;
            stage_file(ctx, &ramdisk)?;
            ctx.log
                .info(format!("added the modules ({n} bytes) to the ramdisk"));
            done = true;
        }
    }
    if !done {
        ctx.log.debug("modules: no NFS root or ramdisk takes them");
    }
    Ok(())
}

/// `apply-overlay-tftp`: the test overlay goes into the NFS root (unpacked into it) or the
/// ramdisk (one more cpio segment; its U-Boot header came off in `extract-overlay-ramdisk`).
async fn run_apply_overlay(ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
    let Some(root) = ctx.overlay_root.clone() else {
        return Ok(());
    };
    if deploy_of(ctx, node).is_none() {
        return Err(ActionError::bug("apply-overlay-tftp outside a deploy"));
    }
    if let Some(nfs) = ctx.nfs.clone() {
        return super::nfs::apply_overlay(ctx, node, &nfs, &root).await;
    }
    if image(ctx, node, "ramdisk").is_some_and(|i| i.install_overlay == Some(false)) {
        ctx.log
            .debug("ramdisk with install_overlay: false: the overlay is not added to it");
        return Ok(());
    }
    let Some(path) = ctx.downloads.get("ramdisk").cloned() else {
        return Err(ActionError::job(
            "the test overlay needs a ramdisk or an NFS root in this deploy",
        ));
    };
    let (p, root_dir) = (path.clone(), root.clone());
    let n = ctx
        .tasks
        .run(move |cancel| {
            crate::actions::deploy::download::append_cpio_segment(&p, &root_dir, cancel)
                .map_err(|e| e.into_action("ramdisk"))
        })
        .await??;
    stage_file(ctx, &path)?;
    ctx.overlay_applied = true;
    ctx.log
        .info(format!("added the test overlay ({n} bytes) to the ramdisk"));
    Ok(())
}

/// `compress-ramdisk`: a U-Boot ramdisk header (type ramdisk, the device's `mkimage_arch`),
/// written natively, when the device says `add_header: u-boot`.
async fn run_compress_ramdisk(ctx: &mut Ctx, _node: &ActionNode) -> Result<(), ActionError> {
    use crate::host::uimage::{Header, ImageType};
    let Some(path) = ctx.downloads.get("ramdisk").cloned() else {
        return Ok(());
    };
    if !wants_header(ctx) {
        return Ok(());
    }
    let header = Header::new(ImageType::Ramdisk, &uimage_arch(ctx), 0, 0)
        .map_err(|e| uimage_err("ramdisk", e))?;
    let out = path.with_extension("uboot");
    let (p, o) = (path.clone(), out.clone());
    let n = ctx
        .tasks
        .run(move |_| crate::host::uimage::wrap_file(&header, &p, &o))
        .await?
        .map_err(|e| uimage_err("ramdisk", e))?;
    std::fs::rename(&out, &path).map_err(|e| io_err("ramdisk", e))?;
    stage_file(ctx, &path)?;
    ctx.log
        .info(format!("added a U-Boot header to the ramdisk ({n} bytes)"));
    Ok(())
}

/// A number of the device dictionary (`0x82000000` or decimal).
fn address(n: &crate::yaml::Node) -> Option<u32> {
    let t = n.scalar_text()?;
    let t = t.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => t.parse().ok(),
    }
}

/// `uboot-prepare-kernel`, as LAVA's: a kernel whose type U-Boot boots with `bootm` only
/// (no `bootz`/`booti` addresses in the device) is wrapped as a uImage (type kernel, the
/// device's `mkimage_arch`), loaded at `parameters.text_offset` or the `bootm` kernel
/// address, entry there (64 bytes on with `use_xip`).
async fn run_prepare_kernel(ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
    use crate::host::uimage::{Header, ImageType};
    let Some(kind) = image(ctx, node, "kernel").and_then(|i| i.kernel_type) else {
        return Ok(());
    };
    let Some(kernel) = ctx.downloads.get("kernel").cloned() else {
        return Ok(());
    };
    let boot = crate::actions::boot::uboot::boot_command(&ctx.device, Some(kind));
    if kind == crate::job::KernelType::UImage || boot != "bootm" {
        ctx.log.debug(format!(
            "the {kind:?} kernel is booted with {boot}: no conversion"
        ));
        return Ok(());
    }
    let params = &ctx.device.node;
    let load = params
        .path(&["parameters", "text_offset"])
        .or_else(|| params.path(&["parameters", "bootm", "kernel"]))
        .and_then(address)
        .ok_or_else(|| {
            ActionError::job(format!(
                "device '{}' has no bootm kernel address (parameters.bootm.kernel) to load a uImage at",
                ctx.device.hostname
            ))
        })?;
    let xip = deploy_param(ctx, "use_xip").and_then(crate::yaml::Node::as_bool) == Some(true);
    let entry = if xip { load.wrapping_add(64) } else { load };
    let header = Header::new(ImageType::Kernel, &uimage_arch(ctx), load, entry)
        .map_err(|e| uimage_err("kernel", e))?;
    let out = kernel.with_file_name("uImage");
    let (k, o) = (kernel.clone(), out.clone());
    ctx.tasks
        .run(move |_| crate::host::uimage::wrap_file(&header, &k, &o))
        .await?
        .map_err(|e| uimage_err("kernel", e))?;
    stage_file(ctx, &out)?;
    if out != kernel {
        let _ = std::fs::remove_file(&kernel);
    }
    ctx.log.info(format!(
        "wrapped the kernel as a uImage for bootm (load 0x{load:08x}, entry 0x{entry:08x})"
    ));
    ctx.downloads.insert("kernel".into(), out);
    Ok(())
}

/// Takes a U-Boot header (64 bytes) off the ramdisk `path`, streaming; a ramdisk marked
/// `header: u-boot` must have one. Returns whether there was one. Blocking.
fn strip_uboot_header(
    path: &std::path::Path,
    marked: bool,
    cancel: &crate::host::blocking::Cancel,
) -> Result<bool, ActionError> {
    use crate::host::uimage::{check_header, HEADER_LEN};
    use std::io::{Read, Seek, Write};
    let mut f = crate::overlay::tree::open_file(path).map_err(|e| io_err("ramdisk", e))?;
    let mut head = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]).map_err(|e| io_err("ramdisk", e))? {
            0 => break,
            n => got += n,
        }
    }
    match check_header(&head[..got]) {
        Ok(_) => {}
        Err(e) if marked => {
            return Err(ActionError::job(format!(
                "ramdisk marked 'header: u-boot': {e}"
            )))
        }
        Err(_) => return Ok(false),
    }
    f.seek(std::io::SeekFrom::Start(HEADER_LEN as u64))
        .map_err(|e| io_err("ramdisk", e))?;
    let tmp = path.with_extension("noheader");
    let mut out = std::fs::File::create(&tmp).map_err(|e| io_err("ramdisk", e))?;
    crate::host::blocking::copy(&mut f, &mut out, cancel).map_err(|e| io_err("ramdisk", e))?;
    out.flush().map_err(|e| io_err("ramdisk", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err("ramdisk", e))?;
    Ok(true)
}
