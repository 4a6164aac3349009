use super::*;
use crate::proto::evidence::{Identity, STATEMENT_WINDOW};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Peer `port`'s signing key, as every test registers it.
fn identity(port: u16) -> Identity {
    let mut secret = [7; 32];
    secret[..2].copy_from_slice(&port.to_be_bytes());
    Identity::from_secret(secret)
}

fn key(port: u16) -> PublicKey {
    identity(port).public_key()
}

fn seeds() -> Vec<SocketAddr> {
    vec![addr(5010), addr(5011), addr(5012)]
}

fn now() -> Timestamp {
    Timestamp(1_000_000)
}

/// A peer's `seq`th LINK_REPORT of its life 1 (the life `register` gives).
fn link_report(neighbors: &[u16], seq: u64) -> Message {
    Message::LinkReport {
        neighbors: neighbors.iter().map(|p| addr(*p)).collect(),
        incarnation: 1,
        seq,
    }
}

/// Three seed cores sharing one log: each proposal is appended in order and
/// applied on every core, which is what Raft gives them.
struct Cluster {
    cores: Vec<SeedCore>,
    log: Vec<Command>,
    /// Frames the cores sent, with the sender's index.
    sent: Vec<(usize, SocketAddr, Message)>,
    events: Vec<(usize, Event)>,
    /// Probes asked for and not yet answered: seed, target, the query.
    probes: Vec<(usize, SocketAddr, Message)>,
    /// Proposals from these cores are lost, as when cut off from the leader.
    cut_off: Vec<usize>,
    /// Timers the cores armed and that have not fired.
    timers: Vec<(usize, SeedTimer)>,
    /// Connections the cores closed: the core's index, the remote.
    closed: Vec<(usize, SocketAddr)>,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster::with_cap(None)
    }

    /// Seeds whose setting, and so the cluster's `Init`, caps the peers
    /// per IP address at `cap`.
    fn with_cap(cap: Option<u32>) -> Cluster {
        let cores = seeds()
            .into_iter()
            .map(|s| SeedCore::new(s, seeds()).with_max_peers_per_ip(cap))
            .collect();
        let mut c = Cluster {
            cores,
            log: Vec::new(),
            sent: Vec::new(),
            events: Vec::new(),
            probes: Vec::new(),
            cut_off: Vec::new(),
            timers: Vec::new(),
            closed: Vec::new(),
        };
        for i in 0..3 {
            c.cores[i].handle_leader(Some(addr(5010)), now());
        }
        c.settle();
        c
    }

    /// Drains every core, appends and applies proposals until quiet.
    fn settle(&mut self) {
        loop {
            let mut proposals = Vec::new();
            for (i, core) in self.cores.iter_mut().enumerate() {
                while let Some(out) = core.poll_output() {
                    match out {
                        Output::Propose(cmd) if !self.cut_off.contains(&i) => proposals.push(cmd),
                        Output::Propose(_) => {}
                        Output::Send { to, msg } => self.sent.push((i, to, msg)),
                        Output::Event(e) => self.events.push((i, e)),
                        Output::Query { to, query, .. } => self.probes.push((i, to, query)),
                        Output::Timer { timer, .. } => self.timers.push((i, timer)),
                        Output::Close(remote) => self.closed.push((i, remote)),
                        _ => {}
                    }
                }
            }
            if proposals.is_empty() {
                return;
            }
            for cmd in proposals {
                let outcome = self.log_apply(&cmd);
                for core in &mut self.cores {
                    core.handle_applied(&cmd, &outcome, now());
                }
            }
        }
    }

    fn log_apply(&mut self, cmd: &Command) -> Outcome {
        self.log.push(cmd.clone());
        let mut reference = Directory::default();
        let mut outcome = Outcome::Nothing;
        for c in &self.log {
            outcome = reference.apply(c);
        }
        outcome
    }

    /// Answers every probe: `Ok` as a peer of incarnation 1 (the one every
    /// test registers) with its key, `Err` as a failed connection.
    fn answer_probes(&mut self, result: Result<(), String>) {
        let probes = std::mem::take(&mut self.probes);
        self.answer(probes, |_| result.clone());
    }

    fn answer(
        &mut self,
        probes: Vec<(usize, SocketAddr, Message)>,
        result: impl Fn(SocketAddr) -> Result<(), String>,
    ) {
        self.answer_failing(probes, |target| {
            result(target).map_err(QueryError::NoConnection)
        })
    }

    /// Answers `probes` as [`Cluster::answer`] does, failing each in the way
    /// `result` gives.
    fn answer_failing(
        &mut self,
        probes: Vec<(usize, SocketAddr, Message)>,
        result: impl Fn(SocketAddr) -> Result<(), QueryError>,
    ) {
        for (i, target, query) in probes {
            let Message::Probe { nonce, .. } = query else {
                panic!("a seed queried {query:?}");
            };
            let reply = result(target).map(|()| Message::ProbeReply {
                nonce,
                role: Role::Peer,
                listen: target,
                incarnation: 1,
                key: Some(key(target.port())),
            });
            self.cores[i].handle_query_result(target, query, reply, now());
        }
        self.settle();
    }

    /// Fires every armed timer, late as timers may be.
    fn fire_timers(&mut self) {
        for (i, timer) in std::mem::take(&mut self.timers) {
            self.cores[i].handle_timer(timer, now());
        }
        self.settle();
    }

    fn acks_to(&self, peer: SocketAddr) -> Vec<usize> {
        self.sent
            .iter()
            .filter(|(_, to, m)| *to == peer && *m == Message::RegisterAck {})
            .map(|(i, ..)| *i)
            .collect()
    }

    fn register(&mut self, peer: SocketAddr, at: &[usize]) {
        self.register_with_key(peer, key(peer.port()), at);
    }

    fn register_with_key(&mut self, peer: SocketAddr, key: PublicKey, at: &[usize]) {
        for &i in at {
            let request = Message::RegisterRequest {
                incarnation: 1,
                key,
            };
            self.cores[i].handle_message(peer, request, now());
        }
        self.settle();
    }
}

#[test]
fn the_leader_names_the_seeds_in_the_log_first() {
    let c = Cluster::new();
    let init = Command::Init {
        seeds: seeds(),
        max_peers_per_ip: None,
    };
    assert_eq!(c.log, vec![init]);
    assert!(c.cores.iter().all(|s| s.directory().is_initialised()));
}

#[test]
fn a_peer_is_acknowledged_only_after_a_majority_of_seeds_voted() {
    let mut c = Cluster::new();
    let peer = addr(6001);
    c.register(peer, &[0, 2]);
    // Nothing is voted before the dial-back check.
    assert_eq!(c.log.len(), 1);
    assert!(c.acks_to(peer).is_empty());
    assert_eq!(c.probes.len(), 2);
    c.answer_probes(Ok(()));
    assert!(c.cores.iter().all(|s| s.directory().contains(&peer)));
    let mut acked = c.acks_to(peer);
    acked.sort();
    assert_eq!(
        acked,
        vec![0, 2],
        "the seeds asked, and only they, acknowledge"
    );
    let committed: Vec<_> = c
        .events
        .iter()
        .filter_map(|(i, e)| match e {
            Event::RegisterCommitted { votes, seeds, .. } => Some((*i, *votes, *seeds)),
            _ => None,
        })
        .collect();
    assert_eq!(
        committed,
        vec![(0, 2, 3), (1, 2, 3), (2, 2, 3)],
        "every seed logs the commit"
    );
}

#[test]
fn one_seed_alone_cannot_register_a_peer() {
    let mut c = Cluster::new();
    let peer = addr(6001);
    c.register(peer, &[1]);
    c.answer_probes(Ok(()));
    // The same seed asked again and again still has one vote.
    for _ in 0..5 {
        c.register(peer, &[1]);
        c.answer_probes(Ok(()));
    }
    assert!(c.cores.iter().all(|s| !s.directory().contains(&peer)));
    assert!(c.acks_to(peer).is_empty());
}

