//! Names on the server: a stream and a subject per topic, a durable
//! consumer per group. NATS forbids `.`, `*`, `>`, whitespace and path
//! separators in stream and consumer names (and `.` separates subject
//! tokens), so anything but ASCII letters, digits, `-` and `_` becomes `_`;
//! when that changed the name, a short hash of the original is appended so
//! two topics that map to the same text (`a.b`, `a_b`) never share a
//! stream.

/// Whether `c` may stay as is in a name.
fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// FNV-1a, 32 bits: a stable short hash (no dependency, same on every
/// platform and release).
fn fnv1a(text: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in text.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Longest name kept before the hash (stream names are limited and appear
/// in API subjects).
const MAX_NAME: usize = 200;

/// `text` as a NATS name: unchanged when it is already plain (and not
/// empty or too long), otherwise mapped and suffixed with `-<8 hex digits>`
/// of the original.
///
/// ```
/// use event_bus_nats::names::sanitize;
/// assert_eq!(sanitize("dev-user-login"), "dev-user-login");
/// assert_eq!(sanitize("a.b"), format!("a_b-{}", &sanitize("a.b")[4..]));
/// assert_ne!(sanitize("a.b"), sanitize("a_b"));
/// assert_ne!(sanitize("a.b"), sanitize("a*b"));
/// ```
pub fn sanitize(text: &str) -> String {
    if !text.is_empty() && text.len() <= MAX_NAME && text.chars().all(plain) {
        return text.to_string();
    }
    let mapped: String = text
        .chars()
        .map(|c| if plain(c) { c } else { '_' })
        .take(MAX_NAME)
        .collect();
    format!("{mapped}-{:08x}", fnv1a(text))
}

/// The stream of a full topic.
///
/// ```
/// assert_eq!(event_bus_nats::names::stream_name("dev-user-login"), "dev-user-login");
/// ```
pub fn stream_name(topic: &str) -> String {
    sanitize(topic)
}

/// The subject of a full topic: `<prefix>.<topic as one token>`.
///
/// ```
/// assert_eq!(event_bus_nats::names::subject("openedx", "dev-user-login"), "openedx.dev-user-login");
/// ```
pub fn subject(prefix: &str, topic: &str) -> String {
    format!("{prefix}.{}", sanitize(topic))
}

/// The durable consumer of a group.
///
/// ```
/// assert_eq!(event_bus_nats::names::consumer_name("my-service"), "my-service");
/// ```
pub fn consumer_name(group: &str) -> String {
    sanitize(group)
}

/// Whether a subject prefix is dot-separated non-empty plain tokens.
pub(crate) fn valid_subject_prefix(prefix: &str) -> bool {
    !prefix.is_empty() && prefix.split('.').all(|t| !t.is_empty() && t.chars().all(plain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_is_stable_and_collision_free_for_lookalikes() {
        let a = sanitize("prod-user.login");
        assert!(a.starts_with("prod-user_login-"), "{a}");
        assert_eq!(a, sanitize("prod-user.login"));
        for other in [
            "prod-user_login",
            "prod-user*login",
            "prod-user>login",
            "prod-user login",
        ] {
            assert_ne!(a, sanitize(other), "{other}");
        }
        assert!(sanitize("").starts_with("-"));
        assert!(sanitize(&"x".repeat(300)).len() <= MAX_NAME + 9);
        assert!(sanitize("ünï/cødé\\x").chars().all(plain));
        assert!(valid_subject_prefix("openedx.prod"));
        assert!(!valid_subject_prefix("openedx."));
        assert!(!valid_subject_prefix("a b"));
    }
}
