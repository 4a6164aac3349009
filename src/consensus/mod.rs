//! The seeds' replicated log, on openraft (Raft).
//!
//! Every seed runs one Raft node. The log's entries are
//! [`Command`]s, and the replicated state machine is the [`Directory`]: Peer
//! List, topology and pending votes. Raft guarantees that every seed applies
//! the same entries in the same order, and `Directory::apply` is
//! deterministic, so every seed holds the same committed directory.
//!
//! The safety argument rests on crash faults: seeds stop, restart or are cut
//! off, but do not lie. Raft tolerates the loss of any minority of seeds.
//! A change also needs votes from a majority of *distinct* seeds inside the
//! log, so no single seed can add or remove a peer by itself, even as
//! leader, without the others' votes.
//!
//! Raft's RPCs travel as RAFT_REQUEST / RAFT_RESPONSE frames over the
//! ordinary seed-to-seed connections of the [`net`](crate::net) driver. A
//! follower forwards proposals to the leader the same way.

pub mod store;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Cursor,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use openraft::{
    error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable},
    network::{RPCOption, RaftNetwork, RaftNetworkFactory},
    raft::{
        AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest,
        InstallSnapshotResponse, VoteRequest, VoteResponse,
    },
    BasicNode, Config, Membership, Raft, RaftMetrics,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    net::secure::NetworkKey,
    proto::{message::PublicKey, seed::directory::SeedChange, Command, Directory, Outcome},
};
pub use store::Applied;

