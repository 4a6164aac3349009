//! One task per TCP connection: framing, the handshake when the network
//! has a key, the HELLO check, and the copy of frames between the socket
//! and the node's driver.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use tokio::{
    net::TcpStream,
    sync::{mpsc, OwnedSemaphorePermit, Semaphore},
    time::{timeout, timeout_at, Instant},
};
use tokio_util::{
    bytes::Bytes,
    codec::{Framed, LengthDelimitedCodec},
};

use super::{
    limits::{Admit, FrameLimits, RefusalLog},
    secure::{self, Cipher, NetworkKey},
};
use crate::proto::{
    evidence::{Identity, PublicKey},
    message::{Message, Role, MAX_FRAME_LEN, PROTOCOL_VERSION},
    Event, QueryError,
};

/// A peer that says nothing this long after connecting is dropped, so idle
/// sockets cannot pile up.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A frame that cannot be written for this long closes the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A dial that has not connected by then counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The remote closed it, or we did.
    Ended,
    /// A socket error, or a dial that failed.
    Io(String),
    /// The remote broke the protocol; logged as a protocol error.
    Protocol(String),
    /// The remote failed the handshake: it does not hold the network's
    /// key. Logged with its address as a refused connection.
    Refused(String),
    /// The node at `seed`, which this node dialled, proved `proved`, but
    /// the seeds' log pins `pinned` for that seed. Logged as
    /// `seed_key_refused`; nothing was sent to it.
    SeedKey {
        seed: SocketAddr,
        pinned: PublicKey,
        proved: PublicKey,
    },
}

impl CloseReason {
    /// Why, in words; `ended` says what a plain close means to the caller.
    pub fn text(self, ended: &str) -> String {
        match self {
            CloseReason::Io(e) | CloseReason::Protocol(e) | CloseReason::Refused(e) => e,
            CloseReason::Ended => ended.to_string(),
            CloseReason::SeedKey {
                seed,
                pinned,
                proved,
            } => format!(
                "the node at {seed} proved key {proved}, but the seeds' log pins {pinned} for it"
            ),
        }
    }
}

/// Frames and bytes all of a node's connections carried, for the `traffic`
/// event. Connection tasks may run on several threads (seeds), hence
/// atomics. Bytes count the 4-byte length prefix as well as the body.
#[derive(Debug, Default)]
pub struct Traffic {
    frames_sent: AtomicU64,
    bytes_sent: AtomicU64,
    gossip_sent: AtomicU64,
    frames_received: AtomicU64,
    bytes_received: AtomicU64,
}

impl Traffic {
    fn count_sent(&self, body_len: usize) {
        self.frames_sent.fetch_add(1, Relaxed);
        self.bytes_sent.fetch_add(body_len as u64 + 4, Relaxed);
    }

    fn received(&self, body_len: usize) {
        self.frames_received.fetch_add(1, Relaxed);
        self.bytes_received.fetch_add(body_len as u64 + 4, Relaxed);
    }

    /// The totals so far, as the event that reports them.
    pub fn event(&self) -> Event {
        Event::Traffic {
            frames_sent: self.frames_sent.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            gossip_sent: self.gossip_sent.load(Relaxed),
            frames_received: self.frames_received.load(Relaxed),
            bytes_received: self.bytes_received.load(Relaxed),
        }
    }
}

/// What a queued frame costs beyond its body: the queue's slot, the
/// allocation and the length prefix, rounded up. It keeps a flood of empty
/// frames from looking free.
pub const FRAME_OVERHEAD: usize = 64;

/// A frame encoded by the driver and queued for a connection's socket.
#[derive(Debug)]
pub struct Outgoing {
    body: Vec<u8>,
    gossip: bool,
}

impl Outgoing {
    pub fn new(msg: &Message) -> Outgoing {
        Outgoing {
            body: msg.to_json(),
            gossip: matches!(msg, Message::Gossip { .. }),
        }
    }

    /// Bytes it holds while queued.
    pub fn cost(&self) -> usize {
        self.body.len() + FRAME_OVERHEAD
    }
}

