//! Property tests of the wire format: any message, encoded then decoded,
//! comes back equal, as JSON (`to_json`, `from_json`) and as frames
//! (`to_frame`, then `net::conn::codec()` on the receiving side), however the
//! stream is cut into reads. The fuzz targets (fuzz/) check the other
//! direction: arbitrary bytes in, no panics.
//!
//! Every variant's strategy is in [`message`]; a new variant or field goes
//! there (and [`variant`] fails to compile until it is added).

use std::net::{SocketAddr, SocketAddrV6};

use gossipnet::{
    net::conn::codec,
    proto::message::{Message, PeerEntry, PublicKey, Role, Signature, Statement, Verdict},
};
use proptest::{collection::vec, option, prelude::*};
use serde_json::Value;
use tokio_util::{bytes::BytesMut, codec::Decoder};

/// IPv4 and IPv6 addresses, any port, IPv6 with any scope id. The flow label
/// stays 0: the text form on the wire (`[ip%scope]:port`) has no place for
/// it, and nodes only ever see addresses parsed from text or read from their
/// own sockets.
fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        any::<std::net::SocketAddrV4>().prop_map(SocketAddr::V4),
        (any::<std::net::Ipv6Addr>(), any::<u16>(), any::<u32>())
            .prop_map(|(ip, port, scope)| SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope))),
    ]
}

fn addrs() -> impl Strategy<Value = Vec<SocketAddr>> {
    vec(socket_addr(), 0..6)
}

/// Any JSON value, nested up to 4 deep: big and negative integers, every
/// finite float (subnormals too), and strings of any Unicode, controls included.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |x| {
            serde_json::Number::from_f64(x).map(Value::Number)
        }),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Any 32 bytes: the wire carries keys as hex whatever they are; the seeds
/// judge them.
fn public_key() -> impl Strategy<Value = PublicKey> {
    any::<[u8; 32]>().prop_map(PublicKey)
}

fn signature() -> impl Strategy<Value = Signature> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(a, b)| {
        let mut bytes = [0; 64];
        bytes[..32].copy_from_slice(&a);
        bytes[32..].copy_from_slice(&b);
        Signature::from_bytes(bytes)
    })
}

fn statement() -> impl Strategy<Value = Statement> {
    (socket_addr(), any::<u64>(), signature()).prop_map(|(addr, at, signature)| Statement {
        addr,
        at,
        signature,
    })
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Seed), Just(Role::Peer)]
}

/// Any message: every variant, with arbitrary field values. Keep all
/// variants here, so that changing a message means changing one place.
fn message() -> impl Strategy<Value = Message> {
    let verdict = prop_oneof![
        Just(Verdict::Alive),
        Just(Verdict::Unresponsive),
        Just(Verdict::NotNeighbor),
    ];
    let peer_entry =
        (socket_addr(), any::<u32>()).prop_map(|(addr, degree)| PeerEntry { addr, degree });
    prop_oneof![
        (any::<u32>(), role(), socket_addr(), any::<Option<u64>>()).prop_map(
            |(version, role, listen, challenge)| Message::Hello {
                version,
                role,
                listen,
                challenge
            }
        ),
        (public_key(), signature())
            .prop_map(|(key, signature)| Message::HelloProof { key, signature }),
        (any::<u64>(), public_key())
            .prop_map(|(incarnation, key)| Message::RegisterRequest { incarnation, key }),
        Just(Message::RegisterAck {}),
        Just(Message::PeerListRequest {}),
        socket_addr().prop_map(|peer| Message::DialFailed { peer }),
        (vec(peer_entry, 0..6), any::<u64>(), any::<bool>()).prop_map(
            |(peers, total, you_registered)| Message::PeerList {
                seed_keys: Default::default(),
                peers,
                total,
                you_registered
            }
        ),
        (addrs(), any::<u64>(), any::<u64>()).prop_map(|(neighbors, incarnation, seq)| {
            Message::LinkReport {
                neighbors,
                incarnation,
                seq,
            }
        }),
        (
            any::<String>(),
            socket_addr(),
            any::<u64>(),
            vec(statement(), 0..4),
            addrs(),
            signature()
        )
            .prop_map(
                |(report, peer, incarnation, confirmers, unreachable, signature)| {
                    Message::DeadReport {
                        report,
                        peer,
                        incarnation,
                        confirmers,
                        unreachable,
                        signature,
                    }
                }
            ),
        (socket_addr(), any::<u64>(), option::of(socket_addr())).prop_map(
            |(peer, incarnation, replacement)| Message::DeadConfirmed {
                peer,
                incarnation,
                replacement
            }
        ),
        (socket_addr(), any::<u64>(), signature()).prop_map(|(peer, incarnation, signature)| {
            Message::Leave {
                peer,
                incarnation,
                signature,
            }
        }),
        (
            any::<u32>(),
            socket_addr(),
            option::of(any::<u64>()),
            socket_addr()
        )
            .prop_map(
                |(version, peer, incarnation, from)| Message::SuspectRequest {
                    version,
                    peer,
                    incarnation,
                    from
                }
            ),
        (
            socket_addr(),
            verdict,
            option::of(any::<u64>()),
            option::of(statement())
        )
            .prop_map(
                |(peer, verdict, incarnation, statement)| Message::SuspectResponse {
                    peer,
                    verdict,
                    incarnation,
                    statement
                }
            ),
        (any::<u32>(), any::<u64>()).prop_map(|(version, nonce)| Message::Probe { version, nonce }),
        (
            any::<u64>(),
            role(),
            socket_addr(),
            any::<u64>(),
            option::of(public_key())
        )
            .prop_map(
                |(nonce, role, listen, incarnation, key)| Message::ProbeReply {
                    nonce,
                    role,
                    listen,
                    incarnation,
                    key
                }
            ),
        Just(Message::StatusRequest {}),
        json_value().prop_map(|status| Message::StatusReply { status }),
        (
            any::<u32>(),
            socket_addr(),
            public_key(),
            public_key(),
            signature()
        )
            .prop_map(
                |(version, seed, old, new, signature)| Message::RekeyRequest {
                    version,
                    seed,
                    old,
                    new,
                    signature
                }
            ),
        (any::<bool>(), any::<String>())
            .prop_map(|(accepted, detail)| Message::RekeyReply { accepted, detail }),
        (
            any::<u32>(),
            proptest::option::of(socket_addr()),
            proptest::option::of(socket_addr()),
            signature()
        )
            .prop_map(|(version, add, remove, signature)| Message::SeedsRequest {
                version,
                add,
                remove,
                signature
            }),
        (any::<bool>(), any::<String>())
            .prop_map(|(accepted, detail)| Message::SeedsReply { accepted, detail }),
        (any::<u64>(), json_value()).prop_map(|(id, body)| Message::RaftRequest { id, body }),
        (any::<u64>(), json_value()).prop_map(|(id, body)| Message::RaftResponse { id, body }),
        any::<u64>().prop_map(|nonce| Message::Ping { nonce }),
        (any::<u64>(), any::<u64>(), addrs()).prop_map(|(nonce, incarnation, neighbors)| {
            Message::Pong {
                nonce,
                incarnation,
                neighbors,
            }
        }),
        (
            socket_addr(),
            public_key(),
            any::<String>(),
            signature(),
            any::<u32>()
        )
            .prop_map(|(origin, key, msg, signature, hops)| Message::Gossip {
                origin,
                key,
                msg,
                signature,
                hops
            }),
    ]
}

