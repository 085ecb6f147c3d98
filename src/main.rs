//! `basalt`: the user's command line. `validate` and `describe` check a LAVA job (and its
//! pipeline on a device) without touching hardware.

use anyhow::{Context, Result};
use basalt::device::Device;
use basalt::job::{parse_job_file_as, Job, Reading};
use basalt::pipeline::{build_pipeline, Pipeline};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The lab admin's subcommands (`devices`, `workers`, `device-types`), and `artifacts`.
mod cli {
    pub mod admin;
    pub mod artifacts;
    pub mod reserve;
}

/// Exit status for input that is not valid (LAVA's "invalid job").
const EXIT_INVALID: u8 = 2;

#[derive(Parser)]
#[command(
    name = "basalt",
    version,
    about = "A lean LAVA-compatible board farm: validate, describe and run LAVA jobs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a job definition (and, with --device, that its pipeline can be built there).
    /// Exit 0 when valid, 2 when not.
    Validate(JobArgs),
    /// Print the pipeline of a job on a device as YAML: level, name, description, timeout.
    Describe(DescribeArgs),
    /// Run a job on a device, like LAVA's lava-run. Exit 0 Complete, 1 Incomplete, 2 invalid.
    Run(Box<RunArgs>),
    /// Hold a board for a reservation (what basalt-worker runs for a lease): its console served
    /// over telnet from the moment it is held, boots and commands from the control socket;
    /// until SIGTERM (then the board is powered off). docs/reservations.md.
    Hold(Box<HoldArgs>),
    /// The demo: a lab on this machine (basalt-master, a worker, a QEMU board and basalt-board
    /// boards), the demo jobs submitted through the master, a log followed live, the results.
    /// `--local`: one job run directly, as `basalt run` does.
    Demo(DemoArgs),
    /// CURVE keys for the lab's link between master and workers.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Jobs on a master (LAVA's REST API v0.2).
    Jobs(JobsArgs),
    /// Devices of a master: list, add, dictionaries, health, tags, health checks.
    Devices(cli::admin::DevicesArgs),
    /// Workers of a master: list, add (with its keys), health.
    Workers(cli::admin::WorkersArgs),
    /// Device types of a master: health checks and their schedule, aliases.
    DeviceTypes(cli::admin::DeviceTypesArgs),
    /// Reservations on a master: hold a machine, boot it, run commands, release it.
    Reserve(cli::reserve::ReserveArgs),
    /// Artifacts of a master's store (images for jobs and boots): upload, list, show, delete.
    Artifacts(cli::artifacts::ArtifactsArgs),
    /// ser2net 4 for a worker's serial consoles (docs/admin.md, "Serial consoles with ser2net").
    #[command(subcommand)]
    Ser2net(Ser2netCommand),
    /// Stable /dev names for this host's USB serial adapters: udev rules from the USB inventory.
    #[command(subcommand)]
    Udev(UdevCommand),
    /// LAVA's MultiNode coordinator on TCP (LAVA's wire protocol, so LAVA's dispatchers can
    /// use it; basalt's clients are answered without polling). Runs until interrupted.
    Coordinator(CoordinatorArgs),
}

#[derive(Args)]
struct CoordinatorArgs {
    /// The address to listen on (LAVA's port is 3079).
    #[arg(long, default_value = "127.0.0.1:3079", value_name = "HOST:PORT")]
    listen: String,
    /// A file holding a token: requests must then carry it (`basalt_token`).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The poll delay polling (LAVA) clients should use, in seconds (logged only).
    #[arg(long, default_value_t = 3)]
    poll_delay: u32,
}

