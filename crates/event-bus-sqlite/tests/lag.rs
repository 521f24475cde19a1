//! `Transport::lag`: the messages a group has not acknowledged, and those
//! its members hold.

mod common;

use common::{hold, open, publish_numbers, request, take, PATIENCE};
use openedx_events::bus::transport::{GroupLag, Transport};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_counts_what_the_group_has_not_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = open(&dir.path().join("bus.db"));
    assert!(t.lag("t", None).await.expect("lag").is_empty(), "no topic, no groups");
    publish_numbers(&t, "t", 0..7).await;

    let mut sub = t.subscribe(&request("t", "g")).await.expect("subscribe");
    assert_eq!(take(sub.as_mut(), 3, PATIENCE).await.len(), 3);
    let row = |lag, pending| GroupLag {
        topic: "t".into(),
        group: "g".into(),
        partition: "0".into(),
        lag,
        pending: Some(pending),
    };
    assert_eq!(t.lag("t", Some("g")).await.expect("lag"), vec![row(4, 0)]);

    // One more received, not acknowledged: still to handle, and held.
    assert_eq!(hold(sub.as_mut(), 1, PATIENCE).await.len(), 1);
    assert_eq!(t.lag("t", Some("g")).await.expect("lag"), vec![row(4, 1)]);
    assert!(t.lag("t", Some("no-such-group")).await.expect("lag").is_empty());

    // Every group of the topic; a group that joined and read nothing has
    // the whole topic to handle.
    let mut other = t.subscribe(&request("t", "h")).await.expect("subscribe");
    let all = t.lag("t", None).await.expect("lag");
    assert_eq!(
        all,
        vec![
            row(4, 1),
            GroupLag {
                group: "h".into(),
                ..row(7, 0)
            }
        ]
    );

    // Released by close: waiting for redelivery, still to handle.
    sub.close().await.expect("close");
    assert_eq!(t.lag("t", Some("g")).await.expect("lag"), vec![row(4, 0)]);
    other.close().await.expect("close");
}
