//! Changing the seeds: a config that contradicts a seed's log, `gossipnet
//! seeds add|remove|replace` on a running network, and a seed that lost
//! its log. Real processes; ports are picked free; every process is
//! killed when its handle drops.

mod common;

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use common::{committed_peers, free_ports, wait_for, Cluster, Proc, START};
use gossipnet::proto::Event;

fn seed_args(addr: SocketAddr, config: &Path, data: &Path) -> Vec<String> {
    vec![
        "seed".into(),
        addr.to_string(),
        "--config".into(),
        config.display().to_string(),
        "--data-dir".into(),
        data.display().to_string(),
    ]
}

fn write_config(path: &Path, seeds: &[SocketAddr]) {
    let lines: String = seeds
        .iter()
        .map(|s| format!("{},{}\n", s.ip(), s.port()))
        .collect();
    std::fs::write(path, lines).unwrap();
}

fn seeds_of(seed: SocketAddr) -> Option<BTreeSet<SocketAddr>> {
    let status = common::status(seed)?;
    if status["voter_sets"].as_array()?.len() != 1 {
        return None;
    }
    Some(
        status["seeds"]
            .as_array()?
            .iter()
            .filter_map(|s| s.as_str()?.parse().ok())
            .collect(),
    )
}

fn set(seeds: &[SocketAddr]) -> BTreeSet<SocketAddr> {
    seeds.iter().copied().collect()
}

/// Waits until `seed` has committed every peer in `want`.
fn wait_for_peers(seed: SocketAddr, want: &[String]) {
    wait_for(
        &format!("{seed} to commit {want:?}"),
        START,
        || committed_peers(seed).filter(|p| want.iter().all(|w| p.contains(w))),
        || format!("{:?}", committed_peers(seed)),
    );
}

/// `gossipnet seeds ARGS --config CONFIG --data-dir DIR...`, which must
/// succeed; its output and how long it took.
fn order(action: &[String], config: &Path, dirs: &[PathBuf]) -> (String, Duration) {
    let mut args: Vec<String> = vec!["seeds".into()];
    args.extend(action.iter().cloned());
    args.extend(["--config".into(), config.display().to_string()]);
    for dir in dirs {
        args.extend(["--data-dir".into(), dir.display().to_string()]);
    }
    let started = Instant::now();
    let (code, stdout, stderr) = common::run_to_end(&args, Duration::from_secs(120));
    let took = started.elapsed();
    assert_eq!(code, Some(0), "gossipnet {args:?}: {stdout}{stderr}");
    assert!(stdout.contains("done in"), "{stdout}");
    eprintln!("gossipnet {}: {took:?}\n{stdout}", action.join(" "));
    (stdout, took)
}

#[test]
fn a_seed_whose_config_lists_other_seeds_than_its_log_stops_and_says_how_to_fix_it() {
    let mut net = Cluster::with_seeds(3, &["--gossip-count", "0"]);
    let peer = net.add_peer();
    let peer = net.peers[peer].addr().to_string();
    let old: Vec<SocketAddr> = net.seeds.iter().map(|s| s.addr()).collect();
    for seed in &old {
        wait_for_peers(*seed, std::slice::from_ref(&peer));
    }
    for i in 0..3 {
        net.kill_seed(i);
    }
    // The operator edits the config from the first three seeds to the
    // last two and a new one, and starts those.
    let new_seed: SocketAddr = format!("127.0.0.1:{}", free_ports(1)[0]).parse().unwrap();
    let edited = vec![old[1], old[2], new_seed];
    write_config(&net.config, &edited);
    for i in 1..3 {
        let data = net.seed_data_dir(i);
        let (code, _, stderr) = common::run_to_end(
            &seed_args(old[i], &net.config, &data),
            Duration::from_secs(30),
        );
        assert_eq!(code, Some(2), "seed {} ran on: {stderr}", old[i]);
        let committed = set(&old)
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let configured = set(&edited)
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        for needed in [
            data.display().to_string(),
            committed,
            configured,
            format!("gossipnet seeds replace {} {new_seed}", old[0]),
            "raft.redb".to_string(),
        ] {
            assert!(stderr.contains(&needed), "{stderr} lacks {needed}");
        }
    }
    // The new seed, alone with an empty log, forms no cluster: no leader,
    // nothing committed, however long it waits.
    let data = net.dir.path().join("data-new");
    let mut fresh = Proc::spawn(
        net.dir.path(),
        "new-seed",
        &seed_args(new_seed, &net.config, &data),
        false,
    );
    fresh.wait_event("listening", START, |e| matches!(e, Event::Listening { .. }));
    let formed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fresh.wait_event("a cluster", Duration::from_secs(3), |e| {
            matches!(e, Event::ClusterFormed { .. })
        })
    }));
    assert!(formed.is_err(), "the new seed formed a cluster on its own");
    let status = common::status(new_seed).expect("the new seed's status");
    assert_eq!(status["commit_index"][new_seed.to_string()], 0, "{status}");
    assert!(status["leader"].is_null(), "{status}");
}

