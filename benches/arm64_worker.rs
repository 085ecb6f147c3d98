//! The arm64 worker beside the x86 one: stripped sizes of `basalt-worker` and `basalt` (the
//! two binaries a worker host needs), and the worker's idle RSS, connected to a master
//! ([`basalt::lab::LocalLab`]), no job. The arm64 worker runs here under qemu-user
//! (`qemu-aarch64-static -L` the arm64 sysroot), so its process's VmRSS is qemu's: qemu-user's
//! own code, heap and translated-code cache plus the guest's memory. Two ways to tell them
//! apart:
//! - the guest's own memory: qemu runs the worker with its guest address space at a fixed
//!   place (`-B GUEST_BASE -R GUEST_SIZE`), and the bench sums the RSS of the mappings there
//!   (`/proc/PID/smaps`): the arm64 worker's code, libraries, heap and stacks, what it would
//!   use on an arm64 host;
//! - the difference with an idle trivial arm64 program (a C `pause()`, built with
//!   aarch64-linux-gnu-gcc) under the same qemu: an upper bound, as it also counts qemu's
//!   translated code for the worker's code and its per-thread state.
//!
//! Run it with:
//!
//!     cargo build --release --workspace && scripts/build-arm64.sh --release
//!     cargo bench --bench arm64_worker
//!
//! The arm64 release binaries must be built first (the bench says so and fails otherwise);
//! `BASALT_ARM64_BIN_DIR` and `BASALT_ARM64_SYSROOT` say where they and the sysroot are.

mod common;

use basalt::lab::{Arm64Build, LocalLab, Spec, WorkerCommand, WorkerSpec};
use common::{rss_mib, stripped_mib};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// LAVA's Python worker and dispatcher, per job on x86 (measured when basalt's issues were
/// written: `lava-run` of the demo job).
const LAVA_MIB: f64 = 112.0;

/// Where qemu-user puts the arm64 worker's guest address space (`-B`), and its size (`-R`).
const GUEST_BASE: u64 = 0x2000_0000_0000;
const GUEST_SIZE: u64 = 0x80_0000_0000;

/// RSS of the mappings of `pid` that start in `[lo, hi)`, in MiB; NaN when smaps cannot be read.
fn rss_in_range_mib(pid: i32, lo: u64, hi: u64) -> f64 {
    let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return f64::NAN;
    };
    let mut inside = false;
    let mut kib = 0u64;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((a, _)) = first.split_once('-') {
            if let Ok(start) = u64::from_str_radix(a, 16) {
                inside = (lo..hi).contains(&start);
                continue;
            }
        }
        if inside {
            if let Some(v) = line.strip_prefix("Rss:") {
                kib += v
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(0);
            }
        }
    }
    kib as f64 / 1024.0
}

/// A process stopped (SIGKILL) and reaped when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fail(what: &str) -> ! {
    eprintln!("arm64_worker: {what}");
    std::process::exit(1)
}

/// RSS of `pid` once it has settled: the largest of a few samples 0.5 s apart.
fn settled_rss(pid: i32) -> f64 {
    (0..4)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(500));
            rss_mib(pid)
        })
        .fold(f64::NAN, f64::max)
}

/// An idle trivial arm64 program under qemu-user: qemu-user's own share.
fn qemu_baseline(qemu: &Path, sysroot: &Path, scratch: &Path) -> f64 {
    let src = scratch.join("pause.c");
    let bin = scratch.join("pause");
    if std::fs::write(
        &src,
        "#include <unistd.h>\nint main(void) { pause(); return 0; }\n",
    )
    .is_err()
    {
        return f64::NAN;
    }
    let built = Command::new("aarch64-linux-gnu-gcc")
        .arg("-O2")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success());
    if !built {
        eprintln!("arm64_worker: aarch64-linux-gnu-gcc could not build the trivial program");
        return f64::NAN;
    }
    let child = Command::new(qemu)
        .arg("-L")
        .arg(sysroot)
        .arg(&bin)
        .stdin(Stdio::null())
        .spawn();
    match child {
        Ok(c) => {
            let g = Guard(c);
            settled_rss(g.0.id() as i32)
        }
        Err(e) => {
            eprintln!("arm64_worker: {}: {e}", qemu.display());
            f64::NAN
        }
    }
}

