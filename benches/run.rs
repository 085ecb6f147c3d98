//! `basalt run` of the demo job (Debian kernel + busybox initramfs in QEMU, three test cases)
//! against the goals and LAVA's numbers on the same job:
//!
//!     cargo bench --bench run
//!
//! Measured: wall time of the whole job, time spent in the boot action (QEMU booting the
//! kernel to a shell), time outside the boot, and basalt's own CPU time and peak RSS (from
//! `getrusage(RUSAGE_SELF)` logged at the end of the job, so QEMU is excluded).
//! Anchor (Debian's lava-dispatcher 2023.01 `lava-run`, measured on this machine): median
//! 11.4 s for the job, of which 8.6 s is QEMU's boot; 2.8 s outside the boot; peak RSS 112 MiB;
//! CPU 0.70 s. When `lava-run` is installed it is not run here: its job needs a LAVA server
//! configuration this benchmark does not set up, so the anchor is printed instead.

mod common;

use common::{boot_duration, median, usage};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const RUNS: usize = 5;

fn main() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixtures = std::env::var_os("BASALT_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target/fixtures"));
    let (k, i) = (
        fixtures.join("amd64/vmlinux"),
        fixtures.join("amd64/initramfs.cpio.gz"),
    );
    if !k.is_file() || !i.is_file() {
        eprintln!(
            "fixtures missing in {}: run hw-tests/build-fixtures.sh",
            fixtures.display()
        );
        std::process::exit(1);
    }
    let job = std::fs::read_to_string(repo.join("config/jobs/demo-qemu.yaml"))
        .expect("demo job")
        .replace("@KERNEL@", &k.to_string_lossy())
        .replace("@INITRD@", &i.to_string_lossy());
    let dir = std::env::temp_dir().join(format!("basalt-bench-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let job_path = dir.join("job.yaml");
    std::fs::write(&job_path, job).expect("job");
    let (mut walls, mut boots, mut outside, mut cpus, mut rsss) =
        (vec![], vec![], vec![], vec![], vec![]);
    for n in 0..RUNS {
        let out = dir.join(format!("out{n}"));
        let t = Instant::now();
        let st = Command::new(env!("CARGO_BIN_EXE_basalt"))
            .arg("run")
            .arg(&job_path)
            .arg("--device")
            .arg(repo.join("config/devices/qemu-amd64.jinja2"))
            .arg("--output-dir")
            .arg(&out)
            .arg("-q")
            .stdout(std::process::Stdio::null())
            .status()
            .expect("basalt run");
        let wall = t.elapsed().as_secs_f64();
        assert!(
            st.success(),
            "the job did not complete: see {}",
            out.display()
        );
        let log = std::fs::read_to_string(out.join("output.yaml")).expect("log");
        let results = std::fs::read_to_string(out.join("results.yaml")).expect("results");
        let boot = boot_duration(&results).expect("boot duration in results.yaml");
        let (cpu, rss) = usage(&log).expect("resource line in the log");
        walls.push(wall);
        boots.push(boot);
        outside.push(wall - boot);
        cpus.push(cpu);
        rsss.push(rss);
    }
    std::fs::remove_dir_all(&dir).ok();
    println!("basalt run of the demo job on qemu-amd64 (median of {RUNS} runs)");
    println!(
        "| {:<26} | {:>12} | {:>22} | {:>10} |",
        "measure", "basalt", "lava-run 2023.01 anchor", "goal"
    );
    println!("|{:-<28}|{:-<14}|{:-<24}|{:-<12}|", "", "", "", "");
    let row = |name: &str, v: String, anchor: &str, goal: &str| {
        println!("| {name:<26} | {v:>12} | {anchor:>22} | {goal:>10} |")
    };
    row(
        "job wall time",
        format!("{:.2} s", median(walls)),
        "11.4 s",
        "",
    );
    row(
        "  of which QEMU boot",
        format!("{:.2} s", median(boots)),
        "8.6 s",
        "",
    );
    row(
        "  outside the boot",
        format!("{:.3} s", median(outside)),
        "2.8 s",
        "<= 0.3 s",
    );
    row(
        "dispatcher CPU",
        format!("{:.3} s", median(cpus)),
        "0.70 s",
        "<= 0.1 s",
    );
    row(
        "dispatcher peak RSS",
        format!("{:.1} MiB", median(rsss)),
        "112 MiB",
        "<= 12 MiB",
    );
}
