//! Properties of the whole protocol, each checked over many seeds of the
//! simulator. CI runs [`CI_SEEDS`] seeds per property; the `--ignored`
//! twins run 200. A failure prints its seed and the command that replays it.

use std::{net::SocketAddr, time::Duration};

use super::{
    scenario::{run, Check, Step},
    Logged, NetworkModel,
};
use crate::proto::{
    peer::{ping_timeout, PeerSettings},
    Event,
};

/// Seeds per property in CI; the ignored tests run 200.
const CI_SEEDS: u64 = 25;
const ALL_SEEDS: u64 = 200;

fn settings() -> PeerSettings {
    PeerSettings {
        gossip_count: 0,
        ping_interval: Duration::from_secs(1),
        ..PeerSettings::default()
    }
}

/// The longest a dead peer may stay registered, as the settings imply:
/// `ping_misses` missed PINGs (each judged a ping timeout after it went out,
/// up to an interval after the fault), the neighbours' checks (one ping
/// timeout plus the query margin), the seeds' 500 ms probe, and 1 s for
/// latencies and the log.
fn detection_bound(settings: &PeerSettings) -> Duration {
    let interval = settings.ping_interval;
    interval * settings.ping_misses.get()
        + ping_timeout(interval) * 2
        + Duration::from_secs(1)
        + Duration::from_millis(500)
        + Duration::from_secs(1)
}

/// Runs `steps` for every seed in `seeds` (or only the one in
/// GOSSIPNET_SIM_SEED), and panics with a replay command on a failure.
fn check_property(test: &str, seeds: u64, network: NetworkModel, steps: &[Step]) {
    let only: Option<u64> = std::env::var("GOSSIPNET_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    for seed in only.map_or(0..seeds, |s| s..s + 1) {
        if let Err(failure) = run(seed, steps, settings(), network.clone()) {
            panic!(
                "{failure}replay: GOSSIPNET_SIM_SEED={seed} cargo test --lib sim::tests::{test} -- --include-ignored --exact"
            );
        }
    }
}

fn wan() -> NetworkModel {
    NetworkModel {
        latency: (Duration::from_millis(1), Duration::from_millis(20)),
        loss: 0.01,
    }
}

fn gossip_steps() -> Vec<Step> {
    vec![
        Step::Join(20),
        Step::Wait(Duration::from_secs(2)),
        Step::Gossip,
        Step::Gossip,
        Step::Gossip,
        Step::Expect(Check::GossipEverywhere, Duration::from_secs(5)),
    ]
}

fn crash_steps() -> Vec<Step> {
    vec![
        Step::Join(20),
        Step::Wait(Duration::from_secs(3)),
        Step::Crash(5),
        Step::Expect(Check::FaultyRemoved, detection_bound(&settings())),
        Step::Expect(Check::LiveOverlayConnected, Duration::from_secs(10)),
        Step::Gossip,
        Step::Expect(Check::GossipEverywhere, Duration::from_secs(5)),
        Step::Wait(Duration::from_secs(10)),
    ]
}

fn freeze_steps() -> Vec<Step> {
    vec![
        Step::Join(15),
        Step::Wait(Duration::from_secs(3)),
        Step::Freeze(3),
        Step::Expect(Check::FaultyRemoved, detection_bound(&settings())),
        Step::ResumeAll,
        Step::Wait(Duration::from_secs(10)),
        Step::Expect(Check::LiveOverlayConnected, Duration::from_secs(10)),
        Step::Gossip,
        Step::Expect(Check::GossipEverywhere, Duration::from_secs(5)),
    ]
}

fn partition_steps() -> Vec<Step> {
    vec![
        Step::Join(20),
        Step::Wait(Duration::from_secs(3)),
        Step::Isolate(4),
        Step::Wait(Duration::from_secs(20)),
        Step::Heal,
        Step::Expect(Check::AllRegistered, Duration::from_secs(30)),
        Step::Expect(Check::LiveOverlayConnected, Duration::from_secs(10)),
        Step::Gossip,
        Step::Expect(Check::GossipEverywhere, Duration::from_secs(5)),
    ]
}

