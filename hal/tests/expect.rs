//! The expect engine over in-memory streams: split patterns, ordering, escapes, line ends,
//! timeouts, partial-line flush, closed connections, check characters, the search window.

mod common;

use std::time::{Duration, Instant};

use basalt_hal::console::expect::{Regex, TranscriptLine};
use basalt_hal::console::text::text_bytes;
use basalt_hal::console::{ConsoleError, ExpectError, Session, VecTranscript};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

fn session() -> (Session, DuplexStream, VecTranscript) {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let t = VecTranscript::new();
    let s = Session::new(Box::new(ours), "test console", Box::new(t.clone()));
    (s, theirs, t)
}

fn re(p: &str) -> Regex {
    Regex::new(p).unwrap()
}

const SEC: Duration = Duration::from_secs(5);

/// A stream that hands out one scripted chunk per read, then reports end of file: splits
/// fall exactly where the test puts them.
struct Chunks(std::collections::VecDeque<Vec<u8>>);

impl Chunks {
    fn new(chunks: &[&[u8]]) -> Chunks {
        Chunks(chunks.iter().map(|c| c.to_vec()).collect())
    }
}

impl tokio::io::AsyncRead for Chunks {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let Some(c) = self.0.pop_front() {
            assert!(c.len() <= buf.remaining());
            buf.put_slice(&c);
        }
        std::task::Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Chunks {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

fn chunked(chunks: &[&[u8]]) -> (Session, VecTranscript) {
    let t = VecTranscript::new();
    let s = Session::new(
        Box::new(Chunks::new(chunks)),
        "scripted console",
        Box::new(t.clone()),
    );
    (s, t)
}

#[tokio::test]
async fn pattern_split_across_reads() {
    let (mut s, t) = chunked(&[
        b"U-Boot 2023.01\r\nHit any key to stop aut",
        b"oboot:  3",
        b"\r",
        b"\n=",
        b"> ",
    ]);
    let m = s
        .expect(&[re("Hit any key to stop autoboot")], SEC)
        .await
        .unwrap();
    assert_eq!(m.index, 0);
    assert_eq!(m.before, "U-Boot 2023.01\r\n");
    assert_eq!(m.matched, "Hit any key to stop autoboot");
    let m = s.expect(&[re("=> $")], SEC).await.unwrap();
    assert_eq!(m.before, ":  3\r\n");
    assert_eq!(
        t.received_lines(),
        ["U-Boot 2023.01", "Hit any key to stop autoboot:  3", "=> "]
    );
    // the script is over: end of file
    assert!(s.expect(&[re("x")], SEC).await.unwrap_err().is_closed());
}

#[tokio::test]
async fn escape_sequences_split_across_reads() {
    let (mut s, t) = chunked(&[
        b"ab\x1b",
        b"[3",
        b"1m",
        b"cd\x1b]0;ti",
        b"tle\x1b",
        b"\\ef\r",
        b"\n",
    ]);
    let m = s.expect(&[re("abcdef\r\n")], SEC).await.unwrap();
    assert_eq!(m.before, "");
    assert_eq!(t.received_lines(), ["abcdef"]);
}

#[tokio::test]
async fn leftmost_match_wins_and_ties_go_to_the_first_pattern() {
    let (mut s, mut board, _t) = session();
    board
        .write_all(b"Kernel panic - not syncing\nlogin: ")
        .await
        .unwrap();
    let pats = [re("login:"), re("Kernel panic"), re("Kernel")];
    let m = s.expect(&pats, SEC).await.unwrap();
    // "Kernel panic" and "Kernel" both start at 0: the lower index wins
    assert_eq!((m.index, m.matched.as_str()), (1, "Kernel panic"));
    let m = s.expect(&pats, SEC).await.unwrap();
    assert_eq!(m.index, 0);
    assert_eq!(m.before, " - not syncing\n");
}

#[tokio::test]
async fn capture_groups_are_returned() {
    let (mut s, mut board, _t) = session();
    board
        .write_all(b"<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=boot RESULT=pass>\n")
        .await
        .unwrap();
    let m = s
        .expect(
            &[re(
                r"<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=(?P<id>\S+) RESULT=(?P<result>\w+)(?P<m> MEASUREMENT=\S+)?>",
            )],
            SEC,
        )
        .await
        .unwrap();
    assert_eq!(m.name("id"), Some("boot"));
    assert_eq!(m.group(2), Some("pass"));
    assert_eq!(m.name("m"), None);
    assert_eq!(m.groups.len(), 4);
    assert!(m.group(0).unwrap().starts_with("<LAVA_SIGNAL"));
}

#[tokio::test]
async fn ansi_sequences_and_controls_are_removed() {
    let (mut s, mut board, t) = session();
    board
        .write_all(b"\x1b[0;32m[  OK  ]\x1b[0m Started \x1b]0;title\x07getty.\r\n\0/ # \x1b[6n")
        .await
        .unwrap();
    let m = s
        .expect(&[re(r"\[  OK  \] Started getty\.")], SEC)
        .await
        .unwrap();
    assert_eq!(m.before, "");
    let m = s.expect(&[re(r"/ # $")], SEC).await.unwrap();
    assert_eq!(m.before, "\r\n");
    assert_eq!(t.received_lines(), ["[  OK  ] Started getty.", "/ # "]);
}

#[tokio::test]
async fn crlf_and_lone_cr_make_single_lines() {
    let (mut s, mut board, t) = session();
    board
        .write_all(b"one\r\ntwo\rthree\r\r\nfour\n\nsix\r\n")
        .await
        .unwrap();
    s.expect(&[re("six")], SEC).await.unwrap();
    // the partial line after "six" is empty: nothing more
    board.write_all(b"END\n").await.unwrap();
    s.expect(&[re("END\n")], SEC).await.unwrap();
    assert_eq!(
        t.received_lines(),
        ["one", "two", "three", "four", "", "six", "END"]
    );
}

#[tokio::test]
async fn timeout_is_on_time_and_quotes_the_output_and_flushes_the_line() {
    let (mut s, mut board, t) = session();
    board.write_all(b"booting\nstill no prompt").await.unwrap();
    let start = Instant::now();
    let err = s
        .expect(&[re("login:")], Duration::from_millis(300))
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(600),
        "took {took:?}"
    );
    match err {
        ExpectError::Timeout {
            waited,
            patterns,
            last,
        } => {
            assert!(waited >= Duration::from_millis(300));
            assert_eq!(patterns, ["login:"]);
            assert_eq!(last, "booting\nstill no prompt");
        }
        other => panic!("expected a timeout, got {other}"),
    }
    // the partial line was logged
    assert_eq!(t.received_lines(), ["booting", "still no prompt"]);
    // and the rest of it follows as its own line, without an empty one in between
    board.write_all(b"\r\nlogin: ").await.unwrap();
    s.expect(&[re("login: ")], SEC).await.unwrap();
    assert_eq!(
        t.received_lines(),
        ["booting", "still no prompt", "login: "]
    );
}

#[tokio::test]
async fn closed_connection_is_reported() {
    let (mut s, mut board, t) = session();
    board.write_all(b"last words").await.unwrap();
    drop(board);
    let err = s.expect(&[re("never")], SEC).await.unwrap_err();
    assert!(err.is_closed(), "{err}");
    assert!(matches!(
        err,
        ExpectError::Console(ConsoleError::Closed { .. })
    ));
    assert!(s.is_closed());
    assert_eq!(t.received_lines(), ["last words"]);
    // a pattern in what arrived before the close is still found
    let (mut s2, mut board2, _t2) = session();
    board2.write_all(b"login: ").await.unwrap();
    drop(board2);
    assert!(s2.expect(&[re("login: ")], SEC).await.is_ok());
    assert!(s2.expect(&[re("x")], SEC).await.unwrap_err().is_closed());
    let err = s2.send_line("root", Duration::ZERO).await.unwrap_err();
    assert!(err.is_closed(), "{err}");
    // a new stream continues the session
    let (ours, mut theirs) = tokio::io::duplex(1024);
    s2.replace_stream(Box::new(ours));
    theirs.write_all(b"again# ").await.unwrap();
    assert!(s2.expect(&[re("again# ")], SEC).await.is_ok());
}

#[tokio::test]
async fn unmatched_output_stays_for_the_next_expect() {
    let (mut s, mut board, _t) = session();
    board.write_all(b"a1 b2 c3").await.unwrap();
    let m = s.expect(&[re(r"b(\d)")], SEC).await.unwrap();
    assert_eq!(m.group(1), Some("2"));
    let m = s.expect(&[re(r"a\d"), re(r"c\d")], SEC).await.unwrap();
    // "a1" was consumed (it came before the previous match)
    assert_eq!((m.index, m.before.as_str()), (1, " "));
}

#[tokio::test]
async fn send_with_character_delay() {
    let (mut s, mut board, t) = session();
    let start = Instant::now();
    s.send_line("boot", Duration::from_millis(20))
        .await
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(100), "5 chars");
    let mut got = [0u8; 16];
    let mut n = 0;
    while n < 5 {
        n += board.read(&mut got[n..]).await.unwrap();
    }
    assert_eq!(&got[..n], b"boot\n");
    s.send("fast", Duration::ZERO).await.unwrap();
    let n = board.read(&mut got).await.unwrap();
    assert_eq!(&got[..n], b"fast");
    assert_eq!(
        t.lines(),
        [
            TranscriptLine::Sent("boot\n".into()),
            TranscriptLine::Sent("fast".into())
        ]
    );
}

