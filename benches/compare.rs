//! gossipnet against rust-libp2p gossipsub, side by side, on loopback.
//!
//! For each size N, each system gets a fresh network of N peer processes
//! (gossipnet also runs 3 seeds), which then:
//!
//! 1. settles for a few seconds; resident memory is read ("idle");
//! 2. runs the burst workload: each peer creates 10 messages, round-robin
//!    across peers at a fixed total rate; memory is read again at the end of
//!    publishing ("under load"); the harness waits for full coverage;
//! 3. (gossipnet) has 3 peers SIGKILLed, one at a time, timing each until
//!    every seed has committed the removal;
//! 4. stops (SIGTERM); each peer reports what it sent (`traffic` event).
//!
//! Then, at one size, a sustained load on a fresh network: every peer
//! publishes 1 KiB messages at a fixed rate for a while, the rate stepping
//! up until messages are lost or late, which is reported as the point
//! where it degrades.
//!
//! Both systems take their messages on standard input and log creation and
//! first receipt as JSON lines with microsecond timestamps (gossipnet's
//! event stream; the gossipsub peer mimics it). One host, one clock:
//! latency is a receipt's timestamp minus the creation's. The harness reads
//! the streams only while nothing is being published, so that it does not
//! take CPU from the systems while they are measured.
//!
//! Run: `cargo bench --features gossipsub --bench compare` (all of it;
//! prints Markdown to stdout, progress to stderr). Options after `--`:
//! `--sizes 20,100`, `--sustained-size 20`, `--rates 1,2,5`,
//! `--burst-rate 100` (messages per second, network-wide; by default
//! 2,000/(N-1), so about 2,000 deliveries a second, between 10 and 100).

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    collections::{HashMap, HashSet},
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use gossipnet::{cluster::EventTail, proto::Event};
use rand::{seq::IndexedRandom, SeedableRng};
use serde::Deserialize;

const GOSSIPSUB_BIN: &str = env!("CARGO_BIN_EXE_gossipsub-peer");
/// Earlier peers each new gossipsub peer dials; its mesh then forms over
/// these connections (gossipsub has no peer discovery of its own).
const GOSSIPSUB_DIALS: usize = 4;
/// Gap between peer starts, the same for both systems.
const SPAWN_GAP: Duration = Duration::from_millis(20);
const SETTLE: Duration = Duration::from_secs(5);
const MESSAGES_PER_PEER: u32 = 10;
/// How long after the last publication a message may still arrive.
const DRAIN: Duration = Duration::from_secs(20);
const STEP: Duration = Duration::from_secs(10);
const STEP_DRAIN: Duration = Duration::from_secs(5);
/// A sustained step degrades when its p99 latency exceeds this.
const STEP_P99_LIMIT_MS: f64 = 1000.0;
const SUSTAINED_PAYLOAD: usize = 1024;
const KILLS: usize = 3;
/// Publishing this far behind its schedule stops the workload.
const BEHIND_LIMIT: Duration = Duration::from_secs(30);
const START_DEADLINE: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum System {
    Gossipnet,
    Gossipsub,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Gossipnet => "gossipnet",
            System::Gossipsub => "gossipsub",
        }
    }
}

/// A message's identity: the text starts with `#<peer>.<seq>`.
type Key = u64;

fn text(peer: usize, seq: u32, size: usize) -> String {
    let mut text = format!("#{peer}.{seq}");
    if size > text.len() + 1 {
        text.push(' ');
        let pad = size - text.len();
        text.extend(std::iter::repeat_n('x', pad));
    }
    text
}

fn key_of(msg: &str) -> Option<Key> {
    let rest = &msg[msg.find('#')? + 1..];
    let id = rest.split(' ').next()?;
    let (peer, seq) = id.split_once('.')?;
    Some((peer.parse::<u64>().ok()? << 32) | seq.parse::<u64>().ok()?)
}

/// The fields the harness reads from either system's event lines.
#[derive(Deserialize)]
struct Line<'a> {
    ts_us: u64,
    #[serde(borrow)]
    event: &'a str,
    #[serde(borrow, default)]
    msg: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    bytes_sent: u64,
    #[serde(default)]
    gossip_sent: u64,
}

struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    events: EventTail,
    spawned_us: u64,
    registered_us: Option<u64>,
    joined_us: Option<u64>,
    traffic: Option<(u64, u64)>,
    alive: bool,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creations and first receipts, as read from the streams.
#[derive(Default)]
struct Log {
    created: HashMap<Key, u64>,
    /// First receipts: a peer that receives a message again, as gossipsub
    /// does once its duplicate cache (60 s) has forgotten a message still
    /// in flight, counts once.
    received: Vec<(Key, u64)>,
    /// (peer, message) of every receipt in `received`.
    receipts: HashSet<(usize, Key)>,
    publish_failed: usize,
}

struct Network {
    system: System,
    dir: tempfile::TempDir,
    seeds: Option<common::Cluster>,
    peers: Vec<Peer>,
    log: Log,
}

/// Niceness of every process of the systems measured. The harness keeps
/// the normal priority, so that on an overloaded machine it still publishes
/// on schedule, sees when it falls behind and stops, and reads the
/// streams; at N = 500 gossipsub's peers otherwise left it a few seconds of
/// CPU in a quarter of an hour. Both systems get the same.
const SYSTEM_NICENESS: i32 = 10;

fn yield_to_harness(pid: u32) {
    // SAFETY: setpriority only reads its arguments.
    let done = unsafe { libc::setpriority(libc::PRIO_PROCESS, pid, SYSTEM_NICENESS) };
    assert_eq!(
        done,
        0,
        "setpriority({pid}): {}",
        std::io::Error::last_os_error()
    );
}

impl Network {
    fn start(system: System, n: usize, rng: &mut rand_chacha::ChaCha8Rng) -> Network {
        eprintln!("[{}] starting {n} peers", system.name());
        let dir = tempfile::tempdir().unwrap();
        let seeds = (system == System::Gossipnet).then(|| common::Cluster::with_seeds(3, &[]));
        for seed in seeds.iter().flat_map(|c| &c.seeds) {
            yield_to_harness(seed.child.id());
        }
        let mut net = Network {
            system,
            dir,
            seeds,
            peers: Vec::new(),
            log: Log::default(),
        };
        let mut addresses: Vec<String> = Vec::new();
        for i in 0..n {
            let started = Instant::now();
            let dials: Vec<String> = addresses
                .choose_multiple(rng, GOSSIPSUB_DIALS)
                .cloned()
                .collect();
            let (peer, address) = net.spawn(i, &dials);
            net.peers.push(peer);
            addresses.extend(address);
            thread::sleep(SPAWN_GAP.saturating_sub(started.elapsed()));
        }
        let until = Instant::now() + START_DEADLINE;
        loop {
            net.read();
            let joined = net.peers.iter().filter(|p| p.joined_us.is_some()).count();
            if joined == n {
                break;
            }
            assert!(
                Instant::now() < until,
                "[{}] only {joined} of {n} peers joined within {START_DEADLINE:?}; streams in {}",
                system.name(),
                net.dir.path().display()
            );
            thread::sleep(Duration::from_millis(200));
        }
        eprintln!("[{}] all {n} peers joined", system.name());
        net
    }

