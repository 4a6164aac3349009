//! The seed core: the membership directory (R1 to R4, R17).
//!
//! A seed never gossips. It keeps a replica of the [`Directory`], the
//! replicated state machine of Peer List, topology and pending votes, and
//! changes it only by applying entries of the seeds' shared log.
//!
//! Registration:
//! 1. A peer sends REGISTER_REQUEST to a majority of seeds.
//! 2. Each seed checks it. The address must not be a seed's, and a fresh
//!    dial-back PROBE must find a peer of that incarnation listening there.
//! 3. The seed proposes its own vote `Vote { Add(peer), seed: me }`.
//! 4. The change commits when floor(n/2)+1 distinct seeds have voted.
//! 5. A seed acknowledges the peer only once it has *applied* that commit.
//!
//! So no seed and no minority of seeds can add a peer. Removal uses the same
//! votes with `Remove`.
//!
//! The cap on peers per IP address (`max_peers_per_ip`) is the one committed
//! in the log's `Init`; the directory enforces it when it applies the vote
//! that completes a majority, so registrations from one address that race
//! each other cannot pass it together. A seed also refuses, without a probe
//! or a vote, a request that is over the cap already in its directory.

pub mod directory;

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    net::SocketAddr,
    sync::{Arc, LazyLock},
    time::Duration,
};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use directory::{
    Change, ChangeKind, Command, Directory, Ignored, Incarnation, Outcome, Refusal, SeedChange,
};

use super::{
    event::CommitBasis,
    evidence::{self, ReportContent},
    message::{Message, PublicKey, Role, Signature, Statement, PROTOCOL_VERSION},
    Core, Event, Output, QueryError, Timestamp,
};

/// Seeds retry only the cluster's first entry; retrying registrations is
/// the peers' job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedTimer {
    /// The leader checks that its `Init` was applied, and proposes it again
    /// if not.
    InitRetry,
    /// Probe again a reported-dead peer that turned the last probe away.
    RetryProbe(PendingProbe),
    /// Check that this seed's own key is pinned in the log, and propose it
    /// again if not.
    KeyRetry,
}

/// 1 s: a lost `Init` only delays the first registrations.
const INIT_RETRY: Duration = Duration::from_secs(1);
/// 1 s: a lost `SeedKey` only leaves this seed's key unpinned a little
/// longer.
const KEY_RETRY: Duration = Duration::from_secs(1);
/// 5 s to answer a registration's dial-back PROBE: a joining peer may be on
/// a slow link, and waiting costs only its own join.
pub const REGISTER_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// 500 ms to answer the PROBE that checks a reported-dead peer. Its
/// neighbours have already waited several ping timeouts; a frozen process
/// still accepts the connection (the kernel does), so this wait is part of
/// every removal of a frozen peer.
pub const DEAD_PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// The waits before each new try of a turned-away probe of a reported-dead
/// peer. A node that closes a probe's connection unanswered (over its
/// connection limit, say) is running, and an attacker who floods it with
/// connections must not make that look like death; so a turned-away probe
/// is tried again, and if every try is turned away the suspect counts as
/// alive. The first wait is short because a process killed as the probe
/// arrives also resets it, and refuses the next; the tries then span
/// about 3 s, longer than a burst of connections that a node's admission
/// (docs/SECURITY.md) takes to shed.
pub const DEAD_PROBE_RETRIES: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_secs(1),
    Duration::from_secs(2),
];
/// Tries of a reported-dead peer's probe, the first included.
pub const DEAD_PROBE_ATTEMPTS: u32 = DEAD_PROBE_RETRIES.len() as u32 + 1;
/// Checks a seed starts for one peer's DIAL_FAILED reports within
/// [`DIAL_CHECK_WINDOW`]: a failed dial is a hint, not evidence, and a
/// peer must not make the seeds probe the world. A joiner fails at most a
/// few dials (its choice plus [`SPARE_CANDIDATES`](crate::proto::peer::SPARE_CANDIDATES)).
pub const DIAL_CHECKS_PER_REPORTER: u32 = 8;
/// The window of [`DIAL_CHECKS_PER_REPORTER`].
pub const DIAL_CHECK_WINDOW: Duration = Duration::from_secs(10);
/// Reporters whose budgets a seed keeps before it drops the spent windows.
const DIAL_BUDGETS_KEPT: usize = 4096;
/// Own checks of a started seed's registered peers under way at once: the
/// probes are fresh connections, and a directory may hold many peers.
pub const STARTUP_CHECKS_AT_ONCE: usize = 64;

/// Why a seed probes a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProbePurpose {
    /// The peer asked to register.
    Register,
    /// The peer is reported dead.
    DeadCheck,
    /// The peer is named as unreachable in a report about `suspect`.
    Unreachable { suspect: SocketAddr },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingProbe {
    purpose: ProbePurpose,
    target: SocketAddr,
    incarnation: Incarnation,
    /// The key the reply must state, when one is known.
    key: Option<PublicKey>,
    /// 1 for the first try; see [`DEAD_PROBE_ATTEMPTS`].
    attempt: u32,
}

/// A dead report under this seed's own check.
#[derive(Debug)]
struct DeadCheck {
    incarnation: Incarnation,
    confirmers: usize,
    /// The suspect's neighbours in the committed topology.
    neighbors: usize,
    /// Named-unreachable neighbours still being probed.
    probing: BTreeSet<SocketAddr>,
    /// Named-unreachable neighbours this seed could not reach either.
    unreachable: usize,
    /// Whether the suspect failed this seed's probe, once known.
    suspect_down: Option<bool>,
    /// Why the suspect counts as up though no probe got an answer: it
    /// turned every try away.
    turned_away: Option<String>,
    /// This seed's own check (see `watch`), not a report's.
    own: bool,
}

/// Most peers a PEER_LIST names. Beyond it a seed sends a uniform sample,
/// so a join costs the same in a network of a hundred peers or a million
/// (the joiner still attaches by degree among those listed).
pub const PEER_LIST_LIMIT: usize = 128;

/// A fixed seed for a seed's generator: runs are reproducible, and seeds
/// at different addresses draw different samples.
fn address_seed(addr: SocketAddr) -> u64 {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) => u64::from(u32::from(v4)),
        std::net::IpAddr::V6(v6) => u128::from(v6) as u64,
    };
    (ip << 16) | u64::from(addr.port())
}

