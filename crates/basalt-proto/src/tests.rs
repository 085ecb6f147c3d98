//! Wire tests: every message round trips, bad input gives errors (never panics), older and
//! newer minors decode, and the exactly-once rule of log batches.

use super::*;

fn record(seq: u64, lvl: &str, msg: &str) -> LogRecord {
    LogRecord {
        lvl: lvl.to_owned(),
        line: format!(
            "- {{\"dt\": \"2026-08-21T16:25:{seq:02}.123456+00:00\", \"lvl\": \"{lvl}\", \"msg\": \"{msg}\"}}\n"
        ),
    }
}

fn device(hostname: &str, state: LocalDeviceState, job_id: Option<JobId>) -> DeviceReport {
    DeviceReport {
        hostname: hostname.to_owned(),
        device_type: "qemu".to_owned(),
        state,
        job_id,
    }
}

/// One of every worker message, every field set.
fn worker_samples() -> Vec<WorkerMsg> {
    let devices = vec![
        device("qemu-01", LocalDeviceState::Busy, Some(JobId(42))),
        device("bbb-01", LocalDeviceState::Offline, None),
    ];
    vec![
        Hello {
            version: ProtocolVersion::CURRENT,
            name: "rack-1".to_owned(),
            software: Some("basalt-worker 0.1.0".to_owned()),
            capabilities: [
                Capability::QEMU,
                Capability::TFTP,
                Capability::new("lab-probe"),
            ]
            .into_iter()
            .collect(),
            devices: devices.clone(),
            jobs: vec![HeldJob {
                job_id: JobId(42),
                ended: false,
                first_unacked: 18,
                last_seq: 20,
            }],
        }
        .into(),
        Heartbeat {
            jobs: vec![JobId(42)],
        }
        .into(),
        Inventory { devices }.into(),
        Status {
            job_id: JobId(42),
            state: JobPhase::Canceling,
            action: Some(CurrentAction {
                level: "1.2.3".to_owned(),
                name: "tftp-deploy".to_owned(),
            }),
        }
        .into(),
        LogBatch {
            job_id: JobId(42),
            first_seq: 18,
            records: vec![
                record(
                    18,
                    "info",
                    "start: 1 tftp-deploy (timeout 00:02:00) [common]",
                ),
                record(19, "target", "U-Boot 2024.01 \\\"quoted\\\" \u{ef9b}[0m é"),
                record(20, "results", "{}"),
            ],
        }
        .into(),
        End {
            job_id: JobId(42),
            outcome: Outcome::Incomplete,
            error_type: Some(ErrorType::LavaTimeout),
            error_msg: Some("tftp-deploy timed out after 120 seconds".to_owned()),
            cause: Some(crate::FailureCause::Infrastructure),
            results: "- {definition: lava, case: job, result: fail}\n".to_owned(),
            last_seq: 20,
            description: Some("- level: '1'\n  name: tftp-deploy\n".to_owned()),
        }
        .into(),
        Goodbye {
            reason: "shutting down".to_owned(),
        }
        .into(),
        HoldState {
            job_id: JobId(44),
            state: HoldPhase::Ready,
            connection: Connection {
                console: Some(ConsoleEndpoint {
                    host: "127.0.0.1".to_owned(),
                    port: 7100,
                }),
                ssh: Some(SshEndpoint {
                    host: "127.0.0.1".to_owned(),
                    port: 7101,
                    user: "root".to_owned(),
                }),
            },
            reason: Some("none".to_owned()),
        }
        .into(),
        HoldReply {
            job_id: JobId(44),
            request_id: 3,
            result: HoldResult::Exec {
                output: "hi\n".to_owned(),
                exit_status: 1,
                truncated: true,
            },
        }
        .into(),
    ]
}