    fn spawn(&self, i: usize, dials: &[String]) -> (Peer, Option<String>) {
        let events = self.dir.path().join(format!("peer-{i}.jsonl"));
        let stderr = std::fs::File::create(self.dir.path().join(format!("peer-{i}.err"))).unwrap();
        let mut command = match self.system {
            System::Gossipnet => {
                let seeds = self.seeds.as_ref().unwrap();
                // The peer-only executable, as `gossipnet up` runs.
                let mut c = Command::new(common::PEER_BIN);
                c.current_dir(self.dir.path())
                    .args(["127.0.0.1:0", "--config"])
                    .arg(&seeds.config)
                    .args(["--gossip-count", "0", "--stdin", "--quiet"])
                    .stdout(Stdio::null());
                c
            }
            System::Gossipsub => {
                let mut c = Command::new(GOSSIPSUB_BIN);
                for d in dials {
                    c.args(["--dial", d]);
                }
                c.stdout(Stdio::piped());
                c
            }
        };
        let spawned_us = common::unix_us();
        let mut child = command
            .arg("--events")
            .arg(&events)
            .stdin(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start a peer");
        yield_to_harness(child.id());
        // gossipsub peers print the address the next ones dial.
        let address = child.stdout.take().map(|out| {
            let mut line = String::new();
            BufReader::new(out).read_line(&mut line).unwrap();
            line.trim()
                .strip_prefix("listening ")
                .unwrap_or_else(|| panic!("gossipsub-peer {i} printed {line:?}"))
                .to_string()
        });
        let peer = Peer {
            stdin: child.stdin.take(),
            child,
            events: EventTail::new(events),
            spawned_us,
            registered_us: None,
            joined_us: None,
            traffic: None,
            alive: true,
        };
        (peer, address)
    }

    /// Reads what the peers logged since the last call.
    fn read(&mut self) {
        for (i, peer) in self.peers.iter_mut().enumerate() {
            let lines = peer.events.poll_lines().unwrap();
            for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let Ok(line) = serde_json::from_slice::<Line>(line) else {
                    continue;
                };
                let key = line.msg.as_deref().and_then(key_of);
                match (line.event, key) {
                    ("gossip_received", Some(key)) if self.log.receipts.insert((i, key)) => {
                        self.log.received.push((key, line.ts_us));
                    }
                    ("gossip_created", Some(key)) => {
                        self.log.created.insert(key, line.ts_us);
                    }
                    ("publish_failed", _) => self.log.publish_failed += 1,
                    ("registered", _) => peer.registered_us = Some(line.ts_us),
                    ("joined", _) => {
                        peer.joined_us.get_or_insert(line.ts_us);
                    }
                    ("traffic", _) => peer.traffic = Some((line.bytes_sent, line.gossip_sent)),
                    _ => {}
                }
            }
        }
    }

    fn publish(&mut self, peer: usize, text: &str) {
        if let Some(stdin) = self.peers[peer].stdin.as_mut() {
            if writeln!(stdin, "{text}").is_err() {
                self.peers[peer].stdin = None;
            }
        }
    }

    /// Publishes `schedule` (time from start, peer, text) in time order,
    /// and returns the keys of the messages it published: it gives up on
    /// the rest once it falls `BEHIND_LIMIT` behind, as on an overloaded
    /// machine.
    fn run_schedule(&mut self, schedule: &[(Duration, usize, String)]) -> HashSet<Key> {
        let start = Instant::now();
        let mut published = HashSet::new();
        for (at, peer, text) in schedule {
            if start.elapsed() > *at + BEHIND_LIMIT {
                eprintln!(
                    "[{}] overloaded: {BEHIND_LIMIT:?} behind schedule, published {} of {}",
                    self.system.name(),
                    published.len(),
                    schedule.len()
                );
                break;
            }
            thread::sleep(at.saturating_sub(start.elapsed()));
            self.publish(*peer, text);
            published.extend(key_of(text));
        }
        published
    }

    /// Waits until every key has reached every other live peer, or `drain`
    /// has passed. Returns how long it waited.
    fn wait_coverage(&mut self, keys: &HashSet<Key>, drain: Duration) -> Duration {
        let start = Instant::now();
        // Receipts are only appended: each poll counts the new ones alone.
        let (mut got, mut counted) = (0, 0);
        loop {
            self.read();
            let live = self.peers.iter().filter(|p| p.alive).count();
            let want = keys.len() * live.saturating_sub(1);
            let received = &self.log.received[counted..];
            got += received.iter().filter(|(k, _)| keys.contains(k)).count();
            counted += received.len();
            if got >= want || start.elapsed() > drain {
                return start.elapsed();
            }
            thread::sleep(Duration::from_millis(250));
        }
    }

    fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.peers.iter().filter(|p| p.alive).map(|p| p.child.id())
    }

    /// Memory of the live peers, in MiB.
    fn memory(&self) -> Memory {
        let each: Vec<[f64; 3]> = self.pids().filter_map(memory_kib).collect();
        let spread = |i: usize| Spread::of(each.iter().map(|m| m[i] / 1024.0).collect());
        Memory {
            rss: spread(0),
            pss: spread(1),
            private: spread(2),
        }
    }

    /// CPU seconds the peers (and, apart, the seeds) have used so far.
    fn cpu_seconds(&self) -> (f64, f64) {
        let peers = self.pids().filter_map(cpu_seconds).sum();
        let seeds = self
            .seeds
            .iter()
            .flat_map(|c| c.seeds.iter())
            .filter_map(|s| cpu_seconds(s.child.id()))
            .sum();
        (peers, seeds)
    }

    /// gossipnet only: `KILLS` times, starts one more peer, waits until it
    /// has joined, SIGKILLs it and times until every seed has committed its
    /// removal, in milliseconds. Fresh peers, so that the peers that carried
    /// the workload all live to report their traffic.
    fn kill_and_time_removals(&mut self) -> Vec<f64> {
        if self.seeds.is_none() {
            return Vec::new();
        }
        let mut times = Vec::new();
        for _ in 0..KILLS {
            let victim = self.peers.len();
            let (peer, _) = self.spawn(victim, &[]);
            self.peers.push(peer);
            let until = Instant::now() + START_DEADLINE;
            while self.peers[victim].joined_us.is_none() && Instant::now() < until {
                thread::sleep(Duration::from_millis(50));
                self.read();
            }
            let cluster = self.seeds.as_mut().unwrap();
            let peer = &mut self.peers[victim];
            let addr = listen_addr(peer.events.path());
            let t0 = common::unix_us();
            let _ = peer.child.kill();
            let _ = peer.child.wait();
            peer.alive = false;
            peer.stdin = None;
            let removed =
                |e: &Event| matches!(e, Event::RemoveCommitted { peer, .. } if *peer == addr);
            let mut last = 0;
            for seed in &mut cluster.seeds {
                seed.wait_event("the removal", Duration::from_secs(60), removed);
                let at = seed
                    .records
                    .iter()
                    .find(|r| removed(&r.event))
                    .unwrap()
                    .ts_us;
                last = last.max(at);
            }
            let ms = last.saturating_sub(t0) as f64 / 1000.0;
            eprintln!(
                "[gossipnet] SIGKILL {addr}: removal committed on all seeds after {ms:.1} ms"
            );
            times.push(ms);
        }
        times
    }

    /// SIGTERMs every peer, waits for them, and reads their last events.
    fn stop(&mut self) {
        for peer in self.peers.iter_mut().filter(|p| p.alive) {
            peer.stdin = None;
            let pid = nix::unistd::Pid::from_raw(peer.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        let until = Instant::now() + Duration::from_secs(20);
        for peer in self.peers.iter_mut().filter(|p| p.alive) {
            while peer.child.try_wait().unwrap().is_none() && Instant::now() < until {
                thread::sleep(Duration::from_millis(20));
            }
        }
        self.read();
    }

    /// Bytes and gossip messages all peers sent over their lifetime.
    fn traffic(&self) -> (u64, u64, usize) {
        let reported: Vec<(u64, u64)> = self.peers.iter().filter_map(|p| p.traffic).collect();
        let bytes = reported.iter().map(|t| t.0).sum();
        let gossip = reported.iter().map(|t| t.1).sum();
        (bytes, gossip, reported.len())
    }
}

/// A gossipnet peer's listen address, from its first event.
fn listen_addr(events: &Path) -> std::net::SocketAddr {
    let mut tail = EventTail::new(events);
    tail.poll()
        .unwrap()
        .first()
        .expect("a listening event")
        .node
}

/// Resident, proportional and private memory of one process, in KiB.
fn memory_kib(pid: u32) -> Option<[f64; 3]> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = rollup.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some([
        field("Rss:")?,
        field("Pss:")?,
        field("Private_Clean:")? + field("Private_Dirty:")?,
    ])
}

/// Resident memory (RSS) counts every page mapped into the process, among
/// them the executable's and the C library's, which all peers share;
/// proportional memory (PSS) splits each shared page among the processes
/// that map it; private memory is the pages only this process maps.
#[derive(Clone, Copy, Default)]
struct Memory {
    rss: Option<Spread>,
    pss: Option<Spread>,
    private: Option<Spread>,
}

fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks())
}

/// Clock ticks per second, asked of `getconf` once: it is needed for every
/// peer at every reading.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// p50, p99 and max of a sample.
#[derive(Clone, Copy, Default)]
struct Spread {
    p50: f64,
    p99: f64,
    max: f64,
    n: usize,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let at = |p: f64| {
            let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
            values[rank.clamp(1, values.len()) - 1]
        };
        Some(Spread {
            p50: at(50.0),
            p99: at(99.0),
            max: values[values.len() - 1],
            n: values.len(),
        })
    }
}

/// Latency and coverage of the messages in `keys`.
struct Delivery {
    latency_ms: Option<Spread>,
    coverage_ms: Option<Spread>,
    ratio: f64,
    delivered: usize,
}

fn delivery(log: &Log, keys: &HashSet<Key>, receivers: usize) -> Delivery {
    let mut latency = Vec::new();
    let mut per_key: HashMap<Key, (usize, u64)> = HashMap::new();
    for (key, ts) in log.received.iter().filter(|(k, _)| keys.contains(k)) {
        let Some(created) = log.created.get(key) else {
            continue;
        };
        let ms = ts.saturating_sub(*created) as f64 / 1000.0;
        latency.push(ms);
        let entry = per_key.entry(*key).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(ts.saturating_sub(*created));
    }
    let delivered = latency.len();
    let coverage = per_key
        .values()
        .filter(|(count, _)| *count >= receivers)
        .map(|(_, us)| *us as f64 / 1000.0)
        .collect();
    Delivery {
        latency_ms: Spread::of(latency),
        coverage_ms: Spread::of(coverage),
        ratio: delivered as f64 / (keys.len() * receivers).max(1) as f64,
        delivered,
    }
}

/// Every figure of one system at one size.
struct Figures {
    delivery: Delivery,
    messages: usize,
    all_covered: usize,
    idle: Memory,
    load: Memory,
    cpu_ms_per_delivery: f64,
    seed_cpu_ms_per_delivery: f64,
    msgs_per_delivery: f64,
    bytes_per_delivery: f64,
    registered_ms: Option<Spread>,
    joined_ms: Option<Spread>,
    removal_ms: Option<Spread>,
    publish_failed: usize,
}

fn burst(system: System, n: usize, rate: f64, rng: &mut rand_chacha::ChaCha8Rng) -> Figures {
    let mut net = Network::start(system, n, rng);
    let registered_ms = Spread::of(
        net.peers
            .iter()
            .filter_map(|p| Some((p.registered_us? - p.spawned_us) as f64 / 1000.0))
            .collect(),
    );
    let joined_ms = Spread::of(
        net.peers
            .iter()
            .filter_map(|p| Some((p.joined_us? - p.spawned_us) as f64 / 1000.0))
            .collect(),
    );
    thread::sleep(SETTLE);
    let idle = net.memory();
    let mut schedule = Vec::new();
    for seq in 0..MESSAGES_PER_PEER {
        for peer in 0..n {
            let at = Duration::from_secs_f64(schedule.len() as f64 / rate);
            schedule.push((at, peer, text(peer, seq, 0)));
        }
    }
    eprintln!(
        "[{}] burst: {} messages at {rate:.1}/s",
        system.name(),
        schedule.len()
    );
    let (cpu0, seed_cpu0) = net.cpu_seconds();
    let keys = net.run_schedule(&schedule);
    let load = net.memory();
    let waited = net.wait_coverage(&keys, DRAIN);
    let (cpu1, seed_cpu1) = net.cpu_seconds();
    let delivery = delivery(&net.log, &keys, n - 1);
    eprintln!(
        "[{}] burst done: delivery ratio {:.4}, waited {waited:.1?} after the last publication",
        system.name(),
        delivery.ratio
    );
    let removal_ms = Spread::of(net.kill_and_time_removals());
    net.stop();
    let (bytes, gossip, reporters) = net.traffic();
    if reporters < n {
        eprintln!(
            "[{}] only {reporters} peers reported traffic",
            system.name()
        );
    }
    let delivered = delivery.delivered.max(1) as f64;
    // On stderr at once, so that a run cut short keeps what it measured.
    eprintln!(
        "[{}] N = {n}: latency ms {}, coverage ms {}, peer CPU {:.3} ms per delivery",
        system.name(),
        ms(delivery.latency_ms),
        ms(delivery.coverage_ms),
        (cpu1 - cpu0) * 1000.0 / delivered
    );
    let all_covered = delivery.coverage_ms.map_or(0, |c| c.n);
    Figures {
        messages: schedule.len(),
        all_covered,
        idle,
        load,
        cpu_ms_per_delivery: (cpu1 - cpu0) * 1000.0 / delivered,
        seed_cpu_ms_per_delivery: (seed_cpu1 - seed_cpu0) * 1000.0 / delivered,
        msgs_per_delivery: gossip as f64 / delivered,
        bytes_per_delivery: bytes as f64 / delivered,
        registered_ms,
        joined_ms,
        removal_ms,
        publish_failed: net.log.publish_failed,
        delivery,
    }
}

