//! The split against LAVA's corpus (`jobs/multinode/scheduler/`): every submission splits,
//! and where the folder holds LAVA's own generated sub-jobs, ours equal them as YAML values
//! (group uuids aside).

use super::*;
use basalt_model::yaml::load;
use std::path::PathBuf;

fn corpus() -> PathBuf {
    if let Ok(p) = std::env::var("BASALT_LAVA_CORPUS") {
        return PathBuf::from(p);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [
        manifest.join("../../../shared/conformance/lava"),
        manifest.join("../../shared/conformance/lava"),
        PathBuf::from("/work/shared/conformance/lava"),
    ]
    .into_iter()
    .find(|c| c.join("jobs/multinode/scheduler").is_dir())
    .unwrap_or_else(|| panic!("LAVA conformance corpus not found: set BASALT_LAVA_CORPUS"))
}

fn read(name: &str) -> Node {
    let path = corpus().join("jobs/multinode/scheduler").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    load(&text).unwrap()
}

/// A document as PyYAML would hold it (a repeated key: the last wins), without the group's
/// name and the sub-job's place (LAVA's fixtures carry placeholders for both).
fn normal(n: &Node) -> Node {
    match &n.value {
        Value::Map(entries) => {
            let mut out: Vec<(Node, Node)> = Vec::new();
            for (k, v) in entries {
                if matches!(k.as_str(), Some("target_group" | "sub_id")) {
                    continue;
                }
                let v = normal(v);
                match out.iter_mut().find(|(x, _)| x.data_eq(k)) {
                    Some(e) => e.1 = v,
                    None => out.push((k.clone(), v)),
                }
            }
            Node::new(Value::Map(out))
        }
        Value::Seq(items) => Node::new(Value::Seq(items.iter().map(normal).collect())),
        _ => n.clone(),
    }
}

fn assert_same(ours: &Node, lavas: &Node, what: &str) {
    let (a, b) = (normal(ours), normal(lavas));
    assert!(
        a.data_eq(&b),
        "{what}: ours\n{}\nLAVA's\n{}",
        basalt_model::yaml::emit_document(&a),
        basalt_model::yaml::emit_document(&b)
    );
}

fn sub<'s>(s: &'s Split, role: &str) -> Vec<&'s SubJob> {
    s.jobs.iter().filter(|j| j.role == role).collect()
}

#[test]
fn kvm_multinode_splits_as_lava_does() {
    let s = split(&read("kvm-multinode.yaml"), "g-1").unwrap();
    assert_eq!(s.group_size, 2);
    let roles: Vec<(&str, u32)> = s.jobs.iter().map(|j| (j.role.as_str(), j.sub_id)).collect();
    assert_eq!(roles, [("client", 0), ("server", 1)]);
    let client = sub(&s, "client")[0];
    assert_eq!(client.device_type.as_deref(), Some("qemu"));
    assert_eq!(client.tags, ["usb-flash", "usb-eth"]);
    assert_same(
        &client.definition,
        &read("kvm-multinode-client.yaml"),
        "client",
    );
    let server = sub(&s, "server")[0];
    assert_eq!(server.tags, ["testtag"]);
    assert_same(
        &server.definition,
        &read("kvm-multinode-server.yaml"),
        "server",
    );
    // the group's name and places are ours
    let p = server
        .definition
        .path(&["protocols", "lava-multinode"])
        .unwrap();
    assert_eq!(p.get("target_group").and_then(Node::as_str), Some("g-1"));
    assert_eq!(p.get("sub_id").and_then(Node::as_i64), Some(1));
    assert_eq!(p.get("group_size").and_then(Node::as_i64), Some(2));
}

#[test]
fn qemu_ssh_guest_splits_as_lava_does() {
    let s = split(&read("qemu-ssh-guest.yaml"), "g").unwrap();
    assert_eq!(s.group_size, 3);
    let roles: Vec<(&str, u32)> = s.jobs.iter().map(|j| (j.role.as_str(), j.sub_id)).collect();
    assert_eq!(roles, [("host", 0), ("guest", 1), ("guest", 2)]);
    assert_same(&s.jobs[0].definition, &read("qemu-ssh-parent.yaml"), "host");
    assert_eq!(
        s.jobs[0]
            .definition
            .path(&["protocols", "lava-multinode", "sub_id"])
            .and_then(Node::as_i64),
        Some(0)
    );
    assert_same(
        &s.jobs[1].definition,
        &read("qemu-ssh-guest-1.yaml"),
        "guest",
    );
    assert_same(
        &s.jobs[2].definition,
        &read("qemu-ssh-guest-1.yaml"),
        "guest",
    );
    assert_eq!(s.jobs[1].connection.as_deref(), Some("ssh"));
    // basalt does not schedule dynamic connections yet, and says so
    let e = check_supported(&s).unwrap_err();
    assert!(e.to_string().contains("not supported yet"), "{e}");
}

/// qemu-ssh-guest-2.yaml is LAVA's hand-edited variant of guest-1 (a test name added, the
/// expect_role taken out, for its dispatcher tests); it still names the same role,
/// connection and group.
#[test]
fn qemu_ssh_guest_2_is_the_same_role() {
    let s = split(&read("qemu-ssh-guest.yaml"), "g").unwrap();
    let lava = read("qemu-ssh-guest-2.yaml");
    let ours = &s.jobs[2].definition;
    for path in [
        &["connection"][..],
        &["host_role"],
        &["protocols", "lava-multinode", "role"],
        &["protocols", "lava-multinode", "group_size"],
        &["protocols", "lava-multinode", "timeout"],
    ] {
        assert!(
            ours.path(path).unwrap().data_eq(lava.path(path).unwrap()),
            "{path:?}"
        );
    }
    assert_eq!(
        ours.get("actions")
            .and_then(Node::as_seq)
            .map(<[Node]>::len),
        lava.get("actions")
            .and_then(Node::as_seq)
            .map(<[Node]>::len)
    );
}

