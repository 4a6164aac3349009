//! Attacks on a node's connections, with real processes: floods of idle
//! connections, and a neighbour that stops reading (docs/SECURITY.md,
//! "Limits"). Each test is the attack itself, then checks that everyone
//! else is still served and that memory stays bounded.

mod common;

use std::{
    io::Write,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant},
};

use common::{hello, idle_connections, rss_kib, wait_for, Cluster, FakeNode, RawClient, START};
use gossipnet::{
    net::limits::{DEFAULT_MAX_INBOUND, LINK_SEND_QUEUE_BYTES},
    proto::{
        message::{Message, Role},
        Event,
    },
};

/// More connections than a node takes at once, by default.
const FLOOD: usize = DEFAULT_MAX_INBOUND + 76;
/// Another host, as far as the nodes can tell: they all listen on 127.0.0.1.
const ELSEWHERE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const HERE: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Says HELLO on every other connection of `held`, each as a different
/// made-up peer, so that half the flood has got past HELLO and is silent.
fn hello_on_half(held: &mut [std::net::TcpStream], first_port: u16) {
    for (i, stream) in held.iter_mut().enumerate().filter(|(i, _)| i % 2 == 0) {
        let me = SocketAddr::new(HERE, first_port.wrapping_add(i as u16));
        stream.write_all(&hello(me, Role::Peer).to_frame()).unwrap();
    }
}

