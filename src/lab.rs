//! A lab on this machine, from basalt's binaries: `basalt-master` (SQLite store), workers
//! (`basalt-worker`, each serving its TFTP root with basalt's own server, `--tftp-listen`),
//! `basalt-board` devices whose U-Boot fetches from their worker's TFTP server, and QEMU
//! devices, all registered through the master's REST API as an admin would. It is what
//! `basalt demo` runs and what the lab's tests and benchmarks start. Every process it starts is
//! stopped (by its PID) when the [`LocalLab`] is dropped, on every path.

use crate::client::{Client, ClientError};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why the lab could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Api(#[from] ClientError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Io { what, source }
}

/// A worker of the lab and the devices it serves.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    pub name: String,
    /// `basalt-board` devices (`NAME-board-N`, device type `basalt-board`).
    pub boards: usize,
    /// QEMU devices (`NAME-qemu-N`, device type `qemu`).
    pub qemu: usize,
    /// How this worker is started, when not as [`Spec::bin_dir`]'s `basalt-worker` running
    /// its jobs with that `basalt` (e.g. binaries of another architecture under qemu-user).
    pub command: Option<WorkerCommand>,
}

/// Another build of the worker: its command line, before the worker's own arguments, and
/// the `basalt` it runs each job with (`basalt-worker --basalt`).
#[derive(Clone, Debug)]
pub struct WorkerCommand {
    /// The program and its first arguments, e.g. `qemu-aarch64-static -L SYSROOT
    /// .../aarch64-unknown-linux-gnu/debug/basalt-worker`.
    pub command: Vec<std::ffi::OsString>,
    /// An executable the worker starts as it would start `basalt` (a script that runs an
    /// arm64 `basalt` through qemu-user, say).
    pub basalt: PathBuf,
}

impl WorkerCommand {
    /// A worker built for another architecture, run by qemu-user without binfmt_misc:
    /// `QEMU -L SYSROOT BIN_DIR/basalt-worker` (`qemu` e.g. `qemu-aarch64-static`; the
    /// sysroot has the target's loader and libraries), and for its jobs a script
    /// `script_dir/basalt` that runs `BIN_DIR/basalt` the same way, its arguments passed on.
    pub fn qemu_user(
        qemu: &Path,
        sysroot: &Path,
        bin_dir: &Path,
        script_dir: &Path,
    ) -> Result<WorkerCommand, LabError> {
        use std::os::unix::fs::PermissionsExt;
        let script = script_dir.join("basalt");
        let text = format!(
            "#!/bin/sh\nexec {} -L {} {} \"$@\"\n",
            quoted(qemu)?,
            quoted(sysroot)?,
            quoted(&bin_dir.join("basalt"))?
        );
        std::fs::create_dir_all(script_dir)
            .map_err(io(format!("creating {}", script_dir.display())))?;
        std::fs::write(&script, text).map_err(io(format!("writing {}", script.display())))?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .map_err(io(format!("chmod {}", script.display())))?;
        Ok(WorkerCommand {
            command: vec![
                qemu.into(),
                "-L".into(),
                sysroot.into(),
                bin_dir.join("basalt-worker").into(),
            ],
            basalt: script,
        })
    }
}

/// The arm64 build of `scripts/build-arm64.sh`, its sysroot and qemu-user: what runs an arm64
/// worker on this (x86) host.
#[derive(Clone, Debug)]
pub struct Arm64Build {
    /// `basalt-worker` and `basalt` for arm64: `BASALT_ARM64_BIN_DIR`, else
    /// `target/aarch64-unknown-linux-gnu/PROFILE` beside the host's `target/PROFILE`.
    pub bin_dir: PathBuf,
    /// The arm64 loader and libraries: `BASALT_ARM64_SYSROOT`, else
    /// `/var/cache/basalt/arm64-sysroot` (made by `scripts/install-deps.sh`).
    pub sysroot: PathBuf,
    /// `qemu-aarch64-static`, from PATH.
    pub qemu: Option<PathBuf>,
}