/// One of every master message, every field set.
fn master_samples() -> Vec<MasterMsg> {
    vec![
        Welcome {
            version: ProtocolVersion::CURRENT,
            heartbeat_interval_secs: DEFAULT_HEARTBEAT_INTERVAL_SECS,
            resume: vec![JobResume {
                job_id: JobId(42),
                next_seq: 18,
            }],
            discard: vec![JobId(7)],
            max_batch_bytes: 65536,
        }
        .into(),
        Refused {
            reason: "worker `rack-1` lacks a required capability: `u-boot`".to_owned(),
        }
        .into(),
        HelloRequired {}.into(),
        Start {
            job_id: JobId(43),
            device: "qemu-01".to_owned(),
            definition: "job_name: smoke\ntimeouts:\n  job: {minutes: 10}\n".to_owned(),
            device_config: "actions:\n  boot:\n    methods: {qemu: {}}\n".to_owned(),
            job_timeout_secs: 600,
            health_check: true,
            coordinator: Some("127.0.0.1:3079".into()),
            coordinator_token: Some("t0ken".into()),
            lease: Some(Lease {
                reservation_id: 43,
                console_token: "c0nsole".into(),
                watch_token: "w4tch".into(),
                ssh_public_key: Some("ssh-ed25519 AAAA test".into()),
                ssh_user: Some("root".into()),
                forward_ssh: true,
            }),
        }
        .into(),
        Hold {
            job_id: JobId(43),
            request_id: 3,
            action: HoldAction::Exec {
                command: "uname -a".into(),
                timeout_secs: 60,
            },
        }
        .into(),
        Cancel { job_id: JobId(43) }.into(),
        LogAck {
            job_id: JobId(42),
            seq: 17,
            resend: true,
        }
        .into(),
        EndAck { job_id: JobId(42) }.into(),
        HeartbeatAck {}.into(),
    ]
}

/// The `type` field of encoded bytes.
fn wire_type(bytes: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    v["type"].as_str().unwrap().to_owned()
}

fn round_trips<M: Message + PartialEq + std::fmt::Debug>(samples: &[M]) {
    let mut seen: Vec<&str> = Vec::new();
    for msg in samples {
        let bytes = encode(msg);
        assert_eq!(decode::<M>(&bytes).as_ref(), Ok(msg), "{}", msg.type_name());
        assert_eq!(wire_type(&bytes), msg.type_name());
        seen.push(msg.type_name());
    }
    let mut all = M::TYPES.to_vec();
    all.sort_unstable();
    seen.sort_unstable();
    assert_eq!(seen, all, "one sample of every {} message", M::SENDER);
}

#[test]
fn every_worker_message_round_trips() {
    round_trips(&worker_samples());
}

#[test]
fn every_master_message_round_trips() {
    round_trips(&master_samples());
}

#[test]
fn messages_are_internally_tagged_objects() {
    let ack = MasterMsg::from(LogAck {
        job_id: JobId(42),
        seq: 17,
        resend: false,
    });
    assert_eq!(
        String::from_utf8(encode(&ack)).unwrap(),
        r#"{"type":"log_ack","job_id":42,"seq":17,"resend":false}"#
    );
    assert_eq!(
        String::from_utf8(encode(&MasterMsg::from(HeartbeatAck {}))).unwrap(),
        r#"{"type":"heartbeat_ack"}"#
    );
    let hello: WorkerMsg = decode(
        br#"{"type":"hello","version":{"major":1,"minor":0},"name":"rack-1",
             "capabilities":["tftp","qemu"]}"#,
    )
    .unwrap();
    let WorkerMsg::Hello(hello) = hello else {
        panic!("not a hello: {hello:?}");
    };
    assert!(hello.capabilities.contains(&Capability::QEMU));
}

