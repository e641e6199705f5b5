//! A WebM (Matroska) writer for one VP8 video track.
//!
//! Layout: EBML header, then a Segment holding a SeekHead (in space reserved at the start and
//! filled at close, when every position is known), Info (TimecodeScale 1 ms; Duration patched at
//! close), Tracks (V_VP8 with the pixel size of the first keyframe), Clusters of SimpleBlocks and,
//! at the end, Cues with one point per cluster that starts at a keyframe.
//!
//! A cluster is assembled in memory and written whole, so its size is always known and a reader
//! never meets an unknown-size element; a new cluster starts at every keyframe (so every keyframe
//! is seekable) or after [`MAX_CLUSTER_MS`] so the 16-bit relative block timecode never
//! overflows.

use std::io::{self, Seek, SeekFrom, Write};

pub mod id {
    pub const EBML: u32 = 0x1A45_DFA3;
    pub const EBML_VERSION: u32 = 0x4286;
    pub const EBML_READ_VERSION: u32 = 0x42F7;
    pub const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
    pub const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
    pub const DOC_TYPE: u32 = 0x4282;
    pub const DOC_TYPE_VERSION: u32 = 0x4287;
    pub const DOC_TYPE_READ_VERSION: u32 = 0x4285;
    pub const SEGMENT: u32 = 0x1853_8067;
    pub const SEEK_HEAD: u32 = 0x114D_9B74;
    pub const SEEK: u32 = 0x4DBB;
    pub const SEEK_ID: u32 = 0x53AB;
    pub const SEEK_POSITION: u32 = 0x53AC;
    pub const VOID: u32 = 0xEC;
    pub const INFO: u32 = 0x1549_A966;
    pub const TIMECODE_SCALE: u32 = 0x2A_D7B1;
    pub const DURATION: u32 = 0x4489;
    pub const MUXING_APP: u32 = 0x4D80;
    pub const WRITING_APP: u32 = 0x5741;
    pub const TRACKS: u32 = 0x1654_AE6B;
    pub const TRACK_ENTRY: u32 = 0xAE;
    pub const TRACK_NUMBER: u32 = 0xD7;
    pub const TRACK_UID: u32 = 0x73C5;
    pub const TRACK_TYPE: u32 = 0x83;
    pub const FLAG_LACING: u32 = 0x9C;
    pub const CODEC_ID: u32 = 0x86;
    pub const VIDEO: u32 = 0xE0;
    pub const PIXEL_WIDTH: u32 = 0xB0;
    pub const PIXEL_HEIGHT: u32 = 0xBA;
    pub const CLUSTER: u32 = 0x1F43_B675;
    pub const TIMECODE: u32 = 0xE7;
    pub const SIMPLE_BLOCK: u32 = 0xA3;
    pub const CUES: u32 = 0x1C53_BB6B;
    pub const CUE_POINT: u32 = 0xBB;
    pub const CUE_TIME: u32 = 0xB3;
    pub const CUE_TRACK_POSITIONS: u32 = 0xB7;
    pub const CUE_TRACK: u32 = 0xF7;
    pub const CUE_CLUSTER_POSITION: u32 = 0xF1;
}

/// Longest cluster: a block's timecode is a signed 16-bit offset from its cluster's (±32.767 s).
pub const MAX_CLUSTER_MS: u64 = 5_000;
/// Room kept at the start of the segment for the SeekHead written at close (3 entries of at most
/// 20 bytes each plus the element header, rounded up).
const SEEK_HEAD_RESERVE: usize = 96;

fn put_id(out: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().position(|b| *b != 0).unwrap_or(3);
    out.extend_from_slice(&bytes[skip..]);
}

/// EBML variable-length size in the fewest bytes (all-ones values are reserved for "unknown").
fn put_size(out: &mut Vec<u8>, size: u64) {
    let mut len = 1;
    while len < 8 && size >= (1u64 << (7 * len)) - 1 {
        len += 1;
    }
    put_size_len(out, size, len);
}

fn put_size_len(out: &mut Vec<u8>, size: u64, len: usize) {
    let marked = size | (1u64 << (7 * len));
    out.extend_from_slice(&marked.to_be_bytes()[8 - len..]);
}

fn put_element(out: &mut Vec<u8>, id: u32, body: &[u8]) {
    put_id(out, id);
    put_size(out, body.len() as u64);
    out.extend_from_slice(body);
}

fn put_uint(out: &mut Vec<u8>, id: u32, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().position(|b| *b != 0).unwrap_or(7);
    put_element(out, id, &bytes[skip..]);
}

