//! The peer core: join, neighbour choice, gossip flooding.
//!
//! A peer goes through four phases:
//! 1. **Registering** with floor(n/2)+1 seeds picked at random (R5). Any two
//!    such majorities share a seed, so every later joiner sees this peer in
//!    at least one Peer List.
//! 2. **Fetching lists** from the seeds that acknowledged it, and taking their
//!    union (R6).
//! 3. **Linking** to neighbours picked by [`topology`](super::topology):
//!    a heavy-tailed number of links, preferential attachment by degree.
//! 4. **Active**: it reports its links to its seeds, creates a message every
//!    `gossip_interval` up to `gossip_count` once it has a neighbour (R8), and
//!    floods gossip with a de-duplicating Message List (R9). A peer left with
//!    no neighbour asks the seeds again every `lonely_retry` (R7).

mod liveness;
mod message_list;

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    net::SocketAddr,
    num::NonZeroU32,
    time::Duration,
};

use rand::{seq::IteratorRandom, Rng};

pub use liveness::{Liveness, LivenessTable};
pub use message_list::{digest, MessageDigest, MessageList, MessageMeta};

use super::{
    message::{Message, PeerEntry, Role, MAX_GOSSIP_TEXT},
    seed::directory::majority,
    topology, Core, Event, Output, Timestamp,
};

/// Peer behaviour settings. Defaults are documented with their reason.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerSettings {
    /// 5 s: the course specification (R8).
    pub gossip_interval: Duration,
    /// 10 messages: the course specification (R8). 0 disables gossip creation.
    pub gossip_count: u32,
    /// 8: a cap so that no joining peer opens many sockets at once; hubs
    /// still grow through inbound links.
    pub max_links: NonZeroU32,
    /// 2.0: Zipf exponent of the link count; mean about 1.7 links per join,
    /// with a tail up to `max_links`.
    pub link_exponent: f64,
    /// 1 s: how long to wait for seeds before asking again. Short, because a
    /// lost request only costs one small frame.
    pub retry_interval: Duration,
    /// 2 s: how often a peer with no neighbour asks the seeds for peers.
    pub lonely_retry: Duration,
    /// 13 s: the course specification (R11).
    pub ping_interval: Duration,
    /// 3 consecutive missed pings make a neighbour unresponsive: the course
    /// specification (R11).
    pub ping_misses: NonZeroU32,
}

impl Default for PeerSettings {
    fn default() -> Self {
        PeerSettings {
            gossip_interval: Duration::from_secs(5),
            gossip_count: 10,
            max_links: NonZeroU32::new(8).expect("non-zero"),
            link_exponent: 2.0,
            retry_interval: Duration::from_secs(1),
            lonely_retry: Duration::from_secs(2),
            ping_interval: Duration::from_secs(13),
            ping_misses: NonZeroU32::new(3).expect("non-zero"),
        }
    }
}

/// Timers a peer sets. Each kind is armed at most once at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerTimer {
    /// Re-ask seeds that have not answered yet.
    Retry,
    /// Create the next gossip message.
    Gossip,
    /// With no neighbour, look for some.
    Lonely,
    /// Check every neighbour's liveness.
    Ping,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Registering,
    FetchingLists,
    Linking,
    Active,
}

/// Counters for tests, the simulator and status output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerStats {
    pub created: u32,
    pub received_first: u64,
    pub duplicates_dropped: u64,
    pub forwarded: u64,
}

/// The longest wait between registration attempts.
const MAX_REGISTER_RETRY: Duration = Duration::from_secs(8);

pub struct PeerCore<R> {
    addr: SocketAddr,
    seeds: Vec<SocketAddr>,
    settings: PeerSettings,
    rng: R,
    phase: Phase,
    /// Seeds asked to register us.
    asked: BTreeSet<SocketAddr>,
    /// Seeds that acknowledged; once a majority, these are "our" seeds.
    acked: BTreeSet<SocketAddr>,
    lists: BTreeMap<SocketAddr, Vec<PeerEntry>>,
    /// Seeds whose Peer List we wait for.
    list_requests: BTreeSet<SocketAddr>,
    pending_links: BTreeSet<SocketAddr>,
    neighbors: BTreeSet<SocketAddr>,
    joined: bool,
    ml: MessageList,
    gossip_armed: bool,
    /// Deadline of the Retry timer that counts; earlier-armed ones are stale.
    retry_due: Option<Timestamp>,
    lonely_armed: bool,
    incarnation: u64,
    liveness: LivenessTable,
    ping_armed: bool,
    /// Removals the seeds confirmed, so each is logged once although every
    /// seed sends it.
    confirmed_dead: BTreeSet<(SocketAddr, u64)>,
    /// Seeds with a working connection, for the waiting message.
    reachable_seeds: BTreeSet<SocketAddr>,
    /// The wait before the next registration attempt; doubles while the
    /// seeds cannot commit.
    register_retry: Duration,
    stats: PeerStats,
    outputs: VecDeque<Output<PeerTimer>>,
}

