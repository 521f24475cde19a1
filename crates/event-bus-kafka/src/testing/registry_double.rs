//! An in-memory Confluent Schema Registry **test double**.
//!
//! It answers the part of the Confluent REST API that the Open edX Kafka
//! clients (Rust and Python `confluent-kafka`) use:
//!
//! | request | answer |
//! | --- | --- |
//! | `POST /subjects/{s}/versions` `{"schema": text}` | `{"id": n}`: the id of that text if it was registered under any subject, else the next id (1, 2, ...); a new version of `s` if `s` did not have it |
//! | `POST /subjects/{s}` `{"schema": text}` | `{"subject", "id", "version", "schema"}`, or 404 with `error_code` 40401 (no subject) / 40403 (no such schema under it) |
//! | `GET /schemas/ids/{id}` | `{"schema": text}`, or 404 with `error_code` 40403 |
//! | `GET /subjects/{s}/versions/latest` (or `/{version}`) | `{"subject", "id", "version", "schema"}`, or 404 |
//! | `GET /subjects/{s}/versions` | `[1, 2, ...]` |
//! | `GET /subjects` | the subjects, sorted |
//!
//! There is no compatibility checking: every registration is accepted.
//! It runs on its own thread and runtime, so it outlives any test runtime
//! and works from synchronous code.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value as JsonValue};

#[derive(Default)]
struct Registry {
    /// Schema texts; id = index + 1.
    schemas: Vec<String>,
    /// subject -> ids in version order (version = index + 1).
    subjects: BTreeMap<String, Vec<u32>>,
}

impl Registry {
    fn id_of(&self, text: &str) -> Option<u32> {
        self.schemas.iter().position(|s| s == text).map(|i| i as u32 + 1)
    }

    fn version_json(&self, subject: &str, version: usize) -> Option<JsonValue> {
        let id = *self.subjects.get(subject)?.get(version.checked_sub(1)?)?;
        Some(json!({
            "subject": subject,
            "id": id,
            "version": version,
            "schema": self.schemas.get(id as usize - 1)?,
        }))
    }
}

struct Inner {
    registry: Mutex<Registry>,
    auth: Option<String>,
    requests: AtomicUsize,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }
}

type Shared = Arc<Inner>;

fn error(status: StatusCode, code: i64, message: impl Into<String>) -> Response {
    (status, Json(json!({"error_code": code, "message": message.into()}))).into_response()
}

/// Count the request and check basic auth; `Some(response)` refuses it.
fn admit(state: &Shared, headers: &HeaderMap) -> Option<Response> {
    state.requests.fetch_add(1, Ordering::Relaxed);
    let expected = state.auth.as_ref()?;
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if given == expected {
        None
    } else {
        Some(error(StatusCode::UNAUTHORIZED, 40101, "Unauthorized"))
    }
}

/// The `schema` of a request body, or why not (a 422 message).
fn schema_text(body: &[u8]) -> Result<String, String> {
    let v: JsonValue = serde_json::from_slice(body).map_err(|e| format!("Invalid JSON: {e}"))?;
    v.get("schema")
        .and_then(JsonValue::as_str)
        .map(str::to_string)
        .ok_or_else(|| "Missing \"schema\"".to_string())
}

async fn register(
    State(state): State<Shared>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = admit(&state, &headers) {
        return r;
    }
    let text = match schema_text(&body) {
        Ok(t) => t,
        Err(m) => return error(StatusCode::UNPROCESSABLE_ENTITY, 42201, m),
    };
    if serde_json::from_str::<JsonValue>(&text).is_err() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, 42201, "Invalid schema: not JSON");
    }
    let mut reg = state.lock();
    let id = match reg.id_of(&text) {
        Some(id) => id,
        None => {
            reg.schemas.push(text);
            reg.schemas.len() as u32
        }
    };
    let versions = reg.subjects.entry(subject).or_default();
    if !versions.contains(&id) {
        versions.push(id);
    }
    Json(json!({ "id": id })).into_response()
}

