//! `download-retry` with its handler: `http-download` for http(s) URLs, `file-download` for
//! `file://` URLs; extra image overlays are downloaded as nested `download-retry` actions and
//! applied by `append-overlays`.

use crate::action::{Action, ActionNode, Builder, PipelineError, Scope};
use crate::job::ImageRef;
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
) -> Result<Download, PipelineError> {
    let d = |file| Download {
        key: key.into(),
        url: url.into(),
        file,
    };
    match scheme(url).as_deref() {
        Some("http" | "https") => Ok(d(false)),
        Some("file") => Ok(d(true)),
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
    let handler_action = handler(b, s, key, &img.url)?;
    let retry = b.child(s, parent, DOWNLOAD_RETRY);
    b.child(s, retry, handler_action);
    if let Some(overlays) = img.overlays.as_ref().and_then(Node::as_map) {
        for (k, v) in overlays {
            let Some(name) = k.as_str().filter(|n| *n != "lava") else {
                continue;
            };
            let url = v.get("url").and_then(Node::as_str).unwrap_or_default();
            let sub_key = format!("{key}.{name}");
            let handler_action = handler(b, s, &sub_key, url)?;
            let nested = b.child(s, retry, DOWNLOAD_RETRY);
            b.child(s, nested, handler_action);
        }
        if !overlays.is_empty() {
            b.child(s, retry, AppendOverlays { key: key.into() });
        }
    }
    Ok(())
}

/// `download-retry`: a download, retried on failure.
const DOWNLOAD_RETRY: crate::action::Group =
    crate::action::retry("download-retry", "download a file, retrying on failure");

/// `http-download` / `file-download`: fetch image `key` from `url` into the job's directory.
#[derive(Debug)]
pub struct Download {
    pub key: String,
    pub url: String,
    /// A `file://` URL (`file-download`).
    pub file: bool,
}

#[async_trait::async_trait]
impl Action for Download {
    fn name(&self) -> &'static str {
        if self.file {
            "file-download"
        } else {
            "http-download"
        }
    }
    fn description(&self) -> &'static str {
        if self.file {
            "copy a local file, decompress and check the checksum"
        } else {
            "download over HTTP(S), decompress and check the checksum"
        }
    }
    fn url(&self) -> Option<&str> {
        Some(&self.url)
    }
    async fn run(&self, ctx: &mut Ctx, node: &ActionNode) -> Result<(), ActionError> {
        run(ctx, node, &self.key, &self.url).await
    }
}

/// `append-overlays`: the extra overlays of image `key` go into it.
#[derive(Debug)]
pub struct AppendOverlays {
    pub key: String,
}

#[async_trait::async_trait]
impl Action for AppendOverlays {
    fn name(&self) -> &'static str {
        "append-overlays"
    }
    fn description(&self) -> &'static str {
        "add extra overlays to an image"
    }
    async fn run(&self, ctx: &mut Ctx, _node: &ActionNode) -> Result<(), ActionError> {
        run_append_overlays(ctx, &self.key).await
    }
}

// ---- running -------------------------------------------------------------------------------

use crate::action::{ActionError, Ctx};
use crate::error::io_err;
use crate::host::blocking::{is_cancelled, Cancel};
use crate::host::limits::{exceeded, Budget, Limited};
use crate::job::{ActionBlock, Compression};
use crate::overlay::tree::{open_file, unpack_tar, TreeError};
use md5::Md5;
use sha2::{Digest, Sha256, Sha512};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
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
    /// Where `file://` URLs may point (`--allow-file-root`); empty: anywhere basalt can read.
    pub roots: Vec<PathBuf>,
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
    cancel: Cancel,
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.cancel.check()?;
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
    fetch_with(
        f,
        dest,
        progress,
        &Cancel::new(),
        &Budget::new(u64::MAX),
        &f.url,
    )
}

