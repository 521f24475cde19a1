//! Helpers of the telemetry tests: a consume scenario whose counts are
//! known, scraping the server, reading a series out of the text format, and
//! `promtool check metrics`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_bus_telemetry::{TelemetryOptions, TelemetryServer};
use openedx_events::bus::transport::OutgoingMessage;
use openedx_events::bus::{ConsumerOptions, EventBusConsumer, EventBusProducer, Transport};
use openedx_events::metadata::EventsMetadata;
use openedx_events::signal::Registry;
use openedx_events::{catalog, sample};
use tokio_util::sync::CancellationToken;

pub const LOGIN: &str = "org.openedx.learning.auth.session.login.completed.v1";

/// The server on a free port (one recorder per test process).
pub async fn server(stall_after: Duration) -> TelemetryServer {
    let mut options = TelemetryOptions::new(SocketAddr::from(([127, 0, 0, 1], 0)));
    options.stall_after = stall_after;
    TelemetryServer::start(options)
        .await
        .unwrap_or_else(|e| panic!("the telemetry server does not start: {e}"))
}

/// GET a path of the server: status and body.
pub async fn get(server: &TelemetryServer, path: &str) -> (u16, String) {
    let url = format!("http://{}{path}", server.local_addr());
    let response = reqwest::get(&url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (
        status,
        response.text().await.unwrap_or_else(|e| panic!("GET {url}: {e}")),
    )
}

/// The value of the one series `name` whose labels include `labels`
/// (`None` if there is none; a failure if there are several).
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            if n != name {
                return None;
            }
            let all = labels.iter().all(|(k, want)| rest.contains(&format!("{k}=\"{want}\"")));
            all.then(|| v.parse::<f64>().ok()).flatten()
        })
        .collect();
    assert!(found.len() <= 1, "several series {name}{labels:?}: {found:?}\n{text}");
    found.first().copied()
}

