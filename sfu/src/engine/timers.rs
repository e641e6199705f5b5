//! The deadlines of all peer connections, earliest first.
//!
//! Every peer connection reports the next instant it must be woken at (`poll_timeout`). Asking
//! all of them on each wake-up of the media loop costs O(connections) per wake-up, which at
//! hundreds of participants is most of an idle server's work. This queue answers "what is the
//! earliest deadline" in O(1) and hands out the due connections in O(log n) each.
//!
//! It is a binary min-heap with lazy invalidation: moving a deadline pushes a new entry stamped
//! with a fresh generation and records that generation as the key's live one; an entry whose
//! generation is no longer live is stale and is discarded when it reaches the top. The top is
//! kept live after every change, so [`TimerQueue::next`] needs no `&mut`. Stale entries deeper in
//! the heap are bounded by rebuilding the heap from the live deadlines once they outnumber them.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::hash::Hash;
use std::time::Instant;

use crate::engine::FastMap;

/// Rebuild the heap once it holds more than twice the live entries plus this many.
const SLACK: usize = 64;

struct Entry<K> {
    at: Instant,
    generation: u64,
    key: K,
}

// Ordered by deadline, then by generation (unique), so the key type needs no order of its own.
impl<K> Ord for Entry<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.generation).cmp(&(other.at, other.generation))
    }
}

impl<K> PartialOrd for Entry<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> PartialEq for Entry<K> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<K> Eq for Entry<K> {}

/// Deadlines by key; see the module documentation.
pub struct TimerQueue<K> {
    heap: BinaryHeap<Reverse<Entry<K>>>,
    /// The live deadline of each key and the generation of its heap entry.
    live: FastMap<K, (Instant, u64)>,
    next_generation: u64,
}

