//! The Redis-specific behaviour, against the Redis of the machine
//! (127.0.0.1:6379): the exact entries written, start positions and the
//! Python quirks we do not copy, pending-list recovery (with trimmed
//! entries), claiming, the refresh of held entries, configuration and
//! connection errors (with the password kept out of them).

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{connect, delete_streams, redis_cmd, redis_url, unique};
use event_bus_redis::{RedisBackend, RedisConfig, RedisTransport};
use openedx_events::bus::transport::{
    Delivery, OutgoingMessage, RawMessage, SeekTarget, StartPosition, SubscribeRequest, Subscription,
    TransportErrorKind,
};
use openedx_events::bus::{BackendFactory, BusError, EventBusProducer, Transport};
use openedx_events::catalog;
use openedx_events::config::Settings;
use openedx_events::metadata::{self, EventsMetadata};
use openedx_events::testing::shared_vectors_dir;
use serde_json::{json, Value as Json};
use uuid::Uuid;

const LOGIN: &str = "org.openedx.learning.auth.session.login.completed.v1";

/// Deletes the test's streams at the end, even when it fails.
struct Streams(Vec<String>);

impl Streams {
    fn new(name: &str) -> (Self, String) {
        let s = unique(name);
        (Streams(vec![s.clone(), format!("{s}-dlq")]), s)
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        delete_streams(&redis_url(), &self.0);
    }
}

fn request(stream: &str, group: &str, consumer: &str, extras: Json) -> SubscribeRequest {
    SubscribeRequest {
        topic: stream.to_string(),
        group: group.to_string(),
        consumer_name: consumer.to_string(),
        start: StartPosition::Earliest,
        extras: extras.as_object().cloned().unwrap_or_default(),
    }
}

async fn publish_n(t: &Arc<dyn Transport>, stream: &str, n: usize) -> Vec<Uuid> {
    let producer = EventBusProducer::new(t.clone(), None);
    let et = catalog::get(LOGIN).expect("login");
    let mut ids = Vec::new();
    for i in 0..n {
        let data = openedx_events::sample::event_data(et, &mut openedx_events::sample::rng(i as u64));
        let m = EventsMetadata::new(LOGIN, 0);
        producer.send(et, stream, None, &data, &m).await.expect("publish");
        ids.push(m.id);
    }
    ids
}

fn id_of(d: &Delivery) -> Uuid {
    d.event
        .as_ref()
        .map(|e| e.metadata.id)
        .unwrap_or_else(|e| panic!("not an event: {e}"))
}

/// Receive until `n` deliveries arrived or `patience` ran out.
async fn receive_n(sub: &mut dyn Subscription, n: usize, patience: Duration) -> Vec<Delivery> {
    let deadline = Instant::now() + patience;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        out.extend(
            sub.receive(n - out.len(), Duration::from_millis(100))
                .await
                .expect("receive"),
        );
    }
    out
}

async fn ack_all(sub: &mut dyn Subscription, ds: &[Delivery]) {
    for d in ds {
        sub.ack(d.tag).await.expect("ack");
    }
    sub.flush_acks().await.expect("flush");
}

fn pending_count(stream: &str, group: &str) -> i64 {
    let v: redis::Value = redis_cmd(&redis_url(), redis::cmd("XPENDING").arg(stream).arg(group));
    match v {
        redis::Value::Array(parts) => match parts.first() {
            Some(redis::Value::Int(n)) => *n,
            other => panic!("unexpected XPENDING reply {other:?}"),
        },
        other => panic!("unexpected XPENDING reply {other:?}"),
    }
}

