//! `gossipnet up`: a whole local network of seed and peer processes, run
//! and watched from one terminal (R22).
//!
//! Every node is a child process of the same binary on 127.0.0.1 with its
//! own files in a run directory. The manager learns what happens by
//! following the nodes' event streams, never by asking them.

mod command;
mod tail;
mod view;
pub mod web;

use std::{
    fmt,
    io::{BufRead, IsTerminal},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tokio::{
    process::{Child, Command},
    sync::{mpsc, watch},
};

pub use command::{parse_command, ManagerCommand, NodeRef, TopologyFile};
pub use tail::EventTail;
pub use view::{NetworkView, NodeState, Stats, Summary};

use crate::{
    config::PeerOverrides,
    net::secure::{KeyError, NetworkKey},
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
    /// How many seeds; the length of `seed_addrs` when those are given.
    pub seeds: usize,
    pub peers: usize,
    /// Default: `gossipnet-runs/<unix time>` in the working directory.
    pub run_dir: Option<PathBuf>,
    /// Run this long without a terminal, then stop and print a summary.
    pub duration: Option<Duration>,
    /// Settings passed to every peer; unset ones come from the example config.
    pub peer: PeerOverrides,
    /// Start the seeds at these addresses (from `--config`); empty: as
    /// many as `seeds` on free ports of 127.0.0.1.
    pub seed_addrs: Vec<SocketAddr>,
    /// Commands to run first, one per line (`--script`).
    pub script: Option<PathBuf>,
    /// Serve the live web view on this address (`--web`; port 0: a free one).
    pub web: Option<SocketAddr>,
    /// The gossipnet binary to start nodes from.
    pub exe: PathBuf,
    /// Every node of the run uses this network key file (`--network-key`).
    pub network_key: Option<PathBuf>,
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
    #[error(transparent)]
    NetworkKey(#[from] KeyError),
    #[error("interrupted")]
    Interrupted,
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot serve the web view on {addr}: {source}; give another address, e.g. --web 127.0.0.1:0")]
    Web {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read the script {path}: {source}")]
    Script {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Running,
    Paused,
    Killed,
    Stopped,
    /// It ended by itself; its stderr file says why.
    Exited,
}

impl Status {
    fn is_alive(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }

    fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Killed => "killed",
            Status::Stopped => "stopped",
            Status::Exited => "exited",
        }
    }
}

struct Node {
    role: Role,
    name: String,
    addr: Option<SocketAddr>,
    child: Child,
    /// A peer's standard input: `send` writes the line it gossips.
    stdin: Option<tokio::process::ChildStdin>,
    tail: EventTail,
    status: Status,
    /// When the manager saw it go down (killed, stopped or exited).
    down_at: Option<Instant>,
}

impl Node {
    /// SIGTERM; and SIGCONT if paused, since a stopped process takes
    /// SIGTERM only once it runs again.
    fn terminate(&self) -> Result<(), String> {
        signal(&self.child, Signal::Terminate)?;
        if self.status == Status::Paused {
            signal(&self.child, Signal::Continue)?;
        }
        Ok(())
    }

    /// Its name and port, as messages show a node.
    fn label(&self) -> String {
        match self.addr {
            Some(addr) => format!("{} (port {})", self.name, addr.port()),
            None => self.name.clone(),
        }
    }
}

struct Manager {
    options: UpOptions,
    /// What peers are started from.
    peer_exe: PeerExecutable,
    /// Turns true on Ctrl+C or SIGTERM.
    stop: watch::Receiver<bool>,
    run_dir: PathBuf,
    config_file: PathBuf,
    nodes: Vec<Node>,
    view: NetworkView,
    peers_started: usize,
    last_summary: Option<Summary>,
    /// What the web view shows, when it is on.
    web: Option<web::SharedWebData>,
    /// Commands from the web view's buttons.
    web_commands: Option<mpsc::Receiver<web::WebCommand>>,
    /// The run's network key, for the web view's questions to the seeds.
    network_key: Option<Arc<NetworkKey>>,
}

/// The executable peers are started from.
enum PeerExecutable {
    /// `gossipnet-peer`, the peer alone: a third of the memory per peer.
    Lean(PathBuf),
    /// `gossipnet peer`, with the reason `gossipnet-peer` is not used.
    Full(PathBuf, &'static str),
}

impl PeerExecutable {
    /// `gossipnet-peer` if it is beside `exe` and no older than the
    /// library `exe` was built from. `cargo run` rebuilds only `gossipnet`,
    /// so after a change to the code a `gossipnet-peer` from an earlier
    /// build would run old code; cargo leaves the library
    /// (`libgossipnet.rlib`) beside the executables, and an installed pair
    /// has none to compare with.
    fn beside(exe: &Path) -> PeerExecutable {
        let lean = exe.with_file_name(format!("gossipnet-peer{}", std::env::consts::EXE_SUFFIX));
        let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let Some(built) = modified(&lean) else {
            return PeerExecutable::Full(exe.to_path_buf(), "gossipnet-peer is not built");
        };
        match modified(&exe.with_file_name("libgossipnet.rlib")) {
            Some(library) if library > built => PeerExecutable::Full(
                exe.to_path_buf(),
                "gossipnet-peer is older than the code; `cargo run` rebuilt only gossipnet",
            ),
            _ => PeerExecutable::Lean(lean),
        }
    }
}

impl PeerExecutable {
    /// [`PeerExecutable::beside`], but when the lean peer is missing or
    /// stale and `up` runs under `cargo run` of this package, builds it
    /// first with the same cargo, profile, target and features: `cargo run`
    /// builds only the binary it runs, and the README's first command is
    /// `cargo run --release -- up`. Cargo has released its build lock by
    /// the time it starts the program, so the nested build can run.
    fn find_or_build(exe: &Path) -> PeerExecutable {
        let found = PeerExecutable::beside(exe);
        let PeerExecutable::Full(_, why) = &found else {
            return found;
        };
        let Some(build) = CargoBuild::under_cargo_run(exe) else {
            return found;
        };
        println!("building gossipnet-peer, the lighter peer ({why}): {build}");
        match build.command().status() {
            // Cargo decides what is up to date; a file it left alone counts.
            Ok(status) if status.success() && build.built.is_file() => {
                PeerExecutable::Lean(build.built)
            }
            Ok(status) if status.success() => PeerExecutable::Full(
                exe.to_path_buf(),
                "cargo built gossipnet-peer in another directory",
            ),
            Ok(_) | Err(_) => {
                PeerExecutable::Full(exe.to_path_buf(), "building gossipnet-peer failed")
            }
        }
    }
}

/// `cargo build --bin gossipnet-peer` for the build `exe` came from.
#[derive(Debug, PartialEq)]
struct CargoBuild {
    cargo: PathBuf,
    manifest: PathBuf,
    /// `dev` for target/debug, else the directory's name.
    profile: String,
    /// Where cargo put `exe`, with the target triple of
    /// target/<triple>/<profile>; None when the directory bears no mark of
    /// cargo's, and the nested cargo finds it as the first one did (same
    /// working directory, environment and config files).
    target_dir: Option<(PathBuf, Option<String>)>,
    /// Where the lean peer lands: beside `exe`.
    built: PathBuf,
}

impl CargoBuild {
    /// The build, when this process was started by `cargo run` of this
    /// package (cargo sets CARGO and the package's variables for the
    /// program it runs).
    fn under_cargo_run(exe: &Path) -> Option<CargoBuild> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if var("CARGO_PKG_NAME")? != env!("CARGO_PKG_NAME") {
            return None;
        }
        let manifest = PathBuf::from(var("CARGO_MANIFEST_DIR")?).join("Cargo.toml");
        CargoBuild::of(PathBuf::from(var("CARGO")?), manifest, exe)
    }

    fn of(cargo: PathBuf, manifest: PathBuf, exe: &Path) -> Option<CargoBuild> {
        if !manifest.is_file() {
            return None;
        }
        let profile_dir = exe.parent()?;
        let profile = match profile_dir.file_name()?.to_str()? {
            "debug" => "dev".to_owned(),
            name => name.to_owned(),
        };
        // Cargo writes these at the root of a target directory (the first
        // only when it creates the directory).
        let is_target_dir = |dir: &Path| {
            ["CACHEDIR.TAG", ".rustc_info.json"]
                .iter()
                .any(|mark| dir.join(mark).is_file())
        };
        let above = profile_dir.parent()?;
        let target_dir = if is_target_dir(above) {
            Some((above.to_path_buf(), None))
        } else {
            above
                .parent()
                .filter(|root| is_target_dir(root))
                .zip(above.file_name().and_then(|n| n.to_str()))
                .map(|(root, triple)| (root.to_path_buf(), Some(triple.to_owned())))
        };
        Some(CargoBuild {
            cargo,
            manifest,
            profile,
            target_dir,
            built: exe.with_file_name(format!("gossipnet-peer{}", std::env::consts::EXE_SUFFIX)),
        })
    }

    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["build", "--bin", "gossipnet-peer", "--profile"]
            .map(String::from)
            .into();
        args.push(self.profile.clone());
        if cfg!(feature = "gossipsub") {
            args.extend(["--features".into(), "gossipsub".into()]);
        }
        if let Some((_, Some(triple))) = &self.target_dir {
            args.extend(["--target".into(), triple.clone()]);
        }
        args.extend([
            "--manifest-path".into(),
            self.manifest.display().to_string(),
        ]);
        if let Some((dir, _)) = &self.target_dir {
            args.extend(["--target-dir".into(), dir.display().to_string()]);
        }
        args
    }

    fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(&self.cargo);
        command.args(self.args()).stdin(Stdio::null());
        command
    }
}

