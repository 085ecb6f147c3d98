//! The lab's registry as an admin changes it: device types' descriptions and health-check
//! schedules, LAVA's aliases (another name a job may give as its `device_type`), a device's
//! tags, description and worker, a worker's health with LAVA's effect on its devices, and what
//! a lost worker does to its devices.

use super::{args, found, inserted, tags_of, tags_text, transaction, Changed, Store, StoreError};
use super::{Row, Worker};
use crate::health::{Denominator, Rule};
use crate::model::{DeviceHealth, JobState, WorkerHealth};

/// A device type as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceTypeDetails {
    pub name: String,
    pub description: String,
    /// The health-check job definition, if the type has one.
    pub health_check: Option<String>,
    pub rule: Rule,
    /// Its aliases, by name.
    pub aliases: Vec<String>,
}

/// What to change of a device type: the fields that are `Some`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceTypeChange {
    pub description: Option<String>,
    /// `Some(None)` removes the health check.
    pub health_check: Option<Option<String>>,
    pub frequency: Option<u32>,
    pub denominator: Option<Denominator>,
    pub disabled: Option<bool>,
}

/// What to change of a device: the fields that are `Some`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceChange {
    pub description: Option<String>,
    /// Another registered worker.
    pub worker: Option<String>,
    /// Another registered device type.
    pub device_type: Option<String>,
    /// The whole tag list.
    pub tags: Option<Vec<String>>,
}

impl Store {
    /// Adds device type `name` unless it exists, then applies `change`; returns whether it
    /// was added. A name that is an alias is refused (LAVA's `DeviceType.full_clean`).
    pub fn upsert_device_type(
        &self,
        name: &str,
        change: &DeviceTypeChange,
    ) -> Result<bool, StoreError> {
        let mut db = self.db();
        transaction(&mut db, |db| {
            if db
                .query_opt("SELECT 1 FROM aliases WHERE name = ?1", args![name])?
                .is_some()
            {
                return Err(StoreError::Exists {
                    what: "alias",
                    name: name.into(),
                });
            }
            let n = db.execute(
                "INSERT INTO device_types (name) VALUES (?1) ON CONFLICT DO NOTHING",
                args![name],
            )?;
            apply_type_change(db, name, change)?;
            Ok(n > 0)
        })
    }

    /// Changes the existing device type `name`.
    pub fn update_device_type(
        &self,
        name: &str,
        change: &DeviceTypeChange,
    ) -> Result<(), StoreError> {
        let mut db = self.db();
        transaction(&mut db, |db| {
            let n = db
                .query("SELECT 1 FROM device_types WHERE name = ?1", args![name])?
                .len();
            found(n as u64, "device type", name)?;
            apply_type_change(db, name, change)
        })
    }

    /// Every device type, by name, with its aliases.
    pub fn device_type_details(&self) -> Result<Vec<DeviceTypeDetails>, StoreError> {
        let mut db = self.db();
        let mut types = db
            .query(
                &format!("SELECT {TYPE_COLUMNS} FROM device_types ORDER BY name"),
                &[],
            )?
            .iter()
            .map(type_row)
            .collect::<Result<Vec<_>, _>>()?;
        for r in db.query("SELECT name, device_type FROM aliases ORDER BY name", &[])? {
            let (alias, of) = (r.text(0)?, r.text(1)?);
            if let Some(t) = types.iter_mut().find(|t| t.name == of) {
                t.aliases.push(alias);
            }
        }
        Ok(types)
    }

