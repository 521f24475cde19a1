//! `Transport::lag` against the Redis of the machine (127.0.0.1:6379):
//! `XINFO GROUPS` lag plus pending, per group.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::backend::{ack_all, publish_n, receive_n, request, Streams};
use common::{connect, redis_url};
use openedx_events::bus::transport::GroupLag;
use openedx_events::bus::Transport;
use serde_json::json;

#[tokio::test]
async fn lag_counts_what_the_group_has_not_acknowledged() {
    let t: Arc<dyn Transport> = Arc::new(connect(&redis_url()).await);
    let (_s, stream) = Streams::new("lag");
    assert!(
        t.lag(&stream, None).await.expect("lag").is_empty(),
        "no stream, no groups"
    );

    // 3 first, received with room for more: the subscription then knows the
    // stream has no backlog and does not read ahead with its acks (which
    // would leave the next entries pending for this consumer).
    publish_n(&t, &stream, 3).await;
    let mut sub = t
        .subscribe(&request(&stream, "g", "c", json!({})))
        .await
        .expect("subscribe");
    let got = receive_n(sub.as_mut(), 3, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 3);
    ack_all(sub.as_mut(), &got).await;
    publish_n(&t, &stream, 4).await;

    let row = |lag, pending| GroupLag {
        topic: stream.clone(),
        group: "g".into(),
        partition: "0".into(),
        lag,
        pending: Some(pending),
    };
    assert_eq!(t.lag(&stream, Some("g")).await.expect("lag"), vec![row(4, 0)]);

    // One more received, not acknowledged: still to handle, and pending.
    let held = sub.receive(1, Duration::from_secs(5)).await.expect("receive");
    assert_eq!(held.len(), 1);
    assert_eq!(t.lag(&stream, Some("g")).await.expect("lag"), vec![row(4, 1)]);
    assert_eq!(t.lag(&stream, None).await.expect("lag"), vec![row(4, 1)]);
    assert!(t.lag(&stream, Some("no-such-group")).await.expect("lag").is_empty());

    // A group Redis cannot compute the lag of (moved with SETID to an id
    // it has not read up to): the entries after its last-delivered-id are
    // counted instead.
    let ids: Vec<redis::Value> = common::redis_cmd(&redis_url(), redis::cmd("XRANGE").arg(&stream).arg("-").arg("+"));
    let third = match &ids[2] {
        redis::Value::Array(parts) => match &parts[0] {
            redis::Value::BulkString(b) => String::from_utf8(b.clone()).expect("id"),
            other => panic!("unexpected id {other:?}"),
        },
        other => panic!("unexpected entry {other:?}"),
    };
    let _: redis::Value = common::redis_cmd(
        &redis_url(),
        redis::cmd("XGROUP").arg("CREATE").arg(&stream).arg("moved").arg(&third),
    );
    let moved = t.lag(&stream, Some("moved")).await.expect("lag");
    assert_eq!(moved.len(), 1);
    assert_eq!((moved[0].lag, moved[0].pending), (4, Some(0)));
    sub.close().await.expect("close");
}
