//! A Confluent Schema Registry client: register a schema under a subject
//! (`POST /subjects/{subject}/versions`) and fetch a schema by id
//! (`GET /schemas/ids/{id}`), both cached for the life of the process, as the
//! Python client does. Errors name the registry URL, never its credentials.
//!
//! ## Which failures are transient
//!
//! A message whose writer schema cannot be fetched *now* is handed back and
//! tried again later, never dead-lettered: the registry unreachable or slow
//! (connect, request or body-read timeouts, a body cut short), `408`, `429`
//! and `5xx`, and also `401` and `403` (credentials being rotated) and a
//! `404` for a schema id (a replica that has not caught up yet with the
//! primary). Each is logged with the registry URL (credentials masked) and
//! the HTTP status. A `404` for an id stays transient for
//! [`UNKNOWN_ID_GRACE`] after that id was first missed; past it, the id is
//! taken as really unknown and its messages as unusable. Only a schema that
//! was fetched and cannot be used (an answer that is not the registry's
//! JSON, a schema text that is not Avro) makes its message unusable at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use openedx_events::avro::Schema;
use openedx_events::bus::transport::{TransportError, TransportErrorKind};
use serde::Deserialize;

pub use openedx_events::config::secret::redact_url;
use openedx_events::config::secret::{Secret, MASK};

/// The content type of the registry API.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// How long a schema id the registry answers `404` for is taken for one a
/// lagging replica does not have yet (transient), counted from the first
/// `404` for that id; after it, the id is unknown (its messages unusable).
pub const UNKNOWN_ID_GRACE: Duration = Duration::from_secs(300);

/// Ids remembered as missing, at most (older ones are forgotten, which only
/// restarts their grace).
const MISSING_IDS_MAX: usize = 1024;

/// Why a registry call failed. Messages name the registry URL without its
/// credentials.
///
/// ```
/// use event_bus_kafka::registry::RegistryError;
/// let e = RegistryError::UnknownId { url: "http://registry:8081".into(), id: 7 };
/// assert_eq!(e.to_string(), "the schema registry at http://registry:8081 has no schema with id 7");
/// assert!(!e.is_transient());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The registry cannot be reached (connection refused, DNS, TLS...).
    #[error("cannot reach the schema registry at {url}: {message}")]
    Unreachable {
        /// The registry URL (without credentials).
        url: String,
        /// What failed.
        message: String,
    },
    /// The registry did not answer in time.
    #[error("the schema registry at {url} did not answer within {timeout:?}")]
    Timeout {
        /// The registry URL (without credentials).
        url: String,
        /// The time limit.
        timeout: Duration,
    },
    /// The registry has no schema with this id.
    #[error("the schema registry at {url} has no schema with id {id}")]
    UnknownId {
        /// The registry URL (without credentials).
        url: String,
        /// The id asked for.
        id: u32,
    },
    /// The registry has no schema with this id *yet*: a `404` within
    /// [`UNKNOWN_ID_GRACE`] of the first one for this id (a replica that has
    /// not caught up). Transient.
    #[error(
        "the schema registry at {url} has no schema with id {id} (yet: missing for {missing_for:?}; tried again later)"
    )]
    NotYetKnown {
        /// The registry URL (without credentials).
        url: String,
        /// The id asked for.
        id: u32,
        /// How long this id has been missing.
        missing_for: Duration,
    },
    /// The registry refused the request.
    #[error("the schema registry at {url} refused {what}: HTTP {status}{}", .error_code.map(|c| format!(", error code {c}")).unwrap_or_default())]
    Refused {
        /// The registry URL (without credentials).
        url: String,
        /// What was asked.
        what: String,
        /// HTTP status.
        status: u16,
        /// The registry's `error_code`, if any.
        error_code: Option<i64>,
        /// The registry's message.
        message: String,
    },
    /// An answer that is not what the API says.
    #[error("unexpected answer from the schema registry at {url}: {message}")]
    BadResponse {
        /// The registry URL (without credentials).
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The schema text of an id does not parse.
    #[error("schema {id} from the schema registry at {url} is not a valid Avro schema: {message}")]
    InvalidSchema {
        /// The registry URL (without credentials).
        url: String,
        /// The id.
        id: u32,
        /// The parse error.
        message: String,
    },
}