/// An attacker floods the connections of live peers and of their
/// neighbours, then accuses them with evidence signed by every neighbour.
/// Once the flood ends, real crashes are still found in the usual bound.
/// The checks after every step include that no live peer was removed.
fn exhaustion_steps() -> Vec<Step> {
    vec![
        Step::Join(20),
        Step::Wait(Duration::from_secs(3)),
        Step::ExhaustAndAccuse(3),
        Step::Wait(Duration::from_secs(15)),
        Step::Relieve,
        Step::Crash(2),
        Step::Expect(Check::FaultyRemoved, detection_bound(&settings())),
        Step::Expect(Check::LiveOverlayConnected, Duration::from_secs(10)),
    ]
}

/// Repair bursts: new peers link to the best-linked ones at once, then
/// most neighbours of the best-linked peer crash together, so its set
/// changes several times within milliseconds, and again as replacements
/// come. Each report takes its own way to the log, so they commit in any
/// order. After every step no report may have been applied out of order,
/// and once quiet the directory records what each peer holds.
fn repair_burst_steps() -> Vec<Step> {
    vec![
        Step::Join(15),
        Step::Wait(Duration::from_secs(2)),
        Step::JoinAtOnce(8),
        Step::Wait(Duration::from_secs(2)),
        Step::CrashNeighbours(4),
        Step::Expect(Check::FaultyRemoved, detection_bound(&settings())),
        Step::Expect(Check::LiveOverlayConnected, Duration::from_secs(10)),
        Step::Wait(Duration::from_secs(5)),
        Step::Expect(Check::RecordedLinksAsPeersHoldThem, Duration::from_secs(1)),
    ]
}

#[test]
fn link_sets_are_never_applied_out_of_order_and_match_the_peers_once_quiet() {
    check_property(
        "link_sets_are_never_applied_out_of_order_and_match_the_peers_once_quiet",
        CI_SEEDS,
        wan(),
        &repair_burst_steps(),
    );
}

#[test]
#[ignore = "200 seeds; run with --ignored"]
fn link_sets_are_never_applied_out_of_order_and_match_the_peers_once_quiet_over_200_seeds() {
    check_property(
        "link_sets_are_never_applied_out_of_order_and_match_the_peers_once_quiet_over_200_seeds",
        ALL_SEEDS,
        wan(),
        &repair_burst_steps(),
    );
}

#[test]
fn no_live_peer_is_removed_under_connection_exhaustion_and_forged_reports() {
    check_property(
        "no_live_peer_is_removed_under_connection_exhaustion_and_forged_reports",
        CI_SEEDS,
        wan(),
        &exhaustion_steps(),
    );
}

#[test]
#[ignore = "200 seeds; run with --ignored"]
fn no_live_peer_is_removed_under_connection_exhaustion_and_forged_reports_over_200_seeds() {
    check_property(
        "no_live_peer_is_removed_under_connection_exhaustion_and_forged_reports_over_200_seeds",
        ALL_SEEDS,
        wan(),
        &exhaustion_steps(),
    );
}

