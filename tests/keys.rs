//! `basalt keys generate`: ZeroMQ certificate files that pyzmq's `zmq.auth` loads, with the
//! printed public key; never overwritten.

use std::process::Command;

fn basalt() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_basalt"))
}

#[test]
fn generated_keys_load_in_pyzmq_and_are_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(basalt())
        .args(["keys", "generate", "worker-01", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let printed = stdout
        .lines()
        .next()
        .and_then(|l| l.rsplit(": ").next())
        .unwrap()
        .to_string();
    let py = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg("import sys, zmq.auth; p, s = zmq.auth.load_certificate(sys.argv[2]); q, _ = zmq.auth.load_certificate(sys.argv[1]); assert p == q and len(s) == 40; print(p.decode())")
        .arg(dir.path().join("worker-01.key"))
        .arg(dir.path().join("worker-01.key_secret"))
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&py.stdout).trim(), printed);
    let again = Command::new(basalt())
        .args(["keys", "generate", "worker-01", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwritten"));
    let py_again = std::fs::read_to_string(dir.path().join("worker-01.key")).unwrap();
    assert!(py_again.contains(&printed), "the public key file changed");
}
