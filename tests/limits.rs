//! Abuse limits with real processes (docs/SECURITY.md): a node caps its
//! inbound connections, and each connection's gossip and reports, and says
//! so in its log instead of growing without bound.

mod common;

use std::{io::Write, net::SocketAddr};

use common::{Cluster, FakeNode, RawClient, START};
use gossipnet::{
    net::limits::{GOSSIP_BURST, GOSSIP_PER_SEC, REPORTS_BURST, REPORTS_PER_SEC},
    proto::{
        message::{Message, Role},
        peer::{MIN_ORIGIN_RATE, ORIGIN_BURST},
        Event, GossipRefusal,
    },
};

/// A hand-made node that `target`, a node of `role`, has taken as a
/// neighbour (a peer) or a client (a seed). Keep the node: it answers the
/// target's PROBEs.
fn greeted(target: SocketAddr, role: Role) -> (RawClient, SocketAddr, FakeNode) {
    let node = FakeNode::new(Role::Peer);
    let client = node.greet_taken(target, role);
    (client, node.addr, node)
}

/// The frames of `msgs`, written in one go so that they arrive together.
fn send_all(client: &mut RawClient, msgs: impl Iterator<Item = Message>) {
    let bytes: Vec<u8> = msgs.flat_map(|m| m.to_frame()).collect();
    client.stream.write_all(&bytes).unwrap();
}

#[test]
fn a_gossip_flood_on_one_link_is_cut_to_the_rate_limit() {
    let mut net = Cluster::with_seeds(2, &["--gossip-count", "0"]);
    let victim = net.add_peer();
    let (mut flooder, me, node) = greeted(net.peers[victim].addr(), Role::Peer);
    let now = common::unix_us() as f64 / 1e6;
    let flood = 3 * GOSSIP_BURST as usize;
    let started = std::time::Instant::now();
    send_all(
        &mut flooder,
        (0..flood).map(|i| {
            Message::gossip_signed_by(
                &node.identity,
                me,
                format!("{now:.6}:127.0.0.1:flood {i}"),
                0,
            )
        }),
    );
    net.peers[victim].wait_event("the dropped gossip to be logged", START, |e| {
        matches!(e, Event::FramesDropped { kind, count, .. } if kind == "GOSSIP" && *count >= 1)
    });
    // Anything the flooder sends later is judged by the same bucket; the
    // node stays responsive: a PING on the same link is answered.
    flooder.send(&Message::Ping { nonce: 7 });
    let answered = std::iter::from_fn(|| flooder.recv())
        .take(10)
        .any(|m| matches!(m, Message::Pong { nonce: 7, .. }));
    assert!(answered, "the victim stopped answering on the flooded link");
    // The connection's backstop passed at most its burst and rate; of
    // those, the one origin's admission budget let through its own burst
    // and rate only (see a_flood_from_one_origin_costs_the_other_peers_no_real_message).
    let elapsed = started.elapsed().as_secs_f64();
    let passed = GOSSIP_BURST + GOSSIP_PER_SEC * elapsed;
    let allowed = ORIGIN_BURST + MIN_ORIGIN_RATE.max(2.0) * elapsed;
    let delivered = net.peers[victim]
        .poll()
        .count(|e| matches!(e, Event::GossipReceived { msg, .. } if msg.contains(":flood ")));
    assert!(
        delivered as f64 <= allowed + 1.0,
        "{delivered} of {flood} delivered, the budget allows {allowed:.0}"
    );
    assert!(
        delivered >= ORIGIN_BURST as usize,
        "only {delivered} delivered"
    );
    eprintln!(
        "gossip flood: {delivered} of {flood} delivered; the connection limit passes at most \
         {passed:.0}, the origin's budget {allowed:.0}"
    );
}

#[test]
fn a_request_flood_to_a_seed_is_cut_to_the_rate_limit() {
    let mut net = Cluster::with_seeds(2, &[]);
    let (mut flooder, me, _node) = greeted(net.seeds[0].addr(), Role::Seed);
    let flood = 10 * REPORTS_BURST as usize;
    let started = std::time::Instant::now();
    send_all(
        &mut flooder,
        (0..flood).map(|_| Message::PeerListRequest {}),
    );
    net.seeds[0].wait_event(
        "the dropped requests to be logged",
        START,
        |e| matches!(e, Event::FramesDropped { kind, .. } if kind == "PEER_LIST_REQUEST"),
    );
    let allowed = REPORTS_BURST + REPORTS_PER_SEC * started.elapsed().as_secs_f64();
    let served = net.seeds[0]
        .poll()
        .count(|e| matches!(e, Event::PeerListServed { to, .. } if *to == me));
    assert!(
        served as f64 <= allowed + 1.0,
        "{served} of {flood} served, the limit allows {allowed:.0}"
    );
    assert!(served >= 1, "no request was served at all");
    eprintln!("request flood: {served} of {flood} served, the limit allows {allowed:.0}");
}

