//! The outbox against the machine's PostgreSQL and MariaDB: transactions,
//! the relay, failures, purging.
#![cfg(all(feature = "postgres", feature = "mysql"))]

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::{Kind, Recorder, TestDb};
use event_bus_outbox::Relay;
use openedx_events::bus::{memory::MemoryBroker, EventBusProducer, Transport};
use openedx_events::metadata::EventsMetadata;
use openedx_events::signal::Registry;
use tokio_util::sync::CancellationToken;

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Kind::Postgres).await })*
        }
        mod mysql {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Kind::MySql).await })*
        }
    };
}

on_both!(
    committed_events_are_relayed_and_rolled_back_ones_never,
    the_relayed_message_is_what_the_producer_prepares,
    a_broker_that_is_down_loses_nothing_and_marks_nothing,
    sent_rows_are_purged_after_the_retention,
);

async fn relay(db: &TestDb, transport: Arc<dyn Transport>) -> Relay {
    Relay::connect(db.settings(), transport, Registry::global())
        .await
        .expect("relay")
}

/// Rounds until nothing is pending.
async fn drain(relay: &Relay) -> usize {
    let mut sent = 0;
    for _ in 0..1000 {
        let r = relay.relay_once().await.expect("round");
        sent += r.sent;
        if r.pending_partitions == 0 {
            return sent;
        }
    }
    panic!("the outbox did not drain");
}

async fn committed_events_are_relayed_and_rolled_back_ones_never(kind: Kind) {
    let db = TestDb::new(kind).await;
    let (kept, _) = db.write(1, 7, 0, true).await;
    let (dropped, _) = db.write(2, 7, 1, false).await;
    let (kept2, _) = db.write(3, 8, 2, true).await;
    assert_eq!(
        db.app_rows().await,
        2,
        "the service's own rows follow their transactions"
    );
    assert_eq!(db.rows().await, 2, "a rolled-back transaction leaves no outbox row");
    let partitions = db
        .scalar(&format!("SELECT COUNT(*) FROM {}_partitions", db.table))
        .await;
    assert_eq!(partitions, i64::from(event_bus_outbox::PARTITIONS));
    let recorder = Recorder::new();
    let r = relay(&db, recorder.clone()).await;
    assert_eq!(drain(&r).await, 2);
    let ids = recorder.ids();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&kept) && ids.contains(&kept2));
    assert!(!ids.contains(&dropped));
    assert_eq!(db.pending().await, 0);
    // A later round sends nothing again.
    assert_eq!(r.relay_once().await.unwrap().sent, 0);
    assert_eq!(recorder.len(), 2);
    db.drop().await;
}

async fn the_relayed_message_is_what_the_producer_prepares(kind: Kind) {
    let db = TestDb::new(kind).await;
    let t = common::event_type();
    let data = common::login(42, 0);
    let mut metadata = EventsMetadata::new(t.name(), 5);
    metadata.sourcelib = openedx_events::metadata::SourceLib(vec![9, 1]);
    metadata.source = "openedx/lms/web".into();
    let prefix = db.table.replace('_', "-");
    let producer = EventBusProducer::new(Arc::new(MemoryBroker::new().transport()), Some(prefix));
    for key_field in [Some("user.id"), Some("user.pii.username"), Some("user.is_active"), None] {
        let expected = producer.prepare(t, "login", key_field, &data, &metadata).unwrap();
        match &db.pool {
            common::Pool::Postgres(p) => {
                let mut tx = p.begin().await.unwrap();
                db.outbox
                    .enqueue_data(&mut tx, t, "login", key_field, &data, &metadata)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
            common::Pool::MySql(p) => {
                let mut tx = p.begin().await.unwrap();
                db.outbox
                    .enqueue_data(&mut tx, t, "login", key_field, &data, &metadata)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
        }
        let recorder = Recorder::new();
        drain(&relay(&db, recorder.clone()).await).await;
        let seen = recorder.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "{key_field:?}");
        let got = &seen[0];
        assert_eq!(got.topic, expected.topic);
        assert_eq!(got.topic, db.topic);
        assert_eq!(got.metadata, expected.metadata, "metadata rebuilt exactly");
        assert_eq!(got.key, expected.key, "key rebuilt exactly");
        assert_eq!(got.body, expected.body);
        assert_eq!(got.event_type.name(), expected.event_type.name());
    }
    // A metadata of another type is refused, naming both.
    let other = EventsMetadata::new("org.openedx.other.v1", 0);
    if let common::Pool::Postgres(p) = &db.pool {
        let mut tx = p.begin().await.unwrap();
        let e = db
            .outbox
            .enqueue_data(&mut tx, t, "login", None, &data, &other)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("org.openedx.other.v1"), "{e}");
    }
    db.drop().await;
}

async fn a_broker_that_is_down_loses_nothing_and_marks_nothing(kind: Kind) {
    let db = TestDb::new(kind).await;
    for i in 0..20 {
        db.write(i, i % 3, i as usize, true).await;
    }
    let recorder = Recorder::new();
    recorder.down.store(true, Ordering::SeqCst);
    let r = relay(&db, recorder.clone()).await;
    let round = r.relay_once().await.unwrap();
    assert_eq!(round.sent, 0);
    assert!(round.failed >= 1);
    assert_eq!(db.pending().await, 20, "nothing marked sent while the broker is down");
    let tried = db
        .scalar(&format!(
            "SELECT COUNT(*) FROM {} WHERE attempts > 0 AND last_error LIKE '%broker is down%'",
            db.table
        ))
        .await;
    assert_eq!(
        tried as usize, round.failed,
        "one failure per key, later rows not tried"
    );

    // The running relay backs off, then delivers everything when the broker is back.
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { r.run(stop).await }
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    let attempts_while_down = recorder.attempts.load(Ordering::SeqCst);
    assert!(
        attempts_while_down < 3 * 12,
        "the relay backs off ({attempts_while_down} attempts in 0.6 s)"
    );
    assert_eq!(recorder.len(), 0);
    recorder.down.store(false, Ordering::SeqCst);
    for _ in 0..100 {
        if db.pending().await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    let totals = task.await.unwrap().unwrap();
    assert_eq!(db.pending().await, 0);
    assert_eq!(totals.sent, 20);
    let seq: Vec<_> = recorder.seen.lock().unwrap().iter().map(common::key_and_seq).collect();
    assert_eq!(common::check_order(&seq), (20, 0));
    db.drop().await;
}

async fn sent_rows_are_purged_after_the_retention(kind: Kind) {
    let db = TestDb::new(kind).await;
    for i in 0..5 {
        db.write(i, 1, i as usize, true).await;
    }
    let mut settings = db.settings();
    settings.retention = Duration::from_secs(3600);
    let r = Relay::connect(settings.clone(), Recorder::new(), Registry::global())
        .await
        .unwrap();
    drain(&r).await;
    assert_eq!(r.purge().await.unwrap(), 0, "kept for the retention");
    assert_eq!(db.rows().await, 5);
    settings.retention = Duration::ZERO;
    let r = Relay::connect(settings, Recorder::new(), Registry::global())
        .await
        .unwrap();
    db.write(10, 1, 10, true).await;
    assert_eq!(r.purge().await.unwrap(), 5, "sent rows go, the pending one stays");
    assert_eq!(db.rows().await, 1);
    assert_eq!(db.pending().await, 1);
    db.drop().await;
}