#[test]
fn log_lines_travel_byte_for_byte() {
    let WorkerMsg::LogBatch(batch) = &worker_samples()[4] else {
        panic!("sample 4 is the log batch");
    };
    let bytes = encode(&WorkerMsg::LogBatch(batch.clone()));
    let Ok(WorkerMsg::LogBatch(back)) = decode::<WorkerMsg>(&bytes) else {
        panic!("the batch decodes");
    };
    for (sent, got) in batch.records.iter().zip(&back.records) {
        assert_eq!(sent.line.as_bytes(), got.line.as_bytes());
    }
    assert_eq!(back.seqs(), 18..21);
}

#[test]
fn the_complete_lines_of_the_example_in_protocol_md_decode() {
    let worker: &[&str] = &[
        r#"{"type":"hello","version":{"major":1,"minor":0},"name":"rack-1","capabilities":["qemu","tftp"],
            "devices":[{"hostname":"qemu-01","device_type":"qemu","state":"idle"}],"jobs":[]}"#,
        r#"{"type":"heartbeat","jobs":[]}"#,
        r#"{"type":"status","job_id":42,"state":"running"}"#,
    ];
    let master: &[&str] = &[
        r#"{"type":"welcome","version":{"major":1,"minor":0},"heartbeat_interval_secs":20,"resume":[],
            "discard":[],"max_batch_bytes":1048576}"#,
        r#"{"type":"heartbeat_ack"}"#,
        r#"{"type":"log_ack","job_id":42,"seq":17,"resend":false}"#,
        r#"{"type":"hello_required"}"#,
        r#"{"type":"end_ack","job_id":42}"#,
    ];
    for line in worker {
        assert!(decode::<WorkerMsg>(line.as_bytes()).is_ok(), "{line}");
    }
    for line in master {
        assert!(decode::<MasterMsg>(line.as_bytes()).is_ok(), "{line}");
    }
}

#[test]
fn the_exactly_once_rule() {
    let batch = LogBatch {
        job_id: JobId(42),
        first_seq: 5,
        records: (5..9).map(|s| record(s, "info", "x")).collect(),
    };
    // Expected next: exactly the batch's first record: all stored.
    assert_eq!(batch.records_from(5).map(<[_]>::len), Ok(4));
    // Overlapping a resend: the duplicates are dropped, the rest stored.
    assert_eq!(batch.records_from(7), Ok(&batch.records[2..]));
    // All duplicates: nothing stored (the master acks again what it has).
    assert_eq!(batch.records_from(9).map(<[_]>::len), Ok(0));
    assert_eq!(batch.records_from(u64::MAX).map(<[_]>::len), Ok(0));
    // A gap: nothing stored; the master acks 3 with resend.
    let gap = batch.records_from(4).unwrap_err();
    assert_eq!(
        gap.to_string(),
        "log records 4..5 of job 42 are missing: the batch starts at 5"
    );
}

