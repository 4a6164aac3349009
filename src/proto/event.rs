//! Events: what a node reports about itself.
//!
//! Each event is written twice: as a prose line on the console and in the
//! output file (R17, R18), and as one JSON line in the event stream (R19,
//! docs/EVENTS.md). Event names and fields are a public interface: add new
//! ones, never rename.

use std::{fmt, net::SocketAddr};

use serde::{Deserialize, Serialize};

use super::{
    message::{PeerEntry, PublicKey, Role},
    seed::directory::ChangeKind,
};

/// How a seed came to record a membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitBasis {
    /// A majority of seeds voted for it in the replicated log.
    Consensus,
}

/// Why a peer refused a gossip message, in `gossip_refused`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GossipRefusal {
    /// Longer than `--max-gossip-bytes`.
    TooLarge,
    /// Its text does not start with a creation time.
    Timeless,
    /// Its creation time is too far ahead of this peer's clock.
    Future,
    /// The Message List is full of entries that have not expired.
    ListFull,
    /// The link it came from holds its share of the Message List.
    LinkShare,
    /// Its origin introduced more new messages than its budget allows.
    OriginRate,
    /// Its origin is new to this peer, and its link introduced more new
    /// origins than its budget allows.
    NewOrigins,
    /// Not its origin's: its signature does not verify against the key
    /// it names, or it names the receiver as origin under another key.
    Forged,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    // --- both roles ---
    /// The node is accepting connections.
    Listening {
        role: Role,
    },
    /// Bad input closed one connection; the node carries on.
    ProtocolError {
        remote: SocketAddr,
        reason: String,
    },
    /// A node that does not hold the network's key (`--network-key`)
    /// tried to connect; the connection was closed at the handshake.
    ConnectionRefused {
        remote: SocketAddr,
        reason: String,
    },
    /// Frames from `remote` over its connection's rate limit were dropped
    /// (docs/SECURITY.md): `count` since the last such line, which comes
    /// at most once a second per connection; `kind` is the latest one.
    FramesDropped {
        remote: SocketAddr,
        kind: String,
        count: u64,
    },
    /// A dial or a send to `peer` failed.
    ConnectFailed {
        peer: SocketAddr,
        reason: String,
    },
    /// What this node's connections carried since it started; logged at a
    /// clean shutdown, just before `shutdown`.
    Traffic {
        frames_sent: u64,
        bytes_sent: u64,
        /// GOSSIP frames among `frames_sent`: one per neighbour a message
        /// went to.
        gossip_sent: u64,
        frames_received: u64,
        bytes_received: u64,
    },
    /// Last event of a clean shutdown.
    Shutdown,

    // --- peer ---
    /// Seeds that acknowledged the registration.
    Registered {
        seeds: Vec<SocketAddr>,
    },
    /// Registration is still short of the seeds it needs; retrying.
    RegisterWaiting {
        answered: usize,
        needed: usize,
        /// Seeds this peer has a working connection to.
        reachable: usize,
        seeds: usize,
        /// Milliseconds until the next attempt.
        retry_ms: u64,
    },
    /// A Peer List received from seed `from`.
    PeerList {
        from: SocketAddr,
        peers: Vec<PeerEntry>,
    },
    /// Neighbours picked from the union of Peer Lists.
    NeighborsChosen {
        candidates: usize,
        chosen: Vec<SocketAddr>,
    },
    /// Initial link attempts are over; `neighbors` are up.
    Joined {
        neighbors: Vec<SocketAddr>,
    },
    NeighborUp {
        peer: SocketAddr,
    },
    /// A neighbour missed a liveness check; it is suspected locally, not
    /// reported.
    SuspicionStarted {
        peer: SocketAddr,
        reason: String,
    },
    /// The seeds committed the removal of `peer`; this peer dropped it.
    DeadConfirmed {
        peer: SocketAddr,
    },
    /// Stopping cleanly, this peer sent its signed LEAVE to `seeds` and
    /// `neighbors`, the ones it had a connection to.
    Leaving {
        seeds: Vec<SocketAddr>,
        neighbors: Vec<SocketAddr>,
    },
    /// `peer` left: on a peer, a neighbour sent its LEAVE, and this peer
    /// dropped the link without suspecting it; on a seed, the removal of
    /// `peer` just committed was its own LEAVE, not a failure.
    Left {
        peer: SocketAddr,
        incarnation: u64,
    },
    /// A suspected neighbour answered; the suspicion is dropped.
    SuspicionCleared {
        peer: SocketAddr,
    },
    NeighborDown {
        peer: SocketAddr,
    },
    /// A typed line was not gossiped because it is too long.
    UserLineRefused {
        bytes: usize,
        limit: usize,
    },
    /// This peer made a gossip message.
    GossipCreated {
        msg: String,
    },
    /// Gossip from neighbour `from` was refused: not delivered, not
    /// forwarded (docs/SECURITY.md). `from` is this peer itself for its
    /// own messages. `count` refusals from `from` since the last such line,
    /// which comes at most once a second per link; `cause` and `reason`
    /// are the latest one's.
    GossipRefused {
        from: SocketAddr,
        cause: GossipRefusal,
        reason: String,
        count: u64,
    },
    /// First receipt of a gossip message; duplicates are not reported.
    GossipReceived {
        msg: String,
        /// The neighbour it came from.
        from: SocketAddr,
        /// The peer that created it.
        origin: SocketAddr,
        hops: u32,
    },

    // --- seed ---
    /// A peer asked to be registered.
    RegisterRequested {
        peer: SocketAddr,
    },
    /// A registration refused for the per-IP cap: by this seed before any
    /// probe or vote, its IP address having `max_peers_per_ip` peers
    /// registered already, or by the seeds' consensus, when the vote that
    /// completed its majority was applied with the cap already reached.
    RegisterRefused {
        peer: SocketAddr,
        reason: String,
    },
    /// This seed checked a registration and proposes its vote.
    RegisterProposed {
        peer: SocketAddr,
        seed: SocketAddr,
    },
    /// The dial-back check of a registering peer failed; no vote.
    ProbeFailed {
        peer: SocketAddr,
        reason: String,
    },
    /// A vote entered the log and counts towards `change` of `peer`.
    Vote {
        change: ChangeKind,
        peer: SocketAddr,
        seed: SocketAddr,
        incarnation: u64,
    },
    /// A majority of seeds voted to add the peer: it is in every PL.
    RegisterCommitted {
        peer: SocketAddr,
        basis: CommitBasis,
        votes: usize,
        seeds: usize,
        voters: Vec<SocketAddr>,
    },
    /// A peer reported another dead.
    DeadReportReceived {
        peer: SocketAddr,
        from: SocketAddr,
        report: String,
        confirmers: Vec<SocketAddr>,
    },
    /// The report did not stand up to this seed's checks; no vote.
    DeadReportRefused {
        peer: SocketAddr,
        from: SocketAddr,
        reason: String,
    },
    /// A LEAVE of `peer` came from `from` (the peer itself, or a
    /// neighbour relaying it).
    LeaveReceived {
        peer: SocketAddr,
        from: SocketAddr,
    },
    /// The LEAVE did not stand up to this seed's checks: not of the
    /// registered life, or not signed with its key. No vote.
    LeaveRefused {
        peer: SocketAddr,
        from: SocketAddr,
        reason: String,
    },
    /// This seed proposes its vote to remove a peer.
    RemoveProposed {
        peer: SocketAddr,
        seed: SocketAddr,
    },
    /// A majority of seeds voted to remove the peer.
    RemoveCommitted {
        peer: SocketAddr,
        votes: usize,
        seeds: usize,
        voters: Vec<SocketAddr>,
    },
    /// The seed cluster's log now names its seeds.
    ClusterFormed {
        seeds: Vec<SocketAddr>,
    },
    /// This seed's own `max_peers_per_ip` differs from the cap committed
    /// in the log's `Init`, which it enforces instead. Logged once.
    IpCapOverridden {
        configured: Option<u32>,
        committed: Option<u32>,
    },
    /// A seed's identity key was pinned in the log: from now on every seed
    /// refuses a connection claiming `seed` that proves another key.
    SeedKeyPinned {
        seed: SocketAddr,
        key: PublicKey,
    },
    /// A committed `SeedKey` named another key than the one pinned for
    /// `seed`; the pinned key stays. Only a majority's rekey replaces it.
    SeedKeyIgnored {
        seed: SocketAddr,
        pinned: PublicKey,
        proposed: PublicKey,
    },
    /// `voter` voted to replace `seed`'s pinned key with `new` (on its
    /// operator's order); `votes` of `needed` are in.
    SeedRekeyVote {
        seed: SocketAddr,
        new: PublicKey,
        voter: SocketAddr,
        votes: usize,
        needed: usize,
    },
    /// A majority of seeds replaced `seed`'s pinned key `old` with `new`.
    SeedRekeyed {
        seed: SocketAddr,
        old: PublicKey,
        new: PublicKey,
        voters: Vec<SocketAddr>,
    },
    /// `voter` voted, on its operator's order, for changing the seeds
    /// (`change`: "add A", "remove B" or "replace B with A"); `votes` of
    /// `needed` are in.
    SeedChangeVote {
        change: String,
        voter: SocketAddr,
        votes: usize,
        needed: usize,
    },
    /// A majority of seeds approved the seed change: the leader now adds
    /// the new seed as a learner, lets it catch up, and changes the
    /// membership through joint consensus.
    SeedChangeApproved {
        change: String,
        voters: Vec<SocketAddr>,
    },
    /// Raft's membership changed (a membership entry was applied): the
    /// voting seeds (two sets while a change is in joint consensus) and
    /// the learners, which receive the log but do not vote yet. Majorities
    /// count in these sets from this entry on.
    SeedsChanged {
        voters: Vec<Vec<SocketAddr>>,
        learners: Vec<SocketAddr>,
    },
    /// This seed started with an empty log, and a running seed reports a
    /// cluster (`cluster`: its voting seeds) that does not count this one
    /// as a voter. It forms no cluster of its own and waits to be added
    /// (`gossipnet seeds add`).
    SeedWaitingToJoin {
        cluster: Vec<SocketAddr>,
    },
    /// This seed started with an empty log, but the running cluster
    /// counts it as a voting seed: it lost its data. It catches up and
    /// casts no vote until it holds every entry the leader has committed
    /// (`gossipnet status` shows `catching_up`).
    SeedRejoining {
        cluster: Vec<SocketAddr>,
    },
    /// A connection claiming seed `seed` proved `proved`, not the key
    /// pinned for it: refused, and nothing it sent was taken.
    SeedKeyRefused {
        seed: SocketAddr,
        pinned: PublicKey,
        proved: PublicKey,
    },
    /// The seed that leads the log changed; `None` while there is none.
    LeaderChanged {
        leader: Option<SocketAddr>,
    },
    /// A peer reported its neighbours; the seed's topology record changed.
    TopologyUpdated {
        peer: SocketAddr,
        neighbors: Vec<SocketAddr>,
    },
    /// A peer's link report committed after a newer one of the same life
    /// (or from a life no longer registered) and was left out: the
    /// recorded set stays the newer one. `recorded_seq` is the number of
    /// the report recorded for the peer's registered life, if any.
    LinkReportSuperseded {
        peer: SocketAddr,
        incarnation: u64,
        seq: u64,
        recorded_seq: Option<u64>,
    },
    /// The seed sent its Peer List to a peer.
    PeerListServed {
        to: SocketAddr,
        peers: usize,
    },
    /// A majority of the suspect's neighbours found it unresponsive; the
    /// peer sent `report`, the exact Dead Node text (R14), to its seeds.
    DeadReportSent {
        peer: SocketAddr,
        report: String,
        confirmers: Vec<SocketAddr>,
    },
    /// The peer stopped asking about a suspect that was neither cleared
    /// nor removed, and dropped the link to it.
    SuspicionAbandoned {
        peer: SocketAddr,
        reason: String,
    },
    /// A link to `new` replaces the one to `old`, which the seeds removed.
    NeighborReplaced {
        old: SocketAddr,
        new: SocketAddr,
    },
    /// `--icmp` was asked for but no ICMP socket can be opened; the peer
    /// goes on without it.
    IcmpUnavailable {
        reason: String,
    },
    /// The seeds removed this peer although it runs: it registers again
    /// under a new incarnation.
    Rejoining {
        old_incarnation: u64,
        incarnation: u64,
    },
    /// A dial to `peer`, a registered peer this one chose as a neighbour
    /// (or was told to link to), failed; this peer told the seeds, which
    /// check it with their own probes. `next` is the candidate it dials
    /// instead, if it has one.
    DialFailedReported {
        peer: SocketAddr,
        next: Option<SocketAddr>,
    },
    /// Peer `from` could not dial `peer`. `checking`: this seed probes
    /// `peer` itself; false when `peer` is not registered, is checked
    /// already, or `from` has used up its budget of such checks.
    DialFailedReceived {
        peer: SocketAddr,
        from: SocketAddr,
        checking: bool,
    },
    /// This seed started and found its log's directory: it probes each of
    /// the `peers` registered, a few at a time, so that those that died
    /// while no seed ran are removed though no neighbour is left to
    /// report them.
    RegisteredPeersChecked {
        peers: usize,
    },
}

