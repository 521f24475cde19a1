//! At least once through crashes: the relay (the `outbox_relay` example,
//! as a child process) is SIGKILLed 5 times while it relays 10,000 events
//! to the machine's Redis; every event reaches the stream, in order per key
//! but for redelivered duplicates. On PostgreSQL and on MariaDB.
#![cfg(all(feature = "postgres", feature = "mysql"))]

mod common;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Kind, TestDb};
use tokio::process::{Child, Command};

const EVENTS: usize = 10_000;
const KEYS: usize = 100;
const KILLS: usize = 5;
const REDIS: &str = "redis://127.0.0.1:6379/0";

/// `target/<profile>/examples/outbox_relay`, which `cargo test` builds.
fn relay_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("examples").join("outbox_relay");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test -p event-bus-outbox` (it builds the examples)",
        bin.display()
    );
    bin
}

fn spawn_relay(db: &TestDb) -> Child {
    Command::new(relay_binary())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("EVENT_BUS_BACKEND", "redis")
        .env("EVENT_BUS_REDIS_CONNECTION_URL", REDIS)
        .env("EVENT_BUS_REDIS_STREAM_MAX_LEN", "1000000")
        .env("EVENT_BUS_OUTBOX_DATABASE_URL", &db.url)
        .env("EVENT_BUS_OUTBOX_TABLE", &db.table)
        .env("EVENT_BUS_OUTBOX_BATCH_SIZE", "100")
        .env("EVENT_BUS_OUTBOX_POLL_INTERVAL_SECONDS", "0.05")
        .env("EVENT_BUS_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the relay")
}

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(REDIS)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("Redis is needed at {REDIS}: {e}"))
}

async fn xlen(conn: &mut redis::aio::MultiplexedConnection, stream: &str) -> usize {
    redis::cmd("XLEN").arg(stream).query_async(conn).await.expect("XLEN")
}

/// Every entry of the stream: (event id, body), in stream order.
async fn entries(conn: &mut redis::aio::MultiplexedConnection, stream: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut start = "-".to_string();
    loop {
        let page: Vec<(String, HashMap<String, Vec<u8>>)> = redis::cmd("XRANGE")
            .arg(stream)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(2000)
            .query_async(conn)
            .await
            .expect("XRANGE");
        let Some((last, _)) = page.last() else { break };
        start = format!("({last}");
        for (_, fields) in page {
            let id = String::from_utf8(fields["id"].clone()).expect("id text");
            out.push((id, fields["event_data"].clone()));
        }
    }
    out
}

async fn relay_through_kills(kind: Kind) {
    let db = TestDb::new(kind).await;
    let mut conn = redis().await;
    let stream = db.topic.clone();
    let mut expected = HashSet::new();
    for (n, chunk) in (0..EVENTS).collect::<Vec<_>>().chunks(500).enumerate() {
        let events: Vec<(i64, usize)> = chunk.iter().map(|&s| ((s % KEYS) as i64, s)).collect();
        for (id, _) in db.write_many(n as i64, &events, true).await {
            expected.insert(id.hyphenated().to_string());
        }
    }
    let started = Instant::now();
    let mut kills_mid_work = 0;
    for k in 0..KILLS {
        let mut child = spawn_relay(&db);
        // Let it publish a while (past the previous run's progress), then kill it.
        let before = xlen(&mut conn, &stream).await;
        let target = before + 400 + rand::random::<u64>() as usize % 800;
        let deadline = Instant::now() + Duration::from_secs(60);
        while xlen(&mut conn, &stream).await < target && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let pending = db.pending().await;
        child.start_kill().expect("SIGKILL");
        child.wait().await.expect("wait");
        if pending > 0 {
            kills_mid_work += 1;
        }
        eprintln!(
            "{kind:?}: kill {} at {} stream entries, {pending} rows pending",
            k + 1,
            xlen(&mut conn, &stream).await
        );
    }
    let mut child = spawn_relay(&db);
    let deadline = Instant::now() + Duration::from_secs(180);
    while db.pending().await > 0 {
        assert!(Instant::now() < deadline, "{} rows still pending", db.pending().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.start_kill().expect("kill");
    child.wait().await.expect("wait");
    let elapsed = started.elapsed();

    let all = entries(&mut conn, &stream).await;
    let distinct: HashSet<&String> = all.iter().map(|(id, _)| id).collect();
    let sequence: Vec<(String, usize)> = all
        .iter()
        .map(|(_, body)| {
            let data = common::event_type().decode_data(body).expect("decode");
            let user = match data.get("user") {
                Some(openedx_events::value::Value::Record(u)) => u.clone(),
                other => panic!("user is {other:?}"),
            };
            let key = match user.get("id") {
                Some(openedx_events::value::Value::Long(k)) => k.to_string(),
                other => panic!("id is {other:?}"),
            };
            let seq = match user.get("pii") {
                Some(openedx_events::value::Value::Record(p)) => match p.get("name") {
                    Some(openedx_events::value::Value::String(s)) => s.trim_start_matches("seq-").parse().expect("seq"),
                    other => panic!("name is {other:?}"),
                },
                other => panic!("pii is {other:?}"),
            };
            (key, seq)
        })
        .collect();
    let (unique, duplicates) = common::check_order(&sequence);
    eprintln!(
        "{kind:?}: {} entries, {} distinct event ids, {duplicates} redelivered duplicates, {kills_mid_work}/{KILLS} kills mid-work, {:.1} s",
        all.len(),
        distinct.len(),
        elapsed.as_secs_f64()
    );
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut conn)
        .await
        .expect("DEL");
    assert_eq!(distinct.len(), EVENTS, "no event lost");
    assert_eq!(unique, EVENTS);
    assert!(distinct.iter().all(|id| expected.contains(*id)), "only enqueued events");
    assert_eq!(kills_mid_work, KILLS, "every kill came while rows were pending");
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_relay_sigkilled_5_times_loses_nothing() {
    relay_through_kills(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_relay_sigkilled_5_times_loses_nothing() {
    relay_through_kills(Kind::MySql).await;
}
