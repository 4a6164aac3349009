//! Speaking in another node's name, with real processes (docs/SECURITY.md,
//! "Proved identity"): a process on the nodes' own host claims a seed's
//! address to vote, or a neighbour's address to take over its link. Each
//! test is the attack as a local process could run it, with a key of its
//! own, then checks that nothing it said was taken.

mod common;

use std::net::SocketAddr;

use common::{committed_peers, greet_as, try_greet_as, wait_for, Cluster, Proc, RawClient, START};
use gossipnet::proto::{
    evidence::Identity,
    message::{Message, Role},
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
