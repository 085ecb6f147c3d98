//! LAVA jobs on `basalt-board` through telnet: a tftp deploy served by a real TFTP server
//! (tftpd-hpa), a U-Boot boot driven by the device's command list (power through the board's
//! control socket, interrupt, setenv, tftp, booti), the busybox initramfs (with the test
//! overlay appended) as the board's root, and LAVA's test shell.

#[path = "../crates/basalt-board/tests/board_support/mod.rs"]
mod board_support;
mod common;

use board_support::{Board, Tftpd};
use common::{fixtures_amd64, results, ResultRow, TempDir};
use std::path::PathBuf;
use std::process::Command;

struct Outcome {
    code: Option<i32>,
    out: PathBuf,
    log: String,
    results: Vec<ResultRow>,
    /// What `basalt run` printed (stdout and stderr).
    terminal: String,
    _tmp: TempDir,
}

/// Extra keys for the ramdisk of the deploy (`install_overlay: false`), from the boot block's
/// marker.
fn ramdisk_keys(boot_block: &str) -> &'static str {
    if boot_block.contains("transfer_overlay") {
        "      install_overlay: false\n"
    } else {
        ""
    }
}

/// `basalt run -q` of `job` on `dict`; returns (exit code, output dir, log).
fn basalt_run(
    job: &str,
    dict: &std::path::Path,
    dir: &std::path::Path,
    extra: &[&str],
) -> (Option<i32>, PathBuf, String) {
    let (code, out, log, _) = basalt_run_terminal(job, dict, dir, extra, true);
    (code, out, log)
}

/// `basalt run` (`-q` when `quiet`) of `job` on `dict`; returns (exit code, output dir, log,
/// what it printed on stdout and stderr).
fn basalt_run_terminal(
    job: &str,
    dict: &std::path::Path,
    dir: &std::path::Path,
    extra: &[&str],
    quiet: bool,
) -> (Option<i32>, PathBuf, String, String) {
    let job_path = dir.join("job.yaml");
    std::fs::write(&job_path, job).unwrap();
    let out = dir.join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_basalt"))
        .arg("run")
        .args(quiet.then_some("-q"))
        .arg(&job_path)
        .arg("--device")
        .arg(dict)
        .arg("--output-dir")
        .arg(&out)
        .args(extra)
        .output()
        .unwrap();
    let log = std::fs::read_to_string(out.join("output.yaml")).unwrap_or_default();
    let terminal = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    (run.status.code(), out, log, terminal)
}

/// The u-boot boot of these tests, with `extra` keys.
fn uboot_boot(extra: &str) -> String {
    format!(
        "- boot:\n    method: u-boot\n    commands: ramdisk\n{extra}    prompts:\n    - '/ # '\n"
    )
}

/// Runs a job (the tftp deploy given here, then `boot_block` and `test_block`) on a fresh
/// board started with `flags`.
fn run_on_board(
    flags: &[&str],
    boot_block: &str,
    test_block: &str,
    board_check: impl FnOnce(&Board),
) -> Outcome {
    run_on_board_terminal(flags, boot_block, test_block, true, false, board_check)
}

