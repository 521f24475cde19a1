//! Settings and connections against the Redis of the machine
//! (127.0.0.1:6379) and servers the tests start: extras and settings
//! checked, errors with the password kept out, timeouts, ACL users and
//! database numbers, a broker restart under a blocking read, pipelined
//! publishes.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::backend::{ack_all, id_of, publish_n, receive_n, request, Streams, LOGIN};
use common::{connect, redis_cmd, redis_url, unique};
use event_bus_redis::{RedisBackend, RedisConfig, RedisTransport};
use openedx_events::bus::transport::{OutgoingMessage, TransportErrorKind};
use openedx_events::bus::{BackendFactory, BusError, Transport};
use openedx_events::catalog;
use openedx_events::config::Settings;
use openedx_events::metadata::EventsMetadata;
use serde_json::json;

#[tokio::test]
async fn extras_are_checked() {
    let t: Arc<dyn Transport> = Arc::new(connect(&redis_url()).await);
    let (_s, stream) = Streams::new("extras");
    for extras in [
        json!({"offset_time": "2024-01-01T00:00:00+00:00"}),
        json!({"claim_msgs_older_than": "soon"}),
        json!({"consumer_name": ""}),
    ] {
        let e = t
            .subscribe(&request(&stream, "g", "c", extras.clone()))
            .await
            .err()
            .unwrap_or_else(|| panic!("{extras} was accepted"));
        assert_eq!(e.kind, TransportErrorKind::Config, "{extras}: {e}");
    }
    // consumer_name in the extras overrides the request's.
    publish_n(&t, &stream, 1).await;
    let mut sub = t
        .subscribe(&request(&stream, "g", "ignored", json!({"consumer_name": "named"})))
        .await
        .expect("subscribe");
    let got = receive_n(sub.as_mut(), 1, Duration::from_secs(5)).await;
    let v: redis::Value = redis_cmd(
        &redis_url(),
        redis::cmd("XPENDING").arg(&stream).arg("g").arg("-").arg("+").arg(10),
    );
    assert!(format!("{v:?}").contains("named"), "{v:?}");
    ack_all(sub.as_mut(), &got).await;
    sub.close().await.expect("close");
}

