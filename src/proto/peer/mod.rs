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
//!
//! Throughout, it checks its neighbours (R11 to R16): a lost connection or
//! `ping_misses` missed PINGs make a neighbour a suspect; the suspect's
//! other neighbours are asked to check it ([`agreement`]); on a majority
//! the peer sends a Dead Node report to its seeds. When the seeds confirm
//! a removal, the peer drops the dead neighbour and links to the
//! replacement they name. A peer that learns it was itself removed
//! registers again with a new incarnation.

mod admission;
mod agreement;
mod liveness;
mod message_list;

use std::{
    collections::{hash_map, BTreeMap, BTreeSet, VecDeque},
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    time::Duration,
};

use rand::{seq::IteratorRandom, Rng};
use rustc_hash::FxHashMap;

pub use admission::{
    origin_rate, Admission, OverBudget, MIN_ORIGIN_RATE, NEW_ORIGINS_BURST, NEW_ORIGINS_PER_SEC,
    ORIGINS_PER_LINK, ORIGIN_BURST, ORIGIN_CAPACITY, ORIGIN_IDLE,
};
pub use agreement::{Agreement, Answer, Decision};
pub use liveness::{ping_timeout, Liveness, LivenessTable};
pub use message_list::{
    creation_time, digest, GossipOrigin, MessageDigest, MessageList, Refusal, MAX_FUTURE_SKEW,
    ML_CAPACITY, ML_LINK_SHARE, ML_RETENTION,
};

use super::{
    evidence::{Identity, ReportContent, VerifiedGossip},
    message::{
        Message, PeerEntry, PublicKey, Role, Signature, Statement, Verdict, MAX_GOSSIP_TEXT,
        PROTOCOL_VERSION,
    },
    seed::directory::majority,
    sorted::SortedSet,
    time::RefusalLog,
    topology, Core, Event, GossipRefusal, Output, QueryError, Timestamp,
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
    /// Off: ICMP echo to neighbours' hosts needs privileges and proves only
    /// that a host is up. When on, `ping_misses` unanswered echoes in a row
    /// make every neighbour on that host a suspect.
    pub icmp: bool,
    /// 64 KiB ([`MAX_GOSSIP_TEXT`]): the longest gossip text, in bytes,
    /// that this peer creates from a typed line or accepts from a
    /// neighbour. Far above any course message, and small enough that a
    /// flood of maximal messages costs the logs little.
    pub max_gossip_bytes: usize,
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
            icmp: false,
            max_gossip_bytes: MAX_GOSSIP_TEXT,
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
    /// Ping every neighbour.
    Ping,
    /// Count the PINGs left unanswered past the ping timeout.
    MissCheck,
    /// Answer the SUSPECT_REQUESTs whose check has run out of time.
    SuspectCheck,
    /// Ask again about suspects that are neither cleared nor removed.
    AgreementRetry,
    /// Check with seeds whose connection dropped that this peer is still
    /// registered.
    Reverify,
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
    /// Received messages refused as older than the Message List keeps
    /// entries: replays, or messages from a clock far behind.
    pub stale_dropped: u64,
    /// Received messages longer than `max_gossip_bytes`.
    pub oversize_refused: u64,
    /// Received messages without a creation time, or with one further
    /// ahead than [`MAX_FUTURE_SKEW`].
    pub untimely_refused: u64,
    /// Messages, received or our own, refused for want of room in the
    /// Message List: it was full, or their link held its share.
    pub no_room_refused: u64,
    /// Received messages over their origin's admission budget, or from an
    /// origin new to this peer over their link's budget for new origins.
    pub over_budget_refused: u64,
    /// Received messages whose signature does not verify.
    pub forged_refused: u64,
    pub forwarded: u64,
}

/// The longest wait between registration attempts.
const MAX_REGISTER_RETRY: Duration = Duration::from_secs(8);
/// Time for a SUSPECT_REQUEST's connection and answer, on top of the check
/// the asked peer makes (one ping timeout).
const QUERY_MARGIN: Duration = Duration::from_secs(1);
/// Own messages kept while the peer has no neighbour; beyond this, the
/// oldest go.
const MAX_UNSENT: usize = 64;
/// Rounds of questions about one suspect before this peer gives up on it:
/// enough to ride out a lost report or a seed's refusal on stale topology.
const MAX_AGREEMENT_ROUNDS: u32 = 5;
/// Candidates drawn beyond the links wanted, by the same preferential
/// attachment: when a dial fails, the peer dials the next of these at once
/// instead of waiting `lonely_retry` for new Peer Lists, so a dead peer
/// still listed (a ghost) cannot leave a joiner without a neighbour.
pub const SPARE_CANDIDATES: usize = 3;
/// Most failed dials remembered, so that each is reported once per
/// ping interval.
const DIAL_REPORTS_KEPT: usize = 64;

/// A neighbour under suspicion.
#[derive(Debug)]
struct Suspect {
    /// Its connection is gone (rather than its PINGs unanswered).
    link_lost: bool,
    /// Its incarnation, once known: from its PONG or from whoever checks it.
    incarnation: Option<u64>,
    /// Its neighbours, from its last PONG.
    neighbors: SortedSet<SocketAddr>,
    /// The round of questions under way, once this peer's own check
    /// failed.
    round: Option<Agreement>,
    rounds: u32,
    /// When to ask again if it is neither cleared nor removed by then.
    retry_at: Option<Timestamp>,
}

/// A SUSPECT_REQUEST this peer is checking.
#[derive(Debug, Clone, Copy)]
struct PendingCheck {
    token: u64,
    suspect: SocketAddr,
    /// The suspect's incarnation as the asker knew it.
    asked_incarnation: Option<u64>,
    deadline: Timestamp,
}

