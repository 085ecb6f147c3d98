//! A reservation's requirements (`arch`, `ram`, `cpus`, `features`, `tags`) and a device's
//! properties as its dictionary states them, matched as docs/reservations.md says: pure
//! functions, no store and no I/O. `arch` is normalised on both sides, `ram` and `cpus` are
//! minimums (a qemu device's `memory` and `cpus` stand in when the dictionary has no `ram`),
//! every required feature and tag must be there (case-insensitive for features).
//!
//! When no device meets them, [`eligible`] says which requirement is unmet and what the lab
//! has instead, for the 400 answer (`no device meets ram >= 4G: the largest is 2G (qemu-02)`).

use basalt_model::yaml::{Node, Value as YamlValue};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The requirement keys a request may give.
pub const KEYS: &[&str] = &["arch", "ram", "cpus", "features", "subarch", "tags"];

/// What a reservation asks of its machine; every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirements {
    /// The architecture, normalised ([`normalise_arch`]).
    pub arch: Option<String>,
    /// At least this much RAM, in MiB.
    pub ram_mib: Option<u64>,
    /// At least this many CPUs.
    pub cpus: Option<u32>,
    /// Features every one of which the device lists (lowercase).
    pub features: Vec<String>,
    /// LAVA tags every one of which the device has.
    pub tags: Vec<String>,
}

/// Why requirements could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequirementError {
    /// Requirements are a JSON object.
    #[error("'requirements' should be an object such as {{\"arch\": \"arm64\", \"ram\": \"2G\"}}")]
    NotAnObject,
    /// A key that is not one of [`KEYS`].
    #[error("unknown requirement '{0}' (known: arch, ram, cpus, features, subarch, tags)")]
    UnknownKey(String),
    /// A known key with a value that does not read.
    #[error("requirement '{key}': {why}")]
    Invalid { key: String, why: String },
}

fn invalid(key: &str, why: impl Into<String>) -> RequirementError {
    RequirementError::Invalid {
        key: key.to_string(),
        why: why.into(),
    }
}

impl Requirements {
    /// Reads a request's `requirements` object; unknown keys and unreadable values are errors
    /// naming the key. `subarch: X` adds X to the features (the seed's `subarch=NEON`).
    pub fn parse(v: &Value) -> Result<Requirements, RequirementError> {
        let obj = v.as_object().ok_or(RequirementError::NotAnObject)?;
        let mut r = Requirements::default();
        for (key, value) in obj {
            match key.as_str() {
                "arch" => {
                    let a = value
                        .as_str()
                        .map(str::trim)
                        .filter(|a| !a.is_empty())
                        .ok_or_else(|| invalid(key, "an architecture name such as arm64"))?;
                    r.arch = Some(normalise_arch(a));
                }
                "ram" => r.ram_mib = Some(size_mib(value).map_err(|why| invalid(key, why))?),
                "cpus" => {
                    let n = count(value).map_err(|why| invalid(key, why))?;
                    r.cpus = Some(n);
                }
                "features" | "subarch" => {
                    for f in words(value).map_err(|why| invalid(key, why))? {
                        let f = f.to_lowercase();
                        if !r.features.contains(&f) {
                            r.features.push(f);
                        }
                    }
                }
                "tags" => {
                    for t in words(value).map_err(|why| invalid(key, why))? {
                        if !r.tags.contains(&t) {
                            r.tags.push(t);
                        }
                    }
                }
                other => return Err(RequirementError::UnknownKey(other.to_string())),
            }
        }
        Ok(r)
    }

    /// Whether nothing is required.
    pub fn is_empty(&self) -> bool {
        self == &Requirements::default()
    }

    /// Whether anything beyond tags is required (tags alone are a job's tags: the scheduler
    /// matches them without a list of eligible devices).
    pub fn beyond_tags(&self) -> bool {
        self.arch.is_some()
            || self.ram_mib.is_some()
            || self.cpus.is_some()
            || !self.features.is_empty()
    }