#[tokio::test]
async fn the_factory_reads_settings_and_errors_keep_the_password_out() {
    let mut s = Settings::new();
    match RedisBackend.create(&s).await {
        Err(BusError::Config(e)) => assert_eq!(e.key, "EVENT_BUS_REDIS_CONNECTION_URL"),
        other => panic!("expected a config error, got {:?}", other.map(|_| ())),
    }
    s.set("EVENT_BUS_REDIS_CONNECTION_URL", redis_url());
    let t = RedisBackend.create(&s).await.expect("connects");
    assert_eq!(t.name(), "redis");
    assert!(t.capabilities().seek_time);

    // A refused login is fatal; the password is not in the message.
    let e = RedisTransport::connect(RedisConfig::new("redis://nobody:Hunter2Secret@127.0.0.1:6379/0").expect("url"))
        .await
        .expect_err("bad credentials");
    assert_eq!(e.kind, TransportErrorKind::Fatal, "{e}");
    assert!(!e.to_string().contains("Hunter2Secret"), "{e}");

    // Nobody listening: a connection error (or timeout), not a hang.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let started = Instant::now();
    let mut config = RedisConfig::new(format!("redis://u:Hunter2Secret@127.0.0.1:{port}/0")).expect("url");
    config.command_timeout = Duration::from_secs(1);
    let e = RedisTransport::connect(config).await.expect_err("nobody listens");
    assert!(
        matches!(e.kind, TransportErrorKind::Connection | TransportErrorKind::Timeout),
        "{e}"
    );
    assert!(!e.to_string().contains("Hunter2Secret"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    // Accepts connections and never replies (a black-holed Redis).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let mut config = RedisConfig::new(format!("redis://127.0.0.1:{port}/0")).expect("url");
    config.command_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let e = RedisTransport::connect(config).await.expect_err("no answer");
    assert!(
        matches!(e.kind, TransportErrorKind::Timeout | TransportErrorKind::Connection),
        "{e}"
    );
    assert!(!e.is_fatal());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    hold.abort();
}

#[tokio::test]
async fn acl_user_password_and_database_number_from_the_url() {
    let server = common::RedisServer::start();
    let admin = server.url();
    let _: String = redis_cmd(
        &admin,
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("events")
            .arg("on")
            .arg(">S3cretPass")
            .arg("~*")
            .arg("&*")
            .arg("+@all"),
    );
    let url = admin
        .replace("redis://", "redis://events:S3cretPass@")
        .replace("/0", "/3");
    let t: Arc<dyn Transport> = Arc::new(connect(&url).await);
    let (_s, stream) = Streams::new("acl");
    let ids = publish_n(&t, &stream, 1).await;
    let mut db3 = common::sync_conn(&admin.replace("/0", "/3"));
    let len: i64 = redis::cmd("XLEN").arg(&stream).query(&mut db3).expect("XLEN");
    assert_eq!(len, 1, "written to database 3");
    let len0: i64 = redis_cmd(&admin, redis::cmd("XLEN").arg(&stream));
    assert_eq!(len0, 0, "not to database 0");
    let mut sub = t
        .subscribe(&request(&stream, "g", "c", json!({})))
        .await
        .expect("subscribe");
    let got = receive_n(sub.as_mut(), 1, Duration::from_secs(5)).await;
    assert_eq!(id_of(&got[0]), ids[0]);
    ack_all(sub.as_mut(), &got).await;
    sub.close().await.expect("close");

    // A user without the stream commands is refused: fatal.
    let _: String = redis_cmd(
        &admin,
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("reader")
            .arg("on")
            .arg(">pw")
            .arg("~*")
            .arg("+ping")
            .arg("+hello")
            .arg("+select"),
    );
    let limited = admin.replace("redis://", "redis://reader:pw@");
    let t: Arc<dyn Transport> = Arc::new(connect(&limited).await);
    let e = publish_n_result(&t, &stream).await.expect_err("XADD is not allowed");
    assert_eq!(e.kind, TransportErrorKind::Fatal, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_read_survives_a_broker_restart() {
    let server = common::RedisServer::start();
    let url = server.url();
    let t: Arc<dyn Transport> = Arc::new(connect(&url).await);
    let stream = unique("restart-read");
    let mut sub = t
        .subscribe(&request(&stream, "g", "c", json!({})))
        .await
        .expect("subscribe");
    let first = publish_n(&t, &stream, 1).await;
    let got = receive_n(sub.as_mut(), 1, Duration::from_secs(5)).await;
    ack_all(sub.as_mut(), &got).await;
    // A read blocked in Redis while the server goes away and comes back.
    let reading = tokio::spawn(async move {
        let started = Instant::now();
        let r = sub.receive(10, Duration::from_secs(3)).await;
        (sub, r, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart().expect("restart");
    let (mut sub, r, took) = reading.await.expect("join");
    match &r {
        Ok(v) => assert!(v.is_empty()),
        Err(e) => assert!(!e.is_fatal(), "{e}"),
    }
    assert!(took < Duration::from_secs(10), "the read returned after {took:?}");
    // Then it goes on: the group and its position survived (append-only file).
    let second = publish_n(&t, &stream, 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.is_empty() && Instant::now() < deadline {
        match sub.receive(10, Duration::from_millis(200)).await {
            Ok(v) => got.extend(v),
            Err(e) => assert!(!e.is_fatal(), "{e}"),
        }
    }
    assert_eq!(
        got.iter().map(id_of).collect::<Vec<_>>(),
        second,
        "only the new entry, not {first:?} again"
    );
    ack_all(sub.as_mut(), &got).await;
    sub.close().await.expect("close");
}

/// Concurrent publishes share pipelines: each caller gets its own entry id,
/// one caller's publishes keep their order, and a command Redis refuses
/// fails for its caller alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_are_pipelined_and_answered_one_by_one() {
    let url = redis_url();
    let t: Arc<dyn Transport> = Arc::new(connect(&url).await);
    let (_s, stream) = Streams::new("pipelined");
    let (_w, wrong) = Streams::new("not-a-stream");
    let _: String = redis_cmd(&url, redis::cmd("SET").arg(&wrong).arg("a string, not a stream"));
    let et = catalog::get(LOGIN).expect("login");
    let tasks: Vec<_> = (0..32)
        .map(|task| {
            let (t, stream, wrong, et) = (t.clone(), stream.clone(), wrong.clone(), et.clone());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..50 {
                    let data = openedx_events::sample::event_data(&et, &mut openedx_events::sample::rng(i));
                    let m = EventsMetadata::new(LOGIN, 0);
                    let topic = if task == 7 && i == 20 { &wrong } else { &stream };
                    let result = t
                        .publish(&OutgoingMessage {
                            topic: topic.clone(),
                            event_type: et.clone(),
                            metadata: m.clone(),
                            key: None,
                            body: et.encode_data(&data).expect("encodes"),
                        })
                        .await;
                    ids.push((m.id, topic == &wrong, result));
                }
                ids
            })
        })
        .collect();
    let mut written = HashSet::new();
    for task in tasks {
        let mut previous = String::new();
        for (id, refused, result) in task.await.expect("task") {
            if refused {
                let e = result.expect_err("WRONGTYPE");
                assert_eq!(e.kind, TransportErrorKind::Rejected, "{e}");
                assert!(e.message.contains("WRONGTYPE") && e.message.contains(&wrong), "{e}");
                continue;
            }
            let entry = result.expect("published");
            let (ms, seq) = entry.split_once('-').expect("an entry id");
            let key = format!("{ms:0>20}-{seq:0>20}");
            assert!(
                key > previous,
                "one caller's entries in order: {entry} after {previous}"
            );
            previous = key;
            assert!(written.insert(id), "each event once");
        }
    }
    assert_eq!(written.len(), 32 * 50 - 1);
    let len: i64 = redis_cmd(&url, redis::cmd("XLEN").arg(&stream));
    assert_eq!(len, 32 * 50 - 1);
}

async fn publish_n_result(t: &Arc<dyn Transport>, stream: &str) -> Result<String, openedx_events::bus::TransportError> {
    let et = catalog::get(LOGIN).expect("login");
    let data = openedx_events::sample::event_data(et, &mut openedx_events::sample::rng(1));
    let m = EventsMetadata::new(LOGIN, 0);
    t.publish(&OutgoingMessage {
        topic: stream.to_string(),
        event_type: et.clone(),
        metadata: m,
        key: None,
        body: et.encode_data(&data).expect("encodes"),
    })
    .await
}
