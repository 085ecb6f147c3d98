//! One job in a process of its own: `basalt run JOB --device DEVICE --output-dir DIR
//! --job-id ID --log-stdout` (a reservation's: `basalt hold --device DEVICE --output-dir DIR
//! --job-id ID --log-stdout --control SOCKET --lease-file FILE --console-listen ADDR:PORT
//! ...`, see [`crate::hold`]), in a new process group. Its stdout is the log, one `output.yaml`
//! record per line, numbered here from 1 as the dispatcher numbers them; its exit status says
//! Complete (0), Incomplete (1) or invalid input (2); `DIR/out/results.yaml` holds the results.
//! The process dies with the worker, whatever kills the worker.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// Why a job process could not be started or read.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("job {job_id}: {what}: {source}")]
    Io {
        job_id: u64,
        what: String,
        source: std::io::Error,
    },
}

/// What the master sent to run.
#[derive(Clone, Debug)]
pub struct JobSpec {
    pub job_id: u64,
    /// The job definition (LAVA YAML).
    pub definition: String,
    /// The rendered device (YAML).
    pub device: String,
    /// The job's directory on the worker (created; holds the job, the device and `out/`).
    pub dir: PathBuf,
    /// A MultiNode sub-job's coordinator ("HOST:PORT", from the Start): `--coordinator`.
    pub coordinator: Option<String>,
    /// Its token (from the Start): written to `coordinator.token` in the job's directory
    /// (mode 0600) for `--coordinator-token-file`, never on a command line.
    pub coordinator_token: Option<String>,
    /// A reservation: hold the board (`basalt hold`) instead of running a job.
    pub hold: Option<HoldSpec>,
}

/// What `basalt hold` is given for a lease.
#[derive(Clone)]
pub struct HoldSpec {
    /// The lease, written to `lease.json` in the job's directory (mode 0600): its tokens
    /// never go on a command line.
    pub lease: basalt_proto::Lease,
    /// Where the console listens.
    pub listen: std::net::SocketAddr,
    /// The console's host as the holder is told it.
    pub advertise_host: String,
    /// The console's ring buffer, in bytes.
    pub buffer: u64,
    /// A QEMU board's forwarded SSH port on 127.0.0.1 (`--ssh-forward`), from the same pool.
    pub ssh_forward: Option<u16>,
}

impl std::fmt::Debug for HoldSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HoldSpec")
            .field("reservation_id", &self.lease.reservation_id)
            .field("listen", &self.listen)
            .field("advertise_host", &self.advertise_host)
            .field("buffer", &self.buffer)
            .finish()
    }
}

/// The file in the job's directory that holds the coordinator's token.
const TOKEN_FILE: &str = "coordinator.token";

/// The arguments of `basalt` for `spec` (its job, device and output paths given): `run`,
/// the paths, the job id, `--coordinator` for a MultiNode sub-job, then the worker's `args`.
pub fn run_args(
    spec: &JobSpec,
    job: &Path,
    device: &Path,
    out: &Path,
    args: &[String],
) -> Vec<std::ffi::OsString> {
    if let Some(h) = &spec.hold {
        let mut v: Vec<std::ffi::OsString> = vec![
            "hold".into(),
            "--device".into(),
            device.into(),
            "--output-dir".into(),
            out.into(),
            "--job-id".into(),
            spec.job_id.to_string().into(),
            "--log-stdout".into(),
            "--control".into(),
            spec.dir.join(crate::hold::CONTROL_SOCKET).into(),
            "--lease-file".into(),
            spec.dir.join(crate::hold::LEASE_FILE).into(),
            "--console-listen".into(),
            h.listen.to_string().into(),
            "--advertise-host".into(),
            h.advertise_host.clone().into(),
            "--console-buffer".into(),
            h.buffer.to_string().into(),
        ];
        if let Some(p) = h.ssh_forward {
            v.push("--ssh-forward".into());
            v.push(p.to_string().into());
        }
        v.extend(args.iter().map(Into::into));
        return v;
    }
    let mut v: Vec<std::ffi::OsString> = vec![
        "run".into(),
        job.into(),
        "--device".into(),
        device.into(),
        "--output-dir".into(),
        out.into(),
        "--job-id".into(),
        spec.job_id.to_string().into(),
        "--log-stdout".into(),
    ];
    if let Some(c) = &spec.coordinator {
        v.push("--coordinator".into());
        v.push(c.into());
        if spec.coordinator_token.is_some() {
            v.push("--coordinator-token-file".into());
            v.push(spec.dir.join(TOKEN_FILE).into());
        }
    }
    v.extend(args.iter().map(Into::into));
    v
}

/// How the job's process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    Complete,
    Incomplete,
    /// The dispatcher refused the job or the device (exit 2).
    Invalid,
    /// The process died some other way (a signal, an unknown code): a crash of the job's
    /// process, an infrastructure error for the master.
    Crashed(String),
}

