//! Test definitions from git: cloned on the worker into the overlay (shallow unless a revision
//! or the history is asked for). git runs directly (no shell) with the URL after `--`, so a
//! job's strings cannot become options or shell code, and confined
//! ([`basalt_hal::confine`]): as the job user, with the network, writing only in its
//! destination. (A repository on the worker itself is then cloned as the job user sees it:
//! it must be readable by that user and outside `/tmp`, which is private.)

use crate::log::JobLog;
use crate::run::ActionError;
use basalt_hal::confine::{self, Policy};
use std::path::Path;
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

/// Clones `url` into `dest` (an empty directory) under `policy` (which must let it write in
/// `dest`); returns the commit id checked out.
pub(crate) async fn clone(
    log: &JobLog,
    policy: &Policy,
    url: &str,
    branch: Option<&str>,
    revision: Option<&str>,
    history: bool,
    dest: &Path,
) -> Result<String, ActionError> {
    for (what, v) in [("branch", branch), ("revision", revision)] {
        if v.is_some_and(|v| v.starts_with('-') || v.is_empty()) {
            return Err(ActionError::job(format!(
                "invalid git {what} '{}'",
                v.unwrap_or_default()
            )));
        }
    }
    let dest_s = dest.to_string_lossy().into_owned();
    let mut args = vec!["clone", "--quiet"];
    if revision.is_none() && !history {
        args.extend(["--depth", "1"]);
    }
    if let Some(b) = branch {
        args.extend(["--branch", b]);
    }
    let local = url.starts_with("file://") || url.starts_with('/');
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
    let commit = git(log, policy, &["rev-parse", "HEAD"], Some(dest)).await?;
    if !history {
        let _ = std::fs::remove_dir_all(dest.join(".git"));
    }
    Ok(commit)
}
