//! The artifact store through HTTP, in-process: the engine on a SQLite store in a temporary
//! directory, the API on 127.0.0.1:0 and the downloads on a listener of their own (or on the
//! API's), driven by a blocking HTTP client and, where a client library would tidy the request
//! up (`../x`, `//abs`), by raw HTTP/1.1 over a TCP socket.

use basalt_link::cert::Keypair;
use basalt_master::artifacts::{self, Artifacts};
use basalt_master::engine::{self, Config};
use basalt_master::http;
use basalt_master::store::Store;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const ADMIN: &str = "admin-token-0123456789";
const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789";

/// Where the downloads are served.
#[derive(Clone, Copy, PartialEq)]
enum Downloads {
    /// A listener of their own (`--artifacts-http` another address).
    Own,
    /// The API's listener (`--artifacts-http` = `--http`).
    OnApi,
}

/// A master with an artifact store; stopped and joined when dropped.
struct Master {
    /// `http://127.0.0.1:PORT` of the API.
    api: String,
    /// `http://127.0.0.1:PORT` of the downloads.
    files: String,
    state_dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Master {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start(downloads: Downloads, quota: u64, max_age: Duration) -> Master {
    let dir = tempfile::tempdir().expect("temporary directory");
    let state_dir = dir.path().to_path_buf();
    let store = Store::open(&state_dir.join("basalt.db")).expect("store");
    store.add_token("admin", true, ADMIN).expect("admin token");
    store.add_token("alice", false, ALICE).expect("token");
    store.add_token("bob", false, BOB).expect("token");
    std::fs::create_dir_all(state_dir.join("certs/workers")).expect("certs/workers");
    let (addr_tx, addr_rx) = mpsc::channel::<(SocketAddr, SocketAddr)>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let state = state_dir.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let config = Config {
                state_dir: state.clone(),
                workers: "tcp://127.0.0.1:*".into(),
                key: Keypair::generate(),
                heartbeat: Duration::from_secs(5),
                device_types: Vec::new(),
                version: basalt_proto::ProtocolVersion::CURRENT,
                required_capabilities: basalt_proto::Capabilities::new(),
                anonymous_read: false,
                coordinator: "127.0.0.1:3079".into(),
                coordinator_token: None,
                max_lease: basalt_master::engine::DEFAULT_MAX_LEASE,
            };
            let (mut handle, _) = engine::start(config, Arc::new(store)).expect("engine");
            let api = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let api_addr = api.local_addr().expect("address");
            let own = match downloads {
                Downloads::Own => Some(
                    tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind"),
                ),
                Downloads::OnApi => None,
            };
            let files_addr = own
                .as_ref()
                .map_or(api_addr, |l| l.local_addr().expect("address"));
            let store = Artifacts::open(
                &state.join("artifacts"),
                artifacts::Config {
                    max_age,
                    quota,
                    base_url: format!("http://{files_addr}"),
                },
            )
            .expect("artifact store");
            let sweeper = store.spawn_sweeper();
            handle.artifacts = Some(store.clone());
            let mut router = http::router(handle);
            let routes = artifacts::download::router(store);
            let (stop_files_tx, stop_files_rx) = tokio::sync::oneshot::channel::<()>();
            let files = match own {
                Some(l) => Some(tokio::spawn(async move {
                    axum::serve(l, routes)
                        .with_graceful_shutdown(async {
                            let _ = stop_files_rx.await;
                        })
                        .await
                })),
                None => {
                    router = router.merge(routes);
                    None
                }
            };
            addr_tx.send((api_addr, files_addr)).expect("send");
            axum::serve(api, router)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await
                .expect("serve");
            let _ = stop_files_tx.send(());
            if let Some(f) = files {
                let _ = f.await;
            }
            sweeper.abort();
        });
    });
    let (api, files) = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the master did not start within 30 s");
    Master {
        api: format!("http://{api}"),
        files: format!("http://{files}"),
        state_dir,
        stop: Some(stop_tx),
        thread: Some(thread),
        _dir: dir,
    }
}

fn started() -> Master {
    start(Downloads::Own, 1 << 30, Duration::from_secs(3600))
}

