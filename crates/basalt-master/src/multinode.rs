//! MultiNode submissions split into sub-jobs, as LAVA's
//! `lava_scheduler_app/utils.py::split_multinode_yaml` splits them (lava-formats.md §4.2), with
//! the server-side checks of `schema._validate_multinode` and `models._pipeline_protocols`
//! that the job parser does not make (§4.1), and the roles map injected into a sub-job once
//! its whole group has devices (`transition_multinode_jobs`).
//!
//! Pure: YAML trees in, YAML trees out; the engine stores and schedules the result.

use basalt_model::yaml::{Node, Value};

/// Top-level keys every sub-job gets a copy of (LAVA's `copies`).
const COPIES: &[&str] = &[
    "job_name",
    "timeouts",
    "priority",
    "visibility",
    "notify",
    "metadata",
    "reboot_to_fastboot",
    "secrets",
];

/// Role keys moved to the sub-job's top level (LAVA's `scheduling`).
const SCHEDULING: &[&str] = &["device_type", "connection", "host_role", "context"];

/// Role keys that go nowhere (LAVA's `maps`: `count` is spent on the number of sub-jobs).
const DROPPED: &[&str] = &["count", "roles", "role"];

/// Top-level keys a MultiNode submission may not have: they belong to its roles.
const FORBIDDEN_TOP: &[&str] = &["device_type", "context", "tags", "environment"];

/// Why a submission cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("not a MultiNode submission: it has no protocols.lava-multinode.roles")]
    NotMultinode,
    #[error("invalid MultiNode submission: {0}")]
    Invalid(String),
    #[error("MultiNode role '{role}': {what} is not supported yet")]
    Unsupported { role: String, what: String },
}

/// One sub-job of a split submission.
#[derive(Debug, Clone)]
pub struct SubJob {
    /// Its role.
    pub role: String,
    /// Its place in the group, 0.. (LAVA's `protocols.lava-multinode.sub_id`).
    pub sub_id: u32,
    /// Its definition (a single-node job with `protocols.lava-multinode`).
    pub definition: Node,
    /// The role's `device_type`; `None` for a dynamic connection.
    pub device_type: Option<String>,
    /// The role's `device` pin.
    pub device: Option<String>,
    /// The role's `worker` pin.
    pub worker: Option<String>,
    /// The role's `tags`.
    pub tags: Vec<String>,
    /// The role's `connection` (a dynamic connection such as `ssh` runs on its host role's
    /// device, not on one of its own).
    pub connection: Option<String>,
    /// The role is essential: its failure ends the group.
    pub essential: bool,
}

/// A submission split into its group.
#[derive(Debug, Clone)]
pub struct Split {
    /// The group's name (`target_group`).
    pub target_group: String,
    /// Σ count over the roles.
    pub group_size: u32,
    /// Every sub-job, in LAVA's order: roles in document order, `count` of each.
    pub jobs: Vec<SubJob>,
}

/// Whether a job definition is a MultiNode submission (`protocols.lava-multinode.roles`).
pub fn is_multinode(definition: &Node) -> bool {
    definition
        .path(&["protocols", "lava-multinode", "roles"])
        .is_some()
}

fn key(k: &str) -> Node {
    Node::str(k)
}

fn get_map<'n>(n: &'n Node, what: &str) -> Result<&'n [(Node, Node)], SplitError> {
    n.as_map()
        .ok_or_else(|| SplitError::Invalid(format!("{what} should be a mapping")))
}

fn set(map: &mut Vec<(Node, Node)>, k: &str, v: Node) {
    match map.iter_mut().find(|(x, _)| x.as_str() == Some(k)) {
        Some(entry) => entry.1 = v,
        None => map.push((key(k), v)),
    }
}

