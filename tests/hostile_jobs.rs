//! Issue 14, items 4 to 7: a job file is untrusted. One regression test per finding, each a
//! real `basalt run` on basalt-board (tftp deploy served by tftpd-hpa, U-Boot, the busybox
//! initramfs, LAVA's test shell) with marker files outside the job's directories and a secret
//! only root can read, made at test time: no marker appears, the secret reaches neither the
//! device, nor the log, nor the output, and every job ends within its timeout (+1 s). Needs
//! root (as CI runs): tftpd-hpa, chroot, tmpfs mounts.

#[path = "../crates/basalt-board/tests/board_support/mod.rs"]
mod board_support;
mod common;

use basalt::yaml::{load, Node};
use board_support::{Board, Tftpd};
use common::{fixtures_amd64, results, ResultRow, TempDir};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "S3CRET-only-root-reads-this";

/// A board, its TFTP server and a scratch directory with a secret (0600) and the marker path.
struct Bench {
    tmp: TempDir,
    /// Where test repositories live: in /var/tmp, outside the private /tmp of the job's
    /// (confined) git, and readable by the job user.
    repos: TempDir,
    tftpd: Tftpd,
    board: Board,
    dict: PathBuf,
    secret: PathBuf,
    marker: PathBuf,
    kernel: PathBuf,
    dtb: PathBuf,
    initrd: PathBuf,
}

impl Bench {
    fn new(tag: &str) -> Bench {
        let (_, initrd) = fixtures_amd64();
        let tftpd = Tftpd::start();
        let port = tftpd.port.to_string();
        let board = Board::start_with_console(
            &["--telnet", "0"],
            &["--speed", "0", "--tftp-port", &port, "--bootdelay", "1"],
        );
        let tmp = TempDir::new(tag);
        // /var/tmp: outside the private /tmp of the job's (confined) git wherever the
        // checkout is, and reachable by the job user
        let repos = TempDir(
            PathBuf::from("/var/tmp")
                .join(format!("basalt-test-repos-{tag}-{}", std::process::id())),
        );
        let _ = std::fs::remove_dir_all(repos.path());
        std::fs::create_dir_all(repos.path()).unwrap();
        let secret = tmp.path().join("secret");
        std::fs::write(&secret, SECRET).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let kernel = tmp.path().join("Image");
        std::fs::write(&kernel, vec![0u8; 4096]).unwrap();
        let dtb = tmp.path().join("board.dtb");
        std::fs::write(&dtb, vec![0xd0u8; 1024]).unwrap();
        let dict = board.write_dictionary(tmp.path());
        let marker = tmp.path().join("marker");
        Bench {
            tmp,
            repos,
            tftpd,
            board,
            dict,
            secret,
            marker,
            kernel,
            dtb,
            initrd,
        }
    }

    /// A job: the tftp deploy (`dtb` URL given), a u-boot boot (`boot_extra` keys) and `test`.
    fn job(&self, timeouts: &str, dtb_url: &str, boot_extra: &str, test: &str) -> String {
        let ramdisk_extra = if boot_extra.contains("transfer_overlay") {
            "      install_overlay: false\n"
        } else {
            ""
        };
        format!(
            "device_type: basalt-board\njob_name: hostile\ntimeouts:\n{timeouts}visibility: public\npriority: medium\nactions:\n\
             - deploy:\n    to: tftp\n    os: oe\n    kernel:\n      url: file://{}\n      type: image\n    ramdisk:\n      url: file://{}\n{ramdisk_extra}    dtb:\n      url: {dtb_url}\n\
             - boot:\n    method: u-boot\n    commands: ramdisk\n{boot_extra}    prompts:\n    - '/ # '\n{test}",
            self.kernel.display(),
            self.initrd.display(),
        )
    }

    fn dtb_url(&self) -> String {
        format!("file://{}", self.dtb.display())
    }

