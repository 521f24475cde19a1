//! Outbox benchmark: relay throughput from the outbox to Redis against
//! publishing straight to Redis with the core's producer, in the same run,
//! and the added cost of an enqueue inside a transaction (the service's
//! row alone against row + enqueue). Prints one JSON line.
//!
//! ```text
//! cargo run --release -p event-bus-outbox --example outbox_bench -- \
//!     [--database-url postgres://postgres@127.0.0.1:5432/test | mysql://root@127.0.0.1:3306/test] \
//!     [--redis-url redis://127.0.0.1:6379/0] [--events 10000] [--transactions 2000] [--batch-size 100]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use event_bus_outbox::{Outbox, OutboxSettings, Relay};
use event_bus_redis::RedisBackend;
use futures::stream::{self, StreamExt};
use openedx_events::bus::{BackendFactory, EventBusProducer, Transport};
use openedx_events::config::Settings;
use openedx_events::event::EventType;
use openedx_events::metadata::EventsMetadata;
use openedx_events::signal::Registry;
use openedx_events::value::Record;
use sqlx::{AssertSqlSafe, MySqlPool, PgPool};

type Error = Box<dyn std::error::Error>;

const EVENT: &str = "org.openedx.learning.auth.session.login.completed.v1";

struct Args {
    database_url: String,
    redis_url: String,
    events: usize,
    transactions: usize,
    batch_size: usize,
}

fn args() -> Result<Args, Error> {
    let mut a = Args {
        database_url: "postgres://postgres@127.0.0.1:5432/test".into(),
        redis_url: "redis://127.0.0.1:6379/0".into(),
        events: 10_000,
        transactions: 2_000,
        batch_size: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--database-url" => a.database_url = value,
            "--redis-url" => a.redis_url = value,
            "--events" => a.events = value.parse()?,
            "--transactions" => a.transactions = value.parse()?,
            "--batch-size" => a.batch_size = value.parse()?,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(a)
}

fn login(t: &EventType, n: usize) -> Result<Record, Error> {
    Ok(
        t.data_from_json(&serde_json::json!({"user": {"id": n % 1000, "is_active": true,
        "pii": {"username": format!("user{n}"), "email": "u@example.org", "name": "Bench"}}}))?,
    )
}

/// The service's row alone, or the row and an enqueue, in one transaction
/// per call; returns the mean time per transaction.
macro_rules! timed_transactions {
    ($pool:expr, $outbox:expr, $t:expr, $app:expr, $n:expr, $enqueue:expr, $offset:expr) => {{
        let start = Instant::now();
        for i in 0..$n {
            let mut tx = $pool.begin().await?;
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {} (id, name) VALUES ({}, 'row')",
                $app,
                i + $offset
            )))
            .execute(&mut *tx)
            .await?;
            if $enqueue {
                let data = login($t, i)?;
                $outbox
                    .enqueue_data(
                        &mut tx,
                        $t,
                        "bench",
                        Some("user.id"),
                        &data,
                        &EventsMetadata::new($t.name(), 0),
                    )
                    .await?;
            }
            tx.commit().await?;
        }
        start.elapsed() / $n as u32
    }};
}

enum Db {
    Pg(PgPool),
    My(MySqlPool),
}

