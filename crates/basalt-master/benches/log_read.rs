//! Reading a 100 MiB LAVA-format log server-side, as the web log viewer does: every line
//! parsed into its record (dt, lvl, msg with YAML's escapes undone) and filtered by level,
//! in constant memory (a 1 MiB buffer), next to PyYAML's `CSafeLoader` on the same file:
//! `yaml.load(line, Loader=CSafeLoader)` per line (LAVA's viewer loads records, not the
//! whole file), and per slice of 1,000 lines (one document each, the way LAVA loads a
//! range of a log). Each reader runs in a process of its own, so its peak RSS is its own.
//! Also: building the viewer's line index ([`basalt_master::web::logindex`]).
//!
//! `BASALT_BENCH_LOG_MIB` sets the log's size (default 100). Needs python3 with PyYAML built
//! with libyaml (Debian's python3-yaml); without it the Python rows say so.
//!
//!     cargo bench -p basalt-master --bench log_read

use basalt_master::web::logindex::LogIndex;
use basalt_master::web::record::{self, Level, LevelMask};
use basalt_master::web::synthetic;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The levels kept by the filter (what a viewer with `debug` hidden shows).
const KEEP: &str = "info,warning,error,exception,results,target,input";

/// This process's peak RSS (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The child: reads the log and prints `lines kept seconds peak_kib`.
fn child_read(path: &Path) {
    let mask = LevelMask::parse(KEEP).expect("levels");
    let mut f = std::fs::File::open(path).expect("the log");
    let t = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut carry: Vec<u8> = Vec::new();
    let (mut lines, mut kept, mut chars) = (0u64, 0u64, 0u64);
    loop {
        let n = f.read(&mut buf).expect("reading the log");
        if n == 0 {
            break;
        }
        let mut data = &buf[..n];
        if !carry.is_empty() {
            match memchr::memchr(b'\n', data) {
                Some(k) => {
                    carry.extend_from_slice(&data[..=k]);
                    let r = record::parse(&carry);
                    lines += 1;
                    if mask.has(r.level) {
                        kept += 1;
                        chars += r.msg.text().len() as u64;
                    }
                    carry.clear();
                    data = &data[k + 1..];
                }
                None => {
                    carry.extend_from_slice(data);
                    continue;
                }
            }
        }
        let mut pos = 0;
        while let Some(k) = memchr::memchr(b'\n', &data[pos..]) {
            let r = record::parse(&data[pos..pos + k]);
            lines += 1;
            if mask.has(r.level) {
                kept += 1;
                chars += r.msg.text().len() as u64;
            }
            pos += k + 1;
        }
        carry.extend_from_slice(&data[pos..]);
    }
    let secs = t.elapsed().as_secs_f64();
    std::hint::black_box(chars);
    println!("{lines} {kept} {secs} {}", peak_rss_kib());
}

/// The child: builds the viewer's index and prints `lines 0 seconds peak_kib`.
fn child_index(dir: &Path) {
    let t = Instant::now();
    let mut index = LogIndex::new();
    index.update(dir).expect("indexing");
    let secs = t.elapsed().as_secs_f64();
    let kept = (0..index.lines())
        .filter(|n| index.level(*n).is_some_and(|l| l != Level::Debug))
        .count();
    println!("{} {kept} {secs} {}", index.lines(), peak_rss_kib());
}

const PY_LINE: &str = r#"
import resource, sys, time, yaml
keep = set(sys.argv[2].split(","))
t = time.perf_counter()
lines = kept = 0
with open(sys.argv[1], "rb") as f:
    for line in f:
        rec = yaml.load(line, Loader=yaml.CSafeLoader)[0]
        lines += 1
        if rec["lvl"] in keep:
            kept += 1
