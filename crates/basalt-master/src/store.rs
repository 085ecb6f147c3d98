//! The master's store: jobs, devices, device types, workers and API tokens, with numbered
//! migrations, in SQLite by default (one file in the state directory, no server:
//! [`Store::open`]) or in PostgreSQL when given a URL ([`Store::connect`],
//! `basalt-master --database postgres://user:password@host/db`). Logs are files
//! ([`crate::logs`]); results are stored as the worker sent them (`results.yaml` text).
//!
//! States are stored as LAVA's integer codes ([`crate::model`]). Every method takes `&self`
//! (the connection is behind a mutex) and is short: the daemon calls it from its event loop.
//! Each query is written once, in SQLite's dialect with `?N` placeholders, which PostgreSQL
//! also understands once they are `$N` (`store/db.rs`); the migrations' schemas differ (64-bit
//! integers, identity columns), so each migration has both texts. SQLite counts migrations in
//! `PRAGMA user_version`, PostgreSQL in a one-row `schema_version` table.
//!
//! PostgreSQL's client has a thread of its own: the store is called from tokio tasks, where
//! the sync `postgres` client (a runtime of its own) cannot run. The calls stay sync.

mod db;
mod lab;
mod reservations;

use crate::health::{Denominator, Facts, History, Rule};
use crate::model::{
    DeviceHealth, DeviceState, JobHealth, JobState, Priority, WorkerHealth, WorkerState,
};
use crate::scheduler::{DeviceInfo, DeviceTypeInfo, GroupRef, QueuedJob, Snapshot, Target};
use basalt_proto::FailureCause;
use db::{args, Backend, PgClient, Row};
use std::path::Path;
use std::sync::Mutex;

pub use lab::{DeviceChange, DeviceTypeChange, DeviceTypeDetails};
pub use reservations::{NewReservation, Reservation, ReservationQuery, ReservationUpdate};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database: {}", with_causes(.0))]
    Postgres(#[from] postgres::Error),
    #[error("cannot connect to {url}: {}", with_causes(.source))]
    Connect {
        /// The URL, its password masked.
        url: String,
        source: postgres::Error,
    },
    #[error("cannot connect to {url}: no thread for the connection: {source}")]
    Thread { url: String, source: std::io::Error },
    #[error("'{url}' is not a PostgreSQL URL (postgres://... or postgresql://...)")]
    NotPostgres { url: String },
    #[error("the database connection's thread stopped")]
    Disconnected,
    #[error("database: column {column}: expected {expected}, found {found}")]
    Column {
        column: usize,
        expected: &'static str,
        found: String,
    },
    #[error("{what} '{name}' does not exist")]
    Missing { what: &'static str, name: String },
    #[error("{what} '{name}' exists already")]
    Exists { what: &'static str, name: String },
    #[error("the database's schema is version {found}, newer than this master's {known}: upgrade basalt-master")]
    TooNew { found: i64, known: i64 },
}

/// `e` and its causes: `postgres::Error` says only its kind ("db error"), its cause says why.
fn with_causes(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// A migration, in each database's dialect.
struct Migration {
    sqlite: &'static str,
    postgres: &'static str,
}

/// The migrations, in order; each runs once, in a transaction, and bumps the schema version.
const MIGRATIONS: &[Migration] = &[
    // 1: the lab
    Migration {
        sqlite: "CREATE TABLE device_types (
            name TEXT PRIMARY KEY,
            health_check TEXT,
            template TEXT
         );
         CREATE TABLE workers (
            hostname TEXT PRIMARY KEY,
            description TEXT NOT NULL DEFAULT '',
            state INTEGER NOT NULL DEFAULT 1,
            health INTEGER NOT NULL DEFAULT 0,
            last_seen INTEGER NOT NULL DEFAULT 0
         );
         CREATE TABLE devices (
            hostname TEXT PRIMARY KEY,
            device_type TEXT NOT NULL REFERENCES device_types(name),
            worker TEXT NOT NULL REFERENCES workers(hostname),
            description TEXT NOT NULL DEFAULT '',
            tags TEXT NOT NULL DEFAULT '',
            dictionary TEXT,
            state INTEGER NOT NULL DEFAULT 0,
            health INTEGER NOT NULL DEFAULT 1,
            current_job INTEGER,
            idle_since INTEGER NOT NULL DEFAULT 0,
            health_check_due INTEGER NOT NULL DEFAULT 1
         );
         CREATE TABLE jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            submitter TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            definition TEXT NOT NULL,
            requested_device_type TEXT,
            requested_device TEXT,
            tags TEXT NOT NULL DEFAULT '',
            priority INTEGER NOT NULL,
            health_check INTEGER NOT NULL DEFAULT 0,
            state INTEGER NOT NULL DEFAULT 0,
            health INTEGER NOT NULL DEFAULT 0,
            actual_device TEXT,
            submit_time INTEGER NOT NULL,
            start_time INTEGER,
            end_time INTEGER,
            error_type TEXT,
            error_msg TEXT,
            results TEXT
         );
         CREATE INDEX jobs_state ON jobs(state);
         CREATE TABLE tokens (
            hash TEXT PRIMARY KEY,
            username TEXT NOT NULL,
            admin INTEGER NOT NULL DEFAULT 0
         );",
        // SQLite's INTEGER is 64-bit, PostgreSQL's 32-bit: BIGINT
        postgres: "CREATE TABLE device_types (
            name TEXT PRIMARY KEY,
            health_check TEXT,
            template TEXT
         );
         CREATE TABLE workers (
            hostname TEXT PRIMARY KEY,
            description TEXT NOT NULL DEFAULT '',
            state BIGINT NOT NULL DEFAULT 1,
            health BIGINT NOT NULL DEFAULT 0,
            last_seen BIGINT NOT NULL DEFAULT 0
         );
         CREATE TABLE devices (
            hostname TEXT PRIMARY KEY,
            device_type TEXT NOT NULL REFERENCES device_types(name),
            worker TEXT NOT NULL REFERENCES workers(hostname),
            description TEXT NOT NULL DEFAULT '',
            tags TEXT NOT NULL DEFAULT '',
            dictionary TEXT,
            state BIGINT NOT NULL DEFAULT 0,
            health BIGINT NOT NULL DEFAULT 1,
            current_job BIGINT,
            idle_since BIGINT NOT NULL DEFAULT 0,
            health_check_due BIGINT NOT NULL DEFAULT 1
         );
         CREATE TABLE jobs (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            submitter TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            definition TEXT NOT NULL,
            requested_device_type TEXT,
            requested_device TEXT,
            tags TEXT NOT NULL DEFAULT '',
            priority BIGINT NOT NULL,
            health_check BIGINT NOT NULL DEFAULT 0,
            state BIGINT NOT NULL DEFAULT 0,
            health BIGINT NOT NULL DEFAULT 0,
            actual_device TEXT,
            submit_time BIGINT NOT NULL,
            start_time BIGINT,
            end_time BIGINT,
            error_type TEXT,
            error_msg TEXT,
            results TEXT
         );
         CREATE INDEX jobs_state ON jobs(state);
         CREATE TABLE tokens (
            hash TEXT PRIMARY KEY,
            username TEXT NOT NULL,
            admin BIGINT NOT NULL DEFAULT 0
         );",
    },
    // 2: the job list's filters and orderings (LAVA's `jobs/?health=...&ordering=-end_time`)
    // read a page from an index instead of sorting a year of jobs, and its counts by state and
    // health come from counters kept by triggers instead of counting a million rows
    Migration {
        sqlite: "CREATE INDEX jobs_health ON jobs(health, id);
         CREATE INDEX jobs_submit_time ON jobs(submit_time);
         CREATE INDEX jobs_start_time ON jobs(start_time);
         CREATE INDEX jobs_end_time ON jobs(end_time);
         CREATE TABLE job_counts (
            state INTEGER NOT NULL,
            health INTEGER NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (state, health)
         );
         INSERT INTO job_counts (state, health, n)
            SELECT state, health, COUNT(*) FROM jobs GROUP BY state, health;
         CREATE TRIGGER jobs_counted_in AFTER INSERT ON jobs BEGIN
            INSERT INTO job_counts (state, health, n) VALUES (NEW.state, NEW.health, 1)
               ON CONFLICT (state, health) DO UPDATE SET n = n + 1;
         END;
         CREATE TRIGGER jobs_counted_out AFTER DELETE ON jobs BEGIN
            UPDATE job_counts SET n = n - 1 WHERE state = OLD.state AND health = OLD.health;
         END;
         CREATE TRIGGER jobs_counted_again AFTER UPDATE OF state, health ON jobs
            WHEN OLD.state != NEW.state OR OLD.health != NEW.health BEGIN
            UPDATE job_counts SET n = n - 1 WHERE state = OLD.state AND health = OLD.health;
            INSERT INTO job_counts (state, health, n) VALUES (NEW.state, NEW.health, 1)
               ON CONFLICT (state, health) DO UPDATE SET n = n + 1;
         END;",
        postgres: "CREATE INDEX jobs_health ON jobs(health, id);
         CREATE INDEX jobs_submit_time ON jobs(submit_time);
         CREATE INDEX jobs_start_time ON jobs(start_time);
         CREATE INDEX jobs_end_time ON jobs(end_time);
         CREATE TABLE job_counts (
            state BIGINT NOT NULL,
            health BIGINT NOT NULL,
            n BIGINT NOT NULL,
            PRIMARY KEY (state, health)
         );
         INSERT INTO job_counts (state, health, n)
            SELECT state, health, COUNT(*) FROM jobs GROUP BY state, health;
         CREATE FUNCTION basalt_count_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
            IF TG_OP = 'UPDATE' AND OLD.state = NEW.state AND OLD.health = NEW.health THEN
               RETURN NULL;
            END IF;
            IF TG_OP IN ('UPDATE', 'DELETE') THEN
               UPDATE job_counts SET n = n - 1 WHERE state = OLD.state AND health = OLD.health;
            END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') THEN
               INSERT INTO job_counts (state, health, n) VALUES (NEW.state, NEW.health, 1)
                  ON CONFLICT (state, health) DO UPDATE SET n = job_counts.n + 1;
            END IF;
            RETURN NULL;
         END $$;
         CREATE TRIGGER jobs_counted AFTER INSERT OR DELETE OR UPDATE OF state, health ON jobs
            FOR EACH ROW EXECUTE FUNCTION basalt_count_jobs();",
    },
    // 3: basalt's failure cause of a job that did not complete (`infrastructure`, `kernel`...)
    Migration {
        sqlite: "ALTER TABLE jobs ADD COLUMN failure_cause TEXT;",
        postgres: "ALTER TABLE jobs ADD COLUMN failure_cause TEXT;",
    },
    // 4: MultiNode: a sub-job's group (LAVA's TestJob.target_group, sub_id "<first id>.<n>",
    // its role, multinode_definition: the submission as sent) and a role's worker pin
    Migration {
        sqlite: "ALTER TABLE jobs ADD COLUMN requested_worker TEXT;
         ALTER TABLE jobs ADD COLUMN target_group TEXT;
         ALTER TABLE jobs ADD COLUMN sub_id TEXT;
         ALTER TABLE jobs ADD COLUMN role TEXT;
         ALTER TABLE jobs ADD COLUMN group_size INTEGER;
         ALTER TABLE jobs ADD COLUMN essential INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE jobs ADD COLUMN multinode_definition TEXT;
         CREATE INDEX jobs_target_group ON jobs(target_group);",
        postgres: "ALTER TABLE jobs ADD COLUMN requested_worker TEXT;
         ALTER TABLE jobs ADD COLUMN target_group TEXT;
         ALTER TABLE jobs ADD COLUMN sub_id TEXT;
         ALTER TABLE jobs ADD COLUMN role TEXT;
         ALTER TABLE jobs ADD COLUMN group_size BIGINT;
         ALTER TABLE jobs ADD COLUMN essential BIGINT NOT NULL DEFAULT 0;
         ALTER TABLE jobs ADD COLUMN multinode_definition TEXT;
         CREATE INDEX jobs_target_group ON jobs(target_group);",
    },
    // 5: lab administration: a device type's description and health-check schedule (LAVA's
    // health_frequency, health_denominator 0 hours / 1 jobs, disable_health_check), LAVA's
    // aliases, and what a device's schedule counts from (`crate::health::History`): devices
    // that needed no check before keep needing none until a full period from now has passed
    Migration {
        sqlite: "ALTER TABLE device_types ADD COLUMN description TEXT NOT NULL DEFAULT '';
         ALTER TABLE device_types ADD COLUMN health_frequency INTEGER NOT NULL DEFAULT 24;
         ALTER TABLE device_types ADD COLUMN health_denominator INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE device_types ADD COLUMN disable_health_check INTEGER NOT NULL DEFAULT 0;
         CREATE TABLE aliases (
            name TEXT PRIMARY KEY,
            device_type TEXT NOT NULL REFERENCES device_types(name) ON DELETE CASCADE
         );
         ALTER TABLE devices ADD COLUMN health_checked_at INTEGER;
         ALTER TABLE devices ADD COLUMN jobs_since_check INTEGER NOT NULL DEFAULT 0;
         UPDATE devices SET health_checked_at = CAST(strftime('%s', 'now') AS INTEGER) * 1000
            WHERE health_check_due = 0;",
        postgres: "ALTER TABLE device_types ADD COLUMN description TEXT NOT NULL DEFAULT '';
         ALTER TABLE device_types ADD COLUMN health_frequency BIGINT NOT NULL DEFAULT 24;
         ALTER TABLE device_types ADD COLUMN health_denominator BIGINT NOT NULL DEFAULT 0;
         ALTER TABLE device_types ADD COLUMN disable_health_check BIGINT NOT NULL DEFAULT 0;
         CREATE TABLE aliases (
            name TEXT PRIMARY KEY,
            device_type TEXT NOT NULL REFERENCES device_types(name) ON DELETE CASCADE
         );
         ALTER TABLE devices ADD COLUMN health_checked_at BIGINT;
         ALTER TABLE devices ADD COLUMN jobs_since_check BIGINT NOT NULL DEFAULT 0;
         UPDATE devices SET health_checked_at = CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT)
            WHERE health_check_due = 0;",
    },
    // 6: reservations (docs/reservations.md): a job that waits for its holder, its lease, its
    // secrets and how the holder reaches the board, keyed by the job's id; a job that may take
    // any of a list of devices (a reservation by requirements: `eligible_devices`)
    Migration {
        sqlite: "ALTER TABLE jobs ADD COLUMN eligible_devices TEXT;
         CREATE TABLE reservations (
            job_id INTEGER PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
            holder TEXT NOT NULL,
            requirements TEXT,
            lease_secs INTEGER NOT NULL,
            created INTEGER NOT NULL,
            expires INTEGER NOT NULL,
            state TEXT NOT NULL,
            booted INTEGER NOT NULL DEFAULT 0,
            shell INTEGER NOT NULL DEFAULT 0,
            reason TEXT,
            ending TEXT,
            console_token TEXT NOT NULL,
            watch_token TEXT NOT NULL,
            ssh_public_key TEXT NOT NULL,
            ssh_private_key TEXT,
            ssh_user TEXT NOT NULL,
            boot TEXT,
            connection TEXT NOT NULL DEFAULT '{}'
         );
         CREATE INDEX reservations_state ON reservations(state);
         CREATE INDEX reservations_holder ON reservations(holder, job_id);",
        postgres: "ALTER TABLE jobs ADD COLUMN eligible_devices TEXT;
         CREATE TABLE reservations (
            job_id BIGINT PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
            holder TEXT NOT NULL,
            requirements TEXT,
            lease_secs BIGINT NOT NULL,
            created BIGINT NOT NULL,
            expires BIGINT NOT NULL,
            state TEXT NOT NULL,
            booted BIGINT NOT NULL DEFAULT 0,
            shell BIGINT NOT NULL DEFAULT 0,
            reason TEXT,
            ending TEXT,
            console_token TEXT NOT NULL,
            watch_token TEXT NOT NULL,
            ssh_public_key TEXT NOT NULL,
            ssh_private_key TEXT,
            ssh_user TEXT NOT NULL,
            boot TEXT,
            connection TEXT NOT NULL DEFAULT '{}'
         );
         CREATE INDEX reservations_state ON reservations(state);
         CREATE INDEX reservations_holder ON reservations(holder, job_id);",
    },
    // 7: the job list's filters by device and by submitter (the web pages, the API's
    // `actual_device` and `submitter` filters), newest first
    Migration {
        sqlite: "CREATE INDEX jobs_actual_device ON jobs(actual_device, id);
         CREATE INDEX jobs_submitter ON jobs(submitter, id);",
        postgres: "CREATE INDEX jobs_actual_device ON jobs(actual_device, id);
         CREATE INDEX jobs_submitter ON jobs(submitter, id);",
    },
];