/// One step of the sustained load.
struct Step {
    rate: f64,
    delivery: Delivery,
    memory: Memory,
    cpu_ms_per_delivery: f64,
    degraded: bool,
}

fn sustained(
    system: System,
    n: usize,
    rates: &[f64],
    rng: &mut rand_chacha::ChaCha8Rng,
) -> Vec<Step> {
    let mut net = Network::start(system, n, rng);
    thread::sleep(SETTLE);
    let mut steps = Vec::new();
    let mut seq = 0u32;
    for &rate in rates {
        // Each peer publishes every 1/rate s, peers evenly staggered.
        let per_peer = (rate * STEP.as_secs_f64()).round().max(1.0) as u32;
        let mut schedule = Vec::new();
        for round in 0..per_peer {
            for peer in 0..n {
                let at = (round as f64 + peer as f64 / n as f64) / rate;
                schedule.push((
                    Duration::from_secs_f64(at),
                    peer,
                    text(peer, seq + round, SUSTAINED_PAYLOAD),
                ));
            }
        }
        seq += per_peer;
        eprintln!(
            "[{}] sustained: {rate} msgs/s per peer, {} messages of {SUSTAINED_PAYLOAD} bytes",
            system.name(),
            schedule.len()
        );
        let (cpu0, _) = net.cpu_seconds();
        let keys = net.run_schedule(&schedule);
        let memory = net.memory();
        net.wait_coverage(&keys, STEP_DRAIN);
        let (cpu1, _) = net.cpu_seconds();
        let delivery = delivery(&net.log, &keys, n - 1);
        let p99 = delivery.latency_ms.map_or(f64::INFINITY, |l| l.p99);
        let degraded =
            keys.len() < schedule.len() || delivery.ratio < 1.0 || p99 > STEP_P99_LIMIT_MS;
        eprintln!(
            "[{}] {rate}/s per peer: ratio {:.4}, p99 {p99:.1} ms{}",
            system.name(),
            delivery.ratio,
            if degraded { ", degraded" } else { "" }
        );
        let cpu_ms_per_delivery = (cpu1 - cpu0) * 1000.0 / delivery.delivered.max(1) as f64;
        steps.push(Step {
            rate,
            delivery,
            memory,
            cpu_ms_per_delivery,
            degraded,
        });
        // Let the backlog clear before the next step, and read it away.
        net.wait_coverage(&keys, STEP_DRAIN);
        if degraded {
            break;
        }
    }
    net.stop();
    steps
}

// --- report ---

fn ms(s: Option<Spread>) -> String {
    s.map_or("–".into(), |s| {
        format!("{:.1} / {:.1} / {:.1}", s.p50, s.p99, s.max)
    })
}

fn ratio(ours: f64, theirs: f64) -> String {
    if theirs > 0.0 && ours.is_finite() && theirs.is_finite() {
        format!("{:.2}", ours / theirs)
    } else {
        "–".into()
    }
}

fn row(name: &str, ours: String, theirs: String, r: String) {
    println!("| {name} | {ours} | {theirs} | {r} |");
}

