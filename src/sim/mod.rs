//! A deterministic discrete-event simulator that runs the real cores.
//!
//! The very `PeerCore` and `SeedCore` that run on sockets run here, driven
//! by a virtual clock and one time-ordered queue of actions. Everything
//! random comes from one ChaCha8 generator seeded by the caller, and every
//! structure that is ever walked is ordered (`BTreeMap`; hashed maps are
//! only looked up), so a seed gives the same run, event for event.
//!
//! What the simulator stands in for:
//! - **The seeds' Raft log**: proposals are appended to one in-process log
//!   after a round trip to the leader, and every seed sees every entry in
//!   log order, which is what Raft guarantees them. The entry is applied
//!   once, to one directory that the seed cores share (the log's state
//!   machine), and each core then acts on it as if it had applied it
//!   itself. The seed cores themselves are real: registration probes,
//!   evidence checks, votes, Peer Lists.
//! - **Seed faults**: an entry commits only while a majority of the seeds
//!   runs; proposed without one, it waits and commits, in order, once a
//!   majority is back, as Raft would. A frozen seed's state follows the
//!   log, and what it does about the entries (acks, notices) waits for
//!   its resume; a crashed seed does nothing more.
//! - **TCP, as the driver sees it**: a dial opens a link that both ends learn
//!   of (`handle_link_up`); frames on a link arrive in order after the link
//!   latency; a lost segment costs a retransmission timeout rather than the
//!   frame; a crashed node's links go down at the other ends one latency
//!   later, as a kernel's FIN or RST would; a frozen node's kernel still
//!   accepts connections, but nothing it should answer is answered until it
//!   resumes. One-shot queries (PROBE, SUSPECT_REQUEST) fail fast against a
//!   crashed node and at their time limit against a frozen one.
//!
//! - **Partitions**: frames across a cut wait, as TCP retransmits them;
//!   links across it break after the driver's write timeout; dials and
//!   queries across it fail at their time limits; healing delivers what
//!   waited.
//!
//! - **A slow reader**: a peer that stops reading its links with other
//!   peers (see [`Sim::read_slowly`]). Frames sent to it on them wait
//!   unread, counted in bytes as the driver counts its send queue; a link
//!   whose unread frames would pass the driver's bound is closed by the
//!   sender, as the driver closes it. The slow reader still runs and sends,
//!   and answers queries on fresh connections (PROBE among them).
//!
//! Not modelled: bandwidth; a partition that cuts the seeds from each
//! other (the log commits as long as a majority runs); the kernel's socket
//! buffers, which in a real node take some megabytes for a slow reader
//! before the driver's queue begins to fill.

pub mod metrics;
pub mod plot;
pub mod report;
pub mod scenario;

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, BinaryHeap},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::net::{conn::Outgoing, limits::link_queue_overflow};
use crate::proto::{
    evidence::{Identity, ReportContent, VerifiedGossip},
    message::{Message, Role},
    peer::{PeerCore, PeerSettings, PeerTimer},
    seed::{directory, SeedCore, SeedTimer},
    sorted::SortedMap,
    Command, Core, Directory, Event, Output, QueryError, Timestamp,
};

/// How the simulated network treats frames.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkModel {
    /// One-way latency of each frame, drawn uniformly from this range.
    pub latency: (Duration, Duration),
    /// Chance that a frame's first transmission is lost; TCP then resends it
    /// after [`RETRANSMIT`].
    pub loss: f64,
}

impl Default for NetworkModel {
    /// 1 to 5 ms, no loss: a local network.
    fn default() -> Self {
        NetworkModel {
            latency: (Duration::from_millis(1), Duration::from_millis(5)),
            loss: 0.0,
        }
    }
}

/// What a lost segment costs TCP: Linux's minimum retransmission timeout.
pub const RETRANSMIT: Duration = Duration::from_millis(200);
/// A dial to a frozen node fails when its HELLO never comes: the driver's
/// HELLO timeout.
pub const HELLO_TIMEOUT: Duration = crate::net::conn::HELLO_TIMEOUT;
/// A link cut by a partition breaks when a frame cannot be written for
/// this long: the driver's write timeout.
pub const WRITE_TIMEOUT: Duration = crate::net::conn::WRITE_TIMEOUT;
/// A dial across a partition fails after the driver's connect timeout.
pub const CONNECT_TIMEOUT: Duration = crate::net::conn::CONNECT_TIMEOUT;

/// A node's state as the simulator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Up,
    /// SIGSTOP: its sockets stay open, it handles nothing until resumed.
    Frozen,
    /// SIGKILL: gone for good.
    Crashed,
}

enum NodeCore {
    Peer(Box<PeerCore<ChaCha8Rng>>),
    Seed(Box<SeedCore>),
}

#[derive(Debug, Clone)]
enum NodeTimer {
    Peer(PeerTimer),
    Seed(SeedTimer),
}

/// Calls `$body` with `$core` bound to whichever core the node runs.
macro_rules! each_core {
    ($node:expr, $core:ident => $body:expr) => {
        match $node {
            NodeCore::Peer($core) => $body,
            NodeCore::Seed($core) => $body,
        }
    };
}

impl NodeCore {
    fn role(&self) -> Role {
        each_core!(self, c => c.role())
    }

    fn drain_into(&mut self, outputs: &mut Vec<Output<NodeTimer>>) {
        match self {
            NodeCore::Peer(c) => outputs.extend(
                std::iter::from_fn(|| c.poll_output()).map(|o| o.map_timer(NodeTimer::Peer)),
            ),
            NodeCore::Seed(c) => outputs.extend(
                std::iter::from_fn(|| c.poll_output()).map(|o| o.map_timer(NodeTimer::Seed)),
            ),
        }
    }
}

struct Node {
    core: NodeCore,
    health: Health,
    /// Actions that arrived while frozen, handled on resume.
    held: Vec<Action>,
    /// What a frozen seed's core asked for after a commit it applied while
    /// frozen; carried out on resume, when its log would have caught up.
    held_outputs: Vec<Output<NodeTimer>>,
    /// This node's end of its connections with others, open or once open,
    /// by the other end's number. Sorted in one vector rather than a tree:
    /// a peer has tens of connections and a seed's grow mostly at the end,
    /// as peers join in number order, so a search touches one allocation
    /// instead of a chain of tree nodes.
    channels: SortedMap<NodeId, Channel>,
}

/// One end of a connection between two nodes.
#[derive(Debug, Clone, Copy, Default)]
struct Channel {
    /// A link is open; both ends say so.
    open: bool,
    /// When the last frame sent from this end arrives: TCP keeps each
    /// direction in order, so no later frame may arrive before it.
    last_arrival: Timestamp,
}

impl Node {
    /// The nodes this one has an open link with.
    fn linked(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.channels
            .iter()
            .filter(|(_, c)| c.open)
            .map(|(id, _)| NodeTable::address(*id))
    }

    fn new(core: NodeCore) -> Node {
        Node {
            core,
            health: Health::Up,
            held: Vec::new(),
            held_outputs: Vec::new(),
            channels: SortedMap::default(),
        }
    }
}

/// The nodes, each found by its address in one step rather than by a
/// search: the simulator numbers the addresses it hands out (seeds at
/// 10.255.0.i:5000, peers at 10.b.c.d:7000 from 10.0.0.1 on), so a node's
/// slot follows from its address.
#[derive(Default)]
struct NodeTable {
    seeds: Vec<Node>,
    peers: Vec<Node>,
}

