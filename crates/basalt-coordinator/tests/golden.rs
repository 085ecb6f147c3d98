//! The transcript of Debian's lava-coordinator (lab-clients.md §4) replayed as raw frames, as
//! LAVA's polling client sends them: basalt's replies are byte-identical to the transcript,
//! and a longer request list gets byte-identical answers from both servers.

mod common;
use basalt_coordinator::Config;
use common::{exchange, framed, lava_request, Basalt, Lava};

const GROUP: &str = "5b7f1c2e-8d3a-4f6b-9e21-0c4d5a6b7c8d";

/// (who, request JSON, expected reply) of lab-clients.md §4.
fn transcript(group: &str) -> Vec<(String, &'static [u8])> {
    let a = |req: &str, extra: &str| lava_request(group, "10.0", "server", req, extra);
    let b = |req: &str, extra: &str| lava_request(group, "10.1", "client", req, extra);
    let size = r#", "group_size": 2"#;
    let sync = r#", "messageID": "s1", "message": null"#;
    vec![
        (a("group_data", size), b"00000014{\"response\": \"wait\"}".as_slice()),
        (
            b("group_data", size),
            b"00000049{\"response\": \"group_data\", \"roles\": {\"10.0\": \"server\", \"10.1\": \"client\"}}",
        ),
        (
            a("lava_send", r#", "messageID": "ipv4", "message": {"ipaddr": "10.0.0.1"}"#),
            b"00000013{\"response\": \"ack\"}",
        ),
        (
            b("lava_wait", r#", "messageID": "ipv4", "nodeID": "10.1""#),
            b"00000040{\"response\": \"ack\", \"message\": {\"10.0\": {\"ipaddr\": \"10.0.0.1\"}}}",
        ),
        (a("lava_sync", sync), b"00000014{\"response\": \"wait\"}"),
        (b("lava_sync", sync), b"00000014{\"response\": \"wait\"}"),
        (a("lava_sync", sync), b"00000024{\"response\": \"ack\", \"message\": \"s1\"}"),
        (b("lava_sync", sync), b"00000024{\"response\": \"ack\", \"message\": \"s1\"}"),
    ]
}

/// More requests: quirks and refusals that both servers must answer alike.
fn more(group: &str) -> Vec<Vec<u8>> {
    let a = |req: &str, extra: &str| lava_request(group, "10.0", "server", req, extra);
    let b = |req: &str, extra: &str| lava_request(group, "10.1", "client", req, extra);
    let mut reqs: Vec<String> = transcript(group).into_iter().map(|(r, _)| r).collect();
    reqs.extend([
        b("lava_wait_all", r#", "messageID": "never""#),
        b("lava_wait_all", r#", "messageID": "ipv4""#),
        b("lava_wait_all", r#", "messageID": "ipv4", "waitrole": "server""#),
        b("lava_send", r#", "messageID": "ipv4", "message": {"ipaddr": "10.0.0.2", "caf\u00e9": "\u00e9t\u00e9", "n": 1.5}"#),
        a("lava_wait_all", r#", "messageID": "ipv4""#),
        a("lava_wait", r#", "messageID": "ipv4""#),
        a("lava_wait", r#", "messageID": "nobody""#),
        a("lava_sync", r#", "messageID": "s2", "message": {"k": "v"}"#),
        b("lava_sync", r#", "messageID": "s2", "message": {"k": "v"}"#),
        b("lava_sync", r#", "messageID": "s2", "message": {"k": "v"}"#),
        a("lava_sync", r#", "messageID": "s2", "message": {"k": "v"}"#),
        a("no_such_request", ""),
        a("aggregate", r#", "bundle": "b", "sub_id": "10.1""#),
        format!(r#"{{"request": "group_data", "group_name": "{group}", "client_name": "", "role": "x", "hostname": "h"}}"#),
        lava_request("other-group-without-size", "7", "r", "group_data", ""),
        a("clear_group", r#", "group_size": 2"#),
        b("clear_group", r#", "group_size": 2"#),
    ]);
    let mut frames: Vec<Vec<u8>> = reqs.iter().map(|r| framed(r)).collect();
    frames.push(framed(r#"{"client_name": "1"}"#));
    frames
}

#[test]
fn transcript_is_byte_identical() {
    let basalt = Basalt::start(Config::default());
    for (n, (req, want)) in transcript(GROUP).into_iter().enumerate() {
        let got = exchange(&basalt.addr, &framed(&req));
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want),
            "step {n}: {req}"
        );
    }
}

#[test]
fn both_servers_answer_alike() {
    let lava = Lava::start(3);
    let basalt = Basalt::start(Config::default());
    let group = format!("interop-{}", std::process::id());
    for (n, frame) in more(&group).into_iter().enumerate() {
        let from_lava = exchange(&lava.addr, &frame);
        let from_basalt = exchange(&basalt.addr, &frame);
        assert_eq!(
            String::from_utf8_lossy(&from_basalt),
            String::from_utf8_lossy(&from_lava),
            "request {n}: {}",
            String::from_utf8_lossy(&frame)
        );
        assert!(!from_lava.is_empty(), "request {n}: LAVA answered nothing");
    }
    // and LAVA's own server gives the transcript too
    let fresh = format!("transcript-{}", std::process::id());
    for (req, want) in transcript(&fresh) {
        assert_eq!(exchange(&lava.addr, &framed(&req)), want.to_vec(), "{req}");
    }
}
