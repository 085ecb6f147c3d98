//! Ending the board shell's processes: everything in the shell's session.
//!
//! The shell is started as a session leader (`setsid`) on its own pty, so it and every
//! job it starts — including job-control process groups other than its own — share its
//! session id. Power off kills the session: `killpg` on the shell's group, then every
//! process whose `/proc/PID/stat` names that session. The board is a child subreaper, so
//! killed orphans become its children and are reaped here (no zombies left behind).
//! A process that leaves the session on purpose (`setsid`, a double-forking daemon) is out
//! of reach; the board shell is for test scripts, not for daemons.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// One line of `/proc/PID/stat`, the fields we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub pid: i32,
    pub state: char,
    pub ppid: i32,
    pub session: i32,
}

/// Parses `/proc/PID/stat` text (the command name may contain spaces and parentheses).
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let mut rest = text.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let _pgrp: i32 = rest.next()?.parse().ok()?;
    let session = rest.next()?.parse().ok()?;
    Some(ProcStat {
        pid,
        state,
        ppid,
        session,
    })
}

/// Every process in `/proc` (those that vanish while we look are skipped).
pub(crate) fn all_processes() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|t| parse_stat(&t))
        .collect()
}

/// The processes of session `sid`.
pub(crate) fn session_members(sid: i32) -> Vec<ProcStat> {
    all_processes()
        .into_iter()
        .filter(|p| p.session == sid)
        .collect()
}

/// Makes this process a child subreaper (orphans of its descendants become its children).
pub(crate) fn become_subreaper() {
    // Not fatal: without it orphans go to init, which reaps them.
    let _ = nix::sys::prctl::set_child_subreaper(true);
}

/// Sends SIGKILL to session `sid` (its leader's group, then each member, repeatedly until
/// none is left alive or `patience` runs out). Returns the pids seen.
pub(crate) async fn kill_session(sid: i32, patience: Duration) -> Vec<i32> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut seen = Vec::new();
    let _ = killpg(Pid::from_raw(sid), Signal::SIGKILL);
    loop {
        let alive: Vec<ProcStat> = session_members(sid)
            .into_iter()
            .filter(|p| p.state != 'Z' && p.state != 'X')
            .collect();
        for p in &alive {
            if !seen.contains(&p.pid) {
                seen.push(p.pid);
            }
            let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
        }
        // Zombies of the session are remembered too: they may be ours to reap.
        for p in session_members(sid) {
            if !seen.contains(&p.pid) {
                seen.push(p.pid);
            }
        }
        if alive.is_empty() || tokio::time::Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reaps those of `pids` that are (or become) our children, until none is left or
/// `patience` runs out. `skip` is a pid someone else reaps (the tokio-managed shell).
pub(crate) async fn reap(pids: &[i32], skip: Option<i32>, patience: Duration) {
    let deadline = tokio::time::Instant::now() + patience;
    let mut pending: Vec<i32> = pids.iter().copied().filter(|p| Some(*p) != skip).collect();
    while !pending.is_empty() {
        pending.retain(|pid| {
            match waitpid(Pid::from_raw(*pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => true,
                Ok(_) => false,
                // Not our child: gone, a zombie someone else reaps, or still alive
                // and on its way to us (its parent is dying): wait for the last.
                Err(Errno::ECHILD) => std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|t| parse_stat(&t))
                    .is_some_and(|s| s.state != 'Z'),
                Err(_) => false,
            }
        });
        if pending.is_empty() || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        let s = parse_stat("1234 (sh) S 1 1234 1234 34816 1234 4194560 120 0 0 0").unwrap();
        assert_eq!(
            s,
            ProcStat {
                pid: 1234,
                state: 'S',
                ppid: 1,
                session: 1234
            }
        );
        let s = parse_stat("77 (a (weird) name) Z 5 6 7 0").unwrap();
        assert_eq!((s.pid, s.state, s.ppid, s.session), (77, 'Z', 5, 7));
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn sees_ourselves() {
        let me = std::process::id() as i32;
        assert!(all_processes().iter().any(|p| p.pid == me));
    }
}
