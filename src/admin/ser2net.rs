//! `basalt ser2net generate`: the ser2net 4 configuration (YAML) that serves a worker's serial
//! consoles on telnet ports, from the devices' dictionaries, and the `connection_command` line
//! each dictionary needs to reach its console through it.
//!
//! A dictionary names its console with basalt's own variables, which LAVA's templates ignore:
//! `ser2net_device` (required), `ser2net_port` (else one is given from the base port),
//! `ser2net_serial` (parity, data and stop bits, `n81`) and LAVA's `baud_rate`. They are read
//! by Jinja2 itself ([`dictionary_variables`]), never by matching the text.
//!
//! The file is written as text, not serialised by a YAML library: ser2net's format repeats the
//! top-level key `connection:` with an anchor per connection (its name), the accepter and
//! connector are gensio strings of ser2net's own, backslash escapes in its strings are
//! ser2net's, and the file carries comments saying where each connection came from. So that
//! none of it needs quoting, every value is first checked against a small character set.

use crate::client::{Client, ClientError};
use crate::yaml::{Node, Value};
use basalt_model::device::render::{dictionary_variables, RenderError};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// The first telnet port given to a device whose dictionary sets no `ser2net_port`.
pub const DEFAULT_BASE_PORT: u16 = 7001;
/// LAVA's default `baud_rate`.
pub const DEFAULT_BAUD: u32 = 115_200;
/// No parity, 8 data bits, 1 stop bit.
pub const DEFAULT_SERIAL: &str = "n81";

/// The speeds a Linux serial port takes without a custom divisor (termios `Bnnn`).
const BAUD_RATES: &[u32] = &[
    50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400, 57600,
    115_200, 230_400, 460_800, 500_000, 576_000, 921_600, 1_000_000, 1_152_000, 1_500_000,
    2_000_000, 2_500_000, 3_000_000, 3_500_000, 4_000_000,
];

/// Why no configuration could be made.
#[derive(Debug, thiserror::Error)]
pub enum Ser2netError {
    #[error("{path}: cannot read")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: cannot write")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}: Jinja2 does not read it")]
    Dictionary { origin: String, source: RenderError },
    /// A dictionary variable with a value ser2net cannot use.
    #[error("{origin}: {name}: {message}")]
    Variable {
        origin: String,
        name: &'static str,
        message: String,
    },
    #[error("{origin}: the hostname {hostname:?} cannot name a ser2net connection (letters, digits, '.', '_' and '-' only)")]
    Hostname { origin: String, hostname: String },
    #[error("{first} and {second} are both named {hostname}")]
    SameHostname {
        hostname: String,
        first: String,
        second: String,
    },
    #[error("port {port} is given to both {first} and {second}")]
    SamePort {
        port: u16,
        first: String,
        second: String,
    },
    #[error("{first} and {second} both have the serial device {device}")]
    SameDevice {
        device: String,
        first: String,
        second: String,
    },
    #[error("{hostname}: no free port left between --base-port {base} and 65535")]
    NoPortLeft { hostname: String, base: u16 },
    #[error("none of the {devices} devices sets ser2net_device: nothing for ser2net to serve")]
    NothingToServe { devices: usize },
    #[error("--trace {dir}: {message}")]
    TraceDir { dir: String, message: String },
    #[error("worker {worker}: the master does not give its devices")]
    Master { worker: String, source: ClientError },
    #[error("{url}: {message}")]
    Answer { url: String, message: String },
    /// The dictionary's `connection_command` could not be rewritten with certainty.
    #[error("{path}: connection_command not rewritten: {message}; set it by hand to: {line}")]
    Update {
        path: String,
        message: String,
        line: String,
    },
    /// Several of the above, one per line.
    #[error("{}", .0.iter().map(|e| chain(e)).collect::<Vec<_>>().join("\n"))]
    Several(Vec<Ser2netError>),
}

/// An error and its sources, `: `-separated (what `{:#}` of anyhow shows).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// A device dictionary to read: its device's hostname, where it came from and its text.
#[derive(Clone, Debug)]
pub struct Dictionary {
    pub hostname: String,
    /// For messages and the configuration's comments: a file name or the master's URL.
    pub origin: String,
    /// The local file, when it is one (`--update-dictionaries` rewrites it).
    pub path: Option<PathBuf>,
    pub text: String,
}

impl Dictionary {
    /// A dictionary file; the hostname is the file's stem (`bbb-01.jinja2` is `bbb-01`).
    pub fn from_file(path: &Path) -> Result<Dictionary, Ser2netError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Ser2netError::Read {
            path: origin.clone(),
            source,
        })?;
        let hostname = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Dictionary {
            hostname,
            origin,
            path: Some(path.to_path_buf()),
            text,
        })
    }
}

