//! `test:` blocks: test definitions (git, url, inline), interactive tests, monitors.

use super::*;

/// Test definition names: LAVA's `^[-_a-zA-Z0-9.]+$`.
pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The gate's names for interactive and monitor items: `^[a-zA-Z0-9-_]+$` (no '.').
pub(super) fn valid_gate_name(s: &str) -> bool {
    valid_name(s) && !s.contains('.')
}

pub(super) fn read_test(r: &mut Report, n: &Node, path: &str) -> Option<Test> {
    let mut f = Fields::strict(r, n, path)?;
    let common = read_common(r, &mut f);
    let kind = if let Some(d) = f.opt("definitions") {
        let dpath = f.sub("definitions");
        let defs: Vec<TestDefRef> = list(r, d, &dpath)
            .iter()
            .enumerate()
            .filter_map(|(i, d)| read_definition(r, d, &index(&dpath, i)))
            .collect();
        if let Some(node) = f.opt("docker") {
            r.warn(node, &f.sub("docker"), "test shells inside docker are outside basalt's scope; the job validates but cannot run here");
            TestKind::Other("docker".to_string())
        } else {
            TestKind::Definitions(defs)
        }
    } else if let Some(i) = f.opt("interactive") {
        let ipath = f.sub("interactive");
        TestKind::Interactive(
            list(r, i, &ipath)
                .iter()
                .enumerate()
                .filter_map(|(k, x)| read_interactive(r, x, &index(&ipath, k)))
                .collect(),
        )
    } else if let Some(m) = f.opt("monitors") {
        let mpath = f.sub("monitors");
        TestKind::Monitors(
            list(r, m, &mpath)
                .iter()
                .enumerate()
                .filter_map(|(k, x)| read_monitor(r, x, &index(&mpath, k)))
                .collect(),
        )
    } else if let Some(s) = f.opt("services") {
        r.warn(
            s,
            &f.sub("services"),
            "'services' test blocks are outside basalt's scope",
        );
        TestKind::Other("services".to_string())
    } else {
        r.error(
            n,
            path,
            "a test needs 'definitions', 'interactive', 'monitors' or 'services'",
        );
        TestKind::Other(String::new())
    };
    f.finish_with(
        r,
        "test",
        &[
            "docker",
            "services",
            "definitions",
            "interactive",
            "monitors",
            "connection",
        ],
    );
    Some(Test {
        common,
        kind,
        node: n.clone(),
    })
}

/// The gate's inline repository: only metadata, install, run and parse, each a mapping;
/// and the job schema's test definition (`lava_common/schemas/test/testdef.py`).
pub(super) fn check_inline_repository(r: &mut Report, n: &Node, path: &str) {
    let Some(mut f) = Fields::strict(r, n, path) else {
        return;
    };
    for key in ["metadata", "install", "run", "parse"] {
        if let Some(v) = f.opt(key) {
            expect_map(r, v, &f.sub(key));
        }
    }
    if let Some(m) = f.req(r, "metadata") {
        if let Some(mut mf) = Fields::strict(r, m, &f.sub("metadata")) {
            if let Some(fmt) = mf.req(r, "format") {
                match fmt.as_str() {
                    Some(super::testdef::FORMAT) => {}
                    _ => r.error(
                        fmt,
                        &mf.sub("format"),
                        format!("expected '{}'", super::testdef::FORMAT),
                    ),
                }
            }
            mf.req_str(r, "name");
            mf.opt_str(r, "description");
            for key in ["environment", "devices", "maintainer", "scope", "os"] {
                mf.opt_list_of_str(r, key);
            }
            let all: Vec<&str> = keys_of(m);
            mf.finish_with(r, "metadata", &all);
        }
    }
    if let Some(i) = f.opt("install") {
        if let Some(mut inf) = Fields::strict(r, i, &f.sub("install")) {
            for key in keys_of(i) {
                if ["deps", "keys", "steps", "sources"].contains(&key)
                    || (key.starts_with("deps-") && key.len() > 5)
                {
                    inf.opt_list_of_str(r, key);
                }
            }
            if let Some(g) = inf.opt("git-repos") {
                let gpath = inf.sub("git-repos");
                for (k, item) in list(r, g, &gpath).iter().enumerate() {
                    if item.as_str().is_some() {
                        continue;
                    }
                    let ip = index(&gpath, k);
                    if let Some(mut gf) = Fields::strict(r, item, &ip) {
                        gf.req_str(r, "url");
                        gf.opt_str(r, "branch");
                        gf.opt_str(r, "destination");
                        gf.finish(r, "git-repos entry");
                    }
                }
            }
            let all = keys_of(i);
            inf.finish_with(r, "install", &all);
        }
    }
    if let Some(run) = f.opt("run") {
        if let Some(mut rf) = Fields::strict(r, run, &f.sub("run")) {
            if rf.req(r, "steps").is_some() {
                rf.opt_list_of_str(r, "steps");
            }
            let all = keys_of(run);
            rf.finish_with(r, "run", &all);
        }
    }
    if let Some(p) = f.opt("parse") {
        if let Some(mut pf) = Fields::strict(r, p, &f.sub("parse")) {
            if let Some(fx) = pf.opt("fixupdict") {
                check_fixupdict(r, fx, &pf.sub("fixupdict"));
            }
            let all = keys_of(p);
            pf.finish_with(r, "parse", &all);
        }
    }
    finish_closed(
        f,
        r,
        "an inline test definition",
        &["metadata", "install", "run", "parse"],
    );
}

