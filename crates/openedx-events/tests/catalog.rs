//! The catalog against the schemas the Python library generates
//! (`shared/vectors/openedx-events-11.2.0`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use openedx_events::catalog::{self, analytics, authz, content_authoring, enterprise, learning, KNOWN_UNSERIALIZABLE};
use openedx_events::data::OpenEdxEvent;
use openedx_events::value::Record;
use serde_json::Value as Json;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/vectors/openedx-events-11.2.0"
);

fn vectors() -> PathBuf {
    let dir = Path::new(VECTORS);
    assert!(
        dir.is_dir(),
        "test vectors not found: looked for the directory {} (expected `shared/vectors/openedx-events-11.2.0` next to the workspace directory)",
        dir.display()
    );
    dir.to_path_buf()
}

/// The stored `.avsc` files: event type name to file text.
fn avsc_files() -> BTreeMap<String, String> {
    let dir = vectors().join("schemas");
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(event_type) = name.strip_suffix(".avsc") {
            let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            out.insert(event_type.to_string(), text);
        }
    }
    out
}

fn schema_strings() -> BTreeMap<String, String> {
    let path = vectors().join("schema-strings.json");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()))
}

#[test]
fn catalog_has_75_unique_event_types() {
    let all = catalog::all();
    assert_eq!(all.len(), 75);

    let names: BTreeSet<&str> = all.iter().map(|t| t.name()).collect();
    assert_eq!(names.len(), 75, "duplicate event type names");

    let mut per_subdomain: BTreeMap<&str, usize> = BTreeMap::new();
    for t in all {
        *per_subdomain
            .entry(t.subdomain().expect("org.openedx.* name"))
            .or_default() += 1;
        assert_eq!(t.minor_version(), 0, "{}", t.name());
        assert_eq!(t.fields().len(), 1, "{} should have one data argument", t.name());
        assert!(catalog::get(t.name()).is_some());
    }
    let expected: BTreeMap<&str, usize> = [
        ("learning", 37),
        ("content_authoring", 27),
        ("enterprise", 8),
        ("authz", 2),
        ("analytics", 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(per_subdomain, expected);

    // Subdomains come in load_all_signals order.
    let mut order: Vec<&str> = all.iter().map(|t| t.subdomain().unwrap()).collect();
    order.dedup();
    assert_eq!(
        order,
        ["analytics", "authz", "content_authoring", "enterprise", "learning"]
    );

    let unserializable: BTreeSet<&str> = all.iter().filter(|t| !t.is_bus_capable()).map(|t| t.name()).collect();
    let known: BTreeSet<&str> = KNOWN_UNSERIALIZABLE.into_iter().collect();
    assert_eq!(unserializable, known);
    assert_eq!(catalog::bus_capable().count(), 72);
}

#[test]
fn bus_capable_schemas_match_python() {
    let files = avsc_files();
    let strings = schema_strings();
    assert_eq!(files.len(), 72, "expected 72 .avsc files in {VECTORS}/schemas");
    assert_eq!(strings.len(), 72, "expected 72 entries in schema-strings.json");

    let orphans: Vec<&String> = files.keys().filter(|name| catalog::get(name).is_none()).collect();
    assert!(orphans.is_empty(), ".avsc files with no catalog event: {orphans:?}");

    let mut mismatches = Vec::new();
    for t in catalog::bus_capable() {
        let name = t.name();
        let schema = match t.avro() {
            Ok(s) => s,
            Err(e) => {
                mismatches.push(format!("{name}: no schema: {e}"));
                continue;
            }
        };
        let Some(text) = files.get(name) else {
            mismatches.push(format!("{name}: no .avsc file"));
            continue;
        };
        let expected: Json = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}.avsc: {e}"));
        if schema.json != expected {
            mismatches.push(format!(
                "{name}: schema JSON differs\n  ours:   {}\n  python: {}",
                schema.json, expected
            ));
        } else if schema.avsc() != *text {
            mismatches.push(format!("{name}: .avsc text differs"));
        }
        match strings.get(name) {
            None => mismatches.push(format!("{name}: missing from schema-strings.json")),
            Some(s) if *s != schema.canonical => mismatches.push(format!(
                "{name}: canonical string differs\n  ours:   {}\n  python: {s}",
                schema.canonical
            )),
            Some(_) => {}
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatching event types:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn unserializable_events_have_no_schema() {
    for name in KNOWN_UNSERIALIZABLE {
        let t = catalog::get(name).unwrap_or_else(|| panic!("{name} is not in the catalog"));
        assert!(!t.is_bus_capable(), "{name}");
        assert!(t.avro().is_err(), "{name} should have no Avro schema");
    }
}

/// The Python samples validate against the payload types (keys, datetimes,
/// UUIDs where the catalog declares them) and encode to the same bytes.
#[test]
fn python_samples_validate_and_encode_identically() {
    let path = vectors().join("events.jsonl");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut failures = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let sample: Json = serde_json::from_str(line).unwrap_or_else(|e| panic!("events.jsonl line {}: {e}", i + 1));
        let name = sample["event_type"].as_str().expect("event_type");
        seen.insert(name.to_string());
        let Some(t) = catalog::get(name) else {
            failures.push(format!("line {}: {name} is not in the catalog", i + 1));
            continue;
        };
        let result = t.data_from_json(&sample["data"]).and_then(|data| {
            let bytes = t.encode_data(&data)?;
            let back = t.decode_data(&bytes)?;
            Ok((data, bytes, back))
        });
        match result {
            Err(e) => failures.push(format!("line {}: {e}", i + 1)),
            Ok((data, bytes, back)) => {
                let expected = sample["avro_hex"].as_str().expect("avro_hex");
                let ours = hex::encode(&bytes);
                if ours != expected {
                    failures.push(format!(
                        "line {}: {name}: bytes differ\n  ours:   {ours}\n  python: {expected}",
                        i + 1
                    ));
                }
                if back != data {
                    failures.push(format!("line {}: {name}: decode(encode(data)) != data", i + 1));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing samples:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(seen.len(), 72, "samples should cover every bus-capable event type");
}

/// Every sample converts to its typed event struct and back unchanged.
#[test]
fn python_samples_convert_to_typed_events() {
    macro_rules! typed {
        ($name:expr, $data:expr, [$($t:ty,)*]) => {{
            let mut out: Option<Result<Record, String>> = None;
            $(
                if out.is_none() && $name == <$t as OpenEdxEvent>::EVENT_TYPE {
                    out = Some(
                        <$t as OpenEdxEvent>::from_data($data.clone())
                            .map(|ev| ev.to_data())
                            .map_err(|e| e.to_string()),
                    );
                }
            )*
            out
        }};
    }

    let path = vectors().join("events.jsonl");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut failures = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let sample: Json = serde_json::from_str(line).unwrap();
        let name = sample["event_type"].as_str().expect("event_type");
        let data = catalog::get(name).unwrap().data_from_json(&sample["data"]).unwrap();
        let result = typed!(
            name,
            data,
            [
                analytics::TrackingEventEmitted,
                authz::RoleAssignmentCreated,
                authz::RoleAssignmentDeleted,
                content_authoring::CourseCatalogInfoChanged,
                content_authoring::XblockCreated,
                content_authoring::XblockUpdated,
                content_authoring::XblockPublished,
                content_authoring::XblockDeleted,
                content_authoring::XblockDuplicated,
                content_authoring::CourseCertificateConfigChanged,
                content_authoring::CourseCertificateConfigDeleted,
                content_authoring::CourseCreated,
                content_authoring::ContentLibraryCreated,
                content_authoring::ContentLibraryUpdated,
                content_authoring::ContentLibraryDeleted,
                content_authoring::LibraryBlockCreated,
                content_authoring::LibraryBlockUpdated,
                content_authoring::LibraryBlockDeleted,
                content_authoring::LibraryBlockPublished,
                content_authoring::ContentObjectAssociationsChanged,
                content_authoring::ContentObjectTagsChanged,
                content_authoring::LibraryCollectionCreated,
                content_authoring::LibraryCollectionUpdated,
                content_authoring::LibraryCollectionDeleted,
                content_authoring::LibraryContainerCreated,
                content_authoring::LibraryContainerUpdated,
                content_authoring::LibraryContainerDeleted,
                content_authoring::LibraryContainerPublished,
                content_authoring::CourseImportCompleted,
                content_authoring::CourseRerunCompleted,
                enterprise::SubsidyRedeemed,
                enterprise::SubsidyRedemptionReversed,
                enterprise::LedgerTransactionCreated,
                enterprise::LedgerTransactionCommitted,
                enterprise::LedgerTransactionFailed,
                enterprise::LedgerTransactionReversed,
                enterprise::LearnerCreditCourseEnrollmentRevoked,
                enterprise::EnterpriseGroupDeleted,
                learning::StudentRegistrationCompleted,
                learning::SessionLoginCompleted,
                learning::CourseEnrollmentCreated,
                learning::CourseEnrollmentChanged,
                learning::CourseUnenrollmentCompleted,
                learning::CertificateCreated,
                learning::ProgramCertificateAwarded,
                learning::CertificateChanged,
                learning::CertificateRevoked,
                learning::ProgramCertificateRevoked,
                learning::CohortMembershipChanged,
                learning::CourseDiscussionsChanged,
                learning::PersistentGradeSummaryChanged,
                learning::XblockSkillVerified,
                learning::UserNotificationRequested,
                learning::ExamAttemptSubmitted,
                learning::ExamAttemptRejected,
                learning::ExamAttemptVerified,
                learning::ExamAttemptErrored,
                learning::ExamAttemptReset,
                learning::CourseAccessRoleAdded,
                learning::CourseAccessRoleRemoved,
                learning::ForumThreadCreated,
                learning::ForumThreadResponseCreated,
                learning::ForumResponseCommentCreated,
                learning::CourseNotificationRequested,
                learning::OraSubmissionCreated,
                learning::CoursePassingStatusUpdated,
                learning::CcxCoursePassingStatusUpdated,
                learning::BadgeAwarded,
                learning::BadgeRevoked,
                learning::IdvAttemptCreated,
                learning::IdvAttemptPending,
                learning::IdvAttemptApproved,
                learning::IdvAttemptDenied,
                learning::ExternalGraderScoreSubmitted,
                learning::LtiProviderLaunchSuccess,
            ]
        );
        match result {
            None => failures.push(format!("line {}: {name}: no typed struct", i + 1)),
            Some(Err(e)) => failures.push(format!("line {}: {name}: {e}", i + 1)),
            Some(Ok(back)) if back != data => {
                failures.push(format!("line {}: {name}: typed round trip changed the data", i + 1))
            }
            Some(Ok(_)) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing samples:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