/// [`run_on_board`], with the terminal output unless `quiet`.
fn run_on_board_terminal(
    flags: &[&str],
    boot_block: &str,
    test_block: &str,
    quiet: bool,
    own_tftp: bool,
    board_check: impl FnOnce(&Board),
) -> Outcome {
    let (_, initrd) = fixtures_amd64();
    // tftpd-hpa, or basalt's own server (`basalt run --tftp-listen`) on a free port
    let (tftpd, own_root, port) = if own_tftp {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .unwrap();
        (None, Some(tempfile::tempdir().unwrap()), port)
    } else {
        let t = Tftpd::start();
        let port = t.port;
        (Some(t), None, port)
    };
    let served = match (&tftpd, &own_root) {
        (Some(t), _) => t.dir.path().to_path_buf(),
        (None, Some(d)) => d.path().to_path_buf(),
        (None, None) => unreachable!(),
    };
    let port = port.to_string();
    let mut all = vec!["--speed", "0", "--tftp-port", &port, "--bootdelay", "2"];
    all.extend_from_slice(flags);
    let board = Board::start_with_console(&["--telnet", "0"], &all);
    let tmp = TempDir::new("board");
    let dict = board.write_dictionary(tmp.path());
    // a boot block marked `# with dtbo`: two device tree overlays, applied by the board
    let dtbo = boot_block.contains("# with dtbo\n");
    let mut dtbo_keys = String::new();
    if dtbo {
        let mut text = std::fs::read_to_string(&dict).unwrap();
        text.push_str("{% set enable_dtbo_support = true %}\n");
        std::fs::write(&dict, text).unwrap();
        dtbo_keys.push_str("    dtbo:\n");
        for name in ["uart.dtbo", "leds.dtbo"] {
            let path = tmp.path().join(name);
            let mut blob = vec![0xd0, 0x0d, 0xfe, 0xed];
            blob.resize(256, 0);
            std::fs::write(&path, blob).unwrap();
            dtbo_keys.push_str(&format!("    - url: file://{}\n", path.display()));
        }
    }
    // A dummy kernel and dtb (the board checks that something was loaded), and the real
    // initramfs that becomes the board's root.
    let kernel = tmp.path().join("Image");
    std::fs::write(&kernel, vec![0u8; 4096]).unwrap();
    let dtb = tmp.path().join("board.dtb");
    std::fs::write(&dtb, vec![0xd0u8; 1024]).unwrap();
    let ramdisk_extra = ramdisk_keys(boot_block);
    let job = format!(
        "device_type: basalt-board\njob_name: demo on basalt-board\ntimeouts:\n  job:\n    minutes: 5\n  action:\n    minutes: 1\n\
         visibility: public\npriority: medium\nactions:\n\
         - deploy:\n    to: tftp\n    os: oe\n    kernel:\n      url: file://{}\n      type: image\n    ramdisk:\n      url: file://{}\n{ramdisk_extra}    dtb:\n      url: file://{}\n{dtbo_keys}\
         {boot_block}{test_block}",
        kernel.display(),
        initrd.display(),
        dtb.display()
    );
    let tftp_root = served.display().to_string();
    let types = concat!(env!("CARGO_MANIFEST_DIR"), "/config/device-types");
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "--device-types",
        types,
        "--tftp-root",
        &tftp_root,
        "--server-ip",
        "127.0.0.1",
    ];
    if own_tftp {
        args.extend(["--tftp-listen", &listen]);
    }
    let (code, out, log, terminal) = basalt_run_terminal(&job, &dict, tmp.path(), &args, quiet);
    let results = if out.join("results.yaml").exists() {
        results(&out)
    } else {
        Vec::new()
    };
    board_check(&board);
    let left: Vec<_> = std::fs::read_dir(&served).unwrap().collect();
    assert!(left.is_empty(), "TFTP staging left behind: {left:?}");
    Outcome {
        code,
        out,
        log,
        results,
        terminal,
        _tmp: tmp,
    }
}

fn demo_test_block() -> String {
    let demo = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/jobs/demo-qemu.yaml"
    ))
    .unwrap();
    demo[demo.find("- test:").unwrap()..].to_string()
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

fn find<'a>(r: &'a [ResultRow], def: &str, case: &str) -> Option<&'a ResultRow> {
    r.iter().find(|x| x.0 == def && x.1 == case)
}

#[test]
fn demo_job_on_basalt_board_through_telnet() {
    let o = run_on_board(&[], &uboot_boot(""), &demo_test_block(), |board| {
        // finalize powered the board off
        assert_eq!(board.ctl(&["status"]).1.trim(), "off");
    });
    assert_eq!(
        o.code,
        Some(0),
        "job should be Complete; log tail:\n{}",
        tail(&o.log)
    );
    let r = &o.results;
    assert_eq!(
        find(r, "0_smoke", "uname").map(|x| x.2.as_str()),
        Some("pass"),
        "{r:?}"
    );
    assert_eq!(
        find(r, "0_smoke", "must-fail").map(|x| x.2.as_str()),
        Some("fail")
    );
    assert_eq!(
        find(r, "0_smoke", "boot-latency").and_then(|x| x.3),
        Some(42.0)
    );
    assert!(
        o.log.contains("Bytes transferred"),
        "the board fetched files over TFTP"
    );
    assert!(o.log.contains("Hit any key to stop autoboot"));
    assert!(o.out.join("description.yaml").is_file());
}

/// The same job with basalt's own TFTP server (`basalt run --tftp-listen`) instead of
/// tftpd-hpa: the board's U-Boot fetches kernel, ramdisk and dtb from it.
#[test]
fn demo_job_with_basalts_own_tftp_server() {
    let o = run_on_board_terminal(&[], &uboot_boot(""), &demo_test_block(), true, true, |_| {});
    assert_eq!(
        o.code,
        Some(0),
        "job should be Complete; log tail:\n{}",
        tail(&o.log)
    );
    assert_eq!(
        find(&o.results, "0_smoke", "uname").map(|x| x.2.as_str()),
        Some("pass"),
        "{:?}",
        o.results
    );
    assert!(
        o.log.contains("Bytes transferred"),
        "the board fetched files over TFTP"
    );
}