openraft::declare_raft_types!(
    /// Raft types of the seed cluster.
    pub TypeConfig:
        D = Command,
        R = Outcome,
        NodeId = u64,
        Node = BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

impl store::Replicated for Directory {
    type Command = Command;
    type Response = Outcome;

    fn apply(&mut self, command: &Command) -> Outcome {
        Directory::apply(self, command)
    }

    /// Every membership entry becomes a `Seeds` command, so that the
    /// directory's seed set follows Raft's at the same place in the log.
    fn membership_command(membership: Value) -> Option<Command> {
        let membership: Membership<u64, BasicNode> = serde_json::from_value(membership).ok()?;
        let addr = |id: &u64| membership.get_node(id)?.addr.parse::<SocketAddr>().ok();
        let voters = membership
            .get_joint_config()
            .iter()
            .map(|set| set.iter().filter_map(addr).collect())
            .collect();
        let learners = membership
            .learner_ids()
            .filter_map(|id| addr(&id))
            .collect();
        Some(Command::Seeds { voters, learners })
    }
}

/// The voting seeds of a membership, by address: one set, or two during
/// a joint change.
fn voter_sets(membership: &Membership<u64, BasicNode>) -> Vec<BTreeSet<SocketAddr>> {
    membership
        .get_joint_config()
        .iter()
        .map(|set| {
            set.iter()
                .filter_map(|id| membership.get_node(id)?.addr.parse().ok())
                .collect()
        })
        .collect()
}

/// The seeds that receive the log without voting.
fn learners(membership: &Membership<u64, BasicNode>) -> BTreeSet<SocketAddr> {
    membership
        .learner_ids()
        .filter_map(|id| membership.get_node(&id)?.addr.parse().ok())
        .collect()
}

/// The address of seed `id` in the membership this seed knows, else in
/// its config.
fn addr_of(
    metrics: &RaftMetrics<u64, BasicNode>,
    config: &BTreeMap<u64, SocketAddr>,
    id: u64,
) -> Option<SocketAddr> {
    metrics
        .membership_config
        .membership()
        .get_node(&id)
        .and_then(|n| n.addr.parse().ok())
        .or_else(|| config.get(&id).copied())
}

fn list(seeds: &BTreeSet<SocketAddr>) -> String {
    seeds
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A seed's Raft id, derived from its address so that it is the same on
/// every seed whatever order the config lists the seeds in.
pub fn node_id(addr: SocketAddr) -> u64 {
    let digest = Sha256::digest(addr.to_string().as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// A Raft RPC this seed sends to another; the driver frames it.
pub struct OutgoingRpc {
    pub target: SocketAddr,
    pub body: Value,
    pub reply: oneshot::Sender<Result<Value, String>>,
}

/// A Raft RPC from another seed, for this seed's Raft to answer.
pub struct IncomingRpc {
    pub from: SocketAddr,
    /// The key `from` proved on the connection the RPC came on.
    pub key: Option<PublicKey>,
    pub body: Value,
    pub reply: oneshot::Sender<Value>,
}

/// The channels between a seed's driver and its consensus tasks.
pub struct ConsensusLink {
    /// Commands the core proposes.
    pub proposals: mpsc::UnboundedSender<Command>,
    /// Applied entries, and snapshots, in order; the first is the state at start.
    pub applied: mpsc::UnboundedReceiver<Applied<Directory>>,
    /// The leading seed, whenever it changes.
    pub leader: watch::Receiver<Option<SocketAddr>>,
    /// RPCs to send to other seeds.
    pub outgoing: mpsc::Receiver<OutgoingRpc>,
    /// RPCs received from other seeds.
    pub incoming: mpsc::Sender<IncomingRpc>,
    /// Requests for this seed's status as JSON.
    pub status: mpsc::Sender<oneshot::Sender<Value>>,
}

/// Handle kept by the node to stop Raft cleanly.
pub struct ConsensusHandle {
    raft: Raft<TypeConfig>,
    /// Where this seed stood in the cluster when it started.
    pub standing: Standing,
}

impl ConsensusHandle {
    pub async fn shutdown(self) {
        let _ = self.raft.shutdown().await;
    }
}

/// Why the consensus layer could not start; nothing is running then.
#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    #[error("cannot create data directory {path}: {source}; pass --data-dir DIR with a writable directory")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the seed's log in {path}: {source}; is another seed using the same --data-dir?")]
    Store {
        path: PathBuf,
        source: store::StoreError,
    },
    #[error("cannot start Raft: {0}")]
    Raft(String),
    /// The log in the data directory pins another key for this seed than
    /// its identity.key holds. Nothing was started.
    #[error("seed {seed}: the seeds' log in {dir} pins the key {pinned} for this seed, but {dir}/identity.key holds {key}, so every other seed would refuse it. Restore the identity.key this seed had (from a backup) and start it again. If that key is lost, a majority of seeds must accept the new one: on the host of each, run `gossipnet seeds rekey {seed} --key {key} --data-dir <that seed's data dir>`; then move {dir}/raft.redb away and start this seed again, to catch up from the others (docs/SECURITY.md, \"Seed keys\")")]
    KeyMismatch {
        seed: SocketAddr,
        dir: PathBuf,
        pinned: PublicKey,
        key: PublicKey,
    },
    /// The config lists other seeds than the log in the data directory
    /// commits. Nothing was started: running on would split the cluster
    /// silently.
    #[error(transparent)]
    SeedListMismatch(Box<SeedListMismatch>),
}

/// A seed's config and its log name different seeds.
#[derive(Debug, thiserror::Error)]
#[error("seed {seed}: the config lists the seeds {configured}, but the seeds' log in {dir} commits the seeds {committed}. A seed never runs with a seed list that its log contradicts. Either restore the config to {committed} and start the seeds again, then change the seeds of the running cluster with `gossipnet seeds add ADDR`, `gossipnet seeds remove ADDR` or `gossipnet seeds replace OLD NEW`{suggestion}; or, to throw this seed's log away, move {dir}/raft.redb away and start it again (README, \"Changing the seeds\")")]
pub struct SeedListMismatch {
    pub seed: SocketAddr,
    pub dir: PathBuf,
    pub committed: String,
    pub configured: String,
    /// The command that makes the config's list, when one does.
    pub suggestion: String,
}

/// Where this seed stands in the cluster when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Its log names it a seed, or no running seed knows a cluster and
    /// it forms one with the seeds of its config.
    Member,
    /// Its log is empty, and a running seed reports a cluster that does
    /// not count it as a voter: it waits, forming nothing, until the
    /// cluster adds it (`gossipnet seeds add`).
    WaitingToJoin { cluster: Vec<SocketAddr> },
    /// Its log is empty, but the running cluster counts it as a voter: it
    /// lost its data. It catches up, and casts no vote until it holds
    /// everything the leader has committed.
    Rejoining { cluster: Vec<SocketAddr> },
}

/// What a seed that lost its log answers a leader of a term it cannot
/// yet trust.
const STALE_TERM: &str =
    "this seed lost its log and takes entries only from a leader of the latest term the other seeds report";

/// RPCs from other seeds answered at once; more are refused as busy, so a
/// stalled log cannot pile up tasks.
const MAX_RPCS_IN_FLIGHT: usize = 128;
/// How long a forwarded proposal may wait for its commit on the leader.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Queued RPCs to other seeds before the driver takes them.
const OUTGOING_QUEUE: usize = 256;
/// RPCs from other seeds waiting for Raft.
const INCOMING_QUEUE: usize = 256;

/// Timings for a LAN or one machine: a leader that stops heartbeating is
/// replaced within about a second, which bounds how long registrations
/// stall when the leader dies.
fn raft_config() -> Config {
    Config {
        cluster_name: "gossipnet-seeds".into(),
        heartbeat_interval: 100,
        election_timeout_min: 500,
        election_timeout_max: 1000,
        // Snapshot every 1000 entries so that a returning seed catches up
        // from a snapshot plus a short log, and the log stays small.
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1000),
        max_in_snapshot_log_to_keep: 1000,
        // Snapshot bytes travel as a JSON array of numbers, up to 4
        // characters a byte: 64 KiB stays well under the 1 MiB frame limit.
        snapshot_max_chunk_size: 64 * 1024,
        max_payload_entries: 200,
        ..Config::default()
    }
}

/// Starts this seed's Raft node with its log in `data_dir`. `key` is the
/// seed's identity key: if the log already pins another one for it, the
/// seed does not start ([`ConsensusError::KeyMismatch`]).
pub async fn start(
    me: SocketAddr,
    seeds: &[SocketAddr],
    data_dir: &Path,
    key: PublicKey,
    network_key: Option<NetworkKey>,
) -> Result<(ConsensusLink, ConsensusHandle), ConsensusError> {
    std::fs::create_dir_all(data_dir).map_err(|source| ConsensusError::DataDir {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let path = data_dir.join("raft.redb");
    let (applied_tx, applied_rx) = mpsc::unbounded_channel();
    let (log, sm) = store::open::<TypeConfig, Directory>(&path, Some(applied_tx.clone())).map_err(
        |source| ConsensusError::Store {
            path: path.clone(),
            source,
        },
    )?;
    if let Some(pinned) = sm.state().seed_key(&me).filter(|p| *p != key) {
        return Err(ConsensusError::KeyMismatch {
            seed: me,
            dir: data_dir.to_path_buf(),
            pinned,
            key,
        });
    }
    // The core starts from what was applied before the restart.
    let _ = applied_tx.send(Applied::Snapshot {
        last_index: sm.last_applied_index().unwrap_or(0),
        state: sm.state(),
    });
    let addrs: Arc<BTreeMap<u64, SocketAddr>> =
        Arc::new(seeds.iter().map(|s| (node_id(*s), *s)).collect());
    let (outgoing_tx, outgoing_rx) = mpsc::channel(OUTGOING_QUEUE);
    let network = SeedNetwork {
        outgoing: outgoing_tx.clone(),
    };
    let config = Arc::new(
        raft_config()
            .validate()
            .map_err(|e| ConsensusError::Raft(e.to_string()))?,
    );
    let raft = Raft::new(node_id(me), config, network, log, sm.clone())
        .await
        .map_err(|e| ConsensusError::Raft(e.to_string()))?;
    let configured: BTreeSet<SocketAddr> = seeds.iter().copied().collect();
    // The committed seed sets, as the log in the data dir applied them.
    let applied = sm.state();
    let committed: Vec<BTreeSet<SocketAddr>> = applied
        .voter_sets()
        .into_iter()
        .filter(|set| !set.is_empty())
        .cloned()
        .collect();
    let catching_up = Arc::new(AtomicBool::new(false));
    // Until the other seeds have said which term they are in, a seed that
    // lost its log takes entries from nobody.
    let min_term = Arc::new(AtomicU64::new(u64::MAX));
    let standing = if committed.is_empty() {
        // An empty log: a new cluster, a seed being added, or a seed
        // that lost its data. Only the running seeds can tell.
        match running_cluster(me, seeds, network_key.as_ref()).await {
            None => {
                let members: BTreeMap<u64, BasicNode> = seeds
                    .iter()
                    .map(|s| (node_id(*s), BasicNode::new(s.to_string())))
                    .collect();
                let _ = raft.initialize(members).await;
                Standing::Member
            }
            Some((cluster, true)) => {
                catching_up.store(true, Ordering::SeqCst);
                Standing::Rejoining { cluster }
            }
            Some((cluster, false)) => Standing::WaitingToJoin { cluster },
        }
    } else {
        let with_learners = |set: &BTreeSet<SocketAddr>| {
            let mut all = set.clone();
            all.extend(applied.learners());
            all
        };
        // During a change (two sets) either side's list is right.
        let agrees = committed
            .iter()
            .any(|set| *set == configured || with_learners(set) == configured);
        if !agrees {
            let _ = raft.shutdown().await;
            let now = committed.last().cloned().unwrap_or_default();
            let added: Vec<_> = configured.difference(&now).collect();
            let removed: Vec<_> = now.difference(&configured).collect();
            let suggestion = match (added.as_slice(), removed.as_slice()) {
                ([add], [remove]) => format!(" (here: `gossipnet seeds replace {remove} {add}`)"),
                ([add], []) => format!(" (here: `gossipnet seeds add {add}`)"),
                ([], [remove]) => format!(" (here: `gossipnet seeds remove {remove}`)"),
                _ => " one seed at a time".to_string(),
            };
            return Err(ConsensusError::SeedListMismatch(Box::new(
                SeedListMismatch {
                    seed: me,
                    dir: data_dir.to_path_buf(),
                    committed: list(&now),
                    configured: list(&configured),
                    suggestion,
                },
            )));
        }
        Standing::Member
    };

    let (proposals_tx, proposals_rx) = mpsc::unbounded_channel();
    let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
    let (status_tx, status_rx) = mpsc::channel(16);
    let (leader_tx, leader_rx) = watch::channel(None);
    tokio::spawn(propose(raft.clone(), proposals_rx, outgoing_tx.clone()));
    tokio::spawn(serve(
        raft.clone(),
        incoming_rx,
        addrs.clone(),
        catching_up.clone(),
        min_term.clone(),
    ));
    tokio::spawn(watch_leader(raft.clone(), leader_tx, addrs.clone()));
    tokio::spawn(change_seeds(raft.clone(), sm.clone(), me));
    if let Standing::Rejoining { cluster } = &standing {
        tokio::spawn(catch_up(
            raft.clone(),
            sm.clone(),
            addrs.clone(),
            (me, cluster.clone(), outgoing_tx.clone()),
            network_key,
            catching_up.clone(),
            min_term,
        ));
    }
    tokio::spawn(answer_status(
        raft.clone(),
        sm,
        status_rx,
        addrs,
        me,
        catching_up,
    ));
    Ok((
        ConsensusLink {
            proposals: proposals_tx,
            applied: applied_rx,
            leader: leader_rx,
            outgoing: outgoing_rx,
            incoming: incoming_tx,
            status: status_tx,
        },
        ConsensusHandle { raft, standing },
    ))
}

/// How long a starting seed with an empty log waits for each other seed
/// to say whether a cluster runs.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks the other seeds of the config whether a cluster runs: the first
/// that reports committed entries names its voting seeds, and whether
/// `me` is one of them. `None`: no seed reports a cluster (they are new
/// too, or not running).
async fn running_cluster(
    me: SocketAddr,
    seeds: &[SocketAddr],
    network_key: Option<&NetworkKey>,
) -> Option<(Vec<SocketAddr>, bool)> {
    let asks = seeds.iter().filter(|s| **s != me).map(|seed| {
        let (seed, network_key) = (*seed, network_key.cloned());
        async move {
            let answer = tokio::time::timeout(
                PROBE_TIMEOUT,
                crate::status::ask(seed, network_key.as_ref()),
            );
            match answer.await {
                Ok(Ok(status)) if status["commit_index"].as_u64().unwrap_or(0) > 0 => Some(status),
                _ => None,
            }
        }
    });
    let status = futures_first(asks).await?;
    let parse = |v: &Value| -> Vec<SocketAddr> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str()?.parse().ok())
            .collect()
    };
    let cluster = parse(&status["seeds"]);
    let voter = cluster.contains(&me);
    Some((cluster, voter))
}

/// The first `Some` of `futures`, all run at once.
async fn futures_first<F, T>(futures: impl Iterator<Item = F>) -> Option<T>
where
    F: std::future::Future<Output = Option<T>> + Send + 'static,
    T: Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for f in futures {
        set.spawn(f);
    }
    while let Some(done) = set.join_next().await {
        if let Ok(Some(value)) = done {
            return Some(value);
        }
    }
    None
}

