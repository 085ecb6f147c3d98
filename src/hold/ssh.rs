//! SSH to a held board (docs/reservations.md, `## SSH`): once a boot reached its shell, the
//! worker authorises the lease's public key for `ssh_user` through the console, starts the
//! image's SSH server when none listens yet, and reports where to connect.
//!
//! Everything goes through the board's shell as typed commands, so it works on any image with
//! a POSIX shell: QEMU or real boards, busybox or a full distribution.
//!
//! 1. `command -v dropbear sshd` (and their usual `/usr/sbin`, `/sbin` paths): which server the
//!    image has; `/proc/net/tcp{,6}`: whether something already listens on port 22.
//! 2. The user's home from `getent passwd` (else `/etc/passwd`).
//! 3. `~USER/.ssh/authorized_keys` (directory 0700, file 0600, owned by the user): lines an
//!    earlier lease wrote (comment `basalt-lease`) are removed, the lease's key appended as
//!    `TYPE BLOB basalt-lease` (the user's comment is dropped), written in short pieces (a
//!    console shell's line editor may hold only 1 KiB) and read back to compare.
//! 4. Unless port 22 listens: `dropbear -R -p 22` (host keys made on demand), or `sshd` after
//!    `ssh-keygen -A`; then port 22 is polled until it listens.
//! 5. The endpoint: the forwarded `127.0.0.1` port of a QEMU board
//!    ([`crate::actions::boot::qemu_forward`]), or the board's own address (`ip -4 addr`),
//!    port 22.
//!
//! The key is user input: it must be one OpenSSH public key line of a known type whose
//! base64 blob decodes to that type's structure ([`PublicKey::parse`]); only its type and
//! blob (letters, digits, `+/=`) reach the board, quoted. Each command's output is framed by
//! markers the shell prints (`echo BASALT''_SSH_…`: the typed line never matches them), and
//! its exit status is read, so a failed step is named with its output.

use basalt_hal::console::expect::{ExpectError, Regex, Session};
use basalt_proto::message::SshEndpoint;
use std::time::{Duration, Instant};

/// The comment basalt gives the keys it authorises, to find them at the next lease.
pub const LEASE_COMMENT: &str = "basalt-lease";

/// The longest public key line accepted (an RSA 16384-bit key is about 2.8 KiB).
const MAX_KEY_LEN: usize = 8192;

/// How many characters of the key one typed command carries.
const CHUNK: usize = 256;

/// An OpenSSH public key algorithm basalt authorises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// `ssh-ed25519`
    Ed25519,
    /// `ssh-rsa`
    Rsa,
    /// `ecdsa-sha2-nistp256`
    EcdsaP256,
    /// `ecdsa-sha2-nistp384`
    EcdsaP384,
    /// `ecdsa-sha2-nistp521`
    EcdsaP521,
    /// `sk-ssh-ed25519@openssh.com` (a FIDO key)
    SkEd25519,
    /// `sk-ecdsa-sha2-nistp256@openssh.com` (a FIDO key)
    SkEcdsaP256,
}

impl KeyType {
    /// Every type, for the error that lists them.
    pub const ALL: [KeyType; 7] = [
        KeyType::Ed25519,
        KeyType::Rsa,
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::EcdsaP521,
        KeyType::SkEd25519,
        KeyType::SkEcdsaP256,
    ];

    /// The name in the key line and in the blob.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ssh-ed25519",
            KeyType::Rsa => "ssh-rsa",
            KeyType::EcdsaP256 => "ecdsa-sha2-nistp256",
            KeyType::EcdsaP384 => "ecdsa-sha2-nistp384",
            KeyType::EcdsaP521 => "ecdsa-sha2-nistp521",
            KeyType::SkEd25519 => "sk-ssh-ed25519@openssh.com",
            KeyType::SkEcdsaP256 => "sk-ecdsa-sha2-nistp256@openssh.com",
        }
    }

    fn from_name(name: &str) -> Option<KeyType> {
        KeyType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Checks the fields after the type name in the blob (RFC 4253 §6.6, RFC 5656 §3.1,
    /// RFC 8709, OpenSSH's PROTOCOL.u2f).
    fn check_fields(self, fields: &[&[u8]]) -> Result<(), String> {
        let count = |n: usize| {
            if fields.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "{} fields after the type, {n} expected",
                    fields.len()
                ))
            }
        };
        let curve = |want: &str| {
            if fields.first().copied() == Some(want.as_bytes()) {
                Ok(())
            } else {
                Err(format!("the curve is not {want}"))
            }
        };
        match self {
            KeyType::Ed25519 | KeyType::SkEd25519 => {
                count(if self == KeyType::Ed25519 { 1 } else { 2 })?;
                if fields[0].len() != 32 {
                    return Err(format!(
                        "an ed25519 key has 32 bytes, not {}",
                        fields[0].len()
                    ));
                }
                Ok(())
            }
            KeyType::Rsa => {
                count(2)?;
                if fields[1].len() < 128 {
                    return Err("an RSA modulus under 1024 bits".into());
                }
                Ok(())
            }
            KeyType::EcdsaP256 => count(2).and(curve("nistp256")),
            KeyType::EcdsaP384 => count(2).and(curve("nistp384")),
            KeyType::EcdsaP521 => count(2).and(curve("nistp521")),
            KeyType::SkEcdsaP256 => count(3).and(curve("nistp256")),
        }
    }
}

