//! Runs the sans-IO core on real UDP sockets, in a thread of its own.
//!
//! One socket is bound per announced address, all on the same port, so every datagram arrives with
//! the exact local address ICE knows as a host candidate (a wildcard socket would not tell us which
//! address a client used). The media thread has its own single-threaded runtime: media work never
//! waits behind HTTP work, and the core needs no locks.

use std::future::poll_fn;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::api::*;
use crate::engine::{Sfu, Transmit};
use crate::handle::{Command, SfuHandle};

mod batch_send;

/// The addresses to announce when none are configured: loopback plus the machine's own IPv4
/// addresses.
pub fn default_announced_ips() -> Vec<IpAddr> {
    let mut ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    if let Ok(ifaces) = if_addrs::get_if_addrs() {
        for iface in ifaces {
            let ip = iface.ip();
            if ip.is_ipv4() && !ip.is_loopback() && !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    ips
}

fn bind_all(config: &SfuConfig) -> std::io::Result<Vec<StdUdpSocket>> {
    let ips = if config.announced_ips.is_empty() {
        default_announced_ips()
    } else {
        config.announced_ips.clone()
    };
    let bind_ip = config.udp_bind.ip();
    let mut port = config.udp_bind.port();
    let mut sockets = Vec::new();
    for ip in ips {
        // With a specific bind address configured, all announced addresses share that socket.
        let addr = if bind_ip.is_unspecified() {
            SocketAddr::new(ip, port)
        } else {
            SocketAddr::new(bind_ip, port)
        };
        if sockets
            .iter()
            .any(|s: &StdUdpSocket| s.local_addr().ok() == Some(addr))
        {
            continue;
        }
        let socket = StdUdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        size_buffers(&socket);
        if port == 0 {
            // The first socket picks the port; the others follow it.
            port = socket.local_addr()?.port();
        }
        sockets.push(socket);
    }
    if sockets.is_empty() {
        return Err(std::io::Error::other(
            "no address to bind the media port on",
        ));
    }
    Ok(sockets)
}

/// What the media socket asks of the kernel for each direction (it grants at most
/// `net.core.{r,w}mem_max`; docs/operations.md says how to raise them).
const SOCKET_BUFFER: usize = 4 << 20;

/// One socket carries every participant's media, so its buffers must absorb a burst to all of
/// them: a keyframe fanned out to hundreds of subscribers, or the time the media thread is
/// descheduled. The kernel default (~208 KiB, some 170 full-size packets) is what a single
/// call needs; past a few hundred subscribers the sends found it full and dropped packets,
/// and the publishers' packets were lost before we read them.
fn size_buffers(socket: &StdUdpSocket) {
    let s = socket2::SockRef::from(socket);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let (send, recv) = (
        s.send_buffer_size().unwrap_or(0),
        s.recv_buffer_size().unwrap_or(0),
    );
    // Linux reports twice the size it was given (half is bookkeeping).
    if send < SOCKET_BUFFER || recv < SOCKET_BUFFER {
        tracing::warn!(
            send,
            recv,
            "the media socket's buffers are smaller than the {} MiB asked for; raise \
             net.core.wmem_max and net.core.rmem_max (see docs/operations.md)",
            SOCKET_BUFFER >> 20
        );
    } else {
        tracing::debug!(send, recv, "media socket buffers");
    }
}

/// Starts the media plane on its own thread. Returns the handle and the event stream.
pub fn start(config: SfuConfig) -> std::io::Result<(SfuHandle, mpsc::UnboundedReceiver<SfuEvent>)> {
    let sockets = bind_all(&config)?;
    let local_addr = sockets[0].local_addr()?;
    let metrics = Arc::new(SfuMetrics::default());
    let (tx, rx) = mpsc::unbounded_channel();
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    let (rec_tx, rec_rx) = mpsc::unbounded_channel();
    let thread_metrics = metrics.clone();
    std::thread::Builder::new()
        .name("parley-media".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("media runtime: {e}");
                    return;
                }
            };
            runtime.block_on(run(sockets, thread_metrics, rx, event_tx, rec_tx));
        })?;
    Ok((
        SfuHandle {
            tx,
            metrics,
            local_addr,
            recording_events: Arc::new(std::sync::Mutex::new(Some(rec_rx))),
        },
        event_rx,
    ))
}

async fn run(
    sockets: Vec<StdUdpSocket>,
    metrics: Arc<SfuMetrics>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<SfuEvent>,
    rec_events: mpsc::UnboundedSender<RecordingEvent>,
) {
    let events = Events {
        sfu: events,
        recording: rec_events,
    };
    let mut socks = Vec::new();
    for s in sockets {
        match UdpSocket::from_std(s) {
            Ok(s) => socks.push(s),
            Err(e) => {
                tracing::error!("media socket: {e}");
                return;
            }
        }
    }
    let local_addrs: Vec<SocketAddr> = socks.iter().filter_map(|s| s.local_addr().ok()).collect();
    tracing::info!(?local_addrs, "media plane listening");
    let mut sfu = Sfu::new(local_addrs.clone(), metrics);
    sfu.set_wall_clock(Instant::now(), std::time::SystemTime::now());
    let mut buf = vec![0u8; 2048];
    let mut outgoing = Outgoing::new(socks.len());
    loop {
        flush(&mut sfu, &socks, &local_addrs, &events, &mut outgoing);
        let deadline = sfu
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        let sleep = tokio::time::sleep_until(deadline.into());
        tokio::pin!(sleep);
        tokio::select! {
            biased;
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { break };
                if !apply(&mut sfu, cmd) {
                    flush(&mut sfu, &socks, &local_addrs, &events, &mut outgoing);
                    break;
                }
            }
            (index, result) = recv_any(&socks, &mut buf) => {
                match result {
                    Ok((n, from)) => {
                        let local = local_addrs[index];
                        sfu.handle_datagram(Instant::now(), local, from, &buf[..n]);
                        // Drain what else is already queued before paying for a timer check.
                        for _ in 0..64 {
                            match socks[index].try_recv_from(&mut buf) {
                                Ok((n, from)) => sfu.handle_datagram(Instant::now(), local, from, &buf[..n]),
                                Err(_) => break,
                            }
                        }
                    }
                    Err(e) => tracing::debug!("media recv: {e}"),
                }
            }
            _ = &mut sleep => {
                sfu.handle_timeout(Instant::now());
            }
        }
    }
    tracing::info!("media plane stopped");
}

