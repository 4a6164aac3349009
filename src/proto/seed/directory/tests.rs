use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

fn seed(i: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5010 + i))
}

fn peer(i: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 6000 + i))
}

fn directory(n: u16) -> Directory {
    let mut d = Directory::default();
    let seeds = (0..n).map(seed).collect();
    let init = Command::Init {
        seeds,
        max_peers_per_ip: None,
    };
    assert_eq!(d.apply(&init), Outcome::Initialised);
    d
}

/// A key for peer `p`'s life `incarnation`: distinct for each.
fn key(p: u16, incarnation: u64) -> PublicKey {
    let mut bytes = [0; 32];
    bytes[..2].copy_from_slice(&p.to_be_bytes());
    bytes[2..10].copy_from_slice(&incarnation.to_be_bytes());
    PublicKey(bytes)
}

fn add(p: u16, incarnation: u64) -> Change {
    Change::add(peer(p), incarnation, key(p, incarnation))
}

fn remove(p: u16, incarnation: u64) -> Change {
    Change::remove(peer(p), incarnation)
}

fn vote(d: &mut Directory, change: Change, s: u16) -> Outcome {
    d.apply(&Command::Vote {
        change,
        seed: seed(s),
    })
}

#[test]
fn majority_is_floor_half_plus_one() {
    for (n, m) in [(2, 2), (3, 2), (4, 3), (5, 3), (7, 4)] {
        assert_eq!(majority(n), m, "n = {n}");
    }
}

#[test]
fn a_change_commits_exactly_at_the_majority_vote() {
    for n in [2u16, 3, 4, 5, 7] {
        let mut d = directory(n);
        let needed = majority(n as usize);
        for s in 0..needed as u16 - 1 {
            assert!(
                matches!(vote(&mut d, add(1, 1), s), Outcome::VoteCounted { .. }),
                "n = {n}"
            );
            assert!(!d.contains(&peer(1)), "n = {n}: a minority committed");
        }
        let outcome = vote(&mut d, add(1, 1), needed as u16 - 1);
        let Outcome::Committed { voters, seeds } = outcome else {
            panic!("n = {n}: {outcome:?}");
        };
        assert_eq!((voters.len(), seeds), (needed, n as usize));
        assert!(d.contains(&peer(1)));
        // Later votes for the same change are stale, not a second commit.
        if needed < n as usize {
            assert_eq!(
                vote(&mut d, add(1, 1), needed as u16),
                Outcome::Ignored {
                    reason: Ignored::Stale
                }
            );
        }
    }
}

#[test]
fn a_minority_of_seeds_can_never_commit_whatever_it_repeats() {
    let mut d = directory(5);
    for _ in 0..10 {
        for s in 0..2 {
            vote(&mut d, add(1, 1), s);
            vote(&mut d, remove(2, 1), s);
        }
    }
    assert!(d.is_empty());
    assert_eq!(d.pending_votes(&add(1, 1)), 2);
}

#[test]
fn a_duplicate_vote_is_ignored() {
    let mut d = directory(3);
    assert!(matches!(
        vote(&mut d, add(1, 1), 0),
        Outcome::VoteCounted {
            votes: 1,
            needed: 2
        }
    ));
    assert_eq!(
        vote(&mut d, add(1, 1), 0),
        Outcome::Ignored {
            reason: Ignored::DuplicateVote
        }
    );
    assert!(!d.contains(&peer(1)));
}

#[test]
fn votes_from_non_seeds_are_ignored() {
    let mut d = directory(3);
    for outsider in [peer(9), seed(3)] {
        let outcome = d.apply(&Command::Vote {
            change: add(1, 1),
            seed: outsider,
        });
        assert_eq!(
            outcome,
            Outcome::Ignored {
                reason: Ignored::NotASeed
            }
        );
    }
    assert_eq!(d.pending_votes(&add(1, 1)), 0);
}

#[test]
fn no_vote_counts_before_the_seeds_are_named() {
    let mut d = Directory::default();
    assert_eq!(
        vote(&mut d, add(1, 1), 0),
        Outcome::Ignored {
            reason: Ignored::NotASeed
        }
    );
    d.apply(&Command::Init {
        seeds: vec![seed(0), seed(1)],
        max_peers_per_ip: None,
    });
    let again = d.apply(&Command::Init {
        seeds: vec![seed(7)],
        max_peers_per_ip: Some(1),
    });
    assert_eq!(
        again,
        Outcome::Ignored {
            reason: Ignored::AlreadyInitialised
        }
    );
    assert_eq!(d.seeds().collect::<Vec<_>>(), vec![seed(0), seed(1)]);
    assert_eq!(d.max_peers_per_ip(), None, "a second Init sets no cap");
}

