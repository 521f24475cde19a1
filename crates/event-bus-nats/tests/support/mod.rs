//! Test fixtures: the machine's NATS (127.0.0.1:4222, required: a test that
//! cannot reach it fails saying so; `EVENT_BUS_TEST_NATS_URL` overrides
//! it) and nats-server instances of a test's own (a free port, a data dir
//! in a tempdir), for the cases that restart or kill the server.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_bus_nats::{NatsSettings, NatsTransport};
use openedx_events::config::Settings;

/// The shared server the tests use.
pub fn shared_url() -> String {
    std::env::var("EVENT_BUS_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string())
}

/// Settings for `url`, plus `extra` pairs.
pub fn settings(url: &str, extra: &[(&str, &str)]) -> Settings {
    let mut s = Settings::new();
    s.set("EVENT_BUS_NATS_URL", url);
    s.set("EVENT_BUS_NATS_OPERATION_TIMEOUT", "5");
    for (k, v) in extra {
        s.set(*k, *v);
    }
    s
}

/// Connect, failing the test with a clear message when there is no server.
pub async fn connect(settings: &Settings) -> Arc<NatsTransport> {
    let parsed = NatsSettings::from_settings(settings).unwrap_or_else(|e| panic!("settings: {e}"));
    let urls = parsed.redacted_urls();
    match NatsTransport::connect(parsed).await {
        Ok(t) => Arc::new(t),
        Err(e) => panic!(
            "these tests need a NATS server with JetStream at {urls} (the machine runs one on 127.0.0.1:4222; \
             start it with `nats-server -js` or set EVENT_BUS_TEST_NATS_URL): {e}"
        ),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// A nats-server of the test's own with JetStream, on a free port with its
/// store in a temporary directory (so streams survive a restart); killed
/// when dropped.
pub struct OwnServer {
    port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
    child: Mutex<Option<Child>>,
}

impl OwnServer {
    /// Start one (with extra command-line arguments, e.g. `--user`) and
    /// wait until JetStream answers.
    pub fn start(args: &[&str]) -> Self {
        let server = OwnServer {
            port: free_port(),
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}")),
            args: args.iter().map(|a| a.to_string()).collect(),
            child: Mutex::new(None),
        };
        server.spawn().unwrap_or_else(|e| panic!("{e}"));
        server
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&self) -> Result<(), String> {
        let log = self.dir.path().join("nats.log");
        let child = Command::new("/usr/sbin/nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.dir.path().join("store"))
            .arg("-l")
            .arg(&log)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start /usr/sbin/nats-server (this test needs it): {e}"))?;
        *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("Server is ready")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("nats-server on port {} did not start:\n{text}", self.port));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Kill the process (SIGKILL: nothing is flushed on the way out) and
    /// wait for it to end.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop and start again on the same port and store, waiting until it
    /// is ready.
    pub fn restart(&self) -> Result<(), String> {
        self.kill();
        let _ = std::fs::remove_file(self.dir.path().join("nats.log"));
        self.spawn()
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
    }
}
