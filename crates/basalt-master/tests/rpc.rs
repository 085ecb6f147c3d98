//! The XML-RPC endpoint `/RPC2` in-process (a store in a temporary directory, the engine on a
//! free workers port, no worker): credentials, LAVA's fault codes, the admin methods, and
//! `scheduler.jobs.logs` streaming a log of several read chunks by line range.

use basalt_master::store::Store;
use basalt_master::xmlrpc::{self, Value};
use std::time::Duration;

#[path = "support/master.rs"]
mod master;

const ADMIN: &str = "admin-token-0123456789";
const USER: &str = "user-token-0123456789";

struct Master {
    rpc: String,
    state_dir: std::path::PathBuf,
    _served: master::Served,
    _dir: tempfile::TempDir,
}

fn start() -> Master {
    start_with(false)
}

/// [`start`], serving reads without credentials when `anonymous_read` (`--anonymous-read`).
fn start_with(anonymous_read: bool) -> Master {
    let dir = tempfile::tempdir().expect("temporary directory");
    let state_dir = dir.path().to_path_buf();
    let store = Store::open(&state_dir.join("basalt.db")).expect("store");
    store.add_token("admin", true, ADMIN).expect("admin token");
    store.add_token("alice", false, USER).expect("user token");
    let served = master::serve_with(state_dir.clone(), store, anonymous_read);
    Master {
        rpc: format!("http://{}/RPC2", served.addr),
        state_dir,
        _served: served,
        _dir: dir,
    }
}

/// POSTs `body`; the HTTP status and the body.
fn post(m: &Master, auth: Option<(&str, &str)>, body: &str) -> (u16, String) {
    let mut req = ureq::post(&m.rpc)
        .timeout(Duration::from_secs(20))
        .set("Content-Type", "text/xml");
    if let Some((user, token)) = auth {
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
        req = req.set("Authorization", &format!("Basic {basic}"));
    }
    match req.send_string(body) {
        Ok(r) => (r.status(), r.into_string().expect("body")),
        Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
        Err(e) => panic!("POST /RPC2: {e}"),
    }
}

/// Calls `method`: its value, or its fault's code and string.
fn call(m: &Master, auth: Option<(&str, &str)>, method: &str, params: &[Value]) -> xmlrpc::Reply {
    let (status, body) = post(m, auth, &xmlrpc::call(method, params));
    assert_eq!(status, 200, "{method}: {body}");
    xmlrpc::parse_response(body.as_bytes()).expect("a methodResponse")
}

fn admin() -> Option<(&'static str, &'static str)> {
    Some(("admin", ADMIN))
}

fn alice() -> Option<(&'static str, &'static str)> {
    Some(("alice", USER))
}

fn code(r: xmlrpc::Reply) -> i64 {
    match r {
        Ok(v) => panic!("not a fault: {v:?}"),
        Err((code, _)) => code,
    }
}

fn demo_job() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/jobs/demo-qemu.yaml"
    );
    std::fs::read_to_string(path).expect("config/jobs/demo-qemu.yaml")
}

fn s(v: &str) -> Value {
    Value::str(v)
}

