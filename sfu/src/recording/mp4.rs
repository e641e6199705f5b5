//! An MP4 (ISO/IEC 14496-12) writer for one H.264 video track.
//!
//! Layout: `ftyp`, then `mdat` holding the samples as they come (its 64-bit size patched at
//! close), then `moov` with the sample tables, written at close when every size and time is
//! known. Samples are access units of 4-byte length-prefixed NAL units (ISO/IEC 14496-15); the
//! sample description (`avc1` + `avcC`) carries the first SPS and PPS, and keyframes keep theirs
//! in the stream too, so a resolution change mid-recording decodes.
//!
//! Times are milliseconds (timescale 1000). The file's time zero is its first sample; the writer
//! reports that sample's time on the recording's timeline ([`Mp4Writer::first_ms`]) for the
//! sidecar, as the Ogg files do.

use std::io::{self, Seek, SeekFrom, Write};

use super::h264::{NAL_PPS, SpsInfo, nal_units, parse_sps};
use crate::forward::h264::{NAL_SPS, nal_type};

const TIMESCALE: u32 = 1000;
/// The unity matrix of `mvhd` and `tkhd` (16.16 and 2.30 fixed point).
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];
/// Bytes of `ftyp` + the `mdat` header with its 64-bit size.
const MDAT_HEADER: u64 = 16;

/// The decoder configuration taken from the first keyframe.
struct Config {
    sps: Vec<u8>,
    pps: Vec<u8>,
    info: SpsInfo,
}

/// Writes one H.264 track to a seekable sink.
pub struct Mp4Writer<W: Write + Seek> {
    out: W,
    config: Option<Config>,
    /// Absolute offset of `mdat`'s 64-bit size and of its first sample byte.
    mdat_at: u64,
    data_at: u64,
    data_len: u64,
    sizes: Vec<u32>,
    /// Duration of every sample but the last, known when the next one arrives.
    durations: Vec<u32>,
    /// 1-based numbers of the keyframe samples.
    keys: Vec<u32>,
    first_ms: Option<u64>,
    last_ms: Option<u64>,
    last_step_ms: u64,
}

