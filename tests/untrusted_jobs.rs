//! A job file is untrusted (issue 14, docs/security.md): its context cannot set what the
//! host runs, and its QEMU arguments cannot name host files or channels, at validate, at
//! render and at run.

use basalt::device::Device;
use basalt::yaml::{load, Node};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn context(yaml: &str) -> BTreeMap<String, Node> {
    let n = load(yaml).expect("context yaml");
    n.as_map()
        .unwrap_or(&[])
        .iter()
        .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.clone())))
        .collect()
}

fn qemu_device(ctx: &str) -> Result<Device, String> {
    let dict = repo().join("config/devices/qemu-amd64.jinja2");
    let dirs = vec![repo().join("config/device-types")];
    Device::load(&dict, &dirs, &context(ctx)).map_err(|e| e.to_string())
}

fn qemu_command(d: &Device) -> String {
    d.boot_method("qemu")
        .and_then(|m| m.path(&["parameters", "command"]))
        .and_then(Node::scalar_text)
        .unwrap_or_default()
}

#[test]
fn the_renderer_drops_what_lava_does_not_pass_even_unvalidated() {
    let plain = qemu_device("{}").expect("render");
    let hostile = qemu_device(
        "{qemu_binary: /bin/sh, pre_power_command: 'touch /tmp/basalt-x', power_on_command: 'touch /tmp/basalt-x', hard_reset_command: 'touch /tmp/basalt-x'}",
    )
    .expect("render");
    assert_eq!(qemu_command(&hostile), qemu_command(&plain));
    assert!(
        qemu_command(&plain).starts_with("qemu-system-"),
        "{}",
        qemu_command(&plain)
    );
    let text = format!("{:?}", hostile.node);
    assert!(
        !text.contains("basalt-x"),
        "a job's command reached the device: {text}"
    );
}

#[test]
fn the_renderer_refuses_a_context_value_that_would_add_an_option_or_a_line() {
    for ctx in [
        "{machine: 'pc -D /tmp/basalt-x'}",
        "{machine: 'pc,dumpdtb=/tmp/basalt-x'}",
        "{serial: '-serial file:/tmp/basalt-x'}",
        "{monitor: 'unix:/tmp/basalt-x,server,nowait'}",
        "{netdevice: 'tap,script=/tmp/basalt-x'}",
        "{extra_options: ['-smp 1', '-pidfile /tmp/basalt-x']}",
        "{arch: '../../../tmp/basalt-x'}",
        "{bootloader_prompt: \"=>\\npower_on_command: touch /tmp/basalt-x\"}",
    ] {
        let e = qemu_device(ctx).expect_err(ctx);
        assert!(e.contains("job context"), "{ctx}: {e}");
    }
    // LAVA's usual context still renders.
    qemu_device(
        "{arch: amd64, no_kvm: true, memory: 1024, extra_options: ['-smp', 1], netdevice: user}",
    )
    .expect("a usual context");
}

#[test]
fn run_refuses_host_reaching_qemu_arguments_before_anything_starts() {
    let marker = Path::new("/tmp/basalt-marker");
    let _ = std::fs::remove_file(marker);
    let job = repo().join("tests/data/lava-verdict/refuse/host-image-arg-logfile.yaml");
    let out = std::env::temp_dir().join(format!("basalt-untrusted-{}", std::process::id()));
    let res = Command::new(env!("CARGO_BIN_EXE_basalt"))
        .arg("run")
        .arg(&job)
        .arg("--device")
        .arg(repo().join("config/devices/qemu-amd64.jinja2"))
        .arg("--output-dir")
        .arg(&out)
        .arg("-q")
        .output()
        .expect("run basalt");
    let _ = std::fs::remove_dir_all(&out);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("host-image-arg-logfile.yaml:30:") && stderr.contains("'-D'"),
        "{stderr}"
    );
    assert!(!marker.exists(), "the marker was written");
}
