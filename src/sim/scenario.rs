//! Scenario tests as lists of steps, as in chitchat's cluster tests: start
//! peers, break some, then expect a property within a deadline of virtual
//! time. A run records what each step did, so that a failure says which
//! step failed, on which seed, and what was seen.
//!
//! Two invariants are checked after every step, whatever the scenario: no
//! peer that was never crashed, frozen or cut off is removed, and no
//! peer's link report is applied out of the order the peer sent it. A slow
//! reader is alive, so the first holds for it too; but the checks of
//! service (delivery, connectivity) are of the honest peers, and leave it
//! out.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::SocketAddr,
    time::Duration,
};

use rand::seq::IteratorRandom;

use super::{metrics, Health, NetworkModel, Sim};
use crate::proto::{peer::PeerSettings, seed::directory::ChangeKind, Event, Timestamp};

/// One step of a scenario.
#[derive(Debug, Clone)]
pub enum Step {
    /// Start this many peers, one after another, each joined before the next.
    Join(usize),
    /// Start this many peers at the same instant, and wait until all have
    /// joined: they link to the same well-linked peers at once.
    JoinAtOnce(usize),
    /// Let virtual time pass.
    Wait(Duration),
    /// SIGKILL this many live peers, picked at random.
    Crash(usize),
    /// SIGSTOP this many live peers, picked at random.
    Freeze(usize),
    /// SIGTERM this many live peers, picked at random: each sends its
    /// LEAVE and stops.
    Leave(usize),
    /// SIGKILL up to this many neighbours of the live peer with the most,
    /// at once: a burst of link changes and repairs at that peer.
    CrashNeighbours(usize),
    /// SIGKILL this many running seeds, picked at random.
    CrashSeeds(usize),
    /// SIGSTOP this many running seeds, picked at random.
    FreezeSeeds(usize),
    /// SIGCONT every frozen node, peers and seeds.
    ResumeAll,
    /// Cut this many live peers, picked at random, off from every other
    /// node (they still reach each other). The seeds may remove them: they
    /// count as faulty.
    Isolate(usize),
    /// End the partition.
    Heal,
    /// An attacker holds full the connection limits of this many live
    /// peers, picked at random, and of all their neighbours, so that every
    /// new connection to them is turned away; then it sends the seeds a
    /// dead report about each of those peers, signed by all its neighbours.
    /// None of them is faulty: the seeds must not remove any.
    ExhaustAndAccuse(usize),
    /// This many live peers, picked at random, stop reading their links
    /// with other peers (see [`Sim::read_slowly`]): their neighbours get no
    /// PONG from them, and their frames wait until the protocol drops the
    /// link or the sender's queue bound closes it. They still run and
    /// answer the seeds' probes: the seeds must not remove them, and the
    /// honest peers must still be served without them.
    SlowReader(usize),
    /// End every exhaustion and every slow reading.
    Relieve,
    /// Every node stops (SIGKILL), with no time for the seeds to notice
    /// the peers go: the seeds first, [`SEEDS_FIRST_LEAD`] before the
    /// peers, or the peers first and the seeds in the same instant. Then
    /// [`RESTART_DOWNTIME`] passes. Every peer counts as faulty until
    /// [`Step::RestartPeers`] starts it again; its ended life may be
    /// removed even then.
    StopAll { seeds_first: bool },
    /// Every stopped seed starts again with the log its data directory
    /// kept.
    RestartSeeds,
    /// This many stopped peers, picked at random, start again at their
    /// addresses as new lives; with `each_joined`, one after another, each
    /// joined before the next. The others stay dead: ghosts in the seeds'
    /// log until removed.
    RestartPeers { count: usize, each_joined: bool },
    /// A live peer, picked at random, types a line.
    Gossip,
    /// Run until the check holds, for at most this long.
    Expect(Check, Duration),
}

/// How long a whole network stays down in [`Step::StopAll`]: longer than
/// any timer a node arms, so none of the old lives' fires at a new one.
pub const RESTART_DOWNTIME: Duration = Duration::from_secs(30);
/// How long before the peers the seeds stop in [`Step::StopAll`] with
/// `seeds_first`: the peers see them go, and find no seed to report to.
pub const SEEDS_FIRST_LEAD: Duration = Duration::from_secs(5);

