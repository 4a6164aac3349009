//! Seed consensus with real processes: every membership change is committed
//! by a majority of seeds, survives restarts, and waits when no majority is
//! up (SPEC R2, R3, R5); and the topology they commit is the peers' own,
//! however fast it changes (R27).

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    time::Duration,
};

use common::{committed_peers, hello, wait_for, Cluster, FakeNode, Proc, RawClient, START};
use gossipnet::proto::{
    evidence::{Identity, ReportContent},
    message::{Message, Role, Statement},
    Event, Timestamp,
};

const DEADLINE: Duration = Duration::from_secs(20);

/// Three seeds and `peers` peers that have joined, one after another.
fn network(peers: usize) -> Cluster {
    let mut net = Cluster::with_seeds(3, &["--gossip-count", "0"]);
    for _ in 0..peers {
        net.add_peer();
    }
    net
}

fn addrs_of(net: &Cluster) -> Vec<String> {
    let mut peers: Vec<String> = net.peers.iter().map(|p| p.addr().to_string()).collect();
    peers.sort();
    peers
}

/// Waits until seed `i` reports exactly `want` as its committed PL.
fn wait_for_peer_list(net: &Cluster, i: usize, want: &[String]) {
    let seed = net.seeds[i].addr();
    wait_for(
        &format!("seed {seed} to commit {want:?}"),
        DEADLINE,
        || (committed_peers(seed).as_deref() == Some(want)).then_some(()),
        || format!("{:?}", committed_peers(seed)),
    );
}

fn registered(net: &mut Cluster, i: usize) -> bool {
    net.peers[i].poll();
    net.peers[i].count(|e| matches!(e, Event::Registered { .. })) > 0
}

#[test]
fn every_seed_commits_the_same_peer_list() {
    let net = network(5);
    let want = addrs_of(&net);
    for i in 0..3 {
        wait_for_peer_list(&net, i, &want);
    }
    // One leader, the same one seen from every seed.
    let leaders: Vec<_> = (0..3)
        .map(|i| common::status(net.seeds[i].addr()).unwrap()["leader"].clone())
        .collect();
    assert!(
        leaders[0].is_string() && leaders.iter().all(|l| *l == leaders[0]),
        "{leaders:?}"
    );
}

#[test]
fn with_one_seed_down_a_new_peer_still_registers() {
    let mut net = network(1);
    net.kill_seed(0);
    // The peer may pick the dead seed first; its retry widens to the third.
    net.add_peer();
    let want = addrs_of(&net);
    wait_for_peer_list(&net, 1, &want);
    wait_for_peer_list(&net, 2, &want);
}

#[test]
fn without_a_majority_a_peer_waits_says_why_and_registers_when_a_seed_returns() {
    let mut net = network(1);
    net.kill_seed(0);
    net.kill_seed(1);
    let waiting = net.start_peer();
    net.peers[waiting].wait_event(
        "it to report the missing quorum",
        DEADLINE,
        |e| matches!(e, Event::RegisterWaiting { reachable, seeds: 3, .. } if *reachable <= 1),
    );
    let text = std::fs::read_to_string(net.peers[waiting].output_file("peer")).unwrap();
    assert!(text.contains("waiting for seed quorum: "), "{text}");
    assert!(
        !registered(&mut net, waiting),
        "registered without a majority of seeds"
    );
    assert_eq!(
        committed_peers(net.seeds[2].addr()).unwrap().len(),
        1,
        "the lone seed committed a peer"
    );

    net.restart_seed(1);
    net.peers[waiting].wait_event("registration after a seed returned", DEADLINE, |e| {
        matches!(e, Event::Registered { .. })
    });
    let want = addrs_of(&net);
    wait_for_peer_list(&net, 1, &want);
    wait_for_peer_list(&net, 2, &want);
    assert!(net.peers[waiting].is_running());
}

#[test]
fn restarting_every_seed_loses_no_registration() {
    let mut net = network(3);
    let want = addrs_of(&net);
    wait_for_peer_list(&net, 0, &want);
    for i in 0..3 {
        net.kill_seed(i);
    }
    for i in 0..3 {
        net.restart_seed(i);
    }
    for i in 0..3 {
        wait_for_peer_list(&net, i, &want);
    }
}