#[test]
fn removal_needs_a_majority_and_the_current_incarnation() {
    let mut d = directory(3);
    vote(&mut d, add(1, 5), 0);
    vote(&mut d, add(1, 5), 1);
    assert_eq!(d.incarnation_of(&peer(1)), Some(5));
    // A removal naming an old incarnation is stale.
    assert_eq!(
        vote(&mut d, remove(1, 4), 0),
        Outcome::Ignored {
            reason: Ignored::Stale
        }
    );
    assert!(matches!(
        vote(&mut d, remove(1, 5), 0),
        Outcome::VoteCounted { .. }
    ));
    assert!(d.contains(&peer(1)), "one seed removed a peer");
    assert!(matches!(
        vote(&mut d, remove(1, 5), 2),
        Outcome::Committed { .. }
    ));
    assert!(!d.contains(&peer(1)));
}

#[test]
fn a_removed_incarnation_cannot_come_back_but_a_newer_one_can() {
    let mut d = directory(3);
    vote(&mut d, add(1, 5), 0);
    vote(&mut d, add(1, 5), 1);
    vote(&mut d, remove(1, 5), 0);
    vote(&mut d, remove(1, 5), 1);
    // A late Add vote for the removed life.
    assert_eq!(
        vote(&mut d, add(1, 5), 2),
        Outcome::Ignored {
            reason: Ignored::Stale
        }
    );
    vote(&mut d, add(1, 6), 0);
    vote(&mut d, add(1, 6), 2);
    assert_eq!(d.incarnation_of(&peer(1)), Some(6));
}

#[test]
fn a_peers_key_is_committed_with_its_registration_and_goes_with_it() {
    let mut d = directory(3);
    vote(&mut d, add(1, 5), 0);
    assert_eq!(d.key_of(&peer(1)), None, "before the commit");
    vote(&mut d, add(1, 5), 1);
    assert_eq!(d.key_of(&peer(1)), Some(key(1, 5)));
    // A new life brings its own key.
    vote(&mut d, add(1, 6), 0);
    vote(&mut d, add(1, 6), 1);
    assert_eq!(d.key_of(&peer(1)), Some(key(1, 6)));
    // A snapshot keeps the keys.
    let restored: Directory = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
    assert_eq!(restored.key_of(&peer(1)), Some(key(1, 6)));
    vote(&mut d, remove(1, 6), 0);
    vote(&mut d, remove(1, 6), 2);
    assert_eq!(d.key_of(&peer(1)), None, "a removed life's key is gone");
}

#[test]
fn votes_for_one_life_with_different_keys_do_not_add_up() {
    let mut d = directory(3);
    let forged = Change {
        key: Some(key(9, 9)),
        ..add(1, 5)
    };
    vote(&mut d, add(1, 5), 0);
    assert!(matches!(
        vote(&mut d, forged, 1),
        Outcome::VoteCounted { votes: 1, .. }
    ));
    assert!(!d.contains(&peer(1)));
    assert!(matches!(
        vote(&mut d, add(1, 5), 2),
        Outcome::Committed { .. }
    ));
    assert_eq!(d.key_of(&peer(1)), Some(key(1, 5)));
    assert_eq!(d.pending_votes(&forged), 0, "the moot vote went too");
}

#[test]
fn a_snapshot_written_before_keys_existed_still_loads() {
    let mut d = directory(3);
    vote(&mut d, add(1, 5), 0);
    vote(&mut d, add(1, 5), 1);
    let mut json: serde_json::Value = serde_json::to_value(&d).unwrap();
    json.as_object_mut().unwrap().remove("keys");
    let old: Directory = serde_json::from_value(json).unwrap();
    assert_eq!(old.incarnation_of(&peer(1)), Some(5));
    assert_eq!(old.key_of(&peer(1)), None);
}

#[test]
fn conflicting_add_and_remove_resolve_by_log_order() {
    // Registered at 1; a removal of 1 and a re-add at 2 are both pending.
    let base = {
        let mut d = directory(3);
        vote(&mut d, add(1, 1), 0);
        vote(&mut d, add(1, 1), 1);
        vote(&mut d, remove(1, 1), 0);
        vote(&mut d, add(1, 2), 1);
        d
    };
    // Remove completes first: the peer is gone, then the newer life joins.
    let mut d = base.clone();
    assert!(matches!(
        vote(&mut d, remove(1, 1), 2),
        Outcome::Committed { .. }
    ));
    assert!(!d.contains(&peer(1)));
    assert!(matches!(
        vote(&mut d, add(1, 2), 2),
        Outcome::Committed { .. }
    ));
    assert_eq!(d.incarnation_of(&peer(1)), Some(2));
    // Add completes first: the pending removal of the old life is moot.
    let mut d = base;
    assert!(matches!(
        vote(&mut d, add(1, 2), 2),
        Outcome::Committed { .. }
    ));
    assert_eq!(d.pending_votes(&remove(1, 1)), 0, "stale votes were kept");
    assert_eq!(
        vote(&mut d, remove(1, 1), 2),
        Outcome::Ignored {
            reason: Ignored::Stale
        }
    );
    assert_eq!(d.incarnation_of(&peer(1)), Some(2));
}

