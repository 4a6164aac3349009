//! `gossipnet up`: a whole local network of seed and peer processes, run
//! and watched from one terminal (R22).
//!
//! Every node is a child process of the same binary on 127.0.0.1 with its
//! own files in a run directory. The manager learns what happens by
//! following the nodes' event streams, never by asking them.

mod tail;
mod view;

use std::{
    io::{BufRead, IsTerminal},
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tokio::{
    process::{Child, Command},
    sync::{mpsc, watch},
};

pub use tail::EventTail;
pub use view::{NetworkView, NodeState, Summary};

use crate::{
    config::PeerOverrides,
    output::EventRecord,
    proto::{Event, Role},
};

/// The example config; `up` takes its settings from it.
pub const EXAMPLE_CONFIG: &str = include_str!("../../config.example.toml");

/// How long a node may take to report that it is listening or joined.
const START_DEADLINE: Duration = Duration::from_secs(15);
/// How long `exit` waits for nodes to shut down before killing them.
const STOP_DEADLINE: Duration = Duration::from_secs(5);
/// How often the event files are read.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// The summary line is printed at most this often.
const SUMMARY_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct UpOptions {
    pub seeds: usize,
    pub peers: usize,
    /// Default: `gossipnet-runs/<unix time>` in the working directory.
    pub run_dir: Option<PathBuf>,
    /// Run this long without a terminal, then stop and print a summary.
    pub duration: Option<Duration>,
    /// Settings passed to every peer; unset ones come from the example config.
    pub peer: PeerOverrides,
    /// The gossipnet binary to start nodes from.
    pub exe: PathBuf,
}

/// Why `up` stopped early. Nodes already started have been stopped.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("cannot prepare run directory {path}: {source}")]
    RunDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no free port on 127.0.0.1: {0}")]
    NoPort(std::io::Error),
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} did not {goal} within {deadline:?}; see {log}")]
    NotReady {
        what: String,
        goal: &'static str,
        deadline: Duration,
        log: PathBuf,
    },
    #[error("at least 2 seeds are needed; --seeds {0}")]
    TooFewSeeds(usize),
    /// Ctrl+C or SIGTERM arrived while nodes were starting.
    #[error("interrupted")]
    Interrupted,
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Running,
    Paused,
    Killed,
    Stopped,
}

struct Node {
    role: Role,
    name: String,
    addr: Option<SocketAddr>,
    child: Child,
    tail: EventTail,
    status: Status,
}

struct Manager {
    options: UpOptions,
    /// Turns true on Ctrl+C or SIGTERM.
    stop: watch::Receiver<bool>,
    run_dir: PathBuf,
    config_file: PathBuf,
    nodes: Vec<Node>,
    view: NetworkView,
    peers_started: usize,
    last_summary: Option<Summary>,
}

/// Hands out free ports by binding port 0; the listener is closed again at
/// once, so a port can in theory be taken by someone else before the seed
/// binds it. The seed then fails with a clear bind error.
fn free_port() -> Result<u16, UpError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(UpError::NoPort)?;
    Ok(listener.local_addr().map_err(UpError::NoPort)?.port())
}

fn default_run_dir() -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    PathBuf::from("gossipnet-runs").join(format!("run-{secs}"))
}

