//! Failure detection latency with 3 seeds and 50 peers on loopback (real
//! processes, the test suite's fixtures), pinging every second:
//!
//! - SIGKILL to the removal committed on every seed;
//! - SIGKILL to the last former neighbour's `dead_confirmed`;
//! - SIGSTOP to the removal committed on every seed;
//! - SIGTERM (a clean stop: the peer sends LEAVE) to the removal committed
//!   on every seed, and to the last former neighbour's `left`.
//!
//! Each trial freezes or kills one peer picked at random, waits for the
//! removal, then starts a fresh peer so that the network stays at 50.
//! Times come from the nodes' own event timestamps (one clock: one host).
//! Prints p50, p99 and max per measure, and every removal of a peer that
//! was not a victim (a false removal).
//!
//! Run: `cargo bench --bench failure_detection` (`-- 50` for 50 trials;
//! `-- sigkill sigterm` for only those cases).

#[path = "../tests/common/mod.rs"]
mod common;

use std::{collections::BTreeSet, net::SocketAddr, time::Duration};

use common::{committed_topology, Cluster};
use gossipnet::proto::Event;
use nix::{sys::signal, unistd::Pid};
use rand::{seq::IteratorRandom, SeedableRng};

const PEERS: usize = 50;
const DEADLINE: Duration = Duration::from_secs(30);

/// When `event` first matched in `proc`'s stream, waiting for it if needed.
fn time_of(proc: &mut common::Proc, what: &str, event: impl Fn(&Event) -> bool) -> u64 {
    proc.wait_event(what, DEADLINE, &event);
    proc.records
        .iter()
        .find(|r| event(&r.event))
        .map(|r| r.ts_us)
        .expect("waited for it")
}

#[derive(Default)]
struct Samples {
    removed_ms: Vec<f64>,
    last_confirmed_ms: Vec<f64>,
    victims: Vec<SocketAddr>,
}

fn run(
    signal: signal::Signal,
    trials: usize,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> (Samples, Vec<SocketAddr>) {
    let mut net = Cluster::with_seeds(3, &["--gossip-count", "0", "--ping-interval", "1s"]);
    for _ in 0..PEERS {
        net.add_peer();
    }
    let mut samples = Samples::default();
    for trial in 0..trials {
        // A victim whose links are committed: not one of the newest peers.
        let gone: Vec<SocketAddr> = samples.victims.clone();
        let seed = net.seeds[0].addr();
        let adjacency = common::wait_for(
            "the committed topology",
            DEADLINE,
            || committed_topology(seed, &gone).filter(|t| t.len() >= PEERS - 5),
            || format!("{:?}", committed_topology(seed, &gone)),
        );
        let victim = *adjacency.keys().choose(rng).unwrap();
        let neighbours: BTreeSet<SocketAddr> = adjacency[&victim].clone();
        let v = net.peers.iter().position(|p| p.addr() == victim).unwrap();
        let pid = Pid::from_raw(net.peers[v].child.id() as i32);
        let t0 = common::unix_us();
        signal::kill(pid, signal).unwrap();

        let is_removal =
            |e: &Event| matches!(e, Event::RemoveCommitted { peer, .. } if *peer == victim);
        let removed = net
            .seeds
            .iter_mut()
            .map(|s| time_of(s, "the removal", is_removal))
            .max()
            .unwrap();
        // A peer that leaves is dropped on its LEAVE, not confirmed dead.
        let leaves = signal == signal::Signal::SIGTERM;
        let confirmed = |e: &Event| match e {
            Event::DeadConfirmed { peer } => !leaves && *peer == victim,
            Event::Left { peer, .. } => leaves && *peer == victim,
            _ => false,
        };
        let last_confirmed = neighbours
            .iter()
            .map(|n| {
                let i = net.peers.iter().position(|p| p.addr() == *n).unwrap();
                time_of(&mut net.peers[i], "the confirmation", confirmed)
            })
            .max()
            .unwrap_or(removed);
        let ms = |t: u64| t.saturating_sub(t0) as f64 / 1000.0;
        samples.removed_ms.push(ms(removed));
        samples.last_confirmed_ms.push(ms(last_confirmed));
        samples.victims.push(victim);
        eprintln!(
            "{signal} trial {}/{trials}: {victim} ({} neighbours) removed after {:.1} ms, last neighbour told after {:.1} ms",
            trial + 1,
            neighbours.len(),
            ms(removed),
            ms(last_confirmed)
        );
        let _ = net.peers[v].child.kill();
        let _ = net.peers[v].child.wait();
        net.add_peer();
    }
    // Every removal any seed committed, minus the victims'.
    let victims = samples.victims.clone();
    if signal == signal::Signal::SIGTERM {
        let suspicions: usize = net
            .peers
            .iter_mut()
            .map(|p| {
                p.poll();
                p.count(
                    |e| matches!(e, Event::SuspicionStarted { peer, .. } if victims.contains(peer)),
                )
            })
            .sum();
        println!("suspicions of a peer that left: {suspicions}");
    }
    let false_removals = net
        .seeds
        .iter_mut()
        .flat_map(|s| {
            s.poll();
            s.events()
                .filter_map(|e| match e {
                    Event::RemoveCommitted { peer, .. } if !victims.contains(peer) => Some(*peer),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
        .collect();
    (samples, false_removals)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn print(name: &str, values: &[f64]) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    println!(
        "{name:<50} n={:<3} p50 {:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms",
        sorted.len(),
        percentile(&sorted, 50.0),
        percentile(&sorted, 99.0),
        sorted[sorted.len() - 1]
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let trials: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(30);
    // `sigkill`, `sigstop`, `sigterm` pick cases; none picks all three.
    let cases = ["sigkill", "sigstop", "sigterm"];
    let picked: Vec<&str> = cases
        .into_iter()
        .filter(|c| args.iter().any(|a| a == c))
        .collect();
    let runs = |case: &str| picked.is_empty() || picked.contains(&case);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    println!("failure detection: 3 seeds, {PEERS} peers, --ping-interval 1s, {trials} trials each");
    let mut false_removals: Vec<SocketAddr> = Vec::new();
    // Each case: its signal, and what its measures are named.
    let table = [
        (
            "sigkill",
            signal::Signal::SIGKILL,
            "SIGKILL",
            "dead_confirmed",
        ),
        (
            "sigstop",
            signal::Signal::SIGSTOP,
            "SIGSTOP",
            "dead_confirmed",
        ),
        (
            "sigterm",
            signal::Signal::SIGTERM,
            "SIGTERM (LEAVE)",
            "left",
        ),
    ];
    for (case, sig, name, told) in table {
        if !runs(case) {
            continue;
        }
        let (samples, wrong) = run(sig, trials, &mut rng);
        print(
            &format!("{name} -> remove_committed on all seeds"),
            &samples.removed_ms,
        );
        print(
            &format!("{name} -> last neighbour's {told}"),
            &samples.last_confirmed_ms,
        );
        false_removals.extend(wrong);
    }
    println!(
        "false removals: {} {:?}",
        false_removals.len(),
        false_removals
    );
}
