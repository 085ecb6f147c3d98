//! Confinement of job processes (hal/src/confine.rs), tried for real: a confined shell (and a
//! confined QEMU) cannot write outside its directory, read a root-only file, reach a network
//! or outlive basalt, even `kill -9`ed. Needs root (CI runs as root); skipped otherwise.

use basalt_hal::confine::{self, Confinement, JobUser, Policy, Support};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn root() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: confinement tests need root");
        return false;
    }
    assert_eq!(
        confine::support(),
        &Support::Root,
        "root must be able to confine"
    );
    true
}

/// A world-writable (sticky) directory outside /tmp.
fn var_tmp() -> PathBuf {
    let v = PathBuf::from("/var/tmp");
    if v.is_dir() {
        v
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
    }
}

/// A job directory under /tmp, as basalt makes them.
fn job_dir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("basalt-confine-test-")
        .tempdir()
        .expect("temp dir");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    d
}

/// A host directory outside /tmp that everybody may write to (so only the confinement stops
/// a write), with a root-only secret in it.
struct Host {
    dir: PathBuf,
    secret: PathBuf,
}

impl Host {
    fn new(tag: &str) -> Host {
        // /var/tmp: outside /tmp (private to a confined process) and reachable by the job
        // user wherever the repository is cloned
        let dir = var_tmp().join(format!("basalt-test-confine-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "the-root-only-secret\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        Host { dir, secret }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `script` with /bin/sh under `policy`: (exit code, stdout, stderr).
fn sh(policy: &Policy, script: &str) -> (Option<i32>, String, String) {
    rt().block_on(async {
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = confine::spawn(cmd, policy).expect("spawn");
        let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .expect("the shell ends")
            .expect("output");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
}

fn confined(dir: &Path) -> Policy {
    Policy::Confined(Confinement::new(JobUser::nobody()).writable(dir))
}

#[test]
fn a_confined_process_writes_only_in_its_directory() {
    if !root() {
        return;
    }
    let job = job_dir();
    std::fs::write(job.path().join("from-basalt"), "x").unwrap();
    let host = Host::new("write");
    let tmp_marker = format!("/tmp/basalt-confine-marker-{}", std::process::id());
    let script = format!(
        "id -u; echo $$; echo in > {job}/inside && echo wrote-inside; echo \"token=$BASALT_TEST_TOKEN\"; echo more >> {job}/from-basalt && echo appended; \
         touch {host}/marker 2>/dev/null && echo WROTE-HOST; touch {tmp} && echo wrote-private-tmp; \
         touch /var/tmp/basalt-marker-$$ 2>/dev/null && echo WROTE-VAR-TMP; true",
        job = job.path().display(),
        host = host.dir.display(),
        tmp = tmp_marker,
    );
    // (std serialises its own reads and writes of the environment)
    std::env::set_var("BASALT_TEST_TOKEN", "secret-token");
    let (code, out, err) = sh(&confined(job.path()), &script);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("token=\n"),
        "basalt's environment leaked: {out}"
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"65534"), "runs as nobody: {out}");
    assert_eq!(
        lines.get(1),
        Some(&"1"),
        "PID 1 of its own namespace: {out}"
    );
    assert!(
        out.contains("wrote-inside") && out.contains("appended"),
        "{out}{err}"
    );
    assert!(
        out.contains("wrote-private-tmp"),
        "its /tmp is writable: {out}{err}"
    );
    assert!(!out.contains("WROTE"), "{out}");
    assert!(
        !host.dir.join("marker").exists(),
        "a marker outside the job directory"
    );
    assert!(
        !Path::new(&tmp_marker).exists(),
        "its /tmp is not the host's"
    );
    let inside = job.path().join("inside");
    assert_eq!(std::fs::read_to_string(&inside).unwrap(), "in\n");
    assert_eq!(std::fs::metadata(&inside).unwrap().uid(), 65534);
    assert_eq!(std::fs::metadata(job.path()).unwrap().uid(), 65534);
}

#[test]
fn a_confined_process_cannot_read_a_root_only_file() {
    if !root() {
        return;
    }
    let job = job_dir();
    let host = Host::new("secret");
    let (_, out, err) = sh(
        &confined(job.path()),
        &format!("cat {} || echo refused", host.secret.display()),
    );
    assert!(out.contains("refused"), "{out}{err}");
    assert!(
        !out.contains("the-root-only-secret") && !err.contains("the-root-only-secret"),
        "{out}{err}"
    );
    // the host's /tmp (other jobs' directories) is not even visible
    let other = tempfile::Builder::new()
        .prefix("basalt-confine-other-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(other.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(other.path().join("file"), "x").unwrap();
    let (_, out, err) = sh(
        &confined(job.path()),
        &format!(
            "cat {}/file 2>/dev/null && echo VISIBLE || echo hidden",
            other.path().display()
        ),
    );
    assert_eq!(out.trim(), "hidden", "{out}{err}");
}

#[test]
fn a_confined_process_has_no_network_unless_allowed() {
    if !root() {
        return;
    }
    let job = job_dir();
    let interfaces = |text: &str| -> Vec<String> {
        text.lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(|s| s.trim().to_string())
            .collect()
    };
    let (_, out, err) = sh(&confined(job.path()), "cat /proc/net/dev");
    assert_eq!(interfaces(&out), vec!["lo".to_string()], "{out}{err}");
    let host = std::fs::read_to_string("/proc/net/dev").unwrap();
    let allowed = Policy::Confined(
        Confinement::new(JobUser::nobody())
            .writable(job.path())
            .network(true),
    );
    let (_, out, err) = sh(&allowed, "cat /proc/net/dev");
    let (mut a, mut b) = (interfaces(&out), interfaces(&host));
    a.sort();
    b.sort();
    assert_eq!(a, b, "the granted network is the host's: {out}{err}");
}

/// Pids of the processes whose command line mentions `needle`.
fn processes_with(needle: &str) -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(needle) {
                v.push(pid);
            }
        }
    }
    v
}

/// A script that leaves three processes behind: one in the background, one in its own
/// session, one double-forked; prints `ready` when they run.
fn leave_orphans(dir: &Path) -> String {
    let looper = dir.join("loop.sh");
    std::fs::write(&looper, "while :; do sleep 1; done\n").unwrap();
    format!(
        "sh {l} & setsid sh {l} & (sh {l} &); echo ready; wait",
        l = looper.display()
    )
}

#[test]
fn terminate_leaves_no_process_of_the_namespace() {
    if !root() {
        return;
    }
    let job = job_dir();
    let needle = job.path().to_string_lossy().into_owned();
    let script = leave_orphans(job.path());
    rt().block_on(async {
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = confine::spawn(cmd, &confined(job.path())).unwrap();
        let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(20),
            tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line),
        )
        .await
        .expect("ready in time")
        .unwrap();
        assert_eq!(line.trim(), "ready");
        let deadline = Instant::now() + Duration::from_secs(10);
        while processes_with(&needle).len() < 3 {
            assert!(Instant::now() < deadline, "the orphans never ran");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let st = confine::terminate(&mut child, true, None, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(!st.success());
        assert_eq!(processes_with(&needle), Vec::<i32>::new(), "survivors");
    });
}

/// The other half of `nothing_survives_kill_9_of_basalt`: run by the test binary itself, it
/// starts the orphan script confined, says READY, and waits to be killed.
#[test]
fn helper_spawn_and_wait_to_be_killed() {
    let Ok(dir) = std::env::var("BASALT_CONFINE_HELPER_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let script = leave_orphans(&dir);
    rt().block_on(async {
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(&script)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = confine::spawn(cmd, &confined(&dir)).unwrap();
        let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let _ = tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line).await;
        println!("READY {}", child.id().unwrap_or(0));
        std::future::pending::<()>().await;
    });
}

#[test]
fn nothing_survives_kill_9_of_basalt() {
    if !root() {
        return;
    }
    let job = job_dir();
    let needle = job.path().to_string_lossy().into_owned();
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_spawn_and_wait_to_be_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BASALT_CONFINE_HELPER_DIR", job.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = helper.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // the harness prints `test NAME ... ` before the test's own output
            if line.contains("READY") {
                let _ = tx.send(line);
            }
        }
    });
    let ready = rx.recv_timeout(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready.is_ok() && processes_with(&needle).len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = processes_with(&needle);
    let _ = helper.kill(); // SIGKILL
    let _ = helper.wait();
    assert!(ready.is_ok(), "the helper never got ready");
    assert!(before.len() >= 3, "the orphans never ran: {before:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_with(&needle);
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            for p in &left {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            panic!("processes of the job survived basalt's kill -9: {left:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// QEMU itself, with options that would write host files: `-D` (its log) and a file chardev.
#[test]
fn a_confined_qemu_writes_no_host_file() {
    if !root() {
        return;
    }
    if std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("skipped: no qemu-system-x86_64");
        return;
    }
    let job = job_dir();
    let host = Host::new("qemu");
    let (log, chardev) = (host.dir.join("qemu.log"), host.dir.join("chardev.out"));
    let inside = job.path().join("qemu.log");
    let run = |log: &Path, chardev: &Path| -> String {
        let argv: Vec<String> = [
            "qemu-system-x86_64",
            "-machine",
            "none",
            "-display",
            "none",
            "-nodefaults",
            "-monitor",
            "stdio",
            "-d",
            "guest_errors",
            "-D",
            &log.to_string_lossy(),
            "-chardev",
            &format!("file,id=c0,path={}", chardev.display()),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        rt().block_on(async {
            let (mut q, stream) =
                basalt_hal::emulator::QemuProcess::spawn_with(&argv, &confined(job.path()))
                    .unwrap();
            let mut s = basalt_hal::console::Session::new(
                stream,
                "qemu",
                Box::new(basalt_hal::console::NullTranscript),
            );
            // the monitor's prompt: the options are processed; or QEMU gave up on them
            let re = basalt_hal::console::expect::Regex::new(r"\(qemu\)").unwrap();
            let r = s.expect(&[re], Duration::from_secs(30)).await;
            let seen = format!("{r:?} {}", q.stderr());
            q.kill().await.unwrap();
            seen
        })
    };
    let seen = run(&log, &chardev);
    assert!(!log.exists(), "QEMU wrote its -D log outside: {seen}");
    assert!(
        !chardev.exists(),
        "QEMU opened a chardev file outside: {seen}"
    );
    // the same options inside the job directory work
    let seen = run(&inside, &job.path().join("chardev.out"));
    assert!(seen.contains("Ok"), "{seen}");
    assert!(
        inside.exists() && job.path().join("chardev.out").exists(),
        "{seen}"
    );
}

/// The other half of `without_root_a_user_namespace_confines`: run by the test binary itself
/// as an unprivileged user.
#[test]
fn helper_confine_as_a_user() {
    let Ok(host_dir) = std::env::var("BASALT_CONFINE_USERNS_HELPER") else {
        return;
    };
    match confine::support() {
        Support::UserNamespace => {}
        Support::Unavailable(why) => {
            println!("USERNS-UNAVAILABLE {why}");
            return;
        }
        Support::Root => panic!("not root, yet confined as root"),
    }
    let job = job_dir();
    let me = nix::unistd::geteuid().as_raw();
    let script = format!(
        "id -u; echo $$; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; echo in > {job}/inside && echo wrote-inside; \
         touch {host}/marker 2>/dev/null && echo WROTE-HOST; true",
        job = job.path().display(),
        host = host_dir,
    );
    let (code, out, err) = sh(&confined(job.path()), &script);
    assert_eq!(code, Some(0), "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec![me.to_string().as_str(), "1", "lo", "wrote-inside"],
        "{out}{err}"
    );
    println!("USERNS-OK");
}

#[test]
fn without_root_a_user_namespace_confines() {
    if !root() {
        return;
    }
    use std::os::unix::process::CommandExt;
    let host = Host::new("userns");
    // a copy of this test binary that the user can run wherever the repository is
    let exe = host.dir.join("confine-test");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(&exe)
        .args([
            "--exact",
            "helper_confine_as_a_user",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BASALT_CONFINE_USERNS_HELPER", &host.dir)
        .env("TMPDIR", "/tmp")
        .current_dir("/")
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    if text.contains("USERNS-UNAVAILABLE") {
        eprintln!("skipped: user namespaces are not available here: {text}");
        return;
    }
    assert!(text.contains("USERNS-OK"), "{text}");
    assert!(!host.dir.join("marker").exists());
}

#[test]
fn a_writable_directory_out_of_the_job_users_reach_is_refused() {
    if !root() {
        return;
    }
    let host = Host::new("reach");
    let closed = host.dir.join("closed");
    let job = closed.join("job");
    std::fs::create_dir_all(&job).unwrap();
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
    let err = rt()
        .block_on(async {
            let cmd = tokio::process::Command::new("/bin/true");
            confine::spawn(cmd, &confined(&job))
        })
        .expect_err("an unreachable directory");
    let text = err.to_string();
    assert!(
        text.contains("out of the job user nobody's reach"),
        "{text}"
    );
    assert!(text.contains("mode 700"), "{text}");
}
