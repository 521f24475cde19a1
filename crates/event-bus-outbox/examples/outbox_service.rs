//! A service that enrolls learners: each enrollment is a row of the
//! service's own `demo_enrollments` table and an
//! `org.openedx.learning.course.enrollment.created.v1` event enqueued in
//! the same PostgreSQL transaction. A failed enrollment rolls back both;
//! a relay (here in the same process; in production `event-bus outbox
//! relay`) then publishes what committed to Redis.
//!
//! ```text
//! cargo run -p event-bus-outbox --example outbox_service
//! # or: DATABASE_URL=postgres://user:pw@host/db REDIS_URL=redis://host:6379/0 cargo run ...
//! ```

use std::sync::Arc;

use event_bus_outbox::{Outbox, OutboxSettings, Relay};
use event_bus_redis::RedisBackend;
use openedx_events::bus::BackendFactory;
use openedx_events::config::Settings;
use openedx_events::metadata::EventsMetadata;
use openedx_events::signal::Registry;
use sqlx::{PgPool, Postgres, Transaction};

const EVENT: &str = "org.openedx.learning.course.enrollment.created.v1";

/// Enroll `user` in `course`: the row and the event, or neither.
async fn enroll(
    outbox: &Outbox,
    tx: &mut Transaction<'_, Postgres>,
    user: i64,
    course: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    sqlx::query("INSERT INTO demo_enrollments (user_id, course_key) VALUES ($1, $2)")
        .bind(user)
        .bind(course)
        .execute(&mut **tx)
        .await?;
    let t = openedx_events::catalog::get(EVENT).ok_or("unknown event type")?;
    let data = t.data_from_json(&serde_json::json!({"enrollment": {
        "user": {"id": user, "is_active": true,
                 "pii": {"username": format!("learner{user}"), "email": "l@example.org", "name": "Learner"}},
        "course": {"course_key": course, "display_name": "Demo", "start": null, "end": null},
        "mode": "audit", "is_active": true, "creation_date": "2026-12-07T10:00:00+00:00", "created_by": null}}))?;
    outbox
        .enqueue_data(
            tx,
            t,
            "course-enrollments",
            Some("enrollment.user.id"),
            &data,
            &EventsMetadata::new(EVENT, 0),
        )
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db_url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let pool = PgPool::connect(&db_url).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS demo_enrollments (id BIGSERIAL PRIMARY KEY, user_id BIGINT NOT NULL, course_key TEXT NOT NULL)",
    )
    .execute(&pool)
    .await?;
    let outbox = Outbox::new("demo_outbox", Some("demo".into()))?;
    outbox.migrate(&pool).await?;

    // Two enrollments commit; the third fails after its writes and rolls back.
    for (user, course, commit) in [
        (1, "course-v1:edX+DemoX+2026", true),
        (2, "course-v1:edX+DemoX+2026", true),
        (3, "course-v1:edX+DemoX+2026", false),
    ] {
        let mut tx = pool.begin().await?;
        enroll(&outbox, &mut tx, user, course).await?;
        if commit {
            tx.commit().await?;
        } else {
            tx.rollback().await?; // e.g. a later check failed: no row, no event
        }
    }

    // The relay: the outbox to Redis.
    let mut bus = Settings::new();
    bus.set("EVENT_BUS_REDIS_CONNECTION_URL", redis_url);
    let transport = RedisBackend.create(&bus).await?;
    let mut settings = OutboxSettings::new(&db_url)?;
    settings.table = "demo_outbox".into();
    let relay = Relay::connect(settings, Arc::clone(&transport), Registry::global()).await?;
    let mut sent = 0;
    loop {
        let round = relay.relay_once().await?;
        sent += round.sent;
        if round.pending_partitions == 0 {
            break;
        }
    }
    println!("relayed {sent} enrollment events to the Redis stream demo-course-enrollments");
    for d in transport.browse("demo-course-enrollments", None, 1000).await? {
        if let Ok(e) = &d.event {
            println!("  {} {} {}", d.position, e.event_type, e.metadata.id);
        }
    }
    Ok(())
}