/// Some live peers stop reading their links with other peers. Their
/// neighbours get no PONG from them and report them, with each other's
/// statements, but the seeds' probes, on fresh connections, are answered:
/// no report removes them, and the slow readers' own reports about the
/// honest peers they cannot hear are refused the same way. The neighbours
/// give up and drop the links (about 15 s: three missed PINGs, then five
/// rounds of questions). Every live peer stays registered at its life;
/// once the slow readers read again, real crashes are still found in the
/// usual bound. The checks after every step include that no live peer,
/// slow readers among them, was removed.
///
/// Over 200 seeds no live peer is ever removed, but two crashed peers stay
/// registered past the bound, for causes not yet fixed: seed 35 (this
/// scenario), where the crashed peer's older LINK_REPORT committed after
/// its newer one, so the seeds refuse every report naming the neighbour it
/// dropped as "not a neighbour in the committed topology"; and seed 127
/// (with exhaustion), where 4 of the crashed peer's 8 committed neighbours,
/// one a former slow reader, confirm, and a majority needs 5.
fn slow_reader_steps() -> Vec<Step> {
    vec![
        Step::Join(20),
        Step::Wait(Duration::from_secs(3)),
        Step::SlowReader(2),
        // Long enough for every round of questions the neighbours ask.
        Step::Wait(Duration::from_secs(30)),
        Step::Expect(Check::AllRegistered, Duration::from_secs(10)),
        Step::Relieve,
        // A slow reader knows no incarnation of a peer that linked to it
        // while it read nothing, so it could not report it; it learns them
        // from the PONGs it now reads.
        Step::Wait(Duration::from_secs(5)),
        Step::Crash(2),
        Step::Expect(Check::FaultyRemoved, detection_bound(&settings())),
        Step::Expect(Check::AllRegistered, Duration::from_secs(10)),
    ]
}

/// Every lever at once: slow readers, then connection exhaustion of other
/// peers and of their neighbours with reports signed by all of those
/// neighbours.
fn slow_reader_and_exhaustion_steps() -> Vec<Step> {
    let mut steps = slow_reader_steps();
    let slow = steps
        .iter()
        .position(|s| matches!(s, Step::SlowReader(_)))
        .expect("a slow reader step");
    steps.insert(slow + 1, Step::ExhaustAndAccuse(3));
    steps
}

/// What the honest peers should keep despite slow readers: one overlay,
/// and every line typed once the slow links are dropped. Not met today;
/// see the test below.
fn slow_reader_service_steps() -> Vec<Step> {
    let mut steps = slow_reader_steps();
    // Up to the end of the wait for the neighbours' questions.
    steps.truncate(4);
    steps.extend([
        Step::Expect(Check::LiveOverlayConnected, Duration::from_secs(10)),
        Step::Gossip,
        Step::Expect(Check::GossipEverywhere, Duration::from_secs(5)),
    ]);
    steps
}

#[test]
fn no_live_peer_is_removed_under_slow_readers() {
    check_property(
        "no_live_peer_is_removed_under_slow_readers",
        CI_SEEDS,
        wan(),
        &slow_reader_steps(),
    );
}

#[test]
#[ignore = "200 seeds; run with --ignored"]
fn no_live_peer_is_removed_under_slow_readers_over_200_seeds() {
    check_property(
        "no_live_peer_is_removed_under_slow_readers_over_200_seeds",
        ALL_SEEDS,
        wan(),
        &slow_reader_steps(),
    );
}

#[test]
fn no_live_peer_is_removed_under_slow_readers_exhaustion_and_forged_reports_together() {
    check_property(
        "no_live_peer_is_removed_under_slow_readers_exhaustion_and_forged_reports_together",
        CI_SEEDS,
        wan(),
        &slow_reader_and_exhaustion_steps(),
    );
}

#[test]
#[ignore = "200 seeds; run with --ignored"]
fn no_live_peer_is_removed_under_slow_readers_exhaustion_and_forged_reports_together_over_200_seeds(
) {
    check_property(
        "no_live_peer_is_removed_under_slow_readers_exhaustion_and_forged_reports_together_over_200_seeds",
        ALL_SEEDS,
        wan(),
        &slow_reader_and_exhaustion_steps(),
    );
}