    /// Starts `basalt run -q` of `job` into `out` with `args`.
    fn start(&self, job: &str, out: &Path, args: &[&str]) -> Running {
        let job_path = self.tmp.path().join("job.yaml");
        std::fs::write(&job_path, job).unwrap();
        let stdout = self.tmp.path().join("stdout");
        let types = concat!(env!("CARGO_MANIFEST_DIR"), "/config/device-types");
        let child = Command::new(env!("CARGO_BIN_EXE_basalt"))
            .arg("run")
            .arg("-q")
            .arg(&job_path)
            .arg("--device")
            .arg(&self.dict)
            .arg("--output-dir")
            .arg(out)
            .args(["--device-types", types, "--server-ip", "127.0.0.1"])
            .arg("--tftp-root")
            .arg(self.tftpd.dir.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(&stdout)
                    .unwrap(),
            ))
            .spawn()
            .expect("basalt runs");
        Running {
            child: Some(child),
            started: Instant::now(),
            out: out.to_path_buf(),
            stdout,
        }
    }

    /// Runs `job` to its end (at most `limit`).
    fn run(&self, job: &str, args: &[&str], limit: Duration) -> Outcome {
        let out = self.tmp.path().join("out");
        let _ = std::fs::remove_dir_all(&out);
        self.start(job, &out, args).finish(limit)
    }

    /// Nothing of the secret anywhere a job could have put it, and no marker.
    fn assert_nothing_leaked(&self, o: &Outcome) {
        assert!(
            !self.marker.exists(),
            "a marker appeared: {}",
            self.marker.display()
        );
        for dir in [&o.out, self.tftpd.dir.path(), self.board.dir.path()] {
            let leaks = files_holding(dir, SECRET);
            assert!(leaks.is_empty(), "the secret in {leaks:?}");
        }
        assert!(!o.terminal.contains(SECRET), "{}", o.terminal);
        let left: Vec<_> = std::fs::read_dir(self.tftpd.dir.path()).unwrap().collect();
        assert!(left.is_empty(), "TFTP staging left behind: {left:?}");
    }
}

/// A `basalt run` in progress; killed and reaped if dropped before its end.
struct Running {
    child: Option<Child>,
    started: Instant,
    out: PathBuf,
    stdout: PathBuf,
}

struct Outcome {
    code: Option<i32>,
    elapsed: Duration,
    out: PathBuf,
    log: String,
    terminal: String,
    results: Vec<ResultRow>,
    results_text: String,
}

impl Running {
    fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// Waits for the end (at most `limit`, then kills it and fails).
    fn finish(mut self, limit: Duration) -> Outcome {
        let mut child = self.child.take().expect("running");
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if self.started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!("basalt run did not end within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let elapsed = self.started.elapsed();
        let results_text =
            std::fs::read_to_string(self.out.join("results.yaml")).unwrap_or_default();
        Outcome {
            code: status.code(),
            elapsed,
            log: std::fs::read_to_string(self.out.join("output.yaml")).unwrap_or_default(),
            terminal: std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            results: if results_text.is_empty() {
                Vec::new()
            } else {
                results(&self.out)
            },
            results_text,
            out: self.out.clone(),
        }
    }

    /// Waits until `output.yaml` holds `needle` (within `limit`).
    fn wait_log(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let log = std::fs::read_to_string(self.out.join("output.yaml")).unwrap_or_default();
            if log.contains(needle) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no '{needle}' in the log:\n{}",
                tail(&log)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn find<'a>(r: &'a [ResultRow], def: &str, case: &str) -> Option<&'a ResultRow> {
    r.iter().find(|x| x.0 == def && x.1 == case)
}

/// Every file below `dir` holding `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                todo.push(p);
            } else if m.is_file() {
                let bytes = std::fs::read(&p).unwrap_or_default();
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(p);
                }
            }
        }
    }
    found
}

const TIMEOUTS: &str = "  job:\n    minutes: 2\n  action:\n    minutes: 1\n";

fn def_yaml(name: &str, steps: &[&str]) -> String {
    let mut s = format!(
        "metadata:\n  format: Lava-Test Test Definition 1.0\n  name: {name}\n  description: x\nrun:\n  steps:\n"
    );
    for st in steps {
        s.push_str(&format!("  - {st}\n"));
    }
    s
}

fn git(dir: &Path, args: &[&str]) {
    let st = Command::new("git")
        .args(["-c", "user.email=t@example.com", "-c", "user.name=t"])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .expect("git");
    assert!(st.success(), "git {args:?}");
}