impl fmt::Display for CargoBuild {
    /// The command, less the paths that only repeat where `exe` is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let args = self.args();
        let shown = args
            .iter()
            .position(|a| a == "--manifest-path")
            .unwrap_or(args.len());
        write!(f, "cargo {}", args[..shown].join(" "))
    }
}

impl fmt::Display for PeerExecutable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerExecutable::Lean(exe) => write!(f, "{}", exe.display()),
            PeerExecutable::Full(exe, why) => write!(
                f,
                "{} peer ({why}; `cargo build --release` builds it, for lighter peers)",
                exe.display()
            ),
        }
    }
}

#[cfg(test)]
mod peer_executable_tests {
    use super::*;

    fn touch(path: &Path, age_s: u64) {
        let file = std::fs::File::create(path).unwrap();
        let when = SystemTime::now() - Duration::from_secs(age_s);
        file.set_modified(when).unwrap();
    }

    #[test]
    fn the_lean_peer_is_used_unless_missing_or_older_than_the_library() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("gossipnet");
        touch(&exe, 0);
        assert!(
            matches!(PeerExecutable::beside(&exe), PeerExecutable::Full(_, why) if why.contains("not built"))
        );
        touch(&dir.path().join("gossipnet-peer"), 100);
        // Installed: no library to compare with.
        assert!(matches!(
            PeerExecutable::beside(&exe),
            PeerExecutable::Lean(_)
        ));
        touch(&dir.path().join("libgossipnet.rlib"), 200);
        assert!(matches!(
            PeerExecutable::beside(&exe),
            PeerExecutable::Lean(_)
        ));
        touch(&dir.path().join("libgossipnet.rlib"), 10);
        let stale = PeerExecutable::beside(&exe);
        assert!(matches!(&stale, PeerExecutable::Full(_, why) if why.contains("older")));
        assert!(
            stale.to_string().contains("cargo build --release"),
            "{stale}"
        );
    }
}

