//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// LAVA's conformance corpus (`shared/conformance/lava`), loaded in place, never copied.
/// `BASALT_LAVA_CORPUS` overrides the search.
pub fn corpus() -> PathBuf {
    if let Ok(p) = std::env::var("BASALT_LAVA_CORPUS") {
        return PathBuf::from(p);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        manifest.join("../shared/conformance/lava"),
        manifest.join("../../shared/conformance/lava"),
        PathBuf::from("/work/shared/conformance/lava"),
    ];
    for c in candidates {
        if c.join("README.md").is_file() {
            return c;
        }
    }
    panic!("LAVA conformance corpus not found: set BASALT_LAVA_CORPUS to shared/conformance/lava");
}

/// The `.yaml` files of a corpus folder, sorted.
pub fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(corpus().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

/// The directory of the boot fixtures built by `hw-tests/build-fixtures.sh`
/// (`$BASALT_FIXTURES`, else `target/fixtures`).
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("BASALT_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fixtures"))
}

/// Where cargo put basalt and the workspace's other binaries (basalt-master, basalt-worker,
/// basalt-board): what a [`basalt::lab::LocalLab`] starts.
pub fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_basalt"))
        .parent()
        .map(PathBuf::from)
        .expect("basalt's target directory")
}

/// The boot fixtures of [`fixtures_dir`]: (vmlinux, initramfs.cpio.gz), checked to exist.
pub fn fixtures_amd64() -> (PathBuf, PathBuf) {
    let dir = fixtures_dir();
    let k = dir.join("amd64/vmlinux");
    let i = dir.join("amd64/initramfs.cpio.gz");
    assert!(
        k.is_file() && i.is_file(),
        "boot fixtures missing in {}: run hw-tests/build-fixtures.sh (scripts/test.sh does)",
        dir.display()
    );
    (k, i)
}

/// The workspace's binary `name` (built next to basalt: `cargo build --workspace --bins`).
#[allow(dead_code)] // not every test binary that includes this module calls each
pub fn bin(name: &str) -> PathBuf {
    let b = bin_dir().join(name);
    assert!(
        b.is_file(),
        "{} is missing: cargo build --workspace --bins",
        b.display()
    );
    b
}

/// A daemon a test started: killed (by its PID) and reaped when dropped, on every path.
#[allow(dead_code)]
pub struct Daemon(pub std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP port free on 127.0.0.1 now.
#[allow(dead_code)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("basalt-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    /// Removes the directory, unless `BASALT_TEST_KEEP` is set (to look at a failed test's
    /// files).
    fn drop(&mut self) {
        if std::env::var_os("BASALT_TEST_KEEP").is_some() {
            eprintln!("kept {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One result: (definition, case, result, measurement, units).
pub type ResultRow = (String, String, String, Option<f64>, Option<String>);

/// Results of a run.
pub fn results(dir: &std::path::Path) -> Vec<ResultRow> {
    use basalt::yaml::{load, Node, Value};
    let text = std::fs::read_to_string(dir.join("results.yaml")).expect("results.yaml");
    let doc = load(&text).expect("results.yaml is YAML");
    doc.as_seq()
        .unwrap_or(&[])
        .iter()
        .map(|r| {
            let s = |k: &str| r.get(k).and_then(Node::scalar_text).unwrap_or_default();
            let m = r.get("measurement").and_then(|m| match m.value {
                Value::Float(f) => Some(f),
                Value::Int(i) => Some(i as f64),
                _ => None,
            });
            (
                s("definition"),
                s("case"),
                s("result"),
                m,
                r.get("units").and_then(Node::scalar_text),
            )
        })
        .collect()
}
