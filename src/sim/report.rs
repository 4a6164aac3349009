//! `gossipnet sim`: build an overlay in the simulator, flood one message
//! through it, optionally crash a fraction of the peers, and report the
//! quality figures (SPEC R23).

use std::{
    collections::{BTreeSet, VecDeque},
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use rand::seq::IteratorRandom;
use serde::Serialize;

use super::{
    metrics::{self, PowerLawFit},
    plot::{self, PlotError},
    NetworkModel, Sim, EPOCH,
};
use crate::proto::{peer::PeerSettings, Event, Timestamp};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub peers: usize,
    pub seed: u64,
    pub network: NetworkModel,
    /// Share of the peers crashed at once after the dissemination.
    pub crash_fraction: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub peers: usize,
    pub seed: u64,
    pub degree: DegreeReport,
    pub overlay: OverlayReport,
    pub dissemination: DisseminationReport,
    pub failures: Option<FailureReport>,
    pub run: RunReport,
    /// What the plots draw; too bulky for the JSON report.
    #[serde(skip)]
    pub plot_data: PlotData,
}

/// The samples behind the plots.
#[derive(Debug, Clone, Default)]
pub struct PlotData {
    /// Each live peer's degree in the overlay that was built.
    pub degrees: Vec<u32>,
    pub fit: Option<PowerLawFit>,
    /// (milliseconds since the message was created, share of the other
    /// peers that had it), one point per delivery.
    pub coverage: Vec<(f64, f64)>,
}

