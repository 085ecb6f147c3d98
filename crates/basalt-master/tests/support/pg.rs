//! Test support: a fresh PostgreSQL database per test on the server that
//! `BASALT_TEST_POSTGRES` names (`scripts/test.sh` starts one), dropped at the end, so that
//! tests run in parallel. Without the variable the PostgreSQL variants are skipped.

use std::sync::atomic::{AtomicU32, Ordering};

/// The variable: a URL of the server, for a user who may create databases.
pub const VAR: &str = "BASALT_TEST_POSTGRES";

/// A database of its own for one test; dropping it drops the database.
pub struct TestDb {
    admin: String,
    name: String,
    url: String,
}

impl TestDb {
    /// A new, empty database for `test`, or `None` (said on stderr) when [`VAR`] is unset.
    pub fn create(test: &str) -> Option<TestDb> {
        let admin = match std::env::var(VAR) {
            Ok(url) if !url.is_empty() => url,
            _ => {
                eprintln!("{test}: PostgreSQL variant skipped: {VAR} is not set");
                return None;
            }
        };
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "basalt_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        admin_sql(&admin, &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("{VAR}={admin}: CREATE DATABASE {name}: {e}"));
        Some(TestDb {
            url: with_database(&admin, &name),
            admin,
            name,
        })
    }

    /// The URL of the test's database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `sql` in the test's database (a schema made by hand, e.g. an older version's).
    #[allow(dead_code)] // not every test uses it
    pub fn run(&self, sql: &str) -> Result<(), String> {
        admin_sql(&self.url, sql).map_err(|e| e.to_string())
    }

    /// Runs `sql` on the server as the administrator (from the server's own database).
    #[allow(dead_code)] // not every test uses it
    pub fn admin(&self, sql: &str) -> Result<(), postgres::Error> {
        admin_sql(&self.admin, sql)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = admin_sql(&self.admin, &sql) {
            eprintln!("{sql}: {e}");
        }
    }
}

/// Runs `sql` on the server, from a thread of its own (the sync client cannot run on a
/// thread that drives a tokio runtime).
fn admin_sql(url: &str, sql: &str) -> Result<(), postgres::Error> {
    std::thread::scope(|s| {
        s.spawn(|| postgres::Client::connect(url, postgres::NoTls)?.batch_execute(sql))
            .join()
            .expect("the admin connection's thread panicked")
    })
}

/// `url` naming the database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}