/// A git repository at `dir` holding `defs/ok.yaml` and what `extra` adds.
fn git_repo(dir: &Path, extra: impl FnOnce(&Path)) {
    std::fs::create_dir_all(dir.join("defs")).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    std::fs::write(
        dir.join("defs/ok.yaml"),
        def_yaml(
            "links",
            &[
                "lava-test-case kept-as-link --shell test -L defs/alias.yaml",
                "lava-test-case link-reads --shell grep -q kept-as-link defs/alias.yaml",
            ],
        ),
    )
    .unwrap();
    extra(dir);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "defs"]);
}

fn git_test(repo: &Path, path: &str) -> String {
    format!(
        "- test:\n    timeout:\n      minutes: 1\n    definitions:\n    - from: git\n      repository: {}\n      path: {path}\n      name: links\n",
        repo.display()
    )
}

#[test]
fn symlinks_inside_a_test_repository_stay_symlinks_on_the_device() {
    let b = Bench::new("links-in");
    let repo = b.repos.path().join("repo");
    git_repo(&repo, |d| {
        symlink("ok.yaml", d.join("defs/alias.yaml")).unwrap()
    });
    // through the ramdisk (cpio) and through transfer_overlay (the tarball)
    for boot_extra in [
        "",
        "    transfer_overlay:\n      download_command: wget -q\n      unpack_command: tar -C / -xzf\n",
    ] {
        let job = b.job(TIMEOUTS, &b.dtb_url(), boot_extra, &git_test(&repo, "defs/alias.yaml"));
        let o = b.run(&job, &[], Duration::from_secs(90));
        assert_eq!(o.code, Some(0), "{boot_extra}: log tail:\n{}", tail(&o.log));
        for case in ["kept-as-link", "link-reads"] {
            assert_eq!(
                find(&o.results, "0_links", case).map(|x| x.2.as_str()),
                Some("pass"),
                "{case}: {:?}",
                o.results
            );
        }
        b.assert_nothing_leaked(&o);
    }
}

#[test]
fn symlinks_out_of_a_git_repository_are_refused_with_their_path() {
    let b = Bench::new("links-out");
    let secret = b.secret.clone();
    let marker = b.marker.clone();
    let up = format!("../../../../../../../../../..{}", secret.display());
    type Plant = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Plant, String)> = vec![
        (
            "absolute",
            Box::new(move |d: &Path| symlink(&secret, d.join("defs/leak")).unwrap()),
            format!("'defs/leak' is a symlink to '{}'", b.secret.display()),
        ),
        (
            "relative",
            Box::new({
                let up = up.clone();
                move |d: &Path| symlink(&up, d.join("defs/up")).unwrap()
            }),
            format!("'defs/up' is a symlink to '{up}' that leads out of it"),
        ),
        (
            "run.sh",
            Box::new(move |d: &Path| symlink(&marker, d.join("run.sh")).unwrap()),
            "'run.sh' is a symlink".to_string(),
        ),
        (
            "through a directory link",
            Box::new(|d: &Path| {
                std::fs::create_dir_all(d.join("a/b")).unwrap();
                symlink("../..", d.join("a/b/top")).unwrap();
                symlink("top/../defs", d.join("a/b/esc")).unwrap();
            }),
            "'a/b/esc' is a symlink".to_string(),
        ),
    ];
    for (tag, extra, needle) in cases {
        let repo = b
            .repos
            .path()
            .join(format!("repo-{}", tag.replace(' ', "-")));
        git_repo(&repo, |d| extra(d));
        let job = b.job(TIMEOUTS, &b.dtb_url(), "", &git_test(&repo, "defs/ok.yaml"));
        let o = b.run(&job, &[], Duration::from_secs(60));
        assert_eq!(o.code, Some(1), "{tag}: log tail:\n{}", tail(&o.log));
        assert!(
            o.results_text.contains("error_type: Job"),
            "{tag}: {}",
            o.results_text
        );
        assert!(
            o.log.contains(&needle),
            "{tag}: no {needle:?} in\n{}",
            tail(&o.log)
        );
        b.assert_nothing_leaked(&o);
    }
}

