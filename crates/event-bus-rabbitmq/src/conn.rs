//! Opening connections: the settings' URI, TLS, a connection name, the
//! operation timeout, and errors that say what was refused (never the
//! password).

use lapin::{Connect, Connection, ConnectionProperties};
use openedx_events::bus::transport::{TransportError, TransportErrorKind};
use openedx_events::config::Redactor;

use crate::error::{classify, is_refusal};
use crate::settings::RabbitMqSettings;

/// Opens connections to the configured broker.
#[derive(Debug, Clone)]
pub(crate) struct Connector {
    pub(crate) settings: RabbitMqSettings,
    pub(crate) redactor: Redactor,
}

impl Connector {
    pub(crate) fn new(settings: RabbitMqSettings) -> Self {
        let redactor = settings.redactor();
        Connector { settings, redactor }
    }

    /// A new connection, named `name` in the broker's connection list.
    pub(crate) async fn connect(&self, name: &str) -> Result<Connection, TransportError> {
        let s = &self.settings;
        let uri = s
            .amqp_uri()
            .map_err(|e| TransportError::new(TransportErrorKind::Config, e.to_string()))?;
        let tls = s
            .tls_config()
            .map_err(|e| TransportError::new(TransportErrorKind::Config, e.to_string()))?;
        let runtime = lapin::runtime::default_runtime()
            .map_err(|e| TransportError::new(TransportErrorKind::Fatal, format!("no async runtime for lapin: {e}")))?;
        let properties = ConnectionProperties::default().with_connection_name(name.to_string().into());
        let target = format!("RabbitMQ at {}", s.redacted_url());
        let connecting = uri.connect_with_config(properties, tls, runtime);
        match tokio::time::timeout(s.operation_timeout, connecting).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) if is_refusal(&e) => {
                let mut err = classify(&format!("cannot connect to {target}"), &e, &self.redactor);
                err.message = format!(
                    "{} (check the user {:?}, its password and its permissions on the virtual host: \
                     {}, {}, {})",
                    err.message,
                    s.effective_user(),
                    crate::settings::URL,
                    crate::settings::USER,
                    crate::settings::PASSWORD
                );
                Err(err)
            }
            Ok(Err(e)) => Err(classify(&format!("cannot connect to {target}"), &e, &self.redactor)),
            Err(_) => Err(TransportError::new(
                TransportErrorKind::Timeout,
                format!("cannot connect to {target}: no answer within {:?}", s.operation_timeout),
            )),
        }
    }
}