async fn lookup(State(state): State<Shared>, Path(subject): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = admit(&state, &headers) {
        return r;
    }
    let text = match schema_text(&body) {
        Ok(t) => t,
        Err(m) => return error(StatusCode::UNPROCESSABLE_ENTITY, 42201, m),
    };
    let reg = state.lock();
    let Some(versions) = reg.subjects.get(&subject) else {
        return error(StatusCode::NOT_FOUND, 40401, format!("Subject '{subject}' not found."));
    };
    let found = reg
        .id_of(&text)
        .and_then(|id| versions.iter().position(|v| *v == id))
        .and_then(|i| reg.version_json(&subject, i + 1));
    match found {
        Some(v) => Json(v).into_response(),
        None => error(StatusCode::NOT_FOUND, 40403, "Schema not found"),
    }
}

async fn schema_by_id(State(state): State<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Some(r) = admit(&state, &headers) {
        return r;
    }
    let reg = state.lock();
    let text = id
        .parse::<usize>()
        .ok()
        .and_then(|i| i.checked_sub(1))
        .and_then(|i| reg.schemas.get(i));
    match text {
        Some(t) => Json(json!({ "schema": t })).into_response(),
        None => error(StatusCode::NOT_FOUND, 40403, format!("Schema {id} not found")),
    }
}

async fn version(
    State(state): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = admit(&state, &headers) {
        return r;
    }
    let reg = state.lock();
    let Some(versions) = reg.subjects.get(&subject) else {
        return error(StatusCode::NOT_FOUND, 40401, format!("Subject '{subject}' not found."));
    };
    let n = if version == "latest" {
        versions.len()
    } else {
        version.parse().unwrap_or(0)
    };
    match reg.version_json(&subject, n) {
        Some(v) => Json(v).into_response(),
        None => error(StatusCode::NOT_FOUND, 40402, format!("Version {version} not found.")),
    }
}

async fn versions(State(state): State<Shared>, Path(subject): Path<String>, headers: HeaderMap) -> Response {
    if let Some(r) = admit(&state, &headers) {
        return r;
    }
    let reg = state.lock();
    match reg.subjects.get(&subject) {
        Some(v) => Json((1..=v.len()).collect::<Vec<_>>()).into_response(),
        None => error(StatusCode::NOT_FOUND, 40401, format!("Subject '{subject}' not found.")),
    }
}

async fn subjects(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(r) = admit(&state, &headers) {
        return r;
    }
    Json(state.lock().subjects.keys().cloned().collect::<Vec<_>>()).into_response()
}

/// Options of a [`RegistryDouble`].
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use event_bus_kafka::registry::SchemaRegistry;
/// use event_bus_kafka::settings::Secret;
/// use event_bus_kafka::testing::RegistryDouble;
/// let double = RegistryDouble::builder().basic_auth("key", "secret").start().unwrap();
/// let client = SchemaRegistry::new(&double.url(), Some(("key".into(), Secret::new("secret"))),
///     Duration::from_secs(5)).unwrap();
/// let id = client.register("dev-user-login-string", r#"{"name": "username", "type": "string"}"#).await.unwrap();
/// assert_eq!(id, 1);
/// assert_eq!(double.subjects(), vec!["dev-user-login-string"]);
/// let anonymous = SchemaRegistry::new(&double.url(), None, Duration::from_secs(5)).unwrap();
/// assert!(anonymous.schema_by_id(1).await.is_err(), "401 without credentials");
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct RegistryDoubleBuilder {
    addr: Option<String>,
    auth: Option<(String, String)>,
}

impl RegistryDoubleBuilder {
    /// Listen on this address (default `127.0.0.1:0`, a free port).
    pub fn addr(mut self, addr: impl Into<String>) -> Self {
        self.addr = Some(addr.into());
        self
    }

