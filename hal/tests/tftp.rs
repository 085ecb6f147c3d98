//! basalt's TFTP server on 127.0.0.1: confinement to the root, negotiation, windows, loss,
//! duplicate ACKs, many clients, a vanished client.

mod common;
#[path = "common/tftp_client.rs"]
mod tftp_client;

use basalt_hal::staging::{TftpConfig, TftpServer, TftpStats};
use common::wait_until_async;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tftp_client::{fetch, ClientError, Opts};
use tokio::net::UdpSocket;

/// Bytes that differ block to block (so a block sent twice or out of order shows).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct Lab {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    addr: SocketAddr,
    stats: Arc<TftpStats>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A root with a job directory `basalt-job/` and a server on 127.0.0.1.
async fn lab(config: TftpConfig) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("basalt-job/kernel")).unwrap();
    std::fs::write(dir.path().join("secret"), b"outside the root").unwrap();
    let server = TftpServer::bind("127.0.0.1:0".parse().unwrap(), &root, config)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let stats = server.stats();
    let task = tokio::spawn(server.serve());
    Lab {
        _dir: dir,
        root,
        addr,
        stats,
        task,
    }
}

fn fast() -> TftpConfig {
    TftpConfig {
        timeout: Duration::from_millis(100),
        ..TftpConfig::default()
    }
}

fn opts() -> Opts {
    Opts {
        retransmit: Duration::from_millis(100),
        ..Opts::default()
    }
}

fn put(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn tftp_error(r: Result<tftp_client::Fetched, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Tftp(code, msg)) => (code, msg),
        other => panic!("expected a TFTP error, got {other:?}"),
    }
}