impl Arm64Build {
    /// Where they are, for the host's binaries in `host_bin_dir` (`target/debug` or
    /// `target/release`: the arm64 build of the same profile).
    pub fn locate(host_bin_dir: &Path) -> Arm64Build {
        let bin_dir = std::env::var_os("BASALT_ARM64_BIN_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let profile = host_bin_dir.file_name().unwrap_or_default();
                host_bin_dir
                    .parent()
                    .unwrap_or(host_bin_dir)
                    .join("aarch64-unknown-linux-gnu")
                    .join(profile)
            });
        let sysroot = std::env::var_os("BASALT_ARM64_SYSROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/basalt/arm64-sysroot"));
        let qemu = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("qemu-aarch64-static"))
                .find(|p| p.is_file())
        });
        Arm64Build {
            bin_dir,
            sysroot,
            qemu,
        }
    }

    /// What is missing to run it, each with what makes it; empty when nothing is.
    pub fn missing(&self) -> Vec<String> {
        let mut missing = Vec::new();
        if self.qemu.is_none() {
            missing.push("qemu-aarch64-static in PATH (scripts/install-deps.sh)".to_string());
        }
        if !self.sysroot.join("lib/ld-linux-aarch64.so.1").exists() {
            missing.push(format!(
                "the arm64 sysroot {} (scripts/install-deps.sh)",
                self.sysroot.display()
            ));
        }
        for b in ["basalt-worker", "basalt"] {
            let p = self.bin_dir.join(b);
            if !p.is_file() {
                missing.push(format!("{} (scripts/build-arm64.sh)", p.display()));
            }
        }
        missing
    }

    /// The arm64 worker under qemu-user ([`WorkerCommand::qemu_user`], its script in
    /// `script_dir`).
    pub fn worker_command(&self, script_dir: &Path) -> Result<WorkerCommand, LabError> {
        let qemu = self
            .qemu
            .as_deref()
            .ok_or_else(|| LabError::Setup("qemu-aarch64-static is not in PATH".into()))?;
        WorkerCommand::qemu_user(qemu, &self.sysroot, &self.bin_dir, script_dir)
    }
}

/// What to set up.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Where everything goes: `master/`, `workers/NAME/` (with its `tftp/` root), `boards/`,
    /// `logs/`.
    pub dir: PathBuf,
    /// Where `basalt`, `basalt-master`, `basalt-worker` and `basalt-board` are.
    pub bin_dir: PathBuf,
    /// The kernel and initramfs of `hw-tests/build-fixtures.sh`.
    pub fixtures: PathBuf,
    pub workers: Vec<WorkerSpec>,
    pub heartbeat_secs: u32,
    /// The boards' U-Boot `bootdelay` (seconds).
    pub bootdelay: u32,
    /// The workers keep each job's directory (`worker_dir(NAME)/state/job-ID/`).
    pub keep_job_dirs: bool,
    /// The master publishes LAVA's events on a port of its choosing ([`LocalLab::events`]).
    pub events: bool,
    /// The master serves reads without a token (`basalt-master --anonymous-read`; off: every
    /// API request but the version needs one, as [`LocalLab::client`] sends).
    pub anonymous_read: bool,
    /// An external MultiNode coordinator ("HOST:PORT", e.g. a `basalt coordinator` or LAVA's
    /// lava-coordinator): the master runs none of its own (`--no-coordinator`) and gives this
    /// one to its workers. `None`: the master's own, on a free port.
    pub coordinator: Option<String>,
}

/// A device of the lab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabDevice {
    pub hostname: String,
    pub device_type: String,
    pub worker: String,
}

/// A process of the lab: stopped with SIGTERM (SIGKILL after 5 s) and reaped when dropped.
struct Daemon {
    name: String,
    child: Child,
}

