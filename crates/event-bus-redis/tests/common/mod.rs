//! Helpers of the integration tests: the Redis on 127.0.0.1:6379 (required:
//! a test that cannot reach it fails saying so) and a second redis-server
//! the tests start themselves.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use event_bus_redis::{RedisConfig, RedisTransport};

pub mod backend;

/// The Redis the tests use (`EVENT_BUS_TEST_REDIS_URL` overrides it).
pub fn redis_url() -> String {
    std::env::var("EVENT_BUS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_string())
}

/// Connect to the test Redis, failing the test with a clear message when it
/// is not there.
pub async fn connect(url: &str) -> RedisTransport {
    let config = RedisConfig::new(url).unwrap_or_else(|e| panic!("bad test URL: {e}"));
    RedisTransport::connect(config).await.unwrap_or_else(|e| {
        panic!(
            "these tests need a Redis server at {url} (the machine runs one on 127.0.0.1:6379; \
             start it with `redis-server --daemonize yes` or set EVENT_BUS_TEST_REDIS_URL): {e}"
        )
    })
}

/// A plain synchronous connection for checks and clean-up.
pub fn sync_conn(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
        .unwrap_or_else(|e| panic!("these tests need a Redis server at {url}: {e}"))
}

/// Run a command on a fresh synchronous connection.
pub fn redis_cmd<T: redis::FromRedisValue>(url: &str, cmd: &redis::Cmd) -> T {
    let mut c = sync_conn(url);
    cmd.query(&mut c)
        .unwrap_or_else(|e| panic!("redis command failed: {e}"))
}

/// Delete streams (best effort).
pub fn delete_streams(url: &str, streams: &[String]) {
    if streams.is_empty() {
        return;
    }
    if let Ok(mut c) = redis::Client::open(url).and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2))) {
        let mut cmd = redis::cmd("DEL");
        for s in streams {
            cmd.arg(s);
        }
        let _: Result<i64, _> = cmd.query(&mut c);
    }
}

/// A unique stream name.
pub fn unique(name: &str) -> String {
    format!("test-redis-{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// A redis-server of the test's own, on a free port with a temporary
/// directory and an append-only file (so its data survive a restart);
/// killed when dropped, even when the test fails.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

impl RedisServer {
    /// Start one and wait until it answers.
    pub fn start() -> Self {
        let server = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}")),
            child: Mutex::new(None),
        };
        server.spawn().unwrap_or_else(|e| panic!("{e}"));
        server
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn(&self) -> Result<(), String> {
        let child = Command::new("/usr/bin/redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--daemonize",
                "no",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--save", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start /usr/bin/redis-server (the restart test needs it): {e}"))?;
        *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ok = redis::Client::open(self.url().as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if ok.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                return Err(format!(
                    "redis-server on port {} did not start: {ok:?}\n{log}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `SHUTDOWN` (which writes the append-only file), wait for the process
    /// to end, start it again on the same port and wait until it answers.
    pub fn restart(&self) -> Result<(), String> {
        if let Ok(mut c) =
            redis::Client::open(self.url().as_str()).and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        {
            let _: Result<(), _> = redis::cmd("SHUTDOWN").query(&mut c);
        }
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut child) = guard.take() {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        drop(guard);
        self.spawn()
    }
}

impl RedisServer {
    /// SIGKILL the server (no `SHUTDOWN`: whatever it had not written to its
    /// append-only file is gone, and replies it had not sent are lost) and
    /// wait for the process to end.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the server again (after [`RedisServer::kill`]) on the same port
    /// and directory, and wait until it answers.
    pub fn start_again(&self) -> Result<(), String> {
        self.spawn()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A TCP proxy in front of a server, controlled by the test: while
/// [`Proxy::swallow_replies`] is on, what the server sends is read and
/// dropped (commands still reach the server and run, their replies never
/// arrive), the way a reply is lost when the server dies between running a
/// command and answering it. A connection ends on both sides when either
/// side closes it.
pub struct Proxy {
    port: u16,
    swallow: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listen on a free port and forward each connection to
    /// `127.0.0.1:<target>`.
    pub async fn start(target: u16) -> Self {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("proxy cannot listen: {e}"));
        let port = listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"));
        let swallow = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = swallow.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if sw.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                    };
                    let down = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            match sr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(_) if flag.load(Ordering::SeqCst) => {}
                                Ok(n) => {
                                    if cw.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                    };
                    // Either side closing ends both.
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                    }
                });
            }
        });
        Proxy { port, swallow, task }
    }

    /// The URL of the server through the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Drop (`true`) or forward (`false`) what the server sends from now on.
    pub fn swallow_replies(&self, on: bool) {
        self.swallow.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
