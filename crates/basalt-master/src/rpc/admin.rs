//! LAVA's XML-RPC methods for the lab's administration, as lavacli calls them: a device's
//! health, worker, type and description (`scheduler.devices.update`, what `lavacli devices
//! update` and `maintenance` send) and tags, a device type's details, schedule and health
//! check, aliases (`scheduler.aliases.*` and `scheduler.device_types.aliases.*`) and a
//! worker's health. Arguments, returns and fault codes are LAVA's; health names are LAVA's in
//! any case (`MAINTENANCE`, `Maintenance`).

use super::{check_name, find_device, strings, Args, Caller, Fault, RpcResult};
use crate::engine::{now_ms, Handle};
use crate::health::Denominator;
use crate::model::{DeviceHealth, WorkerHealth};
use crate::store::{DeviceChange, DeviceTypeChange, StoreError};
use crate::xmlrpc::Value;

/// The methods of this module; anything else is not a method (-32601).
pub(super) async fn dispatch(h: &Handle, who: &Caller, a: &Args<'_>) -> RpcResult<Value> {
    match a.method {
        "scheduler.devices.update" => {
            // (hostname, worker_hostname, user_name, group_name, public, health, description,
            //  device_type, reason)
            a.at_most(9)?;
            who.admin()?;
            let hostname = a.str(0, "hostname")?;
            find_device(h, hostname)?;
            let health = match a.opt_str(5, "health")? {
                None => None,
                Some(name) => Some(
                    DeviceHealth::from_name(name)
                        .ok_or_else(|| Fault::BadRequest(format!("Health '{name}' is invalid")))?,
                ),
            };
            let worker = a.opt_str(1, "worker_hostname")?;
            if let Some(w) = worker {
                if h.store.worker(w)?.is_none() {
                    return Err(Fault::NotFound(format!("Unable to find worker '{w}'")));
                }
            }
            let device_type = a.opt_str(7, "device_type")?;
            if let Some(t) = device_type {
                if h.store.device_type(t)?.is_none() {
                    return Err(Fault::NotFound(format!("Unable to find device-type '{t}'")));
                }
            }
            let change = DeviceChange {
                description: a.opt_str(6, "description")?.map(str::to_string),
                worker: worker.map(str::to_string),
                device_type: device_type.map(str::to_string),
                tags: None,
            };
            h.store.update_device(hostname, &change)?;
            if let Some(health) = health {
                h.store.set_device_health(hostname, health, now_ms())?;
                h.cancel_jobs_of_retired(&[hostname.to_string()]).await?;
            }
            h.reschedule();
            Ok(Value::Nil)
        }
        "scheduler.devices.tags.add" => {
            a.at_most(2)?;
            who.admin()?;
            let hostname = a.str(0, "hostname")?;
            let name = a.str(1, "name")?;
            check_name("name", name)?;
            find_device(h, hostname)?;
            h.store.add_device_tag(hostname, name)?;
            h.reschedule();
            Ok(Value::Nil)
        }
        "scheduler.devices.tags.list" => {
            a.at_most(1)?;
            let d = find_device(h, a.str(0, "hostname")?)?;
            Ok(strings(&d.tags))
        }
        "scheduler.devices.tags.delete" => {
            a.at_most(2)?;
            who.admin()?;
            let hostname = a.str(0, "hostname")?;
            let name = a.str(1, "name")?;
            find_device(h, hostname)?;
            h.store
                .remove_device_tag(hostname, name)
                .map_err(|e| match e {
                    StoreError::Missing { .. } => {
                        Fault::NotFound(format!("Tag '{name}' was not found."))
                    }
                    other => other.into(),
                })?;
            Ok(Value::Nil)
        }
        "scheduler.device_types.show" => {
            a.at_most(1)?;
            let name = a.str(0, "name")?;
            let t = find_type(h, name)?;
            let mut devices: Vec<String> = h
                .store
                .devices()?
                .into_iter()
                .filter(|d| d.device_type == t.name)
                .map(|d| d.hostname)
                .collect();
            devices.sort();
            Ok(Value::structure([
                ("name", Value::str(t.name.as_str())),
                ("description", Value::str(t.description.as_str())),
                ("display", Value::Bool(true)),
                ("health_disabled", Value::Bool(t.rule.disabled)),
                ("health_denominator", Value::str(t.rule.denominator.name())),
                ("health_frequency", Value::Int(i64::from(t.rule.frequency))),
                ("aliases", strings(&t.aliases)),
                ("devices", strings(&devices)),
                ("default_template", Value::Bool(true)),
                ("permissions", Value::Array(Vec::new())),
            ]))
        }
        "scheduler.device_types.update" => {
            // (name, description, display, owners_only, health_frequency, health_denominator,
            //  health_disabled)
            a.at_most(7)?;
            who.admin()?;
            let name = a.str(0, "name")?;
            find_type(h, name)?;
            let disabled = match a.get(6) {
                None => None,
                Some(_) => Some(a.bool_or(6, "health_disabled", false)?),
            };
            let change = DeviceTypeChange {
                description: a.opt_str(1, "description")?.map(str::to_string),
                frequency: frequency(a, 4)?,
                denominator: denominator(a, 5)?,
                disabled,
                health_check: None,
            };
            h.store.update_device_type(name, &change)?;
            h.reschedule();
            Ok(Value::Nil)
        }
        "scheduler.device_types.get_health_check" => {
            a.at_most(1)?;
            let name = a.str(0, "name")?;
            let t = find_type(h, name)?;
            t.health_check
                .map(|text| Value::Base64(text.into_bytes()))
                .ok_or_else(|| Fault::NotFound(format!("Device-type '{name}' was not found.")))
        }
        "scheduler.device_types.set_health_check" => {
            a.at_most(2)?;
            who.admin()?;
            let name = a.str(0, "name")?;
            let config = a.str(1, "config")?;
            find_type(h, name)?;
            basalt_model::job::parse_job("health-check.yaml", config).map_err(|e| {
                Fault::BadRequest(format!("Invalid health-check for '{name}': {e}"))
            })?;
            h.store.update_device_type(
                name,
                &DeviceTypeChange {
                    health_check: Some(Some(config.to_string())),
                    ..DeviceTypeChange::default()
                },
            )?;
            h.reschedule();
            Ok(Value::Nil)
        }
        "scheduler.device_types.aliases.add" => {
            a.at_most(2)?;
            who.admin()?;
            let name = a.str(0, "name")?;
            let alias = a.str(1, "alias")?;
            find_type(h, name)?;
            add_alias(h, alias, name)
        }
        "scheduler.device_types.aliases.list" => {
            a.at_most(1)?;
            Ok(strings(&find_type(h, a.str(0, "name")?)?.aliases))
        }
        "scheduler.device_types.aliases.delete" => {
            a.at_most(2)?;
            who.admin()?;
            let name = a.str(0, "name")?;
            let alias = a.str(1, "alias")?;
            let t = find_type(h, name)?;
            if !t.aliases.iter().any(|x| x == alias) {
                return Err(Fault::NotFound(format!("Alias '{alias}' was not found.")));
            }
            h.store.remove_alias(alias)?;
            Ok(Value::Nil)
        }
        "scheduler.aliases.add" => {
            a.at_most(2)?;
            who.admin()?;
            let name = a.str(0, "name")?;
            let device_type = a.str(1, "device_type_name")?;
            if h.store.device_type(device_type)?.is_none() {
                return Err(Fault::BadRequest(
                    "Bad request. DeviceType does not exist".into(),
                ));
            }
            add_alias(h, name, device_type)
        }
        "scheduler.aliases.delete" => {
            a.at_most(1)?;
            who.admin()?;
            let name = a.str(0, "name")?;
            h.store.remove_alias(name).map_err(|e| match e {
                StoreError::Missing { .. } => {
                    Fault::NotFound(format!("Alias '{name}' was not found."))
                }
                other => other.into(),
            })?;
            Ok(Value::Nil)
        }
        "scheduler.aliases.list" => {
            a.at_most(0)?;
            let names: Vec<String> = h.store.aliases()?.into_iter().map(|(n, _)| n).collect();
            Ok(strings(&names))
        }
        "scheduler.aliases.show" => {
            a.at_most(1)?;
            let name = a.str(0, "name")?;
            let (alias, of) = h
                .store
                .aliases()?
                .into_iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| Fault::NotFound(format!("Alias '{name}' was not found.")))?;
            Ok(Value::structure([
                ("name", Value::String(alias)),
                ("device_type", Value::String(of)),
            ]))
        }
        "scheduler.workers.update" => {
            // (hostname, description, health, job_limit)
            a.at_most(4)?;
            who.admin()?;
            let hostname = a.str(0, "hostname")?;
            if h.store.worker(hostname)?.is_none() {
                return Err(Fault::NotFound(format!(
                    "Worker '{hostname}' was not found."
                )));
            }
            let health = match a.opt_str(2, "health")? {
                None => None,
                Some(name) => Some(
                    WorkerHealth::from_name(name)
                        .ok_or_else(|| Fault::BadRequest(format!("Invalid health: {name}")))?,
                ),
            };
            if a.opt_uint(3, "job_limit")?.is_some_and(|n| n > 0) {
                return Err(Fault::BadRequest(
                    "basalt has no per-worker job limit: each device runs one job".into(),
                ));
            }
            if let Some(d) = a.opt_str(1, "description")? {
                h.store.set_worker_description(hostname, d)?;
            }
            if let Some(health) = health {
                let retired = h.store.set_worker_health(hostname, health)?;
                h.cancel_jobs_of_retired(&retired).await?;
                h.reschedule();
            }
            Ok(Value::Nil)
        }
        other => Err(Fault::NoMethod(other.to_string())),
    }
}

