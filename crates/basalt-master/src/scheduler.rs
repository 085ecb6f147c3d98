//! One scheduling pass as a pure function: [`schedule`] reads a [`Snapshot`] (queued jobs,
//! devices, device types) and says which job goes to which device. No I/O, no clock: the
//! caller fills the snapshot from its store and applies the result (LAVA's
//! `lava_scheduler_app/scheduler.py`, reshaped as labgrid's scheduler is: a function over a
//! snapshot).
//!
//! The rules, as LAVA's `schedule_health_checks` and `schedule_jobs` apply them:
//! - A device is *usable* when Idle, its worker Online and Active, its type listed in
//!   [`Snapshot::device_types`] (LAVA schedules only displayed types), and its health Good,
//!   Unknown or Looping.
//! - A usable device *needs a health check* when its type has one and its health is Unknown or
//!   Looping or [`DeviceInfo::health_check_due`] is set. Such a device takes no test job this
//!   pass: a queued health-check job for it is assigned, otherwise its hostname is reported in
//!   [`Schedule::needs_health_check`] so that the caller creates one (LAVA creates and schedules
//!   it at once; the device is left free for that).
//! - A usable device that needs no check runs test jobs when Good or Unknown (Unknown happens
//!   only when its type has no health check; Looping devices never run test jobs).
//! - Health-check jobs are assigned first, then test jobs, each in rank order: priority
//!   descending, submit time ascending, id ascending (LAVA's `-priority, submit_time, id`).
//! - A job needs a device of its requested type (or exactly its requested device) whose tags
//!   include all the job's tags. Among such free devices it takes the one with the fewest tags
//!   (so tagged devices stay free for jobs that need them), then the one idle longest (LAVA
//!   shuffles devices to spread the wear; this does it deterministically), then by hostname.
//! - Each device takes at most one job per pass; jobs without a device stay queued.
//! - A job may be pinned to a worker ([`QueuedJob::worker`], a MultiNode role's `worker:`).
//! - A job may name the devices it can take ([`Target::AnyOf`]: a reservation by
//!   requirements, whose eligible devices the caller matched from their dictionaries); it
//!   takes the best free one of them, by the same order.
//! - A reservation ([`QueuedJob::reservation`]) takes only a device whose worker holds boards
//!   ([`DeviceInfo::holds`]: the worker offers the `reservations` capability); otherwise it
//!   stays queued for one that does.
//! - A MultiNode group ([`QueuedJob::group`]) is all or nothing: at its first member's rank,
//!   every member of the group must get a device in this pass, or none does (no sub-job holds
//!   a board while the others wait), and a group with members missing from the queue is not
//!   scheduled. Members are placed most constrained first (a device pin, then a worker pin,
//!   then most tags), each on its best free device; this greedy choice can miss a placement
//!   that exists when roles' tag sets overlap in odd ways (LAVA's per-device loop misses more).
//!
//! Not modelled yet: LAVA's per-worker `job_limit`, submit permissions and
//! device-configuration validity.

use std::cmp::{Ordering, Reverse};
use std::collections;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

use crate::model::{DeviceHealth, DeviceState, Priority, WorkerHealth, WorkerState};

/// Everything one pass looks at; the caller takes it from its store at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Jobs in state Submitted (others are ignored by the caller, not here).
    pub jobs: Vec<QueuedJob>,
    /// All devices; those that cannot take a job now are skipped.
    pub devices: Vec<DeviceInfo>,
    /// The device types whose devices may be scheduled.
    pub device_types: Vec<DeviceTypeInfo>,
}

/// A queued (Submitted) job as the scheduler sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedJob {
    /// The job id; ties in rank are broken by it.
    pub id: u64,
    /// The device type or the one device the job asks for.
    pub target: Target,
    /// Tags every one of which the device must have.
    pub tags: Vec<String>,
    /// Higher runs first.
    pub priority: Priority,
    /// When it was submitted, in any unit consistent within the snapshot (earlier runs first).
    pub submit_time: u64,
    /// A health check: assigned before test jobs, to a device that needs a check.
    pub health_check: bool,
    /// Only a device of this worker will do (LAVA's `requested_worker`).
    #[serde(default)]
    pub worker: Option<String>,
    /// The MultiNode group the job is a sub-job of.
    #[serde(default)]
    pub group: Option<GroupRef>,
    /// A reservation (a job that waits for its holder): only a device whose worker holds
    /// boards ([`DeviceInfo::holds`]) will do.
    #[serde(default)]
    pub reservation: bool,
}

