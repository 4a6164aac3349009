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
    config::{self, parse_duration, AddressWord, PeerOverrides},
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
    /// Address to listen on: IP:PORT, or the IP alone with PORT after it,
    /// or a port alone (a seed takes its IP from the config's entry with
    /// that port; a peer takes 127.0.0.1 when the seeds are on it too).
    /// `localhost` is 127.0.0.1.
    pub address: String,
    /// The port, when ADDRESS is an IP alone (`gossipnet peer 127.0.0.1 6001`).
    pub port: Option<String>,
    /// The config file, as a last word instead of --config
    /// (`gossipnet peer 127.0.0.1 6001 config.txt`).
    #[arg(value_name = "CONFIG", conflicts_with = "config")]
    pub config_file: Option<PathBuf>,
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

/// Where a node listens, as its command line says.
enum Listen {
    Addr(SocketAddr),
    /// A port alone: the IP comes from the config ([`address_for_port`]).
    Port(u16),
}

/// What the address words of the command line say: where to listen, and
/// the config file when it is given as the last word (S3's
/// `peer.py <ip> <port> <config_file>`).
fn address_words(args: &NodeArgs) -> Result<(Listen, Option<PathBuf>), String> {
    let first = args.address.trim();
    let second = args.port.as_deref().map(str::trim);
    let second_word = second.map(config::parse_address_word);
    let is_number = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit());
    let (listen, rest) = match (config::parse_address_word(first)?, second) {
        (AddressWord::Ip(ip), Some(port)) if is_number(port) => {
            let port = config::parse_port_word(&format!("{first} {port}"), port)?;
            (Listen::Addr(SocketAddr::new(ip, port)), None)
        }
        (AddressWord::Ip(_), Some(port)) => {
            return Err(format!(
                "\"{first} {port}\": \"{port}\" is not a port number; write IP PORT (e.g. {first} 6001) or IP:PORT"
            ))
        }
        (AddressWord::Ip(ip), None) => {
            let host = match ip {
                IpAddr::V6(_) if !first.starts_with('[') => format!("[{first}]"),
                _ => first.to_owned(),
            };
            return Err(format!(
                "\"{first}\" has no port; write e.g. {host}:6001 or {first} 6001"
            ));
        }
        (first_word, Some(second)) if second_word.as_ref().is_some_and(Result::is_ok) => {
            return Err(match (first_word, second_word) {
                (AddressWord::Port(_), Some(Ok(AddressWord::Ip(_)))) => format!(
                    "\"{first} {second}\": the IP comes first; write {second} {first}"
                ),
                _ => format!(
                    "\"{first} {second}\": give one address, as IP:PORT, IP PORT or a port alone"
                ),
            })
        }
        // A second word that is no address is the config file.
        (AddressWord::Full(addr), rest) => (Listen::Addr(addr), rest),
        (AddressWord::Port(port), rest) => (Listen::Port(port), rest),
    };
    let config_word = match (rest, &args.config_file) {
        (Some(_), Some(extra)) => {
            return Err(format!(
                "\"{}\": one word too many; write ADDRESS [PORT] [CONFIG]",
                extra.display()
            ))
        }
        (Some(file), None) => Some(PathBuf::from(file)),
        (None, file) => file.clone(),
    };
    if config_word.is_some() && args.config.is_some() {
        return Err(
            "the config file is given twice, as a word and with --config; give it once".into(),
        );
    }
    Ok((listen, config_word))
}

/// The address a node given only a port listens on. A seed's is the
/// config's entry with that port (of several, the one whose IP is this
/// machine's); a peer's is 127.0.0.1, when the seeds are on this machine's
/// loopback too, for a peer on 127.0.0.1 cannot be reached from elsewhere.
fn address_for_port(role: Role, port: u16, config: &config::Config) -> Result<SocketAddr, String> {
    let loopback = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port);
    let listed = |seeds: &[&SocketAddr]| {
        seeds
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match role {
        Role::Seed => {
            let same_port: Vec<&SocketAddr> =
                config.seeds.iter().filter(|s| s.port() == port).collect();
            let candidates: Vec<&SocketAddr> = if same_port.len() > 1 {
                same_port
                    .iter()
                    .copied()
                    .filter(|s| std::net::TcpListener::bind((s.ip(), 0)).is_ok())
                    .collect()
            } else {
                same_port.clone()
            };
            match candidates[..] {
                [addr] => Ok(*addr),
                // Not listed: the node's own check says so, naming the seeds.
                [] if same_port.is_empty() => Ok(loopback),
                _ => Err(format!(
                    "{}: seeds {} all have port {port}; give the IP too, e.g. gossipnet seed {}",
                    config.path.display(),
                    listed(&same_port),
                    same_port[0]
                )),
            }
        }
        Role::Peer => {
            let away: Vec<&SocketAddr> = config
                .seeds
                .iter()
                .filter(|s| !s.ip().is_loopback())
                .collect();
            if away.is_empty() {
                Ok(loopback)
            } else {
                Err(format!(
                    "{}: seeds {} are not on 127.0.0.1, and a peer there could not be reached from them; give the IP other machines reach this one at, e.g. gossipnet peer 10.0.0.7 {port}",
                    config.path.display(),
                    listed(&away)
                ))
            }
        }
    }
}

pub fn node_options(
    role: Role,
    args: &NodeArgs,
    overrides: PeerOverrides,
    read_stdin: Option<bool>,
    data_dir: Option<PathBuf>,
) -> Result<NodeOptions, String> {
    let (address, config_word) = address_words(args)?;
    let path = match config_word.as_ref().or(args.config.as_ref()) {
        Some(path) => path.clone(),
        None => {
            let cwd = std::env::current_dir()
                .map_err(|e| format!("cannot read the working directory: {e}"))?;
            config::find_default(&cwd).map_err(|e| e.to_string())?
        }
    };
    let config = config::load(&path).map_err(|e| e.to_string())?;
    let listen = match address {
        Listen::Addr(addr) => addr,
        Listen::Port(port) => address_for_port(role, port, &config)?,
    };
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