#[tokio::test]
async fn check_char_wakes_a_quiet_console() {
    let (mut s, mut board, t) = session();
    s.set_connection_timeout(Some(Duration::from_millis(100)));
    let responder = tokio::spawn(async move {
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while !got.ends_with(b"#\n") {
            let n = board.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        board.write_all(b"#\r\n/ # ").await.unwrap();
        board
    });
    let start = Instant::now();
    let m = s.expect_with_check(&[re("/ # ")], SEC).await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(m.matched, "/ # ");
    let _board = responder.await.unwrap();
    assert!(t.lines().contains(&TranscriptLine::Sent("#\n".into())));
}

#[tokio::test]
async fn check_char_gives_up_at_the_action_deadline() {
    let (mut s, mut board, _t) = session();
    s.set_connection_timeout(Some(Duration::from_millis(100)));
    let start = Instant::now();
    let err = s
        .expect_with_check(&[re("never")], Duration::from_millis(350))
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert!(err.is_timeout(), "{err}");
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_millis(650),
        "took {took:?}"
    );
    let mut buf = [0u8; 64];
    let n = board.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"#\n#\n#\n");
}

#[tokio::test]
async fn large_output_then_prompt_and_the_window_limit() {
    let (mut s, mut board, t) = session();
    let lines = 50_000;
    let writer = tokio::spawn(async move {
        let mut chunk = Vec::new();
        for i in 0..lines {
            chunk.extend_from_slice(
                format!("[{i:6}.000000] \x1b[1mdevice\x1b[0m {i} ready, START marker\r\n")
                    .as_bytes(),
            );
            if chunk.len() > 30_000 {
                board.write_all(&chunk).await.unwrap();
                chunk.clear();
            }
        }
        chunk.extend_from_slice(b"END root@board:~# ");
        board.write_all(&chunk).await.unwrap();
        board
    });
    // START ... END spans megabytes: more than the 64 KiB window, so it cannot match, while
    // the prompt at the end is found
    let m = s
        .expect(
            &[re(r"(?s)\[     0\.000000\].*END"), re("root@board:~# ")],
            SEC,
        )
        .await
        .unwrap();
    assert_eq!(m.index, 1);
    assert!(m.before.len() <= 64 * 1024 + 256 * 1024);
    assert!(m.before.ends_with("START marker\r\nEND "));
    let _board = writer.await.unwrap();
    let got = t.received_lines();
    assert_eq!(got.len(), lines + 1);
    assert_eq!(got[7], "[     7.000000] device 7 ready, START marker");
    assert_eq!(got[lines], "END root@board:~# ");
}