impl<W: Write + Seek> Mp4Writer<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            config: None,
            mdat_at: 0,
            data_at: 0,
            data_len: 0,
            sizes: Vec::new(),
            durations: Vec::new(),
            keys: Vec::new(),
            first_ms: None,
            last_ms: None,
            last_step_ms: 33,
        }
    }

    /// The picture size of the first keyframe's SPS, once one has been written.
    pub fn size(&self) -> Option<(u16, u16)> {
        self.config.as_ref().map(|c| (c.info.width, c.info.height))
    }

    /// Where the file's time zero (its first sample) lies on the recording's timeline.
    pub fn first_ms(&self) -> Option<u64> {
        self.first_ms
    }

    /// Milliseconds from the file's first sample to the end of the last one written so far.
    pub fn duration_ms(&self) -> u64 {
        match (self.first_ms, self.last_ms) {
            (Some(first), Some(last)) => last - first + self.last_step_ms,
            _ => 0,
        }
    }

    /// Shows the last frame until `end_ms` on the recording's timeline (the track ended then):
    /// a publisher that paused or froze near the end leaves a still picture, not a short file.
    pub fn hold_until(&mut self, end_ms: u64) {
        if let Some(last) = self.last_ms
            && end_ms > last
        {
            self.last_step_ms = self.last_step_ms.max(end_ms - last);
        }
    }

    /// Appends one access unit (length-prefixed NAL units) at `ms` on the recording's timeline.
    /// Nothing is written before a keyframe that carries an SPS and a PPS (nothing could decode
    /// it); times are kept strictly increasing (a decoder needs distinct decoding times).
    pub fn write_frame(&mut self, ms: u64, keyframe: bool, au: &[u8]) -> io::Result<()> {
        if self.config.is_none() {
            let Some(config) = keyframe.then(|| config_of(au)).flatten() else {
                return Ok(());
            };
            self.start(config)?;
        }
        let ms = match self.last_ms {
            Some(last) => {
                let ms = ms.max(last + 1);
                self.last_step_ms = ms - last;
                self.durations
                    .push(u32::try_from(ms - last).unwrap_or(u32::MAX));
                ms
            }
            None => {
                self.first_ms = Some(ms);
                ms
            }
        };
        self.last_ms = Some(ms);
        let size = u32::try_from(au.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "access unit over 4 GiB"))?;
        self.out.write_all(au)?;
        self.data_len += u64::from(size);
        self.sizes.push(size);
        if keyframe {
            self.keys.push(self.sizes.len() as u32);
        }
        Ok(())
    }

    /// Patches `mdat`'s size and writes `moov`.
    pub fn close(mut self) -> io::Result<W> {
        let mut moov = Vec::new();
        match &self.config {
            None => {
                // No keyframe ever arrived: a well-formed file without a track, so the
                // recording's file set is still complete.
                self.out.write_all(&ftyp())?;
                boxed(&mut moov, b"moov", |b| mvhd(b, 0, 1));
            }
            Some(config) => {
                self.durations
                    .push(u32::try_from(self.last_step_ms).unwrap_or(u32::MAX));
                let duration = self.durations.iter().map(|d| u64::from(*d)).sum::<u64>();
                let duration = u32::try_from(duration).unwrap_or(u32::MAX);
                boxed(&mut moov, b"moov", |b| {
                    mvhd(b, duration, 2);
                    boxed(b, b"trak", |b| {
                        tkhd(b, duration, config.info);
                        boxed(b, b"mdia", |b| {
                            mdhd(b, duration);
                            hdlr(b);
                            boxed(b, b"minf", |b| {
                                full_box(b, b"vmhd", 0, 1, |b| b.extend_from_slice(&[0; 8]));
                                boxed(b, b"dinf", |b| {
                                    full_box(b, b"dref", 0, 0, |b| {
                                        put32(b, 1);
                                        full_box(b, b"url ", 0, 1, |_| {});
                                    });
                                });
                                self.stbl(b, config);
                            });
                        });
                    });
                });
                let end = self.out.stream_position()?;
                self.out.seek(SeekFrom::Start(self.mdat_at))?;
                self.out
                    .write_all(&(MDAT_HEADER + self.data_len).to_be_bytes())?;
                self.out.seek(SeekFrom::Start(end))?;
            }
        }
        self.out.write_all(&moov)?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn start(&mut self, config: Config) -> io::Result<()> {
        let base = self.out.stream_position()?;
        let mut head = ftyp();
        // size 1: the real size is the 64-bit `largesize` after the type.
        put32(&mut head, 1);
        head.extend_from_slice(b"mdat");
        self.mdat_at = base + head.len() as u64;
        head.extend_from_slice(&MDAT_HEADER.to_be_bytes());
        self.data_at = base + head.len() as u64;
        self.out.write_all(&head)?;
        self.config = Some(config);
        Ok(())
    }

    fn stbl(&self, b: &mut Vec<u8>, config: &Config) {
        boxed(b, b"stbl", |b| {
            full_box(b, b"stsd", 0, 0, |b| {
                put32(b, 1);
                avc1(b, config);
            });
            // Time-to-sample, run-length coded.
            let mut runs: Vec<(u32, u32)> = Vec::new();
            for d in &self.durations {
                match runs.last_mut() {
                    Some((n, delta)) if delta == d => *n += 1,
                    _ => runs.push((1, *d)),
                }
            }
            full_box(b, b"stts", 0, 0, |b| {
                put32(b, runs.len() as u32);
                for (n, d) in &runs {
                    put32(b, *n);
                    put32(b, *d);
                }
            });
            full_box(b, b"stss", 0, 0, |b| {
                put32(b, self.keys.len() as u32);
                for k in &self.keys {
                    put32(b, *k);
                }
            });
            // One sample per chunk: the chunk offsets are the sample offsets.
            full_box(b, b"stsc", 0, 0, |b| {
                for v in [1, 1, 1, 1] {
                    put32(b, v);
                }
            });
            full_box(b, b"stsz", 0, 0, |b| {
                put32(b, 0);
                put32(b, self.sizes.len() as u32);
                for s in &self.sizes {
                    put32(b, *s);
                }
            });
            full_box(b, b"co64", 0, 0, |b| {
                put32(b, self.sizes.len() as u32);
                let mut at = self.data_at;
                for s in &self.sizes {
                    b.extend_from_slice(&at.to_be_bytes());
                    at += u64::from(*s);
                }
            });
        });
    }
}

