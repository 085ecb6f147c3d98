//! When a device's health check is due, and what a check or an admin does to a device's
//! health: LAVA's rules (`lava_scheduler_app/scheduler.py`'s `schedule_health_checks`,
//! `models.py`'s `Device.testjob_signal`), as pure functions of the rule, the history and the
//! time. The engine owns the clock and the history: it calls [`plan`] before each scheduling
//! pass to fill [`DeviceInfo::health_check_due`], and sleeps until the next time it returns
//! (the scheduler itself stays a function of its snapshot).
//!
//! A device type has a rule: `health_frequency` (default 24) counted in `health_denominator`
//! hours or jobs, and `disable_health_check`. A device's check is due when
//! - it has never passed one since it was added or failed one ([`History::forced`]), or
//! - per hours: its last check was submitted more than `frequency` hours ago, or
//! - per jobs: `frequency` test jobs or more started on it since its last check
//!
//! (and always when its health is Unknown or Looping: the scheduler's own rule).

use crate::model::DeviceHealth;
use crate::scheduler::{DeviceInfo, Snapshot};
use serde::{Deserialize, Serialize};

/// What `health_frequency` counts (LAVA's `health_denominator`; its integers 0 and 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Denominator {
    /// A check every N hours (LAVA's default).
    #[default]
    Hours,
    /// A check after every N test jobs.
    Jobs,
}

impl Denominator {
    /// LAVA's name: `hours` or `jobs`.
    pub fn name(self) -> &'static str {
        match self {
            Denominator::Hours => "hours",
            Denominator::Jobs => "jobs",
        }
    }

    /// The denominator named `name` (`hours`, `jobs`, any case).
    pub fn from_name(name: &str) -> Option<Denominator> {
        match name.to_ascii_lowercase().as_str() {
            "hours" => Some(Denominator::Hours),
            "jobs" => Some(Denominator::Jobs),
            _ => None,
        }
    }

    /// LAVA's database integer.
    pub fn code(self) -> u8 {
        match self {
            Denominator::Hours => 0,
            Denominator::Jobs => 1,
        }
    }

    /// The value of LAVA's integer (anything else is hours, LAVA's default).
    pub fn from_code(code: u8) -> Denominator {
        if code == 1 {
            Denominator::Jobs
        } else {
            Denominator::Hours
        }
    }
}

/// LAVA's default `health_frequency` (`HEALTH_FREQUENCY_HOURS`).
pub const DEFAULT_FREQUENCY: u32 = 24;

/// A device type's health-check schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// How many hours or jobs between checks.
    pub frequency: u32,
    pub denominator: Denominator,
    /// `disable_health_check`: its devices never get a check, whatever the type defines.
    pub disabled: bool,
}

impl Default for Rule {
    /// LAVA's defaults: every 24 hours, enabled.
    fn default() -> Rule {
        Rule {
            frequency: DEFAULT_FREQUENCY,
            denominator: Denominator::Hours,
            disabled: false,
        }
    }
}

/// What the store knows of a device's checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// A check is needed whatever the rule says: the device never passed one and no admin
    /// vouched for it (marked it Good), or it failed its last one.
    pub forced: bool,
    /// When the frequency is counted from (ms since the epoch): the submit time of its last
    /// health check (LAVA's `last_health_report_job.submit_time`), or when an admin made a
    /// device without one Good. `None`: never.
    pub checked_at: Option<u64>,
    /// Test jobs started on it since then.
    pub jobs_since: u64,
}

const HOUR_MS: u64 = 3_600_000;

/// Whether a device with `history` needs a check at `now` (ms since the epoch) under `rule`.
pub fn due(rule: &Rule, history: &History, now: u64) -> bool {
    if rule.disabled {
        return false;
    }
    if history.forced {
        return true;
    }
    let Some(at) = history.checked_at else {
        return true;
    };
    match rule.denominator {
        Denominator::Jobs => history.jobs_since >= u64::from(rule.frequency),
        // LAVA's `submit_time + frequency < now`
        Denominator::Hours => at.saturating_add(u64::from(rule.frequency) * HOUR_MS) < now,
    }
}

