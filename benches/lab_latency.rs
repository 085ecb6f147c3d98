//! The lab's latencies with its real processes ([`basalt::lab::LocalLab`]: `basalt-master`,
//! one `basalt-worker`, one `basalt-board`), against the lab issue's goals:
//!
//!     cargo build --release --workspace && cargo bench --bench lab_latency
//!
//! - submit → Running on an idle device, over `BASALT_BENCH_JOBS` jobs (default 200): each job
//!   is submitted through the REST API, timed until the API shows it Running (the worker has
//!   started `basalt run` and the master has its first log batch), then canceled so that the
//!   device is idle for the next one;
//! - console line → `basalt jobs logs --follow`: a job prints 200 lines 20 ms apart; each line's
//!   `dt` (when `basalt run` read it from the board's console) is compared with when the
//!   follower printed it;
//! - the daemons' RSS while idle (`VmRSS` from /proc), and the stripped size of `basalt-worker`.
//!
//! The master's share at scale (200 simulated workers) is `cargo bench -p basalt-master
//! --bench lab`.

mod common;

use common::{rss_mib, stripped_mib};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the fields after the command name, which is in parentheses
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The share of a core `pid` uses over `secs` seconds, in percent.
fn idle_cpu_percent(pid: Option<i32>, secs: u64) -> f64 {
    let Some(pid) = pid else { return f64::NAN };
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let (Some(a), _) = (
        cpu_ticks(pid),
        std::thread::sleep(Duration::from_secs(secs)),
    ) else {
        return f64::NAN;
    };
    cpu_ticks(pid)
        .map(|b| (b - a) as f64 / hz / secs as f64 * 100.0)
        .unwrap_or(f64::NAN)
}

/// Microseconds since the epoch of a log record's `dt` (`2026-12-01T14:07:40.257682+00:00`).
fn dt_micros(dt: &str) -> Option<i64> {
    let (date, time) = dt.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.strip_suffix("+00:00")?;
    let (hms, frac) = time.split_once('.')?;
    let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    // days from civil (Howard Hinnant)
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let micros: i64 = format!("{frac:0<6}").get(..6)?.parse().ok()?;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000) + micros)
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn with_step(job: &str, step: &str) -> String {
    job.replacen(
        "          steps:\n",
        &format!("          steps:\n          - {step}\n"),
        1,
    )
}

fn main() {
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_basalt"))
        .parent()
        .map(PathBuf::from)
        .expect("target directory");
    let jobs: usize = std::env::var("BASALT_BENCH_JOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let (lab, tmp) = common::one_board_lab("lab");
    let c = lab.client();
    let state = |id: u64| {
        c.get(&format!("jobs/{id}/"))
            .ok()
            .and_then(|j| j["state"].as_str().map(String::from))
            .unwrap_or_default()
    };
    let wait = |id: u64, want: &str, within: Duration| {
        let deadline = Instant::now() + within;
        loop {
            let s = state(id);
            if s == want || (want == "Running" && s == "Finished") {
                return s;
            }
            assert!(Instant::now() < deadline, "job {id} still {s}");
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    // idle numbers first
    std::thread::sleep(Duration::from_secs(2));
    let master_idle = lab.master_pid().map(rss_mib).unwrap_or(f64::NAN);
    let worker_idle = lab.worker_pid("w1").map(rss_mib).unwrap_or(f64::NAN);
    // heartbeats every 5 s: 10 s sees two
    let worker_cpu = idle_cpu_percent(lab.worker_pid("w1"), 10);

    // submit → Running
    let board = lab.board_job().expect("board job");
    let mut running = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        let t0 = Instant::now();
        let id = c.submit(&board).expect("submit")[0];
        let s = wait(id, "Running", Duration::from_secs(30));
        running.push(t0.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(s, "Running", "job {id} ended before it was seen running");
        c.cancel(id).expect("cancel");
        wait(id, "Finished", Duration::from_secs(60));
    }
    running.sort_by(f64::total_cmp);

    // console line → logs --follow
    let ticks = "for i in $(seq 1 200); do echo stamp-$i; sleep 0.02; done";
    let id = c.submit(&with_step(&board, ticks)).expect("submit")[0];
    let mut follower = Command::new(bin_dir.join("basalt"))
        .args(["jobs", "logs", &id.to_string(), "--follow", "--raw"])
        .args(["--url", &lab.url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("basalt jobs logs --follow");
    let mut delays = Vec::new();
    if let Some(out) = follower.stdout.take() {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let seen = now_micros();
            if !line.contains("\"lvl\": \"target\"") || !line.contains("\"msg\": \"stamp-") {
                continue;
            }
            let dt = line
                .split("\"dt\": \"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .and_then(dt_micros);
            if let Some(dt) = dt {
                delays.push((seen - dt) as f64 / 1000.0);
            }
        }
    }
    let _ = follower.wait();
    delays.sort_by(f64::total_cmp);

    let size = stripped_mib("strip", &bin_dir.join("basalt-worker"), &tmp);
    drop(lab);
    let _ = std::fs::remove_dir_all(&tmp);

    println!("{:<50} | {:>8} | goal", "measure", "value");
    println!("{:-<50}-|-{:->8}-|------", "", "");
    let row = |m: &str, v: f64, goal: &str| println!("{m:<50} | {v:>8.1} | {goal}");
    row(
        &format!("submit -> Running p50 (ms, {} jobs)", running.len()),
        percentile(&running, 0.5),
        "",
    );
    row(
        "submit -> Running p99 (ms)",
        percentile(&running, 0.99),
        "<= 50",
    );
    row(
        &format!(
            "console line -> logs --follow p50 (ms, {} lines)",
            delays.len()
        ),
        percentile(&delays, 0.5),
        "",
    );
    row(
        "console line -> logs --follow p99 (ms)",
        percentile(&delays, 0.99),
        "<= 100",
    );
    row("master idle RSS, 1 device (MiB)", master_idle, "");
    row("worker idle RSS, connected (MiB)", worker_idle, "<= 8");
    row("worker idle CPU, connected (% of a core)", worker_cpu, "");
    row("basalt-worker stripped (MiB)", size, "<= 8");
}