/// PostgreSQL's schema version: one row, created before the first migration.
const PG_SCHEMA_VERSION: &str = "CREATE TABLE IF NOT EXISTS schema_version (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version BIGINT NOT NULL
     );
     INSERT INTO schema_version (id, version) VALUES (1, 0) ON CONFLICT DO NOTHING;";

/// A job to submit.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub submitter: String,
    pub description: String,
    pub definition: String,
    pub target: Target,
    pub tags: Vec<String>,
    pub priority: Priority,
    pub health_check: bool,
}

/// A MultiNode submission's group, to store: its sub-jobs in LAVA's order (sub_id 0..).
#[derive(Clone, Debug)]
pub struct NewGroup {
    /// The group's name (a uuid4).
    pub target_group: String,
    /// The submission as sent.
    pub multinode_definition: String,
    pub jobs: Vec<(NewJob, GroupMember)>,
}

/// What a sub-job of a [`NewGroup`] has beyond a [`NewJob`].
#[derive(Clone, Debug)]
pub struct GroupMember {
    pub role: String,
    /// The role's `essential: true`: its failure ends the group.
    pub essential: bool,
    /// The role's `worker:` pin.
    pub worker: Option<String>,
}

/// A stored sub-job's group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobGroup {
    /// The group's name (`target_group`, a uuid4).
    pub target_group: String,
    /// LAVA's display id: `"<first sub-job id>.<n>"`.
    pub sub_id: String,
    pub role: String,
    /// How many sub-jobs the group has.
    pub size: u32,
    pub essential: bool,
    /// The MultiNode submission as sent.
    pub multinode_definition: String,
}

/// A stored job.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub id: u64,
    pub submitter: String,
    pub description: String,
    pub definition: String,
    pub target: Target,
    pub tags: Vec<String>,
    pub priority: Priority,
    pub health_check: bool,
    pub state: JobState,
    pub health: JobHealth,
    pub actual_device: Option<String>,
    /// Milliseconds since the UNIX epoch.
    pub submit_time: u64,
    pub start_time: Option<u64>,
    pub end_time: Option<u64>,
    pub error_type: Option<String>,
    pub error_msg: Option<String>,
    /// basalt's cause of a job that did not complete.
    pub failure_cause: Option<FailureCause>,
    /// The `results.yaml` text the worker sent.
    pub results: Option<String>,
    /// Only a device of this worker will do (a MultiNode role's `worker:`).
    pub requested_worker: Option<String>,
    /// A MultiNode sub-job's group (boxed: most jobs have none).
    pub group: Option<Box<JobGroup>>,
}

/// Why a job did not complete: basalt's cause, and LAVA's error type and message when known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub cause: FailureCause,
    /// LAVA's error type (`Infrastructure`, `Job`, `LAVATimeout`...).
    pub error_type: Option<String>,
    pub message: Option<String>,
}

impl Failure {
    /// A failure with LAVA's error type and message.
    pub fn new(cause: FailureCause, error_type: &str, message: &str) -> Failure {
        Failure {
            cause,
            error_type: Some(error_type.to_string()),
            message: Some(message.to_string()),
        }
    }

    /// A job canceled before it started.
    pub fn canceled() -> Failure {
        Failure {
            cause: FailureCause::Canceled,
            error_type: Some("Canceled".into()),
            message: None,
        }
    }
}

/// What a job list shows: filters (all must hold), an order, a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobQuery {
    /// Any of these states (none: any state).
    pub states: Vec<JobState>,
    /// Any of these healths (none: any).
    pub healths: Vec<JobHealth>,
    /// Only these ids.
    pub ids: Option<Vec<u64>>,
    pub id_after: Option<u64>,
    /// Times in milliseconds since the epoch; a job without that time does not match.
    pub submitted_after: Option<u64>,
    pub started_after: Option<u64>,
    pub ended_after: Option<u64>,
    /// Only the sub-jobs of this MultiNode group.
    pub target_group: Option<String>,
    /// Only the jobs that ran (or run) on this device.
    pub device: Option<String>,
    /// Only the jobs of this submitter.
    pub submitter: Option<String>,
    pub order: JobOrder,
    pub descending: bool,
    pub limit: u32,
    pub offset: u32,
}

impl Default for JobQuery {
    /// Every job, newest first, 50 at a time.
    fn default() -> JobQuery {
        JobQuery {
            states: Vec::new(),
            healths: Vec::new(),
            ids: None,
            id_after: None,
            submitted_after: None,
            started_after: None,
            ended_after: None,
            target_group: None,
            device: None,
            submitter: None,
            order: JobOrder::Id,
            descending: true,
            limit: 50,
            offset: 0,
        }
    }
}

/// What a job list is ordered by (LAVA's `ordering=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobOrder {
    Id,
    SubmitTime,
    StartTime,
    EndTime,
}

impl JobOrder {
    /// The order of LAVA's `ordering` name (`id`, `submit_time`, `start_time`, `end_time`).
    pub fn from_name(name: &str) -> Option<JobOrder> {
        Some(match name {
            "id" => JobOrder::Id,
            "submit_time" => JobOrder::SubmitTime,
            "start_time" => JobOrder::StartTime,
            "end_time" => JobOrder::EndTime,
            _ => return None,
        })
    }

    fn column(self) -> &'static str {
        match self {
            JobOrder::Id => "id",
            JobOrder::SubmitTime => "submit_time",
            JobOrder::StartTime => "start_time",
            JobOrder::EndTime => "end_time",
        }
    }
}

/// A device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub hostname: String,
    pub device_type: String,
    pub worker: String,
    pub description: String,
    pub tags: Vec<String>,
    /// The device dictionary (Jinja2), rendered per job.
    pub dictionary: Option<String>,
    pub state: DeviceState,
    pub health: DeviceHealth,
    pub current_job: Option<u64>,
}

/// A worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Worker {
    pub hostname: String,
    pub description: String,
    pub state: WorkerState,
    pub health: WorkerHealth,
    /// Milliseconds since the UNIX epoch.
    pub last_seen: u64,
}

/// A device type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceType {
    pub name: String,
    /// The health-check job definition, if the type has one.
    pub health_check: Option<String>,
}

/// The scheduler's snapshot and each device's health-check facts ([`Store::lab_snapshot`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabSnapshot {
    pub snapshot: Snapshot,
    /// One per `snapshot.devices`, in the same order.
    pub facts: Vec<Facts>,
}

/// The store.
pub struct Store {
    db: Mutex<Backend>,
    /// Told of every committed state change ([`Store::observe`]), in commit order.
    observers: Vec<Observer>,
}

/// A state change the store committed: the row as it is after the commit. Every change of a
/// job's, a device's or a worker's state or health is reported once, in commit order (the
/// observers are called with the store's lock held), so that events and notifications miss
/// none.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// A job was submitted or changed state or health; `device_type` and `worker` are its
    /// device's (or its requested type's), when it has one.
    Job {
        job: Job,
        device_type: Option<String>,
        worker: Option<String>,
    },
    /// A device was added or changed state or health.
    Device { device: Device },
    /// A worker was added or changed state or health.
    Worker { worker: Worker },
}

/// What observes the store's changes ([`Store::observe`]): it must return quickly (it runs
/// with the store's lock held), e.g. by sending the change down a channel.
pub type Observer = Box<dyn Fn(&Change) + Send + Sync>;

/// What a state-changing method changed, read back after its commit for the observers.
enum Changed {
    Job(u64),
    Device(String),
    Worker(String),
}

/// `Ok` when an INSERT ... ON CONFLICT DO NOTHING added its row, else `what` `name` exists
/// already.
fn inserted(rows: u64, what: &'static str, name: impl Into<String>) -> Result<(), StoreError> {
    match rows {
        0 => Err(StoreError::Exists {
            what,
            name: name.into(),
        }),
        _ => Ok(()),
    }
}

/// `Ok` when an UPDATE found its row, else `what` `name` does not exist.
fn found(rows: u64, what: &'static str, name: impl Into<String>) -> Result<(), StoreError> {
    match rows {
        0 => Err(StoreError::Missing {
            what,
            name: name.into(),
        }),
        _ => Ok(()),
    }
}

