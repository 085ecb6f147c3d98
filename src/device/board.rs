//! The board of a job, built once per job from the rendered device by one factory:
//! [`BoardPlan::for_device`] maps the device dictionary's fields to a plan without any I/O
//! (so the mapping is tested on its own), and [`BoardPlan::open`] turns the plan into HAL
//! backends ([`Board`]) without connecting to anything.
//!
//! Console, from `commands.connect` (LAVA's `connection_command`, or the `primary`-tagged
//! entry of `connection_list` / `connection_commands` / `connection_tags`, as [`Device`]
//! resolves it):
//!
//! * `telnet HOST PORT` (exactly three words, the program's basename `telnet`, `PORT` a
//!   non-zero number) → [`ConsolePlan::Telnet`]: basalt speaks telnet itself.
//! * a single word that is a path under `/dev/` (`/dev/ttyUSB0`, `/dev/serial/by-id/...`, no
//!   `..`) → [`ConsolePlan::Serial`] at the baud rate of [`baud_rate`] (default 115200).
//! * anything else (`ssh -t host conmux-console board`, `telnet -E host 7001`, a service
//!   name as telnet port) → [`ConsolePlan::Command`]: the admin's command runs as written.
//! * no `connect` at all, or an empty one → [`ConsolePlan::None`].
//!
//! Power, from `power_on`, `power_off` and `hard_reset`: see [`PowerPlan`] and
//! [`pduclient_plan`]. `emulated`: the device has a `qemu` boot method (QEMU gives the
//! console and power then).

use std::path::{Component, Path, PathBuf};

use basalt_hal::confine::Policy;
use basalt_hal::console::{CommandConsole, Console, ConsoleError, SerialConsole, TelnetConsole};
use basalt_hal::power::{
    pdudaemon, CommandPower, PduDaemonPower, PduTransport, Power, PowerCommands,
};

use super::{Commands, Device};
use crate::yaml::{Node, Value};

/// The speed of a serial console whose device gives none: the default of `baud_rate` in
/// every device-type template of LAVA's corpus.
pub const DEFAULT_BAUD: u32 = 115_200;

/// Why a board could not be planned or opened.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    /// A field of the rendered device cannot be used.
    #[error("{device}: {field}: {message}")]
    Malformed {
        /// The device's source (dictionary path or file), as [`Device::source`].
        device: String,
        /// The field, e.g. `commands.connect` or `constants.baud_rate`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The HAL refused the console description.
    #[error("{device}: console: {source}")]
    Console {
        /// The device's hostname.
        device: String,
        /// The HAL's error.
        source: ConsoleError,
    },
}

/// How a device's board is reached: what [`BoardPlan::open`] builds, decided from the device
/// alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoardPlan {
    /// The device's hostname (names the power commands in logs and errors).
    pub hostname: String,
    /// Where the console is.
    pub console: ConsolePlan,
    /// How power is switched.
    pub power: PowerPlan,
    /// The device is a QEMU (a `qemu` boot method): the emulator gives console and power.
    pub emulated: bool,
}

/// Where a board's console is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsolePlan {
    /// A telnet server (ser2net), spoken to directly.
    Telnet {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// A local serial device.
    Serial {
        /// The device node, e.g. `/dev/ttyUSB0`.
        path: PathBuf,
        /// Bits per second.
        baud: u32,
    },
    /// A connection command run as the admin wrote it; its stdin / stdout are the console.
    Command(String),
    /// The device gives no console.
    None,
}

/// How a board's power is switched.
///
/// * every non-empty one of `power_on`, `power_off`, `hard_reset` is a single `pduclient`
///   invocation for the same daemon, listener (TCP, or HTTP with `--http`), PDU and outlet,
///   with the matching `--command` (see [`pduclient_plan`]) → [`PowerPlan::PduDaemon`];
/// * otherwise, any command at all → [`PowerPlan::Commands`], exactly as written;
/// * no command → [`PowerPlan::None`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PowerPlan {
    /// The dictionary's shell commands (`power_on`, `power_off`, `hard_reset`).
    Commands {
        /// `power_on_command`.
        on: Vec<String>,
        /// `power_off_command`.
        off: Vec<String>,
        /// `hard_reset_command`.
        reset: Vec<String>,
    },
    /// pdudaemon's API, spoken by basalt instead of running `pduclient`.
    PduDaemon {
        /// The daemon's listener: [`PduTransport::Http`] for `pduclient --http`, else
        /// [`PduTransport::Tcp`] (pduclient's default, as is pdudaemon's).
        transport: PduTransport,
        /// The daemon's host (`--daemon`).
        server: String,
        /// The daemon's port (pduclient always uses [`pdudaemon::DEFAULT_PORT`]).
        server_port: u16,
        /// The PDU (`--hostname`).
        hostname: String,
        /// The outlet (`--port`), as written (`08` stays `08`).
        port: String,
        /// Seconds between off and on of a reboot (`--delay` of the reboot command).
        delay: Option<u32>,
    },
    /// The device gives no power control.
    None,
}

