//! `basalt run` end to end on a real Linux kernel in QEMU (software emulation), with the
//! fixtures of hw-tests/build-fixtures.sh: LAVA jobs with inline and git test definitions,
//! several test actions, repeat, and a boot that never reaches its prompt.

mod common;

use common::{fixtures_amd64, results, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The demo job with the fixture paths filled in.
fn demo_job() -> String {
    let (k, i) = fixtures_amd64();
    std::fs::read_to_string(repo().join("config/jobs/demo-qemu.yaml"))
        .expect("demo job")
        .replace("@KERNEL@", &k.to_string_lossy())
        .replace("@INITRD@", &i.to_string_lossy())
}

/// Runs `basalt run` on the demo QEMU device; returns the exit code.
fn run(job_text: &str, dir: &Path) -> i32 {
    let job = dir.join("job.yaml");
    std::fs::write(&job, job_text).unwrap();
    let out = dir.join("out");
    let status = Command::new(env!("CARGO_BIN_EXE_basalt"))
        .arg("run")
        .arg(&job)
        .arg("--device")
        .arg(repo().join("config/devices/qemu-amd64.jinja2"))
        .arg("--output-dir")
        .arg(&out)
        .arg("-q")
        .status()
        .expect("basalt runs");
    status.code().unwrap_or(-1)
}

#[test]
fn inline_definition_gives_lava_results() {
    let tmp = TempDir::new("inline");
    assert_eq!(run(&demo_job(), tmp.path()), 0, "job should be Complete");
    let out = tmp.path().join("out");
    let res = results(&out);
    let cases: Vec<_> = res.iter().filter(|r| r.0 == "0_smoke").collect();
    assert_eq!(cases.len(), 3, "{res:?}");
    assert_eq!(
        (cases[0].1.as_str(), cases[0].2.as_str()),
        ("uname", "pass")
    );
    assert_eq!(
        (cases[1].1.as_str(), cases[1].2.as_str()),
        ("must-fail", "fail")
    );
    assert_eq!(
        (cases[2].1.as_str(), cases[2].2.as_str()),
        ("boot-latency", "pass")
    );
    assert_eq!(cases[2].3, Some(42.0));
    assert_eq!(cases[2].4.as_deref(), Some("ms"));
    assert!(res
        .iter()
        .any(|r| r.0 == "lava" && r.1 == "job" && r.2 == "pass"));
    assert!(res
        .iter()
        .any(|r| r.0 == "lava" && r.1 == "0_smoke" && r.2 == "pass"));
    // The log is LAVA's format: our reader and PyYAML read it.
    let log = std::fs::read_to_string(out.join("output.yaml")).unwrap();
    let doc = basalt::yaml::load(&log).expect("output.yaml is YAML");
    let records = doc.as_seq().unwrap();
    assert!(records
        .iter()
        .any(|r| r.get("lvl").and_then(|l| l.as_str()) == Some("target")
            && r.get("msg")
                .and_then(|m| m.as_str())
                .is_some_and(|m| m.contains("Linux version"))));
    if Path::new("/usr/bin/python3").exists() {
        let py = Command::new("/usr/bin/python3")
            .arg("-c")
            .arg("import sys, yaml; d = yaml.safe_load(open(sys.argv[1])); assert isinstance(d, list) and all('dt' in r and 'lvl' in r for r in d); yaml.safe_load(open(sys.argv[2]))")
            .arg(out.join("output.yaml"))
            .arg(out.join("results.yaml"))
            .output()
            .unwrap();
        assert!(
            py.status.success(),
            "PyYAML cannot read the log: {}",
            String::from_utf8_lossy(&py.stderr)
        );
    }
    assert!(out.join("description.yaml").is_file());
}

fn git(dir: &Path, args: &[&str]) {
    let st = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .status()
        .unwrap();
    assert!(st.success(), "git {args:?}");
}

#[test]
fn git_definitions_two_test_actions_and_repeat() {
    let tmp = TempDir::new("git");
    // The job's git runs confined, as the job user, with a private /tmp: a repository on the
    // worker must be outside /tmp and readable by that user (/var/tmp, whatever the umask).
    let repo_tmp =
        TempDir(PathBuf::from("/var/tmp").join(format!("basalt-test-repo-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(repo_tmp.path());
    let repo_dir = repo_tmp.path().join("tests.git");
    std::fs::create_dir_all(repo_dir.join("defs")).unwrap();
    std::fs::write(
        repo_dir.join("defs/params.yaml"),
        r#"metadata:
  format: Lava-Test Test Definition 1.0
  name: params
  description: parameters and a parse pattern
params:
  GREETING: hello
run:
  steps:
  - lava-test-case greeting --shell test "$GREETING" = from-job
  - 'echo "pattern-case-a: pass"'
  - 'echo "pattern-case-b: FAIL"' 
  - lava-test-set start extra
  - lava-test-case in-set --result skip
  - lava-test-set stop
parse:
  pattern: '(?P<test_case_id>pattern-case-\w+): (?P<result>\w+)'
  fixupdict:
    FAIL: fail
"#,
    )
    .unwrap();
    std::fs::write(
        repo_dir.join("defs/second.yaml"),
        "metadata:\n  format: Lava-Test Test Definition 1.0\n  name: second\n  description: x\nrun:\n  steps:\n  - lava-test-case second-ok --shell true\n",
    )
    .unwrap();
    git(&repo_dir, &["init", "-q"]);
    git(&repo_dir, &["add", "."]);
    git(&repo_dir, &["commit", "-q", "-m", "tests"]);
    let st = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(repo_tmp.path())
        .status()
        .unwrap();
    assert!(st.success());
    let url = format!("file://{}", repo_dir.display());
    let mut job = demo_job();
    // The boot runs twice (repeat), then two test actions, each with a git definition.
    job = job.replace("    method: qemu\n", "    method: qemu\n    repeat: 2\n");
    let test_start = job.find("- test:").unwrap();
    job.truncate(test_start);
    job.push_str(&format!(
        "- test:\n    timeout:\n      minutes: 2\n    definitions:\n    - from: git\n      repository: {url}\n      path: defs/params.yaml\n      name: params\n      parameters:\n        GREETING: from-job\n\
         - test:\n    timeout:\n      minutes: 2\n    definitions:\n    - from: git\n      repository: {url}\n      path: defs/second.yaml\n      name: second\n"
    ));
    assert_eq!(run(&job, tmp.path()), 0, "job should be Complete");
    let out = tmp.path().join("out");
    let res = results(&out);
    let find = |d: &str, c: &str| {
        res.iter()
            .find(|r| r.0 == d && r.1 == c)
            .map(|r| r.2.clone())
    };
    assert_eq!(
        find("0_params", "greeting").as_deref(),
        Some("pass"),
        "{res:?}"
    );
    assert_eq!(find("0_params", "pattern-case-a").as_deref(), Some("pass"));
    assert_eq!(find("0_params", "pattern-case-b").as_deref(), Some("fail"));
    assert_eq!(find("0_params", "in-set").as_deref(), Some("skip"));
    assert_eq!(find("1_second", "second-ok").as_deref(), Some("pass"));
    assert_eq!(find("lava", "1_second").as_deref(), Some("pass"));
    let log = std::fs::read_to_string(out.join("output.yaml")).unwrap();
    assert_eq!(
        log.matches("start: 2.1.1 execute-qemu").count(),
        2,
        "repeat: 2 boots twice"
    );
    let set = std::fs::read_to_string(out.join("results.yaml")).unwrap();
    assert!(set.contains("set: extra"), "{set}");
    let commit = set.contains("commit_id");
    assert!(commit, "git definitions record their commit");
}

#[test]
fn boot_without_prompt_is_incomplete_within_its_timeout() {
    let tmp = TempDir::new("noprompt");
    let job = demo_job()
        .replace(
            "    prompts:\n    - '/ # '\n",
            "    prompts:\n    - 'a prompt that never comes'\n",
        )
        .replace(
            "    timeout:\n      minutes: 2\n    prompts",
            "    timeout:\n      seconds: 12\n    prompts",
        );
    assert!(job.contains("seconds: 12"), "{job}");
    let started = Instant::now();
    assert_eq!(run(&job, tmp.path()), 1, "job should be Incomplete");
    let took = started.elapsed().as_secs_f64();
    assert!(
        took < 12.0 + 10.0,
        "the boot timeout was not honoured: {took:.1} s"
    );
    let out = tmp.path().join("out");
    let text = std::fs::read_to_string(out.join("results.yaml")).unwrap();
    let doc = basalt::yaml::load(&text).unwrap();
    let items = doc.as_seq().unwrap();
    let job_result = items
        .iter()
        .find(|r| r.get("case").and_then(|c| c.as_str()) == Some("job"))
        .unwrap();
    assert_eq!(
        job_result.get("result").and_then(|r| r.as_str()),
        Some("fail")
    );
    assert_eq!(
        job_result.get("error_type").and_then(|r| r.as_str()),
        Some("LAVATimeout")
    );
    let boot = items
        .iter()
        .find(|r| r.get("case").and_then(|c| c.as_str()) == Some("boot-image-retry"))
        .expect("the boot action is named in the results");
    assert_eq!(boot.get("result").and_then(|r| r.as_str()), Some("fail"));
    let secs: f64 = boot
        .get("duration")
        .and_then(|d| d.as_str())
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (11.0..=13.0).contains(&secs),
        "boot ran {secs} s for a 12 s timeout"
    );
    let log = std::fs::read_to_string(out.join("output.yaml")).unwrap();
    assert!(
        log.contains("start: 4 finalize"),
        "finalize runs after a failure"
    );
    // No QEMU left behind: the log names its pid; it must be gone.
    let pid: Option<u32> = log
        .split("qemu (pid ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|p| p.parse().ok());
    let pid = pid.expect("QEMU pid in the log");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "QEMU {pid} is still running"
    );
}

#[test]
fn sigterm_cancels_the_job_and_finalize_cleans_up() {
    let tmp = TempDir::new("cancel");
    let job = tmp.path().join("job.yaml");
    std::fs::write(
        &job,
        demo_job().replace(
            "    prompts:\n    - '/ # '\n",
            "    prompts:\n    - 'never comes'\n",
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_basalt"))
        .arg("run")
        .arg(&job)
        .arg("--device")
        .arg(repo().join("config/devices/qemu-amd64.jinja2"))
        .arg("--output-dir")
        .arg(&out)
        .arg("-q")
        .spawn()
        .unwrap();
    // Wait (with a deadline) until QEMU runs, then ask basalt to stop.
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    let pid = loop {
        let log = std::fs::read_to_string(out.join("output.yaml")).unwrap_or_default();
        if let Some(p) = log
            .split("qemu (pid ")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .and_then(|p| p.parse::<u32>().ok())
        {
            break p;
        }
        assert!(Instant::now() < deadline, "QEMU never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "a canceled job is Incomplete");
    let results = std::fs::read_to_string(out.join("results.yaml")).unwrap();
    assert!(results.contains("error_type: Canceled"), "{results}");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "QEMU {pid} outlived the canceled job"
    );
}

/// A python3 with PyYAML (python3-yaml, scripts/install-deps.sh).
fn python3() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// The board prints 640 KiB of random bytes: `output.yaml` and `results.yaml` still load with
/// PyYAML (pure and libyaml), and a line of bytes that are not UTF-8 comes back exactly by the
/// rule of docs/log-format.md.
#[test]
fn random_console_output_is_yaml_and_keeps_its_bytes() {
    let tmp = TempDir::new("urandom");
    let mut job = demo_job();
    let steps = job
        .find("          steps:\n")
        .expect("the demo job has steps");
    job.truncate(steps);
    job.push_str(
        "          steps:\n\
         \x20         - 'for i in 1 2 3 4 5 6 7 8 9 10; do head -c 65536 /dev/urandom; done; echo'\n\
         \x20         - 'printf ''BYTES-START\\377\\376\\303\\050 caf\\303\\251 \\355\\240\\200 \\357\\276\\200 \\302\\233 \"q\" \\\\ \\t tab BYTES-END\\n'''\n\
         \x20         - lava-test-case random-done --result pass\n",
    );
    assert_eq!(run(&job, tmp.path()), 0, "job should be Complete");
    let out = tmp.path().join("out");
    let res = results(&out);
    assert!(
        res.iter()
            .any(|r| r.0 == "0_smoke" && r.1 == "random-done" && r.2 == "pass"),
        "{res:?}"
    );
    let script = r#"
import sys, yaml
def log_bytes(s):
    return b"".join(bytes([ord(c) - 0xEF00]) if 0xEF80 <= ord(c) <= 0xEFFF
                    else c.encode("utf-8") for c in s)
out = sys.argv[1]
raw = open(out + "/output.yaml", encoding="utf-8").read()
for loader in (yaml.SafeLoader, yaml.CSafeLoader):
    recs = yaml.load(raw, Loader=loader)
    yaml.load(open(out + "/results.yaml", encoding="utf-8").read(), Loader=loader)
    target = [log_bytes(r["msg"]) for r in recs if r["lvl"] == "target"]
    # 640 KiB less what the cleaning removes (C0 controls, escape sequences, line ends)
    assert sum(len(t) for t in target) > 500 * 1024, sum(len(t) for t in target)
    found = [t for t in target if t.startswith(b"BYTES-START")]
    assert len(found) == 1, found
    line = found[0]
    want = b"BYTES-START\xff\xfe\xc3\x28 caf\xc3\xa9 \xed\xa0\x80 \xef\xbe\x80 \xc2\x9b \"q\" \\ \t tab BYTES-END"
    assert line == want, (loader.__name__, line, want)
assert isinstance(yaml.safe_load(raw), list)
print("ok")
"#;
    let py = Command::new(python3())
        .arg("-c")
        .arg(script)
        .arg(&out)
        .output()
        .expect("python3 runs (scripts/install-deps.sh installs python3-yaml)");
    assert!(
        py.status.success(),
        "PyYAML and the byte rule: {}{}",
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr)
    );
    // our own reader too
    let log = std::fs::read_to_string(out.join("output.yaml")).unwrap();
    basalt::yaml::load(&log).expect("output.yaml is YAML");
}