fn addrs(list: &[SocketAddr]) -> String {
    if list.is_empty() {
        return "(none)".into();
    }
    list.iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Voters as ports when they share one IP, as on one machine, else in full.
fn ports(voters: &[SocketAddr]) -> String {
    let same_ip = voters.windows(2).all(|w| w[0].ip() == w[1].ip());
    voters
        .iter()
        .map(|v| {
            if same_ip {
                v.port().to_string()
            } else {
                v.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The prose form, for the console and the output file.
impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Listening { role } => write!(f, "LISTENING as {role}"),
            Event::ProtocolError { remote, reason } => {
                write!(
                    f,
                    "PROTOCOL ERROR from {remote}: {reason}; connection closed"
                )
            }
            Event::ConnectionRefused { remote, reason } => {
                write!(f, "REFUSED connection from {remote}: {reason}")
            }
            Event::FramesDropped {
                remote,
                kind,
                count,
            } => write!(
                f,
                "DROPPED {count} frame(s) from {remote} over the rate limit (last: {kind})"
            ),
            Event::ConnectFailed { peer, reason } => {
                write!(f, "CONNECT to {peer} failed: {reason}")
            }
            Event::Traffic {
                frames_sent,
                bytes_sent,
                gossip_sent,
                frames_received,
                bytes_received,
            } => write!(
                f,
                "TRAFFIC sent {frames_sent} frames ({gossip_sent} GOSSIP), {bytes_sent} bytes; received {frames_received} frames, {bytes_received} bytes"
            ),
            Event::Shutdown => write!(f, "Shutting down."),
            Event::Registered { seeds } => write!(f, "REGISTERED with seeds {}", addrs(seeds)),
            Event::RegisterWaiting {
                answered,
                needed,
                reachable,
                seeds,
                retry_ms,
            } => write!(
                f,
                "waiting for seed quorum: {reachable} of {seeds} seeds reachable, \
                 {answered} of {needed} confirmed the commit; retrying in {retry_ms} ms"
            ),
            Event::PeerList { from, peers } => {
                let list = peers
                    .iter()
                    .map(|p| format!("{} (degree {})", p.addr, p.degree))
                    .collect::<Vec<_>>();
                let list = if list.is_empty() {
                    "(empty)".to_string()
                } else {
                    list.join(", ")
                };
                write!(f, "PEER LIST from seed {from}: {list}")
            }
            Event::NeighborsChosen { candidates, chosen } => write!(
                f,
                "NEIGHBOURS chosen from {candidates} candidates: {}",
                addrs(chosen)
            ),
            Event::Joined { neighbors } => {
                write!(f, "JOINED the overlay with neighbours {}", addrs(neighbors))
            }
            Event::NeighborUp { peer } => write!(f, "NEIGHBOUR UP {peer}"),
            Event::NeighborDown { peer } => write!(f, "NEIGHBOUR DOWN {peer}"),
            Event::SuspicionStarted { peer, reason } => write!(f, "SUSPECT {peer}: {reason}"),
            Event::Leaving { seeds, neighbors } => write!(
                f,
                "LEAVING: LEAVE sent to seeds {} and neighbours {}",
                addrs(seeds),
                addrs(neighbors)
            ),
            Event::Left { peer, incarnation } => {
                write!(f, "LEFT {peer} (incarnation {incarnation}): it stopped cleanly")
            }
            Event::LeaveReceived { peer, from } => write!(f, "LEAVE of {peer} from {from}"),
            Event::LeaveRefused { peer, from, reason } => {
                write!(f, "LEAVE of {peer} from {from} refused: {reason}")
            }
            Event::SuspicionCleared { peer } => {
                write!(f, "SUSPICION of {peer} cleared: it answered")
            }
            Event::UserLineRefused { bytes, limit } => write!(
                f,
                "typed line of {bytes} bytes not gossiped: the limit is {limit} bytes"
            ),
            Event::GossipCreated { msg } => write!(f, "GOSSIP created: '{msg}'"),
            Event::GossipRefused {
                from,
                reason,
                count,
                ..
            } => write!(
                f,
                "GOSSIP from {from} refused: {reason} ({count} refused since the last such line)"
            ),
            Event::GossipReceived {
                msg, from, hops, ..
            } => write!(
                f,
                "GOSSIP received (first time): '{msg}' from {from} after {hops} hops"
            ),
            Event::RegisterRequested { peer } => write!(f, "REGISTER request from {peer}"),
            Event::RegisterRefused { peer, reason } => {
                write!(f, "REGISTER of {peer} refused: {reason}")
            }
            Event::RegisterProposed { peer, seed } => {
                write!(f, "REGISTER {peer} checked; seed {seed} proposes its vote")
            }
            Event::ProbeFailed { peer, reason } => {
                write!(
                    f,
                    "REGISTER {peer} refused: dial-back check failed: {reason}"
                )
            }
            Event::Vote {
                change,
                peer,
                seed,
                incarnation,
            } => {
                let change = match change {
                    ChangeKind::Add => "REGISTER",
                    ChangeKind::Remove => "REMOVE",
                };
                write!(
                    f,
                    "VOTE {change} {peer} (incarnation {incarnation}) by seed {seed}"
                )
            }
            Event::RegisterCommitted {
                peer,
                votes,
                seeds,
                voters,
                ..
            } => write!(
                f,
                "REGISTER {peer} committed with {votes}/{seeds} votes (seeds {})",
                ports(voters)
            ),
            Event::DeadReportReceived {
                peer,
                from,
                report,
                confirmers,
            } => write!(
                f,
                "DEAD REPORT '{report}' about {peer} from {from}, confirmed by {}",
                addrs(confirmers)
            ),
            Event::DeadReportRefused { peer, from, reason } => {
                write!(f, "DEAD REPORT about {peer} from {from} refused: {reason}")
            }
            Event::DeadConfirmed { peer } => {
                write!(f, "DEAD {peer} confirmed by the seeds; dropped")
            }
            Event::RemoveProposed { peer, seed } => {
                write!(f, "REMOVE {peer}: seed {seed} proposes its vote")
            }
            Event::RemoveCommitted {
                peer,
                votes,
                seeds,
                voters,
            } => write!(
                f,
                "REMOVE {peer} committed with {votes}/{seeds} votes (seeds {})",
                ports(voters)
            ),
            Event::ClusterFormed { seeds } => write!(f, "SEED CLUSTER formed: {}", addrs(seeds)),
            Event::IpCapOverridden {
                configured,
                committed,
            } => {
                let cap = |c: &Option<u32>| c.map_or("no cap".to_string(), |n| n.to_string());
                write!(
                    f,
                    "WARNING max_peers_per_ip is {} here but {} in the seeds' log, which wins: the cap is fixed when the cluster first forms",
                    cap(configured),
                    cap(committed)
                )
            }
            Event::SeedKeyPinned { seed, key } => {
                write!(f, "SEED KEY of {seed} pinned: {key}")
            }
            Event::SeedKeyIgnored {
                seed,
                pinned,
                proposed,
            } => write!(
                f,
                "SEED KEY {proposed} for {seed} ignored: {pinned} is pinned for it, and only a majority of seeds replaces it (gossipnet seeds rekey)"
            ),
            Event::SeedRekeyVote {
                seed,
                new,
                voter,
                votes,
                needed,
            } => write!(
                f,
                "SEED REKEY vote by {voter}: key {new} for {seed} ({votes}/{needed} votes)"
            ),
            Event::SeedRekeyed {
                seed,
                old,
                new,
                voters,
            } => write!(
                f,
                "SEED REKEY committed: {seed} now holds key {new} instead of {old} (voters {})",
                ports(voters)
            ),
            Event::SeedChangeVote {
                change,
                voter,
                votes,
                needed,
            } => write!(
                f,
                "SEEDS CHANGE vote by {voter}: {change} ({votes}/{needed} votes)"
            ),
            Event::SeedChangeApproved { change, voters } => write!(
                f,
                "SEEDS CHANGE approved: {change} (voters {}); the leader makes it",
                ports(voters)
            ),
            Event::SeedsChanged { voters, learners } => {
                let sets: Vec<String> = voters.iter().map(|s| ports(s)).collect();
                write!(f, "SEEDS now: voters {}", sets.join(" and "))?;
                if !learners.is_empty() {
                    write!(f, ", learners {}", ports(learners))?;
                }
                Ok(())
            }
            Event::SeedWaitingToJoin { cluster } => write!(
                f,
                "SEED WAITING: this seed's log is empty and the running cluster (seeds {}) does not count it; it forms nothing and waits to be added: run `gossipnet seeds add <this seed> --data-dir <a seed's data dir>` against that cluster",
                ports(cluster)
            ),
            Event::SeedRejoining { cluster } => write!(
                f,
                "SEED REJOINING: this seed lost its log; the cluster (seeds {}) counts it, so it catches up and casts no vote until it holds every committed entry",
                ports(cluster)
            ),
            Event::SeedKeyRefused {
                seed,
                pinned,
                proved,
            } => write!(
                f,
                "SEED KEY REFUSED: a connection claiming seed {seed} proved key {proved}, but the seeds' log pins {pinned} for it; connection closed. If {seed} lost its data directory and this is its new key, a majority of seeds must accept it: on the host of each, run `gossipnet seeds rekey {seed} --key {proved} --data-dir <that seed's data dir>` (docs/SECURITY.md)"
            ),
            Event::LeaderChanged { leader } => match leader {
                Some(leader) => write!(f, "LEADER is now seed {leader}"),
                None => write!(f, "LEADER unknown: no seed leads; waiting for a majority"),
            },
            Event::TopologyUpdated { peer, neighbors } => {
                write!(f, "TOPOLOGY {peer} links to {}", addrs(neighbors))
            }
            Event::LinkReportSuperseded {
                peer,
                incarnation,
                seq,
                recorded_seq,
            } => {
                write!(
                    f,
                    "TOPOLOGY report {seq} of {peer} (incarnation {incarnation}) left out: "
                )?;
                match recorded_seq {
                    Some(recorded) => write!(f, "its report {recorded} is recorded already"),
                    None => write!(f, "not of its registered life"),
                }
            }
            Event::PeerListServed { to, peers } => {
                write!(f, "PEER LIST of {peers} peers sent to {to}")
            }
            Event::DeadReportSent {
                report, confirmers, ..
            } => write!(
                f,
                "DEAD REPORT sent: '{report}', confirmed by {}",
                addrs(confirmers)
            ),
            Event::SuspicionAbandoned { peer, reason } => {
                write!(f, "SUSPICION of {peer} abandoned: {reason}")
            }
            Event::IcmpUnavailable { reason } => {
                write!(f, "ICMP checks off: {reason}")
            }
            Event::NeighborReplaced { old, new } => {
                write!(f, "NEIGHBOUR {new} replaces removed {old}")
            }
            Event::Rejoining {
                old_incarnation,
                incarnation,
            } => write!(
                f,
                "REMOVED by the seeds while alive (incarnation {old_incarnation}); \
                 rejoining as incarnation {incarnation}"
            ),
            Event::DialFailedReported { peer, next } => {
                write!(f, "DIAL to {peer} failed; the seeds are told")?;
                match next {
                    Some(next) => write!(f, "; dialling {next} instead"),
                    None => Ok(()),
                }
            }
            Event::DialFailedReceived {
                peer,
                from,
                checking,
            } => {
                write!(f, "DIAL to {peer} failed for {from}; ")?;
                if *checking {
                    write!(f, "probing it")
                } else {
                    write!(f, "no new check")
                }
            }
            Event::RegisteredPeersChecked { peers } => {
                write!(f, "STARTED with {peers} registered peers; probing each once")
            }
        }
    }
}
