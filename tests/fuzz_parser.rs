//! Property test: a million mutated copies of LAVA's corpus jobs never panic the job parser
//! (nor the test definition parser, nor the YAML loader). Mutations are deterministic
//! (seeded), so a failure is reproducible from the printed seed and iteration.

mod common;

use basalt::job::parse_job;
use basalt::job::testdef::parse_testdef;
use common::yaml_files;
use std::panic::{catch_unwind, AssertUnwindSafe};

const ITERATIONS: u64 = 1_000_000;

/// xorshift64*: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const TOKENS: &[&[u8]] = &[
    b":",
    b" ",
    b"\n",
    b"- ",
    b"  ",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b"'",
    b"\"",
    b"&a ",
    b"*a",
    b"<<: ",
    b"!!int ",
    b"! ",
    b"~",
    b"null",
    b"yes",
    b"0x",
    b"-1",
    b"99999999999999999999",
    b"\t",
    b"#",
    b"|\n",
    b">\n",
    b"---\n",
    b"...\n",
    b"?",
    b"%YAML 1.1\n",
    b"\xff",
    b"\xc3\x28",
    b"timeout:",
    b"minutes: 1",
    b"to: tftp",
    b"method: qemu",
    b"definitions:",
    b"from: inline",
    b"repository:",
    b"actions:",
    b"role: [a]",
    b"namespace: x",
    b"\x00",
    b"\r",
];

fn mutate(rng: &mut Rng, src: &[u8]) -> Vec<u8> {
    let mut v = src.to_vec();
    for _ in 0..=rng.below(4) {
        let len = v.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] = (rng.next() & 0xff) as u8;
            }
            1 => {
                let tok = TOKENS[rng.below(TOKENS.len())];
                let i = rng.below(len + 1);
                v.splice(i..i, tok.iter().copied());
            }
            2 if len > 0 => {
                let i = rng.below(len);
                let j = (i + rng.below(64)).min(len);
                v.drain(i..j);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let j = (i + rng.below(200)).min(len);
                let chunk: Vec<u8> = v[i..j].to_vec();
                let k = rng.below(v.len() + 1);
                v.splice(k..k, chunk);
            }
            4 => v.truncate(rng.below(len + 1)),
            5 => {
                // change the indentation of a line
                let lines: Vec<usize> = v
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b'\n')
                    .map(|(i, _)| i + 1)
                    .collect();
                if !lines.is_empty() {
                    let at = lines[rng.below(lines.len())];
                    if rng.below(2) == 0 {
                        v.splice(at..at, *b"  ");
                    } else if v.get(at) == Some(&b' ') {
                        v.remove(at);
                    }
                }
            }
            6 if len > 0 => {
                // swap two lines
                let text = String::from_utf8_lossy(&v).into_owned();
                let mut lines: Vec<&str> = text.lines().collect();
                if lines.len() > 1 {
                    let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                    lines.swap(a, b);
                    v = lines.join("\n").into_bytes();
                }
            }
            _ => {
                let i = rng.below(len + 1);
                let digit = b'0' + (rng.below(10) as u8);
                v.insert(i, digit);
            }
        }
    }
    v
}

#[test]
fn a_million_mutated_jobs_never_panic() {
    let mut sources: Vec<Vec<u8>> = Vec::new();
    for dir in [
        "jobs/qemu",
        "jobs/uboot",
        "jobs/multinode/scheduler",
        "jobs/multinode/dispatcher",
        "invalid",
        "jobs/testdefs",
    ] {
        for f in yaml_files(dir) {
            sources.push(std::fs::read(&f).expect("corpus file"));
        }
    }
    assert!(sources.len() > 50);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2) as u64;
    let per_thread = ITERATIONS.div_ceil(threads);
    let sources = &sources;
    let results: Vec<(u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let seed = 0x9e37_79b9_7f4a_7c15 ^ (t + 1);
                    let mut rng = Rng(seed);
                    let mut rejected = 0u64;
                    for i in 0..per_thread {
                        let src = &sources[rng.below(sources.len())];
                        let doc = mutate(&mut rng, src);
                        let text = String::from_utf8_lossy(&doc);
                        let outcome = catch_unwind(AssertUnwindSafe(|| {
                            let job = parse_job("fuzz.yaml", &text).is_err();
                            if i % 8 == 0 {
                                let _ = parse_testdef("fuzz.yaml", &text);
                            }
                            job
                        }));
                        match outcome {
                            Ok(true) => rejected += 1,
                            Ok(false) => {}
                            Err(_) => {
                                panic!("parser panicked: seed {seed:#x} iteration {i}\n{text}")
                            }
                        }
                    }
                    (per_thread, rejected)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("fuzz thread"))
            .collect()
    });
    let total: u64 = results.iter().map(|r| r.0).sum();
    let rejected: u64 = results.iter().map(|r| r.1).sum();
    println!(
        "{total} mutated documents parsed, {rejected} rejected with diagnostics, none panicked"
    );
    assert!(total >= ITERATIONS);
    assert!(
        rejected > 0 && rejected < total,
        "mutations should produce both valid and invalid jobs"
    );
}