#[test]
fn links_count_only_between_registered_peers() {
    let mut d = directory(2);
    for p in [1, 2] {
        vote(&mut d, add(p, 1), 0);
        vote(&mut d, add(p, 1), 1);
    }
    let links = |p: u16, ns: &[u16]| Command::Links {
        peer: peer(p),
        neighbors: ns.iter().map(|n| peer(*n)).collect(),
        incarnation: 1,
        seq: 0,
    };
    assert_eq!(d.apply(&links(1, &[2, 3])), Outcome::LinksRecorded);
    assert_eq!(
        d.apply(&links(1, &[3, 2])),
        Outcome::Ignored {
            reason: Ignored::Unchanged
        },
        "the same report from a second seed changed something"
    );
    assert_eq!(
        d.apply(&links(3, &[1])),
        Outcome::Ignored {
            reason: Ignored::UnknownPeer
        }
    );
    assert_eq!(d.edges().len(), 1, "{:?}", d.edges());
    let degrees: Vec<_> = d.peer_list().iter().map(|e| e.degree).collect();
    assert_eq!(degrees, vec![1, 1]);
    // Removing peer 2 removes its edge from everyone's degree.
    vote(&mut d, remove(2, 1), 0);
    vote(&mut d, remove(2, 1), 1);
    assert_eq!(d.peer_list()[0].degree, 0);
}

/// A long random log of votes and link reports.
fn random_log(seed_value: u64) -> Vec<Command> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed_value);
    let mut log = vec![Command::Init {
        seeds: (0..5).map(seed).collect(),
        // Below the 20 addresses used, all of one IP: some Adds are
        // refused at their commit, and replicas must agree on which.
        max_peers_per_ip: Some(12),
    }];
    for _ in 0..2_000 {
        let p = rng.random_range(0..20);
        let incarnation = rng.random_range(1..4);
        let command = match rng.random_range(0..10) {
            0..=5 => Command::Vote {
                change: add(p, incarnation),
                seed: seed(rng.random_range(0..6)),
            },
            6..=8 => Command::Vote {
                change: remove(p, incarnation),
                seed: seed(rng.random_range(0..6)),
            },
            // Numbered reports of random lives, in a random order, and
            // now and then an unnumbered one, as older logs hold.
            _ => Command::Links {
                peer: peer(p),
                neighbors: (0..3).map(|_| peer(rng.random_range(0..20))).collect(),
                incarnation,
                seq: rng.random_range(0..8),
            },
        };
        log.push(command);
    }
    log
}

#[test]
fn replaying_the_same_log_gives_the_same_state_and_outcomes() {
    for s in 0..20 {
        let log = random_log(s);
        let run = || {
            let mut d = Directory::default();
            let outcomes: Vec<Outcome> = log.iter().map(|c| d.apply(c)).collect();
            (d, outcomes)
        };
        let (a, outcomes_a) = run();
        let (b, outcomes_b) = run();
        assert_eq!(a, b);
        assert_eq!(outcomes_a, outcomes_b);
        // And a state restored from a snapshot continues identically.
        let half = log.len() / 2;
        let mut first = Directory::default();
        log[..half].iter().for_each(|c| {
            first.apply(c);
        });
        let mut restored: Directory =
            serde_json::from_str(&serde_json::to_string(&first).unwrap()).unwrap();
        log[half..].iter().for_each(|c| {
            restored.apply(c);
        });
        assert_eq!(restored, a, "log seed {s}");
        // The restored index, rebuilt from the snapshot, agrees too.
        assert_eq!(restored.peer_list(), a.peer_list(), "log seed {s}");
        assert_eq!(restored.adjacency(), a.adjacency(), "log seed {s}");
    }
}

#[test]
fn every_commit_in_a_random_log_had_a_majority_of_distinct_seeds() {
    for s in 0..20 {
        let mut d = Directory::default();
        for c in random_log(s) {
            if let Outcome::Committed { voters, seeds } = d.apply(&c) {
                let distinct: BTreeSet<_> = voters.iter().collect();
                assert!(distinct.len() >= majority(seeds));
                assert!(voters.iter().all(|v| v.port() < 5015), "a non-seed voted");
            }
        }
    }
}

#[test]
fn neighbours_and_degrees_agree_with_the_edges_in_random_logs() {
    for s in 0..10 {
        let mut d = Directory::default();
        for (i, c) in random_log(s).iter().enumerate() {
            d.apply(c);
            if i % 50 != 0 {
                continue;
            }
            // The reference: the edge set, computed from the link reports
            // alone, against the index kept up to date entry by entry.
            let mut adjacency: BTreeMap<SocketAddr, BTreeSet<SocketAddr>> =
                d.peers().map(|(p, _)| (p, BTreeSet::new())).collect();
            for (a, b) in d.edges() {
                adjacency.get_mut(&a).unwrap().insert(b);
                adjacency.get_mut(&b).unwrap().insert(a);
            }
            assert_eq!(d.adjacency(), adjacency, "log {s}, entry {i}");
            let degrees: Vec<(SocketAddr, u32)> = adjacency
                .iter()
                .map(|(p, links)| (*p, links.len() as u32))
                .collect();
            let listed: Vec<(SocketAddr, u32)> =
                d.peer_list().iter().map(|e| (e.addr, e.degree)).collect();
            assert_eq!(listed, degrees, "log {s}, entry {i}");
            for p in 0..20 {
                let want = adjacency.get(&peer(p)).cloned().unwrap_or_default();
                assert_eq!(
                    d.neighbors_of(&peer(p)),
                    want,
                    "log {s}, entry {i}, peer {p}"
                );
            }
        }
    }
}

