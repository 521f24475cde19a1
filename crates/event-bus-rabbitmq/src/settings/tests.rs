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
    let r = RabbitMqSettings::from_settings(&Settings::new()).unwrap();
    assert_eq!(r.url, DEFAULT_URL);
    assert_eq!(r.prefetch, 100);
    assert_eq!(r.max_message_bytes, 16 * 1024 * 1024);
    assert_eq!(r.operation_timeout, Duration::from_secs(10));
    assert_eq!(r.retry_delays_ms, DEFAULT_RETRY_DELAYS_MS);
    let uri = r.amqp_uri().unwrap();
    assert_eq!(uri.vhost, "/");
    assert_eq!(uri.authority.userinfo.username, "guest");
    assert_eq!(uri.query.heartbeat, Some(20));
}

#[test]
fn every_invalid_setting_names_its_key() {
    let cases: &[&[(&str, &str)]] = &[
        &[(URL, "http://localhost:5672")],
        &[(URL, "amqp://host:notaport")],
        &[(URL, "amqp://guest:guest@localhost:5672/%2f"), (USER, "app")],
        &[(URL, "amqp://guest:guest@localhost:5672/%2f"), (PASSWORD, "x")],
        &[(URL, "amqp://localhost:5672/prod"), (VHOST, "stage")],
        &[(TLS_CA_FILE, "/etc/hostname")],
        &[(URL, "amqps://localhost:5671"), (TLS_CA_FILE, "/no/such/ca.pem")],
        &[(PREFETCH, "0")],
        &[(PREFETCH, "70000")],
        &[(RETRY_DELAYS, "1, 0.5")],
        &[(RETRY_DELAYS, "soon")],
        &[(RETRY_DELAYS, "1000000")],
        &[(OPERATION_TIMEOUT, "0")],
        &[(HEARTBEAT, "-1")],
        &[(MAX_MESSAGE_BYTES, "0")],
        &[(MAX_MESSAGE_BYTES, "999999999999")],
    ];
    for case in cases {
        let key = case.last().map(|(k, _)| *k).unwrap_or(URL);
        let e = RabbitMqSettings::from_settings(&with(case))
            .err()
            .unwrap_or_else(|| panic!("{case:?} was accepted"));
        assert_eq!(e.key, key, "{case:?}: {e}");
    }
}

#[test]
fn credential_conflicts_name_both_keys_and_hide_the_password() {
    let e = RabbitMqSettings::from_settings(&with(&[(URL, "amqp://app:hunter2@mq:5672/%2f"), (USER, "other")]))
        .unwrap_err();
    assert_eq!(e.key, USER);
    assert!(e.message.contains(URL), "{e}");
    assert!(!e.message.contains("hunter2"), "{e}");
    let e = RabbitMqSettings::from_settings(&with(&[(URL, "amqp://a:hunter2@mq/%2f"), (VHOST, "x")])).unwrap_err();
    assert!(e.message.contains(URL) && !e.message.contains("hunter2"), "{e}");
    let e = RabbitMqSettings::from_settings(&with(&[(URL, "ftp://a:hunter2@mq/")])).unwrap_err();
    assert_eq!(e.key, URL);
    assert!(!e.message.contains("hunter2"), "{e}");
}

#[test]
fn separate_credentials_and_vhost_apply() {
    let r = RabbitMqSettings::from_settings(&with(&[
        (URL, "amqp://mq.example:5673"),
        (USER, "app"),
        (PASSWORD, "hunter2"),
        (VHOST, "openedx"),
        (HEARTBEAT, "0"),
        (PREFETCH, "7"),
        (RETRY_DELAYS, "0.5, 2, 60"),
        (OPERATION_TIMEOUT, "2.5"),
    ]))
    .unwrap();
    assert!(!format!("{r:?}").contains("hunter2"));
    let uri = r.amqp_uri().unwrap();
    assert_eq!(uri.authority.userinfo.username, "app");
    assert_eq!(uri.authority.userinfo.password, "hunter2");
    assert_eq!((uri.authority.host.as_str(), uri.authority.port), ("mq.example", 5673));
    assert_eq!(uri.vhost, "openedx");
    assert_eq!(uri.query.heartbeat, Some(0));
    assert_eq!(uri.query.connection_timeout, Some(2500));
    assert_eq!(r.prefetch, 7);
    assert_eq!(r.retry_delays_ms, vec![500, 2000, 60_000]);
    assert_eq!(r.redactor().scrub("bad hunter2"), "bad ********");
}

#[test]
fn tls_files_need_amqps_and_come_in_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
    let ca = ca.to_string_lossy().to_string();
    let r = RabbitMqSettings::from_settings(&with(&[(URL, "amqps://mq:5671/%2f"), (TLS_CA_FILE, &ca)])).unwrap();
    assert!(r.tls_config().unwrap().cert_chain.is_some());
    let e = RabbitMqSettings::from_settings(&with(&[(URL, "amqps://mq:5671/%2f"), (TLS_CERT_FILE, &ca)])).unwrap_err();
    assert_eq!(e.key, TLS_KEY_FILE);
    let r = RabbitMqSettings::from_settings(&with(&[
        (URL, "amqps://mq:5671/%2f"),
        (TLS_CERT_FILE, &ca),
        (TLS_KEY_FILE, &ca),
    ]))
    .unwrap();
    assert!(r.tls_config().unwrap().identity.is_some());
}
