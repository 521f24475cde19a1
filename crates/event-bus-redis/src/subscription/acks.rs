//! Acknowledgements: buffered by `ack`, sent by `flush_acks` in `XACK`s of
//! up to [`ACK_CHUNK`] ids, with the next batch read ahead in the same round
//! trip while a backlog waits; and the entries read ahead but not handed
//! out, released at `close` for the other members to claim.

use openedx_events::bus::transport::TransportError;

use super::entries::entries_of;
use super::RedisSubscription;
use crate::raw::Packer;
use crate::reader::{ReadConn, Reply};
use crate::resp;
use crate::wire::EntryId;

/// At most this many ids per `XACK`.
const ACK_CHUNK: usize = 1000;

impl RedisSubscription {
    /// Send every buffered ack, in chunks; the ones not sent stay buffered.
    pub(super) async fn send_all_acks(&mut self) -> Result<(), TransportError> {
        while !self.acks.is_empty() {
            let n = self.acks.len().min(ACK_CHUNK);
            self.send_acks(n).await?;
            self.acks.drain(..n);
        }
        Ok(())
    }

    /// Acknowledge entries at once (trimmed ones that cannot be handled).
    pub(super) async fn ack_now(&self, ids: &[EntryId]) -> Result<(), TransportError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::Cmd::with_capacity(ids.len() + 3, ids.len() * 24 + 64);
        cmd.arg("XACK").arg(&self.stream).arg(&self.group);
        let mut buf = [0u8; 41];
        for id in ids {
            cmd.arg(id.text(&mut buf));
        }
        self.conn.query(&self.what("XACK"), &cmd).await.map(|_| ())
    }

    /// Send the first `n` buffered acks. On a connection of our own, when
    /// more entries are probably waiting, the next batch is read in the same
    /// round trip (`XACK ...` then `XREADGROUP ... >`, pipelined) and kept
    /// for the next `receive`: one round trip per batch instead of two. The
    /// acks are durable when this returns either way.
    async fn send_acks(&mut self, n: usize) -> Result<(), TransportError> {
        let ReadConn::Raw(raw) = &mut self.reader else {
            return self.ack_now(&self.acks[..n]).await;
        };
        let mut id = [0u8; 41];
        let ids = &self.acks[..n];
        let mut xack = Packer::new(ids.len() + 3, ids.len() * 32 + 64);
        xack.arg(b"XACK");
        xack.arg(self.stream.as_bytes());
        xack.arg(self.group.as_bytes());
        for i in ids {
            xack.arg(i.text(&mut id));
        }
        let mut packed = xack.into_bytes();
        let read_ahead =
            !self.closed && self.backlog && self.ready.is_empty() && self.recovering.is_none() && n == self.acks.len();
        if read_ahead {
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(&self.group)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(self.batch)
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(">");
            cmd.write_packed_command(&mut packed);
        }
        let what = format!("XACK {} {} {}", self.stream, self.group, self.consumer);
        let secret = raw.secret().clone();
        let bytes = raw
            .call(&what, &packed, if read_ahead { 2 } else { 1 }, self.conn.timeout())
            .await?;
        let mut c = resp::Cursor::new(bytes);
        match c.next_item() {
            Ok(resp::Item::Int(_)) => {}
            Ok(resp::Item::Error(text)) => return Err(crate::error::server_error(&what, text, &secret)),
            Ok(other) => {
                return Err(TransportError::other(format!(
                    "{what}: Redis replied with {}, not a count",
                    resp::describe(&other)
                )))
            }
            Err(e) => return Err(TransportError::other(format!("{what}: {e}"))),
        }
        if !read_ahead {
            return Ok(());
        }
        // The read ahead: any trouble is left to the next `receive` (the
        // entries it may have read are pending for this consumer).
        let rest = bytes.get(c.pos()..).unwrap_or_default();
        if rest.first() == Some(&b'-') {
            self.backlog = false;
            return Ok(());
        }
        match entries_of(&self.stream, Reply::Raw(rest), 1) {
            Ok((fresh, trimmed)) => {
                self.backlog = fresh.len() + trimmed.len() >= self.batch;
                if !fresh.is_empty() {
                    self.lease_stale = true;
                }
                self.ready.extend(fresh);
                self.renew_lease();
                if let Err(e) = self.drop_trimmed(&trimmed, "new").await {
                    tracing::warn!(error = %e, "cannot acknowledge trimmed entries");
                }
            }
            Err(e) => {
                self.backlog = false;
                tracing::warn!(stream = %self.stream, group = %self.group, error = %e,
                    "unexpected reply to a read ahead; its entries stay pending for this consumer");
            }
        }
        Ok(())
    }

    /// Entries read ahead and never handed out: they are pending for this
    /// consumer (Redis cannot give them back to the group), so mark them
    /// idle for long (`XCLAIM ... IDLE`, to this same consumer, without
    /// counting a delivery): the other members claim them at their next
    /// look instead of after `claim_msgs_older_than`, and a restart under
    /// this name recovers them as before.
    pub(super) async fn release_read_ahead(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(&self.stream).arg(&self.group).arg(&self.consumer).arg(0);
        let mut buf = [0u8; 41];
        for f in &self.ready {
            cmd.arg(f.id.text(&mut buf));
        }
        // A year: any member's claim_msgs_older_than is shorter (Redis
        // ignores an idle time that goes back before the epoch).
        cmd.arg("IDLE").arg(365u64 * 24 * 3600 * 1000).arg("JUSTID");
        match self.conn.query(&self.what("XCLAIM (release)"), &cmd).await {
            Ok(_) => tracing::info!(stream = %self.stream, group = %self.group, consumer = %self.consumer,
                entries = self.ready.len(),
                "entries read ahead but not handed out were released for the other members to claim"),
            Err(e) => tracing::warn!(stream = %self.stream, group = %self.group, consumer = %self.consumer,
                entries = self.ready.len(), error = %e,
                "entries read ahead but not handed out stay pending for this consumer name"),
        }
        self.ready.clear();
    }
}
