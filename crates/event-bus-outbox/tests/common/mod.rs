//! The machine's databases, a table per test, and a broker that records.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use event_bus_outbox::{Outbox, OutboxSettings};
use openedx_events::bus::transport::{
    Capabilities, OutgoingMessage, RawMessage, SubscribeRequest, Subscription, Transport, TransportError,
};
use openedx_events::event::EventType;
use openedx_events::metadata::EventsMetadata;
use openedx_events::value::Record;
use sqlx::{AssertSqlSafe, MySqlPool, PgPool};

/// The login event: keyed by `user.id`.
pub const EVENT: &str = "org.openedx.learning.auth.session.login.completed.v1";

pub fn event_type() -> &'static Arc<EventType> {
    openedx_events::catalog::get(EVENT).expect("catalog event")
}

/// Data of a login by user `key`, its sequence number in the name.
pub fn login(key: i64, seq: usize) -> Record {
    event_type()
        .data_from_json(&serde_json::json!({"user": {"id": key, "is_active": true,
            "pii": {"username": format!("user{key}"), "email": "u@example.org", "name": format!("seq-{seq}")}}}))
        .expect("login data")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    MySql,
}

pub fn url(kind: Kind) -> String {
    match kind {
        Kind::Postgres => std::env::var("OUTBOX_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
        Kind::MySql => {
            std::env::var("OUTBOX_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
        }
    }
}

pub enum Pool {
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// A fresh outbox table (and an application table `<table>_app`) in the
/// machine's database; `drop` removes them.
pub struct TestDb {
    pub kind: Kind,
    pub url: String,
    pub table: String,
    /// The full topic the logins go to (unique per test).
    pub topic: String,
    pub pool: Pool,
    pub outbox: Outbox,
}

fn suffix() -> String {
    format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

impl TestDb {
    pub async fn new(kind: Kind) -> TestDb {
        let url = url(kind);
        let table = format!("outbox_t_{}", suffix());
        let outbox = Outbox::new(&table, Some(table.replace('_', "-"))).expect("table name");
        let topic = format!("{}-login", table.replace('_', "-"));
        let pool = match kind {
            Kind::Postgres => Pool::Postgres(
                PgPool::connect(&url)
                    .await
                    .unwrap_or_else(|e| panic!("PostgreSQL is needed at {url} (set OUTBOX_TEST_POSTGRES_URL): {e}")),
            ),
            Kind::MySql => Pool::MySql(
                MySqlPool::connect(&url)
                    .await
                    .unwrap_or_else(|e| panic!("MySQL/MariaDB is needed at {url} (set OUTBOX_TEST_MYSQL_URL): {e}")),
            ),
        };
        let db = TestDb {
            kind,
            url,
            table,
            topic,
            pool,
            outbox,
        };
        match &db.pool {
            Pool::Postgres(p) => db.outbox.migrate(p).await.expect("migrate"),
            Pool::MySql(p) => db.outbox.migrate(p).await.expect("migrate"),
        }
        db.exec(&format!(
            "CREATE TABLE {}_app (id BIGINT PRIMARY KEY, name VARCHAR(100) NOT NULL)",
            db.table
        ))
        .await;
        db
    }

    /// Relay settings on this table: short waits.
    pub fn settings(&self) -> OutboxSettings {
        let mut s = OutboxSettings::new(&self.url).expect("url");
        s.table = self.table.clone();
        s.poll_interval = Duration::from_millis(20);
        s.backoff_initial = Duration::from_millis(20);
        s.backoff_max = Duration::from_millis(200);
        s
    }

    pub async fn exec(&self, sql: &str) {
        match &self.pool {
            Pool::Postgres(p) => {
                sqlx::query(AssertSqlSafe(sql.to_string())).execute(p).await.expect(sql);
            }
            Pool::MySql(p) => {
                sqlx::query(AssertSqlSafe(sql.to_string())).execute(p).await.expect(sql);
            }
        }
    }

    pub async fn scalar(&self, sql: &str) -> i64 {
        match &self.pool {
            Pool::Postgres(p) => sqlx::query_scalar(AssertSqlSafe(sql.to_string()))
                .fetch_one(p)
                .await
                .expect(sql),
            Pool::MySql(p) => sqlx::query_scalar(AssertSqlSafe(sql.to_string()))
                .fetch_one(p)
                .await
                .expect(sql),
        }
    }

    pub async fn pending(&self) -> i64 {
        self.scalar(&format!("SELECT COUNT(*) FROM {} WHERE sent_at IS NULL", self.table))
            .await
    }

    pub async fn rows(&self) -> i64 {
        self.scalar(&format!("SELECT COUNT(*) FROM {}", self.table)).await
    }

    pub async fn app_rows(&self) -> i64 {
        self.scalar(&format!("SELECT COUNT(*) FROM {}_app", self.table)).await
    }

    /// Insert an application row and enqueue a login of `key` in one
    /// transaction, committed or rolled back; the event id and outbox id.
    pub async fn write(&self, app_id: i64, key: i64, seq: usize, commit: bool) -> (uuid::Uuid, i64) {
        let events = self.write_many(app_id, &[(key, seq)], commit).await;
        events[0]
    }

    /// One transaction: an application row, then a login per (key, seq).
    pub async fn write_many(&self, app_id: i64, events: &[(i64, usize)], commit: bool) -> Vec<(uuid::Uuid, i64)> {
        let t = event_type();
        let app = format!("INSERT INTO {}_app (id, name) VALUES ({app_id}, 'row')", self.table);
        let mut out = Vec::new();
        macro_rules! body {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await.expect("begin");
                sqlx::query(AssertSqlSafe(app.clone()))
                    .execute(&mut *tx)
                    .await
                    .expect("app row");
                for (key, seq) in events {
                    let metadata = EventsMetadata::new(t.name(), 0);
                    let id = self
                        .outbox
                        .enqueue_data(
                            &mut tx,
                            t,
                            "login",
                            Some("user.id"),
                            &login(*key, *seq),
                            &metadata,
                        )
                        .await
                        .expect("enqueue");
                    out.push((metadata.id, id));
                }
                if commit {
                    tx.commit().await.expect("commit");
                } else {
                    tx.rollback().await.expect("rollback");
                }
            }};
        }
        match &self.pool {
            Pool::Postgres(p) => body!(p),
            Pool::MySql(p) => body!(p),
        }
        out
    }

    pub async fn drop(self) {
        for t in [
            format!("{}_app", self.table),
            format!("{}_partitions", self.table),
            self.table.clone(),
        ] {
            self.exec(&format!("DROP TABLE IF EXISTS {t}")).await;
        }
    }
}

/// One published message as the recorder saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub message: OutgoingMessage,
}

/// A transport that records what it is given, in order, and can be made
/// to fail (the broker is down) or to be slow.
#[derive(Default)]
pub struct Recorder {
    pub seen: Arc<Mutex<Vec<OutgoingMessage>>>,
    pub down: AtomicBool,
    pub attempts: AtomicUsize,
    pub delay: Mutex<Option<Duration>>,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }

    /// Another transport writing to the same log (its own delay and state).
    pub fn sharing(&self) -> Arc<Recorder> {
        Arc::new(Recorder {
            seen: self.seen.clone(),
            ..Recorder::default()
        })
    }

    pub fn set_delay(&self, delay: Option<Duration>) {
        *self.delay.lock().unwrap() = delay;
    }

    pub fn ids(&self) -> Vec<uuid::Uuid> {
        self.seen.lock().unwrap().iter().map(|m| m.metadata.id).collect()
    }

    pub fn len(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

#[async_trait]
impl Transport for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::durable_log(1 << 20)
    }

    async fn publish(&self, message: &OutgoingMessage) -> Result<String, TransportError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let delay = *self.delay.lock().unwrap();
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(TransportError::connection("the broker is down (test)"));
        }
        let mut seen = self.seen.lock().unwrap();
        seen.push(message.clone());
        Ok((seen.len() - 1).to_string())
    }

    async fn publish_raw(&self, _message: &RawMessage) -> Result<String, TransportError> {
        Err(TransportError::unsupported("recorder"))
    }

    async fn subscribe(&self, _request: &SubscribeRequest) -> Result<Box<dyn Subscription>, TransportError> {
        Err(TransportError::unsupported("recorder"))
    }
}

