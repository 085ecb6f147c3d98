//! The job's output directory (`--output-dir`): created if missing, never written through a
//! symlink (docs/security.md, `## Output directory`).
//!
//! The directory is opened once (`O_DIRECTORY | O_NOFOLLOW`: the directory itself may not be
//! a symlink) and every file in it is created relative to that descriptor under a fresh
//! temporary name (`O_CREAT | O_EXCL | O_NOFOLLOW`), then renamed over its real name: whatever
//! was planted there (a symlink to a host file, a hardlink to one, a file) is replaced, never
//! written through, and a later swap of the directory's path changes nothing.

use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::Mode;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// An open output directory.
pub struct OutputDir {
    path: PathBuf,
    fd: OwnedFd,
}

impl OutputDir {
    /// Creates `path` if missing and opens it; a symlink (or anything but a directory) is
    /// refused.
    pub fn open(path: &Path) -> io::Result<OutputDir> {
        std::fs::create_dir_all(path).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display()))
        })?;
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR => io::Error::other(format!(
                "{} is a symlink or not a directory: refused (give the real directory)",
                path.display()
            )),
            e => io::Error::other(format!("{}: {e}", path.display())),
        })?;
        Ok(OutputDir {
            path: path.to_path_buf(),
            fd,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new, empty file `name` in the directory (mode 0644), replacing whatever had that name.
    pub fn create(&self, name: &str) -> io::Result<File> {
        let err = |e: nix::errno::Errno| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("writing {}: {}", self.path.join(name).display(), e.desc()),
            )
        };
        for n in 0..1000u32 {
            let tmp = format!(".{name}.{}.{n}.tmp", std::process::id());
            let fd = match openat(
                &self.fd,
                tmp.as_str(),
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            ) {
                Ok(fd) => fd,
                Err(nix::errno::Errno::EEXIST) => continue,
                Err(e) => return Err(err(e)),
            };
            if let Err(e) = renameat(&self.fd, tmp.as_str(), &self.fd, name) {
                let _ = nix::unistd::unlinkat(
                    &self.fd,
                    tmp.as_str(),
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                );
                return Err(err(e));
            }
            return Ok(File::from(fd));
        }
        Err(io::Error::other(format!(
            "cannot create a file in {}",
            self.path.display()
        )))
    }

    /// Writes `name` whole.
    pub fn write(&self, name: &str, data: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let mut f = self.create(name)?;
        f.write_all(data).and_then(|_| f.flush()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("writing {}: {e}", self.path.join(name).display()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn planted_links_are_replaced_not_followed() {
        let d = std::env::temp_dir().join(format!("basalt-outdir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let victim = d.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let out = d.join("out");
        std::fs::create_dir_all(&out).unwrap();
        symlink(&victim, out.join("output.yaml")).unwrap();
        std::fs::hard_link(&victim, out.join("results.yaml")).unwrap();
        symlink(d.join("marker"), out.join("description.yaml")).unwrap();
        let o = OutputDir::open(&out).unwrap();
        for name in ["output.yaml", "results.yaml", "description.yaml"] {
            o.write(name, b"new").unwrap();
            let m = std::fs::symlink_metadata(out.join(name)).unwrap();
            assert!(m.is_file(), "{name}");
            assert_eq!(std::fs::read(out.join(name)).unwrap(), b"new");
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(!d.join("marker").exists());
        // a symlinked output directory is refused; a missing one is created
        symlink(&out, d.join("link")).unwrap();
        let e = OutputDir::open(&d.join("link")).err().unwrap();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(OutputDir::open(&d.join("new/deeper")).is_ok());
        // no temporary file is left
        let left: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        std::fs::remove_dir_all(d).ok();
    }
}
