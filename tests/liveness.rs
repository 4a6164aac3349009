//! Liveness checks between real peer processes (R11, R12): a frozen peer,
//! whose port still accepts connections, is suspected by its neighbours,
//! and the suspicion ends when it answers again.

mod common;

use std::time::Duration;

use common::Cluster;
use gossipnet::proto::Event;

#[cfg(unix)]
#[test]
fn a_frozen_peer_is_suspected_and_cleared_when_it_resumes() {
    use nix::{sys::signal, unistd::Pid};

    let mut net = Cluster::with_seeds(2, &["--gossip-count", "0", "--ping-interval", "200ms"]);
    let watcher = net.add_peer();
    let frozen = net.add_peer();
    let frozen_addr = net.peers[frozen].addr();
    // The second peer can only have linked to the first.
    net.peers[watcher].wait_event(
        "the link to the second peer",
        Duration::from_secs(10),
        |e| matches!(e, Event::NeighborUp { peer } if *peer == frozen_addr),
    );
    let pid = Pid::from_raw(net.peers[frozen].child.id() as i32);
    signal::kill(pid, signal::Signal::SIGSTOP).unwrap();
    net.peers[watcher].wait_event(
        "the frozen peer to be suspected",
        Duration::from_secs(10),
        |e| matches!(e, Event::SuspicionStarted { peer, .. } if *peer == frozen_addr),
    );
    signal::kill(pid, signal::Signal::SIGCONT).unwrap();
    net.peers[watcher].wait_event(
        "the suspicion to clear",
        Duration::from_secs(10),
        |e| matches!(e, Event::SuspicionCleared { peer } if *peer == frozen_addr),
    );
    // The link survived the freeze.
    net.peers[watcher].poll();
    assert_eq!(
        net.peers[watcher].count(|e| matches!(e, Event::NeighborDown { .. })),
        0,
        "the link was dropped"
    );
    let text = std::fs::read_to_string(net.peers[watcher].output_file("peer")).unwrap();
    assert!(
        text.contains(&format!("SUSPECT {frozen_addr}: no answer to a ping")),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.contains("PING") || l.contains("PONG")),
        "pings must not be logged (R18): {text}"
    );
}
