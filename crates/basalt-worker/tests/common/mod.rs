//! What the worker's tests share: the repository, its fixtures, and the QEMU demo job.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The kernel and initramfs of hw-tests/build-fixtures.sh.
pub fn fixtures() -> PathBuf {
    std::env::var_os("BASALT_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/fixtures"))
}

/// The QEMU demo job on the fixtures, with `step` first in its test when given.
pub fn demo_job(step: Option<&str>) -> String {
    let f = fixtures();
    let mut job = std::fs::read_to_string(repo().join("config/jobs/demo-qemu.yaml"))
        .unwrap()
        .replace("@KERNEL@", &f.join("amd64/vmlinux").to_string_lossy())
        .replace(
            "@INITRD@",
            &f.join("amd64/initramfs.cpio.gz").to_string_lossy(),
        );
    if let Some(step) = step {
        job = job.replacen(
            "          steps:\n",
            &format!("          steps:\n          - {step}\n"),
            1,
        );
    }
    job
}

/// The project's QEMU device rendered for `job`, as the master sends it.
pub fn demo_device(job: &str) -> String {
    let (job, _) = basalt::job::parse_job("demo.yaml", job).unwrap();
    basalt::device::Device::load(
        &repo().join("config/devices/qemu-amd64.jinja2"),
        &[],
        &job.context,
    )
    .unwrap()
    .text
}
