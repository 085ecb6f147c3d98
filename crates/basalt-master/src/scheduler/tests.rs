//! Table tests over small snapshots, and a fixed-seed random property test of the invariants.

use std::collections::HashSet;

use super::*;

fn types(list: &[(&str, bool)]) -> Vec<DeviceTypeInfo> {
    list.iter()
        .map(|&(name, health_check)| DeviceTypeInfo {
            name: name.to_owned(),
            health_check,
        })
        .collect()
}

/// An Idle, Good device on an Online, Active worker, no check due.
fn dev(hostname: &str, device_type: &str, tags: &[&str]) -> DeviceInfo {
    DeviceInfo {
        hostname: hostname.to_owned(),
        device_type: device_type.to_owned(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        state: DeviceState::Idle,
        health: DeviceHealth::Good,
        worker: "w1".to_owned(),
        worker_state: WorkerState::Online,
        worker_health: WorkerHealth::Active,
        health_check_due: false,
        idle_since: 0,
        holds: true,
    }
}

/// A test job for a device type, medium priority, submitted at time `id`.
fn job(id: u64, device_type: &str) -> QueuedJob {
    QueuedJob {
        id,
        target: Target::DeviceType(device_type.to_owned()),
        tags: Vec::new(),
        priority: Priority::MEDIUM,
        submit_time: id,
        health_check: false,
        worker: None,
        group: None,
        reservation: false,
    }
}

fn with_tags(mut j: QueuedJob, tags: &[&str]) -> QueuedJob {
    j.tags = tags.iter().map(|t| (*t).to_owned()).collect();
    j
}

fn on_device(mut j: QueuedJob, hostname: &str) -> QueuedJob {
    j.target = Target::Device(hostname.to_owned());
    j
}

fn check(j: QueuedJob) -> QueuedJob {
    QueuedJob {
        health_check: true,
        ..j
    }
}

fn snap(jobs: Vec<QueuedJob>, devices: Vec<DeviceInfo>) -> Snapshot {
    Snapshot {
        jobs,
        devices,
        device_types: types(&[("qemu", false), ("bbb", true), ("rpi", true)]),
    }
}

/// The assignments as (job, device) pairs, in output order.
fn pairs(s: &Snapshot) -> Vec<(u64, String)> {
    schedule(s)
        .assignments
        .into_iter()
        .map(|a| (a.job, a.device))
        .collect()
}

fn p(list: &[(u64, &str)]) -> Vec<(u64, String)> {
    list.iter().map(|&(j, d)| (j, d.to_owned())).collect()
}

#[test]
fn ranks_by_priority_then_submit_time_then_id() {
    let mut a = job(1, "qemu");
    a.priority = Priority::LOW;
    let mut b = job(2, "qemu");
    b.priority = Priority::HIGH;
    let mut c = job(3, "qemu");
    c.submit_time = 0; // earlier than job 1 and 2 at the same priority as d
    let mut d = job(4, "qemu");
    d.submit_time = 0;
    let cases: Vec<(usize, Vec<u64>)> = vec![
        (1, vec![2]),
        (2, vec![2, 3]),
        (3, vec![2, 3, 4]),
        (4, vec![2, 3, 4, 1]),
    ];
    for (n, want) in cases {
        let devices = (0..n).map(|i| dev(&format!("q{i}"), "qemu", &[])).collect();
        let s = snap(vec![a.clone(), b.clone(), c.clone(), d.clone()], devices);
        let got: Vec<u64> = pairs(&s).into_iter().map(|(j, _)| j).collect();
        assert_eq!(got, want, "{n} devices");
    }
}

#[test]
fn a_job_needs_a_device_of_its_type() {
    let s = snap(
        vec![job(1, "bbb"), job(2, "qemu"), job(3, "nosuch")],
        vec![dev("q1", "qemu", &[])],
    );
    assert_eq!(pairs(&s), p(&[(2, "q1")]));
}

#[test]
fn a_job_needs_all_its_tags_on_the_device() {
    let cases: &[(&[&str], &[&str], bool)] = &[
        (&[], &[], true),
        (&[], &["usb"], true),
        (&["usb"], &["usb"], true),
        (&["usb"], &["hdmi", "usb"], true),
        (&["usb", "hdmi"], &["hdmi", "usb", "sata"], true),
        (&["usb", "usb"], &["usb"], true),
        (&["usb"], &[], false),
        (&["usb", "hdmi"], &["usb"], false),
        (&["nowhere"], &["usb"], false),
    ];
    for &(job_tags, dev_tags, fits) in cases {
        let s = snap(
            vec![with_tags(job(1, "qemu"), job_tags)],
            vec![dev("q1", "qemu", dev_tags)],
        );
        assert_eq!(
            !pairs(&s).is_empty(),
            fits,
            "job {job_tags:?} on {dev_tags:?}"
        );
    }
}

#[test]
fn untagged_jobs_leave_tagged_devices_to_tagged_jobs() {
    // Job 1 ranks first and could use either device; it takes the one without tags.
    let s = snap(
        vec![job(1, "qemu"), with_tags(job(2, "qemu"), &["usb"])],
        vec![
            dev("a-tagged", "qemu", &["usb"]),
            dev("b-plain", "qemu", &[]),
        ],
    );
    assert_eq!(pairs(&s), p(&[(1, "b-plain"), (2, "a-tagged")]));
}

#[test]
fn ties_go_to_the_device_idle_longest_then_by_hostname() {
    let mut old = dev("zz", "qemu", &[]);
    old.idle_since = 5;
    let mut new = dev("aa", "qemu", &[]);
    new.idle_since = 9;
    let s = snap(vec![job(1, "qemu")], vec![new.clone(), old]);
    assert_eq!(pairs(&s), p(&[(1, "zz")]));
    let mut bb = dev("bb", "qemu", &[]);
    bb.idle_since = 9;
    let s = snap(vec![job(1, "qemu")], vec![bb, new]);
    assert_eq!(pairs(&s), p(&[(1, "aa")]));
}

#[test]
fn devices_of_offline_or_inactive_workers_take_nothing() {
    let cases = [
        (WorkerState::Offline, WorkerHealth::Active),
        (WorkerState::Online, WorkerHealth::Maintenance),
        (WorkerState::Online, WorkerHealth::Retired),
    ];
    for (state, health) in cases {
        let mut d = dev("q1", "qemu", &[]);
        d.worker_state = state;
        d.worker_health = health;
        let s = snap(
            vec![job(1, "qemu"), check(on_device(job(2, "qemu"), "q1"))],
            vec![d],
        );
        let out = schedule(&s);
        assert!(out.assignments.is_empty(), "{state} {health}");
        assert!(out.needs_health_check.is_empty());
    }
}

#[test]
fn bad_maintenance_retired_and_busy_devices_take_nothing() {
    let cases = [
        (DeviceState::Idle, DeviceHealth::Bad),
        (DeviceState::Idle, DeviceHealth::Maintenance),
        (DeviceState::Idle, DeviceHealth::Retired),
        (DeviceState::Reserved, DeviceHealth::Good),
        (DeviceState::Running, DeviceHealth::Good),
        (DeviceState::Running, DeviceHealth::Unknown),
    ];
    for (state, health) in cases {
        let mut d = dev("b1", "bbb", &[]);
        d.state = state;
        d.health = health;
        let s = snap(
            vec![job(1, "bbb"), check(on_device(job(2, "bbb"), "b1"))],
            vec![d],
        );
        let out = schedule(&s);
        assert!(out.assignments.is_empty(), "{state} {health}");
        assert!(out.needs_health_check.is_empty(), "{state} {health}");
    }
}

#[test]
fn a_device_taken_out_leaves_its_jobs_to_the_other_devices_of_its_type() {
    for health in [
        DeviceHealth::Maintenance,
        DeviceHealth::Bad,
        DeviceHealth::Retired,
    ] {
        let mut out = dev("q1", "qemu", &[]);
        out.health = health;
        let jobs = vec![job(1, "qemu"), job(2, "qemu")];
        let s = snap(jobs.clone(), vec![out.clone(), dev("q2", "qemu", &[])]);
        // one job runs on q2, the other stays queued
        assert_eq!(pairs(&s), p(&[(1, "q2")]), "{health}");
        out.health = DeviceHealth::Good;
        let s = snap(jobs, vec![out, dev("q2", "qemu", &[])]);
        assert_eq!(
            pairs(&s),
            p(&[(1, "q1"), (2, "q2")]),
            "back to Good: {health}"
        );
    }
}

#[test]
fn a_check_due_by_its_schedule_goes_before_test_jobs_on_that_device() {
    // bbb has a health check; b1's is due (the engine worked it out), b2's is not
    let mut due = dev("b1", "bbb", &[]);
    due.health_check_due = true;
    let s = snap(
        vec![job(1, "bbb"), job(2, "bbb")],
        vec![due, dev("b2", "bbb", &[])],
    );
    let out = schedule(&s);
    assert_eq!(
        out.assignments
            .iter()
            .map(|a| (a.job, a.device.as_str()))
            .collect::<Vec<_>>(),
        [(1, "b2")]
    );
    assert_eq!(out.needs_health_check, ["b1"]);
}

#[test]
fn health_checks_go_first_even_before_higher_priority_jobs() {
    let mut d = dev("b1", "bbb", &[]);
    d.health = DeviceHealth::Unknown;
    let mut urgent = job(1, "bbb");
    urgent.priority = Priority::HIGH;
    let mut hc = check(on_device(job(2, "bbb"), "b1"));
    hc.priority = Priority::LOW;
    let s = snap(vec![urgent, hc], vec![d, dev("b2", "bbb", &[])]);
    let out = schedule(&s);
    assert_eq!(
        out.assignments,
        vec![
            Assignment {
                job: 2,
                device: "b1".to_owned(),
                health_check: true,
                group: None,
            },
            Assignment {
                job: 1,
                device: "b2".to_owned(),
                health_check: false,
                group: None,
            },
        ]
    );
    assert!(out.needs_health_check.is_empty());
}

#[test]
fn a_device_needing_a_check_runs_no_test_job_and_is_reported() {
    // (health, check due, type has a check) → takes test jobs, reported as needing a check
    let cases = [
        (DeviceHealth::Good, false, true, true, false),
        (DeviceHealth::Good, true, true, false, true),
        (DeviceHealth::Unknown, false, true, false, true),
        (DeviceHealth::Looping, false, true, false, true),
        // LAVA: without a health check, Unknown devices run test jobs; Looping ones nothing
        (DeviceHealth::Good, true, false, true, false),
        (DeviceHealth::Unknown, false, false, true, false),
        (DeviceHealth::Looping, false, false, false, false),
    ];
    for (health, due, has_check, runs, reported) in cases {
        let ty = if has_check { "bbb" } else { "qemu" };
        let mut d = dev("d1", ty, &[]);
        d.health = health;
        d.health_check_due = due;
        let out = schedule(&snap(vec![job(1, ty)], vec![d]));
        let case = format!("{health} due={due} check={has_check}");
        assert_eq!(!out.assignments.is_empty(), runs, "{case}");
        assert_eq!(!out.needs_health_check.is_empty(), reported, "{case}");
    }
}

#[test]
fn needs_health_check_lists_only_devices_without_a_check_assigned() {
    let mut devices = Vec::new();
    for h in ["r3", "r1", "r2"] {
        let mut d = dev(h, "rpi", &[]);
        d.health_check_due = true;
        devices.push(d);
    }
    let s = snap(vec![check(on_device(job(7, "rpi"), "r2"))], devices);
    let out = schedule(&s);
    assert_eq!(out.assignments.len(), 1);
    assert_eq!(out.needs_health_check, ["r1", "r3"]);
}

#[test]
fn a_health_check_for_a_type_goes_to_a_device_needing_one() {
    let mut due = dev("b9", "bbb", &[]);
    due.health_check_due = true;
    let s = snap(
        vec![check(job(1, "bbb")), check(job(2, "bbb"))],
        vec![dev("b1", "bbb", &[]), due],
    );
    let out = schedule(&s);
    // Job 2 has no device needing a check: it waits rather than take the Good b1.
    assert_eq!(out.assignments.len(), 1);
    assert_eq!(
        (out.assignments[0].job, out.assignments[0].device.as_str()),
        (1, "b9")
    );
    assert!(out.needs_health_check.is_empty());
}

#[test]
fn a_health_check_queued_for_a_good_device_still_runs_first() {
    let s = snap(
        vec![job(1, "bbb"), check(on_device(job(2, "bbb"), "b1"))],
        vec![dev("b1", "bbb", &[])],
    );
    assert_eq!(pairs(&s), p(&[(2, "b1")]));
}

#[test]
fn each_device_takes_one_job_per_pass() {
    let jobs = (1..=5).map(|i| job(i, "qemu")).collect();
    let s = snap(jobs, vec![dev("q1", "qemu", &[]), dev("q2", "qemu", &[])]);
    assert_eq!(pairs(&s), p(&[(1, "q1"), (2, "q2")]));
    // Two checks for one device: the first-ranked one runs.
    let mut d = dev("b1", "bbb", &[]);
    d.health = DeviceHealth::Unknown;
    let checks = vec![
        check(on_device(job(4, "bbb"), "b1")),
        check(on_device(job(3, "bbb"), "b1")),
    ];
    assert_eq!(pairs(&snap(checks, vec![d])), p(&[(3, "b1")]));
}

#[test]
fn a_job_asking_for_a_device_gets_that_device_only() {
    let devices = vec![dev("q1", "qemu", &["usb"]), dev("q2", "qemu", &[])];
    // Ranked first, asks for q2: gets it although q1 sorts first.
    let s = snap(
        vec![on_device(job(1, "qemu"), "q2"), job(2, "qemu")],
        devices.clone(),
    );
    assert_eq!(pairs(&s), p(&[(1, "q2"), (2, "q1")]));
    // Ranked second, q2 already taken by job 1 (which prefers the untagged q2): waits.
    let s = snap(
        vec![job(1, "qemu"), on_device(job(2, "qemu"), "q2")],
        devices.clone(),
    );
    assert_eq!(pairs(&s), p(&[(1, "q2")]));
    // Tags still apply; unknown devices never match.
    let s = snap(
        vec![
            with_tags(on_device(job(1, "qemu"), "q2"), &["usb"]),
            on_device(job(2, "qemu"), "nosuch"),
        ],
        devices,
    );
    assert_eq!(pairs(&s), Vec::new());
}

#[test]
fn a_job_asking_for_a_busy_or_unhealthy_device_waits() {
    for (state, health) in [
        (DeviceState::Running, DeviceHealth::Good),
        (DeviceState::Idle, DeviceHealth::Maintenance),
        (DeviceState::Idle, DeviceHealth::Unknown),
    ] {
        let mut d = dev("b1", "bbb", &[]);
        d.state = state;
        d.health = health;
        let s = snap(vec![on_device(job(1, "bbb"), "b1")], vec![d]);
        assert_eq!(pairs(&s), Vec::new(), "{state} {health}");
    }
}

#[test]
fn devices_of_unlisted_types_are_not_scheduled() {
    let s = snap(
        vec![job(1, "hidden"), on_device(job(2, "x"), "h1")],
        vec![dev("h1", "hidden", &[])],
    );
    assert_eq!(pairs(&s), Vec::new());
}

#[test]
fn duplicate_hostnames_and_job_ids_are_used_once() {
    let mut second = dev("q1", "qemu", &[]);
    second.tags = vec!["usb".to_owned()];
    let s = snap(
        vec![
            job(1, "qemu"),
            job(1, "qemu"),
            with_tags(job(2, "qemu"), &["usb"]),
        ],
        vec![dev("q1", "qemu", &[]), second, dev("q2", "qemu", &[])],
    );
    // The second q1 (with usb) is ignored, so job 2 finds no usb device.
    assert_eq!(pairs(&s), p(&[(1, "q1")]));
}

#[test]
fn the_same_snapshot_in_any_order_gives_the_same_schedule() {
    // With unique hostnames and ids (duplicates are resolved by input order: first wins).
    let mut s = random_snapshot(&mut Rng(7), 300, 60);
    let mut seen = HashSet::new();
    s.devices.retain(|d| seen.insert(d.hostname.clone()));
    let mut seen = HashSet::new();
    s.jobs.retain(|j| seen.insert(j.id));
    let first = schedule(&s);
    assert!(first.assignments.len() > 5, "{first:?}");
    assert_eq!(schedule(&s), first);
    let mut shuffled = s.clone();
    let mut rng = Rng(99);
    shuffle(&mut shuffled.jobs, &mut rng);
    shuffle(&mut shuffled.devices, &mut rng);
    shuffle(&mut shuffled.device_types, &mut rng);
    assert_eq!(schedule(&shuffled), first);
}

#[test]
fn snapshot_round_trips_through_serde() {
    let s = snap(
        vec![on_device(job(1, "qemu"), "q1")],
        vec![dev("q1", "qemu", &["usb"])],
    );
    let json = serde_json::to_string(&s).unwrap();
    assert!(json.contains(r#""target":{"device":"q1"}"#), "{json}");
    assert!(json.contains(r#""health":"Good""#), "{json}");
    let back: Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
}

/// splitmix64, for fixed-seed random snapshots.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.below(i + 1));
    }
}

const TAGS: [&str; 4] = ["usb", "hdmi", "sata", "can"];

/// A small farm with every state and health, few types and tags so that jobs compete.
fn random_snapshot(rng: &mut Rng, jobs: usize, devices: usize) -> Snapshot {
    let device_types = types(&[
        ("qemu", false),
        ("bbb", true),
        ("rpi", true),
        ("x15", false),
    ]);
    let names = ["qemu", "bbb", "rpi", "x15", "hidden"];
    let devices: Vec<DeviceInfo> = (0..devices)
        .map(|i| {
            let tags: Vec<&str> = (0..rng.below(3)).map(|_| rng.pick(&TAGS)).collect();
            let mut d = dev(
                &format!("d{:03}", rng.below(devices * 2)),
                rng.pick(&names),
                &tags,
            );
            d.state = rng.pick(&[DeviceState::Idle, DeviceState::Idle, DeviceState::Running]);
            d.health = rng.pick(DeviceHealth::ALL);
            if rng.below(3) == 0 {
                d.health = DeviceHealth::Good;
            }
            d.worker = format!("w{}", i % 4);
            d.worker_state = rng.pick(&[
                WorkerState::Online,
                WorkerState::Online,
                WorkerState::Offline,
            ]);
            d.worker_health = rng.pick(&[
                WorkerHealth::Active,
                WorkerHealth::Active,
                WorkerHealth::Maintenance,
            ]);
            d.health_check_due = rng.below(5) == 0;
            d.idle_since = rng.below(10) as u64;
            d.holds = rng.below(4) != 0;
            d
        })
        .collect();
    let jobs = (0..jobs)
        .map(|_| {
            let mut j = job(rng.below(jobs * 2) as u64, rng.pick(&names));
            j.priority = rng.pick(&[Priority::LOW, Priority::MEDIUM, Priority::HIGH]);
            j.submit_time = rng.below(20) as u64;
            let tags: Vec<&str> = (0..rng.pick(&[0, 0, 1, 2]))
                .map(|_| rng.pick(&TAGS))
                .collect();
            j = with_tags(j, &tags);
            if rng.below(8) == 0 {
                j = on_device(j, &devices[rng.below(devices.len())].hostname);
            }
            j.health_check = rng.below(10) == 0;
            if !j.health_check && rng.below(7) == 0 {
                let hosts = (0..1 + rng.below(3))
                    .map(|_| devices[rng.below(devices.len())].hostname.clone())
                    .collect();
                j.target = Target::AnyOf(hosts);
            }
            j.reservation = !j.health_check && rng.below(6) == 0;
            j
        })
        .collect();
    Snapshot {
        jobs,
        devices,
        device_types,
    }
}

/// The invariants, checked by brute force against the rules as the module states them.
fn check_invariants(s: &Snapshot, out: &Schedule) {
    let first_device = |h: &str| s.devices.iter().find(|d| d.hostname == h);
    let type_check = |t: &str| {
        s.device_types
            .iter()
            .find(|dt| dt.name == t)
            .map(|dt| dt.health_check)
    };
    let usable = |d: &DeviceInfo| {
        type_check(&d.device_type).is_some()
            && d.state == DeviceState::Idle
            && d.worker_state == WorkerState::Online
            && d.worker_health == WorkerHealth::Active
            && matches!(
                d.health,
                DeviceHealth::Good | DeviceHealth::Unknown | DeviceHealth::Looping
            )
    };
    let needs_check = |d: &DeviceInfo| {
        usable(d)
            && type_check(&d.device_type) == Some(true)
            && (d.health_check_due
                || matches!(d.health, DeviceHealth::Unknown | DeviceHealth::Looping))
    };
    let runs_tests =
        |d: &DeviceInfo| usable(d) && !needs_check(d) && d.health != DeviceHealth::Looping;
    let matches = |j: &QueuedJob, d: &DeviceInfo| {
        let target = match &j.target {
            Target::DeviceType(t) => *t == d.device_type,
            Target::Device(h) => *h == d.hostname,
            Target::AnyOf(hosts) => hosts.contains(&d.hostname),
        };
        target && j.tags.iter().all(|t| d.tags.contains(t)) && (!j.reservation || d.holds)
    };
    let fits = |j: &QueuedJob, d: &DeviceInfo| {
        matches(j, d)
            && if j.health_check {
                match j.target {
                    Target::Device(_) => usable(d),
                    Target::DeviceType(_) => needs_check(d),
                    Target::AnyOf(_) => false,
                }
            } else {
                runs_tests(d)
            }
    };
    let rank = |j: &QueuedJob| (Reverse(j.priority), j.submit_time, j.id);

    let mut devices_used = HashSet::new();
    let mut jobs_used = HashSet::new();
    let mut given: Vec<(&QueuedJob, &DeviceInfo)> = Vec::new();
    for a in &out.assignments {
        assert!(
            devices_used.insert(a.device.as_str()),
            "device twice: {a:?}"
        );
        assert!(jobs_used.insert(a.job), "job twice: {a:?}");
        let d = first_device(&a.device).expect("assigned device exists");
        let j = s
            .jobs
            .iter()
            .filter(|j| j.id == a.job && j.health_check == a.health_check && fits(j, d))
            .min_by_key(|j| rank(j))
            .unwrap_or_else(|| panic!("no job {} fits {}", a.job, a.device));
        given.push((j, d));
    }
    let free = |d: &DeviceInfo| !devices_used.contains(d.hostname.as_str());
    let first = |d: &DeviceInfo| first_device(&d.hostname).is_some_and(|f| std::ptr::eq(f, d));

    for j in s.jobs.iter().filter(|j| !jobs_used.contains(&j.id)) {
        // Nothing waits while a device it fits is left free.
        for d in s.devices.iter().filter(|d| first(d)) {
            assert!(
                !(free(d) && fits(j, d)),
                "job {} waits, {} free",
                j.id,
                d.hostname
            );
        }
        // No lower-ranked job of the same kind got a device this one fits.
        for (l, d) in &given {
            if l.health_check == j.health_check && rank(l) > rank(j) {
                assert!(
                    !fits(j, d),
                    "job {} waits, lower {} got {}",
                    j.id,
                    l.id,
                    d.hostname
                );
            }
        }
    }
    let mut want: Vec<&str> = s
        .devices
        .iter()
        .filter(|d| first(d) && needs_check(d) && free(d))
        .map(|d| d.hostname.as_str())
        .collect();
    want.sort_unstable();
    assert_eq!(out.needs_health_check, want);
}

#[test]
fn random_snapshots_keep_the_invariants() {
    let mut rng = Rng(2024);
    let (mut checks, mut tests, mut needs) = (0, 0, 0);
    for _ in 0..300 {
        let jobs = 1 + rng.below(80);
        let devices = 1 + rng.below(40);
        let s = random_snapshot(&mut rng, jobs, devices);
        let out = schedule(&s);
        check_invariants(&s, &out);
        checks += out.assignments.iter().filter(|a| a.health_check).count();
        tests += out.assignments.iter().filter(|a| !a.health_check).count();
        needs += out.needs_health_check.len();
    }
    // The generator exercises every outcome.
    assert!(
        checks > 30 && tests > 200 && needs > 50,
        "{checks} {tests} {needs}"
    );
}

/// Job `id` as member of group `name` of `size` sub-jobs.
fn member(mut j: QueuedJob, name: &str, size: u32) -> QueuedJob {
    j.group = Some(GroupRef {
        name: name.to_owned(),
        size,
    });
    j
}

#[test]
fn a_group_needing_three_boards_with_two_free_holds_nothing() {
    let s = snap(
        (1..=3).map(|i| member(job(i, "qemu"), "g", 3)).collect(),
        vec![dev("q1", "qemu", &[]), dev("q2", "qemu", &[])],
    );
    assert_eq!(pairs(&s), []);
    // a single-node job behind it still takes a board: the group holds none
    let mut s = s;
    s.jobs.push(job(9, "qemu"));
    assert_eq!(pairs(&s), [(9, "q1".to_owned())]);
}

#[test]
fn a_group_with_three_boards_free_is_scheduled_in_one_pass() {
    let s = snap(
        (1..=3).map(|i| member(job(i, "qemu"), "g", 3)).collect(),
        vec![
            dev("q1", "qemu", &[]),
            dev("q2", "qemu", &[]),
            dev("q3", "qemu", &[]),
        ],
    );
    let out = schedule(&s);
    let got: Vec<(u64, &str, Option<&str>)> = out
        .assignments
        .iter()
        .map(|a| (a.job, a.device.as_str(), a.group.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (1, "q1", Some("g")),
            (2, "q2", Some("g")),
            (3, "q3", Some("g"))
        ]
    );
}

#[test]
fn a_group_missing_a_member_is_not_scheduled() {
    let s = snap(
        (1..=2).map(|i| member(job(i, "qemu"), "g", 3)).collect(),
        vec![
            dev("q1", "qemu", &[]),
            dev("q2", "qemu", &[]),
            dev("q3", "qemu", &[]),
        ],
    );
    assert_eq!(pairs(&s), []);
}

#[test]
fn group_members_get_the_tags_and_pins_they_ask_for() {
    // the tagged role goes first so that the untagged one does not take its board
    let mut w2 = dev("b2", "bbb", &[]);
    w2.worker = "w2".to_owned();
    let s = Snapshot {
        device_types: types(&[("qemu", false), ("bbb", false)]),
        ..snap(
            vec![
                member(job(1, "qemu"), "g", 3),
                member(with_tags(job(2, "qemu"), &["usb"]), "g", 3),
                {
                    let mut j = member(job(3, "bbb"), "g", 3);
                    j.worker = Some("w2".to_owned());
                    j
                },
            ],
            vec![
                dev("q1", "qemu", &["usb"]),
                dev("q2", "qemu", &[]),
                dev("b1", "bbb", &[]),
                w2,
            ],
        )
    };
    assert_eq!(
        pairs(&s),
        [
            (1, "q2".to_owned()),
            (2, "q1".to_owned()),
            (3, "b2".to_owned())
        ]
    );
    // a tag no free board has: the whole group waits
    let mut s2 = s.clone();
    s2.jobs[1].tags = vec!["sata".to_owned()];
    assert_eq!(pairs(&s2), []);
    // a device pin on a busy board: the whole group waits
    let mut s3 = s.clone();
    s3.jobs[0].target = Target::Device("q2".to_owned());
    s3.devices[1].state = DeviceState::Running;
    assert_eq!(pairs(&s3), []);
}

#[test]
fn two_groups_compete_and_the_first_in_rank_wins_whole() {
    // three boards: group a (2) and group b (2) cannot both run; a ranks first (priority)
    let mut jobs: Vec<QueuedJob> = vec![
        member(job(1, "qemu"), "b", 2),
        member(job(2, "qemu"), "b", 2),
        member(job(3, "qemu"), "a", 2),
        member(job(4, "qemu"), "a", 2),
    ];
    jobs[2].priority = Priority::HIGH;
    jobs[3].priority = Priority::HIGH;
    let s = snap(
        jobs,
        vec![
            dev("q1", "qemu", &[]),
            dev("q2", "qemu", &[]),
            dev("q3", "qemu", &[]),
        ],
    );
    let out = schedule(&s);
    let got: Vec<(u64, Option<&str>)> = out
        .assignments
        .iter()
        .map(|a| (a.job, a.group.as_deref()))
        .collect();
    assert_eq!(got, [(3, Some("a")), (4, Some("a"))]);
    // with four boards both run
    let mut s = s;
    s.devices.push(dev("q4", "qemu", &[]));
    assert_eq!(schedule(&s).assignments.len(), 4);
}

#[test]
fn a_reservation_waits_for_a_worker_that_holds_boards() {
    let mut old = dev("q1", "qemu", &[]);
    old.holds = false;
    old.idle_since = 0;
    let mut new = dev("q2", "qemu", &[]);
    new.idle_since = 5;
    let mut r = job(1, "qemu");
    r.reservation = true;
    // q1 is idle longer, but only q2's worker holds boards; the test job takes q1
    let s = snap(vec![r.clone(), job(2, "qemu")], vec![old.clone(), new]);
    assert_eq!(pairs(&s), p(&[(1, "q2"), (2, "q1")]));
    // no worker that holds boards: the reservation stays queued, the job runs
    let s = snap(vec![r, job(2, "qemu")], vec![old]);
    assert_eq!(pairs(&s), p(&[(2, "q1")]));
}

#[test]
fn a_device_list_takes_the_best_free_listed_device_of_any_type() {
    let mut a = dev("a", "qemu", &[]);
    a.idle_since = 9;
    let mut b = dev("b", "bbb", &[]);
    b.idle_since = 1;
    let c = dev("c", "qemu", &[]);
    let mut listed = job(1, "qemu");
    listed.target = Target::AnyOf(vec!["a".into(), "b".into(), "nosuch".into()]);
    // b is idle longer than a: taken though of another type; c is not listed
    let s = snap(vec![listed.clone()], vec![a.clone(), b.clone(), c.clone()]);
    assert_eq!(pairs(&s), p(&[(1, "b")]));
    // b busy: a; both busy: it waits while c is free
    let mut busy_b = b.clone();
    busy_b.state = DeviceState::Running;
    let s = snap(
        vec![listed.clone()],
        vec![a.clone(), busy_b.clone(), c.clone()],
    );
    assert_eq!(pairs(&s), p(&[(1, "a")]));
    let mut busy_a = a;
    busy_a.state = DeviceState::Running;
    let s = snap(vec![listed, job(2, "qemu")], vec![busy_a, busy_b, c]);
    assert_eq!(pairs(&s), p(&[(2, "c")]));
}