/// The dictionaries of the devices of `worker` on the master at `url` (LAVA's REST API:
/// `devices/`, filtered on `worker_host`, then `devices/HOSTNAME/dictionary/`), and the
/// devices that have none.
pub fn dictionaries_of_worker(
    client: &Client,
    url: &str,
    worker: &str,
) -> Result<(Vec<Dictionary>, Vec<Skipped>), Ser2netError> {
    let master = |source| Ser2netError::Master {
        worker: worker.to_string(),
        source,
    };
    let devices = client.list("devices/").map_err(master)?;
    let mut dicts = Vec::new();
    let mut skipped = Vec::new();
    for d in devices {
        if d.get("worker_host").and_then(|w| w.as_str()) != Some(worker) {
            continue;
        }
        let Some(hostname) = d.get("hostname").and_then(|h| h.as_str()) else {
            continue;
        };
        let origin = format!(
            "{}/api/v0.2/devices/{hostname}/dictionary/",
            url.trim_end_matches('/')
        );
        if !valid_hostname(hostname) {
            return Err(Ser2netError::Hostname {
                origin,
                hostname: hostname.to_string(),
            });
        }
        let answer = match client.get(&format!("devices/{hostname}/dictionary/")) {
            Ok(a) => a,
            Err(ClientError::Status { status: 404, .. }) => {
                skipped.push(Skipped {
                    hostname: hostname.to_string(),
                    why: "it has no device dictionary on the master".into(),
                });
                continue;
            }
            Err(e) => return Err(master(e)),
        };
        let text = answer
            .get("dictionary")
            .and_then(|t| t.as_str())
            .ok_or_else(|| Ser2netError::Answer {
                url: origin.clone(),
                message: "no `dictionary` string in the answer".into(),
            })?;
        dicts.push(Dictionary {
            hostname: hostname.to_string(),
            origin,
            path: None,
            text: text.to_string(),
        });
    }
    Ok((dicts, skipped))
}

/// Where ser2net listens and how the worker reaches it.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The accepters' address (127.0.0.1: only this host reaches the consoles).
    pub address: IpAddr,
    /// The address in `connection_command` (default: `address`, 127.0.0.1 / ::1 for any).
    pub connect_address: Option<IpAddr>,
    /// The first port given to devices without `ser2net_port`.
    pub base_port: u16,
    /// Trace each console (what the board printed and what was typed) into DIR/HOSTNAME.trace.
    pub trace: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            connect_address: None,
            base_port: DEFAULT_BASE_PORT,
            trace: None,
        }
    }
}

impl Settings {
    /// The address the worker connects to.
    pub fn connect_to(&self) -> IpAddr {
        match self.connect_address.unwrap_or(self.address) {
            IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            a => a,
        }
    }
}

/// One console ser2net serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Console {
    pub hostname: String,
    pub origin: String,
    /// The serial device as the dictionary names it.
    pub device: String,
    pub port: u16,
    pub baud: u32,
    /// Parity, data bits, stop bits: `n81`.
    pub serial: String,
    /// A USB CDC-ACM device (`ttyACM*`, itself or where its symlink points): ser2net must
    /// not send it a break (`nobreak`).
    pub cdc_acm: bool,
}

/// A device left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub hostname: String,
    pub why: String,
}

/// The consoles of a set of dictionaries, ports given, checked against each other.
#[derive(Clone, Debug)]
pub struct Plan {
    /// In hostname order.
    pub consoles: Vec<Console>,
    /// Devices without `ser2net_device`, in hostname order.
    pub skipped: Vec<Skipped>,
}

impl Plan {
    /// Reads every dictionary, gives ports from `base_port` (in hostname order, skipping the
    /// ports dictionaries take) to those without `ser2net_port`, and checks that no two
    /// devices share a hostname, a port or a serial device. Every problem is reported.
    pub fn new(dicts: &[Dictionary], base_port: u16) -> Result<Plan, Ser2netError> {
        let mut errors = Vec::new();
        let mut sorted: Vec<&Dictionary> = dicts.iter().collect();
        sorted.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        let mut wanted = Vec::new();
        let mut skipped = Vec::new();
        let mut names: BTreeMap<&str, &str> = BTreeMap::new();
        for d in sorted {
            if let Some(first) = names.insert(&d.hostname, &d.origin) {
                errors.push(Ser2netError::SameHostname {
                    hostname: d.hostname.clone(),
                    first: first.to_string(),
                    second: d.origin.clone(),
                });
                continue;
            }
            match read_console(d) {
                Ok(Some(c)) => wanted.push(c),
                Ok(None) => skipped.push(Skipped {
                    hostname: d.hostname.clone(),
                    why: format!("{} sets no ser2net_device", d.origin),
                }),
                Err(e) => errors.push(e),
            }
        }
        let mut taken: BTreeMap<u16, String> = BTreeMap::new();
        let mut devices: BTreeMap<String, String> = BTreeMap::new();
        for (c, port) in &wanted {
            if let Some(port) = port {
                if let Some(first) = taken.insert(*port, c.hostname.clone()) {
                    errors.push(Ser2netError::SamePort {
                        port: *port,
                        first,
                        second: c.hostname.clone(),
                    });
                }
            }
            if let Some(first) = devices.insert(same_device_key(&c.device), c.hostname.clone()) {
                errors.push(Ser2netError::SameDevice {
                    device: c.device.clone(),
                    first,
                    second: c.hostname.clone(),
                });
            }
        }
        // the next port to give; `None` once 65535 is given
        let mut next = Some(base_port);
        let mut consoles = Vec::new();
        for (mut c, port) in wanted {
            c.port = match port {
                Some(p) => p,
                None => {
                    let free = next.and_then(|n| (n..=u16::MAX).find(|p| !taken.contains_key(p)));
                    let Some(p) = free else {
                        errors.push(Ser2netError::NoPortLeft {
                            hostname: c.hostname.clone(),
                            base: base_port,
                        });
                        continue;
                    };
                    next = p.checked_add(1);
                    p
                }
            };
            consoles.push(c);
        }
        match errors.len() {
            0 => Ok(Plan { consoles, skipped }),
            1 => Err(errors.remove(0)),
            _ => Err(Ser2netError::Several(errors)),
        }
    }

