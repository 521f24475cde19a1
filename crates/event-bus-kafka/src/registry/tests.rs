//! The registry client against fixed HTTP answers: which failures are
//! transient, the grace of a missing schema id, and credentials kept out
//! of errors.

use std::time::Duration;

use openedx_events::bus::transport::{TransportError, TransportErrorKind};
use openedx_events::config::secret::Secret;

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
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"schema\": \"".to_string(),
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
