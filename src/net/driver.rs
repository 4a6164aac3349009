//! The tokio driver: one task owns a node's core and carries out its outputs.
//!
//! Inputs (accepted sockets, frames, timer expiries, typed lines, shutdown)
//! meet in one `select!` loop; connection tasks talk to it over a bounded
//! channel. This is the mini-redis / iroh-gossip actor shape: the core never
//! waits, and everything that waits lives here.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    future::Future,
    net::{IpAddr, SocketAddr},
    sync::{atomic::AtomicUsize, Arc},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};

use super::{
    conn::{self, CloseReason, ConnEvent, ConnId, Outgoing, QueuedBytes, Traffic},
    icmp::{Icmp, Unavailable},
    limits::{
        link_queue_overflow, RefusalLog, DEFAULT_MAX_INBOUND, NODE_SEND_QUEUE_BYTES,
        RECEIVE_QUEUE_BYTES,
    },
    secure::NetworkKey,
};
use crate::{
    consensus::{Applied, ConsensusLink, IncomingRpc, OutgoingRpc},
    output::LogSink,
    proto::{
        evidence::{Identity, PublicKey, Signature},
        message::{Message, Role, PROTOCOL_VERSION},
        Command, Core, Directory, Event, Output, QueryError, Timestamp,
    },
};

/// Frames queued from connection tasks to the driver. Full means the driver
/// is behind, and readers wait: backpressure instead of memory growth. Their
/// bytes are bounded too, by [`RECEIVE_QUEUE_BYTES`].
pub const CONN_EVENT_QUEUE: usize = 1024;
/// Typed lines waiting for the driver.
pub const USER_LINE_QUEUE: usize = 64;
/// How long shutdown waits for connection tasks to flush.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long the node at a HELLO's address has to answer the PROBE that
/// checks it is the one that dialled. It is running (it just dialled), so
/// only a slow link makes this long.
pub const IDENTITY_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Identity checks (PROBEs of HELLO addresses) under way at once. Each
/// costs an outgoing connection, so a flood of HELLOs naming other hosts
/// cannot make this node dial them without bound; over it a newcomer is
/// closed, and an honest one dials again.
pub const MAX_IDENTITY_CHECKS: usize = 256;
/// Identity checks under way at once for connections from one source
/// address. A check may take its whole time limit (a claimed address that
/// takes the PROBE's connection and never answers), so one source could
/// otherwise hold every check and keep everyone else from linking; at 16
/// a source holds at most a sixteenth, and an honest node dials once.
pub const MAX_IDENTITY_CHECKS_PER_SOURCE: usize = 16;
/// Bytes of frames a remote may send after its HELLO before its identity
/// is proved; they wait, then count as its. An honest dialler sends a few
/// small frames in that time (a registration, a PING, a LINK_REPORT).
pub const UNPROVED_HOLD_BYTES: usize = 1 << 20;
/// Frames this node may have waiting for an address whose accepted
/// connection is still proving it is that node; past it, frames go on a
/// dial of their own. A few are all a check's time brings.
const MAX_WAITING_FRAMES: usize = 1024;

/// Takes one off `key`'s count, forgetting the key at zero.
fn release<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = counts.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(key);
        }
    }
}

/// Why the answer to the PROBE of a HELLO's `listen` does not show the
/// node that proved `key` there, if it does not.
fn identity_mismatch(
    result: &Result<Message, QueryError>,
    nonce: u64,
    listen: SocketAddr,
    role: Role,
    key: PublicKey,
) -> Option<String> {
    match result {
        Err(e) => Some(format!("a PROBE of {listen} found no node ({e})")),
        Ok(Message::ProbeReply {
            nonce: n,
            role: r,
            listen: l,
            key: k,
            ..
        }) => {
            if *n != nonce || *l != listen {
                Some(format!("the node at {listen} answered the PROBE as {l}"))
            } else if *r != role {
                Some(format!("a {r} listens at {listen}, not a {role}"))
            } else if *k != Some(key) {
                Some(format!("the node at {listen} holds another key"))
            } else {
                None
            }
        }
        Ok(other) => Some(format!("{listen} answered the PROBE with {}", other.kind())),
    }
}

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
    /// Accepted, and the remote's HELLO names `listen`: it must prove that
    /// it is the node there before the connection counts as that node's
    /// (see `Driver::on_hello_proof`). Its other frames wait in `held`.
    Proving {
        listen: SocketAddr,
        role: Role,
        challenge: u64,
        /// The key its HELLO_PROOF proved, once it came; the PROBE of
        /// `listen` must find the same.
        proved: Option<PublicKey>,
        held: Vec<(Message, Option<OwnedSemaphorePermit>)>,
        held_bytes: usize,
        /// Frames this node has for `listen` meanwhile: they go on this
        /// connection once it is proved, or on a dial of `listen` if not.
        waiting: Vec<Message>,
        /// The core asked to link to `listen` meanwhile.
        wanted: bool,
        /// The challenge of the dialler's HELLO: once it is proved, this
        /// node proves its own key by signing it.
        their_challenge: Option<u64>,
    },
    /// HELLO exchanged; `remote` is the other side's listen address, and
    /// `key` the key it proved.
    Open {
        remote: SocketAddr,
        role: Role,
        dialed_by_us: bool,
        key: Option<PublicKey>,
    },
}