/// `dtbo:` overlays on a device with `enable_dtbo_support`: each staged under `dtbo<i>/`,
/// loaded at the dtbo address and applied to the resized base tree, in order.
#[test]
fn device_tree_overlays_are_loaded_and_applied_in_order() {
    let o = run_on_board(
        &[],
        &uboot_boot("    # with dtbo\n"),
        &demo_test_block(),
        |_| {},
    );
    assert_eq!(o.code, Some(0), "log tail:\n{}", tail(&o.log));
    let sent: Vec<&str> = o
        .log
        .lines()
        .filter_map(|l| l.split("boot command: ").nth(1))
        .map(|c| c.strip_suffix("\"}").unwrap_or(c))
        .collect();
    let fdt: Vec<&&str> = sent
        .iter()
        .filter(|c| c.starts_with("fdt ") || c.contains("dtbo"))
        .collect();
    assert_eq!(fdt.len(), 6, "{sent:?}");
    assert!(fdt[0].starts_with("fdt addr 0x"), "{fdt:?}");
    assert_eq!(*fdt[1], "fdt resize 1048576", "{fdt:?}");
    for (i, name) in [(0, "uart.dtbo"), (1, "leds.dtbo")] {
        let load = fdt[2 + 2 * i];
        let apply = fdt[3 + 2 * i];
        assert!(
            load.starts_with("tftp 0x") && load.ends_with(&format!("/dtbo{i}/{name}")),
            "{fdt:?}"
        );
        let addr = load.split(' ').nth(1).unwrap_or("");
        assert_eq!(*apply, format!("fdt apply {addr}"), "{fdt:?}");
    }
    assert!(!o.log.contains("FDT_ERR"), "the board applied both");
}

#[test]
fn lava_test_raise_ends_the_job_with_a_test_error() {
    let block = "- test:\n    timeout:\n      minutes: 1\n    definitions:\n    - from: inline\n      name: raiser\n      path: inline/raiser.yaml\n      repository:\n        metadata:\n          format: Lava-Test Test Definition 1.0\n          name: raiser\n          description: raises\n        run:\n          steps:\n          - lava-test-case before --result pass\n          - lava-test-raise disk-missing\n";
    let o = run_on_board(&[], &uboot_boot(""), block, |_| {});
    assert_eq!(
        o.code,
        Some(1),
        "job should be Incomplete; log tail:\n{}",
        tail(&o.log)
    );
    let r = &o.results;
    assert_eq!(
        find(r, "0_raiser", "before").map(|x| x.2.as_str()),
        Some("pass")
    );
    assert_eq!(
        find(r, "lava", "lava-test-retry").map(|x| x.2.as_str()),
        Some("fail")
    );
    let text = std::fs::read_to_string(o.out.join("results.yaml")).unwrap();
    assert!(text.contains("error_type: Test"), "{text}");
    assert!(text.contains("disk-missing"), "{text}");
}

#[test]
fn failure_retry_boots_again_after_a_dropped_console() {
    // The console drops once when the kernel starts; the boot is retried and succeeds.
    let o = run_on_board(
        &["--fault", "drop-console 1 at kernel"],
        &uboot_boot("    failure_retry: 2\n    failure_retry_interval: 2\n"),
        &demo_test_block(),
        |_| {},
    );
    assert_eq!(
        o.code,
        Some(0),
        "job should be Complete; log tail:\n{}",
        tail(&o.log)
    );
    assert!(
        o.log.contains("uboot-action: retrying (2 of 2 attempts)"),
        "{}",
        tail(&o.log)
    );
    assert_eq!(
        find(&o.results, "0_smoke", "uname").map(|x| x.2.as_str()),
        Some("pass")
    );
}