#[cfg(test)]
mod cargo_build_tests {
    use super::*;

    #[test]
    fn the_lean_peer_is_built_where_cargo_put_the_binary_that_runs() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("Cargo.toml");
        std::fs::write(&manifest, "").unwrap();
        let target = dir.path().join("target");
        std::fs::create_dir_all(target.join("release")).unwrap();
        std::fs::create_dir_all(target.join("x86_64-unknown-linux-musl/debug")).unwrap();
        let cargo = PathBuf::from("cargo");
        let of = |exe: PathBuf| CargoBuild::of(cargo.clone(), manifest.clone(), &exe);

        // No mark of cargo's: the nested cargo finds the directory itself.
        let unmarked = of(target.join("release/gossipnet")).unwrap();
        assert_eq!(unmarked.target_dir, None);
        assert!(!unmarked.args().contains(&"--target-dir".to_owned()));
        std::fs::write(target.join("CACHEDIR.TAG"), "").unwrap();

        let release = of(target.join("release/gossipnet")).unwrap();
        assert_eq!(release.profile, "release");
        assert_eq!(release.target_dir, Some((target.clone(), None)));
        let lean = format!("release/gossipnet-peer{}", std::env::consts::EXE_SUFFIX);
        assert_eq!(release.built, target.join(lean));
        assert_eq!(
            release.to_string(),
            "cargo build --bin gossipnet-peer --profile release"
        );

