//! A held board's console: latency from a byte the board prints to a watcher that reads it,
//! through the whole path — the board's connection into the hub (`basalt_hal::console::Hub`),
//! the telnet console server of `basalt hold` (`basalt::hold::console`), TCP on 127.0.0.1, a
//! watcher that logged in with the watch token.
//!
//!     cargo bench --bench console_watchers
//!
//! The board is a task writing numbered 64-byte lines into the hub's source (an in-process
//! pipe) at a serial console's rate (115200 baud: a line every 5.5 ms), on the hold's own
//! current-thread runtime as in `basalt hold`; the watchers are threads with blocking sockets
//! (as separate clients would be). For 1 and 10 watchers: p50, p99 and the worst latency over
//! every line every watcher read, next to the anchor (p99 ≤ 20 ms with 10 watchers).

use basalt::hold::console::{ConsoleServer, Tokens};
use basalt_hal::console::hub::{Hub, DEFAULT_BUFFER};
use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

const LINES: usize = 1000;
/// 64 bytes at 115200 baud (10 bits a byte).
const LINE_EVERY: Duration = Duration::from_micros(5_556);

/// Latencies (ms) of every line every watcher read, with `watchers` watchers.
fn run(watchers: usize) -> Vec<f64> {
    let start = Instant::now();
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..LINES).map(|_| AtomicU64::new(0)).collect());
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let board_sent = sent.clone();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let hub = Hub::new("bench board", DEFAULT_BUFFER);
            let (mut board, ours) = tokio::io::duplex(64 * 1024);
            hub.attach(Box::new(ours)).expect("attach");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let server = ConsoleServer::start(
                listener,
                hub.clone(),
                Tokens {
                    console: "bench-console".into(),
                    watch: "bench-watch".into(),
                },
                "bench".into(),
            )
            .expect("server");
            addr_tx.send(server.local_addr()).expect("addr");
            let _ = go_rx.await;
            let mut tick = tokio::time::interval(LINE_EVERY);
            for i in 0..LINES {
                tick.tick().await;
                let line = format!("seq {i:>8} {:-<46}\r\n", "");
                board_sent[i].store(start.elapsed().as_nanos() as u64, Ordering::Release);
                board.write_all(line.as_bytes()).await.expect("board write");
            }
            // once the watchers have read everything
            let _ = done_rx.await;
            server.close().await;
        });
    });
    let addr = addr_rx.recv().expect("the server's address");
    let mut clients = Vec::new();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    for _ in 0..watchers {
        let sent = sent.clone();
        let ready = ready_tx.clone();
        clients.push(std::thread::spawn(move || {
            let mut sock = std::net::TcpStream::connect(addr).expect("connect");
            sock.set_nodelay(true).expect("nodelay");
            sock.write_all(b"bench-watch\r\n").expect("token");
            let mut lines = BufReader::new(sock);
            let mut banner = String::new();
            lines.read_line(&mut banner).expect("banner");
            assert!(banner.contains("(watcher)"), "{banner}");
            let _ = ready.send(());
            let mut lat = Vec::with_capacity(LINES);
            let mut line = String::new();
            loop {
                line.clear();
                match lines.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let now = start.elapsed().as_nanos() as u64;
                let Some(i) = line
                    .strip_prefix("seq ")
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|n| n.parse::<usize>().ok())
                else {
                    continue;
                };
                let t = sent[i].load(Ordering::Acquire);
                lat.push((now.saturating_sub(t)) as f64 / 1e6);
                if i == LINES - 1 {
                    break;
                }
            }
            lat
        }));
    }
    for _ in 0..watchers {
        ready_rx.recv().expect("a watcher is ready");
    }
    let _ = go_tx.send(());
    let mut all = Vec::new();
    for c in clients {
        let lat = c.join().expect("watcher");
        assert_eq!(lat.len(), LINES, "a watcher read every line");
        all.extend(lat);
    }
    let _ = done_tx.send(());
    server.join().expect("server");
    all
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn main() {
    println!(
        "console watchers: {LINES} lines of 64 bytes at 115200 baud, board -> hub -> telnet server -> watcher (127.0.0.1)"
    );
    println!(
        "{:<9} | {:>10} | {:>8} | {:>8} | {:>8} | anchor",
        "watchers", "lines read", "p50 ms", "p99 ms", "max ms"
    );
    println!(
        "{:-<9}-|-{:->10}-|-{:->8}-|-{:->8}-|-{:->8}-|-------",
        "", "", "", "", ""
    );
    for watchers in [1, 10] {
        let mut lat = run(watchers);
        let n = lat.len();
        let p50 = pct(&mut lat, 0.50);
        let p99 = pct(&mut lat, 0.99);
        let max = pct(&mut lat, 1.0);
        let anchor = if watchers == 10 {
            format!(
                "p99 <= 20 ms: {}",
                if p99 <= 20.0 { "met" } else { "MISSED" }
            )
        } else {
            String::new()
        };
        println!("{watchers:<9} | {n:>10} | {p50:>8.3} | {p99:>8.3} | {max:>8.3} | {anchor}");
    }
}
