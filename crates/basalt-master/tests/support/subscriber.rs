//! Test support: LAVA's events as a LAVA client sees them, through a pyzmq subscriber
//! (Debian's python3-zmq) that prints each message's frames as a JSON list. Shared by the
//! event tests here and the failure tests of the lab.

#![allow(dead_code)]
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const SUBSCRIBER: &str = r#"
import json, sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.SUB)
s.connect(sys.argv[1])
s.setsockopt_string(zmq.SUBSCRIBE, sys.argv[2])
while True:
    frames = s.recv_multipart()
    print(json.dumps([f.decode("utf-8") for f in frames]), flush=True)
"#;

/// The python subscriber, killed when dropped.
pub struct Subscriber {
    child: Child,
    lines: mpsc::Receiver<Vec<String>>,
}

impl Subscriber {
    pub fn start(endpoint: &str, topic: &str) -> Subscriber {
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", SUBSCRIBER, endpoint, topic])
            .stdout(Stdio::piped())
            .spawn()
            .expect("/usr/bin/python3 with python3-zmq (scripts/install-deps.sh)");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let frames: Vec<String> = serde_json::from_str(&line).expect("a JSON list");
                if tx.send(frames).is_err() {
                    break;
                }
            }
        });
        Subscriber { child, lines }
    }

    pub fn next(&self, within: Duration) -> Option<Vec<String>> {
        self.lines.recv_timeout(within).ok()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
