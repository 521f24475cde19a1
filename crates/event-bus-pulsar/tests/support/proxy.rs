//! `ChecksumRestoringProxy`: a TEST FIXTURE for pulsar-lite's deviation from
//! the Pulsar binary protocol. It is not part of the backend.
//!
//! pulsar-lite 0.2.0 delivers MESSAGE frames without the `0x0e01` magic
//! number and the CRC32-C checksum that Apache Pulsar brokers put before the
//! message metadata. The Python/C++ client tolerates that; pulsar-rs (which
//! this backend uses unmodified) rejects the frame and cannot consume at all.
//! This proxy sits between pulsar-rs and pulsar-lite and:
//!
//! - re-inserts the magic number and the checksum (CRC32-C over everything
//!   after the checksum: metadata size, metadata, payload) into every MESSAGE
//!   frame coming from the broker that lacks them;
//! - rewrites the broker URLs in LOOKUP responses to the proxy's own address,
//!   so that the client's per-topic connections also go through the proxy;
//! - sets TCP_NODELAY on both sockets (or every round trip costs ~40 ms of
//!   Nagle plus delayed-ACK).
//!
//! Bytes from the client go to the broker untouched. Frame layout (all
//! integers big-endian), from the Pulsar binary protocol:
//!
//! ```text
//! [total size u32][command size u32][BaseCommand]                          simple command
//! [total size u32][command size u32][BaseCommand]
//!     [magic 0x0e01 u16][CRC32-C u32][metadata size u32][MessageMetadata][payload]   payload command
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prost::Message as _;
use pulsar::proto::{base_command, BaseCommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const MAGIC_CRC32C: [u8; 2] = [0x0e, 0x01];
const CASTAGNOLI: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
/// Larger than any frame the broker sends (5 MiB messages plus metadata).
const MAX_FRAME: usize = 64 * 1024 * 1024;

/// Counters, to show in test failures what the proxy did.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Client connections accepted.
    pub connections: AtomicU64,
    /// MESSAGE frames that needed the magic and checksum.
    pub checksums_restored: AtomicU64,
    /// LOOKUP responses rewritten.
    pub lookups_rewritten: AtomicU64,
    /// Commands seen, by direction and type (for diagnosing failures).
    pub commands: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl ProxyStats {
    fn count(&self, direction: &str, body: &[u8]) {
        let Some(size) = body.get(..4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes) else {
            return;
        };
        let Some(command) = body.get(4..4 + size as usize).and_then(|c| BaseCommand::decode(c).ok()) else {
            return;
        };
        let name = base_command::Type::try_from(command.r#type)
            .map(|t| format!("{direction} {t:?}"))
            .unwrap_or_else(|_| format!("{direction} {}", command.r#type));
        if let Ok(mut map) = self.commands.lock() {
            *map.entry(name).or_insert(0) += 1;
        }
    }
}

/// A TCP proxy in front of a pulsar-lite broker; see the module docs.
/// It runs on its own thread and runtime, so it outlives any one test's
/// runtime, and stops when dropped.
pub struct ChecksumRestoringProxy {
    addr: SocketAddr,
    stats: Arc<ProxyStats>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ChecksumRestoringProxy {
    /// Listen on a free loopback port and forward to `upstream`.
    pub fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let stats = Arc::new(ProxyStats::default());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("pulsar-lite-proxy")
            .build()?;
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("pulsar-lite-proxy".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("checksum-restoring proxy: cannot listen: {e}");
                            return;
                        }
                    };
                    let own_url = format!("pulsar://{addr}");
                    tokio::select! {
                        _ = accept_loop(listener, upstream, own_url, thread_stats) => {},
                        _ = stop_rx => {},
                    }
                });
                runtime.shutdown_background();
            })?;
        Ok(ChecksumRestoringProxy {
            addr,
            stats,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `pulsar://127.0.0.1:<port>` of the proxy.
    pub fn url(&self) -> String {
        format!("pulsar://{}", self.addr)
    }

    /// What the proxy did so far.
    pub fn stats(&self) -> &ProxyStats {
        &self.stats
    }
}

impl Drop for ChecksumRestoringProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, own_url: String, stats: Arc<ProxyStats>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let own_url = own_url.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            let Ok(broker) = TcpStream::connect(upstream).await else {
                // The broker is down (e.g. restarting): the client sees a
                // closed connection and retries.
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = broker.set_nodelay(true);
            let (mut client_read, mut client_write) = client.into_split();
            let (mut broker_read, broker_write) = broker.into_split();
            let mut broker_write = broker_write;
            let up = copy_frames(&mut client_read, &mut broker_write, &stats);
            let down = forward_frames(&mut broker_read, &mut client_write, &own_url, &stats);
            // When either side closes, close both.
            tokio::select! {
                _ = up => {},
                _ = down => {},
            }
        });
    }
}

