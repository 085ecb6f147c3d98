//! Jobs rendered by the LAVA ecosystem's own generators (tuxlava 0.28.0 and lava-test-plans
//! 3.2.0, pinned, from PyPI; `scripts/gen-lava-jobs.sh`) get LAVA 2026.07's verdict: the ones
//! LAVA refuses (listed with the key in `tests/data/generated/lava-refuses.txt`) are refused
//! naming that key, every other one is accepted. The jobs are made at test time, not
//! committed; they are rendered again when the script or its variables change.

use basalt::job::parse_job_file;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fingerprint of what the corpus is rendered from.
fn inputs_stamp() -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for f in [
        "scripts/gen-lava-jobs.sh",
        "tests/data/generated/lkft-variables.yaml",
        "tests/data/generated/lkft-alt-variables.yaml",
    ] {
        for b in std::fs::read(repo().join(f)).unwrap_or_default() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn render() -> PathBuf {
    let out = repo().join("target/generated-jobs");
    let stamp_file = out.join(".inputs");
    let stamp = inputs_stamp();
    if std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp.as_str()) {
        return out;
    }
    let status = Command::new("bash")
        .arg(repo().join("scripts/gen-lava-jobs.sh"))
        .arg(&out)
        .status()
        .expect("run scripts/gen-lava-jobs.sh");
    assert!(
        status.success(),
        "scripts/gen-lava-jobs.sh failed: {status}"
    );
    std::fs::write(&stamp_file, stamp).expect("write the corpus stamp");
    out
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
}

#[test]
fn generated_jobs_get_lavas_verdict() {
    let dir = render();
    let mut files = Vec::new();
    yaml_files(&dir, &mut files);
    files.sort();
    let refused: BTreeMap<String, String> =
        std::fs::read_to_string(repo().join("tests/data/generated/lava-refuses.txt"))
            .expect("read lava-refuses.txt")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| l.split_once(' '))
            .map(|(f, k)| (f.to_string(), k.to_string()))
            .collect();
    let tuxlava = files
        .iter()
        .filter(|f| f.starts_with(dir.join("tuxlava")))
        .count();
    let plans = files.len() - tuxlava;
    println!(
        "{} jobs: {tuxlava} from tuxlava, {plans} from lava-test-plans",
        files.len()
    );
    assert!(
        tuxlava >= 400 && plans >= 400,
        "corpus too small: {tuxlava} + {plans}"
    );
    let mut wrong = Vec::new();
    let mut seen_refused = 0;
    for f in &files {
        let rel = f
            .strip_prefix(&dir)
            .unwrap_or(f)
            .to_string_lossy()
            .into_owned();
        match (parse_job_file(f), refused.get(&rel)) {
            (Ok(_), None) => {}
            (Err(e), Some(key)) => {
                seen_refused += 1;
                if !e.report.errors().any(|d| &d.path == key) {
                    wrong.push(format!("{rel}: refused, but not naming {key}:\n{e}"));
                }
            }
            (Ok(_), Some(key)) => wrong.push(format!("{rel}: accepted; LAVA refuses it ({key})")),
            (Err(e), None) => wrong.push(format!("{rel}: refused; LAVA accepts it:\n{e}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} disagree with LAVA:\n{}",
        wrong.len(),
        files.len(),
        wrong.join("\n")
    );
    assert_eq!(
        seen_refused,
        refused.len(),
        "lava-refuses.txt names jobs no longer rendered"
    );
}
