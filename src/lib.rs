//! gossipnet: a gossip-based peer-to-peer network.
//!
//! Seeds keep the membership directory; peers build a power-law overlay and
//! flood gossip with a de-duplicating Message List. The protocol logic lives
//! in sans-IO cores ([`proto`]); [`net`] runs them on tokio.

pub mod cli;
pub mod cluster;
pub mod config;
pub mod consensus;
pub mod identity;
pub mod net;
pub mod node;
pub mod output;
pub mod proto;
pub mod rekey;
pub mod secret_file;
pub mod seed_change;
pub mod sim;
pub mod status;
