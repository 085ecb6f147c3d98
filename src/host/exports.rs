//! The NFS server's export table, `/etc/exports` (exports(5)), read and written by basalt
//! itself: no crate parses or writes this format (crates.io has none; nfs-utils' own parser is
//! C inside exportfs), so this module does, for the one thing a job needs — an entry for its
//! NFS root while it runs, removed again at its end — then runs `exportfs -ra`.
//!
//! The syntax read (as nfs-utils reads it): one export per logical line; a backslash before the
//! newline continues a line; `#` starts a comment outside quotes; blank lines are ignored. A
//! line is the export path (absolute; bare, with `\NNN` octal escapes, or in double quotes),
//! then clients separated by blanks: `host(opt,opt)`, `host` alone, or `(opt)` alone (any
//! host); a `-opt,opt` word sets the default options of the clients after it.
//!
//! Only the entries basalt added (a trailing `# basalt job <id>` comment) are ever removed;
//! every other byte of the file stays as it was. Changes are made under an exclusive lock
//! (`flock` on `<file>.basalt-lock`), so jobs that add and remove entries at once do not lose
//! each other's, and written to a temporary file renamed over the table (never half written).

use std::fmt;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The options LAVA exports a job's NFS root with.
pub const JOB_OPTIONS: &[&str] = &[
    "rw",
    "no_root_squash",
    "no_all_squash",
    "async",
    "no_subtree_check",
];

/// What went wrong with the export table.
#[derive(Debug, thiserror::Error)]
pub enum ExportsError {
    /// The table does not parse: where and why (1-based line and column).
    #[error("{file}:{line}:{column}: {msg}")]
    Syntax {
        file: String,
        line: usize,
        column: usize,
        msg: String,
    },
    #[error("{0} is exported already")]
    Exists(String),
    #[error("cannot export {0}: {1}")]
    BadPath(String, &'static str),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// `exportfs` is missing or failed: the NFS server does not serve the table.
    #[error("{0}")]
    Exportfs(String),
}

fn io(what: impl fmt::Display, source: std::io::Error) -> ExportsError {
    ExportsError::Io {
        what: what.to_string(),
        source,
    }
}

/// One client of an export: a host pattern (empty: any host) and its options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub host: String,
    /// The options in parentheses, else the default options in force.
    pub options: Vec<String>,
}

/// One export line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The exported directory, unquoted and unescaped.
    pub path: String,
    pub clients: Vec<Client>,
    /// The comment at the end of the line, without `#`.
    pub comment: Option<String>,
    /// 1-based line where the entry starts.
    pub line: usize,
    /// Bytes of the file the entry takes, its newline included.
    span: Range<usize>,
}

impl Entry {
    /// The job tag of an entry basalt added.
    pub fn basalt_tag(&self) -> Option<&str> {
        self.comment
            .as_deref()
            .map(str::trim)
            .and_then(|c| c.strip_prefix("basalt job "))
    }
}

/// An export table: its text, kept byte for byte, and the entries read from it.
#[derive(Clone, Debug, Default)]
pub struct Exports {
    text: String,
    entries: Vec<Entry>,
}

/// One character of a logical line, where it is in the file.
#[derive(Clone, Copy)]
struct At {
    c: char,
    line: usize,
    col: usize,
}

struct Syntax<'a> {
    file: &'a str,
}

impl Syntax<'_> {
    fn err(&self, at: (usize, usize), msg: impl Into<String>) -> ExportsError {
        ExportsError::Syntax {
            file: self.file.to_string(),
            line: at.0,
            column: at.1,
            msg: msg.into(),
        }
    }
}

/// Reads an export table; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Exports, ExportsError> {
    let syn = Syntax { file };
    let mut entries = Vec::new();
    // logical lines: continuations removed, each char with its place
    let mut chars: Vec<At> = Vec::new();
    let (mut line, mut col) = (1usize, 1usize);
    let mut start = 0usize;
    let mut it = text.char_indices().peekable();
    while let Some((off, c)) = it.next() {
        if c == '\\' && it.peek().is_some_and(|(_, n)| *n == '\n') {
            it.next();
            line += 1;
            col = 1;
            continue;
        }
        if c == '\n' {
            let end = off + 1;
            if let Some(e) = parse_line(&syn, &chars, start..end, (line, col))? {
                entries.push(e);
            }
            chars.clear();
            start = end;
            line += 1;
            col = 1;
            continue;
        }
        chars.push(At { c, line, col });
        col += 1;
    }
    if let Some(e) = parse_line(&syn, &chars, start..text.len(), (line, col))? {
        entries.push(e);
    }
    Ok(Exports {
        text: text.to_string(),
        entries,
    })
}

