//! The sans-IO core of the media plane.
//!
//! [`Sfu`] owns every room, participant and peer connection. It is driven from outside:
//! datagrams go in through [`Sfu::handle_datagram`], time through [`Sfu::handle_timeout`], requests
//! through the command methods; datagrams to send come out of [`Sfu::poll_transmit`] and
//! notifications out of [`Sfu::poll_event`]. It never reads a clock or touches a socket, so tests
//! drive it with synthetic time and hand-made packets.

pub mod demux;
pub mod downtrack;
pub mod feedback_tap;
pub mod ntp;
pub mod participant;
pub mod peer;
pub mod speakers;
pub mod srtp_out;
pub mod timers;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp::packet::Packet;
use rtc::rtp_transceiver::RTCRtpTransceiverDirection;
use rtc::rtp_transceiver::RTCRtpTransceiverInit;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use crate::api::*;
use crate::engine::demux::{DatagramKind, classify, stun_local_ufrag};
use crate::engine::downtrack::{DownTrack, FanOut};
use crate::engine::participant::{Codec, PKey, Participant, Peer, PublishedTrack};
use crate::engine::speakers::RoomSpeakers;
use crate::engine::timers::TimerQueue;
use crate::forward::bwe::{LossConfig, SubscriberBwe};
use crate::forward::keyframe_requester::{KeyframeMethod, KeyframeRequest, KeyframeRequester};
use crate::recording::tap::{RecordingTap, TapOutcome};

/// Hash maps on the per-packet path use the non-cryptographic Fx hash, several times cheaper than
/// SipHash. Hash flooding is no concern: every one of these maps is bounded by what the server
/// admits (participants, their tracks, at most 8 remote addresses per peer connection).
pub type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<rustc_hash::FxHasher>>;

/// A datagram the driver must send.
#[derive(Debug)]
pub struct Transmit {
    pub local: SocketAddr,
    pub to: SocketAddr,
    pub data: BytesMut,
}

/// How often rooms run their periodic work (speaker detection, layer selection).
const ROOM_TICK: Duration = Duration::from_millis(100);
/// A participant publishes one track per source (camera, microphone, screen, screen audio); a
/// little slack for a replacement in flight. Bounds the work one client can cause.
const MAX_DECLARED_TRACKS: usize = 8;
/// Largest data-channel message relayed (chat text is capped well below this by the UI).
const MAX_DATA_MESSAGE: usize = 4096;

struct Room {
    members: Vec<PKey>,
    speakers: RoomSpeakers,
    active_speaker: Option<PKey>,
    /// Set while the room is recorded; `None` costs the forwarding path one branch.
    recording: Option<RecordingTap>,
}

/// The media plane.
pub struct Sfu {
    local_addrs: Vec<SocketAddr>,
    metrics: Arc<SfuMetrics>,
    next_key: PKey,
    /// Boxed: a participant (two peer connections) is over 10 KiB, and a map of them inline
    /// would keep up to twice that per participant in empty buckets and move it all on growth.
    participants: FastMap<PKey, Box<Participant>>,
    by_name: HashMap<(RoomId, ParticipantId), PKey>,
    rooms: FastMap<RoomId, Room>,
    by_ufrag: HashMap<String, (PKey, PeerRole)>,
    by_addr: FastMap<SocketAddr, (PKey, PeerRole)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SfuEvent>,
    /// Every peer connection's next deadline: a wake-up looks at the due ones only.
    timers: TimerQueue<(PKey, PeerRole)>,
    /// Reused list of the connections due in `handle_timeout`.
    due: Vec<(PKey, PeerRole)>,
    next_room_tick: Option<Instant>,
    /// Reused buffer for media drained from a peer connection (no allocation per packet).
    scratch: Vec<TaggedRTCMessage>,
    /// Reused list of the rewritten payloads one fan-out shares (see `FanOut`).
    rewritten: Vec<(crate::forward::vp8::Vp8Ids, bytes::Bytes)>,
    recording_events: VecDeque<RecordingEvent>,
    /// Writer threads report `Finished`/`Failed` here; drained by `poll_recording_event`.
    recording_tx: std::sync::mpsc::Sender<RecordingEvent>,
    recording_rx: std::sync::mpsc::Receiver<RecordingEvent>,
    /// Writer threads of stopped recordings, joined by `join_recordings` (at shutdown).
    recording_writers: Vec<std::thread::JoinHandle<()>>,
    /// The wall clock of sender reports, as the driver gave it (`set_wall_clock`); until then
    /// anchored at the Unix epoch on first use, which keeps reports consistent among themselves
    /// (all a receiver relates: streams to each other, reports to its own receipts).
    clock: Option<ntp::NtpClock>,
    /// Forwarded media is protected by the SFU itself where it can (see `srtp_out`).
    own_srtp: bool,
}

