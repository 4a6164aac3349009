//! Failure detection with real processes (R11 to R16, R18): 3 seeds and 12
//! peers pinging every 500 ms. Dead and frozen peers are removed by the
//! seeds and dropped by their neighbours; a short freeze is not; the overlay
//! stays connected while a quarter of the peers die.

#![cfg(unix)]

mod common;

use std::{
    collections::BTreeSet,
    io::Write,
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use common::{committed_peers, committed_topology, wait_for, Adjacency, Cluster};
use gossipnet::proto::Event;
use nix::{sys::signal, unistd::Pid};

const DEADLINE: Duration = Duration::from_secs(20);

/// 3 seeds and 12 peers that read typed lines and create no gossip of
/// their own.
fn network() -> Cluster {
    let mut net = Cluster::with_seeds(3, &["--gossip-count", "0", "--ping-interval", "500ms"]);
    for _ in 0..12 {
        net.add_peer_with(&["--stdin"], true);
    }
    net
}

/// The committed topology, once every peer's links are in it.
fn topology(net: &Cluster) -> Adjacency {
    let peers: BTreeSet<SocketAddr> = net.peers.iter().map(|p| p.addr()).collect();
    wait_for(
        "every peer in the committed topology",
        DEADLINE,
        || {
            committed_topology(net.seeds[0].addr(), &[])
                .filter(|adj| peers.iter().all(|p| adj.contains_key(p)))
        },
        || format!("{:?}", committed_topology(net.seeds[0].addr(), &[])),
    )
}

fn index_of(net: &Cluster, addr: SocketAddr) -> usize {
    net.peers.iter().position(|p| p.addr() == addr).unwrap()
}

/// The live peer with the most links: the hardest one to lose.
fn hub(adjacency: &Adjacency, dead: &[SocketAddr]) -> SocketAddr {
    *adjacency
        .iter()
        .filter(|(p, _)| !dead.contains(p))
        .max_by_key(|(p, links)| (links.len(), **p))
        .unwrap()
        .0
}

fn pid(net: &Cluster, i: usize) -> Pid {
    Pid::from_raw(net.peers[i].child.id() as i32)
}

/// Waits until every seed has committed the removal of `victim`.
fn wait_removed_everywhere(net: &mut Cluster, victim: SocketAddr) {
    for seed in &mut net.seeds {
        seed.wait_event(
            "the removal to commit",
            DEADLINE,
            |e| matches!(e, Event::RemoveCommitted { peer, .. } if *peer == victim),
        );
        let committed = committed_peers(seed.addr()).unwrap();
        assert!(!committed.contains(&victim.to_string()), "{committed:?}");
    }
}

/// Waits until each of `neighbours` has logged the confirmed death.
fn wait_dropped_by(net: &mut Cluster, victim: SocketAddr, neighbours: &BTreeSet<SocketAddr>) {
    for n in neighbours {
        let i = index_of(net, *n);
        net.peers[i].wait_event(
            "the confirmed death",
            DEADLINE,
            |e| matches!(e, Event::DeadConfirmed { peer } if *peer == victim),
        );
    }
}

/// No seed proposed or committed any removal but of `dead`.
fn assert_no_false_removals(net: &mut Cluster, dead: &[SocketAddr]) {
    for seed in &mut net.seeds {
        seed.poll();
        let wrong: Vec<&Event> = seed
            .events()
            .filter(|e| {
                matches!(e, Event::RemoveProposed { peer, .. } | Event::RemoveCommitted { peer, .. }
                    if !dead.contains(peer))
            })
            .collect();
        assert!(wrong.is_empty(), "live peers removed: {wrong:?}");
    }
}

#[test]
fn a_killed_peer_is_removed_on_every_seed_and_dropped_by_all_its_neighbours() {
    let mut net = network();
    let adjacency = topology(&net);
    let victim = hub(&adjacency, &[]);
    let neighbours = adjacency[&victim].clone();
    let v = index_of(&net, victim);
    let _ = net.peers[v].child.kill();
    let _ = net.peers[v].child.wait();

    wait_removed_everywhere(&mut net, victim);
    wait_dropped_by(&mut net, victim, &neighbours);
    // The report went out in exactly the R14 form.
    let prefix = format!("Dead Node:{}:{}:", victim.ip(), victim.port());
    net.poll_all();
    let reports: Vec<String> = net
        .peers
        .iter()
        .flat_map(|p| p.events())
        .filter_map(|e| match e {
            Event::DeadReportSent { peer, report, .. } if *peer == victim => Some(report.clone()),
            _ => None,
        })
        .collect();
    assert!(!reports.is_empty());
    for report in &reports {
        let rest = report
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{report}"));
        let (timestamp, ip) = rest.rsplit_once(':').unwrap();
        assert!(timestamp.parse::<f64>().unwrap() > 1.0e9, "{report}");
        assert_eq!(ip, "127.0.0.1");
    }
    assert_no_false_removals(&mut net, &[victim]);
}

#[test]
fn a_frozen_peer_is_removed_though_its_port_accepts_connections_and_rejoins_when_resumed() {
    let mut net = network();
    let adjacency = topology(&net);
    let victim = hub(&adjacency, &[]);
    let v = index_of(&net, victim);
    signal::kill(pid(&net, v), signal::Signal::SIGSTOP).unwrap();
    // The kernel still completes connections to the frozen process.
    assert!(TcpStream::connect_timeout(&victim, Duration::from_secs(2)).is_ok());

    wait_removed_everywhere(&mut net, victim);
    wait_dropped_by(&mut net, victim, &adjacency[&victim].clone());
    assert_no_false_removals(&mut net, &[victim]);

    // Resumed, it hears of its removal and joins again as a new life (R16).
    signal::kill(pid(&net, v), signal::Signal::SIGCONT).unwrap();
    net.peers[v].wait_event("rejoining", DEADLINE, |e| {
        matches!(e, Event::Rejoining { .. })
    });
    net.peers[v].wait_event("joined again", DEADLINE, |e| {
        matches!(e, Event::Joined { .. })
    });
    let want = victim.to_string();
    for seed in &net.seeds {
        let seed = seed.addr();
        wait_for(
            "the new life to be committed",
            DEADLINE,
            || committed_peers(seed).filter(|c| c.contains(&want)),
            || format!("{:?}", committed_peers(seed)),
        );
    }
}

#[test]
fn a_peer_frozen_briefly_is_suspected_cleared_and_never_removed() {
    let mut net = network();
    let adjacency = topology(&net);
    let victim = hub(&adjacency, &[]);
    let neighbours = adjacency[&victim].clone();
    let watcher = index_of(&net, *neighbours.first().unwrap());
    let v = index_of(&net, victim);
    signal::kill(pid(&net, v), signal::Signal::SIGSTOP).unwrap();
    // Resumed at its first missed ping, a ping timeout (250 ms) after a
    // PING it left unanswered; the three misses that would make it
    // unresponsive take 1.25 s at least.
    net.peers[watcher].wait_event(
        "the first missed ping",
        DEADLINE,
        |e| matches!(e, Event::SuspicionStarted { peer, .. } if *peer == victim),
    );
    signal::kill(pid(&net, v), signal::Signal::SIGCONT).unwrap();
    net.peers[watcher].wait_event(
        "the suspicion to clear",
        DEADLINE,
        |e| matches!(e, Event::SuspicionCleared { peer } if *peer == victim),
    );
    assert_no_false_removals(&mut net, &[]);
    net.poll_all();
    for p in &net.peers {
        let sent = p.count(|e| matches!(e, Event::DeadReportSent { .. }));
        assert_eq!(sent, 0, "{} reported a peer that was only slow", p.addr());
    }
    assert_eq!(
        net.peers[v].count(|e| matches!(e, Event::Rejoining { .. })),
        0
    );
    let text = std::fs::read_to_string(net.peers[watcher].output_file("peer")).unwrap();
    assert!(
        text.contains(&format!("SUSPECT {victim}: no answer to a ping")),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.contains("PING") || l.contains("PONG")),
        "pings must not be logged (R18): {text}"
    );
}

