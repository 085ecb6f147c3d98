//! Reservations in the store: a job row (queued and scheduled as any job's) and a
//! `reservations` row keyed by its id with the lease (holder, requirements, length, expiry),
//! its state, its secrets (console and watch tokens, the SSH key) and how the holder reaches
//! the board (the worker's last `hold_state`). Requirements, the pending boot request and the
//! connection are JSON text.

use super::{args, transaction, Backend, Changed, NewJob, Row, Store, StoreError};
use crate::model::Priority;
use crate::reservation::boot::BootRequest;
use crate::reservation::requirements::Requirements;
use crate::reservation::{Ending, ReservationState};
use basalt_proto::Connection;

/// A reservation to store with its job.
#[derive(Clone)]
pub struct NewReservation {
    pub holder: String,
    pub requirements: Option<Requirements>,
    pub lease_secs: u64,
    pub console_token: String,
    pub watch_token: String,
    pub ssh_public_key: String,
    /// The private key, when the master made the pair.
    pub ssh_private_key: Option<String>,
    pub ssh_user: String,
    /// A boot to run once the board is held.
    pub boot: Option<BootRequest>,
}

/// A stored reservation, with what its job says of its device.
#[derive(Clone, PartialEq)]
pub struct Reservation {
    /// Its id: its job's.
    pub id: u64,
    pub holder: String,
    pub requirements: Option<Requirements>,
    /// Its job's description.
    pub description: String,
    pub priority: Priority,
    pub lease_secs: u64,
    /// Milliseconds since the epoch.
    pub created: u64,
    pub expires: u64,
    pub state: ReservationState,
    /// Something was booted during the lease (a health check follows its end).
    pub booted: bool,
    /// The board runs a booted image's shell now: commands may run.
    pub shell: bool,
    pub reason: Option<String>,
    /// How the master ended it, once it did.
    pub ending: Option<Ending>,
    pub console_token: String,
    pub watch_token: String,
    pub ssh_public_key: String,
    pub ssh_private_key: Option<String>,
    pub ssh_user: String,
    /// The boot to run once the board is held (from the create request).
    pub boot: Option<BootRequest>,
    /// How the holder reaches the board (the worker's last word).
    pub connection: Connection,
    /// The device it was given.
    pub device: Option<String>,
    /// Its device's type, else the type it asked for.
    pub device_type: Option<String>,
    /// The device it asked for by hostname.
    pub requested_device: Option<String>,
    /// Its device's worker.
    pub worker: Option<String>,
}

impl std::fmt::Debug for Reservation {
    /// Everything but the secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("id", &self.id)
            .field("holder", &self.holder)
            .field("state", &self.state)
            .field("device", &self.device)
            .field("expires", &self.expires)
            .field("booted", &self.booted)
            .field("shell", &self.shell)
            .field("reason", &self.reason)
            .field("ending", &self.ending)
            .finish_non_exhaustive()
    }
}

/// What to change of a reservation: the fields that are `Some`.
#[derive(Clone, Debug, Default)]
pub struct ReservationUpdate {
    pub state: Option<ReservationState>,
    pub booted: Option<bool>,
    pub shell: Option<bool>,
    pub reason: Option<Option<String>>,
    pub ending: Option<Ending>,
    pub expires: Option<u64>,
    pub lease_secs: Option<u64>,
    pub boot: Option<Option<BootRequest>>,
    pub connection: Option<Connection>,
}

/// Which reservations a list shows.
#[derive(Clone, Debug, Default)]
pub struct ReservationQuery {
    /// Only this holder's (none: everyone's).
    pub holder: Option<String>,
    pub state: Option<ReservationState>,
    pub limit: u32,
    pub offset: u32,
}

const COLUMNS: &str = "r.job_id, r.holder, r.requirements, j.description, r.lease_secs, r.created,
    r.expires, r.state, r.booted, r.shell, r.reason, r.ending, r.console_token, r.watch_token,
    r.ssh_public_key, r.ssh_private_key, r.ssh_user, r.boot, r.connection, j.actual_device,
    COALESCE(d.device_type, j.requested_device_type, rd.device_type), d.worker,
    j.requested_device, j.priority";

