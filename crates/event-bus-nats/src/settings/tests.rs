use super::*;

fn with(pairs: &[(&str, &str)]) -> Settings {
    let mut s = Settings::new();
    for (k, v) in pairs {
        s.set(*k, *v);
    }
    s
}

#[test]
fn defaults() {
    let n = NatsSettings::from_settings(&Settings::new()).unwrap();
    assert_eq!(n, NatsSettings::default());
    assert_eq!(n.urls, vec![DEFAULT_URL.to_string()]);
    assert_eq!(n.ack_wait, Duration::from_secs(30));
    assert_eq!(n.duplicate_window, Duration::from_secs(120));
    assert!(n.publish_deduplication);
    assert_eq!(n.auth, Auth::None);
}

#[test]
fn every_invalid_setting_names_its_key() {
    let cases: &[(&str, &str)] = &[
        (URL, "http://localhost:4222"),
        (URL, "nats://"),
        (URL, " , "),
        (SUBJECT_PREFIX, "a..b"),
        (SUBJECT_PREFIX, "a.*"),
        (SUBJECT_PREFIX, ""),
        (STREAM_MAX_AGE, "soon"),
        (STREAM_MAX_BYTES, "-1"),
        (STREAM_REPLICAS, "0"),
        (STREAM_REPLICAS, "6"),
        (STREAM_STORAGE, "disk"),
        (DUPLICATE_WINDOW, "0"),
        (PUBLISH_DEDUPLICATION, "maybe"),
        (ACK_WAIT_SECONDS, "0"),
        (MAX_ACK_PENDING, "0"),
        (OPERATION_TIMEOUT, "0"),
        (TLS_REQUIRED, "perhaps"),
        (TLS_CA_FILE, "/no/such/ca.pem"),
        (CREDS_FILE, "/no/such/user.creds"),
        (NKEY_SEED, "not-a-seed"),
    ];
    for (key, value) in cases {
        let e = NatsSettings::from_settings(&with(&[(key, value)]))
            .err()
            .unwrap_or_else(|| panic!("{key}={value:?} was accepted"));
        assert_eq!(e.key, *key, "{key}={value:?}: {e}");
    }
}

#[test]
fn conflicting_auth_names_both_keys() {
    let pairs = [
        (&[(TOKEN, "t"), (USER, "u"), (PASSWORD, "p")][..], USER, TOKEN),
        (&[(TOKEN, "t"), (NKEY_SEED, "SUABC")][..], TOKEN, NKEY_SEED),
        (&[(PASSWORD, "p"), (TOKEN, "t")][..], PASSWORD, TOKEN),
    ];
    for (given, first, second) in pairs {
        let e = NatsSettings::from_settings(&with(given)).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(first) && text.contains(second), "{text}");
        assert!(
            !text.contains("\"t\"") && !text.contains("\"p\""),
            "no secret in {text}"
        );
    }
    let e = NatsSettings::from_settings(&with(&[(USER, "u")])).unwrap_err();
    assert_eq!(e.key, PASSWORD);
    let e = NatsSettings::from_settings(&with(&[(PASSWORD, "p")])).unwrap_err();
    assert_eq!(e.key, USER);
}

#[test]
fn tls_cert_and_key_go_together() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("c.pem");
    std::fs::write(&cert, "x").unwrap();
    let e = NatsSettings::from_settings(&with(&[(TLS_CERT_FILE, cert.to_str().unwrap())])).unwrap_err();
    assert_eq!(e.key, TLS_KEY_FILE);
    let n = NatsSettings::from_settings(&with(&[
        (TLS_CERT_FILE, cert.to_str().unwrap()),
        (TLS_KEY_FILE, cert.to_str().unwrap()),
        (TLS_REQUIRED, "true"),
    ]))
    .unwrap();
    assert!(n.tls_required && n.tls_client.is_some());
}

#[test]
fn parses_values_and_masks_secrets() {
    let n = NatsSettings::from_settings(&with(&[
        (URL, "nats://app:hunter2@a:4222,tls://b:4443"),
        (USER, "svc"),
        (PASSWORD, "hunter3"),
        (SUBJECT_PREFIX, "openedx.prod"),
        (STREAM_MAX_AGE, "86400"),
        (STREAM_MAX_BYTES, "1048576"),
        (STREAM_REPLICAS, "3"),
        (STREAM_STORAGE, "Memory"),
        (DUPLICATE_WINDOW, "30"),
        (PUBLISH_DEDUPLICATION, "false"),
        (ACK_WAIT_SECONDS, "2.5"),
        (MAX_ACK_PENDING, "64"),
        (OPERATION_TIMEOUT, "3"),
    ]))
    .unwrap();
    assert_eq!(n.urls.len(), 2);
    assert_eq!(n.subject_prefix, "openedx.prod");
    assert_eq!(n.stream_max_age, Duration::from_secs(86400));
    assert_eq!(n.stream_max_bytes, Some(1_048_576));
    assert_eq!((n.stream_replicas, n.stream_storage), (3, Storage::Memory));
    assert!(!n.publish_deduplication);
    assert_eq!(n.ack_wait, Duration::from_millis(2500));
    assert_eq!(n.max_ack_pending, 64);
    let shown = format!("{n:?} {}", n.redacted_urls());
    assert!(!shown.contains("hunter"), "{shown}");
    assert!(matches!(n.auth, Auth::UserPassword { ref user, .. } if user == "svc"));
}
