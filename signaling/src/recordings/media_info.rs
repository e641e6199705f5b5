//! Durations of the recording files, read from the containers themselves: the last granule
//! position of an Ogg Opus stream (RFC 7845 §4) and the Duration of a WebM segment's Info.
//! Reading a few kilobytes beats running a prober per file.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Opus granule positions count 48 kHz samples whatever the input rate (RFC 7845 §4).
const OPUS_RATE: u64 = 48_000;
/// How much of a file's end is searched for the last Ogg page.
const OGG_TAIL: u64 = 64 * 1024;
/// How much of a WebM file's start is searched for the segment's Info.
const WEBM_HEAD: u64 = 64 * 1024;

/// Playing time of an Ogg Opus file in milliseconds: the last page's granule position minus the
/// pre-skip of the `OpusHead`.
pub fn ogg_opus_duration_ms(path: &Path) -> io::Result<Option<u64>> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let mut head = vec![0; 4096.min(len) as usize];
    f.read_exact(&mut head)?;
    let Some(pre_skip) = opus_pre_skip(&head) else {
        return Ok(None);
    };
    let start = len.saturating_sub(OGG_TAIL);
    f.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::with_capacity((len - start) as usize);
    f.read_to_end(&mut tail)?;
    let Some(granule) = last_granule(&tail) else {
        return Ok(None);
    };
    Ok(Some(
        granule.saturating_sub(u64::from(pre_skip)) * 1000 / OPUS_RATE,
    ))
}

