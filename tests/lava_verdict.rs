//! LAVA's verdict, rule by rule (docs/validation.md): each job of
//! `tests/data/lava-verdict/refuse/` breaks one rule and is refused with exit 2, the error
//! naming the key at the line its header gives; each of `accept/` is accepted with exit 0.
//! The files are written by `tests/data/lava-verdict/make.py`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn cases(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/lava-verdict")
        .join(kind);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

fn validate(file: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_basalt"))
        .arg("validate")
        .arg(file)
        .output()
        .expect("run basalt validate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn each_rule_refuses_with_the_key_and_its_line() {
    let files = cases("refuse");
    assert!(files.len() >= 90, "corpus incomplete: {}", files.len());
    let mut wrong = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read case");
        let header = text.lines().next().unwrap_or_default();
        let mut words = header.split_whitespace().skip(2);
        let line: u32 = words
            .next()
            .and_then(|w| w.parse().ok())
            .expect("line in header");
        let path = words.next().expect("path in header");
        let (code, stderr) = validate(f);
        let want = format!("{}:{line}:", f.display());
        let hit = stderr.lines().any(|l| {
            l.starts_with(&want) && l.contains(&format!(": {path}: ")) && !l.contains(": warning: ")
        });
        if code != 2 || !hit {
            wrong.push(format!(
                "{}: exit {code}, expected an error at line {line} naming {path}:\n{stderr}",
                f.display()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} wrong:\n{}",
        wrong.len(),
        files.len(),
        wrong.join("\n")
    );
}

#[test]
fn what_lava_accepts_is_accepted() {
    let files = cases("accept");
    assert!(files.len() >= 20, "corpus incomplete: {}", files.len());
    let mut wrong = Vec::new();
    for f in &files {
        let (code, stderr) = validate(f);
        if code != 0 {
            wrong.push(format!("{}: exit {code}\n{stderr}", f.display()));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} refused:\n{}",
        wrong.len(),
        files.len(),
        wrong.join("\n")
    );
}
