//! `exec` on a held board: a command typed on the board's shell, its output and exit status
//! read back between markers.
//!
//! The line typed is `echo BASALT_S''TART_<m>; eval '<command>'; echo BASALT_E''ND_<m>_$?`
//! with `<m>` unique per command and the command quoted for the shell: the echo of the typed
//! line does not contain the markers (the quotes split them), the shell's output does. The
//! output is what came between `BASALT_START_<m>` and `BASALT_END_<m>_<status>`, ANSI
//! sequences removed (as the expect engine cleans them), `\r\n` made `\n`; at most
//! [`MAX_OUTPUT`] bytes, the last ones, then `truncated`. Everything is in the job log too, as
//! console lines. A command that does not finish in time is interrupted with Ctrl-C.

use crate::action::context::{literal, open_session};
use crate::log::JobLog;
use basalt_hal::console::expect::Regex;
use basalt_hal::console::hub::Hub;
use basalt_proto::HoldResult;
use std::time::Duration;

/// The most output an exec returns.
pub const MAX_OUTPUT: usize = 1 << 20;

/// A marker no other command of this process uses.
pub fn marker() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}{n:x}", std::process::id(), nanos)
}

/// The line typed for `command` with marker `m`.
pub fn command_line(command: &str, m: &str) -> String {
    format!(
        "echo BASALT_S''TART_{m}; eval {}; echo BASALT_E''ND_{m}_$?",
        shell_words::quote(command)
    )
}

/// Runs `command` on the shell of the board behind `hub`, within `timeout`.
pub async fn exec(hub: &Hub, log: &JobLog, command: &str, timeout: Duration) -> HoldResult {
    let error = |e: String| HoldResult::Error { error: e };
    let stream = match hub.attach_pipeline() {
        Ok(s) => s,
        Err(e) => return error(e.to_string()),
    };
    let m = marker();
    let mut session =
        open_session(log, stream, &format!("{} (exec)", hub.what())).with_window(MAX_OUTPUT + 4096);
    log.info(format!("exec: {}", log.masked(command)));
    if let Err(e) = session
        .send_line(&command_line(command, &m), Duration::ZERO)
        .await
    {
        return error(format!("typing the command: {e}"));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let start = literal(&format!("BASALT_START_{m}"));
    let end = Regex::new(&format!("BASALT_END_{m}_(\\d+)\\r*\\n")).expect("a valid regex");
    let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
    let r = match session.expect(&[start], left()).await {
        Ok(_) => session.expect(&[end], left()).await,
        Err(e) => Err(e),
    };
    match r {
        Ok(found) => {
            let status = found
                .group(1)
                .and_then(|s| s.parse::<i32>().ok())
                .unwrap_or(-1);
            let (output, truncated) = clean_output(&found.before);
            log.info(format!("exec: exit status {status}"));
            HoldResult::Exec {
                output,
                exit_status: status,
                truncated,
            }
        }
        Err(e) if e.is_timeout() => {
            let _ = session.send("\x03", Duration::ZERO).await;
            log.warning(format!(
                "exec: the command did not finish within {} s: interrupted (Ctrl-C)",
                timeout.as_secs()
            ));
            error(format!(
                "the command did not finish within {} s; it was interrupted (Ctrl-C)",
                timeout.as_secs()
            ))
        }
        Err(e) => error(format!("the console: {e}")),
    }
}

/// The output between the markers: the start marker's line end dropped, `\r\n` → `\n`, the
/// last [`MAX_OUTPUT`] bytes.
fn clean_output(before: &str) -> (String, bool) {
    let text = before
        .strip_prefix("\r\n")
        .or_else(|| before.strip_prefix('\n'))
        .unwrap_or(before);
    let mut out = text.replace("\r\n", "\n");
    let truncated = out.len() > MAX_OUTPUT;
    if truncated {
        let mut cut = out.len() - MAX_OUTPUT;
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        out.drain(..cut);
    }
    (out, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_hal::console::hub::DEFAULT_BUFFER;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    #[test]
    fn the_typed_line_hides_its_markers_and_quotes_the_command() {
        let line = command_line("echo 'a b'; false", "m1");
        assert_eq!(
            line,
            r#"echo BASALT_S''TART_m1; eval 'echo '\''a b'\''; false'; echo BASALT_E''ND_m1_$?"#
        );
        assert!(!line.contains("BASALT_START_m1") && !line.contains("BASALT_END_m1"));
        assert_ne!(marker(), marker());
    }

    #[test]
    fn output_is_cleaned_and_kept_to_its_end() {
        assert_eq!(
            clean_output("\r\nhi\r\nthere\r\n"),
            ("hi\nthere\n".into(), false)
        );
        assert_eq!(clean_output(""), (String::new(), false));
        let big = format!("\r\n{}", "é".repeat(MAX_OUTPUT));
        let (out, truncated) = clean_output(&big);
        assert!(truncated && out.len() <= MAX_OUTPUT && out.ends_with('é'));
    }

    /// A shell on the other end of a hub: runs each line it gets with sh, echoing it first as
    /// a terminal would.
    async fn shell_board(hub: &Hub) {
        let (board, ours) = tokio::io::duplex(1 << 16);
        hub.attach(Box::new(ours)).unwrap();
        tokio::spawn(async move {
            let (r, mut w) = tokio::io::split(board);
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = w.write_all(format!("{line}\r\n").as_bytes()).await;
                let out = tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(&line)
                    .output()
                    .await
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout).replace('\n', "\r\n");
                let _ = w.write_all(text.as_bytes()).await;
                let _ = w.write_all(b"/ # ").await;
            }
        });
    }

    #[tokio::test]
    async fn exec_returns_output_and_exit_status() {
        let hub = Hub::new("board", DEFAULT_BUFFER);
        shell_board(&hub).await;
        let log = JobLog::create(None, crate::log::Verbosity::Quiet, vec![]).unwrap();
        let r = exec(&hub, &log, "echo hi; false", Duration::from_secs(10)).await;
        assert_eq!(
            r,
            HoldResult::Exec {
                output: "hi\n".into(),
                exit_status: 1,
                truncated: false
            }
        );
        let r = exec(
            &hub,
            &log,
            "printf 'a\\nb'; exit_code() { return 3; }; exit_code",
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(
            r,
            HoldResult::Exec {
                output: "a\nb".into(),
                exit_status: 3,
                truncated: false
            }
        );
    }

    #[tokio::test]
    async fn exec_times_out_and_without_a_console_fails() {
        let hub = Hub::new("board", DEFAULT_BUFFER);
        let log = JobLog::create(None, crate::log::Verbosity::Quiet, vec![]).unwrap();
        let r = exec(&hub, &log, "true", Duration::from_secs(1)).await;
        assert!(
            matches!(r, HoldResult::Error { ref error } if error.contains("no console connection")),
            "{r:?}"
        );
        // a board that echoes and never answers
        let (board, ours) = tokio::io::duplex(4096);
        hub.attach(Box::new(ours)).unwrap();
        let _board = board;
        let r = exec(&hub, &log, "sleep 100", Duration::from_millis(300)).await;
        assert!(
            matches!(r, HoldResult::Error { ref error } if error.contains("did not finish within")),
            "{r:?}"
        );
    }
}
