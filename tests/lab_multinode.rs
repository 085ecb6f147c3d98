//! MultiNode on a lab from its binaries ([`basalt::lab::LocalLab`]: `basalt-master` with its
//! coordinator, a worker, `basalt-board` devices and a QEMU device): a submission split into
//! sub-jobs, scheduled as a group, run by `basalt run --coordinator`; the server role sends
//! its address, the clients wait for it and use it, all synchronise, and one client starts
//! only after the server's `lava-start`. Then a role that never sends (every sub-job ends
//! Incomplete at its timeout and every board is freed), and the same group through Debian's
//! `lava-coordinator` instead of basalt's (LAVA's polling protocol).

mod common;
#[path = "../crates/basalt-coordinator/tests/common/mod.rs"]
mod coordinators;

use basalt::client::Client;
use basalt::lab::{LocalLab, Spec, WorkerSpec};
use serde_json::Value;
use std::time::{Duration, Instant};

fn poll(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn lab(tmp: &common::TempDir, boards: usize, qemu: usize, coordinator: Option<String>) -> LocalLab {
    LocalLab::start(Spec {
        dir: tmp.path().to_path_buf(),
        bin_dir: common::bin_dir(),
        fixtures: common::fixtures_dir(),
        workers: vec![WorkerSpec {
            name: "w1".into(),
            boards,
            qemu,
            command: None,
        }],
        heartbeat_secs: 1,
        bootdelay: 1,
        keep_job_dirs: false,
        events: false,
        anonymous_read: false,
        coordinator,
    })
    .expect("the lab starts")
}

/// The deploy and boot blocks of `roles` on basalt-board (the board demo job's).
fn board_blocks(lab: &LocalLab, roles: &str) -> String {
    let demo = lab.board_job().expect("the board job");
    let actions = demo.split("\nactions:\n").nth(1).expect("actions");
    let blocks = actions.split("\n- test:").next().expect("deploy and boot");
    blocks
        .replace("- deploy:\n", &format!("- deploy:\n    role: [{roles}]\n"))
        .replace("- boot:\n", &format!("- boot:\n    role: [{roles}]\n"))
}

/// The deploy and boot blocks of `roles` on QEMU (the QEMU demo job's).
fn qemu_blocks(lab: &LocalLab, roles: &str) -> String {
    let demo = lab.qemu_job();
    let actions = demo.split("\nactions:\n").nth(1).expect("actions");
    let blocks = actions.split("\n- test:").next().expect("deploy and boot");
    blocks
        .replace("- deploy:\n", &format!("- deploy:\n    role: [{roles}]\n"))
        .replace("- boot:\n", &format!("- boot:\n    role: [{roles}]\n"))
}

/// An inline test block for `roles` running `steps`.
fn test_block(roles: &str, name: &str, minutes: u32, steps: &[&str]) -> String {
    let steps: String = steps.iter().map(|s| format!("          - {s}\n")).collect();
    format!(
        "- test:\n    role: [{roles}]\n    timeout:\n      minutes: {minutes}\n    definitions:\n    \
         - from: inline\n      name: {name}\n      path: inline/{name}.yaml\n      repository:\n        \
         metadata:\n          format: Lava-Test Test Definition 1.0\n          name: {name}\n          \
         description: {name}\n        run:\n          steps:\n{steps}"
    )
}

/// A group: a server, a client and a late client (`lava-start`, `expect_role: server`; LAVA
/// takes `expect_role` only with a `host_role`) of
/// `late_type`, the protocol timeout `timeout_secs`; `actions` follow.
fn group(late_type: &str, timeout_secs: u32, actions: &str) -> String {
    format!(
        "job_name: multinode on the lab\n\
         timeouts:\n  job:\n    minutes: 6\n  action:\n    minutes: 3\n\
         priority: medium\nvisibility: public\n\
         protocols:\n  lava-multinode:\n    roles:\n      \
         server:\n        device_type: basalt-board\n        count: 1\n      \
         client:\n        device_type: basalt-board\n        count: 1\n      \
         late:\n        device_type: {late_type}\n        count: 1\n        \
         host_role: server\n        request: lava-start\n        expect_role: server\n    \
         timeout:\n      seconds: {timeout_secs}\n\
         actions:\n{actions}"
    )
}

/// The group where everything is sent: the server starts the late client, sends its
/// address and synchronises; the clients wait for the address, check it and synchronise.
fn talking_group(lab: &LocalLab, late_type: &str) -> String {
    let boots = if late_type == "qemu" {
        board_blocks(lab, "server, client") + "\n" + &qemu_blocks(lab, "late")
    } else {
        board_blocks(lab, "server, client, late")
    };
    let server = test_block(
        "server",
        "serve",
        3,
        &[
            "lava-send lava_start",
            "lava-send ipv4 ipaddr=10.0.0.1",
            "lava-sync done",
            "lava-test-case group --shell test \"$(lava-group | wc -l)\" -eq 3",
            "lava-test-case role --shell test \"$(lava-role)\" = server",
        ],
    );
    let clients = test_block(
        "client, late",
        "use",
        3,
        &[
            "lava-wait ipv4",
            "lava-test-case got-address --shell grep -q ':ipaddr=10.0.0.1$' /tmp/lava_multi_node_cache.txt",
            "lava-sync done",
        ],
    );
    group(late_type, 120, &format!("{boots}\n{server}{clients}"))
}

/// The sub-jobs of the group `first` belongs to, by role.
fn sub_jobs(c: &Client, first: u64) -> Vec<(String, u64)> {
    let job = c.get(&format!("jobs/{first}/")).expect("job");
    let group = job["target_group"]
        .as_str()
        .expect("a target group")
        .to_string();
    let mut subs: Vec<(String, u64)> = c
        .list(&format!("jobs/?target_group={group}"))
        .expect("the group")
        .iter()
        .map(|j| {
            (
                j["role"].as_str().unwrap_or("").to_string(),
                j["id"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    subs.sort();
    subs
}

fn finished(c: &Client, ids: &[u64], within: Duration) -> Vec<Value> {
    let mut jobs = Vec::new();
    poll("the group finishes", within, || {
        jobs = ids
            .iter()
            .map(|id| c.get(&format!("jobs/{id}/")).unwrap_or(Value::Null))
            .collect();
        jobs.iter().all(|j| j["state"] == "Finished")
    });
    jobs
}

fn results(c: &Client, id: u64) -> Vec<(String, String)> {
    c.list(&format!("jobs/{id}/tests/"))
        .expect("results")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or("").to_string(),
                t["result"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn passed(results: &[(String, String)], name: &str) -> bool {
    results.iter().any(|(n, r)| n == name && r == "pass")
}

/// The time (`dt`, ISO 8601: ordered as text) of the first log record of job `id` whose
/// message contains `text`.
fn when(c: &Client, id: u64, text: &str) -> Option<String> {
    let log = c.logs(id, 0).ok().flatten()?;
    log.lines().find_map(|l| {
        let doc = basalt::yaml::load(l).ok()?;
        let rec = doc.as_seq()?.first()?;
        let msg = rec.get("msg")?;
        let said = msg
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{msg:?}"));
        said.contains(text)
            .then(|| rec.get("dt")?.as_str().map(str::to_string))
            .flatten()
    })
}

fn all_idle(c: &Client) {
    poll("every board is Idle again", Duration::from_secs(30), || {
        c.list("devices/")
            .is_ok_and(|ds| ds.iter().all(|d| d["state"] == "Idle"))
    });
}

/// Runs the talking group and checks every sub-job's results and the late start.
fn run_talking_group(lab: &LocalLab, late_type: &str) {
    let c = lab.client();
    let ids = c.submit(&talking_group(lab, late_type)).expect("submitted");
    assert_eq!(ids.len(), 3, "one id per sub-job: {ids:?}");
    let subs = sub_jobs(&c, ids[0]);
    let roles: Vec<&str> = subs.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(roles, ["client", "late", "server"], "{subs:?}");
    let id_of = |role: &str| subs.iter().find(|(r, _)| r == role).map(|(_, id)| *id);
    let jobs = finished(&c, &ids, Duration::from_secs(300));
    for j in &jobs {
        assert_eq!(
            j["health"],
            "Complete",
            "{j}\n{}",
            c.logs(j["id"].as_u64().unwrap_or(0), 0)
                .ok()
                .flatten()
                .unwrap_or_default()
        );
        assert!(
            j["sub_id"]
                .as_str()
                .is_some_and(|s| s.starts_with(&format!("{}.", ids[0]))),
            "{j}"
        );
    }
    let (server, client, late) = (
        id_of("server").expect("server"),
        id_of("client").expect("client"),
        id_of("late").expect("late"),
    );
    let r = results(&c, server);
    for case in [
        "multinode-send-lava_start",
        "multinode-send-ipv4",
        "multinode-sync-done",
        "group",
        "role",
    ] {
        assert!(passed(&r, case), "server {case}: {r:?}");
    }
    for id in [client, late] {
        let r = results(&c, id);
        for case in ["multinode-wait-ipv4", "got-address", "multinode-sync-done"] {
            assert!(passed(&r, case), "{id} {case}: {r:?}");
        }
    }
    // `basalt jobs show` lists the group with LAVA's N.M ids and the roles
    let (url, token) = lab.url_and_token();
    let shown = std::process::Command::new(common::bin_dir().join("basalt"))
        .args([
            "jobs",
            "show",
            &late.to_string(),
            "--url",
            url,
            "--token",
            token,
        ])
        .output()
        .expect("basalt jobs show");
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("MultiNode group"), "{shown}");
    for n in 0..3 {
        assert!(shown.contains(&format!("{}.{n}", ids[0])), "{shown}");
    }
    for role in ["server", "client", "late"] {
        assert!(shown.contains(role), "{shown}");
    }
    // the late client's first action began only after the server sent lava_start
    let sent = when(&c, server, "LAVA_SEND lava_start").expect("the server's lava_start");
    let deployed = when(&c, late, "start: 1 ").expect("the late client's first action");
    assert!(
        deployed >= sent,
        "late deploy at {deployed}, lava_start sent at {sent}"
    );
    all_idle(&c);
}

#[test]
fn a_group_talks_through_the_masters_coordinator_and_a_silent_role_times_out() {
    let tmp = common::TempDir::new("lab-multinode");
    let lab = lab(&tmp, 3, 1, None);
    run_talking_group(&lab, "basalt-board");
    run_talking_group(&lab, "qemu");

    // the server never sends ipv4: the clients' wait and everyone's sync run out
    let c = lab.client();
    let silent = test_block("server", "silent", 1, &["lava-sync done"]);
    let waiting = test_block(
        "client, late",
        "waiting",
        1,
        &["lava-wait ipv4", "lava-sync done"],
    );
    let boots = board_blocks(&lab, "server, client, late");
    let job = group("basalt-board", 15, &format!("{boots}\n{silent}{waiting}")).replace(
        "        host_role: server\n        request: lava-start\n        expect_role: server\n",
        "",
    );
    let ids = c.submit(&job).expect("submitted");
    let jobs = finished(&c, &ids, Duration::from_secs(240));
    for j in &jobs {
        assert_eq!(j["health"], "Incomplete", "{j}");
    }
    let client = sub_jobs(&c, ids[0])
        .into_iter()
        .find(|(r, _)| r == "client")
        .map(|(_, id)| id)
        .expect("client");
    let r = results(&c, client);
    assert!(
        r.iter()
            .any(|(n, res)| n == "multinode-wait-ipv4" && res == "fail"),
        "{r:?}"
    );
    all_idle(&c);
}

#[test]
fn a_group_talks_through_debians_lava_coordinator() {
    let lava = coordinators::Lava::start(1);
    let tmp = common::TempDir::new("lab-multinode-lava");
    let lab = lab(&tmp, 3, 0, Some(lava.addr.clone()));
    run_talking_group(&lab, "basalt-board");
}