/// Copy client frames to the broker as they are (counting them).
async fn copy_frames(
    from: &mut (impl AsyncReadExt + Unpin),
    to: &mut (impl AsyncWriteExt + Unpin),
    stats: &ProxyStats,
) -> std::io::Result<()> {
    loop {
        let mut size = [0u8; 4];
        from.read_exact(&mut size).await?;
        let total = u32::from_be_bytes(size) as usize;
        if total > MAX_FRAME {
            return Err(std::io::Error::other(format!("frame of {total} bytes")));
        }
        let mut body = vec![0u8; total];
        from.read_exact(&mut body).await?;
        stats.count(">", &body);
        to.write_all(&frame(&body)).await?;
    }
}

/// Copy broker frames to the client, fixing them on the way.
async fn forward_frames(
    from: &mut (impl AsyncReadExt + Unpin),
    to: &mut (impl AsyncWriteExt + Unpin),
    own_url: &str,
    stats: &ProxyStats,
) -> std::io::Result<()> {
    loop {
        let mut size = [0u8; 4];
        from.read_exact(&mut size).await?;
        let total = u32::from_be_bytes(size) as usize;
        if total > MAX_FRAME {
            return Err(std::io::Error::other(format!("frame of {total} bytes")));
        }
        let mut body = vec![0u8; total];
        from.read_exact(&mut body).await?;
        stats.count("<", &body);
        let out = fix_frame(&body, own_url, stats).unwrap_or_else(|| frame(&body));
        to.write_all(&out).await?;
    }
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The fixed frame (with its size prefix), or `None` to forward it as is.
/// `body` is the frame without its total-size prefix.
pub fn fix_frame(body: &[u8], own_url: &str, stats: &ProxyStats) -> Option<Vec<u8>> {
    let command_size = u32::from_be_bytes(body.get(..4)?.try_into().ok()?) as usize;
    let command_bytes = body.get(4..4 + command_size)?;
    let rest = &body[4 + command_size..];
    let mut command = BaseCommand::decode(command_bytes).ok()?;
    match base_command::Type::try_from(command.r#type).ok()? {
        base_command::Type::Message if !rest.is_empty() && !rest.starts_with(&MAGIC_CRC32C) => {
            stats.checksums_restored.fetch_add(1, Ordering::Relaxed);
            let checksum = CASTAGNOLI.checksum(rest);
            let mut out = Vec::with_capacity(body.len() + 10);
            out.extend_from_slice(&((body.len() + 6) as u32).to_be_bytes());
            out.extend_from_slice(&body[..4 + command_size]);
            out.extend_from_slice(&MAGIC_CRC32C);
            out.extend_from_slice(&checksum.to_be_bytes());
            out.extend_from_slice(rest);
            Some(out)
        }
        base_command::Type::LookupResponse => {
            let lookup = command.lookup_topic_response.as_mut()?;
            stats.lookups_rewritten.fetch_add(1, Ordering::Relaxed);
            if lookup.broker_service_url.is_some() {
                lookup.broker_service_url = Some(own_url.to_string());
            }
            if lookup.broker_service_url_tls.is_some() {
                lookup.broker_service_url_tls = Some(own_url.to_string());
            }
            let encoded = command.encode_to_vec();
            let mut new_body = Vec::with_capacity(4 + encoded.len() + rest.len());
            new_body.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
            new_body.extend_from_slice(&encoded);
            new_body.extend_from_slice(rest);
            Some(frame(&new_body))
        }
        _ => None,
    }
}
