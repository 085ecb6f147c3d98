//! basalt's TFTP server against tftpd-hpa over loopback, read by the same client
//! (`hal/tests/common/tftp_client.rs`): `cargo bench -p basalt-hal --bench tftp`.
//!
//! Both servers run as child processes on 127.0.0.1 (basalt's: this binary with `--serve`,
//! on a current-thread runtime as in the worker; tftpd-hpa: `in.tftpd -L -a 127.0.0.1:PORT
//! -s ROOT`), and are killed by PID at the end. A server's CPU time is its process's user +
//! system time (children included: tftpd-hpa forks one per transfer) from `/proc/PID/stat`.
//! `BENCH_TFTP_MIB` changes the size of the single transfers (default 64), `BENCH_TFTP_RUNS`
//! the runs of each case (default 3: the best is shown, each run's rate and server CPU seconds
//! below it, the servers alternate), `BENCH_TFTP_CASES=512,8192` runs only those lock-step
//! blksizes.

#[path = "../tests/common/tftp_client.rs"]
mod tftp_client;

use basalt_hal::staging::{TftpConfig, TftpServer};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tftp_client::{fetch, fnv, Opts, FNV0};

const MIB: u64 = 1024 * 1024;

/// A child process killed (by its PID) and reaped when dropped.
struct Server {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// User + system CPU ticks of the process itself.
    fn own_ticks(&self) -> u64 {
        stat_of(self.child.id()).map(|(_, t)| t).unwrap_or(0)
    }
}

/// `(ppid, utime + stime)` of a process, from `/proc/PID/stat`.
fn stat_of(pid: u32) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // after the command: state(0) ppid(1) ... utime(11) stime(12)
    let ppid = f.get(1)?.parse().ok()?;
    let t = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((ppid, t))
}

