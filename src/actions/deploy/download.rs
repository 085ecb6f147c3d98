//! `download-retry` with its handler: `http-download` for http(s) URLs, `file-download` for
//! `file://` URLs; extra image overlays are downloaded as nested `download-retry` actions and
//! applied by `append-overlays`.

use crate::job::ImageRef;
use crate::pipeline::build::{Builder, PipelineError, Scope};
use crate::pipeline::{ActionKind, ActionNode};
use crate::yaml::Node;

/// URL schemes basalt downloads from.
pub const SCHEMES: &[&str] = &["http", "https", "file"];

/// The scheme of a URL (`http`, `file`, ...), lower-cased.
pub fn scheme(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once("://")?;
    Some(scheme.to_ascii_lowercase())
}

fn handler(
    b: &Builder<'_>,
    s: &Scope<'_>,
    key: &str,
    url: &str,
) -> Result<ActionKind, PipelineError> {
    match scheme(url).as_deref() {
        Some("http" | "https") => Ok(ActionKind::HttpDownload {
            key: key.into(),
            url: url.into(),
        }),
        Some("file") => Ok(ActionKind::FileDownload {
            key: key.into(),
            url: url.into(),
        }),
        Some(other) => Err(s.error(
            b,
            format!(
                "{key}: unsupported URL scheme '{other}' in '{url}'; basalt downloads {}",
                SCHEMES.join(", ")
            ),
        )),
        None => Err(s.error(
            b,
            format!("{key}: '{url}' is not a URL (expected scheme://...)"),
        )),
    }
}

/// Adds `download-retry` for image `key` to `parent`.
pub(crate) fn download(
    b: &Builder<'_>,
    s: &Scope<'_>,
    parent: &mut ActionNode,
    key: &str,
    img: &ImageRef,
) -> Result<(), PipelineError> {
    let kind = handler(b, s, key, &img.url)?;
    let retry = b.child(s, parent, ActionKind::DownloadRetry { key: key.into() });
    b.child(s, retry, kind);
    if let Some(overlays) = img.overlays.as_ref().and_then(Node::as_map) {
        for (k, v) in overlays {
            let Some(name) = k.as_str().filter(|n| *n != "lava") else {
                continue;
            };
            let url = v.get("url").and_then(Node::as_str).unwrap_or_default();
            let sub_key = format!("{key}.{name}");
            let kind = handler(b, s, &sub_key, url)?;
            let nested = b.child(s, retry, ActionKind::DownloadRetry { key: sub_key });
            b.child(s, nested, kind);
        }
        if !overlays.is_empty() {
            b.child(s, retry, ActionKind::AppendOverlays { key: key.into() });
        }
    }
    Ok(())
}

// ---- running -------------------------------------------------------------------------------

use crate::job::{ActionBlock, Compression};
use crate::run::error::io_err;
use crate::run::{ActionError, Ctx};
use md5::Md5;
use sha2::{Digest, Sha256, Sha512};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to check and how to unpack one download.
#[derive(Clone, Debug, Default)]
pub struct Fetch {
    pub url: String,
    pub compression: Option<Compression>,
    pub md5sum: Option<String>,
    pub sha256sum: Option<String>,
    pub sha512sum: Option<String>,
    pub headers: Vec<(String, String)>,
}

/// Hashes and counts the bytes read through it (the checksums are of the downloaded,
/// still compressed, data) and reports progress.
struct Tap<R> {
    inner: R,
    md5: Option<Md5>,
    sha256: Option<Sha256>,
    sha512: Option<Sha512>,
    read: u64,
    total: Option<u64>,
    last: Instant,
    progress: Box<dyn FnMut(u64, Option<u64>) + Send>,
    cancel: Option<Arc<AtomicBool>>,
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Err(std::io::Error::other(
                "download cancelled (its action timed out)",
            ));
        }
        let n = self.inner.read(buf)?;
        let data = &buf[..n];
        if let Some(h) = self.md5.as_mut() {
            h.update(data);
        }
        if let Some(h) = self.sha256.as_mut() {
            h.update(data);
        }
        if let Some(h) = self.sha512.as_mut() {
            h.update(data);
        }
        self.read += n as u64;
        if self.last.elapsed() >= Duration::from_secs(2) {
            self.last = Instant::now();
            (self.progress)(self.read, self.total);
        }
        Ok(n)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a download failed, classified: a bad URL or checksum is the job's fault, a network or
