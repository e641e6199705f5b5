//! VP8 RTP payload descriptor (RFC 7741 §4.2): parsing, keyframe detection and the in-place
//! rewrite of picture id and TL0PICIDX that keeps them continuous across simulcast switches.
//!
//! ```text
//!       0 1 2 3 4 5 6 7
//!      +-+-+-+-+-+-+-+-+
//!      |X|R|N|S|R| PID | (REQUIRED)
//!      +-+-+-+-+-+-+-+-+
//! X:   |I|L|T|K| RSV   | (OPTIONAL)
//!      +-+-+-+-+-+-+-+-+
//! I:   |M| PictureID   | (OPTIONAL, M=1 adds a second byte: 15-bit picture id)
//!      +-+-+-+-+-+-+-+-+
//! L:   |   TL0PICIDX   | (OPTIONAL)
//!      +-+-+-+-+-+-+-+-+
//! T/K: |TID|Y| KEYIDX  | (OPTIONAL)
//!      +-+-+-+-+-+-+-+-+
//! ```
//!
//! Each simulcast layer is an independent VP8 encoder with its own picture id and TL0PICIDX
//! sequence. A receiver uses them to detect lost frames, so when the SFU switches a subscriber from
//! one layer to another they must go on from where the previous layer left off; [`Vp8Munger`] keeps
//! the offsets.

use thiserror::Error;

/// Why a VP8 payload could not be parsed or rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Vp8Error {
    /// The payload is empty.
    #[error("empty VP8 payload")]
    Empty,
    /// The descriptor announces more bytes than the payload holds.
    #[error("VP8 payload descriptor truncated")]
    Truncated,
    /// The payload ends right after the descriptor: there is no VP8 data at all.
    #[error("VP8 payload has no data after the descriptor")]
    NoPayload,
    /// The descriptor given for a rewrite does not match the buffer.
    #[error("VP8 descriptor does not match the buffer")]
    Mismatch,
}

/// Width of the picture id field as the sender chose it; a rewrite keeps it, because the
/// descriptor's length must not change (the packet is rewritten in place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PictureIdWidth {
    /// One byte, M=0: values 0..=127.
    Bits7,
    /// Two bytes, M=1: values 0..=32767.
    Bits15,
}

impl PictureIdWidth {
    /// The mask that reduces a value to this width.
    pub const fn mask(self) -> u16 {
        match self {
            PictureIdWidth::Bits7 => 0x7F,
            PictureIdWidth::Bits15 => 0x7FFF,
        }
    }
}

/// The parsed VP8 payload descriptor of one RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Descriptor {
    /// N: the frame is not used as a reference by any other frame (may be dropped safely).
    pub non_reference: bool,
    /// S: this packet starts a VP8 partition.
    pub start_of_partition: bool,
    /// PID: the partition index (0..=7).
    pub partition_id: u8,
    /// Picture id and its wire width, when I=1.
    pub picture_id: Option<(u16, PictureIdWidth)>,
    /// TL0PICIDX, when L=1.
    pub tl0_pic_idx: Option<u8>,
    /// Temporal layer index, when T=1.
    pub tid: Option<u8>,
    /// Y: layer sync bit (meaningful when T=1).
    pub layer_sync: bool,
    /// KEYIDX, when K=1.
    pub key_idx: Option<u8>,
    /// Length of the descriptor in bytes; the VP8 payload starts here.
    pub header_len: usize,
    /// The packet starts a keyframe: S=1, PID=0 and the VP8 payload header's P bit is 0.
    pub is_keyframe: bool,
    /// Byte offset of the picture id field (for the in-place rewrite).
    picture_id_offset: usize,
    /// Byte offset of the TL0PICIDX field.
    tl0_offset: usize,
}

const X_BIT: u8 = 0x80;
const N_BIT: u8 = 0x20;
const S_BIT: u8 = 0x10;
const PID_MASK: u8 = 0x07;
const I_BIT: u8 = 0x80;
const L_BIT: u8 = 0x40;
const T_BIT: u8 = 0x20;
const K_BIT: u8 = 0x10;
const M_BIT: u8 = 0x80;