/// A fixed 8-byte unsigned integer, for values patched or unknown when the layout is fixed.
fn put_uint8(out: &mut Vec<u8>, id: u32, v: u64) {
    put_element(out, id, &v.to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, id: u32, s: &str) {
    put_element(out, id, s.as_bytes());
}

/// A Void element of exactly `total` bytes (at least 2), filling reserved space.
fn put_void(out: &mut Vec<u8>, total: usize) {
    // One size byte up to 127 bytes of body, else eight.
    let (size_len, body) = if total - 2 <= 126 {
        (1, total - 2)
    } else {
        (8, total - 9)
    };
    put_id(out, id::VOID);
    put_size_len(out, body as u64, size_len);
    out.resize(out.len() + body, 0);
}

/// Width and height from a VP8 keyframe's frame header (RFC 6386 §9.1).
pub fn vp8_keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.first()? & 0x01 != 0 || frame.get(3..6)? != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([*frame.get(6)?, *frame.get(7)?]) & 0x3fff;
    let h = u16::from_le_bytes([*frame.get(8)?, *frame.get(9)?]) & 0x3fff;
    (w > 0 && h > 0).then_some((w, h))
}

/// Writes one VP8 track to a seekable sink.
pub struct WebmWriter<W: Write + Seek> {
    out: W,
    /// Absolute offset of the Segment's size field and of its first body byte.
    segment_size_at: u64,
    segment_data_at: u64,
    duration_at: u64,
    info_at: u64,
    tracks_at: u64,
    started: bool,
    cluster: Vec<u8>,
    cluster_ms: u64,
    cluster_keyframe: bool,
    cues: Vec<(u64, u64)>,
    last_ms: Option<u64>,
    last_step_ms: u64,
    size: Option<(u16, u16)>,
}

