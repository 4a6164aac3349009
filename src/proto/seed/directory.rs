//! The membership directory as a replicated state machine (R1 to R3).
//!
//! Every membership change is a sequence of [`Command::Vote`] entries in the
//! seeds' shared log. A change takes effect the moment floor(n/2)+1 distinct
//! seeds have voted for it, where n is the number of seeds named by the
//! [`Command::Init`] entry. [`Directory::apply`] looks at nothing but the
//! command and the state, so every seed that applies the same log reaches the
//! same directory, vote for vote: the outcome is decided by the log, never
//! by a seed's local view.
//!
//! The `Init` entry also fixes the cap on peers registered from one IP
//! address, so that apply can enforce it: an Add whose commit would put one
//! peer too many on an IP address does not register it ([`Outcome::Refused`]).
//! Checked against the state at apply time, in log order, the cap holds
//! however many registrations from one address race each other; a check
//! before the vote, against a seed's current view, cannot see the others.
//!
//! Seeds' identity keys are pinned in the log too. A seed that finds its
//! own key missing proposes [`Command::SeedKey`]; the first committed key
//! for a seed's address is pinned, and a later different one is ignored
//! ([`Ignored::KeyAlreadyPinned`]), so a process that takes a down seed's
//! port cannot re-pin it by proposing its own key. Every seed then refuses
//! a connection that claims a seed but proves another key than the pinned
//! one. A pinned key changes only by [`Command::Rekey`] votes of a majority
//! of seeds, each cast on its operator's signed order (`gossipnet seeds
//! rekey`), as for a seed whose data directory was lost.
//!
//! Peers are identified by listen address and incarnation. A peer restarted
//! on the same address registers again with a higher incarnation, and a vote
//! about an older incarnation is stale. A removed incarnation is remembered,
//! so a late Add vote cannot bring it back.

use std::{
    collections::{btree_map::Entry, BTreeMap, BTreeSet},
    fmt,
    net::{IpAddr, SocketAddr},
};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use crate::proto::{
    message::{PeerEntry, PublicKey},
    sorted::{SortedMap, SortedSet},
    topology,
};

/// Distinguishes the lives of a peer at one address; higher is newer.
pub type Incarnation = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Add,
    Remove,
}

/// A membership change that seeds vote on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Change {
    pub kind: ChangeKind,
    pub peer: SocketAddr,
    pub incarnation: Incarnation,
    /// An addition's public key, which the peer's signed statements must
    /// verify against. Part of what the seeds vote on: votes for one life
    /// with different keys are different changes. None for a removal (and
    /// in logs written before keys existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PublicKey>,
}

impl Change {
    /// Removing `peer` at `incarnation`.
    pub fn remove(peer: SocketAddr, incarnation: Incarnation) -> Change {
        Change {
            kind: ChangeKind::Remove,
            peer,
            incarnation,
            key: None,
        }
    }

    /// Adding `peer` at `incarnation` with `key`.
    pub fn add(peer: SocketAddr, incarnation: Incarnation, key: PublicKey) -> Change {
        Change {
            kind: ChangeKind::Add,
            peer,
            incarnation,
            key: Some(key),
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ChangeKind::Add => "add",
            ChangeKind::Remove => "remove",
        };
        write!(f, "{kind} {} (incarnation {})", self.peer, self.incarnation)
    }
}

/// One entry of the seeds' log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Names the seeds, once, when the cluster first forms. Until it is
    /// applied, no vote counts. `max_peers_per_ip` is the cap on peers
    /// registered from one IP address that every seed enforces from then
    /// on, whatever its own setting; absent (no cap) in logs written before
    /// the cap was replicated.
    Init {
        seeds: Vec<SocketAddr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_peers_per_ip: Option<u32>,
    },
    /// `seed` votes for `change`, having checked it.
    Vote { change: Change, seed: SocketAddr },
    /// `seed` votes to remove `peer` at `incarnation`, having checked the
    /// peer's own signed LEAVE: a vote for [`Change::remove`] like any
    /// other, counted with the others for that change, which also marks
    /// the removal, once committed, as the peer's leave rather than a
    /// failure ([`Directory::left_at`]).
    Leave {
        peer: SocketAddr,
        incarnation: Incarnation,
        seed: SocketAddr,
    },
    /// A registered peer's complete neighbour set, as it reported it: the
    /// `seq`th report of its life `incarnation`. Applied only if it is
    /// newer than the report recorded for that life, since proposals
    /// through different seeds, or retried, can commit out of order. `seq`
    /// 0 (entries written before reports were numbered) applies as it
    /// comes.
    Links {
        peer: SocketAddr,
        neighbors: Vec<SocketAddr>,
        #[serde(default)]
        incarnation: Incarnation,
        #[serde(default)]
        seq: u64,
    },
    /// `seed`'s identity key, proposed by that seed itself once the
    /// cluster has formed. The first one committed for a seed is pinned;
    /// a later different one is ignored.
    SeedKey { seed: SocketAddr, key: PublicKey },
    /// `voter` votes to replace `seed`'s pinned key `old` with `new`, on
    /// its operator's signed order. Takes effect when a majority of seeds
    /// have voted for the same replacement, and only while `old` is still
    /// the pinned key.
    Rekey {
        seed: SocketAddr,
        old: PublicKey,
        new: PublicKey,
        voter: SocketAddr,
    },
    /// Raft's membership, as its own log entry brings it in: never
    /// proposed, but made by the store from each membership entry when it
    /// applies it, so that the directory's seed set follows openraft's in
    /// log order. `voters` holds one set, or two while a change is in
    /// joint consensus (old and new); `learners` receive the log without
    /// voting. From then on a majority means a majority of every set.
    Seeds {
        voters: Vec<Vec<SocketAddr>>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        learners: Vec<SocketAddr>,
    },
    /// `voter` votes for changing the seeds, on its operator's signed
    /// order (`gossipnet seeds add|remove|replace`): adding `add`,
    /// removing `remove`, or both at once (a replacement). Approved when a
    /// majority of the seeds have voted for the same change; the leader
    /// then carries it out through Raft's membership change.
    SeedChange {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        add: Option<SocketAddr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remove: Option<SocketAddr>,
        voter: SocketAddr,
    },
    /// `seed`, a voting seed, lost its log and asks to be taken out of the
    /// voters and added back as a learner: the leader's record of what it
    /// holds is wrong, and its vote would count without the entries it
    /// lost. Proposed by that seed itself (it proves its pinned key).
    SeedRejoin { seed: SocketAddr },
}

