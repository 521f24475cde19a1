-- The transactional outbox of the Open edX event bus (PostgreSQL).
-- `Outbox::migrate` runs this text with `event_bus_outbox` replaced by the
-- configured table name; sqlx's migrator can run it as it is.
CREATE TABLE IF NOT EXISTS event_bus_outbox (
    id BIGSERIAL PRIMARY KEY,
    partition_no SMALLINT NOT NULL,
    topic TEXT NOT NULL,
    event_type TEXT NOT NULL,
    key_field TEXT,
    key_type TEXT,
    key_text TEXT,
    event_id TEXT NOT NULL,
    event_time TIMESTAMPTZ NOT NULL,
    minorversion BIGINT NOT NULL,
    source TEXT NOT NULL,
    sourcehost TEXT NOT NULL,
    sourcelib TEXT NOT NULL,
    body BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at TIMESTAMPTZ,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS event_bus_outbox_pending_idx
    ON event_bus_outbox (partition_no, id) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS event_bus_outbox_sent_idx
    ON event_bus_outbox (sent_at) WHERE sent_at IS NOT NULL;
-- One row per partition of the keys: a relay owns a partition while it
-- holds the row's lock (SELECT ... FOR UPDATE SKIP LOCKED).
CREATE TABLE IF NOT EXISTS event_bus_outbox_partitions (
    partition_no SMALLINT PRIMARY KEY
);
INSERT INTO event_bus_outbox_partitions (partition_no)
    SELECT generate_series(0, 63) ON CONFLICT DO NOTHING;