/// `fixupdict:` maps a string to pass, fail, skip or unknown.
pub(super) fn check_fixupdict(r: &mut Report, n: &Node, path: &str) {
    for (k, _, v) in entries(r, n, path) {
        enum_str(r, v, &join(path, &k), &["pass", "fail", "skip", "unknown"]);
    }
}

pub(super) fn read_definition(r: &mut Report, n: &Node, path: &str) -> Option<TestDefRef> {
    let mut f = Fields::strict(r, n, path)?;
    let from_node = f.req(r, "from");
    let from = match from_node
        .and_then(|x| text(r, x, &f.sub("from"), true))
        .as_deref()
    {
        Some("git") => Some(TestFrom::Git),
        Some("inline") => Some(TestFrom::Inline),
        Some("url") => Some(TestFrom::Url),
        Some(other) => {
            if let Some(x) = from_node {
                one_of(
                    r,
                    x,
                    &f.sub("from"),
                    "test definition source",
                    other,
                    &["git", "inline", "url"],
                );
            }
            None
        }
        None => None,
    };
    let repo_node = f.req(r, "repository");
    let (mut repository, mut inline) = (None, None);
    if let (Some(rn), Some(from)) = (repo_node, &from) {
        if *from == TestFrom::Inline {
            if rn.as_map().is_some() {
                check_inline_repository(r, rn, &f.sub("repository"));
                // basalt's own reading (it runs the definition): what LAVA does not
                // check is a warning.
                lenient(r, |r| check_inline_testdef(r, rn, &f.sub("repository")));
                inline = Some(rn.clone());
            } else {
                r.error(
                    rn,
                    &f.sub("repository"),
                    "an inline definition's repository is the test definition itself (a mapping)",
                );
            }
        } else {
            repository = text(r, rn, &f.sub("repository"), true);
        }
    } else if let Some(rn) = repo_node {
        if rn.as_map().is_none() {
            text(r, rn, &f.sub("repository"), true);
        }
    }
    let def_path = f.req_str(r, "path");
    let name = f.req_str(r, "name");
    if let (Some(nm), Some(node)) = (&name, f.opt("name")) {
        if !valid_name(nm) {
            r.error(
                node,
                &f.sub("name"),
                format!("invalid test name '{nm}': use letters, digits, '-', '_', '.'"),
            );
        }
    }
    let git = from == Some(TestFrom::Git);
    let url = from == Some(TestFrom::Url);
    // Keys LAVA checks only for one source are basalt's to read leniently for the others.
    let typed_str = |f: &mut Fields<'_>, r: &mut Report, key: &str, lava: bool| {
        if lava {
            f.opt_str(r, key)
        } else {
            let p = f.sub(key);
            f.opt(key).and_then(|v| lenient(r, |r| string(r, v, &p)))
        }
    };
    let branch = typed_str(&mut f, r, "branch", git);
    let revision = typed_str(&mut f, r, "revision", git);
    let typed_bool = |f: &mut Fields<'_>, r: &mut Report, key: &str, lava: bool| {
        if lava {
            f.opt_bool(r, key)
        } else {
            let p = f.sub(key);
            f.opt(key)
                .and_then(|v| lenient(r, |r| crate::reader::boolean(r, v, &p)))
        }
    };
    let history = typed_bool(&mut f, r, "history", git);
    typed_bool(&mut f, r, "recursive", git);
    // `shallow` is not in LAVA's schema; only its pairing with `revision` is refused.
    let shallow = f.opt("shallow").map(|v| v.as_bool() == Some(true));
    if revision.is_some() && shallow == Some(true) {
        let node = f.opt("shallow").unwrap_or(n);
        r.error(
            node,
            &f.sub("shallow"),
            "when 'revision' is used, 'shallow' must not be true",
        );
    }
    let mut parameters = Vec::new();
    for key in ["parameters", "params"] {
        if let Some(p) = f.opt(key) {
            let ppath = f.sub(key);
            if p.as_map().is_none() {
                let at = n.key_node(key).unwrap_or(p);
                r.error(
                    at,
                    &ppath,
                    format!("expected a mapping, found {}", p.kind()),
                );
            } else {
                for (k, _, v) in entries(r, p, &ppath) {
                    parameters.push((k, v.clone()));
                }
            }
        }
    }
    let skip_install = f.opt_list_of_str(r, "skip_install").unwrap_or_default();
    if let Some(list_node) = f.opt("skip_install").and_then(Node::as_seq) {
        for (i, item) in list_node.iter().enumerate() {
            if let Some(s) = item.as_str() {
                one_of(
                    r,
                    item,
                    &index(&f.sub("skip_install"), i),
                    "skip_install value",
                    s,
                    &["keys", "sources", "deps", "steps", "git-repos", "all"],
                );
            }
        }
    }
    let lava_signal = f
        .opt("lava-signal")
        .and_then(|s| enum_str(r, s, &f.sub("lava-signal"), &["kmsg", "stdout"]));
    let expected = match f.opt("expected") {
        Some(_) => f.opt_list_of_str(r, "expected").unwrap_or_default(),
        None => Vec::new(),
    };
    let compression =
        typed_str(&mut f, r, "compression", url).and_then(|c| Compression::from_name(&c));
    if let Some(s) = f.opt("strip-components") {
        let p = f.sub("strip-components");
        if url {
            integer(r, s, &p, i64::MIN, i64::MAX);
        } else {
            lenient(r, |r| integer(r, s, &p, 0, 1000));
        }
    }
    if let Some(h) = f.opt("headers") {
        if url {
            expect_map(r, h, &f.sub("headers"));
        }
    }
    if let Some(t) = f.opt("timeout") {
        Timeout::parse_job(r, t, &f.sub("timeout"), Rule::Gate);
    }
    f.finish(r, "test definition");
    Some(TestDefRef {
        from: from?,
        repository,
        inline,
        path: def_path?,
        name: name?,
        branch,
        revision,
        history,
        shallow,
        parameters,
        skip_install,
        lava_signal,
        expected,
        compression,
        mark: n.mark,
    })
}

