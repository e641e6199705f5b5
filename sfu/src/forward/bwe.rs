//! A subscriber's bandwidth estimate: the receiver's own estimate (REMB, or a TWCC-based delay
//! estimate computed elsewhere) combined with a simple loss-based one from receiver reports.
//!
//! REMB (draft-alvestrand-rmcat-remb) is an application-layer feedback message (PSFB, FMT=15):
//!
//! ```text
//!  0                   1                   2                   3
//! |V=2|P| FMT=15  |   PT=206      |             length            |
//! |                  SSRC of packet sender                        |
//! |                  SSRC of media source (always 0)              |
//! |  Unique identifier 'R' 'E' 'M' 'B'                            |
//! |  Num SSRC     | BR Exp    |  BR Mantissa                      |
//! |   SSRC feedback ... (Num SSRC times)                          |
//! ```
//!
//! The bitrate is `mantissa << exp` bits per second.
//!
//! The loss-based estimate follows the rule of thumb of GCC's loss controller: more than 10 %
//! loss → 15 % down; less than 2 % → 8 % up; in between → hold. It never rises above the
//! receiver's own estimate when there is one, so that a loss event starts cutting from the rate
//! actually in use rather than from a figure that grew unchecked while the other estimate ruled.
//! The estimate used is the minimum of the two when both are present.

use std::time::{Duration, Instant};
use thiserror::Error;

/// Why a REMB message could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RembError {
    /// Fewer bytes than the fixed part or the announced SSRC list.
    #[error("REMB message truncated")]
    Truncated,
    /// Not an RTCP v2 PSFB FMT=15 packet.
    #[error("not a payload-specific feedback packet with FMT=15")]
    NotAfb,
    /// The FCI does not start with "REMB".
    #[error("application feedback is not REMB")]
    NotRemb,
}

/// A parsed REMB message, borrowing the SSRC list from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remb<'a> {
    /// The estimated maximum bitrate in bits per second (saturated at `u64::MAX`).
    pub bitrate_bps: u64,
    ssrc_bytes: &'a [u8],
}

impl Remb<'_> {
    /// The media SSRCs the estimate applies to.
    pub fn ssrcs(&self) -> impl Iterator<Item = u32> + '_ {
        self.ssrc_bytes
            .chunks_exact(4)
            .map(|c| <[u8; 4]>::try_from(c).map_or(0, u32::from_be_bytes))
    }
}

const RTCP_PSFB: u8 = 206;
const FMT_AFB: u8 = 15;

/// Parses the REMB FCI (from the "REMB" identifier on).
pub fn parse_remb_fci(fci: &[u8]) -> Result<Remb<'_>, RembError> {
    let [b0, b1, b2, b3, num, e, m1, m2, rest @ ..] = fci else {
        return Err(if fci.len() >= 4 && !fci.starts_with(b"REMB") {
            RembError::NotRemb
        } else {
            RembError::Truncated
        });
    };
    if [*b0, *b1, *b2, *b3] != *b"REMB" {
        return Err(RembError::NotRemb);
    }
    let exp = u32::from(e >> 2);
    let mantissa = (u64::from(e & 0x03) << 16) | (u64::from(*m1) << 8) | u64::from(*m2);
    // 18-bit mantissa shifted by up to 63: saturate rather than wrap.
    let bitrate_bps = if mantissa == 0 {
        0
    } else if exp > mantissa.leading_zeros() {
        u64::MAX
    } else {
        mantissa << exp
    };
    let ssrc_bytes = rest
        .get(..usize::from(*num) * 4)
        .ok_or(RembError::Truncated)?;
    Ok(Remb {
        bitrate_bps,
        ssrc_bytes,
    })
}

/// Parses one whole RTCP REMB packet (header included). Use for a packet split out of a
/// compound RTCP datagram.
pub fn parse_remb_packet(rtcp: &[u8]) -> Result<Remb<'_>, RembError> {
    let [first, pt, len_hi, len_lo, ..] = rtcp else {
        return Err(RembError::Truncated);
    };
    if first >> 6 != 2 || first & 0x1F != FMT_AFB || *pt != RTCP_PSFB {
        return Err(RembError::NotAfb);
    }
    let words = usize::from(u16::from_be_bytes([*len_hi, *len_lo]));
    let packet = rtcp.get(..(words + 1) * 4).ok_or(RembError::Truncated)?;
    // Skip the header and the two SSRCs.
    parse_remb_fci(packet.get(12..).ok_or(RembError::Truncated)?)
}

/// Tuning for the loss-based estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LossConfig {
    /// Start value when no receiver estimate is known yet.
    pub initial_bps: u64,
    /// Floor: enough for the lowest video layer.
    pub min_bps: u64,
    /// Ceiling.
    pub max_bps: u64,
    /// Reports closer together than this are ignored: one RTCP compound often carries several
    /// report blocks, which must not compound into several cuts.
    pub min_update_interval: Duration,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            initial_bps: 1_000_000,
            min_bps: 100_000,
            max_bps: 50_000_000,
            min_update_interval: Duration::from_millis(200),
        }
    }
}

