//! The `gossipnet` command: run a seed, a peer, or a whole local network.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use clap::{Args, Parser, Subcommand};
use gossipnet::{
    cli::{node_options, run_node, NodeArgs, PeerArgs, PeerSettingArgs, EXIT_USAGE},
    cluster::{self, UpOptions},
    config::{self, parse_duration, PeerOverrides},
    net::secure::NetworkKey,
    node::{self, NodeOptions},
    proto::{seed::directory::SeedChange, Role},
    status,
};

#[derive(Parser)]
#[command(
    name = "gossipnet",
    version,
    about = "A gossip-based peer-to-peer network with seed-managed membership and a power-law overlay"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a seed node: keeps the Peer List and the topology, never gossips.
    Seed(SeedArgs),
    /// Run a peer node: joins the overlay and gossips.
    Peer(PeerArgs),
    /// Start a whole local network of seeds and peers, and manage it.
    Up(UpArgs),
    /// Show a seed cluster's committed Peer List, topology and leader.
    Status(StatusArgs),
    /// Manage the seeds: change them on a running cluster, or pin a seed's new identity key
    #[command(subcommand)]
    Seeds(SeedsCommand),
    /// Write a new network key: give it to every node with --network-key
    /// FILE (or network_key in the config) to authenticate and encrypt
    /// every connection.
    Keygen(KeygenArgs),
    /// Simulate a network deterministically and report its quality: degree
    /// distribution and power-law fit, connectivity, dissemination, and
    /// failure detection.
    Sim(SimArgs),
}

#[derive(Args)]
struct SimArgs {
    /// Number of peers to join.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    peers: u32,
    /// Seed of the run's random generator; the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Chance that a frame's first transmission is lost (TCP resends it
    /// 200 ms later), from 0 to 1.
    #[arg(long, default_value_t = 0.0, value_parser = parse_probability)]
    loss: f64,
    /// One-way latency of each frame: a fixed value ("5ms") or a range
    /// drawn uniformly ("1ms..20ms").
    #[arg(long, default_value = "1ms..5ms", value_parser = parse_latency)]
    latency: (Duration, Duration),
    /// Share of the peers crashed at once after the flood, from 0 to 1.
    #[arg(long, default_value_t = 0.0, value_parser = parse_probability)]
    crash_fraction: f64,
    /// Write degree.svg, degree.png (the degree distribution on log-log
    /// axes, with the fitted power law) and coverage.svg (the message's
    /// coverage over time) into this directory, creating it if needed.
    #[arg(long, value_name = "DIR")]
    plot_dir: Option<std::path::PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_probability(text: &str) -> Result<f64, String> {
    let p: f64 = text
        .parse()
        .map_err(|_| format!("\"{text}\" is not a number; write e.g. 0.01"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{p} is not between 0 and 1"))
    }
}

fn parse_web_address(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 0)))
        .or_else(|_| {
            text.parse::<u16>()
                .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
        })
        .map_err(|_| {
            format!("`{text}` is not an address; write IP:PORT (127.0.0.1:8080), an IP, or a port")
        })
}

fn parse_latency(text: &str) -> Result<(Duration, Duration), String> {
    let (low, high) = match text.split_once("..") {
        Some((low, high)) => (parse_duration(low)?, parse_duration(high)?),
        None => {
            let fixed = parse_duration(text)?;
            (fixed, fixed)
        }
    };
    if low > high {
        return Err(format!(
            "the range {text} runs backwards; write the smaller value first"
        ));
    }
    Ok((low, high))
}

#[derive(Args)]
struct SeedArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Where the seed keeps its log, votes and snapshots. Default:
    /// gossipnet-data/seed-<port> in the working directory.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Refuse to register more than N peers from one IP address (a brake
    /// on Sybil registrations). Default: the config's max_peers_per_ip,
    /// else no cap. Fixed when the cluster first forms: the value the
    /// forming leader commits holds on every seed.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_peers_per_ip: Option<u32>,
}

#[derive(Subcommand)]
enum SeedsCommand {
    /// Have running seeds vote to pin a new identity key for seed ADDR,
    /// whose data directory was lost (docs/SECURITY.md, "Seed keys"). Each
    /// --data-dir is a running seed's own: that seed votes, on an order
    /// signed with its identity.key. The key is replaced once a majority
    /// of the seeds have voted.
    Rekey(RekeyArgs),
    /// Add seed ADDR to the running cluster. Start it first, on its
    /// address, with an empty data directory and the new seed list in its
    /// config: it joins as a learner, catches up, then votes. Each
    /// --data-dir is a running seed's own, which votes; the change is made
    /// once a majority has voted (README, "Changing the seeds").
    Add(SeedChangeArgs),
    /// Remove seed ADDR from the running cluster (it may be down). Stop it
    /// once this reports the change made.
    Remove(SeedChangeArgs),
    /// Replace seed OLD with NEW in one membership change: NEW catches up
    /// as a learner first, then one joint-consensus change swaps them.
    Replace(ReplaceArgs),
}