/// A change of the seed set that seeds vote on: `add`, `remove`, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeedChange {
    pub add: Option<SocketAddr>,
    pub remove: Option<SocketAddr>,
}

impl SeedChange {
    /// The voters once the change is made to `voters`.
    pub fn target(&self, voters: &BTreeSet<SocketAddr>) -> BTreeSet<SocketAddr> {
        let mut target = voters.clone();
        if let Some(remove) = self.remove {
            target.remove(&remove);
        }
        if let Some(add) = self.add {
            target.insert(add);
        }
        target
    }
}

impl fmt::Display for SeedChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.add, self.remove) {
            (Some(add), Some(remove)) => write!(f, "replace {remove} with {add}"),
            (Some(add), None) => write!(f, "add {add}"),
            (None, Some(remove)) => write!(f, "remove {remove}"),
            (None, None) => write!(f, "no change"),
        }
    }
}

impl Command {
    /// The change a Vote or Leave entry votes for, and the seed voting.
    pub fn vote(&self) -> Option<(Change, SocketAddr)> {
        match self {
            Command::Vote { change, seed } => Some((*change, *seed)),
            Command::Leave {
                peer,
                incarnation,
                seed,
            } => Some((Change::remove(*peer, *incarnation), *seed)),
            Command::Init { .. }
            | Command::Links { .. }
            | Command::SeedKey { .. }
            | Command::Rekey { .. }
            | Command::Seeds { .. }
            | Command::SeedChange { .. }
            | Command::SeedRejoin { .. } => None,
        }
    }
}

/// Why a command changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ignored {
    /// The voter is not one of the seeds.
    NotASeed,
    /// This seed already voted for this change.
    DuplicateVote,
    /// The change no longer applies: the peer is registered at this or a
    /// newer incarnation, was removed at it, or is not registered at the
    /// incarnation a removal names.
    Stale,
    /// Links reported by a peer that is not registered.
    UnknownPeer,
    /// `Init` after the seeds were already named.
    AlreadyInitialised,
    /// Links equal to those already recorded: a peer reports to each of its
    /// seeds, so every report arrives more than once. Also a seed key equal
    /// to the one pinned.
    Unchanged,
    /// Links older than those recorded: a numbered report that committed
    /// after a newer one of the same life, or one from another life of the
    /// peer than the registered one.
    OutOfOrder,
    /// A `SeedKey` for a seed whose key is already pinned, with another
    /// key: only a majority's `Rekey` replaces a pinned key.
    KeyAlreadyPinned,
    /// A seed change that is already made, adds a seed that is one, removes
    /// one that is not, or would leave no seed.
    SeedChangeMoot,
}

/// Why a change that reached its majority did not take effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "refusal", rename_all = "snake_case")]
pub enum Refusal {
    /// Registering the peer would put more than `cap` peers on `ip`:
    /// `registered` other addresses at that IP are registered already.
    OverIpCap {
        ip: IpAddr,
        registered: usize,
        cap: u32,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::OverIpCap {
                ip,
                registered,
                cap,
            } => write!(
                f,
                "{registered} peers are already registered from {ip}, the cap per IP address (max_peers_per_ip = {cap})"
            ),
        }
    }
}

/// What applying one command did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Entries that carry no command (Raft's own) do nothing.
    #[default]
    Nothing,
    Initialised,
    /// The vote counts; the change needs `needed` votes in all.
    VoteCounted {
        votes: usize,
        needed: usize,
    },
    /// This vote completed a majority: the change is in effect.
    Committed {
        voters: Vec<SocketAddr>,
        seeds: usize,
    },
    /// This vote completed a majority, but the change does not take
    /// effect: the peer is not registered and the votes are dropped.
    Refused {
        voters: Vec<SocketAddr>,
        reason: Refusal,
    },
    LinksRecorded,
    /// The seed's first key is pinned.
    SeedKeyPinned,
    /// This vote completed a majority: the seed's pinned key is replaced.
    SeedRekeyed {
        voters: Vec<SocketAddr>,
    },
    /// This vote completed a majority: the leader now makes the change.
    SeedChangeApproved {
        voters: Vec<SocketAddr>,
    },
    /// The seed that lost its log is to be removed and added back.
    SeedRejoinRequested,
    /// The seed set changed (a Raft membership entry was applied).
    SeedsChanged,
    Ignored {
        reason: Ignored,
    },
}

/// A replacement of a seed's pinned key that seeds vote on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Rekey {
    seed: SocketAddr,
    old: PublicKey,
    new: PublicKey,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(from = "Stored")]
pub struct Directory {
    state: Stored,
    /// Derived from the stored state, so never stored: a snapshot
    /// rebuilds it.
    index: LinkIndex,
}

