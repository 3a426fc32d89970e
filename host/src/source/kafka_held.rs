//! Which records of a Kafka source are delivered, and when: partitions held back by
//! watermark alignment deliver nothing until released.
//!
//! Holding a partition sets its librdkafka queue aside (`MessageQueue::set_aside`), which
//! keeps what librdkafka prefetched for it, unlike a pause. But up to a prefetch's worth
//! of its messages may already wait in the source's own queue. Those are kept here,
//! undelivered: which events count as late must not depend on what librdkafka happened to
//! have prefetched. Once the partition is released they are handed out first, and its
//! queue is routed back only when they are all out: held again meanwhile, it would
//! otherwise hand its prefetch over to be kept here, again and again, without bound.

use std::collections::{BTreeMap, BTreeSet};

use weir_sdk::RawBatch;

use super::kafka_queue::Taken;

/// The partitions held back, and the records taken from librdkafka but not delivered.
#[derive(Default)]
pub(super) struct Held {
    /// Per held partition, its records taken since the hold, in order.
    kept: BTreeMap<i32, RawBatch>,
    /// Records of released partitions, delivered before anything else from `next` on.
    released: RawBatch,
    next: usize,
    /// Partitions whose librdkafka queue is set aside: the held ones, and released ones
    /// whose kept records are not all delivered yet.
    aside: BTreeSet<i32>,
}

impl Held {
    /// Holds `partition` back. True if its librdkafka queue must now be set aside.
    pub(super) fn hold(&mut self, partition: i32) -> bool {
        self.kept.entry(partition).or_default();
        self.aside.insert(partition)
    }

    /// Releases `partition`, queueing its kept records for delivery. Its librdkafka queue
    /// is routed back once [`take_routable`](Self::take_routable) names it.
    pub(super) fn release(&mut self, partition: i32) {
        let Some(kept) = self.kept.remove(&partition) else { return };
        if kept.is_empty() {
            return;
        }
        if self.next == self.released.len() {
            // Nothing else waits to go out: deliver the kept records as they are.
            (self.released, self.next) = (kept, 0);
            return;
        }
        let rest = self.next..self.released.len();
        let mut released = if self.next == 0 { std::mem::take(&mut self.released) } else { self.released.slice(rest) };
        for i in 0..kept.len() {
            released.push_from(&kept, i);
        }
        (self.released, self.next) = (released, 0);
    }

    /// The released partitions whose librdkafka queue may be routed back now: all their
    /// kept records are delivered. They are taken off the list.
    pub(super) fn take_routable(&mut self) -> Vec<i32> {
        if self.next < self.released.len() || self.aside.len() == self.kept.len() {
            return Vec::new();
        }
        let back: Vec<i32> = self.aside.iter().copied().filter(|p| !self.kept.contains_key(p)).collect();
        for p in &back {
            self.aside.remove(p);
        }
        back
    }

    /// Forgets a revoked partition: nothing of it is held or delivered any more (its queue
    /// is routed anew on assignment).
    pub(super) fn forget(&mut self, partition: i32) {
        self.kept.remove(&partition);
        self.aside.remove(&partition);
    }

    /// Gives back every record taken but not delivered (the partitions stay held): the
    /// caller must return the partitions named to their positions.
    pub(super) fn give_back(&mut self) -> Vec<i32> {
        let mut partitions: Vec<i32> = self.released.partitions[self.next..].to_vec();
        for (&p, kept) in &mut self.kept {
            if !kept.is_empty() {
                partitions.push(p);
                *kept = RawBatch::default();
            }
        }
        (self.released, self.next) = (RawBatch::default(), 0);
        partitions.sort_unstable();
        partitions.dedup();
        partitions
    }

    /// Routes `records[from..]` like [`route`](Self::route) until `batch` holds `max`, and
    /// returns where it stopped. When `batch` is empty and every record follows its
    /// partition's position in a partition not held, `records` becomes `batch` whole,
    /// without a copy (and `records` the emptied `batch`).
    pub(super) fn route_all(
        &mut self,
        positions: &mut BTreeMap<i32, i64>,
        batch: &mut RawBatch,
        records: &mut RawBatch,
        from: usize,
        max: usize,
    ) -> usize {
        // Whether `accept` would take every record: each partition ours and not held, each
        // offset at or after the position the records before it leave.
        let follows = || {
            let mut next: Vec<(i32, i64)> = Vec::new();
            records.partitions.iter().zip(&records.offsets).all(|(&p, &o)| {
                let i = match next.iter().position(|(q, _)| *q == p) {
                    Some(i) => i,
                    None => match positions.get(&p) {
                        Some(&at) if !self.kept.contains_key(&p) => {
                            next.push((p, at));
                            next.len() - 1
                        }
                        _ => return false,
                    },
                };
                let follows = o >= next[i].1;
                next[i].1 = o + 1;
                follows
            })
        };
        if from == 0 && batch.is_empty() && records.len() <= max && follows() {
            for (p, o) in records.partitions.iter().zip(&records.offsets) {
                positions.insert(*p, o + 1);
            }
            std::mem::swap(batch, records);
            return batch.len();
        }
        let mut i = from;
        while i < records.len() && batch.len() < max {
            self.route(positions, batch, &record(records, i));
            i += 1;
        }
        i
    }

