//! Connections of the `redis` crate with a time limit on every call, their
//! errors mapped by [`crate::error`] (with the password scrubbed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openedx_events::bus::transport::TransportError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisError, Value};

use crate::error::{from_redis, no_reply, prefixed};
use crate::settings::{Redactor, RedisConfig};

/// A reconnecting connection (`ConnectionManager`: reconnects with backoff
/// after a dropped connection) whose every call is bounded in time.
#[derive(Clone)]
pub(crate) struct Conn {
    manager: ConnectionManager,
    timeout: Duration,
    secret: Redactor,
    /// Calls that ended with a dropped connection or a timeout, on any clone
    /// (see [`Conn::troubles`]).
    troubles: Arc<AtomicU64>,
}

/// What kind of connection to open.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Short commands; the client's own response timeout is the command
    /// timeout.
    Commands,
    /// Blocking reads (`XREADGROUP ... BLOCK`): no client response timeout;
    /// each call gets its own limit.
    Blocking,
}

impl Conn {
    /// A lazily connected manager: the first call connects.
    pub(crate) fn open(client: &redis::Client, config: &RedisConfig, purpose: Purpose) -> Result<Self, TransportError> {
        let response_timeout = match purpose {
            Purpose::Commands => Some(config.command_timeout),
            Purpose::Blocking => None,
        };
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.command_timeout))
            .set_response_timeout(response_timeout)
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let secret = config.redactor();
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(|e| from_redis("cannot set up a Redis connection", &e, &secret))?;
        Ok(Conn {
            manager,
            timeout: config.command_timeout,
            secret,
            troubles: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Run a command within the command timeout.
    pub(crate) async fn query(&self, what: &str, cmd: &Cmd) -> Result<Value, TransportError> {
        self.query_within(what, cmd, self.timeout).await
    }

    /// Run a command within `limit`. A dropped connection is retried once
    /// (the manager has started reconnecting by then), so a broker restart
    /// costs a reconnect, not an error.
    pub(crate) async fn query_within(&self, what: &str, cmd: &Cmd, limit: Duration) -> Result<Value, TransportError> {
        self.retried(what, limit, |mut manager| async move {
            cmd.query_async::<Value>(&mut manager).await
        })
        .await
    }

    /// Send a pipeline (one write, one round trip) within `limit`; the
    /// replies come in command order, a failed command as a
    /// [`Value::ServerError`] in its place (the pipeline must ignore errors).
    /// A dropped connection is retried once, as for single commands.
    pub(crate) async fn pipeline(
        &self,
        what: &str,
        pipe: &Pipeline,
        limit: Duration,
    ) -> Result<Vec<Value>, TransportError> {
        let reply = self
            .retried(what, limit, |mut manager| async move {
                pipe.query_async::<Value>(&mut manager).await
            })
            .await?;
        match reply {
            Value::Array(values) => Ok(values),
            other => Err(TransportError::other(prefixed(
                what,
                format!(
                    "Redis replied to a pipeline with {}, not an array",
                    crate::reply::shape(&other)
                ),
            ))),
        }
    }

    /// Run `call` within `limit`, once more if the connection dropped.
    async fn retried<'a, F, Fut>(&'a self, what: &str, limit: Duration, call: F) -> Result<Value, TransportError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<Value>> + 'a,
    {
        match self.once(what, limit, &call).await {
            Err((e, true)) => {
                tracing::debug!(error = %e, "Redis connection dropped; retrying once on a new connection");
                self.once(what, limit, &call).await.map_err(|(e, _)| e)
            }
            other => other.map_err(|(e, _)| e),
        }
    }

    /// One attempt: the error, and whether it was a dropped connection.
    async fn once<'a, F, Fut>(&'a self, what: &str, limit: Duration, call: &F) -> Result<Value, (TransportError, bool)>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<Value>> + 'a,
    {
        match tokio::time::timeout(limit, call(self.manager.clone())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let dropped = e.is_connection_dropped() || (e.is_io_error() && !e.is_timeout());
                if e.is_io_error() || dropped {
                    self.troubles.fetch_add(1, Ordering::Relaxed);
                }
                Err((from_redis(what, &e, &self.secret), dropped))
            }
            Err(_) => Err((no_reply(what, limit), false)).inspect_err(|_| {
                self.troubles.fetch_add(1, Ordering::Relaxed);
            }),
        }
    }

    /// How many calls (on this connection and its clones) ended with a lost
    /// connection or without a reply in time, retried ones included: a
    /// command may have run in Redis without its reply arriving, so a
    /// subscription that sees this change re-reads its pending entries.
    pub(crate) fn troubles(&self) -> u64 {
        self.troubles.load(Ordering::Relaxed)
    }

    /// The command timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A Redis error as a transport error (see [`from_redis`]).
    pub(crate) fn error(&self, what: &str, e: &RedisError) -> TransportError {
        from_redis(what, e, &self.secret)
    }
}