    /// The device type `name` (not an alias's).
    pub fn device_type(&self, name: &str) -> Result<Option<DeviceTypeDetails>, StoreError> {
        let mut db = self.db();
        let Some(mut t) = db
            .query_opt(
                &format!("SELECT {TYPE_COLUMNS} FROM device_types WHERE name = ?1"),
                args![name],
            )?
            .map(|r| type_row(&r))
            .transpose()?
        else {
            return Ok(None);
        };
        t.aliases = db
            .query(
                "SELECT name FROM aliases WHERE device_type = ?1 ORDER BY name",
                args![name],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect::<Result<_, _>>()?;
        Ok(Some(t))
    }

    /// Adds alias `name` of device type `device_type` (LAVA's `Alias`): the type must exist
    /// and no type or alias may have the name.
    pub fn add_alias(&self, name: &str, device_type: &str) -> Result<(), StoreError> {
        let mut db = self.db();
        transaction(&mut db, |db| {
            if db
                .query_opt("SELECT 1 FROM device_types WHERE name = ?1", args![name])?
                .is_some()
            {
                return Err(StoreError::Exists {
                    what: "device type",
                    name: name.into(),
                });
            }
            if db
                .query_opt(
                    "SELECT 1 FROM device_types WHERE name = ?1",
                    args![device_type],
                )?
                .is_none()
            {
                return Err(StoreError::Missing {
                    what: "device type",
                    name: device_type.into(),
                });
            }
            let n = db.execute(
                "INSERT INTO aliases (name, device_type) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                args![name, device_type],
            )?;
            inserted(n, "alias", name)
        })
    }

    /// Removes alias `name`.
    pub fn remove_alias(&self, name: &str) -> Result<(), StoreError> {
        let n = self
            .db()
            .execute("DELETE FROM aliases WHERE name = ?1", args![name])?;
        found(n, "alias", name)
    }

    /// Every alias and the device type it names, by alias.
    pub fn aliases(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.db()
            .query("SELECT name, device_type FROM aliases ORDER BY name", &[])?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?)))
            .collect()
    }

    /// The device type a job's `device_type: name` means: the type of that name, or the type
    /// an alias of that name is of; `None` when it is neither.
    pub fn resolve_device_type(&self, name: &str) -> Result<Option<String>, StoreError> {
        let mut db = self.db();
        if db
            .query_opt("SELECT 1 FROM device_types WHERE name = ?1", args![name])?
            .is_some()
        {
            return Ok(Some(name.to_string()));
        }
        db.query_opt(
            "SELECT device_type FROM aliases WHERE name = ?1",
            args![name],
        )?
        .map(|r| r.text(0))
        .transpose()
    }

    /// Changes a device's description, worker, type or tags (a worker or type must exist).
    pub fn update_device(&self, hostname: &str, change: &DeviceChange) -> Result<(), StoreError> {
        let mut db = self.db();
        transaction(&mut db, |db| {
            let n = db
                .query("SELECT 1 FROM devices WHERE hostname = ?1", args![hostname])?
                .len();
            found(n as u64, "device", hostname)?;
            if let Some(d) = &change.description {
                db.execute(
                    "UPDATE devices SET description = ?2 WHERE hostname = ?1",
                    args![hostname, d],
                )?;
            }
            for (what, table, key, column, value) in [
                (
                    "worker",
                    "workers",
                    "hostname",
                    "worker",
                    change.worker.as_ref(),
                ),
                (
                    "device type",
                    "device_types",
                    "name",
                    "device_type",
                    change.device_type.as_ref(),
                ),
            ] {
                let Some(v) = value else { continue };
                if db
                    .query_opt(&format!("SELECT 1 FROM {table} WHERE {key} = ?1"), args![v])?
                    .is_none()
                {
                    return Err(StoreError::Missing {
                        what,
                        name: v.clone(),
                    });
                }
                db.execute(
                    &format!("UPDATE devices SET {column} = ?2 WHERE hostname = ?1"),
                    args![hostname, v],
                )?;
            }
            if let Some(tags) = &change.tags {
                let mut tags = tags.clone();
                tags.sort();
                tags.dedup();
                db.execute(
                    "UPDATE devices SET tags = ?2 WHERE hostname = ?1",
                    args![hostname, tags_text(&tags)],
                )?;
            }
            Ok(())
        })
    }

    /// Adds tag `tag` to a device (nothing when it has it); returns its tags.
    pub fn add_device_tag(&self, hostname: &str, tag: &str) -> Result<Vec<String>, StoreError> {
        self.edit_tags(hostname, |tags| {
            if !tags.iter().any(|t| t == tag) {
                tags.push(tag.to_string());
            }
            true
        })
    }

    /// Removes tag `tag` from a device; an error when it does not have it.
    pub fn remove_device_tag(&self, hostname: &str, tag: &str) -> Result<Vec<String>, StoreError> {
        let mut had = false;
        let tags = self.edit_tags(hostname, |tags| {
            let before = tags.len();
            tags.retain(|t| t != tag);
            had = tags.len() != before;
            had
        })?;
        if !had {
            return Err(StoreError::Missing {
                what: "tag",
                name: format!("{tag}' on device '{hostname}"),
            });
        }
        Ok(tags)
    }

    /// Reads a device's tags, lets `edit` change them (it says whether to store them) and
    /// stores them, in one transaction; returns them.
    fn edit_tags(
        &self,
        hostname: &str,
        edit: impl FnOnce(&mut Vec<String>) -> bool,
    ) -> Result<Vec<String>, StoreError> {
        let mut db = self.db();
        transaction(&mut db, |db| {
            let row = db
                .query_opt(
                    "SELECT tags FROM devices WHERE hostname = ?1",
                    args![hostname],
                )?
                .ok_or_else(|| StoreError::Missing {
                    what: "device",
                    name: hostname.into(),
                })?;
            let mut tags = tags_of(row.text(0)?);
            if edit(&mut tags) {
                tags.sort();
                db.execute(
                    "UPDATE devices SET tags = ?2 WHERE hostname = ?1",
                    args![hostname, tags_text(&tags)],
                )?;
            }
            Ok(tags)
        })
    }

    /// The worker `hostname`.
    pub fn worker(&self, hostname: &str) -> Result<Option<Worker>, StoreError> {
        self.db()
            .query_opt(
                &format!(
                    "SELECT {} FROM workers WHERE hostname = ?1",
                    Self::WORKER_COLUMNS
                ),
                args![hostname],
            )?
            .map(|r| Self::worker_row(&r))
            .transpose()
    }

    /// Sets a worker's description.
    pub fn set_worker_description(
        &self,
        hostname: &str,
        description: &str,
    ) -> Result<(), StoreError> {
        let n = self.db().execute(
            "UPDATE workers SET description = ?2 WHERE hostname = ?1",
            args![hostname, description],
        )?;
        found(n, "worker", hostname)
    }

    /// Sets a worker's health, with LAVA's effect on its devices (`Worker.go_health_*`):
    /// from Maintenance to Active its Good devices become Unknown (they get a health check;
    /// leaving Retired changes no device), to Retired its devices but those Bad or Retired
    /// are retired, to Maintenance only the worker changes (the scheduler gives its devices
    /// nothing). Returns the devices changed.
    pub fn set_worker_health(
        &self,
        hostname: &str,
        health: WorkerHealth,
    ) -> Result<Vec<String>, StoreError> {
        let mut db = self.db();
        let changed = transaction(&mut db, |db| {
            let before = db
                .query_opt(
                    "SELECT health FROM workers WHERE hostname = ?1",
                    args![hostname],
                )?
                .ok_or_else(|| StoreError::Missing {
                    what: "worker",
                    name: hostname.into(),
                })?
                .code(0)?;
            let before = WorkerHealth::from_code(before).unwrap_or(WorkerHealth::Active);
            db.execute(
                "UPDATE workers SET health = ?2 WHERE hostname = ?1",
                args![hostname, health.code()],
            )?;
            let devices = |db: &mut super::Backend, from: &[DeviceHealth]| {
                let list = from
                    .iter()
                    .map(|h| h.code().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                db.query(
                    &format!(
                        "SELECT hostname FROM devices WHERE worker = ?1 AND health IN ({list})
                         ORDER BY hostname"
                    ),
                    args![hostname],
                )?
                .iter()
                .map(|r| r.text(0))
                .collect::<Result<Vec<_>, _>>()
            };
            let (targets, to) = match health {
                WorkerHealth::Active if before == WorkerHealth::Maintenance => {
                    (devices(db, &[DeviceHealth::Good])?, DeviceHealth::Unknown)
                }
                WorkerHealth::Retired if before != WorkerHealth::Retired => {
                    use DeviceHealth::*;
                    (
                        devices(db, &[Good, Unknown, Looping, Maintenance])?,
                        Retired,
                    )
                }
                _ => (Vec::new(), DeviceHealth::Unknown),
            };
            for d in &targets {
                db.execute(
                    "UPDATE devices SET health = ?2 WHERE hostname = ?1",
                    args![d.as_str(), to.code()],
                )?;
            }
            Ok((before != health, targets))
        })?;
        let (worker_changed, devices) = changed;
        let mut report: Vec<Changed> = devices.iter().cloned().map(Changed::Device).collect();
        if worker_changed {
            report.insert(0, Changed::Worker(hostname.into()));
        }
        self.publish(&mut db, &report);
        Ok(devices)
    }

    /// A worker was lost: its Good devices become Unknown, to be checked when it is back
    /// ([`crate::health::settle`]). Returns them.
    pub fn worker_lost(&self, hostname: &str) -> Result<Vec<String>, StoreError> {
        let mut db = self.db();
        let devices = transaction(&mut db, |db| {
            let devices = db
                .query(
                    "SELECT hostname FROM devices WHERE worker = ?1 AND health = ?2
                     ORDER BY hostname",
                    args![hostname, DeviceHealth::Good.code()],
                )?
                .iter()
                .map(|r| r.text(0))
                .collect::<Result<Vec<_>, _>>()?;
            db.execute(
                "UPDATE devices SET health = ?3 WHERE worker = ?1 AND health = ?2",
                args![
                    hostname,
                    DeviceHealth::Good.code(),
                    DeviceHealth::Unknown.code()
                ],
            )?;
            Ok(devices)
        })?;
        let report: Vec<Changed> = devices.iter().cloned().map(Changed::Device).collect();
        self.publish(&mut db, &report);
        Ok(devices)
    }

    /// The queued (Submitted) health check of device `hostname`, if it has one.
    pub fn queued_health_check(&self, hostname: &str) -> Result<Option<u64>, StoreError> {
        self.db()
            .query_opt(
                "SELECT id FROM jobs WHERE requested_device = ?1 AND health_check = 1
                    AND state = ?2 ORDER BY id LIMIT 1",
                args![hostname, JobState::Submitted.code()],
            )?
            .map(|r| r.uint(0))
            .transpose()
    }
}

