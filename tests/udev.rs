//! `basalt udev list` and `basalt udev generate`, run as a lab admin runs them: from the
//! recorded adapters of `tests/data/udev/` (the four FTDI cables of LAVA's installation guide;
//! a worker with a multi-port adapter, one without a serial number, two with the same one),
//! on this host's own inventory, and `--install` into a temporary rules directory with a
//! `udevadm` of the test's on PATH that records how it was called.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use basalt::admin::udev::{self, rules};
use basalt_hal::inventory::{FixtureInventory, UsbInventory};

/// The rules of LAVA's installation guide ("udev rules:").
const SEED: &[&str] = &[
    r#"SUBSYSTEM=="tty", ATTRS{idVendor}=="0403", ATTRS{idProduct}=="6001", ATTRS{serial}=="ST167570", SYMLINK+="rack-usb02""#,
    r#"SUBSYSTEM=="tty", ATTRS{idVendor}=="0403", ATTRS{idProduct}=="6001", ATTRS{serial}=="ST167569", SYMLINK+="rack-usb01""#,
    r#"SUBSYSTEM=="tty", ATTRS{idVendor}=="0403", ATTRS{idProduct}=="6001", ATTRS{serial}=="ST167572", SYMLINK+="rack-usb04""#,
    r#"SUBSYSTEM=="tty", ATTRS{idVendor}=="0403", ATTRS{idProduct}=="6001", ATTRS{serial}=="ST167571", SYMLINK+="rack-usb03""#,
];

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/udev")
        .join(name)
}