/// Why a public key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Nothing but white space.
    #[error("the SSH public key is empty")]
    Empty,
    /// More than one line, or a control character.
    #[error("the SSH public key must be one line without control characters")]
    NotOneLine,
    /// Longer than [`MAX_KEY_LEN`].
    #[error("the SSH public key is longer than {MAX_KEY_LEN} bytes")]
    TooLong,
    /// The first word is not a known key type (options such as `command=` are refused too).
    #[error("'{0}' is not an SSH public key type basalt authorises ({types})", types = KeyType::ALL.map(KeyType::name).join(", "))]
    UnknownType(String),
    /// No base64 blob after the type.
    #[error("the SSH public key has no key data after its type")]
    NoBlob,
    /// The blob is not base64.
    #[error("the SSH public key's data is not base64: {0}")]
    NotBase64(String),
    /// The blob does not have its type's structure.
    #[error("the SSH public key's data is not a {kind} key: {why}")]
    BadBlob {
        /// The type the line names.
        kind: &'static str,
        /// What is wrong with it.
        why: String,
    },
}

/// One OpenSSH public key, checked: its type and base64 blob (the comment is not kept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    kind: KeyType,
    blob: String,
}

impl PublicKey {
    /// Parses a one-line OpenSSH public key (`TYPE BASE64 [COMMENT]`, as in `id_ed25519.pub`).
    pub fn parse(text: &str) -> Result<PublicKey, KeyError> {
        use base64::Engine as _;
        let line = text.trim();
        if line.is_empty() {
            return Err(KeyError::Empty);
        }
        if line.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong);
        }
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(KeyError::NotOneLine);
        }
        let mut words = line.split_ascii_whitespace();
        let first = words.next().unwrap_or("");
        let kind = KeyType::from_name(first).ok_or_else(|| {
            let shown: String = first.chars().take(40).collect();
            KeyError::UnknownType(shown)
        })?;
        let blob = words.next().ok_or(KeyError::NoBlob)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(blob)
            .map_err(|e| KeyError::NotBase64(e.to_string()))?;
        let bad = |why: String| KeyError::BadBlob {
            kind: kind.name(),
            why,
        };
        let fields = ssh_strings(&bytes).map_err(bad)?;
        match fields.split_first() {
            Some((name, rest)) if *name == kind.name().as_bytes() => {
                kind.check_fields(rest).map_err(bad)?
            }
            Some((name, _)) => {
                return Err(bad(format!(
                    "its data is of type '{}'",
                    String::from_utf8_lossy(name)
                        .chars()
                        .take(40)
                        .collect::<String>()
                )))
            }
            None => return Err(bad("no data".into())),
        }
        Ok(PublicKey {
            kind,
            blob: blob.to_string(),
        })
    }

    /// The key's type.
    pub fn kind(&self) -> KeyType {
        self.kind
    }

    /// The line written to `authorized_keys`: `TYPE BLOB basalt-lease`.
    pub fn authorized_line(&self) -> String {
        format!("{} {} {LEASE_COMMENT}", self.kind.name(), self.blob)
    }
}

/// Splits an SSH wire-format blob into its strings (each a big-endian u32 length, then the
/// bytes); all of it must be consumed.
fn ssh_strings(mut bytes: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < 4 {
            return Err("truncated".into());
        }
        let n = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let rest = &bytes[4..];
        if n > rest.len() {
            return Err("truncated".into());
        }
        out.push(&rest[..n]);
        bytes = &rest[n..];
    }
    Ok(out)
}

/// Why a user name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a user name (1 to 32 of letters, digits, '_', '.', '-'; not starting with '-' or '.')")]
pub struct UserError(pub String);

/// A user to log in as over SSH: a portable POSIX user name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshUser(String);