/// A job's end: its exit, its results and what it said on stderr.
#[derive(Clone, Debug)]
pub struct JobEnd {
    pub exit: Exit,
    /// `results.yaml`, as written (empty if there is none).
    pub results: String,
    /// The end of its stderr (the dispatcher's errors).
    pub stderr: String,
    /// Its log's last record of the job's own result (`lava`/`job`, with the error and its
    /// cause when it did not complete), as the line it wrote.
    pub job_result: Option<String>,
}

/// Most of a job process's stderr kept.
const STDERR_KEEP: usize = 16 * 1024;

/// A running job.
pub struct JobProcess {
    job_id: u64,
    child: Child,
    lines: Option<tokio::io::Lines<BufReader<ChildStdout>>>,
    stderr: Option<tokio::task::JoinHandle<String>>,
    seq: u64,
    out: PathBuf,
    job_result: Option<String>,
}

impl JobProcess {
    /// Writes the job and the device into `spec.dir` and starts `basalt` on them, with
    /// `args` (the worker's `--tftp-root`, `--server-ip`, limits ...) after its own.
    pub fn start(basalt: &Path, spec: &JobSpec, args: &[String]) -> Result<JobProcess, JobError> {
        let io = |what: &str| {
            let what = what.to_string();
            move |source| JobError::Io {
                job_id: spec.job_id,
                what,
                source,
            }
        };
        std::fs::create_dir_all(&spec.dir).map_err(io("job directory"))?;
        let job = spec.dir.join("job.yaml");
        let device = spec.dir.join("device.yaml");
        let out = spec.dir.join("out");
        std::fs::write(&job, &spec.definition).map_err(io("job.yaml"))?;
        std::fs::write(&device, &spec.device).map_err(io("device.yaml"))?;
        if let Some(token) = &spec.coordinator_token {
            write_private(&spec.dir.join(TOKEN_FILE), token.as_bytes()).map_err(io(TOKEN_FILE))?;
        }
        if let Some(h) = &spec.hold {
            let lease = serde_json::to_vec(&h.lease).map_err(|e| JobError::Io {
                job_id: spec.job_id,
                what: crate::hold::LEASE_FILE.into(),
                source: std::io::Error::other(e),
            })?;
            write_private(&spec.dir.join(crate::hold::LEASE_FILE), &lease)
                .map_err(io(crate::hold::LEASE_FILE))?;
        }
        let mut cmd = Command::new(basalt);
        cmd.args(run_args(spec, &job, &device, &out, args))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // its own group: a cancel reaches everything the job started
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(io(&format!("starting {}", basalt.display())))?;
        let lines = child.stdout.take().map(|s| BufReader::new(s).lines());
        let stderr = child.stderr.take().map(|mut e| {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = e.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.len() > 2 * STDERR_KEEP {
                        buf.drain(..buf.len() - STDERR_KEEP);
                    }
                }
                let from = buf.len().saturating_sub(STDERR_KEEP);
                String::from_utf8_lossy(&buf[from..]).into_owned()
            })
        });
        Ok(JobProcess {
            job_id: spec.job_id,
            child,
            lines,
            stderr,
            seq: 0,
            job_result: None,
            out,
        })
    }

    /// The job id.
    pub fn id(&self) -> u64 {
        self.job_id
    }

    /// The process id (its process group's id too), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The next record of the log, with its sequence number; `None` once the process closed
    /// its stdout (it ended). A last line cut short by the process dying is dropped.
    pub async fn next_record(&mut self) -> Option<(u64, String)> {
        let lines = self.lines.as_mut()?;
        match lines.next_line().await {
            Ok(Some(line)) => {
                self.seq += 1;
                if line.contains("\"lvl\": \"results\"") && line.contains("\"case\": \"job\"") {
                    self.job_result = Some(line.clone());
                }
                Some((self.seq, line))
            }
            _ => {
                self.lines = None;
                None
            }
        }
    }

    /// Asks the job to stop (SIGTERM to its process group: the dispatcher finalizes and
    /// powers the board off), then kills the group after `grace`.
    pub async fn cancel(&mut self, grace: Duration) {
        use nix::sys::signal::{killpg, Signal};
        use nix::unistd::Pid;
        let Some(pid) = self.child.id() else {
            return;
        };
        let group = Pid::from_raw(pid as i32);
        let _ = killpg(group, Signal::SIGTERM);
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }

    /// Waits for the process to end (after its log: read the records first) and collects
    /// its end.
    pub async fn wait(mut self) -> Result<JobEnd, JobError> {
        // drain what is left of the log so the process is not blocked writing it
        while self.next_record().await.is_some() {}
        let pid = self.child.id();
        let status = self.child.wait().await.map_err(|source| JobError::Io {
            job_id: self.job_id,
            what: "waiting for the job's process".into(),
            source,
        })?;
        // anything the job left in its group dies with it
        if let Some(pid) = pid {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let stderr = match self.stderr.take() {
            Some(h) => h.await.unwrap_or_default(),
            None => String::new(),
        };
        let results = std::fs::read_to_string(self.out.join("results.yaml")).unwrap_or_default();
        Ok(JobEnd {
            exit: exit_of(status),
            results,
            stderr,
            job_result: self.job_result.take(),
        })
    }
}

