//! Test definitions from git: cloned on the worker into the overlay (shallow unless a revision
//! or the history is asked for). git runs directly (no shell) with the URL after `--`, so a
//! job's strings cannot become options or shell code. Transports are limited to
//! [`GIT_PROTOCOLS`] (checked here, before git runs, and by git itself through
//! `GIT_ALLOW_PROTOCOL`, which also covers submodules and redirects); local repositories must
//! be below the worker's `--allow-file-root` directories when it has any. git runs confined
//! ([`basalt_hal::confine`]): as the job user, with the network, writing only in its
//! destination (a repository on the worker itself must then be readable by that user and
//! outside `/tmp`, which is private).

use crate::error::ActionError;
use crate::host::limits::GIT_PROTOCOLS;
use crate::log::JobLog;
use basalt_hal::confine::{self, Policy};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::Command;

async fn git(
    log: &JobLog,
    policy: &Policy,
    args: &[&str],
    cwd: Option<&Path>,
) -> Result<String, ActionError> {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ALLOW_PROTOCOL", GIT_PROTOCOLS.join(":"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    log.debug(format!("git {}", args.join(" ")));
    let cannot = |e: std::io::Error| {
        ActionError::infra(format!(
            "cannot run git: {e} (is git installed on the worker?)"
        ))
    };
    let child = confine::spawn(cmd, policy).map_err(cannot)?;
    let out = child.wait_with_output().await.map_err(cannot)?;
    if !out.status.success() {
        return Err(ActionError::job(format!(
            "git {} failed: {}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The transport git would use for `url` (`https`, `ssh`, `file`, ...), as git decides it:
/// `TRANSPORT::ADDRESS` is a remote helper, `SCHEME://` a URL, `HOST:PATH` scp-like ssh, and
/// anything else a local path.
pub fn transport(url: &str) -> String {
    let first_slash = url.find('/').unwrap_or(url.len());
    if let Some(i) = url.find("::") {
        if i < first_slash {
            return url[..i].to_ascii_lowercase();
        }
    }
    if let Some(i) = url.find("://") {
        let scheme = url[..i].to_ascii_lowercase();
        return match scheme.as_str() {
            "git+ssh" | "ssh+git" => "ssh".into(),
            _ => scheme,
        };
    }
    match url.find(':') {
        Some(i) if i < first_slash => "ssh".into(),
        _ => "file".into(),
    }
}

/// Refuses a transport outside [`GIT_PROTOCOLS`] and a local repository outside `roots` (when
/// there are any).
pub fn check_url(url: &str, roots: &[PathBuf]) -> Result<(), ActionError> {
    if url.is_empty() || url.starts_with('-') {
        return Err(ActionError::job(format!("invalid git repository '{url}'")));
    }
    let t = transport(url);
    if !GIT_PROTOCOLS.contains(&t.as_str()) {
        return Err(ActionError::job(format!(
            "git repository '{url}': transport '{t}' is not allowed (only {})",
            GIT_PROTOCOLS.join(", ")
        )));
    }
    if t == "file" && !roots.is_empty() {
        let path = Path::new(url.strip_prefix("file://").unwrap_or(url));
        crate::actions::deploy::download::check_file_root(path, roots)
            .map_err(|e| ActionError::job(format!("git repository '{url}': {e}")))?;
    }
    Ok(())
}

/// Clones `url` into `dest` (an empty directory) under `policy` (which must let it write in
/// `dest`); returns the commit id checked out.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn clone(
    log: &JobLog,
    policy: &Policy,
    url: &str,
    branch: Option<&str>,
    revision: Option<&str>,
    history: bool,
    dest: &Path,
    roots: &[PathBuf],
) -> Result<String, ActionError> {
    check_url(url, roots)?;
    for (what, v) in [("branch", branch), ("revision", revision)] {
        if v.is_some_and(|v| v.starts_with('-') || v.is_empty()) {
            return Err(ActionError::job(format!(
                "invalid git {what} '{}'",
                v.unwrap_or_default()
            )));
        }
    }
    let dest_s = dest.to_string_lossy().into_owned();
    // --no-local: a local repository is read through git's transport, never hardlinked.
    let mut args = vec!["clone", "--quiet", "--no-local"];
    if revision.is_none() && !history {
        args.extend(["--depth", "1"]);
    }
    if let Some(b) = branch {
        args.extend(["--branch", b]);
    }
    let local = transport(url) == "file";
    if local && matches!(policy, Policy::Confined(_)) {
        // the job user reads a repository of the worker's that it does not own; git does not
        // pass `-c` (or GIT_CONFIG_*) on to the upload-pack of a local clone
        args.extend(["--upload-pack", "git -c safe.directory=* upload-pack"]);
    }
    args.extend(["--", url, &dest_s]);
    git(log, policy, &args, None).await?;
    if let Some(rev) = revision {
        git(
            log,
            policy,
            &["checkout", "--quiet", "--detach", rev, "--"],
            Some(dest),
        )
        .await?;
    }
    git(log, policy, &["rev-parse", "HEAD"], Some(dest)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_as_git_sees_them() {
        for (url, t) in [
            ("https://example.com/r.git", "https"),
            ("HTTP://example.com/r.git", "http"),
            ("git://example.com/r", "git"),
            ("ssh://git@example.com/r", "ssh"),
            ("git+ssh://example.com/r", "ssh"),
            ("git@example.com:r.git", "ssh"),
            ("/srv/repos/r.git", "file"),
            ("file:///srv/repos/r.git", "file"),
            ("./r", "file"),
            ("ext::sh -c touch% /tmp/x", "ext"),
            ("fd::17", "fd"),
            ("FD::0,1", "fd"),
            ("testgit::/tmp/x", "testgit"),
        ] {
            assert_eq!(transport(url), t, "{url}");
        }
        for bad in ["ext::sh -c id", "fd::3", "-uhelp", ""] {
            assert!(check_url(bad, &[]).is_err(), "{bad}");
        }
        assert!(check_url("https://example.com/r.git", &[]).is_ok());
        let root = std::env::temp_dir();
        assert!(check_url("/etc", std::slice::from_ref(&root)).is_err());
    }
}
