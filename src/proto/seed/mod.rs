//! The seed core: the membership directory (R1 to R4, R17).
//!
//! A seed never gossips. It keeps a replica of the [`Directory`], the
//! replicated state machine of Peer List, topology and pending votes, and
//! changes it only by applying entries of the seeds' shared log.
//!
//! Registration:
//! 1. A peer sends REGISTER_REQUEST to a majority of seeds.
//! 2. Each seed checks it. The address must not be a seed's, and a fresh
//!    dial-back PROBE must find a peer of that incarnation listening there.
//! 3. The seed proposes its own vote `Vote { Add(peer), seed: me }`.
//! 4. The change commits when floor(n/2)+1 distinct seeds have voted.
//! 5. A seed acknowledges the peer only once it has *applied* that commit.
//!
//! So no seed and no minority of seeds can add a peer. Removal uses the same
//! votes with `Remove`.

pub mod directory;

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    net::SocketAddr,
};

use directory::{Change, ChangeKind, Command, Directory, Incarnation, Outcome};

use super::{
    event::CommitBasis,
    message::{Message, Role},
    Core, Event, Output, Timestamp,
};

/// Seeds retry only the cluster's first entry; retrying registrations is
/// the peers' job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedTimer {
    /// The leader checks that its `Init` was applied, and proposes it again
    /// if not.
    InitRetry,
}

/// 1 s: a lost `Init` only delays the first registrations.
const INIT_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

pub struct SeedCore {
    addr: SocketAddr,
    /// All seeds, from the config; named in the log's `Init` entry.
    seeds: Vec<SocketAddr>,
    directory: Directory,
    leader: Option<SocketAddr>,
    /// Peers that asked this seed to register them, and the incarnation
    /// they asked for: they get REGISTER_ACK when that Add is applied.
    awaiting_ack: BTreeMap<SocketAddr, Incarnation>,
    /// Dial-back checks of registering peers under way.
    probing: BTreeSet<(SocketAddr, Incarnation)>,
    /// This seed's own checks of reported-dead peers under way.
    checking_dead: BTreeSet<(SocketAddr, Incarnation)>,
    /// An InitRetry timer is pending.
    init_retry_armed: bool,
    outputs: VecDeque<Output<SeedTimer>>,
}

impl SeedCore {
    pub fn new(addr: SocketAddr, seeds: Vec<SocketAddr>) -> Self {
        SeedCore {
            addr,
            seeds,
            directory: Directory::default(),
            leader: None,
            awaiting_ack: BTreeMap::new(),
            probing: BTreeSet::new(),
            checking_dead: BTreeSet::new(),
            init_retry_armed: false,
            outputs: VecDeque::new(),
        }
    }

    /// The committed directory as this seed has applied it.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    pub fn leader(&self) -> Option<SocketAddr> {
        self.leader
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

    fn on_register_request(&mut self, peer: SocketAddr, incarnation: Incarnation) {
        self.emit(Event::RegisterRequested { peer });
        if self.seeds.contains(&peer) {
            return self.reject(peer, "REGISTER_REQUEST from a seed's address".into());
        }
        match self.directory.incarnation_of(&peer) {
            Some(current) if current == incarnation => {
                // Already committed: a retry after our ack was lost.
                return self.send(peer, Message::RegisterAck {});
            }
            Some(current) if current > incarnation => {
                return self.reject(
                    peer,
                    format!("incarnation {incarnation} is older than the registered {current}"),
                );
            }
            _ => {}
        }
        self.awaiting_ack.insert(peer, incarnation);
        if self.probing.insert((peer, incarnation)) {
            self.outputs.push_back(Output::Probe {
                target: peer,
                incarnation,
            });
        }
    }

    fn propose_vote(&mut self, kind: ChangeKind, peer: SocketAddr, incarnation: Incarnation) {
        let change = Change {
            kind,
            peer,
            incarnation,
        };
        self.emit(match kind {
            ChangeKind::Add => Event::RegisterProposed {
                peer,
                seed: self.addr,
            },
            ChangeKind::Remove => Event::RemoveProposed {
                peer,
                seed: self.addr,
            },
        });
        self.outputs.push_back(Output::Propose(Command::Vote {
            change,
            seed: self.addr,
        }));
    }

