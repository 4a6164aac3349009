//! A picture of the whole network assembled from the nodes' event streams.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    net::SocketAddr,
};

use crate::{
    output::EventRecord,
    proto::{Event, Role},
};

/// How many of `links` touch each address.
pub fn degrees<'a>(
    links: impl IntoIterator<Item = &'a (SocketAddr, SocketAddr)>,
) -> BTreeMap<SocketAddr, usize> {
    let mut degrees = BTreeMap::new();
    for (a, b) in links {
        *degrees.entry(*a).or_default() += 1;
        *degrees.entry(*b).or_default() += 1;
    }
    degrees
}

#[derive(Debug, Clone, Default)]
pub struct NodeState {
    pub role: Option<Role>,
    /// When the peer's first overlay link came up: from then on gossip
    /// can reach it.
    pub joined_at: Option<u64>,
    pub neighbors: BTreeSet<SocketAddr>,
    /// Gossip messages created or received for the first time.
    pub messages_seen: u64,
    /// Killed, or shut down.
    pub down: bool,
}

/// Event files are read one after another, so a receipt can be seen before
/// the creation it answers; both are kept until they meet.
#[derive(Debug, Clone, Default)]
struct MessageState {
    /// Who created it and when, once that event has been read.
    created: Option<(SocketAddr, u64)>,
    /// First-receipt time at each receiver.
    receivers: BTreeMap<SocketAddr, u64>,
}

#[derive(Debug, Default)]
pub struct NetworkView {
    nodes: BTreeMap<SocketAddr, NodeState>,
    /// Keyed by origin and text, as the Message List is.
    messages: HashMap<(SocketAddr, String), MessageState>,
    /// Suspicions started, over all peers.
    suspicions: u64,
    /// Each peer under suspicion now, with the peers that suspect it.
    suspected_by: BTreeMap<SocketAddr, BTreeSet<SocketAddr>>,
    /// Removals each seed committed; every seed logs each one.
    removals_by_seed: BTreeMap<SocketAddr, u64>,
}

/// Counters for the `stats` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub summary: Summary,
    pub suspicions: u64,
    /// Removals committed, as the seed that logged most of them saw.
    pub removals: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.summary;
        let ratio = s.delivery_percent();
        writeln!(f, "peers up:       {}/{}", s.peers_up, s.peers_total)?;
        writeln!(f, "links:          {}", s.links)?;
        writeln!(f, "messages:       {}", s.messages)?;
        writeln!(
            f,
            "delivered:      {}/{} ({ratio:.1}%)",
            s.delivered, s.expected
        )?;
        writeln!(f, "suspicions:     {}", self.suspicions)?;
        write!(f, "removals:       {}", self.removals)
    }
}

/// The one-line figures `up` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub peers_up: usize,
    pub peers_total: usize,
    pub links: usize,
    pub messages: usize,
    pub delivered: usize,
    pub expected: usize,
    /// Time from creation to the last expected receipt, over the messages
    /// that reached every peer expected to get them: median and maximum.
    pub spread_p50_us: Option<u64>,
    pub spread_max_us: Option<u64>,
}

impl Summary {
    /// Receipts over receipts expected; 100 when none is expected.
    pub fn delivery_percent(&self) -> f64 {
        if self.expected == 0 {
            100.0
        } else {
            100.0 * self.delivered as f64 / self.expected as f64
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ratio = self.delivery_percent();
        write!(
            f,
            "peers {}/{} up | links {} | gossip: {} messages, delivered {}/{} ({ratio:.1}%)",
            self.peers_up,
            self.peers_total,
            self.links,
            self.messages,
            self.delivered,
            self.expected
        )?;
        if let (Some(p50), Some(max)) = (self.spread_p50_us, self.spread_max_us) {
            let ms = |us: u64| us as f64 / 1000.0;
            write!(f, " | spread p50 {:.1} ms, max {:.1} ms", ms(p50), ms(max))?;
        }
        Ok(())
    }
}

impl NetworkView {
    pub fn apply(&mut self, record: &EventRecord) {
        let node = self.nodes.entry(record.node).or_default();
        match &record.event {
            Event::Listening { role } => node.role = Some(*role),
            Event::NeighborUp { peer } => {
                node.joined_at.get_or_insert(record.ts_us);
                node.neighbors.insert(*peer);
            }
            Event::NeighborDown { peer } => {
                node.neighbors.remove(peer);
            }
            Event::Shutdown => node.down = true,
            Event::SuspicionStarted { peer, .. } => {
                self.suspicions += 1;
                self.suspected_by
                    .entry(*peer)
                    .or_default()
                    .insert(record.node);
            }
            Event::SuspicionCleared { peer } | Event::SuspicionAbandoned { peer, .. } => {
                self.drop_suspicion(*peer, record.node);
            }
            Event::DeadConfirmed { peer } => {
                self.suspected_by.remove(peer);
            }
            Event::RemoveCommitted { .. } => {
                *self.removals_by_seed.entry(record.node).or_default() += 1;
            }
            Event::GossipCreated { msg } => {
                node.messages_seen += 1;
                self.messages
                    .entry((record.node, msg.clone()))
                    .or_default()
                    .created = Some((record.node, record.ts_us));
            }
            Event::GossipReceived { msg, origin, .. } => {
                node.messages_seen += 1;
                self.messages
                    .entry((*origin, msg.clone()))
                    .or_default()
                    .receivers
                    .insert(record.node, record.ts_us);
            }
            _ => {}
        }
    }