fn parse_line(
    syn: &Syntax<'_>,
    chars: &[At],
    span: Range<usize>,
    eol: (usize, usize),
) -> Result<Option<Entry>, ExportsError> {
    let mut i = 0;
    let place = |i: usize| chars.get(i).map(|a| (a.line, a.col)).unwrap_or(eol);
    let blank = |c: char| c == ' ' || c == '\t' || c == '\r';
    let skip = |i: &mut usize| {
        while *i < chars.len() && blank(chars[*i].c) {
            *i += 1;
        }
    };
    skip(&mut i);
    if i >= chars.len() || chars[i].c == '#' {
        return Ok(None);
    }
    let first_line = chars[i].line;
    // the path
    let path_at = place(i);
    let mut path = String::new();
    if chars[i].c == '"' {
        i += 1;
        loop {
            match chars.get(i) {
                None => return Err(syn.err(path_at, "unterminated quoted path")),
                Some(a) if a.c == '"' => {
                    i += 1;
                    break;
                }
                Some(a) => {
                    path.push(a.c);
                    i += 1;
                }
            }
        }
        if i < chars.len() && !blank(chars[i].c) && chars[i].c != '#' {
            return Err(syn.err(place(i), "expected a blank after the quoted path"));
        }
    } else {
        while i < chars.len() && !blank(chars[i].c) && chars[i].c != '#' {
            if chars[i].c == '\\' {
                let digits: String = chars[i + 1..].iter().take(3).map(|a| a.c).collect();
                match u8::from_str_radix(&digits, 8) {
                    Ok(b) if digits.len() == 3 && b.is_ascii() => {
                        path.push(b as char);
                        i += 4;
                        continue;
                    }
                    _ => {
                        return Err(syn.err(
                            place(i),
                            "a backslash in a path must start an octal escape like \\040",
                        ))
                    }
                }
            }
            if chars[i].c == '(' || chars[i].c == ')' || chars[i].c == '"' {
                return Err(syn.err(
                    place(i),
                    format!("unexpected '{}' in the export path", chars[i].c),
                ));
            }
            path.push(chars[i].c);
            i += 1;
        }
    }
    if !path.starts_with('/') {
        return Err(syn.err(path_at, format!("the export path '{path}' is not absolute")));
    }
    let mut defaults: Vec<String> = Vec::new();
    let mut clients = Vec::new();
    let mut comment = None;
    loop {
        skip(&mut i);
        let Some(a) = chars.get(i) else { break };
        if a.c == '#' {
            comment = Some(chars[i + 1..].iter().map(|a| a.c).collect());
            break;
        }
        if a.c == '-' {
            let at = place(i + 1);
            i += 1;
            let mut word = String::new();
            while i < chars.len() && !blank(chars[i].c) && chars[i].c != '#' {
                word.push(chars[i].c);
                i += 1;
            }
            defaults = options(syn, &word, at)?;
            continue;
        }
        let mut host = String::new();
        while i < chars.len() && !blank(chars[i].c) && !matches!(chars[i].c, '(' | ')' | '#' | '"')
        {
            host.push(chars[i].c);
            i += 1;
        }
        let opts = match chars.get(i).map(|a| a.c) {
            Some('(') => {
                let open = place(i);
                i += 1;
                let at = place(i);
                let mut word = String::new();
                loop {
                    match chars.get(i) {
                        None => return Err(syn.err(open, "unclosed '(': the options end with ')'")),
                        Some(a) if a.c == ')' => {
                            i += 1;
                            break;
                        }
                        Some(a) if blank(a.c) || a.c == '(' || a.c == '#' => {
                            return Err(syn.err(
                                place(i),
                                format!("unexpected '{}' in an option list", a.c.escape_default()),
                            ))
                        }
                        Some(a) => {
                            word.push(a.c);
                            i += 1;
                        }
                    }
                }
                if i < chars.len() && !blank(chars[i].c) && chars[i].c != '#' {
                    return Err(syn.err(place(i), "expected a blank after ')'"));
                }
                options(syn, &word, at)?
            }
            Some(')') => return Err(syn.err(place(i), "')' without '('")),
            Some('"') => return Err(syn.err(place(i), "unexpected '\"' in a client")),
            _ => defaults.clone(),
        };
        clients.push(Client {
            host,
            options: opts,
        });
    }
    Ok(Some(Entry {
        path,
        clients,
        comment,
        line: first_line,
        span,
    }))
}