    /// The requirements as the reservation object shows them (and [`Requirements::parse`]
    /// reads back): `{"arch": "arm64", "ram": "2G", "cpus": 2, "features": [...], "tags": [...]}`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if let Some(a) = &self.arch {
            m.insert("arch".into(), json!(a));
        }
        if let Some(r) = self.ram_mib {
            m.insert("ram".into(), json!(show_mib(r)));
        }
        if let Some(c) = self.cpus {
            m.insert("cpus".into(), json!(c));
        }
        if !self.features.is_empty() {
            m.insert("features".into(), json!(self.features));
        }
        if !self.tags.is_empty() {
            m.insert("tags".into(), json!(self.tags));
        }
        Value::Object(m)
    }
}

/// An architecture's one name: `aarch64`, `ARMv8`, `arm64` → `arm64`; `armv7`, `armhf`,
/// `armv7l` → `armv7`; `x86_64`, `amd64`, `x86-64` → `x86_64`; `i386`, `i686`, `x86` →
/// `i386`; anything else lowercase as written.
pub fn normalise_arch(a: &str) -> String {
    let lower = a.trim().to_ascii_lowercase();
    match lower.as_str() {
        "aarch64" | "armv8" | "arm64" => "arm64".into(),
        "armv7" | "armhf" | "armv7l" | "armv7a" => "armv7".into(),
        "x86_64" | "amd64" | "x86-64" | "x64" => "x86_64".into(),
        "i386" | "i686" | "x86" => "i386".into(),
        _ => lower,
    }
}

/// A size in MiB: a number (MiB), or text with a unit (`512M`, `1G`, `1GB`, `2048MiB`,
/// `1.5G`; K, M, G, T, powers of 1024).
pub fn size_mib(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{n} is not a positive size in MiB")),
        Value::String(s) => parse_size(s),
        other => Err(format!("{other} is not a size such as 2G or 512M")),
    }
}

/// [`size_mib`] of text.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let bad = || format!("{s:?} is not a size such as 2G, 512M or 2048 (MiB)");
    let value: f64 = number.parse().map_err(|_| bad())?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let factor = match unit {
        "" | "m" => 1.0,
        "k" => 1.0 / 1024.0,
        "g" => 1024.0,
        "t" => 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let mib = (value * factor).round();
    if !(1.0..1e15).contains(&mib) {
        return Err(bad());
    }
    Ok(mib as u64)
}

/// MiB as the API shows a size: `2G` when whole GiB, else `512M`.
pub fn show_mib(mib: u64) -> String {
    if mib.is_multiple_of(1024) {
        format!("{}G", mib / 1024)
    } else {
        format!("{mib}M")
    }
}

fn count(v: &Value) -> Result<u32, String> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.filter(|n| *n > 0)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("{v} is not a positive number of CPUs"))
}

/// A list of names, or one text of comma-separated names.
fn words(v: &Value) -> Result<Vec<String>, String> {
    let items: Vec<String> = match v {
        Value::String(s) => s.split(',').map(str::to_string).collect(),
        Value::Array(a) => a
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{i} is not a name"))
            })
            .collect::<Result<_, _>>()?,
        other => return Err(format!("{other} is not a list of names")),
    };
    Ok(items
        .into_iter()
        .map(|i| i.trim().to_string())
        .filter(|i| !i.is_empty())
        .collect())
}

/// A device's specification as its dictionary states it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceProperties {
    pub hostname: String,
    /// Normalised.
    pub arch: Option<String>,
    pub ram_mib: Option<u64>,
    pub cpus: Option<u32>,
    /// Lowercase.
    pub features: Vec<String>,
    pub tags: Vec<String>,
}