impl<R: Rng> PeerCore<R> {
    /// `seeds` is the full seed list from the config.
    /// `seeds` is the full seed list from the config; `incarnation` must be
    /// higher than any earlier life of a peer at `addr` (start time works).
    pub fn new(
        addr: SocketAddr,
        seeds: Vec<SocketAddr>,
        settings: PeerSettings,
        incarnation: u64,
        rng: R,
    ) -> Self {
        let settings_retry = settings.retry_interval;
        PeerCore {
            addr,
            seeds,
            settings,
            rng,
            phase: Phase::Registering,
            asked: BTreeSet::new(),
            acked: BTreeSet::new(),
            lists: BTreeMap::new(),
            list_requests: BTreeSet::new(),
            pending_links: BTreeSet::new(),
            neighbors: BTreeSet::new(),
            joined: false,
            ml: MessageList::default(),
            gossip_armed: false,
            retry_due: None,
            lonely_armed: false,
            incarnation,
            liveness: LivenessTable::default(),
            ping_armed: false,
            confirmed_dead: BTreeSet::new(),
            reachable_seeds: BTreeSet::new(),
            register_retry: settings_retry,
            stats: PeerStats::default(),
            outputs: VecDeque::new(),
        }
    }

    pub fn neighbors(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.neighbors.iter().copied()
    }

    pub fn registered_seeds(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.acked.iter().copied()
    }

    pub fn is_joined(&self) -> bool {
        self.joined
    }

    /// What the liveness checks know about neighbour `peer`.
    pub fn liveness(&self, peer: &SocketAddr) -> Option<&Liveness> {
        self.liveness.get(peer)
    }

    pub fn message_list(&self) -> &MessageList {
        &self.ml
    }

    pub fn stats(&self) -> PeerStats {
        self.stats
    }

    fn quorum(&self) -> usize {
        majority(self.seeds.len())
    }

    fn emit(&mut self, event: Event) {
        self.outputs.push_back(Output::Event(event));
    }

    fn send(&mut self, to: SocketAddr, msg: Message) {
        self.outputs.push_back(Output::Send { to, msg });
    }

    fn arm(&mut self, timer: PeerTimer, at: Timestamp) {
        let armed = match timer {
            // The retry deadline depends on the phase: a new, earlier one
            // replaces the armed one, and the older timer is ignored when it
            // fires (see `retry_is_due`).
            PeerTimer::Retry => {
                if self.retry_due.is_none_or(|due| at < due) {
                    self.retry_due = Some(at);
                    self.outputs.push_back(Output::Timer { timer, at });
                }
                return;
            }
            PeerTimer::Gossip => &mut self.gossip_armed,
            PeerTimer::Lonely => &mut self.lonely_armed,
            PeerTimer::Ping => &mut self.ping_armed,
        };
        if !*armed {
            *armed = true;
            self.outputs.push_back(Output::Timer { timer, at });
        }
    }

    /// Whether a Retry firing at `now` is the one armed last; clears it.
    fn retry_is_due(&mut self, now: Timestamp) -> bool {
        match self.retry_due {
            Some(due) if now >= due => {
                self.retry_due = None;
                true
            }
            _ => false,
        }
    }

    /// Adds one seed we have not asked yet, picked at random, to `asked`.
    fn ask_another_seed(&mut self) -> Option<SocketAddr> {
        let seed = self
            .seeds
            .iter()
            .filter(|s| !self.asked.contains(s))
            .copied()
            .choose(&mut self.rng)?;
        self.asked.insert(seed);
        Some(seed)
    }

