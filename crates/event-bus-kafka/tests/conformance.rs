//! The Kafka backend against the conformance suite, on a real
//! Kafka-protocol broker: **tansu** (a Kafka-compatible broker written in
//! Rust), one broker per case, and the schema registry **test double**.
//!
//! Storage: SQLite (`sqlite://`; `scripts/setup.sh` builds tansu into
//! `~/.cargo/bin` with `libsql` for it, `$TANSU_SQLITE_BIN` names another
//! such binary), else in-memory (`$TANSU_BIN`); `TANSU_STORAGE` forces one. Under heavy parallel load the in-memory engine stalled
//! consumer groups (`topic_isolation`, `concurrent_close`, 2 of 3 stress
//! runs) where SQLite storage passed every run.
//!
//! Groups run: `core`, `groups`, `ordered`, `persistent`, `replay`,
//! `seek_time`, and `restart`; `membership_churn` runs on the mock cluster
//! (see below) (SQLite storage required; see `restart_case`
//! below for what was used and why).
//!
//! If tansu is missing the tests fail, saying how to install it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use event_bus_conformance::{conformance_suite, BackendUnderTest};
use event_bus_kafka::testing::{create_topics, RegistryDouble, TansuBroker};
use event_bus_kafka::{KafkaSettings, KafkaTransport};
use openedx_events::bus::Transport;

/// Settings for fast tests: short sessions so that rebalances after a
/// member leaves or dies take seconds, small linger, and a short
/// `max.poll.interval.ms`: a rebalance waits that long for every member to
/// poll, and some cases hold two members of one group (on two topics, in
/// `topic_isolation`) while polling only one of them at a time.
pub fn test_settings(bootstrap: &str, registry: &str) -> KafkaSettings {
    let mut s = KafkaSettings::new(bootstrap, registry);
    s.session_timeout_ms = Some(6000);
    s.client_config.insert("max.poll.interval.ms".into(), "10000".into());
    s.client_config.insert("heartbeat.interval.ms".into(), "500".into());
    s.client_config.insert("linger.ms".into(), "2".into());
    s.client_config
        .insert("topic.metadata.refresh.interval.ms".into(), "2000".into());
    s
}

struct Tansu {
    broker: Mutex<TansuBroker>,
    bootstrap: String,
    registry: RegistryDouble,
}

impl Tansu {
    fn start(broker: TansuBroker) -> Self {
        let registry = RegistryDouble::start().unwrap_or_else(|e| panic!("registry double: {e}"));
        let bootstrap = broker.bootstrap_servers();
        Tansu {
            broker: Mutex::new(broker),
            bootstrap,
            registry,
        }
    }
}

#[async_trait]
impl BackendUnderTest for Tansu {
    async fn transport(&self) -> Arc<dyn Transport> {
        let settings = test_settings(&self.bootstrap, &self.registry.url());
        Arc::new(KafkaTransport::connect(settings).unwrap_or_else(|e| panic!("connect: {e}")))
    }

    /// tansu does not create topics on first use: create the topic and its
    /// dead-letter topic (3 partitions each) before the case uses them.
    fn topic(&self, case: &str) -> String {
        let topic = format!(
            "conformance-{case}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let dlq = format!("{topic}-dlq");
        create_topics(&self.bootstrap, &[&topic, &dlq], 3).unwrap_or_else(|e| panic!("creating {topic}: {e}"));
        topic
    }

    async fn restart_broker(&self) -> Result<(), String> {
        let mut broker = self.broker.lock().map_err(|_| "poisoned".to_string())?;
        broker.restart()
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(60)
    }

    /// 2500 events per fault case, not 5000: tansu 0.6 with SQLite storage
    /// stops answering its group coordinator requests when a group consumes
    /// a 5000-event topic here (seen 3 runs of 3, before any restart: the
    /// session times out "without a successful response from the group
    /// coordinator", the request in flight times out after 120 s and the
    /// broker never answers the group again; 600 and 3000 events passed).
    /// A Kafka broker has no such limit; the case itself is the same.
    fn fault_events(&self) -> usize {
        2500
    }
}

fn backend() -> Tansu {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    Tansu::start(TansuBroker::start_for_tests().unwrap_or_else(|e| panic!("{e}")))
}

// Every group the capabilities choose but `membership_churn`
// (`concurrent_close`): it runs on librdkafka's mock
// cluster instead (tests/mock_cluster.rs). tansu 0.6's group coordinator
// sometimes keeps members that left. Seen here (about 1 run in 30): ten
// members of a group join and close at once, each sends its LeaveGroup
// ("left the consumer group" logged ten times), and the next member is
// assigned one partition of three, for good: the other two stay with
// members that no longer exist, past the session timeout and the 60 s of
// the case. A Kafka coordinator expires such members after
// `session.timeout.ms`; the mock cluster does.
conformance_suite!(
    backend(),
    except {
        membership_churn: "tansu 0.6's coordinator can keep members that left; runs on the mock cluster",
    }
);
// Not `slow_receiver`. Run here (3 events, 2 members, a synchronous receiver
// taking 15 s against `max.poll.interval.ms` = 10 s): with the lease keeper
// the member never exceeded the poll interval (0 PollExceeded errors; 8
// without it), but tansu 0.6 revoked and reassigned the partitions every 2.5
// to 5 s while a member was busy (12 revocations), and each revocation gives
// the message in hand to the other member: 2 and 3 of 3 events were handled
// twice, with and without the keeper. Whether a Kafka broker's coordinator
// does the same with eager rebalancing is not shown here.

/// The `restart` group needs a broker whose data survives a restart.
///
/// What was used: tansu 0.6 built with SQLite storage
/// (`cargo install tansu --locked --features dynostore,libsql`, as `scripts/setup.sh` does),
/// run with `--storage-engine sqlite://tansu.db` in the broker's own
/// directory; the restart kills the process (SIGKILL) and starts it again on
/// the same port and file. The 50 events published before the restart were
/// never fetched before it, so their arrival shows they were stored.
///
/// Tried first and not used: the Postgres build
/// (`--features dynostore,postgres`, `~/.cache/tansu-pg`) with a fresh
/// database: tansu 0.6's Postgres engine does not create its tables (the
/// schema is not in the published crates) and exits at start-up with
/// `relation "cluster" does not exist`.
mod restart_case {
    use event_bus_conformance::conformance_tests;
    use event_bus_kafka::testing::TansuBroker;

    use super::Tansu;

    fn persistent_backend() -> Tansu {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        Tansu::start(TansuBroker::start_sqlite().unwrap_or_else(|e| panic!("{e}")))
    }

    conformance_tests!(restart, persistent_backend());
    // The broker SIGKILLed and started again under a consumer and under a
    // producer. The network cases (`network_faults`) are not run: a Kafka
    // client connects to the addresses the broker advertises, not to the
    // bootstrap address it was given, so a proxy in front of the bootstrap
    // address sees only the first metadata request; a broker advertising
    // the proxy's address (one listener per proxy) would be needed.
    conformance_tests!(faults, persistent_backend());
}
