//! `rediss://` end to end with rustls (no OpenSSL in the build): a
//! redis-server of the test's own with a TLS port and a certificate from a
//! test CA (made with the `openssl` command). A server the system does not
//! trust is refused with a connection error (no panic, no hang); once the
//! CA is trusted (`SSL_CERT_FILE`, read by rustls-native-certs), events go
//! through. Alone in its test binary because it sets an environment
//! variable.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_bus_redis::{RedisConfig, RedisTransport};
use openedx_events::bus::transport::{StartPosition, SubscribeRequest, TransportErrorKind};
use openedx_events::bus::{EventBusProducer, Transport};
use openedx_events::catalog;
use openedx_events::metadata::EventsMetadata;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("the TLS test needs the openssl command to make certificates: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn rediss_with_rustls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=event-bus-test-ca",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("write ext.cnf");
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new("/usr/bin/redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args([
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.crt",
        ])
        .args([
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "tls-test-pw",
            "--daemonize",
            "no",
        ])
        .arg("--logfile")
        .arg(d.join("redis.log"))
        .current_dir(d)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the TLS test needs /usr/bin/redis-server");
    let _server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the TLS redis-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("rediss://default:tls-test-pw@localhost:{port}/0");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    // Not trusted yet: refused, quickly, without the password in the error.
    rt.block_on(async {
        let mut config = RedisConfig::new(&url).expect("url");
        config.command_timeout = Duration::from_secs(2);
        let e = RedisTransport::connect(config)
            .await
            .expect_err("an untrusted certificate is refused");
        assert!(
            matches!(e.kind, TransportErrorKind::Connection | TransportErrorKind::Timeout),
            "{e}"
        );
        assert!(!e.to_string().contains("tls-test-pw"), "{e}");
        println!("untrusted server refused: {e}");
    });

    std::env::set_var("SSL_CERT_FILE", d.join("ca.crt"));
    rt.block_on(async {
        let t: Arc<dyn Transport> = Arc::new(
            RedisTransport::connect(RedisConfig::new(&url).expect("url"))
                .await
                .unwrap_or_else(|e| panic!("rediss:// connect: {e}")),
        );
        let et = catalog::get("org.openedx.learning.auth.session.login.completed.v1").expect("login");
        let data = openedx_events::sample::event_data(et, &mut openedx_events::sample::rng(9));
        let m = EventsMetadata::new(et.name(), 0);
        let mut sub = t
            .subscribe(&SubscribeRequest {
                topic: "tls-user-login".into(),
                group: "g".into(),
                consumer_name: "c".into(),
                start: StartPosition::Earliest,
                extras: Default::default(),
            })
            .await
            .expect("subscribe over TLS");
        EventBusProducer::new(t.clone(), None)
            .send(et, "tls-user-login", None, &data, &m)
            .await
            .expect("publish over TLS");
        let deadline = Instant::now() + Duration::from_secs(10);
        let got = loop {
            let batch = sub
                .receive(1, Duration::from_millis(200))
                .await
                .expect("receive over TLS");
            if let Some(d) = batch.into_iter().next() {
                break d;
            }
            assert!(Instant::now() < deadline, "nothing arrived over TLS");
        };
        let incoming = got.event.as_ref().expect("an event");
        assert_eq!(incoming.metadata, m);
        assert_eq!(et.decode_data(&incoming.body).expect("decodes"), data);
        sub.ack(got.tag).await.expect("ack");
        sub.close().await.expect("close");
        println!("rediss:// round trip with rustls: ok");
    });
}
