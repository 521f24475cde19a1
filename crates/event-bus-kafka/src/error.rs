//! librdkafka errors as transport errors, and librdkafka logs as tracing
//! events.

use openedx_events::bus::transport::{TransportError, TransportErrorKind};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// The error code carried by a librdkafka error, if any.
pub(crate) fn code_of(e: &KafkaError) -> Option<RDKafkaErrorCode> {
    e.rdkafka_error_code()
}

/// The transport error kind for a librdkafka error code.
pub(crate) fn kind_of(code: Option<RDKafkaErrorCode>) -> TransportErrorKind {
    use RDKafkaErrorCode as C;
    match code {
        Some(C::Fatal) => TransportErrorKind::Fatal,
        Some(C::MessageTimedOut | C::RequestTimedOut | C::OperationTimedOut | C::TimedOutQueue) => {
            TransportErrorKind::Timeout
        }
        Some(
            C::AllBrokersDown
            | C::BrokerTransportFailure
            | C::NetworkException
            | C::Resolve
            | C::BrokerNotAvailable
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::CoordinatorLoadInProgress,
        ) => TransportErrorKind::Connection,
        Some(
            C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::InvalidMessage
            | C::UnknownTopicOrPartition
            | C::UnknownTopic
            | C::UnknownPartition
            | C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::Authentication
            | C::PolicyViolation
            | C::InvalidRecord
            | C::QueueFull,
        ) => TransportErrorKind::Rejected,
        _ => TransportErrorKind::Other,
    }
}

/// A librdkafka error as a transport error, with what we were doing.
pub(crate) fn transport_error(context: &str, e: &KafkaError) -> TransportError {
    TransportError::new(kind_of(code_of(e)), format!("{context}: {e}"))
}

/// Forward a librdkafka log line to tracing.
pub(crate) fn log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", facility, "{message}")
        }
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility, "{message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
    }
}

/// Make librdkafka raise a fabricated fatal error on a client (librdkafka's
/// own testing API, `rd_kafka_test_fatal_error`).
#[cfg(feature = "testing")]
pub(crate) fn inject_fatal_error(client: *mut rdkafka::types::RDKafka, reason: &str) -> Result<(), String> {
    let reason = std::ffi::CString::new(reason).map_err(|e| e.to_string())?;
    // SAFETY: `client` is the native handle of a client the caller holds
    // alive for the duration of this call; librdkafka copies `reason`.
    let r = unsafe {
        rdkafka::bindings::rd_kafka_test_fatal_error(
            client,
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
            reason.as_ptr(),
        )
    };
    if r == rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(format!("librdkafka refused to raise a fatal error: {r:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        assert_eq!(kind_of(Some(RDKafkaErrorCode::Fatal)), TransportErrorKind::Fatal);
        assert_eq!(
            kind_of(Some(RDKafkaErrorCode::MessageTimedOut)),
            TransportErrorKind::Timeout
        );
        assert_eq!(
            kind_of(Some(RDKafkaErrorCode::AllBrokersDown)),
            TransportErrorKind::Connection
        );
        assert_eq!(
            kind_of(Some(RDKafkaErrorCode::MessageSizeTooLarge)),
            TransportErrorKind::Rejected
        );
        assert_eq!(kind_of(None), TransportErrorKind::Other);
        let e = transport_error("publishing", &KafkaError::MessageProduction(RDKafkaErrorCode::Fatal));
        assert!(e.is_fatal());
        assert!(e.message.starts_with("publishing: "), "{e}");
    }
}
