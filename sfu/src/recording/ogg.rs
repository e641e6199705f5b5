//! An Ogg Opus file writer (RFC 3533 pages, RFC 7845 Opus mapping).
//!
//! Audio packets are laced onto pages of up to about a second; each page's granule position is
//! the 48 kHz sample count at the end of the last packet that completes on it, counted from the
//! first packet's TOC-derived durations (never an assumed 20 ms). The first page holds only the
//! OpusHead, the second only the OpusTags, and the last is flagged end-of-stream at [`close`].
//!
//! Lost packets are repaired the way RFC 7845 §4.1 asks: [`OggOpusWriter::write_gap`] emits
//! zero-length-frame packets (one TOC byte each) in the previous packet's configuration, so the
//! granule position advances exactly as if the audio had arrived and every decoder runs its
//! packet-loss concealment there. A bare jump of the granule position would also keep time, but
//! RFC 7845 §4 forbids gaps between the granule position and the packets' durations (a demuxer
//! walking backwards would mis-time every packet), and players treat such jumps inconsistently.
//!
//! [`close`]: OggOpusWriter::close

use std::io::{self, Write};

use super::opus_toc::{self, OPUS_RATE};

/// Encoder delay declared in OpusHead: what libopus at 48 kHz adds, which WebRTC senders use.
pub const PRE_SKIP: u16 = 312;

/// A page is written once it holds this much audio (a seek granularity of about a second).
const PAGE_SAMPLES: u64 = OPUS_RATE as u64;
/// ... or this many bytes (the format allows 255 × 255; smaller pages lose less on a crash).
const PAGE_BYTES: usize = 8_000;

const FLAG_BOS: u8 = 0x02;
const FLAG_EOS: u8 = 0x04;

/// CRC-32 as Ogg defines it: polynomial 0x04C11DB7, MSB first (not reflected), initial value 0,
/// no final XOR. Unlike zlib's CRC-32, so not borrowable from a compression crate.
pub fn ogg_crc(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut r = (i as u32) << 24;
            let mut bit = 0;
            while bit < 8 {
                r = if r & 0x8000_0000 != 0 {
                    (r << 1) ^ 0x04C1_1DB7
                } else {
                    r << 1
                };
                bit += 1;
            }
            table[i] = r;
            i += 1;
        }
        table
    };
    data.iter().fold(0u32, |crc, b| {
        (crc << 8) ^ TABLE[usize::from(((crc >> 24) as u8) ^ b)]
    })
}

/// Writes one Ogg Opus logical stream to `W`.
pub struct OggOpusWriter<W: Write> {
    out: W,
    serial: u32,
    sequence: u32,
    /// Samples of every packet handed over so far (granule position of the stream's end).
    granule: u64,
    headers_written: bool,
    comments: Vec<String>,
    /// Lacing values and data of the page being filled.
    segments: Vec<u8>,
    data: Vec<u8>,
    page_start_granule: u64,
    /// TOC of the last real packet, the template for concealment packets.
    last_toc: Option<u8>,
    /// Channel count for OpusHead, taken from the first packet's stereo bit.
    channels: u8,
    page: Vec<u8>,
}

impl<W: Write> OggOpusWriter<W> {
    /// `serial` identifies the logical stream; `comments` go into OpusTags as `KEY=value`.
    pub fn new(out: W, serial: u32, comments: Vec<String>) -> Self {
        Self {
            out,
            serial,
            sequence: 0,
            granule: 0,
            headers_written: false,
            comments,
            segments: Vec::new(),
            data: Vec::new(),
            page_start_granule: 0,
            last_toc: None,
            channels: 2,
            page: Vec::new(),
        }
    }

    /// Samples (48 kHz) written so far, concealment included; pre-skip not subtracted.
    pub fn granule(&self) -> u64 {
        self.granule
    }