/// Writes the config every node of this run reads: fresh seed ports, and
/// the example's settings under the command-line overrides.
fn write_config(
    dir: &Path,
    seeds: &[SocketAddr],
    peer: &PeerOverrides,
) -> std::io::Result<PathBuf> {
    let example = crate::config::parse(Path::new("config.example.toml"), EXAMPLE_CONFIG)
        .expect("the bundled example config parses");
    let seeds: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
    let text = format!(
        "# Written by `gossipnet up` for this run.\nseeds = [{}]\n\n[peer]\n{}",
        seeds.join(", "),
        peer.clone().or(example.peer).to_toml()
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Runs `gossipnet up` to the end and returns the last summary.
pub fn run(options: UpOptions) -> Result<Summary, UpError> {
    if options.seeds < 2 {
        return Err(UpError::TooFewSeeds(options.seeds));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(UpError::Runtime)?;
    runtime.block_on(async move {
        let (stop_tx, stop) = watch::channel(false);
        let signal = crate::node::shutdown_signal();
        tokio::spawn(async move {
            signal.await;
            let _ = stop_tx.send(true);
        });
        let mut manager = Manager::prepare(options, stop)?;
        let result = match manager.run().await {
            Err(UpError::Interrupted) => Ok(()),
            other => other,
        };
        let summary = manager.refresh();
        manager.stop_all().await;
        println!("final: {summary}");
        println!(
            "stopped every node; their files are in {}",
            manager.run_dir.display()
        );
        result.map(|()| summary)
    })
}

impl Manager {
    fn prepare(options: UpOptions, stop: watch::Receiver<bool>) -> Result<Manager, UpError> {
        let run_dir = options.run_dir.clone().unwrap_or_else(default_run_dir);
        let dir_error = |source| UpError::RunDir {
            path: run_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&run_dir).map_err(dir_error)?;
        let run_dir = run_dir.canonicalize().map_err(dir_error)?;
        let mut seeds = Vec::new();
        while seeds.len() < options.seeds {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            if !seeds.contains(&addr) {
                seeds.push(addr);
            }
        }
        let config_file = write_config(&run_dir, &seeds, &options.peer).map_err(dir_error)?;
        println!("run directory: {}", run_dir.display());
        let mut manager = Manager {
            options,
            stop,
            run_dir,
            config_file,
            nodes: Vec::new(),
            view: NetworkView::default(),
            peers_started: 0,
            last_summary: None,
        };
        for seed in seeds {
            manager.nodes.push(manager.spawn(Role::Seed, seed)?);
        }
        Ok(manager)
    }

    fn spawn(&self, role: Role, addr: SocketAddr) -> Result<Node, UpError> {
        let name = match role {
            Role::Seed => format!("seed-{}", addr.port()),
            Role::Peer => format!("peer-{}", self.peers_started + 1),
        };
        let events = format!("{name}.events.jsonl");
        let stderr = std::fs::File::create(self.run_dir.join(format!("{name}.stderr.txt")))
            .map_err(|source| UpError::RunDir {
                path: self.run_dir.clone(),
                source,
            })?;
        let mut command = Command::new(&self.options.exe);
        command
            .current_dir(&self.run_dir)
            .arg(role.as_str())
            .arg(addr.to_string())
            .arg("--config")
            .arg(&self.config_file)
            .arg("--events")
            .arg(&events)
            .arg("--quiet")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true);
        die_with_parent(&mut command);
        let child = command.spawn().map_err(|source| UpError::Spawn {
            what: name.clone(),
            source,
        })?;
        Ok(Node {
            role,
            addr: (addr.port() != 0).then_some(addr),
            tail: EventTail::new(self.run_dir.join(events)),
            name,
            child,
            status: Status::Running,
        })
    }

    /// Reads new events from every node into the view.
    fn refresh(&mut self) -> Summary {
        for node in &mut self.nodes {
            for record in node.tail.poll().unwrap_or_default() {
                if node.addr.is_none() {
                    node.addr = Some(record.node);
                }
                self.view.apply(&record);
            }
        }
        self.view.summary()
    }

    /// Polls until node `index` logs an event matching `goal`.
    async fn wait_for(
        &mut self,
        index: usize,
        goal: &'static str,
        done: fn(&EventRecord) -> bool,
    ) -> Result<(), UpError> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let node = &mut self.nodes[index];
            let records = node.tail.poll().unwrap_or_default();
            let mut reached = false;
            for record in &records {
                node.addr.get_or_insert(record.node);
                reached |= done(record);
                self.view.apply(record);
            }
            if reached {
                return Ok(());
            }
            if *self.stop.borrow() {
                return Err(UpError::Interrupted);
            }
            let node = &mut self.nodes[index];
            let exited = matches!(node.child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() > deadline {
                return Err(UpError::NotReady {
                    what: node.name.clone(),
                    goal,
                    deadline: START_DEADLINE,
                    log: self.run_dir.join(format!("{}.stderr.txt", node.name)),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts `count` peers one after another, each once the previous has
    /// joined, so that every joiner finds the overlay built so far.
    async fn add_peers(&mut self, count: usize) -> Result<(), UpError> {
        for _ in 0..count {
            let node = self.spawn(Role::Peer, SocketAddr::from(([127, 0, 0, 1], 0)))?;
            self.peers_started += 1;
            self.nodes.push(node);
            let index = self.nodes.len() - 1;
            self.wait_for(index, "join the overlay", |r| {
                matches!(r.event, Event::Joined { .. })
            })
            .await?;
            let node = &self.nodes[index];
            println!(
                "started {} on {}",
                node.name,
                node.addr.map(|a| a.to_string()).unwrap_or_default()
            );
        }
        Ok(())
    }

    async fn run(&mut self) -> Result<(), UpError> {
        // Peers register only once the seeds' log has named its seeds.
        for index in 0..self.nodes.len() {
            self.wait_for(index, "form the seed cluster", |r| {
                matches!(r.event, Event::ClusterFormed { .. })
            })
            .await?;
        }
        let seeds: Vec<_> = self.nodes.iter().filter_map(|n| n.addr).collect();
        println!(
            "seeds: {}",
            seeds
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.add_peers(self.options.peers).await?;
        let interactive = std::io::stdin().is_terminal() && self.options.duration.is_none();
        if interactive {
            println!("type `help` for commands; `exit` or Ctrl+C stops the network");
        }
        let mut commands = spawn_command_reader();
        let stop_at = self
            .options
            .duration
            .map(|d| tokio::time::Instant::now() + d);
        let mut stop = self.stop.clone();
        let mut poll = tokio::time::interval(POLL_EVERY);
        let mut last_print = Instant::now() - SUMMARY_EVERY;
        loop {
            tokio::select! {
                _ = stop.wait_for(|stop| *stop) => return Ok(()),
                () = sleep_until(stop_at) => return Ok(()),
                _ = poll.tick() => {
                    let summary = self.refresh();
                    if self.last_summary != Some(summary) && last_print.elapsed() >= SUMMARY_EVERY {
                        println!("{summary}");
                        self.last_summary = Some(summary);
                        last_print = Instant::now();
                    }
                }
                line = recv(&mut commands) => match line {
                    Some(line) => {
                        if !self.command(&line).await {
                            return Ok(());
                        }
                    }
                    None => commands = None,
                },
            }
        }
    }

    /// Carries out one command line; false means exit.
    async fn command(&mut self, line: &str) -> bool {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => {}
            ["help"] => println!(
                "commands:\n  add [k]      start k more peers (default 1)\n  kill <port>  SIGKILL the node on that port\n  list         show every node\n  exit         stop every node and quit"
            ),
            ["add"] => report(self.add_peers(1).await),
            ["add", k] => match k.parse::<usize>() {
                Ok(k) if k > 0 => report(self.add_peers(k).await),
                _ => println!("error: `add {k}`: k must be a positive number"),
            },
            ["kill", port] => self.kill(port).await,
            ["list"] => self.list(),
            ["exit"] | ["quit"] => return false,
            _ => println!("error: unknown command `{line}`; type `help` for the list"),
        }
        true
    }

    async fn kill(&mut self, port: &str) {
        let Ok(port) = port.parse::<u16>() else {
            return println!("error: `{port}` is not a port number");
        };
        let Some(node) = self
            .nodes
            .iter_mut()
            .find(|n| n.addr.is_some_and(|a| a.port() == port))
        else {
            return println!("error: no node on port {port}; `list` shows the ports");
        };
        if node.status != Status::Running && node.status != Status::Paused {
            return println!("error: {} is already down", node.name);
        }
        let _ = node.child.kill().await;
        node.status = Status::Killed;
        if let Some(addr) = node.addr {
            self.view.mark_down(addr);
        }
        println!("killed {} (port {port})", node.name);
    }

    fn list(&mut self) {
        self.refresh();
        println!(
            "{:<5} {:<10} {:<22} {:<8} {:>6} {:>9}",
            "role", "name", "address", "status", "degree", "messages"
        );
        for node in &self.nodes {
            let state = node.addr.and_then(|a| self.view.node(&a));
            let role = node.role.as_str();
            let status = match node.status {
                Status::Running => "running",
                Status::Paused => "paused",
                Status::Killed => "killed",
                Status::Stopped => "stopped",
            };
            let (degree, seen) = match (node.role, state) {
                (Role::Peer, Some(s)) => {
                    (s.neighbors.len().to_string(), s.messages_seen.to_string())
                }
                _ => ("-".into(), "-".into()),
            };
            let addr = node
                .addr
                .map(|a| a.to_string())
                .unwrap_or_else(|| "?".into());
            println!(
                "{role:<5} {:<10} {addr:<22} {status:<8} {degree:>6} {seen:>9}",
                node.name
            );
        }
    }

    /// SIGTERM to every live node, then SIGKILL to any still there after
    /// the deadline.
    async fn stop_all(&mut self) {
        for node in &mut self.nodes {
            if matches!(node.status, Status::Running | Status::Paused) {
                terminate(&mut node.child);
            }
        }
        let deadline = tokio::time::Instant::now() + STOP_DEADLINE;
        for node in &mut self.nodes {
            if !matches!(node.status, Status::Running | Status::Paused) {
                continue;
            }
            if tokio::time::timeout_at(deadline, node.child.wait())
                .await
                .is_err()
            {
                let _ = node.child.kill().await;
            }
            node.status = Status::Stopped;
        }
    }
}

fn report(result: Result<(), UpError>) {
    if let Err(e) = result {
        println!("error: {e}");
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn recv(lines: &mut Option<mpsc::Receiver<String>>) -> Option<String> {
    match lines {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Standard input is read on a plain thread: a blocked read must not hold
/// up the runtime, and the thread simply ends with the process.
fn spawn_command_reader() -> Option<mpsc::Receiver<String>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::Builder::new()
        .name("commands".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        })
        .ok()?;
    Some(rx)
}

#[cfg(unix)]
fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }
}

#[cfg(not(unix))]
fn terminate(child: &mut Child) {
    let _ = child.start_kill();
}

/// On Linux, a node dies with the manager even if the manager is killed
/// with SIGKILL, so no orphan keeps a port.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}