/// An answer: status, headers we look at, body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&self.body).into()))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A request with ureq: `headers` as given, the body when there is one.
fn request(
    method: &str,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Answer {
    let mut req = ureq::request(method, url).timeout(Duration::from_secs(30));
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Token {t}"));
    }
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let result = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .filter_map(|n| resp.header(&n).map(|v| (n.clone(), v.to_string())))
        .collect();
    let mut body = Vec::new();
    resp.into_reader()
        .read_to_end(&mut body)
        .expect("read the body");
    Answer {
        status,
        headers,
        body,
    }
}

/// A raw HTTP/1.1 request (the path sent exactly as given); the status and the body.
fn raw(base: &str, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Token {t}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body).expect("write");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).expect("read");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn put(m: &Master, name: &str, token: Option<&str>, body: &[u8]) -> Answer {
    request(
        "PUT",
        &format!("{}/api/v0.2/artifacts/{name}", m.api),
        token,
        &[],
        Some(body),
    )
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `n` bytes that are not all alike.
fn content(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Waits until `done` holds, at most `limit`.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn upload_and_download_round_trip_with_ranges() {
    let m = started();
    let data = content(3 << 20);
    let up = put(&m, "ci/build-7/rootfs.ext4", Some(ALICE), &data);
    assert_eq!(up.status, 201, "{}", up.json());
    let a = up.json();
    assert_eq!(a["name"], "ci/build-7/rootfs.ext4");
    assert_eq!(a["size"], data.len());
    assert_eq!(a["sha256"], hex(&data));
    assert_eq!(a["uploader"], "alice");
    let url = format!("{}/artifacts/ci/build-7/rootfs.ext4", m.files);
    assert_eq!(a["url"], url);
    assert!(
        a["expires"].as_str().is_some_and(|e| e.ends_with('Z')),
        "{a}"
    );
    assert!(
        a["created"].as_str().is_some_and(|e| e.ends_with('Z')),
        "{a}"
    );

    // listed and shown, with a token
    let list = request(
        "GET",
        &format!("{}/api/v0.2/artifacts/", m.api),
        Some(BOB),
        &[],
        None,
    );
    assert_eq!(list.status, 200);
    let list = list.json();
    assert_eq!(list["count"], 1, "{list}");
    assert_eq!(list["results"][0], a);
    assert_eq!(list["used"], data.len());
    assert_eq!(list["quota"], 1u64 << 30);
    let meta = request(
        "GET",
        &format!("{}/api/v0.2/artifacts/ci/build-7/rootfs.ext4/", m.api),
        Some(BOB),
        &[],
        None,
    );
    assert_eq!((meta.status, meta.json()), (200, a.clone()));

    // downloaded without a token: the same bytes, the ETag is the sha256
    let got = request("GET", &url, None, &[], None);
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len(), data.len());
    assert_eq!(hex(&got.body), hex(&data));
    let etag = format!("\"{}\"", hex(&data));
    assert_eq!(got.header("etag"), Some(etag.as_str()));
    assert_eq!(
        got.header("content-length"),
        Some(data.len().to_string().as_str())
    );
    assert_eq!(got.header("accept-ranges"), Some("bytes"));

    // ranges: 206 with Content-Range
    let size = data.len();
    for (range, start, end) in [
        ("bytes=100-1099", 100, 1099),
        ("bytes=-4096", size - 4096, size - 1),
        (
            &format!("bytes={}-", size - 10) as &str,
            size - 10,
            size - 1,
        ),
    ] {
        let part = request("GET", &url, None, &[("Range", range)], None);
        assert_eq!(part.status, 206, "{range}");
        assert_eq!(part.body, &data[start..=end], "{range}");
        let expected = format!("bytes {start}-{end}/{size}");
        assert_eq!(part.header("content-range"), Some(expected.as_str()));
        assert_eq!(
            part.header("content-length"),
            Some((end - start + 1).to_string().as_str())
        );
    }
    let beyond = request(
        "GET",
        &url,
        None,
        &[("Range", &format!("bytes={size}-"))],
        None,
    );
    assert_eq!(beyond.status, 416);
    assert_eq!(
        beyond.header("content-range"),
        Some(format!("bytes */{size}").as_str())
    );
    // If-Range with another ETag: the whole file; If-None-Match with this one: 304
    let stale = request(
        "GET",
        &url,
        None,
        &[("Range", "bytes=0-9"), ("If-Range", "\"other\"")],
        None,
    );
    assert_eq!((stale.status, stale.body.len()), (200, size));
    let cached = request("GET", &url, None, &[("If-None-Match", &etag)], None);
    assert_eq!(cached.status, 304);
    let head = request("HEAD", &url, None, &[], None);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(size.to_string().as_str())
    );

    // a chunked upload (no Content-Length) replaces it
    let smaller = content(100_000);
    let resp = ureq::put(&format!(
        "{}/api/v0.2/artifacts/ci/build-7/rootfs.ext4",
        m.api
    ))
    .set("Authorization", &format!("Token {ALICE}"))
    .send(&smaller[..])
    .expect("chunked upload");
    assert_eq!(resp.status(), 201);
    let again = request("GET", &url, None, &[], None);
    assert_eq!(again.body, smaller);
    // the old blob is gone: only the new one is on disk
    let blobs: Vec<_> = std::fs::read_dir(m.state_dir.join("artifacts/blobs"))
        .expect("blobs")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(blobs, vec![hex(&smaller)]);

    // deleted by its uploader: gone from the list and the download
    let del = request(
        "DELETE",
        &format!("{}/api/v0.2/artifacts/ci/build-7/rootfs.ext4/", m.api),
        Some(ALICE),
        &[],
        None,
    );
    assert_eq!(del.status, 204);
    assert_eq!(request("GET", &url, None, &[], None).status, 404);
}

