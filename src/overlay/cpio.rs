//! A writer for cpio "newc" archives, the format of Linux initramfs images.
//!
//! Written here rather than taken from a crate: the format is a fixed 110-byte ASCII header per
//! entry and we only ever write (directories, regular files, symlinks) from a directory tree;
//! the crates on offer read and write far more than that and would cost a dependency for
//! ~80 lines.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
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
/// before children, owned by root, then the trailer.
pub fn write_tree(root: &Path, out: &mut impl Write) -> io::Result<()> {
    let mut ino = 1u32;
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let mut entries: Vec<_> = fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .map_err(|_| io::Error::other("path outside the tree"))?
                .to_string_lossy()
                .into_owned();
            let meta = fs::symlink_metadata(&path)?;
            let perm = meta.permissions().mode() & 0o7777;
            ino += 1;
            if meta.is_dir() {
                header(out, ino, 0o040000 | perm, 0, &rel)?;
                todo.push(path);
            } else if meta.file_type().is_symlink() {
                let target = fs::read_link(&path)?;
                let t = target.to_string_lossy();
                header(out, ino, 0o120000 | 0o777, t.len() as u32, &rel)?;
                out.write_all(t.as_bytes())?;
                pad(out, t.len())?;
            } else if meta.is_file() {
                let size = u32::try_from(meta.size())
                    .map_err(|_| io::Error::other("file too large for cpio"))?;
                header(out, ino, 0o100000 | perm, size, &rel)?;
                let mut f = fs::File::open(&path)?;
                let copied = io::copy(&mut f, out)?;
                if copied != u64::from(size) {
                    return Err(io::Error::other(format!(
                        "{} changed while archiving",
                        path.display()
                    )));
                }
                pad(out, size as usize)?;
            }
        }
    }
    header(out, 0, 0, 0, "TRAILER!!!")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut buf = Vec::new();
        write_tree(&tree, &mut buf).unwrap();
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
        }
        fs::remove_dir_all(dir).ok();
    }
}