#[test]
fn url_test_definition_from_a_tarball() {
    let tmp = TempDir::new("urldef");
    let src = tmp.path().join("src/defs");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("url.yaml"),
        "metadata:\n  format: Lava-Test Test Definition 1.0\n  name: from-url\n  description: x\nrun:\n  steps:\n  - lava-test-case tarball-ok --shell test -f defs/url.yaml\n",
    )
    .unwrap();
    let tarball = tmp.path().join("defs.tar.gz");
    let st = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(tmp.path().join("src"))
        .arg("defs")
        .status()
        .unwrap();
    assert!(st.success());
    let block = format!(
        "- test:\n    timeout:\n      minutes: 1\n    definitions:\n    - from: url\n      repository: file://{}\n      compression: gz\n      path: defs/url.yaml\n      name: from-url\n",
        tarball.display()
    );
    let o = run_on_board(&[], &uboot_boot(""), &block, |_| {});
    assert_eq!(o.code, Some(0), "log tail:\n{}", tail(&o.log));
    assert_eq!(
        find(&o.results, "0_from-url", "tarball-ok").map(|x| x.2.as_str()),
        Some("pass"),
        "{:?}",
        o.results
    );
}

#[test]
fn minimal_boot_with_auto_login() {
    // The board boots by itself on reset (bootcmd) and asks for a login.
    let tftpd = Tftpd::start();
    tftpd.put("Image", &[0u8; 4096]);
    let port = tftpd.port.to_string();
    let bootcmd =
        "dhcp; setenv serverip 127.0.0.1; tftp 0x40400000 Image; booti 0x40400000 - 0x40400000";
    let board = Board::start_with_console(
        &["--telnet", "0"],
        &[
            "--speed",
            "0",
            "--tftp-port",
            &port,
            "--bootdelay",
            "0",
            "--bootcmd",
            bootcmd,
            "--login",
            "root",
            "--password",
            "s3cret",
        ],
    );
    let tmp = TempDir::new("minimal");
    let dict = board.write_dictionary(tmp.path());
    let job = "device_type: basalt-board\njob_name: minimal\ntimeouts:\n  job:\n    minutes: 2\n  action:\n    minutes: 1\nvisibility: public\n\
               secrets:\n  PW: s3cret\nactions:\n- boot:\n    method: minimal\n    auto_login:\n      login_prompt: 'login:'\n      username: root\n      password_prompt: 'Password:'\n      password: s3cret\n    prompts:\n    - '/ # '\n";
    let (code, _, log) = basalt_run(job, &dict, tmp.path(), &[]);
    assert_eq!(code, Some(0), "log tail:\n{}", tail(&log));
    assert!(
        log.contains("start: 1.2.1 pdu-reboot"),
        "the board was reset with its hard_reset_command"
    );
    assert!(log.contains("login:"));
    assert!(!log.contains("s3cret"), "secrets are masked in the log");
    assert!(log.contains("[MASKED]"));
    assert_eq!(
        board.ctl(&["status"]).1.trim(),
        "off",
        "finalize powered the board off"
    );
}

#[test]
fn interactive_uboot_session() {
    // LAVA's bbb-uboot-interactive shape: stop at U-Boot, then commands with expected answers.
    let tftpd = Tftpd::start();
    let port = tftpd.port.to_string();
    let board = Board::start_with_console(
        &["--telnet", "0"],
        &["--speed", "0", "--tftp-port", &port, "--bootdelay", "2"],
    );
    let tmp = TempDir::new("interactive");
    let dict = board.write_dictionary(tmp.path());
    let job = r#"device_type: basalt-board
job_name: run tests in U-Boot
timeouts:
  job:
    minutes: 2
  action:
    minutes: 1
visibility: public
actions:
- boot:
    method: bootloader
    bootloader: u-boot
    commands: []
    prompts:
    - '=>'
- test:
    interactive:
    - name: network
      prompts: ["=> "]
      script:
      - command: dhcp
        name: dhcp
        successes:
        - message: "DHCP client bound to address"
        failures:
        - message: "TIMEOUT"
          exception: InfrastructureError
          error: "dhcp failed"
      - command: setenv greeting basalt
      - command: printenv greeting
        name: printenv
        successes:
        - message: "greeting=basalt"
      - command: tftp 0x40400000 nothing-there
        name: tftp-missing
        successes:
        - message: "Bytes transferred"
        failures:
        - message: "File not found"
"#;
    let (code, out, log) = basalt_run(job, &dict, tmp.path(), &[]);
    assert_eq!(code, Some(0), "log tail:\n{}", tail(&log));
    let r = results(&out);
    assert_eq!(
        find(&r, "network", "dhcp").map(|x| x.2.as_str()),
        Some("pass"),
        "{r:?}"
    );
    assert_eq!(
        find(&r, "network", "printenv").map(|x| x.2.as_str()),
        Some("pass")
    );
    assert_eq!(
        find(&r, "network", "tftp-missing").map(|x| x.2.as_str()),
        Some("fail")
    );
}