impl NodeTable {
    fn seed_address(i: usize) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 255, 0, i as u8 + 1)), 5000)
    }

    fn peer_address(i: usize) -> SocketAddr {
        let [_, b, c, d] = (i as u32 + 1).to_be_bytes();
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, b, c, d)), 7000)
    }

    /// Seeds are numbered from 0, peers from [`NodeTable::FIRST_PEER`].
    const FIRST_PEER: u32 = 256;

    fn id(addr: &SocketAddr) -> Option<NodeId> {
        match Self::slot(addr)? {
            Slot::Seed(i) => Some(NodeId(i as u32)),
            Slot::Peer(i) => Some(NodeId(Self::FIRST_PEER + i as u32)),
        }
    }

    fn address(id: NodeId) -> SocketAddr {
        match id.0.checked_sub(Self::FIRST_PEER) {
            Some(i) => Self::peer_address(i as usize),
            None => Self::seed_address(id.0 as usize),
        }
    }

    fn get(&self, addr: &SocketAddr) -> Option<&Node> {
        match Self::slot(addr)? {
            Slot::Seed(i) => self.seeds.get(i),
            Slot::Peer(i) => self.peers.get(i),
        }
    }

    fn get_mut(&mut self, addr: &SocketAddr) -> Option<&mut Node> {
        match Self::slot(addr)? {
            Slot::Seed(i) => self.seeds.get_mut(i),
            Slot::Peer(i) => self.peers.get_mut(i),
        }
    }

    fn slot(addr: &SocketAddr) -> Option<Slot> {
        let SocketAddr::V4(v4) = addr else {
            return None;
        };
        let [a, b, c, d] = v4.ip().octets();
        match (a, v4.port()) {
            (10, 5000) if (b, c) == (255, 0) && d > 0 => Some(Slot::Seed(usize::from(d) - 1)),
            (10, 7000) => (u32::from_be_bytes([0, b, c, d]) as usize)
                .checked_sub(1)
                .map(Slot::Peer),
            _ => None,
        }
    }
}

enum Slot {
    Seed(usize),
    Peer(usize),
}

/// A node's number: maps keyed by it compare one integer, not an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct NodeId(u32);

impl std::ops::Index<&SocketAddr> for NodeTable {
    type Output = Node;

    fn index(&self, addr: &SocketAddr) -> &Node {
        self.get(addr).expect("a simulated node")
    }
}

/// Asks the CPU to start loading the first `lines` cache lines of
/// `value` into its cache, without waiting for them.
#[inline(always)]
fn prefetch_lines<T>(value: &T, lines: usize) {
    let start = (value as *const T).cast::<i8>();
    for line in 0..lines {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is only a hint: it reads nothing into the
        // program and never faults, whatever the address.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(line * 64));
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (start, line);
    }
}

/// Something that happens at one node at one instant.
#[derive(Debug, Clone)]
enum Action {
    Deliver {
        to: SocketAddr,
        from: SocketAddr,
        msg: Message,
    },
    /// A dial from `from` reaches `to`.
    DialArrive {
        from: SocketAddr,
        to: SocketAddr,
    },
    /// `from`'s dial to `to` is still unanswered at the HELLO timeout.
    DialTimeout {
        from: SocketAddr,
        to: SocketAddr,
    },
    LinkUp {
        at: SocketAddr,
        remote: SocketAddr,
    },
    LinkDown {
        at: SocketAddr,
        remote: SocketAddr,
    },
    Timer {
        at: SocketAddr,
        timer: NodeTimer,
    },
    QueryArrive {
        token: u64,
        to: SocketAddr,
        query: Message,
    },
    QueryDone {
        token: u64,
        result: Result<Message, QueryError>,
    },
    /// An entry of the seeds' log is applied on every seed.
    Commit {
        command: Command,
    },
    UserLine {
        at: SocketAddr,
        text: String,
    },
    IcmpDone {
        at: SocketAddr,
        host: IpAddr,
        result: Result<(), String>,
    },
    /// `from` stopped cleanly: its link with `to` closes at `to`'s end,
    /// after the frames it sent last.
    Hangup {
        from: SocketAddr,
        to: SocketAddr,
    },
    /// A link across the partition has had frames unwritten for the write
    /// timeout: both ends drop it, if the cut still holds.
    CutTimeout {
        a: SocketAddr,
        b: SocketAddr,
    },
}

impl Action {
    /// The nodes whose state handling it touches, as far as it is cheap
    /// to tell: first the one whose core handles it, then the other end.
    fn ends(&self) -> [Option<SocketAddr>; 2] {
        match self {
            Action::Deliver { to, from, .. } | Action::DialArrive { from, to } => {
                [Some(*to), Some(*from)]
            }
            Action::DialTimeout { from, to } => [Some(*from), Some(*to)],
            Action::Hangup { from, to } => [Some(*to), Some(*from)],
            Action::LinkUp { at, remote } | Action::LinkDown { at, remote } => {
                [Some(*at), Some(*remote)]
            }
            Action::Timer { at, .. }
            | Action::UserLine { at, .. }
            | Action::IcmpDone { at, .. } => [Some(*at), None],
            Action::QueryArrive { to, .. } => [Some(*to), None],
            Action::QueryDone { .. } | Action::Commit { .. } | Action::CutTimeout { .. } => {
                [None, None]
            }
        }
    }

    /// The node whose core handles it, if any.
    fn node(&self, sim: &Sim) -> Option<SocketAddr> {
        match self {
            Action::QueryDone { token, .. } => sim.queries.get(token).map(|q| q.asker),
            _ => self.ends()[0],
        }
    }
}

#[derive(Debug, Clone)]
struct PendingQuery {
    asker: SocketAddr,
    to: SocketAddr,
    query: Message,
}

/// The actions to come, earliest first and, at one instant, in the order
/// they were scheduled.
///
/// Keys sort the actions: when (high 64 bits) and sequence number (low 64
/// bits), compared in one step. An action is large and a heap moves its
/// entries about, so the heap orders keys and each action waits in a slot.
/// Only the actions due before `horizon` are in the heap; later ones wait
/// unsorted in buckets of [`ActionQueue::BUCKET`] each, and enter the heap
/// when their bucket comes up. So the heap holds a few milliseconds of
/// actions, not every timer of every peer, and stays small enough to be
/// quick.
#[derive(Default)]
struct ActionQueue {
    heap: BinaryHeap<Reverse<(u128, usize)>>,
    /// Every key in `heap` is below it, every key in `later` at or above.
    horizon: u128,
    /// Keys at or after `horizon`, by bucket.
    later: BTreeMap<u64, Vec<(u128, usize)>>,
    slots: Vec<Option<Action>>,
    free: Vec<usize>,
    next_seq: u64,
}

impl ActionQueue {
    /// Bucket width, as a power of two of microseconds: 4 ms, about a
    /// frame's latency.
    const BUCKET: u32 = 12;

    fn time_of(key: u128) -> Timestamp {
        Timestamp((key >> 64) as u64)
    }

    fn bucket(key: u128) -> u64 {
        Self::time_of(key).0 >> Self::BUCKET
    }