/// When a check that is not due at `now` becomes due by the clock (ms since the epoch), if it
/// does (a jobs rule waits for jobs, not for time).
pub fn next_due(rule: &Rule, history: &History, now: u64) -> Option<u64> {
    if rule.disabled || due(rule, history, now) || rule.denominator != Denominator::Hours {
        return None;
    }
    // due once strictly later than this
    let at = history.checked_at?;
    Some(at.saturating_add(u64::from(rule.frequency) * HOUR_MS) + 1)
}

/// A device's rule and history, next to its [`DeviceInfo`] in a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    pub rule: Rule,
    pub history: History,
}

/// Fills each device's [`DeviceInfo::health_check_due`] from its `facts` (same order as
/// `snapshot.devices`) at `now`; returns the earliest later time a check of a device whose
/// type has one becomes due by the clock, for the engine to wake at.
pub fn plan(snapshot: &mut Snapshot, facts: &[Facts], now: u64) -> Option<u64> {
    let checked: std::collections::HashSet<&str> = snapshot
        .device_types
        .iter()
        .filter(|t| t.health_check)
        .map(|t| t.name.as_str())
        .collect();
    let mut wake: Option<u64> = None;
    for (d, f) in snapshot.devices.iter_mut().zip(facts) {
        d.health_check_due = due(&f.rule, &f.history, now);
        if !checked.contains(d.device_type.as_str()) || !can_be_checked(d) {
            continue;
        }
        if let Some(t) = next_due(&f.rule, &f.history, now) {
            wake = Some(wake.map_or(t, |w| w.min(t)));
        }
    }
    wake
}

/// Whether a device's health lets it take a health check at all (Bad, Maintenance and
/// Retired devices run nothing until an admin changes them).
fn can_be_checked(d: &DeviceInfo) -> bool {
    matches!(
        d.health,
        DeviceHealth::Good | DeviceHealth::Unknown | DeviceHealth::Looping
    )
}

