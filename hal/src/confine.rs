//! Confinement of the processes a job starts: QEMU, git, a `connection_command`.
//!
//! A job file is untrusted; the device dictionary is the lab admin's. Every program basalt
//! starts *for a job* runs under a [`Policy::Confined`], every command of the admin (power
//! commands, `pre_power_command` ...) under [`Policy::Supervised`]. Both are started by
//! [`spawn`] and die with basalt.
//!
//! # What a confined process gets (basalt running as root)
//!
//! | what | how |
//! | --- | --- |
//! | an unprivileged user | `setgroups` / `setresgid` / `setresuid` to the [`JobUser`] (default `nobody`), after which it has no capability; `PR_SET_NO_NEW_PRIVS`, and every mount `nosuid`, so no setuid program gives them back |
//! | a read-only host | a private mount namespace (`CLONE_NEWNS`, every mount `MS_PRIVATE`), all mounts made read-only and `nosuid` at once (`mount_setattr(AT_RECURSIVE)`) |
//! | its own writable directories only | each writable directory (the job's directory, a clone's destination) is a clone of its mount (`open_tree(OPEN_TREE_CLONE)`) taken before the host is made read-only and attached back at its path (`move_mount`): read-write, `nosuid`, `nodev`; basalt gives its files to the job user first ([`chown_tree`], which never follows a link) |
//! | a private `/tmp` and `/dev/shm` | fresh `tmpfs` mounts (64 MiB each): the host's temporary files, other jobs' directories and basalt's own are not there; `TMPDIR` is the first writable directory, `HOME` is `/tmp` |
//! | hidden directories | [`Confinement::hide`] covers a directory with an empty `tmpfs` (the parent of the job directories, when it is not below `/tmp`) |
//! | no network | a network namespace of its own (`CLONE_NEWNET`: only a `lo` that is down) unless the policy allows the network ([`Confinement::network`]) |
//! | no view of the host's processes | a PID namespace (`CLONE_NEWPID`) with its own `/proc`, and a private System V IPC namespace (`CLONE_NEWIPC`) |
//! | no terminal | a session of its own (`setsid`): it cannot reach the terminal basalt was started from (`TIOCSTI`) |
//! | nothing of basalt's | every descriptor basalt holds is close-on-exec: the program inherits its stdin, stdout and stderr only; of basalt's environment only [`KEPT_ENVIRONMENT`] (and what the caller set) |
//!
//! # Dying with basalt: a supervisor and PID 1
//!
//! `PR_SET_PDEATHSIG` fires when the parent *thread* exits, and tokio may spawn from a thread
//! that does not live as long as the process. So every process is forked from one dedicated
//! thread that lives as long as basalt (the spawner thread, below) and a confined program is
//! started in two steps:
//!
//! ```text
//! basalt (spawner thread)
//!   └─ supervisor   fork of basalt: PR_SET_PDEATHSIG(SIGKILL), sets up the namespaces, never execs
//!        └─ program   PID 1 of the new PID namespace: PR_SET_PDEATHSIG(SIGKILL), then exec
//!             └─ anything the program starts, daemonised or not
//! ```
//!
//! If basalt dies (even `kill -9`) the kernel kills the supervisor, which kills the program,
//! and when the PID 1 of a namespace dies the kernel kills every process in it: nothing the job
//! started can outlive basalt, whatever it forks, `setsid`s or daemonises. Each `PDEATHSIG` is
//! checked against the race it has (the parent may have died before `prctl`): the supervisor
//! compares `getppid()` with basalt's pid, the program polls a pipe whose other end only the
//! supervisor holds. (The program sets its `PDEATHSIG` after its change of user, which clears
//! it.) The supervisor waits for the program and exits as it did (same exit code,
//! or the same signal), so the caller sees the program's status on the supervisor's pid. On
//! SIGTERM (SIGINT, SIGHUP) the supervisor kills the program and exits once the whole PID
//! namespace is gone: [`terminate`] uses this to stop a job's process and know it is over.
//!
//! Everything between `fork` and `exec` is raw system calls on memory prepared before the fork
//! (no allocation, no lock): `nix`'s `unshare`, `mount` and `prctl` on `CStr`s, and `libc`
//! for the calls `nix` does not wrap (`open_tree`, `move_mount`, `mount_setattr`,
//! `close_range`, `clone`) and for the credential changes (glibc's `setuid` family would try
//! to synchronise threads that exist only in basalt).
//!
//! # What is not isolated
//!
//! - Files the host lets "others" read stay readable (read-only): `/etc`, `/usr`, world-readable
//!   files in home directories. Secrets must not be world-readable (a root-only file is not
//!   readable by the job user); [`Confinement::hide`] covers more.
//! - `/sys` is the host's (read-only): a process can see the host's devices and the names of
//!   its network interfaces, not use them.
//! - Device nodes in `/dev` stay usable as far as their permissions allow the job user (a
//!   read-only mount does not stop writes to a device): `/dev/kvm` and serial ports need a group
//!   ([`JobUser::with_group`]), and then they are reachable.
//! - With the network allowed, the process shares the host's network namespace: it reaches
//!   what the host reaches, and abstract UNIX sockets.
//! - CPU, memory and disk use are not limited here (no cgroup); the job's timeouts bound time.
//! - Every job runs as the same job user unless the worker is configured otherwise: processes
//!   of two jobs at the same time could signal each other; their directories are hidden from
//!   each other by the private `/tmp` (and [`Confinement::hide`]).
//!
//! # Without root
//!
//! A developer running `basalt run` as a user gets the same namespaces inside a user namespace
//! (`CLONE_NEWUSER`, their own uid mapped to itself) when the kernel allows unprivileged user
//! namespaces: the program keeps the developer's uid (there is nobody to switch to) and
//! nothing is chowned. When neither works (a container without `CAP_SYS_ADMIN`, user
//! namespaces disabled), [`support`] says why, and confined programs run only with
//! `PR_SET_NO_NEW_PRIVS` and the supervisor-less `PDEATHSIG`: callers must warn.
//!
//! Kernel needed: Linux 5.12 (`mount_setattr`).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, OnceLock};