/// SPS and PPS of a keyframe access unit, if it carries both and the SPS parses.
fn config_of(au: &[u8]) -> Option<Config> {
    let mut sps = None;
    let mut pps = None;
    for nal in nal_units(au) {
        match nal.first().map(|h| nal_type(*h)) {
            Some(NAL_SPS) if sps.is_none() => sps = Some(nal),
            Some(NAL_PPS) if pps.is_none() => pps = Some(nal),
            _ => {}
        }
    }
    let (sps, pps) = (sps?, pps?);
    let info = parse_sps(sps)?;
    // avcC stores each parameter set's length in 16 bits.
    if sps.len() > usize::from(u16::MAX) || pps.len() > usize::from(u16::MAX) {
        return None;
    }
    Some(Config {
        sps: sps.to_vec(),
        pps: pps.to_vec(),
        info,
    })
}

fn put16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_be_bytes());
}

fn put32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_be_bytes());
}

/// A box: 32-bit size (patched once the body is written), type, body.
fn boxed(b: &mut Vec<u8>, typ: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let at = b.len();
    put32(b, 0);
    b.extend_from_slice(typ);
    body(b);
    let size = (b.len() - at) as u32;
    b[at..at + 4].copy_from_slice(&size.to_be_bytes());
}

fn full_box(
    b: &mut Vec<u8>,
    typ: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    boxed(b, typ, |b| {
        put32(b, u32::from(version) << 24 | (flags & 0x00FF_FFFF));
        body(b);
    });
}

fn ftyp() -> Vec<u8> {
    let mut b = Vec::new();
    boxed(&mut b, b"ftyp", |b| {
        b.extend_from_slice(b"isom");
        put32(b, 0x200);
        for brand in [b"isom", b"iso2", b"avc1", b"mp41"] {
            b.extend_from_slice(brand);
        }
    });
    b
}

fn mvhd(b: &mut Vec<u8>, duration: u32, next_track: u32) {
    full_box(b, b"mvhd", 0, 0, |b| {
        put32(b, 0); // creation_time
        put32(b, 0); // modification_time
        put32(b, TIMESCALE);
        put32(b, duration);
        put32(b, 0x0001_0000); // rate 1.0
        put16(b, 0x0100); // volume 1.0
        b.extend_from_slice(&[0; 10]);
        MATRIX.iter().for_each(|m| put32(b, *m));
        b.extend_from_slice(&[0; 24]); // pre_defined
        put32(b, next_track);
    });
}

fn tkhd(b: &mut Vec<u8>, duration: u32, info: SpsInfo) {
    // Flags: track enabled, in movie.
    full_box(b, b"tkhd", 0, 3, |b| {
        put32(b, 0);
        put32(b, 0);
        put32(b, 1); // track_ID
        put32(b, 0);
        put32(b, duration);
        b.extend_from_slice(&[0; 8]);
        put16(b, 0); // layer
        put16(b, 0); // alternate_group
        put16(b, 0); // volume: not audio
        put16(b, 0);
        MATRIX.iter().for_each(|m| put32(b, *m));
        put32(b, u32::from(info.width) << 16);
        put32(b, u32::from(info.height) << 16);
    });
}

fn mdhd(b: &mut Vec<u8>, duration: u32) {
    full_box(b, b"mdhd", 0, 0, |b| {
        put32(b, 0);
        put32(b, 0);
        put32(b, TIMESCALE);
        put32(b, duration);
        put16(b, 0x55C4); // language "und", packed ISO-639-2/T
        put16(b, 0);
    });
}

fn hdlr(b: &mut Vec<u8>) {
    full_box(b, b"hdlr", 0, 0, |b| {
        put32(b, 0);
        b.extend_from_slice(b"vide");
        b.extend_from_slice(&[0; 12]);
        b.extend_from_slice(b"VideoHandler\0");
    });
}