fn main() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_basalt"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| fail("no target directory"));
    let arm64 = Arm64Build::locate(&bin_dir);
    let missing = arm64.missing();
    if !missing.is_empty() {
        fail(&format!(
            "missing: {} (the release build: scripts/build-arm64.sh --release)",
            missing.join("; ")
        ));
    }
    if !bin_dir.join("basalt-worker").is_file() {
        fail("the x86 basalt-worker is missing: cargo build --release --workspace");
    }
    let qemu = arm64.qemu.clone().unwrap_or_default();
    let (sysroot, arm64_dir) = (&arm64.sysroot, &arm64.bin_dir);
    let tmp = std::env::temp_dir().join(format!("basalt-bench-arm64-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    if let Err(e) = std::fs::create_dir_all(&tmp) {
        fail(&format!("{}: {e}", tmp.display()));
    }
    let mut command = arm64
        .worker_command(&tmp.join("arm64"))
        .unwrap_or_else(|e| fail(&format!("the arm64 worker's command: {e}")));
    // the guest's address space where the bench can find it
    command.command.splice(
        1..1,
        [
            "-B".into(),
            format!("{GUEST_BASE:#x}").into(),
            "-R".into(),
            format!("{GUEST_SIZE:#x}").into(),
        ],
    );
    let worker = |name: &str, command: Option<WorkerCommand>| WorkerSpec {
        name: name.into(),
        boards: 0,
        qemu: 0,
        command,
    };
    let lab = LocalLab::start(Spec {
        dir: tmp.join("lab"),
        bin_dir: bin_dir.clone(),
        fixtures: repo.join("target/fixtures"),
        workers: vec![worker("x86", None), worker("arm64", Some(command))],
        heartbeat_secs: 1,
        bootdelay: 1,
        keep_job_dirs: false,
        events: false,
        anonymous_read: false,
        coordinator: None,
    })
    .unwrap_or_else(|e| fail(&format!("the lab: {e}")));
    // online; a few heartbeats later
    std::thread::sleep(Duration::from_secs(3));
    let rss = |name: &str| lab.worker_pid(name).map(settled_rss).unwrap_or(f64::NAN);
    let (x86_rss, arm64_rss) = (rss("x86"), rss("arm64"));
    let guest = lab
        .worker_pid("arm64")
        .map(|pid| rss_in_range_mib(pid, GUEST_BASE, GUEST_BASE + GUEST_SIZE))
        .unwrap_or(f64::NAN);
    drop(lab);
    let baseline = qemu_baseline(&qemu, sysroot, &tmp);
    let size = |strip: &str, dir: &Path, bin: &str| stripped_mib(strip, &dir.join(bin), &tmp);
    let x86_worker = size("strip", &bin_dir, "basalt-worker");
    let x86_basalt = size("strip", &bin_dir, "basalt");
    let arm_worker = size("aarch64-linux-gnu-strip", arm64_dir, "basalt-worker");
    let arm_basalt = size("aarch64-linux-gnu-strip", arm64_dir, "basalt");
    let _ = std::fs::remove_dir_all(&tmp);

    println!(
        "{:<52} | {:>8} | {:>8} | goal",
        "measure (MiB)", "x86_64", "arm64"
    );
    println!("{:-<52}-|-{:->8}-|-{:->8}-|------", "", "", "");
    let row = |m: &str, x: f64, a: f64, goal: &str| {
        let cell = |v: f64| {
            if v.is_nan() {
                "-".to_string()
            } else {
                format!("{v:.1}")
            }
        };
        println!("{m:<52} | {:>8} | {:>8} | {goal}", cell(x), cell(a));
    };
    row("basalt-worker stripped", x86_worker, arm_worker, "<= 8");
    row(
        "basalt (the dispatcher) stripped",
        x86_basalt,
        arm_basalt,
        "",
    );
    row(
        "worker idle RSS, connected (arm64: the qemu process)",
        x86_rss,
        arm64_rss,
        "",
    );
    row(
        "  the worker's own: its guest address space's RSS",
        x86_rss,
        guest,
        "<= 8",
    );
    row(
        "  qemu-user alone: a trivial arm64 program, idle",
        f64::NAN,
        baseline,
        "",
    );
    row(
        "  qemu process minus qemu alone (upper bound)",
        f64::NAN,
        arm64_rss - baseline,
        "",
    );
    row(
        "LAVA's Python worker + dispatcher, per job (x86)",
        LAVA_MIB,
        f64::NAN,
        "(LAVA, x86: >= 112)",
    );
    println!(
        "\narm64 runs under {} here: the qemu process's VmRSS includes qemu-user's own code, \
         heap, per-thread state and translated-code cache. The worker's own is the RSS of its \
         guest address space (qemu -B {GUEST_BASE:#x} -R {GUEST_SIZE:#x}: code, libraries, \
         heap, stacks), what it would use on an arm64 host; the difference with an idle \
         trivial arm64 program under the same qemu also counts qemu's translations of the \
         worker's code.",
        qemu.display()
    );
}