use nix::fcntl::{openat, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::{fstat, Mode};
use nix::unistd::{fchownat, Gid, Group, Uid, User};

/// Why a confinement could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// The job user does not exist.
    #[error("unknown user '{0}'")]
    UnknownUser(String),
    /// A group given for the job user does not exist.
    #[error("unknown group '{0}'")]
    UnknownGroup(String),
    /// The job user would be root: that confines nothing.
    #[error("the job user must not be root ('{0}')")]
    Root(String),
    /// Preparing a directory failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: io::Error,
    },
}

impl From<ConfineError> for io::Error {
    fn from(e: ConfineError) -> io::Error {
        match e {
            ConfineError::Io { what, source } => {
                io::Error::new(source.kind(), format!("{what}: {source}"))
            }
            other => io::Error::other(other.to_string()),
        }
    }
}

/// The unprivileged user confined processes run as (when basalt is root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobUser {
    /// The name, for messages.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// Supplementary groups (`kvm`, `dialout` ...).
    pub groups: Vec<u32>,
}

impl JobUser {
    /// A user by name or uid. A uid without a password entry is accepted (its gid is the
    /// same number), as systemd's dynamic users are; uid 0 is refused.
    pub fn lookup(spec: &str) -> Result<JobUser, ConfineError> {
        let numeric = spec.parse::<u32>().ok();
        // /etc/passwd first: asking NSS costs basalt half a MiB of libraries for the job
        let found = match passwd_file("/etc/passwd", spec) {
            Some((name, uid, gid)) => Ok(Some((name, uid, gid))),
            None => match numeric {
                Some(uid) => User::from_uid(Uid::from_raw(uid)),
                None => User::from_name(spec),
            }
            .map(|u| u.map(|u| (u.name, u.uid.as_raw(), u.gid.as_raw()))),
        };
        let user = match (found, numeric) {
            (Ok(Some((name, uid, gid))), _) => JobUser {
                name,
                uid,
                gid,
                groups: Vec::new(),
            },
            (_, Some(uid)) => JobUser {
                name: spec.to_string(),
                uid,
                gid: uid,
                groups: Vec::new(),
            },
            _ => return Err(ConfineError::UnknownUser(spec.to_string())),
        };
        if user.uid == 0 || user.gid == 0 {
            return Err(ConfineError::Root(spec.to_string()));
        }
        Ok(user)
    }

    /// `nobody`, or uid and gid 65534 where it has no password entry.
    pub fn nobody() -> JobUser {
        JobUser::lookup("nobody").unwrap_or(JobUser {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
            groups: Vec::new(),
        })
    }

    /// Adds a supplementary group, by name or gid (gid 0 is refused).
    pub fn with_group(mut self, spec: &str) -> Result<JobUser, ConfineError> {
        let gid = match spec.parse::<u32>() {
            Ok(g) => g,
            Err(_) => match group_gid(spec) {
                Some(g) => g,
                None => return Err(ConfineError::UnknownGroup(spec.to_string())),
            },
        };
        if gid == 0 {
            return Err(ConfineError::Root(format!("group {spec}")));
        }
        if gid != self.gid && !self.groups.contains(&gid) {
            self.groups.push(gid);
        }
        Ok(self)
    }

