//! The overlay as a gzip tarball (`compress-overlay`, for `transfer_overlay`): members
//! `lava-<job>/...`, written from a walk that follows no link (`super::tree`).

use super::tree::{open_file, walk, Kind, TreeError};
use crate::host::blocking::{Cancel, CancelRead};
use std::io::Write;
use std::path::Path;

/// Writes the tree `root/rel` as members `rel/...` into a gzip tarball on `out`; owners root,
/// times 0, permissions kept. Stops once `cancel` is set.
pub fn write(root: &Path, rel: &str, out: impl Write, cancel: &Cancel) -> Result<(), TreeError> {
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    let header = |ty: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h
    };
    let top = Path::new(rel);
    let tree = root.join(rel);
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    tar.append_data(&mut h, top, std::io::empty())
        .map_err(|e| TreeError::io(rel, e))?;
    walk(&tree, "the overlay", cancel, &mut |e| {
        let name = top.join(&e.rel);
        let io = |err| TreeError::io(name.display(), err);
        match &e.kind {
            Kind::Dir => {
                let mut h = header(tar::EntryType::Directory, e.mode & 0o777, 0);
                tar.append_data(&mut h, &name, std::io::empty())
                    .map_err(io)?;
            }
            Kind::File { size } => {
                let f = open_file(&e.path).map_err(io)?;
                let mut h = header(tar::EntryType::Regular, e.mode & 0o777, *size);
                let reader = CancelRead { inner: f, cancel }.take_exact(*size);
                tar.append_data(&mut h, &name, reader).map_err(io)?;
            }
            Kind::Symlink(target) => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                tar.append_link(&mut h, &name, target).map_err(io)?;
            }
        }
        Ok(())
    })?;
    let gz = tar
        .into_inner()
        .map_err(|e| TreeError::io("overlay tarball", e))?;
    let mut out = gz
        .finish()
        .map_err(|e| TreeError::io("overlay tarball", e))?;
    out.flush().map_err(|e| TreeError::io("overlay tarball", e))
}

/// Reads exactly the size the header announced: a file that shrank while archived is padded
/// with nothing and fails, one that grew is cut, so the archive stays well formed.
trait TakeExact: Sized {
    fn take_exact(self, n: u64) -> Exact<Self>;
}

impl<R: std::io::Read> TakeExact for R {
    fn take_exact(self, n: u64) -> Exact<R> {
        Exact {
            inner: self,
            left: n,
        }
    }
}

struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: std::io::Read> std::io::Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(std::io::Error::other(
                "the file changed while it was archived",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tarball_keeps_inner_symlinks_and_refuses_outer_ones() {
        let d = std::env::temp_dir().join(format!("basalt-targz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let tree = d.join("root/lava-1/tests/0_x");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("run.sh"), "echo hi\n").unwrap();
        std::os::unix::fs::symlink("run.sh", tree.join("alias")).unwrap();
        let mut out = Vec::new();
        write(&d.join("root"), "lava-1", &mut out, &Cancel::new()).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&out[..]));
        let names: Vec<(String, tar::EntryType)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                )
            })
            .collect();
        assert!(names.contains(&("lava-1/tests/0_x/alias".into(), tar::EntryType::Symlink)));
        assert!(names.contains(&("lava-1/tests/0_x/run.sh".into(), tar::EntryType::Regular)));
        std::os::unix::fs::symlink("/", tree.join("slash")).unwrap();
        let e = write(&d.join("root"), "lava-1", Vec::new(), &Cancel::new()).unwrap_err();
        assert!(
            e.to_string()
                .contains("'tests/0_x/slash' is a symlink to '/'"),
            "{e}"
        );
        // cancelled: stops
        let c = Cancel::new();
        c.set();
        assert!(matches!(
            write(&d.join("root"), "lava-1", Vec::new(), &c),
            Err(TreeError::Cancelled)
        ));
        std::fs::remove_dir_all(d).ok();
    }
}