fn random_string(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn err(e: impl std::fmt::Display) -> SfuError {
    SfuError::Negotiation(e.to_string())
}

impl Sfu {
    /// `local_addrs` are the addresses of the sockets the driver reads from; each becomes a host
    /// candidate.
    pub fn new(local_addrs: Vec<SocketAddr>, metrics: Arc<SfuMetrics>) -> Self {
        let (recording_tx, recording_rx) = std::sync::mpsc::channel();
        Self {
            local_addrs,
            metrics,
            next_key: 1,
            participants: FastMap::default(),
            by_name: HashMap::new(),
            rooms: FastMap::default(),
            by_ufrag: HashMap::new(),
            by_addr: FastMap::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            timers: TimerQueue::new(),
            due: Vec::new(),
            next_room_tick: None,
            scratch: Vec::new(),
            rewritten: Vec::new(),
            recording_events: VecDeque::new(),
            recording_tx,
            recording_rx,
            recording_writers: Vec::new(),
            clock: None,
            own_srtp: true,
        }
    }

    pub fn metrics(&self) -> &Arc<SfuMetrics> {
        &self.metrics
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<SfuEvent> {
        self.events.pop_front()
    }

    /// The earliest instant at which [`Sfu::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.timers.next(), self.next_room_tick) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn key(&self, room: &str, participant: &str) -> Result<PKey, SfuError> {
        self.by_name
            .get(&(room.to_owned(), participant.to_owned()))
            .copied()
            .ok_or(SfuError::NoSuchParticipant)
    }

    // ----- commands -----

    pub fn join(
        &mut self,
        now: Instant,
        room: &str,
        participant: &str,
        options: ParticipantOptions,
    ) -> Result<(), SfuError> {
        let name = (room.to_owned(), participant.to_owned());
        if self.by_name.contains_key(&name) {
            return Err(SfuError::AlreadyJoined);
        }
        let key = self.next_key;
        self.next_key += 1;
        let make_peer = |role| -> Result<Peer, SfuError> {
            let ufrag = random_string(16);
            let pwd = random_string(32);
            let (pc, key_tap) =
                peer::build(now, role, &ufrag, &pwd, &self.local_addrs).map_err(err)?;
            Ok(Peer {
                pc,
                ufrag,
                deadline: None,
                connected: false,
                remote_addrs: Vec::new(),
                key_tap,
                srtp_out: None,
                media_path: None,
                next_sender_report: None,
            })
        };
        let publisher = make_peer(PeerRole::Publisher)?;
        let subscriber = make_peer(PeerRole::Subscriber)?;
        self.by_ufrag
            .insert(publisher.ufrag.clone(), (key, PeerRole::Publisher));
        self.by_ufrag
            .insert(subscriber.ufrag.clone(), (key, PeerRole::Subscriber));
        let p = Participant {
            room: room.to_owned(),
            id: participant.to_owned(),
            options,
            publisher,
            subscriber,
            declared: HashMap::new(),
            published: FastMap::default(),
            downtracks: FastMap::default(),
            downtrack_by_track: FastMap::default(),
            sub_negotiating: false,
            sub_dirty: false,
            data_channel: None,
            bwe: SubscriberBwe::new(LossConfig::default()),
        };
        self.participants.insert(key, Box::new(p));
        self.by_name.insert(name, key);
        let r = self.rooms.entry(room.to_owned()).or_insert_with(|| Room {
            members: Vec::new(),
            speakers: RoomSpeakers::new(),
            active_speaker: None,
            recording: None,
        });
        r.members.push(key);
        if self.next_room_tick.is_none() {
            self.next_room_tick = Some(now + ROOM_TICK);
        }
        self.metrics.rooms.store(
            self.rooms.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.metrics.participants.store(
            self.participants.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        // The newcomer subscribes to everything already published in the room.
        let existing: Vec<(PKey, String)> = self.rooms[room]
            .members
            .iter()
            .filter(|k| **k != key)
            .flat_map(|k| {
                self.participants
                    .get(k)
                    .map(|p| {
                        p.published
                            .keys()
                            .map(|t| (*k, t.clone()))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            })
            .collect();
        for (publisher, track) in existing {
            self.subscribe(key, publisher, &track);
        }
        self.renegotiate(now, key);
        Ok(())
    }

    pub fn publish(
        &mut self,
        now: Instant,
        room: &str,
        participant: &str,
        sdp: String,
        tracks: Vec<TrackDescriptor>,
    ) -> Result<String, SfuError> {
        let key = self.key(room, participant)?;
        let p = self
            .participants
            .get_mut(&key)
            .ok_or(SfuError::NoSuchParticipant)?;
        if tracks.len() > MAX_DECLARED_TRACKS {
            return Err(SfuError::NotAllowed(format!(
                "at most {MAX_DECLARED_TRACKS} tracks may be published"
            )));
        }
        if !p.options.can_publish && !tracks.is_empty() {
            return Err(SfuError::NotAllowed(
                "this participant may not publish".into(),
            ));
        }
        if !p.options.can_screen_share
            && tracks
                .iter()
                .any(|t| matches!(t.source, TrackSource::Screen | TrackSource::ScreenAudio))
        {
            return Err(SfuError::NotAllowed(
                "this participant may not share a screen".into(),
            ));
        }
        let offer =
            RTCSessionDescription::offer(sdp).map_err(|e| SfuError::InvalidSdp(e.to_string()))?;
        p.publisher
            .pc
            .set_remote_description(now, offer)
            .map_err(|e| SfuError::InvalidSdp(e.to_string()))?;
        let answer = p.publisher.pc.create_answer(None).map_err(err)?;
        p.publisher
            .pc
            .set_local_description(now, answer)
            .map_err(err)?;
        let sdp = p
            .publisher
            .pc
            .local_description()
            .map(|d| d.sdp)
            .ok_or_else(|| SfuError::Negotiation("no local description".into()))?;
        p.declared = tracks.into_iter().map(|t| (t.mid, t.source)).collect();
        // Tracks whose m-line the client no longer declares (a stopped screen share, a camera
        // turned off for good) are gone for everyone.
        let gone: Vec<String> = p
            .published
            .iter()
            .filter(|(_, t)| t.mid.as_ref().is_none_or(|m| !p.declared.contains_key(m)))
            .map(|(id, _)| id.clone())
            .collect();
        for track_id in gone {
            self.unpublish(now, key, &track_id);
        }
        self.drain_peer(now, key, PeerRole::Publisher);
        Ok(sdp)
    }

    pub fn subscriber_answer(
        &mut self,
        now: Instant,
        room: &str,
        participant: &str,
        sdp: String,
    ) -> Result<(), SfuError> {
        let key = self.key(room, participant)?;
        let p = self
            .participants
            .get_mut(&key)
            .ok_or(SfuError::NoSuchParticipant)?;
        if !p.sub_negotiating {
            return Err(SfuError::Negotiation(
                "no subscriber offer is outstanding".into(),
            ));
        }
        let answer =
            RTCSessionDescription::answer(sdp).map_err(|e| SfuError::InvalidSdp(e.to_string()))?;
        p.subscriber
            .pc
            .set_remote_description(now, answer)
            .map_err(|e| SfuError::InvalidSdp(e.to_string()))?;
        p.sub_negotiating = false;
        let again = std::mem::take(&mut p.sub_dirty);
        self.drain_peer(now, key, PeerRole::Subscriber);
        if again {
            self.renegotiate(now, key);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn remote_candidate(
        &mut self,
        now: Instant,
        room: &str,
        participant: &str,
        role: PeerRole,
        candidate: String,
        sdp_mid: Option<String>,
        sdp_mline_index: Option<u16>,
    ) -> Result<(), SfuError> {
        let key = self.key(room, participant)?;
        let p = self
            .participants
            .get_mut(&key)
            .ok_or(SfuError::NoSuchParticipant)?;
        if candidate.is_empty() {
            // End-of-candidates: nothing to do for an ICE-lite server.
            return Ok(());
        }
        if candidate.len() > 512 {
            return Err(SfuError::InvalidCandidate("candidate too long".into()));
        }
        let init = RTCIceCandidateInit {
            candidate,
            sdp_mid,
            sdp_mline_index,
            ..Default::default()
        };
        p.peer_mut(role)
            .pc
            .add_remote_candidate(init)
            .map_err(|e| SfuError::InvalidCandidate(e.to_string()))?;
        self.drain_peer(now, key, role);
        Ok(())
    }

    pub fn set_muted(&mut self, room: &str, participant: &str, source: TrackSource, muted: bool) {
        let Ok(key) = self.key(room, participant) else {
            return;
        };
        let mut changed = false;
        if let Some(p) = self.participants.get_mut(&key) {
            for t in p.published.values_mut() {
                if t.source == source && t.muted != muted {
                    t.muted = muted;
                    changed = true;
                }
            }
        }
        if changed {
            self.emit_tracks(key);
        }
    }

    pub fn video_size(
        &mut self,
        room: &str,
        subscriber: &str,
        publisher: &str,
        source: TrackSource,
        width: u32,
        height: u32,
    ) {
        let (Ok(sub), Ok(publ)) = (self.key(room, subscriber), self.key(room, publisher)) else {
            return;
        };
        if let Some(dt) = self
            .participants
            .get_mut(&sub)
            .and_then(|p| p.downtracks.get_mut(&(publ, source)))
        {
            dt.set_render_size(width.min(16384), height.min(16384));
        }
    }

    pub fn send_data(&mut self, now: Instant, room: &str, participant: &str, text: String) {
        if let Ok(key) = self.key(room, participant) {
            self.relay_data(now, key, &text);
        }
    }

    /// Takes a participant out of its room. Returns its whole talk time there (see
    /// [`TalkTimeTotal`]): no `SfuEvent::TalkTime` comes for it any more.
    pub fn leave(&mut self, now: Instant, room: &str, participant: &str) -> Option<TalkTimeTotal> {
        let key = self.key(room, participant).ok()?;
        self.remove_participant(now, key)
    }

    /// Takes everyone out of a room; returns their whole talk times, as [`Sfu::leave`] does.
    pub fn close_room(&mut self, now: Instant, room: &str) -> Vec<TalkTimeTotal> {
        let members = self
            .rooms
            .get(room)
            .map(|r| r.members.clone())
            .unwrap_or_default();
        members
            .into_iter()
            .filter_map(|key| self.remove_participant(now, key))
            .collect()
    }

    /// Starts recording `room` into `<dir>/<room>/` (one file per published track plus the
    /// mixed audio). Tracks published later are picked up as their first packets arrive.
    pub fn start_recording(
        &mut self,
        now: Instant,
        room: &str,
        dir: &std::path::Path,
    ) -> Result<(), SfuError> {
        let r = self.rooms.get_mut(room).ok_or(SfuError::NoSuchRoom)?;
        if r.recording.is_some() {
            return Err(SfuError::Recording(
                "the room is already being recorded".into(),
            ));
        }
        let tap = RecordingTap::start(
            room,
            dir.to_path_buf(),
            now,
            crate::recording::tap::DEFAULT_CAPACITY,
            self.recording_tx.clone(),
        )
        .map_err(|e| SfuError::Recording(e.to_string()))?;
        self.recording_events.push_back(RecordingEvent::Started {
            room: room.to_owned(),
            dir: tap.dir().clone(),
        });
        r.recording = Some(tap);
        // A video file can only begin at a keyframe: ask every video publisher of the room for
        // one now instead of waiting seconds for its next periodic keyframe.
        let members = r.members.clone();
        for key in members {
            let wanted: Vec<(String, usize)> = self
                .participants
                .get(&key)
                .into_iter()
                .flat_map(|p| p.published.iter())
                .filter(|(_, t)| t.kind == MediaKind::Video)
                .flat_map(|(id, t)| {
                    (0..t.layer_ssrcs.len())
                        .filter(|&l| t.layer_ssrcs[l].is_some())
                        .map(move |l| (id.clone(), l))
                })
                .collect();
            for (track, layer) in wanted {
                self.request_keyframe(now, key, &track, layer);
            }
        }
        Ok(())
    }

    /// Stops recording `room`; the writer finishes the files in the background and reports
    /// `RecordingEvent::Finished`. Returns whether the room was being recorded.
    pub fn stop_recording(&mut self, now: Instant, room: &str) -> bool {
        let Some(tap) = self.rooms.get_mut(room).and_then(|r| r.recording.take()) else {
            return false;
        };
        if let Some(writer) = tap.stop(now) {
            self.recording_writers.push(writer);
        }
        self.recording_events.push_back(RecordingEvent::Stopped {
            room: room.to_owned(),
        });
        true
    }

    /// Whether `room` is being recorded.
    pub fn is_recording(&self, room: &str) -> bool {
        self.rooms.get(room).is_some_and(|r| r.recording.is_some())
    }

    /// The next recording event: started/stopped/degraded from this thread, finished/failed
    /// from the writer threads.
    pub fn poll_recording_event(&mut self) -> Option<RecordingEvent> {
        self.recording_events
            .pop_front()
            .or_else(|| self.recording_rx.try_recv().ok())
    }

    /// Waits for the writer threads of stopped recordings to close their files (at shutdown,
    /// after `stop_recording`/`close_all`; blocks on the disk, so never on the media path).
    pub fn join_recordings(&mut self) {
        for w in self.recording_writers.drain(..) {
            let _ = w.join();
        }
    }

    /// Closes every connection (on shutdown); returns everyone's whole talk time, as
    /// [`Sfu::leave`] does.
    pub fn close_all(&mut self, now: Instant) -> Vec<(RoomId, TalkTimeTotal)> {
        let keys: Vec<PKey> = self.participants.keys().copied().collect();
        keys.into_iter()
            .filter_map(|key| {
                let room = self.participants.get(&key)?.room.clone();
                Some((room, self.remove_participant(now, key)?))
            })
            .collect()
    }

    // ----- input -----

    /// Feeds one datagram received on `local` from `from`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
    ) {
        SfuMetrics::add(&self.metrics.bytes_in, data.len() as u64);
        let target = match self.by_addr.get(&from) {
            Some(t) => Some(*t),
            None if classify(data) == DatagramKind::Stun => stun_local_ufrag(data)
                .and_then(|u| self.by_ufrag.get(u))
                .copied(),
            None => None,
        };
        let Some((key, role)) = target else {
            SfuMetrics::add(&self.metrics.unknown_source_datagrams, 1);
            return;
        };
        let Some(p) = self.participants.get_mut(&key) else {
            SfuMetrics::add(&self.metrics.unknown_source_datagrams, 1);
            return;
        };
        let peer = p.peer_mut(role);
        if !peer.remote_addrs.contains(&from) {
            // Learned from an authenticated-looking STUN request; rtc checks its integrity and
            // drops forgeries, and we forget the address when the participant leaves.
            if peer.remote_addrs.len() >= 8 {
                SfuMetrics::add(&self.metrics.unknown_source_datagrams, 1);
                return;
            }
            peer.remote_addrs.push(from);
            self.by_addr.insert(from, (key, role));
        }
        let msg = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: local,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        };
        if let Err(e) = peer.pc.handle_read(msg) {
            tracing::debug!(participant = %p.id, ?role, "handle_read: {e}");
            SfuMetrics::add(&self.metrics.packets_dropped, 1);
        }
        self.drain_peer(now, key, role);
    }

    /// Runs whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        // The due connections are taken out first: one whose new deadline is already due again
        // runs on the next call, not in a loop here.
        let mut due = std::mem::take(&mut self.due);
        while let Some(k) = self.timers.pop_due(now) {
            due.push(k);
        }
        for (key, role) in due.drain(..) {
            if let Some(p) = self.participants.get_mut(&key) {
                let peer = p.peer_mut(role);
                if let Err(e) = peer.pc.handle_timeout(now) {
                    tracing::debug!(?role, "handle_timeout: {e}");
                }
                peer.deadline = None;
            }
            self.drain_peer(now, key, role);
        }
        self.due = due;
        if self.next_room_tick.is_some_and(|t| t <= now) {
            self.room_tick(now);
            self.send_sender_reports(now);
            self.next_room_tick = if self.rooms.is_empty() {
                None
            } else {
                Some(now + ROOM_TICK)
            };
        }
    }

    // ----- internals -----

    /// Drains everything a peer connection produced after being touched.
    fn drain_peer(&mut self, now: Instant, key: PKey, role: PeerRole) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        let peer = p.peer_mut(role);
        while let Some(out) = peer.pc.poll_write() {
            SfuMetrics::add(&self.metrics.bytes_out, out.message.len() as u64);
            peer.note_path(
                out.transport.local_addr,
                out.transport.peer_addr,
                &out.message,
            );
            self.transmits.push_back(Transmit {
                local: out.transport.local_addr,
                to: out.transport.peer_addr,
                data: out.message,
            });
        }
        let mut events = Vec::new();
        while let Some(ev) = peer.pc.poll_event() {
            events.push(ev);
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        while let Some(msg) = peer.pc.poll_read() {
            scratch.push(msg);
        }
        let deadline = peer.pc.poll_timeout();
        if deadline != peer.deadline {
            peer.deadline = deadline;
            self.timers.set((key, role), deadline);
        }
        for ev in events {
            self.on_peer_event(now, key, role, ev);
        }
        for msg in scratch.drain(..) {
            match (role, msg.message) {
                (PeerRole::Publisher, RTCMessage::RtpPacket(track_id, packet)) => {
                    self.on_rtp(msg.now, key, &track_id, packet);
                }
                (PeerRole::Subscriber, RTCMessage::RtcpPacket(track_id, packets)) => {
                    self.on_subscriber_rtcp(now, key, &track_id, &packets);
                }
                (PeerRole::Publisher, RTCMessage::DataChannelMessage(_, m)) => {
                    if m.is_string && m.data.len() <= MAX_DATA_MESSAGE {
                        if let Ok(text) = std::str::from_utf8(&m.data) {
                            let text = text.to_owned();
                            self.relay_data(now, key, &text);
                        }
                    } else {
                        SfuMetrics::add(&self.metrics.packets_dropped, 1);
                    }
                }
                _ => {}
            }
        }
        self.scratch = scratch;
    }

    fn on_peer_event(
        &mut self,
        now: Instant,
        key: PKey,
        role: PeerRole,
        ev: RTCPeerConnectionEvent,
    ) {
        match ev {
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                let Some(p) = self.participants.get_mut(&key) else {
                    return;
                };
                let connected = state == RTCPeerConnectionState::Connected;
                let peer = p.peer_mut(role);
                if peer.connected != connected {
                    peer.connected = connected;
                    self.events.push_back(SfuEvent::PeerState {
                        room: p.room.clone(),
                        participant: p.id.clone(),
                        role,
                        connected,
                    });
                }
                if connected && role == PeerRole::Subscriber {
                    Self::start_own_srtp(
                        now,
                        &mut p.subscriber,
                        &p.id,
                        self.own_srtp,
                        &self.metrics,
                    );
                    // Everything subscribed so far needs a first keyframe now that it can flow.
                    for dt in p.downtracks.values_mut() {
                        dt.wants_keyframe = true;
                    }
                    self.start_downtracks(now, key);
                }
            }
            RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(
                RTCIceConnectionState::Connected,
            ) => {
                // We are the DTLS client of every connection. rtc starts the handshake when ICE
                // selects a pair but leaves the first flight queued until the connection's next
                // timeout (its ICE tick, up to 200 ms later); that wait was most of a join. The
                // timeout runs now (its other timers check their own deadlines), so the
                // ClientHello leaves at once. A subscriber connection is then up before the
                // room's next tick: `start_downtracks` does that tick's work for it.
                if let Some(p) = self.participants.get_mut(&key)
                    && let Err(e) = p.peer_mut(role).pc.handle_timeout(now)
                {
                    tracing::debug!(?role, "handle_timeout after ICE connected: {e}");
                }
                self.drain_writes(key, role);
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init))
                if role == PeerRole::Publisher =>
            {
                self.on_track_open(now, key, init);
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnClose(track_id))
                if role == PeerRole::Publisher =>
            {
                self.unpublish(now, key, &track_id);
            }
            RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(id))
                if role == PeerRole::Publisher =>
            {
                if let Some(p) = self.participants.get_mut(&key)
                    && let Some(dc) = p.publisher.pc.data_channel(id)
                    && dc.label() == "parley"
                {
                    p.data_channel = Some(id);
                }
            }
            _ => {}
        }
    }

    fn on_track_open(
        &mut self,
        now: Instant,
        key: PKey,
        init: rtc::peer_connection::event::RTCTrackEventInit,
    ) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        let layer = match init.rid.as_deref() {
            Some("q") | None => 0,
            Some("h") => 1,
            Some("f") => 2,
            Some(_) => 0,
        };
        if let Some(t) = p.published.get_mut(&init.track_id) {
            // Another simulcast layer of a track we already know.
            t.layer_ssrcs[layer] = Some(init.ssrc);
            t.simulcast |= init.rid.is_some();
            return;
        }
        let mid = p
            .publisher
            .pc
            .get_transceivers()
            .collect::<Vec<_>>()
            .into_iter()
            .find_map(|tid| {
                let t = p.publisher.pc.rtp_transceiver(tid)?;
                (t.receiver() == Some(init.receiver_id)).then(|| t.mid().clone())?
            });
        let Some(receiver) = p.publisher.pc.rtp_receiver(init.receiver_id) else {
            return;
        };
        let kind = match receiver.track().kind() {
            RtpCodecKind::Audio => MediaKind::Audio,
            _ => MediaKind::Video,
        };
        let codec = receiver
            .track()
            .codec(init.ssrc)
            .map(|c| c.mime_type.to_ascii_lowercase());
        let codec = match codec.as_deref() {
            Some("audio/opus") => Codec::Opus,
            Some("video/vp8") => Codec::Vp8,
            Some("video/h264") => Codec::H264,
            other => {
                tracing::info!(?other, "ignoring a track with an unsupported codec");
                return;
            }
        };
        let mut receiver = receiver;
        let audio_level_ext = receiver
            .get_parameters()
            .rtp_parameters
            .header_extensions
            .iter()
            .find(|e| e.uri == peer::AUDIO_LEVEL_URI)
            .map(|e| e.id as u8);
        let declared = mid.as_ref().and_then(|m| p.declared.get(m)).copied();
        let source = declared.unwrap_or(match kind {
            MediaKind::Audio => TrackSource::Microphone,
            MediaKind::Video => TrackSource::Camera,
        });
        // One track per source: a re-published source replaces the old one.
        let replaced: Vec<String> = p
            .published
            .iter()
            .filter(|(_, t)| t.source == source)
            .map(|(id, _)| id.clone())
            .collect();
        let mut layer_ssrcs = [None; 3];
        layer_ssrcs[layer] = Some(init.ssrc);
        p.published.insert(
            init.track_id.clone(),
            PublishedTrack {
                mid: mid.clone(),
                source,
                kind,
                receiver_id: init.receiver_id,
                codec,
                layer_ssrcs,
                simulcast: init.rid.is_some(),
                audio_level_ext,
                muted: false,
                keyframes: KeyframeRequester::new(
                    KeyframeMethod::Pli,
                    crate::forward::keyframe_requester::DEFAULT_INTERVAL,
                ),
                bitrate: crate::forward::bitrate::LayerBitrates::new(),
                resolution: [(0, 0); 3],
                keyframe_seen: [false; 3],
            },
        );
        SfuMetrics::add(&self.metrics.tracks, 1);
        tracing::info!(
            participant = %p.id,
            source = source.as_str(),
            ?codec,
            rid = ?init.rid,
            audio_level = audio_level_ext.is_some(),
            "track published"
        );
        for old in replaced {
            self.unpublish(now, key, &old);
        }
        let room = self.participants[&key].room.clone();
        let members: Vec<PKey> = self
            .rooms
            .get(&room)
            .map(|r| r.members.iter().copied().filter(|k| *k != key).collect())
            .unwrap_or_default();
        for sub in members {
            self.subscribe(sub, key, &init.track_id);
            self.renegotiate(now, sub);
        }
        self.emit_tracks(key);
    }

    /// Adds a down-track of `publisher`'s track to `sub`'s subscriber connection (no offer yet).
    fn subscribe(&mut self, sub: PKey, publisher: PKey, track_id: &str) {
        let Some(pubp) = self.participants.get(&publisher) else {
            return;
        };
        let Some(track) = pubp.published.get(track_id) else {
            return;
        };
        let (source, kind, codec) = (track.source, track.kind, track.codec);
        let publisher_id = pubp.id.clone();
        let Some(s) = self.participants.get_mut(&sub) else {
            return;
        };
        if !s.options.can_subscribe || s.downtracks.contains_key(&(publisher, source)) {
            return;
        }
        let (mime, clock_rate, channels, fmtp, pt) = match codec {
            Codec::Opus => (
                "audio/opus",
                48000,
                2,
                "minptime=10;useinbandfec=1",
                peer::PT_OPUS,
            ),
            Codec::Vp8 => ("video/VP8", 90000, 0, "", peer::PT_VP8),
            Codec::H264 => ("video/H264", 90000, 0, peer::H264_FMTP, peer::PT_H264),
        };
        let ssrc: u32 = rand::random();
        let out_track_id = format!("{publisher_id}:{}", source.as_str());
        let track = MediaStreamTrack::new(
            publisher_id.clone(),
            out_track_id.clone(),
            out_track_id.clone(),
            match kind {
                MediaKind::Audio => RtpCodecKind::Audio,
                MediaKind::Video => RtpCodecKind::Video,
            },
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: RTCRtpCodec {
                    mime_type: mime.to_owned(),
                    clock_rate,
                    channels,
                    sdp_fmtp_line: fmtp.to_owned(),
                    rtcp_feedback: vec![],
                },
                ..Default::default()
            }],
        );
        let init = RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Sendonly,
            streams: vec![publisher_id],
            send_encodings: vec![],
        };
        let tid = match s
            .subscriber
            .pc
            .add_transceiver_from_track(track, Some(init))
        {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("cannot add a down-track: {e}");
                return;
            }
        };
        let Some(sender_id) = s
            .subscriber
            .pc
            .rtp_transceiver(tid)
            .and_then(|t| t.sender())
        else {
            return;
        };
        let dt = DownTrack::new(
            publisher,
            source,
            kind,
            sender_id,
            out_track_id.clone(),
            ssrc,
            pt,
            clock_rate,
            codec,
        );
        s.downtracks.insert((publisher, source), Box::new(dt));
        s.downtrack_by_track
            .insert(out_track_id, (publisher, source));
    }

    fn unpublish(&mut self, now: Instant, key: PKey, track_id: &str) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        let Some(track) = p.published.remove(track_id) else {
            return;
        };
        self.metrics
            .tracks
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let room = p.room.clone();
        if let Some(tap) = self.rooms.get_mut(&room).and_then(|r| r.recording.as_mut()) {
            tap.close_track(key, track.source, now);
        }
        let members: Vec<PKey> = self
            .rooms
            .get(&room)
            .map(|r| r.members.iter().copied().filter(|k| *k != key).collect())
            .unwrap_or_default();
        for sub in members {
            self.drop_downtrack(sub, (key, track.source));
            self.renegotiate(now, sub);
        }
        self.emit_tracks(key);
    }

    fn drop_downtrack(&mut self, sub: PKey, dkey: (PKey, TrackSource)) {
        let Some(s) = self.participants.get_mut(&sub) else {
            return;
        };
        if let Some(dt) = s.downtracks.remove(&dkey) {
            s.downtrack_by_track.remove(&dt.track_id);
            if let Err(e) = s.subscriber.pc.remove_track(dt.sender_id) {
                tracing::debug!("remove_track: {e}");
            }
        }
    }

    /// Sends a fresh subscriber offer, or marks one as needed when an offer is already out.
    fn renegotiate(&mut self, now: Instant, key: PKey) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        if p.sub_negotiating {
            p.sub_dirty = true;
            return;
        }
        if p.downtracks.is_empty() && p.subscriber.pc.current_remote_description().is_none() {
            // Nothing to receive yet and nothing negotiated: no offer needed.
            return;
        }
        let offer = match p.subscriber.pc.create_offer(None) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!("create_offer: {e}");
                return;
            }
        };
        if let Err(e) = p.subscriber.pc.set_local_description(now, offer) {
            tracing::warn!("set_local_description: {e}");
            return;
        }
        let Some(sdp) = p.subscriber.pc.local_description().map(|d| d.sdp) else {
            return;
        };
        let mut tracks = Vec::new();
        let tids: Vec<_> = p.subscriber.pc.get_transceivers().collect();
        for tid in tids {
            let Some(t) = p.subscriber.pc.rtp_transceiver(tid) else {
                continue;
            };
            let (Some(mid), Some(sender)) = (t.mid().clone(), t.sender()) else {
                continue;
            };
            if let Some((dkey, dt)) = p.downtracks.iter().find(|(_, d)| d.sender_id == sender) {
                tracks.push((mid, dkey.0, dt.source, dt.kind));
            }
        }
        let tracks = tracks
            .into_iter()
            .filter_map(|(mid, publ, source, kind)| {
                Some(SubscribedTrack {
                    mid,
                    participant_id: self.participants.get(&publ)?.id.clone(),
                    source,
                    kind,
                })
            })
            .collect();
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        p.sub_negotiating = true;
        self.events.push_back(SfuEvent::SubscriberOffer {
            room: p.room.clone(),
            participant: p.id.clone(),
            sdp,
            tracks,
        });
        self.drain_peer(now, key, PeerRole::Subscriber);
    }

    fn emit_tracks(&mut self, key: PKey) {
        let Some(p) = self.participants.get(&key) else {
            return;
        };
        let mut tracks: Vec<TrackState> = p
            .published
            .values()
            .map(|t| TrackState {
                source: t.source,
                muted: t.muted,
            })
            .collect();
        tracks.sort_by_key(|t| t.source.as_str());
        self.events.push_back(SfuEvent::TracksChanged {
            room: p.room.clone(),
            participant: p.id.clone(),
            tracks,
        });
    }

    /// Removes a participant with its connections and tracks; returns its whole talk time.
    fn remove_participant(&mut self, now: Instant, key: PKey) -> Option<TalkTimeTotal> {
        let p = self.participants.get(&key)?;
        let room = p.room.clone();
        let track_ids: Vec<String> = p.published.keys().cloned().collect();
        for t in track_ids {
            self.unpublish(now, key, &t);
        }
        let mut p = self.participants.remove(&key)?;
        self.by_name.remove(&(p.room.clone(), p.id.clone()));
        for role in [PeerRole::Publisher, PeerRole::Subscriber] {
            let peer = p.peer_mut(role);
            self.timers.remove((key, role));
            self.by_ufrag.remove(&peer.ufrag);
            for a in &peer.remote_addrs {
                self.by_addr.remove(a);
            }
            let _ = peer.pc.close();
            while let Some(out) = peer.pc.poll_write() {
                self.transmits.push_back(Transmit {
                    local: out.transport.local_addr,
                    to: out.transport.peer_addr,
                    data: out.message,
                });
            }
        }
        let mut talk = None;
        if let Some(r) = self.rooms.get_mut(&room) {
            r.members.retain(|k| *k != key);
            let total = r.speakers.remove(key, now);
            talk = Some(TalkTimeTotal {
                participant: p.id.clone(),
                speaking_ms: u64::try_from(total.as_millis()).unwrap_or(u64::MAX),
            });
            if r.active_speaker == Some(key) {
                r.active_speaker = None;
                self.events.push_back(SfuEvent::ActiveSpeaker {
                    room: room.clone(),
                    participant: None,
                });
            }
            if r.members.is_empty() {
                // The last one out ends the recording too: its files are finished, not lost.
                if r.recording.is_some() {
                    self.stop_recording(now, &room);
                }
                self.rooms.remove(&room);
            }
        }
        self.metrics.rooms.store(
            self.rooms.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.metrics.participants.store(
            self.participants.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        talk
    }

    /// Relays a chat/reaction message to everyone else in the room, stamped with who sent it.
    fn relay_data(&mut self, now: Instant, from: PKey, text: &str) {
        let Some(p) = self.participants.get(&from) else {
            return;
        };
        let Ok(mut value) = serde_json::from_str::<serde_json::Value>(text) else {
            return;
        };
        let Some(obj) = value.as_object_mut() else {
            return;
        };
        let kind = obj.get("type").and_then(|t| t.as_str()).unwrap_or_default();
        if kind != "chat" && kind != "reaction" {
            return;
        }
        obj.insert("from".into(), p.id.clone().into());
        obj.insert("display_name".into(), p.options.display_name.clone().into());
        let out = value.to_string();
        let room = p.room.clone();
        self.events.push_back(SfuEvent::Data {
            room: room.clone(),
            participant: p.id.clone(),
            text: text.to_owned(),
        });
        let members: Vec<PKey> = self
            .rooms
            .get(&room)
            .map(|r| r.members.iter().copied().filter(|k| *k != from).collect())
            .unwrap_or_default();
        for k in members {
            if let Some(p) = self.participants.get_mut(&k)
                && let Some(id) = p.data_channel
                && let Some(mut dc) = p.publisher.pc.data_channel(id)
            {
                if let Err(e) = dc.send_text(now, out.clone()) {
                    tracing::debug!("data channel send: {e}");
                }
                self.drain_peer(now, k, PeerRole::Publisher);
            }
        }
    }

    /// One RTP packet from a publisher: update the track's state, then fan out.
    fn on_rtp(&mut self, now: Instant, key: PKey, track_id: &str, packet: Packet) {
        SfuMetrics::add(&self.metrics.packets_in, 1);
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        let Some(track) = p.published.get_mut(track_id) else {
            return;
        };
        let layer = match track.layer_of(packet.header.ssrc) {
            Some(l) => l,
            None => {
                // A layer whose OnOpen has not been seen yet: learn it by its rid.
                let rid = p
                    .publisher
                    .pc
                    .rtp_receiver(track.receiver_id)
                    .and_then(|r| r.track().rid(packet.header.ssrc).cloned());
                let Some(layer) = rid.as_deref().and_then(layer_from_rid) else {
                    return;
                };
                track.layer_ssrcs[layer] = Some(packet.header.ssrc);
                layer
            }
        };
        if packet.payload.is_empty() {
            // Padding-only (bandwidth probing): neither media nor a sign of a live layer.
            return;
        }
        track.bitrate.on_packet(layer, packet.payload.len(), now);
        let keyframe = match track.codec {
            Codec::Vp8 => crate::forward::vp8::is_keyframe(&packet.payload),
            Codec::H264 => crate::forward::h264::is_keyframe(&packet.payload),
            Codec::Opus => false,
        };
        if keyframe {
            track.keyframes.on_keyframe(layer);
            track.keyframe_seen[layer] = true;
            if track.codec == Codec::Vp8
                && let Some(size) = vp8_keyframe_size(&packet.payload)
            {
                track.resolution[layer] = size;
            }
        }
        let (source, muted, codec) = (track.source, track.muted, track.codec);
        let audio_level = track
            .audio_level_ext
            .and_then(|ext| packet.header.get_extension(ext));
        let Some(r) = self.rooms.get_mut(&p.room) else {
            return;
        };
        if let Some(level) = audio_level {
            r.speakers.observe(key, &level, now);
        }
        if muted {
            // Muted media is neither forwarded nor recorded (people muted expect not to be heard).
            return;
        }
        if let Some(tap) = &mut r.recording {
            let (codec, name) = (track.codec, p.id.as_str());
            if let TapOutcome::Dropped { report: true } =
                tap.on_rtp(key, name, source, codec, layer, &packet, now)
            {
                self.recording_events.push_back(RecordingEvent::Degraded {
                    room: p.room.clone(),
                    dropped: tap.dropped(),
                });
            }
        }
        // The member list is borrowed out of the room for the fan-out (nothing below touches
        // rooms) and put back after: no clone and no room lookup per packet.
        let members = std::mem::take(&mut r.members);
        let mut rewritten = std::mem::take(&mut self.rewritten);
        let mut fan = FanOut::new(&packet, codec, keyframe, &mut rewritten);
        let mut keyframe_wanted: Option<usize> = None;
        for &sub in &members {
            if sub == key {
                continue;
            }
            let Some(s) = self.participants.get_mut(&sub) else {
                continue;
            };
            if !s.subscriber.connected {
                // Until DTLS is up nothing can be sent; forwarding now would only open a gap in
                // the subscriber's sequence numbers.
                continue;
            }
            let Some(dt) = s.downtracks.get_mut(&(key, source)) else {
                continue;
            };
            let out = dt.forward(&mut fan, now);
            if let Some(l) = dt.keyframe_wanted() {
                keyframe_wanted = Some(keyframe_wanted.map_or(l, |k| k.min(l)));
            }
            let Some(out) = out else {
                continue;
            };
            if let Some(srtp) = &mut s.subscriber.srtp_out {
                Self::send_own(srtp, &out, &self.metrics, &mut self.transmits);
                continue;
            }
            // rtc routes a written packet by its SSRC and does not read the track id, so none is
            // copied per packet (an empty `String` does not allocate).
            let msg = TaggedRTCMessage {
                now,
                message: RTCMessage::RtpPacket(String::new(), out),
            };
            match s.subscriber.pc.handle_write(msg) {
                Ok(()) => SfuMetrics::add(&self.metrics.packets_out, 1),
                Err(e) => {
                    tracing::trace!("forward: {e}");
                    SfuMetrics::add(&self.metrics.packets_dropped, 1);
                }
            }
            Self::drain_forwarded(&mut s.subscriber, &self.metrics, &mut self.transmits);
        }
        // `fan` ends here: its shared payloads are released with the scratch list's contents.
        rewritten.clear();
        self.rewritten = rewritten;
        if let Some(p) = self.participants.get(&key)
            && let Some(r) = self.rooms.get_mut(&p.room)
        {
            r.members = members;
        }
        if let Some(l) = keyframe_wanted {
            self.request_keyframe(now, key, track_id, l);
        }
    }

    /// Protects a forwarded packet with the subscriber connection's own SRTP context and queues
    /// it for the selected pair (see `srtp_out`: rtc's write pipeline is not walked).
    fn send_own(
        srtp: &mut srtp_out::OutboundSrtp,
        packet: &Packet,
        metrics: &SfuMetrics,
        transmits: &mut VecDeque<Transmit>,
    ) -> bool {
        match srtp.protect(packet) {
            Ok(data) => {
                SfuMetrics::add(&metrics.packets_out, 1);
                SfuMetrics::add(&metrics.bytes_out, data.len() as u64);
                transmits.push_back(Transmit {
                    local: srtp.local,
                    to: srtp.to,
                    data,
                });
                true
            }
            Err(e) => {
                tracing::trace!("forward: {e}");
                SfuMetrics::add(&metrics.packets_dropped, 1);
                false
            }
        }
    }

    /// The datagram of one packet just written to a subscriber connection through rtc (the
    /// fan-out path of a connection that did not negotiate AES-GCM, see `srtp_out`).
    ///
    /// Every `poll_write` runs the whole rtc write pipeline, so the usual drain-until-`None`
    /// costs a second, empty pass per forwarded packet (5 % of the fan-out's instructions). A
    /// written RTP packet leaves as exactly one datagram through our subscriber interceptors
    /// (the feedback tap only: no pacer, FEC or RTX), and anything else a connection queues
    /// (reports, RTCP) is drained in full by `drain_peer` after its timers and datagrams, so one
    /// call is enough; should a datagram ever be left, the next drain of the connection sends it.
    /// No handler of a subscriber connection arms a timer on an RTP write, so its deadline is
    /// not asked for either (that walks the pipeline once more).
    fn drain_forwarded(peer: &mut Peer, metrics: &SfuMetrics, transmits: &mut VecDeque<Transmit>) {
        if let Some(out) = peer.pc.poll_write() {
            SfuMetrics::add(&metrics.bytes_out, out.message.len() as u64);
            peer.note_path(
                out.transport.local_addr,
                out.transport.peer_addr,
                &out.message,
            );
            transmits.push_back(Transmit {
                local: out.transport.local_addr,
                to: out.transport.peer_addr,
                data: out.message,
            });
        }
    }

    /// Once a subscriber connection is up (DTLS done, so its SRTP keys derived), forwarded media
    /// switches to the SFU's own SRTP, for the profiles `srtp_out` supports (both the SFU
    /// offers), unless turned off with `set_own_srtp`.
    fn start_own_srtp(
        now: Instant,
        peer: &mut Peer,
        participant: &str,
        enabled: bool,
        metrics: &SfuMetrics,
    ) {
        if peer.srtp_out.is_some() {
            return;
        }
        let (Some(tap), Some((local, to))) = (&peer.key_tap, peer.media_path) else {
            return;
        };
        // The negotiated profile, once per connection (the statistics are built for this).
        let profile = peer
            .pc
            .get_stats(now, rtc::statistics::StatsSelector::None)
            .transport()
            .and_then(|t| srtp_out::profile_named(&t.srtp_cipher));
        match profile
            .filter(|_| enabled)
            .and_then(|p| tap.outbound_keys(p))
        {
            Some(keys) => match srtp_out::OutboundSrtp::new(&keys, tap.plain_crypto(), local, to) {
                Ok(out) => {
                    peer.srtp_out = Some(out);
                    SfuMetrics::add(&metrics.own_srtp_connections, 1);
                }
                Err(e) => {
                    tracing::warn!(participant, "own SRTP context: {e}");
                    SfuMetrics::add(&metrics.rtc_srtp_connections, 1);
                }
            },
            None => {
                tracing::debug!(participant, "subscriber media stays on rtc's SRTP path");
                SfuMetrics::add(&metrics.rtc_srtp_connections, 1);
            }
        }
    }

    /// Sender reports for every connected subscriber whose interval is up, one compound RTCP
    /// packet of at most `SENDER_REPORTS_PER_PACKET` reports at a time (kept under the MTU).
    fn send_sender_reports(&mut self, now: Instant) {
        const SENDER_REPORTS_PER_PACKET: usize = 16;
        let ntp_time = self
            .clock
            .get_or_insert_with(|| ntp::NtpClock::new(now, std::time::UNIX_EPOCH))
            .ntp(now);
        let mut due = Vec::new();
        for (&key, p) in &mut self.participants {
            let peer = &mut p.subscriber;
            if !peer.connected || peer.next_sender_report.is_some_and(|t| t > now) {
                continue;
            }
            peer.next_sender_report = Some(now + peer::SENDER_REPORT_INTERVAL);
            let reports: Vec<Box<dyn rtc::rtcp::Packet>> = p
                .downtracks
                .values()
                .filter_map(|d| d.sender_report(now, ntp_time))
                .map(|r| Box::new(r) as Box<dyn rtc::rtcp::Packet>)
                .collect();
            if reports.is_empty() {
                continue;
            }
            let mut reports = reports.into_iter().peekable();
            while reports.peek().is_some() {
                let chunk: Vec<_> = reports.by_ref().take(SENDER_REPORTS_PER_PACKET).collect();
                let msg = TaggedRTCMessage {
                    now,
                    message: RTCMessage::RtcpPacket(String::new(), chunk),
                };
                if let Err(e) = peer.pc.handle_write(msg) {
                    tracing::trace!("sender report: {e}");
                }
            }
            due.push(key);
        }
        for key in due {
            self.drain_writes(key, PeerRole::Subscriber);
        }
    }

    /// Only the outgoing datagrams of a peer (after writes, where nothing else can be pending).
    fn drain_writes(&mut self, key: PKey, role: PeerRole) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        let peer = p.peer_mut(role);
        while let Some(out) = peer.pc.poll_write() {
            SfuMetrics::add(&self.metrics.bytes_out, out.message.len() as u64);
            peer.note_path(
                out.transport.local_addr,
                out.transport.peer_addr,
                &out.message,
            );
            self.transmits.push_back(Transmit {
                local: out.transport.local_addr,
                to: out.transport.peer_addr,
                data: out.message,
            });
        }
        let deadline = peer.pc.poll_timeout();
        if deadline != peer.deadline {
            peer.deadline = deadline;
            self.timers.set((key, role), deadline);
        }
    }

    /// Chooses the layer of each of `sub`'s down-tracks and asks for their first keyframes now,
    /// rather than at the room's next tick.
    ///
    /// A down-track forwards nothing until it has a layer, and the room tick (every
    /// `ROOM_TICK`) is what chooses it. A subscriber connection used to take at least one ICE
    /// tick (200 ms) to come up, so a room tick had always run by then; now that the handshake
    /// starts at once (see `OnIceConnectionStateChangeEvent` above) the connection can be up
    /// within milliseconds of the offer, and the first keyframe then found no layer chosen and
    /// was dropped, leaving the subscriber without video until the publisher's next keyframe.
    fn start_downtracks(&mut self, now: Instant, sub: PKey) {
        let Some(s) = self.participants.get(&sub) else {
            return;
        };
        type LayerView = (crate::forward::layer_selector::Layers, [Option<u32>; 3]);
        let views: Vec<((PKey, TrackSource), String, LayerView)> = s
            .downtracks
            .keys()
            .filter_map(|&(publ, source)| {
                let (tid, t) = self
                    .participants
                    .get(&publ)?
                    .published
                    .iter()
                    .find(|(_, t)| t.source == source)?;
                Some(((publ, source), tid.clone(), (t.layers(now), t.layer_ssrcs)))
            })
            .collect();
        let Some(s) = self.participants.get_mut(&sub) else {
            return;
        };
        let share = video_share(s.bwe.estimate(), &s.downtracks);
        let mut wanted = Vec::new();
        for (dkey, tid, (layers, ssrcs)) in views {
            if let Some(dt) = s.downtracks.get_mut(&dkey) {
                dt.select_layer(&layers, &ssrcs, share, now);
                if let Some(l) = dt.keyframe_wanted() {
                    wanted.push((dkey.0, tid, l));
                }
            }
        }
        for (publ, tid, layer) in wanted {
            self.request_keyframe(now, publ, &tid, layer);
        }
    }

    /// Asks a publisher for a keyframe on one layer; the requester coalesces requests within its
    /// interval and sends the pending one when the interval has passed (see `room_tick`).
    fn request_keyframe(&mut self, now: Instant, key: PKey, track_id: &str, layer: usize) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        let Some(track) = p.published.get_mut(track_id) else {
            return;
        };
        if let Some(req) = track.keyframes.request(layer, now) {
            self.send_keyframe_request(now, key, track_id, req);
        }
    }

    fn send_keyframe_request(
        &mut self,
        now: Instant,
        key: PKey,
        track_id: &str,
        req: KeyframeRequest,
    ) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        let Some(track) = p.published.get(track_id) else {
            return;
        };
        let layer = match req {
            KeyframeRequest::Pli { layer } | KeyframeRequest::Fir { layer, .. } => layer,
        };
        let Some(ssrc) = track.layer_ssrcs.get(layer).copied().flatten() else {
            return;
        };
        let packet: Box<dyn rtc::rtcp::Packet> = match req {
            KeyframeRequest::Pli { .. } => Box::new(PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc: ssrc,
            }),
            KeyframeRequest::Fir { seq_nr, .. } => Box::new(FullIntraRequest {
                sender_ssrc: 0,
                media_ssrc: ssrc,
                fir: vec![rtc::rtcp::payload_feedbacks::full_intra_request::FirEntry {
                    ssrc,
                    sequence_number: seq_nr,
                }],
            }),
        };
        let receiver_id = track.receiver_id;
        if let Some(mut r) = p.publisher.pc.rtp_receiver(receiver_id)
            && r.write_rtcp(now, vec![packet]).is_ok()
        {
            SfuMetrics::add(&self.metrics.plis_sent, 1);
        }
        self.drain_writes(key, PeerRole::Publisher);
    }

    fn on_subscriber_rtcp(
        &mut self,
        now: Instant,
        sub: PKey,
        track_id: &str,
        packets: &[Box<dyn rtc::rtcp::Packet>],
    ) {
        let Some(s) = self.participants.get_mut(&sub) else {
            return;
        };
        let Some(dkey) = s.downtrack_by_track.get(track_id).copied() else {
            return;
        };
        let mut keyframe = false;
        for pkt in packets {
            let any = pkt.as_any();
            if any.downcast_ref::<PictureLossIndication>().is_some()
                || any.downcast_ref::<FullIntraRequest>().is_some()
            {
                SfuMetrics::add(&self.metrics.plis_received, 1);
                keyframe = true;
            } else if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                SfuMetrics::add(&self.metrics.nacks_received, 1);
                let Some(dt) = s.downtracks.get_mut(&dkey) else {
                    continue;
                };
                let seqs = nack.nacks.iter().flat_map(|n| n.packet_list());
                let resend = dt.nack(seqs, now);
                for pkt in resend {
                    if let Some(srtp) = &mut s.subscriber.srtp_out {
                        if Self::send_own(srtp, &pkt, &self.metrics, &mut self.transmits) {
                            SfuMetrics::add(&self.metrics.retransmissions, 1);
                        }
                        continue;
                    }
                    // As in the fan-out: rtc routes by SSRC, the track id is not read.
                    let msg = TaggedRTCMessage {
                        now,
                        message: RTCMessage::RtpPacket(String::new(), pkt),
                    };
                    if s.subscriber.pc.handle_write(msg).is_ok() {
                        SfuMetrics::add(&self.metrics.retransmissions, 1);
                    }
                }
            } else if let Some(remb) = any.downcast_ref::<ReceiverEstimatedMaximumBitrate>() {
                if remb.bitrate.is_finite() && remb.bitrate >= 0.0 {
                    s.bwe.on_remb(remb.bitrate as u64);
                }
            } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                for report in &rr.reports {
                    if s.downtracks.values().any(|d| d.ssrc == report.ssrc) {
                        s.bwe.on_receiver_report(report.fraction_lost, now);
                    }
                }
            }
        }
        self.drain_writes(sub, PeerRole::Subscriber);
        if keyframe {
            let layer = self
                .participants
                .get(&sub)
                .and_then(|s| s.downtracks.get(&dkey))
                .and_then(|d| d.current_layer());
            let publisher = dkey.0;
            let track_id = self.participants.get(&publisher).and_then(|p| {
                p.published
                    .iter()
                    .find(|(_, t)| t.source == dkey.1)
                    .map(|(id, _)| id.clone())
            });
            if let (Some(layer), Some(track_id)) = (layer, track_id) {
                self.request_keyframe(now, publisher, &track_id, layer);
            }
        }
    }

    /// Periodic work: active speaker, talk time, layer choice from bandwidth estimates, and
    /// keyframe requests that waited for their interval.
    fn room_tick(&mut self, now: Instant) {
        let rooms: Vec<RoomId> = self.rooms.keys().cloned().collect();
        for room in rooms {
            let Some(r) = self.rooms.get_mut(&room) else {
                continue;
            };
            if let Some(dominant) = r.speakers.tick(now)
                && dominant != r.active_speaker
            {
                tracing::debug!(%room, ?dominant, "dominant speaker changed");
                r.active_speaker = dominant;
                let participant =
                    dominant.and_then(|k| self.participants.get(&k).map(|p| p.id.clone()));
                self.events.push_back(SfuEvent::ActiveSpeaker {
                    room: room.clone(),
                    participant,
                });
            }
            for (k, ms) in r.speakers.take_talk_time(now, false) {
                if let Some(p) = self.participants.get(&k) {
                    self.events.push_back(SfuEvent::TalkTime {
                        room: room.clone(),
                        participant: p.id.clone(),
                        speaking_ms: ms,
                    });
                }
            }
            let Some(r) = self.rooms.get(&room) else {
                continue;
            };
            let members = r.members.clone();
            type LayerView = (crate::forward::layer_selector::Layers, [Option<u32>; 3]);
            let mut views: HashMap<(PKey, TrackSource), LayerView> = HashMap::new();
            let mut pending: Vec<(PKey, String, KeyframeRequest)> = Vec::new();
            for k in &members {
                let Some(p) = self.participants.get_mut(k) else {
                    continue;
                };
                for (tid, t) in p.published.iter_mut() {
                    views.insert((*k, t.source), (t.layers(now), t.layer_ssrcs));
                    for req in t.keyframes.poll(now) {
                        pending.push((*k, tid.clone(), req));
                    }
                }
            }
            let mut wanted: Vec<(PKey, TrackSource, usize)> = Vec::new();
            // The recorder's files wait for keyframes too (to begin, after a loss, to change
            // layers); its requests go through the same per-layer limiter.
            if let Some(tap) = &r.recording {
                wanted.extend(
                    tap.keyframe_wants()
                        .map(|((k, source), layer)| (k, source, usize::from(layer))),
                );
            }
            for sub in &members {
                let Some(s) = self.participants.get_mut(sub) else {
                    continue;
                };
                let share = video_share(s.bwe.estimate(), &s.downtracks);
                for ((publ, source), dt) in s.downtracks.iter_mut() {
                    let Some((layers, ssrcs)) = views.get(&(*publ, *source)) else {
                        continue;
                    };
                    let before = dt.current_layer();
                    let after = dt.select_layer(layers, ssrcs, share, now);
                    if before.is_some() && after != before {
                        SfuMetrics::add(&self.metrics.layer_switches, 1);
                    }
                    if s.subscriber.connected
                        && let Some(l) = dt.keyframe_wanted()
                    {
                        wanted.push((*publ, *source, l));
                    }
                }
            }
            for (publ, tid, req) in pending {
                self.send_keyframe_request(now, publ, &tid, req);
            }
            for (publ, source, layer) in wanted {
                let track_id = self.participants.get(&publ).and_then(|p| {
                    p.published
                        .iter()
                        .find(|(_, t)| t.source == source)
                        .map(|(id, _)| id.clone())
                });
                if let Some(t) = track_id {
                    self.request_keyframe(now, publ, &t, layer);
                }
            }
        }
    }

    /// A one-line summary of who is connected and subscribed, for test failure messages.
    /// Ties the instants the core is driven with to the wall clock (`wall` is the time at `now`),
    /// for the NTP time of sender reports. The core reads no clock itself.
    pub fn set_wall_clock(&mut self, now: Instant, wall: std::time::SystemTime) {
        self.clock = Some(ntp::NtpClock::new(now, wall));
    }

    /// Whether subscriber connections that come up from now on forward through the SFU's own
    /// SRTP (the default) or through rtc's write pipeline: for benchmarks comparing the two and
    /// for tests of the second, which no supported profile otherwise reaches.
    pub fn set_own_srtp(&mut self, enabled: bool) {
        self.own_srtp = enabled;
    }

    /// Whether a participant's forwarded media is protected by the SFU's own SRTP (`srtp_out`)
    /// rather than rtc's write pipeline; `None` for an unknown participant.
    pub fn forwards_with_own_srtp(&self, room: &str, participant: &str) -> Option<bool> {
        let key = self.key(room, participant).ok()?;
        let p = self.participants.get(&key)?;
        Some(p.subscriber.srtp_out.is_some())
    }

    pub fn debug_state(&self) -> String {
        let mut out = String::new();
        for p in self.participants.values() {
            out.push_str(&format!(
                "[{} pub={} sub={} published={} downtracks={} negotiating={}] ",
                p.id,
                p.publisher.connected,
                p.subscriber.connected,
                p.published.len(),
                p.downtracks.len(),
                p.sub_negotiating
            ));
        }
        out
    }
}

