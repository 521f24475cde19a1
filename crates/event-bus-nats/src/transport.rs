//! [`NatsTransport`]: publish with awaited PubAcks, browse with a
//! short-lived consumer, subscribe with the group's durable consumer.

use std::future::IntoFuture as _;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::message::PublishMessage;
use async_nats::{Client, ConnectOptions, HeaderMap};
use async_trait::async_trait;
use futures::StreamExt as _;
use openedx_events::bus::transport::{
    Capabilities, Delivery, DeliveryTag, GroupLag, OutgoingMessage, RawMessage, StartPosition, SubscribeRequest,
    Subscription, Transport, TransportError,
};

use crate::error::{rejected, timed};
use crate::settings::{Auth, NatsSettings, Storage};
use crate::streams::{Group, Streams};
use crate::subscription::NatsSubscription;
use crate::{extras, wire};

/// Bytes of the server's `max_payload` kept for what the core adds to a
/// message it dead-letters (the `dlq_*` headers, the error text up to 4 KiB).
pub const HEADROOM: usize = 8 * 1024;

/// A connection to a NATS server with JetStream: shared by the producers
/// and consumers of a process.
///
/// ```no_run
/// # async fn run() -> Result<(), openedx_events::bus::TransportError> {
/// use event_bus_nats::{NatsSettings, NatsTransport};
/// use openedx_events::bus::Transport;
/// let transport = NatsTransport::connect(NatsSettings::default()).await?;
/// assert_eq!(transport.name(), "nats");
/// # Ok(()) }
/// ```
pub struct NatsTransport {
    client: Client,
    streams: Arc<Streams>,
    max_payload: usize,
}

impl std::fmt::Debug for NatsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTransport")
            .field("servers", &self.streams.settings.redacted_urls())
            .field("max_payload", &self.max_payload)
            .finish()
    }
}

