//! Operating the `event-bus` binary: `consume --metrics-addr` serves
//! metrics and health, `lag` equals the events not consumed yet, and
//! `--log-format json` writes JSON lines without the secrets of the
//! settings. Against the machine's Redis (127.0.0.1:6379) and a SQLite file.

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

const LOGIN: &str = "org.openedx.learning.auth.session.login.completed.v1";
const DATA: &str =
    r#"{"user": {"id": 42, "is_active": true, "pii": {"username": "ana", "email": "ana@example.org", "name": "Ana"}}}"#;

fn cli(common: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_event-bus"));
    for (k, _) in std::env::vars() {
        if k.starts_with("EVENT_BUS_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c.args(common).stdin(Stdio::null());
    c
}

fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "event-bus failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn redis_args() -> Vec<String> {
    [
        "--backend",
        "redis",
        "--set",
        "EVENT_BUS_REDIS_CONNECTION_URL=redis://127.0.0.1:6379/0",
    ]
    .map(String::from)
    .to_vec()
}

fn unique(name: &str) -> String {
    format!("cli-{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

fn produce(common: &[String], topic: &str, n: u32) {
    let count = n.to_string();
    let args = [
        "produce",
        "--event-type",
        LOGIN,
        "-t",
        topic,
        "--data",
        DATA,
        "--count",
        &count,
    ];
    ok(cli(common).args(args).output().expect("run event-bus"));
}

fn consume(common: &[String], topic: &str, n: u32) {
    let limit = n.to_string();
    ok(cli(common)
        .args(["consume", "-t", topic, "-g", "g", "--limit", &limit, "--output", "json"])
        .output()
        .expect("run event-bus"));
}

fn lag_json(common: &[String], topic: &str, group: &str) -> Vec<Json> {
    let o = ok(cli(common)
        .args(["lag", "-t", topic, "-g", group, "--output", "json"])
        .output()
        .expect("run event-bus"));
    let j: Json = serde_json::from_slice(&o.stdout).expect("lag --output json prints JSON");
    j.as_array().cloned().expect("a JSON array")
}

fn check_lag(common: &[String]) {
    let topic = unique("lag");
    produce(common, &topic, 7);
    consume(common, &topic, 3);
    let rows = lag_json(common, &topic, "g");
    let total: u64 = rows.iter().map(|r| r["lag"].as_u64().expect("lag is a number")).sum();
    assert_eq!(total, 4, "7 produced, 3 consumed: {rows:?}");
    assert!(rows.iter().all(|r| r["group"] == "g"), "{rows:?}");
    let text = ok(cli(common)
        .args(["lag", "-t", &topic, "-g", "g"])
        .output()
        .expect("run"));
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.starts_with("TOPIC") && text.contains(" 4"), "{text}");
    assert!(
        lag_json(common, &topic, "nobody").is_empty(),
        "an unknown group has no rows"
    );
}

#[test]
fn lag_on_redis_equals_the_events_not_consumed() {
    check_lag(&redis_args());
}

#[test]
fn lag_on_sqlite_equals_the_events_not_consumed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let common = vec![
        "--backend".to_string(),
        "sqlite".into(),
        "--set".into(),
        format!("EVENT_BUS_SQLITE_PATH={}", dir.path().join("bus.db").display()),
    ];
    check_lag(&common);
}

/// GET over a plain TCP connection (HTTP/1.0, the server closes).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn consume_serves_metrics_and_health() {
    let common = redis_args();
    let topic = unique("metrics");
    let port = free_port();
    let mut child = cli(&common)
        .args(["consume", "-t", &topic, "-g", "g", "--output", "json"])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run event-bus consume");
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        match http_get(port, "/health/ready") {
            Some((200, body)) => break body,
            _ if Instant::now() > deadline => {
                let _ = child.kill();
                panic!("/health/ready never answered 200");
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert!(ready.contains("\"subscribed\":true"), "{ready}");
    produce(&common, &topic, 5);
    let series = "event_bus_consumer_messages_handled_total{";
    let mut last = String::new();
    let handled = loop {
        if let Some((200, text)) = http_get(port, "/metrics") {
            let n: f64 = text
                .lines()
                .filter(|l| l.starts_with(series) && l.contains(&topic))
                .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
                .sum();
            if n >= 5.0 {
                break n;
            }
            last = text;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the metrics did not show 5 handled events:\n{last}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(handled, 5.0);
    assert_eq!(http_get(port, "/health/live").map(|(s, _)| s), Some(200));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn json_logs_carry_no_secret() {
    // Redis without a password refuses AUTH: the errors are logged, with
    // the URL, and the password must be in none of them.
    let secret = "s3cret-Pa55word";
    let url = format!("EVENT_BUS_REDIS_CONNECTION_URL=redis://user:{secret}@127.0.0.1:6379/0");
    let o = cli(&["--backend".into(), "redis".into(), "--set".into(), url])
        .args([
            "--log-format",
            "json",
            "--set",
            "EVENT_BUS_CONSUMER_CONSECUTIVE_ERRORS_LIMIT=2",
        ])
        .args(["--set", "EVENT_BUS_CONSUMER_POLL_FAILURE_SLEEP=0.1"])
        .args(["consume", "-t", "secret-topic", "-g", "g"])
        .output()
        .expect("run event-bus");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "a refused password ends the consumer: {err}");
    assert!(err.contains("user:********@"), "the URL is shown masked: {err}");
    assert!(!err.contains(secret), "the password is in the logs:\n{err}");
    let json_lines = |err: &str| {
        let mut n = 0;
        for line in err
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("error: "))
        {
            let j: Json = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            assert!(j["level"].is_string() && j["fields"].is_object(), "{line}");
            n += 1;
        }
        n
    };
    json_lines(&err);

    // A run that logs: every line is a JSON object.
    let common = redis_args();
    let topic = unique("json-logs");
    produce(&common, &topic, 1);
    let o = ok(cli(&common)
        .args([
            "--log-format",
            "json",
            "consume",
            "-t",
            &topic,
            "-g",
            "g",
            "--limit",
            "1",
        ])
        .output()
        .expect("run event-bus"));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(json_lines(&err) >= 3, "running, subscribed, stopped: {err}");
    assert!(err.contains("\"message\":\"subscribed\""), "{err}");
}
