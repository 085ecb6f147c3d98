//! The artifact store: files a CI build uploads (kernels, initramfs, disk images) that jobs
//! and boot requests then name as `artifact:NAME`, served to the workers over plain HTTP on
//! an address of the admin's choice (`--artifacts-http`), expired by age, within a quota.
//!
//! On disk, under `STATE/artifacts/`:
//!
//! - `blobs/SHA256` — each file once, named by its content's SHA-256 (two names with the same
//!   content share one blob). Names never become paths, so no name can reach outside the store.
//! - `index.json` — every artifact: name, size, sha256, uploader, created, expires. Rewritten
//!   whole (a temporary file renamed over it) at each change, so it is always either the old
//!   or the new index; blobs it does not name are removed when the master starts.
//! - `tmp/` — uploads in progress, renamed into `blobs/` once complete and hashed.
//!
//! An upload streams the request body to `tmp/` (never held in memory), hashing it as it
//! goes; the quota counts the stored blobs and what uploads in progress reserved (their
//! `Content-Length`, or what they wrote so far when chunked). An upload that would pass the
//! quota first removes expired artifacts, then is refused ([`ArtifactError::Quota`], HTTP 507).
//! Overwriting a name is allowed for its uploader and for admins. A sweeper task removes
//! expired artifacts on a timer set to the next expiry ([`Artifacts::spawn_sweeper`]); an
//! expired artifact is gone for readers at once, whether or not the sweeper has run.
//!
//! The REST API is [`api`], the download listener [`download`], and the rewriting of
//! `artifact:NAME` in job definitions [`job`].

pub mod api;
pub mod download;
pub mod job;
mod name;
mod units;

pub use name::{ArtifactName, NameError, MAX_NAME_LEN, MAX_SEGMENT_LEN};
pub use units::{format_size, parse_duration, parse_size};

use crate::engine::now_ms;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// What `artifact:NAME` starts with in a job definition or a boot request.
pub const SCHEME: &str = "artifact:";

/// The longest the sweeper sleeps, even with no expiry due sooner: a wall clock that jumps is
/// caught within this.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// The upload's write buffer: few, large writes to the temporary file.
const WRITE_BUFFER: usize = 1 << 20;

/// How the store is set up (`--artifact-max-age`, `--artifact-quota`, `--artifacts-url`).
#[derive(Clone, Debug)]
pub struct Config {
    /// The longest an artifact is kept; an upload may ask for less (`?max_age=SECS`).
    pub max_age: Duration,
    /// The most bytes stored, uploads in progress included.
    pub quota: u64,
    /// The download listener's base URL as workers reach it (`http://HOST:PORT`); an
    /// artifact's URL is `BASE/artifacts/NAME`.
    pub base_url: String,
}

/// One stored artifact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub name: ArtifactName,
    /// Bytes.
    pub size: u64,
    /// The content's SHA-256, lowercase hex (the blob's file name and the download's ETag).
    pub sha256: String,
    /// The token's user who uploaded it.
    pub uploader: String,
    /// When it was uploaded, ms since the epoch.
    pub created: u64,
    /// When it expires, ms since the epoch.
    pub expires: u64,
}

impl Artifact {
    /// The artifact as the API shows it: `name`, `size`, `sha256`, `url`, `created`,
    /// `expires` (RFC 3339, UTC), `uploader`.
    pub fn json(&self, base_url: &str) -> Value {
        json!({
            "name": self.name.as_str(),
            "size": self.size,
            "sha256": self.sha256,
            "url": url_of(base_url, &self.name),
            "created": crate::http::rfc3339(self.created),
            "expires": crate::http::rfc3339(self.expires),
            "uploader": self.uploader,
        })
    }
}

/// `BASE/artifacts/NAME`: names are URL-safe as they are.
fn url_of(base_url: &str, name: &ArtifactName) -> String {
    format!("{}/artifacts/{name}", base_url.trim_end_matches('/'))
}