/// The AVC visual sample entry (ISO/IEC 14496-15 §5.4.2) with its `avcC`.
fn avc1(b: &mut Vec<u8>, config: &Config) {
    let info = config.info;
    boxed(b, b"avc1", |b| {
        b.extend_from_slice(&[0; 6]);
        put16(b, 1); // data_reference_index
        b.extend_from_slice(&[0; 16]); // pre_defined, reserved
        put16(b, info.width);
        put16(b, info.height);
        put32(b, 0x0048_0000); // 72 dpi
        put32(b, 0x0048_0000);
        put32(b, 0);
        put16(b, 1); // frame_count
        b.extend_from_slice(&[0; 32]); // compressorname
        put16(b, 0x0018); // depth
        put16(b, 0xFFFF); // pre_defined = -1
        boxed(b, b"avcC", |b| {
            b.push(1); // configurationVersion
            b.push(info.profile_idc);
            b.push(info.constraints);
            b.push(info.level_idc);
            b.push(0xFC | 3); // lengthSizeMinusOne: 4-byte lengths
            b.push(0xE0 | 1); // one SPS
            put16(b, config.sps.len() as u16);
            b.extend_from_slice(&config.sps);
            b.push(1); // one PPS
            put16(b, config.pps.len() as u16);
            b.extend_from_slice(&config.pps);
            if matches!(info.profile_idc, 100 | 110 | 122 | 144) {
                b.push(0xFC | info.chroma_format_idc);
                b.push(0xF8 | info.bit_depth_luma.saturating_sub(8));
                b.push(0xF8 | info.bit_depth_chroma.saturating_sub(8));
                b.push(0); // numOfSequenceParameterSetExt
            }
        });
    });
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::recording::h264::tests::{PPS, SPS_320X240};
    use std::io::Cursor;

    /// One box read back: type, absolute offset of its body, body.
    #[derive(Debug, Clone)]
    pub struct Mp4Box {
        pub typ: [u8; 4],
        pub at: usize,
        pub body: Vec<u8>,
    }

    /// Reads the boxes of one level (with 64-bit sizes), checking each stays inside its parent.
    pub fn boxes(b: &[u8], base: usize) -> Vec<Mp4Box> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < b.len() {
            let size = u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            let typ: [u8; 4] = b[at + 4..at + 8].try_into().unwrap();
            let (size, head) = if size == 1 {
                let large = u64::from_be_bytes(b[at + 8..at + 16].try_into().unwrap());
                (large as usize, 16)
            } else {
                (size, 8)
            };
            assert!(size >= head && at + size <= b.len(), "box {typ:?} overruns");
            out.push(Mp4Box {
                typ,
                at: base + at + head,
                body: b[at + head..at + size].to_vec(),
            });
            at += size;
        }
        out
    }

    pub fn child<'a>(bs: &'a [Mp4Box], typ: &[u8; 4]) -> &'a Mp4Box {
        bs.iter()
            .find(|b| &b.typ == typ)
            .unwrap_or_else(|| panic!("no box {}", String::from_utf8_lossy(typ)))
    }

    /// Follows a path of container boxes from the file's top level.
    pub fn path(file: &[u8], types: &[&[u8; 4]]) -> Mp4Box {
        let (last, containers) = types.split_last().expect("a path");
        let mut level = boxes(file, 0);
        for t in containers {
            let b = child(&level, t).clone();
            level = boxes(&b.body, b.at);
        }
        child(&level, last).clone()
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    /// Entries of a full box table of `width` u32 fields each, after `skip` header u32s.
    fn table(b: &Mp4Box, skip: usize, width: usize) -> Vec<Vec<u64>> {
        let n = u32_at(&b.body, 4 * skip) as usize;
        let field = if &b.typ == b"co64" { 8 } else { 4 };
        (0..n)
            .map(|i| {
                (0..width)
                    .map(|j| {
                        let at = 4 * (skip + 1) + (i * width + j) * field;
                        if field == 8 {
                            u64::from_be_bytes(b.body[at..at + 8].try_into().unwrap())
                        } else {
                            u64::from(u32_at(&b.body, at))
                        }
                    })
                    .collect()
            })
            .collect()
    }

    fn au(nals: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for n in nals {
            out.extend_from_slice(&(n.len() as u32).to_be_bytes());
            out.extend_from_slice(n);
        }
        out
    }

    const STBL: [&[u8; 4]; 5] = [b"moov", b"trak", b"mdia", b"minf", b"stbl"];

    #[test]
    fn samples_tables_and_sample_entry_parse_back() {
        let mut w = Mp4Writer::new(Cursor::new(Vec::new()));
        // Before a keyframe with parameter sets: skipped.
        w.write_frame(900, false, &au(&[&[0x41, 1, 2]])).unwrap();
        w.write_frame(950, true, &au(&[&[0x65, 1, 2]])).unwrap();
        let key = au(&[SPS_320X240, PPS, &[0x65, 0xAA, 0xBB]]);
        w.write_frame(1_000, true, &key).unwrap();
        let mut frames = vec![key.clone()];
        for i in 1..10u64 {
            let f = au(&[&[0x41, i as u8, 0xCC]]);
            // 33.3 ms steps; frame 5 is late and comes with the previous frame's time.
            let ms = if i == 5 {
                1_000 + 4 * 100 / 3
            } else {
                1_000 + i * 100 / 3
            };
            w.write_frame(ms, false, &f).unwrap();
            frames.push(f);
        }
        assert_eq!(w.size(), Some((320, 240)));
        assert_eq!(w.first_ms(), Some(1_000));
        let file = w.close().unwrap().into_inner();
        let top = boxes(&file, 0);
        let types: Vec<&[u8; 4]> = top.iter().map(|b| &b.typ).collect();
        assert_eq!(types, vec![b"ftyp", b"mdat", b"moov"]);
        assert_eq!(&top[0].body[..4], b"isom");
        let mvhd = path(&file, &[b"moov", b"mvhd"]);
        assert_eq!(u32_at(&mvhd.body, 12), 1000, "timescale");
        // The late frame is held 1 ms after its predecessor; the last frame lasts as long as the
        // step before it.
        let stts = path(
            &file,
            &[STBL[0], STBL[1], STBL[2], STBL[3], STBL[4], b"stts"],
        );
        let durations: Vec<u64> = table(&stts, 1, 2)
            .iter()
            .flat_map(|r| std::iter::repeat_n(r[1], r[0] as usize))
            .collect();
        assert_eq!(durations, vec![33, 33, 34, 33, 1, 66, 33, 33, 34, 34]);
        assert_eq!(u32_at(&mvhd.body, 16), 334, "duration");
        let stbl = |t: &[u8; 4]| path(&file, &[STBL[0], STBL[1], STBL[2], STBL[3], STBL[4], t]);
        assert_eq!(table(&stbl(b"stss"), 1, 1), vec![vec![1]]);
        let sizes: Vec<u64> = table(&stbl(b"stsz"), 2, 1).iter().map(|r| r[0]).collect();
        let offsets: Vec<u64> = table(&stbl(b"co64"), 1, 1).iter().map(|r| r[0]).collect();
        assert_eq!(sizes.len(), 10);
        for ((size, at), frame) in sizes.iter().zip(&offsets).zip(&frames) {
            let at = *at as usize;
            assert_eq!(&file[at..at + *size as usize], &frame[..]);
        }
        // The sample entry: size and the decoder configuration with the first SPS/PPS.
        let stsd = stbl(b"stsd");
        let avc1 = &boxes(&stsd.body[8..], 0)[0];
        assert_eq!(&avc1.typ, b"avc1");
        assert_eq!(u16::from_be_bytes([avc1.body[24], avc1.body[25]]), 320);
        assert_eq!(u16::from_be_bytes([avc1.body[26], avc1.body[27]]), 240);
        let avcc = child(&boxes(&avc1.body[78..], 0), b"avcC").body.clone();
        assert_eq!(avcc[..6], [1, 0x42, 0xC0, 0x0D, 0xFF, 0xE1]);
        let sps_len = usize::from(u16::from_be_bytes([avcc[6], avcc[7]]));
        assert_eq!(&avcc[8..8 + sps_len], SPS_320X240);
        assert_eq!(avcc[8 + sps_len], 1);
        assert_eq!(&avcc[11 + sps_len..], PPS);
        let tkhd = path(&file, &[b"moov", b"trak", b"tkhd"]);
        assert_eq!(u32_at(&tkhd.body, 76), 320 << 16);
        assert_eq!(u32_at(&tkhd.body, 80), 240 << 16);
    }

    #[test]
    fn a_track_without_a_keyframe_is_still_a_well_formed_file() {
        let mut w = Mp4Writer::new(Cursor::new(Vec::new()));
        w.write_frame(0, false, &au(&[&[0x41, 1]])).unwrap();
        let file = w.close().unwrap().into_inner();
        let top = boxes(&file, 0);
        let types: Vec<&[u8; 4]> = top.iter().map(|b| &b.typ).collect();
        assert_eq!(types, vec![b"ftyp", b"moov"]);
    }
}
