//! A real network of seed and peer processes on loopback (R5 to R10, R17 to R19, R21).

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    net::SocketAddr,
    time::Duration,
};

use common::{wait_for, Cluster, Proc};
use gossipnet::proto::{majority, Event};

const PEERS: usize = 10;
const MESSAGES: usize = 10;

/// Every line starts with an RFC 3339 UTC timestamp with microseconds.
fn starts_with_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 28
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[20..26].iter().all(u8::is_ascii_digit)
        && b[26] == b'Z'
        && b[27] == b' '
}

fn created(p: &Proc) -> Vec<(String, u64)> {
    p.records
        .iter()
        .filter_map(|r| match &r.event {
            Event::GossipCreated { msg } => Some((msg.clone(), r.ts_us)),
            _ => None,
        })
        .collect()
}

fn joined_at(p: &Proc) -> u64 {
    p.records
        .iter()
        .find(|r| matches!(r.event, Event::NeighborUp { .. }))
        .map(|r| r.ts_us)
        .expect("peer joined")
}

#[test]
fn every_peer_receives_every_message_created_after_it_joined_exactly_once() {
    let mut net = Cluster::with_seeds(3, &["--gossip-interval", "200ms", "--gossip-count", "10"]);
    for _ in 0..PEERS {
        net.add_peer();
    }
    for i in 0..PEERS {
        net.peers[i].wait_event(
            "its last message",
            Duration::from_secs(30),
            |e| matches!(e, Event::GossipCreated { msg } if msg.ends_with(":10")),
        );
    }

    // Who should have what: a peer whose first link came up before a
    // message was created must receive it. Joins are sequential here, so
    // the overlay is connected at every creation.
    let expected = |net: &Cluster| {
        let mut want: BTreeMap<SocketAddr, BTreeSet<(SocketAddr, String)>> = BTreeMap::new();
        for origin in &net.peers {
            for (msg, at) in created(origin) {
                for other in &net.peers {
                    if other.addr() != origin.addr() && joined_at(other) <= at {
                        want.entry(other.addr())
                            .or_default()
                            .insert((origin.addr(), msg.clone()));
                    }
                }
            }
        }
        want
    };
    let received = |p: &Proc| -> Vec<(SocketAddr, String)> {
        p.events()
            .filter_map(|e| match e {
                Event::GossipReceived { msg, origin, .. } => Some((*origin, msg.clone())),
                _ => None,
            })
            .collect()
    };
    let net = std::cell::RefCell::new(net);
    wait_for(
        "every expected message at every peer",
        Duration::from_secs(20),
        || {
            let mut net = net.borrow_mut();
            net.poll_all();
            let want = expected(&net);
            net.peers
                .iter()
                .all(|p| {
                    let got: BTreeSet<(SocketAddr, String)> = received(p).into_iter().collect();
                    want.get(&p.addr()).is_none_or(|w| w.is_subset(&got))
                })
                .then_some(())
        },
        || {
            let net = net.borrow();
            let want = expected(&net);
            net.peers
                .iter()
                .map(|p| {
                    let got: BTreeSet<(SocketAddr, String)> = received(p).into_iter().collect();
                    let missing = want
                        .get(&p.addr())
                        .map(|w| w.difference(&got).count())
                        .unwrap_or(0);
                    format!("{}: {} received, {missing} missing", p.addr(), got.len())
                })
                .collect::<Vec<_>>()
                .join("; ")
        },
    );
    let mut net = net.into_inner();
    net.poll_all();

    let all_created: usize = net.peers.iter().map(|p| created(p).len()).sum();
    assert_eq!(
        all_created,
        PEERS * MESSAGES,
        "each peer creates exactly gossip_count messages"
    );
    let mut deliveries = 0;
    for p in &net.peers {
        let got = received(p);
        let unique: BTreeSet<_> = got.iter().collect();
        assert_eq!(
            unique.len(),
            got.len(),
            "{} logged a first receipt twice",
            p.addr()
        );
        assert!(
            unique.iter().all(|(origin, _)| *origin != p.addr()),
            "{} received its own message",
            p.addr()
        );
        // Message text is <timestamp>:<IP>:<Msg#> (R8).
        for (msg, at) in created(p) {
            let parts: Vec<&str> = msg.split(':').collect();
            assert_eq!(parts.len(), 3, "{msg}");
            let ts: f64 = parts[0].parse().unwrap();
            assert!((ts * 1e6 - at as f64).abs() < 1e6, "{msg} created at {at}");
            assert!(
                parts[0].contains('.'),
                "timestamp has a fractional part: {msg}"
            );
            assert_eq!(parts[1], p.addr().ip().to_string());
            assert!((1..=MESSAGES).contains(&parts[2].parse::<usize>().unwrap()));
        }
        deliveries += got.len();
    }
    assert!(
        deliveries >= (PEERS - 1) * MESSAGES,
        "too few deliveries: {deliveries}"
    );

    // R2, R5: registration went to floor(n/2)+1 seeds; their votes
    // committed it, and every seed applied the same commit.
    let quorum = majority(3);
    let mut commits: BTreeMap<SocketAddr, Vec<Vec<SocketAddr>>> = BTreeMap::new();
    for seed in &net.seeds {
        for e in seed.events() {
            if let Event::RegisterCommitted {
                peer,
                votes,
                seeds,
                voters,
                ..
            } = e
            {
                assert_eq!((*votes, *seeds), (quorum, 3), "{e:?}");
                commits.entry(*peer).or_default().push(voters.clone());
            }
        }
    }
    for p in &net.peers {
        let mut seeds = p
            .events()
            .find_map(|e| match e {
                Event::Registered { seeds } => Some(seeds.clone()),
                _ => None,
            })
            .unwrap();
        seeds.sort();
        assert_eq!(
            seeds.len(),
            quorum,
            "{} registered with {seeds:?}",
            p.addr()
        );
        let seen = commits.get(&p.addr()).cloned().unwrap_or_default();
        assert_eq!(
            seen.len(),
            3,
            "not every seed applied the commit of {}",
            p.addr()
        );
        assert!(
            seen.iter().all(|v| *v == seen[0]),
            "seeds disagree on {}: {seen:?}",
            p.addr()
        );
        let distinct: std::collections::BTreeSet<_> = seen[0].iter().collect();
        assert_eq!(distinct.len(), quorum, "{}: voters {seen:?}", p.addr());
    }

    // R18: the output files hold the required lines.
    for p in &net.peers {
        let text = std::fs::read_to_string(p.output_file("peer")).unwrap();
        assert!(text.lines().all(starts_with_timestamp), "{text}");
        assert!(text.contains("PEER LIST from seed 127.0.0.1:"), "{text}");
        for e in p.events() {
            if let Event::GossipReceived { msg, from, .. } = e {
                let line = format!("GOSSIP received (first time): '{msg}' from {from}");
                assert!(text.contains(&line), "missing {line:?}");
            }
        }
    }
    // R17: seeds log registrations and the topology they learn.
    for s in &net.seeds {
        let text = std::fs::read_to_string(s.output_file("seed")).unwrap();
        assert!(text.lines().all(starts_with_timestamp), "{text}");
        assert!(text.contains("REGISTER request from 127.0.0.1:"), "{text}");
        assert!(text.contains("TOPOLOGY 127.0.0.1:"), "{text}");
    }

    // R21: SIGTERM (peers) and Ctrl+C's SIGINT (seeds) shut nodes down cleanly.
    #[cfg(unix)]
    for p in net.peers.iter_mut().chain(net.seeds.iter_mut()) {
        use nix::sys::signal::Signal;
        let signal = if p.name.starts_with("seed") {
            Signal::SIGINT
        } else {
            Signal::SIGTERM
        };
        let status = p.stop_with(signal);
        assert!(status.success(), "{} exited with {status}", p.name);
        let role = if p.name.starts_with("seed") {
            "seed"
        } else {
            "peer"
        };
        let text = std::fs::read_to_string(p.output_file(role)).unwrap();
        assert!(
            text.trim_end().ends_with("Shutting down."),
            "{}: {text}",
            p.name
        );
        p.poll();
        assert_eq!(p.records.last().map(|r| &r.event), Some(&Event::Shutdown));
    }
}

