//! Per down-track cache of packets as they were sent, to answer NACKs.
//!
//! The subscriber NACKs by *output* sequence number, so the cache is keyed by it and holds the
//! rewritten header fields, the publisher's payload (a shared `Bytes`) and the VP8 ids written
//! over it, which together give the packet exactly as sent. It is a ring
//! indexed by `seq % capacity`, allocated once: inserting costs a `Bytes` clone (a reference count)
//! and no allocation. Header extensions are not kept: transport-wide sequence numbers and send
//! times must be fresh on a retransmission, so the sender writes them again.

use bytes::Bytes;
use std::time::{Duration, Instant};

/// Default capacity for video: about 0.5 s of a 1080p stream at ~1000 packets/s, comfortably
/// more than the subscriber's NACK reaction time.
pub const VIDEO_CAPACITY: usize = 512;
/// Default capacity for audio (50 packets/s).
pub const AUDIO_CAPACITY: usize = 64;

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
    packet: CachedPacket,
    retransmits: u8,
    last_retransmit: Option<Instant>,
}

/// The ring of sent packets. See the module documentation.
#[derive(Debug, Clone)]
pub struct PacketCache {
    slots: Box<[Slot]>,
    mask: usize,
    highest: Option<u16>,
    limits: RetransmitLimits,
}

impl PacketCache {
    /// A cache of at least `capacity` packets (rounded up to a power of two, at most 32768 so
    /// "behind the newest" stays unambiguous in the 16-bit sequence space).
    pub fn new(capacity: usize, limits: RetransmitLimits) -> Self {
        let cap = capacity.clamp(1, 1 << 15).next_power_of_two();
        PacketCache {
            slots: vec![Slot::default(); cap].into_boxed_slice(),
            mask: cap - 1,
            highest: None,
            limits,
        }
    }

    /// Number of packets the ring can hold.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn index(&self, seq: u16) -> usize {
        usize::from(seq) & self.mask
    }

    /// How far `seq` is behind the newest packet, if it is not ahead of it.
    fn age(&self, seq: u16) -> Option<usize> {
        let highest = self.highest?;
        let behind = highest.wrapping_sub(seq);
        (behind < 0x8000).then_some(usize::from(behind))
    }

    /// Records a packet as sent. Out-of-order inserts (a late packet forwarded after newer ones)
    /// are fine as long as they are within the ring.
    pub fn insert(&mut self, packet: CachedPacket) {
        let seq = packet.seq;
        match self.age(seq) {
            Some(age) if age >= self.slots.len() => return,
            Some(_) => {}
            None => {
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
                packet,
                retransmits: 0,
                last_retransmit: None,
            };
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
        let limits = self.limits;
        let i = self.index(seq);
        let slot = self.slots.get_mut(i)?;
        if slot.retransmits >= limits.max_count {
            return None;
        }
        if slot
            .last_retransmit
            .is_some_and(|t| now.saturating_duration_since(t) < limits.min_interval)
        {
            return None;
        }
        slot.retransmits += 1;
        slot.last_retransmit = Some(now);
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
                c.insert(packet(s));
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
            c.insert(packet(s));
        }
        for s in 0..6u16 {
            c.insert(packet(s));
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
        c.insert(packet(7));
        let count = |c: &mut PacketCache, at| c.nack_lookup([7], at).count();
        assert_eq!(count(&mut c, ms(0)), 1);
        assert_eq!(count(&mut c, ms(50)), 0, "within 100 ms");
        assert_eq!(count(&mut c, ms(100)), 1);
        assert_eq!(count(&mut c, ms(200)), 1);
        assert_eq!(count(&mut c, ms(400)), 0, "max 3 retransmits");
        // The same seq twice in one NACK is answered once.
        c.insert(packet(8));
        assert_eq!(c.nack_lookup([8, 8], ms(500)).count(), 1);
    }

    #[test]
    fn reinsert_resets_limits_and_out_of_order_insert_works() {
        let t0 = Instant::now();
        let mut c = PacketCache::new(16, limits());
        c.insert(packet(10));
        c.insert(packet(12));
        c.insert(packet(11)); // late packet forwarded after 12
        assert_eq!(c.get(11), Some(&packet(11)));
        assert_eq!(c.get(10), Some(&packet(10)));
        // Too old to insert: older than the ring.
        c.insert(packet(12u16.wrapping_sub(20)));
        assert_eq!(c.get(12u16.wrapping_sub(20)), None);
        assert_eq!(c.nack_lookup([12], t0).count(), 1);
        assert_eq!(c.nack_lookup([12], t0).count(), 0);
        // A later lap replaces the slot and its counters.
        c.insert(packet(28));
        assert_eq!(c.get(12), None);
    }

    #[test]
    fn jump_invalidates_skipped_slots() {
        let mut c = PacketCache::new(8, limits());
        for s in 0..8u16 {
            c.insert(packet(s));
        }
        // Jump by 3: slots for 8, 9 (holding 0, 1) are not reused; 10 replaces 2.
        c.insert(packet(10));
        assert_eq!(c.get(8), None);
        assert_eq!(c.get(9), None);
        assert_eq!(c.get(3), Some(&packet(3)));
        // A jump bigger than the ring empties it.
        c.insert(packet(1000));
        assert_eq!(c.get(10), None);
        assert_eq!(c.get(1000), Some(&packet(1000)));
        assert_eq!(c.capacity(), 8);
        assert_eq!(PacketCache::new(500, limits()).capacity(), 512);
    }
}
