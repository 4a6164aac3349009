//! The command-line arguments of a peer, shared by `gossipnet peer` and
//! the peer-only executable `gossipnet-peer`, so that both take exactly the
//! same options; and the start of a node from them.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use clap::Args;

use crate::{
    config::{self, parse_duration, PeerOverrides},
    node::{self, NodeOptions},
    proto::{peer::PeerSettings, Role},
};

fn parse_positive(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{text}` is not a whole number of at least 1")),
    }
}

#[derive(Args)]
pub struct NodeArgs {
    /// Address to listen on, as IP:PORT, or the IP alone with PORT after it.
    pub address: String,
    /// The port, when ADDRESS is an IP alone (`gossipnet peer 127.0.0.1 6001`).
    pub port: Option<u16>,
    /// Config file listing the seeds. Default: the first of config.csv,
    /// config.txt, config.toml, config.yml in the working directory.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output file. Default: outputfile_<seed|peer>_<port>.txt in the working directory.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also write the event stream, as JSON lines, to this file (docs/EVENTS.md).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Do not print log lines on the console; the output file still gets them.
    #[arg(long)]
    pub quiet: bool,
    /// Authenticate and encrypt every connection with this network key
    /// (made by `gossipnet keygen`); nodes without it are refused.
    /// Default: the config's network_key, if any; else no encryption.
    #[arg(long, value_name = "FILE")]
    pub network_key: Option<PathBuf>,
    /// Most connections from other nodes open at once; more are closed on
    /// arrival and logged. A seed needs one per peer that registered with it.
    #[arg(long, value_name = "N", default_value_t = crate::net::limits::DEFAULT_MAX_INBOUND, value_parser = parse_positive)]
    pub max_inbound: usize,
}

#[derive(Args)]
pub struct PeerArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub settings: PeerSettingArgs,
    /// Gossip each line read from standard input, even when it is not a
    /// terminal. (On a terminal, typed lines are always gossiped.)
    #[arg(long, conflicts_with = "no_stdin")]
    pub stdin: bool,
    /// Never read standard input.
    #[arg(long)]
    pub no_stdin: bool,
    /// Where the peer keeps its identity key (identity.key, made on first
    /// start). Default: gossipnet-data/peer-<port> in the working
    /// directory, with the port the peer listens on.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Peer settings; each overrides the config file's `[peer]` value.
#[derive(Args)]
pub struct PeerSettingArgs {
    /// Time between the gossip messages a peer creates [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub gossip_interval: Option<Duration>,
    /// Number of gossip messages a peer creates; 0 = none [default: 10].
    #[arg(long, value_name = "N")]
    pub gossip_count: Option<u32>,
    /// Most links a joining peer opens [default: 8].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_links: Option<u32>,
    /// Time between liveness checks of each neighbour [default: 13s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ping_interval: Option<Duration>,
    /// Missed checks in a row that make a neighbour unresponsive [default: 3].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub ping_misses: Option<u32>,
    /// Also check neighbours' hosts with ICMP echo; needs root or
    /// net.ipv4.ping_group_range, else it is skipped with a warning.
    #[arg(long)]
    pub icmp: bool,
    /// Longest gossip message a peer creates from a typed line or accepts
    /// from a neighbour, in bytes; longer ones are refused and logged
    /// [default: 65536].
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(
        i64::from(*config::MAX_GOSSIP_BYTES_RANGE.start())..=i64::from(*config::MAX_GOSSIP_BYTES_RANGE.end())
    ))]
    pub max_gossip_bytes: Option<u32>,
}

impl PeerSettingArgs {
    pub fn overrides(&self) -> PeerOverrides {
        PeerOverrides {
            gossip_interval: self.gossip_interval,
            gossip_count: self.gossip_count,
            max_links: self.max_links,
            link_exponent: None,
            ping_interval: self.ping_interval,
            ping_misses: self.ping_misses,
            icmp: self.icmp.then_some(true),
            max_gossip_bytes: self.max_gossip_bytes,
        }
    }
}

/// Exit status for a bad config or bad arguments, as clap uses for usage errors.
pub const EXIT_USAGE: u8 = 2;

fn listen_address(args: &NodeArgs) -> Result<SocketAddr, String> {
    let text = args.address.trim();
    match args.port {
        Some(port) => text
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<IpAddr>()
            .map(|ip| SocketAddr::new(ip, port))
            .map_err(|_| format!("`{text}` is not an IP address; write e.g. `127.0.0.1 {port}`")),
        None => text.parse::<SocketAddr>().map_err(|_| {
            format!("`{text}` is not an address; write IP:PORT (e.g. 127.0.0.1:6001) or IP PORT")
        }),
    }
}

pub fn node_options(
    role: Role,
    args: &NodeArgs,
    overrides: PeerOverrides,
    read_stdin: Option<bool>,
    data_dir: Option<PathBuf>,
) -> Result<NodeOptions, String> {
    let listen = listen_address(args)?;
    let path = match &args.config {
        Some(path) => path.clone(),
        None => {
            let cwd = std::env::current_dir()
                .map_err(|e| format!("cannot read the working directory: {e}"))?;
            config::find_default(&cwd).map_err(|e| e.to_string())?
        }
    };
    let config = config::load(&path).map_err(|e| e.to_string())?;
    let peer = overrides
        .or(config.peer.clone())
        .apply_to(PeerSettings::default());
    Ok(NodeOptions {
        role,
        listen,
        config,
        output: args.output.clone(),
        events: args.events.clone(),
        console: !args.quiet,
        read_stdin,
        peer,
        data_dir,
        network_key: args.network_key.clone(),
        max_inbound: args.max_inbound,
        max_peers_per_ip: None,
    })
}

pub fn run_node(
    options: Result<NodeOptions, String>,
    run: fn(NodeOptions) -> Result<(), node::NodeError>,
) -> ExitCode {
    let options = match options {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_status())
        }
    }
}

impl PeerArgs {
    /// Runs the peer these arguments describe, until SIGINT or SIGTERM.
    pub fn run(self) -> ExitCode {
        let read_stdin = match (self.stdin, self.no_stdin) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        run_node(
            node_options(
                Role::Peer,
                &self.node,
                self.settings.overrides(),
                read_stdin,
                self.data_dir,
            ),
            node::run_peer,
        )
    }
}