/// `basalt ARGS` with `path` as PATH (where the test's udevadm is, if any).
fn basalt(args: &[&str], path: Option<&Path>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_basalt"));
    c.args(args);
    if let Some(p) = path {
        c.env("PATH", p);
    }
    c.output().expect("basalt runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The rule lines of a rules file (comments and blank lines left out).
fn rule_lines(file: &str) -> Vec<String> {
    file.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

fn generate(fixture: &str, extra: &[&str]) -> (String, String) {
    let f = data(fixture);
    let mut args = vec!["udev", "generate", "--from", f.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = basalt(&args, None);
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        text(&out.stderr)
    );
    (text(&out.stdout), text(&out.stderr))
}

#[test]
fn the_seeds_four_ftdi_adapters_give_the_seeds_four_rules() {
    let (out, err) = generate("seed-ftdi.yaml", &[]);
    let got: BTreeSet<String> = rule_lines(&out).into_iter().collect();
    let want: BTreeSet<String> = SEED.iter().map(|s| s.to_string()).collect();
    assert_eq!(got, want, "{out}");
    assert!(out.starts_with(udev::MARKER), "{out}");
    assert!(
        err.contains("/dev/rack-usb01 -> /dev/ttyUSB1 (0403:6001 serial ST167569"),
        "{err}"
    );
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn a_lab_with_a_quad_adapter_no_serial_and_duplicate_serials() {
    let (out, err) = generate("lab-mixed.yaml", &["--prefix", "serial/lab-"]);
    let rules = rule_lines(&out);
    let expect = [
        // serial-number order: the Pico (E66...), then the FT4232H (FT4...) port by port
        r#"SUBSYSTEM=="tty", ATTRS{idVendor}=="2e8a", ATTRS{idProduct}=="000a", ATTRS{serial}=="E6614C311B462A2F", SYMLINK+="serial/lab-01""#,
        r#"SUBSYSTEM=="tty", ATTRS{idVendor}=="0403", ATTRS{idProduct}=="6011", ATTRS{serial}=="FT4ABC01", ENV{ID_USB_INTERFACE_NUM}=="00", SYMLINK+="serial/lab-02""#,
        r#"SUBSYSTEM=="tty", ATTRS{idVendor}=="0403", ATTRS{idProduct}=="6011", ATTRS{serial}=="FT4ABC01", ENV{ID_USB_INTERFACE_NUM}=="01", SYMLINK+="serial/lab-03""#,
        r#"SUBSYSTEM=="tty", ATTRS{idVendor}=="0403", ATTRS{idProduct}=="6011", ATTRS{serial}=="FT4ABC01", ENV{ID_USB_INTERFACE_NUM}=="02", SYMLINK+="serial/lab-04""#,
        r#"SUBSYSTEM=="tty", ATTRS{idVendor}=="0403", ATTRS{idProduct}=="6011", ATTRS{serial}=="FT4ABC01", ENV{ID_USB_INTERFACE_NUM}=="03", SYMLINK+="serial/lab-05""#,
        // then by USB port: the CH340 without a serial number, the two CP2102 sharing one
        r#"SUBSYSTEM=="tty", ATTRS{idVendor}=="1a86", ATTRS{idProduct}=="7523", ENV{ID_PATH}=="pci-0000:00:14.0-usb-0:3.1:1.0", SYMLINK+="serial/lab-06""#,
        r#"SUBSYSTEM=="tty", ATTRS{idVendor}=="10c4", ATTRS{idProduct}=="ea60", ENV{ID_PATH}=="pci-0000:00:14.0-usb-0:3.2:1.0", SYMLINK+="serial/lab-07""#,
        r#"SUBSYSTEM=="tty", ATTRS{idVendor}=="10c4", ATTRS{idProduct}=="ea60", ENV{ID_PATH}=="pci-0000:00:14.0-usb-0:3.3:1.0", SYMLINK+="serial/lab-08""#,
    ];
    assert_eq!(rules, expect, "{out}");
    // the comment on the line above each port-named rule says why
    let lines: Vec<&str> = out.lines().collect();
    let above = |rule: &str| {
        let i = lines.iter().position(|l| *l == rule).unwrap();
        lines[i - 1]
    };
    assert_eq!(
        above(expect[5]),
        "# no serial number: named by the USB port it is plugged into"
    );
    assert_eq!(
        above(expect[6]),
        "# serial number '0001' is shared by 2 adapters: named by the USB port it is plugged into"
    );
    assert!(!above(expect[1]).starts_with("# "), "{out}");
    // the duplicate is warned about on stderr, once, with both ports
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(
        warnings,
        ["warning: serial number '0001' (10c4:ea60) is shared by 2 different adapters (USB ports 1-3.2, 1-3.3): they are named by the USB port they are plugged into"],
        "{err}"
    );
    // the hub has no serial port: no rule
    assert!(!out.contains("05e3"), "{out}");
}

#[test]
fn generated_rules_parse_back_to_what_they_were_generated_from() {
    for (fixture, prefix) in [
        ("seed-ftdi.yaml", "rack-usb"),
        ("lab-mixed.yaml", "serial/basalt/"),
    ] {
        let (out, _) = generate(fixture, &["--prefix", prefix]);
        let devices = FixtureInventory::new(data(fixture)).scan().unwrap().devices;
        let generated = udev::generate(&devices, prefix).unwrap();
        let parsed = rules::parse(&out).unwrap_or_else(|e| panic!("{fixture}:{e}\n{out}"));
        assert_eq!(parsed.len(), generated.rules.len());
        for (p, g) in parsed.iter().zip(&generated.rules) {
            let matches: Vec<(String, Option<String>, String)> = p
                .keys
                .iter()
                .filter(|k| k.op == rules::Op::Match)
                .map(|k| (k.name.clone(), k.attr.clone(), k.value.clone()))
                .collect();
            let want: Vec<(String, Option<String>, String)> = g
                .matches
                .iter()
                .map(|m| (m.key.clone(), m.attr.clone(), m.value.clone()))
                .collect();
            assert_eq!(matches, want, "{fixture} line {}", p.line);
            let symlinks: Vec<(rules::Op, &str)> = p
                .keys
                .iter()
                .filter(|k| k.name == "SYMLINK")
                .map(|k| (k.op, k.value.as_str()))
                .collect();
            assert_eq!(symlinks, [(rules::Op::Add, g.symlink.as_str())]);
            // nothing else in the rule
            assert_eq!(p.keys.len(), matches.len() + 1);
        }
        udev::round_trip(&out, &generated.rules).unwrap();
        udevadm_verify(&out);
    }
}

#[test]
fn the_hand_written_example_parses() {
    let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("udev-rules/99-basalt-serial.rules.example");
    let example = std::fs::read_to_string(&f).unwrap();
    let parsed = rules::parse(&example).unwrap_or_else(|e| panic!("{}:{e}", f.display()));
    assert_eq!(parsed.len(), 3);
    assert!(parsed
        .iter()
        .all(|r| r.keys.iter().any(|k| k.name == "SYMLINK")));
    udevadm_verify(&example);
}

/// `udevadm verify` on `rules`, where this host's udev has it (systemd ≥ 253).
fn udevadm_verify(rules: &str) {
    let help = Command::new("udevadm").args(["verify", "--help"]).output();
    match help {
        Ok(o) if o.status.success() => {
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("99-basalt-serial.rules");
            std::fs::write(&f, rules).unwrap();
            let out = Command::new("udevadm").arg("verify").arg(&f).output().unwrap();
            assert!(out.status.success(), "udevadm verify: {}", text(&out.stderr));
        }
        Ok(_) => eprintln!("udevadm verify not run: this host's udevadm has no verify (systemd < 253); basalt's parser checked the rules"),
        Err(e) => eprintln!("udevadm verify not run: no udevadm on this host ({e}); basalt's parser checked the rules"),
    }
}

#[test]
fn list_shows_recorded_devices_and_its_json_reads_back() {
    let f = data("lab-mixed.yaml");
    let out = basalt(&["udev", "list", "--from", f.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("devnode "), "{table}");
    assert_eq!(lines.len(), 1 + 9, "{table}");
    // serial ports first, then the other devices
    assert!(lines[1].starts_with("/dev/ttyACM0 "), "{table}");
    assert!(lines[9].starts_with("/dev/bus/usb/001/005 "), "{table}");
    let ch340 = lines.iter().find(|l| l.contains("1a86:7523")).unwrap();
    for cell in [
        "/dev/ttyUSB4",
        "USB Serial",
        "1-3.1",
        "pci-0000:00:14.0-usb-0:3.1:1.0",
        "ch341",
    ] {
        assert!(ch340.contains(cell), "{ch340}");
    }
    // --json is the fixture format: generating from it gives the same rules
    let out = basalt(
        &["udev", "list", "--from", f.to_str().unwrap(), "--json"],
        None,
    );
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("adapters.json");
    std::fs::write(&json, &out.stdout).unwrap();
    let from_yaml = rule_lines(&generate("lab-mixed.yaml", &[]).0);
    let out = basalt(
        &["udev", "generate", "--from", json.to_str().unwrap()],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(rule_lines(&text(&out.stdout)), from_yaml);
}

#[test]
fn list_and_generate_run_on_this_host() {
    // libudev on this machine's own /sys: it may have no USB devices (a container), which
    // `list` says; every record it gives is valid JSON of the fixture format
    let out = basalt(&["udev", "list"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.starts_with("devnode ")
            || table.starts_with("no USB serial adapters and no other USB devices ("),
        "{table}"
    );
    let out = basalt(&["udev", "list", "--json"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.is_array());
    eprintln!(
        "this host: {} USB records",
        v.as_array().map_or(0, |a| a.len())
    );
    let out = basalt(&["udev", "generate"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rules = text(&out.stdout);
    assert!(rules.starts_with(udev::MARKER), "{rules}");
    rules::parse(&rules).unwrap();
}

#[test]
fn bad_fixture_files_say_where() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "- subsystem: tty\n  vendor_id: \"0403\"\n  product_id: \"6001\"\n  port: 1-1\n  serail: X\n",
            "bad.yaml:5:3: unknown field `serail`",
        ),
        (
            "- subsystem: tty\n  vendor_id: \"0403\"\n  product_id: \"6001\"\n  port: 1-1\n- subsystem: tty\n  vendor_id: \"0403\"\n  product_id: \"60011\"\n  port: 1-2\n",
            "bad.yaml:5:3: device 2: product_id '60011' is not four lowercase hexadecimal digits",
        ),
        ("- subsystem: tty\n  vendor_id: [\n", "bad.yaml:2:14: expected string scalar"),
        ("devnode: /dev/ttyUSB0\n", "bad.yaml:1:1: "),
    ];
    for (content, want) in cases {
        let f = dir.path().join("bad.yaml");
        std::fs::write(&f, content).unwrap();
        for cmd in ["list", "generate"] {
            let out = basalt(&["udev", cmd, "--from", f.to_str().unwrap()], None);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd} {content}: {err}");
            let want = format!("basalt: {}{want}", dir.path().display().to_string() + "/");
            assert!(err.starts_with(&want), "{cmd}: {err}\nwanted {want}");
            assert!(out.stdout.is_empty());
        }
    }
    let out = basalt(&["udev", "generate", "--from", "/nonexistent/a.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("basalt: /nonexistent/a.yaml: No such file"));
    let out = basalt(
        &[
            "udev",
            "generate",
            "--from",
            data("seed-ftdi.yaml").to_str().unwrap(),
            "--prefix",
            "../etc/x",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--prefix '../etc/x' is not a relative name below /dev"));
}

/// A `udevadm` that records its arguments, one call per line, in `log`; `verify` behaves as
/// `verify_exit` says (1: bookworm's udev 252, which has no verify), `control` as
/// `control_exit`.
struct FakeUdevadm {
    dir: tempfile::TempDir,
}

impl FakeUdevadm {
    fn new(verify_exit: i32, control_exit: i32) -> FakeUdevadm {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls");
        let script = format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\ncase \"$1\" in\n  verify) [ {verify_exit} = 0 ] || echo \"Unknown command verb '$1'.\" >&2; exit {verify_exit} ;;\n  control) [ {control_exit} = 0 ] || echo 'Failed to send reload request: No such file or directory' >&2; exit {control_exit} ;;\nesac\nexit 0\n",
            log.display()
        );
        let bin = dir.path().join("udevadm");
        std::fs::write(&bin, script).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        FakeUdevadm { dir }
    }

    /// PATH with only this udevadm (and what `sh` needs).
    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                // the temporary file `verify` was given: its name only
                match l.strip_prefix("verify /") {
                    Some(_) => "verify FILE".to_string(),
                    None => l.to_string(),
                }
            })
            .collect()
    }
}

fn install(rules_dir: &Path, udevadm: &FakeUdevadm, extra: &[&str]) -> Output {
    let f = data("seed-ftdi.yaml");
    let mut args = vec![
        "udev",
        "generate",
        "--from",
        f.to_str().unwrap(),
        "--install",
        "--rules-dir",
        rules_dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    basalt(&args, Some(&udevadm.path()))
}

#[test]
fn install_writes_the_file_and_has_udev_reload_it() {
    let dir = tempfile::tempdir().unwrap();
    let udevadm = FakeUdevadm::new(1, 0);
    let out = install(dir.path(), &udevadm, &[]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(out.stdout.is_empty(), "--install prints no rules");
    let file = dir.path().join("99-basalt-serial.rules");
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.starts_with(udev::MARKER), "{written}");
    assert!(
        written.contains(" --install --rules-dir "),
        "the header has the command: {written}"
    );
    let got: BTreeSet<String> = rule_lines(&written).into_iter().collect();
    assert_eq!(got, SEED.iter().map(|s| s.to_string()).collect());
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    assert_eq!(
        udevadm.calls(),
        [
            "verify --help",
            "control --reload",
            "trigger --subsystem-match=tty --action=add"
        ]
    );
    assert!(
        err.contains("checked with basalt's parser (this udevadm has no 'verify' (systemd < 253))"),
        "{err}"
    );
    assert!(
        err.contains(&format!("installed {}", file.display())),
        "{err}"
    );
    // no temporary file left behind
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    // basalt's own file is rewritten without --force; --rules-file names another
    let out = install(dir.path(), &udevadm, &["--rules-file", "90-lab.rules"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(dir.path().join("90-lab.rules").is_file());
    let out = install(dir.path(), &udevadm, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = install(dir.path(), &udevadm, &["--rules-file", "../x.rules"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--rules-file '../x.rules' is not a file name ending in .rules")
    );
}

#[test]
fn install_uses_udevadm_verify_where_it_exists() {
    let dir = tempfile::tempdir().unwrap();
    let udevadm = FakeUdevadm::new(0, 0);
    let out = install(dir.path(), &udevadm, &[]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("checked with basalt's parser and udevadm verify"),
        "{err}"
    );
    assert_eq!(
        udevadm.calls(),
        [
            "verify --help",
            "verify FILE",
            "control --reload",
            "trigger --subsystem-match=tty --action=add"
        ]
    );
}

#[test]
fn install_refuses_to_overwrite_a_file_basalt_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("99-basalt-serial.rules");
    let mine =
        "# the admin's own rules\nSUBSYSTEM==\"tty\", ATTRS{serial}==\"X\", SYMLINK+=\"mine\"\n";
    std::fs::write(&file, mine).unwrap();
    let udevadm = FakeUdevadm::new(1, 0);
    let out = install(dir.path(), &udevadm, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{} was not written by basalt", file.display())),
        "{err}"
    );
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), mine);
    assert!(!udevadm
        .calls()
        .iter()
        .any(|c| c.starts_with("control") || c.starts_with("trigger")));
    let out = install(dir.path(), &udevadm, &["--force"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .starts_with(udev::MARKER));
}

#[test]
fn install_says_when_udevadm_fails_or_is_absent() {
    let dir = tempfile::tempdir().unwrap();
    let udevadm = FakeUdevadm::new(1, 1);
    let out = install(dir.path(), &udevadm, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let file = dir.path().join("99-basalt-serial.rules");
    assert!(
        err.contains(&format!(
            "{} is written, but udev has not loaded it",
            file.display()
        )),
        "{err}"
    );
    assert!(err.contains("control --reload' failed"), "{err}");
    assert!(err.contains("Failed to send reload request"), "{err}");
    assert!(file.is_file());
    // no udevadm at all: an empty PATH directory
    let empty = tempfile::tempdir().unwrap();
    let none = FakeUdevadm { dir: empty };
    let out = install(dir.path(), &none, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("'udevadm' is not installed (not found on PATH)"),
        "{err}"
    );
    assert!(
        err.contains("checked with basalt's parser ('udevadm' is not installed"),
        "{err}"
    );
}

#[test]
fn install_with_no_adapters_leaves_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("none.yaml");
    std::fs::write(&empty, "# no adapters\n").unwrap();
    let udevadm = FakeUdevadm::new(1, 0);
    let out = basalt(
        &[
            "udev",
            "generate",
            "--from",
            empty.to_str().unwrap(),
            "--install",
            "--rules-dir",
            dir.path().to_str().unwrap(),
        ],
        Some(&udevadm.path()),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("nothing to install: no USB serial adapters found"));
    assert!(!dir.path().join("99-basalt-serial.rules").exists());
}