/// A target's columns: `requested_device_type`, `requested_device`, `eligible_devices`.
fn target_columns(t: &Target) -> (Option<&str>, Option<&str>, Option<String>) {
    match t {
        Target::DeviceType(t) => (Some(t.as_str()), None, None),
        Target::Device(d) => (None, Some(d.as_str()), None),
        Target::AnyOf(list) => (None, None, Some(tags_text(list))),
    }
}

fn tags_text(tags: &[String]) -> String {
    tags.join(",")
}

fn tags_of(text: String) -> Vec<String> {
    text.split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// The schema version (the number of migrations applied); `lock`: PostgreSQL's row is
/// locked until the end of the transaction, so that two masters migrate one after the other.
fn read_version(db: &mut Backend, lock: bool) -> Result<i64, StoreError> {
    let sql = match (db.is_postgres(), lock) {
        (false, _) => "PRAGMA user_version",
        (true, false) => "SELECT version FROM schema_version",
        (true, true) => "SELECT version FROM schema_version FOR UPDATE",
    };
    match db.query_opt(sql, &[])? {
        Some(r) => r.int(0),
        None => Ok(0),
    }
}

fn write_version(db: &mut Backend, version: i64) -> Result<(), StoreError> {
    if db.is_postgres() {
        db.execute("UPDATE schema_version SET version = ?1", args![version])?;
        Ok(())
    } else {
        db.batch(&format!("PRAGMA user_version = {version}"))
    }
}

/// Runs `f` in a transaction: committed when it returns `Ok`, else rolled back.
fn transaction<T>(
    db: &mut Backend,
    f: impl FnOnce(&mut Backend) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    db.begin()?;
    let result = f(db).and_then(|v| db.commit().map(|()| v));
    if result.is_err() {
        let _ = db.rollback();
    }
    result
}

impl Store {
    /// Opens (creating) the SQLite database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = rusqlite::Connection::open(path)?;
        Store::init_sqlite(db)
    }

    /// A store in memory (tests).
    pub fn memory() -> Result<Store, StoreError> {
        Store::init_sqlite(rusqlite::Connection::open_in_memory()?)
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://` or `postgresql://`, as
    /// libpq's) and brings its schema up to date. Errors name the URL, its password masked.
    pub fn connect(url: &str) -> Result<Store, StoreError> {
        let masked = db::mask_password(url);
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::NotPostgres { url: masked });
        }
        let mut config: postgres::Config = url.parse().map_err(|source| StoreError::Connect {
            url: masked.clone(),
            source,
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        let client = PgClient::connect(config).map_err(|e| match e {
            db::ConnectError::Postgres(source) => StoreError::Connect {
                url: masked.clone(),
                source,
            },
            db::ConnectError::Thread(source) => StoreError::Thread {
                url: masked.clone(),
                source,
            },
        })?;
        let mut db = Backend::Postgres(client);
        db.batch(PG_SCHEMA_VERSION)?;
        Store::migrate(db)
    }

    fn init_sqlite(db: rusqlite::Connection) -> Result<Store, StoreError> {
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.set_prepared_statement_cache_capacity(64);
        Store::migrate(Backend::Sqlite(db))
    }

    /// Applies the migrations this database lacks, all in one transaction.
    fn migrate(mut db: Backend) -> Result<Store, StoreError> {
        transaction(&mut db, |db| {
            let version = read_version(db, true)?;
            let known = MIGRATIONS.len() as i64;
            if version > known {
                return Err(StoreError::TooNew {
                    found: version,
                    known,
                });
            }
            for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                db.batch(if db.is_postgres() {
                    m.postgres
                } else {
                    m.sqlite
                })?;
                write_version(db, (i + 1) as i64)?;
            }
            Ok(())
        })?;
        Ok(Store {
            db: Mutex::new(db),
            observers: Vec::new(),
        })
    }

    /// Adds an observer of every committed state change ([`Change`]): set at construction,
    /// before the store is shared.
    pub fn observe(mut self, observer: impl Fn(&Change) + Send + Sync + 'static) -> Store {
        self.observers.push(Box::new(observer));
        self
    }

    /// Whether anything observes the changes (only then are rows read back).
    fn observed(&self) -> bool {
        !self.observers.is_empty()
    }

    /// Reads back what a committed method `changed` and tells the observers, in order. Called
    /// with the lock held (`db`), so that observers see changes in commit order. A row that
    /// cannot be read back is reported on stderr (the change itself is committed).
    fn publish(&self, db: &mut Backend, changed: &[Changed]) {
        if !self.observed() {
            return;
        }
        for c in changed {
            let change = match c {
                Changed::Job(id) => Self::job_change(db, *id),
                Changed::Device(hostname) => db
                    .query_opt(
                        &format!(
                            "SELECT {} FROM devices WHERE hostname = ?1",
                            Self::DEVICE_COLUMNS
                        ),
                        args![hostname],
                    )
                    .and_then(|r| r.map(|r| Self::device_row(&r)).transpose())
                    .map(|d| d.map(|device| Change::Device { device })),
                Changed::Worker(hostname) => db
                    .query_opt(
                        &format!(
                            "SELECT {} FROM workers WHERE hostname = ?1",
                            Self::WORKER_COLUMNS
                        ),
                        args![hostname],
                    )
                    .and_then(|r| r.map(|r| Self::worker_row(&r)).transpose())
                    .map(|w| w.map(|worker| Change::Worker { worker })),
            };
            match change {
                Ok(Some(change)) => self.observers.iter().for_each(|o| o(&change)),
                Ok(None) => {}
                Err(e) => tracing::error!("store: a committed change not reported: {e}"),
            }
        }
    }

    fn job_change(db: &mut Backend, id: u64) -> Result<Option<Change>, StoreError> {
        let Some(job) = db
            .query_opt(
                &format!("SELECT {} FROM jobs WHERE id = ?1", Self::JOB_COLUMNS),
                args![id as i64],
            )?
            .map(|r| Self::job_row(&r))
            .transpose()?
        else {
            return Ok(None);
        };
        let device = job.actual_device.clone().or(match &job.target {
            Target::Device(d) => Some(d.clone()),
            Target::DeviceType(_) | Target::AnyOf(_) => None,
        });
        let (mut device_type, mut worker) = (None, None);
        if let Some(d) = device {
            if let Some(r) = db.query_opt(
                "SELECT device_type, worker FROM devices WHERE hostname = ?1",
                args![d],
            )? {
                device_type = Some(r.text(0)?);
                worker = job.actual_device.is_some().then(|| r.text(1)).transpose()?;
            }
        }
        if let Target::DeviceType(t) = &job.target {
            device_type = Some(t.clone());
        }
        Ok(Some(Change::Job {
            job,
            device_type,
            worker,
        }))
    }

    /// One column of one row, when there is an observer to tell of a change (`None` otherwise,
    /// or when there is no such row).
    fn before(
        &self,
        db: &mut Backend,
        sql: &str,
        args: &[db::Value],
    ) -> Result<Option<i64>, StoreError> {
        if !self.observed() {
            return Ok(None);
        }
        db.query_opt(sql, args)?.map(|r| r.int(0)).transpose()
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Backend> {
        match self.db.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The schema version (the number of migrations applied).
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        read_version(&mut self.db(), false)
    }

    // ---- device types, workers, devices --------------------------------------------------

    /// Adds a device type (or replaces its health check).
    pub fn put_device_type(&self, t: &DeviceType) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO device_types (name, health_check) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET health_check = excluded.health_check",
            args![&t.name, t.health_check.as_deref()],
        )?;
        Ok(())
    }

    pub fn device_types(&self) -> Result<Vec<DeviceType>, StoreError> {
        self.db()
            .query(
                "SELECT name, health_check FROM device_types ORDER BY name",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(DeviceType {
                    name: r.text(0)?,
                    health_check: r.opt_text(1)?,
                })
            })
            .collect()
    }

    /// Adds a worker (Offline until it says hello).
    pub fn add_worker(&self, hostname: &str, description: &str) -> Result<(), StoreError> {
        let mut db = self.db();
        let n = db.execute(
            "INSERT INTO workers (hostname, description, state, health) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
            args![
                hostname,
                description,
                WorkerState::Offline.code(),
                WorkerHealth::Active.code()
            ],
        )?;
        inserted(n, "worker", hostname)?;
        self.publish(&mut db, &[Changed::Worker(hostname.into())]);
        Ok(())
    }

    /// Marks a worker online (seen now) or offline.
    pub fn set_worker_state(
        &self,
        hostname: &str,
        state: WorkerState,
        now: u64,
    ) -> Result<(), StoreError> {
        let mut db = self.db();
        let before = self.before(
            &mut db,
            "SELECT state FROM workers WHERE hostname = ?1",
            args![hostname],
        )?;
        let n = db.execute(
            "UPDATE workers SET state = ?2, last_seen = ?3 WHERE hostname = ?1",
            args![hostname, state.code(), now as i64],
        )?;
        found(n, "worker", hostname)?;
        if before.is_some_and(|b| b != i64::from(state.code())) {
            self.publish(&mut db, &[Changed::Worker(hostname.into())]);
        }
        Ok(())
    }

    pub fn workers(&self) -> Result<Vec<Worker>, StoreError> {
        self.db()
            .query(
                &format!(
                    "SELECT {} FROM workers ORDER BY hostname",
                    Self::WORKER_COLUMNS
                ),
                &[],
            )?
            .iter()
            .map(Self::worker_row)
            .collect()
    }

    const WORKER_COLUMNS: &'static str = "hostname, description, state, health, last_seen";

    fn worker_row(r: &Row) -> Result<Worker, StoreError> {
        Ok(Worker {
            hostname: r.text(0)?,
            description: r.text(1)?,
            state: WorkerState::from_code(r.code(2)?).unwrap_or(WorkerState::Offline),
            health: WorkerHealth::from_code(r.code(3)?).unwrap_or(WorkerHealth::Active),
            last_seen: r.uint(4)?,
        })
    }

    /// Adds a device of a known type on a known worker; it starts Idle with `d.health`, and
    /// needing a health check (when its type has one) until it passes one or an admin makes it
    /// Good.
    pub fn add_device(&self, d: &Device) -> Result<(), StoreError> {
        let mut db = self.db();
        for (what, sql, name) in [
            (
                "device type",
                "SELECT 1 FROM device_types WHERE name = ?1",
                &d.device_type,
            ),
            (
                "worker",
                "SELECT 1 FROM workers WHERE hostname = ?1",
                &d.worker,
            ),
        ] {
            if db.query_opt(sql, args![name])?.is_none() {
                return Err(StoreError::Missing {
                    what,
                    name: name.clone(),
                });
            }
        }
        let n = db.execute(
            "INSERT INTO devices (hostname, device_type, worker, description, tags, dictionary, state, health)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
            args![
                &d.hostname,
                &d.device_type,
                &d.worker,
                &d.description,
                tags_text(&d.tags),
                d.dictionary.as_deref(),
                DeviceState::Idle.code(),
                d.health.code()
            ],
        )?;
        inserted(n, "device", d.hostname.as_str())?;
        self.publish(&mut db, &[Changed::Device(d.hostname.clone())]);
        Ok(())
    }

    /// Sets a device's dictionary.
    pub fn set_dictionary(&self, hostname: &str, dictionary: &str) -> Result<(), StoreError> {
        let n = self.db().execute(
            "UPDATE devices SET dictionary = ?2 WHERE hostname = ?1",
            args![hostname, dictionary],
        )?;
        found(n, "device", hostname)
    }

    /// Sets a device's health (an admin's choice) at `now` (ms since the epoch). Good means
    /// the admin vouches for the device: no check is forced, and a device that never had one
    /// counts its health-check frequency from `now` ([`crate::health::History`]).
    pub fn set_device_health(
        &self,
        hostname: &str,
        health: DeviceHealth,
        now: u64,
    ) -> Result<(), StoreError> {
        let mut db = self.db();
        let before = self.before(
            &mut db,
            "SELECT health FROM devices WHERE hostname = ?1",
            args![hostname],
        )?;
        let n = db.execute(
            "UPDATE devices SET health = ?2,
                health_check_due = CASE WHEN ?3 = 1 THEN 0 ELSE health_check_due END,
                jobs_since_check = CASE WHEN ?3 = 1 AND health_checked_at IS NULL THEN 0
                                        ELSE jobs_since_check END,
                health_checked_at = CASE WHEN ?3 = 1 THEN COALESCE(health_checked_at, ?4)
                                         ELSE health_checked_at END
             WHERE hostname = ?1",
            args![
                hostname,
                health.code(),
                health == DeviceHealth::Good,
                now as i64
            ],
        )?;
        found(n, "device", hostname)?;
        if before.is_some_and(|b| b != i64::from(health.code())) {
            self.publish(&mut db, &[Changed::Device(hostname.into())]);
        }
        Ok(())
    }

    const DEVICE_COLUMNS: &'static str =
        "hostname, device_type, worker, description, tags, dictionary, state, health, current_job";

    fn device_row(r: &Row) -> Result<Device, StoreError> {
        Ok(Device {
            hostname: r.text(0)?,
            device_type: r.text(1)?,
            worker: r.text(2)?,
            description: r.text(3)?,
            tags: tags_of(r.text(4)?),
            dictionary: r.opt_text(5)?,
            state: DeviceState::from_code(r.code(6)?).unwrap_or(DeviceState::Idle),
            health: DeviceHealth::from_code(r.code(7)?).unwrap_or(DeviceHealth::Unknown),
            current_job: r.opt_uint(8)?,
        })
    }

    pub fn device(&self, hostname: &str) -> Result<Option<Device>, StoreError> {
        self.db()
            .query_opt(
                &format!(
                    "SELECT {} FROM devices WHERE hostname = ?1",
                    Self::DEVICE_COLUMNS
                ),
                args![hostname],
            )?
            .map(|r| Self::device_row(&r))
            .transpose()
    }

    pub fn devices(&self) -> Result<Vec<Device>, StoreError> {
        self.db()
            .query(
                &format!(
                    "SELECT {} FROM devices ORDER BY hostname",
                    Self::DEVICE_COLUMNS
                ),
                &[],
            )?
            .iter()
            .map(Self::device_row)
            .collect()
    }

    // ---- jobs ------------------------------------------------------------------------------

    /// Stores a submitted job; returns its id.
    pub fn submit(&self, j: &NewJob, now: u64) -> Result<u64, StoreError> {
        let mut db = self.db();
        let id = Self::insert_job(&mut db, j, now)?;
        self.publish(&mut db, &[Changed::Job(id)]);
        Ok(id)
    }

    /// Inserts a queued job's row; returns its id.
    fn insert_job(db: &mut Backend, j: &NewJob, now: u64) -> Result<u64, StoreError> {
        let (dt, dev, eligible) = target_columns(&j.target);
        let row = db.query_opt(
            "INSERT INTO jobs (submitter, description, definition, requested_device_type, requested_device,
                               tags, priority, health_check, state, health, submit_time, eligible_devices)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING id",
            args![
                &j.submitter,
                &j.description,
                &j.definition,
                dt,
                dev,
                tags_text(&j.tags),
                j.priority.value(),
                j.health_check,
                JobState::Submitted.code(),
                JobHealth::Unknown.code(),
                now as i64,
                eligible
            ],
        )?;
        match row {
            Some(r) => r.uint(0),
            None => Err(StoreError::Column {
                column: 0,
                expected: "the new job's id",
                found: "no row".into(),
            }),
        }
    }

    /// Stores a MultiNode group's sub-jobs in one transaction; returns their ids in sub_id
    /// order (each sub-job's LAVA id is `"<first id>.<n>"`).
    pub fn submit_group(&self, g: &NewGroup, now: u64) -> Result<Vec<u64>, StoreError> {
        let size = g.jobs.len() as i64;
        let mut db = self.db();
        let ids = transaction(&mut db, |db| {
            let mut ids = Vec::with_capacity(g.jobs.len());
            for (j, m) in &g.jobs {
                let (dt, dev, _) = target_columns(&j.target);
                let row = db.query_opt(
                    "INSERT INTO jobs (submitter, description, definition, requested_device_type, requested_device,
                                       tags, priority, health_check, state, health, submit_time,
                                       requested_worker, target_group, role, group_size, essential,
                                       multinode_definition)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
                     RETURNING id",
                    args![
                        &j.submitter,
                        &j.description,
                        &j.definition,
                        dt,
                        dev,
                        tags_text(&j.tags),
                        j.priority.value(),
                        j.health_check,
                        JobState::Submitted.code(),
                        JobHealth::Unknown.code(),
                        now as i64,
                        m.worker.as_deref(),
                        &g.target_group,
                        &m.role,
                        size,
                        m.essential,
                        &g.multinode_definition
                    ],
                )?;
                match row {
                    Some(r) => ids.push(r.uint(0)?),
                    None => {
                        return Err(StoreError::Column {
                            column: 0,
                            expected: "the new job's id",
                            found: "no row".into(),
                        })
                    }
                }
            }
            let first = ids.first().copied().unwrap_or(0);
            for (n, id) in ids.iter().enumerate() {
                db.execute(
                    "UPDATE jobs SET sub_id = ?2 WHERE id = ?1",
                    args![*id as i64, format!("{first}.{n}")],
                )?;
            }
            Ok(ids)
        })?;
        let changed: Vec<Changed> = ids.iter().map(|&id| Changed::Job(id)).collect();
        self.publish(&mut db, &changed);
        Ok(ids)
    }

    /// The sub-jobs of MultiNode group `target_group`, in sub_id order.
    pub fn group(&self, target_group: &str) -> Result<Vec<Job>, StoreError> {
        self.db()
            .query(
                &format!(
                    "SELECT {} FROM jobs WHERE target_group = ?1 ORDER BY id",
                    Self::JOB_COLUMNS
                ),
                args![target_group],
            )?
            .iter()
            .map(Self::job_row)
            .collect()
    }

    /// MultiNode groups, newest first (by their first sub-job): each group's name and first
    /// job id, `limit` from `offset`, with how many groups there are.
    pub fn groups(&self, limit: u32, offset: u32) -> Result<(u64, Vec<(String, u64)>), StoreError> {
        let mut db = self.db();
        let count = match db.query_opt(
            "SELECT COUNT(DISTINCT target_group) FROM jobs WHERE target_group IS NOT NULL",
            args![],
        )? {
            Some(r) => r.uint(0)?,
            None => 0,
        };
        let groups = db
            .query(
                "SELECT target_group, MIN(id) AS first FROM jobs WHERE target_group IS NOT NULL
                 GROUP BY target_group ORDER BY first DESC LIMIT ?1 OFFSET ?2",
                args![limit, offset],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?, r.uint(1)?)))
            .collect::<Result<_, StoreError>>()?;
        Ok((count, groups))
    }

    const JOB_COLUMNS: &'static str = "id, submitter, description, definition, requested_device_type, requested_device,
        tags, priority, health_check, state, health, actual_device, submit_time, start_time, end_time,
        error_type, error_msg, results, failure_cause, requested_worker, target_group, sub_id, role,
        group_size, essential, multinode_definition, eligible_devices";

    fn job_row(r: &Row) -> Result<Job, StoreError> {
        let target = match (r.opt_text(5)?, r.opt_text(4)?, r.opt_text(26)?) {
            (_, _, Some(list)) => Target::AnyOf(tags_of(list)),
            (Some(d), _, None) => Target::Device(d),
            (None, t, None) => Target::DeviceType(t.unwrap_or_default()),
        };
        Ok(Job {
            id: r.uint(0)?,
            submitter: r.text(1)?,
            description: r.text(2)?,
            definition: r.text(3)?,
            target,
            tags: tags_of(r.text(6)?),
            priority: Priority::new(r.code(7)?).unwrap_or_default(),
            health_check: r.bool(8)?,
            state: JobState::from_code(r.code(9)?).unwrap_or(JobState::Submitted),
            health: JobHealth::from_code(r.code(10)?).unwrap_or(JobHealth::Unknown),
            actual_device: r.opt_text(11)?,
            submit_time: r.uint(12)?,
            start_time: r.opt_uint(13)?,
            end_time: r.opt_uint(14)?,
            error_type: r.opt_text(15)?,
            error_msg: r.opt_text(16)?,
            results: r.opt_text(17)?,
            failure_cause: r.opt_text(18)?.as_deref().and_then(FailureCause::from_name),
            requested_worker: r.opt_text(19)?,
            group: match r.opt_text(20)? {
                Some(target_group) => Some(Box::new(JobGroup {
                    target_group,
                    sub_id: r.opt_text(21)?.unwrap_or_default(),
                    role: r.opt_text(22)?.unwrap_or_default(),
                    size: u32::try_from(r.opt_uint(23)?.unwrap_or(0)).unwrap_or(u32::MAX),
                    essential: r.bool(24)?,
                    multinode_definition: r.opt_text(25)?.unwrap_or_default(),
                })),
                None => None,
            },
        })
    }

    pub fn job(&self, id: u64) -> Result<Option<Job>, StoreError> {
        self.db()
            .query_opt(
                &format!("SELECT {} FROM jobs WHERE id = ?1", Self::JOB_COLUMNS),
                args![id as i64],
            )?
            .map(|r| Self::job_row(&r))
            .transpose()
    }

    /// Jobs, newest first, `limit` from `offset`, optionally of one state only.
    pub fn jobs(
        &self,
        state: Option<JobState>,
        limit: u32,
        offset: u32,
    ) -> Result<(u64, Vec<Job>), StoreError> {
        self.query_jobs(&JobQuery {
            states: state.into_iter().collect(),
            limit,
            offset,
            ..JobQuery::default()
        })
    }

    /// The jobs `q` selects, in its order, with how many it selects in all.
    pub fn query_jobs(&self, q: &JobQuery) -> Result<(u64, Vec<Job>), StoreError> {
        let mut conds: Vec<String> = Vec::new();
        let mut vals: Vec<db::Value> = Vec::new();
        let mut any_of = |column: &str, codes: Vec<i64>, conds: &mut Vec<String>| {
            if codes.is_empty() {
                return;
            }
            let marks: Vec<String> = codes
                .into_iter()
                .map(|c| {
                    vals.push(db::Value::from(c));
                    format!("?{}", vals.len())
                })
                .collect();
            conds.push(format!("{column} IN ({})", marks.join(", ")));
        };
        any_of(
            "state",
            q.states.iter().map(|s| i64::from(s.code())).collect(),
            &mut conds,
        );
        any_of(
            "health",
            q.healths.iter().map(|h| i64::from(h.code())).collect(),
            &mut conds,
        );
        if let Some(ids) = &q.ids {
            if ids.is_empty() {
                return Ok((0, Vec::new()));
            }
            any_of("id", ids.iter().map(|i| *i as i64).collect(), &mut conds);
        }
        for (column, after) in [
            ("id", q.id_after),
            ("submit_time", q.submitted_after),
            ("start_time", q.started_after),
            ("end_time", q.ended_after),
        ] {
            if let Some(v) = after {
                vals.push(db::Value::from(v as i64));
                conds.push(format!("{column} > ?{}", vals.len()));
            }
        }
        for (column, value) in [
            ("target_group", &q.target_group),
            ("actual_device", &q.device),
            ("submitter", &q.submitter),
        ] {
            if let Some(v) = value {
                vals.push(db::Value::from(v.clone()));
                conds.push(format!("{column} = ?{}", vals.len()));
            }
        }
        let filter = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        let column = q.order.column();
        // ties by id in the same direction; unset times sort as each database sorts NULLs
        // (PostgreSQL, LAVA's: last going up; SQLite: first), so that the index serves the
        // page (a NULLS clause would make both sort every matching row)
        let direction = if q.descending { "DESC" } else { "ASC" };
        let order = match q.order {
            JobOrder::Id => format!("id {direction}"),
            _ => format!("{column} {direction}, id {direction}"),
        };
        let mut db = self.db();
        // filtered by state and health only (or not at all): the triggers' counters know
        let counted = q.ids.is_none()
            && q.target_group.is_none()
            && q.device.is_none()
            && q.submitter.is_none()
            && q.id_after.is_none()
            && q.submitted_after.is_none()
            && q.started_after.is_none()
            && q.ended_after.is_none();
        let count_sql = if counted {
            format!("SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM job_counts {filter}")
        } else {
            format!("SELECT COUNT(*) FROM jobs {filter}")
        };
        let count = match db.query_opt(&count_sql, &vals)? {
            Some(r) => r.uint(0)?,
            None => 0,
        };
        let n = vals.len();
        vals.push(db::Value::from(q.limit));
        vals.push(db::Value::from(q.offset));
        let jobs = db
            .query(
                &format!(
                    "SELECT {} FROM jobs {filter} ORDER BY {order} LIMIT ?{} OFFSET ?{}",
                    Self::JOB_COLUMNS,
                    n + 1,
                    n + 2
                ),
                &vals,
            )?
            .iter()
            .map(Self::job_row)
            .collect::<Result<_, _>>()?;
        Ok((count, jobs))
    }

    /// The job goes to `device` (Scheduled), the device is Reserved for it.
    pub fn schedule_job(&self, id: u64, device: &str) -> Result<(), StoreError> {
        let mut db = self.db();
        transaction(&mut db, |db| {
            db.execute(
                "UPDATE jobs SET state = ?2, actual_device = ?3 WHERE id = ?1",
                args![id as i64, JobState::Scheduled.code(), device],
            )?;
            db.execute(
                "UPDATE devices SET state = ?2, current_job = ?3 WHERE hostname = ?1",
                args![device, DeviceState::Reserved.code(), id as i64],
            )?;
            Ok(())
        })?;
        self.publish(&mut db, &[Changed::Job(id), Changed::Device(device.into())]);
        Ok(())
    }

    /// A whole MultiNode group goes to its devices at once: each sub-job gets its device
    /// (Reserved) and its definition with the group's roles, and is Scheduled; all or none.
    pub fn schedule_group(&self, jobs: &[(u64, String, String)]) -> Result<(), StoreError> {
        let mut db = self.db();
        transaction(&mut db, |db| {
            for (id, device, definition) in jobs {
                let n = db.execute(
                    "UPDATE jobs SET state = ?2, actual_device = ?3, definition = ?4 WHERE id = ?1 AND state = ?5",
                    args![
                        *id as i64,
                        JobState::Scheduled.code(),
                        device.as_str(),
                        definition.as_str(),
                        JobState::Submitted.code()
                    ],
                )?;
                found(n, "queued job", id.to_string())?;
                let n = db.execute(
                    "UPDATE devices SET state = ?2, current_job = ?3 WHERE hostname = ?1 AND current_job IS NULL",
                    args![device.as_str(), DeviceState::Reserved.code(), *id as i64],
                )?;
                found(n, "free device", device.clone())?;
            }
            Ok(())
        })?;
        let mut changed = Vec::new();
        for (id, device, _) in jobs {
            changed.push(Changed::Job(*id));
            changed.push(Changed::Device(device.clone()));
        }
        self.publish(&mut db, &changed);
        Ok(())
    }

    /// The job runs on its device (the worker started it): a Scheduled job becomes Running;
    /// any other state is left as it is (a job being canceled stays Canceling).
    pub fn job_running(&self, id: u64, now: u64) -> Result<(), StoreError> {
        let mut db = self.db();
        let changed = transaction(&mut db, |db| {
            let n = db.execute(
                "UPDATE jobs SET state = ?2, start_time = COALESCE(start_time, ?3) WHERE id = ?1 AND state = ?4",
                args![
                    id as i64,
                    JobState::Running.code(),
                    now as i64,
                    JobState::Scheduled.code()
                ],
            )?;
            let mut changed = Vec::new();
            if n > 0 {
                // a test job started: one more since the device's last health check
                db.execute(
                    "UPDATE devices SET state = ?2,
                        jobs_since_check = jobs_since_check
                            + (SELECT 1 - health_check FROM jobs WHERE id = ?1)
                     WHERE current_job = ?1",
                    args![id as i64, DeviceState::Running.code()],
                )?;
                changed.push(Changed::Job(id));
                if self.observed() {
                    for r in db.query(
                        "SELECT hostname FROM devices WHERE current_job = ?1",
                        args![id as i64],
                    )? {
                        changed.push(Changed::Device(r.text(0)?));
                    }
                }
            }
            Ok(changed)
        })?;
        self.publish(&mut db, &changed);
        Ok(())
    }

    /// The job is being canceled.
    pub fn job_canceling(&self, id: u64) -> Result<(), StoreError> {
        let mut db = self.db();
        let n = db.execute(
            "UPDATE jobs SET state = ?2 WHERE id = ?1 AND state != ?3 AND state != ?2",
            args![
                id as i64,
                JobState::Canceling.code(),
                JobState::Finished.code()
            ],
        )?;
        if n > 0 {
            self.publish(&mut db, &[Changed::Job(id)]);
        }
        Ok(())
    }

    /// The job ended: Finished with `health`; its device is Idle again. `device_health` is
    /// what the end asks of the device's health (Good or Bad after a health check, Unknown
    /// after a job lost with its worker), applied as [`crate::health::settle`] says; a health
    /// check also restarts its device's health-check schedule.
    pub fn finish_job(
        &self,
        id: u64,
        health: JobHealth,
        failure: Option<&Failure>,
        results: Option<&str>,
        device_health: Option<DeviceHealth>,
        now: u64,
    ) -> Result<(), StoreError> {
        let mut db = self.db();
        let changed = transaction(&mut db, |db| {
            let mut changed = Vec::new();
            if self.observed() {
                let before = db
                    .query_opt(
                        "SELECT state, health FROM jobs WHERE id = ?1",
                        args![id as i64],
                    )?
                    .map(|r| Ok::<_, StoreError>((r.int(0)?, r.int(1)?)))
                    .transpose()?;
                if before.is_some_and(|b| {
                    b != (
                        i64::from(JobState::Finished.code()),
                        i64::from(health.code()),
                    )
                }) {
                    changed.push(Changed::Job(id));
                }
                for r in db.query(
                    "SELECT hostname FROM devices WHERE current_job = ?1",
                    args![id as i64],
                )? {
                    changed.push(Changed::Device(r.text(0)?));
                }
            }
            db.execute(
                "UPDATE jobs SET state = ?2, health = ?3, end_time = ?4, error_type = ?5, error_msg = ?6,
                    results = ?7, failure_cause = ?8
                 WHERE id = ?1",
                args![
                    id as i64,
                    JobState::Finished.code(),
                    health.code(),
                    now as i64,
                    failure.and_then(|f| f.error_type.as_deref()),
                    failure.and_then(|f| f.message.as_deref()),
                    results,
                    failure.map(|f| f.cause.name())
                ],
            )?;
            db.execute(
                "UPDATE devices SET state = ?2, current_job = NULL, idle_since = ?3 WHERE current_job = ?1",
                args![id as i64, DeviceState::Idle.code(), now as i64],
            )?;
            let (device, health_check, submitted) = match db.query_opt(
                "SELECT j.actual_device, j.health_check, j.submit_time, d.health
                 FROM jobs j JOIN devices d ON d.hostname = j.actual_device WHERE j.id = ?1",
                args![id as i64],
            )? {
                Some(r) => {
                    let current =
                        DeviceHealth::from_code(r.code(3)?).unwrap_or(DeviceHealth::Unknown);
                    (Some((r.text(0)?, current)), r.bool(1)?, r.uint(2)?)
                }
                None => (None, false, 0),
            };
            if let Some((d, current)) = device {
                if health_check {
                    // LAVA's last_health_report_job: the schedule counts from its submit time
                    db.execute(
                        "UPDATE devices SET health_checked_at = ?2, jobs_since_check = 0,
                            health_check_due = ?3
                         WHERE hostname = ?1",
                        args![&d, submitted as i64, health != JobHealth::Complete],
                    )?;
                }
                let new = device_health.and_then(|h| crate::health::settle(current, h));
                if let Some(h) = new {
                    db.execute(
                        "UPDATE devices SET health = ?2 WHERE hostname = ?1",
                        args![&d, h.code()],
                    )?;
                    if self.observed()
                        && !changed
                            .iter()
                            .any(|c| matches!(c, Changed::Device(x) if *x == d))
                    {
                        changed.push(Changed::Device(d));
                    }
                }
            }
            Ok(changed)
        })?;
        self.publish(&mut db, &changed);
        Ok(())
    }

    // ---- tokens ----------------------------------------------------------------------------

    /// A new API token for `username`; only its hash is stored.
    pub fn add_token(&self, username: &str, admin: bool, token: &str) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO tokens (hash, username, admin) VALUES (?1, ?2, ?3)",
            args![token_hash(token), username, admin],
        )?;
        Ok(())
    }

    /// The user of a token, and whether they are an admin.
    pub fn token_user(&self, token: &str) -> Result<Option<(String, bool)>, StoreError> {
        self.db()
            .query_opt(
                "SELECT username, admin FROM tokens WHERE hash = ?1",
                args![token_hash(token)],
            )?
            .map(|r| Ok((r.text(0)?, r.bool(1)?)))
            .transpose()
    }

    // ---- the scheduler's view ------------------------------------------------------------

    /// What the scheduler needs: queued jobs, devices with their workers, device types.
    /// A device's `health_check_due` here is the stored flag alone (a check is forced); the
    /// engine adds the device type's schedule with [`Store::lab_snapshot`] and
    /// [`crate::health::plan`].
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.lab_snapshot().map(|l| l.snapshot)
    }

    /// The scheduler's snapshot and, for each of its devices (same order), its health-check
    /// rule and history, read at one moment.
    pub fn lab_snapshot(&self) -> Result<LabSnapshot, StoreError> {
        let mut db = self.db();
        // only the columns the scheduler reads: the engine takes a snapshot per pass, and a
        // queue's definitions (KiBs each) would be copied out of the database every time
        let jobs = db
            .query(
                "SELECT j.id, j.requested_device_type, j.requested_device, j.tags, j.priority,
                        j.submit_time, j.health_check, j.requested_worker, j.target_group,
                        j.group_size, j.eligible_devices, r.job_id IS NOT NULL
                 FROM jobs j LEFT JOIN reservations r ON r.job_id = j.id WHERE j.state = ?1",
                args![JobState::Submitted.code()],
            )?
            .iter()
            .map(|r| {
                let target = match (r.opt_text(2)?, r.opt_text(1)?, r.opt_text(10)?) {
                    (_, _, Some(list)) => Target::AnyOf(tags_of(list)),
                    (Some(d), _, None) => Target::Device(d),
                    (None, t, None) => Target::DeviceType(t.unwrap_or_default()),
                };
                Ok(QueuedJob {
                    id: r.uint(0)?,
                    target,
                    tags: tags_of(r.text(3)?),
                    priority: Priority::new(r.code(4)?).unwrap_or_default(),
                    submit_time: r.uint(5)?,
                    health_check: r.bool(6)?,
                    worker: r.opt_text(7)?,
                    group: match r.opt_text(8)? {
                        Some(name) => Some(GroupRef {
                            name,
                            size: u32::try_from(r.opt_uint(9)?.unwrap_or(0)).unwrap_or(u32::MAX),
                        }),
                        None => None,
                    },
                    reservation: r.bool(11)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut facts = Vec::new();
        let devices = db
            .query(
                "SELECT d.hostname, d.device_type, d.tags, d.state, d.health, d.worker, w.state, w.health,
                        d.health_check_due, d.idle_since, d.health_checked_at, d.jobs_since_check,
                        t.health_frequency, t.health_denominator, t.disable_health_check
                 FROM devices d JOIN workers w ON w.hostname = d.worker
                 JOIN device_types t ON t.name = d.device_type",
                &[],
            )?
            .iter()
            .map(|r| {
                let forced = r.bool(8)?;
                facts.push(Facts {
                    rule: Rule {
                        frequency: u32::try_from(r.uint(12)?).unwrap_or(u32::MAX),
                        denominator: Denominator::from_code(r.code(13)?),
                        disabled: r.bool(14)?,
                    },
                    history: History {
                        forced,
                        checked_at: r.opt_uint(10)?,
                        jobs_since: r.uint(11)?,
                    },
                });
                Ok(DeviceInfo {
                    hostname: r.text(0)?,
                    device_type: r.text(1)?,
                    tags: tags_of(r.text(2)?),
                    state: DeviceState::from_code(r.code(3)?).unwrap_or(DeviceState::Idle),
                    health: DeviceHealth::from_code(r.code(4)?).unwrap_or(DeviceHealth::Unknown),
                    worker: r.text(5)?,
                    worker_state: WorkerState::from_code(r.code(6)?)
                        .unwrap_or(WorkerState::Offline),
                    worker_health: WorkerHealth::from_code(r.code(7)?)
                        .unwrap_or(WorkerHealth::Active),
                    health_check_due: forced,
                    idle_since: r.uint(9)?,
                    // the engine knows which connected workers hold boards
                    holds: false,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let device_types = db
            .query(
                "SELECT name, health_check IS NOT NULL AND disable_health_check = 0 FROM device_types",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(DeviceTypeInfo {
                    name: r.text(0)?,
                    health_check: r.bool(1)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(LabSnapshot {
            snapshot: Snapshot {
                jobs,
                devices,
                device_types,
            },
            facts,
        })
    }
}

/// What is stored of a token: its SHA-256, hex.
fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
#[path = "../tests/support/pg.rs"]
mod test_pg;

#[cfg(test)]
mod tests {
    use super::*;

    /// A test's database: an SQLite file in a temporary directory, or a PostgreSQL database
    /// of its own.
    enum Db {
        Sqlite(tempfile::TempDir),
        Postgres(super::test_pg::TestDb),
    }

    impl Db {
        fn sqlite() -> Db {
            Db::Sqlite(tempfile::tempdir().expect("temporary directory"))
        }

        fn postgres(test: &str) -> Option<Db> {
            super::test_pg::TestDb::create(test).map(Db::Postgres)
        }

        /// A store on the database (again: the same data).
        fn open(&self) -> Result<Store, StoreError> {
            match self {
                Db::Sqlite(dir) => Store::open(&dir.path().join("basalt.db")),
                Db::Postgres(db) => Store::connect(db.url()),
            }
        }
    }

    /// Each test runs on SQLite, and on PostgreSQL when `BASALT_TEST_POSTGRES` names a server.
    macro_rules! on_both {
        ($($name:ident),* $(,)?) => {$(
            mod $name {
                #[test]
                fn sqlite() {
                    super::$name(&super::Db::sqlite())
                }
                #[test]
                fn postgres() {
                    if let Some(db) = super::Db::postgres(concat!(stringify!($name), "::postgres")) {
                        super::$name(&db)
                    }
                }
            }
        )*};
    }

    on_both!(
        jobs_are_listed_by_device_and_submitter_and_groups_newest_first,
        a_group_is_stored_and_scheduled_all_or_nothing,
        a_job_goes_through_its_states_and_frees_its_device,
        the_snapshot_feeds_the_scheduler,
        references_and_duplicates_are_refused_by_name,
        tokens_are_stored_hashed,
        migrations_run_once_and_a_newer_schema_is_refused,
        the_store_works_inside_tokio_runtimes,
        health_checks_set_the_device_health,
        the_counted_totals_are_the_counted_rows,
        every_state_change_is_observed_once_in_commit_order,
        the_lab_registry_keeps_aliases_tags_and_worker_health,
        a_devices_check_history_follows_its_jobs,
        migration_5_keeps_checked_devices_checked,
        a_reservation_is_a_job_with_a_lease,
    );

    /// The job list by device or by submitter, newest first, walks an index (SQLite's plan;
    /// PostgreSQL's planner picks by table size, which a test's few rows do not show).
    #[test]
    fn the_job_list_by_device_or_submitter_uses_an_index() {
        let db = Db::sqlite();
        let s = db.open().unwrap();
        for (column, index) in [
            ("actual_device", "jobs_actual_device"),
            ("submitter", "jobs_submitter"),
        ] {
            let plan = s
                .db()
                .query(
                    &format!(
                        "EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE {column} = ?1 \
                         ORDER BY id DESC LIMIT 25"
                    ),
                    &[db::Value::from("x".to_owned())],
                )
                .unwrap()
                .iter()
                .map(|r| r.text(3).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("; ");
            assert!(plan.contains(index), "{column}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{column}: sorts: {plan}");
        }
    }

    fn a_reservation_is_a_job_with_a_lease(db: &Db) {
        use crate::reservation::{Ending, ReservationState};
        let s = lab(db);
        let new = NewReservation {
            holder: "alice".into(),
            requirements: Some(
                crate::reservation::requirements::Requirements::parse(
                    &serde_json::json!({"ram": "1G"}),
                )
                .unwrap(),
            ),
            lease_secs: 60,
            console_token: "c".repeat(64),
            watch_token: "w".repeat(64),
            ssh_public_key: "ssh-ed25519 AAAA test".into(),
            ssh_private_key: Some("secret".into()),
            ssh_user: "root".into(),
            boot: None,
        };
        let held = NewJob {
            target: Target::AnyOf(vec!["qemu-01".into()]),
            tags: Vec::new(),
            ..job()
        };
        let id = s.reserve(&held, &new, 1000).unwrap();
        let plain = s.submit(&job(), 1001).unwrap();
        assert!(s.is_reservation(id).unwrap() && !s.is_reservation(plain).unwrap());
        let r = s.reservation(id).unwrap().unwrap();
        assert_eq!(
            (r.state, r.expires, r.holder.as_str()),
            (ReservationState::Queued, 61_000, "alice")
        );
        assert_eq!(r.requirements, new.requirements);
        assert_eq!(r.ssh_private_key.as_deref(), Some("secret"));
        assert!(!format!("{r:?}").contains("secret"), "Debug hides secrets");
        assert_eq!(s.job(id).unwrap().unwrap().target, held.target);
        // the scheduler sees a reservation that may take the listed devices
        let snap = s.snapshot().unwrap();
        let q = snap.jobs.iter().find(|j| j.id == id).unwrap();
        assert!(q.reservation && q.target == Target::AnyOf(vec!["qemu-01".into()]));
        assert!(
            !snap
                .jobs
                .iter()
                .find(|j| j.id == plain)
                .unwrap()
                .reservation
        );
        // leases: the earliest expiry of the live ones, the expired by a time
        assert_eq!(s.next_expiry().unwrap(), Some(61_000));
        assert!(s.expired_reservations(60_999).unwrap().is_empty());
        assert_eq!(s.expired_reservations(61_000).unwrap(), [id]);
        s.update_reservation(
            id,
            &ReservationUpdate {
                state: Some(ReservationState::Ready),
                booted: Some(true),
                ending: Some(Ending::Expiry),
                connection: Some(basalt_proto::Connection {
                    console: Some(basalt_proto::ConsoleEndpoint {
                        host: "127.0.0.1".into(),
                        port: 7100,
                    }),
                    ssh: None,
                }),
                ..ReservationUpdate::default()
            },
        )
        .unwrap();
        let r = s.reservation(id).unwrap().unwrap();
        assert_eq!(
            (r.state, r.booted, r.ending),
            (ReservationState::Ready, true, Some(Ending::Expiry))
        );
        assert_eq!(r.connection.console.map(|c| c.port), Some(7100));
        assert_eq!(s.next_expiry().unwrap(), None, "ended by the master");
        // lists: newest first, by holder and state
        let (n, list) = s
            .reservations(&ReservationQuery {
                holder: Some("alice".into()),
                state: Some(ReservationState::Ready),
                limit: 10,
                offset: 0,
            })
            .unwrap();
        assert_eq!((n, list.len(), list[0].id), (1, 1, id));
        let (n, _) = s
            .reservations(&ReservationQuery {
                holder: Some("bob".into()),
                limit: 10,
                ..ReservationQuery::default()
            })
            .unwrap();
        assert_eq!(n, 0);
        assert!(s
            .update_reservation(
                plain,
                &ReservationUpdate {
                    booted: Some(true),
                    ..ReservationUpdate::default()
                }
            )
            .is_err());
    }

    /// The job list's totals from the triggers' counters equal a count of the rows, whatever
    /// the jobs went through.
    fn the_counted_totals_are_the_counted_rows(db: &Db) {
        let s = lab(db);
        let ids: Vec<u64> = (0..6)
            .map(|i| s.submit(&job(), 1000 + i).unwrap())
            .collect();
        s.schedule_job(ids[0], "qemu-01").unwrap();
        s.job_running(ids[0], 2000).unwrap();
        s.finish_job(ids[0], JobHealth::Complete, None, None, None, 3000)
            .unwrap();
        s.finish_job(ids[1], JobHealth::Canceled, None, None, None, 3000)
            .unwrap();
        s.job_canceling(ids[2]).unwrap();
        s.finish_job(ids[3], JobHealth::Incomplete, None, None, None, 3000)
            .unwrap();
        // finishing a finished job again changes nothing
        s.finish_job(ids[3], JobHealth::Incomplete, None, None, None, 4000)
            .unwrap();
        let states = [
            vec![],
            vec![JobState::Finished],
            vec![JobState::Submitted, JobState::Canceling],
        ];
        let healths = [
            vec![],
            vec![JobHealth::Complete, JobHealth::Incomplete],
            vec![JobHealth::Unknown],
        ];
        for st in &states {
            for h in &healths {
                let q = JobQuery {
                    states: st.clone(),
                    healths: h.clone(),
                    ..JobQuery::default()
                };
                let (counted, page) = s.query_jobs(&q).unwrap();
                // an always-true id filter makes the store count the rows
                let (rows, _) = s
                    .query_jobs(&JobQuery {
                        id_after: Some(0),
                        ..q.clone()
                    })
                    .unwrap();
                assert_eq!(counted, rows, "{st:?} {h:?}");
                assert_eq!(counted, page.len() as u64, "{st:?} {h:?}");
            }
        }
        assert_eq!(s.query_jobs(&JobQuery::default()).unwrap().0, 6);
    }

    /// What the observers see: (kind, name, state, health) per change.
    fn observed(db: &Db) -> (Store, std::sync::Arc<Mutex<Vec<String>>>) {
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let s = db.open().unwrap().observe(move |c| {
            let line = match c {
                Change::Job {
                    job,
                    device_type,
                    worker,
                } => format!(
                    "job {} {} {} {:?} {:?} {:?}",
                    job.id, job.state, job.health, job.actual_device, device_type, worker
                ),
                Change::Device { device } => format!(
                    "device {} {} {} {:?}",
                    device.hostname, device.state, device.health, device.current_job
                ),
                Change::Worker { worker } => {
                    format!(
                        "worker {} {} {}",
                        worker.hostname, worker.state, worker.health
                    )
                }
            };
            log.lock().unwrap().push(line);
        });
        (s, seen)
    }

    fn every_state_change_is_observed_once_in_commit_order(db: &Db) {
        let (s, seen) = observed(db);
        s.put_device_type(&DeviceType {
            name: "qemu".into(),
            health_check: None,
        })
        .unwrap();
        s.add_worker("w1", "").unwrap();
        s.set_worker_state("w1", WorkerState::Online, 1).unwrap();
        // a heartbeat: seen again, not a change
        s.set_worker_state("w1", WorkerState::Online, 2).unwrap();
        s.add_device(&Device {
            hostname: "d1".into(),
            device_type: "qemu".into(),
            worker: "w1".into(),
            description: String::new(),
            tags: Vec::new(),
            dictionary: None,
            state: DeviceState::Idle,
            health: DeviceHealth::Unknown,
            current_job: None,
        })
        .unwrap();
        s.set_device_health("d1", DeviceHealth::Good, 1).unwrap();
        s.set_device_health("d1", DeviceHealth::Good, 1).unwrap();
        let mut j = job();
        j.tags.clear();
        let id = s.submit(&j, 1000).unwrap();
        s.schedule_job(id, "d1").unwrap();
        s.job_running(id, 2000).unwrap();
        s.job_running(id, 2001).unwrap();
        s.job_canceling(id).unwrap();
        s.job_canceling(id).unwrap();
        s.finish_job(
            id,
            JobHealth::Canceled,
            None,
            None,
            Some(DeviceHealth::Bad),
            3000,
        )
        .unwrap();
        s.finish_job(id, JobHealth::Canceled, None, None, None, 3001)
            .unwrap();
        let d = "Some(\"d1\") Some(\"qemu\") Some(\"w1\")";
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "worker w1 Offline Active".to_string(),
                "worker w1 Online Active".into(),
                "device d1 Idle Unknown None".into(),
                "device d1 Idle Good None".into(),
                format!("job {id} Submitted Unknown None Some(\"qemu\") None"),
                format!("job {id} Scheduled Unknown {d}"),
                format!("device d1 Reserved Good Some({id})"),
                format!("job {id} Running Unknown {d}"),
                format!("device d1 Running Good Some({id})"),
                format!("job {id} Canceling Unknown {d}"),
                format!("job {id} Finished Canceled {d}"),
                "device d1 Idle Bad None".into(),
            ]
        );
    }

    fn lab(db: &Db) -> Store {
        let s = db.open().unwrap();
        s.put_device_type(&DeviceType {
            name: "qemu".into(),
            health_check: None,
        })
        .unwrap();
        s.add_worker("w1", "").unwrap();
        s.add_device(&Device {
            hostname: "qemu-01".into(),
            device_type: "qemu".into(),
            worker: "w1".into(),
            description: String::new(),
            tags: vec!["fast".into()],
            dictionary: Some("{% extends 'qemu.jinja2' %}".into()),
            state: DeviceState::Idle,
            health: DeviceHealth::Unknown,
            current_job: None,
        })
        .unwrap();
        s
    }

    fn job() -> NewJob {
        NewJob {
            submitter: "admin".into(),
            description: "demo".into(),
            definition: "job_name: demo".into(),
            target: Target::DeviceType("qemu".into()),
            tags: vec!["fast".into()],
            priority: Priority::MEDIUM,
            health_check: false,
        }
    }

    fn jobs_are_listed_by_device_and_submitter_and_groups_newest_first(db: &Db) {
        let s = lab(db);
        let mine = s.submit(&job(), 1000).unwrap();
        let theirs = s
            .submit(
                &NewJob {
                    submitter: "bob".into(),
                    ..job()
                },
                1001,
            )
            .unwrap();
        s.schedule_job(mine, "d1").unwrap();
        let ids = |q: JobQuery| {
            let (n, jobs) = s.query_jobs(&q).unwrap();
            (n, jobs.iter().map(|j| j.id).collect::<Vec<_>>())
        };
        let on_d1 = JobQuery {
            device: Some("d1".into()),
            ..JobQuery::default()
        };
        assert_eq!(ids(on_d1.clone()), (1, vec![mine]));
        let by_bob = JobQuery {
            submitter: Some("bob".into()),
            ..JobQuery::default()
        };
        assert_eq!(ids(by_bob), (1, vec![theirs]));
        let both = JobQuery {
            submitter: Some("bob".into()),
            ..on_d1
        };
        assert_eq!(ids(both), (0, vec![]));
        assert_eq!(s.groups(10, 0).unwrap(), (0, vec![]));
        let member = |role: &str| {
            (
                job(),
                GroupMember {
                    role: role.into(),
                    essential: false,
                    worker: None,
                },
            )
        };
        for name in ["g-old", "g-new"] {
            s.submit_group(
                &NewGroup {
                    target_group: name.into(),
                    multinode_definition: "job_name: mn\n".into(),
                    jobs: vec![member("server"), member("client")],
                },
                2000,
            )
            .unwrap();
        }
        let (n, groups) = s.groups(10, 0).unwrap();
        assert_eq!(n, 2);
        let names: Vec<&str> = groups.iter().map(|(g, _)| g.as_str()).collect();
        assert_eq!(names, ["g-new", "g-old"]);
        assert_eq!(s.groups(1, 1).unwrap().1[0].0, "g-old");
    }

    fn a_group_is_stored_and_scheduled_all_or_nothing(db: &Db) {
        let s = lab(db);
        let member = |role: &str, worker: Option<&str>| {
            (
                job(),
                GroupMember {
                    role: role.into(),
                    essential: role == "server",
                    worker: worker.map(str::to_string),
                },
            )
        };
        let g = NewGroup {
            target_group: "g-1".into(),
            multinode_definition: "job_name: mn\n".into(),
            jobs: vec![member("server", None), member("client", Some("w1"))],
        };
        let ids = s.submit_group(&g, 1000).unwrap();
        assert_eq!(ids.len(), 2);
        let group = s.group("g-1").unwrap();
        let subs: Vec<(&str, &str, bool)> = group
            .iter()
            .map(|j| {
                let g = j.group.as_ref().unwrap();
                (g.sub_id.as_str(), g.role.as_str(), g.essential)
            })
            .collect();
        let (a, b) = (format!("{}.0", ids[0]), format!("{}.1", ids[0]));
        assert_eq!(
            subs,
            [(a.as_str(), "server", true), (b.as_str(), "client", false)]
        );
        assert_eq!(group[1].requested_worker.as_deref(), Some("w1"));
        assert_eq!(
            group[0].group.as_ref().unwrap().multinode_definition,
            "job_name: mn\n"
        );
        assert_eq!(group[0].group.as_ref().unwrap().size, 2);
        let snap = s.snapshot().unwrap();
        assert!(snap.jobs.iter().all(|j| j.group
            == Some(GroupRef {
                name: "g-1".into(),
                size: 2
            })));
        assert!(snap.jobs.iter().any(|j| j.worker.as_deref() == Some("w1")));
        let (n, listed) = s
            .query_jobs(&JobQuery {
                target_group: Some("g-1".into()),
                ..JobQuery::default()
            })
            .unwrap();
        assert_eq!((n, listed.len()), (2, 2));
        // a device that does not exist: nothing of the group moves
        let bad = [
            (ids[0], "qemu-01".to_string(), "a".to_string()),
            (ids[1], "nope".to_string(), "b".to_string()),
        ];
        assert!(s.schedule_group(&bad).is_err());
        assert_eq!(s.job(ids[0]).unwrap().unwrap().state, JobState::Submitted);
        assert_eq!(s.device("qemu-01").unwrap().unwrap().current_job, None);
        // one device for two sub-jobs: refused too
        let twice = [
            (ids[0], "qemu-01".to_string(), "a".to_string()),
            (ids[1], "qemu-01".to_string(), "b".to_string()),
        ];
        assert!(s.schedule_group(&twice).is_err());
        assert_eq!(s.job(ids[1]).unwrap().unwrap().state, JobState::Submitted);
        s.schedule_group(&twice[..1]).unwrap();
        let j = s.job(ids[0]).unwrap().unwrap();
        assert_eq!((j.state, j.definition.as_str()), (JobState::Scheduled, "a"));
        assert_eq!(
            s.device("qemu-01").unwrap().unwrap().current_job,
            Some(ids[0])
        );
    }

    fn a_job_goes_through_its_states_and_frees_its_device(db: &Db) {
        let s = lab(db);
        let id = s.submit(&job(), 1000).unwrap();
        let j = s.job(id).unwrap().unwrap();
        assert_eq!(
            (j.state, j.health),
            (JobState::Submitted, JobHealth::Unknown)
        );
        assert_eq!(j.target, Target::DeviceType("qemu".into()));
        assert_eq!(
            (j.tags, j.priority),
            (vec!["fast".into()], Priority::MEDIUM)
        );
        assert_eq!(s.snapshot().unwrap().jobs.len(), 1);
        s.schedule_job(id, "qemu-01").unwrap();
        assert_eq!(
            s.device("qemu-01").unwrap().unwrap().state,
            DeviceState::Reserved
        );
        assert!(s.snapshot().unwrap().jobs.is_empty());
        s.job_running(id, 2000).unwrap();
        let d = s.device("qemu-01").unwrap().unwrap();
        assert_eq!((d.state, d.current_job), (DeviceState::Running, Some(id)));
        s.finish_job(
            id,
            JobHealth::Complete,
            None,
            Some("- {case: job}"),
            None,
            3000,
        )
        .unwrap();
        let j = s.job(id).unwrap().unwrap();
        assert_eq!(
            (j.state, j.health),
            (JobState::Finished, JobHealth::Complete)
        );
        assert_eq!((j.start_time, j.end_time), (Some(2000), Some(3000)));
        assert_eq!(j.results.as_deref(), Some("- {case: job}"));
        let d = s.device("qemu-01").unwrap().unwrap();
        assert_eq!((d.state, d.current_job), (DeviceState::Idle, None));
        assert_eq!(s.jobs(None, 10, 0).unwrap().0, 1);
        assert_eq!(s.jobs(Some(JobState::Running), 10, 0).unwrap().0, 0);
        // ids grow; pages are newest first
        let id2 = s.submit(&job(), 4000).unwrap();
        assert!(id2 > id);
        let (n, page) = s.jobs(None, 1, 0).unwrap();
        assert_eq!((n, page[0].id), (2, id2));
        assert_eq!(s.jobs(None, 1, 1).unwrap().1[0].id, id);
        assert_eq!(s.job(id2 + 100).unwrap(), None);
    }

    fn the_snapshot_feeds_the_scheduler(db: &Db) {
        let s = lab(db);
        s.set_worker_state("w1", WorkerState::Online, 5).unwrap();
        s.set_device_health("qemu-01", DeviceHealth::Good, 1)
            .unwrap();
        let id = s.submit(&job(), 1).unwrap();
        let snapshot = s.snapshot().unwrap();
        assert!(!snapshot.devices[0].health_check_due);
        assert!(!snapshot.device_types[0].health_check);
        let plan = crate::scheduler::schedule(&snapshot);
        assert_eq!(plan.assignments.len(), 1);
        assert_eq!(plan.assignments[0].job, id);
        assert_eq!(plan.assignments[0].device, "qemu-01");
        assert_eq!(s.workers().unwrap()[0].last_seen, 5);
    }

    fn health_checks_set_the_device_health(db: &Db) {
        let s = lab(db);
        s.put_device_type(&DeviceType {
            name: "qemu".into(),
            health_check: Some("job_name: health".into()),
        })
        .unwrap();
        assert!(s.snapshot().unwrap().device_types[0].health_check);
        assert!(s.snapshot().unwrap().devices[0].health_check_due);
        let id = s
            .submit(
                &NewJob {
                    health_check: true,
                    target: Target::Device("qemu-01".into()),
                    ..job()
                },
                1,
            )
            .unwrap();
        let j = s.job(id).unwrap().unwrap();
        assert!(j.health_check);
        assert_eq!(j.target, Target::Device("qemu-01".into()));
        s.schedule_job(id, "qemu-01").unwrap();
        s.finish_job(
            id,
            JobHealth::Incomplete,
            Some(&Failure::new(
                FailureCause::Bootloader,
                "InfrastructureError",
                "no boot",
            )),
            None,
            Some(DeviceHealth::Bad),
            2,
        )
        .unwrap();
        let j = s.job(id).unwrap().unwrap();
        assert_eq!(j.error_type.as_deref(), Some("InfrastructureError"));
        assert_eq!(j.error_msg.as_deref(), Some("no boot"));
        assert_eq!(j.failure_cause, Some(FailureCause::Bootloader));
        assert_eq!(
            s.device("qemu-01").unwrap().unwrap().health,
            DeviceHealth::Bad
        );
        assert!(s.snapshot().unwrap().devices[0].health_check_due);
    }

    fn references_and_duplicates_are_refused_by_name(db: &Db) {
        let s = lab(db);
        let mut d = s.device("qemu-01").unwrap().unwrap();
        assert!(matches!(s.add_device(&d), Err(StoreError::Exists { .. })));
        d.hostname = "x".into();
        d.worker = "nowhere".into();
        let e = s.add_device(&d).unwrap_err().to_string();
        assert!(e.contains("worker 'nowhere' does not exist"), "{e}");
        assert!(matches!(
            s.add_worker("w1", ""),
            Err(StoreError::Exists { .. })
        ));
        assert!(matches!(
            s.set_dictionary("nothing", ""),
            Err(StoreError::Missing { .. })
        ));
        // a failed transaction leaves the store usable
        assert!(s.add_token("bob", false, "t").is_ok());
        assert!(s.add_token("bob", false, "t").is_err());
        assert_eq!(s.devices().unwrap().len(), 1);
    }

    fn tokens_are_stored_hashed(db: &Db) {
        let s = lab(db);
        s.add_token("alice", true, "s3cret-token").unwrap();
        assert_eq!(
            s.token_user("s3cret-token").unwrap(),
            Some(("alice".into(), true))
        );
        assert_eq!(s.token_user("other").unwrap(), None);
        let rows = s.db().query("SELECT hash FROM tokens", &[]).unwrap();
        assert_eq!(rows.len(), 1);
        assert_ne!(rows[0].text(0).unwrap(), "s3cret-token");
    }

    fn migrations_run_once_and_a_newer_schema_is_refused(db: &Db) {
        let s = db.open().unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        s.add_worker("w1", "").unwrap();
        drop(s);
        let s = db.open().unwrap();
        assert_eq!(s.workers().unwrap().len(), 1);
        write_version(&mut s.db(), 99).unwrap();
        drop(s);
        assert!(matches!(
            db.open(),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }

    fn the_lab_registry_keeps_aliases_tags_and_worker_health(db: &Db) {
        let s = lab(db);
        // a type's schedule: LAVA's defaults, then the fields changed
        let t = s.device_type("qemu").unwrap().unwrap();
        assert_eq!(t.rule, Rule::default());
        assert!(s
            .upsert_device_type(
                "arm",
                &DeviceTypeChange {
                    frequency: Some(3),
                    denominator: Some(Denominator::Jobs),
                    health_check: Some(Some("job_name: hc".into())),
                    ..DeviceTypeChange::default()
                },
            )
            .unwrap());
        assert!(!s
            .upsert_device_type(
                "arm",
                &DeviceTypeChange {
                    disabled: Some(true),
                    ..DeviceTypeChange::default()
                },
            )
            .unwrap());
        let arm = s.device_type("arm").unwrap().unwrap();
        assert_eq!(
            (arm.rule.frequency, arm.rule.denominator, arm.rule.disabled),
            (3, Denominator::Jobs, true)
        );
        assert_eq!(arm.health_check.as_deref(), Some("job_name: hc"));
        // disabled: the scheduler sees no health check for it
        let snap = s.snapshot().unwrap();
        let info = snap.device_types.iter().find(|t| t.name == "arm").unwrap();
        assert!(!info.health_check);
        // aliases
        s.add_alias("aarch64", "arm").unwrap();
        assert!(matches!(
            s.add_alias("aarch64", "qemu"),
            Err(StoreError::Exists { .. })
        ));
        assert!(matches!(
            s.add_alias("qemu", "arm"),
            Err(StoreError::Exists { .. })
        ));
        assert!(matches!(
            s.add_alias("x", "none"),
            Err(StoreError::Missing { .. })
        ));
        assert!(matches!(
            s.upsert_device_type("aarch64", &DeviceTypeChange::default()),
            Err(StoreError::Exists { .. })
        ));
        assert_eq!(
            s.resolve_device_type("aarch64").unwrap().as_deref(),
            Some("arm")
        );
        assert_eq!(
            s.resolve_device_type("arm").unwrap().as_deref(),
            Some("arm")
        );
        assert_eq!(s.resolve_device_type("nothing").unwrap(), None);
        assert_eq!(s.device_type_details().unwrap()[0].aliases, ["aarch64"]);
        s.remove_alias("aarch64").unwrap();
        assert!(matches!(
            s.remove_alias("aarch64"),
            Err(StoreError::Missing { .. })
        ));
        // tags one at a time, and a device's other fields
        assert_eq!(s.add_device_tag("qemu-01", "usb").unwrap(), ["fast", "usb"]);
        assert_eq!(s.add_device_tag("qemu-01", "usb").unwrap(), ["fast", "usb"]);
        assert_eq!(s.remove_device_tag("qemu-01", "fast").unwrap(), ["usb"]);
        assert!(s.remove_device_tag("qemu-01", "fast").is_err());
        s.update_device(
            "qemu-01",
            &DeviceChange {
                description: Some("bench 2".into()),
                device_type: Some("arm".into()),
                ..DeviceChange::default()
            },
        )
        .unwrap();
        let d = s.device("qemu-01").unwrap().unwrap();
        assert_eq!(
            (d.description.as_str(), d.device_type.as_str()),
            ("bench 2", "arm")
        );
        assert!(matches!(
            s.update_device(
                "qemu-01",
                &DeviceChange {
                    worker: Some("nowhere".into()),
                    ..DeviceChange::default()
                },
            ),
            Err(StoreError::Missing { .. })
        ));
        // a worker's health and its devices (LAVA's go_health_*)
        s.set_device_health("qemu-01", DeviceHealth::Good, 1)
            .unwrap();
        assert!(s
            .set_worker_health("w1", WorkerHealth::Maintenance)
            .unwrap()
            .is_empty());
        assert_eq!(
            s.set_worker_health("w1", WorkerHealth::Active).unwrap(),
            ["qemu-01"]
        );
        assert_eq!(
            s.device("qemu-01").unwrap().unwrap().health,
            DeviceHealth::Unknown
        );
        assert_eq!(
            s.set_worker_health("w1", WorkerHealth::Retired).unwrap(),
            ["qemu-01"]
        );
        assert_eq!(
            s.device("qemu-01").unwrap().unwrap().health,
            DeviceHealth::Retired
        );
        assert!(s
            .set_worker_health("w1", WorkerHealth::Active)
            .unwrap()
            .is_empty());
        assert_eq!(
            s.worker("w1").unwrap().unwrap().health,
            WorkerHealth::Active
        );
        assert!(matches!(
            s.set_worker_health("nobody", WorkerHealth::Active),
            Err(StoreError::Missing { .. })
        ));
        // a lost worker: its Good devices only go to Unknown
        s.set_device_health("qemu-01", DeviceHealth::Good, 1)
            .unwrap();
        assert_eq!(s.worker_lost("w1").unwrap(), ["qemu-01"]);
        assert!(s.worker_lost("w1").unwrap().is_empty());
    }

    fn a_devices_check_history_follows_its_jobs(db: &Db) {
        let s = lab(db);
        let facts = |s: &Store| s.lab_snapshot().unwrap().facts[0];
        // never checked: forced
        assert_eq!(
            facts(&s).history,
            History {
                forced: true,
                checked_at: None,
                jobs_since: 0
            }
        );
        // an admin's Good: not forced, counted from then
        s.set_device_health("qemu-01", DeviceHealth::Good, 500)
            .unwrap();
        assert_eq!(
            facts(&s).history,
            History {
                forced: false,
                checked_at: Some(500),
                jobs_since: 0
            }
        );
        // test jobs that start count; one that never ran does not
        for (run, at) in [(true, 1000), (true, 2000), (false, 3000)] {
            let id = s.submit(&job(), at).unwrap();
            s.schedule_job(id, "qemu-01").unwrap();
            if run {
                s.job_running(id, at + 1).unwrap();
                s.job_running(id, at + 2).unwrap();
            }
            s.finish_job(id, JobHealth::Complete, None, None, None, at + 3)
                .unwrap();
        }
        assert_eq!(facts(&s).history.jobs_since, 2);
        // a health check: counted from its submit time, whatever it ended with
        let check = NewJob {
            health_check: true,
            target: Target::Device("qemu-01".into()),
            ..job()
        };
        let id = s.submit(&check, 4000).unwrap();
        s.schedule_job(id, "qemu-01").unwrap();
        s.job_running(id, 4100).unwrap();
        s.finish_job(
            id,
            JobHealth::Incomplete,
            None,
            None,
            Some(DeviceHealth::Bad),
            4200,
        )
        .unwrap();
        assert_eq!(
            facts(&s).history,
            History {
                forced: true,
                checked_at: Some(4000),
                jobs_since: 0
            }
        );
        assert_eq!(
            s.device("qemu-01").unwrap().unwrap().health,
            DeviceHealth::Bad
        );
        // a check's outcome does not take a device out of Maintenance
        s.set_device_health("qemu-01", DeviceHealth::Maintenance, 4300)
            .unwrap();
        let id = s.submit(&check, 5000).unwrap();
        assert_eq!(s.queued_health_check("qemu-01").unwrap(), Some(id));
        s.schedule_job(id, "qemu-01").unwrap();
        s.finish_job(
            id,
            JobHealth::Complete,
            None,
            None,
            Some(DeviceHealth::Good),
            5100,
        )
        .unwrap();
        assert_eq!(
            s.device("qemu-01").unwrap().unwrap().health,
            DeviceHealth::Maintenance
        );
        assert_eq!(facts(&s).history.checked_at, Some(5000));
        assert_eq!(s.queued_health_check("qemu-01").unwrap(), None);
        // the rule is the device type's
        assert_eq!(facts(&s).rule, Rule::default());
    }

    /// Migration 5 on a database at version 4: a device that needed no check keeps needing
    /// none (its schedule counts from the migration), one never checked still needs one.
    fn migration_5_keeps_checked_devices_checked(db: &Db) {
        let before_ms = crate::engine::now_ms();
        let sql = |text: &str| match db {
            Db::Sqlite(dir) => rusqlite::Connection::open(dir.path().join("basalt.db"))
                .and_then(|c| c.execute_batch(text))
                .map_err(|e| e.to_string()),
            Db::Postgres(pg) => pg.run(text),
        };
        if let Db::Postgres(_) = db {
            sql(PG_SCHEMA_VERSION).unwrap();
        }
        for m in &MIGRATIONS[..4] {
            sql(match db {
                Db::Sqlite(_) => m.sqlite,
                Db::Postgres(_) => m.postgres,
            })
            .unwrap();
        }
        sql(match db {
            Db::Sqlite(_) => "PRAGMA user_version = 4",
            Db::Postgres(_) => "UPDATE schema_version SET version = 4",
        })
        .unwrap();
        sql(
            "INSERT INTO device_types (name, health_check) VALUES ('qemu', 'job_name: hc');
             INSERT INTO workers (hostname) VALUES ('w1');
             INSERT INTO devices (hostname, device_type, worker, health, health_check_due)
                VALUES ('checked', 'qemu', 'w1', 0, 0), ('never', 'qemu', 'w1', 1, 1);",
        )
        .unwrap();
        let s = db.open().unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let lab = s.lab_snapshot().unwrap();
        let of = |h: &str| {
            let i = lab
                .snapshot
                .devices
                .iter()
                .position(|d| d.hostname == h)
                .unwrap();
            lab.facts[i]
        };
        let checked = of("checked");
        assert!(!checked.history.forced);
        let at = checked
            .history
            .checked_at
            .expect("counted from the migration");
        assert!(at + 1000 >= before_ms, "{at} vs {before_ms}");
        assert_eq!(checked.rule, Rule::default());
        assert!(!crate::health::due(&checked.rule, &checked.history, at + 1));
        let never = of("never");
        assert_eq!(
            never.history,
            History {
                forced: true,
                checked_at: None,
                jobs_since: 0
            }
        );
        assert_eq!(s.device_type("qemu").unwrap().unwrap().description, "");
        assert!(s.aliases().unwrap().is_empty());
    }

    /// The engine and the API call the store from tokio tasks (the sync PostgreSQL client
    /// alone would panic there).
    fn the_store_works_inside_tokio_runtimes(db: &Db) {
        let s = std::sync::Arc::new(lab(db));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            s.set_worker_state("w1", WorkerState::Online, 7).unwrap();
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let s2 = s.clone();
        let seen = rt
            .block_on(rt.spawn(async move { s2.workers().unwrap()[0].last_seen }))
            .unwrap();
        assert_eq!(seen, 7);
    }

    /// A server restart (here: the store's connection terminated, waiting until it is) costs
    /// the call that meets it; the next one connects again.
    #[test]
    fn a_lost_postgres_connection_is_made_again() {
        let Some(db) = Db::postgres("a_lost_postgres_connection_is_made_again") else {
            return;
        };
        let Db::Postgres(pg) = &db else {
            unreachable!("a PostgreSQL database")
        };
        let s = lab(&db);
        let pid = s.db().query("SELECT pg_backend_pid()", &[]).unwrap()[0]
            .int(0)
            .unwrap();
        pg.admin(&format!("SELECT pg_terminate_backend({pid}, 10000)"))
            .unwrap();
        assert!(s.workers().is_err());
        assert_eq!(s.workers().unwrap().len(), 1);
        // and in a transaction
        let id = s.submit(&job(), 1).unwrap();
        let pid = s.db().query("SELECT pg_backend_pid()", &[]).unwrap()[0]
            .int(0)
            .unwrap();
        pg.admin(&format!("SELECT pg_terminate_backend({pid}, 10000)"))
            .unwrap();
        assert!(s.schedule_job(id, "qemu-01").is_err());
        s.schedule_job(id, "qemu-01").unwrap();
        assert_eq!(s.job(id).unwrap().unwrap().state, JobState::Scheduled);
    }

    /// A database made before the store spoke PostgreSQL (user_version 1) keeps its data.
    #[test]
    fn an_existing_sqlite_database_keeps_working() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("basalt.db");
        {
            let c = rusqlite::Connection::open(&p).unwrap();
            c.execute_batch(MIGRATIONS[0].sqlite).unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
            c.execute_batch(
                "INSERT INTO workers (hostname) VALUES ('w1');
                 INSERT INTO jobs (submitter, definition, requested_device_type, priority, submit_time)
                 VALUES ('alice', 'job_name: old', 'qemu', 50, 10);",
            )
            .unwrap();
        }
        let s = Store::open(&p).unwrap();
        // brought up to date, its jobs counted by the new counters
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        assert_eq!(s.query_jobs(&JobQuery::default()).unwrap().0, 1);
        assert_eq!(s.workers().unwrap()[0].hostname, "w1");
        assert_eq!(s.job(1).unwrap().unwrap().submitter, "alice");
        assert_eq!(s.submit(&job(), 20).unwrap(), 2);
    }

    #[test]
    fn connection_errors_name_the_url_without_its_password() {
        let e = Store::connect("postgres://basalt:s3cret@127.0.0.1:1/basalt")
            .err()
            .expect("nothing listens on port 1")
            .to_string();
        assert!(
            e.contains("postgres://basalt:***@127.0.0.1:1/basalt") && !e.contains("s3cret"),
            "{e}"
        );
        assert!(e.contains("refused"), "says why: {e}");
        let e = Store::connect("mysql://u:pw@db/x")
            .err()
            .expect("not postgres");
        assert!(matches!(e, StoreError::NotPostgres { .. }), "{e}");
        assert!(!e.to_string().contains("pw"), "{e}");
        let e = Store::connect("postgres://u:pw@db:port/x")
            .err()
            .expect("a bad port")
            .to_string();
        assert!(e.contains("u:***@db:port") && !e.contains("pw"), "{e}");
    }
}