impl DeviceProperties {
    /// The properties of device `hostname` from its dictionary's variables (`arch`, `ram`
    /// else `memory`, `cpus`, `features`) and its LAVA tags; a value that does not read is
    /// taken as absent.
    pub fn from_variables(
        hostname: &str,
        vars: &BTreeMap<String, Node>,
        tags: &[String],
    ) -> DeviceProperties {
        let text = |n: &Node| n.scalar_text().map(|s| s.trim().to_string());
        let json_of = |n: &Node| match &n.value {
            YamlValue::Int(i) => Some(json!(i)),
            _ => text(n).map(Value::String),
        };
        let ram = vars
            .get("ram")
            .or_else(|| vars.get("memory"))
            .and_then(json_of)
            .and_then(|v| size_mib(&v).ok());
        let features = match vars.get("features").map(|n| &n.value) {
            Some(YamlValue::Seq(items)) => items.iter().filter_map(text).collect(),
            Some(_) => vars
                .get("features")
                .and_then(text)
                .map(|s| s.split(',').map(|f| f.trim().to_string()).collect())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        DeviceProperties {
            hostname: hostname.to_string(),
            arch: vars
                .get("arch")
                .and_then(text)
                .filter(|a| !a.is_empty())
                .map(|a| normalise_arch(&a)),
            ram_mib: ram,
            cpus: vars
                .get("cpus")
                .and_then(json_of)
                .and_then(|v| count(&v).ok()),
            features: features
                .into_iter()
                .filter(|f: &String| !f.is_empty())
                .map(|f| f.to_lowercase())
                .collect(),
            tags: tags.to_vec(),
        }
    }
}

/// One requirement, for [`meets_one`] and the messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Arch,
    Ram,
    Cpus,
    Features,
    Tags,
}

impl Key {
    fn name(self) -> &'static str {
        match self {
            Key::Arch => "arch",
            Key::Ram => "ram",
            Key::Cpus => "cpus",
            Key::Features => "features",
            Key::Tags => "tags",
        }
    }
}

fn keys_of(r: &Requirements) -> Vec<Key> {
    let mut k = Vec::new();
    if r.arch.is_some() {
        k.push(Key::Arch);
    }
    if r.ram_mib.is_some() {
        k.push(Key::Ram);
    }
    if r.cpus.is_some() {
        k.push(Key::Cpus);
    }
    if !r.features.is_empty() {
        k.push(Key::Features);
    }
    if !r.tags.is_empty() {
        k.push(Key::Tags);
    }
    k
}

fn meets_one(r: &Requirements, d: &DeviceProperties, k: Key) -> bool {
    match k {
        Key::Arch => r.arch.is_none() || r.arch == d.arch,
        Key::Ram => r
            .ram_mib
            .is_none_or(|want| d.ram_mib.is_some_and(|h| h >= want)),
        Key::Cpus => r.cpus.is_none_or(|want| d.cpus.is_some_and(|h| h >= want)),
        Key::Features => r.features.iter().all(|f| d.features.contains(f)),
        Key::Tags => r.tags.iter().all(|t| d.tags.contains(t)),
    }
}

/// Whether device `d` meets every requirement of `r`.
pub fn meets(r: &Requirements, d: &DeviceProperties) -> bool {
    keys_of(r).into_iter().all(|k| meets_one(r, d, k))
}

/// Requirements no device of the lab meets: what to tell the client (400).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmet {
    /// `no device meets ram >= 4G: the largest is 2G (qemu-02)`.
    pub message: String,
    /// The requirement keys unmet (`["ram"]`).
    pub unmet: Vec<&'static str>,
}

