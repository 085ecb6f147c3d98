//! basalt's own device-type templates (config/device-types) render with basalt's engine into
//! devices that the pipeline can use.

use basalt::device::Device;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(name: &str) -> Device {
    let types = vec![repo().join("config/device-types")];
    let dict = repo().join(format!("config/devices/{name}.jinja2"));
    Device::load(&dict, &types, &BTreeMap::new()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn example_dictionaries_render() {
    let q = load("qemu-amd64");
    assert_eq!(q.device_type, "qemu");
    let qemu = q.boot_method("qemu").expect("qemu boot method");
    assert_eq!(
        qemu.path(&["parameters", "command"])
            .and_then(|c| c.as_str()),
        Some("qemu-system-x86_64")
    );
    let opts: Vec<&str> = qemu
        .path(&["parameters", "options"])
        .and_then(|o| o.as_seq())
        .unwrap_or(&[])
        .iter()
        .filter_map(|o| o.as_str())
        .collect();
    assert!(opts.contains(&"-nic none"), "{opts:?}");
    assert!(q.has_deploy_method("image") && q.has_boot_method("minimal"));

    let bbb = load("bbb-01");
    assert_eq!(bbb.device_type, "beaglebone-black");
    assert_eq!(
        bbb.commands.connect.as_deref(),
        Some("telnet 127.0.0.1 7001")
    );
    assert!(!bbb.commands.hard_reset.is_empty());
    assert!(bbb
        .boot_method("u-boot")
        .and_then(|m| m.get("ramdisk"))
        .is_some());
    assert_eq!(bbb.character_delays.boot_ms, 10);

    let board = load("basalt-board-01");
    assert_eq!(board.device_type, "basalt-board");
    assert!(board.commands.connect.is_some());
    assert!(board.action_timeouts.contains_key("auto-login-action"));
}

#[test]
fn lava_qemu_dictionaries_render_with_basalt_templates() {
    // LAVA's own qemu dictionaries work with basalt's qemu template too.
    let corpus = [
        "../shared/conformance/lava",
        "/work/shared/conformance/lava",
    ]
    .iter()
    .map(|p| repo().join(p))
    .find(|p| p.join("README.md").is_file());
    let Some(corpus) =
        corpus.or_else(|| std::env::var("BASALT_LAVA_CORPUS").ok().map(PathBuf::from))
    else {
        panic!("LAVA corpus not found; set BASALT_LAVA_CORPUS");
    };
    let types = vec![repo().join("config/device-types")];
    for name in ["kvm01", "qemu01", "kvm02"] {
        let dict = corpus.join(format!("devices/dictionaries/{name}.jinja2"));
        let d =
            Device::load(&dict, &types, &BTreeMap::new()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(d.has_boot_method("qemu"), "{name}");
    }
}
