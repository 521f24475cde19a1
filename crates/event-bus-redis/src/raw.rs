//! A RESP2 connection of our own, for the two hot paths: reading entries
//! (`XREADGROUP`) and writing them (pipelines of `XADD`); and the choice
//! between it and the `redis` crate, made in one place: [`RawConn::new`]
//! gives one for a plain TCP URL (`redis://`), `None` for TLS (`rediss://`)
//! and Unix sockets, whose reads ([`crate::reader`]) and publishes
//! ([`crate::publisher`]) then go through the `redis` crate. Every other
//! command, on every URL, goes through the `redis` crate ([`crate::conn`]).
//!
//! Why two client paths: the `redis` crate turns every reply into a tree of
//! values with a general-purpose parser; on the hot paths that was the
//! largest cost of a consumer (and a large one of a producer). Here a
//! request is bytes written at once and its replies stay in one buffer,
//! read in place with [`crate::resp`]: that is what gives the Redis figures
//! of BENCHMARKS.md (publishing at about 0.7 of the rate of a raw pipelined
//! `redis-benchmark` `XADD`). Serving TLS here too would mean a TLS client
//! of our own (handshake, server names, certificate roots) beside the one
//! the `redis` crate already has, and serving plain TCP through the `redis`
//! crate would give that throughput up; so each path serves what it does
//! best, and both give the same deliveries and errors.
//!
//! The connection logs in (`AUTH`) and selects the database as the `redis`
//! crate would, connects lazily, reconnects after a dropped connection
//! (retrying the call once, as the command connection does), and starts
//! afresh after a timeout (the command may still be running in Redis).

use std::time::Duration;

use openedx_events::bus::transport::{TransportError, TransportErrorKind};
use redis::ConnectionAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::digits::Digits;
use crate::error::{no_reply, prefixed, server_error};
use crate::resp::Frame;
use crate::settings::{Redactor, RedisConfig};

/// The read buffer starts this big, and goes back to it after a large reply.
const BUFFER: usize = 64 * 1024;

/// See the module documentation.
pub(crate) struct RawConn {
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
    db: i64,
    connect_timeout: Duration,
    secret: Redactor,
    io: Option<Io>,
    /// Attempts that failed (see [`RawConn::troubles`]).
    troubles: u64,
}

struct Io {
    stream: TcpStream,
    /// `buf[..filled]` holds bytes read; the replies handed out last are at
    /// the start, `used` bytes long.
    buf: Vec<u8>,
    filled: usize,
    used: usize,
    frame: Frame,
}

/// A failure, and whether it was a dropped connection (worth one retry).
struct Failure(TransportError, bool);

impl RawConn {
    /// A connection to the server of `client`, if it is reached over plain
    /// TCP (`None` for TLS and Unix sockets). Not connected yet.
    pub(crate) fn new(client: &redis::Client, config: &RedisConfig) -> Option<Self> {
        let info = client.get_connection_info();
        let ConnectionAddr::Tcp(host, port) = info.addr() else {
            return None;
        };
        let settings = info.redis_settings();
        Some(RawConn {
            host: host.clone(),
            port: *port,
            username: settings.username().map(str::to_string),
            password: settings.password().map(str::to_string),
            db: settings.db(),
            connect_timeout: config.command_timeout,
            secret: config.redactor(),
            io: None,
            troubles: 0,
        })
    }

    /// Send `packed` (one or more commands) and read `replies` replies, at
    /// most `limit`; their bytes. Error replies are in there: see
    /// [`RawConn::error`].
    pub(crate) async fn call(
        &mut self,
        what: &str,
        packed: &[u8],
        replies: usize,
        limit: Duration,
    ) -> Result<&[u8], TransportError> {
        let reused = self.io.is_some();
        let len = match self.attempt(what, packed, replies, limit).await {
            Ok(len) => len,
            Err(Failure(e, true)) if reused => {
                tracing::debug!(error = %e, "Redis connection dropped; retrying once on a new connection");
                self.attempt(what, packed, replies, limit)
                    .await
                    .map_err(|Failure(e, _)| e)?
            }
            Err(Failure(e, _)) => return Err(e),
        };
        let io = self
            .io
            .as_ref()
            .ok_or_else(|| TransportError::connection(prefixed(what, "the connection is gone".into())))?;
        Ok(&io.buf[..len])
    }

    /// Send one command and read its reply; an error reply is an error.
    pub(crate) async fn call_one(
        &mut self,
        what: &str,
        packed: &[u8],
        limit: Duration,
    ) -> Result<&[u8], TransportError> {
        let secret = self.secret.clone();
        let reply = self.call(what, packed, 1, limit).await?;
        match reply.strip_prefix(b"-") {
            Some(text) => Err(server_error(what, text.strip_suffix(b"\r\n").unwrap_or(text), &secret)),
            None => Ok(reply),
        }
    }

    /// How many calls failed (a lost connection, a timeout), the ones
    /// retried on a new connection included: a command may have run in
    /// Redis without its reply arriving.
    pub(crate) fn troubles(&self) -> u64 {
        self.troubles
    }

    /// What to scrub from errors.
    pub(crate) fn secret(&self) -> &Redactor {
        &self.secret
    }

