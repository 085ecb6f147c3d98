//! What confining a job's processes costs (hal/src/confine.rs, docs/security.md):
//!
//!     cargo bench --bench confine
//!
//! 1. Starting `/bin/true` and waiting for it, N times: plainly (tokio), supervised (the
//!    spawner thread and `PDEATHSIG`: the admin's commands), confined (user, mount, PID, IPC
//!    and network namespaces; the job's QEMU, git, connection command), confined with the
//!    network kept, and confined with a job directory of 1000 files to give to the job user.
//!    The first confined start of a process also probes what the host allows (once).
//! 2. The demo job (`basalt run`, QEMU) with and without confinement (`--no-confine`): wall
//!    time, time outside QEMU's boot (the wall time less the boot action's duration: what
//!    basalt itself adds, without the boot's ±50 ms of noise), the time QEMU takes to start
//!    (from the log: "boot command" to "started qemu"), and basalt's peak RSS.
//!
//! Goal (issue 14): the overhead per job start is at most 20 ms; basalt's peak RSS at most
//! 10 MiB. Needs root for the confined rows (otherwise they show what a user gets).

mod common;

use basalt_hal::confine::{self, Confinement, JobUser, Policy};
use common::{boot_duration, median, p90, usage};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const STARTS: usize = 100;
const JOB_RUNS: usize = 5;

/// Milliseconds per start of `true` (spawn and wait), `n` times.
fn starts(rt: &tokio::runtime::Runtime, n: usize, policy: Option<&Policy>) -> Vec<f64> {
    rt.block_on(async {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let mut cmd = tokio::process::Command::new("/bin/true");
            cmd.stdin(Stdio::null()).stdout(Stdio::null());
            let t = Instant::now();
            let mut child = match policy {
                None => cmd.spawn().expect("spawn"),
                Some(p) => confine::spawn(cmd, p).expect("spawn"),
            };
            let st = child.wait().await.expect("wait");
            v.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(st.success(), "true failed: {st}");
        }
        v
    })
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let root = nix::unistd::geteuid().is_root();
    let jobdir = tempfile::Builder::new()
        .prefix("basalt-bench-confine-")
        .tempdir()
        .expect("temp dir");
    let many = tempfile::Builder::new()
        .prefix("basalt-bench-confine-many-")
        .tempdir()
        .expect("temp dir");
    for d in 0..10 {
        let sub = many.path().join(format!("d{d}"));
        std::fs::create_dir(&sub).expect("dir");
        for f in 0..100 {
            std::fs::write(sub.join(format!("f{f}")), "x").expect("file");
        }
    }
    let conf = |dir: &Path, net: bool| {
        Policy::Confined(
            Confinement::new(JobUser::nobody())
                .writable(dir)
                .network(net),
        )
    };
    let t = Instant::now();
    let support = confine::support().clone();
    let probe = t.elapsed().as_secs_f64() * 1e3;
    // warm up the spawner thread and the runtime
    starts(&rt, 3, Some(&Policy::Supervised));
    let plain = starts(&rt, STARTS, None);
    let supervised = starts(&rt, STARTS, Some(&Policy::Supervised));
    let confined = starts(&rt, STARTS, Some(&conf(jobdir.path(), false)));
    let with_net = starts(&rt, STARTS, Some(&conf(jobdir.path(), true)));
    // give the 1000 files back to root each time, so that every start changes them all
    let mut thousand = Vec::new();
    for _ in 0..10 {
        if root {
            let _ = confine::chown_tree(many.path(), 0, 0);
        }
        thousand.extend(starts(&rt, 1, Some(&conf(many.path(), false))));
    }
    println!(
        "confinement support on this host: {support:?} (probe, once per process: {probe:.2} ms)"
    );
    println!();
    println!("start and wait for /bin/true ({STARTS} times; ms)");
    println!(
        "| {:<44} | {:>8} | {:>8} | {:>10} |",
        "how", "median", "p90", "overhead"
    );
    println!("|{:-<46}|{:-<10}|{:-<10}|{:-<12}|", "", "", "", "");
    let base = median(plain.clone());
    let row = |name: &str, v: Vec<f64>| {
        let m = median(v.clone());
        println!(
            "| {name:<44} | {m:>8.2} | {:>8.2} | {:>+10.2} |",
            p90(v),
            m - base
        );
    };
    row("plain tokio::process::Command", plain);
    row("supervised (spawner thread, PDEATHSIG)", supervised);
    row("confined, no network", confined.clone());
    row("confined, host network", with_net);
    row("confined, 1000 files in its directory to chown", thousand);
    let per_job = probe + median(confined) - base;
    println!();
    println!(
        "per job start (probe + one confined start - a plain one): {per_job:.2} ms (goal <= 20 ms)"
    );
    println!();
    demo_job();
}