/// Checks that `path` (canonicalized) is below one of `roots`: for local git repositories,
/// which git opens itself.
pub fn check_file_root(path: &Path, roots: &[PathBuf]) -> Result<(), String> {
    let outside = || {
        format!(
            "{} is outside the directories this worker serves files from (--allow-file-root {})",
            path.display(),
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if !path.is_absolute() {
        return Err(outside());
    }
    let real = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if roots
        .iter()
        .filter_map(|r| std::fs::canonicalize(r).ok())
        .any(|r| real.starts_with(r))
    {
        Ok(())
    } else {
        Err(outside())
    }
}

/// Opens the file of a `file://` URL. With `roots`, the path must be below one of them and is
/// opened with `openat2(RESOLVE_BENEATH)` from that directory, so neither `..` nor a symlink
/// leads out of it; without, it is opened as the worker's user can open it.
pub fn open_file_url(path: &Path, roots: &[PathBuf]) -> Result<std::fs::File, String> {
    if roots.is_empty() {
        return std::fs::File::open(path).map_err(|e| e.to_string());
    }
    let outside = || {
        format!(
            "outside the directories this worker serves files from (--allow-file-root {})",
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if !path.is_absolute()
        || path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(outside());
    }
    for root in roots {
        let canonical = std::fs::canonicalize(root).ok();
        for r in std::iter::once(root.clone()).chain(canonical) {
            let Ok(rel) = path.strip_prefix(&r) else {
                continue;
            };
            if rel.as_os_str().is_empty() {
                continue;
            }
            return open_beneath(&r, rel).map_err(|e| match e.raw_os_error() {
                Some(code)
                    if code == nix::errno::Errno::EXDEV as i32
                        || code == nix::errno::Errno::ELOOP as i32 =>
                {
                    format!("{}: it leads out of it through a symlink", outside())
                }
                _ => e.to_string(),
            });
        }
    }
    Err(outside())
}

fn open_beneath(root: &Path, rel: &Path) -> std::io::Result<std::fs::File> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    let base = std::fs::File::open(root)?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(&base, rel, how) {
        Ok(fd) => Ok(std::fs::File::from(fd)),
        Err(nix::errno::Errno::ENOSYS) => {
            // Linux before 5.6: canonicalize and check the prefix.
            let real = std::fs::canonicalize(root.join(rel))?;
            if !real.starts_with(std::fs::canonicalize(root)?) {
                return Err(std::io::Error::from_raw_os_error(
                    nix::errno::Errno::EXDEV as i32,
                ));
            }
            open_file(&real)
        }
        Err(e) => Err(e.into()),
    }
}

/// [`fetch_blocking`] that stops once `cancel` is set and charges what it writes to `budget`
/// (`label` names the download in the error when the budget runs out).
pub fn fetch_with(
    f: &Fetch,
    dest: &Path,
    progress: Box<dyn FnMut(u64, Option<u64>) + Send>,
    cancel: &Cancel,
    budget: &Budget,
    label: &str,
) -> Result<u64, ActionError> {
    let (reader, total): (Box<dyn Read + Send>, Option<u64>) = match scheme(&f.url).as_deref() {
        Some("file") => {
            let path = f.url.get("file://".len()..).unwrap_or_default();
            let file = open_file_url(Path::new(path), &f.roots)
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
        cancel: cancel.clone(),
    };
    let out = std::fs::File::create(dest).map_err(|e| io_err(&dest.display().to_string(), e))?;
    let mut out = Limited {
        inner: std::io::BufWriter::with_capacity(1 << 20, out),
        budget,
        cancel,
    };
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
        _ if cancel.is_set() || is_cancelled(&e) => {
            ActionError::timeout(format!("{}: download cancelled", f.url))
        }
        _ if exceeded(&e).is_some() => ActionError::job(format!(
            "{label}: {}",
            exceeded(&e).map(|x| x.to_string()).unwrap_or_default()
        )),
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
            ..Fetch::default()
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
                ..Fetch::default()
            })
        }
    }
}