/// How often the leader looks for approved seed changes, and a rejoining
/// seed for the leader's commit index.
const SEED_CHANGE_POLL: Duration = Duration::from_millis(200);
/// Rounds of [`SEED_CHANGE_POLL`] between a catching-up seed's dials to
/// the others: 2 s.
const ANNOUNCE_EVERY: u64 = 10;
/// How long a new seed may take to catch up as a learner before the
/// leader gives up this round (and tries again).
const LEARNER_CATCH_UP: Duration = Duration::from_secs(60);

/// On the leader: carries out each seed change a majority approved. A new
/// seed first joins as a learner and catches up (openraft `add_learner`,
/// blocking); then one `change_membership` makes the new set, through
/// joint consensus (old and new set must both agree on every entry in
/// between), so there are never two majorities. The membership entries,
/// applied as `Seeds` commands, mark the change done in the directory. A
/// new leader takes up whatever is still approved.
async fn change_seeds(
    raft: Raft<TypeConfig>,
    sm: store::StateMachineStore<TypeConfig, Directory>,
    me: SocketAddr,
) {
    let my_id = node_id(me);
    loop {
        tokio::time::sleep(SEED_CHANGE_POLL).await;
        let metrics = raft.metrics().borrow().clone();
        if metrics.running_state.is_err() {
            return;
        }
        if metrics.current_leader != Some(my_id) {
            continue;
        }
        let membership = metrics.membership_config.membership().clone();
        let sets = voter_sets(&membership);
        let [voters] = sets.as_slice() else {
            continue; // a change is under way
        };
        let directory = sm.state();
        // A voting seed that lost its log: the leader's record of what it
        // holds is wrong (openraft never lowers it), so it is removed,
        // which drops that record; the directory then approves adding it
        // back, as a learner first.
        if let Some(lost) = directory.rejoining_seeds().find(|s| voters.contains(s)) {
            let target: BTreeSet<u64> = voters
                .iter()
                .filter(|s| **s != lost)
                .map(|s| node_id(*s))
                .collect();
            let removal = raft.change_membership(target, false);
            match tokio::time::timeout(LEARNER_CATCH_UP, removal).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing_line(&format!("{me}: {lost} not taken out yet: {e}")),
                Err(_) => tracing_line(&format!("{me}: {lost} not taken out in time")),
            }
            continue;
        }
        let Some(change) = directory.approved_seed_changes().next() else {
            continue;
        };
        if let Err(e) = make_seed_change(&raft, &membership, voters, change).await {
            // The change stays approved; the next round tries again.
            tracing_line(&format!("{me}: seed change \"{change}\" not made yet: {e}"));
        }
    }
}