    /// Adds a group by name if it exists (`kvm` for QEMU); unchanged otherwise.
    /// Looked up in `/etc/group` only (the system groups of device nodes are there).
    pub fn with_group_if_exists(self, name: &str) -> JobUser {
        match group_file(name) {
            Some(g) => self.clone().with_group(&g.to_string()).unwrap_or(self),
            None => self,
        }
    }
}

/// `(name, uid, gid)` of the entry of `file` (`/etc/passwd` format) named `spec`, or whose
/// uid is `spec`.
fn passwd_file(file: &str, spec: &str) -> Option<(String, u32, u32)> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        let name = *f.first()?;
        let uid: u32 = f.get(2)?.parse().ok()?;
        let gid: u32 = f.get(3)?.parse().ok()?;
        (name == spec || uid.to_string() == spec).then(|| (name.to_string(), uid, gid))
    })
}

/// A group's gid in `/etc/group`.
fn group_file(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (*f.first()? == name).then(|| f.get(2)?.parse().ok())?
    })
}

/// A group's gid: `/etc/group` first, then NSS.
fn group_gid(name: &str) -> Option<u32> {
    group_file(name).or_else(|| {
        Group::from_name(name)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
    })
}

/// What a confined process may reach. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confinement {
    user: JobUser,
    writable: Vec<PathBuf>,
    hidden: Vec<PathBuf>,
    network: bool,
}

impl Confinement {
    /// Nothing writable, no network, running as `user`.
    pub fn new(user: JobUser) -> Confinement {
        Confinement {
            user,
            writable: Vec::new(),
            hidden: Vec::new(),
            network: false,
        }
    }

    /// Makes `dir` (an existing directory) writable; it and everything in it is given to the
    /// job user when basalt is root.
    pub fn writable(mut self, dir: impl Into<PathBuf>) -> Confinement {
        self.writable.push(dir.into());
        self
    }

    /// Covers `dir` with an empty directory (writable directories below it stay reachable).
    pub fn hide(mut self, dir: impl Into<PathBuf>) -> Confinement {
        self.hidden.push(dir.into());
        self
    }

    /// Whether the process keeps the host's network (default: no network at all).
    pub fn network(mut self, allowed: bool) -> Confinement {
        self.network = allowed;
        self
    }

    /// The job user.
    pub fn user(&self) -> &JobUser {
        &self.user
    }

    /// Whether the host's network is kept.
    pub fn network_allowed(&self) -> bool {
        self.network
    }

    /// One line for the job log: what the process gets.
    pub fn describe(&self) -> String {
        let who = match support() {
            Support::Root => format!("user {} (uid {})", self.user.name, self.user.uid),
            Support::UserNamespace => "basalt's own user in a user namespace".to_string(),
            Support::Unavailable(why) => return format!("NOT confined ({why})"),
        };
        format!(
            "{who}, host read-only, private /tmp, {}, own PID namespace, killed with basalt",
            if self.network {
                "host network"
            } else {
                "no network"
            }
        )
    }
}

/// How a process is started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Policy {
    /// As basalt itself is (the lab admin's commands), killed with basalt.
    Supervised,
    /// Confined; see the module documentation.
    Confined(Confinement),
}

/// What this host allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Support {
    /// basalt is root: everything in the module documentation.
    Root,
    /// Not root, but user namespaces work: the same, keeping basalt's uid.
    UserNamespace,
    /// Neither: only `PR_SET_NO_NEW_PRIVS` and `PR_SET_PDEATHSIG` (why).
    Unavailable(String),
}

/// What confinement this process can set up (tried once, by starting `true` confined).
pub fn support() -> &'static Support {
    static SUPPORT: OnceLock<Support> = OnceLock::new();
    SUPPORT.get_or_init(|| {
        let root = nix::unistd::geteuid().is_root();
        let try_mode = |userns: bool| -> io::Result<()> {
            let conf = Confinement::new(JobUser::nobody());
            let mut plan = Plan::confined(&conf, None, userns)?;
            let mut cmd = std::process::Command::new("true");
            cmd.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            // SAFETY: `Plan::enter` makes only async-signal-safe system calls.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || plan.enter());
            }
            let st = cmd.status()?;
            if st.success() {
                Ok(())
            } else {
                Err(io::Error::other(format!(
                    "a confined `true` ended with {st}"
                )))
            }
        };
        if root {
            match try_mode(false) {
                Ok(()) => return Support::Root,
                Err(e) => {
                    if try_mode(true).is_ok() {
                        return Support::UserNamespace;
                    }
                    return Support::Unavailable(format!(
                        "namespaces are not available to root here: {e}"
                    ));
                }
            }
        }
        match try_mode(true) {
            Ok(()) => Support::UserNamespace,
            Err(e) => Support::Unavailable(format!(
                "basalt is not root and user namespaces are not available: {e}"
            )),
        }
    })
}