fn print_burst(n: usize, rate: f64, g: &Figures, s: &Figures) {
    println!(
        "\n### N = {n}: each peer creates {MESSAGES_PER_PEER} messages ({} in all, {rate:.1}/s network-wide)\n",
        g.messages
    );
    println!("| figure | gossipnet | gossipsub | gossipnet/gossipsub |");
    println!("|---|---|---|---|");
    let p50 = |f: &Figures| f.delivery.latency_ms.map_or(f64::NAN, |l| l.p50);
    row(
        "delivery latency, ms: p50 / p99 / max",
        ms(g.delivery.latency_ms),
        ms(s.delivery.latency_ms),
        format!("p50 {}", ratio(p50(g), p50(s))),
    );
    let cov = |f: &Figures| f.delivery.coverage_ms.map_or(f64::NAN, |l| l.p50);
    row(
        "time to 100% coverage per message, ms: p50 / p99 / max",
        ms(g.delivery.coverage_ms),
        ms(s.delivery.coverage_ms),
        format!("p50 {}", ratio(cov(g), cov(s))),
    );
    row(
        "delivery ratio (messages that reached every peer)",
        format!("{:.4} ({}/{})", g.delivery.ratio, g.all_covered, g.messages),
        format!("{:.4} ({}/{})", s.delivery.ratio, s.all_covered, s.messages),
        ratio(g.delivery.ratio, s.delivery.ratio),
    );
    row(
        "gossip messages sent per delivery (RMR + 1)",
        format!("{:.2}", g.msgs_per_delivery),
        format!("{:.2}", s.msgs_per_delivery),
        ratio(g.msgs_per_delivery, s.msgs_per_delivery),
    );
    row(
        "bytes sent per delivery (all traffic, start to stop)",
        format!("{:.0}", g.bytes_per_delivery),
        format!("{:.0}", s.bytes_per_delivery),
        ratio(g.bytes_per_delivery, s.bytes_per_delivery),
    );
    let mib =
        |s: Option<Spread>| s.map_or("–".into(), |s| format!("{:.2} / {:.2}", s.p50, s.max));
    let mid = |s: Option<Spread>| s.map_or(f64::NAN, |s| s.p50);
    for (when, g, s) in [
        ("idle", g.idle, s.idle),
        ("end of publishing", g.load, s.load),
    ] {
        for (what, g, s) in [
            ("RSS", g.rss, s.rss),
            ("PSS", g.pss, s.pss),
            ("private", g.private, s.private),
        ] {
            row(
                &format!("{what} per peer, {when}, MiB: p50 / max"),
                mib(g),
                mib(s),
                ratio(mid(g), mid(s)),
            );
        }
    }
    row(
        "peer CPU ms per delivery",
        format!(
            "{:.3} (+ seeds {:.3})",
            g.cpu_ms_per_delivery, g.seed_cpu_ms_per_delivery
        ),
        format!("{:.3}", s.cpu_ms_per_delivery),
        ratio(g.cpu_ms_per_delivery, s.cpu_ms_per_delivery),
    );
    row(
        "start to registered (committed by the seeds), ms",
        ms(g.registered_ms),
        "no registration".into(),
        "–".into(),
    );
    let join50 = |f: &Figures| f.joined_ms.map_or(f64::NAN, |l| l.p50);
    row(
        "start to joined (first overlay link / first mesh peer), ms",
        ms(g.joined_ms),
        ms(s.joined_ms),
        format!("p50 {}", ratio(join50(g), join50(s))),
    );
    row(
        "SIGKILL to removal committed on every seed, ms",
        ms(g.removal_ms),
        "no membership to remove from".into(),
        "–".into(),
    );
    if g.publish_failed + s.publish_failed > 0 {
        row(
            "publications refused",
            g.publish_failed.to_string(),
            s.publish_failed.to_string(),
            "–".into(),
        );
    }
}