/// What the log builds and a snapshot holds: the directory without its
/// derived index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Stored {
    seeds: BTreeSet<SocketAddr>,
    /// The committed cap on peers registered from one IP address, from
    /// `Init`. Absent (no cap) from snapshots written before it was
    /// replicated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_peers_per_ip: Option<u32>,
    /// Registered peers and their incarnation.
    peers: BTreeMap<SocketAddr, Incarnation>,
    /// The newest incarnation removed at each address.
    removed: BTreeMap<SocketAddr, Incarnation>,
    /// Votes for changes not yet in effect.
    #[serde(with = "pairs")]
    votes: BTreeMap<Change, BTreeSet<SocketAddr>>,
    /// Each registered peer's own report of its neighbours.
    links: BTreeMap<SocketAddr, SortedSet<SocketAddr>>,
    /// The number (`seq`) of the newest link report applied for each
    /// registered peer's current life; an older one is left out. Forgotten
    /// with the links when a life ends. Absent from snapshots written
    /// before reports were numbered.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    link_seqs: BTreeMap<SocketAddr, u64>,
    /// Each registered peer's public key, committed with its registration.
    /// Absent from snapshots written before keys existed.
    #[serde(default)]
    keys: BTreeMap<SocketAddr, PublicKey>,
    /// Each seed's pinned identity key. Absent from snapshots written
    /// before seed keys were pinned.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    seed_keys: BTreeMap<SocketAddr, PublicKey>,
    /// Votes for replacing a seed's pinned key, not yet at a majority.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", with = "pairs")]
    rekey_votes: BTreeMap<Rekey, BTreeSet<SocketAddr>>,
    /// Removals still short of their majority that some seed voted for on
    /// the peer's LEAVE.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    leaving: BTreeSet<Change>,
    /// The life that ended by a LEAVE at each address, until the address
    /// registers again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    left: BTreeMap<SocketAddr, Incarnation>,
    /// The voting seeds from Raft's latest membership entry: one set, or
    /// two during a joint-consensus change. Empty until the first
    /// `Seeds` is applied (and in snapshots written before seeds could
    /// change): then the seeds are those of `Init`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    voters: Vec<BTreeSet<SocketAddr>>,
    /// Seeds that receive the log but do not vote yet.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    learners: BTreeSet<SocketAddr>,
    /// Votes for seed changes not yet at a majority.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", with = "pairs")]
    seed_change_votes: BTreeMap<SeedChange, BTreeSet<SocketAddr>>,
    /// Seed changes a majority approved that the membership does not show
    /// yet: the leader's work list.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    approved_seed_changes: BTreeSet<SeedChange>,
    /// Voting seeds that lost their log, for the leader to remove; once
    /// removed, each becomes an approved addition.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    rejoining: BTreeSet<SocketAddr>,
}

impl From<Stored> for Directory {
    fn from(state: Stored) -> Self {
        let mut index = LinkIndex::default();
        for peer in state.peers.keys() {
            index.register(*peer);
        }
        for (peer, links) in &state.links {
            for other in links {
                index.add_report(*peer, *other);
            }
        }
        Directory { state, index }
    }
}

impl Serialize for Directory {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.state.serialize(serializer)
    }
}

/// Two directories are equal when their logs brought them to the same
/// state; the index follows from it, whatever order built it.
impl PartialEq for Directory {
    fn eq(&self, other: &Self) -> bool {
        self.state == other.state
    }
}

impl Eq for Directory {}

/// The topology kept ready for joins, which would otherwise scan the whole
/// directory each time: every join reads degrees and a sample of peers.
#[derive(Debug, Clone, Default)]
struct LinkIndex {
    /// Each address that is registered or touches a report. One record per
    /// address, so that a report costs one lookup at each end. Hashed, not
    /// sorted: it is only ever looked up, never walked, so its order cannot
    /// show, and a lookup among a million addresses is one probe instead
    /// of a tree descent.
    records: FxHashMap<SocketAddr, AddressRecord>,
    /// Registered peers in no particular order, to sample from, each with
    /// its degree: how many of its `touching` are registered.
    roster: Vec<(SocketAddr, u32)>,
}

#[derive(Debug, Clone, Default)]
struct AddressRecord {
    /// The addresses this one reports or that report it, and how many of
    /// the two do (1 or 2).
    touching: SortedMap<SocketAddr, u8>,
    /// Its place in the roster, if registered.
    place: Option<usize>,
}

impl AddressRecord {
    fn is_unused(&self) -> bool {
        self.touching.is_empty() && self.place.is_none()
    }
}

impl LinkIndex {
    fn is_registered(&self, peer: &SocketAddr) -> bool {
        self.place(peer).is_some()
    }

    fn place(&self, peer: &SocketAddr) -> Option<usize> {
        self.records.get(peer).and_then(|r| r.place)
    }

    fn register(&mut self, peer: SocketAddr) {
        // A newer life at a registered address keeps its place.
        if self.is_registered(&peer) {
            return;
        }
        let linked: Vec<usize> = self
            .neighbors(&peer)
            .filter_map(|n| self.place(&n))
            .collect();
        for place in &linked {
            self.roster[*place].1 += 1;
        }
        self.records.entry(peer).or_default().place = Some(self.roster.len());
        self.roster.push((peer, linked.len() as u32));
    }

    fn unregister(&mut self, peer: SocketAddr) {
        let Some(place) = self.records.get_mut(&peer).and_then(|r| r.place.take()) else {
            return;
        };
        self.forget_if_unused(peer);
        self.roster.swap_remove(place);
        if let Some((moved, _)) = self.roster.get(place) {
            if let Some(record) = self.records.get_mut(moved) {
                record.place = Some(place);
            }
        }
        let linked: Vec<usize> = self
            .neighbors(&peer)
            .filter_map(|n| self.place(&n))
            .collect();
        for place in linked {
            self.roster[place].1 -= 1;
        }
    }

    fn forget_if_unused(&mut self, addr: SocketAddr) {
        if self
            .records
            .get(&addr)
            .is_some_and(AddressRecord::is_unused)
        {
            self.records.remove(&addr);
        }
    }

    /// `peer` no longer reports `gone`, and now reports `new`.
    fn update_reports(&mut self, peer: SocketAddr, gone: &[SocketAddr], new: &[SocketAddr]) {
        for g in gone {
            self.drop_report(peer, *g);
        }
        for n in new {
            self.add_report(peer, *n);
        }
    }

    /// `from` reports `to` as its neighbour.
    fn add_report(&mut self, from: SocketAddr, to: SocketAddr) {
        let (new_edge, from_place) = self.raise(from, to);
        let (_, to_place) = self.raise(to, from);
        if let (true, Some(a), Some(b)) = (new_edge, from_place, to_place) {
            self.roster[a].1 += 1;
            self.roster[b].1 += 1;
        }
    }