async fn make_seed_change(
    raft: &Raft<TypeConfig>,
    membership: &Membership<u64, BasicNode>,
    voters: &BTreeSet<SocketAddr>,
    change: SeedChange,
) -> Result<(), String> {
    if let Some(add) = change.add {
        let id = node_id(add);
        let known = membership.get_node(&id).is_some();
        if !known || !voters.contains(&add) {
            let added = raft.add_learner(id, BasicNode::new(add.to_string()), true);
            tokio::time::timeout(LEARNER_CATCH_UP, added)
                .await
                .map_err(|_| {
                    format!("{add} did not catch up within {LEARNER_CATCH_UP:?}; is it running?")
                })?
                .map_err(|e| e.to_string())?;
        }
    }
    let target: BTreeSet<u64> = change.target(voters).iter().map(|s| node_id(*s)).collect();
    tokio::time::timeout(LEARNER_CATCH_UP, raft.change_membership(target, false))
        .await
        .map_err(|_| "the new seed set did not commit in time".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// One line on standard error, for the operator.
fn tracing_line(line: &str) {
    eprintln!("gossipnet {line}");
}

/// On a seed that lost its log. It forgot which terms it promised and
/// which entries it acknowledged, so first it asks the other seeds their
/// terms, until enough have answered that any majority it was part of
/// has a member among them (n - majority + 1 of the others); from then on
/// it takes entries only from a leader of at least the latest of those
/// terms, which a stale leader is not. Then it waits until it holds every
/// entry such a leader has committed, and votes again. Meanwhile it casts
/// no vote: a leader found meanwhile was elected without it, by seeds
/// that kept their logs, so its commit index covers every committed
/// entry.
async fn catch_up(
    raft: Raft<TypeConfig>,
    sm: store::StateMachineStore<TypeConfig, Directory>,
    addrs: Arc<BTreeMap<u64, SocketAddr>>,
    (me, cluster, outgoing): (SocketAddr, Vec<SocketAddr>, mpsc::Sender<OutgoingRpc>),
    network_key: Option<NetworkKey>,
    catching_up: Arc<AtomicBool>,
    min_term: Arc<AtomicU64>,
) {
    tracing_line(&format!(
        "{me}: this seed's log is empty but the cluster counts it as a seed: it lost its data. It casts no vote, and takes entries only from a current leader, until it holds every committed entry"
    ));
    let others: Vec<SocketAddr> = cluster.iter().copied().filter(|s| *s != me).collect();
    let needed = cluster.len() - crate::proto::majority(cluster.len()) + 1;
    let ask = |seed: SocketAddr| {
        let key = network_key.clone();
        async move {
            let asked = tokio::time::timeout(PROBE_TIMEOUT, crate::status::ask(seed, key.as_ref()));
            asked.await.ok().and_then(Result::ok)
        }
    };
    // Asks the leader, through each seed, to take this seed out of the
    // voters and add it back as a learner. This dials every seed, so that
    // one that pins another key for this seed refuses it, and says so
    // with the rekey command (`seed_key_refused`).
    // Only while it holds nothing: once entries come, the leader's record
    // of it is right again, and asking once more would only take it out
    // anew.
    let announce = || {
        if sm.last_applied_index().unwrap_or(0) > 0 {
            return;
        }
        for seed in &others {
            let rpc = RaftRpc::Propose(Command::SeedRejoin { seed: me });
            let (outgoing, seed) = (outgoing.clone(), *seed);
            tokio::spawn(async move { call(&outgoing, seed, &rpc, PROBE_TIMEOUT).await });
        }
    };
    let term = loop {
        announce();
        let mut terms = Vec::new();
        for seed in &others {
            if let Some(status) = ask(*seed).await {
                terms.extend(status["term"].as_u64());
            }
        }
        if terms.len() >= needed {
            break terms.into_iter().max().unwrap_or(0);
        }
        if raft.metrics().borrow().running_state.is_err() {
            return;
        }
        tokio::time::sleep(SEED_CHANGE_POLL).await;
    };
    // The leader's record of what this seed holds is from before the
    // loss, and openraft never lowers it: entries would never come, or
    // the answer would trip the leader. So this seed takes none until the
    // log has taken it out of the voters, which drops that record.
    let me_text = me.to_string();
    for round in 0u64.. {
        if round % ANNOUNCE_EVERY == 0 {
            announce();
        }
        let mut out = false;
        for seed in &others {
            if let Some(status) = ask(*seed).await {
                let listed = |field: &str| {
                    status[field]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|s| s.as_str() == Some(&me_text)))
                };
                let formed = status["commit_index"].as_u64().unwrap_or(0) > 0;
                out |= formed && (!listed("seeds") || listed("learners"));
            }
        }
        if out {
            break;
        }
        if raft.metrics().borrow().running_state.is_err() {
            return;
        }
        tokio::time::sleep(SEED_CHANGE_POLL).await;
    }
    min_term.store(term, Ordering::SeqCst);
    tracing_line(&format!(
        "{me}: taken out of the voters; the other seeds are at term {term}, and this seed takes entries from a leader of that term or later"
    ));
    let mut target = None;
    loop {
        tokio::time::sleep(SEED_CHANGE_POLL).await;
        let metrics = raft.metrics().borrow().clone();
        if metrics.running_state.is_err() {
            return;
        }
        let Some(leader) = metrics
            .current_leader
            .filter(|l| *l != node_id(me))
            .and_then(|id| addr_of(&metrics, &addrs, id))
        else {
            continue;
        };
        if target.is_none() {
            if let Some(status) = ask(leader).await {
                let leads = status["leader"].as_str() == Some(leader.to_string().as_str());
                if leads && status["term"].as_u64() >= Some(term) {
                    target = status["commit_index"].as_u64();
                }
            }
        }
        let Some(needed) = target else {
            continue;
        };
        if sm.last_applied_index().unwrap_or(0) >= needed {
            catching_up.store(false, Ordering::SeqCst);
            tracing_line(&format!(
                "{me}: caught up with leader {leader} (entry {needed}); this seed votes again"
            ));
            return;
        }
    }
}

