//! XML-RPC `scheduler.jobs.logs` of a finished job with a ~100 MiB log, called the way
//! lavacli's `jobs logs` calls it (`(job_id, line)` until `finished`), against the master
//! in-process. The client reads the reply as a stream (a 64 KiB buffer, the base64 decoded
//! on the fly to count the lines) and keeps none of it, so the process's RSS growth is the
//! server's. VmRSS of `/proc/self/status` is read before the first call, every 2 ms while the
//! log streams (the peak) and after. Goal: growth ≤ 16 MiB.
//!
//!     cargo bench -p basalt-master --bench rpc_logs
//!
//! `BASALT_BENCH_LOG_MIB` changes the log's size.

use basalt_master::logs::JobLogFile;
use basalt_master::store::Store;
use basalt_master::xmlrpc::{self, Value};
use base64::Engine as _;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../tests/support/master.rs"]
mod master;

const ADMIN: &str = "admin-token-0123456789";
const MIB: f64 = 1024.0 * 1024.0;

/// This process's resident set (kB → bytes).
fn vm_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// What one `logs` reply held.
struct Reply {
    finished: bool,
    /// Bytes of the HTTP body.
    body: u64,
    /// Bytes of the log (decoded) and its lines.
    log: u64,
    lines: u64,
}

/// Calls `scheduler.jobs.logs(job_id, line)` and reads the reply a buffer at a time.
fn logs(url: &str, auth: &str, job: u64, line: u64) -> Reply {
    let body = xmlrpc::call(
        "scheduler.jobs.logs",
        &[Value::String(job.to_string()), Value::Int(line as i64)],
    );
    let resp = ureq::post(url)
        .set("Content-Type", "text/xml")
        .set("Authorization", auth)
        .send_string(&body)
        .expect("scheduler.jobs.logs");
    let mut reader = resp.into_reader();
    let mut buf = vec![0u8; 64 << 10];
    let mut head = Vec::new();
    let mut in_data = false;
    let mut done = false;
    // base64 not yet decoded (fewer than 4 characters)
    let mut carry = Vec::new();
    let mut decoded = Vec::with_capacity(48 << 10);
    let mut r = Reply {
        finished: false,
        body: 0,
        log: 0,
        lines: 0,
    };
    loop {
        let n = reader.read(&mut buf).expect("read the reply");
        if n == 0 {
            break;
        }
        r.body += n as u64;
        let mut data = &buf[..n];
        if !in_data {
            head.extend_from_slice(data);
            let Some(at) = find(&head, b"<base64>") else {
                assert!(head.len() < 4096, "no <base64> in the reply's start");
                continue;
            };
            let prefix = String::from_utf8_lossy(&head[..at]);
            assert!(
                prefix.contains("<methodResponse>") && !prefix.contains("<fault>"),
                "not a reply: {prefix}"
            );
            r.finished = prefix.contains("<boolean>1</boolean>");
            in_data = true;
            let rest = head.split_off(at + b"<base64>".len());
            carry = rest;
            data = &[];
        }
        if done {
            continue;
        }
        carry.extend_from_slice(data);
        let end = carry.iter().position(|b| *b == b'<');
        let usable = match end {
            Some(e) => e,
            None => carry.len() / 4 * 4,
        };
        decoded.clear();
        base64::engine::general_purpose::STANDARD
            .decode_vec(&carry[..usable], &mut decoded)
            .expect("base64");
        r.log += decoded.len() as u64;
        r.lines += decoded.iter().filter(|b| **b == b'\n').count() as u64;
        if end.is_some() {
            done = true;
            carry.clear();
        } else {
            carry.drain(..usable);
        }
    }
    assert!(in_data && done, "the reply ended before </base64>");
    r
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn main() {
    let mib: u64 = std::env::var("BASALT_BENCH_LOG_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().expect("temporary directory");
    let state = dir.path().to_path_buf();
    let db = state.join("basalt.db");
    let store = Store::open(&db).expect("store");
    store.add_token("admin", true, ADMIN).expect("admin token");
    // one finished job (Complete), as the job-list bench stores them
    rusqlite::Connection::open(&db)
        .expect("sqlite")
        .execute_batch(
            "INSERT INTO jobs (submitter, description, definition, requested_device_type, tags,
                               priority, health_check, state, health, actual_device, submit_time,
                               start_time, end_time)
             VALUES ('admin', 'a long log', 'device_type: qemu\njob_name: a long log\n', 'qemu',
                     '', 50, 0, 5, 1, 'qemu-1', 1764547200000, 1764547201000, 1764550800000)",
        )
        .expect("job");
    let job = 1u64;

    // the log as the engine stores it: LAVA's records appended batch after batch
    let t0 = Instant::now();
    let mut log = JobLogFile::open(&state.join("jobs").join(job.to_string())).expect("log");
    let want = mib << 20;
    let mut seq = 1u64;
    let mut batch = Vec::with_capacity(10_000);
    while log.commit().bytes < want {
        batch.clear();
        for i in 0..10_000u64 {
            let n = seq + i;
            batch.push(format!(
                "- {{\"dt\": \"2026-07-01T00:{:02}:{:02}.{:06}\", \"lvl\": \"target\", \"msg\": \"[{:>10}] console line {n} {}\"}}",
                n / 60 % 60,
                n % 60,
                n % 1_000_000,
                n,
                "x".repeat((n % 61) as usize)
            ));
        }
        log.append(seq, &batch).expect("append");
        seq += batch.len() as u64;
    }
    let stored = log.commit();
    drop((log, batch));
    let fill = t0.elapsed().as_secs_f64();

    let served = master::serve(state.clone(), store);
    let url = format!("http://{}/RPC2", served.addr);
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN}"))
    );
    // the server's threads and allocator warmed by a small call
    let version = ureq::post(&url)
        .set("Authorization", &auth)
        .send_string(&xmlrpc::call("system.version", &[]))
        .expect("system.version")
        .into_string()
        .expect("body");
    assert!(version.contains("<string>"), "{version}");
    std::thread::sleep(Duration::from_millis(200));

    let before = vm_rss();
    let peak = Arc::new(AtomicU64::new(before));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(vm_rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    // lavacli's `jobs logs`: from line 0, again from the next line until the job is finished
    let t0 = Instant::now();
    let (mut line, mut calls, mut body, mut bytes) = (0u64, 0u32, 0u64, 0u64);
    loop {
        let r = logs(&url, &auth, job, line);
        calls += 1;
        line += r.lines;
        body += r.body;
        bytes += r.log;
        if r.finished {
            break;
        }
        assert!(calls < 1000, "the job never reads as finished");
    }
    let secs = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");
    let peak = peak.load(Ordering::Relaxed).max(vm_rss());
    std::thread::sleep(Duration::from_millis(200));
    let after = vm_rss();
    assert_eq!(bytes, stored.bytes, "the whole log, once");
    assert_eq!(line, stored.seq, "every line");

    // LAVA's REST `logs/` of the same log (what lava-api and the CLI read), streamed too
    let rest_before = vm_rss();
    let rest_peak = Arc::new(AtomicU64::new(rest_before));
    let rest_stop = Arc::new(AtomicBool::new(false));
    let rest_sampler = {
        let (peak, stop) = (rest_peak.clone(), rest_stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(vm_rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let t1 = Instant::now();
    let mut reader = ureq::get(&format!("http://{}/api/v0.2/jobs/{job}/logs/", served.addr))
        .set("Authorization", &format!("Token {ADMIN}"))
        .call()
        .expect("REST logs")
        .into_reader();
    let mut buf = vec![0u8; 64 << 10];
    let mut rest_bytes = 0u64;
    loop {
        let n = std::io::Read::read(&mut reader, &mut buf).expect("REST body");
        if n == 0 {
            break;
        }
        rest_bytes += n as u64;
    }
    let rest_secs = t1.elapsed().as_secs_f64();
    rest_stop.store(true, Ordering::Relaxed);
    rest_sampler.join().expect("sampler");
    let rest_growth = rest_peak
        .load(Ordering::Relaxed)
        .max(vm_rss())
        .saturating_sub(rest_before);
    assert_eq!(rest_bytes, stored.bytes, "REST: the whole log, once");
    drop(served);

    let growth = peak.saturating_sub(before);
    println!(
        "scheduler.jobs.logs of a {:.1} MiB log ({} lines, stored in {fill:.1} s), lavacli's loop",
        stored.bytes as f64 / MIB,
        stored.seq
    );
    println!("{:<44} | {:>9} | goal", "measure", "value");
    println!("{:-<44}-|-{:-<9}-|-------", "", "");
    let rows: Vec<(&str, String, &str)> = vec![
        ("calls until finished", calls.to_string(), ""),
        (
            "log bytes streamed (MiB)",
            format!("{:.1}", bytes as f64 / MIB),
            "",
        ),
        (
            "reply bodies, base64 in XML (MiB)",
            format!("{:.1}", body as f64 / MIB),
            "",
        ),
        ("time (s)", format!("{secs:.2}"), ""),
        ("log MiB/s", format!("{:.0}", bytes as f64 / MIB / secs), ""),
        (
            "RSS before (MiB)",
            format!("{:.1}", before as f64 / MIB),
            "",
        ),
        (
            "RSS peak while streaming (MiB)",
            format!("{:.1}", peak as f64 / MIB),
            "",
        ),
        ("RSS after (MiB)", format!("{:.1}", after as f64 / MIB), ""),
        (
            "RSS growth, peak - before (MiB)",
            format!("{:.1}", growth as f64 / MIB),
            "≤ 16",
        ),
        (
            "REST jobs/ID/logs/: MiB/s",
            format!("{:.0}", rest_bytes as f64 / MIB / rest_secs),
            "",
        ),
        (
            "REST jobs/ID/logs/: RSS growth (MiB)",
            format!("{:.1}", rest_growth as f64 / MIB),
            "≤ 16",
        ),
    ];
    for (name, value, goal) in rows {
        println!("{name:<44} | {value:>9} | {goal}");
    }
    assert!(
        rest_growth <= 16 << 20,
        "RSS grew by {:.1} MiB while streaming REST logs",
        rest_growth as f64 / MIB
    );
    assert!(
        growth <= 16 << 20,
        "RSS grew by {:.1} MiB while streaming",
        growth as f64 / MIB
    );
}