#[test]
fn seeds_serve_peer_lists_with_degrees_from_reported_links() {
    let mut net = Cluster::with_seeds(2, &["--gossip-count", "0"]);
    for _ in 0..4 {
        net.add_peer();
    }
    let degrees_seen = |net: &mut Cluster| {
        net.poll_all();
        let last = net.peers.last_mut().unwrap();
        last.records
            .iter()
            .filter_map(|r| match &r.event {
                Event::PeerList { peers, .. } => {
                    Some(peers.iter().map(|p| p.degree).max().unwrap_or(0))
                }
                _ => None,
            })
            .max()
    };
    // The fourth peer joined an overlay of three linked peers; some seed
    // must already have told it about a peer with links.
    assert!(
        degrees_seen(&mut net).unwrap() >= 1,
        "no degree reached the last joiner"
    );
    for p in &net.peers[1..] {
        let chosen = p
            .events()
            .find_map(|e| match e {
                Event::NeighborsChosen { chosen, .. } => Some(chosen.len()),
                _ => None,
            })
            .unwrap();
        assert!(chosen >= 1, "{} chose no neighbour", p.name);
    }
}

#[test]
fn a_typed_line_is_gossiped_to_the_other_peers() {
    let mut net = Cluster::with_seeds(2, &["--gossip-count", "0"]);
    net.add_peer();
    let typist = net.add_peer_with(&["--stdin"], true);
    net.add_peer();
    writeln!(net.peers[typist].stdin(), "hello from the keyboard").unwrap();
    net.peers[typist].stdin().flush().unwrap();
    for i in [0, 2] {
        net.peers[i].wait_event("the typed message", Duration::from_secs(10), |e| {
            matches!(e, Event::GossipReceived { msg, .. } if msg.ends_with(":127.0.0.1:hello from the keyboard"))
        });
    }
}

/// R21 with standard input still open: the read of it, which cannot be
/// cancelled, must not keep the stopped peer from exiting.
#[cfg(unix)]
#[test]
fn a_peer_reading_standard_input_exits_at_sigterm_while_the_input_stays_open() {
    let mut net = Cluster::with_seeds(2, &["--gossip-count", "0"]);
    let typist = net.add_peer_with(&["--stdin"], true);
    writeln!(
        net.peers[typist].stdin(),
        "one line, and the pipe stays open"
    )
    .unwrap();
    net.peers[typist].stdin().flush().unwrap();
    net.peers[typist].wait_event("the typed line", Duration::from_secs(10), |e| {
        matches!(e, Event::GossipCreated { .. })
    });
    let status = net.peers[typist].stop_with(nix::sys::signal::Signal::SIGTERM);
    assert!(status.success(), "exited with {status}");
    net.peers[typist].poll();
    assert_eq!(
        net.peers[typist].records.last().map(|r| &r.event),
        Some(&Event::Shutdown)
    );
}
