//! basalt's front: held requests answered the moment they are satisfied, `wait` at their
//! timeout, token refusal, and bad clients (garbage, huge lengths, slowloris, too many
//! connections) that do not hurt the others.

mod common;
use basalt_coordinator::Config;
use common::{exchange, framed, lava_request, Basalt};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const G: &str = "7d1e0b9a-1111-4c2d-8e3f-a0b1c2d3e4f5";

/// Sends a held request and keeps the connection (write side open).
fn held(addr: &str, json: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&framed(json)).unwrap();
    s
}

fn reply(mut s: TcpStream) -> String {
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn hold_keys(extra: &str, timeout: f64) -> String {
    format!(r#"{extra}, "basalt_hold": true, "timeout": {timeout}"#)
}

#[test]
fn held_requests_are_answered_when_satisfied() {
    let srv = Basalt::start(Config::default());
    let a = |req: &str, extra: &str| lava_request(G, "1", "server", req, extra);
    let b = |req: &str, extra: &str| lava_request(G, "2", "client", req, extra);
    let size = r#", "group_size": 2"#;

    let a_group = held(&srv.addr, &a("group_data", &hold_keys(size, 30.0)));
    // B polls (as LAVA's client); its registration releases A's held request (or, if B came
    // first, A's is answered as it arrives)
    let t = Instant::now();
    assert!(common::wait_until(Duration::from_secs(5), || {
        String::from_utf8_lossy(&exchange(&srv.addr, &framed(&b("group_data", size))))
            .contains("group_data")
    }));
    let a_got = reply(a_group);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "held {:?}",
        t.elapsed()
    );
    // registration order decides the order of the roles
    let roles = [
        "{\"1\": \"server\", \"2\": \"client\"}",
        "{\"2\": \"client\", \"1\": \"server\"}",
    ]
    .map(|r| {
        String::from_utf8(framed(&format!(
            "{{\"response\": \"group_data\", \"roles\": {r}}}"
        )))
        .unwrap()
    });
    assert!(roles.contains(&a_got), "{a_got}");

    let b_wait = held(
        &srv.addr,
        &b("lava_wait", &hold_keys(r#", "messageID": "ip""#, 30.0)),
    );
    let t = Instant::now();
    exchange(
        &srv.addr,
        &framed(&a(
            "lava_send",
            r#", "messageID": "ip", "message": {"ipaddr": "10.0.0.1"}"#,
        )),
    );
    assert_eq!(
        reply(b_wait),
        String::from_utf8(framed(
            r#"{"response": "ack", "message": {"1": {"ipaddr": "10.0.0.1"}}}"#
        ))
        .unwrap()
    );
    assert!(t.elapsed() < Duration::from_secs(2));

    // a sync: the first holds, the last is answered at once and releases the first
    let sync = hold_keys(r#", "messageID": "s", "message": null"#, 30.0);
    let a_sync = held(&srv.addr, &a("lava_sync", &sync));
    let t = Instant::now();
    let b_sync = reply(held(&srv.addr, &b("lava_sync", &sync)));
    let a_sync = reply(a_sync);
    assert!(t.elapsed() < Duration::from_secs(2));
    for r in [a_sync, b_sync] {
        assert_eq!(
            r,
            String::from_utf8(framed(r#"{"response": "ack", "message": "s"}"#)).unwrap()
        );
    }
}

#[test]
fn a_held_request_gets_wait_at_its_timeout_and_a_leaver_is_forgotten() {
    let srv = Basalt::start(Config::default());
    let a = |req: &str, extra: &str| lava_request(G, "1", "server", req, extra);
    let t = Instant::now();
    let s = held(
        &srv.addr,
        &a(
            "lava_wait",
            &hold_keys(r#", "messageID": "x", "group_size": 2"#, 0.3),
        ),
    );
    assert_eq!(reply(s), "00000014{\"response\": \"wait\"}");
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(t.elapsed() < Duration::from_secs(5));

    // leaves while held; the state machine goes on for the others
    drop(held(
        &srv.addr,
        &a("lava_wait", &hold_keys(r#", "messageID": "y""#, 30.0)),
    ));
    exchange(
        &srv.addr,
        &framed(&a(
            "lava_send",
            r#", "messageID": "y", "message": {"k": "v"}"#,
        )),
    );
    let got = exchange(&srv.addr, &framed(&a("lava_wait", r#", "messageID": "y""#)));
    assert!(String::from_utf8_lossy(&got).contains(r#""1": {"k": "v"}"#));
}

#[test]
fn a_token_protected_server_refuses_requests_without_it() {
    let srv = Basalt::start(Config {
        token: Some("sekrit".into()),
        ..Config::default()
    });
    let req = |extra: &str| {
        lava_request(
            G,
            "1",
            "server",
            "group_data",
            &format!(r#", "group_size": 1{extra}"#),
        )
    };
    let nack = b"00000014{\"response\": \"nack\"}".to_vec();
    assert_eq!(exchange(&srv.addr, &framed(&req(""))), nack);
    assert_eq!(
        exchange(&srv.addr, &framed(&req(r#", "basalt_token": "wrong""#))),
        nack
    );
    let ok = exchange(&srv.addr, &framed(&req(r#", "basalt_token": "sekrit""#)));
    assert!(String::from_utf8_lossy(&ok).contains(r#""roles": {"1": "server"}"#));
}

#[test]
fn bad_frames_are_closed_without_a_reply() {
    let srv = Basalt::start(Config {
        max_request: 0xFFFF,
        ..Config::default()
    });
    assert!(exchange(&srv.addr, b"zzzzzzzz{}").is_empty());
    assert!(exchange(&srv.addr, b"FFFFFFFF{").is_empty());
    assert!(exchange(&srv.addr, b"00000004{]]}").is_empty());
    assert!(exchange(&srv.addr, b"00000010{}").is_empty()); // ends early
    assert!(exchange(&srv.addr, b"00000002\xff\xff").is_empty());
    // the server still answers
    let ok = exchange(&srv.addr, &framed(r#"{"request": "x"}"#));
    assert_eq!(ok, b"00000014{\"response\": \"nack\"}".to_vec());
}

#[test]
fn slow_and_idle_clients_do_not_stall_the_others() {
    let srv = Basalt::start(Config {
        read_timeout: Duration::from_millis(500),
        max_connections: 4,
        ..Config::default()
    });
    // slowloris: half a header, then nothing
    let mut slow: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(&srv.addr).unwrap();
            s.write_all(b"0000").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        })
        .collect();
    let t = Instant::now();
    let ok = exchange(&srv.addr, &framed(r#"{"request": "x"}"#));
    assert_eq!(ok, b"00000014{\"response\": \"nack\"}".to_vec());
    assert!(
        t.elapsed() < Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    // one more fills the slots: the next is closed at once instead of queued
    let _fourth = TcpStream::connect(&srv.addr).unwrap();
    assert!(common::wait_until(Duration::from_secs(5), || exchange(
        &srv.addr,
        &framed(r#"{"request": "x"}"#)
    )
    .is_empty()));
    // the slow ones are dropped at the read timeout, and the server serves again
    for s in &mut slow {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).unwrap(), 0);
    }
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(common::wait_until(Duration::from_secs(5), || !exchange(
        &srv.addr,
        &framed(r#"{"request": "x"}"#)
    )
    .is_empty()));
}