#[tokio::test]
async fn xadd_writes_the_python_fields_in_order_and_trims() {
    let url = redis_url();
    let t: Arc<dyn Transport> = Arc::new(connect(&url).await);
    let (_s, stream) = Streams::new("wire");
    let text = std::fs::read_to_string(shared_vectors_dir().join("wire-cases.json")).expect("wire-cases.json");
    let cases: Json = serde_json::from_str(&text).expect("JSON");
    for case in cases["cases"].as_array().expect("cases") {
        let et = catalog::get(case["event_type"].as_str().expect("type")).expect("in catalog");
        let header = |name: &str| -> String {
            case["kafka_headers_in_order"]
                .as_array()
                .expect("headers")
                .iter()
                .find(|h| h[0] == name)
                .and_then(|h| h[1].as_str())
                .expect("header")
                .to_string()
        };
        let mut m = EventsMetadata::new(et.name(), 0);
        m.id = metadata::parse_id(&header("ce_id")).expect("id");
        m.source = header("ce_source");
        m.sourcehost = header("sourcehost");
        m.sourcelib = header("sourcelib").parse().expect("lib");
        m.time = metadata::parse_time(&header("ce_time")).expect("time");
        let body = hex::decode(case["avro_body_hex"].as_str().expect("hex")).expect("hex");
        let position = t
            .publish(&OutgoingMessage {
                topic: stream.clone(),
                event_type: et.clone(),
                metadata: m,
                key: None,
                body: et
                    .encode_data(&et.decode_data(&body).expect("decodes"))
                    .expect("encodes"),
            })
            .await
            .expect("publish");
        // Read the entry back with a plain client: the fields, in order.
        let v: redis::Value = redis_cmd(&url, redis::cmd("XRANGE").arg(&stream).arg(&position).arg(&position));
        let redis::Value::Array(entries) = v else {
            panic!("XRANGE reply")
        };
        let redis::Value::Array(entry) = &entries[0] else {
            panic!("entry")
        };
        let redis::Value::Array(flat) = &entry[1] else {
            panic!("fields")
        };
        let stored: Vec<(String, String)> = flat
            .chunks(2)
            .map(|kv| match (&kv[0], &kv[1]) {
                (redis::Value::BulkString(k), redis::Value::BulkString(v)) => {
                    let k = String::from_utf8(k.clone()).expect("utf8");
                    let v = if k == "event_data" {
                        hex::encode(v)
                    } else {
                        String::from_utf8(v.clone()).expect("utf8")
                    };
                    (k, v)
                }
                other => panic!("field {other:?}"),
            })
            .collect();
        let python: Vec<(String, String)> = case["redis_fields_in_order"]
            .as_array()
            .expect("fields")
            .iter()
            .map(|p| {
                (
                    p[0].as_str().expect("k").to_string(),
                    p[1].as_str().expect("v").to_string(),
                )
            })
            .collect();
        assert_eq!(stored, python, "entry of case {} as stored in Redis", case["name"]);
    }
    println!("4 wire cases: the entries stored in Redis equal redis_fields_in_order");

    // MAXLEN ~ n keeps the stream near n entries.
    let mut config = RedisConfig::new(&url).expect("url");
    config.stream_max_len = 10;
    let small: Arc<dyn Transport> = Arc::new(RedisTransport::connect(config).await.expect("connect"));
    let (_s2, trimmed) = Streams::new("maxlen");
    publish_n(&small, &trimmed, 300).await;
    let len: i64 = redis_cmd(&url, redis::cmd("XLEN").arg(&trimmed));
    assert!((10..300).contains(&len), "XLEN {len} after 300 XADD with MAXLEN ~ 10");
}

/// Dead letters are written without `MAXLEN`: with a tiny
/// `EVENT_BUS_REDIS_STREAM_MAX_LEN`, 300 dead letters all stay, where 300
/// raw messages without `dlq_reason` are trimmed.
#[tokio::test]
async fn dead_letters_are_never_trimmed() {
    let url = redis_url();
    let mut config = RedisConfig::new(&url).expect("url");
    config.stream_max_len = 10;
    let small: Arc<dyn Transport> = Arc::new(RedisTransport::connect(config).await.expect("connect"));
    let (_s, stream) = Streams::new("dlq-maxlen");
    let dlq = format!("{stream}-dlq");
    let (_o, other) = Streams::new("raw-maxlen");
    for i in 0..300 {
        let mut letter = RawMessage {
            topic: dlq.clone(),
            key: None,
            headers: vec![("type".into(), LOGIN.as_bytes().to_vec())],
            value: format!("body {i}").into_bytes(),
            timestamp: None,
        };
        let plain = RawMessage {
            topic: other.clone(),
            ..letter.clone()
        };
        letter.headers.extend([
            ("dlq_reason".to_string(), b"undecodable".to_vec()),
            ("dlq_error".to_string(), b"bad bytes".to_vec()),
        ]);
        small.publish_raw(&letter).await.expect("publish a dead letter");
        small.publish_raw(&plain).await.expect("publish a raw message");
    }
    let len: i64 = redis_cmd(&url, redis::cmd("XLEN").arg(&dlq));
    assert_eq!(len, 300, "every dead letter is still there");
    let len: i64 = redis_cmd(&url, redis::cmd("XLEN").arg(&other));
    assert!(len < 300, "other raw messages are trimmed as before (XLEN {len})");
    let letters = small.browse(&dlq, None, 1000).await.expect("browse");
    assert_eq!(letters.len(), 300);
    assert_eq!(letters[0].raw.value, b"body 0", "the oldest dead letter too");
}