/// A property a scenario waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Every honest live peer has every typed line.
    GossipEverywhere,
    /// Every crashed or still-frozen peer is out of the committed Peer List.
    FaultyRemoved,
    /// The honest live peers' own neighbour sets make one connected
    /// overlay, without the slow readers' links.
    LiveOverlayConnected,
    /// Every live peer is joined and registered at its current life.
    AllRegistered,
    /// The committed directory records, for every live peer, the link set
    /// the peer itself holds.
    RecordedLinksAsPeersHoldThem,
    /// Every peer that left is out of the committed Peer List, every seed
    /// logged its removal as `left`, and since it left no peer suspected
    /// it or reported it dead.
    LeftRemovedWithoutSuspicion,
}

/// Why a scenario failed, with everything needed to replay it.
#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    pub step: usize,
    pub what: String,
    /// What each step did, up to the failure.
    pub trace: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {}: step {} failed: {}",
            self.seed, self.step, self.what
        )?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// A scenario run: the simulation and what the steps did to it.
pub struct Run {
    pub sim: Sim,
    /// Peers ever crashed or frozen: the only ones that may be removed.
    pub faulty: BTreeSet<SocketAddr>,
    /// Peers ever made slow readers: alive, so never to be removed, but
    /// not served by the overlay, which they do not read.
    pub slow: BTreeSet<SocketAddr>,
    /// Lives that ended in a restart, by address and incarnation: they may
    /// be removed, though a new life runs at the address.
    pub ended_lives: BTreeSet<(SocketAddr, u64)>,
    /// Peers that left (SIGTERM), and when: they may be removed too.
    pub left: BTreeMap<SocketAddr, Timestamp>,
    lines: Vec<String>,
    trace: Vec<String>,
}

/// Runs `steps` on a fresh simulation of 3 seeds.
pub fn run(
    seed: u64,
    steps: &[Step],
    settings: PeerSettings,
    network: NetworkModel,
) -> Result<Run, Failure> {
    let mut run = Run {
        sim: Sim::new(seed, 3, settings, network),
        faulty: BTreeSet::new(),
        slow: BTreeSet::new(),
        ended_lives: BTreeSet::new(),
        left: BTreeMap::new(),
        lines: Vec::new(),
        trace: Vec::new(),
    };
    for (i, step) in steps.iter().enumerate() {
        let done = run
            .step(step)
            .and_then(|()| run.no_live_peer_removed())
            .and_then(|()| run.no_links_out_of_order());
        let at = run.sim.now().as_secs_f64() - super::EPOCH.as_secs_f64();
        match done {
            Ok(()) => run.trace.push(format!("{i}: {step:?} done at t={at:.3}s")),
            Err(what) => {
                run.trace
                    .push(format!("{i}: {step:?} FAILED at t={at:.3}s"));
                return Err(Failure {
                    seed,
                    step: i,
                    what,
                    trace: run.trace,
                });
            }
        }
    }
    Ok(run)
}

impl Run {
    /// Live peers other than the slow readers, which the attacker runs.
    fn pick_live(&mut self, n: usize) -> Vec<SocketAddr> {
        let live = self.sim.live_peers();
        live.into_iter()
            .filter(|p| !self.slow.contains(p))
            .choose_multiple(self.sim.rng(), n)
    }

    fn pick_running_seeds(&mut self, n: usize) -> Vec<SocketAddr> {
        let running = self.sim.running_seeds();
        running.into_iter().choose_multiple(self.sim.rng(), n)
    }

