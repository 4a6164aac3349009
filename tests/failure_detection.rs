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

/// Waits until the committed topology, without `dead`, joins `live` in one
/// piece.
fn wait_live_overlay_connected(net: &Cluster, dead: &[SocketAddr], live: &[SocketAddr]) {
    let seed = net.seeds[0].addr();
    wait_for(
        "the live overlay to be connected",
        DEADLINE,
        || {
            let adjacency = committed_topology(seed, dead)?;
            connected(&adjacency, live).then_some(())
        },
        || format!("{:?}", committed_topology(seed, dead)),
    );
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
    wait_live_overlay_connected(&net, &dead, &live);
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

/// Everything the network logged about `victim` that belongs to failure
/// detection: suspicions and reports by peers, reports and probes' verdicts
/// at seeds.
fn failure_handling_of(net: &mut Cluster, victim: SocketAddr) -> Vec<String> {
    net.poll_all();
    net.seeds
        .iter()
        .chain(&net.peers)
        .flat_map(|p| p.events().map(move |e| (p.addr(), e)))
        .filter(|(_, e)| match e {
            Event::SuspicionStarted { peer, .. }
            | Event::DeadReportSent { peer, .. }
            | Event::DeadReportReceived { peer, .. }
            | Event::DeadConfirmed { peer } => *peer == victim,
            _ => false,
        })
        .map(|(at, e)| format!("{at}: {e:?}"))
        .collect()
}

/// R27: a clean stop (LEAVE) removes a peer at once. On 80bac68 this
/// failed: SIGTERM sent nothing, so the peer's neighbours suspected it when
/// its connections closed, and its removal went through their reports and
/// the seeds' probes.
#[test]
fn a_peer_stopped_with_sigterm_leaves_removed_by_every_seed_without_suspicion_and_its_neighbours_repair(
) {
    let mut net = network();
    let adjacency = topology(&net);
    let victim = hub(&adjacency, &[]);
    let neighbours = adjacency[&victim].clone();
    let v = index_of(&net, victim);
    let status = net.peers[v].stop_with(signal::Signal::SIGTERM);
    assert!(status.success(), "{status:?}");

    wait_removed_everywhere(&mut net, victim);
    let handled = failure_handling_of(&mut net, victim);
    assert!(
        handled.is_empty(),
        "a peer that left was handled as failed: {handled:?}"
    );
    // The event stream tells the leave from a failure: `left` on every
    // seed and on every neighbour, `leaving` on the peer itself.
    for seed in &mut net.seeds {
        seed.wait_event(
            "`left` for the removal",
            DEADLINE,
            |e| matches!(e, Event::Left { peer, .. } if *peer == victim),
        );
    }
    for n in &neighbours {
        let i = index_of(&net, *n);
        net.peers[i].wait_event(
            "`left` for the neighbour",
            DEADLINE,
            |e| matches!(e, Event::Left { peer, .. } if *peer == victim),
        );
    }
    net.peers[v].poll();
    let leaving: Vec<&Event> = net.peers[v]
        .events()
        .filter(|e| matches!(e, Event::Leaving { .. }))
        .collect();
    let [Event::Leaving { seeds, neighbors }] = leaving[..] else {
        panic!("the peer logs `leaving` once: {leaving:?}");
    };
    assert!(seeds.len() >= 2, "a majority of the 3 seeds: {seeds:?}");
    assert_eq!(
        neighbors.iter().copied().collect::<BTreeSet<_>>(),
        neighbours
    );
    assert_no_false_removals(&mut net, &[victim]);

    // The neighbours repair: the live overlay is one piece again.
    let dead = [victim];
    let live: Vec<SocketAddr> = net
        .peers
        .iter()
        .map(|p| p.addr())
        .filter(|p| *p != victim)
        .collect();
    wait_live_overlay_connected(&net, &dead, &live);
    let handled = failure_handling_of(&mut net, victim);
    assert!(handled.is_empty(), "{handled:?}");
}

/// docs/SECURITY.md, forged or replayed LEAVE: a LEAVE signed with another
/// key, or with the peer's own key for another life, removes nothing. The
/// seeds check it and say why they refuse it.
#[test]
fn a_forged_or_replayed_leave_removes_nothing() {
    use gossipnet::proto::{
        evidence::Identity,
        message::{Message, Role},
    };
    let mut net = Cluster::with_seeds(3, &["--gossip-count", "0"]);
    let v = net.add_peer();
    let victim = net.peers[v].addr();
    let seeds: Vec<SocketAddr> = net.seeds.iter().map(|s| s.addr()).collect();
    let incarnation = wait_for(
        "the victim's committed incarnation",
        DEADLINE,
        || {
            let status = common::status(seeds[0])?;
            status["peers"]
                .as_array()?
                .iter()
                .find(|p| p["addr"] == victim.to_string())?["incarnation"]
                .as_u64()
        },
        || format!("{:?}", common::status(seeds[0])),
    );
    // The forger: a node of its own, with its own key.
    let forger = common::FakeNode::new(Role::Peer);
    // The victim's real key, as a thief of an old LEAVE would have its
    // signature: only for another life.
    let secret = std::fs::read_to_string(
        net.dir
            .path()
            .join("gossipnet-data")
            .join(format!("peer-{}", victim.port()))
            .join("identity.key"),
    )
    .unwrap();
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(secret.trim(), &mut bytes).unwrap();
    let real = Identity::from_secret(bytes);
    let forged = [
        Message::leave_signed_by(&forger.identity, victim, incarnation),
        Message::leave_signed_by(&real, victim, incarnation - 1),
        Message::leave_signed_by(&real, victim, incarnation + 1),
    ];
    let mut clients: Vec<_> = seeds
        .iter()
        .map(|s| forger.greet_taken(*s, Role::Seed))
        .collect();
    for client in &mut clients {
        for leave in &forged {
            client.send(leave);
        }
    }
    for seed in &mut net.seeds {
        seed.wait_events(
            "the three LEAVEs refused",
            DEADLINE,
            3,
            |e| matches!(e, Event::LeaveRefused { peer, .. } if *peer == victim),
        );
        let reasons: Vec<String> = seed
            .events()
            .filter_map(|e| match e {
                Event::LeaveRefused { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .collect();
        assert!(reasons[0].contains("does not verify"), "{reasons:?}");
        assert!(reasons[1].contains("not registered at"), "{reasons:?}");
        assert_eq!(seed.count(|e| matches!(e, Event::RemoveProposed { .. })), 0);
    }
    for seed in &seeds {
        let committed = committed_peers(*seed).unwrap();
        assert!(committed.contains(&victim.to_string()), "{committed:?}");
    }
    assert!(net.peers[v].is_running());
}