/// The HAL backends of one job's board, opened from a [`BoardPlan`] (nothing connected yet).
pub struct Board {
    /// The console, if the device has one.
    pub console: Option<Box<dyn Console>>,
    /// Power control, if the device has any.
    pub power: Option<Box<dyn Power>>,
    /// The device is a QEMU.
    pub emulated: bool,
    /// What the board was built from.
    pub plan: BoardPlan,
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board")
            .field("describe", &self.describe())
            .field("plan", &self.plan)
            .finish()
    }
}

impl Board {
    /// A board with nothing: no console, no power (what a job gets when its device's board
    /// cannot be built; the job then fails before its first action).
    pub fn empty(hostname: &str) -> Board {
        Board {
            console: None,
            power: None,
            emulated: false,
            plan: BoardPlan {
                hostname: hostname.to_string(),
                console: ConsolePlan::None,
                power: PowerPlan::None,
                emulated: false,
            },
        }
    }

    /// One line each for the job log: `console: telnet localhost:7001`,
    /// `power: pdudaemon tcp localhost:16421 pdu port 08`, and `emulated: QEMU` for a QEMU.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![
            format!(
                "console: {}",
                self.console
                    .as_ref()
                    .map_or_else(|| "none".to_string(), |c| c.describe())
            ),
            format!(
                "power: {}",
                self.power
                    .as_ref()
                    .map_or_else(|| "none".to_string(), |p| p.describe())
            ),
        ];
        if self.emulated {
            lines.push("emulated: QEMU".to_string());
        }
        lines
    }
}

impl BoardPlan {
    /// Maps a rendered device to its board (see the module documentation); fails only on a
    /// field basalt itself must interpret and cannot (an unsplittable `connect`, a bad
    /// `baud_rate`).
    pub fn for_device(device: &Device) -> Result<BoardPlan, BoardError> {
        Ok(BoardPlan {
            hostname: device.hostname.clone(),
            console: console_plan(device)?,
            power: power_plan(&device.commands),
            emulated: device.has_boot_method("qemu"),
        })
    }

    /// Builds the HAL backends; a connection command runs under `console_policy`. Connects to
    /// nothing and starts nothing.
    pub fn open(&self, console_policy: Policy) -> Result<Board, BoardError> {
        let console: Option<Box<dyn Console>> = match &self.console {
            ConsolePlan::Telnet { host, port } => {
                Some(Box::new(TelnetConsole::new(host.clone(), *port)))
            }
            ConsolePlan::Serial { path, baud } => {
                Some(Box::new(SerialConsole::new(path.clone(), *baud)))
            }
            ConsolePlan::Command(cmd) => {
                let console = CommandConsole::new(cmd).map_err(|source| BoardError::Console {
                    device: self.hostname.clone(),
                    source,
                })?;
                Some(Box::new(console.with_policy(console_policy)))
            }
            ConsolePlan::None => None,
        };
        let power: Option<Box<dyn Power>> = match &self.power {
            PowerPlan::Commands { on, off, reset } => Some(Box::new(CommandPower::new(
                self.hostname.clone(),
                PowerCommands {
                    on: on.clone(),
                    off: off.clone(),
                    reset: reset.clone(),
                },
            ))),
            PowerPlan::PduDaemon { .. } => self.power.pdudaemon().map(|p| Box::new(p) as _),
            PowerPlan::None => None,
        };
        Ok(Board {
            console,
            power,
            emulated: self.emulated,
            plan: self.clone(),
        })
    }
}