/// Floods seed 0 of `net` from `source` and checks that it still answers
/// `gossipnet status` and registers a new peer; returns the time that
/// registration took.
fn flood_a_seed_then_register(net: &mut Cluster, source: IpAddr, key: Option<&PathBuf>) {
    let seed = net.seeds[0].addr();
    let pid = net.seeds[0].child.id();
    let before = rss_kib(pid);
    let mut held = idle_connections(seed, source, FLOOD);
    if key.is_none() {
        hello_on_half(&mut held, 20_000);
    }
    // Every connection is in: the seed has taken and, past its limit,
    // closed some of them.
    net.seeds[0].wait_event("room made for the flood", START, |e| {
        matches!(e, Event::ConnectionRefused { reason, .. } if reason.contains("closed to make room"))
    });
    let flooded = rss_kib(pid);
    let extra: Vec<String> = key
        .map(|k| vec!["--network-key".into(), k.display().to_string()])
        .unwrap_or_default();
    let status = |seed| match &extra[..] {
        [] => common::status(seed),
        extra => {
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            common::status_with(seed, &extra)
        }
    };
    let asked = Instant::now();
    wait_for(
        "the flooded seed to answer status",
        START,
        || status(seed),
        || "no answer".into(),
    );
    let answered = asked.elapsed();
    let started = Instant::now();
    let peer = net.start_peer();
    net.peers[peer].wait_event("a new peer to register", START, |e| {
        matches!(e, Event::Registered { .. })
    });
    let registered = started.elapsed();
    let accepted = status(seed).expect("status")["peers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["addr"] == net.peers[peer].addr().to_string());
    assert!(accepted, "the new peer is not in the flooded seed's list");
    eprintln!(
        "flood of {FLOOD} connections from {source} (key: {}): status answered in {answered:?}, \
         a new peer registered in {registered:?}; seed RSS {before} KiB before, {flooded} KiB flooded, {} KiB after",
        key.is_some(),
        rss_kib(pid)
    );
    // Each connection costs its task and buffers; none is kept past the
    // limit, so memory is bounded whatever the flood.
    let grown = flooded.saturating_sub(before);
    assert!(grown < 64 * 1024, "the seed grew by {grown} KiB");
    drop(held);
}

#[test]
fn a_connection_flood_from_another_host_does_not_lock_a_seed() {
    let mut net = Cluster::with_seeds(3, &["--gossip-count", "0"]);
    flood_a_seed_then_register(&mut net, ELSEWHERE, None);
}

#[test]
fn a_connection_flood_from_the_seeds_own_host_does_not_lock_a_seed() {
    let mut net = Cluster::with_seeds(3, &["--gossip-count", "0"]);
    flood_a_seed_then_register(&mut net, HERE, None);
}

#[test]
fn a_connection_flood_does_not_lock_a_seed_with_a_network_key() {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("network.key");
    let made = std::process::Command::new(common::BIN)
        .args(["keygen", "--out"])
        .arg(&key)
        .status()
        .expect("run gossipnet keygen");
    assert!(made.success());
    let key_arg = key.display().to_string();
    let mut net = Cluster::with_seed_args(
        3,
        &["--network-key", &key_arg],
        &["--network-key", &key_arg, "--gossip-count", "0"],
    );
    flood_a_seed_then_register(&mut net, HERE, Some(&key));
}

#[test]
fn at_the_inbound_limit_the_oldest_silent_connection_makes_room() {
    let mut net = Cluster::with_seeds(2, &["--gossip-count", "0"]);
    let peer = net.add_peer_with(&["--max-inbound", "3"], false);
    let target = net.peers[peer].addr();
    // Three connections that say nothing fill the limit...
    let mut held: Vec<RawClient> = (0..3).map(|_| RawClient::connect(target)).collect();
    let oldest = held[0].stream.local_addr().unwrap();
    // ...so a fourth, which says HELLO at once as every honest node does,
    // is served, and the oldest silent one is closed to make room.
    let mut fourth = RawClient::connect(target);
    fourth.send(&hello("127.0.0.1:9".parse().unwrap(), Role::Peer));
    assert!(
        matches!(fourth.recv(), Some(Message::Hello { .. })),
        "the newcomer was not served"
    );
    assert!(
        held[0].closed_by_node(),
        "the oldest silent connection was kept"
    );
    net.peers[peer].wait_event("the close to make room", START, |e| {
        matches!(e, Event::ConnectionRefused { remote, reason }
            if *remote == oldest && reason.contains("limit of 3 inbound"))
    });
    // The others are still open.
    for client in &mut held[1..] {
        client
            .stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        assert!(!client.closed_by_node(), "a newer connection was closed");
    }
}

#[test]
fn a_neighbour_that_stops_reading_is_closed_and_memory_stays_bounded() {
    let mut net = Cluster::with_seeds(2, &["--gossip-count", "0"]);
    let victim = net.add_peer();
    let target = net.peers[victim].addr();
    let pid = net.peers[victim].child.id();
    // A neighbour that is taken as one, then never reads again.
    let slow_node = FakeNode::new(Role::Peer);
    let slow_addr = slow_node.addr;
    let _slow = slow_node.greet_taken(target, Role::Peer);
    let before = rss_kib(pid);
    // Another sends distinct messages of 60,000 bytes, each forwarded to
    // the slow one: 48 MB in all, far past what one link may queue.
    let sender_node = FakeNode::new(Role::Peer);
    let mut sender = sender_node.greet_taken(target, Role::Peer);
    let now = common::unix_us() as f64 / 1e6;
    let filler = "x".repeat(60_000);
    let count = 800;
    let mut peak = before;
    for i in 0..count {
        // Each from another origin, so that the admission budget of one
        // origin (a flood's first limit) does not stop them before the
        // slow link's queue fills.
        sender.send(&Message::gossip_signed_by(
            &sender_node.identity,
            SocketAddr::new(HERE, 20_000 + i as u16),
            format!("{now:.6}:127.0.0.1:{i} {filler}"),
            0,
        ));
        if i % 50 == 0 {
            peak = peak.max(rss_kib(pid));
        }
    }
    net.peers[victim].wait_event("the slow neighbour to be closed", START, |e| {
        matches!(e, Event::ProtocolError { remote, reason }
            if *remote == slow_addr && reason.contains("the remote is too slow"))
    });
    // Everything sent is handled: the last message is delivered.
    let last = format!(":127.0.0.1:{} ", count - 1);
    net.peers[victim].wait_event(
        "the last message",
        START,
        |e| matches!(e, Event::GossipReceived { msg, .. } if msg.contains(&last)),
    );
    peak = peak.max(rss_kib(pid));
    let grown = peak.saturating_sub(before);
    eprintln!(
        "slow reader: {count} messages of 60 kB forwarded to it; victim RSS {before} KiB before, peak {peak} KiB (+{grown} KiB), send queue limit {} KiB",
        LINK_SEND_QUEUE_BYTES / 1024
    );
    // The link's queue is bounded by LINK_SEND_QUEUE_BYTES; allow as much
    // again for the frames in flight through the node.
    assert!(
        grown < 3 * LINK_SEND_QUEUE_BYTES as u64 / 1024 + 8 * 1024,
        "the victim grew by {grown} KiB for a neighbour that does not read"
    );
    // The victim still serves its other links.
    sender.send(&Message::Ping { nonce: 7 });
    let answered = std::iter::from_fn(|| sender.recv())
        .take(2 * count)
        .any(|m| matches!(m, Message::Pong { nonce: 7, .. }));
    assert!(answered, "the victim stopped answering");
}

#[test]
fn identity_checks_held_open_by_one_source_do_not_keep_others_from_linking() {
    let mut net = Cluster::with_seeds(2, &["--gossip-count", "0"]);
    let victim = net.add_peer();
    let target = net.peers[victim].addr();
    // The attacker, on another host, claims addresses of its own where
    // something takes the PROBE's connection and never answers, so that
    // each identity check lasts its whole time limit.
    let silent: Vec<std::net::TcpListener> = (0..80)
        .map(|_| std::net::TcpListener::bind(SocketAddr::new(ELSEWHERE, 0)).unwrap())
        .collect();
    let attacker = gossipnet::proto::evidence::Identity::from_secret([9; 32]);
    let held = idle_connections(target, ELSEWHERE, silent.len());
    let _proving: Vec<RawClient> = held
        .iter()
        .zip(&silent)
        .map(|(stream, listener)| {
            let client = RawClient {
                stream: stream.try_clone().unwrap(),
            };
            let claimed = listener.local_addr().unwrap();
            common::greet_on(client, claimed, Role::Peer, &attacker).expect("a HELLO back")
        })
        .collect();
    net.peers[victim].wait_event("the source's checks to be capped", START, |e| {
        matches!(e, Event::ProtocolError { reason, .. }
            if reason.contains("identity checks are under way for its source address"))
    });
    // Meanwhile an honest node elsewhere links at once.
    let honest = FakeNode::new(Role::Peer);
    let mut client = honest.greet_taken(target, Role::Peer);
    client.send(&Message::Ping { nonce: 1 });
    assert!(
        std::iter::from_fn(|| client.recv()).any(|m| matches!(m, Message::Pong { nonce: 1, .. })),
        "the honest node's link did not work"
    );
    drop(silent);
}
