//! Test support: a master in-process — the engine on a store (no worker connects; its workers
//! socket is on a free port) and the HTTP API on 127.0.0.1:0 — stopped and joined when
//! dropped. Shared by the REST and XML-RPC tests and the job-list bench.

use basalt_link::cert::Keypair;
use basalt_master::engine::{self, Config};
use basalt_master::http;
use basalt_master::store::Store;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// The running master.
pub struct Served {
    pub addr: SocketAddr,
    /// Its workers endpoint (`tcp://127.0.0.1:PORT`) and public key, for a fake worker.
    #[allow(dead_code)]
    pub workers: String,
    #[allow(dead_code)]
    pub master_key: basalt_link::cert::PublicKey,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves `store` with its state (keys, logs) in `state_dir`, reads needing a token (the
/// default).
#[allow(dead_code)] // not every test binary that includes this module calls each
pub fn serve(state_dir: PathBuf, store: Store) -> Served {
    serve_with(state_dir, store, false)
}

/// Serves `store`, reads without a token when `anonymous_read` (`--anonymous-read`).
pub fn serve_with(state_dir: PathBuf, store: Store, anonymous_read: bool) -> Served {
    serve_clocked(state_dir, store, anonymous_read, Arc::new(engine::now_ms))
}

/// Serves `store` with the engine planning health checks by `clock`.
#[allow(dead_code)] // not every test binary that includes this module calls each
pub fn serve_clocked(
    state_dir: PathBuf,
    store: Store,
    anonymous_read: bool,
    clock: engine::Clock,
) -> Served {
    std::fs::create_dir_all(state_dir.join("certs/workers")).expect("certs/workers");
    let (addr_tx, addr_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let config = Config {
                state_dir,
                workers: "tcp://127.0.0.1:*".into(),
                key: Keypair::generate(),
                heartbeat: Duration::from_secs(5),
                device_types: Vec::new(),
                version: basalt_proto::ProtocolVersion::CURRENT,
                required_capabilities: basalt_proto::Capabilities::new(),
                anonymous_read,
                coordinator: "127.0.0.1:3079".into(),
                coordinator_token: None,
                max_lease: engine::DEFAULT_MAX_LEASE,
            };
            let key = config.key.public;
            let (handle, endpoint) =
                engine::start_with_clock(config, Arc::new(store), clock).expect("engine");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            addr_tx
                .send((listener.local_addr().expect("local address"), endpoint, key))
                .expect("send address");
            http::serve(listener, handle, async {
                let _ = stop_rx.await;
            })
            .await
            .expect("serve");
        });
    });
    let (addr, workers, master_key) = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server did not start within 30 s");
    Served {
        addr,
        workers,
        master_key,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

/// One request to the REST API at `base` (`http://HOST:PORT/api/v0.2/`), with `token` when
/// given: its status and body (JSON when it is JSON, else a string).
#[allow(dead_code)] // not every test binary that includes this module calls each
pub fn request(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut req = ureq::request(method, &format!("{base}{path}")).timeout(Duration::from_secs(10));
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Token {t}"));
    }
    let result = match body {
        Some(b) => req.set("Content-Type", "application/json").send_string(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().expect("body");
    let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, value)
}