/// A known gap, kept as the test a fix must pass. A link dropped on
/// giving up a suspect is never replaced: the seeds plan repairs only for
/// removals, and a peer links anew only when it has no neighbour left. So
/// honest peers that reached the overlay only through a slow reader are
/// cut off once they drop it (seed 23: two pairs, each peer with one
/// honest neighbour in the pair), and stay so after it reads again.
#[test]
#[ignore = "fails today (seed 23): a link dropped on giving up a suspect is not replaced, so honest peers bridged only by a slow reader are cut off"]
fn honest_peers_stay_one_overlay_and_get_every_line_around_slow_readers() {
    check_property(
        "honest_peers_stay_one_overlay_and_get_every_line_around_slow_readers",
        CI_SEEDS,
        wan(),
        &slow_reader_service_steps(),
    );
}

/// The slow-reader properties are not met by doing nothing: the slow readers'
/// neighbours do suspect and report them, the seeds refuse every report
/// (their probes are answered), and the neighbours then drop the links.
#[test]
fn a_slow_reader_is_reported_by_its_neighbours_refused_by_the_seeds_and_dropped() {
    let steps = [
        Step::Join(20),
        Step::Wait(Duration::from_secs(3)),
        Step::SlowReader(1),
        Step::Wait(Duration::from_secs(30)),
    ];
    for seed in 0..5 {
        let run = run(seed, &steps, settings(), wan()).unwrap_or_else(|f| panic!("{f}"));
        let slow = *run.slow.first().expect("a slow reader");
        let about_it = |pick: fn(&Event) -> Option<SocketAddr>| {
            run.sim
                .events()
                .iter()
                .filter(|e| pick(&e.event) == Some(slow))
                .count()
        };
        let reports = about_it(|e| match e {
            Event::DeadReportSent { peer, .. } => Some(*peer),
            _ => None,
        });
        let abandoned = about_it(|e| match e {
            Event::SuspicionAbandoned { peer, .. } => Some(*peer),
            _ => None,
        });
        assert!(reports > 0, "seed {seed}: nobody reported the slow reader");
        assert!(abandoned > 0, "seed {seed}: no neighbour gave up on it");
        assert!(
            run.sim.directory().contains(&slow),
            "seed {seed}: the slow reader was removed"
        );
    }
}

/// Enough gossip to pass the driver's send queue bound on a link to a slow
/// reader closes that link at once, as too slow, as the driver does, long
/// before the neighbours' questions would drop it.
#[test]
fn a_link_to_a_slow_reader_closes_when_its_unread_frames_pass_the_queue_bound() {
    let steps = [
        Step::Join(10),
        Step::Wait(Duration::from_secs(3)),
        Step::SlowReader(1),
    ];
    let mut run = run(1, &steps, settings(), wan()).unwrap();
    let slow = *run.slow.first().expect("a slow reader");
    let start = run.sim.now();
    // 10 authors x 8 lines of 60,000 bytes: 4.8 MB down every link to the
    // slow reader, past the bound of 4 MiB.
    let filler = "x".repeat(60_000);
    let authors: Vec<SocketAddr> = run.sim.live_peers();
    for i in 0..8 {
        for author in authors.iter().filter(|p| **p != slow) {
            run.sim.type_line(*author, &format!("{i} {filler}"));
        }
        run.sim.run_for(Duration::from_millis(100));
    }
    run.sim.run_for(Duration::from_secs(1));
    let too_slow: Vec<&Logged> = run
        .sim
        .events()
        .iter()
        .filter(|e| e.at > start)
        .filter(|e| {
            matches!(&e.event, Event::ProtocolError { remote, reason }
                if *remote == slow && reason.contains("the remote is too slow"))
        })
        .collect();
    assert!(
        !too_slow.is_empty(),
        "no link to the slow reader was closed"
    );
    // The sender's core hears of it as a lost link, at once. (The slow
    // reader, told by the others that the sender lives, may dial it again.)
    for closed in &too_slow {
        let dropped = run.sim.events().iter().any(|e| {
            e.node == closed.node
                && e.at == closed.at
                && e.event == Event::NeighborDown { peer: slow }
        });
        assert!(dropped, "{} did not drop the slow reader", closed.node);
    }
    // Within 2 s no neighbour has asked five rounds of questions: the
    // bound closed those links, not the protocol.
    assert!(!run.sim.events().iter().any(|e| matches!(
        &e.event,
        Event::SuspicionAbandoned { peer, .. } if *peer == slow
    )));
    assert!(run.sim.directory().contains(&slow));
}

