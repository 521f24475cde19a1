//! Reading, checking and masking the Kafka settings, and the librdkafka
//! configuration built from them.

use std::collections::BTreeMap;

use openedx_events::config::Settings;
use rdkafka::ClientConfig;

use super::*;

fn base() -> Settings {
    let mut s = Settings::new();
    s.set("EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS", "b1:9092,b2:9092");
    s.set("EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL", "http://registry:8081");
    s
}

fn dump(k: &KafkaSettings, c: &ClientConfig) -> BTreeMap<String, String> {
    k.redacted_config(c).into_iter().collect()
}

#[test]
fn minimal_settings_match_python_plus_our_guarantees() {
    let k = KafkaSettings::from_settings(&base()).unwrap();
    let p = dump(&k, &k.producer_config());
    assert_eq!(p["bootstrap.servers"], "b1:9092,b2:9092");
    assert_eq!(p["enable.idempotence"], "true");
    assert_eq!(p["acks"], "all");
    assert!(!p.contains_key("security.protocol"));
    assert!(!p.contains_key("client.id"));
    let c = dump(&k, &k.consumer_config("grp"));
    assert_eq!(c["group.id"], "grp");
    assert_eq!(c["enable.auto.commit"], "false");
    assert_eq!(c["enable.auto.offset.store"], "false");
    assert!(!c.contains_key("enable.idempotence"));
    assert_eq!(k.max_message_bytes(), 1_000_000);
    assert!(k.schema_registry_auth.is_none());
}

#[test]
fn required_settings_are_named() {
    let mut s = base();
    s.set("EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS", "");
    assert_eq!(
        KafkaSettings::from_settings(&s).unwrap_err().key,
        "EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS"
    );
    let mut s = Settings::new();
    s.set("EVENT_BUS_KAFKA_BOOTSTRAP_SERVERS", "b:9092");
    assert_eq!(
        KafkaSettings::from_settings(&s).unwrap_err().key,
        "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL"
    );
    let mut s = base();
    s.set("EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL", "registry:8081");
    assert_eq!(
        KafkaSettings::from_settings(&s).unwrap_err().key,
        "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL"
    );
}

#[test]
fn api_key_and_secret_mean_sasl_ssl_plain_as_python() {
    let mut s = base();
    s.set("EVENT_BUS_KAFKA_API_KEY", "the-key");
    s.set("EVENT_BUS_KAFKA_API_SECRET", "s3cr3t-value");
    let k = KafkaSettings::from_settings(&s).unwrap();
    let p = dump(&k, &k.producer_config());
    assert_eq!(p["security.protocol"], "SASL_SSL");
    assert_eq!(p["sasl.mechanism"], "PLAIN");
    assert_eq!(p["sasl.username"], "the-key");
    assert_eq!(p["sasl.password"], MASK);
    assert!(!format!("{k:?}").contains("s3cr3t-value"));
    assert!(!format!("{:?}", k.redacted_config(&k.consumer_config("g"))).contains("s3cr3t-value"));
    assert_eq!(
        mask_text("auth failed for s3cr3t-value", &k),
        "auth failed for ********"
    );
}

#[test]
fn half_set_credentials_are_errors() {
    let mut s = base();
    s.set("EVENT_BUS_KAFKA_API_KEY", "k");
    assert_eq!(
        KafkaSettings::from_settings(&s).unwrap_err().key,
        "EVENT_BUS_KAFKA_API_SECRET"
    );
    let mut s = base();
    s.set("EVENT_BUS_KAFKA_SASL_USERNAME", "u");
    assert_eq!(
        KafkaSettings::from_settings(&s).unwrap_err().key,
        "EVENT_BUS_KAFKA_SASL_PASSWORD"
    );
    let mut s = base();
    s.set("EVENT_BUS_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512");
    assert_eq!(
        KafkaSettings::from_settings(&s).unwrap_err().key,
        "EVENT_BUS_KAFKA_SASL_MECHANISM"
    );
}

