//! Root filesystem tarballs (an NFS root, a modules tarball unpacked into it, the overlay put
//! into it), unpacked on the worker under rules of their own: unlike the trees of
//! [`super::tree`], a root filesystem keeps its permissions (and its owners when basalt runs
//! as root), its hardlinks, and symlinks to absolute paths, which the device resolves inside
//! its own root. What stays refused:
//!
//! - member names that are absolute or hold `..`, and hardlinks whose target does;
//! - members that would land outside the directory through a symlink unpacked before (the tar
//!   reader checks every parent's real path is inside it);
//! - tar types other than files, directories, symlinks and hardlinks. Device nodes and FIFOs
//!   are skipped and counted (the kernel's devtmpfs provides `/dev`).
//!
//! The archive may be compressed: gzip, xz, bzip2 or zstd are recognised by their magic.

use super::tree::TreeError;
use crate::host::blocking::{Cancel, CancelRead};
use crate::host::limits::Budget;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path};

/// What an unpack did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unpacked {
    pub entries: u64,
    pub bytes: u64,
    /// Device nodes and FIFOs left out.
    pub skipped: u64,
}

/// The compression of a stream, by its first bytes.
fn decoder<'a>(r: impl BufRead + Send + 'a) -> std::io::Result<Box<dyn Read + Send + 'a>> {
    let mut r = r;
    let head = r.fill_buf()?.to_vec();
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(xz2::bufread::XzDecoder::new_multi_decoder(r))
    } else if head.starts_with(b"BZh") {
        Box::new(bzip2::bufread::MultiBzDecoder::new(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r)?)
    } else {
        Box::new(r)
    })
}

/// Whether a member name stays below the directory it is unpacked into.
fn inside(name: &Path) -> bool {
    !name.as_os_str().is_empty()
        && name
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Unpacks the (possibly compressed) tar archive `r` into `dest` under the module's rules,
/// charging regular files to `budget`.
pub fn unpack(
    r: impl Read + Send,
    dest: &Path,
    cancel: &Cancel,
    budget: &Budget,
) -> Result<Unpacked, TreeError> {
    use tar::EntryType as T;
    std::fs::create_dir_all(dest).map_err(|e| TreeError::io(dest.display(), e))?;
    let root = nix::unistd::geteuid().is_root();
    let input = decoder(BufReader::with_capacity(
        1 << 20,
        CancelRead { inner: r, cancel },
    ))
    .map_err(|e| TreeError::io("archive", e))?;
    let mut ar = tar::Archive::new(input);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(root);
    ar.set_preserve_mtime(true);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    let tar_err = |e: std::io::Error| {
        if cancel.is_set() {
            TreeError::Cancelled
        } else {
            TreeError::Refused(format!("not a (compressed) tar archive: {e}"))
        }
    };
    let mut done = Unpacked::default();
    for entry in ar.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        let raw = entry.path().map_err(tar_err)?.into_owned();
        let name = raw.display().to_string();
        let stripped = raw.strip_prefix("./").unwrap_or(&raw);
        if stripped.as_os_str().is_empty() || stripped == Path::new(".") {
            continue;
        }
        if !inside(stripped) {
            return Err(TreeError::Refused(format!(
                "member '{name}' is absolute or leaves the directory with '..': refused"
            )));
        }
        match entry.header().entry_type() {
            T::Regular | T::Continuous | T::GNUSparse => {
                let size = entry.size().max(entry.header().size().unwrap_or(0));
                budget.charge(size).map_err(TreeError::Exceeded)?;
                done.bytes = done.bytes.saturating_add(size);
            }
            T::Directory | T::Symlink => {}
            T::Link => {
                let target = entry.link_name().map_err(tar_err)?.map(|t| t.into_owned());
                let ok = target
                    .as_deref()
                    .is_some_and(|t| inside(t.strip_prefix("./").unwrap_or(t)));
                if !ok {
                    return Err(TreeError::Refused(format!(
                        "member '{name}' is a hardlink to '{}', outside the archive: refused",
                        target.map(|t| t.display().to_string()).unwrap_or_default()
                    )));
                }
            }
            T::Char | T::Block | T::Fifo => {
                done.skipped += 1;
                continue;
            }
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
            other => {
                return Err(TreeError::Refused(format!(
                    "member '{name}' has tar type {:?}, which basalt does not unpack",
                    other.as_byte() as char
                )))
            }
        }
        match entry.unpack_in(dest) {
            Ok(true) => done.entries += 1,
            Ok(false) => {
                return Err(TreeError::Refused(format!(
                    "member '{name}' leaves the directory it is unpacked into: refused"
                )))
            }
            Err(_) if cancel.is_set() => return Err(TreeError::Cancelled),
            Err(e) => {
                let cause = std::error::Error::source(&e)
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default();
                return Err(TreeError::Refused(format!(
                    "member '{name}' cannot be unpacked: {e}{cause}"
                )));
            }
        }
    }
    Ok(done)
}