/// The body of a RAFT_REQUEST.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RaftRpc {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A follower forwards a command to the leader.
    Propose(Command),
}

struct SeedNetwork {
    outgoing: mpsc::Sender<OutgoingRpc>,
}

struct SeedConnection {
    target_id: u64,
    target: Option<SocketAddr>,
    outgoing: mpsc::Sender<OutgoingRpc>,
}

impl RaftNetworkFactory<TypeConfig> for SeedNetwork {
    type Network = SeedConnection;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> SeedConnection {
        SeedConnection {
            target_id: target,
            target: node.addr.parse().ok(),
            outgoing: self.outgoing.clone(),
        }
    }
}

fn io_error(text: impl Into<String>) -> std::io::Error {
    std::io::Error::other(text.into())
}

/// Sends `rpc` to `target` through the driver and waits for the answer.
async fn call(
    outgoing: &mpsc::Sender<OutgoingRpc>,
    target: SocketAddr,
    rpc: &RaftRpc,
    ttl: Duration,
) -> Result<Value, String> {
    let body = serde_json::to_value(rpc).map_err(|e| e.to_string())?;
    let (reply, answer) = oneshot::channel();
    outgoing
        .send(OutgoingRpc {
            target,
            body,
            reply,
        })
        .await
        .map_err(|_| "the node is shutting down".to_string())?;
    match tokio::time::timeout(ttl, answer).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err("the node is shutting down".into()),
        Err(_) => Err(format!("no answer within {ttl:?}")),
    }
}

