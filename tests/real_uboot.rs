//! A real U-Boot: QEMU's arm64 `virt` machine with Debian's `u-boot-qemu`, its network through
//! passt inside a private network namespace (nothing can leave it: its only interfaces are
//! `lo` and a veth pair with no peer outside), the TFTP server on the namespace's loopback
//! (passt maps the guest's gateway 10.0.2.2 to it). `basalt run` stages the kernel and the
//! busybox initramfs, powers the board through QMP, interrupts U-Boot and types the device
//! type's `ramdisk` commands; `booti` is given U-Boot's own copy of QEMU's device tree
//! (`${fdtcontroladdr}`: a tree dumped with `-machine dumpdtb` does not boot this kernel);
//! the kernel boots to a shell and LAVA's test shell runs. QEMU and `basalt run` run in the
//! namespace too (its loopback is where the worker's servers are for the board). Recipes:
//! ../shared/recipes/qemu-boards/30 and 35.

mod common;

use common::TempDir;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Waits for `cond`, up to `within`.
fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A process stopped (SIGTERM, then SIGKILL) and reaped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private network namespace with passt in it (its socket at `passt.sock` in `dir`) and
/// whatever else is started in it with [`Netns::command`].
struct Netns {
    /// The namespace's first process (passt, exec'd by the setup shell).
    passt_pid: i32,
    _unshare: Proc,
    others: Vec<Proc>,
    socket: PathBuf,
}

impl Netns {
    fn start(dir: &Path) -> Netns {
        // passt drops to nobody before it creates its socket: the directory must be writable
        let ns = dir.join("netns");
        std::fs::create_dir_all(&ns).expect("netns dir");
        std::fs::set_permissions(&ns, std::os::unix::fs::PermissionsExt::from_mode(0o1777))
            .expect("chmod");
        let socket = ns.join("passt.sock");
        let pidfile = ns.join("passt.pid");
        let log = std::fs::File::create(ns.join("passt.log")).expect("passt.log");
        let setup = format!(
            "set -e; ip link set lo up; ip link add va type veth peer name vb; \
             ip addr add 10.0.2.15/24 dev va; ip link set va up; ip link set vb up; \
             ip route add default via 10.0.2.2 dev va; echo $$ > {pid}; \
             exec passt -f -4 -s {sock} -a 10.0.2.15 -n 24 -g 10.0.2.2 \
             --no-dhcp-dns --no-dhcp-search -t none -u none",
            pid = pidfile.display(),
            sock = socket.display()
        );
        let unshare = Command::new("unshare")
            .args(["--net", "--fork", "--kill-child", "sh", "-c", &setup])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("unshare (util-linux)");
        let unshare = Proc(unshare);
        wait_for("passt's socket", Duration::from_secs(10), || {
            socket.exists()
        });
        let passt_pid = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .expect("passt's pid");
        Netns {
            passt_pid,
            _unshare: unshare,
            others: Vec::new(),
            socket,
        }
    }

