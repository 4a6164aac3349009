//! The simulator at scale: builds the overlay of N peers through the real
//! join protocol, floods one message, and prints the run's figures for
//! N = 1,000, 10,000 and 100,000 (the sizes of issue 5): wall time,
//! actions (events) per second, peak memory per simulated peer, and the
//! overlay and dissemination figures.
//!
//! Run: `cargo bench --bench sim` (add sizes to choose others, e.g.
//! `-- 1000000`). Sizes run in increasing order in one process, so each
//! peak memory figure is that of the largest run so far.

use gossipnet::sim::{
    report::{simulate, SimOptions},
    NetworkModel,
};

fn main() {
    let mut sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![1_000, 10_000, 100_000];
    }
    sizes.sort_unstable();
    println!("gossipnet sim, seed 1, 3 seeds, latency 1..5 ms, no loss; one core");
    println!(
        "{:>9} {:>8} {:>10} {:>11} {:>9} {:>6} {:>5} {:>4} {:>9} {:>8} {:>5}",
        "peers",
        "wall s",
        "actions",
        "actions/s",
        "KB/peer",
        "alpha",
        "x_min",
        "diam",
        "coverage",
        "100% ms",
        "RMR"
    );
    for peers in sizes {
        let options = SimOptions {
            peers,
            seed: 1,
            network: NetworkModel::default(),
            crash_fraction: 0.0,
        };
        let report = match simulate(&options, |_, _| {}) {
            Ok(report) => report,
            Err(e) => {
                println!("{peers:>9} failed: {e}");
                continue;
            }
        };
        let (r, d, g) = (&report.run, &report.degree, &report.dissemination);
        println!(
            "{:>9} {:>8.2} {:>10} {:>11.0} {:>9} {:>6} {:>5} {:>3}{} {:>8.1}% {:>8} {:>5.2}",
            peers,
            r.wall_seconds,
            r.actions,
            r.actions_per_second,
            r.peak_memory_kb_per_peer
                .map_or("-".to_string(), |kb| format!("{kb:.1}")),
            d.alpha.map_or("-".to_string(), |a| format!("{a:.2}")),
            d.x_min.map_or("-".to_string(), |x| x.to_string()),
            report.overlay.diameter,
            if report.overlay.diameter_exact {
                " "
            } else {
                "~"
            },
            g.coverage * 100.0,
            g.ms_to_100.map_or("-".to_string(), |ms| format!("{ms:.1}")),
            g.rmr,
        );
    }
}