/// `http-download` / `file-download`: fetch one image into the job's directory.
async fn run(ctx: &mut Ctx, node: &ActionNode, key: &str, url: &str) -> Result<(), ActionError> {
    let mut fetch = image_fetch(ctx, node.block, key)?;
    fetch.roots = ctx.limits.file_roots.clone();
    let in_tftp = matches!(node.block.and_then(|b| ctx.job.actions.get(b)), Some(ActionBlock::Deploy(d)) if d.to == crate::job::DeployTo::Tftp);
    let base = match (&ctx.tftp_dir, in_tftp) {
        (Some(t), true) => t.clone(),
        _ => ctx.workdir.join("downloads"),
    };
    let dir = base.join(key.replace(['/', '.'], "_"));
    std::fs::create_dir_all(&dir).map_err(|e| io_err("download directory", e))?;
    if in_tftp {
        crate::actions::deploy::tftp::stage_dir(ctx, &dir)?;
    }
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
    let budget = ctx.budget.clone();
    let label = format!("image '{key}' ({url})");
    let bytes = ctx
        .tasks
        .run(move |cancel| fetch_with(&fetch, &d, progress, cancel, &budget, &label))
        .await??;
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    ctx.log.info(format!(
        "downloaded {key}: {:.1} MiB in {:.2} s ({:.1} MiB/s)",
        bytes as f64 / 1_048_576.0,
        secs,
        bytes as f64 / 1_048_576.0 / secs
    ));
    if in_tftp {
        crate::actions::deploy::tftp::stage_file(ctx, &dest)?;
    }
    ctx.downloads.insert(key.to_string(), dest);
    Ok(())
}

/// Downloads a test definition tarball (`from: url`) and unpacks it into `dir` (the rules of
/// `overlay::tree`: no hardlinks, devices or absolute symlinks; nothing lands outside `dir`).
pub(crate) async fn fetch_tarball(
    ctx: &mut Ctx,
    url: &str,
    compression: Option<Compression>,
    dir: &Path,
) -> Result<(), ActionError> {
    let tmp = dir.with_extension("download");
    let fetch = Fetch {
        url: url.to_string(),
        compression,
        roots: ctx.limits.file_roots.clone(),
        ..Fetch::default()
    };
    let (t, d, budget) = (tmp.clone(), dir.to_path_buf(), ctx.budget.clone());
    let label = format!("test definitions ({url})");
    ctx.tasks
        .run(move |cancel| -> Result<(), ActionError> {
            let r = fetch_with(&fetch, &t, Box::new(|_, _| {}), cancel, &budget, &label).and_then(
                |_| {
                    let file = std::fs::File::open(&t)
                        .map_err(|e| io_err("test definition tarball", e))?;
                    unpack_tar(std::io::BufReader::new(file), &d, cancel, &budget)
                        .map_err(|e| e.into_action(&fetch.url))
                },
            );
            let _ = std::fs::remove_file(&t);
            r.map(|_| ())
        })
        .await??;
    ctx.log
        .debug(format!("unpacked {url} into {}", dir.display()));
    Ok(())
}