/// `health_frequency` at argument `i`: a non-negative integer.
pub(super) fn frequency(a: &Args<'_>, i: usize) -> RpcResult<Option<u32>> {
    a.opt_uint(i, "health_frequency")?
        .map(|n| {
            u32::try_from(n)
                .map_err(|_| Fault::BadRequest("Bad request: invalid health_frequency.".into()))
        })
        .transpose()
}

/// `health_denominator` at argument `i`: `hours` or `jobs`.
pub(super) fn denominator(a: &Args<'_>, i: usize) -> RpcResult<Option<Denominator>> {
    a.opt_str(i, "health_denominator")?
        .map(|d| {
            Denominator::from_name(d)
                .ok_or_else(|| Fault::BadRequest("Bad request: invalid health_denominator.".into()))
        })
        .transpose()
}

fn find_type(h: &Handle, name: &str) -> RpcResult<crate::store::DeviceTypeDetails> {
    h.store
        .device_type(name)?
        .ok_or_else(|| Fault::NotFound(format!("Device-type '{name}' was not found.")))
}

fn add_alias(h: &Handle, alias: &str, device_type: &str) -> RpcResult<Value> {
    check_name("name", alias)?;
    h.store.add_alias(alias, device_type).map_err(|e| match e {
        StoreError::Exists { .. } => {
            Fault::BadRequest("Bad request. Alias or DeviceType name already exists.".into())
        }
        other => other.into(),
    })?;
    Ok(Value::Nil)
}