impl PowerPlan {
    /// The pdudaemon client of a [`PowerPlan::PduDaemon`] (with its listener and reboot
    /// delay).
    pub fn pdudaemon(&self) -> Option<PduDaemonPower> {
        let PowerPlan::PduDaemon {
            transport,
            server,
            server_port,
            hostname,
            port,
            delay,
        } = self
        else {
            return None;
        };
        let p = PduDaemonPower::new(server.clone(), *server_port, hostname.clone(), port)
            .with_transport(*transport);
        Some(match delay {
            Some(d) => p.with_delay(*d),
            None => p,
        })
    }
}

fn malformed(device: &Device, field: &str, message: impl Into<String>) -> BoardError {
    BoardError::Malformed {
        device: device.source.clone(),
        field: field.to_string(),
        message: message.into(),
    }
}

/// The last component of a program path (`/usr/bin/telnet` → `telnet`).
fn basename(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
}

fn console_plan(device: &Device) -> Result<ConsolePlan, BoardError> {
    let Some(connect) = device
        .commands
        .connect
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
    else {
        return Ok(ConsolePlan::None);
    };
    let field = match &device.commands.connect_from {
        Some(name) => format!("commands.connections.{name}.connect"),
        None => "commands.connect".to_string(),
    };
    let words = shell_words::split(connect)
        .map_err(|e| malformed(device, &field, format!("cannot split `{connect}`: {e}")))?;
    if let [program, host, port] = words.as_slice() {
        if basename(program) == "telnet" && !host.is_empty() && !host.starts_with('-') {
            if let Some(port) = port.parse::<u16>().ok().filter(|p| *p != 0) {
                return Ok(ConsolePlan::Telnet {
                    host: host.clone(),
                    port,
                });
            }
        }
    }
    if let [path] = words.as_slice() {
        if is_device_node(path) {
            return Ok(ConsolePlan::Serial {
                path: PathBuf::from(path),
                baud: baud_rate(device)?,
            });
        }
    }
    Ok(ConsolePlan::Command(connect.to_string()))
}

/// An absolute path below `/dev/`, without `..`.
fn is_device_node(word: &str) -> bool {
    let mut parts = Path::new(word).components();
    parts.next() == Some(Component::RootDir)
        && parts.next() == Some(Component::Normal("dev".as_ref()))
        && {
            let rest: Vec<Component> = parts.collect();
            !rest.is_empty() && rest.iter().all(|c| matches!(c, Component::Normal(_)))
        }
}

/// The speed of a serial console. LAVA never opens a serial port itself (its consoles are
/// connection commands), so a rendered LAVA device has no baud field: `baud_rate` is only a
/// template variable that ends up in kernel arguments (`console=ttyO0,115200n8`). basalt
/// reads a `baud_rate` key, most specific first: the console's own `commands.connections.
/// <name>.baud_rate`, then `constants.baud_rate`, then `actions.boot.methods.<method>.
/// parameters.baud_rate` (all boot methods giving one must agree); else [`DEFAULT_BAUD`], the
/// default of `baud_rate` in every device type of the corpus. A value must be a positive
/// integer (or a string of digits, as templates often quote it).
pub fn baud_rate(device: &Device) -> Result<u32, BoardError> {
    let mut found: Option<(String, &Node)> = None;
    if let Some(name) = &device.commands.connect_from {
        if let Some(n) = device
            .node
            .path(&["commands", "connections", name, "baud_rate"])
        {
            found = Some((format!("commands.connections.{name}.baud_rate"), n));
        }
    }
    if found.is_none() {
        if let Some(n) = device.constant(&["baud_rate"]) {
            found = Some(("constants.baud_rate".to_string(), n));
        }
    }
    if let Some((field, n)) = found {
        return baud_value(device, &field, n);
    }
    let mut from_methods: Option<(String, u32)> = None;
    let methods = device
        .node
        .path(&["actions", "boot", "methods"])
        .and_then(Node::as_map)
        .unwrap_or(&[]);
    for (key, method) in methods {
        let (Some(name), Some(n)) = (key.as_str(), method.path(&["parameters", "baud_rate"]))
        else {
            continue;
        };
        let field = format!("actions.boot.methods.{name}.parameters.baud_rate");
        let baud = baud_value(device, &field, n)?;
        match &from_methods {
            Some((first, b)) if *b != baud => {
                return Err(malformed(
                    device,
                    &field,
                    format!("{baud} differs from {b} of {first}"),
                ))
            }
            Some(_) => {}
            None => from_methods = Some((field, baud)),
        }
    }
    Ok(from_methods.map_or(DEFAULT_BAUD, |(_, b)| b))
}

