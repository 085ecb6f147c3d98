//! What one job may use on the worker (docs/security.md, `## Limits`): the bytes it downloads
//! and unpacks, the size of its log, the host directories its `file://` URLs and local git
//! repositories may name, and who may read what it stages for TFTP.

use crate::host::blocking::Cancel;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Defaults of [`Limits`].
pub const DEFAULT_MAX_JOB_BYTES: u64 = 16 << 30;
pub const DEFAULT_MAX_LOG_BYTES: u64 = 512 << 20;
/// The user tftpd-hpa's Debian service runs as (`TFTP_USERNAME` in /etc/default/tftpd-hpa).
pub const DEFAULT_TFTP_USER: &str = "tftp";
/// Git transports a job's repository URL may use (`GIT_ALLOW_PROTOCOL`).
pub const GIT_PROTOCOLS: &[&str] = &["https", "http", "git", "ssh", "file"];

/// The limits of one job.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Bytes the job may download and unpack in all (downloads after decompression, test
    /// definition tarballs and image overlays unpacked, git checkouts).
    pub max_job_bytes: u64,
    /// Size of `output.yaml`; past it one record says the log was truncated.
    pub max_log_bytes: u64,
    /// Where `file://` URLs and local git repositories may point; empty: anywhere the
    /// worker's user can read (`basalt run` without `--allow-file-root`).
    pub file_roots: Vec<PathBuf>,
    /// The user the TFTP server runs as: the job's TFTP directory is readable by its group only.
    pub tftp_user: String,
    /// The NFS server's export table a job's NFS root is added to (`BASALT_EXPORTS_FILE`,
    /// default `/etc/exports`) and the command that makes the server read it again
    /// (`BASALT_EXPORTFS`, default `exportfs -ra`): `host::exports`.
    pub exports: crate::host::exports::ExportTable,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_job_bytes: DEFAULT_MAX_JOB_BYTES,
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
            file_roots: Vec::new(),
            tftp_user: DEFAULT_TFTP_USER.into(),
            exports: crate::host::exports::ExportTable {
                file: std::env::var_os("BASALT_EXPORTS_FILE")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("/etc/exports")),
                exportfs: std::env::var("BASALT_EXPORTFS")
                    .unwrap_or_else(|_| "exportfs -ra".into()),
            },
        }
    }
}

/// Parses a size: bytes, or a number with `K`, `M`, `G`, `T` (powers of 1024; `KiB`, `MB`,
/// ... are read the same).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (e.g. 512M, 16G)"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("'{s}': unknown unit (use K, M, G or T)")),
    };
    n.checked_mul(1u64 << shift)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("'{s}' is not a size between 1 byte and 16 EiB"))
}

/// A size for people: `64 MiB`, `16 GiB`, `1000 bytes`.
pub fn show_size(n: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{} {unit}", n >> shift);
        }
    }
    if n >= 1 << 20 {
        return format!("{:.1} MiB", n as f64 / 1_048_576.0);
    }
    format!("{n} bytes")
}

/// The job's byte budget, shared by every download and unpack of the job.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    used: AtomicU64,
}

/// The budget ran out.
#[derive(Debug)]
pub struct Exceeded {
    pub limit: u64,
}

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the job downloaded and unpacked more than its limit of {} (--max-job-bytes); stopped there",
            show_size(self.limit)
        )
    }
}

impl std::error::Error for Exceeded {}

/// The [`Exceeded`] inside an I/O error, if that is what it is.
pub fn exceeded(e: &io::Error) -> Option<&Exceeded> {
    e.get_ref().and_then(|e| e.downcast_ref::<Exceeded>())
}

impl Budget {
    pub fn new(limit: u64) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Takes `n` bytes; fails (taking nothing) when they would go past the limit.
    pub fn charge(&self, n: u64) -> Result<(), Exceeded> {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let next = cur.saturating_add(n);
            if next > self.limit {
                return Err(Exceeded { limit: self.limit });
            }
            match self
                .used
                .compare_exchange(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(now) => cur = now,
            }
        }
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }
}

/// A writer that charges every byte to the job's budget and stops once the job is canceled.
pub struct Limited<'a, W> {
    pub inner: W,
    pub budget: &'a Budget,
    pub cancel: &'a Cancel,
}

impl<W: io::Write> io::Write for Limited<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.cancel.check()?;
        self.budget
            .charge(buf.len() as u64)
            .map_err(io::Error::other)?;
        self.inner.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("16GiB"), Ok(16 << 30));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("2 k"), Ok(2048));
        assert!(parse_size("0").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("1X").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(show_size(64 << 20), "64 MiB");
        assert_eq!(show_size(DEFAULT_MAX_JOB_BYTES), "16 GiB");
        assert_eq!(show_size(1000), "1000 bytes");
    }

    #[test]
    fn the_budget_stops_at_its_limit() {
        let b = Budget::new(10);
        let c = Cancel::new();
        let mut out = Vec::new();
        let mut w = Limited {
            inner: &mut out,
            budget: &b,
            cancel: &c,
        };
        use std::io::Write;
        w.write_all(b"0123456").unwrap();
        let e = w.write_all(b"0123").unwrap_err();
        assert!(exceeded(&e).is_some(), "{e}");
        assert_eq!(out, b"0123456");
        assert_eq!(b.used(), 7);
    }
}