    /// Checks a dead report's evidence (R15): the reporter is among the
    /// confirmers, every confirmer is a neighbour of the suspect in the
    /// committed topology, and they are a majority of its neighbours. Then
    /// this seed probes the suspect itself; only a failed probe earns its
    /// Remove vote. So a minority of the suspect's neighbours cannot get it
    /// removed, and neither can any number of them while it answers.
    fn on_dead_report(
        &mut self,
        from: SocketAddr,
        report: String,
        suspect: SocketAddr,
        incarnation: Incarnation,
        confirmers: Vec<SocketAddr>,
    ) {
        self.emit(Event::DeadReportReceived {
            peer: suspect,
            from,
            report,
            confirmers: confirmers.clone(),
        });
        let confirmers: BTreeSet<SocketAddr> = confirmers.into_iter().collect();
        let neighbors = self.directory.neighbors_of(&suspect);
        let needed = directory::majority(neighbors.len());
        let refusal = if self.directory.incarnation_of(&suspect) != Some(incarnation) {
            Some(format!(
                "{suspect} is not registered at incarnation {incarnation}"
            ))
        } else if !confirmers.contains(&from) {
            Some("the reporter is not among the confirmers".to_string())
        } else if let Some(stranger) = confirmers.iter().find(|c| !neighbors.contains(c)) {
            Some(format!(
                "{stranger} is not a neighbour of {suspect} in the committed topology"
            ))
        } else if confirmers.len() < needed {
            Some(format!(
                "{} of its {} neighbours confirm; a majority needs {needed}",
                confirmers.len(),
                neighbors.len()
            ))
        } else {
            None
        };
        if let Some(reason) = refusal {
            return self.emit(Event::DeadReportRefused {
                peer: suspect,
                from,
                reason,
            });
        }
        if self.checking_dead.insert((suspect, incarnation)) {
            self.outputs.push_back(Output::Probe {
                target: suspect,
                incarnation,
            });
        }
    }

    /// Acknowledges every waiting peer whose registration is now committed.
    fn ack_committed(&mut self) {
        let committed: Vec<SocketAddr> = self
            .awaiting_ack
            .iter()
            .filter(|(peer, inc)| self.directory.incarnation_of(peer) == Some(**inc))
            .map(|(peer, _)| *peer)
            .collect();
        for peer in committed {
            self.awaiting_ack.remove(&peer);
            self.send(peer, Message::RegisterAck {});
        }
    }

