//! Multi-host tests: every node runs in its own Linux network namespace,
//! with its own IPv4 address on a private bridge (tests/common/netns.rs).
//! They prove that seeds and peers work over real, distinct addresses and
//! not only 127.0.0.1 (R24), and they break that network with nftables:
//!
//! - one seed cut off from everyone: the other two keep committing, and it
//!   catches up once healed (R2, R3);
//! - a majority of the seeds cut off from the peers: no change commits, the
//!   committed Peer List is intact, and the changes asked for meanwhile
//!   commit once healed (R2, R3);
//! - one peer cut off from everyone: it is removed, and rejoins once healed
//!   (R11 to R16);
//! - 20% of the packets lost at random: gossip still reaches every peer and
//!   no live peer is removed (R9, R15). This test prints its figures.
//!
//! They need root, iproute2 and nftables. Where these are missing, the
//! harness (main.rs) reports each as ignored, with the reason, unless
//! `GOSSIPNET_REQUIRE_NETNS=1` (which `.ci/run` sets), when a skip is a
//! failure.
//!
//! Each test notes its steps as it runs them (printed when it fails, or as
//! they happen with `--nocapture`), and waits on events with deadlines,
//! never on sleeps.

#![cfg(target_os = "linux")]

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet},
    io::Write,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use crate::common::{self, netns::Lan, peer_list, status_via, wait_for_every, Proc};
use gossipnet::proto::Event;
use serde_json::Value;

/// The port every node listens on. The project's rule is that tests use no
/// fixed ports, because tests share one loopback address and one port
/// space. Here each node has a network namespace of its own, with its own
/// address and its own port space, which nothing else on the machine, not
/// even the other tests running at the same time, can bind in. So a port
/// chosen inside a namespace cannot collide, and a fixed one lets the
/// config file name the seeds before they start.
const PORT: u16 = 7000;

/// Seeds per test; hosts 0..SEEDS are seeds, the rest peers.
const SEEDS: usize = 3;

/// For any one thing to happen; generous, since two cores run every node.
const DEADLINE: Duration = Duration::from_secs(30);

/// Between two status queries while waiting: each starts two processes.
const STATUS_POLL: Duration = Duration::from_millis(200);

/// [`common::wait_for`] for checks that ask seeds for their status.
fn wait_for<T>(what: &str, check: impl FnMut() -> Option<T>, describe: impl Fn() -> String) -> T {
    wait_for_every(STATUS_POLL, what, DEADLINE, check, describe)
}

/// One test's network: seeds and peers, each on a host of `lan`. The fields
/// drop in order: the nodes are killed before their namespaces go.
struct Net {
    seeds: Vec<Proc>,
    peers: Vec<Proc>,
    lan: Lan,
    dir: tempfile::TempDir,
    config: PathBuf,
    peer_args: Vec<String>,
    started: Instant,
    /// The steps so far, printed if the test fails.
    steps: RefCell<Vec<String>>,
}

/// Set by `--nocapture`: steps are printed as they happen.
pub static STEPS_LIVE: AtomicBool = AtomicBool::new(false);

impl Net {
    /// A switch and room for `peers` peers; three seeds started, their
    /// cluster formed. `tag` and `subnet` tell the tests' networks apart
    /// (see [`Lan::new`]). The harness has checked that namespaces work.
    fn start(tag: char, subnet: u8, peers: usize, peer_args: &[&str]) -> Net {
        let lan = Lan::new(tag, subnet, SEEDS + peers)
            .unwrap_or_else(|e| panic!("cannot build the test network: {e}"));
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.csv");
        let lines: String = (0..SEEDS)
            .map(|i| format!("{},{PORT}\n", lan.ip(i)))
            .collect();
        std::fs::write(&config, lines).unwrap();
        let mut net = Net {
            seeds: Vec::new(),
            peers: Vec::new(),
            lan,
            dir,
            config,
            peer_args: peer_args.iter().map(|s| s.to_string()).collect(),
            started: Instant::now(),
            steps: RefCell::default(),
        };
        net.step("start 3 seeds, each in its own namespace");
        for i in 0..SEEDS {
            let data = net.dir.path().join(format!("data-{i}"));
            let args = vec![
                "seed".into(),
                "--data-dir".into(),
                data.display().to_string(),
            ];
            let seed = net.spawn(i, &format!("seed-{i}"), args, false);
            net.seeds.push(seed);
        }
        for seed in &mut net.seeds {
            seed.wait_event("the seed cluster to form", DEADLINE, |e| {
                matches!(e, Event::ClusterFormed { .. })
            });
        }
        net
    }