#[test]
fn an_older_minor_without_optional_fields_decodes() {
    // A peer of an older minor sends none of the fields marked `#[serde(default)]`.
    let hello: WorkerMsg = decode(
        br#"{"type":"hello","version":{"major":1,"minor":0},"name":"rack-1","capabilities":[]}"#,
    )
    .unwrap();
    assert_eq!(
        hello,
        WorkerMsg::Hello(Hello {
            version: ProtocolVersion::new(1, 0),
            name: "rack-1".to_owned(),
            software: None,
            capabilities: Capabilities::new(),
            devices: vec![],
            jobs: vec![],
        })
    );
    let welcome: MasterMsg = decode(
        br#"{"type":"welcome","version":{"major":1,"minor":0},"heartbeat_interval_secs":20}"#,
    )
    .unwrap();
    let MasterMsg::Welcome(welcome) = welcome else {
        panic!("not a welcome");
    };
    assert_eq!(welcome.max_batch_bytes, DEFAULT_MAX_BATCH_BYTES);
    assert!(welcome.resume.is_empty() && welcome.discard.is_empty());
    let end: WorkerMsg =
        decode(br#"{"type":"end","job_id":3,"outcome":"complete","last_seq":0}"#).unwrap();
    assert!(
        matches!(end, WorkerMsg::End(End { error_type: None, ref results, .. }) if results.is_empty())
    );
    let ack: MasterMsg = decode(br#"{"type":"log_ack","job_id":3,"seq":9}"#).unwrap();
    assert!(matches!(
        ack,
        MasterMsg::LogAck(LogAck { resend: false, .. })
    ));
    assert!(matches!(
        decode::<MasterMsg>(br#"{"type":"start","job_id":1,"device":"d","definition":"","device_config":"","job_timeout_secs":1}"#),
        Ok(MasterMsg::Start(Start { health_check: false, .. }))
    ));
}

#[test]
fn a_newer_minor_with_unknown_fields_and_names_decodes() {
    let hb: WorkerMsg =
        decode(br#"{"type":"heartbeat","jobs":[1],"load":{"cpu":0.5},"new":null}"#).unwrap();
    assert_eq!(
        hb,
        WorkerMsg::Heartbeat(Heartbeat {
            jobs: vec![JobId(1)]
        })
    );
    let inv: WorkerMsg = decode(
        br#"{"type":"inventory","devices":[{"hostname":"d","device_type":"t","state":"rebooting","power":"on"}]}"#,
    )
    .unwrap();
    let WorkerMsg::Inventory(inv) = inv else {
        panic!("not an inventory");
    };
    assert_eq!(inv.devices[0].state, LocalDeviceState::Unknown);
    let end: WorkerMsg = decode(
        br#"{"type":"end","job_id":3,"outcome":"incomplete","error_type":"FastbootDeviceNotFound","last_seq":2}"#,
    )
    .unwrap();
    let WorkerMsg::End(end) = end else {
        panic!("not an end");
    };
    assert_eq!(
        end.error_type,
        Some(ErrorType::Other("FastbootDeviceNotFound".to_owned()))
    );
    assert_eq!(
        ErrorType::from("LAVATimeout".to_owned()),
        ErrorType::LavaTimeout
    );
}

#[test]
fn bad_input_gives_errors_that_say_what_is_wrong() {
    let w = |bytes: &[u8]| decode::<WorkerMsg>(bytes).unwrap_err();
    assert_eq!(w(b""), DecodeError::Empty);
    assert_eq!(w(b"  \n"), DecodeError::Empty);
    assert_eq!(w(b"[\"heartbeat\"]"), DecodeError::NotAnObject);
    assert_eq!(w(b"null"), DecodeError::NotAnObject);
    assert!(matches!(
        w(b"{\"type\":"),
        DecodeError::Truncated { line: 1, .. }
    ));
    assert!(matches!(w(b"{\"type\" 1}"), DecodeError::Malformed { .. }));
    assert!(matches!(
        w(b"{\"type\":\"heartbeat\"} x"),
        DecodeError::Malformed { .. }
    ));
    assert!(matches!(
        w(b"{\"type\":\"goodbye\",\"reason\":\"\xff\"}"),
        DecodeError::Malformed { .. }
    ));
    assert_eq!(w(b"{\"job_id\":1}"), DecodeError::MissingType);
    assert_eq!(w(b"{\"type\":7}"), DecodeError::TypeNotAString);

    let unknown = w(br#"{"type":"reboot","job_id":1}"#);
    assert!(
        matches!(&unknown, DecodeError::UnknownType { type_name, .. } if type_name == "reboot")
    );
    assert_eq!(
        unknown.to_string(),
        "unknown worker message type `reboot` (known: hello, heartbeat, inventory, status, \
         log_batch, end, goodbye, hold_state, hold_reply)"
    );
    assert_eq!(
        w(br#"{"type":"welcome"}"#).to_string(),
        "`welcome` is a message the master sends, not one it receives"
    );
    assert_eq!(
        decode::<MasterMsg>(br#"{"type":"hello"}"#)
            .unwrap_err()
            .to_string(),
        "`hello` is a message the worker sends, not one it receives"
    );

    let invalid = w(br#"{"type":"log_batch","job_id":1,"first_seq":"one","records":[]}"#);
    let DecodeError::Invalid { type_name, reason } = &invalid else {
        panic!("not an invalid-field error: {invalid:?}");
    };
    assert_eq!(type_name, "log_batch");
    assert!(reason.contains("invalid type: string \"one\""), "{reason}");
    let missing = w(br#"{"type":"end","job_id":1,"outcome":"complete"}"#).to_string();
    assert!(
        missing.contains("invalid `end` message: missing field `last_seq`"),
        "{missing}"
    );
    let outcome = w(br#"{"type":"end","job_id":1,"outcome":"won","last_seq":0}"#).to_string();
    assert!(outcome.contains("unknown variant `won`"), "{outcome}");
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let mut big = b"{\"type\":\"goodbye\",\"reason\":\"".to_vec();
    big.resize(MAX_MESSAGE_BYTES - 2, b'x');
    big.extend_from_slice(b"\"}");
    assert!(
        decode::<WorkerMsg>(&big).is_ok(),
        "exactly the limit decodes"
    );
    big.insert(30, b'x');
    assert_eq!(
        decode::<WorkerMsg>(&big),
        Err(DecodeError::TooLarge {
            len: MAX_MESSAGE_BYTES + 1,
            max: MAX_MESSAGE_BYTES
        })
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let mut deep = b"{\"type\":\"heartbeat\",\"x\":".to_vec();
    deep.extend(std::iter::repeat_n(b'[', 100_000));
    assert!(decode::<WorkerMsg>(&deep).is_err());
}

/// xorshift64*: a fixed-seed generator, enough to fuzz without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes a mutation likes to insert: JSON's structure and a few troublemakers.
const INTERESTING: &[u8] = b"{}[]\":,0-9.eE\\tnulrsfa \xff\xc3";

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..=rng.below(3) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(6) {
            0 if at < bytes.len() => bytes[at] ^= 1 << rng.below(8),
            1 => bytes.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            2 if at < bytes.len() => {
                bytes.remove(at);
            }
            3 => bytes.truncate(at),
            4 if at < bytes.len() => bytes[at] = INTERESTING[rng.below(INTERESTING.len())],
            _ => {
                let end = (at + rng.below(16)).min(bytes.len());
                let piece = bytes[at..end].to_vec();
                bytes.splice(at..at, piece);
            }
        }
    }
}

/// Decodes; whatever decodes must encode and decode to itself.
fn decode_checked<M: Message + PartialEq + std::fmt::Debug>(bytes: &[u8]) -> bool {
    match decode::<M>(bytes) {
        Ok(msg) => {
            assert_eq!(decode::<M>(&encode(&msg)).as_ref(), Ok(&msg));
            true
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            false
        }
    }
}

#[test]
fn fuzzed_input_never_panics() {
    let mut rng = Rng(0x5eed_ba5a_17ed_0001);
    for _ in 0..20_000 {
        let len = rng.below(48);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if rng.below(2) == 0 {
            bytes.insert(0, b'{');
        }
        decode_checked::<WorkerMsg>(&bytes);
        decode_checked::<MasterMsg>(&bytes);
    }
    let valid: Vec<Vec<u8>> = worker_samples()
        .iter()
        .map(encode)
        .chain(master_samples().iter().map(encode))
        .collect();
    let mut decoded = 0;
    for round in 0..30_000 {
        let mut bytes = valid[round % valid.len()].clone();
        mutate(&mut rng, &mut bytes);
        if decode_checked::<WorkerMsg>(&bytes) | decode_checked::<MasterMsg>(&bytes) {
            decoded += 1;
        }
    }
    // Some mutations (in a string's content) leave a valid message: the checks above ran on them.
    assert!(decoded > 0);
}
