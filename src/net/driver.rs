//! The tokio driver: one task owns a node's core and carries out its outputs.
//!
//! Inputs (accepted sockets, frames, timer expiries, typed lines, shutdown)
//! meet in one `select!` loop; connection tasks talk to it over a bounded
//! channel. This is the mini-redis / iroh-gossip actor shape: the core never
//! waits, and everything that waits lives here.

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    net::SocketAddr,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tokio::{net::TcpListener, sync::mpsc, task::JoinSet};

use super::conn::{self, CloseReason, ConnEvent, ConnId};
use crate::{
    output::LogSink,
    proto::{
        message::{Message, Role, PROTOCOL_VERSION},
        Core, Event, Output, Timestamp,
    },
};

/// Frames queued from connection tasks to the driver. Full means the driver
/// is behind, and readers wait: backpressure instead of memory growth.
pub const CONN_EVENT_QUEUE: usize = 1024;
/// Frames queued for one connection's socket. A connection that falls this
/// far behind is closed as too slow rather than buffered without bound.
pub const CONN_SEND_QUEUE: usize = 1024;
/// Typed lines waiting for the driver.
pub const USER_LINE_QUEUE: usize = 64;
/// How long shutdown waits for connection tasks to flush.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Maps the monotonic clock to Unix time, anchored once, so that time
/// handed to the core never goes backwards.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    anchor_unix_us: u64,
    anchor: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Clock {
            anchor_unix_us: unix.as_micros() as u64,
            anchor: Instant::now(),
        }
    }

    pub fn now(&self) -> Timestamp {
        Timestamp(self.anchor_unix_us + self.anchor.elapsed().as_micros() as u64)
    }

    fn instant_at(&self, ts: Timestamp) -> Instant {
        self.anchor + Duration::from_micros(ts.as_micros().saturating_sub(self.anchor_unix_us))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[derive(Debug)]
enum ConnState {
    /// We are dialling `target`; frames queue in the outbox meanwhile.
    Dialing { target: SocketAddr },
    /// Accepted; waiting for the remote's HELLO.
    AwaitingHello,
    /// HELLO exchanged; `remote` is the other side's listen address.
    Open {
        remote: SocketAddr,
        role: Role,
        dialed_by_us: bool,
    },
}

struct Conn {
    outbox: mpsc::Sender<Message>,
    state: ConnState,
    /// The socket's remote address, for logs before HELLO names the node.
    socket_addr: Option<SocketAddr>,
}

struct Driver<C: Core> {
    core: C,
    clock: Clock,
    sink: LogSink,
    hello: Message,
    conns: HashMap<ConnId, Conn>,
    /// The one connection used for each remote node (dialling or open).
    by_remote: HashMap<SocketAddr, ConnId>,
    timers: BTreeMap<(Timestamp, u64), C::Timer>,
    next_seq: u64,
    tasks: JoinSet<()>,
    events_tx: mpsc::Sender<ConnEvent>,
}

/// Runs `core` on `listener` until `shutdown` resolves. Typed lines arrive
/// on `user_lines` when the node reads standard input.
pub async fn run<C: Core>(
    core: C,
    listener: TcpListener,
    sink: LogSink,
    user_lines: Option<mpsc::Receiver<String>>,
    shutdown: impl Future<Output = ()>,
) {
    let (events_tx, mut events_rx) = mpsc::channel(CONN_EVENT_QUEUE);
    let hello = Message::Hello {
        version: PROTOCOL_VERSION,
        role: core.role(),
        listen: core.addr(),
    };
    let mut driver = Driver {
        core,
        clock: Clock::new(),
        sink,
        hello,
        conns: HashMap::new(),
        by_remote: HashMap::new(),
        timers: BTreeMap::new(),
        next_seq: 0,
        tasks: JoinSet::new(),
        events_tx,
    };
    let role = driver.core.role();
    driver.log(Event::Listening { role });
    let now = driver.clock.now();
    driver.core.start(now);
    driver.drain_outputs();
    driver.sink.flush();

    let mut user_lines = user_lines;
    tokio::pin!(shutdown);
    loop {
        let next_timer = driver
            .timers
            .keys()
            .next()
            .map(|(at, _)| driver.clock.instant_at(*at));
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, socket_addr)) => driver.accept(stream, socket_addr),
                // Out of descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            Some(event) = events_rx.recv() => driver.on_conn_event(event),
            () = sleep_until(next_timer) => driver.fire_due_timers(),
            line = recv_line(&mut user_lines) => match line {
                Some(line) => {
                    let now = driver.clock.now();
                    driver.core.handle_user_line(&line, now);
                }
                None => user_lines = None,
            },
        }
        driver.drain_outputs();
        driver.sink.flush();
    }
    driver.shut_down().await;
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn recv_line(lines: &mut Option<mpsc::Receiver<String>>) -> Option<String> {
    match lines {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl<C: Core> Driver<C> {
    fn log(&mut self, event: Event) {
        let now = self.clock.now();
        self.sink.emit(now, &event);
    }

    fn new_conn(
        &mut self,
        state: ConnState,
        socket_addr: Option<SocketAddr>,
    ) -> (ConnId, mpsc::Receiver<Message>) {
        let id = ConnId(self.next_seq);
        self.next_seq += 1;
        let (outbox, rx) = mpsc::channel(CONN_SEND_QUEUE);
        self.conns.insert(
            id,
            Conn {
                outbox,
                state,
                socket_addr,
            },
        );
        (id, rx)
    }

    fn accept(&mut self, stream: tokio::net::TcpStream, socket_addr: SocketAddr) {
        let (id, rx) = self.new_conn(ConnState::AwaitingHello, Some(socket_addr));
        let events = self.events_tx.clone();
        self.tasks.spawn(conn::accept(id, stream, rx, events));
    }

    fn dial(&mut self, target: SocketAddr) -> ConnId {
        let (id, rx) = self.new_conn(ConnState::Dialing { target }, Some(target));
        self.by_remote.insert(target, id);
        let events = self.events_tx.clone();
        let hello = self.hello.clone();
        self.tasks.spawn(conn::dial(id, target, hello, rx, events));
        id
    }

    /// Drops a connection; its task sends what is queued and closes.
    fn forget(&mut self, id: ConnId) {
        self.conns.remove(&id);
        self.by_remote.retain(|_, c| *c != id);
    }

    fn on_conn_event(&mut self, event: ConnEvent) {
        match event {
            ConnEvent::Hello { id, listen, role } => self.on_hello(id, listen, role),
            ConnEvent::Frame { id, msg } => {
                if let Some(Conn {
                    state: ConnState::Open { remote, .. },
                    ..
                }) = self.conns.get(&id)
                {
                    let (remote, now) = (*remote, self.clock.now());
                    self.core.handle_message(remote, msg, now);
                }
            }
            ConnEvent::Closed { id, reason } => self.on_closed(id, reason),
        }
    }

    fn on_hello(&mut self, id: ConnId, listen: SocketAddr, role: Role) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let now = self.clock.now();
        match conn.state {
            ConnState::Dialing { target } => {
                if self.by_remote.get(&target) != Some(&id) {
                    // Superseded by a connection the remote dialled.
                    return self.forget(id);
                }
                self.set_open(id, target, role, true);
                self.core.handle_link_up(target, role, now);
            }
            ConnState::AwaitingHello => {
                if listen == self.core.addr() {
                    self.protocol_error(id, "HELLO claims this node's own address".into());
                    return self.forget(id);
                }
                let was_linked = match self.by_remote.get(&listen).copied() {
                    None => false,
                    Some(existing) => {
                        let (linked, dialed_by_us) =
                            match self.conns.get(&existing).map(|c| &c.state) {
                                Some(ConnState::Open { dialed_by_us, .. }) => (true, *dialed_by_us),
                                _ => (false, true),
                            };
                        // Both sides dialled at once: keep the connection
                        // opened by the smaller address, as both ends agree.
                        if dialed_by_us && self.core.addr() < listen {
                            return self.forget(id);
                        }
                        self.forget(existing);
                        linked
                    }
                };
                self.by_remote.insert(listen, id);
                self.set_open(id, listen, role, false);
                let hello = self.hello.clone();
                self.send_on(id, hello);
                if !was_linked {
                    self.core.handle_link_up(listen, role, now);
                }
            }
            ConnState::Open { .. } => {}
        }
    }

    fn set_open(&mut self, id: ConnId, remote: SocketAddr, role: Role, dialed_by_us: bool) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.state = ConnState::Open {
                remote,
                role,
                dialed_by_us,
            };
        }
    }

    fn on_closed(&mut self, id: ConnId, reason: CloseReason) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let remote = match conn.state {
            ConnState::Dialing { target } => {
                let reason = match &reason {
                    CloseReason::Io(e) | CloseReason::Protocol(e) => e.clone(),
                    CloseReason::Ended => "closed before HELLO".into(),
                };
                self.log(Event::ConnectFailed {
                    peer: target,
                    reason,
                });
                Some(target)
            }
            ConnState::Open { remote, .. } => Some(remote),
            ConnState::AwaitingHello => None,
        };
        if let CloseReason::Protocol(text) = reason {
            self.protocol_error(id, text);
        }
        let current = remote.is_some_and(|r| self.by_remote.get(&r) == Some(&id));
        self.forget(id);
        if let (Some(remote), true) = (remote, current) {
            let now = self.clock.now();
            self.core.handle_link_down(remote, now);
        }
    }

    fn protocol_error(&mut self, id: ConnId, reason: String) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let remote = match conn.state {
            ConnState::Open { remote, .. } => Some(remote),
            ConnState::Dialing { target } => Some(target),
            ConnState::AwaitingHello => conn.socket_addr,
        };
        if let Some(remote) = remote {
            self.log(Event::ProtocolError { remote, reason });
        }
    }

    /// Queues `msg` on connection `id`; a full queue closes it as too slow.
    fn send_on(&mut self, id: ConnId, msg: Message) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        match conn.outbox.try_send(msg) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                let reason = CloseReason::Protocol(format!(
                    "send queue of {CONN_SEND_QUEUE} frames is full; the remote is too slow"
                ));
                self.on_closed(id, reason);
            }
            // The task has ended; its Closed event, with the real reason,
            // is on its way.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn fire_due_timers(&mut self) {
        let now = self.clock.now();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            self.core.handle_timer(timer, now);
        }
    }

    fn drain_outputs(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Send { to, msg } => {
                    let id = match self.by_remote.get(&to) {
                        Some(id) => *id,
                        None => self.dial(to),
                    };
                    self.send_on(id, msg);
                }
                Output::Connect(to) => {
                    match self.by_remote.get(&to).map(|id| &self.conns[id].state) {
                        Some(ConnState::Open { role, .. }) => {
                            let (role, now) = (*role, self.clock.now());
                            self.core.handle_link_up(to, role, now);
                        }
                        Some(_) => {}
                        None => {
                            self.dial(to);
                        }
                    }
                }
                Output::Close(remote) => {
                    if let Some(id) = self.by_remote.get(&remote).copied() {
                        let was_open = matches!(self.conns[&id].state, ConnState::Open { .. });
                        self.forget(id);
                        if was_open {
                            let now = self.clock.now();
                            self.core.handle_link_down(remote, now);
                        }
                    }
                }
                Output::Timer { timer, at } => {
                    self.timers.insert((at, self.next_seq), timer);
                    self.next_seq += 1;
                }
                Output::Event(event) => self.log(event),
            }
        }
    }

    async fn shut_down(mut self) {
        self.log(Event::Shutdown);
        self.sink.flush();
        // Dropping the outboxes lets each task flush and close its socket.
        self.conns.clear();
        self.by_remote.clear();
        let tasks = &mut self.tasks;
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
    }
}
