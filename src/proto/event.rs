//! Events: what a node reports about itself.
//!
//! Each event is written twice: as a prose line on the console and in the
//! output file (R17, R18), and as one JSON line in the event stream (R19,
//! docs/EVENTS.md). Event names and fields are a public interface: add new
//! ones, never rename.

use std::{fmt, net::SocketAddr};

use serde::{Deserialize, Serialize};

use super::message::{PeerEntry, Role};

/// How a seed came to record a membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitBasis {
    /// This seed alone recorded it, on the peer's word. No consensus among
    /// seeds is involved yet.
    Local,
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
    /// A dial or a send to `peer` failed.
    ConnectFailed {
        peer: SocketAddr,
        reason: String,
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
    /// The peer is now in this seed's Peer List.
    RegisterCommitted {
        peer: SocketAddr,
        basis: CommitBasis,
    },
    /// A peer reported its neighbours; the seed's topology record changed.
    TopologyUpdated {
        peer: SocketAddr,
        neighbors: Vec<SocketAddr>,
    },
    /// The seed sent its Peer List to a peer.
    PeerListServed {
        to: SocketAddr,
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
            Event::ConnectFailed { peer, reason } => {
                write!(f, "CONNECT to {peer} failed: {reason}")
            }
            Event::Shutdown => write!(f, "Shutting down."),
            Event::Registered { seeds } => write!(f, "REGISTERED with seeds {}", addrs(seeds)),
            Event::RegisterWaiting { answered, needed } => write!(
                f,
                "waiting for seeds: {answered} of {needed} acknowledged the registration; retrying"
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
            Event::UserLineRefused { bytes, limit } => write!(
                f,
                "typed line of {bytes} bytes not gossiped: the limit is {limit} bytes"
            ),
            Event::GossipCreated { msg } => write!(f, "GOSSIP created: '{msg}'"),
            Event::GossipReceived {
                msg, from, hops, ..
            } => write!(
                f,
                "GOSSIP received (first time): '{msg}' from {from} after {hops} hops"
            ),
            Event::RegisterRequested { peer } => write!(f, "REGISTER request from {peer}"),
            Event::RegisterCommitted { peer, basis } => match basis {
                CommitBasis::Local => write!(
                    f,
                    "REGISTER {peer} recorded by this seed alone (no seed consensus yet)"
                ),
            },
            Event::TopologyUpdated { peer, neighbors } => {
                write!(f, "TOPOLOGY {peer} links to {}", addrs(neighbors))
            }
            Event::PeerListServed { to, peers } => {
                write!(f, "PEER LIST of {peers} peers sent to {to}")
            }
        }
    }
}