/// Writes a secret file readable by the worker's user only (made 0600 before anything is in
/// it).
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // a file left from before keeps its mode: make it private first
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(data)
}

fn exit_of(status: ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match status.code() {
        Some(0) => Exit::Complete,
        Some(1) => Exit::Incomplete,
        Some(2) => Exit::Invalid,
        Some(c) => Exit::Crashed(format!("exit code {c}")),
        None => Exit::Crashed(match status.signal() {
            Some(s) => format!("killed by signal {s}"),
            None => "ended without a status".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(coordinator: Option<&str>) -> JobSpec {
        JobSpec {
            job_id: 124,
            definition: String::new(),
            device: String::new(),
            dir: PathBuf::from("/w/job-124"),
            coordinator: coordinator.map(str::to_string),
            coordinator_token: None,
            hold: None,
        }
    }

    fn args(spec: &JobSpec) -> Vec<String> {
        run_args(
            spec,
            Path::new("/w/job.yaml"),
            Path::new("/w/device.yaml"),
            Path::new("/w/out"),
            &["--tftp-root".into(), "/t".into()],
        )
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
    }

    #[test]
    fn a_multinode_sub_job_gets_its_coordinator() {
        let a = args(&spec(Some("10.0.0.1:3079")));
        assert_eq!(
            a,
            [
                "run",
                "/w/job.yaml",
                "--device",
                "/w/device.yaml",
                "--output-dir",
                "/w/out",
                "--job-id",
                "124",
                "--log-stdout",
                "--coordinator",
                "10.0.0.1:3079",
                "--tftp-root",
                "/t"
            ]
        );
        let single = args(&spec(None));
        assert!(!single.iter().any(|a| a == "--coordinator"), "{single:?}");
        assert_eq!(single.len(), 11);
    }

    #[tokio::test]
    async fn a_coordinator_token_goes_in_a_private_file_not_on_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let spec = JobSpec {
            dir: dir.path().join("job-124"),
            coordinator_token: Some("s3cret".into()),
            ..spec(Some("10.0.0.1:3079"))
        };
        let a = args(&spec);
        assert!(!a.iter().any(|x| x.contains("s3cret")), "{a:?}");
        let file = spec.dir.join(TOKEN_FILE);
        let at = a
            .iter()
            .position(|x| x == "--coordinator-token-file")
            .unwrap();
        assert_eq!(a[at + 1], file.to_string_lossy());
        // the true binary: it starts and the file is written before it runs
        let _job = JobProcess::start(Path::new("/bin/true"), &spec, &[]).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "s3cret");
    }

    #[tokio::test]
    async fn a_hold_gets_its_lease_in_a_private_file_and_its_console_port() {
        let dir = tempfile::tempdir().unwrap();
        let spec = JobSpec {
            dir: dir.path().join("job-41"),
            hold: Some(HoldSpec {
                lease: basalt_proto::Lease {
                    reservation_id: 41,
                    console_token: "tok-console".into(),
                    watch_token: "tok-watch".into(),
                    ssh_public_key: None,
                    ssh_user: None,
                    forward_ssh: false,
                },
                listen: "127.0.0.1:7105".parse().unwrap(),
                advertise_host: "rack-1.lab".into(),
                buffer: 1 << 20,
                ssh_forward: Some(7106),
            }),
            ..spec(None)
        };
        let a = args(&spec);
        assert_eq!(a[0], "hold");
        assert!(!a.iter().any(|x| x.contains("tok-")), "{a:?}");
        let after = |flag: &str| a[a.iter().position(|x| x == flag).unwrap() + 1].clone();
        assert_eq!(after("--console-listen"), "127.0.0.1:7105");
        assert_eq!(after("--ssh-forward"), "7106");
        assert_eq!(after("--advertise-host"), "rack-1.lab");
        assert_eq!(after("--console-buffer"), "1048576");
        assert_eq!(after("--job-id"), "124");
        assert!(a.contains(&"--log-stdout".to_string()));
        assert_eq!(a[a.len() - 2..], ["--tftp-root", "/t"]);
        let lease = spec.dir.join(crate::hold::LEASE_FILE);
        assert_eq!(after("--lease-file"), lease.to_string_lossy());
        let _job = JobProcess::start(Path::new("/bin/true"), &spec, &[]).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&lease).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let back: basalt_proto::Lease =
            serde_json::from_str(&std::fs::read_to_string(&lease).unwrap()).unwrap();
        assert_eq!(back.console_token, "tok-console");
    }
}