#[test]
fn bad_names_are_refused_with_400() {
    let m = started();
    for path in [
        "/api/v0.2/artifacts/../x",
        "/api/v0.2/artifacts/..%2Fx",
        "/api/v0.2/artifacts//abs",
        "/api/v0.2/artifacts/.hidden",
        "/api/v0.2/artifacts/a/.hidden/b",
        "/api/v0.2/artifacts/a//b",
        "/api/v0.2/artifacts/a%20b",
        "/api/v0.2/artifacts/a%5Cb",
    ] {
        let (status, body) = raw(&m.api, "PUT", path, Some(ALICE), b"data");
        assert_eq!(status, 400, "{path}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(msg.contains("artifact name"), "{path}: {body}");
        assert_eq!(v["message"], v["error"], "{body}");
    }
    let long = format!("/api/v0.2/artifacts/{}", "a".repeat(300));
    let (status, body) = raw(&m.api, "PUT", &long, Some(ALICE), b"data");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("at most 255"), "{body}");
    // nothing was stored, nothing left in tmp/
    let list = request(
        "GET",
        &format!("{}/api/v0.2/artifacts/", m.api),
        Some(ALICE),
        &[],
        None,
    );
    assert_eq!(list.json()["count"], 0);
    let tmp = std::fs::read_dir(m.state_dir.join("artifacts/tmp"))
        .expect("tmp")
        .count();
    assert_eq!(tmp, 0);
    // the download listener answers 404 to the same names (nothing outside the store)
    for path in [
        "/artifacts/../basalt.db",
        "/artifacts/..%2Fbasalt.db",
        "/artifacts//etc/passwd",
    ] {
        let (status, _) = raw(&m.files, "GET", path, None, b"");
        assert_eq!(status, 404, "{path}");
    }
}

#[test]
fn tokens_and_owners_are_checked() {
    let m = started();
    // no token: 401 for every API call; a wrong one too
    assert_eq!(put(&m, "x", None, b"1").status, 401);
    assert_eq!(put(&m, "x", Some("not-a-token"), b"1").status, 401);
    let list = request(
        "GET",
        &format!("{}/api/v0.2/artifacts/", m.api),
        None,
        &[],
        None,
    );
    assert_eq!(list.status, 401);
    assert_eq!(put(&m, "x", Some(ALICE), b"alice's").status, 201);
    let del = |token| {
        request(
            "DELETE",
            &format!("{}/api/v0.2/artifacts/x/", m.api),
            token,
            &[],
            None,
        )
        .status
    };
    assert_eq!(del(None), 401);
    // bob may neither replace nor delete alice's; an admin may do both
    let replace = put(&m, "x", Some(BOB), b"bob's");
    assert_eq!(replace.status, 403, "{}", replace.json());
    assert!(
        replace.json()["error"]
            .as_str()
            .unwrap_or("")
            .contains("belongs to alice"),
        "{}",
        replace.json()
    );
    assert_eq!(del(Some(BOB)), 403);
    assert_eq!(put(&m, "x", Some(ADMIN), b"admin's").status, 201);
    let got = request("GET", &format!("{}/artifacts/x", m.files), None, &[], None);
    assert_eq!(got.body, b"admin's");
    assert_eq!(del(Some(ADMIN)), 204);
    assert_eq!(del(Some(ADMIN)), 404);
}