pub struct SeedCore {
    addr: SocketAddr,
    /// All seeds, from the config; named in the log's `Init` entry.
    seeds: Vec<SocketAddr>,
    /// Held alone on a real seed. Seeds in one process that apply one log
    /// once between them share it: see [`SeedCore::apply_committed_shared`].
    directory: Arc<Directory>,
    leader: Option<SocketAddr>,
    /// Peers that asked this seed to register them, and the incarnation
    /// and key they asked for: they get REGISTER_ACK when that Add is
    /// applied.
    awaiting_ack: BTreeMap<SocketAddr, (Incarnation, PublicKey)>,
    /// Probes under way, by nonce.
    probes: BTreeMap<u64, PendingProbe>,
    /// The registrations among `probes`, by peer, incarnation and key: a
    /// retried REGISTER_REQUEST must not probe twice, and scanning `probes`
    /// for it costs too much while thousands of peers join.
    probing_registrations: BTreeSet<(SocketAddr, Incarnation, PublicKey)>,
    next_nonce: u64,
    /// This seed's own checks of reported-dead peers under way.
    dead_checks: BTreeMap<SocketAddr, DeadCheck>,
    /// Who reported each suspect to this seed: they are told of the
    /// removal even if their link to it left the committed topology first.
    reporters: BTreeMap<SocketAddr, BTreeSet<SocketAddr>>,
    /// Peers whose last probe by this seed failed, at that incarnation.
    failed_probes: BTreeMap<SocketAddr, Incarnation>,
    /// Peers this seed has proposed to remove, at that incarnation, until
    /// the removal commits. A neighbour found dead again is not checked
    /// again for a vote it already has: two dead neighbours would
    /// otherwise set off each other's checks, probe after probe and vote
    /// after vote, for as long as their removals take to commit. And a
    /// vote that never reached the log, because no leader could be reached
    /// in time, is proposed again when a leader is known (see
    /// `repropose_lost_votes`).
    voted_remove: BTreeMap<SocketAddr, Incarnation>,
    /// Peers whose LEAVE this seed checked, at that life, until the
    /// removal commits: their vote is a leave vote when proposed again,
    /// and their dropped connection needs no probe.
    leaves: BTreeMap<SocketAddr, Incarnation>,
    /// Draws the Peer List samples of a large network.
    rng: ChaCha8Rng,
    /// Nodes with an open connection to this seed, so that a removed peer
    /// that is still connected hears of its removal.
    connected: BTreeSet<SocketAddr>,
    /// An InitRetry timer is pending.
    init_retry_armed: bool,
    outputs: VecDeque<Output<SeedTimer>>,
    /// This seed's own setting for the most peers registered from one IP
    /// address (`None`: no cap). It goes into `Init` if this seed forms
    /// the cluster; the cap enforced is the committed one.
    max_peers_per_ip: Option<u32>,
    /// Whether this seed has compared its setting with the committed cap
    /// (and warned if they differ): once is enough.
    cap_compared: bool,
    /// Keys found valid lately: checking one costs a point decompression
    /// (tens of µs), and a peer repeats its request until it is acked.
    valid_keys: BTreeSet<PublicKey>,
    /// This seed's own identity key, which it has pinned in the log; `None`
    /// on a seed run without one (the simulator), which pins nothing.
    key: Option<PublicKey>,
    /// A KeyRetry timer is pending.
    key_retry_armed: bool,
    /// Per reporter of failed dials: when its window opened, and the
    /// checks started for it since.
    dial_budgets: BTreeMap<SocketAddr, (Timestamp, u32)>,
    /// Whether this seed has started checking the peers its directory held
    /// when it started (see [`SeedCore::check_registered_peers`]).
    startup_checked: bool,
    /// Registered peers still to check since this seed started, and those
    /// whose check is under way.
    startup_queue: VecDeque<SocketAddr>,
    startup_checking: BTreeSet<SocketAddr>,
    /// Said at start: this seed waits to be added, or rejoins after
    /// losing its log.
    standing: Option<Event>,
}

/// Most keys [`SeedCore::valid_keys`] remembers before it starts afresh.
const VALID_KEYS_KEPT: usize = 1024;

impl SeedCore {
    pub fn new(addr: SocketAddr, seeds: Vec<SocketAddr>) -> Self {
        SeedCore {
            addr,
            seeds,
            directory: Arc::default(),
            leader: None,
            awaiting_ack: BTreeMap::new(),
            probes: BTreeMap::new(),
            probing_registrations: BTreeSet::new(),
            next_nonce: 0,
            dead_checks: BTreeMap::new(),
            reporters: BTreeMap::new(),
            failed_probes: BTreeMap::new(),
            voted_remove: BTreeMap::new(),
            leaves: BTreeMap::new(),
            rng: ChaCha8Rng::seed_from_u64(address_seed(addr)),
            connected: BTreeSet::new(),
            init_retry_armed: false,
            outputs: VecDeque::new(),
            max_peers_per_ip: None,
            cap_compared: false,
            valid_keys: BTreeSet::new(),
            key: None,
            key_retry_armed: false,
            dial_budgets: BTreeMap::new(),
            startup_checked: false,
            startup_queue: VecDeque::new(),
            startup_checking: BTreeSet::new(),
            standing: None,
        }
    }

    /// What this seed says when it starts about its place in the cluster
    /// (`seed_waiting_to_join`, `seed_rejoining`), if anything.
    pub fn with_standing(mut self, standing: Option<Event>) -> Self {
        self.standing = standing;
        self
    }