    fn push(&mut self, at: Timestamp, action: Action) {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(action);
                slot
            }
            None => {
                self.slots.push(Some(action));
                self.slots.len() - 1
            }
        };
        let key = (u128::from(at.0) << 64) | u128::from(self.next_seq);
        self.next_seq += 1;
        if key < self.horizon {
            self.heap.push(Reverse((key, slot)));
        } else {
            self.later
                .entry(Self::bucket(key))
                .or_default()
                .push((key, slot));
        }
    }

    /// The earliest key, moving the next bucket into the heap if the heap
    /// is empty.
    fn earliest(&mut self) -> Option<u128> {
        if self.heap.is_empty() {
            let (bucket, keys) = self.later.pop_first()?;
            self.horizon = u128::from((bucket + 1) << Self::BUCKET) << 64;
            self.heap.extend(keys.into_iter().map(Reverse));
        }
        self.heap.peek().map(|Reverse((key, _))| *key)
    }

    /// When the next action is due.
    fn next_due(&mut self) -> Option<Timestamp> {
        self.earliest().map(Self::time_of)
    }

    /// The next action, and the slot of the one after it, as far as the
    /// heap shows without popping: the second is the earlier of the
    /// root's children. Later pushes may come between; this is only for
    /// fetching their memory early.
    fn upcoming(&self) -> (Option<&Action>, Option<&Option<Action>>) {
        let heap = self.heap.as_slice();
        let next = heap
            .first()
            .and_then(|Reverse((_, slot))| self.slots[*slot].as_ref());
        let second = heap.get(1..3.min(heap.len())).and_then(|children| {
            children
                .iter()
                .max()
                .map(|Reverse((_, slot))| &self.slots[*slot])
        });
        (next, second)
    }

    fn pop(&mut self) -> Option<(Timestamp, Action)> {
        self.earliest()?;
        let Reverse((key, slot)) = self.heap.pop()?;
        self.free.push(slot);
        let action = self.slots[slot].take().expect("a queued action");
        Some((Self::time_of(key), action))
    }
}

/// One logged event, with when and where.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    pub at: Timestamp,
    pub node: SocketAddr,
    pub event: Event,
}

/// The simulation: nodes, links, the clock and the queue.
pub struct Sim {
    now: Timestamp,
    queue: ActionQueue,
    /// Tokens for queries.
    next_token: u64,
    rng: ChaCha8Rng,
    network: NetworkModel,
    nodes: NodeTable,
    seeds: Vec<SocketAddr>,
    peers: Vec<SocketAddr>,
    /// Dials under way, with the frames queued for them.
    dialing: BTreeMap<(SocketAddr, SocketAddr), Vec<Message>>,
    queries: BTreeMap<u64, PendingQuery>,
    settings: PeerSettings,
    events: Vec<Logged>,
    /// Which events to keep; large runs drop the bulky ones.
    keep: fn(&Event) -> bool,
    /// GOSSIP frames sent, by message text.
    gossip_frames: BTreeMap<String, u64>,
    /// Nodes cut off from all the others by a partition, if one holds.
    cut: Option<BTreeSet<SocketAddr>>,
    /// Frames held by the partition, delivered if it heals in time.
    held_by_cut: Vec<Action>,
    /// Log entries proposed while too few seeds ran to commit them, in
    /// order; they commit when a majority runs again.
    stalled: Vec<Command>,
    /// Actions handled so far.
    handled: u64,
    /// Kept between calls for a core's outputs, to save an allocation.
    outputs: Vec<Output<NodeTimer>>,
    /// The peers' signing keys; see [`IDENTITY_POOL`].
    identities: Vec<Identity>,
    /// Gossip signatures verified, shared by every peer.
    verified_gossip: VerifiedGossip,
    /// Nodes whose connection limit an attacker holds full: they turn away
    /// every new connection, a dial or a query, and keep the links they have.
    exhausted: BTreeSet<SocketAddr>,
    /// Peers that read nothing on their links with other peers.
    slow_readers: BTreeSet<SocketAddr>,
    /// Frames left unread by a slow reader, by link (sender, reader).
    unread: BTreeMap<(SocketAddr, SocketAddr), Unread>,
    /// The newest link report committed for each peer: (incarnation, seq).
    newest_reports: BTreeMap<SocketAddr, (u64, u64)>,
    /// Link reports the log applied out of the order their peer sent them,
    /// each described; see [`Sim::links_out_of_order`].
    links_out_of_order: Vec<String>,
}

/// The frames one link holds for a slow reader, in the order sent.
#[derive(Debug, Default)]
struct Unread {
    frames: Vec<Message>,
    /// What the driver would count for them in its send queue.
    bytes: usize,
}

/// The simulated start of time: 2025-01-01, so that timestamps look real.
const EPOCH: Timestamp = Timestamp(1_735_689_600_000_000);

/// Signing keys the simulated peers take in turn. Deriving a key costs a
/// scalar multiplication (some 15 µs), which at 100,000 peers would add a
/// tenth to a run; simulated peers are honest, and a statement binds its
/// confirmer's address as well as its key, so peers that share a key
/// still each sign only as themselves, and every signature is still made
/// and checked for real.
const IDENTITY_POOL: usize = 64;

/// Mixed into the run's seed for the identities, so that drawing them
/// leaves the run's own generator, and so every other choice, as it was.
const IDENTITY_SALT: u64 = 0x6964_656e_7469_7479;

impl Sim {
    /// A network of `seeds` seeds whose log is formed; peers are added with
    /// [`Sim::add_peer`].
    pub fn new(seed: u64, seeds: usize, settings: PeerSettings, network: NetworkModel) -> Sim {
        let seed_addrs: Vec<SocketAddr> = (0..seeds).map(NodeTable::seed_address).collect();
        let mut sim = Sim {
            now: EPOCH,
            queue: ActionQueue::default(),
            next_token: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            network,
            nodes: NodeTable::default(),
            seeds: seed_addrs.clone(),
            peers: Vec::new(),
            dialing: BTreeMap::new(),
            queries: BTreeMap::new(),
            settings,
            events: Vec::new(),
            keep: |_| true,
            gossip_frames: BTreeMap::new(),
            cut: None,
            held_by_cut: Vec::new(),
            stalled: Vec::new(),
            handled: 0,
            outputs: Vec::new(),
            identities: {
                let mut rng = ChaCha8Rng::seed_from_u64(seed ^ IDENTITY_SALT);
                (0..IDENTITY_POOL)
                    .map(|_| Identity::from_secret(rng.random()))
                    .collect()
            },
            verified_gossip: VerifiedGossip::default(),
            exhausted: BTreeSet::new(),
            slow_readers: BTreeSet::new(),
            unread: BTreeMap::new(),
            newest_reports: BTreeMap::new(),
            links_out_of_order: Vec::new(),
        };
        for addr in &seed_addrs {
            let core = SeedCore::new(*addr, seed_addrs.clone());
            sim.nodes
                .seeds
                .push(Node::new(NodeCore::Seed(Box::new(core))));
        }
        // The first seed leads; it proposes the log's Init entry.
        let leader = seed_addrs.first().copied();
        for addr in &seed_addrs {
            sim.call(*addr, |core, now| {
                if let NodeCore::Seed(c) = core {
                    c.handle_leader(leader, now);
                }
            });
        }
        sim
    }

    pub fn now(&self) -> Timestamp {
        self.now
    }

    pub fn events(&self) -> &[Logged] {
        &self.events
    }

    pub fn peers(&self) -> &[SocketAddr] {
        &self.peers
    }

