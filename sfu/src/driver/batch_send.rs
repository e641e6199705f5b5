//! Sends a flush's datagrams with as few system calls as the kernel allows.
//!
//! Every publisher packet becomes one datagram per subscriber, all leaving the one media socket
//! in a burst. Sent one `sendto` at a time, the system call itself (entry, file lookup, exit) was
//! the largest part of a forwarded packet's CPU after the forwarding core. On Linux `sendmmsg`
//! takes up to [`CHUNK`] datagrams, each with its own destination, in one call; elsewhere each
//! datagram is sent on its own, as before.
//!
//! A datagram that cannot leave is dropped and counted, never retried and never waited for: a
//! full socket buffer is what a congested network does to media, and the media loop must not
//! block on one slow destination.

use std::io;

use tokio::net::UdpSocket;

use crate::engine::Transmit;

/// Datagrams per `sendmmsg` call. Past a few dozen the saving per datagram is already almost
/// all of it; 64 keeps the call's header arrays (5 KiB) on the stack.
#[cfg(target_os = "linux")]
const CHUNK: usize = 64;

/// What became of one batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub sent: usize,
    pub dropped: usize,
}

impl std::ops::AddAssign for Sent {
    fn add_assign(&mut self, other: Sent) {
        self.sent += other.sent;
        self.dropped += other.dropped;
    }
}

/// Sends every transmit of `batch` from `socket` (each to its own `to`), in order.
pub fn send(socket: &UdpSocket, batch: &[Transmit]) -> Sent {
    let mut total = Sent::default();
    #[cfg(target_os = "linux")]
    for chunk in batch.chunks(CHUNK) {
        total += linux::send_chunk(socket, chunk);
    }
    #[cfg(not(target_os = "linux"))]
    for t in batch {
        match socket.try_send_to(&t.data, t.to) {
            Ok(_) => total.sent += 1,
            Err(e) => {
                tracing::trace!("media send to {}: {e}", t.to);
                total.dropped += 1;
            }
        }
    }
    total
}

