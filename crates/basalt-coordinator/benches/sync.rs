//! `cargo bench -p basalt-coordinator --bench sync`: `lava_sync` across 10 nodes, the time
//! from the last node's arrival to the release of all of them; basalt's server (held
//! requests) beside Debian's lava-coordinator polled every poll_delay (3 s as shipped, 1 s).
//! Prints a table. `SYNC_BENCH_QUICK=1`: fewer rounds.

#[path = "../tests/common/mod.rs"]
mod common;

use basalt_coordinator::{Client, Config, Identity};
use std::time::{Duration, Instant};

const NODES: usize = 10;
const T: Duration = Duration::from_secs(120);

struct Row {
    server: String,
    rounds: usize,
    samples: Vec<Duration>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn clients(addr: &str, group: &str, poll: Duration, hold: bool) -> Vec<Client> {
    (1..=NODES)
        .map(|n| {
            let id = Identity {
                group_name: group.into(),
                client_name: n.to_string(),
                role: if n == 1 { "server" } else { "client" }.into(),
                hostname: format!("node-{n}"),
            };
            Client::new(addr.into(), id, None)
                .with_poll_delay(poll)
                .with_hold(hold)
        })
        .collect()
}

/// One round: nine nodes sync first; after `settle` the tenth arrives; the time from its
/// arrival to the last release.
async fn round(nodes: &[Client], id: &str, settle: Duration) -> Duration {
    let mut early = Vec::new();
    for c in &nodes[..NODES - 1] {
        let (c, id) = (c.clone(), id.to_string());
        early.push(tokio::spawn(async move {
            c.sync(&id, T).await.expect("sync");
            Instant::now()
        }));
    }
    // the nine are registered well within this (a benchmark, not a test: a pause is fine)
    tokio::time::sleep(settle).await;
    let arrival = Instant::now();
    let last = nodes[NODES - 1].clone();
    last.sync(id, T).await.expect("sync");
    let mut released = Instant::now();
    for e in early {
        released = released.max(e.await.expect("task"));
    }
    released - arrival
}

async fn measure(name: &str, nodes: Vec<Client>, rounds: usize, settle: Duration) -> Row {
    eprintln!("{name}: {rounds} rounds");
    let mut joins = Vec::new();
    for c in &nodes {
        let c = c.clone();
        joins.push(tokio::spawn(
            async move { c.group_data(NODES as u32, T).await },
        ));
    }
    for j in joins {
        j.await.expect("task").expect("group_data");
    }
    let mut samples = Vec::new();
    for r in 0..rounds {
        // the last arrival falls anywhere in the pollers' cycle (a golden-ratio sequence of
        // fractions of the settle time), not always at the same phase
        let phase = settle.mul_f64((r as f64 * 0.618_033_988_75).fract());
        samples.push(round(&nodes, &format!("sync-{r}"), settle + phase).await);
    }
    for c in &nodes {
        let _ = c.clear_group(NODES as u32).await;
    }
    samples.sort();
    Row {
        server: name.into(),
        rounds,
        samples,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let quick = std::env::var_os("SYNC_BENCH_QUICK").is_some();
    let (basalt_rounds, lava3_rounds, lava1_rounds) = if quick { (20, 3, 5) } else { (50, 8, 15) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows = Vec::new();

    let basalt = common::Basalt::start(Config::default());
    let nodes = clients(&basalt.addr, "bench-basalt", Duration::from_secs(1), true);
    rows.push(rt.block_on(measure(
        "basalt (held requests)",
        nodes,
        basalt_rounds,
        Duration::from_millis(20),
    )));
    drop(basalt);

    for (poll, rounds) in [(3u32, lava3_rounds), (1, lava1_rounds)] {
        let lava = common::Lava::start(poll);
        let nodes = clients(
            &lava.addr,
            &format!("bench-lava-{poll}"),
            Duration::from_secs(poll.into()),
            false,
        );
        rows.push(rt.block_on(measure(
            &format!("Debian lava-coordinator, poll_delay {poll} s"),
            nodes,
            rounds,
            Duration::from_secs(poll.max(2).into()),
        )));
    }

    println!("\nlava_sync across {NODES} nodes: last arrival -> release of all");
    println!(
        "{:<42} {:>6} {:>12} {:>12} {:>12}",
        "server", "rounds", "p50", "p95", "max"
    );
    for r in &rows {
        println!(
            "{:<42} {:>6} {:>12} {:>12} {:>12}",
            r.server,
            r.rounds,
            ms(percentile(&r.samples, 0.5)),
            ms(percentile(&r.samples, 0.95)),
            ms(*r.samples.last().expect("samples")),
        );
    }
    let b = &rows[0].samples;
    let ok = percentile(b, 0.5) <= Duration::from_millis(5)
        && percentile(b, 0.95) <= Duration::from_millis(20);
    println!(
        "basalt targets (p50 <= 5 ms, p95 <= 20 ms): {}",
        if ok { "met" } else { "MISSED" }
    );
}
