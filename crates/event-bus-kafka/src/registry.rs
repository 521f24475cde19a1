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

mod error;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use openedx_events::avro::Schema;
use serde::Deserialize;

pub use openedx_events::config::secret::redact_url;
use openedx_events::config::secret::{Secret, MASK};

pub use error::RegistryError;

/// The content type of the registry API.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// How long a schema id the registry answers `404` for is taken for one a
/// lagging replica does not have yet (transient), counted from the first
/// `404` for that id; after it, the id is unknown (its messages unusable).
pub const UNKNOWN_ID_GRACE: Duration = Duration::from_secs(300);

/// Ids remembered as missing, at most (older ones are forgotten, which only
/// restarts their grace).
const MISSING_IDS_MAX: usize = 1024;

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