/// A tar archive from raw headers (names and links as given, `..` included).
fn raw_tar(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, ty, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        {
            let g = h.as_gnu_mut().unwrap();
            g.name[..name.len()].copy_from_slice(name.as_bytes());
            g.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(*ty);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        if matches!(ty, tar::EntryType::Char) {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn url_tarballs_with_links_out_hardlinks_devices_or_dot_dot_are_refused() {
    use tar::EntryType as T;
    let b = Bench::new("url-tar");
    let def = def_yaml("links", &["lava-test-case never --result pass"]);
    let secret = b.secret.display().to_string();
    let markerdir = b.tmp.path().join("markerdir");
    std::fs::create_dir_all(&markerdir).unwrap();
    let up_to_markerdir = format!("../../../../../../../../../..{}", markerdir.display());
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "absolute symlink",
            raw_tar(&[
                ("defs/ok.yaml", T::Regular, "", def.as_bytes()),
                ("defs/leak", T::Symlink, &secret, b""),
            ]),
            format!("member 'defs/leak' is a symlink to '{secret}'"),
        ),
        (
            "relative symlink out, then a file through it",
            raw_tar(&[
                ("defs/ok.yaml", T::Regular, "", def.as_bytes()),
                ("defs/evil", T::Symlink, &up_to_markerdir, b""),
                ("defs/evil/marker", T::Regular, "", b"x"),
            ]),
            "member 'defs/evil/marker' cannot be unpacked".to_string(),
        ),
        (
            "relative symlink out",
            raw_tar(&[
                ("defs/ok.yaml", T::Regular, "", def.as_bytes()),
                ("defs/up", T::Symlink, &up_to_markerdir, b""),
            ]),
            "'defs/up' is a symlink to".to_string(),
        ),
        (
            "hardlink",
            raw_tar(&[
                ("defs/ok.yaml", T::Regular, "", def.as_bytes()),
                ("defs/h", T::Link, "defs/ok.yaml", b""),
            ]),
            "member 'defs/h' is a hardlink".to_string(),
        ),
        (
            "device node",
            raw_tar(&[
                ("defs/ok.yaml", T::Regular, "", def.as_bytes()),
                ("defs/null", T::Char, "", b""),
            ]),
            "member 'defs/null' is a device node".to_string(),
        ),
        (
            "dot dot",
            raw_tar(&[
                ("defs/ok.yaml", T::Regular, "", def.as_bytes()),
                ("../../../marker", T::Regular, "", b"x"),
            ]),
            "member '../../../marker' leaves the directory".to_string(),
        ),
    ];
    for (tag, tarball, needle) in cases {
        let path = b.tmp.path().join("defs.tar");
        std::fs::write(&path, tarball).unwrap();
        let test = format!(
            "- test:\n    timeout:\n      minutes: 1\n    definitions:\n    - from: url\n      repository: file://{}\n      path: defs/ok.yaml\n      name: links\n",
            path.display()
        );
        let job = b.job(TIMEOUTS, &b.dtb_url(), "", &test);
        let o = b.run(&job, &[], Duration::from_secs(60));
        assert_eq!(o.code, Some(1), "{tag}: log tail:\n{}", tail(&o.log));
        assert!(
            o.results_text.contains("error_type: Job"),
            "{tag}: {}",
            o.results_text
        );
        assert!(
            o.log.contains(&needle),
            "{tag}: no {needle:?} in\n{}",
            tail(&o.log)
        );
        b.assert_nothing_leaked(&o);
        let planted: Vec<_> = std::fs::read_dir(&markerdir).unwrap().collect();
        assert!(
            planted.is_empty(),
            "{tag}: written through a link: {planted:?}"
        );
    }
}

#[test]
fn file_urls_outside_the_allowed_roots_are_refused() {
    let b = Bench::new("roots");
    let root = b.tmp.path().join("images");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::copy(&b.dtb, root.join("board.dtb")).unwrap();
    symlink(&b.secret, root.join("link.dtb")).unwrap();
    let fixtures = b.initrd.parent().unwrap().display().to_string();
    let root_s = root.display().to_string();
    // the kernel and the ramdisk are below the roots; the dtb is the secret, one way or another
    let args_no_tmp = ["--allow-file-root", &root_s, "--allow-file-root", &fixtures];
    let kernel_in_root = root.join("Image");
    std::fs::copy(&b.kernel, &kernel_in_root).unwrap();
    for (tag, url, needle) in [
        (
            "outside",
            format!("file://{}", b.secret.display()),
            "outside the directories",
        ),
        (
            "symlink out",
            format!("file://{root_s}/link.dtb"),
            "leads out of it through a symlink",
        ),
        (
            "dot dot",
            format!("file://{root_s}/../secret"),
            "outside the directories",
        ),
    ] {
        let job = b.job(TIMEOUTS, &url, "", "").replace(
            &b.kernel.display().to_string(),
            &kernel_in_root.display().to_string(),
        );
        let o = b.run(&job, &args_no_tmp, Duration::from_secs(60));
        assert_eq!(o.code, Some(1), "{tag}: log tail:\n{}", tail(&o.log));
        assert!(
            o.results_text.contains("error_type: Job"),
            "{tag}: {}",
            o.results_text
        );
        assert!(
            o.log.contains(needle),
            "{tag}: no {needle:?} in\n{}",
            tail(&o.log)
        );
        b.assert_nothing_leaked(&o);
    }
    // inside the roots: the job runs
    let job = b
        .job(TIMEOUTS, &format!("file://{root_s}/board.dtb"), "", "")
        .replace(
            &b.kernel.display().to_string(),
            &kernel_in_root.display().to_string(),
        );
    let o = b.run(&job, &args_no_tmp, Duration::from_secs(60));
    assert_eq!(o.code, Some(0), "log tail:\n{}", tail(&o.log));
}

/// The gid of a user (from /etc/passwd).
fn user_gid(name: &str) -> u32 {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| f[3].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no user {name}"))
}

#[test]
fn tftp_staging_is_readable_by_the_tftp_server_only() {
    // Without --allow-file-root, basalt run may read what its (root) caller reads: the secret
    // goes to the board as its dtb, through the TFTP server (user tftp), and no other user can
    // read it while it is staged.
    let b = Bench::new("tftp-modes");
    let job = b.job(TIMEOUTS, &format!("file://{}", b.secret.display()), "", "");
    let out = b.tmp.path().join("out");
    let run = b.start(&job, &out, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (dir, staged) = loop {
        let found = std::fs::read_dir(b.tftpd.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("basalt-"))
            });
        if let Some(d) = found {
            let f = d.join("dtb/secret");
            if f.is_file() {
                break (d, f);
            }
        }
        assert!(Instant::now() < deadline, "nothing staged");
        std::thread::sleep(Duration::from_millis(2));
    };
    let m = std::fs::metadata(&dir).unwrap();
    assert_eq!(m.mode() & 0o777, 0o750, "{}", dir.display());
    assert_eq!(m.gid(), user_gid("tftp"));
    let sub = std::fs::metadata(dir.join("dtb")).unwrap();
    assert_eq!(sub.mode() & 0o777, 0o750);
    let nobody = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat"])
        .arg(&staged)
        .output()
        .expect("setpriv (util-linux)");
    assert!(!nobody.status.success(), "user nobody read the staged file");
    assert!(!String::from_utf8_lossy(&nobody.stdout).contains(SECRET));
    let o = run.finish(Duration::from_secs(60));
    assert_eq!(
        o.code,
        Some(0),
        "the TFTP server still serves it; log tail:\n{}",
        tail(&o.log)
    );
    assert!(o.log.contains("Bytes transferred"));
    assert!(files_holding(&o.out, SECRET).is_empty());
}

