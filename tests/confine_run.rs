//! `basalt run` with its job's processes confined (docs/security.md, "Confinement of job
//! processes"): a QEMU or a connection command of the device cannot write outside the job
//! directory, read a root-only file or reach the network; `kill -9` of basalt leaves no
//! process of the job, and the next run removes the job directory it left; SIGHUP cancels the
//! job like SIGTERM. Needs root (CI runs as root) and, for QEMU, the boot fixtures.

mod common;

use common::{fixtures_amd64, TempDir};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn root() -> bool {
    let r = nix::unistd::geteuid().is_root();
    if !r {
        eprintln!("skipped: needs root");
    }
    r
}

/// The demo job with the fixture paths filled in.
fn demo_job() -> String {
    let (k, i) = fixtures_amd64();
    std::fs::read_to_string(repo().join("config/jobs/demo-qemu.yaml"))
        .expect("demo job")
        .replace("@KERNEL@", &k.to_string_lossy())
        .replace("@INITRD@", &i.to_string_lossy())
}

/// The demo job waiting for a prompt that never comes: QEMU runs until the boot times out.
fn endless_job() -> String {
    demo_job().replace(
        "    prompts:\n    - '/ # '\n",
        "    prompts:\n    - 'never comes'\n",
    )
}

/// Host files outside every job directory (and outside /tmp): a directory anyone may write
/// (only the confinement stops a write there) and a root-only secret in it.
struct Host {
    dir: PathBuf,
}

const SECRET: &str = "root-only-secret-5c1e";

