//! In-process dispatch: signals, receivers and the registry of event types.
//!
//! A [`Signal`] is the runtime side of one [`EventType`]: receivers connect to
//! it, and `send_event` calls each of them in registration order. Events
//! re-emitted by a bus consumer carry `from_event_bus = true`, which the
//! auto-producer checks so that a consumed event is never produced again.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use openedx_events::signal::Registry;
//! use openedx_events::value::{Record, Value};
//! let registry = Registry::with_catalog();
//! let signal = registry.get("org.openedx.learning.auth.session.login.completed.v1").unwrap();
//! signal.connect("print", |event| {
//!     assert!(!event.from_event_bus);
//!     println!("{} logged in", event.data.get("user").unwrap().as_record().unwrap().get("id").unwrap().to_json());
//!     Ok(())
//! });
//! let user = Record::new().with("id", Value::Long(7)).with("is_active", Value::Boolean(true))
//!     .with("pii", Value::Record(Record::new().with("username", "ana".into())
//!         .with("email", "a@x.org".into()).with("name", "Ana".into())));
//! let outcomes = signal.send_event(Record::new().with("user", Value::Record(user))).await.unwrap();
//! assert!(outcomes[0].result.is_ok());
//! # });
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use futures::FutureExt;

use crate::data::{DataError, OpenEdxEvent};
use crate::event::{EventError, EventType};
use crate::metadata::EventsMetadata;
use crate::value::Record;

/// What a receiver returns on failure.
pub type ReceiverError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A boxed future returned by async receivers.
pub type BoxFuture = Pin<Box<dyn Future<Output = Result<(), ReceiverError>> + Send + 'static>>;

/// One event as receivers see it. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Event {
    /// The event type.
    pub event_type: Arc<EventType>,
    /// The payload: one field per argument.
    pub data: Arc<Record>,
    /// The metadata.
    pub metadata: Arc<EventsMetadata>,
    /// Whether a bus consumer re-emitted this event.
    pub from_event_bus: bool,
}

impl Event {
    /// The payload as a typed event.
    pub fn payload<E: OpenEdxEvent>(&self) -> Result<E, DataError> {
        if E::EVENT_TYPE != self.event_type.name() {
            return Err(DataError::new(format!(
                "event is {}, not {}",
                self.event_type.name(),
                E::EVENT_TYPE
            )));
        }
        E::from_data((*self.data).clone())
    }
}

type SyncReceiver = dyn Fn(&Event) -> Result<(), ReceiverError> + Send + Sync;
type AsyncReceiver = dyn Fn(Event) -> BoxFuture + Send + Sync;

#[derive(Clone)]
enum ReceiverFn {
    Sync(Arc<SyncReceiver>),
    Async(Arc<AsyncReceiver>),
}

#[derive(Clone)]
struct Receiver {
    id: u64,
    name: Arc<str>,
    f: ReceiverFn,
}

/// The result of one receiver call.
#[derive(Debug, Clone)]
pub struct ReceiverOutcome {
    /// The receiver's name.
    pub receiver: Arc<str>,
    /// Its result (a panic is reported as an error).
    pub result: Result<(), Arc<ReceiverError>>,
}

/// Why `send_event` failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The arguments are not the event type's arguments.
    #[error("SenderValidationError {event_type}: expected arguments {expected:?}, got {got:?}")]
    ArgumentMismatch {
        /// Event type.
        event_type: String,
        /// Declared argument names.
        expected: Vec<String>,
        /// Given argument names.
        got: Vec<String>,
    },
    /// An argument value is invalid.
    #[error("SenderValidationError {0}")]
    InvalidData(#[from] EventError),
    /// Fail-fast mode: a receiver failed and the rest were not called.
    #[error("receiver {receiver} failed handling {event_type}: {error}")]
    ReceiverFailed {
        /// Event type.
        event_type: String,
        /// Receiver name.
        receiver: Arc<str>,
        /// Its error.
        error: Arc<ReceiverError>,
    },
}

/// How to send.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// Use these metadata instead of fresh ones.
    pub metadata: Option<EventsMetadata>,
    /// Mark the delivery as coming from the bus.
    pub from_event_bus: bool,
    /// Stop at the first failing receiver and return its error (the default is
    /// robust: call every receiver and collect their results).
    pub fail_fast: bool,
}

/// The runtime side of an event type: its receivers and switches.
pub struct Signal {
    event_type: Arc<EventType>,
    enabled: AtomicBool,
    fail_fast: AtomicBool,
    receivers: RwLock<Arc<Vec<Receiver>>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<OpenEdxPublicSignal: {}>", self.event_type.name())
    }
}

/// Identifies a connected receiver, for [`Signal::disconnect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReceiverId(u64);