    /// Delivers the record into `batch`, or keeps it if its partition is held.
    pub(super) fn route(&mut self, positions: &mut BTreeMap<i32, i64>, batch: &mut RawBatch, m: &Taken<'_>) {
        match self.kept.get_mut(&m.partition) {
            Some(kept) => kept.push(m.payload, m.key, m.timestamp, m.partition, m.offset),
            None => accept(positions, batch, m),
        }
    }

    /// Hands released records to `batch`, up to `max` in all. True if some remain, in
    /// which case nothing newer may be read yet.
    pub(super) fn deliver(&mut self, positions: &mut BTreeMap<i32, i64>, batch: &mut RawBatch, max: usize) -> bool {
        if self.next == self.released.len() {
            return false;
        }
        let released = std::mem::take(&mut self.released);
        while self.next < released.len() && batch.len() < max {
            self.route(positions, batch, &record(&released, self.next));
            self.next += 1;
        }
        if self.next < released.len() {
            self.released = released;
            return true;
        }
        self.next = 0;
        false
    }
}

/// Record `i` of `records`, as if taken from librdkafka.
fn record(records: &RawBatch, i: usize) -> Taken<'_> {
    Taken {
        partition: records.partitions[i],
        offset: records.offsets[i],
        timestamp: records.timestamps[i],
        payload: records.payloads.get(i),
        key: records.keys.get(i),
        error: None,
    }
}