#[tokio::test]
async fn raw_messages_keep_header_order_and_browse_reads_after_a_position() {
    let t: Arc<dyn Transport> = Arc::new(connect(&redis_url()).await);
    let (_s, stream) = Streams::new("raw");
    let raw = RawMessage {
        topic: stream.clone(),
        key: None,
        headers: vec![
            ("zeta".into(), b"1".to_vec()),
            ("alpha".into(), b"\xff\x00".to_vec()),
            ("dlq_reason".into(), b"undecodable".to_vec()),
        ],
        value: b"\x00\x01 body".to_vec(),
        timestamp: None,
    };
    let first = t.publish_raw(&raw).await.expect("publish");
    let second = t.publish_raw(&raw).await.expect("publish");
    let all = t.browse(&stream, None, 10).await.expect("browse");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].position, first);
    assert_eq!(all[0].raw.headers, raw.headers, "headers in stream order");
    assert_eq!(all[0].raw.value, raw.value);
    assert!(all[0].raw.timestamp.is_some());
    assert!(all[0].event.as_ref().is_err_and(|e| e.contains("type")));
    let after = t.browse(&stream, Some(&first), 10).await.expect("browse");
    assert_eq!(
        after.iter().map(|d| d.position.clone()).collect::<Vec<_>>(),
        vec![second.clone()]
    );
    assert!(t.browse(&stream, Some(&second), 10).await.expect("browse").is_empty());
    assert_eq!(t.browse(&stream, None, 1).await.expect("browse").len(), 1);
    assert!(t.browse(&stream, Some("not-an-id"), 1).await.is_err());
}

#[tokio::test]
async fn unusable_entries_are_delivered_as_errors() {
    let url = redis_url();
    let t: Arc<dyn Transport> = Arc::new(connect(&url).await);
    let (_s, stream) = Streams::new("unusable");
    let uuid = "629f9892-c258-11ed-8dac-1c83413013cb";
    let entries: Vec<Vec<(&[u8], &[u8])>> = vec![
        vec![(b"id", uuid.as_bytes()), (b"event_data", b"x")],
        vec![(b"type", LOGIN.as_bytes()), (b"event_data", b"x")],
        vec![(b"type", LOGIN.as_bytes()), (b"id", uuid.as_bytes())],
        vec![(b"type", LOGIN.as_bytes()), (b"id", b"nope"), (b"event_data", b"x")],
        vec![(b"type", b"\xff\xfe"), (b"id", uuid.as_bytes()), (b"event_data", b"x")],
        vec![
            (b"\xff", b"\xff"),
            (b"type", LOGIN.as_bytes()),
            (b"id", uuid.as_bytes()),
            (b"event_data", b"\xff"),
        ],
    ];
    for fields in &entries {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&stream).arg("*");
        for (k, v) in fields {
            cmd.arg(*k).arg(*v);
        }
        let _: String = redis_cmd(&url, &cmd);
    }
    let mut sub = t
        .subscribe(&request(&stream, "g", "c", json!({})))
        .await
        .expect("subscribe");
    let got = receive_n(sub.as_mut(), entries.len(), Duration::from_secs(5)).await;
    let reasons: Vec<Result<(), String>> = got
        .iter()
        .map(|d| d.event.as_ref().map(|_| ()).map_err(Clone::clone))
        .collect();
    println!("{reasons:#?}");
    assert_eq!(got.len(), 6);
    for (d, want) in got
        .iter()
        .zip(["\"type\"", "\"id\"", "event_data", "'id'", "not UTF-8"])
    {
        let e = d.event.as_ref().expect_err("unusable");
        assert!(e.contains(want), "{e} should mention {want}");
    }
    assert!(got[5].event.is_ok(), "odd extra fields do not matter");
    ack_all(sub.as_mut(), &got).await;
    sub.close().await.expect("close");
    assert_eq!(pending_count(&stream, "g"), 0);
}