#[test]
fn git_transports_but_https_http_git_ssh_file_are_refused_at_once() {
    let b = Bench::new("git-ext");
    for url in [
        format!("'ext::sh -c touch% {}'", b.marker.display()),
        "'fd::17'".to_string(),
        "'testgit::/tmp/x'".to_string(),
    ] {
        let test = format!(
            "- test:\n    timeout:\n      minutes: 1\n    definitions:\n    - from: git\n      repository: {url}\n      path: defs/ok.yaml\n      name: links\n"
        );
        let job = b.job(TIMEOUTS, &b.dtb_url(), "", &test);
        let o = b.run(&job, &[], Duration::from_secs(60));
        assert_eq!(o.code, Some(1), "{url}: log tail:\n{}", tail(&o.log));
        assert!(
            o.log
                .contains("is not allowed (only https, http, git, ssh, file)"),
            "{}",
            tail(&o.log)
        );
        assert!(
            o.elapsed < Duration::from_secs(10),
            "{url}: {:?}: not at once",
            o.elapsed
        );
        b.assert_nothing_leaked(&o);
    }
}

#[test]
fn a_gzip_bomb_stops_at_the_job_byte_limit() {
    use std::io::Write;
    let b = Bench::new("bomb");
    let bomb = b.tmp.path().join("bomb.cpio.gz");
    {
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&bomb).unwrap(),
            flate2::Compression::best(),
        );
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..256 {
            enc.write_all(&zeros).unwrap();
        }
        enc.finish().unwrap();
    }
    assert!(
        std::fs::metadata(&bomb).unwrap().len() < 1 << 20,
        "a bomb: small packed"
    );
    // In a job: the ramdisk decompressed at download; the job ends with a Job error naming it.
    let job = b.job(TIMEOUTS, &b.dtb_url(), "", "").replace(
        &format!("      url: file://{}\n", b.initrd.display()),
        &format!(
            "      url: file://{}\n      compression: gz\n",
            bomb.display()
        ),
    );
    let o = b.run(&job, &["--max-job-bytes", "64M"], Duration::from_secs(60));
    assert_eq!(o.code, Some(1), "log tail:\n{}", tail(&o.log));
    assert!(
        o.results_text.contains("error_type: Job"),
        "{}",
        o.results_text
    );
    assert!(
        o.log.contains("image 'ramdisk'") && o.log.contains("limit of 64 MiB (--max-job-bytes)"),
        "{}",
        tail(&o.log)
    );
    b.assert_nothing_leaked(&o);
    // And the download stops at the limit: never more than 64 MiB on disk.
    use basalt::actions::deploy::download::{fetch_with, Fetch};
    use basalt::host::blocking::Cancel;
    use basalt::host::limits::Budget;
    let f = Fetch {
        url: format!("file://{}", bomb.display()),
        compression: Some(basalt::job::Compression::Gz),
        ..Fetch::default()
    };
    let dest = b.tmp.path().join("unpacked");
    let budget = Budget::new(64 << 20);
    let e = fetch_with(
        &f,
        &dest,
        Box::new(|_, _| {}),
        &Cancel::new(),
        &budget,
        "image 'x'",
    )
    .unwrap_err();
    assert!(e.message.contains("image 'x'"), "{}", e.message);
    assert!(std::fs::metadata(&dest).unwrap().len() <= 64 << 20);
    assert!(budget.used() <= 64 << 20);
}