/// disk failure the lab's.
fn classify_ureq(url: &str, e: ureq::Error) -> ActionError {
    match e {
        ureq::Error::Status(code, _) if (400..500).contains(&code) => {
            ActionError::job(format!("{url}: HTTP {code}"))
        }
        ureq::Error::Status(code, _) => ActionError::infra(format!("{url}: HTTP {code}")),
        ureq::Error::Transport(t) => ActionError::infra(format!("{url}: {t}")),
    }
}

/// Downloads `f.url` to `dest`, decompressing and checking the checksums in one pass.
/// Returns the number of bytes downloaded (before decompression). Blocking: run it in
/// `spawn_blocking`.
pub fn fetch_blocking(
    f: &Fetch,
    dest: &Path,
    progress: Box<dyn FnMut(u64, Option<u64>) + Send>,
) -> Result<u64, ActionError> {
    fetch_cancellable(f, dest, progress, None)
}

/// Sets the flag when dropped: the download's future was dropped (its action timed out).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// [`fetch_blocking`] that stops at its next read once `cancel` is set.
fn fetch_cancellable(
    f: &Fetch,
    dest: &Path,
    progress: Box<dyn FnMut(u64, Option<u64>) + Send>,
    cancel: Option<Arc<AtomicBool>>,
) -> Result<u64, ActionError> {
    let (reader, total): (Box<dyn Read + Send>, Option<u64>) = match scheme(&f.url).as_deref() {
        Some("file") => {
            let path = f.url.trim_start_matches("file://");
            let file = std::fs::File::open(path)
                .map_err(|e| ActionError::job(format!("{}: {e}", f.url)))?;
            let len = file.metadata().ok().map(|m| m.len());
            (Box::new(file), len)
        }
        Some("http" | "https") => {
            let agent = ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(30))
                .timeout_read(Duration::from_secs(60))
                .build();
            let mut req = agent.get(&f.url);
            for (k, v) in &f.headers {
                req = req.set(k, v);
            }
            let resp = req.call().map_err(|e| classify_ureq(&f.url, e))?;
            let len = resp.header("Content-Length").and_then(|l| l.parse().ok());
            (Box::new(resp.into_reader()), len)
        }
        _ => return Err(ActionError::job(format!("unsupported URL '{}'", f.url))),
    };
    let mut tap = Tap {
        inner: reader,
        md5: f.md5sum.as_ref().map(|_| Md5::new()),
        sha256: f.sha256sum.as_ref().map(|_| Sha256::new()),
        sha512: f.sha512sum.as_ref().map(|_| Sha512::new()),
        read: 0,
        total,
        last: Instant::now(),
        progress,
        cancel,
    };
    let out = std::fs::File::create(dest).map_err(|e| io_err(&dest.display().to_string(), e))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
    let copy = |r: &mut dyn Read, w: &mut dyn Write| std::io::copy(r, w);
    let res = match f.compression {
        None => copy(&mut tap, &mut out),
        Some(Compression::Gz) => copy(&mut flate2::read::MultiGzDecoder::new(&mut tap), &mut out),
        Some(Compression::Xz) => copy(
            &mut xz2::read::XzDecoder::new_multi_decoder(&mut tap),
            &mut out,
        ),
        Some(Compression::Bz2) => copy(&mut bzip2::read::MultiBzDecoder::new(&mut tap), &mut out),
        Some(Compression::Zstd) => match zstd::stream::read::Decoder::new(&mut tap) {
            Ok(mut d) => copy(&mut d, &mut out),
            Err(e) => Err(e),
        },
        Some(Compression::Zip) => {
            return Err(ActionError::job(
                "zip archives are not handled; use gz, xz, bz2 or zstd",
            ))
        }
    };
    res.map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData
        | std::io::ErrorKind::InvalidInput
        | std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::Other
            if f.compression.is_some() =>
        {
            ActionError::job(format!(
                "{}: cannot decompress as {:?}: {e}",
                f.url,
                f.compression.unwrap_or(Compression::Gz)
            ))
        }
        _ => ActionError::infra(format!("{}: {e}", f.url)),
    })?;
    out.flush()
        .map_err(|e| io_err(&dest.display().to_string(), e))?;
    let checks: [(&str, Option<&String>, Option<String>); 3] = [
        (
            "md5sum",
            f.md5sum.as_ref(),
            tap.md5.take().map(|h| hex(&h.finalize())),
        ),
        (
            "sha256sum",
            f.sha256sum.as_ref(),
            tap.sha256.take().map(|h| hex(&h.finalize())),
        ),
        (
            "sha512sum",
            f.sha512sum.as_ref(),
            tap.sha512.take().map(|h| hex(&h.finalize())),
        ),
    ];
    for (name, want, got) in checks {
        if let (Some(want), Some(got)) = (want, got) {
            if !want.eq_ignore_ascii_case(&got) {
                return Err(ActionError::job(format!(
                    "{}: {name} mismatch: expected {want}, got {got}",
                    f.url
                )));
            }
        }
    }
    Ok(tap.read)
}

