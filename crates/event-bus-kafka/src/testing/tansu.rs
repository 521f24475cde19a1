//! A **test fixture** running the `tansu` broker (a Kafka-compatible broker
//! written in Rust) on a free port.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// What to do when tansu is missing.
pub const TANSU_INSTALL_HINT: &str = "the tansu broker is needed for this test: run scripts/setup.sh, \
     which installs it with `cargo install tansu --locked --features dynostore,libsql` (15 to 25 minutes on \
     2 cores, once), or point TANSU_BIN at a tansu binary";

/// How to get a tansu with SQLite storage.
pub const TANSU_SQLITE_HINT: &str = "a tansu built with SQLite storage is needed: run scripts/setup.sh \
     (`cargo install tansu --locked --features dynostore,libsql`), or set TANSU_SQLITE_BIN to such a binary";

/// A running tansu broker; killed when dropped.
///
/// ```no_run
/// use event_bus_kafka::testing::TansuBroker;
/// let broker = TansuBroker::start().unwrap();
/// broker.create_topic("dev-user-login", 3).unwrap();
/// println!("bootstrap servers: {}", broker.bootstrap_servers());
/// ```
#[derive(Debug)]
pub struct TansuBroker {
    binary: PathBuf,
    storage: String,
    port: u16,
    child: Option<Child>,
    /// Its working directory (relative storage paths such as
    /// `sqlite://tansu.db` live here) and log; removed on drop.
    dir: PathBuf,
    log: PathBuf,
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// Wait until a broker answers a metadata request.
pub fn wait_for_broker(bootstrap_servers: &str, patience: Duration) -> Result<(), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Emerg)
        .create()
        .map_err(|e| format!("cannot create a Kafka client: {e}"))?;
    let deadline = Instant::now() + patience;
    loop {
        match consumer.fetch_metadata(None, Duration::from_millis(500)) {
            Ok(m) if !m.brokers().is_empty() => return Ok(()),
            Ok(_) => {}
            Err(e) if Instant::now() > deadline => {
                return Err(format!(
                    "the broker at {bootstrap_servers} did not answer within {patience:?}: {e}"
                ))
            }
            Err(_) => {}
        }
        if Instant::now() > deadline {
            return Err(format!("the broker at {bootstrap_servers} lists no brokers"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Create topics (ignoring those that exist) through the admin API, and wait
/// until the broker lists them with all their partitions. Blocking.
///
/// ```no_run
/// use event_bus_kafka::testing::{create_topics, wait_for_broker};
/// use std::time::Duration;
/// wait_for_broker("127.0.0.1:9092", Duration::from_secs(10)).unwrap();
/// create_topics("127.0.0.1:9092", &["dev-user-login", "dev-user-login-dlq"], 3).unwrap();
/// ```
pub fn create_topics(bootstrap_servers: &str, topics: &[&str], partitions: i32) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .create()
        .map_err(|e| format!("cannot create a Kafka admin client: {e}"))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = futures::executor::block_on(admin.create_topics(&new, &options))
        .map_err(|e| format!("cannot create topics {topics:?}: {e}"))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(format!("cannot create topic {name}: {code}")),
        }
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .create()
        .map_err(|e| format!("cannot create a Kafka client: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(15);
    for topic in topics {
        loop {
            let ready = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(2))
                .map(|m| {
                    m.topics().iter().any(|t| {
                        t.name() == *topic && t.error().is_none() && t.partitions().len() == partitions as usize
                    })
                })
                .unwrap_or(false);
            if ready {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("topic {topic} did not appear with {partitions} partitions"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

impl TansuBroker {
    /// The tansu binary: `$TANSU_BIN`, `~/.cargo/bin/tansu`, or `tansu` on
    /// the `PATH`; the error says how to install it.
    pub fn binary() -> Result<PathBuf, String> {
        if let Some(p) = std::env::var_os("TANSU_BIN") {
            let p = PathBuf::from(p);
            return if p.is_file() {
                Ok(p)
            } else {
                Err(format!("TANSU_BIN={} is not a file; {TANSU_INSTALL_HINT}", p.display()))
            };
        }
        let mut candidates = Vec::new();
        if let Some(home) = std::env::var_os("CARGO_HOME") {
            candidates.push(PathBuf::from(home).join("bin/tansu"));
        }
        if let Some(home) = std::env::var_os("HOME") {
            candidates.push(PathBuf::from(home).join(".cargo/bin/tansu"));
        }
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path).map(|d| d.join("tansu")));
        }
        candidates
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| TANSU_INSTALL_HINT.to_string())
    }

    /// Start tansu with in-memory storage (`memory://tansu/`).
    pub fn start() -> Result<Self, String> {
        Self::start_with(Self::binary()?, "memory://tansu/")
    }

    /// A tansu binary built with SQLite storage (feature `libsql`):
    /// `$TANSU_SQLITE_BIN`, else the tansu of [`TansuBroker::binary`], which
    /// `scripts/setup.sh` builds with that feature.
    pub fn sqlite_binary() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("TANSU_SQLITE_BIN") {
            return Some(PathBuf::from(p));
        }
        Self::binary().ok()
    }

    /// Start tansu with SQLite storage (`sqlite://tansu.db` in the broker's
    /// directory): data survives [`TansuBroker::restart`].
    pub fn start_sqlite() -> Result<Self, String> {
        let binary = Self::sqlite_binary().ok_or(TANSU_SQLITE_HINT)?;
        Self::start_with(binary, "sqlite://tansu.db").map_err(|e| format!("{e}; {TANSU_SQLITE_HINT}"))
    }

    /// The storage the tests use: SQLite when a tansu built with it is
    /// found (more robust under load than tansu's in-memory engine, which
    /// was seen to lose a topic, answer timestamp lookups loosely and stall
    /// consumer groups under heavy parallel load), else in-memory.
    /// `TANSU_STORAGE=memory` or `=sqlite` forces one.
    pub fn start_for_tests() -> Result<Self, String> {
        match std::env::var("TANSU_STORAGE").as_deref() {
            Ok("memory") => Self::start(),
            Ok("sqlite") => Self::start_sqlite(),
            _ if Self::sqlite_binary().is_some() => Self::start_sqlite(),
            _ => Self::start(),
        }
    }

    /// Start a tansu binary with a storage engine URL, e.g. `sqlite://tansu.db`
    /// (a build with the `libsql` feature; the file lives in the broker's own
    /// working directory, so it survives [`TansuBroker::restart`]).
    pub fn start_with(binary: PathBuf, storage: &str) -> Result<Self, String> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("tansu-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let log = dir.join("tansu.log");
        let mut broker = TansuBroker {
            binary,
            storage: storage.to_string(),
            port,
            child: None,
            dir,
            log,
        };
        broker.spawn()?;
        Ok(broker)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("cannot open {}: {e}", self.log.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&self.binary)
            .arg("broker")
            .arg("--listener-url")
            .arg(&url)
            .arg("--advertised-listener-url")
            .arg(&url)
            .arg("--storage-engine")
            .arg(&self.storage)
            .current_dir(&self.dir)
            .env("RUST_LOG", std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}; {TANSU_INSTALL_HINT}", self.binary.display()))?;
        self.child = Some(child);
        if let Err(e) = wait_for_broker(&self.bootstrap_servers(), Duration::from_secs(30)) {
            let tail = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: String = tail
                .chars()
                .rev()
                .take(2000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            self.kill();
            return Err(format!("{e}\ntansu log ({}):\n{tail}", self.log.display()));
        }
        Ok(())
    }

    /// `127.0.0.1:PORT`.
    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The storage engine URL.
    pub fn storage(&self) -> &str {
        &self.storage
    }

    /// Create a topic (and wait for it). Blocking.
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<(), String> {
        create_topics(&self.bootstrap_servers(), &[name], partitions)
    }

    /// Kill the broker and start it again on the same port and storage.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.spawn()
    }

    /// Kill the broker.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The broker's log file.
    pub fn log_file(&self) -> &std::path::Path {
        &self.log
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
