//! A real U-Boot: QEMU's arm64 `virt` machine with Debian's `u-boot-qemu`, its network through
//! passt inside a private network namespace (nothing can leave it: its only interfaces are
//! `lo` and a veth pair with no peer outside), basalt's own TFTP server (`basalt run
//! --tftp-listen`) on the namespace's loopback at the guest's gateway address 10.0.2.2 (the
//! rig: tests/common/uboot.rs). `basalt run` stages the kernel and the
//! busybox initramfs, powers the board through QMP, interrupts U-Boot and types the device
//! type's `ramdisk` commands; `booti` is given U-Boot's own copy of QEMU's device tree
//! (`${fdtcontroladdr}`: a tree dumped with `-machine dumpdtb` does not boot this kernel);
//! the kernel boots to a shell and LAVA's test shell runs. QEMU and `basalt run` run in the
//! namespace too (its loopback is where the worker's servers are for the board). Recipes:
//! ../shared/recipes/qemu-boards/30 and 35.

mod common;
#[path = "common/uboot.rs"]
mod rig;

use common::TempDir;
use rig::{dictionary, run, smoke_job, Board, Netns, U_BOOT};
use std::path::Path;

#[test]
fn tftp_deploys_boot_through_a_real_u_boot_and_its_faults_are_told_apart() {
    let tmp = TempDir::new("real-uboot");
    let dir = tmp.path();
    let tftp_root = dir.join("tftp");
    std::fs::create_dir_all(&tftp_root).expect("tftp root");
    let ns = Netns::start(dir);
    // the TFTP server, on the namespace's loopback: what the board reaches as 10.0.2.2
    let board_dir = dir.join("board");
    let board = Board::start(&board_dir, &ns, Path::new(U_BOOT));
    let dict = dictionary(&board_dir, &board);
    let console = || std::fs::read_to_string(board_dir.join("console.log")).unwrap_or_default();

    // the job: loaded over TFTP, booted, tested
    let ok = run(
        &ns,
        dir,
        "ramdisk",
        &dict,
        &smoke_job("real u-boot", "    commands: ramdisk\n"),
        &tftp_root,
    );
    ok.assert_complete(&console());
    let rows = common::results(&ok.out);
    assert_eq!(ok.smoke("arch").as_deref(), Some("pass"), "{rows:?}");
    assert_eq!(ok.smoke("must-fail").as_deref(), Some("fail"), "{rows:?}");
    assert!(
        ok.log.contains("Starting kernel"),
        "U-Boot started the kernel"
    );
    assert!(
        ok.log.contains("Bytes transferred"),
        "U-Boot loaded over TFTP"
    );
    eprintln!("real U-Boot, ramdisk job: {:?}", ok.took);

    // a file missing on the TFTP server: U-Boot's error, the lab's fault
    let missing = run(
        &ns,
        dir,
        "missing",
        &dict,
        &smoke_job("real u-boot", "    commands:\n    - setenv autoload no\n    - dhcp\n    - setenv serverip {SERVER_IP}\n    \
              - tftp {KERNEL_ADDR} {KERNEL}.missing\n    - booti {KERNEL_ADDR} - ${fdtcontroladdr}\n"),
        &tftp_root,
    );
    assert_eq!(missing.code, Some(1), "{}", missing.tail());
    let (msg, cause) = missing.job_error();
    assert!(msg.contains("File not found"), "{msg}");
    assert_eq!(cause, "infrastructure", "{msg}");
    assert!(
        missing.log.contains("uboot-commands failed"),
        "the log names the action: {}",
        missing.tail()
    );

    // a wrong load address: booti finds no kernel there
    let wrong = run(
        &ns,
        dir,
        "wrong-address",
        &dict,
        &smoke_job("real u-boot", "    commands:\n    - setenv autoload no\n    - dhcp\n    - setenv serverip {SERVER_IP}\n    \
              - tftp {KERNEL_ADDR} {KERNEL}\n    - booti 0x48000000 - ${fdtcontroladdr}\n"),
        &tftp_root,
    );
    assert_eq!(wrong.code, Some(1), "{}", wrong.tail());
    let (msg, cause) = wrong.job_error();
    assert!(msg.contains("Bad Linux ARM64 Image magic"), "{msg}");
    assert_eq!(cause, "bootloader", "{msg}");
    assert!(
        wrong.log.contains("uboot-commands failed"),
        "the log names the action: {}",
        wrong.tail()
    );

    // a bootloader that never prompts: firmware that prints nothing
    drop(board);
    let dead_dir = dir.join("dead");
    std::fs::create_dir_all(&dead_dir).expect("dir");
    let blank = dead_dir.join("blank.bin");
    std::fs::write(&blank, vec![0u8; 1 << 20]).expect("a blank firmware");
    let dead = Board::start(&dead_dir, &ns, &blank);
    let dead_dict = dictionary(&dead_dir, &dead);
    let silent = run(
        &ns,
        dir,
        "silent",
        &dead_dict,
        &smoke_job("real u-boot", "    commands: ramdisk\n"),
        &tftp_root,
    );
    assert_eq!(silent.code, Some(1), "{}", silent.tail());
    let (msg, cause) = silent.job_error();
    assert!(msg.contains("interrupt"), "{msg}");
    assert_eq!(cause, "bootloader", "{msg}");
    assert!(
        silent.log.contains("bootloader-interrupt failed"),
        "the log names the action: {}",
        silent.tail()
    );
}