/// Each variant's index; no wildcard, so a new variant does not compile
/// until it has a number here and a strategy in [`message`].
fn variant(m: &Message) -> usize {
    match m {
        Message::Hello { .. } => 0,
        Message::RegisterRequest { .. } => 1,
        Message::RegisterAck {} => 2,
        Message::PeerListRequest {} => 3,
        Message::PeerList { .. } => 4,
        Message::LinkReport { .. } => 5,
        Message::DeadReport { .. } => 6,
        Message::DeadConfirmed { .. } => 7,
        Message::SuspectRequest { .. } => 8,
        Message::SuspectResponse { .. } => 9,
        Message::Probe { .. } => 10,
        Message::ProbeReply { .. } => 11,
        Message::StatusRequest {} => 12,
        Message::StatusReply { .. } => 13,
        Message::RaftRequest { .. } => 14,
        Message::RaftResponse { .. } => 15,
        Message::Ping { .. } => 16,
        Message::Pong { .. } => 17,
        Message::Gossip { .. } => 18,
        Message::HelloProof { .. } => 19,
        Message::RekeyRequest { .. } => 20,
        Message::RekeyReply { .. } => 21,
        Message::DialFailed { .. } => 22,
        Message::Leave { .. } => 23,
        Message::SeedsRequest { .. } => 24,
        Message::SeedsReply { .. } => 25,
    }
}
const VARIANTS: usize = 26;

/// Decodes every frame in `stream`, handing it to the codec in reads of the
/// given sizes (cycled; 0 = decode again with nothing new), and fails on
/// anything left over.
fn decode_all(stream: &[u8], reads: &[usize]) -> Vec<Message> {
    let mut codec = codec();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    let mut sizes = reads.iter().copied().cycle();
    while fed < stream.len() {
        let take = sizes.next().unwrap_or(usize::MAX).min(stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + take]);
        fed += take;
        while let Some(body) = codec.decode(&mut buf).expect("frames within the limit") {
            out.push(Message::from_json(&body).expect("a frame body we wrote"));
        }
    }
    assert_eq!(codec.decode_eof(&mut buf).expect("no partial frame"), None);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_message_survives_a_json_round_trip(m in message()) {
        let json = m.to_json();
        let back = Message::from_json(&json);
        prop_assert_eq!(back, Ok(m), "through {}", String::from_utf8_lossy(&json));
    }

    #[test]
    fn any_message_survives_a_frame_round_trip_through_the_codec(m in message()) {
        let mut frame = BytesMut::from(&m.to_frame()[..]);
        let body = codec().decode(&mut frame).expect("within the limit").expect("a whole frame");
        prop_assert!(frame.is_empty(), "{} bytes after the frame", frame.len());
        prop_assert_eq!(Message::from_json(&body), Ok(m));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn a_stream_of_messages_decodes_the_same_however_it_is_cut(
        msgs in vec(message(), 0..8),
        reads in vec(0usize..64, 1..16),
    ) {
        prop_assume!(reads.iter().any(|&r| r > 0));
        let stream: Vec<u8> = msgs.iter().flat_map(Message::to_frame).collect();
        prop_assert_eq!(decode_all(&stream, &reads), msgs);
    }
}

#[test]
fn the_strategy_generates_every_variant() {
    use proptest::{strategy::ValueTree, test_runner::TestRunner};
    let mut runner = TestRunner::deterministic();
    let strategy = message();
    let mut seen = [false; VARIANTS];
    for _ in 0..5000 {
        seen[variant(&strategy.new_tree(&mut runner).unwrap().current())] = true;
    }
    let missing: Vec<usize> = (0..VARIANTS).filter(|&i| !seen[i]).collect();
    assert!(missing.is_empty(), "variants never generated: {missing:?}");
}