impl SshUser {
    /// The default of a lease without `ssh_user`.
    pub const DEFAULT: &'static str = "root";

    /// Checks a user name (the lease's `ssh_user`).
    pub fn parse(name: &str) -> Result<SshUser, UserError> {
        let ok = !name.is_empty()
            && name.len() <= 32
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            && !name.starts_with(['-', '.']);
        if ok {
            Ok(SshUser(name.to_string()))
        } else {
            Err(UserError(name.chars().take(40).collect()))
        }
    }

    /// The lease's user, or `root` without one.
    pub fn of_lease(name: Option<&str>) -> Result<SshUser, UserError> {
        SshUser::parse(name.unwrap_or(SshUser::DEFAULT))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How the holder reaches the board's port 22.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Through a port forward on the worker (a QEMU board's `hostfwd` on 127.0.0.1).
    Forwarded {
        /// The host to advertise (127.0.0.1: the forward binds loopback only).
        host: String,
        /// The forwarded port.
        port: u16,
    },
    /// Directly: the board's own address on its network (`ip -4 addr`), port 22.
    Network,
}

/// What [`set_up`] needs besides the console.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The lease's key.
    pub key: PublicKey,
    /// The lease's user.
    pub user: SshUser,
    /// Where the holder connects from.
    pub reach: Reach,
    /// The time for each command on the board's shell.
    pub command_timeout: Duration,
    /// How long to wait for a started server to listen.
    pub listen_timeout: Duration,
    /// The device's character delay for typed commands (`test_character_delay`).
    pub char_delay: Duration,
}

impl Setup {
    /// A setup with the usual times: 30 s per command, 20 s to listen, no character delay.
    pub fn new(key: PublicKey, user: SshUser, reach: Reach) -> Setup {
        Setup {
            key,
            user,
            reach,
            command_timeout: Duration::from_secs(30),
            listen_timeout: Duration::from_secs(20),
            char_delay: Duration::ZERO,
        }
    }
}

/// Why SSH could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The image has neither dropbear nor sshd, and nothing listens on port 22: the board
    /// has no SSH (not a failure of the boot; the console stays).
    #[error("the image has no SSH server (no dropbear or sshd, nothing listening on port 22)")]
    NoServer,
    /// The user is not in the image's passwd database.
    #[error("user '{0}' does not exist on the board")]
    NoUser(String),
    /// The user's home directory is not an absolute path basalt can quote.
    #[error("user '{user}' has an unusable home directory {home:?}")]
    BadHome {
        /// The user.
        user: String,
        /// What passwd gives.
        home: String,
    },
    /// A step's command failed on the board.
    #[error("{step} failed on the board (exit status {status}): {output}")]
    Step {
        /// Which step.
        step: &'static str,
        /// Its exit status.
        status: i32,
        /// What it printed (at most 512 bytes).
        output: String,
    },
    /// The key read back from the board is not the one written (characters lost on the
    /// console line).
    #[error("the key in {file} is not the one written (characters lost on the console?): {got:?}")]
    Garbled {
        /// The file.
        file: String,
        /// Its last line.
        got: String,
    },
    /// The server was started but port 22 does not listen.
    #[error("{server} was started but nothing listens on port 22 after {:.0} s", waited.as_secs_f64())]
    NotListening {
        /// What was started.
        server: String,
        /// How long basalt waited.
        waited: Duration,
    },
    /// A board on a network has no IPv4 address to give the holder.
    #[error("the board has no global IPv4 address (ip -4 addr) to reach it by SSH")]
    NoAddress,
    /// The console failed or a command did not finish in time.
    #[error("{step}: {source}")]
    Console {
        /// Which step.
        step: &'static str,
        /// The console's error.
        #[source]
        source: ExpectError,
    },
}

/// The SSH servers the image has, as `command -v` printed them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Servers {
    dropbear: Option<String>,
    sshd: Option<String>,
}

/// Authorises the lease's key on the board behind `session` (a shell at its prompt), starts
/// its SSH server when none listens, and returns where to connect.
pub async fn set_up(session: &mut Session, setup: &Setup) -> Result<SshEndpoint, SshError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let salt = std::process::id() ^ now ^ nonce();
    set_up_salted(session, setup, &format!("{salt:x}")).await
}

/// A number that differs between calls in one process.
fn nonce() -> u32 {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .wrapping_mul(0x9e37_79b9)
}

