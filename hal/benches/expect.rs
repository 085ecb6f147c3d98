//! Expect-engine throughput: 100 MiB of realistic console output (kernel log, systemd lines
//! with colour escapes, shell output) streamed over a unix socket pair, then a prompt; how
//! fast does the reader find the prompt?
//!
//! Rows: a bare socket read (the ceiling), basalt's [`Session::expect`] with one pattern and
//! with four (and one with two job secrets to mask), each with a transcript that counts and
//! copies every line, and python3-pexpect
//! (`pexpect.fdpexpect` on the same kind of socket, `maxread` and `searchwindowsize` 64 KiB,
//! a `logfile_read` that counts lines) on the same bytes. Each row is the median of
//! `BASALT_BENCH_RUNS` runs (default 3); `BASALT_BENCH_MIB` sets the size (default 100).
//!
//! Run: `cargo bench -p basalt-hal --bench expect`

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use basalt_hal::console::expect::Regex;
use basalt_hal::console::{Session, Transcript};

const PROMPT: &str = "root@basalt:~# ";
const PYTHON: &str = "/usr/bin/python3";

/// A transcript that does real work per line: counts lines and bytes, keeps a copy of the
/// last line.
struct Counting {
    lines: u64,
    bytes: u64,
    last: String,
    shared: std::sync::Arc<std::sync::Mutex<(u64, u64, String)>>,
}

impl Transcript for Counting {
    fn received(&mut self, line: &str) {
        self.lines += 1;
        self.bytes += line.len() as u64;
        self.last.clear();
        self.last.push_str(line);
    }
    fn sent(&mut self, _text: &str) {}
}

impl Drop for Counting {
    fn drop(&mut self) {
        if let Ok(mut s) = self.shared.lock() {
            *s = (self.lines, self.bytes, std::mem::take(&mut self.last));
        }
    }
}

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// About `size` bytes of console lines, then the prompt (and busybox's cursor query).
/// Returns the data and the number of lines a transcript should see.
fn console_output(size: usize) -> (Vec<u8>, u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(size + 4096);
    let mut lines = 0u64;
    let units = [
        "sda",
        "mmcblk0",
        "eth0",
        "usb 1-1.2",
        "xhci_hcd 0000:00:14.0",
        "EXT4-fs (sda2)",
    ];
    let words = [
        "probe",
        "registered",
        "link is up",
        "new high-speed USB device number",
        "mounted filesystem",
        "irq",
        "firmware",
        "clocksource",
        "Freeing unused kernel memory",
        "reset",
        "timeout",
        "ok",
    ];
    let mut t = 0u64;
    while out.len() < size {
        t += rng.below(5000);
        let line = match rng.below(10) {
            0..=5 => format!(
                "[{:5}.{:06}] {}: {} {} ({:#x})\r\n",
                t / 1_000_000,
                t % 1_000_000,
                units[rng.below(units.len() as u64) as usize],
                words[rng.below(words.len() as u64) as usize],
                rng.below(1000),
                rng.next() & 0xffff_ffff
            ),
            6 | 7 => format!(
                "[\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39m{} service {}\x1b[0m.\r\n",
                words[rng.below(words.len() as u64) as usize],
                rng.below(100_000)
            ),
            8 => format!(
                "+ cat /sys/class/net/eth{}/statistics/rx_bytes\r\n{}\r\n",
                rng.below(4),
                rng.next() % 1_000_000_000
            ),
            _ => {
                let mut l = format!("{:08x}:", rng.next() & 0xffff_fff0);
                for _ in 0..16 {
                    l.push_str(&format!(" {:02x}", rng.below(256)));
                }
                l.push_str("\r\n");
                l
            }
        };
        lines += line.matches('\n').count() as u64;
        out.extend_from_slice(line.as_bytes());
    }
    out.extend_from_slice(PROMPT.as_bytes());
    out.extend_from_slice(b"\x1b[6n");
    // the prompt, flushed as a partial line when the expect returns
    (out, lines + 1)
}