/// A sub-job's group, as the scheduler sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupRef {
    /// The group's name (`target_group`).
    pub name: String,
    /// How many sub-jobs it has (`group_size`): all must be queued to schedule it.
    pub size: u32,
}

/// What a job asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Any device of this type (LAVA's `device_type`).
    DeviceType(String),
    /// This device only, by hostname (LAVA's `requested_device`).
    Device(String),
    /// Any one of these devices, by hostname: a reservation by requirements, its eligible
    /// devices matched from their dictionaries when it was made.
    AnyOf(Vec<String>),
}

/// A device and what its worker is doing, as the scheduler sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Unique; a later device with the same hostname is ignored.
    pub hostname: String,
    /// Its device type's name.
    pub device_type: String,
    /// The tags it offers.
    pub tags: Vec<String>,
    /// Only Idle devices take jobs.
    pub state: DeviceState,
    /// See the module rules.
    pub health: DeviceHealth,
    /// The worker it is attached to.
    pub worker: String,
    /// Only devices of Online workers take jobs.
    pub worker_state: WorkerState,
    /// Only devices of Active workers take jobs.
    pub worker_health: WorkerHealth,
    /// Its type's health-check frequency (hours or jobs) has run out, or it never had a
    /// health check: the caller works this out, since it needs the clock and job history.
    pub health_check_due: bool,
    /// When it last became Idle (same unit as [`QueuedJob::submit_time`]); the device idle
    /// longest is preferred, to spread use.
    pub idle_since: u64,
    /// Its worker holds boards for reservations (its connection offers the `reservations`
    /// capability): the caller works this out, the store does not know connections.
    #[serde(default)]
    pub holds: bool,
}

/// A device type as the scheduler sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceTypeInfo {
    /// Its name, as devices and jobs refer to it.
    pub name: String,
    /// It has a health-check definition and checks are not disabled for it.
    pub health_check: bool,
}

/// One job given to one device: the caller moves the job to Scheduled, the device to Reserved.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Assignment {
    /// The job's id.
    pub job: u64,
    /// The device's hostname.
    pub device: String,
    /// The job is a health check.
    pub health_check: bool,
    /// The MultiNode group (`target_group`) of a sub-job: all of a group's assignments come
    /// in the same pass, one after the other.
    #[serde(default)]
    pub group: Option<String>,
}

/// What one pass decided.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Health checks first, then test jobs, each in rank order.
    pub assignments: Vec<Assignment>,
    /// Hostnames (sorted) of free devices that need a health check and have none queued:
    /// the caller creates one for each (and may assign it to that device straight away).
    pub needs_health_check: Vec<String>,
}

/// Runs one scheduling pass over `snapshot`; the same snapshot always gives the same result.
pub fn schedule(snapshot: &Snapshot) -> Schedule {
    let mut pass = Pass::new(snapshot);
    pass.health_checks();
    pass.test_jobs();
    pass.out
}

/// What a device may do this pass.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Nothing: busy, offline, unknown type, or health Bad, Maintenance or Retired.
    None,
    /// Health checks only: it needs one, or it is Looping without a check to loop on.
    CheckOnly,
    /// Health checks and test jobs.
    Any,
}

/// A device, indexed.
struct Dev {
    /// Index into `Pass::types`; `None` if its type is not listed.
    device_type: Option<u32>,
    /// Its tag ids, sorted and without duplicates.
    tags: Vec<u32>,
    role: Role,
    needs_check: bool,
}

/// Free devices of one type with one tag set, best first; `next` skips taken ones lazily.
struct Pool {
    tag_count: usize,
    devices: Vec<u32>,
    next: usize,
}

/// The pools a (device type, job tag set) can use; `exhausted` once none had a free device
/// (devices are only taken during a pass, so it stays so).
struct Candidates {
    pools: Vec<u32>,
    exhausted: bool,
}

