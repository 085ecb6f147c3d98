//! The web pages' server side in-process (no browser: tests/web_pages.rs drives one): a master
//! on 127.0.0.1:0 with a job whose log is written the way the engine stores it. The log
//! viewer's endpoints answer line ranges and level filters exactly, the live stream sends the
//! lines as they are committed and then the job's end, the pages need a session unless
//! anonymous reads are on, and a bad request gets a clear 400, not a crash.

use basalt_master::logs::JobLogFile;
use basalt_master::store::Store;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

#[path = "support/master.rs"]
mod master;

const ADMIN: &str = "admin-token-0123456789";

struct Master {
    base: String,
    state_dir: std::path::PathBuf,
    _served: master::Served,
    _dir: tempfile::TempDir,
}

fn start(anonymous_read: bool) -> Master {
    let dir = tempfile::tempdir().expect("temporary directory");
    let state_dir = dir.path().to_path_buf();
    let store = Store::open(&state_dir.join("basalt.db")).expect("store");
    store.add_token("admin", true, ADMIN).expect("admin token");
    let served = master::serve_with(state_dir.clone(), store, anonymous_read);
    Master {
        base: format!("http://{}", served.addr),
        state_dir,
        _served: served,
        _dir: dir,
    }
}

fn get(m: &Master, path: &str, token: Option<&str>) -> (u16, String) {
    let mut r = ureq::get(&format!("{}{path}", m.base)).timeout(Duration::from_secs(10));
    if let Some(t) = token {
        r = r.set("Authorization", &format!("Token {t}"));
    }
    match r.call() {
        Ok(resp) | Err(ureq::Error::Status(_, resp)) => {
            let s = resp.status();
            (s, resp.into_string().unwrap_or_default())
        }
        Err(e) => panic!("{path}: {e}"),
    }
}

fn get_json(m: &Master, path: &str) -> Value {
    let (s, body) = get(m, path, Some(ADMIN));
    assert_eq!(s, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

/// A job in the queue (it never runs: no worker), as the API submits it.
fn submit(m: &Master) -> u64 {
    let (s, _) = master::request(
        &format!("{}/api/v0.2/", m.base),
        "POST",
        "devicetypes/",
        Some(ADMIN),
        Some(&json!({"name": "qemu"}).to_string()),
    );
    assert_eq!(s, 201);
    let job = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/jobs/demo-qemu.yaml"
    ))
    .expect("the demo job");
    let (s, r) = master::request(
        &format!("{}/api/v0.2/", m.base),
        "POST",
        "jobs/",
        Some(ADMIN),
        Some(&json!({ "definition": job }).to_string()),
    );
    assert_eq!(s, 201, "{r}");
    r["job_ids"][0].as_u64().expect("an id")
}

fn rec(lvl: &str, msg: &str) -> String {
    format!("- {{\"dt\": \"2026-08-21T16:25:29.123456+00:00\", \"lvl\": \"{lvl}\", \"msg\": \"{msg}\"}}")
}

fn log(lines: usize) -> Vec<String> {
    let mut out = vec![rec(
        "info",
        "start: 1 tftp-deploy (timeout 00:01:00) [common]",
    )];
    for i in 1..lines - 1 {
        let lvl = ["debug", "target", "target", "input", "results"][i % 5];
        out.push(rec(lvl, &format!("line {i} \\e[1m")));
    }
    out.push(rec(
        "info",
        "end: 1 tftp-deploy (duration 00:00:01) [common]",
    ));
    out
}