    pub fn seeds(&self) -> &[SocketAddr] {
        &self.seeds
    }

    /// Keeps only the events `keep` accepts from now on (a Peer List event
    /// holds the whole list, which adds up over many joins).
    pub fn keep_events(&mut self, keep: fn(&Event) -> bool) {
        self.keep = keep;
    }

    /// GOSSIP frames sent so far carrying `msg`.
    pub fn gossip_frames(&self, msg: &str) -> u64 {
        self.gossip_frames.get(msg).copied().unwrap_or(0)
    }

    /// Whether `peer` has joined the overlay (its current life).
    pub fn is_joined(&self, peer: SocketAddr) -> bool {
        matches!(self.nodes.get(&peer).map(|n| &n.core), Some(NodeCore::Peer(c)) if c.is_joined())
    }

    /// `peer`'s current incarnation, by its own account.
    pub fn incarnation(&self, peer: SocketAddr) -> Option<u64> {
        self.nodes
            .get(&peer)
            .map(|n| each_core!(&n.core, c => c.incarnation()))
    }

    /// Actions handled so far: the simulator's unit of work.
    pub fn handled(&self) -> u64 {
        self.handled
    }

    pub fn health(&self, node: SocketAddr) -> Option<Health> {
        self.nodes.get(&node).map(|n| n.health)
    }

    /// The simulation's own generator, for scenarios that pick nodes.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// The committed directory, as every seed has it once caught up: the
    /// first seed's.
    pub fn directory(&self) -> &Directory {
        match self.nodes.get(&self.seeds[0]).map(|n| &n.core) {
            Some(NodeCore::Seed(c)) => c.directory(),
            _ => unreachable!("the first node is a seed"),
        }
    }

    /// Link reports the seeds applied out of the order their peer sent
    /// them: an older report that changed the recorded set after a newer
    /// one had committed, or a newest report that did not become the
    /// recorded set. Each is described; empty in a correct run.
    pub fn links_out_of_order(&self) -> &[String] {
        &self.links_out_of_order
    }

    /// Checks the Links entry just applied against the newest report
    /// committed before it for the same peer. `before` is the set that
    /// was recorded for the peer.
    fn check_link_order(&mut self, command: &Command, before: Option<BTreeSet<SocketAddr>>) {
        let Command::Links {
            peer,
            neighbors,
            incarnation,
            seq,
        } = command
        else {
            return;
        };
        let after = self.directory().reported_links(peer);
        let registered = self.directory().incarnation_of(peer) == Some(*incarnation);
        let newest = self.newest_reports.get(peer).copied();
        let wrong = if newest.is_none_or(|n| n < (*incarnation, *seq)) {
            self.newest_reports.insert(*peer, (*incarnation, *seq));
            let reported: BTreeSet<SocketAddr> =
                neighbors.iter().copied().filter(|n| n != peer).collect();
            match registered {
                true if after.as_ref() != Some(&reported) => Some("was not recorded"),
                false if after != before => Some("of another life changed the record"),
                _ => None,
            }
        } else if after != before {
            Some("applied after a newer one")
        } else {
            None
        };
        if let Some(wrong) = wrong {
            let at = self.now.as_secs_f64() - EPOCH.as_secs_f64();
            self.links_out_of_order.push(format!(
                "t={at:.3}s: report {seq} of {peer} (incarnation {incarnation}) {wrong}; newest committed before: {newest:?}"
            ));
        }
    }

    /// A peer's current neighbours, by its own account.
    pub fn neighbors_of(&self, peer: SocketAddr) -> BTreeSet<SocketAddr> {
        match self.nodes.get(&peer).map(|n| &n.core) {
            Some(NodeCore::Peer(c)) => c.neighbors().collect(),
            _ => BTreeSet::new(),
        }
    }

    /// Seeds neither crashed nor frozen.
    pub fn running_seeds(&self) -> Vec<SocketAddr> {
        self.up(&self.seeds)
    }

    /// Those of `nodes` that are neither crashed nor frozen.
    fn up(&self, nodes: &[SocketAddr]) -> Vec<SocketAddr> {
        nodes
            .iter()
            .copied()
            .filter(|n| self.health(*n) == Some(Health::Up))
            .collect()
    }

    /// Peers neither crashed nor frozen.
    pub fn live_peers(&self) -> Vec<SocketAddr> {
        self.up(&self.peers)
    }

    /// The live peers' links that both ends list: gossip crosses only
    /// those, since a peer takes GOSSIP from its neighbours alone.
    pub fn live_adjacency(&self) -> metrics::Adjacency {
        let claimed: metrics::Adjacency = self
            .live_peers()
            .into_iter()
            .map(|peer| (peer, self.neighbors_of(peer)))
            .collect();
        claimed
            .iter()
            .map(|(peer, links)| {
                let mutual = links
                    .iter()
                    .filter(|n| claimed.get(n).is_some_and(|back| back.contains(peer)))
                    .copied()
                    .collect();
                (*peer, mutual)
            })
            .collect()
    }

    /// The same links as [`Sim::live_adjacency`], as an indexed graph built
    /// straight from the cores, without a tree per peer: at 100,000 peers
    /// the trees cost more than the measures run on the graph.
    pub fn live_graph(&self) -> metrics::Indexed {
        let live = self.live_peers();
        // Each peer's place among the live ones, by its slot: a lookup per
        // link instead of a search of 100,000 addresses.
        let mut place = vec![None; self.nodes.peers.len()];
        for (i, p) in live.iter().enumerate() {
            if let Some(Slot::Peer(slot)) = NodeTable::slot(p) {
                place[slot] = Some(i as u32);
            }
        }
        let place_of = |n: &SocketAddr| match NodeTable::slot(n) {
            Some(Slot::Peer(slot)) => place.get(slot).copied().flatten(),
            _ => None,
        };
        // Every link as each live end holds it, lower place first. A link
        // counts only if both ends hold it, so it appears twice; sorting
        // pairs up the two, where asking the far end for each link would
        // cost a few cache misses per link.
        let mut held: Vec<(u32, u32)> = Vec::new();
        for (i, p) in live.iter().enumerate() {
            if let Some(Node {
                core: NodeCore::Peer(c),
                ..
            }) = self.nodes.get(p)
            {
                let i = i as u32;
                held.extend(
                    c.neighbors()
                        .filter_map(|n| place_of(&n))
                        .map(|j| (i.min(j), i.max(j))),
                );
            }
        }
        held.sort_unstable();
        let links: Vec<(u32, u32)> = held
            .chunk_by(|a, b| a == b)
            .filter(|both| both.len() == 2)
            .map(|both| both[0])
            .collect();
        metrics::Indexed::from_links(live, &links)
    }

    /// Starts a new peer; returns its address.
    pub fn add_peer(&mut self) -> SocketAddr {
        let addr = NodeTable::peer_address(self.peers.len());
        let rng = ChaCha8Rng::seed_from_u64(self.rng.random());
        let incarnation = self.now.as_micros();
        let identity = self.identities[self.peers.len() % IDENTITY_POOL].clone();
        let mut core = PeerCore::new(
            addr,
            self.seeds.clone(),
            self.settings.clone(),
            incarnation,
            identity,
            rng,
        );
        core.share_verified_gossip(self.verified_gossip.clone());
        self.nodes
            .peers
            .push(Node::new(NodeCore::Peer(Box::new(core))));
        self.peers.push(addr);
        self.call(addr, |core, now| each_core!(core, c => c.start(now)));
        addr
    }

