//! H.264 access units from RTP for the recorder (RFC 6184, packetization-mode 1).
//!
//! Payloads are single NAL units (types 1–23), STAP-A aggregates (24) or FU-A fragments (28);
//! the interleaved-mode types (STAP-B, MTAP, FU-B) are never negotiated and count as malformed.
//! An access unit is every NAL unit of one RTP timestamp, ending at the marker bit; it is kept as
//! 4-byte length-prefixed NAL units (the sample format of MP4, ISO/IEC 14496-15 §5.3.3), so the
//! MP4 writer stores it as it is and Annex-B is one start code per length away.
//!
//! Browsers send SPS and PPS only with IDR pictures, and not necessarily with every one; the
//! assembler keeps the latest of each and puts them in front of any IDR access unit that lacks
//! them, so every keyframe in the file can be decoded on its own (seeking, a layer switch).

use crate::forward::h264::{F_BIT, NAL_FU_A, NAL_IDR, NAL_SPS, NAL_STAP_A, nal_type};

/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;

/// Why an access unit cannot be completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// Not a payload of packetization-mode 1, a truncated aggregate, or a NAL unit its sender
    /// marked corrupt (F bit).
    Malformed,
    /// An FU-A continuation without its start fragment.
    FragmentStartLost,
    /// A fragmented NAL unit still open when another began or the access unit ended.
    FragmentEndLost,
}

/// What a payload says before it is assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    /// False for an FU-A continuation: an access unit cannot begin there.
    pub starts_unit: bool,
    /// Begins a picture a decoder can start from (an IDR or SPS): a switch point.
    pub keyframe: bool,
}

/// Checks the payload's type; `None` when the recorder cannot use it.
pub fn inspect(payload: &[u8]) -> Option<PacketInfo> {
    let header = *payload.first()?;
    if header & F_BIT != 0 {
        return None;
    }
    let starts_unit = match nal_type(header) {
        1..=23 | NAL_STAP_A => true,
        NAL_FU_A => payload.get(1)? & 0x80 != 0,
        _ => return None,
    };
    Some(PacketInfo {
        starts_unit,
        keyframe: crate::forward::h264::is_keyframe(payload),
    })
}

/// A completed access unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessUnit<'a> {
    /// It holds an IDR picture.
    pub key: bool,
    /// Its `frame_num` (ITU-T H.264 §7.4.3) is the one that follows the previous complete access
    /// unit's: no picture was lost in between, whatever gaps the RTP sequence numbers show.
    pub follows: bool,
    /// Length-prefixed NAL units.
    pub data: &'a [u8],
}

/// Assembles one access unit at a time and remembers the stream's parameter sets.
#[derive(Debug, Default)]
pub struct AuAssembler {
    au: Vec<u8>,
    /// Offset in `au` of the length field of the NAL unit FU-A fragments are filling.
    fragment: Option<usize>,
    has_idr: bool,
    has_sps: bool,
    has_pps: bool,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    /// What slice headers need of the latest SPS.
    sps_info: Option<SpsInfo>,
    /// `frame_num` of the previous complete access unit and whether it was a reference picture.
    last_frame: Option<(u32, bool)>,
    /// The access unit with parameter sets put in front, when it lacked them.
    completed: Vec<u8>,
}

impl AuAssembler {
    /// Adds one RTP payload of the current access unit.
    pub fn push(&mut self, payload: &[u8]) -> Result<(), Broken> {
        let &header = payload.first().ok_or(Broken::Malformed)?;
        if header & F_BIT != 0 {
            return Err(Broken::Malformed);
        }
        match nal_type(header) {
            1..=23 => {
                self.close_fragment()?;
                self.nal(payload);
                Ok(())
            }
            NAL_STAP_A => {
                self.close_fragment()?;
                self.stap_a(payload.get(1..).unwrap_or_default())
            }
            NAL_FU_A => self.fu_a(header, payload.get(1..).unwrap_or_default()),
            _ => Err(Broken::Malformed),
        }
    }

