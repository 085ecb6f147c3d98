//! The simulated kernel "boots" the ramdisk U-Boot handed it: the cpio archives in it (raw or
//! gzip-compressed, concatenated as the kernel accepts them, optionally behind a 64-byte U-Boot
//! header) are unpacked into the boot's private directory, and the shell then runs chrooted
//! there (when the board runs as root), so absolute paths such as `/lava-1234` are the
//! ramdisk's, as on a real board.
//!
//! Written here rather than with a crate: only the newc format is needed, read-only, with the
//! guard that matters for a simulator (nothing may be written outside the root, even through a
//! symlink the archive itself created).

use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

const UIMAGE_MAGIC: [u8; 4] = [0x27, 0x05, 0x19, 0x56];
const NEWC: &[u8; 6] = b"070701";
const NEWC_CRC: &[u8; 6] = b"070702";

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Unpacks every archive of `data` below `root`. Returns the number of entries written.
pub fn unpack(data: &[u8], root: &Path) -> io::Result<usize> {
    let mut data = data;
    if data.len() > 64 && data[..4] == UIMAGE_MAGIC {
        data = &data[64..];
    }
    let mut written = 0;
    let mut pos = 0;
    while pos < data.len() {
        let rest = &data[pos..];
        if rest[0] == 0 {
            pos += 1;
            continue;
        }
        if rest.len() >= 2 && rest[..2] == [0x1f, 0x8b] {
            let mut dec = flate2::bufread::GzDecoder::new(rest);
            let mut out = Vec::new();
            dec.read_to_end(&mut out)?;
            let left = dec.into_inner().len();
            written += unpack_cpio(&out, root)?;
            pos += rest.len() - left;
            continue;
        }
        if rest.len() >= 6 && (&rest[..6] == NEWC || &rest[..6] == NEWC_CRC) {
            let (n, used) = unpack_one(rest, root)?;
            written += n;
            pos += used;
            continue;
        }
        return Err(bad(format!("unknown data at offset {pos} of the ramdisk")));
    }
    Ok(written)
}

/// Unpacks concatenated cpio archives (the output of one decompressed segment).
fn unpack_cpio(data: &[u8], root: &Path) -> io::Result<usize> {
    let mut pos = 0;
    let mut written = 0;
    while pos < data.len() {
        if data[pos] == 0 {
            pos += 1;
            continue;
        }
        let (n, used) = unpack_one(&data[pos..], root)?;
        written += n;
        pos += used;
    }
    Ok(written)
}

fn hex_field(h: &[u8], i: usize) -> io::Result<usize> {
    let s =
        std::str::from_utf8(&h[6 + i * 8..6 + (i + 1) * 8]).map_err(|_| bad("bad cpio header"))?;
    usize::from_str_radix(s, 16).map_err(|_| bad("bad cpio header"))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Unpacks one archive (up to its trailer); returns (entries, bytes used).
fn unpack_one(data: &[u8], root: &Path) -> io::Result<(usize, usize)> {
    let mut pos = 0;
    let mut written = 0;
    loop {
        let h = data
            .get(pos..pos + 110)
            .ok_or_else(|| bad("truncated cpio header"))?;
        if &h[..6] != NEWC && &h[..6] != NEWC_CRC {
            return Err(bad("not a newc cpio archive"));
        }
        let mode = hex_field(h, 1)? as u32;
        let size = hex_field(h, 6)?;
        let namesize = hex_field(h, 11)?;
        let name_start = pos + 110;
        let name_bytes = data
            .get(name_start..name_start + namesize)
            .ok_or_else(|| bad("truncated cpio name"))?;
        let name = String::from_utf8_lossy(name_bytes.strip_suffix(&[0]).unwrap_or(name_bytes))
            .into_owned();
        let data_start = align4(name_start + namesize);
        let body = data
            .get(data_start..data_start + size)
            .ok_or_else(|| bad("truncated cpio data"))?;
        pos = align4(data_start + size);
        if name == "TRAILER!!!" {
            return Ok((written, pos));
        }
        let Some(rel) = safe_rel(&name) else { continue };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let target = root.join(&rel);
        ensure_inside(root, &rel)?;
        match mode & 0o170000 {
            0o040000 => {
                std::fs::create_dir_all(&target)?;
                std::fs::set_permissions(
                    &target,
                    std::fs::Permissions::from_mode((mode & 0o7777) | 0o700),
                )?;
            }
            0o100000 => {
                if let Some(p) = target.parent() {
                    std::fs::create_dir_all(p)?;
                }
                let _ = std::fs::remove_file(&target);
                std::fs::write(&target, body)?;
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode & 0o7777))?;
            }
            0o120000 => {
                if let Some(p) = target.parent() {
                    std::fs::create_dir_all(p)?;
                }
                let _ = std::fs::remove_file(&target);
                let link = String::from_utf8_lossy(body).into_owned();
                std::os::unix::fs::symlink(link, &target)?;
            }
            // Device nodes, fifos and sockets are not needed by a simulated shell.
            _ => continue,
        }
        written += 1;
    }
}