/// The bandwidth estimate of one subscriber. See the module documentation.
#[derive(Debug, Clone)]
pub struct SubscriberBwe {
    cfg: LossConfig,
    receiver_bps: Option<u64>,
    loss_bps: Option<u64>,
    last_loss_update: Option<Instant>,
}

impl SubscriberBwe {
    /// An estimator that knows nothing yet.
    pub fn new(cfg: LossConfig) -> Self {
        SubscriberBwe {
            cfg,
            receiver_bps: None,
            loss_bps: None,
            last_loss_update: None,
        }
    }

    /// A REMB arrived (see [`parse_remb_packet`]).
    pub fn on_remb(&mut self, bitrate_bps: u64) {
        self.on_receiver_estimate(bitrate_bps);
    }

    /// A delay-based estimate from the subscriber's TWCC feedback (computed by the caller's
    /// congestion controller). Takes the same place as REMB: the latest one wins.
    pub fn on_receiver_estimate(&mut self, bitrate_bps: u64) {
        self.receiver_bps = Some(bitrate_bps);
        if let Some(l) = self.loss_bps.as_mut() {
            *l = (*l).min(bitrate_bps.max(self.cfg.min_bps));
        }
    }

    /// A receiver report block about what we sent: `fraction_lost` as in RFC 3550 (lost / 256
    /// since the previous report).
    pub fn on_receiver_report(&mut self, fraction_lost: u8, now: Instant) {
        if self
            .last_loss_update
            .is_some_and(|t| now.saturating_duration_since(t) < self.cfg.min_update_interval)
        {
            return;
        }
        self.last_loss_update = Some(now);
        let base = self
            .loss_bps
            .or(self.receiver_bps)
            .unwrap_or(self.cfg.initial_bps);
        let lost_percent_x256 = u64::from(fraction_lost) * 100;
        let next = if lost_percent_x256 > 10 * 256 {
            base / 100 * 85 + base % 100 * 85 / 100
        } else if lost_percent_x256 < 2 * 256 {
            let up = base.saturating_add(base / 100 * 8 + base % 100 * 8 / 100);
            // Not above the receiver's own estimate (see the module documentation).
            self.receiver_bps.map_or(up, |r| up.min(r.max(base)))
        } else {
            base
        };
        self.loss_bps = Some(next.clamp(self.cfg.min_bps, self.cfg.max_bps));
    }

    /// The loss-based estimate, once a receiver report arrived.
    pub fn loss_based(&self) -> Option<u64> {
        self.loss_bps
    }

    /// The receiver's own estimate (REMB/TWCC), if any.
    pub fn receiver_based(&self) -> Option<u64> {
        self.receiver_bps
    }

    /// The estimate to allocate by: the minimum of the two when both are known, `None` while
    /// neither is.
    pub fn estimate(&self) -> Option<u64> {
        match (self.receiver_bps, self.loss_bps) {
            (Some(r), Some(l)) => Some(r.min(l)),
            (r, l) => r.or(l),
        }
    }
}

