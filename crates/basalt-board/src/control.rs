//! The control socket: power and faults, one command per line.
//!
//! A unix stream socket; each line is a command, each answer one line:
//!
//! | command | answer |
//! | --- | --- |
//! | `on` | `ok` (powers on; no effect when on) |
//! | `off` | `ok` once the shell's processes are gone and the private directory removed |
//! | `reset` | `ok` (off, then on) |
//! | `status` | `on` or `off` |
//! | `phase` | `off`, `uboot`, `autoboot`, `kernel`, `login` or `shell` (the last one reached) |
//! | `fault SPEC` | `ok` (see [`super::fault`] for `SPEC`) |
//! | `faults` | the faults in force, e.g. `hang-at kernel, garbage`, or `none` |
//! | `help` | the command list, on one line |
//! | anything else | `error unknown command '...'` |
//!
//! [`request`] is the client (`basalt-board ctl`), usable from LAVA's `power_on_command`
//! or pdudaemon's `localcmdline` driver.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as TokioBufReader};
use tokio::net::UnixListener;

use super::board::Shared;
use super::fault::Fault;
use super::SimError;

/// Longest accepted command line.
const MAX_LINE: usize = 1024;

/// Answers one command.
pub(crate) async fn handle(shared: &Arc<Shared>, line: &str) -> String {
    let line = line.trim();
    let (word, rest) = match line.split_once(char::is_whitespace) {
        Some((w, r)) => (w, r.trim()),
        None => (line, ""),
    };
    match (word, rest) {
        ("on", "") => {
            shared.power_on().await;
            "ok".into()
        }
        ("off", "") => {
            shared.power_off().await;
            "ok".into()
        }
        ("reset", "") => {
            shared.reset().await;
            "ok".into()
        }
        ("status", "") => if shared.is_on().await { "on" } else { "off" }.into(),
        ("phase", "") => shared.phase().into(),
        ("faults", "") => shared.faults.describe(),
        ("fault", spec) => match spec.parse::<Fault>() {
            Ok(f) => {
                shared.apply_fault(&f).await;
                eprintln!("basalt-board: fault {f}");
                "ok".into()
            }
            Err(e) => format!("error {e}"),
        },
        ("help", "") => "commands: on, off, reset, status, phase, fault SPEC, faults, help".into(),
        ("", "") => "error empty command".into(),
        _ => format!("error unknown command '{line}'"),
    }
}

/// Serves the control socket until the task is aborted.
pub(crate) async fn serve(listener: UnixListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut r = TokioBufReader::new(r);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match read_line_limited(&mut r, &mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let answer = if buf.len() > MAX_LINE {
                    "error line too long".to_string()
                } else {
                    handle(&shared, &String::from_utf8_lossy(&buf)).await
                };
                if w.write_all(format!("{answer}\n").as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Reads one line; keeps at most a little more than [`MAX_LINE`] bytes of it.
async fn read_line_limited<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(total);
        }
        let (used, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if buf.len() <= MAX_LINE {
            buf.extend_from_slice(&available[..used]);
        }
        r.consume(used);
        total += used;
        if done {
            return Ok(total);
        }
    }
}

/// Sends one command to a board's control socket and returns its answer line.
pub fn request(control: &Path, command: &str, timeout: Duration) -> Result<String, SimError> {
    let io_err = |source: std::io::Error| SimError::Control {
        path: control.to_path_buf(),
        source,
    };
    let mut stream = StdUnixStream::connect(control).map_err(io_err)?;
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    stream
        .write_all(format!("{}\n", command.trim()).as_bytes())
        .map_err(io_err)?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(io_err)?;
    if answer.is_empty() {
        return Err(io_err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "no answer",
        )));
    }
    Ok(answer.trim_end().to_string())
}