    /// `from` no longer reports `to`.
    fn drop_report(&mut self, from: SocketAddr, to: SocketAddr) {
        let (gone, from_place) = self.lower(from, to);
        let (_, to_place) = self.lower(to, from);
        if let (true, Some(a), Some(b)) = (gone, from_place, to_place) {
            self.roster[a].1 -= 1;
            self.roster[b].1 -= 1;
        }
    }

    /// Raises the count of `b` in `a`'s record; whether it was 0, and
    /// `a`'s place.
    fn raise(&mut self, a: SocketAddr, b: SocketAddr) -> (bool, Option<usize>) {
        let record = self.records.entry(a).or_default();
        let count = record.touching.get_or_insert_default(b);
        *count += 1;
        (*count == 1, record.place)
    }

    /// Lowers the count of `b` in `a`'s record; whether none is left, and
    /// `a`'s place.
    fn lower(&mut self, a: SocketAddr, b: SocketAddr) -> (bool, Option<usize>) {
        let Some(record) = self.records.get_mut(&a) else {
            return (false, None);
        };
        let place = record.place;
        let Some(count) = record.touching.get_mut(&b) else {
            return (false, place);
        };
        *count -= 1;
        if *count > 0 {
            return (false, place);
        }
        record.touching.remove(&b);
        self.forget_if_unused(a);
        (true, place)
    }

    fn degree(&self, peer: &SocketAddr) -> u32 {
        self.place(peer).map_or(0, |i| self.roster[i].1)
    }

    fn neighbors(&self, peer: &SocketAddr) -> impl Iterator<Item = SocketAddr> + '_ {
        self.records
            .get(peer)
            .into_iter()
            .flat_map(|r| r.touching.keys())
            .filter(|n| self.is_registered(n))
            .copied()
    }
}

/// Floor(n/2)+1: the smallest majority of `n` seeds.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

impl Directory {
    /// The voting seeds: those of the latest membership entry (both sets
    /// during a joint change), else those `Init` named.
    pub fn seeds(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let sets = self.voter_sets();
        let all: BTreeSet<SocketAddr> = sets.iter().flat_map(|s| s.iter().copied()).collect();
        all.into_iter()
    }

    /// The sets of voting seeds a majority is counted in: one, or two
    /// while a change is in joint consensus.
    pub fn voter_sets(&self) -> Vec<&BTreeSet<SocketAddr>> {
        if self.state.voters.is_empty() {
            vec![&self.state.seeds]
        } else {
            self.state.voters.iter().collect()
        }
    }

    /// Whether `addr` is a voting seed.
    pub fn is_voter(&self, addr: &SocketAddr) -> bool {
        self.voter_sets().iter().any(|s| s.contains(addr))
    }

    /// Seeds that receive the log without voting yet.
    pub fn learners(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.state.learners.iter().copied()
    }

    /// Whether `addr` is a seed of the cluster: a voter or a learner.
    pub fn is_member(&self, addr: &SocketAddr) -> bool {
        self.is_voter(addr) || self.state.learners.contains(addr)
    }