#[test]
fn credentials_faults_and_admin_methods() {
    let m = start();
    assert_eq!(call(&m, None, "system.version", &[]), Ok(s("2024.01")));
    assert_eq!(call(&m, alice(), "system.whoami", &[]), Ok(s("alice")));
    // a token that is not the user's, or no token: HTTP 401
    for auth in [("admin", "nope"), ("alice", ADMIN), ("admin", "")] {
        let (status, _) = post(&m, Some(auth), &xmlrpc::call("system.version", &[]));
        assert_eq!(status, 401, "{auth:?}");
    }
    // not XML-RPC: a fault, not a crash
    for bad in ["", "<methodCall>", "not xml", "<methodCall><methodName>x</methodName><params><param><value><int>1x</int></value></param></params></methodCall>"] {
        let (status, body) = post(&m, None, bad);
        assert_eq!(status, 200);
        let r = xmlrpc::parse_response(body.as_bytes()).expect("a fault document");
        assert_eq!(code(r), -32700, "{bad:?}");
    }
    assert_eq!(code(call(&m, alice(), "no.such.method", &[])), -32601);
    // writes: 401 without credentials (HTTP 401 without anonymous reads), 403 for a
    // non-admin, 400 for bad input
    let (status, _) = post(&m, None, &xmlrpc::call("scheduler.jobs.submit", &[s("x")]));
    assert_eq!(status, 401);
    let add_worker = [s("w1"), s("first"), Value::Bool(false)];
    assert_eq!(
        code(call(&m, alice(), "scheduler.workers.add", &add_worker)),
        403
    );
    assert_eq!(
        call(&m, admin(), "scheduler.workers.add", &add_worker),
        Ok(Value::Nil)
    );
    assert_eq!(
        code(call(&m, admin(), "scheduler.workers.add", &add_worker)),
        400
    );
    let add_type = [
        s("qemu"),
        Value::Nil,
        Value::Bool(true),
        Value::Bool(false),
        Value::Int(24),
        s("hours"),
    ];
    assert_eq!(
        call(&m, admin(), "scheduler.device_types.add", &add_type),
        Ok(Value::Nil)
    );
    assert_eq!(
        code(call(&m, admin(), "scheduler.device_types.add", &add_type)),
        400
    );
    let add_device = |t: &str, w: &str| {
        vec![
            s("qemu-01"),
            s(t),
            s(w),
            Value::Nil,
            Value::Nil,
            Value::Bool(true),
            Value::Nil,
            s("a qemu"),
        ]
    };
    assert_eq!(
        code(call(
            &m,
            admin(),
            "scheduler.devices.add",
            &add_device("nope", "w1")
        )),
        404
    );
    assert_eq!(
        code(call(
            &m,
            admin(),
            "scheduler.devices.add",
            &add_device("qemu", "w9")
        )),
        404
    );
    assert_eq!(
        call(
            &m,
            admin(),
            "scheduler.devices.add",
            &add_device("qemu", "w1")
        ),
        Ok(Value::Nil)
    );
    assert_eq!(
        code(call(
            &m,
            admin(),
            "scheduler.devices.add",
            &add_device("qemu", "w1")
        )),
        400
    );
    let dict = "{% extends 'qemu.jinja2' %}\n";
    assert_eq!(
        code(call(
            &m,
            alice(),
            "scheduler.devices.set_dictionary",
            &[s("qemu-01"), s(dict)]
        )),
        403
    );
    assert_eq!(
        code(call(
            &m,
            admin(),
            "scheduler.devices.set_dictionary",
            &[s("nope"), s(dict)]
        )),
        404
    );
    assert_eq!(
        call(
            &m,
            admin(),
            "scheduler.devices.set_dictionary",
            &[s("qemu-01"), s(dict)]
        ),
        Ok(Value::Bool(true))
    );
    assert_eq!(
        call(
            &m,
            alice(),
            "scheduler.devices.get_dictionary",
            &[s("qemu-01"), Value::Bool(false), Value::Nil]
        ),
        Ok(Value::Base64(dict.as_bytes().to_vec()))
    );
    // reads
    assert_eq!(
        call(&m, alice(), "scheduler.workers.list", &[Value::Bool(false)]),
        Ok(Value::Array(vec![s("w1")]))
    );
    let Ok(Value::Array(devices)) =
        call(&m, alice(), "scheduler.devices.list", &[Value::Bool(false)])
    else {
        panic!("a list")
    };
    assert_eq!(
        devices,
        vec![Value::structure([
            ("hostname", s("qemu-01")),
            ("type", s("qemu")),
            ("health", s("Unknown")),
            ("state", s("Idle")),
            ("current_job", Value::Nil),
            ("pipeline", Value::Bool(true)),
        ])]
    );
    let Ok(Value::Struct(d)) = call(&m, alice(), "scheduler.devices.show", &[s("qemu-01")]) else {
        panic!("a struct")
    };
    assert!(d.contains(&("worker".into(), s("w1"))));
    assert!(d.contains(&("has_device_dict".into(), Value::Bool(true))));
    assert_eq!(
        code(call(&m, alice(), "scheduler.devices.show", &[s("nope")])),
        404
    );

    // jobs
    assert_eq!(
        call(
            &m,
            alice(),
            "scheduler.jobs.validate",
            &[s(&demo_job()), Value::Bool(false)]
        ),
        Ok(Value::Struct(vec![]))
    );
    let Ok(Value::Struct(invalid)) = call(
        &m,
        alice(),
        "scheduler.jobs.validate",
        &[s("job_name: x\nactions: 3\n"), Value::Bool(true)],
    ) else {
        panic!("a struct")
    };
    assert_eq!(
        invalid.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["path", "msg"]
    );
    assert_eq!(
        code(call(
            &m,
            alice(),
            "scheduler.jobs.submit",
            &[s("job_name: x\n")]
        )),
        400
    );
    let Ok(Value::Int(id)) = call(&m, alice(), "scheduler.jobs.submit", &[s(&demo_job())]) else {
        panic!("a job id")
    };
    let Ok(Value::Struct(job)) = call(&m, alice(), "scheduler.jobs.show", &[s(&id.to_string())])
    else {
        panic!("a struct")
    };
    assert!(job.contains(&("state".into(), s("Submitted"))));
    assert!(job.contains(&("submitter".into(), s("alice"))));
    assert!(job.contains(&("device_type".into(), s("qemu"))));
    assert!(job.contains(&("device".into(), Value::Nil)));
    assert!(
        matches!(job.iter().find(|(k, _)| k == "submit_time"), Some((_, Value::DateTime(t))) if t.len() == 17)
    );
    assert_eq!(
        call(&m, alice(), "scheduler.jobs.definition", &[Value::Int(id)]),
        Ok(s(&demo_job()))
    );
    assert_eq!(
        code(call(&m, alice(), "scheduler.jobs.show", &[s("12.1")])),
        404
    );
    assert_eq!(
        code(call(&m, alice(), "scheduler.jobs.show", &[Value::Int(999)])),
        404
    );
    // someone else's job: 403; one's own: canceled
    let Ok(Value::Int(other)) = call(&m, admin(), "scheduler.jobs.submit", &[s(&demo_job())])
    else {
        panic!("a job id")
    };
    assert_eq!(
        code(call(
            &m,
            alice(),
            "scheduler.jobs.cancel",
            &[Value::Int(other)]
        )),
        403
    );
    assert_eq!(
        call(&m, alice(), "scheduler.jobs.cancel", &[Value::Int(id)]),
        Ok(Value::Bool(true))
    );
    let Ok(Value::Struct(job)) = call(&m, alice(), "scheduler.jobs.show", &[Value::Int(id)]) else {
        panic!("a struct")
    };
    assert!(job.contains(&("health".into(), s("Canceled"))), "{job:?}");
    let list = |params: &[Value]| match call(&m, alice(), "scheduler.jobs.list", params) {
        Ok(Value::Array(jobs)) => jobs
            .iter()
            .map(|j| match j {
                Value::Struct(f) => f
                    .iter()
                    .find(|(k, _)| k == "id")
                    .and_then(|(_, v)| match v {
                        Value::Int(i) => Some(*i),
                        _ => None,
                    })
                    .expect("an id"),
                other => panic!("not a struct: {other:?}"),
            })
            .collect::<Vec<i64>>(),
        other => panic!("not a list: {other:?}"),
    };
    assert_eq!(list(&[]), vec![other, id]);
    assert_eq!(list(&[s("SUBMITTED")]), vec![other]);
    assert_eq!(list(&[Value::Nil, s("CANCELED")]), vec![id]);
    assert_eq!(
        list(&[Value::Nil, Value::Nil, Value::Int(1), Value::Int(25)]),
        vec![id]
    );
    assert_eq!(
        code(call(&m, alice(), "scheduler.jobs.list", &[s("bogus")])),
        400
    );
}