pub struct PeerCore<R> {
    addr: SocketAddr,
    /// Signs this peer's statements and reports; the seeds hold its public
    /// key from its registration.
    identity: Identity,
    seeds: Vec<SocketAddr>,
    settings: PeerSettings,
    rng: R,
    phase: Phase,
    /// Seeds asked to register us.
    asked: SortedSet<SocketAddr>,
    /// Seeds that acknowledged; once a majority, these are "our" seeds.
    acked: SortedSet<SocketAddr>,
    lists: BTreeMap<SocketAddr, Vec<PeerEntry>>,
    /// Some seed's Peer List said that we are registered.
    listed_by_a_seed: bool,
    /// Seeds whose Peer List we wait for.
    list_requests: SortedSet<SocketAddr>,
    pending_links: SortedSet<SocketAddr>,
    neighbors: SortedSet<SocketAddr>,
    joined: bool,
    ml: MessageList,
    /// Budgets per origin and per link for new messages ([`admission`]).
    admission: Admission,
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
    /// Neighbours' lives that ended by their own LEAVE: logged as `left`,
    /// so the seeds' confirmation of their removal is not logged again as
    /// a death.
    departed: BTreeSet<(SocketAddr, u64)>,
    suspects: BTreeMap<SocketAddr, Suspect>,
    /// Checks this peer makes for others' SUSPECT_REQUESTs.
    checks: Vec<PendingCheck>,
    /// Replacement links being opened, to the dead neighbour they replace.
    replacing: BTreeMap<SocketAddr, SocketAddr>,
    /// Candidates of the last choice not dialled yet, best first: dialled
    /// one by one as dials fail ([`SPARE_CANDIDATES`]).
    spares: Vec<SocketAddr>,
    /// Failed dials told to the seeds lately, and when.
    dial_reports: BTreeMap<SocketAddr, Timestamp>,
    /// ICMP echoes unanswered in a row, by neighbours' host.
    icmp_misses: BTreeMap<IpAddr, u32>,
    /// Own messages created while the peer had no neighbour, signed.
    unsent: VecDeque<(String, Signature)>,
    /// What each seed said the seeds' pinned keys are.
    seed_keys: SeedKeyWords,
    /// Gossip signatures verified by any peer sharing it: the simulator's
    /// peers share one ([`VerifiedGossip`]). `None`: each is verified here.
    verified_gossip: Option<VerifiedGossip>,
    reverify_armed: bool,
    /// The wait before the next check with a registered seed that dropped.
    reverify_wait: Duration,
    /// Seeds with a working connection, for the waiting message.
    reachable_seeds: SortedSet<SocketAddr>,
    /// The one of our seeds that hears our link reports. The log shares
    /// each report with every seed, so one copy is enough; sending one to
    /// each of our seeds would put each change in the log once per seed.
    report_seed: Option<SocketAddr>,
    /// The number of the last LINK_REPORT sent. It only grows, across
    /// lives too (a rejoin), so each report is newer than every report
    /// before it and the seeds can put them back in order.
    link_seq: u64,
    /// The wait before the next registration attempt; doubles while the
    /// seeds cannot commit.
    register_retry: Duration,
    stats: PeerStats,
    /// Refused gossip by link (our own address for our own messages), for
    /// `gossip_refused` lines at most once a second each.
    refusals: FxHashMap<SocketAddr, RefusalLog<Timestamp>>,
    outputs: VecDeque<Output<PeerTimer>>,
}

/// The seeds' keys as each seed states them in its Peer Lists: the keys
/// its committed log pins. A seed's key is taken from the other seeds'
/// word, never its own, and only when they agree: so a process on a down
/// seed's port cannot vouch for itself, and one that lies about the
/// others can only leave their keys unpinned here, not change them.
#[derive(Debug, Default)]
struct SeedKeyWords {
    /// By seed, the key each speaking seed last stated for it.
    words: BTreeMap<SocketAddr, BTreeMap<SocketAddr, PublicKey>>,
    /// Whether [`SeedKeyWords::pinned`] may answer otherwise since last
    /// taken.
    changed: bool,
}

impl SeedKeyWords {
    /// Seed `speaker` states `keys`, its whole pinned set.
    fn heard(&mut self, speaker: SocketAddr, keys: BTreeMap<SocketAddr, PublicKey>) {
        for said in self.words.values_mut() {
            self.changed |= said.remove(&speaker).is_some();
        }
        for (seed, key) in keys {
            if seed != speaker {
                self.words.entry(seed).or_default().insert(speaker, key);
                self.changed = true;
            }
        }
        self.words.retain(|_, said| !said.is_empty());
    }

    /// The key the seeds other than `seed` agree on for it, if any say.
    fn pinned(&self, seed: &SocketAddr) -> Option<PublicKey> {
        let mut said = self.words.get(seed)?.values();
        let first = *said.next()?;
        said.all(|k| *k == first).then_some(first)
    }
}

/// A GOSSIP frame of `origin`'s message.
fn gossip(origin: GossipOrigin, msg: String, signature: Signature, hops: u32) -> Message {
    Message::Gossip {
        origin: origin.addr,
        key: origin.key,
        msg,
        signature,
        hops,
    }
}

