//! A real U-Boot booting an NFS root: the rig of tests/real_uboot.rs (QEMU's arm64 `virt`
//! with Debian's `u-boot-qemu`, passt in a private network namespace, basalt's own TFTP
//! server on 10.0.2.2; tests/common/uboot.rs) plus a userspace NFSv4 server in the same
//! namespace (nfs-ganesha with its VFS backend, bound to 10.0.2.2, NFSv4 only: no rpcbind).
//! ganesha exports the directory `basalt run` stages its jobs in (its `TMPDIR`), so the job's
//! extracted `nfsrootfs` is reachable at its own path. The job's `commands: nfs` boot passes
//! LAVA's `root=/dev/nfs nfsroot={NFS_SERVER_IP}:{NFSROOTFS},tcp,hard`; the fixture
//! initramfs (hw-tests/build-fixtures.sh) loads the NFS client modules, asks DHCP for an
//! address, mounts the root over NFSv4 and switch_roots into it, and the test shell runs there.
//! basalt's exports(5) handling writes into a table of the test's own (`BASALT_EXPORTS_FILE`,
//! `BASALT_EXPORTFS`): its entry for the job is asserted added, then removed.
//!
//! The second test boots with `bootm`: the device has bootm load addresses only, so the
//! `image` kernel is wrapped as a uImage by basalt itself (uboot-prepare-kernel,
//! src/host/uimage.rs) and U-Boot boots it as a legacy image.

mod common;
#[path = "common/uboot.rs"]
mod rig;

use common::TempDir;
use rig::{
    dictionary, dictionary_for, run, run_with_env, smoke_job, Board, Ganesha, Netns, U_BOOT,
};
use std::path::Path;

/// A tftp deploy of the arm64 kernel, initramfs and NFS root, a u-boot `commands: nfs` boot,
/// and a test that tells whether `/` is the NFS root.
fn nfs_job() -> String {
    let fixtures = common::fixtures_dir().join("arm64");
    let (kernel, initrd, nfsroot) = (
        fixtures.join("Image"),
        fixtures.join("initramfs.cpio.gz"),
        fixtures.join("nfsrootfs.tar.gz"),
    );
    assert!(
        kernel.is_file() && initrd.is_file() && nfsroot.is_file(),
        "arm64 fixtures missing (nfsrootfs.tar.gz: a fixture builder of this branch): \
         hw-tests/build-fixtures.sh"
    );
    format!(
        "device_type: qemu-arm64-uboot\njob_name: real u-boot, nfs root\n\
         timeouts:\n  job:\n    minutes: 8\n  action:\n    minutes: 3\n  actions:\n    \
         bootloader-interrupt:\n      seconds: 15\n\
         visibility: public\npriority: medium\nactions:\n\
         - deploy:\n    to: tftp\n    os: oe\n    kernel:\n      url: file://{}\n      type: image\n    \
         ramdisk:\n      url: file://{}\n    nfsrootfs:\n      url: file://{}\n      compression: gz\n\
         - boot:\n    method: u-boot\n    commands: nfs\n    prompts:\n    - '/ # '\n\
         - test:\n    timeout:\n      minutes: 3\n    definitions:\n    - from: inline\n      name: smoke\n      \
         path: inline/smoke.yaml\n      repository:\n        metadata:\n          \
         format: Lava-Test Test Definition 1.0\n          name: smoke\n          description: smoke\n        \
         run:\n          steps:\n          - lava-test-case nfsroot --shell grep -q ' / nfs' /proc/mounts\n          \
         - lava-test-case marker --shell test -f /etc/basalt-nfsroot\n          \
         - lava-test-case must-fail --shell false\n",
        kernel.display(),
        initrd.display(),
        nfsroot.display(),
    )
}