    fn send_registrations(&mut self) {
        let waiting: Vec<_> = self.asked.difference(&self.acked).copied().collect();
        for seed in waiting {
            self.send(
                seed,
                Message::RegisterRequest {
                    incarnation: self.incarnation,
                },
            );
        }
    }

    fn on_register_ack(&mut self, seed: SocketAddr, now: Timestamp) {
        if self.phase != Phase::Registering || !self.asked.contains(&seed) {
            return;
        }
        self.acked.insert(seed);
        if self.acked.len() >= self.quorum() {
            self.emit(Event::Registered {
                seeds: self.acked.iter().copied().collect(),
            });
            self.fetch_peer_lists(now);
        }
    }

    fn fetch_peer_lists(&mut self, now: Timestamp) {
        self.phase = Phase::FetchingLists;
        self.lists.clear();
        self.request_peer_lists(self.acked.clone(), now);
    }

    /// A seed that does not answer must not stall the join. Every seed
    /// serves the same committed directory, so the lists in hand are enough;
    /// with none in hand, ask every seed.
    fn retry_peer_lists(&mut self, now: Timestamp) {
        if !self.lists.is_empty() {
            return self.choose_and_link(now);
        }
        self.request_peer_lists(self.seeds.iter().copied().collect(), now);
    }

    /// Asks each of `seeds` for its Peer List; the retry follows one
    /// interval later.
    fn request_peer_lists(&mut self, seeds: BTreeSet<SocketAddr>, now: Timestamp) {
        for seed in &seeds {
            self.send(*seed, Message::PeerListRequest {});
        }
        self.list_requests = seeds;
        self.arm(PeerTimer::Retry, now + self.settings.retry_interval);
    }

    fn on_peer_list(&mut self, seed: SocketAddr, peers: Vec<PeerEntry>, now: Timestamp) {
        if self.phase != Phase::FetchingLists || !self.list_requests.contains(&seed) {
            return;
        }
        self.emit(Event::PeerList {
            from: seed,
            peers: peers.clone(),
        });
        self.lists.insert(seed, peers);
        if self.lists.len() == self.list_requests.len() {
            self.choose_and_link(now);
        }
    }

    /// Union of the Peer Lists, each peer at the highest degree any seed
    /// reported, minus ourselves and peers we are already linked to.
    fn candidates(&self) -> Vec<PeerEntry> {
        let mut union: BTreeMap<SocketAddr, u32> = BTreeMap::new();
        for entry in self.lists.values().flatten() {
            let degree = union.entry(entry.addr).or_default();
            *degree = (*degree).max(entry.degree);
        }
        union
            .into_iter()
            .filter(|(addr, _)| {
                *addr != self.addr
                    && !self.neighbors.contains(addr)
                    && !self.pending_links.contains(addr)
            })
            .map(|(addr, degree)| PeerEntry { addr, degree })
            .collect()
    }

    fn choose_and_link(&mut self, now: Timestamp) {
        let candidates = self.candidates();
        let count = topology::draw_link_count(
            self.settings.max_links.get(),
            self.settings.link_exponent,
            &mut self.rng,
        );
        let chosen = topology::choose_neighbors(&candidates, count, &mut self.rng);
        if !candidates.is_empty() {
            self.emit(Event::NeighborsChosen {
                candidates: candidates.len(),
                chosen: chosen.clone(),
            });
        }
        self.phase = Phase::Linking;
        for peer in chosen {
            self.pending_links.insert(peer);
            self.outputs.push_back(Output::Connect(peer));
        }
        self.finish_linking_if_done(now);
    }

    fn finish_linking_if_done(&mut self, now: Timestamp) {
        if self.phase != Phase::Linking || !self.pending_links.is_empty() {
            return;
        }
        self.phase = Phase::Active;
        if !self.joined {
            self.joined = true;
            self.emit(Event::Joined {
                neighbors: self.neighbors.iter().copied().collect(),
            });
        }
        self.report_links();
        self.after_neighbors_changed(now);
    }

    /// Sends our whole neighbour set to our seeds (R1: seeds keep topology).
    fn report_links(&mut self) {
        // Before Active the join itself ends with a report; skip the churn.
        if self.phase != Phase::Active {
            return;
        }
        let neighbors: Vec<_> = self.neighbors.iter().copied().collect();
        let seeds: Vec<_> = self.acked.iter().copied().collect();
        for seed in seeds {
            self.send(
                seed,
                Message::LinkReport {
                    neighbors: neighbors.clone(),
                },
            );
        }
    }