    /// Seed changes a majority approved that the membership does not
    /// show yet.
    pub fn approved_seed_changes(&self) -> impl Iterator<Item = SeedChange> + '_ {
        self.state.approved_seed_changes.iter().copied()
    }

    /// Voting seeds that lost their log, still to be removed and added
    /// back.
    pub fn rejoining_seeds(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.state.rejoining.iter().copied()
    }

    /// Seeds whose votes for `change` are in the log, still waiting for
    /// more.
    pub fn seed_change_voters(&self, change: &SeedChange) -> impl Iterator<Item = SocketAddr> + '_ {
        self.state
            .seed_change_votes
            .get(change)
            .into_iter()
            .flatten()
            .copied()
    }

    pub fn is_initialised(&self) -> bool {
        !self.state.seeds.is_empty()
    }

    /// The committed cap on peers registered from one IP address; `None`:
    /// no cap.
    pub fn max_peers_per_ip(&self) -> Option<u32> {
        self.state.max_peers_per_ip
    }

    /// Registered peers whose address has `ip`, in address order. Costs
    /// the peers found, not the directory: addresses sort by IP first.
    pub fn peers_at_ip(&self, ip: IpAddr) -> impl Iterator<Item = SocketAddr> + '_ {
        self.state
            .peers
            .range(SocketAddr::new(ip, 0)..)
            .map(|(a, _)| *a)
            .take_while(move |a| a.ip() == ip)
    }

    /// Why registering `peer` now would break the committed cap on peers
    /// per IP address, if it would. The peer's own address does not
    /// count: a new life of a registered peer takes its place.
    pub fn ip_cap_refusal(&self, peer: SocketAddr) -> Option<Refusal> {
        let cap = self.state.max_peers_per_ip?;
        let ip = peer.ip();
        let registered = self.peers_at_ip(ip).filter(|a| *a != peer).count();
        (registered >= cap as usize).then_some(Refusal::OverIpCap {
            ip,
            registered,
            cap,
        })
    }

    /// Votes a change needs: a majority of the seeds.
    /// With two sets (a joint change), the larger of their majorities;
    /// a change then needs a majority of each.
    pub fn quorum(&self) -> usize {
        self.voter_sets()
            .iter()
            .map(|s| majority(s.len()))
            .max()
            .unwrap_or(1)
    }

    pub fn incarnation_of(&self, peer: &SocketAddr) -> Option<Incarnation> {
        self.state.peers.get(peer).copied()
    }

    /// The public key committed with `peer`'s current registration.
    pub fn key_of(&self, peer: &SocketAddr) -> Option<PublicKey> {
        self.state.keys.get(peer).copied()
    }

    /// The identity key pinned for seed `seed`, once committed.
    pub fn seed_key(&self, seed: &SocketAddr) -> Option<PublicKey> {
        self.state.seed_keys.get(seed).copied()
    }

    /// Every pinned seed key, by seed address.
    pub fn seed_keys(&self) -> impl Iterator<Item = (SocketAddr, PublicKey)> + '_ {
        self.state.seed_keys.iter().map(|(s, k)| (*s, *k))
    }

    /// Seeds whose votes to replace `seed`'s key `old` with `new` are in
    /// the log, still waiting for more.
    pub fn rekey_voters(
        &self,
        seed: SocketAddr,
        old: PublicKey,
        new: PublicKey,
    ) -> impl Iterator<Item = SocketAddr> + '_ {
        self.state
            .rekey_votes
            .get(&Rekey { seed, old, new })
            .into_iter()
            .flatten()
            .copied()
    }

    /// Whether the life `incarnation` of `peer` (or a later one) has been
    /// removed.
    pub fn was_removed(&self, peer: &SocketAddr, incarnation: Incarnation) -> bool {
        self.state
            .removed
            .get(peer)
            .is_some_and(|r| *r >= incarnation)
    }

    /// The life of `peer` whose removal was its own LEAVE, if its last
    /// removal was one and it has not registered again since.
    pub fn left_at(&self, peer: &SocketAddr) -> Option<Incarnation> {
        self.state.left.get(peer).copied()
    }

    /// Whether `peer` is registered; asks the hashed index, which holds
    /// exactly the registered peers, rather than searching the tree.
    pub fn contains(&self, peer: &SocketAddr) -> bool {
        self.index.is_registered(peer)
    }

    pub fn len(&self) -> usize {
        self.state.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.state.peers.is_empty()
    }

    /// Seeds that have voted for `change` and are still waiting for more.
    pub fn pending_votes(&self, change: &Change) -> usize {
        self.state.votes.get(change).map_or(0, BTreeSet::len)
    }

    /// Whether `seed`'s vote for `change` is in the log, still waiting for
    /// more.
    pub fn has_pending_vote(&self, change: &Change, seed: &SocketAddr) -> bool {
        self.state
            .votes
            .get(change)
            .is_some_and(|voters| voters.contains(seed))
    }

    /// Applies one log entry. Deterministic: the same commands in the same
    /// order give the same state and outcomes on every seed.
    pub fn apply(&mut self, command: &Command) -> Outcome {
        match command {
            Command::Init {
                seeds,
                max_peers_per_ip,
            } => {
                if self.is_initialised() {
                    return Outcome::Ignored {
                        reason: Ignored::AlreadyInitialised,
                    };
                }
                self.state.seeds = seeds.iter().copied().collect();
                self.state.max_peers_per_ip = *max_peers_per_ip;
                Outcome::Initialised
            }
            Command::Vote { change, seed } => self.vote(*change, *seed, false),
            Command::Leave {
                peer,
                incarnation,
                seed,
            } => self.vote(Change::remove(*peer, *incarnation), *seed, true),
            Command::Links {
                peer,
                neighbors,
                incarnation,
                seq,
            } => {
                if *seq != 0 {
                    if let Some(ignored) = self.order_link_report(*peer, *incarnation, *seq) {
                        return ignored;
                    }
                }
                let reported = || neighbors.iter().copied().filter(|n| n != peer);
                // Peers send their set in order, so most repeats are found
                // without building a set. Only a registered peer has links.
                if self
                    .state
                    .links
                    .get(peer)
                    .is_some_and(|known| known.iter().copied().eq(reported()))
                {
                    return Outcome::Ignored {
                        reason: Ignored::Unchanged,
                    };
                }
                if !self.contains(peer) {
                    return Outcome::Ignored {
                        reason: Ignored::UnknownPeer,
                    };
                }
                let set: SortedSet<SocketAddr> = reported().collect();
                let (gone, new): (Vec<SocketAddr>, Vec<SocketAddr>) =
                    match self.state.links.entry(*peer) {
                        Entry::Occupied(mut entry) => {
                            if *entry.get() == set {
                                return Outcome::Ignored {
                                    reason: Ignored::Unchanged,
                                };
                            }
                            let before = std::mem::replace(entry.get_mut(), set);
                            let after = entry.get();
                            let gone: Vec<_> = before.difference(after).copied().collect();
                            (gone, after.difference(&before).copied().collect())
                        }
                        Entry::Vacant(entry) => {
                            (Vec::new(), entry.insert(set).iter().copied().collect())
                        }
                    };
                self.index.update_reports(*peer, &gone, &new);
                Outcome::LinksRecorded
            }
            Command::SeedKey { seed, key } => self.pin_seed_key(*seed, *key),
            Command::Rekey {
                seed,
                old,
                new,
                voter,
            } => self.rekey(
                Rekey {
                    seed: *seed,
                    old: *old,
                    new: *new,
                },
                *voter,
            ),
            Command::Seeds { voters, learners } => self.apply_seeds(voters, learners),
            Command::SeedRejoin { seed } => {
                if !self.is_voter(seed) {
                    return Outcome::Ignored {
                        reason: Ignored::NotASeed,
                    };
                }
                if !self.state.rejoining.insert(*seed) {
                    return Outcome::Ignored {
                        reason: Ignored::Unchanged,
                    };
                }
                Outcome::SeedRejoinRequested
            }
            Command::SeedChange { add, remove, voter } => self.seed_change(
                SeedChange {
                    add: *add,
                    remove: *remove,
                },
                *voter,
            ),
        }
    }

    /// Takes Raft's new membership as the seed set. Seeds no longer in
    /// it lose their pinned key and the votes about it; approved changes
    /// the membership now shows are done.
    fn apply_seeds(&mut self, voters: &[Vec<SocketAddr>], learners: &[SocketAddr]) -> Outcome {
        let sets: Vec<BTreeSet<SocketAddr>> = voters
            .iter()
            .map(|set| set.iter().copied().collect())
            .filter(|set: &BTreeSet<SocketAddr>| !set.is_empty())
            .collect();
        let learners: BTreeSet<SocketAddr> = learners.iter().copied().collect();
        if sets.is_empty() || (sets == self.state.voters && learners == self.state.learners) {
            return Outcome::Ignored {
                reason: Ignored::Unchanged,
            };
        }
        self.state.voters = sets;
        self.state.learners = learners;
        // A seed that lost its log, now removed, is to be added back.
        let removed: Vec<SocketAddr> = self
            .state
            .rejoining
            .iter()
            .copied()
            .filter(|r| !self.is_member(r))
            .collect();
        for seed in removed {
            self.state.rejoining.remove(&seed);
            self.state.approved_seed_changes.insert(SeedChange {
                add: Some(seed),
                remove: None,
            });
        }
        // Keys stay pinned for seeds that are to come (back).
        let members: BTreeSet<SocketAddr> = self
            .seeds()
            .chain(self.state.learners.iter().copied())
            .chain(
                self.state
                    .approved_seed_changes
                    .iter()
                    .filter_map(|c| c.add),
            )
            .collect();
        self.state.seed_keys.retain(|s, _| members.contains(s));
        self.state
            .rekey_votes
            .retain(|r, _| members.contains(&r.seed));
        if self.state.voters.len() == 1 {
            let now = self.state.voters[0].clone();
            self.state
                .approved_seed_changes
                .retain(|c| !seed_change_is_made(c, &now));
            self.state
                .seed_change_votes
                .retain(|c, _| !seed_change_is_made(c, &now));
        }
        Outcome::SeedsChanged
    }

    /// Counts `voter`'s vote for `change`; at a majority the change is
    /// approved, for the leader to make.
    fn seed_change(&mut self, change: SeedChange, voter: SocketAddr) -> Outcome {
        let ignored = |reason| Outcome::Ignored { reason };
        if !self.is_voter(&voter) {
            return ignored(Ignored::NotASeed);
        }
        let current: BTreeSet<SocketAddr> = self.seeds().collect();
        let moot = change.add == change.remove
            || change.add.is_some_and(|a| current.contains(&a))
            || change.remove.is_some_and(|r| !current.contains(&r))
            || change.target(&current).is_empty()
            || self.state.approved_seed_changes.contains(&change);
        if moot {
            return ignored(Ignored::SeedChangeMoot);
        }
        let sets = voter_sets_owned(&self.state);
        let voters = match count_vote(&mut self.state.seed_change_votes, change, voter, &sets) {
            Ok(voters) => voters,
            Err(outcome) => return outcome,
        };
        self.state.approved_seed_changes.insert(change);
        Outcome::SeedChangeApproved {
            voters: voters.into_iter().collect(),
        }
    }

    /// Pins `key` for `seed` if no key is pinned for it yet: the first
    /// committed key wins.
    fn pin_seed_key(&mut self, seed: SocketAddr, key: PublicKey) -> Outcome {
        let ignored = |reason| Outcome::Ignored { reason };
        if !self.is_member(&seed) {
            return ignored(Ignored::NotASeed);
        }
        match self.state.seed_keys.entry(seed) {
            Entry::Occupied(pinned) if *pinned.get() == key => ignored(Ignored::Unchanged),
            Entry::Occupied(_) => ignored(Ignored::KeyAlreadyPinned),
            Entry::Vacant(entry) => {
                entry.insert(key);
                Outcome::SeedKeyPinned
            }
        }
    }

    /// Counts `voter`'s vote for `rekey`; at a majority the pinned key is
    /// replaced, and every other vote about that seed's key goes.
    fn rekey(&mut self, rekey: Rekey, voter: SocketAddr) -> Outcome {
        let ignored = |reason| Outcome::Ignored { reason };
        if !self.is_voter(&voter) || !self.is_member(&rekey.seed) {
            return ignored(Ignored::NotASeed);
        }
        if self.state.seed_keys.get(&rekey.seed) != Some(&rekey.old) {
            return ignored(Ignored::Stale);
        }
        if rekey.old == rekey.new {
            return ignored(Ignored::Unchanged);
        }
        let sets = voter_sets_owned(&self.state);
        let voters = match count_vote(&mut self.state.rekey_votes, rekey, voter, &sets) {
            Ok(voters) => voters,
            Err(outcome) => return outcome,
        };
        self.state.seed_keys.insert(rekey.seed, rekey.new);
        // Votes to replace the key just replaced can never count now.
        self.state.rekey_votes.retain(|r, _| r.seed != rekey.seed);
        Outcome::SeedRekeyed {
            voters: voters.into_iter().collect(),
        }
    }

    /// Checks that report `seq` of `peer`'s life `incarnation` is newer
    /// than the one recorded, and records its number if so: the log may
    /// hold a peer's reports out of the order it sent them. The number is
    /// recorded even if the set turns out unchanged, so that an older,
    /// different set that commits later cannot replace it.
    fn order_link_report(
        &mut self,
        peer: SocketAddr,
        incarnation: Incarnation,
        seq: u64,
    ) -> Option<Outcome> {
        match self.state.peers.get(&peer) {
            None => Some(Outcome::Ignored {
                reason: Ignored::UnknownPeer,
            }),
            Some(current) if *current != incarnation => Some(Outcome::Ignored {
                reason: Ignored::OutOfOrder,
            }),
            Some(_) => match self.state.link_seqs.entry(peer) {
                Entry::Occupied(recorded) if *recorded.get() >= seq => Some(Outcome::Ignored {
                    reason: Ignored::OutOfOrder,
                }),
                Entry::Occupied(mut recorded) => {
                    recorded.insert(seq);
                    None
                }
                Entry::Vacant(vacant) => {
                    vacant.insert(seq);
                    None
                }
            },
        }
    }

    /// Whether `change` could still take effect.
    fn applies(&self, change: &Change) -> bool {
        let current = self.state.peers.get(&change.peer);
        match change.kind {
            ChangeKind::Add => {
                let removed = self.state.removed.get(&change.peer);
                current.is_none_or(|c| *c < change.incarnation)
                    && removed.is_none_or(|r| *r < change.incarnation)
            }
            ChangeKind::Remove => current == Some(&change.incarnation),
        }
    }

    /// Counts `seed`'s vote for `change`; `leave`: a vote on the peer's
    /// own LEAVE, which marks the removal as a leave even if this seed's
    /// vote was in already.
    fn vote(&mut self, change: Change, seed: SocketAddr, leave: bool) -> Outcome {
        let ignored = |reason| Outcome::Ignored { reason };
        if !self.is_voter(&seed) {
            return ignored(Ignored::NotASeed);
        }
        if !self.applies(&change) {
            return ignored(Ignored::Stale);
        }
        if leave {
            self.state.leaving.insert(change);
        }
        let sets = voter_sets_owned(&self.state);
        let voters = match count_vote(&mut self.state.votes, change, seed, &sets) {
            Ok(voters) => voters,
            Err(outcome) => return outcome,
        };
        let peer = change.peer;
        // The cap is checked here, against the state every seed has at
        // this point of the log, not only before the vote: registrations
        // from one address that race each other all pass a check against
        // a seed's current view.
        if change.kind == ChangeKind::Add {
            if let Some(reason) = self.ip_cap_refusal(peer) {
                return Outcome::Refused {
                    voters: voters.into_iter().collect(),
                    reason,
                };
            }
        }
        // A new life at this address starts with no links.
        self.forget_links(peer);
        match change.kind {
            ChangeKind::Add => {
                self.state.peers.insert(peer, change.incarnation);
                self.state.left.remove(&peer);
                match change.key {
                    Some(key) => self.state.keys.insert(peer, key),
                    None => self.state.keys.remove(&peer),
                };
                self.index.register(peer);
            }
            ChangeKind::Remove => {
                self.state.peers.remove(&peer);
                self.state.keys.remove(&peer);
                self.state.removed.insert(peer, change.incarnation);
                self.index.unregister(peer);
                if self.state.leaving.remove(&change) {
                    self.state.left.insert(peer, change.incarnation);
                } else {
                    self.state.left.remove(&peer);
                }
            }
        }
        // Votes about this peer that the change made moot go too, so that
        // pending votes cannot pile up.
        let about_peer = |kind| {
            let change = |incarnation, key| Change {
                kind,
                peer,
                incarnation,
                key,
            };
            let last = change(Incarnation::MAX, Some(PublicKey([u8::MAX; 32])));
            self.state.votes.range(change(0, None)..=last)
        };
        let stale: Vec<Change> = about_peer(ChangeKind::Add)
            .chain(about_peer(ChangeKind::Remove))
            .map(|(c, _)| *c)
            .filter(|c| !self.applies(c))
            .collect();
        for c in stale {
            self.state.votes.remove(&c);
        }
        let moot: Vec<Change> = self
            .state
            .leaving
            .iter()
            .filter(|c| c.peer == peer && !self.applies(c))
            .copied()
            .collect();
        for c in moot {
            self.state.leaving.remove(&c);
        }
        Outcome::Committed {
            voters: voters.into_iter().collect(),
            seeds: self.seeds().count(),
        }
    }

    /// Forgets `peer`'s report of its neighbours, and its number.
    fn forget_links(&mut self, peer: SocketAddr) {
        self.state.link_seqs.remove(&peer);
        let gone: Vec<SocketAddr> = self
            .state
            .links
            .remove(&peer)
            .unwrap_or_default()
            .into_iter()
            .collect();
        self.index.update_reports(peer, &gone, &[]);
    }

    /// Undirected edges between registered peers, each once, smaller
    /// address first. An edge counts if either end reports it.
    pub fn edges(&self) -> BTreeSet<(SocketAddr, SocketAddr)> {
        self.state
            .links
            .iter()
            .flat_map(|(a, ns)| ns.iter().map(move |b| (*a.min(b), *a.max(b))))
            .filter(|(a, b)| a != b && self.contains(a) && self.contains(b))
            .collect()
    }

    /// Each registered peer's neighbours in the recorded topology; peers
    /// without links are present with an empty set.
    pub fn adjacency(&self) -> BTreeMap<SocketAddr, BTreeSet<SocketAddr>> {
        self.state
            .peers
            .keys()
            .map(|p| (*p, self.index.neighbors(p).collect()))
            .collect()
    }

    /// `peer`'s neighbours in the recorded topology: the peers it reports,
    /// and those that report it, if registered.
    pub fn neighbors_of(&self, peer: &SocketAddr) -> BTreeSet<SocketAddr> {
        if !self.contains(peer) {
            return BTreeSet::new();
        }
        self.index.neighbors(peer).collect()
    }

    /// The neighbour set `peer` itself reported, as recorded; None if it
    /// has reported none in its current life.
    pub fn reported_links(&self, peer: &SocketAddr) -> Option<BTreeSet<SocketAddr>> {
        let links = self.state.links.get(peer)?;
        Some(links.iter().copied().collect())
    }

    /// The number of the newest link report applied for `peer`'s current
    /// life, if any: an older one that commits later is left out.
    pub fn link_seq(&self, peer: &SocketAddr) -> Option<u64> {
        self.state.link_seqs.get(peer).copied()
    }

    /// `peer`'s number of links in the recorded topology; 0 if it is not
    /// registered.
    pub fn degree_of(&self, peer: &SocketAddr) -> u32 {
        self.index.degree(peer)
    }

    fn entry(&self, addr: SocketAddr) -> PeerEntry {
        PeerEntry {
            addr,
            degree: self.index.degree(&addr),
        }
    }

    /// The whole PL with each peer's degree in the recorded topology (R4).
    pub fn peer_list(&self) -> Vec<PeerEntry> {
        self.state.peers.keys().map(|p| self.entry(*p)).collect()
    }

    /// The PL for a join: all of it up to `limit` peers, and beyond that
    /// `limit` peers drawn uniformly, with their degrees, in no order. A uniform draw
    /// keeps preferential attachment fair: a peer's chance to be listed
    /// does not depend on its degree, so the joiner's choice by degree
    /// among those listed is, on average, the choice it would make among
    /// all. It keeps a join's cost from growing with the network.
    pub fn peer_list_sample<R: rand::Rng + ?Sized>(
        &self,
        limit: usize,
        rng: &mut R,
    ) -> Vec<PeerEntry> {
        let roster = &self.index.roster;
        if roster.len() <= limit {
            return self.peer_list();
        }
        // Draws until `limit` distinct places have come up, skipping
        // repeats: the set is uniform, and the cost is the sample's, not
        // the roster's. The hash set only answers "seen?"; the order is
        // the draws'. (Sorting the draws to drop repeats cost a join more
        // than everything else a seed does for it.)
        let mut seen: FxHashSet<usize> =
            FxHashSet::with_capacity_and_hasher(limit, Default::default());
        let mut places = Vec::with_capacity(limit);
        while places.len() < limit {
            let i = rng.random_range(0..roster.len());
            if seen.insert(i) {
                places.push(i);
            }
        }
        // Read apart from the draws: in a large roster each read misses the
        // cache, and a loop of reads alone lets them overlap.
        places
            .into_iter()
            .map(|i| PeerEntry {
                addr: roster[i].0,
                degree: roster[i].1,
            })
            .collect()
    }

    /// After a removal, one replacement link for each `former` neighbour of
    /// the removed peer (R7), picked by preferential attachment. A former
    /// neighbour whose piece of the overlay is no longer joined to the
    /// largest piece picks inside the largest piece. Any other piece cut
    /// off from the largest one (when several peers die at once, a removal
    /// can complete a cut that an earlier one started) gets one link too,
    /// from its smallest peer that has reported its links; pieces of peers
    /// still joining are left to their join. So the committed overlay is
    /// one piece again. `salt` seeds the choice, so every seed computes the
    /// same plan.
    pub fn repair_links(
        &self,
        former: &BTreeSet<SocketAddr>,
        salt: u64,
    ) -> BTreeMap<SocketAddr, SocketAddr> {
        let adjacency = self.adjacency();
        let (piece_of, largest) = pieces(&adjacency);
        let mut relinking: BTreeSet<SocketAddr> = former
            .iter()
            .filter(|f| adjacency.contains_key(f))
            .copied()
            .collect();
        let mut pieces_served: BTreeSet<usize> = relinking.iter().map(|f| piece_of[f]).collect();
        pieces_served.insert(largest);
        for peer in self.state.links.keys() {
            let Some(piece) = piece_of.get(peer) else {
                continue;
            };
            if pieces_served.insert(*piece) {
                relinking.insert(*peer);
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(salt);
        let mut plan = BTreeMap::new();
        for f in &relinking {
            let own = piece_of[f];
            let candidates: Vec<PeerEntry> = adjacency
                .iter()
                .filter(|(p, _)| *p != f && !adjacency[f].contains(p))
                .filter(|(p, _)| own == largest || piece_of[*p] == largest)
                .map(|(addr, links)| PeerEntry {
                    addr: *addr,
                    degree: links.len() as u32,
                })
                .collect();
            if let Some(pick) = topology::choose_neighbors(candidates, 1, &mut rng).first() {
                plan.insert(*f, *pick);
            }
        }
        plan
    }

    /// Registered peers with their incarnations.
    pub fn peers(&self) -> impl Iterator<Item = (SocketAddr, Incarnation)> + '_ {
        self.state.peers.iter().map(|(a, i)| (*a, *i))
    }
}

