//! The relay: claims partitions, publishes their unsent rows in order per
//! (topic, key), marks them sent once the broker has them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::future::join_all;
use openedx_events::bus::Transport;
use openedx_events::config::Settings;
use openedx_events::signal::Registry;
use tokio_util::sync::CancellationToken;

use crate::error::OutboxError;
use crate::row::{OutboxRow, PARTITIONS};
use crate::settings::OutboxSettings;
use crate::store::{self, Store};

/// How often sent rows older than the retention are purged.
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// Rows deleted per purge statement (short statements, short locks).
const PURGE_CHUNK: usize = 1000;
/// How often the `event_bus_outbox_pending` gauge is refreshed while busy.
const COUNT_EVERY: Duration = Duration::from_secs(5);
/// The wait when rows are pending but other relays hold every partition.
const BUSY_WAIT: Duration = Duration::from_millis(50);

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundStats {
    /// Partitions with unsent rows when the round started.
    pub pending_partitions: usize,
    /// Partitions this relay held during the round.
    pub claimed_partitions: usize,
    /// Rows read from them.
    pub rows: usize,
    /// Rows the broker confirmed, marked sent.
    pub sent: usize,
    /// Rows that failed (left unsent, with `attempts` and `last_error`);
    /// the later rows of their keys were not tried.
    pub failed: usize,
}

/// What a relay did until it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayTotals {
    /// Rounds run.
    pub rounds: u64,
    /// Rows sent.
    pub sent: u64,
    /// Failed attempts.
    pub failed: u64,
    /// Sent rows purged.
    pub purged: u64,
}

/// A relay from one outbox table to one transport. Several relays (in one
/// process or many) may run on the same table: they share the partitions.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use event_bus_outbox::{OutboxSettings, Relay};
/// use openedx_events::{bus::memory::MemoryBroker, signal::Registry};
/// let settings = OutboxSettings::new("postgres://postgres@127.0.0.1:5432/test")?;
/// let transport = Arc::new(MemoryBroker::new().transport());
/// let relay = Relay::connect(settings, transport, Registry::global()).await?;
/// relay.migrate().await?;
/// let round = relay.relay_once().await?;
/// println!("sent {} of {} rows", round.sent, round.rows);
/// # Ok(()) }
/// ```
pub struct Relay {
    store: Box<dyn Store>,
    transport: Arc<dyn Transport>,
    registry: Arc<Registry>,
    settings: OutboxSettings,
    rounds: AtomicUsize,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("database", &self.settings.masked_url())
            .field("table", &self.settings.table)
            .field("backend", &self.transport.name())
            .finish()
    }
}

/// One (topic, key)'s rows of a batch, in id order.
type Chain = Vec<OutboxRow>;

/// Split a batch (in id order) into chains per (topic, key), keeping order.
fn chains(rows: Vec<OutboxRow>) -> Vec<Chain> {
    let mut index: HashMap<(String, Option<String>, Option<String>), usize> = HashMap::new();
    let mut chains: Vec<Chain> = Vec::new();
    for row in rows {
        let (t, k, v) = row.order_key();
        let key = (t.to_string(), k.map(str::to_string), v.map(str::to_string));
        match index.get(&key) {
            Some(&i) => chains[i].push(row),
            None => {
                index.insert(key, chains.len());
                chains.push(vec![row]);
            }
        }
    }
    chains
}

