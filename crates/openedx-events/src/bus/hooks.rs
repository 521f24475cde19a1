//! Work-cycle hooks: what the consumer runs before each message to prepare
//! the process for a new unit of work, as a web framework does before each
//! request (openedx-events' `prepare_for_new_work_cycle`).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use openedx_events::bus::hooks::{ClearPerMessageState, RequestCache, WorkCycleHook};
//! let cache = RequestCache::global();
//! cache.set("grades", "user:7", serde_json::json!(0.9));
//! ClearPerMessageState::new().prepare().await.unwrap();
//! assert!(cache.get("grades", "user:7").is_none());
//! # });
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;

/// A hook failure: the message is handed back to be retried later (it is not
/// the message's fault), and the failure counts toward the error limit.
pub type HookError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Runs before each message.
#[async_trait]
pub trait WorkCycleHook: Send + Sync {
    /// A name for logs.
    fn name(&self) -> &str;
    /// Prepare for the next message.
    async fn prepare(&self) -> Result<(), HookError>;
}

/// A database connection (or pool) that can tell whether it still works and
/// reconnect; implement it for your pool type.
#[async_trait]
pub trait DatabaseConnection: Send + Sync {
    /// Whether an open connection exists (nothing to check otherwise).
    async fn is_open(&self) -> bool {
        true
    }
    /// Whether the connection still works (e.g. `SELECT 1` succeeds).
    async fn is_usable(&self) -> bool;
    /// Replace the dead connection.
    async fn reconnect(&self) -> Result<(), HookError>;
}

/// Reconnects a dead database connection before each message: if a
/// connection is open and unusable, reconnect (Django's `connection.connect()`
/// when `is_usable()` is false).
pub struct ReconnectDatabase<C> {
    connection: C,
}

impl<C: DatabaseConnection> ReconnectDatabase<C> {
    /// A hook for this connection.
    pub fn new(connection: C) -> Self {
        ReconnectDatabase { connection }
    }
}

#[async_trait]
impl<C: DatabaseConnection> WorkCycleHook for ReconnectDatabase<C> {
    fn name(&self) -> &str {
        "reconnect_database"
    }

    async fn prepare(&self) -> Result<(), HookError> {
        if self.connection.is_open().await && !self.connection.is_usable().await {
            tracing::warn!("database connection is not usable; reconnecting before the next message");
            self.connection.reconnect().await?;
        }
        Ok(())
    }
}

type Clearer = Arc<dyn Fn() + Send + Sync>;

/// A per-message cache (edx-django-utils' `RequestCache`): namespaces of
/// values that live for one message.
#[derive(Default)]
pub struct RequestCache {
    namespaces: Mutex<HashMap<String, HashMap<String, serde_json::Value>>>,
}

impl RequestCache {
    /// The process-wide cache.
    pub fn global() -> &'static RequestCache {
        static C: OnceLock<RequestCache> = OnceLock::new();
        C.get_or_init(RequestCache::default)
    }

    /// Store a value.
    pub fn set(&self, namespace: &str, key: &str, value: serde_json::Value) {
        if let Ok(mut n) = self.namespaces.lock() {
            n.entry(namespace.to_string())
                .or_default()
                .insert(key.to_string(), value);
        }
    }

    /// Read a value.
    pub fn get(&self, namespace: &str, key: &str) -> Option<serde_json::Value> {
        self.namespaces.lock().ok()?.get(namespace)?.get(key).cloned()
    }

    /// Forget everything.
    pub fn clear_all_namespaces(&self) {
        if let Ok(mut n) = self.namespaces.lock() {
            n.clear();
        }
    }
}

/// Clears per-message state before each message: the global
/// [`RequestCache`] and any state registered with [`ClearPerMessageState::also`].
#[derive(Default, Clone)]
pub struct ClearPerMessageState {
    clearers: Vec<Clearer>,
}

impl ClearPerMessageState {
    /// Clears the global request cache.
    pub fn new() -> Self {
        ClearPerMessageState::default()
    }

    /// Also run `clear` before each message.
    pub fn also(mut self, clear: impl Fn() + Send + Sync + 'static) -> Self {
        self.clearers.push(Arc::new(clear));
        self
    }
}

#[async_trait]
impl WorkCycleHook for ClearPerMessageState {
    fn name(&self) -> &str {
        "clear_per_message_state"
    }

    async fn prepare(&self) -> Result<(), HookError> {
        RequestCache::global().clear_all_namespaces();
        for c in &self.clearers {
            c();
        }
        Ok(())
    }
}

/// The hooks a consumer runs by default: clear per-message state.
pub fn default_hooks() -> Vec<Arc<dyn WorkCycleHook>> {
    vec![Arc::new(ClearPerMessageState::new())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    struct FakeDb {
        alive: AtomicBool,
        reconnects: AtomicUsize,
    }

    #[async_trait]
    impl DatabaseConnection for Arc<FakeDb> {
        async fn is_usable(&self) -> bool {
            self.alive.load(Ordering::SeqCst)
        }
        async fn reconnect(&self) -> Result<(), HookError> {
            self.reconnects.fetch_add(1, Ordering::SeqCst);
            self.alive.store(true, Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn reconnects_only_a_dead_connection() {
        let db = Arc::new(FakeDb {
            alive: AtomicBool::new(true),
            reconnects: AtomicUsize::new(0),
        });
        let hook = ReconnectDatabase::new(db.clone());
        hook.prepare().await.unwrap();
        assert_eq!(db.reconnects.load(Ordering::SeqCst), 0);
        db.alive.store(false, Ordering::SeqCst);
        hook.prepare().await.unwrap();
        assert_eq!(db.reconnects.load(Ordering::SeqCst), 1);
        assert!(db.alive.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn clears_registered_state() {
        let n = Arc::new(AtomicUsize::new(5));
        let n2 = n.clone();
        let hook = ClearPerMessageState::new().also(move || n2.store(0, Ordering::SeqCst));
        hook.prepare().await.unwrap();
        assert_eq!(n.load(Ordering::SeqCst), 0);
    }
}