/// `append-overlays`: add the test overlay (`overlays: {lava: true}`) and the image's other
/// overlays to a cpio ramdisk, as extra cpio segments (the kernel unpacks concatenated
/// archives in order; a gzip ramdisk gets a gzip segment), or into an ext2/3/4 filesystem
/// image with e2fsprogs' debugfs (no mount, no root needed).
async fn run_append_overlays(ctx: &mut Ctx, key: &str) -> Result<(), ActionError> {
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
    let overlay_root = if lava {
        if ctx.overlay_root.is_none() {
            ctx.log
                .debug("no test overlay for this image (no test definitions)");
        }
        ctx.overlay_root.clone()
    } else {
        None
    };
    let mut extras = Vec::new();
    for (name, fmt, target) in others {
        let sub_key = format!("{key}.{name}");
        let src =
            ctx.downloads.get(&sub_key).cloned().ok_or_else(|| {
                ActionError::bug(format!("overlay '{sub_key}' was not downloaded"))
            })?;
        let target = target.unwrap_or_else(|| "/".into());
        let rel = crate::actions::deploy::overlay::safe_rel_path(target.trim_start_matches('/'))
            .unwrap_or_default();
        extras.push((name, fmt, src, stage.join(rel)));
    }
    let (st, budget, image) = (stage.clone(), ctx.budget.clone(), path.clone());
    let what = format!("image '{key}'");
    let w = what.clone();
    // Staging and archiving are blocking work: off the runtime, stopped when cancelled.
    let script = ctx
        .tasks
        .run(
            move |cancel| -> Result<(Option<String>, u64), ActionError> {
                if let Some(root) = &overlay_root {
                    crate::overlay::tree::copy_tree(root, &st, cancel)
                        .map_err(|e| e.into_action("test overlay"))?;
                }
                for (name, fmt, src, dest) in &extras {
                    let ov = format!("{w}: overlay {name}");
                    if fmt.as_deref() == Some("tar") {
                        std::fs::create_dir_all(dest).map_err(|e| io_err("overlay staging", e))?;
                        let f = std::fs::File::open(src).map_err(|e| io_err("overlay", e))?;
                        unpack_tar(std::io::BufReader::new(f), dest, cancel, &budget)
                            .map_err(|e| e.into_action(&ov))?;
                    } else {
                        if let Some(parent) = dest.parent() {
                            std::fs::create_dir_all(parent)
                                .map_err(|e| io_err("overlay staging", e))?;
                        }
                        copy_file(src, dest, cancel).map_err(|e| e.into_action(&ov))?;
                    }
                }
                if ext {
                    let (cmds, bytes) =
                        crate::overlay::ext::script(&st, cancel).map_err(|e| e.into_action(&w))?;
                    Ok((Some(cmds), bytes))
                } else {
                    let n =
                        append_cpio_segment(&image, &st, cancel).map_err(|e| e.into_action(&w))?;
                    Ok((None, n))
                }
            },
        )
        .await??;
    let appended = match script {
        (Some(cmds), bytes) => {
            // debugfs parses the job's image: confined, seeing only the image's directory
            // (where its script is) and the overlay
            let image_dir = path.parent().unwrap_or(&ctx.workdir).to_path_buf();
            let file = image_dir.join(format!("append-{}.debugfs", key.replace(['/', '.'], "_")));
            std::fs::write(&file, &cmds).map_err(|e| io_err("debugfs script", e))?;
            let policy = ctx.policy(&[&stage, &image_dir], false, &[]);
            let r = crate::overlay::ext::run_script(&path, &file, &policy).await;
            let _ = std::fs::remove_file(&file);
            r.map_err(|e| ActionError::job(format!("{what}: {e}")))?;
            bytes
        }
        (None, n) => n,
    };
    let st = stage.clone();
    ctx.tasks
        .run(move |_| std::fs::remove_dir_all(&st))
        .await?
        .ok();
    if lava && ctx.overlay_root.is_some() {
        ctx.overlay_applied = true;
    }
    ctx.log.info(format!(
        "appended {appended} bytes of overlay to {}",
        path.display()
    ));
    Ok(())
}

/// Copies one regular file (not through a symlink).
fn copy_file(src: &Path, dest: &Path, cancel: &Cancel) -> Result<u64, TreeError> {
    let mut from = open_file(src).map_err(|e| TreeError::io(src.display(), e))?;
    let mut to = std::fs::File::create(dest).map_err(|e| TreeError::io(dest.display(), e))?;
    crate::host::blocking::copy(&mut from, &mut to, cancel)
        .map_err(|e| TreeError::io(dest.display(), e))
}

/// Appends the tree `stage` to the cpio ramdisk `path` as one more cpio segment, gzip
/// compressed when the ramdisk is, streamed (never whole in memory). Returns the bytes
/// appended; on failure the ramdisk is cut back to what it was. Blocking.
pub(crate) fn append_cpio_segment(
    path: &Path,
    stage: &Path,
    cancel: &Cancel,
) -> Result<u64, TreeError> {
    use std::os::unix::fs::OpenOptionsExt;
    let show = || path.display().to_string();
    let gz = open_file(path)
        .and_then(|mut f| {
            let mut magic = [0u8; 2];
            f.read_exact(&mut magic).map(|_| magic == [0x1f, 0x8b])
        })
        .unwrap_or(false);
    let f = std::fs::OpenOptions::new()
        .append(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .map_err(|e| TreeError::io(show(), e))?;
    let before = f.metadata().map_err(|e| TreeError::io(show(), e))?.len();
    let res = (|| -> Result<(), TreeError> {
        let out = std::io::BufWriter::with_capacity(64 * 1024, &f);
        let io = |e| TreeError::io(show(), e);
        if gz {
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
            crate::overlay::cpio::write_tree(stage, &mut enc, cancel)?;
            enc.finish().map_err(io)?.flush().map_err(io)
        } else {
            let mut out = out;
            crate::overlay::cpio::write_tree(stage, &mut out, cancel)?;
            out.flush().map_err(io)
        }
    })();
    if let Err(e) = res {
        let _ = f.set_len(before);
        return Err(e);
    }
    let after = f.metadata().map_err(|e| TreeError::io(show(), e))?.len();
    Ok(after - before)
}