#[tokio::test]
async fn invalid_utf8_is_replaced_in_match_and_kept_in_the_transcript() {
    let (mut s, mut board, t) = session();
    board.write_all(b"caf\xe9 \xff\xfe ok\n").await.unwrap();
    let m = s.expect(&[re(r"ok\n")], SEC).await.unwrap();
    assert_eq!(m.before, "caf\u{fffd} \u{fffd}\u{fffd} ");
    // the transcript keeps every byte: U+EF00 + byte
    let lines = t.received_lines();
    assert_eq!(lines, ["caf\u{efe9} \u{efff}\u{effe} ok"]);
    assert_eq!(text_bytes(&lines[0]), b"caf\xe9 \xff\xfe ok");
}

#[tokio::test]
async fn a_line_longer_than_the_cap_is_cut_between_characters() {
    // 64 KiB of 'é' (two bytes each) after one 'x': the cut falls inside a character unless
    // the splitter keeps the character's first byte for the next piece
    let mut line = b"x".to_vec();
    for _ in 0..40_000 {
        line.extend_from_slice("é".as_bytes());
    }
    line.extend_from_slice(b"\nEND");
    let (mut s, t) = chunked(&[&line[..30_000], &line[30_000..70_001], &line[70_001..]]);
    s.expect(&[re("END")], SEC).await.unwrap();
    let got = t.received_lines();
    assert!(got.len() >= 2, "{}", got.len());
    assert!(got
        .iter()
        .all(|l| !l.chars().any(|c| ('\u{ef80}'..='\u{efff}').contains(&c))));
    let joined: String = got[..got.len() - 1].concat();
    assert_eq!(joined.as_bytes(), &line[..line.len() - 4]);
}

