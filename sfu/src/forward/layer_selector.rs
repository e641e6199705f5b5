//! Which simulcast spatial layer a subscriber receives (LiveKit's "video layer selector").
//!
//! Inputs: the subscriber's bandwidth estimate (REMB or TWCC; `None` while unknown), the render
//! size its client asked for (0×0 = paused), and the publisher's layers with their measured
//! bitrates and resolutions. Rules:
//!
//! - No layer when paused (render size 0 in either dimension) or no layer is active.
//! - Size cap: the smallest active layer that covers the render size in both dimensions; a
//!   render size between two layers thus gets the upper one (one step up), never more. If no
//!   layer covers it, the largest.
//! - Bandwidth: the highest layer up to the cap whose bitrate fits the estimate with 15 %
//!   headroom; if none fits, the lowest active layer (video degrades, it does not stop).
//! - Hysteresis: down at once (the network is suffering now); up only after the estimate has
//!   allowed it continuously for 3 s (a short burst of a good estimate is not worth a keyframe
//!   and the risk of oscillating). With an unknown estimate, start at the lowest layer and climb
//!   one layer per 3 s up to the cap.
//!
//! Video only: audio tracks have no layers and never pass through here, so audio is never
//! dropped or degraded to make room for video.

use std::time::{Duration, Instant};

/// Layers per published track: 0 = q (quarter), 1 = h (half), 2 = f (full).
pub const MAX_LAYERS: usize = 3;

/// How long the estimate must allow a higher layer before moving up.
pub const UP_DELAY: Duration = Duration::from_secs(3);

/// Share of the estimate a layer may use (the rest is headroom for audio, RTX and estimate error).
const USABLE_PERCENT: u64 = 85;

/// The layer index for a simulcast rid ("q", "h", "f"; Chrome's default names).
pub fn layer_from_rid(rid: &str) -> Option<usize> {
    match rid {
        "q" => Some(0),
        "h" => Some(1),
        "f" => Some(2),
        _ => None,
    }
}

/// The resolution of `layer` given the full resolution: f = full, h = half, q = quarter.
pub fn layer_resolution(full_width: u32, full_height: u32, layer: usize) -> (u32, u32) {
    let div = match layer {
        0 => 4,
        1 => 2,
        _ => 1,
    };
    (full_width / div, full_height / div)
}

/// What the selector knows about one layer of the publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LayerInfo {
    /// The publisher is sending it (see `bitrate::LayerBitrates::is_active`).
    pub active: bool,
    /// Measured bitrate in bits per second.
    pub bitrate_bps: u64,
    /// Resolution width in pixels.
    pub width: u32,
    /// Resolution height in pixels.
    pub height: u32,
}

/// The layers of a published track, indexed by layer; `None` for a layer not published.
pub type Layers = [Option<LayerInfo>; MAX_LAYERS];

fn active(layers: &Layers) -> impl Iterator<Item = (usize, LayerInfo)> + '_ {
    layers
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.filter(|l| l.active).map(|l| (i, l)))
}

/// The highest layer the render size justifies (see the module documentation).
fn size_cap(render: (u32, u32), layers: &Layers) -> Option<usize> {
    let covering = active(layers)
        .find(|(_, l)| l.width >= render.0 && l.height >= render.1)
        .map(|(i, _)| i);
    covering.or_else(|| active(layers).last().map(|(i, _)| i))
}

fn fits(bitrate_bps: u64, estimate_bps: u64) -> bool {
    u128::from(bitrate_bps) * 100 <= u128::from(estimate_bps) * u128::from(USABLE_PERCENT)
}

/// The layer the subscriber should get right now, without hysteresis. `None` = nothing to send
/// (paused or no active layer).
pub fn ideal_layer(
    estimate_bps: Option<u64>,
    render: (u32, u32),
    layers: &Layers,
) -> Option<usize> {
    if render.0 == 0 || render.1 == 0 {
        return None;
    }
    let cap = size_cap(render, layers)?;
    let lowest = active(layers).next().map(|(i, _)| i)?;
    let Some(estimate) = estimate_bps else {
        return Some(cap);
    };
    let best = active(layers)
        .filter(|(i, l)| *i <= cap && fits(l.bitrate_bps, estimate))
        .map(|(i, _)| i)
        .last();
    Some(best.unwrap_or(lowest))
}

/// Per-subscriber (per down-track) layer choice with hysteresis.
#[derive(Debug, Clone, Default)]
pub struct LayerSelector {
    current: Option<usize>,
    /// Since when a higher layer has been allowed, and the lowest layer allowed since then.
    up: Option<(Instant, usize)>,
}

impl LayerSelector {
    /// A selector that has chosen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The layer currently chosen.
    pub fn current(&self) -> Option<usize> {
        self.current
    }

