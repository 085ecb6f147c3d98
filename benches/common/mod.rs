//! What the benches share: statistics and reading a job's output directory.
#![allow(dead_code)]

/// The median of `v` (not empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The 90th percentile of `v` (not empty).
pub fn p90(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[(v.len() * 9 / 10).min(v.len() - 1)]
}

/// Duration of the boot action (`boot-image-retry`) from results.yaml.
pub fn boot_duration(results: &str) -> Option<f64> {
    let doc = basalt::yaml::load(results).ok()?;
    doc.as_seq()?
        .iter()
        .find(|r| r.get("case").and_then(|c| c.as_str()) == Some("boot-image-retry"))?
        .get("duration")?
        .as_str()?
        .parse()
        .ok()
}

/// (cpu seconds, peak RSS MiB) from the log's resource line.
pub fn usage(log: &str) -> Option<(f64, f64)> {
    let line = log.lines().find(|l| l.contains("basalt resources: cpu "))?;
    let rest = line.split("basalt resources: cpu ").nth(1)?;
    let cpu: f64 = rest.split(' ').next()?.parse().ok()?;
    let rss: f64 = rest
        .split("peak rss ")
        .nth(1)?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    Some((cpu, rss))
}

/// A process's resident memory (`VmRSS` from /proc), in MiB; NaN when it cannot be read.
pub fn rss_mib(pid: i32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(String::from))
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// The size of `bin` once stripped by `strip` (`strip`, or `aarch64-linux-gnu-strip` for an
/// arm64 binary) into `scratch`, in MiB; NaN when that fails.
pub fn stripped_mib(strip: &str, bin: &std::path::Path, scratch: &std::path::Path) -> f64 {
    let name = bin
        .file_name()
        .map(|n| format!("{}.stripped", n.to_string_lossy()))
        .unwrap_or_else(|| "stripped".into());
    let out = scratch.join(name);
    std::process::Command::new(strip)
        .arg("-o")
        .arg(&out)
        .arg(bin)
        .status()
        .ok()
        .filter(|s| s.success())
        .and_then(|_| std::fs::metadata(&out).ok())
        .map(|m| m.len() as f64 / (1024.0 * 1024.0))
        .unwrap_or(f64::NAN)
}

/// A [`basalt::lab::LocalLab`] of the built binaries (next to this bench's `basalt`): a master
/// and worker `w1` with one `basalt-board`, heartbeats every 5 s, under a fresh
/// `$TMPDIR/basalt-bench-TAG-PID`. Exits the bench with the reason when it cannot start.
pub fn one_board_lab(tag: &str) -> (basalt::lab::LocalLab, std::path::PathBuf) {
    use basalt::lab::{LocalLab, Spec, WorkerSpec};
    use std::path::{Path, PathBuf};
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixtures = std::env::var_os("BASALT_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target/fixtures"));
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_basalt"))
        .parent()
        .map(PathBuf::from)
        .expect("target directory");
    let tmp = std::env::temp_dir().join(format!("basalt-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let lab = LocalLab::start(Spec {
        dir: tmp.clone(),
        bin_dir,
        fixtures,
        workers: vec![WorkerSpec {
            name: "w1".into(),
            boards: 1,
            qemu: 0,
            command: None,
        }],
        heartbeat_secs: 5,
        bootdelay: 1,
        keep_job_dirs: false,
        events: false,
        anonymous_read: false,
        coordinator: None,
    });
    match lab {
        Ok(l) => (l, tmp),
        Err(e) => {
            eprintln!("{tag}: {e}");
            std::process::exit(1);
        }
    }
}