#[test]
fn logs_are_streamed_by_line_range() {
    let m = start();
    call(&m, admin(), "scheduler.workers.add", &[s("w1")]).expect("worker");
    call(&m, admin(), "scheduler.device_types.add", &[s("qemu")]).expect("type");
    let Ok(Value::Int(id)) = call(&m, admin(), "scheduler.jobs.submit", &[s(&demo_job())]) else {
        panic!("a job id")
    };
    // no log yet: nothing, unfinished
    assert_eq!(
        call(
            &m,
            alice(),
            "scheduler.jobs.logs",
            &[Value::Int(id), Value::Int(0), Value::Nil]
        ),
        Ok(Value::Array(vec![
            Value::Bool(false),
            Value::Base64(Vec::new())
        ]))
    );
    // a log of about 3 MiB: several of the reader's 1 MiB chunks
    let records: Vec<String> = (0..30_000)
        .map(|i| format!("- {{\"dt\": \"2026-07-01T00:00:00.000000\", \"lvl\": \"target\", \"msg\": \"line {i:06} {}\"}}", "x".repeat(i % 50)))
        .collect();
    let mut log =
        basalt_master::logs::JobLogFile::open(&m.state_dir.join("jobs").join(id.to_string()))
            .expect("log");
    for (n, batch) in records.chunks(1000).enumerate() {
        log.append(n as u64 * 1000 + 1, batch).expect("append");
    }
    let text = |lines: &[String]| {
        lines
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .into_bytes()
    };
    let logs = |start: i64, end: Value| match call(
        &m,
        alice(),
        "scheduler.jobs.logs",
        &[s(&id.to_string()), Value::Int(start), end],
    ) {
        Ok(Value::Array(v)) => match v.as_slice() {
            [Value::Bool(finished), Value::Base64(data)] => (*finished, data.clone()),
            other => panic!("not [finished, data]: {other:?}"),
        },
        other => panic!("not a list: {other:?}"),
    };
    let (finished, all) = logs(0, Value::Nil);
    assert!(!finished);
    assert!(all.len() > 2 << 20, "{} bytes", all.len());
    assert!(all == text(&records), "the whole log");
    assert!(logs(1, Value::Int(3)).1 == text(&records[1..3]));
    assert!(logs(12_345, Value::Nil).1 == text(&records[12_345..]));
    assert!(logs(29_999, Value::Int(40_000)).1 == text(&records[29_999..]));
    assert!(logs(30_000, Value::Nil).1.is_empty());
    assert_eq!(
        code(call(&m, alice(), "scheduler.jobs.logs", &[Value::Int(999)])),
        404
    );
    assert_eq!(
        code(call(
            &m,
            alice(),
            "scheduler.jobs.logs",
            &[Value::Int(id), Value::Int(-1)]
        )),
        400
    );
}

