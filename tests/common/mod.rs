//! Fixtures for tests that run real gossipnet processes.
//!
//! Every process is killed when its handle drops, so a failing test leaves
//! nothing behind. Ports are never fixed: seeds get ports the OS just handed
//! out, peers listen on port 0 and report theirs in their first event. (The
//! namespace tests are the exception: see `netns` and tests/netns/.)

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use gossipnet::{
    cluster::EventTail,
    output::EventRecord,
    proto::{message::Message, Event},
};

pub mod harness;
#[cfg(target_os = "linux")]
pub mod netns;

pub const BIN: &str = env!("CARGO_BIN_EXE_gossipnet");
/// The peer-only executable, `gossipnet-peer`.
pub const PEER_BIN: &str = env!("CARGO_BIN_EXE_gossipnet-peer");

/// Now, in microseconds since the Unix epoch: the clock of the nodes'
/// event timestamps.
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Polls `check` until it returns `Some`, or panics after `deadline` with
/// `what` and the last thing `describe` saw.
pub fn wait_for<T>(
    what: &str,
    deadline: Duration,
    check: impl FnMut() -> Option<T>,
    describe: impl Fn() -> String,
) -> T {
    wait_for_every(Duration::from_millis(20), what, deadline, check, describe)
}

/// [`wait_for`], polling every `interval`: for checks that start processes.
pub fn wait_for_every<T>(
    interval: Duration,
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> Option<T>,
    describe: impl Fn() -> String,
) -> T {
    let until = Instant::now() + deadline;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() > until {
            panic!(
                "timed out after {deadline:?} waiting for {what}; saw: {}",
                describe()
            );
        }
        thread::sleep(interval);
    }
}

/// `n` distinct ports that were free a moment ago, from below the kernel's
/// ephemeral range (see `gossipnet::net::ports`).
pub fn free_ports(n: usize) -> Vec<u16> {
    (0..n)
        .map(|_| gossipnet::net::ports::free_port().expect("a free port"))
        .collect()
}

/// One running node.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub dir: PathBuf,
    tail: EventTail,
    pub records: Vec<EventRecord>,
    pub addr: Option<SocketAddr>,
}

impl Proc {
    pub fn spawn(dir: &Path, name: &str, args: &[String], stdin: bool) -> Proc {
        Proc::spawn_via(&[], dir, name, args, stdin)
    }

    /// Like [`Proc::spawn`], but started through `launcher`, a command
    /// that runs its arguments (`ip netns exec NS`); the launcher must
    /// exec the node, not fork it, so that the child is the node itself.
    pub fn spawn_via(
        launcher: &[&str],
        dir: &Path,
        name: &str,
        args: &[String],
        stdin: bool,
    ) -> Proc {
        let events = dir.join(format!("{name}.events.jsonl"));
        let stderr = std::fs::File::create(dir.join(format!("{name}.stderr.txt"))).unwrap();
        let child = command_via(launcher)
            .current_dir(dir)
            .args(args)
            .arg("--events")
            .arg(&events)
            .arg("--quiet")
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start gossipnet");
        Proc {
            name: name.into(),
            child,
            dir: dir.to_path_buf(),
            tail: EventTail::new(events),
            records: Vec::new(),
            addr: None,
        }
    }