    /// This seed's identity key: once the cluster has formed, the seed
    /// proposes it for pinning in the log (`SeedKey`) until it is pinned,
    /// and it is the key that operators' rekey orders to this seed must be
    /// signed with.
    pub fn with_key(mut self, key: PublicKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Proposes this seed's key for pinning while none is pinned for it,
    /// once the cluster has formed and a leader is known; checks again
    /// after [`KEY_RETRY`], since a proposal may be lost.
    fn pin_own_key(&mut self, now: Timestamp) {
        let Some(key) = self.key else {
            return;
        };
        if !self.directory.is_initialised()
            || !self.directory.is_member(&self.addr)
            || self.directory.seed_key(&self.addr).is_some()
            || self.leader.is_none()
            || self.key_retry_armed
        {
            return;
        }
        self.outputs.push_back(Output::Propose(Command::SeedKey {
            seed: self.addr,
            key,
        }));
        self.key_retry_armed = true;
        self.outputs.push_back(Output::Timer {
            timer: SeedTimer::KeyRetry,
            at: now + KEY_RETRY,
        });
    }

    /// An operator's REKEY_REQUEST: checked against this seed's own key
    /// and its directory; if sound, this seed proposes its vote.
    fn on_rekey_request(
        &mut self,
        seed: SocketAddr,
        old: PublicKey,
        new: PublicKey,
        signature: &Signature,
    ) -> Result<String, String> {
        let Some(key) = self.key else {
            return Err(format!("{} runs without an identity key", self.addr));
        };
        key.verify_rekey(self.addr, seed, old, new, signature)
            .map_err(|e| {
                format!(
                    "the order is not signed with the key of seed {} ({e}): sign it with the identity.key in that seed's own data directory",
                    self.addr
                )
            })?;
        if !self.directory.is_member(&seed) {
            return Err(format!("{seed} is not a seed of this cluster"));
        }
        match self.directory.seed_key(&seed) {
            Some(pinned) if pinned == old => {}
            Some(pinned) => {
                return Err(format!(
                    "the key pinned for {seed} is {pinned}, not {old}; ask again"
                ))
            }
            None => {
                return Err(format!(
                    "no key is pinned for {seed} yet; nothing to replace"
                ))
            }
        }
        if old == new {
            return Err(format!("{new} is already the key pinned for {seed}"));
        }
        if !new.is_valid() {
            return Err(format!("{new} is not an ed25519 public key"));
        }
        self.outputs.push_back(Output::Propose(Command::Rekey {
            seed,
            old,
            new,
            voter: self.addr,
        }));
        Ok(format!(
            "{} votes to pin {new} for {seed}; the key is replaced once {} of the {} seeds have voted",
            self.addr,
            self.directory.quorum(),
            self.directory.seeds().count()
        ))
    }

    /// An operator's SEEDS_REQUEST: checked against this seed's own key
    /// and its directory; if sound, this seed proposes its vote.
    fn on_seeds_request(
        &mut self,
        add: Option<SocketAddr>,
        remove: Option<SocketAddr>,
        signature: &Signature,
    ) -> Result<String, String> {
        let Some(key) = self.key else {
            return Err(format!("{} runs without an identity key", self.addr));
        };
        key.verify_seed_change(self.addr, add, remove, signature)
            .map_err(|e| {
                format!(
                    "the order is not signed with the key of seed {} ({e}): sign it with the identity.key in that seed's own data directory",
                    self.addr
                )
            })?;
        if !self.directory.is_voter(&self.addr) {
            return Err(format!("{} is not a voting seed of the cluster", self.addr));
        }
        let change = SeedChange { add, remove };
        let seeds: std::collections::BTreeSet<SocketAddr> = self.directory.seeds().collect();
        if add.is_none() && remove.is_none() || add == remove {
            return Err("name one seed to add, one to remove, or both".into());
        }
        if let Some(add) = add.filter(|a| seeds.contains(a)) {
            return Err(format!("{add} is a seed already"));
        }
        if let Some(remove) = remove.filter(|r| !seeds.contains(r)) {
            return Err(format!("{remove} is not a seed"));
        }
        if change.target(&seeds).is_empty() {
            return Err("that would leave no seed".into());
        }
        if let Some(add) = add.filter(|a| a.ip().is_unspecified() || a.port() == 0) {
            return Err(format!("{add} cannot be a seed's address"));
        }
        self.outputs.push_back(Output::Propose(Command::SeedChange {
            add,
            remove,
            voter: self.addr,
        }));
        Ok(format!(
            "{} votes to {change}; the change is made once {} of the {} seeds have voted",
            self.addr,
            self.directory.quorum(),
            seeds.len()
        ))
    }

    /// Caps the peers registered from one IP address: a brake on one host
    /// registering many identities (Sybil). The value is proposed in the
    /// `Init` entry if this seed forms the cluster; the committed value is
    /// the one every seed enforces. Registrations over the cap are refused
    /// and logged (`register_refused`).
    pub fn with_max_peers_per_ip(mut self, cap: Option<u32>) -> Self {
        self.max_peers_per_ip = cap;
        self
    }

    /// Warns, once, if this seed's own cap differs from the committed one,
    /// which it enforces instead.
    fn compare_cap(&mut self) {
        if self.cap_compared || !self.directory.is_initialised() {
            return;
        }
        self.cap_compared = true;
        let committed = self.directory.max_peers_per_ip();
        if committed != self.max_peers_per_ip {
            self.emit(Event::IpCapOverridden {
                configured: self.max_peers_per_ip,
                committed,
            });
        }
    }

    /// Applies a committed log entry to this seed's directory and acts on
    /// it; returns the outcome.
    pub fn apply_committed(&mut self, command: &Command) -> Outcome {
        Self::apply_committed_shared(&mut [self], command)
    }

    /// Applies a committed log entry once for `seeds`, which then share
    /// the first one's directory, and has each act on it; returns the
    /// outcome. A real seed is alone in `seeds` ([`SeedCore::apply_committed`]);
    /// a host that runs every seed of a cluster over one log (the
    /// simulator) passes them all, so the state machine runs once instead
    /// of once per seed.
    pub fn apply_committed_shared(seeds: &mut [&mut SeedCore], command: &Command) -> Outcome {
        let Some((first, others)) = seeds.split_first_mut() else {
            return Outcome::Nothing;
        };
        let neighbors_before = first.neighbors_before(command);
        // Alone with the directory, the first changes it in place. The
        // others hold one shared empty directory meanwhile, rather than
        // each a new one made and dropped at every entry.
        static VACANT: LazyLock<Arc<Directory>> = LazyLock::new(Arc::default);
        for other in others.iter_mut() {
            other.directory = Arc::clone(&VACANT);
        }
        let outcome = Arc::make_mut(&mut first.directory).apply(command);
        first.act_on_applied(command, &outcome, &neighbors_before);
        for other in others {
            other.directory = Arc::clone(&first.directory);
            other.act_on_applied(command, &outcome, &neighbors_before);
        }
        outcome
    }

    /// Whom to tell if `command` removes a peer: its neighbours as they
    /// were, since the removal also drops its links.
    fn neighbors_before(&self, command: &Command) -> BTreeSet<SocketAddr> {
        match command.vote() {
            Some((change, _)) if change.kind == ChangeKind::Remove => {
                self.directory.neighbors_of(&change.peer)
            }
            _ => BTreeSet::new(),
        }
    }

    fn act_on_applied(
        &mut self,
        command: &Command,
        outcome: &Outcome,
        neighbors_before: &BTreeSet<SocketAddr>,
    ) {
        match (command, outcome) {
            (Command::Init { seeds, .. }, Outcome::Initialised) => {
                self.emit(Event::ClusterFormed {
                    seeds: seeds.clone(),
                });
                self.compare_cap();
            }
            (
                Command::Vote { .. } | Command::Leave { .. },
                Outcome::VoteCounted { .. } | Outcome::Committed { .. } | Outcome::Refused { .. },
            ) => {
                let Some((change, seed)) = command.vote() else {
                    return;
                };
                let (change, seed) = (&change, &seed);
                self.emit(Event::Vote {
                    change: change.kind,
                    peer: change.peer,
                    seed: *seed,
                    incarnation: change.incarnation,
                });
                if let Outcome::Committed { voters, seeds } = outcome {
                    let (peer, votes) = (change.peer, voters.len());
                    self.failed_probes.remove(&peer);
                    self.voted_remove.remove(&peer);
                    let (voters, seeds) = (voters.clone(), *seeds);
                    self.emit(match change.kind {
                        ChangeKind::Add => Event::RegisterCommitted {
                            peer,
                            basis: CommitBasis::Consensus,
                            votes,
                            seeds,
                            voters,
                        },
                        ChangeKind::Remove => Event::RemoveCommitted {
                            peer,
                            votes,
                            seeds,
                            voters,
                        },
                    });
                    if change.kind == ChangeKind::Remove {
                        self.leaves.remove(&peer);
                        if self.directory.left_at(&peer) == Some(change.incarnation) {
                            self.emit(Event::Left {
                                peer,
                                incarnation: change.incarnation,
                            });
                        }
                        self.announce_removal(peer, change.incarnation, neighbors_before);
                    }
                    self.ack_if_committed(peer);
                }
                if let Outcome::Refused { reason, .. } = outcome {
                    self.refuse_committed(change, reason);
                }
            }
            (
                Command::Links {
                    peer, neighbors, ..
                },
                Outcome::LinksRecorded,
            ) => {
                self.emit(Event::TopologyUpdated {
                    peer: *peer,
                    neighbors: neighbors.clone(),
                });
                if !self.failed_probes.is_empty() {
                    self.recheck_found_dead();
                }
            }
            (
                Command::Links {
                    peer,
                    incarnation,
                    seq,
                    ..
                },
                Outcome::Ignored {
                    reason: Ignored::OutOfOrder,
                },
            ) => {
                self.emit(Event::LinkReportSuperseded {
                    peer: *peer,
                    incarnation: *incarnation,
                    seq: *seq,
                    recorded_seq: self.directory.link_seq(peer),
                });
            }
            (Command::SeedKey { seed, key }, Outcome::SeedKeyPinned) => {
                self.emit(Event::SeedKeyPinned {
                    seed: *seed,
                    key: *key,
                });
            }
            (
                Command::SeedKey { seed, key },
                Outcome::Ignored {
                    reason: Ignored::KeyAlreadyPinned,
                },
            ) => {
                if let Some(pinned) = self.directory.seed_key(seed) {
                    self.emit(Event::SeedKeyIgnored {
                        seed: *seed,
                        pinned,
                        proposed: *key,
                    });
                }
            }
            (
                Command::Rekey {
                    seed, new, voter, ..
                },
                Outcome::VoteCounted { votes, needed },
            ) => {
                self.emit(Event::SeedRekeyVote {
                    seed: *seed,
                    new: *new,
                    voter: *voter,
                    votes: *votes,
                    needed: *needed,
                });
            }
            (
                Command::Rekey {
                    seed,
                    old,
                    new,
                    voter,
                },
                Outcome::SeedRekeyed { voters },
            ) => {
                self.emit(Event::SeedRekeyVote {
                    seed: *seed,
                    new: *new,
                    voter: *voter,
                    votes: voters.len(),
                    needed: self.directory.quorum(),
                });
                self.emit(Event::SeedRekeyed {
                    seed: *seed,
                    old: *old,
                    new: *new,
                    voters: voters.clone(),
                });
            }
            (Command::SeedChange { add, remove, voter }, outcome) => {
                let change = SeedChange {
                    add: *add,
                    remove: *remove,
                }
                .to_string();
                match outcome {
                    Outcome::VoteCounted { votes, needed } => self.emit(Event::SeedChangeVote {
                        change,
                        voter: *voter,
                        votes: *votes,
                        needed: *needed,
                    }),
                    Outcome::SeedChangeApproved { voters } => {
                        self.emit(Event::SeedChangeVote {
                            change: change.clone(),
                            voter: *voter,
                            votes: voters.len(),
                            needed: self.directory.quorum(),
                        });
                        self.emit(Event::SeedChangeApproved {
                            change,
                            voters: voters.clone(),
                        });
                    }
                    _ => {}
                }
            }
            (Command::Seeds { voters, learners }, Outcome::SeedsChanged) => {
                self.emit(Event::SeedsChanged {
                    voters: voters.clone(),
                    learners: learners.clone(),
                });
            }
            _ => {}
        }
    }

    /// The committed directory as this seed has applied it.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    pub fn leader(&self) -> Option<SocketAddr> {
        self.leader
    }

