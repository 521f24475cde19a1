//! Secrets in settings: one type that never shows its value, one way to
//! redact credentials from URLs, and one scrubber for error texts. Every
//! backend uses these, so a password looks the same (`********`) in every
//! log line and error of the event bus.
//!
//! ```
//! use openedx_events::config::secret::{redact_url, Redactor, Secret, MASK};
//! let s = Secret::new("hunter2");
//! assert_eq!(format!("{s} {s:?}"), "******** ********");
//! assert_eq!(redact_url("redis://app:pa/ss@cache:6379/0"), "redis://app:********@cache:6379/0");
//! let r = Redactor::from_url("redis://app:pa/ss@cache:6379/0");
//! assert_eq!(r.scrub("AUTH pa/ss failed"), "AUTH ******** failed");
//! assert_eq!(MASK, "********");
//! ```

use std::borrow::Cow;
use std::fmt;

/// What every secret is shown as.
pub const MASK: &str = "********";

/// A secret string: shown as [`MASK`] by `Debug` and `Display`.
///
/// ```
/// use openedx_events::config::secret::Secret;
/// let s = Secret::new("hunter2");
/// assert_eq!(format!("{s:?}"), "********");
/// assert_eq!(s.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the client that needs it (never for logs).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// The parts of `scheme://[userinfo@]rest`: the user-info runs to the last
/// `@` (a password may contain `/`, `?`, `#` or `@`).
fn split_url(url: &str) -> Option<(&str, Option<&str>, &str)> {
    let scheme_end = url.find("://")? + 3;
    let (scheme, rest) = url.split_at(scheme_end);
    match rest.rfind('@') {
        Some(at) => Some((scheme, Some(&rest[..at]), &rest[at + 1..])),
        None => Some((scheme, None, rest)),
    }
}

/// Query parameters that carry a password (`?password=...`, as the Redis
/// client reads them).
fn is_secret_param(name: &str) -> bool {
    ["password", "pass", "token", "secret"]
        .iter()
        .any(|s| name.eq_ignore_ascii_case(s))
}

/// A URL with its credentials masked: the password of `user:password@`
/// (a lone user-info part, which some clients read as a password, is
/// masked whole) and `password=`-like query parameters. Text that is not a
/// URL is masked whole: it may be a mistyped secret.
///
/// ```
/// use openedx_events::config::secret::redact_url;
/// assert_eq!(redact_url("redis://u:p@h:6379/0"), "redis://u:********@h:6379/0");
/// assert_eq!(redact_url("rediss://:p@h"), "rediss://:********@h");
/// assert_eq!(redact_url("redis://p@h"), "redis://********@h");
/// assert_eq!(redact_url("https://key:se/cr@t@registry/api"), "https://key:********@registry/api");
/// assert_eq!(redact_url("redis://h/0?password=p&protocol=resp3"), "redis://h/0?password=********&protocol=resp3");
/// assert_eq!(redact_url("http://127.0.0.1:8081"), "http://127.0.0.1:8081");
/// assert_eq!(redact_url("not a url"), "********");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((scheme, userinfo, rest)) = split_url(url) else {
        return MASK.to_string();
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    if let Some(userinfo) = userinfo {
        match userinfo.split_once(':') {
            Some((user, _)) => {
                out.push_str(user);
                out.push(':');
                out.push_str(MASK);
            }
            None => out.push_str(MASK),
        }
        out.push('@');
    }
    match rest.split_once('?') {
        None => out.push_str(rest),
        Some((path, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (query, None),
            };
            out.push_str(path);
            out.push('?');
            for (i, kv) in query.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                match kv.split_once('=') {
                    Some((k, _)) if is_secret_param(k) => {
                        out.push_str(k);
                        out.push('=');
                        out.push_str(MASK);
                    }
                    _ => out.push_str(kv),
                }
            }
            if let Some(f) = fragment {
                out.push('#');
                out.push_str(f);
            }
        }
    }
    out
}

