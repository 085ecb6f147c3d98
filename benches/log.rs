//! The job log's hot path: console lines into a `JobLog` that writes `output.yaml`.
//!
//!     cargo bench --bench log
//!
//! Writes 1,000,000 console lines of about 80 bytes to `output.yaml` in a temporary directory
//! (one job secret to mask), one `JobLog::target` call per line (a lock per line) against a
//! `ConsoleTranscript` handed N lines per console read (a lock per read, as the expect engine
//! does), and the same with a channel sink drained by a thread. Prints lines/s and ns/line
//! (wall clock), and the process's CPU time per line (steadier on a busy machine), the median
//! of 5 runs each; then what one line's timestamp and one uncontended lock cost alone.

mod common;

use basalt::log::{ChannelSink, JobLog, Verbosity};
use basalt_hal::console::Transcript;
use common::median;
use std::time::Instant;

const LINES: usize = 1_000_000;
const RUNS: usize = 5;

/// About 80 bytes, different each time (as a booting kernel's lines are).
fn line(i: usize) -> String {
    format!(
        "[{:>5}.{:06}] usb 1-1: new high-speed USB device number {i} using xhci_hcd",
        i / 1000,
        i % 1_000_000
    )
}

/// How the lines reach the log.
#[derive(Clone, Copy)]
enum Path {
    /// `JobLog::target`, one call per line.
    PerLine,
    /// A `ConsoleTranscript`, flushed every this many lines.
    Transcript(usize),
}

/// The process's CPU time (user and system, all threads) in seconds.
fn cpu() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// (wall, CPU) seconds to log `lines` into a fresh log in `dir`, with a drained channel sink
/// if `channel`.
fn run(lines: &[String], dir: &std::path::Path, path: Path, channel: bool) -> (f64, f64) {
    let mut log = JobLog::create(Some(dir), Verbosity::Quiet, vec!["s3cret".into()]).expect("log");
    let drain = channel.then(|| {
        let (tx, mut rx) = basalt::log::channel();
        log = log.clone().with_sink(Box::new(ChannelSink::new(tx)));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while rx.blocking_recv().is_some() {
                n += 1;
            }
            n
        })
    });
    let (t, c) = (Instant::now(), cpu());
    match path {
        Path::PerLine => {
            for l in lines {
                log.target(l);
            }
        }
        Path::Transcript(per_read) => {
            let mut console = log.console();
            for chunk in lines.chunks(per_read) {
                for l in chunk {
                    console.received(l);
                }
                console.flush();
            }
        }
    }
    log.flush().expect("flush");
    drop(log);
    let got = drain.map(|d| d.join().expect("drain thread"));
    let secs = (t.elapsed().as_secs_f64(), cpu() - c);
    if let Some(n) = got {
        assert_eq!(n, lines.len() as u64, "the channel got every line");
    }
    secs
}

/// Nanoseconds per call of `f`, over `LINES` calls (median of `RUNS`).
fn per_call(mut f: impl FnMut()) -> f64 {
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let c = cpu();
        for _ in 0..LINES {
            f();
        }
        times.push((cpu() - c) * 1e9 / LINES as f64);
    }
    median(times)
}

fn main() {
    let dir = std::env::temp_dir().join(format!("basalt-bench-log-{}", std::process::id()));
    let lines: Vec<String> = (0..LINES).map(line).collect();
    let cases = [
        ("target() per line", Path::PerLine, false),
        ("transcript, 1 line/read", Path::Transcript(1), false),
        ("transcript, 16 lines/read", Path::Transcript(16), false),
        ("transcript, 256 lines/read", Path::Transcript(256), false),
        ("+ channel, per line", Path::PerLine, true),
        ("+ channel, 256 lines/read", Path::Transcript(256), true),
    ];
    println!("{LINES} console lines of ~80 bytes into output.yaml (median of {RUNS} runs)");
    println!(
        "{:<28} {:>12} {:>10} {:>10}",
        "path", "lines/s", "ns/line", "cpu ns/line"
    );
    for (name, path, channel) in cases {
        let (mut walls, mut cpus) = (Vec::new(), Vec::new());
        for n in 0..RUNS {
            let out = dir.join(format!("run-{n}"));
            let (w, c) = run(&lines, &out, path, channel);
            walls.push(w);
            cpus.push(c);
            std::fs::remove_dir_all(&out).ok();
        }
        let (w, c) = (median(walls), median(cpus));
        println!(
            "{name:<28} {:>12.0} {:>10.0} {:>10.0}",
            LINES as f64 / w,
            w * 1e9 / LINES as f64,
            c * 1e9 / LINES as f64
        );
    }
    std::fs::remove_dir_all(&dir).ok();
    let stamp = per_call(|| {
        std::hint::black_box(basalt::log::now_iso());
    });
    let lock = std::sync::Mutex::new(0u64);
    let locked = per_call(|| {
        *std::hint::black_box(&lock)
            .lock()
            .unwrap_or_else(|e| e.into_inner()) += 1;
    });
    println!("{:<28} {:>34.0}", "alone: now_iso()", stamp);
    println!("{:<28} {:>34.0}", "alone: uncontended lock", locked);
}