#[test]
fn an_upload_past_the_quota_is_refused_with_507() {
    let m = start(Downloads::Own, 64 << 10, Duration::from_secs(3600));
    assert_eq!(
        put(&m, "first", Some(ALICE), &content(40 << 10)).status,
        201
    );
    let refused = put(&m, "second", Some(ALICE), &content(30 << 10));
    assert_eq!(refused.status, 507);
    let v = refused.json();
    let msg = v["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("the quota is 64.0 KiB")
            && msg.contains("40.0 KiB is used")
            && msg.contains("needs 30.0 KiB"),
        "{msg}"
    );
    assert_eq!(
        (&v["quota"], &v["used"], &v["requested"]),
        (&json!(64 << 10), &json!(40 << 10), &json!(30 << 10))
    );
    // a chunked upload is cut off once past the quota
    let big = content(100 << 10);
    let chunked = ureq::put(&format!("{}/api/v0.2/artifacts/third", m.api))
        .set("Authorization", &format!("Token {ALICE}"))
        .send(&big[..]);
    match chunked {
        Err(ureq::Error::Status(507, _)) => {}
        // the server may close before the client has sent everything: no answer to read
        Err(ureq::Error::Transport(_)) => {}
        other => panic!("{:?}", other.map(|r| r.status())),
    }
    let missing = request(
        "GET",
        &format!("{}/artifacts/third", m.files),
        None,
        &[],
        None,
    );
    assert_eq!(missing.status, 404);
    // space freed, the upload fits
    let del = request(
        "DELETE",
        &format!("{}/api/v0.2/artifacts/first", m.api),
        Some(ALICE),
        &[],
        None,
    );
    assert_eq!(del.status, 204);
    assert_eq!(
        put(&m, "second", Some(ALICE), &content(30 << 10)).status,
        201
    );
}

