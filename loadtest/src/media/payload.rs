//! The synthetic media the simulated publishers send, and reading it back on the subscriber side.
//!
//! Video packets are valid VP8 RTP payloads (RFC 7741): a payload descriptor with a 15-bit
//! picture id, and on the first packet of a frame a VP8 frame header (key frames carry the start
//! code and the layer's resolution, which the SFU reads). The send-time stamp goes *after* that
//! header, where encoded frame data would be, so a server that parses VP8 sees a well-formed
//! frame. Opus packets are a TOC byte followed by the stamp.

/// Marks the stamp, so a payload we did not write (or one a server rewrote) is not misread.
const MAGIC: [u8; 4] = *b"PLT1";
/// Magic plus a 64-bit microsecond clock.
pub const STAMP_LEN: usize = MAGIC.len() + 8;

/// Opus TOC byte: configuration 31 (CELT fullband, 20 ms), mono, one frame.
const OPUS_TOC: u8 = 0xF8;

/// Writes `[descriptor][frame header if first][stamp][filler]` into `out` (cleared first),
/// `len` bytes in all (at least the headers and stamp).
#[allow(clippy::too_many_arguments)]
pub fn vp8_packet(
    out: &mut Vec<u8>,
    picture_id: u16,
    first: bool,
    keyframe: bool,
    size: (u16, u16),
    stamp_us: u64,
    len: usize,
    filler: u8,
) {
    out.clear();
    // X=1 (extension byte follows), S=1 on the first packet of the frame, partition 0.
    out.push(if first { 0x90 } else { 0x80 });
    // I=1: a picture id follows, in its 15-bit form (M=1).
    out.push(0x80);
    out.push(0x80 | ((picture_id >> 8) as u8 & 0x7f));
    out.push(picture_id as u8);
    if first {
        // Frame tag: P (inverse key frame flag) in bit 0, show_frame in bit 4, the first
        // partition size in the remaining bits (any value: nobody decodes these frames).
        out.push(if keyframe { 0x10 } else { 0x11 });
        out.extend_from_slice(&[0x02, 0x00]);
        if keyframe {
            out.extend_from_slice(&[0x9d, 0x01, 0x2a]);
            out.extend_from_slice(&size.0.to_le_bytes());
            out.extend_from_slice(&size.1.to_le_bytes());
        }
    }
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&stamp_us.to_be_bytes());
    if out.len() < len {
        out.resize(len, filler);
    }
}

/// Writes one Opus packet of `len` bytes carrying `stamp_us`.
pub fn opus_packet(out: &mut Vec<u8>, stamp_us: u64, len: usize) {
    out.clear();
    out.push(OPUS_TOC);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&stamp_us.to_be_bytes());
    if out.len() < len {
        out.resize(len, 0x5a);
    }
}

fn read_stamp(rest: &[u8]) -> Option<u64> {
    let tail = rest.strip_prefix(&MAGIC)?;
    let bytes: [u8; 8] = tail.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// What a subscriber reads from a VP8 payload: the stamp, and whether it starts a key frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Info {
    pub stamp_us: Option<u64>,
    pub keyframe: bool,
}

/// Parses the descriptor generically (servers may rewrite picture ids, and a different server
/// could choose another descriptor layout) and then our stamp.
pub fn read_vp8(p: &[u8]) -> Vp8Info {
    let mut info = Vp8Info::default();
    let Some(&b0) = p.first() else { return info };
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let Some(&x) = p.get(i) else { return info };
        i += 1;
        if x & 0x80 != 0 {
            // Picture id: 7 or 15 bits.
            let Some(&pid) = p.get(i) else { return info };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID / KEYIDX
        }
    }
    let start = b0 & 0x10 != 0 && b0 & 0x07 == 0;
    if start {
        let Some(&tag) = p.get(i) else { return info };
        info.keyframe = tag & 0x01 == 0;
        i += if info.keyframe { 10 } else { 3 };
    }
    info.stamp_us = p.get(i..).and_then(read_stamp);
    info
}

/// The stamp of an Opus payload we wrote.
pub fn read_opus(p: &[u8]) -> Option<u64> {
    p.get(1..).and_then(read_stamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_stamp_round_trips_after_the_frame_header() {
        let mut buf = Vec::new();
        for (first, key) in [(true, true), (true, false), (false, false)] {
            vp8_packet(
                &mut buf,
                0x1234,
                first,
                key,
                (640, 360),
                987_654_321,
                1000,
                0x33,
            );
            assert_eq!(buf.len(), 1000);
            let info = read_vp8(&buf);
            assert_eq!(info.stamp_us, Some(987_654_321));
            assert_eq!(info.keyframe, first && key);
        }
        // A key frame keeps the VP8 start code and the size where decoders expect them.
        vp8_packet(&mut buf, 1, true, true, (640, 360), 1, 100, 0);
        assert_eq!(&buf[7..10], &[0x9d, 0x01, 0x2a]);
        assert_eq!(u16::from_le_bytes([buf[10], buf[11]]), 640);
    }

    #[test]
    fn a_rewritten_short_picture_id_still_parses() {
        // 7-bit picture id (M=0), as a server may rewrite it.
        let mut p = vec![0x90, 0x80, 0x05, 0x11, 0x02, 0x00];
        p.extend_from_slice(&MAGIC);
        p.extend_from_slice(&42u64.to_be_bytes());
        assert_eq!(read_vp8(&p).stamp_us, Some(42));
        assert_eq!(read_vp8(&[0x90, 0x80]).stamp_us, None);
    }

    #[test]
    fn opus_stamp_round_trips() {
        let mut buf = Vec::new();
        opus_packet(&mut buf, 77, 80);
        assert_eq!(buf.len(), 80);
        assert_eq!(buf[0], OPUS_TOC);
        assert_eq!(read_opus(&buf), Some(77));
    }
}
