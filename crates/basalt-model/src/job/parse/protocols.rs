//! `protocols:`: LAVA's MultiNode roles (and lava-xnbd).

use super::*;

pub(super) fn read_protocols(r: &mut Report, n: &Node, subjob: bool) -> Option<Multinode> {
    let mut f = Fields::strict(r, n, "protocols")?;
    let mn = f
        .opt("lava-multinode")
        .and_then(|m| read_multinode(r, m, subjob));
    if let Some(x) = f.opt("lava-xnbd") {
        if let Some(mut xf) = Fields::strict(r, x, "protocols.lava-xnbd") {
            match xf.req(r, "port") {
                Some(p) if p.as_i64().is_some() || p.as_str() == Some("auto") => {}
                Some(p) => r.error(
                    p,
                    "protocols.lava-xnbd.port",
                    "expected 'auto' or a port number",
                ),
                None => {}
            }
            if let Some(t) = xf.opt("timeout") {
                Timeout::parse_job(r, t, "protocols.lava-xnbd.timeout", Rule::Open);
            }
            xf.finish_with(r, "lava-xnbd", &[]);
        }
        r.warn(
            x,
            "protocols.lava-xnbd",
            "the lava-xnbd protocol is outside basalt's scope; ignored",
        );
    }
    finish_closed(f, r, "protocols", &["lava-multinode", "lava-xnbd"]);
    mn
}

pub(super) fn read_multinode(r: &mut Report, n: &Node, subjob: bool) -> Option<Multinode> {
    let path = "protocols.lava-multinode";
    let mut f = Fields::strict(r, n, path)?;
    let timeout = f
        .opt("timeout")
        .and_then(|t| Timeout::parse_job(r, t, &join(path, "timeout"), Rule::Closed));
    let (role, target_group) = if subjob {
        (f.opt_str(r, "role"), f.opt_str(r, "target_group"))
    } else {
        (None, None)
    };
    let mut roles = Vec::new();
    let rn = if subjob {
        f.opt("roles")
    } else {
        f.req(r, "roles")
    };
    if let Some(rn) = rn {
        let rpath = join(path, "roles");
        let all = entries(r, rn, &rpath);
        let names: Vec<String> = all.iter().map(|(k, _, _)| k.clone()).collect();
        for (name, _, def) in &all {
            if subjob {
                // A sub-job: `roles` maps job ids to roles.
                roles.push((name.clone(), (*def).clone()));
                continue;
            }
            let p = join(&rpath, name);
            check_role(r, def, &p, &names);
            roles.push((name.clone(), (*def).clone()));
        }
    }
    if subjob {
        f.finish_with(
            r,
            "lava-multinode",
            &[
                "group_size",
                "sub_id",
                "request",
                "messageID",
                "message",
                "expect_role",
            ],
        );
    } else {
        finish_closed(f, r, "protocols.lava-multinode", &["roles", "timeout"]);
    }
    Some(Multinode {
        roles,
        role,
        target_group,
        timeout,
        node: n.clone(),
    })
}

/// One role of a MultiNode submission: LAVA's role schema and `_validate_multinode`.
pub(super) fn check_role(r: &mut Report, def: &Node, p: &str, names: &[String]) {
    let Some(mut f) = Fields::strict(r, def, p) else {
        return;
    };
    let connection = f.opt_str(r, "connection");
    let device_type = f.opt_str(r, "device_type");
    if f.req(r, "count").is_some() {
        f.opt_range(r, "count", 0, i64::MAX);
    }
    let host = f.opt("host_role");
    let expect = f.opt("expect_role");
    if device_type.is_none() && connection.is_none() && !f.has("device_type") {
        r.error(
            def,
            &f.sub("device_type"),
            "required key not provided (a role names a device_type, or a connection with host_role and expect_role)",
        );
    }
    if connection.is_some() && device_type.is_none() {
        for key in ["expect_role", "host_role"] {
            if !f.has(key) {
                r.error(
                    def,
                    &f.sub(key),
                    "required key not provided (for a connection role)",
                );
            }
        }
    }
    if let Some(h) = host {
        match h.as_str() {
            Some(h_name) if names.iter().any(|x| x == h_name) => {}
            Some(h_name) => r.error(
                h,
                &f.sub("host_role"),
                format!("'host_role' '{h_name}' does not exist"),
            ),
            None => r.error(h, &f.sub("host_role"), "expected a role name"),
        }
        match expect {
            None => r.error(
                h,
                &f.sub("host_role"),
                "'expect_role' is required when 'host_role' is used",
            ),
            Some(e) => match e.as_str() {
                Some(e_name) if names.iter().any(|x| x == e_name) => {}
                Some(e_name) => r.error(
                    e,
                    &f.sub("expect_role"),
                    format!("'expect_role' '{e_name}' does not exist"),
                ),
                None => r.error(e, &f.sub("expect_role"), "expected a role name"),
            },
        }
    } else if let Some(e) = expect {
        r.error(
            e,
            &f.sub("expect_role"),
            "'expect_role' without 'host_role'",
        );
    }
    let device = f.opt_str(r, "device");
    let worker = f.opt_str(r, "worker");
    for (key, v) in [("device", &device), ("worker", &worker)] {
        if v.is_none() {
            continue;
        }
        let node = f.opt(key).unwrap_or(def);
        if connection.is_some() {
            r.error(
                node,
                &f.sub(key),
                format!("lava-multinode connection roles cannot specify {key}"),
            );
        }
        if device_type.is_none() {
            r.error(node, &f.sub(key), format!("'{key}' requires 'device_type'"));
        }
    }
    if device.is_some() && def.get("count").and_then(Node::as_i64) != Some(1) {
        let node = def.get("count").unwrap_or(def);
        r.error(
            node,
            &f.sub("count"),
            "roles using a specific device must set count to 1",
        );
    }
    if let Some(c) = f.opt("context") {
        read_context(r, c, &f.sub("context"));
    }
    f.opt_list_of_str(r, "tags");
    if let Some(e) = f.opt("environment") {
        expect_map(r, e, &f.sub("environment"));
    }
    f.opt_bool(r, "essential");
    f.opt_str(r, "request");
    if let Some(t) = f.opt("timeout") {
        Timeout::parse_job(r, t, &f.sub("timeout"), Rule::Open);
    }
    f.finish(r, "role");
}
