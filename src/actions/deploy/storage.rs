//! `storage-deploy` (deploy `to: usb` / `to: sata`): from a running system, download an image
//! and write it to secondary media found by its stable id.
//!
//! As LAVA's `MassStorage`: the image is downloaded to the worker (`download-retry`), the test
//! overlay goes into its root partition (`apply-overlay-image`), then `dd-image` runs on the
//! shell of the system the previous boot left running: the `download` tool (default `wget`)
//! fetches the image from the worker's file server and pipes it into the `writer` (default
//! `dd of={DEVICE} bs=4M`), `{DOWNLOAD_URL}` and `{DEVICE}` replaced, the device being
//! `/dev/disk/by-id/<uuid>` of `parameters.media.<iface>.<label>` in the device dictionary.
//! Then, beyond LAVA, the medium is read back: the sha256 of its first bytes (the image's
//! size, read after the page cache is dropped) must be the image's, computed on the worker; a
//! mismatch is the medium's or its writer's fault (infrastructure).

use super::download::download;
use super::overlay::add_overlay;
use super::tmpfs::DEVICE_ENV;
use crate::action::context::pattern;
use crate::action::{group, Action, ActionError, ActionNode, Builder, Check, Ctx, FailureCause};
use crate::action::{PipelineError, Scope};
use crate::job::{ActionBlock, Deploy};
use crate::overlay::single_quoted;
use crate::yaml::Node;
use std::path::Path;
use std::time::{Duration, Instant};

/// The image key of a storage deploy (`image:` or `images: {image: ...}`).
const IMAGE: &str = "image";

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
        group(
            "storage-deploy",
            "write an image to USB or SATA media from the running system",
        ),
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
                b.child(s, &mut node, ApplyOverlayImage { key: key.clone() });
            }
        }
        b.child(s, &mut node, DdImage);
    }
    if ov {
        b.child(s, &mut node, DEVICE_ENV);
    }
    Ok(node)
}

// ---- apply-overlay-image ---------------------------------------------------------------------

/// `apply-overlay-image`: the test overlay goes into the image's root partition (`root_partition`,
/// counted from 0 as LAVA counts it: the first partition of the MBR is 0), an ext2/3/4 filesystem
/// written with e2fsprogs' debugfs (no loop mount, no root; debugfs has no offset, so the
/// partition is copied out, written and copied back). An image
/// without `root_partition` takes it only if the whole image is an ext2/3/4 filesystem.
#[derive(Debug)]
pub struct ApplyOverlayImage {
    pub key: String,
}

#[async_trait::async_trait]
impl Action for ApplyOverlayImage {
    fn name(&self) -> &'static str {
        "apply-overlay-image"
    }
    fn description(&self) -> &'static str {
        "unpack the overlay into the disk image"
    }
    async fn run(&self, ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
        apply_overlay_image(ctx, node, &self.key).await
    }
}

/// The ext2/3/4 superblock magic, at 1024 + 56 bytes into the filesystem.
const EXT_MAGIC: [u8; 2] = [0x53, 0xef];

/// Reads `len` bytes at `offset` of `path`.
fn read_at(path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// The byte offset and length of partition `index` (from 0) of the MBR of `image`.
pub fn mbr_partition(image: &Path, index: i64) -> Result<(u64, u64), String> {
    let mbr =
        read_at(image, 0, 512).map_err(|e| format!("cannot read its partition table: {e}"))?;
    if mbr[510..512] != [0x55, 0xaa] {
        return Err("it has no MBR partition table (no 0x55AA signature)".into());
    }
    let i = usize::try_from(index)
        .ok()
        .filter(|i| *i < 4)
        .ok_or_else(|| format!("root_partition {index}: an MBR has partitions 0 to 3"))?;
    let e = &mbr[446 + 16 * i..446 + 16 * (i + 1)];
    let start = u32::from_le_bytes([e[8], e[9], e[10], e[11]]);
    let sectors = u32::from_le_bytes([e[12], e[13], e[14], e[15]]);
    if e[4] == 0 || sectors == 0 {
        return Err(format!("root_partition {index}: the partition is empty"));
    }
    Ok((u64::from(start) * 512, u64::from(sectors) * 512))
}

/// Copies `len` bytes at `offset` of `from` to `to` (at `to_offset`), blocking.
fn copy_range(
    from: &Path,
    offset: u64,
    len: u64,
    to: &Path,
    to_offset: u64,
    cancel: &crate::host::blocking::Cancel,
) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut r = std::fs::File::open(from)?;
    r.seek(SeekFrom::Start(offset))?;
    let mut w = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(to)?;
    w.seek(SeekFrom::Start(to_offset))?;
    let mut r = r.take(len);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        cancel.check()?;
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        w.write_all(&buf[..n])?;
    }
    w.flush()
}