    fn emit(&mut self, event: Event) {
        self.outputs.push_back(Output::Event(event));
    }

    fn send(&mut self, to: SocketAddr, msg: Message) {
        self.outputs.push_back(Output::Send { to, msg });
    }

    fn reject(&mut self, from: SocketAddr, reason: String) {
        self.emit(Event::ProtocolError {
            remote: from,
            reason,
        });
        self.outputs.push_back(Output::Close(from));
    }

    fn on_register_request(&mut self, peer: SocketAddr, incarnation: Incarnation, key: PublicKey) {
        self.emit(Event::RegisterRequested { peer });
        if self.seeds.contains(&peer) {
            return self.reject(peer, "REGISTER_REQUEST from a seed's address".into());
        }
        if !self.valid_keys.contains(&key) {
            if !key.is_valid() {
                return self.reject(peer, format!("key {key} is not an ed25519 public key"));
            }
            if self.valid_keys.len() >= VALID_KEYS_KEPT {
                self.valid_keys.clear();
            }
            self.valid_keys.insert(key);
        }
        if self.directory.was_removed(&peer, incarnation) {
            // This life was removed while the peer could not hear of it (a
            // partition, say): tell it, so that it starts a new one.
            return self.send(
                peer,
                Message::DeadConfirmed {
                    peer,
                    incarnation,
                    replacement: None,
                },
            );
        }
        match self.directory.incarnation_of(&peer) {
            Some(current) if current == incarnation => {
                // A life keeps its key; another key for it is not this life.
                if let Some(committed) = self.directory.key_of(&peer) {
                    if committed != key {
                        return self.reject(
                            peer,
                            format!("incarnation {incarnation} is registered with another key"),
                        );
                    }
                }
                // Already committed: a retry after our ack was lost.
                return self.send(peer, Message::RegisterAck {});
            }
            Some(current) if current > incarnation => {
                return self.reject(
                    peer,
                    format!("incarnation {incarnation} is older than the registered {current}"),
                );
            }
            _ => {}
        }
        // A cheap pre-filter: over the cap already, the request is refused
        // without a probe or a vote. Requests that race each other pass it;
        // the directory's apply refuses those (`refuse_committed`).
        if let Some(reason) = self.directory.ip_cap_refusal(peer) {
            return self.refuse(peer, &reason, true);
        }
        self.awaiting_ack.insert(peer, (incarnation, key));
        if !self
            .probing_registrations
            .contains(&(peer, incarnation, key))
        {
            self.probe(ProbePurpose::Register, peer, incarnation, Some(key));
        }
    }

    /// Dials `target` afresh to check that a peer of `incarnation` (and
    /// `key`, if given) listens there; the answer comes to
    /// `on_probe_result`.
    fn probe(
        &mut self,
        purpose: ProbePurpose,
        target: SocketAddr,
        incarnation: Incarnation,
        key: Option<PublicKey>,
    ) {
        if let (ProbePurpose::Register, Some(key)) = (purpose, key) {
            self.probing_registrations
                .insert((target, incarnation, key));
        }
        self.send_probe(PendingProbe {
            purpose,
            target,
            incarnation,
            key,
            attempt: 1,
        });
    }

    /// Sends `probe` under a fresh nonce.
    fn send_probe(&mut self, probe: PendingProbe) {
        self.next_nonce += 1;
        let nonce = self.next_nonce;
        let (purpose, target) = (probe.purpose, probe.target);
        self.probes.insert(nonce, probe);
        let timeout = match purpose {
            ProbePurpose::Register => REGISTER_PROBE_TIMEOUT,
            ProbePurpose::DeadCheck | ProbePurpose::Unreachable { .. } => DEAD_PROBE_TIMEOUT,
        };
        self.outputs.push_back(Output::Query {
            to: target,
            query: Message::Probe {
                version: PROTOCOL_VERSION,
                nonce,
            },
            timeout,
        });
    }

    /// Proposes this seed's vote for `change`.
    fn propose_vote(&mut self, change: Change) {
        let (kind, peer) = (change.kind, change.peer);
        if kind == ChangeKind::Remove {
            self.voted_remove.insert(peer, change.incarnation);
        }
        self.emit(match kind {
            ChangeKind::Add => Event::RegisterProposed {
                peer,
                seed: self.addr,
            },
            ChangeKind::Remove => Event::RemoveProposed {
                peer,
                seed: self.addr,
            },
        });
        self.outputs.push_back(Output::Propose(Command::Vote {
            change,
            seed: self.addr,
        }));
    }

    /// Proposes this seed's vote to remove `peer` on its own LEAVE.
    fn propose_leave(&mut self, peer: SocketAddr, incarnation: Incarnation) {
        self.voted_remove.insert(peer, incarnation);
        self.emit(Event::RemoveProposed {
            peer,
            seed: self.addr,
        });
        self.outputs.push_back(Output::Propose(Command::Leave {
            peer,
            incarnation,
            seed: self.addr,
        }));
    }