#[test]
fn a_seed_cut_off_from_the_log_does_not_block_the_others() {
    let mut c = Cluster::new();
    c.cut_off = vec![2];
    let peer = addr(6001);
    c.register(peer, &[0, 2]);
    c.answer_probes(Ok(()));
    assert!(c.acks_to(peer).is_empty(), "one vote got through, not two");
    // The peer's retry widens to seed 1.
    c.register(peer, &[1]);
    c.answer_probes(Ok(()));
    assert!(c.cores[0].directory().contains(&peer));
    let mut acked = c.acks_to(peer);
    acked.sort();
    assert_eq!(
        acked,
        vec![0, 1, 2],
        "every seed that was asked acknowledges once it applies"
    );
}

#[test]
fn a_failed_dial_back_means_no_vote() {
    let mut c = Cluster::new();
    c.register(addr(6001), &[0, 1]);
    c.answer_probes(Err("connection refused".into()));
    assert_eq!(c.log.len(), 1, "{:?}", c.log);
    assert!(c.events.iter().any(
        |(_, e)| matches!(e, Event::ProbeFailed { reason, .. } if reason.contains("refused"))
    ));
}

#[test]
fn a_registered_peer_asking_again_is_acknowledged_without_a_new_vote() {
    let mut c = Cluster::new();
    let peer = addr(6001);
    c.register(peer, &[0, 1]);
    c.answer_probes(Ok(()));
    let log_len = c.log.len();
    c.register(peer, &[0]);
    assert!(c.probes.is_empty());
    assert_eq!(c.log.len(), log_len);
    assert_eq!(c.acks_to(peer).iter().filter(|i| **i == 0).count(), 2);
}

#[test]
fn registrations_over_the_per_ip_cap_are_refused_and_other_ips_are_not() {
    let mut c = Cluster::with_cap(Some(2));
    for port in [6001, 6002] {
        c.register(addr(port), &[0, 1, 2]);
        c.answer_probes(Ok(()));
        assert!(c.cores[0].directory().contains(&addr(port)));
    }
    // A third identity from 127.0.0.1 is refused by every seed, unprobed.
    c.register(addr(6003), &[0, 1, 2]);
    assert!(c.probes.is_empty(), "a refused registration was probed");
    assert!(!c.cores[0].directory().contains(&addr(6003)));
    let refused = c
        .events
        .iter()
        .filter(|(_, e)| {
            matches!(e, Event::RegisterRefused { peer, reason }
                if *peer == addr(6003) && reason.contains("max_peers_per_ip"))
        })
        .count();
    assert_eq!(refused, 3);
    // A registered peer asking again is not counted against itself...
    c.register(addr(6001), &[0]);
    assert!(c.acks_to(addr(6001)).len() >= 2);
    // ...and another address is under its own cap.
    let elsewhere = SocketAddr::from(([127, 0, 0, 2], 6003));
    c.register(elsewhere, &[0, 1]);
    c.answer_probes(Ok(()));
    assert!(c.cores[0].directory().contains(&elsewhere));
}

#[test]
fn thirty_racing_registrations_from_one_ip_register_ten_under_a_cap_of_ten() {
    let mut c = Cluster::with_cap(Some(10));
    let peers: Vec<SocketAddr> = (0..30).map(|i| addr(6001 + i)).collect();
    // Each asks a majority, two of the three seeds, and every request
    // arrives before any vote is in the log: each seed's own directory is
    // empty when it checks.
    let asked = |i: usize| [i % 3, (i + 1) % 3];
    for (i, peer) in peers.iter().enumerate() {
        c.register(*peer, &asked(i));
    }
    assert_eq!(c.probes.len(), 60, "every request passed the pre-filter");
    assert_eq!(c.log.len(), 1, "nothing voted before the probes");
    c.answer_probes(Ok(()));
    for core in &c.cores {
        assert_eq!(
            core.directory().len(),
            10,
            "{:?}",
            core.directory().peer_list()
        );
    }
    let registered: Vec<SocketAddr> = c.cores[0].directory().peers().map(|(p, _)| p).collect();
    for (i, peer) in peers.iter().enumerate() {
        let mut acked = c.acks_to(*peer);
        acked.sort();
        let mut refused: Vec<usize> = c
            .closed
            .iter()
            .filter(|(_, to)| to == peer)
            .map(|(i, _)| *i)
            .collect();
        refused.sort();
        let mut asked = asked(i).to_vec();
        asked.sort();
        if registered.contains(peer) {
            assert_eq!(acked, asked, "{peer} registered");
            assert!(refused.is_empty(), "{peer} registered and refused");
        } else {
            assert!(acked.is_empty(), "{peer} acknowledged but not registered");
            assert_eq!(refused, asked, "{peer} left waiting");
        }
    }
    let refusals: BTreeSet<SocketAddr> = c
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::RegisterRefused { peer, reason } if reason.contains("max_peers_per_ip") => {
                Some(*peer)
            }
            _ => None,
        })
        .collect();
    assert_eq!(refusals.len(), 20, "{refusals:?}");
    // A retry of a refused peer is refused at once, without a probe.
    let refused = *refusals.first().unwrap();
    c.register(refused, &[0]);
    assert!(c.probes.is_empty());
    assert_eq!(c.cores[0].directory().len(), 10);
}