fn options(syn: &Syntax<'_>, word: &str, at: (usize, usize)) -> Result<Vec<String>, ExportsError> {
    let mut out = Vec::new();
    let mut col = at.1;
    for o in word.split(',') {
        if o.is_empty() {
            return Err(syn.err((at.0, col), "empty option"));
        }
        out.push(o.to_string());
        col += o.chars().count() + 1;
    }
    Ok(out)
}

/// How a path is written in the table: bare when it is plain, else in double quotes; paths
/// with quotes, backslashes or control characters are refused (basalt exports only its own
/// directories, whose names it chooses).
pub fn quote_path(path: &str) -> Result<String, ExportsError> {
    if !path.starts_with('/') {
        return Err(ExportsError::BadPath(path.into(), "not absolute"));
    }
    if path
        .chars()
        .any(|c| c == '"' || c == '\\' || c.is_control())
    {
        return Err(ExportsError::BadPath(
            path.into(),
            "it holds a quote, a backslash or a control character",
        ));
    }
    let plain = path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+@:,=%".contains(c));
    Ok(if plain {
        path.to_string()
    } else {
        format!("\"{path}\"")
    })
}

impl Exports {
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Adds an export of `path` to `client` with `options`, tagged as job `tag`'s.
    pub fn add(
        &mut self,
        tag: &str,
        path: &str,
        client: &str,
        options: &[&str],
    ) -> Result<(), ExportsError> {
        if self.entries.iter().any(|e| e.path == path) {
            return Err(ExportsError::Exists(path.into()));
        }
        if tag.chars().any(|c| c.is_control())
            || client
                .chars()
                .any(|c| c.is_whitespace() || "()#\"".contains(c))
        {
            return Err(ExportsError::BadPath(path.into(), "bad job tag or client"));
        }
        let line = format!(
            "{} {client}({}) # basalt job {tag}\n",
            quote_path(path)?,
            options.join(",")
        );
        let mut text = self.text.clone();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&line);
        let new = parse(&text, "exports")?;
        // a last line that ends in a backslash would swallow the new one
        match new.entries.last() {
            Some(e) if e.path == path && e.basalt_tag() == Some(tag) => {
                *self = new;
                Ok(())
            }
            _ => Err(ExportsError::BadPath(
                path.into(),
                "the table's last line continues (ends with a backslash)",
            )),
        }
    }

    /// Removes the entries of `path` that basalt added; returns whether there was one.
    pub fn remove(&mut self, path: &str) -> bool {
        let spans: Vec<Range<usize>> = self
            .entries
            .iter()
            .filter(|e| e.path == path && e.basalt_tag().is_some())
            .map(|e| e.span.clone())
            .collect();
        if spans.is_empty() {
            return false;
        }
        let mut text = String::with_capacity(self.text.len());
        let mut at = 0;
        for s in &spans {
            text.push_str(&self.text[at..s.start]);
            at = s.end;
        }
        text.push_str(&self.text[at..]);
        // whole logical lines went: what is left parses again (else nothing changes)
        match parse(&text, "exports") {
            Ok(t) => {
                *self = t;
                true
            }
            Err(_) => false,
        }
    }
}

/// The export table of this host and the command that makes the NFS server read it again.
#[derive(Clone, Debug)]
pub struct ExportTable {
    pub file: PathBuf,
    /// `exportfs -ra` (split like a shell would, no shell).
    pub exportfs: String,
}