/// Reads one byte or reports truncation; every descriptor access goes through here so a short
/// payload can never panic.
fn byte_at(payload: &[u8], at: usize) -> Result<u8, Vp8Error> {
    payload.get(at).copied().ok_or(Vp8Error::Truncated)
}

/// Parses the VP8 payload descriptor at the start of an RTP payload.
pub fn parse(payload: &[u8]) -> Result<Vp8Descriptor, Vp8Error> {
    let first = *payload.first().ok_or(Vp8Error::Empty)?;
    let mut at = 1;
    let mut desc = Vp8Descriptor {
        non_reference: first & N_BIT != 0,
        start_of_partition: first & S_BIT != 0,
        partition_id: first & PID_MASK,
        picture_id: None,
        tl0_pic_idx: None,
        tid: None,
        layer_sync: false,
        key_idx: None,
        header_len: 0,
        is_keyframe: false,
        picture_id_offset: 0,
        tl0_offset: 0,
    };
    if first & X_BIT != 0 {
        let ext = byte_at(payload, at)?;
        at += 1;
        if ext & I_BIT != 0 {
            let b0 = byte_at(payload, at)?;
            desc.picture_id_offset = at;
            if b0 & M_BIT != 0 {
                let b1 = byte_at(payload, at + 1)?;
                desc.picture_id = Some((
                    (u16::from(b0 & 0x7F) << 8) | u16::from(b1),
                    PictureIdWidth::Bits15,
                ));
                at += 2;
            } else {
                desc.picture_id = Some((u16::from(b0), PictureIdWidth::Bits7));
                at += 1;
            }
        }
        if ext & L_BIT != 0 {
            desc.tl0_offset = at;
            desc.tl0_pic_idx = Some(byte_at(payload, at)?);
            at += 1;
        }
        if ext & (T_BIT | K_BIT) != 0 {
            let b = byte_at(payload, at)?;
            if ext & T_BIT != 0 {
                desc.tid = Some(b >> 6);
                desc.layer_sync = b & 0x20 != 0;
            }
            if ext & K_BIT != 0 {
                desc.key_idx = Some(b & 0x1F);
            }
            at += 1;
        }
    }
    desc.header_len = at;
    // The VP8 payload header (RFC 6386 §9.1) follows; only the first partition's first packet
    // carries it, and its lowest bit P is 0 for a keyframe (an "intra" frame).
    let vp8_first = *payload.get(at).ok_or(Vp8Error::NoPayload)?;
    desc.is_keyframe = desc.start_of_partition && desc.partition_id == 0 && vp8_first & 0x01 == 0;
    Ok(desc)
}

/// Whether this payload starts a VP8 keyframe; malformed payloads are not keyframes.
pub fn is_keyframe(payload: &[u8]) -> bool {
    parse(payload).is_ok_and(|d| d.is_keyframe)
}

/// Overwrites the picture id and TL0PICIDX of `payload` in place, keeping the sender's field
/// widths (values are reduced modulo the width). Fields the descriptor does not carry are left
/// alone. `desc` must come from [`parse`] of this same buffer.
pub fn rewrite(
    payload: &mut [u8],
    desc: &Vp8Descriptor,
    picture_id: u16,
    tl0_pic_idx: u8,
) -> Result<(), Vp8Error> {
    if payload.len() < desc.header_len {
        return Err(Vp8Error::Mismatch);
    }
    if let Some((_, width)) = desc.picture_id {
        let at = desc.picture_id_offset;
        match width {
            PictureIdWidth::Bits7 => {
                let b = payload.get_mut(at).ok_or(Vp8Error::Mismatch)?;
                *b = (picture_id & 0x7F) as u8;
            }
            PictureIdWidth::Bits15 => {
                let v = picture_id & 0x7FFF;
                let b = payload.get_mut(at..at + 2).ok_or(Vp8Error::Mismatch)?;
                b.copy_from_slice(&(v | 0x8000).to_be_bytes());
            }
        }
    }
    if desc.tl0_pic_idx.is_some() {
        let b = payload.get_mut(desc.tl0_offset).ok_or(Vp8Error::Mismatch)?;
        *b = tl0_pic_idx;
    }
    Ok(())
}