/// Check per-key order over a publish sequence (`(key, seq)` per message):
/// leaving out redelivered duplicates, each key's events come in
/// increasing `seq`. Returns (distinct, duplicates).
pub fn check_order(sequence: &[(String, usize)]) -> (usize, usize) {
    let mut seen: HashSet<(String, usize)> = HashSet::new();
    let mut last: HashMap<String, usize> = HashMap::new();
    let mut duplicates = 0;
    for (key, seq) in sequence {
        if !seen.insert((key.clone(), *seq)) {
            duplicates += 1;
            continue;
        }
        if let Some(prev) = last.get(key) {
            assert!(seq > prev, "key {key}: seq {seq} was published after {prev}");
        }
        last.insert(key.clone(), *seq);
    }
    (seen.len(), duplicates)
}

/// (key, seq) of a recorded login.
pub fn key_and_seq(m: &OutgoingMessage) -> (String, usize) {
    let data = event_type().decode_data(&m.body).expect("decode");
    let name = match data.get("user") {
        Some(openedx_events::value::Value::Record(u)) => match u.get("pii") {
            Some(openedx_events::value::Value::Record(p)) => match p.get("name") {
                Some(openedx_events::value::Value::String(s)) => s.clone(),
                other => panic!("name is {other:?}"),
            },
            other => panic!("pii is {other:?}"),
        },
        other => panic!("user is {other:?}"),
    };
    let key = m.key.as_ref().expect("key").as_text();
    (key, name.trim_start_matches("seq-").parse().expect("seq"))
}

/// A transaction held open by a test.
pub enum OpenTx {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    MySql(sqlx::Transaction<'static, sqlx::MySql>),
}

impl OpenTx {
    pub async fn commit(self) {
        match self {
            OpenTx::Postgres(tx) => tx.commit().await.expect("commit"),
            OpenTx::MySql(tx) => tx.commit().await.expect("commit"),
        }
    }
}

impl TestDb {
    pub async fn begin(&self) -> OpenTx {
        match &self.pool {
            Pool::Postgres(p) => OpenTx::Postgres(p.begin().await.expect("begin")),
            Pool::MySql(p) => OpenTx::MySql(p.begin().await.expect("begin")),
        }
    }

    /// Enqueue a login of `key` in an open transaction.
    pub async fn enqueue_in(&self, tx: &mut OpenTx, key: i64, seq: usize) -> (uuid::Uuid, i64) {
        let t = event_type();
        let metadata = EventsMetadata::new(t.name(), 0);
        let data = login(key, seq);
        let id = match tx {
            OpenTx::Postgres(tx) => {
                self.outbox
                    .enqueue_data(tx, t, "login", Some("user.id"), &data, &metadata)
                    .await
            }
            OpenTx::MySql(tx) => {
                self.outbox
                    .enqueue_data(tx, t, "login", Some("user.id"), &data, &metadata)
                    .await
            }
        };
        (metadata.id, id.expect("enqueue"))
    }
}
