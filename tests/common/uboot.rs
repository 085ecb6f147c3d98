//! The rig of the real-U-Boot tests (tests/real_uboot.rs, tests/real_media.rs,
//! tests/real_uboot_nfs.rs, tests/real_uboot_bootz.rs): a private network namespace with
//! passt, QEMU's arm64 (or 32-bit arm) `virt` board with U-Boot in it, powered through QMP, `basalt run` inside the namespace and, for
//! NFS roots, nfs-ganesha there too. Included by each test with
//! `#[path = "common/uboot.rs"] mod rig;` (next to `mod common;`).
//!
//! The namespace's loopback also has 10.0.2.2, the guest's gateway, and passt runs with
//! `--no-map-gw`: what the guest sends to 10.0.2.2 reaches the servers listening on that
//! address in the namespace (basalt's own TFTP server, `basalt run --tftp-listen`, and its
//! HTTP file server at `--server-ip`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The worker's address as the board sees it (on the namespace's loopback).
pub const SERVER_IP: &str = "10.0.2.2";

/// Waits for `cond`, up to `within`.
pub fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A process stopped (SIGTERM, then SIGKILL) and reaped when dropped.
pub struct Proc(pub Child);

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
pub struct Netns {
    /// The namespace's first process (passt, exec'd by the setup shell).
    passt_pid: i32,
    _unshare: Proc,
    others: Vec<Proc>,
    pub socket: PathBuf,
}

