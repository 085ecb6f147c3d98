//! The "Linux" side of the simulated board: getty-style login and a real shell.
//!
//! The shell is a real `/bin/sh -i` (configurable) on a pty of its own, started as a
//! session leader with the pty as its controlling terminal, so echo, `\r`→`\n`, Ctrl-C
//! and job control behave as on a serial console. It runs as the user running the board,
//! in a private directory made for this boot (`BASALT_BOARD_ROOT`), with a clean
//! environment. Whatever is typed on the console reaches this shell and nothing else:
//! that is its purpose, and also why the board must only be reachable by those who may
//! run commands as that user.
//!
//! Within the shell, `reboot`, `poweroff` and `halt` are small scripts first in `PATH`
//! that ask the board to reset or power off (signals `SIGUSR1` / `SIGUSR2` to the board),
//! so a test that reboots its "board" does not reach the host's own commands.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::pty::Winsize;
use tokio::io::unix::AsyncFd;

use super::board::{Ctx, LoginConfig};
use super::endpoint::{read_fd, write_fd};
use super::line::LineEnd;
use super::procs;
use super::SimError;

/// The environment variable naming the board's private root directory.
pub const ROOT_ENV: &str = "BASALT_BOARD_ROOT";

/// How a shell session ended.
#[derive(Debug)]
pub(crate) enum ShellEnd {
    /// The shell exited (`exit`, EOF): the board starts a new one.
    Exited,
}

/// Reads a line at a login prompt. `None` only if input is gone for good.
async fn read_field(ctx: &mut Ctx<'_>, echo: bool) -> Option<String> {
    let mut line = Vec::new();
    let uart = ctx.shared.uart.clone();
    match ctx.input.read_line(&uart, echo, None, &mut line).await? {
        LineEnd::Enter => Some(String::from_utf8_lossy(&line).trim().to_string()),
        LineEnd::Interrupt => {
            ctx.puts("\n").await;
            Some(String::new())
        }
    }
}

/// getty + login: prompts until the configured user (and password) is given.
pub(crate) async fn login(ctx: &mut Ctx<'_>, cfg: &LoginConfig) {
    let (user, password) = (cfg.user.as_str(), cfg.password.as_deref());
    let host = ctx.shared.config.hostname.clone();
    loop {
        ctx.puts(&format!(
            "\nDebian GNU/Linux 12 {host} ttyAMA0\n\n{host} login: "
        ))
        .await;
        let Some(name) = read_field(ctx, true).await else {
            std::future::pending::<()>().await;
            return;
        };
        if name.is_empty() {
            continue;
        }
        let mut ok = name == user;
        if let Some(pw) = password {
            ctx.puts("Password: ").await;
            let Some(given) = read_field(ctx, false).await else {
                std::future::pending::<()>().await;
                return;
            };
            if let Some(every) = cfg.echo_password {
                let mut utf8 = [0u8; 4];
                for c in given.chars() {
                    ctx.puts(c.encode_utf8(&mut utf8)).await;
                    tokio::time::sleep(every).await;
                }
            }
            ctx.puts("\n").await;
            ok = ok && given == pw;
        }
        if ok {
            let release = ctx.shared.config.kernel_release.clone();
            ctx.puts(&format!(
                "Linux {host} {release} #1 SMP Debian 6.1.0-basalt (2026-11-23) aarch64\n\nThe programs included with the Debian GNU/Linux system are free software.\n"
            ))
            .await;
            return;
        }
        ctx.sleep_scaled(Duration::from_millis(500)).await;
        ctx.puts("\nLogin incorrect\n").await;
    }
}

/// Creates the `reboot` / `poweroff` / `halt` helpers in `root/.basalt/bin`.
fn write_helpers(root: &Path) -> std::io::Result<PathBuf> {
    let bin = root.join(".basalt").join("bin");
    std::fs::create_dir_all(&bin)?;
    let pid = std::process::id();
    for (name, signal) in [("reboot", "USR1"), ("poweroff", "USR2"), ("halt", "USR2")] {
        let path = bin.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\n# basalt-board: {name} the simulated board (not the host)\nkill -{signal} {pid}\n"
            ),
        )?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(bin)
}

