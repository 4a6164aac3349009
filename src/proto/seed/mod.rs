//! The seed core: the membership directory (R1, R4).
//!
//! A seed keeps the Peer List (PL) and the overlay topology as peers report
//! it, and serves the PL with each peer's degree so that joiners can attach
//! preferentially. A seed never gossips.
//!
//! This walking skeleton records a registration on the peer's word alone;
//! the event says so (`basis: local`). Seed consensus replaces that step.

pub mod directory;

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    net::SocketAddr,
};

use super::{
    event::CommitBasis,
    message::{Message, PeerEntry, Role},
    Core, Event, Output, Timestamp,
};

/// Seeds set no timers yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedTimer {}

/// What a seed knows about one registered peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerRecord {
    pub registered_at: Timestamp,
}

/// The directory: registered peers and the links they report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Directory {
    peers: BTreeMap<SocketAddr, PeerRecord>,
    /// Each peer's own report of its neighbours. An edge counts if either
    /// end reports it, so a link shows up as soon as one side has it.
    reported: BTreeMap<SocketAddr, BTreeSet<SocketAddr>>,
}

impl Directory {
    /// Adds `peer`; false if it was already there.
    pub fn register(&mut self, peer: SocketAddr, now: Timestamp) -> bool {
        if self.peers.contains_key(&peer) {
            return false;
        }
        self.peers.insert(peer, PeerRecord { registered_at: now });
        true
    }

    pub fn contains(&self, peer: &SocketAddr) -> bool {
        self.peers.contains_key(peer)
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Replaces `peer`'s reported neighbour set; false if unchanged.
    pub fn report_links(&mut self, peer: SocketAddr, neighbors: BTreeSet<SocketAddr>) -> bool {
        let previous = self.reported.insert(peer, neighbors.clone());
        previous.as_ref() != Some(&neighbors)
    }

    /// Undirected edges, each once, smaller address first.
    pub fn edges(&self) -> BTreeSet<(SocketAddr, SocketAddr)> {
        self.reported
            .iter()
            .flat_map(|(a, ns)| ns.iter().map(move |b| (*a.min(b), *a.max(b))))
            .filter(|(a, b)| a != b)
            .collect()
    }

    /// The PL with each peer's degree in the recorded topology.
    pub fn peer_list(&self) -> Vec<PeerEntry> {
        let mut degree: BTreeMap<SocketAddr, u32> = BTreeMap::new();
        for (a, b) in self.edges() {
            *degree.entry(a).or_default() += 1;
            *degree.entry(b).or_default() += 1;
        }
        self.peers
            .keys()
            .map(|addr| PeerEntry {
                addr: *addr,
                degree: degree.get(addr).copied().unwrap_or(0),
            })
            .collect()
    }
}

pub struct SeedCore {
    addr: SocketAddr,
    directory: Directory,
    outputs: VecDeque<Output<SeedTimer>>,
}

impl SeedCore {
    pub fn new(addr: SocketAddr) -> Self {
        SeedCore {
            addr,
            directory: Directory::default(),
            outputs: VecDeque::new(),
        }
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
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
}

impl Core for SeedCore {
    type Timer = SeedTimer;