impl<K: Copy + Eq + Hash> Default for TimerQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Copy + Eq + Hash> TimerQueue<K> {
    pub fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            live: FastMap::default(),
            next_generation: 0,
        }
    }

    /// Sets (`Some`) or clears (`None`) the deadline of `key`, replacing any earlier one.
    pub fn set(&mut self, key: K, deadline: Option<Instant>) {
        let Some(at) = deadline else {
            self.remove(key);
            return;
        };
        if self.live.get(&key).is_some_and(|(d, _)| *d == at) {
            return;
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        self.live.insert(key, (at, generation));
        self.heap.push(Reverse(Entry {
            at,
            generation,
            key,
        }));
        self.tidy();
    }

    /// Forgets `key` (a closed connection).
    pub fn remove(&mut self, key: K) {
        if self.live.remove(&key).is_some() {
            self.tidy();
        }
    }

    /// The deadline of `key`, if it has one.
    pub fn deadline(&self, key: K) -> Option<Instant> {
        self.live.get(&key).map(|(d, _)| *d)
    }

    /// The earliest deadline of all.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// Takes out one key whose deadline is at or before `now` (earliest first); its deadline is
    /// cleared.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        if self.next()? > now {
            return None;
        }
        let Reverse(e) = self.heap.pop()?;
        self.live.remove(&e.key);
        self.tidy();
        Some(e.key)
    }

    /// Number of keys with a deadline.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    fn is_live(&self, e: &Entry<K>) -> bool {
        self.live
            .get(&e.key)
            .is_some_and(|(_, generation)| *generation == e.generation)
    }

    /// Restores the invariants: the top entry is live, and stale entries are bounded.
    fn tidy(&mut self) {
        if self.heap.len() > 2 * self.live.len() + SLACK {
            self.heap = self
                .live
                .iter()
                .map(|(key, (at, generation))| {
                    Reverse(Entry {
                        at: *at,
                        generation: *generation,
                        key: *key,
                    })
                })
                .collect();
            return;
        }
        while let Some(Reverse(top)) = self.heap.peek() {
            if self.is_live(top) {
                break;
            }
            self.heap.pop();
        }
    }

    #[cfg(test)]
    fn entries(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::time::Duration;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn drain(q: &mut TimerQueue<u32>, now: Instant) -> Vec<u32> {
        std::iter::from_fn(|| q.pop_due(now)).collect()
    }

    #[test]
    fn due_keys_come_out_earliest_first_and_only_when_due() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        q.set(1, Some(at(t0, 30)));
        q.set(2, Some(at(t0, 10)));
        q.set(3, Some(at(t0, 20)));
        q.set(4, None);
        assert_eq!(q.len(), 3);
        assert_eq!(q.next(), Some(at(t0, 10)));
        assert_eq!(drain(&mut q, at(t0, 5)), Vec::<u32>::new());
        assert_eq!(drain(&mut q, at(t0, 20)), [2, 3]);
        assert_eq!(q.next(), Some(at(t0, 30)));
        assert_eq!(q.deadline(1), Some(at(t0, 30)));
        assert_eq!(
            q.deadline(2),
            None,
            "a popped key has no deadline until set again"
        );
        assert_eq!(drain(&mut q, at(t0, 100)), [1]);
        assert!(q.is_empty());
        assert_eq!(q.next(), None);
    }

    #[test]
    fn a_deadline_moved_earlier_fires_once_at_the_new_time() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        q.set(7, Some(at(t0, 1000)));
        q.set(8, Some(at(t0, 500)));
        q.set(7, Some(at(t0, 100)));
        assert_eq!(q.next(), Some(at(t0, 100)));
        assert_eq!(drain(&mut q, at(t0, 100)), [7]);
        // The abandoned 1000 ms entry must not fire key 7 again.
        assert_eq!(drain(&mut q, at(t0, 5000)), [8]);
        assert_eq!(q.next(), None);
    }

    #[test]
    fn a_deadline_moved_later_does_not_fire_at_the_old_time() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        q.set(7, Some(at(t0, 100)));
        q.set(8, Some(at(t0, 500)));
        q.set(7, Some(at(t0, 1000)));
        assert_eq!(
            q.next(),
            Some(at(t0, 500)),
            "the stale 100 ms entry is not reported"
        );
        assert_eq!(drain(&mut q, at(t0, 600)), [8]);
        assert_eq!(q.next(), Some(at(t0, 1000)));
        assert_eq!(drain(&mut q, at(t0, 1000)), [7]);
    }

    #[test]
    fn removed_keys_never_fire_and_the_next_deadline_moves_on() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        q.set(1, Some(at(t0, 10)));
        q.set(2, Some(at(t0, 20)));
        q.set(3, Some(at(t0, 30)));
        q.remove(1);
        assert_eq!(q.next(), Some(at(t0, 20)));
        q.set(2, None);
        assert_eq!(q.next(), Some(at(t0, 30)));
        q.remove(42);
        assert_eq!(drain(&mut q, at(t0, 100)), [3]);
        // Set again after removal: fires normally.
        q.set(1, Some(at(t0, 200)));
        assert_eq!(drain(&mut q, at(t0, 200)), [1]);
    }

    #[test]
    fn moving_deadlines_does_not_grow_the_heap_without_bound() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        for k in 0..10u32 {
            q.set(k, Some(at(t0, 1_000_000)));
        }
        // A deadline that keeps moving later leaves a stale entry behind each time.
        for i in 0..10_000u64 {
            q.set(3, Some(at(t0, 10 + i)));
            q.set(3, Some(at(t0, 10 + i))); // unchanged: no new entry
        }
        assert!(q.entries() <= 2 * q.len() + SLACK + 1, "{}", q.entries());
        assert_eq!(q.next(), Some(at(t0, 10 + 9_999)));
        assert_eq!(drain(&mut q, at(t0, 20_000)), [3]);
        assert_eq!(q.len(), 9);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Set(u8, Option<u16>),
        Remove(u8),
        Advance(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..16u8, proptest::option::weighted(0.9, 0..2000u16)).prop_map(|(k, d)| Op::Set(k, d)),
            1 => (0..16u8).prop_map(Op::Remove),
            2 => (0..300u16).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// Against a plain map scanned in full (what the engine did before): the same next
        /// deadline after every step, and the same keys due, each at its current deadline.
        #[test]
        fn behaves_like_scanning_every_deadline(ops in proptest::collection::vec(op(), 1..200)) {
            let t0 = Instant::now();
            let mut q = TimerQueue::new();
            let mut model: HashMap<u8, Instant> = HashMap::new();
            let mut now = t0;
            for op in ops {
                match op {
                    Op::Set(k, d) => {
                        let d = d.map(|ms| at(now, u64::from(ms)));
                        q.set(k, d);
                        match d {
                            Some(d) => { model.insert(k, d); }
                            None => { model.remove(&k); }
                        }
                    }
                    Op::Remove(k) => {
                        q.remove(k);
                        model.remove(&k);
                    }
                    Op::Advance(ms) => {
                        now += Duration::from_millis(u64::from(ms));
                        while let Some(k) = q.pop_due(now) {
                            let d = model.remove(&k);
                            prop_assert!(d.is_some_and(|d| d <= now), "{k} popped early or twice");
                            prop_assert!(model.values().all(|o| *o >= d.unwrap_or(now)), "not earliest first");
                        }
                        prop_assert!(model.values().all(|d| *d > now), "a due key was left behind");
                    }
                }
                prop_assert_eq!(q.next(), model.values().min().copied());
                prop_assert_eq!(q.len(), model.len());
                prop_assert!(q.entries() <= 2 * q.len() + SLACK + 1);
            }
        }
    }
}
