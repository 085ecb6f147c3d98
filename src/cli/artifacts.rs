//! `basalt artifacts`: the master's artifact store (docs/reservations.md, "Artifact store") —
//! upload a file built by CI (streamed from disk, never read whole into memory), list, show
//! and delete artifacts. A job or a boot request then names an artifact as `artifact:NAME`.

use crate::{print_rows, ServerArgs};
use anyhow::{bail, Context, Result};
use basalt::client::ClientError;
use clap::{Args, Subcommand};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Files at least this large show their progress on stderr.
const PROGRESS_FROM: u64 = 64 << 20;

#[derive(Args)]
pub struct ArtifactsArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: ArtifactsCommand,
}

#[derive(Subcommand)]
enum ArtifactsCommand {
    /// Upload FILE (replacing an artifact of that name you uploaded); prints its URL.
    Upload {
        file: PathBuf,
        /// The artifact's name (segments of A-Z a-z 0-9 . _ - joined by '/'); default: the
        /// file's name.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Keep it this long (`2d`, `36h`, `90m`; at most the master's --artifact-max-age,
        /// its default).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        max_age: Option<Duration>,
    },
    /// List the artifacts (name, size, uploader, expiry, URL).
    List,
    /// Show one artifact as JSON.
    Show { name: String },
    /// Delete an artifact (yours, or any as an admin).
    Delete { name: String },
}

/// A duration as `humantime` reads it (`2d`, `36h`), or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = match s.trim().parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s.trim()).map_err(|e| format!("{e}"))?,
    };
    if d.as_secs() == 0 {
        return Err("at least one second".into());
    }
    Ok(d)
}

/// A name as one URL path segment: every byte but `A-Z a-z 0-9 - _ .` percent-encoded, `/`
/// included, so that a URL library cannot take `..` or `//` in it for path steps and send
/// another request than the one asked (the master checks the name itself). The names `.` and
/// `..` alone cannot be written so and are refused here.
fn encoded(name: &str) -> Result<String> {
    if name == "." || name == ".." {
        bail!("artifact name {name:?}: a name cannot be '.' or '..'");
    }
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

/// Runs `basalt artifacts ...`.
pub fn artifacts(a: &ArtifactsArgs) -> Result<ExitCode> {
    let c = crate::client_of(&a.server.master);
    match &a.command {
        ArtifactsCommand::Upload {
            file,
            name,
            max_age,
        } => {
            let name = match name {
                Some(n) => n.clone(),
                None => file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .map(str::to_string)
                    .with_context(|| format!("{}: give the artifact a --name", file.display()))?,
            };
            let f = std::fs::File::open(file).with_context(|| file.display().to_string())?;
            let len = f
                .metadata()
                .with_context(|| file.display().to_string())?
                .len();
            let mut path = format!("artifacts/{}", encoded(&name)?);
            if let Some(d) = max_age {
                path.push_str(&format!("?max_age={}", d.as_secs()));
            }
            let body = Progress::new(f, len, len >= PROGRESS_FROM);
            let answer = match c.put_stream(&path, body, len) {
                Ok(v) => v,
                // the master answers a refusal (a quota) before it read the body: the client may
                // see the connection closed instead of the answer, so say what the store says
                Err(e @ ClientError::Transport { .. }) => {
                    if let Ok(list) = c.get("artifacts/") {
                        let quota = list["quota"].as_u64().unwrap_or(u64::MAX);
                        let used = list["used"].as_u64().unwrap_or(0);
                        if used.saturating_add(len) > quota {
                            bail!(
                                "{e}\nthe store is full: the quota is {quota} bytes, {used} are used, \
                                 {} needs {len}",
                                file.display()
                            );
                        }
                    }
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            };
            if a.server.json {
                println!("{answer}");
            } else {
                let url = answer["url"]
                    .as_str()
                    .context("the master's answer has no `url`")?;
                println!("{url}");
            }
        }
        ArtifactsCommand::List => {
            let rows = c.list("artifacts/")?;
            print_rows(
                &rows,
                &["name", "size", "uploader", "expires", "url"],
                a.server.json,
            );
        }
        ArtifactsCommand::Show { name } => {
            println!("{}", c.get(&format!("artifacts/{}/", encoded(name)?))?);
        }
        ArtifactsCommand::Delete { name } => {
            c.delete(&format!("artifacts/{}/", encoded(name)?))?;
            if !a.server.json {
                println!("deleted {name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A reader that reports on stderr how much of it was read, at most once a second.
struct Progress<R> {
    inner: R,
    len: u64,
    read: u64,
    show: bool,
    started: Instant,
    last: Instant,
}

impl<R: Read> Progress<R> {
    fn new(inner: R, len: u64, show: bool) -> Progress<R> {
        let now = Instant::now();
        Progress {
            inner,
            len,
            read: 0,
            show,
            started: now,
            last: now,
        }
    }

    fn report(&self) {
        const MIB: f64 = 1024.0 * 1024.0;
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        eprintln!(
            "basalt: uploaded {:.0} MiB of {:.0} MiB ({:.0}%, {:.1} MiB/s)",
            self.read as f64 / MIB,
            self.len as f64 / MIB,
            100.0 * self.read as f64 / self.len.max(1) as f64,
            self.read as f64 / MIB / secs
        );
    }
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.show && (self.last.elapsed() >= Duration::from_secs(1) || n == 0) {
            self.last = Instant::now();
            self.report();
            if n == 0 {
                self.show = false;
            }
        }
        Ok(n)
    }
}