/// A file name for a download: the URL's last segment, without the compression suffix when
/// it is decompressed, reduced to safe characters.
fn file_name(url: &str, compression: Option<Compression>) -> String {
    let last = url.rsplit('/').next().unwrap_or("download");
    let last = last.split(['?', '#']).next().unwrap_or(last);
    let mut name: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Some(c) = compression {
        let suffix = match c {
            Compression::Gz => ".gz",
            Compression::Xz => ".xz",
            Compression::Bz2 => ".bz2",
            Compression::Zstd => ".zst",
            Compression::Zip => ".zip",
        };
        if let Some(stripped) = name.strip_suffix(suffix) {
            name = stripped.to_string();
        }
    }
    if name.is_empty() || name.starts_with('.') {
        name.insert_str(0, "download");
    }
    name
}

/// The image of the job's deploy block this download belongs to (`key` may be
/// `label.overlay` for an image's extra overlay).
fn image_fetch(ctx: &Ctx, block: Option<usize>, key: &str) -> Result<Fetch, ActionError> {
    let Some(ActionBlock::Deploy(d)) = block.and_then(|b| ctx.job.actions.get(b)) else {
        return Err(ActionError::bug("download outside a deploy block"));
    };
    let (label, sub) = match key.split_once('.') {
        Some((l, s)) => (l, Some(s)),
        None => (key, None),
    };
    let (_, img) = d
        .images
        .iter()
        .find(|(k, _)| k == label)
        .ok_or_else(|| ActionError::bug(format!("no image '{label}'")))?;
    match sub {
        None => Ok(Fetch {
            url: img.url.clone(),
            compression: img.compression,
            md5sum: img.md5sum.clone(),
            sha256sum: img.sha256sum.clone(),
            sha512sum: img.sha512sum.clone(),
            headers: img.headers.clone(),
        }),
        Some(name) => {
            let ov = img
                .overlays
                .as_ref()
                .and_then(|o| o.get(name))
                .ok_or_else(|| ActionError::bug(format!("no overlay '{name}'")))?;
            let text = |k: &str| ov.get(k).and_then(Node::scalar_text);
            Ok(Fetch {
                url: text("url").unwrap_or_default(),
                compression: text("compression").and_then(|c| Compression::from_name(&c)),
                md5sum: text("md5sum"),
                sha256sum: text("sha256sum"),
                sha512sum: text("sha512sum"),
                headers: Vec::new(),
            })
        }
    }
}