fn baud_value(device: &Device, field: &str, n: &Node) -> Result<u32, BoardError> {
    let parsed = match &n.value {
        Value::Int(i) => u32::try_from(*i).ok(),
        Value::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        _ => None,
    };
    parsed.filter(|b| *b > 0).ok_or_else(|| {
        let shown = n.scalar_text().unwrap_or_else(|| n.kind().to_string());
        malformed(
            device,
            field,
            format!("expected a positive number of bits per second, found {shown}"),
        )
    })
}

fn power_plan(c: &Commands) -> PowerPlan {
    if c.power_on.is_empty() && c.power_off.is_empty() && c.hard_reset.is_empty() {
        return PowerPlan::None;
    }
    pduclient_plan(c).unwrap_or_else(|| PowerPlan::Commands {
        on: c.power_on.clone(),
        off: c.power_off.clone(),
        reset: c.hard_reset.clone(),
    })
}

/// One `pduclient` command line, as pduclient's own option parser reads it.
#[derive(Debug, PartialEq, Eq)]
struct PduClient {
    transport: PduTransport,
    daemon: String,
    hostname: String,
    port: String,
    command: String,
    delay: Option<u32>,
}

/// Characters that make `/bin/sh` do more than split words: such a command stays a command.
const SHELL_SPECIAL: &[char] = &[
    '$', '`', ';', '&', '|', '<', '>', '(', ')', '*', '?', '[', '~', '\n', '#',
];