/// Waits until any socket has a datagram and reads it.
async fn recv_any(
    socks: &[UdpSocket],
    buf: &mut [u8],
) -> (usize, std::io::Result<(usize, SocketAddr)>) {
    poll_fn(|cx| {
        for (i, s) in socks.iter().enumerate() {
            let mut rb = ReadBuf::new(buf);
            if let Poll::Ready(r) = s.poll_recv_from(cx, &mut rb) {
                let n = rb.filled().len();
                return Poll::Ready((i, r.map(|from| (n, from))));
            }
        }
        Poll::Pending
    })
    .await
}

/// Where the media thread's two event streams go.
struct Events {
    sfu: mpsc::UnboundedSender<SfuEvent>,
    recording: mpsc::UnboundedSender<RecordingEvent>,
}

/// The datagrams of one flush, by the socket they leave from; kept between flushes so their
/// lists are allocated once.
struct Outgoing {
    by_socket: Vec<Vec<Transmit>>,
}

impl Outgoing {
    fn new(sockets: usize) -> Self {
        Self {
            by_socket: (0..sockets).map(|_| Vec::new()).collect(),
        }
    }
}

fn flush(
    sfu: &mut Sfu,
    socks: &[UdpSocket],
    local_addrs: &[SocketAddr],
    events: &Events,
    outgoing: &mut Outgoing,
) {
    // Everything the core has queued goes out in as few system calls as possible: a publisher
    // packet's fan-out is one burst from one socket (see `batch_send`).
    while let Some(t) = sfu.poll_transmit() {
        let index = local_addrs.iter().position(|a| *a == t.local).unwrap_or(0);
        if let Some(batch) = outgoing.by_socket.get_mut(index) {
            batch.push(t);
        }
    }
    for (socket, batch) in socks.iter().zip(&mut outgoing.by_socket) {
        if batch.is_empty() {
            continue;
        }
        // A datagram that cannot leave (a full socket buffer) is dropped, as a congested network
        // would; the media loop never blocks on one slow destination.
        let sent = batch_send::send(socket, batch);
        if sent.dropped > 0 {
            SfuMetrics::add(&sfu.metrics().packets_dropped, sent.dropped as u64);
        }
        batch.clear();
    }
    while let Some(e) = sfu.poll_event() {
        let _ = events.sfu.send(e);
    }
    while let Some(e) = sfu.poll_recording_event() {
        let _ = events.recording.send(e);
    }
}

/// Applies one command; returns false when the media plane must stop.
fn apply(sfu: &mut Sfu, cmd: Command) -> bool {
    let now = Instant::now();
    match cmd {
        Command::Join {
            room,
            participant,
            options,
            reply,
        } => {
            let _ = reply.send(sfu.join(now, &room, &participant, options));
        }
        Command::Publish {
            room,
            participant,
            sdp,
            tracks,
            reply,
        } => {
            let _ = reply.send(sfu.publish(now, &room, &participant, sdp, tracks));
        }
        Command::SubscriberAnswer {
            room,
            participant,
            sdp,
            reply,
        } => {
            let _ = reply.send(sfu.subscriber_answer(now, &room, &participant, sdp));
        }
        Command::RemoteCandidate {
            room,
            participant,
            role,
            candidate,
            sdp_mid,
            sdp_mline_index,
            reply,
        } => {
            let _ = reply.send(sfu.remote_candidate(
                now,
                &room,
                &participant,
                role,
                candidate,
                sdp_mid,
                sdp_mline_index,
            ));
        }
        Command::SetMuted {
            room,
            participant,
            source,
            muted,
        } => sfu.set_muted(&room, &participant, source, muted),
        Command::VideoSize {
            room,
            subscriber,
            publisher,
            source,
            width,
            height,
        } => sfu.video_size(&room, &subscriber, &publisher, source, width, height),
        Command::SendData {
            room,
            participant,
            text,
        } => sfu.send_data(now, &room, &participant, text),
        Command::Leave {
            room,
            participant,
            reply,
        } => {
            let talk = sfu.leave(now, &room, &participant);
            if let Some(reply) = reply {
                let _ = reply.send(talk);
            }
        }
        Command::CloseRoom { room, reply } => {
            let talk = sfu.close_room(now, &room);
            if let Some(reply) = reply {
                let _ = reply.send(talk);
            }
        }
        Command::StartRecording { room, dir, reply } => {
            let _ = reply.send(sfu.start_recording(now, &room, &dir));
        }
        Command::StopRecording { room, reply } => {
            let _ = reply.send(Ok(sfu.stop_recording(now, &room)));
        }
        Command::Shutdown { reply } => {
            sfu.close_all(now);
            // Closing the rooms stopped their recordings; their files are finished before the
            // server reports that it has shut down.
            sfu.join_recordings();
            let _ = reply.send(());
            return false;
        }
    }
    true
}