pub(super) fn read_interactive(r: &mut Report, n: &Node, path: &str) -> Option<Interactive> {
    let mut f = Fields::strict(r, n, path)?;
    let name = f.req_str(r, "name");
    if let (Some(nm), Some(node)) = (&name, f.opt("name")) {
        if !valid_gate_name(nm) {
            r.error(
                node,
                &f.sub("name"),
                format!("invalid interactive name '{nm}': use letters, digits, '-', '_'"),
            );
        }
    }
    let mut prompts = Vec::new();
    if let Some(p) = f.req(r, "prompts") {
        let ppath = f.sub("prompts");
        for (i, item) in list(r, p, &ppath).iter().enumerate() {
            if let Some(s) = non_empty(r, item, &index(&ppath, i)) {
                prompts.push(s);
            }
        }
    }
    let echo_discard = f
        .opt("echo")
        .and_then(|e| enum_str(r, e, &f.sub("echo"), &["discard"]))
        .is_some();
    if let Some(e) = f.opt("expected") {
        let epath = f.sub("expected");
        for (i, item) in list(r, e, &epath).iter().enumerate() {
            non_empty(r, item, &index(&epath, i));
        }
    }
    let mut script = Vec::new();
    if let Some(s) = f.req(r, "script") {
        let spath = f.sub("script");
        for (i, step) in list(r, s, &spath).iter().enumerate() {
            if let Some(step) = read_interactive_step(r, step, &index(&spath, i)) {
                script.push(step);
            }
        }
    }
    finish_closed(
        f,
        r,
        "an interactive test",
        &["name", "prompts", "echo", "expected", "script"],
    );
    Some(Interactive {
        name: name?,
        prompts,
        echo_discard,
        script,
    })
}