#[test]
fn a_large_peer_list_is_a_uniform_sample_with_true_degrees() {
    let mut d = directory(1);
    for p in 0..300 {
        vote(&mut d, add(p, 1), 0);
    }
    // A star: peer 0 linked to the first hundred.
    d.apply(&Command::Links {
        peer: peer(0),
        neighbors: (1..=100).map(peer).collect(),
        incarnation: 1,
        seq: 1,
    });
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    assert_eq!(d.peer_list_sample(300, &mut rng), d.peer_list());
    let mut times_listed: BTreeMap<SocketAddr, usize> = BTreeMap::new();
    for _ in 0..400 {
        let sample = d.peer_list_sample(50, &mut rng);
        assert_eq!(sample.len(), 50);
        let distinct: BTreeSet<_> = sample.iter().map(|e| e.addr).collect();
        assert_eq!(distinct.len(), 50, "a peer listed twice");
        for e in &sample {
            assert_eq!(e.degree, d.degree_of(&e.addr));
            *times_listed.entry(e.addr).or_default() += 1;
        }
    }
    // Each peer is listed about 400 * 50 / 300 = 67 times, the hub no
    // more than the others.
    assert_eq!(times_listed.len(), 300);
    for (p, n) in &times_listed {
        assert!((30..=110).contains(n), "{p} listed {n} times");
    }
    assert_eq!(d.degree_of(&peer(0)), 100);
    // A removed peer leaves the samples.
    vote(&mut d, remove(5, 1), 0);
    for _ in 0..100 {
        let sample = d.peer_list_sample(100, &mut rng);
        assert!(sample.iter().all(|e| e.addr != peer(5)));
    }
    assert_eq!(d.degree_of(&peer(0)), 99);
}

/// A directory of `n` seeds whose `Init` commits `cap` peers per IP.
fn capped(n: u16, cap: u32) -> Directory {
    let mut d = Directory::default();
    let init = Command::Init {
        seeds: (0..n).map(seed).collect(),
        max_peers_per_ip: Some(cap),
    };
    assert_eq!(d.apply(&init), Outcome::Initialised);
    d
}

#[test]
fn racing_adds_from_one_ip_commit_only_up_to_the_cap_on_every_replica() {
    const CAP: usize = 10;
    let mut rng = ChaCha8Rng::seed_from_u64(20);
    // 30 peers of 127.0.0.1, each voted by a majority (3 of 5 seeds), the
    // votes interleaved in the log as racing registrations would leave
    // them: every seed checked its request against a directory with none
    // of them in it.
    let mut votes: Vec<Command> = Vec::new();
    for p in 1..=30u16 {
        for s in 0..3 {
            votes.push(Command::Vote {
                change: add(p, 1),
                seed: seed((p + s) % 5),
            });
        }
    }
    for i in (1..votes.len()).rev() {
        votes.swap(i, rng.random_range(0..=i));
    }
    let replicas: Vec<(Directory, Vec<Outcome>)> = (0..3)
        .map(|_| {
            let mut d = capped(5, CAP as u32);
            let outcomes = votes.iter().map(|c| d.apply(c)).collect();
            (d, outcomes)
        })
        .collect();
    let (d, outcomes) = &replicas[0];
    let committed = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Committed { .. }))
        .count();
    let refused: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Refused { .. }))
        .collect();
    assert_eq!(committed, CAP, "{outcomes:?}");
    assert_eq!(d.len(), CAP);
    assert_eq!(refused.len(), 30 - CAP);
    for r in refused {
        let Outcome::Refused { voters, reason } = r else {
            unreachable!()
        };
        assert_eq!(
            voters.len(),
            3,
            "refused at the vote that made the majority"
        );
        assert_eq!(
            *reason,
            Refusal::OverIpCap {
                ip: peer(0).ip(),
                registered: CAP,
                cap: CAP as u32
            }
        );
    }
    for (other, other_outcomes) in &replicas[1..] {
        assert_eq!(other, d, "replicas of one log disagree");
        assert_eq!(other_outcomes, outcomes);
    }
    // Refused votes are not left pending, and another IP has its own cap.
    assert!((1..=30).all(|p| d.pending_votes(&add(p, 1)) == 0));
    let elsewhere = SocketAddr::from(([127, 0, 0, 2], 6001));
    let change = Change::add(elsewhere, 1, key(1, 1));
    let mut d = d.clone();
    let last = (0..3)
        .map(|s| {
            d.apply(&Command::Vote {
                change,
                seed: seed(s),
            })
        })
        .last();
    assert!(matches!(last, Some(Outcome::Committed { .. })), "{last:?}");
}

