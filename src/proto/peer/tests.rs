use std::net::{IpAddr, SocketAddr};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::proto::evidence::report_bytes;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Peer `port`'s signing key in these tests; the peer under test is 6000.
fn identity(port: u16) -> Identity {
    let mut secret = [9; 32];
    secret[..2].copy_from_slice(&port.to_be_bytes());
    Identity::from_secret(secret)
}

fn seeds(n: u16) -> Vec<SocketAddr> {
    (0..n).map(|i| addr(5010 + i)).collect()
}

fn peer(n_seeds: u16, rng_seed: u64) -> PeerCore<ChaCha8Rng> {
    let settings = PeerSettings {
        gossip_count: 3,
        ..PeerSettings::default()
    };
    PeerCore::new(
        addr(6000),
        seeds(n_seeds),
        settings,
        42,
        identity(6000),
        ChaCha8Rng::seed_from_u64(rng_seed),
    )
}

fn drain(core: &mut PeerCore<ChaCha8Rng>) -> Vec<Output<PeerTimer>> {
    std::iter::from_fn(|| core.poll_output()).collect()
}

fn sends_of(outputs: &[Output<PeerTimer>], kind: &str) -> Vec<SocketAddr> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send { to, msg } if msg.kind() == kind => Some(*to),
            _ => None,
        })
        .collect()
}

fn gossip_sends(outputs: &[Output<PeerTimer>]) -> Vec<(SocketAddr, String, u32)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                to,
                msg: Message::Gossip { msg, hops, .. },
            } => Some((*to, msg.clone(), *hops)),
            _ => None,
        })
        .collect()
}

fn events(outputs: &[Output<PeerTimer>]) -> Vec<Event> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn now() -> Timestamp {
    Timestamp(1_740_466_800_000_000)
}

/// Starts `core` and acknowledges it from every seed it asked; returns
/// those seeds, with the outputs drained.
fn register(core: &mut PeerCore<ChaCha8Rng>) -> Vec<SocketAddr> {
    core.start(now());
    let asked = sends_of(&drain(core), "REGISTER_REQUEST");
    for seed in &asked {
        core.handle_message(*seed, Message::RegisterAck {}, now());
    }
    drain(core);
    asked
}

/// Registers `core` and answers its list requests with `peers`; returns the
/// outputs of the last step.
fn join_with(core: &mut PeerCore<ChaCha8Rng>, peers: &[PeerEntry]) -> Vec<Output<PeerTimer>> {
    core.start(now());
    finish_joining(core, peers)
}

/// [`join_with`] for a peer that has already sent its registrations.
fn finish_joining(core: &mut PeerCore<ChaCha8Rng>, peers: &[PeerEntry]) -> Vec<Output<PeerTimer>> {
    let asked = sends_of(&drain(core), "REGISTER_REQUEST");
    for seed in &asked {
        core.handle_link_up(*seed, Role::Seed, now());
        core.handle_message(*seed, Message::RegisterAck {}, now());
    }
    let list_requests = sends_of(&drain(core), "PEER_LIST_REQUEST");
    assert_eq!(list_requests.len(), asked.len());
    for seed in list_requests {
        core.handle_message(seed, peer_list(peers.to_vec()), now());
    }
    drain(core)
}

/// A seed's PEER_LIST of `peers`, all of them, saying we are registered
/// when we are among them.
fn peer_list(peers: Vec<PeerEntry>) -> Message {
    Message::PeerList {
        seed_keys: Default::default(),
        you_registered: peers.iter().any(|e| e.addr == addr(6000)),
        total: peers.len() as u64,
        peers,
    }
}

fn entry(port: u16, degree: u32) -> PeerEntry {
    PeerEntry {
        addr: addr(port),
        degree,
    }
}

/// A joined peer linked to `neighbors`, with its outputs drained.
fn linked_peer(neighbors: &[u16]) -> PeerCore<ChaCha8Rng> {
    let mut core = peer(3, 11);
    join_with(&mut core, &[]);
    for &p in neighbors {
        core.handle_link_up(addr(p), Role::Peer, now());
    }
    drain(&mut core);
    core
}

#[test]
fn registration_goes_to_a_majority_of_distinct_seeds() {
    for (n, quorum) in [(2, 2), (3, 2), (4, 3), (5, 3), (7, 4)] {
        let mut core = peer(n, u64::from(n));
        core.start(now());
        let mut asked = sends_of(&drain(&mut core), "REGISTER_REQUEST");
        asked.sort();
        asked.dedup();
        assert_eq!(asked.len(), quorum, "{n} seeds");
        assert!(asked.iter().all(|s| seeds(n).contains(s)));
    }
}

#[test]
fn registration_states_the_incarnation_and_backs_off_while_seeds_cannot_commit() {
    let mut core = peer(3, 9);
    core.start(now());
    let out = drain(&mut core);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Send {
            msg: Message::RegisterRequest { incarnation: 42, key },
            ..
        } if *key == identity(6000).public_key()
    )));
    let mut waits = Vec::new();
    let mut at = now();
    for _ in 0..6 {
        at = at + Duration::from_secs(10);
        core.handle_timer(PeerTimer::Retry, at);
        for e in events(&drain(&mut core)) {
            if let Event::RegisterWaiting { retry_ms, .. } = e {
                waits.push(retry_ms);
            }
        }
    }
    assert_eq!(waits, vec![2000, 4000, 8000, 8000, 8000, 8000]);
}

#[test]
fn peer_is_registered_only_after_a_majority_acknowledges() {
    let mut core = peer(3, 1);
    core.start(now());
    let asked = sends_of(&drain(&mut core), "REGISTER_REQUEST");
    core.handle_message(asked[0], Message::RegisterAck {}, now());
    let after_one = drain(&mut core);
    assert!(events(&after_one).is_empty(), "{after_one:?}");
    assert!(sends_of(&after_one, "PEER_LIST_REQUEST").is_empty());
    core.handle_message(asked[1], Message::RegisterAck {}, now());
    let after_two = drain(&mut core);
    assert!(events(&after_two)
        .iter()
        .any(|e| matches!(e, Event::Registered { seeds } if seeds.len() == 2)));
    assert_eq!(sends_of(&after_two, "PEER_LIST_REQUEST").len(), 2);
}

#[test]
fn an_ack_from_a_seed_never_asked_does_not_count() {
    let mut core = peer(5, 3);
    core.start(now());
    let asked = sends_of(&drain(&mut core), "REGISTER_REQUEST");
    let stranger = seeds(5).into_iter().find(|s| !asked.contains(s)).unwrap();
    core.handle_message(stranger, Message::RegisterAck {}, now());
    core.handle_message(asked[0], Message::RegisterAck {}, now());
    core.handle_message(asked[1], Message::RegisterAck {}, now());
    assert_eq!(core.registered_seeds().count(), 2);
    assert!(!core.registered_seeds().any(|s| s == stranger));
}

#[test]
fn a_silent_seed_is_retried_and_another_seed_is_asked() {
    let mut core = peer(3, 5);
    core.start(now());
    let asked = sends_of(&drain(&mut core), "REGISTER_REQUEST");
    core.handle_message(asked[0], Message::RegisterAck {}, now());
    drain(&mut core);
    core.handle_timer(PeerTimer::Retry, now() + Duration::from_secs(1));
    let retry = drain(&mut core);
    let mut resent = sends_of(&retry, "REGISTER_REQUEST");
    resent.sort();
    // The silent seed again, plus the third seed; never the one that answered.
    assert_eq!(resent.len(), 2, "{retry:?}");
    assert!(!resent.contains(&asked[0]));
    assert!(events(&retry).iter().any(|e| matches!(
        e,
        Event::RegisterWaiting {
            answered: 1,
            needed: 2,
            seeds: 3,
            retry_ms: 2000,
            ..
        }
    )));
}

#[test]
fn joining_peer_opens_at_least_one_link_when_other_peers_exist() {
    for rng_seed in 0..50 {
        let mut core = peer(3, rng_seed);
        let out = join_with(&mut core, &[entry(6001, 0), entry(6002, 2), entry(6000, 1)]);
        let connects: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                Output::Connect(a) => Some(*a),
                _ => None,
            })
            .collect();
        assert!(!connects.is_empty(), "seed {rng_seed}: no link");
        assert!(!connects.contains(&addr(6000)), "linked to itself");
    }
}

#[test]
fn the_union_of_peer_lists_is_used() {
    let mut core = peer(3, 8);
    let asked = register(&mut core);
    // Each seed knows one different peer; with max_links 1 we would miss
    // nothing only if both lists are merged.
    core.handle_message(asked[0], peer_list(vec![entry(6001, 1)]), now());
    core.handle_message(asked[1], peer_list(vec![entry(6002, 1)]), now());
    let out = drain(&mut core);
    let chosen = events(&out)
        .into_iter()
        .find_map(|e| match e {
            Event::NeighborsChosen { candidates, .. } => Some(candidates),
            _ => None,
        })
        .unwrap();
    assert_eq!(chosen, 2);
    assert_eq!(
        events(&out)
            .iter()
            .filter(|e| matches!(e, Event::PeerList { .. }))
            .count(),
        2
    );
}

#[test]
fn the_list_retry_is_due_one_interval_after_registering_even_after_backoff() {
    let mut core = peer(3, 8);
    core.start(now());
    let asked = sends_of(&drain(&mut core), "REGISTER_REQUEST");
    // Two slow rounds push the registration retry out to 4 s.
    core.handle_timer(PeerTimer::Retry, now() + Duration::from_secs(1));
    core.handle_timer(PeerTimer::Retry, now() + Duration::from_secs(3));
    drain(&mut core);
    let registered_at = now() + Duration::from_secs(4);
    for seed in &asked {
        core.handle_message(*seed, Message::RegisterAck {}, registered_at);
    }
    let out = drain(&mut core);
    let list_retry = registered_at + PeerSettings::default().retry_interval;
    assert!(
        out.contains(&Output::Timer {
            timer: PeerTimer::Retry,
            at: list_retry
        }),
        "{out:?}"
    );
    // A Retry firing before that deadline is stale and does nothing.
    core.handle_timer(PeerTimer::Retry, registered_at + Duration::from_millis(500));
    assert!(drain(&mut core).is_empty());
    core.handle_timer(PeerTimer::Retry, list_retry);
    assert_eq!(
        sends_of(&drain(&mut core), "PEER_LIST_REQUEST").len(),
        3,
        "asked every seed"
    );
}

#[test]
fn a_seed_that_never_sends_its_list_does_not_stall_the_join() {
    let mut core = peer(3, 8);
    let asked = register(&mut core);
    core.handle_message(asked[0], peer_list(vec![entry(6001, 1)]), now());
    assert!(!core.is_joined());
    core.handle_timer(PeerTimer::Retry, now() + Duration::from_secs(1));
    let out = drain(&mut core);
    assert!(out.contains(&Output::Connect(addr(6001))), "{out:?}");
}

