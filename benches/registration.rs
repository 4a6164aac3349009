//! Registration latency: from a peer's REGISTER_REQUEST to the seeds'
//! acknowledgements, which they send only after applying the commit.
//!
//! Starts real seed processes on loopback (with the test suite's fixtures),
//! then registers 200 peers one after another from this process: a
//! registering "peer" is a `FakeNode` (a key, and a listener that answers
//! the seeds' PROBEs), plus a proved connection to each of floor(n/2)+1
//! seeds. The time starts once the connections are up. Prints p50, p99 and max
//! for 3 and 5 seeds.
//!
//! Run: `cargo bench --bench registration` (add `-- 500` for more samples).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Cluster, FakeNode, RawClient};
use gossipnet::proto::{
    majority,
    message::{Message, Role},
};

/// One registration; returns the time until the last of the quorum's acks.
fn register_once(net: &mut Cluster) -> Duration {
    // A registering "peer": a key, and a listener that answers the seeds'
    // PROBEs (of its HELLO, and the registration's dial-back).
    let node = FakeNode::new(Role::Peer);
    let me = node.addr;
    let asked = majority(net.seeds.len());
    let mut conns: Vec<RawClient> = net.seeds[..asked]
        .iter()
        .map(|seed| {
            let c = node.greet(seed.addr());
            c.stream.set_nodelay(true).unwrap();
            c
        })
        .collect();
    let start = Instant::now();
    for c in &mut conns {
        c.send(&Message::RegisterRequest {
            incarnation: 1,
            key: node.identity.public_key(),
        });
    }
    for (i, c) in conns.iter_mut().enumerate() {
        loop {
            match c.recv() {
                Some(Message::RegisterAck {}) => break,
                Some(_) => continue,
                None => {
                    let seed = net.seeds[i].poll();
                    let recent = &seed.records[seed.records.len().saturating_sub(8)..];
                    panic!(
                        "seed {} closed the connection of {me} before acknowledging; its last events:\n{recent:#?}",
                        seed.addr()
                    );
                }
            }
        }
    }
    start.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let samples: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    println!("registration latency, request to committed acknowledgement, {samples} registrations");
    println!("{:<6} {:>10} {:>10} {:>10}", "seeds", "p50", "p99", "max");
    for n in [3, 5] {
        let mut net = Cluster::with_seeds(n, &[]);
        let mut times: Vec<Duration> = (0..samples).map(|_| register_once(&mut net)).collect();
        times.sort();
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
        println!(
            "{n:<6} {:>10} {:>10} {:>10}",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            ms(*times.last().unwrap())
        );
    }
}
