-- The transactional outbox of the Open edX event bus (MySQL 8 / MariaDB 10.6+).
-- `Outbox::migrate` runs this text with `event_bus_outbox` replaced by the
-- configured table name; sqlx's migrator can run it as it is.
CREATE TABLE IF NOT EXISTS event_bus_outbox (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    partition_no SMALLINT NOT NULL,
    topic TEXT NOT NULL,
    event_type TEXT NOT NULL,
    key_field TEXT NULL,
    key_type VARCHAR(16) NULL,
    key_text TEXT NULL,
    event_id CHAR(36) NOT NULL,
    event_time DATETIME(6) NOT NULL,
    minorversion BIGINT NOT NULL,
    source TEXT NOT NULL,
    sourcehost TEXT NOT NULL,
    sourcelib VARCHAR(255) NOT NULL,
    body LONGBLOB NOT NULL,
    created_at DATETIME(6) NOT NULL,
    sent_at DATETIME(6) NULL,
    attempts INT NOT NULL DEFAULT 0,
    last_error TEXT NULL,
    KEY event_bus_outbox_pending_idx (sent_at, partition_no, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
-- One row per partition of the keys: a relay owns a partition while it
-- holds the row's lock (SELECT ... FOR UPDATE SKIP LOCKED).
CREATE TABLE IF NOT EXISTS event_bus_outbox_partitions (
    partition_no SMALLINT NOT NULL PRIMARY KEY
) ENGINE=InnoDB;
INSERT IGNORE INTO event_bus_outbox_partitions (partition_no) VALUES
    (0),(1),(2),(3),(4),(5),(6),(7),(8),(9),(10),(11),(12),(13),(14),(15),(16),(17),(18),(19),(20),(21),(22),(23),(24),(25),(26),(27),(28),(29),(30),(31),(32),(33),(34),(35),(36),(37),(38),(39),(40),(41),(42),(43),(44),(45),(46),(47),(48),(49),(50),(51),(52),(53),(54),(55),(56),(57),(58),(59),(60),(61),(62),(63);
