//! A job that `validate --device` accepts runs there: for every strategy of the registry
//! (deploy `to:`, boot `method:`, test kind) on every device of the project (`config/devices`),
//! a job using it is built and checked as `validate --device` checks it; when it is accepted,
//! every action of its pipeline has a runner. A strategy that would be accepted without a
//! runner fails here, not in a user's job.

use basalt::actions::registry;
use basalt::device::Device;
use basalt::job::parse_job;
use basalt::pipeline::{build_pipeline, validate};
use std::collections::BTreeMap;
use std::path::Path;

/// The deploy block of a job for strategy `to`.
fn deploy(to: &str) -> String {
    let images = match to {
        "tmpfs" => {
            "    images:\n      kernel: {url: 'file:///k', image_arg: '-kernel {kernel}'}\n      ramdisk: {url: 'file:///r', image_arg: '-initrd {ramdisk}'}\n"
        }
        "tftp" => {
            "    kernel: {url: 'file:///k', type: image}\n    ramdisk: {url: 'file:///r'}\n    dtb: {url: 'file:///d'}\n"
        }
        "nfs" => "    nfsrootfs: {url: 'file:///n.tar.gz', compression: gz}\n",
        "usb" | "sata" => "    device: disk0\n    image: {url: 'file:///i.img'}\n",
        _ => "",
    };
    format!("- deploy:\n    to: {to}\n    os: oe\n{images}")
}

/// The boot block of a job for method `method`.
fn boot(method: &str) -> String {
    let extra = match method {
        "qemu" => "    media: tmpfs\n",
        "qemu-nfs" => "    media: nfs\n",
        "u-boot" => "    commands: ramdisk\n",
        "bootloader" => "    bootloader: u-boot\n    commands: ['version']\n",
        _ => "",
    };
    let prompt = if method == "bootloader" { "=>" } else { "/ # " };
    format!("- boot:\n    method: {method}\n{extra}    prompts: ['{prompt}']\n")
}

/// The test block of a job of kind `kind`.
fn test(kind: &str) -> String {
    let body = match kind {
        "definitions" => {
            "    definitions:\n    - from: inline\n      name: smoke\n      path: inline/smoke.yaml\n      repository:\n        metadata: {format: Lava-Test Test Definition 1.0, name: smoke}\n        run: {steps: ['lava-test-case ok --shell true']}\n"
        }
        "interactive" => {
            "    interactive:\n    - name: uboot\n      prompts: ['=>']\n      script:\n      - command: version\n        name: version\n"
        }
        "monitors" => {
            "    monitors:\n    - name: m\n      start: BEGIN\n      end: END\n      pattern: '(?P<test_case_id>\\w+): (?P<result>\\w+)'\n"
        }
        _ => "",
    };
    format!("- test:\n    timeout: {{minutes: 1}}\n{body}")
}

fn job(device_type: &str, blocks: &[String]) -> String {
    format!(
        "device_type: {device_type}\njob_name: strategies\ntimeouts:\n  job: {{minutes: 10}}\npriority: medium\nvisibility: public\nactions:\n{}",
        blocks.concat()
    )
}

#[test]
fn every_strategy_validate_accepts_has_a_runner() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let types = vec![config.join("device-types")];
    let mut devices: Vec<_> = std::fs::read_dir(config.join("devices"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jinja2"))
        .collect();
    devices.sort();
    assert!(devices.len() >= 3, "{devices:?}");
    use registry::names;
    let mut accepted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut refused_not_yet = 0;
    for path in &devices {
        let device = Device::load(path, &types, &BTreeMap::new()).unwrap();
        for to in names(registry::DEPLOY) {
            for method in names(registry::BOOT) {
                for kind in names(registry::TEST) {
                    let text = job(&device.device_type, &[deploy(to), boot(method), test(kind)]);
                    let label = format!("{}: {to} + {method} + {kind}", device.hostname);
                    let verbose = std::env::var_os("STRATEGIES_VERBOSE").is_some();
                    let (job, _) = match parse_job("strategies.yaml", &text) {
                        Ok(j) => j,
                        Err(e) => {
                            // a combination LAVA refuses (e.g. qemu-nfs on tmpfs)
                            if verbose {
                                println!("{label}: {e}");
                            }
                            continue;
                        }
                    };
                    let pipeline = match build_pipeline(&job, &device) {
                        Ok(p) => p,
                        Err(e) => {
                            // the device lacks the method: refused by name
                            if verbose {
                                println!("{label}: {e:?}");
                            }
                            continue;
                        }
                    };
                    let errors = validate(&job, &device, &pipeline);
                    if verbose && !errors.is_empty() {
                        println!("{label}: {errors:?}");
                    }
                    if !errors.is_empty() {
                        if errors
                            .iter()
                            .any(|e| e.message.contains("not supported by basalt yet"))
                        {
                            refused_not_yet += 1;
                        }
                        continue;
                    }
                    for node in pipeline.walk() {
                        assert!(
                            node.action.runnable(),
                            "{label}: validate accepts it, but '{}' has no runner",
                            node.name()
                        );
                    }
                    accepted
                        .entry(device.hostname.clone())
                        .or_default()
                        .push(format!("{to}+{method}+{kind}"));
                }
            }
        }
    }
    println!("accepted: {accepted:#?}\nrefused as not supported yet: {refused_not_yet}");
    // the walk is not empty: each project device accepts its own paths
    let has = |dev: &str, combo: &str| {
        accepted
            .get(dev)
            .is_some_and(|v| v.iter().any(|c| c == combo))
    };
    assert!(has("qemu-amd64", "tmpfs+qemu+definitions"), "{accepted:#?}");
    assert!(has("bbb-01", "tftp+u-boot+definitions"), "{accepted:#?}");
    assert!(
        accepted.keys().any(|d| d.starts_with("basalt-board")),
        "{accepted:#?}"
    );
    // NFS roots run (deploy nfs + boot qemu-nfs); what is refused as not supported yet
    // (secondary media) is printed above: the project's devices may have none of it
    assert!(
        has("qemu-amd64", "nfs+qemu-nfs+definitions"),
        "{accepted:#?}"
    );
}
