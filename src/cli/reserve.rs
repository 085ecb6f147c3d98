//! `basalt reserve`: reservations on a master (docs/reservations.md), each subcommand one or
//! two calls of its REST API: create (by device type, device or requirements, with a boot),
//! list, show, renew, boot, exec (prints the command's output and exits with its status),
//! power-off, release.

use crate::ServerArgs;
use anyhow::{bail, Context, Result};
use basalt::client::Client;
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct ReserveArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: ReserveCommand,
}

/// Images to boot (or nothing: the board is held, not booted).
#[derive(Args, Default)]
struct BootArgs {
    /// A kernel (http(s)://, file:///, artifact:NAME).
    #[arg(long, value_name = "URL")]
    kernel: Option<String>,
    /// A ramdisk for the kernel.
    #[arg(long, value_name = "URL")]
    ramdisk: Option<String>,
    /// A device tree.
    #[arg(long, value_name = "URL")]
    dtb: Option<String>,
    /// A root filesystem (NFS root on U-Boot boards).
    #[arg(long, value_name = "URL")]
    rootfs: Option<String>,
    /// A whole disk image (qemu devices), instead of a kernel.
    #[arg(long, value_name = "URL", conflicts_with_all = ["kernel", "ramdisk", "dtb"])]
    image: Option<String>,
    /// What the boot waits for (default `/ # `; repeatable).
    #[arg(long = "prompt", value_name = "TEXT")]
    prompts: Vec<String>,
    /// How long the boot may take, in seconds (default 300).
    #[arg(long, value_name = "SECS")]
    boot_timeout: Option<u64>,
}

impl BootArgs {
    /// The boot request, `None` when no image is given.
    fn request(&self) -> Option<Value> {
        let mut m = Map::new();
        for (k, v) in [
            ("kernel", &self.kernel),
            ("ramdisk", &self.ramdisk),
            ("dtb", &self.dtb),
            ("rootfs", &self.rootfs),
            ("image", &self.image),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), json!(v));
            }
        }
        if m.is_empty() {
            return None;
        }
        if !self.prompts.is_empty() {
            m.insert("prompts".into(), json!(self.prompts));
        }
        if let Some(t) = self.boot_timeout {
            m.insert("timeout_secs".into(), json!(t));
        }
        Some(Value::Object(m))
    }
}