impl Daemon {
    fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Result<Daemon, LabError> {
        let out = std::fs::File::create(log).map_err(io(format!("creating {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(io(format!("opening {}", log.display())))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io(format!("starting {name}")))?;
        Ok(Daemon {
            name: name.to_string(),
            child,
        })
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Whether it is still running (an exited daemon is reaped).
    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn stop(&mut self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.pid());
        if !self.running() {
            return;
        }
        let _ = nix::sys::signal::kill(pid, signal);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !self.running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop(nix::sys::signal::Signal::SIGTERM);
    }
}

/// The running lab.
pub struct LocalLab {
    spec: Spec,
    /// `http://127.0.0.1:PORT` (the API is under `/api/v0.2/`).
    pub url: String,
    /// An admin token.
    pub token: String,
    pub devices: Vec<LabDevice>,
    http: u16,
    workers_port: u16,
    /// The master's MultiNode coordinator (`--coordinator 127.0.0.1:PORT`).
    coordinator_port: u16,
    // dropped in this order: workers (their jobs end, their TFTP servers stop), the master, boards
    workers: Vec<Daemon>,
    master: Option<Daemon>,
    boards: Vec<Daemon>,
    /// The UDP port of each worker's own TFTP server (`--tftp-listen`), for its boards.
    tftp_ports: std::collections::BTreeMap<String, u16>,
}

fn free_tcp_port() -> Result<u16, LabError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io("choosing a TCP port"))
}

fn free_udp_port() -> Result<u16, LabError> {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(io("choosing a UDP port"))
}

/// Waits for `cond` until `deadline`; `what` says what did not happen.
fn wait_for(
    what: &str,
    within: Duration,
    mut cond: impl FnMut() -> Result<bool, LabError>,
) -> Result<(), LabError> {
    let deadline = Instant::now() + within;
    loop {
        if cond()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(LabError::Setup(format!("{what} within {within:?}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A path for a command line (a device dictionary's, split with shell-words, or a `sh`
/// script's): quoted.
fn quoted(p: &Path) -> Result<String, LabError> {
    let s = p.to_str().ok_or_else(|| {
        LabError::Setup(format!(
            "{} is not UTF-8: cannot name it in a command line",
            p.display()
        ))
    })?;
    if s.contains('\'') {
        return Err(LabError::Setup(format!(
            "{s} contains a quote: cannot name it in a command line"
        )));
    }
    Ok(shell_words::quote(s).into_owned())
}

impl LocalLab {
    /// Starts the master and the boards, registers workers and devices, starts the workers
    /// (with their TFTP servers) and waits until they are online.
    pub fn start(spec: Spec) -> Result<LocalLab, LabError> {
        let host_worker = spec.workers.iter().any(|w| w.command.is_none());
        let bins = ["basalt", "basalt-master", "basalt-board"]
            .into_iter()
            .chain(host_worker.then_some("basalt-worker"));
        for bin in bins {
            let b = spec.bin_dir.join(bin);
            if !b.is_file() {
                return Err(LabError::Setup(format!(
                    "{} is missing: build it (cargo build --release --workspace)",
                    b.display()
                )));
            }
        }
        for d in ["master", "workers", "boards", "logs"] {
            let p = spec.dir.join(d);
            std::fs::create_dir_all(&p).map_err(io(format!("creating {}", p.display())))?;
        }
        let mut lab = LocalLab {
            url: String::new(),
            token: String::new(),
            devices: Vec::new(),
            http: free_tcp_port()?,
            workers_port: free_tcp_port()?,
            coordinator_port: free_tcp_port()?,
            workers: Vec::new(),
            master: None,
            boards: Vec::new(),
            tftp_ports: std::collections::BTreeMap::new(),
            spec,
        };
        lab.url = format!("http://127.0.0.1:{}", lab.http);
        lab.start_master()?;
        lab.token = lab.add_token("admin", true)?;
        let boards: usize = lab.spec.workers.iter().map(|w| w.boards).sum();
        // each worker with boards serves its own TFTP root with basalt's server
        for w in &lab.spec.workers {
            if w.boards > 0 {
                lab.tftp_ports.insert(w.name.clone(), free_udp_port()?);
            }
        }
        let client = lab.client();
        let post = |path: &str, body: serde_json::Value| client.post(path, &body).map(|_| ());
        if boards > 0 {
            post("devicetypes/", serde_json::json!({"name": "basalt-board"}))?;
        }
        if lab.spec.workers.iter().any(|w| w.qemu > 0) {
            post("devicetypes/", serde_json::json!({"name": "qemu"}))?;
        }
        for w in lab.spec.workers.clone() {
            post("workers/", serde_json::json!({"hostname": w.name}))?;
            for i in 1..=w.qemu {
                let hostname = format!("{}-qemu-{i}", w.name);
                lab.add_device(
                    &hostname,
                    "qemu",
                    &w.name,
                    crate::device::builtin::LAB_QEMU_DEVICE,
                )?;
            }
            for i in 1..=w.boards {
                let hostname = format!("{}-board-{i}", w.name);
                let port = lab.tftp_ports.get(&w.name).copied().unwrap_or(0);
                let dictionary = lab.start_board(&hostname, port)?;
                lab.add_device(&hostname, "basalt-board", &w.name, &dictionary)?;
            }
        }
        for w in lab.spec.workers.clone() {
            lab.start_worker(&w.name)?;
        }
        let names: Vec<String> = lab.spec.workers.iter().map(|w| w.name.clone()).collect();
        wait_for(
            "the workers did not come online",
            Duration::from_secs(30),
            || {
                let online = client
                    .list("workers/")?
                    .iter()
                    .filter(|w| w.get("state").and_then(|s| s.as_str()) == Some("Online"))
                    .filter_map(|w| w.get("hostname").and_then(|h| h.as_str()).map(String::from))
                    .collect::<Vec<_>>();
                Ok(names.iter().all(|n| online.contains(n)))
            },
        )?;
        Ok(lab)
    }

    /// The master's URL (`http://127.0.0.1:PORT`) and the admin token, for `basalt ... --url
    /// URL --token TOKEN`.
    pub fn url_and_token(&self) -> (&str, &str) {
        (&self.url, &self.token)
    }

    /// A client of the master's API with the admin token.
    pub fn client(&self) -> Client {
        Client::new(&self.url, Some(self.token.clone()))
    }

    /// The master's state directory (its store, keys and logs).
    pub fn master_dir(&self) -> PathBuf {
        self.spec.dir.join("master")
    }

    /// A worker's directory: its keys, and `state/` with each job's directory.
    pub fn worker_dir(&self, name: &str) -> PathBuf {
        self.spec.dir.join("workers").join(name)
    }

    /// The output directory of job `id` on `worker` (`output.yaml`, `results.yaml`; kept after
    /// the job with [`Spec::keep_job_dirs`]).
    pub fn job_output_dir(&self, worker: &str, id: u64) -> PathBuf {
        self.worker_dir(worker)
            .join("state")
            .join(format!("job-{id}"))
            .join("out")
    }

    /// Where the daemons' output goes (`master.log`, `worker-NAME.log`, `board-NAME.log`).
    pub fn logs_dir(&self) -> PathBuf {
        self.spec.dir.join("logs")
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.spec.bin_dir.join(name)
    }

    /// Starts (or starts again) the master on the lab's ports and waits for its API.
    pub fn start_master(&mut self) -> Result<(), LabError> {
        let log = self.logs_dir().join("master.log");
        // a restarted master's output follows its predecessor's
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io(format!("opening {}", log.display())))?;
        let err = out.try_clone().map_err(io("master.log"))?;
        let child = Command::new(self.bin("basalt-master"))
            .arg("--state-dir")
            .arg(self.master_dir())
            .args(["--http", &format!("127.0.0.1:{}", self.http)])
            .args([
                "--workers",
                &format!("tcp://127.0.0.1:{}", self.workers_port),
            ])
            .args(["--heartbeat-secs", &self.spec.heartbeat_secs.to_string()])
            .args(match &self.spec.coordinator {
                Some(external) => vec![
                    "--no-coordinator".to_string(),
                    "--coordinator-public".into(),
                    external.clone(),
                ],
                None => vec![
                    "--coordinator".into(),
                    format!("127.0.0.1:{}", self.coordinator_port),
                ],
            })
            .args(
                self.spec
                    .events
                    .then_some(["--events", "tcp://127.0.0.1:*"])
                    .into_iter()
                    .flatten(),
            )
            .args(self.spec.anonymous_read.then_some("--anonymous-read"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io("starting basalt-master"))?;
        self.master = Some(Daemon {
            name: "basalt-master".into(),
            child,
        });
        let version = format!("{}/api/v0.2/system/version/", self.url);
        let master = &mut self.master;
        wait_for(
            "basalt-master did not answer",
            Duration::from_secs(20),
            || {
                if !master.as_mut().is_some_and(Daemon::running) {
                    return Err(LabError::Setup(format!(
                        "basalt-master exited: see {}",
                        log.display()
                    )));
                }
                Ok(ureq::get(&version).call().is_ok())
            },
        )
    }

    /// The endpoint of the master's events (`tcp://127.0.0.1:PORT`), when the lab has them:
    /// what the running master said in its log.
    pub fn events(&self) -> Option<String> {
        let log = std::fs::read_to_string(self.logs_dir().join("master.log")).ok()?;
        log.lines()
            .rev()
            .find_map(|l| l.split_once(": events on ").map(|(_, e)| e))
            .map(|e| e.trim().to_string())
    }

    /// Sets a fault on the `basalt-board` device `hostname` through its control socket
    /// (`hang-at autoboot`, `panic`, `drop-console 10`, `none`: basalt-board's `fault.rs`).
    pub fn board_fault(&self, hostname: &str, fault: &str) -> Result<(), LabError> {
        let control = self
            .spec
            .dir
            .join("boards")
            .join(hostname)
            .join("control.sock");
        let out = Command::new(self.bin("basalt-board"))
            .arg("ctl")
            .arg("--control")
            .arg(&control)
            .args(["fault", fault])
            .output()
            .map_err(io("running basalt-board ctl"))?;
        if !out.status.success() {
            return Err(LabError::Setup(format!(
                "basalt-board ctl fault {fault} on {hostname}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Kills the master with SIGKILL (a crash), leaving its state directory as it was.
    pub fn kill_master(&mut self) {
        if let Some(mut m) = self.master.take() {
            m.stop(nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// The master's PID, while it runs.
    pub fn master_pid(&self) -> Option<i32> {
        self.master.as_ref().map(Daemon::pid)
    }

    /// A worker's PID.
    pub fn worker_pid(&self, name: &str) -> Option<i32> {
        self.workers
            .iter()
            .find(|d| d.name == name)
            .map(Daemon::pid)
    }

    /// Kills a worker with SIGKILL (a crash).
    pub fn kill_worker(&mut self, name: &str) {
        if let Some(i) = self.workers.iter().position(|d| d.name == name) {
            let mut w = self.workers.remove(i);
            w.stop(nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// A new API token of `user` (`basalt-master token add`).
    pub fn add_token(&self, user: &str, admin: bool) -> Result<String, LabError> {
        let mut cmd = Command::new(self.bin("basalt-master"));
        cmd.arg("--state-dir")
            .arg(self.master_dir())
            .args(["token", "add", user]);
        if admin {
            cmd.arg("--admin");
        }
        let out = cmd.output().map_err(io("basalt-master token add"))?;
        if !out.status.success() {
            return Err(LabError::Setup(format!(
                "basalt-master token add: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Starts a `basalt-board` and returns its device dictionary.
    fn start_board(&mut self, hostname: &str, tftp_port: u16) -> Result<String, LabError> {
        let dir = self.spec.dir.join("boards").join(hostname);
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let control = dir.join("control.sock");
        let log = self.logs_dir().join(format!("board-{hostname}.log"));
        let board = self.bin("basalt-board");
        let mut d = Daemon::spawn(
            hostname,
            Command::new(&board)
                .args(["--telnet", "0", "--tftp-port", &tftp_port.to_string()])
                .args(["--bootdelay", &self.spec.bootdelay.to_string(), "--control"])
                .arg(&control),
            &log,
        )?;
        let mut addr = None;
        wait_for(
            &format!("basalt-board {hostname} did not get ready"),
            Duration::from_secs(20),
            || {
                if !d.running() {
                    return Err(LabError::Setup(format!(
                        "basalt-board {hostname} exited: see {}",
                        log.display()
                    )));
                }
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                for line in text.lines() {
                    if let Some(a) = line.strip_prefix("basalt-board: console telnet ") {
                        addr = a.trim().parse::<std::net::SocketAddr>().ok();
                    }
                }
                Ok(addr.is_some() && text.lines().any(|l| l == "basalt-board: ready"))
            },
        )?;
        self.boards.push(d);
        let addr = addr.ok_or_else(|| LabError::Setup("no console address".into()))?;
        let ctl = |op: &str| -> Result<String, LabError> {
            Ok(format!(
                "{} ctl --control {} {op}",
                quoted(&board)?,
                quoted(&control)?
            ))
        };
        Ok(format!(
            "{{% extends 'basalt-board.jinja2' %}}\n\
             {{% set connection_command = 'telnet {} {}' %}}\n\
             {{% set power_on_command = '{}' %}}\n\
             {{% set power_off_command = '{}' %}}\n\
             {{% set hard_reset_command = '{}' %}}\n",
            addr.ip(),
            addr.port(),
            ctl("on")?,
            ctl("off")?,
            ctl("reset")?
        ))
    }

    fn add_device(
        &mut self,
        hostname: &str,
        device_type: &str,
        worker: &str,
        dictionary: &str,
    ) -> Result<(), LabError> {
        let c = self.client();
        c.post(
            "devices/",
            // Unknown, not LAVA's default Maintenance: in service at once, after a health
            // check when its type has one
            &serde_json::json!({"hostname": hostname, "device_type": device_type,
                                "worker_host": worker, "health": "Unknown"}),
        )?;
        c.post(
            &format!("devices/{hostname}/dictionary/"),
            &serde_json::json!({ "dictionary": dictionary }),
        )?;
        self.devices.push(LabDevice {
            hostname: hostname.into(),
            device_type: device_type.into(),
            worker: worker.into(),
        });
        Ok(())
    }

    /// Makes the worker's key, admits it and starts the worker.
    pub fn start_worker(&mut self, name: &str) -> Result<(), LabError> {
        let dir = self.worker_dir(name);
        let key = dir.join(format!("{name}.key_secret"));
        if !key.is_file() {
            let pair = basalt_link::cert::Keypair::generate();
            pair.write(&dir, name)
                .map_err(|e| LabError::Setup(format!("worker {name}'s key: {e}")))?;
            let public = dir.join(format!("{name}.key"));
            let admitted = self.master_dir().join("certs/workers");
            std::fs::create_dir_all(&admitted).map_err(io("certs/workers"))?;
            std::fs::copy(&public, admitted.join(format!("{name}.key")))
                .map_err(io(format!("admitting {}", public.display())))?;
        }
        let log = self.logs_dir().join(format!("worker-{name}.log"));
        let tftp_root = dir.join("tftp");
        std::fs::create_dir_all(&tftp_root)
            .map_err(io(format!("creating {}", tftp_root.display())))?;
        let custom = self
            .spec
            .workers
            .iter()
            .find(|w| w.name == name)
            .and_then(|w| w.command.clone());
        let (mut cmd, basalt) = match custom {
            Some(WorkerCommand { command, basalt }) => {
                let (program, args) = command.split_first().ok_or_else(|| {
                    LabError::Setup(format!("worker {name}: an empty worker command"))
                })?;
                let mut cmd = Command::new(program);
                cmd.args(args);
                (cmd, basalt)
            }
            None => (Command::new(self.bin("basalt-worker")), self.bin("basalt")),
        };
        let d = Daemon::spawn(
            name,
            cmd.args(["--name", name])
                .args([
                    "--master",
                    &format!("tcp://127.0.0.1:{}", self.workers_port),
                ])
                .arg("--master-key")
                .arg(self.master_dir().join("certs/master.key"))
                .arg("--key")
                .arg(&key)
                .arg("--state-dir")
                .arg(dir.join("state"))
                .arg("--basalt")
                .arg(basalt)
                .arg("--tftp-root")
                .arg(&tftp_root)
                .args(
                    self.tftp_ports
                        .get(name)
                        .map(|p| ["--tftp-listen".to_string(), format!("127.0.0.1:{p}")])
                        .into_iter()
                        .flatten(),
                )
                .args(["--server-ip", "127.0.0.1"])
                .args(self.spec.keep_job_dirs.then_some("--keep-job-dirs")),
            &log,
        )?;
        self.workers.push(d);
        Ok(())
    }

    /// The QEMU demo job (`config/jobs/demo-qemu.yaml`) on the fixtures.
    pub fn qemu_job(&self) -> String {
        let f = &self.spec.fixtures;
        crate::device::builtin::DEMO_JOB
            .replace("@KERNEL@", &f.join("amd64/vmlinux").to_string_lossy())
            .replace(
                "@INITRD@",
                &f.join("amd64/initramfs.cpio.gz").to_string_lossy(),
            )
    }

    /// The `basalt-board` demo job (`config/jobs/demo-board.yaml`) on the fixtures' initramfs,
    /// with a stand-in kernel and device tree (the board boots the initramfs itself).
    pub fn board_job(&self) -> Result<String, LabError> {
        let dir = self.spec.dir.join("boards");
        let kernel = dir.join("Image");
        let dtb = dir.join("board.dtb");
        if !kernel.is_file() {
            std::fs::write(&kernel, vec![0u8; 4096]).map_err(io("writing the kernel"))?;
            std::fs::write(&dtb, vec![0xd0u8; 1024]).map_err(io("writing the dtb"))?;
        }
        Ok(crate::device::builtin::DEMO_BOARD_JOB
            .replace("@KERNEL@", &kernel.to_string_lossy())
            .replace(
                "@INITRD@",
                &self
                    .spec
                    .fixtures
                    .join("amd64/initramfs.cpio.gz")
                    .to_string_lossy(),
            )
            .replace("@DTB@", &dtb.to_string_lossy()))
    }
}