#[tokio::test]
async fn start_positions_and_the_python_quirks_we_do_not_copy() {
    let t: Arc<dyn Transport> = Arc::new(connect(&redis_url()).await);
    let (_s, stream) = Streams::new("start");
    let before = publish_n(&t, &stream, 3).await;

    // A new group starts at 0: the whole retained stream.
    let mut a = t
        .subscribe(&request(&stream, "new", "c", json!({})))
        .await
        .expect("subscribe");
    let got = receive_n(a.as_mut(), 3, Duration::from_secs(5)).await;
    assert_eq!(got.iter().map(id_of).collect::<Vec<_>>(), before);
    assert!(got.iter().all(|d| d.attempt == 1));
    // Only one entry handled before the consumer stops.
    ack_all(a.as_mut(), &got[..1]).await;
    a.close().await.expect("close");

    // Produced while every consumer was down: Python's default start
    // (SETID $) would skip these; we keep the group's position.
    let while_down = publish_n(&t, &stream, 2).await;
    let mut b = t
        .subscribe(&request(&stream, "new", "c", json!({})))
        .await
        .expect("subscribe");
    let got = receive_n(b.as_mut(), 4, Duration::from_secs(5)).await;
    let ids: Vec<Uuid> = got.iter().map(id_of).collect();
    assert_eq!(
        ids,
        [&before[1..], &while_down[..]].concat(),
        "pending first (recovered), then the backlog"
    );
    assert_eq!(got[0].attempt, 2, "recovered entries count their deliveries");
    ack_all(b.as_mut(), &got).await;
    b.close().await.expect("close");

    // StartPosition::Latest: a NEW group starts at the end.
    let mut latest = request(&stream, "latest", "c", json!({}));
    latest.start = StartPosition::Latest;
    let mut c = t.subscribe(&latest).await.expect("subscribe");
    assert!(c
        .receive(10, Duration::from_millis(200))
        .await
        .expect("receive")
        .is_empty());
    let after = publish_n(&t, &stream, 1).await;
    let got = receive_n(c.as_mut(), 1, Duration::from_secs(5)).await;
    assert_eq!(id_of(&got[0]), after[0]);
    ack_all(c.as_mut(), &got).await;
    c.close().await.expect("close");

    // skip_backlog: what Python does by default.
    let skipped = publish_n(&t, &stream, 2).await;
    let mut d = t
        .subscribe(&request(&stream, "new", "c", json!({"skip_backlog": true})))
        .await
        .expect("subscribe");
    assert!(d
        .receive(10, Duration::from_millis(200))
        .await
        .expect("receive")
        .is_empty());
    d.close().await.expect("close");

    // last_read_msg_id: replay after an entry.
    let all = t.browse(&stream, None, 100).await.expect("browse");
    let pos = all[all.len() - 3].position.clone();
    let mut e = t
        .subscribe(&request(
            &stream,
            "new",
            "c",
            json!({"last_read_msg_id": pos, "check_backlog": true}),
        ))
        .await
        .expect("subscribe");
    let got = receive_n(e.as_mut(), 2, Duration::from_secs(5)).await;
    assert_eq!(got.iter().map(id_of).collect::<Vec<_>>(), skipped);
    ack_all(e.as_mut(), &got).await;

    // seek: Earliest, After, Time, Latest.
    e.seek(&SeekTarget::Earliest).await.expect("seek");
    assert_eq!(receive_n(e.as_mut(), 8, Duration::from_secs(5)).await.len(), 8);
    e.seek(&SeekTarget::After(all[5].position.clone())).await.expect("seek");
    let got = receive_n(e.as_mut(), 2, Duration::from_secs(5)).await;
    assert_eq!(got.iter().map(id_of).collect::<Vec<_>>(), skipped);
    e.seek(&SeekTarget::Time(all[6].raw.timestamp.expect("ts")))
        .await
        .expect("seek");
    let got = receive_n(e.as_mut(), 2, Duration::from_secs(5)).await;
    assert!(
        got.iter().any(|d| id_of(d) == skipped[0]),
        "seek to the time of an entry includes it"
    );
    e.seek(&SeekTarget::Latest).await.expect("seek");
    assert!(e
        .receive(10, Duration::from_millis(200))
        .await
        .expect("receive")
        .is_empty());
    assert!(e.seek(&SeekTarget::After("x".into())).await.is_err());
    e.close().await.expect("close");
}