#[test]
fn seeds_add_remove_and_replace_on_a_running_network_while_peers_register() {
    let mut net = Cluster::with_seeds(3, &["--gossip-count", "0"]);
    let old: Vec<SocketAddr> = net.seeds.iter().map(|s| s.addr()).collect();
    let mut peers = Vec::new();
    let first = net.add_peer();
    peers.push(net.peers[first].addr().to_string());
    let ports = free_ports(2);
    let (d, e): (SocketAddr, SocketAddr) = (
        format!("127.0.0.1:{}", ports[0]).parse().unwrap(),
        format!("127.0.0.1:{}", ports[1]).parse().unwrap(),
    );
    let root = net.dir.path().to_path_buf();
    let data = |addr: SocketAddr| root.join(format!("data-{}", addr.port()));

    // Add d: it starts with the new list and waits, forming nothing.
    let four = vec![old[0], old[1], old[2], d];
    write_config(&net.config, &four);
    let mut seed_d = Proc::spawn(&root, "seed-d", &seed_args(d, &net.config, &data(d)), false);
    seed_d.wait_event("waiting to be added", START, |e| {
        matches!(e, Event::SeedWaitingToJoin { .. })
    });
    // A peer registers while the change is made.
    net.start_peer();
    let (_, add_took) = order(
        &["add".into(), d.to_string()],
        &net.config,
        &[data(old[0]), data(old[1])],
    );
    for seed in &four {
        wait_for(
            "the four seeds",
            START,
            || seeds_of(*seed).filter(|s| *s == set(&four)),
            || format!("{:?}", common::status(*seed)),
        );
    }
    let joined = net.peers.len() - 1;
    net.peers[joined].wait_event("joined", START, |e| matches!(e, Event::Joined { .. }));
    peers.push(net.peers[joined].addr().to_string());
    // d holds what was committed before it came, and votes now.
    wait_for_peers(d, &peers);

    // Remove c (old[2]): a majority of four is three.
    let three = vec![old[0], old[1], d];
    write_config(&net.config, &three);
    net.start_peer();
    let (_, remove_took) = order(
        &["remove".into(), old[2].to_string()],
        &net.config,
        &[data(old[0]), data(old[1]), data(d)],
    );
    net.kill_seed(2);
    let joined = net.peers.len() - 1;
    net.peers[joined].wait_event("joined", START, |e| matches!(e, Event::Joined { .. }));
    peers.push(net.peers[joined].addr().to_string());

    // Replace a (old[0]) with e in one change.
    let last = vec![old[1], d, e];
    write_config(&net.config, &last);
    let mut seed_e = Proc::spawn(&root, "seed-e", &seed_args(e, &net.config, &data(e)), false);
    seed_e.wait_event("waiting to be added", START, |e| {
        matches!(e, Event::SeedWaitingToJoin { .. })
    });
    net.start_peer();
    let (_, replace_took) = order(
        &["replace".into(), old[0].to_string(), e.to_string()],
        &net.config,
        &[data(old[1]), data(d)],
    );
    net.kill_seed(0);
    let joined = net.peers.len() - 1;
    net.peers[joined].wait_event("joined", START, |e| matches!(e, Event::Joined { .. }));
    peers.push(net.peers[joined].addr().to_string());
    // A peer that starts now, with only the new seeds, registers too.
    let latest = net.add_peer();
    peers.push(net.peers[latest].addr().to_string());
    for seed in &last {
        wait_for(
            "the last seed set",
            START,
            || seeds_of(*seed).filter(|s| *s == set(&last)),
            || format!("{:?}", common::status(*seed)),
        );
        // No registration was lost on the way.
        wait_for_peers(*seed, &peers);
    }
    // A seed restarted with the new list starts; its log agrees.
    net.kill_seed(1);
    net.restart_seed(1);
    wait_for_peers(old[1], &peers);
    eprintln!("seeds add took {add_took:?}, remove {remove_took:?}, replace {replace_took:?}");
}