impl SeedConnection {
    async fn request<T, E>(
        &self,
        rpc: RaftRpc,
        option: RPCOption,
    ) -> Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        T: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let Some(target) = self.target else {
            return Err(RPCError::Unreachable(Unreachable::new(&io_error(
                "seed address does not parse",
            ))));
        };
        let body = call(&self.outgoing, target, &rpc, option.hard_ttl())
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&io_error(e))))?;
        let result: Result<T, RaftError<u64, E>> = serde_json::from_value(body)
            .map_err(|e| RPCError::Network(NetworkError::new(&io_error(e.to_string()))))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target_id, e)))
    }
}

impl RaftNetwork<TypeConfig> for SeedConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.request(RaftRpc::AppendEntries(rpc), option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.request(RaftRpc::InstallSnapshot(rpc), option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.request(RaftRpc::Vote(rpc), option).await
    }
}

fn to_json<T: Serialize>(value: T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Answers other seeds' RPCs. Only seeds of the config are served, and a
/// forwarded vote must be the forwarding seed's own.
async fn serve(
    raft: Raft<TypeConfig>,
    mut incoming: mpsc::Receiver<IncomingRpc>,
    addrs: Arc<BTreeMap<u64, SocketAddr>>,
    catching_up: Arc<AtomicBool>,
    min_term: Arc<AtomicU64>,
) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_RPCS_IN_FLIGHT));
    while let Some(rpc) = incoming.recv().await {
        let raft = raft.clone();
        let membership = raft.metrics().borrow().membership_config.clone();
        let membership = membership.membership();
        let from_id = node_id(rpc.from);
        let is_seed =
            addrs.values().any(|a| *a == rpc.from) || membership.get_node(&from_id).is_some();
        // A seed removed from the voters, or never among them, cannot
        // stand for election: it would only disturb the others.
        let may_campaign = membership.voter_ids().next().is_none()
            || membership.voter_ids().any(|id| id == from_id);
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            let _ = rpc.reply.send(to_json(Err::<(), _>("busy; retry later")));
            continue;
        };
        let catching_up = catching_up.clone();
        let min_term = min_term.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let reply = match serde_json::from_value::<RaftRpc>(rpc.body) {
                _ if !is_seed => to_json(Err::<(), _>(format!("{} is not a seed", rpc.from))),
                // A seed that lost its log also forgot the terms it
                // promised: a stale leader (one restored from its own old
                // vote) could count it towards a majority. It takes
                // entries only from a leader of a term at least as late
                // as the other seeds report.
                Ok(RaftRpc::AppendEntries(r))
                    if catching_up.load(Ordering::SeqCst)
                        && r.vote.leader_id.get_term() < min_term.load(Ordering::SeqCst) =>
                {
                    to_json(Err::<(), _>(STALE_TERM))
                }
                Ok(RaftRpc::InstallSnapshot(r))
                    if catching_up.load(Ordering::SeqCst)
                        && r.vote.leader_id.get_term() < min_term.load(Ordering::SeqCst) =>
                {
                    to_json(Err::<(), _>(STALE_TERM))
                }
                Ok(RaftRpc::AppendEntries(r)) => to_json(raft.append_entries(r).await),
                // A seed that lost its log has forgotten what it voted and
                // holds none of the entries it acknowledged: its vote could
                // elect a leader that lacks committed entries. It votes
                // again once it has caught up.
                Ok(RaftRpc::Vote(_)) if catching_up.load(Ordering::SeqCst) => {
                    to_json(Err::<(), _>(
                        "this seed lost its log and is catching up; it casts no vote until it has",
                    ))
                }
                Ok(RaftRpc::Vote(_)) if !may_campaign => {
                    to_json(Err::<(), _>(format!("{} is not a voting seed", rpc.from)))
                }
                Ok(RaftRpc::Vote(r)) => to_json(raft.vote(r).await),
                Ok(RaftRpc::InstallSnapshot(r)) => to_json(raft.install_snapshot(r).await),
                Ok(RaftRpc::Propose(
                    Command::Vote { seed, .. }
                    | Command::Rekey { voter: seed, .. }
                    | Command::Leave { seed, .. }
                    | Command::SeedChange { voter: seed, .. }
                    | Command::SeedRejoin { seed },
                )) if seed != rpc.from => {
                    to_json(Err::<(), _>("a seed may forward only its own votes"))
                }
                // A seed pins only its own key, and only the one it proved
                // on the connection: nobody can pin a key it does not hold.
                Ok(RaftRpc::Propose(Command::SeedKey { seed, key }))
                    if seed != rpc.from || Some(key) != rpc.key =>
                {
                    to_json(Err::<(), _>(
                        "a seed may forward only its own key, the one it proved",
                    ))
                }
                // Only a leader names the seeds, from its own config.
                Ok(RaftRpc::Propose(Command::Init { .. })) => {
                    to_json(Err::<(), _>("Init is never forwarded"))
                }
                // Only Raft's own membership entries make the seed set.
                Ok(RaftRpc::Propose(Command::Seeds { .. })) => {
                    to_json(Err::<(), _>("Seeds is never proposed"))
                }
                Ok(RaftRpc::Propose(command)) => {
                    let write = tokio::time::timeout(PROPOSE_TIMEOUT, raft.client_write(command));
                    to_json(match write.await {
                        Ok(result) => result.map(|_| ()).map_err(|e| e.to_string()),
                        Err(_) => Err(format!("not committed within {PROPOSE_TIMEOUT:?}")),
                    })
                }
                Err(e) => to_json(Err::<(), _>(format!("malformed RAFT_REQUEST: {e}"))),
            };
            let _ = rpc.reply.send(reply);
        });
    }
}

