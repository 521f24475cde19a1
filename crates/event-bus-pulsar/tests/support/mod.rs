//! Test fixtures: which broker the tests use.
//!
//! By default every test binary starts one pulsar-lite broker ([`PulsarLite`])
//! and one [`ChecksumRestoringProxy`] in front of it (fixtures for
//! pulsar-lite's protocol deviation; neither is part of the backend). When the
//! environment variable `PULSAR_URL` is set, the same tests run against that
//! broker (a real Apache Pulsar) directly, without pulsar-lite and without
//! the proxy.
#![allow(dead_code)]

pub mod proxy;
pub mod pulsar_lite;

use std::sync::{Arc, OnceLock};

use event_bus_pulsar::{PulsarSettings, PulsarTransport};
use openedx_events::config::Settings;
pub use proxy::ChecksumRestoringProxy;
pub use pulsar_lite::PulsarLite;

/// A broker for the tests.
pub enum TestBroker {
    /// `PULSAR_URL`: a real broker, used directly.
    External(String),
    /// pulsar-lite, reached by pulsar-rs through the proxy.
    Lite {
        /// The broker (behind a mutex so a test can restart it).
        broker: std::sync::Mutex<PulsarLite>,
        /// The proxy pulsar-rs connects to.
        proxy: ChecksumRestoringProxy,
        /// The broker's own URL (for the Python client).
        direct_url: String,
    },
}

impl TestBroker {
    /// `PULSAR_URL`, or a new pulsar-lite with its proxy. Panics with the
    /// reason when pulsar-lite cannot start: the tests must fail, not skip.
    pub fn start() -> TestBroker {
        if let Some(url) = external_url() {
            return TestBroker::External(url);
        }
        let broker = PulsarLite::start().unwrap_or_else(|e| {
            panic!("pulsar-lite (the test broker) could not start, so the Pulsar backend cannot be tested: {e}")
        });
        let proxy = ChecksumRestoringProxy::start(broker.addr())
            .unwrap_or_else(|e| panic!("the checksum-restoring proxy could not start: {e}"));
        let direct_url = broker.url();
        TestBroker::Lite {
            broker: std::sync::Mutex::new(broker),
            proxy,
            direct_url,
        }
    }

    /// One broker shared by the tests of this binary.
    pub fn shared() -> &'static TestBroker {
        static SHARED: OnceLock<TestBroker> = OnceLock::new();
        SHARED.get_or_init(TestBroker::start)
    }

    /// Whether this is pulsar-lite (not a real Pulsar).
    pub fn is_lite(&self) -> bool {
        matches!(self, TestBroker::Lite { .. })
    }

    /// The URL the Rust backend uses.
    pub fn url(&self) -> String {
        match self {
            TestBroker::External(url) => url.clone(),
            TestBroker::Lite { proxy, .. } => proxy.url(),
        }
    }

    /// The URL other clients (Python) use.
    pub fn direct_url(&self) -> String {
        match self {
            TestBroker::External(url) => url.clone(),
            TestBroker::Lite { direct_url, .. } => direct_url.clone(),
        }
    }

    /// Backend settings for this broker.
    pub fn settings(&self) -> Settings {
        let mut s = Settings::new();
        s.set("EVENT_BUS_PULSAR_URL", self.url());
        if let Ok(token) = std::env::var("PULSAR_TOKEN") {
            s.set("EVENT_BUS_PULSAR_TOKEN", token);
        }
        s
    }

    /// A new transport (a new client and connection).
    pub async fn transport_with(&self, settings: Settings) -> Arc<PulsarTransport> {
        let parsed = PulsarSettings::from_settings(&settings).unwrap_or_else(|e| panic!("settings: {e}"));
        let transport = PulsarTransport::connect(parsed)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url()));
        Arc::new(transport)
    }

    /// Restart pulsar-lite (same port, same data), or run
    /// `PULSAR_RESTART_COMMAND` (e.g. `docker restart pulsar`) for an
    /// external broker and wait until it accepts connections again.
    pub fn restart(&self) -> Result<(), String> {
        match self {
            TestBroker::External(url) => restart_external(url),
            TestBroker::Lite { broker, .. } => broker.lock().map_err(|_| "poisoned".to_string())?.restart(),
        }
    }

    /// The end of pulsar-lite's log (empty for an external broker).
    pub fn log_tail(&self) -> String {
        match self {
            TestBroker::External(_) => String::new(),
            TestBroker::Lite { broker, .. } => {
                let log = broker.lock().map(|b| b.log()).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                lines[lines.len().saturating_sub(40)..].join("\n")
            }
        }
    }

    /// What the proxy did (empty for an external broker).
    pub fn proxy_report(&self) -> String {
        match self {
            TestBroker::External(_) => String::new(),
            TestBroker::Lite { proxy, .. } => format!("{:?}", proxy.stats()),
        }
    }
}

/// `PULSAR_URL`, when set and not empty.
pub fn external_url() -> Option<String> {
    std::env::var("PULSAR_URL").ok().filter(|s| !s.is_empty())
}

fn restart_external(url: &str) -> Result<(), String> {
    let command = std::env::var("PULSAR_RESTART_COMMAND").map_err(|_| {
        "set PULSAR_RESTART_COMMAND to a shell command that restarts the broker at PULSAR_URL".to_string()
    })?;
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .status()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if !status.success() {
        return Err(format!("{command:?} failed ({status})"));
    }
    let authority = url.split("://").nth(1).unwrap_or("").trim_end_matches('/');
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if let Ok(mut addrs) = std::net::ToSocketAddrs::to_socket_addrs(authority) {
            if addrs.any(|a| std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_millis(500)).is_ok()) {
                return Ok(());
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "{authority} did not accept connections within 120 s of the restart"
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
