//! Trees that go to a device (the overlay, test repositories, image overlays) are walked
//! without ever following a link (docs/security.md, `## Overlays and test repositories`):
//!
//! - a symlink is kept as a symlink when it is relative and resolves inside its tree (a test
//!   definition's own directory, or the archived overlay), resolved as the device would
//!   resolve it, hop by hop through the tree's other symlinks; any other symlink is refused
//!   with its path named;
//! - hardlinks (a regular file with more than one name), device nodes, FIFOs and sockets are
//!   refused with their path named;
//! - regular files are opened with `O_NOFOLLOW` and checked to still be regular files, so a
//!   file swapped for a link between the walk and the read is refused, not followed.
//!
//! The trees live in the job's private (0700) directory, so only basalt itself writes them
//! once git or the tar reader is done.

use crate::error::ActionError;
use crate::host::blocking::{is_cancelled, Cancel, CancelRead};
use crate::host::limits::{Budget, Exceeded};
use nix::fcntl::OFlag;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Deepest directory nesting walked.
const MAX_DEPTH: usize = 128;
/// Most symlinks followed while resolving one symlink.
const MAX_HOPS: usize = 40;

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File {
        size: u64,
    },
    /// A symlink that resolves inside the tree, with its target as written.
    Symlink(PathBuf),
}

/// One entry of a tree.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The path relative to the tree's root.
    pub rel: PathBuf,
    /// The path on the worker.
    pub path: PathBuf,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub kind: Kind,
}

/// Why a tree cannot be used.
#[derive(Debug)]
pub enum TreeError {
    /// The tree holds something that may not go to a device; the message names its path.
    Refused(String),
    /// The job's byte budget ran out.
    Exceeded(Exceeded),
    /// The worker could not read or write.
    Io(String, io::Error),
    Cancelled,
}

impl std::fmt::Display for TreeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TreeError::Refused(m) => f.write_str(m),
            TreeError::Exceeded(e) => write!(f, "{e}"),
            TreeError::Io(what, e) => write!(f, "{what}: {e}"),
            TreeError::Cancelled => f.write_str("cancelled"),
        }
    }
}

impl TreeError {
    /// An I/O error about `what`, or [`TreeError::Cancelled`] when the error is a cancel.
    pub fn io(what: impl std::fmt::Display, e: io::Error) -> TreeError {
        if is_cancelled(&e) {
            TreeError::Cancelled
        } else if let Some(x) = crate::host::limits::exceeded(&e) {
            TreeError::Exceeded(Exceeded { limit: x.limit })
        } else {
            TreeError::Io(what.to_string(), e)
        }
    }

    /// As an action's error: refusals and budgets are the job's fault, I/O the worker's.
    /// `what` says which tree or image it was.
    pub fn into_action(self, what: &str) -> ActionError {
        match self {
            TreeError::Refused(m) => ActionError::job(format!("{what}: {m}")),
            TreeError::Exceeded(e) => ActionError::job(format!("{what}: {e}")),
            TreeError::Io(p, e) => ActionError::infra(format!("{what}: {p}: {e}")).with_source(e),
            TreeError::Cancelled => ActionError::timeout(format!("{what}: cancelled")),
        }
    }
}

fn show(p: &Path) -> String {
    p.display().to_string()
}

enum Step {
    Up,
    Name(OsString),
}

fn steps(target: &Path) -> Result<Vec<Step>, &'static str> {
    let mut v = Vec::new();
    for c in target.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => return Err("is absolute"),
            Component::CurDir => {}
            Component::ParentDir => v.push(Step::Up),
            Component::Normal(n) => v.push(Step::Name(n.to_os_string())),
        }
    }
    Ok(v)
}