const TYPE_COLUMNS: &str =
    "name, description, health_check, health_frequency, health_denominator, disable_health_check";

fn type_row(r: &Row) -> Result<DeviceTypeDetails, StoreError> {
    Ok(DeviceTypeDetails {
        name: r.text(0)?,
        description: r.text(1)?,
        health_check: r.opt_text(2)?,
        rule: Rule {
            frequency: u32::try_from(r.uint(3)?).unwrap_or(u32::MAX),
            denominator: Denominator::from_code(r.code(4)?),
            disabled: r.bool(5)?,
        },
        aliases: Vec::new(),
    })
}

/// Applies the `Some` fields of `change` to device type `name`.
fn apply_type_change(
    db: &mut super::Backend,
    name: &str,
    change: &DeviceTypeChange,
) -> Result<(), StoreError> {
    if let Some(d) = &change.description {
        db.execute(
            "UPDATE device_types SET description = ?2 WHERE name = ?1",
            args![name, d],
        )?;
    }
    if let Some(h) = &change.health_check {
        db.execute(
            "UPDATE device_types SET health_check = ?2 WHERE name = ?1",
            args![name, h.as_deref()],
        )?;
    }
    if let Some(f) = change.frequency {
        db.execute(
            "UPDATE device_types SET health_frequency = ?2 WHERE name = ?1",
            args![name, f],
        )?;
    }
    if let Some(d) = change.denominator {
        db.execute(
            "UPDATE device_types SET health_denominator = ?2 WHERE name = ?1",
            args![name, d.code()],
        )?;
    }
    if let Some(off) = change.disabled {
        db.execute(
            "UPDATE device_types SET disable_health_check = ?2 WHERE name = ?1",
            args![name, off],
        )?;
    }
    Ok(())
}
