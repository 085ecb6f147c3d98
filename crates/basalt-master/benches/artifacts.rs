//! The artifact store through the real `basalt-master` binary (a child process, temporary
//! state directory, API and downloads on free 127.0.0.1 ports): a 200 MiB file (random
//! bytes, written to disk first, never held in memory here either) uploaded with a
//! Content-Length, then again chunked, then downloaded whole and by 8 MiB ranges. Upload and
//! download MiB/s, and the master's RSS: VmRSS before, VmHWM (the peak) after each phase.
//! Goal: the peak stays within a few MiB of the idle RSS, whatever the file's size (the body
//! is streamed to and from disk).
//!
//!     cargo bench -p basalt-master --bench artifacts
//!
//! `BASALT_BENCH_ARTIFACT_MIB` changes the size (200). The master is killed on every path (a
//! guard); nothing is written outside the temporary directory.

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MASTER: &str = env!("CARGO_BIN_EXE_basalt-master");
const MIB: f64 = 1024.0 * 1024.0;

/// The master, killed and reaped when dropped.
struct Master {
    child: Child,
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Master {
    /// /proc/PID/status: (VmRSS, VmHWM) in MiB.
    fn rss(&self) -> (f64, f64) {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/PID/status");
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .map(|kb| kb / 1024.0)
                .unwrap_or(f64::NAN)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn hex(d: impl AsRef<[u8]>) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `mib` MiB of pseudo-random bytes (xorshift) to `path`; returns their sha256.
fn make_file(path: &Path, mib: usize) -> String {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut hasher = Sha256::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        hasher.update(&buf);
        f.write_all(&buf).expect("write");
    }
    f.flush().expect("flush");
    hex(hasher.finalize())
}

/// Reads a response body to its end, hashing it; (bytes, sha256).
fn drain(resp: ureq::Response) -> (u64, Sha256) {
    let mut r = resp.into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut hasher = Sha256::new();
    let mut n = 0u64;
    loop {
        let got = r.read(&mut buf).expect("read");
        if got == 0 {
            return (n, hasher);
        }
        n += got as u64;
        hasher.update(&buf[..got]);
    }
}

/// A reader without a known length (ureq sends it chunked).
struct Unsized(std::fs::File);

impl Read for Unsized {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

fn main() {
    let mib: usize = std::env::var("BASALT_BENCH_ARTIFACT_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("image.bin");
    let sha = make_file(&file, mib);
    let state = dir.path().join("state");
    let out = Command::new(MASTER)
        .arg("--state-dir")
        .arg(&state)
        .args(["token", "add", "ci"])
        .output()
        .expect("basalt-master token add");
    assert!(out.status.success(), "token add");
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (http, files, workers) = (free_port(), free_port(), free_port());
    let master = Master {
        child: Command::new(MASTER)
            .arg("--state-dir")
            .arg(&state)
            .args(["--http", &format!("127.0.0.1:{http}")])
            .args(["--workers", &format!("tcp://127.0.0.1:{workers}")])
            .args(["--coordinator", "127.0.0.1:0"])
            .args(["--artifacts-http", &format!("127.0.0.1:{files}")])
            .args(["--artifact-quota", &format!("{}M", mib * 3)])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn basalt-master"),
    };
    let api = format!("http://127.0.0.1:{http}/api/v0.2");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(&format!("{api}/system/version/")).call().is_err() {
        assert!(Instant::now() < deadline, "the master never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (idle, _) = master.rss();
    let size = (mib as u64) << 20;
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(600))
        .build();
    let auth = format!("Token {token}");
    let mut rows: Vec<(String, String)> = Vec::new();
    rows.push(("master RSS idle (MiB)".into(), format!("{idle:.1}")));

    // upload with a Content-Length
    let t = Instant::now();
    let resp = agent
        .put(&format!("{api}/artifacts/bench/image.bin"))
        .set("Authorization", &auth)
        .set("Content-Length", &size.to_string())
        .send(std::fs::File::open(&file).expect("open"))
        .expect("upload");
    let secs = t.elapsed().as_secs_f64();
    let answer: serde_json::Value = resp.into_json().expect("JSON");
    assert_eq!(answer["sha256"], sha.as_str(), "the store's sha256");
    let (_, hwm) = master.rss();
    rows.push((
        format!("upload {mib} MiB, Content-Length (MiB/s)"),
        format!("{:.0}", mib as f64 / secs),
    ));
    rows.push(("master peak RSS after it (MiB)".into(), format!("{hwm:.1}")));

    // upload chunked
    let t = Instant::now();
    let resp = agent
        .put(&format!("{api}/artifacts/bench/chunked.bin"))
        .set("Authorization", &auth)
        .send(Unsized(std::fs::File::open(&file).expect("open")))
        .expect("chunked upload");
    let secs = t.elapsed().as_secs_f64();
    let answer: serde_json::Value = resp.into_json().expect("JSON");
    assert_eq!(answer["sha256"], sha.as_str());
    let (_, hwm) = master.rss();
    rows.push((
        format!("upload {mib} MiB, chunked (MiB/s)"),
        format!("{:.0}", mib as f64 / secs),
    ));
    rows.push(("master peak RSS after it (MiB)".into(), format!("{hwm:.1}")));

    // download whole
    let url = answer["url"].as_str().expect("url").to_string();
    let t = Instant::now();
    let (n, hasher) = drain(agent.get(&url).call().expect("download"));
    let secs = t.elapsed().as_secs_f64();
    assert_eq!((n, hex(hasher.finalize())), (size, sha.clone()));
    let (_, hwm) = master.rss();
    rows.push((
        format!("download {mib} MiB (MiB/s)"),
        format!("{:.0}", mib as f64 / secs),
    ));
    rows.push(("master peak RSS after it (MiB)".into(), format!("{hwm:.1}")));

    // download by 8 MiB ranges
    let step = 8u64 << 20;
    let t = Instant::now();
    let mut hasher = Sha256::new();
    let mut at = 0u64;
    while at < size {
        let end = (at + step).min(size) - 1;
        let resp = agent
            .get(&url)
            .set("Range", &format!("bytes={at}-{end}"))
            .call()
            .expect("range");
        assert_eq!(resp.status(), 206);
        let mut r = resp.into_reader();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let got = r.read(&mut buf).expect("read");
            if got == 0 {
                break;
            }
            hasher.update(&buf[..got]);
        }
        at = end + 1;
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(hex(hasher.finalize()), sha);
    let (rss, hwm) = master.rss();
    rows.push((
        "download by 8 MiB ranges (MiB/s)".into(),
        format!("{:.0}", mib as f64 / secs),
    ));
    rows.push(("master peak RSS after it (MiB)".into(), format!("{hwm:.1}")));
    rows.push(("master RSS at the end (MiB)".into(), format!("{rss:.1}")));
    rows.push((
        "peak growth over idle (MiB)".into(),
        format!("{:.1}", hwm - idle),
    ));

    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    println!(
        "artifact store, {mib} MiB file ({:.0} MiB of files)",
        size as f64 / MIB
    );
    println!("{:<w0$} | {:>w1$}", "measure", "value");
    println!("{}-|-{}", "-".repeat(w0), "-".repeat(w1));
    for (m, v) in &rows {
        println!("{m:<w0$} | {v:>w1$}");
    }
    drop(master);
}