/// Samples the CPU ticks of `pid`'s children (tftpd-hpa forks one per transfer, and they
/// are gone when it ends) until `stop`; returns the sum of each child's last sample.
fn sample_children(pid: u32, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> u64 {
    let mut seen = std::collections::HashMap::new();
    loop {
        let done = stop.load(std::sync::atomic::Ordering::SeqCst);
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                if let Some((ppid, t)) = stat_of(p) {
                    if ppid == pid {
                        seen.insert(p, t);
                    }
                }
            }
        }
        if done {
            return seen.values().sum();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn hz() -> f64 {
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        serve(
            Path::new(&args[i + 1]),
            args[i + 2].parse().expect("ADDR:PORT"),
        );
        return;
    }
    let mib: u64 = std::env::var("BENCH_TFTP_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    // tftpd-hpa drops to user tftp: the root and the files must be world-readable
    std::fs::create_dir_all(root.join("basalt-bench")).unwrap();
    for d in [dir.path(), &root, &root.join("basalt-bench")] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let big = write_file(&root.join("basalt-bench/big"), mib * MIB, 1);
    let small = write_file(&root.join("basalt-bench/small"), 32 * MIB, 2);

    let basalt = start_basalt(&root);
    let hpa = start_tftpd_hpa(&root);
    let servers = [&basalt, &hpa];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let runs: usize = std::env::var("BENCH_TFTP_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    println!("TFTP over loopback: {mib} MiB per transfer (20 clients: 32 MiB each), MiB/s, best of {runs} runs, the servers alternating");
    println!("{:<34} {:>12} {:>12}", "case", basalt.name, hpa.name);
    let mut resent = [0u64; 2];
    // BENCH_TFTP_CASES=512,8192: only those single-transfer blksizes (lock-step), no 20 clients
    let only: Option<Vec<u16>> = std::env::var("BENCH_TFTP_CASES")
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect());
    let cases = [(512u16, 1u16), (1468, 1), (8192, 1), (1468, 16)];
    let cases = cases
        .into_iter()
        .filter(|(b, w)| only.as_ref().is_none_or(|o| *w == 1 && o.contains(b)));
    for (blksize, window) in cases {
        let mut row = format!("{:<34}", format!("blksize {blksize} windowsize {window}"));
        let mut best = [(0f64, false); 2];
        let (mut rates, mut cpus) = ([vec![], vec![]], [vec![], vec![]]);
        for _ in 0..runs {
            for (k, s) in servers.iter().enumerate() {
                let o = Opts {
                    blksize: Some(blksize),
                    windowsize: (window > 1).then_some(window),
                    keep: false,
                    retransmit: Duration::from_secs(1),
                    ..Opts::default()
                };
                let ((r, secs), cpu) = with_cpu(s, || {
                    let t = Instant::now();
                    let r = rt
                        .block_on(fetch(s.addr, b"basalt-bench/big", &o))
                        .expect("transfer");
                    (r, t.elapsed().as_secs_f64())
                });
                assert_eq!((r.len, r.fnv), big, "{}: wrong data", s.name);
                let granted = r
                    .oack
                    .as_ref()
                    .is_some_and(|o| o.iter().any(|(k, _)| k == "windowsize"));
                resent[k] += r.resent;
                let rate = mib as f64 / secs;
                rates[k].push(format!("{rate:.0}"));
                cpus[k].push(format!("{cpu:.2}"));
                if rate > best[k].0 {
                    best[k] = (rate, window > 1 && !granted);
                }
            }
        }
        for (rate, lockstep) in best {
            let note = if lockstep { "*" } else { "" };
            row += &format!(" {:>12}", format!("{rate:.1}{note}"));
        }
        println!("{row}");
        println!(
            "{:<34} {} / {}",
            "  each run MiB/s (server CPU s)",
            runs_of(&rates[0], &cpus[0]),
            runs_of(&rates[1], &cpus[1])
        );
    }
    let twenty: &[u16] = if only.is_some() { &[] } else { &[1, 16] };
    for &window in twenty {
        let mut row = format!(
            "{:<34}",
            format!("20 clients, blksize 1468 window {window}")
        );
        let mut cpu_row = format!("{:<34}", "  total s / server CPU s");
        let mut best = [(f64::MAX, 0f64); 2];
        for _ in 0..runs {
            for (k, s) in servers.iter().enumerate() {
                let (secs, cpu) = twenty_clients(&rt, s, window, small);
                if secs < best[k].0 {
                    best[k] = (secs, cpu);
                }
            }
        }
        for (secs, cpu) in best {
            row += &format!(" {:>12}", format!("{:.0}", 20.0 * 32.0 / secs));
            cpu_row += &format!(" {:>12}", format!("{secs:.2} / {cpu:.2}"));
        }
        println!("{row}");
        println!("{cpu_row}");
    }
    println!(
        "client timeouts (each ~1 s lost) in the single transfers: basalt {}, tftpd-hpa {}",
        resent[0], resent[1]
    );
    println!(
        "(* the server did not grant windowsize: tftpd-hpa has none, the transfer ran lock-step)"
    );
}

/// 20 clients read 32 MiB each at blksize 1468 at once: (seconds, the server's CPU seconds).
fn twenty_clients(
    rt: &tokio::runtime::Runtime,
    s: &Server,
    window: u16,
    small: (u64, u64),
) -> (f64, f64) {
    let ((results, secs), cpu) = with_cpu(s, || {
        let t = Instant::now();
        let results = rt.block_on(async {
            let tasks: Vec<_> = (0..20)
                .map(|_| {
                    let addr = s.addr;
                    tokio::spawn(async move {
                        let o = Opts {
                            blksize: Some(1468),
                            windowsize: (window > 1).then_some(window),
                            keep: false,
                            retransmit: Duration::from_secs(1),
                            give_up: Duration::from_secs(60),
                            ..Opts::default()
                        };
                        fetch(addr, b"basalt-bench/small", &o).await
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.expect("client task"));
            }
            out
        });
        (results, t.elapsed().as_secs_f64())
    });
    for r in results {
        let r = r.expect("transfer");
        assert_eq!((r.len, r.fnv), small, "{}: wrong data", s.name);
    }
    (secs, cpu)
}

/// Runs `f` and measures the server's CPU seconds meanwhile (its own and its children's).
fn with_cpu<T>(s: &Server, f: impl FnOnce() -> T) -> (T, f64) {
    let own0 = s.own_ticks();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (pid, stop) = (s.child.id(), stop.clone());
        std::thread::spawn(move || sample_children(pid, stop))
    };
    let out = f();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let children = sampler.join().unwrap_or(0);
    (out, (s.own_ticks() - own0 + children) as f64 / hz())
}

/// `rate (cpu)` of each run.
fn runs_of(rates: &[String], cpus: &[String]) -> String {
    let each: Vec<String> = rates
        .iter()
        .zip(cpus)
        .map(|(r, c)| format!("{r} ({c})"))
        .collect();
    each.join(" ")
}

/// Writes `len` bytes of a pattern; returns (length, checksum).
fn write_file(path: &Path, len: u64, seed: u64) -> (u64, u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    let mut h = FNV0;
    let mut chunk = vec![0u8; MIB as usize];
    for _ in 0..len / MIB {
        for b in chunk.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
        }
        h = fnv(h, &chunk);
        f.write_all(&chunk).unwrap();
    }
    f.flush().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    (len / MIB * MIB, h)
}

/// The child's side: basalt's server on a current-thread runtime, its address on stdout.
fn serve(root: &Path, addr: SocketAddr) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = TftpServer::bind(addr, root, TftpConfig::default())
            .await
            .expect("bind");
        println!("{}", server.local_addr().expect("address"));
        let _ = std::io::stdout().flush();
        if let Err(e) = server.serve().await {
            eprintln!("tftp server: {e}");
        }
    });
}

fn start_basalt(root: &Path) -> Server {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("--serve")
        .arg(root)
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting basalt's server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().parse().expect("the server's address");
    Server {
        name: "basalt",
        child,
        addr,
    }
}

fn start_tftpd_hpa(root: &Path) -> Server {
    let bin = ["/usr/sbin/in.tftpd", "/sbin/in.tftpd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("in.tftpd is not installed: run scripts/install-deps.sh (package tftpd-hpa)");
    // a UDP port that was free a moment ago
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = Command::new(bin)
        .args(["-L", "-a", &addr.to_string(), "-s"])
        .arg(root)
        .spawn()
        .expect("starting in.tftpd");
    let server = Server {
        name: "tftpd-hpa",
        child,
        addr,
    };
    // wait until it answers (a missing file's error is an answer)
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let probe = Opts {
        retransmit: Duration::from_millis(50),
        give_up: Duration::from_millis(200),
        ..Opts::default()
    };
    loop {
        match rt.block_on(fetch(addr, b"basalt-bench/none", &probe)) {
            Err(tftp_client::ClientError::TimedOut) if Instant::now() < deadline => continue,
            Err(tftp_client::ClientError::Tftp(..)) => break,
            other => panic!("in.tftpd on {addr} does not answer: {other:?}"),
        }
    }
    server
}