/// [`unpack`] of the file `archive` (opened without following a symlink).
pub fn unpack_file(
    archive: &Path,
    dest: &Path,
    cancel: &Cancel,
    budget: &Budget,
) -> Result<Unpacked, TreeError> {
    let f = super::tree::open_file(archive).map_err(|e| TreeError::io(archive.display(), e))?;
    unpack(f, dest, cancel, budget)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn header(ty: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(ty);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8], mode: u32) {
        let mut h = header(tar::EntryType::Regular, data.len() as u64, mode);
        b.append_data(&mut h, name, data).unwrap();
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, ty: tar::EntryType, name: &str, target: &str) {
        let mut h = header(ty, 0, 0o777);
        b.append_link(&mut h, name, target).unwrap();
    }

    /// A raw member, its name written as is (the tar crate's builder refuses `..`).
    fn raw(b: &mut tar::Builder<Vec<u8>>, name: &str) {
        let mut h = header(tar::EntryType::Regular, 1, 0o644);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
    }

    fn tmp(tag: &str) -> std::path::PathBuf {
        crate::host::tempdir::tempdir_in(&std::env::temp_dir(), &format!("basalt-rootfs-{tag}-"))
            .unwrap()
    }

    fn run(data: &[u8], dest: &Path) -> Result<Unpacked, TreeError> {
        unpack(data, dest, &Cancel::new(), &Budget::new(u64::MAX))
    }

    fn sample() -> Vec<u8> {
        tar_of(|b| {
            let mut d = header(tar::EntryType::Directory, 0, 0o755);
            b.append_data(&mut d, "./bin", &[][..]).unwrap();
            file(b, "./bin/busybox", b"#!/bin/sh\n", 0o4755);
            link(b, tar::EntryType::Link, "./bin/sh", "./bin/busybox");
            link(
                b,
                tar::EntryType::Symlink,
                "./etc/mtab",
                "/proc/self/mounts",
            );
            link(b, tar::EntryType::Symlink, "./lib", "usr/lib");
            let mut c = header(tar::EntryType::Char, 0, 0o600);
            c.set_device_major(5).unwrap();
            c.set_device_minor(1).unwrap();
            b.append_data(&mut c, "./dev/console", &[][..]).unwrap();
        })
    }

    #[test]
    fn a_root_filesystem_keeps_modes_hardlinks_and_absolute_symlinks() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tmp("ok");
        for compress in ["none", "gz", "xz", "bz2", "zstd"] {
            let plain = sample();
            let data = match compress {
                "gz" => {
                    let mut e =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    e.write_all(&plain).unwrap();
                    e.finish().unwrap()
                }
                "xz" => {
                    let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
                    e.write_all(&plain).unwrap();
                    e.finish().unwrap()
                }
                "bz2" => {
                    let mut e =
                        bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                    e.write_all(&plain).unwrap();
                    e.finish().unwrap()
                }
                "zstd" => zstd::encode_all(&plain[..], 1).unwrap(),
                _ => plain,
            };
            let dest = dir.join(compress);
            let u = run(&data, &dest).unwrap();
            assert_eq!(u.skipped, 1, "{compress}");
            let bb = std::fs::metadata(dest.join("bin/busybox")).unwrap();
            assert_eq!(bb.permissions().mode() & 0o7777, 0o4755);
            assert_eq!(bb.nlink(), 2);
            assert_eq!(
                std::fs::read_link(dest.join("etc/mtab")).unwrap(),
                Path::new("/proc/self/mounts")
            );
            assert!(!dest.join("dev/console").exists());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn members_that_leave_the_directory_are_refused() {
        let dir = tmp("bad");
        let outside = dir.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("dotdot", tar_of(|b| raw(b, "a/../../x"))),
            ("absolute", tar_of(|b| raw(b, "/etc/x"))),
            (
                "hardlink out",
                tar_of(|b| link(b, tar::EntryType::Link, "h", "../../etc/passwd")),
            ),
            (
                "through a symlink",
                tar_of(|b| {
                    link(b, tar::EntryType::Symlink, "esc", outside.to_str().unwrap());
                    file(b, "esc/planted", b"x", 0o644);
                }),
            ),
            (
                "through a relative symlink",
                tar_of(|b| {
                    link(b, tar::EntryType::Symlink, "up", "../outside");
                    file(b, "up/planted", b"x", 0o644);
                }),
            ),
        ];
        for (what, data) in cases {
            let dest = dir.join("root");
            let e = run(&data, &dest).unwrap_err();
            assert!(matches!(e, TreeError::Refused(_)), "{what}: {e}");
            assert!(!outside.join("planted").exists(), "{what}");
            std::fs::remove_dir_all(&dest).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