#[test]
fn with_no_list_at_all_the_peer_asks_every_seed() {
    let mut core = peer(3, 8);
    let asked = register(&mut core);
    core.handle_timer(PeerTimer::Retry, now() + Duration::from_secs(1));
    let mut again = sends_of(&drain(&mut core), "PEER_LIST_REQUEST");
    again.sort();
    assert_eq!(again, seeds(3));
    // A seed we did not register with may answer now.
    let other = seeds(3).into_iter().find(|s| !asked.contains(s)).unwrap();
    core.handle_message(other, peer_list(vec![]), now());
    assert!(events(&drain(&mut core))
        .iter()
        .any(|e| matches!(e, Event::PeerList { .. })));
}

#[test]
fn first_peer_joins_alone_and_looks_for_peers_again() {
    let mut core = peer(3, 2);
    let out = join_with(&mut core, &[]);
    assert!(events(&out)
        .iter()
        .any(|e| matches!(e, Event::Joined { neighbors } if neighbors.is_empty())));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Timer {
            timer: PeerTimer::Lonely,
            ..
        }
    )));
    core.handle_timer(PeerTimer::Lonely, now() + Duration::from_secs(2));
    let again = drain(&mut core);
    assert_eq!(sends_of(&again, "PEER_LIST_REQUEST").len(), 2);
}

#[test]
fn join_completes_when_every_chosen_link_has_resolved() {
    let mut core = peer(3, 4);
    let out = join_with(&mut core, &[entry(6001, 1)]);
    assert!(out.contains(&Output::Connect(addr(6001))));
    assert!(!core.is_joined());
    core.handle_link_down(addr(6001), now());
    let out = drain(&mut core);
    assert!(core.is_joined());
    assert!(events(&out)
        .iter()
        .any(|e| matches!(e, Event::Joined { neighbors } if neighbors.is_empty())));
}

/// The LINK_REPORTs among `outputs`: to whom, with which neighbours.
fn link_reports(outputs: &[Output<PeerTimer>]) -> Vec<(SocketAddr, Vec<SocketAddr>)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                to,
                msg: Message::LinkReport { neighbors, .. },
            } => Some((*to, neighbors.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn links_are_reported_to_one_registered_seed() {
    let mut core = peer(3, 4);
    join_with(&mut core, &[entry(6001, 1)]);
    core.handle_link_up(addr(6001), Role::Peer, now());
    let reports = link_reports(&drain(&mut core));
    assert_eq!(reports.len(), 1, "{reports:?}");
    let (to, neighbors) = &reports[0];
    assert!(core.registered_seeds().any(|s| s == *to), "{to}");
    assert_eq!(neighbors, &vec![addr(6001)]);
    // Later changes go to the same seed, so they reach the log in order.
    core.handle_link_up(addr(6002), Role::Peer, now());
    let later = link_reports(&drain(&mut core));
    assert_eq!(later, vec![(*to, vec![addr(6001), addr(6002)])]);
}

/// The (incarnation, seq) of each LINK_REPORT among `outputs`.
fn report_numbers(outputs: &[Output<PeerTimer>]) -> Vec<(u64, u64)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                msg:
                    Message::LinkReport {
                        incarnation, seq, ..
                    },
                ..
            } => Some((*incarnation, *seq)),
            _ => None,
        })
        .collect()
}

#[test]
fn each_link_report_is_numbered_after_the_last_one_even_in_a_new_life() {
    let mut core = peer(3, 4);
    join_with(&mut core, &[entry(6001, 1)]);
    let life = core.incarnation();
    core.handle_link_up(addr(6001), Role::Peer, now());
    core.handle_link_up(addr(6002), Role::Peer, now());
    core.handle_link_down(addr(6002), now());
    assert_eq!(
        report_numbers(&drain(&mut core)),
        vec![(life, 1), (life, 2), (life, 3)]
    );
    // Removed while alive: a new life, whose reports go on from there.
    let seed = core.registered_seeds().next().unwrap();
    core.handle_message(
        seed,
        Message::DeadConfirmed {
            peer: addr(6000),
            incarnation: life,
            replacement: None,
        },
        now(),
    );
    assert!(core.incarnation() > life);
    finish_joining(&mut core, &[entry(6001, 1)]);
    core.handle_link_up(addr(6001), Role::Peer, now());
    assert_eq!(
        report_numbers(&drain(&mut core)),
        vec![(core.incarnation(), 4)]
    );
}

#[test]
fn when_the_report_seed_drops_another_registered_seed_gets_the_whole_set() {
    let mut core = peer(3, 4);
    join_with(&mut core, &[entry(6001, 1)]);
    core.handle_link_up(addr(6001), Role::Peer, now());
    let (first, _) = link_reports(&drain(&mut core))[0].clone();
    core.handle_link_down(first, now());
    let reports = link_reports(&drain(&mut core));
    assert_eq!(reports.len(), 1, "{reports:?}");
    let (second, neighbors) = &reports[0];
    assert_ne!(*second, first);
    assert!(core.registered_seeds().any(|s| s == *second), "{second}");
    assert_eq!(neighbors, &vec![addr(6001)]);
}

#[test]
fn with_no_registered_seed_in_reach_the_report_waits_for_one() {
    let mut core = peer(3, 4);
    join_with(&mut core, &[entry(6001, 1)]);
    let registered: Vec<_> = core.registered_seeds().collect();
    for seed in &registered {
        core.handle_link_down(*seed, now());
    }
    drain(&mut core);
    core.handle_link_up(addr(6001), Role::Peer, now());
    assert_eq!(link_reports(&drain(&mut core)), vec![]);
    core.handle_link_up(registered[1], Role::Seed, now());
    assert_eq!(
        link_reports(&drain(&mut core)),
        vec![(registered[1], vec![addr(6001)])]
    );
}

#[test]
fn gossip_starts_with_a_neighbour_and_stops_at_the_count() {
    let mut core = peer(3, 6);
    join_with(&mut core, &[entry(6001, 1)]);
    core.handle_link_up(addr(6001), Role::Peer, now());
    let out = drain(&mut core);
    assert!(out.contains(&Output::Timer {
        timer: PeerTimer::Gossip,
        at: now()
    }));
    let mut created = Vec::new();
    let mut at = now();
    for _ in 0..5 {
        core.handle_timer(PeerTimer::Gossip, at);
        let out = drain(&mut core);
        created.extend(gossip_sends(&out));
        at = at + Duration::from_secs(5);
    }
    let texts: Vec<_> = created.iter().map(|(_, m, _)| m.clone()).collect();
    assert_eq!(texts.len(), 3, "gossip_count is 3: {texts:?}");
    assert_eq!(texts[0], "1740466800.000000:127.0.0.1:1");
    assert_eq!(texts[2], "1740466810.000000:127.0.0.1:3");
    assert!(created
        .iter()
        .all(|(to, _, hops)| *to == addr(6001) && *hops == 0));
}

#[test]
fn no_gossip_is_created_without_a_neighbour() {
    let mut core = peer(3, 6);
    join_with(&mut core, &[]);
    core.handle_timer(PeerTimer::Gossip, now());
    assert!(gossip_sends(&drain(&mut core)).is_empty());
    assert_eq!(core.stats().created, 0);
}

#[test]
fn first_receipt_is_forwarded_to_every_neighbour_but_the_sender() {
    let mut core = linked_peer(&[6001, 6002, 6003]);
    core.handle_message(
        addr(6002),
        Message::gossip_signed_by(&identity(6009), addr(6009), "1740466800.0:127.0.0.9:1", 4),
        now(),
    );
    let out = drain(&mut core);
    let mut targets: Vec<_> = gossip_sends(&out).into_iter().map(|(to, ..)| to).collect();
    targets.sort();
    assert_eq!(targets, vec![addr(6001), addr(6003)]);
    assert!(gossip_sends(&out).iter().all(|(_, _, hops)| *hops == 5));
    assert!(events(&out).contains(&Event::GossipReceived {
        msg: "1740466800.0:127.0.0.9:1".into(),
        from: addr(6002),
        origin: addr(6009),
        hops: 5
    }));
}

#[test]
fn a_duplicate_is_dropped_and_not_reported() {
    let mut core = linked_peer(&[6001, 6002]);
    let gossip =
        Message::gossip_signed_by(&identity(6009), addr(6009), "1740466800.0:127.0.0.9:1", 0);
    core.handle_message(addr(6001), gossip.clone(), now());
    drain(&mut core);
    core.handle_message(addr(6002), gossip.clone(), now());
    core.handle_message(addr(6001), gossip, now());
    let out = drain(&mut core);
    assert!(out.is_empty(), "duplicate produced {out:?}");
    assert_eq!(core.stats().duplicates_dropped, 2);
    assert_eq!(core.stats().received_first, 1);
}

#[test]
fn a_replay_older_than_the_message_list_keeps_entries_is_refused() {
    let mut core = linked_peer(&[6001, 6002]);
    let created = now().as_secs_f64() - ML_RETENTION.as_secs_f64() - 1.0;
    core.handle_message(
        addr(6001),
        Message::gossip_signed_by(
            &identity(6009),
            addr(6009),
            format!("{created:.6}:127.0.0.9:1"),
            0,
        ),
        now(),
    );
    assert!(drain(&mut core).is_empty(), "a stale message was delivered");
    assert_eq!(core.stats().stale_dropped, 1);
    assert_eq!(core.stats().received_first, 0);
    assert!(core.message_list().is_empty(), "a stale message took room");
}

#[test]
fn equal_texts_from_two_origins_are_both_delivered() {
    let mut core = linked_peer(&[6001, 6002]);
    for origin in [6001, 6002] {
        core.handle_message(
            addr(origin),
            Message::gossip_signed_by(
                &identity(addr(origin).port()),
                addr(origin),
                "1740466800.0:127.0.0.1:1",
                0,
            ),
            now(),
        );
    }
    assert_eq!(core.stats().received_first, 2);
    assert_eq!(core.stats().duplicates_dropped, 0);
}

#[test]
fn own_message_coming_back_is_a_duplicate() {
    let mut core = linked_peer(&[6001, 6002]);
    core.handle_timer(PeerTimer::Gossip, now());
    let sent = gossip_sends(&drain(&mut core));
    let (_, text, _) = sent[0].clone();
    core.handle_message(
        addr(6002),
        Message::gossip_signed_by(&identity(6000), addr(6000), text, 3),
        now(),
    );
    assert!(drain(&mut core).is_empty());
}