/// The state of one pass: the snapshot indexed once, plus what has been taken.
struct Pass<'a> {
    snap: &'a Snapshot,
    types: HashMap<&'a str, u32>,
    hostnames: HashMap<&'a str, u32>,
    tags: HashMap<&'a str, u32>,
    devs: Vec<Dev>,
    taken: Vec<bool>,
    /// Job ids already assigned (a duplicated id is assigned once).
    assigned: HashSet<u64>,
    /// Job indices in rank order: health checks, then test jobs.
    checks: Vec<u32>,
    tests: Vec<u32>,
    out: Schedule,
}

impl<'a> Pass<'a> {
    fn new(snap: &'a Snapshot) -> Pass<'a> {
        let mut types = HashMap::default();
        let mut type_check = Vec::with_capacity(snap.device_types.len());
        for dt in &snap.device_types {
            if !types.contains_key(dt.name.as_str()) {
                types.insert(dt.name.as_str(), index(type_check.len()));
                type_check.push(dt.health_check);
            }
        }

        let mut hostnames = HashMap::default();
        let mut tags: HashMap<&str, u32> = HashMap::default();
        let mut devs = Vec::with_capacity(snap.devices.len());
        for (i, d) in snap.devices.iter().enumerate() {
            let first = !hostnames.contains_key(d.hostname.as_str());
            if first {
                hostnames.insert(d.hostname.as_str(), index(i));
            }
            let mut ids: Vec<u32> = d
                .tags
                .iter()
                .map(|t| {
                    let next = index(tags.len());
                    *tags.entry(t.as_str()).or_insert(next)
                })
                .collect();
            ids.sort_unstable();
            ids.dedup();
            let device_type = types.get(d.device_type.as_str()).copied();
            let has_check = device_type.is_some_and(|t| type_check[t as usize]);
            let usable = first
                && device_type.is_some()
                && d.state == DeviceState::Idle
                && d.worker_state == WorkerState::Online
                && d.worker_health == WorkerHealth::Active
                && matches!(
                    d.health,
                    DeviceHealth::Good | DeviceHealth::Unknown | DeviceHealth::Looping
                );
            let needs_check = usable
                && has_check
                && (d.health_check_due
                    || matches!(d.health, DeviceHealth::Unknown | DeviceHealth::Looping));
            let role = if !usable {
                Role::None
            } else if needs_check || d.health == DeviceHealth::Looping {
                Role::CheckOnly
            } else {
                Role::Any
            };
            devs.push(Dev {
                device_type,
                tags: ids,
                role,
                needs_check,
            });
        }

        // Rank keys sorted by value (not through the jobs) to keep the sort cache-friendly.
        let mut checks = Vec::new();
        let mut tests = Vec::with_capacity(snap.jobs.len());
        for (i, j) in snap.jobs.iter().enumerate() {
            let key = (Reverse(j.priority), j.submit_time, j.id, index(i));
            if j.health_check {
                checks.push(key);
            } else {
                tests.push(key);
            }
        }
        checks.sort_unstable();
        tests.sort_unstable();
        let checks = checks.into_iter().map(|k| k.3).collect();
        let tests = tests.into_iter().map(|k| k.3).collect();

        Pass {
            snap,
            types,
            hostnames,
            tags,
            taken: vec![false; devs.len()],
            devs,
            assigned: HashSet::default(),
            checks,
            tests,
            out: Schedule::default(),
        }
    }

    /// Health-check jobs onto usable devices, then the devices still needing one reported.
    fn health_checks(&mut self) {
        // Devices needing a check, per type in hostname order, for checks asking for a type.
        let mut waiting: Vec<Vec<u32>> = vec![Vec::new(); self.types.len()];
        for (i, d) in self.devs.iter().enumerate() {
            if let (true, Some(t)) = (d.needs_check, d.device_type) {
                waiting[t as usize].push(index(i));
            }
        }
        for list in &mut waiting {
            list.sort_unstable_by(|&a, &b| self.hostname(a).cmp(self.hostname(b)));
        }

        let snap = self.snap;
        let mut buf = Vec::new();
        for k in 0..self.checks.len() {
            let job = &snap.jobs[self.checks[k] as usize];
            if self.assigned.contains(&job.id) || !self.job_tags(&job.tags, &mut buf) {
                continue;
            }
            let device = match &job.target {
                Target::Device(h) => self
                    .hostnames
                    .get(h.as_str())
                    .copied()
                    .filter(|&d| self.fits(d, Role::CheckOnly, &buf)),
                Target::DeviceType(t) => self.types.get(t.as_str()).and_then(|&t| {
                    waiting[t as usize]
                        .iter()
                        .copied()
                        .find(|&d| self.fits(d, Role::CheckOnly, &buf))
                }),
                // a health check names its device or type
                Target::AnyOf(_) => None,
            };
            if let Some(d) = device {
                self.assign(job.id, d, true);
            }
        }

        let mut needs: Vec<&str> = (0..self.devs.len())
            .filter(|&i| self.devs[i].needs_check && !self.taken[i])
            .map(|i| self.snap.devices[i].hostname.as_str())
            .collect();
        needs.sort_unstable();
        self.out.needs_health_check = needs.into_iter().map(str::to_owned).collect();
    }

    /// Test jobs in rank order onto the best free device that fits each.
    fn test_jobs(&mut self) {
        // Free devices grouped into pools by (type, tag set), each sorted best first.
        let snap = self.snap;
        let mut sets: HashMap<Vec<u32>, u32> = HashMap::default();
        let mut pool_of: HashMap<(u32, u32), u32> = HashMap::default();
        let mut pools: Vec<Pool> = Vec::new();
        let mut pool_tags: Vec<Vec<u32>> = Vec::new();
        let mut type_pools: Vec<Vec<u32>> = vec![Vec::new(); self.types.len()];
        let mut free: Vec<u32> = vec![0; self.types.len()];
        for (i, d) in self.devs.iter().enumerate() {
            let Some(t) = d.device_type else { continue };
            if d.role != Role::Any || self.taken[i] {
                continue;
            }
            let set = intern(&mut sets, &d.tags);
            let p = *pool_of.entry((t, set)).or_insert_with(|| {
                type_pools[t as usize].push(index(pools.len()));
                pool_tags.push(d.tags.clone());
                pools.push(Pool {
                    tag_count: d.tags.len(),
                    devices: Vec::new(),
                    next: 0,
                });
                index(pools.len() - 1)
            });
            pools[p as usize].devices.push(index(i));
            free[t as usize] += 1;
        }
        let devices = &snap.devices;
        for pool in &mut pools {
            pool.devices.sort_unstable_by(|&a, &b| {
                let (a, b) = (&devices[a as usize], &devices[b as usize]);
                (a.idle_since, &a.hostname).cmp(&(b.idle_since, &b.hostname))
            });
        }

        // Job tag sets, interned so that the candidate pools are worked out once per set.
        let mut job_sets: HashMap<Vec<u32>, u32> = HashMap::default();
        let mut memo: HashMap<(u32, u32), Candidates> = HashMap::default();
        let mut buf = Vec::new();
        let mut members: HashMap<&str, Vec<u32>> = HashMap::default();
        for &j in &self.tests {
            if let Some(g) = &snap.jobs[j as usize].group {
                members.entry(g.name.as_str()).or_default().push(j);
            }
        }
        let mut groups_done: HashSet<&str> = HashSet::default();
        for k in 0..self.tests.len() {
            let job = &snap.jobs[self.tests[k] as usize];
            if let Some(g) = &job.group {
                if groups_done.insert(g.name.as_str()) {
                    let jobs = members.remove(g.name.as_str()).unwrap_or_default();
                    if jobs.len() == g.size as usize {
                        for d in self.place_group(&g.name, &jobs) {
                            if let Some(t) = self.devs[d as usize].device_type {
                                free[t as usize] = free[t as usize].saturating_sub(1);
                            }
                        }
                    }
                }
                continue;
            }
            if job.worker.is_some() || job.reservation || matches!(job.target, Target::AnyOf(_)) {
                if !self.assigned.contains(&job.id) {
                    if let Some(d) = self.best_device(job, &mut buf) {
                        if let Some(t) = self.devs[d as usize].device_type {
                            free[t as usize] = free[t as usize].saturating_sub(1);
                        }
                        self.assign(job.id, d, false);
                    }
                }
                continue;
            }
            match &job.target {
                Target::Device(h) => {
                    let Some(&d) = self.hostnames.get(h.as_str()) else {
                        continue;
                    };
                    if self.assigned.contains(&job.id) || !self.job_tags(&job.tags, &mut buf) {
                        continue;
                    }
                    if self.fits(d, Role::Any, &buf) {
                        if let Some(t) = self.devs[d as usize].device_type {
                            free[t as usize] -= 1;
                        }
                        self.assign(job.id, d, false);
                    }
                }
                Target::DeviceType(name) => {
                    let Some(&t) = self.types.get(name.as_str()) else {
                        continue;
                    };
                    if free[t as usize] == 0
                        || self.assigned.contains(&job.id)
                        || !self.job_tags(&job.tags, &mut buf)
                    {
                        continue;
                    }
                    let set = intern(&mut job_sets, &buf);
                    let cand = memo.entry((t, set)).or_insert_with(|| Candidates {
                        pools: type_pools[t as usize]
                            .iter()
                            .copied()
                            .filter(|&p| is_subset(&buf, &pool_tags[p as usize]))
                            .collect(),
                        exhausted: false,
                    });
                    if cand.exhausted {
                        continue;
                    }
                    let mut best: Option<(usize, u32)> = None;
                    for &p in &cand.pools {
                        let pool = &mut pools[p as usize];
                        while pool
                            .devices
                            .get(pool.next)
                            .is_some_and(|&d| self.taken[d as usize])
                        {
                            pool.next += 1;
                        }
                        let Some(&d) = pool.devices.get(pool.next) else {
                            continue;
                        };
                        let better = match best {
                            None => true,
                            Some((count, b)) => {
                                device_order(devices, (pool.tag_count, d), (count, b))
                                    == Ordering::Less
                            }
                        };
                        if better {
                            best = Some((pool.tag_count, d));
                        }
                    }
                    match best {
                        Some((_, d)) => {
                            free[t as usize] -= 1;
                            self.assign(job.id, d, false);
                        }
                        None => cand.exhausted = true,
                    }
                }
                // scanned above
                Target::AnyOf(_) => {}
            }
        }
    }

    /// The best free device for test job `job` by a scan of every device (groups, worker
    /// pins, device lists and reservations; the pools serve the common case), or `None`.
    fn best_device(&self, job: &QueuedJob, buf: &mut Vec<u32>) -> Option<u32> {
        if !self.job_tags(&job.tags, buf) {
            return None;
        }
        let devices = &self.snap.devices;
        let mut best: Option<u32> = None;
        let candidates: Vec<u32> = match &job.target {
            Target::Device(h) => self
                .hostnames
                .get(h.as_str())
                .copied()
                .into_iter()
                .collect(),
            Target::DeviceType(t) => {
                let &t = self.types.get(t.as_str())?;
                (0..self.devs.len())
                    .filter(|&d| self.devs[d].device_type == Some(t))
                    .map(index)
                    .collect()
            }
            Target::AnyOf(hosts) => hosts
                .iter()
                .filter_map(|h| self.hostnames.get(h.as_str()).copied())
                .collect(),
        };
        for d in candidates {
            if !self.fits(d, Role::Any, buf) {
                continue;
            }
            if job.reservation && !devices[d as usize].holds {
                continue;
            }
            if job
                .worker
                .as_ref()
                .is_some_and(|w| *w != devices[d as usize].worker)
            {
                continue;
            }
            let this = (self.devs[d as usize].tags.len(), d);
            let better = best.is_none_or(|b| {
                device_order(devices, this, (self.devs[b as usize].tags.len(), b)) == Ordering::Less
            });
            if better {
                best = Some(d);
            }
        }
        best
    }

    /// Places every member of group `name` (job indices `jobs`) on a device, or none;
    /// returns the devices taken.
    fn place_group(&mut self, name: &str, jobs: &[u32]) -> Vec<u32> {
        let snap = self.snap;
        let mut order: Vec<&QueuedJob> = jobs.iter().map(|&j| &snap.jobs[j as usize]).collect();
        if order.iter().any(|j| self.assigned.contains(&j.id)) {
            return Vec::new();
        }
        order.sort_by_key(|j| {
            (
                !matches!(j.target, Target::Device(_)),
                j.worker.is_none(),
                Reverse(j.tags.len()),
                j.id,
            )
        });
        let mut buf = Vec::new();
        let mut placed: Vec<(u64, u32)> = Vec::with_capacity(order.len());
        for job in &order {
            match self.best_device(job, &mut buf) {
                Some(d) => {
                    self.taken[d as usize] = true;
                    placed.push((job.id, d));
                }
                None => {
                    for (_, d) in placed {
                        self.taken[d as usize] = false;
                    }
                    return Vec::new();
                }
            }
        }
        // assignments in the members' rank order (sub_id order)
        placed.sort_unstable();
        for &(id, d) in &placed {
            self.assigned.insert(id);
            self.out.assignments.push(Assignment {
                job: id,
                device: self.hostname(d).to_owned(),
                health_check: false,
                group: Some(name.to_owned()),
            });
        }
        placed.into_iter().map(|(_, d)| d).collect()
    }

    /// Whether device `d` is free, may take a job of `role` and has every tag in `tags`.
    fn fits(&self, d: u32, role: Role, tags: &[u32]) -> bool {
        let dev = &self.devs[d as usize];
        let allowed = match role {
            Role::CheckOnly => dev.role != Role::None,
            _ => dev.role == Role::Any,
        };
        allowed && !self.taken[d as usize] && is_subset(tags, &dev.tags)
    }

    /// Fills `buf` with the job's tag ids, sorted; false if some tag is on no device at all.
    fn job_tags(&self, tags: &[String], buf: &mut Vec<u32>) -> bool {
        buf.clear();
        for t in tags {
            match self.tags.get(t.as_str()) {
                Some(&id) => buf.push(id),
                None => return false,
            }
        }
        buf.sort_unstable();
        buf.dedup();
        true
    }

    fn assign(&mut self, job: u64, d: u32, health_check: bool) {
        self.taken[d as usize] = true;
        self.assigned.insert(job);
        self.out.assignments.push(Assignment {
            job,
            device: self.hostname(d).to_owned(),
            health_check,
            group: None,
        });
    }

    fn hostname(&self, d: u32) -> &'a str {
        self.snap.devices[d as usize].hostname.as_str()
    }
}

