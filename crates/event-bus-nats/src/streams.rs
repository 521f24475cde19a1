//! Streams and consumers on the server: one stream per topic, created on
//! first use when missing (an existing one is used as is), and one durable
//! pull consumer per group.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::Context;
use openedx_events::bus::transport::TransportError;
use tokio::sync::OnceCell;

use crate::error::timed;
use crate::names;
use crate::settings::{NatsSettings, Storage};

/// The streams a transport has made sure of, by full topic.
pub(crate) struct Streams {
    pub js: Context,
    pub settings: Arc<NatsSettings>,
    ready: Mutex<HashMap<String, Arc<OnceCell<()>>>>,
}

impl Streams {
    pub fn new(js: Context, settings: Arc<NatsSettings>) -> Self {
        Streams {
            js,
            settings,
            ready: Mutex::new(HashMap::new()),
        }
    }

    /// The subject of a full topic.
    pub fn subject(&self, topic: &str) -> String {
        names::subject(&self.settings.subject_prefix, topic)
    }

    /// The configuration of a new stream for `topic`.
    pub fn stream_config(&self, topic: &str) -> stream::Config {
        let s = &self.settings;
        stream::Config {
            name: names::stream_name(topic),
            subjects: vec![self.subject(topic)],
            description: Some(format!("openedx event bus topic {topic}")),
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            max_age: s.stream_max_age,
            max_bytes: s.stream_max_bytes.unwrap_or(-1),
            max_messages: -1,
            max_messages_per_subject: -1,
            max_consumers: -1,
            num_replicas: s.stream_replicas,
            storage: match s.stream_storage {
                Storage::File => StorageType::File,
                Storage::Memory => StorageType::Memory,
            },
            duplicate_window: s.duplicate_window,
            allow_direct: true,
            ..Default::default()
        }
    }

    /// Make sure the stream of `topic` exists (once per transport, again
    /// after [`Streams::forget`]).
    pub async fn ensure(&self, topic: &str) -> Result<(), TransportError> {
        let cell = {
            let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
            ready.entry(topic.to_string()).or_default().clone()
        };
        cell.get_or_try_init(|| self.create(topic)).await.map(|_| ())
    }

    /// The stream may be gone: look it up again next time.
    pub fn forget(&self, topic: &str) {
        self.ready.lock().unwrap_or_else(|p| p.into_inner()).remove(topic);
    }

    async fn create(&self, topic: &str) -> Result<(), TransportError> {
        let limit = self.settings.operation_timeout;
        let config = self.stream_config(topic);
        let name = config.name.clone();
        if timed(limit, "stream info", self.js.get_stream(&name)).await.is_ok() {
            return Ok(());
        }
        match timed(limit, &format!("create stream {name}"), self.js.create_stream(config)).await {
            Ok(_) => {
                tracing::info!(stream = %name, topic, "created the NATS stream of the topic");
                Ok(())
            }
            // Created meanwhile by another process, or with other limits by
            // an operator: used as is.
            Err(e) => match timed(limit, "stream info", self.js.get_stream(&name)).await {
                Ok(_) => Ok(()),
                Err(_) => Err(e),
            },
        }
    }

    /// Whether the stream of `topic` exists (without creating it).
    pub async fn exists(&self, topic: &str) -> Result<Option<stream::Stream>, TransportError> {
        let name = names::stream_name(topic);
        match self.js.get_stream(&name).await {
            Ok(s) => Ok(Some(s)),
            Err(e) => {
                let t = crate::error::classify(&format!("stream {name}"), &e);
                if crate::error::is_not_found(&t) {
                    Ok(None)
                } else {
                    Err(t)
                }
            }
        }
    }
}

/// A group's durable consumer: how to find it and how to make it again.
pub(crate) struct Group {
    pub streams: Arc<Streams>,
    pub topic: String,
    pub config: pull::Config,
    consumer: Option<PullConsumer>,
}

impl Group {
    pub fn new(streams: Arc<Streams>, topic: &str, group: &str, config: pull::Config) -> Self {
        let mut config = config;
        config.durable_name = Some(names::consumer_name(group));
        Group {
            streams,
            topic: topic.to_string(),
            config,
            consumer: None,
        }
    }

    /// The configuration of a new group's consumer.
    pub fn consumer_config(
        deliver_policy: DeliverPolicy,
        ack_wait: std::time::Duration,
        max_ack_pending: i64,
    ) -> pull::Config {
        pull::Config {
            deliver_policy,
            ack_policy: AckPolicy::Explicit,
            ack_wait,
            max_deliver: -1,
            max_ack_pending,
            ..Default::default()
        }
    }

    fn name(&self) -> &str {
        self.config.durable_name.as_deref().unwrap_or_default()
    }

    /// The consumer, found or created (the stream too) when not known yet.
    pub async fn consumer(&mut self) -> Result<&PullConsumer, TransportError> {
        if self.consumer.is_none() {
            self.streams.ensure(&self.topic).await?;
            let limit = self.streams.settings.operation_timeout;
            let stream_name = names::stream_name(&self.topic);
            let name = self.name().to_string();
            let stream = timed(
                limit,
                &format!("stream {stream_name}"),
                self.streams.js.get_stream(&stream_name),
            )
            .await
            .inspect_err(|_| self.streams.forget(&self.topic))?;
            let what = format!("consumer {name} on stream {stream_name}");
            let consumer = match timed(limit, &what, stream.get_or_create_consumer(&name, self.config.clone())).await {
                Ok(c) => c,
                // Created meanwhile by another member.
                Err(e) => timed(limit, &what, stream.get_consumer::<pull::Config>(&name))
                    .await
                    .map_err(|_| e)?,
            };
            self.consumer = Some(consumer);
        }
        self.consumer
            .as_ref()
            .ok_or_else(|| TransportError::other("the group's consumer is not available"))
    }

    /// The consumer may be gone: find or create it again next time.
    pub fn forget(&mut self) {
        self.consumer = None;
        self.streams.forget(&self.topic);
    }

    /// The consumer's ack wait, as the server has it.
    pub fn ack_wait(&self) -> std::time::Duration {
        self.consumer
            .as_ref()
            .map(|c| c.cached_info().config.ack_wait)
            .filter(|d| !d.is_zero())
            .unwrap_or(self.config.ack_wait)
    }

    /// Delete and create the consumer again, starting at `deliver_policy`
    /// (how a group is moved: JetStream 2.9 has no consumer reset).
    pub async fn recreate(&mut self, deliver_policy: DeliverPolicy) -> Result<(), TransportError> {
        self.streams.ensure(&self.topic).await?;
        let limit = self.streams.settings.operation_timeout;
        let stream_name = names::stream_name(&self.topic);
        let name = self.name().to_string();
        let stream = timed(
            limit,
            &format!("stream {stream_name}"),
            self.streams.js.get_stream(&stream_name),
        )
        .await?;
        let mut config = self.config.clone();
        if let Some(c) = self.consumer.as_ref() {
            let now = &c.cached_info().config;
            config.ack_wait = now.ack_wait;
            config.max_ack_pending = now.max_ack_pending;
        }
        config.deliver_policy = deliver_policy;
        if let Err(e) = timed(limit, &format!("delete consumer {name}"), stream.delete_consumer(&name)).await {
            if !crate::error::is_not_found(&e) {
                return Err(e);
            }
        }
        let consumer = timed(
            limit,
            &format!("create consumer {name} on stream {stream_name}"),
            stream.create_consumer(config),
        )
        .await?;
        self.consumer = Some(consumer);
        Ok(())
    }
}
