//! One task per TCP connection: framing, the HELLO check, and the copy of
//! frames between the socket and the node's driver.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use tokio::{net::TcpStream, sync::mpsc, time::timeout};
use tokio_util::{
    bytes::Bytes,
    codec::{Framed, LengthDelimitedCodec},
};

use crate::proto::{
    message::{Message, Role, MAX_FRAME_LEN, PROTOCOL_VERSION},
    Event,
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
    fn sent(&self, msg: &Message, body_len: usize) {
        self.frames_sent.fetch_add(1, Relaxed);
        self.bytes_sent.fetch_add(body_len as u64 + 4, Relaxed);
        if matches!(msg, Message::Gossip { .. }) {
            self.gossip_sent.fetch_add(1, Relaxed);
        }
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

/// Encodes `msg` and writes it, counting it in `traffic`; `feed` leaves the
/// flush to the caller, so a burst of frames goes out in one write.
async fn feed(
    framed: &mut Framed<TcpStream, LengthDelimitedCodec>,
    msg: &Message,
    traffic: &Traffic,
) -> std::io::Result<()> {
    let body = Bytes::from(msg.to_json());
    traffic.sent(msg, body.len());
    framed.feed(body).await
}

/// What a connection task tells the driver.
#[derive(Debug)]
pub enum ConnEvent {
    Hello {
        id: ConnId,
        listen: SocketAddr,
        role: Role,
    },
    Frame {
        id: ConnId,
        msg: Message,
    },
    /// The remote opened with a one-shot query instead of HELLO (PROBE,
    /// SUSPECT_REQUEST or STATUS_REQUEST). The driver answers it, then
    /// closes the connection.
    Query {
        id: ConnId,
        msg: Message,
    },
    Closed {
        id: ConnId,
        reason: CloseReason,
    },
}

/// 4-byte big-endian length, then the body; bodies over 1 MiB are refused
/// before they are read.
pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .big_endian()
        .max_frame_length(MAX_FRAME_LEN)
        .new_codec()
}

/// Runs a connection we dialled: connect, say HELLO, then [`serve`].
pub async fn dial(
    id: ConnId,
    target: SocketAddr,
    hello: Message,
    outbox: mpsc::Receiver<Message>,
    events: mpsc::Sender<ConnEvent>,
    traffic: Arc<Traffic>,
) {
    let stream = match timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return report_closed(&events, id, CloseReason::Io(e.to_string())).await,
        Err(_) => {
            let reason = CloseReason::Io(format!("no answer within {CONNECT_TIMEOUT:?}"));
            return report_closed(&events, id, reason).await;
        }
    };
    let _ = stream.set_nodelay(true);
    let mut framed = Framed::new(stream, codec());
    let said_hello = async {
        feed(&mut framed, &hello, &traffic).await?;
        SinkExt::<Bytes>::flush(&mut framed).await
    };
    if let Err(e) = said_hello.await {
        return report_closed(&events, id, CloseReason::Io(e.to_string())).await;
    }
    serve(id, framed, outbox, events, traffic).await
}

/// Runs an accepted connection.
pub async fn accept(
    id: ConnId,
    stream: TcpStream,
    outbox: mpsc::Receiver<Message>,
    events: mpsc::Sender<ConnEvent>,
    traffic: Arc<Traffic>,
) {
    let _ = stream.set_nodelay(true);
    serve(id, Framed::new(stream, codec()), outbox, events, traffic).await
}

/// Dials `target` afresh, sends the one-shot `query` (PROBE,
/// SUSPECT_REQUEST or STATUS_REQUEST) instead of HELLO, and returns the
/// answer, or why there is none within `limit`.
pub async fn query(
    target: SocketAddr,
    query: &Message,
    limit: Duration,
    traffic: &Traffic,
) -> Result<Message, String> {
    let exchange = async {
        let stream = TcpStream::connect(target)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let mut framed = Framed::new(stream, codec());
        feed(&mut framed, query, traffic)
            .await
            .map_err(|e| e.to_string())?;
        SinkExt::<Bytes>::flush(&mut framed)
            .await
            .map_err(|e| e.to_string())?;
        let body = framed
            .next()
            .await
            .ok_or("closed without answering")?
            .map_err(|e| e.to_string())?;
        traffic.received(body.len());
        Message::from_json(&body).map_err(|e| e.to_string())
    };
    timeout(limit, exchange)
        .await
        .map_err(|_| format!("no answer within {limit:?}"))?
}

async fn report_closed(events: &mpsc::Sender<ConnEvent>, id: ConnId, reason: CloseReason) {
    // The driver may be gone during shutdown; then nobody needs to know.
    let _ = events.send(ConnEvent::Closed { id, reason }).await;
}

async fn serve(
    id: ConnId,
    mut framed: Framed<TcpStream, LengthDelimitedCodec>,
    mut outbox: mpsc::Receiver<Message>,
    events: mpsc::Sender<ConnEvent>,
    traffic: Arc<Traffic>,
) {
    let hello_deadline = tokio::time::sleep(HELLO_TIMEOUT);
    tokio::pin!(hello_deadline);
    let mut greeted = false;
    let reason = loop {
        tokio::select! {
            frame = framed.next() => {
                let body = match frame {
                    None => break CloseReason::Ended,
                    Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                        break CloseReason::Protocol(format!(
                            "frame longer than the {MAX_FRAME_LEN}-byte limit"
                        ))
                    }
                    Some(Err(e)) => break CloseReason::Io(e.to_string()),
                    Some(Ok(body)) => body,
                };
                traffic.received(body.len());
                let event = match (Message::from_json(&body), greeted) {
                    (Err(e), _) => break CloseReason::Protocol(e.to_string()),
                    (Ok(Message::Hello { version, role, listen }), false) => {
                        if version != PROTOCOL_VERSION {
                            break CloseReason::Protocol(format!(
                                "protocol version {version}, this node speaks {PROTOCOL_VERSION}"
                            ));
                        }
                        greeted = true;
                        ConnEvent::Hello { id, listen, role }
                    }
                    (
                        Ok(
                            msg @ (Message::Probe { version, .. }
                            | Message::SuspectRequest { version, .. }),
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
                    (Ok(msg), true) => ConnEvent::Frame { id, msg },
                };
                if events.send(event).await.is_err() {
                    return;
                }
            }
            out = outbox.recv() => match out {
                Some(msg) => {
                    // Whatever else is already queued goes out in the same
                    // write: one syscall per burst, not per frame.
                    let write = async {
                        feed(&mut framed, &msg, &traffic).await?;
                        while let Ok(more) = outbox.try_recv() {
                            feed(&mut framed, &more, &traffic).await?;
                        }
                        SinkExt::<Bytes>::flush(&mut framed).await
                    };
                    // A remote that stops reading (a frozen process) must
                    // not hold this task, its socket and its queue forever.
                    match timeout(WRITE_TIMEOUT, write).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => break CloseReason::Io(e.to_string()),
                        Err(_) => {
                            break CloseReason::Io(format!("could not write for {WRITE_TIMEOUT:?}"))
                        }
                    }
                }
                // The driver dropped us: close after what was already sent.
                None => break CloseReason::Ended,
            },
            () = &mut hello_deadline, if !greeted => {
                break CloseReason::Protocol(format!("no HELLO within {HELLO_TIMEOUT:?}"));
            }
        }
    };
    let _ = SinkExt::<Bytes>::flush(&mut framed).await;
    report_closed(&events, id, reason).await;
}
