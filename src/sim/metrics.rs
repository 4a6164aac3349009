//! Quality measures of an overlay and of a dissemination, as pure
//! functions of degrees, adjacency and delivery records.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    net::SocketAddr,
};

/// A discrete power-law fit, P(k) ∝ k^-alpha for k ≥ x_min.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerLawFit {
    pub alpha: f64,
    pub x_min: u32,
    /// Kolmogorov-Smirnov distance between the data at or above x_min and
    /// the fitted law.
    pub ks: f64,
    /// Samples at or above x_min.
    pub tail: usize,
}

/// Fewest samples a tail may have to be fitted at all.
const MIN_TAIL: usize = 10;

/// Fits a power law to `degrees` as Clauset, Shalizi and Newman do
/// (SIAM Review 51, 2009): for each candidate x_min, the maximum-likelihood
/// exponent of the discrete law in its continuous approximation,
/// alpha = 1 + n / sum(ln(k / (x_min - 1/2))), and the x_min whose fit has
/// the smallest KS distance. Degrees of 0 are left out. None when no tail
/// has [`MIN_TAIL`] samples.
pub fn fit_power_law(degrees: &[u32]) -> Option<PowerLawFit> {
    let mut sorted: Vec<u32> = degrees.iter().copied().filter(|d| *d > 0).collect();
    sorted.sort_unstable();
    let candidates: BTreeSet<u32> = sorted.iter().copied().collect();
    let mut best: Option<PowerLawFit> = None;
    for x_min in candidates {
        let tail: &[u32] = &sorted[sorted.partition_point(|d| *d < x_min)..];
        if tail.len() < MIN_TAIL {
            break;
        }
        let shift = f64::from(x_min) - 0.5;
        let sum: f64 = tail.iter().map(|k| (f64::from(*k) / shift).ln()).sum();
        if sum <= 0.0 {
            continue;
        }
        let alpha = 1.0 + tail.len() as f64 / sum;
        let ks = ks_distance(tail, x_min, alpha);
        if best.is_none_or(|b| ks < b.ks) {
            best = Some(PowerLawFit {
                alpha,
                x_min,
                ks,
                tail: tail.len(),
            });
        }
    }
    best
}

/// Largest gap between the empirical and the fitted share of samples at or
/// above each degree; `tail` is sorted.
fn ks_distance(tail: &[u32], x_min: u32, alpha: f64) -> f64 {
    let n = tail.len() as f64;
    let shift = f64::from(x_min) - 0.5;
    let mut worst: f64 = 0.0;
    let mut i = 0;
    while i < tail.len() {
        let k = tail[i];
        let at_or_above = (tail.len() - i) as f64 / n;
        let model = ((f64::from(k) - 0.5) / shift).powf(1.0 - alpha);
        worst = worst.max((at_or_above - model).abs());
        while i < tail.len() && tail[i] == k {
            i += 1;
        }
    }
    worst
}

pub type Adjacency = BTreeMap<SocketAddr, BTreeSet<SocketAddr>>;

/// Hop distances from `start` to every node it reaches.
pub fn distances(adjacency: &Adjacency, start: SocketAddr) -> BTreeMap<SocketAddr, u32> {
    let mut dist = BTreeMap::from([(start, 0)]);
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        let d = dist[&node];
        for next in adjacency.get(&node).into_iter().flatten() {
            if !dist.contains_key(next) {
                dist.insert(*next, d + 1);
                queue.push_back(*next);
            }
        }
    }
    dist
}

/// Whether every node of `adjacency` is reachable from every other.
pub fn is_connected(adjacency: &Adjacency) -> bool {
    adjacency
        .keys()
        .next()
        .is_none_or(|start| distances(adjacency, *start).len() == adjacency.len())
}

/// The diameter: exact (a search from every node) up to `exact_limit`
/// nodes; above that, a lower bound from repeated double sweeps (search
/// from a node, then from the farthest node found), which is usually exact
/// on sparse graphs. Returns (diameter, exact).
pub fn diameter(adjacency: &Adjacency, exact_limit: usize) -> (u32, bool) {
    let eccentricity = |start| distances(adjacency, start).into_values().max().unwrap_or(0);
    if adjacency.len() <= exact_limit {
        let d = adjacency
            .keys()
            .map(|n| eccentricity(*n))
            .max()
            .unwrap_or(0);
        return (d, true);
    }
    let mut best = 0;
    let step = (adjacency.len() / 8).max(1);
    for start in adjacency.keys().step_by(step).take(8) {
        let far = distances(adjacency, *start)
            .into_iter()
            .max_by_key(|(node, d)| (*d, std::cmp::Reverse(*node)))
            .map(|(node, _)| node)
            .unwrap_or(*start);
        best = best.max(eccentricity(far));
    }
    (best, false)
}

/// The `p`-th percentile (0 to 100) of `values`, by the nearest rank.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// Samples of a discrete power law with `alpha`, by the continuous
    /// approximation the fit assumes: k = floor((x_min - 1/2)(1-u)^(-1/(alpha-1)) + 1/2).
    fn samples(alpha: f64, x_min: u32, n: usize, seed: u64) -> Vec<u32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let u: f64 = rng.random();
                let x = (f64::from(x_min) - 0.5) * (1.0 - u).powf(-1.0 / (alpha - 1.0)) + 0.5;
                x.floor().min(1e9) as u32
            })
            .collect()
    }

    #[test]
    fn the_fit_recovers_the_exponent_of_power_law_samples() {
        for (alpha, x_min) in [(2.0, 1), (2.5, 1), (2.5, 3), (3.0, 3)] {
            let fit = fit_power_law(&samples(alpha, x_min, 50_000, 1)).unwrap();
            assert!((fit.alpha - alpha).abs() < 0.15, "{alpha}: {fit:?}");
            assert!(fit.ks < 0.05, "{fit:?}");
        }
    }

    #[test]
    fn the_fit_finds_where_the_tail_starts() {
        // Uniform noise below 5, a power law from 5 on.
        let mut data = samples(2.5, 5, 5000, 2);
        data.extend((0..5000).map(|i| 1 + (i % 4) as u32));
        let fit = fit_power_law(&data).unwrap();
        assert!((4..=6).contains(&fit.x_min), "{fit:?}");
        assert!((fit.alpha - 2.5).abs() < 0.2, "{fit:?}");
    }

    #[test]
    fn too_few_samples_give_no_fit() {
        assert_eq!(fit_power_law(&[1, 2, 3]), None);
        assert_eq!(fit_power_law(&[0; 100]), None);
    }

    fn a(i: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], i))
    }

    fn path(n: u16) -> Adjacency {
        let mut adj = Adjacency::new();
        for i in 0..n {
            let links = adj.entry(a(i)).or_default();
            if i > 0 {
                links.insert(a(i - 1));
            }
            if i + 1 < n {
                links.insert(a(i + 1));
            }
        }
        adj
    }

    #[test]
    fn a_path_has_its_length_as_diameter_exactly_or_by_sweeps() {
        assert_eq!(diameter(&path(50), 100), (49, true));
        assert_eq!(diameter(&path(50), 10), (49, false));
        assert!(is_connected(&path(50)));
        let mut cut = path(50);
        cut.get_mut(&a(10)).unwrap().remove(&a(11));
        cut.get_mut(&a(11)).unwrap().remove(&a(10));
        assert!(!is_connected(&cut));
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
