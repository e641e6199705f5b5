//! Reading an Opus packet's duration from its TOC byte (RFC 6716 §3.1), and making the empty
//! "please conceal" packets RFC 7845 §4.1 asks a muxer to put where packets were lost.

/// Samples per second of every Opus timestamp, whatever the coded bandwidth (RFC 7587 §4.1).
pub const OPUS_RATE: u32 = 48_000;

/// Longest legal Opus packet duration: 120 ms (RFC 6716 §3.2.5).
const MAX_PACKET_SAMPLES: u32 = 5_760;

/// Samples (at 48 kHz) of one frame of the TOC's configuration (RFC 6716 table 2).
pub fn frame_samples(toc: u8) -> u32 {
    let config = toc >> 3;
    match config {
        // SILK-only: 10, 20, 40, 60 ms.
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        // Hybrid: 10, 20 ms.
        12..=15 => [480, 960][usize::from(config % 2)],
        // CELT-only: 2.5, 5, 10, 20 ms.
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    }
}

/// Total samples (at 48 kHz) of an Opus packet, or `None` if it is not a valid packet (empty,
/// a code-3 packet without its frame count byte, zero frames, or longer than 120 ms).
pub fn packet_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(packet.get(1)? & 0x3f),
    };
    let total = frames * frame_samples(toc);
    (frames > 0 && total <= MAX_PACKET_SAMPLES).then_some(total)
}

/// Zero-length-frame packets covering `samples` (RFC 7845 §4.1): the TOC keeps the previous
/// packet's mode, bandwidth, channels and frame size so a decoder's concealment continues the
/// signal it was decoding; what is left over (less than one such frame, in 2.5 ms steps) uses
/// CELT fullband frames. Gaps that are not a multiple of 2.5 ms cannot come from loss or DTX,
/// so the sub-2.5 ms remainder is dropped (RFC 7845: "muxers need not handle other gap sizes").
pub fn plc_packets(previous_toc: u8, samples: u32) -> impl Iterator<Item = (u8, u32)> {
    let same = previous_toc & 0xfc;
    let per = frame_samples(same);
    let whole = samples / per;
    let mut rest = samples % per;
    let stereo = previous_toc & 0x04;
    let mut tail = Vec::new();
    // CELT fullband configs 31, 30, 29, 28 are 20, 10, 5, 2.5 ms.
    for (config, len) in [(31u8, 960u32), (30, 480), (29, 240), (28, 120)] {
        while rest >= len {
            tail.push(((config << 3) | stereo, len));
            rest -= len;
        }
    }
    std::iter::repeat_n((same, per), whole as usize).chain(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_the_toc_table() {
        // config 1 (SILK NB 20 ms), code 0.
        assert_eq!(packet_samples(&[1 << 3]), Some(960));
        // config 3 (SILK NB 60 ms).
        assert_eq!(packet_samples(&[3 << 3]), Some(2880));
        // config 13 (Hybrid SWB 20 ms), code 1: two frames.
        assert_eq!(packet_samples(&[(13 << 3) | 1, 0]), Some(1920));
        // config 16 (CELT NB 2.5 ms), code 3 with 4 frames.
        assert_eq!(packet_samples(&[(16 << 3) | 3, 4]), Some(480));
        // config 31 (CELT FB 20 ms), code 3 with 6 frames = 120 ms, the maximum.
        assert_eq!(packet_samples(&[(31 << 3) | 3, 6]), Some(5760));
        // 7 × 20 ms is too long; code 3 without a count byte; empty.
        assert_eq!(packet_samples(&[(31 << 3) | 3, 7]), None);
        assert_eq!(packet_samples(&[(31 << 3) | 3]), None);
        assert_eq!(packet_samples(&[]), None);
        assert_eq!(packet_samples(&[(31 << 3) | 3, 0]), None);
    }

    #[test]
    fn plc_packets_cover_the_gap_in_the_previous_shape() {
        let toc = (15 << 3) | 0x04 | 1; // hybrid FB 20 ms, stereo, code 1
        let out: Vec<_> = plc_packets(toc, 960 * 3 + 480 + 120).collect();
        assert_eq!(
            out,
            vec![
                ((15 << 3) | 0x04, 960),
                ((15 << 3) | 0x04, 960),
                ((15 << 3) | 0x04, 960),
                ((30 << 3) | 0x04, 480),
                ((28 << 3) | 0x04, 120),
            ]
        );
        for (t, n) in out {
            assert_eq!(packet_samples(&[t]), Some(n));
        }
    }
}
