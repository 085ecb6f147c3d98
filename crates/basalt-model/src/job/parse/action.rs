//! Action blocks: the keys every block shares, the entries of `actions:`, `command`, and the checks that span the whole job.

use super::*;

pub(super) fn read_common(r: &mut Report, f: &mut Fields<'_>) -> Common {
    let mut c = Common {
        mark: f.node().mark,
        ..Common::default()
    };
    c.namespace = f.opt_str(r, "namespace");
    if let (Some(ns), Some(node)) = (&c.namespace, f.opt("namespace")) {
        if ns == "common" || ns == "docker-test-shell" {
            r.error(
                node,
                &f.sub("namespace"),
                "'common' and 'docker-test-shell' are reserved namespace names",
            );
        }
    }
    c.connection_namespace = f.opt_str(r, "connection-namespace");
    // A list in a submission (checked with the job); sub-jobs carry one role as a string.
    c.role = f.opt_str_list(r, "role").unwrap_or_default();
    c.timeout = f
        .opt("timeout")
        .and_then(|n| Timeout::parse_job(r, n, &f.sub("timeout"), Rule::Closed));
    let tpath = f.sub("timeouts");
    c.timeouts = f
        .opt("timeouts")
        .map(|n| named_timeouts(r, n, &tpath, Rule::Open, false))
        .unwrap_or_default();
    let max = i64::from(u32::MAX);
    c.repeat = f.opt_range(r, "repeat", 1, max).map(|i| i as u32);
    c.failure_retry = f.opt_range(r, "failure_retry", 1, max).map(|i| i as u32);
    c.failure_retry_interval = f
        .opt_range(r, "failure_retry_interval", 1, max)
        .map(|i| i as u32);
    c.protocols = f.opt("protocols").cloned();
    if let (Some(_), Some(_)) = (c.repeat, c.failure_retry) {
        r.warn(
            f.node(),
            &f.path,
            "'repeat' and 'failure_retry' together: basalt retries each repetition",
        );
    }
    c
}