#[test]
fn a_real_u_boot_boots_an_nfs_root_served_by_ganesha() {
    let tmp = TempDir::new("real-uboot-nfs");
    let dir = tmp.path();
    let tftp_root = dir.join("tftp");
    // where `basalt run` stages its jobs (TMPDIR): the NFS root is unpacked below it
    let work = dir.join("work");
    std::fs::create_dir_all(&tftp_root).expect("tftp root");
    std::fs::create_dir_all(&work).expect("work dir");
    let ns = Netns::start(dir);
    let ganesha = Ganesha::start(&ns, dir, &work);
    // NFS over TCP on the board's side of the namespace only
    let listening = ns
        .command("ss")
        .args(["-Hltun", "sport = :2049"])
        .output()
        .expect("ss (iproute2)");
    let listening = String::from_utf8_lossy(&listening.stdout).into_owned();
    assert!(
        listening.lines().count() == 1
            && listening.starts_with("tcp")
            && listening.contains("10.0.2.2]:2049"),
        "ganesha listens on 10.0.2.2:2049 (TCP) only: {listening}"
    );
    let board_dir = dir.join("board");
    let board = Board::start(&board_dir, &ns, Path::new(U_BOOT));
    let dict = dictionary(&board_dir, &board);
    let console = || std::fs::read_to_string(board_dir.join("console.log")).unwrap_or_default();

    // basalt's export table: the lab's own line, then the job's entry while it runs
    let exports = dir.join("exports");
    let lab = "# the lab's own\n/srv/keep 10.0.0.0/8(ro,sync)\n";
    std::fs::write(&exports, lab).expect("exports");
    let calls = dir.join("exportfs.calls");
    let exportfs = format!(
        "sh -c 'cat {t} >> {c}; echo ---- >> {c}'",
        t = exports.display(),
        c = calls.display()
    );
    let env = [
        ("TMPDIR", work.display().to_string()),
        ("BASALT_EXPORTS_FILE", exports.display().to_string()),
        ("BASALT_EXPORTFS", exportfs),
    ];
    let ok = run_with_env(&ns, dir, "nfs", &dict, &nfs_job(), &tftp_root, &env);
    let ganesha_log = std::fs::read_to_string(&ganesha.log).unwrap_or_default();
    assert_eq!(
        ok.code,
        Some(0),
        "Complete; log tail:\n{}\nconsole:\n{}\nganesha:\n{ganesha_log}",
        ok.tail(),
        console()
    );
    let rows = common::results(&ok.out);
    assert_eq!(ok.smoke("nfsroot").as_deref(), Some("pass"), "{rows:?}");
    assert_eq!(ok.smoke("marker").as_deref(), Some("pass"), "{rows:?}");
    assert_eq!(ok.smoke("must-fail").as_deref(), Some("fail"), "{rows:?}");
    assert!(
        ok.log.contains("Bytes transferred"),
        "U-Boot loaded over TFTP"
    );
    let con = console();
    let line = con
        .lines()
        .find(|l| l.contains("over NFS"))
        .unwrap_or_else(|| panic!("the initramfs mounted the NFS root: {con}"));
    // root=/dev/nfs nfsroot=10.0.2.2:<the job's root below TMPDIR>,tcp,hard
    let job_root = format!("{}:{}/basalt-job-", rig::SERVER_IP, work.display());
    assert!(line.contains(&job_root), "{line}");

    // the job's export was added (exportfs ran with it in the table), then removed
    let seen = std::fs::read_to_string(&calls).expect("exportfs ran");
    let tables: Vec<&str> = seen.split("----\n").filter(|t| !t.is_empty()).collect();
    assert!(
        tables.len() >= 2,
        "exportfs ran at the add and the remove: {seen}"
    );
    assert!(
        tables[0].starts_with(lab)
            && tables[0].contains(&format!("{}/basalt-job-", work.display())),
        "the job's entry: {}",
        tables[0]
    );
    assert_eq!(tables[tables.len() - 1], lab, "the entry removed again");
    assert_eq!(std::fs::read_to_string(&exports).expect("exports"), lab);
    let left: Vec<_> = std::fs::read_dir(&work).expect("work").collect();
    assert!(left.is_empty(), "the NFS root removed: {left:?}");
    eprintln!("real U-Boot, NFS root job: {:?}; {line}", ok.took);
    drop(board);
    drop(ganesha);
}

#[test]
fn a_real_u_boot_boots_the_uimage_basalt_wraps_with_bootm() {
    let tmp = TempDir::new("real-uboot-bootm");
    let dir = tmp.path();
    let tftp_root = dir.join("tftp");
    std::fs::create_dir_all(&tftp_root).expect("tftp root");
    let ns = Netns::start(dir);
    let board_dir = dir.join("board");
    let board = Board::start(&board_dir, &ns, Path::new(U_BOOT));
    let dict = dictionary_for(&board_dir, &board, "bootm", "");
    let console = || std::fs::read_to_string(board_dir.join("console.log")).unwrap_or_default();
    let ok = run(
        &ns,
        dir,
        "bootm",
        &dict,
        &smoke_job("real u-boot, bootm", "    commands: ramdisk\n"),
        &tftp_root,
    );
    ok.assert_complete(&console());
    let rows = common::results(&ok.out);
    assert_eq!(ok.smoke("arch").as_deref(), Some("pass"), "{rows:?}");
    assert_eq!(ok.smoke("must-fail").as_deref(), Some("fail"), "{rows:?}");
    assert!(
        ok.log.contains("wrapped the kernel as a uImage for bootm"),
        "basalt made the uImage: {}",
        ok.tail()
    );
    let con = console();
    assert!(con.contains("bootm 0x40400000"), "U-Boot was told bootm");
    assert!(
        con.contains("Legacy Image") && con.contains("Starting kernel"),
        "U-Boot booted the uImage: {con}"
    );
    eprintln!("real U-Boot, bootm job: {:?}", ok.took);
}
