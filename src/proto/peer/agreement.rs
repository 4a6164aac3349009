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
//!
//! A confirmation counts only with the confirmer's signed statement, which
//! the report carries to the seeds (see [`evidence`](crate::proto::evidence)).
//! The asking peer cannot check the signature (it does not know the
//! confirmer's key); the seeds do.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
};

use crate::proto::{majority, message::Statement};

/// A neighbour's answer about the suspect, as the round counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// It found the suspect unresponsive, and signed so.
    Confirmed(Statement),
    /// It saw the suspect answer.
    Alive,
    /// It is not the suspect's neighbour after all.
    NotNeighbor,
    /// It could not be asked, or gave no usable answer.
    Unreachable,
}

/// One round of questions about one suspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// Asked and not yet answered.
    pending: BTreeSet<SocketAddr>,
    /// The other neighbours that found it unresponsive, and signed so.
    /// This peer counts as one more confirmer; it makes its own statement
    /// when it reports.
    statements: BTreeMap<SocketAddr, Statement>,
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
    /// Enough evidence to report: the other confirmers' statements (this
    /// peer adds its own), and the neighbours that could not be asked.
    Report {
        statements: Vec<Statement>,
        unreachable: Vec<SocketAddr>,
    },
    /// Answers are still due.
    Waiting,
}

impl Agreement {
    /// This peer found the suspect unresponsive; `others` are the
    /// suspect's other neighbours, to ask.
    pub fn new(others: BTreeSet<SocketAddr>) -> Agreement {
        Agreement {
            asked: others.len(),
            pending: others,
            statements: BTreeMap::new(),
            unreachable: BTreeSet::new(),
            strangers: 0,
            seen_alive: false,
        }
    }

    /// The neighbours to ask.
    pub fn to_ask(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.pending.iter().copied()
    }

    /// Records `from`'s answer. Returns false if `from` was not waited
    /// for.
    pub fn record(&mut self, from: SocketAddr, answer: Answer) -> bool {
        if !self.pending.remove(&from) {
            return false;
        }
        match answer {
            Answer::Confirmed(statement) => {
                self.statements.insert(from, statement);
            }
            Answer::NotNeighbor => self.strangers += 1,
            Answer::Alive => self.seen_alive = true,
            Answer::Unreachable => {
                self.unreachable.insert(from);
            }
        }
        true
    }

    /// This peer and the neighbours that signed.
    fn confirmers(&self) -> usize {
        1 + self.statements.len()
    }

    /// The suspect's neighbours as far as this round knows: this peer, and
    /// those asked that did not disown it.
    fn neighbors(&self) -> usize {
        1 + self.asked - self.strangers
    }

    pub fn decide(&self) -> Decision {
        let needed = majority(self.neighbors());
        let statements = self.statements.values().cloned().collect();
        if self.seen_alive {
            Decision::Alive
        } else if self.confirmers() >= needed {
            Decision::Report {
                statements,
                unreachable: Vec::new(),
            }
        } else if !self.pending.is_empty() {
            Decision::Waiting
        } else {
            // Every neighbour asked either confirmed, disowned the suspect,
            // or could not be asked: the unreachable ones make up the
            // majority, if the seeds find them gone too.
            Decision::Report {
                statements,
                unreachable: self.unreachable.iter().copied().collect(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::message::Signature;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn set(ports: &[u16]) -> BTreeSet<SocketAddr> {
        ports.iter().map(|p| a(*p)).collect()
    }

    /// `port`'s statement; the round does not check signatures.
    fn statement(port: u16) -> Statement {
        Statement {
            addr: a(port),
            at: u64::from(port),
            signature: Signature::from_bytes([port as u8; 64]),
        }
    }

    fn confirmed(port: u16) -> Answer {
        Answer::Confirmed(statement(port))
    }

    /// A report with the statements of `confirmers`, this peer's own apart.
    fn report(confirmers: &[u16], unreachable: &[u16]) -> Decision {
        Decision::Report {
            statements: confirmers.iter().map(|p| statement(*p)).collect(),
            unreachable: unreachable.iter().map(|p| a(*p)).collect(),
        }
    }

    #[test]
    fn a_suspect_with_a_single_neighbour_is_reported_on_that_neighbours_own_check() {
        let round = Agreement::new(BTreeSet::new());
        assert_eq!(round.to_ask().count(), 0);
        assert_eq!(round.decide(), report(&[], &[]));
    }

    #[test]
    fn two_of_three_neighbours_make_a_majority_without_waiting_for_the_third() {
        let mut round = Agreement::new(set(&[2, 3]));
        assert_eq!(round.decide(), Decision::Waiting);
        assert!(round.record(a(2), confirmed(2)));
        assert_eq!(round.decide(), report(&[2], &[]));
    }

    #[test]
    fn a_hub_needs_a_majority_of_all_its_neighbours() {
        let others: Vec<u16> = (2..=10).collect();
        let mut round = Agreement::new(set(&others));
        // 10 neighbours: a majority is 6.
        for p in 2..=5 {
            round.record(a(p), confirmed(p));
        }
        assert_eq!(round.decide(), Decision::Waiting, "5 of 10 is no majority");
        round.record(a(6), confirmed(6));
        assert_eq!(round.decide(), report(&[2, 3, 4, 5, 6], &[]));
    }

    #[test]
    fn one_alive_answer_outweighs_any_number_of_confirmers() {
        let mut round = Agreement::new(set(&[2, 3, 4]));
        round.record(a(2), confirmed(2));
        assert_eq!(round.decide(), Decision::Waiting, "2 of 4 is no majority");
        round.record(a(3), Answer::Alive);
        assert_eq!(round.decide(), Decision::Alive);
        round.record(a(4), confirmed(4));
        assert_eq!(round.decide(), Decision::Alive);
    }

    #[test]
    fn a_dead_confirmer_is_named_unreachable_once_every_answer_is_in() {
        // The suspect and a neighbour died together; the other neighbour
        // has already dropped its link.
        let mut round = Agreement::new(set(&[2, 3]));
        round.record(a(2), Answer::Unreachable);
        assert_eq!(round.decide(), Decision::Waiting);
        round.record(a(3), Answer::NotNeighbor);
        assert_eq!(round.decide(), report(&[], &[2]));

        let mut round = Agreement::new(set(&[2]));
        round.record(a(2), Answer::Unreachable);
        assert_eq!(round.decide(), report(&[], &[2]));
    }

    #[test]
    fn a_neighbour_that_disowns_the_suspect_leaves_the_count() {
        // The PONG was stale: 3 is no longer linked to the suspect.
        let mut round = Agreement::new(set(&[2, 3]));
        round.record(a(3), Answer::NotNeighbor);
        assert_eq!(round.decide(), Decision::Waiting, "1 of 2 is no majority");
        round.record(a(2), confirmed(2));
        assert_eq!(round.decide(), report(&[2], &[]));
    }

    #[test]
    fn answers_from_anyone_not_asked_are_ignored() {
        let mut round = Agreement::new(set(&[2, 3]));
        assert!(!round.record(a(9), confirmed(9)));
        assert!(round.record(a(2), confirmed(2)));
        assert!(!round.record(a(2), confirmed(2)), "twice");
        assert_eq!(round.decide(), report(&[2], &[]));
    }
}