#[test]
fn a_new_life_of_a_registered_peer_does_not_count_against_the_cap_twice() {
    let mut d = capped(3, 2);
    for change in [add(1, 1), add(2, 1), add(1, 2)] {
        vote(&mut d, change, 0);
        let outcome = vote(&mut d, change, 1);
        assert!(
            matches!(outcome, Outcome::Committed { .. }),
            "{change}: {outcome:?}"
        );
    }
    assert_eq!(d.incarnation_of(&peer(1)), Some(2));
    vote(&mut d, add(3, 1), 0);
    assert!(matches!(
        vote(&mut d, add(3, 1), 1),
        Outcome::Refused { .. }
    ));
    assert_eq!(d.len(), 2);
    // Once one of them is removed, there is room again.
    vote(&mut d, remove(2, 1), 0);
    vote(&mut d, remove(2, 1), 1);
    vote(&mut d, add(3, 1), 0);
    assert!(matches!(
        vote(&mut d, add(3, 1), 2),
        Outcome::Committed { .. }
    ));
}

#[test]
fn the_cap_travels_in_init_and_logs_and_snapshots_without_it_still_load() {
    let old_init: Command =
        serde_json::from_str(r#"{"op":"init","seeds":["127.0.0.1:5010"]}"#).unwrap();
    let uncapped = Command::Init {
        seeds: vec![seed(0)],
        max_peers_per_ip: None,
    };
    assert_eq!(old_init, uncapped);
    assert_eq!(
        serde_json::to_string(&uncapped).unwrap(),
        r#"{"op":"init","seeds":["127.0.0.1:5010"]}"#,
        "an uncapped Init is written as before"
    );
    let d = capped(3, 4);
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["max_peers_per_ip"], 4);
    let restored: Directory = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(restored.max_peers_per_ip(), Some(4));
    let mut old = json;
    old.as_object_mut().unwrap().remove("max_peers_per_ip");
    let old: Directory = serde_json::from_value(old).unwrap();
    assert_eq!(old.max_peers_per_ip(), None);
    assert!(old.is_initialised());
}

