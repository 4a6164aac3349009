//! Speaking in another node's name, with real processes (docs/SECURITY.md,
//! "Proved identity"): a process on the nodes' own host claims a seed's
//! address to vote, or a neighbour's address to take over its link. Each
//! test is the attack as a local process could run it, with a key of its
//! own, then checks that nothing it said was taken.

mod common;

use std::net::SocketAddr;

use common::{
    committed_peers, greet_as, try_greet_as, wait_for, Cluster, FakeNode, Proc, RawClient, START,
};
use gossipnet::proto::{
    evidence::Identity,
    message::{Message, PublicKey, Role},
    Event,
};

/// A vote for `peer` in `seed`'s name, as a follower forwards it to the
/// leader (docs/PROTOCOL.md, RAFT_REQUEST).
fn vote_in_the_name_of(seed: SocketAddr, peer: SocketAddr, key: &Identity) -> Message {
    let body = serde_json::json!({"propose": {"op": "vote", "change": {
        "kind": "add", "peer": peer.to_string(), "incarnation": 1,
        "key": key.public_key().to_string()},
        "seed": seed.to_string()}});
    Message::RaftRequest { id: 1, body }
}

/// Waits until `node` refuses `client`'s claim to be `claimed` because the
/// node there holds another key, and checks that it closed the connection.
fn wait_for_the_claim_refused(node: &mut Proc, client: &mut RawClient, claimed: SocketAddr) {
    let refused = format!("HELLO claims {claimed}, but the node at {claimed} holds another key");
    node.wait_event(
        "the false claim to be refused",
        START,
        |e| matches!(e, Event::ProtocolError { reason, .. } if reason.contains(&refused)),
    );
    assert!(
        client.closed_by_node(),
        "{} kept a connection that falsely claims {claimed}",
        node.addr()
    );
}

#[test]
fn a_process_on_the_seeds_host_cannot_speak_for_a_seed() {
    let mut net = Cluster::with_seeds(3, &["--gossip-count", "0"]);
    let seeds: Vec<SocketAddr> = net.seeds.iter().map(|s| s.addr()).collect();
    // An address that nothing listens on, which no seed ever probed.
    let ghost: SocketAddr = format!("127.0.0.1:{}", common::free_ports(1)[0])
        .parse()
        .unwrap();
    let attacker = Identity::from_secret([9; 32]);
    // From the seeds' own IP address, the attacker claims each seed to each
    // other seed, and on every connection taken sends votes for the ghost
    // in the claimed seed's name: two votes of distinct seeds at the
    // leader would be a majority of three.
    let mut claims = 0;
    for (t, target) in seeds.iter().enumerate() {
        for claimed in seeds.iter().filter(|s| *s != target) {
            // A seed that has its own connection to the claimed one, and
            // the smaller address, drops the claim at once (the rule for
            // simultaneous dials); any other must refuse it on its proof.
            let Some(mut client) = try_greet_as(*target, *claimed, Role::Seed, &attacker) else {
                continue;
            };
            claims += 1;
            for voter in &seeds {
                client.send(&vote_in_the_name_of(*voter, ghost, &attacker));
            }
            wait_for_the_claim_refused(&mut net.seeds[t], &mut client, *claimed);
        }
    }
    // Of three seeds, the one with the largest address always answers.
    assert!(claims >= 2, "only {claims} claims got a HELLO back");
    // A registration after the forged votes commits after anything they
    // could have caused; the ghost is in no seed's Peer List.
    let peer = net.add_peer();
    let real = net.peers[peer].addr().to_string();
    for seed in &seeds {
        let peers = wait_for(
            "the real peer to commit",
            START,
            || committed_peers(*seed).filter(|p| p.contains(&real)),
            || format!("{:?}", committed_peers(*seed)),
        );
        assert!(
            !peers.contains(&ghost.to_string()),
            "{seed} committed {ghost}, which only forged votes named"
        );
    }
    for seed in &mut net.seeds {
        seed.poll();
        let forged = seed.count(|e| matches!(e, Event::Vote { peer, .. } if *peer == ghost));
        assert_eq!(forged, 0, "{} applied a forged vote", seed.addr());
    }
}

