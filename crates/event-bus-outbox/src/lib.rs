//! # event-bus-outbox
//!
//! The transactional outbox of the Open edX event bus (Open edX ADR 15): a
//! service enqueues an event **in its own database transaction**, next to
//! the rows the event is about, and a relay publishes it to any backend of
//! the bus afterwards. The event leaves if and only if the transaction
//! commits: no event about a rolled-back change, no change whose event was
//! lost because the broker was down at that moment.
//!
//! PostgreSQL and MySQL 8 / MariaDB 10.6+ (crate features `postgres` and
//! `mysql`, both on by default), through `sqlx`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use event_bus_outbox::{Outbox, OutboxSettings, Relay};
//! use openedx_events::{bus::memory::MemoryBroker, catalog, metadata::EventsMetadata, sample, signal::Registry};
//! use tokio_util::sync::CancellationToken;
//!
//! // The service: its own row and the event, one transaction.
//! let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/test").await?;
//! let outbox = Outbox::new("event_bus_outbox", Some("dev".into()))?;
//! outbox.migrate(&pool).await?;
//! let t = catalog::get("org.openedx.learning.auth.session.login.completed.v1").unwrap();
//! let data = sample::event_data(t, &mut sample::rng(1));
//! let mut tx = pool.begin().await?;
//! sqlx::query("UPDATE auth_user SET last_login = now() WHERE id = 1").execute(&mut *tx).await?;
//! outbox.enqueue_data(&mut tx, t, "user-login", Some("user.id"), &data, &EventsMetadata::new(t.name(), 0)).await?;
//! tx.commit().await?;
//!
//! // The relay (normally its own process: `event-bus outbox relay`).
//! let settings = OutboxSettings::new("postgres://postgres@127.0.0.1:5432/test")?;
//! let relay = Relay::connect(settings, Arc::new(MemoryBroker::new().transport()), Registry::global()).await?;
//! relay.run(CancellationToken::new()).await?;
//! # Ok(()) }
//! ```
//!
//! ## Guarantees
//!
//! - **Atomic with the caller's rows**: [`Outbox::enqueue`] is an `INSERT`
//!   in the caller's transaction, nothing else (no broker call, no other
//!   connection). The event is encoded and keyed there, exactly as
//!   `EventBusProducer::prepare` does, so a bad event fails the caller's
//!   transaction at once, not the relay later.
//! - **At least once**: a row is marked sent only after `publish`
//!   returned `Ok` (the broker has it), and the mark commits after that. A
//!   relay killed at any point (even `SIGKILL`) leaves its rows unsent: its
//!   transaction dies with its connection and the next relay sends them
//!   again. So the consumers may see a duplicate (same event id; the core's
//!   consumer de-duplicates within its window), never a gap.
//! - **In order per (topic, key)**: a key's events are published in the
//!   order they became visible (id order among committed rows), by one
//!   relay at a time, one after the other; a failed publish stops its key
//!   until it succeeds. Events without a key are one key per topic.
//! - **Broker down**: nothing is marked sent, each failure is counted on
//!   its row (`attempts`, `last_error`), and the relay retries with
//!   exponential backoff; nothing is lost, nothing skipped.
//!
//! ## The table
//!
//! `migrations/postgres/` and `migrations/mysql/` create it (run them with
//! sqlx's migrator, copy them into a Django migration, or call
//! [`Outbox::migrate`] / [`migrate`], which run them with the configured
//! table name; `CREATE ... IF NOT EXISTS`).
//!
//! | column | content |
//! |---|---|
//! | `id` | `BIGSERIAL` / `BIGINT AUTO_INCREMENT`: orders a key's rows among those visible at once; never used as a high-water mark |
//! | `partition_no` | `fnv1a64(topic ‖ 0xff ‖ "k" ‖ 0xff ‖ key_type ‖ 0xff ‖ key_text ‖ 0xff) mod 64` (no key: `fnv1a64(topic ‖ 0xff ‖ "-" ‖ 0xff)`): every row of a (topic, key) is in one partition |
//! | `topic` | the full topic (`EVENT_BUS_TOPIC_PREFIX` applied) |
//! | `event_type` | the event type name |
//! | `key_field`, `key_type`, `key_text` | the key's field name, Avro type (`string`, `long`, `boolean`, `double`) and value as text (Rust's shortest round-trip form for doubles): the `EventKey` rebuilt exactly; all null without key |
//! | `event_id`, `event_time`, `minorversion`, `source`, `sourcehost`, `sourcelib` | the metadata (`sourcelib` dotted): `EventsMetadata` rebuilt exactly (times have microseconds, as the wire) |
//! | `body` | the schemaless Avro data (`BYTEA` / `LONGBLOB`) |
//! | `created_at`, `sent_at` | enqueued; sent (null while pending) |
//! | `attempts`, `last_error` | failed publish attempts and the last error |
//!
//! Beside it, `<table>_partitions` holds the 64 partition numbers: one row
//! per partition, locked by the relay that owns the partition.
//!
//! ## How relays claim work, and why
//!
//! A round of a relay is one transaction on its own connection:
//!
//! 1. find the partitions with unsent rows (a plain read);
//! 2. lock up to half of them, at least one, round robin, with
//!    `SELECT ... FROM <table>_partitions ... FOR UPDATE SKIP LOCKED`:
//!    partitions another relay holds are skipped, not waited for;
//! 3. read up to `EVENT_BUS_OUTBOX_BATCH_SIZE` **unsent** rows of those
//!    partitions by id (every unsent row: no "last id sent");
//! 4. publish them, each (topic, key)'s rows in order, one after the other,
//!    the keys concurrently; a failure stops its key for this round;
//! 5. mark what the broker confirmed as sent, count the failures, commit
//!    (which releases the partitions).
//!
//! `SKIP LOCKED` on the outbox rows themselves would break the order: a
//! relay would skip a key's earlier row that another relay holds and send
//! its later rows. Locking whole partitions instead makes a key belong to
//! one relay at a time, and the lock lives exactly as long as the relay's
//! transaction: a crashed relay's partitions are free again as soon as the
//! database sees its connection close, with no lease to expire or steal.
//! Several relays share the table by partitions (each round takes half of
//! what is free, so two or three relays all get work).
//!
//! The Watermill trap (issue 311) is avoided by construction: ids are
//! taken at insert and committed in any order, so a relay that remembered
//! "the last id sent" would skip a row that committed after a higher id
//! was sent. Every round reads every unsent row of its partitions instead;
//! the partial index (`(partition_no, id) WHERE sent_at IS NULL` on
//! PostgreSQL, `(sent_at, partition_no, id)` on MySQL) keeps that cheap.
//!
//! Relay transactions run in `READ COMMITTED` (each statement sees what the
//! partition's previous holder committed; InnoDB takes no gap locks, so the
//! relay never blocks the services' inserts). The services' transactions
//! only insert into the outbox and never touch the partition rows: they
//! never wait for a relay, and a relay never waits for them.
//!
//! Sent rows are purged after `EVENT_BUS_OUTBOX_RETENTION_SECONDS`, by
//! chunks of 1000, every minute.
//!
//! Limits: a relay holds its transaction while it publishes a batch (the
//! transport's own timeout bounds it). A row that the broker always rejects
//! (too large...) or that cannot be rebuilt (an event type this process
//! does not know) stops its key and keeps the relay in backoff until an
//! operator deletes or fixes it (`last_error` says why); other keys still go
//! out in each round. The partition count (64) is fixed by the migration.
//!
//! ## Settings
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `EVENT_BUS_OUTBOX_DATABASE_URL` | required | `postgres://`, `postgresql://`, `mysql://` or `mariadb://` (sqlx URL; the password is masked in logs and errors) |
//! | `EVENT_BUS_OUTBOX_TABLE` | `event_bus_outbox` | the table: letters, digits, `_`, not starting with a digit, at most 40 characters |
//! | `EVENT_BUS_OUTBOX_BATCH_SIZE` | 100 | rows per round (1 to 10000) |
//! | `EVENT_BUS_OUTBOX_POLL_INTERVAL_SECONDS` | 1 | the wait when nothing is pending (more than 0) |
//! | `EVENT_BUS_OUTBOX_RETENTION_SECONDS` | 604800 (7 days) | how long sent rows are kept; 0: purged on the next purge |
//! | `EVENT_BUS_OUTBOX_BACKOFF_INITIAL_SECONDS` | 0.5 | the first wait after a failed round; doubles on each failure in a row |
//! | `EVENT_BUS_OUTBOX_BACKOFF_MAX_SECONDS` | 30 | the longest wait (not below the initial one) |
//! | `EVENT_BUS_TOPIC_PREFIX` | none | read by [`Outbox::from_settings`]: the prefix of the topics written |
//!
//! Errors are configuration errors naming the key, at start-up.
//!
//! ## Metrics (the `metrics` facade)
//!
//! `event_bus_outbox_enqueued_total`, `event_bus_outbox_relayed_total`,
//! `event_bus_outbox_publish_errors_total`, `event_bus_outbox_purged_total`
//! (counters) and `event_bus_outbox_pending` (gauge, unsent rows, refreshed
//! every 5 s while busy and on every idle poll).
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod error;
mod outbox;
mod relay;
mod row;
pub mod settings;
mod store;

pub use error::OutboxError;
pub use outbox::{Outbox, OutboxDatabase, OutboxId};
pub use relay::{migrate, run_relay, Relay, RelayTotals, RoundStats};
pub use row::PARTITIONS;
pub use settings::OutboxSettings;