#[test]
fn peers_at_one_ip_are_found_among_other_ips_and_families() {
    let mut d = directory(3);
    let addrs: Vec<SocketAddr> = [
        "127.0.0.1:1",
        "127.0.0.1:65535",
        "127.0.0.0:65535",
        "127.0.0.2:0",
        "[::1]:0",
        "[::1]:9",
        "[::ffff:127.0.0.1]:5",
        "[::2]:1",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect();
    for (i, a) in addrs.iter().enumerate() {
        let change = Change::add(*a, 1, key(i as u16, 1));
        for s in 0..2 {
            d.apply(&Command::Vote {
                change,
                seed: seed(s),
            });
        }
    }
    assert_eq!(d.len(), addrs.len());
    let at = |ip: &str| -> Vec<SocketAddr> { d.peers_at_ip(ip.parse().unwrap()).collect() };
    assert_eq!(at("127.0.0.1"), addrs[..2].to_vec());
    assert_eq!(at("::1"), addrs[4..6].to_vec());
    assert_eq!(at("::ffff:127.0.0.1"), addrs[6..7].to_vec());
    assert!(at("10.0.0.1").is_empty());
}

/// Report `seq` of peer `p`'s life `incarnation`: linked to `ns`.
fn report(p: u16, incarnation: u64, seq: u64, ns: &[u16]) -> Command {
    Command::Links {
        peer: peer(p),
        neighbors: ns.iter().map(|n| peer(*n)).collect(),
        incarnation,
        seq,
    }
}

fn recorded(d: &Directory, p: u16) -> Option<Vec<u16>> {
    d.reported_links(&peer(p))
        .map(|set| set.iter().map(|a| a.port() - 6000).collect())
}

const OUT_OF_ORDER: Outcome = Outcome::Ignored {
    reason: Ignored::OutOfOrder,
};

const UNCHANGED: Outcome = Outcome::Ignored {
    reason: Ignored::Unchanged,
};

/// Peers 1 to 4 registered at life 1 with two seeds.
fn four_peers() -> Directory {
    let mut d = directory(2);
    for p in 1..=4 {
        vote(&mut d, add(p, 1), 0);
        vote(&mut d, add(p, 1), 1);
    }
    d
}

#[test]
fn link_reports_committed_newest_first_keep_the_newest() {
    // A repair burst: peer 1 lost 2, then gained 4, then lost 3, and the
    // log holds the three reports newest first.
    let mut d = four_peers();
    assert_eq!(d.apply(&report(1, 1, 1, &[2, 3])), Outcome::LinksRecorded);
    assert_eq!(d.apply(&report(1, 1, 4, &[4])), Outcome::LinksRecorded);
    assert_eq!(d.apply(&report(1, 1, 3, &[3, 4])), OUT_OF_ORDER);
    assert_eq!(d.apply(&report(1, 1, 2, &[3])), OUT_OF_ORDER);
    assert_eq!(recorded(&d, 1), Some(vec![4]));
    assert_eq!(d.link_seq(&peer(1)), Some(4));
    assert_eq!(d.neighbors_of(&peer(3)), BTreeSet::new());
    assert_eq!(d.degree_of(&peer(4)), 1);
    // A repeat of the newest, through another seed, changes nothing.
    assert_eq!(d.apply(&report(1, 1, 4, &[4])), OUT_OF_ORDER);
    assert_eq!(d.apply(&report(1, 1, 5, &[4])), UNCHANGED);
}

#[test]
fn a_newer_report_of_the_same_set_still_shuts_out_an_older_different_one() {
    // Reports 1 and 3 name the same set, report 2 another: 3 changes
    // nothing, but 2 must not apply after it.
    let mut d = four_peers();
    assert_eq!(d.apply(&report(1, 1, 1, &[2])), Outcome::LinksRecorded);
    assert_eq!(d.apply(&report(1, 1, 3, &[2])), UNCHANGED);
    assert_eq!(d.apply(&report(1, 1, 2, &[2, 3])), OUT_OF_ORDER);
    assert_eq!(recorded(&d, 1), Some(vec![2]));
}

#[test]
fn a_report_of_another_life_is_left_out_and_a_new_life_numbers_afresh() {
    let mut d = four_peers();
    assert_eq!(d.apply(&report(1, 1, 7, &[2])), Outcome::LinksRecorded);
    // Restarted: life 2 replaces life 1, and its links start empty.
    vote(&mut d, add(1, 2), 0);
    vote(&mut d, add(1, 2), 1);
    assert_eq!(recorded(&d, 1), None);
    assert_eq!(d.link_seq(&peer(1)), None);
    // Life 1's last report, late, cannot stand for life 2.
    assert_eq!(d.apply(&report(1, 1, 8, &[3])), OUT_OF_ORDER);
    // Life 2 counts from 1 again.
    assert_eq!(d.apply(&report(1, 2, 1, &[4])), Outcome::LinksRecorded);
    assert_eq!(recorded(&d, 1), Some(vec![4]));
    // A report of a life not yet registered is left out too.
    assert_eq!(d.apply(&report(1, 3, 9, &[3])), OUT_OF_ORDER);
    assert_eq!(
        d.apply(&report(9, 1, 1, &[3])),
        Outcome::Ignored {
            reason: Ignored::UnknownPeer
        }
    );
}

#[test]
fn unnumbered_reports_of_older_logs_apply_as_they_come() {
    let mut d = four_peers();
    assert_eq!(d.apply(&report(1, 0, 0, &[2])), Outcome::LinksRecorded);
    assert_eq!(d.apply(&report(1, 0, 0, &[3])), Outcome::LinksRecorded);
    assert_eq!(recorded(&d, 1), Some(vec![3]));
    // An entry written before the fields existed reads as unnumbered.
    let old: Command = serde_json::from_str(
        r#"{"op":"links","peer":"127.0.0.1:6001","neighbors":["127.0.0.1:6004"]}"#,
    )
    .unwrap();
    assert_eq!(old, report(1, 0, 0, &[4]));
    assert_eq!(d.apply(&old), Outcome::LinksRecorded);
}

#[test]
fn the_newest_report_number_survives_a_snapshot_and_older_snapshots_load() {
    let mut d = four_peers();
    d.apply(&report(1, 1, 5, &[2]));
    let json = serde_json::to_string(&d).unwrap();
    let mut restored: Directory = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, d);
    assert_eq!(restored.apply(&report(1, 1, 4, &[3])), OUT_OF_ORDER);
    // A snapshot from before reports were numbered has no `link_seqs`.
    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    value.as_object_mut().unwrap().remove("link_seqs").unwrap();
    let mut old: Directory = serde_json::from_value(value).unwrap();
    assert_eq!(recorded(&old, 1), Some(vec![2]));
    assert_eq!(old.apply(&report(1, 1, 4, &[3])), Outcome::LinksRecorded);
}

#[test]
fn in_any_commit_order_a_peers_reports_leave_its_newest_set() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for round in 0..200 {
        let mut d = four_peers();
        // Up to six reports of peer 1, each a random set, some equal.
        let sets: Vec<Vec<u16>> = (0..rng.random_range(1..=6))
            .map(|_| (2..=4).filter(|_| rng.random_bool(0.5)).collect())
            .collect();
        let mut order: Vec<usize> = (0..sets.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        for &i in &order {
            d.apply(&report(1, 1, i as u64 + 1, &sets[i]));
        }
        assert_eq!(
            recorded(&d, 1).as_ref(),
            sets.last(),
            "round {round}: reports {sets:?} committed in the order {order:?}"
        );
    }
}

fn seed_key(i: u8) -> PublicKey {
    PublicKey([i; 32])
}

fn rekey(d: &mut Directory, s: u16, old: u8, new: u8, voter: u16) -> Outcome {
    d.apply(&Command::Rekey {
        seed: seed(s),
        old: seed_key(old),
        new: seed_key(new),
        voter: seed(voter),
    })
}

