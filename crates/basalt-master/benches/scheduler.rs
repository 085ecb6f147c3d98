//! One scheduling pass over large snapshots (10,000 jobs on 1,000 devices, and 100,000 on
//! 10,000, and 10,000 with a third of them in MultiNode groups of 3), timed and printed as a
//! table; the goal is ≤ 20 ms for the first.
//! Run: `cargo bench -p basalt-master --bench scheduler`.

use std::time::{Duration, Instant};

use basalt_master::{
    schedule, DeviceHealth, DeviceInfo, DeviceState, DeviceTypeInfo, Priority, QueuedJob, Snapshot,
    Target, WorkerHealth, WorkerState,
};

/// splitmix64: a fixed-seed generator, so every run measures the same snapshot.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const TYPES: u64 = 12;
const TAGS: [&str; 8] = ["usb", "hdmi", "sata", "wifi", "eth2", "can", "camera", "4g"];

/// A farm of `devices` devices over 12 types and 8 tags, with `jobs` queued (1 % health
/// checks, 5 % asking for one device, most without tags).
fn snapshot(jobs: usize, devices: usize, seed: u64) -> Snapshot {
    let mut rng = Rng(seed);
    let device_types = (0..TYPES)
        .map(|t| DeviceTypeInfo {
            name: format!("type-{t:02}"),
            health_check: t % 3 != 0,
        })
        .collect();
    let devices: Vec<DeviceInfo> = (0..devices)
        .map(|i| {
            let tags = (0..rng.below(4))
                .map(|_| TAGS[rng.below(TAGS.len() as u64) as usize].to_owned())
                .collect();
            DeviceInfo {
                hostname: format!("dev-{i:05}"),
                device_type: format!("type-{:02}", rng.below(TYPES)),
                tags,
                state: match rng.below(10) {
                    0..=5 => DeviceState::Idle,
                    6..=7 => DeviceState::Running,
                    _ => DeviceState::Reserved,
                },
                health: match rng.below(20) {
                    0..=15 => DeviceHealth::Good,
                    16 => DeviceHealth::Unknown,
                    17 => DeviceHealth::Bad,
                    18 => DeviceHealth::Maintenance,
                    _ => DeviceHealth::Retired,
                },
                worker: format!("worker-{}", i / 20),
                worker_state: if rng.below(50) == 0 {
                    WorkerState::Offline
                } else {
                    WorkerState::Online
                },
                worker_health: WorkerHealth::Active,
                health_check_due: rng.below(25) == 0,
                idle_since: rng.below(1_000_000),
                holds: true,
            }
        })
        .collect();
    let jobs = (0..jobs)
        .map(|i| {
            let target = if rng.below(20) == 0 {
                let d = rng.below(devices.len() as u64) as usize;
                Target::Device(devices[d].hostname.clone())
            } else {
                Target::DeviceType(format!("type-{:02}", rng.below(TYPES)))
            };
            let tags = match rng.below(10) {
                0..=6 => Vec::new(),
                7..=8 => vec![TAGS[rng.below(TAGS.len() as u64) as usize].to_owned()],
                _ => vec![
                    TAGS[rng.below(TAGS.len() as u64) as usize].to_owned(),
                    TAGS[rng.below(TAGS.len() as u64) as usize].to_owned(),
                ],
            };
            QueuedJob {
                id: i as u64 + 1,
                target,
                tags,
                priority: Priority::new(rng.below(101) as u8).unwrap_or_default(),
                submit_time: rng.below(10_000_000),
                health_check: rng.below(100) == 0,
                worker: None,
                group: None,
                reservation: false,
            }
        })
        .collect();
    Snapshot {
        jobs,
        devices,
        device_types,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    println!(
        "{:>8} {:>8} {:>6} {:>8} {:>6} {:>8} {:>9} {:>9} {:>9}",
        "jobs",
        "devices",
        "groups",
        "assigned",
        "of hc",
        "needs hc",
        "min ms",
        "median ms",
        "max ms"
    );
    for (jobs, devices, runs, groups) in [
        (10_000, 1_000, 50, false),
        (100_000, 10_000, 10, false),
        (10_000, 1_000, 50, true),
    ] {
        let mut snap = snapshot(jobs, devices, 16);
        if groups {
            // every third test job from the start, in threes: a group of one type
            let mut members = snap
                .jobs
                .iter_mut()
                .filter(|j| !j.health_check)
                .step_by(3)
                .collect::<Vec<_>>();
            for (n, chunk) in members.chunks_mut(3).enumerate() {
                let target = chunk[0].target.clone();
                let (priority, submit_time) = (chunk[0].priority, chunk[0].submit_time);
                for j in chunk.iter_mut() {
                    j.target = target.clone();
                    j.priority = priority;
                    j.submit_time = submit_time;
                    j.group = Some(basalt_master::scheduler::GroupRef {
                        name: format!("group-{n}"),
                        size: 3,
                    });
                }
            }
        }
        let mut times = Vec::with_capacity(runs);
        let mut result = schedule(&snap);
        for _ in 0..runs {
            let start = Instant::now();
            result = std::hint::black_box(schedule(std::hint::black_box(&snap)));
            times.push(start.elapsed());
        }
        times.sort_unstable();
        println!(
            "{:>8} {:>8} {:>6} {:>8} {:>6} {:>8} {:>9.2} {:>9.2} {:>9.2}",
            jobs,
            devices,
            if groups { "1/3" } else { "-" },
            result.assignments.len(),
            result.assignments.iter().filter(|a| a.health_check).count(),
            result.needs_health_check.len(),
            ms(times[0]),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1]),
        );
    }
}