#[tokio::test]
async fn a_trimmed_pending_entry_does_not_end_recovery() {
    let url = redis_url();
    let t: Arc<dyn Transport> = Arc::new(connect(&url).await);
    let (_s, stream) = Streams::new("trimmed");
    let ids = publish_n(&t, &stream, 4).await;
    let mut a = t
        .subscribe(&request(&stream, "g", "worker-1", json!({})))
        .await
        .expect("subscribe");
    let got = receive_n(a.as_mut(), 4, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 4);
    a.close().await.expect("close without acking");
    drop(a);
    // Entries 0 and 1 are trimmed away while still pending.
    let _: i64 = redis_cmd(
        &url,
        redis::cmd("XDEL")
            .arg(&stream)
            .arg(&got[0].position)
            .arg(&got[1].position),
    );
    let mut b = t
        .subscribe(&request(&stream, "g", "worker-1", json!({})))
        .await
        .expect("subscribe");
    let again = receive_n(b.as_mut(), 2, Duration::from_secs(5)).await;
    assert_eq!(
        again.iter().map(id_of).collect::<Vec<_>>(),
        ids[2..],
        "recovery went on past the trimmed entries"
    );
    assert!(
        again.iter().all(|d| d.attempt == 2),
        "{:?}",
        again.iter().map(|d| d.attempt).collect::<Vec<_>>()
    );
    ack_all(b.as_mut(), &again).await;
    b.close().await.expect("close");
    assert_eq!(pending_count(&stream, "g"), 0, "the trimmed entries were acknowledged");
}

#[tokio::test]
async fn entries_of_a_dead_consumer_are_claimed_but_not_those_of_a_live_one() {
    let t: Arc<dyn Transport> = Arc::new(connect(&redis_url()).await);
    let (_s, stream) = Streams::new("claim");
    let ids = publish_n(&t, &stream, 3).await;
    let claim = json!({"claim_msgs_older_than": 300});

    // A live consumer holds entry 0 (nacked for 2 s) and entry 1 (in hand).
    let mut live = t
        .subscribe(&request(&stream, "g", "live", claim.clone()))
        .await
        .expect("subscribe");
    let held = receive_n(live.as_mut(), 2, Duration::from_secs(5)).await;
    assert_eq!(held.len(), 2);
    live.nack(held[0].tag, Duration::from_secs(2)).await.expect("nack");

    // A consumer that dies holding entry 2.
    let mut dead = t
        .subscribe(&request(&stream, "g", "dead", claim.clone()))
        .await
        .expect("subscribe");
    let lost = receive_n(dead.as_mut(), 1, Duration::from_secs(5)).await;
    assert_eq!(id_of(&lost[0]), ids[2]);
    drop(dead);

    // Another member claims entry 2 (after 300 ms idle), never 0 or 1.
    let mut other = t
        .subscribe(&request(&stream, "g", "other", claim))
        .await
        .expect("subscribe");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        got.extend(other.receive(10, Duration::from_millis(100)).await.expect("receive"));
    }
    let claimed: HashSet<Uuid> = got.iter().map(id_of).collect();
    assert_eq!(claimed, [ids[2]].into(), "only the dead consumer's entry is claimed");
    assert_eq!(got[0].attempt, 2, "a claimed entry counts its deliveries");
    ack_all(other.as_mut(), &got).await;

    // The live consumer gets entry 0 again when its delay is over.
    let again = receive_n(live.as_mut(), 1, Duration::from_secs(5)).await;
    assert_eq!(id_of(&again[0]), ids[0]);
    assert_eq!(again[0].attempt, 2);
    ack_all(live.as_mut(), &again).await;
    ack_all(live.as_mut(), &held[1..]).await;
    live.close().await.expect("close");
    other.close().await.expect("close");
    assert_eq!(pending_count(&stream, "g"), 0);
}