fn is_ext(image: &Path, offset: u64) -> bool {
    read_at(image, offset + 1024 + 56, 2).is_ok_and(|m| m == EXT_MAGIC)
}

async fn apply_overlay_image(
    ctx: &mut Ctx,
    node: &ActionNode,
    key: &str,
) -> Result<(), ActionError> {
    let Some(root) = ctx.overlay_root.clone() else {
        ctx.log.debug("no test overlay (no test definitions)");
        return Ok(());
    };
    let path = ctx
        .downloads
        .get(key)
        .cloned()
        .ok_or_else(|| ActionError::bug(format!("image '{key}' was not downloaded")))?;
    let partition = match ctx.block(node) {
        Some(ActionBlock::Deploy(d)) => d
            .images
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, i)| i.root_partition),
        _ => None,
    };
    let what = format!("image '{key}'");
    let span = match partition {
        Some(p) => {
            let at = path.clone();
            Some(
                ctx.tasks
                    .run(move |_| mbr_partition(&at, p))
                    .await?
                    .map_err(|e| ActionError::job(format!("{what}: {e}")))?,
            )
        }
        None => None,
    };
    let offset = span.map_or(0, |(o, _)| o);
    let at = path.clone();
    if !ctx.tasks.run(move |_| is_ext(&at, offset)).await? {
        return match partition {
            Some(p) => Err(ActionError::job(format!(
                "{what}: root_partition {p} (at byte {offset}) is not an ext2/3/4 filesystem: basalt writes the overlay into ext2/3/4 only"
            ))),
            None => {
                ctx.log.warning(format!(
                    "{what} has no root_partition and is not an ext2/3/4 filesystem: the overlay is not put into it (a test shell then needs transfer_overlay)"
                ));
                Ok(())
            }
        };
    }
    let tree = root.clone();
    let (cmds, bytes) = ctx
        .tasks
        .run(move |cancel| crate::overlay::ext::script(&tree, cancel))
        .await?
        .map_err(|e| e.into_action(&what))?;
    let image_dir = path.parent().unwrap_or(&ctx.workdir).to_path_buf();
    let stem = key.replace(['/', '.'], "_");
    let file = image_dir.join(format!("apply-{stem}.debugfs"));
    std::fs::write(&file, &cmds)
        .map_err(|e| ActionError::infra_from("cannot write the debugfs script", e))?;
    let part = image_dir.join(format!("apply-{stem}.part"));
    let target = match span {
        Some((o, len)) => {
            let (from, to) = (path.clone(), part.clone());
            ctx.tasks
                .run(move |cancel| copy_range(&from, o, len, &to, 0, cancel))
                .await?
                .map_err(|e| ActionError::infra_from("cannot copy the root partition out", e))?;
            part.clone()
        }
        None => path.clone(),
    };
    let policy = ctx.policy(&[&image_dir, &root], false, &[]);
    let r = crate::overlay::ext::run_script(&target, &file, &policy).await;
    let _ = std::fs::remove_file(&file);
    let r = match (r, span) {
        (Ok(()), Some((o, len))) => {
            let (from, to) = (part.clone(), path.clone());
            ctx.tasks
                .run(move |cancel| copy_range(&from, 0, len, &to, o, cancel))
                .await?
                .map_err(|e| ActionError::infra_from("cannot copy the root partition back", e))
        }
        (Ok(()), None) => Ok(()),
        (Err(e), _) => Err(ActionError::job(format!("{what}: {e}"))),
    };
    let _ = std::fs::remove_file(&part);
    r?;
    ctx.overlay_applied = true;
    ctx.log.info(format!(
        "wrote {bytes} bytes of overlay into {} at byte {offset}",
        path.display()
    ));
    Ok(())
}

