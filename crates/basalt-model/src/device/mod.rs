//! A device: the rendered device YAML (from a dictionary or given as is) with typed access to
//! what the dispatcher uses. The rest stays a YAML tree, because device types differ widely
//! and strategies read their own `actions.boot.methods.<method>` parameters.

pub mod builtin;
pub mod render;

use crate::diag::Report;
use crate::job::Timeout;
use crate::reader::{entries, str_or_list, Fields};
use crate::yaml::Node;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A device that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Render(#[from] render::RenderError),
    #[error("{0}")]
    Invalid(Report),
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The job's context put something on QEMU's command line that a job may not.
    #[error("{device}: job context: {message}")]
    Context { device: String, message: String },
}

/// Per-phase delay between characters sent to the console (`character_delays`, milliseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CharacterDelays {
    pub deploy_ms: u64,
    pub boot_ms: u64,
    pub test_ms: u64,
}

/// One named console connection (`commands.connections`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub name: String,
    pub connect: String,
    pub tags: Vec<String>,
}

/// Worker-side commands from the device dictionary.
#[derive(Clone, Debug, Default)]
pub struct Commands {
    /// `connect`, or the `primary`-tagged entry of `connections`: the command giving the console.
    pub connect: Option<String>,
    /// The `connections` entry `connect` was taken from (`None` when `connect` itself was given).
    pub connect_from: Option<String>,
    pub connections: Vec<Connection>,
    pub hard_reset: Vec<String>,
    pub power_on: Vec<String>,
    pub power_off: Vec<String>,
    pub soft_reboot: Vec<String>,
    pub pre_power: Vec<String>,
    pub pre_os: Vec<String>,
    /// `users: {name: {do, undo}}` for `command:` actions.
    pub users: Vec<(String, String, Option<String>)>,
}

/// How the processes basalt starts for a job on this device are confined (`confinement:` of
/// the rendered device, from the dictionary's `confinement`, `confinement_network` and
/// `confinement_groups`; see docs/security.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceConfinement {
    /// `false`: not confined at all.
    pub enabled: bool,
    /// The job's processes keep the host's network.
    pub network: bool,
    /// Extra groups of the job user (`kvm`, `dialout` ...).
    pub groups: Vec<String>,
}

impl Default for DeviceConfinement {
    fn default() -> DeviceConfinement {
        DeviceConfinement {
            enabled: true,
            network: false,
            groups: Vec::new(),
        }
    }
}

/// A rendered device.
#[derive(Clone, Debug)]
pub struct Device {
    /// Where it came from, for messages.
    pub source: String,
    pub hostname: String,
    pub device_type: String,
    pub character_delays: CharacterDelays,
    pub commands: Commands,
    pub confinement: DeviceConfinement,
    /// `timeouts.actions.<name>`.
    pub action_timeouts: BTreeMap<String, Timeout>,
    /// `timeouts.connections.<name>`.
    pub connection_timeouts: BTreeMap<String, Timeout>,
    /// The whole rendered document.
    pub node: Node,
    /// The rendered YAML text.
    pub text: String,
}

impl Device {
    /// Loads `path`: a dictionary (`.jinja2`, rendered through `search` with the job `context`)
    /// or an already rendered device YAML.
    pub fn load(
        path: &Path,
        search: &[PathBuf],
        context: &BTreeMap<String, Node>,
    ) -> Result<Device, DeviceError> {
        let source = path.display().to_string();
        let is_dict = path.extension().is_some_and(|e| e == "jinja2");
        let text = if is_dict {
            render::render_dictionary(path, search, context)?
        } else {
            std::fs::read_to_string(path).map_err(|source_err| DeviceError::Read {
                path: source.clone(),
                source: source_err,
            })?
        };
        let label = if is_dict {
            format!("{source} (rendered)")
        } else {
            source
        };
        let fallback = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("device")
            .to_string();
        let device = Device::from_yaml(&label, &text, &fallback)?;
        if is_dict && !context.is_empty() {
            // What the job's context adds to QEMU's command line must pass the job rules,
            // however the template placed it (docs/security.md).
            let base_text = render::render_dictionary(path, search, &BTreeMap::new())?;
            let base = Device::from_yaml(&label, &base_text, &fallback)?;
            for method in ["qemu", "qemu-nfs"] {
                let (Some(with_job), Some(without)) =
                    (device.qemu_words(method), base.qemu_words(method))
                else {
                    continue;
                };
                crate::job::qemu_args::check_added(&without, &with_job).map_err(|message| {
                    DeviceError::Context {
                        device: label.clone(),
                        message,
                    }
                })?;
            }
        }
        Ok(device)
    }