    fn role(&self) -> Role {
        Role::Seed
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn start(&mut self, _now: Timestamp) {}

    fn handle_message(&mut self, from: SocketAddr, msg: Message, now: Timestamp) {
        match msg {
            Message::RegisterRequest {} => {
                self.emit(Event::RegisterRequested { peer: from });
                if self.directory.register(from, now) {
                    self.emit(Event::RegisterCommitted {
                        peer: from,
                        basis: CommitBasis::Local,
                    });
                }
                self.send(from, Message::RegisterAck {});
            }
            Message::PeerListRequest {} => {
                let peers = self.directory.peer_list();
                self.emit(Event::PeerListServed {
                    to: from,
                    peers: peers.len(),
                });
                self.send(from, Message::PeerList { peers });
            }
            Message::LinkReport { neighbors } => {
                if !self.directory.contains(&from) {
                    return self.reject(from, "LINK_REPORT from an unregistered peer".into());
                }
                let neighbors: BTreeSet<SocketAddr> =
                    neighbors.into_iter().filter(|n| *n != from).collect();
                if self.directory.report_links(from, neighbors.clone()) {
                    self.emit(Event::TopologyUpdated {
                        peer: from,
                        neighbors: neighbors.into_iter().collect(),
                    });
                }
            }
            other => self.reject(from, format!("unexpected {} for a seed", other.kind())),
        }
    }

    fn handle_link_up(&mut self, _remote: SocketAddr, _role: Role, _now: Timestamp) {}

    fn handle_link_down(&mut self, _remote: SocketAddr, _now: Timestamp) {}

    fn handle_timer(&mut self, timer: SeedTimer, _now: Timestamp) {
        match timer {}
    }

    fn poll_output(&mut self) -> Option<Output<SeedTimer>> {
        self.outputs.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn drain(core: &mut SeedCore) -> Vec<Output<SeedTimer>> {
        std::iter::from_fn(|| core.poll_output()).collect()
    }

    #[test]
    fn registration_is_recorded_once_and_always_acknowledged() {
        let mut seed = SeedCore::new(addr(5010));
        for _ in 0..2 {
            seed.handle_message(addr(6001), Message::RegisterRequest {}, Timestamp(1));
        }
        let out = drain(&mut seed);
        let acks = out
            .iter()
            .filter(|o| matches!(o, Output::Send { msg: Message::RegisterAck {}, to } if *to == addr(6001)))
            .count();
        let commits = out
            .iter()
            .filter(|o| matches!(o, Output::Event(Event::RegisterCommitted { .. })))
            .count();
        assert_eq!((acks, commits), (2, 1));
        assert_eq!(seed.directory().len(), 1);
    }

    #[test]
    fn peer_list_carries_degrees_from_reported_links() {
        let mut seed = SeedCore::new(addr(5010));
        for p in [6001, 6002, 6003] {
            seed.handle_message(addr(p), Message::RegisterRequest {}, Timestamp(1));
        }
        // 6002 reports both links; 6001 reports one of them as well.
        seed.handle_message(
            addr(6002),
            Message::LinkReport {
                neighbors: vec![addr(6001), addr(6003)],
            },
            Timestamp(2),
        );
        seed.handle_message(
            addr(6001),
            Message::LinkReport {
                neighbors: vec![addr(6002)],
            },
            Timestamp(2),
        );
        drain(&mut seed);
        seed.handle_message(addr(6003), Message::PeerListRequest {}, Timestamp(3));
        let list = drain(&mut seed)
            .into_iter()
            .find_map(|o| match o {
                Output::Send {
                    msg: Message::PeerList { peers },
                    ..
                } => Some(peers),
                _ => None,
            })
            .unwrap();
        let degrees: Vec<_> = list.iter().map(|p| (p.addr.port(), p.degree)).collect();
        assert_eq!(degrees, vec![(6001, 1), (6002, 2), (6003, 1)]);
    }

    #[test]
    fn a_new_report_replaces_the_old_one() {
        let mut dir = Directory::default();
        dir.register(addr(6001), Timestamp(0));
        assert!(dir.report_links(addr(6001), [addr(6002)].into()));
        assert!(!dir.report_links(addr(6001), [addr(6002)].into()));
        assert!(dir.report_links(addr(6001), BTreeSet::new()));
        assert!(dir.edges().is_empty());
    }

    #[test]
    fn link_report_from_an_unregistered_peer_is_refused() {
        let mut seed = SeedCore::new(addr(5010));
        seed.handle_message(
            addr(6001),
            Message::LinkReport {
                neighbors: vec![addr(6002)],
            },
            Timestamp(1),
        );
        let out = drain(&mut seed);
        assert!(out.contains(&Output::Close(addr(6001))));
        assert!(seed.directory().edges().is_empty());
    }

    #[test]
    fn gossip_sent_to_a_seed_closes_that_connection() {
        let mut seed = SeedCore::new(addr(5010));
        seed.handle_message(
            addr(6001),
            Message::Gossip {
                origin: addr(6001),
                msg: "x".into(),
                hops: 0,
            },
            Timestamp(1),
        );
        let out = drain(&mut seed);
        assert!(
            matches!(&out[0], Output::Event(Event::ProtocolError { reason, .. }) if reason.contains("GOSSIP"))
        );
        assert_eq!(out[1], Output::Close(addr(6001)));
    }
}
