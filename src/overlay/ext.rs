//! Writes a directory tree into an ext2/3/4 filesystem image with e2fsprogs' `debugfs`
//! (LAVA's `overlay_backend: e2fsprogs`): no loop mount, so no root and nothing left mounted
//! if the job dies. Paths come from the overlay basalt built, never from the job directly.
//! The image is the job's: `debugfs` runs under the caller's policy (confined by the
//! dispatcher: it parses a file an untrusted job supplied).

use super::tree::{walk, Kind, TreeError};
use crate::host::blocking::Cancel;
use basalt_hal::confine::{self, Policy};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;

fn debugfs_safe(what: &str, s: &str) -> Result<(), TreeError> {
    if s.contains(['"', '\n', '\\']) {
        return Err(TreeError::Refused(format!(
            "cannot write {what} '{s}' with debugfs"
        )));
    }
    Ok(())
}

/// The debugfs commands that copy every directory, file and symlink below `tree` into the
/// image at the same path (`super::tree`'s rules: nothing is followed, symlinks are kept when
/// they stay inside the tree). Returns the script and the bytes of the files. Blocking.
pub fn script(tree: &Path, cancel: &Cancel) -> Result<(String, u64), TreeError> {
    let mut cmds = String::new();
    let mut bytes = 0u64;
    walk(tree, "the overlay", cancel, &mut |e| {
        let name = e
            .rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.contains(['"', '\n', ' ']) {
            return Err(TreeError::Refused(format!(
                "cannot write '{name}' with debugfs"
            )));
        }
        let parent = e.rel.parent().unwrap_or(Path::new(""));
        let fs_dir = format!("/{}", parent.to_string_lossy());
        debugfs_safe("the directory", &fs_dir)?;
        let _ = writeln!(cmds, "cd \"{fs_dir}\"");
        match &e.kind {
            Kind::Dir => {
                let _ = writeln!(cmds, "mkdir \"{name}\"");
                let _ = writeln!(cmds, "sif \"{name}\" mode 0{:o}", 0o040000 | e.mode);
            }
            Kind::File { size } => {
                let host = e.path.to_string_lossy();
                debugfs_safe("the file", &host)?;
                let _ = writeln!(cmds, "rm \"{name}\"");
                let _ = writeln!(cmds, "write \"{host}\" \"{name}\"");
                let _ = writeln!(cmds, "sif \"{name}\" mode 0{:o}", 0o100000 | e.mode);
                bytes += size;
            }
            Kind::Symlink(target) => {
                let t = target.to_string_lossy();
                debugfs_safe("the symlink target", &t)?;
                let _ = writeln!(cmds, "rm \"{name}\"");
                let _ = writeln!(cmds, "symlink \"{name}\" \"{t}\"");
            }
        }
        Ok(())
    })?;
    Ok((cmds, bytes))
}

/// Runs a [`script`] (written to `script_file`) on `image` under `policy` (which must let it
/// write the image's directory and read the tree). debugfs is killed if the future is dropped
/// (the action timed out, the job was canceled).
pub async fn run_script(image: &Path, script_file: &Path, policy: &Policy) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new("debugfs");
    cmd.arg("-w")
        .arg("-f")
        .arg(script_file)
        .arg(image)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let cannot = |e: std::io::Error| format!("cannot run debugfs (package e2fsprogs): {e}");
    let out = confine::spawn(cmd, policy)
        .map_err(cannot)?
        .wait_with_output()
        .await
        .map_err(cannot)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // `mkdir` of an existing directory and `rm` of a missing file are expected; anything
    // else debugfs complains about is a failure.
    let bad: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("debugfs "))
        .filter(|l| !l.contains("already exists") && !l.contains("File not found by ext2_lookup"))
        .collect();
    if !out.status.success() || !bad.is_empty() {
        return Err(format!("debugfs failed: {}", bad.join("; ")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_a_tree_into_an_ext4_image() {
        write_tree_with(&Policy::Supervised, "plain").await;
    }

    #[tokio::test]
    async fn writes_a_tree_into_an_ext4_image_confined() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("basalt-ext-confined-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let policy = Policy::Confined(
            basalt_hal::confine::Confinement::new(basalt_hal::confine::JobUser::nobody())
                .writable(&dir),
        );
        write_tree_with(&policy, "confined").await;
        std::fs::remove_dir_all(dir).ok();
    }

    async fn write_tree_with(policy: &Policy, tag: &str) {
        let dir = std::env::temp_dir().join(if tag == "confined" {
            format!("basalt-ext-confined-{}", std::process::id())
        } else {
            format!("basalt-ext-{}", std::process::id())
        });
        let tree = dir.join("tree");
        std::fs::create_dir_all(tree.join("lava-1/bin")).unwrap();
        std::fs::write(
            tree.join("lava-1/bin/lava-test-case"),
            "#!/bin/sh\necho hi\n",
        )
        .unwrap();
        let image = dir.join("rootfs.ext4");
        let mk = std::process::Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4"])
            .arg(&image)
            .arg("8M")
            .status();
        let Ok(st) = mk else {
            panic!("mke2fs missing: install e2fsprogs");
        };
        assert!(st.success());
        std::os::unix::fs::symlink("lava-test-case", tree.join("lava-1/bin/alias")).unwrap();
        let (cmds, bytes) = script(&tree, &Cancel::new()).unwrap();
        assert!(bytes > 0);
        let file = dir.join("script");
        std::fs::write(&file, cmds).unwrap();
        run_script(&image, &file, policy).await.unwrap();
        // again: existing directories, files and links are replaced, not errors
        run_script(&image, &file, policy).await.unwrap();
        let out = std::process::Command::new("debugfs")
            .arg("-R")
            .arg("cat /lava-1/bin/lava-test-case")
            .arg(&image)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "#!/bin/sh\necho hi\n");
        let out = std::process::Command::new("debugfs")
            .arg("-R")
            .arg("stat /lava-1/bin/alias")
            .arg(&image)
            .output()
            .unwrap();
        let stat = String::from_utf8_lossy(&out.stdout);
        assert!(
            stat.contains("Type: symlink") && stat.contains("\"lava-test-case\""),
            "{stat}"
        );
        // a symlink out of the tree is refused
        std::os::unix::fs::symlink("../../..", tree.join("lava-1/bin/up")).unwrap();
        let e = script(&tree, &Cancel::new()).unwrap_err().to_string();
        assert!(e.contains("'lava-1/bin/up' is a symlink"), "{e}");
        std::fs::remove_dir_all(dir).ok();
    }
}
