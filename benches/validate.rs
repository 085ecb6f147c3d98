//! `basalt validate` of LAVA's `jobs/qemu/kvm-inline.yaml` on its device `kvm01`: wall time
//! and peak RSS, side by side with `lava-run --validate` when lava-dispatcher is installed.
//!
//!     cargo bench --bench validate
//!
//! Goal (issue 2): ≤ 10 ms wall and ≤ 10 MiB peak RSS. Anchor measured on this machine:
//! Debian's lava-dispatcher 2023.01 `lava-run --validate`: 0.42 s, 113 MiB.
//!
//! Then `basalt validate` of generated LTP jobs (LAVA's verdict, issue 13: ≤ 5 ms, ≤ 8 MiB):
//! lava-test-plans' `lkft/qemu_arm64/ltp-syscalls.yaml` and tuxlava's
//! `lkft/qemu-arm64/ltp-syscalls.yaml`, rendered by `scripts/gen-lava-jobs.sh` (run first
//! when `target/generated-jobs` lacks them).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 50;

/// Runs a command to completion; returns its wall time and peak RSS (KiB) from `wait4`.
#[allow(clippy::zombie_processes)] // reaped by wait4 below
fn measure(cmd: &mut Command) -> (Duration, i64, bool) {
    let start = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; `usage` is a valid rusage.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4 failed");
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (start.elapsed(), usage.ru_maxrss, ok)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn corpus() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::var("BASALT_LAVA_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| manifest.join("../shared/conformance/lava"))
}

fn row(name: &str, wall: Duration, rss_kib: i64, goal: &str) {
    println!(
        "| {name:<38} | {:>10.2} ms | {:>9.1} MiB | {goal:<22} |",
        wall.as_secs_f64() * 1e3,
        rss_kib as f64 / 1024.0
    );
}

fn main() {
    let c = corpus();
    let job = c.join("jobs/qemu/kvm-inline.yaml");
    let dict = c.join("devices/dictionaries/kvm01.jinja2");
    let types = c.join("devices/device-types");
    let basalt = env!("CARGO_BIN_EXE_basalt");
    let mut walls = Vec::new();
    let mut rss = 0;
    for _ in 0..RUNS {
        let (w, r, ok) = measure(
            Command::new(basalt)
                .arg("validate")
                .arg(&job)
                .arg("--device")
                .arg(&dict)
                .arg("--device-types")
                .arg(&types),
        );
        assert!(ok, "basalt validate failed");
        walls.push(w);
        rss = rss.max(r);
    }
    println!("validate jobs/qemu/kvm-inline.yaml on kvm01 (median of {RUNS} runs, peak RSS)");
    println!(
        "| {:<38} | {:>13} | {:>13} | {:<22} |",
        "command", "wall", "peak RSS", "goal / anchor"
    );
    println!("|{:-<40}|{:-<15}|{:-<15}|{:-<24}|", "", "", "", "");
    row(
        "basalt validate (renders kvm01.jinja2)",
        median(walls),
        rss,
        "<= 10 ms, <= 10 MiB",
    );
    generated_rows(basalt);
    let lava = which("lava-run");
    match lava {
        Some(lava_run) => {
            let tmp =
                std::env::temp_dir().join(format!("basalt-bench-lava-{}", std::process::id()));
            std::fs::create_dir_all(&tmp).ok();
            let device = c.join("devices/rendered/kvm01.yaml");
            let mut walls = Vec::new();
            let mut rss = 0;
            for _ in 0..5 {
                let (w, r, _) = measure(
                    Command::new(&lava_run)
                        .arg("--validate")
                        .arg("--device")
                        .arg(&device)
                        .arg("--output-dir")
                        .arg(&tmp)
                        .arg("--job-id")
                        .arg("1")
                        .arg(&job),
                );
                walls.push(w);
                rss = rss.max(r);
            }
            std::fs::remove_dir_all(&tmp).ok();
            row(
                "lava-run --validate (measured here)",
                median(walls),
                rss,
                "anchor",
            );
        }
        None => {
            row(
                "lava-run --validate (issue's anchor)",
                Duration::from_millis(420),
                113 * 1024,
                "not installed here",
            );
        }
    }
}

/// `basalt validate` (LAVA's verdict, no device) of the generated LTP jobs.
fn generated_rows(basalt: &str) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = repo.join("target/generated-jobs");
    let jobs = [
        "lava-test-plans/lkft/qemu_arm64/ltp-syscalls.yaml",
        "tuxlava/lkft/qemu-arm64/ltp-syscalls.yaml",
    ];
    if !jobs.iter().all(|j| dir.join(j).is_file()) {
        let ok = Command::new("bash")
            .arg(repo.join("scripts/gen-lava-jobs.sh"))
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "scripts/gen-lava-jobs.sh failed");
    }
    for job in jobs {
        let path = dir.join(job);
        let mut walls = Vec::new();
        let mut rss = 0;
        for _ in 0..RUNS {
            let (w, r, ok) = measure(Command::new(basalt).arg("validate").arg(&path));
            assert!(ok, "basalt validate {job} failed");
            walls.push(w);
            rss = rss.max(r);
        }
        let name = format!("basalt validate {}", job.split('/').next().unwrap_or(job));
        row(&name, median(walls), rss, "<= 5 ms, <= 8 MiB");
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}
