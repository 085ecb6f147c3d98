//! basalt's failure taxonomy: what a CI system needs to tell a lab fault from a kernel
//! regression. Every Incomplete or Canceled job and every failed test case carries one
//! [`FailureCause`], next to LAVA's own `error_type` (kept for LAVA's clients). The dispatcher
//! decides it where it knows what failed; the master where the dispatcher could not say (a
//! worker lost, a job canceled before it started).

use crate::message::ErrorType;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The class of a failure, by who must act on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCause {
    /// The lab: power, console, network, the worker lost, the TFTP or NFS server, a basalt bug.
    Infrastructure,
    /// The bootloader: no prompt, a load or boot command that failed.
    Bootloader,
    /// The kernel or the system it starts: no kernel start, a panic, no init or no login.
    Kernel,
    /// The job: a bad definition, a download that failed or did not match its checksum.
    Job,
    /// The test: a failed test case, `lava-test-raise`, a test that ran out of time.
    Test,
    /// Someone canceled the job.
    Canceled,
}

impl FailureCause {
    /// Every cause, in the order above.
    pub const ALL: [FailureCause; 6] = [
        FailureCause::Infrastructure,
        FailureCause::Bootloader,
        FailureCause::Kernel,
        FailureCause::Job,
        FailureCause::Test,
        FailureCause::Canceled,
    ];

    /// Its name in results, the API, events and callbacks (`infrastructure`, `kernel`...).
    pub fn name(self) -> &'static str {
        match self {
            FailureCause::Infrastructure => "infrastructure",
            FailureCause::Bootloader => "bootloader",
            FailureCause::Kernel => "kernel",
            FailureCause::Job => "job",
            FailureCause::Test => "test",
            FailureCause::Canceled => "canceled",
        }
    }

    /// The cause named `name`, if it is one.
    pub fn from_name(name: &str) -> Option<FailureCause> {
        FailureCause::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The cause when only LAVA's error type is known (an End from a 1.0 worker, a job
    /// process that said nothing): a timeout's stage is unknown, so it counts as the lab's.
    pub fn from_error_type(t: &ErrorType) -> FailureCause {
        match t {
            ErrorType::Job => FailureCause::Job,
            ErrorType::Test => FailureCause::Test,
            ErrorType::Canceled => FailureCause::Canceled,
            ErrorType::Infrastructure
            | ErrorType::Bug
            | ErrorType::Configuration
            | ErrorType::LavaTimeout
            | ErrorType::MultinodeTimeout
            | ErrorType::Other(_) => FailureCause::Infrastructure,
        }
    }

    /// Whether the lab, not the software under test, is at fault: such a job says nothing
    /// about the kernel, and the board's health is in question.
    pub fn is_lab_fault(self) -> bool {
        self == FailureCause::Infrastructure
    }
}

impl fmt::Display for FailureCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for c in FailureCause::ALL {
            assert_eq!(FailureCause::from_name(c.name()), Some(c));
            let json = serde_json::to_string(&c).expect("serializes");
            assert_eq!(json, format!("\"{}\"", c.name()));
        }
        assert_eq!(FailureCause::from_name("Kernel"), None);
        assert!(serde_json::from_str::<FailureCause>("\"power\"").is_err());
    }
}