/// Starts `cmd` under `policy` from the spawner thread (see the module documentation), in
/// the current tokio runtime. A confined command's working directory must be inside its
/// writable directories to be writable; without one it starts in the first writable
/// directory (else `/`).
pub fn spawn(
    mut cmd: tokio::process::Command,
    policy: &Policy,
) -> io::Result<tokio::process::Child> {
    let mut plan = match policy {
        Policy::Supervised => Plan::supervised(),
        Policy::Confined(conf) => {
            let cwd = cmd.as_std().get_current_dir().map(Path::to_path_buf);
            let plan = match support() {
                Support::Root => Plan::confined(conf, cwd.as_deref(), false)?,
                Support::UserNamespace => Plan::confined(conf, cwd.as_deref(), true)?,
                Support::Unavailable(_) => Plan::degraded(),
            };
            keep_environment(&mut cmd);
            if plan.ns.is_some() {
                let tmp = conf
                    .writable
                    .first()
                    .map(|p| p.as_os_str().to_owned())
                    .unwrap_or_else(|| "/tmp".into());
                cmd.env("TMPDIR", tmp).env("HOME", "/tmp");
            }
            plan
        }
    };
    // SAFETY: `Plan::enter` makes only async-signal-safe system calls on prepared memory.
    unsafe {
        cmd.pre_exec(move || plan.enter());
    }
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| io::Error::other("confine::spawn needs a tokio runtime"))?;
    on_spawner_thread(move || {
        let _guard = handle.enter();
        cmd.spawn()
    })?
}

/// basalt's environment variables a confined process keeps (besides those the caller set on
/// the command): the search path, the locale, the time zone, the terminal type and proxies.
/// Anything else of basalt's (tokens, agent sockets) is not passed on.
pub const KEPT_ENVIRONMENT: &[&str] = &[
    "PATH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "TERM",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
];

fn keep_environment(cmd: &mut tokio::process::Command) {
    let explicit: Vec<(std::ffi::OsString, Option<std::ffi::OsString>)> = cmd
        .as_std()
        .get_envs()
        .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
        .collect();
    cmd.env_clear();
    for (k, v) in std::env::vars_os() {
        if KEPT_ENVIRONMENT.iter().any(|kept| k == *kept) {
            cmd.env(k, v);
        }
    }
    for (k, v) in explicit {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
}

/// Stops a child started by [`spawn`] and waits for it: SIGTERM to the supervisor of a
/// confined process (it kills the program, waits until its PID namespace is empty, then
/// exits), SIGKILL to the process group `pgid` (when the child leads one) and to the child if
/// it is still there after `grace`.
pub async fn terminate(
    child: &mut tokio::process::Child,
    confined: bool,
    pgid: Option<u32>,
    grace: std::time::Duration,
) -> io::Result<std::process::ExitStatus> {
    use nix::sys::signal::{kill, killpg, Signal};
    use nix::unistd::Pid;
    if let Ok(Some(st)) = child.try_wait() {
        return Ok(st);
    }
    if confined {
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            if let Ok(r) = tokio::time::timeout(grace, child.wait()).await {
                return r;
            }
        }
    }
    if let Some(g) = pgid.and_then(|p| i32::try_from(p).ok()) {
        let _ = killpg(Pid::from_raw(g), Signal::SIGKILL);
    }
    let _ = child.start_kill();
    match tokio::time::timeout(std::time::Duration::from_secs(10), child.wait()).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::other("the process did not exit after SIGKILL")),
    }
}

// ---- the spawner thread ------------------------------------------------------------------

type SpawnJob = Box<dyn FnOnce() + Send>;

