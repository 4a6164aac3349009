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
    // Sums of ln k over each tail, so that each candidate costs one lookup.
    let mut ln_tail_sums = vec![0.0; sorted.len() + 1];
    for i in (0..sorted.len()).rev() {
        ln_tail_sums[i] = ln_tail_sums[i + 1] + f64::from(sorted[i]).ln();
    }
    // Each distinct degree with how many samples are at or above it.
    let levels: Vec<(u32, usize)> = candidates
        .iter()
        .map(|k| (*k, sorted.len() - sorted.partition_point(|d| d < k)))
        .collect();
    let mut best: Option<PowerLawFit> = None;
    for x_min in candidates {
        let from = sorted.partition_point(|d| *d < x_min);
        let tail: &[u32] = &sorted[from..];
        if tail.len() < MIN_TAIL {
            break;
        }
        let shift = f64::from(x_min) - 0.5;
        let sum = ln_tail_sums[from] - tail.len() as f64 * shift.ln();
        if sum <= 0.0 {
            continue;
        }
        let alpha = 1.0 + tail.len() as f64 / sum;
        let ks = ks_distance(
            &levels[levels.partition_point(|(k, _)| *k < x_min)..],
            alpha,
        );
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
/// above each degree. `levels` are the tail's distinct degrees, from x_min
/// up, each with the samples at or above it.
fn ks_distance(levels: &[(u32, usize)], alpha: f64) -> f64 {
    let Some(&(x_min, n)) = levels.first() else {
        return 0.0;
    };
    let shift = f64::from(x_min) - 0.5;
    levels
        .iter()
        .map(|(k, at_or_above)| {
            let model = ((f64::from(*k) - 0.5) / shift).powf(1.0 - alpha);
            (*at_or_above as f64 / n as f64 - model).abs()
        })
        .fold(0.0, f64::max)
}

pub type Adjacency = BTreeMap<SocketAddr, BTreeSet<SocketAddr>>;

/// An adjacency with nodes numbered in address order and each node's
/// neighbours in one flat array: a search over 100,000 nodes then walks
/// arrays instead of trees. Build it once for several measures.
#[derive(Debug, PartialEq)]
pub struct Indexed {
    nodes: Vec<SocketAddr>,
    /// Node i's neighbours are `targets[starts[i]..starts[i + 1]]`.
    starts: Vec<usize>,
    targets: Vec<u32>,
}

impl Indexed {
    pub fn new(adjacency: &Adjacency) -> Indexed {
        Indexed::from_lists(
            adjacency.keys().copied().collect(),
            adjacency.values().map(|links| links.iter().copied()),
        )
    }

    /// `nodes` in address order, and each one's neighbours, in order too;
    /// a neighbour that is not among `nodes` is left out.
    pub fn from_lists<L: IntoIterator<Item = SocketAddr>>(
        nodes: Vec<SocketAddr>,
        lists: impl IntoIterator<Item = L>,
    ) -> Indexed {
        debug_assert!(nodes.is_sorted(), "nodes must be in address order");
        let mut starts = Vec::with_capacity(nodes.len() + 1);
        let mut targets = Vec::new();
        for links in lists {
            starts.push(targets.len());
            targets.extend(
                links
                    .into_iter()
                    .filter_map(|n| nodes.binary_search(&n).ok())
                    .map(|i| i as u32),
            );
        }
        starts.push(targets.len());
        Indexed {
            nodes,
            starts,
            targets,
        }
    }

    /// `nodes` in address order, and the links between them, each once as
    /// (lower place, higher place) in `nodes`, in order.
    pub fn from_links(nodes: Vec<SocketAddr>, links: &[(u32, u32)]) -> Indexed {
        debug_assert!(links.is_sorted(), "links must be in order");
        let mut starts = vec![0; nodes.len() + 1];
        for &(a, b) in links {
            starts[a as usize + 1] += 1;
            starts[b as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        // Filling in link order lists each node's neighbours in order: its
        // lower neighbours come first, as links sort by their lower end.
        let mut next = starts.clone();
        let mut targets = vec![0; links.len() * 2];
        for &(a, b) in links {
            targets[next[a as usize]] = b;
            next[a as usize] += 1;
            targets[next[b as usize]] = a;
            next[b as usize] += 1;
        }
        Indexed {
            nodes,
            starts,
            targets,
        }
    }

    /// Each node's number of neighbours, in address order.
    pub fn degrees(&self) -> Vec<u32> {
        self.starts
            .windows(2)
            .map(|w| (w[1] - w[0]) as u32)
            .collect()
    }

    /// Hop distances from node `start`; u32::MAX where it does not reach.
    fn distances(&self, start: usize) -> Vec<u32> {
        let mut dist = vec![u32::MAX; self.nodes.len()];
        let mut queue = VecDeque::from([start]);
        dist[start] = 0;
        while let Some(node) = queue.pop_front() {
            for next in &self.targets[self.starts[node]..self.starts[node + 1]] {
                let next = *next as usize;
                if dist[next] == u32::MAX {
                    dist[next] = dist[node] + 1;
                    queue.push_back(next);
                }
            }
        }
        dist
    }

    /// The farthest node `start` reaches (the smallest address of equals),
    /// and how far it is.
    fn farthest(&self, start: usize) -> (usize, u32) {
        self.distances(start)
            .into_iter()
            .enumerate()
            .filter(|(_, d)| *d != u32::MAX)
            .fold(
                (start, 0),
                |best, (i, d)| if d > best.1 { (i, d) } else { best },
            )
    }

    /// Whether every node is reachable from every other.
    pub fn is_connected(&self) -> bool {
        self.nodes.is_empty() || self.distances(0).iter().all(|d| *d != u32::MAX)
    }

    /// The diameter: exact (a search from every node) up to `exact_limit`
    /// nodes; above that, a lower bound from repeated double sweeps (search
    /// from a node, then from the farthest node found), which is usually
    /// exact on sparse graphs. Returns (diameter, exact).
    pub fn diameter(&self, exact_limit: usize) -> (u32, bool) {
        let n = self.nodes.len();
        if n <= exact_limit {
            let d = (0..n).map(|i| self.farthest(i).1).max().unwrap_or(0);
            return (d, true);
        }
        let step = (n / 8).max(1);
        let best = (0..n)
            .step_by(step)
            .take(8)
            .map(|start| self.farthest(self.farthest(start).0).1)
            .max()
            .unwrap_or(0);
        (best, false)
    }
}

/// Hop distances from `start` to every node it reaches.
pub fn distances(adjacency: &Adjacency, start: SocketAddr) -> BTreeMap<SocketAddr, u32> {
    let graph = Indexed::new(adjacency);
    let Ok(start) = graph.nodes.binary_search(&start) else {
        return BTreeMap::from([(start, 0)]);
    };
    graph
        .distances(start)
        .into_iter()
        .enumerate()
        .filter(|(_, d)| *d != u32::MAX)
        .map(|(i, d)| (graph.nodes[i], d))
        .collect()
}

/// Whether every node of `adjacency` is reachable from every other.
pub fn is_connected(adjacency: &Adjacency) -> bool {
    Indexed::new(adjacency).is_connected()
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
    fn a_graph_from_its_links_equals_the_graph_from_its_lists() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let nodes: Vec<SocketAddr> = (0..40u16)
            .map(|i| SocketAddr::from(([10, 0, 0, 1], 7000 + i)))
            .collect();
        let mut links = Vec::new();
        for a in 0..40u32 {
            for b in a + 1..40 {
                if rng.random_bool(0.1) {
                    links.push((a, b));
                }
            }
        }
        let lists = (0..40u32).map(|n| {
            links
                .iter()
                .filter_map(move |&(a, b)| (a == n).then_some(b).or((b == n).then_some(a)))
                .map(|p| nodes[p as usize])
                .collect::<BTreeSet<_>>()
        });
        let expected = Indexed::from_lists(nodes.clone(), lists.collect::<Vec<_>>());
        assert!(expected.degrees().iter().sum::<u32>() > 0);
        assert_eq!(Indexed::from_links(nodes, &links), expected);
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
        let graph = Indexed::new(&path(50));
        assert_eq!(graph.diameter(100), (49, true));
        assert_eq!(graph.diameter(10), (49, false));
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