/// The pass's maps: keys are device type names, tags and hostnames from the device list and
/// server-assigned ids, so a fast hasher without flooding resistance is enough.
type HashMap<K, V> = collections::HashMap<K, V, BuildHasherDefault<FastHasher>>;
type HashSet<K> = collections::HashSet<K, BuildHasherDefault<FastHasher>>;

/// A multiply-rotate hasher over 8-byte words (the shape of rustc's FxHasher).
#[derive(Default)]
struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0xf135_7aea_2e62_a9c5);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let mut word = [0u8; 8];
        let rest = chunks.remainder();
        word[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

/// Which of two free devices a job prefers: fewer tags, idle longer, hostname.
fn device_order(devices: &[DeviceInfo], a: (usize, u32), b: (usize, u32)) -> Ordering {
    let (da, db) = (&devices[a.1 as usize], &devices[b.1 as usize]);
    (a.0, da.idle_since, &da.hostname).cmp(&(b.0, db.idle_since, &db.hostname))
}

/// The id of tag set `set` in `sets`, adding it if new (allocates only then).
fn intern(sets: &mut HashMap<Vec<u32>, u32>, set: &[u32]) -> u32 {
    if let Some(&id) = sets.get(set) {
        return id;
    }
    let id = index(sets.len());
    sets.insert(set.to_vec(), id);
    id
}

/// Whether sorted `small` is contained in sorted `big`.
fn is_subset(small: &[u32], big: &[u32]) -> bool {
    let mut big = big.iter();
    small.iter().all(|s| big.any(|b| b == s))
}

/// A vector index as a u32 (snapshots hold far fewer than 2^32 items; saturates otherwise).
fn index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
