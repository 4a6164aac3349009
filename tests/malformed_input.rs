//! Bad input closes the one connection it came on, is logged, and the node
//! keeps serving everyone else (issue: wire protocol; SPEC R25).

mod common;

use std::time::Duration;

use common::{Cluster, FakeNode, Proc, RawClient};
use gossipnet::proto::{
    message::{Message, Role},
    Event,
};

/// Each of these must make the node close the connection.
fn bad_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let mut oversized = (u32::MAX / 2).to_be_bytes().to_vec();
    oversized.extend_from_slice(b"{}");
    let mut random = vec![0u8, 0, 0, 40];
    random.extend((0u8..40).map(|i| i.wrapping_mul(97).wrapping_add(13)));
    let wrong_shape = br#"{"type":"GOSSIP","msg":42}"#;
    let mut wrong_shape_frame = (wrong_shape.len() as u32).to_be_bytes().to_vec();
    wrong_shape_frame.extend_from_slice(wrong_shape);
    vec![
        ("random bytes", random),
        ("an oversized length", oversized),
        ("JSON of the wrong shape", wrong_shape_frame),
        (
            "a message before HELLO",
            Message::PeerListRequest {}.to_frame(),
        ),
        (
            "an old protocol version",
            Message::Hello {
                version: 0,
                role: Role::Peer,
                listen: "127.0.0.1:9".parse().unwrap(),
                challenge: None,
            }
            .to_frame(),
        ),
    ]
}

fn feed_bad_input(node: &mut Proc) {
    let addr = node.addr();
    for (what, bytes) in bad_inputs() {
        let mut client = RawClient::connect(addr);
        client.send_bytes(&bytes);
        assert!(
            client.closed_by_node(),
            "{what} did not close the connection to {addr}"
        );
    }
    node.wait_events(
        "one protocol_error per bad connection",
        Duration::from_secs(10),
        bad_inputs().len(),
        |e| matches!(e, Event::ProtocolError { .. }),
    );
    assert!(node.is_running(), "{} died on bad input", node.name);
}

#[test]
fn a_seed_survives_malformed_input_and_keeps_serving() {
    let mut net = Cluster::with_seeds(2, &["--gossip-count", "0"]);
    net.add_peer();
    feed_bad_input(&mut net.seeds[0]);

    // A well-behaved client is still served, on a new connection.
    let seed = net.seeds[0].addr();
    let node = FakeNode::new(Role::Peer);
    let mut client = node.greet(seed);
    client.send(&Message::PeerListRequest {});
    let Some(Message::PeerList { .. }) = client.recv() else {
        panic!("seed stopped answering after bad input");
    };
    // And a real peer can still join through it.
    net.add_peer();
}

#[test]
fn a_peer_survives_malformed_input_and_keeps_gossiping() {
    let mut net = Cluster::with_seeds(2, &["--gossip-count", "0"]);
    net.add_peer();
    let victim = net.add_peer_with(&[], false);
    feed_bad_input(&mut net.peers[victim]);

    // A hand-made neighbour links to it and its gossip is taken and logged.
    let node = FakeNode::new(Role::Peer);
    let me = node.addr;
    let mut client = node.greet(net.peers[victim].addr());
    client.send(&Message::gossip_signed_by(
        &node.identity,
        me,
        // A current time: older messages are refused as replays.
        format!("{}:127.0.0.1:still alive", common::unix_us() as f64 / 1e6),
        0,
    ));
    net.peers[victim].wait_event(
        "the gossip after bad input",
        Duration::from_secs(10),
        |e| matches!(e, Event::GossipReceived { msg, .. } if msg.ends_with("still alive")),
    );
    // It also reached the other peer, over the real overlay.
    net.peers[0].wait_event(
        "the forwarded gossip",
        Duration::from_secs(10),
        |e| matches!(e, Event::GossipReceived { msg, .. } if msg.ends_with("still alive")),
    );
}
