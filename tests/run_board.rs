//! The demo job's test definition on `basalt-board` through telnet: a tftp deploy served by a
//! real TFTP server (tftpd-hpa), a U-Boot boot driven by the device's command list (power
//! through the board's control socket, interrupt, setenv, tftp, booti), the busybox
//! initramfs (with the test overlay appended) as the board's root, and LAVA's test shell.

mod board_support;
mod common;

use board_support::{Board, Tftpd};
use common::{fixtures_amd64, results, TempDir};
use std::process::Command;

#[test]
fn demo_job_on_basalt_board_through_telnet() {
    let (_, initrd) = fixtures_amd64();
    let tftpd = Tftpd::start();
    let port = tftpd.port.to_string();
    let board = Board::start_with_console(
        &["--telnet", "0"],
        &["--speed", "0", "--tftp-port", &port, "--bootdelay", "2"],
    );
    let addr = board.telnet_addr();
    let tmp = TempDir::new("board");
    let bin = env!("CARGO_BIN_EXE_basalt-board");
    let ctl = board.control.display().to_string();
    let dict = tmp.path().join("board.jinja2");
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
    // Files the board fetches: a dummy kernel and dtb (the board checks that something was
    // loaded), and the real initramfs that becomes its root.
    let kernel = tmp.path().join("Image");
    std::fs::write(&kernel, vec![0u8; 4096]).unwrap();
    let dtb = tmp.path().join("board.dtb");
    std::fs::write(&dtb, vec![0xd0u8; 1024]).unwrap();
    let demo = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/jobs/demo-qemu.yaml"
    ))
    .unwrap();
    let test_block = &demo[demo.find("- test:").unwrap()..];
    let job = format!(
        "device_type: basalt-board\njob_name: demo on basalt-board\ntimeouts:\n  job:\n    minutes: 5\n  action:\n    minutes: 1\n\
         visibility: public\npriority: medium\nactions:\n\
         - deploy:\n    to: tftp\n    os: oe\n    kernel:\n      url: file://{}\n      type: image\n    ramdisk:\n      url: file://{}\n    dtb:\n      url: file://{}\n\
         - boot:\n    method: u-boot\n    commands: ramdisk\n    prompts:\n    - '/ # '\n\
         {test_block}",
        kernel.display(),
        initrd.display(),
        dtb.display()
    );
    let job_path = tmp.path().join("job.yaml");
    std::fs::write(&job_path, job).unwrap();
    let out = tmp.path().join("out");
    let status = Command::new(env!("CARGO_BIN_EXE_basalt"))
        .arg("run")
        .arg(&job_path)
        .arg("--device")
        .arg(&dict)
        .arg("--device-types")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/config/device-types"))
        .arg("--output-dir")
        .arg(&out)
        .arg("--tftp-root")
        .arg(tftpd.dir.path())
        .arg("--server-ip")
        .arg("127.0.0.1")
        .arg("-q")
        .status()
        .unwrap();
    let log = std::fs::read_to_string(out.join("output.yaml")).unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(0),
        "job should be Complete; log tail:\n{}",
        tail(&log)
    );
    let res = results(&out);
    if !res.iter().any(|r| r.0 == "0_smoke") {
        println!("{}", tail(&log));
    }
    let find = |c: &str| {
        res.iter()
            .find(|r| r.0 == "0_smoke" && r.1 == c)
            .map(|r| r.2.clone())
    };
    assert_eq!(find("uname").as_deref(), Some("pass"), "{res:?}");
    assert_eq!(find("must-fail").as_deref(), Some("fail"));
    assert_eq!(find("boot-latency").as_deref(), Some("pass"));
    assert!(
        log.contains("Bytes transferred"),
        "the board fetched files over TFTP"
    );
    assert!(log.contains("Hit any key to stop autoboot"));
    // finalize powered the board off; the job's TFTP directory is gone.
    assert_eq!(board.ctl(&["status"]).1.trim(), "off");
    let left: Vec<_> = std::fs::read_dir(tftpd.dir.path()).unwrap().collect();
    assert!(left.is_empty(), "TFTP staging left behind: {left:?}");
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}
