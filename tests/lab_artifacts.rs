//! `basalt artifacts` against the `basalt-master` binary: the master started with its
//! artifact flags (one of them from the environment, as the systemd unit sets them), a file
//! uploaded with the CLI (its progress on stderr, its URL on stdout), fetched from that URL
//! without a token, listed, refused past the quota, deleted.

mod common;

use common::{bin, free_port, Daemon};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn hex(d: impl AsRef<[u8]>) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn basalt(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(bin("basalt"))
        .arg("artifacts")
        .args(args)
        .args(["--url", url, "--token", token])
        .stdin(Stdio::null())
        .output()
        .expect("basalt artifacts")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn artifacts_are_uploaded_listed_fetched_and_deleted_with_the_cli() {
    let tmp = common::TempDir::new("lab-artifacts");
    let state = tmp.path().join("master");
    let (http, files, workers) = (free_port(), free_port(), free_port());
    let url = format!("http://127.0.0.1:{http}");
    let _master = Daemon(
        Command::new(bin("basalt-master"))
            .arg("--state-dir")
            .arg(&state)
            .args(["--http", &format!("127.0.0.1:{http}")])
            .args(["--workers", &format!("tcp://127.0.0.1:{workers}")])
            .args(["--coordinator", "127.0.0.1:0"])
            .args(["--artifacts-http", &format!("127.0.0.1:{files}")])
            .env("BASALT_MASTER_ARTIFACT_QUOTA", "80M")
            .args(["--artifact-max-age", "3h"])
            .stderr(Stdio::null())
            .spawn()
            .expect("basalt-master"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while ureq::get(&format!("{url}/api/v0.2/system/version/"))
        .call()
        .is_err()
    {
        assert!(Instant::now() < deadline, "the master never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new(bin("basalt-master"))
        .arg("--state-dir")
        .arg(&state)
        .args(["token", "add", "ci"])
        .output()
        .expect("token add");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_string();

    // a 65 MiB image (sparse: zeros), uploaded with a name and a shorter life
    let image = tmp.path().join("disk.img");
    let f = std::fs::File::create(&image).expect("create");
    f.set_len(65 << 20).expect("set_len");
    drop(f);
    let out = basalt(
        &url,
        &token,
        &[
            "upload",
            image.to_str().expect("path"),
            "--name",
            "ci/42/disk.img",
            "--max-age",
            "2h",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let download = text(&out.stdout).trim().to_string();
    assert_eq!(
        download,
        format!("http://127.0.0.1:{files}/artifacts/ci/42/disk.img")
    );
    assert!(
        text(&out.stderr).contains("uploaded 65 MiB of 65 MiB (100%"),
        "progress on stderr: {}",
        text(&out.stderr)
    );
    // fetched from that URL without a token: the same bytes
    let resp = ureq::get(&download).call().expect("download");
    let mut hasher = Sha256::new();
    let mut reader = resp.into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    assert_eq!(size, 65 << 20);
    let zeros = {
        let mut h = Sha256::new();
        h.update(vec![0u8; 65 << 20]);
        hex(h.finalize())
    };
    assert_eq!(hex(hasher.finalize()), zeros);

    // a small file under its own name; both listed
    let small = tmp.path().join("notes.txt");
    std::fs::write(&small, "small\n").expect("write");
    let out = basalt(&url, &token, &["upload", small.to_str().expect("path")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).trim().ends_with("/artifacts/notes.txt"));
    assert!(text(&out.stderr).is_empty(), "no progress for a small file");
    let out = basalt(&url, &token, &["list", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let names: Vec<&str> = list
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, ["ci/42/disk.img", "notes.txt"]);
    let disk = &list[0];
    assert_eq!(disk["sha256"], zeros.as_str());
    assert_eq!(disk["uploader"], "ci");
    let out = basalt(&url, &token, &["list"]);
    let table = text(&out.stdout);
    assert!(
        table.lines().next().is_some_and(|h| h.starts_with("name")) && table.contains("notes.txt"),
        "{table}"
    );

    // past the quota (80M, 65M used): refused, and the CLI says why
    let more = tmp.path().join("more.img");
    let f = std::fs::File::create(&more).expect("create");
    f.set_len(20 << 20).expect("set_len");
    drop(f);
    let out = basalt(&url, &token, &["upload", more.to_str().expect("path")]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("quota"), "{err}");

    // bad name: the master's reason
    let out = basalt(
        &url,
        &token,
        &["upload", small.to_str().expect("path"), "--name", "../x"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("HTTP 400"),
        "{}",
        text(&out.stderr)
    );

    // deleted: gone from the list and the URL
    let out = basalt(&url, &token, &["delete", "ci/42/disk.img"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "deleted ci/42/disk.img");
    match ureq::get(&download).call() {
        Err(ureq::Error::Status(404, _)) => {}
        other => panic!("{:?}", other.map(|r| r.status())),
    }
    let out = basalt(&url, &token, &["list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert!(!Path::new(&state.join("artifacts/blobs").join(&zeros)).exists());
}
