//! The `lava-api` crate (crates.io 0.2.1, LAVA's Rust client, as lava-gitlab-runner uses it)
//! against a [`basalt::lab::LocalLab`] with one worker and one `basalt-board`: devices, workers
//! and tags listed and parsed, jobs listed with the crate's filters and orderings, a job
//! submitted and followed to its end, its log read from an offset, its test cases and JUnit
//! read, and a second job canceled. Every field the crate parses must be there with LAVA's
//! type: a mismatch fails here as it would fail the crate's users.
//!
//! It needs root (basalt-board chroots into its ramdisk), the boot fixtures (`BASALT_FIXTURES`,
//! default `target/fixtures`) and the workspace's binaries built (`cargo test --workspace`
//! builds them; `cargo build --workspace` before `cargo test -p lava-api-compat`).

use basalt::lab::{LocalLab, Spec, WorkerSpec};
use futures::{StreamExt, TryStreamExt};
use lava_api::job::{Health, Job, Ordering, State};
use lava_api::joblog::{JobLogEntry, JobLogMsg};
use lava_api::Lava;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The workspace's target directory of this test binary (`target/debug/deps/..` → `target/debug`):
/// where `basalt`, `basalt-master`, `basalt-worker` and `basalt-board` are.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>")
        .to_path_buf();
    for bin in ["basalt", "basalt-master", "basalt-worker", "basalt-board"] {
        assert!(
            dir.join(bin).is_file(),
            "{} is missing: build the workspace first (cargo build --workspace)",
            dir.join(bin).display()
        );
    }
    dir
}

