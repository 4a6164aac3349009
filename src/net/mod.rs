//! The network: a thin tokio driver around the sans-IO cores.

pub mod conn;
pub mod driver;
pub mod icmp;
pub mod limits;
pub mod ports;
pub mod secure;

pub use driver::{run, Clock};
