//! LAVA's own jobs are accepted, and the documents LAVA rejects are rejected with a message
//! that names the offending key and its line.

mod common;

use basalt::job::{parse_job_file, parse_job_file_as, Reading};
use common::{corpus, yaml_files};

#[test]
fn corpus_jobs_are_accepted() {
    let mut files = yaml_files("jobs/qemu");
    files.extend(yaml_files("jobs/uboot"));
    files.extend(yaml_files("jobs/multinode/scheduler"));
    files.extend(yaml_files("jobs/multinode/dispatcher"));
    assert!(
        files.len() >= 50,
        "corpus looks incomplete: {}",
        files.len()
    );
    let mut failures = Vec::new();
    let mut subjobs = 0;
    for f in &files {
        // Server-made MultiNode sub-jobs are what a dispatcher receives: LAVA's submission
        // gate refuses them, `basalt run` takes them.
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let reading = if text.contains("target_group") {
            subjobs += 1;
            assert!(
                parse_job_file(f).is_err(),
                "{}: a sub-job accepted as a submission",
                f.display()
            );
            Reading::Dispatch
        } else {
            Reading::Submission
        };
        match parse_job_file_as(f, reading) {
            Ok((_, report)) => {
                for w in report.warnings() {
                    println!("{}", report.line(w));
                }
            }
            Err(e) => failures.push(e.report.to_string()),
        }
    }
    assert_eq!(subjobs, 9, "the corpus has 9 sub-jobs");
    assert!(
        failures.is_empty(),
        "{} of {} rejected:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn corpus_invalid_jobs_are_rejected_with_key_and_line() {
    // (file, key path that must be named, line of that key in the file)
    let expect = [
        ("missing-job-name.yaml", "job_name", None),
        (
            "monitor-name-invalid-chars.yaml",
            "actions[2].test.monitors[0].name",
            Some(30),
        ),
        (
            "multinode-host-role-unknown.yaml",
            "protocols.lava-multinode.roles.guest.host_role",
            Some(13),
        ),
        (
            "multinode-host-role-without-expect-role.yaml",
            "protocols.lava-multinode.roles.guest.host_role",
            Some(13),
        ),
        (
            "multinode-expect-role-without-host-role.yaml",
            "protocols.lava-multinode.roles.guest.expect_role",
            Some(13),
        ),
    ];
    let files = yaml_files("invalid");
    assert_eq!(files.len(), expect.len(), "invalid/ changed: {files:?}");
    for (name, key, line) in expect {
        let path = corpus().join("invalid").join(name);
        let err = match parse_job_file(&path) {
            Ok(_) => panic!("{name} was accepted"),
            Err(e) => e.report,
        };
        let text = err.to_string();
        println!("{text}");
        let hit = err.errors().find(|d| d.path == key);
        let hit = hit.unwrap_or_else(|| panic!("{name}: no error names {key}:\n{text}"));
        if let Some(line) = line {
            assert_eq!(hit.mark.line, line, "{name}: wrong line in\n{text}");
        }
        assert!(
            text.contains(&format!("{}:{}:", path.display(), hit.mark)),
            "{text}"
        );
    }
}

/// What LAVA's submission gate accepts and refuses beyond the corpus (found by checking
/// LAVA's documentation examples against its gate).
#[test]
fn gate_edge_cases() {
    use basalt::job::parse_job;
    let job = |actions: &str, timeouts: &str| {
        format!("device_type: x\njob_name: t\nvisibility: public\ntimeouts:\n  job: {{minutes: 10}}\n{timeouts}actions:\n{actions}")
    };
    // Strategies LAVA knows (with `_` or `-`) are accepted with a warning.
    for a in [
        "- boot: {method: ser_ctl}\n",
        "- boot: {method: monitor}\n",
        "- deploy: {to: qdl}\n- boot: {method: qdl}\n",
        "- deploy: {to: usbg-ms}\n",
        "- boot: {method: uuu, commands: [{uuu: '-b sd {boot}'}]}\n",
    ] {
        let (_, report) = parse_job("t.yaml", &job(a, "")).unwrap_or_else(|e| panic!("{a}: {e}"));
        assert!(report.warnings().count() > 0, "{a}");
    }
    // An unknown method is an error that lists the known ones.
    let e = parse_job("t.yaml", &job("- boot: {method: uboot}\n", "")).unwrap_err();
    assert!(
        e.to_string().contains(
            "t.yaml:7:18: actions[0].boot.method: unknown boot method 'uboot'; expected one of"
        ),
        "{e}"
    );
    // A timeout longer than the job's: LAVA 2026 refuses it (check_job_timeouts).
    let e = parse_job(
        "t.yaml",
        &job(
            "- boot: {method: minimal, timeout: {minutes: 30}}\n",
            "  action: {minutes: 20}\n",
        ),
    )
    .unwrap_err();
    assert_eq!(
        e.report
            .errors()
            .filter(|w| w.message.contains("larger than the job timeout"))
            .count(),
        2,
        "{e}"
    );
    // No extra keys in `timeouts`.
    let e = parse_job(
        "t.yaml",
        &job("- boot: {method: minimal}\n", "  test: {minutes: 1}\n"),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("timeouts.test: unknown key in timeouts"),
        "{e}"
    );
}
