//! SSH into a QEMU board (issue 21, docs/reservations.md `## SSH`), for real: the amd64 kernel
//! with the fixtures' `initramfs-ssh.cpio.gz` (Debian's dropbear), user networking with
//! `restrict=on` and the forward of 127.0.0.1:PORT to the guest's port 22, OpenSSH's client on
//! the host.
//!
//! - `hold_ssh_setup_over_the_console`: QEMU through the HAL, `basalt::hold::ssh::set_up` on its
//!   console (the key written, dropbear started), then `ssh uname -a`, an `scp` whose sha256
//!   matches, and a second lease's key replacing the first.
//! - `basalt_run_ssh_forward`: `basalt run --ssh-forward PORT` on a qemu device with user
//!   networking; the job's test starts dropbear and waits until the host logged in over SSH.

mod common;

use basalt::actions::boot::qemu_forward::{add_ssh_forward, Restrict};
use basalt::hold::ssh::{set_up, PublicKey, Reach, Setup, SshUser};
use basalt_hal::console::expect::{NullTranscript, Regex, Session};
use basalt_hal::emulator::QemuProcess;
use common::{fixtures_dir, free_port, Daemon, TempDir};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The amd64 kernel and the SSH initramfs, checked to exist.
fn fixtures() -> (PathBuf, PathBuf) {
    let dir = fixtures_dir();
    let k = dir.join("amd64/vmlinux");
    let i = std::env::var_os("BASALT_INITRD_SSH_AMD64")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("amd64/initramfs-ssh.cpio.gz"));
    assert!(
        k.is_file() && i.is_file(),
        "SSH boot fixtures missing ({}, {}): run hw-tests/build-fixtures.sh",
        k.display(),
        i.display()
    );
    (k, i)
}

/// A fresh ed25519 key pair in `dir`: (private key file, public key line).
fn key_pair(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test@basalt", "-f"])
        .arg(&key)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen runs (openssh-client: scripts/install-deps.sh)");
    assert!(st.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("the public key");
    (key, public.trim().to_string())
}

/// Runs `cmd` to its end, killing it (by its PID) after `secs`.
fn run_for(cmd: &mut Command, secs: u64) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(out) => out.expect("the command's output"),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("{cmd:?} did not finish in {secs} s");
        }
    }
}

/// OpenSSH's options for a throwaway guest: no host key checks, no agent, no prompts.
const SSH_OPTS: &[&str] = &[
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "BatchMode=yes",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "ConnectTimeout=20",
    "-o",
    "LogLevel=ERROR",
];

fn ssh(key: &Path, port: u16, command: &str) -> Output {
    run_for(
        Command::new("ssh")
            .arg("-i")
            .arg(key)
            .arg("-p")
            .arg(port.to_string())
            .args(SSH_OPTS)
            .arg("root@127.0.0.1")
            .arg(command),
        90,
    )
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}, stdout {:?}, stderr {:?}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Whether the host listens on 127.0.0.1:`port` (and on no other address of it).
fn listens_on_loopback_only(port: u16) -> (bool, bool) {
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default()
        + &std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    let suffix = format!(":{port:04X}");
    let mut loopback = false;
    let mut other = false;
    for l in tcp.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() > 3 && f[1].ends_with(&suffix) && f[3] == "0A" {
            if f[1] == format!("0100007F{suffix}") {
                loopback = true;
            } else {
                other = true;
            }
        }
    }
    (loopback, other)
}

/// QEMU, killed (its PID) and reaped when dropped, on every path.
struct Qemu(QemuProcess);