    /// Appends one Opus packet. An invalid packet (empty, bad TOC framing) is refused with
    /// `InvalidData` and nothing is written, so one bad packet never corrupts the file.
    pub fn write_packet(&mut self, packet: &[u8]) -> io::Result<()> {
        let samples = opus_toc::packet_samples(packet)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an Opus packet"))?;
        // 255 lacing values of 255 bytes are one page's limit; no real Opus packet comes close
        // (1275 bytes × 48 frames), so a larger one is garbage rather than something to split.
        if packet.len() >= 255 * 255 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "Opus packet too large",
            ));
        }
        if !self.headers_written {
            self.channels = if packet[0] & 0x04 != 0 { 2 } else { 1 };
            self.write_headers()?;
        }
        self.last_toc = Some(packet[0]);
        self.push(packet, samples)
    }

    /// Covers `samples` (48 kHz) of missing audio with concealment packets (see the module
    /// docs). Before the first packet there is nothing to conceal, so the gap is ignored: the
    /// sidecar's start time already places the stream.
    pub fn write_gap(&mut self, samples: u32) -> io::Result<()> {
        let Some(toc) = self.last_toc else {
            return Ok(());
        };
        for (toc, n) in opus_toc::plc_packets(toc, samples) {
            self.push(&[toc], n)?;
        }
        Ok(())
    }

    /// Flushes the last page with the end-of-stream flag and returns the sink.
    pub fn close(mut self) -> io::Result<W> {
        if !self.headers_written {
            self.write_headers()?;
        }
        let granule = self.granule;
        self.flush_page(FLAG_EOS, granule)?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn push(&mut self, packet: &[u8], samples: u32) -> io::Result<()> {
        let lacing = packet.len() / 255 + 1;
        let page_samples = self.granule - self.page_start_granule;
        if !self.segments.is_empty()
            && (self.segments.len() + lacing > 255
                || self.data.len() + packet.len() > PAGE_BYTES
                || page_samples >= PAGE_SAMPLES)
        {
            let granule = self.granule;
            self.flush_page(0, granule)?;
        }
        // A packet of n bytes is n / 255 values of 255 and one of n % 255 (possibly 0, which
        // is what ends a packet whose length is a multiple of 255).
        self.segments
            .extend(std::iter::repeat_n(255u8, packet.len() / 255));
        self.segments.push((packet.len() % 255) as u8);
        self.data.extend_from_slice(packet);
        self.granule += u64::from(samples);
        Ok(())
    }

    fn write_headers(&mut self) -> io::Result<()> {
        self.headers_written = true;
        // OpusHead (RFC 7845 §5.1): version 1, channels, pre-skip, original rate (informative),
        // output gain 0, mapping family 0 (mono/stereo, no table).
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1);
        head.push(self.channels);
        head.extend_from_slice(&PRE_SKIP.to_le_bytes());
        head.extend_from_slice(&OPUS_RATE.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes());
        head.push(0);
        self.single_packet_page(&head, FLAG_BOS)?;
        // OpusTags (RFC 7845 §5.2): vendor string and user comments, each length-prefixed.
        let vendor = b"parley-sfu";
        let mut tags = Vec::new();
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor);
        tags.extend_from_slice(&(self.comments.len() as u32).to_le_bytes());
        for c in &self.comments {
            tags.extend_from_slice(&(c.len() as u32).to_le_bytes());
            tags.extend_from_slice(c.as_bytes());
        }
        self.single_packet_page(&tags, 0)
    }

    /// Header packets sit alone on their pages with granule position 0 (RFC 7845 §3).
    fn single_packet_page(&mut self, packet: &[u8], flags: u8) -> io::Result<()> {
        self.segments
            .extend(std::iter::repeat_n(255u8, packet.len() / 255));
        self.segments.push((packet.len() % 255) as u8);
        self.data.extend_from_slice(packet);
        self.flush_page(flags, 0)
    }

    fn flush_page(&mut self, flags: u8, granule: u64) -> io::Result<()> {
        let page = &mut self.page;
        page.clear();
        page.extend_from_slice(b"OggS");
        page.push(0); // stream structure version
        page.push(flags);
        page.extend_from_slice(&granule.to_le_bytes());
        page.extend_from_slice(&self.serial.to_le_bytes());
        page.extend_from_slice(&self.sequence.to_le_bytes());
        page.extend_from_slice(&[0; 4]); // CRC, computed over the page with this field zero
        page.push(self.segments.len() as u8);
        page.extend_from_slice(&self.segments);
        page.extend_from_slice(&self.data);
        let crc = ogg_crc(page);
        page[22..26].copy_from_slice(&crc.to_le_bytes());
        self.out.write_all(page)?;
        self.sequence += 1;
        self.segments.clear();
        self.data.clear();
        self.page_start_granule = granule;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A page as read back by the test reader.
    #[derive(Debug)]
    pub struct Page {
        pub flags: u8,
        pub granule: u64,
        pub serial: u32,
        pub sequence: u32,
        pub lacing: Vec<u8>,
        pub packets: Vec<Vec<u8>>,
    }

    /// Bit-by-bit CRC straight from the definition, independent of the table-driven one.
    fn crc_bitwise(data: &[u8]) -> u32 {
        let mut crc = 0u32;
        for &b in data {
            crc ^= u32::from(b) << 24;
            for _ in 0..8 {
                crc = if crc & 0x8000_0000 != 0 {
                    (crc << 1) ^ 0x04C1_1DB7
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    /// Parses pages, checking magic, version and each page's CRC with the bitwise CRC.
    pub fn read_pages(mut bytes: &[u8]) -> Vec<Page> {
        let mut pages = Vec::new();
        let mut partial: Vec<u8> = Vec::new();
        while !bytes.is_empty() {
            assert_eq!(&bytes[0..4], b"OggS");
            assert_eq!(bytes[4], 0);
            let n = usize::from(bytes[26]);
            let lacing = bytes[27..27 + n].to_vec();
            let body: usize = lacing.iter().map(|l| usize::from(*l)).sum();
            let len = 27 + n + body;
            let mut copy = bytes[..len].to_vec();
            let stored = u32::from_le_bytes(copy[22..26].try_into().unwrap());
            copy[22..26].fill(0);
            assert_eq!(stored, crc_bitwise(&copy), "page CRC");
            let mut packets = Vec::new();
            let mut at = 27 + n;
            for l in &lacing {
                partial.extend_from_slice(&bytes[at..at + usize::from(*l)]);
                at += usize::from(*l);
                if *l < 255 {
                    packets.push(std::mem::take(&mut partial));
                }
            }
            pages.push(Page {
                flags: bytes[5],
                granule: u64::from_le_bytes(bytes[6..14].try_into().unwrap()),
                serial: u32::from_le_bytes(bytes[14..18].try_into().unwrap()),
                sequence: u32::from_le_bytes(bytes[18..22].try_into().unwrap()),
                lacing,
                packets,
            });
            bytes = &bytes[len..];
        }
        pages
    }

    /// A 20 ms CELT fullband mono packet of `len` bytes.
    fn celt20(len: usize) -> Vec<u8> {
        let mut p = vec![0x55; len];
        p[0] = 31 << 3;
        p
    }

    #[test]
    fn crc_matches_known_vectors() {
        // CRC-32/CKSUM (same polynomial, unreflected, init 0) has check value 0x765E7680 with its
        // final XOR of 0xFFFFFFFF; Ogg has no final XOR, so its check value is the complement.
        assert_eq!(ogg_crc(b"123456789"), !0x765E_7680);
        assert_eq!(crc_bitwise(b"123456789"), 0x89A1_897F);
        assert_eq!(ogg_crc(b""), 0);
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        assert_eq!(ogg_crc(&data), crc_bitwise(&data));
    }

    #[test]
    fn header_pages_follow_rfc7845() {
        let mut w = OggOpusWriter::new(Vec::new(), 0xdead_beef, vec!["ROOM=r1".into()]);
        w.write_packet(&celt20(100)).unwrap();
        let bytes = w.close().unwrap();
        let pages = read_pages(&bytes);
        assert_eq!(pages.len(), 3);
        let head = &pages[0];
        assert_eq!(head.flags, FLAG_BOS);
        assert_eq!(head.granule, 0);
        assert_eq!(head.sequence, 0);
        assert_eq!(head.serial, 0xdead_beef);
        assert_eq!(head.packets.len(), 1);
        let h = &head.packets[0];
        assert_eq!(h.len(), 19);
        assert_eq!(&h[0..8], b"OpusHead");
        assert_eq!(h[8], 1, "version");
        assert_eq!(h[9], 1, "mono from the TOC's stereo bit");
        assert_eq!(u16::from_le_bytes([h[10], h[11]]), 312, "pre-skip");
        assert_eq!(u32::from_le_bytes(h[12..16].try_into().unwrap()), 48_000);
        assert_eq!(&h[16..19], &[0, 0, 0], "gain 0, mapping family 0");
        let tags = &pages[1];
        assert_eq!((tags.flags, tags.granule, tags.sequence), (0, 0, 1));
        assert_eq!(&tags.packets[0][0..8], b"OpusTags");
        let t = &tags.packets[0];
        let vendor_len = u32::from_le_bytes(t[8..12].try_into().unwrap()) as usize;
        assert_eq!(&t[12..12 + vendor_len], b"parley-sfu");
        let at = 12 + vendor_len;
        assert_eq!(u32::from_le_bytes(t[at..at + 4].try_into().unwrap()), 1);
        assert_eq!(&t[at + 8..], b"ROOM=r1");
        let audio = &pages[2];
        assert_eq!(audio.flags, FLAG_EOS);
        assert_eq!(audio.sequence, 2);
        assert_eq!(audio.granule, 960);
    }

    #[test]
    fn a_300_byte_packet_is_laced_255_45() {
        let mut w = OggOpusWriter::new(Vec::new(), 1, vec![]);
        w.write_packet(&celt20(300)).unwrap();
        w.write_packet(&celt20(255)).unwrap();
        let bytes = w.close().unwrap();
        let pages = read_pages(&bytes);
        assert_eq!(pages[2].lacing, vec![255, 45, 255, 0]);
        assert_eq!(pages[2].packets[0], celt20(300));
        assert_eq!(pages[2].packets[1], celt20(255));
    }

    #[test]
    fn granule_counts_toc_durations_at_the_last_completed_packet() {
        let mut w = OggOpusWriter::new(Vec::new(), 1, vec![]);
        // 60 ms SILK, then 2 × 10 ms CELT (code 1), then 2.5 ms × 3 (code 3).
        let mut expected = 0u64;
        let mut boundaries = Vec::new();
        for i in 0..200 {
            let p: Vec<u8> = match i % 3 {
                0 => vec![3 << 3, 1, 2, 3],
                1 => vec![(30 << 3) | 1, 1, 2],
                _ => vec![(16 << 3) | 3, 3, 9],
            };
            expected += u64::from(opus_toc::packet_samples(&p).unwrap());
            boundaries.push(expected);
            w.write_packet(&p).unwrap();
        }
        let bytes = w.close().unwrap();
        let pages = read_pages(&bytes);
        assert!(pages.len() > 4, "audio spans several pages");
        let mut packets = 0;
        for (i, page) in pages.iter().enumerate().skip(2) {
            assert_eq!(page.sequence as usize, i);
            packets += page.packets.len();
            assert_eq!(page.granule, boundaries[packets - 1], "page {i}");
            assert_eq!(page.flags & FLAG_EOS != 0, i == pages.len() - 1);
        }
        assert_eq!(packets, 200);
        assert_eq!(pages.last().unwrap().granule, expected);
    }

    #[test]
    fn a_lost_packet_advances_the_granule_with_concealment_packets() {
        let mut w = OggOpusWriter::new(Vec::new(), 1, vec![]);
        w.write_packet(&celt20(80)).unwrap();
        w.write_gap(2 * 960).unwrap();
        w.write_packet(&celt20(80)).unwrap();
        assert_eq!(w.granule(), 4 * 960);
        let bytes = w.close().unwrap();
        let pages = read_pages(&bytes);
        let audio: Vec<&Vec<u8>> = pages[2..].iter().flat_map(|p| &p.packets).collect();
        assert_eq!(audio.len(), 4);
        assert_eq!(audio[1], &vec![31 << 3], "TOC-only: one zero-length frame");
        assert_eq!(audio[2], &vec![31 << 3]);
        assert_eq!(pages.last().unwrap().granule, 4 * 960);
    }

    #[test]
    fn bad_packets_are_refused_without_output() {
        let mut w = OggOpusWriter::new(Vec::new(), 1, vec![]);
        assert!(w.write_packet(&[]).is_err());
        assert!(w.write_packet(&[(31 << 3) | 3]).is_err());
        assert_eq!(w.granule(), 0);
        let bytes = w.close().unwrap();
        let pages = read_pages(&bytes);
        assert_eq!(pages.len(), 3, "headers and an empty end-of-stream page");
        assert!(pages[2].packets.is_empty());
    }
}