/// Runs `f` on the spawner thread: one thread, started on first use, that lives as long as
/// the process (a panic in `f` is caught), so that `PR_SET_PDEATHSIG` of what it forks fires
/// when basalt dies, not when some worker thread ends.
fn on_spawner_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    static SPAWNER: OnceLock<Option<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let tx = SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<SpawnJob>();
            std::thread::Builder::new()
                .name("basalt-spawner".into())
                .spawn(move || {
                    for job in rx {
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
        .ok_or_else(|| io::Error::other("cannot start the spawner thread"))?;
    let (done_tx, done_rx) = mpsc::sync_channel(1);
    tx.send(Box::new(move || {
        let _ = done_tx.send(f());
    }))
    .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    done_rx
        .recv()
        .map_err(|_| io::Error::other("the spawn panicked"))
}

// ---- preparing the job user's directories ------------------------------------------------

/// Gives `dir` and everything below it to `uid:gid`, never following a symbolic link: each
/// entry is opened `O_PATH | O_NOFOLLOW` relative to its parent and changed through that
/// descriptor; a regular file with more than one link (a hard link someone made to a file
/// elsewhere) and anything that is neither a file nor a directory is left alone. Returns how
/// many entries were changed.
pub fn chown_tree(dir: &Path, uid: u32, gid: u32) -> io::Result<usize> {
    let top = nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)?;
    let mut changed = 0;
    chown_dir(top, uid, gid, &mut changed, 0)?;
    Ok(changed)
}

fn chown_fd(fd: impl AsFd, st: &libc::stat, uid: u32, gid: u32) -> io::Result<bool> {
    if st.st_uid == uid && st.st_gid == gid {
        return Ok(false);
    }
    fchownat(
        fd,
        c"",
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )
    .map_err(io::Error::from)?;
    Ok(true)
}

fn chown_dir(dir: OwnedFd, uid: u32, gid: u32, changed: &mut usize, depth: u32) -> io::Result<()> {
    if depth > 256 {
        return Err(io::Error::other("directory tree deeper than 256 levels"));
    }
    let st = fstat(&dir).map_err(io::Error::from)?;
    if chown_fd(&dir, &st, uid, gid)? {
        *changed += 1;
    }
    let names: Vec<CString> = {
        let dup = dir.try_clone()?;
        let mut d = nix::dir::Dir::from_fd(dup).map_err(io::Error::from)?;
        d.iter()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_owned())
            .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
            .collect()
    };
    for name in names {
        let Ok(fd) = openat(
            &dir,
            name.as_c_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            continue; // gone meanwhile
        };
        let st = fstat(&fd).map_err(io::Error::from)?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFREG if st.st_nlink == 1 && chown_fd(&fd, &st, uid, gid)? => {
                *changed += 1;
            }
            libc::S_IFDIR => {
                let sub = openat(
                    &dir,
                    name.as_c_str(),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(io::Error::from)?;
                let again = fstat(&sub).map_err(io::Error::from)?;
                if again.st_ino == st.st_ino && again.st_dev == st.st_dev {
                    chown_dir(sub, uid, gid, changed, depth + 1)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

// ---- the plan: everything prepared before fork, applied between fork and exec -------------

/// Size of the private `/tmp` and `/dev/shm`.
const TMPFS_OPTIONS: &CStr = c"mode=1777,size=64m";
/// Options of the empty directory covering a hidden one.
const HIDE_OPTIONS: &CStr = c"mode=0755,size=1m";

struct Plan {
    /// basalt's pid, to check `PDEATHSIG`'s race.
    parent: libc::pid_t,
    /// `PR_SET_NO_NEW_PRIVS` (confined without namespaces).
    no_new_privs: bool,
    ns: Option<Namespaces>,
}

struct Namespaces {
    flags: CloneFlags,
    /// `(file, content)` for `/proc/self/{setgroups,uid_map,gid_map}` (user namespace).
    maps: Vec<(CString, Vec<u8>)>,
    writable: Vec<CString>,
    /// The detached clones of the writable directories' mounts.
    trees: Vec<libc::c_int>,
    /// tmpfs mounts: (target, options).
    covers: Vec<(CString, &'static CStr)>,
    /// Directories created in the covers, parents first: the writable directories' paths.
    mkdirs: Vec<CString>,
    /// `(uid, gid, groups)` to switch to (root only).
    ids: Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>,
    /// A failed `/proc` mount is an error (root) or skipped (user namespace).
    strict: bool,
    cwd: CString,
}

/// Whether `user` can reach `dir` (search permission on every parent that is not inside a
/// tmpfs cover, where basalt makes the path itself): a clear error now rather than an
/// obscure one from the program.
fn reachable(dir: &Path, user: &JobUser, covers: &[(PathBuf, &CStr)]) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    for a in dir.ancestors().skip(1) {
        if covers.iter().any(|(t, _)| a.starts_with(t)) {
            continue;
        }
        let m = std::fs::metadata(a)?;
        let mode = m.mode();
        let ok = mode & 0o001 != 0
            || (m.uid() == user.uid && mode & 0o100 != 0)
            || ((m.gid() == user.gid || user.groups.contains(&m.gid())) && mode & 0o010 != 0);
        if !ok {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} is out of the job user {}'s reach: {} is mode {:o}, owner {}:{}",
                    dir.display(),
                    user.name,
                    a.display(),
                    mode & 0o7777,
                    m.uid(),
                    m.gid()
                ),
            ));
        }
    }
    Ok(())
}

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::other(format!("{}: a NUL byte in the path", p.display())))
}

