//! MultiNode sub-jobs run in-process (`run_job`) on `basalt-board` devices, whose busybox sh
//! runs the MultiNode helpers for real, against an in-memory coordinator with LAVA's
//! semantics (lava-formats.md §4.3) shared by the group: send/wait with the cache file, sync,
//! lava-start, a wait that times out, a nack, a refused message id.

#[path = "../crates/basalt-board/tests/board_support/mod.rs"]
mod board_support;
mod common;

use basalt::device::Device;
use basalt::job::{parse_job_as, Reading};
use basalt::log::Verbosity;
use basalt::pipeline::build_pipeline;
use basalt::protocols::multinode::{Coordinator, CoordinatorError, Message, Replies};
use basalt::run::{run_job, Outcome, RunOptions};
use board_support::{Board, Tftpd};
use common::{fixtures_amd64, TempDir};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// What the fake coordinator holds for one group.
#[derive(Default)]
struct State {
    registered: BTreeMap<String, String>,
    messages: BTreeMap<String, Replies>,
    syncs: BTreeMap<String, BTreeSet<String>>,
    cleared: Vec<String>,
    /// What happened, in order: "<client> <what>".
    events: Vec<String>,
}

/// An in-memory coordinator group with LAVA's semantics.
struct Group {
    size: u32,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

impl Group {
    fn new(size: u32) -> Arc<Group> {
        Arc::new(Group {
            size,
            state: Mutex::new(State::default()),
            changed: watch::channel(0).0,
        })
    }
    fn client(self: &Arc<Group>, name: &str, role: &str) -> Arc<dyn Coordinator> {
        Arc::new(Client {
            group: self.clone(),
            name: name.into(),
            role: role.into(),
        })
    }
    /// A member that registers and then does nothing.
    fn register(&self, name: &str, role: &str) {
        self.update(|s| {
            s.registered.insert(name.into(), role.into());
        });
    }
    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap());
        self.changed.send_modify(|v| *v += 1);
    }
    fn events(&self) -> Vec<String> {
        self.state.lock().unwrap().events.clone()
    }
    fn cleared(&self) -> Vec<String> {
        self.state.lock().unwrap().cleared.clone()
    }
    /// Waits until `ready` gives a value, at most `timeout`.
    async fn until<T>(
        &self,
        timeout: Duration,
        mut ready: impl FnMut(&State) -> Option<T>,
    ) -> Result<T, CoordinatorError> {
        let mut rx = self.changed.subscribe();
        let wait = async {
            loop {
                rx.borrow_and_update();
                if let Some(v) = ready(&self.state.lock().unwrap()) {
                    return v;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| CoordinatorError::Timeout)
    }
}

/// One member of a [`Group`].
struct Client {
    group: Arc<Group>,
    name: String,
    role: String,
}

#[async_trait::async_trait]
impl Coordinator for Client {
    async fn group_data(
        &self,
        group_size: u32,
        timeout: Duration,
    ) -> Result<BTreeMap<String, String>, CoordinatorError> {
        assert_eq!(group_size, self.group.size);
        self.group.register(&self.name, &self.role);
        let size = self.group.size as usize;
        self.group
            .until(timeout, |s| {
                (s.registered.len() == size).then(|| s.registered.clone())
            })
            .await
    }
    async fn send(&self, message_id: &str, message: Message) -> Result<(), CoordinatorError> {
        self.group.update(|s| {
            s.messages
                .entry(message_id.into())
                .or_default()
                .insert(self.name.clone(), message);
            s.events.push(format!("{} send {message_id}", self.name));
        });
        Ok(())
    }
    async fn wait(&self, message_id: &str, timeout: Duration) -> Result<Replies, CoordinatorError> {
        self.group
            .until(timeout, |s| {
                s.messages
                    .get(message_id)
                    .filter(|m| !m.is_empty())
                    .cloned()
            })
            .await
    }
    async fn wait_all(
        &self,
        message_id: &str,
        role: Option<&str>,
        timeout: Duration,
    ) -> Result<Replies, CoordinatorError> {
        let size = self.group.size as usize;
        if role.is_none()
            && !self
                .group
                .state
                .lock()
                .unwrap()
                .messages
                .contains_key(message_id)
        {
            return Err(CoordinatorError::Nack);
        }
        let r =
            self.group
                .until(timeout, |s| {
                    let m = s.messages.get(message_id)?;
                    match role {
                        None => (m.len() == size).then(|| m.clone()),
                        Some(role) => {
                            let of_role: Vec<&String> = s
                                .registered
                                .iter()
                                .filter(|(_, r)| r.as_str() == role)
                                .map(|(c, _)| c)
                                .collect();
                            (!of_role.is_empty() && of_role.iter().all(|c| m.contains_key(*c)))
                                .then(|| {
                                    m.iter()
                                        .filter(|(c, _)| of_role.contains(c))
                                        .map(|(c, v)| (c.clone(), v.clone()))
                                        .collect()
                                })
                        }
                    }
                })
                .await?;
        self.group.update(|s| {
            s.events
                .push(format!("{} wait_all {message_id} answered", self.name))
        });
        Ok(r)
    }
    async fn sync(&self, message_id: &str, timeout: Duration) -> Result<(), CoordinatorError> {
        self.group.update(|s| {
            s.syncs
                .entry(message_id.into())
                .or_default()
                .insert(self.name.clone());
        });
        let size = self.group.size as usize;
        self.group
            .until(timeout, |s| {
                (s.syncs.get(message_id).map_or(0, |c| c.len()) == size).then_some(())
            })
            .await
    }
    async fn clear_group(&self, _group_size: u32) -> Result<(), CoordinatorError> {
        self.group.update(|s| s.cleared.push(self.name.clone()));
        Ok(())
    }
}

/// One board with its device dictionary, and the files a tftp deploy of it needs.
struct Rig {
    board: Board,
    dict: PathBuf,
    tmp: TempDir,
}

fn rig(tftp: &Tftpd, tag: &str) -> Rig {
    let port = tftp.port.to_string();
    let board = Board::start_with_console(
        &["--telnet", "0"],
        &["--speed", "0", "--tftp-port", &port, "--bootdelay", "1"],
    );
    let tmp = TempDir::new(tag);
    let dict = board.write_dictionary(tmp.path());
    Rig { board, dict, tmp }
}

/// A sub-job as the master hands it to the dispatcher: `protocol` is the rest of its
/// `protocols.lava-multinode` block, `steps` the inline definition's run steps.
fn sub_job(rig: &Rig, role: &str, protocol: &str, steps: &[&str]) -> String {
    let (_, initrd) = fixtures_amd64();
    let kernel = rig.tmp.path().join("Image");
    std::fs::write(&kernel, vec![0u8; 4096]).unwrap();
    let dtb = rig.tmp.path().join("board.dtb");
    std::fs::write(&dtb, vec![0xd0u8; 1024]).unwrap();
    let steps: String = steps.iter().map(|s| format!("          - {s}\n")).collect();
    format!(
        "device_type: basalt-board\njob_name: multinode {role}\n\
         timeouts:\n  job:\n    minutes: 4\n  action:\n    minutes: 2\n\
         visibility: public\npriority: medium\n\
         protocols:\n  lava-multinode:\n    target_group: 4d7e2c1a-0000-4000-8000-000000000001\n    role: {role}\n{protocol}\
         actions:\n\
         - deploy:\n    role: {role}\n    to: tftp\n    os: oe\n    kernel:\n      url: file://{k}\n      type: image\n    ramdisk:\n      url: file://{i}\n    dtb:\n      url: file://{d}\n\
         - boot:\n    role: {role}\n    method: u-boot\n    commands: ramdisk\n    prompts:\n    - '/ # '\n\
         - test:\n    role: {role}\n    definitions:\n    - from: inline\n      name: mn\n      path: inline/mn.yaml\n      repository:\n        metadata:\n          format: Lava-Test Test Definition 1.0\n          name: mn\n        run:\n          steps:\n{steps}",
        k = kernel.display(),
        i = initrd.display(),
        d = dtb.display(),
    )
}

/// [`sub_job`] with `calls` (the boot block's `protocols.lava-multinode` list, indented as
/// YAML under it) added to the boot block.
fn with_boot_calls(job: &str, calls: &str) -> String {
    job.replace(
        "    method: u-boot\n",
        &format!("    method: u-boot\n    protocols:\n      lava-multinode:\n{calls}"),
    )
}

/// Runs `text` as job `id` on the rig's board with `coordinator`.
async fn run(
    rig: &Rig,
    tftp: &Tftpd,
    id: &str,
    text: &str,
    coordinator: Option<Arc<dyn Coordinator>>,
) -> (Outcome, PathBuf) {
    let (job, _) = parse_job_as("sub-job.yaml", text, Reading::Dispatch)
        .unwrap_or_else(|e| panic!("the sub-job is valid: {:?}\n{text}", e.report.items));
    let types = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/config/device-types"));
    let device = Device::load(&rig.dict, &[types], &job.context).expect("the device renders");
    let pipeline = build_pipeline(&job, &device).expect("a pipeline");
    let out = rig.tmp.path().join("out");
    let opts = RunOptions {
        output_dir: out.clone(),
        job_id: id.into(),
        verbosity: Verbosity::Quiet,
        tmp_root: rig.tmp.path().join("tmp"),
        tftp_root: tftp.dir.path().to_path_buf(),
        server_ip: "127.0.0.1".into(),
        limits: Default::default(),
        job_user: None,
        log_channel: None,
        log_stdout: false,
        coordinator,
        ssh_forward: None,
    };
    let outcome = run_job(job, device, &pipeline, &opts)
        .await
        .expect("the output directory is writable");
    (outcome, out)
}

/// `(definition, case) -> result` of a job.
fn results(out: &Path) -> BTreeMap<(String, String), String> {
    common::results(out)
        .into_iter()
        .map(|r| ((r.0, r.1), r.2))
        .collect()
}

fn result<'a>(r: &'a BTreeMap<(String, String), String>, def: &str, case: &str) -> Option<&'a str> {
    r.get(&(def.to_string(), case.to_string()))
        .map(String::as_str)
}