/// Whether `live` is one connected piece in `adjacency`.
fn connected(adjacency: &Adjacency, live: &[SocketAddr]) -> bool {
    let Some(start) = live.first() else {
        return true;
    };
    let mut reached = BTreeSet::from([*start]);
    let mut stack = vec![*start];
    while let Some(node) = stack.pop() {
        for next in adjacency.get(&node).into_iter().flatten() {
            if live.contains(next) && reached.insert(*next) {
                stack.push(*next);
            }
        }
    }
    live.iter().all(|p| reached.contains(p))
}

#[test]
fn killing_a_quarter_of_the_peers_leaves_the_overlay_connected_and_gossip_reaches_everyone() {
    let mut net = network();
    let mut dead = Vec::new();
    for _ in 0..3 {
        // Always the biggest hub: its loss cuts the most links.
        let victim = hub(
            &committed_topology(net.seeds[0].addr(), &dead).unwrap(),
            &dead,
        );
        let v = index_of(&net, victim);
        let _ = net.peers[v].child.kill();
        let _ = net.peers[v].child.wait();
        dead.push(victim);
        wait_removed_everywhere(&mut net, victim);
    }
    assert_no_false_removals(&mut net, &dead);
    let live: Vec<SocketAddr> = net
        .peers
        .iter()
        .map(|p| p.addr())
        .filter(|p| !dead.contains(p))
        .collect();
    // `gossipnet status` shows one connected overlay once the replacement
    // links are reported.
    let seed = net.seeds[0].addr();
    wait_for(
        "the live overlay to be connected",
        DEADLINE,
        || {
            let adjacency = committed_topology(net.seeds[0].addr(), &dead)?;
            connected(&adjacency, &live).then_some(())
        },
        || format!("{:?}", committed_topology(net.seeds[0].addr(), &dead)),
    );
    assert_eq!(committed_peers(seed).unwrap().len(), live.len());

    let author = index_of(&net, live[0]);
    writeln!(net.peers[author].stdin(), "after the losses").unwrap();
    net.peers[author].stdin().flush().unwrap();
    for p in &live[1..] {
        let i = index_of(&net, *p);
        net.peers[i].wait_event("the gossip", DEADLINE, |e| {
            matches!(e, Event::GossipReceived { msg, .. } if msg.ends_with(":after the losses"))
        });
    }
}