    fn addr(&self, host: usize) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.lan.ip(host)), PORT)
    }

    fn seed_addr(&self, i: usize) -> SocketAddr {
        self.addr(i)
    }

    fn peer_addr(&self, k: usize) -> SocketAddr {
        self.addr(SEEDS + k)
    }

    fn seed_index(&self, addr: SocketAddr) -> usize {
        (0..SEEDS).find(|i| self.seed_addr(*i) == addr).unwrap()
    }

    fn peer_index(&self, addr: SocketAddr) -> usize {
        (0..self.peers.len())
            .find(|k| self.peer_addr(*k) == addr)
            .unwrap()
    }

    /// `gossipnet ROLE <host's address> ARGS...` on `host`.
    fn spawn(&self, host: usize, name: &str, mut args: Vec<String>, stdin: bool) -> Proc {
        let output = self.dir.path().join(format!("{name}.txt"));
        args.splice(1..1, [self.addr(host).to_string()]);
        args.extend([
            "--config".into(),
            self.config.display().to_string(),
            "--output".into(),
            output.display().to_string(),
        ]);
        Proc::spawn_via(&self.lan.on_host(host), self.dir.path(), name, &args, stdin)
    }

    /// Notes a step of the scenario with the time since the start.
    fn step(&self, what: &str) {
        let line = format!("[{:6.1}s] {what}", self.started.elapsed().as_secs_f64());
        if STEPS_LIVE.load(Ordering::Relaxed) {
            println!("{line}");
        }
        self.steps.borrow_mut().push(line);
    }

    /// Starts the next peer, with stdin piped if `stdin`; does not wait.
    fn start_peer(&mut self, stdin: bool) -> usize {
        let k = self.peers.len();
        let mut args = vec!["peer".to_string()];
        args.extend(self.peer_args.iter().cloned());
        let peer = self.spawn(SEEDS + k, &format!("peer-{k}"), args, stdin);
        self.peers.push(peer);
        k
    }

    /// Starts the next peer and waits until it has joined.
    fn add_peer(&mut self, stdin: bool) -> usize {
        let k = self.start_peer(stdin);
        self.peers[k].wait_event("joined", DEADLINE, |e| matches!(e, Event::Joined { .. }));
        k
    }

    /// Seed `i`'s status, asked from the observer on the bridge, which no
    /// fault cuts off.
    fn status(&self, i: usize) -> Option<Value> {
        status_via(&self.lan.on_observer(), self.seed_addr(i), &[])
    }

    fn committed(&self, i: usize) -> Option<Vec<String>> {
        peer_list(&self.status(i)?)
    }

    /// Waits until each of `seeds` reports exactly `want` as its committed
    /// Peer List.
    fn wait_committed(&self, seeds: &[usize], want: &[SocketAddr]) {
        let mut want: Vec<String> = want.iter().map(|a| a.to_string()).collect();
        want.sort();
        for &i in seeds {
            wait_for(
                &format!("seed {} to commit {want:?}", self.seed_addr(i)),
                || (self.committed(i).as_ref() == Some(&want)).then_some(()),
                || format!("{:?}", self.committed(i)),
            );
        }
    }

    /// Each of `seeds` reports exactly `want` as its committed Peer List
    /// now.
    fn assert_committed(&self, seeds: &[usize], want: &[SocketAddr]) {
        let mut want: Vec<String> = want.iter().map(|a| a.to_string()).collect();
        want.sort();
        for &i in seeds {
            assert_eq!(self.committed(i), Some(want.clone()), "seed {i}");
        }
    }

    /// The incarnation seed 0 has committed for `peer`.
    fn incarnation(&self, peer: SocketAddr) -> u64 {
        let status = self.status(0).expect("seed 0 answers");
        let entry = status["peers"].as_array().and_then(|peers| {
            peers
                .iter()
                .find(|p| p["addr"] == peer.to_string().as_str())
                .cloned()
        });
        entry
            .and_then(|e| e["incarnation"].as_u64())
            .unwrap_or_else(|| panic!("{peer} is not committed: {status}"))
    }

    fn kill_peer(&mut self, k: usize) {
        let _ = self.peers[k].child.kill();
        let _ = self.peers[k].child.wait();
    }

    /// The seed `status` names as leader.
    fn leader(&self) -> usize {
        wait_for(
            "a leader",
            || {
                let leader: SocketAddr = self.status(0)?["leader"].as_str()?.parse().ok()?;
                (0..SEEDS).find(|i| self.seed_addr(*i) == leader)
            },
            || format!("{:?}", self.status(0)),
        )
    }

    /// Every event seed `i` logged so far.
    fn seed_events(&mut self, i: usize) -> Vec<Event> {
        self.seeds[i].poll().events().cloned().collect()
    }

    /// The registrations and removals seed `i` committed from `since`
    /// (Unix microseconds) on.
    fn membership_commits_since(&mut self, i: usize, since: u64) -> Vec<Event> {
        self.seeds[i]
            .poll()
            .records
            .iter()
            .filter(|r| r.ts_us >= since)
            .map(|r| r.event.clone())
            .filter(|e| {
                matches!(
                    e,
                    Event::RegisterCommitted { .. } | Event::RemoveCommitted { .. }
                )
            })
            .collect()
    }
}

