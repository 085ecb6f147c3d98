//! Secondary media on a real U-Boot (LAVA's deploy `to: usb` / `to: sata`, `dd-image`,
//! `apply-overlay-image`, boot `commands: usb`): the board of tests/real_uboot.rs (the rig:
//! tests/common/uboot.rs) with two more disks: a USB stick behind QEMU's EHCI controller
//! (`usb-storage`, serial `basalt-usb-0`: Debian's qemu_arm64 U-Boot has no XHCI driver, its
//! EHCI one reads it) and a virtio-blk disk (serial `basalt-sata-0`, U-Boot's `virtio`
//! interface as the `sata` medium). The job boots the busybox initramfs over TFTP (namespace
//! `primary`), writes a disk image (an MBR with one ext2 partition holding the kernel and the
//! initramfs) onto the stick by its stable id `/dev/disk/by-id/usb-QEMU_QEMU_HARDDISK_basalt-usb-0-0:0`
//! (the fixture's init makes the links from sysfs, as udev names them), verifies it, and boots
//! the device type's `usb` commands from it (namespace `medium`), where the test shell runs. A
//! sata deploy whose writer changes the bytes makes the read-back differ: an Incomplete job,
//! `dd-image` named, the cause infrastructure.

mod common;
#[path = "common/uboot.rs"]
mod rig;

use common::TempDir;
use rig::{dictionary_with, run, Board, Netns, U_BOOT};
use std::path::Path;
use std::process::Command;

const USB_SERIAL: &str = "basalt-usb-0";
const USB_ID: &str = "usb-QEMU_QEMU_HARDDISK_basalt-usb-0-0:0";
const SATA_SERIAL: &str = "basalt-sata-0";
/// Where the partition starts (sectors of 512 bytes): 1 MiB.
const START: u64 = 2048;