#[test]
fn peers_cut_off_by_a_partition_are_registered_and_linked_again_after_it_heals() {
    check_property(
        "peers_cut_off_by_a_partition_are_registered_and_linked_again_after_it_heals",
        CI_SEEDS,
        wan(),
        &partition_steps(),
    );
}

#[test]
#[ignore = "200 seeds; run with --ignored"]
fn peers_cut_off_by_a_partition_are_registered_and_linked_again_after_it_heals_over_200_seeds() {
    check_property(
        "peers_cut_off_by_a_partition_are_registered_and_linked_again_after_it_heals_over_200_seeds",
        ALL_SEEDS,
        wan(),
        &partition_steps(),
    );
}

#[test]
fn every_message_reaches_every_peer() {
    check_property(
        "every_message_reaches_every_peer",
        CI_SEEDS,
        wan(),
        &gossip_steps(),
    );
}

#[test]
fn crashed_peers_are_removed_in_bound_and_the_live_overlay_stays_connected() {
    check_property(
        "crashed_peers_are_removed_in_bound_and_the_live_overlay_stays_connected",
        CI_SEEDS,
        wan(),
        &crash_steps(),
    );
}

#[test]
fn frozen_peers_are_removed_and_rejoin_when_resumed() {
    check_property(
        "frozen_peers_are_removed_and_rejoin_when_resumed",
        CI_SEEDS,
        wan(),
        &freeze_steps(),
    );
}

#[test]
#[ignore = "200 seeds; run with --ignored"]
fn every_message_reaches_every_peer_over_200_seeds() {
    check_property(
        "every_message_reaches_every_peer_over_200_seeds",
        ALL_SEEDS,
        wan(),
        &gossip_steps(),
    );
}

#[test]
#[ignore = "200 seeds; run with --ignored"]
fn crashed_peers_are_removed_in_bound_and_the_live_overlay_stays_connected_over_200_seeds() {
    check_property(
        "crashed_peers_are_removed_in_bound_and_the_live_overlay_stays_connected_over_200_seeds",
        ALL_SEEDS,
        wan(),
        &crash_steps(),
    );
}

#[test]
#[ignore = "200 seeds; run with --ignored"]
fn frozen_peers_are_removed_and_rejoin_when_resumed_over_200_seeds() {
    check_property(
        "frozen_peers_are_removed_and_rejoin_when_resumed_over_200_seeds",
        ALL_SEEDS,
        wan(),
        &freeze_steps(),
    );
}

/// The longest a ghost may stay registered after the seeds start again,
/// or after a peer first dials it: three ping intervals (issue 21). The
/// seeds' own checks take a probe (a crashed peer refuses it at once) and
/// a commit, well inside it.
fn ghost_bound(settings: &PeerSettings) -> Duration {
    settings.ping_interval * 3
}

/// The whole network stops, in either order, and the seeds start again
/// with their log; every peer in it is dead. Then half the peers start
/// again as new lives, one by one.
fn restart_seeds_then_peers_steps(seeds_first: bool) -> Vec<Step> {
    vec![
        Step::Join(20),
        Step::Wait(Duration::from_secs(3)),
        Step::StopAll { seeds_first },
        Step::RestartSeeds,
        Step::Expect(Check::FaultyRemoved, ghost_bound(&settings())),
        Step::RestartPeers {
            count: 10,
            each_joined: true,
        },
        Step::Expect(Check::AllRegistered, Duration::from_secs(30)),
        Step::Expect(Check::LiveOverlayConnected, Duration::from_secs(10)),
        Step::Gossip,
        Step::Expect(Check::GossipEverywhere, Duration::from_secs(5)),
    ]
}

