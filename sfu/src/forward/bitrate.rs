//! Per-layer received bitrate of a published track, and whether each layer is active.
//!
//! The layer selector needs to know what each simulcast layer costs and whether the publisher is
//! sending it at all (browsers stop the upper layers when their own uplink is poor or the CPU is
//! busy). Bytes are counted in ten 100 ms buckets, so the rate is over the last second and each
//! packet costs an addition; a layer with no packet for a second is inactive.

use std::time::{Duration, Instant};

/// Layers per published track (q, h, f).
pub const MAX_LAYERS: usize = 3;
const BUCKET_MS: u64 = 100;
const BUCKETS: usize = 10;
/// A layer without packets for this long is inactive.
pub const INACTIVE_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    id: u64,
    bytes: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct LayerWindow {
    buckets: [Bucket; BUCKETS],
    last_packet: Option<Instant>,
}

/// Bitrate and activity of one layer at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LayerStat {
    /// Bits per second over the last second.
    pub bitrate_bps: u64,
    /// A packet arrived within the last second.
    pub active: bool,
}

/// The meter for one published track. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct LayerBitrates {
    epoch: Option<Instant>,
    layers: [LayerWindow; MAX_LAYERS],
}

impl LayerBitrates {
    /// A meter that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    fn bucket_id(&self, now: Instant) -> u64 {
        let since = self
            .epoch
            .map_or(Duration::ZERO, |e| now.saturating_duration_since(e));
        (since.as_millis() / u128::from(BUCKET_MS)) as u64
    }

    /// Counts one received packet of `bytes` (RTP payload plus header, as the caller prefers,
    /// consistently) on `layer`. Unknown layers are ignored.
    pub fn on_packet(&mut self, layer: usize, bytes: usize, now: Instant) {
        if self.epoch.is_none() {
            self.epoch = Some(now);
        }
        let id = self.bucket_id(now);
        let Some(w) = self.layers.get_mut(layer) else {
            return;
        };
        if let Some(b) = w.buckets.get_mut((id % BUCKETS as u64) as usize) {
            if b.id != id {
                *b = Bucket { id, bytes: 0 };
            }
            b.bytes += bytes as u64;
        }
        if w.last_packet.is_none_or(|t| now > t) {
            w.last_packet = Some(now);
        }
    }

    /// Bits per second received on `layer` over the last second (ten buckets up to and
    /// including the current one).
    pub fn bitrate_bps(&self, layer: usize, now: Instant) -> u64 {
        let Some(w) = self.layers.get(layer) else {
            return 0;
        };
        let cur = self.bucket_id(now);
        let bytes: u64 = w
            .buckets
            .iter()
            .filter(|b| b.id <= cur && cur - b.id < BUCKETS as u64 && b.bytes > 0)
            .map(|b| b.bytes)
            .sum();
        // The window is BUCKETS * BUCKET_MS = 1 s long.
        bytes * 8
    }

    /// Whether `layer` received a packet within the last second.
    pub fn is_active(&self, layer: usize, now: Instant) -> bool {
        self.layers
            .get(layer)
            .and_then(|w| w.last_packet)
            .is_some_and(|t| now.saturating_duration_since(t) < INACTIVE_AFTER)
    }

    /// Bitrate and activity of every layer.
    pub fn snapshot(&self, now: Instant) -> [LayerStat; MAX_LAYERS] {
        std::array::from_fn(|l| LayerStat {
            bitrate_bps: self.bitrate_bps(l, now),
            active: self.is_active(l, now),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn steady_rate_is_measured_over_one_second() {
        let t0 = Instant::now();
        let mut m = LayerBitrates::new();
        // 1000-byte packets every 10 ms on layer 2 = 800 kbps; 250-byte on layer 0 = 200 kbps.
        for i in 0..300u64 {
            m.on_packet(2, 1000, ms(t0, i * 10));
            m.on_packet(0, 250, ms(t0, i * 10));
        }
        // At 2.999 s: buckets 20..=29, all complete.
        let now = ms(t0, 2999);
        assert_eq!(m.bitrate_bps(2, now), 800_000);
        assert_eq!(m.bitrate_bps(0, now), 200_000);
        assert_eq!(m.bitrate_bps(1, now), 0);
        let s = m.snapshot(now);
        assert!(s[2].active && s[0].active && !s[1].active);
    }

    #[test]
    fn rate_decays_and_layer_goes_inactive() {
        let t0 = Instant::now();
        let mut m = LayerBitrates::new();
        for i in 0..100u64 {
            m.on_packet(1, 500, ms(t0, i * 10));
        }
        assert!(m.is_active(1, ms(t0, 1989)));
        // Half a second after the last packet, half the window is empty.
        assert_eq!(m.bitrate_bps(1, ms(t0, 1499)), 200_000);
        assert!(!m.is_active(1, ms(t0, 1990)));
        assert_eq!(m.bitrate_bps(1, ms(t0, 2000)), 0);
    }

    #[test]
    fn stale_buckets_are_reset_on_reuse() {
        let t0 = Instant::now();
        let mut m = LayerBitrates::new();
        m.on_packet(0, 1000, t0);
        // Same ring slot, ten buckets later.
        m.on_packet(0, 10, ms(t0, 1000));
        assert_eq!(m.bitrate_bps(0, ms(t0, 1000)), 80);
    }

    #[test]
    fn unknown_layers_and_early_instants_are_harmless() {
        let t0 = Instant::now();
        let mut m = LayerBitrates::new();
        m.on_packet(5, 100, t0);
        assert_eq!(m.bitrate_bps(5, t0), 0);
        assert!(!m.is_active(5, t0));
        m.on_packet(0, 100, ms(t0, 500));
        // A `now` earlier than the first packet counts as the first bucket.
        m.on_packet(0, 100, t0);
        assert_eq!(m.bitrate_bps(0, t0), 800);
    }
}