#[test]
fn a_typed_line_is_gossiped_to_all_neighbours() {
    let mut core = linked_peer(&[6001, 6002]);
    core.handle_user_line("  hello world \n", now());
    let out = drain(&mut core);
    let sent = gossip_sends(&out);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].1, "1740466800.000000:127.0.0.1:hello world");
    core.handle_user_line("   ", now());
    assert!(drain(&mut core).is_empty(), "a blank line was gossiped");
}

#[test]
fn an_overlong_typed_line_is_refused_not_sent() {
    let mut core = linked_peer(&[6001]);
    core.handle_user_line(&"x".repeat(MAX_GOSSIP_TEXT + 1), now());
    let out = drain(&mut core);
    assert!(gossip_sends(&out).is_empty());
    assert!(matches!(events(&out)[..], [Event::UserLineRefused { .. }]));
}

#[test]
fn a_chosen_neighbour_that_turns_out_to_be_a_seed_does_not_stall_the_join() {
    let mut core = peer(3, 4);
    join_with(&mut core, &[entry(6001, 1)]);
    core.handle_link_up(addr(6001), Role::Seed, now());
    let out = drain(&mut core);
    assert!(core.is_joined());
    assert!(out.contains(&Output::Close(addr(6001))));
    assert_eq!(core.neighbors().count(), 0);
}

#[test]
fn unexpected_message_closes_only_that_connection() {
    let mut core = linked_peer(&[6001]);
    core.handle_message(
        addr(6001),
        Message::RegisterRequest {
            incarnation: 1,
            key: identity(6001).public_key(),
        },
        now(),
    );
    let out = drain(&mut core);
    assert!(out.contains(&Output::Close(addr(6001))));
    assert!(matches!(
        events(&out)[0],
        Event::ProtocolError { remote, .. } if remote == addr(6001)
    ));
    // Gossip from a connection that is not an overlay link is refused too.
    core.handle_message(
        addr(6009),
        Message::gossip_signed_by(&identity(6009), addr(6009), "x", 0),
        now(),
    );
    assert!(drain(&mut core).contains(&Output::Close(addr(6009))));
}

#[test]
fn losing_the_last_neighbour_makes_the_peer_look_again() {
    let mut core = linked_peer(&[6001]);
    core.handle_link_down(addr(6001), now());
    let out = drain(&mut core);
    assert!(events(&out).contains(&Event::NeighborDown { peer: addr(6001) }));
    core.handle_timer(PeerTimer::Lonely, now() + Duration::from_secs(2));
    assert_eq!(sends_of(&drain(&mut core), "PEER_LIST_REQUEST").len(), 2);
}

#[test]
fn a_peer_with_neighbours_ignores_the_lonely_timer() {
    let mut core = linked_peer(&[6001]);
    core.handle_timer(PeerTimer::Lonely, now() + Duration::from_secs(2));
    assert!(sends_of(&drain(&mut core), "PEER_LIST_REQUEST").is_empty());
}

#[test]
fn same_rng_seed_gives_the_same_choices() {
    let peers: Vec<_> = (1..30).map(|i| entry(6000 + i, u32::from(i % 5))).collect();
    let run = |s| {
        let mut core = peer(5, s);
        join_with(&mut core, &peers)
    };
    assert_eq!(run(42), run(42));
}

fn pings_to(outputs: &[Output<PeerTimer>]) -> Vec<(SocketAddr, u64)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                to,
                msg: Message::Ping { nonce },
            } => Some((*to, *nonce)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_neighbour_is_pinged_at_once_and_checked_every_interval() {
    let mut core = peer(3, 21);
    join_with(&mut core, &[]);
    core.handle_link_up(addr(6001), Role::Peer, now());
    let out = drain(&mut core);
    assert_eq!(pings_to(&out).len(), 1);
    let interval = PeerSettings::default().ping_interval;
    assert!(out.contains(&Output::Timer {
        timer: PeerTimer::Ping,
        at: now() + interval
    }));
    core.handle_timer(PeerTimer::Ping, now() + interval);
    let out = drain(&mut core);
    assert_eq!(pings_to(&out).len(), 1);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Timer {
            timer: PeerTimer::Ping,
            ..
        }
    )));
}

#[test]
fn a_ping_is_answered_with_the_incarnation_and_the_neighbours() {
    let mut core = linked_peer(&[6001, 6002]);
    core.handle_message(addr(6001), Message::Ping { nonce: 77 }, now());
    let out = drain(&mut core);
    assert_eq!(
        out,
        vec![Output::Send {
            to: addr(6001),
            msg: Message::Pong {
                nonce: 77,
                incarnation: 42,
                neighbors: vec![addr(6001), addr(6002)],
            }
        }]
    );
}

#[test]
fn a_missed_ping_starts_a_suspicion_that_any_pong_clears() {
    let mut core = linked_peer(&[6001, 6002]);
    let interval = PeerSettings::default().ping_interval;
    // 6002 answers its first ping; 6001 stays silent.
    core.handle_message(
        addr(6002),
        Message::Pong {
            nonce: 0,
            incarnation: 5,
            neighbors: vec![addr(6000)],
        },
        now(),
    );
    core.handle_timer(PeerTimer::MissCheck, now() + interval / 2);
    let suspected: Vec<_> = events(&drain(&mut core))
        .into_iter()
        .filter_map(|e| match e {
            Event::SuspicionStarted { peer, .. } => Some(peer),
            _ => None,
        })
        .collect();
    assert_eq!(suspected, vec![addr(6001)]);
    // A second miss does not start a second suspicion (6002 keeps answering).
    core.handle_timer(PeerTimer::Ping, now() + interval);
    core.handle_message(
        addr(6002),
        Message::Pong {
            nonce: 0,
            incarnation: 5,
            neighbors: vec![addr(6000)],
        },
        now() + interval,
    );
    core.handle_timer(PeerTimer::MissCheck, now() + interval * 3 / 2);
    assert!(!events(&drain(&mut core))
        .iter()
        .any(|e| matches!(e, Event::SuspicionStarted { .. })));
    // A late PONG, to any ping, clears it.
    core.handle_message(
        addr(6001),
        Message::Pong {
            nonce: 1,
            incarnation: 3,
            neighbors: vec![addr(6000), addr(6005)],
        },
        now(),
    );
    assert_eq!(
        events(&drain(&mut core)),
        vec![Event::SuspicionCleared { peer: addr(6001) }]
    );
    assert_eq!(
        core.liveness(&addr(6001)).unwrap().neighbors,
        [addr(6000), addr(6005)].into()
    );
}

#[test]
fn pings_stop_when_the_last_neighbour_goes() {
    let mut core = linked_peer(&[6001]);
    core.handle_link_down(addr(6001), now());
    drain(&mut core);
    core.handle_timer(PeerTimer::Ping, now() + Duration::from_secs(13));
    let out = drain(&mut core);
    assert!(pings_to(&out).is_empty());
    assert!(!out.iter().any(|o| matches!(
        o,
        Output::Timer {
            timer: PeerTimer::Ping,
            ..
        }
    )));
}

#[test]
fn a_confirmed_death_from_the_seeds_drops_the_neighbour_once() {
    let mut core = linked_peer(&[6001, 6002]);
    let confirmed = Message::DeadConfirmed {
        peer: addr(6001),
        incarnation: 4,
        replacement: None,
    };
    for seed in seeds(3) {
        core.handle_message(seed, confirmed.clone(), now());
    }
    let out = drain(&mut core);
    assert_eq!(
        events(&out)
            .iter()
            .filter(|e| matches!(e, Event::DeadConfirmed { .. }))
            .count(),
        1,
        "logged once for three seeds"
    );
    assert_eq!(core.neighbors().collect::<Vec<_>>(), vec![addr(6002)]);
    assert_eq!(
        out.iter()
            .filter(|o| **o == Output::Close(addr(6001)))
            .count(),
        1
    );
}

#[test]
fn a_death_confirmed_by_a_non_seed_is_refused() {
    let mut core = linked_peer(&[6001, 6002]);
    core.handle_message(
        addr(6002),
        Message::DeadConfirmed {
            peer: addr(6001),
            incarnation: 4,
            replacement: None,
        },
        now(),
    );
    let out = drain(&mut core);
    assert!(
        out.contains(&Output::Close(addr(6002))),
        "the forger's link stays"
    );
    assert!(
        !out.contains(&Output::Close(addr(6001))),
        "a peer's word removed a neighbour"
    );
}

/// `core`'s PONG-learnt view: `from` answers with `neighbors`.
fn pong(core: &mut PeerCore<ChaCha8Rng>, from: u16, incarnation: u64, neighbors: &[u16]) {
    core.handle_message(
        addr(from),
        Message::Pong {
            nonce: 0,
            incarnation,
            neighbors: neighbors.iter().map(|p| addr(*p)).collect(),
        },
        now(),
    );
}

fn queries(outputs: &[Output<PeerTimer>]) -> Vec<(SocketAddr, Message)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Query { to, query, .. } => Some((*to, query.clone())),
            _ => None,
        })
        .collect()
}

/// The asked peer `to` answers `verdict`, as an honest peer would: with
/// the suspect's incarnation (the asker's, or 9 as most tests' PONGs give
/// it), and its signed statement when it found the suspect unresponsive.
fn answer(
    core: &mut PeerCore<ChaCha8Rng>,
    (to, query): (SocketAddr, Message),
    verdict: Result<Verdict, &str>,
) -> Vec<Output<PeerTimer>> {
    let Message::SuspectRequest {
        peer, incarnation, ..
    } = query
    else {
        panic!("not a SUSPECT_REQUEST: {query:?}");
    };
    let incarnation = incarnation.unwrap_or(9);
    let result = verdict
        .map(|verdict| Message::SuspectResponse {
            peer,
            verdict,
            incarnation: Some(incarnation),
            statement: (verdict == Verdict::Unresponsive)
                .then(|| identity(to.port()).state_unresponsive(to, peer, incarnation, now())),
        })
        .map_err(|e| QueryError::NoConnection(e.to_string()));
    core.handle_query_result(to, query, result, now());
    drain(core)
}

fn reports(outputs: &[Output<PeerTimer>]) -> Vec<(SocketAddr, Message)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send { to, msg } if msg.kind() == "DEAD_REPORT" => Some((*to, msg.clone())),
            _ => None,
        })
        .collect()
}

/// A peer, the questions it asked, and all its outputs.
type AfterLoss = (
    PeerCore<ChaCha8Rng>,
    Vec<(SocketAddr, Message)>,
    Vec<Output<PeerTimer>>,
);