#[test]
fn a_seed_whose_cap_differs_from_the_committed_one_warns_once_and_enforces_the_committed_one() {
    let mut c = Cluster::new();
    let init = c.log[0].clone();
    let mut seed = SeedCore::new(addr(5011), seeds()).with_max_peers_per_ip(Some(1));
    seed.handle_applied(&init, &Outcome::Initialised, now());
    // Applied again, or restored from a snapshot: still one warning.
    let snapshot = c.cores[0].directory().clone();
    seed.handle_snapshot(snapshot, now());
    let warnings: Vec<Event> = std::iter::from_fn(|| seed.poll_output())
        .filter_map(|o| match o {
            Output::Event(e @ Event::IpCapOverridden { .. }) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(
        warnings,
        vec![Event::IpCapOverridden {
            configured: Some(1),
            committed: None
        }]
    );
    // The committed "no cap" holds: its pre-filter lets a second peer of
    // one IP through.
    c.cores[1] = seed;
    for port in [6001, 6002] {
        c.register(addr(port), &[1, 2]);
        c.answer_probes(Ok(()));
    }
    assert!(c.cores.iter().all(|s| s.directory().len() == 2));
    // Seeds whose setting matches say nothing.
    assert!(!c
        .events
        .iter()
        .any(|(_, e)| matches!(e, Event::IpCapOverridden { .. })));
}

#[test]
fn a_registration_from_a_seed_address_is_refused() {
    let mut c = Cluster::new();
    c.register(addr(5011), &[0]);
    assert!(c.probes.is_empty());
    assert!(c
        .events
        .iter()
        .any(|(_, e)| matches!(e, Event::ProtocolError { remote, .. } if *remote == addr(5011))));
}

/// Two registered peers; 6001 has reported its link to 6002 to seed 0,
/// not yet settled.
fn two_peers_6001_reporting_a_link_to_6002() -> Cluster {
    let mut c = Cluster::new();
    for p in [6001, 6002] {
        c.register(addr(p), &[0, 1]);
        c.answer_probes(Ok(()));
    }
    c.cores[0].handle_message(addr(6001), link_report(&[6002], 1), now());
    c
}

#[test]
fn links_of_registered_peers_go_through_the_log() {
    let mut c = two_peers_6001_reporting_a_link_to_6002();
    // From a stranger the report is dropped before the log.
    c.cores[0].handle_message(addr(6009), link_report(&[6001], 1), now());
    let before = c.log.len();
    c.settle();
    assert_eq!(c.log.len(), before + 1);
    // Every seed serves the same degrees.
    for core in &mut c.cores {
        core.handle_message(addr(6003), Message::PeerListRequest {}, now());
        let list = std::iter::from_fn(|| core.poll_output())
            .find_map(|o| match o {
                Output::Send {
                    msg: Message::PeerList { peers, .. },
                    ..
                } => Some(peers),
                _ => None,
            })
            .unwrap();
        let degrees: Vec<_> = list.iter().map(|p| (p.addr.port(), p.degree)).collect();
        assert_eq!(degrees, vec![(6001, 1), (6002, 1)]);
    }
}

#[test]
fn removal_takes_a_majority_too() {
    let mut c = cluster_with_a_hub();
    let peer = addr(6001);
    report(&mut c, 2, 6002, &[6002, 6003]);
    c.answer_probes(Err("connection refused".into()));
    assert!(
        c.cores.iter().all(|s| s.directory().contains(&peer)),
        "one seed removed it"
    );
    report(&mut c, 0, 6002, &[6002, 6003]);
    c.answer_probes(Err("connection refused".into()));
    assert!(c.cores.iter().all(|s| !s.directory().contains(&peer)));
    assert!(c
        .events
        .iter()
        .any(|(_, e)| matches!(e, Event::RemoveCommitted { votes: 2, .. })));
}

#[test]
fn gossip_sent_to_a_seed_closes_that_connection() {
    let mut seed = SeedCore::new(addr(5010), seeds());
    seed.handle_message(
        addr(6001),
        Message::gossip_signed_by(&identity(6001), addr(6001), "x", 0),
        now(),
    );
    let out: Vec<_> = std::iter::from_fn(|| seed.poll_output()).collect();
    assert!(
        matches!(&out[0], Output::Event(Event::ProtocolError { reason, .. }) if reason.contains("GOSSIP"))
    );
    assert_eq!(out[1], Output::Close(addr(6001)));
}

/// Registers peers 6001..=6004 and records links 6001-6002, 6001-6003,
/// 6001-6004: 6001 is a hub with three neighbours.
fn cluster_with_a_hub() -> Cluster {
    let mut c = Cluster::new();
    for p in 6001..=6004 {
        c.register(addr(p), &[0, 1]);
        c.answer_probes(Ok(()));
    }
    c.cores[0].handle_message(addr(6001), link_report(&[6002, 6003, 6004], 1), now());
    c.settle();
    c
}

fn report(c: &mut Cluster, seed: usize, from: u16, confirmers: &[u16]) {
    report_with(c, seed, from, confirmers, &[]);
}

fn report_with(c: &mut Cluster, seed: usize, from: u16, confirmers: &[u16], unreachable: &[u16]) {
    let incarnation = c.cores[seed]
        .directory()
        .incarnation_of(&addr(6001))
        .unwrap();
    let statements = confirmers
        .iter()
        .map(|p| statement(*p, 6001, incarnation))
        .collect();
    let unreachable = unreachable.iter().map(|p| addr(*p)).collect();
    deliver(
        c,
        seed,
        from,
        dead_report(from, incarnation, statements, unreachable),
    );
}

/// Peer `port`'s signed statement, made now, that `suspect` at
/// `incarnation` is unresponsive.
fn statement(port: u16, suspect: u16, incarnation: u64) -> Statement {
    identity(port).state_unresponsive(addr(port), addr(suspect), incarnation, now())
}

/// A DEAD_REPORT about 6001 by `from` with these statements, signed by
/// `from`.
fn dead_report(
    from: u16,
    incarnation: u64,
    confirmers: Vec<Statement>,
    unreachable: Vec<SocketAddr>,
) -> Message {
    let report = "Dead Node:127.0.0.1:6001:1.5:127.0.0.1".to_string();
    let signature = identity(from).sign_report(&ReportContent {
        reporter: addr(from),
        report: &report,
        peer: addr(6001),
        incarnation,
        confirmers: &confirmers,
        unreachable: &unreachable,
    });
    Message::DeadReport {
        report,
        peer: addr(6001),
        incarnation,
        confirmers,
        unreachable,
        signature,
    }
}

/// `report` reaches seed `seed` from `from`, at [`now`].
fn deliver(c: &mut Cluster, seed: usize, from: u16, report: Message) {
    deliver_at(c, seed, from, report, now());
}

fn deliver_at(c: &mut Cluster, seed: usize, from: u16, report: Message, at: Timestamp) {
    c.cores[seed].handle_message(addr(from), report, at);
    c.settle();
}

/// The reasons of the cluster's `dead_report_refused` events.
fn refusals(c: &Cluster) -> Vec<String> {
    refusals_of(c, "dead_report_refused")
}

/// The reasons of the cluster's refusals logged as `kind`.
fn refusals_of(c: &Cluster, kind: &str) -> Vec<String> {
    c.events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::DeadReportRefused { reason, .. } if kind == "dead_report_refused" => {
                Some(reason.clone())
            }
            Event::LeaveRefused { reason, .. } if kind == "leave_refused" => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// Every seed sent DEAD_CONFIRMED to each of the hub 6001's former
/// neighbours.
fn assert_every_seed_told_the_hubs_neighbours(c: &Cluster) {
    for n in [6002, 6003, 6004] {
        let told = c
            .sent
            .iter()
            .filter(|(_, to, m)| *to == addr(n) && matches!(m, Message::DeadConfirmed { .. }))
            .count();
        assert_eq!(told, 3, "neighbour {n}");
    }
}

#[test]
fn a_report_confirmed_by_a_majority_of_neighbours_and_a_failed_probe_removes_the_peer() {
    let mut c = cluster_with_a_hub();
    for seed in [0, 1] {
        report(&mut c, seed, 6002, &[6002, 6003]);
    }
    assert_eq!(c.probes.len(), 2, "each seed checks the suspect itself");
    c.answer_probes(Err("connection refused".into()));
    assert!(c.cores.iter().all(|s| !s.directory().contains(&addr(6001))));
    // Every seed tells each of the dead peer's former neighbours.
    assert_every_seed_told_the_hubs_neighbours(&c);
}

#[test]
fn a_minority_of_neighbours_cannot_get_a_peer_removed() {
    let mut c = cluster_with_a_hub();
    for seed in 0..3 {
        report(&mut c, seed, 6002, &[6002]);
    }
    assert!(c.probes.is_empty());
    assert!(refusals(&c)
        .iter()
        .all(|r| r.contains("1 of its 3 neighbours confirm")));
    assert!(c.cores.iter().all(|s| s.directory().contains(&addr(6001))));
}

#[test]
fn confirmers_must_be_neighbours_and_include_the_reporter() {
    let mut c = cluster_with_a_hub();
    c.register(addr(6005), &[0, 1]);
    c.answer_probes(Ok(()));
    report(&mut c, 0, 6005, &[6005, 6002, 6003]);
    report(&mut c, 0, 6004, &[6002, 6003]);
    let reasons = refusals(&c);
    assert!(
        reasons[0].contains("127.0.0.1:6005 is not a neighbour"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("reporter is not among the confirmers"),
        "{reasons:?}"
    );
    assert!(c.probes.is_empty());
}

#[test]
fn a_suspect_that_answers_the_seeds_own_probe_is_not_removed() {
    let mut c = cluster_with_a_hub();
    for seed in 0..3 {
        report(&mut c, seed, 6002, &[6002, 6003, 6004]);
    }
    c.answer_probes(Ok(()));
    assert!(c.cores.iter().all(|s| s.directory().contains(&addr(6001))));
    assert_eq!(
        refusals(&c)
            .iter()
            .filter(|r| r.contains("answered this seed's own probe"))
            .count(),
        3
    );
}

/// A probe's connection closed before any answer, as a node over its
/// connection limit closes it.
fn turned_away() -> QueryError {
    QueryError::TurnedAway("closed without answering".into())
}

#[test]
fn a_suspect_that_turns_every_probe_away_is_not_removed() {
    // Every neighbour confirms, but the suspect's node is flooded with
    // connections and closes each probe unanswered: it is running, so no
    // seed may count that as death, however many tries.
    let mut c = cluster_with_a_hub();
    for seed in 0..3 {
        report(&mut c, seed, 6002, &[6002, 6003, 6004]);
    }
    for attempt in 1..=DEAD_PROBE_ATTEMPTS {
        assert_eq!(c.probes.len(), 3, "try {attempt}: one probe per seed");
        let probes = std::mem::take(&mut c.probes);
        c.answer_failing(probes, |_| Err(turned_away()));
        c.fire_timers();
    }
    assert!(c.probes.is_empty(), "probed past the last try");
    assert!(c.cores.iter().all(|s| s.directory().contains(&addr(6001))));
    assert!(!c
        .events
        .iter()
        .any(|(_, e)| matches!(e, Event::RemoveProposed { .. })));
    let refused = refusals(&c);
    assert_eq!(
        refused
            .iter()
            .filter(|r| r.contains(&format!(
                "turned away this seed's own probe {DEAD_PROBE_ATTEMPTS} times"
            )))
            .count(),
        3,
        "{refused:?}"
    );
}

#[test]
fn a_dead_suspect_is_removed_though_a_probe_was_turned_away_first() {
    // The first try is cut off (say, the process died mid-answer); the
    // second finds nothing listening, which is death.
    let mut c = cluster_with_a_hub();
    for seed in 0..3 {
        report(&mut c, seed, 6002, &[6002, 6003, 6004]);
    }
    let probes = std::mem::take(&mut c.probes);
    c.answer_failing(probes, |_| Err(turned_away()));
    assert!(c.cores.iter().all(|s| s.directory().contains(&addr(6001))));
    c.fire_timers();
    c.answer_probes(Err("connection refused".into()));
    assert!(c.cores.iter().all(|s| !s.directory().contains(&addr(6001))));
}

#[test]
fn a_neighbour_that_turns_probes_away_is_not_counted_out() {
    // Only 6002 of 6001's three neighbours confirms and names the other
    // two unreachable; the seeds cannot connect to the suspect, and 6003
    // and 6004 turn their probes away: they are running, so they still
    // count, and one confirmer of three removes nothing.
    let mut c = cluster_with_a_hub();
    report_with(&mut c, 0, 6002, &[6002], &[6003, 6004]);
    report_with(&mut c, 1, 6002, &[6002], &[6003, 6004]);
    let probes = std::mem::take(&mut c.probes);
    c.answer_failing(probes, |target| {
        if target == addr(6001) {
            Err(QueryError::NoConnection("connection refused".into()))
        } else {
            Err(turned_away())
        }
    });
    assert!(c.cores.iter().all(|s| s.directory().contains(&addr(6001))));
    assert!(refusals(&c)
        .iter()
        .any(|r| r.contains("1 of its 3 reachable neighbours confirm")));
}

#[test]
fn a_neighbour_named_unreachable_counts_out_only_if_the_seed_cannot_reach_it_either() {
    // 6001's neighbours are 6002, 6003 and 6004; 6003 and 6004 are named
    // unreachable. Only 6002 confirms: one of three is no majority unless
    // the seed, too, finds the other two gone.
    for reachable in [true, false] {
        let mut c = cluster_with_a_hub();
        report_with(&mut c, 0, 6002, &[6002], &[6003, 6004]);
        report_with(&mut c, 1, 6002, &[6002], &[6003, 6004]);
        assert_eq!(c.probes.len(), 6, "suspect and both named neighbours");
        let probes = std::mem::take(&mut c.probes);
        c.answer(probes, |target| {
            if target == addr(6003) && reachable {
                Ok(())
            } else {
                Err("connection refused".into())
            }
        });
        let removed = c.cores.iter().all(|s| !s.directory().contains(&addr(6001)));
        assert_eq!(removed, !reachable, "6003 reachable: {reachable}");
        if reachable {
            assert!(refusals(&c)
                .iter()
                .any(|r| r.contains("1 of its 2 reachable neighbours confirm")));
        }
    }
}

#[test]
fn a_stranger_named_unreachable_does_not_count() {
    // 6005 is no neighbour of 6001: naming it leaves 1 confirmer of 3.
    let mut c = cluster_with_a_hub();
    c.register(addr(6005), &[0, 1]);
    c.answer_probes(Ok(()));
    report_with(&mut c, 0, 6002, &[6002], &[6005]);
    assert!(c.probes.is_empty());
    assert!(refusals(&c)[0].contains("1 of its 3 neighbours confirm"));
}

/// The only refusal, on seed 0, of a report about the hub 6001; and
/// whether anything went further than the refusal (a probe, a vote).
fn refused_outright(c: &Cluster) -> String {
    let reasons = refusals(c);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(c.probes.is_empty(), "the suspect was probed");
    assert!(!removed(c, 6001));
    reasons[0].clone()
}

#[test]
fn a_report_whose_statements_all_verify_is_counted() {
    let mut c = cluster_with_a_hub();
    report(&mut c, 0, 6002, &[6002, 6003]);
    assert!(refusals(&c).is_empty(), "{:?}", refusals(&c));
    assert_eq!(c.probes.len(), 1, "checked, so on to the seed's own probe");
    c.answer_probes(Err("connection refused".into()));
    assert!(c
        .events
        .iter()
        .any(|(_, e)| matches!(e, Event::RemoveProposed { peer, .. } if *peer == addr(6001))));
}

#[test]
fn a_confirmer_with_a_forged_or_wrong_key_signature_is_not_counted() {
    let good = statement(6003, 6001, 1);
    let forged = Statement {
        signature: Signature::from_bytes([0x5a; 64]),
        ..good
    };
    // Signed, as 6003, by another peer's key: the reporter's own, say.
    let wrong_key = identity(6002).state_unresponsive(addr(6003), addr(6001), 1, now());
    for bad in [forged, wrong_key] {
        let mut c = cluster_with_a_hub();
        let statements = vec![statement(6002, 6001, 1), bad];
        deliver(&mut c, 0, 6002, dead_report(6002, 1, statements, vec![]));
        let reason = refused_outright(&c);
        assert_eq!(
            reason,
            "confirmer 127.0.0.1:6003: the signature does not verify against its \
             registered key (for 127.0.0.1:6001 at incarnation 1)"
        );
    }
}

#[test]
fn a_statement_about_another_suspect_or_an_older_life_is_refused() {
    // 6003's genuine statements, but about 6004, and about 6001's life 0.
    for bad in [statement(6003, 6004, 1), statement(6003, 6001, 0)] {
        let mut c = cluster_with_a_hub();
        let statements = vec![statement(6002, 6001, 1), bad];
        deliver(&mut c, 0, 6002, dead_report(6002, 1, statements, vec![]));
        let reason = refused_outright(&c);
        assert!(
            reason.starts_with("confirmer 127.0.0.1:6003: the signature does not verify"),
            "{reason}"
        );
    }
}

#[test]
fn a_statement_far_from_the_seeds_clock_is_refused() {
    // The seed's clock is `beyond` past now(); 6002 signed at the same
    // moment, 6003 by a clock `beyond` behind or ahead.
    let beyond = STATEMENT_WINDOW + Duration::from_secs(1);
    let seed_now = now() + beyond;
    let ahead = seed_now + beyond;
    for (at, words) in [(now(), "601 s old"), (ahead, "601 s ahead")] {
        let mut c = cluster_with_a_hub();
        let odd = identity(6003).state_unresponsive(addr(6003), addr(6001), 1, at);
        let own = identity(6002).state_unresponsive(addr(6002), addr(6001), 1, seed_now);
        let report = dead_report(6002, 1, vec![own, odd], vec![]);
        deliver_at(&mut c, 0, 6002, report, seed_now);
        let reason = refused_outright(&c);
        assert!(
            reason.starts_with("confirmer 127.0.0.1:6003: its statement is")
                && reason.contains(words),
            "{reason}"
        );
    }
    // Within the window, either way, it counts.
    let mut c = cluster_with_a_hub();
    let skewed = now() + STATEMENT_WINDOW;
    let ahead = identity(6003).state_unresponsive(addr(6003), addr(6001), 1, skewed);
    let statements = vec![statement(6002, 6001, 1), ahead];
    deliver(&mut c, 0, 6002, dead_report(6002, 1, statements, vec![]));
    assert!(refusals(&c).is_empty(), "{:?}", refusals(&c));
}

#[test]
fn a_relayed_or_modified_report_cannot_add_confirmers() {
    // 6002's genuine report: its own statement alone, 1 of 3 neighbours.
    let genuine = dead_report(6002, 1, vec![statement(6002, 6001, 1)], vec![]);
    let with_confirmers = |extra: Statement| {
        let mut report = genuine.clone();
        if let Message::DeadReport { confirmers, .. } = &mut report {
            confirmers.push(extra);
        }
        report
    };

    // A relay adds a confirmer it made up: 6003, signed with the relay's
    // key. The report's signature no longer covers what it carries.
    let mut c = cluster_with_a_hub();
    let made_up = identity(6004).state_unresponsive(addr(6003), addr(6001), 1, now());
    deliver(&mut c, 0, 6002, with_confirmers(made_up));
    assert_eq!(
        refused_outright(&c),
        "the report's signature by 127.0.0.1:6002: the signature does not verify \
         against its registered key"
    );

    // Passed off as another's (6004, adding its own genuine statement):
    // its signature is still 6002's.
    let mut c = cluster_with_a_hub();
    deliver(&mut c, 0, 6004, with_confirmers(statement(6004, 6001, 1)));
    assert!(
        refused_outright(&c).starts_with("the report's signature by 127.0.0.1:6004"),
        "{:?}",
        refusals(&c)
    );

    // Even the reporter itself, signing afresh, cannot speak for 6003.
    let mut c = cluster_with_a_hub();
    let as_6003 = identity(6002).state_unresponsive(addr(6003), addr(6001), 1, now());
    let statements = vec![statement(6002, 6001, 1), as_6003];
    deliver(&mut c, 0, 6002, dead_report(6002, 1, statements, vec![]));
    assert!(refused_outright(&c).starts_with("confirmer 127.0.0.1:6003"));

    // A confirmer named twice counts once, and is refused.
    let mut c = cluster_with_a_hub();
    let twice = vec![statement(6002, 6001, 1), statement(6002, 6001, 1)];
    deliver(&mut c, 0, 6002, dead_report(6002, 1, twice, vec![]));
    assert_eq!(
        refused_outright(&c),
        "it names confirmer 127.0.0.1:6002 twice"
    );
}

#[test]
fn a_registration_is_voted_only_with_the_key_its_address_states() {
    // Someone claims 6001's address with its own key; the probe reaches
    // the real 6001, which states its own key.
    let mut c = Cluster::new();
    c.register_with_key(addr(6001), key(6099), &[0, 1]);
    c.answer_probes(Ok(()));
    assert!(!c.cores[0].directory().contains(&addr(6001)));
    assert!(c.events.iter().any(|(_, e)| matches!(
        e,
        Event::ProbeFailed { reason, .. } if reason.contains("has key")
    )));
    // The real registration then commits, with the real key.
    c.register(addr(6001), &[0, 1]);
    c.answer_probes(Ok(()));
    assert_eq!(c.cores[2].directory().key_of(&addr(6001)), Some(key(6001)));
    // Asking again for the same life with another key closes the connection.
    c.register_with_key(addr(6001), key(6099), &[2]);
    assert!(c.events.iter().any(|(_, e)| matches!(
        e,
        Event::ProtocolError { reason, .. } if reason.contains("registered with another key")
    )));
}

#[test]
fn a_key_that_is_no_ed25519_point_is_refused_at_registration() {
    let mut c = Cluster::new();
    let mut neutral = [0; 32];
    neutral[0] = 1;
    c.register_with_key(addr(6001), PublicKey(neutral), &[0]);
    assert!(c.probes.is_empty());
    assert!(c.events.iter().any(|(_, e)| matches!(
        e,
        Event::ProtocolError { reason, .. } if reason.contains("not an ed25519 public key")
    )));
}

#[test]
fn a_removal_names_replacements_that_join_the_pieces_it_cut_apart() {
    // Removing the hub of a star leaves three lone peers.
    let mut c = cluster_with_a_hub();
    for seed in [0, 1] {
        report(&mut c, seed, 6002, &[6002, 6003]);
    }
    c.answer_probes(Err("connection refused".into()));
    let mut plan: BTreeMap<SocketAddr, Option<SocketAddr>> = BTreeMap::new();
    for (_, to, m) in &c.sent {
        if let Message::DeadConfirmed { replacement, .. } = m {
            let earlier = plan.insert(*to, *replacement);
            assert!(
                earlier.is_none_or(|e| e == *replacement),
                "seeds disagree on the replacement for {to}"
            );
        }
    }
    let former = [addr(6002), addr(6003), addr(6004)];
    assert_eq!(plan.keys().copied().collect::<Vec<_>>(), former);
    // The replacement links alone must connect the three.
    let mut reached = BTreeSet::from([addr(6002)]);
    for _ in 0..3 {
        for (from, to) in &plan {
            let to = to.expect("every lone peer gets a replacement");
            assert!(former.contains(&to) && to != *from);
            if reached.contains(from) || reached.contains(&to) {
                reached.insert(*from);
                reached.insert(to);
            }
        }
    }
    assert_eq!(reached.len(), 3, "{plan:?}");
}

fn confirmations_to(c: &Cluster, port: u16) -> usize {
    c.sent
        .iter()
        .filter(|(_, to, m)| *to == addr(port) && matches!(m, Message::DeadConfirmed { .. }))
        .count()
}

#[test]
fn a_report_after_the_removal_is_answered_with_the_confirmation() {
    let mut c = cluster_with_a_hub();
    let incarnation = c.cores[0].directory().incarnation_of(&addr(6001)).unwrap();
    for seed in [0, 1] {
        report(&mut c, seed, 6002, &[6002, 6003]);
    }
    c.answer_probes(Err("connection refused".into()));
    let before = confirmations_to(&c, 6004);
    let late = dead_report(
        6004,
        incarnation,
        vec![statement(6004, 6001, incarnation)],
        vec![],
    );
    deliver(&mut c, 2, 6004, late);
    assert_eq!(confirmations_to(&c, 6004), before + 1);
    assert!(
        c.probes.iter().all(|(_, to, _)| *to != addr(6001)),
        "the dead peer is not checked again"
    );
}

#[test]
fn a_reporter_whose_link_left_the_topology_first_is_still_told() {
    let mut c = cluster_with_a_hub();
    // 6004 dropped the dead hub from its links before the removal, and
    // 6001 never reported its own: the edge is gone from the topology.
    c.cores[0].handle_message(addr(6001), link_report(&[6002, 6003], 2), now());
    c.settle();
    for seed in [0, 1] {
        report(&mut c, seed, 6002, &[6002, 6003]);
        report(&mut c, seed, 6004, &[6004]);
    }
    c.answer_probes(Err("connection refused".into()));
    assert!(c.cores.iter().all(|s| !s.directory().contains(&addr(6001))));
    assert_eq!(
        confirmations_to(&c, 6004),
        2,
        "from each seed it reported to"
    );
}

#[test]
fn a_peer_left_without_neighbours_is_checked_by_the_seeds_themselves() {
    // The hub's removal leaves 6002, 6003 and 6004 with no neighbour to
    // report them; each seed probes them on its own.
    let mut c = cluster_with_a_hub();
    for seed in [0, 1] {
        report(&mut c, seed, 6002, &[6002, 6003]);
    }
    c.answer_probes(Err("connection refused".into()));
    let orphans: BTreeSet<SocketAddr> = c.probes.iter().map(|(_, to, _)| *to).collect();
    assert_eq!(
        orphans,
        BTreeSet::from([addr(6002), addr(6003), addr(6004)])
    );
    assert_eq!(c.probes.len(), 9, "every seed checks every orphan");
    // 6003 is dead; the others answer.
    let probes = std::mem::take(&mut c.probes);
    c.answer(probes, |target| {
        if target == addr(6003) {
            Err("connection refused".into())
        } else {
            Ok(())
        }
    });
    let registered: Vec<bool> = [6002, 6003, 6004]
        .iter()
        .map(|p| c.cores[0].directory().contains(&addr(*p)))
        .collect();
    assert_eq!(registered, vec![true, false, true]);
}

fn removed(c: &Cluster, port: u16) -> bool {
    c.cores.iter().all(|s| !s.directory().contains(&addr(port)))
}

fn drop_connections_to(c: &mut Cluster, port: u16) {
    for seed in [0, 1] {
        c.cores[seed].handle_link_down(addr(port), now());
    }
    c.settle();
}

#[test]
fn a_dropped_connection_is_probed_but_a_peer_with_neighbours_is_left_to_their_report() {
    let mut c = cluster_with_a_hub();
    drop_connections_to(&mut c, 6001);
    assert_eq!(c.probes.len(), 2, "each seed probes it");
    c.answer_probes(Err("connection refused".into()));
    assert!(!removed(&c, 6001), "its neighbours will report it");
    // A peer with no links at all is removed on the seeds' own probes.
    c.register(addr(6005), &[0, 1]);
    c.answer_probes(Ok(()));
    drop_connections_to(&mut c, 6005);
    c.answer_probes(Err("connection refused".into()));
    assert!(removed(&c, 6005));
}

#[test]
fn two_peers_that_die_together_each_the_others_last_neighbour_are_removed() {
    let mut c = two_peers_6001_reporting_a_link_to_6002();
    c.settle();
    drop_connections_to(&mut c, 6001);
    c.answer_probes(Err("connection refused".into()));
    assert!(!removed(&c, 6001), "6002 may still report it");
    drop_connections_to(&mut c, 6002);
    // 6002 has no watcher left: voted out; then 6001 is checked again.
    c.answer_probes(Err("connection refused".into()));
    c.answer_probes(Err("connection refused".into()));
    assert!(removed(&c, 6001) && removed(&c, 6002));
}

#[test]
fn two_dead_neighbours_are_each_checked_and_voted_on_once_while_their_removal_is_pending() {
    // Seed 0's votes do not commit (the other seeds have not voted yet), so
    // both peers stay registered: each new finding must not set off a
    // fresh check of the other, over and over.
    let mut c = two_peers_6001_reporting_a_link_to_6002();
    c.settle();
    c.cut_off = vec![0];
    c.cores[0].handle_link_down(addr(6001), now());
    c.settle();
    c.cores[0].handle_link_down(addr(6002), now());
    c.settle();
    let mut rounds = 0;
    while !c.probes.is_empty() {
        rounds += 1;
        assert!(rounds <= 4, "seed 0 keeps probing: {:?}", c.probes);
        c.answer_probes(Err("connection refused".into()));
    }
    let votes: Vec<SocketAddr> = c
        .events
        .iter()
        .filter_map(|(i, e)| match e {
            Event::RemoveProposed { peer, .. } if *i == 0 => Some(*peer),
            _ => None,
        })
        .collect();
    assert_eq!(votes, vec![addr(6002), addr(6001)], "one vote each");
}

#[test]
fn a_removal_vote_that_found_no_leader_is_proposed_again_when_one_is_known() {
    // Seed 0 checks a report while cut off from the others: its vote is
    // lost. Seed 1 checks one later and votes; one vote is not enough.
    let mut c = cluster_with_a_hub();
    c.cut_off = vec![0];
    report(&mut c, 0, 6002, &[6002, 6003]);
    c.answer_probes(Err("connection refused".into()));
    c.cut_off.clear();
    report(&mut c, 1, 6002, &[6002, 6003]);
    c.answer_probes(Err("connection refused".into()));
    assert!(!removed(&c, 6001), "one vote removed a peer");
    // Seed 0 lost the leader, then hears of one again.
    c.cores[0].handle_leader(None, now());
    c.cores[0].handle_leader(Some(addr(5011)), now());
    c.settle();
    assert!(removed(&c, 6001), "seed 0's checked vote was lost for good");
    // Nothing left to propose again afterwards.
    c.cores[0].handle_leader(None, now());
    c.cores[0].handle_leader(Some(addr(5010)), now());
    c.settle();
    let proposed = c
        .events
        .iter()
        .filter(|(i, e)| *i == 0 && matches!(e, Event::RemoveProposed { .. }))
        .count();
    assert_eq!(proposed, 2, "the first vote and its one retry");
}

#[test]
fn a_registration_request_from_a_removed_life_is_told_of_the_removal() {
    let mut c = cluster_with_a_hub();
    for seed in [0, 1] {
        report(&mut c, seed, 6002, &[6002, 6003]);
    }
    c.answer_probes(Err("connection refused".into()));
    c.sent.clear();
    // 6001 was cut off, not dead; it checks in with its old incarnation.
    c.register(addr(6001), &[2]);
    assert!(c.sent.iter().any(|(_, to, m)| *to == addr(6001)
        && matches!(m, Message::DeadConfirmed { peer, incarnation: 1, .. } if *peer == addr(6001))));
    assert!(
        c.probes.iter().all(|(_, to, _)| *to != addr(6001)),
        "no vote for a removed life"
    );
}

#[test]
fn seeds_sharing_one_applied_directory_act_as_if_each_applied_it() {
    let vote = |kind, port, seed: usize| Command::Vote {
        change: match kind {
            ChangeKind::Add => Change::add(addr(port), 1, key(port)),
            ChangeKind::Remove => Change::remove(addr(port), 1),
        },
        seed: seeds()[seed],
    };
    let links = |port, to: &[u16]| Command::Links {
        peer: addr(port),
        neighbors: to.iter().map(|p| addr(*p)).collect(),
        incarnation: 1,
        seq: 0,
    };
    let log = vec![
        Command::Init {
            seeds: seeds(),
            max_peers_per_ip: None,
        },
        vote(ChangeKind::Add, 6001, 0),
        vote(ChangeKind::Add, 6001, 1),
        vote(ChangeKind::Add, 6002, 2),
        vote(ChangeKind::Add, 6002, 0),
        vote(ChangeKind::Add, 6003, 1),
        vote(ChangeKind::Add, 6003, 2),
        links(6001, &[6002, 6003]),
        links(6002, &[6001]),
        links(6002, &[6001]),
        vote(ChangeKind::Remove, 6001, 0),
        vote(ChangeKind::Remove, 6001, 2),
        links(6001, &[6003]),
    ];
    let fresh = || -> Vec<SeedCore> {
        seeds()
            .into_iter()
            .map(|s| SeedCore::new(s, seeds()))
            .collect()
    };
    let (mut alone, mut shared) = (fresh(), fresh());
    let mut outcomes = (Vec::new(), Vec::new());
    for command in &log {
        let outcome = alone[0].apply_committed(command);
        for core in &mut alone[1..] {
            core.handle_applied(command, &outcome, now());
        }
        outcomes.0.push(outcome);
        let mut all: Vec<&mut SeedCore> = shared.iter_mut().collect();
        outcomes
            .1
            .push(SeedCore::apply_committed_shared(&mut all, command));
    }
    assert_eq!(outcomes.0, outcomes.1);
    assert!(outcomes.0.contains(&Outcome::LinksRecorded));
    for (a, b) in alone.iter_mut().zip(&mut shared) {
        assert_eq!(a.directory(), b.directory());
        let drain = |c: &mut SeedCore| std::iter::from_fn(|| c.poll_output()).collect::<Vec<_>>();
        let (said_alone, said_shared) = (drain(a), drain(b));
        assert!(said_alone
            .iter()
            .any(|o| matches!(o, Output::Event(Event::RemoveCommitted { .. }))));
        assert_eq!(said_alone, said_shared);
    }
}

/// Drains `core`'s outputs: the commands it proposed, and the REKEY_REPLY
/// it answered, if any.
fn proposals_and_reply(core: &mut SeedCore) -> (Vec<Command>, Option<(bool, String)>) {
    let (mut proposed, mut reply) = (Vec::new(), None);
    while let Some(output) = core.poll_output() {
        match output {
            Output::Propose(command) => proposed.push(command),
            Output::Reply {
                msg: Message::RekeyReply { accepted, detail },
                ..
            } => reply = Some((accepted, detail)),
            _ => {}
        }
    }
    (proposed, reply)
}

#[test]
fn a_seed_proposes_its_own_key_until_it_is_pinned() {
    let me = key(5010);
    let mut core = SeedCore::new(addr(5010), seeds()).with_key(me);
    core.handle_leader(Some(addr(5011)), now());
    let pin = Command::SeedKey {
        seed: addr(5010),
        key: me,
    };
    assert!(
        !proposals_and_reply(&mut core).0.contains(&pin),
        "nothing is pinned before the cluster has formed"
    );
    let init = Command::Init {
        seeds: seeds(),
        max_peers_per_ip: None,
    };
    core.handle_applied(&init, &Outcome::Initialised, now());
    assert_eq!(proposals_and_reply(&mut core).0, vec![pin.clone()]);
    // The proposal was lost: the retry proposes it again.
    core.handle_timer(SeedTimer::KeyRetry, now());
    assert_eq!(proposals_and_reply(&mut core).0, vec![pin.clone()]);
    core.handle_applied(&pin, &Outcome::SeedKeyPinned, now());
    core.handle_timer(SeedTimer::KeyRetry, now());
    assert!(proposals_and_reply(&mut core).0.is_empty(), "pinned: done");
    assert_eq!(core.pinned_key(&addr(5010)), Some(me));
    assert_eq!(core.pinned_key_refusing(&addr(5010), &me), None);
    assert_eq!(
        core.pinned_key_refusing(&addr(5010), &key(6001)),
        Some(me),
        "another key claiming this seed is refused"
    );
    assert_eq!(
        core.pinned_key_refusing(&addr(5011), &key(6001)),
        None,
        "no key is pinned for 5011 yet"
    );
}

#[test]
fn a_rekey_order_counts_only_signed_with_the_seeds_own_key_and_naming_the_pinned_key() {
    let me = identity(5010);
    let mut core = SeedCore::new(addr(5010), seeds()).with_key(me.public_key());
    let mut directory = Directory::default();
    directory.apply(&Command::Init {
        seeds: seeds(),
        max_peers_per_ip: None,
    });
    let (lost, old, new) = (addr(5012), key(5012), key(6000));
    directory.apply(&Command::SeedKey {
        seed: lost,
        key: old,
    });
    core.handle_snapshot(directory, now());
    proposals_and_reply(&mut core);
    let order = |signer: &Identity, old: PublicKey| Message::RekeyRequest {
        version: PROTOCOL_VERSION,
        seed: lost,
        old,
        new,
        signature: signer.order_rekey(addr(5010), lost, old, new),
    };
    // Signed with another key: an attacker's, or another seed's.
    for signer in [identity(6666), identity(5011)] {
        core.handle_query(1, order(&signer, old), now());
        let (proposed, reply) = proposals_and_reply(&mut core);
        assert!(proposed.is_empty(), "{proposed:?}");
        let (accepted, detail) = reply.expect("an answer");
        assert!(!accepted);
        assert!(
            detail.contains("not signed with the key of seed"),
            "{detail}"
        );
    }
    // Signed, but naming a key that is not the pinned one.
    core.handle_query(2, order(&me, key(6001)), now());
    let (proposed, reply) = proposals_and_reply(&mut core);
    assert!(proposed.is_empty());
    assert!(!reply.expect("an answer").0);
    // Sound: this seed proposes its own vote, and nothing more.
    core.handle_query(3, order(&me, old), now());
    let (proposed, reply) = proposals_and_reply(&mut core);
    assert!(reply.expect("an answer").0);
    assert_eq!(
        proposed,
        vec![Command::Rekey {
            seed: lost,
            old,
            new,
            voter: addr(5010),
        }]
    );
}

/// Registers peers `ports`, with no links.
fn cluster_of(ports: std::ops::RangeInclusive<u16>) -> Cluster {
    let mut c = Cluster::new();
    for p in ports {
        c.register(addr(p), &[0, 1]);
        c.answer_probes(Ok(()));
    }
    c
}

/// Peer `from` tells every seed that it could not dial `peer`.
fn dial_failed(c: &mut Cluster, from: u16, peer: u16) {
    for core in &mut c.cores {
        core.handle_message(addr(from), Message::DialFailed { peer: addr(peer) }, now());
    }
    c.settle();
}

#[test]
fn a_ghost_reported_by_a_failed_dial_is_removed_on_the_seeds_own_probes() {
    let mut c = cluster_of(6001..=6002);
    dial_failed(&mut c, 6002, 6001);
    assert_eq!(c.probes.len(), 3, "every seed probes it");
    c.answer_probes(Err("connection refused".into()));
    assert!(removed(&c, 6001));
    assert!(!removed(&c, 6002));
}

#[test]
fn a_false_dial_failed_report_does_not_remove_a_peer_that_answers_the_seeds() {
    let mut c = cluster_of(6001..=6002);
    dial_failed(&mut c, 6002, 6001);
    c.answer_probes(Ok(()));
    assert!(c.cores.iter().all(|s| s.directory().contains(&addr(6001))));
    assert!(!c
        .events
        .iter()
        .any(|(_, e)| matches!(e, Event::RemoveProposed { .. })));
}

#[test]
fn a_peer_that_turns_the_probes_away_is_not_removed_on_a_dial_failed_report() {
    let mut c = cluster_of(6001..=6002);
    dial_failed(&mut c, 6002, 6001);
    for attempt in 1..=DEAD_PROBE_ATTEMPTS {
        assert_eq!(c.probes.len(), 3, "try {attempt}: one probe per seed");
        let probes = std::mem::take(&mut c.probes);
        c.answer_failing(probes, |_| Err(turned_away()));
        c.fire_timers();
    }
    assert!(c.probes.is_empty(), "probed past the last try");
    assert!(c.cores.iter().all(|s| s.directory().contains(&addr(6001))));
}

#[test]
fn a_ghost_with_a_neighbour_that_still_holds_the_link_is_left_to_that_neighbour() {
    // 6001 reports a link to 6002, and 6002 holds it too: 6002 will report
    // 6001 if it is dead. Once 6002 reports the link gone, the seeds that
    // found 6001 dead vote.
    let mut c = two_peers_6001_reporting_a_link_to_6002();
    c.cores[0].handle_message(addr(6002), link_report(&[6001], 1), now());
    c.settle();
    dial_failed(&mut c, 6002, 6001);
    c.answer_probes(Err("connection refused".into()));
    assert!(!removed(&c, 6001), "6002 may still report it");
    c.cores[0].handle_message(addr(6002), link_report(&[], 2), now());
    c.settle();
    c.answer_probes(Err("connection refused".into()));
    assert!(removed(&c, 6001));
}

#[test]
fn dial_failed_reports_start_at_most_the_reporters_budget_of_checks() {
    let mut c = cluster_of(6001..=6012);
    for peer in 6002..=6012 {
        c.cores[0].handle_message(addr(6001), Message::DialFailed { peer: addr(peer) }, now());
    }
    // From a node that is not registered: no check at all.
    c.cores[0].handle_message(addr(6099), Message::DialFailed { peer: addr(6002) }, now());
    c.settle();
    assert_eq!(c.probes.len(), DIAL_CHECKS_PER_REPORTER as usize);
    let checking: Vec<bool> = c
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::DialFailedReceived { checking, .. } => Some(*checking),
            _ => None,
        })
        .collect();
    assert_eq!(checking.iter().filter(|c| **c).count(), 8);
    assert_eq!(checking.len(), 12);
    // A new window, a new budget.
    let later = Timestamp(now().0 + DIAL_CHECK_WINDOW.as_micros() as u64);
    c.cores[0].handle_message(addr(6001), Message::DialFailed { peer: addr(6012) }, later);
    c.settle();
    assert_eq!(c.probes.len(), 9);
}

#[test]
fn seeds_that_start_again_check_every_registered_peer_and_remove_the_dead_ones() {
    // 6001 and 6002 linked, 6003 alone: 6001 and 6003 died while the seeds
    // were down, 6002 runs.
    let mut c = two_peers_6001_reporting_a_link_to_6002();
    c.register(addr(6003), &[0, 1]);
    c.answer_probes(Ok(()));
    c.cores[0].handle_message(addr(6002), link_report(&[6001], 1), now());
    c.settle();
    let directory = c.cores[0].directory().clone();
    c.cores = seeds()
        .into_iter()
        .map(|s| {
            let mut core = SeedCore::new(s, seeds());
            core.handle_snapshot(directory.clone(), now());
            core.handle_leader(Some(addr(5010)), now());
            core
        })
        .collect();
    c.settle();
    assert_eq!(c.probes.len(), 9, "every seed probes every peer");
    assert!(c
        .events
        .iter()
        .any(|(_, e)| *e == Event::RegisteredPeersChecked { peers: 3 }));
    let dead = [addr(6001), addr(6003)];
    while !c.probes.is_empty() {
        let probes = std::mem::take(&mut c.probes);
        c.answer(probes, |target| {
            if dead.contains(&target) {
                Err("connection refused".into())
            } else {
                Ok(())
            }
        });
    }
    assert!(removed(&c, 6003), "nobody can report it");
    assert!(!removed(&c, 6001), "6002 holds its link and will report it");
    assert!(!removed(&c, 6002));
    // A leader change later checks nothing again.
    let before = c.probes.len();
    for core in &mut c.cores {
        core.handle_leader(Some(addr(5011)), now());
    }
    c.settle();
    assert_eq!(c.probes.len(), before);
}

/// Peer 6001's LEAVE of life `incarnation`, signed by `by`'s key.
fn leave_of_6001(incarnation: u64, by: u16) -> Message {
    Message::leave_signed_by(&identity(by), addr(6001), incarnation)
}

#[test]
fn a_signed_leave_removes_the_peer_at_once_without_a_probe_and_seeds_log_left() {
    let mut c = cluster_with_a_hub();
    // The peer tells two seeds, as it is registered with a majority.
    for seed in [0, 1] {
        deliver(&mut c, seed, 6001, leave_of_6001(1, 6001));
    }
    let probed_6001 = |c: &Cluster| c.probes.iter().any(|(_, to, _)| *to == addr(6001));
    assert!(!probed_6001(&c), "no probe: the peer said it goes");
    assert!(
        c.log.iter().any(
            |cmd| matches!(cmd, Command::Leave { peer, incarnation: 1, .. } if *peer == addr(6001))
        ),
        "{:?}",
        c.log
    );
    assert!(c.cores.iter().all(|s| !s.directory().contains(&addr(6001))));
    for (i, core) in c.cores.iter().enumerate() {
        assert_eq!(core.directory().left_at(&addr(6001)), Some(1));
        let logged = c.events.iter().any(|(at, e)| {
            *at == i
                && *e
                    == Event::Left {
                        peer: addr(6001),
                        incarnation: 1,
                    }
        });
        assert!(logged, "seed {i} logs `left`");
    }
    // The former neighbours are told, with replacements, to repair.
    assert_every_seed_told_the_hubs_neighbours(&c);
    // Its connections closing afterwards sets off no check.
    for core in &mut c.cores {
        core.handle_link_down(addr(6001), now());
    }
    c.settle();
    assert!(!probed_6001(&c));
}

#[test]
fn a_leave_relayed_by_a_neighbour_counts_as_the_peers_own() {
    let mut c = cluster_with_a_hub();
    deliver(&mut c, 0, 6001, leave_of_6001(1, 6001));
    deliver(&mut c, 2, 6002, leave_of_6001(1, 6001));
    assert!(c.cores.iter().all(|s| !s.directory().contains(&addr(6001))));
}

#[test]
fn one_seed_alone_cannot_remove_a_peer_on_its_leave() {
    let mut c = cluster_with_a_hub();
    deliver(&mut c, 0, 6001, leave_of_6001(1, 6001));
    assert!(c.cores.iter().all(|s| s.directory().contains(&addr(6001))));
}

#[test]
fn a_forged_or_replayed_leave_removes_nothing() {
    let mut c = cluster_with_a_hub();
    // Signed by another key, brought by the forger or by the peer's address.
    for seed in 0..3 {
        deliver(&mut c, seed, 6002, leave_of_6001(1, 6002));
        deliver(&mut c, seed, 6001, leave_of_6001(1, 9999));
    }
    // Signed by the peer, but for another life: an older one replayed.
    for seed in 0..3 {
        deliver(&mut c, seed, 6002, leave_of_6001(0, 6001));
        deliver(&mut c, seed, 6002, leave_of_6001(2, 6001));
    }
    assert!(c.cores.iter().all(|s| s.directory().contains(&addr(6001))));
    assert!(c
        .log
        .iter()
        .all(|cmd| !matches!(cmd, Command::Leave { .. })));
    let refused = refusals_of(&c, "leave_refused");
    assert_eq!(refused.len(), 12, "{refused:?}");
    assert!(refused[0].contains("does not verify"), "{refused:?}");
    assert!(
        refused
            .iter()
            .any(|r| r.contains("not registered at incarnation 0")),
        "{refused:?}"
    );
}

#[test]
fn a_leave_vote_and_a_failure_vote_for_one_life_make_one_majority() {
    let mut c = cluster_with_a_hub();
    let mut d = c.cores[0].directory().clone();
    let change = Change::remove(addr(6001), 1);
    assert!(matches!(
        d.apply(&Command::Vote {
            change,
            seed: addr(5010)
        }),
        Outcome::VoteCounted { .. }
    ));
    let leave = Command::Leave {
        peer: addr(6001),
        incarnation: 1,
        seed: addr(5011),
    };
    assert!(matches!(d.apply(&leave), Outcome::Committed { .. }));
    assert_eq!(d.left_at(&addr(6001)), Some(1));
    // A new life at the address is not one that left.
    let add = |seed| Command::Vote {
        change: Change::add(addr(6001), 2, key(6001)),
        seed,
    };
    d.apply(&add(addr(5010)));
    d.apply(&add(addr(5011)));
    assert_eq!(d.left_at(&addr(6001)), None);
    c.settle();
}
