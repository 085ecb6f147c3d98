//! The master's store: jobs, devices, device types, workers and API tokens in SQLite (one file
//! in the state directory, no server), with numbered migrations. Logs are files
//! ([`crate::logs`]); results are stored as the worker sent them (`results.yaml` text).
//!
//! States are stored as LAVA's integer codes ([`crate::model`]). Every method takes `&self`
//! (the connection is behind a mutex) and is short: the daemon calls it from its event loop.
//! PostgreSQL (`--database postgres://...`) is not here yet.

use crate::model::{
    DeviceHealth, DeviceState, JobHealth, JobState, Priority, WorkerHealth, WorkerState,
};
use crate::scheduler::{DeviceInfo, DeviceTypeInfo, QueuedJob, Snapshot, Target};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("{what} '{name}' does not exist")]
    Missing { what: &'static str, name: String },
    #[error("{what} '{name}' exists already")]
    Exists { what: &'static str, name: String },
    #[error("the database's schema is version {found}, newer than this master's {known}: upgrade basalt-master")]
    TooNew { found: i64, known: i64 },
}

/// The migrations, in order; each runs once, in a transaction, and bumps `user_version`.
const MIGRATIONS: &[&str] = &[
    // 1: the lab
    "CREATE TABLE device_types (
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
];

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
    /// The `results.yaml` text the worker sent.
    pub results: Option<String>,
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

/// The store.
pub struct Store {
    db: Mutex<Connection>,
}

/// `Ok` when an INSERT OR IGNORE added its row, else `what` `name` exists already.
fn inserted(rows: usize, what: &'static str, name: impl Into<String>) -> Result<(), StoreError> {
    match rows {
        0 => Err(StoreError::Exists {
            what,
            name: name.into(),
        }),
        _ => Ok(()),
    }
}

/// `Ok` when an UPDATE found its row, else `what` `name` does not exist.
fn found(rows: usize, what: &'static str, name: impl Into<String>) -> Result<(), StoreError> {
    match rows {
        0 => Err(StoreError::Missing {
            what,
            name: name.into(),
        }),
        _ => Ok(()),
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

impl Store {
    /// Opens (creating) the SQLite database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Connection::open(path)?;
        Store::init(db)
    }

    /// A store in memory (tests).
    pub fn memory() -> Result<Store, StoreError> {
        Store::init(Connection::open_in_memory()?)
    }

    fn init(mut db: Connection) -> Result<Store, StoreError> {
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = db.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                found: version,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = db.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(Store { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        match self.db.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The schema version (the number of migrations applied).
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .db()
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    // ---- device types, workers, devices --------------------------------------------------

    /// Adds a device type (or replaces its health check).
    pub fn put_device_type(&self, t: &DeviceType) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO device_types (name, health_check) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET health_check = excluded.health_check",
            params![t.name, t.health_check],
        )?;
        Ok(())
    }

    pub fn device_types(&self) -> Result<Vec<DeviceType>, StoreError> {
        let db = self.db();
        let mut q = db.prepare("SELECT name, health_check FROM device_types ORDER BY name")?;
        let rows = q.query_map([], |r| {
            Ok(DeviceType {
                name: r.get(0)?,
                health_check: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Adds a worker (Offline until it says hello).
    pub fn add_worker(&self, hostname: &str, description: &str) -> Result<(), StoreError> {
        let n = self.db().execute(
            "INSERT OR IGNORE INTO workers (hostname, description, state, health) VALUES (?1, ?2, ?3, ?4)",
            params![
                hostname,
                description,
                WorkerState::Offline.code(),
                WorkerHealth::Active.code()
            ],
        )?;
        inserted(n, "worker", hostname)
    }

    /// Marks a worker online (seen now) or offline.
    pub fn set_worker_state(
        &self,
        hostname: &str,
        state: WorkerState,
        now: u64,
    ) -> Result<(), StoreError> {
        let n = self.db().execute(
            "UPDATE workers SET state = ?2, last_seen = ?3 WHERE hostname = ?1",
            params![hostname, state.code(), now as i64],
        )?;
        found(n, "worker", hostname)
    }

    pub fn workers(&self) -> Result<Vec<Worker>, StoreError> {
        let db = self.db();
        let mut q = db.prepare(
            "SELECT hostname, description, state, health, last_seen FROM workers ORDER BY hostname",
        )?;
        let rows = q.query_map([], |r| {
            Ok(Worker {
                hostname: r.get(0)?,
                description: r.get(1)?,
                state: WorkerState::from_code(r.get(2)?).unwrap_or(WorkerState::Offline),
                health: WorkerHealth::from_code(r.get(3)?).unwrap_or(WorkerHealth::Active),
                last_seen: r.get::<_, i64>(4)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Adds a device of a known type on a known worker; it starts Idle with health Unknown.
    pub fn add_device(&self, d: &Device) -> Result<(), StoreError> {
        let db = self.db();
        for (what, table, key, name) in [
            ("device type", "device_types", "name", &d.device_type),
            ("worker", "workers", "hostname", &d.worker),
        ] {
            let found: Option<i64> = db
                .query_row(
                    &format!("SELECT 1 FROM {table} WHERE {key} = ?1"),
                    params![name],
                    |r| r.get(0),
                )
                .optional()?;
            if found.is_none() {
                return Err(StoreError::Missing {
                    what,
                    name: name.clone(),
                });
            }
        }
        let n = db.execute(
            "INSERT OR IGNORE INTO devices (hostname, device_type, worker, description, tags, dictionary, state, health)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                d.hostname,
                d.device_type,
                d.worker,
                d.description,
                tags_text(&d.tags),
                d.dictionary,
                DeviceState::Idle.code(),
                DeviceHealth::Unknown.code()
            ],
        )?;
        inserted(n, "device", d.hostname.as_str())
    }

    /// Sets a device's dictionary.
    pub fn set_dictionary(&self, hostname: &str, dictionary: &str) -> Result<(), StoreError> {
        let n = self.db().execute(
            "UPDATE devices SET dictionary = ?2 WHERE hostname = ?1",
            params![hostname, dictionary],
        )?;
        found(n, "device", hostname)
    }

    /// Sets a device's health (an admin, or a health check's outcome).
    pub fn set_device_health(
        &self,
        hostname: &str,
        health: DeviceHealth,
    ) -> Result<(), StoreError> {
        let n = self.db().execute(
            "UPDATE devices SET health = ?2, health_check_due = CASE WHEN ?2 = ?3 THEN 0 ELSE health_check_due END
             WHERE hostname = ?1",
            params![hostname, health.code(), DeviceHealth::Good.code()],
        )?;
        found(n, "device", hostname)
    }

    const DEVICE_COLUMNS: &'static str =
        "hostname, device_type, worker, description, tags, dictionary, state, health, current_job";

    fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Device> {
        Ok(Device {
            hostname: r.get(0)?,
            device_type: r.get(1)?,
            worker: r.get(2)?,
            description: r.get(3)?,
            tags: tags_of(r.get(4)?),
            dictionary: r.get(5)?,
            state: DeviceState::from_code(r.get(6)?).unwrap_or(DeviceState::Idle),
            health: DeviceHealth::from_code(r.get(7)?).unwrap_or(DeviceHealth::Unknown),
            current_job: r.get::<_, Option<i64>>(8)?.map(|j| j as u64),
        })
    }

    pub fn device(&self, hostname: &str) -> Result<Option<Device>, StoreError> {
        let db = self.db();
        Ok(db
            .query_row(
                &format!(
                    "SELECT {} FROM devices WHERE hostname = ?1",
                    Self::DEVICE_COLUMNS
                ),
                params![hostname],
                Self::device_row,
            )
            .optional()?)
    }

    pub fn devices(&self) -> Result<Vec<Device>, StoreError> {
        let db = self.db();
        let mut q = db.prepare(&format!(
            "SELECT {} FROM devices ORDER BY hostname",
            Self::DEVICE_COLUMNS
        ))?;
        let rows = q.query_map([], Self::device_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // ---- jobs ------------------------------------------------------------------------------

    /// Stores a submitted job; returns its id.
    pub fn submit(&self, j: &NewJob, now: u64) -> Result<u64, StoreError> {
        let (dt, dev) = match &j.target {
            Target::DeviceType(t) => (Some(t.as_str()), None),
            Target::Device(d) => (None, Some(d.as_str())),
        };
        let db = self.db();
        db.execute(
            "INSERT INTO jobs (submitter, description, definition, requested_device_type, requested_device,
                               tags, priority, health_check, state, health, submit_time)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                j.submitter,
                j.description,
                j.definition,
                dt,
                dev,
                tags_text(&j.tags),
                j.priority.value(),
                j.health_check,
                JobState::Submitted.code(),
                JobHealth::Unknown.code(),
                now as i64
            ],
        )?;
        Ok(db.last_insert_rowid() as u64)
    }

    const JOB_COLUMNS: &'static str = "id, submitter, description, definition, requested_device_type, requested_device,
        tags, priority, health_check, state, health, actual_device, submit_time, start_time, end_time,
        error_type, error_msg, results";

    fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
        let dt: Option<String> = r.get(4)?;
        let dev: Option<String> = r.get(5)?;
        let target = match (dev, dt) {
            (Some(d), _) => Target::Device(d),
            (None, t) => Target::DeviceType(t.unwrap_or_default()),
        };
        let opt_time = |v: Option<i64>| v.map(|t| t as u64);
        Ok(Job {
            id: r.get::<_, i64>(0)? as u64,
            submitter: r.get(1)?,
            description: r.get(2)?,
            definition: r.get(3)?,
            target,
            tags: tags_of(r.get(6)?),
            priority: Priority::new(r.get(7)?).unwrap_or_default(),
            health_check: r.get(8)?,
            state: JobState::from_code(r.get(9)?).unwrap_or(JobState::Submitted),
            health: JobHealth::from_code(r.get(10)?).unwrap_or(JobHealth::Unknown),
            actual_device: r.get(11)?,
            submit_time: r.get::<_, i64>(12)? as u64,
            start_time: opt_time(r.get(13)?),
            end_time: opt_time(r.get(14)?),
            error_type: r.get(15)?,
            error_msg: r.get(16)?,
            results: r.get(17)?,
        })
    }

    pub fn job(&self, id: u64) -> Result<Option<Job>, StoreError> {
        let db = self.db();
        Ok(db
            .query_row(
                &format!("SELECT {} FROM jobs WHERE id = ?1", Self::JOB_COLUMNS),
                params![id as i64],
                Self::job_row,
            )
            .optional()?)
    }

    /// Jobs, newest first, `limit` from `offset`, optionally of one state only.
    pub fn jobs(
        &self,
        state: Option<JobState>,
        limit: u32,
        offset: u32,
    ) -> Result<(u64, Vec<Job>), StoreError> {
        let db = self.db();
        let code = state.map(|s| s.code() as i64).unwrap_or(-1);
        let count: i64 = db.query_row(
            "SELECT COUNT(*) FROM jobs WHERE ?1 < 0 OR state = ?1",
            params![code],
            |r| r.get(0),
        )?;
        let mut q = db.prepare(&format!(
            "SELECT {} FROM jobs WHERE ?1 < 0 OR state = ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3",
            Self::JOB_COLUMNS
        ))?;
        let rows = q.query_map(params![code, limit, offset], Self::job_row)?;
        Ok((count as u64, rows.collect::<Result<_, _>>()?))
    }

    /// The job goes to `device` (Scheduled), the device is Reserved for it.
    pub fn schedule_job(&self, id: u64, device: &str) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute(
            "UPDATE jobs SET state = ?2, actual_device = ?3 WHERE id = ?1",
            params![id as i64, JobState::Scheduled.code(), device],
        )?;
        tx.execute(
            "UPDATE devices SET state = ?2, current_job = ?3 WHERE hostname = ?1",
            params![device, DeviceState::Reserved.code(), id as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The job runs on its device (the worker started it): a Scheduled job becomes Running;
    /// any other state is left as it is (a job being canceled stays Canceling).
    pub fn job_running(&self, id: u64, now: u64) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let n = tx.execute(
            "UPDATE jobs SET state = ?2, start_time = COALESCE(start_time, ?3) WHERE id = ?1 AND state = ?4",
            params![
                id as i64,
                JobState::Running.code(),
                now as i64,
                JobState::Scheduled.code()
            ],
        )?;
        if n > 0 {
            tx.execute(
                "UPDATE devices SET state = ?2 WHERE current_job = ?1",
                params![id as i64, DeviceState::Running.code()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The job is being canceled.
    pub fn job_canceling(&self, id: u64) -> Result<(), StoreError> {
        self.db().execute(
            "UPDATE jobs SET state = ?2 WHERE id = ?1 AND state != ?3",
            params![
                id as i64,
                JobState::Canceling.code(),
                JobState::Finished.code()
            ],
        )?;
        Ok(())
    }

    /// The job ended: Finished with `health`; its device is Idle again (a health check sets
    /// the device's health: Good when Complete, Bad otherwise; a job lost with its worker
    /// leaves the device Unknown).
    pub fn finish_job(
        &self,
        id: u64,
        health: JobHealth,
        error: Option<(&str, &str)>,
        results: Option<&str>,
        device_health: Option<DeviceHealth>,
        now: u64,
    ) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute(
            "UPDATE jobs SET state = ?2, health = ?3, end_time = ?4, error_type = ?5, error_msg = ?6, results = ?7
             WHERE id = ?1",
            params![
                id as i64,
                JobState::Finished.code(),
                health.code(),
                now as i64,
                error.map(|e| e.0),
                error.map(|e| e.1),
                results
            ],
        )?;
        tx.execute(
            "UPDATE devices SET state = ?2, current_job = NULL, idle_since = ?3 WHERE current_job = ?1",
            params![id as i64, DeviceState::Idle.code(), now as i64],
        )?;
        if let Some(h) = device_health {
            let device: Option<String> = tx
                .query_row(
                    "SELECT actual_device FROM jobs WHERE id = ?1",
                    params![id as i64],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            if let Some(d) = device {
                tx.execute(
                    "UPDATE devices SET health = ?2, health_check_due = ?3 WHERE hostname = ?1",
                    params![d, h.code(), h != DeviceHealth::Good],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    // ---- tokens ----------------------------------------------------------------------------

    /// A new API token for `username`; only its hash is stored.
    pub fn add_token(&self, username: &str, admin: bool, token: &str) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO tokens (hash, username, admin) VALUES (?1, ?2, ?3)",
            params![token_hash(token), username, admin],
        )?;
        Ok(())
    }

    /// The user of a token, and whether they are an admin.
    pub fn token_user(&self, token: &str) -> Result<Option<(String, bool)>, StoreError> {
        Ok(self
            .db()
            .query_row(
                "SELECT username, admin FROM tokens WHERE hash = ?1",
                params![token_hash(token)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    // ---- the scheduler's view ------------------------------------------------------------

    /// What the scheduler needs: queued jobs, devices with their workers, device types.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let db = self.db();
        // only the columns the scheduler reads: the engine takes a snapshot per pass, and a
        // queue's definitions (KiBs each) would be copied out of SQLite every time
        let mut q = db.prepare_cached(
            "SELECT id, requested_device_type, requested_device, tags, priority, submit_time,
                    health_check
             FROM jobs WHERE state = ?1",
        )?;
        let jobs = q
            .query_map(params![JobState::Submitted.code()], |r| {
                let dt: Option<String> = r.get(1)?;
                let dev: Option<String> = r.get(2)?;
                Ok(QueuedJob {
                    id: r.get::<_, i64>(0)? as u64,
                    target: match (dev, dt) {
                        (Some(d), _) => Target::Device(d),
                        (None, t) => Target::DeviceType(t.unwrap_or_default()),
                    },
                    tags: tags_of(r.get(3)?),
                    priority: Priority::new(r.get(4)?).unwrap_or_default(),
                    submit_time: r.get::<_, i64>(5)? as u64,
                    health_check: r.get(6)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut q = db.prepare_cached(
            "SELECT d.hostname, d.device_type, d.tags, d.state, d.health, d.worker, w.state, w.health,
                    d.health_check_due, d.idle_since
             FROM devices d JOIN workers w ON w.hostname = d.worker",
        )?;
        let devices = q
            .query_map([], |r| {
                Ok(DeviceInfo {
                    hostname: r.get(0)?,
                    device_type: r.get(1)?,
                    tags: tags_of(r.get(2)?),
                    state: DeviceState::from_code(r.get(3)?).unwrap_or(DeviceState::Idle),
                    health: DeviceHealth::from_code(r.get(4)?).unwrap_or(DeviceHealth::Unknown),
                    worker: r.get(5)?,
                    worker_state: WorkerState::from_code(r.get(6)?).unwrap_or(WorkerState::Offline),
                    worker_health: WorkerHealth::from_code(r.get(7)?)
                        .unwrap_or(WorkerHealth::Active),
                    health_check_due: r.get(8)?,
                    idle_since: r.get::<_, i64>(9)? as u64,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut q = db.prepare_cached("SELECT name, health_check IS NOT NULL FROM device_types")?;
        let device_types = q
            .query_map([], |r| {
                Ok(DeviceTypeInfo {
                    name: r.get(0)?,
                    health_check: r.get(1)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Snapshot {
            jobs,
            devices,
            device_types,
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
mod tests {
    use super::*;

    fn lab() -> Store {
        let s = Store::memory().unwrap();
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

    #[test]
    fn a_job_goes_through_its_states_and_frees_its_device() {
        let s = lab();
        let id = s.submit(&job(), 1000).unwrap();
        let j = s.job(id).unwrap().unwrap();
        assert_eq!(
            (j.state, j.health),
            (JobState::Submitted, JobHealth::Unknown)
        );
        assert_eq!(s.snapshot().unwrap().jobs.len(), 1);
        s.schedule_job(id, "qemu-01").unwrap();
        assert_eq!(
            s.device("qemu-01").unwrap().unwrap().state,
            DeviceState::Reserved
        );
        assert!(s.snapshot().unwrap().jobs.is_empty());
        s.job_running(id, 2000).unwrap();
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
        let d = s.device("qemu-01").unwrap().unwrap();
        assert_eq!((d.state, d.current_job), (DeviceState::Idle, None));
        assert_eq!(s.jobs(None, 10, 0).unwrap().0, 1);
        assert_eq!(s.jobs(Some(JobState::Running), 10, 0).unwrap().0, 0);
    }

    #[test]
    fn the_snapshot_feeds_the_scheduler() {
        let s = lab();
        s.set_worker_state("w1", WorkerState::Online, 5).unwrap();
        s.set_device_health("qemu-01", DeviceHealth::Good).unwrap();
        let id = s.submit(&job(), 1).unwrap();
        let plan = crate::scheduler::schedule(&s.snapshot().unwrap());
        assert_eq!(plan.assignments.len(), 1);
        assert_eq!(plan.assignments[0].job, id);
        assert_eq!(plan.assignments[0].device, "qemu-01");
    }

    #[test]
    fn references_and_duplicates_are_refused_by_name() {
        let s = lab();
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
    }

    #[test]
    fn tokens_are_stored_hashed() {
        let s = lab();
        s.add_token("alice", true, "s3cret-token").unwrap();
        assert_eq!(
            s.token_user("s3cret-token").unwrap(),
            Some(("alice".into(), true))
        );
        assert_eq!(s.token_user("other").unwrap(), None);
        let db = s.db();
        let raw: String = db
            .query_row("SELECT hash FROM tokens", [], |r| r.get(0))
            .unwrap();
        assert_ne!(raw, "s3cret-token");
    }

    #[test]
    fn migrations_run_once_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("basalt.db");
        let s = Store::open(&p).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        s.add_worker("w1", "").unwrap();
        drop(s);
        let s = Store::open(&p).unwrap();
        assert_eq!(s.workers().unwrap().len(), 1);
        s.db().pragma_update(None, "user_version", 99).unwrap();
        drop(s);
        assert!(matches!(Store::open(&p), Err(StoreError::TooNew { .. })));
    }
}