impl ExportTable {
    /// Adds the export of `dir` for job `tag` and has the server export it. Blocking.
    pub fn add(&self, tag: &str, dir: &Path) -> Result<(), ExportsError> {
        let path = dir
            .to_str()
            .ok_or_else(|| ExportsError::BadPath(dir.display().to_string(), "not UTF-8"))?;
        self.change(|t| t.add(tag, path, "*", JOB_OPTIONS).map(|_| true))?;
        self.exportfs()
    }

    /// Removes the export of `dir` basalt added (if any) and has the server drop it. Blocking.
    pub fn remove(&self, dir: &Path) -> Result<bool, ExportsError> {
        let path = dir.to_string_lossy().into_owned();
        let removed = self.change(|t| Ok(t.remove(&path)))?;
        if removed {
            self.exportfs()?;
        }
        Ok(removed)
    }

    /// Removes the entries basalt added for directories that are gone (a job whose basalt was
    /// killed before its cleanup); returns their paths. Blocking.
    pub fn remove_stale(&self) -> Result<Vec<String>, ExportsError> {
        let mut gone = Vec::new();
        let changed = self.change(|t| {
            gone = t
                .entries()
                .iter()
                .filter(|e| e.basalt_tag().is_some() && !Path::new(&e.path).exists())
                .map(|e| e.path.clone())
                .collect();
            for p in &gone {
                t.remove(p);
            }
            Ok(!gone.is_empty())
        })?;
        if changed {
            self.exportfs()?;
        }
        Ok(gone)
    }

    /// Reads the table under the lock, changes it with `f` and, when `f` says so, writes it
    /// back atomically.
    fn change(
        &self,
        f: impl FnOnce(&mut Exports) -> Result<bool, ExportsError>,
    ) -> Result<bool, ExportsError> {
        use nix::fcntl::{Flock, FlockArg};
        // the admin's symlink (if any) stays: the file it points to is replaced
        let file = std::fs::canonicalize(&self.file).unwrap_or_else(|_| self.file.clone());
        let show = file.display().to_string();
        let lock_path = file.with_file_name(format!(
            "{}.basalt-lock",
            file.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io(lock_path.display(), e))?;
        let _held = Flock::lock(lock, FlockArg::LockExclusive)
            .map_err(|(_, e)| io(lock_path.display(), e.into()))?;
        let (text, mode) = match std::fs::read(&file) {
            Ok(b) => {
                let mode = std::fs::metadata(&file)
                    .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
                    .unwrap_or(0o644);
                let t = String::from_utf8(b).map_err(|_| ExportsError::Syntax {
                    file: show.clone(),
                    line: 1,
                    column: 1,
                    msg: "not UTF-8 text".into(),
                })?;
                (t, mode)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), 0o644),
            Err(e) => return Err(io(&show, e)),
        };
        let mut table = parse(&text, &show)?;
        if !f(&mut table)? {
            return Ok(false);
        }
        write_atomically(&file, table.text().as_bytes(), mode)?;
        Ok(true)
    }