        let cross = of(target.join("x86_64-unknown-linux-musl/debug/gossipnet")).unwrap();
        assert_eq!(cross.profile, "dev");
        let triple = "x86_64-unknown-linux-musl".to_owned();
        assert_eq!(cross.target_dir, Some((target.clone(), Some(triple))));
        assert!(cross
            .to_string()
            .ends_with("--profile dev --target x86_64-unknown-linux-musl"));

        // Another package's checkout: no build.
        let none = dir.path().join("none/Cargo.toml");
        assert_eq!(
            CargoBuild::of(cargo.clone(), none, &target.join("release/gossipnet")),
            None
        );
    }
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
    network_key: Option<&Path>,
) -> std::io::Result<PathBuf> {
    let example = crate::config::parse(Path::new("config.example.toml"), EXAMPLE_CONFIG)
        .expect("the bundled example config parses");
    let seeds: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
    let network_key = match network_key {
        Some(file) => format!(
            "network_key = {}\n",
            toml::Value::String(file.display().to_string())
        ),
        None => String::new(),
    };
    let text = format!(
        "# Written by `gossipnet up` for this run.\nseeds = [{}]\n{network_key}\n[peer]\n{}",
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
        let mut seeds = options.seed_addrs.clone();
        while seeds.len() < options.seeds {
            let addr = SocketAddr::from((
                [127, 0, 0, 1],
                crate::net::ports::free_port().map_err(UpError::NoPort)?,
            ));
            if !seeds.contains(&addr) {
                seeds.push(addr);
            }
        }
        let network_key = match &options.network_key {
            Some(file) => {
                let key = NetworkKey::load(file)?;
                let file = file.canonicalize().map_err(|source| UpError::RunDir {
                    path: file.clone(),
                    source,
                })?;
                Some((file, Arc::new(key)))
            }
            None => None,
        };
        let config_file = write_config(
            &run_dir,
            &seeds,
            &options.peer,
            network_key.as_ref().map(|(file, _)| file.as_path()),
        )
        .map_err(dir_error)?;
        println!("run directory: {}", run_dir.display());
        let peer_exe = PeerExecutable::find_or_build(&options.exe);
        println!("peers run: {peer_exe}");
        let mut manager = Manager {
            peer_exe,
            options,
            stop,
            run_dir,
            config_file,
            nodes: Vec::new(),
            view: NetworkView::default(),
            peers_started: 0,
            last_summary: None,
            web: None,
            web_commands: None,
            network_key: network_key.map(|(_, key)| key),
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
        let mut command = match (role, &self.peer_exe) {
            (Role::Peer, PeerExecutable::Lean(exe)) => Command::new(exe),
            _ => {
                let mut command = Command::new(&self.options.exe);
                command.arg(role.as_str());
                command
            }
        };
        command
            .current_dir(&self.run_dir)
            .arg(addr.to_string())
            .arg("--config")
            .arg(&self.config_file)
            .arg("--events")
            .arg(&events)
            .arg("--quiet")
            .args((role == Role::Peer).then_some("--stdin"))
            .stdin(match role {
                Role::Peer => Stdio::piped(),
                Role::Seed => Stdio::null(),
            })
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true);
        die_with_parent(&mut command);
        let mut child = command.spawn().map_err(|source| UpError::Spawn {
            what: name.clone(),
            source,
        })?;
        Ok(Node {
            stdin: child.stdin.take(),
            role,
            addr: (addr.port() != 0).then_some(addr),
            tail: EventTail::new(self.run_dir.join(events)),
            name,
            child,
            status: Status::Running,
            down_at: None,
        })
    }

    /// Reads new events from every node into the view, and notes nodes
    /// that ended by themselves.
    fn refresh(&mut self) -> Summary {
        for index in 0..self.nodes.len() {
            self.read_events(index);
        }
        self.reap();
        self.publish();
        self.view.summary()
    }

    /// Reads node `index`'s new events into the view and the web view.
    fn read_events(&mut self, index: usize) -> Vec<EventRecord> {
        let node = &mut self.nodes[index];
        let records = node.tail.poll().unwrap_or_default();
        for record in &records {
            node.addr.get_or_insert(record.node);
            self.view.apply(record);
        }
        if let Some(web) = &self.web {
            let mut web = web.lock().expect("web data lock");
            for record in &records {
                web.push_event(record);
            }
        }
        records
    }

    /// Starts the web view: the server, and the questions to the seeds.
    async fn start_web(&mut self, addr: SocketAddr) -> Result<(), UpError> {
        let data = web::SharedWebData::default();
        let (commands, web_commands) = mpsc::channel(8);
        let (bound, gate) = web::serve(addr, data.clone(), commands)
            .await
            .map_err(|source| UpError::Web { addr, source })?;
        let seeds = self
            .nodes
            .iter()
            .filter(|n| n.role == Role::Seed)
            .filter_map(|n| n.addr)
            .collect();
        let key = self.network_key.clone();
        tokio::spawn(web::follow_committed(seeds, key, data.clone()));
        println!("web view: http://{bound}/");
        println!(
            "web API token: {} (scripts send it in the {} header; the page has it)",
            gate.token(),
            web::TOKEN_HEADER
        );
        self.web = Some(data);
        self.web_commands = Some(web_commands);
        self.publish();
        Ok(())
    }

    /// Gives the web view, if on, the current picture of the network.
    fn publish(&mut self) {
        let Some(web) = self.web.clone() else {
            return;
        };
        let facts: Vec<web::NodeFacts> = self
            .nodes
            .iter()
            .filter_map(|n| {
                Some(web::NodeFacts {
                    name: n.name.clone(),
                    addr: n.addr?,
                    role: n.role,
                    alive: n.status.is_alive(),
                    down_for: n.down_at.map_or(Duration::ZERO, |at| at.elapsed()),
                    paused: n.status == Status::Paused,
                })
            })
            .collect();
        let mut web = web.lock().expect("web data lock");
        let picture = web::picture(&facts, &self.view, web.committed());
        web.set_picture(picture);
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
            let reached = self.read_events(index).iter().any(done);
            self.publish();
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
        if let Some(addr) = self.options.web {
            self.start_web(addr).await?;
        }
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
        let script = match &self.options.script {
            Some(path) => std::fs::read_to_string(path).map_err(|source| UpError::Script {
                path: path.clone(),
                source,
            })?,
            None => String::new(),
        };
        let interactive = std::io::stdin().is_terminal() && self.options.duration.is_none();
        if interactive {
            println!("type `help` for commands; `exit` or Ctrl+C stops the network");
        }
        let input = match (interactive, self.options.duration) {
            (true, _) => Input::Terminal(self.run_dir.join("history.txt")),
            (false, None) => Input::Lines,
            // A timed run with no terminal takes its commands from the
            // script alone: standard input may be anything.
            (false, Some(_)) => Input::Nothing,
        };
        let mut commands = spawn_command_reader(script, input);
        let stop_at = self
            .options
            .duration
            .map(|d| tokio::time::Instant::now() + d);
        let mut stop = self.stop.clone();
        let mut poll = tokio::time::interval(POLL_EVERY);
        let mut last_print = Instant::now() - SUMMARY_EVERY;
        // Set by `sleep`: no command is taken before then.
        let mut asleep_until: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = stop.wait_for(|stop| *stop) => return Ok(()),
                () = sleep_until(stop_at) => return Ok(()),
                () = sleep_until(asleep_until), if asleep_until.is_some() => asleep_until = None,
                _ = poll.tick() => {
                    let summary = self.refresh();
                    if self.last_summary != Some(summary) && last_print.elapsed() >= SUMMARY_EVERY {
                        println!("{summary}");
                        self.last_summary = Some(summary);
                        last_print = Instant::now();
                    }
                }
                Some(request) = recv(&mut self.web_commands) => {
                    println!("web> {}", request.line);
                    let (_, reply) = self.carry_out(&request.line).await;
                    print_reply(&reply);
                    let _ = request.reply.send(reply);
                }
                line = recv(&mut commands), if asleep_until.is_none() => match line {
                    Some(line) => {
                        if line.from_script {
                            println!("> {}", line.text);
                        }
                        match self.command(&line.text).await {
                            Next::Continue => {}
                            Next::SleepFor(span) => {
                                asleep_until = Some(tokio::time::Instant::now() + span);
                            }
                            Next::Exit => return Ok(()),
                        }
                    }
                    None => commands = None,
                },
            }
        }
    }

    /// Carries out one command line and prints what it says.
    async fn command(&mut self, line: &str) -> Next {
        let (next, reply) = self.carry_out(line).await;
        print_reply(&reply);
        next
    }

    /// Carries out one command line; what to do next, and what it says:
    /// its output, or why it failed (one line).
    async fn carry_out(&mut self, line: &str) -> (Next, Result<String, String>) {
        let command = match parse_command(line) {
            Ok(Some(command)) => command,
            Ok(None) => return (Next::Continue, Ok(String::new())),
            Err(e) => return (Next::Continue, Err(e)),
        };
        let reply = match command {
            ManagerCommand::Help => Ok(command::HELP.to_string()),
            ManagerCommand::Add(k) => self
                .add_peers(k)
                .await
                .map(|()| String::new())
                .map_err(|e| e.to_string()),
            ManagerCommand::Kill(node) => self.kill(&node).await,
            ManagerCommand::Stop(node) => self.stop(&node).await,
            ManagerCommand::Pause(node) => self.pause(&node, true),
            ManagerCommand::Resume(node) => self.pause(&node, false),
            ManagerCommand::Send(node, text) => self.send(&node, &text).await,
            ManagerCommand::List => Ok(self.list()),
            ManagerCommand::Topology(file) => self.topology(file),
            ManagerCommand::Stats => {
                self.refresh();
                Ok(self.view.stats().to_string())
            }
            ManagerCommand::Sleep(span) => return (Next::SleepFor(span), Ok(String::new())),
            ManagerCommand::Exit => return (Next::Exit, Ok(String::new())),
        };
        (Next::Continue, reply)
    }

    /// Notes nodes that ended by themselves.
    fn reap(&mut self) {
        for index in 0..self.nodes.len() {
            let node = &mut self.nodes[index];
            if node.status.is_alive() && matches!(node.child.try_wait(), Ok(Some(_))) {
                self.mark(index, Status::Exited);
            }
        }
    }

    /// The node `which` names, if it is still running or paused.
    fn live_node(&mut self, which: &NodeRef) -> Result<usize, String> {
        self.reap();
        let index = self
            .nodes
            .iter()
            .position(|n| match which {
                NodeRef::Port(port) => n.addr.is_some_and(|a| a.port() == *port),
                NodeRef::Name(name) => n.name == *name,
            })
            .ok_or_else(|| match which {
                NodeRef::Port(port) => format!("no node on port {port}; `list` shows the ports"),
                NodeRef::Name(name) => format!("no node named `{name}`; `list` shows the names"),
            })?;
        let node = &self.nodes[index];
        if !node.status.is_alive() {
            return Err(format!("{} is {}", node.label(), node.status.as_str()));
        }
        Ok(index)
    }

    fn mark(&mut self, index: usize, status: Status) {
        let node = &mut self.nodes[index];
        node.status = status;
        if !status.is_alive() {
            node.down_at.get_or_insert_with(Instant::now);
            node.stdin = None;
            if let Some(addr) = node.addr {
                self.view.mark_down(addr);
            }
        }
    }

    async fn kill(&mut self, which: &NodeRef) -> Result<String, String> {
        let index = self.live_node(which)?;
        let _ = self.nodes[index].child.kill().await;
        self.mark(index, Status::Killed);
        Ok(format!("killed {}", self.nodes[index].label()))
    }

    /// SIGTERM, and SIGKILL if it has not ended by the deadline.
    async fn stop(&mut self, which: &NodeRef) -> Result<String, String> {
        let index = self.live_node(which)?;
        let node = &mut self.nodes[index];
        node.terminate()?;
        let ended = tokio::time::timeout(STOP_DEADLINE, node.child.wait()).await;
        let how = if ended.is_ok() {
            "stopped"
        } else {
            let _ = node.child.kill().await;
            "killed after the stop deadline:"
        };
        // Its last events are written: a peer's `leaving` says whom its
        // LEAVE went to, so that the seeds remove it at once.
        let left = self
            .read_events(index)
            .into_iter()
            .find_map(|r| match r.event {
                Event::Leaving { seeds, neighbors } => Some((seeds.len(), neighbors.len())),
                _ => None,
            });
        self.mark(index, Status::Stopped);
        let label = self.nodes[index].label();
        Ok(match left {
            Some((seeds, neighbors)) => format!(
                "{how} {label}: it left, LEAVE sent to {seeds} seed(s) and {neighbors} neighbour(s)"
            ),
            None => format!("{how} {label}"),
        })
    }

    /// SIGSTOP (`pause`) or SIGCONT.
    fn pause(&mut self, which: &NodeRef, pause: bool) -> Result<String, String> {
        let index = self.live_node(which)?;
        let node = &self.nodes[index];
        let (from, to, sig, done) = if pause {
            (Status::Running, Status::Paused, Signal::Stop, "paused")
        } else {
            (Status::Paused, Status::Running, Signal::Continue, "resumed")
        };
        if node.status != from {
            return Err(format!(
                "{} is {}, not {}",
                node.label(),
                node.status.as_str(),
                from.as_str()
            ));
        }
        signal(&node.child, sig)?;
        self.mark(index, to);
        Ok(format!("{done} {}", self.nodes[index].label()))
    }

    /// Writes `text` to the peer's standard input, which it gossips.
    async fn send(&mut self, which: &NodeRef, text: &str) -> Result<String, String> {
        use tokio::io::AsyncWriteExt;
        let index = self.live_node(which)?;
        let node = &mut self.nodes[index];
        let label = node.label();
        let Some(stdin) = node.stdin.as_mut() else {
            return Err(format!("{label} is a seed; only peers gossip"));
        };
        let line = format!("{text}\n");
        let written = tokio::time::timeout(STOP_DEADLINE, async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) if node.status == Status::Paused => Ok(format!(
                "queued for {label}: it is paused and gossips the line when resumed"
            )),
            Ok(Ok(())) => Ok(format!("{label} gossips: {text}")),
            Ok(Err(e)) => Err(format!("cannot write to {label}: {e}")),
            Err(_) => Err(format!("{label} is not reading its input")),
        }
    }

    fn list(&mut self) -> String {
        self.refresh();
        let mut table = format!(
            "{:<5} {:<10} {:<22} {:<8} {:>6} {:>9}",
            "role", "name", "address", "status", "degree", "messages"
        );
        for node in &self.nodes {
            let state = node.addr.and_then(|a| self.view.node(&a));
            let role = node.role.as_str();
            let status = node.status.as_str();
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
            table += &format!(
                "\n{role:<5} {:<10} {addr:<22} {status:<8} {degree:>6} {seen:>9}",
                node.name
            );
        }
        table
    }

    /// The live overlay as the peers' own event streams show it.
    fn topology(&mut self, file: Option<TopologyFile>) -> Result<String, String> {
        self.refresh();
        let links = self.view.links();
        let degrees = view::degrees(&links);
        let nodes: Vec<(&Node, usize)> = self
            .nodes
            .iter()
            .filter_map(|n| Some((n, degrees.get(&n.addr?).copied().unwrap_or(0))))
            .collect();
        let (path, text) = match file {
            None => {
                let mut text = format!(
                    "{} nodes, {} links between live peers",
                    nodes.len(),
                    links.len()
                );
                for (node, _) in nodes.iter().filter(|(n, _)| n.role == Role::Peer) {
                    let addr = node.addr.expect("listed nodes have addresses");
                    let ports: Vec<String> = links
                        .iter()
                        .filter_map(|(a, b)| match (*a == addr, *b == addr) {
                            (true, _) => Some(b.port().to_string()),
                            (_, true) => Some(a.port().to_string()),
                            _ => None,
                        })
                        .collect();
                    text += &format!(
                        "\n{} ({}): {}",
                        addr.port(),
                        node.status.as_str(),
                        if ports.is_empty() {
                            "-".into()
                        } else {
                            ports.join(" ")
                        }
                    );
                }
                return Ok(text);
            }
            Some(TopologyFile::Dot(path)) => {
                let mut text = String::from("graph gossipnet {\n");
                for (node, degree) in &nodes {
                    let shape = if node.role == Role::Seed {
                        "box"
                    } else {
                        "ellipse"
                    };
                    text += &format!(
                        "  \"{}\" [label=\"{}\\n{}\", shape={shape}, degree={degree}, status={}];\n",
                        node.addr.expect("listed nodes have addresses"),
                        node.name,
                        node.addr.expect("listed nodes have addresses").port(),
                        node.status.as_str()
                    );
                }
                for (a, b) in &links {
                    text += &format!("  \"{a}\" -- \"{b}\";\n");
                }
                text += "}\n";
                (path, text)
            }
            Some(TopologyFile::Json(path)) => {
                let json = serde_json::json!({
                    "nodes": nodes.iter().map(|(n, degree)| serde_json::json!({
                        "address": n.addr,
                        "name": n.name,
                        "role": n.role.as_str(),
                        "status": n.status.as_str(),
                        "degree": degree,
                    })).collect::<Vec<_>>(),
                    "links": links.iter().map(|(a, b)| [a, b]).collect::<Vec<_>>(),
                });
                let text = serde_json::to_string_pretty(&json).expect("JSON of plain values");
                (path, text + "\n")
            }
        };
        std::fs::write(&path, text)
            .map_err(|e| format!("cannot write the topology to {}: {e}", path.display()))?;
        Ok(format!(
            "wrote {} ({} nodes, {} links)",
            path.display(),
            nodes.len(),
            links.len()
        ))
    }

    /// SIGTERM to every live node, then SIGKILL to any still there after
    /// the deadline.
    async fn stop_all(&mut self) {
        for node in &mut self.nodes {
            if node.status.is_alive() {
                let _ = node.terminate();
            }
        }
        let deadline = tokio::time::Instant::now() + STOP_DEADLINE;
        for node in &mut self.nodes {
            if !node.status.is_alive() {
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

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A command's output, or its error on one line.
fn print_reply(reply: &Result<String, String>) {
    match reply {
        Ok(text) if text.is_empty() => {}
        Ok(text) => println!("{text}"),
        Err(e) => println!("error: {e}"),
    }
}

/// What the loop does after a command.
enum Next {
    Continue,
    SleepFor(Duration),
    Exit,
}

/// One command line, and whether it came from the script (and is echoed).
struct CommandLine {
    text: String,
    from_script: bool,
}

/// Where commands come from once the script's are done.
enum Input {
    /// A terminal: line editing, with history kept in this file.
    Terminal(PathBuf),
    /// Lines of standard input, until it ends.
    Lines,
    Nothing,
}

async fn recv<T>(lines: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match lines {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Commands are read on a plain thread: a blocked read must not hold up
/// the runtime, and the thread simply ends with the process. The script's
/// lines come first.
fn spawn_command_reader(script: String, input: Input) -> Option<mpsc::Receiver<CommandLine>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::Builder::new()
        .name("commands".into())
        .spawn(move || {
            for text in script.lines() {
                let line = CommandLine {
                    text: text.to_string(),
                    from_script: true,
                };
                if tx.blocking_send(line).is_err() {
                    return;
                }
            }
            let typed = |text: String| CommandLine {
                text,
                from_script: false,
            };
            match input {
                Input::Terminal(history) => {
                    read_terminal(&history, |text| tx.blocking_send(typed(text)).is_ok())
                }
                Input::Lines => read_lines(|text| tx.blocking_send(typed(text)).is_ok()),
                Input::Nothing => {}
            }
        })
        .ok()?;
    Some(rx)
}

/// Reads lines of standard input until it ends or `take` refuses one.
fn read_lines(mut take: impl FnMut(String) -> bool) {
    for text in std::io::stdin().lock().lines() {
        let Ok(text) = text else { break };
        if !take(text) {
            break;
        }
    }
}

/// Reads lines with editing and history until `take` refuses one. Ctrl+C
/// and Ctrl+D mean `exit`: the terminal is in raw mode while a line is
/// edited, so they arrive here rather than as signals.
fn read_terminal(history: &Path, mut take: impl FnMut(String) -> bool) {
    use rustyline::{error::ReadlineError, DefaultEditor};
    let Ok(mut editor) = DefaultEditor::new() else {
        // No line editing here: plain lines still work.
        return read_lines(take);
    };
    let _ = editor.load_history(history);
    loop {
        match editor.readline("gossipnet> ") {
            Ok(text) => {
                if !text.trim().is_empty() {
                    let _ = editor.add_history_entry(text.as_str());
                    let _ = editor.save_history(history);
                }
                if !take(text) {
                    break;
                }
            }
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => {
                take("exit".into());
                break;
            }
            Err(_) => break,
        }
    }
}

/// The signals the manager sends, besides SIGKILL (`Child::kill`).
#[derive(Debug, Clone, Copy)]
enum Signal {
    Terminate,
    Stop,
    Continue,
}

#[cfg(unix)]
fn signal(child: &Child, signal: Signal) -> Result<(), String> {
    use nix::sys::signal::Signal as Unix;
    let Some(pid) = child.id() else {
        return Err("the process has already ended".into());
    };
    let unix = match signal {
        Signal::Terminate => Unix::SIGTERM,
        Signal::Stop => Unix::SIGSTOP,
        Signal::Continue => Unix::SIGCONT,
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), unix)
        .map_err(|e| format!("cannot send {unix} to process {pid}: {e}"))
}

#[cfg(not(unix))]
fn signal(_child: &Child, signal: Signal) -> Result<(), String> {
    Err(format!("{signal:?} needs a Unix system"))
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
