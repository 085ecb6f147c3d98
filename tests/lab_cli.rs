//! The lab from its binaries, as an admin sets it up: `basalt-master` (SQLite store), a token,
//! a worker key made by `basalt keys generate`, the worker, the device type, the device and
//! its dictionary registered through LAVA's REST API, then `basalt jobs submit --follow` of the
//! QEMU demo job: its log streams to the terminal and it ends Complete.

mod common;

use common::{bin, free_port, Daemon};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn post(url: &str, token: &str, body: serde_json::Value) {
    let r = ureq::post(url)
        .set("Authorization", &format!("Token {token}"))
        .send_json(body);
    match r {
        Ok(_) => {}
        Err(ureq::Error::Status(code, resp)) => {
            panic!("{url}: {code} {}", resp.into_string().unwrap_or_default())
        }
        Err(e) => panic!("{url}: {e}"),
    }
}

#[test]
fn a_job_submitted_with_the_cli_runs_on_the_lab() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (kernel, initrd) = common::fixtures_amd64();
    let tmp = common::TempDir::new("lab-cli");
    let state = tmp.path().join("master");
    let (http, workers) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{http}");
    let _master = Daemon(
        Command::new(bin("basalt-master"))
            .arg("--state-dir")
            .arg(&state)
            .args(["--http", &format!("127.0.0.1:{http}")])
            .args(["--workers", &format!("tcp://127.0.0.1:{workers}")])
            .args(["--heartbeat-secs", "1"])
            .args(["--coordinator", "127.0.0.1:0"])
            .arg("--device-types")
            .arg(repo.join("config/device-types"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
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
        .args(["token", "add", "admin", "--admin"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let keys = state.join("certs/workers");
    let status = Command::new(env!("CARGO_BIN_EXE_basalt"))
        .args(["keys", "generate", "w1", "--dir"])
        .arg(&keys)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let api = format!("{url}/api/v0.2");
    post(
        &format!("{api}/workers/"),
        &token,
        serde_json::json!({"hostname": "w1"}),
    );
    post(
        &format!("{api}/devicetypes/"),
        &token,
        serde_json::json!({"name": "qemu"}),
    );
    post(
        &format!("{api}/devices/"),
        &token,
        serde_json::json!({"hostname": "qemu-1", "device_type": "qemu", "worker_host": "w1",
                           "health": "Unknown"}),
    );
    let dictionary =
        std::fs::read_to_string(repo.join("config/devices/qemu-amd64.jinja2")).unwrap();
    post(
        &format!("{api}/devices/qemu-1/dictionary/"),
        &token,
        serde_json::json!({ "dictionary": dictionary }),
    );
    let _worker = Daemon(
        Command::new(bin("basalt-worker"))
            .args([
                "--name",
                "w1",
                "--master",
                &format!("tcp://127.0.0.1:{workers}"),
            ])
            .arg("--master-key")
            .arg(state.join("certs/master.key"))
            .arg("--key")
            .arg(keys.join("w1.key_secret"))
            .arg("--state-dir")
            .arg(tmp.path().join("worker"))
            .arg("--tftp-root")
            .arg("/var/tmp")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let job = tmp.path().join("demo.yaml");
    std::fs::write(
        &job,
        std::fs::read_to_string(repo.join("config/jobs/demo-qemu.yaml"))
            .unwrap()
            .replace("@KERNEL@", &kernel.to_string_lossy())
            .replace("@INITRD@", &initrd.to_string_lossy()),
    )
    .unwrap();
    let mut cli = Command::new(env!("CARGO_BIN_EXE_basalt"))
        .args(["jobs", "submit"])
        .arg(&job)
        .args(["--follow", "--url", &url, "--token", &token])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // the job has 2 minutes of timeouts; the CLI ends when it is Finished
    let deadline = Instant::now() + Duration::from_secs(150);
    let status = loop {
        if let Some(s) = cli.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = cli.kill();
            panic!("basalt jobs submit --follow did not end");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = cli.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(status.success(), "{stderr}\n{stdout}");
    let id: u64 = stdout.lines().next().unwrap().trim().parse().unwrap();
    assert!(stdout.contains("Job finished: Complete"), "{stdout}");
    assert!(
        stdout.contains("lava-test-case uname"),
        "the console lines streamed"
    );
    assert!(stderr.contains(&format!("job {id}: Complete")), "{stderr}");
    let list = Command::new(env!("CARGO_BIN_EXE_basalt"))
        .args(["jobs", "list", "--json", "--url", &url, "--token", &token])
        .output()
        .unwrap();
    let jobs: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(jobs[0]["health"], "Complete", "{jobs}");
    assert_eq!(jobs[0]["actual_device"], "qemu-1");
}
