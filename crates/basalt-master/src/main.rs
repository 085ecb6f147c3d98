//! `basalt-master`: the lab's master daemon (the store, the workers link, the engine and
//! LAVA's REST API), and `token add`, which makes API tokens. The command line is the one in
//! the lab's contract (DESIGN.md): `--state-dir DIR [--http ADDR:PORT] [--workers URL]`, and
//! `--database URL` for a PostgreSQL store instead of SQLite's `basalt.db`, and
//! `--anonymous-read` to serve reads without a token (off by default). Every option can come
//! from the environment instead, `BASALT_MASTER_<OPTION>` (`--state-dir` is
//! `BASALT_MASTER_STATE_DIR`; the log filter is `BASALT_LOG`), which is how the systemd unit's
//! environment file sets them (docs/config.md).

#![forbid(unsafe_code)]

use basalt_link::cert::Keypair;
use basalt_master::engine::{self, Config};
use basalt_master::http;
use basalt_master::store::Store;
use clap::builder::NonEmptyStringValueParser as NonEmpty;
use clap::{CommandFactory, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// basalt's master: jobs, devices and workers, with LAVA's REST API.
#[derive(Parser)]
#[command(name = "basalt-master", version)]
struct Cli {
    /// The master's state: certs/, basalt.db, jobs/ (logs); created on first start.
    #[arg(long, value_name = "DIR", env = "BASALT_MASTER_STATE_DIR")]
    state_dir: PathBuf,
    /// A PostgreSQL database for the store (postgres://user:password@host:port/db) instead of
    /// the SQLite file basalt.db in the state directory.
    #[arg(
        long,
        value_name = "URL",
        env = "BASALT_MASTER_DATABASE",
        hide_env_values = true,
        value_parser = NonEmpty::new(),
    )]
    database: Option<String>,
    /// Where the REST API listens.
    #[arg(
        long,
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:8080",
        env = "BASALT_MASTER_HTTP",
        value_parser = NonEmpty::new(),
    )]
    http: String,
    /// The ZeroMQ endpoint the workers connect to.
    #[arg(
        long,
        value_name = "URL",
        default_value = "tcp://127.0.0.1:5556",
        env = "BASALT_MASTER_WORKERS",
        value_parser = NonEmpty::new(),
    )]
    workers: String,
    /// A device-type template directory, searched before basalt's built-in ones (repeatable).
    #[arg(
        long,
        value_name = "DIR",
        env = "BASALT_MASTER_DEVICE_TYPES",
        value_delimiter = ':'
    )]
    device_types: Vec<PathBuf>,
    /// How often workers send heartbeats, in seconds.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 5,
        env = "BASALT_MASTER_HEARTBEAT_SECS"
    )]
    heartbeat_secs: u64,
    /// A capability every worker must offer (repeatable: `qemu`, `tftp`, `u-boot`, ...); a
    /// worker lacking one is refused at its hello, with the reason.
    #[arg(
        long = "require-capability",
        value_name = "NAME",
        env = "BASALT_MASTER_REQUIRE_CAPABILITY",
        value_delimiter = ',',
        value_parser = NonEmpty::new(),
    )]
    require_capability: Vec<String>,
    /// Publish LAVA's events (read-only, plaintext ZeroMQ PUB, as LAVA's) on this endpoint,
    /// e.g. tcp://127.0.0.1:5500; off unless given.
    #[arg(long, value_name = "URL", env = "BASALT_MASTER_EVENTS", value_parser = NonEmpty::new())]
    events: Option<String>,
    /// The events' topic prefix (LAVA's EVENT_TOPIC).
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = basalt_master::events::DEFAULT_PREFIX,
        env = "BASALT_MASTER_EVENT_PREFIX",
        value_parser = NonEmpty::new(),
    )]
    event_prefix: String,
    /// Serve reads without credentials (REST GETs, XML-RPC's read methods), as LAVA can be
    /// configured to; off by default: every API request but the version needs a valid token.
    /// Writes always need a token, admin actions an admin's.
    #[arg(long, env = "BASALT_MASTER_ANONYMOUS_READ")]
    anonymous_read: bool,
    /// Tries per notify callback.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 3,
        env = "BASALT_MASTER_CALLBACK_ATTEMPTS"
    )]
    callback_attempts: u32,
    /// The wait before a callback's second try, in milliseconds (doubled before each further).
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 1000,
        env = "BASALT_MASTER_CALLBACK_BACKOFF_MS"
    )]
    callback_backoff_ms: u64,
    /// The MultiNode coordinator's address (LAVA's port 3079): given to the workers of
    /// MultiNode sub-jobs, which pass it to `basalt run --coordinator`.
    #[arg(
        long,
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:3079",
        env = "BASALT_MASTER_COORDINATOR",
        value_parser = NonEmpty::new(),
    )]
    coordinator: String,
    /// The coordinator's address as workers reach it, when it differs from `--coordinator`
    /// (the address it binds).
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "BASALT_MASTER_COORDINATOR_PUBLIC",
        value_parser = NonEmpty::new(),
    )]
    coordinator_public: Option<String>,
    /// Runs no coordinator: MultiNode sub-jobs use the one at `--coordinator-public` (or
    /// `--coordinator`), e.g. a `basalt coordinator` shared by several masters or LAVA's.
    #[arg(long, env = "BASALT_MASTER_NO_COORDINATOR")]
    no_coordinator: bool,
    /// The coordinator's token (the file's first line) instead of a random one made at start;
    /// with `--no-coordinator`, the token of the external coordinator. Workers get it in each
    /// MultiNode sub-job's Start.
    #[arg(
        long,
        value_name = "FILE",
        env = "BASALT_MASTER_COORDINATOR_TOKEN_FILE"
    )]
    coordinator_token_file: Option<PathBuf>,
    /// The coordinator takes requests without a token, as LAVA's does (for LAVA's own
    /// dispatchers, which cannot send one): protect it with its listen address instead. Not
    /// with `--coordinator-token-file` (checked after parsing: clap would count
    /// `BASALT_MASTER_COORDINATOR_OPEN=false` as given).
    #[arg(long, env = "BASALT_MASTER_COORDINATOR_OPEN")]
    coordinator_open: bool,
    /// The longest lease a reservation may ask for (and renew to): seconds, or 15m, 2h, 1d.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "1d",
        env = "BASALT_MASTER_MAX_LEASE",
        value_parser = basalt_master::reservation::parse_duration_secs,
    )]
    max_lease: u64,
    /// What is logged: a level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or
    /// `TARGET=LEVEL,...` (`warn,basalt_master::engine=debug`); to the journal under systemd,
    /// else to stderr (docs/config.md).
    #[arg(
        long,
        value_name = "FILTER",
        default_value = basalt_log::DEFAULT_FILTER,
        env = "BASALT_LOG",
        value_parser = NonEmpty::new(),
    )]
    log_level: String,
    /// Turns the artifact store on and serves its downloads (`GET /artifacts/NAME`, read-only,
    /// no token: workers fetch them as job URLs) on this address only, e.g. the lab network's;
    /// the same address as `--http` serves them on the API's listener. Off unless given.
    #[arg(
        long,
        value_name = "ADDR:PORT",
        env = "BASALT_MASTER_ARTIFACTS_HTTP",
        value_parser = NonEmpty::new(),
    )]
    artifacts_http: Option<String>,
    /// The artifacts' base URL as workers reach it (`http://HOST:PORT`): what the API answers
    /// and `artifact:NAME` becomes. Default: `http://` and the address `--artifacts-http` is
    /// bound to (required when that is 0.0.0.0 or [::]).
    #[arg(
        long,
        value_name = "URL",
        env = "BASALT_MASTER_ARTIFACTS_URL",
        value_parser = NonEmpty::new(),
    )]
    artifacts_url: Option<String>,
    /// The longest an artifact is kept (`7d`, `36h`, `3600s`; a bare number is seconds); an
    /// upload may ask for less.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "7d",
        env = "BASALT_MASTER_ARTIFACT_MAX_AGE",
        value_parser = basalt_master::artifacts::parse_duration,
    )]
    artifact_max_age: Duration,
    /// The most the artifacts may take on disk, uploads in progress included (`20G`, `512M`:
    /// powers of 1024; a bare number is bytes).
    #[arg(
        long,
        value_name = "SIZE",
        default_value = "20G",
        env = "BASALT_MASTER_ARTIFACT_QUOTA",
        value_parser = basalt_master::artifacts::parse_size,
    )]
    artifact_quota: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Makes a new token for USER and prints it on stdout (only its hash is stored).
    Add {
        user: String,
        /// The user may register workers, device types and devices.
        #[arg(long)]
        admin: bool,
    },
}

