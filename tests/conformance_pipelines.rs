//! Pipelines: for each pairing of LAVA's corpus (job, device, render context), the pipeline
//! basalt builds matches LAVA's `describe()` output. In-scope refs must match at the first two
//! levels (name, level, timeout); the test prints how many nodes match at every depth.

mod common;

use basalt::device::Device;
use basalt::job::{parse_job_file_as, Reading};
use basalt::pipeline::build_pipeline;
use basalt::yaml::{load, Node, Value};
use common::corpus;
use std::collections::BTreeMap;

struct Case {
    reference: &'static str,
    job: &'static str,
    device: &'static str,
    /// `Some`: replaces the job's context (LAVA's `create_kvm_job`); `None`: the job's own.
    context: Option<Vec<(&'static str, Node)>>,
    /// Strategies of this ref that basalt leaves out, by top-level index (1-based).
    out_of_scope: &'static str,
}

fn kvm_ctx() -> Option<Vec<(&'static str, Node)>> {
    Some(vec![
        ("arch", Node::str("amd64")),
        ("no_kvm", Node::new(Value::Bool(true))),
    ])
}

fn cases() -> Vec<Case> {
    let c = |reference, job, device, context, out_of_scope| Case {
        reference,
        job,
        device,
        context,
        out_of_scope,
    };
    vec![
        c("kvm", "qemu/kvm", "qemu01", kvm_ctx(), ""),
        c("kvm-inline", "qemu/kvm-inline", "kvm01", kvm_ctx(), ""),
        c("kvm-multi", "qemu/kvm-multi", "kvm01", kvm_ctx(), ""),
        c("kvm-noos", "qemu/kvm-noos", "kvm01", kvm_ctx(), ""),
        c("kvm-qcow2", "qemu/kvm-qcow2", "kvm01", kvm_ctx(), ""),
        c("kvm-local", "qemu/kvm-local", "kvm01", kvm_ctx(), ""),
        c("kvm-overlays", "qemu/kvm-overlays", "kvm01", kvm_ctx(), ""),
        c("qemu-reboot", "qemu/qemu-reboot", "kvm01", kvm_ctx(), ""),
        c("kvm-command", "qemu/kvm-command", "kvm01", kvm_ctx(), ""),
        c("qemu-nfs", "qemu/qemu-nfs", "kvm02", None, ""),
        c("uboot", "uboot/uboot-ramdisk", "bbb-03", None, ""),
        c("uboot-ramdisk", "uboot/uboot-ramdisk", "bbb-01", None, ""),
        c("uboot-multiple", "uboot/uboot-multiple", "bbb-03", None, ""),
        c(
            "uboot-persistent",
            "uboot/uboot-persistent",
            "bbb-03",
            None,
            "",
        ),
        c(
            "uboot-ramdisk-inline-commands",
            "uboot/uboot-ramdisk-inline-commands",
            "bbb-03",
            None,
            "",
        ),
        c(
            "x15-nfs",
            "uboot/x15-nfs",
            "x15-01",
            None,
            "docker test shell",
        ),
        c("zcu102-ramdisk", "uboot/zcu102-ramdisk", "zcu102", None, ""),
        c(
            "juno-uboot-nfs",
            "uboot/juno-uboot-nfs",
            "juno-01",
            None,
            "vemsd firmware deploy",
        ),
        c(
            "cubietruck-removable",
            "uboot/cubietruck-removable",
            "cubie1",
            None,
            "",
        ),
        c(
            "cubietruck-removable-with-writer",
            "uboot/cubietruck-removable-with-writer",
            "cubie1",
            None,
            "",
        ),
        c(
            "juno-uboot-removable",
            "uboot/juno-uboot-removable",
            "juno-uboot-01",
            None,
            "",
        ),
        c(
            "bbb-uboot-interactive",
            "uboot/bbb-uboot-interactive",
            "bbb-01",
            None,
            "",
        ),
        c(
            "mustang-secondary-media",
            "uboot/mustang-secondary-media",
            "mustang1",
            None,
            "grub-efi boot",
        ),
        c(
            "mustang-media",
            "uboot/mustang-secondary-media",
            "mustang1",
            None,
            "grub-efi boot",
        ),
        c(
            "bbb-ssh-guest",
            "multinode/dispatcher/bbb-ssh-guest",
            "bbb-02",
            None,
            "ssh deploy and boot",
        ),
    ]
}

/// Flattens a describe list into (depth, level, name, timeout).
fn flatten(list: &Node, depth: usize, out: &mut Vec<(usize, String, String, i64)>) {
    for item in list.as_seq().unwrap_or(&[]) {
        let level = item
            .get("level")
            .and_then(Node::scalar_text)
            .unwrap_or_default();
        let name = item
            .get("name")
            .and_then(Node::scalar_text)
            .unwrap_or_default();
        let timeout = item.get("timeout").and_then(Node::as_i64).unwrap_or(-1);
        out.push((depth, level, name, timeout));
        if let Some(p) = item.get("pipeline") {
            flatten(p, depth + 1, out);
        }
    }
}

/// A case's job (as the dispatcher reads it) and its device rendered with the case's context
/// (the job's own when the case gives none).
fn load_case(case: &Case) -> (basalt::job::Job, Device) {
    let root = corpus();
    let types = vec![root.join("devices/device-types")];
    let (job, _) = parse_job_file_as(
        &root.join(format!("jobs/{}.yaml", case.job)),
        Reading::Dispatch,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let context: BTreeMap<String, Node> = match &case.context {
        Some(pairs) => pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        None => job.context.clone(),
    };
    let dict = root.join(format!("devices/dictionaries/{}.jinja2", case.device));
    let device =
        Device::load(&dict, &types, &context).unwrap_or_else(|e| panic!("{}: {e}", case.device));
    (job, device)
}

#[test]
fn pipelines_match_lava_describe() {
    let root = corpus();
    let mut per_depth: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut skipped = Vec::new();
    let mut matched_refs = 0;
    for case in cases() {
        let (job, device) = load_case(&case);
        let expected_text =
            std::fs::read_to_string(root.join(format!("pipeline_refs/{}.yaml", case.reference)))
                .unwrap();
        let mut expected = Vec::new();
        flatten(&load(&expected_text).unwrap(), 1, &mut expected);
        let pipeline = match build_pipeline(&job, &device) {
            Ok(p) => p,
            Err(errs) => {
                let msg: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
                if case.out_of_scope.is_empty() {
                    failures.push(format!(
                        "{}: pipeline not built: {}",
                        case.reference,
                        msg.join("; ")
                    ));
                } else {
                    skipped.push(format!(
                        "{} ({}): {}",
                        case.reference,
                        case.out_of_scope,
                        msg.join("; ")
                    ));
                }
                continue;
            }
        };
        let mut ours = Vec::new();
        flatten(&pipeline.describe(), 1, &mut ours);
        let mut ok_top2 = true;
        for e in &expected {
            let hit = ours.iter().any(|o| o == e);
            let slot = per_depth.entry(e.0).or_default();
            slot.1 += 1;
            if hit {
                slot.0 += 1;
            } else {
                println!(
                    "  mismatch {}: expected depth {} level {} {} timeout {}",
                    case.reference, e.0, e.1, e.2, e.3
                );
                if e.0 <= 2 {
                    ok_top2 = false;
                }
            }
        }
        for o in &ours {
            if o.0 <= 2 && !expected.contains(o) {
                println!(
                    "  extra {}: level {} {} timeout {}",
                    case.reference, o.1, o.2, o.3
                );
                ok_top2 = false;
            }
        }
        if ok_top2 {
            matched_refs += 1;
        } else {
            failures.push(format!(
                "{}: differs at depth 1-2 (see mismatches above)",
                case.reference
            ));
        }
    }
    println!("pipeline refs matching at depth 1-2: {matched_refs}");
    for (depth, (hit, total)) in &per_depth {
        println!("depth {depth}: {hit}/{total} nodes match (name, level, timeout)");
    }
    for s in &skipped {
        println!("out of scope: {s}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(matched_refs >= 20, "only {matched_refs} refs matched");
}

#[test]
fn device_checks_name_what_the_device_lacks() {
    let check_device = |job: &basalt::job::Job, dev: &Device| {
        let pipeline = build_pipeline(job, dev).unwrap();
        basalt::pipeline::validate(job, dev, &pipeline)
    };
    let root = corpus();
    let types = vec![root.join("devices/device-types")];
    let (job, _) =
        parse_job_file_as(&root.join("jobs/qemu/kvm-command.yaml"), Reading::Dispatch).unwrap();
    let ctx: BTreeMap<String, Node> = kvm_ctx()
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let dev = Device::load(
        &root.join("devices/dictionaries/kvm01.jinja2"),
        &types,
        &ctx,
    )
    .unwrap();
    let errs = check_device(&job, &dev);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].path, "actions[1].command");
    assert!(errs[0]
        .message
        .contains("no user command 'user_command_to_run'"));
    // A u-boot job on a u-boot device with its named command list: nothing missing.
    let (job, _) = parse_job_file_as(
        &root.join("jobs/uboot/uboot-ramdisk.yaml"),
        Reading::Dispatch,
    )
    .unwrap();
    let dev = Device::load(
        &root.join("devices/dictionaries/bbb-01.jinja2"),
        &types,
        &BTreeMap::new(),
    )
    .unwrap();
    assert!(check_device(&job, &dev).is_empty());
}

/// A job that validates on a device runs there: what basalt builds but cannot run yet is
/// named by `validate --device` (`basalt::pipeline::validate`), the rest has a runner.
#[test]
fn built_pipelines_run_or_are_refused_by_name() {
    let mut refused = BTreeMap::new();
    for case in cases() {
        let (job, device) = load_case(&case);
        let Ok(pipeline) = build_pipeline(&job, &device) else {
            continue;
        };
        let errs: Vec<_> = basalt::pipeline::validate(&job, &device, &pipeline)
            .into_iter()
            .filter(|e| e.message.contains("not supported by basalt yet"))
            .collect();
        for node in pipeline.walk() {
            let named = errs
                .iter()
                .any(|e| e.message.contains(&format!("'{}'", node.name())));
            assert!(
                node.action.runnable() || named,
                "{}: {} neither runs nor is refused",
                case.reference,
                node.name()
            );
        }
        println!("{}: {} unsupported", case.reference, errs.len());
        refused.insert(case.reference.to_string(), errs.len());
    }
    // every pipeline of LAVA's that basalt builds now runs: secondary media (usb, sata:
    // the removable jobs), NFS roots (deploy nfs, tftp nfsrootfs and persistent_nfs, boot
    // qemu-nfs), U-Boot, QEMU
    for must in [
        "kvm",
        "kvm-inline",
        "uboot-ramdisk",
        "bbb-uboot-interactive",
        "qemu-nfs",
        "uboot",
        "uboot-persistent",
        "cubietruck-removable",
        "cubietruck-removable-with-writer",
        "juno-uboot-removable",
    ] {
        assert_eq!(refused.get(must), Some(&0), "{must}: {refused:?}");
    }
    let unsupported: Vec<_> = refused.iter().filter(|(_, n)| **n > 0).collect();
    assert!(unsupported.is_empty(), "not run yet: {unsupported:?}");
}
