//! The database file: state that survives reopening it, files it cannot
//! use, and the upgrade of an older schema.

mod common;

use std::time::Duration;

use common::*;
use event_bus_sqlite::SqliteTransport;
use openedx_events::bus::transport::Transport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    {
        let t = open(&path);
        publish_numbers(&t, "t", 0..4).await;
        let mut sub = t.subscribe(&request("t", "g")).await.unwrap();
        let got = hold(sub.as_mut(), 2, PATIENCE).await;
        sub.ack(got[0].tag).await.unwrap();
        sub.ack(got[1].tag).await.unwrap();
        sub.flush_acks().await.unwrap();
        sub.close().await.unwrap();
    }
    let t = open(&path);
    let mut sub = t.subscribe(&request("t", "g")).await.unwrap();
    assert_eq!(numbers(&take(sub.as_mut(), 2, PATIENCE).await), vec![2, 3]);
    assert!(sub.receive(10, Duration::from_millis(50)).await.unwrap().is_empty());
    sub.close().await.unwrap();
    assert_eq!(t.publish_raw(&message("t", 9)).await.unwrap(), "5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_refuses_what_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![42u8; 8192]).unwrap();
    let e = SqliteTransport::open(&junk, options()).unwrap_err();
    assert!(e.is_fatal(), "{e}");
    assert!(e.to_string().contains("junk.db"), "{e}");
    let newer = dir.path().join("newer.db");
    drop(open(&newer));
    sql(&newer).pragma_update(None, "user_version", 99).unwrap();
    let e = SqliteTransport::open(&newer, options()).unwrap_err();
    assert!(e.to_string().contains("schema version 99"), "{e}");
}

/// A file written by schema version 1 (no `dead_letter_topics`) is upgraded
/// in place when opened, and keeps its messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_file_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let t = open(&path);
    publish_numbers(&t, "t", 0..2).await;
    drop(t);
    let conn = sql(&path);
    conn.execute_batch("DROP TABLE dead_letter_topics").unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    drop(conn);
    let t = open(&path);
    let mut m = message("t-dlq", 7);
    m.headers
        .push((openedx_events::bus::dead_letter::DLQ_REASON.into(), b"x".to_vec()));
    t.publish_raw(&m).await.unwrap();
    assert_eq!(numbers(&t.browse("t", None, 10).await.unwrap()), vec![0, 1]);
    assert_eq!(numbers(&t.browse("t-dlq", None, 10).await.unwrap()), vec![7]);
    let version: i64 = sql(&path).query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 2);
}
