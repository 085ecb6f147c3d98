//! Reservations (issue 21, docs/reservations.md): a CI runtime asks for a machine by device
//! type, by device or by requirements, gets it for a lease that expires unless renewed, boots
//! it, runs commands on it and releases it. A reservation is a job that waits for its holder:
//! it is queued and scheduled with the other jobs, its worker holds the board
//! (`Start.lease`), and its log is a job log.
//!
//! This module family holds the pure parts: the states ([`ReservationState`]), the
//! requirements and how devices meet them ([`requirements`]), the boot requests made into LAVA
//! jobs ([`boot`]) and the lease's secrets ([`secrets`]). The store keeps reservations
//! (`store/reservations.rs`), the engine drives them (`engine/reservations.rs`), the REST API
//! serves them (`http/reservations.rs`).

pub mod boot;
pub mod requirements;
pub mod secrets;

use serde::{Deserialize, Serialize};

/// Where a reservation is (docs/reservations.md, "States").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    /// Waiting for a device (the job is Submitted).
    Queued,
    /// A device was given; its worker is taking the board.
    Allocated,
    /// A boot runs.
    Booting,
    /// The board is held and its console served (booted to a shell when a boot was asked).
    Ready,
    /// The last boot failed (still held), or the hold was lost (final then).
    Failed,
    /// The holder released it (final).
    Released,
    /// The lease ran out (final).
    Expired,
}

impl ReservationState {
    /// Every state, in the order of the docs.
    pub const ALL: [ReservationState; 7] = [
        ReservationState::Queued,
        ReservationState::Allocated,
        ReservationState::Booting,
        ReservationState::Ready,
        ReservationState::Failed,
        ReservationState::Released,
        ReservationState::Expired,
    ];

    /// Its name in the API and the store (`queued`, `ready`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ReservationState::Queued => "queued",
            ReservationState::Allocated => "allocated",
            ReservationState::Booting => "booting",
            ReservationState::Ready => "ready",
            ReservationState::Failed => "failed",
            ReservationState::Released => "released",
            ReservationState::Expired => "expired",
        }
    }

    /// The state named `name` (as [`ReservationState::name`] writes it, any case).
    pub fn from_name(name: &str) -> Option<ReservationState> {
        let lower = name.trim().to_ascii_lowercase();
        ReservationState::ALL
            .into_iter()
            .find(|s| s.name() == lower)
    }

    /// Released and expired are final.
    pub fn is_final(self) -> bool {
        matches!(self, ReservationState::Released | ReservationState::Expired)
    }
}

impl std::fmt::Display for ReservationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the master ended a lease: the final state its job's end gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// The holder released it: `released`.
    Release,
    /// Its lease ran out: `expired`.
    Expiry,
    /// Its hold ended without the master asking (the worker lost, the hold died): `failed`,
    /// for good.
    Lost,
}

impl Ending {
    /// Its name in the store.
    pub fn name(self) -> &'static str {
        match self {
            Ending::Release => "release",
            Ending::Expiry => "expiry",
            Ending::Lost => "lost",
        }
    }

    /// The ending named `name`.
    pub fn from_name(name: &str) -> Option<Ending> {
        match name {
            "release" => Some(Ending::Release),
            "expiry" => Some(Ending::Expiry),
            "lost" => Some(Ending::Lost),
            _ => None,
        }
    }

    /// The final state it leads to.
    pub fn state(self) -> ReservationState {
        match self {
            Ending::Release => ReservationState::Released,
            Ending::Expiry => ReservationState::Expired,
            Ending::Lost => ReservationState::Failed,
        }
    }
}

/// A lease length in seconds from `900`, `90s`, `15m`, `2h` or `1d` (`--max-lease`).
pub fn parse_duration_secs(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 900, 15m, 2h or 1d"))?;
    let factor = match unit.trim() {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit is s, m, h or d")),
    };
    n.checked_mul(factor)
        .filter(|s| *s > 0)
        .ok_or_else(|| format!("{text:?} is not a positive duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_seconds() {
        assert_eq!(parse_duration_secs("900"), Ok(900));
        assert_eq!(parse_duration_secs("15m"), Ok(900));
        assert_eq!(parse_duration_secs("2h"), Ok(7200));
        assert_eq!(parse_duration_secs("1d"), Ok(86_400));
        for bad in ["", "0", "m", "1w", "-5"] {
            assert!(parse_duration_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn states_read_back_by_name() {
        for s in ReservationState::ALL {
            assert_eq!(ReservationState::from_name(s.name()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
        assert_eq!(
            ReservationState::from_name("READY"),
            Some(ReservationState::Ready)
        );
        assert_eq!(ReservationState::from_name("gone"), None);
        assert!(ReservationState::Expired.is_final() && !ReservationState::Failed.is_final());
        assert_eq!(
            Ending::from_name("expiry").map(Ending::state),
            Some(ReservationState::Expired)
        );
    }
}