/// Two linked peers whose second creates `GOSSIP_COUNT` messages, one every
/// 500 ms from the moment they link, and pings every 500 ms: the first
/// has all of them only once more than three ping intervals have passed.
fn two_linked_peers() -> (Cluster, SocketAddr, SocketAddr) {
    let mut net = Cluster::with_seeds(
        3,
        &[
            "--ping-interval",
            "500ms",
            "--gossip-interval",
            "500ms",
            "--gossip-count",
            &GOSSIP_COUNT.to_string(),
        ],
    );
    let first = net.add_peer();
    let second = net.add_peer();
    let (victim, neighbour) = (net.peers[first].addr(), net.peers[second].addr());
    net.peers[0].wait_event(
        "the link",
        START,
        |e| matches!(e, Event::NeighborUp { peer } if *peer == neighbour),
    );
    (net, victim, neighbour)
}

const GOSSIP_COUNT: usize = 6;

/// Waits until the victim (peer 0) has every message the neighbour
/// created, over their link.
fn wait_for_the_neighbours_messages(net: &mut Cluster, neighbour: SocketAddr) {
    wait_for(
        "every message of the neighbour, over the link",
        START,
        || {
            let got = net.peers[0].poll().count(|e| {
                matches!(e, Event::GossipReceived { origin, from, .. }
                    if *origin == neighbour && *from == neighbour)
            });
            (got == GOSSIP_COUNT).then_some(())
        },
        || "some are missing".into(),
    );
}

/// The neighbour's incarnation, as the seeds committed it.
fn incarnation_of(net: &Cluster, peer: SocketAddr) -> u64 {
    let status = common::status(net.seeds[0].addr()).expect("status");
    status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["addr"] == peer.to_string())
        .and_then(|p| p["incarnation"].as_u64())
        .expect("the neighbour is registered")
}

#[test]
fn a_process_claiming_a_seed_cannot_make_a_peer_drop_a_neighbour() {
    let (mut net, victim, neighbour) = two_linked_peers();
    // A DEAD_CONFIRMED about the live neighbour, from a connection that
    // claims to be a seed, as a process on the seeds' host could send it.
    let seed = net.seeds[0].addr();
    let attacker = Identity::from_secret([9; 32]);
    let mut client = greet_as(victim, seed, Role::Seed, &attacker);
    client.send(&Message::DeadConfirmed {
        peer: neighbour,
        incarnation: incarnation_of(&net, neighbour),
        replacement: None,
    });
    wait_for_the_claim_refused(&mut net.peers[0], &mut client, seed);
    // The link carries on, past anything the forged frame could have done.
    wait_for_the_neighbours_messages(&mut net, neighbour);
    let dropped = net.peers[0].poll().count(|e| {
        matches!(e, Event::DeadConfirmed { peer } | Event::NeighborDown { peer } if *peer == neighbour)
    });
    assert_eq!(
        dropped, 0,
        "the victim dropped a live neighbour on a forged word"
    );
}

#[test]
fn a_hello_claiming_a_neighbours_address_cannot_take_over_its_link() {
    let (mut net, victim, neighbour) = two_linked_peers();
    // A local process claims the neighbour's address, with a key of its
    // own, and gossips in its name.
    let attacker = Identity::from_secret([9; 32]);
    let mut client = greet_as(victim, neighbour, Role::Peer, &attacker);
    let now = common::unix_us() as f64 / 1e6;
    client.send(&Message::gossip_signed_by(
        &attacker,
        neighbour,
        format!("{now:.6}:127.0.0.1:forged in the neighbour's name"),
        0,
    ));
    wait_for_the_claim_refused(&mut net.peers[0], &mut client, neighbour);
    // The real link carries on, more than three ping intervals, and the
    // victim never suspects the neighbour: it answers every PING.
    wait_for_the_neighbours_messages(&mut net, neighbour);
    let victim_events = net.peers[0].poll();
    let forged = victim_events.count(|e| {
        matches!(e, Event::GossipReceived { msg, .. } if msg.contains("forged in the neighbour's name"))
    });
    assert_eq!(forged, 0, "gossip in the neighbour's name was taken");
    let suspected = victim_events.count(|e| {
        matches!(e, Event::SuspicionStarted { peer, .. } | Event::NeighborDown { peer } if *peer == neighbour)
    });
    assert_eq!(
        suspected, 0,
        "the victim suspected or lost a live neighbour"
    );
}

