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
    collections::BTreeMap,
    io::Cursor,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use openraft::{
    error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable},
    network::{RPCOption, RaftNetwork, RaftNetworkFactory},
    raft::{
        AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest,
        InstallSnapshotResponse, VoteRequest, VoteResponse,
    },
    BasicNode, Config, Raft,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, watch};

use crate::proto::{message::PublicKey, Command, Directory, Outcome};
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
}

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
    let members: BTreeMap<u64, BasicNode> = seeds
        .iter()
        .map(|s| (node_id(*s), BasicNode::new(s.to_string())))
        .collect();
    // Every seed tries; on a seed whose log already exists this is refused,
    // which is what we want.
    let _ = raft.initialize(members).await;

    let (proposals_tx, proposals_rx) = mpsc::unbounded_channel();
    let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
    let (status_tx, status_rx) = mpsc::channel(16);
    let (leader_tx, leader_rx) = watch::channel(None);
    tokio::spawn(propose(raft.clone(), proposals_rx, outgoing_tx));
    tokio::spawn(serve(raft.clone(), incoming_rx, addrs.clone()));
    tokio::spawn(watch_leader(raft.clone(), leader_tx, addrs.clone()));
    tokio::spawn(answer_status(raft.clone(), sm, status_rx, addrs, me));
    Ok((
        ConsensusLink {
            proposals: proposals_tx,
            applied: applied_rx,
            leader: leader_rx,
            outgoing: outgoing_rx,
            incoming: incoming_tx,
            status: status_tx,
        },
        ConsensusHandle { raft },
    ))
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
) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_RPCS_IN_FLIGHT));
    while let Some(rpc) = incoming.recv().await {
        let raft = raft.clone();
        let is_seed = addrs.values().any(|a| *a == rpc.from);
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            let _ = rpc.reply.send(to_json(Err::<(), _>("busy; retry later")));
            continue;
        };
        tokio::spawn(async move {
            let _permit = permit;
            let reply = match serde_json::from_value::<RaftRpc>(rpc.body) {
                _ if !is_seed => to_json(Err::<(), _>(format!("{} is not a seed", rpc.from))),
                Ok(RaftRpc::AppendEntries(r)) => to_json(raft.append_entries(r).await),
                Ok(RaftRpc::Vote(r)) => to_json(raft.vote(r).await),
                Ok(RaftRpc::InstallSnapshot(r)) => to_json(raft.install_snapshot(r).await),
                Ok(RaftRpc::Propose(
                    Command::Vote { seed, .. }
                    | Command::Rekey { voter: seed, .. }
                    | Command::Leave { seed, .. },
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
                if matches!(command, Command::Init { .. }) {
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
        let leader = metrics
            .borrow()
            .current_leader
            .and_then(|id| addrs.get(&id).copied());
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
) {
    while let Some(reply) = requests.recv().await {
        let metrics = raft.metrics().borrow().clone();
        let directory = sm.state();
        let mut seeds: Vec<SocketAddr> = addrs.values().copied().collect();
        seeds.sort();
        let seeds: Vec<String> = seeds.iter().map(|a| a.to_string()).collect();
        let status = serde_json::json!({
            "seed": me.to_string(),
            "leader": metrics.current_leader.and_then(|id| addrs.get(&id)).map(|a| a.to_string()),
            "term": metrics.current_term,
            "commit_index": sm.last_applied_index().unwrap_or(0),
            "seeds": seeds,
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
