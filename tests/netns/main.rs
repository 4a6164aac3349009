//! The multi-host tests (scenarios.rs), under a harness that can report a
//! test as not run: without root, iproute2 or nftables each namespace test
//! is reported as ignored, with the reason, and counted in the summary
//! line, instead of passing without having run. With
//! GOSSIPNET_REQUIRE_NETNS=1 (as `.ci/run` sets it) that is a failure.

#[path = "../common/mod.rs"]
mod common;

#[cfg(target_os = "linux")]
mod scenarios;

use common::harness::needs;

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let mut trials = Vec::new();
    #[cfg(target_os = "linux")]
    {
        use scenarios::*;
        scenarios::STEPS_LIVE.store(args.nocapture, std::sync::atomic::Ordering::Relaxed);
        trials.push(common::harness::test(
            "only_namespaces_named_by_these_tests_are_swept_as_stale",
            only_namespaces_named_by_these_tests_are_swept_as_stale,
        ));
        // The check builds and removes a network: not just to list tests.
        let missing = if args.list {
            None
        } else {
            common::netns::unavailable()
        };
        let tests: [(&str, fn()); 4] = [
            (
                "a_seed_cut_off_from_everyone_falls_behind_while_the_others_commit_and_catches_up_when_healed",
                a_seed_cut_off_from_everyone_falls_behind_while_the_others_commit_and_catches_up_when_healed,
            ),
            (
                "with_a_majority_of_seeds_cut_off_nothing_commits_nothing_is_lost_and_the_changes_commit_when_healed",
                with_a_majority_of_seeds_cut_off_nothing_commits_nothing_is_lost_and_the_changes_commit_when_healed,
            ),
            (
                "an_isolated_peer_is_removed_and_rejoins_when_healed",
                an_isolated_peer_is_removed_and_rejoins_when_healed,
            ),
            (
                "with_a_fifth_of_the_packets_lost_gossip_reaches_every_peer_and_no_live_peer_is_removed",
                with_a_fifth_of_the_packets_lost_gossip_reaches_every_peer_and_no_live_peer_is_removed,
            ),
        ];
        for (name, test) in tests {
            trials.push(needs(
                name,
                missing.clone(),
                common::netns::REQUIRE_ENV,
                test,
            ));
        }
    }
    #[cfg(not(target_os = "linux"))]
    trials.push(needs(
        "network_namespace_tests",
        Some("network namespaces are Linux's".to_owned()),
        "GOSSIPNET_REQUIRE_NETNS",
        || {},
    ));
    libtest_mimic::run(&args, trials).exit();
}
