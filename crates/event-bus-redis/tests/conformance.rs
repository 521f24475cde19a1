//! The Redis backend against the conformance suite, on the Redis of the
//! machine (127.0.0.1:6379): every group. `restart` runs against a
//! redis-server this test starts on a free port with an append-only file,
//! restarts (SHUTDOWN, start again on the same port) and kills at the end.
//!
//! The suite's subscribers use a new consumer name each time, so entries a
//! closed subscriber left pending are claimed by the next one: the backend
//! is given `claim_msgs_older_than = 1000` ms, as an operator would.

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::{connect, delete_streams, redis_url, RedisServer};
use event_bus_conformance::{conformance_suite, conformance_tests, BackendUnderTest};
use openedx_events::bus::Transport;

struct Redis {
    url: String,
    server: Option<RedisServer>,
    streams: Mutex<Vec<String>>,
}

#[async_trait]
impl BackendUnderTest for Redis {
    async fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(connect(&self.url).await)
    }

    async fn restart_broker(&self) -> Result<(), String> {
        match &self.server {
            Some(server) => server.restart(),
            None => Err("the shared Redis is not restarted by tests".into()),
        }
    }

    fn topic(&self, case: &str) -> String {
        let topic = format!(
            "conformance-redis-{case}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        streams.push(topic.clone());
        streams.push(format!("{topic}-dlq"));
        topic
    }

    fn subscribe_extras(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut extras = serde_json::Map::new();
        extras.insert("claim_msgs_older_than".into(), 1000.into());
        extras
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let streams = std::mem::take(&mut *self.streams.lock().unwrap_or_else(|p| p.into_inner()));
        delete_streams(&self.url, &streams);
    }
}

fn shared() -> Redis {
    Redis {
        url: redis_url(),
        server: None,
        streams: Mutex::new(Vec::new()),
    }
}

fn own_server() -> Redis {
    let server = RedisServer::start();
    Redis {
        url: server.url(),
        server: Some(server),
        streams: Mutex::new(Vec::new()),
    }
}

conformance_suite!(shared());
conformance_tests!(restart, own_server());

/// The fault cases against a redis-server of their own (append-only file,
/// `appendfsync always`): the broker SIGKILLed and started again (down 1 s),
/// and the network black-holed or cut through the fault proxy. No claim
/// idle time is set, so an entry left in a consumer's pending list would
/// wait for the default 5 minutes: the stall bound shows it never does.
mod faults_case {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;
    use event_bus_conformance::{conformance_tests, BackendUnderTest};
    use openedx_events::bus::Transport;

    use super::common::{connect, RedisServer};

    struct Killed(RedisServer);

    #[async_trait]
    impl BackendUnderTest for Killed {
        async fn transport(&self) -> Arc<dyn Transport> {
            Arc::new(connect(&self.0.url()).await)
        }

        async fn restart_broker(&self) -> Result<(), String> {
            self.0.kill();
            tokio::time::sleep(Duration::from_secs(1)).await;
            self.0.start_again()
        }

        fn broker_addr(&self) -> Option<SocketAddr> {
            Some(SocketAddr::from(([127, 0, 0, 1], self.0.port())))
        }

        async fn transport_via(&self, addr: SocketAddr) -> Option<Arc<dyn Transport>> {
            Some(Arc::new(connect(&format!("redis://{addr}/0")).await))
        }
    }

    fn backend() -> Killed {
        Killed(RedisServer::start())
    }

    conformance_tests!(faults, backend());
    conformance_tests!(network_faults, backend());
}