/// The pre-skip of the `OpusHead` packet in the first page.
fn opus_pre_skip(head: &[u8]) -> Option<u16> {
    let at = head.windows(8).position(|w| w == b"OpusHead")?;
    let b = head.get(at + 10..at + 12)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

/// The granule position of the last complete page in `tail` that has one (-1 means "no packet
/// ends on this page" and is skipped).
fn last_granule(tail: &[u8]) -> Option<u64> {
    let mut at = tail.len();
    while at >= 4 {
        let found = tail[..at].windows(4).rposition(|w| w == b"OggS")?;
        let header = tail.get(found..found + 27);
        if let Some(h) = header {
            let mut g = [0u8; 8];
            g.copy_from_slice(&h[6..14]);
            let granule = u64::from_le_bytes(g);
            if granule != u64::MAX {
                return Some(granule);
            }
        }
        at = found;
    }
    None
}

/// Playing time of a WebM file in milliseconds, from the segment Info's Duration (in units of
/// its TimecodeScale, nanoseconds per tick).
pub fn webm_duration_ms(path: &Path) -> io::Result<Option<u64>> {
    let mut buf = Vec::new();
    File::open(path)?.take(WEBM_HEAD).read_to_end(&mut buf)?;
    Ok(webm_duration(&buf))
}

const EBML: u32 = 0x1A45_DFA3;
const SEGMENT: u32 = 0x1853_8067;
const INFO: u32 = 0x1549_A966;
const TIMECODE_SCALE: u32 = 0x2A_D7B1;
const DURATION: u32 = 0x4489;

fn webm_duration(b: &[u8]) -> Option<u64> {
    let mut at = 0;
    // Top level: the EBML header, then the Segment, whose children hold the Info.
    while at < b.len() {
        let (id, size, data) = element(b, at)?;
        if id == SEGMENT {
            return segment_duration(b, data);
        }
        if id != EBML {
            return None;
        }
        at = data.checked_add(size?)?;
    }
    None
}

fn segment_duration(b: &[u8], mut at: usize) -> Option<u64> {
    while at < b.len() {
        let (id, size, data) = element(b, at)?;
        let size = size?;
        if id == INFO {
            let end = data.checked_add(size)?.min(b.len());
            return info_duration(&b[data..end]);
        }
        at = data.checked_add(size)?;
    }
    None
}

fn info_duration(info: &[u8]) -> Option<u64> {
    let (mut scale, mut duration) = (1_000_000u64, None);
    let mut at = 0;
    while at < info.len() {
        let (id, size, data) = element(info, at)?;
        let size = size?;
        let value = info.get(data..data.checked_add(size)?)?;
        match id {
            TIMECODE_SCALE => scale = value.iter().fold(0u64, |v, x| (v << 8) | u64::from(*x)),
            DURATION => {
                duration = match value.len() {
                    4 => Some(f64::from(f32::from_be_bytes(value.try_into().ok()?))),
                    8 => Some(f64::from_be_bytes(value.try_into().ok()?)),
                    _ => None,
                }
            }
            _ => {}
        }
        at = data + size;
    }
    let ticks = duration.filter(|d| d.is_finite() && *d >= 0.0)?;
    Some((ticks * scale as f64 / 1_000_000.0).round() as u64)
}

/// One EBML element at `at`: its id, its data size (`None`: unknown) and where its data starts.
fn element(b: &[u8], at: usize) -> Option<(u32, Option<usize>, usize)> {
    let first = *b.get(at)?;
    let id_len = first.leading_zeros() as usize + 1;
    if id_len > 4 {
        return None;
    }
    let id = b
        .get(at..at + id_len)?
        .iter()
        .fold(0u32, |v, x| (v << 8) | u32::from(*x));
    let s = at + id_len;
    let first = *b.get(s)?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 {
        return None;
    }
    let bytes = b.get(s..s + len)?;
    let mask = if len == 8 { 0 } else { 0xFFu8 >> len };
    let mut v = u64::from(bytes[0] & mask);
    let mut all_ones = bytes[0] & mask == mask;
    for x in &bytes[1..] {
        v = (v << 8) | u64::from(*x);
        all_ones &= *x == 0xFF;
    }
    let size = if all_ones {
        None
    } else {
        usize::try_from(v).ok()
    };
    Some((id, size, s + len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_sfu::recording::ogg::OggOpusWriter;
    use parley_sfu::recording::webm::WebmWriter;

    #[test]
    fn ogg_duration_is_the_last_granule_less_pre_skip() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("a.ogg");
        let mut w = OggOpusWriter::new(
            std::io::BufWriter::new(File::create(&path).expect("create")),
            7,
            vec![],
        );
        // 150 packets of 20 ms (one CELT frame each) and a 1 s gap: 4 s of samples, less the
        // 312 the decoder skips at the start.
        for _ in 0..150 {
            w.write_packet(&[0xF8, 0xFF, 0xFE]).expect("packet");
        }
        w.write_gap(48_000).expect("gap");
        w.close().expect("close");
        let expected = (150 * 960 + 48_000 - u64::from(parley_sfu::recording::ogg::PRE_SKIP)) / 48;
        assert_eq!(ogg_opus_duration_ms(&path).expect("read"), Some(expected));
    }

    #[test]
    fn webm_duration_is_read_from_the_segment_info() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("v.webm");
        let mut w = WebmWriter::new(std::io::BufWriter::new(
            File::create(&path).expect("create"),
        ));
        let key = keyframe(320, 240);
        let delta = vec![0x11, 0x02, 0x00, 0x33, 0x33];
        for i in 0..90u64 {
            let (frame, is_key) = if i % 30 == 0 {
                (&key, true)
            } else {
                (&delta, false)
            };
            w.write_frame(i * 33, is_key, frame).expect("frame");
        }
        w.close().expect("close");
        let ms = webm_duration_ms(&path).expect("read").expect("duration");
        assert!((2937..=3000).contains(&ms), "{ms}");
    }

    #[test]
    fn garbage_has_no_duration() {
        assert_eq!(webm_duration(b"not a webm file at all"), None);
        assert_eq!(last_granule(b"nothing"), None);
        assert_eq!(opus_pre_skip(b"OggS but no head"), None);
    }

    fn keyframe(w: u16, h: u16) -> Vec<u8> {
        let mut f = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a];
        f.extend_from_slice(&w.to_le_bytes());
        f.extend_from_slice(&h.to_le_bytes());
        f.resize(64, 0x55);
        f
    }
}
