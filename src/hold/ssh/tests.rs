use super::*;
use basalt_hal::console::expect::NullTranscript;
use basalt_hal::console::fake::{FakeConsole, Step};
use basalt_hal::console::Console;

const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEcGNih3NYLEBixosB/8s9OmWpKlqTwglUGL5Lak9DVl alice@ci";
const ECDSA256: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBGQKsYhoYnC58wH5nKyyNggsthj0Gp8umFCxtbE1y+sjRzWo7qNukjLBZT3J7N+xt8yPbz8SJ/Ey6rfILmDvjQA= alice@ci";
const ECDSA384: &str = "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBG7Av1qjXw+iA0bs5cCdrcYYxucM0iE6lXTtHKcMwpd9SYmJFYF96P4Dd26McS2kEYElMDb2sCImkWu3l4grKG9erxJ3C8EzZ7kjFgLXbMWXXAJUcFdkjDXzhvi7Sg85rw== x";
const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQCs0rYITQ7ju1YHuXS79tw1IPCdvLBy3Z2R7VCVcMn13h3fT25q00iAixJCJELbnYB4YHyz+JIdX3LL6mPPz4EVHr9ScW/1KcUEyMKmxu+HjOcQHesfJ4xFxLzKbEq8IN3xGJQID3yOkffCSOrSMYQIsIjssKfw4lOFdvLhhvN+Jqp4Kbv0xWbttiGipmhOz+Qcm05eq533jLIhjDisp5IZiJv3S7SdPFkiB030QXE/dmgeJOFQUdATh0HpMGZC0NsnxSWR71ZmWNH7kgAWpNsJr9JV/eKhXdqQQH8to280gzTGc2oMqLRmYjtgzC96N3/rI1pRJILYGxRwoo/MN37MeDFy6rImicMv/5+aupHe2ZIjANLs+6ELsAdp+jef8WQlTGbXaMZEdw7LoRPKp7vBDc9Tvymur55+Es/90UmYTtyUVmc9P/OTaj4CkMoqVXMBFCvM8KtH8SNJQ37SyRiItsPJ9R7rKmp27D9JaqgENlGYGPTboDo4VAbE6ED/qnU= alice@ci";

fn key(text: &str) -> PublicKey {
    PublicKey::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn openssh_public_keys_of_known_types_are_accepted() {
    for (text, kind) in [
        (ED25519, KeyType::Ed25519),
        (ECDSA256, KeyType::EcdsaP256),
        (ECDSA384, KeyType::EcdsaP384),
        (RSA, KeyType::Rsa),
    ] {
        let k = key(text);
        assert_eq!(k.kind(), kind);
        let blob = text.split(' ').nth(1).unwrap_or("");
        assert_eq!(
            k.authorized_line(),
            format!("{} {blob} basalt-lease", kind.name())
        );
    }
    // white space around it and no comment are fine
    assert_eq!(
        key(&format!(
            "  {}\n",
            &ED25519[..ED25519.len() - " alice@ci".len()]
        )),
        key(ED25519)
    );
}

#[test]
fn anything_but_one_known_public_key_line_is_refused() {
    let blob = ED25519.split(' ').nth(1).unwrap_or("");
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "empty"),
        ("   \n".into(), "empty"),
        (format!("{ED25519}\n{ED25519}"), "one line"),
        (format!("ssh-ed25519 {blob} a\u{1b}[2Jb"), "one line"),
        (
            format!("command=\"reboot\" ssh-ed25519 {blob}"),
            "not an SSH public key type",
        ),
        (format!("ssh-dss {blob}"), "not an SSH public key type"),
        ("ssh-ed25519".into(), "no key data"),
        (format!("ssh-ed25519 {blob}'$(reboot)'"), "not base64"),
        ("ssh-ed25519 not*base64".into(), "not base64"),
        // an ed25519 blob named rsa
        (format!("ssh-rsa {blob}"), "of type 'ssh-ed25519'"),
        // a truncated blob
        (
            format!("ssh-ed25519 {}", &blob[..40]),
            "not a ssh-ed25519 key",
        ),
        (format!("ssh-ed25519 {}", "A".repeat(9000)), "longer than"),
    ];
    for (text, want) in cases {
        let err = PublicKey::parse(&text).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains(want), "{text:?}: {err}");
    }
    // a well-formed blob with a field too many
    use base64::Engine as _;
    let mut bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .unwrap_or_default();
    bytes.extend_from_slice(&[0, 0, 0, 1, b'x']);
    let extra = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let err = PublicKey::parse(&format!("ssh-ed25519 {extra}")).unwrap_err();
    assert!(err.to_string().contains("2 fields after the type"), "{err}");
}

