//! Lets the subscriber feedback the forwarding core acts on reach it.
//!
//! An rtc interceptor chain ends inbound RTCP at its terminus: control traffic is for the
//! interceptors unless one of them vouches for a packet. The SFU answers NACKs from its own
//! per-down-track cache, relays PLI/FIR to publishers and reads REMB for layer selection, so this
//! tap, placed application-most, marks exactly those packets for delivery.

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

/// Position in the chain: after every built-in interceptor (the highest is 13 000).
pub const SLOT: usize = 20_000;

pub struct FeedbackTap {
    deliver: fn(&dyn rtc::rtcp::Packet) -> bool,
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl Default for FeedbackTap {
    /// The SFU's tap: the feedback the forwarding core acts on.
    fn default() -> Self {
        Self::delivering(is_forwarding_feedback)
    }
}

impl FeedbackTap {
    /// A tap delivering the RTCP packets `deliver` picks (a test peer's, say: sender reports).
    pub fn delivering(deliver: fn(&dyn rtc::rtcp::Packet) -> bool) -> Self {
        Self {
            deliver,
            reads: VecDeque::new(),
            writes: VecDeque::new(),
        }
    }
}

/// Whether an RTCP packet is feedback the forwarding core acts on.
pub fn is_forwarding_feedback(p: &dyn rtc::rtcp::Packet) -> bool {
    let any = p.as_any();
    any.is::<PictureLossIndication>()
        || any.is::<FullIntraRequest>()
        || any.is::<TransportLayerNack>()
        || any.is::<ReceiverEstimatedMaximumBitrate>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for FeedbackTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet
            && packets.iter().any(|p| (self.deliver)(p.as_ref()))
        {
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.writes.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        None
    }
}

impl Interceptor for FeedbackTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