#[test]
fn a_console_flood_truncates_the_log_once_and_the_job_goes_on() {
    let b = Bench::new("flood");
    let test = "- test:\n    timeout:\n      minutes: 1\n    definitions:\n    - from: inline\n      name: flood\n      path: inline/flood.yaml\n      repository:\n        metadata:\n          format: Lava-Test Test Definition 1.0\n          name: flood\n          description: floods the console\n        run:\n          steps:\n          - seq 1 30000\n          - lava-test-case after-flood --result pass\n";
    let job = b.job(TIMEOUTS, &b.dtb_url(), "", test);
    let limit = 256 * 1024;
    let o = b.run(&job, &["--max-log-bytes", "256K"], Duration::from_secs(90));
    assert_eq!(o.code, Some(0), "log tail:\n{}", tail(&o.log));
    assert_eq!(
        find(&o.results, "0_flood", "after-flood").map(|x| x.2.as_str()),
        Some("pass"),
        "{:?}",
        o.results
    );
    let size = std::fs::metadata(o.out.join("output.yaml")).unwrap().len();
    assert!(size <= limit + 512, "output.yaml is {size} bytes");
    let notes = o
        .log
        .matches("reached its limit of 256 KiB (--max-log-bytes)")
        .count();
    assert_eq!(notes, 1, "{}", tail(&o.log));
    let doc = load(&o.log).expect("output.yaml is YAML");
    let last = doc
        .as_seq()
        .and_then(|s| s.last())
        .and_then(|r| r.get("msg"))
        .and_then(Node::as_str);
    assert!(last.is_some_and(|m| m.contains("truncated")), "{last:?}");
}