/// Peers that detect failures within seconds: a PING every 500 ms, three
/// misses (1.25 s of silence) make a neighbour unresponsive.
const FAST_DETECTION: [&str; 4] = ["--gossip-count", "0", "--ping-interval", "500ms"];

/// A failed test keeps its files (events, output, seed data) and says
/// where they are.
impl Drop for Net {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
            if !STEPS_LIVE.load(Ordering::Relaxed) {
                let _ = writeln!(std::io::stderr(), "{}", self.steps.borrow().join("\n"));
            }
            let _ = writeln!(
                std::io::stderr(),
                "the failed test's files are kept in {}",
                self.dir.path().display()
            );
        }
    }
}

pub fn only_namespaces_named_by_these_tests_are_swept_as_stale() {
    use common::netns::owner;
    assert_eq!(owner("gn1234a-sw"), Some("1234"));
    assert_eq!(owner("gn1234d-h11"), Some("1234"));
    for other in [
        "gn1234a-x",
        "gna-sw",
        "gn1234-sw",
        "gn1234A-h1",
        "gn12a-h",
        "cni-1234",
    ] {
        assert_eq!(owner(other), None, "{other}");
    }
}

/// Two peers join, the second linked to the first, its only candidate, and
/// every seed commits them. Returns them, the leading seed, and the seeds
/// peer 1 registered with: the ones that hear the reports if peer 0 dies,
/// for peer 1 is its only neighbour.
fn two_linked_peers(net: &mut Net) -> (Vec<SocketAddr>, usize, Vec<usize>) {
    net.step("2 peers join: the second links to the first, its only candidate");
    for _ in 0..2 {
        net.add_peer(false);
    }
    let peers: Vec<SocketAddr> = (0..2).map(|k| net.peer_addr(k)).collect();
    net.wait_committed(&[0, 1, 2], &peers);
    let registered = net.peers[1]
        .poll()
        .events()
        .find_map(|e| match e {
            Event::Registered { seeds } => Some(seeds.clone()),
            _ => None,
        })
        .expect("the peer has registered");
    let seeds_of_1 = registered.into_iter().map(|a| net.seed_index(a)).collect();
    (peers, net.leader(), seeds_of_1)
}

pub fn a_seed_cut_off_from_everyone_falls_behind_while_the_others_commit_and_catches_up_when_healed(
) {
    let mut net = Net::start('a', 1, 3, &FAST_DETECTION);
    let (first, leader, of_peer_1) = two_linked_peers(&mut net);
    // Cut a seed that peer 1 registered with, so that its first report
    // about peer 0 reaches only one of the seeds left: the leader if it is
    // one of them.
    let cut = if of_peer_1.contains(&leader) {
        leader
    } else {
        of_peer_1[0]
    };
    let others: Vec<usize> = (0..SEEDS).filter(|i| *i != cut).collect();
    net.step(&format!(
        "cut seed {} (leader: {}) off from every node",
        net.seed_addr(cut),
        cut == leader
    ));
    let cut_at = common::unix_us();
    net.lan.isolate(cut);

    net.step("kill peer 0: the two seeds left remove it");
    net.kill_peer(0);
    net.wait_committed(&others, &[net.peer_addr(1)]);
    net.step("a 3rd peer registers with the two seeds left");
    net.add_peer(false);
    let want: Vec<SocketAddr> = (1..=2).map(|k| net.peer_addr(k)).collect();
    net.wait_committed(&others, &want);

    net.step("the cut seed committed neither change");
    net.assert_committed(&[cut], &first);
    let stray = net.membership_commits_since(cut, cut_at);
    assert!(stray.is_empty(), "the cut seed committed: {stray:?}");

    net.step("heal: the cut seed catches up");
    net.lan.heal();
    net.wait_committed(&[cut], &want);
    net.step("done");
}