#[test]
fn line_ranges_and_level_filters_are_exact() {
    let m = start(false);
    let id = submit(&m);
    let records = log(12_000);
    let mut file = JobLogFile::open(&m.state_dir.join("jobs").join(id.to_string())).expect("log");
    file.append(1, &records).expect("appended");

    let meta = get_json(&m, &format!("/jobs/{id}/log/meta"));
    assert_eq!(meta["lines"], 12_000);
    assert_eq!(meta["finished"], false);
    assert_eq!(
        meta["sections"],
        json!([{"level": "1", "name": "tftp-deploy", "start": 0, "end": 11_999}])
    );
    let (s, levels) = get(
        &m,
        &format!("/jobs/{id}/log/levels?from=11998"),
        Some(ADMIN),
    );
    assert_eq!(s, 200);
    // line 11998 is `input` (7), the last `info` (1)
    assert_eq!(levels.as_bytes(), &[7, 1]);

    let r = get_json(&m, &format!("/jobs/{id}/log/lines?ranges=0-2,11999-13000"));
    let ns: Vec<u64> = r["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, [0, 1, 11_999]);
    assert_eq!(r["lines"][1]["msg"], "line 1 \\e[1m");
    assert_eq!(r["lines"][1]["level"], "target");

    // server-side filtering, paged by `next`
    let mut n = 0;
    let mut start = 0u64;
    let mut seen = Vec::new();
    loop {
        let r = get_json(
            &m,
            &format!("/jobs/{id}/log/lines?start={start}&levels=input,results"),
        );
        for l in r["lines"].as_array().unwrap() {
            seen.push(l["n"].as_u64().unwrap());
            assert!(["input", "results"].contains(&l["level"].as_str().unwrap()));
        }
        n += 1;
        match r["next"].as_u64() {
            Some(next) => start = next,
            None => break,
        }
    }
    let want: Vec<u64> = (1..11_999u64).filter(|i| i % 5 >= 3).collect();
    assert_eq!(seen, want);
    assert!(n >= 2, "more than one page");

    for bad in [
        "lines?ranges=9-3",
        "lines?ranges=x",
        "lines?levels=loud",
        "levels?from=-1",
    ] {
        let (s, body) = get(&m, &format!("/jobs/{id}/log/{bad}"), Some(ADMIN));
        assert_eq!(s, 400, "{bad}: {body}");
        assert!(body.contains("message"), "{body}");
    }
    let (s, _) = get(&m, "/jobs/999/log/meta", Some(ADMIN));
    assert_eq!(s, 404);
    let (s, _) = get(&m, "/jobs/x/log/meta", Some(ADMIN));
    assert_eq!(s, 404);
}

#[test]
fn the_stream_sends_lines_as_they_are_committed_then_the_end() {
    let m = start(false);
    let id = submit(&m);
    let dir = m.state_dir.join("jobs").join(id.to_string());
    let mut file = JobLogFile::open(&dir).expect("log");
    file.append(1, &log(10)).expect("appended");

    let resp = ureq::get(&format!("{}/jobs/{id}/log/stream?from=4", m.base))
        .set("Authorization", &format!("Token {ADMIN}"))
        .timeout(Duration::from_secs(30))
        .call()
        .expect("the stream");
    assert_eq!(resp.content_type(), "text/event-stream");
    let (tx, rx) = std::sync::mpsc::channel::<(String, Value)>();
    std::thread::spawn(move || {
        let mut event = String::new();
        for line in BufReader::new(resp.into_reader())
            .lines()
            .map_while(Result::ok)
        {
            if let Some(e) = line.strip_prefix("event: ") {
                event = e.to_string();
            } else if let Some(d) = line.strip_prefix("data: ") {
                let v = serde_json::from_str(d).unwrap_or(Value::Null);
                if tx.send((event.clone(), v)).is_err() {
                    return;
                }
            }
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("an event within 10 s")
    };
    let (e, d) = next();
    assert_eq!(e, "lines");
    assert_eq!(d["start"], 4);
    assert_eq!(d["lines"].as_array().unwrap().len(), 6);
    assert_eq!(d["levels"].as_array().unwrap().len(), 6);
    assert!(d["sections"].is_array());

    // more lines committed: they come (the engine's signal is not sent here: the stream's
    // once-a-second look finds them)
    let t = Instant::now();
    file.append(11, &[rec("target", "later")])
        .expect("appended");
    let (e, d) = next();
    assert_eq!(e, "lines");
    assert_eq!(d["start"], 10);
    assert_eq!(d["lines"][0][1], "later");
    assert!(t.elapsed() < Duration::from_secs(3));

    // the job ends (canceled): the end event, then the stream closes
    let (s, _) = master::request(
        &format!("{}/api/v0.2/", m.base),
        "GET",
        &format!("jobs/{id}/cancel/"),
        Some(ADMIN),
        None,
    );
    assert_eq!(s, 200);
    let (e, d) = next();
    assert_eq!(e, "end");
    assert_eq!(d, json!({"state": "Finished", "health": "Canceled"}));
}

#[test]
fn pages_need_a_session_unless_anonymous_reads_are_on() {
    let m = start(false);
    let id = submit(&m);
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let anon = |path: &str| match agent.get(&format!("{}{path}", m.base)).call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => (
            r.status(),
            r.header("location").unwrap_or_default().to_string(),
        ),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(anon("/jobs"), (303, "/login?next=/jobs".into()));
    assert_eq!(
        anon(&format!("/jobs/{id}?x=1")),
        (303, format!("/login?next=/jobs/{id}%3Fx%3D1"))
    );
    assert_eq!(anon(&format!("/jobs/{id}/log/meta")).0, 401);
    assert_eq!(anon("/login").0, 200);
    assert_eq!(anon("/static/log.js").0, 200);
    // a wrong token is refused, not taken as anonymous
    let (s, _) = get(&m, "/jobs", Some("not-a-token"));
    assert_eq!(s, 403);
    let (s, body) = get(&m, "/jobs", Some(ADMIN));
    assert_eq!(s, 200);
    assert!(body.contains(&format!("data-id=\"{id}\"")));
    // the sign-in form: a wrong token is refused, a good one sets the cookie, and only a form
    // this site gave this browser counts (its nonce cookie and field; login CSRF)
    let form = || {
        let r = agent
            .get(&format!("{}/login?next=/devices", m.base))
            .call()
            .expect("the sign-in form");
        let nonce = r
            .header("set-cookie")
            .and_then(|c| c.split(';').next())
            .unwrap_or_default()
            .to_string();
        assert!(nonce.starts_with("basalt_login="), "{nonce}");
        let page = r.into_string().unwrap_or_default();
        let field = page
            .split("name=\"login_csrf\" value=\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .unwrap_or_default()
            .to_string();
        assert_eq!(field.len(), 64, "the form's field: {page}");
        (nonce, field)
    };
    let signin = |token: &str, cookie: Option<&str>, field: &str| {
        let mut req = agent.post(&format!("{}/login", m.base));
        if let Some(c) = cookie {
            req = req.set("Cookie", c);
        }
        match req.send_form(&[
            ("token", token),
            ("next", "/devices"),
            ("login_csrf", field),
        ]) {
            Ok(r) | Err(ureq::Error::Status(_, r)) => (
                r.status(),
                r.all("set-cookie")
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join("\n"),
                r.header("location").unwrap_or_default().to_string(),
            ),
            Err(e) => panic!("{e}"),
        }
    };
    let (nonce, field) = form();
    let (s, cookie, _) = signin("wrong", Some(&nonce), &field);
    assert_eq!(s, 403);
    assert!(!cookie.contains("basalt_token="), "{cookie}");
    // another site's form: no nonce cookie (SameSite=Strict keeps it home), or another's
    let (s, cookie, _) = signin(ADMIN, None, &field);
    assert_eq!(s, 403, "a form without its nonce");
    assert!(!cookie.contains("basalt_token="), "{cookie}");
    let (other, _) = form();
    let (s, cookie, _) = signin(ADMIN, Some(&other), &field);
    assert_eq!(s, 403, "a form with another nonce");
    assert!(!cookie.contains("basalt_token="), "{cookie}");
    let (s, cookie, location) = signin(ADMIN, Some(&nonce), &field);
    assert_eq!((s, location.as_str()), (303, "/devices"));
    let session = cookie
        .lines()
        .find(|c| c.starts_with("basalt_token="))
        .unwrap_or_default();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        cookie.contains("basalt_login=;") && cookie.contains("Max-Age=0"),
        "the nonce is spent: {cookie}"
    );

    let open = start(true);
    let id = submit(&open);
    let (s, body) = get(&open, &format!("/jobs/{id}"), None);
    assert_eq!(s, 200, "anonymous reads");
    assert!(
        !body.contains("cancel-form"),
        "no actions for an anonymous reader"
    );
}
