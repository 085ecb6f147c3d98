//! A job run in-process with a channel sink (`RunOptions::log_channel`): the channel gets every
//! record of `output.yaml`, in order, numbered 1, 2, 3, … The job is the demo job (the Debian
//! kernel and busybox initramfs of hw-tests/build-fixtures.sh in QEMU, three test cases), so the
//! log has console lines, input, results and the job's own records.

mod common;

use basalt::device::Device;
use basalt::job::parse_job;
use basalt::log::{Record, Verbosity};
use basalt::pipeline::build_pipeline;
use basalt::run::{run_job, RunOptions};
use basalt::yaml::{emit_flow, Node};
use common::{fixtures_amd64, TempDir};
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A node as one line of YAML flow text, to compare nodes.
fn flow(n: &Node) -> String {
    let mut s = String::new();
    emit_flow(n, &mut s);
    s
}

#[tokio::test]
async fn a_channel_sink_gets_every_record_of_output_yaml_in_order() {
    let (k, i) = fixtures_amd64();
    let text = std::fs::read_to_string(repo().join("config/jobs/demo-qemu.yaml"))
        .expect("demo job")
        .replace("@KERNEL@", &k.to_string_lossy())
        .replace("@INITRD@", &i.to_string_lossy());
    let (job, _) = parse_job("demo-qemu.yaml", &text).expect("the demo job is valid");
    let device = Device::load(
        &repo().join("config/devices/qemu-amd64.jinja2"),
        &[],
        &job.context,
    )
    .expect("the device renders");
    let pipeline = build_pipeline(&job, &device).expect("a pipeline");
    let tmp = TempDir::new("log-sink");
    let (tx, mut rx) = basalt::log::channel();
    let opts = RunOptions {
        output_dir: tmp.path().join("out"),
        job_id: "1".into(),
        verbosity: Verbosity::Quiet,
        tmp_root: tmp.path().join("tmp"),
        tftp_root: tmp.path().join("tftp"),
        server_ip: "127.0.0.1".into(),
        limits: Default::default(),
        job_user: None,
        log_channel: Some(tx),
        log_stdout: false,
        coordinator: None,
        ssh_forward: None,
    };
    let outcome = run_job(job, device, &pipeline, &opts)
        .await
        .expect("the output directory is writable");
    assert!(outcome.complete, "the job is Complete: {:?}", outcome.error);

    let mut got: Vec<Record> = Vec::new();
    while let Ok(r) = rx.try_recv() {
        got.push(r);
    }
    let raw = std::fs::read_to_string(opts.output_dir.join("output.yaml")).expect("output.yaml");
    let doc = basalt::yaml::load(&raw).expect("output.yaml is YAML");
    let records = doc.as_seq().expect("a sequence of records");
    assert!(
        records.len() > 100,
        "a whole job's log: {} records",
        records.len()
    );
    assert_eq!(got.len(), records.len(), "one channel record per record");
    let lines: Vec<&str> = raw.lines().collect();
    let mut targets = 0;
    for (n, (sent, rec)) in got.iter().zip(records).enumerate() {
        assert_eq!(sent.seq, n as u64 + 1, "consecutive sequence numbers");
        let lvl = rec.get("lvl").and_then(Node::as_str);
        assert_eq!(Some(sent.level.name()), lvl, "record {}", sent.seq);
        let msg = rec.get("msg").expect("a msg");
        assert_eq!(flow(&sent.msg), flow(msg), "record {}", sent.seq);
        assert_eq!(
            rec.get("dt").and_then(Node::as_str),
            Some(sent.dt.as_str()),
            "record {}",
            sent.seq
        );
        assert_eq!(
            sent.line.trim_end_matches('\n'),
            lines[n],
            "record {}",
            sent.seq
        );
        targets += usize::from(lvl == Some("target"));
    }
    assert!(targets > 50, "console lines went through: {targets}");
    assert!(got.iter().any(|r| r.level == basalt::log::Level::Input));
    assert!(got.iter().any(|r| r.level == basalt::log::Level::Results));
}