pub fn with_a_majority_of_seeds_cut_off_nothing_commits_nothing_is_lost_and_the_changes_commit_when_healed(
) {
    let mut net = Net::start('b', 2, 3, &FAST_DETECTION);
    let (first, leader, of_peer_1) = two_linked_peers(&mut net);
    // The seed left with the peers is one that peer 1 registered with, and
    // not the leader: its votes, dropped for want of a leader, are the
    // ones to keep.
    let keep = *of_peer_1.iter().find(|i| **i != leader).unwrap();
    let away: Vec<usize> = (0..SEEDS).filter(|i| *i != keep).collect();
    net.step(&format!(
        "cut seeds {away:?} off from seed {keep} and from every peer"
    ));
    let rest: Vec<usize> = std::iter::once(keep).chain(SEEDS..SEEDS + 3).collect();
    let cut_at = common::unix_us();
    net.lan.cut(&away, &rest);

    net.step("a 3rd peer asks to register: it waits");
    let newcomer = net.start_peer(false);
    net.peers[newcomer].wait_events("two rounds without a quorum", DEADLINE, 2, |e| {
        matches!(e, Event::RegisterWaiting { .. })
    });
    net.step("kill peer 0: peer 1, its neighbour, reports it until it gives up");
    net.kill_peer(0);
    let dead = net.peer_addr(0);
    net.peers[1].wait_event(
        "it to stop asking",
        DEADLINE,
        |e| matches!(e, Event::SuspicionAbandoned { peer, .. } if *peer == dead),
    );
    net.step("hold the cut until every proposal made during it has timed out");
    net.peers[newcomer].wait_events("five rounds without a quorum", DEADLINE, 5, |e| {
        matches!(e, Event::RegisterWaiting { .. })
    });

    net.step("no change committed; the Peer List is intact on every seed");
    for i in 0..SEEDS {
        let stray = net.membership_commits_since(i, cut_at);
        assert!(stray.is_empty(), "seed {i} committed: {stray:?}");
    }
    net.assert_committed(&[0, 1, 2], &first);
    assert_eq!(
        net.peers[newcomer].count(|e| matches!(e, Event::Registered { .. })),
        0,
        "registered without a majority of seeds"
    );

    net.step("heal: the newcomer registers and peer 0's removal commits");
    net.lan.heal();
    net.peers[newcomer].wait_event("registered", DEADLINE, |e| {
        matches!(e, Event::Registered { .. })
    });
    let want: Vec<SocketAddr> = (1..=2).map(|k| net.peer_addr(k)).collect();
    net.wait_committed(&[0, 1, 2], &want);
    net.step("done");
}

/// Peer `k`'s neighbours in seed 0's committed topology, once they are
/// all there.
fn committed_neighbours(net: &Net, k: usize) -> BTreeSet<SocketAddr> {
    let me = net.peer_addr(k).to_string();
    let neighbours = |status: &Value| -> BTreeSet<SocketAddr> {
        let edges = status["topology"].as_array().cloned().unwrap_or_default();
        edges
            .iter()
            .filter_map(|e| match (e[0].as_str()?, e[1].as_str()?) {
                (a, b) if a == me => b.parse().ok(),
                (a, b) if b == me => a.parse().ok(),
                _ => None,
            })
            .collect()
    };
    let joined = net.peers[k]
        .events()
        .find_map(|e| match e {
            Event::Joined { neighbors } => Some(neighbors.len()),
            _ => None,
        })
        .unwrap_or(0);
    wait_for(
        "the peer's links to be committed",
        || {
            let n = neighbours(&net.status(0)?);
            (n.len() >= joined.max(1)).then_some(n)
        },
        || format!("{:?}", net.status(0)),
    )
}