impl<R: Rng> PeerCore<R> {
    /// `seeds` is the full seed list from the config; `incarnation` must be
    /// higher than any earlier life of a peer at `addr` (start time works);
    /// `identity` is the peer's signing key.
    pub fn new(
        addr: SocketAddr,
        seeds: Vec<SocketAddr>,
        settings: PeerSettings,
        incarnation: u64,
        identity: Identity,
        rng: R,
    ) -> Self {
        let settings_retry = settings.retry_interval;
        let admission = Admission::new(&settings);
        PeerCore {
            addr,
            identity,
            seeds,
            settings,
            rng,
            phase: Phase::Registering,
            asked: SortedSet::new(),
            acked: SortedSet::new(),
            lists: BTreeMap::new(),
            listed_by_a_seed: false,
            list_requests: SortedSet::new(),
            pending_links: SortedSet::new(),
            neighbors: SortedSet::new(),
            joined: false,
            ml: MessageList::default(),
            admission,
            gossip_armed: false,
            retry_due: None,
            lonely_armed: false,
            incarnation,
            liveness: LivenessTable::default(),
            ping_armed: false,
            confirmed_dead: BTreeSet::new(),
            departed: BTreeSet::new(),
            suspects: BTreeMap::new(),
            checks: Vec::new(),
            replacing: BTreeMap::new(),
            spares: Vec::new(),
            dial_reports: BTreeMap::new(),
            icmp_misses: BTreeMap::new(),
            unsent: VecDeque::new(),
            verified_gossip: None,
            seed_keys: SeedKeyWords::default(),
            reverify_armed: false,
            reverify_wait: settings_retry,
            reachable_seeds: SortedSet::new(),
            report_seed: None,
            link_seq: 0,
            register_retry: settings_retry,
            stats: PeerStats::default(),
            refusals: FxHashMap::default(),
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

    /// Shares `memo` of verified gossip signatures with other peers in
    /// this process (the simulator's), so that each message is verified
    /// once, not once per peer.
    pub fn share_verified_gossip(&mut self, memo: VerifiedGossip) {
        self.verified_gossip = Some(memo);
    }

    /// Origins the admission budgets remember.
    pub fn origins_remembered(&self) -> usize {
        self.admission.origins()
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
            PeerTimer::Reverify => &mut self.reverify_armed,
            PeerTimer::Lonely => &mut self.lonely_armed,
            PeerTimer::Ping => &mut self.ping_armed,
            // Each of these serves deadlines of its own; a firing with
            // nothing due does nothing.
            PeerTimer::MissCheck | PeerTimer::SuspectCheck | PeerTimer::AgreementRetry => {
                return self.outputs.push_back(Output::Timer { timer, at });
            }
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
            self.send(seed, self.register_request());
        }
    }

    /// A REGISTER_REQUEST for this life.
    fn register_request(&self) -> Message {
        Message::RegisterRequest {
            incarnation: self.incarnation,
            key: self.identity.public_key(),
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
        self.listed_by_a_seed = false;
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
    fn request_peer_lists(&mut self, seeds: SortedSet<SocketAddr>, now: Timestamp) {
        for seed in &seeds {
            self.send(*seed, Message::PeerListRequest {});
        }
        self.list_requests = seeds;
        self.arm(PeerTimer::Retry, now + self.settings.retry_interval);
    }

    fn on_peer_list(
        &mut self,
        seed: SocketAddr,
        peers: Vec<PeerEntry>,
        you_registered: bool,
        now: Timestamp,
    ) {
        if self.phase != Phase::FetchingLists || !self.list_requests.contains(&seed) {
            return;
        }
        self.listed_by_a_seed |= you_registered;
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
    /// In the order first listed: seeds in address order, each list in
    /// its own order.
    fn candidates(&self) -> Vec<PeerEntry> {
        let listed = self.lists.values().map(Vec::len).sum();
        let mut union: Vec<PeerEntry> = Vec::with_capacity(listed);
        // A hash of places, not a sort: a join merges a few hundred entries.
        let mut place: FxHashMap<SocketAddr, usize> =
            FxHashMap::with_capacity_and_hasher(listed, Default::default());
        let fresh = self.lists.values().flatten().filter(|e| {
            e.addr != self.addr
                && !self.neighbors.contains(&e.addr)
                && !self.pending_links.contains(&e.addr)
        });
        for entry in fresh {
            match place.entry(entry.addr) {
                hash_map::Entry::Occupied(at) => {
                    let kept = &mut union[*at.get()].degree;
                    *kept = (*kept).max(entry.degree);
                }
                hash_map::Entry::Vacant(at) => {
                    at.insert(union.len());
                    union.push(*entry);
                }
            }
        }
        union
    }

    fn choose_and_link(&mut self, now: Timestamp) {
        // A peer that joined once and that no seed lists any more was
        // removed; it hears so from the seeds, but this catches a lost word.
        if self.joined && !self.lists.is_empty() && !self.listed_by_a_seed {
            return self.rejoin(now);
        }
        let candidates = self.candidates();
        let count = topology::draw_link_count(
            self.settings.max_links.get(),
            self.settings.link_exponent,
            &mut self.rng,
        );
        let candidate_count = candidates.len();
        let mut chosen =
            topology::choose_neighbors(candidates, count + SPARE_CANDIDATES, &mut self.rng);
        self.spares = chosen.split_off(count.min(chosen.len()));
        self.spares.reverse();
        if candidate_count > 0 {
            self.emit(Event::NeighborsChosen {
                candidates: candidate_count,
                chosen: chosen.clone(),
            });
        }
        self.phase = Phase::Linking;
        // The lists served their purpose; kept, they would cost each peer
        // the size of the whole network.
        self.lists.clear();
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

    /// A dial to `peer`, a chosen neighbour (`chosen`) or a replacement the
    /// seeds named, failed. A chosen one is replaced at once by the next
    /// spare candidate. The seeds are told, at most once a ping interval
    /// per address, so that they check `peer` with their own probes: a
    /// registered peer nobody can reach is a ghost, perhaps with no
    /// neighbour left to report it.
    fn on_dial_failed(&mut self, peer: SocketAddr, chosen: bool, now: Timestamp) {
        let mut next = None;
        while chosen && next.is_none() {
            let Some(spare) = self.spares.pop() else {
                break;
            };
            if !self.neighbors.contains(&spare) && !self.pending_links.contains(&spare) {
                next = Some(spare);
            }
        }
        if let Some(next) = next {
            self.pending_links.insert(next);
            self.outputs.push_back(Output::Connect(next));
        }
        let interval = self.settings.ping_interval;
        if self
            .dial_reports
            .get(&peer)
            .is_some_and(|at| now < *at + interval)
        {
            return;
        }
        if self.dial_reports.len() >= DIAL_REPORTS_KEPT {
            self.dial_reports.retain(|_, at| now < *at + interval);
        }
        if self.dial_reports.len() < DIAL_REPORTS_KEPT {
            self.dial_reports.insert(peer, now);
        }
        self.emit(Event::DialFailedReported { peer, next });
        // Every seed: each must probe it itself, and a removal needs a
        // majority of them.
        for seed in self.seeds.clone() {
            self.send(seed, Message::DialFailed { peer });
        }
    }

    /// Sends our whole neighbour set to our seeds (R1: seeds keep topology).
    fn report_links(&mut self) {
        // Before Active the join itself ends with a report; skip the churn.
        if self.phase != Phase::Active {
            return;
        }
        // With none of our seeds in reach, the report waits for one.
        let Some(seed) = self.report_seed() else {
            return;
        };
        let neighbors = self.neighbors.iter().copied().collect();
        self.link_seq += 1;
        self.send(
            seed,
            Message::LinkReport {
                neighbors,
                incarnation: self.incarnation,
                seq: self.link_seq,
            },
        );
    }

    /// The seed to send link reports to: the one chosen before, else one
    /// of our seeds that we have a working connection with, at random.
    /// Keeping to one seed keeps our reports in order in the log.
    fn report_seed(&mut self) -> Option<SocketAddr> {
        let usable = |s: &SocketAddr| self.acked.contains(s) && self.reachable_seeds.contains(s);
        if self.report_seed.as_ref().is_some_and(usable) {
            return self.report_seed;
        }
        self.report_seed = self
            .acked
            .iter()
            .filter(|s| self.reachable_seeds.contains(s))
            .copied()
            .choose(&mut self.rng);
        self.report_seed
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

    /// Who creates this peer's messages: its address and key.
    fn own_origin(&self) -> GossipOrigin {
        GossipOrigin {
            addr: self.addr,
            key: self.identity.public_key(),
        }
    }

    fn create_gossip(&mut self, text: String, now: Timestamp) {
        if let Err(refusal) = self.ml.record_first(self.own_origin(), &text, None, now) {
            return self.list_refused(self.addr, refusal, now);
        }
        self.emit(Event::GossipCreated { msg: text.clone() });
        let signature = self.identity.sign_gossip(self.addr, &text);
        if self.neighbors.is_empty() {
            // Alone for the moment (a neighbour just died, say): the
            // message waits for the next link instead of being lost.
            if self.unsent.len() == MAX_UNSENT {
                self.unsent.pop_front();
            }
            self.unsent.push_back((text, signature));
            return;
        }
        let neighbors: Vec<_> = self.neighbors.iter().copied().collect();
        let origin = self.own_origin();
        for peer in neighbors {
            self.send(peer, gossip(origin, text.clone(), signature.clone(), 0));
        }
    }

    /// Why a GOSSIP new to this peer is not its origin's: it names this
    /// peer's own address under another key, or its signature does not
    /// verify (checked through the shared memo when there is one, the
    /// simulator's).
    fn forgery(&self, origin: GossipOrigin, msg: &str, signature: &Signature) -> Option<String> {
        if origin.addr == self.addr && origin.key != self.identity.public_key() {
            return Some(format!(
                "it names this peer as its origin under another key ({})",
                origin.key
            ));
        }
        let verified = match &self.verified_gossip {
            Some(memo) => memo.verify(&origin.key, origin.addr, msg, signature),
            None => origin.key.verify_gossip(origin.addr, msg, signature),
        };
        verified.err().map(|_| {
            format!(
                "its signature does not verify against the key it names ({})",
                origin.key
            )
        })
    }

    fn on_gossip(
        &mut self,
        from: SocketAddr,
        origin: GossipOrigin,
        msg: String,
        signature: Signature,
        hops: u32,
        now: Timestamp,
    ) {
        let limit = self.settings.max_gossip_bytes;
        if msg.len() > limit {
            self.stats.oversize_refused += 1;
            let bytes = msg.len();
            return self.log_refusal(from, GossipRefusal::TooLarge, now, |_| {
                format!("{bytes} bytes, over the {limit}-byte limit (--max-gossip-bytes)")
            });
        }
        // Flooding brings most messages more than once: a copy already
        // listed costs no signature check (the list refuses it below), nor
        // does one over its budget, so that a flood costs no more checks
        // than the budgets let messages in.
        if !self.ml.contains(origin, &msg) {
            if let Err(over) = self.admission.check(origin, from, now) {
                return self.list_refused(from, Refusal::OverBudget(over), now);
            }
            if let Some(reason) = self.forgery(origin, &msg, &signature) {
                self.stats.forged_refused += 1;
                return self.log_refusal(from, GossipRefusal::Forged, now, |_| reason);
            }
        }
        let admission = &mut self.admission;
        let admitted = self.ml.record_first_if(origin, &msg, Some(from), now, || {
            admission
                .admit(origin, from, now)
                .map_err(Refusal::OverBudget)
        });
        if let Err(refusal) = admitted {
            return self.list_refused(from, refusal, now);
        }
        let hops = hops.saturating_add(1);
        self.stats.received_first += 1;
        self.emit(Event::GossipReceived {
            msg: msg.clone(),
            from,
            origin: origin.addr,
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
            self.send(peer, gossip(origin, msg.clone(), signature.clone(), hops));
        }
    }

    /// Counts a message the Message List did not admit, from neighbour
    /// `from` (our own address: one of our own), and logs why unless it
    /// was a duplicate or a stale copy: those are the normal lot of
    /// flooding, and of replays the list is there to stop.
    fn list_refused(&mut self, from: SocketAddr, refusal: Refusal, now: Timestamp) {
        let ml_rate = origin_rate(&self.settings);
        let cause = match refusal {
            Refusal::Duplicate => return self.stats.duplicates_dropped += 1,
            Refusal::Stale => return self.stats.stale_dropped += 1,
            Refusal::Timeless => GossipRefusal::Timeless,
            Refusal::Future(_) => GossipRefusal::Future,
            Refusal::Full => GossipRefusal::ListFull,
            Refusal::OverShare => GossipRefusal::LinkShare,
            Refusal::OverBudget(OverBudget::OriginRate) => GossipRefusal::OriginRate,
            Refusal::OverBudget(OverBudget::NewOrigins) => GossipRefusal::NewOrigins,
        };
        match cause {
            GossipRefusal::Timeless | GossipRefusal::Future => self.stats.untimely_refused += 1,
            GossipRefusal::OriginRate | GossipRefusal::NewOrigins => {
                self.stats.over_budget_refused += 1
            }
            _ => self.stats.no_room_refused += 1,
        }
        self.log_refusal(from, cause, now, |ml| match refusal {
            Refusal::Future(ahead) => format!(
                "created {} s ahead of this peer's clock, more than the {} s allowed; \
                 check both hosts' clocks",
                ahead.as_secs(),
                MAX_FUTURE_SKEW.as_secs()
            ),
            Refusal::Full => format!(
                "the Message List holds {} unexpired entries, its capacity",
                ml.capacity()
            ),
            Refusal::OverShare => format!(
                "this link holds its share of the Message List ({} entries) \
                 and the list is half full",
                ml.link_share()
            ),
            Refusal::OverBudget(OverBudget::OriginRate) => format!(
                "its origin introduced more than {ORIGIN_BURST} new messages at once \
                 or {:.1} a second",
                ml_rate
            ),
            Refusal::OverBudget(OverBudget::NewOrigins) => format!(
                "its origin is new to this peer, and this link introduced more than \
                 {NEW_ORIGINS_BURST} new origins at once or {NEW_ORIGINS_PER_SEC} a second, \
                 or holds {ORIGINS_PER_LINK} of them (or {ORIGIN_CAPACITY} are remembered)"
            ),
            _ => "its text does not start with a creation time (<Unix seconds>:)".to_string(),
        });
    }

    /// Logs a refused message from `from`: the first at once, then at most
    /// one line a second per link, with the count since the last line.
    /// `reason` is worked out only for a line that is due, so that a flood
    /// costs no text.
    fn log_refusal(
        &mut self,
        from: SocketAddr,
        cause: GossipRefusal,
        now: Timestamp,
        reason: impl FnOnce(&MessageList) -> String,
    ) {
        if let Some(count) = self.refusals.entry(from).or_default().note(now) {
            let reason = reason(&self.ml);
            self.emit(Event::GossipRefused {
                from,
                cause,
                reason,
                count,
            });
        }
    }

    /// Starts a local suspicion of neighbour `peer` (R12), once.
    fn suspect(&mut self, peer: SocketAddr, link_lost: bool, reason: String) {
        if let Some(known) = self.suspects.get_mut(&peer) {
            known.link_lost |= link_lost;
            return;
        }
        let (incarnation, neighbors) = match self.liveness.get(&peer) {
            Some(state) => (state.incarnation, state.neighbors.clone()),
            None => (None, SortedSet::new()),
        };
        self.suspects.insert(
            peer,
            Suspect {
                link_lost,
                incarnation,
                neighbors,
                round: None,
                rounds: 0,
                retry_at: None,
            },
        );
        self.emit(Event::SuspicionStarted { peer, reason });
    }

    /// This peer's own check failed: ask the suspect's other neighbours to
    /// check it too (R13).
    fn start_round(&mut self, peer: SocketAddr, now: Timestamp) {
        let me = self.addr;
        let interval = self.settings.ping_interval;
        let retry_at = now + self.agreement_retry();
        let Some(suspect) = self.suspects.get_mut(&peer) else {
            return;
        };
        suspect.rounds += 1;
        let others = suspect
            .neighbors
            .iter()
            .copied()
            .filter(|n| *n != me && *n != peer)
            .collect();
        let round = Agreement::new(others);
        let query = Message::SuspectRequest {
            version: PROTOCOL_VERSION,
            peer,
            incarnation: suspect.incarnation,
            from: me,
        };
        for to in round.to_ask() {
            self.outputs.push_back(Output::Query {
                to,
                query: query.clone(),
                timeout: ping_timeout(interval) + QUERY_MARGIN,
            });
        }
        suspect.round = Some(round);
        suspect.retry_at = Some(retry_at);
        self.arm(PeerTimer::AgreementRetry, retry_at);
        self.settle(peer, now);
    }

    /// How long a round may take before it is asked again: long enough for
    /// every answer, and for the seeds to commit a report.
    fn agreement_retry(&self) -> Duration {
        self.settings.ping_interval.max(Duration::from_secs(1)) + QUERY_MARGIN
    }

    /// `from` answered about `peer`: its verdict, the incarnation it
    /// knows, and its statement; or why there is no answer.
    fn on_suspect_answer(
        &mut self,
        from: SocketAddr,
        peer: SocketAddr,
        answer: Result<(Verdict, Option<u64>, Option<Statement>), String>,
        now: Timestamp,
    ) {
        let Some(suspect) = self.suspects.get_mut(&peer) else {
            return;
        };
        let Some(round) = &mut suspect.round else {
            return;
        };
        if let Ok((_, Some(incarnation), _)) = answer {
            suspect.incarnation.get_or_insert(incarnation);
        }
        let answer = match answer {
            Ok((Verdict::Alive, ..)) => Answer::Alive,
            Ok((Verdict::NotNeighbor, ..)) => Answer::NotNeighbor,
            // Only a statement by the peer asked, about the life being
            // reported, can stand as its confirmation before the seeds;
            // without one, it is as if it could not be asked.
            Ok((Verdict::Unresponsive, Some(incarnation), Some(statement)))
                if statement.addr == from && suspect.incarnation == Some(incarnation) =>
            {
                Answer::Confirmed(statement)
            }
            Ok((Verdict::Unresponsive, ..)) | Err(_) => Answer::Unreachable,
        };
        if !round.record(from, answer) {
            return;
        }
        self.settle(peer, now);
    }

    /// Acts on where the round about `peer` stands.
    fn settle(&mut self, peer: SocketAddr, now: Timestamp) {
        let Some(suspect) = self.suspects.get_mut(&peer) else {
            return;
        };
        let Some(round) = &suspect.round else {
            return;
        };
        match round.decide() {
            Decision::Alive => self.clear_suspicion(peer),
            Decision::Waiting => {}
            Decision::Report {
                statements,
                unreachable,
            } => {
                suspect.round = None;
                let retry = suspect.rounds > 1;
                // Without its incarnation no seed would take the report; the
                // next round may learn it from a neighbour's answer.
                if let Some(incarnation) = suspect.incarnation {
                    self.send_report(peer, incarnation, statements, unreachable, retry, now);
                }
            }
        }
    }

    /// Sends the Dead Node report (R14) to every seed this peer is
    /// registered with or connected to: the other confirmers'
    /// `statements` with this peer's own, in address order, all signed
    /// over by this peer. A `retry` round's report goes to every seed of
    /// the config.
    ///
    /// A retry means that the earlier reports led to no removal. One cause
    /// is a seed cut off without a sound: its packets are dropped, so the
    /// connection to it stalls but does not close, and this peer still
    /// counts it as in reach. A peer registered with that seed and one
    /// other then reaches only one seed that can vote, and a removal needs
    /// a majority. Reaching every seed on a retry costs a few connections,
    /// only while a suspect is unsettled, and lets every seed in reach check
    /// the evidence.
    fn send_report(
        &mut self,
        peer: SocketAddr,
        incarnation: u64,
        mut statements: Vec<Statement>,
        unreachable: Vec<SocketAddr>,
        retry: bool,
        now: Timestamp,
    ) {
        let report = format!(
            "Dead Node:{}:{}:{:.6}:{}",
            peer.ip(),
            peer.port(),
            now.as_secs_f64(),
            self.addr.ip()
        );
        let own = self
            .identity
            .state_unresponsive(self.addr, peer, incarnation, now);
        statements.push(own);
        statements.sort_by_key(|s| s.addr);
        let signature = self.identity.sign_report(&ReportContent {
            reporter: self.addr,
            report: &report,
            peer,
            incarnation,
            confirmers: &statements,
            unreachable: &unreachable,
        });
        self.emit(Event::DeadReportSent {
            peer,
            report: report.clone(),
            confirmers: statements.iter().map(|s| s.addr).collect(),
        });
        let message = Message::DeadReport {
            report,
            peer,
            incarnation,
            confirmers: statements,
            unreachable,
            signature,
        };
        let seeds: BTreeSet<SocketAddr> = if retry {
            self.seeds.iter().copied().collect()
        } else {
            self.acked
                .iter()
                .chain(&self.reachable_seeds)
                .copied()
                .collect()
        };
        for seed in seeds {
            self.send(seed, message.clone());
        }
    }

    /// The suspect answered someone: the suspicion ends (R13, R16). A
    /// suspect whose connection was lost is dialled again.
    fn clear_suspicion(&mut self, peer: SocketAddr) {
        if let Some(suspect) = self.suspects.remove(&peer) {
            self.emit(Event::SuspicionCleared { peer });
            if suspect.link_lost && !self.neighbors.contains(&peer) {
                self.outputs.push_back(Output::Connect(peer));
            }
        }
    }

    /// Asks again about suspects still unsettled when their time comes;
    /// gives up on those asked about too often.
    fn retry_agreements(&mut self, now: Timestamp) {
        let stale: Vec<(SocketAddr, u32)> = self
            .suspects
            .iter()
            .filter(|(_, s)| s.retry_at.is_some_and(|at| at <= now))
            .filter(|(peer, s)| s.link_lost || self.liveness_says_unresponsive(peer))
            .map(|(peer, s)| (*peer, s.rounds))
            .collect();
        for (peer, rounds) in stale {
            if rounds < MAX_AGREEMENT_ROUNDS {
                self.start_round(peer, now);
                continue;
            }
            self.suspects.remove(&peer);
            self.emit(Event::SuspicionAbandoned {
                peer,
                reason: format!(
                    "no removal after {rounds} rounds of questions; the link is dropped"
                ),
            });
            self.drop_neighbor(peer);
            self.outputs.push_back(Output::Close(peer));
            self.after_neighbors_changed(now);
        }
    }

    fn liveness_says_unresponsive(&self, peer: &SocketAddr) -> bool {
        self.liveness
            .get(peer)
            .is_some_and(|s| s.misses >= self.settings.ping_misses.get())
    }

    /// Another peer asks this one to check `suspect` (R13). A lost link or a
    /// PING already overdue answers at once; otherwise a fresh PING does,
    /// within one ping timeout.
    fn on_suspect_request(
        &mut self,
        token: u64,
        suspect: SocketAddr,
        asked_incarnation: Option<u64>,
        now: Timestamp,
    ) {
        let interval = self.settings.ping_interval;
        let verdict = if self.suspects.get(&suspect).is_some_and(|s| s.link_lost) {
            Verdict::Unresponsive
        } else if !self.neighbors.contains(&suspect) {
            Verdict::NotNeighbor
        } else if self.liveness.is_overdue(&suspect, now, interval) {
            Verdict::Unresponsive
        } else {
            if let Some(nonce) = self.liveness.extra_ping(suspect, now) {
                self.send(suspect, Message::Ping { nonce });
            }
            let deadline = now + ping_timeout(interval);
            self.checks.push(PendingCheck {
                token,
                suspect,
                asked_incarnation,
                deadline,
            });
            return self.arm(PeerTimer::SuspectCheck, deadline);
        };
        let check = PendingCheck {
            token,
            suspect,
            asked_incarnation,
            deadline: now,
        };
        self.answer_check(check, verdict, now);
    }

    /// Answers `check` with `verdict`, and the suspect's incarnation as
    /// this peer knows it (else as the asker did). An unresponsive verdict
    /// about a known incarnation carries this peer's signed statement.
    fn answer_check(&mut self, check: PendingCheck, verdict: Verdict, now: Timestamp) {
        let suspect = check.suspect;
        let incarnation = self
            .liveness
            .get(&suspect)
            .and_then(|s| s.incarnation)
            .or_else(|| self.suspects.get(&suspect).and_then(|s| s.incarnation))
            .or(check.asked_incarnation);
        let statement =
            match (verdict, incarnation) {
                (Verdict::Unresponsive, Some(incarnation)) => Some(
                    self.identity
                        .state_unresponsive(self.addr, suspect, incarnation, now),
                ),
                _ => None,
            };
        self.outputs.push_back(Output::Reply {
            token: check.token,
            msg: Message::SuspectResponse {
                peer: suspect,
                verdict,
                incarnation,
                statement,
            },
        });
    }

    /// Answers the checks of `suspect` that `done` selects.
    fn answer_checks(
        &mut self,
        verdict: Verdict,
        now: Timestamp,
        mut done: impl FnMut(&PendingCheck) -> bool,
    ) {
        let (finished, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.checks)
            .into_iter()
            .partition(|c| done(c));
        self.checks = waiting;
        for check in finished {
            self.answer_check(check, verdict, now);
        }
    }

    /// Forgets neighbour `peer`; returns whether it was one.
    fn drop_neighbor(&mut self, peer: SocketAddr) -> bool {
        if !self.neighbors.remove(&peer) {
            return false;
        }
        self.liveness.remove(&peer);
        self.refusals.remove(&peer);
        self.admission.link_down(peer);
        self.emit(Event::NeighborDown { peer });
        self.report_links();
        true
    }

    /// The seeds committed the removal of `peer` (R15, R18): drop it and
    /// link to the replacement they name (R7).
    fn on_dead_confirmed(
        &mut self,
        peer: SocketAddr,
        incarnation: u64,
        replacement: Option<SocketAddr>,
        now: Timestamp,
    ) {
        if peer == self.addr {
            if incarnation == self.incarnation {
                self.rejoin(now);
            }
            return;
        }
        if !self.confirmed_dead.insert((peer, incarnation)) {
            return;
        }
        if !self.departed.contains(&(peer, incarnation)) {
            self.emit(Event::DeadConfirmed { peer });
        }
        self.suspects.remove(&peer);
        self.answer_checks(Verdict::Unresponsive, now, |c| c.suspect == peer);
        // A newer life at that address is not the one removed.
        let newer_life = self
            .liveness
            .get(&peer)
            .and_then(|s| s.incarnation)
            .is_some_and(|i| i > incarnation);
        if !newer_life && self.drop_neighbor(peer) {
            self.outputs.push_back(Output::Close(peer));
        }
        if let Some(new) = replacement {
            if new != self.addr && !self.neighbors.contains(&new) {
                self.replacing.insert(new, peer);
                self.outputs.push_back(Output::Connect(new));
            }
        }
        self.after_neighbors_changed(now);
    }

    /// Neighbour `peer` says, on its own link, that its life
    /// `incarnation` ends: drop the link without suspecting it, and pass
    /// the LEAVE on to this peer's seeds, so that the seeds it did not
    /// reach hear it too (it is signed, and they check it). The seeds'
    /// confirmation brings the replacement link.
    fn on_neighbor_left(
        &mut self,
        peer: SocketAddr,
        incarnation: u64,
        leave: Message,
        now: Timestamp,
    ) {
        if !self.departed.insert((peer, incarnation)) {
            return;
        }
        self.emit(Event::Left { peer, incarnation });
        self.suspects.remove(&peer);
        // Not its neighbour any more: no word on it either way.
        self.answer_checks(Verdict::NotNeighbor, now, |c| c.suspect == peer);
        if self.drop_neighbor(peer) {
            self.outputs.push_back(Output::Close(peer));
        }
        let seeds: Vec<SocketAddr> = self.reachable_seeds.iter().copied().collect();
        for seed in seeds {
            self.send(seed, leave.clone());
        }
        self.after_neighbors_changed(now);
    }

    /// The seeds removed this peer although it runs (R16): start a new life
    /// with a higher incarnation, and join again from scratch.
    fn rejoin(&mut self, now: Timestamp) {
        let old = self.incarnation;
        self.incarnation = (old + 1).max(now.as_micros());
        self.emit(Event::Rejoining {
            old_incarnation: old,
            incarnation: self.incarnation,
        });
        for peer in std::mem::take(&mut self.neighbors) {
            self.liveness.remove(&peer);
            self.outputs.push_back(Output::Close(peer));
        }
        self.suspects.clear();
        self.answer_checks(Verdict::NotNeighbor, now, |_| true);
        self.replacing.clear();
        self.spares.clear();
        self.pending_links.clear();
        self.asked.clear();
        self.acked.clear();
        self.report_seed = None;
        self.lists.clear();
        self.list_requests.clear();
        self.retry_due = None;
        self.register_retry = self.settings.retry_interval;
        self.joined = false;
        self.phase = Phase::Registering;
        self.start(now);
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

    fn public_key(&self) -> Option<PublicKey> {
        Some(self.identity.public_key())
    }

    fn pinned_key(&self, addr: &SocketAddr) -> Option<PublicKey> {
        self.seed_keys.pinned(addr)
    }

    fn take_pinned_keys_changed(&mut self) -> bool {
        std::mem::take(&mut self.seed_keys.changed)
    }

    fn is_seed(&self, addr: &SocketAddr) -> bool {
        self.seeds.contains(addr)
    }

    fn handle_message(&mut self, from: SocketAddr, msg: Message, now: Timestamp) {
        match msg {
            Message::RegisterAck {} => self.on_register_ack(from, now),
            Message::PeerList {
                peers,
                you_registered,
                seed_keys,
                ..
            } => {
                if self.seeds.contains(&from) {
                    self.seed_keys.heard(from, seed_keys);
                }
                self.on_peer_list(from, peers, you_registered, now)
            }
            Message::DeadConfirmed {
                peer,
                incarnation,
                replacement,
            } if self.seeds.contains(&from) => {
                self.on_dead_confirmed(peer, incarnation, replacement, now)
            }
            leave @ Message::Leave { .. } => {
                // Only on the leaver's own link, whose identity HELLO
                // proved; the seeds check its signature themselves.
                if let Message::Leave {
                    peer, incarnation, ..
                } = leave
                {
                    if peer == from && self.neighbors.contains(&from) {
                        self.on_neighbor_left(peer, incarnation, leave, now);
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
                self.liveness.answered(from, incarnation, neighbors);
                self.answer_checks(Verdict::Alive, now, |c| c.suspect == from);
                self.clear_suspicion(from);
            }
            Message::Gossip {
                origin,
                key,
                msg,
                signature,
                hops,
            } if self.neighbors.contains(&from) => {
                let origin = GossipOrigin { addr: origin, key };
                self.on_gossip(from, origin, msg, signature, hops, now)
            }
            other => self.reject(from, format!("unexpected {} for a peer", other.kind())),
        }
    }

    /// A clean stop: the signed LEAVE of this life goes to every seed and
    /// every neighbour this peer has a connection to. Nothing is dialled:
    /// the node is closing, and a new connection could not prove its
    /// identity once it stops accepting. Neighbours relay it to their own
    /// seeds, so seeds this peer could not reach hear it too.
    fn handle_shutdown(&mut self, _now: Timestamp) {
        if self.acked.is_empty() && !self.joined {
            return; // never registered: nothing to remove.
        }
        let leave = Message::leave_signed_by(&self.identity, self.addr, self.incarnation);
        let seeds: Vec<SocketAddr> = self.reachable_seeds.iter().copied().collect();
        let neighbors: Vec<SocketAddr> = self.neighbors.iter().copied().collect();
        for to in seeds.iter().chain(&neighbors) {
            self.send(*to, leave.clone());
        }
        self.emit(Event::Leaving { seeds, neighbors });
    }

    fn handle_link_up(&mut self, remote: SocketAddr, role: Role, now: Timestamp) {
        if role == Role::Seed && self.seeds.contains(&remote) {
            self.reachable_seeds.insert(remote);
            if self.phase == Phase::Active
                && self.report_seed.is_none()
                && self.acked.contains(&remote)
            {
                // A report may be owed from while no seed was in reach.
                self.report_links();
            }
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
            if let Some(old) = self.replacing.remove(&remote) {
                self.emit(Event::NeighborReplaced { old, new: remote });
            }
            // A suspect that links again is alive.
            self.clear_suspicion(remote);
            let origin = self.own_origin();
            for (msg, signature) in std::mem::take(&mut self.unsent) {
                self.send(remote, gossip(origin, msg, signature, 0));
            }
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
        if self.phase == Phase::Active && self.acked.contains(&remote) {
            // The seed restarted, or a partition cut us off: whatever was
            // decided meanwhile, we may no longer be registered.
            self.arm(PeerTimer::Reverify, now + self.reverify_wait);
        }
        // A dial of ours that never came up as a link: it failed.
        let unlinked = !self.neighbors.contains(&remote) && !self.seeds.contains(&remote);
        let chosen = self.pending_links.remove(&remote);
        let replacement = self.replacing.remove(&remote).is_some();
        if unlinked && (chosen || replacement) {
            self.on_dial_failed(remote, chosen, now);
        }
        if self.report_seed == Some(remote) {
            // Reports on their way to it may be lost: tell another of our
            // seeds in reach the whole set, or the next one to come back.
            self.report_seed = None;
            self.report_links();
        }
        if self.neighbors.contains(&remote) {
            // Suspected before it is forgotten: the suspicion needs what
            // the liveness checks learnt about it.
            self.suspect(remote, true, "connection lost".into());
            self.drop_neighbor(remote);
            self.answer_checks(Verdict::Unresponsive, now, |c| c.suspect == remote);
            self.start_round(remote, now);
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
                for (peer, nonce) in self.liveness.round(now) {
                    self.send(peer, Message::Ping { nonce });
                }
                if self.settings.icmp {
                    let hosts: BTreeSet<IpAddr> = self.neighbors.iter().map(|n| n.ip()).collect();
                    for host in hosts {
                        let timeout = ping_timeout(interval);
                        self.outputs.push_back(Output::IcmpEcho { host, timeout });
                    }
                }
                if !self.liveness.is_empty() {
                    self.arm(PeerTimer::MissCheck, now + ping_timeout(interval));
                    self.arm(PeerTimer::Ping, now + interval);
                }
            }
            PeerTimer::MissCheck => {
                let interval = self.settings.ping_interval;
                let misses =
                    self.liveness
                        .count_misses(now, interval, self.settings.ping_misses.get());
                for peer in misses.newly_suspected {
                    let reason = format!("no answer to a ping within {:?}", ping_timeout(interval));
                    self.suspect(peer, false, reason);
                }
                for peer in misses.unresponsive {
                    self.start_round(peer, now);
                }
            }
            PeerTimer::SuspectCheck => {
                self.answer_checks(Verdict::Unresponsive, now, |c| c.deadline <= now);
            }
            PeerTimer::AgreementRetry => self.retry_agreements(now),
            PeerTimer::Reverify => {
                self.reverify_armed = false;
                let mut ask: BTreeSet<SocketAddr> = self
                    .acked
                    .difference(&self.reachable_seeds)
                    .copied()
                    .collect();
                if self.phase != Phase::Active || ask.is_empty() {
                    self.reverify_wait = self.settings.retry_interval;
                    return;
                }
                // A Dead Node report goes to the seeds this peer is
                // connected to (R14), and a removal needs a majority of
                // them to hear one (R15). With fewer in reach, because a
                // seed died, reach the others too.
                if self.reachable_seeds.len() < self.quorum() {
                    ask.extend(
                        self.seeds
                            .iter()
                            .filter(|s| !self.reachable_seeds.contains(s)),
                    );
                }
                // A REGISTER_REQUEST of the current life is acknowledged if
                // it is still registered, and answered with DEAD_CONFIRMED
                // if it was removed.
                for seed in ask {
                    self.send(seed, self.register_request());
                }
                self.reverify_wait = (self.reverify_wait * 2).min(MAX_REGISTER_RETRY);
                self.arm(PeerTimer::Reverify, now + self.reverify_wait);
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
        let prefix = format!("{:.6}:{}:", now.as_secs_f64(), self.addr.ip());
        // The whole message must fit what every peer accepts.
        let limit = self.settings.max_gossip_bytes.saturating_sub(prefix.len());
        if text.len() > limit {
            return self.emit(Event::UserLineRefused {
                bytes: text.len(),
                limit,
            });
        }
        let msg = prefix + text;
        self.create_gossip(msg, now);
    }

    fn handle_query(&mut self, token: u64, query: Message, now: Timestamp) {
        if let Message::SuspectRequest {
            peer, incarnation, ..
        } = query
        {
            self.on_suspect_request(token, peer, incarnation, now);
        }
    }

    fn handle_icmp_result(&mut self, host: IpAddr, result: Result<(), String>, now: Timestamp) {
        let misses = self.icmp_misses.entry(host).or_default();
        if result.is_ok() {
            *misses = 0;
            return;
        }
        *misses += 1;
        if *misses != self.settings.ping_misses.get() {
            return;
        }
        let reason = format!("host {host} did not answer {misses} ICMP echoes in a row");
        let on_host: Vec<SocketAddr> = self
            .neighbors
            .iter()
            .copied()
            .filter(|n| n.ip() == host)
            .collect();
        for peer in on_host {
            self.suspect(peer, false, reason.clone());
            self.start_round(peer, now);
        }
    }

    fn handle_query_result(
        &mut self,
        to: SocketAddr,
        query: Message,
        result: Result<Message, QueryError>,
        now: Timestamp,
    ) {
        let Message::SuspectRequest { peer, .. } = query else {
            return;
        };
        let answer = match result {
            Ok(Message::SuspectResponse {
                peer: about,
                verdict,
                incarnation,
                statement,
            }) if about == peer => Ok((verdict, incarnation, statement)),
            Ok(other) => Err(format!("answered {}", other.kind())),
            Err(e) => Err(e.to_string()),
        };
        self.on_suspect_answer(to, peer, answer, now);
    }

    fn poll_output(&mut self) -> Option<Output<PeerTimer>> {
        let output = self.outputs.pop_front();
        if output.is_none() {
            // Emptied, the queue gives its memory back: kept, it would
            // hold most of a kilobyte for each of a simulation's 100,000
            // idle peers, while the next call's allocation costs little.
            self.outputs = VecDeque::new();
        }
        output
    }
}

#[cfg(test)]
mod tests;