#[test]
fn transfer_overlay_over_http() {
    // The ramdisk goes without the overlay; after login the board downloads the overlay
    // tarball from the worker and unpacks it.
    let boot = uboot_boot("    transfer_overlay:\n      download_command: wget -q\n      unpack_command: tar -C / -xzf\n");
    let o = run_on_board(&[], &boot, &demo_test_block(), |_| {});
    assert_eq!(o.code, Some(0), "log tail:\n{}", tail(&o.log));
    assert!(
        o.log.contains("overlay transferred from http://127.0.0.1:"),
        "{}",
        tail(&o.log)
    );
    assert!(
        o.log
            .contains("install_overlay: false: the overlay is not added"),
        "the ramdisk went without the overlay"
    );
    assert_eq!(
        find(&o.results, "0_smoke", "uname").map(|x| x.2.as_str()),
        Some("pass")
    );
}

/// Every file below `dir` that holds one of `needles`: (file, needle).
fn files_holding(dir: &std::path::Path, needles: &[&str]) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
                continue;
            }
            let bytes = std::fs::read(&p).unwrap();
            for n in needles {
                if bytes.windows(n.len()).any(|w| w == n.as_bytes()) {
                    found.push((p.clone(), n.to_string()));
                }
            }
        }
    }
    found
}

#[test]
fn secrets_never_reach_a_log_even_echoed_slowly_in_pieces() {
    // The password has spaces and a '# ', and the board echoes it back (echo on) one
    // character every 40 ms: the shell prompt pattern '# ' matches inside the echo, so the
    // expect returns and flushes the partial line in the middle of the password. The job's
    // secret and the password are also printed by the test.
    const PASSWORD: &str = "Xq7 # zR9k";
    const TOKEN: &str = "T0k3n with space";
    let boot = format!(
        "- boot:\n    method: u-boot\n    commands: ramdisk\n    auto_login:\n      login_prompt: 'login:'\n      username: root\n      password_prompt: 'Password:'\n      password: '{PASSWORD}'\n    prompts:\n    - '# '\n"
    );
    let test = format!(
        "- test:\n    timeout:\n      minutes: 1\n    definitions:\n    - from: inline\n      name: secrets\n      path: inline/secrets.yaml\n      repository:\n        metadata:\n          format: Lava-Test Test Definition 1.0\n          name: secrets\n          description: print the secrets\n        run:\n          steps:\n          - cat /lava-*/secrets\n          - \"echo 'password {PASSWORD} and token {TOKEN}'\"\n          - lava-test-case printed --result pass\n\
         secrets:\n  API_TOKEN: '{TOKEN}'\n"
    );
    let o = run_on_board_terminal(
        &[
            "--login",
            "root",
            "--password",
            PASSWORD,
            "--echo-password",
            "40",
        ],
        &boot,
        &test,
        false,
        false,
        |_| {},
    );
    assert_eq!(o.code, Some(0), "log tail:\n{}", tail(&o.log));
    assert_eq!(
        find(&o.results, "0_secrets", "printed").map(|x| x.2.as_str()),
        Some("pass"),
        "{:?}",
        o.results
    );
    // the pieces too: a record cut in the middle of the password must not show either half
    let needles = [PASSWORD, TOKEN, "Xq7", "zR9k", "T0k3n"];
    let leaks = files_holding(&o.out, &needles);
    assert!(
        leaks.is_empty(),
        "secrets in the output directory: {leaks:?}"
    );
    for n in needles {
        assert!(
            !o.terminal.contains(n),
            "{n:?} on the terminal:\n{}",
            o.terminal
        );
    }
    // the board did echo the password, and the logs show where it was
    assert!(
        o.log
            .contains("\"lvl\": \"input\", \"msg\": \"[MASKED]\\n\""),
        "{}",
        tail(&o.log)
    );
    assert!(
        o.log.contains("\"lvl\": \"target\", \"msg\": \"[MASKED]\""),
        "{}",
        tail(&o.log)
    );
    assert!(o.log.contains("API_TOKEN=[MASKED]"), "{}", tail(&o.log));
    assert!(o.log.contains("password [MASKED] and token [MASKED]"));
    assert!(o.terminal.contains("[MASKED]"));
    // and the cut did happen: the prompt pattern matched inside the echo, so the login ended
    // before the echoed line did
    let at = |needle: &str| o.log.lines().position(|l| l.contains(needle));
    let login_end = at("auto-login-action (duration").expect("the login ends");
    let echo = at("\"lvl\": \"target\", \"msg\": \"[MASKED]\"").expect("the echo");
    assert!(login_end < echo, "{}", tail(&o.log));
}