impl RegistryError {
    /// Whether trying again later may succeed: the registry is down or slow,
    /// a body was cut short, it answered `401`/`403` (credentials being
    /// rotated), `404` for an id within its grace (a replica catching up),
    /// `408`, `429` or `5xx`. A schema that was fetched and is unusable is
    /// not transient.
    ///
    /// ```
    /// use event_bus_kafka::registry::RegistryError;
    /// let refused = |status| RegistryError::Refused { url: "http://r".into(), what: "x".into(), status,
    ///     error_code: None, message: String::new() };
    /// for status in [401, 403, 404, 408, 429, 500, 503] {
    ///     assert!(refused(status).is_transient(), "{status}");
    /// }
    /// assert!(!refused(400).is_transient());
    /// assert!(!refused(422).is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } | RegistryError::Timeout { .. } | RegistryError::NotYetKnown { .. } => {
                true
            }
            RegistryError::Refused { status, .. } => is_transient_status(*status),
            RegistryError::UnknownId { .. }
            | RegistryError::BadResponse { .. }
            | RegistryError::InvalidSchema { .. } => false,
        }
    }

    /// The HTTP status the registry answered, when it answered one.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Refused { status, .. } => Some(*status),
            RegistryError::UnknownId { .. } | RegistryError::NotYetKnown { .. } => Some(404),
            _ => None,
        }
    }
}

/// HTTP statuses worth trying again after: authentication (`401`, `403`:
/// a credential rotation), not found (`404`: a replica behind), timeouts
/// (`408`), throttling (`429`) and server errors.
fn is_transient_status(status: u16) -> bool {
    matches!(status, 401 | 403 | 404 | 408 | 429) || status >= 500
}

impl From<RegistryError> for TransportError {
    fn from(e: RegistryError) -> Self {
        let kind = match &e {
            RegistryError::Unreachable { .. } | RegistryError::NotYetKnown { .. } => TransportErrorKind::Connection,
            RegistryError::Timeout { .. } => TransportErrorKind::Timeout,
            RegistryError::Refused { status, .. } if *status == 408 => TransportErrorKind::Timeout,
            RegistryError::Refused { status, .. } if is_transient_status(*status) => TransportErrorKind::Connection,
            RegistryError::Refused { .. } | RegistryError::UnknownId { .. } | RegistryError::InvalidSchema { .. } => {
                TransportErrorKind::Rejected
            }
            RegistryError::BadResponse { .. } => TransportErrorKind::Other,
        };
        let message = match &e {
            RegistryError::Refused { message, .. } if !message.is_empty() => format!("{e}: {message}"),
            _ => e.to_string(),
        };
        TransportError::new(kind, message)
    }
}

#[derive(Deserialize)]
struct IdResponse {
    id: u32,
}

#[derive(Deserialize)]
struct SchemaResponse {
    schema: String,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error_code: Option<i64>,
    message: Option<String>,
}

#[derive(Default)]
struct Cache {
    /// subject -> (schema text, id) of each schema registered under it
    /// (looked up without copying the text: this runs on every publish).
    registered: HashMap<String, Vec<(String, u32)>>,
    /// id -> parsed schema.
    schemas: HashMap<u32, Arc<Schema>>,
    /// id -> when the registry first answered `404` for it.
    missing: HashMap<u32, Instant>,
}

/// A schema registry client with its caches; cheap to share behind an `Arc`.
///
/// ```no_run
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::time::Duration;
/// use event_bus_kafka::registry::SchemaRegistry;
/// let registry = SchemaRegistry::new("http://127.0.0.1:8081", None, Duration::from_secs(10)).unwrap();
/// let id = registry
///     .register("dev-user-login-string", r#"{"name": "username", "type": "string"}"#)
///     .await
///     .unwrap();
/// let schema = registry.schema_by_id(id).await.unwrap();
/// # });
/// ```
pub struct SchemaRegistry {
    base: String,
    display_url: String,
    auth: Option<(String, Secret)>,
    timeout: Duration,
    unknown_id_grace: Duration,
    http: reqwest::Client,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("url", &self.display_url)
            .field("auth", &self.auth.as_ref().map(|(u, _)| (u.as_str(), MASK)))
            .finish()
    }
}