    /// A LEAVE, from the peer itself or relayed by anyone: the peer's
    /// signed word that its life `incarnation` ends. If that life is
    /// registered and the signature verifies against the key committed
    /// for it, this seed votes to remove it at once: no probe, since the
    /// peer itself says it is gone, and no wait for its neighbours. A
    /// removal still needs a majority of seeds' votes. A LEAVE of
    /// another life (an older one, replayed) or under another key removes
    /// nothing.
    fn on_leave(
        &mut self,
        from: SocketAddr,
        peer: SocketAddr,
        incarnation: Incarnation,
        signature: &Signature,
    ) {
        if self.directory.was_removed(&peer, incarnation)
            || self.leaves.get(&peer) == Some(&incarnation)
        {
            return; // already removed, or already voted: a relayed copy.
        }
        self.emit(Event::LeaveReceived { peer, from });
        let checked = match (
            self.directory.incarnation_of(&peer),
            self.directory.key_of(&peer),
        ) {
            (Some(current), Some(key)) if current == incarnation => key
                .verify_leave(peer, incarnation, signature)
                .map_err(|e| e.to_string()),
            (Some(_), None) => Err("it has no registered key".to_string()),
            _ => Err(format!(
                "{peer} is not registered at incarnation {incarnation}"
            )),
        };
        if let Err(reason) = checked {
            return self.emit(Event::LeaveRefused { peer, from, reason });
        }
        self.leaves.insert(peer, incarnation);
        // Its word settles any check of it under way.
        self.dead_checks.remove(&peer);
        self.propose_leave(peer, incarnation);
    }

    /// Checks a dead report's evidence (R15): the reporter is among the
    /// confirmers, and every confirmer is a neighbour of the suspect in the
    /// committed topology (peers named unreachable that are not are
    /// ignored). The confirmers must be a majority of its neighbours,
    /// leaving out only those named unreachable that this seed cannot reach
    /// either. The report must be signed by its reporter, and each
    /// confirmer's statement by that confirmer (see [`evidence`]). Then
    /// this seed probes the suspect itself; only a failed probe earns its
    /// Remove vote. So a minority of the suspect's neighbours cannot get it
    /// removed, nobody can name a confirmer that did not confirm, and no
    /// number of confirmers can remove it while it answers.
    fn on_dead_report(&mut self, from: SocketAddr, message: &Message, now: Timestamp) {
        let Some((content, signature)) = message.report_content(from) else {
            return;
        };
        let (suspect, incarnation) = (content.peer, content.incarnation);
        self.emit(Event::DeadReportReceived {
            peer: suspect,
            from,
            report: content.report.to_string(),
            confirmers: content.confirmers.iter().map(|c| c.addr).collect(),
        });
        if self.directory.was_removed(&suspect, incarnation) {
            // A late report: the removal is already committed.
            let plan = self
                .directory
                .repair_links(&BTreeSet::from([from]), incarnation);
            return self.send(
                from,
                Message::DeadConfirmed {
                    peer: suspect,
                    incarnation,
                    replacement: plan.get(&from).copied(),
                },
            );
        }
        // Told of the removal whatever becomes of this report: its link to
        // the suspect may have left the committed topology first.
        self.reporters.entry(suspect).or_default().insert(from);
        let neighbors = self.directory.neighbors_of(&suspect);
        let checked = self.check_report(&content, signature, &neighbors, now);
        let (confirmers, unreachable) = match checked {
            Ok(counted) => counted,
            Err(reason) => {
                return self.emit(Event::DeadReportRefused {
                    peer: suspect,
                    from,
                    reason,
                })
            }
        };
        // A report takes over this seed's own check of the suspect, and its
        // probe already under way.
        let own_check = match self.dead_checks.get(&suspect) {
            Some(check) if !check.own => return,
            Some(_) => true,
            None => false,
        };
        // Enough confirmers alone: the unreachable ones need no probe.
        let needed = directory::majority(neighbors.len());
        let to_probe: Vec<(SocketAddr, Incarnation)> = if confirmers >= needed {
            Vec::new()
        } else {
            unreachable
                .iter()
                .filter_map(|u| Some((*u, self.directory.incarnation_of(u)?)))
                .collect()
        };
        self.dead_checks.insert(
            suspect,
            DeadCheck {
                incarnation,
                confirmers,
                neighbors: neighbors.len(),
                probing: to_probe.iter().map(|(u, _)| *u).collect(),
                unreachable: 0,
                suspect_down: None,
                turned_away: None,
                own: false,
            },
        );
        if !own_check {
            let key = self.directory.key_of(&suspect);
            self.probe(ProbePurpose::DeadCheck, suspect, incarnation, key);
        }
        for (u, inc) in to_probe {
            let key = self.directory.key_of(&u);
            self.probe(ProbePurpose::Unreachable { suspect }, u, inc, key);
        }
    }

    /// The checks of a dead report that need no probe, cheapest first:
    /// the suspect's registration, the confirmers' place in the committed
    /// topology and their number, then the signatures. Returns the number
    /// of confirmers and the named-unreachable neighbours that count, or
    /// why the report is refused.
    fn check_report(
        &self,
        r: &ReportContent<'_>,
        signature: &Signature,
        neighbors: &BTreeSet<SocketAddr>,
        now: Timestamp,
    ) -> Result<(usize, BTreeSet<SocketAddr>), String> {
        let (suspect, incarnation) = (r.peer, r.incarnation);
        if self.directory.incarnation_of(&suspect) != Some(incarnation) {
            return Err(format!(
                "{suspect} is not registered at incarnation {incarnation}"
            ));
        }
        let mut confirmers = BTreeSet::new();
        for statement in r.confirmers {
            if !confirmers.insert(statement.addr) {
                return Err(format!("it names confirmer {} twice", statement.addr));
            }
        }
        if !confirmers.contains(&r.reporter) {
            return Err("the reporter is not among the confirmers".to_string());
        }
        if let Some(stranger) = confirmers.iter().find(|c| !neighbors.contains(c)) {
            return Err(format!(
                "{stranger} is not a neighbour of {suspect} in the committed topology"
            ));
        }
        // An unreachable peer that is no neighbour (any more: it may have
        // been removed meanwhile) cannot shrink the count; it is ignored.
        let unreachable: BTreeSet<SocketAddr> = r
            .unreachable
            .iter()
            .filter(|u| !confirmers.contains(u) && neighbors.contains(u))
            .copied()
            .collect();
        let needed = directory::majority(neighbors.len());
        if confirmers.len() + unreachable.len() < needed {
            return Err(format!(
                "{} of its {} neighbours confirm; a majority needs {needed}",
                confirmers.len(),
                neighbors.len()
            ));
        }
        let reporter_key = self
            .directory
            .key_of(&r.reporter)
            .ok_or_else(|| format!("its reporter {} has no registered key", r.reporter))?;
        reporter_key
            .verify(&evidence::report_bytes(r), signature)
            .map_err(|e| format!("the report's signature by {}: {e}", r.reporter))?;
        for statement in r.confirmers {
            self.check_statement(suspect, incarnation, statement, now)
                .map_err(|e| format!("confirmer {}: {e}", statement.addr))?;
        }
        Ok((confirmers.len(), unreachable))
    }

    /// Whether `statement` counts as its confirmer's word that `suspect`
    /// at `incarnation` is unresponsive: recent enough, and signed with the
    /// key committed for the confirmer's current registration.
    fn check_statement(
        &self,
        suspect: SocketAddr,
        incarnation: Incarnation,
        statement: &Statement,
        now: Timestamp,
    ) -> Result<(), String> {
        let key = self
            .directory
            .key_of(&statement.addr)
            .ok_or("it has no registered key")?;
        evidence::freshness(statement.at, now)?;
        key.verify_statement(suspect, incarnation, statement)
            .map_err(|e| format!("{e} (for {suspect} at incarnation {incarnation})"))
    }