/// Makes an unpacked root usable by a shell without running its `/init` (which would mount
/// filesystems on the host): the basic device nodes in `/dev`, and busybox's applet links
/// when the root has a busybox. Needs root (mknod, chroot).
pub fn prepare_root(root: &Path) -> io::Result<()> {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    let dev = root.join("dev");
    std::fs::create_dir_all(&dev)?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let p = dev.join(name);
        if p.symlink_metadata().is_ok() {
            continue;
        }
        mknod(
            &p,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .map_err(io::Error::from)?;
    }
    for d in ["tmp", "proc", "sys", "root"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    if root.join("bin/busybox").is_file() {
        let dir = std::ffi::CString::new(root.as_os_str().as_encoded_bytes())
            .map_err(|_| bad("root path"))?;
        let mut cmd = std::process::Command::new("/bin/busybox");
        cmd.args(["--install", "-s"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // SAFETY: only chroot and chdir, async-signal-safe, between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                if libc::chroot(dir.as_ptr()) < 0 || libc::chdir(c"/".as_ptr()) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let status = cmd.status()?;
        if !status.success() {
            return Err(bad(format!(
                "busybox --install in the ramdisk failed: {status}"
            )));
        }
    }
    Ok(())
}

/// `./a/b` and `/a/b` → `a/b`; `None` for names that climb out.
fn safe_rel(name: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Refuses to write through a symlink: every existing parent of `rel` must be a real directory.
fn ensure_inside(root: &Path, rel: &Path) -> io::Result<()> {
    let mut p = root.to_path_buf();
    let parents: Vec<_> = rel.components().collect();
    for c in parents.iter().take(parents.len().saturating_sub(1)) {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(bad(format!("{} goes through a symlink", rel.display())));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(out: &mut Vec<u8>, name: &str, mode: u32, body: &[u8]) {
        let namesize = name.len() + 1;
        out.extend_from_slice(
            format!("070701{:08X}{mode:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{namesize:08X}{:08X}", 1, 0, 0, 1, 0, body.len(), 0, 0, 0, 0, 0).as_bytes(),
        );
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend_from_slice(body);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }

    #[test]
    fn unpacks_concatenated_segments_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Vec::new();
        entry(&mut a, "bin", 0o040755, b"");
        entry(&mut a, "bin/hello", 0o100755, b"#!/bin/sh\necho hi\n");
        entry(&mut a, "evil", 0o120777, b"/etc");
        entry(&mut a, "TRAILER!!!", 0, b"");
        let mut b = Vec::new();
        entry(&mut b, "lava-1/run.sh", 0o100644, b"x");
        entry(&mut b, "../outside", 0o100644, b"x");
        entry(&mut b, "TRAILER!!!", 0, b"");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &b).unwrap();
        let mut all = a.clone();
        all.extend(gz.finish().unwrap());
        assert_eq!(unpack(&all, dir.path()).unwrap(), 4);
        assert!(dir.path().join("bin/hello").is_file());
        assert!(dir.path().join("lava-1/run.sh").is_file());
        assert!(!dir.path().parent().unwrap().join("outside").exists());
        let mut c = Vec::new();
        entry(&mut c, "evil/passwd", 0o100644, b"x");
        entry(&mut c, "TRAILER!!!", 0, b"");
        assert!(unpack(&c, dir.path()).is_err());
        assert!(unpack(b"garbage", dir.path()).is_err());
    }
}