    /// The ser2net 4 configuration.
    pub fn yaml(&self, s: &Settings) -> Result<String, Ser2netError> {
        let trace = s.trace.as_deref().map(check_trace_dir).transpose()?;
        let mut y = String::from("%YAML 1.1\n---\n");
        y.push_str(
            "# ser2net 4 configuration generated by `basalt ser2net generate` from the devices'\n\
             # dictionaries: generate it again rather than edit it (ser2net/README.md). One\n\
             # connection per device, named for its hostname.\n",
        );
        for k in &self.skipped {
            let _ = writeln!(y, "# skipped {}: {}", k.hostname, comment(&k.why));
        }
        for c in &self.consoles {
            let _ = write!(
                y,
                "\n# {}, from {}\n\
                 connection: &{}\n  \
                 accepter: telnet(rfc2217),tcp,{},{}\n  \
                 connector: serialdev,{},{}{},local{}\n  \
                 timeout: 0\n  \
                 options:\n    \
                 kickolduser: true\n    \
                 telnet-brk-on-sync: true\n",
                c.hostname,
                comment(&c.origin),
                c.hostname,
                s.address,
                c.port,
                c.device,
                c.baud,
                c.serial,
                if c.cdc_acm { ",nobreak" } else { "" },
            );
            if let Some(dir) = &trace {
                let _ = write!(
                    y,
                    "    trace-both: '{}/\\N.trace'\n    trace-timestamp: true\n",
                    dir.trim_end_matches('/')
                );
            }
        }
        Ok(y)
    }

    /// The `connection_command` of a console: `telnet ADDRESS PORT`.
    pub fn connection_command(&self, c: &Console, s: &Settings) -> String {
        format!("telnet {} {}", s.connect_to(), c.port)
    }

    /// `HOSTNAME: {% set connection_command = '...' %}`, one line per console.
    pub fn connection_command_lines(&self, s: &Settings) -> String {
        self.consoles
            .iter()
            .map(|c| {
                format!(
                    "{}: {}\n",
                    c.hostname,
                    set_line(&self.connection_command(c, s))
                )
            })
            .collect()
    }
}

/// What `basalt ser2net generate` makes of a worker's dictionaries.
#[derive(Clone, Debug)]
pub struct Generated {
    pub plan: Plan,
    /// The ser2net configuration.
    pub yaml: String,
    /// `HOSTNAME: {% set connection_command = ... %}` lines.
    pub commands: String,
    /// What the admin should know (a listening address open to others, a missing trace
    /// directory).
    pub warnings: Vec<String>,
}

/// The configuration of the consoles of `dicts`; `skipped` are devices already left out
/// (no dictionary on the master). No console at all is an error: there is nothing to serve.
pub fn generate(
    dicts: &[Dictionary],
    skipped: Vec<Skipped>,
    s: &Settings,
) -> Result<Generated, Ser2netError> {
    let devices = dicts.len() + skipped.len();
    let mut plan = Plan::new(dicts, s.base_port)?;
    plan.skipped.extend(skipped);
    plan.skipped.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    if plan.consoles.is_empty() {
        return Err(Ser2netError::NothingToServe { devices });
    }
    let yaml = plan.yaml(s)?;
    let commands = plan.connection_command_lines(s);
    let mut warnings = Vec::new();
    if !s.address.is_loopback() {
        warnings.push(format!(
            "ser2net will listen on {}: whoever reaches those ports types on the boards' consoles",
            s.address
        ));
    }
    if let Some(dir) = &s.trace {
        if !dir.is_dir() {
            warnings.push(format!(
                "--trace {}: no such directory here; create it where ser2net runs, or it traces nothing",
                dir.display()
            ));
        }
    }
    Ok(Generated {
        plan,
        yaml,
        commands,
        warnings,
    })
}