impl Plan {
    fn supervised() -> Plan {
        Plan {
            parent: std::process::id() as libc::pid_t,
            no_new_privs: false,
            ns: None,
        }
    }

    fn degraded() -> Plan {
        Plan {
            no_new_privs: true,
            ..Plan::supervised()
        }
    }

    fn confined(conf: &Confinement, cwd: Option<&Path>, userns: bool) -> io::Result<Plan> {
        let mut flags =
            CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWIPC;
        if !conf.network {
            flags |= CloneFlags::CLONE_NEWNET;
        }
        let mut maps = Vec::new();
        if userns {
            flags |= CloneFlags::CLONE_NEWUSER;
            let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
            maps.push((c"/proc/self/setgroups".to_owned(), b"deny".to_vec()));
            maps.push((
                c"/proc/self/uid_map".to_owned(),
                format!("{uid} {uid} 1\n").into_bytes(),
            ));
            maps.push((
                c"/proc/self/gid_map".to_owned(),
                format!("{gid} {gid} 1\n").into_bytes(),
            ));
        }
        let mut writable = Vec::new();
        for w in &conf.writable {
            let c = std::fs::canonicalize(w).map_err(|e| ConfineError::Io {
                what: format!("writable directory {}", w.display()),
                source: e,
            })?;
            writable.push(c);
        }
        // tmpfs covers: /tmp and /dev/shm (private), the hidden directories (empty), parents
        // first, none that a writable directory contains (it would hide it).
        let mut covers: Vec<(PathBuf, &'static CStr)> = vec![
            (PathBuf::from("/tmp"), TMPFS_OPTIONS),
            (PathBuf::from("/dev/shm"), TMPFS_OPTIONS),
        ];
        for h in &conf.hidden {
            if let Ok(c) = std::fs::canonicalize(h) {
                covers.push((c, HIDE_OPTIONS));
            }
        }
        covers.retain(|(t, _)| t.is_dir() && !writable.iter().any(|w| t.starts_with(w)));
        covers.sort_by_key(|(t, _)| t.components().count());
        let mut kept: Vec<(PathBuf, &'static CStr)> = Vec::new();
        for c in covers {
            if !kept.iter().any(|k| c.0.starts_with(&k.0)) {
                kept.push(c);
            }
        }
        let covers = kept;
        if !userns {
            for w in &writable {
                reachable(w, &conf.user, &covers)?;
                chown_tree(w, conf.user.uid, conf.user.gid).map_err(|e| ConfineError::Io {
                    what: format!("giving {} to {}", w.display(), conf.user.name),
                    source: e,
                })?;
            }
        }
        let mut mkdirs: Vec<PathBuf> = Vec::new();
        for w in &writable {
            for (t, _) in &covers {
                if let Ok(rel) = w.strip_prefix(t) {
                    let mut p = t.clone();
                    for c in rel.components() {
                        p.push(c);
                        if !mkdirs.contains(&p) {
                            mkdirs.push(p.clone());
                        }
                    }
                }
            }
        }
        mkdirs.sort_by_key(|p| p.components().count());
        let cwd = cwd
            .map(Path::to_path_buf)
            .or_else(|| writable.first().cloned())
            .unwrap_or_else(|| PathBuf::from("/"));
        let ids = (!userns).then(|| {
            let mut groups = vec![conf.user.gid];
            groups.extend(conf.user.groups.iter().copied());
            (conf.user.uid, conf.user.gid, groups)
        });
        Ok(Plan {
            parent: std::process::id() as libc::pid_t,
            no_new_privs: false,
            ns: Some(Namespaces {
                flags,
                maps,
                trees: vec![-1; writable.len()],
                writable: writable
                    .iter()
                    .map(|p| cstring(p))
                    .collect::<io::Result<_>>()?,
                covers: covers
                    .iter()
                    .map(|(t, o)| Ok((cstring(t)?, *o)))
                    .collect::<io::Result<_>>()?,
                mkdirs: mkdirs
                    .iter()
                    .map(|p| cstring(p))
                    .collect::<io::Result<_>>()?,
                ids,
                strict: !userns,
                cwd: cstring(&cwd)?,
            }),
        })
    }

    /// Runs in the forked child, before exec: async-signal-safe calls only.
    fn enter(&mut self) -> io::Result<()> {
        // SAFETY: raw system calls on memory prepared before the fork.
        unsafe {
            die_with_parent()?;
            if libc::getppid() != self.parent {
                // basalt died before the prctl: nobody is waiting for this process
                libc::_exit(1);
            }
            if self.no_new_privs {
                no_new_privs()?;
            }
        }
        match &mut self.ns {
            None => Ok(()),
            Some(ns) => ns.enter(self.parent),
        }
    }
}

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

fn check(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(last_error())
    } else {
        Ok(r)
    }
}

