//! The entries the Redis backend writes and reads, against the Redis of the
//! machine (127.0.0.1:6379): the exact fields of `XADD` and its trimming,
//! dead letters (never trimmed), raw messages and browsing, unusable and
//! poison entries.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::backend::{ack_all, pending_count, publish_n, receive_n, request, Streams, LOGIN};
use common::{connect, redis_cmd, redis_url, unique};
use event_bus_redis::{RedisConfig, RedisTransport};
use openedx_events::bus::transport::{OutgoingMessage, RawMessage};
use openedx_events::bus::Transport;
use openedx_events::catalog;
use openedx_events::metadata::{self, EventsMetadata};
use openedx_events::testing::shared_vectors_dir;
use serde_json::{json, Value as Json};
use uuid::Uuid;

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
