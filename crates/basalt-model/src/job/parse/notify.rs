//! `notify:`: criteria, recipients, callbacks, compare.

use super::*;

/// `notify:`: LAVA's gate and job schema, and the recipient checks of its submission.
pub(super) fn check_notify(r: &mut Report, n: &Node) {
    let Some(mut f) = Fields::strict(r, n, "notify") else {
        return;
    };
    if let Some(c) = f.req(r, "criteria") {
        if let Some(mut cf) = Fields::strict(r, c, "notify.criteria") {
            if let Some(s) = cf.req(r, "status") {
                if let Some(status) = text(r, s, "notify.criteria.status", true) {
                    one_of(
                        r,
                        s,
                        "notify.criteria.status",
                        "notify status",
                        &status,
                        &[
                            "all",
                            "finished",
                            "running",
                            "complete",
                            "canceled",
                            "incomplete",
                        ],
                    );
                }
            }
            cf.opt_str(r, "dependency_query");
            if let Some(t) = cf.opt("type") {
                enum_str(r, t, "notify.criteria.type", &["progression", "regression"]);
            }
            cf.finish(r, "notify criteria");
        }
    }
    if let Some(v) = f.opt("verbosity") {
        enum_str(
            r,
            v,
            "notify.verbosity",
            &["verbose", "quiet", "status-only"],
        );
    }
    if let Some(rs) = f.opt("recipients") {
        let rpath = "notify.recipients";
        for (i, item) in list(r, rs, rpath).iter().enumerate() {
            let ip = index(rpath, i);
            let Some(mut rf) = Fields::strict(r, item, &ip) else {
                continue;
            };
            if let Some(to) = rf.req(r, "to") {
                let key = item.key_node("to").unwrap_or(to);
                check_recipient(r, to, key, &rf.sub("to"));
            }
            finish_closed(rf, r, "a recipient", &["to"]);
        }
    }
    if f.has("callback") && f.has("callbacks") {
        let node = n.key_node("callbacks").unwrap_or(n);
        r.error(
            node,
            "notify.callbacks",
            "'callback' and 'callbacks' are exclusive",
        );
    }
    if let Some(cb) = f.opt("callback") {
        check_callback(r, cb, "notify.callback");
    }
    if let Some(cbs) = f.opt("callbacks") {
        for (i, cb) in list(r, cbs, "notify.callbacks").iter().enumerate() {
            check_callback(r, cb, &index("notify.callbacks", i));
        }
    }
    if let Some(c) = f.opt("compare") {
        if let Some(mut cf) = Fields::strict(r, c, "notify.compare") {
            cf.opt_list_of_str(r, "blacklist");
            if let Some(q) = cf.opt("query") {
                let qpath = cf.sub("query");
                if let Some(mut qf) = Fields::strict(r, q, &qpath) {
                    if qf.has("entity") {
                        qf.req_str(r, "entity");
                        if let Some(cond) = qf.opt("conditions") {
                            str_str_map(r, cond, &qf.sub("conditions"));
                        }
                        finish_closed(qf, r, "a compare query", &["entity", "conditions"]);
                    } else {
                        qf.req_str(r, "username");
                        qf.req_str(r, "name");
                        finish_closed(qf, r, "a compare query", &["username", "name"]);
                    }
                }
            }
            cf.finish(r, "notify compare");
        }
    }
    f.finish(r, "notify");
}

/// `notify.recipients[].to`: method email or irc, with an address, a handle or a user.
pub(super) fn check_recipient(r: &mut Report, to: &Node, key: &Node, path: &str) {
    let Some(mut f) = Fields::strict(r, to, path) else {
        return;
    };
    let method = f
        .req(r, "method")
        .and_then(|m| enum_str(r, m, &join(path, "method"), &["email", "irc"]));
    let user = f.opt_str(r, "user");
    let email = f.opt_str(r, "email");
    let handle = f.opt_str(r, "handle");
    f.opt_str(r, "server");
    finish_closed(
        f,
        r,
        "a recipient's 'to'",
        &["method", "user", "email", "server", "handle"],
    );
    match method.as_deref() {
        Some("email") if email.is_none() && user.is_none() => r.error(
            key,
            path,
            "no valid user or email address specified (give 'email' or 'user')",
        ),
        Some("irc") if handle.is_none() && user.is_none() => r.error(
            key,
            path,
            "no valid user or IRC handle specified (give 'handle' or 'user')",
        ),
        _ => {}
    }
}

pub(super) fn check_callback(r: &mut Report, n: &Node, path: &str) {
    let Some(mut f) = Fields::strict(r, n, path) else {
        return;
    };
    f.req_str(r, "url");
    if let Some(m) = f.opt("method") {
        enum_str(r, m, &f.sub("method"), &["GET", "POST"]);
    }
    f.opt_str(r, "token");
    f.opt_str(r, "header");
    if let Some(d) = f.opt("dataset") {
        enum_str(
            r,
            d,
            &f.sub("dataset"),
            &["minimal", "logs", "results", "all"],
        );
    }
    if let Some(c) = f.opt("content-type") {
        enum_str(r, c, &f.sub("content-type"), &["json", "urlencoded"]);
    }
    f.finish(r, "callback");
}
