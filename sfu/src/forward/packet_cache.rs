//! Per down-track cache of packets as they were sent, to answer NACKs.
//!
//! The subscriber NACKs by *output* sequence number, so the cache is keyed by it and holds the
//! rewritten header fields, the publisher's payload (a shared `Bytes`) and the VP8 ids written
//! over it, which together give the packet exactly as sent. It is a ring indexed by
//! `seq % size`: inserting costs a `Bytes` clone (a reference count) and no allocation. Header
//! extensions are not kept: transport-wide sequence numbers and send times must be fresh on a
//! retransmission, so the sender writes them again.
//!
//! The ring is sized by the stream's packet rate rather than for the busiest stream: it is
//! allocated with the first packet (a down-track that never carries media, such as a screen
//! share nobody started, costs nothing), starts small, doubles (up to the capacity given)
//! whenever the packet a new one would overwrite is younger than [`RETAIN`], and halves when
//! everything the smaller ring would drop is older than twice that. A quarter-resolution layer
//! thus holds a fraction of what a full-HD one does: with hundreds of subscribers per publisher
//! this is most of a down-track's memory.

use bytes::Bytes;
use std::time::{Duration, Instant};

/// Default capacity for video: about 0.5 s of a 1080p stream at ~1000 packets/s, comfortably
/// more than the subscriber's NACK reaction time.
pub const VIDEO_CAPACITY: usize = 512;
/// How long a sent packet should stay answerable: a NACK comes a round trip plus the receiver's
/// reordering wait after the loss, and may be repeated twice 100 ms apart.
pub const RETAIN: Duration = Duration::from_millis(500);
/// Slots a ring starts with and never shrinks below (unless its capacity is smaller).
const MIN_SLOTS: usize = 32;

/// One packet as it was sent on the down-track.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CachedPacket {
    /// Output SSRC.
    pub ssrc: u32,
    /// Output sequence number.
    pub seq: u16,
    /// Output timestamp.
    pub timestamp: u32,
    /// Marker bit.
    pub marker: bool,
    /// Payload type.
    pub payload_type: u8,
    /// The payload as received from the publisher (shared, not copied).
    pub payload: Bytes,
    /// VP8 picture id / TL0PICIDX written over the payload's descriptor when sent; apply them
    /// again (`vp8::apply`) in the retransmission's send buffer.
    pub vp8: Option<super::vp8::Vp8Ids>,
}

/// How often the same packet may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetransmitLimits {
    /// At most once per this interval: a NACK repeated before our retransmission could have
    /// arrived is not answered twice.
    pub min_interval: Duration,
    /// At most this many retransmissions of one packet.
    pub max_count: u8,
}