#[test]
fn seeds_refuse_registrations_over_the_per_ip_cap() {
    let mut net =
        Cluster::with_seed_args(3, &["--max-peers-per-ip", "2"], &["--gossip-count", "0"]);
    net.add_peer();
    net.add_peer();
    let third = net.start_peer();
    for seed in &mut net.seeds {
        seed.wait_event("the third peer's registration refused", START, |e| {
            matches!(e, Event::RegisterRefused { reason, .. } if reason.contains("2 peers are already registered from 127.0.0.1"))
        });
    }
    net.peers[third].poll();
    let registered = net.peers[third].count(|e| matches!(e, Event::Registered { .. }));
    assert_eq!(registered, 0, "the third peer from one IP registered");
    let committed = common::committed_peers(net.seeds[0].addr()).expect("status");
    assert_eq!(committed.len(), 2, "{committed:?}");
}

#[test]
fn concurrent_registrations_from_one_ip_stop_at_the_committed_cap() {
    const CAP: usize = 2;
    const STARTED: usize = 6;
    let mut net =
        Cluster::with_seed_args(3, &["--max-peers-per-ip", "2"], &["--gossip-count", "0"]);
    // All at once: each seed checks its requests before any of them has
    // committed, so only the seeds' apply can hold the cap.
    let peers: Vec<usize> = (0..STARTED).map(|_| net.start_peer()).collect();
    let seed = net.seeds[0].addr();
    let refused = |net: &mut Cluster| -> std::collections::BTreeSet<SocketAddr> {
        net.poll_all();
        net.seeds
            .iter()
            .flat_map(|s| s.events())
            .filter_map(|e| match e {
                Event::RegisterRefused { peer, reason } if reason.contains("max_peers_per_ip") => {
                    Some(*peer)
                }
                _ => None,
            })
            .collect()
    };
    let registered = |net: &Cluster| {
        peers
            .iter()
            .filter(|i| net.peers[**i].count(|e| matches!(e, Event::Registered { .. })) > 0)
            .count()
    };
    common::wait_for(
        "two peers registered and the other four refused",
        START,
        || {
            let refused = refused(&mut net).len();
            let committed = common::committed_peers(seed)?.len();
            (committed == CAP && refused == STARTED - CAP && registered(&net) == CAP).then_some(())
        },
        || {
            format!(
                "committed {:?}",
                common::committed_peers(seed).unwrap_or_default()
            )
        },
    );
    for s in &net.seeds {
        let committed = common::committed_peers(s.addr()).expect("status");
        assert_eq!(committed.len(), CAP, "{committed:?}");
    }
}

#[test]
fn an_oversized_gossip_is_refused_logged_and_never_forwarded() {
    let mut net = Cluster::with_seeds(2, &["--gossip-count", "0"]);
    let neighbour = net.add_peer();
    // The victim's one candidate is the first peer, so they link.
    let victim = net.add_peer();
    let (mut flooder, me, node) = greeted(net.peers[victim].addr(), Role::Peer);
    let now = common::unix_us() as f64 / 1e6;
    let huge = format!("{now:.6}:127.0.0.1:{}", "x".repeat(500_000));
    let small = format!("{now:.6}:127.0.0.1:after the big one");
    for msg in [huge.clone(), huge.clone(), small.clone()] {
        flooder.send(&Message::gossip_signed_by(&node.identity, me, msg, 0));
    }
    net.peers[victim].wait_event("the refusal of the 500 kB message", START, |e| {
        matches!(e, Event::GossipRefused { from, cause: GossipRefusal::TooLarge, count: 1, .. }
            if *from == me)
    });
    // Frames on one link are handled in order: once the small message that
    // followed has gone through the victim to its neighbour, the big ones
    // would have too.
    net.peers[neighbour].wait_event(
        "the small message, forwarded",
        START,
        |e| matches!(e, Event::GossipReceived { msg, .. } if *msg == small),
    );
    for (at, what) in [(victim, "the victim"), (neighbour, "its neighbour")] {
        let big = net.peers[at]
            .poll()
            .count(|e| matches!(e, Event::GossipReceived { msg, .. } if msg.len() > 65_536));
        assert_eq!(big, 0, "{what} delivered a 500 kB message");
    }
    // Logged once: the second refusal came within the same second.
    let lines = net.peers[victim].count(|e| matches!(e, Event::GossipRefused { .. }));
    assert_eq!(lines, 1);
    let log = std::fs::read_to_string(net.peers[victim].output_file("peer")).unwrap();
    assert!(
        log.contains("over the 65536-byte limit"),
        "the output file does not say why"
    );
}