pub(super) fn read_interactive_step(
    r: &mut Report,
    step: &Node,
    p: &str,
) -> Option<InteractiveStep> {
    let mut sf = Fields::strict(r, step, p)?;
    let command = sf
        .opt_nullable("command")
        .filter(|c| !c.is_null())
        .and_then(|c| text(r, c, &sf.sub("command"), true));
    let name = sf.opt_str(r, "name");
    if let (Some(nm), Some(node)) = (&name, sf.opt("name")) {
        if !valid_gate_name(nm) {
            r.error(
                node,
                &sf.sub("name"),
                format!("invalid step name '{nm}': use letters, digits, '-', '_'"),
            );
        }
    }
    let delay = sf
        .opt_int(r, "delay", i64::MIN, i64::MAX)
        .map(|d| d.max(0) as u64);
    for key in ["lava-send", "lava-sync", "lava-wait", "lava-wait-all"] {
        sf.opt_str(r, key);
    }
    let wait_for_prompt = sf.opt_bool(r, "wait_for_prompt").unwrap_or(true);
    let mut successes = Vec::new();
    each_mapping(r, &mut sf, "successes", |r, mut ff, ip| {
        let msg = ff
            .req(r, "message")
            .and_then(|m| non_empty(r, m, &join(ip, "message")));
        finish_closed(ff, r, "a success", &["message"]);
        successes.extend(msg);
    });
    let mut failures = Vec::new();
    each_mapping(r, &mut sf, "failures", |r, mut ff, ip| {
        let msg = ff
            .req(r, "message")
            .and_then(|m| non_empty(r, m, &join(ip, "message")));
        let exc = ff.opt("exception").and_then(|e| {
            enum_str(
                r,
                e,
                &join(ip, "exception"),
                &["InfrastructureError", "JobError", "TestError"],
            )
        });
        let error = ff
            .opt("error")
            .and_then(|e| non_empty(r, e, &join(ip, "error")));
        finish_closed(ff, r, "a failure", &["message", "exception", "error"]);
        if let Some(message) = msg {
            failures.push(InteractiveFailure {
                message,
                exception: exc,
                error,
            });
        }
    });
    finish_closed(
        sf,
        r,
        "an interactive step",
        &[
            "name",
            "command",
            "delay",
            "lava-send",
            "lava-sync",
            "lava-wait",
            "lava-wait-all",
            "wait_for_prompt",
            "failures",
            "successes",
        ],
    );
    Some(InteractiveStep {
        name,
        command,
        delay,
        wait_for_prompt,
        successes,
        failures,
    })
}

pub(super) fn read_monitor(r: &mut Report, n: &Node, path: &str) -> Option<Monitor> {
    let mut f = Fields::strict(r, n, path)?;
    let name = f.req_str(r, "name");
    if let (Some(nm), Some(node)) = (&name, f.opt("name")) {
        if !valid_gate_name(nm) {
            r.error(
                node,
                &f.sub("name"),
                format!("invalid character in monitor name '{nm}': use letters, digits, '-', '_'"),
            );
        }
    }
    let start = f.req_str(r, "start");
    let end = f.req_str(r, "end");
    let pattern = f.req_str(r, "pattern");
    if let (Some(p), Some(node)) = (&pattern, f.opt("pattern")) {
        if let Err(e) = crate::pattern::compile_python_regex(p) {
            r.warn(
                node,
                &f.sub("pattern"),
                format!("invalid pattern (LAVA accepts the job, its monitor fails): {e}"),
            );
        }
    }
    let fixupdict = match f.opt("fixupdict") {
        Some(x) => {
            check_fixupdict(r, x, &f.sub("fixupdict"));
            str_str_map(r, x, &f.sub("fixupdict"))
        }
        None => Vec::new(),
    };
    f.opt_list_of_str(r, "expected");
    finish_closed(
        f,
        r,
        "a monitor",
        &["name", "start", "end", "pattern", "fixupdict", "expected"],
    );
    Some(Monitor {
        name: name?,
        start: start?,
        end: end?,
        pattern: pattern?,
        fixupdict,
    })
}