impl Host {
    fn new(tag: &str) -> Host {
        // /var/tmp: outside /tmp (private to a confined process) and reachable by the job
        // user wherever the repository is cloned
        let base = Path::new("/var/tmp");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        };
        let dir = base.join(format!(
            "basalt-test-confine-run-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        Host { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `basalt run -q JOB` on `device`, its temporary directories in `tmpdir`.
fn start(job_text: &str, device: &Path, dir: &Path, tmpdir: &Path) -> (Child, PathBuf) {
    let job = dir.join("job.yaml");
    std::fs::write(&job, job_text).unwrap();
    let out = dir.join("out");
    std::fs::create_dir_all(tmpdir).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_basalt"))
        .arg("run")
        .arg(&job)
        .arg("--device")
        .arg(device)
        .arg("--output-dir")
        .arg(&out)
        .arg("-q")
        .env("TMPDIR", tmpdir)
        .stdout(Stdio::null())
        .spawn()
        .expect("basalt runs");
    (child, out)
}

/// Waits (with a deadline) for `child`; kills it if it does not end in time.
fn wait(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("basalt did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log(out: &Path) -> String {
    std::fs::read_to_string(out.join("output.yaml")).unwrap_or_default()
}

/// The pid in the log's `qemu (pid N)` (QEMU's supervisor), once QEMU runs.
fn wait_for_qemu(child: &mut Child, out: &Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(p) = log(out)
            .split("qemu (pid ")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .and_then(|p| p.parse::<i32>().ok())
        {
            return p;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("QEMU never started:\n{}", log(out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Live processes whose command line mentions `needle`.
fn processes_with(needle: &str) -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(needle) && alive(pid) {
                v.push(pid);
            }
        }
    }
    v
}

/// The job directories (`basalt-job-*`) in `tmpdir`.
fn job_dirs(tmpdir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(tmpdir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("basalt-job-"))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn kill_all(pids: &[i32]) {
    for p in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[test]
fn kill_9_of_basalt_leaves_no_process_and_the_next_run_removes_its_directory() {
    if !root() {
        return;
    }
    let tmp = TempDir::new("kill9");
    let tmpdir = tmp.path().join("tmp");
    let device = repo().join("config/devices/qemu-amd64.jinja2");
    let (mut basalt, out) = start(&endless_job(), &device, tmp.path(), &tmpdir);
    let supervisor = wait_for_qemu(&mut basalt, &out);
    let dirs = job_dirs(&tmpdir);
    assert_eq!(dirs.len(), 1, "one job directory: {dirs:?}");
    let workdir = dirs[0].to_string_lossy().into_owned();
    // QEMU's command line names its kernel in the job directory
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut job_pids = processes_with(&workdir);
    while job_pids.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        job_pids = processes_with(&workdir);
    }
    job_pids.push(supervisor);
    assert!(job_pids.len() >= 2, "QEMU runs: {job_pids:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(basalt.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = basalt.wait();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<i32> = job_pids.iter().copied().filter(|p| alive(*p)).collect();
        let left: Vec<i32> = left.into_iter().chain(processes_with(&workdir)).collect();
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            kill_all(&left);
            panic!("processes of the job outlived basalt's kill -9: {left:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        Path::new(&workdir).is_dir(),
        "kill -9 leaves the job directory"
    );
    // The next run (one that fails at once: its kernel does not exist) removes it.
    let (k, _) = fixtures_amd64();
    let failing = demo_job().replace(&*k.to_string_lossy(), "/nonexistent/vmlinux");
    let next = TempDir::new("kill9-next");
    let (mut basalt, out) = start(&failing, &device, next.path(), &tmpdir);
    assert_eq!(wait(&mut basalt, Duration::from_secs(60)), Some(1));
    assert!(
        !Path::new(&workdir).exists(),
        "the stale job directory is still there"
    );
    assert!(
        log(&out).contains("its basalt is gone"),
        "the removal is logged"
    );
    assert_eq!(job_dirs(&tmpdir), Vec::<PathBuf>::new());
}

#[test]
fn sighup_cancels_the_job_and_qemu_is_gone() {
    if !root() {
        return;
    }
    let tmp = TempDir::new("sighup");
    let tmpdir = tmp.path().join("tmp");
    let device = repo().join("config/devices/qemu-amd64.jinja2");
    let (mut basalt, out) = start(&endless_job(), &device, tmp.path(), &tmpdir);
    let supervisor = wait_for_qemu(&mut basalt, &out);
    let workdir = job_dirs(&tmpdir)
        .first()
        .map(|p| p.to_string_lossy().into_owned())
        .expect("a job directory");
    let qemu = processes_with(&workdir);
    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(basalt.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let code = wait(&mut basalt, Duration::from_secs(30));
    let took = t.elapsed();
    assert_eq!(code, Some(1), "a canceled job is Incomplete");
    // 1 s to notice, plus finalize (stopping QEMU: a SIGKILL and a wait)
    assert!(took < Duration::from_secs(3), "SIGHUP took {took:?}");
    let results = std::fs::read_to_string(out.join("results.yaml")).unwrap();
    assert!(results.contains("error_type: Canceled"), "{results}");
    assert!(log(&out).contains("job canceled (SIGHUP)"), "{}", log(&out));
    let left: Vec<i32> = qemu
        .iter()
        .copied()
        .chain([supervisor])
        .filter(|p| alive(*p))
        .collect();
    kill_all(&left);
    assert!(left.is_empty(), "QEMU outlived the canceled job: {left:?}");
    assert_eq!(
        job_dirs(&tmpdir),
        Vec::<PathBuf>::new(),
        "finalize cleans up"
    );
}

/// A device whose QEMU (through the dictionary's own `qemu_binary`, a wrapper) tries to write
/// host files and read a root-only one: nothing is written, nothing is read.
#[test]
fn a_qemu_of_the_device_writes_no_host_file() {
    if !root() {
        return;
    }
    let tmp = TempDir::new("qemu-host");
    let host = Host::new("qemu");
    let wrapper = host.path("qemu-wrapper.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ntouch {m1} 2>/dev/null && echo WROTE-HOST-FILE\ncat {s} 2>/dev/null\n\
             exec qemu-system-x86_64 \"$@\" -chardev file,id=leak,path={m2}\n",
            m1 = host.path("marker-wrapper").display(),
            m2 = host.path("marker-chardev").display(),
            s = host.path("secret").display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let device = tmp.path().join("leaky-qemu.jinja2");
    std::fs::write(
        &device,
        format!(
            "{{% extends 'qemu.jinja2' %}}\n{{% set arch = 'x86_64' %}}\n{{% set qemu_binary = '{}' %}}\n\
             {{% set netdevice = 'none' %}}\n{{% set no_kvm = true %}}\n\
             {{% set extra_options = ['-accel', 'tcg', '-smp', '1', '-no-reboot'] %}}\n",
            wrapper.display()
        ),
    )
    .unwrap();
    let (mut basalt, out) = start(&demo_job(), &device, tmp.path(), &tmp.path().join("tmp"));
    let code = wait(&mut basalt, Duration::from_secs(120));
    let log = log(&out);
    assert!(!host.path("marker-wrapper").exists(), "{log}");
    assert!(!host.path("marker-chardev").exists(), "{log}");
    assert!(!log.contains("WROTE-HOST-FILE"), "{log}");
    assert!(!log.contains(SECRET), "the secret reached the log");
    // QEMU refuses to start without its chardev file: the job cannot boot
    assert_eq!(code, Some(1), "{log}");
}

/// A device whose console is a `connection_command` (a script of the device's): it runs
/// confined, as the job user, without the host's network, writing nothing outside.
#[test]
fn a_connection_command_runs_confined() {
    if !root() {
        return;
    }
    let tmp = TempDir::new("console");
    let host = Host::new("console");
    let script = host.path("console.sh");
    std::fs::write(
        &script,
        format!(
            "touch {m} 2>/dev/null && echo WROTE-HOST-FILE\ncat {s} 2>/dev/null\n\
             echo \"uid=$(id -u) ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ,)\"\n\
             echo 'Linux version 6.1.0 (a console script)'\necho 'console-ready # '\nexec cat\n",
            m = host.path("marker-console").display(),
            s = host.path("secret").display(),
        ),
    )
    .unwrap();
    let device = tmp.path().join("console.jinja2");
    std::fs::write(
        &device,
        format!(
            "{{% extends 'qemu.jinja2' %}}\n{{% set connection_command = 'sh {}' %}}\n",
            script.display()
        ),
    )
    .unwrap();
    let job = "device_type: qemu\njob_name: confined console\ntimeouts:\n  job:\n    minutes: 2\n  action:\n    minutes: 1\nvisibility: public\n\
               actions:\n- boot:\n    method: minimal\n    reset: false\n    prompts:\n    - 'console-ready # '\n";
    let (mut basalt, out) = start(job, &device, tmp.path(), &tmp.path().join("tmp"));
    let code = wait(&mut basalt, Duration::from_secs(60));
    let log = log(&out);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("uid=65534 ifaces=lo,"), "{log}");
    assert!(!host.path("marker-console").exists(), "{log}");
    assert!(!log.contains("WROTE-HOST-FILE"), "{log}");
    assert!(!log.contains(SECRET), "the secret reached the log");
    assert!(log.contains("the job's processes run confined"), "{log}");
}

/// The job's context cannot turn the confinement off or grant the network: those variables
/// are the dictionary's.
#[test]
fn a_job_context_cannot_loosen_the_confinement() {
    let tmp = TempDir::new("context");
    let dict = tmp.path().join("d.jinja2");
    std::fs::write(&dict, "{% extends 'qemu.jinja2' %}\n").unwrap();
    let mut context = std::collections::BTreeMap::new();
    for (k, v) in [
        ("confinement", basalt::yaml::Node::str("false")),
        ("confinement_network", basalt::yaml::Node::str("true")),
    ] {
        context.insert(k.to_string(), v);
    }
    let d = basalt::device::Device::load(&dict, &[], &context).expect("renders");
    assert_eq!(
        d.confinement,
        basalt::device::DeviceConfinement::default(),
        "{}",
        d.text
    );
    std::fs::write(
        &dict,
        "{% extends 'qemu.jinja2' %}\n{% set confinement_network = true %}\n{% set confinement_groups = 'kvm' %}\n",
    )
    .unwrap();
    let d = basalt::device::Device::load(&dict, &[], &Default::default()).expect("renders");
    assert!(d.confinement.enabled && d.confinement.network, "{}", d.text);
    assert_eq!(d.confinement.groups, vec!["kvm".to_string()]);
}
