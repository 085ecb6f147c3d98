//! CURVE between a ROUTER server with basalt's ZAP handler and DEALER clients, over TCP on
//! 127.0.0.1: an admitted key talks, an unknown key and a plaintext client are refused (and the
//! refused client learns it from its handshake events), a key removed from the folder is
//! refused at its next connection; certificates made by pyzmq load here and ours load there,
//! and a pyzmq CURVE client with basalt's certificate talks to basalt's server.

use basalt_link::cert::{read_public, Keypair};
use basalt_link::zap::{self, Decision, Handshake, HandshakeWatch};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Server {
    ctx: zmq::Context,
    router: zmq::Socket,
    port: u16,
    decisions: mpsc::Receiver<Decision>,
    _zap: zap::ZapHandler,
    key: Keypair,
}

fn server(admitted: &Path) -> Server {
    let ctx = zmq::Context::new();
    let (tx, decisions) = mpsc::channel();
    let handler = zap::start(&ctx, admitted.to_path_buf(), move |d| {
        let _ = tx.send(d);
    })
    .unwrap();
    let key = Keypair::generate();
    let router = zap::server(&ctx, zmq::ROUTER, &key, "tcp://127.0.0.1:*").unwrap();
    let endpoint = router.get_last_endpoint().unwrap().unwrap();
    let port = endpoint.rsplit(':').next().unwrap().parse().unwrap();
    Server {
        ctx,
        router,
        port,
        decisions,
        _zap: handler,
        key,
    }
}

impl Server {
    fn endpoint(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// The next message within `ms`, as (identity, body).
    fn recv(&self, ms: i64) -> Option<(Vec<u8>, Vec<u8>)> {
        if self.router.poll(zmq::POLLIN, ms).ok()? == 0 {
            return None;
        }
        let mut f = self.router.recv_multipart(0).ok()?;
        let body = f.pop()?;
        Some((f.remove(0), body))
    }

    fn decision(&self) -> Decision {
        self.decisions
            .recv_timeout(Duration::from_secs(5))
            .expect("a ZAP decision within 5 s")
    }
}

/// Waits (deadline 5 s) for a handshake event that is not a success.
fn refusal(watch: &HandshakeWatch, what: &str) -> Handshake {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match watch.next(100) {
            Some(Handshake::Succeeded { .. }) | None => continue,
            Some(other) => return other,
        }
    }
    panic!("{what}: no refusal within 5 s");
}