pub fn an_isolated_peer_is_removed_and_rejoins_when_healed() {
    let mut net = Net::start('c', 3, 5, &FAST_DETECTION);
    net.step("5 peers join");
    for _ in 0..5 {
        net.add_peer(false);
    }
    let all: Vec<SocketAddr> = (0..5).map(|k| net.peer_addr(k)).collect();
    net.wait_committed(&[0, 1, 2], &all);
    // Peer 1 joined second, so it links to peer 0 at least; later peers
    // may link to it too.
    let victim = 1;
    let victim_addr = net.peer_addr(victim);
    let neighbours = committed_neighbours(&net, victim);
    let old_incarnation = net.incarnation(victim_addr);

    net.step(&format!(
        "isolate peer 1 ({victim_addr}, neighbours {neighbours:?})"
    ));
    net.lan.isolate(SEEDS + victim);
    for seed in &mut net.seeds {
        seed.wait_event(
            "the removal to commit",
            DEADLINE,
            |e| matches!(e, Event::RemoveCommitted { peer, .. } if *peer == victim_addr),
        );
    }
    for n in &neighbours {
        let k = net.peer_index(*n);
        net.peers[k].wait_event(
            "the confirmed death",
            DEADLINE,
            |e| matches!(e, Event::DeadConfirmed { peer } if *peer == victim_addr),
        );
    }
    let others: Vec<SocketAddr> = all.iter().copied().filter(|a| *a != victim_addr).collect();
    net.wait_committed(&[0, 1, 2], &others);

    net.step("heal: peer 1 learns it was removed and joins again");
    net.lan.heal();
    net.peers[victim].wait_event("rejoining", DEADLINE, |e| {
        matches!(e, Event::Rejoining { .. })
    });
    net.peers[victim].wait_events("joined again", DEADLINE, 2, |e| {
        matches!(e, Event::Joined { .. })
    });
    net.wait_committed(&[0, 1, 2], &all);
    assert!(net.incarnation(victim_addr) > old_incarnation, "a new life");
    assert!(net.peers[victim].is_running(), "it ran throughout");

    net.step("no other peer was removed");
    for i in 0..SEEDS {
        let wrong: Vec<Event> = net
            .seed_events(i)
            .into_iter()
            .filter(|e| matches!(e, Event::RemoveCommitted { peer, .. } if *peer != victim_addr))
            .collect();
        assert!(wrong.is_empty(), "live peers removed: {wrong:?}");
    }
    net.step("done");
}

/// Percentile `p` (0 to 100) of sorted `values`, by the nearest rank.
fn percentile(sorted: &[u64], p: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as u64).div_ceil(100).max(1);
    sorted[rank as usize - 1]
}

/// Peers of the loss test, and its settings: liveness checks every
/// LOSS_PING_INTERVAL, LOSS_MESSAGES rounds of one typed message from
/// every peer, and at least LOSS_WATCH under loss in all.
const LOSS_PEERS: usize = 8;
const LOSS_PERCENT: u32 = 20;
const LOSS_PING_INTERVAL: &str = "2s";
const LOSS_MESSAGES: usize = 5;
const LOSS_WATCH: Duration = Duration::from_secs(20);

