//! Registration latency: from a peer's REGISTER_REQUEST to the seeds'
//! acknowledgements, which they send only after applying the commit.
//!
//! Starts real seed processes on loopback (with the test suite's fixtures),
//! then registers 200 peers one after another from this process: a
//! registering "peer" is a listener that answers the seeds' dial-back PROBE,
//! plus a connection to each of floor(n/2)+1 seeds. Prints p50, p99 and max
//! for 3 and 5 seeds.
//!
//! Run: `cargo bench --bench registration` (add `-- 500` for more samples).

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    net::TcpListener,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use common::{Cluster, RawClient};
use gossipnet::proto::{
    evidence::Identity,
    majority,
    message::{Message, PublicKey, Role, PROTOCOL_VERSION},
};

/// The public key every registering "peer" states: keys may repeat across
/// addresses, and one key spares each registration a key derivation.
fn key() -> PublicKey {
    static KEY: std::sync::OnceLock<PublicKey> = std::sync::OnceLock::new();
    *KEY.get_or_init(|| Identity::from_secret([1; 32]).public_key())
}

/// Answers every PROBE on `listener` until `stop` is set.
fn answer_probes(
    listener: TcpListener,
    incarnation: u64,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    let listen = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(_) => {
                    thread::sleep(Duration::from_micros(200));
                    continue;
                }
            };
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut prober = RawClient { stream };
            if let Some(Message::Probe { nonce, .. }) = prober.recv() {
                prober.send(&Message::ProbeReply {
                    nonce,
                    role: Role::Peer,
                    listen,
                    incarnation,
                    key: Some(key()),
                });
            }
        }
    })
}

/// One registration; returns the time until the last of the quorum's acks.
fn register_once(net: &mut Cluster) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let me = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let prober = answer_probes(listener, 1, stop.clone());
    let asked = majority(net.seeds.len());
    let mut conns: Vec<RawClient> = net.seeds[..asked]
        .iter()
        .map(|seed| {
            let mut c = RawClient::connect(seed.addr());
            c.stream.set_nodelay(true).unwrap();
            c.send(&Message::Hello {
                version: PROTOCOL_VERSION,
                role: Role::Peer,
                listen: me,
            });
            assert!(matches!(c.recv(), Some(Message::Hello { .. })));
            c
        })
        .collect();
    let start = Instant::now();
    for c in &mut conns {
        c.send(&Message::RegisterRequest {
            incarnation: 1,
            key: key(),
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
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = prober.join();
    took
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