#[test]
fn admitted_keys_talk_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let admitted = dir.path().join("workers");
    let worker = Keypair::generate();
    let (worker_pub, _) = worker.write(&admitted, "worker-01").unwrap();
    let s = server(&admitted);

    // the admitted worker talks, both ways
    let client = zap::client(&s.ctx, zmq::DEALER, &worker, &s.key.public, &s.endpoint()).unwrap();
    client.send("hello", 0).unwrap();
    let (id, body) = s.recv(5000).expect("the admitted worker's message");
    assert_eq!(body, b"hello");
    assert!(matches!(s.decision(), Decision::Admitted { name, .. } if name == "worker-01"));
    s.router
        .send_multipart([id.as_slice(), b"welcome"], 0)
        .unwrap();
    assert_eq!(client.poll(zmq::POLLIN, 5000).unwrap(), 1);
    assert_eq!(client.recv_bytes(0).unwrap(), b"welcome");

    // an unknown key: refused by ZAP, the client sees why
    let stranger = Keypair::generate();
    let c2 = zap::client_socket(&s.ctx, zmq::DEALER, &stranger, &s.key.public).unwrap();
    let w2 = HandshakeWatch::new(&s.ctx, &c2, "stranger").unwrap();
    c2.connect(&s.endpoint()).unwrap();
    c2.send("let me in", 0).unwrap();
    assert!(matches!(
        refusal(&w2, "unknown key"),
        Handshake::RefusedAuth { .. }
    ));
    match s.decision() {
        Decision::Refused { reason, .. } => assert!(reason.contains("not admitted"), "{reason}"),
        d => panic!("{d:?}"),
    }
    assert!(s.recv(0).is_none(), "a refused client's message arrived");

    // a plaintext client: refused by mechanism before ZAP
    let plain = s.ctx.socket(zmq::DEALER).unwrap();
    plain.set_linger(0).unwrap();
    let w3 = HandshakeWatch::new(&s.ctx, &plain, "plain").unwrap();
    plain.connect(&s.endpoint()).unwrap();
    plain.send("plaintext", 0).unwrap();
    assert!(matches!(
        refusal(&w3, "plaintext"),
        Handshake::FailedProtocol { .. } | Handshake::Failed { .. }
    ));
    assert!(s.recv(0).is_none(), "a plaintext message arrived");

    // a client pinned to another server key never gets through either
    let other = Keypair::generate();
    let c4 = s.ctx.socket(zmq::DEALER).unwrap();
    c4.set_curve_serverkey(&other.public.0).unwrap();
    c4.set_curve_publickey(&worker.public.0).unwrap();
    c4.set_curve_secretkey(worker.secret_bytes()).unwrap();
    c4.set_linger(0).unwrap();
    // the server drops what it cannot decrypt without a word: the client's handshake times
    // out, which its events report
    c4.set_handshake_ivl(500).unwrap();
    let w4 = HandshakeWatch::new(&s.ctx, &c4, "wrong-server").unwrap();
    c4.connect(&s.endpoint()).unwrap();
    c4.send("hello?", 0).unwrap();
    let _ = refusal(&w4, "wrong server key");
    assert!(s.recv(0).is_none());

    // the key removed: the worker's next connection is refused
    std::fs::remove_file(&worker_pub).unwrap();
    let c5 = zap::client_socket(&s.ctx, zmq::DEALER, &worker, &s.key.public).unwrap();
    let w5 = HandshakeWatch::new(&s.ctx, &c5, "removed").unwrap();
    c5.connect(&s.endpoint()).unwrap();
    c5.send("still me", 0).unwrap();
    assert!(matches!(
        refusal(&w5, "removed key"),
        Handshake::RefusedAuth { .. }
    ));
    // and a key added is admitted without a restart
    let late = Keypair::generate();
    late.write(&admitted, "worker-02").unwrap();
    let c6 = zap::client(&s.ctx, zmq::DEALER, &late, &s.key.public, &s.endpoint()).unwrap();
    c6.send("new here", 0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = None;
    while got.is_none() && Instant::now() < deadline {
        got = s.recv(100).filter(|(_, b)| b == b"new here");
    }
    assert!(got.is_some(), "the added worker's message");
}

const PYTHON: &str = "/usr/bin/python3";

fn pyzmq() -> bool {
    std::process::Command::new(PYTHON)
        .args(["-c", "import zmq.auth"])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn certificates_are_pyzmqs() {
    assert!(
        pyzmq(),
        "pyzmq is missing: scripts/install-deps.sh installs python3-zmq"
    );
    let dir = tempfile::tempdir().unwrap();
    // pyzmq's certificates load here
    let out = std::process::Command::new(PYTHON)
        .arg("-c")
        .arg("import sys, zmq.auth; p, s = zmq.auth.create_certificates(sys.argv[1], 'py'); print(zmq.auth.load_certificate(s)[0].decode())")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py_public = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(
        read_public(&dir.path().join("py.key")).unwrap().z85(),
        py_public
    );
    let kp = Keypair::read(&dir.path().join("py.key_secret")).unwrap();
    assert_eq!(kp.public.z85(), py_public);

    // ours load there, and a pyzmq CURVE client with our certificate talks to our server
    let admitted = dir.path().join("workers");
    let worker = Keypair::generate();
    let (_, worker_secret) = worker.write(&admitted, "pyworker").unwrap();
    let s = server(&admitted);
    let (server_pub, _) = s.key.write(dir.path(), "master").unwrap();
    let script = r#"
import sys, zmq, zmq.auth
wpub, wsec = zmq.auth.load_certificate(sys.argv[1])
spub, _ = zmq.auth.load_certificate(sys.argv[2])
c = zmq.Context().socket(zmq.DEALER)
c.curve_publickey, c.curve_secretkey, c.curve_serverkey = wpub, wsec, spub
c.linger = 0
c.connect(sys.argv[3])
c.send(b"from pyzmq")
if not c.poll(5000):
    sys.exit("no answer")
print(c.recv().decode())
"#;
    let mut child = std::process::Command::new(PYTHON)
        .arg("-c")
        .arg(script)
        .arg(&worker_secret)
        .arg(&server_pub)
        .arg(s.endpoint())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let got = s.recv(10_000);
    let Some((id, body)) = got else {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "nothing from pyzmq: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    assert_eq!(body, b"from pyzmq");
    s.router
        .send_multipart([id.as_slice(), b"hello pyzmq"], 0)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello pyzmq");
}