/// Writes `data` into `w` from a thread; returns when the thread is started.
fn writer(mut w: StdUnixStream, data: std::sync::Arc<Vec<u8>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        // the reader may stop reading once it has seen the prompt: ignore EPIPE
        let _ = w.write_all(&data);
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn run_raw(data: &std::sync::Arc<Vec<u8>>) -> f64 {
    let (r, w) = StdUnixStream::pair().expect("socketpair");
    let start = Instant::now();
    let t = writer(w, data.clone());
    let mut r = r;
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    while total < data.len() {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) => panic!("read: {e}"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = t.join();
    assert_eq!(total, data.len());
    secs
}

fn run_basalt(
    rt: &tokio::runtime::Runtime,
    data: &std::sync::Arc<Vec<u8>>,
    patterns: &[Regex],
    expect_lines: u64,
    secrets: &[&str],
) -> f64 {
    let (r, w) = StdUnixStream::pair().expect("socketpair");
    r.set_nonblocking(true).expect("nonblocking");
    let counts = std::sync::Arc::new(std::sync::Mutex::new((0, 0, String::new())));
    let secs = rt.block_on(async {
        let stream = tokio::net::UnixStream::from_std(r).expect("tokio stream");
        let transcript = Counting {
            lines: 0,
            bytes: 0,
            last: String::new(),
            shared: counts.clone(),
        };
        let mut s = Session::new(Box::new(stream), "bench", Box::new(transcript))
            .with_secrets(secrets.iter().copied());
        let start = Instant::now();
        let t = writer(w, data.clone());
        let m = s
            .expect(patterns, Duration::from_secs(600))
            .await
            .expect("prompt found");
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(m.matched, PROMPT);
        drop(s);
        let _ = t.join();
        secs
    });
    let (lines, _bytes, last) = counts.lock().map(|c| c.clone()).expect("counts");
    assert_eq!(lines, expect_lines, "transcript lines");
    assert_eq!(last, PROMPT);
    secs
}

const PEXPECT_SCRIPT: &str = r#"
import re, sys, pexpect.fdpexpect
class Count:
    def __init__(self): self.lines = 0
    def write(self, b): self.lines += b.count(b'\n')
    def flush(self): pass
c = Count()
pats = [re.compile(p.encode()) for p in sys.argv[1:]]
child = pexpect.fdpexpect.fdspawn(0, timeout=600, maxread=65536, searchwindowsize=65536)
child.logfile_read = c
print("ready", flush=True)
i = child.expect(pats)
print("matched", i, c.lines, flush=True)
"#;

fn pexpect_available() -> Result<(), String> {
    let out = Command::new(PYTHON)
        .args(["-c", "import pexpect.fdpexpect"])
        .output()
        .map_err(|e| format!("{PYTHON} not runnable: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{PYTHON} has no pexpect (install the Debian package python3-pexpect)"
        ))
    }
}

/// Kills the python child on every path.
struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_pexpect(data: &std::sync::Arc<Vec<u8>>, patterns: &[&str]) -> f64 {
    let (r, w) = StdUnixStream::pair().expect("socketpair");
    let child = Command::new(PYTHON)
        .arg("-c")
        .arg(PEXPECT_SCRIPT)
        .args(patterns)
        .stdin(Stdio::from(OwnedFd::from(r)))
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let mut child = Kill(child);
    let mut out = BufReader::new(child.0.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("ready line");
    assert_eq!(
        line.trim(),
        "ready",
        "the pexpect script did not start (see its stderr)"
    );
    let start = Instant::now();
    let t = writer(w, data.clone());
    line.clear();
    out.read_line(&mut line).expect("matched line");
    let secs = start.elapsed().as_secs_f64();
    assert!(line.starts_with("matched 0 "), "pexpect said {line:?}");
    drop(child);
    let _ = t.join();
    secs
}

fn main() {
    let mib: usize = std::env::var("BASALT_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let runs: usize = std::env::var("BASALT_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let (data, lines) = console_output(mib << 20);
    let data = std::sync::Arc::new(data);
    let bytes = data.len();
    println!(
        "expect benchmark: {bytes} bytes ({lines} lines) over a unix socket pair, then {PROMPT:?}; \
         median of {runs} runs"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let one = [Regex::new(PROMPT).expect("regex")];
    let four_src = [
        PROMPT,
        "Kernel panic - not syncing",
        r"login:\s*$",
        r"(?i)segmentation fault",
    ];
    let four: Vec<Regex> = four_src
        .iter()
        .map(|p| Regex::new(p).expect("regex"))
        .collect();

    let mut rows: Vec<(String, Option<f64>, String)> = Vec::new();
    let raw = median((0..runs).map(|_| run_raw(&data)).collect());
    rows.push((
        "socket read only (ceiling)".into(),
        Some(raw),
        String::new(),
    ));
    let b1 = median(
        (0..runs)
            .map(|_| run_basalt(&rt, &data, &one, lines, &[]))
            .collect(),
    );
    rows.push((
        "basalt Session::expect, 1 pattern".into(),
        Some(b1),
        String::new(),
    ));
    let b4 = median(
        (0..runs)
            .map(|_| run_basalt(&rt, &data, &four, lines, &[]))
            .collect(),
    );
    rows.push((
        "basalt Session::expect, 4 patterns".into(),
        Some(b4),
        String::new(),
    ));
    // secrets that never occur: every line is searched for each
    let secrets = ["hunter 2 is my password", "T0k3n-0123456789abcdef"];
    let bs = median(
        (0..runs)
            .map(|_| run_basalt(&rt, &data, &one, lines, &secrets))
            .collect(),
    );
    rows.push((
        "basalt Session::expect, 1 pattern, 2 secrets masked".into(),
        Some(bs),
        String::new(),
    ));
    match pexpect_available() {
        Ok(()) => {
            let p1 = median((0..runs).map(|_| run_pexpect(&data, &[PROMPT])).collect());
            rows.push((
                "python3-pexpect fdspawn, 1 pattern".into(),
                Some(p1),
                String::new(),
            ));
            let p4 = median((0..runs).map(|_| run_pexpect(&data, &four_src)).collect());
            rows.push((
                "python3-pexpect fdspawn, 4 patterns".into(),
                Some(p4),
                String::new(),
            ));
        }
        Err(why) => rows.push(("python3-pexpect".into(), None, format!("skipped: {why}"))),
    }

    println!();
    println!("| reader | bytes | seconds | MiB/s |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, secs, note) in rows {
        match secs {
            Some(s) => println!(
                "| {name} | {bytes} | {s:.3} | {:.0} |",
                bytes as f64 / (1u64 << 20) as f64 / s
            ),
            None => println!("| {name} | {bytes} | - | - ({note}) |"),
        }
    }
}