/// A worker, the qemu type and a job, registered by the admin; the job's id.
fn small_lab(m: &Master) -> i64 {
    call(m, admin(), "scheduler.workers.add", &[s("w1")]).expect("worker");
    call(m, admin(), "scheduler.device_types.add", &[s("qemu")]).expect("type");
    let Ok(Value::Int(id)) = call(m, admin(), "scheduler.jobs.submit", &[s(&demo_job())]) else {
        panic!("a job id")
    };
    id
}

/// Read calls of a small lab ([`small_lab`]).
fn reads(id: i64) -> Vec<(&'static str, Vec<Value>)> {
    vec![
        ("scheduler.workers.list", vec![Value::Bool(false)]),
        ("scheduler.workers.show", vec![s("w1")]),
        ("scheduler.devices.list", vec![Value::Bool(false)]),
        ("scheduler.device_types.list", vec![]),
        ("scheduler.jobs.list", vec![]),
        ("scheduler.jobs.show", vec![Value::Int(id)]),
        ("scheduler.jobs.definition", vec![Value::Int(id)]),
        (
            "scheduler.jobs.logs",
            vec![Value::Int(id), Value::Int(0), Value::Nil],
        ),
        ("scheduler.jobs.validate", vec![s(&demo_job())]),
    ]
}

#[test]
fn anonymous_calls_are_refused_by_default() {
    let m = start();
    let id = small_lab(&m);
    for (method, params) in reads(id) {
        let (status, body) = post(&m, None, &xmlrpc::call(method, &params));
        assert_eq!(status, 401, "anonymous {method}: {body}");
        assert!(
            call(&m, alice(), method, &params).is_ok(),
            "{method} with a token"
        );
    }
    // introspection stays open: lavacli asks for the version before every command
    assert_eq!(call(&m, None, "system.version", &[]), Ok(s("2024.01")));
    assert!(matches!(
        call(&m, None, "system.listMethods", &[]),
        Ok(Value::Array(_))
    ));
    assert_eq!(call(&m, None, "system.whoami", &[]), Ok(Value::Nil));
    let (status, _) = post(&m, None, &xmlrpc::call("no.such.method", &[]));
    assert_eq!(status, 401);
}