    /// An attacker fills `node`'s connection limit: from now on it turns
    /// away every new connection, until [`Sim::relieve_all`]. This is the
    /// worst a flood can do; the real driver's admission (see
    /// `net::driver`) lets honest newcomers in even then.
    pub fn exhaust(&mut self, node: SocketAddr) {
        self.exhausted.insert(node);
    }

    /// Ends every exhaustion and every slow reading; a slow reader now
    /// reads, in order, what its links still open hold for it.
    pub fn relieve_all(&mut self) {
        self.exhausted.clear();
        self.slow_readers.clear();
        for ((from, to), unread) in std::mem::take(&mut self.unread) {
            for msg in unread.frames {
                self.schedule(self.now, Action::Deliver { to, from, msg });
            }
        }
    }

    /// `peer` stops reading its links with other peers, open now or opened
    /// later, until [`Sim::relieve_all`]: a neighbour that no longer reads
    /// its sockets. It still runs, so it still sends (PINGs, its own
    /// gossip), reads its links with the seeds, and answers queries, which
    /// come on fresh connections: the seeds' PROBE and SUSPECT_REQUEST.
    /// Its neighbours get no PONG from it and their frames to it wait; a
    /// link whose waiting frames would pass the driver's send queue bound
    /// ([`crate::net::limits::LINK_SEND_QUEUE_BYTES`]) is closed by the
    /// sender as too slow, logged as the driver logs it.
    ///
    /// Why bytes and no timer: the driver's write timeout fires only once
    /// the kernel's socket buffers are full, and those take megabytes, so
    /// with ordinary traffic a real slow link stays open until the peer
    /// protocol drops it (its PINGs go unanswered) or until a burst of
    /// gossip fills the driver's queue. The simulator leaves the kernel's
    /// buffers out, so it closes such a link a little sooner than a real
    /// node would.
    pub fn read_slowly(&mut self, peer: SocketAddr) {
        self.slow_readers.insert(peer);
    }

    /// Whether `to` reads the frames `from` sends it: all but a slow
    /// reader's frames from peers.
    fn reads(&self, to: SocketAddr, from: SocketAddr) -> bool {
        self.slow_readers.is_empty()
            || !self.slow_readers.contains(&to)
            || !matches!(NodeTable::slot(&from), Some(Slot::Peer(_)))
    }

    /// `msg` reaches a slow reader's socket and is not read: it waits in
    /// the sender's queue, or, if that would pass the driver's bound, the
    /// sender closes the link as too slow.
    fn leave_unread(&mut self, from: SocketAddr, to: SocketAddr, msg: Message) {
        let cost = Outgoing::new(&msg).cost();
        let unread = self.unread.entry((from, to)).or_default();
        if let Some(reason) = link_queue_overflow(unread.bytes, cost) {
            let event = Event::ProtocolError { remote: to, reason };
            self.log(from, event);
            return self.close(from, to);
        }
        unread.bytes += cost;
        unread.frames.push(msg);
    }

    /// Every one of `victim`'s committed neighbours signs a statement that
    /// it is unresponsive, and the first of them reports it to every seed:
    /// evidence that passes every check but the seeds' own probes, as
    /// colluding neighbours (or an attacker holding their keys) can make.
    /// Returns false if `victim` has no neighbour to forge it with.
    pub fn forge_dead_report(&mut self, victim: SocketAddr) -> bool {
        let Some(incarnation) = self.directory().incarnation_of(&victim) else {
            return false;
        };
        let neighbours: Vec<SocketAddr> =
            self.directory().neighbors_of(&victim).into_iter().collect();
        let Some(&reporter) = neighbours.first() else {
            return false;
        };
        let identity_of = |peer: &SocketAddr| {
            let i = self.peers.iter().position(|p| p == peer).expect("a peer");
            &self.identities[i % IDENTITY_POOL]
        };
        let mut confirmers: Vec<_> = neighbours
            .iter()
            .map(|n| identity_of(n).state_unresponsive(*n, victim, incarnation, self.now))
            .collect();
        confirmers.sort_by_key(|c| c.addr);
        let report = format!(
            "Dead Node:{}:{}:{:.6}:{}",
            victim.ip(),
            victim.port(),
            self.now.as_secs_f64(),
            reporter.ip()
        );
        let signature = identity_of(&reporter).sign_report(&ReportContent {
            reporter,
            report: &report,
            peer: victim,
            incarnation,
            confirmers: &confirmers,
            unreachable: &[],
        });
        let msg = Message::DeadReport {
            report,
            peer: victim,
            incarnation,
            confirmers,
            unreachable: Vec::new(),
            signature,
        };
        for seed in self.seeds.clone() {
            let msg = msg.clone();
            self.call(
                seed,
                |core, now| each_core!(core, c => c.handle_message(reporter, msg, now)),
            );
        }
        true
    }

    /// A typed line at `peer`, gossiped like one from the keyboard.
    pub fn type_line(&mut self, peer: SocketAddr, text: &str) {
        let text = text.to_string();
        self.schedule(self.now, Action::UserLine { at: peer, text });
    }

    /// SIGKILL: the node stops, and its links go down at the other ends.
    pub fn crash(&mut self, node: SocketAddr) {
        for other in self.stop(node) {
            self.unlink(node, other);
            let at = self.arrival(node, other);
            self.schedule(
                at,
                Action::LinkDown {
                    at: other,
                    remote: node,
                },
            );
        }
    }

    /// Stops `node` for good, dropping what it held and its dials; returns
    /// the nodes it is still linked to.
    fn stop(&mut self, node: SocketAddr) -> Vec<SocketAddr> {
        let Some(n) = self.nodes.get_mut(&node) else {
            return Vec::new();
        };
        n.health = Health::Crashed;
        n.held.clear();
        n.held_outputs.clear();
        let linked = n.linked().collect();
        self.dialing.retain(|(from, _), _| *from != node);
        linked
    }

    /// SIGTERM: the peer sends its LEAVE on the links it has, then stops;
    /// each link closes at the other end once the frames sent on it have
    /// arrived, as a socket that a process closes cleanly does.
    pub fn leave(&mut self, node: SocketAddr) {
        if self.health(node) != Some(Health::Up) {
            return;
        }
        self.call(
            node,
            |core, now| each_core!(core, c => c.handle_shutdown(now)),
        );
        for other in self.stop(node) {
            let at = self.arrival(node, other);
            self.schedule(
                at,
                Action::Hangup {
                    from: node,
                    to: other,
                },
            );
        }
    }

