//! The backend's own behaviour on a real server: deduplication by event id,
//! authentication, browse and seek positions, ack wait and keep-alive,
//! topic names NATS forbids, size limits and header fidelity.

mod support;

use std::sync::Arc;
use std::time::Duration;

use event_bus_conformance::{drain, id_of, ids, login_data, publish_logins, publish_with_retry, receive_ids, LOGIN};
use event_bus_nats::NatsBackend;
use openedx_events::bus::transport::{
    RawMessage, SeekTarget, StartPosition, SubscribeRequest, Subscription, TransportErrorKind,
};
use openedx_events::bus::{BackendFactory, EventBusProducer, Transport};
use openedx_events::metadata::EventsMetadata;

fn topic(case: &str) -> String {
    format!("nats-{case}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

async fn shared() -> Arc<dyn Transport> {
    support::connect(&support::settings(&support::shared_url(), &[])).await
}

async fn join(t: &Arc<dyn Transport>, topic: &str, group: &str, extras: serde_json::Value) -> Box<dyn Subscription> {
    t.subscribe(&SubscribeRequest {
        topic: topic.into(),
        group: group.into(),
        consumer_name: "m".into(),
        start: StartPosition::Earliest,
        extras: extras.as_object().cloned().unwrap_or_default(),
    })
    .await
    .unwrap_or_else(|e| panic!("subscribe: {e}"))
}

#[tokio::test]
async fn the_server_deduplicates_an_event_published_twice() {
    let t = shared().await;
    let topic = topic("dedup");
    let producer = EventBusProducer::new(t.clone(), None);
    let m = EventsMetadata::new(LOGIN, 0);
    let data = login_data(1, "k");
    publish_with_retry(&producer, &topic, &data, &m).await;
    publish_with_retry(&producer, &topic, &data, &m).await;
    let all = t.browse(&topic, None, 10).await.expect("browse");
    assert_eq!(all.len(), 1, "one copy stored");
    assert_eq!(id_of(&all[0]), m.id);
}

#[tokio::test]
async fn browse_and_seek_use_stream_sequences() {
    let t = shared().await;
    let topic = topic("positions");
    assert!(t.browse(&topic, None, 10).await.expect("no stream yet").is_empty());
    let published = publish_logins(&t, &topic, 0, 6, |i| i.to_string()).await;
    let all = t.browse(&topic, None, 100).await.expect("browse");
    let positions: Vec<&str> = all.iter().map(|d| d.position.as_str()).collect();
    assert_eq!(positions, ["1", "2", "3", "4", "5", "6"]);
    assert_eq!(t.browse(&topic, Some("4"), 100).await.expect("browse").len(), 2);
    assert_eq!(t.browse(&topic, Some("2"), 1).await.expect("browse")[0].position, "3");
    assert!(t.browse(&topic, Some("6"), 10).await.expect("browse").is_empty());
    assert_eq!(
        t.browse(&topic, Some("x"), 10).await.unwrap_err().kind,
        TransportErrorKind::Rejected
    );

    let mut sub = join(&t, &topic, "g", serde_json::json!({})).await;
    receive_ids(sub.as_mut(), &ids(&published), Duration::from_secs(10)).await;
    sub.seek(&SeekTarget::After("4".into())).await.expect("seek after");
    let again = receive_ids(sub.as_mut(), &ids(&published[4..]), Duration::from_secs(10)).await;
    assert!(again.iter().all(|d| d.position.parse::<u64>().unwrap() > 4));
    sub.seek(&SeekTarget::Earliest).await.expect("seek earliest");
    receive_ids(sub.as_mut(), &ids(&published), Duration::from_secs(10)).await;
    sub.seek(&SeekTarget::Latest).await.expect("seek latest");
    assert!(drain(sub.as_mut(), Duration::from_millis(300)).await.is_empty());
    let later = publish_logins(&t, &topic, 6, 1, |i| i.to_string()).await;
    receive_ids(sub.as_mut(), &ids(&later), Duration::from_secs(10)).await;
    sub.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_holds_a_message_past_the_ack_wait_and_silence_does_not() {
    let t = shared().await;
    let topic = topic("ack_wait");
    let extras = serde_json::json!({"ack_wait_seconds": 1.0});
    let mut a = join(&t, &topic, "g", extras.clone()).await;
    let mut b = join(&t, &topic, "g", extras).await;
    let published = publish_logins(&t, &topic, 0, 1, |_| "k".into()).await;
    let first = loop {
        if let Some(d) = a.receive(1, Duration::from_millis(200)).await.expect("receive").pop() {
            break d;
        }
    };
    assert_eq!(first.attempt, 1);
    for _ in 0..10 {
        a.keep_alive().await.expect("keep alive");
        assert!(b
            .receive(1, Duration::from_millis(250))
            .await
            .expect("receive")
            .is_empty());
    }
    // Silence: the server gives it to the other member after the ack wait.
    let again = receive_ids(b.as_mut(), &ids(&published), Duration::from_secs(5)).await;
    assert!(
        again[0].attempt >= 2,
        "the server counts deliveries: {}",
        again[0].attempt
    );
    a.ack(first.tag).await.expect("a late ack is harmless");
    a.close().await.expect("close");
    b.close().await.expect("close");
}

#[tokio::test]
async fn topics_with_characters_nats_forbids_are_kept_apart() {
    let t = shared().await;
    let base = topic("names");
    let dotted = format!("{base}.with dots*and>more");
    let plain = format!("{base}_with_dots_and_more");
    let mut s1 = join(&t, &dotted, "g.1", serde_json::json!({})).await;
    let mut s2 = join(&t, &plain, "g.1", serde_json::json!({})).await;
    let p1 = publish_logins(&t, &dotted, 0, 3, |i| i.to_string()).await;
    let p2 = publish_logins(&t, &plain, 3, 3, |i| i.to_string()).await;
    let g1 = receive_ids(s1.as_mut(), &ids(&p1), Duration::from_secs(10)).await;
    let g2 = receive_ids(s2.as_mut(), &ids(&p2), Duration::from_secs(10)).await;
    assert!(g1.iter().all(|d| ids(&p1).contains(&id_of(d))));
    assert!(g2.iter().all(|d| ids(&p2).contains(&id_of(d))));
    assert_eq!(g1[0].raw.topic, dotted);
    s1.close().await.expect("close");
    s2.close().await.expect("close");
}

#[tokio::test]
async fn raw_messages_keep_awkward_headers_and_oversize_is_rejected() {
    let t = shared().await;
    let topic = topic("raw");
    let raw = RawMessage {
        topic: topic.clone(),
        key: Some(vec![0xff, 0x01]),
        headers: vec![
            ("dlq_error".into(), b"first line\nsecond line\r\n".to_vec()),
            ("binary".into(), vec![0, 1, 2, 255]),
            ("Nats-Msg-Id".into(), b"foreign-id".to_vec()),
            ("padded".into(), b" x ".to_vec()),
        ],
        value: b"\x00value".to_vec(),
        timestamp: None,
    };
    t.publish_raw(&raw).await.expect("publish raw");
    t.publish_raw(&raw)
        .await
        .expect("a foreign Nats-Msg-Id does not deduplicate");
    let got = t.browse(&topic, None, 10).await.expect("browse");
    assert_eq!(got.len(), 2);
    let mut want = raw.headers.clone();
    want.sort();
    let mut back = got[0].raw.headers.clone();
    back.sort();
    assert_eq!(back, want);
    assert_eq!(
        (got[0].raw.key.clone(), got[0].raw.value.clone()),
        (raw.key.clone(), raw.value.clone())
    );
    assert!(got[0].raw.timestamp.is_some(), "the server's time");

    let bad = RawMessage {
        headers: vec![("bad:name".into(), b"x".to_vec())],
        ..raw.clone()
    };
    assert_eq!(
        t.publish_raw(&bad).await.unwrap_err().kind,
        TransportErrorKind::Rejected
    );
    let limit = t.capabilities().max_message_bytes;
    let huge = RawMessage {
        value: vec![b'x'; limit + 64 * 1024],
        ..raw
    };
    let e = t.publish_raw(&huge).await.unwrap_err();
    assert_eq!(e.kind, TransportErrorKind::Rejected, "{e}");
}

#[tokio::test]
async fn unknown_extras_are_configuration_errors() {
    let t = shared().await;
    let e = t
        .subscribe(&SubscribeRequest {
            topic: topic("extras"),
            group: "g".into(),
            consumer_name: "m".into(),
            start: StartPosition::Earliest,
            extras: serde_json::json!({"ack_wait": 3})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        })
        .await
        .err()
        .expect("refused");
    assert_eq!(e.kind, TransportErrorKind::Config);
    assert!(e.message.contains("\"ack_wait\""), "{e}");
}

async fn round_trip(settings: openedx_events::config::Settings) -> Result<(), String> {
    let t = NatsBackend.create(&settings).await.map_err(|e| e.to_string())?;
    let topic = topic("auth");
    let published = publish_logins(&t, &topic, 0, 1, |_| "k".into()).await;
    let got = t.browse(&topic, None, 10).await.map_err(|e| e.to_string())?;
    assert_eq!(id_of(&got[0]), published[0].metadata.id);
    Ok(())
}

#[tokio::test]
async fn user_password_and_token_authentication() {
    let server = support::OwnServer::start(&["--user", "app", "--pass", "hunter2"]);
    let url = server.url();
    round_trip(support::settings(
        &url,
        &[("EVENT_BUS_NATS_USER", "app"), ("EVENT_BUS_NATS_PASSWORD", "hunter2")],
    ))
    .await
    .expect("right password");
    let e = round_trip(support::settings(
        &url,
        &[("EVENT_BUS_NATS_USER", "app"), ("EVENT_BUS_NATS_PASSWORD", "wrong")],
    ))
    .await
    .unwrap_err();
    assert!(!e.contains("wrong"), "no secret in {e}");
    let e = round_trip(support::settings(&url, &[])).await.unwrap_err();
    assert!(e.to_lowercase().contains("author"), "{e}");
    drop(server);

    let server = support::OwnServer::start(&["--auth", "s3cret-token"]);
    round_trip(support::settings(
        &server.url(),
        &[("EVENT_BUS_NATS_TOKEN", "s3cret-token")],
    ))
    .await
    .expect("right token");
    let e = round_trip(support::settings(&server.url(), &[("EVENT_BUS_NATS_TOKEN", "nope")]))
        .await
        .unwrap_err();
    assert!(!e.contains("nope"), "{e}");
}