/// What one of a subscriber's videos may use of its bandwidth estimate: one estimate covers all
/// of its (unpaused) videos; audio is outside it.
fn video_share(
    estimate: Option<u64>,
    downtracks: &FastMap<(PKey, TrackSource), Box<DownTrack>>,
) -> Option<u64> {
    let videos = downtracks
        .values()
        .filter(|d| d.kind == MediaKind::Video && d.render != (0, 0))
        .count()
        .max(1) as u64;
    estimate.map(|e| e.saturating_sub(64_000 * videos.min(8)) / videos)
}

fn layer_from_rid(rid: &str) -> Option<usize> {
    crate::forward::layer_selector::layer_from_rid(rid)
}

/// Width and height from a VP8 keyframe's header (RFC 6386 §9.1), after the payload descriptor.
fn vp8_keyframe_size(payload: &[u8]) -> Option<(u32, u32)> {
    let desc = crate::forward::vp8::parse(payload).ok()?;
    let frame = payload.get(desc.header_len..)?;
    if frame.get(3..6)? != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([*frame.get(6)?, *frame.get(7)?]) & 0x3fff;
    let h = u16::from_le_bytes([*frame.get(8)?, *frame.get(9)?]) & 0x3fff;
    (w > 0 && h > 0).then_some((u32::from(w), u32::from(h)))
}