/// Where the master is (also `$BASALT_URL`, `$BASALT_TOKEN`).
#[derive(Args)]
struct MasterArgs {
    /// The master's HTTP address.
    #[arg(
        long,
        global = true,
        env = "BASALT_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// An API token (`basalt-master token add USER`; `--admin` for the lab's administration).
    #[arg(long, global = true, env = "BASALT_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// The master, and how to print its answers.
#[derive(Args)]
struct ServerArgs {
    #[command(flatten)]
    master: MasterArgs,
    /// Print JSON as the API gives it, not a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Args)]
struct JobsArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: JobsCommand,
}

#[derive(Subcommand)]
enum JobsCommand {
    /// Submit job definitions; prints their ids.
    Submit {
        files: Vec<PathBuf>,
        /// Follow the (last) job's log until it finishes.
        #[arg(long)]
        follow: bool,
        /// With --follow: LAVA's output.yaml lines, debug included.
        #[arg(long)]
        raw: bool,
    },
    /// List jobs, newest first.
    List {
        /// Only jobs in this state (Submitted, Scheduled, Running, Finished ...).
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one job.
    Show { id: u64 },
    /// Print a job's log: the console, actions and results as `basalt run` shows them
    /// (`--raw`: LAVA's output.yaml lines, debug included).
    Logs {
        id: u64,
        /// Keep printing until the job finishes.
        #[arg(long)]
        follow: bool,
        #[arg(long)]
        raw: bool,
    },
    /// Print a job's results (LAVA's test cases): definition, case, result, measurement.
    Results { id: u64 },
    /// Cancel a job.
    Cancel { id: u64 },
}

#[derive(Subcommand)]
enum Ser2netCommand {
    /// Print a ser2net configuration (YAML) serving each device's `ser2net_device` on a telnet
    /// port, and on stderr each dictionary's `connection_command` line. Devices without
    /// `ser2net_device` are skipped (listed on stderr).
    Generate(Box<Ser2netArgs>),
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("devices").required(true).args(["dictionaries", "worker"]))]
struct Ser2netArgs {
    /// Device dictionaries (one or more, and repeatable: `--dictionary devices/*.jinja2`); a
    /// device's hostname is its file's stem.
    #[arg(long = "dictionary", value_name = "FILE", num_args = 1..)]
    dictionaries: Vec<PathBuf>,
    /// The devices of this worker on the master (--url, --token), with their dictionaries.
    #[arg(long, value_name = "NAME", conflicts_with = "dictionaries")]
    worker: Option<String>,
    #[command(flatten)]
    master: MasterArgs,
    /// The first port for devices without `ser2net_port`, given in hostname order.
    #[arg(long, value_name = "PORT", default_value_t = basalt::admin::ser2net::DEFAULT_BASE_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    base_port: u16,
    /// The address ser2net listens on (anyone who reaches it types on the consoles).
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    address: std::net::IpAddr,
    /// The address in `connection_command` (default: --address; 127.0.0.1 for 0.0.0.0).
    #[arg(long, value_name = "IP")]
    connect_address: Option<std::net::IpAddr>,
    /// Trace every console into DIR/HOSTNAME.trace (what the board printed and what was
    /// typed, with a timestamp at each connection).
    #[arg(long, value_name = "DIR")]
    trace: Option<PathBuf>,
    /// Write the configuration to FILE (atomically) instead of stdout.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Write the `connection_command` lines to FILE instead of stderr.
    #[arg(long, value_name = "FILE")]
    connection_commands: Option<PathBuf>,
    /// Set `connection_command` in the --dictionary files themselves (the line replaced or
    /// added after `extends`; nothing else changes).
    #[arg(long, conflicts_with = "worker")]
    update_dictionaries: bool,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a keypair: DIR/NAME.key (public: give it to the other side) and
    /// DIR/NAME.key_secret (keep it; mode 0600), in ZeroMQ's certificate format (pyzmq's
    /// zmq.auth reads them). Existing files are not overwritten.
    Generate {
        /// The name of the files (the worker's name, or `master`).
        name: String,
        /// Where to write them (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum UdevCommand {
    /// List the USB serial adapters (one line per port) and the other USB devices.
    List {
        /// Print the records as JSON (what `generate --from` reads back).
        #[arg(long)]
        json: bool,
        /// Read recorded devices (a YAML or JSON list) instead of this host's.
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
    },
    /// One udev rule per USB serial port, a /dev/PREFIXNN symlink each, numbered in
    /// serial-number order (then by USB port); printed, or installed with --install.
    Generate(UdevGenerateArgs),
}

#[derive(Args)]
struct UdevGenerateArgs {
    /// The symlinks' name below /dev, before the two-digit number.
    #[arg(long, default_value = basalt::admin::udev::DEFAULT_PREFIX)]
    prefix: String,
    /// Read recorded devices (a YAML or JSON list, as `basalt udev list --json` prints)
    /// instead of this host's.
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
    /// Write the rules file (atomically), then run `udevadm control --reload` and `udevadm
    /// trigger --subsystem-match=tty --action=add`.
    #[arg(long)]
    install: bool,
    /// Where --install writes.
    #[arg(long, value_name = "DIR", default_value = basalt::admin::udev::DEFAULT_RULES_DIR)]
    rules_dir: PathBuf,
    /// The file --install writes in --rules-dir.
    #[arg(long, value_name = "NAME", default_value = basalt::admin::udev::DEFAULT_RULES_FILE)]
    rules_file: String,
    /// With --install: overwrite the file even if basalt did not write it.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct RunArgs {
    /// The job definition (LAVA V2 YAML).
    job: PathBuf,
    #[command(flatten)]
    device: DeviceArgs,
    /// Where output.yaml (the log), results.yaml and description.yaml are written.
    #[arg(long = "output-dir", value_name = "DIR")]
    output_dir: PathBuf,
    /// The job id (used in the overlay path /lava-<id>).
    #[arg(long = "job-id", default_value = "1")]
    job_id: String,
    /// Show only the final summary.
    #[arg(short, long)]
    quiet: bool,
    /// The MultiNode group's coordinator (LAVA's lava-coordinator protocol), for a sub-job.
    #[arg(long = "coordinator", value_name = "HOST:PORT")]
    coordinator: Option<String>,
    /// A file holding the token the coordinator asks for (first line).
    #[arg(
        long = "coordinator-token-file",
        value_name = "FILE",
        requires = "coordinator"
    )]
    coordinator_token_file: Option<PathBuf>,
    #[command(flatten)]
    worker: WorkerArgs,
}

#[derive(Args)]
struct HoldArgs {
    #[command(flatten)]
    device: DeviceArgs,
    /// Where output.yaml (the hold's log: its boots and commands), results.yaml and the last
    /// boot's description.yaml are written.
    #[arg(long = "output-dir", value_name = "DIR")]
    output_dir: PathBuf,
    /// The job id of the reservation.
    #[arg(long = "job-id", default_value = "1")]
    job_id: String,
    /// The control socket (a unix socket made with mode 0600): the worker's boot, exec and
    /// power_off requests, JSON lines.
    #[arg(long, value_name = "SOCKET")]
    control: PathBuf,
    /// The lease (JSON: reservation_id, console_token, watch_token, ssh_public_key,
    /// ssh_user); its tokens never go on a command line.
    #[arg(long = "lease-file", value_name = "FILE")]
    lease_file: PathBuf,
    /// Where the console's telnet server listens.
    #[arg(
        long = "console-listen",
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:0"
    )]
    console_listen: std::net::SocketAddr,
    /// The console's host as the holder is told it (default: the listening address).
    #[arg(long = "advertise-host", value_name = "HOST")]
    advertise_host: Option<String>,
    /// The console's ring buffer (K, M, G suffixes): what a watcher that connects late still
    /// gets.
    #[arg(long = "console-buffer", value_name = "SIZE", default_value = "1M", value_parser = basalt::host::limits::parse_size)]
    console_buffer: u64,
    #[command(flatten)]
    worker: WorkerArgs,
}