/// [`set_up`] with the markers' salt given (for the tests' scripted boards).
async fn set_up_salted(
    session: &mut Session,
    setup: &Setup,
    salt: &str,
) -> Result<SshEndpoint, SshError> {
    let mut sh = Shell {
        session,
        salt,
        n: 0,
        timeout: setup.command_timeout,
        delay: setup.char_delay,
    };
    let servers = find_servers(&mut sh).await?;
    let listening = port_22_listens(&mut sh).await?;
    if !listening && servers.dropbear.is_none() && servers.sshd.is_none() {
        return Err(SshError::NoServer);
    }
    let user = setup.user.as_str();
    let home = home_of(&mut sh, user).await?;
    authorise(&mut sh, user, &home, &setup.key).await?;
    if !listening {
        start_server(&mut sh, &servers, setup.listen_timeout).await?;
    }
    let (host, port) = match &setup.reach {
        Reach::Forwarded { host, port } => (host.clone(), *port),
        Reach::Network => (address(&mut sh).await?, 22),
    };
    Ok(SshEndpoint {
        host,
        port,
        user: user.to_string(),
    })
}

/// The board's shell, one command at a time.
struct Shell<'a> {
    session: &'a mut Session,
    salt: &'a str,
    n: u32,
    timeout: Duration,
    delay: Duration,
}

impl Shell<'_> {
    /// Types `cmd` and returns its exit status and output (`\r\n` made `\n`).
    async fn run(&mut self, step: &'static str, cmd: &str) -> Result<(i32, String), SshError> {
        self.n += 1;
        let tag = format!("BASALT_SSH_{}_{}", self.salt, self.n);
        // the quotes split the markers in the typed line (and its echo): only the shell's
        // own output matches them
        let typed = format!(
            "echo {q}_BEGIN; {cmd}; echo {q}_RC=$?",
            q = tag.replacen("_", "''_", 1)
        );
        let pattern = Regex::new(&format!(r"(?s){tag}_BEGIN\r?\n(.*?){tag}_RC=(\d+)\r?\n"))
            .map_err(|e| SshError::Step {
                step,
                status: -1,
                output: format!("marker pattern: {e}"),
            })?;
        let console = |source| SshError::Console { step, source };
        self.session
            .send_line(&typed, self.delay)
            .await
            .map_err(|e| console(ExpectError::Console(e)))?;
        let m = self
            .session
            .expect(std::slice::from_ref(&pattern), self.timeout)
            .await
            .map_err(console)?;
        let output = m.group(1).unwrap_or("").replace("\r\n", "\n");
        let status = m.group(2).and_then(|s| s.parse::<i32>().ok()).unwrap_or(-1);
        Ok((status, output))
    }

    /// Like [`Shell::run`]; a non-zero exit status is an error naming the step.
    async fn check(&mut self, step: &'static str, cmd: &str) -> Result<String, SshError> {
        let (status, output) = self.run(step, cmd).await?;
        if status != 0 {
            return Err(SshError::Step {
                step,
                status,
                output: clip(&output),
            });
        }
        Ok(output)
    }
}

/// At most 512 bytes of `s`, trimmed, for an error.
fn clip(s: &str) -> String {
    let s = s.trim();
    let mut end = s.len().min(512);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// `s` for the board's shell: as it is when it has no character special to the shell, else in
/// single quotes.
fn quote(s: &str) -> String {
    shell_words::quote(s).into_owned()
}

/// `s` in single quotes for the board's shell, always (each piece of a key looks the same).
fn single_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

async fn find_servers(sh: &mut Shell<'_>) -> Result<Servers, SshError> {
    let out = sh
        .run(
            "looking for dropbear and sshd",
            "for p in dropbear sshd /usr/sbin/dropbear /usr/sbin/sshd /sbin/dropbear /sbin/sshd; do command -v \"$p\"; done 2>/dev/null",
        )
        .await?
        .1;
    Ok(parse_servers(&out))
}

fn parse_servers(out: &str) -> Servers {
    let mut s = Servers::default();
    for line in out.lines().map(str::trim) {
        let name = line.rsplit('/').next().unwrap_or("");
        let slot = match name {
            "dropbear" => &mut s.dropbear,
            "sshd" => &mut s.sshd,
            _ => continue,
        };
        // an absolute path wins (sshd must be started by one)
        if slot.as_ref().is_none_or(|p| !p.starts_with('/')) {
            *slot = Some(line.to_string());
        }
    }
    s
}

async fn port_22_listens(sh: &mut Shell<'_>) -> Result<bool, SshError> {
    let out = sh
        .run(
            "looking for a server on port 22",
            "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null",
        )
        .await?
        .1;
    Ok(listens_on_22(&out))
}

/// Whether `/proc/net/tcp{,6}` shows a socket listening (state `0A`) on local port 22.
fn listens_on_22(proc_net_tcp: &str) -> bool {
    proc_net_tcp.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (_, local, _, state) = (f.next(), f.next(), f.next(), f.next());
        local.is_some_and(|a| a.ends_with(":0016")) && state == Some("0A")
    })
}

