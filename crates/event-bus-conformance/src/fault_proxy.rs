//! A TCP proxy the fault cases put between a client and its broker, to cut,
//! black-hole or slow the network without touching the machine's firewall.
//!
//! Chosen over a network namespace with `tc netem` or an iptables `DROP`
//! rule: it needs no privileges, no kernel modules and no cleanup if a test
//! dies, and it acts on one client's connections only, so the other tests
//! sharing the broker are not disturbed. What it imitates:
//!
//! - **black-hole**: it stops moving bytes either way and leaves every
//!   connection open; new connections are accepted and get nothing. To the
//!   client this is a broker that stops answering (packets dropped): calls
//!   hang until the client's own timeouts fire. On heal, what was held flows
//!   again, as TCP retransmission would deliver it.
//! - **reset**: every open connection is closed at once (the client sees
//!   the connection drop, as after a broker crash or a NAT timeout).
//! - **latency**: every chunk is held for a delay before it is forwarded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pass,
    Blackhole,
    Latency(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    mode: Mode,
    /// Bumped by `reset`: connections of an older generation close.
    generation: u64,
}

/// A running proxy; stops (closing every connection) when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<watch::Sender<State>>,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listen on a free loopback port, forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(
            watch::channel(State {
                mode: Mode::Pass,
                generation: 0,
            })
            .0,
        );
        let s = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(connection(client, upstream, s.subscribe()));
            }
        });
        Ok(FaultProxy { addr, state, accept })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop moving bytes, leaving connections open.
    pub fn blackhole(&self) {
        self.state.send_modify(|s| s.mode = Mode::Blackhole);
    }

    /// Hold every chunk for `delay` before forwarding it.
    pub fn latency(&self, delay: Duration) {
        self.state.send_modify(|s| s.mode = Mode::Latency(delay));
    }

    /// Forward normally again.
    pub fn heal(&self) {
        self.state.send_modify(|s| s.mode = Mode::Pass);
    }

    /// Close every open connection now (new ones are accepted).
    pub fn reset(&self) {
        self.state.send_modify(|s| s.generation += 1);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.state.send_modify(|s| s.generation += 1);
    }
}

async fn connection(client: TcpStream, upstream: SocketAddr, mut state: watch::Receiver<State>) {
    let generation = state.borrow().generation;
    // A black-holed network does not let a connection through either.
    if wait_for_traffic(&mut state, generation).await.is_none() {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pipe(cr, sw, state.clone(), generation);
    let down = pipe(sr, cw, state, generation);
    // Either direction ending (a close, a reset) ends both.
    tokio::select! {
        _ = up => {},
        _ = down => {},
    }
}

/// Wait while black-holed; `None` if the connection must close (a reset).
async fn wait_for_traffic(state: &mut watch::Receiver<State>, generation: u64) -> Option<Mode> {
    loop {
        let now = *state.borrow_and_update();
        if now.generation != generation {
            return None;
        }
        if now.mode != Mode::Blackhole {
            return Some(now.mode);
        }
        state.changed().await.ok()?;
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut state: watch::Receiver<State>,
    generation: u64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Not reading while black-holed: the bytes stay in the kernel's
        // buffers, as packets in flight would.
        if wait_for_traffic(&mut state, generation).await.is_none() {
            return;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = state.changed() => continue,
        };
        match wait_for_traffic(&mut state, generation).await {
            None => return,
            Some(Mode::Latency(d)) => tokio::time::sleep(d).await,
            Some(_) => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn echo(s: &mut TcpStream, text: &[u8], within: Duration) -> Option<Vec<u8>> {
        s.write_all(text).await.ok()?;
        let mut b = vec![0u8; text.len()];
        tokio::time::timeout(within, s.read_exact(&mut b)).await.ok()?.ok()?;
        Some(b)
    }

    #[tokio::test]
    async fn passes_blackholes_heals_and_resets() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        let short = Duration::from_millis(300);
        assert_eq!(echo(&mut s, b"one", short).await.as_deref(), Some(&b"one"[..]));
        proxy.blackhole();
        assert_eq!(
            echo(&mut s, b"two", short).await,
            None,
            "nothing comes back while black-holed"
        );
        proxy.heal();
        let mut b = [0u8; 3];
        tokio::time::timeout(short, s.read_exact(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&b, b"two", "what was held arrives after healing");
        proxy.latency(Duration::from_millis(150));
        let started = std::time::Instant::now();
        assert!(echo(&mut s, b"three", Duration::from_secs(2)).await.is_some());
        assert!(started.elapsed() >= Duration::from_millis(300), "both ways delayed");
        proxy.heal();
        proxy.reset();
        let mut b = [0u8; 1];
        let closed = tokio::time::timeout(short, s.read(&mut b)).await.unwrap();
        assert!(
            matches!(closed, Ok(0) | Err(_)),
            "the connection was closed: {closed:?}"
        );
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(echo(&mut s, b"four", short).await.as_deref(), Some(&b"four"[..]));
    }
}
