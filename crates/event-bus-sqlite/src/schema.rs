//! Opening a connection and creating the tables (see the crate docs for the
//! layout).

use std::path::Path;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::error::{Context, StoreError};
use crate::settings::SqliteOptions;

/// The schema version kept in `PRAGMA user_version`.
/// Version 2 added `dead_letter_topics`; every statement of [`SCHEMA`] is
/// `IF NOT EXISTS`, so a version-1 file is upgraded by running it again.
pub(crate) const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    key BLOB,
    headers TEXT NOT NULL,
    value BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_topic ON messages (topic, id);
CREATE INDEX IF NOT EXISTS messages_by_time ON messages (topic, created_at);
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    trimmed_through INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letter_topics (
    name TEXT PRIMARY KEY
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS groups (
    topic TEXT NOT NULL,
    name TEXT NOT NULL,
    position INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (topic, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deliveries (
    topic TEXT NOT NULL,
    grp TEXT NOT NULL,
    message_id INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    owner TEXT,
    visible_at INTEGER NOT NULL,
    PRIMARY KEY (topic, grp, message_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_by_owner ON deliveries (owner) WHERE owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS consumers (
    id TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    grp TEXT NOT NULL,
    name TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pid_start INTEGER,
    started_at INTEGER NOT NULL,
    seen_at INTEGER NOT NULL
) WITHOUT ROWID;
";

/// A connection with the pragmas every connection needs: WAL, the busy
/// timeout, the durability level.
pub(crate) fn connect(path: &Path, options: &SqliteOptions) -> Result<Connection, StoreError> {
    let what = || format!("opening {}", path.display());
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).context(what)?;
    conn.busy_timeout(options.busy_timeout).context(what)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .context(|| format!("switching {} to WAL mode", path.display()))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Incompatible(format!(
            "{} cannot use WAL mode (journal mode is {mode}); is it on a network file system?",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", options.synchronous.pragma())
        .context(what)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Create the tables if needed, in one short write transaction; refuse a file
/// written by a newer version.
pub(crate) fn init(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let what = || format!("creating the tables in {}", path.display());
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context(what)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).context(what)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Incompatible(format!(
            "{} has schema version {version}, newer than this program's {SCHEMA_VERSION}; upgrade it",
            path.display()
        )));
    }
    if version < SCHEMA_VERSION {
        tx.execute_batch(SCHEMA).context(what)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION).context(what)?;
    }
    tx.commit().context(what)
}