#[test]
fn the_output_directory_is_never_written_through_planted_links() {
    let b = Bench::new("outdir");
    let out = b.tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let victim = b.tmp.path().join("victim");
    std::fs::write(&victim, "keep").unwrap();
    symlink(&b.marker, out.join("output.yaml")).unwrap();
    symlink(&victim, out.join("results.yaml")).unwrap();
    std::fs::hard_link(&victim, out.join("description.yaml")).unwrap();
    // a job that fails at once (its dtb is missing) still writes all three
    let job = b.job(
        TIMEOUTS,
        &format!("file://{}/missing.dtb", b.tmp.path().display()),
        "",
        "",
    );
    let o = b.start(&job, &out, &[]).finish(Duration::from_secs(60));
    assert_eq!(o.code, Some(1), "{}", o.terminal);
    assert!(!b.marker.exists(), "written through output.yaml");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    for name in ["output.yaml", "results.yaml", "description.yaml"] {
        let m = std::fs::symlink_metadata(out.join(name)).unwrap();
        assert!(m.is_file() && m.nlink() == 1, "{name}");
    }
    assert!(o.log.contains("missing.dtb"));
    // an output directory that is a symlink: refused, nothing written where it points
    let target = b.tmp.path().join("target");
    std::fs::create_dir_all(&target).unwrap();
    let link = b.tmp.path().join("out-link");
    symlink(&target, &link).unwrap();
    let o = b.start(&job, &link, &[]).finish(Duration::from_secs(60));
    assert_eq!(o.code, Some(1), "{}", o.terminal);
    assert!(
        o.terminal.contains("symlink") && o.terminal.contains("Infrastructure"),
        "{}",
        o.terminal
    );
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
}

/// A tmpfs mounted for one test; unmounted on drop, whatever happened.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, opts: &str) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(at)
            .status()
            .expect("mount");
        assert!(st.success(), "mount -t tmpfs -o {opts} (needs root)");
        Mount(at.to_path_buf())
    }

    fn remount(&self, opts: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_ends_the_job_at_once_as_an_infrastructure_error() {
    let b = Bench::new("full");
    let mnt = Mount::tmpfs(&b.tmp.path().join("full"), "size=1M");
    let out = mnt.0.join("out");
    // the test floods the console, then would sleep for a minute
    let test = "- test:\n    timeout:\n      minutes: 2\n    definitions:\n    - from: inline\n      name: flood\n      path: inline/flood.yaml\n      repository:\n        metadata:\n          format: Lava-Test Test Definition 1.0\n          name: flood\n          description: floods the console\n        run:\n          steps:\n          - lava-test-case before --result pass\n          - seq 1 100000\n          - sleep 60\n          - lava-test-case never --result pass\n";
    let timeouts = "  job:\n    minutes: 3\n  action:\n    minutes: 2\n";
    let job = b.job(timeouts, &b.dtb_url(), "", test);
    let o = b.start(&job, &out, &[]).finish(Duration::from_secs(50));
    assert_eq!(o.code, Some(1), "{}", o.terminal);
    assert!(
        o.elapsed < Duration::from_secs(40),
        "{:?}: not at once",
        o.elapsed
    );
    assert!(
        o.terminal.contains("No space left on device"),
        "{}",
        o.terminal
    );
    assert!(o.terminal.contains("(Infrastructure)"), "{}", o.terminal);
    // what was written is kept, in whole records
    load(&o.log).expect("output.yaml is still YAML");
    load(&o.results_text).expect("results.yaml is still YAML");
    assert_eq!(
        find(&o.results, "lava", "tftp-deploy").map(|x| x.2.as_str()),
        Some("pass"),
        "{}",
        o.results_text
    );
    assert!(find(&o.results, "0_flood", "never").is_none());
    drop(mnt);
}

#[test]
fn a_read_only_output_directory_is_an_infrastructure_error() {
    let b = Bench::new("ro");
    let mnt = Mount::tmpfs(&b.tmp.path().join("ro"), "size=1M");
    let out = mnt.0.join("out");
    std::fs::create_dir_all(&out).unwrap();
    mnt.remount("ro");
    let job = b.job(TIMEOUTS, &b.dtb_url(), "", "");
    let o = b.start(&job, &out, &[]).finish(Duration::from_secs(30));
    assert_eq!(o.code, Some(1), "not 2 (invalid): {}", o.terminal);
    assert!(
        o.terminal.contains("Read-only file system"),
        "{}",
        o.terminal
    );
    assert!(o.terminal.contains("(Infrastructure)"), "{}", o.terminal);
    drop(mnt);
}

/// A url test definition tarball that unpacks an 8 GiB sparse file: archiving the overlay
/// takes far longer than the job may run.
fn huge_definition(b: &Bench, timeout: &str) -> String {
    let src = b.tmp.path().join("huge");
    std::fs::create_dir_all(src.join("defs")).unwrap();
    std::fs::write(
        src.join("defs/ok.yaml"),
        def_yaml("huge", &["lava-test-case x --result pass"]),
    )
    .unwrap();
    let big = std::fs::File::create(src.join("defs/big")).unwrap();
    big.set_len(8 << 30).unwrap();
    let tarball = b.tmp.path().join("huge.tar.gz");
    let st = Command::new("tar")
        .arg("--sparse")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&src)
        .arg("defs")
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::remove_dir_all(&src).unwrap();
    format!(
        "- test:\n    timeout:\n      {timeout}\n    definitions:\n    - from: url\n      repository: file://{}\n      compression: gz\n      path: defs/ok.yaml\n      name: huge\n",
        tarball.display()
    )
}