    /// Chooses the layer for now. Call on each estimate, render size or layer change, and
    /// periodically (e.g. every 500 ms) so pending up-switches happen.
    pub fn select(
        &mut self,
        now: Instant,
        estimate_bps: Option<u64>,
        render: (u32, u32),
        layers: &Layers,
    ) -> Option<usize> {
        let Some(ideal) = ideal_layer(estimate_bps, render, layers) else {
            self.current = None;
            self.up = None;
            return None;
        };
        let lowest = active(layers).next().map(|(i, _)| i);
        let current_active = self
            .current
            .is_some_and(|c| layers.get(c).copied().flatten().is_some_and(|l| l.active));
        let next = match self.current {
            // Start: an unknown estimate starts low (and climbs); a known one starts where it fits.
            None if estimate_bps.is_none() => lowest.unwrap_or(ideal),
            None => ideal,
            // The layer we send vanished: nothing to keep, go where we should be.
            Some(_) if !current_active => ideal,
            // Down (or staying): at once.
            Some(c) if ideal <= c => ideal,
            Some(c) => {
                // Up: only once a higher layer has been allowed for UP_DELAY, and then only to
                // the lowest layer allowed during that time.
                let (since, floor) = self.up.map_or((now, ideal), |(t, f)| (t, f.min(ideal)));
                self.up = Some((since, floor));
                if now.saturating_duration_since(since) < UP_DELAY {
                    c
                } else if estimate_bps.is_some() {
                    floor
                } else {
                    // Unknown estimate: climb through the active layers one at a time.
                    active(layers)
                        .map(|(i, _)| i)
                        .find(|&i| i > c)
                        .map_or(c, |i| i.min(floor))
                }
            }
        };
        // Keep (or start) the up timer only while a higher layer is still wanted; it restarts at
        // each step so every step up waits UP_DELAY.
        let keeps_waiting = self.current == Some(next) && self.up.is_some();
        self.up = if ideal <= next {
            None
        } else if keeps_waiting {
            self.up
        } else {
            Some((now, ideal))
        };
        self.current = Some(next);
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: (u32, u32) = (1280, 720);

    fn layer(l: usize, kbps: u64) -> Option<LayerInfo> {
        let (width, height) = layer_resolution(FULL.0, FULL.1, l);
        Some(LayerInfo {
            active: true,
            bitrate_bps: kbps * 1000,
            width,
            height,
        })
    }

    /// q = 320x180 @150k, h = 640x360 @500k, f = 1280x720 @1500k.
    fn three() -> Layers {
        [layer(0, 150), layer(1, 500), layer(2, 1500)]
    }

    #[test]
    fn rid_and_resolution() {
        assert_eq!(layer_from_rid("q"), Some(0));
        assert_eq!(layer_from_rid("h"), Some(1));
        assert_eq!(layer_from_rid("f"), Some(2));
        assert_eq!(layer_from_rid("x"), None);
        assert_eq!(layer_resolution(1280, 720, 0), (320, 180));
        assert_eq!(layer_resolution(1280, 720, 1), (640, 360));
        assert_eq!(layer_resolution(1280, 720, 2), (1280, 720));
    }

    #[test]
    fn ideal_layer_table() {
        let mut q_only_h_inactive = three();
        if let Some(l) = q_only_h_inactive[1].as_mut() {
            l.active = false;
        }
        let none_active: Layers = [None, None, None];
        let single_f: Layers = [None, None, layer(2, 800)];
        type Case = (&'static str, Option<u64>, (u32, u32), Layers, Option<usize>);
        let cases: &[Case] = &[
            ("paused", Some(10_000_000), (0, 0), three(), None),
            ("paused width", Some(10_000_000), (0, 200), three(), None),
            (
                "nothing active",
                Some(10_000_000),
                (1280, 720),
                none_active,
                None,
            ),
            (
                "big window, plenty",
                Some(10_000_000),
                (1280, 720),
                three(),
                Some(2),
            ),
            (
                "bigger than full",
                Some(10_000_000),
                (1920, 1080),
                three(),
                Some(2),
            ),
            ("thumbnail", Some(10_000_000), (320, 180), three(), Some(0)),
            ("tiny", Some(10_000_000), (100, 60), three(), Some(0)),
            (
                "between q and h: one step up",
                Some(10_000_000),
                (480, 270),
                three(),
                Some(1),
            ),
            (
                "just above h",
                Some(10_000_000),
                (641, 360),
                three(),
                Some(2),
            ),
            ("h window", Some(10_000_000), (640, 360), three(), Some(1)),
            (
                "estimate fits h only",
                Some(1_000_000),
                (1280, 720),
                three(),
                Some(1),
            ),
            // 1500k needs 1765k with headroom.
            (
                "f just does not fit",
                Some(1_760_000),
                (1280, 720),
                three(),
                Some(1),
            ),
            (
                "f just fits",
                Some(1_765_000),
                (1280, 720),
                three(),
                Some(2),
            ),
            (
                "estimate fits q only",
                Some(400_000),
                (1280, 720),
                three(),
                Some(0),
            ),
            (
                "nothing fits: lowest",
                Some(50_000),
                (1280, 720),
                three(),
                Some(0),
            ),
            (
                "unknown estimate: size cap",
                None,
                (640, 360),
                three(),
                Some(1),
            ),
            (
                "h inactive: skip it",
                Some(1_000_000),
                (1280, 720),
                q_only_h_inactive,
                Some(0),
            ),
            (
                "h inactive, small window",
                Some(10_000_000),
                (480, 270),
                q_only_h_inactive,
                Some(2),
            ),
            ("single layer", Some(100_000), (320, 180), single_f, Some(2)),
        ];
        for (name, est, render, layers, want) in cases {
            assert_eq!(ideal_layer(*est, *render, layers), *want, "{name}");
        }
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn goes_down_at_once_and_up_after_three_seconds() {
        let t0 = Instant::now();
        let l = three();
        let mut s = LayerSelector::new();
        let big = (1280, 720);
        assert_eq!(s.select(t0, Some(5_000_000), big, &l), Some(2));
        // Congestion: down at once.
        assert_eq!(s.select(at(t0, 100), Some(300_000), big, &l), Some(0));
        // Recovers: stays low for 3 s.
        assert_eq!(s.select(at(t0, 200), Some(5_000_000), big, &l), Some(0));
        assert_eq!(s.select(at(t0, 3100), Some(5_000_000), big, &l), Some(0));
        assert_eq!(s.select(at(t0, 3200), Some(5_000_000), big, &l), Some(2));
    }

    #[test]
    fn up_timer_resets_when_estimate_dips() {
        let t0 = Instant::now();
        let l = three();
        let mut s = LayerSelector::new();
        let big = (1280, 720);
        assert_eq!(s.select(t0, Some(300_000), big, &l), Some(0));
        assert_eq!(s.select(at(t0, 1000), Some(5_000_000), big, &l), Some(0));
        // Dips back to q level: the pending up-switch is cancelled.
        assert_eq!(s.select(at(t0, 2000), Some(300_000), big, &l), Some(0));
        assert_eq!(s.select(at(t0, 3000), Some(5_000_000), big, &l), Some(0));
        assert_eq!(s.select(at(t0, 5999), Some(5_000_000), big, &l), Some(0));
        assert_eq!(s.select(at(t0, 6000), Some(5_000_000), big, &l), Some(2));
    }

    #[test]
    fn up_goes_to_lowest_allowed_during_the_wait() {
        let t0 = Instant::now();
        let l = three();
        let mut s = LayerSelector::new();
        let big = (1280, 720);
        assert_eq!(s.select(t0, Some(300_000), big, &l), Some(0));
        assert_eq!(s.select(at(t0, 0), Some(5_000_000), big, &l), Some(0));
        // During the wait the estimate allowed only h for a while.
        assert_eq!(s.select(at(t0, 1000), Some(1_000_000), big, &l), Some(0));
        assert_eq!(s.select(at(t0, 3000), Some(5_000_000), big, &l), Some(1));
        // Then f after another 3 s.
        assert_eq!(s.select(at(t0, 5999), Some(5_000_000), big, &l), Some(1));
        assert_eq!(s.select(at(t0, 6000), Some(5_000_000), big, &l), Some(2));
    }

    #[test]
    fn unknown_estimate_starts_low_and_climbs_one_layer_at_a_time() {
        let t0 = Instant::now();
        let l = three();
        let mut s = LayerSelector::new();
        let big = (1280, 720);
        assert_eq!(s.select(t0, None, big, &l), Some(0));
        assert_eq!(s.select(at(t0, 2999), None, big, &l), Some(0));
        assert_eq!(s.select(at(t0, 3000), None, big, &l), Some(1));
        assert_eq!(s.select(at(t0, 3500), None, big, &l), Some(1));
        assert_eq!(s.select(at(t0, 6500), None, big, &l), Some(2));
        // Render size shrinks: down at once.
        assert_eq!(s.select(at(t0, 6600), None, (320, 180), &l), Some(0));
    }

    #[test]
    fn pause_and_vanishing_layer() {
        let t0 = Instant::now();
        let mut l = three();
        let mut s = LayerSelector::new();
        assert_eq!(s.select(t0, Some(5_000_000), (1280, 720), &l), Some(2));
        assert_eq!(s.select(at(t0, 10), Some(5_000_000), (0, 0), &l), None);
        assert_eq!(s.current(), None);
        assert_eq!(
            s.select(at(t0, 20), Some(5_000_000), (1280, 720), &l),
            Some(2)
        );
        // The publisher stops f (CPU limited): h at once.
        if let Some(f) = l[2].as_mut() {
            f.active = false;
        }
        assert_eq!(
            s.select(at(t0, 30), Some(5_000_000), (1280, 720), &l),
            Some(1)
        );
        // q and h stop too, f comes back: f at once, nothing else to send.
        l = [None, None, layer(2, 1500)];
        assert_eq!(
            s.select(at(t0, 40), Some(100_000), (1280, 720), &l),
            Some(2)
        );
    }
}