    /// Votes once every probe of a dead check has answered.
    fn finish_dead_check(&mut self, suspect: SocketAddr) {
        let Some(check) = self.dead_checks.get(&suspect) else {
            return;
        };
        let Some(suspect_down) = check.suspect_down else {
            return;
        };
        if !check.probing.is_empty() {
            return;
        }
        let check = self.dead_checks.remove(&suspect).expect("checked above");
        if self.startup_checking.remove(&suspect) {
            self.continue_startup_checks();
        }
        if check.own {
            return self.finish_own_check(suspect, check.incarnation, suspect_down);
        }
        let live = check.neighbors - check.unreachable;
        // With no neighbour left to ask, this seed's own probe decides.
        let needed = if live == 0 {
            0
        } else {
            directory::majority(live)
        };
        let reason = if !suspect_down {
            self.reporters.remove(&suspect);
            match check.turned_away {
                Some(why) => format!(
                    "it turned away this seed's own probe {DEAD_PROBE_ATTEMPTS} times (last: {why}); \
                     a node that turns a probe away is running"
                ),
                None => "it answered this seed's own probe".to_string(),
            }
        } else if check.confirmers < needed {
            format!(
                "{} of its {live} reachable neighbours confirm; a majority needs {needed}",
                check.confirmers
            )
        } else {
            return self.propose_vote(Change::remove(suspect, check.incarnation));
        };
        self.emit(Event::DeadReportRefused {
            peer: suspect,
            from: self.addr,
            reason,
        });
    }

    fn on_probe_result(
        &mut self,
        probe: PendingProbe,
        result: Result<(), QueryError>,
        now: Timestamp,
    ) {
        let PendingProbe {
            purpose,
            target,
            incarnation,
            key,
            attempt,
        } = probe;
        // Only a probe that nothing answered is evidence of death; one
        // turned away (closed unanswered) is not.
        let down = result.as_ref().is_err_and(QueryError::counts_as_down);
        match purpose {
            ProbePurpose::DeadCheck => {
                if let Err(e) = &result {
                    if !down && attempt < DEAD_PROBE_ATTEMPTS {
                        let at = now + DEAD_PROBE_RETRIES[attempt as usize - 1];
                        let retry = PendingProbe {
                            attempt: attempt + 1,
                            ..probe
                        };
                        self.outputs.push_back(Output::Timer {
                            timer: SeedTimer::RetryProbe(retry),
                            at,
                        });
                        return;
                    }
                    if let (false, Some(check)) = (down, self.dead_checks.get_mut(&target)) {
                        check.turned_away = Some(e.to_string());
                    }
                }
                if down {
                    self.failed_probes.insert(target, incarnation);
                } else {
                    self.failed_probes.remove(&target);
                }
                if let Some(check) = self.dead_checks.get_mut(&target) {
                    check.suspect_down = Some(down);
                }
                self.finish_dead_check(target);
            }
            ProbePurpose::Unreachable { suspect } => {
                if let Some(check) = self.dead_checks.get_mut(&suspect) {
                    if check.probing.remove(&target) && down {
                        check.unreachable += 1;
                    }
                }
                self.finish_dead_check(suspect);
            }
            ProbePurpose::Register => match (result.map_err(|e| e.to_string()), key) {
                (Ok(()), Some(key)) => {
                    self.propose_vote(Change::add(target, incarnation, key));
                }
                (Ok(()), None) => {}
                (Err(reason), _) => {
                    // Only the life that was probed stops waiting.
                    if self.awaiting_ack.get(&target).map(|(i, _)| *i) == Some(incarnation) {
                        self.awaiting_ack.remove(&target);
                    }
                    self.emit(Event::ProbeFailed {
                        peer: target,
                        reason,
                    });
                }
            },
        }
    }

    /// Logs the refusal of `peer`'s registration (`register_refused`) and,
    /// if `close`, closes the peer's connection, which is how a refused
    /// peer hears of it. It asks again later, and is refused the same way
    /// while the cause lasts.
    fn refuse(&mut self, peer: SocketAddr, reason: &Refusal, close: bool) {
        self.emit(Event::RegisterRefused {
            peer,
            reason: reason.to_string(),
        });
        if close {
            self.outputs.push_back(Output::Close(peer));
        }
    }

    /// An Add that reached its majority was refused when applied. Every
    /// seed logs it; a seed the peer asked, waiting to acknowledge that
    /// very registration, refuses the peer instead of leaving it waiting.
    fn refuse_committed(&mut self, change: &Change, reason: &Refusal) {
        let peer = change.peer;
        let waiting = self.awaiting_ack.get(&peer).copied();
        let asked = waiting.is_some_and(|(i, k)| i == change.incarnation && change.key == Some(k));
        if asked {
            self.awaiting_ack.remove(&peer);
        }
        self.refuse(peer, reason, asked);
    }

    /// Acknowledges every waiting registration that is now committed.
    fn ack_committed(&mut self) {
        let waiting: Vec<SocketAddr> = self.awaiting_ack.keys().copied().collect();
        for peer in waiting {
            self.ack_if_committed(peer);
        }
    }

    fn ack_if_committed(&mut self, peer: SocketAddr) {
        let Some((incarnation, key)) = self.awaiting_ack.get(&peer) else {
            return;
        };
        if self.directory.incarnation_of(&peer) == Some(*incarnation)
            && self.directory.key_of(&peer).is_none_or(|k| k == *key)
        {
            self.awaiting_ack.remove(&peer);
            self.send(peer, Message::RegisterAck {});
        }
    }

    /// Tells the removed peer's former neighbours and those that reported
    /// it, each with the replacement link the committed topology calls
    /// for, and the peer itself if it is still connected, so that it can
    /// rejoin (R16).
    fn announce_removal(
        &mut self,
        peer: SocketAddr,
        incarnation: Incarnation,
        former: &BTreeSet<SocketAddr>,
    ) {
        let mut told = former.clone();
        told.extend(self.reporters.remove(&peer).unwrap_or_default());
        let plan = self.directory.repair_links(&told, incarnation);
        // Peers of pieces cut off earlier are told too, to relink.
        told.extend(plan.keys().copied());
        for neighbor in &told {
            let confirmed = Message::DeadConfirmed {
                peer,
                incarnation,
                replacement: plan.get(neighbor).copied(),
            };
            self.send(*neighbor, confirmed);
        }
        if self.connected.contains(&peer) {
            let confirmed = Message::DeadConfirmed {
                peer,
                incarnation,
                replacement: None,
            };
            self.send(peer, confirmed);
        }
        for neighbor in former {
            self.watch(*neighbor, true);
        }
    }

    /// Its committed neighbours that can still report it: those this seed
    /// has not itself found dead, and that have not dropped the link by
    /// their own latest report. A link stays in the topology while either
    /// end reports it, so a dead peer's last report keeps naming a
    /// neighbour that has dropped the link since (and may have given up
    /// its suspicion, never to report it), or that has started a new life
    /// and reported its own links without it. A neighbour that has not
    /// reported in its current life yet (a joiner) counts as watching
    /// until it does.
    fn watchers(&self, peer: &SocketAddr) -> usize {
        self.directory
            .neighbors_of(peer)
            .iter()
            .filter(|n| !self.failed_probes.contains_key(n))
            .filter(|n| {
                self.directory
                    .reported_links(n)
                    .is_none_or(|links| links.contains(peer))
            })
            .count()
    }