impl Signal {
    /// A signal for an event type, enabled, with no receivers.
    pub fn new(event_type: Arc<EventType>) -> Self {
        Signal {
            event_type,
            enabled: AtomicBool::new(true),
            fail_fast: AtomicBool::new(false),
            receivers: RwLock::new(Arc::new(Vec::new())),
            next_id: AtomicU64::new(1),
        }
    }

    /// The event type.
    pub fn event_type(&self) -> &Arc<EventType> {
        &self.event_type
    }

    fn add(&self, name: &str, f: ReceiverFn) -> ReceiverId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut guard = self.receivers.write().unwrap_or_else(|p| p.into_inner());
        let mut list = (**guard).clone();
        list.push(Receiver {
            id,
            name: Arc::from(name),
            f,
        });
        *guard = Arc::new(list);
        ReceiverId(id)
    }

    /// Connect a synchronous receiver.
    pub fn connect<F>(&self, name: &str, f: F) -> ReceiverId
    where
        F: Fn(&Event) -> Result<(), ReceiverError> + Send + Sync + 'static,
    {
        self.add(name, ReceiverFn::Sync(Arc::new(f)))
    }

    /// Connect an asynchronous receiver.
    pub fn connect_async<F, Fut>(&self, name: &str, f: F) -> ReceiverId
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ReceiverError>> + Send + 'static,
    {
        self.add(name, ReceiverFn::Async(Arc::new(move |e| Box::pin(f(e)))))
    }

    /// Connect a receiver that takes the typed payload.
    pub fn connect_typed<E, F>(&self, name: &str, f: F) -> ReceiverId
    where
        E: OpenEdxEvent,
        F: Fn(E, &EventsMetadata, bool) -> Result<(), ReceiverError> + Send + Sync + 'static,
    {
        self.connect(name, move |event| {
            let payload = event.payload::<E>()?;
            f(payload, &event.metadata, event.from_event_bus)
        })
    }

    /// Disconnect a receiver; returns whether it was connected.
    pub fn disconnect(&self, id: ReceiverId) -> bool {
        let mut guard = self.receivers.write().unwrap_or_else(|p| p.into_inner());
        let before = guard.len();
        let list: Vec<Receiver> = guard.iter().filter(|r| r.id != id.0).cloned().collect();
        let removed = list.len() != before;
        *guard = Arc::new(list);
        removed
    }

    /// Number of connected receivers.
    pub fn receiver_count(&self) -> usize {
        self.receivers.read().map(|r| r.len()).unwrap_or(0)
    }

    /// Enable sending (the default).
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    /// Disable sending: `send_event` then does nothing and returns no outcomes.
    pub fn disable(&self) {
        self.enabled.store(false, Ordering::Relaxed);
    }

    /// Whether sending is enabled.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Force fail-fast dispatch (receiver errors propagate), e.g. in tests.
    /// Unlike Python, this can be turned off again.
    pub fn allow_send_event_failure(&self, allow: bool) {
        self.fail_fast.store(allow, Ordering::Relaxed);
    }

    /// Send with fresh metadata, robustly (every receiver is called; their
    /// errors are collected).
    pub async fn send_event(&self, data: Record) -> Result<Vec<ReceiverOutcome>, SendError> {
        self.send_event_with(data, SendOptions::default()).await
    }

    /// Re-emit with the given metadata, marked as coming from the event bus.
    pub async fn send_event_with_metadata(
        &self,
        metadata: EventsMetadata,
        data: Record,
    ) -> Result<Vec<ReceiverOutcome>, SendError> {
        self.send_event_with(
            data,
            SendOptions {
                metadata: Some(metadata),
                from_event_bus: true,
                fail_fast: false,
            },
        )
        .await
    }

    /// Send with explicit options.
    pub async fn send_event_with(
        &self,
        mut data: Record,
        options: SendOptions,
    ) -> Result<Vec<ReceiverOutcome>, SendError> {
        if !self.is_enabled() {
            return Ok(Vec::new());
        }
        self.check_arguments(&data)?;
        self.event_type.validate_data(&mut data)?;
        let metadata = options
            .metadata
            .unwrap_or_else(|| EventsMetadata::new(self.event_type.name(), self.event_type.minor_version()));
        let event = Event {
            event_type: self.event_type.clone(),
            data: Arc::new(data),
            metadata: Arc::new(metadata),
            from_event_bus: options.from_event_bus,
        };
        self.dispatch(event, options.fail_fast).await
    }

    fn check_arguments(&self, data: &Record) -> Result<(), SendError> {
        let fields = self.event_type.fields();
        let ok = data.len() == fields.len() && fields.iter().all(|f| data.get(&f.name).is_some());
        if ok {
            return Ok(());
        }
        Err(SendError::ArgumentMismatch {
            event_type: self.event_type.name().to_string(),
            expected: fields.iter().map(|f| f.name.clone()).collect(),
            got: data.iter().map(|(n, _)| n.to_string()).collect(),
        })
    }

    /// Call the receivers with an already validated event (the consumer's
    /// path: it has checked the data while decoding).
    pub async fn dispatch(&self, event: Event, fail_fast: bool) -> Result<Vec<ReceiverOutcome>, SendError> {
        if !self.is_enabled() {
            return Ok(Vec::new());
        }
        let fail_fast = fail_fast || self.fail_fast.load(Ordering::Relaxed);
        let receivers = self.receivers.read().map(|r| r.clone()).unwrap_or_default();
        let mut outcomes = Vec::with_capacity(receivers.len());
        for r in receivers.iter() {
            let result = call(&r.f, &event).await.map_err(Arc::new);
            if let Err(e) = &result {
                tracing::warn!(event_type = %event.event_type.name(), receiver = %r.name, error = %e, "receiver failed");
                if fail_fast {
                    return Err(SendError::ReceiverFailed {
                        event_type: event.event_type.name().to_string(),
                        receiver: r.name.clone(),
                        error: e.clone(),
                    });
                }
            }
            outcomes.push(ReceiverOutcome {
                receiver: r.name.clone(),
                result,
            });
        }
        Ok(outcomes)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("receiver panicked: {0}")]