/// No temporary directory of the basalt process `pid` is left.
fn assert_no_job_dirs(pid: i32) {
    let prefix = format!("basalt-job-1-{pid}-");
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_huge_overlay_ends_within_the_job_timeout() {
    let b = Bench::new("huge-timeout");
    let test = huge_definition(&b, "seconds: 6");
    let timeouts = "  job:\n    seconds: 6\n  action:\n    seconds: 6\n";
    let job = b.job(timeouts, &b.dtb_url(), "", &test);
    let out = b.tmp.path().join("out");
    let run = b.start(&job, &out, &[]);
    let pid = run.pid();
    let o = run.finish(Duration::from_secs(60));
    assert_eq!(o.code, Some(1), "{}log tail:\n{}", o.terminal, tail(&o.log));
    assert!(o.log.contains("compress-overlay"), "{}", tail(&o.log));
    assert!(
        o.results_text.contains("error_type: LAVATimeout"),
        "{}",
        o.results_text
    );
    // it ran until its timeout, in the overlay's archive (which takes a minute on this
    // machine), and not a second more
    assert!(
        o.log.contains("the job timeout expired"),
        "{}",
        tail(&o.log)
    );
    assert!(!o.log.contains("overlay tarball /"), "{}", tail(&o.log));
    assert!(
        o.elapsed >= Duration::from_secs(6) && o.elapsed < Duration::from_secs(7),
        "a 6 s job ran {:?}",
        o.elapsed
    );
    assert_no_job_dirs(pid);
    b.assert_nothing_leaked(&o);
}

#[test]
fn sigterm_during_a_huge_overlay_ends_the_job_within_a_second() {
    let b = Bench::new("huge-sigterm");
    let test = huge_definition(&b, "minutes: 1");
    let job = b.job(TIMEOUTS, &b.dtb_url(), "", &test);
    let out = b.tmp.path().join("out");
    let run = b.start(&job, &out, &[]);
    run.wait_log("compress-overlay (timeout", Duration::from_secs(30));
    let pid = run.pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let at = Instant::now();
    let o = run.finish(Duration::from_secs(30));
    let took = at.elapsed();
    assert_eq!(o.code, Some(1), "log tail:\n{}", tail(&o.log));
    assert!(
        o.results_text.contains("error_type: Canceled"),
        "{}",
        o.results_text
    );
    assert!(
        !o.log.contains("overlay tarball /"),
        "the archive was done: {}",
        tail(&o.log)
    );
    assert!(took < Duration::from_secs(1), "SIGTERM took {took:?}");
    assert_no_job_dirs(pid);
    b.assert_nothing_leaked(&o);
}