/// Bytes queued to be written: one connection's, and the whole node's.
/// The driver adds a frame's cost when it queues it; the connection's task
/// takes it off once the frame is handed to the socket.
#[derive(Debug, Default)]
pub struct QueuedBytes {
    link: AtomicUsize,
    node: Arc<AtomicUsize>,
}

impl QueuedBytes {
    /// A new connection's count, adding to the node's `total`.
    pub fn new(node: Arc<AtomicUsize>) -> QueuedBytes {
        QueuedBytes {
            link: AtomicUsize::new(0),
            node,
        }
    }

    pub fn link(&self) -> usize {
        self.link.load(Relaxed)
    }

    pub fn node(&self) -> usize {
        self.node.load(Relaxed)
    }

    pub fn add(&self, bytes: usize) {
        self.link.fetch_add(bytes, Relaxed);
        self.node.fetch_add(bytes, Relaxed);
    }

    fn sub(&self, bytes: usize) {
        self.link.fetch_sub(bytes, Relaxed);
        self.node.fetch_sub(bytes, Relaxed);
    }
}

impl Drop for QueuedBytes {
    /// Whatever a closed connection still had queued leaves the node's total.
    fn drop(&mut self) {
        self.node.fetch_sub(self.link(), Relaxed);
    }
}

/// One connection's frames: 4-byte length-prefixed bodies, sealed after a
/// Noise handshake when the network has a key (see [`secure`]).
struct Link {
    framed: Framed<TcpStream, LengthDelimitedCodec>,
    cipher: Option<Cipher>,
}

/// Which end of the handshake this node is.
#[derive(Clone, Copy)]
enum Side {
    Dialled,
    Accepted,
}

impl Link {
    /// Sets up the connection's framing and, when the network has a key,
    /// runs the handshake; the error says why the remote is not let in.
    async fn open(
        stream: TcpStream,
        key: Option<&NetworkKey>,
        side: Side,
        traffic: &Traffic,
    ) -> Result<Link, String> {
        let _ = stream.set_nodelay(true);
        let max_body = match key {
            Some(_) => secure::sealed_len(MAX_FRAME_LEN),
            None => MAX_FRAME_LEN,
        };
        let mut framed = Framed::new(stream, codec_for(max_body));
        let Some(key) = key else {
            return Ok(Link {
                framed,
                cipher: None,
            });
        };
        let mut handshake = match side {
            Side::Dialled => key.initiator(),
            Side::Accepted => key.responder(),
        };
        if let Side::Dialled = side {
            send_raw(&mut framed, handshake.write()?, traffic).await?;
        }
        handshake.read(&receive_raw(&mut framed, side, traffic).await?)?;
        if let Side::Accepted = side {
            send_raw(&mut framed, handshake.write()?, traffic).await?;
        }
        Ok(Link {
            framed,
            cipher: Some(handshake.finish()?),
        })
    }

    /// Encodes `msg` and writes it, sealed if need be, counting it in
    /// `traffic`; the flush is left to the caller, so that a burst of
    /// frames goes out in one write.
    async fn feed(&mut self, msg: &Message, traffic: &Traffic) -> std::io::Result<()> {
        self.feed_encoded(Outgoing::new(msg), traffic).await
    }

    /// [`Link::feed`] for a frame the driver encoded.
    async fn feed_encoded(&mut self, frame: Outgoing, traffic: &Traffic) -> std::io::Result<()> {
        let wire = match &mut self.cipher {
            Some(cipher) => cipher.seal(&frame.body),
            None => frame.body,
        };
        traffic.count_sent(wire.len());
        if frame.gossip {
            traffic.gossip_sent.fetch_add(1, Relaxed);
        }
        self.framed.feed(Bytes::from(wire)).await
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        SinkExt::<Bytes>::flush(&mut self.framed).await
    }

    /// The next frame body, opened; `None` once the remote has closed.
    async fn next(&mut self, traffic: &Traffic) -> Option<Result<Bytes, CloseReason>> {
        let too_long =
            || CloseReason::Protocol(format!("frame longer than the {MAX_FRAME_LEN}-byte limit"));
        let wire = match self.framed.next().await? {
            Ok(wire) => wire,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return Some(Err(too_long())),
            Err(e) => return Some(Err(CloseReason::Io(e.to_string()))),
        };
        traffic.received(wire.len());
        Some(match &mut self.cipher {
            None => Ok(wire.freeze()),
            Some(cipher) => match cipher.open(&wire) {
                Ok(body) if body.len() > MAX_FRAME_LEN => Err(too_long()),
                Ok(body) => Ok(Bytes::from(body)),
                Err(e) => Err(CloseReason::Protocol(e)),
            },
        })
    }
}