#[derive(Subcommand)]
enum ReserveCommand {
    /// Reserve a machine by device type, device or requirements (and boot it).
    Create {
        /// Any device of this type.
        #[arg(long, value_name = "TYPE", conflicts_with = "device")]
        device_type: Option<String>,
        /// This device.
        #[arg(long, value_name = "HOSTNAME")]
        device: Option<String>,
        /// A requirement: arch=arm64, ram=2G, cpus=4, features=neon, subarch=neon, tags=usb
        /// (repeatable; features and tags add up).
        #[arg(long = "require", value_name = "KEY=VALUE")]
        requirements: Vec<String>,
        /// The lease: seconds, or 15m, 2h, 1d (default 15m).
        #[arg(long, value_name = "DURATION")]
        lease: Option<String>,
        /// An OpenSSH public key to authorise on the board (else the master makes a key:
        /// `--json` shows it).
        #[arg(long, value_name = "FILE.pub")]
        ssh_key: Option<PathBuf>,
        /// The user SSH logs in as (default root).
        #[arg(long, value_name = "USER")]
        ssh_user: Option<String>,
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        #[command(flatten)]
        boot: BootArgs,
        /// Wait until it is ready (or failed).
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 900)]
        wait_timeout: u64,
    },
    /// List your reservations (everyone's with --all, for admins).
    List {
        #[arg(long)]
        all: bool,
        /// Only those in this state (queued, allocated, booting, ready, failed, released,
        /// expired).
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one reservation.
    Show { id: u64 },
    /// Move a lease's expiry to now + its length (or --lease).
    Renew {
        id: u64,
        #[arg(long, value_name = "DURATION")]
        lease: Option<String>,
    },
    /// Boot the held board.
    Boot {
        id: u64,
        #[command(flatten)]
        boot: BootArgs,
        /// Wait until it is ready (or failed).
        #[arg(long)]
        wait: bool,
        #[arg(long, value_name = "SECS", default_value_t = 900)]
        wait_timeout: u64,
    },
    /// Run a command on the booted board; prints its output, exits with its status.
    Exec {
        id: u64,
        /// How long the command may run, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        timeout: u64,
        /// The command (after --).
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Power the held board off (it stays yours).
    PowerOff { id: u64 },
    /// Release a reservation: the board is powered off and back in the pool.
    Release { id: u64 },
}

/// A lease length in seconds from `900`, `90s`, `15m`, `2h`, `1d`.
fn duration_secs(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .with_context(|| format!("{text:?} is not a duration such as 900, 15m, 2h or 1d"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("{text:?}: the unit is s, m, h or d"),
    };
    n.checked_mul(factor)
        .filter(|s| *s > 0)
        .with_context(|| format!("{text:?} is not a positive duration"))
}

/// `--require KEY=VALUE...` as the API's requirements object.
fn requirements(list: &[String]) -> Result<Option<Value>> {
    if list.is_empty() {
        return Ok(None);
    }
    let mut m = Map::new();
    for item in list {
        let (k, v) = item
            .split_once('=')
            .with_context(|| format!("--require {item:?}: KEY=VALUE, such as ram=2G"))?;
        let (k, v) = (k.trim(), v.trim());
        match k {
            "features" | "subarch" | "tags" => {
                let entry = m.entry(k.to_string()).or_insert_with(|| json!([]));
                if let Value::Array(a) = entry {
                    a.extend(v.split(',').filter(|s| !s.is_empty()).map(|s| json!(s)));
                }
            }
            _ => {
                m.insert(k.to_string(), json!(v));
            }
        }
    }
    Ok(Some(Value::Object(m)))
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// One reservation as a few lines (or JSON).
fn print(r: &Value, as_json: bool) {
    if as_json {
        println!("{r}");
        return;
    }
    println!(
        "reservation {}: {} on {} ({}), expires {}",
        text(r, "id"),
        text(r, "state"),
        text(r, "device"),
        text(r, "device_type"),
        text(r, "expires")
    );
    if let Some(reason) = r.get("reason").and_then(Value::as_str) {
        println!("  reason: {reason}");
    }
    let c = &r["connection"];
    if let Some(console) = c.get("console") {
        println!(
            "  console: telnet {} {}, then send the token{}",
            text(console, "host"),
            text(console, "port"),
            console
                .get("token")
                .and_then(Value::as_str)
                .map(|t| format!(" {t}"))
                .unwrap_or_default()
        );
    }
    if let Some(ssh) = c.get("ssh") {
        println!(
            "  ssh: ssh -p {} {}@{}{}",
            text(ssh, "port"),
            text(ssh, "user"),
            text(ssh, "host"),
            if ssh.get("private_key").is_some() {
                " (the master's key: --json shows it)"
            } else {
                ""
            }
        );
    }
}

/// Polls reservation `id` until it is ready, failed or over; its last state.
fn wait(c: &Client, id: u64, within: Duration) -> Result<Value> {
    let deadline = Instant::now() + within;
    loop {
        let r = c.get(&format!("reservations/{id}/"))?;
        let state = r.get("state").and_then(Value::as_str).unwrap_or("");
        if matches!(state, "ready" | "failed" | "released" | "expired") {
            return Ok(r);
        }
        if Instant::now() > deadline {
            bail!("reservation {id} is still {state} after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The exit status of a waited-for reservation: 0 ready, 1 otherwise.
fn ready_status(r: &Value) -> ExitCode {
    if r.get("state").and_then(Value::as_str) == Some("ready") {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub fn reserve(a: &ReserveArgs) -> Result<ExitCode> {
    let c = crate::client_of(&a.server.master);
    let as_json = a.server.json;
    match &a.command {
        ReserveCommand::Create {
            device_type,
            device,
            requirements: reqs,
            lease,
            ssh_key,
            ssh_user,
            description,
            boot,
            wait: w,
            wait_timeout,
        } => {
            let mut body = Map::new();
            if let Some(t) = device_type {
                body.insert("device_type".into(), json!(t));
            }
            if let Some(d) = device {
                body.insert("device".into(), json!(d));
            }
            if let Some(r) = requirements(reqs)? {
                body.insert("requirements".into(), r);
            }
            if body.is_empty() {
                bail!("give --device-type, --device or --require KEY=VALUE");
            }
            if let Some(l) = lease {
                body.insert("lease_secs".into(), json!(duration_secs(l)?));
            }
            if let Some(f) = ssh_key {
                let key = std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?;
                body.insert("ssh_public_key".into(), json!(key.trim()));
            }
            if let Some(u) = ssh_user {
                body.insert("ssh_user".into(), json!(u));
            }
            if let Some(d) = description {
                body.insert("description".into(), json!(d));
            }
            if let Some(b) = boot.request() {
                body.insert("boot".into(), b);
            }
            let r = c.post("reservations/", &Value::Object(body))?;
            if *w {
                let id = r
                    .get("id")
                    .and_then(Value::as_u64)
                    .context("no id in the answer")?;
                let r = wait(&c, id, Duration::from_secs(*wait_timeout))?;
                print(&r, as_json);
                return Ok(ready_status(&r));
            }
            print(&r, as_json);
        }
        ReserveCommand::List { all, state } => {
            let mut path = "reservations/?limit=1000".to_string();
            if *all {
                path.push_str("&all=1");
            }
            if let Some(s) = state {
                path.push_str(&format!("&state={s}"));
            }
            let page = c.get(&path)?;
            let rows = page
                .get("results")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            crate::print_rows(
                &rows,
                &["id", "state", "holder", "device", "device_type", "expires"],
                as_json,
            );
        }
        ReserveCommand::Show { id } => print(&c.get(&format!("reservations/{id}/"))?, as_json),
        ReserveCommand::Renew { id, lease } => {
            let body = match lease {
                Some(l) => json!({ "lease_secs": duration_secs(l)? }),
                None => json!({}),
            };
            print(
                &c.post(&format!("reservations/{id}/renew/"), &body)?,
                as_json,
            );
        }
        ReserveCommand::Boot {
            id,
            boot,
            wait: w,
            wait_timeout,
        } => {
            let body = boot.request().unwrap_or_else(|| json!({}));
            let r = c.post(&format!("reservations/{id}/boot/"), &body)?;
            if *w {
                let r = wait(&c, *id, Duration::from_secs(*wait_timeout))?;
                print(&r, as_json);
                return Ok(ready_status(&r));
            }
            print(&r, as_json);
        }
        ReserveCommand::Exec {
            id,
            timeout,
            command,
        } => {
            let c = Client::with_timeout(
                &a.server.master.url,
                a.server.master.token.clone(),
                Duration::from_secs(timeout.saturating_add(30)),
            );
            let r = c.post(
                &format!("reservations/{id}/exec/"),
                &json!({ "command": command.join(" "), "timeout_secs": timeout }),
            )?;
            if as_json {
                println!("{r}");
            } else {
                print!("{}", r.get("output").and_then(Value::as_str).unwrap_or(""));
                if r.get("truncated").and_then(Value::as_bool) == Some(true) {
                    eprintln!("basalt: the output was truncated");
                }
            }
            let status = r.get("exit_status").and_then(Value::as_i64).unwrap_or(1);
            return Ok(ExitCode::from(
                u8::try_from(status.clamp(0, 255)).unwrap_or(1),
            ));
        }
        ReserveCommand::PowerOff { id } => print(
            &c.post(&format!("reservations/{id}/power-off/"), &json!({}))?,
            as_json,
        ),
        ReserveCommand::Release { id } => print(
            &c.post(&format!("reservations/{id}/release/"), &json!({}))?,
            as_json,
        ),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_requirements_read() {
        assert_eq!(duration_secs("15m").unwrap(), 900);
        assert_eq!(duration_secs("2h").unwrap(), 7200);
        assert!(duration_secs("soon").is_err());
        let r = requirements(&[
            "arch=arm64".into(),
            "tags=usb".into(),
            "tags=fast,big".into(),
            "ram=2G".into(),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            r,
            json!({"arch": "arm64", "ram": "2G", "tags": ["usb", "fast", "big"]})
        );
        assert!(requirements(&["ram".into()]).is_err());
    }
}