impl Drop for Qemu {
    fn drop(&mut self) {
        if let Some(pid) = self.0.pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_ssh_setup_over_the_console() {
    let (kernel, initrd) = fixtures();
    let tmp = TempDir::new("ssh-hold");
    let (key1, pub1) = key_pair(tmp.path(), "lease1");
    let (key2, pub2) = key_pair(tmp.path(), "lease2");
    let port = free_port();
    let mut argv: Vec<String> = [
        "qemu-system-x86_64",
        "-accel",
        "tcg",
        "-smp",
        "1",
        "-m",
        "512",
        "-nographic",
        "-monitor",
        "none",
        "-no-reboot",
        "-net",
        "nic,model=virtio,macaddr=52:54:00:12:34:58",
        "-net",
        "user,restrict=on",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend([
        "-kernel".into(),
        kernel.to_string_lossy().into_owned(),
        "-initrd".into(),
        initrd.to_string_lossy().into_owned(),
        "-append".into(),
        "console=ttyS0,115200 panic=-1 quiet".into(),
    ]);
    add_ssh_forward(&mut argv, port, Restrict::Keep).expect("a user network to forward");
    assert!(
        argv.contains(&format!(
            "user,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22"
        )),
        "{argv:?}"
    );
    let (qemu, stream) = QemuProcess::spawn(&argv).expect("QEMU starts");
    let _qemu = Qemu(qemu);
    let mut session = Session::new(stream, "qemu", Box::new(NullTranscript));
    let prompt = Regex::new("/ # ").unwrap();
    session
        .expect(&[prompt], Duration::from_secs(180))
        .await
        .expect("the initramfs's shell prompt");
    // the forward is QEMU's, on the host's loopback only
    let (loopback, other) = listens_on_loopback_only(port);
    assert!(
        loopback && !other,
        "127.0.0.1:{port} only: {loopback} {other}"
    );

    let reach = Reach::Forwarded {
        host: "127.0.0.1".into(),
        port,
    };
    let user = SshUser::parse("root").unwrap();
    let t0 = Instant::now();
    let ep = set_up(
        &mut session,
        &Setup::new(
            PublicKey::parse(&pub1).unwrap(),
            user.clone(),
            reach.clone(),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("SSH set-up: {e}"));
    eprintln!(
        "ssh set-up (key written, dropbear started): {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(
        (ep.host.as_str(), ep.port, ep.user.as_str()),
        ("127.0.0.1", port, "root")
    );

    let out = ssh(&key1, port, "uname -a");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("Linux basalt-dut "),
        "ssh uname -a: {}",
        text(&out)
    );

    // scp (OpenSSH's default: the SFTP subsystem, dropbear runs sftp-server) of 256 KiB
    let data: Vec<u8> = (0..256 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let local = tmp.path().join("payload.bin");
    std::fs::write(&local, &data).unwrap();
    let want: String = sha2::Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let out = run_for(
        Command::new("scp")
            .arg("-i")
            .arg(&key1)
            .arg("-P")
            .arg(port.to_string())
            .args(SSH_OPTS)
            .arg(&local)
            .arg("root@127.0.0.1:/tmp/payload.bin"),
        120,
    );
    assert!(out.status.success(), "scp: {}", text(&out));
    let out = ssh(&key1, port, "sha256sum /tmp/payload.bin");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with(&want),
        "sha256 on the board: {} (want {want})",
        text(&out)
    );

    // the next lease: its key replaces the earlier lease's; dropbear, running, is left alone
    set_up(
        &mut session,
        &Setup::new(PublicKey::parse(&pub2).unwrap(), user, reach),
    )
    .await
    .unwrap_or_else(|e| panic!("second SSH set-up: {e}"));
    let out = ssh(
        &key2,
        port,
        "grep -c basalt-lease /root/.ssh/authorized_keys",
    );
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "1",
        "the second lease's key: {}",
        text(&out)
    );
    let out = ssh(&key1, port, "true");
    assert!(
        !out.status.success(),
        "the first lease's key still works: {}",
        text(&out)
    );
}

#[test]
fn basalt_run_ssh_forward() {
    let (kernel, initrd) = fixtures();
    let tmp = TempDir::new("ssh-run");
    let (key, public) = key_pair(tmp.path(), "lease");
    let port = free_port();
    let device = tmp.path().join("qemu-ssh.jinja2");
    std::fs::write(
        &device,
        "{% extends 'qemu.jinja2' %}\n{% set arch = 'x86_64' %}\n{% set memory = 512 %}\n\
         {% set netdevice = 'user' %}\n{% set no_kvm = true %}\n\
         {% set extra_options = ['-accel', 'tcg', '-smp', '1', '-no-reboot'] %}\n",
    )
    .unwrap();
    // the job starts dropbear itself (basalt run has no lease), then waits for the host's login
    let job = format!(
        r#"device_type: qemu
job_name: ssh forward
timeouts:
  job: {{minutes: 8}}
  action: {{minutes: 4}}
  connection: {{minutes: 2}}
priority: medium
visibility: public
context: {{arch: amd64}}
actions:
- deploy:
    to: tmpfs
    os: oe
    images:
      kernel:
        url: file://{kernel}
        image_arg: -kernel {{kernel}} -append "console=ttyS0,115200 panic=-1"
      initrd:
        url: file://{initrd}
        image_arg: -initrd {{initrd}}
        format: cpio.newc
        overlays:
          lava: true
- boot:
    method: qemu
    media: tmpfs
    timeout: {{minutes: 3}}
    prompts: ['/ # ']
- test:
    timeout: {{minutes: 4}}
    definitions:
    - from: inline
      name: ssh
      path: inline/ssh.yaml
      repository:
        metadata:
          format: Lava-Test Test Definition 1.0
          name: ssh
          description: dropbear on the forwarded port
        run:
          steps:
          - printf '%s\n' '{public}' >/root/.ssh/authorized_keys
          - chmod 600 /root/.ssh/authorized_keys
          - lava-test-case dropbear --shell dropbear -R -p 22
          - lava-test-case ssh-login --shell 'i=0; while [ ! -e /tmp/ssh-was-here ] && [ $i -lt 1200 ]; do sleep 0.2; i=$((i+1)); done; test -e /tmp/ssh-was-here'
"#,
        kernel = kernel.display(),
        initrd = initrd.display(),
    );
    let job_file = tmp.path().join("job.yaml");
    std::fs::write(&job_file, job).unwrap();
    let out = tmp.path().join("out");
    let mut basalt = Daemon(
        Command::new(env!("CARGO_BIN_EXE_basalt"))
            .arg("run")
            .arg(&job_file)
            .arg("--device")
            .arg(&device)
            .arg("--output-dir")
            .arg(&out)
            .arg("--ssh-forward")
            .arg(port.to_string())
            .arg("-q")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("basalt runs"),
    );
    // until the guest's dropbear answers on the forward (or basalt ends)
    let deadline = Instant::now() + Duration::from_secs(400);
    let login = loop {
        if let Ok(Some(st)) = basalt.0.try_wait() {
            panic!(
                "basalt ended ({st}) before an SSH login: {}",
                std::fs::read_to_string(out.join("output.yaml")).unwrap_or_default()
            );
        }
        let o = ssh(&key, port, "touch /tmp/ssh-was-here && uname -sn");
        if o.status.success() {
            break o;
        }
        assert!(
            Instant::now() < deadline,
            "no SSH login in time: {}",
            text(&o)
        );
        // the guest's dropbear is not up yet: QEMU takes the connection and drops it
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(
        String::from_utf8_lossy(&login.stdout).trim(),
        "Linux basalt-dut"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = basalt.0.try_wait().expect("basalt's status") {
            break st;
        }
        assert!(Instant::now() < deadline, "basalt did not finish");
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = std::fs::read_to_string(out.join("output.yaml")).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "the job is Complete: {log}");
    let res = common::results(&out);
    for case in ["dropbear", "ssh-login"] {
        assert!(
            res.iter()
                .any(|r| r.0 == "0_ssh" && r.1 == case && r.2 == "pass"),
            "{case}: {res:?}"
        );
    }
    assert!(
        log.contains(&format!("hostfwd=tcp:127.0.0.1:{port}-:22")),
        "the boot command has the forward"
    );
    // confined (basalt as root) QEMU had no network: its guest is restricted, forward or not
    if log.contains("the job's processes run confined") {
        assert!(
            log.contains(&format!(
                "user,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22"
            )),
            "the guest is restricted"
        );
    }
}