fn nix_err(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

unsafe fn die_with_parent() -> io::Result<()> {
    if libc::prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        0,
        0,
        0,
    ) != 0
    {
        return Err(last_error());
    }
    Ok(())
}

unsafe fn no_new_privs() -> io::Result<()> {
    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) != 0 {
        return Err(last_error());
    }
    Ok(())
}

unsafe fn mount_setattr(
    dirfd: libc::c_int,
    path: &CStr,
    flags: libc::c_uint,
    set: u64,
) -> io::Result<()> {
    let attr = libc::mount_attr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    check(libc::syscall(
        libc::SYS_mount_setattr,
        dirfd,
        path.as_ptr(),
        flags,
        &attr as *const libc::mount_attr,
        std::mem::size_of::<libc::mount_attr>(),
    ))?;
    Ok(())
}

unsafe fn write_all(path: &CStr, content: &[u8]) -> io::Result<()> {
    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return Err(last_error());
    }
    let n = libc::write(fd, content.as_ptr().cast(), content.len());
    let err = last_error();
    libc::close(fd);
    if n != content.len() as isize {
        return Err(err);
    }
    Ok(())
}

const NO_PATH: Option<&CStr> = None;

impl Namespaces {
    fn enter(&mut self, parent: libc::pid_t) -> io::Result<()> {
        unshare(self.flags).map_err(nix_err)?;
        // SAFETY: raw system calls on memory prepared before the fork.
        unsafe {
            for (file, content) in &self.maps {
                write_all(file, content)?;
            }
            if !self.maps.is_empty() {
                // entering a user namespace changed the credentials: that cleared PDEATHSIG
                die_with_parent()?;
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
            }
            mount(
                NO_PATH,
                c"/",
                NO_PATH,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                NO_PATH,
            )
            .map_err(nix_err)?;
            // the writable directories, cloned while the host is still writable
            for (i, w) in self.writable.iter().enumerate() {
                let fd = check(libc::syscall(
                    libc::SYS_open_tree,
                    libc::AT_FDCWD,
                    w.as_ptr(),
                    libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_RECURSIVE as u32,
                ))?;
                self.trees[i] = fd as libc::c_int;
                mount_setattr(
                    fd as libc::c_int,
                    c"",
                    (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
                    libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV,
                )?;
            }
            // the host, read-only
            mount_setattr(
                libc::AT_FDCWD,
                c"/",
                libc::AT_RECURSIVE as libc::c_uint,
                libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID,
            )?;
            for (target, options) in &self.covers {
                mount(
                    Some(c"tmpfs"),
                    target.as_c_str(),
                    Some(c"tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some(*options),
                )
                .map_err(nix_err)?;
            }
            for d in &self.mkdirs {
                if libc::mkdir(d.as_ptr(), 0o755) != 0
                    && last_error().raw_os_error() != Some(libc::EEXIST)
                {
                    return Err(last_error());
                }
            }
            for (i, w) in self.writable.iter().enumerate() {
                check(libc::syscall(
                    libc::SYS_move_mount,
                    self.trees[i],
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    w.as_ptr(),
                    libc::MOVE_MOUNT_F_EMPTY_PATH,
                ))?;
                libc::close(self.trees[i]);
                self.trees[i] = -1;
            }
            // the supervisor (this process) and the program (PID 1 of the new namespace)
            let mut pipe = [-1 as libc::c_int; 2];
            if libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
                return Err(last_error());
            }
            // a raw clone, not glibc's fork(): nothing of the C library (atfork handlers,
            // its locks) runs between here and exec
            let pid = check(libc::syscall(
                libc::SYS_clone,
                libc::SIGCHLD as libc::c_long,
                0 as libc::c_long,
                0 as libc::c_long,
                0 as libc::c_long,
                0 as libc::c_long,
            ))?;
            if pid == 0 {
                self.program(pipe)
            } else {
                supervise(pid as libc::pid_t, pipe)
            }
        }
    }

    /// In the program, PID 1 of its namespace, before exec.
    unsafe fn program(&self, pipe: [libc::c_int; 2]) -> io::Result<()> {
        libc::close(pipe[1]);
        if libc::setsid() < 0 {
            return Err(last_error());
        }
        let proc_ = mount(
            Some(c"proc"),
            c"/proc",
            Some(c"proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            NO_PATH,
        );
        if let Err(e) = proc_ {
            if self.strict {
                return Err(nix_err(e));
            }
        }
        if libc::chdir(self.cwd.as_ptr()) != 0 {
            return Err(last_error());
        }
        if let Some((uid, gid, groups)) = &self.ids {
            set_ids(*uid, *gid, groups)?;
        }
        // after the change of user, which clears it
        die_with_parent()?;
        // the supervisor holds the other end until it dies: a hang-up means it is gone
        let mut pfd = libc::pollfd {
            fd: pipe[0],
            events: libc::POLLIN,
            revents: 0,
        };
        if libc::poll(&mut pfd, 1, 0) != 0 {
            libc::_exit(1);
        }
        libc::close(pipe[0]);
        no_new_privs()
    }
}

#[cfg(any(target_arch = "arm", target_arch = "x86"))]
mod sys_ids {
    pub const SETGROUPS: libc::c_long = libc::SYS_setgroups32;
    pub const SETRESGID: libc::c_long = libc::SYS_setresgid32;
    pub const SETRESUID: libc::c_long = libc::SYS_setresuid32;
}
#[cfg(not(any(target_arch = "arm", target_arch = "x86")))]
mod sys_ids {
    pub const SETGROUPS: libc::c_long = libc::SYS_setgroups;
    pub const SETRESGID: libc::c_long = libc::SYS_setresgid;
    pub const SETRESUID: libc::c_long = libc::SYS_setresuid;
}

/// Raw calls: they change this (only) thread's credentials, without glibc's cross-thread
/// synchronisation, which would wait for threads that only exist in basalt.
unsafe fn set_ids(uid: libc::uid_t, gid: libc::gid_t, groups: &[libc::gid_t]) -> io::Result<()> {
    check(libc::syscall(
        sys_ids::SETGROUPS,
        groups.len() as libc::c_long,
        groups.as_ptr(),
    ))?;
    check(libc::syscall(sys_ids::SETRESGID, gid, gid, gid))?;
    check(libc::syscall(sys_ids::SETRESUID, uid, uid, uid))?;
    Ok(())
}

/// The program the supervisor waits for (its own copy of this static).
static SUPERVISED: AtomicI32 = AtomicI32::new(0);

extern "C" fn stop_supervised(_: libc::c_int) {
    let pid = SUPERVISED.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// The supervisor: waits for the program and ends as it ended. Never returns.
unsafe fn supervise(child: libc::pid_t, pipe: [libc::c_int; 2]) -> ! {
    SUPERVISED.store(child, Ordering::Relaxed);
    libc::close(pipe[0]);
    // stdio and every inherited descriptor but the pipe: above all the spawn's error pipe, so
    // that the spawn returns as soon as the program has exec'd
    for fd in 0..3 {
        libc::close(fd);
    }
    close_from(3, pipe[1]);
    libc::prctl(libc::PR_SET_NAME, c"basalt-confine".as_ptr(), 0, 0, 0);
    let mut sa: libc::sigaction = std::mem::zeroed();
    sa.sa_sigaction = stop_supervised as *const () as libc::sighandler_t;
    libc::sigemptyset(&mut sa.sa_mask);
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
    libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    let mut status: libc::c_int = 0;
    loop {
        let r = libc::waitpid(child, &mut status, 0);
        if r == child {
            break;
        }
        if r < 0 && last_error().raw_os_error() != Some(libc::EINTR) {
            libc::_exit(127);
        }
    }
    if libc::WIFEXITED(status) {
        libc::_exit(libc::WEXITSTATUS(status));
    }
    let sig = libc::WTERMSIG(status);
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    libc::setrlimit(libc::RLIMIT_CORE, &no_core);
    libc::signal(sig, libc::SIG_DFL);
    libc::kill(libc::getpid(), sig);
    libc::_exit(128 + sig)
}

/// Closes every descriptor from `first` up, except `keep`.
unsafe fn close_from(first: libc::c_uint, keep: libc::c_int) {
    let keep = keep as libc::c_uint;
    let ranges = [
        (first, keep.saturating_sub(1)),
        (keep + 1, libc::c_uint::MAX),
    ];
    for (lo, hi) in ranges {
        if lo > hi {
            continue;
        }
        if libc::syscall(libc::SYS_close_range, lo, hi, 0) != 0 {
            for fd in lo..hi.min(65536) {
                libc::close(fd as libc::c_int);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_user_lookup() {
        assert!(matches!(
            JobUser::lookup("root"),
            Err(ConfineError::Root(_))
        ));
        assert!(matches!(JobUser::lookup("0"), Err(ConfineError::Root(_))));
        assert!(JobUser::lookup("no-such-user-here").is_err());
        let u = JobUser::lookup("61234").expect("a bare uid");
        assert_eq!((u.uid, u.gid), (61234, 61234));
        assert_eq!(JobUser::nobody().uid, 65534);
    }
}