/// The hostnames (sorted) of `devices` that meet `r`, or what is unmet when none does.
/// `devices` are the lab's candidates: every non-Retired device (of the requested type or
/// the requested device), whatever its state.
pub fn eligible(r: &Requirements, devices: &[DeviceProperties]) -> Result<Vec<String>, Unmet> {
    let mut hosts: Vec<String> = devices
        .iter()
        .filter(|d| meets(r, d))
        .map(|d| d.hostname.clone())
        .collect();
    if !hosts.is_empty() {
        hosts.sort();
        hosts.dedup();
        return Ok(hosts);
    }
    if devices.is_empty() {
        return Err(Unmet {
            message: "no device meets the requirements: the lab has no device to consider".into(),
            unmet: keys_of(r).into_iter().map(Key::name).collect(),
        });
    }
    let alone: Vec<Key> = keys_of(r)
        .into_iter()
        .filter(|&k| !devices.iter().any(|d| meets_one(r, d, k)))
        .collect();
    if let Some(&k) = alone.first() {
        let mut message = unmet_message(r, devices, k);
        for &other in &alone[1..] {
            message.push_str("; ");
            message.push_str(&unmet_message(r, devices, other));
        }
        return Err(Unmet {
            message,
            unmet: alone.into_iter().map(Key::name).collect(),
        });
    }
    // each is met by some device, but no device meets them all
    let all = keys_of(r);
    let described: Vec<String> = all.iter().map(|&k| describe(r, k)).collect();
    Err(Unmet {
        message: format!(
            "no device meets {} together (each is met by some device, none meets all)",
            described.join(" and ")
        ),
        unmet: all.into_iter().map(Key::name).collect(),
    })
}

/// `ram >= 4G`, `arch = arm64`, ...
fn describe(r: &Requirements, k: Key) -> String {
    match k {
        Key::Arch => format!("arch = {}", r.arch.as_deref().unwrap_or("")),
        Key::Ram => format!("ram >= {}", show_mib(r.ram_mib.unwrap_or(0))),
        Key::Cpus => format!("cpus >= {}", r.cpus.unwrap_or(0)),
        Key::Features => format!("features {}", r.features.join(", ")),
        Key::Tags => format!("tags {}", r.tags.join(", ")),
    }
}

/// Why no device meets requirement `k`, with what the lab has.
fn unmet_message(r: &Requirements, devices: &[DeviceProperties], k: Key) -> String {
    let head = format!("no device meets {}", describe(r, k));
    let best = |f: &dyn Fn(&DeviceProperties) -> Option<u64>| {
        devices
            .iter()
            .filter_map(|d| f(d).map(|v| (v, d.hostname.as_str())))
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(a.1)))
    };
    match k {
        Key::Ram => match best(&|d| d.ram_mib) {
            Some((mib, host)) => format!("{head}: the largest is {} ({host})", show_mib(mib)),
            None => format!("{head}: no device states its ram (or memory)"),
        },
        Key::Cpus => match best(&|d| d.cpus.map(u64::from)) {
            Some((n, host)) => format!("{head}: the most is {n} ({host})"),
            None => format!("{head}: no device states its cpus"),
        },
        Key::Arch => {
            let mut by_arch: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for d in devices {
                if let Some(a) = &d.arch {
                    by_arch.entry(a.as_str()).or_default().push(&d.hostname);
                }
            }
            if by_arch.is_empty() {
                return format!("{head}: no device states its arch");
            }
            let have: Vec<String> = by_arch
                .iter()
                .map(|(a, hosts)| format!("{a} ({})", first_few(hosts)))
                .collect();
            format!("{head}: the lab has {}", have.join(", "))
        }
        Key::Features => {
            let missing: Vec<&str> = r
                .features
                .iter()
                .filter(|f| !devices.iter().any(|d| d.features.contains(f)))
                .map(String::as_str)
                .collect();
            if missing.is_empty() {
                format!("{head}: no device has them all")
            } else {
                format!("{head}: no device has {}", missing.join(", "))
            }
        }
        Key::Tags => {
            let missing: Vec<&str> = r
                .tags
                .iter()
                .filter(|t| !devices.iter().any(|d| d.tags.contains(t)))
                .map(String::as_str)
                .collect();
            if missing.is_empty() {
                format!("{head}: no device has them all")
            } else {
                format!("{head}: no device has tag {}", missing.join(", "))
            }
        }
    }
}