    fn step(&mut self, step: &Step) -> Result<(), String> {
        match step {
            Step::Join(n) => {
                for _ in 0..*n {
                    let peer = self.sim.add_peer();
                    let joined = self.sim.run_until_true(Duration::from_secs(30), |sim| {
                        sim.events()
                            .iter()
                            .any(|e| e.node == peer && matches!(e.event, Event::Joined { .. }))
                    });
                    if !joined {
                        return Err(format!("{peer} did not join within 30 s"));
                    }
                }
            }
            Step::JoinAtOnce(n) => {
                let new: Vec<SocketAddr> = (0..*n).map(|_| self.sim.add_peer()).collect();
                let joined = self.sim.run_until_true(Duration::from_secs(30), |sim| {
                    new.iter().all(|p| sim.is_joined(*p))
                });
                if !joined {
                    let late: Vec<_> = new.iter().filter(|p| !self.sim.is_joined(**p)).collect();
                    return Err(format!("{late:?} did not join within 30 s"));
                }
            }
            Step::Wait(span) => self.sim.run_for(*span),
            Step::Crash(n) => {
                for peer in self.pick_live(*n) {
                    self.faulty.insert(peer);
                    self.sim.crash(peer);
                }
            }
            Step::Freeze(n) => {
                for peer in self.pick_live(*n) {
                    self.faulty.insert(peer);
                    self.sim.freeze(peer);
                }
            }
            Step::Leave(n) => {
                for peer in self.pick_live(*n) {
                    self.faulty.insert(peer);
                    self.left.insert(peer, self.sim.now());
                    self.sim.leave(peer);
                }
            }
            Step::CrashNeighbours(n) => {
                let live: BTreeSet<SocketAddr> = self.sim.live_peers().into_iter().collect();
                let hub = live
                    .iter()
                    .copied()
                    .max_by_key(|p| (self.sim.neighbors_of(*p).len(), Reverse(*p)))
                    .ok_or("no live peer")?;
                let around: Vec<SocketAddr> = self
                    .sim
                    .neighbors_of(hub)
                    .into_iter()
                    .filter(|p| live.contains(p))
                    .collect();
                for peer in around.into_iter().choose_multiple(self.sim.rng(), *n) {
                    self.faulty.insert(peer);
                    self.sim.crash(peer);
                }
            }
            Step::CrashSeeds(n) => {
                for seed in self.pick_running_seeds(*n) {
                    self.sim.crash(seed);
                }
            }
            Step::FreezeSeeds(n) => {
                for seed in self.pick_running_seeds(*n) {
                    self.sim.freeze(seed);
                }
            }
            Step::ResumeAll => {
                for node in [self.sim.seeds(), self.sim.peers()].concat() {
                    self.sim.resume(node);
                }
            }
            Step::Isolate(n) => {
                let side: BTreeSet<SocketAddr> = self.pick_live(*n).into_iter().collect();
                self.faulty.extend(side.iter().copied());
                self.sim.isolate(side);
            }
            Step::Heal => self.sim.heal(),
            Step::ExhaustAndAccuse(n) => {
                let victims = self.pick_live(*n);
                for victim in &victims {
                    self.sim.exhaust(*victim);
                    for neighbour in self.sim.directory().neighbors_of(victim) {
                        self.sim.exhaust(neighbour);
                    }
                }
                for victim in victims {
                    if !self.sim.forge_dead_report(victim) {
                        return Err(format!("{victim} has no neighbour to accuse it"));
                    }
                }
            }
            Step::SlowReader(n) => {
                for peer in self.pick_live(*n) {
                    self.slow.insert(peer);
                    self.sim.read_slowly(peer);
                }
            }
            Step::Relieve => self.sim.relieve_all(),
            Step::StopAll { seeds_first } => self.stop_all(*seeds_first),
            Step::RestartSeeds => {
                for seed in self.sim.seeds().to_vec() {
                    self.sim.restart(seed);
                }
            }
            Step::RestartPeers { count, each_joined } => {
                let stopped: Vec<SocketAddr> = self
                    .sim
                    .peers()
                    .iter()
                    .copied()
                    .filter(|p| self.sim.health(*p) == Some(Health::Crashed))
                    .collect();
                let back = stopped.into_iter().choose_multiple(self.sim.rng(), *count);
                for peer in back {
                    self.faulty.remove(&peer);
                    self.sim.restart(peer);
                    if *each_joined {
                        let limit = Duration::from_secs(30);
                        if !self.sim.run_until_true(limit, |sim| sim.is_joined(peer)) {
                            return Err(format!("{peer} did not join within 30 s"));
                        }
                    }
                }
            }
            Step::Gossip => {
                let author = self.pick_live(1);
                let author = author.first().ok_or("no live peer to type a line")?;
                let text = format!("line-{}", self.lines.len() + 1);
                self.sim.type_line(*author, &text);
                self.lines.push(text);
            }
            Step::Expect(check, limit) => {
                let check = *check;
                let seen = Seen {
                    lines: self.lines.clone(),
                    faulty: self.faulty.clone(),
                    slow: self.slow.clone(),
                    left: self.left.clone(),
                };
                let held = self
                    .sim
                    .run_until_true(*limit, |sim| holds(sim, check, &seen).is_ok());
                if !held {
                    return holds(&self.sim, check, &seen)
                        .map_err(|seen| format!("{check:?} not within {limit:?}: {seen}"));
                }
            }
        }
        Ok(())
    }

