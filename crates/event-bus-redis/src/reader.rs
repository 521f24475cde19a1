//! The connection a subscription reads entries on (`XREADGROUP`): a
//! [`RawConn`] of its own on plain TCP (the deliveries are built from
//! slices of the reply, see [`crate::resp`]), else (TLS, Unix sockets) a
//! connection of the `redis` crate; [`crate::raw`] says why both exist.

use std::time::Duration;

use openedx_events::bus::transport::{TransportError, TransportErrorKind};
use redis::{Cmd, Value};

use crate::conn::{Conn, Purpose};
use crate::raw::RawConn;
use crate::settings::RedisConfig;

/// A reply: its raw bytes (own connection) or its value (`redis` crate).
pub(crate) enum Reply<'a> {
    /// The bytes of one complete RESP2 reply.
    Raw(&'a [u8]),
    /// The value of a reply, from the `redis` crate.
    Value(Value),
}

/// See the module documentation.
pub(crate) enum ReadConn {
    Raw(Box<RawConn>),
    Managed(Box<Managed>),
}

/// A connection of the `redis` crate, and what it takes to open it again.
pub(crate) struct Managed {
    client: redis::Client,
    config: RedisConfig,
    conn: Conn,
    /// Troubles of the connections replaced after a timeout.
    troubles: u64,
}

impl ReadConn {
    /// A connection for `client` (not connected yet: the first call
    /// connects).
    pub(crate) fn open(client: &redis::Client, config: &RedisConfig) -> Result<Self, TransportError> {
        match RawConn::new(client, config) {
            Some(raw) => Ok(ReadConn::Raw(Box::new(raw))),
            None => Ok(ReadConn::Managed(Box::new(Managed {
                client: client.clone(),
                config: config.clone(),
                conn: Conn::open(client, config, Purpose::Blocking)?,
                troubles: 0,
            }))),
        }
    }

    /// How many calls on this connection failed or were retried after a
    /// lost connection (see [`RawConn::troubles`] and [`Conn::troubles`]).
    pub(crate) fn troubles(&self) -> u64 {
        match self {
            ReadConn::Raw(raw) => raw.troubles(),
            ReadConn::Managed(m) => m.troubles + m.conn.troubles(),
        }
    }

    /// Send `cmd` and wait for its reply, at most `limit`. A server error
    /// reply is an error.
    pub(crate) async fn call(&mut self, what: &str, cmd: &Cmd, limit: Duration) -> Result<Reply<'_>, TransportError> {
        match self {
            ReadConn::Raw(raw) => raw
                .call_one(what, &cmd.get_packed_command(), limit)
                .await
                .map(Reply::Raw),
            ReadConn::Managed(m) => match m.conn.query_within(what, cmd, limit).await {
                Ok(v) => Ok(Reply::Value(v)),
                Err(e) => {
                    if e.kind == TransportErrorKind::Timeout {
                        // The connection may still be blocked in Redis: start afresh.
                        m.troubles += m.conn.troubles();
                        m.conn = Conn::open(&m.client, &m.config, Purpose::Blocking)?;
                    }
                    Err(e)
                }
            },
        }
    }
}
