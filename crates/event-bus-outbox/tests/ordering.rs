//! Order and sharing on the machine's PostgreSQL and MariaDB: transactions
//! that commit out of id order (the Watermill 311 trap), two relays at
//! once, a relay that must not overtake a key another relay holds.
#![cfg(all(feature = "postgres", feature = "mysql"))]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Kind, Recorder, TestDb};
use event_bus_outbox::Relay;
use openedx_events::signal::Registry;
use tokio_util::sync::CancellationToken;

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::Kind::Postgres).await })*
        }
        mod mysql {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::Kind::MySql).await })*
        }
    };
}

on_both!(
    a_row_committed_after_a_higher_id_was_sent_is_still_sent,
    many_transactions_committing_out_of_order_lose_nothing,
    two_relays_send_each_event_once_in_order_per_key,
    a_relay_does_not_overtake_a_key_another_relay_holds,
);

async fn relay(db: &TestDb, transport: Arc<Recorder>) -> Relay {
    Relay::connect(db.settings(), transport, Registry::global())
        .await
        .expect("relay")
}

async fn wait_drained(db: &TestDb, within: Duration) {
    let start = Instant::now();
    while db.pending().await > 0 {
        assert!(start.elapsed() < within, "{} rows still pending", db.pending().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_row_committed_after_a_higher_id_was_sent_is_still_sent(kind: Kind) {
    let db = TestDb::new(kind).await;
    let recorder = Recorder::new();
    let r = relay(&db, recorder.clone()).await;
    // T1 takes the lower id and stays open; T2 takes a higher id and commits.
    let mut t1 = db.begin().await;
    let (late, late_id) = db.enqueue_in(&mut t1, 5, 0).await;
    let mut t2 = db.begin().await;
    let (early, early_id) = db.enqueue_in(&mut t2, 6, 1).await;
    assert!(late_id < early_id, "ids {late_id} < {early_id}");
    t2.commit().await;
    let round = r.relay_once().await.unwrap();
    assert_eq!(round.sent, 1);
    assert_eq!(recorder.ids(), vec![early], "the higher id went first");
    // A relay remembering "last id sent" would now skip the lower id.
    t1.commit().await;
    let round = r.relay_once().await.unwrap();
    assert_eq!(round.sent, 1, "the lower id committed later is sent too");
    assert_eq!(recorder.ids(), vec![early, late]);
    assert_eq!(db.pending().await, 0);
    db.drop().await;
}

async fn many_transactions_committing_out_of_order_lose_nothing(kind: Kind) {
    let db = Arc::new(TestDb::new(kind).await);
    let recorder = Recorder::new();
    let r = relay(&db, recorder.clone()).await;
    let stop = CancellationToken::new();
    let relay_task = tokio::spawn({
        let stop = stop.clone();
        async move { r.run(stop).await }
    });
    // 8 writers; each transaction sleeps a random while between taking its
    // ids and committing, so commits come out of id order all the time.
    let mut writers = Vec::new();
    for w in 0..8i64 {
        let db = db.clone();
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..25usize {
                let mut tx = db.begin().await;
                let (id, _) = db.enqueue_in(&mut tx, w * 1000 + (i % 5) as i64, i).await;
                tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 15)).await;
                tx.commit().await;
                ids.push(id);
            }
            ids
        }));
    }
    let mut expected = HashSet::new();
    for w in writers {
        expected.extend(w.await.unwrap());
    }
    wait_drained(&db, Duration::from_secs(30)).await;
    stop.cancel();
    relay_task.await.unwrap().unwrap();
    let got = recorder.ids();
    assert_eq!(got.len(), 200, "each event once");
    assert_eq!(got.into_iter().collect::<HashSet<_>>(), expected, "every event kept");
    let seq: Vec<_> = recorder.seen.lock().unwrap().iter().map(common::key_and_seq).collect();
    assert_eq!(common::check_order(&seq), (200, 0));
    match Arc::try_unwrap(db) {
        Ok(db) => db.drop().await,
        Err(_) => panic!("db still shared"),
    }
}