#[test]
fn a_seed_restarted_with_an_empty_data_dir_catches_up() {
    let mut net = network(3);
    net.kill_seed(2);
    // Everything but its identity.key: the other seeds have pinned that
    // key, and refuse any other until a majority rekeys the seed (see
    // tests/impersonation.rs for a seed that lost the key too).
    let dir = net.seed_data_dir(2);
    let key = std::fs::read(dir.join("identity.key")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("identity.key"), key).unwrap();
    net.add_peer();
    net.restart_seed(2);
    let want = addrs_of(&net);
    wait_for_peer_list(&net, 2, &want);
}

#[test]
fn forged_registrations_and_votes_commit_nothing() {
    let mut net = network(1);
    let seed = net.seeds[0].addr();
    let nobody: SocketAddr = format!("127.0.0.1:{}", common::free_ports(1)[0])
        .parse()
        .unwrap();

    // 1. A registration from a connection that names an address where no
    //    node listens: the seed's PROBE of the HELLO's address finds
    //    nobody, so the connection is never taken as that node's, and the
    //    registration it carries never reaches a vote.
    let forger = Identity::from_secret([1; 32]);
    for s in 0..3 {
        let mut client = common::greet_as(net.seeds[s].addr(), nobody, Role::Peer, &forger);
        client.send(&Message::RegisterRequest {
            incarnation: 1,
            key: forger.public_key(),
        });
        assert!(client.closed_by_node(), "a HELLO for {nobody} was taken");
        let claims = format!("HELLO claims {nobody}, but a PROBE of {nobody} found no node");
        net.seeds[s].wait_event(
            "the refused HELLO",
            DEADLINE,
            |e| matches!(e, Event::ProtocolError { reason, .. } if reason.contains(&claims)),
        );
    }

    // 2. A vote sent as a peer: RAFT traffic is only taken from seeds.
    let vote = serde_json::json!({"propose": {"op": "vote", "change": {
        "kind": "add", "peer": nobody.to_string(), "incarnation": 1},
        "seed": seed.to_string()}});
    let node = FakeNode::new(Role::Peer);
    let mut client = node.greet_taken(seed, Role::Seed);
    client.send(&Message::RaftRequest {
        id: 1,
        body: vote.clone(),
    });
    assert!(
        client.closed_by_node(),
        "a peer's RAFT_REQUEST was accepted"
    );

    // 3. A HELLO as a seed from an address the config does not list is
    //    refused at the handshake, before any vote can be sent.
    for s in 0..3 {
        let mut client = RawClient::connect(net.seeds[s].addr());
        client.send(&hello(nobody, Role::Seed));
        assert!(client.closed_by_node(), "a stranger was taken for a seed");
    }
    // 4. A HELLO as a peer from a seed's address is refused too, so the
    //    connection to that seed cannot be hijacked.
    let other_seed = net.seeds[1].addr();
    let mut client = RawClient::connect(seed);
    client.send(&hello(other_seed, Role::Peer));
    assert!(client.closed_by_node(), "a peer took a seed's address");

    // Nothing was committed for the forged address, on any seed: each has
    // refused the registration by then.
    for s in 0..3 {
        let peers = committed_peers(net.seeds[s].addr()).unwrap();
        assert!(
            !peers.contains(&nobody.to_string()),
            "seed {s} committed {nobody}"
        );
        net.seeds[s].poll();
        assert_eq!(
            net.seeds[s].count(|e| matches!(e, Event::Vote { peer, .. } if *peer == nobody)),
            0,
            "a vote for {nobody} entered the log"
        );
    }
}

#[test]
fn status_works_against_any_seed_and_as_a_table() {
    let net = network(2);
    let want = addrs_of(&net);
    for i in 0..3 {
        wait_for_peer_list(&net, i, &want);
        // The link reports commit after the registrations: wait for them.
        let seed = net.seeds[i].addr();
        let status = wait_for(
            &format!("seed {seed} to record the link between the two peers"),
            DEADLINE,
            || {
                let status = common::status(seed)?;
                (status["topology"].as_array()?.len() == 1).then_some(status)
            },
            || format!("{:?}", common::status(seed).map(|s| s["topology"].clone())),
        );
        let indexes = status["commit_index"].as_object().unwrap();
        assert_eq!(indexes.len(), 3, "{status:#}");
        assert!(
            indexes.values().all(|v| v.as_u64().unwrap_or(0) > 0),
            "{status:#}"
        );
        assert_eq!(
            status["topology"].as_array().unwrap().len(),
            1,
            "{status:#}"
        );
    }
    let out = std::process::Command::new(common::BIN)
        .args([
            "status",
            "--format",
            "table",
            "--seed",
            &net.seeds[1].addr().to_string(),
        ])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        table.contains("leader:") && table.contains("2 peers") && table.contains("1 links"),
        "{table}"
    );
    // A peer is not a seed, and says so.
    let peer = net.peers[0].addr().to_string();
    let out = std::process::Command::new(common::BIN)
        .args(["status", "--seed", &peer])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a peer; ask a seed"));
}