/// Adds a message to `batch` unless its partition is not (or no longer) ours, or it lies
/// before the partition's position (read again after a seek).
fn accept(positions: &mut BTreeMap<i32, i64>, batch: &mut RawBatch, m: &Taken<'_>) {
    let Some(position) = positions.get_mut(&m.partition) else { return };
    if m.offset < *position {
        return;
    }
    *position = m.offset + 1;
    batch.push(m.payload, m.key, m.timestamp, m.partition, m.offset);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(held: &mut Held, positions: &mut BTreeMap<i32, i64>, records: &[(i32, i64)]) -> Vec<(i32, i64)> {
        let mut batch = RawBatch::default();
        for &(partition, offset) in records {
            let m = Taken { partition, offset, timestamp: -1, payload: b"x", key: b"", error: None };
            held.route(positions, &mut batch, &m);
        }
        delivered(&batch)
    }

    fn delivered(batch: &RawBatch) -> Vec<(i32, i64)> {
        batch.partitions.iter().copied().zip(batch.offsets.iter().copied()).collect()
    }

    #[test]
    fn a_held_partition_delivers_nothing_until_released_then_its_kept_records_first() {
        let mut positions = BTreeMap::from([(0, 0), (1, 0)]);
        let mut held = Held::default();
        assert!(held.hold(1), "its queue is set aside");
        assert!(!held.hold(1), "held once");
        let got = offered(&mut held, &mut positions, &[(0, 0), (1, 0), (1, 1), (0, 1)]);
        assert_eq!(got, [(0, 0), (0, 1)]);
        assert_eq!(positions[&1], 0, "nothing of a held partition counts as read");

        held.release(1);
        let mut batch = RawBatch::default();
        assert!(held.deliver(&mut positions, &mut batch, 1), "one of two fits");
        assert!(held.take_routable().is_empty(), "not while its kept records are going out");
        assert!(!held.deliver(&mut positions, &mut batch, 8));
        assert_eq!(delivered(&batch), [(1, 0), (1, 1)]);
        assert_eq!(positions[&1], 2);
        assert_eq!(held.take_routable(), [1]);
        assert!(held.take_routable().is_empty(), "once");
    }

    #[test]
    fn a_partition_held_again_keeps_its_released_records_in_order() {
        let mut positions = BTreeMap::from([(0, 0)]);
        let mut held = Held::default();
        held.hold(0);
        offered(&mut held, &mut positions, &[(0, 0), (0, 1)]);
        held.release(0);
        assert!(!held.hold(0), "its queue is still set aside");
        let mut batch = RawBatch::default();
        assert!(!held.deliver(&mut positions, &mut batch, 8));
        assert!(batch.is_empty(), "held again before its records went out");
        assert!(held.take_routable().is_empty());
        offered(&mut held, &mut positions, &[(0, 2)]);
        held.release(0);
        held.deliver(&mut positions, &mut batch, 8);
        assert_eq!(delivered(&batch), [(0, 0), (0, 1), (0, 2)]);
        assert_eq!(held.take_routable(), [0]);
    }

    fn records(list: &[(i32, i64)]) -> RawBatch {
        let mut batch = RawBatch::default();
        for &(partition, offset) in list {
            batch.push(format!("{partition}:{offset}").as_bytes(), b"", -1, partition, offset);
        }
        batch
    }

    /// `route_all` over `list` must deliver, keep and advance exactly as routing each
    /// record in turn does.
    fn routes_like_route(held: &Held, positions: &BTreeMap<i32, i64>, list: &[(i32, i64)], max: usize) -> usize {
        let (mut one_by_one, mut one_positions) = (Held::default(), positions.clone());
        for &p in held.kept.keys() {
            one_by_one.hold(p);
        }
        let mut expected = RawBatch::default();
        let all = records(list);
        for i in 0..all.len().min(max) {
            one_by_one.route(&mut one_positions, &mut expected, &record(&all, i));
        }
        let (mut held, mut positions, mut batch, mut input) = (
            Held { kept: held.kept.clone(), ..Default::default() },
            positions.clone(),
            RawBatch::default(),
            records(list),
        );
        let to = held.route_all(&mut positions, &mut batch, &mut input, 0, max);
        assert_eq!((delivered(&batch), &positions), (delivered(&expected), &one_positions), "{list:?}");
        assert_eq!(batch.payloads, expected.payloads);
        assert_eq!(held.kept, one_by_one.kept);
        to
    }

    #[test]
    fn routing_a_whole_chunk_equals_routing_each_record() {
        let positions = BTreeMap::from([(0, 10), (1, 0)]);
        let free = Held::default();
        // Taken whole: every record follows its position.
        assert_eq!(routes_like_route(&free, &positions, &[(0, 10), (1, 0), (0, 11), (1, 5)], 8), 4);
        // Read again after a seek, not ours, or stale then fresh: routed one by one.
        assert_eq!(routes_like_route(&free, &positions, &[(0, 9), (0, 10)], 8), 2);
        assert_eq!(routes_like_route(&free, &positions, &[(0, 10), (2, 0)], 8), 2);
        assert_eq!(routes_like_route(&free, &positions, &[(0, 12), (0, 11), (0, 13)], 8), 3);
        // A held partition's records are kept.
        let mut holding = Held::default();
        holding.hold(1);
        assert_eq!(routes_like_route(&holding, &positions, &[(0, 10), (1, 0), (0, 11)], 8), 3);
        assert_eq!(routes_like_route(&holding, &positions, &[(0, 10), (0, 11)], 8), 2);
        // No more than `max` delivered: routing stops there.
        assert_eq!(routes_like_route(&free, &positions, &[(0, 10), (0, 11), (0, 12)], 2), 2);
    }

    #[test]
    fn a_whole_chunk_becomes_the_batch_without_a_copy() {
        let mut positions = BTreeMap::from([(0, 0)]);
        let mut input = records(&[(0, 0), (0, 1)]);
        let address = input.payloads.bytes.as_ptr();
        let mut batch = RawBatch::default();
        let mut held = Held::default();
        held.hold(1); // another partition held does not stand in the way
        assert_eq!(held.route_all(&mut positions, &mut batch, &mut input, 0, 8), 2);
        assert_eq!(batch.payloads.bytes.as_ptr(), address);
        assert!(input.is_empty());
        assert_eq!(positions[&0], 2);
    }

    #[test]
    fn records_taken_but_not_delivered_are_given_back() {
        let mut positions = BTreeMap::from([(0, 0), (1, 0), (2, 0)]);
        let mut held = Held::default();
        held.hold(1);
        held.hold(2);
        offered(&mut held, &mut positions, &[(1, 0), (2, 0), (0, 0)]);
        held.release(2);
        assert_eq!(held.give_back(), [1, 2]);
        let mut batch = RawBatch::default();
        assert!(!held.deliver(&mut positions, &mut batch, 8));
        assert!(batch.is_empty());
        assert_eq!(held.take_routable(), [2], "nothing of it is left to deliver");
        assert!(offered(&mut held, &mut positions, &[(1, 0)]).is_empty(), "partition 1 is still held");
        held.forget(1);
        assert_eq!(offered(&mut held, &mut positions, &[(1, 0)]), [(1, 0)], "a forgotten partition is not held");
    }
}