    fn after_neighbors_changed(&mut self, now: Timestamp) {
        if self.phase != Phase::Active {
            return;
        }
        if self.neighbors.is_empty() {
            self.arm(PeerTimer::Lonely, now + self.settings.lonely_retry);
        } else if self.stats.created < self.settings.gossip_count {
            // The first message goes out as soon as there is someone to hear it.
            self.arm(PeerTimer::Gossip, now);
        }
    }

    fn create_gossip(&mut self, text: String, now: Timestamp) {
        self.ml.record_first(self.addr, &text, None, now);
        self.emit(Event::GossipCreated { msg: text.clone() });
        let neighbors: Vec<_> = self.neighbors.iter().copied().collect();
        for peer in neighbors {
            self.send(
                peer,
                Message::Gossip {
                    origin: self.addr,
                    msg: text.clone(),
                    hops: 0,
                },
            );
        }
    }

    fn on_gossip(
        &mut self,
        from: SocketAddr,
        origin: SocketAddr,
        msg: String,
        hops: u32,
        now: Timestamp,
    ) {
        if !self.ml.record_first(origin, &msg, Some(from), now) {
            self.stats.duplicates_dropped += 1;
            return;
        }
        let hops = hops.saturating_add(1);
        self.stats.received_first += 1;
        self.emit(Event::GossipReceived {
            msg: msg.clone(),
            from,
            origin,
            hops,
        });
        let others: Vec<_> = self
            .neighbors
            .iter()
            .copied()
            .filter(|p| *p != from)
            .collect();
        for peer in others {
            self.stats.forwarded += 1;
            self.send(
                peer,
                Message::Gossip {
                    origin,
                    msg: msg.clone(),
                    hops,
                },
            );
        }
    }

    fn reject(&mut self, from: SocketAddr, reason: String) {
        self.emit(Event::ProtocolError {
            remote: from,
            reason,
        });
        self.outputs.push_back(Output::Close(from));
    }
}

impl<R: Rng> Core for PeerCore<R> {
    type Timer = PeerTimer;