/// Checks that the symlink at `root/link` resolves inside `root`, as the device resolves it:
/// component by component, through the tree's other symlinks (a link to a directory changes
/// what a later `..` means). A target that does not exist (yet) is fine as long as the path
/// to it stays inside. `Err` says why not.
pub fn check_link(root: &Path, link: &Path) -> Result<(), String> {
    let target = fs::read_link(root.join(link)).map_err(|e| format!("cannot be read ({e})"))?;
    let mut at: Vec<OsString> = match link.parent() {
        Some(p) => p
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                _ => None,
            })
            .collect(),
        None => Vec::new(),
    };
    let mut todo = steps(&target).map_err(str::to_string)?;
    todo.reverse();
    let mut hops = 0;
    while let Some(step) = todo.pop() {
        match step {
            Step::Up => {
                if at.pop().is_none() {
                    return Err("leads out of it".into());
                }
            }
            Step::Name(n) => {
                at.push(n);
                let here: PathBuf = at.iter().collect();
                let p = root.join(&here);
                let is_link = fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink());
                if is_link {
                    hops += 1;
                    if hops > MAX_HOPS {
                        return Err("goes round in a loop of symlinks".into());
                    }
                    let t = fs::read_link(&p).map_err(|e| format!("cannot be resolved ({e})"))?;
                    let more = steps(&t).map_err(|_| {
                        format!("goes through '{}', an absolute symlink", show(&here))
                    })?;
                    at.pop();
                    todo.extend(more.into_iter().rev());
                }
            }
        }
    }
    Ok(())
}

fn sorted_names(dir: &Path, rel: &Path) -> Result<Vec<OsString>, TreeError> {
    let mut names = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| TreeError::io(show_rel(rel), e))? {
        names.push(e.map_err(|e| TreeError::io(show_rel(rel), e))?.file_name());
    }
    names.sort();
    Ok(names)
}

fn show_rel(rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        ".".into()
    } else {
        show(rel)
    }
}

/// Walks `root` (not `root` itself), parents before children, names sorted, calling `f` for
/// every entry. `what` names the tree in refusals ("the definition", "the overlay").
pub fn walk(
    root: &Path,
    what: &str,
    cancel: &Cancel,
    f: &mut dyn FnMut(&Entry) -> Result<(), TreeError>,
) -> Result<(), TreeError> {
    let mut stack: Vec<(PathBuf, std::vec::IntoIter<OsString>)> = vec![(
        PathBuf::new(),
        sorted_names(root, Path::new(""))?.into_iter(),
    )];
    loop {
        let (rel, path) = match stack.last_mut() {
            None => return Ok(()),
            Some((dir, names)) => match names.next() {
                None => {
                    stack.pop();
                    continue;
                }
                Some(name) => {
                    let rel = dir.join(name);
                    let path = root.join(&rel);
                    (rel, path)
                }
            },
        };
        if cancel.is_set() {
            return Err(TreeError::Cancelled);
        }
        let meta = fs::symlink_metadata(&path).map_err(|e| TreeError::io(show(&rel), e))?;
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                return Err(TreeError::Refused(format!(
                    "'{}' is a hardlink ({} names for one file): refused, a tree that goes to a device holds no hardlinks",
                    show(&rel),
                    meta.nlink()
                )));
            }
            Kind::File { size: meta.len() }
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(|e| TreeError::io(show(&rel), e))?;
            if let Err(why) = check_link(root, &rel) {
                return Err(TreeError::Refused(format!(
                    "'{}' is a symlink to '{}' that {why} ({what}): refused, symlinks must be relative and stay inside {what}",
                    show(&rel),
                    show(&target)
                )));
            }
            Kind::Symlink(target)
        } else {
            let t = if ft.is_block_device() || ft.is_char_device() {
                "a device node"
            } else if ft.is_fifo() {
                "a FIFO"
            } else {
                "a socket"
            };
            return Err(TreeError::Refused(format!(
                "'{}' is {t}: refused, a tree that goes to a device holds only directories, files and symlinks",
                show(&rel)
            )));
        };
        let e = Entry {
            rel,
            path,
            mode: meta.permissions().mode() & 0o7777,
            kind,
        };
        f(&e)?;
        if e.kind == Kind::Dir {
            if stack.len() >= MAX_DEPTH {
                return Err(TreeError::Refused(format!(
                    "'{}' is nested more than {MAX_DEPTH} directories deep",
                    show(&e.rel)
                )));
            }
            let names = sorted_names(&e.path, &e.rel)?;
            stack.push((e.rel, names.into_iter()));
        }
    }
}

/// Opens a regular file for reading without following a symlink (nor blocking on a FIFO).
pub fn open_file(path: &Path) -> io::Result<File> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY).bits())
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(f)
}