    /// Ends the access unit (the marker bit), with the latest SPS and PPS in front if it is an
    /// IDR picture that came without them.
    pub fn finish(&mut self) -> Result<AccessUnit<'_>, Broken> {
        self.close_fragment()?;
        if self.au.is_empty() {
            return Err(Broken::Malformed);
        }
        let key = self.has_idr;
        let frame = self.frame_num();
        let follows = match (self.last_frame, frame, self.sps_info) {
            (Some((last, was_ref)), Some((n, _)), Some(sps)) => {
                n == (last + u32::from(was_ref)) % (1 << sps.log2_max_frame_num)
            }
            _ => false,
        };
        self.last_frame = frame;
        if key && !(self.has_sps && self.has_pps) {
            self.completed.clear();
            if !self.has_sps
                && let Some(sps) = &self.sps
            {
                put_nal(&mut self.completed, sps);
            }
            if !self.has_pps
                && let Some(pps) = &self.pps
            {
                put_nal(&mut self.completed, pps);
            }
            self.completed.extend_from_slice(&self.au);
            return Ok(AccessUnit {
                key,
                follows,
                data: &self.completed,
            });
        }
        Ok(AccessUnit {
            key,
            follows,
            data: &self.au,
        })
    }

    /// `frame_num` of the access unit's first slice (§7.3.3) and whether the picture is a
    /// reference (nal_ref_idc > 0: the next reference picture then counts one up).
    fn frame_num(&self) -> Option<(u32, bool)> {
        let sps = self.sps_info?;
        let slice = nal_units(&self.au)
            .find(|n| matches!(n.first().map(|h| nal_type(*h)), Some(1 | NAL_IDR)))?;
        // The fields up to frame_num fit in a few bytes; unescape only those.
        let head = unescape(slice.get(1..slice.len().min(24))?);
        let mut r = BitReader::new(&head);
        r.ue()?; // first_mb_in_slice
        r.ue()?; // slice_type
        r.ue()?; // pic_parameter_set_id
        if sps.separate_colour_plane {
            r.bits(2)?;
        }
        let n = r.bits(u32::from(sps.log2_max_frame_num))?;
        Some((n, slice[0] & 0x60 != 0))
    }

    /// Forgets the access unit in progress (the parameter sets stay).
    pub fn clear(&mut self) {
        self.au.clear();
        self.fragment = None;
        self.has_idr = false;
        self.has_sps = false;
        self.has_pps = false;
    }

    fn close_fragment(&self) -> Result<(), Broken> {
        match self.fragment {
            Some(_) => Err(Broken::FragmentEndLost),
            None => Ok(()),
        }
    }

    fn nal(&mut self, nal: &[u8]) {
        put_nal(&mut self.au, nal);
        self.saw(nal);
    }

    fn saw(&mut self, nal: &[u8]) {
        match nal.first().map(|h| nal_type(*h)) {
            Some(NAL_IDR) => self.has_idr = true,
            Some(NAL_SPS) => {
                self.has_sps = true;
                if self.sps.as_deref() != Some(nal) {
                    self.sps_info = parse_sps(nal);
                    self.sps = Some(nal.to_vec());
                }
            }
            Some(NAL_PPS) => {
                self.has_pps = true;
                self.pps = Some(nal.to_vec());
            }
            _ => {}
        }
    }

    /// STAP-A (RFC 6184 §5.7.1): 16-bit size + NAL unit, repeated to the end of the payload.
    fn stap_a(&mut self, mut rest: &[u8]) -> Result<(), Broken> {
        if rest.is_empty() {
            return Err(Broken::Malformed);
        }
        while !rest.is_empty() {
            let [hi, lo, tail @ ..] = rest else {
                return Err(Broken::Malformed);
            };
            let size = usize::from(u16::from_be_bytes([*hi, *lo]));
            let (Some(unit), Some(next)) = (tail.get(..size), tail.get(size..)) else {
                return Err(Broken::Malformed);
            };
            match unit.first() {
                Some(h) if h & F_BIT == 0 => self.nal(unit),
                _ => return Err(Broken::Malformed),
            }
            rest = next;
        }
        Ok(())
    }

    /// FU-A (RFC 6184 §5.8): FU indicator (F, NRI, type 28), FU header (S, E, R, type), data.
    /// The NAL header is rebuilt from the indicator's F and NRI and the FU header's type.
    fn fu_a(&mut self, indicator: u8, rest: &[u8]) -> Result<(), Broken> {
        let [fu, data @ ..] = rest else {
            return Err(Broken::Malformed);
        };
        let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
        if start && end {
            // "MUST NOT both be set" (§5.8): a whole NAL unit goes in a single NAL unit packet.
            return Err(Broken::Malformed);
        }
        if start {
            self.close_fragment()?;
            self.fragment = Some(self.au.len());
            self.au.extend_from_slice(&[0; 4]);
            self.au.push((indicator & 0xE0) | (fu & 0x1F));
        } else if self.fragment.is_none() {
            return Err(Broken::FragmentStartLost);
        }
        self.au.extend_from_slice(data);
        if end && let Some(at) = self.fragment.take() {
            let len = (self.au.len() - at - 4) as u32;
            self.au[at..at + 4].copy_from_slice(&len.to_be_bytes());
            let nal = self.au[at + 4..].to_vec();
            self.saw(&nal);
        }
        Ok(())
    }
}