/// A peer linked to 6001 and 6002 that loses its link to 6001, which last
/// named `its_neighbors`; returns it with the questions it asked, and the
/// outputs of the loss.
fn after_losing_6001(its_neighbors: &[u16]) -> AfterLoss {
    let mut core = linked_peer(&[6001, 6002]);
    pong(&mut core, 6001, 9, its_neighbors);
    drain(&mut core);
    core.handle_link_down(addr(6001), now());
    let out = drain(&mut core);
    (core, queries(&out), out)
}

#[test]
fn a_lost_link_asks_the_suspects_other_neighbours_and_a_majority_sends_the_exact_report() {
    let (mut core, asked, out) = after_losing_6001(&[6000, 6003, 6004]);
    assert!(events(&out).contains(&Event::SuspicionStarted {
        peer: addr(6001),
        reason: "connection lost".into()
    }));
    assert_eq!(
        asked.iter().map(|(to, _)| *to).collect::<Vec<_>>(),
        vec![addr(6003), addr(6004)]
    );
    assert!(reports(&out).is_empty(), "1 of 3 is no majority");
    let out = answer(&mut core, asked[0].clone(), Ok(Verdict::Unresponsive));
    let sent = reports(&out);
    // To every seed it registered with.
    assert_eq!(sent.len(), 2);
    let (report, _) = sent[0].1.report_content(addr(6000)).unwrap();
    assert_eq!(
        report.report,
        format!(
            "Dead Node:127.0.0.1:6001:{:.6}:127.0.0.1",
            now().as_secs_f64()
        )
    );
    assert_eq!((report.peer, report.incarnation), (addr(6001), 9));
    let by: Vec<SocketAddr> = report.confirmers.iter().map(|s| s.addr).collect();
    assert_eq!(by, vec![addr(6000), addr(6003)]);
    assert!(report.unreachable.is_empty());
    assert!(events(&out).iter().any(|e| matches!(
        e,
        Event::DeadReportSent { report: r, .. } if r == report.report
    )));
    // The third answer sends nothing more.
    assert!(reports(&answer(
        &mut core,
        asked[1].clone(),
        Ok(Verdict::Unresponsive)
    ))
    .is_empty());
}

/// A peer whose neighbour 6001 had no other neighbour loses its link to
/// it; returns the peer and the outputs of the loss.
fn losing_6001_whose_only_neighbour_it_was() -> (PeerCore<ChaCha8Rng>, Vec<Output<PeerTimer>>) {
    let mut core = linked_peer(&[6001]);
    pong(&mut core, 6001, 9, &[6000]);
    drain(&mut core);
    core.handle_link_down(addr(6001), now());
    let out = drain(&mut core);
    (core, out)
}

#[test]
fn a_suspect_whose_only_neighbour_was_this_peer_is_reported_at_once() {
    let (_, out) = losing_6001_whose_only_neighbour_it_was();
    assert!(queries(&out).is_empty());
    assert_eq!(reports(&out).len(), 2);
}

#[test]
fn an_answer_that_the_suspect_is_alive_clears_the_suspicion_and_redials_it() {
    let (mut core, asked, _) = after_losing_6001(&[6000, 6003, 6004]);
    let out = answer(&mut core, asked[0].clone(), Ok(Verdict::Alive));
    assert!(events(&out).contains(&Event::SuspicionCleared { peer: addr(6001) }));
    assert!(out.contains(&Output::Connect(addr(6001))));
    assert!(reports(&answer(
        &mut core,
        asked[1].clone(),
        Ok(Verdict::Unresponsive)
    ))
    .is_empty());
}

#[test]
fn a_neighbour_that_cannot_be_asked_is_named_unreachable_in_the_report() {
    let (mut core, asked, _) = after_losing_6001(&[6000, 6003]);
    let out = answer(&mut core, asked[0].clone(), Err("connection refused"));
    let sent = reports(&out);
    assert!(matches!(
        &sent[0].1,
        Message::DeadReport { confirmers, unreachable, .. }
            if confirmers.len() == 1 && confirmers[0].addr == addr(6000)
                && *unreachable == vec![addr(6003)]
    ));
}

#[test]
fn the_dead_report_carries_the_collected_statements_and_the_reporters_signature() {
    let (mut core, asked, _) = after_losing_6001(&[6000, 6003, 6004]);
    let out = answer(&mut core, asked[0].clone(), Ok(Verdict::Unresponsive));
    let sent = reports(&out);
    let (content, signature) = sent[0].1.report_content(addr(6000)).unwrap();
    // 6003's statement exactly as it answered, and this peer's own.
    let theirs = identity(6003).state_unresponsive(addr(6003), addr(6001), 9, now());
    assert_eq!(content.confirmers[1], theirs);
    let own = &content.confirmers[0];
    assert_eq!((own.addr, own.at), (addr(6000), now().as_micros()));
    let key = identity(6000).public_key();
    assert_eq!(key.verify_statement(addr(6001), 9, own), Ok(()));
    assert_eq!(key.verify(&report_bytes(&content), signature), Ok(()));
    // Every seed gets the same signed report.
    assert_eq!(sent[0].1, sent[1].1);
}

#[test]
fn an_unresponsive_answer_without_its_own_statement_counts_as_unreachable() {
    let asked_one = addr(6003);
    let by = |port: u16, incarnation| {
        identity(port).state_unresponsive(addr(port), addr(6001), incarnation, now())
    };
    let cases = [
        // No statement at all.
        (Some(9), None),
        // Another peer's statement.
        (Some(9), Some(by(6004, 9))),
        // Its own, about another life of the suspect than the reported one.
        (Some(8), Some(by(6003, 8))),
    ];
    for (incarnation, statement) in cases {
        let (mut core, asked, _) = after_losing_6001(&[6000, 6003]);
        let (to, query) = asked[0].clone();
        assert_eq!(to, asked_one);
        let response = Message::SuspectResponse {
            peer: addr(6001),
            verdict: Verdict::Unresponsive,
            incarnation,
            statement,
        };
        core.handle_query_result(to, query, Ok(response), now());
        let sent = reports(&drain(&mut core));
        assert!(matches!(
            &sent[0].1,
            Message::DeadReport { confirmers, unreachable, .. }
                if confirmers.len() == 1 && *unreachable == vec![addr(6003)]
        ));
    }
}

#[test]
fn an_unresponsive_verdict_is_signed_and_verifies_for_the_suspect_and_its_life() {
    let (mut core, later, out) = asked_about_a_silent_6001();
    let Some(Output::Reply {
        msg:
            Message::SuspectResponse {
                verdict: Verdict::Unresponsive,
                incarnation: Some(9),
                statement: Some(statement),
                ..
            },
        ..
    }) = out.iter().find(|o| matches!(o, Output::Reply { .. }))
    else {
        panic!("no signed answer: {out:?}");
    };
    assert_eq!(
        (statement.addr, statement.at),
        (addr(6000), later.as_micros())
    );
    let key = identity(6000).public_key();
    assert_eq!(key.verify_statement(addr(6001), 9, statement), Ok(()));
    assert!(key.verify_statement(addr(6002), 9, statement).is_err());
    // Not signed when there is nothing to vouch for.
    let out = suspect_request(&mut core, 8, 6099);
    assert!(matches!(
        &out[..],
        [Output::Reply {
            msg: Message::SuspectResponse {
                verdict: Verdict::NotNeighbor,
                statement: None,
                ..
            },
            ..
        }]
    ));
}

#[test]
fn missed_pings_up_to_the_limit_start_the_questions() {
    let mut core = linked_peer(&[6001, 6002]);
    pong(&mut core, 6001, 9, &[6000, 6003]);
    pong(&mut core, 6002, 9, &[6000]);
    drain(&mut core);
    let interval = PeerSettings::default().ping_interval;
    for k in 1..=3u32 {
        core.handle_timer(PeerTimer::Ping, now() + interval * k);
        pong(&mut core, 6002, 9, &[6000]);
        core.handle_timer(PeerTimer::MissCheck, now() + interval * k + interval / 2);
        let out = drain(&mut core);
        let asked = queries(&out);
        if k < 3 {
            assert!(asked.is_empty(), "asked after {k} misses");
        } else {
            assert_eq!(asked.len(), 1, "after 3 misses");
            assert_eq!(asked[0].0, addr(6003));
        }
        if k == 1 {
            assert!(events(&out)
                .iter()
                .any(|e| matches!(e, Event::SuspicionStarted { peer, .. } if *peer == addr(6001))));
        }
    }
}

fn suspect_request(
    core: &mut PeerCore<ChaCha8Rng>,
    token: u64,
    suspect: u16,
) -> Vec<Output<PeerTimer>> {
    core.handle_query(
        token,
        Message::SuspectRequest {
            version: PROTOCOL_VERSION,
            peer: addr(suspect),
            incarnation: Some(9),
            from: addr(6009),
        },
        now(),
    );
    drain(core)
}