impl Default for SubscriberBwe {
    fn default() -> Self {
        Self::new(LossConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A REMB Chrome sent while receiving a ~9 Mbps stream (also used in pion/rtcp's tests).
    const CHROME_REMB: [u8; 24] = [
        143, 206, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0, 82, 69, 77, 66, 1, 26, 32, 223, 72, 116, 237, 22,
    ];

    #[test]
    fn parses_real_remb() {
        let r = parse_remb_packet(&CHROME_REMB).unwrap();
        assert_eq!(r.bitrate_bps, 8_927_168);
        assert_eq!(r.ssrcs().collect::<Vec<_>>(), [1_215_622_422]);
        let f = parse_remb_fci(&CHROME_REMB[12..]).unwrap();
        assert_eq!(f, r);
    }

    #[test]
    fn remb_fci_table() {
        type Case = (&'static str, Vec<u8>, Result<(u64, Vec<u32>), RembError>);
        let fci = |num: u8, e: u8, m1: u8, m2: u8, ssrcs: &[u32]| {
            let mut v = b"REMB".to_vec();
            v.extend([num, e, m1, m2]);
            for s in ssrcs {
                v.extend(s.to_be_bytes());
            }
            v
        };
        let cases: Vec<Case> = vec![
            ("zero", fci(0, 0, 0, 0, &[]), Ok((0, vec![]))),
            ("exp 0", fci(1, 0x00, 0x03, 0xE8, &[7]), Ok((1000, vec![7]))),
            // mantissa 0x3FFFF (all 18 bits), exp 4.
            (
                "max mantissa",
                fci(0, 0x13, 0xFF, 0xFF, &[]),
                Ok((0x3FFFF << 4, vec![])),
            ),
            (
                "two ssrcs",
                fci(2, 0x04, 0x00, 0x01, &[1, 2]),
                Ok((2, vec![1, 2])),
            ),
            (
                "exp 63 fits for mantissa 1",
                fci(0, 0xFC, 0x00, 0x01, &[]),
                Ok((1 << 63, vec![])),
            ),
            (
                "exp 63 saturates",
                fci(0, 0xFC, 0x00, 0x02, &[]),
                Ok((u64::MAX, vec![])),
            ),
            (
                "ssrc list short",
                fci(2, 0, 0, 1, &[1]),
                Err(RembError::Truncated),
            ),
            (
                "fixed part short",
                b"REMB\x01\x00".to_vec(),
                Err(RembError::Truncated),
            ),
            (
                "not remb",
                b"ABCD\x00\x00\x00\x01".to_vec(),
                Err(RembError::NotRemb),
            ),
            ("not remb short", b"ABCD".to_vec(), Err(RembError::NotRemb)),
            ("empty", vec![], Err(RembError::Truncated)),
        ];
        for (name, bytes, want) in cases {
            let got = parse_remb_fci(&bytes).map(|r| (r.bitrate_bps, r.ssrcs().collect()));
            assert_eq!(got, want, "{name}");
        }
        // exp 46 with an 18-bit mantissa is exactly at the edge: 2^17 << 46 = 2^63 fits.
        assert_eq!(
            parse_remb_fci(&fci(0, 46 << 2 | 0x02, 0, 0, &[])).map(|r| r.bitrate_bps),
            Ok(1 << 63)
        );
        assert_eq!(
            parse_remb_fci(&fci(0, 47 << 2 | 0x02, 0, 0, &[])).map(|r| r.bitrate_bps),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn remb_packet_header_checks() {
        let mut not_psfb = CHROME_REMB;
        not_psfb[1] = 205;
        assert_eq!(parse_remb_packet(&not_psfb), Err(RembError::NotAfb));
        let mut pli = CHROME_REMB;
        pli[0] = 0x81;
        assert_eq!(parse_remb_packet(&pli), Err(RembError::NotAfb));
        assert_eq!(
            parse_remb_packet(&CHROME_REMB[..20]),
            Err(RembError::Truncated)
        );
        assert_eq!(parse_remb_packet(&[0x8F]), Err(RembError::Truncated));
        // Length says 3 words: too short to hold the FCI.
        let mut short_len = CHROME_REMB;
        short_len[3] = 2;
        assert_eq!(parse_remb_packet(&short_len), Err(RembError::Truncated));
        for n in 0..CHROME_REMB.len() {
            let _ = parse_remb_packet(&CHROME_REMB[..n]);
        }
    }

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn loss_based_steps() {
        let t0 = Instant::now();
        let mut b = SubscriberBwe::default();
        assert_eq!(b.estimate(), None);
        // (fraction_lost, expected estimate after it), one report per second, from 1 Mbps.
        let steps: &[(u8, u64)] = &[
            (0, 1_080_000),  // < 2 %: +8 %
            (5, 1_166_400),  // 5/256 = 1.95 %: +8 %
            (6, 1_166_400),  // 2.3 %: hold
            (25, 1_166_400), // 9.8 %: hold
            (26, 991_440),   // 10.2 %: -15 %
            (255, 842_724),  // -15 %
        ];
        for (i, (lost, want)) in steps.iter().enumerate() {
            b.on_receiver_report(*lost, ms(t0, i as u64 * 1000));
            assert_eq!(b.estimate(), Some(*want), "step {i}: lost {lost}");
        }
        // A second report block within 200 ms is ignored.
        b.on_receiver_report(255, ms(t0, 5100));
        assert_eq!(b.estimate(), Some(842_724));
        // Never under the floor.
        for i in 0..100 {
            b.on_receiver_report(255, ms(t0, 10_000 + i * 1000));
        }
        assert_eq!(b.estimate(), Some(100_000));
    }

    #[test]
    fn combined_is_the_minimum_and_loss_follows_remb() {
        let t0 = Instant::now();
        let mut b = SubscriberBwe::default();
        b.on_remb(2_000_000);
        assert_eq!(b.estimate(), Some(2_000_000));
        // First RR starts the loss-based estimate from the receiver's; no loss cannot exceed it.
        b.on_receiver_report(0, t0);
        assert_eq!(b.loss_based(), Some(2_000_000));
        assert_eq!(b.estimate(), Some(2_000_000));
        // Heavy loss: loss-based rules.
        b.on_receiver_report(64, ms(t0, 1000));
        assert_eq!(b.estimate(), Some(1_700_000));
        // REMB drops below: REMB rules and the loss estimate follows it down.
        b.on_remb(1_000_000);
        assert_eq!(b.estimate(), Some(1_000_000));
        assert_eq!(b.loss_based(), Some(1_000_000));
        // REMB rises; loss-based climbs 8 % per clean report up to it.
        b.on_remb(3_000_000);
        assert_eq!(b.estimate(), Some(1_000_000));
        b.on_receiver_report(0, ms(t0, 2000));
        assert_eq!(b.estimate(), Some(1_080_000));
        for i in 0..30 {
            b.on_receiver_report(0, ms(t0, 3000 + i * 1000));
        }
        assert_eq!(b.estimate(), Some(3_000_000));
        assert_eq!(b.receiver_based(), Some(3_000_000));
    }
}