/// The public key in a node's data directory.
fn key_in(dir: &std::path::Path) -> PublicKey {
    gossipnet::identity::load(dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .public_key()
}

/// The key `seed`'s committed directory pins for `pinned`, if any.
fn pinned_key(seed: SocketAddr, pinned: SocketAddr) -> Option<PublicKey> {
    common::status(seed)?["seed_keys"][pinned.to_string()]
        .as_str()?
        .parse()
        .ok()
}

/// Waits until every seed's committed directory pins every seed's own key.
fn wait_for_every_seed_key_pinned(net: &Cluster) {
    let seeds: Vec<(SocketAddr, PublicKey)> = (0..net.seeds.len())
        .map(|i| (net.seeds[i].addr(), key_in(&net.seed_data_dir(i))))
        .collect();
    for (asked, _) in &seeds {
        wait_for(
            "every seed's key to be pinned",
            START,
            || {
                seeds
                    .iter()
                    .all(|(seed, key)| pinned_key(*asked, *seed) == Some(*key))
                    .then_some(())
            },
            || {
                format!(
                    "{:?}",
                    common::status(*asked).map(|s| s["seed_keys"].clone())
                )
            },
        );
    }
}

/// Whether `seed` logged that it refused a claim of `claimed` with
/// `proved` because `pinned` is pinned for it.
fn refused(seed: &mut Proc, claimed: SocketAddr, pinned: PublicKey, proved: PublicKey) -> bool {
    seed.poll().count(|e| {
        matches!(e, Event::SeedKeyRefused { seed, pinned: p, proved: k }
            if *seed == claimed && *p == pinned && *k == proved)
    }) > 0
}

fn seed_args(addr: SocketAddr, config: &std::path::Path, data: &std::path::Path) -> Vec<String> {
    vec![
        "seed".into(),
        addr.to_string(),
        "--config".into(),
        config.display().to_string(),
        "--data-dir".into(),
        data.display().to_string(),
    ]
}

/// How long a `gossipnet` command run to its end may take here.
const RUN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Three seeds that have pinned their keys, and one peer registered: the
/// cluster, its seeds' addresses and the peer's.
fn three_seeds_with_keys_pinned() -> (Cluster, Vec<SocketAddr>, String) {
    let mut net = Cluster::with_seeds(3, &["--gossip-count", "0"]);
    let seeds: Vec<SocketAddr> = net.seeds.iter().map(|s| s.addr()).collect();
    wait_for_every_seed_key_pinned(&net);
    let first = net.add_peer();
    let first = net.peers[first].addr().to_string();
    (net, seeds, first)
}

#[test]
fn a_process_on_a_down_seeds_port_with_another_key_is_refused_and_the_real_seed_is_taken_back() {
    let (mut net, seeds, first) = three_seeds_with_keys_pinned();
    // The victim is a follower, so that the leader stays and any election
    // would be the impostor's doing.
    let leader = wait_for(
        "a leader",
        START,
        || {
            common::status(seeds[0])?["leader"]
                .as_str()?
                .parse::<SocketAddr>()
                .ok()
        },
        || "none".into(),
    );
    let victim = (0..3).find(|i| seeds[*i] != leader).unwrap();
    let others: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    let addr = seeds[victim];
    let real_key = key_in(&net.seed_data_dir(victim));
    net.kill_seed(victim);
    let leader_changes = |net: &mut Cluster| -> usize {
        others
            .iter()
            .map(|i| {
                net.seeds[*i]
                    .poll()
                    .count(|e| matches!(e, Event::LeaderChanged { .. }))
            })
            .sum()
    };
    let changes_before = leader_changes(&mut net);
    // The attacker, on the seeds' host, runs a seed of its own on the
    // victim's exact address: another data directory, so another key.
    // It proves that key, and PROBEs of the address reach it.
    let impostor_data = net.dir.path().join("impostor-data");
    let mut impostor = Proc::spawn(
        net.dir.path(),
        "impostor",
        &seed_args(addr, &net.config, &impostor_data),
        false,
    );
    impostor.wait_event("listening", START, |e| matches!(e, Event::Listening { .. }));
    let impostor_key = key_in(&impostor_data);
    assert_ne!(impostor_key, real_key);
    // The other seeds dial it (Raft), and it dials them: each must refuse
    // it, naming the address and both keys, before it learns anything.
    wait_for(
        "both other seeds to refuse the impostor",
        START,
        || {
            let taken = impostor
                .poll()
                .count(|e| matches!(e, Event::ClusterFormed { .. }));
            assert_eq!(
                taken, 0,
                "the impostor on {addr} was taken as that seed: it applied the seeds' log"
            );
            others
                .iter()
                .all(|i| refused(&mut net.seeds[*i], addr, real_key, impostor_key))
                .then_some(())
        },
        || "no refusal yet".into(),
    );
    let prose = std::fs::read_to_string(net.seeds[others[0]].output_file("seed")).unwrap();
    let line = prose
        .lines()
        .find(|l| l.contains("SEED KEY REFUSED"))
        .expect("the refusal in the output file");
    for needed in [
        addr.to_string(),
        real_key.to_string(),
        impostor_key.to_string(),
        "gossipnet seeds rekey".to_string(),
    ] {
        assert!(line.contains(&needed), "{line} lacks {needed}");
    }
    // The two remaining seeds commit without the victim: a registration
    // goes through, later than anything the impostor could have caused.
    let second = net.add_peer();
    let second = net.peers[second].addr().to_string();
    for i in &others {
        wait_for(
            "the second peer to commit",
            START,
            || committed_peers(seeds[*i]).filter(|p| p.contains(&second)),
            || format!("{:?}", committed_peers(seeds[*i])),
        );
    }
    // The impostor got no entry of the log and no vote: it never formed
    // the cluster, holds no peer, and no leader changed.
    let status = common::status(addr).expect("the impostor's status");
    assert_eq!(
        status["commit_index"][addr.to_string()],
        0,
        "the impostor got entries: {status}"
    );
    assert_eq!(status["peers"], serde_json::json!([]), "{status}");
    // Nothing the seeds sent reached it, not even a leader's heartbeat.
    assert!(
        status["leader"].is_null() || status["leader"] == addr.to_string(),
        "the impostor heard from the leader: {status}"
    );
    assert_eq!(
        impostor
            .poll()
            .count(|e| matches!(e, Event::ClusterFormed { .. })),
        0
    );
    assert_eq!(
        leader_changes(&mut net),
        changes_before,
        "the impostor disturbed the leader"
    );
    // The real seed comes back with its own data directory: taken again,
    // it catches up with what was committed while it was down.
    drop(impostor);
    net.restart_seed(victim);
    wait_for(
        "the real seed to catch up",
        START,
        || committed_peers(addr).filter(|p| p.contains(&first) && p.contains(&second)),
        || format!("{:?}", committed_peers(addr)),
    );
    for i in &others {
        let refusals = net.seeds[*i].poll().count(|e| {
            matches!(e, Event::SeedKeyRefused { seed, proved, .. } if *seed == addr && *proved == real_key)
        });
        assert_eq!(refusals, 0, "the real seed's own key was refused");
    }
}

#[test]
fn a_seed_that_lost_its_data_dir_is_refused_until_a_majority_pins_its_new_key() {
    let (mut net, seeds, first) = three_seeds_with_keys_pinned();
    let lost = 2;
    let (addr, data) = (seeds[lost], net.seed_data_dir(lost));
    let old_key = key_in(&data);
    net.kill_seed(lost);

    // Its identity.key alone is lost: its own log pins the old key, so it
    // refuses to start, and says what to do.
    std::fs::remove_file(data.join("identity.key")).unwrap();
    let (code, _, stderr) = common::run_to_end(&seed_args(addr, &net.config, &data), RUN_LIMIT);
    assert_eq!(code, Some(2), "{stderr}");
    let new_key = key_in(&data);
    for needed in [
        data.display().to_string(),
        old_key.to_string(),
        new_key.to_string(),
        format!("gossipnet seeds rekey {addr} --key {new_key}"),
    ] {
        assert!(stderr.contains(&needed), "{stderr} lacks {needed}");
    }

    // Its whole data directory is lost: it starts afresh, and every other
    // seed refuses its new key.
    std::fs::remove_dir_all(&data).unwrap();
    net.restart_seed(lost);
    let new_key = key_in(&data);
    wait_for(
        "the others to refuse the seed's new key",
        START,
        || {
            (0..2)
                .all(|i| refused(&mut net.seeds[i], addr, old_key, new_key))
                .then_some(())
        },
        || "no refusal yet".into(),
    );

    // An attacker cannot order a rekey: an order not signed with the
    // receiving seed's own key is refused, and the command needs the data
    // directory of a running seed.
    let attacker = Identity::from_secret([9; 32]);
    let mut client = RawClient::connect(seeds[0]);
    client.send(&Message::RekeyRequest {
        version: gossipnet::proto::message::PROTOCOL_VERSION,
        seed: addr,
        old: old_key,
        new: attacker.public_key(),
        signature: attacker.order_rekey(seeds[0], addr, old_key, attacker.public_key()),
    });
    match client.recv() {
        Some(Message::RekeyReply {
            accepted: false,
            detail,
        }) => assert!(
            detail.contains("not signed with the key of seed"),
            "{detail}"
        ),
        other => panic!("a forged rekey order got {other:?}"),
    }
    let fake = net.dir.path().join("attacker-data");
    gossipnet::identity::load_or_create(&fake).unwrap();
    let mut order = vec![
        "seeds".to_string(),
        "rekey".into(),
        addr.to_string(),
        "--key".into(),
        attacker.public_key().to_string(),
        "--config".into(),
        net.config.display().to_string(),
        "--data-dir".into(),
        fake.display().to_string(),
    ];
    let (code, _, stderr) = common::run_to_end(&order, RUN_LIMIT);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no running seed"), "{stderr}");
    assert_eq!(pinned_key(seeds[0], addr), Some(old_key));

    // The operator, with the data directories of the two running seeds,
    // has both vote for the new key: a majority, so it is pinned.
    order[4] = new_key.to_string();
    order.truncate(7);
    for i in 0..2 {
        order.push("--data-dir".into());
        order.push(net.seed_data_dir(i).display().to_string());
    }
    let (code, stdout, stderr) = common::run_to_end(&order, RUN_LIMIT);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("committed"), "{stdout}");
    for seed in &seeds[..2] {
        assert_eq!(pinned_key(*seed, addr), Some(new_key));
    }
    // Now the seed with the new key is taken: it catches up from the
    // others, the registration and its own new key included.
    wait_for(
        "the rekeyed seed to catch up",
        START,
        || {
            let peers = committed_peers(addr)?;
            (peers.contains(&first) && pinned_key(addr, addr) == Some(new_key)).then_some(())
        },
        || format!("{:?}", common::status(addr)),
    );
    net.seeds[0].poll();
    assert!(
        net.seeds[0].count(|e| matches!(e, Event::SeedRekeyed { seed, new, .. } if *seed == addr && *new == new_key)) == 1,
        "no seed_rekeyed event"
    );
}