impl SchemaRegistry {
    /// A client for the registry at `url`, with optional basic auth
    /// (`user`, `password`) and a per-request time limit.
    pub fn new(url: &str, auth: Option<(String, Secret)>, timeout: Duration) -> Result<Self, RegistryError> {
        let display_url = redact_url(url);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| RegistryError::Unreachable {
                url: display_url.clone(),
                message: format!("cannot build the HTTP client: {}", e.without_url()),
            })?;
        Ok(SchemaRegistry {
            base: url.trim_end_matches('/').to_string(),
            display_url,
            auth,
            timeout,
            unknown_id_grace: UNKNOWN_ID_GRACE,
            http,
            cache: Mutex::new(Cache::default()),
        })
    }

    /// How long a schema id answered with `404` is still looked for again
    /// (default [`UNKNOWN_ID_GRACE`]).
    pub fn with_unknown_id_grace(mut self, grace: Duration) -> Self {
        self.unknown_id_grace = grace;
        self
    }

    /// The registry URL, without credentials.
    pub fn url(&self) -> &str {
        &self.display_url
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(reqwest::header::ACCEPT, CONTENT_TYPE);
        match &self.auth {
            Some((user, password)) => r.basic_auth(user, Some(password.expose())),
            None => r,
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> RegistryError {
        if e.is_timeout() {
            return RegistryError::Timeout {
                url: self.display_url.clone(),
                timeout: self.timeout,
            };
        }
        let e = e.without_url();
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            let text = s.to_string();
            if !message.contains(&text) {
                message = format!("{message}: {text}");
            }
            source = s.source();
        }
        RegistryError::Unreachable {
            url: self.display_url.clone(),
            message,
        }
    }

    async fn refused(&self, what: String, response: reqwest::Response) -> RegistryError {
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        let (error_code, message) = match serde_json::from_str::<ErrorResponse>(&body) {
            Ok(e) => (e.error_code, e.message.unwrap_or_default()),
            Err(_) => (None, body.chars().take(300).collect()),
        };
        RegistryError::Refused {
            url: self.display_url.clone(),
            what,
            status,
            error_code,
            message,
        }
    }

    /// The id of `schema` (its text, exactly as it is registered) under
    /// `subject`, registering it on first use. Cached per subject and text.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let cached = self
            .cache()
            .registered
            .get(subject)
            .and_then(|known| known.iter().find(|(text, _)| text == schema).map(|(_, id)| *id));
        if let Some(id) = cached {
            return Ok(id);
        }
        let path = format!("/subjects/{}/versions", encode_path_segment(subject));
        let response = self
            .request(reqwest::Method::POST, &path)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(serde_json::json!({ "schema": schema }).to_string())
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        if !response.status().is_success() {
            return Err(self
                .refused(format!("to register a schema under subject {subject:?}"), response)
                .await);
        }
        let bytes = response.bytes().await.map_err(|e| self.transport_error(e))?;
        let body: IdResponse = serde_json::from_slice(&bytes).map_err(|e| RegistryError::BadResponse {
            url: self.display_url.clone(),
            message: format!("registering under {subject:?}: {e}"),
        })?;
        let parsed = Schema::parse_str(schema).ok().map(Arc::new);
        let mut cache = self.cache();
        let known = cache.registered.entry(subject.to_string()).or_default();
        if !known.iter().any(|(text, _)| text == schema) {
            known.push((schema.to_string(), body.id));
        }
        if let Some(parsed) = parsed {
            cache.schemas.entry(body.id).or_insert(parsed);
        }
        Ok(body.id)
    }

    /// The schema with this id (the writer schema of a message). Cached.
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<Schema>, RegistryError> {
        if let Some(s) = self.cache().schemas.get(&id) {
            return Ok(s.clone());
        }
        let text = match self.schema_text_by_id(id).await {
            Ok(text) => text,
            Err(e) => return Err(self.missing_or_unknown(id, e)),
        };
        let parsed = Schema::parse_str(&text).map_err(|e| RegistryError::InvalidSchema {
            url: self.display_url.clone(),
            id,
            message: e.to_string(),
        })?;
        let parsed = Arc::new(parsed);
        self.cache().schemas.insert(id, parsed.clone());
        Ok(parsed)
    }

    /// A failed lookup of `id`, logged when it is transient; a `404` is
    /// [`RegistryError::NotYetKnown`] within the grace of this id.
    fn missing_or_unknown(&self, id: u32, e: RegistryError) -> RegistryError {
        let e = match e {
            RegistryError::UnknownId { url, id } => {
                let now = Instant::now();
                let mut cache = self.cache();
                if cache.missing.len() >= MISSING_IDS_MAX && !cache.missing.contains_key(&id) {
                    cache.missing.clear();
                }
                let since = *cache.missing.entry(id).or_insert(now);
                let missing_for = now.saturating_duration_since(since);
                if missing_for < self.unknown_id_grace {
                    RegistryError::NotYetKnown { url, id, missing_for }
                } else {
                    RegistryError::UnknownId { url, id }
                }
            }
            other => other,
        };
        if e.is_transient() {
            tracing::warn!(registry = %self.display_url, status = ?e.status(), schema_id = id, error = %e,
                "cannot fetch a writer schema now; the message is handed back and tried again later");
        }
        e
    }

    /// The schema text with this id, as the registry holds it (not cached).
    pub async fn schema_text_by_id(&self, id: u32) -> Result<String, RegistryError> {
        let response = self
            .request(reqwest::Method::GET, &format!("/schemas/ids/{id}"))
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(RegistryError::UnknownId {
                url: self.display_url.clone(),
                id,
            });
        }
        if !response.status().is_success() {
            return Err(self.refused(format!("to give schema {id}"), response).await);
        }
        let bytes = response.bytes().await.map_err(|e| self.transport_error(e))?;
        let body: SchemaResponse = serde_json::from_slice(&bytes).map_err(|e| RegistryError::BadResponse {
            url: self.display_url.clone(),
            message: format!("schema {id}: {e}"),
        })?;
        self.cache().missing.remove(&id);
        Ok(body.schema)
    }
}

