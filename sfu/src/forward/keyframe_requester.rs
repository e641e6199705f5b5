//! Keyframe requests (PLI / FIR) toward a publisher, rate limited per simulcast layer.
//!
//! Every subscriber that loses a reference frame sends a PLI, and the SFU itself wants keyframes
//! on subscribe and on layer switches. Relaying each of them would make the publisher's encoder
//! send keyframe after keyframe, each several times larger than a delta frame, which is exactly
//! what a congested network does not need. So per published layer at most one request goes out
//! per interval (500 ms by default); requests inside the interval are coalesced into one that is
//! sent when the interval expires, unless a keyframe arrived meanwhile.
//!
//! A publisher that negotiated only `ccm fir` gets FIR (RFC 5104 §4.3.1), whose command sequence
//! number must change for each new request and stay the same for a repetition of the same
//! request; we keep our own counter per layer, independent of the subscribers' FIR numbers.

use std::time::{Duration, Instant};

/// Layers per published track (q, h, f).
pub const MAX_LAYERS: usize = 3;

/// Default minimum interval between two requests for one layer.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(500);

/// Which RTCP message the publisher understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyframeMethod {
    /// Picture Loss Indication (RFC 4585), the usual one.
    Pli,
    /// Full Intra Request (RFC 5104).
    Fir,
}

/// A request to send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyframeRequest {
    /// Send a PLI for this layer's SSRC.
    Pli {
        /// Layer index (0 = q, 1 = h, 2 = f).
        layer: usize,
    },
    /// Send a FIR for this layer's SSRC with this command sequence number.
    Fir {
        /// Layer index.
        layer: usize,
        /// FIR command sequence number.
        seq_nr: u8,
    },
}

#[derive(Debug, Clone, Copy, Default)]
struct LayerState {
    last_sent: Option<Instant>,
    pending: bool,
    fir_seq: u8,
}

/// The rate limiter for one published track. See the module documentation.
#[derive(Debug, Clone)]
pub struct KeyframeRequester {
    interval: Duration,
    method: KeyframeMethod,
    layers: [LayerState; MAX_LAYERS],
}

impl KeyframeRequester {
    /// A requester sending `method`, at most once per `interval` per layer.
    pub fn new(method: KeyframeMethod, interval: Duration) -> Self {
        KeyframeRequester {
            interval,
            method,
            layers: [LayerState::default(); MAX_LAYERS],
        }
    }

    fn make(&mut self, layer: usize, now: Instant) -> Option<KeyframeRequest> {
        let method = self.method;
        let st = self.layers.get_mut(layer)?;
        st.last_sent = Some(now);
        st.pending = false;
        Some(match method {
            KeyframeMethod::Pli => KeyframeRequest::Pli { layer },
            KeyframeMethod::Fir => {
                st.fir_seq = st.fir_seq.wrapping_add(1);
                KeyframeRequest::Fir {
                    layer,
                    seq_nr: st.fir_seq,
                }
            }
        })
    }

    fn due(&self, st: &LayerState, now: Instant) -> bool {
        st.last_sent
            .is_none_or(|t| now.saturating_duration_since(t) >= self.interval)
    }

    /// A keyframe of `layer` is wanted (a subscriber's PLI/FIR, a subscribe, a layer switch).
    /// Returns the request to send now, or `None` when it was coalesced into a later one (see
    /// [`poll`](Self::poll)). Unknown layers are ignored.
    pub fn request(&mut self, layer: usize, now: Instant) -> Option<KeyframeRequest> {
        let st = *self.layers.get(layer)?;
        if self.due(&st, now) {
            return self.make(layer, now);
        }
        if let Some(s) = self.layers.get_mut(layer) {
            s.pending = true;
        }
        None
    }

    /// A keyframe arrived on `layer`: a coalesced request is no longer needed.
    pub fn on_keyframe(&mut self, layer: usize) {
        if let Some(s) = self.layers.get_mut(layer) {
            s.pending = false;
        }
    }