/// The demo job, confined and not: medians of wall time, time outside the boot, QEMU's
/// start and peak RSS.
fn demo_job() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixtures = std::env::var_os("BASALT_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target/fixtures"));
    let (k, i) = (
        fixtures.join("amd64/vmlinux"),
        fixtures.join("amd64/initramfs.cpio.gz"),
    );
    let has_qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok();
    if !k.is_file() || !i.is_file() || !has_qemu {
        println!(
            "demo job: skipped (fixtures in {} or QEMU missing)",
            fixtures.display()
        );
        return;
    }
    let job = std::fs::read_to_string(repo.join("config/jobs/demo-qemu.yaml"))
        .expect("demo job")
        .replace("@KERNEL@", &k.to_string_lossy())
        .replace("@INITRD@", &i.to_string_lossy());
    let dir = std::env::temp_dir().join(format!("basalt-bench-confine-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let job_path = dir.join("job.yaml");
    std::fs::write(&job_path, job).expect("job");
    let mut rows = Vec::new();
    for (name, extra) in [("not confined (--no-confine)", true), ("confined", false)] {
        let (mut walls, mut outside, mut starts, mut rsss) = (vec![], vec![], vec![], vec![]);
        for n in 0..JOB_RUNS {
            let out = dir.join(format!("out-{extra}-{n}"));
            let t = Instant::now();
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_basalt"));
            cmd.arg("run")
                .arg(&job_path)
                .arg("--device")
                .arg(repo.join("config/devices/qemu-amd64.jinja2"))
                .arg("--output-dir")
                .arg(&out)
                .arg("-q")
                .stdout(Stdio::null());
            if extra {
                cmd.arg("--no-confine");
            }
            let st = cmd.status().expect("basalt run");
            let wall = t.elapsed().as_secs_f64();
            walls.push(wall);
            assert!(st.success(), "the job did not complete: {}", out.display());
            let log = std::fs::read_to_string(out.join("output.yaml")).expect("log");
            let results = std::fs::read_to_string(out.join("results.yaml")).expect("results");
            if let Some(boot) = boot_duration(&results) {
                outside.push(wall - boot);
            }
            if let Some(ms) = qemu_start_ms(&log) {
                starts.push(ms);
            }
            if let Some(rss) = usage(&log).map(|(_, rss)| rss) {
                rsss.push(rss);
            }
        }
        rows.push((
            name,
            median(walls),
            median(outside),
            median(starts),
            median(rsss),
        ));
    }
    std::fs::remove_dir_all(&dir).ok();
    println!("demo job on qemu-amd64 (median of {JOB_RUNS} runs)");
    println!(
        "| {:<28} | {:>8} | {:>17} | {:>13} | {:>12} |",
        "basalt run", "wall", "outside the boot", "QEMU start", "peak RSS"
    );
    println!(
        "|{:-<30}|{:-<10}|{:-<19}|{:-<15}|{:-<14}|",
        "", "", "", "", ""
    );
    for (name, wall, out, start, rss) in &rows {
        println!(
            "| {name:<28} | {wall:>6.2} s | {:>14.1} ms | {start:>10.2} ms | {rss:>8.1} MiB |",
            out * 1e3
        );
    }
    if let [(_, _, o0, s0, _), (_, _, o1, s1, r1)] = rows.as_slice() {
        println!(
            "confinement: {:+.1} ms outside the boot per job, {:+.2} ms to start QEMU (goal <= 20 ms); peak RSS {r1:.1} MiB (goal <= 10 MiB)",
            (o1 - o0) * 1e3,
            s1 - s0
        );
    }
}

/// Milliseconds from "boot command" to "started qemu" in the log.
fn qemu_start_ms(log: &str) -> Option<f64> {
    let at = |needle: &str| -> Option<f64> {
        let line = log.lines().find(|l| l.contains(needle))?;
        let dt = line.split("\"dt\": \"").nth(1)?.split('"').next()?;
        // 2026-12-01T09:44:49.762608+00:00: seconds of the day are enough here
        let time = dt.split('T').nth(1)?.split('+').next()?;
        let mut parts = time.split(':');
        let h: f64 = parts.next()?.parse().ok()?;
        let m: f64 = parts.next()?.parse().ok()?;
        let s: f64 = parts.next()?.parse().ok()?;
        Some((h * 3600.0 + m * 60.0 + s) * 1e3)
    };
    Some(at("started qemu")? - at("boot command:")?)
}
