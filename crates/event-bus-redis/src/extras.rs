//! The consumer options of edx-event-bus-redis (`--extra` JSON), checked by
//! the core's parser.

use std::time::Duration;

use openedx_events::bus::extras::Extras as CoreExtras;
use openedx_events::bus::transport::TransportError;
use serde_json::{Map, Value as Json};

use crate::wire::EntryId;

/// `consumer_name`: this member's name (its pending list is kept under it).
pub const CONSUMER_NAME: &str = "consumer_name";
/// `last_read_msg_id`: on every start, move the group to just after this
/// entry id (`XGROUP SETID`).
pub const LAST_READ_MSG_ID: &str = "last_read_msg_id";
/// `check_backlog`: accepted for compatibility; processing what the group has
/// not seen is the default here.
pub const CHECK_BACKLOG: &str = "check_backlog";
/// `claim_msgs_older_than`: milliseconds after which entries pending for
/// another member are claimed (`XAUTOCLAIM`), at start and periodically.
/// Defaults to [`DEFAULT_CLAIM_AFTER`] (Python: no claiming), so entries a
/// stopped process left pending are never lost; `0` turns claiming off.
pub const CLAIM_MSGS_OLDER_THAN: &str = "claim_msgs_older_than";

/// The default idle time before another member's pending entry is claimed.
/// A live consumer keeps its own entries fresh, so only a stopped one's are
/// taken.
pub const DEFAULT_CLAIM_AFTER: Duration = Duration::from_secs(300);
/// `skip_backlog`: on every start, mark everything not yet delivered to the
/// group as read (`XGROUP SETID $`), as edx-event-bus-redis does by default.
pub const SKIP_BACKLOG: &str = "skip_backlog";

const KNOWN: [&str; 5] = [
    CONSUMER_NAME,
    LAST_READ_MSG_ID,
    CHECK_BACKLOG,
    CLAIM_MSGS_OLDER_THAN,
    SKIP_BACKLOG,
];

/// Where `last_read_msg_id` moves the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SetId {
    /// After this entry.
    Entry(EntryId),
    /// After the last entry (`$`).
    End,
}

impl SetId {
    pub(crate) fn as_arg(&self) -> String {
        match self {
            SetId::Entry(id) => id.to_string(),
            SetId::End => "$".to_string(),
        }
    }
}

/// The checked extras.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Extras {
    pub consumer_name: Option<String>,
    pub last_read_msg_id: Option<SetId>,
    pub check_backlog: Option<bool>,
    pub claim_msgs_older_than: Option<Duration>,
    pub skip_backlog: bool,
}

impl Extras {
    /// Check the extras with the core's parser: unknown names and wrong
    /// types are configuration errors naming the extra. `null` means not
    /// given.
    pub(crate) fn parse(given: &Map<String, Json>) -> Result<Self, TransportError> {
        let extras = CoreExtras::new("redis", given, &KNOWN)?;
        let last_read_msg_id = match extras.value(LAST_READ_MSG_ID) {
            None => None,
            Some(Json::String(s)) if s == "$" => Some(SetId::End),
            Some(Json::String(s)) => Some(SetId::Entry(
                s.parse::<EntryId>().map_err(|e| extras.error(LAST_READ_MSG_ID, e))?,
            )),
            Some(other) => {
                return Err(extras.error(LAST_READ_MSG_ID, format!("expected an entry id string, found {other}")))
            }
        };
        let claim_msgs_older_than = match extras.u64(CLAIM_MSGS_OLDER_THAN, "of milliseconds")? {
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms)),
            None => Some(DEFAULT_CLAIM_AFTER),
        };
        let out = Extras {
            consumer_name: extras.string(CONSUMER_NAME)?.map(str::to_string),
            last_read_msg_id,
            check_backlog: extras.bool(CHECK_BACKLOG)?,
            claim_msgs_older_than,
            skip_backlog: extras.bool(SKIP_BACKLOG)?.unwrap_or(false),
        };
        if out.skip_backlog && out.last_read_msg_id.is_some() {
            return Err(extras.error(
                SKIP_BACKLOG,
                "cannot be combined with last_read_msg_id (pick one start position)",
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use openedx_events::bus::transport::TransportErrorKind;
    use serde_json::json;

    use super::*;

    fn parse(v: Json) -> Result<Extras, TransportError> {
        Extras::parse(v.as_object().expect("object"))
    }

    #[test]
    fn the_python_extras_are_accepted() {
        let e = parse(json!({"consumer_name": "lms-1", "last_read_msg_id": "1678773365314-0",
            "check_backlog": true, "claim_msgs_older_than": 60000}))
        .expect("valid");
        assert_eq!(e.consumer_name.as_deref(), Some("lms-1"));
        assert_eq!(
            e.last_read_msg_id,
            Some(SetId::Entry(EntryId {
                ms: 1_678_773_365_314,
                seq: 0
            }))
        );
        assert_eq!(e.check_backlog, Some(true));
        assert_eq!(e.claim_msgs_older_than, Some(Duration::from_secs(60)));
        assert!(!e.skip_backlog);
        let e = parse(json!({"skip_backlog": true, "last_read_msg_id": null})).expect("valid");
        assert!(e.skip_backlog);
        let defaults = parse(json!({})).expect("empty");
        assert_eq!(
            defaults.claim_msgs_older_than,
            Some(DEFAULT_CLAIM_AFTER),
            "claiming is on by default"
        );
        assert_eq!(
            parse(json!({"claim_msgs_older_than": 0}))
                .expect("off")
                .claim_msgs_older_than,
            None
        );
    }

    #[test]
    fn bad_extras_are_config_errors_naming_the_extra() {
        for (bad, name) in [
            (json!({"consumer_name": ""}), "consumer_name"),
            (json!({"consumer_name": 3}), "consumer_name"),
            (json!({"last_read_msg_id": "yesterday"}), "last_read_msg_id"),
            (json!({"last_read_msg_id": 5}), "last_read_msg_id"),
            (json!({"check_backlog": "yes"}), "check_backlog"),
            (json!({"claim_msgs_older_than": -1}), "claim_msgs_older_than"),
            (json!({"claim_msgs_older_than": 1.5}), "claim_msgs_older_than"),
            (json!({"skip_backlog": 1}), "skip_backlog"),
            (json!({"offset_time": "2023-01-01T00:00:00"}), "offset_time"),
            (json!({"skip_backlog": true, "last_read_msg_id": "1-0"}), "skip_backlog"),
        ] {
            let e = parse(bad.clone()).expect_err("invalid");
            assert_eq!(e.kind, TransportErrorKind::Config, "{bad}");
            assert!(e.message.contains(&format!("\"{name}\"")), "{bad}: {e}");
        }
    }
}
