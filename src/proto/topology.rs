//! Power-law neighbour selection (R6).
//!
//! A joining peer draws how many links to open from a Zipf distribution on
//! `1..=max_links` (heavy-tailed: most peers open one or two links, a few
//! open many), then picks that many distinct peers by preferential
//! attachment: each candidate's chance is proportional to its current degree,
//! as in the Barabási–Albert model. Peers of degree 0 are picked only when
//! no candidate with links is left, which also covers the very first joins.
//! Degree-weighted attachment is what makes hubs and the power-law tail.

use std::net::SocketAddr;

use rand::Rng;
use rand_distr::{Distribution, Zipf};

use super::message::PeerEntry;

/// Draws the number of links a joining peer opens: `1..=max_links`, with
/// P(k) proportional to k^-exponent.
pub fn draw_link_count<R: Rng + ?Sized>(max_links: u32, exponent: f64, rng: &mut R) -> usize {
    let max_links = max_links.max(1);
    match Zipf::new(max_links as f64, exponent) {
        Ok(zipf) => (zipf.sample(rng) as usize).clamp(1, max_links as usize),
        // Only reachable with an exponent the config validation rejects.
        Err(_) => 1,
    }
}

/// Picks up to `count` distinct candidates by preferential attachment on
/// their degree. Returns fewer only when there are fewer candidates.
pub fn choose_neighbors<R: Rng + ?Sized>(
    candidates: impl Into<Vec<PeerEntry>>,
    count: usize,
    rng: &mut R,
) -> Vec<SocketAddr> {
    let mut pool: Vec<PeerEntry> = candidates.into();
    let mut chosen = Vec::with_capacity(count.min(pool.len()));
    while chosen.len() < count && !pool.is_empty() {
        let total: u64 = pool.iter().map(|p| u64::from(p.degree)).sum();
        let index = if total == 0 {
            rng.random_range(0..pool.len())
        } else {
            let mut ticket = rng.random_range(0..total);
            pool.iter()
                .position(|p| {
                    let weight = u64::from(p.degree);
                    if ticket < weight {
                        true
                    } else {
                        ticket -= weight;
                        false
                    }
                })
                .expect("ticket falls inside the total weight")
        };
        chosen.push(pool.swap_remove(index).addr);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn entry(port: u16, degree: u32) -> PeerEntry {
        PeerEntry {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            degree,
        }
    }

    #[test]
    fn link_count_is_at_least_one_and_capped() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let counts: Vec<usize> = (0..10_000)
            .map(|_| draw_link_count(8, 2.0, &mut rng))
            .collect();
        assert!(counts.iter().all(|&k| (1..=8).contains(&k)));
        let ones = counts.iter().filter(|&&k| k == 1).count();
        let eights = counts.iter().filter(|&&k| k == 8).count();
        // Heavy-tailed: mostly one link, yet the cap is reached sometimes.
        assert!(ones > 5_000, "ones = {ones}");
        assert!(eights > 0, "the tail never reached the cap");
    }

    #[test]
    fn a_lone_candidate_is_always_chosen() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for degree in [0, 1, 5] {
            let chosen = choose_neighbors([entry(6001, degree)], 3, &mut rng);
            assert_eq!(chosen, vec![entry(6001, degree).addr]);
        }
    }

    #[test]
    fn chosen_neighbors_are_distinct_and_no_more_than_asked() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let candidates: Vec<_> = (0..20).map(|i| entry(6000 + i, u32::from(i % 4))).collect();
        for count in 1..=25 {
            let chosen = choose_neighbors(candidates.clone(), count, &mut rng);
            assert_eq!(chosen.len(), count.min(candidates.len()));
            let mut unique = chosen.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), chosen.len());
        }
    }

    #[test]
    fn attachment_prefers_high_degree_peers() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let hub = entry(6001, 30);
        let leaf = entry(6002, 1);
        let hub_picks = (0..3_000)
            .filter(|_| choose_neighbors([hub, leaf], 1, &mut rng)[0] == hub.addr)
            .count();
        // Expected share 30/31.
        assert!(hub_picks > 2_800, "hub picked {hub_picks} of 3000");
    }

    #[test]
    fn degree_zero_peers_wait_until_linked_peers_are_taken() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let linked = entry(6001, 1);
        let isolated = entry(6002, 0);
        for _ in 0..100 {
            assert_eq!(
                choose_neighbors([isolated, linked], 1, &mut rng),
                vec![linked.addr]
            );
            assert_eq!(choose_neighbors([isolated, linked], 2, &mut rng).len(), 2);
        }
    }
}
