//! `bootz` on a real U-Boot: QEMU's 32-bit arm `virt` machine with Debian's `u-boot-qemu`
//! (qemu_arm), Debian bookworm's armmp zImage and the busybox-static:armhf initramfs
//! (hw-tests/build-fixtures.sh, its optional armhf set), on the rig of tests/real_uboot.rs
//! (tests/common/uboot.rs: passt in a private network namespace, basalt's own TFTP server
//! on 10.0.2.2, QMP power). The tftp deploy's `kernel: type: zimage` picks the dictionary's
//! `bootz` addresses and U-Boot's `bootz`; the device tree is U-Boot's own copy of QEMU's
//! (`${fdtcontroladdr}`), as on arm64. Then LAVA's test shell runs on the booted system.

mod common;
#[path = "common/uboot.rs"]
mod rig;

use common::TempDir;
use rig::{dictionary_named, run, Board, LoadAddresses, Netns, ARM, SERVER_IP, U_BOOT_ARM};
use std::path::Path;

/// A tftp deploy of the armhf zImage and initramfs, then `boot` (the boot block's keys after
/// `method: u-boot`), then the smoke test: the machine is a 32-bit armv7.
fn job(boot: &str) -> String {
    let fixtures = common::fixtures_dir().join("armhf");
    let (kernel, initrd) = (fixtures.join("zImage"), fixtures.join("initramfs.cpio.gz"));
    assert!(
        kernel.is_file() && initrd.is_file(),
        "armhf fixtures missing: BASALT_FIXTURES_ARMHF=1 hw-tests/build-fixtures.sh"
    );
    format!(
        "device_type: qemu-arm-uboot\njob_name: real u-boot bootz\n\
         timeouts:\n  job:\n    minutes: 8\n  action:\n    minutes: 3\n  actions:\n    \
         bootloader-interrupt:\n      seconds: 15\n\
         visibility: public\npriority: medium\nactions:\n\
         - deploy:\n    to: tftp\n    os: oe\n    kernel:\n      url: file://{}\n      type: zimage\n    \
         ramdisk:\n      url: file://{}\n\
         - boot:\n    method: u-boot\n{boot}    prompts:\n    - '/ # '\n\
         - test:\n    timeout:\n      minutes: 3\n    definitions:\n    - from: inline\n      name: smoke\n      \
         path: inline/smoke.yaml\n      repository:\n        metadata:\n          \
         format: Lava-Test Test Definition 1.0\n          name: smoke\n          description: smoke\n        \
         run:\n          steps:\n          - lava-test-case arch --shell 'uname -m | grep -q ^armv7'\n          \
         - lava-test-case net --shell 'ip -4 -o addr show eth0 | grep -q inet'\n          \
         - lava-test-case must-fail --shell false\n",
        kernel.display(),
        initrd.display(),
    )
}

#[test]
fn a_zimage_boots_with_bootz_through_a_real_u_boot() {
    let tmp = TempDir::new("real-uboot-bootz");
    let dir = tmp.path();
    let tftp_root = dir.join("tftp");
    std::fs::create_dir_all(&tftp_root).expect("tftp root");
    let ns = Netns::start(dir);
    let board_dir = dir.join("board");
    let board = Board::start_on(&ARM, &board_dir, &ns, Path::new(U_BOOT_ARM), &[]);
    // RAM from 0x40000000: the zImage decompresses the kernel to 0x40008000, so it is loaded
    // 32 MiB up (out of the way: no self-relocation), the ramdisk above it
    let addresses = LoadAddresses {
        bootx: "bootz",
        kernel: "0x42000000",
        ramdisk: "0x44000000",
        dtb: "${fdtcontroladdr}",
    };
    // (the device type's command line has ip=dhcp: the initramfs asks passt's DHCP for eth0)
    let dict = dictionary_named(&board_dir, &board, "qemu-arm-uboot", &addresses, "");
    let console = || std::fs::read_to_string(board_dir.join("console.log")).unwrap_or_default();

    let ok = run(
        &ns,
        dir,
        "ramdisk",
        &dict,
        &job("    commands: ramdisk\n"),
        &tftp_root,
    );
    ok.assert_complete(&console());
    let rows = common::results(&ok.out);
    assert_eq!(ok.smoke("arch").as_deref(), Some("pass"), "{rows:?}");
    assert_eq!(ok.smoke("net").as_deref(), Some("pass"), "{rows:?}");
    assert_eq!(ok.smoke("must-fail").as_deref(), Some("fail"), "{rows:?}");
    assert!(
        ok.log
            .contains("bootz 0x42000000 0x44000000:${initrd_size} ${fdtcontroladdr}"),
        "the zimage kernel is booted with bootz at the dictionary's addresses: {}",
        ok.tail()
    );
    assert!(
        ok.log.contains("Bytes transferred"),
        "U-Boot loaded over TFTP"
    );
    assert!(
        ok.log.contains("Starting kernel"),
        "U-Boot started the kernel"
    );
    assert!(
        ok.log.contains("Linux version ") && ok.log.contains("-armmp"),
        "the armmp kernel booted: {}",
        ok.tail()
    );
    eprintln!("real U-Boot (arm), bootz ramdisk job: {:?}", ok.took);

    // a wrong load address: bootz finds no zImage there (U-Boot's error, the bootloader's fault)
    let wrong = run(
        &ns,
        dir,
        "wrong-address",
        &dict,
        &job(&format!(
            "    commands:\n    - setenv autoload no\n    - dhcp\n    - setenv serverip {SERVER_IP}\n    \
             - tftp {{KERNEL_ADDR}} {{KERNEL}}\n    - bootz 0x48000000 - ${{fdtcontroladdr}}\n"
        )),
        &tftp_root,
    );
    assert_eq!(wrong.code, Some(1), "{}", wrong.tail());
    let (msg, cause) = wrong.job_error();
    assert!(msg.contains("zimage: Bad magic"), "{msg}");
    assert_eq!(cause, "bootloader", "{msg}");
    assert!(
        wrong.log.contains("uboot-commands failed"),
        "the log names the action: {}",
        wrong.tail()
    );
}