/// Checks a test repository once git or the tar reader wrote it (see the module's rules, with
/// the definition's directory as the tree). Returns the bytes of its files.
pub fn check_repository(dir: &Path, cancel: &Cancel) -> Result<u64, TreeError> {
    let mut bytes = 0u64;
    walk(dir, "the definition", cancel, &mut |e| {
        if let Kind::File { size } = e.kind {
            bytes = bytes.saturating_add(size);
        }
        Ok(())
    })?;
    Ok(bytes)
}

/// Reads `rel` below `dir` (at most `max` bytes) without leaving `dir`: `openat2` with
/// `RESOLVE_BENEATH` (no absolute symlinks, no `..` or symlink out of `dir`, no magic links).
pub fn read_beneath(dir: &Path, rel: &Path, max: u64) -> io::Result<Vec<u8>> {
    use nix::fcntl::{openat2, OpenHow, ResolveFlag};
    let base = fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW).bits())
        .open(dir)?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let file = match openat2(&base, rel, how) {
        Ok(fd) => File::from(fd),
        Err(nix::errno::Errno::EXDEV) | Err(nix::errno::Errno::ELOOP) => {
            return Err(io::Error::other(
                "it leads out of the repository (an absolute symlink, or a symlink or '..' out of it): refused",
            ))
        }
        Err(nix::errno::Errno::ENOSYS) => {
            // Linux before 5.6: resolve, check the prefix, open the result without following
            // a link and check it is the file that was resolved.
            let real = fs::canonicalize(dir.join(rel))?;
            if !real.starts_with(fs::canonicalize(dir)?) {
                return Err(io::Error::other(
                    "it leads out of the repository: refused",
                ));
            }
            let f = open_file(&real)?;
            let (a, b) = (f.metadata()?, fs::metadata(&real)?);
            if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
                return Err(io::Error::other("it changed while it was opened"));
            }
            f
        }
        Err(e) => return Err(e.into()),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut data = Vec::new();
    file.take(max + 1).read_to_end(&mut data)?;
    if data.len() as u64 > max {
        return Err(io::Error::other(format!(
            "larger than {} bytes: refused",
            max
        )));
    }
    Ok(data)
}

/// Unpacks a tar archive into `dest` under the module's rules: regular files and directories
/// (charged to `budget`), symlinks that are relative (checked again, in the complete tree, by
/// [`check_repository`] or the archive walk); hardlinks, devices and FIFOs refused. Member
/// names with `..` or that lead through a symlink out of `dest` are refused.
pub fn unpack_tar(
    r: impl Read,
    dest: &Path,
    cancel: &Cancel,
    budget: &Budget,
) -> Result<u64, TreeError> {
    use tar::EntryType as T;
    let mut ar = tar::Archive::new(CancelRead { inner: r, cancel });
    ar.set_preserve_permissions(false);
    ar.set_preserve_ownerships(false);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    let tar_err = |e: io::Error| {
        if cancel.is_set() {
            TreeError::Cancelled
        } else {
            TreeError::Refused(format!("not a tar archive: {e}"))
        }
    };
    let mut bytes = 0u64;
    for entry in ar.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let ty = entry.header().entry_type();
        match ty {
            T::Regular | T::Continuous | T::GNUSparse => {
                let size = entry.size().max(entry.header().size().unwrap_or(0));
                budget.charge(size).map_err(TreeError::Exceeded)?;
                bytes = bytes.saturating_add(size);
            }
            T::Directory => {}
            T::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(tar_err)?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if target.as_os_str().is_empty() || steps(&target).is_err() {
                    return Err(TreeError::Refused(format!(
                        "member '{name}' is a symlink to '{}': refused, symlinks must be relative and stay inside the definition",
                        show(&target)
                    )));
                }
            }
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
            T::Link => {
                return Err(TreeError::Refused(format!(
                    "member '{name}' is a hardlink: refused, a tree that goes to a device holds no hardlinks"
                )))
            }
            T::Char | T::Block | T::Fifo => {
                return Err(TreeError::Refused(format!(
                    "member '{name}' is a device node or FIFO: refused"
                )))
            }
            other => {
                return Err(TreeError::Refused(format!(
                    "member '{name}' has tar type {:?}, which basalt does not unpack",
                    other.as_byte() as char
                )))
            }
        }
        match entry.unpack_in(dest) {
            Ok(true) => {}
            Ok(false) => {
                return Err(TreeError::Refused(format!(
                    "member '{name}' leaves the directory it is unpacked into: refused"
                )))
            }
            Err(_) if cancel.is_set() => return Err(TreeError::Cancelled),
            Err(e) => {
                return Err(TreeError::Refused(format!(
                    "member '{name}' cannot be unpacked: {e}"
                )))
            }
        }
    }
    Ok(bytes)
}