/// Percent-encode a subject for a URL path (subjects hold dots and hyphens,
/// which are safe; anything else is encoded).
fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_path_safe() {
        assert_eq!(
            encode_path_segment("dev-user-login-org.openedx.x.v1.CloudEvent"),
            "dev-user-login-org.openedx.x.v1.CloudEvent"
        );
        assert_eq!(encode_path_segment("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn urls_lose_credentials() {
        assert_eq!(redact_url("http://u:p/w@h:1/x"), "http://u:********@h:1/x");
        let r = SchemaRegistry::new("http://key:se/cr@t@127.0.0.1:1", None, Duration::from_secs(1)).unwrap();
        assert_eq!(r.url(), "http://key:********@127.0.0.1:1");
        assert!(!format!("{r:?}").contains("se/cr"));
    }

    /// A registry that answers each connection with the next fixed
    /// response (the last one for every connection after), then closes it;
    /// `None` accepts the request and answers nothing (a stalled registry).
    async fn fixed_registry(responses: Vec<Option<String>>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut i = 0;
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let response = responses[i.min(responses.len() - 1)].clone();
                i += 1;
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    match response {
                        Some(r) => {
                            let _ = conn.write_all(r.as_bytes()).await;
                            let _ = conn.shutdown().await;
                        }
                        None => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                        }
                    }
                });
            }
        });
        format!("http://{addr}")
    }

    fn answer(status: &str, body: &str) -> Option<String> {
        Some(format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
    }

    const STRING_SCHEMA: &str = r#"{"schema": "\"string\""}"#;

    #[tokio::test]
    async fn auth_throttling_and_server_errors_are_transient_then_recover() {
        for status in [
            "401 Unauthorized",
            "403 Forbidden",
            "408 Request Timeout",
            "429 Too Many Requests",
            "500 Internal Server Error",
            "503 Service Unavailable",
        ] {
            let url = fixed_registry(vec![
                answer(status, r#"{"error_code": 40101, "message": "no"}"#),
                answer("200 OK", STRING_SCHEMA),
            ])
            .await;
            let r = SchemaRegistry::new(&url, None, Duration::from_secs(5)).unwrap();
            let e = r.schema_by_id(3).await.unwrap_err();
            assert!(e.is_transient(), "{status}: {e:?}");
            assert_eq!(e.status(), status[..3].parse().ok(), "{status}");
            let t = TransportError::from(e);
            assert!(
                matches!(t.kind, TransportErrorKind::Connection | TransportErrorKind::Timeout),
                "{status}: {t}"
            );
            assert!(t.message.contains(&url), "{t}");
            r.schema_by_id(3)
                .await
                .unwrap_or_else(|e| panic!("{status}, then 200: {e}"));
        }
    }

    #[tokio::test]
    async fn a_missing_id_is_transient_within_its_grace_then_unknown() {
        let not_found = answer(
            "404 Not Found",
            r#"{"error_code": 40403, "message": "Schema not found"}"#,
        );
        let url = fixed_registry(vec![not_found.clone(), answer("200 OK", STRING_SCHEMA)]).await;
        let r = SchemaRegistry::new(&url, None, Duration::from_secs(5)).unwrap();
        let e = r.schema_by_id(7).await.unwrap_err();
        assert!(matches!(e, RegistryError::NotYetKnown { id: 7, .. }), "{e:?}");
        assert!(e.is_transient());
        assert_eq!(e.status(), Some(404));
        r.schema_by_id(7).await.expect("the replica caught up");

        let url = fixed_registry(vec![not_found]).await;
        let r = SchemaRegistry::new(&url, None, Duration::from_secs(5))
            .unwrap()
            .with_unknown_id_grace(Duration::ZERO);
        let e = r.schema_by_id(7).await.unwrap_err();
        assert!(matches!(e, RegistryError::UnknownId { id: 7, .. }), "{e:?}");
        assert!(!e.is_transient());
    }

    #[tokio::test]
    async fn bodies_cut_short_or_stalled_are_transient() {
        let cut = Some(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"schema\": \""
                .to_string(),
        );
        let url = fixed_registry(vec![cut]).await;
        let r = SchemaRegistry::new(&url, None, Duration::from_secs(5)).unwrap();
        let e = r.schema_by_id(1).await.unwrap_err();
        assert!(e.is_transient(), "{e:?}");

        let stalled = Some("HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{".to_string());
        let url = fixed_registry(vec![stalled]).await;
        let r = SchemaRegistry::new(&url, None, Duration::from_millis(300)).unwrap();
        // The body never ends: the server keeps the connection open.
        let e = r.schema_by_id(1).await.unwrap_err();
        assert!(e.is_transient(), "{e:?}");

        let url = fixed_registry(vec![None]).await;
        let r = SchemaRegistry::new(&url, None, Duration::from_millis(300)).unwrap();
        let e = r.schema_by_id(1).await.unwrap_err();
        assert!(matches!(e, RegistryError::Timeout { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn only_a_fetched_unusable_schema_is_unusable() {
        let url = fixed_registry(vec![answer("200 OK", "<html>proxy</html>")]).await;
        let r = SchemaRegistry::new(&url, None, Duration::from_secs(5)).unwrap();
        let e = r.schema_by_id(1).await.unwrap_err();
        assert!(
            matches!(e, RegistryError::BadResponse { .. }) && !e.is_transient(),
            "{e:?}"
        );

        let url = fixed_registry(vec![answer("200 OK", r#"{"schema": "{\"type\": \"nope\"}"}"#)]).await;
        let r = SchemaRegistry::new(&url, None, Duration::from_secs(5)).unwrap();
        let e = r.schema_by_id(1).await.unwrap_err();
        assert!(
            matches!(e, RegistryError::InvalidSchema { .. }) && !e.is_transient(),
            "{e:?}"
        );

        let url = fixed_registry(vec![answer("400 Bad Request", "{}")]).await;
        let r = SchemaRegistry::new(&url, None, Duration::from_secs(5)).unwrap();
        assert!(!r.schema_by_id(1).await.unwrap_err().is_transient());
    }

    #[test]
    fn transient_errors_are_told_apart() {
        let down = RegistryError::Unreachable {
            url: "http://r".into(),
            message: "refused".into(),
        };
        assert!(down.is_transient());
        assert_eq!(TransportError::from(down).kind, TransportErrorKind::Connection);
        let missing = RegistryError::UnknownId {
            url: "http://r".into(),
            id: 9,
        };
        assert!(!missing.is_transient());
        assert_eq!(TransportError::from(missing).kind, TransportErrorKind::Rejected);
    }

    #[tokio::test]
    async fn a_registry_that_is_down_is_named_without_credentials() {
        // Port 9 (discard) on localhost is closed on test machines.
        let r = SchemaRegistry::new(
            "http://user:pa55word@127.0.0.1:9",
            Some(("user".into(), Secret::new("pa55word"))),
            Duration::from_secs(2),
        )
        .unwrap();
        let e = r.register("s", r#""string""#).await.unwrap_err();
        let text = TransportError::from(e.clone()).to_string();
        assert!(e.is_transient(), "{e:?}");
        assert!(text.contains("127.0.0.1:9"), "{text}");
        assert!(!text.contains("pa55word"), "{text}");
        assert!(!format!("{r:?}").contains("pa55word"));
    }
}