#[test]
fn user_names_are_portable_posix_names() {
    for ok in ["root", "ci-user", "_svc", "a.b", "u1"] {
        assert_eq!(
            SshUser::parse(ok).map(|u| u.as_str().to_string()),
            Ok(ok.into())
        );
    }
    for bad in [
        "",
        "-x",
        ".x",
        "a b",
        "$(reboot)",
        "a'b",
        "ro\not",
        &"a".repeat(33),
    ] {
        assert!(SshUser::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        SshUser::of_lease(None).map(|u| u.as_str().to_string()),
        Ok("root".into())
    );
}

#[test]
fn what_the_board_prints_is_read() {
    assert_eq!(
        parse_servers("/usr/sbin/dropbear\n/usr/sbin/dropbear\n"),
        Servers {
            dropbear: Some("/usr/sbin/dropbear".into()),
            sshd: None
        }
    );
    assert_eq!(
        parse_servers("sshd\n/usr/sbin/sshd\n").sshd.as_deref(),
        Some("/usr/sbin/sshd")
    );
    assert_eq!(parse_servers(""), Servers::default());
    let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
    let listen = "   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1 0 100 0 0 10 0\n";
    let client = "   1: 0F02000A:9C40 0202000A:0016 01 00000000:00000000 00:00000000 00000000     0        0 1235 1 0 100 0 0 10 0\n";
    let v6 = "   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1 0 100 0 0 10 0\n";
    assert!(listens_on_22(&format!("{header}{listen}")));
    assert!(listens_on_22(&format!("{header}{client}{header}{v6}")));
    assert!(!listens_on_22(&format!("{header}{client}")));
    assert!(!listens_on_22(""));
    assert_eq!(
        first_ipv4("2: eth0    inet 10.0.2.15/24 brd 10.0.2.255 scope global eth0\\       valid_lft forever\n"),
        Some("10.0.2.15".into())
    );
    assert_eq!(first_ipv4("garbage inet nonsense\n"), None);
}

/// The board's answer to command `n`: its output, then its exit status and a prompt.
fn reply(n: u32, out: &str, rc: i32) -> [Step; 2] {
    [
        Step::wait_for(&format!("echo BASALT''_SSH_t_{n}_RC=$?\n")),
        Step::print(&format!(
            "\r\nBASALT_SSH_t_{n}_BEGIN\r\n{out}BASALT_SSH_t_{n}_RC={rc}\r\n/ # "
        )),
    ]
}

const LISTENING: &str =
    "  sl  local_address\r\n   0: 00000000:0016 00000000:0000 0A 00000000:00000000\r\n";
const NOT_LISTENING: &str = "  sl  local_address\r\n";
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\r\n";

async fn run_on(script: Vec<Vec<Step>>, setup: &Setup) -> (Result<SshEndpoint, SshError>, String) {
    let console = FakeConsole::new(script.into_iter().flatten().collect())
        .with_patience(Duration::from_secs(5));
    let stream = console.connect().await.unwrap_or_else(|e| panic!("{e}"));
    let mut session = Session::new(stream, "fake", Box::new(NullTranscript));
    let r = set_up_salted(&mut session, setup, "t").await;
    (r, console.received())
}

fn setup(text: &str, reach: Reach) -> Setup {
    let mut s = Setup::new(
        key(text),
        SshUser::parse("root").unwrap_or_else(|e| panic!("{e}")),
        reach,
    );
    s.command_timeout = Duration::from_secs(5);
    s
}

fn forwarded() -> Reach {
    Reach::Forwarded {
        host: "127.0.0.1".into(),
        port: 7101,
    }
}

#[tokio::test]
async fn dropbear_is_started_after_the_key_is_written_and_the_forward_is_reported() {
    let line = key(ED25519).authorized_line();
    let script = vec![
        reply(1, "/usr/sbin/dropbear\r\n", 0).to_vec(),
        reply(2, NOT_LISTENING, 0).to_vec(),
        reply(3, PASSWD, 0).to_vec(),
        reply(4, "", 0).to_vec(),
        reply(5, "", 0).to_vec(),
        reply(6, "", 0).to_vec(),
        reply(7, &format!("{line}\r\n"), 0).to_vec(),
        reply(8, "", 0).to_vec(),
        reply(9, LISTENING, 0).to_vec(),
    ];
    let (r, sent) = run_on(script, &setup(ED25519, forwarded())).await;
    let ep = r.unwrap_or_else(|e| panic!("{e}\n{sent}"));
    assert_eq!(
        ep,
        SshEndpoint {
            host: "127.0.0.1".into(),
            port: 7101,
            user: "root".into()
        }
    );
    let lines: Vec<&str> = sent.lines().collect();
    assert_eq!(lines.len(), 9, "{sent}");
    assert!(lines[0].contains("command -v \"$p\""), "{}", lines[0]);
    assert!(lines[1].contains("cat /proc/net/tcp /proc/net/tcp6"));
    assert!(lines[2].contains("getent passwd root"));
    assert!(
        lines[3].contains("(umask 077 && mkdir -p /root/.ssh && touch /root/.ssh/authorized_keys && { grep -v ' basalt-lease$' /root/.ssh/authorized_keys || true; } >/root/.ssh/authorized_keys.basalt)"),
        "{}",
        lines[3]
    );
    // the key, quoted, without the user's comment
    assert!(
        lines[4].contains(&format!(
            "printf '%s' '{line}' >>/root/.ssh/authorized_keys.basalt"
        )),
        "{}",
        lines[4]
    );
    assert!(!sent.contains("alice@ci"));
    assert!(lines[5].contains("chmod 700 /root/.ssh && chmod 600 /root/.ssh/authorized_keys && chown root /root/.ssh /root/.ssh/authorized_keys"), "{}", lines[5]);
    assert!(lines[6].contains("tail -n 1 /root/.ssh/authorized_keys"));
    assert!(
        lines[7].contains("mkdir -p /etc/dropbear && /usr/sbin/dropbear -R -p 22"),
        "{}",
        lines[7]
    );
    // every command is framed by markers the typed line does not match
    for (i, l) in lines.iter().enumerate() {
        assert!(
            l.starts_with(&format!("echo BASALT''_SSH_t_{}_BEGIN; ", i + 1)),
            "{l}"
        );
    }
}

#[tokio::test]
async fn a_running_server_is_left_alone_and_a_long_key_goes_in_pieces() {
    let line = key(RSA).authorized_line();
    assert!(line.len() > 2 * CHUNK, "the key must need three pieces");
    let mut script = vec![
        reply(1, "/usr/sbin/sshd\r\n", 0).to_vec(),
        reply(2, LISTENING, 0).to_vec(),
        reply(3, "ci:x:1000:1000::/home/ci:/bin/sh\r\n", 0).to_vec(),
        reply(4, "", 0).to_vec(),
    ];
    for n in 5..=7 {
        script.push(reply(n, "", 0).to_vec());
    }
    script.push(reply(8, "", 0).to_vec());
    script.push(reply(9, &format!("{line}\r\n"), 0).to_vec());
    script.push(
        reply(
            10,
            "2: eth0    inet 192.0.2.7/24 brd 192.0.2.255 scope global eth0\r\n",
            0,
        )
        .to_vec(),
    );
    let mut s = setup(RSA, Reach::Network);
    s.user = SshUser::parse("ci").unwrap_or_else(|e| panic!("{e}"));
    let (r, sent) = run_on(script, &s).await;
    let ep = r.unwrap_or_else(|e| panic!("{e}\n{sent}"));
    assert_eq!(
        (ep.host.as_str(), ep.port, ep.user.as_str()),
        ("192.0.2.7", 22, "ci")
    );
    let pieces: String = sent
        .lines()
        .filter_map(|l| {
            l.split_once("printf '%s' '")
                .and_then(|(_, r)| r.split_once("' >>/home/ci/.ssh/authorized_keys.basalt"))
                .map(|(p, _)| p.to_string())
        })
        .collect();
    assert_eq!(pieces, line);
    assert!(sent.contains("chown ci /home/ci/.ssh /home/ci/.ssh/authorized_keys"));
    assert!(
        !sent.contains("sshd -") && !sent.contains("/usr/sbin/sshd;"),
        "{sent}"
    );
    assert!(sent.contains("ip -4 -o addr show scope global"));
}

#[tokio::test]
async fn an_image_without_ssh_is_told_and_nothing_is_written() {
    let script = vec![
        reply(1, "", 0).to_vec(),
        reply(2, NOT_LISTENING, 0).to_vec(),
    ];
    let (r, sent) = run_on(script, &setup(ED25519, forwarded())).await;
    assert!(matches!(r, Err(SshError::NoServer)), "{r:?}");
    assert!(!sent.contains("authorized_keys"), "{sent}");
}

#[tokio::test]
async fn an_unknown_user_is_an_error() {
    let script = vec![
        reply(1, "/usr/sbin/dropbear\r\n", 0).to_vec(),
        reply(2, NOT_LISTENING, 0).to_vec(),
        reply(3, "", 0).to_vec(),
    ];
    let mut s = setup(ED25519, forwarded());
    s.user = SshUser::parse("nobody").unwrap_or_else(|e| panic!("{e}"));
    let (r, _) = run_on(script, &s).await;
    assert_eq!(
        r.map(|_| ()).unwrap_err().to_string(),
        "user 'nobody' does not exist on the board"
    );
}

#[tokio::test]
async fn a_garbled_key_a_failed_start_and_a_silent_port_are_named() {
    let line = key(ED25519).authorized_line();
    let upto_write = || {
        vec![
            reply(1, "/usr/sbin/dropbear\r\n", 0).to_vec(),
            reply(2, NOT_LISTENING, 0).to_vec(),
            reply(3, PASSWD, 0).to_vec(),
            reply(4, "", 0).to_vec(),
            reply(5, "", 0).to_vec(),
            reply(6, "", 0).to_vec(),
        ]
    };
    // characters lost on the line
    let mut script = upto_write();
    script.push(reply(7, &format!("{}\r\n", line.replacen('A', "", 3)), 0).to_vec());
    let (r, _) = run_on(script, &setup(ED25519, forwarded())).await;
    assert!(matches!(r, Err(SshError::Garbled { .. })), "{r:?}");
    // dropbear exits at once
    let mut script = upto_write();
    script.push(reply(7, &format!("{line}\r\n"), 0).to_vec());
    script.push(
        reply(
            8,
            "dropbear: Failed listening on '22': Address in use\r\n",
            1,
        )
        .to_vec(),
    );
    let (r, _) = run_on(script, &setup(ED25519, forwarded())).await;
    let e = r.map(|_| ()).unwrap_err().to_string();
    assert!(
        e.contains("starting the SSH server failed on the board (exit status 1): dropbear: Failed listening"),
        "{e}"
    );
    // started, but port 22 never listens
    let mut script = upto_write();
    script.push(reply(7, &format!("{line}\r\n"), 0).to_vec());
    script.push(reply(8, "", 0).to_vec());
    script.push(reply(9, NOT_LISTENING, 0).to_vec());
    let mut s = setup(ED25519, forwarded());
    s.listen_timeout = Duration::ZERO;
    let (r, _) = run_on(script, &s).await;
    assert!(matches!(r, Err(SshError::NotListening { .. })), "{r:?}");
}

#[tokio::test]
async fn a_silent_board_times_out_naming_the_step() {
    let console = FakeConsole::new(vec![]).with_patience(Duration::from_secs(5));
    let stream = console.connect().await.unwrap_or_else(|e| panic!("{e}"));
    let mut session = Session::new(stream, "fake", Box::new(NullTranscript));
    let mut s = setup(ED25519, forwarded());
    s.command_timeout = Duration::from_millis(200);
    let r = set_up(&mut session, &s).await;
    let e = r.map(|_| ()).unwrap_err().to_string();
    assert!(
        e.starts_with("looking for dropbear and sshd: timed out"),
        "{e}"
    );
}
