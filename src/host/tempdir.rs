//! The job's temporary directories: private, named for their owner process so that those a
//! killed basalt left behind can be found and removed.

use std::path::{Path, PathBuf};

/// Creates a fresh private directory under `root`, named
/// `{prefix}{pid}.{start time}-{nanos}-{n}`: its owner, so that [`remove_stale`] can tell
/// when the owner is gone.
pub fn tempdir_in(root: &Path, prefix: &str) -> std::io::Result<PathBuf> {
    let pid = std::process::id();
    let start = start_time(pid).unwrap_or(0);
    for n in 0..10_000u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        // 64 random bits too: a job's TFTP directory is served to any board that names it,
        // so its name must not be guessable (docs/admin.md#tftp)
        let p = root.join(format!(
            "{prefix}{pid}.{start}-{nanos:x}{:016x}-{n}",
            random()
        ));
        match std::fs::create_dir(&p) {
            Ok(()) => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700))?;
                return Ok(p);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("cannot create a temporary directory"))
}

/// 64 bits from the kernel's random source (0 if it cannot give them).
fn random() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most `b.len()` bytes into `b`
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 8 {
        u64::from_ne_bytes(b)
    } else {
        0
    }
}

/// A process's start time (clock ticks since boot, `/proc/PID/stat` field 22): with the pid,
/// it names one process for the machine's uptime.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name (field 2) is in parentheses and may hold anything: count after it
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The owner (pid, start time) in the name of a directory made by [`tempdir_in`] with a
/// prefix that starts with `prefix`.
fn owner_of(name: &str, prefix: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix(prefix)?;
    let mut parts = rest.rsplitn(4, '-');
    let (n, nanos, owner) = (parts.next()?, parts.next()?, parts.next()?);
    parts.next()?;
    n.parse::<u32>().ok()?;
    if nanos.is_empty() || !nanos.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (pid, start) = owner.split_once('.')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

/// Removes the directories `{prefix}...` below `root` (made by [`tempdir_in`]) whose owner
/// process is gone: what a basalt killed with `kill -9` left behind. Returns what it tried.
pub fn remove_stale(root: &Path, prefix: &str) -> Vec<(PathBuf, std::io::Result<()>)> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut done = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some((pid, start)) = name.to_str().and_then(|n| owner_of(n, prefix)) else {
            continue;
        };
        if !e.file_type().is_ok_and(|t| t.is_dir()) || start_time(pid) == Some(start) {
            continue;
        }
        let path = e.path();
        let r = std::fs::remove_dir_all(&path);
        done.push((path, r));
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_directories_name_their_owner() {
        let root = std::env::temp_dir().join(format!("basalt-stale-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let mine = tempdir_in(&root, "basalt-job-my-job-1-").unwrap();
        let name = mine.file_name().unwrap().to_string_lossy().into_owned();
        let me = (std::process::id(), start_time(std::process::id()).unwrap());
        assert_eq!(owner_of(&name, "basalt-job-"), Some(me));
        // a directory of a process that is gone (pid 0 never is a job's), and names that are
        // not basalt's
        let stale = root.join(format!("basalt-job-x-0.{}-1f-0", me.1));
        std::fs::create_dir(&stale).unwrap();
        std::fs::write(stale.join("file"), "x").unwrap();
        for other in [
            "basalt-job-nothing",
            "basalt-job-a-b-c-d",
            "unrelated-1.2-3-4",
        ] {
            std::fs::create_dir(root.join(other)).unwrap();
        }
        let removed: Vec<PathBuf> = remove_stale(&root, "basalt-job-")
            .into_iter()
            .map(|(p, r)| {
                r.unwrap();
                p
            })
            .collect();
        assert_eq!(removed, vec![stale.clone()]);
        assert!(mine.is_dir() && !stale.exists());
        assert!(root.join("basalt-job-nothing").is_dir());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
