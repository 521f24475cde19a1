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
use event_bus_conformance::{conformance_tests, BackendUnderTest};
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

conformance_tests!(core, shared());
conformance_tests!(groups, shared());
conformance_tests!(membership_churn, shared());
conformance_tests!(ordered, shared());
conformance_tests!(persistent, shared());
conformance_tests!(replay, shared());
conformance_tests!(seek_time, shared());
conformance_tests!(restart, own_server());
