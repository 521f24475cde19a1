//! The `event-bus` binary from outside: the codec against the Python
//! vectors, schemas byte for byte, one-line errors, produce → consume over a
//! SQLite file, dead letters, and the demo.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use openedx_events::catalog;
use openedx_events::testing::{openedx_events_vectors, samples};
use serde_json::Value as Json;

const LOGIN: &str = "org.openedx.learning.auth.session.login.completed.v1";
const XBLOCK: &str = "org.openedx.content_authoring.xblock.published.v1";

/// The binary, with no event bus settings inherited from the environment.
fn cli() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_event-bus"));
    for (k, _) in std::env::vars() {
        if k.starts_with("EVENT_BUS_") || ["RUST_LOG", "EVENTS_SERVICE_NAME", "SERVICE_VARIANT"].contains(&k.as_str()) {
            c.env_remove(k);
        }
    }
    c.stdin(Stdio::null());
    c
}

fn run(args: &[&str]) -> Output {
    cli().args(args).output().expect("run event-bus")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    o
}

/// Exit 1 with exactly one `error:` line naming `needle`.
fn fails(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line expected: {err:?}");
    assert!(errors[0].contains(needle), "{:?} should name {needle:?}", errors[0]);
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
}

/// Exit 1 and stderr is exactly one `error:` line naming `needle`.
fn fails_alone(o: &Output, needle: &str) {
    fails(o, needle);
    assert_eq!(stderr(o).lines().count(), 1, "stderr: {:?}", stderr(o));
}

/// Run `f` over `items` on a few threads (process start-up dominates).
fn parallel<T: Sync>(items: &[T], f: impl Fn(&T) -> Option<String> + Sync) -> Vec<String> {
    let chunk = items.len().div_ceil(8).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(|| part.iter().filter_map(&f).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker thread"))
            .collect()
    })
}

#[test]
fn codec_matches_every_python_vector() {
    let samples = samples();
    assert_eq!(samples.len(), 144);
    let failures = parallel(&samples, |s| {
        let o = run(&["codec", "decode", "--event-type", &s.event_type, "--hex", &s.avro_hex]);
        if !o.status.success() || stdout(&o) != format!("{}\n", s.data_text) {
            return Some(format!("decode {}: {} {}", s.event_type, stdout(&o), stderr(&o)));
        }
        let o = run(&["codec", "encode", "--event-type", &s.event_type, "--json", &s.data_text]);
        if !o.status.success() || stdout(&o) != format!("{}\n", s.avro_hex) {
            return Some(format!("encode {}: {} {}", s.event_type, stdout(&o), stderr(&o)));
        }
        None
    });
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn codec_encode_reads_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.json");
    std::fs::write(
        &file,
        r#"{"xblock_info": {"usage_key": "block-v1:edX+D+R+type@html+block@b1", "block_type": "html"}}"#,
    )
    .unwrap();
    let o = ok(run(&[
        "codec",
        "encode",
        "--event-type",
        XBLOCK,
        "--json",
        &format!("@{}", file.display()),
    ]));
    assert_eq!(
        stdout(&o),
        "46626c6f636b2d76313a6564582b442b522b747970654068746d6c2b626c6f636b4062310868746d6c00\n"
    );
}