    /// Starts a crashed node again at its address: a seed with the log
    /// its data directory kept (the committed directory; it then learns of
    /// the leader, the first seed), a peer as a new life, with a higher
    /// incarnation and the same key, that joins from the start. Answers to
    /// queries of the old life go nowhere.
    pub fn restart(&mut self, node: SocketAddr) {
        if self.health(node) != Some(Health::Crashed) {
            return;
        }
        self.queries.retain(|_, q| q.asker != node);
        let core = match self.role_of(node) {
            Role::Seed => {
                let mut core = SeedCore::new(node, self.seeds.clone());
                core.handle_snapshot(self.directory().clone(), self.now);
                NodeCore::Seed(Box::new(core))
            }
            Role::Peer => {
                let place = self.peers.iter().position(|p| *p == node).unwrap_or(0);
                let rng = ChaCha8Rng::seed_from_u64(self.rng.random());
                let mut core = PeerCore::new(
                    node,
                    self.seeds.clone(),
                    self.settings.clone(),
                    self.now.as_micros(),
                    self.identities[place % IDENTITY_POOL].clone(),
                    rng,
                );
                core.share_verified_gossip(self.verified_gossip.clone());
                NodeCore::Peer(Box::new(core))
            }
        };
        let n = self.nodes.get_mut(&node).expect("checked above");
        n.core = core;
        n.health = Health::Up;
        let leader = self.seeds.first().copied();
        self.call(node, |core, now| match core {
            NodeCore::Seed(c) => c.handle_leader(leader, now),
            NodeCore::Peer(c) => c.start(now),
        });
        if self.seeds_have_quorum() {
            for command in std::mem::take(&mut self.stalled) {
                self.schedule(self.now, Action::Commit { command });
            }
        }
    }

    /// Partitions `side` from every other node: frames across wait (TCP
    /// retransmits), links across break after the write timeout, dials and
    /// queries across fail at their time limits.
    pub fn isolate(&mut self, side: BTreeSet<SocketAddr>) {
        let crossing: Vec<(SocketAddr, SocketAddr)> = side
            .iter()
            .filter_map(|a| self.nodes.get(a).map(|n| (a, n)))
            .flat_map(|(a, n)| n.linked().map(move |b| (*a, b)))
            .filter(|(_, b)| !side.contains(b))
            .collect();
        self.cut = Some(side);
        for (a, b) in crossing {
            self.schedule(self.now + WRITE_TIMEOUT, Action::CutTimeout { a, b });
        }
    }

    /// Ends the partition; frames it held arrive now.
    pub fn heal(&mut self) {
        self.cut = None;
        for action in std::mem::take(&mut self.held_by_cut) {
            self.schedule(self.now, action);
        }
    }

    fn severed(&self, a: SocketAddr, b: SocketAddr) -> bool {
        self.cut
            .as_ref()
            .is_some_and(|side| side.contains(&a) != side.contains(&b))
    }

    /// SIGSTOP: the node handles nothing until [`Sim::resume`].
    pub fn freeze(&mut self, node: SocketAddr) {
        if let Some(n) = self.nodes.get_mut(&node) {
            if n.health == Health::Up {
                n.health = Health::Frozen;
            }
        }
    }

    /// SIGCONT: the node handles, in order, what arrived meanwhile.
    pub fn resume(&mut self, node: SocketAddr) {
        let Some(n) = self.nodes.get_mut(&node) else {
            return;
        };
        if n.health != Health::Frozen {
            return;
        }
        n.health = Health::Up;
        let held = std::mem::take(&mut n.held);
        let mut outputs = std::mem::take(&mut n.held_outputs);
        for output in outputs.drain(..) {
            self.carry_out(node, output);
        }
        for action in held {
            self.schedule(self.now, action);
        }
        if self.seeds_have_quorum() {
            for command in std::mem::take(&mut self.stalled) {
                self.schedule(self.now, Action::Commit { command });
            }
        }
    }

    /// A majority of the seeds runs, so the log can commit.
    fn seeds_have_quorum(&self) -> bool {
        self.running_seeds().len() >= directory::majority(self.seeds.len())
    }

    /// Runs every action due up to `until`; the clock ends there.
    pub fn run_until(&mut self, until: Timestamp) {
        while self.queue.next_due().is_some_and(|at| at <= until) {
            self.handle_next();
        }
        self.now = self.now.max(until);
    }

    /// Runs for `span` of virtual time.
    pub fn run_for(&mut self, span: Duration) {
        self.run_until(self.now + span);
    }