/// Writes one handshake message as a frame.
async fn send_raw(
    framed: &mut Framed<TcpStream, LengthDelimitedCodec>,
    message: Vec<u8>,
    traffic: &Traffic,
) -> Result<(), String> {
    traffic.count_sent(message.len());
    framed
        .send(Bytes::from(message))
        .await
        .map_err(|e| format!("handshake: {e}"))
}

/// Reads the remote's handshake message.
async fn receive_raw(
    framed: &mut Framed<TcpStream, LengthDelimitedCodec>,
    side: Side,
    traffic: &Traffic,
) -> Result<Vec<u8>, String> {
    match framed.next().await {
        Some(Ok(message)) => {
            traffic.received(message.len());
            Ok(message.to_vec())
        }
        Some(Err(e)) => Err(format!("handshake: {e}")),
        None => Err(match side {
            Side::Dialled => "it closed the connection during the handshake: does it hold this network's key (--network-key)?",
            Side::Accepted => "it closed the connection before the handshake",
        }
        .to_string()),
    }
}

/// What a connection task tells the driver.
#[derive(Debug)]
pub enum ConnEvent {
    /// The remote said HELLO. On a connection we dialled it comes only
    /// once the acceptor has proved `key` (its HELLO_PROOF over our
    /// challenge verified). On an accepted one, `challenge` is the
    /// dialler's, for this node's own HELLO_PROOF once the dialler is
    /// proved.
    Hello {
        id: ConnId,
        listen: SocketAddr,
        role: Role,
        key: Option<PublicKey>,
        challenge: Option<u64>,
    },
    Frame {
        id: ConnId,
        msg: Message,
        /// The frame's share of [`Channels::received`], given back when
        /// the driver drops the event.
        held: Option<OwnedSemaphorePermit>,
    },
    /// The remote opened with a one-shot query instead of HELLO (PROBE,
    /// SUSPECT_REQUEST, REKEY_REQUEST or STATUS_REQUEST). The driver answers it, then
    /// closes the connection.
    Query {
        id: ConnId,
        msg: Message,
    },
    Closed {
        id: ConnId,
        reason: CloseReason,
    },
    /// Frames of `kind` over the connection's rate limit were dropped:
    /// `count` since the last such report (at most one a second).
    Dropped {
        id: ConnId,
        kind: &'static str,
        count: u64,
    },
}

/// 4-byte big-endian length, then the body; bodies over 1 MiB are refused
/// before they are read.
pub fn codec() -> LengthDelimitedCodec {
    codec_for(MAX_FRAME_LEN)
}

fn codec_for(max_body: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .big_endian()
        .max_frame_length(max_body)
        .new_codec()
}

/// How a dialling node proves who it is: it signs the acceptor's
/// challenge as the node at `me` (see [`Message::HelloProof`]); and the
/// challenge its own HELLO carried, which the acceptor must sign, and the
/// key the acceptor must prove when the seeds' log pins one for it.
#[derive(Debug, Clone)]
pub struct Prover {
    pub identity: Identity,
    pub me: SocketAddr,
    pub challenge: u64,
    pub pinned: Option<PublicKey>,
}

/// Which side opened the connection, and what that side owes.
enum Opened {
    /// We dialled: we answer the acceptor's challenge.
    ByUs(Prover),
    /// The remote dialled: it must prove itself after its HELLO.
    ByRemote,
}