async fn two_relays_send_each_event_once_in_order_per_key(kind: Kind) {
    let db = Arc::new(TestDb::new(kind).await);
    // 1500 events over 30 keys, committed in order (by 50), before and while
    // the relays run.
    let write = |db: Arc<TestDb>, from: usize, to: usize| async move {
        for (n, chunk) in (from..to).collect::<Vec<_>>().chunks(50).enumerate() {
            let events: Vec<(i64, usize)> = chunk.iter().map(|&s| ((s % 30) as i64, s)).collect();
            db.write_many((from * 10 + n) as i64, &events, true).await;
        }
    };
    write(db.clone(), 0, 1000).await;
    let log = Recorder::new();
    let (a, b) = (log.sharing(), log.sharing());
    // A little latency per publish, so the two relays' rounds overlap.
    a.set_delay(Some(Duration::from_micros(300)));
    b.set_delay(Some(Duration::from_micros(300)));
    let stop = CancellationToken::new();
    let mut relays = Vec::new();
    for t in [a.clone(), b.clone()] {
        let r = relay(&db, t).await;
        let stop = stop.clone();
        relays.push(tokio::spawn(async move { r.run(stop).await }));
    }
    write(db.clone(), 1000, 1500).await;
    wait_drained(&db, Duration::from_secs(60)).await;
    stop.cancel();
    let mut per_relay = Vec::new();
    for r in relays {
        per_relay.push(r.await.unwrap().unwrap().sent);
    }
    let seq: Vec<_> = log.seen.lock().unwrap().iter().map(common::key_and_seq).collect();
    assert_eq!(
        common::check_order(&seq),
        (1500, 0),
        "each event once, in order per key"
    );
    assert_eq!(per_relay.iter().sum::<u64>(), 1500);
    assert!(per_relay.iter().all(|&n| n > 0), "both relays did work: {per_relay:?}");
    eprintln!("{kind:?}: the relays sent {per_relay:?}");
    match Arc::try_unwrap(db) {
        Ok(db) => db.drop().await,
        Err(_) => panic!("db still shared"),
    }
}

async fn a_relay_does_not_overtake_a_key_another_relay_holds(kind: Kind) {
    let db = TestDb::new(kind).await;
    // One key: its rows are all in one partition.
    for s in 0..6 {
        db.write(s as i64, 77, s, true).await;
    }
    let log = Recorder::new();
    let slow = log.sharing();
    slow.set_delay(Some(Duration::from_millis(150)));
    let fast = log.sharing();
    let fast_relay = relay(&db, fast.clone()).await;
    let mut settings = db.settings();
    settings.batch_size = 3;
    let slow_relay = Relay::connect(settings, slow.clone(), Registry::global())
        .await
        .unwrap();
    // The slow relay claims the key's partition and sends 3 rows (450 ms).
    let holder = tokio::spawn(async move { slow_relay.relay_once().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Meanwhile the other relay finds the partition held: it sends nothing,
    // not the key's later rows either.
    for _ in 0..5 {
        let r = fast_relay.relay_once().await.unwrap();
        assert_eq!(r.sent, 0, "{r:?}");
        assert_eq!(r.claimed_partitions, 0, "{r:?}");
    }
    assert_eq!(fast.attempts.load(std::sync::atomic::Ordering::SeqCst), 0);
    let held = holder.await.unwrap();
    assert_eq!(held.sent, 3);
    // Now the rest goes, after the first three.
    let r = fast_relay.relay_once().await.unwrap();
    assert_eq!(r.sent, 3);
    let seq: Vec<_> = log.seen.lock().unwrap().iter().map(common::key_and_seq).collect();
    assert_eq!(seq.iter().map(|(_, s)| *s).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4, 5]);
    db.drop().await;
}
