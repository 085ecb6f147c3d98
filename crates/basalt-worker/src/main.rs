//! `basalt-worker`: the lean worker daemon (see the crate documentation). Every option can
//! come from the environment instead, `BASALT_WORKER_<OPTION>` (`--master-key` is
//! `BASALT_WORKER_MASTER_KEY`; the log filter is `BASALT_LOG`), which is how the systemd
//! unit's environment file sets them (docs/config.md).

use basalt_link::cert::{read_public, Keypair};
use basalt_proto::{Capabilities, Capability};
use clap::builder::NonEmptyStringValueParser as NonEmpty;
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Runs the master's jobs on this host's boards.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// This worker's name (the master admits it under the name of its key file).
    #[arg(long, env = "BASALT_WORKER_NAME", value_parser = NonEmpty::new())]
    name: String,
    /// The master's workers endpoint.
    #[arg(
        long,
        value_name = "tcp://HOST:PORT",
        env = "BASALT_WORKER_MASTER",
        value_parser = NonEmpty::new()
    )]
    master: String,
    /// The master's public key (`master.key`): the worker talks to that master only.
    #[arg(
        long = "master-key",
        value_name = "FILE.key",
        env = "BASALT_WORKER_MASTER_KEY"
    )]
    master_key: PathBuf,
    /// This worker's keypair (`NAME.key_secret`, from `basalt keys generate`).
    #[arg(long, value_name = "FILE.key_secret", env = "BASALT_WORKER_KEY")]
    key: PathBuf,
    /// Where the jobs' directories are kept until the master has their logs.
    #[arg(
        long = "state-dir",
        value_name = "DIR",
        default_value = "/var/lib/basalt-worker",
        env = "BASALT_WORKER_STATE_DIR"
    )]
    state_dir: PathBuf,
    /// Keep each job's directory (`job-ID/` in the state directory: its output.yaml and
    /// results.yaml) after the master has its log, instead of removing it.
    #[arg(long = "keep-job-dirs", env = "BASALT_WORKER_KEEP_JOB_DIRS")]
    keep_job_dirs: bool,
    /// The dispatcher run per job (default: `basalt` next to this binary, else on PATH).
    #[arg(long, value_name = "PATH", env = "BASALT_WORKER_BASALT")]
    basalt: Option<PathBuf>,
    /// The TFTP server's root (passed to every job).
    #[arg(
        long = "tftp-root",
        value_name = "DIR",
        env = "BASALT_WORKER_TFTP_ROOT"
    )]
    tftp_root: Option<PathBuf>,
    /// Serve --tftp-root (default /srv/tftp) with basalt's own read-only TFTP server on
    /// ADDR:PORT (default: off, a TFTP server of the host serves it). The jobs then stage
    /// their files for the worker's own user (`--tftp-user`).
    #[arg(
        long = "tftp-listen",
        value_name = "ADDR:PORT",
        env = "BASALT_WORKER_TFTP_LISTEN"
    )]
    tftp_listen: Option<std::net::SocketAddr>,
    /// This worker's address as its devices see it (passed to every job).
    #[arg(
        long = "server-ip",
        value_name = "IP",
        env = "BASALT_WORKER_SERVER_IP",
        value_parser = NonEmpty::new()
    )]
    server_ip: Option<String>,
    /// Where job file:// URLs and local git repositories may point (repeatable; in the
    /// environment, separated by `:`).
    #[arg(
        long = "allow-file-root",
        value_name = "DIR",
        env = "BASALT_WORKER_ALLOW_FILE_ROOT",
        value_delimiter = ':'
    )]
    allow_file_root: Vec<PathBuf>,
    /// Other arguments for every `basalt run` (repeatable; split at spaces), e.g.
    /// `--job-arg=--no-confine`, `--job-arg '--job-user basalt-job'`.
    #[arg(
        long = "job-arg",
        value_name = "ARG",
        allow_hyphen_values = true,
        env = "BASALT_WORKER_JOB_ARG",
        value_delimiter = ' ',
        value_parser = NonEmpty::new()
    )]
    job_arg: Vec<String>,
    /// The TCP ports of held boards' consoles (reservations), one per lease.
    #[arg(
        long = "console-ports",
        value_name = "FROM-TO",
        default_value = "7100-7199",
        env = "BASALT_WORKER_CONSOLE_PORTS",
        value_parser = basalt_worker::hold::PortPool::parse
    )]
    console_ports: basalt_worker::hold::PortPool,
    /// The address held boards' consoles listen on (open it to the lab explicitly).
    #[arg(
        long = "console-address",
        value_name = "IP",
        default_value = "127.0.0.1",
        env = "BASALT_WORKER_CONSOLE_ADDRESS"
    )]
    console_address: std::net::IpAddr,
    /// The consoles' host as reservation holders are told it (default: --console-address).
    #[arg(
        long = "advertise-host",
        value_name = "HOST",
        env = "BASALT_WORKER_ADVERTISE_HOST",
        value_parser = NonEmpty::new()
    )]
    advertise_host: Option<String>,
    /// Each held board's console ring buffer: what a watcher that connects late still reads
    /// (bytes, or with a K, M or G suffix).
    #[arg(
        long = "console-buffer",
        value_name = "SIZE",
        default_value = "1M",
        env = "BASALT_WORKER_CONSOLE_BUFFER",
        value_parser = parse_size
    )]
    console_buffer: u64,
    /// A capability to announce (repeatable; in the environment, separated by `,`; default:
    /// qemu, tftp, u-boot, pdudaemon, reservations).
    #[arg(
        long = "capability",
        value_name = "NAME",
        env = "BASALT_WORKER_CAPABILITY",
        value_delimiter = ',',
        value_parser = NonEmpty::new()
    )]
    capability: Vec<String>,
    /// What is logged: a level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or
    /// `TARGET=LEVEL,...` (`warn,basalt_worker::daemon=debug`); to the journal under systemd,
    /// else to stderr (docs/config.md).
    #[arg(
        long,
        value_name = "FILTER",
        default_value = basalt_log::DEFAULT_FILTER,
        env = "BASALT_LOG",
        value_parser = NonEmpty::new()
    )]
    log_level: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = basalt_log::init("basalt-worker", &args.log_level) {
        eprintln!("basalt-worker: --log-level: {e}");
        return ExitCode::from(2);
    }
    let key = match Keypair::read(&args.key) {
        Ok(k) => k,
        Err(e) => return fail(&e.to_string()),
    };
    let master_key = match read_public(&args.master_key) {
        Ok(k) => k,
        Err(e) => return fail(&e.to_string()),
    };
    let basalt = args.basalt.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .map(|e| e.with_file_name("basalt"))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("basalt"))
    });
    let mut job_args = Vec::new();
    if let Some(t) = &args.tftp_root {
        job_args.push("--tftp-root".to_string());
        job_args.push(t.display().to_string());
    }
    // basalt's TFTP server, for as long as the worker runs (dropped at its end)
    let _tftp = match args.tftp_listen {
        Some(addr) => {
            let root = args
                .tftp_root
                .clone()
                .unwrap_or_else(|| PathBuf::from("/srv/tftp"));
            let server = match basalt_hal::staging::TftpThread::start(
                addr,
                &root,
                basalt_hal::staging::TftpConfig::default(),
            ) {
                Ok(s) => s,
                Err(e) => return fail(&format!("--tftp-listen {addr}: {e}")),
            };
            tracing::info!(
                "serving {} over TFTP on {} (read-only)",
                root.display(),
                server.local_addr()
            );
            if args.tftp_root.is_none() {
                job_args.push("--tftp-root".to_string());
                job_args.push(root.display().to_string());
            }
            // the jobs' directories must be readable by the worker's user, not tftpd-hpa's
            if !args.job_arg.iter().any(|a| a.starts_with("--tftp-user")) {
                let me = nix::unistd::User::from_uid(nix::unistd::geteuid());
                match me {
                    Ok(Some(u)) => {
                        job_args.push("--tftp-user".to_string());
                        job_args.push(u.name);
                    }
                    _ => return fail("looking up the worker's own user for --tftp-user"),
                }
            }
            Some(server)
        }
        None => None,
    };
    if let Some(ip) = &args.server_ip {
        job_args.push("--server-ip".to_string());
        job_args.push(ip.clone());
    }
    for r in &args.allow_file_root {
        job_args.push("--allow-file-root".to_string());
        job_args.push(r.display().to_string());
    }
    job_args.extend(args.job_arg.iter().cloned());
    let names: Vec<String> = if args.capability.is_empty() {
        ["qemu", "tftp", "u-boot", "pdudaemon", "reservations"]
            .map(String::from)
            .to_vec()
    } else {
        args.capability.clone()
    };
    let capabilities: Capabilities = names.into_iter().map(Capability::new).collect();
    if let Err(e) = std::fs::create_dir_all(&args.state_dir) {
        return fail(&format!("{}: {e}", args.state_dir.display()));
    }
    let config = basalt_worker::daemon::Config {
        name: args.name,
        master: args.master,
        master_key,
        key,
        state_dir: args.state_dir,
        keep_job_dirs: args.keep_job_dirs,
        basalt,
        job_args,
        capabilities,
        hold: Some(basalt_worker::hold::HoldConfig {
            ports: args.console_ports,
            address: args.console_address,
            advertise_host: args
                .advertise_host
                .unwrap_or_else(|| args.console_address.to_string()),
            buffer: args.console_buffer,
        }),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("starting the async runtime: {e}")),
    };
    let result = rt.block_on(async { basalt_worker::daemon::run(config, stop_signal()).await });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

/// Resolves at SIGINT or SIGTERM. The handlers are in place when this returns (in the
/// runtime), before the daemon logs its start: a SIGTERM right after that line stops it
/// cleanly.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let signals = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    async move {
        match signals {
            (Ok(mut i), Ok(mut t)) => {
                tokio::select! {
                    _ = i.recv() => {}
                    _ = t.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    }
}

/// A size: bytes, or a number with a K, M or G suffix (powers of 1024), at least 1 KiB.
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}`: expected a size such as 1M"))?;
    let shift = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (K, M or G)")),
    };
    n.checked_mul(1u64 << shift)
        .filter(|v| *v >= 1024)
        .ok_or_else(|| format!("`{text}`: a size of at least 1K"))
}

fn fail(msg: &str) -> ExitCode {
    tracing::error!("{msg}");
    ExitCode::from(2)
}