/// Sets the `connection_command` of every local dictionary file of `plan`
/// ([`with_connection_command`]); all are checked before any is written, each write is
/// atomic. Returns the files that changed.
pub fn update_dictionaries(
    plan: &Plan,
    dicts: &[Dictionary],
    s: &Settings,
) -> Result<Vec<PathBuf>, Ser2netError> {
    let mut changes = Vec::new();
    let mut errors = Vec::new();
    for c in &plan.consoles {
        let Some(d) = dicts.iter().find(|d| d.hostname == c.hostname) else {
            continue;
        };
        let Some(path) = &d.path else {
            continue;
        };
        let command = plan.connection_command(c, s);
        match with_connection_command(&d.hostname, &d.origin, &d.text, &command) {
            Ok(new) if new != d.text => changes.push((path, new)),
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        0 => {}
        1 => return Err(errors.remove(0)),
        _ => return Err(Ser2netError::Several(errors)),
    }
    let mut changed = Vec::new();
    for (path, text) in changes {
        write_atomically(path, &text)?;
        changed.push(path.clone());
    }
    Ok(changed)
}

/// `{% set connection_command = 'COMMAND' %}` (the command holds no quote: addresses and
/// ports only).
pub fn set_line(command: &str) -> String {
    format!("{{% set connection_command = '{command}' %}}")
}

/// A dictionary's console, and its `ser2net_port` if it sets one; `None` without
/// `ser2net_device`.
fn read_console(d: &Dictionary) -> Result<Option<(Console, Option<u16>)>, Ser2netError> {
    if !valid_hostname(&d.hostname) {
        return Err(Ser2netError::Hostname {
            origin: d.origin.clone(),
            hostname: d.hostname.clone(),
        });
    }
    let vars =
        dictionary_variables(&d.hostname, &d.text).map_err(|source| Ser2netError::Dictionary {
            origin: d.origin.clone(),
            source,
        })?;
    let bad = |name: &'static str, message: String| Ser2netError::Variable {
        origin: d.origin.clone(),
        name,
        message,
    };
    let device = match vars.get("ser2net_device") {
        None => return Ok(None),
        Some(n) if n.is_null() => return Ok(None),
        Some(n) => n.as_str().ok_or_else(|| {
            bad(
                "ser2net_device",
                format!("a path is a string, not {}", n.kind()),
            )
        })?,
    };
    if !device.starts_with('/') {
        return Err(bad(
            "ser2net_device",
            format!("{device:?} is not an absolute path"),
        ));
    }
    if !safe_path(device) {
        return Err(bad(
            "ser2net_device",
            format!(
                "{device:?}: only letters, digits and '/._+:@=-' can go into ser2net's connector"
            ),
        ));
    }
    let port = match vars.get("ser2net_port") {
        None => None,
        Some(n) => match number(n) {
            Some(p) if (1..=65535).contains(&p) => Some(p as u16),
            _ => {
                return Err(bad(
                    "ser2net_port",
                    format!("{} is not a port (1 to 65535)", shown(n)),
                ))
            }
        },
    };
    let baud = match vars.get("baud_rate") {
        None => DEFAULT_BAUD,
        Some(n) => match number(n) {
            Some(b) if BAUD_RATES.iter().any(|r| i64::from(*r) == b) => b as u32,
            _ => {
                return Err(bad(
                    "baud_rate",
                    format!(
                        "{} is not a serial port speed ({})",
                        shown(n),
                        BAUD_RATES
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))
            }
        },
    };
    let serial = match vars.get("ser2net_serial") {
        None => DEFAULT_SERIAL.to_string(),
        Some(n) => n
            .as_str()
            .map(str::to_ascii_lowercase)
            .filter(|s| valid_serial(s))
            .ok_or_else(|| {
                bad(
                    "ser2net_serial",
                    format!(
                        "{} is not parity (n, o, e, m, s), data bits (5 to 8) and stop bits (1, 2), like 'n81'",
                        shown(n)
                    ),
                )
            })?,
    };
    Ok(Some((
        Console {
            hostname: d.hostname.clone(),
            origin: d.origin.clone(),
            device: device.to_string(),
            port: 0,
            baud,
            serial,
            cdc_acm: is_cdc_acm(Path::new(device)),
        },
        port,
    )))
}

/// An integer, or a string of digits (`'7001'`).
fn number(n: &Node) -> Option<i64> {
    match &n.value {
        Value::Int(i) => Some(*i),
        Value::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        _ => None,
    }
}

/// A value as a message shows it.
fn shown(n: &Node) -> String {
    match &n.value {
        Value::Str(s) => format!("{s:?}"),
        _ => n.scalar_text().unwrap_or_else(|| format!("a {}", n.kind())),
    }
}

/// Parity, data bits and stop bits: `n81`, `e71`.
fn valid_serial(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 3
        && b"noems".contains(&b[0])
        && (b'5'..=b'8').contains(&b[1])
        && (b'1'..=b'2').contains(&b[2])
}

/// A hostname that can be a YAML anchor, a ser2net connection name and a trace file name.
fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && !h.starts_with(['.', '-'])
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A path that goes into ser2net's YAML and gensio strings as it is: no comma or space
/// (they split gensio's arguments), no quote, `#`, `*` or `\` (YAML, ser2net's `*(alias)` and
/// its escapes).
fn safe_path(p: &str) -> bool {
    p.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._+:@=-".contains(&b))
}

/// Whether a serial device is a USB CDC-ACM port: its name, or the name its symlinks lead to
/// (followed even when the target does not exist here), is `ttyACM*`.
fn is_cdc_acm(device: &Path) -> bool {
    let acm = |p: &Path| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("ttyACM"))
    };
    let mut p = device.to_path_buf();
    for _ in 0..32 {
        if acm(&p) {
            return true;
        }
        match std::fs::read_link(&p) {
            Ok(target) => {
                p = match p.parent() {
                    Some(dir) => dir.join(target),
                    None => target,
                };
            }
            Err(_) => return false,
        }
    }
    false
}