#[derive(Args)]
struct SeedChangeArgs {
    /// The seed to add or remove, as IP:PORT.
    seed: SocketAddr,
    #[command(flatten)]
    order: OrderArgs,
}

#[derive(Args)]
struct ReplaceArgs {
    /// The seed that leaves, as IP:PORT.
    old: SocketAddr,
    /// The seed that takes its place, as IP:PORT.
    new: SocketAddr,
    #[command(flatten)]
    order: OrderArgs,
}

#[derive(Args)]
struct OrderArgs {
    /// The data directory of a running seed that is to vote; repeat it for
    /// each seed whose directory is on this host. A majority must vote.
    #[arg(long = "data-dir", value_name = "DIR", required = true)]
    data_dirs: Vec<PathBuf>,
    /// Config file listing the seeds. Default: the first of config.csv,
    /// config.txt, config.toml, config.yml in the working directory.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The network's key file, when its nodes run with one. Default: the
    /// config's network_key, if any.
    #[arg(long, value_name = "FILE")]
    network_key: Option<PathBuf>,
}

fn run_seed_change(change: SeedChange, order: OrderArgs) -> ExitCode {
    let (config, network_key) = match load_order_config(order.config, order.network_key) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let result = gossipnet::seed_change::change_seeds(
        change,
        &order.data_dirs,
        &config.seeds,
        network_key.as_ref(),
        |line| println!("{line}"),
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The config and network key an operator's order to the seeds uses.
fn load_order_config(
    config: Option<PathBuf>,
    network_key: Option<PathBuf>,
) -> Result<(config::Config, Option<NetworkKey>), ExitCode> {
    let config = match config.map_or_else(
        || {
            std::env::current_dir()
                .map_err(|e| format!("cannot read the working directory: {e}"))
                .and_then(|cwd| config::find_default(&cwd).map_err(|e| e.to_string()))
        },
        Ok,
    ) {
        Ok(path) => match config::load(&path) {
            Ok(config) => config,
            Err(e) => {
                eprintln!("error: {e}");
                return Err(ExitCode::from(EXIT_USAGE));
            }
        },
        Err(e) => {
            eprintln!("error: {e}");
            return Err(ExitCode::from(EXIT_USAGE));
        }
    };
    let key_file = network_key.or(config.network_key.clone());
    match key_file.as_deref().map(NetworkKey::load).transpose() {
        Ok(key) => Ok((config, key)),
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

#[derive(Args)]
struct RekeyArgs {
    /// The seed whose pinned key is replaced, as IP:PORT.
    seed: SocketAddr,
    /// Its new public key, 64 hex digits: the one its refusals name
    /// (`seed_key_refused`), i.e. the public key of its new identity.key.
    #[arg(long, value_name = "HEX")]
    key: gossipnet::proto::message::PublicKey,
    #[command(flatten)]
    order: OrderArgs,
}

fn run_rekey(args: RekeyArgs) -> ExitCode {
    let (config, network_key) = match load_order_config(args.order.config, args.order.network_key) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let result = gossipnet::rekey::rekey(
        args.seed,
        args.key,
        &args.order.data_dirs,
        &config.seeds,
        network_key.as_ref(),
    );
    match result {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Args)]
struct KeygenArgs {
    /// Where to write the key; an existing file is never overwritten.
    #[arg(long, value_name = "FILE", default_value = "network.key")]
    out: PathBuf,
}

#[derive(Args)]
struct StatusArgs {
    /// Any seed of the cluster, as IP:PORT.
    #[arg(long, value_name = "IP:PORT")]
    seed: SocketAddr,
    /// The network's key file, when its nodes run with one.
    #[arg(long, value_name = "FILE")]
    network_key: Option<PathBuf>,
    /// `json` for tools, `table` for people.
    #[arg(long, value_enum, default_value = "json")]
    format: StatusFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum StatusFormat {
    Json,
    Table,
}

#[derive(Args)]
struct UpArgs {
    /// Number of seed processes.
    #[arg(long, default_value_t = 3, conflicts_with = "config")]
    seeds: usize,
    /// Start the seeds this config file lists, at their addresses, and
    /// pass its `[peer]` settings to every peer (options given here win).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Run the commands in this file first, one per line (`#` starts a
    /// comment); then take commands from the terminal or standard input.
    #[arg(long, value_name = "FILE")]
    script: Option<PathBuf>,
    /// Serve a live view of the network in a browser, and print its URL.
    /// ADDR is IP:PORT, an IP (free port) or a port (on 127.0.0.1);
    /// default: 127.0.0.1 on a free port.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:0", value_parser = parse_web_address)]
    web: Option<SocketAddr>,
    /// Number of peer processes to start with.
    #[arg(long, default_value_t = 10)]
    peers: usize,
    /// Directory for the nodes' files. Default: gossipnet-runs/run-<unix time>.
    #[arg(long, value_name = "DIR")]
    run_dir: Option<PathBuf>,
    /// Run this long, then stop every node and print a summary (no terminal needed).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Every node of the run authenticates and encrypts its connections
    /// with this network key (default: the --config file's network_key).
    #[arg(long, value_name = "FILE")]
    network_key: Option<PathBuf>,
    #[command(flatten)]
    settings: PeerSettingArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Seed(args) => run_node(
            node_options(
                Role::Seed,
                &args.node,
                PeerOverrides::default(),
                Some(false),
                args.data_dir,
            )
            .map(|options| NodeOptions {
                max_peers_per_ip: args.max_peers_per_ip,
                ..options
            }),
            node::run_seed,
        ),
        Command::Keygen(args) => match NetworkKey::create(&args.out) {
            Ok(_) => {
                println!(
                    "wrote a new network key to {}; give every seed and peer a copy, with --network-key {} or network_key = \"{}\" in the config",
                    args.out.display(),
                    args.out.display(),
                    args.out.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Status(args) => match args
            .network_key
            .as_deref()
            .map(NetworkKey::load)
            .transpose()
            .map_err(|e| e.to_string())
            .and_then(|key| status::fetch(args.seed, key.as_ref()).map_err(|e| e.to_string()))
        {
            Ok(report) => {
                match args.format {
                    StatusFormat::Json => println!("{report:#}"),
                    StatusFormat::Table => print!("{}", status::table(&report)),
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Peer(args) => args.run(),
        Command::Seeds(SeedsCommand::Rekey(args)) => run_rekey(args),
        Command::Seeds(SeedsCommand::Add(args)) => run_seed_change(
            SeedChange {
                add: Some(args.seed),
                remove: None,
            },
            args.order,
        ),
        Command::Seeds(SeedsCommand::Remove(args)) => run_seed_change(
            SeedChange {
                add: None,
                remove: Some(args.seed),
            },
            args.order,
        ),
        Command::Seeds(SeedsCommand::Replace(args)) => run_seed_change(
            SeedChange {
                add: Some(args.new),
                remove: Some(args.old),
            },
            args.order,
        ),
        Command::Sim(args) => run_sim(args),
        Command::Up(args) => {
            let exe = match std::env::current_exe() {
                Ok(exe) => exe,
                Err(e) => {
                    eprintln!("error: cannot find the gossipnet binary to start nodes from: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let (seed_addrs, file_settings, file_key) = match &args.config {
                Some(path) => match config::load(path) {
                    Ok(config) => (config.seeds, config.peer, config.network_key),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(EXIT_USAGE);
                    }
                },
                None => (Vec::new(), Default::default(), None),
            };
            let options = UpOptions {
                seeds: if seed_addrs.is_empty() {
                    args.seeds
                } else {
                    seed_addrs.len()
                },
                peers: args.peers,
                run_dir: args.run_dir,
                duration: args.duration,
                peer: args.settings.overrides().or(file_settings),
                seed_addrs,
                script: args.script,
                web: args.web,
                exe,
                network_key: args.network_key.or(file_key),
            };
            match cluster::run(options) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run_sim(args: SimArgs) -> ExitCode {
    use std::io::{IsTerminal, Write};

    let options = gossipnet::sim::report::SimOptions {
        peers: args.peers as usize,
        seed: args.seed,
        network: gossipnet::sim::NetworkModel {
            latency: args.latency,
            loss: args.loss,
        },
        crash_fraction: args.crash_fraction,
    };
    let terminal = std::io::stderr().is_terminal();
    let mut shown = usize::MAX;
    let progress = |done: usize, total: usize| {
        let percent = done * 100 / total.max(1);
        if !terminal || percent == shown {
            return;
        }
        shown = percent;
        let bar: String = (0..40)
            .map(|i| if i * 100 < percent * 40 { '#' } else { '.' })
            .collect();
        eprint!("\rjoining peers [{bar}] {percent:>3}%  {done}/{total}");
        let _ = std::io::stderr().flush();
        if done == total {
            eprintln!();
        }
    };
    match gossipnet::sim::report::simulate(&options, progress) {
        Ok(report) => {
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("error: cannot write the report as JSON: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{report}");
            }
            if let Some(dir) = &args.plot_dir {
                match report.write_plots(dir) {
                    Ok(files) => {
                        let names: Vec<String> =
                            files.iter().map(|f| f.display().to_string()).collect();
                        eprintln!("plots written: {}", names.join(", "));
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