impl<W: Write + Seek> WebmWriter<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            segment_size_at: 0,
            segment_data_at: 0,
            duration_at: 0,
            info_at: 0,
            tracks_at: 0,
            started: false,
            cluster: Vec::new(),
            cluster_ms: 0,
            cluster_keyframe: false,
            cues: Vec::new(),
            last_ms: None,
            last_step_ms: 33,
            size: None,
        }
    }

    /// The pixel size written into Tracks, once the first keyframe has been written.
    pub fn size(&self) -> Option<(u16, u16)> {
        self.size
    }

    /// Milliseconds from the file's time zero (the recording's start) to the end of the last
    /// frame written so far: the Duration that close writes.
    pub fn duration_ms(&self) -> u64 {
        self.last_ms.map_or(0, |l| l + self.last_step_ms)
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

    /// Appends one complete VP8 frame at `ms` (relative to the recording's start). Frames before
    /// the first keyframe are skipped (nothing could decode them); a timestamp earlier than the
    /// previous frame's is moved up to it so block times never go backwards.
    pub fn write_frame(&mut self, ms: u64, keyframe: bool, frame: &[u8]) -> io::Result<()> {
        if !self.started {
            let Some(size) = keyframe.then(|| vp8_keyframe_size(frame)).flatten() else {
                return Ok(());
            };
            self.start(size)?;
        }
        let ms = self.last_ms.map_or(ms, |last| ms.max(last));
        if let Some(last) = self.last_ms
            && ms > last
        {
            self.last_step_ms = ms - last;
        }
        self.last_ms = Some(ms);
        if self.cluster.is_empty() || keyframe || ms - self.cluster_ms >= MAX_CLUSTER_MS {
            self.flush_cluster()?;
            self.cluster_ms = ms;
            self.cluster_keyframe = keyframe;
            put_uint(&mut self.cluster, id::TIMECODE, ms);
        }
        // SimpleBlock: track number (vint), 16-bit timecode relative to the cluster, flags.
        let rel = (ms - self.cluster_ms) as i16;
        put_id(&mut self.cluster, id::SIMPLE_BLOCK);
        put_size(&mut self.cluster, (4 + frame.len()) as u64);
        self.cluster.push(0x81);
        self.cluster.extend_from_slice(&rel.to_be_bytes());
        self.cluster.push(if keyframe { 0x80 } else { 0 });
        self.cluster.extend_from_slice(frame);
        Ok(())
    }

    /// Writes the last cluster, the Cues, the duration, the SeekHead and the Segment's size.
    pub fn close(mut self) -> io::Result<W> {
        if !self.started {
            // No keyframe ever arrived: an empty but well-formed file is still written so the
            // recording's file set is complete.
            self.start((0, 0))?;
        }
        self.flush_cluster()?;
        let cues_at = self.out.stream_position()?;
        let mut cues = Vec::new();
        for (ms, pos) in &self.cues {
            let mut tp = Vec::new();
            put_uint(&mut tp, id::CUE_TRACK, 1);
            put_uint(&mut tp, id::CUE_CLUSTER_POSITION, *pos);
            let mut point = Vec::new();
            put_uint(&mut point, id::CUE_TIME, *ms);
            put_element(&mut point, id::CUE_TRACK_POSITIONS, &tp);
            put_element(&mut cues, id::CUE_POINT, &point);
        }
        if !self.cues.is_empty() {
            let mut el = Vec::new();
            put_element(&mut el, id::CUES, &cues);
            self.out.write_all(&el)?;
        }
        let end = self.out.stream_position()?;
        let duration = self.duration_ms() as f64;
        self.out.seek(SeekFrom::Start(self.duration_at))?;
        self.out.write_all(&duration.to_be_bytes())?;
        let mut size = Vec::new();
        put_size_len(&mut size, end - self.segment_data_at, 8);
        self.out.seek(SeekFrom::Start(self.segment_size_at))?;
        self.out.write_all(&size)?;
        let rel = |at: u64| at - self.segment_data_at;
        let mut seeks = Vec::new();
        let mut targets = vec![
            (id::INFO, rel(self.info_at)),
            (id::TRACKS, rel(self.tracks_at)),
        ];
        if !self.cues.is_empty() {
            targets.push((id::CUES, rel(cues_at)));
        }
        for (target, pos) in targets {
            let mut seek = Vec::new();
            let mut idb = Vec::new();
            put_id(&mut idb, target);
            put_element(&mut seek, id::SEEK_ID, &idb);
            put_uint8(&mut seek, id::SEEK_POSITION, pos);
            put_element(&mut seeks, id::SEEK, &seek);
        }
        let mut head = Vec::new();
        put_element(&mut head, id::SEEK_HEAD, &seeks);
        let fill = SEEK_HEAD_RESERVE - head.len();
        put_void(&mut head, fill);
        self.out.seek(SeekFrom::Start(self.segment_data_at))?;
        self.out.write_all(&head)?;
        self.out.seek(SeekFrom::Start(end))?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn start(&mut self, (width, height): (u16, u16)) -> io::Result<()> {
        self.started = true;
        self.size = Some((width, height));
        let base = self.out.stream_position()?;
        let mut buf = Vec::new();
        let mut ebml = Vec::new();
        put_uint(&mut ebml, id::EBML_VERSION, 1);
        put_uint(&mut ebml, id::EBML_READ_VERSION, 1);
        put_uint(&mut ebml, id::EBML_MAX_ID_LENGTH, 4);
        put_uint(&mut ebml, id::EBML_MAX_SIZE_LENGTH, 8);
        put_str(&mut ebml, id::DOC_TYPE, "webm");
        put_uint(&mut ebml, id::DOC_TYPE_VERSION, 4);
        put_uint(&mut ebml, id::DOC_TYPE_READ_VERSION, 2);
        put_element(&mut buf, id::EBML, &ebml);
        put_id(&mut buf, id::SEGMENT);
        self.segment_size_at = base + buf.len() as u64;
        // Eight bytes of "unknown" size until close patches the real one.
        buf.extend_from_slice(&[0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        self.segment_data_at = base + buf.len() as u64;
        put_void(&mut buf, SEEK_HEAD_RESERVE);
        self.info_at = base + buf.len() as u64;
        let mut info = Vec::new();
        put_uint(&mut info, id::TIMECODE_SCALE, 1_000_000);
        put_str(&mut info, id::MUXING_APP, "parley-sfu");
        put_str(&mut info, id::WRITING_APP, "parley-sfu");
        put_id(&mut info, id::DURATION);
        put_size(&mut info, 8);
        // Offset of the float inside `info`, whose header is 4 (id) + 1 (size) bytes.
        let duration_in_info = info.len();
        info.extend_from_slice(&0f64.to_be_bytes());
        put_element(&mut buf, id::INFO, &info);
        self.duration_at = self.info_at + 4 + 1 + duration_in_info as u64;
        self.tracks_at = base + buf.len() as u64;
        let mut video = Vec::new();
        put_uint(&mut video, id::PIXEL_WIDTH, u64::from(width));
        put_uint(&mut video, id::PIXEL_HEIGHT, u64::from(height));
        let mut entry = Vec::new();
        put_uint(&mut entry, id::TRACK_NUMBER, 1);
        put_uint(&mut entry, id::TRACK_UID, 1);
        put_uint(&mut entry, id::TRACK_TYPE, 1);
        put_uint(&mut entry, id::FLAG_LACING, 0);
        put_str(&mut entry, id::CODEC_ID, "V_VP8");
        put_element(&mut entry, id::VIDEO, &video);
        let mut tracks = Vec::new();
        put_element(&mut tracks, id::TRACK_ENTRY, &entry);
        put_element(&mut buf, id::TRACKS, &tracks);
        self.out.write_all(&buf)
    }

    fn flush_cluster(&mut self) -> io::Result<()> {
        if self.cluster.is_empty() {
            return Ok(());
        }
        let at = self.out.stream_position()?;
        if self.cluster_keyframe {
            self.cues.push((self.cluster_ms, at - self.segment_data_at));
        }
        let mut head = Vec::with_capacity(12);
        put_id(&mut head, id::CLUSTER);
        put_size(&mut head, self.cluster.len() as u64);
        self.out.write_all(&head)?;
        self.out.write_all(&self.cluster)?;
        self.cluster.clear();
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Cursor;

    /// One element as the test reader sees it: id, absolute offset of its body, body.
    #[derive(Debug, Clone)]
    pub struct El {
        pub id: u32,
        pub at: usize,
        pub body: Vec<u8>,
    }

    fn read_vint(b: &[u8], keep_marker: bool) -> (u64, usize) {
        let len = b[0].leading_zeros() as usize + 1;
        assert!(len <= 8, "vint length");
        let mut v = u64::from(b[0]);
        if !keep_marker {
            v &= (1u64 << (8 - len)) - 1;
        }
        for x in &b[1..len] {
            v = (v << 8) | u64::from(*x);
        }
        (v, len)
    }

    /// Reads the elements of one level, checking every size stays inside its parent.
    pub fn children(b: &[u8], base: usize) -> Vec<El> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < b.len() {
            let (id, il) = read_vint(&b[at..], true);
            let (size, sl) = read_vint(&b[at + il..], false);
            let start = at + il + sl;
            let end = start + size as usize;
            assert!(end <= b.len(), "element {id:#x} overruns its parent");
            out.push(El {
                id: id as u32,
                at: base + start,
                body: b[start..end].to_vec(),
            });
            at = end;
        }
        out
    }

    pub fn uint(b: &[u8]) -> u64 {
        b.iter().fold(0, |v, x| (v << 8) | u64::from(*x))
    }

    pub fn find(els: &[El], id: u32) -> &El {
        els.iter()
            .find(|e| e.id == id)
            .unwrap_or_else(|| panic!("no element {id:#x}"))
    }

    /// A fake VP8 keyframe of the given size, or an interframe.
    pub fn vp8_frame(key: bool, w: u16, h: u16, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len.max(10)];
        if key {
            f[0] = 0x10; // P = 0
            f[3..6].copy_from_slice(&[0x9d, 0x01, 0x2a]);
            f[6..8].copy_from_slice(&w.to_le_bytes());
            f[8..10].copy_from_slice(&h.to_le_bytes());
        } else {
            f[0] = 0x11;
        }
        f
    }

    /// A block read back: absolute ms, keyframe flag, frame bytes.
    pub type Block = (u64, bool, Vec<u8>);

    /// The segment's children and its blocks.
    pub fn blocks(file: &[u8]) -> (Vec<El>, Vec<Block>) {
        let top = children(file, 0);
        assert_eq!(top.len(), 2, "EBML header and one Segment");
        let seg = &top[1];
        let seg_els = children(&seg.body, seg.at);
        let mut out = Vec::new();
        for c in seg_els.iter().filter(|e| e.id == id::CLUSTER) {
            let els = children(&c.body, c.at);
            let tc = uint(&find(&els, id::TIMECODE).body);
            for b in els.iter().filter(|e| e.id == id::SIMPLE_BLOCK) {
                assert_eq!(b.body[0], 0x81, "track 1");
                let rel = i16::from_be_bytes([b.body[1], b.body[2]]);
                let ms = (tc as i64 + i64::from(rel)) as u64;
                out.push((ms, b.body[3] & 0x80 != 0, b.body[4..].to_vec()));
            }
        }
        (seg_els, out)
    }

    #[test]
    fn vint_sizes_are_minimal_and_avoid_the_reserved_value() {
        let enc = |v| {
            let mut o = Vec::new();
            put_size(&mut o, v);
            o
        };
        assert_eq!(enc(0), vec![0x80]);
        assert_eq!(enc(126), vec![0xfe]);
        assert_eq!(enc(127), vec![0x40, 0x7f], "0xff would mean unknown");
        assert_eq!(enc(300), vec![0x41, 0x2c]);
    }

    #[test]
    fn file_layout_parses_back() {
        let mut w = WebmWriter::new(Cursor::new(Vec::new()));
        w.write_frame(0, false, &vp8_frame(false, 0, 0, 50))
            .unwrap(); // before a keyframe
        w.write_frame(10, true, &vp8_frame(true, 640, 360, 300))
            .unwrap();
        for i in 1..100u64 {
            let key = i % 40 == 0;
            w.write_frame(10 + i * 33, key, &vp8_frame(key, 640, 360, 100))
                .unwrap();
        }
        let file = w.close().unwrap().into_inner();
        let top = children(&file, 0);
        let header = children(&top[0].body, top[0].at);
        assert_eq!(top[0].id, id::EBML);
        assert_eq!(find(&header, id::DOC_TYPE).body, b"webm");
        assert_eq!(top[1].id, id::SEGMENT);
        let (seg, blocks) = blocks(&file);
        assert_eq!(seg[0].id, id::SEEK_HEAD);
        let info = children(&find(&seg, id::INFO).body, 0);
        assert_eq!(uint(&find(&info, id::TIMECODE_SCALE).body), 1_000_000);
        let dur = f64::from_be_bytes(find(&info, id::DURATION).body[..].try_into().unwrap());
        assert_eq!(dur, (10 + 99 * 33 + 33) as f64);
        let tracks = children(&find(&seg, id::TRACKS).body, 0);
        let entry = children(&tracks[0].body, 0);
        assert_eq!(find(&entry, id::CODEC_ID).body, b"V_VP8");
        let video = children(&find(&entry, id::VIDEO).body, 0);
        assert_eq!(uint(&find(&video, id::PIXEL_WIDTH).body), 640);
        assert_eq!(uint(&find(&video, id::PIXEL_HEIGHT).body), 360);
        assert_eq!(
            blocks.len(),
            100,
            "the frame before the keyframe is skipped"
        );
        assert!(blocks[0].1);
        let keys: Vec<u64> = blocks.iter().filter(|b| b.1).map(|b| b.0).collect();
        assert_eq!(keys, vec![10, 10 + 40 * 33, 10 + 80 * 33]);
        // SeekHead entries point at the elements they name.
        let seg_body_at = top[1].at;
        for s in children(&seg[0].body, 0) {
            let f = children(&s.body, 0);
            let target = uint(&find(&f, id::SEEK_ID).body) as u32;
            let pos = uint(&find(&f, id::SEEK_POSITION).body) as usize;
            let (tid, _) = read_vint(&file[seg_body_at + pos..], true);
            assert_eq!(tid as u32, target);
        }
        // Every cue points at a cluster whose first block is a keyframe at the cue's time.
        let cues = children(&find(&seg, id::CUES).body, 0);
        assert_eq!(cues.len(), 3);
        for (cue, key_ms) in cues.iter().zip(&keys) {
            let c = children(&cue.body, 0);
            assert_eq!(uint(&find(&c, id::CUE_TIME).body), *key_ms);
            let tp = children(&find(&c, id::CUE_TRACK_POSITIONS).body, 0);
            let pos = uint(&find(&tp, id::CUE_CLUSTER_POSITION).body) as usize;
            let cluster = &children(&file[seg_body_at + pos..], seg_body_at + pos)[0];
            assert_eq!(cluster.id, id::CLUSTER);
            let els = children(&cluster.body, 0);
            assert_eq!(uint(&find(&els, id::TIMECODE).body), *key_ms);
            let first = els.iter().find(|e| e.id == id::SIMPLE_BLOCK).unwrap();
            assert_eq!(first.body[3] & 0x80, 0x80);
        }
    }

    #[test]
    fn long_gaps_between_keyframes_split_clusters_and_stay_monotonic() {
        let mut w = WebmWriter::new(Cursor::new(Vec::new()));
        w.write_frame(0, true, &vp8_frame(true, 320, 180, 40))
            .unwrap();
        for i in 1..400u64 {
            w.write_frame(i * 100, false, &vp8_frame(false, 0, 0, 20))
                .unwrap();
        }
        // A timestamp going backwards is held at the previous one.
        w.write_frame(100, false, &vp8_frame(false, 0, 0, 20))
            .unwrap();
        let file = w.close().unwrap().into_inner();
        let (_, blocks) = blocks(&file);
        assert_eq!(blocks.len(), 401);
        for pair in blocks.windows(2) {
            assert!(pair[1].0 >= pair[0].0);
        }
        assert_eq!(blocks[400].0, 39_900);
    }
}