/// Reads a `pduclient [--http] --daemon D --hostname H --port P --command C [--delay N]`
/// invocation (options in any order, `--opt=value` too); `None` for anything basalt could not
/// replace exactly (over TCP that includes a hostname or port with whitespace, which pduclient
/// would send unquoted into the space-separated request).
fn parse_pduclient(cmd: &str) -> Option<PduClient> {
    if cmd.contains(SHELL_SPECIAL) {
        return None;
    }
    let words = shell_words::split(cmd).ok()?;
    let (program, args) = words.split_first()?;
    if basename(program) != "pduclient" {
        return None;
    }
    let (mut http, mut daemon, mut hostname, mut port, mut command, mut delay) =
        (false, None, None, None, None, None);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        if name == "-H" || name == "--http" {
            if inline.is_some() || http {
                return None;
            }
            http = true;
            continue;
        }
        let slot: &mut Option<String> = match name {
            "--daemon" => &mut daemon,
            "--hostname" => &mut hostname,
            "--port" => &mut port,
            "--command" => &mut command,
            "--delay" => &mut delay,
            _ => return None,
        };
        let value = match inline {
            Some(v) => v,
            None => args.next()?.clone(),
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let daemon = non_empty(daemon).filter(|d| !d.contains(':') && !d.contains('/'))?;
    // pduclient sends no delay when it is 0 (`if options.pdudelay`).
    let delay = match delay {
        Some(d) => Some(d.parse::<u32>().ok()?).filter(|d| *d != 0),
        None => None,
    };
    let (hostname, port) = (non_empty(hostname)?, non_empty(port)?);
    if !http && (hostname.contains(char::is_whitespace) || port.contains(char::is_whitespace)) {
        return None;
    }
    Some(PduClient {
        transport: if http {
            PduTransport::Http
        } else {
            PduTransport::Tcp
        },
        daemon,
        hostname,
        port,
        command: non_empty(command)?,
        delay,
    })
}

/// [`PowerPlan::PduDaemon`] when every non-empty power command is exactly one pduclient
/// invocation that basalt can replace by pdudaemon's own API, else `None`:
///
/// * `pduclient -H` / `--http` speaks pdudaemon's HTTP listener, plain `pduclient` its TCP
///   listener (`PDU PORT COMMAND[ DELAY]`, answered `ack`): the daemon runs one of the two, so
///   the plan keeps the one the lab's commands use, and all of them must use the same.
/// * the same `--daemon`, `--hostname` and `--port` everywhere, `--command on` in `power_on`,
///   `off` in `power_off`, `reboot` in `hard_reset`; `--daemon HOST:PORT` is not pduclient's
///   (it always uses port 16421), so it stays a command.
/// * `--delay` only on the reboot (pdudaemon's wait between off and on); pduclient also
///   sends a delay before `on` / `off`, which the HAL does not, so those stay commands.
/// * a list with anything next to the pduclient call (`['pduclient ... --command reboot',
///   '/bin/sleep 1']`) stays a command list exactly as the admin wrote it: the extra
///   commands are the admin's timing or side effects, and absorbing a `sleep` into the HAL's
///   settle time would be a guess at their intent.
///
/// A device giving only some of the three (e.g. only `hard_reset`) gets all three operations
/// on the same outlet.
pub fn pduclient_plan(c: &Commands) -> Option<PowerPlan> {
    let mut target: Option<(PduTransport, String, String, String)> = None;
    let mut delay = None;
    for (list, action) in [
        (&c.power_on, "on"),
        (&c.power_off, "off"),
        (&c.hard_reset, "reboot"),
    ] {
        if list.is_empty() {
            continue;
        }
        let [cmd] = list.as_slice() else {
            return None;
        };
        let p = parse_pduclient(cmd)?;
        if p.command != action {
            return None;
        }
        if action == "reboot" {
            delay = p.delay;
        } else if p.delay.is_some() {
            return None;
        }
        let this = (p.transport, p.daemon, p.hostname, p.port);
        if target.as_ref().is_some_and(|t| *t != this) {
            return None;
        }
        target = Some(this);
    }
    let (transport, server, hostname, port) = target?;
    Some(PowerPlan::PduDaemon {
        transport,
        server,
        server_port: pdudaemon::DEFAULT_PORT,
        hostname,
        port,
        delay,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// LAVA's conformance corpus, found as `tests/common::corpus` finds it
    /// (`BASALT_LAVA_CORPUS` overrides).
    fn corpus() -> PathBuf {
        if let Ok(p) = std::env::var("BASALT_LAVA_CORPUS") {
            return PathBuf::from(p);
        }
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        [
            manifest.join("../shared/conformance/lava"),
            manifest.join("../../shared/conformance/lava"),
            PathBuf::from("/work/shared/conformance/lava"),
        ]
        .into_iter()
        .find(|c| c.join("README.md").is_file())
        .unwrap_or_else(|| panic!("LAVA conformance corpus not found: set BASALT_LAVA_CORPUS"))
    }

    /// A corpus dictionary rendered with LAVA's device types and no job context.
    fn corpus_device(name: &str) -> Device {
        let dir = corpus().join("devices");
        let dict = dir.join("dictionaries").join(format!("{name}.jinja2"));
        Device::load(&dict, &[dir.join("device-types")], &BTreeMap::new())
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn plan(device: &Device) -> BoardPlan {
        BoardPlan::for_device(device).unwrap_or_else(|e| panic!("{e}"))
    }

    fn yaml_device(text: &str) -> Device {
        Device::from_yaml("mem.yaml", text, "board1").unwrap_or_else(|e| panic!("{e}"))
    }

    fn describe(plan: &BoardPlan) -> Vec<String> {
        plan.open(Policy::Supervised).unwrap().describe()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn telnet_connection_command_and_snmp_power_lists() {
        let p = plan(&corpus_device("x15-01"));
        assert_eq!(
            p.console,
            ConsolePlan::Telnet {
                host: "localhost".into(),
                port: 7020
            }
        );
        let snmp = "/usr/local/lab-scripts/snmp_pdu_control --hostname pdu14";
        let eth008 = "/usr/local/lab-scripts/eth008_control -a 10.0.9.2 -r 3 -s onoff";
        assert_eq!(
            p.power,
            PowerPlan::Commands {
                on: vec![
                    format!("{snmp} --command on --port 5 --delay 20"),
                    eth008.into()
                ],
                off: vec![format!("{snmp} --command off --port 5 --delay 20")],
                reset: vec![
                    format!("{snmp} --command reboot --port 5 --delay 20"),
                    eth008.into()
                ],
            }
        );
        assert!(!p.emulated);
        assert_eq!(
            describe(&p),
            [
                "console: telnet localhost:7020",
                "power: power commands of x15-01"
            ]
        );
    }

    #[test]
    fn connection_list_gives_its_primary_telnet() {
        let bbb = corpus_device("bbb-03");
        assert_eq!(bbb.commands.connect_from.as_deref(), Some("uart0"));
        assert_eq!(
            plan(&bbb).console,
            ConsolePlan::Telnet {
                host: "localhost".into(),
                port: 6000
            }
        );
        // zcu102: four connections, only the primary has a command (the others render `None`)
        let p = plan(&corpus_device("zcu102"));
        assert_eq!(
            p.console,
            ConsolePlan::Telnet {
                host: "localhost".into(),
                port: 7030
            }
        );
        assert_eq!(p.power, PowerPlan::None);
        assert_eq!(
            describe(&p),
            ["console: telnet localhost:7030", "power: none"]
        );
    }

    const PDUCLIENT: &str = "/usr/bin/pduclient --daemon localhost --hostname pdu";

    #[test]
    fn pduclient_over_tcp_is_pdudaemon_tcp() {
        // The corpus' pduclient calls have no --http: they speak pdudaemon's TCP listener.
        for name in ["bbb-01", "bbb-03"] {
            let d = corpus_device(name);
            assert_eq!(
                d.commands.power_on,
                [format!("{PDUCLIENT} --command on --port 08")],
                "{name}"
            );
            let p = plan(&d);
            assert_eq!(
                p.power,
                PowerPlan::PduDaemon {
                    transport: PduTransport::Tcp,
                    server: "localhost".into(),
                    server_port: 16421,
                    hostname: "pdu".into(),
                    port: "08".into(),
                    delay: None,
                },
                "{name}"
            );
            assert_eq!(
                describe(&p),
                [
                    "console: telnet localhost:6000",
                    "power: pdudaemon tcp localhost:16421 pdu port 08"
                ]
            );
            let client = p.power.pdudaemon().unwrap();
            assert_eq!(client.tcp_request("reboot").unwrap(), "pdu 08 reboot");
        }
    }

    /// A corpus device with `-H` added to each pduclient call.
    fn with_http(name: &str) -> Device {
        let d = corpus_device(name);
        let text = d
            .text
            .replace("/usr/bin/pduclient ", "/usr/bin/pduclient -H ");
        Device::from_yaml(&d.source, &text, name).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn pduclient_over_http_is_pdudaemon() {
        for name in ["bbb-01", "bbb-03"] {
            let p = plan(&with_http(name));
            assert_eq!(
                p.power,
                PowerPlan::PduDaemon {
                    transport: PduTransport::Http,
                    server: "localhost".into(),
                    server_port: 16421,
                    hostname: "pdu".into(),
                    port: "08".into(),
                    delay: None,
                },
                "{name}"
            );
            assert_eq!(
                describe(&p),
                [
                    "console: telnet localhost:6000",
                    "power: pdudaemon localhost:16421 pdu port 08"
                ]
            );
        }
    }

    #[test]
    fn pduclient_with_extra_commands_stays_commands() {
        for d in [corpus_device("bbb-02"), with_http("bbb-02")] {
            let PowerPlan::Commands { reset, .. } = plan(&d).power else {
                panic!("{}: expected commands", d.source);
            };
            assert_eq!(reset.len(), 2);
            assert!(reset[0].contains("--command reboot --port 08"), "{reset:?}");
            assert_eq!(reset[1], "/bin/sleep 1");
        }
    }

    #[test]
    fn qemu_is_emulated_without_console_or_power() {
        for name in ["kvm01", "qemu01"] {
            let p = plan(&corpus_device(name));
            assert!(p.emulated, "{name}");
            assert_eq!(p.console, ConsolePlan::None, "{name}");
            assert_eq!(p.power, PowerPlan::None, "{name}");
            assert_eq!(
                describe(&p),
                ["console: none", "power: none", "emulated: QEMU"]
            );
        }
    }

    #[test]
    fn serial_consoles_and_their_baud_rate() {
        let d = yaml_device("commands:\n  connect: /dev/ttyUSB0\n");
        let p = plan(&d);
        assert_eq!(
            p.console,
            ConsolePlan::Serial {
                path: "/dev/ttyUSB0".into(),
                baud: DEFAULT_BAUD
            }
        );
        assert_eq!(
            describe(&p),
            ["console: serial /dev/ttyUSB0 115200n81", "power: none"]
        );
        let d = yaml_device("constants:\n  baud_rate: 9600\ncommands:\n  connect: /dev/ttyS1\n");
        assert_eq!(
            plan(&d).console,
            ConsolePlan::Serial {
                path: "/dev/ttyS1".into(),
                baud: 9600
            }
        );
        // a tagged connection of its own speed wins over the constant
        let by_id = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A1-if00-port0";
        let d = yaml_device(&format!(
            "constants: {{baud_rate: 9600}}\ncommands:\n  connections:\n    uart1:\n      connect: /dev/ttyS0\n    uart0:\n      connect: {by_id}\n      baud_rate: '1500000'\n      tags: [primary]\n"
        ));
        assert_eq!(
            plan(&d).console,
            ConsolePlan::Serial {
                path: by_id.into(),
                baud: 1_500_000
            }
        );
        // boot method parameters, when they agree
        let methods = |a: &str, b: &str| {
            yaml_device(&format!(
                "commands: {{connect: /dev/ttyAMA0}}\nactions:\n  boot:\n    methods:\n      u-boot: {{parameters: {{baud_rate: {a}}}}}\n      minimal: {{parameters: {{baud_rate: {b}}}}}\n"
            ))
        };
        assert_eq!(
            plan(&methods("57600", "57600")).console,
            ConsolePlan::Serial {
                path: "/dev/ttyAMA0".into(),
                baud: 57600
            }
        );
        let err = BoardPlan::for_device(&methods("57600", "9600"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("mem.yaml: actions.boot.methods.minimal.parameters.baud_rate: 9600"),
            "{err}"
        );
    }

    #[test]
    fn malformed_fields_name_source_and_field() {
        let d = yaml_device("constants: {baud_rate: 115200n8}\ncommands: {connect: /dev/ttyS0}\n");
        let err = BoardPlan::for_device(&d).unwrap_err().to_string();
        assert_eq!(
            err,
            "mem.yaml: constants.baud_rate: expected a positive number of bits per second, found 115200n8"
        );
        let d = yaml_device("commands:\n  connect: \"ssh 'host\"\n");
        let err = BoardPlan::for_device(&d).unwrap_err().to_string();
        assert!(
            err.starts_with("mem.yaml: commands.connect: cannot split"),
            "{err}"
        );
        // a baud rate matters only for a serial console
        let d = yaml_device("constants: {baud_rate: fast}\ncommands: {connect: telnet h 1}\n");
        assert!(BoardPlan::for_device(&d).is_ok());
    }

    #[test]
    fn other_connect_commands_run_as_written() {
        for cmd in [
            "ssh -t host conmux-console board",
            "telnet -E localhost 7001",
            "telnet localhost telnet",
            "telnet localhost 70000",
            "/dev/../bin/sh",
            "picocom -b 115200 /dev/ttyUSB0",
        ] {
            let d = yaml_device(&format!("commands:\n  connect: '{cmd}'\n"));
            let p = plan(&d);
            assert_eq!(p.console, ConsolePlan::Command(cmd.into()), "{cmd}");
            assert_eq!(describe(&p)[0], format!("console: command `{cmd}`"));
        }
        let d = yaml_device("commands:\n  connect: /usr/bin/telnet 10.0.0.5 7001\n");
        assert_eq!(
            plan(&d).console,
            ConsolePlan::Telnet {
                host: "10.0.0.5".into(),
                port: 7001
            }
        );
    }

    #[test]
    fn relay_commands_are_commands() {
        let d = yaml_device(
            "hostname: rpi4-01\ncommands:\n  power_on: /usr/local/bin/relay on 3\n  power_off: [/usr/local/bin/relay off 3]\n",
        );
        let p = plan(&d);
        assert_eq!(
            p.power,
            PowerPlan::Commands {
                on: strings(&["/usr/local/bin/relay on 3"]),
                off: strings(&["/usr/local/bin/relay off 3"]),
                reset: vec![],
            }
        );
        assert_eq!(p.console, ConsolePlan::None);
        assert_eq!(
            describe(&p),
            ["console: none", "power: power commands of rpi4-01"]
        );
    }

    fn commands(on: &str, off: &str, reset: &str) -> Commands {
        let list = |s: &str| {
            if s.is_empty() {
                vec![]
            } else {
                vec![s.to_string()]
            }
        };
        Commands {
            power_on: list(on),
            power_off: list(off),
            hard_reset: list(reset),
            ..Commands::default()
        }
    }

    #[test]
    fn pduclient_invocations() {
        let pdu_over = |transport, delay| PowerPlan::PduDaemon {
            transport,
            server: "pdud.lab".into(),
            server_port: pdudaemon::DEFAULT_PORT,
            hostname: "pdu05".into(),
            port: "4".into(),
            delay,
        };
        let pdu = |delay| pdu_over(PduTransport::Http, delay);
        let base = "pduclient --http --daemon pdud.lab --hostname pdu05 --port 4";
        let on = format!("{base} --command on");
        let off = format!("{base} --command off");
        // options in any order and as --opt=value
        let reboot = "pduclient --command=reboot --port 4 -H --hostname=pdu05 --daemon pdud.lab";
        assert_eq!(
            pduclient_plan(&commands(&on, &off, reboot)),
            Some(pdu(None))
        );
        assert_eq!(pduclient_plan(&commands("", "", reboot)), Some(pdu(None)));
        let delayed = format!("{base} --command reboot --delay 5");
        assert_eq!(
            pduclient_plan(&commands(&on, "", &delayed)),
            Some(pdu(Some(5)))
        );
        let zero = format!("{base} --command reboot --delay 0");
        assert_eq!(pduclient_plan(&commands("", "", &zero)), Some(pdu(None)));
        // without --http: the TCP listener
        let tcp = |s: &str| s.replace("--http ", "").replace(" -H", "");
        assert_eq!(
            pduclient_plan(&commands(&tcp(&on), &tcp(&off), &tcp(reboot))),
            Some(pdu_over(PduTransport::Tcp, None))
        );
        for (on, off, reset) in [
            // on / off with a delay, a swapped command, another outlet
            (
                format!("{base} --command on --delay 3"),
                off.clone(),
                String::new(),
            ),
            (off.clone(), on.clone(), String::new()),
            (
                on.clone(),
                off.replace("--port 4", "--port 5"),
                String::new(),
            ),
            // HTTP and TCP mixed (the daemon runs one listener)
            (on.clone(), tcp(&off), String::new()),
            // a hostname with a space over TCP (pduclient would split it)
            (
                tcp(&on).replace("pdu05", "'pdu 05'"),
                String::new(),
                String::new(),
            ),
            // not pduclient's options, a daemon port, shell syntax, an unknown flag
            (
                format!("{base} --command on --delay x"),
                String::new(),
                String::new(),
            ),
            (
                on.replace("pdud.lab", "pdud.lab:16421"),
                String::new(),
                String::new(),
            ),
            (format!("{on} && echo done"), String::new(), String::new()),
            (format!("{on} >/dev/null"), String::new(), String::new()),
            (format!("{on} --verbose"), String::new(), String::new()),
            (format!("{on} --command on"), String::new(), String::new()),
            (
                on.replace("pduclient", "pduclient2"),
                String::new(),
                String::new(),
            ),
            (format!("{base} --command"), String::new(), String::new()),
        ] {
            let c = commands(&on, &off, &reset);
            assert_eq!(pduclient_plan(&c), None, "{on} / {off} / {reset}");
            assert!(matches!(power_plan(&c), PowerPlan::Commands { .. }));
        }
        assert_eq!(power_plan(&Commands::default()), PowerPlan::None);
    }

    #[test]
    fn open_builds_pdudaemon_with_delay_and_command_consoles_with_policy() {
        let p = BoardPlan {
            hostname: "b".into(),
            console: ConsolePlan::Command("socat - UNIX-CONNECT:/run/b.sock".into()),
            power: pdu_plan(Some(20)),
            emulated: false,
        };
        let board = p.open(Policy::Supervised).unwrap();
        assert_eq!(
            board.describe(),
            [
                "console: command `socat - UNIX-CONNECT:/run/b.sock`",
                "power: pdudaemon pdud:16421 pdu14 port 5"
            ]
        );
        assert_eq!(board.plan, p);
        let client = p.power.pdudaemon().unwrap();
        assert_eq!(
            client.request_path("reboot"),
            "/power/control/reboot?hostname=pdu14&port=5&delay=20"
        );
        assert_eq!(
            pdu_plan(None).pdudaemon().unwrap().request_path("reboot"),
            "/power/control/reboot?hostname=pdu14&port=5"
        );
        assert!(PowerPlan::None.pdudaemon().is_none());
        let bad = BoardPlan {
            console: ConsolePlan::Command("'".into()),
            ..p
        };
        let err = bad.open(Policy::Supervised).unwrap_err().to_string();
        assert!(err.starts_with("b: console: "), "{err}");
    }

    fn pdu_plan(delay: Option<u32>) -> PowerPlan {
        PowerPlan::PduDaemon {
            transport: PduTransport::Http,
            server: "pdud".into(),
            server_port: 16421,
            hostname: "pdu14".into(),
            port: "5".into(),
            delay,
        }
    }
}