    /// Checks again, for a vote, each peer this seed found dead and has
    /// not voted to remove, once nobody watches it any more: the last
    /// neighbour that held its link reported it gone, perhaps as a new
    /// life. Its check found it watched, and nothing else would look at
    /// it again.
    fn recheck_found_dead(&mut self) {
        let due: Vec<SocketAddr> = self
            .failed_probes
            .iter()
            .filter(|(p, at)| {
                self.voted_remove.get(p) != Some(at)
                    && self.directory.incarnation_of(p) == Some(**at)
            })
            .map(|(p, _)| *p)
            .filter(|p| self.watchers(p) == 0)
            .collect();
        for peer in due {
            self.watch(peer, true);
        }
    }

    /// A peer could not dial `peer` (DIAL_FAILED). Not evidence, but a
    /// ghost's only symptom when no neighbour is left to report it: this
    /// seed checks it as its own (see [`SeedCore::watch`]), within the
    /// reporter's budget. Only a failed probe of this seed's, with no
    /// watcher left, earns a vote, and a removal needs a majority of such
    /// votes, so a false report removes nobody that answers the seeds.
    fn on_dial_failed(&mut self, from: SocketAddr, peer: SocketAddr, now: Timestamp) {
        let checking = self.directory.contains(&from)
            && from != peer
            && self.directory.contains(&peer)
            && !self.dead_checks.contains_key(&peer)
            && self.take_dial_budget(from, now);
        self.emit(Event::DialFailedReceived {
            peer,
            from,
            checking,
        });
        if checking {
            self.watch(peer, false);
        }
    }

    /// Takes one check from `reporter`'s budget, if any is left.
    fn take_dial_budget(&mut self, reporter: SocketAddr, now: Timestamp) -> bool {
        if self.dial_budgets.len() >= DIAL_BUDGETS_KEPT {
            self.dial_budgets
                .retain(|_, (opened, _)| now < *opened + DIAL_CHECK_WINDOW);
            if self.dial_budgets.len() >= DIAL_BUDGETS_KEPT {
                return false;
            }
        }
        let (opened, used) = self.dial_budgets.entry(reporter).or_insert((now, 0));
        if now >= *opened + DIAL_CHECK_WINDOW {
            (*opened, *used) = (now, 0);
        }
        if *used >= DIAL_CHECKS_PER_REPORTER {
            return false;
        }
        *used += 1;
        true
    }

    /// Checks, when this seed first learns of a leader after it started,
    /// every peer its directory then holds (a restarted seed's log): peers
    /// that died while no seed ran would otherwise stay registered with
    /// nobody to report them, a lone peer or a group whose neighbours died
    /// with it. Each gets this seed's own check ([`SeedCore::watch`]),
    /// [`STARTUP_CHECKS_AT_ONCE`] at a time; the usual rule decides the
    /// vote. A new cluster's directory is empty then: nothing to check.
    fn check_registered_peers(&mut self) {
        if std::mem::replace(&mut self.startup_checked, true) {
            return;
        }
        self.startup_queue = self.directory.peers().map(|(p, _)| p).collect();
        if !self.startup_queue.is_empty() {
            self.emit(Event::RegisteredPeersChecked {
                peers: self.startup_queue.len(),
            });
        }
        self.continue_startup_checks();
    }

    fn continue_startup_checks(&mut self) {
        while self.startup_checking.len() < STARTUP_CHECKS_AT_ONCE {
            let Some(peer) = self.startup_queue.pop_front() else {
                return;
            };
            if !self.dead_checks.contains_key(&peer) {
                self.watch(peer, false);
                if self.dead_checks.contains_key(&peer) {
                    self.startup_checking.insert(peer);
                }
            }
        }
    }

    /// This seed's own check of a registered peer, for the peers nobody
    /// can report: those with no neighbour in the committed topology, or
    /// whose neighbours this seed has itself found dead (two peers that die
    /// together, each the other's last neighbour). It runs when this
    /// seed's connection to the peer drops (`only_unwatched` false: the
    /// result may matter to a neighbour later), and for a removed peer's
    /// former neighbours. The seed probes the peer, and votes Remove only
    /// if the probe fails and nobody is left to report it; a majority of
    /// such votes removes it.
    fn watch(&mut self, peer: SocketAddr, only_unwatched: bool) {
        let Some(incarnation) = self.directory.incarnation_of(&peer) else {
            return;
        };
        if self.dead_checks.contains_key(&peer) || (only_unwatched && self.watchers(&peer) > 0) {
            return;
        }
        self.dead_checks.insert(
            peer,
            DeadCheck {
                incarnation,
                confirmers: 0,
                neighbors: 0,
                probing: BTreeSet::new(),
                unreachable: 0,
                suspect_down: None,
                turned_away: None,
                own: true,
            },
        );
        let key = self.directory.key_of(&peer);
        self.probe(ProbePurpose::DeadCheck, peer, incarnation, key);
    }

    fn finish_own_check(&mut self, peer: SocketAddr, incarnation: Incarnation, down: bool) {
        if !down {
            return;
        }
        if self.watchers(&peer) == 0 {
            self.propose_vote(Change::remove(peer, incarnation));
        }
        // It may have been the last watcher of a neighbour found dead and
        // not yet voted out.
        let found_dead: Vec<SocketAddr> = self
            .directory
            .neighbors_of(&peer)
            .into_iter()
            .filter(|n| {
                self.failed_probes
                    .get(n)
                    .is_some_and(|at| self.voted_remove.get(n) != Some(at))
            })
            .collect();
        for neighbor in found_dead {
            self.watch(neighbor, true);
        }
    }

    /// Proposes again each Remove vote of this seed that is not in the log
    /// while its peer is still registered at that incarnation. A proposal
    /// that finds no leader within its time is dropped; that is harmless
    /// for a registration, which the peer retries, but the reports behind a
    /// removal stop after a few rounds. So a seed left without the others,
    /// as in a partition that cut off a majority of the seeds, would lose
    /// the vote it had checked, and the dead peer would stay registered
    /// once the partition heals. The vote stands on this seed's own checks,
    /// as when it was first proposed; a removal still needs a majority.
    fn repropose_lost_votes(&mut self) {
        let votes = std::mem::take(&mut self.voted_remove);
        for (peer, incarnation) in votes {
            if self.directory.incarnation_of(&peer) != Some(incarnation) {
                continue; // removed meanwhile, or a new life: forgotten.
            }
            let change = Change::remove(peer, incarnation);
            if self.directory.has_pending_vote(&change, &self.addr) {
                self.voted_remove.insert(peer, incarnation);
            } else if self.leaves.get(&peer) == Some(&incarnation) {
                self.propose_leave(peer, incarnation);
            } else {
                self.propose_vote(change);
            }
        }
    }

    fn propose_init_if_leading(&mut self, now: Timestamp) {
        if self.leader == Some(self.addr) && !self.directory.is_initialised() {
            let init = Command::Init {
                seeds: self.seeds.clone(),
                max_peers_per_ip: self.max_peers_per_ip,
            };
            self.outputs.push_back(Output::Propose(init));
            if !self.init_retry_armed {
                self.init_retry_armed = true;
                self.outputs.push_back(Output::Timer {
                    timer: SeedTimer::InitRetry,
                    at: now + INIT_RETRY,
                });
            }
        }
    }
}

