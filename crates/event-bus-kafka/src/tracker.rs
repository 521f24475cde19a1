//! Which offset a consumer may commit on a partition when acknowledgements
//! come out of order.
//!
//! Kafka keeps one committed position per partition and group: "everything
//! before this offset is done". The consume loop may acknowledge message 7
//! before message 5 (5 waits for a retry), so the committed position may only
//! move up to the lowest offset still in flight. With nothing in flight it is
//! the last acknowledged offset plus one.
//!
//! ```
//! use event_bus_kafka::tracker::PartitionTracker;
//! let mut p = PartitionTracker::default();
//! for offset in 5..=7 {
//!     p.delivered(offset);
//! }
//! p.acked(7);
//! assert_eq!(p.commit_position(), Some(5)); // 5 and 6 are still in flight
//! p.acked(5);
//! assert_eq!(p.commit_position(), Some(6));
//! p.acked(6);
//! assert_eq!(p.commit_position(), Some(8));
//! p.committed(8);
//! assert_eq!(p.commit_position(), None); // nothing new to commit
//! ```

use std::collections::BTreeSet;

/// The commit bookkeeping of one assigned partition (see the module
/// example).
///
/// ```
/// use event_bus_kafka::tracker::PartitionTracker;
/// let mut p = PartitionTracker::starting_at(Some(10));
/// p.delivered(10);
/// p.delivered(11);
/// p.acked(11); // out of order: 10 is still in flight
/// assert_eq!(p.commit_position(), None); // 10 is already committed
/// p.acked(10);
/// assert_eq!(p.commit_position(), Some(12));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionTracker {
    /// Offsets handed out (or waiting to be handed out again after a nack)
    /// and not yet acknowledged.
    inflight: BTreeSet<i64>,
    /// The highest offset acknowledged since the partition was assigned.
    acked_max: Option<i64>,
    /// The position last committed by this member (or found committed).
    committed: Option<i64>,
}

impl PartitionTracker {
    /// A tracker whose group position is already `committed`.
    pub fn starting_at(committed: Option<i64>) -> Self {
        PartitionTracker {
            committed,
            ..Self::default()
        }
    }

    /// A message at `offset` was taken from the partition.
    pub fn delivered(&mut self, offset: i64) {
        self.inflight.insert(offset);
    }

    /// The message at `offset` is done. Unknown offsets are ignored.
    pub fn acked(&mut self, offset: i64) {
        if self.inflight.remove(&offset) {
            self.acked_max = Some(self.acked_max.map_or(offset, |m| m.max(offset)));
        }
    }

    /// The message at `offset` will never be acknowledged by this member
    /// (its partition moved on): forget it without advancing past it.
    pub fn forget(&mut self, offset: i64) {
        self.inflight.remove(&offset);
    }

    /// Offsets in flight, lowest first.
    pub fn inflight(&self) -> impl Iterator<Item = i64> + '_ {
        self.inflight.iter().copied()
    }

    /// The position to commit now, if it moves the group forward: the lowest
    /// offset in flight, or the last acknowledged offset plus one when nothing
    /// is in flight. `None` when nothing was acknowledged yet or the position
    /// is already committed.
    pub fn commit_position(&self) -> Option<i64> {
        let acked = self.acked_max?;
        let position = match self.inflight.first() {
            Some(lowest) if *lowest <= acked => *lowest,
            _ => acked + 1,
        };
        match self.committed {
            Some(c) if position <= c => None,
            _ => Some(position),
        }
    }

    /// `position` was committed.
    pub fn committed(&mut self, position: i64) {
        self.committed = Some(self.committed.map_or(position, |c| c.max(position)));
    }

    /// The group position was moved (a seek): start over from `position`.
    pub fn reset(&mut self, position: Option<i64>) {
        *self = PartitionTracker::starting_at(position);
    }

    /// The last position committed (or known committed).
    pub fn last_committed(&self) -> Option<i64> {
        self.committed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_acked_means_nothing_to_commit() {
        let mut p = PartitionTracker::default();
        assert_eq!(p.commit_position(), None);
        p.delivered(0);
        p.delivered(1);
        assert_eq!(p.commit_position(), None);
    }

    #[test]
    fn in_order_acks_commit_last_plus_one() {
        let mut p = PartitionTracker::default();
        for o in 0..10 {
            p.delivered(o);
        }
        for o in 0..10 {
            p.acked(o);
            assert_eq!(p.commit_position(), Some(if o == 9 { 10 } else { o + 1 }));
        }
    }

    #[test]
    fn out_of_order_acks_stop_at_the_lowest_in_flight() {
        let mut p = PartitionTracker::starting_at(Some(100));
        for o in 100..106 {
            p.delivered(o);
        }
        // 100 is retried (still in flight); later ones are done.
        for o in [105, 103, 101, 102, 104] {
            p.acked(o);
            assert_eq!(
                p.commit_position(),
                None,
                "offset 100 is still in flight (committed 100)"
            );
        }
        p.acked(100);
        assert_eq!(p.commit_position(), Some(106));
        p.committed(106);
        assert_eq!(p.commit_position(), None);
        assert_eq!(p.last_committed(), Some(106));
    }

    #[test]
    fn a_gap_in_the_middle_holds_the_position() {
        let mut p = PartitionTracker::default();
        for o in [3, 4, 5, 6] {
            p.delivered(o);
        }
        p.acked(3);
        p.acked(5);
        p.acked(6);
        assert_eq!(p.commit_position(), Some(4));
        p.committed(4);
        assert_eq!(p.commit_position(), None);
        p.acked(4);
        assert_eq!(p.commit_position(), Some(7));
    }

    #[test]
    fn messages_taken_after_the_last_ack_do_not_hold_back_earlier_acks() {
        let mut p = PartitionTracker::default();
        p.delivered(0);
        p.acked(0);
        p.delivered(1);
        p.delivered(2);
        // 1 and 2 are in flight, above nothing acked but 0: commit 1.
        assert_eq!(p.commit_position(), Some(1));
    }

    #[test]
    fn duplicate_and_unknown_acks_are_harmless() {
        let mut p = PartitionTracker::default();
        p.delivered(0);
        p.acked(0);
        p.acked(0);
        p.acked(42);
        assert_eq!(p.commit_position(), Some(1));
    }

    #[test]
    fn forgotten_offsets_never_advance_the_position() {
        let mut p = PartitionTracker::default();
        p.delivered(0);
        p.delivered(1);
        p.forget(0);
        assert_eq!(p.commit_position(), None);
        p.acked(1);
        assert_eq!(p.commit_position(), Some(2));
    }

    #[test]
    fn reset_starts_over() {
        let mut p = PartitionTracker::default();
        p.delivered(50);
        p.acked(50);
        p.committed(51);
        p.reset(Some(10));
        assert_eq!(p.last_committed(), Some(10));
        assert_eq!(p.commit_position(), None);
        p.delivered(10);
        p.acked(10);
        assert_eq!(p.commit_position(), Some(11));
    }

    #[test]
    fn committing_never_moves_backwards() {
        let mut p = PartitionTracker::default();
        p.committed(20);
        p.committed(5);
        assert_eq!(p.last_committed(), Some(20));
    }
}