    /// Reads new events; returns self for chaining.
    pub fn poll(&mut self) -> &mut Proc {
        for record in self.tail.poll().expect("read events") {
            self.addr.get_or_insert(record.node);
            self.records.push(record);
        }
        self
    }

    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.records.iter().map(|r| &r.event)
    }

    pub fn count(&self, pred: impl Fn(&Event) -> bool) -> usize {
        self.events().filter(|e| pred(e)).count()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("node has reported its address")
    }

    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.child.stdin.as_mut().expect("started with stdin")
    }

    /// Waits for an event matching `pred`.
    pub fn wait_event(&mut self, what: &str, deadline: Duration, pred: impl Fn(&Event) -> bool) {
        self.wait_events(what, deadline, 1, pred)
    }

    /// Waits until `count` events match `pred`.
    pub fn wait_events(
        &mut self,
        what: &str,
        deadline: Duration,
        count: usize,
        pred: impl Fn(&Event) -> bool,
    ) {
        let name = self.name.clone();
        let this = std::cell::RefCell::new(self);
        wait_for(
            &format!("{name}: {what}"),
            deadline,
            || {
                let mut p = this.borrow_mut();
                p.poll();
                (p.count(&pred) >= count).then_some(())
            },
            || {
                let p = this.borrow();
                let stderr = std::fs::read_to_string(p.dir.join(format!("{}.stderr.txt", p.name)))
                    .unwrap_or_default();
                format!("{:?}; stderr: {stderr}", p.events().collect::<Vec<_>>())
            },
        )
    }

    pub fn output_file(&self, role: &str) -> PathBuf {
        self.dir
            .join(format!("outputfile_{role}_{}.txt", self.addr().port()))
    }

    /// Sends `signal` and returns the exit status; panics if the process
    /// is still running 10 s later.
    #[cfg(unix)]
    pub fn stop_with(&mut self, signal: nix::sys::signal::Signal) -> ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
        let child = &mut self.child;
        let name = self.name.clone();
        wait_for(
            &format!("{name} to exit after {signal}"),
            Duration::from_secs(10),
            || child.try_wait().unwrap(),
            || "still running".into(),
        )
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Seeds plus peers in one temporary directory.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub seeds: Vec<Proc>,
    pub peers: Vec<Proc>,
    peer_args: Vec<String>,
    seed_args: Vec<String>,
}

pub const START: Duration = Duration::from_secs(15);

impl Cluster {
    /// Starts `n` seeds listed in a config.csv and waits until their
    /// cluster has formed.
    pub fn with_seeds(n: usize, peer_args: &[&str]) -> Cluster {
        Cluster::with_seed_args(n, &[], peer_args)
    }

    /// As [`Cluster::with_seeds`], with `seed_args` added to every seed's
    /// command line (each life of it).
    pub fn with_seed_args(n: usize, seed_args: &[&str], peer_args: &[&str]) -> Cluster {
        let seed_args: Vec<String> = seed_args.iter().map(|s| s.to_string()).collect();
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(n);
        let config = dir.path().join("config.csv");
        let lines: String = ports.iter().map(|p| format!("127.0.0.1,{p}\n")).collect();
        std::fs::write(&config, lines).unwrap();
        let mut seeds: Vec<Proc> = ports
            .iter()
            .map(|port| Self::spawn_seed(dir.path(), &config, *port, 0, &seed_args))
            .collect();
        for seed in &mut seeds {
            seed.wait_event("the seed cluster to form", START, |e| {
                matches!(e, Event::ClusterFormed { .. })
            });
        }
        Cluster {
            dir,
            config,
            seeds,
            peers: Vec::new(),
            peer_args: peer_args.iter().map(|s| s.to_string()).collect(),
            seed_args,
        }
    }

    fn spawn_seed(dir: &Path, config: &Path, port: u16, life: usize, extra: &[String]) -> Proc {
        let mut args = vec![
            "seed".into(),
            format!("127.0.0.1:{port}"),
            "--config".into(),
            config.display().to_string(),
            "--data-dir".into(),
            dir.join(format!("data-{port}")).display().to_string(),
        ];
        args.extend(extra.iter().cloned());
        // Each life of a seed gets its own file names.
        Proc::spawn(dir, &format!("seed-{port}-{life}"), &args, false)
    }

    /// The data directory of seed `i`.
    pub fn seed_data_dir(&self, i: usize) -> PathBuf {
        let port = self.seeds[i].addr().port();
        self.dir.path().join(format!("data-{port}"))
    }

    /// SIGKILLs seed `i`.
    pub fn kill_seed(&mut self, i: usize) {
        let seed = &mut self.seeds[i];
        let _ = seed.child.kill();
        let _ = seed.child.wait();
    }