fn print_sustained(n: usize, system: System, steps: &[Step]) {
    println!(
        "\n### Sustained load, {}: N = {n}, {SUSTAINED_PAYLOAD}-byte messages, {} s per step\n",
        system.name(),
        STEP.as_secs()
    );
    println!("| msgs/s per peer | msgs/s in all | delivery ratio | latency ms p50 / p99 / max | RSS / PSS / private MiB, p50 | peer CPU ms per delivery |");
    println!("|---|---|---|---|---|---|");
    for s in steps {
        println!(
            "| {} | {} | {:.4} | {} | {} | {:.3} |{}",
            s.rate,
            s.rate * n as f64,
            s.delivery.ratio,
            ms(s.delivery.latency_ms),
            [s.memory.rss, s.memory.pss, s.memory.private]
                .map(|m| m.map_or("–".into(), |m| format!("{:.2}", m.p50)))
                .join(" / "),
            s.cpu_ms_per_delivery,
            if s.degraded { " degraded" } else { "" }
        );
    }
    let sustained = steps.iter().rev().find(|s| !s.degraded).map(|s| s.rate);
    match sustained {
        Some(rate) => println!("\nHighest rate sustained (every message delivered, p99 ≤ {STEP_P99_LIMIT_MS} ms): **{rate} msgs/s per peer**."),
        None => println!("\nNo rate tried was sustained."),
    }
}

fn machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .nth(1)
        .and_then(|k| k.parse::<f64>().ok())
        .map_or("?".into(), |k| format!("{:.1} GiB", k / 1024.0 / 1024.0));
    let run = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let lock = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock"))
        .unwrap_or_default();
    let version = |name: &str| {
        lock.split("[[package]]")
            .find(|p| p.contains(&format!("name = \"{name}\"\n")))
            .and_then(|p| p.lines().find(|l| l.starts_with("version")))
            .map_or("?".into(), |l| {
                l.trim_start_matches("version = ")
                    .trim_matches('"')
                    .to_string()
            })
    };
    println!(
        "Machine: {} cores ({cpu}), {mem} RAM, Linux {}, {}.",
        run("nproc", &[]),
        run("uname", &["-r"]),
        run("rustc", &["-V"])
    );
    println!(
        "Comparison: rust-libp2p {} (libp2p-gossipsub {}), `gossipsub::Config::default()`, TCP + noise + yamux, signed messages; each gossipsub peer dials {GOSSIPSUB_DIALS} random earlier peers.",
        version("libp2p"),
        version("libp2p-gossipsub")
    );
}

struct Options {
    sizes: Vec<usize>,
    sustained_size: usize,
    rates: Vec<f64>,
    /// Network-wide messages per second in the burst.
    burst_rate: Option<f64>,
}

fn options() -> Options {
    let mut o = Options {
        sizes: vec![20, 100, 500],
        sustained_size: 100,
        rates: vec![0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0],
        burst_rate: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let list = |v: &str| -> Vec<f64> {
        v.split(',')
            .map(|x| x.parse().unwrap_or_else(|_| panic!("not a number: {x:?}")))
            .collect()
    };
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--sizes" => o.sizes = list(&value).into_iter().map(|x| x as usize).collect(),
            "--sustained-size" => o.sustained_size = value.parse().expect("--sustained-size N"),
            "--rates" => o.rates = list(&value),
            "--burst-rate" => o.burst_rate = Some(value.parse().expect("--burst-rate R")),
            // `cargo bench` passes --bench.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o
}

fn main() {
    let o = options();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let started = Instant::now();
    println!("## Side by side: gossipnet and gossipsub\n");
    machine();
    for &n in &o.sizes {
        let rate = o
            .burst_rate
            .unwrap_or((2000.0 / (n.max(2) - 1) as f64).clamp(10.0, 100.0));
        let g = burst(System::Gossipnet, n, rate, &mut rng);
        let s = burst(System::Gossipsub, n, rate, &mut rng);
        print_burst(n, rate, &g, &s);
    }
    if o.sustained_size > 1 {
        for system in [System::Gossipnet, System::Gossipsub] {
            let steps = sustained(system, o.sustained_size, &o.rates, &mut rng);
            print_sustained(o.sustained_size, system, &steps);
        }
    }
    println!("\nWhole run: {:.0} s.", started.elapsed().as_secs_f64());
}