/// Runs a connection we dialled: connect, handshake if the network has a
/// key, say HELLO, then [`serve`], which answers the acceptor's challenge.
pub async fn dial(
    id: ConnId,
    target: SocketAddr,
    hello: Message,
    prover: Prover,
    channels: Channels,
    key: Option<Arc<NetworkKey>>,
) {
    let Channels {
        events, traffic, ..
    } = &channels;
    let hello_deadline = Instant::now() + HELLO_TIMEOUT;
    let stream = match timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return report_closed(events, id, CloseReason::Io(e.to_string())).await,
        Err(_) => {
            let reason = CloseReason::Io(format!("no answer within {CONNECT_TIMEOUT:?}"));
            return report_closed(events, id, reason).await;
        }
    };
    let opened = async {
        let mut link = Link::open(stream, key.as_deref(), Side::Dialled, traffic).await?;
        link.feed(&hello, traffic)
            .await
            .map_err(|e| e.to_string())?;
        link.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(link)
    };
    let link = match timeout_at(hello_deadline, opened).await {
        Ok(Ok(link)) => link,
        Ok(Err(e)) => return report_closed(events, id, CloseReason::Io(e)).await,
        Err(_) => {
            let reason = CloseReason::Io(format!("no handshake within {HELLO_TIMEOUT:?}"));
            return report_closed(events, id, reason).await;
        }
    };
    serve(id, link, hello_deadline, Opened::ByUs(prover), channels).await
}

/// Runs an accepted connection: the handshake if the network has a key,
/// then [`serve`]. A remote that fails the handshake is refused.
pub async fn accept(
    id: ConnId,
    stream: TcpStream,
    channels: Channels,
    key: Option<Arc<NetworkKey>>,
) {
    let hello_deadline = Instant::now() + HELLO_TIMEOUT;
    let opened = Link::open(stream, key.as_deref(), Side::Accepted, &channels.traffic);
    let link = match timeout_at(hello_deadline, opened).await {
        Ok(Ok(link)) => link,
        Ok(Err(reason)) => {
            return report_closed(&channels.events, id, CloseReason::Refused(reason)).await
        }
        Err(_) => {
            let reason = format!("no handshake within {HELLO_TIMEOUT:?}");
            return report_closed(&channels.events, id, CloseReason::Refused(reason)).await;
        }
    };
    serve(id, link, hello_deadline, Opened::ByRemote, channels).await
}

/// The channels between a connection task and its driver.
pub struct Channels {
    /// Frames to write, bounded in bytes by `queued` (the driver checks
    /// before it queues one).
    pub outbox: mpsc::UnboundedReceiver<Outgoing>,
    pub queued: Arc<QueuedBytes>,
    pub events: mpsc::Sender<ConnEvent>,
    /// Bytes of received frames that all connections together may have
    /// waiting for the driver, as permits: a reader waits for room, so a
    /// flood of large frames is held back in the sockets, not in memory.
    pub received: Arc<Semaphore>,
    pub traffic: Arc<Traffic>,
}

/// Dials `target` afresh, sends the one-shot `query` (PROBE,
/// SUSPECT_REQUEST or STATUS_REQUEST) instead of HELLO, and returns the
/// answer, or why there is none within `limit`. The error tells a node
/// that is not there (no connection, or no answer) from one that turned
/// the query away (closed or reset the connection before answering).
pub async fn query(
    target: SocketAddr,
    query: &Message,
    limit: Duration,
    key: Option<&NetworkKey>,
    traffic: &Traffic,
) -> Result<Message, QueryError> {
    let deadline = Instant::now() + limit;
    let stream = match timeout_at(deadline, TcpStream::connect(target)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(QueryError::NoConnection(format!("cannot connect: {e}"))),
        Err(_) => {
            let reason = format!("no connection within {limit:?}");
            return Err(QueryError::NoConnection(reason));
        }
    };
    let exchange = async {
        let mut link = Link::open(stream, key, Side::Dialled, traffic)
            .await
            .map_err(QueryError::TurnedAway)?;
        let turned_away = |e: std::io::Error| QueryError::TurnedAway(e.to_string());
        link.feed(query, traffic).await.map_err(turned_away)?;
        link.flush().await.map_err(turned_away)?;
        let body = match link.next(traffic).await {
            None => return Err(QueryError::TurnedAway("closed without answering".into())),
            Some(Err(CloseReason::Protocol(e))) => return Err(QueryError::BadAnswer(e)),
            Some(Err(reason)) => return Err(QueryError::TurnedAway(reason.text(""))),
            Some(Ok(body)) => body,
        };
        Message::from_json(&body).map_err(|e| QueryError::BadAnswer(e.to_string()))
    };
    timeout_at(deadline, exchange)
        .await
        .map_err(|_| QueryError::NoAnswer(format!("no answer within {limit:?}")))?
}