/// The secrets of a configuration, to scrub from any text (client errors
/// may quote a URL or a password) before it is logged or returned.
///
/// ```
/// use openedx_events::config::secret::{Redactor, Secret};
/// let mut r = Redactor::from_url("https://key:s3cret@registry.example");
/// r.add(&Secret::new("pw-42"));
/// assert_eq!(r.scrub("401 for key:s3cret, then pw-42"), "401 for key:********, then ********");
/// assert_eq!(r.scrub("nothing secret"), "nothing secret");
/// ```
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    /// Nothing to scrub yet.
    pub fn new() -> Self {
        Redactor::default()
    }

    /// The credentials of a URL: its password (or lone user-info) and its
    /// password-like query parameters.
    pub fn from_url(url: &str) -> Self {
        let mut r = Redactor::new();
        r.add_url(url);
        r
    }

    /// Add a secret (empty ones are ignored).
    pub fn add(&mut self, secret: &Secret) {
        self.add_text(secret.expose());
    }

    /// Add a secret given as text.
    pub fn add_text(&mut self, secret: &str) {
        if !secret.is_empty() && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_string());
            // Longest first, so a secret containing another is masked whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// Add the credentials of a URL.
    pub fn add_url(&mut self, url: &str) {
        let Some((_, userinfo, rest)) = split_url(url) else {
            return;
        };
        if let Some(userinfo) = userinfo {
            match userinfo.split_once(':') {
                Some((_, password)) => self.add_text(password),
                None => self.add_text(userinfo),
            }
        }
        if let Some((_, query)) = rest.split_once('?') {
            let query = query.split_once('#').map_or(query, |(q, _)| q);
            for kv in query.split('&') {
                if let Some((k, v)) = kv.split_once('=') {
                    if is_secret_param(k) {
                        self.add_text(v);
                    }
                }
            }
        }
    }

    /// Whether there is anything to scrub.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every secret replaced by [`MASK`].
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = Cow::Owned(out.replace(s.as_str(), MASK));
            }
        }
        out
    }
}

/// Whether a setting's name says it holds a secret (`..._PASSWORD`,
/// `..._SECRET`, `..._TOKEN`, `..._API_KEY`, `..._CREDENTIALS`...): such
/// values are masked wherever settings are shown.
///
/// ```
/// use openedx_events::config::secret::is_secret_setting;
/// assert!(is_secret_setting("EVENT_BUS_KAFKA_API_SECRET"));
/// assert!(is_secret_setting("EVENT_BUS_PULSAR_TOKEN"));
/// assert!(is_secret_setting("sasl.password"));
/// assert!(is_secret_setting("ssl.key.pem"));
/// assert!(!is_secret_setting("EVENT_BUS_TOPIC_PREFIX"));
/// ```
pub fn is_secret_setting(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    [
        "PASSWORD",
        "SECRET",
        "TOKEN",
        "API_KEY",
        "CREDENTIAL",
        "PASSPHRASE",
        "PRIVATE_KEY",
        "KEY.PEM",
        "KEY_PEM",
        "KEYSTORE",
    ]
    .iter()
    .any(|s| n.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_with_url_characters_are_masked_whole() {
        for pw in ["a/b", "a?b", "a#b", "a@b", "a:b", "é/é"] {
            let url = format!("redis://user:{pw}@host:6379/0");
            let red = redact_url(&url);
            assert_eq!(red, "redis://user:********@host:6379/0", "{url}");
            assert_eq!(Redactor::from_url(&url).scrub(&format!("x {pw} y")), "x ******** y");
        }
    }

    #[test]
    fn query_passwords_are_masked() {
        let url = "redis://h/0?a=b&PASSWORD=qwerty#frag";
        assert_eq!(redact_url(url), "redis://h/0?a=b&PASSWORD=********#frag");
        assert_eq!(Redactor::from_url(url).scrub("qwerty"), MASK);
    }

    #[test]
    fn no_credentials_nothing_changes() {
        assert_eq!(redact_url("pulsar://broker:6650"), "pulsar://broker:6650");
        assert!(Redactor::from_url("pulsar://broker:6650").is_empty());
        assert!(Redactor::from_url("garbage").is_empty());
    }

    #[test]
    fn longer_secrets_are_masked_first() {
        let mut r = Redactor::new();
        r.add_text("pw");
        r.add_text("pw-long");
        assert_eq!(r.scrub("pw-long and pw"), "******** and ********");
        assert_eq!(format!("{r:?}"), "Redactor(2 secrets)");
    }
}