#[test]
fn artifacts_expire_by_age() {
    let m = start(Downloads::Own, 1 << 20, Duration::from_secs(60));
    // at most the master's maximum
    let too_long = request(
        "PUT",
        &format!("{}/api/v0.2/artifacts/k?max_age=61", m.api),
        Some(ALICE),
        &[],
        Some(b"x"),
    );
    assert_eq!(too_long.status, 400);
    assert!(too_long.json()["error"]
        .as_str()
        .unwrap_or("")
        .contains("60 s"));
    let data = b"expires in a second";
    let up = request(
        "PUT",
        &format!("{}/api/v0.2/artifacts/k?max_age=1", m.api),
        Some(ALICE),
        &[],
        Some(data),
    );
    assert_eq!(up.status, 201);
    let kept = put(&m, "kept", Some(ALICE), b"kept for 60 s");
    assert_eq!(kept.status, 201);
    let url = format!("{}/artifacts/k", m.files);
    assert_eq!(request("GET", &url, None, &[], None).body, data);
    let blob = m.state_dir.join("artifacts/blobs").join(hex(data));
    assert!(blob.exists());
    wait_until(
        Duration::from_secs(10),
        "the artifact expired and its file removed",
        || !blob.exists() && request("GET", &url, None, &[], None).status == 404,
    );
    let list = request(
        "GET",
        &format!("{}/api/v0.2/artifacts/", m.api),
        Some(ALICE),
        &[],
        None,
    );
    let names: Vec<_> = list.json()["results"]
        .as_array()
        .map(|r| r.iter().map(|a| a["name"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(names, vec![json!("kept")]);
}

#[test]
fn downloads_are_served_only_where_configured() {
    let m = started();
    assert_eq!(put(&m, "img", Some(ALICE), b"image").status, 201);
    // the API's listener does not serve them when they have a listener of their own
    let on_api = request("GET", &format!("{}/artifacts/img", m.api), None, &[], None);
    assert_eq!(on_api.status, 404);
    let with_token = request(
        "GET",
        &format!("{}/artifacts/img", m.api),
        Some(ALICE),
        &[],
        None,
    );
    assert_eq!(with_token.status, 404);
    // and the download listener serves nothing else: no API, no listing
    for path in [
        "/api/v0.2/artifacts/",
        "/artifacts/",
        "/api/v0.2/jobs/",
        "/RPC2",
    ] {
        let (status, _) = raw(&m.files, "GET", path, Some(ALICE), b"");
        assert_eq!(status, 404, "{path}");
    }
    assert_eq!(
        request(
            "GET",
            &format!("{}/artifacts/img", m.files),
            None,
            &[],
            None
        )
        .body,
        b"image"
    );
    drop(m);
    // the same address for both: the API's listener serves them
    let m = start(Downloads::OnApi, 1 << 20, Duration::from_secs(60));
    let up = put(&m, "img", Some(ALICE), b"image");
    assert_eq!(up.json()["url"], format!("{}/artifacts/img", m.api));
    let on_api = request("GET", &format!("{}/artifacts/img", m.api), None, &[], None);
    assert_eq!((on_api.status, on_api.body), (200, b"image".to_vec()));
}

#[test]
fn artifact_urls_in_a_job_are_rewritten_at_submission() {
    let m = started();
    let admin = |path: &str, body: Value| {
        let r = request(
            "POST",
            &format!("{}/api/v0.2/{path}", m.api),
            Some(ADMIN),
            &[("Content-Type", "application/json")],
            Some(body.to_string().as_bytes()),
        );
        assert_eq!(r.status, 201, "{path}: {}", r.json());
    };
    admin("workers/", json!({"hostname": "w1"}));
    admin("devicetypes/", json!({"name": "qemu"}));
    admin(
        "devices/",
        json!({"hostname": "qemu-01", "device_type": "qemu", "worker_host": "w1"}),
    );
    assert_eq!(put(&m, "ci/bzImage", Some(ALICE), b"kernel").status, 201);
    let demo = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/jobs/demo-qemu.yaml"
    ))
    .expect("config/jobs/demo-qemu.yaml");
    let job = demo
        .replace("file://@KERNEL@", "artifact:ci/bzImage")
        .replace("file://@INITRD@", "'artifact:ci/initrd.cpio.gz'");
    let submit = |definition: &str| {
        request(
            "POST",
            &format!("{}/api/v0.2/jobs/", m.api),
            Some(ALICE),
            &[("Content-Type", "application/json")],
            Some(json!({ "definition": definition }).to_string().as_bytes()),
        )
    };
    // the initrd is not there: refused, naming it and where it is
    let refused = submit(&job);
    assert_eq!(refused.status, 400, "{}", refused.json());
    let msg = refused.json()["message"].as_str().unwrap_or("").to_string();
    assert!(
        msg.contains("unknown artifact \"ci/initrd.cpio.gz\"")
            && msg.contains("actions[0].deploy.images.initrd.url"),
        "{msg}"
    );
    assert_eq!(
        put(&m, "ci/initrd.cpio.gz", Some(ALICE), b"initrd").status,
        201
    );
    let ok = submit(&job);
    assert_eq!(ok.status, 201, "{}", ok.json());
    let id = ok.json()["job_ids"][0].as_u64().expect("job id");
    let shown = request(
        "GET",
        &format!("{}/api/v0.2/jobs/{id}/", m.api),
        Some(ALICE),
        &[],
        None,
    );
    let definition = shown.json()["definition"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        definition.contains(&format!("url: {}/artifacts/ci/bzImage\n", m.files))
            && definition.contains(&format!("url: {}/artifacts/ci/initrd.cpio.gz\n", m.files)),
        "{definition}"
    );
    assert!(!definition.contains("artifact:"), "{definition}");
    // the rest of the definition is as written, comments included
    assert!(
        definition.starts_with("# basalt's demo job"),
        "{definition}"
    );
}
