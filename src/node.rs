//! Starting one seed or peer process: from parsed arguments to a running
//! driver, with clear errors for everything that can stop it starting.

use std::{io::IsTerminal, net::SocketAddr, path::PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::TcpListener,
    sync::mpsc,
};

use crate::{
    config::Config,
    consensus::Standing,
    net::{
        self,
        secure::{KeyError, NetworkKey},
    },
    output::{LogSink, OutputError},
    proto::{
        peer::{PeerCore, PeerSettings},
        seed::SeedCore,
        Event, Role,
    },
};

/// Everything needed to run one node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub role: Role,
    /// Where to listen; port 0 picks a free port (peers only).
    pub listen: SocketAddr,
    pub config: Config,
    /// Default: `outputfile_<role>_<port>.txt` in the working directory.
    pub output: Option<PathBuf>,
    pub events: Option<PathBuf>,
    /// Print events on standard output as well.
    pub console: bool,
    /// Gossip typed lines. Default: when standard input is a terminal.
    pub read_stdin: Option<bool>,
    pub peer: PeerSettings,
    /// Seeds: where the replicated log lives. Peers: where the identity
    /// key lives. Default: `gossipnet-data/<role>-<port>` in the working
    /// directory, with the port the node listens on.
    pub data_dir: Option<PathBuf>,
    /// The network key file (`--network-key`); default: the config's
    /// `network_key`, if any. With a key, every connection is authenticated
    /// and encrypted (docs/SECURITY.md).
    pub network_key: Option<PathBuf>,
    /// Accepted connections open at once; more are closed on arrival.
    pub max_inbound: usize,
    /// Seeds: most peers registered from one IP address
    /// (`--max-peers-per-ip`); default: the config's, else no cap.
    pub max_peers_per_ip: Option<u32>,
}

/// Why a node could not start. Nothing was started when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The address cannot identify this node to others.
    #[error("{addr} cannot be a node's address: give the IP other machines reach this one at (for one machine, 127.0.0.1)")]
    Unspecified { addr: SocketAddr },
    /// A seed must be one of the seeds the config lists.
    #[error("seed {addr} is not listed in {config}; add it there or start the seed on a listed address ({listed})")]
    SeedNotInConfig {
        addr: SocketAddr,
        config: PathBuf,
        listed: String,
    },
    /// Peers and seeds must not share an address.
    #[error("peer {addr} is listed as a seed in {config}; choose another port for the peer")]
    PeerIsSeed { addr: SocketAddr, config: PathBuf },
    /// Seeds need fixed, known ports.
    #[error("a seed needs a fixed port; port 0 is only for peers")]
    SeedPortZero,
    #[error("cannot listen on {addr}: {source}; is another node already using that port? Pick another, or stop that node")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Consensus(#[from] crate::consensus::ConsensusError),
    #[error(transparent)]
    NetworkKey(#[from] KeyError),
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
}

impl NodeError {
    /// The process's exit status for this error: 2, as for a bad config
    /// file, when the address and the config disagree (a seed not listed,
    /// a peer on a seed's address, an unspecified IP, a seed on port 0) or
    /// when the seed's own files contradict each other (its log pins
    /// another key than its identity.key holds); 1 otherwise.
    pub fn exit_status(&self) -> u8 {
        match self {
            NodeError::Unspecified { .. }
            | NodeError::SeedNotInConfig { .. }
            | NodeError::PeerIsSeed { .. }
            | NodeError::SeedPortZero
            | NodeError::Consensus(
                crate::consensus::ConsensusError::KeyMismatch { .. }
                | crate::consensus::ConsensusError::SeedListMismatch(_),
            ) => 2,
            _ => 1,
        }
    }
}

impl NodeOptions {
    /// The network key this node uses: `--network-key`, else the config's.
    pub fn load_network_key(&self) -> Result<Option<NetworkKey>, KeyError> {
        let file = self
            .network_key
            .as_ref()
            .or(self.config.network_key.as_ref());
        file.map(|file| NetworkKey::load(file)).transpose()
    }

    fn check(&self) -> Result<(), NodeError> {
        let addr = self.listen;
        if addr.ip().is_unspecified() {
            return Err(NodeError::Unspecified { addr });
        }
        let listed = self.config.seeds.contains(&addr);
        match self.role {
            Role::Seed if addr.port() == 0 => Err(NodeError::SeedPortZero),
            Role::Seed if !listed => Err(NodeError::SeedNotInConfig {
                addr,
                config: self.config.path.clone(),
                listed: self
                    .config
                    .seeds
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
            Role::Peer if listed => Err(NodeError::PeerIsSeed {
                addr,
                config: self.config.path.clone(),
            }),
            _ => Ok(()),
        }
    }
}

/// Runs a node until SIGINT or SIGTERM, then shuts it down cleanly.
pub fn run(options: NodeOptions) -> Result<(), NodeError> {
    match options.role {
        Role::Seed => run_seed(options),
        Role::Peer => run_peer(options),
    }
}

/// Runs a peer. Apart from [`run`] so that a peer-only executable
/// (`gossipnet-peer`) links no seed code: Raft, the log store and their
/// dependencies are most of the `gossipnet` binary.
pub fn run_peer(options: NodeOptions) -> Result<(), NodeError> {
    // A peer is one actor and needs one thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    run_in(runtime, options, |node| async move {
        // Before any file is opened, so that a bad key file stops the peer
        // with nothing else changed.
        let identity = crate::identity::load_or_create(&node.data_dir)?.0;
        let admission = net::driver::Admission {
            identity: Some(identity.clone()),
            ..node.admission
        };
        let sink = open_sink(&node.options, node.addr)?;
        let shutdown = shutdown_signal();
        let read_stdin = node
            .options
            .read_stdin
            .unwrap_or_else(|| std::io::stdin().is_terminal());
        let lines = read_stdin.then(spawn_stdin_reader);
        let core = PeerCore::new(
            node.addr,
            node.options.config.seeds.clone(),
            node.options.peer.clone(),
            start_incarnation(),
            identity,
            ChaCha8Rng::from_os_rng(),
        );
        net::run(core, node.listener, sink, lines, None, admission, shutdown).await;
        Ok(())
    })
}

