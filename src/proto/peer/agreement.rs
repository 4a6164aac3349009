//! Peer-level agreement on a suspect (R13).
//!
//! A peer that finds a neighbour unresponsive does not report it alone. It
//! asks the suspect's other neighbours, as the suspect last named them in a
//! PONG, to check it themselves. It reports only once a majority of the
//! suspect's neighbours, itself included, found it unresponsive. A
//! neighbour that cannot be asked at all (dead too, perhaps) is named as
//! *unreachable*: once every question is settled, the report may count on
//! the seeds to leave such neighbours out, because each seed probes them
//! itself before it does. Any neighbour that saw the suspect alive ends the
//! suspicion; that is the peer layer's refutation (R16).

use std::{collections::BTreeSet, net::SocketAddr};

use crate::proto::{majority, message::Verdict};

/// One round of questions about one suspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// Asked and not yet answered.
    pending: BTreeSet<SocketAddr>,
    /// Found it unresponsive; this peer is always the first.
    confirmers: BTreeSet<SocketAddr>,
    /// Could not be asked.
    unreachable: BTreeSet<SocketAddr>,
    /// Answered that they are not the suspect's neighbour after all.
    strangers: usize,
    /// Some neighbour saw the suspect answer.
    seen_alive: bool,
    /// Asked in all.
    asked: usize,
}

/// Where a round stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Some neighbour saw the suspect answer: the suspicion ends.
    Alive,
    /// Enough evidence to report.
    Report {
        confirmers: Vec<SocketAddr>,
        unreachable: Vec<SocketAddr>,
    },
    /// Answers are still due.
    Waiting,
}

impl Agreement {
    /// `me` found the suspect unresponsive; `others` are the suspect's
    /// other neighbours, to ask.
    pub fn new(me: SocketAddr, others: BTreeSet<SocketAddr>) -> Agreement {
        Agreement {
            asked: others.len(),
            pending: others,
            confirmers: BTreeSet::from([me]),
            unreachable: BTreeSet::new(),
            strangers: 0,
            seen_alive: false,
        }
    }

    /// The neighbours to ask.
    pub fn to_ask(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.pending.iter().copied()
    }

    /// Records `from`'s answer; `None` means it could not be asked.
    /// Returns false if `from` was not waited for.
    pub fn record(&mut self, from: SocketAddr, verdict: Option<Verdict>) -> bool {
        if !self.pending.remove(&from) {
            return false;
        }
        match verdict {
            Some(Verdict::Unresponsive) => {
                self.confirmers.insert(from);
            }
            Some(Verdict::NotNeighbor) => self.strangers += 1,
            Some(Verdict::Alive) => self.seen_alive = true,
            None => {
                self.unreachable.insert(from);
            }
        }
        true
    }

    /// The suspect's neighbours as far as this round knows: this peer, and
    /// those asked that did not disown it.
    fn neighbors(&self) -> usize {
        1 + self.asked - self.strangers
    }

    pub fn decide(&self) -> Decision {
        let needed = majority(self.neighbors());
        let confirmers = self.confirmers.iter().copied().collect();
        if self.seen_alive {
            Decision::Alive
        } else if self.confirmers.len() >= needed {
            Decision::Report {
                confirmers,
                unreachable: Vec::new(),
            }
        } else if !self.pending.is_empty() {
            Decision::Waiting
        } else {
            // Every neighbour asked either confirmed, disowned the suspect,
            // or could not be asked: the unreachable ones make up the
            // majority, if the seeds find them gone too.
            Decision::Report {
                confirmers,
                unreachable: self.unreachable.iter().copied().collect(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn set(ports: &[u16]) -> BTreeSet<SocketAddr> {
        ports.iter().map(|p| a(*p)).collect()
    }

    fn report(confirmers: &[u16], unreachable: &[u16]) -> Decision {
        Decision::Report {
            confirmers: confirmers.iter().map(|p| a(*p)).collect(),
            unreachable: unreachable.iter().map(|p| a(*p)).collect(),
        }
    }

    #[test]
    fn a_suspect_with_a_single_neighbour_is_reported_on_that_neighbours_own_check() {
        let round = Agreement::new(a(1), BTreeSet::new());
        assert_eq!(round.to_ask().count(), 0);
        assert_eq!(round.decide(), report(&[1], &[]));
    }

    #[test]
    fn two_of_three_neighbours_make_a_majority_without_waiting_for_the_third() {
        let mut round = Agreement::new(a(1), set(&[2, 3]));
        assert_eq!(round.decide(), Decision::Waiting);
        assert!(round.record(a(2), Some(Verdict::Unresponsive)));
        assert_eq!(round.decide(), report(&[1, 2], &[]));
    }

    #[test]
    fn a_hub_needs_a_majority_of_all_its_neighbours() {
        let others: Vec<u16> = (2..=10).collect();
        let mut round = Agreement::new(a(1), set(&others));
        // 10 neighbours: a majority is 6.
        for p in 2..=5 {
            round.record(a(p), Some(Verdict::Unresponsive));
        }
        assert_eq!(round.decide(), Decision::Waiting, "5 of 10 is no majority");
        round.record(a(6), Some(Verdict::Unresponsive));
        assert_eq!(round.decide(), report(&[1, 2, 3, 4, 5, 6], &[]));
    }

    #[test]
    fn one_alive_answer_outweighs_any_number_of_confirmers() {
        let mut round = Agreement::new(a(1), set(&[2, 3, 4]));
        round.record(a(2), Some(Verdict::Unresponsive));
        assert_eq!(round.decide(), Decision::Waiting, "2 of 4 is no majority");
        round.record(a(3), Some(Verdict::Alive));
        assert_eq!(round.decide(), Decision::Alive);
        round.record(a(4), Some(Verdict::Unresponsive));
        assert_eq!(round.decide(), Decision::Alive);
    }

    #[test]
    fn a_dead_confirmer_is_named_unreachable_once_every_answer_is_in() {
        // The suspect and a neighbour died together; the other neighbour
        // has already dropped its link.
        let mut round = Agreement::new(a(1), set(&[2, 3]));
        round.record(a(2), None);
        assert_eq!(round.decide(), Decision::Waiting);
        round.record(a(3), Some(Verdict::NotNeighbor));
        assert_eq!(round.decide(), report(&[1], &[2]));

        let mut round = Agreement::new(a(1), set(&[2]));
        round.record(a(2), None);
        assert_eq!(round.decide(), report(&[1], &[2]));
    }

    #[test]
    fn a_neighbour_that_disowns_the_suspect_leaves_the_count() {
        // The PONG was stale: 3 is no longer linked to the suspect.
        let mut round = Agreement::new(a(1), set(&[2, 3]));
        round.record(a(3), Some(Verdict::NotNeighbor));
        assert_eq!(round.decide(), Decision::Waiting, "1 of 2 is no majority");
        round.record(a(2), Some(Verdict::Unresponsive));
        assert_eq!(round.decide(), report(&[1, 2], &[]));
    }

    #[test]
    fn answers_from_anyone_not_asked_are_ignored() {
        let mut round = Agreement::new(a(1), set(&[2, 3]));
        assert!(!round.record(a(9), Some(Verdict::Unresponsive)));
        assert!(round.record(a(2), Some(Verdict::Unresponsive)));
        assert!(!round.record(a(2), Some(Verdict::Unresponsive)), "twice");
        assert_eq!(round.decide(), report(&[1, 2], &[]));
    }
}