/// Floods `victim` from a HELLO-only neighbour with `frames` distinct,
/// fresh GOSSIP frames, signed with the flooder's key, whose origins
/// `origin_of` picks (from the flooder's address, the real peers' and the
/// frame's number), in batches over a few seconds, while every peer types
/// lines; then checks that every line reached every peer, and prints the
/// figures.
fn real_gossip_survives_a_flood(
    origin_of: fn(SocketAddr, &[SocketAddr], usize) -> SocketAddr,
    what: &str,
) {
    let mut net = Cluster::with_seeds(2, &["--gossip-count", "0"]);
    let peers: Vec<usize> = (0..5)
        .map(|_| net.add_peer_with(&["--stdin"], true))
        .collect();
    let victim = peers[0];
    let (mut flooder, me, node) = greeted(net.peers[victim].addr(), Role::Peer);
    let real: Vec<SocketAddr> = peers.iter().map(|&p| net.peers[p].addr()).collect();
    let frames = 20_000;
    let batches = 20;
    let mut lines = Vec::new();
    for batch in 0..batches {
        let now = common::unix_us() as f64 / 1e6;
        let per = frames / batches;
        send_all(
            &mut flooder,
            (batch * per..(batch + 1) * per).map(|i| {
                let msg = format!("{now:.6}:127.0.0.1:flood {i}");
                Message::gossip_signed_by(&node.identity, origin_of(me, &real, i), msg, 0)
            }),
        );
        // Real lines typed while the flood runs, at every peer in turn.
        let typist = peers[batch % peers.len()];
        let line = format!("real line {batch} of {what}");
        writeln!(net.peers[typist].stdin(), "{line}").unwrap();
        net.peers[typist].stdin().flush().unwrap();
        lines.push(line);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut delivered = 0;
    for &p in &peers {
        for line in &lines {
            let suffix = format!(":{line}");
            net.peers[p].wait_event(&format!("'{line}'"), START, |e| match e {
                Event::GossipReceived { msg, .. } | Event::GossipCreated { msg } => {
                    msg.ends_with(&suffix)
                }
                _ => false,
            });
            delivered += 1;
        }
    }
    net.poll_all();
    let forwarded: Vec<usize> = peers[1..]
        .iter()
        .map(|&p| {
            net.peers[p].count(
                |e| matches!(e, Event::GossipReceived { msg, .. } if msg.contains(":flood ")),
            )
        })
        .collect();
    let at_victim = net.peers[victim]
        .count(|e| matches!(e, Event::GossipReceived { msg, .. } if msg.contains(":flood ")));
    let dropped = net.peers[1..]
        .iter()
        .filter(|p| p.count(|e| matches!(e, Event::FramesDropped { .. })) > 0)
        .count();
    eprintln!(
        "{what}: {delivered} of {} real deliveries (100%); the victim admitted {at_victim} of \
         {frames} flood messages, the others {forwarded:?}; {dropped} other peers dropped frames",
        lines.len() * peers.len()
    );
    assert_eq!(dropped, 0, "a forwarder's link dropped frames");
    net.peers[victim].wait_event("the refused flood to be logged", START, |e| {
        matches!(
            e,
            Event::GossipRefused {
                cause: GossipRefusal::OriginRate
                    | GossipRefusal::NewOrigins
                    // Frames naming the victim itself: their line may
                    // come first, and stand for the second's refusals.
                    | GossipRefusal::Forged,
                ..
            }
        )
    });
}

#[test]
fn a_flood_from_one_origin_costs_the_other_peers_no_real_message() {
    real_gossip_survives_a_flood(|me, _, _| me, "one origin");
}

#[test]
fn a_flood_in_the_real_peers_names_costs_them_no_message() {
    // Every frame names one of the real peers as its origin, the victim
    // included. Each is signed with the flooder's own key: it has no other.
    real_gossip_survives_a_flood(|_, real, i| real[i % real.len()], "the real peers' names");
}

#[test]
fn a_flood_with_spoofed_origins_costs_the_other_peers_no_real_message() {
    // Two thousand made-up origins, each used ten times: more than one
    // link may introduce.
    real_gossip_survives_a_flood(
        |_, _, i| SocketAddr::from(([10, 9, (i / 10 / 256) as u8, (i / 10 % 256) as u8], 7000)),
        "spoofed origins",
    );
}
