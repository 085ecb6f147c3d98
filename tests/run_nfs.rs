//! `basalt run` of a `deploy: to: nfs` + `boot: method: qemu-nfs` job on the fixture kernel in
//! QEMU: the NFS root unpacked and exported for the job (into an export table and an
//! `exportfs` of the test's own, `BASALT_EXPORTS_FILE` / `BASALT_EXPORTFS`), QEMU started with
//! LAVA's `-append "console=… root=/dev/nfs nfsroot=SERVER:ROOT,tcp,hard ip=dhcp"`, and the
//! export and the root gone when the job ends. The device has no network here (no NFS server
//! can be reached: tests send nothing off the machine), so the kernel runs the initramfs'
//! `/init` instead of mounting the root (an initramfs with `/init` wins over `root=`) and the
//! job ends at its shell prompt. (The overlay going into the NFS root is tested in
//! `actions::deploy::nfs`: a test shell needs the root mounted.)

mod common;

use common::{fixtures_amd64, results, TempDir};
use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn qemu_nfs_job_exports_its_root_for_the_job_only() {
    let (k, i) = fixtures_amd64();
    let tmp = TempDir::new("nfs");
    let dir = tmp.path();
    // the NFS root: a tar.xz made by tar(1)
    let src = dir.join("rootsrc");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/hostname"), "nfs-root\n").unwrap();
    let st = Command::new("tar")
        .arg("-cJf")
        .arg(dir.join("root.tar.xz"))
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let table = dir.join("exports");
    let lab = "# the lab's own\n/srv/keep 10.0.0.0/8(ro,sync)\n";
    std::fs::write(&table, lab).unwrap();
    let calls = dir.join("exportfs.calls");
    let job = format!(
        r#"device_type: qemu
job_name: qemu-nfs on the fixture kernel
timeouts: {{job: {{minutes: 5}}, action: {{minutes: 2}}}}
priority: medium
visibility: public
context: {{arch: amd64}}
actions:
- deploy:
    to: nfs
    os: oe
    images:
      nfsrootfs:
        url: file://{root}
        compression: xz
        image_arg: 'nfsroot={{NFS_SERVER_IP}}:{{nfsrootfs}},tcp,hard'
      kernel:
        url: file://{k}
        image_arg: -kernel {{kernel}}
      initrd:
        url: file://{i}
        image_arg: -initrd {{initrd}}
- boot:
    method: qemu-nfs
    timeout: {{minutes: 2}}
    prompts: ['/ # ']
"#,
        root = dir.join("root.tar.xz").display(),
        k = k.display(),
        i = i.display(),
    );
    let job_file = dir.join("job.yaml");
    std::fs::write(&job_file, job).unwrap();
    let out = dir.join("out");
    let status = Command::new(env!("CARGO_BIN_EXE_basalt"))
        .arg("run")
        .arg(&job_file)
        .arg("--device")
        .arg(repo().join("config/devices/qemu-amd64.jinja2"))
        .arg("--output-dir")
        .arg(&out)
        .arg("-q")
        .env("BASALT_EXPORTS_FILE", &table)
        .env(
            "BASALT_EXPORTFS",
            format!("sh -c 'cat {} >> {}'", table.display(), calls.display()),
        )
        .status()
        .unwrap();
    let log = std::fs::read_to_string(out.join("output.yaml")).unwrap();
    assert_eq!(status.code(), Some(0), "job should be Complete:\n{log}");
    let res = results(&out);
    assert!(
        res.iter()
            .any(|r| r.0 == "lava" && r.1 == "deploy-qemu-nfs" && r.2 == "pass"),
        "{res:?}"
    );
    // while the job ran, exportfs saw the table with the job's line, then without it
    let seen = std::fs::read_to_string(&calls).unwrap();
    let entry = seen
        .lines()
        .find(|l| l.contains(" # basalt job "))
        .unwrap_or_else(|| panic!("no job entry in {seen}"));
    assert!(
        entry.contains(" *(rw,no_root_squash,no_all_squash,async,no_subtree_check) "),
        "{entry}"
    );
    let root = entry.split(' ').next().unwrap();
    assert_eq!(seen.matches("/srv/keep").count(), 2, "{seen}");
    // QEMU's command line, as the kernel got it
    let cmdline = format!("console=ttyS0 root=/dev/nfs nfsroot=127.0.0.1:{root},tcp,hard ip=dhcp");
    assert!(log.contains(&format!("-append '{cmdline}'")), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains(r#""lvl": "target""#)
                && l.contains(&format!("Command line: {cmdline}"))),
        "{log}"
    );
    assert!(log.contains("removed the NFS export of"), "{log}");
    // afterwards: the lab's table as it was, the root gone
    assert_eq!(std::fs::read_to_string(&table).unwrap(), lab);
    assert!(!std::path::Path::new(root).exists());
}