    fn stop_all(&mut self, seeds_first: bool) {
        let (seeds, peers) = (self.sim.seeds().to_vec(), self.sim.peers().to_vec());
        let crash = |sim: &mut Sim, nodes: &[SocketAddr]| {
            for node in nodes {
                sim.crash(*node);
            }
        };
        if seeds_first {
            crash(&mut self.sim, &seeds);
            self.sim.run_for(SEEDS_FIRST_LEAD);
            crash(&mut self.sim, &peers);
        } else {
            crash(&mut self.sim, &peers);
            crash(&mut self.sim, &seeds);
        }
        for peer in &peers {
            self.faulty.insert(*peer);
            if let Some(incarnation) = self.sim.incarnation(*peer) {
                self.ended_lives.insert((*peer, incarnation));
            }
        }
        self.sim.run_for(RESTART_DOWNTIME);
    }

    /// Every link report the log applied was its peer's newest so far.
    fn no_links_out_of_order(&self) -> Result<(), String> {
        match self.sim.links_out_of_order() {
            [] => Ok(()),
            wrong => Err(format!(
                "{} link reports applied out of order, e.g. {:?}",
                wrong.len(),
                &wrong[..wrong.len().min(3)]
            )),
        }
    }

    /// Removals committed so far are all of faulty peers, or of lives
    /// that ended in a restart.
    fn no_live_peer_removed(&self) -> Result<(), String> {
        // The vote that commits a removal is logged just before it, by the
        // same seed, with the incarnation removed.
        let mut voted = BTreeMap::new();
        let wrong: BTreeSet<SocketAddr> = self
            .sim
            .events()
            .iter()
            .filter_map(|e| match e.event {
                Event::Vote {
                    change: ChangeKind::Remove,
                    peer,
                    incarnation,
                    ..
                } => {
                    voted.insert((e.node, peer), incarnation);
                    None
                }
                Event::RemoveCommitted { peer, .. } if !self.faulty.contains(&peer) => {
                    let life = voted.get(&(e.node, peer)).map(|i| (peer, *i));
                    (!life.is_some_and(|l| self.ended_lives.contains(&l))).then_some(peer)
                }
                _ => None,
            })
            .collect();
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(format!("live peers removed: {wrong:?}"))
        }
    }
}

/// What the steps so far did, as the checks need it.
struct Seen {
    lines: Vec<String>,
    faulty: BTreeSet<SocketAddr>,
    slow: BTreeSet<SocketAddr>,
    left: BTreeMap<SocketAddr, Timestamp>,
}