impl Default for RetransmitLimits {
    fn default() -> Self {
        RetransmitLimits {
            min_interval: Duration::from_millis(100),
            max_count: 3,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Slot {
    valid: bool,
    retransmits: u8,
    /// When the packet was cached and (if `retransmits > 0`) last retransmitted, in milliseconds
    /// since the cache's epoch, wrapping: 4 bytes each instead of an `Instant`'s 16.
    sent_ms: u32,
    retransmitted_ms: u32,
    packet: CachedPacket,
}

/// The ring of sent packets. See the module documentation.
#[derive(Debug, Clone)]
pub struct PacketCache {
    /// A power of two long; empty until the first packet.
    slots: Vec<Slot>,
    capacity: usize,
    highest: Option<u16>,
    limits: RetransmitLimits,
    /// The instant the slots' times count from (the first packet's).
    epoch: Option<Instant>,
}

impl PacketCache {
    /// A cache of up to `capacity` packets (rounded up to a power of two, at most 32768 so
    /// "behind the newest" stays unambiguous in the 16-bit sequence space). Nothing is allocated
    /// until the first packet.
    pub fn new(capacity: usize, limits: RetransmitLimits) -> Self {
        let cap = capacity.clamp(1, 1 << 15).next_power_of_two();
        PacketCache {
            slots: Vec::new(),
            capacity: cap,
            highest: None,
            limits,
            epoch: None,
        }
    }

    /// Number of packets the ring may grow to hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of packets the ring holds room for now.
    pub fn allocated(&self) -> usize {
        self.slots.len()
    }

    fn index(&self, seq: u16) -> usize {
        usize::from(seq) & self.slots.len().saturating_sub(1)
    }

    /// `now` in the slots' milliseconds (see `Slot::sent_ms`).
    fn millis(&mut self, now: Instant) -> u32 {
        let since = now.saturating_duration_since(*self.epoch.get_or_insert(now));
        // Wrapping (every 49 days) is fine: only differences of these are used. Computed in
        // 32 bits, once per packet, rather than through `as_millis`'s 128.
        (since.as_secs() as u32)
            .wrapping_mul(1000)
            .wrapping_add(since.subsec_millis())
    }

    /// How far `seq` is behind the newest packet, if it is not ahead of it.
    fn age(&self, seq: u16) -> Option<usize> {
        let highest = self.highest?;
        let behind = highest.wrapping_sub(seq);
        (behind < 0x8000).then_some(usize::from(behind))
    }

    /// Records a packet as sent at `now`. Out-of-order inserts (a late packet forwarded after
    /// newer ones) are fine as long as they are within the ring.
    pub fn insert(&mut self, packet: CachedPacket, now: Instant) {
        let now_ms = self.millis(now);
        if self.slots.is_empty() {
            self.slots = vec![Slot::default(); MIN_SLOTS.min(self.capacity)];
        }
        let seq = packet.seq;
        match self.age(seq) {
            Some(age) if age >= self.slots.len() => return,
            Some(_) => {}
            None => {
                self.fit_rate(seq, now_ms);
                // Newer than anything so far: invalidate the slots skipped over, so a lookup of a
                // number never sent cannot find a packet from a previous lap of the ring.
                if let Some(h) = self.highest {
                    let jump = usize::from(seq.wrapping_sub(h));
                    if jump >= self.slots.len() {
                        self.slots.iter_mut().for_each(|s| s.valid = false);
                    } else {
                        for k in 1..jump {
                            let i = self.index(h.wrapping_add(k as u16));
                            if let Some(s) = self.slots.get_mut(i) {
                                s.valid = false;
                            }
                        }
                    }
                }
                self.highest = Some(seq);
            }
        }
        let i = self.index(seq);
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = Slot {
                valid: true,
                retransmits: 0,
                sent_ms: now_ms,
                retransmitted_ms: 0,
                packet,
            };
        }
    }

    /// Before `seq`, newer than anything cached, goes in: grows the ring while the packet `seq`
    /// would overwrite is younger than [`RETAIN`]; halves it when the newest packet the halved
    /// ring would drop is older than twice that (so nothing dropped could still be asked for).
    fn fit_rate(&mut self, seq: u16, now_ms: u32) {
        let retain = RETAIN.as_millis() as u32;
        let young = |slot: Option<&Slot>, limit: u32| {
            slot.is_some_and(|s| s.valid && now_ms.wrapping_sub(s.sent_ms) < limit)
        };
        while self.slots.len() < self.capacity && young(self.slots.get(self.index(seq)), retain) {
            self.resize(self.slots.len() * 2);
        }
        let half = self.slots.len() / 2;
        if half >= MIN_SLOTS.min(self.capacity) && half > 0 {
            let newest_dropped = seq.wrapping_sub(half as u16);
            let slot = self.slots.get(self.index(newest_dropped));
            if slot.is_some_and(|s| s.valid && s.packet.seq == newest_dropped)
                && !young(slot, 2 * retain)
            {
                self.resize(half);
            }
        }
    }

    /// Moves the packets into a ring of `len` slots; shrinking keeps the newest.
    fn resize(&mut self, len: usize) {
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); len]);
        for slot in old.into_iter().filter(|s| s.valid) {
            if self.age(slot.packet.seq).is_some_and(|age| age < len) {
                let i = self.index(slot.packet.seq);
                if let Some(s) = self.slots.get_mut(i) {
                    *s = slot;
                }
            }
        }
    }

    /// The cached packet with this output sequence number, if still held.
    pub fn get(&self, seq: u16) -> Option<&CachedPacket> {
        let age = self.age(seq)?;
        if age >= self.slots.len() {
            return None;
        }
        self.slots
            .get(self.index(seq))
            .filter(|s| s.valid && s.packet.seq == seq)
            .map(|s| &s.packet)
    }

    /// Takes one packet out for retransmission if it is cached and its limits allow.
    pub fn retransmit(&mut self, seq: u16, now: Instant) -> Option<CachedPacket> {
        self.get(seq)?;
        let now_ms = self.millis(now);
        let limits = self.limits;
        let i = self.index(seq);
        let slot = self.slots.get_mut(i)?;
        if slot.retransmits >= limits.max_count {
            return None;
        }
        let since = now_ms.wrapping_sub(slot.retransmitted_ms);
        if slot.retransmits > 0 && u128::from(since) < limits.min_interval.as_millis() {
            return None;
        }
        slot.retransmits += 1;
        slot.retransmitted_ms = now_ms;
        Some(slot.packet.clone())
    }

    /// Answers a NACK: the cached packets for `seqs`, in order, skipping those evicted, never
    /// sent, or retransmitted too recently or too often. Each item is a cheap clone (the payload
    /// is reference counted).
    pub fn nack_lookup<'a, I>(
        &'a mut self,
        seqs: I,
        now: Instant,
    ) -> impl Iterator<Item = CachedPacket> + 'a
    where
        I: IntoIterator<Item = u16>,
        I::IntoIter: 'a,
    {
        seqs.into_iter()
            .filter_map(move |seq| self.retransmit(seq, now))
    }
}