#[test]
fn anonymous_reads_when_configured() {
    let m = start_with(true);
    let id = small_lab(&m);
    for (method, params) in reads(id) {
        assert!(
            call(&m, None, method, &params).is_ok(),
            "anonymous {method}"
        );
    }
    assert_eq!(
        call(&m, None, "scheduler.workers.list", &[Value::Bool(false)]),
        Ok(Value::Array(vec![s("w1")]))
    );
    // writes still need a token, admin methods an admin's
    assert_eq!(
        code(call(&m, None, "scheduler.jobs.submit", &[s(&demo_job())])),
        401
    );
    assert_eq!(
        code(call(&m, None, "scheduler.jobs.cancel", &[Value::Int(id)])),
        401
    );
    assert_eq!(
        code(call(&m, None, "scheduler.workers.add", &[s("w2")])),
        401
    );
    assert_eq!(
        code(call(&m, alice(), "scheduler.workers.add", &[s("w2")])),
        403
    );
    // credentials that are not valid are refused whatever the method
    let (status, _) = post(
        &m,
        Some(("alice", "nope")),
        &xmlrpc::call("scheduler.workers.list", &[]),
    );
    assert_eq!(status, 401);
}

#[test]
fn a_multinode_submission_answers_its_sub_ids() {
    let m = start();
    small_lab(&m);
    for hostname in ["qemu-01", "qemu-02"] {
        let add = [
            s(hostname),
            s("qemu"),
            s("w1"),
            Value::Nil,
            Value::Nil,
            Value::Bool(true),
            Value::Nil,
        ];
        call(&m, admin(), "scheduler.devices.add", &add).expect("device");
    }
    let definition = "job_name: mn
visibility: public
timeouts: {job: {minutes: 5}}
protocols:
  lava-multinode:
    roles:
      server: {device_type: qemu, count: 1}
      client: {device_type: qemu, count: 1}
actions:
- boot: {role: [server, client], method: qemu, media: tmpfs, prompts: ['# ']}
";
    let Ok(Value::Array(ids)) = call(&m, alice(), "scheduler.jobs.submit", &[s(definition)]) else {
        panic!("a list of sub_ids")
    };
    // the demo job of small_lab is job 1: the group is 2 and 3
    assert_eq!(ids, [s("2.0"), s("2.1")]);
}