    /// Starts seed `i` again on its port and data directory, and waits
    /// until it listens.
    pub fn restart_seed(&mut self, i: usize) {
        let port = self.seeds[i].addr().port();
        let life = self.seeds[i].name.rsplit('-').next().unwrap();
        let life = life.parse::<usize>().unwrap() + 1;
        let mut seed = Self::spawn_seed(self.dir.path(), &self.config, port, life, &self.seed_args);
        seed.wait_event("listening", START, |e| matches!(e, Event::Listening { .. }));
        self.seeds[i] = seed;
    }

    /// Starts a peer without waiting for it to join.
    pub fn start_peer(&mut self) -> usize {
        self.start_peer_with(&[], false)
    }

    /// Starts a peer on a free port, with `extra` arguments, without waiting.
    pub fn start_peer_with(&mut self, extra: &[&str], stdin: bool) -> usize {
        let mut args: Vec<String> = vec![
            "peer".into(),
            "127.0.0.1:0".into(),
            "--config".into(),
            self.config.display().to_string(),
        ];
        args.extend(self.peer_args.iter().cloned());
        args.extend(extra.iter().map(|s| s.to_string()));
        let name = format!("peer-{}", self.peers.len() + 1);
        self.peers
            .push(Proc::spawn(self.dir.path(), &name, &args, stdin));
        self.peers.len() - 1
    }

    /// Starts a peer on a free port and waits until it has joined.
    pub fn add_peer(&mut self) -> usize {
        self.add_peer_with(&[], false)
    }

    pub fn add_peer_with(&mut self, extra: &[&str], stdin: bool) -> usize {
        let i = self.start_peer_with(extra, stdin);
        self.peers[i].wait_event("joined", START, |e| matches!(e, Event::Joined { .. }));
        i
    }

    pub fn poll_all(&mut self) {
        for p in self.seeds.iter_mut().chain(self.peers.iter_mut()) {
            p.poll();
        }
    }
}

/// The HELLO a hand-made node sends.
pub fn hello(listen: SocketAddr, role: gossipnet::proto::message::Role) -> Message {
    Message::Hello {
        version: gossipnet::proto::message::PROTOCOL_VERSION,
        role,
        listen,
        challenge: None,
    }
}

/// A hand-driven connection speaking the wire protocol, for feeding nodes
/// good and bad input.
pub struct RawClient {
    pub stream: TcpStream,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        RawClient { stream }
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    pub fn send(&mut self, msg: &Message) {
        self.send_bytes(&msg.to_frame());
    }

    /// The next frame, or `None` when the node closed the connection.
    pub fn recv(&mut self) -> Option<Message> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some(Message::from_json(&body).expect("node sent a valid message"))
    }

    /// True once the node has closed the connection.
    pub fn closed_by_node(&mut self) -> bool {
        let mut buf = [0u8; 64];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                // A reset also means closed; a timeout means still open.
                Err(e) => {
                    return e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::TimedOut
                }
            }
        }
    }
}