/// Every submission in the folder (the files with `roles`) that LAVA accepts splits: role ×
/// count sub-jobs, each with only its role's actions, `role:` a string.
#[test]
fn every_corpus_submission_splits() {
    let dir = corpus().join("jobs/multinode/scheduler");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let doc = load(&text).unwrap();
        if !is_multinode(&doc) {
            continue;
        }
        seen += 1;
        let name = path.display().to_string();
        basalt_model::job::parse_job(&name, &text).unwrap_or_else(|r| panic!("{r}"));
        let s = split(&doc, "g").unwrap_or_else(|e| panic!("{name}: {e}"));
        let roles = doc.path(&["protocols", "lava-multinode", "roles"]).unwrap();
        let want: i64 = roles
            .as_map()
            .unwrap()
            .iter()
            .map(|(_, r)| r.get("count").and_then(Node::as_i64).unwrap())
            .sum();
        assert_eq!(s.jobs.len() as i64, want, "{name}");
        assert_eq!(i64::from(s.group_size), want, "{name}");
        for (i, j) in s.jobs.iter().enumerate() {
            assert_eq!(j.sub_id as usize, i, "{name}");
            let role_def = roles.get(&j.role).unwrap();
            assert_eq!(
                j.device_type.as_deref(),
                role_def.get("device_type").and_then(Node::as_str),
                "{name}"
            );
            for a in j.definition.get("actions").and_then(Node::as_seq).unwrap() {
                for (_, block) in a.as_map().unwrap() {
                    assert_eq!(
                        block.get("role").and_then(Node::as_str),
                        Some(j.role.as_str())
                    );
                }
            }
            // each sub-job is a valid single-node job for the parser
            let text = basalt_model::yaml::emit_document(&j.definition);
            basalt_model::job::parse_job_as(
                "sub.yaml",
                &text,
                basalt_model::job::Reading::Dispatch,
            )
            .unwrap_or_else(|r| panic!("{name} {}: {r}\n{text}", j.role));
        }
    }
    assert!(seen >= 6, "only {seen} submissions found in {dir:?}");
}

#[test]
fn bad_submissions_get_clear_errors() {
    let base = "job_name: x\nvisibility: public\ntimeouts: {job: {minutes: 1}}\n";
    let cases = [
        (
            "device_type: qemu\nprotocols: {lava-multinode: {roles: {a: {device_type: qemu, count: 1}}}}\nactions: [{boot: {role: [a], method: qemu}}]\n",
            "not allowed at the top level",
        ),
        (
            "protocols: {lava-multinode: {roles: {a: {device_type: qemu, count: 1}, b: {device_type: qemu, count: 1}}}}\nactions: [{boot: {role: [a], method: qemu}}]\n",
            "role 'b' has no actions",
        ),
        (
            "protocols: {lava-multinode: {roles: {a: {device_type: qemu, count: 1}}}}\nactions: [{boot: {method: qemu}}]\n",
            "did not find a role in action 'boot'",
        ),
        (
            "protocols: {lava-multinode: {roles: {h: {device_type: qemu, count: 2}, g: {connection: ssh, count: 1, host_role: h, expect_role: h}}}}\nactions: [{boot: {role: [h, g], method: qemu}}]\n",
            "must be 1",
        ),
        (
            "protocols: {lava-multinode: {roles: {a: {device_type: qemu, count: 0}}}}\nactions: [{boot: {role: [a], method: qemu}}]\n",
            "count 0",
        ),
    ];
    for (body, want) in cases {
        let doc = load(&format!("{base}{body}")).unwrap();
        let e = split(&doc, "g").unwrap_err().to_string();
        assert!(e.contains(want), "{body}: {e}");
    }
    let single = load("job_name: x\ndevice_type: qemu\nactions: []\n").unwrap();
    assert!(!is_multinode(&single));
    assert_eq!(split(&single, "g").unwrap_err(), SplitError::NotMultinode);
}

#[test]
fn roles_are_injected_as_ids() {
    let s = split(&read("kvm-multinode.yaml"), "g").unwrap();
    let text = basalt_model::yaml::emit_document(&s.jobs[0].definition);
    let out = inject_roles(&text, &[(12, "client".into()), (13, "server".into())]).unwrap();
    let doc = load(&out).unwrap();
    let roles = doc.path(&["protocols", "lava-multinode", "roles"]).unwrap();
    assert_eq!(roles.get("12").and_then(Node::as_str), Some("client"));
    assert_eq!(roles.get("13").and_then(Node::as_str), Some("server"));
    assert!(load(&out).unwrap().get("actions").is_some());
    basalt_model::job::parse_job_as("sub.yaml", &out, basalt_model::job::Reading::Dispatch)
        .unwrap_or_else(|r| panic!("{r}"));
    assert!(inject_roles("job_name: x\n", &[]).is_err());
}

#[test]
fn target_groups_are_uuid4() {
    let a = new_target_group().unwrap();
    assert_eq!(a.len(), 36);
    assert_eq!(&a[14..15], "4");
    assert_ne!(a, new_target_group().unwrap());
}
