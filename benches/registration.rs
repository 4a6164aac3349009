//! Registration latency: from a peer's REGISTER_REQUEST to the seeds'
//! acknowledgements, which they send only after applying the commit.
//!
//! Starts real seed processes on loopback, then registers 200 peers one
//! after another from this process: a registering "peer" is a listener that
//! answers the seeds' dial-back PROBE, plus a connection to each of
//! floor(n/2)+1 seeds. Prints p50, p99 and max for 3 and 5 seeds.
//!
//! Run: `cargo bench --bench registration` (add `-- 500` for more samples).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use gossipnet::proto::message::{Message, Role, PROTOCOL_VERSION};

const BIN: &str = env!("CARGO_BIN_EXE_gossipnet");

fn send(stream: &mut TcpStream, msg: &Message) {
    stream.write_all(&msg.to_frame()).expect("write");
}

fn recv(stream: &mut TcpStream) -> Option<Message> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).ok()?;
    Message::from_json(&body).ok()
}

struct Seeds {
    children: Vec<Child>,
    addrs: Vec<SocketAddr>,
    _dir: tempfile::TempDir,
}

impl Drop for Seeds {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start_seeds(n: usize) -> Seeds {
    let dir = tempfile::tempdir().unwrap();
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    drop(listeners);
    let config = dir.path().join("config.txt");
    let text: String = addrs.iter().map(|a| format!("{a}\n")).collect();
    std::fs::write(&config, text).unwrap();
    let children = addrs
        .iter()
        .map(|a| {
            Command::new(BIN)
                .current_dir(dir.path())
                .args(["seed", &a.to_string(), "--quiet", "--events"])
                .arg(format!("seed-{}.jsonl", a.port()))
                .arg("--config")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let seeds = Seeds {
        children,
        addrs,
        _dir: dir,
    };
    wait_until_formed(&seeds.addrs, seeds._dir.path());
    seeds
}

/// The cluster is formed once some seed reports a leader and a commit.
fn wait_until_formed(addrs: &[SocketAddr], _dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        for a in addrs {
            if let Ok(status) = gossipnet::status::fetch(*a) {
                if status["leader"].is_string()
                    && status["commit_index"][a.to_string()].as_u64() > Some(1)
                {
                    return;
                }
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("seed cluster did not form within 30 s");
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
            let mut stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(_) => {
                    thread::sleep(Duration::from_micros(200));
                    continue;
                }
            };
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            if let Some(Message::Probe { nonce, .. }) = recv(&mut stream) {
                send(
                    &mut stream,
                    &Message::ProbeReply {
                        nonce,
                        role: Role::Peer,
                        listen,
                        incarnation,
                    },
                );
            }
        }
    })
}

/// The last lines of seed `addr`'s event stream, to explain a failure.
fn recent_events(dir: &Path, addr: SocketAddr) -> String {
    let text = std::fs::read_to_string(dir.join(format!("seed-{}.jsonl", addr.port())))
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

/// One registration; returns the time until the last of the quorum's acks.
fn register_once(seeds: &[SocketAddr], dir: &Path) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let me = listener.local_addr().unwrap();
    let quorum = gossipnet::proto::majority(seeds.len());
    let stop = Arc::new(AtomicBool::new(false));
    let prober = answer_probes(listener, 1, stop.clone());
    let mut conns: Vec<TcpStream> = seeds[..quorum]
        .iter()
        .map(|s| {
            let mut c = TcpStream::connect(s).unwrap();
            c.set_nodelay(true).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            send(
                &mut c,
                &Message::Hello {
                    version: PROTOCOL_VERSION,
                    role: Role::Peer,
                    listen: me,
                },
            );
            assert!(matches!(recv(&mut c), Some(Message::Hello { .. })));
            c
        })
        .collect();
    let start = Instant::now();
    for c in &mut conns {
        send(c, &Message::RegisterRequest { incarnation: 1 });
    }
    for (c, seed) in conns.iter_mut().zip(seeds) {
        loop {
            match recv(c) {
                Some(Message::RegisterAck {}) => break,
                Some(_) => continue,
                None => panic!(
                    "seed {seed} closed the connection of {me} before acknowledging; its last events:\n{}",
                    recent_events(dir, *seed)
                ),
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
        let seeds = start_seeds(n);
        let mut times: Vec<Duration> = (0..samples)
            .map(|_| register_once(&seeds.addrs, seeds._dir.path()))
            .collect();
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