fn str_list(n: Option<&Node>) -> Vec<String> {
    match n.map(|n| &n.value) {
        Some(Value::Seq(items)) => items.iter().filter_map(Node::scalar_text).collect(),
        Some(Value::Str(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// A role while splitting: its name, count, sub-job top level (no actions yet), definition.
type RoleJob<'n> = (String, u32, Vec<(Node, Node)>, &'n Node);

/// Splits `submission` into its sub-jobs for group `target_group`, as LAVA does.
pub fn split(submission: &Node, target_group: &str) -> Result<Split, SplitError> {
    get_map(submission, "a job definition")?;
    let mn = submission
        .path(&["protocols", "lava-multinode"])
        .ok_or(SplitError::NotMultinode)?;
    let mn_map = get_map(mn, "protocols.lava-multinode")?;
    let roles_node = mn.get("roles").ok_or(SplitError::NotMultinode)?;
    let roles = get_map(roles_node, "protocols.lava-multinode.roles")?;
    for k in FORBIDDEN_TOP {
        if submission.get(k).is_some() {
            return Err(SplitError::Invalid(format!(
                "'{k}' is not allowed at the top level of a MultiNode job: set it in each role"
            )));
        }
    }
    if roles.is_empty() {
        return Err(SplitError::Invalid("no roles".into()));
    }

    // per role: name, count, the sub-job's top-level mapping (without actions)
    let mut group_size: u64 = 0;
    let mut per_role: Vec<RoleJob> = Vec::new();
    for (name, value) in roles {
        let name = name
            .scalar_text()
            .ok_or_else(|| SplitError::Invalid("a role name should be a string".into()))?;
        let fields = get_map(value, &format!("role '{name}'"))?;
        let count = match value.get("count").map(|c| &c.value) {
            Some(Value::Int(c)) if *c >= 0 => u32::try_from(*c).map_err(|_| {
                SplitError::Invalid(format!("role '{name}': count {c} is too large"))
            })?,
            Some(_) => {
                return Err(SplitError::Invalid(format!(
                    "role '{name}': count should be an integer ≥ 0"
                )))
            }
            None => return Err(SplitError::Invalid(format!("role '{name}': no count"))),
        };
        group_size += u64::from(count);
        if value.get("device_type").is_some() && value.get("connection").is_some() {
            return Err(SplitError::Invalid(format!(
                "role '{name}': a role has either a device_type or a connection, not both"
            )));
        }
        let mut job: Vec<(Node, Node)> = Vec::new();
        for k in COPIES {
            if let Some(v) = submission.get(k) {
                job.push((key(k), v.clone()));
            }
        }
        for k in SCHEDULING {
            if let Some(v) = value.get(k) {
                job.push((key(k), v.clone()));
            }
        }
        let mut params: Vec<(Node, Node)> = vec![
            (key("target_group"), Node::str(target_group)),
            (key("role"), Node::str(name.clone())),
            (key("group_size"), Node::new(Value::Int(0))),
            (key("sub_id"), Node::new(Value::Int(0))),
        ];
        for (k, v) in fields {
            let Some(ks) = k.as_str() else {
                return Err(SplitError::Invalid(format!(
                    "role '{name}': keys should be strings"
                )));
            };
            if DROPPED.contains(&ks) || SCHEDULING.contains(&ks) {
                continue;
            }
            set(&mut params, ks, v.clone());
        }
        // every other lava-multinode key (the poll `timeout`) overrides the role's
        for (k, v) in mn_map {
            let Some(ks) = k.as_str() else { continue };
            if ks == "roles" || ks == "role" {
                continue;
            }
            set(&mut params, ks, v.clone());
        }
        let mut protocols = vec![(key("lava-multinode"), Node::new(Value::Map(params)))];
        if let Some(Value::Map(others)) = submission.get("protocols").map(|p| &p.value) {
            for (k, v) in others {
                if k.as_str() != Some("lava-multinode") {
                    protocols.push((k.clone(), v.clone()));
                }
            }
        }
        job.push((key("protocols"), Node::new(Value::Map(protocols))));
        per_role.push((name, count, job, value));
    }
    let group_size = u32::try_from(group_size)
        .map_err(|_| SplitError::Invalid("the group is too large".into()))?;
    if group_size == 0 {
        return Err(SplitError::Invalid("every role has count 0".into()));
    }

    // a host role hosts exactly one device
    for (name, _, _, value) in &per_role {
        if let Some(host) = value.get("host_role").and_then(Node::as_str) {
            match per_role.iter().find(|(n, ..)| n == host) {
                Some((_, 1, ..)) => {}
                Some(_) => {
                    return Err(SplitError::Invalid(format!(
                        "role '{name}': the count for a role designated as a host_role ('{host}') must be 1"
                    )))
                }
                None => {
                    return Err(SplitError::Invalid(format!(
                        "role '{name}': host_role '{host}' does not exist"
                    )))
                }
            }
        }
    }

    // actions, in order, per role; each action must name its roles
    let actions = match submission.get("actions").map(|a| &a.value) {
        Some(Value::Seq(a)) => a.as_slice(),
        _ => return Err(SplitError::Invalid("no actions list".into())),
    };
    let mut action_roles: Vec<Vec<String>> = Vec::with_capacity(actions.len());
    for action in actions {
        let entries = get_map(action, "an action")?;
        let mut names = Vec::new();
        for (k, v) in entries {
            let kname = k.scalar_text().unwrap_or_default();
            let Some(role) = v.get("role") else {
                return Err(SplitError::Invalid(format!(
                    "did not find a role in action '{kname}', check for consistent use of whitespace indents"
                )));
            };
            names.extend(str_list(Some(role)));
        }
        action_roles.push(names);
    }

    let mut jobs = Vec::with_capacity(group_size as usize);
    let mut sub_id: u32 = 0;
    for (name, count, job, value) in per_role {
        let mut mine = Vec::new();
        for (action, names) in actions.iter().zip(&action_roles) {
            if !names.contains(&name) {
                continue;
            }
            let mut a = action.clone();
            if let Value::Map(entries) = &mut a.value {
                for (_, block) in entries.iter_mut() {
                    if let Value::Map(fields) = &mut block.value {
                        set(fields, "role", Node::str(name.clone()));
                    }
                }
            }
            mine.push(a);
        }
        if mine.is_empty() && count > 0 {
            return Err(SplitError::Invalid(format!("role '{name}' has no actions")));
        }
        let connection = value.get("connection").and_then(Node::scalar_text);
        let essential = value.get("essential").and_then(Node::as_bool) == Some(true);
        for _ in 0..count {
            let mut def = job.clone();
            if let Some((_, p)) = def
                .iter_mut()
                .find(|(k, _)| k.as_str() == Some("protocols"))
            {
                if let Value::Map(ps) = &mut p.value {
                    if let Some((_, m)) = ps.first_mut() {
                        if let Value::Map(params) = &mut m.value {
                            set(
                                params,
                                "group_size",
                                Node::new(Value::Int(group_size.into())),
                            );
                            set(params, "sub_id", Node::new(Value::Int(sub_id.into())));
                        }
                    }
                }
            }
            def.push((key("actions"), Node::new(Value::Seq(mine.clone()))));
            jobs.push(SubJob {
                role: name.clone(),
                sub_id,
                definition: Node::new(Value::Map(def)),
                device_type: value.get("device_type").and_then(Node::scalar_text),
                device: value.get("device").and_then(Node::scalar_text),
                worker: value.get("worker").and_then(Node::scalar_text),
                tags: str_list(value.get("tags")),
                connection: connection.clone(),
                essential,
            });
            sub_id += 1;
        }
    }
    Ok(Split {
        target_group: target_group.to_string(),
        group_size,
        jobs,
    })
}

/// Refuses what basalt's scheduler does not do yet: dynamic-connection roles
/// (`connection: ssh` with `host_role`), which LAVA runs on their host role's worker.
pub fn check_supported(split: &Split) -> Result<(), SplitError> {
    for j in &split.jobs {
        if let Some(c) = &j.connection {
            return Err(SplitError::Unsupported {
                role: j.role.clone(),
                what: format!("a dynamic connection (connection: {c}, host_role)"),
            });
        }
        if j.device_type.is_none() {
            return Err(SplitError::Invalid(format!(
                "role '{}' has no device_type",
                j.role
            )));
        }
    }
    Ok(())
}

/// The sub-job `definition` (YAML text) with `protocols.lava-multinode.roles` set to the
/// group's `{"<job id>": "<role>"}` (ids as strings), as LAVA's `transition_multinode_jobs`.
pub fn inject_roles(definition: &str, roles: &[(u64, String)]) -> Result<String, SplitError> {
    let mut doc = basalt_model::yaml::load(definition)
        .map_err(|e| SplitError::Invalid(format!("sub-job definition: {e}")))?;
    let map: Vec<(Node, Node)> = roles
        .iter()
        .map(|(id, role)| (Node::str(id.to_string()), Node::str(role.clone())))
        .collect();
    let Value::Map(top) = &mut doc.value else {
        return Err(SplitError::Invalid(
            "sub-job definition is not a mapping".into(),
        ));
    };
    let protocols = top
        .iter_mut()
        .find(|(k, _)| k.as_str() == Some("protocols"))
        .map(|(_, v)| v);
    let params = protocols.and_then(|p| match &mut p.value {
        Value::Map(ps) => ps
            .iter_mut()
            .find(|(k, _)| k.as_str() == Some("lava-multinode"))
            .map(|(_, v)| v),
        _ => None,
    });
    match params.map(|p| &mut p.value) {
        Some(Value::Map(params)) => set(params, "roles", Node::new(Value::Map(map))),
        _ => {
            return Err(SplitError::Invalid(
                "sub-job definition has no protocols.lava-multinode".into(),
            ))
        }
    }
    Ok(basalt_model::yaml::emit_document(&doc))
}

/// A new group name: a random UUID version 4, as LAVA's `uuid.uuid4()` prints it.
pub fn new_target_group() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

#[cfg(test)]
mod tests;