    /// The words of QEMU's command line for a boot method as the device gives it (`command`,
    /// then `options`, then `extra`), before the job's images are added.
    pub fn qemu_words(&self, method: &str) -> Option<Vec<String>> {
        let params = self.boot_method(method)?.get("parameters")?;
        let mut words = shell_words::split(&params.get("command")?.scalar_text()?).ok()?;
        for key in ["options", "extra"] {
            let items: Vec<&Node> = match params.get(key) {
                Some(n) => match n.as_seq() {
                    Some(s) => s.iter().collect(),
                    None => vec![n],
                },
                None => continue,
            };
            for item in items {
                if let Some(t) = item.scalar_text() {
                    words.extend(shell_words::split(&t).ok()?);
                }
            }
        }
        Some(words)
    }

    /// Reads a rendered device YAML; `fallback_name` names the device if it has no `hostname`.
    pub fn from_yaml(source: &str, text: &str, fallback_name: &str) -> Result<Device, DeviceError> {
        let node = crate::diag::load_document(source, text).map_err(DeviceError::Invalid)?;
        let mut r = Report::new(source);
        let dev = read_device(&mut r, &node, source, text, fallback_name);
        match dev {
            Some(d) if !r.has_errors() => Ok(d),
            _ => Err(DeviceError::Invalid(r)),
        }
    }

    /// `actions.boot.methods.<method>`, if the device supports that boot method.
    pub fn boot_method(&self, method: &str) -> Option<&Node> {
        let methods = self.node.path(&["actions", "boot", "methods"])?;
        methods
            .as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(method))
            .map(|(_, v)| v)
    }

    /// Whether the device lists `method` under `actions.boot.methods`.
    pub fn has_boot_method(&self, method: &str) -> bool {
        self.boot_method(method).is_some()
    }

    /// Whether the device lists `to` under `actions.deploy.methods`.
    pub fn has_deploy_method(&self, to: &str) -> bool {
        self.node
            .path(&["actions", "deploy", "methods"])
            .and_then(Node::as_map)
            .is_some_and(|m| m.iter().any(|(k, _)| k.as_str() == Some(to)))
    }

    /// A value under `constants`, e.g. `["u-boot", "interrupt-prompt"]`.
    pub fn constant(&self, path: &[&str]) -> Option<&Node> {
        self.node.get("constants")?.path(path)
    }

    /// The device constant `failure_retry` (default 1).
    pub fn failure_retry(&self) -> u32 {
        self.constant(&["failure_retry"])
            .and_then(Node::as_i64)
            .and_then(|i| u32::try_from(i).ok())
            .filter(|i| *i > 0)
            .unwrap_or(1)
    }

    /// The device constant `boot_retry`, if set.
    pub fn boot_retry(&self) -> Option<u32> {
        self.constant(&["boot_retry"])
            .and_then(Node::as_i64)
            .and_then(|i| u32::try_from(i).ok())
            .filter(|i| *i > 0)
    }

    /// Whether the device has a hard reset command (LAVA then power-cycles with `pdu-reboot`).
    pub fn has_power_commands(&self) -> bool {
        !self.commands.hard_reset.is_empty()
    }
}

fn delay(r: &mut Report, n: Option<&Node>, path: &str) -> u64 {
    match n {
        Some(v) => crate::reader::integer(r, v, path, 0, 10_000).unwrap_or(0) as u64,
        None => 0,
    }
}