impl Core for SeedCore {
    type Timer = SeedTimer;

    fn role(&self) -> Role {
        Role::Seed
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn start(&mut self, _now: Timestamp) {
        if let Some(event) = self.standing.take() {
            self.emit(event);
        }
    }

    /// A seed of the config, or of the committed membership (a seed
    /// added while this one runs).
    fn is_seed(&self, addr: &SocketAddr) -> bool {
        self.seeds.contains(addr) || self.directory.is_member(addr)
    }

    fn handle_message(&mut self, from: SocketAddr, msg: Message, now: Timestamp) {
        match msg {
            Message::RegisterRequest { incarnation, key } => {
                self.on_register_request(from, incarnation, key)
            }
            report @ Message::DeadReport { .. } => self.on_dead_report(from, &report, now),
            Message::DialFailed { peer } => self.on_dial_failed(from, peer, now),
            Message::Leave {
                peer,
                incarnation,
                signature,
            } => self.on_leave(from, peer, incarnation, &signature),
            Message::PeerListRequest {} => {
                let peers = self
                    .directory
                    .peer_list_sample(PEER_LIST_LIMIT, &mut self.rng);
                self.emit(Event::PeerListServed {
                    to: from,
                    peers: peers.len(),
                });
                self.send(
                    from,
                    Message::PeerList {
                        peers,
                        total: self.directory.len() as u64,
                        you_registered: self.directory.contains(&from),
                        seed_keys: self.directory.seed_keys().collect(),
                    },
                );
            }
            // A seed still catching up may not know the peer yet; its next
            // report will do.
            Message::LinkReport {
                neighbors,
                incarnation,
                seq,
            } if self.directory.contains(&from) => {
                self.outputs.push_back(Output::Propose(Command::Links {
                    peer: from,
                    neighbors,
                    incarnation,
                    seq,
                }));
            }
            Message::LinkReport { .. } => {}
            other => self.reject(from, format!("unexpected {} for a seed", other.kind())),
        }
    }

    fn handle_link_up(&mut self, remote: SocketAddr, _role: Role, _now: Timestamp) {
        self.connected.insert(remote);
    }

    fn handle_link_down(&mut self, remote: SocketAddr, _now: Timestamp) {
        self.connected.remove(&remote);
        // A peer that left closes its connections as it goes.
        if !self.leaves.contains_key(&remote) {
            self.watch(remote, false);
        }
    }

    fn handle_timer(&mut self, timer: SeedTimer, now: Timestamp) {
        match timer {
            SeedTimer::InitRetry => {
                self.init_retry_armed = false;
                self.propose_init_if_leading(now);
            }
            SeedTimer::KeyRetry => {
                self.key_retry_armed = false;
                self.pin_own_key(now);
            }
            // A check that ended meanwhile (a commit, a later report) needs
            // no more tries.
            SeedTimer::RetryProbe(probe) => {
                if self
                    .dead_checks
                    .get(&probe.target)
                    .is_some_and(|c| c.incarnation == probe.incarnation && c.suspect_down.is_none())
                {
                    self.send_probe(probe);
                }
            }
        }
    }

    fn handle_query_result(
        &mut self,
        to: SocketAddr,
        query: Message,
        result: Result<Message, QueryError>,
        now: Timestamp,
    ) {
        let Message::Probe { nonce, .. } = query else {
            return;
        };
        let Some(probe) = self.probes.remove(&nonce) else {
            return;
        };
        if let (ProbePurpose::Register, Some(key)) = (probe.purpose, probe.key) {
            self.probing_registrations
                .remove(&(probe.target, probe.incarnation, key));
        }
        debug_assert_eq!(probe.target, to);
        let result = result
            .and_then(|reply| probe_verdict(&probe, nonce, reply).map_err(QueryError::BadAnswer));
        self.on_probe_result(probe, result, now);
    }

    fn handle_applied(&mut self, command: &Command, outcome: &Outcome, now: Timestamp) {
        let mine = self.apply_committed(command);
        debug_assert_eq!(&mine, outcome, "replica diverged on {command:?}");
        if matches!(command, Command::Init { .. } | Command::Seeds { .. }) {
            self.pin_own_key(now);
        }
    }

    /// The key pinned for seed `addr` in this seed's committed directory:
    /// a node claiming `addr` that proves another is refused.
    fn pinned_key(&self, addr: &SocketAddr) -> Option<PublicKey> {
        self.directory.seed_key(addr)
    }

    fn handle_query(&mut self, token: u64, query: Message, _now: Timestamp) {
        let msg = match query {
            Message::RekeyRequest {
                seed,
                old,
                new,
                signature,
                ..
            } => {
                let (accepted, detail) = match self.on_rekey_request(seed, old, new, &signature) {
                    Ok(detail) => (true, detail),
                    Err(detail) => (false, detail),
                };
                Message::RekeyReply { accepted, detail }
            }
            Message::SeedsRequest {
                add,
                remove,
                signature,
                ..
            } => {
                let (accepted, detail) = match self.on_seeds_request(add, remove, &signature) {
                    Ok(detail) => (true, detail),
                    Err(detail) => (false, detail),
                };
                Message::SeedsReply { accepted, detail }
            }
            _ => return,
        };
        self.outputs.push_back(Output::Reply { token, msg });
    }

    fn handle_snapshot(&mut self, directory: Directory, now: Timestamp) {
        let formed_now = !self.directory.is_initialised() && directory.is_initialised();
        self.directory = Arc::new(directory);
        // A seed restarted from its data dir, or caught up by snapshot, never
        // applies `Init` itself; it still says that the cluster is formed.
        if formed_now {
            let seeds = self.directory.seeds().collect();
            self.emit(Event::ClusterFormed { seeds });
        }
        self.compare_cap();
        self.ack_committed();
        self.pin_own_key(now);
    }

    fn handle_leader(&mut self, leader: Option<SocketAddr>, now: Timestamp) {
        if leader != self.leader {
            self.leader = leader;
            self.emit(Event::LeaderChanged { leader });
            self.propose_init_if_leading(now);
            if leader.is_some() {
                self.repropose_lost_votes();
                self.pin_own_key(now);
                self.check_registered_peers();
            }
        }
    }

    fn poll_output(&mut self) -> Option<Output<SeedTimer>> {
        self.outputs.pop_front()
    }
}

/// Whether a PROBE_REPLY shows the probed peer alive at its incarnation.
fn probe_verdict(probe: &PendingProbe, nonce: u64, reply: Message) -> Result<(), String> {
    let Message::ProbeReply {
        nonce: n,
        role,
        listen,
        incarnation,
        key,
    } = reply
    else {
        return Err(format!("answered {} instead of PROBE_REPLY", reply.kind()));
    };
    if n != nonce {
        Err("the reply carries another nonce".to_string())
    } else if role != Role::Peer {
        Err(format!("a {role} listens there, not a peer"))
    } else if listen != probe.target {
        Err(format!("the node there is {listen}"))
    } else if incarnation != probe.incarnation {
        Err(format!(
            "the peer there is incarnation {incarnation}, not {}",
            probe.incarnation
        ))
    } else if probe.key.is_some_and(|want| key != Some(want)) {
        Err(match key {
            Some(key) => format!("the peer there has key {key}, not the one registering"),
            None => "the peer there states no key".to_string(),
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