/// Where this worker serves files from, for bootloaders that fetch them, and what one job may
/// use (docs/security.md, `## Limits`).
#[derive(Args, Clone)]
struct WorkerArgs {
    /// Write every record of the log to stdout as it is logged (one output.yaml line each),
    /// and nothing else: how basalt-worker runs a job in a process of its own.
    #[arg(long = "log-stdout")]
    log_stdout: bool,
    /// Root directory of the TFTP server the devices fetch from (tftp deploys stage there).
    #[arg(long = "tftp-root", value_name = "DIR", default_value = "/srv/tftp")]
    tftp_root: PathBuf,
    /// Serve the TFTP root with basalt's own read-only TFTP server on ADDR:PORT during the
    /// job (for a `basalt run` with no TFTP server on the host; the server runs as basalt's
    /// user, so --tftp-user is basalt's own).
    #[arg(long = "tftp-listen", value_name = "ADDR:PORT")]
    tftp_listen: Option<std::net::SocketAddr>,
    /// This worker's IP address as the devices see it (`{SERVER_IP}` in boot commands).
    #[arg(long = "server-ip", value_name = "IP", default_value = "127.0.0.1")]
    server_ip: String,
    /// The user the TFTP server runs as: a job's TFTP directory is readable by its group only
    /// (tftpd-hpa: TFTP_USERNAME in /etc/default/tftpd-hpa).
    #[arg(long = "tftp-user", value_name = "USER", default_value = basalt::host::limits::DEFAULT_TFTP_USER)]
    tftp_user: String,
    /// Bytes a job may download and unpack in all (K, M, G, T suffixes); past it the job
    /// ends with a Job error naming the image.
    #[arg(long = "max-job-bytes", value_name = "SIZE", default_value = "16G", value_parser = basalt::host::limits::parse_size)]
    max_job_bytes: u64,
    /// Size limit of output.yaml; past it the log says it was truncated and the job goes on.
    #[arg(long = "max-log-bytes", value_name = "SIZE", default_value = "512M", value_parser = basalt::host::limits::parse_size)]
    max_log_bytes: u64,
    /// Where job file:// URLs and local git repositories may point (repeatable); without it,
    /// anywhere basalt's user can read.
    #[arg(long = "allow-file-root", value_name = "DIR")]
    allow_file_root: Vec<PathBuf>,
    /// The unprivileged user (name or uid) that the job's processes (QEMU, git, the connection
    /// command) run as when basalt is root; see docs/security.md.
    #[arg(long = "job-user", value_name = "USER", default_value = "nobody")]
    job_user: String,
    /// Do not confine the job's processes (they still die with basalt); a warning is logged.
    #[arg(long = "no-confine")]
    no_confine: bool,
    /// Forward 127.0.0.1:PORT (loopback only) to port 22 of a QEMU board, on its user-mode
    /// network (for SSH to a held board; docs/reservations.md). Jobs cannot ask for this.
    #[arg(long = "ssh-forward", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    ssh_forward: Option<u16>,
}

impl Default for WorkerArgs {
    fn default() -> WorkerArgs {
        let limits = basalt::host::limits::Limits::default();
        WorkerArgs {
            tftp_root: PathBuf::from("/srv/tftp"),
            tftp_listen: None,
            server_ip: "127.0.0.1".into(),
            tftp_user: limits.tftp_user,
            max_job_bytes: limits.max_job_bytes,
            max_log_bytes: limits.max_log_bytes,
            allow_file_root: limits.file_roots,
            job_user: "nobody".into(),
            no_confine: false,
            log_stdout: false,
            ssh_forward: None,
        }
    }
}

impl WorkerArgs {
    fn limits(&self) -> basalt::host::limits::Limits {
        basalt::host::limits::Limits {
            max_job_bytes: self.max_job_bytes,
            max_log_bytes: self.max_log_bytes,
            file_roots: self.allow_file_root.clone(),
            tftp_user: self.tftp_user.clone(),
            ..Default::default()
        }
    }
}

#[derive(Args)]
struct DemoArgs {
    /// Where the demo's job, log and results are written.
    #[arg(long = "output-dir", value_name = "DIR", default_value = "target/demo")]
    output_dir: PathBuf,
    /// Directory of the kernel and initramfs built by hw-tests/build-fixtures.sh
    /// (default: $BASALT_FIXTURES, else target/fixtures of the source tree).
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// Follow the job on basalt-board, the simulated board, instead of QEMU (the default when
    /// QEMU is not installed).
    #[arg(long)]
    board: bool,
    /// Run one job directly (as `basalt run`), without the lab.
    #[arg(long)]
    local: bool,
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
struct DeviceArgs {
    /// A device dictionary (`.jinja2`) or an already rendered device YAML.
    #[arg(long)]
    device: Option<PathBuf>,
    /// Where device-type templates are found (repeatable, searched in order, before the
    /// built-in ones).
    #[arg(long = "device-types", value_name = "DIR")]
    device_types: Vec<PathBuf>,
}

#[derive(Args)]
struct JobArgs {
    /// The job definition (LAVA V2 YAML).
    job: PathBuf,
    #[command(flatten)]
    device: DeviceArgs,
    /// Print only errors.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
struct DescribeArgs {
    job: PathBuf,
    #[command(flatten)]
    device: DeviceArgs,
}

/// One malloc arena for the whole process: basalt's blocking threads (downloads, archives,
/// copies) would each get their own, and the worker's memory is counted in MiB.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called first thing, before any thread.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1);
    }
}