fn put_nal(out: &mut Vec<u8>, nal: &[u8]) {
    out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
    out.extend_from_slice(nal);
}

/// The NAL units of a length-prefixed access unit (a truncated tail is left out).
pub fn nal_units(mut au: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let len = u32::from_be_bytes(au.get(..4)?.try_into().ok()?) as usize;
        let nal = au.get(4..4 + len)?;
        au = &au[4 + len..];
        Some(nal)
    })
}

/// What the MP4 sample description needs from a sequence parameter set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpsInfo {
    pub profile_idc: u8,
    pub constraints: u8,
    pub level_idc: u8,
    pub chroma_format_idc: u8,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    pub width: u16,
    pub height: u16,
    /// Bits of a slice header's frame_num (4..=16).
    pub log2_max_frame_num: u8,
    /// 4:4:4 coded as three colour planes (slice headers then carry colour_plane_id).
    pub separate_colour_plane: bool,
}

/// Profiles whose SPS carries chroma format and bit depth (ITU-T H.264 §7.3.2.1.1).
fn has_chroma_info(profile_idc: u8) -> bool {
    matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    )
}

/// Reads the fields of an SPS NAL unit (with its header byte) up to the cropping window.
pub fn parse_sps(nal: &[u8]) -> Option<SpsInfo> {
    if nal_type(*nal.first()?) != NAL_SPS {
        return None;
    }
    let rbsp = unescape(nal.get(1..)?);
    let mut r = BitReader::new(&rbsp);
    let profile_idc = r.bits(8)? as u8;
    let constraints = r.bits(8)? as u8;
    let level_idc = r.bits(8)? as u8;
    r.ue()?; // seq_parameter_set_id
    let (mut chroma_format_idc, mut depth_luma, mut depth_chroma) = (1, 8, 8);
    let mut separate_planes = false;
    if has_chroma_info(profile_idc) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc > 3 {
            return None;
        }
        if chroma_format_idc == 3 {
            separate_planes = r.bit()?;
        }
        depth_luma = 8 + r.ue()?;
        depth_chroma = 8 + r.ue()?;
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    let log2_max_frame_num = 4 + r.ue()?;
    if log2_max_frame_num > 16 {
        return None;
    }
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()?.min(255) {
                r.se()?;
            }
        }
        2 => {}
        _ => return None,
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()? + 1;
    let height_units = r.ue()? + 1;
    let frame_mbs_only = r.bit()?;
    if !frame_mbs_only {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
    if r.bit()? {
        (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
    }
    // Cropping is in chroma sample units (Table 6-1 and equations 7-19 to 7-22).
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let (crop_x, crop_y) = match (chroma_format_idc, separate_planes) {
        (0, _) | (3, true) => (1, field_factor),
        (1, _) => (2, 2 * field_factor),
        (2, _) => (2, field_factor),
        _ => (1, field_factor),
    };
    let width = (width_mbs * 16).checked_sub(crop_x * (left.checked_add(right)?))?;
    let height =
        (height_units * 16 * field_factor).checked_sub(crop_y * (top.checked_add(bottom)?))?;
    Some(SpsInfo {
        profile_idc,
        constraints,
        level_idc,
        chroma_format_idc: chroma_format_idc as u8,
        bit_depth_luma: u8::try_from(depth_luma).ok()?,
        bit_depth_chroma: u8::try_from(depth_chroma).ok()?,
        width: u16::try_from(width).ok().filter(|w| *w > 0)?,
        height: u16::try_from(height).ok().filter(|h| *h > 0)?,
        log2_max_frame_num: log2_max_frame_num as u8,
        separate_colour_plane: separate_planes,
    })
}

fn skip_scaling_list(r: &mut BitReader, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            next = (last + r.se()? + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// Drops the emulation prevention bytes (0x03 after two zero bytes, §7.4.1).
fn unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &b in data {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// MSB-first bit reader with Exp-Golomb codes; every read is bounds-checked.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn bit(&mut self) -> Option<bool> {
        let byte = self.data.get(self.pos / 8)?;
        let v = byte >> (7 - self.pos % 8) & 1;
        self.pos += 1;
        Some(v == 1)
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0u32, |v, _| Some(v << 1 | u32::from(self.bit()?)))
    }

    /// ue(v): values above 2^31 are not in any valid SPS and end the parse.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while !self.bit()? {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        ((1u64 << zeros) - 1 + u64::from(rest)).try_into().ok()
    }

    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Parameter sets of x264 (`ffmpeg -f lavfi -i testsrc2=size=WxH -c:v libx264 -profile:v P`):
    /// constrained baseline 320x240 (no cropping) and 320x180 (cropped from 12 macroblock rows),
    /// high 640x360 (chroma format and bit depth fields, cropped from 23 rows).
    pub const SPS_320X240: &[u8] = &[
        0x67, 0x42, 0xC0, 0x0D, 0xD9, 0x01, 0x41, 0xFB, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
        0x00, 0x00, 0x03, 0x03, 0xC0, 0xF1, 0x42, 0xA4, 0x80,
    ];
    const SPS_320X180: &[u8] = &[
        0x67, 0x42, 0xC0, 0x0D, 0xD9, 0x01, 0x41, 0x9F, 0x9F, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0xC0, 0xF1, 0x42, 0xA4, 0x80,
    ];
    const SPS_640X360_HIGH: &[u8] = &[
        0x67, 0x64, 0x00, 0x1E, 0xAC, 0xD9, 0x40, 0xA0, 0x2F, 0xF9, 0x70, 0x11, 0x00, 0x00, 0x03,
        0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3C, 0x0F, 0x16, 0x2D, 0x96,
    ];
    pub const PPS: &[u8] = &[0x68, 0xCB, 0x83, 0xCB, 0x20];

    fn au(nals: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for n in nals {
            put_nal(&mut out, n);
        }
        out
    }

    #[test]
    fn single_nal_units_become_length_prefixed() {
        let mut a = AuAssembler::default();
        a.push(&[0x09, 0xF0]).unwrap(); // access unit delimiter
        a.push(&[0x41, 0x9A, 0x01, 0x02]).unwrap();
        let unit = a.finish().unwrap();
        assert!(!unit.key);
        assert_eq!(unit.data, au(&[&[0x09, 0xF0], &[0x41, 0x9A, 0x01, 0x02]]));
    }

    #[test]
    fn stap_a_is_split_into_its_units() {
        let mut a = AuAssembler::default();
        let mut stap = vec![0x78];
        for n in [SPS_320X240, PPS] {
            stap.extend_from_slice(&(n.len() as u16).to_be_bytes());
            stap.extend_from_slice(n);
        }
        a.push(&stap).unwrap();
        a.push(&[0x65, 0x88, 0x84, 0x00]).unwrap();
        let unit = a.finish().unwrap();
        assert!(unit.key);
        let nals: Vec<&[u8]> = nal_units(unit.data).collect();
        assert_eq!(nals, vec![SPS_320X240, PPS, &[0x65, 0x88, 0x84, 0x00][..]]);
    }

    #[test]
    fn malformed_stap_a_is_refused() {
        for bad in [
            &[0x78][..],
            &[0x78, 0x00],
            &[0x78, 0x00, 0x05, 0x67, 0x42],
            &[0x78, 0x00, 0x02, 0xE5, 0x88], // a unit with the F bit
        ] {
            assert_eq!(
                AuAssembler::default().push(bad),
                Err(Broken::Malformed),
                "{bad:?}"
            );
        }
    }

    /// FU-A fragments of `nal` (RFC 6184 §5.8) with at most `chunk` bytes of it each.
    pub fn fu_a(nal: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        let indicator = (nal[0] & 0xE0) | NAL_FU_A;
        let parts: Vec<&[u8]> = nal[1..].chunks(chunk).collect();
        let n = parts.len();
        parts
            .into_iter()
            .enumerate()
            .map(|(i, part)| {
                let mut fu = nal[0] & 0x1F;
                if i == 0 {
                    fu |= 0x80;
                }
                if i == n - 1 {
                    fu |= 0x40;
                }
                let mut p = vec![indicator, fu];
                p.extend_from_slice(part);
                p
            })
            .collect()
    }

    #[test]
    fn fu_a_fragments_rebuild_the_nal_unit_with_its_header() {
        let nal: Vec<u8> = [0x65].into_iter().chain(0..=200u8).collect();
        let frags = fu_a(&nal, 50);
        assert_eq!(frags.len(), 5);
        assert_eq!(frags[0][..2], [0x7C, 0x85], "S bit, IDR type");
        assert_eq!(frags[2][1], 0x05, "neither S nor E");
        assert_eq!(frags[4][1], 0x45, "E bit");
        let mut a = AuAssembler::default();
        for f in &frags {
            a.push(f).unwrap();
        }
        let unit = a.finish().unwrap();
        assert!(unit.key);
        assert_eq!(unit.data, au(&[&nal]));
    }

    #[test]
    fn fu_a_with_a_lost_fragment_breaks_the_unit() {
        let nal: Vec<u8> = [0x41].into_iter().chain(0..100u8).collect();
        let frags = fu_a(&nal, 30);
        // The start is lost: the continuation cannot be placed.
        let mut a = AuAssembler::default();
        assert_eq!(a.push(&frags[1]), Err(Broken::FragmentStartLost));
        // The end is lost: the access unit ends (marker) with the fragment open.
        let mut a = AuAssembler::default();
        a.push(&frags[0]).unwrap();
        a.push(&frags[1]).unwrap();
        assert_eq!(a.finish().err(), Some(Broken::FragmentEndLost));
        // The end is lost and the next NAL unit starts.
        let mut a = AuAssembler::default();
        a.push(&frags[0]).unwrap();
        assert_eq!(a.push(&[0x41, 0x01]), Err(Broken::FragmentEndLost));
        assert_eq!(a.push(&frags[0]), Err(Broken::FragmentEndLost));
        // Start and end bits together are not allowed.
        let mut a = AuAssembler::default();
        assert_eq!(a.push(&[0x7C, 0xC5, 0x00]), Err(Broken::Malformed));
    }

    #[test]
    fn interleaved_mode_types_and_corrupt_units_are_refused() {
        for t in [25u8, 26, 27, 29, 0, 30, 31] {
            assert_eq!(
                AuAssembler::default().push(&[0x60 | t, 0, 0, 0]),
                Err(Broken::Malformed),
                "type {t}"
            );
            assert_eq!(inspect(&[0x60 | t, 0x80, 0, 0]), None);
        }
        assert_eq!(
            AuAssembler::default().push(&[0xE5, 0x00]),
            Err(Broken::Malformed)
        );
        assert_eq!(inspect(&[0xE5, 0x00]), None);
    }

    #[test]
    fn inspect_reports_unit_starts_and_switch_points() {
        let info = |starts_unit, keyframe| {
            Some(PacketInfo {
                starts_unit,
                keyframe,
            })
        };
        assert_eq!(inspect(&[0x65, 0x88]), info(true, true));
        assert_eq!(inspect(&[0x41, 0x9A]), info(true, false));
        assert_eq!(inspect(&[0x7C, 0x85, 0x00]), info(true, true));
        assert_eq!(inspect(&[0x7C, 0x05, 0x00]), info(false, false));
        assert_eq!(inspect(&[0x7C]), None);
    }

    #[test]
    fn an_idr_without_parameter_sets_gets_the_latest_ones() {
        let mut a = AuAssembler::default();
        // An IDR before any SPS/PPS stays as it is.
        a.push(&[0x65, 0x01]).unwrap();
        assert_eq!(a.finish().unwrap().data, au(&[&[0x65, 0x01]]));
        a.clear();
        a.push(SPS_320X240).unwrap();
        a.push(PPS).unwrap();
        a.push(&[0x65, 0x02]).unwrap();
        assert_eq!(
            a.finish().unwrap().data,
            au(&[SPS_320X240, PPS, &[0x65, 0x02]])
        );
        a.clear();
        a.push(&[0x41, 0x03]).unwrap();
        assert_eq!(a.finish().unwrap().data, au(&[&[0x41, 0x03]]));
        a.clear();
        a.push(&[0x65, 0x04]).unwrap();
        assert_eq!(
            a.finish().unwrap().data,
            au(&[SPS_320X240, PPS, &[0x65, 0x04]])
        );
        a.clear();
        // Only the missing one is added.
        a.push(PPS).unwrap();
        a.push(&[0x65, 0x05]).unwrap();
        assert_eq!(
            a.finish().unwrap().data,
            au(&[SPS_320X240, PPS, &[0x65, 0x05]])
        );
    }

    /// A slice NAL unit whose header says first_mb 0, slice type 0, PPS 0 and `frame_num`.
    pub fn slice(header: u8, frame_num: u32, bits: u8) -> Vec<u8> {
        let mut v: u64 = 0b111;
        v = v << bits | u64::from(frame_num);
        // A trailing 1 and zero padding to whole bytes, then some slice data.
        let len = 3 + u32::from(bits) + 1;
        v = (v << 1 | 1) << (64 - len);
        let mut out = vec![header];
        out.extend_from_slice(&v.to_be_bytes()[..len.div_ceil(8) as usize]);
        out.extend_from_slice(&[0x55; 8]);
        out
    }

    #[test]
    fn frame_num_tells_whether_an_access_unit_follows_the_previous_one() {
        let bits = parse_sps(SPS_320X240).unwrap().log2_max_frame_num;
        let max = 1u32 << bits;
        let mut a = AuAssembler::default();
        let mut unit = |nals: &[&[u8]]| {
            a.clear();
            for n in nals {
                a.push(n).unwrap();
            }
            let u = a.finish().unwrap();
            (u.key, u.follows)
        };
        assert_eq!(
            unit(&[SPS_320X240, PPS, &slice(0x65, 0, bits)]),
            (true, false),
            "first"
        );
        assert_eq!(unit(&[&slice(0x41, 1, bits)]), (false, true));
        assert_eq!(
            unit(&[&slice(0x41, 3, bits)]),
            (false, false),
            "frame 2 lost"
        );
        // A non-reference picture (nal_ref_idc 0) does not count up the next one's frame_num.
        assert_eq!(unit(&[&slice(0x01, 4, bits)]), (false, true));
        assert_eq!(unit(&[&slice(0x41, 4, bits)]), (false, true));
        assert_eq!(unit(&[&slice(0x41, max - 1, bits)]), (false, false));
        assert_eq!(unit(&[&slice(0x41, 0, bits)]), (false, true), "wraps");
        // An IDR restarts at 0.
        assert_eq!(unit(&[&slice(0x65, 0, bits)]), (true, false));
        assert_eq!(unit(&[&slice(0x41, 1, bits)]), (false, true));
    }

    #[test]
    fn sps_sizes_with_cropping_and_emulation_prevention() {
        let s = parse_sps(SPS_320X240).unwrap();
        assert_eq!((s.width, s.height), (320, 240));
        assert_eq!((s.profile_idc, s.constraints, s.level_idc), (66, 0xC0, 13));
        assert_eq!((s.chroma_format_idc, s.bit_depth_luma), (1, 8));
        let s = parse_sps(SPS_320X180).unwrap();
        assert_eq!((s.width, s.height), (320, 180));
        let s = parse_sps(SPS_640X360_HIGH).unwrap();
        assert_eq!((s.width, s.height), (640, 360));
        assert_eq!(
            (s.profile_idc, s.level_idc, s.chroma_format_idc),
            (100, 30, 1)
        );
        assert_eq!((s.bit_depth_luma, s.bit_depth_chroma), (8, 8));
        assert_eq!(parse_sps(PPS), None);
        // Truncated anywhere: never a panic; cut before the picture size, no answer.
        for n in 0..SPS_640X360_HIGH.len() {
            let _ = parse_sps(&SPS_640X360_HIGH[..n]);
        }
        for n in 0..8 {
            assert_eq!(parse_sps(&SPS_640X360_HIGH[..n]), None, "truncated at {n}");
        }
        assert_eq!(
            unescape(&[0, 0, 3, 1, 0, 0, 3, 0, 3]),
            vec![0, 0, 1, 0, 0, 0, 3]
        );
    }
}
