//! `basalt-master`'s options from the environment (`BASALT_MASTER_*`, what the systemd unit's
//! environment file sets: docs/config.md): a master configured by the environment alone
//! serves as its options say; a switch set to `false` counts as not given; an empty value is
//! refused with the option named.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The master, killed and reaped when the test ends, passing or not.
struct Master(Child);

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A master with nothing on its command line: every option from `env`.
fn master(env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_basalt-master"));
    cmd.env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Starts `cmd`; its stderr lines until the one containing `until` (or 20 s, or its exit).
fn start_until(mut cmd: Command, until: &str) -> (Master, Vec<String>) {
    let mut child = cmd.spawn().expect("basalt-master");
    let stderr = child.stderr.take().expect("stderr");
    let master = Master(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut lines = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) => {
                let done = l.contains(until);
                lines.push(l);
                if done {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    (master, lines)
}

#[test]
fn a_master_configured_by_its_environment_alone_serves_as_it_says() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let token = dir.path().join("coordinator.token");
    std::fs::write(&token, "s3cret-coordinator\n").expect("token file");
    let env = [
        ("BASALT_MASTER_STATE_DIR", dir.path().display().to_string()),
        ("BASALT_MASTER_HTTP", "127.0.0.1:0".into()),
        ("BASALT_MASTER_WORKERS", "tcp://127.0.0.1:0".into()),
        ("BASALT_MASTER_COORDINATOR", "127.0.0.1:0".into()),
        ("BASALT_MASTER_ANONYMOUS_READ", "true".into()),
        // false is not given: no conflict with the token file
        ("BASALT_MASTER_COORDINATOR_OPEN", "false".into()),
        (
            "BASALT_MASTER_COORDINATOR_TOKEN_FILE",
            token.display().to_string(),
        ),
        ("BASALT_LOG", "warn,basalt_master=info".into()),
    ];
    let (_master, lines) = start_until(master(&env), "API on ");
    let text = lines.join("\n");
    let api = lines
        .iter()
        .find_map(|l| l.split("API on ").nth(1))
        .unwrap_or_else(|| panic!("no API line:\n{text}"));
    assert!(text.contains("token protected"), "{text}");
    // the state directory is the environment's
    assert!(dir.path().join("certs/master.key").is_file(), "{text}");
    // anonymous reads, as BASALT_MASTER_ANONYMOUS_READ says
    let devices = ureq::get(&format!("{api}devices/")).call();
    assert!(devices.is_ok(), "GET devices/ without a token: {devices:?}");
    // the filter: basalt_master's info, the coordinator crate's info left out
    assert!(!text.contains("basalt_coordinator"), "{text}");
}

#[test]
fn a_switch_set_to_false_is_off_and_other_words_are_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let base = |read: &str| {
        vec![
            ("BASALT_MASTER_STATE_DIR", dir.path().display().to_string()),
            ("BASALT_MASTER_HTTP", "127.0.0.1:0".into()),
            ("BASALT_MASTER_WORKERS", "tcp://127.0.0.1:0".into()),
            ("BASALT_MASTER_COORDINATOR", "127.0.0.1:0".into()),
            ("BASALT_MASTER_ANONYMOUS_READ", read.to_string()),
        ]
    };
    let (_master, lines) = start_until(master(&base("false")), "API on ");
    let api = lines
        .iter()
        .find_map(|l| l.split("API on ").nth(1))
        .unwrap_or_else(|| panic!("no API line:\n{}", lines.join("\n")));
    match ureq::get(&format!("{api}devices/")).call() {
        Err(ureq::Error::Status(401, _)) => {}
        other => panic!("anonymous read with BASALT_MASTER_ANONYMOUS_READ=false: {other:?}"),
    }
    let out = master(&base("yes")).output().expect("basalt-master");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("invalid value 'yes' for '--anonymous-read'"),
        "{err}"
    );
}

#[test]
fn an_empty_value_is_refused_with_the_option_named() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (var, option) in [
        ("BASALT_MASTER_EVENTS", "--events"),
        ("BASALT_MASTER_HTTP", "--http"),
        ("BASALT_MASTER_STATE_DIR", "--state-dir"),
    ] {
        let mut env = vec![("BASALT_MASTER_STATE_DIR", dir.path().display().to_string())];
        env.retain(|(k, _)| *k != var);
        env.push((var, String::new()));
        let out = master(&env).output().expect("basalt-master");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}: {err}");
        assert!(
            err.contains(&format!("a value is required for '{option}")),
            "{var}: {err}"
        );
    }
}
