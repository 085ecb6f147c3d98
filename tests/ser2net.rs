//! `basalt ser2net generate` with a real ser2net 4: the configuration it writes loads in
//! ser2net (which then listens on every port it names), and a LAVA job reaches a
//! `basalt-board` console (a pty) through it with the `connection_command` written into the
//! dictionary, while ser2net's trace records what the board printed and what basalt typed.
//! Needs root (the board chroots into its ramdisk; CI is root), ser2net and tftpd-hpa
//! (scripts/install-deps.sh), and the boot fixtures.

#[path = "../crates/basalt-board/tests/board_support/mod.rs"]
mod board_support;
mod common;

use board_support::{Board, Tftpd};
use common::{fixtures_amd64, results, TempDir};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SER2NET: &str = "/usr/sbin/ser2net";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A ser2net in the foreground (`-d`), killed by its PID and reaped on every path.
struct Ser2net {
    child: Child,
    log: PathBuf,
}

impl Ser2net {
    fn start(config: &Path, dir: &Path) -> Ser2net {
        assert!(
            Path::new(SER2NET).is_file(),
            "{SER2NET} is not installed: run scripts/install-deps.sh (package ser2net)"
        );
        let log = dir.join("ser2net.log");
        let out = std::fs::File::create(&log).expect("ser2net log");
        let err = out.try_clone().expect("ser2net log");
        let child = Command::new(SER2NET)
            .args(["-d", "-u", "-c"])
            .arg(config)
            .arg("-P")
            .arg(dir.join("ser2net.pid"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn ser2net");
        Ser2net { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until ser2net listens on every port on 127.0.0.1 (or fails, showing its log).
    fn wait_listening(&mut self, ports: &[u16]) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let listening = listening_ports();
            if ports.iter().all(|p| listening.contains(p)) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("ser2net ended ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "ser2net does not listen on all of {ports:?} (listening: {listening:?}):\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Ser2net {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The TCP ports something listens on at 127.0.0.1 (`/proc/net/tcp`, state 0A).
fn listening_ports() -> Vec<u16> {
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (addr, port) = f.get(1)?.split_once(':')?;
            (addr == "0100007F" && f.get(3) == Some(&"0A"))
                .then(|| u16::from_str_radix(port, 16).ok())
                .flatten()
        })
        .collect()
}

/// Two TCP ports free on 127.0.0.1 now.
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let b = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    (
        a.local_addr().expect("addr").port(),
        b.local_addr().expect("addr").port(),
    )
}

/// The ports of the configuration's accepters.
fn accepter_ports(yaml: &str) -> Vec<u16> {
    yaml.lines()
        .filter_map(|l| l.trim().strip_prefix("accepter: "))
        .filter_map(|a| a.rsplit(',').next()?.parse().ok())
        .collect()
}

fn is_root() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("skipped: needs root (basalt-board chroots into its ramdisk; CI runs as root)");
    }
    root
}

/// `basalt ser2net generate ARGS` in `dir`: (success, stdout, stderr).
fn generate(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_basalt"))
        .args(["ser2net", "generate"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run basalt ser2net generate");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_job_reaches_the_board_through_the_generated_ser2net_and_its_trace() {
    if !is_root() {
        return;
    }
    let (_, initrd) = fixtures_amd64();
    let tmp = TempDir::new("ser2net");
    let dir = tmp.path();
    let tftpd = Tftpd::start();
    let tftp_port = tftpd.port.to_string();
    // the board's console on a pty; `console` is the symlink to its /dev/pts/N
    let console = dir.join("console");
    let board = Board::start_with_console(
        &["--pty-link", &console.display().to_string()],
        &[
            "--speed",
            "0",
            "--tftp-port",
            &tftp_port,
            "--bootdelay",
            "2",
        ],
    );
    let (board_port, base_port) = free_ports();
    let bin = board_support::bin();
    let ctl = |op: &str| {
        format!(
            "{} ctl --control {} {op}",
            bin.display(),
            board.control.display()
        )
    };
    // the board: no connection_command yet (--update-dictionaries adds it)
    let board_dict = dir.join("board-01.jinja2");
    let board_text = format!(
        "{{# the simulated board on a pty #}}\n\
         {{% extends 'basalt-board.jinja2' %}}\n\
         {{% set ser2net_device = '{}' %}}\n\
         {{% set ser2net_port = {board_port} %}}\n\
         {{% set power_on_command = '{}' %}}\n\
         {{% set power_off_command = '{}' %}}\n\
         {{% set hard_reset_command = '{}' %}}\n",
        console.display(),
        ctl("on"),
        ctl("off"),
        ctl("reset")
    );
    std::fs::write(&board_dict, &board_text).unwrap();
    // a CDC-ACM board that is not plugged in (ser2net listens for it all the same), and a
    // QEMU device that has no serial console
    std::fs::write(
        dir.join("acm-02.jinja2"),
        format!(
            "{{% extends 'basalt-board.jinja2' %}}\n{{% set ser2net_device = '{}' %}}\n",
            dir.join("ttyACM9").display()
        ),
    )
    .unwrap();
    std::fs::copy(
        repo().join("config/devices/qemu-amd64.jinja2"),
        dir.join("qemu-03.jinja2"),
    )
    .unwrap();
    let trace = dir.join("trace");
    std::fs::create_dir(&trace).unwrap();
    let base = base_port.to_string();
    let (ok, stdout, stderr) = generate(
        dir,
        &[
            "--dictionary",
            "board-01.jinja2",
            "--dictionary",
            "acm-02.jinja2",
            "--dictionary",
            "qemu-03.jinja2",
            "--base-port",
            &base,
            "--trace",
            &trace.display().to_string(),
            "--output",
            "ser2net.yaml",
            "--connection-commands",
            "commands.txt",
            "--update-dictionaries",
        ],
    );
    assert!(ok, "generate failed: {stderr}");
    assert_eq!(stdout, "", "the configuration went to --output");
    assert!(
        stderr.contains("skipped qemu-03: qemu-03.jinja2 sets no ser2net_device\n"),
        "{stderr}"
    );
    let yaml = std::fs::read_to_string(dir.join("ser2net.yaml")).unwrap();
    let acm_port = if board_port == base_port {
        base_port + 1
    } else {
        base_port
    };
    assert!(
        yaml.contains(&format!(
            "  accepter: telnet(rfc2217),tcp,127.0.0.1,{acm_port}\n  connector: serialdev,{},115200n81,local,nobreak\n",
            dir.join("ttyACM9").display()
        )),
        "{yaml}"
    );
    let command = format!("telnet 127.0.0.1 {board_port}");
    let set = format!("{{% set connection_command = '{command}' %}}");
    assert_eq!(
        std::fs::read_to_string(dir.join("commands.txt")).unwrap(),
        format!(
            "acm-02: {{% set connection_command = 'telnet 127.0.0.1 {acm_port}' %}}\nboard-01: {set}\n"
        )
    );
    // the line went in after `extends`; the rest of the dictionary is as it was
    let updated = std::fs::read_to_string(&board_dict).unwrap();
    let (head, rest) = board_text.split_at(board_text.find("{% set ser2net_device").unwrap());
    assert_eq!(updated, format!("{head}{set}\n{rest}"));

    // the configuration loads: ser2net listens on every port it names, and says nothing of
    // its file (its configuration errors are `FILE:LINE(column N): ...`)
    let ports = accepter_ports(&yaml);
    assert_eq!(ports.len(), 2, "{yaml}");
    let mut ser2net = Ser2net::start(&dir.join("ser2net.yaml"), dir);
    ser2net.wait_listening(&ports);
    assert!(
        !ser2net.log().contains("ser2net.yaml:"),
        "ser2net complains about the generated file:\n{}",
        ser2net.log()
    );

    // the demo job on the board, through ser2net
    let kernel = dir.join("Image");
    std::fs::write(&kernel, vec![0u8; 4096]).unwrap();
    let dtb = dir.join("board.dtb");
    std::fs::write(&dtb, vec![0xd0u8; 1024]).unwrap();
    let job = std::fs::read_to_string(repo().join("config/jobs/demo-board.yaml"))
        .unwrap()
        .replace("@KERNEL@", &kernel.display().to_string())
        .replace("@INITRD@", &initrd.display().to_string())
        .replace("@DTB@", &dtb.display().to_string());
    let job_path = dir.join("job.yaml");
    std::fs::write(&job_path, job).unwrap();
    let out = dir.join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_basalt"))
        .args(["run", "-q"])
        .arg(&job_path)
        .arg("--device")
        .arg(&board_dict)
        .arg("--output-dir")
        .arg(&out)
        .arg("--device-types")
        .arg(repo().join("config/device-types"))
        .arg("--tftp-root")
        .arg(tftpd.dir.path())
        .args(["--server-ip", "127.0.0.1"])
        .output()
        .expect("basalt run");
    let log = std::fs::read_to_string(out.join("output.yaml")).unwrap_or_default();
    assert_eq!(
        run.status.code(),
        Some(0),
        "the job should be Complete: {}\nlog tail:\n{}\nser2net:\n{}",
        String::from_utf8_lossy(&run.stdout),
        log.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n"),
        ser2net.log()
    );
    assert!(
        log.contains(&format!("board console: telnet 127.0.0.1:{board_port}")),
        "the console was ser2net's port"
    );
    let r = results(&out);
    assert!(
        r.iter()
            .any(|x| x.0 == "0_smoke" && x.1 == "uname" && x.2 == "pass"),
        "{r:?}"
    );

    // the trace: what the board printed (U-Boot's banner, the shell) and what basalt typed
    // (the boot commands), with the connection's timestamp
    let trace_file = trace.join("board-01.trace");
    let traced = std::fs::read(&trace_file)
        .unwrap_or_else(|e| panic!("{}: {e}; ser2net:\n{}", trace_file.display(), ser2net.log()));
    let traced = String::from_utf8_lossy(&traced);
    for printed in ["U-Boot 20", "Hit any key to stop autoboot", "Linux version"] {
        assert!(
            traced.contains(printed),
            "{printed:?} not traced:\n{traced}"
        );
    }
    // once as basalt typed it, once as the board echoed it
    for typed in ["setenv serverip 127.0.0.1", "setenv autoload no"] {
        assert!(
            traced.matches(typed).count() >= 2,
            "{typed:?} not traced as typed and echoed:\n{traced}"
        );
    }
    assert!(
        traced.contains(" OPEN ("),
        "no timestamped OPEN line:\n{traced}"
    );
    drop(ser2net);
    drop(board);
}

#[test]
fn the_example_configuration_is_what_generate_makes_of_the_example_devices() {
    let mut dicts: Vec<String> = std::fs::read_dir(repo().join("config/devices"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jinja2"))
        .collect();
    dicts.sort();
    let mut args = Vec::new();
    for d in &dicts {
        args.push("--dictionary".to_string());
        args.push(format!("config/devices/{d}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, stdout, stderr) = generate(&repo(), &args);
    assert!(ok, "{stderr}");
    let example = std::fs::read_to_string(repo().join("ser2net/ser2net.yaml.example")).unwrap();
    assert_eq!(
        example,
        stdout,
        "ser2net/ser2net.yaml.example is stale: regenerate it with\n  basalt ser2net generate {}",
        args.join(" ")
    );
}

#[test]
fn one_dictionary_flag_takes_the_files_of_a_shell_glob() {
    let files = [
        "config/devices/basalt-board-01.jinja2",
        "config/devices/bbb-01.jinja2",
        "config/devices/qemu-amd64.jinja2",
    ];
    let mut repeated = Vec::new();
    for f in files {
        repeated.extend(["--dictionary", f]);
    }
    let mut glob = vec!["--dictionary"];
    glob.extend(files);
    let (ok, each, stderr) = generate(&repo(), &repeated);
    assert!(ok, "{stderr}");
    let (ok, once, stderr) = generate(&repo(), &glob);
    assert!(ok, "{stderr}");
    assert_eq!(once, each);
    assert!(once.contains("connection: &bbb-01"), "{once}");
    assert!(stderr.contains("skipped qemu-amd64"), "{stderr}");
}

#[test]
fn the_devices_of_a_worker_are_read_from_the_master() {
    let tmp = TempDir::new("ser2net-master");
    let spec = basalt::lab::Spec {
        dir: tmp.path().join("lab"),
        bin_dir: common::bin_dir(),
        fixtures: common::fixtures_dir(),
        workers: ["rack-1", "rack-2"]
            .into_iter()
            .map(|name| basalt::lab::WorkerSpec {
                name: name.into(),
                boards: 0,
                qemu: 1,
                command: None,
            })
            .collect(),
        heartbeat_secs: 1,
        bootdelay: 1,
        keep_job_dirs: false,
        events: false,
        anonymous_read: false,
        coordinator: None,
    };
    let lab = basalt::lab::LocalLab::start(spec).expect("the lab starts");
    let c = lab.client();
    c.post(
        "devicetypes/",
        &serde_json::json!({"name": "beaglebone-black"}),
    )
    .unwrap();
    // rack-1: a board with a serial console, one with no dictionary; rack-2: another board
    for (hostname, worker, device) in [
        ("bbb-01", "rack-1", Some("/dev/serial/basalt/bbb-01")),
        ("bbb-02", "rack-1", None),
        ("bbb-03", "rack-2", Some("/dev/serial/basalt/bbb-03")),
    ] {
        c.post(
            "devices/",
            &serde_json::json!({"hostname": hostname, "device_type": "beaglebone-black", "worker_host": worker}),
        )
        .unwrap();
        if let Some(device) = device {
            let dictionary = format!(
                "{{% extends 'beaglebone-black.jinja2' %}}\n{{% set ser2net_device = '{device}' %}}\n"
            );
            c.post(
                &format!("devices/{hostname}/dictionary/"),
                &serde_json::json!({ "dictionary": dictionary }),
            )
            .unwrap();
        }
    }
    let (url, token) = lab.url_and_token();
    let (ok, stdout, stderr) = generate(
        tmp.path(),
        &["--worker", "rack-1", "--url", url, "--token", token],
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!(
            "# bbb-01, from {url}/api/v0.2/devices/bbb-01/dictionary/\nconnection: &bbb-01\n  accepter: telnet(rfc2217),tcp,127.0.0.1,7001\n  connector: serialdev,/dev/serial/basalt/bbb-01,115200n81,local\n"
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("bbb-03"), "rack-2's device: {stdout}");
    assert_eq!(stdout.matches("connection: &").count(), 1, "{stdout}");
    for line in [
        "skipped bbb-02: it has no device dictionary on the master\n",
        "skipped rack-1-qemu-1: ",
        "bbb-01: {% set connection_command = 'telnet 127.0.0.1 7001' %}\n",
    ] {
        assert!(stderr.contains(line), "{line:?} missing: {stderr}");
    }
    // --update-dictionaries is for local files only
    let (ok, _, stderr) = generate(
        tmp.path(),
        &["--worker", "rack-1", "--url", url, "--update-dictionaries"],
    );
    assert!(
        !ok && stderr.contains("cannot be used with '--update-dictionaries'"),
        "{stderr}"
    );
}
