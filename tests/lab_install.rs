//! The lab's installation (docs/config.md): `scripts/install-lab.sh` with `DESTDIR` installs
//! what it says where it says, with the modes it says, never replaces an environment file, and
//! writes units naming the binaries below `--prefix`; the units pass `systemd-analyze verify`
//! (which runs without systemd as PID 1) with every warning counted as a failure; the example
//! environment files set only variables the daemons know.
//!
//! Needs the workspace's binaries (`cargo build --workspace --bins`) and `systemd-analyze`
//! (Debian's `systemd`, installed by `scripts/install-deps.sh`).

mod common;

use common::{bin_dir, TempDir};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const UNITS: [&str; 2] = ["basalt-master.service", "basalt-worker.service"];

/// Runs install-lab.sh into `destdir` from the built binaries; (success, stdout + stderr).
fn install(destdir: &Path, args: &[&str]) -> (bool, String) {
    for b in ["basalt", "basalt-master", "basalt-worker"] {
        assert!(
            bin_dir().join(b).is_file(),
            "{b}: not built (nice cargo build --workspace --bins)"
        );
    }
    let out = Command::new(repo().join("scripts/install-lab.sh"))
        .env("DESTDIR", destdir)
        .arg("--from")
        .arg(bin_dir())
        .args(args)
        .output()
        .expect("running scripts/install-lab.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The unit's `ExecStart=` line.
fn exec_start(unit: &str) -> String {
    unit.lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap_or_else(|| panic!("no ExecStart in\n{unit}"))
        .to_string()
}

#[test]
fn install_lab_installs_what_it_says_and_never_replaces_settings() {
    let dest = TempDir::new("install-lab");
    let d = dest.path();
    let (ok, out) = install(d, &[]);
    assert!(ok, "{out}");
    for b in ["basalt", "basalt-master", "basalt-worker"] {
        let p = d.join("usr/local/bin").join(b);
        assert_eq!(mode(&p), 0o755, "{}", p.display());
        let built = std::fs::metadata(bin_dir().join(b))
            .expect("built binary")
            .len();
        assert_eq!(
            std::fs::metadata(&p).expect("installed").len(),
            built,
            "{b}"
        );
    }
    assert!(d.join("usr/local/share/doc/basalt/config.md").is_file());
    for unit in UNITS {
        let p = d.join("etc/systemd/system").join(unit);
        assert_eq!(mode(&p), 0o644, "{unit}");
        assert_eq!(
            read(&p),
            read(&repo().join("config/systemd").join(unit)),
            "{unit}"
        );
    }
    for f in ["basalt-master", "basalt-worker"] {
        let p = d.join("etc/default").join(f);
        assert_eq!(mode(&p), 0o600, "{f}: may hold a database password");
        assert_eq!(
            read(&p),
            read(&repo().join("config/default").join(f)),
            "{f}"
        );
    }
    assert_eq!(
        mode(&d.join("etc/basalt/worker")),
        0o700,
        "the worker's keys"
    );
    assert!(d.join("etc/basalt/device-types").is_dir());
    assert!(out.contains("DESTDIR set: the user basalt"), "{out}");
    assert!(
        out.contains("systemctl enable --now basalt-master"),
        "{out}"
    );

    // again, after an admin's edit and with another prefix: the settings stay, the example
    // goes next to them, the units name the new place
    let settings = d.join("etc/default/basalt-worker");
    let edited = format!("{}BASALT_WORKER_NAME=rack-7\n", read(&settings));
    std::fs::write(&settings, &edited).expect("editing the settings");
    let (ok, out) = install(d, &["--prefix", "/opt/basalt/"]);
    assert!(ok, "{out}");
    assert_eq!(read(&settings), edited, "the admin's file was replaced");
    assert_eq!(
        read(&d.join("etc/default/basalt-worker.example")),
        read(&repo().join("config/default/basalt-worker"))
    );
    assert!(out.contains("kept "), "{out}");
    assert!(d.join("opt/basalt/bin/basalt-worker").is_file());
    let master = read(&d.join("etc/systemd/system/basalt-master.service"));
    assert_eq!(
        exec_start(&master),
        "/opt/basalt/bin/basalt-master --state-dir ${BASALT_MASTER_STATE_DIR}"
    );
    assert!(master.contains("Documentation=file:/opt/basalt/share/doc/basalt/config.md"));
    assert!(!master.contains("/usr/local/"), "{master}");
}

#[test]
fn install_lab_refuses_what_it_cannot_do_and_says_why() {
    let dest = TempDir::new("install-lab-bad");
    for (args, says) in [
        (&["--prefix", "opt/basalt"][..], "must be an absolute path"),
        (&["--prefix", "/opt/my basalt"][..], "only letters, digits"),
        (&["--enable", "everything"][..], "--enable everything"),
        (&["--frobnicate"][..], "unknown argument: --frobnicate"),
        (
            &["--from", "/nonexistent"][..],
            "/nonexistent/basalt: not built",
        ),
    ] {
        let (ok, out) = install(dest.path(), args);
        assert!(!ok && out.contains(says), "{args:?}: {out}");
    }
    assert!(
        !dest.path().join("etc").exists(),
        "nothing is installed when the arguments are refused"
    );
}

#[test]
fn the_units_pass_systemd_analyze_verify() {
    let analyze = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        analyze.is_ok_and(|o| o.status.success()),
        "systemd-analyze missing: apt-get install systemd (scripts/install-deps.sh does)"
    );
    let dest = TempDir::new("units");
    let (ok, out) = install(dest.path(), &[]);
    assert!(ok, "{out}");
    // the units as installed, naming the staged binaries (verify checks they can be executed)
    let staged = dest.path().join("usr/local/bin");
    let check = dest.path().join("check");
    std::fs::create_dir(&check).expect("check dir");
    let mut files = Vec::new();
    for unit in UNITS {
        let text = read(&dest.path().join("etc/systemd/system").join(unit));
        let text = text.replace("/usr/local/bin/", &format!("{}/", staged.display()));
        let f = check.join(unit);
        std::fs::write(&f, text).expect("writing the unit");
        files.push(f);
    }
    let verify = |files: &[PathBuf]| {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .args(files)
            .output()
            .expect("systemd-analyze verify");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, said) = verify(&files);
    // systemd-analyze exits 0 on unknown keys and bad values, but says so
    assert!(
        ok && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );

    // and it would have seen a mistake: a key it does not know, a binary that is not there
    let bad = check.join("basalt-bad.service");
    let master = read(&files[0]);
    let misspelt = master.replace("TimeoutStopSec=30s", "TimeoutStopSec=30s\nKillMod=mixed");
    std::fs::write(&bad, misspelt).expect("bad unit");
    let (_, said) = verify(std::slice::from_ref(&bad));
    assert!(said.contains("Unknown key"), "{said}");
    std::fs::write(
        &bad,
        master.replace(&staged.display().to_string(), "/nonexistent"),
    )
    .expect("bad unit");
    let (ok, said) = verify(std::slice::from_ref(&bad));
    assert!(!ok && said.contains("is not executable"), "{said}");
}

/// `KEY=` lines of an environment file, commented out or not.
fn variables(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_start_matches('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k.to_string())
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .collect()
}

#[test]
fn the_environment_files_name_every_option_and_nothing_else() {
    // the variables each daemon's --help lists ([env: NAME=])
    for (daemon, file, also) in [
        ("basalt-master", "basalt-master", &[][..]),
        (
            "basalt-worker",
            "basalt-worker",
            &["BASALT_EXPORTS_FILE", "BASALT_EXPORTFS", "TMPDIR"][..],
        ),
    ] {
        let help = Command::new(bin_dir().join(daemon))
            .arg("--help")
            .env_clear()
            .output()
            .expect("--help");
        let help = String::from_utf8_lossy(&help.stdout);
        let mut known: Vec<String> = help
            .split("[env: ")
            .skip(1)
            .filter_map(|s| s.split(['=', ']']).next())
            .map(str::to_string)
            .collect();
        known.sort();
        known.dedup();
        assert!(known.len() >= 10, "{daemon} --help: {help}");
        let text = read(&repo().join("config/default").join(file));
        let mut set = variables(&text);
        set.sort();
        set.dedup();
        let mut expected: Vec<String> = known
            .iter()
            .cloned()
            .chain(also.iter().map(|s| s.to_string()))
            .collect();
        expected.sort();
        assert_eq!(
            set, expected,
            "config/default/{file} against {daemon} --help"
        );
        // and each is documented in docs/config.md
        let doc = read(&repo().join("docs/config.md"));
        for v in &expected {
            assert!(
                doc.contains(&format!("`{v}`")),
                "docs/config.md does not document {v}"
            );
        }
    }
}
