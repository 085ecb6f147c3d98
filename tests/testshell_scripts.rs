//! The helper scripts of the test overlay, run with the host's /bin/sh: they print LAVA's
//! signals exactly, and the dispatcher's parser reads them back.

use basalt::testshell::scripts::SCRIPTS;
use basalt::testshell::signals::{self, Signal};
use std::process::Command;

mod common;
use common::TempDir;

fn install(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    for (name, body) in SCRIPTS {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n\n{body}")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn sh(dir: &std::path::Path, script: &str) -> (i32, String) {
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .env("PATH", format!("{}:/usr/bin:/bin", dir.display()))
        .env("LAVA_RESULT_DIR", dir.join("results"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn signals_of(text: &str) -> Vec<Signal> {
    let re = regex::Regex::new(signals::SIGNAL_PATTERN).unwrap();
    re.captures_iter(text)
        .map(|c| signals::parse(&c[1], &c[2]).unwrap())
        .collect()
}

#[test]
fn helpers_print_lava_signals() {
    let tmp = TempDir::new("scripts");
    install(tmp.path());
    let (rc, out) = sh(tmp.path(), "lava-test-case pwd-ok --shell pwd; lava-test-case no --shell false; lava-test-case m --result pass --measurement 1.5 --units s");
    assert_eq!(rc, 0);
    let s = signals_of(&out);
    assert_eq!(s[0], Signal::StartTc("pwd-ok".into()));
    assert_eq!(s[1], Signal::EndTc("pwd-ok".into()));
    assert!(
        matches!(&s[2], Signal::TestCase { id, result, .. } if id == "pwd-ok" && result == "pass")
    );
    assert!(matches!(&s[5], Signal::TestCase { id, result, .. } if id == "no" && result == "fail"));
    assert!(
        matches!(&s[6], Signal::TestCase { id, measurement: Some(m), units: Some(u), .. } if id == "m" && m == "1.5" && u == "s")
    );
    assert!(
        out.contains("<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=m RESULT=pass UNITS=s MEASUREMENT=1.5>"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("results/results/m/measurement"))
            .unwrap()
            .trim(),
        "1.5"
    );

    let (rc, out) = sh(tmp.path(), "lava-test-case x --units ms");
    assert_eq!(rc, 1);
    assert!(out.contains("--result must be specified"));
    let (rc, _) = sh(tmp.path(), "lava-test-case");
    assert_eq!(rc, 1);

    let (_, out) = sh(tmp.path(), "lava-test-set start group-a; lava-test-set stop; lava-test-reference ref --result pass --reference https://example.org/x; lava-test-event 'boot-done'");
    assert_eq!(
        signals_of(&out),
        vec![
            Signal::TestSetStart("group-a".into()),
            Signal::TestSetStop,
            Signal::TestReference {
                id: "ref".into(),
                result: "pass".into(),
                url: "https://example.org/x".into()
            },
            Signal::TestEvent("boot-done".into()),
        ]
    );
    let (rc, out) = sh(tmp.path(), "lava-test-raise disk missing");
    assert_eq!(rc, 1);
    assert_eq!(
        signals_of(&out),
        vec![Signal::TestRaise("disk missing".into())]
    );

    // A background process runs until it is stopped.
    let (rc, out) = sh(tmp.path(), "lava-background-process-start ticker --cmd 'while true; do echo tick; sleep 0.05; done'; sleep 0.3; lava-background-process-stop ticker");
    assert_eq!(rc, 0);
    assert!(out.contains("tick"), "{out}");
    assert!(!tmp.path().join("results/results/ticker/pid").exists());
}

#[test]
fn runner_runs_a_stage_and_reports_install_failures() {
    let tmp = TempDir::new("runner");
    let bin = tmp.path().join("lava-1/bin");
    std::fs::create_dir_all(&bin).unwrap();
    install(&bin);
    let stage = tmp.path().join("lava-1/0");
    for (name, install_ok) in [("0_good", true), ("1_bad", false)] {
        let d = stage.join("tests").join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("run.sh"), format!("echo \"<LAVA_SIGNAL_STARTRUN {name} u>\"\nlava-test-case c --result pass\necho \"<LAVA_SIGNAL_ENDRUN {name} u>\"\n")).unwrap();
        if !install_ok {
            std::fs::write(d.join("install.sh"), "exit 3\n").unwrap();
        }
    }
    std::fs::write(
        stage.join("lava-test-runner.conf"),
        format!(
            "{}\n{}\n",
            stage.join("tests/0_good").display(),
            stage.join("tests/1_bad").display()
        ),
    )
    .unwrap();
    let out = Command::new("/bin/sh")
        .arg(bin.join("lava-test-runner"))
        .arg(&stage)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("<LAVA_SIGNAL_STARTRUN 0_good u>"), "{text}");
    assert!(text.contains("<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=c RESULT=pass>"));
    assert!(text.contains("<LAVA_TEST_RUNNER INSTALL_FAIL>"));
    assert!(!text.contains("STARTRUN 1_bad"));
    assert!(
        text.trim_end().ends_with("<LAVA_TEST_RUNNER EXIT>"),
        "{text}"
    );
    assert!(
        !stage.join("lava-test-runner.conf").exists(),
        "the conf is renamed so a reboot does not rerun it"
    );
}