/// Counts `voter`'s vote for `what` among `seeds` seeds. At a majority,
/// the voters, taken out of `votes`; before it, the outcome to return
/// (the vote counted, or a duplicate ignored).
fn count_vote<K: Ord + Copy>(
    votes: &mut BTreeMap<K, BTreeSet<SocketAddr>>,
    what: K,
    voter: SocketAddr,
    sets: &[BTreeSet<SocketAddr>],
) -> Result<BTreeSet<SocketAddr>, Outcome> {
    let voters = votes.entry(what).or_default();
    if !voters.insert(voter) {
        return Err(Outcome::Ignored {
            reason: Ignored::DuplicateVote,
        });
    }
    // A seed removed since it voted no longer counts; with two sets (a
    // joint change) a majority of each is needed, so the old and the new
    // seeds can never decide apart.
    let reached = sets
        .iter()
        .all(|set| voters.intersection(set).count() >= majority(set.len()));
    if !reached {
        let votes_in = voters
            .iter()
            .filter(|v| sets.iter().any(|s| s.contains(v)))
            .count();
        let needed = sets.iter().map(|s| majority(s.len())).max().unwrap_or(1);
        return Err(Outcome::VoteCounted {
            votes: votes_in,
            needed,
        });
    }
    Ok(votes.remove(&what).unwrap_or_default())
}

