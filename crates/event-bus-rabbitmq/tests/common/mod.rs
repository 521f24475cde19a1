//! Helpers of the integration tests: the machine's RabbitMQ on
//! 127.0.0.1:5672 (required: a test that cannot reach it fails saying so)
//! and RabbitMQ nodes the tests start themselves, on other ports with data
//! in a temporary directory, for restarts.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_bus_rabbitmq::{RabbitMqSettings, RabbitMqTransport};
use openedx_events::bus::Transport;

/// The shared broker's URL (`EVENT_BUS_TEST_RABBITMQ_URL` overrides it).
pub fn shared_url() -> String {
    std::env::var("EVENT_BUS_TEST_RABBITMQ_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Settings for a URL with short timeouts for tests.
pub fn settings(url: &str) -> RabbitMqSettings {
    let mut s = RabbitMqSettings::new(url);
    s.operation_timeout = Duration::from_secs(10);
    s.heartbeat = 5;
    s.retry_delays_ms = vec![50, 100, 250, 500, 1000, 2000, 5000, 30_000];
    s
}

/// A transport on `url`, failing the test with a clear message when no
/// broker answers.
pub async fn connect(url: &str) -> Arc<dyn Transport> {
    match RabbitMqTransport::connect(settings(url)).await {
        Ok(t) => Arc::new(t),
        Err(e) => panic!(
            "these tests need a RabbitMQ broker at {} (the machine runs one on 127.0.0.1:5672; \
             start it with `service rabbitmq-server start` or set EVENT_BUS_TEST_RABBITMQ_URL): {e}",
            openedx_events::config::redact_url(url)
        ),
    }
}

fn free_port() -> u16 {
    // The distribution port is the AMQP port + 20000: stay below 45535.
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        let candidate = 20_000 + port % 25_000;
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(candidate) && free(candidate + 20_000) {
            return candidate;
        }
    }
    panic!("no free pair of ports for a RabbitMQ node");
}

/// A RabbitMQ node of the test's own: `rabbitmq-server` run as root with
/// its own node name, ports, data and log directories, cookie and
/// configuration (no plugins). Stopped when dropped.
pub struct OwnNode {
    port: u16,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
}

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

impl OwnNode {
    /// Start one and wait until its AMQP port answers.
    pub fn start() -> Self {
        let node = OwnNode {
            port: free_port(),
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}")),
            child: Mutex::new(None),
        };
        node.write_config()
            .unwrap_or_else(|e| panic!("cannot prepare the RabbitMQ node: {e}"));
        node.spawn().unwrap_or_else(|e| panic!("{e}"));
        node
    }

    fn name(&self) -> String {
        format!("evbus-test-{}@localhost", self.port)
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Its AMQP address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn write_config(&self) -> std::io::Result<()> {
        let d = self.dir.path();
        std::fs::create_dir_all(d.join("mnesia"))?;
        std::fs::create_dir_all(d.join("log"))?;
        std::fs::write(d.join("enabled_plugins"), "[].\n")?;
        std::fs::write(
            d.join("rabbitmq.conf"),
            format!("listeners.tcp.default = {}\nloopback_users = none\n", self.port),
        )?;
        let cookie = d.join(".erlang.cookie");
        std::fs::write(&cookie, format!("evbustest{}", self.port))?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o400))
    }

    fn env(&self, cmd: &mut Command) {
        let d = self.dir.path();
        cmd.env("HOME", d)
            .env("RABBITMQ_NODENAME", self.name())
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", (u32::from(self.port) + 20_000).to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq"))
            .current_dir(d);
    }

    fn spawn(&self) -> Result<(), String> {
        if !Path::new(SERVER).exists() {
            return Err(format!(
                "{SERVER} is missing: the restart tests need a RabbitMQ installation"
            ));
        }
        let mut cmd = Command::new(SERVER);
        self.env(&mut cmd);
        let out = std::fs::File::create(self.dir.path().join("server.out")).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {SERVER}: {e}"))?;
        *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.path().join("server.out")).unwrap_or_default();
                return Err(format!(
                    "RabbitMQ node {} did not open port {}:\n{log}",
                    self.name(),
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn stop(&self) {
        let mut cmd = Command::new(CTL);
        self.env(&mut cmd);
        let _ = cmd
            .args(["-n", &self.name(), "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut c) = child.take() {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stop the node and start it again on the same port and data.
    pub fn restart(&self) -> Result<(), String> {
        self.stop();
        self.spawn()
    }
}

impl Drop for OwnNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Names of the shared broker's queues or exchanges (`what`: `queues` or
/// `exchanges`), through `rabbitmqctl` (empty when it cannot tell).
fn list(what: &str) -> Vec<String> {
    let out = Command::new("/usr/sbin/rabbitmqctl")
        .args([&format!("list_{what}"), "-q", "--no-table-headers", "name"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .collect(),
        _ => Vec::new(),
    }
}

/// Delete the shared broker's queues and exchanges whose names start with
/// one of `topics` (what a test's topics left: exchanges, backlogs, group
/// and retry queues, dead-letter topics). Best effort, from a thread of its
/// own (callable from `Drop`, inside or outside a runtime).
pub fn delete_topics(topics: Vec<String>) {
    if topics.is_empty() || std::env::var_os("EVENT_BUS_TEST_RABBITMQ_URL").is_some() {
        return;
    }
    let worker = std::thread::spawn(move || {
        let mine = |name: &String| topics.iter().any(|t| name.starts_with(t.as_str()));
        let queues: Vec<String> = list("queues").into_iter().filter(mine).collect();
        let exchanges: Vec<String> = list("exchanges").into_iter().filter(mine).collect();
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        rt.block_on(async {
            let Ok(conn) = lapin::Connection::connect(&shared_url(), lapin::ConnectionProperties::default()).await
            else {
                return;
            };
            let Ok(ch) = conn.create_channel().await else {
                return;
            };
            for q in &queues {
                let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
            }
            for e in &exchanges {
                let _ = ch.exchange_delete(e.as_str().into(), Default::default()).await;
            }
            let _ = conn.close(200, "cleaned up".into()).await;
        });
    });
    let _ = worker.join();
}

/// Records the topics a test made and deletes them when dropped.
#[derive(Default)]
pub struct Topics(Mutex<Vec<String>>);

impl Topics {
    /// A unique topic, remembered.
    pub fn make(&self, name: String) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(name.clone());
        name
    }
}

impl Drop for Topics {
    fn drop(&mut self) {
        delete_topics(std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner())));
    }
}