pub fn with_a_fifth_of_the_packets_lost_gossip_reaches_every_peer_and_no_live_peer_is_removed() {
    let mut net = Net::start(
        'd',
        4,
        LOSS_PEERS,
        &[
            "--gossip-count",
            "0",
            "--ping-interval",
            LOSS_PING_INTERVAL,
            "--stdin",
        ],
    );
    net.step(&format!("{LOSS_PEERS} peers join"));
    for _ in 0..LOSS_PEERS {
        net.add_peer(true);
    }
    let all: Vec<SocketAddr> = (0..LOSS_PEERS).map(|k| net.peer_addr(k)).collect();
    net.wait_committed(&[0, 1, 2], &all);

    net.step(&format!(
        "the bridge drops {LOSS_PERCENT}% of the packets between nodes"
    ));
    net.lan.loss(LOSS_PERCENT);
    let lossy_since = Instant::now();
    for round in 1..=LOSS_MESSAGES {
        net.step(&format!("round {round}: every peer types a message"));
        for k in 0..LOSS_PEERS {
            let stdin = net.peers[k].stdin();
            writeln!(stdin, "round {round} from peer {k}").unwrap();
            stdin.flush().unwrap();
        }
        let suffix = |k: usize| format!(":round {round} from peer {k}");
        for k in 0..LOSS_PEERS {
            let others: Vec<String> = (0..LOSS_PEERS).filter(|j| *j != k).map(suffix).collect();
            net.peers[k].wait_events(
                &format!("the {} messages of round {round}", LOSS_PEERS - 1),
                DEADLINE,
                LOSS_PEERS - 1,
                |e| {
                    matches!(e, Event::GossipReceived { msg, .. }
                    if others.iter().any(|o| msg.ends_with(o.as_str())))
                },
            );
        }
    }

    // No removal can only be watched for: the loss stays on for a fixed
    // time, and the watch fails at the first removal it sees.
    net.step("keep the loss on; watch for removals");
    let watch_until = lossy_since + LOSS_WATCH;
    while Instant::now() < watch_until {
        for i in 0..SEEDS {
            let removed: Vec<Event> = net
                .seed_events(i)
                .into_iter()
                .filter(|e| matches!(e, Event::RemoveCommitted { .. }))
                .collect();
            assert!(removed.is_empty(), "a live peer was removed: {removed:?}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    net.lan.heal();
    // The figures cover the loss only: the peers stopped below leave (each
    // sends LEAVE), and that is no part of them.
    let loss_end = common::unix_us();

    net.step("stop the peers cleanly, for their traffic counts");
    for k in 0..LOSS_PEERS {
        let status = net.peers[k].stop_with(nix::sys::signal::Signal::SIGTERM);
        assert!(status.success(), "peer {k}: {status}");
        net.peers[k].poll();
    }
    for i in 0..SEEDS {
        net.seeds[i].poll();
    }

    // Figures, from the event streams.
    let mut created: BTreeMap<String, u64> = BTreeMap::new();
    let mut latencies: Vec<u64> = Vec::new();
    let (mut gossip_frames, mut suspicions, mut cleared, mut reports, mut rejoins) =
        (0, 0, 0, 0, 0);
    for p in &net.peers {
        for r in p.records.iter().filter(|r| r.ts_us < loss_end) {
            match &r.event {
                Event::GossipCreated { msg } => {
                    created.insert(msg.clone(), r.ts_us);
                }
                Event::SuspicionStarted { .. } => suspicions += 1,
                Event::SuspicionCleared { .. } => cleared += 1,
                Event::DeadReportSent { .. } => reports += 1,
                Event::Rejoining { .. } => rejoins += 1,
                _ => {}
            }
        }
    }
    // Counted at the clean stop; no gossip was made but under loss.
    for p in &net.peers {
        for r in &p.records {
            if let Event::Traffic { gossip_sent, .. } = r.event {
                gossip_frames += gossip_sent;
            }
        }
    }
    let mut delivered = 0;
    for p in &net.peers {
        for r in &p.records {
            if let Event::GossipReceived { msg, .. } = &r.event {
                if let Some(at) = created.get(msg) {
                    delivered += 1;
                    latencies.push(r.ts_us.saturating_sub(*at));
                }
            }
        }
    }
    latencies.sort_unstable();
    let expected = created.len() * (LOSS_PEERS - 1);
    let count = |i: usize, f: fn(&Event) -> bool| {
        net.seeds[i]
            .records
            .iter()
            .filter(|r| r.ts_us < loss_end && f(&r.event))
            .count()
    };
    let proposed: usize = (0..SEEDS)
        .map(|i| count(i, |e| matches!(e, Event::RemoveProposed { .. })))
        .sum();
    let removed: usize = (0..SEEDS)
        .map(|i| count(i, |e| matches!(e, Event::RemoveCommitted { .. })))
        .max()
        .unwrap_or(0);
    let figures = format!(
        "netns loss figures: {LOSS_PERCENT}% loss on the bridge, 3 seeds, {LOSS_PEERS} peers, \
         ping every {LOSS_PING_INTERVAL}, {:.0} s under loss\n\
         messages created: {}\n\
         GOSSIP frames sent: {gossip_frames} ({:.2} per delivery)\n\
         delivered: {delivered}/{expected} ({:.1}%)\n\
         latency from creation: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n\
         suspicions raised: {suspicions}, cleared: {cleared}\n\
         dead reports sent: {reports}; removal votes proposed: {proposed}\n\
         removals committed: {removed}; rejoinings: {rejoins}",
        lossy_since
            .elapsed()
            .as_secs_f64()
            .min(LOSS_WATCH.as_secs_f64()),
        created.len(),
        gossip_frames as f64 / delivered.max(1) as f64,
        100.0 * delivered as f64 / expected.max(1) as f64,
        percentile(&latencies, 50) as f64 / 1000.0,
        percentile(&latencies, 99) as f64 / 1000.0,
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
    );
    // Past the harness's capture, so that the figures show in a plain
    // `cargo test` and can be recorded.
    let _ = writeln!(std::io::stderr(), "{figures}");

    assert_eq!(created.len(), LOSS_PEERS * LOSS_MESSAGES);
    assert_eq!(delivered, expected, "gossip lost under packet loss");
    assert_eq!(removed, 0, "a live peer was removed");
    assert_eq!(rejoins, 0, "a live peer had to rejoin");
    net.step("done");
}