fn read_device(
    r: &mut Report,
    root: &Node,
    source: &str,
    text: &str,
    fallback: &str,
) -> Option<Device> {
    let mut f = Fields::new(r, root, "")?;
    let hostname = f
        .opt("hostname")
        .and_then(Node::scalar_text)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| fallback.to_string());
    let device_type = f
        .opt("devicetype")
        .and_then(Node::scalar_text)
        .unwrap_or_default();
    let cd = f.opt("character_delays");
    let character_delays = CharacterDelays {
        deploy_ms: delay(
            r,
            cd.and_then(|c| c.get("deploy")),
            "character_delays.deploy",
        ),
        boot_ms: delay(r, cd.and_then(|c| c.get("boot")), "character_delays.boot"),
        test_ms: delay(r, cd.and_then(|c| c.get("test")), "character_delays.test"),
    };
    let commands = f
        .opt("commands")
        .map(|c| read_commands(r, c))
        .unwrap_or_default();
    let (mut action_timeouts, mut connection_timeouts) = (BTreeMap::new(), BTreeMap::new());
    if let Some(t) = f.opt("timeouts") {
        for (key, out) in [
            ("actions", &mut action_timeouts),
            ("connections", &mut connection_timeouts),
        ] {
            if let Some(m) = t.get(key) {
                let path = format!("timeouts.{key}");
                for (name, _, v) in entries(r, m, &path) {
                    if let Some(to) = Timeout::parse(r, v, &format!("{path}.{name}")) {
                        out.insert(name, to);
                    }
                }
            }
        }
    }
    if let Some(a) = f.opt("actions") {
        if a.as_map().is_none() {
            r.error(
                a,
                "actions",
                format!("expected a mapping, found {}", a.kind()),
            );
        }
    }
    let confinement = f
        .opt("confinement")
        .map(|c| read_confinement(r, c))
        .unwrap_or_default();
    // Device files hold many keys for other tools and device types; none is an error.
    let all: Vec<&str> = root
        .as_map()
        .unwrap_or(&[])
        .iter()
        .filter_map(|(k, _)| k.as_str())
        .collect();
    f.finish_with(r, "device", &all);
    Some(Device {
        source: source.to_string(),
        hostname,
        device_type,
        character_delays,
        commands,
        confinement,
        action_timeouts,
        connection_timeouts,
        node: root.clone(),
        text: text.to_string(),
    })
}

fn read_confinement(r: &mut Report, n: &Node) -> DeviceConfinement {
    let mut c = DeviceConfinement::default();
    if n.as_map().is_none() {
        if !n.is_null() {
            r.error(
                n,
                "confinement",
                format!("expected a mapping, found {}", n.kind()),
            );
        }
        return c;
    }
    for (key, out) in [("enabled", &mut c.enabled), ("network", &mut c.network)] {
        if let Some(v) = n.get(key) {
            match v.as_bool() {
                Some(b) => *out = b,
                None => r.error(
                    v,
                    &format!("confinement.{key}"),
                    format!("expected true or false, found {}", v.kind()),
                ),
            }
        }
    }
    if let Some(g) = n.get("groups").filter(|g| !g.is_null()) {
        c.groups = str_or_list(r, g, "confinement.groups");
    }
    c
}

fn cmd_list(r: &mut Report, n: Option<&Node>, path: &str) -> Vec<String> {
    n.map(|v| str_or_list(r, v, path)).unwrap_or_default()
}

fn read_commands(r: &mut Report, n: &Node) -> Commands {
    let mut c = Commands {
        connect: n.get("connect").and_then(Node::as_str).map(str::to_string),
        hard_reset: cmd_list(r, n.get("hard_reset"), "commands.hard_reset"),
        power_on: cmd_list(r, n.get("power_on"), "commands.power_on"),
        power_off: cmd_list(r, n.get("power_off"), "commands.power_off"),
        soft_reboot: cmd_list(r, n.get("soft_reboot"), "commands.soft_reboot"),
        pre_power: cmd_list(r, n.get("pre_power_command"), "commands.pre_power_command"),
        pre_os: cmd_list(r, n.get("pre_os_command"), "commands.pre_os_command"),
        ..Commands::default()
    };
    if let Some(conns) = n.get("connections").filter(|x| !x.is_null()) {
        for (name, _, v) in entries(r, conns, "commands.connections") {
            let connect = v
                .get("connect")
                .and_then(Node::scalar_text)
                .unwrap_or_default();
            let tags = v
                .get("tags")
                .map(|t| str_or_list(r, t, "tags"))
                .unwrap_or_default();
            c.connections.push(Connection {
                name,
                connect,
                tags,
            });
        }
        if c.connect.is_none() {
            let chosen = c
                .connections
                .iter()
                .find(|x| x.tags.iter().any(|t| t == "primary"))
                .or(c.connections.first());
            c.connect = chosen.map(|x| x.connect.clone());
            c.connect_from = chosen.map(|x| x.name.clone());
        }
    }
    if let Some(users) = n.get("users").filter(|x| !x.is_null()) {
        for (name, _, v) in entries(r, users, "commands.users") {
            let do_cmd = v.get("do").and_then(Node::scalar_text);
            let undo = v.get("undo").and_then(Node::scalar_text);
            match do_cmd {
                Some(d) => c.users.push((name, d, undo)),
                None => r.error(
                    v,
                    &format!("commands.users.{name}.do"),
                    "required key not provided",
                ),
            }
        }
    }
    c
}