#[test]
fn the_first_committed_seed_key_is_pinned_and_a_later_different_one_is_ignored() {
    let mut d = directory(3);
    let pin = |s, k| Command::SeedKey {
        seed: seed(s),
        key: seed_key(k),
    };
    assert_eq!(d.apply(&pin(1, 7)), Outcome::SeedKeyPinned);
    assert_eq!(d.seed_key(&seed(1)), Some(seed_key(7)));
    // A process on seed 1's port, with a key of its own, proposes it.
    assert_eq!(
        d.apply(&pin(1, 9)),
        Outcome::Ignored {
            reason: Ignored::KeyAlreadyPinned
        }
    );
    assert_eq!(
        d.seed_key(&seed(1)),
        Some(seed_key(7)),
        "the first key wins"
    );
    assert_eq!(
        d.apply(&pin(1, 7)),
        Outcome::Ignored {
            reason: Ignored::Unchanged
        }
    );
    // Only the seeds of Init have keys pinned.
    let stranger = Command::SeedKey {
        seed: peer(1),
        key: seed_key(3),
    };
    assert_eq!(
        d.apply(&stranger),
        Outcome::Ignored {
            reason: Ignored::NotASeed
        }
    );
    assert_eq!(d.seed_key(&peer(1)), None);
    assert_eq!(d.seed_key(&seed(0)), None, "seed 0 has proposed none yet");
}

#[test]
fn pinned_seed_keys_travel_in_snapshots_and_old_snapshots_still_load() {
    let mut d = directory(3);
    d.apply(&Command::SeedKey {
        seed: seed(0),
        key: seed_key(1),
    });
    d.apply(&Command::SeedKey {
        seed: seed(1),
        key: seed_key(2),
    });
    rekey(&mut d, 1, 2, 5, 0);
    let json = serde_json::to_value(&d).unwrap();
    let restored: Directory = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(restored, d);
    assert_eq!(restored.seed_key(&seed(1)), Some(seed_key(2)));
    assert_eq!(
        restored
            .rekey_voters(seed(1), seed_key(2), seed_key(5))
            .collect::<Vec<_>>(),
        vec![seed(0)],
        "a pending rekey vote survives the snapshot"
    );
    // A snapshot written before seed keys were pinned has neither field.
    let mut old = json;
    let object = old.as_object_mut().unwrap();
    object.remove("seed_keys");
    object.remove("rekey_votes");
    let old: Directory = serde_json::from_value(old).unwrap();
    assert!(old.is_initialised());
    assert_eq!(old.seed_key(&seed(0)), None);
    // And a directory without pinned keys is written as before.
    let fresh = serde_json::to_value(directory(3)).unwrap();
    assert!(fresh.get("seed_keys").is_none(), "{fresh}");
    assert!(fresh.get("rekey_votes").is_none(), "{fresh}");
}

#[test]
fn a_pinned_seed_key_is_replaced_only_by_a_majority_of_seeds() {
    let mut d = directory(3);
    d.apply(&Command::SeedKey {
        seed: seed(2),
        key: seed_key(1),
    });
    assert_eq!(
        rekey(&mut d, 2, 1, 8, 0),
        Outcome::VoteCounted {
            votes: 1,
            needed: 2
        }
    );
    assert_eq!(
        rekey(&mut d, 2, 1, 8, 0),
        Outcome::Ignored {
            reason: Ignored::DuplicateVote
        }
    );
    assert_eq!(
        d.seed_key(&seed(2)),
        Some(seed_key(1)),
        "one seed is not enough"
    );
    // A vote for another new key does not add up with it.
    assert_eq!(
        rekey(&mut d, 2, 1, 9, 1),
        Outcome::VoteCounted {
            votes: 1,
            needed: 2
        }
    );
    assert_eq!(
        rekey(&mut d, 2, 1, 8, 1),
        Outcome::SeedRekeyed {
            voters: vec![seed(0), seed(1)]
        }
    );
    assert_eq!(d.seed_key(&seed(2)), Some(seed_key(8)));
    assert_eq!(
        d.rekey_voters(seed(2), seed_key(1), seed_key(9)).count(),
        0,
        "votes about the replaced key are dropped"
    );
    // An order recorded before, replayed now, names the replaced key.
    assert_eq!(
        rekey(&mut d, 2, 1, 9, 0),
        Outcome::Ignored {
            reason: Ignored::Stale
        }
    );
    // A seed with no key pinned has nothing to replace; a voter must be a
    // seed.
    assert_eq!(
        rekey(&mut d, 0, 1, 2, 1),
        Outcome::Ignored {
            reason: Ignored::Stale
        }
    );
    let outsider = Command::Rekey {
        seed: seed(2),
        old: seed_key(8),
        new: seed_key(3),
        voter: peer(1),
    };
    assert_eq!(
        d.apply(&outsider),
        Outcome::Ignored {
            reason: Ignored::NotASeed
        }
    );
    // Once replaced, a SeedKey with the old key is ignored like any other.
    let old_again = Command::SeedKey {
        seed: seed(2),
        key: seed_key(1),
    };
    assert_eq!(
        d.apply(&old_again),
        Outcome::Ignored {
            reason: Ignored::KeyAlreadyPinned
        }
    );
}

fn seeds_entry(sets: &[&[u16]], learners: &[u16]) -> Command {
    Command::Seeds {
        voters: sets
            .iter()
            .map(|set| set.iter().map(|i| seed(*i)).collect())
            .collect(),
        learners: learners.iter().map(|i| seed(*i)).collect(),
    }
}