#[test]
fn a_process_on_a_down_seeds_port_cannot_make_a_peer_drop_a_live_neighbour() {
    let (mut net, seeds, _) = three_seeds_with_keys_pinned();
    // Two peers that joined after the keys were pinned: their Peer Lists
    // carried them.
    let second = net.add_peer();
    let (first, second_addr) = (0, net.peers[second].addr());
    net.peers[first].wait_event(
        "the second peer as neighbour",
        START,
        |e| matches!(e, Event::NeighborUp { peer } if *peer == second_addr),
    );
    // A seed goes down, and the attacker takes its exact address with a
    // key of its own: PROBEs of that address reach it, and it proves its
    // key, so only the pinned key tells it from the seed.
    let victim = 2;
    let addr = seeds[victim];
    net.kill_seed(victim);
    let impostor = FakeNode::at(addr, Role::Seed);
    let mut client = impostor.greet(net.peers[first].addr());
    // Whatever became of the HELLO, it sends the removal of the live
    // neighbour, in the seed's name.
    client.send(&Message::DeadConfirmed {
        peer: second_addr,
        incarnation: u64::MAX,
        replacement: None,
    });
    net.peers[first].wait_event("the impostor to be refused", START, |e| {
        matches!(e, Event::SeedKeyRefused { seed, proved, .. }
            if *seed == addr && *proved == impostor.identity.public_key())
    });
    assert!(
        client.closed_by_node(),
        "the peer kept a connection that claims seed {addr} with another key"
    );
    // The link to the live neighbour stays: asked afterwards, the peer
    // still names it among its neighbours, and it took no removal.
    let asker = FakeNode::new(Role::Peer);
    let mut asking = asker.greet(net.peers[first].addr());
    asking.send(&Message::Ping { nonce: 1 });
    let neighbors = std::iter::from_fn(|| asking.recv())
        .find_map(|m| match m {
            Message::Pong { neighbors, .. } => Some(neighbors),
            _ => None,
        })
        .expect("a PONG");
    assert!(neighbors.contains(&second_addr), "{neighbors:?}");
    let dropped = net.peers[first].poll().count(|e| {
        matches!(e, Event::DeadConfirmed { peer } if *peer == second_addr)
            || matches!(e, Event::NeighborDown { peer, .. } if *peer == second_addr)
    });
    assert_eq!(dropped, 0, "the impostor's DEAD_CONFIRMED was taken");
}
