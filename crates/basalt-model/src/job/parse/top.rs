//! The top of a job: its keys, `timeouts`, `visibility`, `priority`, `context`, `metadata`, `secrets`.

use super::*;

/// Keys the server adds to MultiNode sub-jobs; a sub-job is what the dispatcher receives
/// (LAVA does not run its submission gate on it), so they are accepted there only.
pub(super) const SUBJOB_KEYS: &[&str] = &[
    "target_group",
    "group_size",
    "sub_id",
    "role",
    "roles",
    "connection",
    "host_role",
    "description",
];

/// The top-level keys of a job (LAVA's submission gate refuses any other).
pub(super) const TOP_KEYS: &[&str] = &[
    "job_name",
    "device_type",
    "device",
    "worker",
    "timeouts",
    "visibility",
    "priority",
    "context",
    "metadata",
    "secrets",
    "environment",
    "tags",
    "protocols",
    "notify",
    "reboot_to_fastboot",
    "actions",
];

/// Whether a document is a server-made MultiNode sub-job rather than a submission.
pub(super) fn is_subjob(root: &Node) -> bool {
    root.get("target_group").is_some()
        || root
            .path(&["protocols", "lava-multinode", "target_group"])
            .is_some()
}

pub(super) fn read_job(r: &mut Report, root: &Node, subjob: bool) -> Option<Job> {
    if root.is_null() {
        r.error(
            root,
            "",
            "the document is empty: a job is a mapping (job_name, device_type, timeouts, visibility, actions)",
        );
        return None;
    }
    let mut f = Fields::strict(r, root, "")?;
    let job_name = f.req_str(r, "job_name");
    if let (Some(name), Some(n)) = (&job_name, f.opt("job_name")) {
        if name.is_empty() || name.chars().count() > 200 {
            r.error(n, "job_name", "must be 1 to 200 characters");
        }
    }
    let name_1_200 = |f: &mut Fields<'_>, r: &mut Report, key: &str| {
        let v = f.opt_str(r, key);
        if let (Some(s), Some(n)) = (&v, f.opt(key)) {
            if s.is_empty() || s.chars().count() > 200 {
                r.error(n, key, "must be 1 to 200 characters");
            }
        }
        v
    };
    let device_type = name_1_200(&mut f, r, "device_type");
    let device = name_1_200(&mut f, r, "device");
    let worker = name_1_200(&mut f, r, "worker");
    let timeouts = f
        .req(r, "timeouts")
        .map(|n| read_job_timeouts(r, n))
        .unwrap_or_default();
    let visibility = f.req(r, "visibility").and_then(|n| read_visibility(r, n));
    let priority = f
        .opt("priority")
        .and_then(|n| read_priority(r, n))
        .unwrap_or(50);
    let context = f
        .opt("context")
        .map(|n| read_context(r, n, "context"))
        .unwrap_or_default();
    let metadata = f.opt("metadata").cloned();
    if let Some(m) = &metadata {
        check_metadata(r, m);
    }
    let tags = f.opt_list_of_str(r, "tags").unwrap_or_default();
    let secrets = f
        .opt("secrets")
        .map(|n| str_str_map(r, n, "secrets"))
        .unwrap_or_default();
    let environment = f.opt("environment").cloned();
    if let Some(e) = &environment {
        expect_map(r, e, "environment");
    }
    let multinode = f
        .opt("protocols")
        .and_then(|n| read_protocols(r, n, subjob));
    let notify = f.opt("notify").cloned();
    if let Some(n) = &notify {
        check_notify(r, n);
    }
    let reboot_to_fastboot = f.opt_bool(r, "reboot_to_fastboot").unwrap_or(false);
    let actions = f
        .req(r, "actions")
        .map(|n| {
            list(r, n, "actions")
                .iter()
                .enumerate()
                .flat_map(|(i, a)| read_action(r, a, i))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if subjob {
        f.finish_with(r, "the job", SUBJOB_KEYS);
    } else {
        finish_closed(f, r, "the job", TOP_KEYS);
    }

    let multinode_on = root
        .path(&["protocols", "lava-multinode"])
        .and_then(Node::as_map)
        .is_some_and(|m| !m.is_empty());
    if !subjob && multinode_on {
        // LAVA's check_multinode_extras: these belong to the roles of a MultiNode job.
        for key in ["device_type", "environment", "context", "tags"] {
            if let Some((k, v)) = root
                .as_map()
                .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(key)))
            {
                if truthy(v) {
                    r.error(
                        k,
                        key,
                        format!(
                            "'{key}' is not used with multinode: give it to each role under protocols.lava-multinode.roles"
                        ),
                    );
                }
            }
        }
    }
    if !multinode_on && !root.get("device_type").is_some_and(truthy) {
        r.error(
            root,
            "device_type",
            "required key not provided (only multinode jobs may omit it)",
        );
    }
    check_job_wide(r, root, &timeouts, &actions, multinode.as_ref(), subjob);
    Some(Job {
        job_name: job_name?,
        device_type,
        device,
        worker,
        timeouts,
        visibility: visibility?,
        priority,
        context,
        metadata,
        tags,
        secrets,
        environment,
        multinode,
        notify,
        reboot_to_fastboot,
        actions,
    })
}