/// Runs a seed.
pub fn run_seed(options: NodeOptions) -> Result<(), NodeError> {
    // A seed's log store blocks on disk writes inside Raft's tasks, so it
    // gets two workers.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    run_in(runtime, options, |node| async move {
        // A seed proves this key on every connection it dials, so that no
        // other process can speak in its name.
        let identity = crate::identity::load_or_create(&node.data_dir)?.0;
        let key = identity.public_key();
        let network_key = node.admission.network_key.clone();
        let admission = net::driver::Admission {
            identity: Some(identity),
            ..node.admission
        };
        let seeds = node.options.config.seeds.clone();
        // Before the output files are opened: a seed whose config and log
        // disagree stops with nothing else changed.
        let (link, raft) =
            crate::consensus::start(node.addr, &seeds, &node.data_dir, key, network_key).await?;
        let sink = open_sink(&node.options, node.addr)?;
        let shutdown = shutdown_signal();
        let standing = match &raft.standing {
            Standing::Member => None,
            Standing::WaitingToJoin { cluster } => Some(Event::SeedWaitingToJoin {
                cluster: cluster.clone(),
            }),
            Standing::Rejoining { cluster } => Some(Event::SeedRejoining {
                cluster: cluster.clone(),
            }),
        };
        let options = &node.options;
        let cap = options.max_peers_per_ip.or(options.config.max_peers_per_ip);
        let core = SeedCore::new(node.addr, seeds)
            .with_max_peers_per_ip(cap)
            .with_key(key)
            .with_standing(standing);
        net::run(
            core,
            node.listener,
            sink,
            None,
            Some(link),
            admission,
            shutdown,
        )
        .await;
        raft.shutdown().await;
        Ok(())
    })
}

/// A node's options once its listener is bound.
struct Bound {
    options: NodeOptions,
    listener: TcpListener,
    /// The address the listener got (the port, when 0 was asked for).
    addr: SocketAddr,
    data_dir: PathBuf,
    admission: net::driver::Admission,
}

/// Checks the options, binds the listener and runs `node` on `runtime`.
fn run_in<F, Fut>(
    runtime: std::io::Result<tokio::runtime::Runtime>,
    options: NodeOptions,
    node: F,
) -> Result<(), NodeError>
where
    F: FnOnce(Bound) -> Fut,
    Fut: std::future::Future<Output = Result<(), NodeError>>,
{
    options.check()?;
    let admission = net::driver::Admission {
        network_key: options.load_network_key()?,
        max_inbound: options.max_inbound,
        identity: None,
    };
    let runtime = runtime.map_err(NodeError::Runtime)?;
    let result = runtime.block_on(async {
        let bind_error = |source| NodeError::Bind {
            addr: options.listen,
            source,
        };
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let data_dir = options.data_dir.clone().unwrap_or_else(|| {
            PathBuf::from("gossipnet-data").join(format!("{}-{}", options.role, addr.port()))
        });
        node(Bound {
            options,
            listener,
            addr,
            data_dir,
            admission,
        })
        .await
    });
    // The node has shut down and flushed its files. Dropping the runtime
    // would wait for its blocking threads, and the one reading standard
    // input cannot be cancelled: a peer reading a terminal or an open pipe
    // would hang after "Shutting down." until a line came. So the runtime
    // is left to end with the process.
    runtime.shutdown_background();
    result
}

fn open_sink(options: &NodeOptions, addr: SocketAddr) -> Result<LogSink, NodeError> {
    let output = options.output.clone().unwrap_or_else(|| {
        PathBuf::from(format!("outputfile_{}_{}.txt", options.role, addr.port()))
    });
    Ok(LogSink::open(
        addr,
        &output,
        options.events.as_deref(),
        options.console,
    )?)
}

/// The start time in Unix microseconds: larger than any earlier life of a
/// peer at the same address, without keeping state on disk.
fn start_incarnation() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1)
}

fn spawn_stdin_reader() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(net::driver::USER_LINE_QUEUE);
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).await.is_err() {
                break;
            }
        }
    });
    rx
}

/// Resolves on Ctrl+C (SIGINT) or, on Unix, SIGTERM. The handlers are
/// installed when this is called, not when the future is first polled, so
/// a signal that arrives during start-up is not lost. Call it inside the
/// runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        async move {
            async fn next(s: Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = next(interrupt) => {}
                () = next(terminate) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async move {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
