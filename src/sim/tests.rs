//! Properties of the whole protocol, each checked over many seeds of the
//! simulator. CI runs [`CI_SEEDS`] seeds per property; the `--ignored`
//! twins run 200. A failure prints its seed and the command that replays it.

use std::time::Duration;

use super::{
    scenario::{run, Check, Step},
    NetworkModel,
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