    fn role(&self) -> Role {
        Role::Peer
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn start(&mut self, now: Timestamp) {
        for _ in 0..self.quorum() {
            self.ask_another_seed();
        }
        self.send_registrations();
        self.arm(PeerTimer::Retry, now + self.register_retry);
    }

    fn incarnation(&self) -> u64 {
        self.incarnation
    }

    fn is_seed(&self, addr: &SocketAddr) -> bool {
        self.seeds.contains(addr)
    }

    fn handle_message(&mut self, from: SocketAddr, msg: Message, now: Timestamp) {
        match msg {
            Message::RegisterAck {} => self.on_register_ack(from, now),
            Message::PeerList { peers } => self.on_peer_list(from, peers, now),
            Message::DeadConfirmed { peer, incarnation } if self.seeds.contains(&from) => {
                if self.confirmed_dead.insert((peer, incarnation)) {
                    self.emit(Event::DeadConfirmed { peer });
                    if self.neighbors.contains(&peer) {
                        self.outputs.push_back(Output::Close(peer));
                    }
                }
            }
            Message::Ping { nonce } if self.neighbors.contains(&from) => {
                let neighbors = self.neighbors.iter().copied().collect();
                self.send(
                    from,
                    Message::Pong {
                        nonce,
                        incarnation: self.incarnation,
                        neighbors,
                    },
                );
            }
            Message::Pong {
                incarnation,
                neighbors,
                ..
            } if self.neighbors.contains(&from) => {
                if self.liveness.answered(from, incarnation, neighbors) {
                    self.emit(Event::SuspicionCleared { peer: from });
                }
            }
            Message::Gossip { origin, msg, hops } if self.neighbors.contains(&from) => {
                self.on_gossip(from, origin, msg, hops, now)
            }
            other => self.reject(from, format!("unexpected {} for a peer", other.kind())),
        }
    }

    fn handle_link_up(&mut self, remote: SocketAddr, role: Role, now: Timestamp) {
        if role == Role::Seed && self.seeds.contains(&remote) {
            self.reachable_seeds.insert(remote);
        }
        if role != Role::Peer {
            // Our seed connections come up this way too; only an address we
            // chose as a neighbour is a mistake, and must not stall the join.
            if self.pending_links.remove(&remote) {
                self.reject(remote, format!("chosen neighbour {remote} is not a peer"));
                self.finish_linking_if_done(now);
            }
            return;
        }
        self.pending_links.remove(&remote);
        if self.neighbors.insert(remote) {
            self.emit(Event::NeighborUp { peer: remote });
            self.report_links();
            let nonce = self.liveness.add(remote, now);
            self.send(remote, Message::Ping { nonce });
            self.arm(PeerTimer::Ping, now + self.settings.ping_interval);
        }
        self.finish_linking_if_done(now);
        self.after_neighbors_changed(now);
    }

    fn handle_link_down(&mut self, remote: SocketAddr, now: Timestamp) {
        self.reachable_seeds.remove(&remote);
        self.pending_links.remove(&remote);
        if self.neighbors.remove(&remote) {
            self.liveness.remove(&remote);
            self.emit(Event::NeighborDown { peer: remote });
            self.report_links();
        }
        self.finish_linking_if_done(now);
        self.after_neighbors_changed(now);
    }

    fn handle_timer(&mut self, timer: PeerTimer, now: Timestamp) {
        match timer {
            PeerTimer::Retry => {
                if !self.retry_is_due(now) {
                    return;
                }
                match self.phase {
                    Phase::Registering => {
                        // Back off while the seeds cannot commit, so that a
                        // seed outage is not met with a retry storm.
                        self.register_retry = (self.register_retry * 2).min(MAX_REGISTER_RETRY);
                        self.emit(Event::RegisterWaiting {
                            answered: self.acked.len(),
                            needed: self.quorum(),
                            reachable: self.reachable_seeds.len(),
                            seeds: self.seeds.len(),
                            retry_ms: self.register_retry.as_millis() as u64,
                        });
                        // A silent seed may be down: widen to one more seed.
                        self.ask_another_seed();
                        self.send_registrations();
                        self.arm(PeerTimer::Retry, now + self.register_retry);
                    }
                    Phase::FetchingLists => self.retry_peer_lists(now),
                    Phase::Linking | Phase::Active => {}
                }
            }
            PeerTimer::Gossip => {
                self.gossip_armed = false;
                if self.neighbors.is_empty() || self.stats.created >= self.settings.gossip_count {
                    return;
                }
                self.stats.created += 1;
                let text = format!(
                    "{:.6}:{}:{}",
                    now.as_secs_f64(),
                    self.addr.ip(),
                    self.stats.created
                );
                self.create_gossip(text, now);
                if self.stats.created < self.settings.gossip_count {
                    self.arm(PeerTimer::Gossip, now + self.settings.gossip_interval);
                }
            }
            PeerTimer::Ping => {
                self.ping_armed = false;
                let interval = self.settings.ping_interval;
                let round = self
                    .liveness
                    .round(now, interval, self.settings.ping_misses.get());
                for peer in round.newly_suspected {
                    let reason = format!("no answer to a ping within {interval:?}");
                    self.emit(Event::SuspicionStarted { peer, reason });
                }
                for (peer, nonce) in round.pings {
                    self.send(peer, Message::Ping { nonce });
                }
                if !self.liveness.is_empty() {
                    self.arm(PeerTimer::Ping, now + interval);
                }
            }
            PeerTimer::Lonely => {
                self.lonely_armed = false;
                if self.phase == Phase::Active && self.neighbors.is_empty() {
                    self.fetch_peer_lists(now);
                }
            }
        }
    }

    /// Typed text is gossiped as `<timestamp>:<IP>:<text>` (R10).
    fn handle_user_line(&mut self, line: &str, now: Timestamp) {
        let text = line.trim();
        if text.is_empty() {
            return;
        }
        if text.len() > MAX_GOSSIP_TEXT {
            return self.emit(Event::UserLineRefused {
                bytes: text.len(),
                limit: MAX_GOSSIP_TEXT,
            });
        }
        let msg = format!("{:.6}:{}:{}", now.as_secs_f64(), self.addr.ip(), text);
        self.create_gossip(msg, now);
    }

    fn poll_output(&mut self) -> Option<Output<PeerTimer>> {
        self.outputs.pop_front()
    }
}

#[cfg(test)]
mod tests;