impl Db {
    async fn exec(&self, sql: String) -> Result<(), Error> {
        match self {
            Db::Pg(p) => sqlx::query(AssertSqlSafe(sql)).execute(p).await.map(|_| ())?,
            Db::My(p) => sqlx::query(AssertSqlSafe(sql)).execute(p).await.map(|_| ())?,
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let a = args()?;
    let settings = OutboxSettings::new(&a.database_url)?;
    let suffix = format!("{:08x}", rand::random::<u32>());
    let table = format!("outbox_bench_{suffix}");
    let app = format!("{table}_app");
    let prefix = format!("bench-{suffix}");
    let outbox = Outbox::new(&table, Some(prefix.clone()))?;
    let db = if a.database_url.starts_with("postgres") {
        let p = PgPool::connect(&a.database_url).await?;
        outbox.migrate(&p).await?;
        Db::Pg(p)
    } else {
        let p = MySqlPool::connect(&a.database_url).await?;
        outbox.migrate(&p).await?;
        Db::My(p)
    };
    db.exec(format!(
        "CREATE TABLE {app} (id BIGINT PRIMARY KEY, name VARCHAR(100) NOT NULL)"
    ))
    .await?;
    let t = openedx_events::catalog::get(EVENT).ok_or("event type")?;
    let result = run(&a, &db, &outbox, t, &app, settings, &table, &prefix).await;
    for name in [app.clone(), format!("{table}_partitions"), table.clone()] {
        db.exec(format!("DROP TABLE IF EXISTS {name}")).await?;
    }
    println!("{}", result?);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn run(
    a: &Args,
    db: &Db,
    outbox: &Outbox,
    t: &Arc<EventType>,
    app: &str,
    mut settings: OutboxSettings,
    table: &str,
    prefix: &str,
) -> Result<serde_json::Value, Error> {
    let n = a.transactions;
    // 1. The cost of an enqueue in a transaction (interleaved halves, so a
    //    drift of the machine hits both).
    let (mut alone, mut with) = (Duration::ZERO, Duration::ZERO);
    for round in 0..2 {
        let off = round * 2 * n;
        match db {
            Db::Pg(p) => {
                alone += timed_transactions!(p, outbox, t, app, n / 2, false, off);
                with += timed_transactions!(p, outbox, t, app, n / 2, true, off + n);
            }
            Db::My(p) => {
                alone += timed_transactions!(p, outbox, t, app, n / 2, false, off);
                with += timed_transactions!(p, outbox, t, app, n / 2, true, off + n);
            }
        }
    }
    let (alone, with) = (alone / 2, with / 2);
    db.exec(format!("DELETE FROM {table}")).await?;

    // 2. The outbox filled with `events` rows (in transactions of 100).
    for chunk in (0..a.events).collect::<Vec<_>>().chunks(100) {
        macro_rules! fill {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await?;
                for &i in chunk {
                    let data = login(t, i)?;
                    outbox
                        .enqueue_data(
                            &mut tx,
                            t,
                            "bench",
                            Some("user.id"),
                            &data,
                            &EventsMetadata::new(t.name(), 0),
                        )
                        .await?;
                }
                tx.commit().await?;
            }};
        }
        match db {
            Db::Pg(p) => fill!(p),
            Db::My(p) => fill!(p),
        }
    }

    let mut bus = Settings::new();
    bus.set("EVENT_BUS_REDIS_CONNECTION_URL", a.redis_url.clone());
    bus.set("EVENT_BUS_REDIS_STREAM_MAX_LEN", 1_000_000);
    let transport: Arc<dyn Transport> = RedisBackend.create(&bus).await?;

    // 3. The relay drains it.
    settings.table = table.to_string();
    settings.batch_size = a.batch_size;
    let relay = Relay::connect(settings, Arc::clone(&transport), Registry::global()).await?;
    let start = Instant::now();
    let mut sent = 0;
    loop {
        let r = relay.relay_once().await?;
        sent += r.sent;
        if r.pending_partitions == 0 {
            break;
        }
    }
    let relay_time = start.elapsed();

    // 4. The same events straight to Redis with the producer: one at a
    //    time (as a request handler would), and 64 in flight.
    let producer = EventBusProducer::new(Arc::clone(&transport), Some(prefix.to_string()));
    let data: Vec<Record> = (0..a.events).map(|i| login(t, i)).collect::<Result<_, _>>()?;
    let start = Instant::now();
    for d in &data {
        producer
            .send(t, "direct", Some("user.id"), d, &EventsMetadata::new(t.name(), 0))
            .await?;
    }
    let sequential = start.elapsed();
    let start = Instant::now();
    let failures = stream::iter(&data)
        .map(|d| {
            let producer = producer.clone();
            async move {
                producer
                    .send(t, "direct", Some("user.id"), d, &EventsMetadata::new(t.name(), 0))
                    .await
                    .is_err()
            }
        })
        .buffer_unordered(64)
        .filter(|failed| futures::future::ready(*failed))
        .count()
        .await;
    let concurrent = start.elapsed();
    let mut conn = redis::Client::open(a.redis_url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}-bench"))
        .arg(format!("{prefix}-direct"))
        .query_async(&mut conn)
        .await?;
    let eps = |d: Duration| (a.events as f64 / d.as_secs_f64()).round();
    let us = |d: Duration| (d.as_secs_f64() * 1e7).round() / 10.0;
    Ok(serde_json::json!({
        "bench": "outbox",
        "database": if matches!(db, Db::Pg(_)) { "postgres" } else { "mysql" },
        "events": a.events,
        "batch_size": a.batch_size,
        "relayed": sent,
        "relay_events_per_sec": eps(relay_time),
        "direct_sequential_events_per_sec": eps(sequential),
        "direct_concurrent_events_per_sec": eps(concurrent),
        "direct_failures": failures,
        "transactions": n,
        "txn_row_us": us(alone),
        "txn_row_and_enqueue_us": us(with),
        // Signed: within the noise of the commit's fsync it can be below 0.
        "enqueue_added_us": ((with.as_secs_f64() - alone.as_secs_f64()) * 1e7).round() / 10.0,
    }))
}