/// The identity of peer `addr` of `net`, read from its data directory (a
/// peer started in the cluster's directory keeps it in the default one).
fn identity_of(net: &Cluster, addr: SocketAddr) -> Identity {
    let dir = net
        .dir
        .path()
        .join("gossipnet-data")
        .join(format!("peer-{}", addr.port()));
    let (identity, created) = gossipnet::identity::load_or_create(&dir).unwrap();
    assert!(!created, "peer {addr} has no identity in {}", dir.display());
    identity
}

/// A DEAD_REPORT about `victim` by `reporter`, carrying `confirmers`, and
/// signed with the reporter's key.
fn dead_report(
    reporter: (SocketAddr, &Identity),
    victim: SocketAddr,
    incarnation: u64,
    mut confirmers: Vec<Statement>,
) -> Message {
    confirmers.sort_by_key(|s| s.addr);
    let report = format!(
        "Dead Node:{}:{}:1.0:{}",
        victim.ip(),
        victim.port(),
        reporter.0.ip()
    );
    let signature = reporter.1.sign_report(&ReportContent {
        reporter: reporter.0,
        report: &report,
        peer: victim,
        incarnation,
        confirmers: &confirmers,
        unreachable: &[],
    });
    Message::DeadReport {
        report,
        peer: victim,
        incarnation,
        confirmers,
        unreachable: vec![],
        signature,
    }
}

/// The best-linked peer of `net`, as committed: its address, its
/// incarnation, and its neighbours with their keys (read from their data
/// directories, as an attacker who took their machines would).
struct Hub {
    victim: SocketAddr,
    incarnation: u64,
    neighbours: Vec<SocketAddr>,
    keys: Vec<Identity>,
}