impl Report {
    /// Writes `degree.svg`, `degree.png` and `coverage.svg` into `dir`;
    /// returns the files written.
    pub fn write_plots(&self, dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
        let data = &self.plot_data;
        let mut written = plot::write_degree_plots(dir, &data.degrees, data.fit.as_ref())?;
        written.push(plot::write_coverage_plot(dir, &data.coverage)?);
        Ok(written)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DegreeReport {
    pub min: u32,
    pub max: u32,
    pub mean: f64,
    /// The power-law fit, when the tail is long enough to fit.
    pub alpha: Option<f64>,
    pub x_min: Option<u32>,
    pub ks: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OverlayReport {
    pub connected: bool,
    pub diameter: u32,
    /// False when the diameter is a double-sweep estimate (large overlays).
    pub diameter_exact: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DisseminationReport {
    /// Share of the other peers that received the message.
    pub coverage: f64,
    pub last_delivery_hop: u32,
    pub ms_to_50: Option<f64>,
    pub ms_to_99: Option<f64>,
    pub ms_to_100: Option<f64>,
    /// Relative message redundancy: frames / (N - 1) - 1.
    pub rmr: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailureReport {
    pub crashed: usize,
    pub removed: usize,
    pub detection_ms_p50: Option<f64>,
    pub detection_ms_p99: Option<f64>,
    pub false_removals: usize,
    pub connected_after_repair: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub virtual_seconds: f64,
    pub actions: u64,
    pub wall_seconds: f64,
    pub actions_per_second: f64,
    /// The process's peak resident memory so far, where the system tells
    /// it (Linux); per peer, an upper bound on what one simulated peer
    /// costs, seeds' share included.
    pub peak_memory_mb: Option<f64>,
    pub peak_memory_kb_per_peer: Option<f64>,
}

/// Peak resident memory of this process in bytes: `VmHWM` in
/// /proc/self/status. None where there is no such file.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Peers joining at once, per peer already joined: the network grows in
/// proportion to its size. Joins one at a time would leave each peer
/// pinging its neighbours through every later join: at 100,000 peers the
/// pings would outnumber everything else. Too many at once, and joiners
/// that see each other at degree 0 flatten the power law.
const JOINS_IN_FLIGHT_PER_PEER: f64 = 1.0 / 100.0;
/// How often the joining peers are checked on.
const JOIN_STEP: Duration = Duration::from_millis(1);
/// Most points of the coverage curve kept for its plot.
const COVERAGE_POINTS: usize = 1000;
/// How often a run that waits for events checks for them.
const COUNT_STEP: Duration = Duration::from_millis(1);
/// Virtual time allowed for each join, for the flood, and for removals.
const JOIN_LIMIT: Duration = Duration::from_secs(30);
const FLOOD_LIMIT: Duration = Duration::from_secs(30);
const REMOVAL_LIMIT: Duration = Duration::from_secs(60);

/// Only the events the report reads; the rest would cost memory.
fn reported(event: &Event) -> bool {
    matches!(
        event,
        Event::Joined { .. }
            | Event::GossipCreated { .. }
            | Event::GossipReceived { .. }
            | Event::RemoveCommitted { .. }
    )
}

/// Runs the simulation; `progress(done, total)` hears of each joined peer.
pub fn simulate(
    options: &SimOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<Report, String> {
    let started = Instant::now();
    let settings = PeerSettings {
        gossip_count: 0,
        ..PeerSettings::default()
    };
    let mut sim = Sim::new(options.seed, 3, settings, options.network.clone());
    sim.keep_events(reported);
    join_all(&mut sim, options.peers, &mut progress)?;
    // Let the last link reports commit.
    sim.run_for(Duration::from_secs(1));

    let graph = sim.live_graph();
    let degrees = graph.degrees();
    let fit = metrics::fit_power_law(&degrees);
    let degree = degree_report(&degrees, fit);
    let (diameter, diameter_exact) = graph.diameter(2000);
    let overlay = OverlayReport {
        connected: graph.is_connected(),
        diameter,
        diameter_exact,
    };
    let (dissemination, coverage) = flood(&mut sim);
    let failures = (options.crash_fraction > 0.0).then(|| crash(&mut sim, options.crash_fraction));
    let wall = started.elapsed().as_secs_f64();
    let peak = peak_memory_bytes();
    let run = RunReport {
        virtual_seconds: sim.now().as_secs_f64() - EPOCH.as_secs_f64(),
        actions: sim.handled(),
        wall_seconds: wall,
        actions_per_second: sim.handled() as f64 / wall.max(1e-9),
        peak_memory_mb: peak.map(|b| b as f64 / 1e6),
        peak_memory_kb_per_peer: peak.map(|b| b as f64 / 1e3 / options.peers.max(1) as f64),
    };
    // Freeing a large network's millions of allocations takes a good
    // part of a second, which the report need not wait for: a caller
    // that exits next never waits at all.
    std::thread::spawn(move || drop(sim));
    Ok(Report {
        peers: options.peers,
        seed: options.seed,
        degree,
        overlay,
        dissemination,
        failures,
        run,
        plot_data: PlotData {
            degrees,
            fit,
            coverage,
        },
    })
}

/// Adds `count` peers, with [`JOINS_IN_FLIGHT_PER_PEER`] joins under way
/// per peer already joined (at least one).
fn join_all(
    sim: &mut Sim,
    count: usize,
    progress: &mut impl FnMut(usize, usize),
) -> Result<(), String> {
    let mut joining: BTreeSet<SocketAddr> = BTreeSet::new();
    // Joiners in the order they were added, oldest first, to find one that
    // takes too long without looking at them all.
    let mut oldest: VecDeque<(Timestamp, SocketAddr)> = VecDeque::new();
    let (mut added, mut joined, mut seen) = (0, 0, sim.events().len());
    while joined < count {
        let in_flight = ((joined as f64 * JOINS_IN_FLIGHT_PER_PEER) as usize).max(1);
        while joining.len() < in_flight && added < count {
            let peer = sim.add_peer();
            joining.insert(peer);
            oldest.push_back((sim.now(), peer));
            added += 1;
        }
        sim.run_for(JOIN_STEP);
        let before = joined;
        for e in &sim.events()[seen..] {
            if matches!(e.event, Event::Joined { .. }) && joining.remove(&e.node) {
                joined += 1;
            }
        }
        seen = sim.events().len();
        while oldest.front().is_some_and(|(_, p)| !joining.contains(p)) {
            oldest.pop_front();
        }
        if let Some((since, peer)) = oldest.front() {
            if sim.now().saturating_since(*since) > JOIN_LIMIT {
                return Err(format!(
                    "peer {peer} did not join within {JOIN_LIMIT:?} of simulated time (added at {:.3} s)",
                    since.saturating_since(EPOCH).as_secs_f64()
                ));
            }
        }
        if joined > before {
            progress(joined, count);
        }
    }
    Ok(())
}

fn degree_report(degrees: &[u32], fit: Option<PowerLawFit>) -> DegreeReport {
    DegreeReport {
        min: degrees.iter().copied().min().unwrap_or(0),
        max: degrees.iter().copied().max().unwrap_or(0),
        mean: degrees.iter().map(|d| f64::from(*d)).sum::<f64>() / degrees.len().max(1) as f64,
        alpha: fit.map(|f| f.alpha),
        x_min: fit.map(|f| f.x_min),
        ks: fit.map(|f| f.ks),
    }
}

/// One message from a random peer, followed until every live peer has it
/// or the limit passes. Also returns the coverage curve.
fn flood(sim: &mut Sim) -> (DisseminationReport, Vec<(f64, f64)>) {
    let live = sim.live_peers();
    let author = *live.iter().choose(sim.rng()).expect("at least one peer");
    let before = sim.events().len();
    sim.type_line(author, "probe");
    let others = live.len().saturating_sub(1);
    run_until_counted(sim, FLOOD_LIMIT, others, |e| {
        matches!(e, Event::GossipReceived { .. })
    });
    let events = &sim.events()[before..];
    let created = events.iter().find_map(|e| match &e.event {
        Event::GossipCreated { msg } => Some((e.at, msg.clone())),
        _ => None,
    });
    let Some((start, text)) = created else {
        let nothing = DisseminationReport {
            coverage: 0.0,
            last_delivery_hop: 0,
            ms_to_50: None,
            ms_to_99: None,
            ms_to_100: None,
            rmr: 0.0,
        };
        return (nothing, Vec::new());
    };
    let deliveries: Vec<(Timestamp, u32)> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::GossipReceived { msg, hops, .. } if *msg == text => Some((e.at, *hops)),
            _ => None,
        })
        .collect();
    let time_to = |share: f64| {
        let needed = (share * others as f64).ceil() as usize;
        deliveries
            .get(needed.max(1) - 1)
            .filter(|_| needed <= deliveries.len())
            .map(|(at, _)| at.saturating_since(start).as_secs_f64() * 1000.0)
    };
    let frames = sim.gossip_frames(&text) as f64;
    // A plot needs no more than about a thousand points.
    let every = (deliveries.len() / COVERAGE_POINTS).max(1);
    let curve = deliveries
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0 || i + 1 == deliveries.len())
        .map(|(i, (at, _))| {
            let ms = at.saturating_since(start).as_secs_f64() * 1000.0;
            (ms, (i + 1) as f64 / others.max(1) as f64)
        })
        .collect();
    let report = DisseminationReport {
        coverage: deliveries.len() as f64 / others.max(1) as f64,
        last_delivery_hop: deliveries.iter().map(|(_, h)| *h).max().unwrap_or(0),
        ms_to_50: time_to(0.5),
        ms_to_99: time_to(0.99),
        ms_to_100: time_to(1.0),
        rmr: frames / others.max(1) as f64 - 1.0,
    };
    (report, curve)
}

/// Crashes `fraction` of the peers at once and follows their removal.
fn crash(sim: &mut Sim, fraction: f64) -> FailureReport {
    let live = sim.live_peers();
    let count = ((fraction.clamp(0.0, 1.0) * live.len() as f64).round() as usize).min(live.len());
    let victims: BTreeSet<SocketAddr> = live
        .into_iter()
        .choose_multiple(sim.rng(), count)
        .into_iter()
        .collect();
    let at = sim.now();
    let before = sim.events().len();
    for v in &victims {
        sim.crash(*v);
    }
    // Every seed logs each removal: a majority of them, for each victim.
    let seeds = sim.seeds().len();
    run_until_counted(
        sim,
        REMOVAL_LIMIT,
        victims.len() * seeds,
        |e| matches!(e, Event::RemoveCommitted { peer, .. } if victims.contains(peer)),
    );
    // Let the repairs settle.
    sim.run_for(Duration::from_secs(5));
    let mut first_removal: std::collections::BTreeMap<SocketAddr, Timestamp> = Default::default();
    let mut false_removals = BTreeSet::new();
    for e in &sim.events()[before..] {
        if let Event::RemoveCommitted { peer, .. } = e.event {
            if victims.contains(&peer) {
                first_removal.entry(peer).or_insert(e.at);
            } else {
                false_removals.insert(peer);
            }
        }
    }
    let latencies: Vec<f64> = first_removal
        .values()
        .map(|t| t.saturating_since(at).as_secs_f64() * 1000.0)
        .collect();
    FailureReport {
        crashed: victims.len(),
        removed: first_removal.len(),
        detection_ms_p50: metrics::percentile(&latencies, 50.0),
        detection_ms_p99: metrics::percentile(&latencies, 99.0),
        false_removals: false_removals.len(),
        connected_after_repair: sim.live_graph().is_connected(),
    }
}

/// Runs until `wanted` events that `counts` have been logged from now on,
/// or for `limit`. Counts only the events new at each step, so that a long
/// run does not rescan the log after every action.
fn run_until_counted(
    sim: &mut Sim,
    limit: Duration,
    wanted: usize,
    counts: impl Fn(&Event) -> bool,
) {
    let until = sim.now() + limit;
    let (mut seen, mut counted) = (sim.events().len(), 0);
    while counted < wanted && sim.now() < until {
        sim.run_for(COUNT_STEP);
        counted += sim.events()[seen..]
            .iter()
            .filter(|e| counts(&e.event))
            .count();
        seen = sim.events().len();
    }
}

fn ms(value: Option<f64>) -> String {
    value.map_or("-".to_string(), |v| format!("{v:.1} ms"))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "gossipnet sim: {} peers, seed {}", self.peers, self.seed)?;
        let d = &self.degree;
        write!(
            f,
            "degree: min {}, max {}, mean {:.2}",
            d.min, d.max, d.mean
        )?;
        match (d.alpha, d.x_min, d.ks) {
            (Some(alpha), Some(x_min), Some(ks)) => writeln!(
                f,
                "; power law alpha {alpha:.2} from x_min {x_min} (KS distance {ks:.3})"
            )?,
            _ => writeln!(f, "; too few peers to fit a power law")?,
        }
        let o = &self.overlay;
        writeln!(
            f,
            "overlay: {}, diameter {}{}",
            if o.connected {
                "connected"
            } else {
                "NOT connected"
            },
            o.diameter,
            if o.diameter_exact { "" } else { " (estimate)" }
        )?;
        let g = &self.dissemination;
        writeln!(
            f,
            "dissemination: coverage {:.1}%, last delivery at hop {}, 50% in {}, 99% in {}, 100% in {}, RMR {:.2}",
            g.coverage * 100.0,
            g.last_delivery_hop,
            ms(g.ms_to_50),
            ms(g.ms_to_99),
            ms(g.ms_to_100),
            g.rmr
        )?;
        if let Some(c) = &self.failures {
            writeln!(
                f,
                "failures: {} crashed, {} removed, detection p50 {} p99 {}, {} false removals, overlay {} after repair",
                c.crashed,
                c.removed,
                ms(c.detection_ms_p50),
                ms(c.detection_ms_p99),
                c.false_removals,
                if c.connected_after_repair { "connected" } else { "NOT connected" }
            )?;
        }
        let r = &self.run;
        write!(
            f,
            "run: {:.1} s simulated, {} actions in {:.2} s ({:.0} actions/s)",
            r.virtual_seconds, r.actions, r.wall_seconds, r.actions_per_second
        )?;
        match (r.peak_memory_mb, r.peak_memory_kb_per_peer) {
            (Some(mb), Some(per_peer)) => {
                writeln!(f, ", peak memory {mb:.0} MB ({per_peer:.1} KB per peer)")
            }
            _ => writeln!(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_run_reports_a_connected_overlay_full_coverage_and_every_crash_removed() {
        let options = SimOptions {
            peers: 200,
            seed: 3,
            network: NetworkModel::default(),
            crash_fraction: 0.1,
        };
        let mut seen = 0;
        let report = simulate(&options, |done, _| seen = done).unwrap();
        assert_eq!(seen, 200);
        assert!(report.overlay.connected);
        assert_eq!(report.dissemination.coverage, 1.0);
        assert!(report.dissemination.rmr >= 0.0);
        assert!(report.dissemination.ms_to_100.is_some());
        assert!(report.degree.max > report.degree.min);
        let failures = report.failures.clone().unwrap();
        assert_eq!((failures.crashed, failures.removed), (20, 20));
        assert_eq!(failures.false_removals, 0);
        assert!(failures.connected_after_repair);
        let text = report.to_string();
        assert!(text.contains("coverage 100.0%"), "{text}");
        // The plots draw what was measured.
        let data = &report.plot_data;
        assert_eq!(data.degrees.len(), 200);
        assert_eq!(data.coverage.len(), 199);
        assert_eq!(data.coverage.last().unwrap().1, 1.0);
        assert!(data.coverage.windows(2).all(|w| w[0].0 <= w[1].0));
        let dir = tempfile::tempdir().unwrap();
        let written = report.write_plots(dir.path()).unwrap();
        let names: Vec<_> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["degree.svg", "degree.png", "coverage.svg"]);
        for file in &written {
            assert!(std::fs::metadata(file).unwrap().len() > 1000, "{file:?}");
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_figures() {
        let options = SimOptions {
            peers: 60,
            seed: 9,
            network: NetworkModel::default(),
            crash_fraction: 0.0,
        };
        let a = simulate(&options, |_, _| {}).unwrap();
        let b = simulate(&options, |_, _| {}).unwrap();
        assert_eq!(a.dissemination.rmr, b.dissemination.rmr);
        assert_eq!(a.run.actions, b.run.actions);
        assert_eq!(a.degree.mean, b.degree.mean);
    }
}