/// Expands one generic NACK item (RFC 4585 §6.2.1: packet id + bitmask of the 16 following
/// packets) into the sequence numbers it reports lost, in increasing order.
pub fn expand_nack(packet_id: u16, bitmask: u16) -> impl Iterator<Item = u16> {
    std::iter::once(packet_id).chain(
        (0..16u16)
            .filter(move |bit| bitmask & (1 << bit) != 0)
            .map(move |bit| packet_id.wrapping_add(bit + 1)),
    )
}

/// Expands all (packet id, bitmask) pairs of a generic NACK.
pub fn expand_nacks<I>(pairs: I) -> impl Iterator<Item = u16>
where
    I: IntoIterator<Item = (u16, u16)>,
{
    pairs
        .into_iter()
        .flat_map(|(id, mask)| expand_nack(id, mask))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u16) -> CachedPacket {
        CachedPacket {
            ssrc: 0xFEED,
            seq,
            timestamp: u32::from(seq) * 3000,
            marker: seq.is_multiple_of(3),
            payload_type: 96,
            payload: Bytes::from(vec![seq as u8; 10]),
            vp8: None,
        }
    }

    fn limits() -> RetransmitLimits {
        RetransmitLimits::default()
    }

    #[test]
    fn expands_nack_pairs() {
        let cases: &[((u16, u16), &[u16])] = &[
            ((100, 0), &[100]),
            ((100, 0b1), &[100, 101]),
            ((100, 0b1010_0000_0000_0101), &[100, 101, 103, 114, 116]),
            ((65535, 0b11), &[65535, 0, 1]),
            (
                (65530, 0xFFFF),
                &[
                    65530, 65531, 65532, 65533, 65534, 65535, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                ],
            ),
        ];
        for ((id, mask), want) in cases {
            let got: Vec<u16> = expand_nack(*id, *mask).collect();
            assert_eq!(&got, want, "{id} {mask:#b}");
        }
        let all: Vec<u16> = expand_nacks([(1, 0b1), (10, 0)]).collect();
        assert_eq!(all, [1, 2, 10]);
    }

    #[test]
    fn nack_returns_exactly_the_cached_packets() {
        let t0 = Instant::now();
        let mut c = PacketCache::new(VIDEO_CAPACITY, limits());
        for s in 1000..1100u16 {
            if s != 1050 {
                c.insert(packet(s), t0);
            }
        }
        let got: Vec<CachedPacket> = c.nack_lookup(expand_nack(1048, 0b111), t0).collect();
        assert_eq!(got, vec![packet(1048), packet(1049), packet(1051)]);
        // Unknown future and long-gone numbers give nothing.
        assert_eq!(c.nack_lookup([2000, 999], t0).count(), 0);
    }

    #[test]
    fn evicted_packets_are_skipped() {
        let t0 = Instant::now();
        let mut c = PacketCache::new(8, limits());
        for s in 65530..=65535u16 {
            c.insert(packet(s), t0);
        }
        for s in 0..6u16 {
            c.insert(packet(s), t0);
        }
        // Holds the last 8: 65534, 65535, 0..=5.
        let got: Vec<u16> = c
            .nack_lookup([65532, 65533, 65534, 65535, 0, 5, 6], t0)
            .map(|p| p.seq)
            .collect();
        assert_eq!(got, [65534, 65535, 0, 5]);
    }

    #[test]
    fn retransmit_rate_and_count_limits() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut c = PacketCache::new(64, limits());
        c.insert(packet(7), t0);
        let count = |c: &mut PacketCache, at| c.nack_lookup([7], at).count();
        assert_eq!(count(&mut c, ms(0)), 1);
        assert_eq!(count(&mut c, ms(50)), 0, "within 100 ms");
        assert_eq!(count(&mut c, ms(100)), 1);
        assert_eq!(count(&mut c, ms(200)), 1);
        assert_eq!(count(&mut c, ms(400)), 0, "max 3 retransmits");
        // The same seq twice in one NACK is answered once.
        c.insert(packet(8), t0);
        assert_eq!(c.nack_lookup([8, 8], ms(500)).count(), 1);
    }

    #[test]
    fn reinsert_resets_limits_and_out_of_order_insert_works() {
        let t0 = Instant::now();
        let mut c = PacketCache::new(16, limits());
        c.insert(packet(10), t0);
        c.insert(packet(12), t0);
        c.insert(packet(11), t0); // late packet forwarded after 12
        assert_eq!(c.get(11), Some(&packet(11)));
        assert_eq!(c.get(10), Some(&packet(10)));
        // Too old to insert: older than the ring.
        c.insert(packet(12u16.wrapping_sub(20)), t0);
        assert_eq!(c.get(12u16.wrapping_sub(20)), None);
        assert_eq!(c.nack_lookup([12], t0).count(), 1);
        assert_eq!(c.nack_lookup([12], t0).count(), 0);
        // A later lap replaces the slot and its counters.
        c.insert(packet(28), t0);
        assert_eq!(c.get(12), None);
    }

    #[test]
    fn jump_invalidates_skipped_slots() {
        let t0 = Instant::now();
        let mut c = PacketCache::new(8, limits());
        for s in 0..8u16 {
            c.insert(packet(s), t0);
        }
        // Jump by 3: slots for 8, 9 (holding 0, 1) are not reused; 10 replaces 2.
        c.insert(packet(10), t0);
        assert_eq!(c.get(8), None);
        assert_eq!(c.get(9), None);
        assert_eq!(c.get(3), Some(&packet(3)));
        // A jump bigger than the ring empties it.
        c.insert(packet(1000), t0);
        assert_eq!(c.get(10), None);
        assert_eq!(c.get(1000), Some(&packet(1000)));
        assert_eq!(c.capacity(), 8);
        assert_eq!(PacketCache::new(500, limits()).capacity(), 512);
    }

    /// Inserts `n` packets from `first`, one every `gap`, starting at `start`; returns the end.
    fn stream(c: &mut PacketCache, first: u16, n: u16, start: Instant, gap: Duration) -> Instant {
        let mut now = start;
        for k in 0..n {
            c.insert(packet(first.wrapping_add(k)), now);
            now += gap;
        }
        now
    }

    #[test]
    fn nothing_is_allocated_before_the_first_packet() {
        let mut c = PacketCache::new(VIDEO_CAPACITY, limits());
        assert_eq!(c.allocated(), 0);
        assert_eq!(c.get(0), None);
        assert_eq!(c.nack_lookup([0, 1, 65535], Instant::now()).count(), 0);
        c.insert(packet(5), Instant::now());
        assert_eq!(c.allocated(), MIN_SLOTS);
        assert_eq!(c.get(5), Some(&packet(5)));
    }

    #[test]
    fn a_fast_stream_grows_the_ring_before_young_packets_are_overwritten() {
        let t0 = Instant::now();
        let mut c = PacketCache::new(VIDEO_CAPACITY, limits());
        // A 300-packet keyframe burst within 30 ms: every packet stays answerable.
        let end = stream(&mut c, 65400, 300, t0, Duration::from_micros(100));
        assert!(c.allocated() >= 300, "{}", c.allocated());
        let held = c.nack_lookup((0..300u16).map(|k| 65400u16.wrapping_add(k)), end);
        assert_eq!(held.count(), 300);
        // Never beyond the capacity, however fast.
        stream(
            &mut c,
            65400u16.wrapping_add(300),
            5000,
            end,
            Duration::from_micros(10),
        );
        assert_eq!(c.allocated(), VIDEO_CAPACITY);
    }

    #[test]
    fn a_slow_stream_keeps_a_small_ring_holding_at_least_the_retention_time() {
        let t0 = Instant::now();
        let mut c = PacketCache::new(VIDEO_CAPACITY, limits());
        // 50 packets/s (audio-like) for 10 s.
        let end = stream(&mut c, 0, 500, t0, Duration::from_millis(20));
        assert_eq!(c.allocated(), MIN_SLOTS);
        let covered = RETAIN.as_millis() as u16 / 20;
        let recent = (500 - covered..500).collect::<Vec<u16>>();
        assert_eq!(c.nack_lookup(recent, end).count(), usize::from(covered));
    }

    #[test]
    fn the_ring_shrinks_when_the_rate_drops_and_keeps_the_newest() {
        let t0 = Instant::now();
        let mut c = PacketCache::new(VIDEO_CAPACITY, limits());
        // 1000 packets/s for 2 s, then 20 packets/s (a subscriber moved to a lower layer).
        let t1 = stream(&mut c, 0, 2000, t0, Duration::from_millis(1));
        assert_eq!(c.allocated(), VIDEO_CAPACITY);
        let t2 = stream(&mut c, 2000, 1200, t1, Duration::from_millis(50));
        assert!(c.allocated() < VIDEO_CAPACITY / 4, "{}", c.allocated());
        assert!(c.allocated() >= MIN_SLOTS);
        // The last half second is still there.
        assert_eq!(c.nack_lookup(3190..3200, t2).count(), 10);
    }
}