/// Why a store operation failed; each maps to one HTTP status ([`ArtifactError::status`]).
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// 400.
    #[error(transparent)]
    Name(#[from] NameError),
    /// 400: `?max_age=` beyond the master's `--artifact-max-age` (or zero).
    #[error("max_age {asked} s: it must be between 1 and the master's maximum, {max} s")]
    MaxAge { asked: u64, max: u64 },
    /// 400: the request body broke off or could not be read.
    #[error("the upload's body could not be read: {0}")]
    Body(String),
    /// 404.
    #[error("no artifact {0:?}")]
    NotFound(String),
    /// 403: overwriting or deleting another user's artifact without being an admin.
    #[error(
        "artifact {name:?} belongs to {uploader}: only they or an admin may replace or delete it"
    )]
    NotYours { name: String, uploader: String },
    /// 507.
    #[error(
        "artifact quota exceeded: the quota is {}, {} is used (uploads in progress included), this upload needs {} (expired artifacts were removed first)",
        format_size(*quota), format_size(*used), format_size(*asked)
    )]
    Quota { quota: u64, used: u64, asked: u64 },
    /// 500.
    #[error("artifact store: {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// 500: `index.json` cannot be read (the master refuses to start rather than forget).
    #[error("artifact store: {path}: {message} (move it away to start with an empty store)")]
    Index { path: String, message: String },
}

impl ArtifactError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            ArtifactError::Name(_) | ArtifactError::MaxAge { .. } | ArtifactError::Body(_) => 400,
            ArtifactError::NotFound(_) => 404,
            ArtifactError::NotYours { .. } => 403,
            ArtifactError::Quota { .. } => 507,
            ArtifactError::Io { .. } | ArtifactError::Index { .. } => 500,
        }
    }
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError + '_ {
    move |source| ArtifactError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The index file's shape.
#[derive(Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    artifacts: Vec<Artifact>,
}

/// What the lock guards.
#[derive(Default)]
struct Inner {
    index: BTreeMap<ArtifactName, Artifact>,
    /// sha256 → (size, how many names refer to it).
    blobs: HashMap<String, (u64, usize)>,
    /// The sizes of the blobs, summed.
    stored: u64,
    /// What uploads in progress reserved.
    reserved: u64,
}

/// The artifact store (module doc). Shared as an `Arc` by the API, the download listener and
/// the sweeper.
pub struct Artifacts {
    root: PathBuf,
    config: Config,
    inner: Mutex<Inner>,
    /// Wakes the sweeper when an expiry may have moved earlier.
    changed: Arc<tokio::sync::Notify>,
}

impl Artifacts {
    /// Opens (or creates) the store in `root` (`STATE/artifacts`): reads the index, forgets
    /// entries whose blob is missing, removes blobs no entry names and uploads a stop broke
    /// off, and removes what expired meanwhile.
    pub fn open(root: &Path, config: Config) -> Result<Arc<Artifacts>, ArtifactError> {
        for dir in [root.join("blobs"), root.join("tmp")] {
            std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        }
        let index_path = root.join("index.json");
        let listed = match std::fs::read(&index_path) {
            Ok(bytes) => {
                let file: IndexFile =
                    serde_json::from_slice(&bytes).map_err(|e| ArtifactError::Index {
                        path: index_path.display().to_string(),
                        message: e.to_string(),
                    })?;
                file.artifacts
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_at(&index_path)(e)),
        };
        let store = Artifacts {
            root: root.to_path_buf(),
            config,
            inner: Mutex::new(Inner::default()),
            changed: Arc::new(tokio::sync::Notify::new()),
        };
        let mut lost = false;
        {
            let mut inner = store.lock();
            for a in listed {
                let blob = store.blob_path(&a.sha256);
                match std::fs::metadata(&blob) {
                    Ok(m) if m.len() == a.size && is_sha256(&a.sha256) => {
                        let entry = inner.blobs.entry(a.sha256.clone()).or_insert((a.size, 0));
                        entry.1 += 1;
                        if entry.1 == 1 {
                            inner.stored += a.size;
                        }
                        inner.index.insert(a.name.clone(), a);
                    }
                    _ => {
                        tracing::warn!(
                            "artifact {}: its blob {} is missing or has the wrong size: forgotten",
                            a.name,
                            blob.display()
                        );
                        lost = true;
                    }
                }
            }
            if lost {
                store.write_index(&inner)?;
            }
            // what no entry names: blobs of a crash between the rename and the index
            let blobs = root.join("blobs");
            for entry in std::fs::read_dir(&blobs).map_err(io_at(&blobs))?.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !inner.blobs.contains_key(&name) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
            let tmp = root.join("tmp");
            for entry in std::fs::read_dir(&tmp).map_err(io_at(&tmp))?.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
            store.sweep_locked(&mut inner, now_ms());
        }
        Ok(Arc::new(store))
    }