    /// Require HTTP basic auth with these credentials.
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Some((user.into(), password.into()));
        self
    }

    /// Start serving.
    pub fn start(self) -> std::io::Result<RegistryDouble> {
        let listener = std::net::TcpListener::bind(self.addr.as_deref().unwrap_or("127.0.0.1:0"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let auth = self
            .auth
            .map(|(u, p)| format!("Basic {}", base64(format!("{u}:{p}").as_bytes())));
        let inner = Arc::new(Inner {
            registry: Mutex::new(Registry::default()),
            auth,
            requests: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/subjects", get(subjects))
            .route("/subjects/{subject}", post(lookup))
            .route("/subjects/{subject}/versions", post(register).get(versions))
            .route("/subjects/{subject}/versions/{version}", get(version))
            .route("/schemas/ids/{id}", get(schema_by_id))
            .with_state(inner.clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let thread = std::thread::Builder::new()
            .name("registry-double".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "registry double cannot listen");
                            return;
                        }
                    };
                    let served = axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stop_rx.await;
                        })
                        .await;
                    if let Err(e) = served {
                        tracing::error!(error = %e, "registry double stopped");
                    }
                });
            })?;
        Ok(RegistryDouble {
            addr,
            inner,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

/// A running schema registry test double; stops when dropped.
///
/// ```
/// use event_bus_kafka::testing::RegistryDouble;
/// let registry = RegistryDouble::start().unwrap();
/// assert!(registry.url().starts_with("http://127.0.0.1:"));
/// assert!(registry.subjects().is_empty());
/// ```
pub struct RegistryDouble {
    addr: SocketAddr,
    inner: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RegistryDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryDouble").field("url", &self.url()).finish()
    }
}

impl RegistryDouble {
    /// Start on a free port of 127.0.0.1, without auth.
    pub fn start() -> std::io::Result<Self> {
        RegistryDoubleBuilder::default().start()
    }

    /// Options (address, basic auth).
    pub fn builder() -> RegistryDoubleBuilder {
        RegistryDoubleBuilder::default()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The subjects, sorted.
    pub fn subjects(&self) -> Vec<String> {
        self.inner.lock().subjects.keys().cloned().collect()
    }

    /// The schema ids of a subject, in version order.
    pub fn versions(&self, subject: &str) -> Vec<u32> {
        self.inner.lock().subjects.get(subject).cloned().unwrap_or_default()
    }

    /// The schema text with this id.
    pub fn schema(&self, id: u32) -> Option<String> {
        self.inner.lock().schemas.get((id as usize).checked_sub(1)?).cloned()
    }

    /// How many requests it has answered (to check client caching).
    pub fn request_count(&self) -> usize {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Register a schema directly (as if a client had), returning its id.
    pub fn register(&self, subject: &str, schema: &str) -> u32 {
        let mut reg = self.inner.lock();
        let id = match reg.id_of(schema) {
            Some(id) => id,
            None => {
                reg.schemas.push(schema.to_string());
                reg.schemas.len() as u32
            }
        };
        let versions = reg.subjects.entry(subject.to_string()).or_default();
        if !versions.contains(&id) {
            versions.push(id);
        }
        id
    }

    /// Stop serving (also done on drop).
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RegistryDouble {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Standard base64 (for the basic auth header).
fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }

    #[test]
    fn same_text_same_id_new_text_next_id() {
        let r = RegistryDouble::start().unwrap();
        assert_eq!(r.register("a-string", r#"{"name": "x", "type": "string"}"#), 1);
        assert_eq!(r.register("a-value", r#"{"type": "record"}"#), 2);
        assert_eq!(r.register("b-value", r#"{"type": "record"}"#), 2);
        assert_eq!(r.subjects(), vec!["a-string", "a-value", "b-value"]);
        assert_eq!(r.versions("b-value"), vec![2]);
        assert_eq!(r.schema(2).as_deref(), Some(r#"{"type": "record"}"#));
        assert_eq!(r.schema(3), None);
    }
}