/// The lab administration methods lavacli calls: `devices update` (LAVA's positional health,
/// as `lavacli devices maintenance` sends it), tags, a device type's schedule and health
/// check, aliases both ways, a worker's health.
#[test]
fn devices_types_aliases_and_workers_are_administered() {
    let m = start();
    let ok = |method: &str, params: &[Value]| {
        call(&m, admin(), method, params).unwrap_or_else(|f| panic!("{method}: {f:?}"))
    };
    ok("scheduler.workers.add", &[s("w1")]);
    ok(
        "scheduler.device_types.add",
        &[
            s("qemu"),
            s("QEMU"),
            Value::Bool(true),
            Value::Bool(false),
            Value::Int(3),
            s("jobs"),
        ],
    );
    ok("scheduler.devices.add", &[s("d1"), s("qemu"), s("w1")]);
    // LAVA's XML-RPC adds a device Unknown
    let show = |h: &str| ok("scheduler.devices.show", &[s(h)]);
    let field = |v: &Value, k: &str| match v {
        Value::Struct(m) => m.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
        _ => None,
    };
    assert_eq!(field(&show("d1"), "health"), Some(s("Unknown")));
    // lavacli devices maintenance: update(name, None, None, None, None, "MAINTENANCE", None)
    let nil = Value::Nil;
    ok(
        "scheduler.devices.update",
        &[
            s("d1"),
            nil.clone(),
            nil.clone(),
            nil.clone(),
            nil.clone(),
            s("MAINTENANCE"),
            nil.clone(),
        ],
    );
    assert_eq!(field(&show("d1"), "health"), Some(s("Maintenance")));
    ok(
        "scheduler.devices.update",
        &[
            s("d1"),
            nil.clone(),
            nil.clone(),
            nil.clone(),
            nil.clone(),
            nil.clone(),
            s("bench"),
        ],
    );
    assert_eq!(field(&show("d1"), "description"), Some(s("bench")));
    assert_eq!(
        field(&show("d1"), "health"),
        Some(s("Maintenance")),
        "unchanged"
    );
    let bad = [
        s("d1"),
        nil.clone(),
        nil.clone(),
        nil.clone(),
        nil.clone(),
        s("SLEEPY"),
    ];
    assert_eq!(
        code(call(&m, admin(), "scheduler.devices.update", &bad)),
        400
    );
    assert_eq!(
        code(call(&m, alice(), "scheduler.devices.update", &bad)),
        403
    );
    assert_eq!(
        code(call(
            &m,
            admin(),
            "scheduler.devices.update",
            &[s("nothing")]
        )),
        404
    );
    // tags
    ok("scheduler.devices.tags.add", &[s("d1"), s("usb")]);
    ok("scheduler.devices.tags.add", &[s("d1"), s("fast")]);
    assert_eq!(
        ok("scheduler.devices.tags.list", &[s("d1")]),
        Value::Array(vec![s("fast"), s("usb")])
    );
    ok("scheduler.devices.tags.delete", &[s("d1"), s("usb")]);
    assert_eq!(
        code(call(
            &m,
            admin(),
            "scheduler.devices.tags.delete",
            &[s("d1"), s("usb")]
        )),
        404
    );
    // a type's schedule and health check
    let t = ok("scheduler.device_types.show", &[s("qemu")]);
    assert_eq!(field(&t, "health_frequency"), Some(Value::Int(3)));
    assert_eq!(field(&t, "health_denominator"), Some(s("jobs")));
    ok(
        "scheduler.device_types.update",
        &[
            s("qemu"),
            nil.clone(),
            nil.clone(),
            nil.clone(),
            Value::Int(24),
            s("hours"),
            Value::Bool(true),
        ],
    );
    let t = ok("scheduler.device_types.show", &[s("qemu")]);
    assert_eq!(field(&t, "health_denominator"), Some(s("hours")));
    assert_eq!(field(&t, "health_disabled"), Some(Value::Bool(true)));
    assert_eq!(
        code(call(
            &m,
            admin(),
            "scheduler.device_types.get_health_check",
            &[s("qemu")]
        )),
        404
    );
    ok(
        "scheduler.device_types.set_health_check",
        &[s("qemu"), s(&demo_job())],
    );
    assert_eq!(
        ok("scheduler.device_types.get_health_check", &[s("qemu")]),
        Value::Base64(demo_job().into_bytes())
    );
    assert_eq!(
        code(call(
            &m,
            admin(),
            "scheduler.device_types.set_health_check",
            &[s("qemu"), s("[")]
        )),
        400
    );
    // aliases, from either side
    ok("scheduler.aliases.add", &[s("kvm"), s("qemu")]);
    ok("scheduler.device_types.aliases.add", &[s("qemu"), s("x86")]);
    assert_eq!(
        ok("scheduler.aliases.list", &[]),
        Value::Array(vec![s("kvm"), s("x86")])
    );
    assert_eq!(
        ok("scheduler.device_types.aliases.list", &[s("qemu")]),
        Value::Array(vec![s("kvm"), s("x86")])
    );
    assert_eq!(
        field(&ok("scheduler.aliases.show", &[s("kvm")]), "device_type"),
        Some(s("qemu"))
    );
    assert_eq!(
        code(call(
            &m,
            admin(),
            "scheduler.aliases.add",
            &[s("qemu"), s("qemu")]
        )),
        400
    );
    assert_eq!(
        code(call(
            &m,
            admin(),
            "scheduler.aliases.add",
            &[s("a"), s("none")]
        )),
        400
    );
    ok("scheduler.aliases.delete", &[s("kvm")]);
    ok(
        "scheduler.device_types.aliases.delete",
        &[s("qemu"), s("x86")],
    );
    assert_eq!(
        code(call(&m, admin(), "scheduler.aliases.delete", &[s("kvm")])),
        404
    );
    // a worker's health: retired with its devices
    ok(
        "scheduler.workers.update",
        &[s("w1"), s("rack 1"), s("RETIRED")],
    );
    assert_eq!(field(&show("d1"), "health"), Some(s("Retired")));
    let w = ok("scheduler.workers.show", &[s("w1")]);
    assert_eq!(field(&w, "health"), Some(s("Retired")));
    assert_eq!(field(&w, "description"), Some(s("rack 1")));
    assert_eq!(
        code(call(
            &m,
            admin(),
            "scheduler.workers.update",
            &[s("w1"), nil, s("ASLEEP")]
        )),
        400
    );
    let methods = ok("system.listMethods", &[]);
    let Value::Array(methods) = methods else {
        panic!("a list")
    };
    assert!(methods.contains(&s("scheduler.devices.update")));
    assert!(methods.contains(&s("scheduler.aliases.add")));
}