/// The longest a peer that left may stay registered: its LEAVE's trip to
/// the seeds, one retransmission of a lost frame, and the log's commit, with
/// room to spare. Nothing in it waits for a ping or a probe.
const LEAVE_BOUND: Duration = Duration::from_secs(1);

fn leave_steps() -> Vec<Step> {
    vec![
        Step::Join(20),
        Step::Wait(Duration::from_secs(3)),
        Step::Leave(5),
        Step::Expect(Check::LeftRemovedWithoutSuspicion, LEAVE_BOUND),
        Step::Expect(Check::LiveOverlayConnected, Duration::from_secs(10)),
        // Nothing about them comes later either.
        Step::Wait(detection_bound(&settings())),
        Step::Expect(Check::LeftRemovedWithoutSuspicion, Duration::ZERO),
        Step::Gossip,
        Step::Expect(Check::GossipEverywhere, Duration::from_secs(5)),
    ]
}

/// The whole network stops, in either order; half the peers start again
/// before the seeds, as new lives, and wait for them. Once the seeds run,
/// the new lives replace the old ones and the peers that stayed dead go,
/// while the new lives may be dialling them.
fn restart_peers_with_seeds_steps(seeds_first: bool) -> Vec<Step> {
    vec![
        Step::Join(20),
        Step::Wait(Duration::from_secs(3)),
        Step::StopAll { seeds_first },
        Step::RestartPeers {
            count: 10,
            each_joined: false,
        },
        Step::RestartSeeds,
        Step::Expect(Check::FaultyRemoved, ghost_bound(&settings())),
        Step::Expect(Check::AllRegistered, Duration::from_secs(30)),
    ]
}

fn check_restarts(test: &str, seeds: u64) {
    for seeds_first in [true, false] {
        check_property(
            test,
            seeds,
            NetworkModel::default(),
            &restart_seeds_then_peers_steps(seeds_first),
        );
        check_property(
            test,
            seeds,
            NetworkModel::default(),
            &restart_peers_with_seeds_steps(seeds_first),
        );
    }
}

/// R27: a restart of every node leaves no ghost. Checked after every step
/// as well: no live peer is removed, only lives that ended.
#[test]
fn a_restart_of_every_node_leaves_no_ghost() {
    check_restarts("a_restart_of_every_node_leaves_no_ghost", CI_SEEDS);
}

#[test]
fn leaves_commit_without_suspicion() {
    check_property(
        "leaves_commit_without_suspicion",
        CI_SEEDS,
        wan(),
        &leave_steps(),
    );
}

#[test]
#[ignore = "200 seeds; run with --ignored"]
fn a_restart_of_every_node_leaves_no_ghost_over_200_seeds() {
    check_restarts(
        "a_restart_of_every_node_leaves_no_ghost_over_200_seeds",
        ALL_SEEDS,
    );
}

#[test]
#[ignore = "200 seeds; run with --ignored"]
fn leaves_commit_without_suspicion_over_200_seeds() {
    check_property(
        "leaves_commit_without_suspicion_over_200_seeds",
        ALL_SEEDS,
        wan(),
        &leave_steps(),
    );
}

#[test]
fn the_same_seed_gives_the_same_run_event_for_event() {
    let a = run(7, &crash_steps(), settings(), wan()).unwrap();
    let b = run(7, &crash_steps(), settings(), wan()).unwrap();
    assert_eq!(a.sim.events(), b.sim.events());
    assert_eq!(a.sim.handled(), b.sim.handled());
    let c = run(8, &crash_steps(), settings(), wan()).unwrap();
    assert_ne!(a.sim.events(), c.sim.events(), "the seed changes nothing");
}