    /// `program args...` inside the namespace (nsenter).
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/proc/{}/ns/net", self.passt_pid))
            .arg("--")
            .arg(program);
        c
    }

    fn keep(&mut self, child: Child) {
        self.others.push(Proc(child));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.others.clear();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.passt_pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

/// The arm64 board: QEMU `virt` with U-Boot, held powered off (`-S`) until QMP says `cont`,
/// its console a telnet server on 127.0.0.1, its network passt's socket.
struct Board {
    _qemu: Proc,
    console_port: u16,
    qmp: PathBuf,
}

const QEMU_MACHINE: &[&str] = &["-M", "virt", "-cpu", "cortex-a57", "-m", "1024"];

impl Board {
    /// A board in `dir` running `firmware` (U-Boot, or a blank image: a dead bootloader).
    fn start(dir: &Path, ns: &Netns, firmware: &Path) -> Board {
        std::fs::create_dir_all(dir).expect("the board's directory");
        let port = free_port();
        let qmp = dir.join("qmp.sock");
        let log = std::fs::File::create(dir.join("qemu.log")).expect("qemu.log");
        let qemu = ns
            .command("qemu-system-aarch64")
            .args(QEMU_MACHINE)
            .arg("-bios")
            .arg(firmware)
            .args(["-S", "-display", "none", "-monitor", "none"])
            .arg("-netdev")
            .arg(format!(
                "stream,id=n0,server=off,addr.type=unix,addr.path={}",
                ns.socket.display()
            ))
            .args(["-device", "virtio-net-pci,netdev=n0"])
            .arg("-chardev")
            .arg(format!(
                "socket,id=con,host=127.0.0.1,port={port},server=on,wait=off,telnet=on,logfile={}",
                dir.join("console.log").display()
            ))
            .args(["-serial", "chardev:con"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("qemu-system-aarch64 (scripts/install-deps.sh)");
        let qemu = Proc(qemu);
        wait_for("QEMU's QMP socket", Duration::from_secs(20), || {
            qmp.exists()
        });
        Board {
            _qemu: qemu,
            console_port: port,
            qmp,
        }
    }
}

/// The power script of the device dictionary: QMP through socat.
fn power_script(dir: &Path, qmp: &Path) -> PathBuf {
    let script = dir.join("power.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             case $1 in\n\
               on|reset) c='{{\"execute\":\"system_reset\"}}\n{{\"execute\":\"cont\"}}' ;;\n\
               off) c='{{\"execute\":\"stop\"}}\n{{\"execute\":\"system_reset\"}}' ;;\n\
               *) exit 2 ;;\n\
             esac\n\
             printf '{{\"execute\":\"qmp_capabilities\"}}\\n%s\\n' \"$c\" | socat -t 1 - UNIX-CONNECT:{} >/dev/null\n",
            qmp.display()
        ),
    )
    .expect("power.sh");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    script
}

const U_BOOT: &str = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";

/// The device dictionary of `board` (in `dir`), powered by its QMP script.
fn dictionary(dir: &Path, board: &Board) -> PathBuf {
    let power = power_script(dir, &board.qmp);
    let dict = dir.join("qemu-arm64-uboot.jinja2");
    std::fs::write(
        &dict,
        format!(
            "{{% extends 'u-boot.jinja2' %}}\n\
             {{% set console_device = 'ttyAMA0' %}}\n\
             {{% set bootloader_prompt = '=>' %}}\n\
             {{% set booti_kernel_addr = '0x40400000' %}}\n\
             {{% set booti_dtb_addr = '${{fdtcontroladdr}}' %}}\n\
             {{% set booti_ramdisk_addr = '0x44000000' %}}\n\
             {{% set uboot_ramdisk_format = 'raw' %}}\n\
             {{% set connection_command = 'telnet 127.0.0.1 {port}' %}}\n\
             {{% set power_on_command = '{p} on' %}}\n\
             {{% set power_off_command = '{p} off' %}}\n\
             {{% set hard_reset_command = '{p} reset' %}}\n",
            port = board.console_port,
            p = power.display()
        ),
    )
    .expect("the device dictionary");
    dict
}

/// A tftp deploy of the arm64 kernel and initramfs, then `boot` (the boot block's keys after
/// `method: u-boot`), then the smoke test.
fn job(boot: &str) -> String {
    let fixtures = common::fixtures_dir().join("arm64");
    let (kernel, initrd) = (fixtures.join("Image"), fixtures.join("initramfs.cpio.gz"));
    assert!(
        kernel.is_file() && initrd.is_file(),
        "arm64 fixtures missing: hw-tests/build-fixtures.sh"
    );
    format!(
        "device_type: qemu-arm64-uboot\njob_name: real u-boot\n\
         timeouts:\n  job:\n    minutes: 8\n  action:\n    minutes: 3\n  actions:\n    \
         bootloader-interrupt:\n      seconds: 15\n\
         visibility: public\npriority: medium\nactions:\n\
         - deploy:\n    to: tftp\n    os: oe\n    kernel:\n      url: file://{}\n      type: image\n    \
         ramdisk:\n      url: file://{}\n\
         - boot:\n    method: u-boot\n{boot}    prompts:\n    - '/ # '\n\
         - test:\n    timeout:\n      minutes: 3\n    definitions:\n    - from: inline\n      name: smoke\n      \
         path: inline/smoke.yaml\n      repository:\n        metadata:\n          \
         format: Lava-Test Test Definition 1.0\n          name: smoke\n          description: smoke\n        \
         run:\n          steps:\n          - lava-test-case arch --shell test \"$(uname -m)\" = aarch64\n          \
         - lava-test-case must-fail --shell false\n",
        kernel.display(),
        initrd.display(),
    )
}

/// How a `basalt run` ended.
struct Run {
    code: Option<i32>,
    log: String,
    out: PathBuf,
    took: Duration,
}

impl Run {
    /// The job's own result (`lava`/`job`): its error message and cause.
    fn job_error(&self) -> (String, String) {
        let text = std::fs::read_to_string(self.out.join("results.yaml")).unwrap_or_default();
        let doc = basalt::yaml::load(&text).expect("results.yaml");
        let job = doc
            .as_seq()
            .unwrap_or(&[])
            .iter()
            .find(|r| {
                r.get("case").and_then(|c| c.as_str()) == Some("job")
                    && r.get("definition").and_then(|d| d.as_str()) == Some("lava")
            })
            .cloned()
            .expect("the job's own result");
        let field = |k: &str| {
            job.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        (field("error_msg"), field("cause"))
    }

    fn tail(&self) -> String {
        let lines: Vec<&str> = self.log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// `basalt run` of `job` on `dict` with the TFTP root `tftp_root`; the output in `dir/name`.
fn run(ns: &Netns, dir: &Path, name: &str, dict: &Path, job: &str, tftp_root: &Path) -> Run {
    let job_file = dir.join(format!("{name}.yaml"));
    std::fs::write(&job_file, job).expect("the job");
    let out = dir.join(name);
    let t0 = Instant::now();
    let status = ns
        .command(env!("CARGO_BIN_EXE_basalt"))
        .args(["run", "-q"])
        .arg(&job_file)
        .arg("--device")
        .arg(dict)
        .arg("--output-dir")
        .arg(&out)
        .arg("--device-types")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/config/device-types"))
        .arg("--tftp-root")
        .arg(tftp_root)
        .args(["--server-ip", "10.0.2.2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("basalt run");
    let left: Vec<_> = std::fs::read_dir(tftp_root).expect("tftp root").collect();
    assert!(
        left.is_empty(),
        "{name}: TFTP staging left behind: {left:?}"
    );
    Run {
        code: status.code(),
        log: std::fs::read_to_string(out.join("output.yaml")).unwrap_or_default(),
        out,
        took: t0.elapsed(),
    }
}

#[test]
fn tftp_deploys_boot_through_a_real_u_boot_and_its_faults_are_told_apart() {
    let tmp = TempDir::new("real-uboot");
    let dir = tmp.path();
    let tftp_root = dir.join("tftp");
    std::fs::create_dir_all(&tftp_root).expect("tftp root");
    let mut ns = Netns::start(dir);
    // the TFTP server, on the namespace's loopback: what the board reaches as 10.0.2.2
    let tftpd = ns
        .command("in.tftpd")
        .args(["-L", "-u", "tftp", "-a", "127.0.0.1:69", "-s"])
        .arg(&tftp_root)
        .stdin(Stdio::null())
        .spawn()
        .expect("in.tftpd (tftpd-hpa)");
    ns.keep(tftpd);
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
        &job("    commands: ramdisk\n"),
        &tftp_root,
    );
    assert_eq!(
        ok.code,
        Some(0),
        "Complete; log tail:\n{}\nconsole:\n{}",
        ok.tail(),
        console()
    );
    let rows = common::results(&ok.out);
    let result = |case: &str| {
        rows.iter()
            .find(|r| r.0 == "0_smoke" && r.1 == case)
            .map(|r| r.2.clone())
    };
    assert_eq!(result("arch").as_deref(), Some("pass"), "{rows:?}");
    assert_eq!(result("must-fail").as_deref(), Some("fail"), "{rows:?}");
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
        &job("    commands:\n    - setenv autoload no\n    - dhcp\n    - setenv serverip {SERVER_IP}\n    \
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
        &job("    commands:\n    - setenv autoload no\n    - dhcp\n    - setenv serverip {SERVER_IP}\n    \
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
        &job("    commands: ramdisk\n"),
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