fn first_few(hosts: &[&str]) -> String {
    if hosts.len() <= 3 {
        hosts.join(", ")
    } else {
        format!("{}, and {} more", hosts[..3].join(", "), hosts.len() - 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(host: &str, arch: &str, ram: Option<u64>, cpus: Option<u32>) -> DeviceProperties {
        DeviceProperties {
            hostname: host.into(),
            arch: Some(normalise_arch(arch)),
            ram_mib: ram,
            cpus,
            features: Vec::new(),
            tags: Vec::new(),
        }
    }

    fn vars(text: &str) -> BTreeMap<String, Node> {
        basalt_model::device::render::dictionary_variables("d", text).unwrap()
    }

    #[test]
    fn arches_are_normalised_on_both_sides() {
        for (a, want) in [
            ("aarch64", "arm64"),
            ("ARMv8", "arm64"),
            ("arm64", "arm64"),
            ("armhf", "armv7"),
            ("ARMv7", "armv7"),
            ("armv7l", "armv7"),
            ("amd64", "x86_64"),
            ("x86-64", "x86_64"),
            ("i686", "i386"),
            ("x86", "i386"),
            ("RISCV64", "riscv64"),
        ] {
            assert_eq!(normalise_arch(a), want, "{a}");
        }
        let r = Requirements::parse(&json!({"arch": "aarch64"})).unwrap();
        let d = DeviceProperties::from_variables(
            "q",
            &vars("{% extends 'qemu.jinja2' %}\n{% set arch = 'arm64' %}\n"),
            &[],
        );
        assert!(meets(&r, &d));
    }

    #[test]
    fn sizes_read_in_mib() {
        for (s, want) in [
            ("512M", 512),
            ("1G", 1024),
            ("1GB", 1024),
            ("2048MiB", 2048),
            ("1.5G", 1536),
            ("2048", 2048),
            ("4g", 4096),
        ] {
            assert_eq!(parse_size(s), Ok(want), "{s}");
        }
        assert_eq!(size_mib(&json!(256)), Ok(256));
        for bad in ["", "lots", "1X", "-1G", "0", "G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(show_mib(2048), "2G");
        assert_eq!(show_mib(512), "512M");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = Requirements::parse(&json!({"arch": "arm64", "gpu": 1})).unwrap_err();
        assert_eq!(e, RequirementError::UnknownKey("gpu".into()));
        assert!(e.to_string().contains("'gpu'"), "{e}");
        let e = Requirements::parse(&json!({"ram": "lots"})).unwrap_err();
        assert!(e.to_string().starts_with("requirement 'ram'"), "{e}");
        let e = Requirements::parse(&json!({"cpus": -2})).unwrap_err();
        assert!(e.to_string().starts_with("requirement 'cpus'"), "{e}");
        assert_eq!(
            Requirements::parse(&json!(["arch"])),
            Err(RequirementError::NotAnObject)
        );
    }

    #[test]
    fn requirements_read_back_from_their_json() {
        let r = Requirements::parse(&json!({
            "arch": "amd64", "ram": "1024", "cpus": "2", "subarch": "NEON",
            "features": ["crypto"], "tags": "usb, fast"
        }))
        .unwrap();
        assert_eq!(r.arch.as_deref(), Some("x86_64"));
        assert_eq!(r.ram_mib, Some(1024));
        assert_eq!(r.cpus, Some(2));
        // keys in name order: features before subarch
        assert_eq!(r.features, ["crypto", "neon"]);
        assert_eq!(r.tags, ["usb", "fast"]);
        assert_eq!(r.to_json()["ram"], "1G");
        assert_eq!(Requirements::parse(&r.to_json()).unwrap(), r);
        assert!(r.beyond_tags());
        let tags_only = Requirements::parse(&json!({"tags": ["a"]})).unwrap();
        assert!(!tags_only.beyond_tags() && !tags_only.is_empty());
    }

    #[test]
    fn dictionaries_give_properties_with_qemu_fallbacks() {
        let d = DeviceProperties::from_variables(
            "qemu-01",
            &vars(
                "{% extends 'qemu.jinja2' %}\n{% set arch = 'amd64' %}\n{% set memory = 2048 %}\n\
                 {% set cpus = 4 %}\n{% set features = ['NEON', 'crypto'] %}\n",
            ),
            &["usb".to_string()],
        );
        assert_eq!(d.arch.as_deref(), Some("x86_64"));
        assert_eq!(d.ram_mib, Some(2048));
        assert_eq!(d.cpus, Some(4));
        assert_eq!(d.features, ["neon", "crypto"]);
        // `ram` wins over `memory`; text sizes read
        let d = DeviceProperties::from_variables(
            "b",
            &vars("{% extends 'x.jinja2' %}\n{% set ram = '1G' %}\n{% set memory = 4096 %}\n"),
            &[],
        );
        assert_eq!(d.ram_mib, Some(1024));
        assert_eq!((d.arch, d.cpus), (None, None));
    }

    #[test]
    fn minimums_features_and_tags_are_matched() {
        let mut a = dev("a", "arm64", Some(2048), Some(4));
        a.features = vec!["neon".into()];
        a.tags = vec!["usb".into()];
        let b = dev("b", "x86_64", Some(512), Some(1));
        let lab = [a, b];
        let ok = |j: Value| eligible(&Requirements::parse(&j).unwrap(), &lab);
        assert_eq!(ok(json!({"ram": "1G"})).unwrap(), ["a"]);
        assert_eq!(ok(json!({"ram": "512M"})).unwrap(), ["a", "b"]);
        assert_eq!(ok(json!({"cpus": 4, "subarch": "neon"})).unwrap(), ["a"]);
        assert_eq!(ok(json!({"tags": ["usb"]})).unwrap(), ["a"]);
        assert_eq!(ok(json!({})).unwrap(), ["a", "b"]);
    }

    #[test]
    fn unmet_requirements_are_named_with_what_the_lab_has() {
        let lab = [
            dev("qemu-01", "x86_64", Some(1024), Some(2)),
            dev("qemu-02", "x86_64", Some(2048), Some(4)),
        ];
        let e = |j: Value| eligible(&Requirements::parse(&j).unwrap(), &lab).unwrap_err();
        let u = e(json!({"ram": "4G"}));
        assert_eq!(
            u.message,
            "no device meets ram >= 4G: the largest is 2G (qemu-02)"
        );
        assert_eq!(u.unmet, ["ram"]);
        let u = e(json!({"arch": "arm64", "cpus": 8}));
        assert_eq!(u.unmet, ["arch", "cpus"]);
        assert!(
            u.message
                .starts_with("no device meets arch = arm64: the lab has x86_64 (qemu-01, qemu-02)"),
            "{}",
            u.message
        );
        assert!(u.message.contains("cpus >= 8: the most is 4 (qemu-02)"));
        let u = e(json!({"features": ["sve"], "tags": ["gpu"]}));
        assert_eq!(u.unmet, ["features", "tags"]);
        assert!(u.message.contains("no device has sve"), "{}", u.message);
        assert!(u.message.contains("no device has tag gpu"), "{}", u.message);
        // each met alone, never together
        let lab2 = [
            dev("x", "x86_64", Some(4096), Some(1)),
            dev("y", "x86_64", Some(512), Some(8)),
        ];
        let u = eligible(
            &Requirements::parse(&json!({"ram": "2G", "cpus": 4})).unwrap(),
            &lab2,
        )
        .unwrap_err();
        assert!(u.message.contains("together"), "{}", u.message);
        assert_eq!(u.unmet, ["ram", "cpus"]);
    }
}