    /// The coalesced requests whose interval has expired, to send now. Call when
    /// [`poll_timeout`](Self::poll_timeout) is reached (or on any tick).
    pub fn poll(&mut self, now: Instant) -> impl Iterator<Item = KeyframeRequest> + '_ {
        (0..MAX_LAYERS).filter_map(move |layer| {
            let st = *self.layers.get(layer)?;
            if st.pending && self.due(&st, now) {
                self.make(layer, now)
            } else {
                None
            }
        })
    }

    /// When the next coalesced request becomes due, if any is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.layers
            .iter()
            .filter(|s| s.pending)
            .filter_map(|s| s.last_sent.map(|t| t + self.interval))
            .min()
    }
}

impl Default for KeyframeRequester {
    fn default() -> Self {
        Self::new(KeyframeMethod::Pli, DEFAULT_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn coalesces_within_interval_and_sends_one_when_it_expires() {
        let t0 = Instant::now();
        let mut k = KeyframeRequester::default();
        assert_eq!(k.request(2, t0), Some(KeyframeRequest::Pli { layer: 2 }));
        assert_eq!(k.poll_timeout(), None);
        // Three more subscribers ask within the interval: nothing goes out yet.
        for n in [10, 100, 499] {
            assert_eq!(k.request(2, ms(t0, n)), None);
        }
        assert_eq!(k.poll_timeout(), Some(ms(t0, 500)));
        assert_eq!(k.poll(ms(t0, 499)).count(), 0);
        let out: Vec<_> = k.poll(ms(t0, 500)).collect();
        assert_eq!(out, [KeyframeRequest::Pli { layer: 2 }]);
        // Sent once only.
        assert_eq!(k.poll(ms(t0, 2000)).count(), 0);
        assert_eq!(k.poll_timeout(), None);
    }

    #[test]
    fn keyframe_arrival_cancels_pending() {
        let t0 = Instant::now();
        let mut k = KeyframeRequester::default();
        assert!(k.request(0, t0).is_some());
        assert!(k.request(0, ms(t0, 100)).is_none());
        k.on_keyframe(0);
        assert_eq!(k.poll(ms(t0, 600)).count(), 0);
        assert_eq!(k.poll_timeout(), None);
    }

    #[test]
    fn layers_are_limited_independently() {
        let t0 = Instant::now();
        let mut k = KeyframeRequester::default();
        assert!(k.request(0, t0).is_some());
        assert!(k.request(1, t0).is_some());
        assert!(k.request(0, ms(t0, 1)).is_none());
        assert!(k.request(2, ms(t0, 1)).is_some());
        // After the interval a new request goes straight out.
        assert!(k.request(1, ms(t0, 500)).is_some());
        // Unknown layers are ignored, not a panic.
        assert_eq!(k.request(7, t0), None);
        k.on_keyframe(9);
    }

    #[test]
    fn fir_sequence_numbers_increment_per_request() {
        let t0 = Instant::now();
        let mut k = KeyframeRequester::new(KeyframeMethod::Fir, DEFAULT_INTERVAL);
        assert_eq!(
            k.request(1, t0),
            Some(KeyframeRequest::Fir {
                layer: 1,
                seq_nr: 1
            })
        );
        assert_eq!(k.request(1, ms(t0, 10)), None);
        let out: Vec<_> = k.poll(ms(t0, 500)).collect();
        assert_eq!(
            out,
            [KeyframeRequest::Fir {
                layer: 1,
                seq_nr: 2
            }]
        );
        // Another layer has its own counter; the counter wraps.
        assert_eq!(
            k.request(0, t0),
            Some(KeyframeRequest::Fir {
                layer: 0,
                seq_nr: 1
            })
        );
        let mut last = 0;
        for i in 0..300u64 {
            if let Some(KeyframeRequest::Fir { seq_nr, .. }) = k.request(2, ms(t0, i * 500)) {
                last = seq_nr;
            }
        }
        assert_eq!(last, (300 % 256) as u8);
    }
}