/// Starts the shell and relays the console to it until it exits.
pub(crate) async fn run_shell(ctx: &mut Ctx<'_>) -> Result<ShellEnd, SimError> {
    let root = ctx.run.root_dir(&ctx.shared.config)?;
    let helpers = write_helpers(&root).map_err(|source| SimError::Shell {
        what: format!("helpers in {}", root.display()),
        source,
    })?;
    // A ramdisk handed over by U-Boot becomes the root filesystem (see `initramfs`).
    let mut chroot: Option<std::ffi::CString> = None;
    if let Some(rd) = ctx.run.take_ramdisk() {
        match super::initramfs::unpack(&rd, &root) {
            Ok(n) => {
                let has_sh = root.join("bin/sh").symlink_metadata().is_ok();
                // SAFETY: geteuid has no preconditions.
                let is_root = unsafe { libc::geteuid() } == 0;
                eprintln!(
                    "basalt-board: unpacked {n} ramdisk entries into {}",
                    root.display()
                );
                if has_sh && is_root {
                    match super::initramfs::prepare_root(&root) {
                        Ok(()) => {
                            chroot =
                                std::ffi::CString::new(root.as_os_str().as_encoded_bytes()).ok()
                        }
                        Err(e) => eprintln!("basalt-board: cannot prepare the ramdisk root: {e}"),
                    }
                } else if has_sh {
                    eprintln!(
                        "basalt-board: not root: the shell runs in {} without chroot",
                        root.display()
                    );
                }
            }
            Err(e) => eprintln!("basalt-board: ramdisk not unpacked: {e}"),
        }
    }
    let cfg = &ctx.shared.config;
    let ws = Winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&ws), None).map_err(|e| SimError::Shell {
        what: "openpty".into(),
        source: e.into(),
    })?;
    let master: OwnedFd = pty.master;
    let slave: OwnedFd = pty.slave;
    let dup = |fd: &OwnedFd| -> Result<OwnedFd, SimError> {
        fd.try_clone().map_err(|source| SimError::Shell {
            what: "dup".into(),
            source,
        })
    };
    let (s_in, s_out, s_err) = (dup(&slave)?, dup(&slave)?, slave);
    let path = format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        helpers.display()
    );
    let user = cfg
        .login
        .as_ref()
        .map(|l| l.user.clone())
        .unwrap_or_else(|| "root".to_string());
    // Inside the chroot, the ramdisk's own shell and paths.
    let (shell, path, home) = match &chroot {
        Some(_) => (
            PathBuf::from("/bin/sh"),
            "/.basalt/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            PathBuf::from("/"),
        ),
        None => (cfg.shell.clone(), path, root.clone()),
    };
    let mut cmd = tokio::process::Command::new(&shell);
    cmd.arg("-i")
        .env_clear()
        .env("PATH", path)
        .env("HOME", &home)
        .env("PWD", &home)
        .env("PS1", &cfg.prompt)
        .env("TERM", "vt220")
        .env("LANG", "C")
        .env("SHELL", &shell)
        .env("USER", &user)
        .env("LOGNAME", &user)
        .env("HOSTNAME", &cfg.hostname)
        .env(ROOT_ENV, &home)
        .current_dir(&root)
        .stdin(Stdio::from(s_in))
        .stdout(Stdio::from(s_out))
        .stderr(Stdio::from(s_err));
    // SAFETY: only async-signal-safe calls (setsid, ioctl, prctl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(dir) = &chroot {
                if libc::chroot(dir.as_ptr()) < 0 || libc::chdir(c"/".as_ptr()) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The pty (our stdin) becomes the controlling terminal.
            if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // If the board dies, so does the shell (the pty hangup does the rest).
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|source| SimError::Shell {
        what: format!("spawn {}", cfg.shell.display()),
        source,
    })?;
    // Registered before any await: a power-off from now on finds and kills it.
    let Some(pid) = child.id() else {
        return Ok(ShellEnd::Exited);
    };
    if !ctx.run.register_shell(child, pid as i32) {
        // Cannot happen (nobody else holds the slot while we run); be safe anyway.
        procs::kill_session(pid as i32, Duration::from_secs(1)).await;
        return Ok(ShellEnd::Exited);
    }
    drop(cmd); // our copies of the slave descriptors close with it
    eprintln!("basalt-board: shell pid {pid} in {}", root.display());

    let nb = nix::fcntl::fcntl(master.as_fd(), nix::fcntl::FcntlArg::F_GETFL)
        .map(nix::fcntl::OFlag::from_bits_truncate)
        .and_then(|f| {
            nix::fcntl::fcntl(
                master.as_fd(),
                nix::fcntl::FcntlArg::F_SETFL(f | nix::fcntl::OFlag::O_NONBLOCK),
            )
        });
    if let Err(e) = nb {
        return Err(SimError::Shell {
            what: "pty non-blocking".into(),
            source: e.into(),
        });
    }
    // SAFETY: the descriptor is owned by the AsyncFd and closed only when it is dropped.
    let master = unsafe { AsyncFd::register(master) }.map_err(|e| SimError::Shell {
        what: "pty register".into(),
        source: e.into(),
    })?;

    let uart = ctx.shared.uart.clone();
    let run = ctx.run.clone();
    let mut slot = run.shell.lock().await;
    let mut buf = vec![0u8; 4096];
    let mut master_open = true;
    while let Some((child, _)) = slot.as_mut() {
        tokio::select! {
            _ = child.wait() => break,
            r = read_fd(&master, &mut buf), if master_open => match r {
                Ok(n) if n > 0 => uart.write(&buf[..n]).await,
                // EIO: every slave descriptor is closed (the shell is exiting).
                _ => master_open = false,
            },
            chunk = ctx.input.chunk(), if master_open => {
                let Some(chunk) = chunk else { break };
                let mut off = 0;
                while off < chunk.len() {
                    match write_fd(&master, &chunk[off..]).await {
                        Ok(n) => off += n,
                        Err(_) => break,
                    }
                }
            }
        }
    }
    // Last words of the shell, then the leftovers of its session.
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(20), read_fd(&master, &mut buf)).await
    {
        if n == 0 {
            break;
        }
        uart.write(&buf[..n]).await;
    }
    // Kill what is left of the session before letting go of the child: if a power-off
    // interrupts this, the child is still in the slot and power-off does it again.
    if let Some((child, _)) = slot.as_mut() {
        let pids = procs::kill_session(pid as i32, Duration::from_secs(2)).await;
        let _ = child.wait().await;
        procs::reap(&pids, Some(pid as i32), Duration::from_secs(2)).await;
    }
    *slot = None;
    eprintln!("basalt-board: shell pid {pid} exited");
    Ok(ShellEnd::Exited)
}