fn replies(outputs: &[Output<PeerTimer>]) -> Vec<(u64, Verdict)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Reply {
                token,
                msg: Message::SuspectResponse { verdict, .. },
            } => Some((*token, *verdict)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_check_for_another_peer_pings_the_suspect_and_answers_alive_on_its_pong() {
    let mut core = linked_peer(&[6001, 6002]);
    pong(&mut core, 6001, 9, &[6000]);
    drain(&mut core);
    let out = suspect_request(&mut core, 7, 6001);
    assert_eq!(pings_to(&out).len(), 1, "a fresh check");
    assert!(replies(&out).is_empty());
    pong(&mut core, 6001, 9, &[6000]);
    assert_eq!(replies(&drain(&mut core)), vec![(7, Verdict::Alive)]);
}

/// A peer linked to 6001 (incarnation 9) and 6002, asked about 6001 with
/// token 7, whose check runs out: the peer, the time it ran out, and the
/// outputs then.
fn asked_about_a_silent_6001() -> (PeerCore<ChaCha8Rng>, Timestamp, Vec<Output<PeerTimer>>) {
    let interval = PeerSettings::default().ping_interval;
    let mut core = linked_peer(&[6001, 6002]);
    pong(&mut core, 6001, 9, &[6000]);
    drain(&mut core);
    suspect_request(&mut core, 7, 6001);
    let later = now() + ping_timeout(interval);
    core.handle_timer(PeerTimer::SuspectCheck, later);
    let out = drain(&mut core);
    (core, later, out)
}

#[test]
fn a_check_answers_unresponsive_when_the_suspect_stays_silent_or_its_link_goes() {
    let interval = PeerSettings::default().ping_interval;
    let (mut core, _, out) = asked_about_a_silent_6001();
    assert_eq!(replies(&out), vec![(7, Verdict::Unresponsive)]);
    // Overdue already: answered at once.
    let out = suspect_request(&mut core, 8, 6001);
    let overdue = core.liveness.is_overdue(&addr(6001), now(), interval);
    assert_eq!(overdue, !replies(&out).is_empty());
    // A link that goes answers too.
    suspect_request(&mut core, 9, 6002);
    core.handle_link_down(addr(6002), now());
    assert!(replies(&drain(&mut core)).contains(&(9, Verdict::Unresponsive)));
    // And a peer it does not know is none of its business.
    assert_eq!(
        replies(&suspect_request(&mut core, 10, 6099)),
        vec![(10, Verdict::NotNeighbor)]
    );
}

#[test]
fn a_confirmed_death_links_the_replacement_the_seeds_name() {
    let mut core = linked_peer(&[6001]);
    core.handle_message(
        seeds(3)[0],
        Message::DeadConfirmed {
            peer: addr(6001),
            incarnation: 4,
            replacement: Some(addr(6005)),
        },
        now(),
    );
    let out = drain(&mut core);
    assert!(out.contains(&Output::Connect(addr(6005))));
    core.handle_link_up(addr(6005), Role::Peer, now());
    assert!(
        events(&drain(&mut core)).contains(&Event::NeighborReplaced {
            old: addr(6001),
            new: addr(6005)
        })
    );
}

#[test]
fn a_peer_told_of_its_own_removal_registers_again_with_a_higher_incarnation() {
    let mut core = linked_peer(&[6001, 6002]);
    let old = core.incarnation();
    core.handle_message(
        seeds(3)[1],
        Message::DeadConfirmed {
            peer: addr(6000),
            incarnation: old,
            replacement: None,
        },
        now(),
    );
    let out = drain(&mut core);
    assert!(out.contains(&Output::Close(addr(6001))));
    assert!(out.contains(&Output::Close(addr(6002))));
    assert!(core.incarnation() > old);
    let requests: Vec<u64> = out
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                msg: Message::RegisterRequest { incarnation, .. },
                ..
            } => Some(*incarnation),
            _ => None,
        })
        .collect();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|i| *i == core.incarnation()));
    // A closed link of the old life raises no suspicion.
    core.handle_link_down(addr(6001), now());
    assert!(queries(&drain(&mut core)).is_empty());
    assert!(core.neighbors().next().is_none());
}

#[test]
fn a_suspect_neither_cleared_nor_removed_is_asked_about_again_then_dropped() {
    let (mut core, _, _) = after_losing_6001(&[6000, 6003, 6004]);
    let mut rounds = 1;
    let retry = core.agreement_retry();
    // Not yet due: nothing happens.
    core.handle_timer(PeerTimer::AgreementRetry, now());
    assert!(queries(&drain(&mut core)).is_empty());
    loop {
        core.handle_timer(PeerTimer::AgreementRetry, now() + retry * rounds);
        let out = drain(&mut core);
        if queries(&out).is_empty() {
            assert!(events(&out).iter().any(
                |e| matches!(e, Event::SuspicionAbandoned { peer, .. } if *peer == addr(6001))
            ));
            break;
        }
        rounds += 1;
        assert!(rounds <= MAX_AGREEMENT_ROUNDS, "never gave up");
    }
    assert_eq!(rounds, MAX_AGREEMENT_ROUNDS);
}

#[test]
fn a_report_that_led_to_no_removal_goes_to_every_seed_in_the_next_round() {
    // Each round reports at once: 6001 had no neighbour to ask.
    let (mut core, out) = losing_6001_whose_only_neighbour_it_was();
    let mut first: Vec<SocketAddr> = reports(&out).into_iter().map(|(to, _)| to).collect();
    first.sort();
    let mut registered: Vec<SocketAddr> = core.registered_seeds().collect();
    registered.sort();
    assert_eq!(first, registered, "first to the seeds it registered with");
    // No removal came: one of them may be cut off without a sound.
    core.handle_timer(PeerTimer::AgreementRetry, now() + core.agreement_retry());
    let mut second: Vec<SocketAddr> = reports(&drain(&mut core))
        .into_iter()
        .map(|(to, _)| to)
        .collect();
    second.sort();
    assert_eq!(second, seeds(3), "then to every seed of the config");
}

#[test]
fn a_lonely_peer_missing_from_every_peer_list_registers_again() {
    let mut core = linked_peer(&[6001]);
    let old = core.incarnation();
    core.handle_link_down(addr(6001), now());
    drain(&mut core);
    core.handle_timer(PeerTimer::Lonely, now() + Duration::from_secs(2));
    let asked = sends_of(&drain(&mut core), "PEER_LIST_REQUEST");
    // Listed: it stays as it is.
    for seed in &asked {
        let peers = vec![entry(6000, 0), entry(6002, 1)];
        core.handle_message(*seed, peer_list(peers), now());
    }
    assert_eq!(core.incarnation(), old);
    core.handle_link_down(addr(6002), now());
    core.handle_timer(PeerTimer::Lonely, now() + Duration::from_secs(4));
    let asked = sends_of(&drain(&mut core), "PEER_LIST_REQUEST");
    for seed in &asked {
        let peers = vec![entry(6002, 1)];
        core.handle_message(*seed, peer_list(peers), now());
    }
    let out = drain(&mut core);
    assert!(core.incarnation() > old);
    assert!(events(&out)
        .iter()
        .any(|e| matches!(e, Event::Rejoining { .. })));
    assert_eq!(sends_of(&out, "REGISTER_REQUEST").len(), 2);
}

#[test]
fn with_icmp_each_round_echoes_every_neighbour_host_and_silent_hosts_become_suspects() {
    let settings = PeerSettings {
        icmp: true,
        ..PeerSettings::default()
    };
    let mut core = PeerCore::new(
        addr(6000),
        seeds(3),
        settings,
        42,
        identity(6000),
        ChaCha8Rng::seed_from_u64(3),
    );
    join_with(&mut core, &[]);
    let far: SocketAddr = "10.0.0.9:7000".parse().unwrap();
    for n in [addr(6001), addr(6002), far] {
        core.handle_link_up(n, Role::Peer, now());
    }
    pong(&mut core, 6001, 9, &[6000, 6003]);
    drain(&mut core);
    let interval = PeerSettings::default().ping_interval;
    core.handle_timer(PeerTimer::Ping, now() + interval);
    let hosts: Vec<IpAddr> = drain(&mut core)
        .iter()
        .filter_map(|o| match o {
            Output::IcmpEcho { host, .. } => Some(*host),
            _ => None,
        })
        .collect();
    assert_eq!(hosts, vec![far.ip(), addr(0).ip()], "one echo per host");
    let loopback = addr(0).ip();
    // An answer in between restarts the count.
    core.handle_icmp_result(loopback, Err("timeout".into()), now());
    core.handle_icmp_result(loopback, Ok(()), now());
    for _ in 0..2 {
        core.handle_icmp_result(loopback, Err("timeout".into()), now());
    }
    assert!(queries(&drain(&mut core)).is_empty(), "2 misses are not 3");
    core.handle_icmp_result(loopback, Err("timeout".into()), now());
    let out = drain(&mut core);
    let suspected: Vec<SocketAddr> = events(&out)
        .iter()
        .filter_map(|e| match e {
            Event::SuspicionStarted { peer, reason } if reason.contains("ICMP") => Some(*peer),
            _ => None,
        })
        .collect();
    assert_eq!(
        suspected,
        vec![addr(6001), addr(6002)],
        "not the other host's peer"
    );
    assert_eq!(queries(&out).len(), 1, "6001's other neighbour is asked");
}

#[test]
fn without_icmp_no_echo_is_sent() {
    let mut core = linked_peer(&[6001]);
    core.handle_timer(PeerTimer::Ping, now() + Duration::from_secs(13));
    assert!(!drain(&mut core)
        .iter()
        .any(|o| matches!(o, Output::IcmpEcho { .. })));
}

#[test]
fn two_neighbours_lost_at_once_are_judged_and_reported_separately() {
    let mut core = linked_peer(&[6001, 6002, 6003]);
    pong(&mut core, 6001, 9, &[6000, 6002]);
    pong(&mut core, 6002, 8, &[6000, 6001, 6004]);
    drain(&mut core);
    core.handle_link_down(addr(6001), now());
    core.handle_link_down(addr(6002), now());
    let out = drain(&mut core);
    // Each is the other's neighbour, and dead: neither can be asked.
    let asked = queries(&out);
    assert_eq!(asked.len(), 3, "{asked:?}");
    let mut reported = BTreeSet::new();
    for question in asked {
        let to = question.0;
        let verdict = if to == addr(6004) {
            Ok(Verdict::Unresponsive)
        } else {
            Err("connection refused")
        };
        for (_, msg) in reports(&answer(&mut core, question, verdict)) {
            if let Message::DeadReport {
                peer, unreachable, ..
            } = msg
            {
                reported.insert((peer, unreachable));
            }
        }
    }
    assert_eq!(
        reported,
        BTreeSet::from([(addr(6001), vec![addr(6002)]), (addr(6002), vec![]),])
    );
}

#[test]
fn a_line_typed_while_alone_goes_to_the_next_neighbour() {
    let mut core = linked_peer(&[6001]);
    core.handle_link_down(addr(6001), now());
    drain(&mut core);
    core.handle_user_line("hello", now());
    assert!(gossip_sends(&drain(&mut core)).is_empty());
    core.handle_link_up(addr(6002), Role::Peer, now());
    let sent = gossip_sends(&drain(&mut core));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, addr(6002));
    assert!(sent[0].1.ends_with(":hello"));
    // Sent once only.
    core.handle_link_up(addr(6003), Role::Peer, now());
    assert!(gossip_sends(&drain(&mut core)).is_empty());
}

/// A peer of 3 seeds, registered with 2 and connected to `linked` of all
/// of them, loses the first registered seed; it is then checking again.
/// Returns the core, the dropped seed and when the check is due.
fn peer_losing_a_registered_seed(
    linked: impl Fn(&[SocketAddr]) -> Vec<SocketAddr>,
) -> (PeerCore<ChaCha8Rng>, SocketAddr, Timestamp) {
    let mut core = linked_peer(&[6001]);
    let registered: Vec<SocketAddr> = core.registered_seeds().collect();
    for s in linked(&registered) {
        core.handle_link_up(s, Role::Seed, now());
    }
    drain(&mut core);
    core.handle_link_down(registered[0], now());
    let out = drain(&mut core);
    let due = out.iter().find_map(|o| match o {
        Output::Timer {
            timer: PeerTimer::Reverify,
            at,
        } => Some(*at),
        _ => None,
    });
    (core, registered[0], due.expect("a check is armed"))
}