print(lines, kept, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"#;

const PY_SLICE: &str = r#"
import itertools, resource, sys, time, yaml
keep = set(sys.argv[2].split(","))
t = time.perf_counter()
lines = kept = 0
with open(sys.argv[1], "rb") as f:
    while True:
        chunk = b"".join(itertools.islice(f, 1000))
        if not chunk:
            break
        for rec in yaml.load(chunk, Loader=yaml.CSafeLoader):
            lines += 1
            if rec["lvl"] in keep:
                kept += 1
print(lines, kept, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"#;

struct Row {
    name: String,
    lines: u64,
    kept: u64,
    secs: f64,
    peak_kib: u64,
}

fn parse_row(name: &str, out: &[u8]) -> Option<Row> {
    let text = String::from_utf8_lossy(out);
    let mut w = text.split_whitespace();
    Some(Row {
        name: name.into(),
        lines: w.next()?.parse().ok()?,
        kept: w.next()?.parse().ok()?,
        secs: w.next()?.parse().ok()?,
        peak_kib: w.next()?.parse().ok()?,
    })
}

fn run(name: &str, cmd: &mut Command) -> Option<Row> {
    match cmd.output() {
        Ok(o) if o.status.success() => parse_row(name, &o.stdout),
        Ok(o) => {
            eprintln!("{name}: failed: {}", String::from_utf8_lossy(&o.stderr));
            None
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            None
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--child-read") {
        return child_read(Path::new(&args[pos + 1]));
    }
    if let Some(pos) = args.iter().position(|a| a == "--child-index") {
        return child_index(Path::new(&args[pos + 1]));
    }
    let mib: u64 = std::env::var("BASALT_BENCH_LOG_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir: PathBuf = tmp.path().join("log");
    let t = Instant::now();
    let written = synthetic::write_log(&dir, mib << 20).expect("writing the log");
    let log = dir.join("output.yaml");
    println!(
        "log: {} lines, {:.1} MiB (written in {:.1} s); kept by the filter ({KEEP}): every level but debug",
        written.lines,
        written.bytes as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    // the page cache holds the file for every reader alike
    let _ = std::fs::read(&log);
    let me = std::env::current_exe().expect("this bench's path");
    let mut rows = Vec::new();
    rows.extend(run(
        "basalt record reader (parse + filter)",
        Command::new(&me).arg("--child-read").arg(&log),
    ));
    rows.extend(run(
        "basalt line index (viewer)",
        Command::new(&me).arg("--child-index").arg(&dir),
    ));
    let python = [
        ("PyYAML CSafeLoader, per line", PY_LINE),
        ("PyYAML CSafeLoader, 1000-line slices", PY_SLICE),
    ];
    let mut py_rows = Vec::new();
    for (name, script) in python {
        match run(
            name,
            Command::new("python3")
                .arg("-c")
                .arg(script)
                .arg(&log)
                .arg(KEEP),
        ) {
            Some(r) => py_rows.push(r),
            None => {
                println!("{name}: not measured (python3 with PyYAML's libyaml binding is needed)")
            }
        }
    }
    let mb = written.bytes as f64 / 1048576.0;
    println!();
    println!(
        "{:<40} {:>10} {:>10} {:>9} {:>10} {:>12}",
        "reader", "lines", "kept", "seconds", "MiB/s", "peak RSS MiB"
    );
    for r in rows.iter().chain(py_rows.iter()) {
        println!(
            "{:<40} {:>10} {:>10} {:>9.2} {:>10.1} {:>12.1}",
            r.name,
            r.lines,
            r.kept,
            r.secs,
            mb / r.secs,
            r.peak_kib as f64 / 1024.0
        );
    }
    if let (Some(ours), Some(best_py)) = (
        rows.first(),
        py_rows.iter().min_by(|a, b| a.secs.total_cmp(&b.secs)),
    ) {
        assert_eq!(
            (ours.lines, ours.kept),
            (best_py.lines, best_py.kept),
            "basalt and PyYAML disagree on the log"
        );
        println!();
        println!(
            "basalt's reader is {:.1}x PyYAML's fastest ({}); the anchor is 10x",
            best_py.secs / ours.secs,
            best_py.name
        );
    }
}