impl Relay {
    /// Connect to the outbox database (a pool of a few connections).
    pub async fn connect(
        settings: OutboxSettings,
        transport: Arc<dyn Transport>,
        registry: Arc<Registry>,
    ) -> Result<Self, OutboxError> {
        let store = store::connect(&settings, 4).await?;
        tracing::info!(database = %settings.masked_url(), table = %settings.table, backend = transport.name(),
            "outbox relay connected");
        Ok(Relay {
            store,
            transport,
            registry,
            settings,
            rounds: AtomicUsize::new(0),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &OutboxSettings {
        &self.settings
    }

    /// Create the outbox tables if they do not exist.
    pub async fn migrate(&self) -> Result<(), OutboxError> {
        self.store.migrate().await
    }

    /// How many rows are unsent (also set as the `event_bus_outbox_pending`
    /// gauge).
    pub async fn pending(&self) -> Result<i64, OutboxError> {
        let n = self.store.pending_count().await?;
        metrics::gauge!("event_bus_outbox_pending").set(n as f64);
        Ok(n)
    }

    /// One round: claim up to half of the partitions with unsent rows (at
    /// least one) that no other relay holds, round robin, publish up to
    /// `batch_size` of their rows, each (topic, key) in id order and the
    /// keys concurrently, mark what the broker confirmed, commit.
    pub async fn relay_once(&self) -> Result<RoundStats, OutboxError> {
        let mut pending = self.store.pending_partitions().await?;
        let before = pending.len();
        pending.retain(|p| (0..PARTITIONS).contains(p));
        if pending.len() < before {
            tracing::error!(table = %self.settings.table,
                "outbox rows with a partition_no outside 0..{PARTITIONS} are never relayed (written by something else than this crate?)");
        }
        let mut stats = RoundStats {
            pending_partitions: pending.len(),
            ..RoundStats::default()
        };
        if pending.is_empty() {
            return Ok(stats);
        }
        let share = pending.len().div_ceil(2);
        // Round robin over the partitions, so a busy one cannot starve the others.
        let first = (self.rounds.fetch_add(1, Ordering::Relaxed) % PARTITIONS.unsigned_abs() as usize) as i16;
        let claimed = self
            .store
            .claim(&pending, first, share, self.settings.batch_size)
            .await?;
        let Some((mut claim, rows)) = claimed else {
            return Ok(stats);
        };
        stats.claimed_partitions = claim.partitions().len();
        stats.rows = rows.len();
        let outcomes = join_all(chains(rows).into_iter().map(|chain| self.publish_chain(chain))).await;
        let mut sent = Vec::with_capacity(stats.rows);
        let mut failures = Vec::new();
        for (ids, failure) in outcomes {
            sent.extend(ids);
            failures.extend(failure);
        }
        if !sent.is_empty() {
            claim.mark_sent(&sent, Utc::now()).await?;
        }
        for (id, error) in &failures {
            claim.mark_failed(*id, error).await?;
        }
        claim.commit().await?;
        stats.sent = sent.len();
        stats.failed = failures.len();
        metrics::counter!("event_bus_outbox_relayed_total").increment(stats.sent as u64);
        if stats.failed > 0 {
            metrics::counter!("event_bus_outbox_publish_errors_total").increment(stats.failed as u64);
        }
        Ok(stats)
    }

    /// Publish one key's rows in order, stopping at the first failure (a
    /// later row must not overtake it). The ids sent, and the failure.
    async fn publish_chain(&self, chain: Chain) -> (Vec<i64>, Option<(i64, String)>) {
        let mut sent = Vec::with_capacity(chain.len());
        for row in chain {
            let message = match row.to_message(&self.registry) {
                Ok(m) => m,
                Err(reason) => {
                    let e = OutboxError::BadRow {
                        table: self.settings.table.clone(),
                        id: row.id,
                        reason,
                    };
                    tracing::error!(error = %e, "outbox row cannot be relayed; its key waits until it is fixed or deleted");
                    return (sent, Some((row.id, e.to_string())));
                }
            };
            match self.transport.publish(&message).await {
                Ok(position) => {
                    tracing::debug!(target: "event_bus::audit", topic = %message.topic, message_id = %message.metadata.id,
                        event_type = %message.event_type.name(), position = %position, outbox_id = row.id,
                        "message relayed from the outbox");
                    sent.push(row.id);
                }
                Err(error) => {
                    let e = OutboxError::Publish {
                        id: row.id,
                        topic: message.topic.clone(),
                        error,
                    };
                    tracing::warn!(error = %e, "outbox relay could not publish; retrying later");
                    return (sent, Some((row.id, e.to_string())));
                }
            }
        }
        (sent, None)
    }

    /// Delete sent rows older than the retention, in chunks; how many.
    pub async fn purge(&self) -> Result<u64, OutboxError> {
        let retention = chrono::Duration::from_std(self.settings.retention).unwrap_or(chrono::Duration::MAX);
        let before = Utc::now()
            .checked_sub_signed(retention)
            .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
        let mut total = 0;
        for _ in 0..100 {
            let n = self.store.purge(before, PURGE_CHUNK).await?;
            total += n;
            if n < PURGE_CHUNK as u64 {
                break;
            }
        }
        if total > 0 {
            metrics::counter!("event_bus_outbox_purged_total").increment(total);
            tracing::info!(table = %self.settings.table, purged = total, "purged sent outbox rows");
        }
        Ok(total)
    }

    /// Relay until `shutdown` is cancelled: rounds back to back while there
    /// is work, `poll_interval` apart when there is none; after a failure
    /// (broker or database), an exponential backoff between
    /// `backoff_initial` and `backoff_max`; sent rows purged every minute.
    /// The round in hand is finished before returning.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<RelayTotals, OutboxError> {
        let mut totals = RelayTotals::default();
        let mut backoff = self.settings.backoff_initial;
        let mut last_purge: Option<Instant> = None;
        let mut last_count: Option<Instant> = None;
        while !shutdown.is_cancelled() {
            if last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
                last_purge = Some(Instant::now());
                match self.purge().await {
                    Ok(n) => totals.purged += n,
                    Err(e) => tracing::warn!(error = %e, "outbox purge failed; retrying in a minute"),
                }
            }
            let round = self.relay_once().await;
            totals.rounds += 1;
            let wait = match round {
                Ok(r) if r.failed == 0 => {
                    backoff = self.settings.backoff_initial;
                    totals.sent += r.sent as u64;
                    if last_count.is_none_or(|t| t.elapsed() >= COUNT_EVERY) || r.pending_partitions == 0 {
                        last_count = Some(Instant::now());
                        if let Err(e) = self.pending().await {
                            tracing::debug!(error = %e, "cannot count pending outbox rows");
                        }
                    }
                    match (r.pending_partitions, r.sent) {
                        (0, _) => Some(self.settings.poll_interval),
                        (_, 0) => Some(BUSY_WAIT.min(self.settings.poll_interval)),
                        _ => None,
                    }
                }
                Ok(r) => {
                    totals.sent += r.sent as u64;
                    totals.failed += r.failed as u64;
                    tracing::warn!(failed = r.failed, sent = r.sent, retry_in = ?backoff,
                        "outbox relay round had failures");
                    Some(self.next_backoff(&mut backoff))
                }
                Err(e) => {
                    tracing::error!(error = %e, retry_in = ?backoff, "outbox relay round failed");
                    Some(self.next_backoff(&mut backoff))
                }
            };
            if let Some(wait) = wait {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
        tracing::info!(
            sent = totals.sent,
            failed = totals.failed,
            rounds = totals.rounds,
            "outbox relay stopped"
        );
        Ok(totals)
    }

    /// The wait now, doubling the next one up to the maximum.
    fn next_backoff(&self, backoff: &mut Duration) -> Duration {
        let now = *backoff;
        *backoff = (*backoff * 2).min(self.settings.backoff_max);
        now
    }
}

/// The relay the `event-bus outbox relay` command runs: reads the
/// `EVENT_BUS_OUTBOX_*` settings (checked; errors name the key), connects,
/// and relays every event of the outbox table to `transport` until
/// `shutdown` is cancelled. Event types are looked up in the global
/// registry (the catalog and what the process registered). It does not
/// create the table: see [`migrate`].
pub async fn run_relay(
    settings: &Settings,
    transport: Arc<dyn Transport>,
    shutdown: CancellationToken,
) -> Result<RelayTotals, OutboxError> {
    let settings = OutboxSettings::from_settings(settings)?;
    let relay = Relay::connect(settings, transport, Registry::global()).await?;
    relay.run(shutdown).await
}

/// Create the outbox tables named by the settings if they do not exist
/// (`event-bus outbox migrate`).
pub async fn migrate(settings: &Settings) -> Result<(), OutboxError> {
    let settings = OutboxSettings::from_settings(settings)?;
    let store = store::connect(&settings, 1).await?;
    store.migrate().await
}
