//! Consumer groups against the Redis of the machine (127.0.0.1:6379): start
//! positions and the Python quirks we do not copy, pending-list recovery
//! (with trimmed entries), claiming and the refresh of held entries, a
//! deleted stream, and entries read ahead when a consumer stops.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::backend::{ack_all, id_of, pending_count, publish_n, receive_n, request, Streams};
use common::{connect, redis_cmd, redis_url};
use openedx_events::bus::transport::{SeekTarget, StartPosition, TransportErrorKind};
use openedx_events::bus::Transport;
use serde_json::json;
use uuid::Uuid;

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