/// `metadata:` is a mapping with any values; its keys are strings or integers (the gate's
/// `{Any(str, int): object}`; the job schema lets other keys pass as extras).
pub(super) fn check_metadata(r: &mut Report, m: &Node) {
    if !expect_map(r, m, "metadata") {
        return;
    }
    for (k, _) in m.as_map().unwrap_or(&[]) {
        if !matches!(k.value, Value::Str(_) | Value::Int(_) | Value::Bool(_)) {
            r.error(
                k,
                "metadata",
                format!("metadata keys are strings or integers, found {}", k.kind()),
            );
        }
    }
}

/// A mapping of strings to strings (LAVA's `{str: str}`), with LAVA's typing.
pub(super) fn str_str_map(r: &mut Report, n: &Node, path: &str) -> Vec<(String, String)> {
    let Some(entries) = n.as_map() else {
        r.error(n, path, format!("expected a mapping, found {}", n.kind()));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        let Some(key) = text(r, k, path, true) else {
            continue;
        };
        if let Some(val) = text(r, v, &join(path, &key), true) {
            out.push((key, val));
        }
    }
    out
}

pub(super) fn read_job_timeouts(r: &mut Report, n: &Node) -> JobTimeouts {
    let mut t = JobTimeouts::default();
    let Some(mut f) = Fields::strict(r, n, "timeouts") else {
        return t;
    };
    let closed = |r: &mut Report, n: &Node, p: &str| Timeout::parse_job(r, n, p, Rule::Closed);
    t.job = f.req(r, "job").and_then(|n| closed(r, n, "timeouts.job"));
    t.action = f
        .opt("action")
        .and_then(|n| closed(r, n, "timeouts.action"));
    t.connection = f
        .opt("connection")
        .and_then(|n| closed(r, n, "timeouts.connection"));
    t.queue = f.opt("queue").and_then(|n| closed(r, n, "timeouts.queue"));
    t.actions = f
        .opt("actions")
        .map(|n| named_timeouts(r, n, "timeouts.actions", Rule::Closed, true))
        .unwrap_or_default();
    t.connections = f
        .opt("connections")
        .map(|n| named_timeouts(r, n, "timeouts.connections", Rule::Closed, true))
        .unwrap_or_default();
    finish_closed(
        f,
        r,
        "timeouts",
        &[
            "job",
            "action",
            "connection",
            "queue",
            "actions",
            "connections",
        ],
    );
    t
}

/// `{action-name: timeout}`; `named` applies the gate's rule that names are `[a-z-]+`.
pub(super) fn named_timeouts(
    r: &mut Report,
    n: &Node,
    path: &str,
    rule: Rule,
    named: bool,
) -> BTreeMap<String, Timeout> {
    let mut out = BTreeMap::new();
    for (name, k, v) in entries(r, n, path) {
        let p = join(path, &name);
        if named && (name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c == '-')) {
            r.error(
                k,
                &p,
                format!("'{name}' is not an action name (lower-case letters and '-')"),
            );
            continue;
        }
        if let Some(t) = Timeout::parse_job(r, v, &p, rule) {
            out.insert(name, t);
        }
    }
    out
}