fn seed_change(d: &mut Directory, add: Option<u16>, remove: Option<u16>, voter: u16) -> Outcome {
    d.apply(&Command::SeedChange {
        add: add.map(seed),
        remove: remove.map(seed),
        voter: seed(voter),
    })
}

#[test]
fn after_a_membership_entry_majorities_count_in_the_new_seed_set() {
    let mut d = directory(3);
    // Seeds 0..3 become 0, 1, 2, 3: a majority is now three.
    assert_eq!(
        d.apply(&seeds_entry(&[&[0, 1, 2, 3]], &[])),
        Outcome::SeedsChanged
    );
    assert_eq!(d.quorum(), 3);
    vote(&mut d, add(1, 1), 0);
    vote(&mut d, add(1, 1), 3);
    assert!(!d.contains(&peer(1)));
    assert!(matches!(
        vote(&mut d, add(1, 1), 1),
        Outcome::Committed { .. }
    ));
    // Seed 2 removed: its votes no longer count, nor may it vote.
    d.apply(&seeds_entry(&[&[0, 1, 3]], &[]));
    assert_eq!(
        vote(&mut d, add(2, 1), 2),
        Outcome::Ignored {
            reason: Ignored::NotASeed
        }
    );
}

#[test]
fn during_a_joint_change_a_vote_needs_a_majority_of_each_set() {
    let mut d = directory(3);
    // Old {0,1,2}, new {1,2,3}: the votes of 0 and 3 make one of three
    // in each set, a majority of neither.
    d.apply(&seeds_entry(&[&[0, 1, 2], &[1, 2, 3]], &[]));
    vote(&mut d, add(1, 1), 0);
    assert!(matches!(
        vote(&mut d, add(1, 1), 3),
        Outcome::VoteCounted { .. }
    ));
    assert!(!d.contains(&peer(1)));
    // 1 is in both: now each set has two of three.
    assert!(matches!(
        vote(&mut d, add(1, 1), 1),
        Outcome::Committed { .. }
    ));
}

#[test]
fn a_seed_change_is_approved_at_a_majority_and_done_when_the_membership_shows_it() {
    let mut d = directory(3);
    d.apply(&seeds_entry(&[&[0, 1, 2]], &[]));
    assert!(matches!(
        seed_change(&mut d, Some(3), None, 0),
        Outcome::VoteCounted {
            votes: 1,
            needed: 2
        }
    ));
    assert!(matches!(
        seed_change(&mut d, Some(3), None, 1),
        Outcome::SeedChangeApproved { .. }
    ));
    let change = SeedChange {
        add: Some(seed(3)),
        remove: None,
    };
    assert_eq!(d.approved_seed_changes().collect::<Vec<_>>(), vec![change]);
    // Learner, then joint, then the new set: only the last one makes it done.
    d.apply(&seeds_entry(&[&[0, 1, 2]], &[3]));
    d.apply(&seeds_entry(&[&[0, 1, 2], &[0, 1, 2, 3]], &[]));
    assert_eq!(d.approved_seed_changes().count(), 1);
    d.apply(&seeds_entry(&[&[0, 1, 2, 3]], &[]));
    assert_eq!(d.approved_seed_changes().count(), 0);
    assert!(d.is_voter(&seed(3)));
}

#[test]
fn moot_seed_changes_and_votes_of_non_seeds_are_ignored() {
    let mut d = directory(3);
    d.apply(&seeds_entry(&[&[0, 1, 2]], &[]));
    let moot = Outcome::Ignored {
        reason: Ignored::SeedChangeMoot,
    };
    assert_eq!(seed_change(&mut d, Some(1), None, 0), moot);
    assert_eq!(seed_change(&mut d, None, Some(7), 0), moot);
    assert_eq!(seed_change(&mut d, Some(1), Some(1), 0), moot);
    assert_eq!(
        seed_change(&mut d, Some(3), None, 9),
        Outcome::Ignored {
            reason: Ignored::NotASeed
        }
    );
}

#[test]
fn a_removed_seed_loses_its_pinned_key_but_one_to_come_back_keeps_it() {
    let mut d = directory(3);
    d.apply(&seeds_entry(&[&[0, 1, 2]], &[]));
    for i in 0..3 {
        d.apply(&Command::SeedKey {
            seed: seed(i),
            key: PublicKey([i as u8 + 1; 32]),
        });
    }
    // Seed 2 lost its log: taken out, it is to be added back, key kept.
    assert_eq!(
        d.apply(&Command::SeedRejoin { seed: seed(2) }),
        Outcome::SeedRejoinRequested
    );
    d.apply(&seeds_entry(&[&[0, 1]], &[]));
    assert_eq!(d.seed_key(&seed(2)), Some(PublicKey([3; 32])));
    assert_eq!(d.rejoining_seeds().count(), 0);
    assert_eq!(
        d.approved_seed_changes().collect::<Vec<_>>(),
        vec![SeedChange {
            add: Some(seed(2)),
            remove: None
        }]
    );
    // Seed 1 removed for good: its key goes.
    d.apply(&seeds_entry(&[&[0, 2]], &[]));
    assert_eq!(d.seed_key(&seed(1)), None);
}
