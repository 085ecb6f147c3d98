//! A writer for cpio "newc" archives, the format of Linux initramfs images.
//!
//! Written here rather than taken from a crate: the format is a fixed 110-byte ASCII header per
//! entry and we only ever write (directories, regular files, symlinks) from a directory tree;
//! the crates on offer read and write far more than that and would cost a dependency for
//! ~80 lines.

use super::tree::{open_file, walk, Kind, TreeError};
use crate::host::blocking::Cancel;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn header(out: &mut impl Write, ino: u32, mode: u32, size: u32, name: &str) -> io::Result<()> {
    let namesize = name.len() + 1;
    write!(
        out,
        "070701{ino:08X}{mode:08X}{uid:08X}{gid:08X}{nlink:08X}{mtime:08X}{size:08X}{z:08X}{z:08X}{z:08X}{z:08X}{namesize:08X}{z:08X}",
        uid = 0,
        gid = 0,
        nlink = 1,
        mtime = 0,
        z = 0
    )?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    pad(out, 110 + namesize)
}

fn pad(out: &mut impl Write, len: usize) -> io::Result<()> {
    let rem = (4 - len % 4) % 4;
    out.write_all(&[0u8; 3][..rem])
}

/// Writes every entry below `root` (not `root` itself) with names relative to it, parents
/// before children, owned by root, then the trailer. The tree is walked without following
/// links (`super::tree`): symlinks that stay inside it are archived as symlinks, anything else
/// that is not a directory or a regular file is refused. Stops once `cancel` is set.
pub fn write_tree(root: &Path, out: &mut impl Write, cancel: &Cancel) -> Result<(), TreeError> {
    let mut ino = 1u32;
    walk(root, "the overlay", cancel, &mut |e| {
        let rel = e.rel.to_string_lossy().into_owned();
        let io = |err: io::Error| TreeError::io(&rel, err);
        ino = ino.wrapping_add(1);
        match &e.kind {
            Kind::Dir => header(out, ino, 0o040000 | e.mode, 0, &rel).map_err(io)?,
            Kind::Symlink(target) => {
                let t = target.as_os_str().as_bytes();
                let len =
                    u32::try_from(t.len()).map_err(|_| io(io::Error::other("link too long")))?;
                header(out, ino, 0o120000 | 0o777, len, &rel).map_err(io)?;
                out.write_all(t).map_err(io)?;
                pad(out, t.len()).map_err(io)?;
            }
            Kind::File { size } => {
                let size = u32::try_from(*size).map_err(|_| {
                    TreeError::Refused(format!(
                        "'{rel}' is too large for a cpio archive (4 GiB at most)"
                    ))
                })?;
                let mut f = open_file(&e.path).map_err(io)?;
                header(out, ino, 0o100000 | e.mode, size, &rel).map_err(io)?;
                let copied =
                    crate::host::blocking::copy(&mut (&mut f).take(u64::from(size)), out, cancel)
                        .map_err(io)?;
                if copied != u64::from(size) {
                    return Err(TreeError::Io(
                        rel.clone(),
                        io::Error::other("the file changed while it was archived"),
                    ));
                }
                pad(out, size as usize).map_err(io)?;
            }
        }
        Ok(())
    })?;
    header(out, 0, 0, 0, "TRAILER!!!").map_err(|e| TreeError::io("cpio trailer", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn cpio_lists_with_the_system_cpio() {
        let dir = std::env::temp_dir().join(format!("basalt-cpio-{}", std::process::id()));
        let tree = dir.join("tree");
        fs::create_dir_all(tree.join("lava-1/bin")).unwrap();
        fs::write(
            tree.join("lava-1/bin/lava-test-case"),
            "#!/bin/sh\necho hi\n",
        )
        .unwrap();
        fs::set_permissions(
            tree.join("lava-1/bin/lava-test-case"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::symlink("lava-test-case", tree.join("lava-1/bin/alias")).unwrap();
        let mut buf = Vec::new();
        write_tree(&tree, &mut buf, &Cancel::new()).unwrap();
        assert_eq!(buf.len() % 4, 0);
        assert!(buf.starts_with(b"070701"));
        let archive = dir.join("a.cpio");
        fs::write(&archive, &buf).unwrap();
        if let Ok(out) = std::process::Command::new("cpio")
            .arg("-it")
            .stdin(fs::File::open(&archive).unwrap())
            .output()
        {
            let listing = String::from_utf8_lossy(&out.stdout);
            assert!(listing.contains("lava-1/bin/lava-test-case"), "{listing}");
            assert!(listing.contains("lava-1/bin/alias"), "{listing}");
        }
        // a symlink out of the tree is refused, not archived
        std::os::unix::fs::symlink("/etc/passwd", tree.join("lava-1/bin/out")).unwrap();
        let e = write_tree(&tree, &mut Vec::new(), &Cancel::new()).unwrap_err();
        assert!(
            e.to_string()
                .contains("'lava-1/bin/out' is a symlink to '/etc/passwd'"),
            "{e}"
        );
        fs::remove_dir_all(dir).ok();
    }
}
