//! `basalt-board`: a simulated board (U-Boot, a Linux boot log, a real shell) for tests,
//! demos and labs without hardware. See the `basalt_board` library for what it does.
//!
//! ```text
//! basalt-board --unix /run/b1.sock --control /run/b1.ctl          # serve a board
//! basalt-board ctl --control /run/b1.ctl on                       # power it on
//! socat - UNIX-CONNECT:/run/b1.sock                               # its console
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use basalt_board as sim;
use basalt_board::{BoardConfig, ConsoleMode, Fault, LoginConfig};
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "basalt-board",
    version,
    about = "A simulated board: U-Boot prompt with real TFTP, Linux boot log, real shell",
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    board: BoardArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Send a command to a board's control socket and print the answer
    /// (on, off, reset, status, phase, fault SPEC, faults). Exit 1 on an `error` answer.
    Ctl(CtlArgs),
    /// Print a built-in script (a starting point for --uboot-script / --linux-script).
    PrintScript {
        /// Which one.
        #[arg(value_enum)]
        which: Builtin,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Builtin {
    Uboot,
    Linux,
}

#[derive(Args)]
struct CtlArgs {
    /// The board's control socket.
    #[arg(long, value_name = "PATH")]
    control: PathBuf,
    /// Seconds to wait for the answer (`off` waits for the shell's processes to end).
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    timeout: f64,
    /// The command and its arguments, e.g. `on` or `fault hang-at kernel`.
    #[arg(required = true, num_args = 1.., value_name = "COMMAND")]
    command: Vec<String>,
}

#[derive(Args)]
#[command(group(ArgGroup::new("console").required(true).args(["pty_link", "unix", "telnet"])))]
struct BoardArgs {
    /// Serve the console on a new pty; make PATH a symlink to its slave (/dev/pts/N).
    #[arg(long, value_name = "PATH")]
    pty_link: Option<PathBuf>,
    /// Serve the console on a unix stream socket.
    #[arg(long, value_name = "PATH")]
    unix: Option<PathBuf>,
    /// Serve the console on a TCP port with minimal telnet negotiation, on 127.0.0.1
    /// unless an address is given (`[ADDR:]PORT`; port 0 picks a free one, printed).
    #[arg(long, value_name = "[ADDR:]PORT")]
    telnet: Option<String>,
    /// The control socket (a unix socket; see `ctl`).
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Power on at start (default: off until told `on`).
    #[arg(long)]
    power_on: bool,
    /// A YAML script for U-Boot's banner and autoboot window instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    uboot_script: Option<PathBuf>,
    /// A YAML script for the Linux boot log instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    linux_script: Option<PathBuf>,
    /// Multiply the scripts' delays and sleeps (0 = no delays; 1 = as written).
    #[arg(long, default_value_t = 1.0, value_name = "FACTOR")]
    speed: f64,
    /// U-Boot's bootdelay: seconds of the autoboot window (-1: no autoboot).
    #[arg(long, allow_negative_numbers = true, value_name = "SECONDS")]
    bootdelay: Option<i64>,
    /// U-Boot's bootcmd (default: boot the stand-in kernel in flash).
    #[arg(long, value_name = "COMMANDS")]
    bootcmd: Option<String>,
    /// Set a U-Boot environment variable at power-on (repeatable; empty value removes it).
    #[arg(long = "setenv", value_name = "NAME=VALUE")]
    setenv: Vec<String>,
    /// The address `dhcp` gives the board.
    #[arg(long, default_value = "10.0.2.15", value_name = "IPV4")]
    ip: Ipv4Addr,
    /// The netmask `dhcp` gives the board.
    #[arg(long, default_value = "255.255.255.0", value_name = "IPV4")]
    netmask: Ipv4Addr,
    /// The gateway (and DNS server) `dhcp` gives the board.
    #[arg(long, default_value = "10.0.2.2", value_name = "IPV4")]
    gateway: Ipv4Addr,
    /// The `serverip` `dhcp` gives the board (the TFTP server until `setenv serverip`).
    #[arg(long, default_value = "127.0.0.1", value_name = "IPV4")]
    dhcp_server: Ipv4Addr,
    /// The TFTP server port unless `tftpserverport`/`tftpdstp` is set in U-Boot
    /// [default: $BASALT_BOARD_TFTP_PORT, else 69].
    #[arg(long, value_name = "PORT")]
    tftp_port: Option<u16>,
    /// `ethaddr`.
    #[arg(long, default_value = "52:54:00:12:34:56", value_name = "MAC")]
    mac: String,
    /// The host name shown at the login prompt.
    #[arg(long, default_value = "basalt")]
    hostname: String,
    /// The kernel release shown in the boot log.
    #[arg(long, default_value = "6.1.0-basalt-arm64")]
    kernel_release: String,
    /// Show a `login:` prompt that accepts this user before the shell.
    #[arg(long, value_name = "USER")]
    login: Option<String>,
    /// With --login: also ask for this password.
    #[arg(long, requires = "login", value_name = "PASSWORD")]
    password: Option<String>,
    /// With --password: echo the typed password back, one character every MS milliseconds
    /// (a slow console with echo on).
    #[arg(long, requires = "password", value_name = "MS")]
    echo_password: Option<u64>,
    /// The shell prompt (PS1).
    #[arg(long, default_value = "/ # ", value_name = "PS1")]
    prompt: String,
    /// The shell to run as the board's shell (started with -i).
    #[arg(long, default_value = "/bin/sh", value_name = "PATH")]
    shell: PathBuf,
    /// Where the per-boot private directories are made (default: the temp dir).
    #[arg(long, value_name = "DIR")]
    root_base: Option<PathBuf>,
    /// A fault from the start (repeatable): `hang-at PHASE`, `panic [MESSAGE]`, `garbage`,
    /// `drop-console [SECONDS] [at PHASE]`. Phases: uboot, autoboot, kernel, login, shell.
    #[arg(long, value_name = "SPEC")]
    fault: Vec<String>,
    /// Check image magics in booti/bootz/bootm (default: anything loaded boots).
    #[arg(long)]
    strict_images: bool,
}

fn console_mode(args: &BoardArgs) -> Result<ConsoleMode, String> {
    if let Some(link) = &args.pty_link {
        return Ok(ConsoleMode::Pty { link: link.clone() });
    }
    if let Some(path) = &args.unix {
        return Ok(ConsoleMode::Unix { path: path.clone() });
    }
    let Some(t) = &args.telnet else {
        return Err("one of --pty-link, --unix, --telnet is needed".into());
    };
    let addr: SocketAddr = match t.parse::<u16>() {
        Ok(port) => SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Err(_) => t
            .parse()
            .map_err(|_| format!("--telnet: '{t}' is neither PORT nor ADDR:PORT"))?,
    };
    Ok(ConsoleMode::Telnet { addr })
}

fn board_config(args: BoardArgs) -> Result<BoardConfig, String> {
    let mut c = BoardConfig::new(console_mode(&args)?);
    if !(args.speed.is_finite() && args.speed >= 0.0) {
        return Err(format!("--speed must be >= 0, not {}", args.speed));
    }
    c.control = args.control;
    c.power_on = args.power_on;
    c.uboot_script = args.uboot_script;
    c.linux_script = args.linux_script;
    c.speed = args.speed;
    c.bootdelay = args.bootdelay;
    c.bootcmd = args.bootcmd;
    for kv in args.setenv {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(format!("--setenv '{kv}': expected NAME=VALUE"));
        };
        c.env.push((k.to_string(), v.to_string()));
    }
    c.net.ip = args.ip;
    c.net.netmask = args.netmask;
    c.net.gateway = args.gateway;
    c.net.dhcp_server = args.dhcp_server;
    c.net.tftp_port = match args.tftp_port {
        Some(p) => p,
        None => match std::env::var("BASALT_BOARD_TFTP_PORT") {
            Ok(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("BASALT_BOARD_TFTP_PORT='{v}' is not a port"))?,
            Err(_) => 69,
        },
    };
    c.mac = args.mac;
    c.hostname = args.hostname;
    c.kernel_release = args.kernel_release;
    c.login = args.login.map(|user| LoginConfig {
        user,
        password: args.password,
        echo_password: args.echo_password.map(std::time::Duration::from_millis),
    });
    c.prompt = args.prompt;
    c.shell = args.shell;
    c.root_base = args.root_base;
    for f in &args.fault {
        let fault: Fault = f.parse().map_err(|e| format!("--fault '{f}': {e}"))?;
        c.faults.push(fault);
    }
    c.strict_images = args.strict_images;
    Ok(c)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Ctl(ctl)) => {
            let timeout = Duration::from_secs_f64(ctl.timeout.clamp(0.1, 3600.0));
            match sim::ctl(&ctl.control, &ctl.command.join(" "), timeout) {
                Ok(answer) => {
                    println!("{answer}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("basalt-board ctl: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::PrintScript { which }) => {
            print!(
                "{}",
                match which {
                    Builtin::Uboot => sim::script::BUILTIN_UBOOT,
                    Builtin::Linux => sim::script::BUILTIN_LINUX,
                }
            );
            ExitCode::SUCCESS
        }
        None => {
            let config = match board_config(cli.board) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("basalt-board: {e}");
                    return ExitCode::from(2);
                }
            };
            match sim::run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("basalt-board: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