/// Whether `check` holds; if not, what was seen instead.
fn holds(sim: &Sim, check: Check, seen: &Seen) -> Result<(), String> {
    let live = sim.live_peers();
    let honest: Vec<SocketAddr> = live
        .iter()
        .copied()
        .filter(|p| !seen.slow.contains(p))
        .collect();
    match check {
        Check::GossipEverywhere => {
            let mut missing = Vec::new();
            for line in &seen.lines {
                let suffix = format!(":{line}");
                let has: BTreeSet<SocketAddr> = sim
                    .events()
                    .iter()
                    .filter(|e| match &e.event {
                        Event::GossipReceived { msg, .. } | Event::GossipCreated { msg } => {
                            msg.ends_with(&suffix)
                        }
                        _ => false,
                    })
                    .map(|e| e.node)
                    .collect();
                missing.extend(
                    honest
                        .iter()
                        .filter(|p| !has.contains(p))
                        .map(|p| (line, *p)),
                );
            }
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} deliveries missing, e.g. {:?}",
                    missing.len(),
                    &missing[..missing.len().min(5)]
                ))
            }
        }
        Check::FaultyRemoved => {
            let still: Vec<SocketAddr> = seen
                .faulty
                .iter()
                .copied()
                .filter(|p| sim.health(*p) != Some(Health::Up))
                .filter(|p| sim.directory().contains(p))
                .collect();
            if still.is_empty() {
                Ok(())
            } else {
                Err(format!("still registered: {still:?}"))
            }
        }
        Check::LeftRemovedWithoutSuspicion => {
            let mut wrong = Vec::new();
            let mut left_on = BTreeMap::<SocketAddr, BTreeSet<SocketAddr>>::new();
            for e in sim.events() {
                let (about, accused) = match &e.event {
                    Event::SuspicionStarted { peer, .. } | Event::DeadReportSent { peer, .. } => {
                        (*peer, true)
                    }
                    Event::Left { peer, .. } => (*peer, false),
                    _ => continue,
                };
                match seen.left.get(&about) {
                    Some(since) if e.at >= *since => {}
                    _ => continue,
                }
                if accused {
                    wrong.push(format!("{} logged {:?}", e.node, e.event));
                } else {
                    left_on.entry(about).or_default().insert(e.node);
                }
            }
            if !wrong.is_empty() {
                return Err(format!("a peer that left was suspected: {wrong:?}"));
            }
            let still: Vec<SocketAddr> = seen
                .left
                .keys()
                .copied()
                .filter(|p| sim.directory().contains(p))
                .collect();
            if !still.is_empty() {
                return Err(format!("still registered: {still:?}"));
            }
            let unlogged: Vec<(SocketAddr, SocketAddr)> = seen
                .left
                .keys()
                .flat_map(|p| sim.seeds().iter().map(move |s| (*p, *s)))
                .filter(|(p, s)| !left_on.get(p).is_some_and(|on| on.contains(s)))
                .collect();
            if unlogged.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "seeds that did not log `left` (peer, seed): {unlogged:?}"
                ))
            }
        }
        Check::AllRegistered => {
            let missing: Vec<SocketAddr> = live
                .iter()
                .copied()
                .filter(|p| {
                    !sim.is_joined(*p) || sim.directory().incarnation_of(p) != sim.incarnation(*p)
                })
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("not joined and registered: {missing:?}"))
            }
        }
        Check::RecordedLinksAsPeersHoldThem => {
            let directory = sim.directory();
            let differ: Vec<String> = live
                .iter()
                .filter_map(|p| {
                    let own = sim.neighbors_of(*p);
                    let recorded = directory.reported_links(p).unwrap_or_default();
                    (recorded != own).then(|| format!("{p} holds {own:?}, recorded {recorded:?}"))
                })
                .collect();
            if differ.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} of {} live peers recorded otherwise, e.g. {:?}",
                    differ.len(),
                    live.len(),
                    &differ[..differ.len().min(3)]
                ))
            }
        }
        Check::LiveOverlayConnected => {
            let mut adjacency = sim.live_adjacency();
            if !seen.slow.is_empty() {
                adjacency.retain(|p, _| !seen.slow.contains(p));
                for links in adjacency.values_mut() {
                    links.retain(|n| !seen.slow.contains(n));
                }
            }
            if metrics::is_connected(&adjacency) {
                return Ok(());
            }
            let start = honest.first().copied();
            let reached = start
                .map(|s| metrics::distances(&adjacency, s))
                .unwrap_or_default();
            let cut: Vec<SocketAddr> = honest
                .iter()
                .copied()
                .filter(|p| !reached.contains_key(p))
                .collect();
            Err(format!(
                "{} of {} honest live peers cut off, e.g. {:?}",
                cut.len(),
                honest.len(),
                &cut[..cut.len().min(5)]
            ))
        }
    }
}
