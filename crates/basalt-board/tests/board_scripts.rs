//! basalt-board with script files: include, wait, interrupt with goto, labels.

mod board_support;

use std::path::Path;

use board_support::*;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&p, text).expect("write script");
    p.display().to_string()
}

const UBOOT: &str = r#"
- include: parts/banner.yaml
- print: "Password: "
  newline: false
- wait: "^letmein$"
  echo: false
  timeout: 1
  on_timeout: denied
- print: ["", "granted"]
- interrupt: 5
  prompt: "Press a key for the prompt: "
  countdown: false
- label: denied
- print: "denied"
"#;

const BANNER: &str = r#"
- print: ["CUSTOM LOADER on ${board_name}", "unknown ${nosuchvar} stays"]
  delay: 1
  jitter: 2
- sleep: 0.01
"#;

const LINUX: &str = r#"
- print: ["Linux version 6.1.0-custom", "hello from ${hostname}"]
  kmsg: true
"#;

#[tokio::test]
async fn custom_scripts() {
    let scripts = tempfile::tempdir().expect("tempdir");
    let uboot = write(scripts.path(), "uboot.yaml", UBOOT);
    write(scripts.path(), "parts/banner.yaml", BANNER);
    let linux = write(scripts.path(), "linux.yaml", LINUX);
    let board = Board::start(&[
        "--uboot-script",
        &uboot,
        "--linux-script",
        &linux,
        "--hostname",
        "custom-host",
    ]);
    let mut con = board.connect().await;
    board.ctl_ok(&["on"], "ok");
    con.expect("CUSTOM LOADER on basalt-board\r\n").await;
    con.expect("unknown \\$\\{nosuchvar\\} stays").await;
    // wait: the right line, not echoed; then the interrupt window stops autoboot.
    con.expect("Password: ").await;
    con.line("nope").await;
    con.line("letmein").await;
    let out = con.expect("granted").await;
    assert!(!out.contains("letmein"), "echoed: {out}");
    con.expect("Press a key for the prompt: ").await;
    con.send(b"k").await;
    con.expect("=> ").await;
    // The custom Linux log, then the shell.
    con.line("boot").await;
    con.expect("\\[ +\\d+\\.\\d{6}\\] Linux version 6\\.1\\.0-custom")
        .await;
    con.expect("\\] hello from custom-host").await;
    con.expect("/ # ").await;

    // Reset; this time the wait times out and the script jumps to `denied`, then ends:
    // no key was pressed, so bootcmd runs.
    board.ctl_ok(&["reset"], "ok");
    con.expect("Password: ").await;
    let out = con.expect("denied").await;
    assert!(!out.contains("granted"), "{out}");
    con.expect("Starting kernel").await;
    con.expect("/ # ").await;
    board.ctl_ok(&["off"], "ok");
    board.assert_no_descendants();
}

#[test]
fn includes_stay_in_the_script_directory() {
    let outer = tempfile::tempdir().expect("tempdir");
    write(outer.path(), "secret.yaml", "- print: secret\n");
    let main = write(
        outer.path(),
        "scripts/main.yaml",
        "- include: ../secret.yaml\n",
    );
    let sock = outer.path().join("c.sock");
    let out = std::process::Command::new(bin())
        .arg("--unix")
        .arg(&sock)
        .args(["--uboot-script", &main])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("leaves the script directory"), "{err}");
}

#[test]
fn print_builtin_scripts() {
    for (which, needle) in [
        ("uboot", "Hit any key to stop autoboot"),
        ("linux", "Linux version"),
    ] {
        let out = std::process::Command::new(bin())
            .args(["print-script", which])
            .output()
            .expect("run");
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains(needle));
    }
}