/// A disk image in `dir`: an MBR with one ext2 partition (`mke2fs -d`) holding `files`.
fn disk_image(dir: &Path, files: &[&Path]) -> std::path::PathBuf {
    let tree = dir.join("medium-tree");
    std::fs::create_dir_all(&tree).expect("tree");
    let mut bytes = 0u64;
    for f in files {
        let name = f.file_name().expect("a file name");
        std::fs::copy(f, tree.join(name)).expect("copy into the tree");
        bytes += std::fs::metadata(f).expect("size").len();
    }
    let part = dir.join("part.ext2");
    let kib = bytes / 1024 + 4096;
    let st = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext2", "-d"])
        .arg(&tree)
        .arg(&part)
        .arg(format!("{kib}k"))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("mke2fs (e2fsprogs)");
    assert!(st.success(), "mke2fs");
    let part_len = std::fs::metadata(&part).expect("partition").len();
    let sectors = u32::try_from(part_len / 512).expect("a small partition");
    let mut mbr = vec![0u8; (START * 512) as usize];
    let e = 446;
    mbr[e] = 0x80; // bootable
    mbr[e + 4] = 0x83; // Linux
    mbr[e + 8..e + 12].copy_from_slice(&(START as u32).to_le_bytes());
    mbr[e + 12..e + 16].copy_from_slice(&sectors.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    let disk = dir.join("disk.img");
    let mut out = mbr;
    out.extend(std::fs::read(&part).expect("partition"));
    std::fs::write(&disk, out).expect("disk.img");
    let _ = std::fs::remove_file(&part);
    let _ = std::fs::remove_dir_all(&tree);
    disk
}

/// The job: boot the initramfs over TFTP, write `disk` onto the `iface` medium (with
/// `writer`, the deploy's extra keys), boot from it (`commands: <iface>`), test.
fn job(iface: &str, disk: &Path, writer: &str) -> String {
    let fixtures = common::fixtures_dir().join("arm64");
    let (kernel, initrd) = (fixtures.join("Image"), fixtures.join("initramfs.cpio.gz"));
    format!(
        "device_type: qemu-arm64-uboot\njob_name: real media\n\
         timeouts:\n  job:\n    minutes: 10\n  action:\n    minutes: 3\n  actions:\n    \
         bootloader-interrupt:\n      seconds: 15\n    dd-image:\n      minutes: 4\n\
         visibility: public\npriority: medium\nactions:\n\
         - deploy:\n    namespace: primary\n    to: tftp\n    os: oe\n    kernel:\n      url: file://{kernel}\n      type: image\n    \
         ramdisk:\n      url: file://{initrd}\n\
         - boot:\n    namespace: primary\n    method: u-boot\n    commands: ramdisk\n    prompts:\n    - '/ # '\n\
         - deploy:\n    namespace: medium\n    to: {iface}\n    os: oe\n    device: {iface}-medium\n    \
         image:\n      url: file://{disk}\n      root_partition: 0\n{writer}\
         - boot:\n    namespace: medium\n    method: u-boot\n    commands: {iface}\n    \
         kernel: /Image\n    ramdisk: /initramfs.cpio.gz\n    kernel_type: image\n    root_uuid: /dev/vda1\n    boot_part: 1\n    \
         prompts:\n    - '/ # '\n    transfer_overlay:\n      download_command: wget -q\n      unpack_command: tar -C / -xzf\n\
         - test:\n    namespace: medium\n    timeout:\n      minutes: 3\n    definitions:\n    - from: inline\n      name: smoke\n      \
         path: inline/smoke.yaml\n      repository:\n        metadata:\n          \
         format: Lava-Test Test Definition 1.0\n          name: smoke\n          description: smoke\n        \
         run:\n          steps:\n          - lava-test-case arch --shell test \"$(uname -m)\" = aarch64\n          \
         - lava-test-case medium --shell test -b /dev/disk/by-id/{USB_ID}\n",
        kernel = kernel.display(),
        initrd = initrd.display(),
        disk = disk.display(),
    )
}

/// `debugfs -R 'ls -p /'` of the medium's partition (copied out of `medium`).
fn partition_listing(dir: &Path, medium: &Path, len: u64) -> String {
    let bytes = std::fs::read(medium).expect("the medium");
    let start = (START * 512) as usize;
    let end = (start + len as usize).min(bytes.len());
    let part = dir.join("readback.ext2");
    std::fs::write(&part, &bytes[start..end]).expect("partition copy");
    let out = Command::new("debugfs")
        .args(["-R", "ls -p /"])
        .arg(&part)
        .output()
        .expect("debugfs");
    let _ = std::fs::remove_file(&part);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_usb_deploy_is_written_verified_and_booted_and_a_bad_writer_is_caught() {
    let fixtures = common::fixtures_dir().join("arm64");
    let (kernel, initrd) = (fixtures.join("Image"), fixtures.join("initramfs.cpio.gz"));
    assert!(
        kernel.is_file() && initrd.is_file() && fixtures.join("modules/load").is_file(),
        "arm64 fixtures (with modules) missing: hw-tests/build-fixtures.sh"
    );
    let tmp = TempDir::new("real-media");
    let dir = tmp.path();
    let tftp_root = dir.join("tftp");
    std::fs::create_dir_all(&tftp_root).expect("tftp root");
    let ns = Netns::start(dir);
    let disk = disk_image(dir, &[&kernel, &initrd]);
    let disk_len = std::fs::metadata(&disk).expect("disk").len();
    // the media: blank, larger than the image
    let blank = |name: &str| {
        let p = dir.join(name);
        std::fs::File::create(&p)
            .and_then(|f| f.set_len(disk_len + (16 << 20)))
            .expect("a medium");
        p
    };
    let (usb, sata) = (blank("usb.raw"), blank("sata.raw"));
    let board_dir = dir.join("board");
    let drive = |id: &str, file: &Path| {
        [
            "-drive".to_string(),
            format!("if=none,id={id},format=raw,file={}", file.display()),
        ]
    };
    let mut extra = vec!["-device".to_string(), "usb-ehci,id=ehci".to_string()];
    extra.extend(drive("usb", &usb));
    extra.extend([
        "-device".to_string(),
        format!("usb-storage,bus=ehci.0,drive=usb,serial={USB_SERIAL}"),
    ]);
    extra.extend(drive("sata", &sata));
    extra.extend([
        "-device".to_string(),
        format!("virtio-blk-pci,drive=sata,serial={SATA_SERIAL}"),
    ]);
    let board = Board::start_with(&board_dir, &ns, Path::new(U_BOOT), &extra);
    let dict = dictionary_with(
        &board_dir,
        &board,
        &format!(
            "{{% set usb_uuid = '{USB_ID}' %}}\n{{% set usb_label = 'usb-medium' %}}\n\
             {{% set sata_uuid = 'virtio-{SATA_SERIAL}' %}}\n{{% set sata_label = 'sata-medium' %}}\n\
             {{% set sata_interface = 'virtio' %}}\n"
        ),
    );
    let console = || std::fs::read_to_string(board_dir.join("console.log")).unwrap_or_default();

    let ok = run(&ns, dir, "usb", &dict, &job("usb", &disk, ""), &tftp_root);
    assert_eq!(
        ok.code,
        Some(0),
        "Complete; log tail:\n{}\nconsole tail:\n{}",
        ok.tail(),
        console()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let rows = common::results(&ok.out);
    assert_eq!(ok.smoke("arch").as_deref(), Some("pass"), "{rows:?}");
    assert_eq!(ok.smoke("medium").as_deref(), Some("pass"), "{rows:?}");
    assert!(
        ok.log.contains("written and verified"),
        "dd-image verified the medium"
    );
    assert!(
        ok.log.contains("load usb 0:1"),
        "U-Boot loaded from the medium"
    );
    // apply-overlay-image put the overlay into the partition that was written
    let listing = partition_listing(dir, &usb, disk_len - START * 512);
    assert!(
        listing.contains("/lava-"),
        "the overlay is on the medium: {listing}"
    );
    eprintln!("real U-Boot, usb job: {:?}", ok.took);

    // a sata deploy with a writer that changes bytes: the read-back differs (a smaller image: the job never boots
    // from it, and reading back is slow under emulation, ~2 MB/s)
    let small_dir = dir.join("small");
    std::fs::create_dir_all(&small_dir).expect("dir");
    let small = disk_image(&small_dir, &[&initrd]);
    let bad = run(
        &ns,
        dir,
        "bad-writer",
        &dict,
        &job(
            "sata",
            &small,
            "    writer:\n      tool: tr\n      options: e E | dd of={DEVICE} bs=4M\n      prompt: records out\n",
        ),
        &tftp_root,
    );
    assert_eq!(bad.code, Some(1), "{}", bad.tail());
    let (msg, cause) = bad.job_error();
    assert!(msg.contains("checksum mismatch"), "{msg}");
    assert_eq!(cause, "infrastructure", "{msg}");
    assert!(
        bad.log.contains("dd-image failed"),
        "the log names the action: {}",
        bad.tail()
    );
    eprintln!("real U-Boot, bad writer: {:?}", bad.took);
}
