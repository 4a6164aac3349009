//! Liveness checks of neighbours (R11, R12).
//!
//! Every `ping_interval` a peer sends each neighbour a PING, and counts a
//! *miss* for each PING still unanswered a ping timeout after it was sent
//! (half an interval; see [`ping_timeout`]). The first miss starts a local
//! suspicion, which is logged but not reported. `ping_misses` consecutive
//! misses make the neighbour *unresponsive*. Any PONG ends the suspicion,
//! even a late one: it proves the process runs (SWIM's rule that an answer
//! to anyone clears a suspect). PONG also carries the neighbour's own
//! neighbours, so each peer knows who else can check on a neighbour.

use std::{net::SocketAddr, time::Duration};

use crate::proto::{
    sorted::{SortedMap, SortedSet},
    Timestamp,
};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Liveness {
    /// When the oldest PING still unanswered was sent.
    pub unanswered_since: Option<Timestamp>,
    /// Whole ping intervals without an answer.
    pub misses: u32,
    /// The neighbour's neighbours, from its last PONG.
    pub neighbors: SortedSet<SocketAddr>,
    /// Its incarnation, from its last PONG.
    pub incarnation: Option<u64>,
}

/// How long a PING may go unanswered before it counts as missed: half the
/// ping interval, so that a miss is judged before the next PING goes out,
/// and the k-th miss comes (k - 1/2) intervals after the first silent PING.
pub fn ping_timeout(interval: Duration) -> Duration {
    interval / 2
}

/// What a count of misses found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Misses {
    /// Neighbours that just missed for the first time.
    pub newly_suspected: Vec<SocketAddr>,
    /// Neighbours that just reached the miss limit.
    pub unresponsive: Vec<SocketAddr>,
}

#[derive(Debug, Default)]
pub struct LivenessTable {
    peers: SortedMap<SocketAddr, Liveness>,
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

    /// A PING for every neighbour, each with a fresh nonce.
    pub fn round(&mut self, now: Timestamp) -> Vec<(SocketAddr, u64)> {
        let peers: Vec<SocketAddr> = self.peers.keys().copied().collect();
        let mut pings = Vec::with_capacity(peers.len());
        for peer in peers {
            let nonce = self.nonce();
            let state = self.peers.get_mut(&peer).expect("listed above");
            state.unanswered_since.get_or_insert(now);
            pings.push((peer, nonce));
        }
        pings
    }

    /// Counts the misses as of `now`: the PINGs, one per `interval` since
    /// the oldest unanswered one, whose [`ping_timeout`] has passed.
    pub fn count_misses(&mut self, now: Timestamp, interval: Duration, miss_limit: u32) -> Misses {
        let mut found = Misses::default();
        let timeout = ping_timeout(interval).as_micros();
        for (peer, state) in &mut self.peers {
            let Some(since) = state.unanswered_since else {
                continue;
            };
            let waited = now.saturating_since(since).as_micros();
            if waited < timeout {
                continue;
            }
            let misses = ((waited - timeout) / interval.as_micros().max(1)) as u32 + 1;
            if misses > state.misses {
                if state.misses == 0 {
                    found.newly_suspected.push(*peer);
                }
                if state.misses < miss_limit && misses >= miss_limit {
                    found.unresponsive.push(*peer);
                }
                state.misses = misses;
            }
        }
        found
    }

    /// Whether `peer` has left a PING unanswered past the ping timeout.
    pub fn is_overdue(&self, peer: &SocketAddr, now: Timestamp, interval: Duration) -> bool {
        self.peers
            .get(peer)
            .and_then(|s| s.unanswered_since)
            .is_some_and(|since| now.saturating_since(since) >= ping_timeout(interval))
    }

    /// A fresh nonce for a PING outside the rounds; the oldest unanswered
    /// PING still counts from when it was sent.
    pub fn extra_ping(&mut self, peer: SocketAddr, now: Timestamp) -> Option<u64> {
        self.peers
            .get_mut(&peer)?
            .unanswered_since
            .get_or_insert(now);
        Some(self.nonce())
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

    fn ms(ms: u64) -> Timestamp {
        Timestamp(ms * 1_000)
    }

    #[test]
    fn a_miss_is_a_ping_unanswered_for_half_an_interval_and_the_limit_is_reached_once() {
        let mut t = LivenessTable::default();
        t.add(a(1), at(0));
        assert_eq!(t.count_misses(ms(499), SEC, 3), Misses::default());
        let m = t.count_misses(ms(500), SEC, 3);
        assert_eq!(m.newly_suspected, vec![a(1)]);
        assert!(m.unresponsive.is_empty());
        t.round(at(1));
        assert!(
            t.count_misses(ms(1500), SEC, 3).newly_suspected.is_empty(),
            "suspected twice"
        );
        t.round(at(2));
        assert_eq!(t.count_misses(ms(2500), SEC, 3).unresponsive, vec![a(1)]);
        assert!(
            t.count_misses(ms(3500), SEC, 3).unresponsive.is_empty(),
            "unresponsive reported twice"
        );
        assert_eq!(t.get(&a(1)).unwrap().misses, 4);
    }

    #[test]
    fn an_answer_within_the_timeout_is_no_miss() {
        let mut t = LivenessTable::default();
        t.add(a(1), Timestamp(900_000));
        t.round(at(1));
        assert!(!t.answered(a(1), 1, []));
        assert!(t.count_misses(ms(1500), SEC, 3).newly_suspected.is_empty());
        assert!(!t.is_overdue(&a(1), ms(1500), SEC));
    }

    #[test]
    fn a_late_count_counts_every_interval_it_covers() {
        let mut t = LivenessTable::default();
        t.add(a(1), at(0));
        let m = t.count_misses(ms(2500), SEC, 3);
        assert_eq!((m.newly_suspected.len(), m.unresponsive.len()), (1, 1));
        assert!(t.is_overdue(&a(1), ms(2500), SEC));
    }

    #[test]
    fn any_pong_ends_the_misses_and_teaches_the_neighbours() {
        let mut t = LivenessTable::default();
        t.add(a(1), at(0));
        t.count_misses(at(1), SEC, 3);
        assert!(t.answered(a(1), 9, [a(2), a(3), a(1)]));
        let state = t.get(&a(1)).unwrap();
        assert_eq!((state.misses, state.incarnation), (0, Some(9)));
        assert_eq!(
            state.neighbors,
            [a(2), a(3)].into(),
            "a peer is not its own neighbour"
        );
        // Answering in time: no miss, nothing to clear.
        t.round(at(2));
        assert!(!t.answered(a(1), 9, []));
        assert!(t.count_misses(at(3), SEC, 3).newly_suspected.is_empty());
    }

    #[test]
    fn every_round_pings_every_neighbour_with_a_fresh_nonce() {
        let mut t = LivenessTable::default();
        let first = t.add(a(1), at(0));
        t.add(a(2), at(0));
        let pings = t.round(at(1));
        let nonces: Vec<u64> = pings.iter().map(|(_, n)| *n).collect();
        assert_eq!(pings.len(), 2);
        assert!(!nonces.contains(&first));
        assert_ne!(nonces[0], nonces[1]);
    }
}
