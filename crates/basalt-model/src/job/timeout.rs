//! LAVA timeouts: `{days|hours|minutes|seconds: N, skip?: bool}` summed to seconds.

use crate::diag::Report;
use crate::reader::{integer, Fields};
use crate::yaml::{Node, Value};
use std::fmt;
use std::time::Duration;

/// LAVA's default action timeout (`ACTION_TIMEOUT`), used when nothing else applies.
pub const DEFAULT_ACTION_SECS: u64 = 30;

/// Which of LAVA's two validators checks a timeout in a job, and so what it may hold
/// (`docs/validation.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The submission gate and the job schema: exactly one unit, an integer ≥ 1, optional
    /// `skip`, no other key (job `timeouts`, an action block's `timeout`, the MultiNode
    /// protocol's `timeout`).
    Closed,
    /// The job schema only: at least one unit ≥ 1; other keys pass (an action block's
    /// `timeouts:` map, a MultiNode role's `timeout`).
    Open,
    /// The submission gate only: at most one unit, integers, no other key (a test
    /// definition's `timeout`).
    Gate,
}

const UNITS: [(&str, u64); 4] = [
    ("days", 86_400),
    ("hours", 3_600),
    ("minutes", 60),
    ("seconds", 1),
];

/// A timeout from a job or device file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout {
    pub secs: u64,
    /// On a test block: a timeout moves on to the next block instead of failing the job.
    pub skip: bool,
}

impl Timeout {
    pub const fn secs(secs: u64) -> Timeout {
        Timeout { secs, skip: false }
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.secs)
    }

    /// Reads a timeout mapping. An empty or zero timeout means the default 30 s, as in LAVA.
    pub fn parse(r: &mut Report, node: &Node, path: &str) -> Option<Timeout> {
        let mut f = Fields::new(r, node, path)?;
        let mut total: u64 = 0;
        let mut units = 0;
        for (unit, mult) in UNITS {
            if let Some(v) = f.opt(unit) {
                units += 1;
                let n = integer(r, v, &f.sub(unit), 0, 10_000_000)?;
                total = total.saturating_add((n as u64).saturating_mul(mult));
            }
        }
        let skip = f.opt_bool(r, "skip").unwrap_or(false);
        if units == 0 {
            r.error(
                node,
                path,
                "a timeout needs one of days, hours, minutes or seconds",
            );
        }
        f.finish(r, "timeout");
        Some(Timeout {
            secs: if total == 0 {
                DEFAULT_ACTION_SECS
            } else {
                total
            },
            skip,
        })
    }
}

impl Timeout {
    /// Reads a job's timeout under LAVA's `rule`; errors name the offending unit key.
    pub fn parse_job(r: &mut Report, node: &Node, path: &str, rule: Rule) -> Option<Timeout> {
        let Some(map) = node.as_map() else {
            r.error(
                node,
                path,
                format!("expected a timeout mapping, found {}", node.kind()),
            );
            return None;
        };
        let mut total: u64 = 0;
        let mut units: Vec<&Node> = Vec::new();
        let mut valid_units = 0;
        let mut ok = true;
        let mut skip = false;
        // Open rule: a unit below 1 is an error only if no other unit carries the timeout.
        let mut pending: Option<(&Node, String, i64)> = None;
        for (k, v) in map {
            let key = k.as_str().unwrap_or("");
            let kpath = crate::diag::join(path, key);
            if let Some((_, mult)) = UNITS.iter().find(|(u, _)| *u == key) {
                units.push(k);
                let n = match (&v.value, rule) {
                    (Value::Int(i), _) => Some(*i),
                    // Python: a boolean is an integer.
                    (Value::Bool(b), _) => Some(i64::from(*b)),
                    (Value::Float(f), Rule::Open) if f.is_finite() => Some(*f as i64),
                    _ => None,
                };
                match n {
                    Some(n) if n >= 1 => {
                        valid_units += 1;
                        total = total.saturating_add((n as u64).saturating_mul(*mult));
                    }
                    Some(n) if rule == Rule::Gate && n >= 0 => {
                        valid_units += 1;
                        total = total.saturating_add((n as u64).saturating_mul(*mult));
                    }
                    Some(n) if rule == Rule::Open => {
                        pending.get_or_insert((v, kpath.clone(), n));
                    }
                    Some(n) => {
                        r.error(v, &kpath, format!("a timeout is at least 1 {key}, not {n}"));
                        ok = false;
                    }
                    None => {
                        r.error(
                            v,
                            &kpath,
                            format!("expected an integer, found {}", v.kind()),
                        );
                        ok = false;
                    }
                }
            } else if key == "skip" {
                match v.value {
                    Value::Bool(b) => skip = b,
                    _ => {
                        r.error(
                            v,
                            &kpath,
                            format!("expected true or false, found {}", v.kind()),
                        );
                        ok = false;
                    }
                }
            } else if rule != Rule::Open {
                r.error(
                    k,
                    &kpath,
                    "unknown key in a timeout (days, hours, minutes, seconds, skip)",
                );
                ok = false;
            }
        }
        if rule != Rule::Open && units.len() > 1 {
            r.error(
                units[1],
                &crate::diag::join(path, units[1].as_str().unwrap_or("")),
                "a timeout has one unit: days, hours, minutes or seconds",
            );
            ok = false;
        }
        if rule != Rule::Gate && valid_units == 0 && ok {
            if let Some((v, kpath, n)) = pending {
                let unit = kpath.rsplit('.').next().unwrap_or("").to_string();
                r.error(
                    v,
                    &kpath,
                    format!("a timeout is at least 1 {unit}, not {n}"),
                );
                return None;
            }
            r.error(
                node,
                path,
                if units.is_empty() {
                    "a timeout needs one of days, hours, minutes or seconds".to_string()
                } else {
                    "a timeout is at least 1 (of days, hours, minutes or seconds)".to_string()
                },
            );
            ok = false;
        }
        ok.then_some(Timeout {
            secs: if total == 0 {
                DEFAULT_ACTION_SECS
            } else {
                total
            },
            skip,
        })
    }
}

impl fmt::Display for Timeout {
    /// `HH:MM:SS`, as LAVA prints timeouts in its log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hms(self.secs, f)
    }
}

/// Writes seconds as `HH:MM:SS`.
pub fn hms(secs: u64, f: &mut impl fmt::Write) -> fmt::Result {
    write!(
        f,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::load;

    #[test]
    fn parses_units() {
        let mut r = Report::new("t");
        let n = load("{minutes: 2, seconds: 5}").unwrap();
        assert_eq!(Timeout::parse(&mut r, &n, "t").unwrap().secs, 125);
        let n = load("{}").unwrap();
        let t = Timeout::parse(&mut r, &n, "t");
        assert_eq!(t.map(|t| t.secs), Some(30));
        assert!(r.has_errors());
        let mut r = Report::new("t");
        let n = load("{hours: x}").unwrap();
        assert!(Timeout::parse(&mut r, &n, "t").is_none());
        assert!(r.has_errors());
        let mut s = String::new();
        hms(3725, &mut s).unwrap();
        assert_eq!(s, "01:02:05");
    }
}
