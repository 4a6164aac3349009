//! Liveness checks of neighbours (R11, R12).
//!
//! Every `ping_interval` a peer sends each neighbour a PING. A PING still
//! unanswered at the next round is a *miss*. The first miss starts a local
//! suspicion, which is logged but not reported. `ping_misses` consecutive
//! misses make the neighbour *unresponsive*. Any PONG ends the suspicion,
//! even a late one: it proves the process runs (SWIM's rule that an answer
//! to anyone clears a suspect). PONG also carries the neighbour's own
//! neighbours, so each peer knows who else can check on a neighbour.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Liveness {
    /// Nonce of the last PING not yet answered.
    pub waiting_for: Option<u64>,
    /// Rounds in a row that ended with a PING unanswered.
    pub misses: u32,
    /// The neighbour's neighbours, from its last PONG.
    pub neighbors: BTreeSet<SocketAddr>,
    /// Its incarnation, from its last PONG.
    pub incarnation: Option<u64>,
}

/// What one round of checks found, and the PINGs to send.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub pings: Vec<(SocketAddr, u64)>,
    /// Neighbours that just missed for the first time.
    pub newly_suspected: Vec<SocketAddr>,
    /// Neighbours that just reached the miss limit.
    pub unresponsive: Vec<SocketAddr>,
}

#[derive(Debug, Default)]
pub struct LivenessTable {
    peers: BTreeMap<SocketAddr, Liveness>,
    next_nonce: u64,
}

impl LivenessTable {
    fn nonce(&mut self) -> u64 {
        self.next_nonce += 1;
        self.next_nonce
    }

    /// Starts checking `peer`; returns the nonce of a first PING to send at
    /// once, which also learns its neighbours early.
    pub fn add(&mut self, peer: SocketAddr) -> u64 {
        let nonce = self.nonce();
        self.peers.insert(
            peer,
            Liveness {
                waiting_for: Some(nonce),
                ..Liveness::default()
            },
        );
        nonce
    }

    pub fn remove(&mut self, peer: &SocketAddr) {
        self.peers.remove(peer);
    }

    pub fn get(&self, peer: &SocketAddr) -> Option<&Liveness> {
        self.peers.get(peer)
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Counts a miss for every PING still unanswered, then pings everyone.
    pub fn round(&mut self, miss_limit: u32) -> Round {
        let mut round = Round::default();
        let peers: Vec<SocketAddr> = self.peers.keys().copied().collect();
        for peer in peers {
            let nonce = self.nonce();
            let state = self.peers.get_mut(&peer).expect("listed above");
            if state.waiting_for.is_some() {
                state.misses += 1;
                if state.misses == 1 {
                    round.newly_suspected.push(peer);
                }
                if state.misses == miss_limit {
                    round.unresponsive.push(peer);
                }
            }
            state.waiting_for = Some(nonce);
            round.pings.push((peer, nonce));
        }
        round
    }

    /// Records a PONG. Returns true if the neighbour had missed, so that its
    /// suspicion ends now.
    pub fn answered(
        &mut self,
        peer: SocketAddr,
        incarnation: u64,
        neighbors: impl IntoIterator<Item = SocketAddr>,
    ) -> bool {
        let Some(state) = self.peers.get_mut(&peer) else {
            return false;
        };
        let was_suspected = state.misses > 0;
        state.waiting_for = None;
        state.misses = 0;
        state.incarnation = Some(incarnation);
        state.neighbors = neighbors.into_iter().filter(|n| *n != peer).collect();
        was_suspected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn misses_count_only_unanswered_rounds_and_reach_the_limit_once() {
        let mut t = LivenessTable::default();
        t.add(a(1));
        // The first PING is outstanding: the first round counts a miss.
        let r = t.round(3);
        assert_eq!(r.newly_suspected, vec![a(1)]);
        assert!(r.unresponsive.is_empty());
        assert!(t.round(3).newly_suspected.is_empty(), "suspected twice");
        assert_eq!(t.round(3).unresponsive, vec![a(1)]);
        assert!(
            t.round(3).unresponsive.is_empty(),
            "unresponsive reported twice"
        );
        assert_eq!(t.get(&a(1)).unwrap().misses, 4);
    }

    #[test]
    fn any_pong_ends_the_misses_and_teaches_the_neighbours() {
        let mut t = LivenessTable::default();
        t.add(a(1));
        t.round(3);
        assert!(t.answered(a(1), 9, [a(2), a(3), a(1)]));
        let state = t.get(&a(1)).unwrap();
        assert_eq!((state.misses, state.incarnation), (0, Some(9)));
        assert_eq!(
            state.neighbors,
            [a(2), a(3)].into(),
            "a peer is not its own neighbour"
        );
        // Answering in time: no miss, nothing to clear.
        t.round(3);
        assert!(!t.answered(a(1), 9, []));
        assert!(t.round(3).newly_suspected.is_empty());
    }

    #[test]
    fn every_round_pings_every_neighbour_with_a_fresh_nonce() {
        let mut t = LivenessTable::default();
        let first = t.add(a(1));
        t.add(a(2));
        let r = t.round(3);
        let nonces: Vec<u64> = r.pings.iter().map(|(_, n)| *n).collect();
        assert_eq!(r.pings.len(), 2);
        assert!(!nonces.contains(&first));
        assert_ne!(nonces[0], nonces[1]);
    }
}