/// Appends proposals: directly when this seed leads, else by forwarding to
/// the leader. While no leader is known, as during an election, it waits for
/// one, up to `PROPOSE_TIMEOUT` in all. A proposal that still fails is
/// dropped; the peer's retry makes a new one.
async fn propose(
    raft: Raft<TypeConfig>,
    mut proposals: mpsc::UnboundedReceiver<Command>,
    outgoing: mpsc::Sender<OutgoingRpc>,
) {
    while let Some(command) = proposals.recv().await {
        let raft = raft.clone();
        let outgoing = outgoing.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + PROPOSE_TIMEOUT;
            while tokio::time::Instant::now() < deadline {
                let Err(e) = raft.client_write(command.clone()).await else {
                    return;
                };
                // Only a leader proposes Init; a seed that lost the lead
                // leaves it to the new one.
                let Some(forward) = e.forward_to_leader() else {
                    return;
                };
                if matches!(command, Command::Init { .. } | Command::Seeds { .. }) {
                    return;
                }
                let leader = forward
                    .leader_node
                    .as_ref()
                    .and_then(|n| n.addr.parse::<SocketAddr>().ok());
                if let Some(leader) = leader {
                    let rpc = RaftRpc::Propose(command.clone());
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    if let Ok(answer) = call(&outgoing, leader, &rpc, left).await {
                        if answer.get("Ok").is_some() {
                            return;
                        }
                    }
                }
                // No leader known, or it just changed: wait for the next one.
                let wait = raft.wait(Some(Duration::from_millis(500)));
                let _ = wait
                    .metrics(|m| m.current_leader.is_some(), "a leader")
                    .await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
}

async fn watch_leader(
    raft: Raft<TypeConfig>,
    leader_tx: watch::Sender<Option<SocketAddr>>,
    addrs: Arc<BTreeMap<u64, SocketAddr>>,
) {
    let mut metrics = raft.metrics();
    loop {
        let leader = {
            let m = metrics.borrow();
            m.current_leader.and_then(|id| addr_of(&m, &addrs, id))
        };
        leader_tx.send_if_modified(|current| {
            let changed = *current != leader;
            *current = leader;
            changed
        });
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// This seed's view for `gossipnet status`.
async fn answer_status(
    raft: Raft<TypeConfig>,
    sm: store::StateMachineStore<TypeConfig, Directory>,
    mut requests: mpsc::Receiver<oneshot::Sender<Value>>,
    addrs: Arc<BTreeMap<u64, SocketAddr>>,
    me: SocketAddr,
    catching_up: Arc<AtomicBool>,
) {
    while let Some(reply) = requests.recv().await {
        let metrics = raft.metrics().borrow().clone();
        let directory = sm.state();
        let membership = metrics.membership_config.membership();
        let sets = voter_sets(membership);
        let strings = |set: &BTreeSet<SocketAddr>| -> Vec<String> {
            set.iter().map(|a| a.to_string()).collect()
        };
        // The voting seeds of the log, both sets during a change; before
        // this seed has any log, those of its config.
        let seeds: BTreeSet<SocketAddr> = if sets.is_empty() {
            addrs.values().copied().collect()
        } else {
            sets.iter().flatten().copied().collect()
        };
        let status = serde_json::json!({
            "seed": me.to_string(),
            "leader": metrics.current_leader.and_then(|id| addr_of(&metrics, &addrs, id)).map(|a| a.to_string()),
            "seeds": strings(&seeds),
            "learners": strings(&learners(membership)),
            "voter_sets": sets.iter().map(strings).collect::<Vec<_>>(),
            "catching_up": catching_up.load(Ordering::SeqCst),
            // On the leader: each seed's last entry known to match its own.
            "replication": metrics.replication.as_ref().map(|r| r.iter()
                .filter_map(|(id, matched)| Some((addr_of(&metrics, &addrs, *id)?.to_string(),
                    serde_json::json!(matched.map(|m| m.index)))))
                .collect::<serde_json::Map<_, _>>()),
            "approved_seed_changes": directory.approved_seed_changes().map(|c| c.to_string()).collect::<Vec<_>>(),
            "rejoining": directory.rejoining_seeds().map(|s| s.to_string()).collect::<Vec<_>>(),
            "term": metrics.current_term,
            "commit_index": sm.last_applied_index().unwrap_or(0),
            "peers": directory.peers().map(|(addr, incarnation)| serde_json::json!({
                "addr": addr.to_string(),
                "incarnation": incarnation,
                "links": directory.reported_links(&addr),
            })).collect::<Vec<_>>(),
            "seed_keys": directory.seed_keys()
                .map(|(seed, key)| (seed.to_string(), serde_json::Value::String(key.to_string())))
                .collect::<serde_json::Map<_, _>>(),
            "topology": directory.edges().into_iter()
                .map(|(a, b)| [a.to_string(), b.to_string()])
                .collect::<Vec<_>>(),
        });
        let _ = reply.send(status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_depend_on_the_address_only() {
        let a: SocketAddr = "127.0.0.1:5010".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5011".parse().unwrap();
        assert_eq!(node_id(a), node_id(a));
        assert_ne!(node_id(a), node_id(b));
    }

    #[test]
    fn raft_config_is_valid() {
        raft_config().validate().unwrap();
    }
}