    /// Runs `exportfs -ra`.
    fn exportfs(&self) -> Result<(), ExportsError> {
        let argv = shell_words::split(&self.exportfs).map_err(|e| {
            ExportsError::Exportfs(format!("the exportfs command '{}': {e}", self.exportfs))
        })?;
        let Some((cmd, args)) = argv.split_first() else {
            return Err(ExportsError::Exportfs(
                "the exportfs command is empty".into(),
            ));
        };
        let out = std::process::Command::new(cmd)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| {
                ExportsError::Exportfs(if e.kind() == std::io::ErrorKind::NotFound {
                    format!("'{cmd}' not found: this worker cannot export NFS roots (install nfs-kernel-server, or set BASALT_EXPORTFS)")
                } else {
                    format!("cannot run '{}': {e}", self.exportfs)
                })
            })?;
        if !out.status.success() {
            return Err(ExportsError::Exportfs(format!(
                "'{}' failed ({}): {}",
                self.exportfs,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }
}

/// Writes `data` to a temporary file next to `file`, synced, then renames it over `file`.
fn write_atomically(file: &Path, data: &[u8], mode: u32) -> Result<(), ExportsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = file.parent().unwrap_or(Path::new("."));
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.basalt-{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        std::fs::rename(&tmp, file)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(file.display(), e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# /etc/exports: the access control list\n\
\n\
/srv/homes       hostname1(rw,sync,no_subtree_check) hostname2(ro,sync,no_subtree_check)\n\
/srv/nfs4        gss/krb5i(rw,sync,fsid=0,crossmnt,no_subtree_check)\n\
\"/srv/with space\" 192.168.1.0/24(ro)   # a comment\n\
/srv/esc\\040aped -ro,sync host1 host2(rw) \\\n   *.local\n\
/srv/any (rw)\n\
\t/srv/tab\t*(ro)";

    #[test]
    fn reads_what_exports5_allows() {
        let t = parse(SAMPLE, "exports").unwrap();
        let e = t.entries();
        assert_eq!(e.len(), 6);
        assert_eq!(e[0].path, "/srv/homes");
        assert_eq!(e[0].clients[1].host, "hostname2");
        assert_eq!(e[0].clients[1].options, ["ro", "sync", "no_subtree_check"]);
        assert_eq!(e[2].path, "/srv/with space");
        assert_eq!(e[2].comment.as_deref(), Some(" a comment"));
        assert_eq!(e[3].path, "/srv/esc aped");
        assert_eq!(e[3].clients.len(), 3);
        assert_eq!(
            e[3].clients[0],
            Client {
                host: "host1".into(),
                options: vec!["ro".into(), "sync".into()]
            }
        );
        assert_eq!(e[3].clients[1].options, ["rw"]);
        assert_eq!(e[3].clients[2].host, "*.local");
        assert_eq!(e[3].clients[2].options, ["ro", "sync"]);
        assert_eq!(e[4].clients[0].host, "");
        assert_eq!(e[5].line, 9);
        assert_eq!(t.text(), SAMPLE);
    }

    #[test]
    fn malformed_lines_say_where() {
        let cases = [
            ("/a host(rw\n", 1, 8, "unclosed"),
            ("# c\n/a host(rw,,sync)\n", 2, 12, "empty option"),
            ("\n\nrelative *(rw)\n", 3, 1, "not absolute"),
            ("\"/a b *(rw)\n", 1, 1, "unterminated"),
            ("/a host(rw)x\n", 1, 12, "blank after ')'"),
            ("/a host)\n", 1, 8, "without '('"),
            ("/a \\\n  h(r w)\n", 2, 6, "option list"),
            ("/a\\x *\n", 1, 3, "octal"),
        ];
        for (text, line, column, what) in cases {
            match parse(text, "exports") {
                Err(ExportsError::Syntax {
                    line: l,
                    column: c,
                    msg,
                    ..
                }) => {
                    assert_eq!((l, c), (line, column), "{text:?}: {msg}");
                    assert!(msg.contains(what), "{text:?}: {msg}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        let e = parse("/a h(rw\n", "/etc/exports").unwrap_err().to_string();
        assert!(e.starts_with("/etc/exports:1:5: "), "{e}");
    }

    #[test]
    fn adds_and_removes_keeping_every_other_byte() {
        let mut t = parse(SAMPLE, "exports").unwrap();
        t.add("7", "/var/lib/basalt/job-7/root", "*", JOB_OPTIONS)
            .unwrap();
        assert!(t.text().starts_with(SAMPLE));
        assert!(t.text().ends_with(
            "\n/var/lib/basalt/job-7/root *(rw,no_root_squash,no_all_squash,async,no_subtree_check) # basalt job 7\n"
        ));
        t.add("8", "/tmp/job 8", "*", JOB_OPTIONS).unwrap();
        assert!(matches!(
            t.add("9", "/srv/homes", "*", &["ro"]),
            Err(ExportsError::Exists(_))
        ));
        let again = parse(t.text(), "x").unwrap();
        assert_eq!(again.entries().len(), 8);
        assert_eq!(again.entries()[7].path, "/tmp/job 8");
        assert_eq!(again.entries()[7].basalt_tag(), Some("8"));
        // the admin's entries are never removed
        assert!(!t.remove("/srv/homes"));
        assert!(t.remove("/var/lib/basalt/job-7/root"));
        assert!(!t.remove("/var/lib/basalt/job-7/root"));
        assert!(t.text().contains("\"/tmp/job 8\""));
        assert!(t.remove("/tmp/job 8"));
        assert_eq!(t.text(), format!("{SAMPLE}\n"));
        assert!(quote_path("/a\"b").is_err());
        let mut cont = parse("/a h \\", "x").unwrap();
        assert!(matches!(
            cont.add("1", "/job/1", "*", JOB_OPTIONS),
            Err(ExportsError::BadPath(..))
        ));
        assert_eq!(cont.text(), "/a h \\");
        assert!(quote_path("rel").is_err());
    }

    fn table(dir: &Path) -> ExportTable {
        ExportTable {
            file: dir.join("exports"),
            exportfs: format!("sh -c 'echo ran >> {}/exportfs.calls'", dir.display()),
        }
    }

    #[test]
    fn two_jobs_add_and_remove_independently_and_exportfs_runs() {
        let dir =
            crate::host::tempdir::tempdir_in(&std::env::temp_dir(), "basalt-exports-").unwrap();
        let admin = "/srv/keep -ro *\n# trailing comment, no newline";
        std::fs::write(dir.join("exports"), admin).unwrap();
        let t = table(&dir);
        let threads: Vec<_> = (0..8)
            .map(|n| {
                let t = t.clone();
                std::thread::spawn(move || {
                    t.add(&n.to_string(), Path::new(&format!("/job/{n}")))
                        .unwrap()
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        let text = std::fs::read_to_string(dir.join("exports")).unwrap();
        let p = parse(&text, "exports").unwrap();
        assert_eq!(p.entries().len(), 9, "{text}");
        assert!(text.starts_with(admin));
        assert!(t.remove(Path::new("/job/3")).unwrap());
        assert!(!t.remove(Path::new("/job/3")).unwrap());
        for n in [0, 1, 2, 4, 5, 6, 7] {
            t.remove(Path::new(&format!("/job/{n}"))).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(dir.join("exports")).unwrap(),
            format!("{admin}\n")
        );
        let calls = std::fs::read_to_string(dir.join("exportfs.calls")).unwrap();
        assert_eq!(calls.lines().count(), 16);
        // a malformed table is not touched
        std::fs::write(dir.join("exports"), "/a h(rw\n").unwrap();
        let e = t.add("9", Path::new("/job/9")).unwrap_err().to_string();
        assert!(e.contains(":1:5: unclosed"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dir.join("exports")).unwrap(),
            "/a h(rw\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_entries_of_gone_jobs_are_swept() {
        let dir =
            crate::host::tempdir::tempdir_in(&std::env::temp_dir(), "basalt-exports-").unwrap();
        let live = dir.join("live");
        std::fs::create_dir(&live).unwrap();
        let admin = "/srv/gone-but-the-lab's *(ro)\n";
        std::fs::write(dir.join("exports"), admin.replace('\'', "")).unwrap();
        let t = table(&dir);
        t.add("1", &live).unwrap();
        t.add("2", &dir.join("gone")).unwrap();
        assert_eq!(
            t.remove_stale().unwrap(),
            [dir.join("gone").display().to_string()]
        );
        let text = std::fs::read_to_string(dir.join("exports")).unwrap();
        assert!(text.starts_with("/srv/gone-but-the-labs *(ro)\n"), "{text}");
        assert!(
            text.contains("# basalt job 1") && !text.contains("# basalt job 2"),
            "{text}"
        );
        assert!(t.remove_stale().unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_or_failing_exportfs_is_a_clear_error() {
        let dir =
            crate::host::tempdir::tempdir_in(&std::env::temp_dir(), "basalt-exports-").unwrap();
        let mut t = table(&dir);
        t.exportfs = "/nonexistent/exportfs -ra".into();
        let e = t.add("1", Path::new("/job/1")).unwrap_err().to_string();
        assert!(
            e.contains("not found") && e.contains("nfs-kernel-server"),
            "{e}"
        );
        t.exportfs = "sh -c 'echo no nfsd >&2; exit 1'".into();
        let e = t.remove(Path::new("/job/1")).unwrap_err().to_string();
        assert!(e.contains("failed") && e.contains("no nfsd"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