/// The voter sets of `state`, owned, so that the votes can be changed
/// while they are counted.
fn voter_sets_owned(state: &Stored) -> Vec<BTreeSet<SocketAddr>> {
    if state.voters.is_empty() {
        vec![state.seeds.clone()]
    } else {
        state.voters.clone()
    }
}

/// Whether the voters `now` show `change` made.
fn seed_change_is_made(change: &SeedChange, now: &BTreeSet<SocketAddr>) -> bool {
    change.add.is_none_or(|a| now.contains(&a)) && change.remove.is_none_or(|r| !now.contains(&r))
}

/// Numbers the connected pieces of a graph; returns each node's piece and
/// the largest piece (the first of equal ones).
fn pieces(
    adjacency: &BTreeMap<SocketAddr, BTreeSet<SocketAddr>>,
) -> (BTreeMap<SocketAddr, usize>, usize) {
    let mut piece_of = BTreeMap::new();
    let mut sizes: Vec<usize> = Vec::new();
    for start in adjacency.keys() {
        if piece_of.contains_key(start) {
            continue;
        }
        let piece = sizes.len();
        let mut stack = vec![*start];
        piece_of.insert(*start, piece);
        let mut size = 0;
        while let Some(node) = stack.pop() {
            size += 1;
            for next in &adjacency[&node] {
                if !piece_of.contains_key(next) {
                    piece_of.insert(*next, piece);
                    stack.push(*next);
                }
            }
        }
        sizes.push(size);
    }
    let largest = (0..sizes.len())
        .max_by_key(|i| (sizes[*i], std::cmp::Reverse(*i)))
        .unwrap_or(0);
    (piece_of, largest)
}

/// JSON map keys must be strings, so a map keyed by a struct is written as
/// a list of `[key, value]` pairs.
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.iter())
    }

    pub fn deserialize<'de, K, V, D>(deserializer: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests;