fn tail(out: &Path) -> String {
    let log = std::fs::read_to_string(out.join("output.yaml")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(80)..].join("\n")
}

const ROLES3: &str = "    group_size: 3\n    roles:\n      '101': server\n      '102': client\n      '103': client\n    timeout:\n      minutes: 2\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_and_two_clients_send_wait_sync_and_start_late() {
    let tftp = Tftpd::start();
    let group = Group::new(3);
    let (s, c1, c2) = (
        rig(&tftp, "mn-server"),
        rig(&tftp, "mn-c1"),
        rig(&tftp, "mn-c2"),
    );
    let server = sub_job(
        &s,
        "server",
        &format!("    sub_id: 0\n{ROLES3}"),
        &[
            "lava-test-case role --shell test \"$(lava-role)\" = server",
            "lava-test-case self --shell test \"$(lava-self)\" = 101",
            "lava-test-case group-clients --shell test \"$(lava-group client | tr '\\n' ' ')\" = '102 103 '",
            "lava-send ipv4 ipaddr=10.0.0.1",
            "lava-send lava_start",
            "lava-test-case sync --shell lava-sync done",
        ],
    );
    let client_steps = [
        "lava-test-case wait --shell lava-wait ipv4",
        "lava-test-case ipv4-in-cache --shell grep -qx 101:ipaddr=10.0.0.1 /tmp/lava_multi_node_cache.txt",
        "lava-test-case sync --shell lava-sync done",
    ];
    let client1 = sub_job(
        &c1,
        "client",
        &format!("    sub_id: 1\n{ROLES3}"),
        &client_steps,
    );
    let client2 = sub_job(
        &c2,
        "client",
        &format!("    sub_id: 2\n    request: lava-start\n    expect_role: server\n{ROLES3}"),
        &client_steps,
    );
    let ((so, sout), (c1o, c1out), (c2o, c2out)) = tokio::join!(
        run(
            &s,
            &tftp,
            "101",
            &server,
            Some(group.client("101", "server"))
        ),
        run(
            &c1,
            &tftp,
            "102",
            &client1,
            Some(group.client("102", "client"))
        ),
        run(
            &c2,
            &tftp,
            "103",
            &client2,
            Some(group.client("103", "client"))
        ),
    );
    for (o, out) in [(&so, &sout), (&c1o, &c1out), (&c2o, &c2out)] {
        assert!(o.complete, "{:?}\n{}", o.error, tail(out));
    }
    let r = results(&sout);
    for case in [
        "role",
        "self",
        "group-clients",
        "sync",
        "multinode-send-ipv4",
        "multinode-send-lava_start",
        "multinode-sync-done",
    ] {
        assert_eq!(
            result(&r, "0_mn", case),
            Some("pass"),
            "server {case}: {r:?}\n{}",
            tail(&sout)
        );
    }
    for out in [&c1out, &c2out] {
        let r = results(out);
        for case in [
            "wait",
            "ipv4-in-cache",
            "sync",
            "multinode-wait-ipv4",
            "multinode-sync-done",
        ] {
            assert_eq!(
                result(&r, "0_mn", case),
                Some("pass"),
                "client {case}: {r:?}"
            );
        }
    }
    // the late client started only after the server's lava-send lava_start
    let ev = group.events();
    let sent = ev
        .iter()
        .position(|e| e == "101 send lava_start")
        .expect("lava_start sent");
    let started = ev
        .iter()
        .position(|e| e == "103 wait_all lava_start answered")
        .expect("103 waited for lava_start");
    assert!(sent < started, "{ev:?}");
    let c2log = std::fs::read_to_string(c2out.join("output.yaml")).unwrap();
    let waited = c2log
        .find("delayed start: waiting for 'lava_start'")
        .expect("logged");
    let deployed = c2log.find("start: 1 tftp-deploy").expect("deploy started");
    assert!(
        waited < deployed,
        "the deploy starts after the delayed start"
    );
    let mut cleared = group.cleared();
    cleared.sort();
    assert_eq!(cleared, ["101", "102", "103"]);
    drop((s.board, c1.board, c2.board));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_nobody_answers_times_out_and_the_group_is_still_cleared() {
    let tftp = Tftpd::start();
    let group = Group::new(2);
    group.register("201", "server"); // a server that never sends
    let c = rig(&tftp, "mn-timeout");
    let job = sub_job(
        &c,
        "client",
        "    sub_id: 1\n    group_size: 2\n    roles:\n      '201': server\n      '202': client\n    timeout:\n      seconds: 5\n",
        &["lava-test-case wait --shell lava-wait ipv4"],
    );
    let (o, out) = run(&c, &tftp, "202", &job, Some(group.client("202", "client"))).await;
    assert!(!o.complete, "{}", tail(&out));
    let e = o.error.as_ref().expect("an error");
    assert!(e.message.contains("timed out"), "{e:?}");
    let r = results(&out);
    assert_eq!(
        result(&r, "0_mn", "multinode-wait-ipv4"),
        Some("fail"),
        "{r:?}"
    );
    assert_eq!(group.cleared(), ["202"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_to_wait_all_and_a_bad_message_id_fail_their_cases() {
    let tftp = Tftpd::start();
    let group = Group::new(2);
    group.register("301", "server");
    let c = rig(&tftp, "mn-nack");
    let job = sub_job(
        &c,
        "client",
        "    sub_id: 1\n    group_size: 2\n    roles:\n      '301': server\n      '302': client\n",
        &[
            "lava-test-case wait-all --shell lava-wait-all never_sent",
            "lava-test-case bad-id --shell lava-send bad-id",
            "lava-test-case bad-key --shell lava-send good bad-key=1",
            "lava-test-case group --shell test \"$(lava-group | wc -l)\" = 2",
        ],
    );
    let (o, out) = run(&c, &tftp, "302", &job, Some(group.client("302", "client"))).await;
    assert!(o.complete, "{:?}\n{}", o.error, tail(&out));
    let r = results(&out);
    assert_eq!(result(&r, "0_mn", "wait-all"), Some("fail"), "{r:?}");
    assert_eq!(
        result(&r, "0_mn", "multinode-wait_all-never_sent"),
        Some("fail"),
        "{r:?}"
    );
    assert_eq!(result(&r, "0_mn", "bad-id"), Some("fail"), "{r:?}");
    assert_eq!(result(&r, "0_mn", "bad-key"), Some("fail"), "{r:?}");
    assert_eq!(result(&r, "0_mn", "group"), Some("pass"), "{r:?}");
    assert!(
        !r.keys().any(|(_, case)| case.starts_with("multinode-send")),
        "nothing was sent: {r:?}"
    );
    assert!(group.events().iter().all(|e| !e.contains("send")));
}

#[tokio::test]
async fn a_sub_job_without_a_coordinator_fails_at_once() {
    let tftp = Tftpd::start();
    let c = rig(&tftp, "mn-none");
    let job = sub_job(
        &c,
        "client",
        "    sub_id: 1\n    group_size: 2\n",
        &["lava-sync x"],
    );
    let (o, out) = run(&c, &tftp, "402", &job, None).await;
    assert!(!o.complete);
    let e = o.error.expect("an error");
    assert!(e.message.contains("no coordinator"), "{e:?}");
    let r = results(&out);
    assert_eq!(
        result(&r, "lava", "tftp-deploy"),
        None,
        "no action ran: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_waits_at_its_start_and_keeps_the_value_it_asked_for() {
    let tftp = Tftpd::start();
    let group = Group::new(2);
    group.register("501", "server");
    let server = group.client("501", "server");
    server
        .send(
            "ipv4",
            [("ipv4".to_string(), "10.0.0.9".to_string())].into(),
        )
        .await
        .unwrap();
    let c = rig(&tftp, "mn-action");
    let job = with_boot_calls(
        &sub_job(
            &c,
            "client",
            "    sub_id: 1\n    group_size: 2\n    roles:\n      '501': server\n      '502': client\n",
            &["lava-test-case sync --shell lava-sync after_boot"],
        ),
        "      - action: uboot-action\n        request: lava-wait\n        messageID: ipv4\n        message:\n          ipv4: $IPV4\n        timeout:\n          seconds: 20\n",
    );
    let run_client = run(&c, &tftp, "502", &job, Some(group.client("502", "client")));
    let server_sync = async { server.sync("after_boot", Duration::from_secs(60)).await };
    let ((o, out), synced) = tokio::join!(run_client, server_sync);
    assert!(o.complete, "{:?}\n{}", o.error, tail(&out));
    assert_eq!(synced, Ok(()));
    let log = std::fs::read_to_string(out.join("output.yaml")).unwrap();
    let start = log.find("start: 2 uboot-action").expect("the boot ran");
    let call = log
        .find("Making protocol call for uboot-action using lava-multinode: lava-wait ipv4")
        .expect("the call was made");
    assert!(start < call, "made at the start of the named action");
    assert!(
        log.contains(r#"Setting namespace data key ipv4 to {\"ipv4\": \"10.0.0.9\"}"#),
        "the value is kept"
    );
}

/// `basalt run --coordinator` of the corpus client sub-job against basalt's coordinator
/// protected by a token the job's token file does not hold: the set-up's `group_data` is
/// refused (nack) and the job ends Incomplete before its first action; without the flag the
/// job says it needs one.
#[test]
fn basalt_run_takes_the_coordinator_flags() {
    let corpus = common::corpus();
    let job = corpus.join("jobs/multinode/dispatcher/kvm-multinode-client.yaml");
    let dict = corpus.join("devices/dictionaries/kvm01.jinja2");
    let types = corpus.join("devices/device-types");
    let tmp = TempDir::new("mn-cli");
    let token = tmp.path().join("token");
    std::fs::write(&token, "secret\n").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    listener.set_nonblocking(true).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let config = basalt_coordinator::tcp::Config {
        token: Some("another".into()),
        ..Default::default()
    };
    let _server = rt.spawn(basalt_coordinator::tcp::serve(
        rt.block_on(async { tokio::net::TcpListener::from_std(listener) })
            .unwrap(),
        config,
    ));
    let run = |extra: &[&std::ffi::OsStr], out: &str| {
        let out = tmp.path().join(out);
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_basalt"))
            .arg("run")
            .arg("-q")
            .arg(&job)
            .arg("--device")
            .arg(&dict)
            .arg("--device-types")
            .arg(&types)
            .arg("--output-dir")
            .arg(&out)
            .args(["--job-id", "124", "--no-confine", "--tftp-root"])
            .arg(tmp.path().join("tftp"))
            .args(extra)
            .output()
            .unwrap();
        let log = std::fs::read_to_string(out.join("output.yaml")).unwrap_or_default();
        (o.status.code(), log)
    };
    let (code, log) = run(
        &[
            "--coordinator".as_ref(),
            addr.as_ref(),
            "--coordinator-token-file".as_ref(),
            token.as_os_str(),
        ],
        "with",
    );
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("nack"), "{log}");
    assert!(!log.contains("start: 1 deployimages"), "no action ran");
    let (code, log) = run(&[], "without");
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("no coordinator was given"), "{log}");
}