/// `http-download` / `file-download`: fetch one image into the job's directory.
pub(crate) async fn run(
    ctx: &mut Ctx,
    node: &ActionNode,
    key: &str,
    url: &str,
) -> Result<(), ActionError> {
    let fetch = image_fetch(ctx, node.block, key)?;
    let in_tftp = matches!(node.block.and_then(|b| ctx.job.actions.get(b)), Some(ActionBlock::Deploy(d)) if d.to == crate::job::DeployTo::Tftp);
    let base = match (&ctx.tftp_dir, in_tftp) {
        (Some(t), true) => t.clone(),
        _ => ctx.workdir.join("downloads"),
    };
    let dir = base.join(key.replace(['/', '.'], "_"));
    std::fs::create_dir_all(&dir).map_err(|e| io_err("download directory", e))?;
    let dest = dir.join(file_name(url, fetch.compression));
    let log = ctx.log.clone();
    let what = url.to_string();
    let started = Instant::now();
    let progress = Box::new(move |done: u64, total: Option<u64>| {
        let pct = total
            .filter(|t| *t > 0)
            .map(|t| format!(" {:3}%", done * 100 / t))
            .unwrap_or_default();
        log.info(format!(
            "progress{pct} {:.1} MiB of {what}",
            done as f64 / 1_048_576.0
        ));
    });
    ctx.log
        .info(format!("downloading {url} to {}", dest.display()));
    let d = dest.clone();
    let cancel = Arc::new(AtomicBool::new(false));
    let _cancel_on_timeout = CancelOnDrop(cancel.clone());
    let bytes =
        tokio::task::spawn_blocking(move || fetch_cancellable(&fetch, &d, progress, Some(cancel)))
            .await
            .map_err(|e| ActionError::bug(format!("download task: {e}")))??;
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    ctx.log.info(format!(
        "downloaded {key}: {:.1} MiB in {:.2} s ({:.1} MiB/s)",
        bytes as f64 / 1_048_576.0,
        secs,
        bytes as f64 / 1_048_576.0 / secs
    ));
    if in_tftp {
        use std::os::unix::fs::PermissionsExt;
        // The TFTP server may run as another user: staged files are world-readable.
        for (p, mode) in [(&dir, 0o755), (&dest, 0o644)] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                .map_err(|e| io_err("tftp staging", e))?;
        }
    }
    ctx.downloads.insert(key.to_string(), dest);
    Ok(())
}

/// Downloads a test definition tarball (`from: url`) and unpacks it into `dir`.
pub(crate) async fn fetch_tarball(
    log: &crate::log::JobLog,
    url: &str,
    compression: Option<Compression>,
    dir: &Path,
) -> Result<(), ActionError> {
    let tmp = dir.with_extension("download");
    let fetch = Fetch {
        url: url.to_string(),
        compression,
        ..Fetch::default()
    };
    let t = tmp.clone();
    tokio::task::spawn_blocking(move || fetch_blocking(&fetch, &t, Box::new(|_, _| {})))
        .await
        .map_err(|e| ActionError::bug(format!("download task: {e}")))??;
    let file = std::fs::File::open(&tmp).map_err(|e| io_err("test definition tarball", e))?;
    let mut archive = tar::Archive::new(file);
    // tar's unpack refuses members that would land outside `dir`.
    let res = archive
        .unpack(dir)
        .map_err(|e| ActionError::job(format!("{url}: not a tar archive: {e}")));
    let _ = std::fs::remove_file(&tmp);
    log.debug(format!("unpacked {url} into {}", dir.display()));
    res
}