#[tokio::test]
async fn a_deleted_stream_is_recreated_by_its_consumer() {
    let url = redis_url();
    let t: Arc<dyn Transport> = Arc::new(connect(&url).await);
    let (_s, stream) = Streams::new("deleted");
    let mut sub = t
        .subscribe(&request(&stream, "g", "c", json!({})))
        .await
        .expect("subscribe");
    assert!(sub
        .receive(10, Duration::from_millis(50))
        .await
        .expect("receive")
        .is_empty());
    let _: i64 = redis_cmd(&url, redis::cmd("DEL").arg(&stream));
    // The first read finds no group and makes it again.
    assert!(sub
        .receive(10, Duration::from_millis(50))
        .await
        .expect("receive")
        .is_empty());
    let ids = publish_n(&t, &stream, 1).await;
    let got = receive_n(sub.as_mut(), 1, Duration::from_secs(5)).await;
    assert_eq!(id_of(&got[0]), ids[0]);
    ack_all(sub.as_mut(), &got).await;
    sub.close().await.expect("close");
    assert!(sub
        .receive(1, Duration::ZERO)
        .await
        .is_err_and(|e| e.kind == TransportErrorKind::Closed));
}

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

/// With a backlog, the next batch is read in the round trip of the acks of
/// the previous one. Those entries are delivered to this consumer in Redis
/// before `receive` hands them out: if it stops then, they stay pending for
/// it and a restart under the same name hands them out (at least once).
#[tokio::test]
async fn entries_read_ahead_are_not_lost_when_the_consumer_stops() {
    let url = redis_url();
    let t: Arc<dyn Transport> = Arc::new(connect(&url).await);
    let (_s, stream) = Streams::new("read-ahead");
    let ids = publish_n(&t, &stream, 25).await;
    let mut sub = t
        .subscribe(&request(&stream, "g", "c", json!({})))
        .await
        .expect("subscribe");
    let first = receive_n(sub.as_mut(), 10, Duration::from_secs(5)).await;
    assert_eq!(first.iter().map(id_of).collect::<Vec<_>>(), ids[..10]);
    ack_all(sub.as_mut(), &first).await;
    // The acks went with a read of the next 10: pending, not handed out yet.
    assert_eq!(pending_count(&stream, "g"), 10);
    sub.close().await.expect("close");
    drop(sub);
    // Closing released them: idle for long, so any member claims them.
    let idle: redis::Value = redis_cmd(
        &url,
        redis::cmd("XPENDING")
            .arg(&stream)
            .arg("g")
            .arg("IDLE")
            .arg(86_400_000)
            .arg("-")
            .arg("+")
            .arg(100),
    );
    match idle {
        redis::Value::Array(rows) => assert_eq!(rows.len(), 10, "released for claiming"),
        other => panic!("unexpected XPENDING reply {other:?}"),
    }
    let mut again = t
        .subscribe(&request(&stream, "g", "c", json!({})))
        .await
        .expect("subscribe again");
    let rest = receive_n(again.as_mut(), 15, Duration::from_secs(5)).await;
    assert_eq!(rest.iter().map(id_of).collect::<Vec<_>>(), ids[10..]);
    assert_eq!(rest[0].attempt, 2, "read once ahead, then recovered");
    assert_eq!(rest[14].attempt, 1);
    ack_all(again.as_mut(), &rest).await;
    assert_eq!(pending_count(&stream, "g"), 0);
    again.close().await.expect("close");
}