async fn home_of(sh: &mut Shell<'_>, user: &str) -> Result<String, SshError> {
    let u = quote(user);
    let out = sh
        .run(
            "looking up the user",
            &format!(
                "{{ getent passwd {u} 2>/dev/null || awk -F: -v u={u} '$1 == u' /etc/passwd; }} | head -n 1"
            ),
        )
        .await?
        .1;
    let line = out
        .lines()
        .map(str::trim)
        .find(|l| l.split(':').next() == Some(user))
        .ok_or_else(|| SshError::NoUser(user.to_string()))?;
    let home = line.split(':').nth(5).unwrap_or("").to_string();
    if !home.starts_with('/') || home.chars().any(char::is_control) || home.len() > 1024 {
        return Err(SshError::BadHome {
            user: user.to_string(),
            home,
        });
    }
    Ok(home)
}

async fn authorise(
    sh: &mut Shell<'_>,
    user: &str,
    home: &str,
    key: &PublicKey,
) -> Result<(), SshError> {
    let dir = format!("{}/.ssh", home.trim_end_matches('/'));
    let file = format!("{dir}/authorized_keys");
    let (d, f, u) = (quote(&dir), quote(&file), quote(user));
    let new = quote(&format!("{file}.basalt"));
    // the earlier leases' keys out, the file's other keys kept
    sh.check(
        "preparing authorized_keys",
        &format!(
            "(umask 077 && mkdir -p {d} && touch {f} && {{ grep -v ' {LEASE_COMMENT}$' {f} || true; }} >{new})"
        ),
    )
    .await?;
    let line = key.authorized_line();
    let mut rest = line.as_str();
    while !rest.is_empty() {
        let (piece, tail) = rest.split_at(rest.len().min(CHUNK));
        sh.check(
            "writing the key",
            &format!("printf '%s' {} >>{new}", single_quoted(piece)),
        )
        .await?;
        rest = tail;
    }
    sh.check(
        "installing authorized_keys",
        &format!(
            "printf '\\n' >>{new} && cat {new} >{f} && rm -f {new} && chmod 700 {d} && chmod 600 {f} && chown {u} {d} {f}"
        ),
    )
    .await?;
    let got = sh
        .check("reading authorized_keys back", &format!("tail -n 1 {f}"))
        .await?;
    let got = got.trim_end_matches('\n').trim_end_matches('\r');
    if got != line {
        return Err(SshError::Garbled {
            file,
            got: clip(got),
        });
    }
    Ok(())
}

async fn start_server(
    sh: &mut Shell<'_>,
    servers: &Servers,
    listen_timeout: Duration,
) -> Result<(), SshError> {
    let (server, cmd) = match (&servers.dropbear, &servers.sshd) {
        (Some(db), _) => (
            db.clone(),
            format!("mkdir -p /etc/dropbear && {} -R -p 22", quote(db)),
        ),
        (None, Some(sshd)) => (
            sshd.clone(),
            format!(
                "mkdir -p /run/sshd && {{ ssh-keygen -A >/dev/null 2>&1 || true; }} && {}",
                quote(sshd)
            ),
        ),
        (None, None) => return Err(SshError::NoServer),
    };
    sh.check("starting the SSH server", &cmd).await?;
    let start = Instant::now();
    loop {
        if port_22_listens(sh).await? {
            return Ok(());
        }
        if start.elapsed() >= listen_timeout {
            return Err(SshError::NotListening {
                server,
                waited: start.elapsed(),
            });
        }
        // a server daemonises at once; its socket follows within moments
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn address(sh: &mut Shell<'_>) -> Result<String, SshError> {
    let out = sh
        .run(
            "looking up the board's address",
            "ip -4 -o addr show scope global 2>/dev/null",
        )
        .await?
        .1;
    first_ipv4(&out).ok_or(SshError::NoAddress)
}

/// The first address of `ip -4 -o addr` output (`2: eth0    inet 10.0.2.15/24 ...`).
fn first_ipv4(out: &str) -> Option<String> {
    out.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        w.find(|x| *x == "inet")?;
        let a = w.next()?.split('/').next()?;
        a.parse::<std::net::Ipv4Addr>()
            .ok()
            .map(|ip| ip.to_string())
    })
}

#[cfg(test)]
mod tests;