/// Runs `write` for at most [`WRITE_TIMEOUT`]: a remote that stops reading
/// (a frozen process) must not hold a task, its socket and its queue
/// forever. The error is why the connection must close.
async fn write_in_time(
    write: impl std::future::Future<Output = std::io::Result<()>>,
) -> Result<(), CloseReason> {
    match timeout(WRITE_TIMEOUT, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(CloseReason::Io(e.to_string())),
        Err(_) => Err(CloseReason::Io(format!(
            "could not write for {WRITE_TIMEOUT:?}"
        ))),
    }
}

async fn report_closed(events: &mpsc::Sender<ConnEvent>, id: ConnId, reason: CloseReason) {
    // The driver may be gone during shutdown; then nobody needs to know.
    let _ = events.send(ConnEvent::Closed { id, reason }).await;
}

async fn serve(
    id: ConnId,
    mut link: Link,
    hello_deadline: Instant,
    opened: Opened,
    channels: Channels,
) {
    let Channels {
        mut outbox,
        queued,
        events,
        received,
        traffic,
    } = channels;
    let hello_deadline = tokio::time::sleep_until(hello_deadline);
    tokio::pin!(hello_deadline);
    let mut greeted = false;
    // An accepted connection's remote owes a HELLO_PROOF after its HELLO,
    // within the same time; so does the acceptor of a connection we
    // dialled, once we have proved ourselves.
    let mut awaiting_proof = false;
    // We dialled, and the acceptor's HELLO named `listen` as `role`: its
    // HELLO_PROOF comes next, and nothing is sent until it verifies.
    let mut acceptor: Option<(SocketAddr, Role)> = None;
    let mut may_send = matches!(opened, Opened::ByRemote);
    let mut limits = FrameLimits::new(std::time::Instant::now());
    let mut dropped = RefusalLog::default();
    let mut held_link_report: Option<Message> = None;
    let mut held_until = Instant::now();
    let reason = loop {
        tokio::select! {
            frame = link.next(&traffic) => {
                let body = match frame {
                    None => break CloseReason::Ended,
                    Some(Err(reason)) => break reason,
                    Some(Ok(body)) => body,
                };
                // A frame is at most MAX_FRAME_LEN, far below the permits
                // there are, so this waits only for frames ahead of it.
                let cost = (body.len() + FRAME_OVERHEAD) as u32;
                let Ok(held) = received.clone().acquire_many_owned(cost).await else {
                    return;
                };
                let event = match (Message::from_json(&body), greeted) {
                    (Err(e), _) => break CloseReason::Protocol(e.to_string()),
                    (Ok(Message::Hello { version, role, listen, challenge }), false) => {
                        if version != PROTOCOL_VERSION {
                            break CloseReason::Protocol(format!(
                                "protocol version {version}, this node speaks {PROTOCOL_VERSION}"
                            ));
                        }
                        greeted = true;
                        match (&opened, challenge) {
                            (Opened::ByUs(prover), Some(challenge)) => {
                                let proof = Message::HelloProof {
                                    key: prover.identity.public_key(),
                                    signature: prover.identity.prove_hello(prover.me, listen, challenge),
                                };
                                let sent = async {
                                    link.feed(&proof, &traffic).await?;
                                    link.flush().await
                                };
                                if let Err(reason) = write_in_time(sent).await {
                                    break reason;
                                }
                                acceptor = Some((listen, role));
                                awaiting_proof = true;
                                continue;
                            }
                            (Opened::ByUs(_), None) => {
                                break CloseReason::Protocol("HELLO without a challenge".into())
                            }
                            (Opened::ByRemote, _) => awaiting_proof = true,
                        }
                        ConnEvent::Hello { id, listen, role, key: None, challenge }
                    }
                    (Ok(msg), true) if acceptor.is_some() => {
                        let (Opened::ByUs(prover), Some((listen, role))) = (&opened, acceptor) else {
                            break CloseReason::Protocol("unexpected state".into());
                        };
                        let Message::HelloProof { key, signature } = msg else {
                            break CloseReason::Protocol(format!(
                                "{} before the acceptor's HELLO_PROOF",
                                msg.kind()
                            ));
                        };
                        if let Err(e) = key.verify_accept(listen, prover.me, prover.challenge, &signature) {
                            break CloseReason::Protocol(format!(
                                "the HELLO_PROOF of {listen}, which this node dialled: {e}"
                            ));
                        }
                        // Decided here, before a frame is sent: the node
                        // reached must not get as much as a Raft request.
                        if let Some(pinned) = prover.pinned.filter(|p| *p != key) {
                            break CloseReason::SeedKey { seed: listen, pinned, proved: key };
                        }
                        acceptor = None;
                        awaiting_proof = false;
                        may_send = true;
                        ConnEvent::Hello { id, listen, role, key: Some(key), challenge: None }
                    }
                    (
                        Ok(
                            msg @ (Message::Probe { version, .. }
                            | Message::SuspectRequest { version, .. }
                            | Message::RekeyRequest { version, .. }
                            | Message::SeedsRequest { version, .. }),
                        ),
                        false,
                    ) if version != PROTOCOL_VERSION => {
                        break CloseReason::Protocol(format!(
                            "{} of protocol version {version}, this node speaks {PROTOCOL_VERSION}",
                            msg.kind()
                        ));
                    }
                    (
                        Ok(
                            msg @ (Message::Probe { .. }
                            | Message::SuspectRequest { .. }
                            | Message::RekeyRequest { .. }
                            | Message::SeedsRequest { .. }
                            | Message::StatusRequest {}),
                        ),
                        false,
                    ) => {
                        // Answered by the driver; nothing else may follow.
                        greeted = true;
                        ConnEvent::Query { id, msg }
                    }
                    (Ok(msg), false) => {
                        break CloseReason::Protocol(format!("{} before HELLO", msg.kind()))
                    }
                    (Ok(Message::Hello { .. }), true) => {
                        break CloseReason::Protocol("second HELLO".into())
                    }
                    (Ok(msg), true) => {
                        if matches!(msg, Message::HelloProof { .. }) {
                            awaiting_proof = false;
                        }
                        let now = std::time::Instant::now();
                        match limits.admit(&msg, now) {
                            Admit::Deliver => ConnEvent::Frame { id, msg, held: Some(held) },
                            Admit::Hold => {
                                held_link_report = Some(msg);
                                held_until = Instant::from_std(limits.reports_free_at(now));
                                continue;
                            }
                            Admit::Drop => match dropped.note(now) {
                                Some(count) => ConnEvent::Dropped { id, kind: msg.kind(), count },
                                None => continue,
                            },
                        }
                    }
                };
                if events.send(event).await.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep_until(held_until), if held_link_report.is_some() => {
                let now = std::time::Instant::now();
                if limits.take_report(now) {
                    let msg = held_link_report.take().expect("a held LINK_REPORT");
                    if events.send(ConnEvent::Frame { id, msg, held: None }).await.is_err() {
                        return;
                    }
                } else {
                    held_until = Instant::from_std(limits.reports_free_at(now));
                }
            }
            out = outbox.recv(), if may_send => match out {
                Some(frame) => {
                    // Whatever else is already queued goes out in the same
                    // write: one syscall per burst, not per frame.
                    let write = async {
                        let cost = frame.cost();
                        link.feed_encoded(frame, &traffic).await?;
                        queued.sub(cost);
                        while let Ok(more) = outbox.try_recv() {
                            let cost = more.cost();
                            link.feed_encoded(more, &traffic).await?;
                            queued.sub(cost);
                        }
                        link.flush().await
                    };
                    if let Err(reason) = write_in_time(write).await {
                        break reason;
                    }
                }
                // The driver dropped us: close after what was already sent.
                None => break CloseReason::Ended,
            },
            () = &mut hello_deadline, if !greeted || awaiting_proof => {
                let missing = if greeted { "HELLO_PROOF" } else { "HELLO" };
                break CloseReason::Protocol(format!("no {missing} within {HELLO_TIMEOUT:?}"));
            }
        }
    };
    let _ = link.flush().await;
    report_closed(&events, id, reason).await;
}
