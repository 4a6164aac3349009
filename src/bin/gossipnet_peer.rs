//! `gossipnet-peer`: the peer alone, taking exactly the arguments of
//! `gossipnet peer`. It leaves out the seed (Raft and its log store), the
//! cluster manager, the web view and the simulator, so a peer maps about a
//! third of the code: under 5 MiB resident instead of about 9, which counts
//! when a laptop runs hundreds of peers. `gossipnet up` starts its peers
//! with it when it is installed beside `gossipnet`.

use std::process::ExitCode;

use clap::Parser;
use gossipnet::cli::PeerArgs;

/// Run a peer node: joins the overlay and gossips. The same as
/// `gossipnet peer`, in a smaller executable.
#[derive(Parser)]
#[command(name = "gossipnet-peer", version)]
struct Cli {
    #[command(flatten)]
    peer: PeerArgs,
}

fn main() -> ExitCode {
    Cli::parse().peer.run()
}