/// `append-overlays`: add the test overlay (`overlays: {lava: true}`) and the image's other
/// overlays to a cpio ramdisk, as extra cpio segments (the kernel unpacks concatenated
/// archives in order; a gzip ramdisk gets a gzip segment), or into an ext2/3/4 filesystem
/// image with e2fsprogs' debugfs (no mount, no root needed).
pub(crate) async fn run_append_overlays(ctx: &mut Ctx, key: &str) -> Result<(), ActionError> {
    let Some(path) = ctx.downloads.get(key).cloned() else {
        return Err(ActionError::bug(format!(
            "image '{key}' was not downloaded"
        )));
    };
    let (format, lava, others) = {
        let img = ctx
            .job
            .actions
            .iter()
            .find_map(|a| match a {
                ActionBlock::Deploy(d) => d.images.iter().find(|(k, _)| k == key).map(|(_, i)| i),
                _ => None,
            })
            .ok_or_else(|| ActionError::bug(format!("no image '{key}'")))?;
        let others: Vec<(String, Option<String>, Option<String>)> = img
            .overlays
            .as_ref()
            .and_then(Node::as_map)
            .unwrap_or(&[])
            .iter()
            .filter_map(|(k, v)| {
                let name = k.as_str()?;
                (name != "lava").then(|| {
                    (
                        name.to_string(),
                        v.get("format").and_then(Node::scalar_text),
                        v.get("path").and_then(Node::scalar_text),
                    )
                })
            })
            .collect();
        (img.format.clone(), img.lava_overlay(), others)
    };
    let ext = matches!(format.as_deref(), Some("ext2" | "ext3" | "ext4"));
    if format.as_deref() != Some("cpio.newc") && !ext {
        return Err(ActionError::job(format!(
            "image '{key}': overlays go into a 'format: cpio.newc' ramdisk or an ext2/3/4 filesystem image (got {})",
            format.as_deref().unwrap_or("no format")
        )));
    }
    let stage = ctx
        .workdir
        .join(format!("append-{}", key.replace(['/', '.'], "_")));
    std::fs::create_dir_all(&stage).map_err(|e| io_err("overlay staging", e))?;
    if lava {
        match &ctx.overlay_root {
            Some(root) => copy_tree(root, &stage)?,
            None => ctx
                .log
                .debug("no test overlay for this image (no test definitions)"),
        }
    }
    for (name, fmt, target) in others {
        let sub_key = format!("{key}.{name}");
        let src = ctx
            .downloads
            .get(&sub_key)
            .ok_or_else(|| ActionError::bug(format!("overlay '{sub_key}' was not downloaded")))?;
        let target = target.unwrap_or_else(|| "/".into());
        let rel = crate::actions::deploy::overlay::safe_rel_path(target.trim_start_matches('/'))
            .unwrap_or_default();
        let dest = stage.join(rel);
        match fmt.as_deref() {
            Some("tar") => {
                std::fs::create_dir_all(&dest).map_err(|e| io_err("overlay staging", e))?;
                let f = std::fs::File::open(src).map_err(|e| io_err("overlay", e))?;
                tar::Archive::new(f)
                    .unpack(&dest)
                    .map_err(|e| ActionError::job(format!("overlay {name}: {e}")))?;
            }
            _ => {
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| io_err("overlay staging", e))?;
                }
                std::fs::copy(src, &dest).map_err(|e| io_err("overlay", e))?;
            }
        }
    }
    let appended = if ext {
        // debugfs parses the job's image: confined, seeing only the image and the overlay
        let image_dir = path.parent().unwrap_or(&ctx.workdir).to_path_buf();
        let policy = ctx.policy(&[&stage, &image_dir], false, &[]);
        crate::overlay::ext::write_tree(&path, &stage, &policy)
            .await
            .map_err(|e| ActionError::job(format!("image '{key}': {e}")))?
    } else {
        append_cpio_segment(&path, &stage)?
    };
    let _ = std::fs::remove_dir_all(&stage);
    if lava && ctx.overlay_root.is_some() {
        ctx.overlay_applied = true;
    }
    ctx.log.info(format!(
        "appended {appended} bytes of overlay to {}",
        path.display()
    ));
    Ok(())
}

/// Appends the tree `stage` to the cpio ramdisk `path` as one more cpio segment, gzip
/// compressed when the ramdisk is. Returns the bytes appended.
pub(crate) fn append_cpio_segment(path: &Path, stage: &Path) -> Result<usize, ActionError> {
    let mut cpio = Vec::new();
    crate::overlay::cpio::write_tree(stage, &mut cpio).map_err(|e| io_err("overlay cpio", e))?;
    let gz = std::fs::File::open(path)
        .and_then(|mut f| {
            let mut magic = [0u8; 2];
            f.read_exact(&mut magic).map(|_| magic == [0x1f, 0x8b])
        })
        .unwrap_or(false);
    let segment = if gz {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&cpio)
            .map_err(|e| io_err("overlay cpio", e))?;
        enc.finish().map_err(|e| io_err("overlay cpio", e))?
    } else {
        cpio
    };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| io_err(&path.display().to_string(), e))?;
    f.write_all(&segment)
        .map_err(|e| io_err(&path.display().to_string(), e))?;
    Ok(segment.len())
}

pub(crate) fn copy_tree(src: &Path, dst: &Path) -> Result<(), ActionError> {
    let mut todo: Vec<(PathBuf, PathBuf)> = vec![(src.to_path_buf(), dst.to_path_buf())];
    while let Some((s, d)) = todo.pop() {
        std::fs::create_dir_all(&d).map_err(|e| io_err(&d.display().to_string(), e))?;
        for e in std::fs::read_dir(&s).map_err(|e| io_err(&s.display().to_string(), e))? {
            let e = e.map_err(|e| io_err("overlay", e))?;
            let (sp, dp) = (e.path(), d.join(e.file_name()));
            let ft = e.file_type().map_err(|e| io_err("overlay", e))?;
            if ft.is_dir() {
                todo.push((sp, dp));
            } else if ft.is_file() {
                std::fs::copy(&sp, &dp).map_err(|e| io_err(&dp.display().to_string(), e))?;
            }
        }
    }
    Ok(())
}
