//! The REST job list with a year of a 100-device lab in the store: 1,000,000 finished jobs.
//! One filtered page per request, timed from a client on the same machine (an upper bound of
//! the server's time), on SQLite and — when `BASALT_TEST_POSTGRES` names a server — on
//! PostgreSQL. Goal: ≤ 10 ms. Each reply's `count` is checked against the fill.
//!
//! On PostgreSQL the fill runs with the `job_counts` trigger off and recomputes the counters
//! once after it (a million per-row counter updates never finished); SQLite's trigger is cheap.
//!
//!     source scripts/lib/postgres.sh && basalt_pg_start   # exports BASALT_TEST_POSTGRES
//!
//!     cargo bench -p basalt-master --bench jobs_list
//!
//! `BASALT_BENCH_JOBS` changes the number of jobs.

use basalt_master::store::Store;
use std::time::Instant;

#[path = "../tests/support/master.rs"]
mod master;

const RUNS: usize = 40;

/// The jobs, inserted by the database itself from `series` (a row `x` per job): ids 1..=n, a submission every 30 s from
/// 2025-12-01, 80 % Complete, 15 % Incomplete, 5 % Canceled, all Finished.
fn fill_sql(series: &str) -> String {
    format!(
        "INSERT INTO jobs (submitter, description, definition, requested_device_type, tags, priority,
                           health_check, state, health, actual_device, submit_time, start_time,
                           end_time)
         SELECT 'lkft', 'a job', 'device_type: qemu\njob_name: a job\n', 'qemu', '', 50, 0, 5,
                CASE WHEN x % 20 = 0 THEN 3 WHEN x % 7 = 0 THEN 2 ELSE 1 END,
                'qemu-' || (x % 100), 1764547200000 + x * 30000, 1764547200000 + x * 30000 + 1000,
                1764547200000 + x * 30000 + 600000
         FROM {series}"
    )
}

/// How many of the `n` jobs `fill_sql` makes a query of `QUERIES` selects (the REST `count`).
fn expected_count(query: &str, n: u64) -> u64 {
    let canceled = n / 20;
    // multiples of 7 that are not multiples of 20 (those are Canceled)
    let incomplete = n / 7 - n / 140;
    let complete = n - canceled - incomplete;
    if query.contains("health=Complete") {
        complete
    } else if query.contains("health=Incomplete") {
        incomplete
    } else if query.contains("health__in=Incomplete,Canceled") {
        incomplete + canceled
    } else if query.contains("submit_time__gt=2026-11-01T00:00:00Z") {
        // 2026-11-01 is 335 days after 2025-12-01, a submission every 30 s: x > 964,800
        n.saturating_sub(335 * 86_400 / 30)
    } else {
        n
    }
}

fn time(base: &str, query: &str) -> (f64, f64, u64) {
    let agent = ureq::AgentBuilder::new().build();
    let mut ms = Vec::with_capacity(RUNS);
    let mut count = 0;
    for i in 0..RUNS + 3 {
        let t0 = Instant::now();
        let body: serde_json::Value = agent
            .get(&format!("{base}jobs/?{query}"))
            .call()
            .expect("request")
            .into_json()
            .expect("json");
        let t = t0.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(
            body["results"].as_array().map(Vec::len),
            Some(50),
            "{query}: a full page"
        );
        count = body["count"].as_u64().unwrap_or(0);
        // the first three warm the caches
        if i >= 3 {
            ms.push(t);
        }
    }
    ms.sort_by(f64::total_cmp);
    (
        ms[ms.len() / 2],
        ms[(ms.len() * 99 / 100).min(ms.len() - 1)],
        count,
    )
}

const QUERIES: &[&str] = &[
    "limit=50",
    "state=Finished&health=Complete&limit=50",
    "health=Incomplete&ordering=-end_time&limit=50",
    "health__in=Incomplete,Canceled&limit=50&offset=1000",
    "submit_time__gt=2026-11-01T00:00:00Z&ordering=submit_time&limit=50",
    "state=Finished&ordering=-start_time&limit=50",
];

fn run(name: &str, store: Store, dir: &std::path::Path, fill_secs: f64, n: u64) {
    // anonymous reads: the time is the list's, not a token's lookup
    let served = master::serve_with(dir.to_path_buf(), store, true);
    let base = format!("http://{}/api/v0.2/", served.addr);
    for q in QUERIES {
        let (p50, p99, count) = time(&base, q);
        assert_eq!(count, expected_count(q, n), "{name}: {q}: count");
        println!("{name:<10} | {q:<68} | {count:>8} | {p50:>6.2} | {p99:>6.2}");
    }
    println!("{name:<10} | (filled in {fill_secs:.1} s)");
}

fn main() {
    let n: u64 = std::env::var("BASALT_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    println!("jobs/ with {n} finished jobs; {RUNS} requests each, client-side ms; goal p99 <= 10");
    println!(
        "{:<10} | {:<68} | {:>8} | {:>6} | {:>6}",
        "store", "query", "count", "p50", "p99"
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let sqlite_dir = dir.path().join("sqlite");
    std::fs::create_dir_all(&sqlite_dir).expect("dir");
    let db = sqlite_dir.join("basalt.db");
    let store = Store::open(&db).expect("store");
    let t0 = Instant::now();
    {
        let c = rusqlite::Connection::open(&db).expect("sqlite");
        c.execute_batch(&format!(
            "BEGIN; WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < {n}) {}; COMMIT; ANALYZE;",
            fill_sql("s")
        ))
        .expect("fill");
    }
    run("sqlite", store, &sqlite_dir, t0.elapsed().as_secs_f64(), n);

    match std::env::var("BASALT_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => {
            let name = format!("basalt_bench_{}", std::process::id());
            let mut admin = postgres::Client::connect(&url, postgres::NoTls).expect("postgres");
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .expect("create database");
            let db_url = match url.rsplit_once('/') {
                Some((server, _)) => format!("{server}/{name}"),
                None => url.clone(),
            };
            let store = Store::connect(&db_url).expect("store");
            let t0 = Instant::now();
            let mut c = postgres::Client::connect(&db_url, postgres::NoTls).expect("postgres");
            // the counter trigger would update one of three job_counts rows per job, a
            // million times: off for the fill, and the counters recomputed once after it, as
            // migration 2 computes them for the jobs already stored
            c.batch_execute(&format!(
                "BEGIN;
                 ALTER TABLE jobs DISABLE TRIGGER jobs_counted;
                 {};
                 ALTER TABLE jobs ENABLE TRIGGER jobs_counted;
                 DELETE FROM job_counts;
                 INSERT INTO job_counts (state, health, n)
                    SELECT state, health, COUNT(*) FROM jobs GROUP BY state, health;
                 COMMIT;",
                fill_sql(&format!("generate_series(1::bigint, {n}) AS s(x)"))
            ))
            .expect("fill");
            // a year-old table has been vacuumed (its visibility map set) and analyzed
            c.batch_execute("VACUUM ANALYZE jobs").expect("vacuum");
            c.batch_execute("ANALYZE job_counts").expect("analyze");
            drop(c);
            let pg_dir = dir.path().join("pg");
            std::fs::create_dir_all(&pg_dir).expect("dir");
            run("postgres", store, &pg_dir, t0.elapsed().as_secs_f64(), n);
            // the server thread holds the store: the database is dropped with FORCE
            let _ = admin.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"));
        }
        _ => println!("postgres   | skipped: BASALT_TEST_POSTGRES is not set"),
    }
}