#[test]
fn a_registered_seed_that_drops_is_asked_again_until_it_answers() {
    let (mut core, dropped, due) = peer_losing_a_registered_seed(|_| seeds(3));
    core.handle_timer(PeerTimer::Reverify, due);
    let out = drain(&mut core);
    // Two seeds are still in reach, a majority: only the dropped one.
    assert_eq!(
        sends_of(&out, "REGISTER_REQUEST"),
        vec![dropped],
        "only the dropped seed"
    );
    // Reachable again: the checks stop.
    core.handle_link_up(dropped, Role::Seed, now());
    core.handle_timer(PeerTimer::Reverify, due + Duration::from_secs(10));
    assert!(sends_of(&drain(&mut core), "REGISTER_REQUEST").is_empty());
}

#[test]
fn a_peer_left_with_too_few_seeds_in_reach_for_a_report_reaches_the_others() {
    let (mut core, dropped, due) = peer_losing_a_registered_seed(|registered| registered.to_vec());
    core.handle_timer(PeerTimer::Reverify, due);
    let mut asked = sends_of(&drain(&mut core), "REGISTER_REQUEST");
    asked.sort();
    // One seed of three in reach could not carry a removal: the dropped
    // seed and the one it never registered with are both asked.
    let mut expected: Vec<SocketAddr> = seeds(3)
        .into_iter()
        .filter(|s| *s == dropped || !core.registered_seeds().any(|r| r == *s))
        .collect();
    expected.sort();
    assert_eq!(asked, expected);
    assert_eq!(asked.len(), 2);
}

#[test]
fn candidates_merge_the_lists_keeping_each_peer_once_at_its_highest_degree() {
    let mut core = peer(3, 8);
    core.lists.insert(
        addr(5001),
        vec![
            entry(6001, 1),
            entry(6002, 5),
            entry(6000, 3),
            entry(6001, 4),
        ],
    );
    core.lists
        .insert(addr(5002), vec![entry(6002, 7), entry(6003, 0)]);
    let merged: Vec<(u16, u32)> = core
        .candidates()
        .iter()
        .map(|e| (e.addr.port(), e.degree))
        .collect();
    // Ourselves (6000) left out; each other peer once, in first-listed
    // order, at the highest degree any list gave it.
    assert_eq!(merged, vec![(6001, 4), (6002, 7), (6003, 0)]);
}

/// A GOSSIP of `msg` from neighbour `from`, created by 6099.
fn gossip_from(core: &mut PeerCore<ChaCha8Rng>, from: u16, msg: &str, at: Timestamp) {
    let gossip = Message::gossip_signed_by(&identity(6099), addr(6099), msg, 0);
    core.handle_message(addr(from), gossip, at);
}

/// GOSSIP of `origin` from neighbour `from`.
fn gossip_as(
    core: &mut PeerCore<ChaCha8Rng>,
    from: u16,
    origin: SocketAddr,
    msg: &str,
    at: Timestamp,
) {
    let gossip = Message::gossip_signed_by(&identity(origin.port()), origin, msg, 0);
    core.handle_message(addr(from), gossip, at);
}

/// The `j`th of many made-up origins, 10.x.y.z:7000.
fn spoofed(j: u64) -> SocketAddr {
    let [_, b, c, d] = (j as u32 + 1).to_be_bytes();
    SocketAddr::from(([10, b, c, d], 7000))
}

/// Texts delivered (first receipt) among `outputs`.
fn delivered(outputs: &[Output<PeerTimer>]) -> Vec<String> {
    events(outputs)
        .into_iter()
        .filter_map(|e| match e {
            Event::GossipReceived { msg, .. } => Some(msg),
            _ => None,
        })
        .collect()
}

/// A text created at `at`, as a peer writes it.
fn created_at(at: Timestamp, n: u64) -> String {
    format!("{:.6}:127.0.0.9:{n}", at.as_secs_f64())
}

#[test]
fn a_flood_of_distinct_messages_never_lets_an_old_message_be_delivered_twice() {
    // Eight links: 6001 is a real peer, 6002..=6008 are HELLO-only
    // attackers that flood distinct, current messages.
    let links: Vec<u16> = (6001..=6008).collect();
    let mut core = linked_peer(&links);
    let real = created_at(now(), 1);
    gossip_from(&mut core, 6001, &real, now());
    assert_eq!(delivered(&drain(&mut core)), vec![real.clone()]);
    let mut at = now();
    for i in 0..70_000u64 {
        let attacker = 6002 + (i % 7) as u16;
        at = now() + Duration::from_micros(i * 100);
        gossip_from(&mut core, attacker, &created_at(at, 1_000 + i), at);
        drain(&mut core);
        assert!(core.message_list().len() <= ML_CAPACITY);
    }
    // The real message again, from an attacker and from the real peer.
    for from in [6002, 6001] {
        gossip_from(&mut core, from, &real, at);
        let out = drain(&mut core);
        assert!(delivered(&out).is_empty(), "delivered twice: {real}");
        assert!(gossip_sends(&out).is_empty(), "forwarded twice: {real}");
    }
}

#[test]
fn a_far_future_or_timeless_message_is_refused() {
    let mut core = linked_peer(&[6001, 6002]);
    let hour_ahead = created_at(now() + Duration::from_secs(3600), 1);
    for (i, msg) in [hour_ahead.as_str(), "hello", "nan:127.0.0.9:1", ""]
        .into_iter()
        .enumerate()
    {
        let at = now() + Duration::from_secs(i as u64);
        gossip_from(&mut core, 6001, msg, at);
        let out = drain(&mut core);
        let cause = if i == 0 {
            GossipRefusal::Future
        } else {
            GossipRefusal::Timeless
        };
        assert!(
            matches!(&events(&out)[..], [Event::GossipRefused { from, cause: c, count: 1, .. }]
                if *from == addr(6001) && *c == cause),
            "{msg:?}: {out:?}"
        );
        assert!(delivered(&out).is_empty(), "delivered {msg:?}");
        assert!(gossip_sends(&out).is_empty(), "forwarded {msg:?}");
    }
    assert!(
        core.message_list().is_empty(),
        "a refused message took room"
    );
    assert_eq!(core.stats().untimely_refused, 4);
    // Within the allowed skew, a message from a clock a little ahead is
    // delivered.
    let minute_ahead = created_at(now() + Duration::from_secs(59), 2);
    gossip_from(&mut core, 6001, &minute_ahead, now());
    assert_eq!(delivered(&drain(&mut core)), vec![minute_ahead]);
}

#[test]
fn a_message_from_a_clock_ahead_is_not_delivered_again_once_the_clock_catches_up() {
    let mut core = linked_peer(&[6001, 6002]);
    let ahead = created_at(now() + Duration::from_secs(59), 1);
    gossip_from(&mut core, 6001, &ahead, now());
    assert_eq!(delivered(&drain(&mut core)).len(), 1);
    // Just before it turns stale, 659 s after it was first seen, a copy
    // is still a duplicate.
    let later = now() + Duration::from_secs(59) + ML_RETENTION;
    gossip_from(&mut core, 6002, &ahead, later);
    assert!(delivered(&drain(&mut core)).is_empty(), "delivered twice");
}

#[test]
fn one_flooding_link_cannot_crowd_out_another_links_messages() {
    let mut core = linked_peer(&[6001, 6002, 6003]);
    // The flood keeps within the admission budgets: its origins' rates,
    // spread over time, and the link's origins.
    let flood = |core: &mut PeerCore<ChaCha8Rng>, from: u16, range: std::ops::Range<u64>| {
        for i in range {
            let origin = spoofed(i % ORIGINS_PER_LINK as u64);
            let at = now() + Duration::from_millis(i % ML_CAPACITY as u64);
            gossip_as(core, from, origin, &created_at(now(), i), at);
            drain(core);
        }
    };
    flood(&mut core, 6001, 0..ML_CAPACITY as u64);
    // The honest link's message gets in, and stays in however long the
    // flood goes on.
    let honest = created_at(now(), 999_999_999);
    let after = now() + Duration::from_millis(ML_CAPACITY as u64);
    gossip_from(&mut core, 6002, &honest, after);
    assert_eq!(delivered(&drain(&mut core)), vec![honest.clone()]);
    flood(&mut core, 6001, ML_CAPACITY as u64..2 * ML_CAPACITY as u64);
    assert!(core.message_list().len() <= ML_CAPACITY);
    gossip_from(&mut core, 6003, &honest, after);
    assert!(delivered(&drain(&mut core)).is_empty(), "delivered twice");
}

#[test]
fn received_gossip_over_the_size_cap_is_refused_and_not_forwarded() {
    let mut core = linked_peer(&[6001, 6002]);
    let prefix = created_at(now(), 1);
    let huge = format!("{prefix}{}", "x".repeat(500_000));
    let mut logged = Vec::new();
    for i in 0..10 {
        gossip_from(
            &mut core,
            6001,
            &huge,
            now() + Duration::from_millis(i * 300),
        );
        let out = drain(&mut core);
        assert!(delivered(&out).is_empty(), "a 500 kB message was delivered");
        assert!(
            gossip_sends(&out).is_empty(),
            "a 500 kB message was forwarded"
        );
        logged.extend(events(&out));
    }
    // Logged at once, then at most once a second with a count: at 0, 1.2
    // and 2.4 s.
    let counts: Vec<u64> = logged
        .iter()
        .map(|e| match e {
            Event::GossipRefused {
                from,
                cause: GossipRefusal::TooLarge,
                reason,
                count,
            } if *from == addr(6001) && reason.contains(&format!("{} bytes", huge.len())) => *count,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(counts, vec![1, 4, 4]);
    assert_eq!(core.stats().oversize_refused, 10);
    assert!(
        core.message_list().is_empty(),
        "an oversized message took room"
    );
    // At the cap exactly, it is delivered.
    let fits = format!("{prefix}{}", "y".repeat(MAX_GOSSIP_TEXT - prefix.len()));
    gossip_from(&mut core, 6001, &fits, now());
    assert_eq!(delivered(&drain(&mut core)).len(), 1);
}

#[test]
fn the_size_cap_is_a_setting_that_typed_lines_obey_too() {
    let mut core = PeerCore::new(
        addr(6000),
        seeds(3),
        PeerSettings {
            max_gossip_bytes: 200,
            ..PeerSettings::default()
        },
        42,
        identity(6000),
        ChaCha8Rng::seed_from_u64(11),
    );
    join_with(&mut core, &[]);
    core.handle_link_up(addr(6001), Role::Peer, now());
    core.handle_link_up(addr(6002), Role::Peer, now());
    drain(&mut core);
    let prefix = "1740466800.000000:127.0.0.1:";
    // A typed line is refused unless the whole message, prefix and all,
    // fits: every peer with the same setting then accepts it.
    core.handle_user_line(&"a".repeat(200 - prefix.len() + 1), now());
    let out = drain(&mut core);
    assert!(gossip_sends(&out).is_empty());
    assert_eq!(
        events(&out),
        vec![Event::UserLineRefused {
            bytes: 200 - prefix.len() + 1,
            limit: 200 - prefix.len()
        }]
    );
    core.handle_user_line(&"a".repeat(200 - prefix.len()), now());
    let sent = gossip_sends(&drain(&mut core));
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].1.len(), 200);
    let received = created_at(now(), 1);
    let over = format!("{received}{}", "b".repeat(201 - received.len()));
    gossip_from(&mut core, 6001, &over, now());
    assert!(delivered(&drain(&mut core)).is_empty());
    gossip_from(&mut core, 6001, &over[..200], now());
    assert_eq!(delivered(&drain(&mut core)).len(), 1);
}