/// One entry of `actions:`: a mapping of deploy, boot, test or command to its block. LAVA
/// takes several keys in one entry and runs them in order, so basalt does too.
pub(super) fn read_action(r: &mut Report, n: &Node, i: usize) -> Vec<ActionBlock> {
    let path = index("actions", i);
    let Some(items) = n.as_map() else {
        r.error(
            n,
            &path,
            format!(
                "an action is a mapping of deploy, boot, test or command to its block, found {}",
                n.kind()
            ),
        );
        return Vec::new();
    };
    if items.is_empty() {
        r.error(
            n,
            &path,
            "an empty action: give deploy, boot, test or command",
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for (k, v) in items {
        let kind = k.as_str().unwrap_or("");
        let p = join(&path, kind);
        let block = match kind {
            "deploy" => read_deploy(r, v, &p).map(ActionBlock::Deploy),
            "boot" => read_boot(r, v, &p).map(ActionBlock::Boot),
            "test" => read_test(r, v, &p).map(ActionBlock::Test),
            "command" => read_command(r, v, &p).map(ActionBlock::Command),
            "repeat" => {
                r.error(
                    k,
                    &p,
                    "repeat blocks are not supported (as in LAVA); use 'repeat: N' inside an action",
                );
                None
            }
            other => {
                r.error(
                    k,
                    &p,
                    format!(
                        "unknown action '{other}'; expected one of deploy, boot, test, command"
                    ),
                );
                None
            }
        };
        if let Some(mut block) = block {
            block.common_mut().index = i;
            out.push(block);
        }
    }
    out
}

pub(super) fn read_command(r: &mut Report, n: &Node, path: &str) -> Option<Command> {
    let mut f = Fields::strict(r, n, path)?;
    let common = read_common(r, &mut f);
    let name = f.req_str(r, "name");
    f.finish(r, "command");
    Some(Command {
        common,
        name: name?,
    })
}

/// Checks that span the whole job: timeouts against the job timeout, multinode roles,
/// namespaces and unique test names.
pub(super) fn check_job_wide(
    r: &mut Report,
    root: &Node,
    t: &JobTimeouts,
    actions: &[ActionBlock],
    mn: Option<&Multinode>,
    subjob: bool,
) {
    // LAVA's check_job_timeouts: no global or block timeout beyond the job's.
    let job_secs = t.job.map(|j| j.secs);
    let too_long = |secs: u64| job_secs.is_some_and(|j| secs > j);
    let tnode = root.get("timeouts");
    let tn = tnode.unwrap_or(root);
    for (name, to) in [("action", t.action), ("connection", t.connection)] {
        if to.is_some_and(|x| too_long(x.secs)) {
            let node = tn.get(name).unwrap_or(tn);
            r.error(
                node,
                &join("timeouts", name),
                "timeout is larger than the job timeout",
            );
        }
    }
    for (group, map) in [("actions", &t.actions), ("connections", &t.connections)] {
        for (name, to) in map {
            if too_long(to.secs) {
                let node = tn.get(group).and_then(|g| g.key_node(name)).unwrap_or(tn);
                r.error(
                    node,
                    &format!("timeouts.{group}.{name}"),
                    "timeout is larger than the job timeout",
                );
            }
        }
    }
    let action_nodes = root.get("actions").and_then(Node::as_seq).unwrap_or(&[]);
    let any_namespace = actions.iter().any(|a| a.common().namespace.is_some());
    let is_multinode = mn.is_some_and(|m| !m.roles.is_empty() || m.role.is_some());
    let submission = mn.is_some_and(|m| m.target_group.is_none() && m.role.is_none())
        && root
            .path(&["protocols", "lava-multinode"])
            .and_then(Node::as_map)
            .is_some_and(|m| !m.is_empty())
        && !subjob;
    for a in actions {
        let mut names: BTreeSet<(String, String)> = BTreeSet::new();
        let c = a.common();
        let i = c.index;
        let path = format!("actions[{i}].{}", a.kind());
        let node = action_nodes
            .get(i)
            .and_then(|x| x.get(a.kind()))
            .unwrap_or(root);
        if let Some(to) = c.timeout {
            if too_long(to.secs) {
                let tnode = node.get("timeout").unwrap_or(node);
                r.error(
                    tnode,
                    &join(&path, "timeout"),
                    "action timeout is larger than the job timeout",
                );
            }
        }
        if any_namespace && c.namespace.is_none() {
            r.error(
                node,
                &path,
                "when one action has a 'namespace', every action needs one",
            );
        }
        if !subjob {
            if let Some(role) = node.get("role").filter(|r| r.as_str().is_some()) {
                r.error(
                    role,
                    &join(&path, "role"),
                    "expected a list, found a string",
                );
            }
        }
        // LAVA's check_multinode_roles looks for the key itself.
        if submission
            && node
                .as_map()
                .is_some_and(|m| !m.iter().any(|(k, _)| k.as_str() == Some("role")))
        {
            r.error(node, &path, "every action of a multinode job needs 'role'");
        }
        if let ActionBlock::Test(Test {
            kind: TestKind::Definitions(defs),
            ..
        }) = a
        {
            let ns = c.namespace.clone().unwrap_or_default();
            let dnodes = node
                .get("definitions")
                .and_then(Node::as_seq)
                .unwrap_or(&[]);
            for (k, d) in defs.iter().enumerate() {
                let dn = dnodes.get(k).and_then(|x| x.get("name")).unwrap_or(node);
                let dpath = format!("{path}.definitions[{k}].name");
                if d.name == "lava" {
                    r.warn(
                        dn,
                        &dpath,
                        "'lava' is reserved for the dispatcher's own results (LAVA accepts the job; its dispatcher and basalt's refuse to run it)",
                    );
                }
                let roles = if c.role.is_empty() {
                    vec![String::new()]
                } else {
                    c.role.clone()
                };
                for role in roles {
                    if !names.insert((format!("{ns}/{role}"), d.name.clone())) {
                        r.warn(
                            dn,
                            &dpath,
                            format!(
                                "test definition names need to be unique: '{}' is used twice (LAVA accepts the job; its dispatcher and basalt's refuse to run it)",
                                d.name
                            ),
                        );
                    }
                }
            }
        }
    }
    if is_multinode {
        if let Some(m) = mn {
            let roles: Vec<&str> = m.roles.iter().map(|(k, _)| k.as_str()).collect();
            if m.role.is_none() {
                for a in actions {
                    let i = a.common().index;
                    for role in &a.common().role {
                        if !roles.contains(&role.as_str()) {
                            let node = action_nodes.get(i).unwrap_or(root);
                            r.warn(node, &format!("actions[{i}].{}.role", a.kind()), format!("role '{role}' is not defined in protocols.lava-multinode.roles: the action runs nowhere"));
                        }
                    }
                }
            }
        }
    }
}
