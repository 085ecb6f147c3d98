//! LAVA's events: the time from a state change committed in the store to its five frames at a
//! subscriber (a ZeroMQ SUB socket on the same machine), over `BASALT_EVENTS_N` (1,000) device
//! health changes, each waited for before the next. Prints p50, p99 and max (goal: p99 ≤ 10 ms).

use basalt_master::events::Publisher;
use basalt_master::model::{DeviceHealth, DeviceState};
use basalt_master::store::{Device, DeviceType, Store};
use std::time::{Duration, Instant};

fn main() {
    let n: usize = std::env::var("BASALT_EVENTS_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let publisher = Publisher::start("tcp://127.0.0.1:*", "org.lavasoftware").expect("publisher");
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open(&dir.path().join("basalt.db"))
        .expect("store")
        .observe(publisher.observer());
    store
        .put_device_type(&DeviceType {
            name: "qemu".into(),
            health_check: None,
        })
        .expect("device type");
    store.add_worker("w1", "").expect("worker");
    store
        .add_device(&Device {
            hostname: "d1".into(),
            device_type: "qemu".into(),
            worker: "w1".into(),
            description: String::new(),
            tags: Vec::new(),
            dictionary: None,
            state: DeviceState::Idle,
            health: DeviceHealth::Good,
            current_job: None,
        })
        .expect("device");
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB).expect("SUB");
    sub.connect(publisher.endpoint()).expect("connect");
    sub.set_subscribe(b"org.lavasoftware.device")
        .expect("subscribe");
    // a SUB socket receives only once connected: change the device until one arrives
    let mut health = DeviceHealth::Good;
    let flip = |h: DeviceHealth| {
        if h == DeviceHealth::Good {
            DeviceHealth::Unknown
        } else {
            DeviceHealth::Good
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no event within 10 s");
        health = flip(health);
        store.set_device_health("d1", health, 1).expect("health");
        if sub.poll(zmq::POLLIN, 100).expect("poll") > 0 {
            sub.recv_multipart(0).expect("frames");
            break;
        }
    }
    while sub.poll(zmq::POLLIN, 50).expect("poll") > 0 {
        sub.recv_multipart(0).expect("frames");
    }
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        health = flip(health);
        let t0 = Instant::now();
        store.set_device_health("d1", health, 1).expect("health");
        assert!(sub.poll(zmq::POLLIN, 5_000).expect("poll") > 0, "an event");
        let frames = sub.recv_multipart(0).expect("frames");
        lat.push(t0.elapsed());
        assert_eq!(frames.len(), 5);
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "events: {n} device changes, store commit -> SUB frames: p50 {:?}, p99 {:?}, max {:?}",
        p(0.50),
        p(0.99),
        lat[lat.len() - 1]
    );
}