#[test]
fn a_peer_whose_list_is_full_refuses_its_own_new_messages_and_says_so() {
    let mut core = linked_peer(&[6001, 6002, 6003, 6004, 6005]);
    // Four links fill the list, each within its share, each message
    // within its origin's budget.
    for i in 0..ML_CAPACITY as u64 {
        let link = i % 4;
        let origin = spoofed(link * 2000 + (i / 4) % ORIGINS_PER_LINK as u64);
        gossip_as(
            &mut core,
            6001 + link as u16,
            origin,
            &created_at(now(), i),
            now(),
        );
    }
    drain(&mut core);
    assert_eq!(core.message_list().len(), ML_CAPACITY);
    gossip_from(&mut core, 6005, &created_at(now(), u64::MAX), now());
    let out = drain(&mut core);
    assert!(delivered(&out).is_empty());
    assert!(matches!(
        &events(&out)[..],
        [Event::GossipRefused {
            cause: GossipRefusal::ListFull,
            count: 1,
            ..
        }]
    ));
    core.handle_user_line("hello", now());
    let out = drain(&mut core);
    assert!(gossip_sends(&out).is_empty(), "sent without an entry");
    assert!(matches!(
        &events(&out)[..],
        [Event::GossipRefused { from, cause: GossipRefusal::ListFull, .. }] if *from == addr(6000)
    ));
    assert_eq!(core.stats().no_room_refused, 2);
    // Once the entries expire, there is room again.
    let later = now() + ML_RETENTION + MAX_FUTURE_SKEW + Duration::from_secs(1);
    core.handle_user_line("hello", later);
    assert_eq!(gossip_sends(&drain(&mut core)).len(), 5);
    assert_eq!(core.message_list().len(), 1);
}

/// Gossip sends among `outputs` whose text contains `part`.
fn sends_containing(outputs: &[Output<PeerTimer>], part: &str) -> usize {
    gossip_sends(outputs)
        .iter()
        .filter(|(_, msg, _)| msg.contains(part))
        .count()
}

#[test]
fn a_flood_from_one_origin_is_cut_at_the_entry_and_real_gossip_still_passes() {
    // 6001 is a HELLO-only flooder; 6002 and 6003 are real peers.
    let mut core = linked_peer(&[6001, 6002, 6003]);
    let rate = origin_rate(&PeerSettings::default());
    let (mut flood_sent, mut real_delivered, mut logged) = (0, 0, Vec::new());
    // 20,000 distinct, fresh messages in 2 s under the flooder's own
    // address, and a real message through 6002 every 200 of them, each
    // from another real peer.
    for i in 0..20_000u64 {
        let at = now() + Duration::from_micros(i * 100);
        gossip_as(
            &mut core,
            6001,
            addr(6001),
            &format!("{:.6}:flood {i}", at.as_secs_f64()),
            at,
        );
        let out = drain(&mut core);
        flood_sent += sends_containing(&out, ":flood ");
        logged.extend(
            events(&out)
                .into_iter()
                .filter(|e| matches!(e, Event::GossipRefused { .. })),
        );
        if i % 200 == 0 {
            let real = format!("{:.6}:127.0.0.1:real {i}", at.as_secs_f64());
            let author = SocketAddr::from(([127, 0, 0, 2], 6000 + (i / 200) as u16));
            gossip_as(&mut core, 6002, author, &real, at);
            let out = drain(&mut core);
            assert_eq!(
                delivered(&out),
                vec![real.clone()],
                "real message {i} refused"
            );
            assert_eq!(
                sends_containing(&out, &real),
                2,
                "real message {i} not forwarded"
            );
            real_delivered += 1;
        }
    }
    // At most the origin's burst and rate got through, to each of the two
    // other neighbours.
    let allowed = (ORIGIN_BURST + rate * 2.0) as usize;
    assert!(
        flood_sent <= 2 * allowed,
        "{flood_sent} flood messages forwarded, allowed {allowed} each way"
    );
    assert!(flood_sent >= 2 * ORIGIN_BURST as usize);
    assert_eq!(real_delivered, 100);
    assert!(core.stats().over_budget_refused >= 20_000 - allowed as u64);
    // Refusals are logged throttled, with their cause: at most one a second.
    assert!((1..=3).contains(&logged.len()), "{logged:?}");
    assert!(logged.iter().all(|e| matches!(e,
        Event::GossipRefused { from, cause: GossipRefusal::OriginRate, .. } if *from == addr(6001))));
    assert!(core.message_list().len() <= allowed + 100);
}

#[test]
fn a_flood_with_spoofed_origins_is_cut_at_the_entry() {
    let mut core = linked_peer(&[6001, 6002, 6003]);
    let mut flood_sent = 0;
    let mut causes = Vec::new();
    // Every message under a new made-up origin, then every origin used 20
    // times: 100,000 messages in 1 s.
    for i in 0..100_000u64 {
        let at = now() + Duration::from_micros(i * 10);
        let origin = if i < 50_000 {
            spoofed(i)
        } else {
            spoofed(100_000 + i % 2_500)
        };
        gossip_as(
            &mut core,
            6001,
            origin,
            &format!("{:.6}:x:{i}", at.as_secs_f64()),
            at,
        );
        let out = drain(&mut core);
        flood_sent += sends_containing(&out, ":x:");
        causes.extend(events(&out).into_iter().filter_map(|e| match e {
            Event::GossipRefused { cause, .. } => Some(cause),
            _ => None,
        }));
        if i % 1_000 == 0 {
            let real = format!("{:.6}:127.0.0.1:real {i}", at.as_secs_f64());
            let author = SocketAddr::from(([127, 0, 0, 2], 6000 + (i / 200) as u16));
            gossip_as(&mut core, 6002, author, &real, at);
            let out = drain(&mut core);
            assert_eq!(delivered(&out), vec![real], "real message {i} refused");
        }
    }
    // One link introduced at most its origins, each at most its burst.
    let allowed = ORIGINS_PER_LINK as usize * ORIGIN_BURST as usize;
    assert!(flood_sent <= 2 * allowed, "{flood_sent} forwarded");
    assert!(causes.contains(&GossipRefusal::NewOrigins), "{causes:?}");
    assert!(core.origins_remembered() <= ORIGINS_PER_LINK as usize + 101);
    // A new link of a real peer still introduces its origins.
    let real = format!("{:.6}:127.0.0.1:late", now().as_secs_f64());
    gossip_as(
        &mut core,
        6003,
        addr(6003),
        &real,
        now() + Duration::from_secs(1),
    );
    assert_eq!(delivered(&drain(&mut core)), vec![real]);
    // Idle origins are forgotten: the table is bounded by time.
    let later = now() + Duration::from_secs(1) + ORIGIN_IDLE + Duration::from_secs(30);
    let fresh = format!("{:.6}:127.0.0.1:fresh", later.as_secs_f64());
    gossip_as(&mut core, 6002, spoofed(999_999), &fresh, later);
    assert_eq!(delivered(&drain(&mut core)), vec![fresh]);
    assert!(
        core.origins_remembered() <= 2,
        "{}",
        core.origins_remembered()
    );
}

#[test]
fn an_honest_hub_forwarding_a_large_networks_start_up_is_not_cut() {
    // A leaf whose one other link is to a hub: 1000 peers join one by one,
    // 25 a second, each gossips its 10 messages 5 s apart from when it
    // links, and the hub forwards them all. One of them also pastes 20
    // typed lines at once.
    let mut core = linked_peer(&[6001, 6002]);
    let mut due: Vec<(Timestamp, u64, u32)> = Vec::new();
    for peer in 0..1000u64 {
        let joined = now() + Duration::from_millis(peer * 40);
        for n in 0..10u32 {
            due.push((joined + Duration::from_secs(5) * n, peer, n));
        }
    }
    let paste = now() + Duration::from_secs(27);
    for n in 10..30u32 {
        due.push((paste, 500, n));
    }
    due.sort();
    for (at, peer, n) in &due {
        let text = format!("{:.6}:10.0.0.1:{n}", at.as_secs_f64());
        gossip_as(&mut core, 6001, spoofed(*peer), &text, *at);
        let out = drain(&mut core);
        assert_eq!(
            delivered(&out),
            vec![text],
            "peer {peer}'s message {n} refused"
        );
    }
    assert_eq!(core.stats().received_first, due.len() as u64);
    assert_eq!(core.stats().over_budget_refused, 0);
}

#[test]
fn gossip_whose_signature_does_not_verify_is_refused_and_not_forwarded() {
    let mut core = linked_peer(&[6001, 6002]);
    let signed = Message::gossip_signed_by(&identity(6009), addr(6009), "1740466800.0:x:1", 0);
    let Message::Gossip { key, signature, .. } = signed else {
        unreachable!("a GOSSIP")
    };
    // The origin's real signature, over another text.
    let altered = Message::Gossip {
        origin: addr(6009),
        key,
        msg: "1740466800.0:x:2".into(),
        signature,
        hops: 0,
    };
    core.handle_message(addr(6001), altered, now());
    let out = drain(&mut core);
    assert!(
        gossip_sends(&out).is_empty(),
        "a forged message was forwarded"
    );
    assert!(delivered(&out).is_empty(), "a forged message was delivered");
    assert!(matches!(
        &events(&out)[..],
        [Event::GossipRefused { cause: GossipRefusal::Forged, from, .. }] if *from == addr(6001)
    ));
    assert_eq!(core.stats().forged_refused, 1);
    assert!(core.message_list().is_empty(), "a forged message took room");
}

#[test]
fn forwarded_gossip_carries_its_origins_key_and_signature_unchanged() {
    let mut core = linked_peer(&[6001, 6002]);
    let original = Message::gossip_signed_by(&identity(6009), addr(6009), "1740466800.0:x:1", 2);
    core.handle_message(addr(6001), original.clone(), now());
    let forwarded: Vec<Message> = drain(&mut core)
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { to, msg } if to == addr(6002) => Some(msg),
            _ => None,
        })
        .collect();
    assert_eq!(forwarded.len(), 1);
    let Message::Gossip {
        origin,
        key,
        msg,
        signature,
        hops,
    } = &forwarded[0]
    else {
        panic!("forwarded {:?}", forwarded[0])
    };
    assert_eq!(*hops, 3);
    assert_eq!(*key, identity(6009).public_key());
    assert_eq!(key.verify_gossip(*origin, msg, signature), Ok(()));
}