/// The client options from the settings: credentials, TLS, timeouts, and
/// reconnection for ever with a short backoff (logged).
async fn options(s: &NatsSettings) -> Result<ConnectOptions, TransportError> {
    let mut o = ConnectOptions::new()
        .name("openedx-event-bus")
        .connection_timeout(s.operation_timeout)
        .request_timeout(Some(s.operation_timeout))
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| Duration::from_millis((attempts as u64 * 100).min(2000)))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("NATS connection (re)established"),
                async_nats::Event::Disconnected => tracing::warn!("NATS connection lost; reconnecting"),
                other => tracing::warn!(event = %other, "NATS client event"),
            }
        })
        .require_tls(s.tls_required);
    o = match &s.auth {
        Auth::None => o,
        Auth::UserPassword { user, password } => o.user_and_password(user.clone(), password.0.expose().to_string()),
        Auth::Token(t) => o.token(t.0.expose().to_string()),
        Auth::NKey(seed) => o.nkey(seed.0.expose().to_string()),
        Auth::CredsFile(path) => o.credentials_file(path).await.map_err(|e| {
            TransportError::new(
                openedx_events::bus::transport::TransportErrorKind::Config,
                format!("{}: cannot read {}: {e}", crate::settings::CREDS_FILE, path.display()),
            )
        })?,
    };
    if let Some(ca) = &s.tls_ca_file {
        o = o.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &s.tls_client {
        o = o.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(o)
}

impl NatsTransport {
    /// Connect to the servers of `settings` (the first that answers).
    pub async fn connect(settings: NatsSettings) -> Result<Self, TransportError> {
        let servers = settings.redacted_urls();
        let mut addrs = Vec::new();
        for url in &settings.urls {
            addrs.push(url.parse::<async_nats::ServerAddr>().map_err(|_| {
                TransportError::connection(format!(
                    "{} is not a server URL",
                    openedx_events::config::redact_url(url)
                ))
            })?);
        }
        let client = options(&settings)
            .await?
            .connect(addrs)
            .await
            .map_err(|e| crate::error::classify(&format!("cannot connect to NATS at {servers}"), &e))?;
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(settings.operation_timeout)
            .build(client.clone());
        let max_payload = match client.server_info().max_payload {
            0 => 1024 * 1024,
            n => n,
        };
        tracing::info!(servers = %servers, max_payload, "connected to NATS");
        Ok(NatsTransport {
            client,
            streams: Arc::new(Streams::new(js, Arc::new(settings))),
            max_payload,
        })
    }

    /// The NATS client (for tools and tests).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The settings in use.
    pub fn settings(&self) -> &NatsSettings {
        &self.streams.settings
    }

    /// Publish headers and payload to the stream of `topic`, awaiting the
    /// PubAck; returns the stream sequence.
    async fn send(&self, topic: &str, headers: HeaderMap, payload: Vec<u8>) -> Result<String, TransportError> {
        let size = wire::wire_size(&headers, payload.len());
        if size > self.max_payload {
            return Err(rejected(format!(
                "a {size}-byte message (headers included) is larger than the server's max_payload of {} bytes",
                self.max_payload
            )));
        }
        self.streams.ensure(topic).await?;
        let limit = self.streams.settings.operation_timeout;
        let subject = self.streams.subject(topic);
        let publish = PublishMessage::build().payload(payload.into()).headers(headers);
        let result = async {
            let pending = timed(limit, "publish", self.streams.js.send_publish(subject, publish)).await?;
            timed(limit, "publish (awaiting the PubAck)", pending.into_future()).await
        }
        .await;
        match result {
            Ok(ack) => Ok(ack.sequence.to_string()),
            Err(e) => {
                if crate::error::is_not_found(&e) {
                    self.streams.forget(topic);
                }
                Err(TransportError::new(e.kind, format!("{topic}: {}", e.message)))
            }
        }
    }
}

#[async_trait]
impl Transport for NatsTransport {
    fn name(&self) -> &str {
        "nats"
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::durable_log(self.max_payload.saturating_sub(HEADROOM).max(1));
        c.persistent = self.streams.settings.stream_storage == Storage::File;
        c
    }

    async fn publish(&self, message: &OutgoingMessage) -> Result<String, TransportError> {
        let headers = wire::event_headers(message, self.streams.settings.publish_deduplication).map_err(rejected)?;
        self.send(&message.topic, headers, message.body.clone()).await
    }

    async fn publish_raw(&self, message: &RawMessage) -> Result<String, TransportError> {
        let headers = wire::raw_headers(message).map_err(|e| rejected(format!("{}: {e}", message.topic)))?;
        self.send(&message.topic, headers, message.value.clone()).await
    }

    async fn subscribe(&self, request: &SubscribeRequest) -> Result<Box<dyn Subscription>, TransportError> {
        let asked = extras::requested(request)?;
        let s = &self.streams.settings;
        let deliver = match request.start {
            StartPosition::Earliest => DeliverPolicy::All,
            StartPosition::Latest => DeliverPolicy::New,
        };
        let config = Group::consumer_config(
            deliver,
            asked.ack_wait.unwrap_or(s.ack_wait),
            asked.max_ack_pending.unwrap_or(s.max_ack_pending),
        );
        let mut group = Group::new(self.streams.clone(), &request.topic, &request.group, config);
        group.consumer().await?;
        Ok(Box::new(NatsSubscription::new(self.client.clone(), group, asked.batch)))
    }

    async fn browse(&self, topic: &str, after: Option<&str>, limit: usize) -> Result<Vec<Delivery>, TransportError> {
        let start = match after {
            None => 1,
            Some(p) => wire::parse_position(p).map_err(rejected)?.saturating_add(1),
        };
        let Some(stream) = self.streams.exists(topic).await? else {
            return Ok(Vec::new());
        };
        let last = stream.cached_info().state.last_sequence;
        if limit == 0 || start > last {
            return Ok(Vec::new());
        }
        let op = self.streams.settings.operation_timeout;
        let consumer = timed(
            op,
            "browse: create a temporary consumer",
            stream.create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: start },
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(60),
                memory_storage: true,
                ..Default::default()
            }),
        )
        .await?;
        let mut out = Vec::new();
        let mut failure = None;
        while out.len() < limit {
            let want = (limit - out.len()).min(500);
            let mut batch = timed(
                op,
                "browse",
                consumer
                    .fetch()
                    .max_messages(want)
                    .expires(Duration::from_millis(200))
                    .messages(),
            )
            .await?;
            let mut got = 0;
            while let Some(next) = batch.next().await {
                match next {
                    Ok(m) => {
                        got += 1;
                        let (sequence, time) = match m.info() {
                            Ok(i) => (i.stream_sequence, wire::chrono_time(&i.published)),
                            Err(_) => (0, None),
                        };
                        let raw = wire::raw_from_nats(topic, m.headers.as_ref(), &m.payload, time);
                        out.push(wire::delivery(raw, DeliveryTag(sequence), sequence, 1));
                        if sequence >= last {
                            break;
                        }
                    }
                    Err(e) => {
                        failure = Some(crate::error::classify("browse", &e));
                        break;
                    }
                }
            }
            let at_end = out.last().is_some_and(|d| d.tag.0 >= last);
            if got == 0 || at_end || failure.is_some() {
                break;
            }
        }
        let name = consumer.cached_info().name.clone();
        if let Err(e) = stream.delete_consumer(&name).await {
            tracing::debug!(error = %e, "browse: the temporary consumer is left to expire");
        }
        match failure {
            Some(e) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }

    async fn flush(&self, timeout: Duration) -> Result<(), TransportError> {
        timed(timeout, "flush", self.client.flush()).await
    }

    /// From the info of the group's durable consumer: `num_pending` (not
    /// delivered yet) plus `num_ack_pending` (delivered, not acknowledged;
    /// nacked messages waiting for their redelivery included), and
    /// `pending` = `num_ack_pending`. Partition `0`. With `group: None`,
    /// every durable consumer of the topic's stream, named as on the server
    /// (the group name, with the characters NATS forbids replaced, see
    /// [`crate::names`]). Acknowledgements are sent without waiting for the
    /// server, so the counts may lag behind acks just flushed by a moment.
    async fn lag(&self, topic: &str, group: Option<&str>) -> Result<Vec<GroupLag>, TransportError> {
        let Some(stream) = self.streams.exists(topic).await? else {
            return Ok(Vec::new());
        };
        let op = self.streams.settings.operation_timeout;
        let infos = match group {
            Some(g) => {
                let name = crate::names::consumer_name(g);
                match timed(op, &format!("consumer {name} of {topic}"), stream.consumer_info(&name)).await {
                    Ok(info) => vec![(g.to_string(), info)],
                    Err(e) if crate::error::is_not_found(&e) => Vec::new(),
                    Err(e) => return Err(e),
                }
            }
            None => {
                let what = format!("list the consumers of {topic}");
                let listed = timed(op, &what, async {
                    let mut consumers = stream.consumers();
                    let mut out = Vec::new();
                    while let Some(info) = consumers.next().await {
                        out.push(info?);
                    }
                    Ok::<_, async_nats::jetstream::stream::ConsumersError>(out)
                })
                .await?;
                listed
                    .into_iter()
                    .filter(|info| info.config.durable_name.is_some())
                    .map(|info| (info.name.clone(), info))
                    .collect()
            }
        };
        Ok(infos
            .into_iter()
            .map(|(group, info)| {
                let held = u64::try_from(info.num_ack_pending).unwrap_or(u64::MAX);
                GroupLag {
                    topic: topic.to_string(),
                    group,
                    partition: "0".to_string(),
                    lag: info.num_pending.saturating_add(held),
                    pending: Some(held),
                }
            })
            .collect())
    }
}