impl Netns {
    pub fn start(dir: &Path) -> Netns {
        // passt drops to nobody before it creates its socket: the directory must be writable
        let ns = dir.join("netns");
        std::fs::create_dir_all(&ns).expect("netns dir");
        std::fs::set_permissions(&ns, std::os::unix::fs::PermissionsExt::from_mode(0o1777))
            .expect("chmod");
        let socket = ns.join("passt.sock");
        let pidfile = ns.join("passt.pid");
        let log = std::fs::File::create(ns.join("passt.log")).expect("passt.log");
        let setup = format!(
            "set -e; ip link set lo up; ip addr add 10.0.2.2/32 dev lo; ip link add va type veth peer name vb; \
             ip addr add 10.0.2.15/24 dev va; ip link set va up; ip link set vb up; \
             ip route add default via 10.0.2.2 dev va; echo $$ > {pid}; \
             exec passt -f -4 -s {sock} -a 10.0.2.15 -n 24 -g 10.0.2.2 \
             --no-map-gw --no-dhcp-dns --no-dhcp-search -t none -u none",
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
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/proc/{}/ns/net", self.passt_pid))
            .arg("--")
            .arg(program);
        c
    }

    pub fn keep(&mut self, child: Child) {
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

/// The board: QEMU `virt` with U-Boot, held powered off (`-S`) until QMP says `cont`,
/// its console a telnet server on 127.0.0.1, its network passt's socket.
pub struct Board {
    _qemu: Proc,
    pub console_port: u16,
    pub qmp: PathBuf,
}

pub const QEMU_MACHINE: &[&str] = &["-M", "virt", "-cpu", "cortex-a57", "-m", "1024"];

/// Which QEMU runs the board and as what machine.
pub struct Machine {
    pub qemu: &'static str,
    pub args: &'static [&'static str],
}

/// The arm64 `virt` board (Debian's qemu_arm64 U-Boot).
pub const ARM64: Machine = Machine {
    qemu: "qemu-system-aarch64",
    args: QEMU_MACHINE,
};

/// The 32-bit arm `virt` board (Debian's qemu_arm U-Boot, its RAM from 0x40000000): a
/// Cortex-A15 with 512 MiB, all of it the armmp kernel's lowmem (its 3G/1G split maps
/// ~760 MiB). `highmem` may stay on: U-Boot and the (non-LPAE) kernel both use virt's PCI
/// window below 4 GiB and leave the one above alone (tried with and without `highmem=off`).
pub const ARM: Machine = Machine {
    qemu: "qemu-system-arm",
    args: &["-M", "virt", "-cpu", "cortex-a15", "-m", "512"],
};

impl Board {
    /// A board in `dir` running `firmware` (U-Boot, or a blank image: a dead bootloader).
    pub fn start(dir: &Path, ns: &Netns, firmware: &Path) -> Board {
        Board::start_with(dir, ns, firmware, &[])
    }

    /// The same with `extra` QEMU arguments (a second disk).
    pub fn start_with(dir: &Path, ns: &Netns, firmware: &Path, extra: &[String]) -> Board {
        Board::start_on(&ARM64, dir, ns, firmware, extra)
    }

    /// A board of `machine` (arm64 or 32-bit arm `virt`), with `extra` QEMU arguments.
    pub fn start_on(
        machine: &Machine,
        dir: &Path,
        ns: &Netns,
        firmware: &Path,
        extra: &[String],
    ) -> Board {
        std::fs::create_dir_all(dir).expect("the board's directory");
        let port = free_port();
        let qmp = dir.join("qmp.sock");
        let log = std::fs::File::create(dir.join("qemu.log")).expect("qemu.log");
        let qemu = ns
            .command(machine.qemu)
            .args(machine.args)
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
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("qemu-system-aarch64 / -arm (scripts/install-deps.sh)");
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
pub fn power_script(dir: &Path, qmp: &Path) -> PathBuf {
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

pub const U_BOOT: &str = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";

/// Debian's U-Boot for QEMU's 32-bit arm `virt` board.
pub const U_BOOT_ARM: &str = "/usr/lib/u-boot/qemu_arm/u-boot.bin";

/// A device dictionary's load addresses for one boot command (`booti`, `bootz`, `bootm`).
pub struct LoadAddresses<'a> {
    pub bootx: &'a str,
    pub kernel: &'a str,
    pub ramdisk: &'a str,
    pub dtb: &'a str,
}

/// The device dictionary of `board` (in `dir`), powered by its QMP script.
pub fn dictionary(dir: &Path, board: &Board) -> PathBuf {
    dictionary_with(dir, board, "")
}

/// The same with `extra` dictionary lines (`{% set ... %}`).
pub fn dictionary_with(dir: &Path, board: &Board, extra: &str) -> PathBuf {
    dictionary_for(dir, board, "booti", extra)
}

/// The dictionary with load addresses for `bootx` (`booti`, or `bootm`: then an `image`
/// kernel is wrapped as a uImage and booted with bootm, as LAVA's uboot-prepare-kernel does
/// on a device without booti addresses) and `extra` lines.
pub fn dictionary_for(dir: &Path, board: &Board, bootx: &str, extra: &str) -> PathBuf {
    let addresses = LoadAddresses {
        bootx,
        kernel: "0x40400000",
        ramdisk: "0x44000000",
        dtb: "${fdtcontroladdr}",
    };
    dictionary_named(dir, board, "qemu-arm64-uboot", &addresses, extra)
}

/// The dictionary `dir/<name>.jinja2` of `board` with `addresses` and `extra` lines.
pub fn dictionary_named(
    dir: &Path,
    board: &Board,
    name: &str,
    addresses: &LoadAddresses,
    extra: &str,
) -> PathBuf {
    let power = power_script(dir, &board.qmp);
    let dict = dir.join(format!("{name}.jinja2"));
    let LoadAddresses {
        bootx,
        kernel,
        ramdisk,
        dtb,
    } = addresses;
    std::fs::write(
        &dict,
        format!(
            "{{% extends 'u-boot.jinja2' %}}\n\
             {{% set console_device = 'ttyAMA0' %}}\n\
             {{% set bootloader_prompt = '=>' %}}\n\
             {{% set {bootx}_kernel_addr = '{kernel}' %}}\n\
             {{% set {bootx}_dtb_addr = '{dtb}' %}}\n\
             {{% set {bootx}_ramdisk_addr = '{ramdisk}' %}}\n\
             {{% set uboot_ramdisk_format = 'raw' %}}\n\
             {{% set connection_command = 'telnet 127.0.0.1 {port}' %}}\n\
             {{% set power_on_command = '{p} on' %}}\n\
             {{% set power_off_command = '{p} off' %}}\n\
             {{% set hard_reset_command = '{p} reset' %}}\n{extra}",
            port = board.console_port,
            p = power.display()
        ),
    )
    .expect("the device dictionary");
    dict
}

/// How a `basalt run` ended.
pub struct Run {
    pub code: Option<i32>,
    pub log: String,
    pub out: PathBuf,
    pub took: Duration,
}

impl Run {
    /// The result of test case `case` of the smoke definition (`0_smoke`), if reported.
    pub fn smoke(&self, case: &str) -> Option<String> {
        crate::common::results(&self.out)
            .into_iter()
            .find(|r| r.0 == "0_smoke" && r.1 == case)
            .map(|r| r.2)
    }

    /// The job's own result (`lava`/`job`): its error message and cause.
    pub fn job_error(&self) -> (String, String) {
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

    /// Asserts the job ended Complete; if not, shows the log's tail and the board's `console`.
    pub fn assert_complete(&self, console: &str) {
        assert_eq!(
            self.code,
            Some(0),
            "Complete; log tail:\n{}\nconsole:\n{console}",
            self.tail()
        );
    }

    pub fn tail(&self) -> String {
        let lines: Vec<&str> = self.log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// `basalt run` of `job` on `dict` with the TFTP root `tftp_root`; the output in `dir/name`.
pub fn run(ns: &Netns, dir: &Path, name: &str, dict: &Path, job: &str, tftp_root: &Path) -> Run {
    run_with_env(ns, dir, name, dict, job, tftp_root, &[])
}

/// The same with `env` set for `basalt run` (`TMPDIR`: where its jobs' staging goes;
/// `BASALT_EXPORTS_FILE` / `BASALT_EXPORTFS`: its NFS export table).
pub fn run_with_env(
    ns: &Netns,
    dir: &Path,
    name: &str,
    dict: &Path,
    job: &str,
    tftp_root: &Path,
    env: &[(&str, String)],
) -> Run {
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
        .args(["--server-ip", SERVER_IP])
        // basalt's own TFTP server, for the job, on the worker's address
        .args(["--tftp-listen", &format!("{SERVER_IP}:69")])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
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

/// A userspace NFSv4 server (nfs-ganesha, its VFS backend) in the namespace, bound to
/// [`SERVER_IP`]: `export` is served read-write (no root squash) at the same path in NFSv4's
/// pseudo filesystem, so that a client mounts any directory below it by its real path. NFSv4
/// only (no rpcbind, no mountd, no NLM), no grace period; its config, pid, log and recovery
/// directory under `dir`. Stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Ganesha {
    _proc: Proc,
    pub log: PathBuf,
}

impl Ganesha {
    pub fn start(ns: &Netns, dir: &Path, export: &Path) -> Ganesha {
        let g = dir.join("ganesha");
        std::fs::create_dir_all(g.join("recovery")).expect("ganesha's directory");
        let (conf, log, pid) = (
            g.join("ganesha.conf"),
            g.join("ganesha.log"),
            g.join("ganesha.pid"),
        );
        std::fs::write(
            &conf,
            format!(
                "NFS_CORE_PARAM {{\n  Protocols = 4;\n  NFS_Port = 2049;\n  Bind_addr = {SERVER_IP};\n  \
                 Enable_NLM = false;\n  Enable_RQUOTA = false;\n  Enable_UDP = false;\n}}\n\
                 NFSv4 {{\n  Graceless = true;\n  RecoveryBackend = fs;\n  RecoveryRoot = \"{rec}\";\n  \
                 Only_Numeric_Owners = true;\n}}\n\
                 EXPORT {{\n  Export_Id = 1;\n  Path = \"{e}\";\n  Pseudo = \"{e}\";\n  Access_Type = RW;\n  \
                 Squash = No_Root_Squash;\n  Protocols = 4;\n  Transports = TCP;\n  SecType = sys;\n  \
                 FSAL {{ Name = VFS; }}\n}}\n\
                 LOG {{ Default_Log_Level = EVENT; }}\n",
                rec = g.join("recovery").display(),
                e = export.display(),
            ),
        )
        .expect("ganesha.conf");
        let child = ns
            .command("ganesha.nfsd")
            .arg("-F")
            .arg("-L")
            .arg(&log)
            .arg("-f")
            .arg(&conf)
            .arg("-p")
            .arg(&pid)
            .args(["-N", "NIV_EVENT"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ganesha.nfsd (nfs-ganesha, scripts/install-deps.sh)");
        let proc = Proc(child);
        let started = || std::fs::read_to_string(&log).unwrap_or_default();
        wait_for("ganesha's start", Duration::from_secs(20), || {
            started().contains("NFS SERVER INITIALIZED")
        });
        Ganesha { _proc: proc, log }
    }
}

/// A job named `name`: a tftp deploy of the arm64 kernel and initramfs, then `boot` (the boot block's keys after
/// `method: u-boot`), then the smoke test.
pub fn smoke_job(name: &str, boot: &str) -> String {
    let fixtures = crate::common::fixtures_dir().join("arm64");
    let (kernel, initrd) = (fixtures.join("Image"), fixtures.join("initramfs.cpio.gz"));
    assert!(
        kernel.is_file() && initrd.is_file(),
        "arm64 fixtures missing: hw-tests/build-fixtures.sh"
    );
    format!(
        "device_type: qemu-arm64-uboot\njob_name: {name}\n\
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