#[test]
fn schemas_equal_the_python_files_byte_for_byte() {
    let dir = openedx_events_vectors("schemas");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "avsc"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 72);
    let failures = parallel(&files, |path: &std::path::PathBuf| {
        let name = path.file_stem().unwrap().to_str().unwrap();
        let o = run(&["schema", name]);
        let want = std::fs::read(path).unwrap();
        (!o.status.success() || o.stdout != want).then(|| format!("{name}: {}", stderr(&o)))
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn schema_strings_equal_the_canonical_strings() {
    let text = std::fs::read_to_string(openedx_events_vectors("schema-strings.json")).unwrap();
    let strings: BTreeMap<String, String> = serde_json::from_str(&text).unwrap();
    assert_eq!(strings.len(), 72);
    let pairs: Vec<(String, String)> = strings.into_iter().collect();
    let failures = parallel(&pairs, |(name, want)| {
        let o = run(&["schema", "--string", name]);
        (!o.status.success() || stdout(&o) != *want).then(|| format!("{name}: {}", stderr(&o)))
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn events_lists_the_catalog() {
    let o = ok(run(&["events"]));
    let text = stdout(&o);
    assert_eq!(text.lines().count(), 75);
    assert!(text
        .lines()
        .any(|l| l.starts_with(LOGIN) && l.contains("learning") && l.ends_with(" bus")));
    let o = ok(run(&["events", "--json"]));
    let list: Vec<Json> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(list.len(), 75);
    assert_eq!(list.iter().filter(|e| e["bus_capable"] == false).count(), 3);
    let names: Vec<&str> = list.iter().map(|e| e["name"].as_str().unwrap()).collect();
    let catalog: Vec<&str> = catalog::all().iter().map(|t| t.name()).collect();
    assert_eq!(names, catalog);
    assert!(list.iter().all(|e| e["subdomain"].is_string()));
}

#[test]
fn bad_inputs_are_one_line_errors() {
    let unserializable = "org.openedx.content_authoring.course.certificate_config.changed.v1";
    fails_alone(&run(&["schema", "org.nope.v1"]), "org.nope.v1");
    fails_alone(&run(&["schema", unserializable]), unserializable);
    fails_alone(&run(&["schema", "--string", "org.nope.v1"]), "org.nope.v1");
    fails_alone(
        &run(&["codec", "decode", "--event-type", XBLOCK, "--hex", "4g"]),
        "--hex",
    );
    fails_alone(
        &run(&["codec", "decode", "--event-type", XBLOCK, "--hex", "abc"]),
        "--hex",
    );
    // Truncated and trailing bytes.
    let good = "46626c6f636b2d76313a6564582b442b522b747970654068746d6c2b626c6f636b4062310868746d6c00";
    fails_alone(
        &run(&["codec", "decode", "--event-type", XBLOCK, "--hex", &good[..40]]),
        XBLOCK,
    );
    let trailing = format!("{good}00");
    fails_alone(
        &run(&["codec", "decode", "--event-type", XBLOCK, "--hex", &trailing]),
        "trailing",
    );
    fails_alone(
        &run(&["codec", "decode", "--event-type", "org.nope.v1", "--hex", good]),
        "org.nope.v1",
    );
    fails_alone(
        &run(&["codec", "encode", "--event-type", XBLOCK, "--json", "{nope"]),
        "--json",
    );
    fails_alone(
        &run(&[
            "codec",
            "encode",
            "--event-type",
            XBLOCK,
            "--json",
            "@/nonexistent/x.json",
        ]),
        "--json",
    );
    fails_alone(
        &run(&[
            "codec",
            "encode",
            "--event-type",
            XBLOCK,
            "--json",
            r#"{"xblock_info": {"usage_key": "block-v1:edX+D+R+type@html+block@b1", "block_type": 3}}"#,
        ]),
        "xblock_info.block_type",
    );
    fails_alone(
        &run(&[
            "codec",
            "encode",
            "--event-type",
            XBLOCK,
            "--json",
            r#"{"xblock_info": {"usage_key": "not-a-key", "block_type": "html"}}"#,
        ]),
        "usage_key",
    );
    fails_alone(
        &run(&["codec", "encode", "--event-type", XBLOCK, "--json", "{}"]),
        "xblock_info",
    );
    fails_alone(&run(&["consume", "-t", "t"]), "--group");
    fails_alone(&run(&["frobnicate"]), "frobnicate");
    // --extra is checked before connecting.
    fails_alone(
        &run(&["consume", "-t", "t", "-g", "g", "--extra", "{'a': 1}"]),
        "--extra",
    );
    fails_alone(&run(&["consume", "-t", "t", "-g", "g", "--extra", "[1]"]), "--extra");
    fails(
        &run(&["consume", "-t", "t", "-g", "g"]),
        "Cannot consume events; no consumer configured",
    );
    fails(
        &run(&["consume", "-t", "t", "-g", "g", "--backend", "nope"]),
        "EVENT_BUS_BACKEND",
    );
    fails(
        &run(&[
            "consume",
            "-t",
            "t",
            "-g",
            "g",
            "--backend",
            "memory",
            "--set",
            "EVENT_BUS_CONSUMER_BATCH_SIZE=0",
        ]),
        "EVENT_BUS_CONSUMER_BATCH_SIZE",
    );
    let data = r#"{"user": {"id": "seven", "is_active": true, "pii": {"username": "a", "email": "b", "name": "c"}}}"#;
    fails_alone(
        &run(&[
            "produce",
            "--backend",
            "memory",
            "--event-type",
            LOGIN,
            "-t",
            "t",
            "--data",
            data,
        ]),
        "user.id",
    );
    let data = r#"{"user": {"id": 7, "is_active": true, "pii": {"username": "a", "email": "b", "name": "c"}}}"#;
    fails_alone(
        &run(&[
            "produce",
            "--backend",
            "memory",
            "--event-type",
            LOGIN,
            "-t",
            "t",
            "--data",
            data,
            "--key-field",
            "user.nope",
        ]),
        "user.nope",
    );
    fails_alone(
        &run(&[
            "produce",
            "--backend",
            "memory",
            "--event-type",
            LOGIN,
            "-t",
            "t",
            "--data",
            data,
            "--metadata",
            r#"{"id": "x"}"#,
        ]),
        "'id'",
    );
    fails(
        &run(&["produce", "--event-type", LOGIN, "-t", "t", "--data", data]),
        "no backend configured",
    );
    let dir = tempfile::tempdir().unwrap();
    let bad_config = dir.path().join("bad.toml");
    std::fs::write(&bad_config, "EVENT_BUS_BACKEND = [\n").unwrap();
    fails_alone(
        &run(&[
            "produce",
            "--config",
            bad_config.to_str().unwrap(),
            "--event-type",
            LOGIN,
            "-t",
            "t",
            "--data",
            data,
        ]),
        "bad.toml",
    );
}

fn sqlite_args(db: &Path) -> Vec<String> {
    vec![
        "--backend".into(),
        "sqlite".into(),
        "--set".into(),
        format!("EVENT_BUS_SQLITE_PATH={}", db.display()),
        "--prefix".into(),
        "test".into(),
    ]
}

fn run_with(common: &[String], args: &[&str]) -> Output {
    cli().args(common).args(args).output().expect("run event-bus")
}

#[test]
fn produce_then_consume_over_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let common = sqlite_args(&dir.path().join("bus.db"));
    let data = r#"{"user": {"id": 42, "is_active": true, "pii": {"username": "ana", "email": "ana@example.org", "name": "Ana"}}}"#;
    let o = ok(run_with(
        &common,
        &[
            "produce",
            "--event-type",
            LOGIN,
            "--topic",
            "logins",
            "--key-field",
            "user.pii.username",
            "--data",
            data,
            "--count",
            "100",
        ],
    ));
    assert!(stderr(&o).contains("100 events"), "{}", stderr(&o));
    assert!(stderr(&o).contains("test-logins"), "{}", stderr(&o));

    let o = ok(run_with(
        &common,
        &[
            "consume", "--topic", "logins", "--group", "g1", "--limit", "100", "--output", "json",
        ],
    ));
    let t = catalog::get(LOGIN).unwrap();
    let want = t
        .data_from_json(&serde_json::from_str(data).unwrap())
        .unwrap()
        .to_json_string();
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 100, "{text}");
    let mut ids = HashSet::new();
    for line in &lines {
        assert!(line.starts_with("{\"metadata\": {\"event_type\": "), "{line}");
        assert!(line.ends_with(&format!(", \"data\": {want}}}")), "{line}");
        let j: Json = serde_json::from_str(line).unwrap();
        assert_eq!(j["metadata"]["event_type"], LOGIN);
        assert_eq!(j["metadata"]["sourcelib"], serde_json::json!([11, 2, 0]));
        assert_eq!(j["data"], serde_json::from_str::<Json>(&want).unwrap());
        ids.insert(j["metadata"]["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 100, "every event has its own id");
    let err = stderr(&o);
    assert!(err.contains("processed 100"), "{err}");

    // Given metadata: kept, with a fresh id per event when none is given.
    ok(run_with(
        &common,
        &[
            "produce",
            "--event-type",
            LOGIN,
            "--topic",
            "meta",
            "--data",
            data,
            "--count",
            "3",
            "--metadata",
            r#"{"source": "openedx/cli-test/web", "time": "2024-01-02T03:04:05.000006+00:00"}"#,
        ],
    ));
    let o = ok(run_with(
        &common,
        &["consume", "-t", "meta", "-g", "g", "--limit", "3", "--output", "json"],
    ));
    let lines: Vec<Json> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    let ids: HashSet<&str> = lines.iter().map(|j| j["metadata"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3);
    for j in &lines {
        assert_eq!(j["metadata"]["source"], "openedx/cli-test/web");
        assert_eq!(j["metadata"]["time"], "2024-01-02T03:04:05.000006+00:00");
        assert_eq!(j["metadata"]["event_type"], LOGIN);
    }

    // Text output, and the limit stops the second group too.
    let o = ok(run_with(
        &common,
        &["consume", "-t", "logins", "-g", "g2", "--limit", "2"],
    ));
    let text = stdout(&o);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.lines().all(|l| l.contains(LOGIN)), "{text}");
}

#[test]
fn demo_runs_end_to_end() {
    let o = ok(run(&["demo", "--events", "200"]));
    let text = stdout(&o);
    assert!(text.contains("demo: OK"), "{text}");
    assert!(text.lines().filter(|l| l.starts_with("  <- ")).count() >= 5, "{text}");
    assert!(text.contains("0 failures"), "{text}");
}

/// A message on `topic` whose body does not decode (publish it raw, as a
/// broken producer would).
fn publish_garbage(db: &Path, topic: &str) -> String {
    use openedx_events::bus::transport::{RawMessage, Transport};
    use openedx_events::bus::wire::cloudevent_headers;
    use openedx_events::metadata::EventsMetadata;
    let metadata = EventsMetadata::new(LOGIN, 0);
    let transport = event_bus_sqlite::SqliteTransport::open(db, Default::default()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(transport.publish_raw(&RawMessage {
        topic: topic.into(),
        key: None,
        headers: cloudevent_headers(&metadata),
        value: vec![0xff, 0xff, 0xff],
        timestamp: None,
    }))
    .unwrap();
    metadata.id.to_string()
}

#[test]
fn dead_letters_list_show_and_requeue() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bus.db");
    let mut common = sqlite_args(&db);
    common.extend(["--set".into(), "EVENT_BUS_CONSUMER_POLL_TIMEOUT=0.2".into()]);
    let data = r#"{"user": {"id": 42, "is_active": true, "pii": {"username": "ana", "email": "ana@example.org", "name": "Ana"}}}"#;
    ok(run_with(
        &common,
        &["produce", "--event-type", LOGIN, "--topic", "dl", "--data", data],
    ));
    // Open the file only after the CLI has created it.
    let id = publish_garbage(&db, "test-dl");

    // The good one is printed, the bad one dead-lettered; the limit counts both.
    let o = ok(run_with(
        &common,
        &["consume", "-t", "dl", "-g", "g", "--limit", "2", "--output", "json"],
    ));
    assert_eq!(stdout(&o).lines().count(), 1);
    assert!(stderr(&o).contains("dead-lettered 1"), "{}", stderr(&o));

    let o = ok(run_with(&common, &["dlq", "list", "-t", "dl"]));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let fields: Vec<&str> = lines[0].split('\t').collect();
    assert_eq!(fields.len(), 6, "{text}");
    assert_eq!(&fields[1..3], ["undecodable", "1"]);
    assert!(fields[3].ends_with("+00:00"), "{text}");
    assert_eq!(&fields[4..], [LOGIN, id.as_str()]);

    let o = ok(run_with(&common, &["dlq", "show", "-t", "dl", fields[0]]));
    let text = stdout(&o);
    for want in [
        "dlq_reason: undecodable",
        &format!("ce_type: {LOGIN}"),
        "dlq_original_topic: test-dl",
        "data: (undecodable",
    ] {
        assert!(text.contains(want), "{want:?} in {text}");
    }
    fails(&run_with(&common, &["dlq", "show", "-t", "dl", "999999"]), "999999");

    let o = ok(run_with(&common, &["dlq", "requeue", "-t", "dl"]));
    assert_eq!(stdout(&o), "requeued 1 dead letters from test-dl-dlq\n");
    let o = ok(run_with(&common, &["dlq", "requeue", "-t", "dl"]));
    assert_eq!(stdout(&o), "requeued 0 dead letters from test-dl-dlq\n");
    // Back on its topic: the group meets it again.
    let o = ok(run_with(&common, &["consume", "-t", "dl", "-g", "g", "--limit", "1"]));
    assert!(stderr(&o).contains("dead-lettered 1"), "{}", stderr(&o));
    let o = ok(run_with(&common, &["dlq", "list", "-t", "dl"]));
    assert_eq!(stdout(&o).lines().count(), 2);
}

#[test]
fn bench_reports_one_json_object() {
    let dir = tempfile::tempdir().unwrap();
    let common = sqlite_args(&dir.path().join("bus.db"));
    let o = ok(run_with(
        &common,
        &["bench", "--events", "200", "--producers", "2", "--json"],
    ));
    let j: Json = serde_json::from_str(stdout(&o).trim_end()).unwrap();
    assert_eq!(j["backend"], "sqlite");
    assert_eq!(j["received"], 200);
    assert_eq!(j["produced"], 200);
    for key in [
        "produce_rate",
        "e2e_rate",
        "latency_p50_ms",
        "latency_p99_ms",
        "peak_rss_kib",
    ] {
        assert!(j[key].is_number(), "{key} in {j}");
    }
}