#[test]
fn scram_with_explicit_protocol_and_tls_files() {
    let dir = std::env::temp_dir().join(format!("kafka-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, "x").unwrap();
    let mut s = base();
    s.set("EVENT_BUS_KAFKA_SASL_MECHANISM", "scram-sha-256");
    s.set("EVENT_BUS_KAFKA_SASL_USERNAME", "alice");
    s.set("EVENT_BUS_KAFKA_SASL_PASSWORD", "pw-123456");
    s.set("EVENT_BUS_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT");
    s.set("EVENT_BUS_KAFKA_SSL_CA_LOCATION", ca.to_str().unwrap());
    s.set("EVENTS_SERVICE_NAME", "lms");
    s.set("EVENT_BUS_KAFKA_SESSION_TIMEOUT_MS", "6000");
    let k = KafkaSettings::from_settings(&s).unwrap();
    let c = dump(&k, &k.consumer_config("g"));
    assert_eq!(c["sasl.mechanism"], "SCRAM-SHA-256");
    assert_eq!(c["security.protocol"], "SASL_PLAINTEXT");
    assert_eq!(c["sasl.password"], MASK);
    assert_eq!(c["ssl.ca.location"], ca.to_str().unwrap());
    assert_eq!(c["client.id"], "lms");
    assert_eq!(c["session.timeout.ms"], "6000");
    s.set("EVENT_BUS_KAFKA_SSL_KEY_LOCATION", "/does/not/exist.pem");
    assert_eq!(
        KafkaSettings::from_settings(&s).unwrap_err().key,
        "EVENT_BUS_KAFKA_SSL_KEY_LOCATION"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn service_variant_is_the_fallback_client_id() {
    let mut s = base();
    s.set("SERVICE_VARIANT", "cms");
    assert_eq!(
        KafkaSettings::from_settings(&s).unwrap().client_id.as_deref(),
        Some("cms")
    );
    s.set("EVENTS_SERVICE_NAME", "discovery");
    assert_eq!(
        KafkaSettings::from_settings(&s).unwrap().client_id.as_deref(),
        Some("discovery")
    );
}

#[test]
fn client_config_table_is_applied_checked_and_masked() {
    let mut s = base();
    s.set(
        "EVENT_BUS_KAFKA_CLIENT_CONFIG",
        serde_json::json!({"linger.ms": 20, "message.max.bytes": 2000000, "ssl.key.password": "kp-secret"}),
    );
    let k = KafkaSettings::from_settings(&s).unwrap();
    assert_eq!(k.max_message_bytes(), 2_000_000);
    let p = dump(&k, &k.producer_config());
    assert_eq!(p["linger.ms"], "20");
    assert_eq!(p["ssl.key.password"], MASK);

    s.set("EVENT_BUS_KAFKA_CLIENT_CONFIG", r#"{"enable.auto.commit": true}"#);
    let e = KafkaSettings::from_settings(&s).unwrap_err();
    assert_eq!(e.key, r#"EVENT_BUS_KAFKA_CLIENT_CONFIG["enable.auto.commit"]"#);

    s.set("EVENT_BUS_KAFKA_CLIENT_CONFIG", r#"{"no.such.property": 1}"#);
    let e = KafkaSettings::from_settings(&s).unwrap_err();
    assert_eq!(e.key, r#"EVENT_BUS_KAFKA_CLIENT_CONFIG["no.such.property"]"#, "{e:?}");

    s.set("EVENT_BUS_KAFKA_CLIENT_CONFIG", r#"{"linger.ms": "soon"}"#);
    let e = KafkaSettings::from_settings(&s).unwrap_err();
    assert_eq!(e.key, r#"EVENT_BUS_KAFKA_CLIENT_CONFIG["linger.ms"]"#, "{e:?}");

    s.set("EVENT_BUS_KAFKA_CLIENT_CONFIG", "[1, 2]");
    assert_eq!(
        KafkaSettings::from_settings(&s).unwrap_err().key,
        "EVENT_BUS_KAFKA_CLIENT_CONFIG"
    );
}

#[test]
fn bad_values_name_their_key() {
    for (key, value) in [
        ("EVENT_BUS_KAFKA_SECURITY_PROTOCOL", "TLS"),
        ("EVENT_BUS_KAFKA_SESSION_TIMEOUT_MS", "soon"),
        ("EVENT_BUS_KAFKA_SESSION_TIMEOUT_MS", "0"),
        ("EVENT_BUS_KAFKA_SCHEMA_REGISTRY_TIMEOUT", "-1"),
    ] {
        let mut s = base();
        s.set(key, value);
        assert_eq!(KafkaSettings::from_settings(&s).unwrap_err().key, key, "{key}={value}");
    }
}

#[test]
fn registry_credentials_are_basic_auth_and_masked() {
    let mut s = base();
    s.set("EVENT_BUS_KAFKA_SCHEMA_REGISTRY_API_KEY", "rk");
    s.set("EVENT_BUS_KAFKA_SCHEMA_REGISTRY_API_SECRET", "reg-secret-1");
    let k = KafkaSettings::from_settings(&s).unwrap();
    let (user, pass) = k.schema_registry_auth.clone().unwrap();
    assert_eq!((user.as_str(), pass.expose()), ("rk", "reg-secret-1"));
    assert!(!format!("{k:?}").contains("reg-secret-1"));
    assert_eq!(k.redactor().scrub("x reg-secret-1 y"), "x ******** y");
}

#[test]
fn debug_shows_no_secret_even_with_url_characters() {
    let mut s = base();
    s.set(
        "EVENT_BUS_KAFKA_SCHEMA_REGISTRY_URL",
        "https://rkey:Yv/8q@Lm@registry.example:8081/api",
    );
    s.set("EVENT_BUS_KAFKA_SASL_USERNAME", "alice");
    s.set("EVENT_BUS_KAFKA_SASL_PASSWORD", "Qz/3x@Wp");
    s.set(
        "EVENT_BUS_KAFKA_CLIENT_CONFIG",
        serde_json::json!({"ssl.key.password": "Kd/7r@Hn", "sasl.oauthbearer.config": "Tc/5s@Gb", "linger.ms": 5}),
    );
    let k = KafkaSettings::from_settings(&s).unwrap();
    let debug = format!("{k:?}");
    for piece in ["Yv", "8q", "Lm@", "Qz", "3x", "Wp", "Kd", "7r", "Hn", "Tc", "5s", "Gb"] {
        assert!(!debug.contains(piece), "{piece} in {debug}");
    }
    assert!(
        debug.contains("https://rkey:********@registry.example:8081/api"),
        "{debug}"
    );
    assert!(debug.contains("\"linger.ms\": \"5\""), "{debug}");
    let r = k.redactor();
    assert_eq!(r.scrub("Yv/8q@Lm Qz/3x@Wp Kd/7r@Hn"), "******** ******** ********");
    let dump = format!("{:?}", k.redacted_config(&k.producer_config()));
    for piece in ["Qz", "Kd", "Tc"] {
        assert!(!dump.contains(piece), "{piece} in {dump}");
    }
}