/// Runs a multi-datagram send to completion over `len` datagrams: `call(start)` offers the
/// datagrams from `start` on and returns how many of them the kernel took.
///
/// `sendmmsg` stops at the first datagram it cannot send. If that is the first one it reports
/// the error; otherwise it returns the count sent, and the error comes back from the next call,
/// which starts at the failed datagram. So: a count advances past what was sent; a full buffer
/// (`WouldBlock`) drops the rest, which would only find it full too; any other error (an
/// unroutable or oversized datagram) drops that one datagram and goes on with the next.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn settle(len: usize, mut call: impl FnMut(usize) -> io::Result<usize>) -> Sent {
    let mut out = Sent::default();
    let mut start = 0;
    while start < len {
        match call(start) {
            Ok(0) => {
                // Not expected from a non-empty request; treat it like a full buffer rather
                // than spin.
                out.dropped += len - start;
                break;
            }
            Ok(n) => {
                let n = n.min(len - start);
                out.sent += n;
                start += n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tracing::trace!(
                    "media socket buffer full: {} datagrams dropped",
                    len - start
                );
                out.dropped += len - start;
                break;
            }
            Err(e) => {
                tracing::trace!("media send: {e}");
                out.dropped += 1;
                start += 1;
            }
        }
    }
    out
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsFd, AsRawFd};

    use socket2::SockAddr;
    use tokio::net::UdpSocket;

    use super::{CHUNK, Sent, settle};
    use crate::engine::Transmit;

    /// Sends up to [`CHUNK`] datagrams with `sendmmsg`.
    pub(super) fn send_chunk(socket: &UdpSocket, chunk: &[Transmit]) -> Sent {
        debug_assert!(chunk.len() <= CHUNK);
        // The kernel reads every header, buffer and address through raw pointers, so all three
        // arrays are filled first and stay put (on this stack frame) until the last call
        // returns; nothing below moves or resizes them.
        let addrs: Vec<SockAddr> = chunk.iter().map(|t| SockAddr::from(t.to)).collect();
        // SAFETY: `iovec` and `mmsghdr` are plain C structs for which all-zero bytes are a valid
        // (empty) value.
        let mut iovecs: [libc::iovec; CHUNK] = unsafe { std::mem::zeroed() };
        let mut headers: [libc::mmsghdr; CHUNK] = unsafe { std::mem::zeroed() };
        for (iov, t) in iovecs.iter_mut().zip(chunk) {
            *iov = libc::iovec {
                // The kernel only reads from a send buffer; `*mut` is what the C type says.
                iov_base: t.data.as_ptr() as *mut libc::c_void,
                iov_len: t.data.len(),
            };
        }
        let iov_base = iovecs.as_mut_ptr();
        for (i, (header, addr)) in headers.iter_mut().zip(&addrs).enumerate() {
            let h = &mut header.msg_hdr;
            h.msg_name = addr.as_ptr() as *mut libc::c_void;
            h.msg_namelen = addr.len();
            // SAFETY: `i` < `chunk.len()` <= CHUNK, inside `iovecs`.
            h.msg_iov = unsafe { iov_base.add(i) };
            h.msg_iovlen = 1;
        }
        let fd = socket.as_fd().as_raw_fd();
        settle(chunk.len(), |start| {
            let remaining = (chunk.len() - start) as libc::c_uint;
            // SAFETY: `fd` is the open socket borrowed for this call. `headers[start..]` holds
            // `remaining` initialised headers whose name, iovec and buffer pointers point into
            // `addrs`, `iovecs` and `chunk`, all alive and unmoved for the duration of the call.
            // MSG_DONTWAIT: the socket is non-blocking already; this keeps the call from ever
            // waiting should that change.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    headers[start..].as_mut_ptr(),
                    remaining,
                    libc::MSG_DONTWAIT,
                )
            };
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(r as usize)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
    use std::time::Duration;

    use bytes::BytesMut;

    use super::*;

    fn transmit(to: SocketAddr, payload: &[u8]) -> Transmit {
        Transmit {
            local: "127.0.0.1:0".parse().expect("addr"),
            to,
            data: BytesMut::from(payload),
        }
    }

    fn receiver() -> StdUdpSocket {
        let s = StdUdpSocket::bind("127.0.0.1:0").expect("bind");
        // The deadline for a datagram that does not come: the test fails instead of hanging.
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime")
    }

    /// More datagrams than one call takes, to two destinations interleaved: each destination
    /// gets exactly its own, in order and intact.
    #[test]
    fn every_datagram_reaches_its_own_destination_in_order() {
        let (a, b) = (receiver(), receiver());
        let (to_a, to_b) = (a.local_addr().expect("addr"), b.local_addr().expect("addr"));
        let batch: Vec<Transmit> = (0..150u16)
            .map(|i| {
                let to = if i % 2 == 0 { to_a } else { to_b };
                let mut payload = i.to_be_bytes().to_vec();
                payload.resize(100 + usize::from(i), 0xAB);
                transmit(to, &payload)
            })
            .collect();
        let outcome = runtime().block_on(async {
            let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            send(&socket, &batch)
        });
        assert_eq!(
            outcome,
            Sent {
                sent: 150,
                dropped: 0
            }
        );
        let mut buf = [0u8; 2048];
        for (socket, first) in [(&a, 0u16), (&b, 1)] {
            for i in (first..150).step_by(2) {
                let (n, _) = socket.recv_from(&mut buf).expect("datagram");
                assert_eq!(n, 100 + usize::from(i), "datagram {i}'s length");
                assert_eq!(
                    u16::from_be_bytes([buf[0], buf[1]]),
                    i,
                    "datagrams arrive in order"
                );
            }
        }
    }

    /// A datagram the kernel refuses in the middle of a batch (here one larger than UDP allows)
    /// is dropped alone: those before and after it are sent.
    #[test]
    fn a_refused_datagram_is_dropped_and_the_rest_still_go() {
        let r = receiver();
        let to = r.local_addr().expect("addr");
        let mut batch: Vec<Transmit> = (0..10u8).map(|i| transmit(to, &[i; 20])).collect();
        batch[4] = transmit(to, &vec![4u8; 70_000]);
        let outcome = runtime().block_on(async {
            let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            send(&socket, &batch)
        });
        assert_eq!(
            outcome,
            Sent {
                sent: 9,
                dropped: 1
            }
        );
        let mut buf = [0u8; 64];
        let got: Vec<u8> = (0..9)
            .map(|_| {
                let (n, _) = r.recv_from(&mut buf).expect("datagram");
                assert_eq!(n, 20);
                buf[0]
            })
            .collect();
        assert_eq!(got, vec![0, 1, 2, 3, 5, 6, 7, 8, 9]);
    }

    /// The bookkeeping of a send cut short, with the kernel's answers scripted: partial counts
    /// advance, an interrupted call is repeated, a full buffer drops everything left.
    #[test]
    fn partial_sends_continue_and_a_full_buffer_drops_the_rest() {
        let mut answers = vec![
            Ok(3),
            Err(io::Error::from(io::ErrorKind::Interrupted)),
            Ok(2),
            Err(io::Error::from_raw_os_error(90)), // EMSGSIZE: that datagram only
            Err(io::Error::from(io::ErrorKind::WouldBlock)),
        ]
        .into_iter();
        let mut starts = Vec::new();
        let outcome = settle(10, |start| {
            starts.push(start);
            answers.next().expect("no call after the buffer was full")
        });
        assert_eq!(starts, vec![0, 3, 3, 5, 6]);
        assert_eq!(
            outcome,
            Sent {
                sent: 5,
                dropped: 5
            }
        );
    }
}
