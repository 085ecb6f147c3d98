//! `basalt devices`, `basalt workers` and `basalt device-types`: a lab admin's commands,
//! each one or two calls of the master's REST API (LAVA's v0.2 and basalt's additions,
//! `docs/lab.md`) with the admin token. A worker's keypair is made here, on the admin's
//! machine: only its public key is sent.

use crate::{print_rows, ServerArgs};
use anyhow::{bail, Context, Result};
use basalt::client::{Client, ClientError};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct DevicesArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: DevicesCommand,
}

#[derive(Subcommand)]
enum DevicesCommand {
    /// List devices (Retired ones with --all).
    List {
        #[arg(long)]
        all: bool,
    },
    /// Show one device.
    Show { hostname: String },
    /// Register a device on a worker. It starts in Maintenance (LAVA's default) unless
    /// --health says otherwise: set its dictionary, then `basalt devices unknown HOSTNAME`
    /// (a health check first, when its type has one) or `good`.
    Add {
        hostname: String,
        /// Its device type (`basalt device-types list`).
        #[arg(long = "type", value_name = "TYPE")]
        device_type: String,
        /// The worker it is attached to (`basalt workers list`).
        #[arg(long, value_name = "WORKER")]
        worker: String,
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// A tag jobs may ask for (repeat for several).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Its device dictionary (Jinja2, `{% extends 'TYPE.jinja2' %}`), checked before the
        /// device is added.
        #[arg(long, value_name = "FILE")]
        dictionary: Option<PathBuf>,
        /// Its health once added.
        #[arg(long, value_enum, ignore_case = true, default_value_t = NewHealth::Maintenance)]
        health: NewHealth,
    },
    /// Replace a device's dictionary; it must render with the master's device-type templates
    /// (else the error's line and column are shown and the old one stays).
    SetDictionary { hostname: String, file: PathBuf },
    /// Print a device's dictionary.
    GetDictionary { hostname: String },
    /// Set a device's health by LAVA's name: Good, Unknown, Looping, Bad, Maintenance, Retired.
    SetHealth {
        hostname: String,
        health: String,
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Take a device out of service (it finishes its current job).
    Maintenance {
        hostname: String,
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Retire a device for good (its current job is canceled).
    Retire {
        hostname: String,
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Put a device into service without a health check.
    Good {
        hostname: String,
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Put a device into service after a health check (when its type has one).
    Unknown {
        hostname: String,
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Queue a health check of a device now (an error when its type has none).
    HealthCheck { hostname: String },
    /// Add a tag to a device, or remove one.
    Tag {
        hostname: String,
        #[arg(value_enum)]
        action: TagAction,
        tag: String,
    },
}

/// The healths a device may be added with.
#[derive(Clone, Copy, ValueEnum)]
enum NewHealth {
    Unknown,
    Maintenance,
    Good,
}

impl NewHealth {
    fn name(self) -> &'static str {
        match self {
            NewHealth::Unknown => "Unknown",
            NewHealth::Maintenance => "Maintenance",
            NewHealth::Good => "Good",
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum TagAction {
    Add,
    Remove,
}

#[derive(Args)]
pub struct WorkersArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: WorkersCommand,
}

#[derive(Subcommand)]
enum WorkersCommand {
    /// List workers.
    List,
    /// Show one worker.
    Show { name: String },
    /// Register a worker: its CURVE keypair is made here (the secret never leaves this
    /// machine), its public key is admitted by the master, and DIR gets NAME.key,
    /// NAME.key_secret (mode 0600) and master.key for the worker host.
    Add {
        name: String,
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// Where the key files go (default ./NAME-keys; created, never overwritten).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Stop giving the worker's devices new jobs.
    Maintenance {
        name: String,
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Give the worker's devices jobs again (its Good devices get a health check first).
    Activate {
        name: String,
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Retire the worker and its devices (but those Bad or already Retired).
    Retire {
        name: String,
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
}

#[derive(Args)]
pub struct DeviceTypesArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: DeviceTypesCommand,
}

#[derive(Subcommand)]
enum DeviceTypesCommand {
    /// List device types.
    List,
    /// Show one device type: its schedule, aliases and health check.
    Show { name: String },
    /// Add a device type, or change the settings given of an existing one.
    Add {
        name: String,
        /// Its health-check job (LAVA YAML), run by the master on each device of the type.
        #[arg(long, value_name = "FILE")]
        health_check: Option<PathBuf>,
        /// How often a device's check comes due (LAVA's default: 24).
        #[arg(long, value_name = "N")]
        health_frequency: Option<u32>,
        /// What the frequency counts (LAVA's default: hours).
        #[arg(long, value_enum, ignore_case = true)]
        health_denominator: Option<Denominator>,
        /// Devices of this type get no health checks.
        #[arg(long, conflicts_with = "enable_health_check")]
        disable_health_check: bool,
        /// Devices of this type get health checks again.
        #[arg(long)]
        enable_health_check: bool,
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
    },
    /// Aliases: other names jobs may give as their device_type.
    #[command(subcommand)]
    Alias(AliasCommand),
}

#[derive(Clone, Copy, ValueEnum)]
enum Denominator {
    Hours,
    Jobs,
}

#[derive(Subcommand)]
enum AliasCommand {
    /// Jobs asking for ALIAS run on TYPE's devices.
    Add {
        #[arg(value_name = "TYPE")]
        device_type: String,
        alias: String,
    },
    /// Remove an alias.
    Remove { alias: String },
    /// List aliases.
    List,
}

/// The master's client, and its URL: the one place that reads [`ServerArgs`].
fn client(s: &ServerArgs) -> (Client, &str) {
    (crate::client_of(&s.master), &s.master.url)
}

// ---- devices ---------------------------------------------------------------------------------

pub fn devices(a: &DevicesArgs) -> Result<ExitCode> {
    let (c, _) = client(&a.server);
    match &a.command {
        DevicesCommand::List { all } => {
            let rows = c.list(if *all { "devices/?all=1" } else { "devices/" })?;
            print_rows(
                &rows,
                &["hostname", "device_type", "worker_host", "state", "health"],
                a.server.json,
            );
        }
        DevicesCommand::Show { hostname } => {
            let d = c.get(&format!("devices/{hostname}/"))?;
            println!("{d}");
        }
        DevicesCommand::Add {
            hostname,
            device_type,
            worker,
            description,
            tags,
            dictionary,
            health,
        } => {
            let mut body = json!({
                "hostname": hostname,
                "device_type": device_type,
                "worker_host": worker,
                "description": description.as_deref().unwrap_or(""),
                "tags": tags,
                "health": health.name(),
            });
            if let Some(file) = dictionary {
                body["dictionary"] = json!(read(file)?);
            }
            let d = c
                .post("devices/", &body)
                .map_err(|e| at_file(e, dictionary.as_deref()))?;
            println!(
                "device {hostname} ({device_type} on {worker}) added: {}",
                d.get("health").and_then(Value::as_str).unwrap_or("?")
            );
            if dictionary.is_none() {
                println!("next: basalt devices set-dictionary {hostname} FILE");
            }
        }
        DevicesCommand::SetDictionary { hostname, file } => {
            let text = read(file)?;
            c.post(
                &format!("devices/{hostname}/dictionary/"),
                &json!({ "dictionary": text }),
            )
            .map_err(|e| at_file(e, Some(file)))?;
            println!("device {hostname}: dictionary set from {}", file.display());
        }
        DevicesCommand::GetDictionary { hostname } => {
            let d = c.get(&format!("devices/{hostname}/dictionary/"))?;
            let text = d
                .get("dictionary")
                .and_then(Value::as_str)
                .context("the answer has no dictionary")?;
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
        }
        DevicesCommand::SetHealth {
            hostname,
            health,
            reason,
        } => set_health(&c, hostname, health, reason)?,
        DevicesCommand::Maintenance { hostname, reason } => {
            set_health(&c, hostname, "Maintenance", reason)?
        }
        DevicesCommand::Retire { hostname, reason } => set_health(&c, hostname, "Retired", reason)?,
        DevicesCommand::Good { hostname, reason } => set_health(&c, hostname, "Good", reason)?,
        DevicesCommand::Unknown { hostname, reason } => {
            set_health(&c, hostname, "Unknown", reason)?
        }
        DevicesCommand::HealthCheck { hostname } => {
            let r = c.post(&format!("devices/{hostname}/health_check/"), &json!({}))?;
            println!("{}", message(&r));
        }
        DevicesCommand::Tag {
            hostname,
            action,
            tag,
        } => {
            let r = match action {
                TagAction::Add => c.post(
                    &format!("devices/{hostname}/tags/"),
                    &json!({ "name": tag }),
                )?,
                TagAction::Remove => c.delete(&format!("devices/{hostname}/tags/{tag}/"))?,
            };
            let tags: Vec<&str> = r
                .get("tags")
                .and_then(Value::as_array)
                .map(|t| t.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            println!("device {hostname} tags: {}", tags.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn set_health(c: &Client, hostname: &str, health: &str, reason: &Option<String>) -> Result<()> {
    post_health(
        c,
        &format!("devices/{hostname}/set_health/"),
        health,
        reason,
    )
}

/// POSTs `{"health", "reason"}` to a `set_health/` path; prints the answer's message.
fn post_health(c: &Client, path: &str, health: &str, reason: &Option<String>) -> Result<()> {
    let mut body = json!({ "health": health });
    if let Some(r) = reason {
        body["reason"] = json!(r);
    }
    println!("{}", message(&c.post(path, &body)?));
    Ok(())
}

/// The `message` of an answer, or the answer.
fn message(v: &Value) -> String {
    v.get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

fn read(file: &Path) -> Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
}

/// A refusal that says where in `file` it is, as `FILE:LINE:COLUMN: message`.
fn at_file(e: ClientError, file: Option<&Path>) -> anyhow::Error {
    match (&e, file) {
        (
            ClientError::Status {
                message,
                position: Some((line, column)),
                ..
            },
            Some(file),
        ) => {
            let suffix = format!(" (line {line}, column {column})");
            let text = message.strip_suffix(&suffix).unwrap_or(message);
            anyhow::anyhow!("{}:{line}:{column}: {text}", file.display())
        }
        _ => e.into(),
    }
}

// ---- workers ---------------------------------------------------------------------------------

pub fn workers(a: &WorkersArgs) -> Result<ExitCode> {
    let (c, url) = client(&a.server);
    match &a.command {
        WorkersCommand::List => {
            let rows = c.list("workers/")?;
            print_rows(&rows, &["hostname", "state", "health"], a.server.json);
        }
        WorkersCommand::Show { name } => println!("{}", c.get(&format!("workers/{name}/"))?),
        WorkersCommand::Add {
            name,
            description,
            dir,
        } => {
            let dir = dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{name}-keys")));
            add_worker(&c, url, name, description.as_deref(), &dir)?;
        }
        WorkersCommand::Maintenance { name, reason } => {
            worker_health(&c, name, "Maintenance", reason)?
        }
        WorkersCommand::Activate { name, reason } => worker_health(&c, name, "Active", reason)?,
        WorkersCommand::Retire { name, reason } => worker_health(&c, name, "Retired", reason)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn worker_health(c: &Client, name: &str, health: &str, reason: &Option<String>) -> Result<()> {
    post_health(c, &format!("workers/{name}/set_health/"), health, reason)
}

/// `basalt workers add`: the keypair made here and written to `dir` first (nothing is
/// registered if that fails), then the worker registered with its public key; the files are
/// removed again if the master refuses it.
fn add_worker(
    c: &Client,
    url: &str,
    name: &str,
    description: Option<&str>,
    dir: &Path,
) -> Result<()> {
    use basalt_link::cert::{self, Keypair};
    cert::check_name(name)?;
    let master_file = dir.join("master.key");
    if master_file.exists() {
        bail!(
            "{} exists: keys are never overwritten (choose another --dir)",
            master_file.display()
        );
    }
    let pair = Keypair::generate();
    let (public, secret) = pair.write(dir, name).map_err(|e| match &e {
        cert::CertError::Io { source, .. }
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            anyhow::anyhow!("{e} (keys are never overwritten: choose another --dir)")
        }
        _ => anyhow::anyhow!("{e}"),
    })?;
    let registered = c.post(
        "workers/",
        &json!({
            "hostname": name,
            "description": description.unwrap_or(""),
            "public_key": pair.public.z85(),
        }),
    );
    let answer = match registered {
        Ok(a) => a,
        Err(e) => {
            let _ = std::fs::remove_file(&public);
            let _ = std::fs::remove_file(&secret);
            return Err(anyhow::Error::from(e).context(format!("registering worker {name}")));
        }
    };
    let master = answer
        .get("master_public_key")
        .and_then(Value::as_str)
        .context("the master did not answer its public key (is it a basalt master?)")?;
    let master = cert::PublicKey::from_z85(master)
        .map_err(|e| anyhow::anyhow!("the master's public key: {e}"))?;
    master.write(dir, "master")?;
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split(['/', ':'])
        .next()
        .unwrap_or("MASTER");
    println!("worker {name} registered; the master admits its key (certs/workers/{name}.key)");
    println!("  {}  its public key", public.display());
    println!(
        "  {}  its secret key (mode 0600: keep it private)",
        secret.display()
    );
    println!("  {}  the master's public key", master_file.display());
    println!();
    println!("On the worker host, copy {name}.key_secret and master.key to /etc/basalt/ (the");
    println!("secret readable by the worker's user only) and run:");
    println!();
    println!(
        "  basalt-worker --name {name} --master tcp://{host}:5556 \\\n      \
         --master-key /etc/basalt/master.key --key /etc/basalt/{name}.key_secret \\\n      \
         --state-dir /var/lib/basalt-worker"
    );
    println!();
    println!("(5556: the master's --workers port.)");
    Ok(())
}

// ---- device types ----------------------------------------------------------------------------

pub fn device_types(a: &DeviceTypesArgs) -> Result<ExitCode> {
    let (c, _) = client(&a.server);
    match &a.command {
        DeviceTypesCommand::List => {
            let rows = c.list("devicetypes/")?;
            let rows: Vec<Value> = rows
                .into_iter()
                .map(|mut t| {
                    t["health_check"] = json!(t["health_check"].is_string());
                    t
                })
                .collect();
            print_rows(
                &rows,
                &[
                    "name",
                    "health_check",
                    "health_frequency",
                    "health_denominator",
                    "disable_health_check",
                    "aliases",
                ],
                a.server.json,
            );
        }
        DeviceTypesCommand::Show { name } => {
            let t = c.get(&format!("devicetypes/{name}/"))?;
            if a.server.json {
                println!("{t}");
            } else {
                show_type(&t);
            }
        }
        DeviceTypesCommand::Add {
            name,
            health_check,
            health_frequency,
            health_denominator,
            disable_health_check,
            enable_health_check,
            description,
        } => {
            let mut body = json!({ "name": name });
            if let Some(file) = health_check {
                body["health_check"] = json!(read(file)?);
            }
            if let Some(n) = health_frequency {
                body["health_frequency"] = json!(n);
            }
            if let Some(d) = health_denominator {
                body["health_denominator"] = json!(match d {
                    Denominator::Hours => "hours",
                    Denominator::Jobs => "jobs",
                });
            }
            if *disable_health_check || *enable_health_check {
                body["disable_health_check"] = json!(*disable_health_check);
            }
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            let t = c.post("devicetypes/", &body)?;
            show_type(&t);
        }
        DeviceTypesCommand::Alias(AliasCommand::Add { device_type, alias }) => {
            c.post(
                "aliases/",
                &json!({ "name": alias, "device_type": device_type }),
            )?;
            println!("alias {alias}: jobs for it run on {device_type} devices");
        }
        DeviceTypesCommand::Alias(AliasCommand::Remove { alias }) => {
            c.delete(&format!("aliases/{alias}/"))?;
            println!("alias {alias} removed");
        }
        DeviceTypesCommand::Alias(AliasCommand::List) => {
            let rows = c.list("aliases/")?;
            print_rows(&rows, &["name", "device_type"], a.server.json);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A device type as `show` prints it: its settings, then its health check.
fn show_type(t: &Value) {
    let field = |k: &str| crate::cell(t.get(k));
    println!("{:<22} {}", "name", field("name"));
    println!("{:<22} {}", "description", field("description"));
    println!(
        "{:<22} every {} {}{}",
        "health checks",
        field("health_frequency"),
        field("health_denominator"),
        if t["disable_health_check"] == true {
            " (disabled)"
        } else {
            ""
        }
    );
    let aliases: Vec<&str> = t["aliases"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    println!("{:<22} {}", "aliases", aliases.join(", "));
    match t["health_check"].as_str() {
        Some(definition) => println!("health check:\n{definition}"),
        None => println!("{:<22} none", "health check"),
    }
}