/// Two dictionaries name the same device when their paths lead to the same file.
fn same_device_key(device: &str) -> String {
    std::fs::canonicalize(device)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| device.to_string())
}

/// The trace directory as it goes into the file.
fn check_trace_dir(dir: &Path) -> Result<String, Ser2netError> {
    let text = dir.display().to_string();
    let bad = |message: &str| Ser2netError::TraceDir {
        dir: text.clone(),
        message: message.to_string(),
    };
    if !dir.is_absolute() {
        return Err(bad("not an absolute path (ser2net runs from /)"));
    }
    if !safe_path(&text) {
        return Err(bad(
            "only letters, digits and '/._+:@=-' can go into ser2net's file names",
        ));
    }
    Ok(text)
}

/// Text for a one-line comment: control characters shown as `?`.
fn comment(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `text` with its `connection_command` set to `command`: the one `{% set connection_command
/// = ... %}` line replaced, or a new one after the `{% extends %}` line (at the end without
/// one). Every other byte is kept. The result is checked by Jinja2: it must set
/// `connection_command` to `command` and every other variable as before, else nothing is
/// changed and the error says what to set by hand.
pub fn with_connection_command(
    hostname: &str,
    path: &str,
    text: &str,
    command: &str,
) -> Result<String, Ser2netError> {
    let line = set_line(command);
    let refuse = |message: String| Ser2netError::Update {
        path: path.to_string(),
        message,
        line: line.clone(),
    };
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    let statement = |l: &str| {
        let t = l.trim_start();
        let t = t.strip_prefix("{%")?;
        let t = t.strip_prefix(['-', '+']).unwrap_or(t).trim_start();
        Some(t.to_string())
    };
    let sets: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            statement(l).is_some_and(|t| {
                t.strip_prefix("set")
                    .filter(|r| r.starts_with(char::is_whitespace))
                    .map(str::trim_start)
                    .and_then(|r| r.strip_prefix("connection_command"))
                    .is_some_and(|r| r.trim_start().starts_with('='))
            })
        })
        .map(|(i, _)| i)
        .collect();
    let new_text = match sets.as_slice() {
        [i] => {
            let old = lines[*i];
            let ending = &old[old.trim_end_matches(['\r', '\n']).len()..];
            let indent = &old[..old.len() - old.trim_start().len()];
            let replaced = format!("{indent}{line}{ending}");
            lines[*i] = &replaced;
            lines.concat()
        }
        [] => {
            let at = lines
                .iter()
                .position(|l| statement(l).is_some_and(|t| t.starts_with("extends")));
            match at {
                Some(i) => {
                    let ending = if lines[i].ends_with("\r\n") {
                        "\r\n"
                    } else {
                        "\n"
                    };
                    let added = format!("{line}{ending}");
                    let mut out = lines[..=i].concat();
                    if !out.ends_with('\n') {
                        out.push_str(ending);
                    }
                    out.push_str(&added);
                    out.push_str(&lines[i + 1..].concat());
                    out
                }
                None => {
                    let mut out = text.to_string();
                    if !out.is_empty() && !out.ends_with('\n') {
                        out.push('\n');
                    }
                    out.push_str(&line);
                    out.push('\n');
                    out
                }
            }
        }
        more => {
            return Err(refuse(format!(
                "it sets connection_command on {} lines",
                more.len()
            )))
        }
    };
    let vars = |t: &str| {
        dictionary_variables(hostname, t).map_err(|e| refuse(format!("it does not read: {e}")))
    };
    let mut before = vars(text)?;
    let mut after = vars(&new_text)?;
    let set = after.remove("connection_command");
    before.remove("connection_command");
    if set.as_ref().and_then(Node::as_str) != Some(command) {
        return Err(refuse(
            "the new line would not set it (inside a comment or a block?)".into(),
        ));
    }
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for name in names {
        match (before.get(name), after.get(name)) {
            (Some(a), Some(b)) if a.data_eq(b) => {}
            _ => return Err(refuse(format!("the change would also change {name}"))),
        }
    }
    Ok(new_text)
}