struct ReceiverPanicked(String);

fn panic_message(p: Box<dyn std::any::Any + Send>) -> ReceiverError {
    let text = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    Box::new(ReceiverPanicked(text))
}

async fn call(f: &ReceiverFn, event: &Event) -> Result<(), ReceiverError> {
    match f {
        ReceiverFn::Sync(f) => {
            std::panic::catch_unwind(AssertUnwindSafe(|| f(event))).unwrap_or_else(|p| Err(panic_message(p)))
        }
        ReceiverFn::Async(f) => match std::panic::catch_unwind(AssertUnwindSafe(|| f(event.clone()))) {
            Ok(fut) => AssertUnwindSafe(fut)
                .catch_unwind()
                .await
                .unwrap_or_else(|p| Err(panic_message(p))),
            Err(p) => Err(panic_message(p)),
        },
    }
}

/// A second registration of one event type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event type {0} is already registered")]
pub struct DuplicateEventType(pub String);

/// Event types by name: lookup and listing in registration order.
#[derive(Default)]
pub struct Registry {
    inner: RwLock<RegistryInner>,
}

#[derive(Default)]
struct RegistryInner {
    by_name: HashMap<String, Arc<Signal>>,
    order: Vec<Arc<Signal>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// A registry holding the whole Open edX catalog.
    pub fn with_catalog() -> Self {
        let r = Registry::new();
        for t in crate::catalog::all() {
            // The catalog has no duplicates (a test checks it).
            let _ = r.register(t.clone());
        }
        r
    }

    /// The process-wide registry, holding the catalog.
    pub fn global() -> Arc<Registry> {
        static R: OnceLock<Arc<Registry>> = OnceLock::new();
        R.get_or_init(|| Arc::new(Registry::with_catalog())).clone()
    }

    /// Register an event type. Registering a name twice is an error.
    pub fn register(&self, event_type: Arc<EventType>) -> Result<Arc<Signal>, DuplicateEventType> {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if inner.by_name.contains_key(event_type.name()) {
            return Err(DuplicateEventType(event_type.name().to_string()));
        }
        let signal = Arc::new(Signal::new(event_type));
        inner
            .by_name
            .insert(signal.event_type().name().to_string(), signal.clone());
        inner.order.push(signal.clone());
        Ok(signal)
    }

    /// Register a Rust-defined event type, or return its signal if present.
    pub fn signal_for<E: OpenEdxEvent>(&self) -> Arc<Signal> {
        if let Some(s) = self.get(E::EVENT_TYPE) {
            return s;
        }
        match self.register(E::event_type().clone()) {
            Ok(s) => s,
            // Registered concurrently in between.
            Err(_) => self
                .get(E::EVENT_TYPE)
                .unwrap_or_else(|| Arc::new(Signal::new(E::event_type().clone()))),
        }
    }

    /// The signal of an event type.
    pub fn get(&self, name: &str) -> Option<Arc<Signal>> {
        self.inner.read().ok()?.by_name.get(name).cloned()
    }

    /// All signals in registration order.
    pub fn all(&self) -> Vec<Arc<Signal>> {
        self.inner.read().map(|i| i.order.clone()).unwrap_or_default()
    }
}