/// Per down-track state that keeps picture id and TL0PICIDX continuous across layer switches.
///
/// Each input layer keeps its own numbering; the munger adds an offset chosen at the switch point
/// so the first picture of the new layer follows the last picture sent. Offsets are kept in the
/// 15-bit space; a 7-bit field is reduced modulo 128, which stays continuous modulo 128 — what a
/// receiver of a 7-bit stream compares.
#[derive(Debug, Clone, Default)]
pub struct Vp8Munger {
    pid_offset: u16,
    tl0_offset: u8,
    /// Highest picture id sent (15-bit space), if any.
    last_pid: Option<u16>,
    /// Last TL0PICIDX sent, if any.
    last_tl0: Option<u8>,
}

impl Vp8Munger {
    /// A munger that has sent nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Computes the output picture id and TL0PICIDX for one packet (and advances the state).
    /// `switched` is true for the first packet of a new layer (the keyframe at the switch point,
    /// as decided by [`RtpMunger`](super::rtp_munger::RtpMunger)); the offsets are recomputed
    /// there. Apply the result with [`apply`] to the copy of the payload being sent.
    pub fn munge(&mut self, desc: &Vp8Descriptor, switched: bool) -> Vp8Ids {
        if switched {
            if let (Some((pid, _)), Some(last)) = (desc.picture_id, self.last_pid) {
                self.pid_offset = last.wrapping_add(1).wrapping_sub(pid) & 0x7FFF;
            }
            if let (Some(tl0), Some(last)) = (desc.tl0_pic_idx, self.last_tl0) {
                self.tl0_offset = last.wrapping_add(1).wrapping_sub(tl0);
            }
        }
        // Reduce to the packet's own width so "newer" is judged in the space the field wraps in.
        let out_pid = desc
            .picture_id
            .map(|(pid, w)| (pid.wrapping_add(self.pid_offset) & w.mask(), w));
        let out_tl0 = desc
            .tl0_pic_idx
            .map(|tl0| tl0.wrapping_add(self.tl0_offset));
        if let Some((p, w)) = out_pid {
            // Late packets of older pictures must not move the reference point backwards.
            let newer = match self.last_pid {
                None => true,
                Some(last) => {
                    let d = p.wrapping_sub(last) & w.mask();
                    d != 0 && d <= w.mask() / 2
                }
            };
            if newer || switched {
                self.last_pid = Some(p);
            }
        }
        if let Some(t) = out_tl0 {
            let newer = match self.last_tl0 {
                None => true,
                Some(last) => {
                    let d = t.wrapping_sub(last);
                    d != 0 && d < 0x80
                }
            };
            if newer || switched {
                self.last_tl0 = Some(t);
            }
        }
        Vp8Ids {
            picture_id: out_pid.map(|(p, _)| p),
            tl0_pic_idx: out_tl0,
        }
    }

    /// [`munge`](Self::munge) and [`apply`] in one step, on a payload copy owned by the caller.
    pub fn rewrite(
        &mut self,
        payload: &mut [u8],
        desc: &Vp8Descriptor,
        switched: bool,
    ) -> Result<Vp8Ids, Vp8Error> {
        let ids = self.munge(desc, switched);
        apply(payload, desc, ids)?;
        Ok(ids)
    }
}

/// Output picture id and TL0PICIDX of one packet, for the fields the packet carries. Small and
/// `Copy`, so the NACK cache keeps these instead of a rewritten copy of the payload: the payload
/// stays the publisher's buffer, shared by every down-track, and the send path rewrites in its
/// own send buffer (again on a retransmission).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Ids {
    /// Output picture id (already reduced to the packet's width).
    pub picture_id: Option<u16>,
    /// Output TL0PICIDX.
    pub tl0_pic_idx: Option<u8>,
}