/// An entry as `XRANGE` returns it: its id and its fields.
type XEntry = (String, Vec<(Vec<u8>, Vec<u8>)>);

/// Entries written with Redis's own client by a producer that is not ours:
/// a missing `type`, an unknown type, Avro that does not decode, an id that
/// is not a UUID and a `time` with a multi-byte character in its offset
/// (once a panic in every consumer). Each is dead-lettered with its reason
/// by the core loop, the good events around them are handled, and nothing
/// stays pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_entries_written_with_xadd_are_dead_lettered_and_the_stream_goes_on() {
    use openedx_events::bus::dead_letter::DLQ_REASON;
    use openedx_events::bus::{ConsumerOptions, EventBusConsumer};
    use openedx_events::signal::Registry;
    use std::sync::Mutex;

    let url = redis_url();
    let t: Arc<dyn Transport> = Arc::new(connect(&url).await);
    let stream = unique("xadd-poison");
    let _s = Streams(vec![stream.clone(), format!("{stream}-dlq")]);
    let good1 = publish_n(&t, &stream, 1).await;
    // The fields of a good entry, as the producer wrote them.
    let range: Vec<XEntry> = redis_cmd(&url, redis::cmd("XRANGE").arg(&stream).arg("-").arg("+"));
    let good_fields = range[0].1.clone();
    let with = |name: &[u8], value: Option<&[u8]>| -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut f: Vec<(Vec<u8>, Vec<u8>)> = good_fields.iter().filter(|(k, _)| k != name).cloned().collect();
        if let Some(v) = value {
            f.push((name.to_vec(), v.to_vec()));
        }
        f
    };
    let poisons = [
        (with(b"type", None), "unusable_message"),
        (
            with(b"type", Some(b"org.openedx.learning.never.registered.v1")),
            "unknown_event_type",
        ),
        (
            with(b"event_data", Some(b"\x02\xff\xff\xff\xff\xff\xff")),
            "undecodable",
        ),
        (with(b"id", Some(b"not-a-uuid")), "unusable_message"),
        (
            with(b"time", Some("2024-05-06T00:00:00+1\u{e9}1".as_bytes())),
            "unusable_message",
        ),
    ];
    for (fields, _) in &poisons {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&stream).arg("*");
        for (k, v) in fields {
            cmd.arg(k.as_slice()).arg(v.as_slice());
        }
        let _: String = redis_cmd(&url, &cmd);
    }
    let good2 = publish_n(&t, &stream, 1).await;

    let registry = Arc::new(Registry::with_catalog());
    let handled: Arc<Mutex<Vec<Uuid>>> = Arc::default();
    let h = handled.clone();
    registry.get(LOGIN).expect("login").connect("record", move |e| {
        h.lock().map_err(|_| "poisoned")?.push(e.metadata.id);
        Ok(())
    });
    let mut options = ConsumerOptions::new(&stream, "g");
    options.poll_timeout = Duration::from_millis(100);
    options.limit = Some(2 + poisons.len() as u64);
    let consumer = EventBusConsumer::new(t.clone(), registry, options);
    let stats = tokio::time::timeout(
        Duration::from_secs(30),
        consumer.consume(tokio_util::sync::CancellationToken::new()),
    )
    .await
    .expect("the consumer handles the 7 entries within 30 s")
    .expect("the consumer keeps running");
    assert_eq!((stats.processed, stats.dead_lettered), (2, 5), "{stats:?}");
    assert_eq!(*handled.lock().expect("handled"), vec![good1[0], good2[0]]);
    assert_eq!(pending_count(&stream, "g"), 0, "every entry was acknowledged");

    let letters: Vec<XEntry> = redis_cmd(
        &url,
        redis::cmd("XRANGE").arg(format!("{stream}-dlq")).arg("-").arg("+"),
    );
    let reasons: Vec<String> = letters
        .iter()
        .map(|(_, fields)| {
            fields
                .iter()
                .find(|(k, _)| k.as_slice() == DLQ_REASON.as_bytes())
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        })
        .collect();
    let want: Vec<&str> = poisons.iter().map(|(_, r)| *r).collect();
    assert_eq!(reasons, want, "each poison is dead-lettered, in order, with its reason");
}