    fn propose_init_if_leading(&mut self, now: Timestamp) {
        if self.leader == Some(self.addr) && !self.directory.is_initialised() {
            let seeds = self.seeds.clone();
            self.outputs
                .push_back(Output::Propose(Command::Init { seeds }));
            if !self.init_retry_armed {
                self.init_retry_armed = true;
                self.outputs.push_back(Output::Timer {
                    timer: SeedTimer::InitRetry,
                    at: now + INIT_RETRY,
                });
            }
        }
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

    fn is_seed(&self, addr: &SocketAddr) -> bool {
        self.seeds.contains(addr)
    }

    fn handle_message(&mut self, from: SocketAddr, msg: Message, _now: Timestamp) {
        match msg {
            Message::RegisterRequest { incarnation } => self.on_register_request(from, incarnation),
            Message::DeadReport {
                report,
                peer,
                incarnation,
                confirmers,
            } => self.on_dead_report(from, report, peer, incarnation, confirmers),
            Message::PeerListRequest {} => {
                let peers = self.directory.peer_list();
                self.emit(Event::PeerListServed {
                    to: from,
                    peers: peers.len(),
                });
                self.send(from, Message::PeerList { peers });
            }
            // A seed still catching up may not know the peer yet; its next
            // report will do.
            Message::LinkReport { neighbors } if self.directory.contains(&from) => {
                self.outputs.push_back(Output::Propose(Command::Links {
                    peer: from,
                    neighbors,
                }));
            }
            Message::LinkReport { .. } => {}
            other => self.reject(from, format!("unexpected {} for a seed", other.kind())),
        }
    }

    fn handle_link_up(&mut self, _remote: SocketAddr, _role: Role, _now: Timestamp) {}

    fn handle_link_down(&mut self, _remote: SocketAddr, _now: Timestamp) {}

    fn handle_timer(&mut self, timer: SeedTimer, now: Timestamp) {
        match timer {
            SeedTimer::InitRetry => {
                self.init_retry_armed = false;
                self.propose_init_if_leading(now);
            }
        }
    }

    fn handle_probe_result(
        &mut self,
        target: SocketAddr,
        incarnation: u64,
        result: Result<(), String>,
        _now: Timestamp,
    ) {
        if self.checking_dead.remove(&(target, incarnation)) {
            return match result {
                Err(_) => self.propose_vote(ChangeKind::Remove, target, incarnation),
                Ok(()) => self.emit(Event::DeadReportRefused {
                    peer: target,
                    from: self.addr,
                    reason: "it answered this seed's own probe".into(),
                }),
            };
        }
        self.probing.remove(&(target, incarnation));
        match result {
            Ok(()) => self.propose_vote(ChangeKind::Add, target, incarnation),
            Err(reason) => {
                // Only the life that was probed stops waiting.
                if self.awaiting_ack.get(&target) == Some(&incarnation) {
                    self.awaiting_ack.remove(&target);
                }
                self.emit(Event::ProbeFailed {
                    peer: target,
                    reason,
                });
            }
        }
    }

    fn handle_applied(&mut self, command: &Command, outcome: &Outcome, _now: Timestamp) {
        // Whom to tell if this entry removes a peer: its neighbours as they
        // were, since the removal also drops its links.
        let neighbors_before = match command {
            Command::Vote { change, .. } if change.kind == ChangeKind::Remove => {
                self.directory.neighbors_of(&change.peer)
            }
            _ => BTreeSet::new(),
        };
        let mine = self.directory.apply(command);
        debug_assert_eq!(&mine, outcome, "replica diverged on {command:?}");
        match (command, outcome) {
            (Command::Init { seeds }, Outcome::Initialised) => {
                self.emit(Event::ClusterFormed {
                    seeds: seeds.clone(),
                });
            }
            (
                Command::Vote { change, seed },
                Outcome::VoteCounted { .. } | Outcome::Committed { .. },
            ) => {
                self.emit(Event::Vote {
                    change: change.kind,
                    peer: change.peer,
                    seed: *seed,
                    incarnation: change.incarnation,
                });
                if let Outcome::Committed { voters, seeds } = outcome {
                    let (peer, votes) = (change.peer, voters.len());
                    let (voters, seeds) = (voters.clone(), *seeds);
                    self.emit(match change.kind {
                        ChangeKind::Add => Event::RegisterCommitted {
                            peer,
                            basis: CommitBasis::Consensus,
                            votes,
                            seeds,
                            voters,
                        },
                        ChangeKind::Remove => Event::RemoveCommitted {
                            peer,
                            votes,
                            seeds,
                            voters,
                        },
                    });
                    if change.kind == ChangeKind::Remove {
                        let confirmed = Message::DeadConfirmed {
                            peer,
                            incarnation: change.incarnation,
                        };
                        for neighbor in neighbors_before {
                            self.send(neighbor, confirmed.clone());
                        }
                    }
                    self.ack_committed();
                }
            }
            (Command::Links { peer, neighbors }, Outcome::LinksRecorded) => {
                self.emit(Event::TopologyUpdated {
                    peer: *peer,
                    neighbors: neighbors.clone(),
                });
            }
            _ => {}
        }
    }

    fn handle_snapshot(&mut self, directory: Directory, _now: Timestamp) {
        let formed_now = !self.directory.is_initialised() && directory.is_initialised();
        self.directory = directory;
        // A seed restarted from its data dir, or caught up by snapshot, never
        // applies `Init` itself; it still says that the cluster is formed.
        if formed_now {
            let seeds = self.directory.seeds().collect();
            self.emit(Event::ClusterFormed { seeds });
        }
        self.ack_committed();
    }

    fn handle_leader(&mut self, leader: Option<SocketAddr>, now: Timestamp) {
        if leader != self.leader {
            self.leader = leader;
            self.emit(Event::LeaderChanged { leader });
            self.propose_init_if_leading(now);
        }
    }

    fn poll_output(&mut self) -> Option<Output<SeedTimer>> {
        self.outputs.pop_front()
    }
}

#[cfg(test)]
mod tests;