/// Writes `text` to `path` atomically: a temporary file in the same directory, synced, then
/// renamed over it (an existing file's permissions are kept).
pub fn write_atomically(path: &Path, text: &str) -> Result<(), Ser2netError> {
    let err = |source| Ser2netError::Write {
        path: path.display().to_string(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".basalt-")
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(text.as_bytes()).map_err(err)?;
    match std::fs::metadata(path) {
        Ok(m) => tmp
            .as_file()
            .set_permissions(m.permissions())
            .map_err(err)?,
        Err(_) => {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(err)?
        }
    }
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict(hostname: &str, sets: &str) -> Dictionary {
        Dictionary {
            hostname: hostname.into(),
            origin: format!("devices/{hostname}.jinja2"),
            path: None,
            text: format!("{{% extends 'beaglebone-black.jinja2' %}}\n{sets}"),
        }
    }

    #[test]
    fn a_set_of_dictionaries_gives_this_exact_configuration() {
        let tmp = tempfile::tempdir().unwrap();
        // a stable udev name leading to a CDC-ACM port (which need not exist here)
        let acm = tmp.path().join("rack-acm02");
        std::os::unix::fs::symlink("ttyACM3", &acm).unwrap();
        let dicts = vec![
            dict(
                "imx8mp-01",
                "{% set ser2net_device = '/dev/serial/basalt/imx8mp-01' %}\n{% set baud_rate = 921600 %}\n",
            ),
            dict(
                "bbb-01",
                "{% set ser2net_device = '/dev/rack-usb01' %}\n{% set ser2net_port = 7002 %}\n{% set ser2net_serial = 'E71' %}\n",
            ),
            dict(
                "rpi-02",
                &format!("{{% set ser2net_device = '{}' %}}\n", acm.display()),
            ),
            dict("qemu-01", "{% set arch = 'amd64' %}\n"),
            dict("zcu-01", "{% set ser2net_device = '/dev/ttyACM0' %}\n"),
        ];
        let plan = Plan::new(&dicts, 7001).unwrap();
        let ports: Vec<(&str, u16)> = plan
            .consoles
            .iter()
            .map(|c| (c.hostname.as_str(), c.port))
            .collect();
        // 7002 is bbb-01's own: the others take 7001, 7003, 7004 in hostname order
        assert_eq!(
            ports,
            [
                ("bbb-01", 7002),
                ("imx8mp-01", 7001),
                ("rpi-02", 7003),
                ("zcu-01", 7004)
            ]
        );
        assert_eq!(
            plan.skipped,
            [Skipped {
                hostname: "qemu-01".into(),
                why: "devices/qemu-01.jinja2 sets no ser2net_device".into()
            }]
        );
        let settings = Settings {
            trace: Some(PathBuf::from("/var/log/ser2net/")),
            ..Settings::default()
        };
        let yaml = plan.yaml(&settings).unwrap();
        let acm = acm.display();
        let expected = format!(
            r"%YAML 1.1
---
# ser2net 4 configuration generated by `basalt ser2net generate` from the devices'
# dictionaries: generate it again rather than edit it (ser2net/README.md). One
# connection per device, named for its hostname.
# skipped qemu-01: devices/qemu-01.jinja2 sets no ser2net_device

# bbb-01, from devices/bbb-01.jinja2
connection: &bbb-01
  accepter: telnet(rfc2217),tcp,127.0.0.1,7002
  connector: serialdev,/dev/rack-usb01,115200e71,local
  timeout: 0
  options:
    kickolduser: true
    telnet-brk-on-sync: true
    trace-both: '/var/log/ser2net/\N.trace'
    trace-timestamp: true

# imx8mp-01, from devices/imx8mp-01.jinja2
connection: &imx8mp-01
  accepter: telnet(rfc2217),tcp,127.0.0.1,7001
  connector: serialdev,/dev/serial/basalt/imx8mp-01,921600n81,local
  timeout: 0
  options:
    kickolduser: true
    telnet-brk-on-sync: true
    trace-both: '/var/log/ser2net/\N.trace'
    trace-timestamp: true

# rpi-02, from devices/rpi-02.jinja2
connection: &rpi-02
  accepter: telnet(rfc2217),tcp,127.0.0.1,7003
  connector: serialdev,{acm},115200n81,local,nobreak
  timeout: 0
  options:
    kickolduser: true
    telnet-brk-on-sync: true
    trace-both: '/var/log/ser2net/\N.trace'
    trace-timestamp: true

# zcu-01, from devices/zcu-01.jinja2
connection: &zcu-01
  accepter: telnet(rfc2217),tcp,127.0.0.1,7004
  connector: serialdev,/dev/ttyACM0,115200n81,local,nobreak
  timeout: 0
  options:
    kickolduser: true
    telnet-brk-on-sync: true
    trace-both: '/var/log/ser2net/\N.trace'
    trace-timestamp: true
"
        );
        assert_eq!(yaml, expected);
        assert_eq!(
            plan.connection_command_lines(&settings),
            "bbb-01: {% set connection_command = 'telnet 127.0.0.1 7002' %}\n\
             imx8mp-01: {% set connection_command = 'telnet 127.0.0.1 7001' %}\n\
             rpi-02: {% set connection_command = 'telnet 127.0.0.1 7003' %}\n\
             zcu-01: {% set connection_command = 'telnet 127.0.0.1 7004' %}\n"
        );
    }

    #[test]
    fn addresses_for_ser2net_and_for_the_worker() {
        let plan = Plan::new(
            &[dict("b", "{% set ser2net_device = '/dev/ttyUSB0' %}\n")],
            7001,
        )
        .unwrap();
        let any = Settings {
            address: "0.0.0.0".parse().unwrap(),
            ..Settings::default()
        };
        let yaml = plan.yaml(&any).unwrap();
        assert!(
            yaml.contains("  accepter: telnet(rfc2217),tcp,0.0.0.0,7001\n"),
            "{yaml}"
        );
        assert_eq!(
            plan.connection_command(&plan.consoles[0], &any),
            "telnet 127.0.0.1 7001"
        );
        let v6 = Settings {
            address: "::".parse().unwrap(),
            ..Settings::default()
        };
        assert_eq!(
            plan.connection_command(&plan.consoles[0], &v6),
            "telnet ::1 7001"
        );
        let told = Settings {
            address: "0.0.0.0".parse().unwrap(),
            connect_address: Some("192.168.1.20".parse().unwrap()),
            ..Settings::default()
        };
        assert_eq!(
            plan.connection_command(&plan.consoles[0], &told),
            "telnet 192.168.1.20 7001"
        );
        for bad in ["trace", "/var/log/my traces", "/var/log/\\p"] {
            let s = Settings {
                trace: Some(PathBuf::from(bad)),
                ..Settings::default()
            };
            let e = plan.yaml(&s).unwrap_err();
            assert!(
                e.to_string().starts_with(&format!("--trace {bad}: ")),
                "{e}"
            );
        }
    }

    #[test]
    fn ports_are_given_past_taken_ones_up_to_the_last() {
        let dicts = [
            dict("a", "{% set ser2net_device = '/dev/ttyUSB0' %}\n"),
            dict(
                "b",
                "{% set ser2net_device = '/dev/ttyUSB1' %}\n{% set ser2net_port = '65535' %}\n",
            ),
            dict("c", "{% set ser2net_device = '/dev/ttyUSB2' %}\n"),
        ];
        let plan = Plan::new(&dicts[..2], 65534).unwrap();
        assert_eq!(plan.consoles[0].port, 65534);
        assert_eq!(plan.consoles[1].port, 65535);
        let e = Plan::new(&dicts, 65534).unwrap_err();
        assert_eq!(
            e.to_string(),
            "c: no free port left between --base-port 65534 and 65535"
        );
    }

    #[test]
    fn bad_variables_and_clashes_are_errors_naming_the_devices() {
        let cases = [
            (
                "{% set ser2net_device = 'ttyUSB0' %}\n",
                "devices/x.jinja2: ser2net_device: \"ttyUSB0\" is not an absolute path",
            ),
            (
                "{% set ser2net_device = '/dev/tty USB0' %}\n",
                "devices/x.jinja2: ser2net_device: \"/dev/tty USB0\": only letters, digits and '/._+:@=-' can go into ser2net's connector",
            ),
            (
                "{% set ser2net_device = 5 %}\n",
                "devices/x.jinja2: ser2net_device: a path is a string, not an integer",
            ),
            (
                "{% set ser2net_device = '/dev/ttyUSB0' %}\n{% set ser2net_port = 70000 %}\n",
                "devices/x.jinja2: ser2net_port: 70000 is not a port (1 to 65535)",
            ),
            (
                "{% set ser2net_device = '/dev/ttyUSB0' %}\n{% set ser2net_port = 0 %}\n",
                "devices/x.jinja2: ser2net_port: 0 is not a port (1 to 65535)",
            ),
            (
                "{% set ser2net_device = '/dev/ttyUSB0' %}\n{% set ser2net_serial = '8n1' %}\n",
                "devices/x.jinja2: ser2net_serial: \"8n1\" is not parity (n, o, e, m, s), data bits (5 to 8) and stop bits (1, 2), like 'n81'",
            ),
            (
                "{% set ser2net_device = '/dev/ttyUSB0' %}\n{% set ser2net_port = %}\n",
                "devices/x.jinja2: Jinja2 does not read it: x:3: unexpected end of block",
            ),
        ];
        for (sets, message) in cases {
            let e = Plan::new(&[dict("x", sets)], 7001).unwrap_err();
            assert_eq!(chain(&e), message, "{sets}");
        }
        let baud = Plan::new(
            &[dict(
                "x",
                "{% set ser2net_device = '/dev/ttyUSB0' %}\n{% set baud_rate = 12345 %}\n",
            )],
            7001,
        )
        .unwrap_err();
        assert!(
            baud.to_string().starts_with(
                "devices/x.jinja2: baud_rate: 12345 is not a serial port speed (50, 75,"
            ),
            "{baud}"
        );
        let e = Plan::new(&[dict("bad name", "")], 7001).unwrap_err();
        assert!(
            e.to_string()
                .contains("the hostname \"bad name\" cannot name"),
            "{e}"
        );

        // two devices on one port, and one device in two dictionaries (one a symlink to it)
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("ttyUSB7");
        std::fs::write(&real, "").unwrap();
        let link = tmp.path().join("rack-07");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let dicts = [
            dict(
                "a",
                "{% set ser2net_device = '/dev/ttyUSB0' %}\n{% set ser2net_port = 7005 %}\n",
            ),
            dict(
                "b",
                "{% set ser2net_device = '/dev/ttyUSB1' %}\n{% set ser2net_port = 7005 %}\n",
            ),
            dict(
                "c",
                &format!("{{% set ser2net_device = '{}' %}}\n", real.display()),
            ),
            dict(
                "d",
                &format!("{{% set ser2net_device = '{}' %}}\n", link.display()),
            ),
        ];
        let e = Plan::new(&dicts, 7001).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "port 7005 is given to both a and b\nc and d both have the serial device {}",
                link.display()
            )
        );
        let mut same = dict("a", "");
        same.origin = "other/a.jinja2".into();
        let e = Plan::new(&[dict("a", ""), same], 7001).unwrap_err();
        assert_eq!(
            e.to_string(),
            "devices/a.jinja2 and other/a.jinja2 are both named a"
        );
    }

    #[test]
    fn connection_command_is_rewritten_keeping_every_other_byte() {
        let cmd = "telnet 127.0.0.1 7003";
        // replaced in place (CRLF, indentation and the other lines kept)
        let text = "{# rack 2 #}\r\n{% extends 'bbb.jinja2' %}\r\n  {%- set connection_command = \"telnet old 1\" %}\r\n{% set ser2net_device = '/dev/x' %}\r\n";
        let new = with_connection_command("b", "b.jinja2", text, cmd).unwrap();
        assert_eq!(
            new,
            "{# rack 2 #}\r\n{% extends 'bbb.jinja2' %}\r\n  {% set connection_command = 'telnet 127.0.0.1 7003' %}\r\n{% set ser2net_device = '/dev/x' %}\r\n"
        );
        // added after the extends line
        let text = "{% extends 'bbb.jinja2' %}\n{% set ser2net_device = '/dev/x' %}";
        let new = with_connection_command("b", "b.jinja2", text, cmd).unwrap();
        assert_eq!(
            new,
            "{% extends 'bbb.jinja2' %}\n{% set connection_command = 'telnet 127.0.0.1 7003' %}\n{% set ser2net_device = '/dev/x' %}"
        );
        // the same again: nothing changes
        assert_eq!(
            with_connection_command("b", "b.jinja2", &new, cmd).unwrap(),
            new
        );
        // what cannot be rewritten for certain is left alone, with the line to set by hand
        let refused = [
            (
                "{% extends 'bbb.jinja2' %}\n{% set connection_command = 'a' %}\n{% set connection_command = 'b' %}\n",
                "it sets connection_command on 2 lines",
            ),
            (
                "{% extends 'bbb.jinja2' %}\n{% set connection_command = 'a' %}{% set baud_rate = 9600 %}\n",
                "the change would also change baud_rate",
            ),
            (
                "{#\n{% extends 'bbb.jinja2' %}\n#}\n",
                "the new line would not set it (inside a comment or a block?)",
            ),
        ];
        for (text, why) in refused {
            let e = with_connection_command("b", "b.jinja2", text, cmd).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("b.jinja2: connection_command not rewritten: {why}; set it by hand to: {{% set connection_command = 'telnet 127.0.0.1 7003' %}}"),
                "{text}"
            );
        }
    }

    #[test]
    fn atomic_writes_keep_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("d.jinja2");
        std::fs::write(&f, "old").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomically(&f, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "new");
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left: {left:?}");
        let e = write_atomically(&tmp.path().join("no/such/dir/f"), "x").unwrap_err();
        assert!(e.to_string().contains("cannot write"), "{e}");
    }
}