// ---- dd-image --------------------------------------------------------------------------------

/// `dd-image`: the running system writes the image onto the medium, then reads it back.
#[derive(Debug)]
pub struct DdImage;

/// What the device shell prints for basalt: `basalt-dd-<name>=<value>` (the command line
/// itself, echoed, never matches: it has `%s` where the name is).
fn marker(name: &str, value_re: &str) -> basalt_hal::console::expect::Regex {
    pattern(&format!("basalt-dd-{name}=({value_re})"))
}

fn report(name: &str, value: &str) -> String {
    format!("printf 'basalt-dd-%s=%s\\n' {name} {value}")
}

/// The `/dev/disk/by-id/...` path of the deploy's medium.
fn media_path(device: &crate::device::Device, d: &Deploy) -> Result<String, String> {
    let iface = d.to.name();
    let label = d.media_device.as_deref().unwrap_or_default();
    let uuid = device
        .node
        .path(&["parameters", "media", iface, label, "uuid"])
        .and_then(Node::scalar_text)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            format!(
                "device '{}' has no uuid for {iface} media '{label}'",
                device.hostname
            )
        })?;
    if uuid.contains('/') || uuid == ".." || uuid.contains(['\n', '\0']) {
        return Err(format!("{iface} media '{label}': bad uuid '{uuid}'"));
    }
    Ok(format!("/dev/disk/by-id/{uuid}"))
}

/// `tool` + `options` of a `download:` / `writer:` block.
fn tool_line(n: &Node) -> Option<String> {
    let tool = n.get("tool").and_then(Node::scalar_text)?;
    let options = n
        .get("options")
        .and_then(Node::scalar_text)
        .unwrap_or_default();
    Some(format!("{tool} {options}").trim().to_string())
}