/// Copies the tree `src` into `dst` (created if missing) under the module's rules.
pub fn copy_tree(src: &Path, dst: &Path, cancel: &Cancel) -> Result<(), TreeError> {
    fs::create_dir_all(dst).map_err(|e| TreeError::io(show(dst), e))?;
    walk(src, "the overlay", cancel, &mut |e| {
        let to = dst.join(&e.rel);
        match &e.kind {
            Kind::Dir => match fs::create_dir(&to) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists && to.is_dir() => {}
                Err(err) => return Err(TreeError::io(show(&to), err)),
            },
            Kind::File { .. } => {
                let mut from =
                    open_file(&e.path).map_err(|err| TreeError::io(show(&e.rel), err))?;
                let _ = fs::remove_file(&to);
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&to)
                    .map_err(|err| TreeError::io(show(&to), err))?;
                crate::host::blocking::copy(&mut from, &mut out, cancel)
                    .map_err(|err| TreeError::io(show(&to), err))?;
            }
            Kind::Symlink(target) => {
                let _ = fs::remove_file(&to);
                std::os::unix::fs::symlink(target, &to)
                    .map_err(|err| TreeError::io(show(&to), err))?;
            }
        }
        if !matches!(e.kind, Kind::Symlink(_)) {
            fs::set_permissions(&to, fs::Permissions::from_mode(e.mode & 0o777))
                .map_err(|err| TreeError::io(show(&to), err))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("basalt-tree-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn entries(root: &Path) -> Result<Vec<(String, Kind)>, TreeError> {
        let mut v = Vec::new();
        walk(root, "the definition", &Cancel::new(), &mut |e| {
            v.push((show(&e.rel), e.kind.clone()));
            Ok(())
        })?;
        Ok(v)
    }

    #[test]
    fn symlinks_inside_are_kept_and_others_refused() {
        let d = tmp("links");
        fs::create_dir_all(d.join("a/b")).unwrap();
        fs::write(d.join("a/b/f"), "x").unwrap();
        symlink("b/f", d.join("a/l1")).unwrap();
        symlink("../a/b", d.join("a/l2")).unwrap();
        symlink("missing/x", d.join("dangling")).unwrap();
        let all = entries(&d).unwrap();
        assert_eq!(
            all.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
            ["a", "a/b", "a/b/f", "a/l1", "a/l2", "dangling"]
        );
        assert_eq!(all[3].1, Kind::Symlink(PathBuf::from("b/f")));
        for (name, target, why) in [
            ("abs", "/etc/shadow", "is absolute"),
            ("up", "../x", "leads out of it"),
            ("deep-up", "a/b/../../../x", "leads out of it"),
        ] {
            symlink(target, d.join(name)).unwrap();
            let e = entries(&d).unwrap_err().to_string();
            assert!(
                e.contains(&format!("'{name}' is a symlink to '{target}'")),
                "{e}"
            );
            assert!(e.contains(why), "{e}");
            fs::remove_file(d.join(name)).unwrap();
        }
        // A link to a directory changes what '..' means after it: 'a/b/top' points at the
        // root, so 'a/b/esc' -> 'top/../x' leaves it, though it looks like it stays.
        symlink("../..", d.join("a/b/top")).unwrap();
        symlink("top/../x", d.join("a/b/esc")).unwrap();
        let e = entries(&d).unwrap_err().to_string();
        assert!(e.contains("'a/b/esc'"), "{e}");
        fs::remove_file(d.join("a/b/esc")).unwrap();
        // and a loop
        symlink("loop2", d.join("loop1")).unwrap();
        symlink("loop1", d.join("loop2")).unwrap();
        let e = entries(&d).unwrap_err().to_string();
        assert!(e.contains("loop"), "{e}");
        fs::remove_dir_all(d).ok();
    }

    #[test]
    fn hardlinks_fifos_and_big_nesting_are_refused() {
        let d = tmp("kinds");
        fs::write(d.join("f"), "x").unwrap();
        fs::hard_link(d.join("f"), d.join("g")).unwrap();
        let e = entries(&d).unwrap_err().to_string();
        assert!(e.contains("'f' is a hardlink"), "{e}");
        fs::remove_file(d.join("g")).unwrap();
        nix::unistd::mkfifo(&d.join("p"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = entries(&d).unwrap_err().to_string();
        assert!(e.contains("'p' is a FIFO"), "{e}");
        fs::remove_dir_all(d).ok();
    }

    #[test]
    fn read_beneath_stays_in_the_repository() {
        let d = tmp("beneath");
        let secret = d.join("secret");
        fs::write(&secret, "s3cret").unwrap();
        let repo = d.join("repo");
        fs::create_dir_all(repo.join("sub")).unwrap();
        fs::write(repo.join("sub/def.yaml"), "run: {}").unwrap();
        symlink("sub/def.yaml", repo.join("link.yaml")).unwrap();
        symlink(&secret, repo.join("abs.yaml")).unwrap();
        symlink("../secret", repo.join("up.yaml")).unwrap();
        assert_eq!(
            read_beneath(&repo, Path::new("link.yaml"), 100).unwrap(),
            b"run: {}"
        );
        for bad in ["abs.yaml", "up.yaml", "../secret", "sub/../../secret"] {
            let e = read_beneath(&repo, Path::new(bad), 100).unwrap_err();
            assert!(
                e.to_string().contains("out of the repository"),
                "{bad}: {e}"
            );
        }
        assert!(read_beneath(&repo, Path::new("sub/def.yaml"), 3).is_err());
        fs::remove_dir_all(d).ok();
    }

    #[test]
    fn tarballs_unpack_under_the_rules() {
        let d = tmp("untar");
        let make = |f: &dyn Fn(&mut tar::Builder<Vec<u8>>)| {
            let mut b = tar::Builder::new(Vec::new());
            f(&mut b);
            b.into_inner().unwrap()
        };
        let file = |b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, data).unwrap();
        };
        let link = |b: &mut tar::Builder<Vec<u8>>, ty: tar::EntryType, name: &str, to: &str| {
            let mut h = tar::Header::new_gnu();
            h.set_size(0);
            h.set_entry_type(ty);
            b.append_link(&mut h, name, to).unwrap();
        };
        let budget = Budget::new(1 << 20);
        let c = Cancel::new();
        let good = make(&|b| {
            file(b, "defs/a.yaml", b"run: {}");
            link(b, tar::EntryType::Symlink, "defs/b.yaml", "a.yaml");
        });
        let out = d.join("good");
        fs::create_dir_all(&out).unwrap();
        assert_eq!(unpack_tar(&good[..], &out, &c, &budget).unwrap(), 7);
        assert!(fs::symlink_metadata(out.join("defs/b.yaml"))
            .unwrap()
            .file_type()
            .is_symlink());
        for (tag, data, needle) in [
            (
                "abs",
                make(&|b| link(b, tar::EntryType::Symlink, "x", "/etc")),
                "'x' is a symlink to '/etc'",
            ),
            (
                "hard",
                make(&|b| {
                    file(b, "a", b"1");
                    link(b, tar::EntryType::Link, "h", "a")
                }),
                "'h' is a hardlink",
            ),
        ] {
            let out = d.join(tag);
            fs::create_dir_all(&out).unwrap();
            let e = unpack_tar(&data[..], &out, &c, &budget)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{tag}: {e}");
        }
        // the budget
        let small = Budget::new(4);
        let out = d.join("budget");
        fs::create_dir_all(&out).unwrap();
        assert!(matches!(
            unpack_tar(&good[..], &out, &c, &small),
            Err(TreeError::Exceeded(_))
        ));
        fs::remove_dir_all(d).ok();
    }
}
