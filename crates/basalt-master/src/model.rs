//! LAVA's states for jobs, devices and workers, with LAVA's names (the serde form, as LAVA's
//! API shows them) and LAVA's database integers (`lava_scheduler_app/models.py`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Declares a LAVA state enum: serde and `Display` use the variant name, which is LAVA's
/// display name; `code` is LAVA's integer for the value.
macro_rules! lava_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $code:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in LAVA's numeric order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// LAVA's display name (also the serde form).
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => stringify!($variant),)+
                }
            }

            /// LAVA's database integer for this value.
            pub fn code(self) -> u8 {
                match self {
                    $($name::$variant => $code,)+
                }
            }

            /// The value of a LAVA name, any case (`finished`, `Finished`), if there is one.
            pub fn from_name(name: &str) -> Option<$name> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.name().eq_ignore_ascii_case(name))
            }

            /// The value LAVA stores as `code`, if there is one.
            pub fn from_code(code: u8) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.code() == code)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

/// Checks a name that becomes part of URL paths (a hostname, a device type): not empty, no
/// `/`, no whitespace; the error says which `field` and why.
pub fn check_name(field: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains('/') || name.chars().any(char::is_whitespace) {
        return Err(format!(
            "'{field}' should be a non-empty name without '/' or spaces, not {name:?}"
        ));
    }
    Ok(())
}

lava_enum! {
    /// Where a job is in its life (`TestJob.state`).
    JobState {
        /// Queued, waiting for a device (the only state the scheduler picks from).
        Submitted = 0,
        /// A MultiNode sub-job holding its device until the whole group has devices (LAVA's;
        /// basalt schedules a group whole in one pass, so its sub-jobs go straight to Scheduled).
        Scheduling = 1,
        /// Given a device (now Reserved); waiting for the worker to start it.
        Scheduled = 2,
        /// The worker reported it running (device Running).
        Running = 3,
        /// Cancel requested; waiting for the worker to stop it.
        Canceling = 4,
        /// Done; see its [`JobHealth`].
        Finished = 5,
    }
}

lava_enum! {
    /// How a job ended (`TestJob.health`); Unknown until it is Finished.
    JobHealth {
        /// Not finished yet.
        Unknown = 0,
        /// The worker reported `result=pass`.
        Complete = 1,
        /// The worker reported `result=fail`.
        Incomplete = 2,
        /// Finished while Canceling (or canceled before it was scheduled).
        Canceled = 3,
    }
}

lava_enum! {
    /// What a device is doing (`Device.state`); derived from its job, never set by hand.
    DeviceState {
        /// No job: the only state the scheduler gives jobs to.
        Idle = 0,
        /// A job is Scheduling or Scheduled on it.
        Reserved = 1,
        /// Its job is Running.
        Running = 2,
    }
}

lava_enum! {
    /// Whether a device may run jobs (`Device.health`). LAVA creates devices in Maintenance.
    DeviceHealth {
        /// Passed its last health check (or has none to pass): runs jobs.
        Good = 0,
        /// Needs a health check before test jobs (when its type has one).
        Unknown = 1,
        /// Runs health checks over and over, never test jobs (an admin's soak test).
        Looping = 2,
        /// Failed a health check: runs nothing until an admin changes it.
        Bad = 3,
        /// Taken out by an admin: runs nothing.
        Maintenance = 4,
        /// Gone for good: runs nothing.
        Retired = 5,
    }
}

lava_enum! {
    /// Whether a worker is connected (`Worker.state`); Offline after 60 s without a ping.
    WorkerState {
        /// Pinged recently.
        Online = 0,
        /// Not heard from (LAVA's default for a new worker).
        Offline = 1,
    }
}

lava_enum! {
    /// Whether an admin lets a worker run jobs (`Worker.health`).
    WorkerHealth {
        /// Runs jobs.
        Active = 0,
        /// Runs no new jobs.
        Maintenance = 1,
        /// Gone for good (its devices are retired too).
        Retired = 2,
    }
}

/// A job's priority as LAVA has it: an integer 0..=100, higher runs first.
///
/// Serialized as the integer; read from an integer or from LAVA's names `low`, `medium`,
/// `high` (any case), as LAVA's submission accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "PriorityRepr", into = "u8")]
pub struct Priority(u8);

