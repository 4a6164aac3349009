//! Free ports for nodes that must be told their port before they start
//! (seeds, whose addresses go into the config every node reads).
//!
//! Binding port 0 and closing the listener again is the usual trick, but
//! the kernel takes such a port from the ephemeral range, the same range it
//! draws the local port of every outgoing connection from. On a busy
//! machine a connection can take the port between the check and the
//! seed's bind, and the seed fails with "Address already in use". So ports
//! are drawn at random from below the ephemeral range instead, where the
//! kernel never hands them out by itself, and checked by binding them.

use std::{
    collections::BTreeSet,
    io,
    net::{Ipv4Addr, TcpListener},
    sync::Mutex,
};

use rand::Rng;

/// The lowest port handed out: above the registered ports most services
/// use.
const LOWEST: u16 = 10_000;

/// Where the kernel's ephemeral range starts when it cannot be read; the
/// Linux default.
const DEFAULT_EPHEMERAL_START: u16 = 32_768;

/// Tries before falling back on a kernel-chosen port.
const ATTEMPTS: usize = 200;

/// Ports this process has already handed out, so that two callers (tests
/// running in parallel) never get the same one.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port on 127.0.0.1 that nothing listens on now, that this process has
/// not handed out before, and that outgoing connections will not take.
pub fn free_port() -> io::Result<u16> {
    let below = ephemeral_start().max(LOWEST + 1);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = rand::rng();
    for _ in 0..ATTEMPTS {
        let port = rng.random_range(LOWEST..below);
        if !handed_out.contains(&port) && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            handed_out.insert(port);
            return Ok(port);
        }
    }
    // Below the ephemeral range is full: let the kernel choose.
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port();
    handed_out.insert(port);
    Ok(port)
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(DEFAULT_EPHEMERAL_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port().unwrap()).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            ports.len(),
            "a port handed out twice: {ports:?}"
        );
        let start = ephemeral_start();
        for port in ports {
            assert!(
                (LOWEST..start).contains(&port),
                "port {port} outside {LOWEST}..{start}"
            );
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
        }
    }
}