impl ConnState {
    /// The remote dialled us: the connection counts against the inbound
    /// limit.
    fn is_inbound(&self) -> bool {
        match self {
            ConnState::Dialing { .. } => false,
            ConnState::AwaitingHello | ConnState::Proving { .. } => true,
            ConnState::Open { dialed_by_us, .. } => !dialed_by_us,
        }
    }
}

struct Conn {
    outbox: mpsc::UnboundedSender<Outgoing>,
    /// What `outbox` holds, in bytes.
    queued: Arc<QueuedBytes>,
    state: ConnState,
    /// The socket's remote address, for logs before HELLO names the node.
    socket_addr: Option<SocketAddr>,
    /// When the connection was set up.
    since: Instant,
    /// When the remote last sent a frame after its HELLO.
    heard: Option<Instant>,
    /// The remote asked a one-shot query, whose answer is on its way.
    answering: bool,
}

impl Conn {
    /// Which inbound connection goes first when the node needs room: the
    /// least use, then the longest unused. One that has not said HELLO,
    /// oldest first (an honest dialler says it at once); then one that
    /// said HELLO and nothing since; then the longest silent. A query
    /// being answered goes last.
    fn eviction_order(&self) -> (u8, Instant) {
        match (&self.state, self.heard) {
            _ if self.answering => (3, self.since),
            (ConnState::AwaitingHello, _) => (0, self.since),
            (ConnState::Proving { .. }, _) => (1, self.since),
            (_, None) => (1, self.since),
            (_, Some(heard)) => (2, heard),
        }
    }
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
    /// Seeds: where proposals, RPCs and status requests go.
    consensus: Option<ConsensusSide>,
    /// Raft RPCs sent and not yet answered: request id to (seed, reply).
    rpcs: HashMap<u64, PendingRpc>,
    /// Results of work done in spawned tasks, back to the driver.
    deferred_tx: mpsc::UnboundedSender<Deferred>,
    /// Nodes whose last dial failed, so that repeated failures log once.
    unreachable: HashSet<SocketAddr>,
    icmp: Icmp,
    traffic: Arc<Traffic>,
    /// When set, every connection runs the handshake with it.
    network_key: Option<Arc<NetworkKey>>,
    max_inbound: usize,
    /// Accepted connections in `conns`.
    inbound: usize,
    /// Accepted connections in `conns`, by the IP address they come from.
    inbound_by_ip: HashMap<IpAddr, usize>,
    over_inbound_log: RefusalLog,
    /// Bytes queued for all connections' sockets.
    queued_total: Arc<AtomicUsize>,
    /// Room for received frames waiting for this driver, in bytes.
    received: Arc<Semaphore>,
    too_slow_log: RefusalLog,
    /// This node's key: it signs HELLO_PROOFs and is stated to PROBEs.
    identity: Identity,
    /// PROBEs of HELLO addresses under way, by the source address of the
    /// connection each checks.
    identity_checks: HashMap<Option<IpAddr>, usize>,
    /// For each address, the first accepted connection still proving that
    /// it is the node there. Frames for that address wait for it rather
    /// than open a second connection, which the tie-break of simultaneous
    /// dials would then close with frames on it.
    proving: HashMap<SocketAddr, ConnId>,
    /// Claims of a seed with a key other than the one pinned for it that
    /// were logged: each is logged once, not at every one of Raft's
    /// redials, until that seed is seen with its pinned key again.
    key_refusals_logged: HashSet<(SocketAddr, PublicKey)>,
}

/// How the driver admits connections (docs/SECURITY.md).
#[derive(Debug, Clone)]
pub struct Admission {
    /// When set, every connection runs the Noise handshake with it.
    pub network_key: Option<NetworkKey>,
    /// Accepted connections open at once; past it, an older one is closed
    /// to make room.
    pub max_inbound: usize,
    /// The key this node proves on the connections it dials and states to
    /// PROBEs; without one the node makes a key for this run.
    pub identity: Option<Identity>,
}

impl Default for Admission {
    fn default() -> Self {
        Admission {
            network_key: None,
            max_inbound: DEFAULT_MAX_INBOUND,
            identity: None,
        }
    }
}

type PendingRpc = (SocketAddr, oneshot::Sender<Result<Value, String>>);

/// The senders of a seed's [`ConsensusLink`]; its receivers feed the loop.
struct ConsensusSide {
    proposals: mpsc::UnboundedSender<Command>,
    incoming: mpsc::Sender<IncomingRpc>,
    status: mpsc::Sender<oneshot::Sender<Value>>,
}

/// Work finished in a spawned task, handed back to the driver.
enum Deferred {
    QueryResult {
        to: SocketAddr,
        query: Message,
        result: Result<Message, QueryError>,
    },
    RpcAnswer {
        to: SocketAddr,
        id: u64,
        body: Value,
    },
    StatusAnswer {
        conn: ConnId,
        body: Value,
    },
    /// The PROBE of the address an accepted connection's HELLO named.
    IdentityChecked {
        conn: ConnId,
        /// The connection's source address, whose count of checks ends.
        source: Option<IpAddr>,
        nonce: u64,
        result: Result<Message, QueryError>,
    },
    IcmpResult {
        host: IpAddr,
        result: Result<(), String>,
    },
}