/// `promtool check metrics` on the text: its verdict, or a failure saying
/// promtool is missing (scripts/setup.sh installs Debian's `prometheus`).
pub fn promtool_check(text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("this test needs promtool (Debian package prometheus; scripts/setup.sh installs it): {e}")
        });
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("writing to promtool: {e}"));
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("promtool: {e}"));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A unique topic.
pub fn unique(name: &str) -> String {
    format!("telemetry-{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// What the scenario produced, to compare with the metrics.
pub struct Scenario {
    pub topic: String,
    pub group: String,
}

/// Produce 5 login events and one whose body does not decode, then consume
/// them: event 2 fails every time (dead-lettered after 2 attempts), event 3
/// fails once (retried in place, then handled). Expected, per the topic:
/// 6 received, 4 handled, 2 retried, 1 dead-lettered as receiver_failed and
/// 1 as undecodable (a decode failure), 7 receiver attempts, 5 sends.
pub async fn run_scenario(transport: Arc<dyn Transport>, name: &str) -> Scenario {
    let topic = unique(name);
    let group = "telemetry-group".to_string();
    let t = catalog::get(LOGIN).unwrap_or_else(|| panic!("{LOGIN} is in the catalog"));
    let producer = EventBusProducer::new(transport.clone(), None);
    let mut ids = Vec::new();
    let mut rng = sample::rng(7);
    for _ in 0..5 {
        let data = sample::event_data(t, &mut rng);
        let metadata = EventsMetadata::new(t.name(), 0);
        ids.push(metadata.id);
        producer
            .send(t, &topic, None, &data, &metadata)
            .await
            .unwrap_or_else(|e| panic!("send: {e}"));
    }
    let garbage = OutgoingMessage {
        topic: topic.clone(),
        event_type: t.clone(),
        metadata: EventsMetadata::new(t.name(), 0),
        key: None,
        body: vec![0xff, 0xff, 0xff],
    };
    transport
        .publish(&garbage)
        .await
        .unwrap_or_else(|e| panic!("publish: {e}"));

    let registry = Arc::new(Registry::with_catalog());
    let failures: Arc<Mutex<HashMap<uuid::Uuid, u32>>> = Arc::default();
    let (always, once) = (ids[1], ids[2]);
    registry
        .get(LOGIN)
        .unwrap_or_else(|| panic!("login is registered"))
        .connect("telemetry.flaky", move |event| {
            let id = event.metadata.id;
            let mut seen = failures.lock().unwrap_or_else(|p| p.into_inner());
            let n = seen.entry(id).or_insert(0);
            *n += 1;
            if id == always || (id == once && *n == 1) {
                return Err(format!("attempt {n} fails").into());
            }
            Ok(())
        });
    let mut o = ConsumerOptions::new(&topic, &group);
    o.start = openedx_events::bus::transport::StartPosition::Earliest;
    o.limit = Some(6);
    o.poll_timeout = Duration::from_millis(100);
    o.retry.max_attempts = 2;
    o.retry.initial_delay = Duration::from_millis(10);
    o.retry.max_delay = Duration::from_millis(10);
    o.retry.max_blocking = Duration::from_secs(5);
    let consumer = EventBusConsumer::new(transport, registry, o);
    let started = Instant::now();
    let stats = tokio::time::timeout(Duration::from_secs(60), consumer.consume(CancellationToken::new()))
        .await
        .unwrap_or_else(|_| panic!("the consumer did not finish in 60 s"))
        .unwrap_or_else(|e| panic!("the consumer failed: {e}"));
    assert_eq!(
        (stats.processed, stats.dead_lettered),
        (4, 2),
        "{stats:?} after {:?}",
        started.elapsed()
    );
    Scenario { topic, group }
}

/// Check the scenario's series in a scrape.
pub fn check_scenario(text: &str, s: &Scenario) {
    let t = s.topic.as_str();
    let g = s.group.as_str();
    let typed = [("topic", t), ("group", g), ("event_type", LOGIN)];
    let v = |name: &str, labels: &[(&str, &str)]| value(text, name, labels);
    assert_eq!(
        v("event_bus_consumer_messages_received_total", &typed),
        Some(6.0),
        "{text}"
    );
    assert_eq!(v("event_bus_consumer_messages_handled_total", &typed), Some(4.0));
    assert_eq!(v("event_bus_consumer_messages_retried_total", &typed), Some(2.0));
    assert_eq!(v("event_bus_consumer_decode_failures_total", &typed), Some(1.0));
    let mut dl = typed.to_vec();
    dl.push(("reason", "receiver_failed"));
    assert_eq!(v("event_bus_consumer_messages_dead_lettered_total", &dl), Some(1.0));
    dl.pop();
    dl.push(("reason", "undecodable"));
    assert_eq!(v("event_bus_consumer_messages_dead_lettered_total", &dl), Some(1.0));
    assert_eq!(v("event_bus_consumer_duplicates_skipped_total", &typed), Some(0.0));
    assert_eq!(v("event_bus_consumer_handle_duration_seconds_count", &typed), Some(7.0));
    assert_eq!(
        v("event_bus_consumer_end_to_end_latency_seconds_count", &typed),
        Some(4.0)
    );
    let bucket_all = [("topic", t), ("event_type", LOGIN), ("le", "+Inf")];
    assert_eq!(
        v("event_bus_consumer_handle_duration_seconds_bucket", &bucket_all),
        Some(7.0)
    );
    assert_eq!(v("event_bus_producer_sends_total", &[("topic", t)]), Some(5.0));
    assert_eq!(v("event_bus_producer_send_failures_total", &[("topic", t)]), Some(0.0));
    assert_eq!(
        v("event_bus_producer_send_duration_seconds_count", &[("topic", t)]),
        Some(5.0)
    );
    let plain = [("topic", t), ("group", g)];
    assert_eq!(v("event_bus_consumer_in_flight_messages", &plain), Some(0.0));
    assert_eq!(v("event_bus_consumer_poll_failures_total", &plain), Some(0.0));
    // Bounded cardinality: 6 messages, a dozen series of this topic, none
    // per event.
    let series = text.lines().filter(|l| !l.starts_with('#') && l.contains(t)).count();
    assert!(series < 80, "{series} series for one topic:\n{text}");
}

/// A redis-server of the test's own on a free port (no persistence), to
/// stop and start again; killed when dropped.
pub struct OwnRedis {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        let mut server = OwnRedis { port, child: None };
        server.start_again();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn start_again(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", ""])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("this test starts a redis-server of its own and cannot: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {} did not start in 15 s", self.port);
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Poll `path` until it answers `status`, for at most `within`.
pub async fn wait_for_status(server: &TelemetryServer, path: &str, status: u16, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let (got, body) = get(server, path).await;
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} still answers {got}, not {status}, after {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