#[tokio::test]
async fn paths_leaving_the_root_are_refused_with_a_tftp_error() {
    let lab = lab(fast()).await;
    let root = &lab.root;
    put(root, "basalt-job/kernel/Image", b"kernel");
    let outside = root.parent().unwrap().join("secret");
    std::os::unix::fs::symlink(&outside, root.join("basalt-job/abs-out")).unwrap();
    std::os::unix::fs::symlink("../../secret", root.join("basalt-job/rel-out")).unwrap();
    std::os::unix::fs::symlink("kernel/Image", root.join("basalt-job/inside")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
    let o = opts();
    // what a board asks for: relative to the root, or the root's own absolute path
    let r = fetch(lab.addr, b"basalt-job/kernel/Image", &o)
        .await
        .unwrap();
    assert_eq!(r.data, b"kernel");
    let abs = format!(
        "{}/basalt-job/kernel/Image",
        root.canonicalize().unwrap().display()
    );
    assert_eq!(
        fetch(lab.addr, abs.as_bytes(), &o).await.unwrap().data,
        b"kernel"
    );
    // a symlink that stays inside the root is followed
    assert_eq!(
        fetch(lab.addr, b"basalt-job/inside", &o)
            .await
            .unwrap()
            .data,
        b"kernel"
    );
    let secret = outside.display().to_string();
    for bad in [
        "../secret",
        "basalt-job/../../secret",
        "basalt-job/kernel/../../../secret",
        "/etc/passwd",
        secret.as_str(),
        "basalt-job/abs-out",
        "basalt-job/rel-out",
        "etc/passwd",
        "basalt-job",
        "basalt-job/kernel",
        ".",
    ] {
        let (code, msg) = tftp_error(fetch(lab.addr, bad.as_bytes(), &o).await);
        assert_eq!(code, 2, "{bad}: {msg}");
        assert!(msg.starts_with("Access violation"), "{bad}: {msg}");
    }
    let (code, _) = tftp_error(fetch(lab.addr, b"basalt-job/missing", &o).await);
    assert_eq!(code, 1);
    assert_eq!(lab.stats.completed(), 3);
}

#[tokio::test]
async fn bad_packets_and_writes_get_errors_and_the_server_goes_on() {
    let lab = lab(fast()).await;
    put(&lab.root, "basalt-job/f", &pattern(3000, 1));
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = [0u8; 1024];
    for (bad, code) in [
        (&b""[..], 4u16),
        (b"\xff", 4),
        (b"\0\x01no-nul", 4),
        (b"\0\x01f\0", 4),
        (b"\0\x01f\0weird\0", 4),
        (b"\0\x04\0\x01", 4),
        (b"\0\x02basalt-job/new\0octet\0", 2),
    ] {
        sock.send_to(bad, lab.addr).await.unwrap();
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .expect("an error packet")
            .unwrap();
        assert_eq!(&buf[..2], &[0, 5], "{bad:?}");
        assert_eq!(u16::from_be_bytes([buf[2], buf[3]]), code, "{bad:?}");
        assert_eq!(buf[n - 1], 0);
    }
    assert!(!lab.root.join("basalt-job/new").exists());
    let r = fetch(lab.addr, b"basalt-job/f", &opts()).await.unwrap();
    assert_eq!(r.data, pattern(3000, 1));
    // a client that answers a transfer with garbage ends only its own transfer
    sock.send_to(&tftp_client::rrq(b"basalt-job/f", &opts()), lab.addr)
        .await
        .unwrap();
    let (_, tid) = sock.recv_from(&mut buf).await.unwrap();
    sock.send_to(b"\0\x03\0\x01junk", tid).await.unwrap();
    let (_, _) = sock.recv_from(&mut buf).await.unwrap();
    // (a DATA resent before the error may come first)
    assert!(wait_until_async(Duration::from_secs(5), || lab.stats.active() == 0).await);
    let r = fetch(lab.addr, b"basalt-job/f", &opts()).await.unwrap();
    assert_eq!(r.data, pattern(3000, 1));
}

#[tokio::test]
async fn tsize_blksize_and_timeout_are_negotiated() {
    let lab = lab(TftpConfig {
        max_blksize: 4096,
        ..fast()
    })
    .await;
    let data = pattern(10_000, 2);
    put(&lab.root, "basalt-job/f", &data);
    put(&lab.root, "basalt-job/empty", b"");
    put(&lab.root, "basalt-job/even", &pattern(1024, 3));
    // no options: no OACK, 512-byte blocks
    let r = fetch(lab.addr, b"basalt-job/f", &opts()).await.unwrap();
    assert!(r.oack.is_none());
    assert_eq!(r.data, data);
    assert_eq!(r.data_packets, 20);
    let o = Opts {
        blksize: Some(1468),
        tsize: true,
        timeout_opt: Some(3),
        ..opts()
    };
    let r = fetch(lab.addr, b"basalt-job/f", &o).await.unwrap();
    let oack = r.oack.clone().unwrap();
    assert!(
        oack.contains(&("blksize".into(), "1468".into())),
        "{oack:?}"
    );
    assert!(oack.contains(&("tsize".into(), "10000".into())), "{oack:?}");
    assert!(oack.contains(&("timeout".into(), "3".into())), "{oack:?}");
    assert_eq!(r.data, data);
    assert_eq!(r.data_packets, 7);
    // a blksize above the server's largest is granted as its largest
    let big = Opts {
        blksize: Some(65464),
        ..opts()
    };
    let r = fetch(lab.addr, b"basalt-job/f", &big).await.unwrap();
    assert_eq!(r.oack.unwrap(), vec![("blksize".into(), "4096".into())]);
    assert_eq!(r.data, data);
    // an empty file, and one of whole blocks: both end with a short (empty) block
    let ts = Opts {
        tsize: true,
        ..opts()
    };
    let r = fetch(lab.addr, b"basalt-job/empty", &ts).await.unwrap();
    assert_eq!(r.oack.unwrap(), vec![("tsize".into(), "0".into())]);
    assert!(r.data.is_empty());
    let r = fetch(lab.addr, b"basalt-job/even", &opts()).await.unwrap();
    assert_eq!((r.data.len(), r.data_packets), (1024, 3));
    // netascii: converted, and no tsize (the converted size is not known up front)
    put(&lab.root, "basalt-job/text", b"a\nb\rc");
    let na = Opts {
        netascii: true,
        tsize: true,
        ..opts()
    };
    let r = fetch(lab.addr, b"basalt-job/text", &na).await.unwrap();
    assert!(r.oack.is_none());
    assert_eq!(r.data, b"a\r\nb\r\0c");
}

#[tokio::test]
async fn windowsize_transfers_complete_across_block_number_rollover() {
    let lab = lab(fast()).await;
    let data = pattern(3 * 1024 * 1024 + 77, 4);
    put(&lab.root, "basalt-job/ramdisk", &data);
    for (blksize, window) in [(1468u16, 16u16), (8192, 4), (512, 64), (1468, 1)] {
        let o = Opts {
            blksize: Some(blksize),
            windowsize: Some(window),
            tsize: true,
            ..opts()
        };
        let r = fetch(lab.addr, b"basalt-job/ramdisk", &o).await.unwrap();
        let oack = r.oack.clone().unwrap();
        assert!(
            oack.contains(&("windowsize".into(), window.to_string())),
            "{oack:?}"
        );
        assert!(r.data == data, "blksize {blksize} windowsize {window}");
        // loopback loses nothing: every block went out once
        assert_eq!(r.data_packets, data.len() as u64 / u64::from(blksize) + 1);
    }
    // 6144 blocks of 512 at blksize 512 do not roll over: 40,000 blocks of 8 bytes do
    let small = pattern(8 * 70_000 + 3, 5);
    put(&lab.root, "basalt-job/many", &small);
    let o = Opts {
        blksize: Some(8),
        windowsize: Some(32),
        ..opts()
    };
    let r = fetch(lab.addr, b"basalt-job/many", &o).await.unwrap();
    assert!(r.data == small);
}

#[tokio::test]
async fn a_client_that_loses_every_tenth_packet_still_completes() {
    let lab = lab(TftpConfig {
        timeout: Duration::from_millis(50),
        ..TftpConfig::default()
    })
    .await;
    let data = pattern(200 * 512 + 5, 6);
    put(&lab.root, "basalt-job/lossy", &data);
    for (blksize, window) in [(None, None), (Some(1024), Some(8)), (Some(512), Some(16))] {
        let o = Opts {
            blksize,
            windowsize: window,
            drop_every: Some(10),
            retransmit: Duration::from_millis(50),
            ..Opts::default()
        };
        let r = fetch(lab.addr, b"basalt-job/lossy", &o).await.unwrap();
        assert!(r.data == data, "blksize {blksize:?} window {window:?}");
        assert!(
            r.data_packets > data.len() as u64 / 1024,
            "packets were resent"
        );
    }
}

#[tokio::test]
async fn duplicate_acks_do_not_make_the_server_resend() {
    let lab = lab(fast()).await;
    let data = pattern(300 * 512 + 1, 7);
    put(&lab.root, "basalt-job/f", &data);
    let o = Opts {
        dup_acks: true,
        ..opts()
    };
    let r = fetch(lab.addr, b"basalt-job/f", &o).await.unwrap();
    assert!(r.data == data);
    // RFC 1350's Sorcerer's Apprentice: answering each duplicate would double every block
    assert_eq!(r.data_packets, 301);
    let w = Opts {
        dup_acks: true,
        windowsize: Some(8),
        ..opts()
    };
    let r = fetch(lab.addr, b"basalt-job/f", &w).await.unwrap();
    assert!(r.data == data);
    assert!(r.data_packets < 2 * 301, "{} packets", r.data_packets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_clients_at_once() {
    let lab = lab(fast()).await;
    let files: Vec<Vec<u8>> = (0..20)
        .map(|i| pattern(1024 * 1024 + i * 100, i as u64 + 10))
        .collect();
    for (i, f) in files.iter().enumerate() {
        put(&lab.root, &format!("basalt-job-{i}/kernel"), f);
    }
    let mut tasks = Vec::new();
    for i in 0..20usize {
        let addr = lab.addr;
        tasks.push(tokio::spawn(async move {
            let o = Opts {
                blksize: Some(1468),
                windowsize: Some(if i % 2 == 0 { 1 } else { 16 }),
                give_up: Duration::from_secs(30),
                ..opts()
            };
            fetch(addr, format!("basalt-job-{i}/kernel").as_bytes(), &o).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.unwrap().unwrap();
        assert!(r.data == files[i], "client {i}");
    }
    assert!(wait_until_async(Duration::from_secs(5), || lab.stats.completed() == 20).await);
    assert_eq!(lab.stats.active(), 0);
}

#[tokio::test]
async fn a_vanished_client_is_given_up_after_its_timeout() {
    let lab = lab(TftpConfig {
        timeout: Duration::from_millis(100),
        retries: 3,
        ..TftpConfig::default()
    })
    .await;
    put(&lab.root, "basalt-job/f", &pattern(100_000, 8));
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let started = Instant::now();
    sock.send_to(
        &tftp_client::rrq(b"basalt-job/f", &Opts::default()),
        lab.addr,
    )
    .await
    .unwrap();
    // the client reads what comes and never acknowledges: block 1, then its resends
    let mut buf = [0u8; 1024];
    let mut copies = 0;
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await
    {
        assert_eq!(&buf[..4], &[0, 3, 0, 1]);
        assert_eq!(n, 516);
        copies += 1;
    }
    // sent once and resent after each of its 3 timeouts, then given up
    assert_eq!(copies, 4);
    assert!(wait_until_async(Duration::from_secs(5), || lab.stats.given_up() == 1).await);
    assert_eq!(lab.stats.active(), 0);
    assert!(started.elapsed() >= Duration::from_millis(400));
    // the server still serves
    let r = fetch(lab.addr, b"basalt-job/f", &opts()).await.unwrap();
    assert_eq!(r.data.len(), 100_000);
}

#[tokio::test]
async fn replies_come_from_the_address_the_request_was_sent_to() {
    // a listener on every address (an ephemeral port, answering loopback clients only: no
    // packet leaves the host), reached at two loopback addresses
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(3000, 9);
    put(dir.path(), "basalt-job/f", &data);
    let server = TftpServer::bind("0.0.0.0:0".parse().unwrap(), dir.path(), fast())
        .await
        .unwrap();
    let port = server.local_addr().unwrap().port();
    let task = tokio::spawn(server.serve());
    struct Abort(tokio::task::JoinHandle<std::io::Result<()>>);
    impl Drop for Abort {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _task = Abort(task);
    for ip in ["127.0.0.1", "127.0.0.2"] {
        let server: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        // the first packet's source: what a client (U-Boot among them) checks
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.send_to(&tftp_client::rrq(b"basalt-job/f", &Opts::default()), server)
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..4], &[0, 3, 0, 1], "{ip}");
        assert_eq!(n, 516);
        assert_eq!(from.ip().to_string(), ip, "the reply's source");
        assert_ne!(from.port(), port, "a transfer port of its own");
        // and a whole transfer (the client drops packets from any other address)
        let r = fetch(server, b"basalt-job/f", &opts()).await.unwrap();
        assert!(r.data == data, "{ip}");
    }
}

#[tokio::test]
async fn stopping_the_server_ends_its_transfers() {
    // a client that never acknowledges, and a timeout far longer than the test waits
    let lab = lab(TftpConfig {
        timeout: Duration::from_secs(30),
        ..TftpConfig::default()
    })
    .await;
    put(&lab.root, "basalt-job/f", &pattern(100_000, 11));
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(
        &tftp_client::rrq(b"basalt-job/f", &Opts::default()),
        lab.addr,
    )
    .await
    .unwrap();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..4], &[0, 3, 0, 1]);
    assert_eq!(lab.stats.active(), 1);
    lab.task.abort();
    assert!(wait_until_async(Duration::from_secs(3), || lab.stats.active() == 0).await);
    assert_eq!(lab.stats.aborted(), 1);
}