impl Priority {
    /// LAVA's `low`.
    pub const LOW: Priority = Priority(0);
    /// LAVA's `medium`, the default for a submission without one.
    pub const MEDIUM: Priority = Priority(50);
    /// LAVA's `high`.
    pub const HIGH: Priority = Priority(100);

    /// The priority `value`, if it is in LAVA's range 0..=100.
    pub fn new(value: u8) -> Option<Priority> {
        (value <= Priority::HIGH.0).then_some(Priority(value))
    }

    /// The priority named `name` (`low`, `medium`, `high`, any case), as LAVA parses it.
    pub fn from_name(name: &str) -> Option<Priority> {
        match name.to_ascii_lowercase().as_str() {
            "low" => Some(Priority::LOW),
            "medium" => Some(Priority::MEDIUM),
            "high" => Some(Priority::HIGH),
            _ => None,
        }
    }

    /// The integer, 0..=100.
    pub fn value(self) -> u8 {
        self.0
    }
}

impl Default for Priority {
    fn default() -> Priority {
        Priority::MEDIUM
    }
}

impl From<Priority> for u8 {
    fn from(p: Priority) -> u8 {
        p.0
    }
}

/// What serde reads a priority from: an integer or one of LAVA's names.
#[derive(Deserialize)]
#[serde(untagged)]
enum PriorityRepr {
    Number(i64),
    Name(String),
}

impl TryFrom<PriorityRepr> for Priority {
    type Error = String;

    fn try_from(repr: PriorityRepr) -> Result<Priority, String> {
        match repr {
            PriorityRepr::Number(n) => u8::try_from(n)
                .ok()
                .and_then(Priority::new)
                .ok_or_else(|| format!("invalid job priority {n}: should be in [0, 100]")),
            PriorityRepr::Name(s) => {
                Priority::from_name(&s).ok_or_else(|| format!("invalid job priority {s:?}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_are_lavas() {
        let names: Vec<&str> = JobState::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "Submitted",
                "Scheduling",
                "Scheduled",
                "Running",
                "Canceling",
                "Finished"
            ]
        );
        let names: Vec<&str> = DeviceHealth::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "Good",
                "Unknown",
                "Looping",
                "Bad",
                "Maintenance",
                "Retired"
            ]
        );
        for (i, h) in JobHealth::ALL.iter().enumerate() {
            assert_eq!(usize::from(h.code()), i);
            assert_eq!(JobHealth::from_code(h.code()), Some(*h));
        }
        assert_eq!(DeviceState::from_code(2), Some(DeviceState::Running));
        assert_eq!(DeviceState::from_code(3), None);
        assert_eq!(WorkerState::Offline.code(), 1);
        assert_eq!(WorkerHealth::Retired.to_string(), "Retired");
    }

    #[test]
    fn serde_uses_lava_names() {
        let json = serde_json::to_string(&DeviceHealth::Maintenance).unwrap();
        assert_eq!(json, "\"Maintenance\"");
        let s: JobState = serde_json::from_str("\"Canceling\"").unwrap();
        assert_eq!(s, JobState::Canceling);
        assert!(serde_json::from_str::<DeviceState>("\"Busy\"").is_err());
    }

    #[test]
    fn priority_range_names_and_serde() {
        assert_eq!(Priority::new(100), Some(Priority::HIGH));
        assert_eq!(Priority::new(101), None);
        assert_eq!(Priority::default(), Priority::MEDIUM);
        assert_eq!(Priority::from_name("High"), Some(Priority::HIGH));
        assert_eq!(Priority::from_name("urgent"), None);
        assert_eq!(serde_json::to_string(&Priority::LOW).unwrap(), "0");
        let p: Priority = serde_json::from_str("\"medium\"").unwrap();
        assert_eq!(p.value(), 50);
        let p: Priority = serde_json::from_str("73").unwrap();
        assert_eq!(p.value(), 73);
        assert!(serde_json::from_str::<Priority>("101").is_err());
        assert!(serde_json::from_str::<Priority>("-1").is_err());
        assert!(serde_json::from_str::<Priority>("\"urgent\"").is_err());
    }
}