fn fixtures_dir() -> PathBuf {
    let dir = std::env::var_os("BASALT_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/fixtures"));
    assert!(
        dir.join("amd64/initramfs.cpio.gz").is_file(),
        "boot fixtures missing in {}: run hw-tests/build-fixtures.sh (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// A directory under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!("basalt-lava-api-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("a temporary directory");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The job `id` as the crate reads it (`jobs/?id=ID`).
async fn job(lava: &Lava, id: i64) -> Job {
    let jobs: Vec<Job> = lava
        .jobs()
        .id(id)
        .query()
        .try_collect()
        .await
        .expect("jobs/?id=");
    assert_eq!(jobs.len(), 1, "job {id}: {jobs:?}");
    jobs.into_iter().next().expect("one job")
}

/// Polls job `id` (every 200 ms) until it is `state`, within `within`.
async fn wait_for(lava: &Lava, id: i64, state: State, within: Duration) -> Job {
    let deadline = Instant::now() + within;
    loop {
        let j = job(lava, id).await;
        if j.state == state {
            return j;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} not {state} within {within:?}: {j:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn ids(jobs: lava_api::job::JobsBuilder<'_>) -> Vec<i64> {
    jobs.query()
        .map_ok(|j| j.id)
        .try_collect()
        .await
        .expect("a job list")
}

#[test]
fn lava_api_crate_reads_and_drives_a_basalt_lab() {
    let tmp = TempDir::new();
    let lab = LocalLab::start(Spec {
        dir: tmp.0.join("lab"),
        bin_dir: bin_dir(),
        fixtures: fixtures_dir(),
        workers: vec![WorkerSpec {
            name: "w1".into(),
            boards: 1,
            qemu: 0,
            command: None,
        }],
        heartbeat_secs: 1,
        bootdelay: 1,
        keep_job_dirs: false,
        events: false,
        anonymous_read: false,
        coordinator: None,
    })
    .expect("the lab starts");
    // a device with tags, of a type no job asks for
    let c = lab.client();
    c.post("devicetypes/", &serde_json::json!({"name": "tagged"}))
        .expect("a device type");
    c.post(
        "devices/",
        &serde_json::json!({"hostname": "tagged-1", "device_type": "tagged",
                            "worker_host": "w1", "tags": ["fast", "usb"], "description": "two tags"}),
    )
    .expect("a tagged device");
    // the board job, its measurement in a lava-test-set
    let latency =
        "          - lava-test-case boot-latency --result pass --measurement 42 --units ms\n";
    let board_job = lab.board_job().expect("the board job");
    assert!(board_job.contains(latency), "{board_job}");
    let definition = board_job.replace(
        latency,
        &format!("          - lava-test-set start boot\n{latency}          - lava-test-set stop\n"),
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let lava = Lava::new(&lab.url, Some(lab.token.clone())).expect("a client");

        // without a token the reads are refused (basalt's default), and the crate says so
        let anonymous = Lava::new(&lab.url, None).expect("an anonymous client");
        let refused = anonymous.workers().try_next().await;
        assert!(refused.is_err(), "an anonymous read: {refused:?}");

        // workers
        let workers: Vec<_> = lava.workers().try_collect().await.expect("workers/");
        assert_eq!(workers.len(), 1, "{workers:?}");
        assert_eq!(workers[0].hostname, "w1");
        assert_eq!(workers[0].state, lava_api::worker::State::Online);
        assert_eq!(workers[0].health, lava_api::worker::Health::Active);

        // tags, and devices with their tags resolved
        let mut tags = lava.tags().await.expect("tags/");
        tags.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<&str> = tags.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["fast", "usb"]);
        assert!(tags.iter().all(|t| t.description.is_none()));
        assert_ne!(tags[0].id, tags[1].id);
        assert_eq!(lava.tag(tags[1].id).await.as_ref(), Some(&tags[1]));
        let devices: Vec<_> = lava.devices().try_collect().await.expect("devices/");
        let hostnames: Vec<&str> = devices.iter().map(|d| d.hostname.as_str()).collect();
        assert_eq!(hostnames, ["tagged-1", "w1-board-1"], "ordering=hostname");
        let (tagged, board) = (&devices[0], &devices[1]);
        assert_eq!(board.device_type, "basalt-board");
        assert_eq!(board.worker_host, "w1");
        assert!(board.tags.is_empty());
        assert!(matches!(
            board.health,
            lava_api::device::Health::Unknown | lava_api::device::Health::Good
        ));
        assert_eq!(tagged.tags, tags);
        assert_eq!(tagged.description.as_deref(), Some("two tags"));

        // a job, followed to its end; a second one, queued behind it, canceled
        let submitted = lava.submit_job(&definition).await.expect("jobs/ POST");
        assert_eq!(submitted.len(), 1, "{submitted:?}");
        let id = submitted[0];
        let second = lava.submit_job(&definition).await.expect("a second job")[0];
        assert!(second > id);
        let invalid = lava.submit_job("job_name: x\ntimeouts: 3\n").await;
        assert!(
            matches!(invalid, Err(lava_api::job::SubmissionError::InvalidJob(_))),
            "{invalid:?}"
        );
        let queued = job(&lava, second).await;
        assert!(
            matches!(
                queued.state,
                State::Submitted | State::Scheduling | State::Scheduled
            ),
            "{queued:?}"
        );
        lava.cancel_job(second).await.expect("jobs/ID/cancel/");
        let canceled = wait_for(&lava, second, State::Finished, Duration::from_secs(60)).await;
        assert_eq!(canceled.health, Health::Canceled, "{canceled:?}");

        let done = wait_for(&lava, id, State::Finished, Duration::from_secs(240)).await;
        assert_eq!(done.health, Health::Complete, "{done:?}");
        assert_eq!(done.actual_device.as_deref(), Some("w1-board-1"));
        assert_eq!(done.requested_device_type.as_deref(), Some("basalt-board"));
        assert_eq!(done.submitter, "admin");
        assert!(!done.health_check);
        assert_eq!(done.definition, definition);
        assert_eq!(done.original_definition, definition);
        let (start, end) = (
            done.start_time.expect("a start time"),
            done.end_time.expect("an end time"),
        );
        assert!(done.submit_time <= start && start <= end, "{done:?}");
        assert!(done.failure_comment.is_none(), "{done:?}");

        // the crate's filters and orderings
        let all = ids(lava.jobs()).await;
        assert_eq!(all, [id, second], "ascending by id (the crate's default)");
        assert_eq!(
            ids(lava.jobs().ordering(Ordering::Id, false)).await,
            [second, id]
        );
        assert_eq!(
            ids(lava
                .jobs()
                .ordering(Ordering::EndTime, true)
                .state(State::Finished))
            .await,
            [second, id],
            "the canceled job ended first"
        );
        assert_eq!(
            ids(lava.jobs().ordering(Ordering::SubmitTime, false)).await,
            [second, id]
        );
        assert_eq!(ids(lava.jobs().health(Health::Complete)).await, [id]);
        assert_eq!(
            ids(lava.jobs().health_not(Health::Complete)).await,
            [second]
        );
        assert_eq!(
            ids(lava.jobs().state(State::Finished).health(Health::Canceled)).await,
            [second]
        );
        assert_eq!(
            ids(lava
                .jobs()
                .health(Health::Complete)
                .health(Health::Canceled))
            .await,
            [id, second],
            "health__in"
        );
        assert!(ids(lava.jobs().state(State::Running)).await.is_empty());
        assert!(ids(lava.jobs().state_not(State::Finished)).await.is_empty());
        assert_eq!(ids(lava.jobs().id(id).id(second)).await, [id, second]);
        assert_eq!(ids(lava.jobs().id_after(id)).await, [second]);
        // pages of one, followed through `next`
        let mut paged = lava.jobs().limit(1).query();
        let first = paged.try_next().await.expect("a page").expect("a job");
        assert_eq!(paged.reported_items(), Some(2));
        assert_eq!(first.id, id);
        assert_eq!(
            paged.try_next().await.expect("page 2").map(|j| j.id),
            Some(second)
        );
        assert!(paged.try_next().await.expect("the end").is_none());
        let before = done.submit_time - chrono::Duration::seconds(1);
        assert_eq!(ids(lava.jobs().submitted_after(before)).await, [id, second]);
        assert_eq!(ids(lava.jobs().started_after(before)).await, [id]);
        assert_eq!(ids(lava.jobs().ended_after(end)).await, Vec::<i64>::new());

        // the log: whole, then from an offset
        let log: Vec<JobLogEntry> = lava
            .log(id)
            .log()
            .try_collect()
            .await
            .expect("jobs/ID/logs/ parses");
        assert!(log.len() > 10, "{} log lines", log.len());
        let from = 5;
        let tail: Vec<JobLogEntry> = lava
            .log(id)
            .start(from as u64)
            .log()
            .try_collect()
            .await
            .expect("jobs/ID/logs/?start=");
        assert_eq!(tail.len(), log.len() - from);
        assert_eq!(format!("{:?}", tail[0]), format!("{:?}", log[from]));
        let some: Vec<JobLogEntry> = lava
            .log(id)
            .start(2)
            .end(4)
            .log()
            .try_collect()
            .await
            .expect("jobs/ID/logs/?start=&end=");
        assert_eq!(format!("{some:?}"), format!("{:?}", &log[2..4]));
        let results: Vec<_> = log
            .iter()
            .filter_map(|e| match &e.msg {
                JobLogMsg::Result(r) => Some(r),
                _ => None,
            })
            .collect();
        let uname = results
            .iter()
            .find(|r| r.case == "uname")
            .expect("uname's result in the log");
        assert_eq!(uname.result, "pass");
        assert!(results
            .iter()
            .any(|r| r.definition == "lava" && r.duration.is_some()));
        let past = lava.log(id).start(log.len() as u64 + 10).log().next().await;
        assert!(
            matches!(past, Some(Err(lava_api::joblog::JobLogError::NoData))),
            "past the end: {past:?}"
        );

        // test cases
        use lava_api::test::PassFail;
        let cases: Vec<_> = lava
            .test_cases(id)
            .try_collect()
            .await
            .expect("jobs/ID/tests/ parses");
        let case = |name: &str| {
            cases
                .iter()
                .find(|c| c.name == name)
                .unwrap_or_else(|| panic!("no case {name}: {cases:?}"))
        };
        assert_eq!(case("uname").result, PassFail::Pass);
        assert_eq!(case("must-fail").result, PassFail::Fail);
        let latency = case("boot-latency");
        assert_eq!(latency.unit, "ms");
        let m: f64 = latency
            .measurement
            .as_deref()
            .expect("a measurement")
            .parse()
            .expect("a number");
        assert_eq!(m, 42.0);
        let meta = latency.metadata.as_ref().expect("metadata");
        assert_eq!(
            (meta.definition.as_str(), meta.case.as_str()),
            ("0_smoke", "boot-latency")
        );
        assert_eq!(meta.result, PassFail::Pass);
        assert!(latency.test_set.is_some(), "{latency:?}");
        assert_eq!(case("uname").test_set, None);
        assert_eq!(case("job").result, PassFail::Pass);
        assert!(cases.iter().all(|c| c.logged >= start), "{cases:?}");
        assert_ne!(case("job").suite, case("uname").suite);
        let mut case_ids: Vec<i64> = cases.iter().map(|c| c.id).collect();
        case_ids.dedup();
        assert_eq!(case_ids.len(), cases.len());
        let canceled_cases: Result<Vec<_>, _> = lava.test_cases(second).try_collect().await;
        assert!(
            canceled_cases.is_ok(),
            "a canceled job's tests: {canceled_cases:?}"
        );

        // JUnit
        let junit: Vec<u8> = lava
            .job_results_as_junit(id)
            .await
            .expect("jobs/ID/junit/")
            .try_fold(Vec::new(), |mut acc, chunk| async move {
                acc.extend_from_slice(&chunk);
                Ok(acc)
            })
            .await
            .expect("the JUnit body");
        let junit = String::from_utf8(junit).expect("UTF-8");
        assert!(junit.starts_with("<?xml"), "{junit}");
        assert!(junit.contains("<testsuite name=\"0_smoke\""), "{junit}");
        assert!(junit.contains("must-fail"), "{junit}");

        // an Incomplete job (its kernel is missing): its failure as the crate parses it
        assert!(definition.contains("/boards/Image"), "{definition}");
        let broken = definition.replace("/boards/Image", "/boards/no-such-Image");
        let bad = lava.submit_job(&broken).await.expect("a broken job")[0];
        let failed = wait_for(&lava, bad, State::Finished, Duration::from_secs(120)).await;
        assert_eq!(failed.health, Health::Incomplete, "{failed:?}");
        assert!(failed.failure_comment.is_some(), "{failed:?}");
        assert_eq!(ids(lava.jobs().health(Health::Incomplete)).await, [bad]);
        let cases: Vec<_> = lava
            .test_cases(bad)
            .try_collect()
            .await
            .expect("an Incomplete job's tests parse");
        let job_case = cases
            .iter()
            .find(|c| c.name == "job")
            .unwrap_or_else(|| panic!("no job case: {cases:?}"));
        assert_eq!(job_case.result, PassFail::Fail);
        let meta = job_case.metadata.as_ref().expect("metadata");
        assert!(
            !matches!(
                meta.error_type,
                None | Some(lava_api::test::ErrorType::None)
            ),
            "{meta:?}"
        );
        assert!(meta.error_msg.is_some(), "{meta:?}");
    });
}