/// Runs `core` on `listener` until `shutdown` resolves. Typed lines arrive
/// on `user_lines` when the node reads standard input; a seed passes the
/// link to its consensus tasks.
pub async fn run<C: Core>(
    core: C,
    listener: TcpListener,
    sink: LogSink,
    user_lines: Option<mpsc::Receiver<String>>,
    consensus: Option<ConsensusLink>,
    admission: Admission,
    shutdown: impl Future<Output = ()>,
) {
    let (events_tx, mut events_rx) = mpsc::channel(CONN_EVENT_QUEUE);
    let (deferred_tx, mut deferred_rx) = mpsc::unbounded_channel();
    let (mut applied_rx, mut leader_rx, mut outgoing_rx, consensus) = match consensus {
        Some(link) => (
            Some(link.applied),
            Some(link.leader),
            Some(link.outgoing),
            Some(ConsensusSide {
                proposals: link.proposals,
                incoming: link.incoming,
                status: link.status,
            }),
        ),
        None => (None, None, None, None),
    };
    let hello = Message::Hello {
        version: PROTOCOL_VERSION,
        role: core.role(),
        listen: core.addr(),
        challenge: None,
    };
    let identity = admission
        .identity
        .unwrap_or_else(|| Identity::from_secret(rand::random()));
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
        consensus,
        rpcs: HashMap::new(),
        deferred_tx,
        unreachable: HashSet::new(),
        icmp: Icmp::new(std::process::id() as u16),
        traffic: Arc::default(),
        network_key: admission.network_key.map(Arc::new),
        max_inbound: admission.max_inbound.max(1),
        inbound: 0,
        inbound_by_ip: HashMap::new(),
        over_inbound_log: RefusalLog::default(),
        queued_total: Arc::default(),
        received: Arc::new(Semaphore::new(RECEIVE_QUEUE_BYTES)),
        too_slow_log: RefusalLog::default(),
        identity,
        identity_checks: HashMap::new(),
        proving: HashMap::new(),
        key_refusals_logged: HashSet::new(),
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
            () = &mut shutdown => {
                // A peer's LEAVE goes out on the connections it has; the
                // shutdown below flushes them before it closes.
                let now = driver.clock.now();
                driver.core.handle_shutdown(now);
                driver.drain_outputs();
                break;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, socket_addr)) => driver.accept(stream, socket_addr),
                // Out of descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            Some(event) = events_rx.recv() => driver.on_conn_event(event),
            () = sleep_until(next_timer) => driver.fire_due_timers(),
            Some(applied) = recv_unbounded(&mut applied_rx) => driver.on_applied(applied),
            Some(leader) = leader_change(&mut leader_rx) => {
                let now = driver.clock.now();
                driver.core.handle_leader(leader, now);
            }
            Some(rpc) = recv_some(&mut outgoing_rx) => driver.send_rpc(rpc),
            Some(done) = deferred_rx.recv() => driver.on_deferred(done),
            line = recv_some(&mut user_lines) => match line {
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
    // Nobody reads connection events any more; closing the channel lets
    // connection tasks finish instead of waiting for room in it.
    drop(events_rx);
    driver.shut_down().await;
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn recv_some<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_unbounded<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The new leader, when it changes; never resolves once the sender is gone.
async fn leader_change(
    rx: &mut Option<watch::Receiver<Option<SocketAddr>>>,
) -> Option<Option<SocketAddr>> {
    if let Some(watch) = rx {
        if watch.changed().await.is_ok() {
            return Some(*watch.borrow_and_update());
        }
    }
    std::future::pending().await
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
    ) -> (ConnId, conn::Channels) {
        let id = ConnId(self.next_seq);
        self.next_seq += 1;
        let (outbox, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(QueuedBytes::new(self.queued_total.clone()));
        self.conns.insert(
            id,
            Conn {
                outbox,
                queued: queued.clone(),
                state,
                socket_addr,
                since: Instant::now(),
                heard: None,
                answering: false,
            },
        );
        let channels = conn::Channels {
            outbox: rx,
            queued,
            events: self.events_tx.clone(),
            received: self.received.clone(),
            traffic: self.traffic.clone(),
        };
        (id, channels)
    }

    /// Takes every connection that arrives. At the limit, one already
    /// accepted makes room: the least used one of the source address that
    /// holds the most (see [`Conn::eviction_order`]). So a flood of
    /// connections from one source crowds out only itself, and even from
    /// the address everyone shares (one machine), a newcomer that says
    /// HELLO or asks its question at once, as every honest one does, is
    /// served: a seed's probe can never be shut out.
    fn accept(&mut self, stream: tokio::net::TcpStream, socket_addr: SocketAddr) {
        if self.inbound >= self.max_inbound {
            self.evict_one();
        }
        self.inbound += 1;
        *self.inbound_by_ip.entry(socket_addr.ip()).or_default() += 1;
        let (id, channels) = self.new_conn(ConnState::AwaitingHello, Some(socket_addr));
        let key = self.network_key.clone();
        self.tasks.spawn(conn::accept(id, stream, channels, key));
    }

    /// Closes the inbound connection that [`Driver::accept`] picks to make
    /// room, and logs it (at most once a second, with a count).
    fn evict_one(&mut self) {
        let Some((&busiest, &held)) = self.inbound_by_ip.iter().max_by_key(|(_, n)| **n) else {
            return;
        };
        let evicted = self
            .conns
            .iter()
            .filter(|(_, c)| c.state.is_inbound())
            .filter(|(_, c)| c.socket_addr.map(|a| a.ip()) == Some(busiest))
            .min_by_key(|(_, c)| c.eviction_order())
            .map(|(id, c)| (*id, c.socket_addr));
        let Some((id, socket_addr)) = evicted else {
            return;
        };
        if let (Some(closed), Some(remote)) =
            (self.over_inbound_log.note(Instant::now()), socket_addr)
        {
            let reason = format!(
                "closed to make room: over the limit of {} inbound connections, and {busiest} holds the most ({held}); {closed} closed since the last such line",
                self.max_inbound
            );
            self.log(Event::ConnectionRefused { remote, reason });
        }
        self.on_closed(id, CloseReason::Ended);
    }

    fn dial(&mut self, target: SocketAddr) -> ConnId {
        let (id, channels) = self.new_conn(ConnState::Dialing { target }, Some(target));
        self.by_remote.insert(target, id);
        // The acceptor must sign this, so that the node reached is known
        // to hold the key it then states.
        let challenge = rand::random();
        let hello = match &self.hello {
            Message::Hello {
                version,
                role,
                listen,
                ..
            } => Message::Hello {
                version: *version,
                role: *role,
                listen: *listen,
                challenge: Some(challenge),
            },
            other => other.clone(),
        };
        let key = self.network_key.clone();
        let prover = conn::Prover {
            identity: self.identity.clone(),
            me: self.core.addr(),
            challenge,
            pinned: self.core.pinned_key(&target),
        };
        self.tasks
            .spawn(conn::dial(id, target, hello, prover, channels, key));
        id
    }

    /// Drops a connection; its task sends what is queued and closes. What
    /// waited for an unproved connection goes to `listen` another way.
    fn forget(&mut self, id: ConnId) {
        let Some(mut conn) = self.conns.remove(&id) else {
            return;
        };
        if let ConnState::Proving {
            listen,
            waiting,
            wanted,
            ..
        } = &mut conn.state
        {
            let listen = *listen;
            if self.proving.get(&listen) == Some(&id) {
                self.proving.remove(&listen);
            }
            for msg in std::mem::take(waiting) {
                self.send_to(listen, msg);
            }
            if *wanted && !self.by_remote.contains_key(&listen) {
                self.dial(listen);
            }
        }
        if conn.state.is_inbound() {
            self.inbound -= 1;
            if let Some(ip) = conn.socket_addr.map(|a| a.ip()) {
                release(&mut self.inbound_by_ip, &ip);
            }
        }
        // A connection is filed under a remote only while dialling it or
        // once its HELLO named it.
        let filed_under = match conn.state {
            ConnState::Dialing { target } => Some(target),
            ConnState::Open { remote, .. } => Some(remote),
            ConnState::AwaitingHello | ConnState::Proving { .. } => None,
        };
        if let Some(remote) = filed_under {
            if self.by_remote.get(&remote) == Some(&id) {
                self.by_remote.remove(&remote);
            }
        }
    }

    fn on_conn_event(&mut self, event: ConnEvent) {
        match event {
            ConnEvent::Hello {
                id,
                listen,
                role,
                key,
                challenge,
            } => self.on_hello(id, listen, role, key, challenge),
            ConnEvent::Frame { id, msg, held } => self.on_frame(id, msg, held),
            ConnEvent::Query { id, msg } => self.on_query(id, msg),
            ConnEvent::Closed { id, reason } => self.on_closed(id, reason),
            ConnEvent::Dropped { id, kind, count } => {
                if let Some(remote) = self.remote_of(id) {
                    let kind = kind.to_string();
                    self.log(Event::FramesDropped {
                        remote,
                        kind,
                        count,
                    });
                }
            }
        }
    }

    /// A frame from an open connection goes to the core (Raft's to the
    /// consensus tasks); one from a connection whose identity is not yet
    /// proved waits, unless it is the proof.
    fn on_frame(&mut self, id: ConnId, msg: Message, permit: Option<OwnedSemaphorePermit>) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        match &mut conn.state {
            ConnState::Open {
                remote, role, key, ..
            } => {
                conn.heard = Some(Instant::now());
                let (remote, role, key, now) = (*remote, *role, *key, self.clock.now());
                match msg {
                    Message::RaftRequest { id, body } if role == Role::Seed => {
                        self.on_raft_request(remote, key, id, body)
                    }
                    Message::RaftResponse { id, body } if role == Role::Seed => {
                        self.on_raft_response(remote, id, body)
                    }
                    Message::HelloProof { .. } => {
                        let reason = "HELLO_PROOF on an open connection".to_string();
                        self.on_closed(id, CloseReason::Protocol(reason));
                    }
                    msg => {
                        self.core.handle_message(remote, msg, now);
                        if self.core.take_pinned_keys_changed() {
                            self.recheck_keys();
                        }
                    }
                }
            }
            ConnState::Proving {
                held, held_bytes, ..
            } => match msg {
                Message::HelloProof { key, signature } => self.on_hello_proof(id, key, signature),
                msg => {
                    *held_bytes += permit.as_ref().map_or(0, |p| p.num_permits());
                    held.push((msg, permit));
                    if *held_bytes > UNPROVED_HOLD_BYTES {
                        let reason = format!(
                            "sent over {UNPROVED_HOLD_BYTES} bytes before proving its identity"
                        );
                        self.protocol_error(id, reason);
                        self.forget(id);
                    }
                }
            },
            ConnState::Dialing { .. } | ConnState::AwaitingHello => {}
        }
    }

    /// The remote proved it holds `key`. Whether that is the key of the
    /// node at the address its HELLO named is asked of that address: a
    /// PROBE on a connection of this node's own, which reaches whoever
    /// really listens there.
    fn on_hello_proof(&mut self, id: ConnId, key: PublicKey, signature: Signature) {
        let me = self.core.addr();
        let checks: usize = self.identity_checks.values().sum();
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let source = conn.socket_addr.map(|a| a.ip());
        let from_source = self.identity_checks.get(&source).copied().unwrap_or(0);
        let ConnState::Proving {
            listen,
            challenge,
            proved,
            ..
        } = &mut conn.state
        else {
            return;
        };
        let (listen, challenge) = (*listen, *challenge);
        let refused = if proved.is_some() {
            Some("a second HELLO_PROOF".to_string())
        } else if let Err(e) = key.verify_hello(listen, me, challenge, &signature) {
            Some(format!("its HELLO_PROOF for {listen}: {e}"))
        } else if checks >= MAX_IDENTITY_CHECKS {
            Some(format!(
                "{MAX_IDENTITY_CHECKS} identity checks are under way; it may dial again"
            ))
        } else if from_source >= MAX_IDENTITY_CHECKS_PER_SOURCE {
            Some(format!(
                "{MAX_IDENTITY_CHECKS_PER_SOURCE} identity checks are under way for its source address; it may dial again"
            ))
        } else {
            *proved = Some(key);
            None
        };
        if let Some(reason) = refused {
            self.protocol_error(id, reason);
            return self.forget(id);
        }
        *self.identity_checks.entry(source).or_default() += 1;
        let nonce = rand::random();
        let probe = Message::Probe {
            version: PROTOCOL_VERSION,
            nonce,
        };
        let deferred = self.deferred_tx.clone();
        let traffic = self.traffic.clone();
        let network_key = self.network_key.clone();
        tokio::spawn(async move {
            let result = conn::query(
                listen,
                &probe,
                IDENTITY_PROBE_TIMEOUT,
                network_key.as_deref(),
                &traffic,
            )
            .await;
            let _ = deferred.send(Deferred::IdentityChecked {
                conn: id,
                source,
                nonce,
                result,
            });
        });
    }

    /// The PROBE of a HELLO's address answered: the connection is that
    /// node's if the node there states the role and the key proved.
    fn on_identity_checked(
        &mut self,
        id: ConnId,
        source: Option<IpAddr>,
        nonce: u64,
        result: Result<Message, QueryError>,
    ) {
        release(&mut self.identity_checks, &source);
        let Some(ConnState::Proving {
            listen,
            role,
            proved: Some(key),
            ..
        }) = self.conns.get(&id).map(|c| &c.state)
        else {
            return;
        };
        let (listen, role, key) = (*listen, *role, *key);
        if let Some(reason) = identity_mismatch(&result, nonce, listen, role, key) {
            self.protocol_error(id, format!("HELLO claims {listen}, but {reason}"));
            return self.forget(id);
        }
        // The node at that address holds the key it proved; if it claims a
        // seed, the key must also be the one the seeds' log pins for it.
        if self.refuses_key(listen, key) {
            return self.forget(id);
        }
        let Some(ConnState::Proving {
            held,
            waiting,
            their_challenge,
            ..
        }) = self.conns.get_mut(&id).map(|c| &mut c.state)
        else {
            return;
        };
        let (held, waiting) = (std::mem::take(held), std::mem::take(waiting));
        let their_challenge = *their_challenge;
        if self.proving.get(&listen) == Some(&id) {
            self.proving.remove(&listen);
        }
        self.open_accepted(id, listen, role, key);
        // Proved: now this node proves its own key to the dialler, before
        // anything else it sends there.
        let open = matches!(
            self.conns.get(&id).map(|c| &c.state),
            Some(ConnState::Open { .. })
        );
        if let (Some(challenge), true) = (their_challenge, open) {
            let proof = Message::HelloProof {
                key: self.identity.public_key(),
                signature: self
                    .identity
                    .prove_accept(self.core.addr(), listen, challenge),
            };
            self.send_on(id, proof);
        }
        for msg in waiting {
            self.send_to(listen, msg);
        }
        for (msg, permit) in held {
            self.on_frame(id, msg, permit);
        }
    }

    /// Whether the core refuses `key` for a node claiming `addr` (a seed
    /// whose log pins another key); logs the refusal once per claim.
    fn refuses_key(&mut self, addr: SocketAddr, key: PublicKey) -> bool {
        let Some(pinned) = self.core.pinned_key_refusing(&addr, &key) else {
            return false;
        };
        self.log_key_refusal(addr, pinned, key);
        true
    }

    fn log_key_refusal(&mut self, seed: SocketAddr, pinned: PublicKey, proved: PublicKey) {
        if self.key_refusals_logged.insert((seed, proved)) {
            self.log(Event::SeedKeyRefused {
                seed,
                pinned,
                proved,
            });
        }
    }

    /// Closes every open connection of a seed whose proved key is no
    /// longer the one pinned for it: called when the pinned keys change.
    fn recheck_keys(&mut self) {
        let open: Vec<(ConnId, SocketAddr, PublicKey)> = self
            .conns
            .iter()
            .filter_map(|(id, c)| match c.state {
                ConnState::Open {
                    remote,
                    key: Some(key),
                    ..
                } => Some((*id, remote, key)),
                _ => None,
            })
            .collect();
        for (id, remote, key) in open {
            if self.refuses_key(remote, key) {
                self.on_closed(id, CloseReason::Ended);
            }
        }
    }

    fn on_hello(
        &mut self,
        id: ConnId,
        listen: SocketAddr,
        role: Role,
        key: Option<PublicKey>,
        their_challenge: Option<u64>,
    ) {
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
                if let Some(key) = key {
                    if self.refuses_key(target, key) {
                        let reason = format!(
                            "the node at {target} proved key {key}, not the one pinned for seed {target}"
                        );
                        return self.on_closed(id, CloseReason::Io(reason));
                    }
                    self.key_refusals_logged.retain(|(a, _)| *a != target);
                }
                self.unreachable.remove(&target);
                self.set_open(id, target, role, true, key);
                self.core.handle_link_up(target, role, now);
            }
            ConnState::AwaitingHello => {
                if listen == self.core.addr() {
                    self.protocol_error(id, "HELLO claims this node's own address".into());
                    return self.forget(id);
                }
                // Without authentication this is the check we can make: a
                // node on another host cannot send from a seed's IP. (On one
                // machine every address is 127.0.0.1, so it cannot help there.)
                let source = conn.socket_addr.map(|a| a.ip());
                let claims_seed = self.core.is_seed(&listen);
                if (role == Role::Seed) != claims_seed {
                    let reason = format!(
                        "HELLO as {role} with the address {listen}, which the config lists as {}",
                        if claims_seed { "a seed" } else { "no seed" }
                    );
                    self.protocol_error(id, reason);
                    return self.forget(id);
                }
                if claims_seed && source.is_some_and(|ip| ip != listen.ip()) {
                    let reason = format!(
                        "HELLO claims seed {listen} from {}",
                        source.map(|ip| ip.to_string()).unwrap_or_default()
                    );
                    self.protocol_error(id, reason);
                    return self.forget(id);
                }
                // Decided now, on the claim, and again once it is proved:
                // a connection to be dropped never gets a HELLO back, so it
                // carries nothing.
                if self.our_dial_wins(listen) {
                    return self.forget(id);
                }
                // The remote must now prove that it is the node at `listen`.
                let challenge = rand::random();
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.state = ConnState::Proving {
                        listen,
                        role,
                        challenge,
                        proved: None,
                        held: Vec::new(),
                        held_bytes: 0,
                        waiting: Vec::new(),
                        wanted: false,
                        their_challenge,
                    };
                }
                self.proving.entry(listen).or_insert(id);
                let hello = Message::Hello {
                    version: PROTOCOL_VERSION,
                    role: self.core.role(),
                    listen: self.core.addr(),
                    challenge: Some(challenge),
                };
                self.send_on(id, hello);
            }
            ConnState::Open { .. } | ConnState::Proving { .. } => {}
        }
    }

    /// An accepted connection proved it is the node at `listen`: it
    /// becomes that node's connection, unless this node's own dial to it
    /// wins the tie-break.
    fn open_accepted(&mut self, id: ConnId, listen: SocketAddr, role: Role, key: PublicKey) {
        let now = self.clock.now();
        self.unreachable.remove(&listen);
        if self.our_dial_wins(listen) {
            return self.forget(id);
        }
        let was_linked = match self.by_remote.get(&listen).copied() {
            None => false,
            Some(existing) => {
                let linked = matches!(
                    self.conns.get(&existing).map(|c| &c.state),
                    Some(ConnState::Open { .. })
                );
                self.forget(existing);
                // RPCs queued on the replaced dial will never be answered
                // there; let Raft retry now.
                if !linked {
                    self.fail_rpcs_to(listen);
                }
                linked
            }
        };
        self.by_remote.insert(listen, id);
        self.key_refusals_logged.retain(|(a, _)| *a != listen);
        self.set_open(id, listen, role, false, Some(key));
        if !was_linked {
            self.core.handle_link_up(listen, role, now);
        }
    }

    /// Both sides dialled at once: the connection opened by the smaller
    /// address stays, as both ends agree. True when that is this node's
    /// own dial to `remote`, so a connection `remote` dialled must go.
    fn our_dial_wins(&self, remote: SocketAddr) -> bool {
        let ours = self
            .by_remote
            .get(&remote)
            .and_then(|id| self.conns.get(id));
        let ours = ours.is_some_and(|c| match c.state {
            ConnState::Dialing { .. } => true,
            ConnState::Open { dialed_by_us, .. } => dialed_by_us,
            ConnState::AwaitingHello | ConnState::Proving { .. } => false,
        });
        ours && self.core.addr() < remote
    }

    fn set_open(
        &mut self,
        id: ConnId,
        remote: SocketAddr,
        role: Role,
        dialed_by_us: bool,
        key: Option<PublicKey>,
    ) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.state = ConnState::Open {
                remote,
                role,
                dialed_by_us,
                key,
            };
        }
    }

    fn on_closed(&mut self, id: ConnId, reason: CloseReason) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let socket_addr = conn.socket_addr;
        let remote = match conn.state {
            ConnState::Dialing { target } => {
                let reason = reason.clone().text("closed before HELLO");
                // Logged once per outage: Raft redials a down seed twice a
                // second, and one line says as much as a thousand.
                if self.unreachable.insert(target) {
                    self.log(Event::ConnectFailed {
                        peer: target,
                        reason,
                    });
                }
                Some(target)
            }
            ConnState::Open { remote, .. } => Some(remote),
            ConnState::AwaitingHello | ConnState::Proving { .. } => None,
        };
        match reason {
            CloseReason::Protocol(text) => self.protocol_error(id, text),
            CloseReason::Refused(reason) => {
                if let Some(remote) = socket_addr {
                    self.log(Event::ConnectionRefused { remote, reason });
                }
            }
            CloseReason::SeedKey {
                seed,
                pinned,
                proved,
            } => self.log_key_refusal(seed, pinned, proved),
            CloseReason::Io(_) | CloseReason::Ended => {}
        }
        let current = remote.is_some_and(|r| self.by_remote.get(&r) == Some(&id));
        self.forget(id);
        if let (Some(remote), true) = (remote, current) {
            self.fail_rpcs_to(remote);
            let now = self.clock.now();
            self.core.handle_link_down(remote, now);
        }
    }

    fn protocol_error(&mut self, id: ConnId, reason: String) {
        if let Some(remote) = self.remote_of(id) {
            self.log(Event::ProtocolError { remote, reason });
        }
    }

    /// The node at the other end of `id`, as far as it is known: its
    /// listen address once it proved its HELLO, else the socket's address.
    fn remote_of(&self, id: ConnId) -> Option<SocketAddr> {
        let conn = self.conns.get(&id)?;
        match conn.state {
            ConnState::Open { remote, .. } => Some(remote),
            ConnState::Dialing { target } => Some(target),
            ConnState::AwaitingHello | ConnState::Proving { .. } => conn.socket_addr,
        }
    }

    /// Queues `msg` on connection `id`. A connection whose queue would go
    /// over [`super::limits::LINK_SEND_QUEUE_BYTES`] is closed as too slow,
    /// and so is the one holding the most when all together would go over
    /// [`NODE_SEND_QUEUE_BYTES`].
    fn send_on(&mut self, id: ConnId, msg: Message) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let frame = Outgoing::new(&msg);
        let cost = frame.cost();
        if let Some(reason) = link_queue_overflow(conn.queued.link(), cost) {
            return self.close_too_slow(id, reason);
        }
        if conn.queued.node() + cost > NODE_SEND_QUEUE_BYTES {
            let fullest = self
                .conns
                .iter()
                .max_by_key(|(_, c)| c.queued.link())
                .map(|(id, c)| (*id, c.queued.link()));
            if let Some((fullest, bytes)) = fullest {
                let reason = format!(
                    "the node's send queues would pass {NODE_SEND_QUEUE_BYTES} bytes, and this one holds the most ({bytes})"
                );
                self.close_too_slow(fullest, reason);
            }
            if fullest.is_some_and(|(f, _)| f == id) {
                return;
            }
        }
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        conn.queued.add(cost);
        // An error means the task has ended; its Closed event, with the
        // real reason, is on its way.
        let _ = conn.outbox.send(frame);
    }

    /// Closes a connection that cannot keep up, saying so at most once a
    /// second.
    fn close_too_slow(&mut self, id: ConnId, reason: String) {
        if let Some(count) = self.too_slow_log.note(Instant::now()) {
            let reason = match count {
                1 => reason,
                n => format!("{reason} ({n} such closes since the last such line)"),
            };
            self.protocol_error(id, reason);
        }
        self.on_closed(id, CloseReason::Ended);
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
                Output::Send { to, msg } => self.send_to(to, msg),
                Output::Propose(command) => {
                    if let Some(side) = &self.consensus {
                        let _ = side.proposals.send(command);
                    }
                }
                Output::Query { to, query, timeout } => self.start_query(to, query, timeout),
                Output::IcmpEcho { host, timeout } => self.start_icmp_echo(host, timeout),
                Output::Reply { token, msg } => {
                    self.send_on(ConnId(token), msg);
                    self.forget(ConnId(token));
                }
                Output::Connect(to) => {
                    match self.by_remote.get(&to).map(|id| &self.conns[id].state) {
                        Some(ConnState::Open { role, .. }) => {
                            let (role, now) = (*role, self.clock.now());
                            self.core.handle_link_up(to, role, now);
                        }
                        Some(_) => {}
                        None => match self.proving_state(to) {
                            Some(ConnState::Proving { wanted, .. }) => *wanted = true,
                            _ => {
                                self.dial(to);
                            }
                        },
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

    /// Sends on the connection to `to`, dialling it first if there is none.
    fn send_to(&mut self, to: SocketAddr, msg: Message) {
        let id = match self.by_remote.get(&to) {
            Some(id) => *id,
            None => {
                if let Some(ConnState::Proving { waiting, .. }) = self.proving_state(to) {
                    if waiting.len() < MAX_WAITING_FRAMES {
                        return waiting.push(msg);
                    }
                }
                self.dial(to)
            }
        };
        self.send_on(id, msg);
    }

    /// The state of the accepted connection proving that it is `to`, if
    /// one is.
    fn proving_state(&mut self, to: SocketAddr) -> Option<&mut ConnState> {
        let id = self.proving.get(&to)?;
        self.conns.get_mut(id).map(|c| &mut c.state)
    }

    fn send_rpc(&mut self, rpc: OutgoingRpc) {
        let id = self.next_seq;
        self.next_seq += 1;
        self.rpcs.insert(id, (rpc.target, rpc.reply));
        self.send_to(rpc.target, Message::RaftRequest { id, body: rpc.body });
    }

    fn on_raft_response(&mut self, from: SocketAddr, id: u64, body: Value) {
        if self
            .rpcs
            .get(&id)
            .is_some_and(|(target, _)| *target == from)
        {
            if let Some((_, reply)) = self.rpcs.remove(&id) {
                let _ = reply.send(Ok(body));
            }
        }
    }

    /// RPCs waiting on a connection that closed fail at once rather than
    /// at their timeout, so Raft retries sooner.
    fn fail_rpcs_to(&mut self, remote: SocketAddr) {
        let lost: Vec<u64> = self
            .rpcs
            .iter()
            .filter(|(_, (target, _))| *target == remote)
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            if let Some((_, reply)) = self.rpcs.remove(&id) {
                let _ = reply.send(Err(format!("connection to {remote} closed")));
            }
        }
    }

    fn on_raft_request(&mut self, from: SocketAddr, key: Option<PublicKey>, id: u64, body: Value) {
        let Some(side) = &self.consensus else {
            return;
        };
        let (reply, answer) = oneshot::channel();
        let request = IncomingRpc {
            from,
            key,
            body,
            reply,
        };
        // A full queue drops the request; Raft retries it.
        if side.incoming.try_send(request).is_ok() {
            let deferred = self.deferred_tx.clone();
            tokio::spawn(async move {
                if let Ok(body) = answer.await {
                    let _ = deferred.send(Deferred::RpcAnswer { to: from, id, body });
                }
            });
        }
    }

    /// Answers a one-shot query; the connection closes after the answer.
    fn on_query(&mut self, id: ConnId, msg: Message) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.answering = true;
        }
        match msg {
            Message::Probe { nonce, .. } => {
                let reply = Message::ProbeReply {
                    nonce,
                    role: self.core.role(),
                    listen: self.core.addr(),
                    incarnation: self.core.incarnation(),
                    key: Some(self.identity.public_key()),
                };
                self.send_on(id, reply);
                self.forget(id);
            }
            Message::StatusRequest {} => match &self.consensus {
                Some(side) => {
                    let (reply, answer) = oneshot::channel();
                    if side.status.try_send(reply).is_err() {
                        return self.forget(id);
                    }
                    let deferred = self.deferred_tx.clone();
                    tokio::spawn(async move {
                        if let Ok(body) = answer.await {
                            let _ = deferred.send(Deferred::StatusAnswer { conn: id, body });
                        }
                    });
                }
                None => {
                    let status = serde_json::json!({
                        "error": format!("{} is a peer; ask a seed", self.core.addr())
                    });
                    self.send_on(id, Message::StatusReply { status });
                    self.forget(id);
                }
            },
            Message::SuspectRequest { .. } if self.core.role() == Role::Peer => {
                let now = self.clock.now();
                self.core.handle_query(id.0, msg, now);
            }
            Message::RekeyRequest { .. } | Message::SeedsRequest { .. }
                if self.core.role() == Role::Seed =>
            {
                let now = self.clock.now();
                self.core.handle_query(id.0, msg, now);
            }
            _ => self.forget(id),
        }
    }

    fn on_deferred(&mut self, done: Deferred) {
        match done {
            Deferred::QueryResult { to, query, result } => {
                let now = self.clock.now();
                self.core.handle_query_result(to, query, result, now);
            }
            Deferred::RpcAnswer { to, id, body } => {
                self.send_to(to, Message::RaftResponse { id, body })
            }
            Deferred::IcmpResult { host, result } => {
                let now = self.clock.now();
                self.core.handle_icmp_result(host, result, now);
            }
            Deferred::IdentityChecked {
                conn,
                source,
                nonce,
                result,
            } => self.on_identity_checked(conn, source, nonce, result),
            Deferred::StatusAnswer { conn, body } => {
                self.send_on(conn, Message::StatusReply { status: body });
                self.forget(conn);
            }
        }
    }

    fn start_icmp_echo(&mut self, host: IpAddr, timeout: Duration) {
        match self.icmp.echo(host, timeout) {
            Ok(echo) => {
                let deferred = self.deferred_tx.clone();
                tokio::spawn(async move {
                    let result = echo.await;
                    let _ = deferred.send(Deferred::IcmpResult { host, result });
                });
            }
            Err(Unavailable::Now(reason)) => self.log(Event::IcmpUnavailable { reason }),
            Err(Unavailable::Before) => {}
        }
    }

    /// Sends a one-shot query on a fresh connection, in its own task.
    fn start_query(&mut self, to: SocketAddr, query: Message, limit: Duration) {
        let deferred = self.deferred_tx.clone();
        let traffic = self.traffic.clone();
        let key = self.network_key.clone();
        tokio::spawn(async move {
            let result = conn::query(to, &query, limit, key.as_deref(), &traffic).await;
            let _ = deferred.send(Deferred::QueryResult { to, query, result });
        });
    }

    fn on_applied(&mut self, applied: Applied<Directory>) {
        let now = self.clock.now();
        match applied {
            Applied::Entry {
                command, response, ..
            } => {
                self.core.handle_applied(&command, &response, now);
                if matches!(
                    response,
                    crate::proto::Outcome::SeedKeyPinned
                        | crate::proto::Outcome::SeedRekeyed { .. }
                        | crate::proto::Outcome::SeedsChanged
                ) {
                    self.recheck_keys();
                }
            }
            Applied::Snapshot { state, .. } => {
                self.core.handle_snapshot(state, now);
                self.recheck_keys();
            }
        }
    }

    async fn shut_down(mut self) {
        self.log(self.traffic.event());
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
