//! `PulsarLite`: a TEST FIXTURE that runs the pulsar-lite broker (a native
//! Pulsar-protocol broker shipped in the `pulsar-lite` PyPI package, 0.2.0)
//! from the project's Python venv (`scripts/python-env.sh`). No Apache Pulsar
//! can be installed on the build machines; see `proxy.rs` for how pulsar-lite
//! deviates from the protocol and how the tests bridge that.
//!
//! The broker runs under a small `sh` guard that kills it when the guard's
//! stdin closes, so it never outlives the test process, even when the fixture
//! lives in a `static` that is never dropped.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A pulsar-lite broker on a free loopback port, with its data in a fresh
/// temporary directory. Stopped (and its data removed) on drop.
pub struct PulsarLite {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    guard: Option<(Child, ChildStdin)>,
}

/// The Python interpreter of the project's venv (created on first use).
pub fn venv_python() -> Result<PathBuf, String> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/python-env.sh");
            let out = Command::new("bash")
                .arg(&script)
                .stderr(Stdio::inherit())
                .output()
                .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
            if !out.status.success() {
                return Err(format!("{} failed ({})", script.display(), out.status));
            }
            let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if path.is_empty() {
                return Err(format!("{} printed no interpreter path", script.display()));
            }
            Ok(PathBuf::from(path))
        })
        .clone()
}

/// The pulsar-lite binary: `PULSAR_LITE_BIN`, or the one in the venv.
pub fn binary() -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var("PULSAR_LITE_BIN") {
        return Ok(PathBuf::from(path));
    }
    let python = venv_python()?;
    let out = Command::new(&python)
        .args([
            "-c",
            "import os, pulsar_lite; print(os.path.join(os.path.dirname(pulsar_lite.__file__), 'bin', 'pulsar-lite'))",
        ])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "the venv has no pulsar_lite package: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !path.exists() {
        return Err(format!("no pulsar-lite binary at {}", path.display()));
    }
    Ok(path)
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

impl PulsarLite {
    /// Start a broker and wait until it accepts connections.
    pub fn start() -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("pulsar-lite-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        // Without this, pulsar-lite also serves metrics on 0.0.0.0:8080.
        std::fs::write(dir.path().join("cfg.toml"), "[metrics]\nenabled = false\n")
            .map_err(|e| format!("cannot write the broker config: {e}"))?;
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?)
            .parse()
            .map_err(|e| format!("{e}"))?;
        let mut broker = PulsarLite { dir, addr, guard: None };
        broker.spawn()?;
        Ok(broker)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let bin = binary()?;
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("broker.log"))
            .map_err(|e| format!("cannot open the broker log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("{e}"))?;
        // The guard: start the broker, wait for stdin to close, stop it.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#""$@" & pid=$!; read _ignored; kill "$pid" 2>/dev/null; wait "$pid""#)
            .arg("pulsar-lite-guard")
            .arg(&bin)
            .arg("--config")
            .arg(d.join("cfg.toml"))
            .arg("--addr")
            .arg(self.addr.to_string())
            .arg("--db-path")
            .arg(d.join("db"))
            .arg("--log-level")
            .arg(std::env::var("PULSAR_LITE_LOG_LEVEL").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stdin = child.stdin.take().ok_or("no stdin for the broker guard")?;
        self.guard = Some((child, stdin));
        self.wait_ready(Duration::from_secs(20))
    }

    fn wait_ready(&mut self, patience: Duration) -> Result<(), String> {
        let deadline = Instant::now() + patience;
        loop {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some((child, _)) = self.guard.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "pulsar-lite exited ({status}) before accepting connections; log:\n{}",
                        self.log()
                    ));
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "pulsar-lite did not accept connections on {} within {patience:?}; log:\n{}",
                    self.addr,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    /// The broker's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `pulsar://127.0.0.1:<port>`: for clients that tolerate the missing
    /// checksum (the Python client); pulsar-rs needs the proxy.
    pub fn url(&self) -> String {
        format!("pulsar://{}", self.addr)
    }

    fn stop(&mut self) {
        if let Some((mut child, mut stdin)) = self.guard.take() {
            let _ = stdin.write_all(b"\n");
            drop(stdin);
            let deadline = Instant::now() + Duration::from_secs(10);
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
    }

    /// Stop the broker and start it again on the same port with the same
    /// data (its storage is RocksDB under the temporary directory).
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        // Wait for the port to be released.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.spawn()
    }
}

impl Drop for PulsarLite {
    fn drop(&mut self) {
        self.stop();
    }
}