#[async_trait::async_trait]
impl Action for DdImage {
    fn name(&self) -> &'static str {
        "dd-image"
    }
    fn description(&self) -> &'static str {
        "write the image to the media with dd and verify it"
    }
    fn validate(&self, c: &Check<'_>) -> Result<(), String> {
        match c.node.block.and_then(|b| c.job.actions.get(b)) {
            Some(ActionBlock::Deploy(d)) => {
                media_path(c.device, d)?;
                let before = c.node.block.unwrap_or(0);
                let booted = c.job.actions[..before]
                    .iter()
                    .any(|a| matches!(a, ActionBlock::Boot(_)));
                if !booted {
                    return Err(format!(
                        "deploy to {}: the image is written from a running system, but no boot comes before this deploy",
                        d.to.name()
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    async fn run(&self, ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
        dd_image(ctx, node).await
    }
}

/// The prompts of the running system: the deploy's `tool: {prompts}`, else those of the last
/// boot before it.
fn shell_prompts(ctx: &Ctx, node: &ActionNode, d: &Deploy) -> Vec<String> {
    let tool: Vec<String> = match d.node.path(&["tool", "prompts"]) {
        Some(n) => match n.as_seq() {
            Some(seq) => seq.iter().filter_map(Node::scalar_text).collect(),
            None => n.scalar_text().into_iter().collect(),
        },
        None => Vec::new(),
    };
    if !tool.is_empty() {
        return tool;
    }
    let before = node.block.unwrap_or(0);
    ctx.job.actions[..before]
        .iter()
        .rev()
        .find_map(|a| match a {
            ActionBlock::Boot(b) if !b.prompts.is_empty() => Some(b.prompts.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The sha256 and size of `path` (blocking).
fn sha256_file(
    path: &Path,
    cancel: &crate::host::blocking::Cancel,
) -> std::io::Result<(String, u64)> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        cancel.check()?;
        let got = f.read(&mut buf)?;
        if got == 0 {
            break;
        }
        h.update(&buf[..got]);
        n += got as u64;
    }
    let hex = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((hex, n))
}

async fn dd_image(ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
    let d = match ctx.block(node) {
        Some(ActionBlock::Deploy(d)) => d.clone(),
        _ => return Err(ActionError::bug("dd-image outside a deploy block")),
    };
    let device = media_path(&ctx.device, &d).map_err(ActionError::job)?;
    // `image:` or `images: {image: ...}`; else the deploy's first image
    let key = d
        .images
        .iter()
        .map(|(k, _)| k.as_str())
        .find(|k| *k == IMAGE)
        .or_else(|| d.images.first().map(|(k, _)| k.as_str()))
        .unwrap_or(IMAGE)
        .to_string();
    let image =
        ctx.downloads.get(&key).cloned().ok_or_else(|| {
            ActionError::bug(format!("dd-image: image '{key}' was not downloaded"))
        })?;
    let prompts = shell_prompts(ctx, node, &d);
    if prompts.is_empty() {
        return Err(ActionError::job(
            "dd-image: no shell prompt to wait for: give the boot before this deploy 'prompts' (or the deploy 'tool: {prompts: [...]}')",
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(node.timeout.max(1));
    let left = || deadline.saturating_duration_since(Instant::now());
    let at = image.clone();
    let (sha256, size) = ctx
        .tasks
        .run(move |cancel| sha256_file(&at, cancel))
        .await?
        .map_err(|e| ActionError::infra_from(format!("cannot read {}", image.display()), e))?;
    ctx.log.debug(format!(
        "image {}: {size} bytes, sha256 {sha256}",
        image.display()
    ));
    if ctx.file_server.is_none() {
        let ip = ctx.server_ip.clone();
        let server = crate::host::http::FileServer::start(&ip)
            .await
            .map_err(|e| ActionError::infra_from(format!("cannot serve files on {ip}"), e))?;
        ctx.file_server = Some(server);
    }
    let name = format!(
        "{}-{}",
        ctx.job_id.replace(['/', ' '], "_"),
        key.replace(['/', ' '], "_")
    );
    let url = ctx
        .file_server
        .as_ref()
        .map(|s| s.publish(&name, image.clone()))
        .ok_or_else(|| ActionError::bug("no file server"))?;
    let download = d
        .download_tool
        .as_ref()
        .and_then(tool_line)
        .unwrap_or_else(|| "wget -q -O - {DOWNLOAD_URL}".into())
        .replace("{DOWNLOAD_URL}", &single_quoted(&url));
    let writer = d
        .writer
        .as_ref()
        .and_then(tool_line)
        .unwrap_or_else(|| "dd of={DEVICE} bs=4M".into())
        .replace("{DEVICE}", &single_quoted(&device));
    let qdev = single_quoted(&device);
    let delay = Duration::from_millis(ctx.device.character_delays.test_ms);
    let prompt_pats: Vec<_> = prompts.iter().map(|p| pattern(p)).collect();

    // 1. the medium is there
    let cmd = format!(
        "test -b {qdev} && {} || {{ ls -l /dev/disk/by-id/; {}; }}",
        report("media", "present"),
        report("media", "missing")
    );
    ctx.session()?.send_line(&cmd, delay).await?;
    let m = expect(
        ctx,
        &[marker("media", "present|missing")],
        left(),
        "dd-image: the medium",
    )
    .await?;
    if m.first().map(String::as_str) != Some("present") {
        return Err(ActionError::infra(format!(
            "dd-image: the medium {device} is not there on the running system (its /dev/disk/by-id is listed above)"
        ))
        .caused_by(FailureCause::Infrastructure));
    }
    expect(ctx, &prompt_pats, left(), "dd-image: the shell prompt").await?;

    // 2. download | writer
    ctx.log
        .info(format!("writing {url} to {device}: {download} | {writer}"));
    let cmd = format!("{download} | {writer}; {}", report("write", "$?"));
    ctx.session()?.send_line(&cmd, delay).await?;
    let m = expect(
        ctx,
        &[marker("write", "[0-9]+")],
        left(),
        "dd-image: writing the medium",
    )
    .await?;
    let code = m.first().cloned().unwrap_or_default();
    if code != "0" {
        return Err(ActionError::infra(format!(
            "dd-image: writing {device} failed: '{download} | {writer}' exited with {code}"
        )));
    }
    expect(ctx, &prompt_pats, left(), "dd-image: the shell prompt").await?;

    // 3. read back what was written, past the page cache
    let cmd = format!(
        "sync; echo 3 > /proc/sys/vm/drop_caches; {}",
        report(
            "sha256",
            &format!("\"$(head -c {size} {qdev} | sha256sum)\"")
        )
    );
    ctx.session()?.send_line(&cmd, delay).await?;
    let m = expect(
        ctx,
        &[marker("sha256", "[0-9a-f]{64}")],
        left(),
        "dd-image: reading the medium back",
    )
    .await?;
    let got = m.first().cloned().unwrap_or_default();
    expect(ctx, &prompt_pats, left(), "dd-image: the shell prompt").await?;
    if got != sha256 {
        return Err(ActionError::infra(format!(
            "dd-image: checksum mismatch after writing {device}: the medium's first {size} bytes have sha256 {got}, the image {sha256}"
        ))
        .caused_by(FailureCause::Infrastructure));
    }
    ctx.log.info(format!(
        "{device}: {size} bytes written and verified (sha256 {sha256})"
    ));
    Ok(())
}

/// Waits for one of `pats`; returns the first capture group of the match (if any).
async fn expect(
    ctx: &mut Ctx,
    pats: &[basalt_hal::console::expect::Regex],
    timeout: Duration,
    what: &str,
) -> Result<Vec<String>, ActionError> {
    if timeout.is_zero() {
        return Err(ActionError::timeout(format!("{what}: no time left")));
    }
    let m = ctx
        .session()?
        .expect(pats, timeout)
        .await
        .map_err(|e| ActionError::expect(what, e))?;
    Ok(m.groups.into_iter().skip(1).flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::testing::{fixture_at, run_tree, Fixture};
    use basalt_hal::console::fake::{FakeConsole, Step};

    const JOB: &str = "
device_type: beaglebone-black
job_name: usb over fakes
timeouts: {job: {minutes: 2}, action: {seconds: 20}}
priority: medium
visibility: public
actions:
- deploy:
    to: tftp
    os: oe
    kernel: {url: 'file:///k', type: zimage}
    ramdisk: {url: 'file:///r'}
- boot:
    method: u-boot
    commands: ramdisk
    prompts: ['/ # ']
- deploy:
    to: usb
    os: oe
    device: stick
    image: {url: 'file:///disk.img'}
- boot:
    method: u-boot
    commands: usb
    kernel: /boot/zImage
    ramdisk: /boot/initrd
    dtb: /boot/board.dtb
    kernel_type: zimage
    root_uuid: UUID=1234
    boot_part: 2
    prompts: ['/ # ']
";

    /// The job on a BeagleBone Black with a USB stick `stick`.
    fn bbb_with_a_stick() -> (Fixture, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dict = dir.path().join("bbb-usb.jinja2");
        std::fs::write(
            &dict,
            "{% extends 'beaglebone-black.jinja2' %}\n\
             {% set connection_command = 'telnet 127.0.0.1 7001' %}\n\
             {% set hard_reset_command = 'true' %}\n\
             {% set usb_label = 'stick' %}\n{% set usb_uuid = 'usb-Fake_Stick_42-0:0' %}\n\
             {% set usb_device_id = 1 %}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        (fixture_at(&dict, JOB, Vec::new()), dir)
    }

    /// The shell of the running system answering dd-image: the medium is there, the writer
    /// exits 0, the read-back has `sha256`.
    fn shell(sha256: &str) -> FakeConsole {
        FakeConsole::new(vec![
            Step::wait_for("test -b '/dev/disk/by-id/usb-Fake_Stick_42-0:0'"),
            Step::print("\r\nbasalt-dd-media=present\r\n/ # "),
            Step::wait_for("| dd of='/dev/disk/by-id/usb-Fake_Stick_42-0:0' bs=4M"),
            Step::print("\r\n1+0 records out\r\nbasalt-dd-write=0\r\n/ # "),
            Step::wait_for("head -c 5 '/dev/disk/by-id/usb-Fake_Stick_42-0:0' | sha256sum"),
            Step::print(&format!("\r\nbasalt-dd-sha256={sha256}  -\r\n/ # ")),
        ])
    }

    async fn dd_image_over(sha256: &str) -> (Result<Vec<&'static str>, ActionError>, String) {
        let (mut f, _dir) = bbb_with_a_stick();
        let deploy = f.pipeline.actions[2].clone();
        assert_eq!(deploy.name(), "storage-deploy");
        let dd = deploy
            .children
            .iter()
            .find(|n| n.name() == "dd-image")
            .cloned()
            .unwrap_or_else(|| panic!("no dd-image"));
        let ctx = &mut f.ctx;
        ctx.server_ip = "127.0.0.1".into();
        let image = ctx.workdir.join("downloads/image/disk.img");
        std::fs::create_dir_all(image.parent().unwrap_or(&ctx.workdir))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&image, b"hello").unwrap_or_else(|e| panic!("{e}"));
        ctx.downloads.insert(IMAGE.into(), image);
        let console = shell(sha256);
        let stream = basalt_hal::console::Console::connect(&console)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        ctx.session = Some(crate::action::context::open_session(
            &ctx.log, stream, "fake",
        ));
        let r = run_tree(ctx, &dd).await;
        (r, console.received())
    }

    const HELLO_SHA256: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[tokio::test]
    async fn dd_image_writes_by_the_stable_id_and_verifies() {
        let (r, sent) = dd_image_over(HELLO_SHA256).await;
        r.unwrap_or_else(|e| panic!("{e}"));
        assert!(sent.contains("wget -q -O - 'http://127.0.0.1:"), "{sent}");
        assert!(sent.contains("echo 3 > /proc/sys/vm/drop_caches"), "{sent}");
    }

    #[tokio::test]
    async fn a_read_back_that_differs_is_the_medium_s_fault() {
        let (r, _) = dd_image_over(&"0".repeat(64)).await;
        let e = r.expect_err("a mismatch fails");
        assert_eq!(e.kind, crate::error::ErrorType::Infrastructure);
        assert_eq!(e.cause(), FailureCause::Infrastructure);
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
        assert!(e.to_string().contains("dd-image"), "{e}");
    }

    #[tokio::test]
    async fn a_usb_boot_loads_from_the_medium() {
        let (mut f, _dir) = bbb_with_a_stick();
        let boot = f.pipeline.actions[3].clone();
        let overlay = boot
            .children
            .iter()
            .find(|n| n.name() == "bootloader-overlay")
            .cloned()
            .unwrap_or_else(|| panic!("no bootloader-overlay"));
        overlay
            .action
            .run(&mut f.ctx, &overlay)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let cmds = f.ctx.boot_commands.join("\n");
        assert!(cmds.contains("usb start"), "{cmds}");
        assert!(
            cmds.contains("load usb 1:2 0x82000000 /boot/zImage"),
            "{cmds}"
        );
        assert!(
            cmds.contains("load usb 1:2 0x83000000 /boot/initrd"),
            "{cmds}"
        );
        assert!(
            cmds.contains("load usb 1:2 0x88000000 /boot/board.dtb"),
            "{cmds}"
        );
        assert!(cmds.contains("root=UUID=1234"), "{cmds}");
        assert!(cmds.contains("bootz 0x82000000 0x83000000"), "{cmds}");
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(single_quoted("a b"), "'a b'");
        assert_eq!(single_quoted("it's"), "'it'\\''s'");
    }

    #[test]
    fn finds_mbr_partitions() {
        let dir = std::env::temp_dir().join(format!("basalt-mbr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let img = dir.join("disk.img");
        let mut mbr = vec![0u8; 512];
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        let e = 446 + 16;
        mbr[e + 4] = 0x83;
        mbr[e + 8..e + 12].copy_from_slice(&4096u32.to_le_bytes());
        mbr[e + 12..e + 16].copy_from_slice(&100u32.to_le_bytes());
        std::fs::write(&img, &mbr).expect("image");
        assert_eq!(mbr_partition(&img, 1), Ok((4096 * 512, 100 * 512)));
        assert!(mbr_partition(&img, 0).is_err(), "empty");
        assert!(mbr_partition(&img, 4).is_err(), "no fifth");
        assert!(mbr_partition(&img, -1).is_err());
        std::fs::write(&img, [0u8; 512]).expect("image");
        assert!(mbr_partition(&img, 0).is_err(), "no signature");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