#[test]
fn a_seed_that_lost_its_log_casts_no_vote_until_it_has_caught_up() {
    let mut net = Cluster::with_seeds(3, &["--gossip-count", "0"]);
    let seeds: Vec<SocketAddr> = net.seeds.iter().map(|s| s.addr()).collect();
    let (a, b, c) = (0, 1, 2);
    // c falls behind: a peer registers with a and b alone.
    net.kill_seed(c);
    let peer = net.add_peer();
    let peer = net.peers[peer].addr().to_string();
    wait_for_peers(seeds[a], std::slice::from_ref(&peer));
    wait_for_peers(seeds[b], std::slice::from_ref(&peer));
    // b loses its log (it keeps its identity.key, from a backup), and a,
    // the only other seed with the registration, goes down.
    net.kill_seed(b);
    std::fs::remove_file(net.seed_data_dir(b).join("raft.redb")).unwrap();
    net.kill_seed(a);
    net.restart_seed(c);
    wait_for(
        "c to report its log",
        START,
        || {
            common::status(seeds[c])
                .filter(|s| s["commit_index"][seeds[c].to_string()].as_u64() > Some(0))
        },
        || "no status".into(),
    );
    let commit_of = |seed: SocketAddr| {
        common::status(seed).and_then(|s| s["commit_index"][seed.to_string()].as_u64())
    };
    let before = commit_of(seeds[c]).expect("c's commit index");
    net.restart_seed(b);
    net.seeds[b].wait_event("rejoining", START, |e| {
        matches!(e, Event::SeedRejoining { .. })
    });
    // c lacks the registration. If b counted towards a majority, c would
    // commit entries with it (c may even lead again at once, from its own
    // old vote) and the registration would be lost. Nothing commits.
    let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(
            "c to commit anything with b",
            Duration::from_secs(5),
            || commit_of(seeds[c]).filter(|i| *i > before),
            || "nothing committed".into(),
        )
    }));
    assert!(
        committed.is_err(),
        "c committed entries counting b, which lost its log: {:?}",
        common::status(seeds[c])
    );
    let status = common::status(seeds[b]).expect("b's status");
    assert_eq!(status["catching_up"], true, "{status}");
    // a returns: a leader with every entry is elected, b catches up and
    // votes again, and nothing committed was lost.
    net.restart_seed(a);
    for seed in &seeds {
        wait_for_peers(*seed, std::slice::from_ref(&peer));
    }
    wait_for(
        "b to have caught up",
        START,
        || common::status(seeds[b]).filter(|s| s["catching_up"] == false),
        || format!("{:?}", common::status(seeds[b])),
    );
    let later = net.add_peer();
    let later = net.peers[later].addr().to_string();
    for seed in &seeds {
        wait_for_peers(*seed, &[peer.clone(), later.clone()]);
    }
}