/// One seed dies early; the other two are a majority, so peers still join,
/// dead peers are still removed and gossip still spreads.
fn seed_crash_steps() -> Vec<Step> {
    vec![
        Step::Join(10),
        Step::CrashSeeds(1),
        Step::Join(10),
        Step::Wait(Duration::from_secs(2)),
        Step::Crash(3),
        Step::Expect(
            Check::FaultyRemoved,
            detection_bound(&settings()) + Duration::from_secs(4),
        ),
        Step::Expect(Check::LiveOverlayConnected, Duration::from_secs(10)),
        Step::Gossip,
        Step::Expect(Check::GossipEverywhere, Duration::from_secs(5)),
    ]
}

#[test]
fn the_network_keeps_working_with_one_seed_of_three_crashed() {
    check_property(
        "the_network_keeps_working_with_one_seed_of_three_crashed",
        CI_SEEDS,
        wan(),
        &seed_crash_steps(),
    );
}

#[test]
#[ignore = "200 seeds; run with --ignored"]
fn the_network_keeps_working_with_one_seed_of_three_crashed_over_200_seeds() {
    check_property(
        "the_network_keeps_working_with_one_seed_of_three_crashed_over_200_seeds",
        ALL_SEEDS,
        wan(),
        &seed_crash_steps(),
    );
}

#[test]
fn nothing_commits_while_a_majority_of_seeds_is_frozen_and_all_of_it_does_after() {
    let steps = [
        Step::Join(10),
        Step::Wait(Duration::from_secs(2)),
        Step::FreezeSeeds(2),
    ];
    // Votes are log entries: each seed's vote shows when it commits.
    let committed_votes = |sim: &super::Sim| {
        sim.events()
            .iter()
            .filter(|e| matches!(e.event, Event::Vote { .. }))
            .count()
    };
    for seed in 0..5 {
        let mut run = run(seed, &steps, settings(), wan()).unwrap();
        let votes_before = committed_votes(&run.sim);
        let crashed: Vec<_> = run.sim.live_peers().into_iter().take(2).collect();
        for peer in &crashed {
            run.sim.crash(*peer);
        }
        run.sim.run_for(detection_bound(&settings()) * 2);
        let directory = run.sim.directory();
        assert!(
            crashed.iter().all(|p| directory.contains(p)),
            "seed {seed}: a removal committed without a majority of seeds"
        );
        assert_eq!(
            committed_votes(&run.sim),
            votes_before,
            "seed {seed}: the running seed's vote committed on its own"
        );
        for node in run.sim.seeds().to_vec() {
            run.sim.resume(node);
        }
        let removed = run
            .sim
            .run_until_true(detection_bound(&settings()) * 2, |sim| {
                crashed.iter().all(|p| !sim.directory().contains(p))
            });
        assert!(removed, "seed {seed}: the crashed peers stayed registered");
    }
}

#[test]
fn the_live_graph_has_the_links_of_the_live_adjacency() {
    // Frozen peers, removed meanwhile, still list their old neighbours
    // right after they resume, and those no longer list them: a link
    // listed at one end only, which both views must leave out.
    let steps = [
        Step::Join(20),
        Step::Wait(Duration::from_secs(2)),
        Step::Freeze(3),
        Step::Expect(Check::FaultyRemoved, detection_bound(&settings())),
        Step::ResumeAll,
        Step::Wait(Duration::from_millis(1)),
    ];
    let run = run(3, &steps, settings(), wan()).unwrap();
    let adjacency = run.sim.live_adjacency();
    let one_sided = run
        .sim
        .live_peers()
        .into_iter()
        .any(|p| run.sim.neighbors_of(p).len() > adjacency[&p].len());
    assert!(one_sided, "the scenario should leave a one-sided link");
    assert_eq!(
        run.sim.live_graph(),
        super::metrics::Indexed::new(&adjacency)
    );
}
