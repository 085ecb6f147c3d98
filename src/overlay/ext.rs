//! Writes a directory tree into an ext2/3/4 filesystem image with e2fsprogs' `debugfs`
//! (LAVA's `overlay_backend: e2fsprogs`): no loop mount, so no root and nothing left mounted
//! if the job dies. Paths come from the overlay basalt built, never from the job directly.
//! The image is the job's: `debugfs` runs under the caller's policy (confined by the
//! dispatcher: it parses a file an untrusted job supplied).

use basalt_hal::confine::{self, Policy};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;

/// Copies every directory and file below `tree` into the image at the same path (the image
/// holds a bare filesystem, no partition table), running `debugfs` under `policy` (which must
/// let it write the image's directory and read `tree`). Returns the number of bytes written.
pub async fn write_tree(image: &Path, tree: &Path, policy: &Policy) -> Result<usize, String> {
    let mut cmds = String::new();
    let mut bytes = 0usize;
    let mut todo = vec![tree.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let rel = dir.strip_prefix(tree).map_err(|e| e.to_string())?;
        let fs_dir = format!("/{}", rel.to_string_lossy());
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains(['"', '\n', ' ']) {
                return Err(format!("cannot write '{name}' with debugfs"));
            }
            let meta = e.metadata().map_err(|e| e.to_string())?;
            let mode = {
                use std::os::unix::fs::PermissionsExt;
                meta.permissions().mode() & 0o7777
            };
            let _ = writeln!(cmds, "cd \"{fs_dir}\"");
            if meta.is_dir() {
                let _ = writeln!(cmds, "mkdir \"{name}\"");
                let _ = writeln!(cmds, "sif \"{name}\" mode 0{:o}", 0o040000 | mode);
                todo.push(e.path());
            } else if meta.is_file() {
                let _ = writeln!(cmds, "rm \"{name}\"");
                let _ = writeln!(cmds, "write \"{}\" \"{name}\"", e.path().display());
                let _ = writeln!(cmds, "sif \"{name}\" mode 0{:o}", 0o100000 | mode);
                bytes += meta.len() as usize;
            }
        }
    }
    let script = image.with_extension("debugfs");
    std::fs::write(&script, &cmds).map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::new("debugfs");
    cmd.arg("-w")
        .arg("-f")
        .arg(&script)
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
    let _ = std::fs::remove_file(&script);
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
    Ok(bytes)
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
        assert!(write_tree(&image, &tree, policy).await.unwrap() > 0);
        // again: existing directories and files are replaced, not errors
        write_tree(&image, &tree, policy).await.unwrap();
        let out = std::process::Command::new("debugfs")
            .arg("-R")
            .arg("cat /lava-1/bin/lava-test-case")
            .arg(&image)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "#!/bin/sh\necho hi\n");
        std::fs::remove_dir_all(dir).ok();
    }
}