/// A device's health once a job on it ended or was lost: `target` is what the end asks for
/// (Good or Bad after a health check that completed or not, Unknown after a job or a worker
/// lost), `current` the device's health then. As LAVA's `testjob_signal`: a check's outcome
/// applies to a Good, Unknown or Bad device (a Looping device stays Looping); a loss makes a
/// Good device Unknown, to be checked when its worker is back. A device an admin took out
/// (Maintenance, Retired) stays out. `None`: the health does not change.
pub fn settle(current: DeviceHealth, target: DeviceHealth) -> Option<DeviceHealth> {
    use DeviceHealth::*;
    let applies = match target {
        Good | Bad => matches!(current, Good | Unknown | Bad),
        Unknown => current == Good,
        Looping | Maintenance | Retired => true,
    };
    (applies && current != target).then_some(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DeviceState, WorkerHealth, WorkerState};
    use crate::scheduler::{schedule, DeviceTypeInfo};

    const T0: u64 = 1_800_000_000_000;

    fn hours(n: u32) -> Rule {
        Rule {
            frequency: n,
            denominator: Denominator::Hours,
            disabled: false,
        }
    }

    fn jobs(n: u32) -> Rule {
        Rule {
            frequency: n,
            denominator: Denominator::Jobs,
            disabled: false,
        }
    }

    fn checked(at: u64, jobs_since: u64) -> History {
        History {
            forced: false,
            checked_at: Some(at),
            jobs_since,
        }
    }

    #[test]
    fn an_hours_rule_is_due_once_the_frequency_has_passed() {
        let h = checked(T0, 0);
        assert!(!due(&hours(24), &h, T0));
        assert!(!due(&hours(24), &h, T0 + 24 * HOUR_MS), "LAVA's strict <");
        assert!(due(&hours(24), &h, T0 + 24 * HOUR_MS + 1));
        assert!(due(&hours(1), &h, T0 + 2 * HOUR_MS));
        assert_eq!(next_due(&hours(24), &h, T0), Some(T0 + 24 * HOUR_MS + 1));
        assert_eq!(next_due(&hours(1), &h, T0 + 2 * HOUR_MS), None, "due now");
        // a clock before the check (set back) is not due
        assert!(!due(&hours(1), &h, T0 - HOUR_MS));
    }

    #[test]
    fn a_jobs_rule_is_due_after_that_many_test_jobs() {
        assert!(!due(&jobs(3), &checked(T0, 2), T0));
        assert!(due(&jobs(3), &checked(T0, 3), T0));
        assert!(due(&jobs(3), &checked(T0, 7), T0));
        // time alone never makes it due
        assert!(!due(&jobs(3), &checked(T0, 0), T0 + 1000 * HOUR_MS));
        assert_eq!(next_due(&jobs(3), &checked(T0, 0), T0), None);
    }

    #[test]
    fn never_checked_or_forced_is_due_and_disabled_never_is() {
        let never = History::default();
        assert!(due(&hours(24), &never, T0));
        let forced = History {
            forced: true,
            ..checked(T0, 0)
        };
        assert!(due(&jobs(100), &forced, T0));
        let off = Rule {
            disabled: true,
            ..hours(1)
        };
        assert!(!due(&off, &never, T0));
        assert!(!due(&off, &forced, T0 + 100 * HOUR_MS));
        assert_eq!(next_due(&off, &checked(T0, 0), T0), None);
    }

    #[test]
    fn lavas_defaults_and_names() {
        assert_eq!(Rule::default(), hours(24));
        assert_eq!(Denominator::from_name("Jobs"), Some(Denominator::Jobs));
        assert_eq!(Denominator::from_name("days"), None);
        assert_eq!(
            Denominator::from_code(Denominator::Jobs.code()),
            Denominator::Jobs
        );
        assert_eq!(Denominator::from_code(9), Denominator::Hours);
        assert_eq!(
            serde_json::to_string(&Denominator::Hours).unwrap(),
            "\"hours\""
        );
    }

    #[test]
    fn a_check_sets_the_health_as_lava_does_and_admins_choices_stay() {
        use DeviceHealth::*;
        assert_eq!(settle(Unknown, Good), Some(Good));
        assert_eq!(settle(Good, Bad), Some(Bad));
        assert_eq!(settle(Bad, Good), Some(Good));
        assert_eq!(settle(Good, Good), None, "no change");
        assert_eq!(settle(Looping, Bad), None);
        assert_eq!(settle(Maintenance, Good), None);
        assert_eq!(settle(Retired, Bad), None);
        // lost with its worker
        assert_eq!(settle(Good, Unknown), Some(Unknown));
        for h in [Unknown, Looping, Bad, Maintenance, Retired] {
            assert_eq!(settle(h, Unknown), None, "{h}");
        }
    }

    fn device(hostname: &str, health: DeviceHealth) -> DeviceInfo {
        DeviceInfo {
            hostname: hostname.into(),
            device_type: "qemu".into(),
            tags: Vec::new(),
            state: DeviceState::Idle,
            health,
            worker: "w1".into(),
            worker_state: WorkerState::Online,
            worker_health: WorkerHealth::Active,
            health_check_due: false,
            idle_since: 0,
            holds: false,
        }
    }

    #[test]
    fn the_plan_marks_due_devices_and_says_when_to_wake() {
        let mut snap = Snapshot {
            jobs: Vec::new(),
            devices: vec![
                device("a", DeviceHealth::Good),
                device("b", DeviceHealth::Good),
                device("c", DeviceHealth::Good),
                device("d", DeviceHealth::Maintenance),
            ],
            device_types: vec![DeviceTypeInfo {
                name: "qemu".into(),
                health_check: true,
            }],
        };
        let facts = [
            // checked 25 hours ago: due now
            Facts {
                rule: hours(24),
                history: checked(T0 - 25 * HOUR_MS, 0),
            },
            // checked 23 hours ago: due in an hour
            Facts {
                rule: hours(24),
                history: checked(T0 - 23 * HOUR_MS, 0),
            },
            // checked 1 hour ago: due in 23 hours
            Facts {
                rule: hours(24),
                history: checked(T0 - HOUR_MS, 0),
            },
            // in Maintenance: its time does not wake the engine
            Facts {
                rule: hours(24),
                history: checked(T0 - 24 * HOUR_MS + 10, 0),
            },
        ];
        let wake = plan(&mut snap, &facts, T0);
        let flags: Vec<bool> = snap.devices.iter().map(|d| d.health_check_due).collect();
        assert_eq!(flags, [true, false, false, false]);
        assert_eq!(wake, Some(T0 + HOUR_MS + 1));
        // the scheduler then wants a check for `a` only
        assert_eq!(schedule(&snap).needs_health_check, ["a"]);
        // without a health-check definition nothing wakes the engine
        snap.device_types[0].health_check = false;
        assert_eq!(plan(&mut snap, &facts, T0), None);
    }
}
