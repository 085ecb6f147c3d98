//! LAVA jobs on `basalt-board` through telnet: a tftp deploy served by a real TFTP server
//! (tftpd-hpa), a U-Boot boot driven by the device's command list (power through the board's
//! control socket, interrupt, setenv, tftp, booti), the busybox initramfs (with the test
//! overlay appended) as the board's root, and LAVA's test shell.

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

/// Writes a basalt-board device dictionary for `board` (telnet console, power through its
/// control socket) into `dir`.
fn board_device(board: &Board, dir: &std::path::Path) -> PathBuf {
    let addr = board.telnet_addr();
    let bin = env!("CARGO_BIN_EXE_basalt-board");
    let ctl = board.control.display().to_string();
    let dict = dir.join("board.jinja2");
    std::fs::write(
        &dict,
        format!(
            "{{% extends 'basalt-board.jinja2' %}}\n\
             {{% set connection_command = 'telnet {} {}' %}}\n\
             {{% set power_on_command = '{bin} ctl --control {ctl} on' %}}\n\
             {{% set power_off_command = '{bin} ctl --control {ctl} off' %}}\n\
             {{% set hard_reset_command = '{bin} ctl --control {ctl} reset' %}}\n",
            addr.ip(),
            addr.port()
        ),
    )
    .unwrap();
    dict
}

/// `basalt run -q` of `job` on `dict`; returns (exit code, output dir, log).
fn basalt_run(
    job: &str,
    dict: &std::path::Path,
    dir: &std::path::Path,
    extra: &[&str],
) -> (Option<i32>, PathBuf, String) {
    let job_path = dir.join("job.yaml");
    std::fs::write(&job_path, job).unwrap();
    let out = dir.join("out");
    let status = Command::new(env!("CARGO_BIN_EXE_basalt"))
        .args(["run", "-q"])
        .arg(&job_path)
        .arg("--device")
        .arg(dict)
        .arg("--output-dir")
        .arg(&out)
        .args(extra)
        .status()
        .unwrap();
    let log = std::fs::read_to_string(out.join("output.yaml")).unwrap_or_default();
    (status.code(), out, log)
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
    let (_, initrd) = fixtures_amd64();
    let tftpd = Tftpd::start();
    let port = tftpd.port.to_string();
    let mut all = vec!["--speed", "0", "--tftp-port", &port, "--bootdelay", "2"];
    all.extend_from_slice(flags);
    let board = Board::start_with_console(&["--telnet", "0"], &all);
    let tmp = TempDir::new("board");
    let dict = board_device(&board, tmp.path());
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
         - deploy:\n    to: tftp\n    os: oe\n    kernel:\n      url: file://{}\n      type: image\n    ramdisk:\n      url: file://{}\n{ramdisk_extra}    dtb:\n      url: file://{}\n\
         {boot_block}{test_block}",
        kernel.display(),
        initrd.display(),
        dtb.display()
    );
    let tftp_root = tftpd.dir.path().display().to_string();
    let types = concat!(env!("CARGO_MANIFEST_DIR"), "/config/device-types");
    let (code, out, log) = basalt_run(
        &job,
        &dict,
        tmp.path(),
        &[
            "--device-types",
            types,
            "--tftp-root",
            &tftp_root,
            "--server-ip",
            "127.0.0.1",
        ],
    );
    let results = if out.join("results.yaml").exists() {
        results(&out)
    } else {
        Vec::new()
    };
    board_check(&board);
    let left: Vec<_> = std::fs::read_dir(tftpd.dir.path()).unwrap().collect();
    assert!(left.is_empty(), "TFTP staging left behind: {left:?}");
    Outcome {
        code,
        out,
        log,
        results,
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
    let dict = board_device(&board, tmp.path());
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
fn monitors_watch_the_boot_log() {
    // A boot without prompts, then monitors on the raw console: the kernel's log lines.
    let boot = "- boot:\n    method: u-boot\n    commands: ramdisk\n";
    let block = "- test:\n    timeout:\n      minutes: 1\n    monitors:\n    - name: kernel-log\n      start: Booting Linux\n      end: Run /init\n      \
                 pattern: '(?P<test_case_id>Freeing unused kernel memory): (?P<result>\\d+)K'\n      fixupdict:\n        '6464': pass\n";
    let o = run_on_board(&[], boot, block, |_| {});
    assert_eq!(o.code, Some(0), "log tail:\n{}", tail(&o.log));
    assert_eq!(
        find(&o.results, "kernel-log", "Freeing unused kernel memory").map(|x| x.2.as_str()),
        Some("pass"),
        "{:?}",
        o.results
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
    let dict = board_device(&board, tmp.path());
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
