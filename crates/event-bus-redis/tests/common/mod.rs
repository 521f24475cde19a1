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

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