#[test]
fn a_flood_in_a_real_origins_name_does_not_use_up_its_budget() {
    let mut core = linked_peer(&[6001, 6002]);
    let forger = identity(7777);
    let real = addr(6009);
    // The flooder names the real origin, signing with the only key it has.
    for i in 0..200u64 {
        let at = now() + Duration::from_millis(i);
        let msg = format!("{:.6}:127.0.0.9:forged {i}", at.as_secs_f64());
        core.handle_message(
            addr(6001),
            Message::gossip_signed_by(&forger, real, msg, 0),
            at,
        );
    }
    let out = drain(&mut core);
    assert!(delivered(&out).len() <= ORIGIN_BURST as usize + 1);
    // The real origin's own messages still get in, every one.
    let at = now() + Duration::from_millis(200);
    for n in 0..ORIGIN_BURST as u64 {
        let msg = format!("{:.6}:127.0.0.9:{n}", at.as_secs_f64());
        core.handle_message(
            addr(6002),
            Message::gossip_signed_by(&identity(6009), real, msg, 0),
            at,
        );
    }
    let out = drain(&mut core);
    assert_eq!(delivered(&out).len(), ORIGIN_BURST as usize, "{out:?}");
}

#[test]
fn a_text_signed_in_a_real_origins_name_first_does_not_preempt_its_message() {
    let mut core = linked_peer(&[6001, 6002]);
    let text = "1740466800.0:127.0.0.9:1";
    core.handle_message(
        addr(6001),
        Message::gossip_signed_by(&identity(7777), addr(6009), text, 0),
        now(),
    );
    drain(&mut core);
    core.handle_message(
        addr(6002),
        Message::gossip_signed_by(&identity(6009), addr(6009), text, 0),
        now(),
    );
    assert_eq!(delivered(&drain(&mut core)), vec![text.to_string()]);
}

#[test]
fn gossip_naming_this_peer_as_origin_under_another_key_is_refused() {
    let mut core = linked_peer(&[6001, 6002]);
    core.handle_message(
        addr(6001),
        Message::gossip_signed_by(&identity(7777), addr(6000), "1740466800.0:x:1", 0),
        now(),
    );
    let out = drain(&mut core);
    assert!(delivered(&out).is_empty());
    assert!(gossip_sends(&out).is_empty());
    assert_eq!(core.stats().forged_refused, 1);
}

/// A PEER_LIST from a seed stating `keys` as the seeds' pinned keys.
fn peer_list_stating(keys: &[(u16, u16)]) -> Message {
    let Message::PeerList {
        peers,
        total,
        you_registered,
        ..
    } = peer_list(vec![])
    else {
        unreachable!("a PEER_LIST")
    };
    Message::PeerList {
        peers,
        total,
        you_registered,
        seed_keys: keys
            .iter()
            .map(|(seed, key)| (addr(*seed), identity(*key).public_key()))
            .collect(),
    }
}

#[test]
fn a_seeds_key_is_taken_from_the_other_seeds_word_never_its_own() {
    let mut core = peer(3, 12);
    let seeds: Vec<u16> = core.seeds.iter().map(|s| s.port()).collect();
    let (a, b, c) = (seeds[0], seeds[1], seeds[2]);
    // Seed a vouches only for itself: nothing is pinned.
    core.handle_message(addr(a), peer_list_stating(&[(a, 1)]), now());
    assert_eq!(core.pinned_key(&addr(a)), None);
    core.take_pinned_keys_changed();
    // Seed b states a's and c's keys: both pinned.
    core.handle_message(addr(b), peer_list_stating(&[(a, 1), (c, 3)]), now());
    assert_eq!(core.pinned_key(&addr(a)), Some(identity(1).public_key()));
    assert_eq!(core.pinned_key(&addr(c)), Some(identity(3).public_key()));
    assert!(core.take_pinned_keys_changed());
    assert!(!core.take_pinned_keys_changed(), "changed is taken once");
    // Seed c, say a process on its port, disagrees about a: a is pinned no
    // more (a lie can unpin, never repin), while c cannot touch its own.
    core.handle_message(addr(c), peer_list_stating(&[(a, 9), (c, 9)]), now());
    assert_eq!(core.pinned_key(&addr(a)), None);
    assert_eq!(core.pinned_key(&addr(c)), Some(identity(3).public_key()));
    // A later list from c replaces its word: agreement again.
    core.handle_message(addr(c), peer_list_stating(&[(a, 1)]), now());
    assert_eq!(core.pinned_key(&addr(a)), Some(identity(1).public_key()));
    // A stranger's list counts for nothing.
    core.handle_message(addr(7000), peer_list_stating(&[(a, 8), (b, 8)]), now());
    assert_eq!(core.pinned_key(&addr(a)), Some(identity(1).public_key()));
    assert_eq!(core.pinned_key(&addr(b)), None);
}

/// The peers `outputs` dials.
fn dials(outputs: &[Output<PeerTimer>]) -> Vec<SocketAddr> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Connect(to) => Some(*to),
            _ => None,
        })
        .collect()
}

#[test]
fn a_failed_dial_is_replaced_by_a_spare_at_once_and_told_to_every_seed() {
    let settings = PeerSettings {
        max_links: NonZeroU32::new(1).unwrap(),
        ..PeerSettings::default()
    };
    let mut core = PeerCore::new(
        addr(6000),
        seeds(3),
        settings,
        42,
        identity(6000),
        ChaCha8Rng::seed_from_u64(5),
    );
    let candidates: Vec<PeerEntry> = (6001..=6004).map(|p| entry(p, 0)).collect();
    let out = join_with(&mut core, &candidates);
    let mut dialled = dials(&out);
    assert_eq!(dialled.len(), 1, "one link wanted");
    // Every dial fails: each is replaced at once, until the spares run out.
    loop {
        let failed = *dialled.last().unwrap();
        core.handle_link_down(failed, now());
        let out = drain(&mut core);
        assert_eq!(
            sends_of(&out, "DIAL_FAILED"),
            seeds(3),
            "every seed is told"
        );
        let next = dials(&out);
        match events(&out).as_slice() {
            [Event::DialFailedReported { peer, next: n }, ..] => {
                assert_eq!((*peer, *n), (failed, next.first().copied()));
            }
            other => panic!("{other:?}"),
        }
        if next.is_empty() {
            break;
        }
        dialled.extend(next);
    }
    dialled.sort();
    assert_eq!(dialled, (6001..=6004).map(addr).collect::<Vec<_>>());
    assert!(
        core.is_joined(),
        "joined, with no neighbour, once all failed"
    );
    // A second failure at the same address within a ping interval is not
    // told again.
    core.handle_message(
        addr(5010),
        Message::DeadConfirmed {
            peer: addr(6001),
            incarnation: 1,
            replacement: Some(addr(6001)),
        },
        now(),
    );
    drain(&mut core);
    core.handle_link_down(addr(6001), now());
    assert!(sends_of(&drain(&mut core), "DIAL_FAILED").is_empty());
}

#[test]
fn a_peer_stopping_cleanly_sends_its_signed_leave_to_its_seeds_and_neighbours() {
    let mut core = linked_peer(&[6001, 6002]);
    core.handle_shutdown(now());
    let out = drain(&mut core);
    let mut to = sends_of(&out, "LEAVE");
    to.sort();
    let seeds: Vec<SocketAddr> = core.registered_seeds().collect();
    assert_eq!(to, [seeds.clone(), vec![addr(6001), addr(6002)]].concat());
    let leave = out
        .iter()
        .find_map(|o| match o {
            Output::Send { msg, .. } if msg.kind() == "LEAVE" => Some(msg.clone()),
            _ => None,
        })
        .unwrap();
    let Message::Leave {
        peer,
        incarnation,
        signature,
    } = leave
    else {
        unreachable!()
    };
    assert_eq!((peer, incarnation), (addr(6000), 42));
    assert_eq!(
        identity(6000)
            .public_key()
            .verify_leave(peer, incarnation, &signature),
        Ok(())
    );
    assert_eq!(
        events(&out),
        [Event::Leaving {
            seeds,
            neighbors: vec![addr(6001), addr(6002)]
        }]
    );
}

#[test]
fn a_neighbour_that_leaves_is_dropped_without_suspicion_and_its_leave_relayed() {
    let mut core = linked_peer(&[6001, 6002]);
    let leave = Message::leave_signed_by(&identity(6001), addr(6001), 7);
    core.handle_message(addr(6001), leave.clone(), now());
    let out = drain(&mut core);
    let evs = events(&out);
    assert_eq!(
        evs[0],
        Event::Left {
            peer: addr(6001),
            incarnation: 7
        }
    );
    assert!(evs.contains(&Event::NeighborDown { peer: addr(6001) }));
    assert!(out.contains(&Output::Close(addr(6001))));
    let seeds: Vec<SocketAddr> = core.registered_seeds().collect();
    let mut relayed = sends_of(&out, "LEAVE");
    relayed.sort();
    assert_eq!(relayed, seeds, "relayed to the seeds it has connections to");
    // The link going down after it is no suspicion, and no round.
    core.handle_link_down(addr(6001), now());
    let out = drain(&mut core);
    assert!(
        !events(&out)
            .iter()
            .any(|e| matches!(e, Event::SuspicionStarted { .. })),
        "{out:?}"
    );
    assert!(sends_of(&out, "SUSPECT_REQUEST").is_empty());
    // The seeds' confirmation brings the replacement, not a `dead_confirmed`.
    let seed = seeds[0];
    core.handle_message(
        seed,
        Message::DeadConfirmed {
            peer: addr(6001),
            incarnation: 7,
            replacement: Some(addr(6003)),
        },
        now(),
    );
    let out = drain(&mut core);
    assert!(!events(&out)
        .iter()
        .any(|e| matches!(e, Event::DeadConfirmed { .. })));
    assert!(out.contains(&Output::Connect(addr(6003))));
}

#[test]
fn a_leave_naming_another_peer_is_not_taken_from_a_neighbour() {
    let mut core = linked_peer(&[6001, 6002]);
    let forged = Message::leave_signed_by(&identity(6001), addr(6002), 7);
    core.handle_message(addr(6001), forged, now());
    let out = drain(&mut core);
    assert!(out.is_empty(), "{out:?}");
    assert!(core.neighbors().any(|n| n == addr(6002)));
}
