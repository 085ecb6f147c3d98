//! The master's link: a worker admitted by its key file speaks, each message arrives with
//! the name it was admitted under (whatever its Hello claims), garbage is reported and the
//! link goes on, and the master's answer reaches that worker's connection.

use basalt_link::cert::Keypair;
use basalt_link::zap;
use basalt_master::link::{LinkEvent, WorkerLink};
use basalt_proto::{
    decode, encode, Capabilities, HeartbeatAck, Hello, MasterMsg, ProtocolVersion, WorkerMsg,
};
use std::time::Duration;

async fn next_message(rx: &mut tokio::sync::mpsc::UnboundedReceiver<LinkEvent>) -> LinkEvent {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an event within 5 s")
            .expect("the link is up");
        if !matches!(ev, LinkEvent::Auth(_)) {
            return ev;
        }
    }
}

#[tokio::test]
async fn messages_carry_the_admitted_name() {
    let dir = tempfile::tempdir().unwrap();
    let admitted = dir.path().join("workers");
    let worker = Keypair::generate();
    worker.write(&admitted, "rack-1").unwrap();
    let master = Keypair::generate();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let link = WorkerLink::start("tcp://127.0.0.1:*", &master, admitted, tx).unwrap();
    let ctx = zmq::Context::new();
    let client = zap::client(&ctx, zmq::DEALER, &worker, &master.public, link.endpoint()).unwrap();
    // a Hello that claims another name
    let hello = WorkerMsg::Hello(Hello {
        version: ProtocolVersion::CURRENT,
        name: "rack-2".into(),
        software: None,
        capabilities: Capabilities::new(),
        devices: Vec::new(),
        jobs: Vec::new(),
    });
    client.send(encode(&hello), 0).unwrap();
    let conn = match next_message(&mut rx).await {
        LinkEvent::Message { conn, worker, msg } => {
            assert_eq!(worker, "rack-1", "the name comes from the admitted key");
            assert_eq!(msg, hello);
            conn
        }
        other => panic!("{other:?}"),
    };
    client.send("not json at all", 0).unwrap();
    match next_message(&mut rx).await {
        LinkEvent::Garbage { worker, error, .. } => {
            assert_eq!(worker, "rack-1");
            assert!(!error.is_empty());
        }
        other => panic!("{other:?}"),
    }
    link.send(&conn, MasterMsg::HeartbeatAck(HeartbeatAck {}));
    assert_eq!(client.poll(zmq::POLLIN, 5000).unwrap(), 1);
    let reply: MasterMsg = decode(&client.recv_bytes(0).unwrap()).unwrap();
    assert_eq!(reply, MasterMsg::HeartbeatAck(HeartbeatAck {}));
}