const FROM: &str = "reservations r JOIN jobs j ON j.id = r.job_id
    LEFT JOIN devices d ON d.hostname = j.actual_device
    LEFT JOIN devices rd ON rd.hostname = j.requested_device";

fn json_column<T: serde::de::DeserializeOwned>(
    r: &Row,
    column: usize,
) -> Result<Option<T>, StoreError> {
    r.opt_text(column)?
        .map(|t| {
            serde_json::from_str(&t).map_err(|e| StoreError::Column {
                column,
                expected: "JSON",
                found: e.to_string(),
            })
        })
        .transpose()
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    // the types stored serialise without error (no maps with non-string keys)
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn row(r: &Row) -> Result<Reservation, StoreError> {
    let requirements: Option<serde_json::Value> = json_column(r, 2)?;
    let state_name = r.text(7)?;
    Ok(Reservation {
        id: r.uint(0)?,
        holder: r.text(1)?,
        requirements: requirements
            .map(|v| {
                Requirements::parse(&v).map_err(|e| StoreError::Column {
                    column: 2,
                    expected: "requirements",
                    found: e.to_string(),
                })
            })
            .transpose()?,
        description: r.text(3)?,
        lease_secs: r.uint(4)?,
        created: r.uint(5)?,
        expires: r.uint(6)?,
        state: ReservationState::from_name(&state_name).ok_or(StoreError::Column {
            column: 7,
            expected: "a reservation state",
            found: state_name,
        })?,
        booted: r.bool(8)?,
        shell: r.bool(9)?,
        reason: r.opt_text(10)?,
        ending: r.opt_text(11)?.as_deref().and_then(Ending::from_name),
        console_token: r.text(12)?,
        watch_token: r.text(13)?,
        ssh_public_key: r.text(14)?,
        ssh_private_key: r.opt_text(15)?,
        ssh_user: r.text(16)?,
        boot: json_column(r, 17)?,
        connection: json_column(r, 18)?.unwrap_or_default(),
        device: r.opt_text(19)?,
        device_type: r.opt_text(20)?,
        worker: r.opt_text(21)?,
        requested_device: r.opt_text(22)?,
        priority: Priority::new(r.code(23)?).unwrap_or_default(),
    })
}

const FINAL: [ReservationState; 2] = [ReservationState::Released, ReservationState::Expired];

impl Store {
    /// Stores a reservation and its queued job in one transaction; returns its id.
    pub fn reserve(&self, job: &NewJob, r: &NewReservation, now: u64) -> Result<u64, StoreError> {
        let mut db = self.db();
        let id = transaction(&mut db, |db| {
            let id = Self::insert_job(db, job, now)?;
            db.execute(
                "INSERT INTO reservations (job_id, holder, requirements, lease_secs, created, expires,
                    state, console_token, watch_token, ssh_public_key, ssh_private_key, ssh_user, boot)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                args![
                    id as i64,
                    &r.holder,
                    r.requirements.as_ref().map(|q| to_json(&q.to_json())),
                    r.lease_secs as i64,
                    now as i64,
                    now.saturating_add(r.lease_secs.saturating_mul(1000)) as i64,
                    ReservationState::Queued.name(),
                    &r.console_token,
                    &r.watch_token,
                    &r.ssh_public_key,
                    r.ssh_private_key.as_deref(),
                    &r.ssh_user,
                    r.boot.as_ref().map(to_json)
                ],
            )?;
            Ok(id)
        })?;
        self.publish(&mut db, &[Changed::Job(id)]);
        Ok(id)
    }

    /// The reservation `id` (`None`: no such reservation, or the job is not one).
    pub fn reservation(&self, id: u64) -> Result<Option<Reservation>, StoreError> {
        self.db()
            .query_opt(
                &format!("SELECT {COLUMNS} FROM {FROM} WHERE r.job_id = ?1"),
                args![id as i64],
            )?
            .map(|r| row(&r))
            .transpose()
    }

    /// Whether job `id` is a reservation.
    pub fn is_reservation(&self, id: u64) -> Result<bool, StoreError> {
        Ok(self
            .db()
            .query_opt(
                "SELECT 1 FROM reservations WHERE job_id = ?1",
                args![id as i64],
            )?
            .is_some())
    }

    /// The reservations `q` selects, newest first, and how many it selects in all.
    pub fn reservations(
        &self,
        q: &ReservationQuery,
    ) -> Result<(u64, Vec<Reservation>), StoreError> {
        let mut conds = Vec::new();
        let mut vals = Vec::new();
        if let Some(h) = &q.holder {
            vals.push(super::db::Value::from(h.clone()));
            conds.push(format!("r.holder = ?{}", vals.len()));
        }
        if let Some(s) = q.state {
            vals.push(super::db::Value::from(s.name()));
            conds.push(format!("r.state = ?{}", vals.len()));
        }
        let filter = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        let mut db = self.db();
        let count = match db.query_opt(
            &format!("SELECT COUNT(*) FROM reservations r {filter}"),
            &vals,
        )? {
            Some(r) => r.uint(0)?,
            None => 0,
        };
        let n = vals.len();
        vals.push(super::db::Value::from(q.limit));
        vals.push(super::db::Value::from(q.offset));
        let list = db
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM {FROM} {filter} ORDER BY r.job_id DESC LIMIT ?{} OFFSET ?{}",
                    n + 1,
                    n + 2
                ),
                &vals,
            )?
            .iter()
            .map(row)
            .collect::<Result<_, _>>()?;
        Ok((count, list))
    }

    /// Applies `u` to reservation `id`; an error when there is none.
    pub fn update_reservation(&self, id: u64, u: &ReservationUpdate) -> Result<(), StoreError> {
        let mut sets = Vec::new();
        let mut vals = vec![super::db::Value::from(id as i64)];
        let mut set = |column: &str, v: super::db::Value| {
            vals.push(v);
            sets.push(format!("{column} = ?{}", vals.len()));
        };
        if let Some(s) = u.state {
            set("state", s.name().into());
        }
        if let Some(b) = u.booted {
            set("booted", b.into());
        }
        if let Some(b) = u.shell {
            set("shell", b.into());
        }
        if let Some(r) = &u.reason {
            set("reason", r.clone().into());
        }
        if let Some(e) = u.ending {
            set("ending", e.name().into());
        }
        if let Some(t) = u.expires {
            set("expires", (t as i64).into());
        }
        if let Some(l) = u.lease_secs {
            set("lease_secs", (l as i64).into());
        }
        if let Some(b) = &u.boot {
            set("boot", b.as_ref().map(to_json).into());
        }
        if let Some(c) = &u.connection {
            set("connection", to_json(c).into());
        }
        if sets.is_empty() {
            return Ok(());
        }
        let n = self.db().execute(
            &format!(
                "UPDATE reservations SET {} WHERE job_id = ?1",
                sets.join(", ")
            ),
            &vals,
        )?;
        super::found(n, "reservation", id.to_string())
    }

    /// The earliest expiry (ms since the epoch) of a reservation that is not final and that
    /// the master has not ended yet.
    pub fn next_expiry(&self) -> Result<Option<u64>, StoreError> {
        let mut db = self.db();
        let r = Self::live(&mut db, "SELECT MIN(expires) FROM reservations", None)?;
        match r.first() {
            Some(r) => r.opt_uint(0),
            None => Ok(None),
        }
    }

    /// The reservations, not final and not ended by the master yet, whose lease ran out by
    /// `now`.
    pub fn expired_reservations(&self, now: u64) -> Result<Vec<u64>, StoreError> {
        let mut db = self.db();
        Self::live(&mut db, "SELECT job_id FROM reservations", Some(now))?
            .iter()
            .map(|r| r.uint(0))
            .collect()
    }

    fn live(db: &mut Backend, select: &str, by: Option<u64>) -> Result<Vec<Row>, StoreError> {
        let mut sql = format!("{select} WHERE state != ?1 AND state != ?2 AND ending IS NULL");
        let mut vals = vec![
            super::db::Value::from(FINAL[0].name()),
            super::db::Value::from(FINAL[1].name()),
        ];
        if let Some(now) = by {
            sql.push_str(" AND expires <= ?3");
            vals.push(super::db::Value::from(now as i64));
        }
        db.query(&sql, &vals)
    }
}