pub(super) fn read_visibility(r: &mut Report, n: &Node) -> Option<Visibility> {
    match &n.value {
        Value::Str(s) if s == "public" => Some(Visibility::Public),
        Value::Str(s) if s == "personal" => Some(Visibility::Personal),
        Value::Map(_) => {
            let mut f = Fields::strict(r, n, "visibility")?;
            let groups = f.req(r, "group");
            let groups = groups.and_then(|_| f.opt_list_of_str(r, "group"));
            finish_closed(f, r, "visibility", &["group"]);
            Some(Visibility::Group(groups?))
        }
        _ => {
            r.error(
                n,
                "visibility",
                "expected 'public', 'personal' or {group: [names]}",
            );
            None
        }
    }
}

pub(super) fn read_priority(r: &mut Report, n: &Node) -> Option<u8> {
    match &n.value {
        Value::Str(s) => match s.as_str() {
            "high" => Some(100),
            "medium" => Some(50),
            "low" => Some(0),
            other => {
                one_of(
                    r,
                    n,
                    "priority",
                    "priority",
                    other,
                    &["high", "medium", "low", "0..100"],
                );
                None
            }
        },
        _ => integer(r, n, "priority", 0, 100).map(|i| i as u8),
    }
}

/// `context:`: only LAVA's `CONTEXT_VARIABLES`, each a string, an integer or a list of them.
pub(super) fn read_context(r: &mut Report, n: &Node, path: &str) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    for (key, k, v) in entries(r, n, path) {
        let p = join(path, &key);
        if !CONTEXT_VARIABLES.contains(&key.as_str()) {
            let hint = closest(&key, CONTEXT_VARIABLES)
                .map(|c| format!(" (did you mean '{c}'?)"))
                .unwrap_or_default();
            r.error(
                k,
                &p,
                format!("'{key}' is not one of LAVA's context variables{hint}; the device-type template's other variables belong to the device dictionary"),
            );
            continue;
        }
        let scalar_ok =
            |x: &Node| matches!(x.value, Value::Str(_) | Value::Int(_) | Value::Bool(_));
        let ok = match &v.value {
            Value::Seq(items) => {
                let mut all = true;
                for (i, item) in items.iter().enumerate() {
                    if !scalar_ok(item) {
                        r.error(
                            item,
                            &index(&p, i),
                            format!(
                                "context list items are strings or integers, found {}",
                                item.kind()
                            ),
                        );
                        all = false;
                    }
                }
                all
            }
            _ if scalar_ok(v) => true,
            _ => {
                let at = if v.as_map().is_some() { k } else { v };
                r.error(
                    at,
                    &p,
                    format!(
                        "context values are strings, integers or lists of them, found {}",
                        v.kind()
                    ),
                );
                false
            }
        };
        if ok {
            if let Err(e) = super::qemu_args::check_context(&key, v) {
                r.error(context_fault(v, &key), &p, e);
                continue;
            }
            out.insert(key, v.clone());
        }
    }
    out
}

/// The item of a list-valued context variable (`extra_options`) that holds the refused QEMU
/// word, else the value.
pub(super) fn context_fault<'n>(v: &'n Node, key: &str) -> &'n Node {
    let (Some(items), "extra_options" | "serial" | "vga") = (v.as_seq(), key) else {
        return v;
    };
    let mut words = Vec::new();
    let mut owner = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let split = item
            .scalar_text()
            .and_then(|t| shell_words::split(&t).ok())
            .unwrap_or_default();
        owner.extend(std::iter::repeat_n(i, split.len()));
        words.extend(split);
    }
    match super::qemu_args::check_args_at(&words, super::qemu_args::Files::Placeholders) {
        Err((at, _)) => owner.get(at).and_then(|i| items.get(*i)).unwrap_or(v),
        Ok(()) => v,
    }
}
