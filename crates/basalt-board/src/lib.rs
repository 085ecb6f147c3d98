//! Simulated boards: `basalt-board`, a DummySys-style board for tests, demos and labs
//! without hardware.
//!
//! A simulated board behaves, on its console, like an arm64 board with U-Boot and Linux:
//!
//! 1. **Power** comes from a control socket ([`control`]): `on` starts the boot from the
//!    beginning, `off` stops it and kills everything the board started, `reset` is both.
//!    A board starts powered off unless told otherwise.
//! 2. **U-Boot**: a YAML script ([`script`]; built-in: the banner of U-Boot 2023.01 on
//!    QEMU's `virt` machine) ends with the `Hit any key to stop autoboot:  2` window. A key
//!    stops autoboot and gives the `=> ` prompt, where the usual commands work
//!    (`setenv`, `printenv`, `dhcp`, `tftpboot` — a real TFTP client —, `booti`/`bootz`/
//!    `bootm`, `boot`, `run`, `reset`, ...); with no key, `bootcmd` runs.
//! 3. **Linux**: once a kernel "starts", a second script prints the boot log (built-in: a
//!    Debian 6.1 arm64 log beginning with `Linux version 6.1.0-...`), then an optional
//!    `login:` / `Password:` prompt, then a **real shell** (`/bin/sh -i` on a pty) in a
//!    private directory made for this boot. `BASALT_BOARD_ROOT` names that directory in
//!    the shell's environment and is its working directory: where a real board has
//!    `/lava-1234`, a dispatcher writes `$BASALT_BOARD_ROOT/lava-1234`. The directory is
//!    removed at power off and reset. When the boot command was given a ramdisk (a cpio
//!    initramfs, raw or gzip, as fetched over TFTP) and the board runs as root, the ramdisk
//!    is unpacked into that directory ([`initramfs`]) and the shell runs chrooted there with
//!    the ramdisk's own `/bin/sh` — absolute paths such as `/lava-1234` are then the
//!    ramdisk's, exactly as on a real board (its `/init` is not run: basic `/dev` nodes and
//!    busybox's applet links are created instead of mounting anything on the host).
//! 4. **Console**: a pty, a unix socket or a telnet port ([`ConsoleMode`]); one client at a
//!    time, a new one replaces the old one, output nobody reads is lost — a serial line.
//! 5. **Faults** on request ([`fault`]): hang at a phase, kernel panic, garbage on the
//!    line, console drop.
//!
//! Security: the board runs a real shell as the user running the board, and everything
//! typed on its console goes to that shell (and only to it). Serve the console only where
//! the people who can reach it may run commands as that user; the telnet console listens
//! on 127.0.0.1 unless given another address.
//!
//! [`run`] runs a board until SIGTERM/SIGINT/SIGHUP, on a single-threaded runtime (the shell
//! is forked from the main thread, which lets it die with the board through
//! `PR_SET_PDEATHSIG`). At exit the shell's session is killed and the sockets, the pty
//! link and the private directory are removed.

#![warn(missing_docs)]

pub mod control;
pub mod fault;
pub mod initramfs;
pub mod script;
pub mod tftp;

mod board;
mod endpoint;
mod line;
mod linux;
mod memory;
mod player;
mod procs;
mod uboot;

use std::io::Write;
use std::path::PathBuf;

use tokio::signal::unix::{signal, SignalKind};

pub use board::{BoardConfig, LoginConfig, NetConfig};
pub use endpoint::ConsoleMode;
pub use fault::{Fault, Phase};
pub use linux::ROOT_ENV;
pub use script::{Script, ScriptError};

/// Why a simulated board could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A script did not load.
    #[error(transparent)]
    Script(#[from] ScriptError),
    /// A console or control endpoint could not be set up.
    #[error("cannot listen on {what}: {source}")]
    Bind {
        /// The endpoint.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The shell could not be started.
    #[error("board shell: {what}: {source}")]
    Shell {
        /// The step that failed.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The control socket could not be reached (client side).
    #[error("control socket {path}: {source}")]
    Control {
        /// The socket.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The control socket answered with an error.
    #[error("board answered: {0}")]
    Refused(String),
    /// The async runtime or signal handling could not start.
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
}

/// Runs a board until SIGTERM, SIGINT or SIGHUP. Prints where its console and control
/// socket are on standard output (`basalt-board: console unix /path`,
/// `basalt-board: control /path`, then `basalt-board: ready`).
///
/// In the board's shell, `reboot` sends the board SIGUSR1 (reset) and `poweroff` / `halt`
/// SIGUSR2 (power off); the same signals can be sent from outside.
pub fn run(config: BoardConfig) -> Result<(), SimError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SimError::Runtime)?;
    rt.block_on(run_async(config))
}

async fn run_async(config: BoardConfig) -> Result<(), SimError> {
    procs::become_subreaper();
    let mut term = signal(SignalKind::terminate()).map_err(SimError::Runtime)?;
    let mut int = signal(SignalKind::interrupt()).map_err(SimError::Runtime)?;
    let mut hup = signal(SignalKind::hangup()).map_err(SimError::Runtime)?;
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(SimError::Runtime)?;
    let mut usr2 = signal(SignalKind::user_defined2()).map_err(SimError::Runtime)?;

    let control_path = config.control.clone();
    let control = match &control_path {
        Some(p) => Some(endpoint::bind_unix(p)?),
        None => None,
    };
    let power_on = config.power_on;
    let board = match board::Board::start(config).await {
        Ok(b) => b,
        Err(e) => {
            if let Some(p) = &control_path {
                endpoint::remove_if_ours(p);
            }
            return Err(e);
        }
    };
    let control_task = control.map(|l| tokio::spawn(control::serve(l, board.shared.clone())));
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "basalt-board: console {}", board.endpoint.description);
        if let Some(p) = &control_path {
            let _ = writeln!(out, "basalt-board: control {}", p.display());
        }
        let _ = writeln!(out, "basalt-board: ready");
        let _ = out.flush();
    }
    if power_on {
        board.shared.power_on().await;
    }
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => break,
            _ = usr1.recv() => {
                board.shared.kernel_say("reboot: Restarting system\n").await;
                board.shared.reset().await;
            }
            _ = usr2.recv() => {
                board.shared.kernel_say("reboot: Power down\n").await;
                board.shared.power_off().await;
            }
        }
    }
    eprintln!("basalt-board: shutting down");
    board.shutdown().await;
    if let Some(t) = control_task {
        t.abort();
    }
    if let Some(p) = &control_path {
        endpoint::remove_if_ours(p);
    }
    Ok(())
}

/// The `ctl` client: sends `command` to the board at `control` and returns its answer;
/// an `error ...` answer is an error.
pub fn ctl(
    control: &std::path::Path,
    command: &str,
    timeout: std::time::Duration,
) -> Result<String, SimError> {
    let answer = control::request(control, command, timeout)?;
    match answer.strip_prefix("error") {
        Some(rest) if rest.is_empty() || rest.starts_with(' ') => {
            Err(SimError::Refused(rest.trim().to_string()))
        }
        _ => Ok(answer),
    }
}