/// Why the master stopped with an error.
#[derive(Debug, thiserror::Error)]
enum MasterError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cert(#[from] basalt_link::cert::CertError),
    #[error(transparent)]
    Store(#[from] basalt_master::store::StoreError),
    #[error("workers link: {0}")]
    Link(#[from] basalt_master::link::LinkError),
    #[error("no random bytes from the system: {0}")]
    Random(getrandom::Error),
    #[error("--coordinator-token-file {0}: its first line is empty")]
    EmptyToken(String),
    #[error(transparent)]
    Events(#[from] basalt_master::events::EventsError),
    #[error(transparent)]
    Notify(#[from] basalt_master::notify::NotifyError),
    #[error(transparent)]
    Artifacts(#[from] basalt_master::artifacts::ArtifactError),
    #[error("{0}")]
    ArtifactsUrl(String),
}

fn io_error(path: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> MasterError {
    let path = path.to_string();
    move |source| MasterError::Io { path, source }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.coordinator_open && cli.coordinator_token_file.is_some() {
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--coordinator-open cannot be used with --coordinator-token-file",
            )
            .exit();
    }
    if let Err(e) = basalt_log::init("basalt-master", &cli.log_level) {
        eprintln!("basalt-master: --log-level: {e}");
        return ExitCode::from(2);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), MasterError> {
    std::fs::create_dir_all(&cli.state_dir).map_err(io_error(cli.state_dir.display()))?;
    let store = match &cli.database {
        Some(url) => Store::connect(url)?,
        None => Store::open(&cli.state_dir.join("basalt.db"))?,
    };
    match cli.command {
        Some(Command::Token {
            command: TokenCommand::Add { user, admin },
        }) => {
            let token = new_token()?;
            store.add_token(&user, admin, &token)?;
            println!("{token}");
            Ok(())
        }
        None => {
            let key = master_key(&cli.state_dir)?;
            // the store reports every state change to the events and the notify callbacks
            let mut notify = basalt_master::notify::NotifyConfig::new(cli.state_dir.join("jobs"));
            notify.attempts = cli.callback_attempts;
            notify.backoff = Duration::from_millis(cli.callback_backoff_ms);
            let notifier = basalt_master::notify::Notifier::start(notify)?;
            let mut store = store.observe(notifier.observer());
            let _publisher = match &cli.events {
                Some(url) => {
                    let p = basalt_master::events::Publisher::start(url, &cli.event_prefix)?;
                    tracing::info!("events on {}", p.endpoint());
                    store = store.observe(p.observer());
                    Some(p)
                }
                None => None,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(io_error("tokio runtime"))?;
            runtime.block_on(serve(cli, key, Arc::new(store)))
        }
    }
}

/// A new API token: 32 random bytes, hex.
fn new_token() -> Result<String, MasterError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(MasterError::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The master's keypair, made on first start (`certs/master.key`, `master.key_secret`), with
/// `certs/workers/` for the admitted workers' public keys.
fn master_key(state_dir: &Path) -> Result<Keypair, MasterError> {
    let certs = state_dir.join("certs");
    let workers = certs.join("workers");
    std::fs::create_dir_all(&workers).map_err(io_error(workers.display()))?;
    let secret = certs.join("master.key_secret");
    if secret.exists() {
        return Ok(Keypair::read(&secret)?);
    }
    let key = Keypair::generate();
    key.write(&certs, "master")?;
    tracing::info!("new master key {}", certs.join("master.key").display());
    Ok(key)
}

/// Runs the engine and the API until SIGINT or SIGTERM.
async fn serve(cli: Cli, key: Keypair, store: Arc<Store>) -> Result<(), MasterError> {
    let stop = stop_signal();
    let config = Config {
        state_dir: cli.state_dir.clone(),
        workers: cli.workers.clone(),
        key,
        heartbeat: Duration::from_secs(cli.heartbeat_secs.max(1)),
        device_types: cli.device_types.clone(),
        version: basalt_proto::ProtocolVersion::CURRENT,
        required_capabilities: cli
            .require_capability
            .iter()
            .map(|c| basalt_proto::Capability::new(c.clone()))
            .collect(),
        anonymous_read: cli.anonymous_read,
        coordinator: String::new(),
        coordinator_token: None,
        max_lease: Duration::from_secs(cli.max_lease),
    };
    // the coordinator's token: the file's, else a new one (none when it is open)
    let token = match &cli.coordinator_token_file {
        Some(f) => {
            let text = std::fs::read_to_string(f).map_err(io_error(f.display()))?;
            let token = text.lines().next().unwrap_or("").trim();
            if token.is_empty() {
                return Err(MasterError::EmptyToken(f.display().to_string()));
            }
            Some(token.to_string())
        }
        None if cli.coordinator_open || cli.no_coordinator => None,
        None => Some(new_token()?),
    };
    // the coordinator's address for the workers: the public one, else where it is bound
    // (`--coordinator 127.0.0.1:0` takes a free port)
    let (_coordinator, bound) = if cli.no_coordinator {
        (None, cli.coordinator.clone())
    } else {
        let (task, addr) = coordinator(&cli, token.clone()).await?;
        (Some(task), addr.to_string())
    };
    let config = Config {
        coordinator: cli.coordinator_public.clone().unwrap_or(bound),
        coordinator_token: token,
        ..config
    };
    let (mut handle, endpoint) = engine::start(config, store)?;
    let listener = tokio::net::TcpListener::bind(&cli.http)
        .await
        .map_err(io_error(&cli.http))?;
    let addr = listener.local_addr().map_err(io_error(&cli.http))?;
    // one stop for every listener
    let stopping = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let stopping = stopping.clone();
        async move {
            stop.await;
            stopping.cancel();
        }
    });
    let mut api = http::router(handle.clone());
    let mut downloads = None;
    let mut _sweeper = None;
    if let Some(bind) = &cli.artifacts_http {
        // the API's own address: downloads on its listener; else a listener of their own
        let same = bind == &cli.http || bind.parse::<std::net::SocketAddr>().ok() == Some(addr);
        let own = if same {
            None
        } else {
            let l = tokio::net::TcpListener::bind(bind)
                .await
                .map_err(io_error(format!("--artifacts-http {bind}")))?;
            Some(l)
        };
        let bound = match &own {
            Some(l) => l
                .local_addr()
                .map_err(io_error(format!("--artifacts-http {bind}")))?,
            None => addr,
        };
        let base_url = artifacts_url(cli.artifacts_url.as_deref(), bound)?;
        let config = basalt_master::artifacts::Config {
            max_age: cli.artifact_max_age,
            quota: cli.artifact_quota,
            base_url: base_url.clone(),
        };
        let store =
            basalt_master::artifacts::Artifacts::open(&cli.state_dir.join("artifacts"), config)?;
        _sweeper = Some(AbortOnDrop(store.spawn_sweeper()));
        handle.artifacts = Some(store.clone());
        api = http::router(handle.clone());
        let routes = basalt_master::artifacts::download::router(store);
        tracing::info!(
            "artifacts served on http://{bound}/artifacts/ as {base_url}/artifacts/ (quota {}, kept at most {})",
            basalt_master::artifacts::format_size(cli.artifact_quota),
            humantime::format_duration(cli.artifact_max_age)
        );
        match own {
            None => api = api.merge(routes),
            Some(l) => downloads = Some((l, routes)),
        }
    }
    tracing::info!("workers on {endpoint}, API on http://{addr}/api/v0.2/");
    let api_server =
        axum::serve(listener, api).with_graceful_shutdown(stopping.clone().cancelled_owned());
    match downloads {
        None => api_server.await.map_err(io_error(addr))?,
        Some((l, routes)) => {
            let at = l.local_addr().map_err(io_error("--artifacts-http"))?;
            let downloads =
                axum::serve(l, routes).with_graceful_shutdown(stopping.clone().cancelled_owned());
            let (a, d) = tokio::join!(api_server, downloads);
            a.map_err(io_error(addr))?;
            d.map_err(io_error(at))?;
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// The artifacts' base URL: `--artifacts-url` (http or https, no trailing `/`), else
/// `http://` the listener's address, which must then be one workers can reach.
fn artifacts_url(given: Option<&str>, bound: std::net::SocketAddr) -> Result<String, MasterError> {
    match given {
        Some(url) => {
            let url = url.trim().trim_end_matches('/');
            let host = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
                .unwrap_or("");
            if host.is_empty() || host.contains(char::is_whitespace) {
                return Err(MasterError::ArtifactsUrl(format!(
                    "--artifacts-url {url:?}: a base URL is http://HOST:PORT (or https://...)"
                )));
            }
            Ok(url.to_string())
        }
        None if bound.ip().is_unspecified() => Err(MasterError::ArtifactsUrl(format!(
            "--artifacts-http {bound} listens on every address: say with --artifacts-url \
             http://HOST:PORT how workers reach it"
        ))),
        None => Ok(format!("http://{bound}")),
    }
}

/// The MultiNode coordinator on `--coordinator` taking `token`, served until the returned task is dropped
/// (it aborts on drop), and the address it is bound to.
async fn coordinator(
    cli: &Cli,
    token: Option<String>,
) -> Result<(AbortOnDrop, std::net::SocketAddr), MasterError> {
    let listener = tokio::net::TcpListener::bind(&cli.coordinator)
        .await
        .map_err(io_error(format!("--coordinator {}", cli.coordinator)))?;
    let addr = listener
        .local_addr()
        .map_err(io_error(format!("--coordinator {}", cli.coordinator)))?;
    let protected = if token.is_some() {
        ", token protected"
    } else {
        ", open (no token)"
    };
    tracing::info!("MultiNode coordinator on {addr}{protected}");
    let config = basalt_coordinator::tcp::Config {
        token,
        ..Default::default()
    };
    let task = tokio::spawn(async move {
        if let Err(e) = basalt_coordinator::tcp::serve(listener, config).await {
            tracing::error!("the coordinator stopped: {e}");
        }
    });
    Ok((AbortOnDrop(task), addr))
}

/// A task aborted when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Completes on SIGINT or SIGTERM (or at once when neither can be listened for). The handlers
/// are in place when this returns, before the master says it listens: a SIGTERM right after
/// that line stops it cleanly.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let signals = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    async move {
        let (Ok(mut int), Ok(mut term)) = signals else {
            tracing::error!("cannot listen for SIGINT/SIGTERM");
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }
}