#[tokio::test]
async fn secrets_are_masked_in_lines_cut_by_flushes() {
    // the board echoes the password in pieces, and an expect returns (flushing the partial
    // line) after each piece: no record may hold the password or a piece of it
    let (mut s, t) = chunked(&[
        b"Password: ",
        b"open ",
        b"ses",
        b"ame\r\n/ # ",
        b"echo token=open sesame; echo done\r\n",
        b"token=open sesame\r\ndone\r\n/ # ",
    ]);
    s.set_secrets(["open sesame"]);
    s.expect(&[re("Password: ")], SEC).await.unwrap();
    s.send_line("open sesame", Duration::ZERO).await.unwrap();
    s.expect(&[re("open ")], SEC).await.unwrap();
    s.expect(&[re("ses")], SEC).await.unwrap();
    let m = s.expect(&[re("/ # ")], SEC).await.unwrap();
    assert_eq!(m.before, "ame\r\n");
    let m = s.expect(&[re("done\r\n/ # ")], SEC).await.unwrap();
    assert!(m.before.contains("token=[MASKED]"), "{:?}", m.before);
    let all = format!("{:?}", t.lines());
    for piece in ["open sesame", "open ", "sesame", "ses", "ame"] {
        assert!(!all.contains(piece), "{piece:?} in {all}");
    }
    assert_eq!(
        t.lines(),
        [
            TranscriptLine::Received("Password: ".into()),
            TranscriptLine::Sent("[MASKED]\n".into()),
            TranscriptLine::Received("[MASKED]".into()),
            TranscriptLine::Received("/ # ".into()),
            TranscriptLine::Received("echo token=[MASKED]; echo done".into()),
            TranscriptLine::Received("token=[MASKED]".into()),
            TranscriptLine::Received("done".into()),
            TranscriptLine::Received("/ # ".into()),
        ]
    );
}

#[tokio::test]
async fn secrets_are_masked_across_the_line_cap_and_in_timeouts() {
    let (mut s, mut board, t) = session();
    s.set_secrets(["hunter 2"]);
    // the 64 KiB cap cuts the line just after the secret's start
    let mut line = vec![b'.'; 64 * 1024 - 4];
    line.extend_from_slice(b"hunter 2 is the password\r\nlast: hunter 2");
    board.write_all(&line).await.unwrap();
    let err = s
        .expect(&[re("never")], Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let e = err.to_string();
    assert!(!e.contains("hunter") && e.contains("last: [MASKED]"), "{e}");
    let all = t.received_lines().concat();
    assert!(!all.contains("hunter"), "{all}");
    assert!(
        all.ends_with("[MASKED] is the passwordlast: [MASKED]"),
        "{}",
        &all[all.len() - 60..]
    );
}
