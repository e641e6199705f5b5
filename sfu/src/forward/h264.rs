//! H.264 keyframe detection on RTP payloads (RFC 6184).
//!
//! A layer switch may only happen where the subscriber's decoder can start afresh: an IDR
//! picture, normally preceded by its SPS/PPS. Browsers send those as single NAL units, as an
//! aggregate (STAP-A: SPS + PPS + IDR in one packet when small) or, for a large IDR, as FU-A
//! fragments of which only the first (S=1) marks the start.

/// NAL unit type of a coded slice of an IDR picture.
pub(crate) const NAL_IDR: u8 = 5;
/// NAL unit type of a sequence parameter set.
pub(crate) const NAL_SPS: u8 = 7;
/// Single-time aggregation packet.
pub(crate) const NAL_STAP_A: u8 = 24;
/// Fragmentation unit without DON.
pub(crate) const NAL_FU_A: u8 = 28;

/// The forbidden_zero_bit: set means the NAL unit is known to be corrupt (RFC 6184 §5.3).
pub(crate) const F_BIT: u8 = 0x80;

pub(crate) fn nal_type(header: u8) -> u8 {
    header & 0x1F
}

fn starts_picture(nal: u8) -> bool {
    nal == NAL_IDR || nal == NAL_SPS
}

/// Whether this RTP payload starts an H.264 keyframe: a single IDR or SPS NAL unit, a STAP-A that
/// carries one, or the first FU-A fragment of one. Malformed payloads are never keyframes.
pub fn is_keyframe(payload: &[u8]) -> bool {
    let Some(&header) = payload.first() else {
        return false;
    };
    if header & F_BIT != 0 {
        return false;
    }
    match nal_type(header) {
        NAL_STAP_A => stap_a_has_keyframe(payload.get(1..).unwrap_or_default()),
        NAL_FU_A => match payload.get(1) {
            // FU header: S|E|R|type. Only the start fragment begins a picture.
            Some(&fu) => fu & 0x80 != 0 && starts_picture(nal_type(fu)),
            None => false,
        },
        t => starts_picture(t),
    }
}

/// Walks the aggregated units (16-bit size + NAL unit each). The whole aggregate must be well
/// formed: a truncated one is discarded by decoders, so it cannot serve as a switch point.
fn stap_a_has_keyframe(mut rest: &[u8]) -> bool {
    let mut found = false;
    let mut units = 0;
    while !rest.is_empty() {
        let [hi, lo, tail @ ..] = rest else {
            return false;
        };
        let size = usize::from(u16::from_be_bytes([*hi, *lo]));
        let (Some(unit), Some(next)) = (tail.get(..size), tail.get(size..)) else {
            return false;
        };
        let Some(&nal) = unit.first() else {
            return false;
        };
        if nal & F_BIT != 0 {
            return false;
        }
        found |= starts_picture(nal_type(nal));
        units += 1;
        rest = next;
    }
    found && units > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframe_table() {
        let cases: &[(&str, &[u8], bool)] = &[
            ("empty", &[], false),
            ("single IDR", &[0x65, 0x88, 0x84], true),
            ("single SPS", &[0x67, 0x42, 0xC0, 0x1F], true),
            ("single PPS", &[0x68, 0xCE, 0x3C, 0x80], false),
            ("single non-IDR slice", &[0x41, 0x9A, 0x00], false),
            ("SEI", &[0x06, 0x05], false),
            ("forbidden bit on IDR", &[0xE5, 0x88], false),
            (
                "STAP-A SPS+PPS+IDR",
                &[
                    0x78, // STAP-A, NRI=3
                    0x00, 0x04, 0x67, 0x42, 0xC0, 0x1F, // SPS
                    0x00, 0x02, 0x68, 0xCE, // PPS
                    0x00, 0x03, 0x65, 0x88, 0x84, // IDR
                ],
                true,
            ),
            (
                "STAP-A of non-IDR slices",
                &[0x78, 0x00, 0x02, 0x41, 0x9A, 0x00, 0x02, 0x01, 0x9A],
                false,
            ),
            (
                "STAP-A truncated size",
                &[0x78, 0x00, 0x04, 0x67, 0x42, 0xC0, 0x1F, 0x00],
                false,
            ),
            (
                "STAP-A unit longer than packet",
                &[0x78, 0x00, 0x09, 0x67, 0x42],
                false,
            ),
            ("STAP-A zero-size unit", &[0x78, 0x00, 0x00], false),
            ("STAP-A empty", &[0x78], false),
            ("FU-A start of IDR", &[0x7C, 0x85, 0x88, 0x84], true),
            ("FU-A middle of IDR", &[0x7C, 0x05, 0x88], false),
            ("FU-A end of IDR", &[0x7C, 0x45, 0x88], false),
            ("FU-A start of non-IDR", &[0x5C, 0x81, 0x9A], false),
            ("FU-A without FU header", &[0x7C], false),
            ("FU-B is not handled", &[0x7D, 0x85, 0x00, 0x01], false),
        ];
        for (name, bytes, want) in cases {
            assert_eq!(is_keyframe(bytes), *want, "{name}");
        }
    }

    #[test]
    fn never_panics_on_any_prefix() {
        let stap = [
            0x78u8, 0x00, 0x04, 0x67, 0x42, 0xC0, 0x1F, 0x00, 0x03, 0x65, 0x88, 0x84,
        ];
        for n in 0..=stap.len() {
            let _ = is_keyframe(&stap[..n]);
        }
        assert!(is_keyframe(&stap));
    }
}