    /// Connect if needed, send, read the replies within `limit`; any
    /// failure drops the connection.
    async fn attempt(&mut self, what: &str, packed: &[u8], replies: usize, limit: Duration) -> Result<usize, Failure> {
        let result = tokio::time::timeout(limit, async {
            if self.io.is_none() {
                self.io = Some(self.connect(what).await?);
            }
            let io = self
                .io
                .as_mut()
                .ok_or_else(|| Failure(TransportError::connection("no connection"), true))?;
            io.round_trip(packed, replies)
                .await
                .map_err(|e| io_failure(what, &e, &self.secret))
        })
        .await;
        match result {
            Ok(Ok(len)) => Ok(len),
            Ok(Err(f)) => {
                self.io = None;
                self.troubles += 1;
                Err(f)
            }
            Err(_) => {
                self.io = None;
                self.troubles += 1;
                Err(Failure(no_reply(what, limit), false))
            }
        }
    }

    /// Connect, log in and select the database.
    async fn connect(&self, what: &str) -> Result<Io, Failure> {
        let target = format!("{}:{}", self.host, self.port);
        let stream = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| {
            Failure(
                TransportError::new(
                    TransportErrorKind::Timeout,
                    prefixed(
                        what,
                        format!("cannot connect to {target} within {:?}", self.connect_timeout),
                    ),
                ),
                false,
            )
        })?
        .map_err(|e| {
            Failure(
                TransportError::connection(
                    self.secret
                        .scrub(&prefixed(what, format!("cannot connect to {target}: {e}")))
                        .into_owned(),
                ),
                false,
            )
        })?;
        let _ = stream.set_nodelay(true);
        let mut io = Io {
            stream,
            buf: vec![0; BUFFER],
            filled: 0,
            used: 0,
            frame: Frame::default(),
        };
        let mut hello: Vec<(&str, Vec<&[u8]>)> = Vec::new();
        if let Some(password) = &self.password {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &self.username {
                auth.push(user.as_bytes());
            }
            auth.push(password.as_bytes());
            hello.push(("AUTH", auth));
        }
        let mut db = Digits::default();
        if self.db != 0 {
            hello.push(("SELECT", vec![b"SELECT", db.format_signed(self.db)]));
        }
        for (name, args) in hello {
            let mut packed = Packer::new(args.len(), 128);
            for a in args {
                packed.arg(a);
            }
            let len = io
                .round_trip(&packed.into_bytes(), 1)
                .await
                .map_err(|e| io_failure(what, &e, &self.secret))?;
            if let Some(text) = io.buf[..len].strip_prefix(b"-") {
                let text = text.strip_suffix(b"\r\n").unwrap_or(text);
                return Err(Failure(
                    server_error(&format!("{what} ({name})"), text, &self.secret),
                    false,
                ));
            }
        }
        Ok(io)
    }
}

impl Io {
    /// Send packed commands and read `replies` replies; their length (they
    /// are at the start of `buf`).
    async fn round_trip(&mut self, packed: &[u8], replies: usize) -> std::io::Result<usize> {
        // Forget the previous replies (nothing else is normally there).
        self.buf.copy_within(self.used..self.filled, 0);
        self.filled -= self.used;
        self.used = 0;
        if self.buf.len() > 16 * BUFFER && self.filled <= BUFFER {
            self.buf.truncate(BUFFER);
            self.buf.shrink_to_fit();
        }
        self.stream.write_all(packed).await?;
        let mut done = 0;
        let mut end = 0;
        self.frame.reset();
        while done < replies {
            match self.frame.scan(self.buf.get(end..self.filled).unwrap_or_default()) {
                Ok(Some(len)) => {
                    end += len;
                    done += 1;
                    self.frame.reset();
                    continue;
                }
                Ok(None) => {}
                Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())),
            }
            if self.filled == self.buf.len() {
                let grown = self.buf.len() * 2;
                self.buf.resize(grown, 0);
            }
            let n = self.stream.read(&mut self.buf[self.filled..]).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "Redis closed the connection",
                ));
            }
            self.filled += n;
        }
        self.used = end;
        Ok(end)
    }
}

/// A command packed in RESP (`*<n>` then `$<len> <bytes>` per argument),
/// ready to be written as is.
pub(crate) struct Packer {
    out: Vec<u8>,
}

impl Packer {
    /// A command of `args` arguments, about `size` bytes once packed.
    pub(crate) fn new(args: usize, size: usize) -> Self {
        let mut out = Vec::with_capacity(size + 16);
        out.push(b'*');
        out.extend_from_slice(Digits::default().format(args as u64));
        out.extend_from_slice(b"\r\n");
        Packer { out }
    }

    /// Add an argument (the caller adds exactly the number it announced).
    pub(crate) fn arg(&mut self, a: &[u8]) {
        self.out.push(b'$');
        self.out.extend_from_slice(Digits::default().format(a.len() as u64));
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(a);
        self.out.extend_from_slice(b"\r\n");
    }

    /// The bytes.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.out
    }
}

fn io_failure(what: &str, e: &std::io::Error, secret: &Redactor) -> Failure {
    let protocol = e.kind() == std::io::ErrorKind::InvalidData;
    let kind = if protocol {
        TransportErrorKind::Other
    } else {
        TransportErrorKind::Connection
    };
    Failure(
        TransportError::new(kind, secret.scrub(&prefixed(what, e.to_string())).into_owned()),
        !protocol,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_commands_are_what_the_redis_crate_writes() {
        let mut p = Packer::new(4, 0);
        for a in [&b"XADD"[..], b"s", b"", b"\x00\xff\r\n"] {
            p.arg(a);
        }
        let mut cmd = redis::cmd("XADD");
        cmd.arg("s").arg("").arg(&b"\x00\xff\r\n"[..]);
        assert_eq!(p.into_bytes(), cmd.get_packed_command());
    }
}