/// Lines a child prints, collected on a thread so that tests can wait for
/// one with a deadline.
/// Kills and reaps the child when dropped, so a failing test leaves nothing
/// running.
pub struct Reap(pub std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `gossipnet up ARGS --run-dir run` in `dir`, its standard output
/// read line by line; standard input is piped when `stdin` (for typed
/// commands), else empty.
pub fn start_up(dir: &Path, args: &[&str], stdin: bool) -> (Reap, LineReader) {
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .arg("up")
        .args(args)
        .args(["--run-dir", "run"])
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start gossipnet up");
    let lines = LineReader::new(child.stdout.take().unwrap());
    (Reap(child), lines)
}

pub struct LineReader {
    rx: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl LineReader {
    pub fn new(out: impl Read + Send + 'static) -> LineReader {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LineReader {
            rx,
            seen: Vec::new(),
        }
    }

    /// The first new line containing `needle`.
    pub fn wait_line(&mut self, needle: &str, deadline: Duration) -> String {
        let until = Instant::now() + deadline;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "timed out after {deadline:?} waiting for a line with {needle:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

/// The gossipnet binary, run through `launcher` if there is one.
pub fn command_via(launcher: &[&str]) -> Command {
    match launcher {
        [] => Command::new(BIN),
        [program, args @ ..] => {
            let mut command = Command::new(program);
            command.args(args).arg(BIN);
            command
        }
    }
}

/// `gossipnet status --seed ADDR` as JSON, or None when it fails.
pub fn status(seed: SocketAddr) -> Option<serde_json::Value> {
    status_with(seed, &[])
}

/// As [`status`], with more arguments for `gossipnet status`.
pub fn status_with(seed: SocketAddr, extra: &[&str]) -> Option<serde_json::Value> {
    status_via(&[], seed, extra)
}

/// [`status_with`], run through `launcher` (see [`Proc::spawn_via`]).
pub fn status_via(
    launcher: &[&str],
    seed: SocketAddr,
    extra: &[&str],
) -> Option<serde_json::Value> {
    let out = command_via(launcher)
        .args(["status", "--seed", &seed.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The committed Peer List a seed reports, as sorted "ip:port" strings.
pub fn committed_peers(seed: SocketAddr) -> Option<Vec<String>> {
    peer_list(&status(seed)?)
}

/// The committed Peer List in a status report, as sorted "ip:port" strings.
pub fn peer_list(status: &serde_json::Value) -> Option<Vec<String>> {
    let mut peers: Vec<String> = status["peers"]
        .as_array()?
        .iter()
        .filter_map(|p| p["addr"].as_str().map(String::from))
        .collect();
    peers.sort();
    Some(peers)
}

/// Each peer's neighbours.
pub type Adjacency = std::collections::BTreeMap<SocketAddr, std::collections::BTreeSet<SocketAddr>>;

/// The committed topology `seed` serves through `gossipnet status`, without
/// the peers in `dead`; None when the status cannot be had.
pub fn committed_topology(seed: SocketAddr, dead: &[SocketAddr]) -> Option<Adjacency> {
    let status = status(seed)?;
    let mut adjacency = Adjacency::new();
    for edge in status["topology"].as_array()? {
        let a: SocketAddr = edge[0].as_str()?.parse().ok()?;
        let b: SocketAddr = edge[1].as_str()?.parse().ok()?;
        if !dead.contains(&a) && !dead.contains(&b) {
            adjacency.entry(a).or_default().insert(b);
            adjacency.entry(b).or_default().insert(a);
        }
    }
    Some(adjacency)
}

/// `n` connections to `target` that say nothing, from the local address
/// `from` (any port): 127.0.0.2 stands for another host on one machine,
/// 127.0.0.1 for a process on the nodes' own. They stay open until dropped.
pub fn idle_connections(target: SocketAddr, from: std::net::IpAddr, n: usize) -> Vec<TcpStream> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut held = Vec::with_capacity(n);
        for _ in 0..n {
            let socket = match from {
                std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
                std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
            }
            .unwrap();
            socket.bind(SocketAddr::new(from, 0)).unwrap();
            let stream = socket.connect(target).await.expect("connect");
            let stream = stream.into_std().unwrap();
            stream.set_nonblocking(false).unwrap();
            held.push(stream);
        }
        held
    })
}

/// The resident memory of process `pid`, in KiB (Linux; 0 elsewhere).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Connects to `target` as the node at `listen` holding `identity`: says
/// HELLO, takes the node's HELLO (and its challenge), and answers with a
/// HELLO_PROOF. The node takes the connection as `listen`'s only if a PROBE
/// of `listen` finds `identity`'s key there: a [`FakeNode`], or the real
/// node whose key the test holds.
pub fn greet_as(
    target: SocketAddr,
    listen: SocketAddr,
    role: gossipnet::proto::message::Role,
    identity: &gossipnet::proto::evidence::Identity,
) -> RawClient {
    try_greet_as(target, listen, role, identity)
        .unwrap_or_else(|| panic!("{target} sent no HELLO back to {listen}"))
}

/// [`greet_as`], or `None` if the node closed the connection instead of
/// answering the HELLO.
pub fn try_greet_as(
    target: SocketAddr,
    listen: SocketAddr,
    role: gossipnet::proto::message::Role,
    identity: &gossipnet::proto::evidence::Identity,
) -> Option<RawClient> {
    greet_on(RawClient::connect(target), listen, role, identity)
}

/// [`try_greet_as`] on a connection already open.
pub fn greet_on(
    mut client: RawClient,
    listen: SocketAddr,
    role: gossipnet::proto::message::Role,
    identity: &gossipnet::proto::evidence::Identity,
) -> Option<RawClient> {
    client.send(&hello(listen, role));
    let Some(Message::Hello {
        listen: acceptor,
        challenge,
        ..
    }) = client.recv()
    else {
        return None;
    };
    // A node that asks for no proof takes the HELLO at its word.
    if let Some(challenge) = challenge {
        client.send(&Message::HelloProof {
            key: identity.public_key(),
            signature: identity.prove_hello(listen, acceptor, challenge),
        });
    }
    Some(client)
}

/// A hand-made node that nodes can check: a key, and a listener at its
/// address that answers PROBEs as a real node's driver does. Its listener
/// stops when it drops.
pub struct FakeNode {
    pub addr: SocketAddr,
    pub role: gossipnet::proto::message::Role,
    pub identity: gossipnet::proto::evidence::Identity,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FakeNode {
    pub fn new(role: gossipnet::proto::message::Role) -> FakeNode {
        FakeNode::at("127.0.0.1:0".parse().unwrap(), role)
    }

    /// A fake node listening at `addr` exactly (port 0: any free one),
    /// with a key of its own.
    pub fn at(addr: SocketAddr, role: gossipnet::proto::message::Role) -> FakeNode {
        let identity = gossipnet::proto::evidence::Identity::from_secret(rand::random());
        let listener = std::net::TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (key, stopped) = (identity.public_key(), stop.clone());
        let thread = thread::spawn(move || {
            // Drop wakes the accept with a connection of its own.
            while let Ok((stream, _)) = listener.accept() {
                if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let mut client = RawClient { stream };
                let _ = client.stream.set_read_timeout(Some(Duration::from_secs(2)));
                if let Some(Message::Probe { nonce, .. }) = client.recv() {
                    let reply = Message::ProbeReply {
                        nonce,
                        role,
                        listen: addr,
                        incarnation: 1,
                        key: Some(key),
                    };
                    let _ = client.stream.write_all(&reply.to_frame());
                }
            }
        });
        FakeNode {
            addr,
            role,
            identity,
            stop,
            thread: Some(thread),
        }
    }

    /// A connection to `target` that it takes as this node's, once its
    /// PROBE of this node has answered.
    pub fn greet(&self, target: SocketAddr) -> RawClient {
        greet_as(target, self.addr, self.role, &self.identity)
    }

    /// [`FakeNode::greet`], returning once `target` has taken the
    /// connection: a peer target has answered a PING on it, a seed target a
    /// PEER_LIST_REQUEST. Frames sent before then wait at the node, and
    /// only up to a bound.
    pub fn greet_taken(
        &self,
        target: SocketAddr,
        target_role: gossipnet::proto::message::Role,
    ) -> RawClient {
        let mut client = self.greet(target);
        let (ask, answered): (Message, fn(&Message) -> bool) = match target_role {
            gossipnet::proto::message::Role::Peer => (Message::Ping { nonce: 0 }, |m| {
                matches!(m, Message::Pong { nonce: 0, .. })
            }),
            gossipnet::proto::message::Role::Seed => (Message::PeerListRequest {}, |m| {
                matches!(m, Message::PeerList { .. })
            }),
        };
        client.send(&ask);
        loop {
            match client.recv() {
                Some(m) if answered(&m) => return client,
                Some(_) => continue,
                None => panic!("{target} did not take the connection of {}", self.addr),
            }
        }
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `gossipnet ARGS` to its end, at most `limit`; its exit code,
/// standard output and standard error.
pub fn run_to_end(args: &[String], limit: Duration) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = std::process::Command::new(BIN)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let status = wait_for(
        &format!("gossipnet {args:?} to end"),
        limit,
        || child.try_wait().unwrap(),
        || "still running".into(),
    );
    let _ = child.kill();
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    (status.code(), read(&out), read(&err))
}