/// Writes `ids` over the descriptor of `payload` (see [`rewrite`]).
pub fn apply(payload: &mut [u8], desc: &Vp8Descriptor, ids: Vp8Ids) -> Result<(), Vp8Error> {
    rewrite(
        payload,
        desc,
        ids.picture_id.unwrap_or(0),
        ids.tl0_pic_idx.unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Descriptors as Chrome sends them for simulcast VP8: X=1, I=1 with a 15-bit picture id,
    // L=1, T=1; then the first bytes of the VP8 frame header.
    // Keyframe: S=1 PID=0, picture id 0x1234, TL0PICIDX 0x56, TID 0 Y=1, VP8 header 0x10 (P=0).
    const KEYFRAME_15: [u8; 9] = [0x90, 0xE0, 0x92, 0x34, 0x56, 0x20, 0x10, 0x02, 0x00];
    // Interframe: S=1 PID=0, 15-bit picture id 0x1235, TL0 0x56, TID 2, VP8 header 0x31 (P=1).
    const DELTA_15: [u8; 8] = [0x90, 0xE0, 0x92, 0x35, 0x56, 0x80, 0x31, 0x00];
    // 7-bit picture id 0x7F, no L/T, keyframe.
    const KEYFRAME_7: [u8; 5] = [0x90, 0x80, 0x7F, 0x10, 0x02];
    // No extensions at all (X=0), continuation packet S=0.
    const MINIMAL: [u8; 3] = [0x00, 0xAA, 0xBB];

    #[test]
    fn parses_descriptors() {
        struct Case {
            name: &'static str,
            bytes: &'static [u8],
            pid: Option<(u16, PictureIdWidth)>,
            tl0: Option<u8>,
            tid: Option<u8>,
            sync: bool,
            key_idx: Option<u8>,
            header_len: usize,
            keyframe: bool,
        }
        let cases = [
            Case {
                name: "15-bit keyframe",
                bytes: &KEYFRAME_15,
                pid: Some((0x1234, PictureIdWidth::Bits15)),
                tl0: Some(0x56),
                tid: Some(0),
                sync: true,
                key_idx: None,
                header_len: 6,
                keyframe: true,
            },
            Case {
                name: "15-bit delta",
                bytes: &DELTA_15,
                pid: Some((0x1235, PictureIdWidth::Bits15)),
                tl0: Some(0x56),
                tid: Some(2),
                sync: false,
                key_idx: None,
                header_len: 6,
                keyframe: false,
            },
            Case {
                name: "7-bit keyframe",
                bytes: &KEYFRAME_7,
                pid: Some((0x7F, PictureIdWidth::Bits7)),
                tl0: None,
                tid: None,
                sync: false,
                key_idx: None,
                header_len: 3,
                keyframe: true,
            },
            Case {
                name: "minimal continuation",
                bytes: &MINIMAL,
                pid: None,
                tl0: None,
                tid: None,
                sync: false,
                key_idx: None,
                header_len: 1,
                keyframe: false,
            },
            Case {
                name: "K only: KEYIDX",
                bytes: &[0x90, 0x10, 0x15, 0x00],
                pid: None,
                tl0: None,
                tid: None,
                sync: false,
                key_idx: Some(0x15),
                header_len: 3,
                keyframe: true,
            },
            Case {
                name: "T and K share one byte",
                bytes: &[0x90, 0x30, 0x7F, 0x01],
                pid: None,
                tl0: None,
                tid: Some(1),
                sync: true,
                key_idx: Some(0x1F),
                header_len: 3,
                keyframe: false,
            },
            Case {
                name: "S=1 but PID=1 is not a keyframe start",
                bytes: &[0x11, 0x00],
                pid: None,
                tl0: None,
                tid: None,
                sync: false,
                key_idx: None,
                header_len: 1,
                keyframe: false,
            },
            Case {
                name: "S=0 is not a keyframe start",
                bytes: &[0x00, 0x00],
                pid: None,
                tl0: None,
                tid: None,
                sync: false,
                key_idx: None,
                header_len: 1,
                keyframe: false,
            },
        ];
        for c in cases {
            let d = parse(c.bytes).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert_eq!(d.picture_id, c.pid, "{}", c.name);
            assert_eq!(d.tl0_pic_idx, c.tl0, "{}", c.name);
            assert_eq!(d.tid, c.tid, "{}", c.name);
            assert_eq!(d.layer_sync, c.sync, "{}", c.name);
            assert_eq!(d.key_idx, c.key_idx, "{}", c.name);
            assert_eq!(d.header_len, c.header_len, "{}", c.name);
            assert_eq!(d.is_keyframe, c.keyframe, "{}", c.name);
            assert_eq!(is_keyframe(c.bytes), c.keyframe, "{}", c.name);
        }
    }

    #[test]
    fn n_bit_and_partition() {
        let d = parse(&[0x23, 0x00]).unwrap();
        assert!(d.non_reference);
        assert!(!d.start_of_partition);
        assert_eq!(d.partition_id, 3);
    }

    #[test]
    fn truncated_and_malformed_are_errors() {
        let cases: [(&[u8], Vp8Error); 8] = [
            (&[], Vp8Error::Empty),
            (&[0x90], Vp8Error::Truncated),
            (&[0x90, 0x80], Vp8Error::Truncated),
            (&[0x90, 0x80, 0x92], Vp8Error::Truncated),
            (&[0x90, 0xC0, 0x12], Vp8Error::Truncated),
            (&[0x90, 0x20], Vp8Error::Truncated),
            (&[0x90, 0x80, 0x12], Vp8Error::NoPayload),
            (&[0x10], Vp8Error::NoPayload),
        ];
        for (bytes, err) in cases {
            assert_eq!(parse(bytes), Err(err), "{bytes:02x?}");
            assert!(!is_keyframe(bytes));
        }
        // Every prefix of a real descriptor parses or fails, never panics.
        for n in 0..KEYFRAME_15.len() {
            let _ = parse(&KEYFRAME_15[..n]);
        }
    }

    #[test]
    fn rewrite_keeps_width_15() {
        let mut buf = KEYFRAME_15;
        let d = parse(&buf).unwrap();
        rewrite(&mut buf, &d, 0x7FFF + 3, 0x01).unwrap();
        let d2 = parse(&buf).unwrap();
        assert_eq!(d2.picture_id, Some((2, PictureIdWidth::Bits15)));
        assert_eq!(d2.tl0_pic_idx, Some(0x01));
        // Everything else untouched.
        assert_eq!(&buf[..2], &KEYFRAME_15[..2]);
        assert_eq!(&buf[5..], &KEYFRAME_15[5..]);
    }

    #[test]
    fn rewrite_keeps_width_7() {
        let mut buf = KEYFRAME_7;
        let d = parse(&buf).unwrap();
        rewrite(&mut buf, &d, 0x1234, 9).unwrap();
        assert_eq!(buf, [0x90, 0x80, 0x34, 0x10, 0x02]);
        let d2 = parse(&buf).unwrap();
        assert_eq!(d2.picture_id, Some((0x34, PictureIdWidth::Bits7)));
        assert_eq!(d2.tl0_pic_idx, None);
    }

    #[test]
    fn rewrite_with_foreign_descriptor_is_an_error() {
        let d = parse(&KEYFRAME_15).unwrap();
        let mut short = [0x90u8, 0xE0];
        assert_eq!(rewrite(&mut short, &d, 1, 1), Err(Vp8Error::Mismatch));
    }

    fn pkt15(pid: u16, tl0: u8, key: bool) -> Vec<u8> {
        let p = pid | 0x8000;
        vec![
            0x90,
            0xE0,
            (p >> 8) as u8,
            p as u8,
            tl0,
            0x00,
            if key { 0x10 } else { 0x11 },
        ]
    }

    fn out(buf: &[u8]) -> (u16, u8) {
        let d = parse(buf).unwrap();
        (d.picture_id.unwrap().0, d.tl0_pic_idx.unwrap())
    }

    #[test]
    fn munger_continuous_across_two_switches_with_wrap() {
        let mut m = Vp8Munger::new();
        // Layer A near the 15-bit wrap.
        let mut seen = Vec::new();
        for (i, pid) in [0x7FFEu16, 0x7FFF, 0x0000].into_iter().enumerate() {
            let mut b = pkt15(pid, 250 + i as u8, i == 0);
            let d = parse(&b).unwrap();
            m.rewrite(&mut b, &d, i == 0).unwrap();
            seen.push(out(&b));
        }
        // Switch to layer B (numbering far away).
        for (i, pid) in [100u16, 101].into_iter().enumerate() {
            let mut b = pkt15(pid, 7 + i as u8, i == 0);
            let d = parse(&b).unwrap();
            m.rewrite(&mut b, &d, i == 0).unwrap();
            seen.push(out(&b));
        }
        // Switch to layer C with TL0 wrapping.
        for (i, pid) in [0x7FFFu16, 0].into_iter().enumerate() {
            let mut b = pkt15(pid, 255u8.wrapping_add(i as u8), i == 0);
            let d = parse(&b).unwrap();
            m.rewrite(&mut b, &d, i == 0).unwrap();
            seen.push(out(&b));
        }
        let pids: Vec<u16> = seen.iter().map(|s| s.0).collect();
        let tl0s: Vec<u8> = seen.iter().map(|s| s.1).collect();
        assert_eq!(pids, [0x7FFE, 0x7FFF, 0, 1, 2, 3, 4]);
        assert_eq!(tl0s, [250, 251, 252, 253, 254, 255, 0]);
    }

    #[test]
    fn munger_7_bit_layer_stays_continuous_mod_128() {
        let mut m = Vp8Munger::new();
        let mut a = pkt15(500, 1, true);
        let d = parse(&a).unwrap();
        m.rewrite(&mut a, &d, true).unwrap();
        // Switch to a layer that uses 7-bit picture ids.
        let mut b = [0x90u8, 0x80, 0x05, 0x10];
        let d = parse(&b).unwrap();
        m.rewrite(&mut b, &d, true).unwrap();
        assert_eq!(
            parse(&b).unwrap().picture_id,
            Some((501 & 0x7F, PictureIdWidth::Bits7))
        );
    }

    #[test]
    fn munger_7_bit_wrap_then_switch_to_15_bit() {
        let mut m = Vp8Munger::new();
        let mut sent = Vec::new();
        for (i, pid) in [126u8, 127, 0, 1].into_iter().enumerate() {
            let mut b = [0x90u8, 0x80, pid, if i == 0 { 0x10 } else { 0x11 }];
            let d = parse(&b).unwrap();
            m.rewrite(&mut b, &d, i == 0).unwrap();
            sent.push(parse(&b).unwrap().picture_id.unwrap().0);
        }
        assert_eq!(sent, [126, 127, 0, 1]);
        let mut b = pkt15(7000, 3, true);
        let d = parse(&b).unwrap();
        m.rewrite(&mut b, &d, true).unwrap();
        assert_eq!(out(&b).0, 2);
    }

    #[test]
    fn munge_then_apply_reproduces_the_packet_as_sent() {
        // The NACK cache keeps the ids, not the bytes: applying them again to the original
        // payload must give the same bytes.
        let mut m = Vp8Munger::new();
        let mut first = pkt15(40, 9, true);
        let d = parse(&first).unwrap();
        m.rewrite(&mut first, &d, true).unwrap();
        let original = pkt15(77, 200, true);
        let d = parse(&original).unwrap();
        let mut sent = original.clone();
        let ids = m.rewrite(&mut sent, &d, true).unwrap();
        assert_eq!(
            ids,
            Vp8Ids {
                picture_id: Some(41),
                tl0_pic_idx: Some(10)
            }
        );
        let mut again = original.clone();
        apply(&mut again, &d, ids).unwrap();
        assert_eq!(again, sent);
    }

    #[test]
    fn late_packet_does_not_move_reference_back() {
        let mut m = Vp8Munger::new();
        for (pid, sw) in [(10u16, true), (11, false), (9, false)] {
            let mut b = pkt15(pid, 0, sw);
            let d = parse(&b).unwrap();
            m.rewrite(&mut b, &d, sw).unwrap();
        }
        let mut b = pkt15(900, 0, true);
        let d = parse(&b).unwrap();
        m.rewrite(&mut b, &d, true).unwrap();
        assert_eq!(out(&b).0, 12);
    }
}
