//! Test definitions from git: cloned on the worker into the overlay (shallow unless a revision
//! or the history is asked for). git runs directly (no shell) with the URL after `--`, so a
//! job's strings cannot become options or shell code.

use crate::log::JobLog;
use crate::run::ActionError;
use std::path::Path;
use std::process::Stdio;
use tokio::process::Command;

async fn git(log: &JobLog, args: &[&str], cwd: Option<&Path>) -> Result<String, ActionError> {
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
    let out = cmd.output().await.map_err(|e| {
        ActionError::infra(format!(
            "cannot run git: {e} (is git installed on the worker?)"
        ))
    })?;
    if !out.status.success() {
        return Err(ActionError::job(format!(
            "git {} failed: {}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Clones `url` into `dest` (an empty directory); returns the commit id checked out.
pub(crate) async fn clone(
    log: &JobLog,
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
    args.extend(["--", url, &dest_s]);
    git(log, &args, None).await?;
    if let Some(rev) = revision {
        git(
            log,
            &["checkout", "--quiet", "--detach", rev, "--"],
            Some(dest),
        )
        .await?;
    }
    let commit = git(log, &["rev-parse", "HEAD"], Some(dest)).await?;
    if !history {
        let _ = std::fs::remove_dir_all(dest.join(".git"));
    }
    Ok(commit)
}
