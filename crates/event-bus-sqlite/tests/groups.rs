//! Consumer groups: independent groups and members sharing one, where a
//! new group starts, and moving a group's position with seek.

mod common;

use std::time::Duration;

use common::*;
use openedx_events::bus::transport::{SeekTarget, StartPosition, Transport, TransportErrorKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_independent_and_members_share() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let t1 = open(&path);
    let t2 = open(&path);
    let mut a = t1.subscribe(&request("t", "analytics")).await.unwrap();
    let mut b = t2.subscribe(&request("t", "search")).await.unwrap();
    publish_numbers(&t1, "t", 0..30).await;
    assert_eq!(
        numbers(&take(a.as_mut(), 30, PATIENCE).await),
        (0..30).collect::<Vec<_>>()
    );
    assert_eq!(
        numbers(&take(b.as_mut(), 30, PATIENCE).await),
        (0..30).collect::<Vec<_>>()
    );

    // Two members of one group: nothing given to both while held.
    let mut m1 = t1.subscribe(&request("t", "shared")).await.unwrap();
    let mut m2 = t2.subscribe(&request("t", "shared")).await.unwrap();
    let first = hold(m1.as_mut(), 10, PATIENCE).await;
    let second = hold(m2.as_mut(), 30, Duration::from_millis(500)).await;
    assert_eq!(first.len(), 10);
    assert_eq!(second.len(), 20);
    let (s1, s2) = (number_set(&first), number_set(&second));
    assert!(s1.is_disjoint(&s2));
    assert_eq!(s1.union(&s2).count(), 30);
    for s in [&mut a, &mut b, &mut m1, &mut m2] {
        s.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_group_at_latest_and_replay_from_start() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(&dir.path().join("bus.db"));
    publish_numbers(&t, "t", 0..5).await;
    let mut latest = request("t", "late");
    latest.start = StartPosition::Latest;
    let mut late = t.subscribe(&latest).await.unwrap();
    let mut early = t.subscribe(&request("t", "early")).await.unwrap();
    publish_numbers(&t, "t", 5..8).await;
    assert_eq!(numbers(&take(late.as_mut(), 3, PATIENCE).await), vec![5, 6, 7]);
    assert_eq!(
        numbers(&take(early.as_mut(), 8, PATIENCE).await),
        (0..8).collect::<Vec<_>>()
    );
    late.close().await.unwrap();
    // The start only applies to a new group: rejoining keeps the position.
    let mut again = t.subscribe(&request("t", "late")).await.unwrap();
    assert!(again.receive(10, Duration::from_millis(100)).await.unwrap().is_empty());
    again.close().await.unwrap();
    early.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_to_a_time_a_position_the_start_and_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let t = open(&dir.path().join("bus.db"));
    let positions = publish_numbers(&t, "t", 0..3).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let middle = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(30)).await;
    publish_numbers(&t, "t", 3..6).await;
    let mut sub = t.subscribe(&request("t", "g")).await.unwrap();
    assert_eq!(
        numbers(&take(sub.as_mut(), 6, PATIENCE).await),
        (0..6).collect::<Vec<_>>()
    );

    sub.seek(&SeekTarget::Time(middle)).await.unwrap();
    assert_eq!(numbers(&take(sub.as_mut(), 3, PATIENCE).await), vec![3, 4, 5]);
    sub.seek(&SeekTarget::Earliest).await.unwrap();
    assert_eq!(
        numbers(&take(sub.as_mut(), 6, PATIENCE).await),
        (0..6).collect::<Vec<_>>()
    );
    sub.seek(&SeekTarget::After(positions[1].clone())).await.unwrap();
    assert_eq!(numbers(&take(sub.as_mut(), 4, PATIENCE).await), vec![2, 3, 4, 5]);
    sub.seek(&SeekTarget::Time(chrono::Utc::now() + chrono::Duration::hours(1)))
        .await
        .unwrap();
    assert!(sub.receive(10, Duration::from_millis(50)).await.unwrap().is_empty());
    sub.seek(&SeekTarget::Earliest).await.unwrap();
    sub.seek(&SeekTarget::Latest).await.unwrap();
    assert!(sub.receive(10, Duration::from_millis(50)).await.unwrap().is_empty());
    let e = sub.seek(&SeekTarget::After("nope".into())).await.unwrap_err();
    assert_eq!(e.kind, TransportErrorKind::Rejected);
    // A nacked message waiting for redelivery is not lost by a seek forward.
    publish_numbers(&t, "t", 6..8).await;
    let d = sub.receive(1, PATIENCE).await.unwrap();
    sub.nack(d[0].tag, Duration::ZERO).await.unwrap();
    sub.seek(&SeekTarget::Latest).await.unwrap();
    assert_eq!(numbers(&take(sub.as_mut(), 1, PATIENCE).await), vec![6]);
    sub.close().await.unwrap();
}
