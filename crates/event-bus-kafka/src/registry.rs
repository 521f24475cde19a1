//! A Confluent Schema Registry client: register a schema under a subject
//! (`POST /subjects/{subject}/versions`) and fetch a schema by id
//! (`GET /schemas/ids/{id}`), both cached for the life of the process, as the
//! Python client does. Errors name the registry URL, never its credentials.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use openedx_events::avro::Schema;
use openedx_events::bus::transport::{TransportError, TransportErrorKind};
use serde::Deserialize;

use crate::settings::Secret;

/// The content type of the registry API.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

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
    /// Whether trying again later may succeed (the registry is down or slow,
    /// or answered 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } | RegistryError::Timeout { .. } => true,
            RegistryError::Refused { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

impl From<RegistryError> for TransportError {
    fn from(e: RegistryError) -> Self {
        let kind = match &e {
            RegistryError::Unreachable { .. } => TransportErrorKind::Connection,
            RegistryError::Timeout { .. } => TransportErrorKind::Timeout,
            RegistryError::Refused { status, .. } if *status >= 500 => TransportErrorKind::Connection,
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

/// A URL with any `user:password@` part removed (for messages).
///
/// ```
/// use event_bus_kafka::registry::redact_url;
/// assert_eq!(redact_url("https://key:secret@registry.example/api"), "https://registry.example/api");
/// assert_eq!(redact_url("http://127.0.0.1:8081"), "http://127.0.0.1:8081");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..scheme_end + 3], &rest[at + 1..]),
        None => url.to_string(),
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
    http: reqwest::Client,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("url", &self.display_url)
            .field("auth", &self.auth.as_ref().map(|(u, _)| (u.as_str(), "********")))
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
            http,
            cache: Mutex::new(Cache::default()),
        })
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
        let body: IdResponse = response.json().await.map_err(|e| RegistryError::BadResponse {
            url: self.display_url.clone(),
            message: format!("registering under {subject:?}: {}", e.without_url()),
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
        let text = self.schema_text_by_id(id).await?;
        let parsed = Schema::parse_str(&text).map_err(|e| RegistryError::InvalidSchema {
            url: self.display_url.clone(),
            id,
            message: e.to_string(),
        })?;
        let parsed = Arc::new(parsed);
        self.cache().schemas.insert(id, parsed.clone());
        Ok(parsed)
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
        let body: SchemaResponse = response.json().await.map_err(|e| RegistryError::BadResponse {
            url: self.display_url.clone(),
            message: format!("schema {id}: {}", e.without_url()),
        })?;
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
        assert_eq!(redact_url("http://u:p@h:1/x@y"), "http://h:1/x@y");
        assert_eq!(redact_url("not a url"), "not a url");
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
        assert!(text.contains("http://127.0.0.1:9"), "{text}");
        assert!(!text.contains("pa55word"), "{text}");
        assert!(!format!("{r:?}").contains("pa55word"));
    }
}