    /// The store's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // a panic while holding the lock leaves consistent data (each change is one step)
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs").join(sha256)
    }

    /// The artifact `name` (not expired), if there is one.
    pub fn get(&self, name: &ArtifactName) -> Option<Artifact> {
        let now = now_ms();
        self.lock()
            .index
            .get(name)
            .filter(|a| a.expires > now)
            .cloned()
    }

    /// The download URL of artifact `name` when it exists (and has not expired): what
    /// `artifact:NAME` stands for in a job or a boot request. `None` for an unknown or
    /// invalid name.
    pub fn artifact_url(&self, name: &str) -> Option<String> {
        let name = ArtifactName::new(name).ok()?;
        self.get(&name)
            .map(|a| url_of(&self.config.base_url, &a.name))
    }

    /// The URL an artifact is (or would be) downloaded from.
    pub fn url(&self, name: &ArtifactName) -> String {
        url_of(&self.config.base_url, name)
    }

    /// Every artifact that has not expired, by name.
    pub fn list(&self) -> Vec<Artifact> {
        let now = now_ms();
        self.lock()
            .index
            .values()
            .filter(|a| a.expires > now)
            .cloned()
            .collect()
    }

    /// (bytes used, uploads in progress included; the quota).
    pub fn usage(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.stored + inner.reserved, self.config.quota)
    }

    /// Removes artifact `name` on behalf of `user` (its uploader, or an admin).
    pub fn delete(
        &self,
        name: &ArtifactName,
        user: &str,
        admin: bool,
    ) -> Result<Artifact, ArtifactError> {
        let now = now_ms();
        let mut inner = self.lock();
        let a = match inner.index.get(name) {
            Some(a) if a.expires > now => a.clone(),
            _ => return Err(ArtifactError::NotFound(name.to_string())),
        };
        if a.uploader != user && !admin {
            return Err(ArtifactError::NotYours {
                name: name.to_string(),
                uploader: a.uploader,
            });
        }
        inner.index.remove(name);
        if let Err(e) = self.write_index(&inner) {
            inner.index.insert(name.clone(), a);
            return Err(e);
        }
        self.unref(&mut inner, &a.sha256);
        tracing::info!("artifact {name} deleted by {user}");
        Ok(a)
    }

    /// Opens artifact `name`'s content for reading, with its metadata; `None` when there is
    /// no such artifact (or it was removed meanwhile). The blob of a sha256 never changes, so
    /// the file opened is the metadata's.
    pub async fn open_blob(&self, name: &ArtifactName) -> Option<(Artifact, tokio::fs::File)> {
        let a = self.get(name)?;
        let file = tokio::fs::File::open(self.blob_path(&a.sha256))
            .await
            .ok()?;
        Some((a, file))
    }

    /// Starts an upload of `name` by `user` (an admin when `admin`), kept for `max_age`
    /// (default and maximum: the store's), of `length` bytes when the client said
    /// (reserved against the quota now). Write the body with [`Upload::write`], then
    /// [`Upload::finish`]; dropping it aborts the upload.
    pub async fn begin(
        self: &Arc<Self>,
        name: ArtifactName,
        user: &str,
        admin: bool,
        max_age: Option<Duration>,
        length: Option<u64>,
    ) -> Result<Upload, ArtifactError> {
        let max = self.config.max_age;
        let max_age = match max_age {
            None => max,
            Some(d) if !d.is_zero() && d <= max => d,
            Some(d) => {
                return Err(ArtifactError::MaxAge {
                    asked: d.as_secs(),
                    max: max.as_secs(),
                })
            }
        };
        self.may_write(&self.lock(), &name, user, admin)?;
        let mut upload = Upload {
            store: self.clone(),
            name,
            user: user.to_string(),
            admin,
            max_age,
            reserved: 0,
            written: 0,
            tmp: self.root.join("tmp").join(random_name()),
            file: None,
            hasher: Sha256::new(),
        };
        if let Some(n) = length {
            upload.reserve(n)?;
        }
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&upload.tmp)
            .await
            .map_err(io_at(&upload.tmp))?;
        upload.file = Some(tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file));
        Ok(upload)
    }

    /// Refuses to overwrite another user's artifact for a non-admin.
    fn may_write(
        &self,
        inner: &Inner,
        name: &ArtifactName,
        user: &str,
        admin: bool,
    ) -> Result<(), ArtifactError> {
        match inner.index.get(name) {
            Some(a) if a.uploader != user && !admin && a.expires > now_ms() => {
                Err(ArtifactError::NotYours {
                    name: name.to_string(),
                    uploader: a.uploader.clone(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Takes `more` bytes of the quota for an upload that already holds `held`; when they do
    /// not fit, removes expired artifacts and tries again.
    fn reserve(&self, held: u64, more: u64) -> Result<(), ArtifactError> {
        let mut inner = self.lock();
        let fits = |i: &Inner| i.stored + i.reserved + more <= self.config.quota;
        if !fits(&inner) {
            self.sweep_locked(&mut inner, now_ms());
        }
        if !fits(&inner) {
            return Err(ArtifactError::Quota {
                quota: self.config.quota,
                used: inner.stored + inner.reserved - held,
                asked: held + more,
            });
        }
        inner.reserved += more;
        Ok(())
    }

    /// Gives back what an upload reserved.
    fn release(&self, bytes: u64) {
        let mut inner = self.lock();
        inner.reserved = inner.reserved.saturating_sub(bytes);
    }

    /// Drops one reference to a blob; the last removes its file.
    fn unref(&self, inner: &mut Inner, sha256: &str) {
        if let Some(entry) = inner.blobs.get_mut(sha256) {
            entry.1 -= 1;
            if entry.1 == 0 {
                let size = entry.0;
                inner.blobs.remove(sha256);
                inner.stored = inner.stored.saturating_sub(size);
                let path = self.blob_path(sha256);
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!("artifact blob {}: {e}", path.display());
                }
            }
        }
    }

    /// Writes the index: a temporary file, synced, renamed over `index.json`.
    fn write_index(&self, inner: &Inner) -> Result<(), ArtifactError> {
        let file = IndexFile {
            version: 1,
            artifacts: inner.index.values().cloned().collect(),
        };
        let path = self.root.join("index.json");
        let tmp = self.root.join("index.json.tmp");
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| ArtifactError::Index {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(io_at(&path))
    }

    /// Removes the artifacts expired at `now`; returns the next expiry (ms) of those left.
    fn sweep_locked(&self, inner: &mut Inner, now: u64) -> Option<u64> {
        let expired: Vec<Artifact> = inner
            .index
            .values()
            .filter(|a| a.expires <= now)
            .cloned()
            .collect();
        if !expired.is_empty() {
            for a in &expired {
                inner.index.remove(&a.name);
            }
            match self.write_index(inner) {
                Ok(()) => {
                    for a in &expired {
                        self.unref(inner, &a.sha256);
                        tracing::info!("artifact {} expired", a.name);
                    }
                }
                Err(e) => {
                    // kept (and still hidden from readers): the next sweep tries again
                    tracing::error!("{e}");
                    for a in expired {
                        inner.index.insert(a.name.clone(), a);
                    }
                }
            }
        }
        inner.index.values().map(|a| a.expires).min()
    }

    /// Removes the artifacts that have expired; returns the next expiry (ms since the epoch).
    pub fn sweep(&self) -> Option<u64> {
        self.sweep_locked(&mut self.lock(), now_ms())
    }

    /// Runs the sweeper: it removes expired artifacts at the next expiry (a timer, woken
    /// again when an upload changes the expiries), until the store is dropped.
    pub fn spawn_sweeper(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let store = Arc::downgrade(self);
        let changed = self.changed.clone();
        tokio::spawn(async move {
            loop {
                let next = match store.upgrade() {
                    Some(s) => s.sweep(),
                    None => return,
                };
                let wait = next
                    .map(|at| Duration::from_millis(at.saturating_sub(now_ms())))
                    .unwrap_or(MAX_SLEEP)
                    .min(MAX_SLEEP);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = changed.notified() => {}
                }
            }
        })
    }
}

/// True for 64 lowercase hex digits (a blob name read back from the index).
fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A temporary file's name: 16 random bytes, hex.
fn random_name() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        // no randomness: unique within this process is enough for a temporary file
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return format!("upload-{}-{n}", std::process::id());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An upload in progress ([`Artifacts::begin`]): its temporary file, its hash so far and its
/// share of the quota. Dropped unfinished, it removes its file and gives its share back.
pub struct Upload {
    store: Arc<Artifacts>,
    name: ArtifactName,
    user: String,
    admin: bool,
    max_age: Duration,
    /// Quota held (the Content-Length, or what was written).
    reserved: u64,
    written: u64,
    tmp: PathBuf,
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    hasher: Sha256,
}

impl Upload {
    fn reserve(&mut self, more: u64) -> Result<(), ArtifactError> {
        self.store.reserve(self.reserved, more)?;
        self.reserved += more;
        Ok(())
    }

    /// Appends a chunk of the body (the quota is taken for it first when the upload has used
    /// up what it reserved).
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), ArtifactError> {
        let end = self.written + chunk.len() as u64;
        if end > self.reserved {
            self.reserve(end - self.reserved)?;
        }
        let file = self.file.as_mut().ok_or_else(|| ArtifactError::Io {
            path: self.tmp.display().to_string(),
            source: std::io::Error::other("the upload was already finished"),
        })?;
        file.write_all(chunk).await.map_err(io_at(&self.tmp))?;
        self.hasher.update(chunk);
        self.written = end;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Completes the upload: the file is synced and renamed into the store, the index
    /// updated (a previous artifact of that name replaced), the quota settled.
    pub async fn finish(mut self) -> Result<Artifact, ArtifactError> {
        let mut file = self.file.take().ok_or_else(|| ArtifactError::Io {
            path: self.tmp.display().to_string(),
            source: std::io::Error::other("the upload was already finished"),
        })?;
        file.flush().await.map_err(io_at(&self.tmp))?;
        let file = file.into_inner();
        file.sync_all().await.map_err(io_at(&self.tmp))?;
        drop(file);
        let sha256: String = std::mem::take(&mut self.hasher)
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let store = self.store.clone();
        let now = now_ms();
        let artifact = Artifact {
            name: self.name.clone(),
            size: self.written,
            sha256: sha256.clone(),
            uploader: self.user.clone(),
            created: now,
            expires: now
                .saturating_add(u64::try_from(self.max_age.as_millis()).unwrap_or(u64::MAX)),
        };
        let mut inner = store.lock();
        // another user may have taken the name meanwhile
        store.may_write(&inner, &self.name, &self.user, self.admin)?;
        let blob = store.blob_path(&sha256);
        let new_blob = !inner.blobs.contains_key(&sha256);
        if new_blob {
            std::fs::rename(&self.tmp, &blob).map_err(io_at(&blob))?;
            inner.blobs.insert(sha256.clone(), (self.written, 0));
            inner.stored += self.written;
        } else {
            let _ = std::fs::remove_file(&self.tmp);
        }
        inner.reserved = inner.reserved.saturating_sub(self.reserved);
        self.reserved = 0;
        if let Some(entry) = inner.blobs.get_mut(&sha256) {
            entry.1 += 1;
        }
        let old = inner.index.insert(self.name.clone(), artifact.clone());
        if let Err(e) = store.write_index(&inner) {
            // back to what the index on disk says
            match old {
                Some(o) => inner.index.insert(self.name.clone(), o),
                None => inner.index.remove(&self.name),
            };
            store.unref(&mut inner, &sha256);
            return Err(e);
        }
        if let Some(old) = old {
            store.unref(&mut inner, &old.sha256);
        }
        drop(inner);
        store.changed.notify_one();
        tracing::info!(
            "artifact {} uploaded by {}: {} bytes, sha256 {sha256}",
            artifact.name,
            artifact.uploader,
            artifact.size
        );
        Ok(artifact)
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.reserved > 0 {
            self.store.release(self.reserved);
        }
        // unfinished (or finished with an error): the file is not the store's
        drop(self.file.take());
        let _ = std::fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(quota: u64) -> Config {
        Config {
            max_age: Duration::from_secs(3600),
            quota,
            base_url: "http://127.0.0.1:9/".into(),
        }
    }

    fn name(n: &str) -> ArtifactName {
        ArtifactName::new(n).expect("name")
    }

    #[tokio::test]
    async fn uploads_are_stored_by_content_and_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("artifacts");
        let store = Artifacts::open(&root, config(1 << 20)).expect("open");
        let mut up = store
            .begin(name("a/b.img"), "alice", false, None, Some(6))
            .await
            .expect("begin");
        up.write(b"hello ").await.expect("write");
        let a = up.finish().await.expect("finish");
        let hex: String = Sha256::digest(b"hello ")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!((a.size, a.sha256), (6, hex));
        assert_eq!(
            store.artifact_url("a/b.img").as_deref(),
            Some("http://127.0.0.1:9/artifacts/a/b.img")
        );
        // the same content under another name shares the blob
        let mut up = store
            .begin(name("copy"), "bob", false, None, None)
            .await
            .expect("begin");
        up.write(b"hello ").await.expect("write");
        up.finish().await.expect("finish");
        assert_eq!(store.usage().0, 6);
        drop(store);
        let store = Artifacts::open(&root, config(1 << 20)).expect("reopen");
        assert_eq!(store.list().len(), 2);
        assert_eq!(store.usage().0, 6);
        // bob may not replace alice's, an admin may delete it
        assert!(matches!(
            store.begin(name("a/b.img"), "bob", false, None, None).await,
            Err(ArtifactError::NotYours { .. })
        ));
        store
            .delete(&name("a/b.img"), "root", true)
            .expect("delete");
        assert_eq!(store.usage().0, 6, "the blob is still bob's");
        store.delete(&name("copy"), "bob", false).expect("delete");
        assert_eq!(store.usage().0, 0);
        let blobs = std::fs::read_dir(root.join("blobs"))
            .expect("blobs")
            .count();
        assert_eq!(blobs, 0);
    }

    #[tokio::test]
    async fn the_quota_counts_uploads_in_progress() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Artifacts::open(&dir.path().join("a"), config(10)).expect("open");
        let first = store
            .begin(name("one"), "alice", false, None, Some(8))
            .await
            .expect("begin");
        match store
            .begin(name("two"), "alice", false, None, Some(3))
            .await
        {
            Err(ArtifactError::Quota { quota, used, asked }) => {
                assert_eq!((quota, used, asked), (10, 8, 3));
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        // chunked: refused once past the quota
        let mut chunked = store
            .begin(name("three"), "alice", false, None, None)
            .await
            .expect("begin");
        chunked.write(b"ab").await.expect("2 bytes fit");
        assert!(matches!(
            chunked.write(b"c").await,
            Err(ArtifactError::Quota { .. })
        ));
        drop(chunked);
        drop(first);
        assert_eq!(store.usage().0, 0, "aborted uploads give their share back");
        let tmp = std::fs::read_dir(dir.path().join("a/tmp"))
            .expect("tmp")
            .count();
        assert_eq!(tmp, 0, "aborted uploads remove their file");
    }

    #[tokio::test]
    async fn a_full_store_removes_expired_artifacts_before_refusing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("a");
        // no sweeper: only the quota check can remove the expired one
        let store = Artifacts::open(&root, config(10)).expect("open");
        let mut up = store
            .begin(
                name("old"),
                "a",
                false,
                Some(Duration::from_secs(1)),
                Some(8),
            )
            .await
            .expect("begin");
        up.write(b"12345678").await.expect("write");
        let old = up.finish().await.expect("finish");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.get(&name("old")).is_some() {
            assert!(std::time::Instant::now() < deadline, "not expired in 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            root.join("blobs").join(&old.sha256).exists(),
            "not swept yet"
        );
        let up = store
            .begin(name("new"), "a", false, None, Some(9))
            .await
            .expect("the expired one makes room");
        assert!(!root.join("blobs").join(&old.sha256).exists());
        drop(up);
    }

    #[tokio::test]
    async fn max_age_is_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Artifacts::open(&dir.path().join("a"), config(10)).expect("open");
        for secs in [0, 3601] {
            assert!(matches!(
                store
                    .begin(name("x"), "a", false, Some(Duration::from_secs(secs)), None)
                    .await,
                Err(ArtifactError::MaxAge { .. })
            ));
        }
    }
}