    /// Runs until `done` holds, checking after each action, or until
    /// `limit` of virtual time has passed; returns whether it held.
    pub fn run_until_true(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let until = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if self.queue.next_due().is_none_or(|at| at > until) {
                self.now = until;
                return done(self);
            }
            self.handle_next();
        }
    }

    /// Handles the earliest action, which must be due.
    fn handle_next(&mut self) {
        let (at, action) = self.queue.pop().expect("an action is due");
        self.prefetch_for(&action);
        self.now = at;
        self.handle(action);
    }

    /// Starts loading the memory the next few actions will touch, so that
    /// their cache misses overlap rather than come one after another: at
    /// 100,000 peers almost every node touched is a miss. `action` is
    /// about to be handled: its nodes were asked for one action ago, so
    /// their cores and channels can be asked for now. The next action's
    /// nodes are asked for, and the one after's slot in the queue.
    fn prefetch_for(&self, action: &Action) {
        for end in action.ends().into_iter().flatten() {
            if let Some(node) = self.nodes.get(&end) {
                match &node.core {
                    NodeCore::Peer(c) => {
                        prefetch_lines(&**c, 4);
                        // A peer's few channels fit in a line or two; a
                        // seed's are searched far from the first.
                        if let Some((first, _)) = node.channels.iter().next() {
                            prefetch_lines(first, 1);
                        }
                    }
                    NodeCore::Seed(c) => prefetch_lines(&**c, 1),
                }
            }
        }
        let (next, second) = self.queue.upcoming();
        for end in next.map(Action::ends).into_iter().flatten().flatten() {
            if let Some(node) = self.nodes.get(&end) {
                prefetch_lines(node, 2);
            }
        }
        if let Some(slot) = second {
            prefetch_lines(slot, 1);
        }
    }

    fn latency(&mut self) -> Duration {
        let (low, high) = self.network.latency;
        let mut delay = if high > low {
            self.rng.random_range(low..=high)
        } else {
            low
        };
        if self.network.loss > 0.0 && self.rng.random_bool(self.network.loss.min(1.0)) {
            delay += RETRANSMIT;
        }
        delay
    }

    /// When a frame sent now from `from` arrives at `to`, in order behind
    /// the frames sent before it.
    fn arrival(&mut self, from: SocketAddr, to: SocketAddr) -> Timestamp {
        let at = self.now + self.latency();
        self.not_before(from, to, at)
    }

    /// Keeps frames from `from` to `to` in order: one due at `at` arrives
    /// then, or with the frame before it if that one arrives later.
    fn not_before(&mut self, from: SocketAddr, to: SocketAddr, at: Timestamp) -> Timestamp {
        let Some(channel) = self.channel(from, to) else {
            return at;
        };
        channel.last_arrival = channel.last_arrival.max(at);
        channel.last_arrival
    }

    /// `from`'s end of its connection with `to`, if both are nodes.
    fn channel(&mut self, from: SocketAddr, to: SocketAddr) -> Option<&mut Channel> {
        let to = NodeTable::id(&to)?;
        Some(
            self.nodes
                .get_mut(&from)?
                .channels
                .get_or_insert_default(to),
        )
    }

    fn is_linked(&self, a: SocketAddr, b: SocketAddr) -> bool {
        let (Some(id_a), Some(id_b)) = (NodeTable::id(&a), NodeTable::id(&b)) else {
            return false;
        };
        // Both ends hold the link. Asking the higher-numbered end asks a
        // peer, with tens of connections, rather than a seed with one per
        // peer, whenever one end is a seed.
        let (end, other) = if id_a > id_b { (a, id_b) } else { (b, id_a) };
        self.nodes
            .get(&end)
            .and_then(|n| n.channels.get(&other))
            .is_some_and(|c| c.open)
    }

    /// Opens or closes the link between `a` and `b`; whether it was open.
    fn set_link(&mut self, a: SocketAddr, b: SocketAddr, open: bool) -> bool {
        if let Some(channel) = self.channel(b, a) {
            channel.open = open;
        }
        self.channel(a, b)
            .is_some_and(|c| std::mem::replace(&mut c.open, open))
    }

    /// Opens the link between `a` and `b`; whether it was not open.
    fn link(&mut self, a: SocketAddr, b: SocketAddr) -> bool {
        !self.set_link(a, b, true)
    }

    /// Closes the link between `a` and `b`; whether it was open. What it
    /// held unread for a slow reader goes with it.
    fn unlink(&mut self, a: SocketAddr, b: SocketAddr) -> bool {
        if !self.unread.is_empty() {
            self.unread.remove(&(a, b));
            self.unread.remove(&(b, a));
        }
        self.set_link(a, b, false)
    }

    fn schedule(&mut self, at: Timestamp, action: Action) {
        self.queue.push(at, action);
    }

    fn role_of(&self, node: SocketAddr) -> Role {
        self.nodes.get(&node).map_or(Role::Peer, |n| n.core.role())
    }

    /// Calls `f` on `node`'s core, then carries out what it asked for.
    fn call(&mut self, node: SocketAddr, f: impl FnOnce(&mut NodeCore, Timestamp)) {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(&node) else {
            return;
        };
        f(&mut n.core, now);
        self.carry_out_all(node);
    }

    /// Carries out what `node`'s core has asked for.
    fn carry_out_all(&mut self, node: SocketAddr) {
        let Some(n) = self.nodes.get_mut(&node) else {
            return;
        };
        // One buffer for every call rather than a vector each; a call
        // made while carrying out takes a fresh one.
        let mut outputs = std::mem::take(&mut self.outputs);
        n.core.drain_into(&mut outputs);
        for output in outputs.drain(..) {
            self.carry_out(node, output);
        }
        self.outputs = outputs;
    }

    fn handle(&mut self, action: Action) {
        if let Some(node) = action.node(self) {
            match self.nodes.get_mut(&node).map(|n| n.health) {
                Some(Health::Up) => {}
                Some(Health::Frozen) => {
                    if let Action::DialArrive { from, to } = action {
                        // Only a frozen node leaves a dial unanswered.
                        let at = self.now + HELLO_TIMEOUT;
                        self.schedule(at, Action::DialTimeout { from, to });
                    }
                    return self.nodes.get_mut(&node).unwrap().held.push(action);
                }
                Some(Health::Crashed) | None => return self.lost_on_the_way(action),
            }
        }
        if let Action::Deliver { to, from, .. } = &action {
            if self.severed(*from, *to) {
                return self.held_by_cut.push(action);
            }
        }
        self.handled += 1;
        match action {
            Action::CutTimeout { a, b } => {
                if self.severed(a, b) && self.unlink(a, b) {
                    self.schedule(self.now, Action::LinkDown { at: a, remote: b });
                    self.schedule(self.now, Action::LinkDown { at: b, remote: a });
                }
            }
            Action::Deliver { to, from, msg } => {
                if !self.reads(to, from) {
                    if self.is_linked(from, to) {
                        self.leave_unread(from, to, msg);
                    }
                } else if self.is_linked(from, to) {
                    self.call(
                        to,
                        |core, now| each_core!(core, c => c.handle_message(from, msg, now)),
                    );
                }
            }
            Action::DialArrive { from, to } => self.dial_arrives(from, to),
            Action::Hangup { from, to } => {
                if self.unlink(from, to) {
                    self.call(
                        to,
                        |core, now| each_core!(core, c => c.handle_link_down(from, now)),
                    );
                }
            }
            Action::DialTimeout { from, to } => {
                if self.dialing.remove(&(from, to)).is_some() {
                    self.call(
                        from,
                        |core, now| each_core!(core, c => c.handle_link_down(to, now)),
                    );
                }
            }
            Action::LinkUp { at, remote } => {
                if self.is_linked(at, remote) {
                    let role = self.role_of(remote);
                    self.call(
                        at,
                        |core, now| each_core!(core, c => c.handle_link_up(remote, role, now)),
                    );
                }
            }
            Action::LinkDown { at, remote } => {
                self.call(
                    at,
                    |core, now| each_core!(core, c => c.handle_link_down(remote, now)),
                );
            }
            Action::Timer { at, timer } => self.call(at, |core, now| match (core, timer) {
                (NodeCore::Peer(c), NodeTimer::Peer(t)) => c.handle_timer(t, now),
                (NodeCore::Seed(c), NodeTimer::Seed(t)) => c.handle_timer(t, now),
                _ => {}
            }),
            Action::QueryArrive { token, to, query } => {
                self.call(
                    to,
                    |core, now| each_core!(core, c => c.handle_query(token, query, now)),
                );
            }
            Action::QueryDone { token, result } => {
                if let Some(q) = self.queries.remove(&token) {
                    self.call(q.asker, |core, now| {
                        each_core!(core, c => c.handle_query_result(q.to, q.query, result, now))
                    });
                }
            }
            Action::Commit { command } if !self.seeds_have_quorum() => {
                self.stalled.push(command);
            }
            Action::Commit { command } => {
                // Every seed applies the entry, through one shared state
                // machine: the log's. A stopped seed's state is the log's
                // too (a frozen one catches up on resume), but only a
                // running one acts on it now.
                let before = match &command {
                    Command::Links { peer, .. } => self.directory().reported_links(peer),
                    _ => None,
                };
                let mut seeds: Vec<&mut SeedCore> = self
                    .nodes
                    .seeds
                    .iter_mut()
                    .filter_map(|n| match &mut n.core {
                        NodeCore::Seed(c) => Some(c.as_mut()),
                        NodeCore::Peer(_) => None,
                    })
                    .collect();
                SeedCore::apply_committed_shared(&mut seeds, &command);
                self.check_link_order(&command, before);
                for i in 0..self.seeds.len() {
                    let seed = self.seeds[i];
                    let n = self.nodes.get_mut(&seed).expect("seeds are nodes");
                    match n.health {
                        Health::Up => self.carry_out_all(seed),
                        Health::Frozen => n.core.drain_into(&mut n.held_outputs),
                        Health::Crashed => n.core.drain_into(&mut Vec::new()),
                    }
                }
            }
            Action::IcmpDone { at, host, result } => {
                self.call(
                    at,
                    |core, now| each_core!(core, c => c.handle_icmp_result(host, result, now)),
                );
            }
            Action::UserLine { at, text } => {
                self.call(
                    at,
                    |core, now| each_core!(core, c => c.handle_user_line(&text, now)),
                );
            }
        }
    }

    /// An action for a crashed node: a dial to it is refused.
    fn lost_on_the_way(&mut self, action: Action) {
        if let Action::DialArrive { from, to } = action {
            if self.dialing.remove(&(from, to)).is_some() {
                let at = self.now + self.latency();
                self.schedule(
                    at,
                    Action::LinkDown {
                        at: from,
                        remote: to,
                    },
                );
            }
        }
    }

    fn dial_arrives(&mut self, from: SocketAddr, to: SocketAddr) {
        if self.severed(from, to) {
            if self.dialing.remove(&(from, to)).is_some() {
                let at = self.now + CONNECT_TIMEOUT;
                self.schedule(
                    at,
                    Action::LinkDown {
                        at: from,
                        remote: to,
                    },
                );
            }
            return;
        }
        let Some(queued) = self.dialing.remove(&(from, to)) else {
            return;
        };
        if self.exhausted.contains(&to) {
            // Taken and closed at once: the dialler hears of it as a
            // connection that went down.
            let at = self.arrival(to, from);
            return self.schedule(
                at,
                Action::LinkDown {
                    at: from,
                    remote: to,
                },
            );
        }
        if self.link(from, to) {
            self.schedule(
                self.now,
                Action::LinkUp {
                    at: to,
                    remote: from,
                },
            );
        }
        // `to`'s HELLO is the first frame back: nothing it sends can
        // overtake it.
        let back = self.arrival(to, from);
        self.schedule(
            back,
            Action::LinkUp {
                at: from,
                remote: to,
            },
        );
        self.not_before(from, to, self.now);
        for msg in queued {
            self.schedule(self.now, Action::Deliver { to, from, msg });
        }
    }

    fn start_dial(&mut self, from: SocketAddr, to: SocketAddr, first: Option<Message>) {
        if let Some(queue) = self.dialing.get_mut(&(from, to)) {
            queue.extend(first);
            return;
        }
        self.dialing.insert((from, to), first.into_iter().collect());
        let at = self.now + self.latency();
        self.schedule(at, Action::DialArrive { from, to });
    }

    fn carry_out(&mut self, node: SocketAddr, output: Output<NodeTimer>) {
        match output {
            Output::Send { to, msg } => {
                if let Message::Gossip { msg: text, .. } = &msg {
                    *self.gossip_frames.entry(text.clone()).or_default() += 1;
                }
                if self.is_linked(node, to) {
                    let at = self.arrival(node, to);
                    self.schedule(
                        at,
                        Action::Deliver {
                            to,
                            from: node,
                            msg,
                        },
                    );
                } else {
                    self.start_dial(node, to, Some(msg));
                }
            }
            Output::Connect(to) => {
                if self.is_linked(node, to) {
                    self.schedule(
                        self.now,
                        Action::LinkUp {
                            at: node,
                            remote: to,
                        },
                    );
                } else {
                    self.start_dial(node, to, None);
                }
            }
            Output::Close(to) => self.close(node, to),
            Output::Timer { timer, at } => self.schedule(at, Action::Timer { at: node, timer }),
            Output::Event(event) => self.log(node, event),
            Output::Propose(command) => {
                // To the leader and back, committed by a majority.
                let at = self.now + self.latency() + self.latency();
                self.schedule(at, Action::Commit { command });
            }
            Output::Query { to, query, timeout } => self.start_query(node, to, query, timeout),
            Output::Reply { token, .. }
                if self
                    .queries
                    .get(&token)
                    .is_some_and(|q| self.severed(node, q.asker)) => {}
            Output::Reply { token, msg } => {
                let at = self.now + self.latency();
                self.schedule(
                    at,
                    Action::QueryDone {
                        token,
                        result: Ok(msg),
                    },
                );
            }
            Output::IcmpEcho { host, timeout } => {
                // Every simulated node has a host of its own, listening on
                // the seed port or the peer port.
                let up = [5000, 7000]
                    .into_iter()
                    .filter_map(|port| self.nodes.get(&SocketAddr::new(host, port)))
                    .any(|n| n.health != Health::Crashed);
                let (at, result) = if up {
                    (self.now + self.latency() + self.latency(), Ok(()))
                } else {
                    (self.now + timeout, Err("no echo reply".to_string()))
                };
                self.schedule(
                    at,
                    Action::IcmpDone {
                        at: node,
                        host,
                        result,
                    },
                );
            }
        }
    }

    /// `node` closes its connection with `to`, or gives up dialling it: it
    /// learns of it at once, `to` one latency later.
    fn close(&mut self, node: SocketAddr, to: SocketAddr) {
        self.dialing.remove(&(node, to));
        if self.unlink(node, to) {
            self.schedule(
                self.now,
                Action::LinkDown {
                    at: node,
                    remote: to,
                },
            );
            let at = self.arrival(node, to);
            self.schedule(
                at,
                Action::LinkDown {
                    at: to,
                    remote: node,
                },
            );
        }
    }

    /// Logs `event` at `node`, if the events kept include it.
    fn log(&mut self, node: SocketAddr, event: Event) {
        if (self.keep)(&event) {
            self.events.push(Logged {
                at: self.now,
                node,
                event,
            });
        }
    }

    fn start_query(
        &mut self,
        asker: SocketAddr,
        to: SocketAddr,
        query: Message,
        timeout: Duration,
    ) {
        let token = self.next_token;
        self.next_token += 1;
        self.queries.insert(
            token,
            PendingQuery {
                asker,
                to,
                query: query.clone(),
            },
        );
        let deadline = self.now + timeout;
        let fate = if self.severed(asker, to) {
            QueryFate::Lost
        } else {
            self.query_fate(to, &query)
        };
        // An answer sure to come in time is always handled before the time
        // limit would be, so the limit is left out of the queue.
        if !matches!(fate, QueryFate::Answered(at, _) if at < deadline) {
            let result = Err(QueryError::NoAnswer(format!(
                "no answer within {timeout:?}"
            )));
            self.schedule(deadline, Action::QueryDone { token, result });
        }
        match fate {
            QueryFate::Answered(at, result) => {
                self.schedule(at, Action::QueryDone { token, result })
            }
            QueryFate::Arrives(at) => self.schedule(at, Action::QueryArrive { token, to, query }),
            QueryFate::Lost => {}
        }
    }

    /// What becomes of a query sent now to `to`, no partition between.
    fn query_fate(&mut self, to: SocketAddr, query: &Message) -> QueryFate {
        let health = self.nodes.get(&to).map(|n| n.health);
        let there = self.now + self.latency();
        if health != Some(Health::Crashed) && self.exhausted.contains(&to) {
            let turned_away = QueryError::TurnedAway("closed without answering".into());
            return QueryFate::Answered(there + self.latency(), Err(turned_away));
        }
        match (health, query) {
            (Some(Health::Up), Message::Probe { nonce, .. }) => {
                // The driver answers PROBE itself, from the node's state.
                let node = &self.nodes[&to];
                let reply = Message::ProbeReply {
                    nonce: *nonce,
                    role: node.core.role(),
                    listen: to,
                    incarnation: each_core!(&node.core, c => c.incarnation()),
                    key: each_core!(&node.core, c => c.public_key()),
                };
                QueryFate::Answered(there + self.latency(), Ok(reply))
            }
            // A frozen node's driver answers nothing.
            (Some(Health::Frozen), Message::Probe { .. }) => QueryFate::Lost,
            (Some(Health::Up | Health::Frozen), _) => QueryFate::Arrives(there),
            (Some(Health::Crashed) | None, _) => {
                let refused = Err(QueryError::NoConnection("connection refused".to_string()));
                QueryFate::Answered(there + self.latency(), refused)
            }
        }
    }
}

/// What becomes of a query.
enum QueryFate {
    /// The answer reaches the asker then: the driver's own, to a probe, or
    /// a refused connection.
    Answered(Timestamp, Result<Message, QueryError>),
    /// It reaches the node then, whose core may answer it.
    Arrives(Timestamp),
    /// It never gets there.
    Lost,
}

#[cfg(test)]
mod tests;