/// `basalt coordinator`: serves until Ctrl-C (or SIGINT).
fn serve_coordinator(a: &CoordinatorArgs) -> Result<ExitCode> {
    let token = match &a.token_file {
        Some(f) => {
            let t = std::fs::read_to_string(f)
                .with_context(|| format!("reading the token file {}", f.display()))?;
            // its first line, as `basalt run --coordinator-token-file` and the master read it
            let t = t.lines().next().unwrap_or("").trim().to_string();
            anyhow::ensure!(
                !t.is_empty(),
                "the token file {}: its first line is empty",
                f.display()
            );
            Some(t)
        }
        None => None,
    };
    let config = basalt_coordinator::Config {
        token,
        poll_delay: a.poll_delay,
        ..basalt_coordinator::Config::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        eprintln!("basalt coordinator: listening on {}", a.listen);
        tokio::select! {
            r = basalt_coordinator::serve_on(&a.listen, config) => {
                r.with_context(|| format!("serving on {}", a.listen))
            }
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    one_malloc_arena();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(a) => validate(&a),
        Command::Describe(a) => describe(&a),
        Command::Run(a) => run(&a),
        Command::Hold(a) => hold(&a),
        Command::Demo(a) => demo(&a),
        Command::Keys(KeysCommand::Generate { name, dir }) => keys_generate(&name, &dir),
        Command::Udev(c) => udev(&c),
        Command::Jobs(a) => jobs(&a),
        Command::Devices(a) => cli::admin::devices(&a),
        Command::Workers(a) => cli::admin::workers(&a),
        Command::DeviceTypes(a) => cli::admin::device_types(&a),
        Command::Reserve(a) => cli::reserve::reserve(&a),
        Command::Artifacts(a) => cli::artifacts::artifacts(&a),
        Command::Ser2net(Ser2netCommand::Generate(a)) => ser2net_generate(&a),
        Command::Coordinator(a) => serve_coordinator(&a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("basalt: {e:#}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

fn client_of(m: &MasterArgs) -> basalt::client::Client {
    basalt::client::Client::new(&m.url, m.token.clone())
}

/// A JSON value as a table cell.
fn cell(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => "-".into(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Prints `rows` as a table of `columns` (or as JSON).
fn print_rows(rows: &[serde_json::Value], columns: &[&str], json: bool) {
    if json {
        println!("{}", serde_json::Value::Array(rows.to_vec()));
        return;
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| cell(r.get(*c))).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
                .max(c.len())
        })
        .collect();
    let line = |vals: Vec<String>| {
        vals.iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(columns.iter().map(|c| c.to_string()).collect()));
    for r in cells {
        println!("{}", line(r));
    }
}

/// Prints a job's log from line `from`; returns the next line number.
/// Prints a job's log from line `from` (raw YAML lines, or as the terminal shows records);
/// returns the next line's number.
fn print_log(c: &basalt::client::Client, id: u64, from: u64, raw: bool) -> Result<u64> {
    let Some(text) = c.logs(id, from)? else {
        return Ok(from);
    };
    let mut n = from;
    let mut out = std::io::stdout().lock();
    for l in text.lines() {
        if raw {
            writeln!(out, "{l}")?;
        } else if let Some(line) = basalt::client::log_record(l)
            .and_then(|(level, msg)| basalt::log::terminal_line(level, &msg))
        {
            writeln!(out, "{line}")?;
        }
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

/// Follows a job's log until the job is Finished; the exit code says how it ended.
fn follow(c: &basalt::client::Client, id: u64, raw: bool) -> Result<ExitCode> {
    let mut next = 0;
    loop {
        next = print_log(c, id, next, raw)?;
        let job = c.get(&format!("jobs/{id}/"))?;
        if job.get("state").and_then(|s| s.as_str()) == Some("Finished") {
            print_log(c, id, next, raw)?;
            let health = job.get("health").and_then(|h| h.as_str()).unwrap_or("?");
            match job.get("failure_cause").and_then(|c| c.as_str()) {
                Some(cause) => eprintln!(
                    "job {id}: {health}, caused by {cause}: {}",
                    job.get("failure_comment")
                        .and_then(|c| c.as_str())
                        .unwrap_or("no reason given")
                ),
                None => eprintln!("job {id}: {health}"),
            }
            return Ok(if health == "Complete" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        // a console line shows within this (the API has no push yet)
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Prints a job's test cases as a table: definition (suite), case, result, measurement.
fn print_results(c: &basalt::client::Client, id: u64, json: bool) -> Result<()> {
    let cases = c.list(&format!("jobs/{id}/tests/"))?;
    if json {
        println!("{}", serde_json::Value::Array(cases));
        return Ok(());
    }
    // the suite's name is the definition in the case's metadata
    let rows: Vec<serde_json::Value> = cases
        .iter()
        .map(|t| {
            let meta = t.get("metadata").and_then(|m| m.as_str()).unwrap_or("");
            let definition = basalt::yaml::load(meta).ok().and_then(|m| {
                m.get("definition")
                    .and_then(|d| d.as_str())
                    .map(String::from)
            });
            let measurement = match (t.get("measurement"), t.get("unit").and_then(|u| u.as_str())) {
                (Some(serde_json::Value::String(m)), Some(u)) if !u.is_empty() => {
                    serde_json::json!(format!("{m} {u}"))
                }
                (Some(m), _) => m.clone(),
                (None, _) => serde_json::Value::Null,
            };
            serde_json::json!({
                "definition": definition,
                "case": t.get("name"),
                "result": t.get("result"),
                "measurement": measurement,
                "cause": t.get("failure_cause"),
            })
        })
        .collect();
    print_rows(
        &rows,
        &["definition", "case", "result", "measurement", "cause"],
        false,
    );
    Ok(())
}

fn jobs(a: &JobsArgs) -> Result<ExitCode> {
    let c = client_of(&a.server.master);
    match &a.command {
        JobsCommand::Submit {
            files,
            follow: f,
            raw,
        } => {
            let mut last = None;
            for file in files {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let ids = c
                    .submit(&text)
                    .with_context(|| format!("submitting {}", file.display()))?;
                for id in &ids {
                    println!("{id}");
                }
                last = ids.last().copied();
            }
            match (f, last) {
                (true, Some(id)) => follow(&c, id, *raw),
                _ => Ok(ExitCode::SUCCESS),
            }
        }
        JobsCommand::List { state } => {
            let path = match state {
                Some(s) => format!("jobs/?state={s}"),
                None => "jobs/".into(),
            };
            let rows = c.list(&path)?;
            print_rows(
                &rows,
                &[
                    "id",
                    "description",
                    "state",
                    "health",
                    "actual_device",
                    "submit_time",
                ],
                a.server.json,
            );
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Show { id } => {
            let job = c.get(&format!("jobs/{id}/"))?;
            if a.server.json {
                println!("{job}");
            } else if let Some(m) = job.as_object() {
                for (k, v) in m {
                    if !matches!(
                        k.as_str(),
                        "definition" | "original_definition" | "multinode_definition"
                    ) {
                        println!("{k:<22} {}", cell(Some(v)));
                    }
                }
                // a MultiNode sub-job: its group, LAVA's N.M ids with roles and states
                if let Some(group) = m.get("target_group").and_then(|g| g.as_str()) {
                    let rows = c.list(&format!("jobs/?target_group={group}&ordering=id"))?;
                    println!("\nMultiNode group {group}:");
                    print_rows(
                        &rows,
                        &["sub_id", "id", "role", "state", "health", "actual_device"],
                        false,
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Logs { id, follow: f, raw } => {
            if *f {
                return follow(&c, *id, *raw);
            }
            print_log(&c, *id, 0, *raw)?;
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Results { id } => {
            print_results(&c, *id, a.server.json)?;
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Cancel { id } => {
            c.cancel(*id)?;
            println!("job {id} canceled");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `basalt ser2net generate`: the configuration on stdout (or --output), the connection
/// commands and what was skipped on stderr.
fn ser2net_generate(a: &Ser2netArgs) -> Result<ExitCode> {
    use basalt::admin::ser2net as s2n;
    let (dicts, skipped) = match &a.worker {
        Some(w) => s2n::dictionaries_of_worker(&client_of(&a.master), &a.master.url, w)?,
        None => (
            a.dictionaries
                .iter()
                .map(|p| s2n::Dictionary::from_file(p))
                .collect::<Result<Vec<_>, _>>()?,
            Vec::new(),
        ),
    };
    let settings = s2n::Settings {
        address: a.address,
        connect_address: a.connect_address,
        base_port: a.base_port,
        trace: a.trace.clone(),
    };
    let g = s2n::generate(&dicts, skipped, &settings)?;
    for k in &g.plan.skipped {
        eprintln!("skipped {}: {}", k.hostname, k.why);
    }
    for w in &g.warnings {
        eprintln!("warning: {w}");
    }
    match &a.output {
        Some(f) => s2n::write_atomically(f, &g.yaml)?,
        None => print!("{}", g.yaml),
    }
    match &a.connection_commands {
        Some(f) => s2n::write_atomically(f, &g.commands)?,
        None => eprint!("{}", g.commands),
    }
    if a.update_dictionaries {
        for p in s2n::update_dictionaries(&g.plan, &dicts, &settings)? {
            eprintln!("updated {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `basalt keys generate NAME --dir DIR`: prints the two paths and the public key.
fn keys_generate(name: &str, dir: &Path) -> Result<ExitCode> {
    let kp = basalt_link::cert::Keypair::generate();
    let (public, secret) = kp.write(dir, name).map_err(|e| match &e {
        basalt_link::cert::CertError::Io { source, .. }
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            anyhow::anyhow!("{e} (keys are never overwritten: remove the old files first)")
        }
        _ => anyhow::anyhow!("{e}"),
    })?;
    println!("public key  {}: {}", public.display(), kp.public);
    println!("secret key  {} (keep it private)", secret.display());
    Ok(ExitCode::SUCCESS)
}

/// `basalt udev list` and `basalt udev generate` (the work is in `basalt::admin::udev`).
fn udev(c: &UdevCommand) -> Result<ExitCode> {
    use basalt::admin::udev;
    match c {
        UdevCommand::List { json, from } => {
            let inv = udev::inventory(from.as_deref());
            let found = inv.scan()?;
            for s in &found.skipped {
                eprintln!("basalt udev: skipped {s}");
            }
            if *json {
                println!("{}", serde_json::to_string_pretty(&found.devices)?);
            } else if found.devices.is_empty() {
                println!(
                    "no USB serial adapters and no other USB devices ({})",
                    inv.describe()
                );
            } else {
                print_rows(&udev::list_rows(&found), udev::LIST_COLUMNS, false);
            }
        }
        UdevCommand::Generate(a) => {
            let o = udev::GenerateOptions {
                prefix: a.prefix.clone(),
                from: a.from.clone(),
                install: a.install.then(|| udev::Target {
                    dir: a.rules_dir.clone(),
                    file: a.rules_file.clone(),
                    force: a.force,
                }),
                command_line: shell_words::join(std::env::args()),
            };
            match udev::generate_command(
                &o,
                &udev::Udevadm::default(),
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            ) {
                Ok(()) => {}
                // installed, but udev was not told: not an input error
                Err(e @ udev::UdevError::Udevadm { .. }) => {
                    eprintln!("basalt: {e}");
                    return Ok(ExitCode::FAILURE);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where device-type templates are looked up: the user's directories, then
/// `/etc/basalt/device-types`, then (in the renderer) the templates built into basalt.
fn template_dirs(user: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = user.to_vec();
    dirs.push(PathBuf::from("/etc/basalt/device-types"));
    dirs
}

/// Reads the job; prints its diagnostics. `None` when it is invalid.
fn load_job(path: &Path, quiet: bool, reading: Reading) -> Option<Job> {
    match parse_job_file_as(path, reading) {
        Ok((job, report)) => {
            if !quiet {
                for w in report.warnings() {
                    eprintln!("{}", report.line(w));
                }
            }
            Some(job)
        }
        Err(e) => {
            for d in e
                .report
                .items
                .iter()
                .filter(|d| !quiet || d.severity == basalt::diag::Severity::Error)
            {
                eprintln!("{}", e.report.line(d));
            }
            let n = e.report.errors().count();
            eprintln!(
                "{}: invalid job ({n} error{})",
                path.display(),
                if n == 1 { "" } else { "s" }
            );
            None
        }
    }
}

/// Loads the device for a job and builds the pipeline; prints what is wrong.
fn load_pipeline(
    job_path: &Path,
    job: &Job,
    dev: &DeviceArgs,
    device: &Path,
    check: bool,
) -> Result<Option<(Device, Pipeline)>> {
    let device = Device::load(device, &template_dirs(&dev.device_types), &job.context)
        .with_context(|| format!("device {}", device.display()))?;
    match build_pipeline(job, &device).and_then(|p| {
        let problems = if check {
            basalt::pipeline::validate(job, &device, &p)
        } else {
            Vec::new()
        };
        if problems.is_empty() {
            Ok(p)
        } else {
            Err(problems)
        }
    }) {
        Ok(p) => Ok(Some((device, p))),
        Err(errors) => {
            for e in &errors {
                eprintln!("{}:{e}", job_path.display());
            }
            eprintln!(
                "{}: cannot run on device '{}' ({}): {} error{}",
                job_path.display(),
                device.hostname,
                device.device_type,
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            Ok(None)
        }
    }
}

fn validate(a: &JobArgs) -> Result<ExitCode> {
    let Some(job) = load_job(&a.job, a.quiet, Reading::Submission) else {
        return Ok(ExitCode::from(EXIT_INVALID));
    };
    let Some(dev) = &a.device.device else {
        if !a.quiet {
            println!(
                "{}: valid job '{}' ({} actions)",
                a.job.display(),
                job.job_name,
                job.actions.len()
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    let Some((device, pipeline)) = load_pipeline(&a.job, &job, &a.device, dev, true)? else {
        return Ok(ExitCode::from(EXIT_INVALID));
    };
    if !a.quiet {
        println!(
            "{}: valid job '{}' on device '{}' ({}): {} actions",
            a.job.display(),
            job.job_name,
            device.hostname,
            device.device_type,
            pipeline.walk().len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(a: &DescribeArgs) -> Result<ExitCode> {
    let Some(job) = load_job(&a.job, true, Reading::Dispatch) else {
        return Ok(ExitCode::from(EXIT_INVALID));
    };
    let dev = a
        .device
        .device
        .as_deref()
        .context("describe needs --device")?;
    let Some((_, pipeline)) = load_pipeline(&a.job, &job, &a.device, dev, false)? else {
        return Ok(ExitCode::from(EXIT_INVALID));
    };
    print!("{}", basalt::yaml::emit_document(&pipeline.describe()));
    Ok(ExitCode::SUCCESS)
}

fn run(a: &RunArgs) -> Result<ExitCode> {
    // stdout is the log stream with --log-stdout: nothing else goes there
    let quiet = a.quiet || a.worker.log_stdout;
    let Some(job) = load_job(&a.job, quiet, Reading::Dispatch) else {
        return Ok(ExitCode::from(EXIT_INVALID));
    };
    let dev = a.device.device.as_deref().context("run needs --device")?;
    let coordinator = coordinator(a, &job)?;
    run_loaded(
        &a.job,
        job,
        &a.device,
        dev,
        &a.output_dir,
        &a.job_id,
        quiet,
        &a.worker,
        coordinator,
    )
}

/// `basalt hold`: holds the board until a signal; exit 0 then, 2 on unusable input, 1 when
/// the hold could not start.
fn hold(a: &HoldArgs) -> Result<ExitCode> {
    let dev = a.device.device.as_deref().context("hold needs --device")?;
    let device = Device::load(
        dev,
        &template_dirs(&a.device.device_types),
        &Default::default(),
    )
    .with_context(|| format!("device {}", dev.display()));
    let device = match device {
        Ok(d) => d,
        Err(e) => {
            eprintln!("basalt hold: {e:#}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let lease = match basalt::hold::read_lease(&a.lease_file) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("basalt hold: {e}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let quiet = a.worker.log_stdout;
    let (run, _tftp) = run_options(&a.worker, &a.output_dir, &a.job_id, quiet, None)?;
    let opts = basalt::hold::HoldOptions {
        run,
        device,
        control: a.control.clone(),
        lease,
        console_listen: a.console_listen,
        advertise_host: a
            .advertise_host
            .clone()
            .unwrap_or_else(|| a.console_listen.ip().to_string()),
        console_buffer: usize::try_from(a.console_buffer).unwrap_or(usize::MAX),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let local = tokio::task::LocalSet::new();
    let r = local.block_on(&rt, basalt::hold::serve(opts));
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    match r {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("basalt hold: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// The coordinator of `--coordinator` for a MultiNode sub-job (`None` for other jobs: the
/// flag is ignored); the token from `--coordinator-token-file`.
fn coordinator(
    a: &RunArgs,
    job: &Job,
) -> Result<Option<std::sync::Arc<dyn basalt::protocols::multinode::Coordinator>>> {
    use basalt::protocols::multinode::{connect_coordinator, CoordinatorIdentity, Facts};
    let Some(addr) = &a.coordinator else {
        return Ok(None);
    };
    let Some(facts) = Facts::of(job).map_err(anyhow::Error::msg)? else {
        return Ok(None);
    };
    let token = match &a.coordinator_token_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("--coordinator-token-file {}", f.display()))?
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let identity = CoordinatorIdentity {
        group_name: facts.group,
        client_name: a.job_id.clone(),
        role: facts.role,
        hostname,
    };
    Ok(Some(connect_coordinator(addr.clone(), identity, token)))
}

/// Runs a loaded job and prints the results; the exit code says Complete / Incomplete.
#[allow(clippy::too_many_arguments)]
fn run_loaded(
    job_path: &Path,
    job: Job,
    dev_args: &DeviceArgs,
    dev: &Path,
    output_dir: &Path,
    job_id: &str,
    quiet: bool,
    worker: &WorkerArgs,
    coordinator: Option<std::sync::Arc<dyn basalt::protocols::multinode::Coordinator>>,
) -> Result<ExitCode> {
    let Some((device, pipeline)) = load_pipeline(job_path, &job, dev_args, dev, true)? else {
        return Ok(ExitCode::from(EXIT_INVALID));
    };
    let (opts, _tftp) = run_options(worker, output_dir, job_id, quiet, coordinator)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcome = rt.block_on(basalt::run::run_job(job, device, &pipeline, &opts));
    // A download that outlived its timeout stops at its next read (it was cancelled); do not
    // wait for it.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            // The output directory cannot be written (missing rights, read-only, full, a
            // symlink): the lab's problem, the job is Incomplete.
            eprintln!(
                "basalt: Job Incomplete: {}: {e} (Infrastructure)",
                output_dir.display()
            );
            return Ok(ExitCode::from(1));
        }
    };
    if !worker.log_stdout {
        print_summary(&outcome, output_dir);
    }
    Ok(if outcome.complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The options of a job run (and of a hold's boots) from the worker's flags; basalt's own TFTP
/// server when `--tftp-listen` asks for one (it serves while the returned handle lives).
fn run_options(
    worker: &WorkerArgs,
    output_dir: &Path,
    job_id: &str,
    quiet: bool,
    coordinator: Option<std::sync::Arc<dyn basalt::protocols::multinode::Coordinator>>,
) -> Result<(
    basalt::run::RunOptions,
    Option<basalt_hal::staging::TftpThread>,
)> {
    let job_user = if worker.no_confine {
        None
    } else {
        Some(
            basalt_hal::confine::JobUser::lookup(&worker.job_user)
                .with_context(|| format!("--job-user {}", worker.job_user))?,
        )
    };
    let mut limits = worker.limits();
    // basalt's own TFTP server, for this job only: it reads the job's files as basalt's user
    let tftp = match worker.tftp_listen {
        Some(addr) => {
            let server = basalt_hal::staging::TftpThread::start(
                addr,
                &worker.tftp_root,
                basalt_hal::staging::TftpConfig::default(),
            )
            .with_context(|| format!("--tftp-listen {addr}"))?;
            let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .context("looking up basalt's own user")?;
            limits.tftp_user = me.name;
            if !worker.log_stdout {
                eprintln!(
                    "basalt: serving {} over TFTP on {} (read-only)",
                    worker.tftp_root.display(),
                    server.local_addr()
                );
            }
            Some(server)
        }
        None => None,
    };
    let opts = basalt::run::RunOptions {
        output_dir: output_dir.to_path_buf(),
        job_id: job_id.to_string(),
        verbosity: if quiet {
            basalt::log::Verbosity::Quiet
        } else {
            basalt::log::Verbosity::Normal
        },
        tmp_root: std::env::temp_dir(),
        tftp_root: worker.tftp_root.clone(),
        server_ip: worker.server_ip.clone(),
        limits,
        job_user,
        log_channel: None,
        log_stdout: worker.log_stdout,
        coordinator,
        ssh_forward: worker.ssh_forward,
    };
    Ok((opts, tftp))
}

fn print_summary(o: &basalt::run::Outcome, dir: &Path) {
    use basalt::yaml::Node;
    println!();
    println!(
        "{:<24} {:<28} {:<8} measurement",
        "definition", "case", "result"
    );
    for r in &o.results {
        let get = |k: &str| r.get(k).and_then(Node::scalar_text).unwrap_or_default();
        if get("definition") == "lava"
            && !matches!(get("case").as_str(), "job")
            && r.get("uuid").is_none()
        {
            continue;
        }
        let meas = match (r.get("measurement"), r.get("units")) {
            (Some(m), u) => format!(
                "{} {}",
                m.scalar_text().unwrap_or_default(),
                u.and_then(Node::scalar_text).unwrap_or_default()
            ),
            _ => String::new(),
        };
        println!(
            "{:<24} {:<28} {:<8} {}",
            get("definition"),
            get("case"),
            get("result"),
            meas.trim_end()
        );
    }
    println!();
    match (&o.error, &o.failed_action) {
        (None, _) => println!("Job Complete in {:.1} s", o.duration.as_secs_f64()),
        (Some(e), a) => println!(
            "Job Incomplete in {:.1} s: {} ({}){}",
            o.duration.as_secs_f64(),
            e.message,
            e.kind.lava_name(),
            a.as_deref()
                .map(|a| format!(", action {a}"))
                .unwrap_or_default()
        ),
    }
    println!(
        "log: {}  results: {}",
        dir.join("output.yaml").display(),
        dir.join("results.yaml").display()
    );
}

/// The demo's fixtures directory: `--fixtures`, `$BASALT_FIXTURES`, or the source tree's.
fn demo_fixtures(a: &DemoArgs) -> Result<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixtures = a
        .fixtures
        .clone()
        .or_else(|| std::env::var_os("BASALT_FIXTURES").map(PathBuf::from))
        .unwrap_or_else(|| src.join("target/fixtures"));
    for f in ["amd64/vmlinux", "amd64/initramfs.cpio.gz"] {
        let f = fixtures.join(f);
        if !f.is_file() {
            anyhow::bail!("{} is missing: build the fixtures first with hw-tests/build-fixtures.sh (or run scripts/demo.sh)", f.display());
        }
    }
    Ok(fixtures)
}

fn has_qemu() -> bool {
    std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok()
}

/// The demo as a lab: basalt-master, one worker with a QEMU board (when QEMU is installed) and
/// a basalt-board (as root), the demo jobs submitted through the master's API, one followed
/// live, every job's results printed, the lab stopped at the end.
fn demo(a: &DemoArgs) -> Result<ExitCode> {
    if a.local {
        return demo_local(a);
    }
    let fixtures = demo_fixtures(a)?;
    let qemu = has_qemu();
    let root = nix::unistd::geteuid().is_root();
    if !qemu && !root {
        anyhow::bail!("the demo needs QEMU (qemu-system-x86_64) or root (basalt-board chroots into its ramdisk): run scripts/demo.sh as root");
    }
    if !qemu {
        println!("qemu-system-x86_64 is not installed: the lab has basalt-board devices only");
    }
    let bin_dir = std::env::current_exe()
        .context("locating basalt")?
        .parent()
        .map(Path::to_path_buf)
        .context("locating basalt's directory")?;
    let dir = std::path::absolute(a.output_dir.join("lab")).context("the demo's directory")?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let spec = basalt::lab::Spec {
        dir: dir.clone(),
        bin_dir,
        fixtures,
        workers: vec![basalt::lab::WorkerSpec {
            name: "rack-1".into(),
            boards: usize::from(root),
            qemu: usize::from(qemu),
            command: None,
        }],
        heartbeat_secs: 2,
        bootdelay: 1,
        keep_job_dirs: false,
        events: false,
        anonymous_read: false,
        coordinator: None,
    };
    println!(
        "lab: starting basalt-master, worker rack-1 and its boards in {}",
        dir.display()
    );
    let lab = basalt::lab::LocalLab::start(spec).context("setting up the lab")?;
    let c = lab.client();
    println!(
        "lab: master {} (admin token in {}), daemons' output in {}",
        lab.url,
        dir.join("token").display(),
        lab.logs_dir().display()
    );
    std::fs::write(dir.join("token"), format!("{}\n", lab.token))?;
    let rows = c.list("devices/")?;
    print_rows(
        &rows,
        &["hostname", "device_type", "worker_host", "state", "health"],
        false,
    );
    let mut jobs = Vec::new();
    for d in &lab.devices {
        let text = match d.device_type.as_str() {
            "qemu" => lab.qemu_job(),
            _ => lab.board_job()?,
        };
        let path = dir.join(format!("{}.yaml", d.device_type));
        std::fs::write(&path, &text)?;
        let id = *c
            .submit(&text)
            .with_context(|| format!("submitting {}", path.display()))?
            .first()
            .context("the master gave no job id")?;
        println!(
            "job {id}: {} submitted for a {} device",
            path.display(),
            d.device_type
        );
        jobs.push((id, d.device_type.clone()));
    }
    let followed = jobs
        .iter()
        .find(|(_, t)| (t == "basalt-board") == (a.board || !qemu))
        .or(jobs.first())
        .map(|(id, _)| *id)
        .context("the lab has no devices")?;
    println!("--- job {followed}: its log, live (basalt jobs logs {followed} --follow) ---");
    let t0 = std::time::Instant::now();
    let mut code = follow(&c, followed, false)?;
    let mut summary = Vec::new();
    for (id, device_type) in &jobs {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        let job = loop {
            let job = c.get(&format!("jobs/{id}/"))?;
            if job.get("state").and_then(|s| s.as_str()) == Some("Finished") {
                break job;
            }
            if std::time::Instant::now() > deadline {
                anyhow::bail!("job {id} did not finish within 5 minutes");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        let health = job
            .get("health")
            .and_then(|h| h.as_str())
            .unwrap_or("?")
            .to_string();
        if health != "Complete" {
            code = ExitCode::from(1);
        }
        println!(
            "--- job {id} on {} ({device_type}): results (basalt jobs results {id}) ---",
            cell(job.get("actual_device"))
        );
        print_results(&c, *id, false)?;
        summary.push(format!("job {id} ({device_type}) {health}"));
    }
    println!(
        "{} in {:.1} s; the lab stops now (docs/lab.md sets one up to stay)",
        summary.join(", "),
        t0.elapsed().as_secs_f64()
    );
    drop(lab);
    Ok(code)
}

/// The demo job run directly, as `basalt run` does (`basalt demo --local`).
fn demo_local(a: &DemoArgs) -> Result<ExitCode> {
    let fixtures = demo_fixtures(a)?;
    let kernel = fixtures.join("amd64/vmlinux");
    let initrd = fixtures.join("amd64/initramfs.cpio.gz");
    let has_qemu = has_qemu();
    if a.board || !has_qemu {
        if !has_qemu {
            println!(
                "qemu-system-x86_64 is not installed: running the demo on basalt-board instead"
            );
        }
        return demo_board(a, &initrd);
    }
    let text = basalt::device::builtin::DEMO_JOB
        .replace("@KERNEL@", &kernel.to_string_lossy())
        .replace("@INITRD@", &initrd.to_string_lossy());
    std::fs::create_dir_all(&a.output_dir)
        .with_context(|| format!("creating {}", a.output_dir.display()))?;
    let job_path = a.output_dir.join("job.yaml");
    std::fs::write(&job_path, &text).with_context(|| format!("writing {}", job_path.display()))?;
    println!("demo job: {}", job_path.display());
    let Some(job) = load_job(&job_path, a.quiet, Reading::Dispatch) else {
        return Ok(ExitCode::from(EXIT_INVALID));
    };
    let dev_args = DeviceArgs {
        device: None,
        device_types: Vec::new(),
    };
    // The demo device, next to the job, so that the output directory shows both.
    let device = a.output_dir.join("qemu-amd64.jinja2");
    std::fs::write(&device, basalt::device::builtin::DEMO_DEVICE)
        .with_context(|| format!("writing {}", device.display()))?;
    run_loaded(
        &job_path,
        job,
        &dev_args,
        &device,
        &a.output_dir,
        "1",
        a.quiet,
        &WorkerArgs::default(),
        None,
    )
}

/// A child process killed and reaped when dropped.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The demo on basalt-board: a TFTP server (tftpd-hpa) and a simulated board on 127.0.0.1,
/// both stopped at the end.
fn demo_board(a: &DemoArgs, initrd: &Path) -> Result<ExitCode> {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("the basalt-board demo runs the board's shell chrooted into its ramdisk: run it as root");
    }
    let tftpd_bin = ["/usr/sbin/in.tftpd", "/sbin/in.tftpd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("in.tftpd is not installed: run scripts/install-deps.sh (package tftpd-hpa)")?;
    let exe = std::env::current_exe().context("locating basalt")?;
    let board_bin = exe.with_file_name("basalt-board");
    anyhow::ensure!(
        board_bin.is_file(),
        "{} not found next to basalt: build it (cargo build --release)",
        board_bin.display()
    );
    let work = a.output_dir.join("board");
    let _ = std::fs::remove_dir_all(&work);
    let tftp_root = work.join("tftp");
    std::fs::create_dir_all(&tftp_root)
        .with_context(|| format!("creating {}", tftp_root.display()))?;
    use std::os::unix::fs::PermissionsExt;
    for d in [&work, &tftp_root] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
    }
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let _tftpd = Guard(
        Command::new(tftpd_bin)
            .args(["-L", "-u", basalt::host::limits::DEFAULT_TFTP_USER])
            .args(["-a", &format!("127.0.0.1:{port}"), "-s"])
            .arg(&tftp_root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting in.tftpd")?,
    );
    let control = work.join("control.sock");
    let mut child = Command::new(&board_bin)
        .args([
            "--telnet",
            "0",
            "--tftp-port",
            &port.to_string(),
            "--bootdelay",
            "2",
            "--control",
        ])
        .arg(&control)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting basalt-board")?;
    let stdout = child.stdout.take().context("board stdout")?;
    let board = Guard(child);
    let mut addr = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(a) = line.strip_prefix("basalt-board: console telnet ") {
            addr = a.parse::<std::net::SocketAddr>().ok();
        }
        if line == "basalt-board: ready" {
            break;
        }
    }
    let addr = addr.context("basalt-board did not say where its console is")?;
    let kernel = work.join("Image");
    std::fs::write(&kernel, vec![0u8; 4096])?;
    let dtb = work.join("board.dtb");
    std::fs::write(&dtb, vec![0xd0u8; 1024])?;
    let job_path = a.output_dir.join("job.yaml");
    let text = basalt::device::builtin::DEMO_BOARD_JOB
        .replace("@KERNEL@", &kernel.to_string_lossy())
        .replace("@INITRD@", &initrd.to_string_lossy())
        .replace("@DTB@", &dtb.to_string_lossy());
    std::fs::write(&job_path, text)?;
    let ctl = |op: &str| {
        format!(
            "{} ctl --control {} {op}",
            board_bin.display(),
            control.display()
        )
    };
    let device = a.output_dir.join("demo-board.jinja2");
    std::fs::write(
        &device,
        format!(
            "{{% extends 'basalt-board.jinja2' %}}\n\
             {{% set connection_command = 'telnet {} {}' %}}\n\
             {{% set power_on_command = '{}' %}}\n{{% set power_off_command = '{}' %}}\n{{% set hard_reset_command = '{}' %}}\n",
            addr.ip(),
            addr.port(),
            ctl("on"),
            ctl("off"),
            ctl("reset")
        ),
    )?;
    println!(
        "demo job: {}  device: {}",
        job_path.display(),
        device.display()
    );
    let Some(job) = load_job(&job_path, a.quiet, Reading::Dispatch) else {
        return Ok(ExitCode::from(EXIT_INVALID));
    };
    let dev_args = DeviceArgs {
        device: None,
        device_types: Vec::new(),
    };
    let worker = WorkerArgs {
        tftp_root,
        ..WorkerArgs::default()
    };
    let code = run_loaded(
        &job_path,
        job,
        &dev_args,
        &device,
        &a.output_dir,
        "1",
        a.quiet,
        &worker,
        None,
    );
    drop(board);
    code
}