fn best_linked_peer(net: &Cluster) -> Hub {
    let want = addrs_of(net);
    let seed = net.seeds[0].addr();
    let status = wait_for(
        "the topology to be committed",
        DEADLINE,
        || {
            let s = common::status(seed)?;
            (s["topology"].as_array()?.len() >= 3).then_some(s)
        },
        || format!("{:?}", common::status(seed)),
    );
    let edges: Vec<(String, String)> = status["topology"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e[0].as_str().unwrap().to_string(),
                e[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let degree = |p: &str| edges.iter().filter(|(a, b)| a == p || b == p).count();
    let victim = want.iter().max_by_key(|p| degree(p)).unwrap().clone();
    let neighbours: Vec<SocketAddr> = edges
        .iter()
        .filter_map(|(a, b)| {
            if *a == victim {
                Some(b.parse().unwrap())
            } else if *b == victim {
                Some(a.parse().unwrap())
            } else {
                None
            }
        })
        .collect();
    assert!(neighbours.len() >= 2, "{edges:?}");
    let incarnation = status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["addr"] == victim.as_str())
        .unwrap()["incarnation"]
        .as_u64()
        .unwrap();
    let victim: SocketAddr = victim.parse().unwrap();
    let keys: Vec<Identity> = neighbours.iter().map(|n| identity_of(net, *n)).collect();
    Hub {
        victim,
        incarnation,
        neighbours,
        keys,
    }
}

/// The report that every one of the hub's neighbours signs: it passes
/// every check of the evidence, and only the seeds' own probes of the
/// victim stand between it and a removal.
fn colluding_report(hub: &Hub) -> Message {
    let now = Timestamp::from_micros(common::unix_us());
    let genuine: Vec<Statement> = hub
        .neighbours
        .iter()
        .zip(&hub.keys)
        .map(|(n, key)| key.state_unresponsive(*n, hub.victim, hub.incarnation, now))
        .collect();
    let forger = (hub.neighbours[0], &hub.keys[0]);
    dead_report(forger, hub.victim, hub.incarnation, genuine)
}

#[test]
fn a_forged_dead_report_about_a_live_peer_removes_nothing() {
    let mut net = network(4);
    let want = addrs_of(&net);
    wait_for_peer_list(&net, 0, &want);
    // A forger among the neighbours of the peer with the most links names
    // them all as confirmers.
    let Hub {
        victim,
        incarnation,
        ref neighbours,
        ref keys,
    } = best_linked_peer(&net);
    let now = Timestamp::from_micros(common::unix_us());
    let forger = (neighbours[0], &keys[0]);

    // 1. The forger holds its own key only: it signs the others'
    //    statements with it. Every seed refuses the report on the
    //    signatures, without even probing the victim.
    let forged: Vec<Statement> = neighbours
        .iter()
        .map(|n| keys[0].state_unresponsive(*n, victim, incarnation, now))
        .collect();
    let alone = dead_report(forger, victim, incarnation, forged);
    // 2. Every neighbour colludes, each signing its own statement: the
    //    signatures pass, and each seed's own probe finds the victim alive.
    let colluding = colluding_report(&best_linked_peer(&net));
    for s in 0..3 {
        let mut client = common::greet_as(net.seeds[s].addr(), forger.0, Role::Peer, forger.1);
        client.send(&alone);
        net.seeds[s].wait_event("the forged statements to be refused", DEADLINE, |e| {
            matches!(e, Event::DeadReportRefused { peer, reason, .. }
                if *peer == victim
                    && reason.starts_with("confirmer ")
                    && reason.contains("the signature does not verify against its registered key"))
        });
        client.send(&colluding);
        net.seeds[s].wait_event("the colluders' report to be refused", DEADLINE, |e| {
            matches!(e, Event::DeadReportRefused { peer, reason, .. }
                if *peer == victim && reason.contains("answered this seed's own probe"))
        });
    }
    for s in 0..3 {
        assert_eq!(
            committed_peers(net.seeds[s].addr()).unwrap(),
            want,
            "seed {s} removed a live peer"
        );
        net.seeds[s].poll();
        assert_eq!(
            net.seeds[s].count(|e| matches!(e, Event::RemoveCommitted { .. })),
            0
        );
        assert_eq!(
            net.seeds[s].count(|e| matches!(e, Event::RemoveProposed { .. })),
            0
        );
        // Only the colluders' report, whose signatures held, was probed.
        let refused_on_signatures = net.seeds[s].count(|e| {
            matches!(e, Event::DeadReportRefused { reason, .. } if reason.starts_with("confirmer "))
        });
        assert_eq!(refused_on_signatures, 1, "seed {s}");
    }
}

#[test]
fn a_connection_flood_cannot_get_a_live_peer_removed() {
    let net = network(4);
    let want = addrs_of(&net);
    wait_for_peer_list(&net, 0, &want);
    let hub = best_linked_peer(&net);
    let report = colluding_report(&hub);
    // The attacker fills the victim's connections, and every neighbour's,
    // past their limit, from the seeds' own address: the seeds' probes
    // must get in, or not count.
    let here = "127.0.0.1".parse().unwrap();
    let flood = gossipnet::net::limits::DEFAULT_MAX_INBOUND + 76;
    let _held: Vec<_> = std::iter::once(hub.victim)
        .chain(hub.neighbours.iter().copied())
        .flat_map(|target| common::idle_connections(target, here, flood))
        .collect();
    let mut seeds = net.seeds;
    for seed in &mut seeds {
        // As the first neighbour, with its key: the seed takes the
        // connection as that neighbour's.
        let mut client = common::greet_as(seed.addr(), hub.neighbours[0], Role::Peer, &hub.keys[0]);
        client.send(&report);
        seed.wait_event("the report to be refused", DEADLINE, |e| {
            matches!(e, Event::DeadReportRefused { peer, reason, .. }
                if *peer == hub.victim
                    && (reason.contains("answered this seed's own probe")
                        || reason.contains("turned away this seed's own probe")))
        });
    }
    for seed in &mut seeds {
        assert_eq!(
            committed_peers(seed.addr()).unwrap(),
            want,
            "a live peer was removed"
        );
        seed.poll();
        assert_eq!(
            seed.count(|e| matches!(e, Event::RemoveProposed { .. })),
            0,
            "{} voted to remove a live peer",
            seed.addr()
        );
    }
}

/// A peer's neighbours by its own events: NEIGHBOR_UP adds one,
/// NEIGHBOR_DOWN drops one, and a new life starts with none.
fn own_links(peer: &Proc) -> BTreeSet<SocketAddr> {
    let mut links = BTreeSet::new();
    for event in peer.events() {
        match event {
            Event::NeighborUp { peer } => {
                links.insert(*peer);
            }
            Event::NeighborDown { peer } => {
                links.remove(peer);
            }
            Event::Rejoining { .. } => links.clear(),
            _ => {}
        }
    }
    links
}

/// Each registered peer's own link set as `seed` committed it, from
/// `gossipnet status` (`peers[].links`: None before its first report).
type Recorded = BTreeMap<SocketAddr, Option<BTreeSet<SocketAddr>>>;

fn recorded_links(seed: SocketAddr) -> Option<Recorded> {
    let status = common::status(seed)?;
    let addr = |a: &serde_json::Value| a.as_str()?.parse::<SocketAddr>().ok();
    status["peers"]
        .as_array()?
        .iter()
        .map(|p| {
            let links = match &p["links"] {
                serde_json::Value::Null => None,
                links => Some(links.as_array()?.iter().map(addr).collect::<Option<_>>()?),
            };
            Some((addr(&p["addr"])?, links))
        })
        .collect()
}

#[test]
fn after_bursts_of_link_changes_every_seed_records_the_links_each_peer_holds() {
    let mut net = Cluster::with_seeds(3, &["--gossip-count", "0", "--ping-interval", "500ms"]);
    for _ in 0..6 {
        net.add_peer();
    }
    let mut dead: BTreeSet<SocketAddr> = BTreeSet::new();
    for _ in 0..3 {
        // Four peers at once: they link to the best-linked peers, whose
        // sets grow several times within milliseconds.
        let new: Vec<usize> = (0..4).map(|_| net.start_peer()).collect();
        for i in new {
            net.peers[i].wait_event("joined", START, |e| matches!(e, Event::Joined { .. }));
        }
        // Then the best-linked peer loses two neighbours at once, and its
        // set and theirs shrink and are repaired in a burst.
        net.poll_all();
        let live = |p: &&mut Proc| !dead.contains(&p.addr());
        let hub = net
            .peers
            .iter_mut()
            .filter(live)
            .max_by_key(|p| own_links(p).len())
            .map(|p| own_links(p))
            .unwrap();
        let victims: Vec<SocketAddr> = hub.into_iter().take(2).collect();
        for p in net.peers.iter_mut().filter(|p| victims.contains(&p.addr())) {
            let _ = p.child.kill();
        }
        dead.extend(victims.iter().copied());
        for seed in &mut net.seeds {
            for victim in &victims {
                seed.wait_event(
                    "the removal to commit",
                    DEADLINE,
                    |e| matches!(e, Event::RemoveCommitted { peer, .. } if peer == victim),
                );
            }
        }
    }
    // Once quiet, every seed records for every live peer the set that
    // peer holds: no older report of a burst stands for a newer one.
    let cell = std::cell::RefCell::new(&mut net);
    let want = || -> Recorded {
        let mut net = cell.borrow_mut();
        net.poll_all();
        net.peers
            .iter()
            .filter(|p| !dead.contains(&p.addr()))
            .map(|p| (p.addr(), Some(own_links(p))))
            .collect()
    };
    let seeds: Vec<SocketAddr> = cell.borrow().seeds.iter().map(|s| s.addr()).collect();
    wait_for(
        "every seed to record the links each peer holds",
        DEADLINE,
        || {
            let want = want();
            seeds
                .iter()
                .all(|s| recorded_links(*s).as_ref() == Some(&want))
                .then_some(())
        },
        || {
            let want = want();
            let differ: Vec<String> = seeds
                .iter()
                .flat_map(|s| {
                    let got = recorded_links(*s).unwrap_or_default();
                    want.iter()
                        .filter(|(p, links)| got.get(p) != Some(links))
                        .map(|(p, links)| {
                            let recorded = match got.get(p) {
                                None => "not registered".to_string(),
                                Some(None) => "no report".to_string(),
                                Some(Some(r)) => format!("{r:?}"),
                            };
                            let holds = links.clone().unwrap_or_default();
                            format!("seed {s}: {p} holds {holds:?}, recorded {recorded}")
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            format!("{differ:?}")
        },
    );
    let superseded: usize = cell
        .borrow()
        .seeds
        .iter()
        .map(|s| s.count(|e| matches!(e, Event::LinkReportSuperseded { .. })))
        .sum();
    eprintln!("link reports left out as superseded, over all seeds: {superseded}");
}
