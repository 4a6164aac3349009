//! Liveness checks of neighbours (R11, R12).
//!
//! Every `ping_interval` a peer sends each neighbour a PING. A neighbour
//! that has left PINGs unanswered for a whole interval has *missed* once,
//! for two intervals twice, and so on; counting from the time rather than
//! from rounds means a link that came up just before a round is not
//! suspected for a PING it had no time to answer. The first miss starts a
//! local suspicion, which is logged but not reported. `ping_misses` misses
//! make the neighbour *unresponsive*. Any PONG ends the suspicion,
//! even a late one: it proves the process runs (SWIM's rule that an answer
//! to anyone clears a suspect). PONG also carries the neighbour's own
//! neighbours, so each peer knows who else can check on a neighbour.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    time::Duration,
};

use crate::proto::Timestamp;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Liveness {
    /// When the oldest PING still unanswered was sent.
    pub unanswered_since: Option<Timestamp>,
    /// Whole ping intervals without an answer.
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
    pub fn add(&mut self, peer: SocketAddr, now: Timestamp) -> u64 {
        self.peers.insert(
            peer,
            Liveness {
                unanswered_since: Some(now),
                ..Liveness::default()
            },
        );
        self.nonce()
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

    /// Counts the misses as of `now`, then pings everyone.
    pub fn round(&mut self, now: Timestamp, interval: Duration, miss_limit: u32) -> Round {
        let mut round = Round::default();
        let peers: Vec<SocketAddr> = self.peers.keys().copied().collect();
        for peer in peers {
            let nonce = self.nonce();
            let state = self.peers.get_mut(&peer).expect("listed above");
            let since = *state.unanswered_since.get_or_insert(now);
            let waited = now.saturating_since(since).as_micros();
            let misses = (waited / interval.as_micros().max(1)) as u32;
            if misses > state.misses {
                if state.misses == 0 {
                    round.newly_suspected.push(peer);
                }
                if state.misses < miss_limit && misses >= miss_limit {
                    round.unresponsive.push(peer);
                }
                state.misses = misses;
            }
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
        state.unanswered_since = None;
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

    const SEC: Duration = Duration::from_secs(1);

    fn at(secs: u64) -> Timestamp {
        Timestamp(secs * 1_000_000)
    }

    #[test]
    fn misses_count_whole_silent_intervals_and_reach_the_limit_once() {
        let mut t = LivenessTable::default();
        t.add(a(1), at(0));
        let r = t.round(at(1), SEC, 3);
        assert_eq!(r.newly_suspected, vec![a(1)]);
        assert!(r.unresponsive.is_empty());
        assert!(
            t.round(at(2), SEC, 3).newly_suspected.is_empty(),
            "suspected twice"
        );
        assert_eq!(t.round(at(3), SEC, 3).unresponsive, vec![a(1)]);
        assert!(
            t.round(at(4), SEC, 3).unresponsive.is_empty(),
            "unresponsive reported twice"
        );
        assert_eq!(t.get(&a(1)).unwrap().misses, 4);
    }

    #[test]
    fn a_link_that_came_up_just_before_a_round_is_not_suspected() {
        let mut t = LivenessTable::default();
        t.add(a(1), Timestamp(900_000));
        let r = t.round(at(1), SEC, 3);
        assert!(r.newly_suspected.is_empty(), "suspected after 0.1 s");
        assert_eq!(r.pings.len(), 1);
    }

    #[test]
    fn a_late_round_counts_every_interval_it_covers() {
        let mut t = LivenessTable::default();
        t.add(a(1), at(0));
        let r = t.round(at(3), SEC, 3);
        assert_eq!((r.newly_suspected.len(), r.unresponsive.len()), (1, 1));
    }

    #[test]
    fn any_pong_ends_the_misses_and_teaches_the_neighbours() {
        let mut t = LivenessTable::default();
        t.add(a(1), at(0));
        t.round(at(1), SEC, 3);
        assert!(t.answered(a(1), 9, [a(2), a(3), a(1)]));
        let state = t.get(&a(1)).unwrap();
        assert_eq!((state.misses, state.incarnation), (0, Some(9)));
        assert_eq!(
            state.neighbors,
            [a(2), a(3)].into(),
            "a peer is not its own neighbour"
        );
        // Answering in time: no miss, nothing to clear.
        t.round(at(2), SEC, 3);
        assert!(!t.answered(a(1), 9, []));
        assert!(t.round(at(3), SEC, 3).newly_suspected.is_empty());
    }

    #[test]
    fn every_round_pings_every_neighbour_with_a_fresh_nonce() {
        let mut t = LivenessTable::default();
        let first = t.add(a(1), at(0));
        t.add(a(2), at(0));
        let r = t.round(at(1), SEC, 3);
        let nonces: Vec<u64> = r.pings.iter().map(|(_, n)| *n).collect();
        assert_eq!(r.pings.len(), 2);
        assert!(!nonces.contains(&first));
        assert_ne!(nonces[0], nonces[1]);
    }
}