    pub fn mark_down(&mut self, node: SocketAddr) {
        let state = self.nodes.entry(node).or_default();
        state.down = true;
        state.neighbors.clear();
        // A dead peer suspects nobody any more.
        let suspects: Vec<SocketAddr> = self.suspected_by.keys().copied().collect();
        for suspect in suspects {
            self.drop_suspicion(suspect, node);
        }
    }

    fn drop_suspicion(&mut self, suspect: SocketAddr, by: SocketAddr) {
        if let Some(by_whom) = self.suspected_by.get_mut(&suspect) {
            by_whom.remove(&by);
            if by_whom.is_empty() {
                self.suspected_by.remove(&suspect);
            }
        }
    }

    /// Some live peer suspects `peer` now.
    pub fn is_suspected(&self, peer: &SocketAddr) -> bool {
        self.suspected_by.contains_key(peer)
    }

    pub fn node(&self, addr: &SocketAddr) -> Option<&NodeState> {
        self.nodes.get(addr)
    }

    pub fn stats(&self) -> Stats {
        Stats {
            summary: self.summary(),
            suspicions: self.suspicions,
            removals: self.removals_by_seed.values().copied().max().unwrap_or(0),
        }
    }

    /// Links between live peers, each once, smaller address first: both
    /// ends' event streams are read, and either one's word counts.
    pub fn links(&self) -> BTreeSet<(SocketAddr, SocketAddr)> {
        let live: BTreeSet<&SocketAddr> = self.live_peers().map(|(a, _)| a).collect();
        self.live_peers()
            .flat_map(|(a, n)| n.neighbors.iter().map(move |b| (*a.min(b), *a.max(b))))
            .filter(|(a, b)| live.contains(a) && live.contains(b))
            .collect()
    }

    fn live_peers(&self) -> impl Iterator<Item = (&SocketAddr, &NodeState)> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.role == Some(Role::Peer) && !n.down)
    }

    pub fn summary(&self) -> Summary {
        let links = self.links();
        // A live peer should get every message created after it joined,
        // except its own.
        let (mut delivered, mut expected) = (0, 0);
        let mut spreads = Vec::new();
        for m in self.messages.values() {
            let Some((origin, created_at)) = m.created else {
                continue;
            };
            let mut complete = true;
            let mut last = created_at;
            for (addr, peer) in self.live_peers() {
                if *addr != origin && peer.joined_at.is_some_and(|t| t <= created_at) {
                    expected += 1;
                    match m.receivers.get(addr) {
                        Some(at) => {
                            delivered += 1;
                            last = last.max(*at);
                        }
                        None => complete = false,
                    }
                }
            }
            if complete && last > created_at {
                spreads.push(last - created_at);
            }
        }
        spreads.sort_unstable();
        Summary {
            peers_up: self.live_peers().count(),
            peers_total: self
                .nodes
                .values()
                .filter(|n| n.role == Some(Role::Peer))
                .count(),
            links: links.len(),
            messages: self
                .messages
                .values()
                .filter(|m| m.created.is_some())
                .count(),
            delivered,
            expected,
            spread_p50_us: spreads.get(spreads.len() / 2).copied(),
            spread_max_us: spreads.last().copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(port: u16, ts_us: u64, event: Event) -> EventRecord {
        EventRecord {
            ts_us,
            node: SocketAddr::from(([127, 0, 0, 1], port)),
            event,
        }
    }

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_peer_is_suspected_while_some_live_peer_suspects_it() {
        let mut view = NetworkView::default();
        let suspect = |reason: &str| Event::SuspicionStarted {
            peer: a(6003),
            reason: reason.into(),
        };
        view.apply(&rec(6001, 1, suspect("lost")));
        view.apply(&rec(6002, 2, suspect("no pong")));
        assert!(view.is_suspected(&a(6003)));
        view.apply(&rec(6001, 3, Event::SuspicionCleared { peer: a(6003) }));
        assert!(view.is_suspected(&a(6003)), "6002 still suspects it");
        // The last suspecter dies: nobody suspects it any more.
        view.mark_down(a(6002));
        assert!(!view.is_suspected(&a(6003)));
        view.apply(&rec(6001, 4, suspect("lost")));
        view.apply(&rec(6001, 5, Event::DeadConfirmed { peer: a(6003) }));
        assert!(!view.is_suspected(&a(6003)));
        assert_eq!(view.stats().suspicions, 3);
    }

    #[test]
    fn delivery_counts_only_peers_that_had_joined() {
        let mut view = NetworkView::default();
        for port in [1, 2, 3] {
            view.apply(&rec(port, 0, Event::Listening { role: Role::Peer }));
        }
        view.apply(&rec(1, 10, Event::NeighborUp { peer: a(2) }));
        view.apply(&rec(2, 10, Event::NeighborUp { peer: a(1) }));
        view.apply(&rec(3, 50, Event::NeighborUp { peer: a(2) }));
        // The receipt is read before the creation, as happens across files.
        view.apply(&rec(
            2,
            21,
            Event::GossipReceived {
                msg: "m".into(),
                from: a(1),
                origin: a(1),
                hops: 1,
            },
        ));
        view.apply(&rec(1, 20, Event::GossipCreated { msg: "m".into() }));
        let s = view.summary();
        // Peer 3 joined after "m" was created, so only peer 2 expected it.
        assert_eq!((s.delivered, s.expected), (1, 1));
        assert_eq!((s.spread_p50_us, s.spread_max_us), (Some(1), Some(1)));
        assert_eq!((s.peers_up, s.links, s.messages), (3, 2, 1));
        view.mark_down(a(2));
        let s = view.summary();
        assert_eq!((s.peers_up, s.links, s.expected), (2, 0, 0));
    }
}
